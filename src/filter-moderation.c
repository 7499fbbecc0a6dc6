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
#include "upstream.h"
#include "worker.h"

/* A classifier's response is small; a longer body is an error. */
#define MAX_RESPONSE (1024 * 1024)

struct tg_moderation_call {
	const struct tg_filter *filter;
	struct tg_upstream_conn *conn;
	struct event *timer;
	struct evbuffer *request;
	struct evbuffer *body;
	int status;
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

/* The OpenAI shape: {"results": [{"flagged", "categories",
 * "category_scores"}]}, one result per input. */
static enum tg_moderation_verdict
parse_openai(const struct tg_filter *f, json_t *root, const char **category)
{
	const struct tg_moderation *m = &f->moderation;
	json_t *results = json_object_get(root, "results");
	size_t i;
	json_t *result;

	if (!json_is_array(results) || json_array_size(results) == 0)
		return TG_VERDICT_ERROR;

	json_array_foreach(results, i, result) {
		json_t *scores = json_object_get(result, "category_scores");

		if (m->n_thresholds == 0) {
			if (!json_is_boolean(json_object_get(result, "flagged")))
				return TG_VERDICT_ERROR;
			if (json_is_true(json_object_get(result, "flagged"))) {
				*category = "flagged";
				return TG_VERDICT_FLAGGED;
			}
			continue;
		}
		for (size_t t = 0; t < m->n_thresholds; t++) {
			json_t *score = json_object_get(scores, m->thresholds[t].name);

			if (json_is_number(score) &&
			    json_number_value(score) >= m->thresholds[t].score) {
				*category = m->thresholds[t].name;
				return TG_VERDICT_FLAGGED;
			}
		}
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
parse_chat(const struct tg_filter *f, json_t *root, const char **category)
{
	json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
	json_t *content = json_object_get(json_object_get(choice, "message"), "content");
	pcre2_match_data *md;
	int rc;

	if (!json_is_string(content))
		return TG_VERDICT_ERROR;
	md = pcre2_match_data_create(1, NULL);
	if (md == NULL)
		return TG_VERDICT_ERROR;
	rc = pcre2_match(f->moderation.verdict_code, (PCRE2_SPTR)json_string_value(content),
	                 json_string_length(content), 0, 0, md, NULL);
	if (rc >= 0)
		*category = guard_category(json_string_value(content),
		                           pcre2_get_ovector_pointer(md)[1]);
	pcre2_match_data_free(md);
	if (rc == PCRE2_ERROR_NOMATCH)
		return TG_VERDICT_SAFE;
	return rc >= 0 ? TG_VERDICT_FLAGGED : TG_VERDICT_ERROR;
}

enum tg_moderation_verdict
tg_moderation_parse(const struct tg_filter *f, const char *body, size_t len,
                    const char **category)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	enum tg_moderation_verdict v;

	*category = NULL;
	if (!json_is_object(root)) {
		json_decref(root);
		return TG_VERDICT_ERROR;
	}
	if (f->moderation.api == TG_MODERATION_CHAT)
		v = parse_chat(f, root, category);
	else
		v = parse_openai(f, root, category);
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

/* Free the call, then report: done may free what arg points to. */
static void
finish(struct tg_moderation_call *c, enum tg_moderation_verdict v, const char *category,
       const char *detail)
{
	tg_moderation_done_fn *done = c->done;
	const struct tg_filter *f = c->filter;
	void *arg = c->arg;

	free_call(c);
	done(arg, f, v, category, detail);
}

static int
call_on_head(void *arg, int status, struct tg_headers *headers)
{
	struct tg_moderation_call *c = arg;

	(void)headers;
	c->status = status;
	return 0;
}

static int
call_on_body(void *arg, const char *data, size_t len)
{
	struct tg_moderation_call *c = arg;

	/* Returning non-zero stops the exchange and hands the connection
	 * back; the timer then reports the failure. */
	if (evbuffer_get_length(c->body) + len > MAX_RESPONSE ||
	    evbuffer_add(c->body, data, len) != 0) {
		c->conn = NULL;
		return 1;
	}
	return 0;
}

/* Write to buf, for the log, the classifier's status other than 200 and
 * the message of an OpenAI-shaped error body, which names what to fix. */
static const char *
describe_error_response(struct tg_moderation_call *c, char *buf, size_t size)
{
	size_t len = evbuffer_get_length(c->body);
	json_t *body = json_loadb((const char *)evbuffer_pullup(c->body, -1), len, 0, NULL);
	const char *message = json_string_value(json_object_get(json_object_get(body, "error"),
	                                                        "message"));

	if (message != NULL)
		snprintf(buf, size, "classifier responded with status %d: %s", c->status, message);
	else
		snprintf(buf, size, "classifier responded with status %d", c->status);
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
	char detail[256];

	c->conn = NULL;
	if (c->status != 200) {
		finish(c, TG_VERDICT_ERROR, NULL, describe_error_response(c, detail, sizeof(detail)));
		return;
	}
	v = tg_moderation_parse(c->filter, (const char *)evbuffer_pullup(c->body, -1), len,
	                        &category);
	finish(c, v, category, v == TG_VERDICT_ERROR ? "classifier response not understood" : NULL);
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

	(void)fd;
	(void)what;
	if (c->conn != NULL)
		tg_upstream_cancel(c->conn);
	c->conn = NULL;
	finish(c, TG_VERDICT_ERROR, NULL, "classifier timed out");
}

struct tg_moderation_call *
tg_moderation_start(struct tg_worker *w, const struct tg_filter *f,
                    const struct tg_text_list *texts, const char *request_id,
                    tg_moderation_done_fn *done, void *arg)
{
	struct tg_moderation_call *c = calloc(1, sizeof(*c));
	struct timeval tv;
	enum tg_error err;

	if (c == NULL)
		return NULL;
	c->filter = f;
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
