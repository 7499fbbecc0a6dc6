/*
 * The handling of failed accept() calls on a set of listeners.
 *
 * libevent's evconnlistener leaves its socket enabled after an accept
 * error. When the error is a lack of resources, such as the open-files
 * limit (EMFILE), the connection stays in the kernel's listen queue, so the
 * event loop wakes again at once: the thread spins at full CPU and logs
 * every failure. The owner of the listeners sends their error callback
 * here instead. After a resource error, or one not known to concern a
 * single connection, every listener of the set stops accepting for
 * TG_ACCEPT_PAUSE_MS and then accepts again. The connections already open
 * go on being served meanwhile, and those waiting in the listen queue are
 * accepted once descriptors are free. An error that
 * concerns only the connection being accepted (the kernel drops it from
 * the queue) leaves the listeners enabled, since it cannot repeat without
 * a new connection.
 *
 * Either way the first failure of a burst is logged at once, and while the
 * burst lasts one line per TG_ACCEPT_LOG_INTERVAL_MS at most, each with the
 * count of the failures left out since the line before.
 *
 * A set may also count its connections against a limit shared with other
 * sets (struct tg_accept_limit), so that each connection served keeps a
 * descriptor for its upstream connection. At the limit the set accepts
 * one connection more, which shows that a client waits. Its owner either
 * makes room for it, by closing an idle connection, or keeps it unserved
 * and stops accepting until room frees: at once after a close in the
 * set, within TG_ACCEPT_PAUSE_MS after a close in another set. These
 * pauses are logged in bursts the same way.
 *
 * Thread: a pause state belongs to the thread that runs its event base.
 */
#ifndef TOLLGATE_ACCEPT_PAUSE_H
#define TOLLGATE_ACCEPT_PAUSE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evconnlistener;
struct tg_accept_pause;

/*
 * Connection limit shared by sets, such as the client connections of all
 * workers (see tg_descriptors_client_max). Sets on other threads count
 * into it, hence the atomics. open never passes max: each set keeps at
 * most one connection beyond it, unserved and uncounted.
 */
struct tg_accept_limit {
	size_t max;                     /* fixed before any set accepts */
	_Atomic size_t open;            /* accepted and not yet closed */
	_Atomic uint64_t reached;       /* times a set paused at max */
};

/*
 * How long the listeners stop accepting after a resource error. A worker
 * at its open-files limit then makes at most ten failing accept() calls a
 * second instead of one every few microseconds. A connection that waits in
 * the listen queue is accepted at most this long after a descriptor frees,
 * a delay a client barely notices next to a model's response time.
 */
#define TG_ACCEPT_PAUSE_MS 100

/* The shortest time between two log lines about one burst of failed
 * accepts, the same as between the access log's loss reports. */
#define TG_ACCEPT_LOG_INTERVAL_MS 10000

/* A failure after this long without one starts a new burst. It spans many
 * pauses, so a set that stays at its limit, failing once per pause, makes
 * one burst. */
#define TG_ACCEPT_BURST_GAP_MS 1000

/*
 * Create the pause state of listeners[0 .. n_listeners - 1] on base. The
 * array stays the caller's: an entry it sets to NULL (a freed listener) is
 * skipped. owner names the set at the start of each log line, such as
 * "worker 0"; it is copied, and cut at 63 bytes. Every failure is added to
 * *errors (atomically: other threads add to it too), unless errors is
 * NULL. The set's connections count against *limit, which must outlive
 * it; NULL: the set has no limit. Returns NULL when out of memory.
 */
struct tg_accept_pause *tg_accept_pause_new(struct event_base *base,
                                            struct evconnlistener **listeners,
                                            size_t n_listeners, const char *owner,
                                            _Atomic uint64_t *errors,
                                            struct tg_accept_limit *limit);

/* Count a connection just accepted against the set's limit, if the limit
 * has room for it. Returns 1 when it was counted (or the set has no limit),
 * and tg_accept_pause_closed() takes it off again; returns 0 at the limit. */
int tg_accept_pause_claim(struct tg_accept_pause *p);

/*
 * The owner keeps a connection that tg_accept_pause_claim() found no room
 * for. Stop accepting, with a log line at the start of a burst, and call
 * the room callback from the event loop after each close in the set and
 * every TG_ACCEPT_PAUSE_MS. The callback claims a place and starts the
 * held connection, returning 1, or returns 0 while there is no room. The
 * set accepts again once it returns 1. Only for a set with a limit.
 */
void tg_accept_pause_hold(struct tg_accept_pause *p);

/* Set the room callback of tg_accept_pause_hold(), with arg for it. */
void tg_accept_pause_set_room_cb(struct tg_accept_pause *p, int (*room_cb)(void *arg),
                                 void *arg);

/* A connection of the set closed: take it off the count, and let a paused
 * set try to accept again now, or start its held connection, since a
 * descriptor has freed. A set whose pause was cancelled stays paused. */
void tg_accept_pause_closed(struct tg_accept_pause *p);

/* Handle a failed accept() of one of the set's listeners, with err its
 * errno: count it, log it as described at the top of this file, and pause
 * the set after a resource error (see tg_accept_error_pauses). Call it from
 * the evconnlistener error callback. */
void tg_accept_pause_error(struct tg_accept_pause *p, int err);

/* Return 1 if the accept error err pauses the listeners: a lack of
 * resources, or an error not known to concern one connection only. Return
 * 0 for the network errors of the connection being accepted, after which
 * the listeners keep accepting. */
int tg_accept_error_pauses(int err);

/* Drop a pending resume, before the caller frees the listeners (drain).
 * The set stays paused for good, and calls the room callback no more:
 * the owner closes a connection it holds. p may be NULL. */
void tg_accept_pause_cancel(struct tg_accept_pause *p);

/* Free p, before its event base is freed. p may be NULL. */
void tg_accept_pause_free(struct tg_accept_pause *p);

#endif
