/*
 * Unit tests for cache entries (src/cache-entry.c, src/cache-convert.c):
 * which responses may be stored, the envelope, stream replay and the
 * conversions between a stream and a JSON body.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cache-entry.h"
#include "sse.h"

#define CHUNK(choices, rest) \
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000," \
	"\"model\":\"gpt-4o\",\"system_fingerprint\":\"fp_1\",\"choices\":" choices rest "}"

/* A chat stream as OpenAI sends it with include_usage: role, two content
 * pieces, finish, usage. */
static const char *const chat_stream[] = {
	CHUNK("[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
	      "\"logprobs\":null,\"finish_reason\":null}]", ",\"usage\":null"),
	CHUNK("[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,"
	      "\"finish_reason\":null}]", ",\"usage\":null"),
	CHUNK("[{\"index\":0,\"delta\":{\"content\":\" world\"},\"logprobs\":null,"
	      "\"finish_reason\":null}]", ",\"usage\":null"),
	CHUNK("[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]",
	      ",\"usage\":null"),
	CHUNK("[]", ",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}"),
};
#define N_CHAT_STREAM (sizeof(chat_stream) / sizeof(chat_stream[0]))

/* A tool call streamed in pieces, without usage. */
static const char *const tool_stream[] = {
	CHUNK("[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
	      "[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":"
	      "{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,"
	      "\"finish_reason\":null}]", ""),
	CHUNK("[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	      "{\"arguments\":\"{\\\"location\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}]", ""),
	CHUNK("[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
	      "{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]", ""),
	CHUNK("[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]", ""),
};
#define N_TOOL_STREAM (sizeof(tool_stream) / sizeof(tool_stream[0]))

static const char chat_body[] =
	"{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion\",\"created\":1700000001,"
	"\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	"\"content\":\"Hello world\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
	"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5},"
	"\"system_fingerprint\":\"fp_2\"}";

/* Record one event with its data parsed, as the relay hands it out. */
static void
record_event(struct tg_cache_record *r, const char *type, size_t type_len, const char *data,
             size_t data_len)
{
	json_t *chunk = json_loadb(data, data_len, 0, NULL);

	tg_cache_record_event(r, type, type_len, data, data_len, chunk);
	json_decref(chunk);
}

/* Encode a body as the relay's caller does, with its parse. */
static char *
entry_from_body(const char *body, size_t body_len, int64_t created_ms, size_t *len,
                const char **reason)
{
	json_t *parsed = json_loadb(body, body_len, 0, NULL);
	char *text = tg_cache_entry_from_body(body, body_len, parsed, NULL, created_ms, len,
	                                      reason);

	json_decref(parsed);
	return text;
}

static void
record_all(struct tg_cache_record *r, const char *const *events, size_t n, int done)
{
	tg_cache_record_init(r, 1 << 20);
	for (size_t i = 0; i < n; i++)
		record_event(r, "", 0, events[i], strlen(events[i]));
	if (done)
		record_event(r, "", 0, "[DONE]", 6);
}

/* Encode a recorded stream, decode it back into e. */
static void
stream_entry(const char *const *events, size_t n, struct tg_cache_entry *e)
{
	struct tg_cache_record r;
	const char *reason = NULL;
	size_t len = 0;
	char *text;

	record_all(&r, events, n, 1);
	text = tg_cache_entry_from_record(&r, NULL, 1700000000123, &len, &reason);
	ck_assert_msg(text != NULL, "stream not storable: %s", reason);
	ck_assert_uint_eq(len, strlen(text));
	ck_assert_int_eq(tg_cache_entry_decode(text, len, e), 0);
	free(text);
	tg_cache_record_free(&r);
}

static void
body_entry(const char *body, struct tg_cache_entry *e)
{
	const char *reason = NULL;
	size_t len = 0;
	char *text = entry_from_body(body, strlen(body), 1700000000456, &len, &reason);

	ck_assert_msg(text != NULL, "body not storable: %s", reason);
	ck_assert_int_eq(tg_cache_entry_decode(text, len, e), 0);
	free(text);
}

/* Render e and return the text (to free). Fails the test when the entry
 * cannot answer. */
static char *
render(const struct tg_cache_entry *e, int stream, int want_usage)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	ck_assert_int_eq(tg_cache_entry_render(e, stream, want_usage, out), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

static int
render_fails(const struct tg_cache_entry *e, int stream, int want_usage)
{
	struct evbuffer *out = evbuffer_new();
	int rc = tg_cache_entry_render(e, stream, want_usage, out);

	/* A refusal leaves the output untouched. */
	if (rc != 0)
		ck_assert_uint_eq(evbuffer_get_length(out), 0);
	evbuffer_free(out);
	return rc != 0;
}

/* Events parsed back from rendered text with the gateway's SSE parser. */
struct parsed {
	char *data[32];
	size_t n;
};

static int
collect_event(void *arg, const struct tg_sse_event *ev)
{
	struct parsed *p = arg;

	ck_assert_uint_lt(p->n, 32);
	p->data[p->n++] = strndup(ev->data, ev->data_len);
	return 0;
}

static void
parse_events(const char *text, struct parsed *p)
{
	struct tg_sse_parser parser;

	memset(p, 0, sizeof(*p));
	tg_sse_init(&parser, 0, collect_event, NULL, p);
	ck_assert_int_eq(tg_sse_feed(&parser, text, strlen(text)), 0);
	ck_assert_int_eq(tg_sse_finish(&parser), 0);
	tg_sse_free(&parser);
}

static void
free_parsed(struct parsed *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->data[i]);
}

static json_t *
parse_json(const char *text)
{
	json_error_t error;
	json_t *v = json_loads(text, 0, &error);

	ck_assert_msg(v != NULL, "not JSON (%s): %s", error.text, text);
	return v;
}

/* --- storability ------------------------------------------------------------ */

START_TEST(complete_stream_is_storable)
{
	struct tg_cache_record r;

	record_all(&r, chat_stream, N_CHAT_STREAM, 1);
	ck_assert_ptr_null(tg_cache_record_incomplete(&r));
	ck_assert(r.has_usage);
	ck_assert_int_eq(r.usage_event, 4);
	tg_cache_record_free(&r);
}
END_TEST

START_TEST(stream_without_done_not_stored)
{
	struct tg_cache_record r;
	const char *reason = NULL;
	size_t len;

	record_all(&r, chat_stream, N_CHAT_STREAM, 0);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream ended without [DONE]");
	ck_assert_ptr_null(tg_cache_entry_from_record(&r, NULL, 0, &len, &reason));
	ck_assert_ptr_nonnull(reason);
	tg_cache_record_free(&r);
}
END_TEST

START_TEST(stream_without_finish_not_stored)
{
	struct tg_cache_record r;

	/* Cut before the finish chunk, then [DONE]. */
	record_all(&r, chat_stream, 3, 1);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "a choice has no finish_reason");
	tg_cache_record_free(&r);
}
END_TEST

