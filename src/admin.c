/*
 * Admin listener on the main thread. It uses libevent's evhttp: the admin
 * side sees little traffic and needs none of the proxy's streaming control.
 * A scrape of /metrics runs here too, summing the workers' shards while
 * they go on recording. admin-conns.c caps the number of connections.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>

#include "accept-pause.h"
#include "admin-conns.h"
#include "admin-pages.h"
#include "admin.h"
#include "cache-redis.h"
#include "clock.h"
#include "config.h"
#include "json-double.h"
#include "log.h"
#include "metrics.h"
#include "trace-export.h"
#include "worker.h"

/* The type evhttp gives a request whose method is not one of the nine it
 * parses (PROPFIND, BREW). libevent 2.1.12 defines it privately, as
 * EVHTTP_REQ_UNKNOWN_ in http-internal.h, and responds to such a request
 * with an HTML 501 unless the allowed methods include it. */
#define ADMIN_UNKNOWN_METHOD (1 << 15)

/* Every method reaches the callbacks, so that a wrong one gets a text
 * response with Allow from admit_method() rather than evhttp's HTML 501.
 * The requests that evhttp rejects before any callback runs get the text
 * pages of admin-pages.h. */
#define ADMIN_ALLOWED_METHODS (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | \
                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | \
                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH | \
                               ADMIN_UNKNOWN_METHOD)

static void
send_text(struct evhttp_request *r, int status, const char *reason, const char *text)
{
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
	                  "text/plain; charset=utf-8");
	if (body != NULL)
		evbuffer_add_printf(body, "%s\n", text);
	evhttp_send_reply(r, status, reason, body);
	if (body != NULL)
		evbuffer_free(body);
}

static const char *
method_name(enum evhttp_cmd_type method)
{
	switch (method) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	}
	return "this method";
}

/* If r's method is one that evhttp does not parse, send 501 with an Allow
 * header and return 1. RFC 9110 section 15.6.2 gives 501 for a method the
 * server does not recognize. Returns 0 for any other method. */
static int
reject_unknown_method(struct evhttp_request *r)
{
	if ((int)evhttp_request_get_command(r) != ADMIN_UNKNOWN_METHOD)
		return 0;
	evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
	send_text(r, 501, "Not Implemented",
	          "the admin listener does not implement this method; use GET or HEAD");
	return 1;
}

/* Check that r's method is GET or HEAD, the methods of every admin
 * endpoint, and return 1 if so. Otherwise send 405 with an Allow header,
 * as the main listener does (501 for a method evhttp does not parse), and
 * return 0, after which the caller sends nothing. */
static int
admit_method(struct evhttp_request *r)
{
	enum evhttp_cmd_type method = evhttp_request_get_command(r);
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
	char message[256];

	if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD)
		return 1;
	if (reject_unknown_method(r))
		return 0;

	snprintf(message, sizeof(message), "%s is not allowed on %.128s; use GET or HEAD",
	         method_name(method), path != NULL ? path : "this path");
	evhttp_add_header(evhttp_request_get_output_headers(r), "Allow", "GET, HEAD");
	send_text(r, 405, "Method Not Allowed", message);
	return 0;
}

static void
healthz_cb(struct evhttp_request *r, void *arg)
{
	(void)arg;
	if (!admit_method(r))
		return;
	send_text(r, 200, "OK", "ok");
}

static void
readyz_cb(struct evhttp_request *r, void *arg)
{
	struct tg_runtime *rt = arg;

	if (!admit_method(r))
		return;
	if (atomic_load(&rt->draining))
		send_text(r, 503, "Service Unavailable", "draining");
	else if (!atomic_load(&rt->ready))
		send_text(r, 503, "Service Unavailable", "starting");
	else
		send_text(r, 200, "OK", "ready");
}

/* Prometheus text format, or OpenMetrics when the Accept header prefers
 * it, as Prometheus itself does. The tracer's, the access log's, the
 * listeners' and the Redis clients' counters follow the gateway's
 * families, before the end that OpenMetrics requires. */
