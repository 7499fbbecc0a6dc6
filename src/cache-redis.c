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

/* AUTH and SELECT come first: is_setup() relies on that order. */
enum cmd_kind {
	CMD_AUTH,
	CMD_SELECT,
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
	char *unsent;                   /* the command in Redis protocol form, held
	                                   back until AUTH and SELECT succeed, or
	                                   NULL once given to hiredis */
	size_t unsent_len;
};

TAILQ_HEAD(cmd_queue, tg_cache_redis_cmd);

struct tg_cache_redis {
	struct event_base *base;
	redisAsyncContext *ac;          /* NULL while waiting to reconnect */
	int connected;                  /* ac finished connecting */
	int closing;                    /* inside redisAsyncFree() of ours */
	int ready;                      /* no AUTH or SELECT waits for its reply, so
	                                   commands go to hiredis at once */
	int unusable;                   /* AUTH or SELECT failed, or the connection
	                                   is going away: nothing more is sent */
	int outage;                     /* a connection ended, and Redis has not
	                                   replied since */

	/* In order: the commands given to hiredis whose reply is not yet read,
	 * then the commands held back until AUTH and SELECT succeed. */
	struct cmd_queue waiting;
	struct event *reply_timer;      /* deadline of the oldest waiting */
	struct event *connect_timer;
	struct event *retry_timer;
	struct event *close_event;      /* closes after a failed AUTH or SELECT */
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
	char setup_error[256];          /* the AUTH or SELECT failure last logged;
	                                   empty once a connection is ready */
};

static void connect_redis(struct tg_cache_redis *r);
static void on_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata);

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

static int
is_setup(enum cmd_kind kind)
{
	return kind <= CMD_SELECT;
}

/* The name of a reply type, in the words of the Redis protocol, for logs. */
static const char *
reply_type_name(int type)
{
	switch (type) {
	case REDIS_REPLY_STRING: return "a bulk string";
	case REDIS_REPLY_ARRAY: return "an array";
	case REDIS_REPLY_INTEGER: return "an integer";
	case REDIS_REPLY_NIL: return "nil";
	case REDIS_REPLY_STATUS: return "a status";
	case REDIS_REPLY_ERROR: return "an error";
	default: return "a reply of an unknown type";
	}
}

static enum tg_cache_redis_status
status_of(struct tg_cache_redis *r, const struct tg_cache_redis_cmd *cmd,
          const redisReply *reply)
{
	static const char *const names[] = {"AUTH", "SELECT", "GET", "SET"};

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
		log_error(r, "GET returned %s (reply type %d), not a bulk string",
		          reply_type_name(reply->type), reply->type);
		return TG_CACHE_REDIS_FAILED;
	}
	return TG_CACHE_REDIS_FOUND;
}

/* Fail every command held back behind AUTH or SELECT. They never reached
 * hiredis, so no reply and no hiredis callback will come for them. */
static void
fail_held(struct tg_cache_redis *r)
{
	struct cmd_queue unsent = TAILQ_HEAD_INITIALIZER(unsent);
	struct tg_cache_redis_cmd *cmd, *next;

	for (cmd = TAILQ_FIRST(&r->waiting); cmd != NULL; cmd = next) {
		next = TAILQ_NEXT(cmd, link);
		if (cmd->unsent == NULL)
			continue;
		TAILQ_REMOVE(&r->waiting, cmd, link);
		TAILQ_INSERT_TAIL(&unsent, cmd, link);
	}

	/* The callbacks may start new commands, so the queue is not walked
	 * while they run. */
	while ((cmd = TAILQ_FIRST(&unsent)) != NULL) {
		TAILQ_REMOVE(&unsent, cmd, link);
		redisFreeCommand(cmd->unsent);
		finish_cmd(cmd, TG_CACHE_REDIS_FAILED, NULL, 0);
	}
}

/* Give a command in Redis protocol form to hiredis, which copies it.
 * Returns 0, or -1 after logging when hiredis rejects it because the
 * connection is closing. */
static int
pass_to_hiredis(struct tg_cache_redis *r, struct tg_cache_redis_cmd *cmd,
                const char *formatted, size_t len)
{
	if (redisAsyncFormattedCommand(r->ac, on_reply, cmd, formatted, len) == REDIS_OK)
		return 0;
	log_error(r, "cannot send a command: %s",
	          r->ac->errstr[0] != '\0' ? r->ac->errstr : "connection closing");
	return -1;
}

/*
 * Give the held commands to hiredis in order, up to and including the next
 * AUTH or SELECT, because what comes after that one must wait for its
 * reply. Called from a reply callback, where hiredis still accepts commands.
 */
static void
send_held(struct tg_cache_redis *r)
{
	struct tg_cache_redis_cmd *cmd;

	TAILQ_FOREACH(cmd, &r->waiting, link) {
		if (cmd->unsent == NULL)
			continue;
		if (pass_to_hiredis(r, cmd, cmd->unsent, cmd->unsent_len) != 0) {
			r->unusable = 1;
			fail_held(r);
			return;
		}
		redisFreeCommand(cmd->unsent);
		cmd->unsent = NULL;
		if (is_setup(cmd->kind)) {
			r->ready = 0;
			return;
		}
	}
}

/* Count a failed AUTH or SELECT, and log it when its message differs from
 * the one last logged. Every reconnect repeats the same failure, and the
 * errors counter, not the log, shows how often. */
