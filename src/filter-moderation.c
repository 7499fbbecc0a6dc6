/*
 * Moderation calls: the OpenAI /v1/moderations shape, or a guard model
 * served as chat completions (Llama Guard replies "safe", or "unsafe"
 * followed by a line of category codes such as "S1").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <pcre2.h>

#include "filter-moderation.h"
#include "filter.h"
#include "headers.h"
#include "json-type.h"
#include "upstream.h"
#include "worker.h"

/* A classifier's response is small; a longer body is an error. */
#define MAX_RESPONSE (1024 * 1024)

/* The bytes of an unreadable response body quoted in the log. */
#define BODY_QUOTED 64

/* Room for what went wrong with a call, for the log. */
#define DETAIL_LEN 512

struct tg_moderation_call {
	const struct tg_filter *filter;
	struct tg_upstream_conn *conn;
	struct event *timer;
	struct evbuffer *request;
	struct evbuffer *body;
	size_t n_inputs;
	int status;
	char content_type[64];          /* of the response, cut to fit; "" if none */
	int too_large;                  /* the body passed MAX_RESPONSE */
	tg_moderation_done_fn *done;
	void *arg;
};

/* Llama Guard 3's hazard codes, so a decision can name one with a string
 * that outlives the response. */
static const char *const guard_codes[] = {
	"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12",
	"S13", "S14",
};

/* --- parsing ------------------------------------------------------------ */

/* Write into why, for the log, that the value at path is of the wrong
 * type, and return TG_VERDICT_ERROR. */
static enum tg_moderation_verdict
wrong_type(char *why, size_t size, const char *path, const json_t *value,
           const char *expected)
{
	snprintf(why, size, "%s is %s, expected %s", path, tg_json_type_name(value), expected);
	return TG_VERDICT_ERROR;
}

/* Judge one result by the configured thresholds: *category is set to the
 * first category at or above its score. A configured category that the
 * result lacks, or gives as something other than a number, is an error: a
 * check that can never fire would pass every text. */
static enum tg_moderation_verdict
judge_scores(const struct tg_moderation *m, const json_t *result, size_t i,
             const char **category, char *why, size_t size)
{
	json_t *scores = json_object_get(result, "category_scores");
	char path[192];

	if (!json_is_object(scores)) {
		snprintf(path, sizeof(path), "results[%zu].category_scores", i);
		return wrong_type(why, size, path, scores, "an object");
	}
	for (size_t t = 0; t < m->n_thresholds; t++) {
		json_t *score = json_object_get(scores, m->thresholds[t].name);

		if (!json_is_number(score)) {
			snprintf(path, sizeof(path), "results[%zu].category_scores.%s", i,
			         m->thresholds[t].name);
			return wrong_type(why, size, path, score, "a number");
		}
		if (json_number_value(score) >= m->thresholds[t].score) {
			*category = m->thresholds[t].name;
			return TG_VERDICT_FLAGGED;
		}
	}
	return TG_VERDICT_SAFE;
}

/* Judge one result by its "flagged". */
static enum tg_moderation_verdict
judge_flagged(const json_t *result, size_t i, const char **category, char *why,
              size_t size)
{
	json_t *flagged = json_object_get(result, "flagged");
	char path[64];

	if (!json_is_boolean(flagged)) {
		snprintf(path, sizeof(path), "results[%zu].flagged", i);
		return wrong_type(why, size, path, flagged, "true or false");
	}
	if (json_is_true(flagged)) {
		*category = "flagged";
		return TG_VERDICT_FLAGGED;
	}
	return TG_VERDICT_SAFE;
}

/* The OpenAI shape: {"results": [{"flagged", "categories",
 * "category_scores"}]}, one result per input, in order. A result missing
 * would leave its text unchecked, so the count must match. */
static enum tg_moderation_verdict
parse_openai(const struct tg_filter *f, json_t *root, size_t n_inputs, const char **category,
             char *why, size_t size)
{
	const struct tg_moderation *m = &f->moderation;
	json_t *results = json_object_get(root, "results");
	size_t i;
	json_t *result;

	if (!json_is_array(results))
		return wrong_type(why, size, "results", results, "an array");
	if (json_array_size(results) != n_inputs) {
		snprintf(why, size, "results has %zu entr%s for %zu input%s",
		         json_array_size(results), json_array_size(results) == 1 ? "y" : "ies",
		         n_inputs, n_inputs == 1 ? "" : "s");
		return TG_VERDICT_ERROR;
	}

	json_array_foreach(results, i, result) {
		enum tg_moderation_verdict v;
		char path[64];

		if (!json_is_object(result)) {
			snprintf(path, sizeof(path), "results[%zu]", i);
			return wrong_type(why, size, path, result, "an object");
		}
		if (m->n_thresholds > 0)
			v = judge_scores(m, result, i, category, why, size);
		else
			v = judge_flagged(result, i, category, why, size);
		if (v != TG_VERDICT_SAFE)
			return v;
	}
	return TG_VERDICT_SAFE;
}

