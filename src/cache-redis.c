/*
 * The Redis cache store of one worker: connection, timeouts, back-off,
 * GET and SET. See cache-redis.h for the failure handling.
 *
 * hiredis 0.14 behaviour this file relies on (async.c of that release): a
 * context frees itself after a failed connect and after an I/O error, and
 * runs every waiting callback with a NULL reply first. redisAsyncFree()
 * does the same at once when called outside hiredis' callbacks, and this
 * file only calls it there (from timers and tg_cache_redis_free()). The
 * connect and disconnect callbacks therefore only forget the context.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "clock.h"
#include "cache-key.h"
#include "cache-redis.h"
#include "log.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define LOG_INTERVAL_MS 5000

/* Of every worker's client, for /metrics: the scrape runs on another
 * thread, and these change only on failures and connects. */
static _Atomic uint64_t redis_errors, redis_timeouts, redis_connects;

enum cmd_kind {
	CMD_SETUP,                      /* AUTH or SELECT after connecting */
	CMD_GET,
	CMD_SET,
};

struct tg_cache_redis_cmd {
	TAILQ_ENTRY(tg_cache_redis_cmd) link;
	struct tg_cache_redis *redis;
	enum cmd_kind kind;
	uint64_t deadline_ms;
	int expired;                    /* failed by its deadline while connecting */
	tg_cache_redis_get_cb *cb;      /* NULL once cancelled or expired */
	void *arg;
};

TAILQ_HEAD(cmd_queue, tg_cache_redis_cmd);

struct tg_cache_redis {
	struct event_base *base;
	redisAsyncContext *ac;          /* NULL while waiting to reconnect */
	int connected;                  /* ac finished connecting */
	int closing;                    /* inside redisAsyncFree() of ours */
	int setup_failed;               /* AUTH or SELECT got an error */
	int outage;                     /* a connection ended, and Redis has not
	                                   replied since */

	struct cmd_queue waiting;       /* sent, in order, reply not yet read */
	struct event *reply_timer;      /* deadline of the oldest waiting */
	struct event *connect_timer;
	struct event *retry_timer;
	uint64_t backoff_ms;            /* 0 after a reply: next retry is quick */
	uint64_t rng;                   /* for back-off jitter */

	/* Settings, copied so the client can outlive its snapshot. */
	char *host;
	int port;
	int db;
	char *user;
	char *password;
	uint64_t timeout_ms;
	uint64_t connect_timeout_ms;
	char *address;                  /* "host:port", for messages */

	uint64_t last_log_ms;
	uint64_t unlogged;              /* errors since the last message */
};

static void connect_redis(struct tg_cache_redis *r);

/* Count an error, and log it unless one was logged in the last
 * LOG_INTERVAL_MS: a Redis outage hits every request, and one line per
 * request would flood the log. */