START_TEST(content_filter_stream_not_stored)
{
	struct tg_cache_record r;
	const char *filtered = CHUNK("[{\"index\":0,\"delta\":{},\"logprobs\":null,"
	                             "\"finish_reason\":\"content_filter\"}]", "");

	record_all(&r, chat_stream, 3, 0);
	record_event(&r, "", 0, filtered, strlen(filtered));
	record_event(&r, "", 0, "[DONE]", 6);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "stopped by a content filter");
	/* Nothing is kept of a stream that will not be stored. */
	ck_assert_uint_eq(json_array_size(r.events), 0);
	tg_cache_record_free(&r);
}
END_TEST

START_TEST(error_event_not_stored)
{
	struct tg_cache_record r;
	const char *error = "{\"error\":{\"message\":\"upstream failed\",\"type\":\"upstream_error\"}}";

	record_all(&r, chat_stream, 2, 0);
	record_event(&r, "", 0, error, strlen(error));
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream carries an error");
	tg_cache_record_free(&r);
}
END_TEST

START_TEST(odd_streams_not_stored)
{
	struct tg_cache_record r;

	record_all(&r, chat_stream, N_CHAT_STREAM, 1);
	record_event(&r, "", 0, chat_stream[1], strlen(chat_stream[1]));
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event follows [DONE]");
	tg_cache_record_free(&r);

	record_all(&r, chat_stream, 2, 0);
	record_event(&r, "ping", 4, "{}", 2);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream has named events");
	tg_cache_record_free(&r);

	record_all(&r, chat_stream, 2, 0);
	record_event(&r, "", 0, "not json", 8);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event is not JSON");
	tg_cache_record_free(&r);

	record_all(&r, NULL, 0, 1);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream has no choices");
	tg_cache_record_free(&r);

	/* Over the size limit. */
	tg_cache_record_init(&r, 100);
	for (size_t i = 0; i < N_CHAT_STREAM; i++)
		record_event(&r, "", 0, chat_stream[i], strlen(chat_stream[i]));
	record_event(&r, "", 0, "[DONE]", 6);
	ck_assert_str_eq(tg_cache_record_incomplete(&r),
	                 "the stream is larger than the entry size limit");
	ck_assert_int_eq(r.too_large, 1);
	tg_cache_record_free(&r);

	/* Rejected for another reason first, it is not too large. */
	tg_cache_record_init(&r, 100);
	record_event(&r, "", 0, "not json", 8);
	for (size_t i = 0; i < N_CHAT_STREAM; i++)
		record_event(&r, "", 0, chat_stream[i], strlen(chat_stream[i]));
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event is not JSON");
	ck_assert_int_eq(r.too_large, 0);
	tg_cache_record_free(&r);
}
END_TEST

/* The record checks the parse it is given and parses no data of its own.
 * It stores the data. */
START_TEST(record_reads_the_given_parse)
{
	struct tg_cache_record r;
	json_t *filtered = json_loads(CHUNK("[{\"index\":0,\"delta\":{},"
	                                    "\"finish_reason\":\"content_filter\"}]", ""), 0, NULL);

	ck_assert_ptr_nonnull(filtered);
	tg_cache_record_init(&r, 1 << 20);
	tg_cache_record_event(&r, "", 0, chat_stream[1], strlen(chat_stream[1]), filtered);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "stopped by a content filter");
	tg_cache_record_free(&r);

	tg_cache_record_init(&r, 1 << 20);
	tg_cache_record_event(&r, "", 0, chat_stream[1], strlen(chat_stream[1]), NULL);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event is not JSON");
	tg_cache_record_free(&r);
	json_decref(filtered);
}
END_TEST

