/*
 * Request routing and response planning.
 *
 * Routes match on the end of the path, so "/v1/chat/completions" and Azure's
 * "/openai/deployments/NAME/chat/completions" both reach the chat generator.
 * A request without a model in its body takes the deployment NAME instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "fixture.h"
#include "generate.h"
#include "handler.h"

#define MOCK_PREFIX "/_mock/"
#define DEPLOYMENTS "/openai/deployments/"

enum endpoint {
	EP_NONE, EP_CHAT, EP_COMPLETION, EP_EMBEDDINGS, EP_MODERATIONS, EP_MODELS, EP_MODEL,
};

const char *
mock_request_header(const struct mock_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

int
mock_request_counted(const struct mock_request *req)
{
	return strncmp(req->target, MOCK_PREFIX, strlen(MOCK_PREFIX)) != 0;
}

static int
ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Length of the path part of the request target. */
static size_t
path_length(const char *target)
{
	return strcspn(target, "?");
}

static enum endpoint
route(const char *path, size_t len)
{
	if (ends_with(path, len, "/chat/completions"))
		return EP_CHAT;
	if (ends_with(path, len, "/completions"))
		return EP_COMPLETION;
	if (ends_with(path, len, "/embeddings"))
		return EP_EMBEDDINGS;
	if (ends_with(path, len, "/moderations"))
		return EP_MODERATIONS;
	if (ends_with(path, len, "/models"))
		return EP_MODELS;
	if (len > 11 && memcmp(path, "/v1/models/", 11) == 0)
		return EP_MODEL;
	return EP_NONE;
}

static const char *
error_type(int status)
{
	if (status == 429)
		return "requests";
	if (status >= 500)
		return "server_error";
	return "invalid_request_error";
}

static const char *
error_code(int status)
{
	switch (status) {
	case 401: return "invalid_api_key";
	case 404: return "model_not_found";
	case 429: return "rate_limit_exceeded";
	default: return NULL;
	}
}

/* Build the error response that status=N requests. */
static int
requested_error(struct mock_response *r, int status)
{
	char message[128];

	snprintf(message, sizeof(message),
	         "The mock answered with status %d as the x-mock option status "
	         "requested.", status);
	return mock_response_error(r, status, error_type(status), NULL,
	                           error_code(status), message);
}

static int
bad_request(struct mock_response *r, const char *param, const char *message)
{
	return mock_response_error(r, 400, "invalid_request_error", param, NULL,
	                           message);
}

/* Replay a fixture into r; a missing fixture is the client's error. */
static int
replay_fixture(struct mock *m, struct mock_response *r,
               const struct mock_options *o)
{
	char err[512];
	const struct fixture *f = fixture_get(&m->fixtures, m->fixture_dir,
	                                      o->fixture, err, sizeof(err));
	const char *p, *end, *blank;

	if (f == NULL)
		return bad_request(r, NULL, err);

	if (!fixture_is_stream(f)) {
		if (evbuffer_add(r->body, f->body, f->body_len) < 0)
			return -1;
		r->status = f->code;
		return mock_response_set_type(r, f->content_type);
	}

	/* Events end at a blank line; each keeps the blank line's bytes. */
	if (mock_response_stream(r) < 0 || mock_response_set_type(r, f->content_type) < 0)
		return -1;
	r->status = f->code;
	p = f->body;
	end = f->body + f->body_len;
	while (p < end) {
		blank = memmem(p, (size_t)(end - p), "\n\n", 2);
		const char *stop = blank != NULL ? blank + 2 : end;

		if (mock_response_add_raw_event(r, p, (size_t)(stop - p), o) < 0)
			return -1;
		p = stop;
	}
	return 0;
}

/*
 * GET /_mock/options shows the options every API request starts from;
 * POST replaces them with the option list in the body (an empty body
 * clears them), so a test can change how this instance behaves.
 */
