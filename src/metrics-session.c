/*
 * The session table behind tollgate_session_turns: turns (requests) per
 * conversation, observed once a conversation has been idle for
 * sessions.idle_timeout.
 *
 * The requests of one session may reach different workers, so the table
 * is shared by all of them, and lock-free. Each slot is one 64-bit word,
 * updated with compare-and-swap, that contains a tag of the session key's
 * hash, the turn count and the time of the last turn. A key hashes to a
 * window of WINDOW slots;
 * when the window is full, the session idle the longest is ended early
 * (observed, and counted in tollgate_sessions_evicted_total), so memory
 * stays at the configured size whatever the clients send. The hash is
 * seeded at random, so clients cannot aim keys at one window.
 *
 * Sessions are ended by the scrape (tg_sessions_sweep) and by a turn that
 * finds a slot of its window expired; nothing else runs on a timer.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "metrics-table.h"
#include "request.h"

#define WINDOW 8

/* Slot word: tag (26 bits) | turns (14 bits) | last turn (24 bits, in
 * ticks of 100 ms, so it wraps after about 19 days). 0 is an empty slot. */
#define SEEN_BITS 24
#define TURNS_BITS 14
#define TAG_BITS 26
#define SEEN_MASK ((UINT64_C(1) << SEEN_BITS) - 1)
#define TURNS_MAX ((UINT64_C(1) << TURNS_BITS) - 1)
#define TAG_MASK ((UINT64_C(1) << TAG_BITS) - 1)
#define NS_PER_TICK 100000000u

#define SLOT(tag, turns, seen) (((tag) << (TURNS_BITS + SEEN_BITS)) | \
                                ((turns) << SEEN_BITS) | ((seen) & SEEN_MASK))
#define SLOT_TAG(w) ((w) >> (TURNS_BITS + SEEN_BITS))
#define SLOT_TURNS(w) (((w) >> SEEN_BITS) & TURNS_MAX)
#define SLOT_SEEN(w) ((w) & SEEN_MASK)

/* A turn gives up after this many lost races for its window; it is then
 * not counted. Each lost race means another turn of that window went in. */
#define MAX_RACES 16

struct tg_sessions {
	size_t mask;                    /* slots - 1; slots is a power of two */
	_Atomic uint64_t *slots;
	uint64_t seed;
	uint64_t epoch_ns;              /* tick 0 */
	_Atomic uint64_t idle_ticks;    /* of the latest turn's config; 0: none yet */
	struct tg_hist turns;           /* written by several threads */
	tg_counter evicted;             /* written by several threads */
	tg_counter active;              /* as of the last sweep */
};

struct tg_sessions *
tg_sessions_new(size_t max_sessions)
{
	struct tg_sessions *s = calloc(1, sizeof(*s));
	size_t n = WINDOW;

	if (s == NULL)
		return NULL;
	while (n < max_sessions && n < ((size_t)1 << 30))
		n <<= 1;
	s->mask = n - 1;
	s->slots = calloc(n, sizeof(*s->slots));
	if (s->slots == NULL) {
		free(s);
		return NULL;
	}
	if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
		s->seed = tg_now_ns() * 0x9e3779b97f4a7c15u;
	s->epoch_ns = tg_now_ns();
	return s;
}

void
tg_sessions_free(struct tg_sessions *s)
{
	if (s == NULL)
		return;
	free(s->slots);
	free(s);
}

/* FNV-1a from a random basis, then the splitmix64 finalizer so that every
 * output bit depends on every input byte. */
static uint64_t
hash_key(uint64_t seed, const char *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3u;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9u;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebu;
	h ^= h >> 31;
	return h;
}

static uint64_t
ticks(const struct tg_sessions *s, uint64_t now_ns)
{
	return (now_ns - s->epoch_ns) / NS_PER_TICK;
}

/* Ticks since the slot's last turn. */
static uint64_t
age(uint64_t w, uint64_t now)
{
	return (now - SLOT_SEEN(w)) & SEEN_MASK;
}

/* Whether at least idle ticks passed since the slot's last turn: the ages
 * are whole ticks, so one more tick makes sure of it. */
static int
expired(uint64_t w, uint64_t now, uint64_t idle)
{
	return idle > 0 && age(w, now) > idle;
}

static void
end_session(struct tg_sessions *s, uint64_t w)
{
	tg_hist_observe_shared(&s->turns, TG_BUCKETS_TURNS, SLOT_TURNS(w));
}

enum step { DONE, RACE, NEXT };

/* A turn of a session already in the window. */
static enum step
turn_existing(struct tg_sessions *s, size_t start, uint64_t tag, uint64_t now,
              uint64_t idle)
{
	for (size_t i = 0; i < WINDOW; i++) {
		_Atomic uint64_t *slot = &s->slots[(start + i) & s->mask];
		uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);
		uint64_t turns;

		if (w == 0 || SLOT_TAG(w) != tag)
			continue;
		/* Idle past the timeout and not swept yet: that session is
		 * over, and this turn starts the next one. */
		turns = expired(w, now, idle) ? 1 : SLOT_TURNS(w) + (SLOT_TURNS(w) < TURNS_MAX);
		if (!atomic_compare_exchange_strong(slot, &w, SLOT(tag, turns, now)))
			return RACE;
		if (turns == 1)
			end_session(s, w);
		return DONE;
	}
	return NEXT;
}