START_TEST(every_choice_must_finish)
{
	struct tg_cache_record r;
	const char *two = CHUNK("[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null},"
	                        "{\"index\":1,\"delta\":{\"content\":\"b\"},\"finish_reason\":null}]", "");
	const char *end0 = CHUNK("[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]", "");
	const char *end1 = CHUNK("[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]", "");

	tg_cache_record_init(&r, 1 << 20);
	record_event(&r, "", 0, two, strlen(two));
	record_event(&r, "", 0, end0, strlen(end0));
	record_event(&r, "", 0, "[DONE]", 6);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "a choice has no finish_reason");
	tg_cache_record_free(&r);

	tg_cache_record_init(&r, 1 << 20);
	record_event(&r, "", 0, two, strlen(two));
	record_event(&r, "", 0, end0, strlen(end0));
	record_event(&r, "", 0, end1, strlen(end1));
	record_event(&r, "", 0, "[DONE]", 6);
	ck_assert_ptr_null(tg_cache_record_incomplete(&r));
	tg_cache_record_free(&r);
}
END_TEST

#define UNFINISHED "the Responses API response has no \"status\": \"completed\""

START_TEST(bodies_checked_before_storing)
{
	static const struct {
		const char *body;
		const char *reason;     /* NULL: storable */
	} cases[] = {
		{chat_body, NULL},
		{"{\"object\":\"list\",\"data\":[{\"embedding\":[0.1]}]}", NULL},
		{"{\"error\":{\"message\":\"bad\"}}", "the body is an error"},
		{"[1,2]", "the body is not a JSON object"},
		{"{\"choices\":[{\"message\":{},\"finish_reason\":\"content_filter\"}]}",
		 "stopped by a content filter"},
		{"{\"choices\":[{\"message\":{},\"finish_reason\":null}]}",
		 "a choice has no finish_reason"},
		{"{\"choices\":", "the body is not JSON"},
		{"{\"object\":\"response\",\"status\":\"completed\",\"output\":[]}", NULL},
		{"{\"object\":\"response\",\"status\":\"failed\",\"output\":[]}", UNFINISHED},
		{"{\"object\":\"response\",\"status\":\"queued\"}", UNFINISHED},
		{"{\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}", UNFINISHED},
		{"{\"object\":\"response\",\"status\":\"incomplete\",\"output\":[]}", UNFINISHED},
		{"{\"object\":\"response\",\"output\":[]}", UNFINISHED},
		{"{\"status\":\"failed\",\"output\":[]}", UNFINISHED},
		{"{\"status\":\"failed\",\"data\":[]}", NULL},
		{"{\"type\":\"message\",\"content\":[],\"stop_reason\":\"refusal\"}",
		 "stopped by a refusal"},
		{"{\"type\":\"message\",\"content\":[],\"stop_reason\":\"end_turn\"}", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *reason = NULL;
		size_t len;
		char *text = entry_from_body(cases[i].body, strlen(cases[i].body), 0,
		                                      &len, &reason);

		if (cases[i].reason == NULL) {
			ck_assert_msg(text != NULL, "case %zu not stored: %s", i, reason);
		} else {
			ck_assert_msg(text == NULL, "case %zu stored", i);
			ck_assert_str_eq(reason, cases[i].reason);
		}
		free(text);
	}
}
END_TEST

/* --- envelope -------------------------------------------------------------------- */

START_TEST(envelope_round_trip)
{
	struct tg_cache_entry e;

	stream_entry(chat_stream, N_CHAT_STREAM, &e);
	ck_assert(e.is_stream);
	ck_assert_int_eq(e.created_ms, 1700000000123);
	ck_assert_uint_eq(e.n_parts, N_CHAT_STREAM);
	ck_assert_uint_eq(e.parts[1].len, strlen(chat_stream[1]));
	ck_assert_str_eq(e.parts[1].data, chat_stream[1]);
	ck_assert(e.has_usage);
	ck_assert_int_eq(e.usage_event, 4);
	tg_cache_entry_free(&e);

	body_entry(chat_body, &e);
	ck_assert(!e.is_stream);
	ck_assert_int_eq(e.created_ms, 1700000000456);
	ck_assert_uint_eq(e.body_len, strlen(chat_body));
	ck_assert_str_eq(e.body, chat_body);
	tg_cache_entry_free(&e);
}
END_TEST

/* The payload follows the header's line feed; line feeds inside it, as in
 * a pretty-printed body, are the body's own. */
START_TEST(envelope_keeps_line_feeds)
{
	static const char body[] = "{\n  \"choices\": [{\"finish_reason\": \"stop\"}]\n}\n";
	struct tg_cache_entry e;

	body_entry(body, &e);
	ck_assert_uint_eq(e.body_len, strlen(body));
	ck_assert_str_eq(e.body, body);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(invalid_envelopes_rejected)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[]\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}",
		"{\"v\":1,\"created_ms\":1,\"kind\":\"json\",\"body\":\"{}\"}",
		"{\"v\":1,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[2]}\n{}",
		"{\"v\":2,\"kind\":\"json\",\"bytes\":[2]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"other\",\"bytes\":[2]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\"}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[3]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[1]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[-1,3]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[1,1]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[\"2\"]}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"json\",\"bytes\":[]}\n",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"bytes\":[2],\"usage\":true,"
		"\"usage_event\":1}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"bytes\":[2],"
		"\"usage_event\":-1}\n{}",
		"{\"v\":2,\"created_ms\":1,\"kind\":\"stream\",\"bytes\":[2],\"usage\":false,"
		"\"usage_event\":-2}\n{}",
	};
	struct tg_cache_entry e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(tg_cache_entry_decode(bad[i], strlen(bad[i]), &e) == -1,
		              "accepted: %s", bad[i]);
}
END_TEST