/* The first code on the line after the verdict, when it is a known one. */
static const char *
guard_category(const char *answer, size_t end)
{
	const char *line = strchr(answer + end, '\n');

	if (line == NULL)
		return "unsafe";
	line++;
	line += strspn(line, " \t");
	for (size_t i = 0; i < sizeof(guard_codes) / sizeof(guard_codes[0]); i++) {
		size_t n = strlen(guard_codes[i]);

		if (strncmp(line, guard_codes[i], n) == 0 && strchr(",\n \t", line[n]) != NULL)
			return guard_codes[i];
	}
	return "unsafe";
}

/* A chat completion whose first choice's content is matched against the
 * verdict pattern. */
static enum tg_moderation_verdict
parse_chat(const struct tg_filter *f, json_t *root, const char **category, char *why,
           size_t size)
{
	json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
	json_t *content = json_object_get(json_object_get(choice, "message"), "content");
	pcre2_match_data *md;
	int rc;

	if (!json_is_string(content))
		return wrong_type(why, size, "choices[0].message.content", content, "a string");
	md = pcre2_match_data_create(1, NULL);
	if (md == NULL) {
		snprintf(why, size, "out of memory");
		return TG_VERDICT_ERROR;
	}
	rc = pcre2_match(f->moderation.verdict_code, (PCRE2_SPTR)json_string_value(content),
	                 json_string_length(content), 0, 0, md, NULL);
	if (rc >= 0)
		*category = guard_category(json_string_value(content),
		                           pcre2_get_ovector_pointer(md)[1]);
	pcre2_match_data_free(md);
	if (rc == PCRE2_ERROR_NOMATCH)
		return TG_VERDICT_SAFE;
	if (rc < 0)
		snprintf(why, size, "verdict_pattern failed on the answer (PCRE2 error %d)", rc);
	return rc >= 0 ? TG_VERDICT_FLAGGED : TG_VERDICT_ERROR;
}

enum tg_moderation_verdict
tg_moderation_parse(const struct tg_filter *f, const char *body, size_t len, size_t n_inputs,
                    const char **category, char *why, size_t why_size)
{
	json_error_t error;
	json_t *root = json_loadb(body, len, 0, &error);
	enum tg_moderation_verdict v;

	*category = NULL;
	if (root == NULL) {
		snprintf(why, why_size, "the body is not JSON (invalid from byte %d)",
		         error.position);
		return TG_VERDICT_ERROR;
	}
	if (!json_is_object(root)) {
		v = wrong_type(why, why_size, "the body", root, "an object");
		json_decref(root);
		return v;
	}
	if (f->moderation.api == TG_MODERATION_CHAT)
		v = parse_chat(f, root, category, why, why_size);
	else
		v = parse_openai(f, root, n_inputs, category, why, why_size);
	json_decref(root);
	return v;
}

/* --- the request -------------------------------------------------------- */

/* NOTE: tool call arguments (TG_TEXT_ARGUMENTS) go to the classifier as
 * written, escapes and all, not decoded as regex and plugin filters read
 * them. */
static json_t *
request_body(const struct tg_filter *f, const struct tg_text_list *texts)
{
	json_t *body = json_object();
	json_t *input = json_array();

	for (size_t i = 0; body != NULL && input != NULL && i < texts->n; i++)
		json_array_append(input, texts->items[i]);

	if (f->moderation.api == TG_MODERATION_CHAT) {
		/* One user turn with every text, for the guard model to judge. */
		struct evbuffer *joined = evbuffer_new();

		for (size_t i = 0; joined != NULL && i < texts->n; i++) {
			evbuffer_add(joined, json_string_value(texts->items[i]),
			             json_string_length(texts->items[i]));
			evbuffer_add(joined, "\n\n", i + 1 < texts->n ? 2 : 0);
		}
		if (joined != NULL) {
			size_t len = evbuffer_get_length(joined);

			json_object_set_new(body, "messages", json_pack("[{s:s, s:s%}]", "role",
			                    "user", "content", evbuffer_pullup(joined, -1), len));
			evbuffer_free(joined);
		}
		json_object_set_new(body, "stream", json_false());
		json_decref(input);
	} else {
		json_object_set_new(body, "input", input);
	}
	if (f->model != NULL)
		json_object_set_new(body, "model", json_string(f->model));
	return body;
}

