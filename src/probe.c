/*
 * Active health probes.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "clock.h"
#include "config.h"
#include "headers.h"
#include "health.h"
#include "log.h"
#include "probe.h"
#include "request.h"
#include "upstream.h"
#include "worker.h"

struct tg_probe {
	struct tg_probe *next;
	struct tg_worker *worker;
	struct tg_config *config;       /* keeps backend alive (a ref) */
	const struct tg_backend *backend;
	struct tg_backend target;       /* backend copy with the probe's timeouts */
	struct evbuffer *request;
	struct event *timer;
	struct tg_upstream_conn *conn;  /* probe in flight */
	int status;
};

static void probe_schedule(struct tg_probe *p);

static void
probe_done(struct tg_probe *p, int ok, const char *why)
{
	const struct tg_backend *b = p->backend;
	int was_ok = atomic_load(&b->state->probe_ok);
	uint64_t now_ns = tg_now_ns();
	enum tg_health_change change;

	p->conn = NULL;
	change = tg_health_probe_result(b, ok, now_ns);
	if (change == TG_HEALTH_RECOVERED)
		tg_info("backend %s: probe of %s succeeded; back in rotation", b->name,
		        b->health->probe_path);
	else if (change == TG_HEALTH_EJECTED)
		tg_warn("backend %s ejected for %.3f s after failed probes of %s (last: %s)", b->name,
		        (double)tg_health_ejection_left(b, now_ns) / TG_NS_PER_S,
		        b->health->probe_path, why);
	else if (!ok && was_ok)
		tg_warn("backend %s: probe of %s failed: %s", b->name, b->health->probe_path, why);
	probe_schedule(p);
}

static int
probe_on_head(void *arg, int status, struct tg_headers *headers)
{
	struct tg_probe *p = arg;

	(void)headers;
	p->status = status;
	return 0;
}

static int
probe_on_body(void *arg, const char *data, size_t len)
{
	(void)arg;
	(void)data;
	(void)len;
	return 0;
}

static void
probe_on_complete(void *arg)
{
	struct tg_probe *p = arg;
	char why[32];

	snprintf(why, sizeof(why), "status %d", p->status);
	probe_done(p, p->status >= 200 && p->status < 300, why);
}

static void
probe_on_error(void *arg, enum tg_error err, const char *detail)
{
	struct tg_probe *p = arg;

	(void)err;
	probe_done(p, 0, detail);
}

static const struct tg_upstream_handler probe_handler = {
	.on_head = probe_on_head,
	.on_body = probe_on_body,
	.on_complete = probe_on_complete,
	.on_error = probe_on_error,
};

static void
probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_probe *p = arg;
	enum tg_error err;

	(void)fd;
	(void)what;
	p->status = 0;
	p->conn = tg_upstream_send(p->worker, &p->target, p->request, &probe_handler, p, &err);
	if (p->conn == NULL)
		probe_done(p, 0, tg_error_info(err)->message);
}

static void
probe_schedule(struct tg_probe *p)
{
	tg_msec_t ms = p->backend->health->probe_interval;
	struct timeval tv = tg_timeval_ms(ms);

	event_add(p->timer, &tv);
}

static struct tg_probe *
probe_new(struct tg_worker *w, const struct tg_backend *b)
{
	const struct tg_health_policy *h = b->health;
	struct tg_probe *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->worker = w;
	p->config = tg_config_ref(w->config);
	p->backend = b;
	p->target = *b;
	if (h->probe_timeout > 0) {
		p->target.timeouts.connect = h->probe_timeout;
		p->target.timeouts.first_byte = h->probe_timeout;
		p->target.timeouts.idle = h->probe_timeout;
	}
	p->request = evbuffer_new();
	p->timer = evtimer_new(w->base, probe_timer_cb, p);
	if (p->request == NULL || p->timer == NULL ||
	    evbuffer_add_printf(p->request, "GET %s%s HTTP/1.1\r\nHost: %s\r\n%s%s%s"
	                        "User-Agent: tollgate-probe\r\nContent-Length: 0\r\n\r\n",
	                        b->base_path, h->probe_path, b->host_header,
	                        b->api_key ? tg_key_line_start(b->api_key_header) : "",
	                        b->api_key ? b->api_key : "", b->api_key ? "\r\n" : "") < 0) {
		if (p->request != NULL)
			evbuffer_free(p->request);
		if (p->timer != NULL)
			event_free(p->timer);
		tg_config_unref(p->config);
		free(p);
		return NULL;
	}
	return p;
}

void
tg_probes_stop(struct tg_worker *w)
{
	struct tg_probe *p = w->probes;

	while (p != NULL) {
		struct tg_probe *next = p->next;

		if (p->conn != NULL)
			tg_upstream_cancel(p->conn);
		event_free(p->timer);
		evbuffer_free(p->request);
		tg_config_unref(p->config);
		free(p);
		p = next;
	}
	w->probes = NULL;
}

void
tg_probes_restart(struct tg_worker *w)
{
	tg_probes_stop(w);
	for (size_t i = 0; i < w->config->n_backends; i++) {
		const struct tg_backend *b = &w->config->backends[i];
		struct tg_probe *p;

		if (b->health == NULL || b->health->probe_path == NULL || b->state == NULL)
			continue;
		p = probe_new(w, b);
		if (p == NULL) {
			tg_error("backend %s: cannot start its probe: out of memory", b->name);
			continue;
		}
		p->next = w->probes;
		w->probes = p;
		probe_schedule(p);
	}
}
