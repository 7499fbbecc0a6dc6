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
 * NULL. Returns NULL when out of memory.
 */
struct tg_accept_pause *tg_accept_pause_new(struct event_base *base,
                                            struct evconnlistener **listeners,
                                            size_t n_listeners, const char *owner,
                                            _Atomic uint64_t *errors);

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
 * The set stays paused for good. p may be NULL. */
void tg_accept_pause_cancel(struct tg_accept_pause *p);

/* Free p, before its event base is freed. p may be NULL. */
void tg_accept_pause_free(struct tg_accept_pause *p);

#endif
