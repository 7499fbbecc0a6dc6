/*
 * Unit tests for the GenAI attributes of a response read from the reply
 * detail (tg_genai_response_detail, tg_genai_stream_detail) against the
 * same response read from a jansson tree (tg_genai_response,
 * tg_genai_stream_event). The attempt's span must come out of both the
 * same, byte for byte as OTLP JSON, for the recorded OpenAI exchanges in
 * t/fixtures/openai-recorded/ and for crafted texts with members missing,
 * null, of another type, repeated or out of order.
 *
 * Each side does what the request path does (src/trace.c). The detail
 * side passes the tree to the tree function when the detail is not
 * usable. A stream event reaches tracing the way the relay hands it over,
 * with its data only when the relay's digest found an object. Reading
 * the detail must leave the digest, which metrics and the relay read, as
 * it is without one.
 */
#include <check.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "fixture.h"
#include "json-writer.h"
#include "relay.h"
#include "sse.h"
#include "trace-genai.h"
#include "trace-otlp.h"
#include "trace-span.h"

/* Times of the attempt, CLOCK_MONOTONIC nanoseconds. A zeroed trace maps
 * them to the same Unix times. */
#define START_NS 1000000000ull
#define EVENT_NS 1000000ull     /* between two stream events */

/* One way of reading a response: the attempt's state and its span. */
struct side {
	struct tg_trace t;
	struct tg_span *span;
};

static void
side_init(struct side *s)
{
	static const uint8_t trace_id[16] = {1};
	static const uint8_t span_id[8] = {2};

	memset(&s->t, 0, sizeof(s->t));
	s->span = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", START_NS);
	ck_assert_ptr_nonnull(s->span);
	memcpy(s->span->span_id, span_id, sizeof(span_id));
}

/* End the attempt, free the side, and return its span as OTLP JSON. */
static char *
side_finish(struct side *s)
{
	struct tg_json_writer w = {0};
	char *text;

	tg_genai_attempt_done(&s->t, s->span);
	tg_span_end(s->span, START_NS + EVENT_NS * 1000);
	tg_otlp_write_span(&w, s->span);
	ck_assert(!w.failed);
	text = strndup(w.data, w.len);
	ck_assert_ptr_nonnull(text);
	tg_json_writer_free(&w);
	tg_genai_attempt_reset(&s->t);
	tg_span_free(s->span);
	return text;
}

static void
assert_same_span(const char *label, struct side *tree, struct side *digest)
{
	char *want = side_finish(tree);
	char *got = side_finish(digest);

	ck_assert_msg(strcmp(want, got) == 0, "%s:\n tree   %s\n digest %s", label, want, got);
	free(want);
	free(got);
}

/* --- bodies and events ----------------------------------------------------- */

/* Texts with a string or key that jansson rejects, so that jansson reads
 * none of their members. Beside each is the text whose tree the detail
 * must match, because it leaves out only the id, model or finish reason
 * that such a string is. */
static const struct {
	const char *text;
	const char *as;
} rejected[] = {
	{"{\"a\\u0000\":1,\"id\":\"x\"}", "{\"id\":\"x\"}"},
	{"{\"id\":\"x\",\"model\":\"\\udc00\"}", "{\"id\":\"x\"}"},
	{"{\"id\":\"x\",\"model\":\"\xc0\xaf\"}", "{\"id\":\"x\"}"},
	{"{\"id\":\"x\",\"model\":\"\xed\xa0\x80\"}", "{\"id\":\"x\"}"},
	{"{\"id\":\"x\",\"model\":\"\xf4\x90\x80\x80\"}", "{\"id\":\"x\"}"},
	{"{\"id\":\"a\\u0000\",\"usage\":{\"prompt_tokens\":9}}", "{\"usage\":{\"prompt_tokens\":9}}"},
};

/* The tree that the span read from the len bytes at text must match. */
static json_t *
load_reference(const char *text, size_t len)
{
	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
		if (strlen(rejected[i].text) == len && memcmp(rejected[i].text, text, len) == 0)
			return json_loads(rejected[i].as, 0, NULL);
	}
	return json_loadb(text, len, 0, NULL);
}

/* A non-streamed body: the tree, or the digest of the body in pieces of
 * piece bytes, each its own buffer segment. */
