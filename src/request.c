/*
 * Request lifecycle and dispatch.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <llhttp.h>
#include <sanitizer/asan_interface.h>

#include "accesslog.h"
#include "attempt.h"
#include "auth.h"
#include "cache.h"
#include "client.h"
#include "clock.h"
#include "config.h"
#include "filter-request.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "relay.h"
#include "request-head.h"
#include "request-scan.h"
#include "request.h"
#include "route.h"
#include "trace.h"
#include "upstream.h"
#include "worker.h"

#define REQUEST_ID_MAX 128

/* The OpenAI and Anthropic endpoints the gateway handles, with the one
 * method each takes. An endpoint of GET takes HEAD too (RFC 9110 section
 * 9.3.2). */
struct endpoint {
	const char *path;
	int method;             /* enum llhttp_method */
	int needs_model;        /* the JSON body must name a model */
};

static const struct endpoint known_endpoints[] = {
	{"/v1/chat/completions", HTTP_POST, 1},
	{"/v1/completions", HTTP_POST, 1},
	{"/v1/embeddings", HTTP_POST, 1},
	{"/v1/models", HTTP_GET, 0},
	{"/v1/messages", HTTP_POST, 1},
};

/* Take one of the worker's spare requests, zeroed, or allocate one. The
 * spares save a calloc() of about 2 KiB per request, which is too large
 * for the thread cache of glibc 2.36 and so made malloc consolidate its
 * fast bins first. */
static struct tg_request *
request_alloc(struct tg_worker *w)
{
	struct tg_request *req;

	if (w->n_spare_requests == 0)
		return calloc(1, sizeof(*req));
	req = w->spare_requests[--w->n_spare_requests];
	ASAN_UNPOISON_MEMORY_REGION(req, sizeof(*req));
	memset(req, 0, sizeof(*req));
	return req;
}

/* Keep req as a spare of the worker, or free it when the worker has
 * TG_SPARE_REQUESTS_MAX. Under AddressSanitizer a spare is poisoned, so
 * that a use of a request after its end is still reported. */
static void
request_release(struct tg_worker *w, struct tg_request *req)
{
	if (w->n_spare_requests == TG_SPARE_REQUESTS_MAX) {
		free(req);
		return;
	}
	ASAN_POISON_MEMORY_REGION(req, sizeof(*req));
	w->spare_requests[w->n_spare_requests++] = req;
}

struct tg_request *
tg_request_new(struct tg_client *client)
{
	struct tg_request *req = request_alloc(client->worker);

	if (req == NULL)
		return NULL;
	req->body = tg_worker_buffer_take(client->worker);
	if (req->body == NULL) {
		request_release(client->worker, req);
		return NULL;
	}

	req->client = client;
	req->worker = client->worker;
	req->config = tg_config_ref(client->worker->config);
	/* One pair of readings serves every start: the access log's time, the
	 * metrics' durations and the trace's mapping to wall time. */
	req->start_ns = tg_now_ns();
	req->start_wall_ns = tg_wall_ns();
	tg_log_timestamp_at(req->start_wall_ns, req->time, sizeof(req->time));
	_Static_assert(sizeof(req->client_addr) == sizeof(client->addr),
	               "the client address is copied whole");
	memcpy(req->client_addr, client->addr, sizeof(req->client_addr));
	tg_headers_init(&req->headers);
	tg_headers_init(&req->response.headers);
	req->phase = TG_PHASE_REQUEST;
	req->cause = TG_CAUSE_NONE;
	req->worker->active_requests++;
	tg_metrics_request_start(req);
	return req;
}

/* Keep the client's X-Request-Id when it is printable and not too long,
 * so ids chain across services; otherwise make one. */
static void
assign_request_id(struct tg_request *req)
{
	const char *given = tg_headers_get(&req->headers, "X-Request-Id");
	size_t len = given ? strlen(given) : 0;
	int printable = len > 0 && len <= REQUEST_ID_MAX;

	for (size_t i = 0; printable && i < len; i++)
		printable = given[i] > 0x20 && given[i] < 0x7f;

	if (printable)
		memcpy(req->id, given, len + 1);
	else
		tg_worker_next_request_id(req->worker, req->id, sizeof(req->id));
}

/* 1 when endpoint takes requests of method (enum llhttp_method). */
static int
endpoint_takes(const struct endpoint *endpoint, int method)
{
	return method == endpoint->method ||
	       (endpoint->method == HTTP_GET && method == HTTP_HEAD);
}

/* The methods endpoint takes, as an Allow value lists them. */
static const char *
endpoint_allow(const struct endpoint *endpoint)
{
	if (endpoint->method == HTTP_GET)
		return "GET, HEAD";
	return llhttp_method_name((llhttp_method_t)endpoint->method);
}