/* An entry keeps the response's content type and provider ids, and
 * leaves out rate-limit headers and anything else. */
START_TEST(entry_keeps_response_headers)
{
	static const char *const given[][2] = {
		{"Content-Type", "application/json; charset=utf-8"},
		{"x-ratelimit-remaining-requests", "99"},
		{"request-id", "req_011"},
		{"Set-Cookie", "a=b"},
		{"X-Upstream-Request-Id", "req_abc"},
		{"openai-processing-ms", "321"},
		{"anthropic-ratelimit-tokens-remaining", "5"},
	};
	const char body[] = "{\"id\":\"x\",\"choices\":[]}";
	struct tg_headers headers;
	struct tg_cache_entry e;
	json_t *parsed = json_loadb(body, sizeof(body) - 1, 0, NULL);
	const char *reason;
	size_t len;
	char *text;

	tg_headers_init(&headers);
	for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++)
		ck_assert_int_eq(tg_headers_add(&headers, given[i][0], strlen(given[i][0]),
		                                given[i][1], strlen(given[i][1])), 0);
	text = tg_cache_entry_from_body(body, sizeof(body) - 1, parsed, &headers, 1, &len, &reason);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(tg_cache_entry_decode(text, len, &e), 0);
	ck_assert_uint_eq(e.headers.count, 4);
	ck_assert_str_eq(tg_headers_get(&e.headers, "content-type"), "application/json; charset=utf-8");
	ck_assert_str_eq(tg_headers_get(&e.headers, "request-id"), "req_011");
	ck_assert_str_eq(tg_headers_get(&e.headers, "x-upstream-request-id"), "req_abc");
	ck_assert_str_eq(tg_headers_get(&e.headers, "openai-processing-ms"), "321");
	ck_assert_int_eq(memcmp(e.body, body, sizeof(body) - 1), 0);
	tg_cache_entry_free(&e);
	free(text);
	json_decref(parsed);
	tg_headers_free(&headers);
}
END_TEST

/* --- replay ------------------------------------------------------------------------ */