static void
check_body(const char *label, const char *text, size_t len, size_t piece)
{
	struct side tree, digest;
	struct evbuffer *buf = evbuffer_new();
	json_t *json = json_loadb(text, len, 0, NULL);
	json_t *reference = load_reference(text, len);
	struct tg_reply_digest d, plain;
	struct tg_reply_detail x;
	int rc;

	ck_assert_ptr_nonnull(buf);
	for (size_t at = 0; at < len; at += piece)
		evbuffer_add_reference(buf, text + at, len - at < piece ? len - at : piece, NULL,
		                       NULL);
	rc = tg_reply_digest_detail_buffer(&d, &x, buf);
	ck_assert_int_eq(rc, tg_reply_digest_buffer(&plain, buf));
	ck_assert_msg(memcmp(&d, &plain, sizeof(d)) == 0, "%s: the detail changed the digest",
	              label);

	side_init(&tree);
	side_init(&digest);
	tg_genai_response(&tree.t, tree.span, reference);
	if (x.usable)
		tg_genai_response_detail(&digest.t, digest.span, &d, &x);
	else
		tg_genai_response(&digest.t, digest.span, json);
	assert_same_span(label, &tree, &digest);

	tg_reply_detail_free(&x);
	json_decref(json);
	json_decref(reference);
	evbuffer_free(buf);
}

/* A stream event as the relay hands it to the features: data is set only
 * when the relay's digest found an object, and the tree is built from it
 * on demand (src/relay.c, on_sse_event). The relay reads the detail when
 * tracing reads it, and classifies the event as it does without. */
static struct tg_stream_event
relay_event(const char *data, size_t len, int with_detail)
{
	struct tg_sse_event sse = {.type = "", .data = data, .data_len = len};
	struct tg_stream_event ev = {0};
	struct tg_reply_digest plain;
	int finish;

	ev.kind = tg_relay_classify(&sse, &ev.digest, with_detail ? &ev.detail : NULL,
	                            &ev.finish);
	ck_assert_int_eq(ev.kind, tg_relay_classify(&sse, &plain, NULL, &finish));
	ck_assert_int_eq(ev.finish, finish);
	ck_assert_msg(memcmp(&ev.digest, &plain, sizeof(plain)) == 0,
	              "%s: the detail changed the digest", data);
	if (ev.digest.object) {
		ev.data = data;
		ev.data_len = len;
	}
	return ev;
}

/* The events of a stream, in order, each as tg_trace_stream_event() reads
 * it: the detail when usable, else the tree. */
static void
check_stream(const char *label, const char *const *data, size_t n)
{
	struct side tree, digest;

	side_init(&tree);
	side_init(&digest);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(data[i]);
		struct tg_stream_event old = relay_event(data[i], len, 0);
		struct tg_stream_event ev = relay_event(data[i], len, 1);
		uint64_t now = START_NS + EVENT_NS * (i + 1);

		/* The reference keeps the last of a member given twice, as the
		 * digest does; the relay's own tree rejects such data. */
		old.json = old.data != NULL ? load_reference(old.data, old.data_len) : NULL;
		tg_genai_stream_event(&tree.t, tree.span, json_is_object(old.json) ? old.json : NULL,
		                      now, START_NS);
		if (ev.detail.usable)
			tg_genai_stream_detail(&digest.t, digest.span, &ev.digest, &ev.detail, now,
			                       START_NS);
		else
			tg_genai_stream_event(&digest.t, digest.span, tg_stream_event_json(&ev), now,
			                      START_NS);
		json_decref(old.json);
		json_decref(ev.json);
		tg_reply_detail_free(&ev.detail);
	}
	assert_same_span(label, &tree, &digest);
}

/* --- the recorded exchanges ------------------------------------------------ */

struct events {
	char **data;
	size_t n;
};

static int
collect_event(void *arg, const struct tg_sse_event *sse)
{
	struct events *e = arg;

	e->data = realloc(e->data, (e->n + 1) * sizeof(*e->data));
	ck_assert_ptr_nonnull(e->data);
	e->data[e->n] = strndup(sse->data, sse->data_len);
	ck_assert_ptr_nonnull(e->data[e->n]);
	e->n++;
	return 0;
}