static const struct endpoint *
find_endpoint(const char *path)
{
	for (size_t i = 0; i < sizeof(known_endpoints) / sizeof(known_endpoints[0]); i++) {
		if (strcmp(known_endpoints[i].path, path) == 0)
			return &known_endpoints[i];
	}
	return NULL;
}

/* What is wrong with a body jansson rejected, in words for the client.
 * jansson's own text is not passed on: it names its flags (such as
 * JSON_ALLOW_NUL) and quotes the offending token. */
static const char *
describe_json_error(const json_error_t *error)
{
	switch (json_error_code(error)) {
	case json_error_null_character:
		return "the request body has \\u0000 (a NUL character) in a string, "
		       "which is not accepted";
	case json_error_null_byte_in_key:
		return "the request body has \\u0000 (a NUL character) in an object key, "
		       "which is not accepted";
	case json_error_duplicate_key:
		return "the request body has an object with the same key twice";
	case json_error_invalid_utf8:
		return "the request body is not valid UTF-8";
	case json_error_premature_end_of_input:
		return "the request body is not valid JSON: it ends before the value is complete";
	case json_error_end_of_input_expected:
		return "the request body is not valid JSON: more data follows the value";
	case json_error_stack_overflow:
		return "the request body nests arrays and objects too deeply";
	case json_error_numeric_overflow:
		return "the request body has a number too large to represent";
	default:
		return "the request body is not valid JSON";
	}
}

/* Write into message why the body at data (len bytes, not empty) fails as
 * a whole when it starts with a byte order mark or is not UTF-8, because
 * jansson reports only the first byte it could not read. Returns 1 when a
 * message was written, else 0. */
static int
describe_encoding(const unsigned char *data, size_t len, char *message, size_t size)
{
	if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf) {
		snprintf(message, size, "the request body starts with a byte order mark "
		         "(bytes EF BB BF), which JSON sent over a network must not have "
		         "(RFC 8259, section 8.1); send the JSON text without it");
		return 1;
	}

	/* A UTF-16 or UTF-32 text starts with a byte order mark, or has a NUL
	 * byte beside its first character, which no UTF-8 JSON text has. */
	if ((len >= 2 && ((data[0] == 0xff && data[1] == 0xfe) ||
	                  (data[0] == 0xfe && data[1] == 0xff))) ||
	    data[0] == 0 || (len >= 2 && data[1] == 0)) {
		snprintf(message, size, "the request body looks like UTF-16 or UTF-32 text (its "
		         "first bytes are %02X %02X); JSON sent over a network must be UTF-8 "
		         "(RFC 8259, section 8.1)", data[0], len >= 2 ? data[1] : 0);
		return 1;
	}
	return 0;
}

/*
 * Write into message what is wrong with the body at data (len bytes, not
 * empty) that jansson rejected with error, and where. jansson counts
 * columns from 1, but for a byte that is not UTF-8 gives the column before
 * it (0 for the first byte), so the column is moved onto that byte, which
 * error->position gives. jansson reports a lone surrogate escape as a
 * syntax error that only its text distinguishes, at the column where the
 * string containing it ends.
 */
static void
describe_body_error(const char *data, size_t len, const json_error_t *error,
                    char *message, size_t size)
{
	const unsigned char *bytes = (const unsigned char *)data;
	unsigned escape;

	if (describe_encoding(bytes, len, message, size))
		return;

	if (json_error_code(error) == json_error_invalid_utf8 && (size_t)error->position < len) {
		snprintf(message, size, "the request body has the byte %02X, which is not valid "
		         "UTF-8 there, at line %d, column %d; JSON sent over a network must be "
		         "UTF-8", bytes[error->position], error->line, error->column + 1);
		return;
	}
	if (json_error_code(error) == json_error_invalid_syntax &&
	    sscanf(error->text, "invalid Unicode '\\u%4x'", &escape) == 1) {
		snprintf(message, size, "the request body has \\u%04X, half of a UTF-16 "
		         "surrogate pair, without its other half, in the string that ends at "
		         "line %d, column %d; a \\uD800 to \\uDBFF escape must be followed by "
		         "one from \\uDC00 to \\uDFFF", escape, error->line, error->column);
		return;
	}
	snprintf(message, size, "%s (line %d, column %d)", describe_json_error(error),
	         error->line, error->column);
}

/*
 * Parse req's body, whose bytes are at data, with jansson. Duplicate keys
 * are rejected: the gateway would route on one "model" while an upstream
 * might read the other. An integer that jansson cannot store (beyond 64
 * bits) is valid JSON for the backend to judge, so such a body is read
 * again with every integer as a real, and req->body_ints_as_reals set.
 * The body still goes upstream as the client wrote it, or with masked
 * texts spliced in (json-splice.h). Only readers of the tree see the
 * reals. The cache passes such a body by, since integers
 * that differ beyond a double's 53 bits would share a key. Tracing reads
 * its parameters from the text (tg_request_numbers_of_text()).
 */