START_TEST(stream_replays_same_events)
{
	struct tg_cache_entry e;
	struct parsed p;
	char *text;

	stream_entry(chat_stream, N_CHAT_STREAM, &e);
	text = render(&e, 1, 1);
	parse_events(text, &p);
	ck_assert_uint_eq(p.n, N_CHAT_STREAM + 1);
	for (size_t i = 0; i < N_CHAT_STREAM; i++)
		ck_assert_str_eq(p.data[i], chat_stream[i]);
	ck_assert_str_eq(p.data[N_CHAT_STREAM], "[DONE]");
	free_parsed(&p);
	free(text);

	/* Without include_usage the usage chunk is left out, and so is the
	 * "usage": null of the other chunks, as the relay leaves it out for a
	 * client that did not ask. Nothing else changes. */
	text = render(&e, 1, 0);
	parse_events(text, &p);
	ck_assert_uint_eq(p.n, N_CHAT_STREAM);
	for (size_t i = 0; i < N_CHAT_STREAM - 1; i++) {
		char *want = strdup(chat_stream[i]);
		char *member = strstr(want, ",\"usage\":null");

		ck_assert_ptr_nonnull(member);
		memmove(member, member + 13, strlen(member + 13) + 1);
		ck_assert_str_eq(p.data[i], want);
		free(want);
	}
	ck_assert_str_eq(p.data[N_CHAT_STREAM - 1], "[DONE]");
	free_parsed(&p);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(stream_without_usage_cannot_give_it)
{
	struct tg_cache_entry e;
	struct parsed p;
	char *text;

	stream_entry(tool_stream, N_TOOL_STREAM, &e);
	ck_assert(!e.has_usage);
	ck_assert(render_fails(&e, 1, 1));
	ck_assert(render_fails(&e, 0, 0));

	text = render(&e, 1, 0);
	parse_events(text, &p);
	ck_assert_uint_eq(p.n, N_TOOL_STREAM + 1);
	for (size_t i = 0; i < N_TOOL_STREAM; i++)
		ck_assert_str_eq(p.data[i], tool_stream[i]);
	free_parsed(&p);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(multiline_data_split_into_lines)
{
	struct evbuffer *out = evbuffer_new();
	struct parsed p;
	char text[64];
	size_t len;

	ck_assert_int_eq(tg_cache_write_event(out, "a\nb", 3), 0);
	len = evbuffer_get_length(out);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	ck_assert_str_eq(text, "data: a\ndata: b\n\n");
	parse_events(text, &p);
	ck_assert_uint_eq(p.n, 1);
	ck_assert_str_eq(p.data[0], "a\nb");
	free_parsed(&p);
	evbuffer_free(out);
}
END_TEST

START_TEST(json_replays_same_body)
{
	struct tg_cache_entry e;
	char *text;

	body_entry(chat_body, &e);
	text = render(&e, 0, 0);
	ck_assert_str_eq(text, chat_body);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

/* --- conversions ------------------------------------------------------------------- */

START_TEST(stream_to_json_chat)
{
	struct tg_cache_entry e;
	json_t *body, *message;
	char *text;

	stream_entry(chat_stream, N_CHAT_STREAM, &e);
	text = render(&e, 0, 0);
	body = parse_json(text);

	ck_assert_str_eq(json_string_value(json_object_get(body, "object")), "chat.completion");
	ck_assert_str_eq(json_string_value(json_object_get(body, "id")), "chatcmpl-1");
	ck_assert_int_eq(json_integer_value(json_object_get(body, "created")), 1700000000);
	ck_assert_str_eq(json_string_value(json_object_get(body, "model")), "gpt-4o");
	ck_assert_str_eq(json_string_value(json_object_get(body, "system_fingerprint")), "fp_1");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(body, "usage"),
	                                                    "total_tokens")), 5);
	ck_assert_uint_eq(json_array_size(json_object_get(body, "choices")), 1);

	message = json_object_get(json_array_get(json_object_get(body, "choices"), 0), "message");
	ck_assert_str_eq(json_string_value(json_object_get(message, "role")), "assistant");
	ck_assert_str_eq(json_string_value(json_object_get(message, "content")), "Hello world");
	ck_assert(json_is_null(json_object_get(message, "refusal")));
	ck_assert_str_eq(json_string_value(json_object_get(
		json_array_get(json_object_get(body, "choices"), 0), "finish_reason")), "stop");

	/* Byte for byte the body OpenAI sends without streaming. */
	ck_assert_str_eq(text,
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
		"\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		"\"content\":\"Hello world\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
		"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5},"
		"\"system_fingerprint\":\"fp_1\"}");
	json_decref(body);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

/* A stream that opens with "content": "" and then calls a tool has no
 * text: its JSON answer has "content": null, as a whole response has. */
START_TEST(stream_to_json_tool_call_without_text)
{
	const char *opening = CHUNK("[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	                            "\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
	                            "\"finish_reason\":null}]", "");
	const char *with_usage = CHUNK("[]", ",\"usage\":{\"prompt_tokens\":1,"
	                               "\"completion_tokens\":9,\"total_tokens\":10}");
	const char *events[N_TOOL_STREAM + 2];
	struct tg_cache_entry e;
	json_t *body, *message;
	char *text;

	events[0] = opening;
	memcpy(events + 1, tool_stream, sizeof(tool_stream));
	events[N_TOOL_STREAM + 1] = with_usage;
	stream_entry(events, N_TOOL_STREAM + 2, &e);
	text = render(&e, 0, 0);
	body = parse_json(text);

	message = json_object_get(json_array_get(json_object_get(body, "choices"), 0), "message");
	ck_assert(json_is_null(json_object_get(message, "content")));
	ck_assert_uint_eq(json_array_size(json_object_get(message, "tool_calls")), 1);
	json_decref(body);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(stream_to_json_tool_call)
{
	const char *with_usage = CHUNK("[]", ",\"usage\":{\"prompt_tokens\":1,"
	                               "\"completion_tokens\":9,\"total_tokens\":10}");
	const char *events[N_TOOL_STREAM + 1];
	struct tg_cache_entry e;
	json_t *body, *message, *call;
	char *text;

	memcpy(events, tool_stream, sizeof(tool_stream));
	events[N_TOOL_STREAM] = with_usage;
	stream_entry(events, N_TOOL_STREAM + 1, &e);
	text = render(&e, 0, 0);
	body = parse_json(text);

	message = json_object_get(json_array_get(json_object_get(body, "choices"), 0), "message");
	ck_assert(json_is_null(json_object_get(message, "content")));
	ck_assert_uint_eq(json_array_size(json_object_get(message, "tool_calls")), 1);
	call = json_array_get(json_object_get(message, "tool_calls"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(call, "id")), "call_1");
	ck_assert_str_eq(json_string_value(json_object_get(call, "type")), "function");
	ck_assert_ptr_null(json_object_get(call, "index"));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(call, "function"), "name")),
	                 "get_weather");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(call, "function"),
	                                                   "arguments")),
	                 "{\"location\":\"Paris\"}");
	ck_assert_str_eq(json_string_value(json_object_get(
		json_array_get(json_object_get(body, "choices"), 0), "finish_reason")), "tool_calls");
	json_decref(body);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

/* Join the content deltas of chunks parsed from a rendered stream. */
static void
join_stream(const struct parsed *p, char *content, size_t size, char *finish, size_t fsize,
            int *usage_chunks)
{
	content[0] = finish[0] = '\0';
	*usage_chunks = 0;
	for (size_t i = 0; i + 1 < p->n; i++) {
		json_t *chunk = parse_json(p->data[i]);
		json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
		json_t *piece = json_object_get(json_object_get(choice, "delta"), "content");
		json_t *fr = json_object_get(choice, "finish_reason");

		ck_assert_str_eq(json_string_value(json_object_get(chunk, "object")),
		                 "chat.completion.chunk");
		ck_assert_str_eq(json_string_value(json_object_get(chunk, "id")), "chatcmpl-2");
		if (json_is_string(piece))
			strncat(content, json_string_value(piece), size - strlen(content) - 1);
		if (json_is_string(fr))
			snprintf(finish, fsize, "%s", json_string_value(fr));
		if (json_is_object(json_object_get(chunk, "usage")))
			(*usage_chunks)++;
		json_decref(chunk);
	}
	ck_assert_str_eq(p->data[p->n - 1], "[DONE]");
}

