/*
 * Pausing listeners after accept() fails; see accept-pause.h.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "accept-pause.h"
#include "clock.h"
#include "log.h"

/* Log state of one kind of event that is logged in bursts, such as failed
 * accepts or pauses at the connection limit. */
struct burst {
	uint64_t last_ns;               /* tg_now_ns of the last event; 0: none */
	uint64_t logged_ns;             /* of the last line logged */
	uint64_t unlogged;              /* events since that line */
};

struct tg_accept_pause {
	struct event *resume;           /* timer that enables the set again */
	struct evconnlistener **listeners;  /* the owner's array */
	size_t n_listeners;
	char owner[64];
	_Atomic uint64_t *errors;       /* process-wide count, or NULL */
	struct tg_accept_limit *limit;  /* shared with other sets, or NULL */
	struct burst failures;          /* failed accept() calls */
	struct burst limit_pauses;      /* pauses at the limit */
	int holding;                    /* the owner holds a connection
	                                   accepted at the limit */
	int (*room_cb)(void *arg);      /* starts that connection */
	void *room_arg;
};

int
tg_accept_error_pauses(int err)
{
	switch (err) {
	/* Linux accept(2) reports these network errors, and the firewall's
	 * verdict, for the new connection after taking it off the queue. The
	 * next connection may well succeed. */
	case ECONNABORTED:
	case EPERM:
	case EPROTO:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
	case ENETDOWN:
	case ENETUNREACH:
	case EHOSTDOWN:
	case EHOSTUNREACH:
#ifdef ENONET
	case ENONET:
#endif
		return 0;
	default:
		/* EMFILE, ENFILE, ENOBUFS and ENOMEM, and any error not known to
		 * consume the connection: the connection may still be queued,
		 * and accepting again at once would spin. */
		return 1;
	}
}

static void
set_enabled(struct tg_accept_pause *p, int enabled)
{
	for (size_t i = 0; i < p->n_listeners; i++) {
		if (p->listeners[i] == NULL)
			continue;
		if (enabled)
			evconnlistener_enable(p->listeners[i]);
		else
			evconnlistener_disable(p->listeners[i]);
	}
}

static int
limit_reached(const struct tg_accept_pause *p)
{
	return p->limit != NULL &&
	       atomic_load_explicit(&p->limit->open, memory_order_relaxed) >= p->limit->max;
}

/* Stop accepting until the resume timer fires. Without the timer the set
 * would never accept again, so it goes on accepting. After a resource
 * error that spins until descriptors free, which is the lesser harm. */
static void
pause_set(struct tg_accept_pause *p)
{
	struct timeval delay = tg_timeval_ms(TG_ACCEPT_PAUSE_MS);

	set_enabled(p, 0);
	if (evtimer_add(p->resume, &delay) != 0)
		set_enabled(p, 1);
}

/* End the pause. A set that holds a connection accepted at the limit asks
 * its owner to start it first, and stays paused while there is no room. */
static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_accept_pause *p = arg;

	(void)fd;
	(void)what;
	if (p->holding) {
		if (p->room_cb == NULL || !p->room_cb(p->room_arg)) {
			pause_set(p);
			return;
		}
		p->holding = 0;
	}
	set_enabled(p, 1);
}

struct tg_accept_pause *
tg_accept_pause_new(struct event_base *base, struct evconnlistener **listeners,
                    size_t n_listeners, const char *owner, _Atomic uint64_t *errors,
                    struct tg_accept_limit *limit)
{
	struct tg_accept_pause *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->resume = evtimer_new(base, resume_cb, p);
	if (p->resume == NULL) {
		free(p);
		return NULL;
	}
	p->listeners = listeners;
	p->n_listeners = n_listeners;
	snprintf(p->owner, sizeof(p->owner), "%s", owner);
	p->errors = errors;
	p->limit = limit;
	return p;
}

/* Note one event of b at now_ns and return 1 if it is to be logged: it
 * starts a burst, or the last line is TG_ACCEPT_LOG_INTERVAL_MS old. Then
 * *unlogged is set to the events left out since that line. */
static int
note_burst(struct burst *b, uint64_t now_ns, uint64_t *unlogged)
{
	int starts_burst = b->last_ns == 0 ||
	                   now_ns - b->last_ns >= TG_ACCEPT_BURST_GAP_MS * TG_NS_PER_MS;
	int interval_over = now_ns - b->logged_ns >= TG_ACCEPT_LOG_INTERVAL_MS * TG_NS_PER_MS;

	b->last_ns = now_ns;
	if (!starts_burst && !interval_over) {
		b->unlogged++;
		return 0;
	}
	*unlogged = b->unlogged;
	b->unlogged = 0;
	b->logged_ns = now_ns;
	return 1;
}

