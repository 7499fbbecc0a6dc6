/*
 * Token usage and stream timing from what providers send.
 *
 * OpenAI-compatible providers report usage in a "usage" object: in the
 * body of a whole response, and in streams only when the request carried
 * "stream_options": {"include_usage": true}, as one extra chunk with empty
 * "choices" before "[DONE]". The gateway adds that option when the client
 * left it out and drops the extra chunk on the way back, so the client gets
 * the stream it asked for. With the option set, the provider's other chunks
 * carry "usage": null as well; that member is taken out again.
 *
 * Anthropic's shapes are read too: message_start and message_delta events,
 * and the usage of a whole message. So are the Responses API's: the usage
 * of its response.completed (or .incomplete, .failed) event, and of a
 * whole response, with input_tokens and output_tokens as Anthropic names
 * them.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "log.h"
#include "metrics-table.h"
#include "metrics.h"
#include "null-usage.h"
#include "relay.h"
#include "request.h"
#include "worker.h"

static const char USAGE_OPTION[] = "\"stream_options\":{\"include_usage\":true}";

/* --- asking for usage ---------------------------------------------------------- */

static int
has_suffix(const char *s, const char *suffix)
{
	size_t len = strlen(s), n = strlen(suffix);

	return len >= n && strcmp(s + len - n, suffix) == 0;
}

/* 1 when some backend of route takes no stream_options (stream_usage
 * false); every backend when all is set. */
static int
backends_without_usage(const struct tg_route *route, int all)
{
	size_t n = 0;

	for (size_t i = 0; i < route->n_backends; i++)
		n += !route->backends[i]->stream_usage;
	return all ? n == route->n_backends : n > 0;
}

static int
some_backend_without_usage(const struct tg_route *route)
{
	return backends_without_usage(route, 0);
}

/* Put text in place of req->body. When a backend of the route takes no
 * stream_options, the client's body is kept for it in body_without_usage. */
static int
replace_body(struct tg_request *req, const char *parts[], const size_t lens[], size_t n)
{
	struct evbuffer *body = evbuffer_new();
	size_t total = 0;

	if (body == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (evbuffer_add(body, parts[i], lens[i]) != 0) {
			evbuffer_free(body);
			return -1;
		}
		total += lens[i];
	}
	if (some_backend_without_usage(req->route) && req->body_without_usage == NULL)
		req->body_without_usage = req->body;
	else
		evbuffer_free(req->body);
	req->body = body;
	req->body_len = total;
	return 0;
}

/* The body has no "stream_options": insert the member right after the
 * object's opening brace, leaving every other byte as the client sent it. */
static int
insert_usage_option(struct tg_request *req)
{
	const char *data = (const char *)evbuffer_pullup(req->body, -1);
	const char *brace = data ? memchr(data, '{', req->body_len) : NULL;
	json_t *tree = tg_request_json_if_built(req);
	const char *parts[4];
	size_t lens[4];
	json_t *option = NULL;

	if (brace == NULL)
		return -1;      /* not an object after all: leave the body alone */
	/* A tree built already gets the member too; one built later reads it
	 * from the new body. */
	if (tree != NULL && (option = json_pack("{s:b}", "include_usage", 1)) == NULL)
		return -1;

	parts[0] = data;
	lens[0] = (size_t)(brace - data) + 1;
	parts[1] = USAGE_OPTION;
	lens[1] = sizeof(USAGE_OPTION) - 1;
	parts[2] = ",";         /* none before the closing brace of "{}" */
	lens[2] = req->body_has_members;
	parts[3] = brace + 1;
	lens[3] = req->body_len - lens[0];
	if (replace_body(req, parts, lens, 4) != 0) {
		json_decref(option);
		return -1;
	}
	return tree == NULL ? 0 : json_object_set_new(tree, "stream_options", option);
}

/* "stream_options" is there without include_usage: set it and write the
 * body again from the parsed JSON.
 * NOTE: the dump changes the form of numbers (0.7 into 0.69999999999999996,
 * and every integer into a real for a body with one beyond 64 bits, which
 * jansson reads as reals), where a splice (json-splice.h) would keep them. */
static int
set_usage_option(struct tg_request *req)
{
	json_t *options = json_object_get(tg_request_json(req), "stream_options");
	char *text;
	const char *parts[1];
	size_t lens[1];
	int rc;

	if (options == NULL || json_object_set_new(options, "include_usage", json_true()) != 0)
		return -1;
	text = json_dumps(tg_request_json(req), JSON_COMPACT);
	if (text == NULL)
		return -1;
	parts[0] = text;
	lens[0] = strlen(text);
	rc = replace_body(req, parts, lens, 1);
	free(text);
	return rc;
}