static json_t *
load_body(struct tg_request *req, const char *data, json_error_t *error)
{
	json_t *tree = json_loadb(data, req->body_len, JSON_REJECT_DUPLICATES, error);

	if (tree == NULL && json_error_code(error) == json_error_numeric_overflow) {
		tree = json_loadb(data, req->body_len,
		                  JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, error);
		req->body_ints_as_reals = tree != NULL;
	}
	return tree;
}

/* Parse the body with jansson, for a body the scan was unsure of, and
 * pick out the members the scan would have read. Returns TG_OK, or the
 * error to respond with and its message in message. */
static enum tg_error
parse_tree(struct tg_request *req, const struct endpoint *endpoint, const char *data,
           char *message, size_t size)
{
	json_error_t error;
	json_t *model;

	/* jansson would report an empty body as an invalid argument, with no
	 * line or column. */
	if (req->body_len == 0) {
		snprintf(message, size, "the request body is empty; send a JSON object "
		         "with a \"model\" member");
		return TG_E_INVALID_JSON;
	}

	req->body_json = load_body(req, data, &error);
	if (req->body_json == NULL) {
		describe_body_error(data, req->body_len, &error, message, size);
		return TG_E_INVALID_JSON;
	}
	if (!json_is_object(req->body_json))
		return TG_E_INVALID_JSON;

	model = json_object_get(req->body_json, "model");
	if (json_is_string(model))
		req->model = json_string_value(model);
	else if (endpoint != NULL && endpoint->needs_model)
		return TG_E_MISSING_MODEL;

	req->stream = json_is_true(json_object_get(req->body_json, "stream"));
	req->user = json_string_value(json_object_get(req->body_json, "user"));
	req->stream_options = tg_stream_options_of(req->body_json);
	req->body_has_members = json_object_size(req->body_json) > 0;
	return TG_OK;
}

/* What the scan of req's body reads besides the members every request
 * needs (enum tg_scan_reads). */
static unsigned
scan_reads(const struct tg_request *req)
{
	unsigned reads = 0;

	if (tg_trace_reads_request_params(req))
		reads |= TG_SCAN_PARAMS;
	if (req->config->routes_screen_request_texts)
		reads |= TG_SCAN_TEXTS;
	return reads;
}

/* 1 when the media type of content_type, a Content-Type value, is JSON:
 * application/json, or any type with the +json suffix (RFC 6839), such as
 * application/merge-patch+json. Parameters such as charset are ignored. */
static int
names_json(const char *content_type)
{
	static const char json[] = "application/json";
	static const char suffix[] = "+json";
	const char *type = content_type + strspn(content_type, " \t");
	size_t len = strcspn(type, ";");

	while (len > 0 && (type[len - 1] == ' ' || type[len - 1] == '\t'))
		len--;
	if (len == sizeof(json) - 1 && strncasecmp(type, json, len) == 0)
		return 1;
	return len > sizeof(suffix) - 1 &&
	       strncasecmp(type + len - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) == 0;
}

/*
 * 1 when req's body is forwarded unread and unchanged: a body whose
 * Content-Type is not JSON (an audio or file upload in multipart/form-data,
 * say), on a path that is not one of the JSON endpoints. The endpoints
 * that must name a model take JSON only, so their bodies are read as JSON
 * whatever the header says ("curl -d" sends a form type). A body with no
 * Content-Type is read as JSON, as it was before the header was weighed:
 * OpenAI and Anthropic clients always send one with JSON.
 */
static int
body_is_opaque(const struct tg_request *req, const struct endpoint *endpoint, int has_body)
{
	const char *type;

	if (!has_body || (endpoint != NULL && endpoint->needs_model))
		return 0;
	type = tg_headers_get(&req->headers, "Content-Type");
	return type != NULL && !names_json(type);
}

/* 1 when the gateway reads req's body as JSON: any body it has that is
 * not opaque, and the missing body of an endpoint that needs a model. A
 * request without a body is forwarded unchanged. */
static int
reads_body(const struct tg_request *req, const struct endpoint *endpoint)
{
	if (req->body_opaque)
		return 0;
	return req->body_len > 0 || (endpoint != NULL && endpoint->needs_model);
}

/* By RFC 9110 section 15.5.16, a 415 for a content coding ought to list
 * the accepted codings in Accept-Encoding. */
#define ACCEPT_IDENTITY "Accept-Encoding: identity\r\n"

/* Whether req's body has a content coding other than identity, which the
 * gateway rejects on a body it reads. It would read compressed bytes as
 * JSON, and upstream would get a body rewritten as plain JSON under a
 * header that names a coding. Returns 1 with the reason in message. */