static void
check_recorded_stream(const char *name, const struct fixture *f)
{
	struct tg_sse_parser p;
	struct events e = {0};

	tg_sse_init(&p, 0, collect_event, NULL, &e);
	ck_assert_int_eq(tg_sse_feed(&p, f->body, f->body_len), 0);
	tg_sse_free(&p);
	ck_assert_uint_gt(e.n, 2);
	check_stream(name, (const char *const *)e.data, e.n);
	for (size_t i = 0; i < e.n; i++)
		free(e.data[i]);
	free(e.data);
}

/* Every cassette in the fixture directory: a body whole and in pieces of
 * 7 bytes, or a stream event by event. */
START_TEST(recorded_exchanges)
{
	struct fixture_cache *cache = NULL;
	DIR *dir = opendir(TG_FIXTURE_DIR);
	struct dirent *entry;
	size_t bodies = 0, streams = 0;

	ck_assert_msg(dir != NULL, "cannot open %s", TG_FIXTURE_DIR);
	while ((entry = readdir(dir)) != NULL) {
		char name[128], err[256];
		size_t len = strlen(entry->d_name);
		const struct fixture *f;

		if (len <= 5 || len - 5 >= sizeof(name) ||
		    strcmp(entry->d_name + len - 5, ".yaml") != 0)
			continue;
		memcpy(name, entry->d_name, len - 5);
		name[len - 5] = '\0';
		f = fixture_get(&cache, TG_FIXTURE_DIR, name, err, sizeof(err));
		ck_assert_msg(f != NULL, "%s: %s", name, err);
		if (fixture_is_stream(f)) {
			check_recorded_stream(name, f);
			streams++;
		} else {
			check_body(name, f->body, f->body_len, f->body_len ? f->body_len : 1);
			check_body(name, f->body, f->body_len, 7);
			bodies++;
		}
	}
	closedir(dir);
	fixture_cache_free(cache);
	ck_assert_uint_ge(bodies, 10);
	ck_assert_uint_ge(streams, 2);
}
END_TEST

/* --- crafted texts --------------------------------------------------------- */