START_TEST(json_to_stream_chat)
{
	struct tg_cache_entry e;
	struct parsed p;
	char content[128], finish[32];
	int usage_chunks;
	char *text;

	body_entry(chat_body, &e);
	text = render(&e, 1, 1);
	parse_events(text, &p);
	join_stream(&p, content, sizeof(content), finish, sizeof(finish), &usage_chunks);
	ck_assert_str_eq(content, "Hello world");
	ck_assert_str_eq(finish, "stop");
	ck_assert_int_eq(usage_chunks, 1);
	free_parsed(&p);
	free(text);

	text = render(&e, 1, 0);
	parse_events(text, &p);
	join_stream(&p, content, sizeof(content), finish, sizeof(finish), &usage_chunks);
	ck_assert_str_eq(content, "Hello world");
	ck_assert_int_eq(usage_chunks, 0);
	free_parsed(&p);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(json_to_stream_and_back)
{
	static const char tool_body[] =
		"{\"id\":\"chatcmpl-3\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"m\","
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
		"\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\","
		"\"arguments\":\"{}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":"
		"{\"name\":\"g\",\"arguments\":\"{\\\"x\\\":1}\"}}],\"refusal\":null},"
		"\"logprobs\":null,\"finish_reason\":\"tool_calls\"},"
		"{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"second\","
		"\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"length\"}],"
		"\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3},"
		"\"system_fingerprint\":\"fp\"}";
	struct tg_cache_entry e, back;
	struct parsed p;
	json_t *events = json_array();
	json_t *original, *round;
	char *stream_text, *body_text;

	/* Body to stream, record the stream like the relay would, then stream
	 * to body: the result equals the original body. */
	body_entry(tool_body, &e);
	stream_text = render(&e, 1, 1);
	parse_events(stream_text, &p);
	for (size_t i = 0; i + 1 < p.n; i++)
		json_array_append_new(events, json_string(p.data[i]));
	stream_entry((const char *const *)p.data, p.n - 1, &back);
	body_text = render(&back, 0, 0);

	original = parse_json(tool_body);
	round = parse_json(body_text);
	ck_assert_msg(json_equal(original, round), "round trip changed the body:\n%s\n%s",
	              tool_body, body_text);

	json_decref(original);
	json_decref(round);
	json_decref(events);
	free(body_text);
	free(stream_text);
	free_parsed(&p);
	tg_cache_entry_free(&back);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(text_completion_both_ways)
{
	static const char *const text_stream[] = {
		"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\","
		"\"choices\":[{\"text\":\"Hello\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}",
		"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\","
		"\"choices\":[{\"text\":\" there\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}",
		"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\","
		"\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}",
		"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\","
		"\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
		"\"total_tokens\":3}}",
	};
	static const char expected[] =
		"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\","
		"\"choices\":[{\"text\":\"Hello there\",\"index\":0,\"logprobs\":null,"
		"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
		"\"total_tokens\":3}}";
	struct tg_cache_entry e;
	struct parsed p;
	char *text;

	stream_entry(text_stream, 4, &e);
	text = render(&e, 0, 0);
	ck_assert_str_eq(text, expected);
	free(text);
	tg_cache_entry_free(&e);

	body_entry(expected, &e);
	text = render(&e, 1, 0);
	parse_events(text, &p);
	ck_assert_uint_eq(p.n, 3);
	ck_assert_ptr_nonnull(strstr(p.data[0], "\"text\":\"Hello there\""));
	ck_assert_ptr_nonnull(strstr(p.data[1], "\"finish_reason\":\"stop\""));
	free_parsed(&p);
	free(text);
	tg_cache_entry_free(&e);
}
END_TEST

START_TEST(other_bodies_not_converted)
{
	struct tg_cache_entry e;

	body_entry("{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"embedding\":[0.5]}]}",
	           &e);
	ck_assert(render_fails(&e, 1, 0));
	tg_cache_entry_free(&e);

	/* A chat body without usage cannot answer a stream that asks for it. */
	body_entry("{\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
	           "{\"role\":\"assistant\",\"content\":\"x\"},\"finish_reason\":\"stop\"}]}", &e);
	ck_assert(render_fails(&e, 1, 1));
	tg_cache_entry_free(&e);
}
END_TEST

/* --- Anthropic Messages streams --------------------------------------------- */

/* One event of an Anthropic stream: its name and its data. */
struct named_event {
	const char *name;
	const char *data;
};

static const struct named_event messages_stream[] = {
	{ "message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
	  "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\","
	  "\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}" },
	{ "ping", "{\"type\":\"ping\"}" },
	{ "content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"
	  "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}" },
	{ "content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,"
	  "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}" },
	{ "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}" },
	{ "message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
	  "\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}" },
	{ "message_stop", "{\"type\":\"message_stop\"}" },
};
#define N_MESSAGES_STREAM (sizeof(messages_stream) / sizeof(messages_stream[0]))

/* Record the first n events of events. */
static void
record_named(struct tg_cache_record *r, const struct named_event *events, size_t n)
{
	tg_cache_record_init(r, 1 << 20);
	for (size_t i = 0; i < n; i++)
		record_event(r, events[i].name, strlen(events[i].name), events[i].data,
		             strlen(events[i].data));
}

/* Record the n events of events, store them and decode the entry into e. */
static void
store_named(const struct named_event *events, size_t n, struct tg_cache_entry *e)
{
	struct tg_cache_record r;
	const char *reason = NULL;
	size_t len = 0;
	char *text;

	record_named(&r, events, n);
	ck_assert_ptr_null(tg_cache_record_incomplete(&r));
	text = tg_cache_entry_from_record(&r, NULL, 1700000000123, &len, &reason);
	ck_assert_msg(text != NULL, "stream not storable: %s", reason);
	ck_assert_int_eq(tg_cache_entry_decode(text, len, e), 0);
	free(text);
	tg_cache_record_free(&r);
}

/* Check that e replays the n events of events under their names, without
 * the pings and without "[DONE]". */
static void
assert_replays_named(const struct tg_cache_entry *e, const struct named_event *events, size_t n)
{
	char *replay = render(e, 1, 0);
	size_t at = 0;

	for (size_t i = 0; i < n; i++) {
		char expected[512];
		int len;

		if (strcmp(events[i].name, "ping") == 0)
			continue;
		len = snprintf(expected, sizeof(expected), "event: %s\ndata: %s\n\n",
		               events[i].name, events[i].data);
		ck_assert_msg(strncmp(replay + at, expected, (size_t)len) == 0,
		              "event %zu: expected\n%s\ngot\n%s", i, expected, replay + at);
		at += (size_t)len;
	}
	ck_assert_str_eq(replay + at, "");
	free(replay);
}

/* A complete Anthropic stream is stored without its ping, replayed under
 * the names of its events and without "[DONE]", and serves no
 * non-streaming request. */
START_TEST(messages_stream_replays_named)
{
	struct tg_cache_entry e;

	store_named(messages_stream, N_MESSAGES_STREAM, &e);
	ck_assert_int_eq(e.is_stream, 1);
	ck_assert_int_eq(e.named, 1);
	ck_assert_uint_eq(e.n_parts, N_MESSAGES_STREAM - 1);
	assert_replays_named(&e, messages_stream, N_MESSAGES_STREAM);
	ck_assert(render_fails(&e, 0, 0));
	tg_cache_entry_free(&e);
}
END_TEST

/* Incomplete, failed or refused Anthropic streams are not stored. */
START_TEST(messages_stream_checked)
{
	static const struct named_event refusal[] = {
		{ "message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
		  "\"refusal\"}}" },
	};
	static const struct named_event error[] = {
		{ "error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
		  "\"message\":\"Overloaded\"}}" },
	};
	struct tg_cache_record r;

	record_named(&r, messages_stream, N_MESSAGES_STREAM - 1);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream ended without message_stop");
	tg_cache_record_free(&r);

	/* Without message_delta, no stop_reason. */
	record_named(&r, messages_stream, N_MESSAGES_STREAM - 2);
	record_event(&r, "message_stop", 12, "{\"type\":\"message_stop\"}", 23);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the message has no stop_reason");
	tg_cache_record_free(&r);

	record_named(&r, messages_stream, 4);
	record_event(&r, refusal[0].name, strlen(refusal[0].name), refusal[0].data,
	             strlen(refusal[0].data));
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "stopped by a refusal");
	tg_cache_record_free(&r);

	record_named(&r, messages_stream, 4);
	record_event(&r, error[0].name, strlen(error[0].name), error[0].data, strlen(error[0].data));
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream carries an error");
	tg_cache_record_free(&r);

	record_named(&r, messages_stream, N_MESSAGES_STREAM);
	record_event(&r, "ping", 4, "{\"type\":\"ping\"}", 15);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event follows message_stop");
	tg_cache_record_free(&r);

	record_named(&r, messages_stream, 3);
	record_event(&r, "content_block_delta", 19, "not json", 8);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event is not a JSON object");
	tg_cache_record_free(&r);

	/* Named events that do not start with message_start stay unstorable. */
	record_named(&r, messages_stream + 2, N_MESSAGES_STREAM - 2);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream has named events");
	tg_cache_record_free(&r);

	/* Over the size limit. */
	tg_cache_record_init(&r, 100);
	for (size_t i = 0; i < N_MESSAGES_STREAM; i++)
		record_event(&r, messages_stream[i].name, strlen(messages_stream[i].name),
		             messages_stream[i].data, strlen(messages_stream[i].data));
	ck_assert_str_eq(tg_cache_record_incomplete(&r),
	                 "the stream is larger than the entry size limit");
	ck_assert_int_eq(r.too_large, 1);
	tg_cache_record_free(&r);
}
END_TEST

/* --- Responses API streams ------------------------------------------------ */

#define RESPONSE_OBJECT(status) \
	"{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"" status "\"," \
	"\"error\":null,\"output\":[]}"

static const struct named_event responses_stream[] = {
	{ "response.created", "{\"type\":\"response.created\",\"sequence_number\":0,"
	  "\"response\":" RESPONSE_OBJECT("in_progress") "}" },
	{ "response.output_item.added", "{\"type\":\"response.output_item.added\","
	  "\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"message\","
	  "\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[]}}" },
	{ "response.output_text.delta", "{\"type\":\"response.output_text.delta\","
	  "\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,"
	  "\"content_index\":0,\"delta\":\"Hello\"}" },
	{ "response.output_text.done", "{\"type\":\"response.output_text.done\","
	  "\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,"
	  "\"content_index\":0,\"text\":\"Hello\"}" },
	{ "response.completed", "{\"type\":\"response.completed\",\"sequence_number\":4,"
	  "\"response\":" RESPONSE_OBJECT("completed") "}" },
};
#define N_RESPONSES_STREAM (sizeof(responses_stream) / sizeof(responses_stream[0]))

/* A complete Responses API stream is stored and replayed under the names
 * of its events, without "[DONE]", and serves no non-streaming request. */
START_TEST(responses_stream_replays_named)
{
	struct tg_cache_entry e;

	store_named(responses_stream, N_RESPONSES_STREAM, &e);
	ck_assert_int_eq(e.named, 1);
	ck_assert_uint_eq(e.n_parts, N_RESPONSES_STREAM);
	assert_replays_named(&e, responses_stream, N_RESPONSES_STREAM);
	ck_assert(render_fails(&e, 0, 0));
	tg_cache_entry_free(&e);
}
END_TEST

/* Record responses_stream's first n events, then one more. */
static void
record_responses_then(struct tg_cache_record *r, size_t n, const char *name, const char *data)
{
	record_named(r, responses_stream, n);
	record_event(r, name, strlen(name), data, strlen(data));
}

/* Unfinished, failed or erroneous Responses API streams are not stored. */
START_TEST(responses_stream_checked)
{
	static const char unfinished[] = "the Responses API response has no \"status\": \"completed\"";
	struct tg_cache_record r;

	record_named(&r, responses_stream, N_RESPONSES_STREAM - 1);
	ck_assert_str_eq(tg_cache_record_incomplete(&r),
	                 "the stream ended without response.completed");
	tg_cache_record_free(&r);

	record_responses_then(&r, 3, "response.failed", "{\"type\":\"response.failed\","
	                      "\"response\":" RESPONSE_OBJECT("failed") "}");
	ck_assert_str_eq(tg_cache_record_incomplete(&r), unfinished);
	tg_cache_record_free(&r);

	record_responses_then(&r, 3, "response.incomplete", "{\"type\":\"response.incomplete\","
	                      "\"response\":" RESPONSE_OBJECT("incomplete") "}");
	ck_assert_str_eq(tg_cache_record_incomplete(&r), unfinished);
	tg_cache_record_free(&r);

	/* A response.completed whose response is not completed. */
	record_responses_then(&r, 3, "response.completed", "{\"type\":\"response.completed\","
	                      "\"response\":" RESPONSE_OBJECT("in_progress") "}");
	ck_assert_str_eq(tg_cache_record_incomplete(&r), unfinished);
	tg_cache_record_free(&r);

	record_responses_then(&r, 2, "error", "{\"type\":\"error\",\"code\":\"server_error\","
	                      "\"message\":\"The server had an error\",\"sequence_number\":2}");
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream carries an error");
	tg_cache_record_free(&r);

	record_responses_then(&r, N_RESPONSES_STREAM, "response.output_text.delta",
	                      responses_stream[2].data);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "an event follows response.completed");
	tg_cache_record_free(&r);

	/* Without response.created first, the names make it unstorable. */
	record_named(&r, responses_stream + 1, N_RESPONSES_STREAM - 1);
	ck_assert_str_eq(tg_cache_record_incomplete(&r), "the stream has named events");
	tg_cache_record_free(&r);
}
END_TEST