static int
handle_options(struct mock *m, const struct mock_request *req, int get,
               struct mock_response *r)
{
	size_t len = evbuffer_get_length(req->body);
	const char *text = (const char *)evbuffer_pullup(req->body, -1);
	struct mock_options o;
	char err[512], *copy = NULL;
	json_t *body;
	int rc;

	if (!get) {
		mock_options_init(&o);
		if (len > 0 && mock_options_parse(&o, text, len, "the POST /_mock/options body",
		                                  err, sizeof(err)) < 0)
			return bad_request(r, NULL, err);
		if (len > 0 && (copy = strndup(text, len)) == NULL)
			return -1;
		free(m->default_options);
		m->default_options = copy;
	}
	body = json_pack("{s:s}", "options",
	                 m->default_options != NULL ? m->default_options : "");
	if (body == NULL)
		return -1;
	rc = mock_response_json(r, 200, body);
	json_decref(body);
	return rc;
}

static int
handle_introspection(struct mock *m, const struct mock_request *req,
                     const char *path, struct mock_response *r)
{
	const struct mock_stats *s = &m->stats;
	int get = strcmp(req->method, "GET") == 0;
	json_t *body;
	int rc;

	if (get && strcmp(path, MOCK_PREFIX "stats") == 0) {
		body = json_pack("{s:I, s:I, s:I, s:I, s:I}",
		    "connections_opened", (json_int_t)s->connections_opened,
		    "connections_closed_by_peer",
		    (json_int_t)s->connections_closed_by_peer,
		    "requests", (json_int_t)s->requests,
		    "responses_completed", (json_int_t)s->responses_completed,
		    "responses_aborted", (json_int_t)s->responses_aborted);
	} else if (get && strcmp(path, MOCK_PREFIX "requests") == 0) {
		body = mock_log_dump(m);
	} else if (strcmp(req->method, "POST") == 0
	           && strcmp(path, MOCK_PREFIX "reset") == 0) {
		mock_reset(m);
		body = json_pack("{s:b}", "reset", 1);
	} else if ((get || strcmp(req->method, "POST") == 0)
	           && strcmp(path, MOCK_PREFIX "options") == 0) {
		return handle_options(m, req, get, r);
	} else {
		return mock_response_error(r, 404, "invalid_request_error", NULL, NULL,
		                           "Unknown mock endpoint: use GET "
		                           "/_mock/stats, GET /_mock/requests, "
		                           "POST /_mock/reset or GET or POST "
		                           "/_mock/options.");
	}

	if (body == NULL)
		return -1;
	rc = mock_response_json(r, 200, body);
	json_decref(body);
	return rc;
}

/* The deployment name of an Azure path, for requests without a model. */
static char *
deployment_model(const char *path)
{
	size_t n = strlen(DEPLOYMENTS);

	if (strncmp(path, DEPLOYMENTS, n) != 0)
		return NULL;
	return strndup(path + n, strcspn(path + n, "/"));
}

/* The model of a request to ep that names none, or NULL when a request
 * to ep must name one. OpenAI's moderation endpoint takes its latest
 * moderation model when "model" is left out. */
static const char *
default_model(enum endpoint ep)
{
	return ep == EP_MODERATIONS ? "omni-moderation-latest" : NULL;
}

/*
 * Parse the body and the options of an API request to ep into o, and find
 * its model. Returns 1 when the request can be served, 0 when r already
 * contains the 400 to send, -1 when out of memory.
 */
static int
prepare_api_request(const struct mock_request *req, const char *path, enum endpoint ep,
                    json_t **body, char **model, struct mock_options *o,
                    struct mock_response *r)
{
	const char *header = mock_request_header(req, "x-mock");
	size_t len = evbuffer_get_length(req->body);
	const char *text = (const char *)evbuffer_pullup(req->body, -1);
	json_error_t jerr;
	const char *name, *at;
	char err[512];