/* Each is read as a body and as the one event of a stream. */
static const char *const crafted[] = {
	/* plain */
	"{\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,"
	"\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],"
	"\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
	"\"prompt_tokens_details\":{\"cached_tokens\":3},"
	"\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
	"{}",
	/* id and model missing, null, of another type, repeated */
	"{\"id\":null,\"model\":null,\"choices\":null,\"usage\":null}",
	"{\"id\":5,\"model\":[\"m\"],\"choices\":{},\"usage\":[]}",
	"{\"id\":\"a\",\"id\":\"b\",\"model\":\"m\",\"model\":7}",
	"{\"id\":\"a\",\"id\":null,\"model\":{\"name\":\"m\"},\"model\":\"n\"}",
	"{\"id\":\"\",\"model\":\"\"}",
	"{\"id\":\"a\\\"b\\u00e9\\ud83d\\ude00\\n\",\"model\":\"caf\xc3\xa9\"}",
	"{\"message\":{\"id\":\"msg_1\",\"model\":\"claude\"},\"data\":{\"id\":\"x\"}}",
	/* finish reasons: missing, null, not strings, repeated */
	"{\"choices\":[{\"finish_reason\":null},{\"finish_reason\":3},{\"index\":0}]}",
	"{\"choices\":[{\"finish_reason\":\"stop\",\"finish_reason\":null}]}",
	"{\"choices\":[{\"finish_reason\":null,\"finish_reason\":\"length\"}]}",
	"{\"choices\":[{\"finish_reason\":{\"why\":\"stop\"}},{\"finish_reason\":\"\"}]}",
	/* index out of order, after the reason, repeated, invalid, too large */
	"{\"choices\":[{\"index\":2,\"finish_reason\":\"length\"},{\"index\":0,"
	"\"finish_reason\":\"stop\"},{\"finish_reason\":\"tool_calls\"}]}",
	"{\"choices\":[{\"finish_reason\":\"stop\",\"index\":1}]}",
	"{\"choices\":[{\"index\":3,\"index\":null,\"finish_reason\":\"x\"},"
	"{\"index\":null,\"index\":3,\"finish_reason\":\"y\"}]}",
	"{\"choices\":[{\"index\":-1,\"finish_reason\":\"a\"},{\"index\":1.0,\"finish_reason\":"
	"\"b\"},{\"index\":\"0\",\"finish_reason\":\"c\"},{\"index\":127,\"finish_reason\":\"d\"},"
	"{\"index\":128,\"finish_reason\":\"e\"},{\"index\":9223372036854775807,"
	"\"finish_reason\":\"f\"},{\"index\":true,\"finish_reason\":\"g\"}]}",
	"{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"},{\"index\":0,"
	"\"finish_reason\":\"length\"}]}",
	/* choices repeated, or with elements that are not objects */
	"{\"choices\":[{\"finish_reason\":\"a\"}],\"choices\":[{},{\"finish_reason\":\"b\"}]}",
	"{\"choices\":[{\"finish_reason\":\"a\"}],\"choices\":5}",
	"{\"choices\":[1,null,\"x\",[{\"finish_reason\":\"no\"}],{\"finish_reason\":\"stop\"}]}",
	"{\"data\":{\"choices\":[{\"finish_reason\":\"no\"}]},\"choices\":[{\"choices\":"
	"[{\"finish_reason\":\"no\"}]}]}",
	/* usage: strings, negatives, reals, repeated members and objects */
	"{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":-3,"
	"\"prompt_tokens_details\":{\"cached_tokens\":1.5},"
	"\"completion_tokens_details\":{\"reasoning_tokens\":-9223372036854775807}}}",
	"{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens\":\"x\",\"completion_tokens\":\"y\","
	"\"completion_tokens\":2}}",
	"{\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":9223372036854775807,"
	"\"total_tokens\":true}}",
	"{\"usage\":{\"prompt_tokens\":1},\"usage\":null}",
	"{\"usage\":null,\"usage\":{\"prompt_tokens\":4}}",
	"{\"usage\":{\"prompt_tokens\":1},\"usage\":{\"completion_tokens\":2}}",
	"{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":5},\"prompt_tokens_details\":{}}}",
	"{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":5},"
	"\"prompt_tokens_details\":null}}",
	"{\"usage\":{\"prompt_tokens_details\":null,\"prompt_tokens_details\":"
	"{\"cached_tokens\":5}}}",
	"{\"usage\":{\"completion_tokens_details\":{\"reasoning_tokens\":5,"
	"\"reasoning_tokens\":null}}}",
	"{\"usage\":{\"cached_tokens\":5,\"reasoning_tokens\":6,\"input_tokens\":7}}",
	"{\"message\":{\"usage\":{\"prompt_tokens\":3}},\"choices\":[{\"usage\":"
	"{\"prompt_tokens\":1}}],\"usage\":{\"input_tokens\":5,\"output_tokens\":2}}",
	"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\","
	"\"usage\":{\"input_tokens\":3}}}",
	/* content, as the first-token event counts it */
	"{\"choices\":[{\"delta\":{\"content\":\"\"},\"text\":\"x\"}]}",
	"{\"choices\":[{\"delta\":{\"content\":null},\"text\":\"x\"}]}",
	"{\"choices\":[{\"text\":\"x\",\"text\":\"\"}]}",
	"{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}",
	"{\"choices\":[{\"delta\":{\"tool_calls\":[{}]}}]}",
	"{\"choices\":[{\"delta\":{\"tool_calls\":[{}],\"tool_calls\":[]}}]}",
	"{\"choices\":[{\"delta\":{\"tool_calls\":{\"0\":{}}}}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"x\"},\"delta\":{}}]}",
	"{\"choices\":[{\"delta\":{},\"delta\":{\"content\":\"x\"}}]}",
	"{\"choices\":[{\"delta\":{\"refusal\":\"no\",\"reasoning\":\"r\"}}]}",
	"{\"choices\":[{\"delta\":5,\"text\":\"t\"}]}",
	"{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":[{}]}}]}",
	"{\"choices\":[{\"delta\":{\"content\":\"x\"}},{\"delta\":{\"content\":\"\"}}]}",
	"{\"delta\":{\"content\":\"x\"},\"text\":\"y\"}",
	/* texts that are not JSON objects */
	"",
	"[]",
	"\"x\"",
	"null",
	"[DONE]",
	"<html>502</html>",
	"{\"id\":\"a\"",
	"{\"id\":\"a\"} x",
	"{\"id\":\"a\"} \n",
	/* texts that yajl takes and jansson rejects, or the reverse */
	"{\"id\":\"a\\u0000b\"}",
	"{\"a\\u0000\":1,\"id\":\"x\"}",
	"{\"id\":\"x\",\"model\":\"\\udc00\"}",
	"{\"id\":\"x\",\"model\":\"\xc0\xaf\"}",
	"{\"id\":\"x\",\"model\":\"\xed\xa0\x80\"}",
	"{\"id\":\"x\",\"model\":\"\xf4\x90\x80\x80\"}",
	"{\"id\":\"x\",\f\"model\":\"m\"}",
	"{\"id\":\"x\"}\v",
	"{\"id\":\"x\",\"n\":-9223372036854775808}",
	"{\"id\":\"x\",\"n\":9223372036854775808}",
};