/* An "events" envelope whose part lacks the name's line feed is invalid. */
START_TEST(messages_envelope_checked)
{
	static const char bad[] = "{\"v\":2,\"created_ms\":1,\"kind\":\"events\",\"bytes\":[4]}\nping";
	static const char good[] = "{\"v\":2,\"created_ms\":1,\"kind\":\"events\",\"bytes\":[5]}\nping\n";
	struct tg_cache_entry e;

	ck_assert_int_eq(tg_cache_entry_decode(bad, sizeof(bad) - 1, &e), -1);
	ck_assert_int_eq(tg_cache_entry_decode(good, sizeof(good) - 1, &e), 0);
	ck_assert_int_eq(e.named, 1);
	tg_cache_entry_free(&e);
}
END_TEST

static Suite *
cache_entry_suite(void)
{
	Suite *s = suite_create("cache-entry");
	TCase *store = tcase_create("storability");
	TCase *envelope = tcase_create("envelope");
	TCase *replay = tcase_create("replay");
	TCase *convert = tcase_create("conversion");

	tcase_add_test(store, complete_stream_is_storable);
	tcase_add_test(store, stream_without_done_not_stored);
	tcase_add_test(store, stream_without_finish_not_stored);
	tcase_add_test(store, content_filter_stream_not_stored);
	tcase_add_test(store, error_event_not_stored);
	tcase_add_test(store, odd_streams_not_stored);
	tcase_add_test(store, record_reads_the_given_parse);
	tcase_add_test(store, every_choice_must_finish);
	tcase_add_test(store, bodies_checked_before_storing);
	tcase_add_test(store, responses_stream_checked);
	suite_add_tcase(s, store);

	tcase_add_test(envelope, envelope_round_trip);
	tcase_add_test(envelope, envelope_keeps_line_feeds);
	tcase_add_test(envelope, invalid_envelopes_rejected);
	suite_add_tcase(s, envelope);

	tcase_add_test(replay, stream_replays_same_events);
	tcase_add_test(replay, stream_without_usage_cannot_give_it);
	tcase_add_test(replay, multiline_data_split_into_lines);
	tcase_add_test(replay, json_replays_same_body);
	tcase_add_test(replay, messages_stream_replays_named);
	tcase_add_test(replay, responses_stream_replays_named);
	tcase_add_test(replay, messages_stream_checked);
	tcase_add_test(replay, messages_envelope_checked);
	suite_add_tcase(s, replay);

	tcase_add_test(convert, stream_to_json_chat);
	tcase_add_test(convert, stream_to_json_tool_call);
	tcase_add_test(convert, stream_to_json_tool_call_without_text);
	tcase_add_test(convert, entry_keeps_response_headers);
	tcase_add_test(convert, json_to_stream_chat);
	tcase_add_test(convert, json_to_stream_and_back);
	tcase_add_test(convert, text_completion_both_ways);
	tcase_add_test(convert, other_bodies_not_converted);
	suite_add_tcase(s, convert);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(cache_entry_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