	/* An integer beyond 64 bits is valid JSON that a real API may read
	 * ("seed"), so such a body is read again with integers as reals. */
	*body = json_loadb(text != NULL ? text : "", len, 0, &jerr);
	if (*body == NULL && json_error_code(&jerr) == json_error_numeric_overflow)
		*body = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &jerr);
	if (!json_is_object(*body))
		return bad_request(r, NULL, "We could not parse the JSON body of "
		                   "your request. The OpenAI API expects a JSON "
		                   "object payload.");

	name = json_string_value(json_object_get(*body, "model"));
	*model = name != NULL ? strdup(name) : deployment_model(path);
	if (*model == NULL && default_model(ep) != NULL)
		*model = strdup(default_model(ep));
	if (*model == NULL)
		return bad_request(r, "model", "you must provide a model parameter");

	/* Options after '@' first, so the header wins where both set a key. */
	at = strchr(*model, '@');
	if (at != NULL) {
		if (mock_options_parse(o, at + 1, strlen(at + 1), "the model suffix after \"@\"",
		                       err, sizeof(err)) < 0)
			return bad_request(r, "model", err);
		(*model)[at - *model] = '\0';
	}
	if (header != NULL
	    && mock_options_parse(o, header, strlen(header), "the x-mock header",
	                          err, sizeof(err)) < 0)
		return bad_request(r, NULL, err);
	return 1;
}

static int
generate(enum endpoint ep, json_t *body, const char *model,
         const struct mock_options *o, uint64_t seq, long long created,
         struct mock_response *r)
{
	struct generate_context ctx = {
		.model = model, .options = o, .seq = seq, .created = created,
	};

	switch (ep) {
	case EP_CHAT:
		return generate_chat(r, body, &ctx);
	case EP_COMPLETION:
		return generate_completion(r, body, &ctx);
	case EP_MODERATIONS:
		return generate_moderations(r, body, &ctx);
	default:
		return generate_embeddings(r, body, &ctx);
	}
}

/* A chat request whose text holds GUARD-UNSAFE gets the answer a Llama
 * Guard model gives to an unsafe conversation, "unsafe\nS1", unless
 * content= chose the text. */
static void
guard_verdict(enum endpoint ep, json_t *body, struct mock_options *o)
{
	char *text;

	if (ep != EP_CHAT || o->n_content_pieces > 0)
		return;
	text = json_dumps(json_object_get(body, "messages"), JSON_COMPACT);
	if (text != NULL && strstr(text, "GUARD-UNSAFE") != NULL) {
		strcpy(o->content, "unsafe\nS1");
		o->content_cuts[0] = 0;
		o->content_cuts[1] = strlen(o->content);
		o->n_content_pieces = 1;
		o->events = 1;
	}
	free(text);
}

/* The inputs of a generated response, as response_cache_find() takes them. */
static struct response_cache_key
cache_key(const struct mock *m, const struct mock_request *req,
          const char *path)
{
	const char *header = mock_request_header(req, "x-mock");
	const char *defaults = m->default_options;
	struct response_cache_key key = {
		.data = { path, header, defaults,
		          (const char *)evbuffer_pullup(req->body, -1) },
		.len = { strlen(path), header != NULL ? strlen(header) : 0,
		         defaults != NULL ? strlen(defaults) : 0,
		         evbuffer_get_length(req->body) },
	};

	return key;
}

/* Generate the response for key again with the cache's marker values and
 * offer both versions to the cache. */
static void
remember(struct mock *m, const struct response_cache_key *key, enum endpoint ep,
         json_t *body, const char *model, const struct mock_options *o,
         const struct mock_response *generated, uint64_t seq, long long created)
{
	struct mock_response *marked = mock_response_new();

	if (marked != NULL
	    && generate(ep, body, model, o, RESPONSE_CACHE_SEQ_MARK,
	                RESPONSE_CACHE_CREATED_MARK, marked) == 0)
		response_cache_add(&m->responses, key, o, generated, marked, seq,
		                   created);
	mock_response_free(marked);
}

/*
 * Serve a POST to a generating endpoint. The response cache serves a
 * request it has seen before, and a generated response that is not a
 * stream is offered to it.
 */