int
tg_metrics_stream_usage(struct tg_request *req)
{
	int rc;

	/* A streamed request has a JSON object body (the dispatch saw to it). */
	if (req->metrics.table == NULL || !req->stream || req->path == NULL)
		return 0;
	if (!has_suffix(req->path, "/chat/completions") && !has_suffix(req->path, "/completions"))
		return 0;

	if (req->stream_options == TG_STREAM_OPTIONS_USAGE)
		return 0;       /* the client asked: its usage chunk is its own */
	if (req->stream_options == TG_STREAM_OPTIONS_INVALID)
		return 0;       /* invalid: the provider rejects it with its own error */
	if (backends_without_usage(req->route, 1))
		return 0;       /* none takes it: their usage is what they send */

	rc = req->stream_options == TG_STREAM_OPTIONS_ABSENT ? insert_usage_option(req)
	                                                     : set_usage_option(req);
	if (rc == 0)
		req->metrics.usage_added = 1;
	return rc;
}

/* --- reading usage ------------------------------------------------------------ */

static uint64_t
count(const struct tg_reply_usage *u, enum tg_usage_count c)
{
	return u->count[c];
}

/* How often a worker logs usage it cannot read at most: an upstream that
 * sends it tends to send it in every response. */
#define UNREADABLE_USAGE_LOG_INTERVAL_MS (3600 * 1000)

/* A usage object with a count that is negative or not an integer (a
 * fraction, or an integer beyond 64 bits) makes the response's usage
 * unknown, even after an earlier readable one (a message_start before a
 * message_delta), so its tokens are estimated as when usage is missing.
 * The event itself is relayed: it is valid JSON. Returns 1 when u is
 * such an object, after logging it within the interval. */
static int
drop_unreadable(struct tg_request *req, struct tg_usage *out, const struct tg_reply_usage *u,
                enum tg_usage_count input, enum tg_usage_count output)
{
	uint64_t skipped;
	char more[96] = "";

	if (tg_usage_readable(u, input) && tg_usage_readable(u, output))
		return 0;
	memset(out, 0, sizeof(*out));
	if (!tg_log_limit_take(&req->worker->unreadable_usage_log,
	                       UNREADABLE_USAGE_LOG_INTERVAL_MS, &skipped))
		return 1;
	if (skipped > 0)
		snprintf(more, sizeof(more), ", and %llu more since the last message",
		         (unsigned long long)skipped);
	tg_log_request(req, TG_LOG_WARN, "the upstream's usage has a token count that is not "
	               "an integer from 0 to 2^63 - 1; the response's tokens are counted as "
	               "unknown and estimated (logged at most once an hour per worker%s)", more);
	return 1;
}

/* OpenAI's usage object. The counts are totals for the response, so a
 * later object replaces an earlier one. Returns 1 when usage was taken. */
static int
take_openai_usage(struct tg_request *req, struct tg_usage *out, const struct tg_reply_usage *u)
{
	if (drop_unreadable(req, out, u, TG_USAGE_PROMPT_TOKENS, TG_USAGE_COMPLETION_TOKENS))
		return 0;
	if (!tg_usage_has(u, TG_USAGE_PROMPT_TOKENS) && !tg_usage_has(u, TG_USAGE_COMPLETION_TOKENS))
		return 0;
	out->input = count(u, TG_USAGE_PROMPT_TOKENS);
	out->output = count(u, TG_USAGE_COMPLETION_TOKENS);
	out->cached_input = count(u, TG_USAGE_CACHED_TOKENS);
	out->reasoning = count(u, TG_USAGE_REASONING_TOKENS);
	out->reported = 1;
	return 1;
}

/* Anthropic counts cache reads and writes apart from input_tokens; input
 * here is all three, as OpenAI's prompt_tokens is, and the writes are
 * kept apart too, since Anthropic charges them at a price of their own. The Responses API uses
 * the same names, with its cached tokens inside input_tokens (no cache
 * members) and both details as chat completions have them. */
static int
take_anthropic_usage(struct tg_request *req, struct tg_usage *out,
                     const struct tg_reply_usage *u)
{
	uint64_t read = tg_usage_has(u, TG_USAGE_CACHE_READ_INPUT_TOKENS)
	                ? count(u, TG_USAGE_CACHE_READ_INPUT_TOKENS)
	                : count(u, TG_USAGE_CACHED_TOKENS);
	uint64_t added_reads = count(u, TG_USAGE_CACHE_READ_INPUT_TOKENS);

	if (drop_unreadable(req, out, u, TG_USAGE_INPUT_TOKENS, TG_USAGE_OUTPUT_TOKENS))
		return 0;
	if (!tg_usage_has(u, TG_USAGE_INPUT_TOKENS) && !tg_usage_has(u, TG_USAGE_OUTPUT_TOKENS))
		return 0;
	if (tg_usage_has(u, TG_USAGE_INPUT_TOKENS)) {
		out->input = count(u, TG_USAGE_INPUT_TOKENS) + added_reads +
		             count(u, TG_USAGE_CACHE_CREATION_INPUT_TOKENS);
		out->cached_input = read;
		out->cache_write_input = count(u, TG_USAGE_CACHE_CREATION_INPUT_TOKENS);
	}
	if (tg_usage_has(u, TG_USAGE_OUTPUT_TOKENS))
		out->output = count(u, TG_USAGE_OUTPUT_TOKENS);    /* cumulative */
	if (tg_usage_has(u, TG_USAGE_REASONING_TOKENS))
		out->reasoning = count(u, TG_USAGE_REASONING_TOKENS);
	out->reported = 1;
	return 1;
}

