/*
 * Pausing listeners after accept() fails; see accept-pause.h.
 */
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

struct tg_accept_pause {
	struct event *resume;           /* timer that enables the set again */
	struct evconnlistener **listeners;  /* the owner's array */
	size_t n_listeners;
	char owner[64];
	_Atomic uint64_t *errors;       /* process-wide count, or NULL */
	uint64_t failed_ns;             /* tg_now_ns of the last failure; 0: none */
	uint64_t logged_ns;             /* of the last line logged */
	uint64_t unlogged;              /* failures since that line */
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

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	set_enabled(arg, 1);
}

struct tg_accept_pause *
tg_accept_pause_new(struct event_base *base, struct evconnlistener **listeners,
                    size_t n_listeners, const char *owner, _Atomic uint64_t *errors)
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
	return p;
}

/* Count one failure at now_ns and return 1 if it is to be logged: it
 * starts a burst, or the last line is TG_ACCEPT_LOG_INTERVAL_MS old. Then
 * *unlogged is set to the failures left out since that line. */
static int
note_failure(struct tg_accept_pause *p, uint64_t now_ns, uint64_t *unlogged)
{
	int starts_burst = p->failed_ns == 0 ||
	                   now_ns - p->failed_ns >= TG_ACCEPT_BURST_GAP_MS * TG_NS_PER_MS;
	int interval_over = now_ns - p->logged_ns >= TG_ACCEPT_LOG_INTERVAL_MS * TG_NS_PER_MS;

	p->failed_ns = now_ns;
	if (!starts_burst && !interval_over) {
		p->unlogged++;
		return 0;
	}
	*unlogged = p->unlogged;
	p->unlogged = 0;
	p->logged_ns = now_ns;
	return 1;
}

/* Write " (open files limit N)", the soft limit of the process, into buf
 * for the errors that it explains (EMFILE, ENFILE), and "" for others. */
static void
format_limit(int err, char *buf, size_t size)
{
	struct rlimit rl;

	buf[0] = '\0';
	if (err != EMFILE && err != ENFILE)
		return;
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

	format_limit(err, limit, sizeof(limit));
	if (unlogged > 0)
		snprintf(earlier, sizeof(earlier), "; %" PRIu64 " more failure%s since the last "
		         "message", unlogged, unlogged == 1 ? "" : "s");
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

	if (pauses) {
		struct timeval delay = tg_timeval_ms(TG_ACCEPT_PAUSE_MS);

		/* Without the timer the set would never accept again, so it goes
		 * on accepting. That spins until descriptors free, the lesser harm. */
		set_enabled(p, 0);
		if (evtimer_add(p->resume, &delay) != 0)
			set_enabled(p, 1);
	}

	if (note_failure(p, tg_now_ns(), &unlogged))
		log_failure(p, err, pauses, unlogged);
}

void
tg_accept_pause_cancel(struct tg_accept_pause *p)
{
	if (p != NULL)
		evtimer_del(p->resume);
}

void
tg_accept_pause_free(struct tg_accept_pause *p)
{
	if (p == NULL)
		return;
	event_free(p->resume);
	free(p);
}