/* A new session: an empty slot, else one whose session expired. */
static enum step
turn_new(struct tg_sessions *s, size_t start, uint64_t tag, uint64_t now, uint64_t idle)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < WINDOW; i++) {
			_Atomic uint64_t *slot = &s->slots[(start + i) & s->mask];
			uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);

			if (pass == 0 ? w != 0 : !expired(w, now, idle))
				continue;
			if (!atomic_compare_exchange_strong(slot, &w, SLOT(tag, 1, now)))
				return RACE;
			if (w != 0)
				end_session(s, w);
			return DONE;
		}
	}
	return NEXT;
}

/* The window is full of live sessions: end the one idle the longest. */
static enum step
turn_evict(struct tg_sessions *s, size_t start, uint64_t tag, uint64_t now)
{
	_Atomic uint64_t *oldest = NULL;
	uint64_t oldest_w = 0;

	for (size_t i = 0; i < WINDOW; i++) {
		_Atomic uint64_t *slot = &s->slots[(start + i) & s->mask];
		uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);

		if (oldest == NULL || age(w, now) > age(oldest_w, now)) {
			oldest = slot;
			oldest_w = w;
		}
	}
	if (!atomic_compare_exchange_strong(oldest, &oldest_w, SLOT(tag, 1, now)))
		return RACE;
	if (oldest_w != 0) {
		end_session(s, oldest_w);
		atomic_fetch_add_explicit(&s->evicted, 1, memory_order_relaxed);
	}
	return DONE;
}

void
tg_sessions_touch(struct tg_sessions *s, const char *key, size_t len, uint64_t now_ns,
                  tg_msec_t idle_timeout)
{
	uint64_t h = hash_key(s->seed, key, len);
	uint64_t tag = (h >> (64 - TAG_BITS)) & TAG_MASK;
	size_t start = (size_t)h & s->mask;
	uint64_t now = ticks(s, now_ns);
	uint64_t idle = (idle_timeout * 1000000u + NS_PER_TICK - 1) / NS_PER_TICK;

	if (tag == 0)
		tag = 1;        /* a zero word is an empty slot */
	if (idle == 0)
		idle = 1;
	atomic_store_explicit(&s->idle_ticks, idle, memory_order_relaxed);

	/* Two first turns of one session racing on two workers may both
	 * insert it; the second copy then ends as a session of one turn. */
	for (int race = 0; race < MAX_RACES; race++) {
		enum step step = turn_existing(s, start, tag, now, idle);

		if (step == NEXT)
			step = turn_new(s, start, tag, now, idle);
		if (step == NEXT)
			step = turn_evict(s, start, tag, now);
		if (step == DONE)
			return;
	}
}

void
tg_sessions_sweep(struct tg_sessions *s, uint64_t now_ns)
{
	uint64_t now = ticks(s, now_ns);
	uint64_t idle = atomic_load_explicit(&s->idle_ticks, memory_order_relaxed);
	uint64_t active = 0;

	for (size_t i = 0; i <= s->mask; i++) {
		uint64_t w = atomic_load_explicit(&s->slots[i], memory_order_relaxed);

		if (w == 0)
			continue;
		/* A failed exchange means a turn just came in: still active. */
		if (expired(w, now, idle) && atomic_compare_exchange_strong(&s->slots[i], &w, 0))
			end_session(s, w);
		else
			active++;
	}
	atomic_store_explicit(&s->active, active, memory_order_relaxed);
}

int
tg_sessions_collect(struct tg_series_set *sets, struct tg_sessions *s)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[TG_BUCKETS_TURNS];
	double values[TG_HIST_MAX_BOUNDS + 2];
	double active = (double)tg_counter_get(&s->active);
	double evicted = (double)tg_counter_get(&s->evicted);
	int rc = 0;

	/* Exposed from the start, empty or not, so the first idle session
	 * does not make a series appear. */
	for (size_t i = 0; i <= spec->n; i++)
		values[i] = (double)tg_counter_get(&s->turns.bucket[i]);
	values[spec->n + 1] = (double)tg_counter_get(&s->turns.sum);
	rc |= tg_series_add(&sets[TG_F_SESSION_TURNS], TG_F_SESSION_TURNS, "", values);
	rc |= tg_series_add(&sets[TG_F_SESSIONS_ACTIVE], TG_F_SESSIONS_ACTIVE, "", &active);
	rc |= tg_series_add(&sets[TG_F_SESSIONS_EVICTED], TG_F_SESSIONS_EVICTED, "", &evicted);
	return rc;
}