static void
metrics_cb(struct evhttp_request *r, void *arg)
{
	struct tg_runtime *rt = arg;
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r), "Accept");
	enum tg_metrics_format format = tg_metrics_negotiate(accept);
	struct evbuffer *body;
	int rc;

	if (!admit_method(r))
		return;

	body = evbuffer_new();
	rc = body == NULL || tg_metrics_scrape(body, format) != 0;
	if (rc == 0 && rt->tracer != NULL)
		rc = tg_tracer_write_metrics(rt->tracer, body, format);
	if (rc == 0)
		rc = tg_accesslog_write_metrics(&rt->access_log, body, format);
	if (rc == 0)
		rc = tg_metrics_write_counter(body, format, "tollgate_accept_errors_total",
		                              "Failed accept() calls on the listeners and the "
		                              "admin listener, such as at the open-files limit.",
		                              atomic_load(&rt->accept_errors));
	if (rc == 0)
		rc = tg_metrics_write_counter(body, format, "tollgate_accept_limit_pauses_total",
		                              "Times a worker stopped accepting at the client "
		                              "connection limit, which keeps a descriptor for the "
		                              "upstream connection of each.",
		                              atomic_load(&rt->clients.reached));
	if (rc == 0)
		rc = tg_cache_redis_write_metrics(body, format);
	if (rc == 0)
		rc = tg_metrics_scrape_end(body, format);
	if (rc != 0) {
		tg_error("metrics scrape failed: out of memory");
		send_text(r, 500, "Internal Server Error", "metrics scrape failed: out of memory");
		if (body != NULL)
			evbuffer_free(body);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
	                  tg_metrics_content_type(format));
	evhttp_send_reply(r, 200, "OK", body);
	evbuffer_free(body);
}

/* Send value, released here, as compact JSON dumped with flags added. */
static void
send_json(struct evhttp_request *r, json_t *value, size_t flags)
{
	struct evbuffer *body = evbuffer_new();
	char *text = value ? json_dumps(value, JSON_COMPACT | flags) : NULL;

	json_decref(value);
	if (body == NULL || text == NULL) {
		free(text);
		if (body != NULL)
			evbuffer_free(body);
		send_text(r, 500, "Internal Server Error", "out of memory");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
	                  "application/json");
	evbuffer_add_printf(body, "%s\n", text);
	free(text);
	evhttp_send_reply(r, 200, "OK", body);
	evbuffer_free(body);
}

/* GET /api/traces: the recent traces, newest first, with the exporter's
 * counters. */
static void
traces_cb(struct evhttp_request *r, void *arg)
{
	struct tg_runtime *rt = arg;

	if (!admit_method(r))
		return;
	/* The only reals of the list are durations, written as the access
	 * log writes its own: jansson's precision gives the text that
	 * tg_json_double_text() gives for as many digits. */
	send_json(r, tg_tracer_recent_list(rt->tracer),
	          JSON_REAL_PRECISION(TG_JSON_DURATION_DIGITS));
}

/* GET /api/traces/{trace_id}: one recent trace as an OTLP
 * ExportTraceServiceRequest. Returns 0 when the path is another one. */
static int
trace_cb(struct evhttp_request *r, struct tg_runtime *rt)
{
	static const char prefix[] = "/api/traces/";
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
	json_t *trace;

	if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	if (!admit_method(r))
		return 1;
	trace = tg_tracer_recent_get(rt->tracer, path + sizeof(prefix) - 1);
	if (trace == NULL)
		send_text(r, 404, "Not Found", "no such trace among the recent ones; "
		          "GET /api/traces lists them");
	else
		send_json(r, trace, 0);
	return 1;
}

static void
not_found_cb(struct evhttp_request *r, void *arg)
{
	if (trace_cb(r, arg) || reject_unknown_method(r))
		return;
	send_text(r, 404, "Not Found", "not found; try /metrics, /healthz, /readyz or /api/traces");
}

struct tg_admin {
	struct evhttp *http;
	struct evconnlistener *listener;    /* freed by evhttp_free() */
	struct tg_accept_pause *accept_pause;
	struct tg_admin_conns *conns;
};