static void
take_event_usage(struct tg_request *req, struct tg_usage *out, const struct tg_reply_digest *d)
{
	if (d->type == TG_REPLY_TYPE_MESSAGE_START || d->type == TG_REPLY_TYPE_RESPONSE_END)
		take_anthropic_usage(req, out, &d->message_usage);
	else if (d->type == TG_REPLY_TYPE_MESSAGE_DELTA)
		take_anthropic_usage(req, out, &d->usage);
	else
		take_openai_usage(req, out, &d->usage);
}

void
tg_metrics_response_body(struct tg_request *req)
{
	const struct tg_reply_digest *d;

	if (req->metrics.table == NULL || req->response.body == NULL)
		return;
	d = tg_relay_response_digest(req);
	if (!take_openai_usage(req, &req->metrics.usage, &d->usage))
		take_anthropic_usage(req, &req->metrics.usage, &d->usage);
}

/* --- stream events ----------------------------------------------------------- */

/* Whether an event carries output: text, a refusal, reasoning or a tool
 * call. A role-only chunk, a finish chunk and a usage chunk carry none. */
static int
has_content(const struct tg_reply_digest *d)
{
	if (d->type != TG_REPLY_TYPE_NONE)
		return d->type == TG_REPLY_TYPE_CONTENT_BLOCK_DELTA || d->response_delta;
	return d->output || d->reasoning;
}

/* The chunk include_usage adds: a usage object and no choices. */
static int
is_usage_chunk(const struct tg_reply_digest *d)
{
	return d->usage.shape == TG_USAGE_OBJECT && d->choices && d->n_choices == 0;
}

/*
 * tg_null_usage_find() for an event whose digest has the member's offsets.
 * With no other key named usage in the text, the member there is the one
 * the search would find, if its bytes match the pattern. Skipping the
 * search saves about 700 instructions per chunk under callgrind. An event
 * whose data is not where the relay read it (written by the filters, or
 * joined from several lines) is searched.
 */
static int
find_null_usage(const struct tg_stream_event *ev, const char *data, size_t len,
                const char **from, const char **to)
{
	const struct tg_reply_digest *d = &ev->digest;
	size_t key_end = ev->data_at + d->null_usage_key_end;

	if (ev->data_at == 0 || d->null_usage_end == 0)
		return tg_null_usage_find(data, len, from, to);
	if (key_end < TG_USAGE_KEY_LEN || ev->data_at + d->null_usage_end > len)
		return 0;
	*from = data + key_end - TG_USAGE_KEY_LEN;
	*to = tg_null_usage_end(*from, data + len);
	return *to == data + ev->data_at + d->null_usage_end;
}

/* Take the top-level `"usage": null` member out of an event's bytes, and
 * its comma. */
static void
strip_null_usage(struct tg_stream_event *ev)
{
	size_t len = evbuffer_get_length(ev->raw);
	char *data = (char *)evbuffer_pullup(ev->raw, -1);
	const char *end = data + len, *from, *to;

	if (data == NULL || ev->digest.usage.shape != TG_USAGE_NULL)
		return;
	if (!find_null_usage(ev, data, len, &from, &to))
		return;

	tg_null_usage_widen(data, end, &from, &to);

	/* Move the bytes before the member over it, then drain them from the
	 * front. raw owns its bytes (they were added with evbuffer_add()), so
	 * they may be written in place. Copying the event without the member
	 * cost about 300 instructions more per event under callgrind. */
	memmove(data + (to - from), data, (size_t)(from - data));
	evbuffer_drain(ev->raw, (size_t)(to - from));
	ev->digest.usage.shape = TG_USAGE_ABSENT;
	ev->data_at = 0;        /* the data moved */
	ev->usage_stripped = 1;
	json_object_del(ev->json, "usage");     /* when the tree was built already */
}

/* Whether the gateway's usage request went to the backend of this
 * attempt: one with stream_usage false got the client's body. */
static int
usage_asked(const struct tg_request *req)
{
	return req->metrics.usage_added && req->backend != NULL && req->backend->stream_usage;
}

int
tg_metrics_stream_event(struct tg_request *req, struct tg_stream_event *ev)
{
	struct tg_metrics_request *m = &req->metrics;
	const struct tg_reply_digest *d = &ev->digest;

	if (m->table == NULL)
		return 0;
	if (d->object) {
		take_event_usage(req, &m->usage, d);
		if (usage_asked(req) && is_usage_chunk(d))
			return 1;
		if (usage_asked(req))
			strip_null_usage(ev);
	}

	tg_metrics_stream_opened(req);
	if (d->object && has_content(d))
		tg_metrics_content_event(req, tg_now_ns());
	return 0;
}