static void log_error(struct tg_cache_redis *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
log_error(struct tg_cache_redis *r, const char *fmt, ...)
{
	uint64_t now = tg_now_ms();
	char message[256];
	va_list ap;

	atomic_fetch_add_explicit(&redis_errors, 1, memory_order_relaxed);
	if (r->last_log_ms != 0 && now - r->last_log_ms < LOG_INTERVAL_MS) {
		r->unlogged++;
		return;
	}

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	if (r->unlogged > 0)
		tg_warn("cache: redis %s: %s; the request goes on without the cache "
		        "(%llu more errors since the last message)", r->address, message,
		        (unsigned long long)r->unlogged);
	else
		tg_warn("cache: redis %s: %s; the request goes on without the cache",
		        r->address, message);
	r->last_log_ms = now;
	r->unlogged = 0;
}

/* --- waiting commands ------------------------------------------------------ */

/* The oldest waiting command that has not expired, or NULL. */
static struct tg_cache_redis_cmd *
oldest_live(struct tg_cache_redis *r)
{
	struct tg_cache_redis_cmd *cmd;

	TAILQ_FOREACH(cmd, &r->waiting, link) {
		if (!cmd->expired)
			return cmd;
	}
	return NULL;
}

static void
arm_reply_timer(struct tg_cache_redis *r)
{
	struct tg_cache_redis_cmd *oldest = oldest_live(r);
	uint64_t now = tg_now_ms();
	struct timeval tv;

	if (oldest == NULL) {
		evtimer_del(r->reply_timer);
		return;
	}
	tv = tg_timeval_ms(oldest->deadline_ms > now ? oldest->deadline_ms - now : 0);
	evtimer_add(r->reply_timer, &tv);
}

/* Hand a finished command's outcome to its requester and free it. */
static void
finish_cmd(struct tg_cache_redis_cmd *cmd, enum tg_cache_redis_status status,
           const char *data, size_t len)
{
	if (cmd->cb != NULL)
		cmd->cb(cmd->arg, status, data, len);
	free(cmd);
}

static enum tg_cache_redis_status
status_of(struct tg_cache_redis *r, const struct tg_cache_redis_cmd *cmd,
          const redisReply *reply)
{
	static const char *const names[] = {"AUTH or SELECT", "GET", "SET"};

	/* A NULL reply means the connection went away; that was logged once
	 * already, not again for every command it carried. */
	if (reply == NULL)
		return TG_CACHE_REDIS_FAILED;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_error(r, "%s failed: %s", names[cmd->kind], reply->str);
		return TG_CACHE_REDIS_FAILED;
	}
	if (cmd->kind == CMD_GET && reply->type == REDIS_REPLY_NIL)
		return TG_CACHE_REDIS_NOT_FOUND;
	if (cmd->kind == CMD_GET && reply->type != REDIS_REPLY_STRING) {
		log_error(r, "GET returned reply type %d, not a string", reply->type);
		return TG_CACHE_REDIS_FAILED;
	}
	return TG_CACHE_REDIS_FOUND;
}

static void
on_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	struct tg_cache_redis_cmd *cmd = privdata;
	struct tg_cache_redis *r = cmd->redis;
	redisReply *reply = reply_ptr;
	enum tg_cache_redis_status status;

	(void)ac;
	assert(cmd == TAILQ_FIRST(&r->waiting));
	TAILQ_REMOVE(&r->waiting, cmd, link);
	if (!r->closing)
		arm_reply_timer(r);

	status = status_of(r, cmd, reply);
	if (reply != NULL)
		r->backoff_ms = 0;      /* Redis replies, so a later outage retries quickly */
	if (reply != NULL && reply->type != REDIS_REPLY_ERROR && r->outage) {
		r->outage = 0;
		tg_info("cache: connected to redis %s", r->address);
	}
	if (cmd->kind == CMD_SETUP && status == TG_CACHE_REDIS_FAILED && reply != NULL) {
		/* Closing from inside a hiredis callback is deferred by hiredis;
		 * the timer closes the connection right after this returns. */
		r->setup_failed = 1;
		event_active(r->reply_timer, EV_TIMEOUT, 0);
	}

	if (status == TG_CACHE_REDIS_FOUND && cmd->kind == CMD_GET)
		finish_cmd(cmd, status, reply->str, (size_t)reply->len);
	else
		finish_cmd(cmd, status, NULL, 0);
}

/* Queue a command on the connection and track its deadline. Returns the
 * command, or NULL when it could not be sent. */
static struct tg_cache_redis_cmd *
send_cmd(struct tg_cache_redis *r, enum cmd_kind kind, tg_cache_redis_get_cb *cb, void *arg,
         int argc, const char **argv, const size_t *argvlen)
{
	struct tg_cache_redis_cmd *cmd;

	if (r->ac == NULL)
		return NULL;
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL)
		return NULL;
	cmd->redis = r;
	cmd->kind = kind;
	cmd->cb = cb;
	cmd->arg = arg;
	cmd->deadline_ms = tg_now_ms() + r->timeout_ms;

	if (redisAsyncCommandArgv(r->ac, on_reply, cmd, argc, argv, argvlen) != REDIS_OK) {
		log_error(r, "cannot send a command: %s",
		          r->ac->errstr[0] != '\0' ? r->ac->errstr : "connection closing");
		free(cmd);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&r->waiting, cmd, link);
	if (cmd == TAILQ_FIRST(&r->waiting))
		arm_reply_timer(r);
	return cmd;
}