START_TEST(crafted_body)
{
	const char *text = crafted[_i];
	size_t len = strlen(text);

	check_body(text, text, len, len ? len : 1);
	check_body(text, text, len, 3);
}
END_TEST

START_TEST(crafted_event)
{
	check_stream(crafted[_i], &crafted[_i], 1);
}
END_TEST

/* Streams whose events together decide: the first id and model stay,
 * later finish reasons and usage replace earlier ones, and the first
 * event with content makes the first-token event. */
static const char *const stream_a[] = {
	"{\"id\":\"a\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":"
	"{\"role\":\"assistant\",\"content\":\"\"}}]}",
	"{\"id\":\"b\",\"model\":\"m2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}",
	"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}]}",
	"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
	"{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
	"[DONE]",
};
static const char *const stream_b[] = {
	"{\"choices\":[]}",
	"{\"id\":null,\"model\":3}",
	"not json",
	"{\"id\":\"late\",\"model\":\"late\"}",
};
static const char *const stream_c[] = {
	"{\"choices\":[{\"index\":1,\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}",
	"{\"choices\":[{\"index\":1,\"finish_reason\":\"length\"}]}",
	"{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}",
	"{\"choices\":[{\"index\":1,\"finish_reason\":\"stop\"}]}",
	"{\"choices\":[{\"finish_reason\":\"x\"},{\"finish_reason\":\"y\"}]}",
};
static const char *const stream_d[] = {
	"{\"usage\":{\"prompt_tokens\":1}}",
	"{\"usage\":{\"completion_tokens\":-2}}",
	"{\"usage\":{\"prompt_tokens\":\"x\",\"completion_tokens\":null}}",
	"{\"usage\":null}",
	"{\"id\":\"a\\u0000\",\"usage\":{\"prompt_tokens\":9}}",
};

START_TEST(crafted_streams)
{
	check_stream("stream a", stream_a, sizeof(stream_a) / sizeof(stream_a[0]));
	check_stream("stream b", stream_b, sizeof(stream_b) / sizeof(stream_b[0]));
	check_stream("stream c", stream_c, sizeof(stream_c) / sizeof(stream_c[0]));
	check_stream("stream d", stream_d, sizeof(stream_d) / sizeof(stream_d[0]));
}
END_TEST

/* A negative count is no count: the span carries none, by either path. */
START_TEST(negative_usage_not_recorded)
{
	static const char body[] = "{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":3}}";
	struct side tree;
	char *text;
	json_t *json = json_loadb(body, sizeof(body) - 1, 0, NULL);

	side_init(&tree);
	tg_genai_response(&tree.t, tree.span, json);
	text = side_finish(&tree);
	ck_assert_msg(strstr(text, "gen_ai.usage.input_tokens") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "gen_ai.usage.output_tokens") != NULL, "%s", text);
	free(text);
	json_decref(json);
	check_body("negative usage", body, sizeof(body) - 1, 7);
}
END_TEST

static Suite *
trace_genai_suite(void)
{
	Suite *s = suite_create("trace-genai");
	TCase *tc = tcase_create("digest against tree");
	int n = (int)(sizeof(crafted) / sizeof(crafted[0]));

	tcase_add_test(tc, recorded_exchanges);
	tcase_add_loop_test(tc, crafted_body, 0, n);
	tcase_add_loop_test(tc, crafted_event, 0, n);
	tcase_add_test(tc, crafted_streams);
	tcase_add_test(tc, negative_usage_not_recorded);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(trace_genai_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