/* The whole HTTP request for the classifier backend. */
static struct evbuffer *
build_request(const struct tg_filter *f, const struct tg_text_list *texts,
              const char *request_id)
{
	const struct tg_backend *b = f->moderation.backend;
	const char *path = f->moderation.api == TG_MODERATION_CHAT ? "/v1/chat/completions"
	                                                          : "/v1/moderations";
	struct tg_upstream_rewrite rw = {
		.host = b->host_header, .api_key = b->api_key,
		.key_header = b->api_key_header, .client_ip = NULL,
		.proto = "http", .request_id = request_id,
	};
	struct tg_headers headers;
	json_t *body = request_body(f, texts);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct evbuffer *out = evbuffer_new();
	char *target = NULL;
	int rc = -1;

	tg_headers_init(&headers);
	if (text != NULL && out != NULL && asprintf(&target, "%s%s", b->base_path, path) >= 0 &&
	    tg_headers_add(&headers, "Content-Type", 12, "application/json", 16) == 0 &&
	    tg_headers_write_upstream_request(out, "POST", target, &headers, &rw,
	                                      strlen(text)) == 0)
		rc = evbuffer_add(out, text, strlen(text));

	tg_headers_free(&headers);
	free(target);
	free(text);
	json_decref(body);
	if (rc != 0 && out != NULL) {
		evbuffer_free(out);
		out = NULL;
	}
	return out;
}

/* --- the call ----------------------------------------------------------- */

static void
free_call(struct tg_moderation_call *c)
{
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->request != NULL)
		evbuffer_free(c->request);
	if (c->body != NULL)
		evbuffer_free(c->body);
	free(c);
}

/* Free the call, then report: done may free what arg points to. detail
 * may point into c, so it is copied first. */
static void
finish(struct tg_moderation_call *c, enum tg_moderation_verdict v, const char *category,
       const char *detail)
{
	tg_moderation_done_fn *done = c->done;
	const struct tg_filter *f = c->filter;
	void *arg = c->arg;
	char copy[DETAIL_LEN];

	snprintf(copy, sizeof(copy), "%s", detail != NULL ? detail : "");
	free_call(c);
	done(arg, f, v, category, detail != NULL ? copy : NULL);
}

static int
call_on_head(void *arg, int status, struct tg_headers *headers)
{
	struct tg_moderation_call *c = arg;
	const char *type = tg_headers_get(headers, "Content-Type");

	c->status = status;
	snprintf(c->content_type, sizeof(c->content_type), "%s", type != NULL ? type : "");
	return 0;
}

static int
call_on_body(void *arg, const char *data, size_t len)
{
	struct tg_moderation_call *c = arg;
	struct timeval now = {0, 0};

	/* Returning non-zero stops the exchange and hands the connection
	 * back; the timer, run at once, then reports the failure. */
	if (evbuffer_get_length(c->body) + len > MAX_RESPONSE ||
	    evbuffer_add(c->body, data, len) != 0) {
		c->conn = NULL;
		c->too_large = 1;
		evtimer_add(c->timer, &now);
		return 1;
	}
	return 0;
}

/* Write the first bytes of the body into out (of size > BODY_QUOTED),
 * with each byte that is not printable ASCII as '?', so that the log line
 * stays one line of text. */
static void
quote_body(struct tg_moderation_call *c, char *out, size_t size)
{
	size_t len = evbuffer_get_length(c->body);
	size_t n = len < BODY_QUOTED ? len : BODY_QUOTED;
	const unsigned char *bytes = evbuffer_pullup(c->body, (ev_ssize_t)n);

	for (size_t i = 0; i < n && i + 1 < size; i++)
		out[i] = bytes[i] >= 0x20 && bytes[i] < 0x7f ? (char)bytes[i] : '?';
	out[n < size ? n : size - 1] = '\0';
}

/* Write to buf, for the log, the content type, the size and the first
 * bytes of the response body. */
static void
describe_body(struct tg_moderation_call *c, char *buf, size_t size)
{
	char quoted[BODY_QUOTED + 1];
	size_t len = evbuffer_get_length(c->body);

	quote_body(c, quoted, sizeof(quoted));
	snprintf(buf, size, "Content-Type %s, %zu-byte body%s%s%s%s",
	         c->content_type[0] ? c->content_type : "absent", len,
	         len > 0 ? " beginning \"" : "", len > 0 ? quoted : "",
	         len > BODY_QUOTED ? "..." : "", len > 0 ? "\"" : "");
}

/* Write to buf, for the log, why a 200 response could not be read: what
 * the parse found, and what the body is. */