/* --- connection ------------------------------------------------------------ */

/* Reconnect after a back-off. Every connection that ends, or fails to
 * open, comes here, so this is where an outage starts. */
static void
schedule_retry(struct tg_cache_redis *r)
{
	struct timeval tv;
	uint64_t delay;

	r->outage = 1;
	if (evtimer_pending(r->retry_timer, NULL))
		return;
	r->backoff_ms = r->backoff_ms == 0 ? BACKOFF_FIRST_MS : r->backoff_ms * 2;
	if (r->backoff_ms > BACKOFF_MAX_MS)
		r->backoff_ms = BACKOFF_MAX_MS;

	/* Up to a quarter less, so that the workers of an instance, and the
	 * instances sharing a Redis, do not all reconnect at the same moment. */
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	delay = r->backoff_ms - r->rng % (r->backoff_ms / 4 + 1);
	tv = tg_timeval_ms(delay);
	evtimer_add(r->retry_timer, &tv);
}

/* Close the connection now: every waiting command fails through its
 * callback, then a reconnect is scheduled. Never call from inside a hiredis
 * callback. */
static void
close_connection(struct tg_cache_redis *r)
{
	redisAsyncContext *ac = r->ac;

	evtimer_del(r->connect_timer);
	if (ac == NULL)
		return;
	r->ac = NULL;
	r->connected = 0;
	r->setup_failed = 0;
	r->closing = 1;
	redisAsyncFree(ac);
	r->closing = 0;
	assert(TAILQ_EMPTY(&r->waiting));
	evtimer_del(r->reply_timer);
	schedule_retry(r);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct tg_cache_redis *r = ac->data;

	evtimer_del(r->connect_timer);
	if (status != REDIS_OK) {
		/* hiredis frees the context when this returns. */
		log_error(r, "connect failed: %s", ac->errstr);
		r->ac = NULL;
		schedule_retry(r);
		return;
	}
	r->connected = 1;
	atomic_fetch_add_explicit(&redis_connects, 1, memory_order_relaxed);
	arm_reply_timer(r);

	/* During an outage only a reply shows that Redis is back (on_reply
	 * logs it). A paused Redis still completes connects from its listen
	 * queue, so a line here would repeat on every reconnect. */
	if (!r->outage)
		tg_info("cache: connected to redis %s", r->address);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct tg_cache_redis *r = ac->data;

	/* Our own close_connection() already forgot the context. */
	if (r->ac != ac)
		return;
	if (status != REDIS_OK)
		log_error(r, "connection lost: %s", ac->errstr);
	r->ac = NULL;
	r->connected = 0;
	schedule_retry(r);
}

static void
connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_cache_redis *r = arg;

	(void)fd;
	(void)what;
	atomic_fetch_add_explicit(&redis_timeouts, 1, memory_order_relaxed);
	log_error(r, "connect timed out after %llu ms", (unsigned long long)r->connect_timeout_ms);
	close_connection(r);
}

/*
 * Fail the commands past their deadline while the connection is still being
 * made. They stay queued in hiredis, which sends them once connected, but
 * their requesters go on now. The connect timeout, not the command timeout,
 * decides when a slow connect is given up, so that a Redis farther away
 * than one command timeout can still be reached.
 */
static void
expire_while_connecting(struct tg_cache_redis *r, uint64_t now)
{
	struct tg_cache_redis_cmd *cmd;

	TAILQ_FOREACH(cmd, &r->waiting, link) {
		if (cmd->expired || cmd->deadline_ms > now)
			continue;
		cmd->expired = 1;
		atomic_fetch_add_explicit(&redis_timeouts, 1, memory_order_relaxed);
		log_error(r, "not connected within %llu ms", (unsigned long long)r->timeout_ms);
		if (cmd->cb != NULL)
			cmd->cb(cmd->arg, TG_CACHE_REDIS_FAILED, NULL, 0);
		cmd->cb = NULL;
	}
	arm_reply_timer(r);
}