static int
handle_api(struct mock *m, const struct mock_request *req, const char *path,
           enum endpoint ep, struct mock_plan *plan)
{
	struct mock_response *r = plan->response;
	struct mock_options *o = &plan->options;
	struct response_cache_key key = cache_key(m, req, path);
	const struct response_cache_entry *cached;
	long long created = (long long)time(NULL);
	json_t *body = NULL;
	char *model = NULL;
	uint64_t seq = 0;
	int rc, status, generated = 0;

	cached = response_cache_find(m->responses, &key);
	if (cached != NULL)
		return response_cache_fill(cached, ++m->response_seq, created, r, o);

	rc = prepare_api_request(req, path, ep, &body, &model, o, r);
	if (rc <= 0)
		goto out;

	status = o->status;
	if (status >= 400)
		rc = requested_error(r, status);
	else if (o->fixture[0] != '\0')
		rc = replay_fixture(m, r, o);
	else {
		guard_verdict(ep, body, o);
		seq = ++m->response_seq;
		rc = generate(ep, body, model, o, seq, created, r);
		generated = rc == 0;
	}
	if (rc == 0 && status != 0 && status < 400 && r->status == 200)
		r->status = status;
	if (generated && !r->stream)
		remember(m, &key, ep, body, model, o, r, seq, created);

out:
	json_decref(body);
	free(model);
	return rc < 0 ? -1 : 0;
}

/* Serve GET /v1/models and GET /v1/models/ID; the header options apply. */
static int
handle_models(struct mock *m, const struct mock_request *req, const char *path,
              enum endpoint ep, struct mock_plan *plan)
{
	const char *header = mock_request_header(req, "x-mock");
	struct mock_options *o = &plan->options;
	struct mock_response *r = plan->response;
	char err[512];
	int rc;

	if (header != NULL
	    && mock_options_parse(o, header, strlen(header), "the x-mock header",
	                          err, sizeof(err)) < 0)
		return bad_request(r, NULL, err);
	if (o->status >= 400)
		return requested_error(r, o->status);
	if (o->fixture[0] != '\0')
		return replay_fixture(m, r, o);

	rc = generate_models(r, ep == EP_MODEL ? path + 11 : NULL,
	                     (long long)time(NULL));
	if (rc == 0 && o->status != 0)
		r->status = o->status;
	return rc;
}

int
mock_handle(struct mock *m, struct mock_request *req, struct mock_plan *plan)
{
	char *path = strndup(req->target, path_length(req->target));
	int post = strcmp(req->method, "POST") == 0;
	enum endpoint ep;
	int rc;

	mock_options_init(&plan->options);
	plan->response = mock_response_new();
	if (path == NULL || plan->response == NULL) {
		free(path);
		return -1;
	}

	plan->counted = mock_request_counted(req);
	if (!plan->counted) {
		rc = handle_introspection(m, req, path, plan->response);
		free(path);
		return rc;
	}

	m->stats.requests++;
	mock_log_request(m, req);

	/* The instance's default options come first, so the model suffix and
	 * the x-mock header apply on top. They were checked when set. */
	if (m->default_options != NULL) {
		char err[512];

		(void)mock_options_parse(&plan->options, m->default_options,
		                         strlen(m->default_options), "the default options",
		                         err, sizeof(err));
	}

	ep = route(path, strlen(path));
	if (ep == EP_NONE)
		rc = mock_response_error(plan->response, 404, "invalid_request_error",
		                         NULL, "unknown_url", "Unknown request URL. "
		                         "The mock serves /v1/chat/completions, "
		                         "/v1/completions, /v1/embeddings and "
		                         "/v1/models.");
	else if ((ep == EP_MODELS || ep == EP_MODEL) && !post)
		rc = handle_models(m, req, path, ep, plan);
	else if (ep != EP_MODELS && ep != EP_MODEL && post)
		rc = handle_api(m, req, path, ep, plan);
	else
		rc = mock_response_error(plan->response, 405, "invalid_request_error",
		                         NULL, "method_not_allowed", post
		                         ? "Use GET for the model list."
		                         : "Use POST for this endpoint.");
	free(path);
	return rc;
}
