/*
 * Admin listener on the main thread. It uses libevent's evhttp: the admin
 * side sees little traffic and needs none of the proxy's streaming control.
 * A scrape of /metrics runs here too, summing the workers' shards while
 * they go on recording.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "trace-export.h"
#include "worker.h"

#define ADMIN_MAX_HEAD (16 * 1024)
#define ADMIN_MAX_BODY 1024
#define ADMIN_TIMEOUT_S 30

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

static void
healthz_cb(struct evhttp_request *r, void *arg)
{
	(void)arg;
	send_text(r, 200, "OK", "ok");
}

static void
readyz_cb(struct evhttp_request *r, void *arg)
{
	struct tg_runtime *rt = arg;

	if (atomic_load(&rt->draining))
		send_text(r, 503, "Service Unavailable", "draining");
	else if (!atomic_load(&rt->ready))
		send_text(r, 503, "Service Unavailable", "starting");
	else
		send_text(r, 200, "OK", "ready");
}

/* Prometheus text format, or OpenMetrics when the Accept header prefers
 * it, as Prometheus itself does. The tracer's and the access log's
 * counters follow the gateway's families, before the end that OpenMetrics
 * requires. */
static void
metrics_cb(struct evhttp_request *r, void *arg)
{
	struct tg_runtime *rt = arg;
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r), "Accept");
	enum tg_metrics_format format = tg_metrics_negotiate(accept);
	struct evbuffer *body = evbuffer_new();
	int rc = body == NULL || tg_metrics_scrape(body, format) != 0;

	if (rc == 0 && rt->tracer != NULL)
		rc = tg_tracer_write_metrics(rt->tracer, body, format);
	if (rc == 0)
		rc = tg_accesslog_write_metrics(&rt->access_log, body, format);
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

static void
send_json(struct evhttp_request *r, json_t *value)
{
	struct evbuffer *body = evbuffer_new();
	char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;

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

	send_json(r, tg_tracer_recent_list(rt->tracer));
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
	trace = tg_tracer_recent_get(rt->tracer, path + sizeof(prefix) - 1);
	if (trace == NULL)
		send_text(r, 404, "Not Found", "no such trace among the recent ones; "
		          "GET /api/traces lists them");
	else
		send_json(r, trace);
	return 1;
}

static void
not_found_cb(struct evhttp_request *r, void *arg)
{
	if (trace_cb(r, arg))
		return;
	send_text(r, 404, "Not Found", "not found; try /metrics, /healthz, /readyz or /api/traces");
}

struct evhttp *
tg_admin_start(struct event_base *base, const char *address, struct tg_runtime *rt)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct evconnlistener *listener;
	struct evhttp *http;

	if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&ss, &len) != 0) {
		tg_error("admin address %s is not a numeric host:port", address);
		return NULL;
	}
	listener = evconnlistener_new_bind(base, NULL, NULL,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                   LEV_OPT_REUSEABLE, 128,
	                                   (struct sockaddr *)&ss, len);
	if (listener == NULL) {
		tg_error("cannot listen on admin address %s: %s", address,
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return NULL;
	}

	http = evhttp_new(base);
	if (http == NULL || evhttp_bind_listener(http, listener) == NULL) {
		tg_error("cannot start the admin server on %s", address);
		if (http != NULL)
			evhttp_free(http);
		evconnlistener_free(listener);
		return NULL;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);

	/* The admin endpoints take no body and short heads; without these
	 * bounds evhttp buffers whatever a local client sends. */
	evhttp_set_max_headers_size(http, ADMIN_MAX_HEAD);
	evhttp_set_max_body_size(http, ADMIN_MAX_BODY);
	evhttp_set_timeout(http, ADMIN_TIMEOUT_S);
	evhttp_set_cb(http, "/metrics", metrics_cb, rt);
	evhttp_set_cb(http, "/healthz", healthz_cb, rt);
	evhttp_set_cb(http, "/readyz", readyz_cb, rt);
	evhttp_set_cb(http, "/api/traces", traces_cb, rt);
	evhttp_set_gencb(http, not_found_cb, rt);
	return http;
}