static void
reply_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_cache_redis *r = arg;
	struct tg_cache_redis_cmd *oldest = oldest_live(r);
	uint64_t now = tg_now_ms();

	(void)fd;
	(void)what;
	if (r->setup_failed) {
		close_connection(r);
		return;
	}
	if (oldest == NULL)
		return;
	if (oldest->deadline_ms > now) {
		arm_reply_timer(r);
		return;
	}
	if (!r->connected) {
		expire_while_connecting(r, now);
		return;
	}
	atomic_fetch_add_explicit(&redis_timeouts, 1, memory_order_relaxed);
	log_error(r, "no reply within %llu ms; reconnecting", (unsigned long long)r->timeout_ms);
	close_connection(r);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_redis(arg);
}

/* Send AUTH and SELECT first; hiredis queues them, and the commands after
 * them, until the connection is up. */
static void
send_setup(struct tg_cache_redis *r)
{
	char db[16];

	if (r->password != NULL && r->user != NULL) {
		const char *argv[] = {"AUTH", r->user, r->password};
		size_t lens[] = {4, strlen(r->user), strlen(r->password)};

		send_cmd(r, CMD_SETUP, NULL, NULL, 3, argv, lens);
	} else if (r->password != NULL) {
		const char *argv[] = {"AUTH", r->password};
		size_t lens[] = {4, strlen(r->password)};

		send_cmd(r, CMD_SETUP, NULL, NULL, 2, argv, lens);
	}
	if (r->db != 0) {
		const char *argv[] = {"SELECT", db};
		size_t lens[] = {6, 0};

		lens[1] = (size_t)snprintf(db, sizeof(db), "%d", r->db);
		send_cmd(r, CMD_SETUP, NULL, NULL, 2, argv, lens);
	}
}

/*
 * Start a connection. NOTE: hiredis resolves a host name with a blocking
 * getaddrinfo() here, on the worker thread. The stall only happens when
 * connecting, and a numeric address avoids it.
 */
static void
connect_redis(struct tg_cache_redis *r)
{
	struct timeval tv = tg_timeval_ms(r->connect_timeout_ms);
	redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);

	if (ac == NULL) {
		log_error(r, "cannot create a connection: out of memory");
		schedule_retry(r);
		return;
	}
	if (ac->err != 0) {
		log_error(r, "connect failed: %s", ac->errstr);
		redisAsyncFree(ac);
		schedule_retry(r);
		return;
	}

	ac->data = r;
	if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
		log_error(r, "cannot attach the connection to the event loop");
		redisAsyncFree(ac);
		schedule_retry(r);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
	evtimer_add(r->connect_timer, &tv);
	send_setup(r);
}

/* --- interface ------------------------------------------------------------- */

static int
copy_settings(struct tg_cache_redis *r, const struct tg_cache_config *cfg)
{
	r->host = strdup(cfg->redis_host);
	r->port = cfg->redis_port;
	r->db = cfg->redis_db;
	r->user = cfg->redis_user != NULL ? strdup(cfg->redis_user) : NULL;
	r->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
	r->timeout_ms = cfg->timeout;
	r->connect_timeout_ms = cfg->connect_timeout;
	if (strchr(cfg->redis_host, ':') != NULL) {
		if (asprintf(&r->address, "[%s]:%d", cfg->redis_host, cfg->redis_port) < 0)
			r->address = NULL;
	} else if (asprintf(&r->address, "%s:%d", cfg->redis_host, cfg->redis_port) < 0) {
		r->address = NULL;
	}

	return r->host == NULL || r->address == NULL ||
	       (cfg->redis_user != NULL && r->user == NULL) ||
	       (cfg->redis_password != NULL && r->password == NULL) ? -1 : 0;
}

static void
free_settings(struct tg_cache_redis *r)
{
	free(r->host);
	free(r->user);
	if (r->password != NULL) {
		memset(r->password, 0, strlen(r->password));
		free(r->password);
	}
	free(r->address);
}