static int
has_rejected_coding(const struct tg_request *req, char *message, size_t size)
{
	const char *coding;
	size_t len;

	coding = tg_headers_content_coding(&req->headers, &len);
	if (coding == NULL)
		return 0;

	snprintf(message, size, "the request body has Content-Encoding \"%.*s\"; "
	         "the gateway reads request bodies and accepts only identity (uncompressed)",
	         (int)(len < 40 ? len : 40), coding);
	return 1;
}

/* Reject req with 415 when its body has a content coding
 * (has_rejected_coding()). Returns 1 when rejected. */
static int
reject_content_coding(struct tg_request *req)
{
	char message[160];

	if (!has_rejected_coding(req, message, sizeof(message)))
		return 0;
	tg_request_fail_with(req, TG_E_CONTENT_CODING, ACCEPT_IDENTITY, message);
	return 1;
}

/* Read model, stream, user and stream options from the body, which must
 * be a JSON object that jansson takes. The scan reads most bodies and
 * leaves the tree to tg_request_json(). jansson reads the others, and
 * those of a request whose trace records message content or of a config
 * whose routes read the tree. Returns TG_OK, or the error to respond
 * with and its message in message. */
static enum tg_error
parse_body(struct tg_request *req, const struct endpoint *endpoint, char *message,
           size_t size)
{
	struct tg_request_facts facts;
	const char *data;

	if (!reads_body(req, endpoint))
		return TG_OK;

	/* A request whose trace records message content, or one a plugin or
	 * moderation filter may read, is likely to need the tree, so a scan
	 * first would be work done twice. */
	data = (const char *)evbuffer_pullup(req->body, -1);
	if (req->config->routes_read_request_tree || tg_trace_reads_request_tree(req) ||
	    tg_request_scan(data, req->body_len, scan_reads(req), &req->worker->scan_keys,
	                    &facts) != TG_SCAN_READ)
		return parse_tree(req, endpoint, data, message, size);

	req->body_json_pending = 1;
	req->scanned = facts;
	req->model = facts.model;
	req->user = facts.user;
	req->stream = facts.stream;
	req->stream_options = facts.stream_options;
	req->body_has_members = facts.has_members;
	if (req->model == NULL && endpoint != NULL && endpoint->needs_model)
		return TG_E_MISSING_MODEL;
	return TG_OK;
}

json_t *
tg_request_json_if_built(const struct tg_request *req)
{
	return req->body_json;
}

int
tg_request_body_is_object(const struct tg_request *req)
{
	return req->body_json_pending || json_is_object(req->body_json);
}

json_t *
tg_request_json(struct tg_request *req)
{
	const char *data;
	json_error_t error;

	if (req->body_json != NULL || !req->body_json_pending)
		return req->body_json;

	/* The scan found that jansson takes the body: only memory can fail,
	 * and then the tree stays pending for the next call. */
	data = (const char *)evbuffer_pullup(req->body, -1);
	req->body_json = load_body(req, data, &error);
	req->body_json_pending = req->body_json == NULL;
	return req->body_json;
}

/* 1 when route lists its model for req: a model it names exactly, and
 * match.headers that hold for this request. Such conditions tell callers
 * apart (a tenant, an API version), and a caller should see the models it
 * can reach. For the same reason, with gateway keys, a route the caller's
 * key may not use lists none, nor one that needs a key the caller did not
 * send. Its method and path are not weighed, since the list is fetched
 * with GET on its own path. */
static int
route_lists_model(const struct tg_request *req, const struct tg_route *route)
{
	const char *model = route->match_model;

	if (model == NULL || strpbrk(model, "*?[") != NULL ||
	    !tg_route_headers_hold(route, &req->headers))
		return 0;
	return req->config->gateway_keys == NULL || tg_auth_check_route(route, req->key) == TG_OK;
}

/* 1 when req reads the model list in the shape of Anthropic's Models API:
 * Anthropic's SDKs send anthropic-version with every request, OpenAI's
 * never do. */
static int
wants_anthropic_models(const struct tg_request *req)
{
	return tg_headers_get(&req->headers, "anthropic-version") != NULL;
}

/* Return the model object of id, in the shape req reads. The gateway has
 * no creation time, so it gives the Unix epoch, and the id as its name. */
static json_t *
model_object(const struct tg_request *req, const char *id)
{
	if (wants_anthropic_models(req))
		return json_pack("{s:s, s:s, s:s, s:s}", "type", "model", "id", id,
		                 "display_name", id, "created_at", "1970-01-01T00:00:00Z");
	return json_pack("{s:s, s:s, s:i, s:s}", "id", id, "object", "model", "created", 0,
	                 "owned_by", "tollgate");
}