/* Write "; N more failures since the last message", or "" when n is 0. */
static void
format_unlogged(uint64_t n, const char *what, char *buf, size_t size)
{
	buf[0] = '\0';
	if (n > 0)
		snprintf(buf, size, "; %" PRIu64 " more %s%s since the last message", n, what,
		         n == 1 ? "" : "s");
}

/* Write " (open files limit N)", the soft limit of the process, into buf,
 * or "" when it cannot be read. */
static void
format_open_files(char *buf, size_t size)
{
	struct rlimit rl;

	buf[0] = '\0';
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(buf, size, " (no open files limit)");
	else
		snprintf(buf, size, " (open files limit %llu)", (unsigned long long)rl.rlim_cur);
}

static void
log_failure(const struct tg_accept_pause *p, int err, int paused, uint64_t unlogged)
{
	char limit[64];
	char earlier[96] = "";

	limit[0] = '\0';
	if (err == EMFILE || err == ENFILE)
		format_open_files(limit, sizeof(limit));
	format_unlogged(unlogged, "failure", earlier, sizeof(earlier));
	if (paused)
		tg_error("%s: accept failed: %s%s; new connections paused for %d ms%s",
		         p->owner, strerror(err), limit, TG_ACCEPT_PAUSE_MS, earlier);
	else
		tg_warn("%s: accept failed: %s; that connection is lost, others are "
		        "still accepted%s", p->owner, strerror(err), earlier);
}

void
tg_accept_pause_error(struct tg_accept_pause *p, int err)
{
	int pauses = tg_accept_error_pauses(err);
	uint64_t unlogged = 0;

	if (p->errors != NULL)
		atomic_fetch_add_explicit(p->errors, 1, memory_order_relaxed);

	if (pauses)
		pause_set(p);

	if (note_burst(&p->failures, tg_now_ns(), &unlogged))
		log_failure(p, err, pauses, unlogged);
}

void
tg_accept_pause_set_room_cb(struct tg_accept_pause *p, int (*room_cb)(void *arg), void *arg)
{
	p->room_cb = room_cb;
	p->room_arg = arg;
}

int
tg_accept_pause_claim(struct tg_accept_pause *p)
{
	size_t open;

	if (p->limit == NULL)
		return 1;

	/* A compare-and-swap rather than an add, so that sets on other
	 * threads never take the count past max together. */
	open = atomic_load_explicit(&p->limit->open, memory_order_relaxed);
	do {
		if (open >= p->limit->max)
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(&p->limit->open, &open, open + 1,
	                                                memory_order_relaxed,
	                                                memory_order_relaxed));
	return 1;
}

void
tg_accept_pause_hold(struct tg_accept_pause *p)
{
	uint64_t unlogged = 0;
	char limit[64], earlier[96];

	assert(p->limit != NULL);
	p->holding = 1;
	pause_set(p);
	atomic_fetch_add_explicit(&p->limit->reached, 1, memory_order_relaxed);
	if (!note_burst(&p->limit_pauses, tg_now_ns(), &unlogged))
		return;
	format_open_files(limit, sizeof(limit));
	format_unlogged(unlogged, "pause", earlier, sizeof(earlier));
	tg_warn("%s: stopped accepting at the connection limit of %zu (%zu open), which "
	        "keeps a descriptor for the upstream connection of each%s; a new connection "
	        "waits until one closes or a keep-alive connection of this worker is idle, "
	        "which is then closed for it%s", p->owner, p->limit->max,
	        atomic_load_explicit(&p->limit->open, memory_order_relaxed), limit, earlier);
}

void
tg_accept_pause_closed(struct tg_accept_pause *p)
{
	if (p->limit != NULL)
		atomic_fetch_sub_explicit(&p->limit->open, 1, memory_order_relaxed);

	/* The held connection may take this place. It starts from the event
	 * loop, not from within the close of another connection. */
	if (p->holding) {
		evtimer_del(p->resume);
		event_active(p->resume, EV_TIMEOUT, 1);
		return;
	}

	/* A pending resume means a pause that no cancel has ended. */
	if (event_pending(p->resume, EV_TIMEOUT, NULL) && !limit_reached(p)) {
		evtimer_del(p->resume);
		set_enabled(p, 1);
	}
}

void
tg_accept_pause_cancel(struct tg_accept_pause *p)
{
	if (p == NULL)
		return;
	evtimer_del(p->resume);
	p->holding = 0;
}

void
tg_accept_pause_free(struct tg_accept_pause *p)
{
	if (p == NULL)
		return;
	event_free(p->resume);
	free(p);
}