struct tg_cache_redis *
tg_cache_redis_new(struct event_base *base, const struct tg_cache_config *cfg)
{
	struct tg_cache_redis *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->base = base;
	TAILQ_INIT(&r->waiting);
	r->rng = (uint64_t)(uintptr_t)r ^ tg_now_ms() ^ 0x9e3779b97f4a7c15ull;
	r->reply_timer = evtimer_new(base, reply_timeout_cb, r);
	r->connect_timer = evtimer_new(base, connect_timeout_cb, r);
	r->retry_timer = evtimer_new(base, retry_cb, r);
	if (r->reply_timer == NULL || r->connect_timer == NULL || r->retry_timer == NULL ||
	    copy_settings(r, cfg) != 0) {
		tg_cache_redis_free(r);
		return NULL;
	}
	connect_redis(r);
	return r;
}

void
tg_cache_redis_free(struct tg_cache_redis *r)
{
	if (r == NULL)
		return;
	if (r->ac != NULL)
		close_connection(r);
	if (r->reply_timer != NULL)
		event_free(r->reply_timer);
	if (r->connect_timer != NULL)
		event_free(r->connect_timer);
	if (r->retry_timer != NULL)
		event_free(r->retry_timer);
	free_settings(r);
	free(r);
}

static int
same_string(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
tg_cache_redis_matches(const struct tg_cache_redis *r, const struct tg_cache_config *cfg)
{
	return same_string(r->host, cfg->redis_host) && r->port == cfg->redis_port &&
	       r->db == cfg->redis_db && same_string(r->user, cfg->redis_user) &&
	       same_string(r->password, cfg->redis_password) &&
	       r->timeout_ms == cfg->timeout && r->connect_timeout_ms == cfg->connect_timeout;
}

static void
redis_key(const unsigned char key[TG_CACHE_KEY_LEN], char out[TG_CACHE_REDIS_KEY_LEN + 1])
{
	memcpy(out, TG_CACHE_REDIS_PREFIX, sizeof(TG_CACHE_REDIS_PREFIX) - 1);
	tg_cache_key_hex(key, out + sizeof(TG_CACHE_REDIS_PREFIX) - 1);
}

struct tg_cache_redis_cmd *
tg_cache_redis_get(struct tg_cache_redis *r, const unsigned char key[TG_CACHE_KEY_LEN],
                   tg_cache_redis_get_cb *cb, void *arg)
{
	char name[TG_CACHE_REDIS_KEY_LEN + 1];
	const char *argv[] = {"GET", name};
	size_t lens[] = {3, TG_CACHE_REDIS_KEY_LEN};

	assert(cb != NULL);
	redis_key(key, name);
	return send_cmd(r, CMD_GET, cb, arg, 2, argv, lens);
}

void
tg_cache_redis_cancel(struct tg_cache_redis_cmd *cmd)
{
	cmd->cb = NULL;
	cmd->arg = NULL;
}

void
tg_cache_redis_set(struct tg_cache_redis *r, const unsigned char key[TG_CACHE_KEY_LEN],
                   const char *value, size_t len, uint64_t ttl_ms)
{
	char name[TG_CACHE_REDIS_KEY_LEN + 1];
	char ttl[24];
	const char *argv[] = {"SET", name, value, "PX", ttl};
	size_t lens[] = {3, TG_CACHE_REDIS_KEY_LEN, len, 2, 0};

	redis_key(key, name);
	lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
	send_cmd(r, CMD_SET, NULL, NULL, 5, argv, lens);
}

int
tg_cache_redis_write_metrics(struct evbuffer *out, enum tg_metrics_format format)
{
	int rc = 0;

	rc |= tg_metrics_write_counter(out, format, "tollgate_cache_redis_errors_total",
	                               "Redis commands and connections that failed, timeouts "
	                               "included; lookups among them went on without the cache.",
	                               atomic_load_explicit(&redis_errors, memory_order_relaxed));
	rc |= tg_metrics_write_counter(out, format, "tollgate_cache_redis_timeouts_total",
	                               "Redis commands and connects that timed out.",
	                               atomic_load_explicit(&redis_timeouts, memory_order_relaxed));
	rc |= tg_metrics_write_counter(out, format, "tollgate_cache_redis_connects_total",
	                               "Connections to Redis made, reconnections included.",
	                               atomic_load_explicit(&redis_connects, memory_order_relaxed));
	return rc ? -1 : 0;
}