static const char *
describe_unreadable(struct tg_moderation_call *c, const char *why, char *buf, size_t size)
{
	char body[BODY_QUOTED + 128];

	describe_body(c, body, sizeof(body));
	snprintf(buf, size, "classifier response not understood: %s; status 200, %s", why, body);
	return buf;
}

/* Write to buf, for the log, the classifier's status other than 200 and
 * the message of an OpenAI-shaped error body, which names what to fix, or
 * else what the body is (a proxy's HTML page, say). */
static const char *
describe_error_response(struct tg_moderation_call *c, char *buf, size_t size)
{
	size_t len = evbuffer_get_length(c->body);
	json_t *body = json_loadb((const char *)evbuffer_pullup(c->body, -1), len, 0, NULL);
	const char *message = json_string_value(json_object_get(json_object_get(body, "error"),
	                                                        "message"));
	char what[BODY_QUOTED + 128];

	if (message != NULL) {
		snprintf(buf, size, "classifier responded with status %d: %s", c->status, message);
	} else {
		describe_body(c, what, sizeof(what));
		snprintf(buf, size, "classifier responded with status %d (%s)", c->status, what);
	}
	json_decref(body);
	return buf;
}

static void
call_on_complete(void *arg)
{
	struct tg_moderation_call *c = arg;
	const char *category = NULL;
	enum tg_moderation_verdict v;
	size_t len = evbuffer_get_length(c->body);
	char detail[DETAIL_LEN], why[192];

	c->conn = NULL;
	if (c->status != 200) {
		finish(c, TG_VERDICT_ERROR, NULL, describe_error_response(c, detail, sizeof(detail)));
		return;
	}
	v = tg_moderation_parse(c->filter, (const char *)evbuffer_pullup(c->body, -1), len,
	                        c->n_inputs, &category, why, sizeof(why));
	if (v == TG_VERDICT_ERROR) {
		finish(c, v, NULL, describe_unreadable(c, why, detail, sizeof(detail)));
		return;
	}
	finish(c, v, category, NULL);
}

static void
call_on_error(void *arg, enum tg_error err, const char *detail)
{
	struct tg_moderation_call *c = arg;

	c->conn = NULL;
	finish(c, TG_VERDICT_ERROR, NULL, detail ? detail : tg_error_info(err)->message);
}

static const struct tg_upstream_handler moderation_handler = {
	.on_head = call_on_head,
	.on_body = call_on_body,
	.on_complete = call_on_complete,
	.on_error = call_on_error,
};

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct tg_moderation_call *c = arg;
	char detail[DETAIL_LEN];

	(void)fd;
	(void)what;
	if (c->conn != NULL)
		tg_upstream_cancel(c->conn);
	c->conn = NULL;
	if (c->too_large)
		snprintf(detail, sizeof(detail), "the classifier's response is larger than %d "
		         "bytes", MAX_RESPONSE);
	else
		snprintf(detail, sizeof(detail), "classifier timed out: no complete response "
		         "within %llu ms (filters.%s.timeout)",
		         (unsigned long long)c->filter->moderation.timeout, c->filter->name);
	finish(c, TG_VERDICT_ERROR, NULL, detail);
}

struct tg_moderation_call *
tg_moderation_start(struct tg_worker *w, const struct tg_filter *f,
                    const struct tg_text_list *texts, const char *request_id,
                    tg_moderation_done_fn *done, void *arg, const char **failure)
{
	struct tg_moderation_call *c = calloc(1, sizeof(*c));
	struct timeval tv;
	enum tg_error err;

	*failure = "out of memory";
	if (c == NULL)
		return NULL;
	c->filter = f;
	c->n_inputs = texts->n;
	c->done = done;
	c->arg = arg;
	c->body = evbuffer_new();
	c->request = build_request(f, texts, request_id);
	c->timer = evtimer_new(w->base, on_timeout, c);
	if (c->body == NULL || c->request == NULL || c->timer == NULL) {
		free_call(c);
		return NULL;
	}

	tv.tv_sec = (time_t)(f->moderation.timeout / 1000);
	tv.tv_usec = (suseconds_t)(f->moderation.timeout % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	c->conn = tg_upstream_send(w, f->moderation.backend, c->request, &moderation_handler,
	                           c, &err);
	if (c->conn == NULL) {
		*failure = tg_error_info(err)->message;
		free_call(c);
		return NULL;
	}
	return c;
}

void
tg_moderation_cancel(struct tg_moderation_call *c)
{
	if (c->conn != NULL)
		tg_upstream_cancel(c->conn);
	free_call(c);
}