/* The ids of the models that routes list for req, once each, in config
 * order, as a JSON array of strings; NULL when out of memory. */
static json_t *
listed_models(const struct tg_request *req)
{
	json_t *ids = json_array();

	for (size_t i = 0; ids != NULL && i < req->config->n_routes; i++) {
		const struct tg_route *route = &req->config->routes[i];
		int listed = 0;

		if (!route_lists_model(req, route))
			continue;
		for (size_t j = 0; j < json_array_size(ids) && !listed; j++)
			listed = strcmp(json_string_value(json_array_get(ids, j)),
			                route->match_model) == 0;
		if (!listed && json_array_append_new(ids, json_string(route->match_model)) != 0) {
			json_decref(ids);
			return NULL;
		}
	}
	return ids;
}

/* The body of GET /v1/models for the model ids, in the shape req reads;
 * NULL when out of memory. Anthropic's list comes in pages, and this one
 * is the only page. */
static json_t *
model_list(const struct tg_request *req, const json_t *ids)
{
	json_t *data = json_array();
	json_t *id;
	size_t i, n = json_array_size(ids);

	json_array_foreach(ids, i, id) {
		if (data != NULL &&
		    json_array_append_new(data, model_object(req, json_string_value(id))) != 0) {
			json_decref(data);
			data = NULL;
		}
	}
	if (data == NULL)
		return NULL;
	if (!wants_anthropic_models(req))
		return json_pack("{s:s, s:o}", "object", "list", "data", data);
	return json_pack("{s:o, s:b, s:O?, s:O?}", "data", data, "has_more", 0,
	                 "first_id", n > 0 ? json_array_get(ids, 0) : NULL,
	                 "last_id", n > 0 ? json_array_get(ids, n - 1) : NULL);
}

/* Send body, one of the model list's, with 200; HEAD gets the same head,
 * without the body (tg_relay_local_response()). */
static void
send_models_body(struct tg_request *req, json_t *body)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	struct evbuffer *out = evbuffer_new();

	json_decref(body);
	if (text == NULL || out == NULL || evbuffer_add_printf(out, "%s\n", text) < 0) {
		free(text);
		if (out != NULL)
			evbuffer_free(out);
		tg_request_fail(req, TG_E_INTERNAL, NULL);
		return;
	}
	free(text);
	req->phase = TG_PHASE_LOCAL;
	tg_relay_local_response(req, 200, NULL, out);
	evbuffer_free(out);
}

/* 1 when req, without a gateway key, is refused with 401 rather than
 * shown no model, when none is open to it: SDKs check a key by listing the
 * models, and an empty 200 would pass that check. */
static int
refuse_keyless(struct tg_request *req, const json_t *ids)
{
	if (ids == NULL || json_array_size(ids) > 0 || req->config->gateway_keys == NULL ||
	    req->key != NULL)
		return 0;
	tg_auth_reject(req, TG_E_MISSING_API_KEY, NULL);
	return 1;
}

/* GET /v1/models: the models that routes name exactly, in config order
 * (route_lists_model()). */
static void
answer_models(struct tg_request *req)
{
	json_t *ids = listed_models(req);

	if (!refuse_keyless(req, ids))
		send_models_body(req, ids != NULL ? model_list(req, ids) : NULL);
	json_decref(ids);
}

/* 1 when the JSON array of strings ids contains id. */
static int
holds_id(const json_t *ids, const char *id)
{
	json_t *each;
	size_t i;

	json_array_foreach(ids, i, each) {
		if (strcmp(json_string_value(each), id) == 0)
			return 1;
	}
	return 0;
}

/*
 * GET /v1/models/ID: the model object of ID when the model list of this
 * caller contains it, else 404 model_not_found, in the error shape of the
 * list's API. The id is percent-decoded, since SDKs encode a "/" in it,
 * and the rest of the path is the id, so "org/model" may come either way.
 */
static void
answer_model(struct tg_request *req)
{
	json_t *ids = listed_models(req);
	size_t len = 0;
	char *id = evhttp_uridecode(req->path + strlen(TG_MODEL_PATH), 0, &len);
	char message[512];

	if (ids != NULL && id != NULL && len == strlen(id) && holds_id(ids, id)) {
		send_models_body(req, model_object(req, id));
	} else if (ids == NULL || id == NULL) {
		tg_request_fail(req, TG_E_INTERNAL, NULL);
	} else if (!refuse_keyless(req, ids)) {
		snprintf(message, sizeof(message), "no model \"%.300s\" is open to this caller; "
		         "GET /v1/models lists those that are", id);
		tg_request_fail(req, TG_E_MODEL_NOT_FOUND, message);
	}
	free(id);
	json_decref(ids);
}

/* Respond 405 to a request whose method the path does not take, and name
 * the methods it takes, allowed, in Allow (RFC 9110 section 15.5.6). */
