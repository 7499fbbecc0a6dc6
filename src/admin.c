/*
 * Admin listener on the main thread. Its connections are read, limited,
 * kept alive and refused by the same code as the gateway's listeners
 * (client.c): admin-conns.c hosts them on a site whose dispatch comes
 * here instead of to the routes. So a malformed request gets the same
 * status and message on both, in text here. A scrape of /metrics runs on
 * this thread, summing the workers' shards while they go on recording.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <llhttp.h>

#include "admin-conns.h"
#include "admin.h"
#include "cache-redis.h"
#include "config.h"
#include "json-double.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "request.h"
#include "tls-handshake.h"
#include "trace-export.h"
#include "worker.h"

/* The admin endpoints take no body and short heads. */
#define ADMIN_MAX_HEAD (16 * 1024)
#define ADMIN_MAX_BODY 1024

#define ADMIN_ALLOW "Allow: GET, HEAD\r\n"
#define TEXT_TYPE "text/plain; charset=utf-8"

struct tg_admin {
	struct tg_site site;
	struct tg_admin_conns *conns;
};

static void
send_text(struct tg_request *req, int status, const char *text)
{
	struct evbuffer *body = evbuffer_new();

	if (body != NULL)
		evbuffer_add_printf(body, "%s\n", text);
	tg_relay_local_response_typed(req, status, TEXT_TYPE, NULL, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* Return 1 when method, an enum llhttp_method, is defined by RFC 9110 or
 * RFC 5789 (PATCH). Every endpoint rejects such a method with 405, and any
 * other with 501, which RFC 9110 section 15.6.2 gives to a method the
 * server does not recognize. */
static int
is_standard_method(int method)
{
	switch (method) {
	case HTTP_GET: case HTTP_HEAD: case HTTP_POST: case HTTP_PUT: case HTTP_DELETE:
	case HTTP_CONNECT: case HTTP_OPTIONS: case HTTP_TRACE: case HTTP_PATCH:
		return 1;
	}
	return 0;
}

/* Return 1 when the admin listener serves path. */
static int
is_admin_path(const char *path)
{
	static const char trace_prefix[] = "/api/traces/";

	return strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
	       strcmp(path, "/readyz") == 0 || strcmp(path, "/api/traces") == 0 ||
	       strncmp(path, trace_prefix, sizeof(trace_prefix) - 1) == 0;
}

/*
 * Return the error that the head of req alone earns, or TG_OK. A method
 * that is not a standard one gets 501, a path the listener does not serve
 * 404, and a method other than GET and HEAD, the methods of every
 * endpoint, 405. message gets the client's message. A client that waits
 * for 100 Continue gets this error in place of it (tg_site.head_refusal).
 */
static enum tg_error
refusal(const struct tg_request *req, char *message, size_t size)
{
	if (!is_standard_method(req->method_id)) {
		snprintf(message, size, "the admin listener does not implement this method; "
		         "use GET or HEAD");
		return TG_E_NOT_IMPLEMENTED;
	}
	if (!is_admin_path(req->path)) {
		snprintf(message, size, "not found; try /metrics, /healthz, /readyz or "
		         "/api/traces");
		return TG_E_NO_ROUTE;
	}
	if (req->method_id != HTTP_GET && req->method_id != HTTP_HEAD) {
		snprintf(message, size, "%s is not allowed on %.128s; use GET or HEAD",
		         req->method, req->path);
		return TG_E_METHOD_NOT_ALLOWED;
	}
	message[0] = '\0';
	return TG_OK;
}

static void
answer_readyz(struct tg_request *req)
{
	struct tg_runtime *rt = req->worker->runtime;

	if (atomic_load(&rt->draining))
		send_text(req, 503, "draining");
	else if (!atomic_load(&rt->ready))
		send_text(req, 503, "starting");
	else
		send_text(req, 200, "ready");
}

/* Write the families that follow the gateway's in a scrape: the tracer's,
 * the access log's, the listeners' (accept errors, failed TLS handshakes)
 * and the Redis clients'. Returns 0, or -1 when out of memory. */
static int
write_process_metrics(struct tg_runtime *rt, struct evbuffer *body,
                      enum tg_metrics_format format)
{
	int rc = 0;

	if (rt->tracer != NULL)
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
		rc = tg_tls_handshake_write_metrics(rt->tls_listeners, rt->n_tls_listeners, body,
		                                    format);
	if (rc == 0)
		rc = tg_cache_redis_write_metrics(body, format);
	return rc;
}

/* Prometheus text format, or OpenMetrics when the Accept header prefers
 * it, as Prometheus itself does, with the end that OpenMetrics
 * requires. */
static void
answer_metrics(struct tg_request *req)
{
	const char *accept = tg_headers_get(&req->headers, "Accept");
	enum tg_metrics_format format = tg_metrics_negotiate(accept);
	struct evbuffer *body = evbuffer_new();
	int rc;

	rc = body == NULL || tg_metrics_scrape(body, format) != 0;
	if (rc == 0)
		rc = write_process_metrics(req->worker->runtime, body, format);
	if (rc == 0)
		rc = tg_metrics_scrape_end(body, format);
	if (rc != 0) {
		tg_error("metrics scrape failed: out of memory");
		send_text(req, 500, "metrics scrape failed: out of memory");
	} else {
		tg_relay_local_response_typed(req, 200, tg_metrics_content_type(format), NULL,
		                              body);
	}
	if (body != NULL)
		evbuffer_free(body);
}

/* Send value, released here, as compact JSON dumped with flags added. */
static void
send_json(struct tg_request *req, json_t *value, size_t flags)
{
	struct evbuffer *body = evbuffer_new();
	char *text = value ? json_dumps(value, JSON_COMPACT | flags) : NULL;

	json_decref(value);
	if (body == NULL || text == NULL) {
		free(text);
		if (body != NULL)
			evbuffer_free(body);
		send_text(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(body, "%s\n", text);
	free(text);
	tg_relay_local_response_typed(req, 200, "application/json", NULL, body);
	evbuffer_free(body);
}

/* GET /api/traces: the recent traces, newest first, with the exporter's
 * counters. GET /api/traces/{trace_id}: one recent trace as an OTLP
 * ExportTraceServiceRequest. */
static void
answer_traces(struct tg_request *req)
{
	static const char prefix[] = "/api/traces/";
	struct tg_tracer *tracer = req->worker->runtime->tracer;
	json_t *trace;

	/* The only reals of the list are durations, written as the access
	 * log writes its own: jansson's precision gives the text that
	 * tg_json_double_text() gives for as many digits. */
	if (strcmp(req->path, "/api/traces") == 0) {
		send_json(req, tg_tracer_recent_list(tracer),
		          JSON_REAL_PRECISION(TG_JSON_DURATION_DIGITS));
		return;
	}
	trace = tg_tracer_recent_get(tracer, req->path + sizeof(prefix) - 1);
	if (trace == NULL)
		send_text(req, 404, "no such trace among the recent ones; "
		          "GET /api/traces lists them");
	else
		send_json(req, trace, 0);
}

/* Respond to req, read whole, by its path: the dispatch of the site. */
static void
admin_dispatch(struct tg_request *req)
{
	char message[256];
	enum tg_error err = refusal(req, message, sizeof(message));

	if (err != TG_OK) {
		tg_request_fail_with(req, err, err == TG_E_NO_ROUTE ? NULL : ADMIN_ALLOW, message);
		return;
	}
	if (strcmp(req->path, "/healthz") == 0)
		send_text(req, 200, "ok");
	else if (strcmp(req->path, "/readyz") == 0)
		answer_readyz(req);
	else if (strcmp(req->path, "/metrics") == 0)
		answer_metrics(req);
	else
		answer_traces(req);
}

void
tg_admin_set_config(struct tg_admin *admin, struct tg_config *config)
{
	tg_admin_conns_set_config(admin->conns, config);
}

void
tg_admin_free(struct tg_admin *admin)
{
	if (admin == NULL)
		return;
	tg_admin_conns_free(admin->conns);
	free(admin);
}

struct tg_admin *
tg_admin_start(struct event_base *base, struct tg_config *config, struct tg_runtime *rt)
{
	struct tg_admin *admin = calloc(1, sizeof(*admin));
	tg_msec_t idle = config->admin_idle_timeout;

	if (admin == NULL) {
		tg_error("cannot start the admin server on %s: out of memory", config->admin.address);
		return NULL;
	}
	admin->site = (struct tg_site){
		.dispatch = admin_dispatch,
		.head_refusal = refusal,
		.allow_lines = ADMIN_ALLOW,
		/* admin_idle_timeout bounds every wait for the client: for a
		 * request, for each part of it, and for it to take a response. */
		.limits = {
			.max_body = ADMIN_MAX_BODY, .max_header = ADMIN_MAX_HEAD,
			.client_header_timeout = idle, .client_body_timeout = idle,
			.keepalive_timeout = idle, .send_timeout = idle,
		},
		.limits_name = "the admin listener's ",
		.timeout_name = "admin_idle_timeout",
	};
	admin->conns = tg_admin_conns_new(base, config, rt, &admin->site,
	                                  config->admin_max_connections);
	if (admin->conns == NULL) {
		free(admin);
		return NULL;
	}
	return admin;
}