/* evhttp makes itself the argument of the listener's callbacks, so the
 * accept error callback finds the admin server here. */
static struct tg_admin *running_admin;

static void
admin_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)listener;
	(void)arg;
	tg_accept_pause_error(running_admin->accept_pause, err);
}

/* Bind the listener of admin and hand it to a new evhttp, which keeps at
 * most max_connections connections. Returns 0, or -1 after logging why. */
static int
open_admin(struct tg_admin *admin, struct event_base *base, const struct tg_listen *l,
           size_t max_connections, struct tg_runtime *rt)
{
	const char *address = l->address;
	struct evutil_addrinfo *ai = tg_listen_resolve(l, "admin address");
	char owner[96];

	if (ai == NULL)
		return -1;
	admin->listener = evconnlistener_new_bind(base, NULL, NULL,
	                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                          LEV_OPT_REUSEABLE, 128,
	                                          ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (admin->listener == NULL) {
		tg_error("cannot listen on admin address %s: %s", address,
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}

	snprintf(owner, sizeof(owner), "admin listener %s", address);
	admin->accept_pause = tg_accept_pause_new(base, &admin->listener, 1, owner,
	                                          &rt->accept_errors, NULL);
	admin->http = evhttp_new(base);
	if (admin->http != NULL && evhttp_bind_listener(admin->http, admin->listener) == NULL) {
		evhttp_free(admin->http);       /* frees no listener it was not bound to */
		admin->http = NULL;
	}
	if (admin->http != NULL)
		admin->conns = tg_admin_conns_new(base, admin->http, &admin->listener,
		                                  admin->accept_pause, max_connections, owner);
	if (admin->accept_pause == NULL || admin->http == NULL || admin->conns == NULL) {
		tg_error("cannot start the admin server on %s: out of memory", address);
		return -1;
	}
	evconnlistener_set_error_cb(admin->listener, admin_accept_error_cb);
	return 0;
}

void
tg_admin_free(struct tg_admin *admin)
{
	if (admin == NULL)
		return;
	tg_admin_conns_detach(admin->conns);
	tg_accept_pause_free(admin->accept_pause);
	if (admin->http != NULL)
		evhttp_free(admin->http);       /* frees the bound listener */
	else if (admin->listener != NULL)
		evconnlistener_free(admin->listener);
	tg_admin_conns_free(admin->conns);
	if (running_admin == admin)
		running_admin = NULL;
	free(admin);
}

struct tg_admin *
tg_admin_start(struct event_base *base, const struct tg_config *config,
               struct tg_runtime *rt)
{
	struct tg_admin *admin = calloc(1, sizeof(*admin));
	struct timeval idle_timeout = tg_timeval_ms(config->admin_idle_timeout);
	struct evhttp *http;

	assert(running_admin == NULL);
	if (admin == NULL) {
		tg_error("cannot start the admin server on %s: out of memory", config->admin.address);
		return NULL;
	}
	if (open_admin(admin, base, &config->admin, config->admin_max_connections, rt) != 0) {
		tg_admin_free(admin);
		return NULL;
	}
	running_admin = admin;

	http = admin->http;
	evhttp_set_allowed_methods(http, ADMIN_ALLOWED_METHODS);

	/* The admin endpoints take no body and short heads; without these
	 * bounds evhttp buffers whatever a local client sends. */
	evhttp_set_max_headers_size(http, TG_ADMIN_MAX_HEAD);
	evhttp_set_max_body_size(http, TG_ADMIN_MAX_BODY);
	/* evhttp applies this to every read and write, so it also closes a
	 * connection that waits this long for its next request. */
	evhttp_set_timeout_tv(http, &idle_timeout);
	evhttp_set_cb(http, "/metrics", metrics_cb, rt);
	evhttp_set_cb(http, "/healthz", healthz_cb, rt);
	evhttp_set_cb(http, "/readyz", readyz_cb, rt);
	evhttp_set_cb(http, "/api/traces", traces_cb, rt);
	evhttp_set_gencb(http, not_found_cb, rt);
	return admin;
}