static void
reject_method(struct tg_request *req, const char *allowed)
{
	char allow[320];
	char message[512];

	snprintf(allow, sizeof(allow), "Allow: %s\r\n", allowed);
	snprintf(message, sizeof(message), "%s is not allowed on %s; use %.300s", req->method,
	         req->path, allowed);
	tg_request_fail_with(req, TG_E_METHOD_NOT_ALLOWED, allow, message);
}

/* Reject a request that no route takes: with 405 when routes would take
 * it with another method, since the path is served but not so, and with
 * 404 otherwise. */
static void
reject_unrouted(struct tg_request *req, const struct tg_route_query *q)
{
	uint64_t others = tg_route_other_methods(req->config, q);
	char text[512];

	if (others != 0) {
		reject_method(req, tg_route_method_list(others, text, sizeof(text)));
		return;
	}
	if (req->model != NULL)
		snprintf(text, sizeof(text), "no route matches %s %s with model \"%.200s\"",
		         req->method, req->path, req->model);
	else if (req->body_opaque)
		snprintf(text, sizeof(text), "no route matches %s %s; its body, of Content-Type "
		         "\"%.60s\", is not JSON, so it names no model for a route's match.model",
		         req->method, req->path, tg_headers_get(&req->headers, "Content-Type"));
	else
		snprintf(text, sizeof(text), "no route matches %s %s", req->method, req->path);
	tg_request_fail(req, TG_E_NO_ROUTE, text);
}

/* The cache had no answer: on to the backends. */
static void
start_upstream(struct tg_request *req)
{
	tg_trace_cache_end(req);
	/* A failure only costs the usage figures of this stream. */
	(void)tg_metrics_stream_usage(req);
	tg_attempt_first(req);
}

/* The request filters let the request through: the cache, then upstream. */
static void
look_up_cache(struct tg_request *req)
{
	tg_trace_filters_end(req);
	tg_trace_cache_start(req);
	tg_cache_lookup(req, start_upstream);
}

/*
 * The error that req gets before its credential is checked, or TG_OK:
 * - a request that arrived on a kept-alive connection after the drain
 *   began gets a 503, so the client retries elsewhere;
 * - OPTIONS * targets the server as a whole, not a resource that a
 *   backend serves, and a backend's path prefix would turn it into a
 *   path. Like Envoy (404) and nginx (400), the gateway responds itself;
 * - a known endpoint takes one method.
 * The head decides each, so a client that waits for 100 Continue gets
 * them as the dispatch would give them (tg_request_head_refusal()).
 */
static enum tg_error
error_before_auth(const struct tg_request *req, const struct endpoint *endpoint)
{
	if (req->worker->draining && req->start_ns >= req->worker->drain_started_ns)
		return TG_E_SHUTTING_DOWN;
	if (strcmp(req->path, "*") == 0)
		return TG_E_NO_ROUTE;
	if (endpoint != NULL && !endpoint_takes(endpoint, req->method_id))
		return TG_E_METHOD_NOT_ALLOWED;
	return TG_OK;
}

/* 1 when endpoint is the model list, which the gateway serves itself. */
static int
is_model_list(const struct endpoint *endpoint)
{
	return endpoint != NULL && endpoint->method == HTTP_GET &&
	       strcmp(endpoint->path, "/v1/models") == 0;
}

/* 1 when the gateway responds to req from its model list, without a route. */
static int
answers_itself(const struct tg_request *req, const struct endpoint *endpoint)
{
	return is_model_list(endpoint) || tg_request_head_names_model(req->method, req->path);
}

/* Respond with err of error_before_auth(). */
static void
answer_before_auth(struct tg_request *req, const struct endpoint *endpoint, enum tg_error err)
{
	switch (err) {
	case TG_E_SHUTTING_DOWN:
		req->client->close_after_response = 1;
		tg_request_fail(req, err, NULL);
		break;
	case TG_E_NO_ROUTE:
		tg_request_fail(req, err, "OPTIONS * is not forwarded: it asks about the server "
		                "as a whole, not a path a route serves; send OPTIONS with a path "
		                "such as /v1/chat/completions");
		break;
	default:
		/* The 405 comes first, whatever the key, but the access log
		 * still names the key a caller presented. */
		if (req->config->gateway_keys != NULL)
			(void)tg_auth_identify(req->config->gateway_keys, &req->headers, &req->key);
		reject_method(req, endpoint_allow(endpoint));
		break;
	}
}

/*
 * Whether the dispatch of req, whose head alone is read and which
 * tg_request_head_refusal() did not reject for its content coding, would
 * respond before the rate limits of key count it, whatever the body holds.
 * A body that is not JSON names no model, so its route is known from the
 * head. Such a request gets 404 or 405 without a route, 403 from a route
 * that refuses key, and 415 from a route whose filters read JSON only.
 */
