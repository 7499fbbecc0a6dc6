/*
 * Types of routing policy: tiers of backends with a balancer each, the
 * retry policy of a route, the health policy of a backend, and the runtime
 * health state every worker shares.
 */
#ifndef TOLLGATE_FAILOVER_T_H
#define TOLLGATE_FAILOVER_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct tg_backend;

enum tg_balance {
	TG_BALANCE_ROUND_ROBIN,         /* weighted, in turn */
	TG_BALANCE_LEAST_REQUESTS,      /* fewest in flight, weight breaks ties */
	TG_BALANCE_EWMA,                /* peak-EWMA latency, power of two choices */
};

struct tg_tier_member {
	struct tg_backend *backend;
	unsigned weight;                /* default 1 */
	char *model;                    /* model name sent upstream; NULL keeps it */
};

/* One entry of a route's "backends": a single backend is a tier of one. */
struct tg_tier {
	enum tg_balance balance;
	size_t n_members;
	struct tg_tier_member *members;
	unsigned total_weight;
	atomic_uint_fast64_t next;      /* round-robin position, shared by workers */
};

/* Failure kinds a retry policy can name besides HTTP statuses. */
enum tg_retry_on {
	TG_RETRY_CONNECT = 1 << 0,      /* connect or TLS failure */
	TG_RETRY_TIMEOUT = 1 << 1,      /* connect, first byte or idle timeout */
	TG_RETRY_RESET = 1 << 2,        /* closed or invalid before the head */
	TG_RETRY_STREAM_ERROR = 1 << 3, /* an error event before any content */
};

#define TG_RETRY_MAX_STATUSES 16
#define TG_MAX_COOLDOWN_MS 3600000ull   /* the largest max_cooldown: one hour */
#define TG_DEFAULT_MAX_COOLDOWN_MS 60000ull
#define TG_RETRY_WINDOW_SLOTS 10        /* one-second slots of the budget */

/* Retry budget counters of a route: requests and retries per second over
 * the last TG_RETRY_WINDOW_SLOTS seconds, shared by every worker. */
struct tg_retry_window {
	atomic_uint_fast64_t second[TG_RETRY_WINDOW_SLOTS];
	atomic_uint_fast32_t requests[TG_RETRY_WINDOW_SLOTS];
	atomic_uint_fast32_t retries[TG_RETRY_WINDOW_SLOTS];
};

struct tg_retry_policy {
	unsigned on;                    /* enum tg_retry_on bits */
	int statuses[TG_RETRY_MAX_STATUSES];
	size_t n_statuses;
	unsigned max_attempts;          /* attempts per request, first included */
	double budget;                  /* retries / requests over the window */
	unsigned min_retries;           /* per window, so quiet routes can retry */
	int hold_stream;                /* hold a stream's start while a failure
	                                   before content could still move it */
	struct tg_retry_window window;  /* runtime counters of the budget */
};

struct tg_health_policy {
	unsigned consecutive_failures;  /* eject after this many in a row; 0 off */
	double error_ratio;             /* eject above this failure ratio; 0 off */
	uint64_t window;                /* ms: over this window */
	unsigned min_requests;          /* with at least this many requests */
	uint64_t base_ejection;         /* ms: first ejection; doubles each time */
	uint64_t max_ejection;          /* ms */
	uint64_t max_cooldown;          /* ms: bound of a cooldown a response requests; 0 ignores them */
	char *probe_path;               /* active probe GET path; NULL off */
	uint64_t probe_interval;        /* ms */
	uint64_t probe_timeout;         /* ms */
};

#define TG_MODEL_COOLDOWNS 16            /* model cooldowns a backend keeps at once */
#define TG_MODEL_KEY_LEN 128             /* bytes of a model name compared, NUL included */

/* A cooldown of one model at a backend; a slot whose until has passed is free. */
struct tg_model_cooldown {
	char model[TG_MODEL_KEY_LEN];   /* cut to TG_MODEL_KEY_LEN - 1 bytes */
	uint64_t until;                 /* CLOCK_MONOTONIC ns */
};

/*
 * Health state of a backend, shared by every worker. It outlives configuration
 * snapshots (found again by backend name on reload) and is updated with
 * atomics only, so workers share it without a lock.
 */
struct tg_backend_state {
	char *name;
	struct tg_backend_state *next;  /* registry list; written at load only */

	atomic_uint_fast64_t cooldown_until;    /* CLOCK_MONOTONIC ns; 0 none */
	atomic_uint_fast64_t ejected_until;     /* ns; 0 when not ejected */
	atomic_uint ejections;                  /* in a row, for back-off */
	atomic_int half_open;                   /* a trial request is out */
	atomic_uint consecutive_failures;
	atomic_uint in_flight;
	atomic_uint_fast64_t ewma_ns;           /* peak-EWMA of attempt latency */
	atomic_uint_fast64_t ewma_stamp;        /* when ewma_ns was last updated */
	atomic_int probe_ok;                    /* last active probe result */

	/* Error ratio window: two half-windows, rotated by time. */
	atomic_uint_fast64_t window_start;
	atomic_uint window_requests[2];
	atomic_uint window_failures[2];

	/* Cooldowns after a 429 for one model, since providers limit each
	 * model apart. The lock guards the table; model_cooldowns_end, the
	 * latest until ever stored, lets readers skip the lock once every
	 * one has run out. */
	pthread_mutex_t model_lock;
	atomic_uint_fast64_t model_cooldowns_end;
	struct tg_model_cooldown model_cooldowns[TG_MODEL_COOLDOWNS];
};

#endif