static void
log_setup_error(struct tg_cache_redis *r, const struct tg_cache_redis_cmd *cmd,
                const char *error)
{
	char message[sizeof(r->setup_error)];

	atomic_fetch_add_explicit(&redis_errors, 1, memory_order_relaxed);
	if (cmd->kind == CMD_SELECT)
		snprintf(message, sizeof(message), "SELECT %d failed: %s", r->db, error);
	else if (r->user != NULL)
		snprintf(message, sizeof(message), "AUTH as user \"%s\" failed: %s", r->user, error);
	else
		snprintf(message, sizeof(message), "AUTH failed: %s", error);
	if (strcmp(message, r->setup_error) == 0)
		return;

	tg_warn("cache: redis %s: %s; closing the connection, and requests go on "
	        "without the cache until a new connection gets past AUTH and SELECT",
	        r->address, message);
	memcpy(r->setup_error, message, sizeof(message));
}

/*
 * Handle the reply to AUTH or SELECT. On success the held commands go out,
 * and the connection is ready once the last AUTH or SELECT succeeded. On an
 * error nothing more is sent on the connection. The held commands fail, and
 * the connection is closed right after this callback, because hiredis
 * defers a close from inside its callbacks, then tried again after the
 * back-off.
 */
static void
finish_setup(struct tg_cache_redis *r, const struct tg_cache_redis_cmd *cmd,
             const redisReply *reply)
{
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		r->unusable = 1;
		if (reply != NULL) {
			log_setup_error(r, cmd, reply->str);
			event_active(r->close_event, EV_TIMEOUT, 0);
		}
		fail_held(r);
		return;
	}

	r->ready = 1;
	send_held(r);
	if (!r->ready || r->unusable)
		return;

	/* Each connection after the first follows an outage, so this line
	 * comes once per outage, as for a connection without AUTH or SELECT. */
	r->backoff_ms = 0;
	r->outage = 0;
	r->setup_error[0] = '\0';
	tg_info("cache: connected to redis %s", r->address);
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

	if (is_setup(cmd->kind)) {
		finish_setup(r, cmd, reply);
		free(cmd);
		return;
	}

	status = status_of(r, cmd, reply);
	if (reply != NULL)
		r->backoff_ms = 0;      /* Redis replies, so a later outage retries quickly */
	if (reply != NULL && reply->type != REDIS_REPLY_ERROR && r->outage) {
		r->outage = 0;
		tg_info("cache: connected to redis %s", r->address);
	}

	if (status == TG_CACHE_REDIS_FOUND && cmd->kind == CMD_GET)
		finish_cmd(cmd, status, reply->str, (size_t)reply->len);
	else
		finish_cmd(cmd, status, NULL, 0);
}

/*
 * Queue a command on the connection and track its deadline. While AUTH or
 * SELECT waits for its reply, the command is held back in Redis protocol
 * form: hiredis would pipeline it right behind them, and Redis would then
 * run it on a connection whose AUTH or SELECT failed. Returns the command,
 * or NULL when it could not be sent.
 */
static struct tg_cache_redis_cmd *
send_cmd(struct tg_cache_redis *r, enum cmd_kind kind, tg_cache_redis_get_cb *cb, void *arg,
         int argc, const char **argv, const size_t *argvlen)
{
	struct tg_cache_redis_cmd *cmd;
	char *formatted;
	int len, rc;

	if (r->ac == NULL || r->unusable)
		return NULL;
	len = redisFormatCommandArgv(&formatted, argc, argv, argvlen);
	if (len < 0)
		return NULL;
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL) {
		redisFreeCommand(formatted);
		return NULL;
	}
	cmd->redis = r;
	cmd->kind = kind;
	cmd->cb = cb;
	cmd->arg = arg;
	cmd->deadline_ms = tg_now_ms() + r->timeout_ms;

	if (r->ready) {
		rc = pass_to_hiredis(r, cmd, formatted, (size_t)len);
		redisFreeCommand(formatted);
		if (rc != 0) {
			free(cmd);
			return NULL;
		}
		if (is_setup(kind))
			r->ready = 0;
	} else {
		cmd->unsent = formatted;
		cmd->unsent_len = (size_t)len;
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
	event_del(r->close_event);
	if (ac == NULL)
		return;
	r->ac = NULL;
	r->connected = 0;
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
	 * queue, so a line here would repeat on every reconnect. With AUTH or
	 * SELECT, finish_setup() logs once they succeed. */
	if (!r->outage && r->ready)
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

static void
close_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	close_connection(arg);
}

/* Send AUTH, then SELECT once AUTH succeeded; hiredis queues the first
 * until the connection is up, and send_cmd() holds back what follows. */
static void
send_setup(struct tg_cache_redis *r)
{
	char db[16];

	if (r->password != NULL && r->user != NULL) {
		const char *argv[] = {"AUTH", r->user, r->password};
		size_t lens[] = {4, strlen(r->user), strlen(r->password)};

		send_cmd(r, CMD_AUTH, NULL, NULL, 3, argv, lens);
	} else if (r->password != NULL) {
		const char *argv[] = {"AUTH", r->password};
		size_t lens[] = {4, strlen(r->password)};

		send_cmd(r, CMD_AUTH, NULL, NULL, 2, argv, lens);
	}
	if (r->db != 0) {
		const char *argv[] = {"SELECT", db};
		size_t lens[] = {6, 0};

		lens[1] = (size_t)snprintf(db, sizeof(db), "%d", r->db);
		send_cmd(r, CMD_SELECT, NULL, NULL, 2, argv, lens);
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
	r->ready = 1;
	r->unusable = 0;
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
	r->close_event = event_new(base, -1, 0, close_cb, r);
	if (r->reply_timer == NULL || r->connect_timer == NULL || r->retry_timer == NULL ||
	    r->close_event == NULL || copy_settings(r, cfg) != 0) {
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
	if (r->close_event != NULL)
		event_free(r->close_event);
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