static int
responds_before_limits(const struct tg_request *req, const struct endpoint *endpoint,
               const struct tg_gateway_key *key)
{
	struct tg_route_query query = {
		.path = req->path, .method = req->method_id, .headers = &req->headers,
	};
	const struct tg_route *route;

	if (!body_is_opaque(req, endpoint, 1))
		return 0;

	route = tg_route_match(req->config, &query);
	return route == NULL || tg_auth_check_route(route, key) != TG_OK ||
	       tg_filter_reads_json_only(route);
}

/* Whether the dispatch of req, whose head alone is read, would reject a
 * content coding on a body it reads as JSON (reject_content_coding()).
 * Returns 1 with the reason in message. */
static int
head_rejects_coding(const struct tg_request *req, const struct endpoint *endpoint,
                    char *message, size_t size)
{
	return !is_model_list(endpoint) && !body_is_opaque(req, endpoint, 1) &&
	       has_rejected_coding(req, message, size);
}

/* The refusals follow the order of tg_request_dispatch(): the key, then the
 * content coding, then the routes the key may use, then its rate limits.
 * The body is taken to be there, since its client waits for 100 Continue
 * to send it. */
enum tg_error
tg_request_head_refusal(struct tg_request *req, char *message, size_t size)
{
	const struct endpoint *endpoint = find_endpoint(req->path);
	const struct tg_gateway_keys *keys = req->config->gateway_keys;
	const struct tg_gateway_key *key = NULL;
	enum tg_error err;

	message[0] = '\0';
	if (error_before_auth(req, endpoint) != TG_OK)
		return TG_OK;
	if (keys != NULL && (err = tg_auth_head_refusal(req, 0, message, size, &key)) != TG_OK)
		return err;
	if (head_rejects_coding(req, endpoint, message, size))
		return TG_E_CONTENT_CODING;
	if (keys == NULL)
		return TG_OK;

	err = tg_auth_head_refusal(req, !answers_itself(req, endpoint), message, size, &key);
	if (err != TG_OK || key == NULL || responds_before_limits(req, endpoint, key))
		return err;
	return tg_ratelimit_head_refusal(req, key, message, size);
}

void
tg_request_dispatch(struct tg_request *req)
{
	const struct endpoint *endpoint = find_endpoint(req->path);
	struct tg_route_query query;
	enum tg_error err;
	char message[512];

	assign_request_id(req);
	tg_metrics_request_read(req);
	tg_trace_request_start(req);

	err = error_before_auth(req, endpoint);
	if (err != TG_OK) {
		answer_before_auth(req, endpoint, err);
		return;
	}

	if (req->config->gateway_keys != NULL && tg_auth_request(req) != 0)
		return;

	if (is_model_list(endpoint)) {
		answer_models(req);
		return;
	}
	if (tg_request_head_names_model(req->method, req->path)) {
		answer_model(req);
		return;
	}

	/* An opaque body goes upstream as its bytes came, so its content
	 * coding is the upstream's to read. */
	req->body_opaque = body_is_opaque(req, endpoint, req->body_len > 0);
	if (reads_body(req, endpoint) && reject_content_coding(req))
		return;

	message[0] = '\0';
	err = parse_body(req, endpoint, message, sizeof(message));
	if (err != TG_OK) {
		tg_request_fail(req, err, message[0] ? message : NULL);
		return;
	}

	query = (struct tg_route_query){
		.path = req->path, .method = req->method_id, .model = req->model,
		.headers = &req->headers,
	};
	req->route = tg_route_match(req->config, &query);
	if (req->route == NULL) {
		reject_unrouted(req, &query);
		return;
	}
	if (req->config->gateway_keys != NULL && tg_auth_request_route(req) != 0)
		return;
	/* A request refused for its own body spends none of its key's
	 * budget: the refusal needs only the route and the Content-Type. */
	if (tg_filter_reject_unreadable(req))
		return;
	if (tg_ratelimit_admit(req) != 0)
		return;

	tg_trace_filters_start(req);
	tg_filter_request(req, look_up_cache);
}

enum tg_error_shape
tg_request_error_shape(const struct tg_request *req)
{
	static const char messages[] = "/v1/messages";
	size_t len = sizeof(messages) - 1;

	if (req->worker->site != NULL)
		return TG_ERROR_TEXT;
	if (req->path != NULL && strncmp(req->path, "/v1/models", 10) == 0 &&
	    (req->path[10] == '\0' || req->path[10] == '/') && wants_anthropic_models(req))
		return TG_ERROR_ANTHROPIC;
	if (req->path == NULL || strncmp(req->path, messages, len) != 0)
		return TG_ERROR_OPENAI;
	if (req->path[len] == '\0' || req->path[len] == '/')
		return TG_ERROR_ANTHROPIC;
	return TG_ERROR_OPENAI;
}

void
tg_request_fail(struct tg_request *req, enum tg_error err, const char *message)
{
	tg_request_fail_with(req, err, NULL, message);
}

/* Record err as req's error, with the cause of its kind unless req has a
 * cause already, and send the gateway's error response. */
static void
send_error(struct tg_request *req, enum tg_error err, const char *extra_headers,
           const char *message)
{
	const struct tg_error_info *info = tg_error_info(err);
	enum tg_error_shape shape = tg_request_error_shape(req);
	struct evbuffer *body = evbuffer_new();

	if (req->id[0] == '\0')
		assign_request_id(req);
	req->error = err;
	if (req->cause == TG_CAUSE_NONE)
		req->cause = (enum tg_cause)info->who;

	if (body != NULL)
		tg_error_shaped_body(body, shape, err, message, NULL);
	tg_relay_local_response_typed(req, info->status, tg_error_content_type(shape),
	                              extra_headers, body);
	if (body != NULL)
		evbuffer_free(body);
}

void
tg_request_fail_with(struct tg_request *req, enum tg_error err, const char *extra_headers,
                     const char *message)
{
	if (req->cause == TG_CAUSE_NONE)
		req->cause = (enum tg_cause)tg_error_info(err)->who;
	if (req->cause == TG_CAUSE_GATEWAY)
		req->phase = TG_PHASE_LOCAL;
	send_error(req, err, extra_headers, message);
}

/* The header lines of err refused before the request was read whole: a
 * 401's challenge, a content coding's Accept-Encoding, a 429's Retry-After
 * (written into retry), or the methods a site takes on its 405 and 501. */
static const char *
unread_error_lines(struct tg_request *req, enum tg_error err, char *retry, size_t retry_size)
{
	const struct tg_site *site = req->worker->site;

	if (site != NULL && (err == TG_E_METHOD_NOT_ALLOWED || err == TG_E_NOT_IMPLEMENTED))
		return site->allow_lines;
	if (err == TG_E_REQUEST_RATE_LIMIT || err == TG_E_TOKEN_RATE_LIMIT)
		return tg_ratelimit_retry_after(req, retry, retry_size);
	if (err == TG_E_CONTENT_CODING)
		return ACCEPT_IDENTITY;
	return tg_auth_challenge(err);
}

void
tg_request_fail_unread(struct tg_request *req, enum tg_error err, const char *message)
{
	char retry[TG_RATELIMIT_RETRY_LINES];

	assert(req->phase == TG_PHASE_REQUEST);
	send_error(req, err, unread_error_lines(req, err, retry, sizeof(retry)), message);
}

void
tg_request_abort(struct tg_request *req, enum tg_cause cause)
{
	if (req->cause == TG_CAUSE_NONE)
		req->cause = cause;
	tg_attempt_end(req, TG_OUTCOME_CANCELLED, TG_OK, 0, "cancelled");
	if (req->upstream != NULL) {
		tg_upstream_cancel(req->upstream);
		req->upstream = NULL;
		tg_log_request(req, TG_LOG_INFO, "%s; upstream request cancelled",
		               cause == TG_CAUSE_DRAIN ? "connection closed by the shutdown"
		                                       : "client gone");
	}
	req->client = NULL;
	tg_request_done(req);
}

void
tg_request_done(struct tg_request *req)
{
	assert(req->upstream == NULL);

	/* The access log, the metrics and the trace all record this end, so
	 * one request's duration is the same number in each. */
	req->done_ns = tg_now_ns();
	if (req->id[0] == '\0')
		assign_request_id(req);
	if (req->cause == TG_CAUSE_NONE && req->error == TG_OK)
		req->phase = TG_PHASE_DONE;
	/* Before the access-log line, so that once the line is written, the
	 * key's next request finds these tokens spent. */
	tg_ratelimit_charge(req);
	tg_accesslog_write(req->worker->access_log, req);

	req->worker->active_requests--;
	tg_attempt_end(req, TG_OUTCOME_CANCELLED, TG_OK, 0, "cancelled");
	tg_metrics_request_end(req);    /* before the trace goes: exemplars */
	tg_trace_request_done(req);
	tg_cache_request_done(req);
	tg_filter_request_done(req);
	tg_relay_reset(req);
	tg_headers_free(&req->headers);
	tg_worker_buffer_give(req->worker, req->upstream_request);
	tg_worker_buffer_give(req->worker, req->body);
	if (req->body_without_usage != NULL)
		evbuffer_free(req->body_without_usage);
	json_decref(req->body_json);
	tg_request_facts_free(&req->scanned);
	free(req->url);
	free(req->path);
	tg_config_unref(req->config);
	request_release(req->worker, req);
}
