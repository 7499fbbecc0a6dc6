/*
 * Unit tests for the span model: W3C traceparent parsing and formatting
 * (the cases of the W3C trace-context test suite), sampling, the span tree
 * of a request, GenAI attributes and the OTLP JSON encoding.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <llhttp.h>

#include "filter.h"
#include "headers.h"
#include "json-writer.h"
#include "trace-context.h"
#include "trace-genai.h"
#include "trace-otlp.h"
#include "trace-semconv.h"
#include "trace-span.h"
#include "trace-tree.h"

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT_ID "00f067aa0ba902b7"
#define VALID "00-" TRACE_ID "-" PARENT_ID "-01"

/* The wall time the trees of these tests start at: 2026-12-05T00:00:00Z. */
#define TEST_WALL_NS 1796428800000000000ull

/* --- traceparent ---------------------------------------------------------- */

static int
parses(const char *value)
{
	struct tg_traceparent tp;

	return tg_traceparent_parse(value, &tp) == 0;
}

START_TEST(traceparent_valid_fields)
{
	struct tg_traceparent tp;
	char hex[33];

	ck_assert_int_eq(tg_traceparent_parse(VALID, &tp), 0);
	ck_assert_uint_eq(tp.version, 0);
	tg_hex_encode(hex, tp.trace_id, 16);
	ck_assert_str_eq(hex, TRACE_ID);
	tg_hex_encode(hex, tp.parent_id, 8);
	ck_assert_str_eq(hex, PARENT_ID);
	ck_assert_uint_eq(tp.flags, 1);
}
END_TEST

START_TEST(traceparent_unsampled_and_unknown_flags)
{
	struct tg_traceparent tp;

	ck_assert_int_eq(tg_traceparent_parse("00-" TRACE_ID "-" PARENT_ID "-00", &tp), 0);
	ck_assert_uint_eq(tp.flags & TG_TRACE_FLAG_SAMPLED, 0);
	/* Unknown flags are ignored, not an error. */
	ck_assert_int_eq(tg_traceparent_parse("00-" TRACE_ID "-" PARENT_ID "-09", &tp), 0);
	ck_assert_uint_eq(tp.flags & TG_TRACE_FLAG_SAMPLED, 1);
}
END_TEST

/* Cases from the W3C trace-context test suite (test/test.py), each of
 * which a vendor must treat as invalid and so start a new trace. */
static const char *const invalid_traceparents[] = {
	/* version */
	"ff-" TRACE_ID "-" PARENT_ID "-01",
	".0-" TRACE_ID "-" PARENT_ID "-01",
	"0.-" TRACE_ID "-" PARENT_ID "-01",
	"000-" TRACE_ID "-" PARENT_ID "-01",
	"0000-" TRACE_ID "-" PARENT_ID "-01",
	"0-" TRACE_ID "-" PARENT_ID "-01",
	"0G-" TRACE_ID "-" PARENT_ID "-01",
	/* version 00 with anything after the flags */
	VALID ".",
	VALID "-what-the-future-will-be-like",
	/* trace id */
	"00-00000000000000000000000000000000-" PARENT_ID "-01",
	"00-.bf92f3577b34da6a3ce929d0e0e4736-" PARENT_ID "-01",
	"00-4bf92f3577b34da6a3ce929d0e0e473.-" PARENT_ID "-01",
	"00-4bf92f3577b34da6a3ce929d0e0e47366-" PARENT_ID "-01",
	"00-4bf92f3577b34da6a3ce929d0e0e473-" PARENT_ID "-01",
	"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PARENT_ID "-01",
	/* parent id */
	"00-" TRACE_ID "-0000000000000000-01",
	"00-" TRACE_ID "-.0f067aa0ba902b7-01",
	"00-" TRACE_ID "-00f067aa0ba902b.-01",
	"00-" TRACE_ID "-00f067aa0ba902b7a-01",
	"00-" TRACE_ID "-00f067aa0ba902b-01",
	"00-" TRACE_ID "-00F067AA0BA902B7-01",
	/* flags */
	"00-" TRACE_ID "-" PARENT_ID "-.0",
	"00-" TRACE_ID "-" PARENT_ID "-0.",
	"00-" TRACE_ID "-" PARENT_ID "-001",
	"00-" TRACE_ID "-" PARENT_ID "-1",
	"00-" TRACE_ID "-" PARENT_ID "-0A",
	/* separators and length */
	"00_" TRACE_ID "-" PARENT_ID "-01",
	"00-" TRACE_ID "_" PARENT_ID "-01",
	"00-" TRACE_ID "-" PARENT_ID "_01",
	"",
	"00",
	"garbage",
	/* a later version must still be followed by a dash after the flags */
	"cc-" TRACE_ID "-" PARENT_ID "-01.what-the-future-will-be-like",
	"cc-" TRACE_ID "-" PARENT_ID,
};

START_TEST(traceparent_invalid_cases)
{
	ck_assert_msg(!parses(invalid_traceparents[_i]), "accepted \"%s\"",
	              invalid_traceparents[_i]);
}
END_TEST

START_TEST(traceparent_future_version)
{
	struct tg_traceparent tp;

	ck_assert_int_eq(tg_traceparent_parse("cc-" TRACE_ID "-" PARENT_ID "-01", &tp), 0);
	ck_assert_uint_eq(tp.version, 0xcc);
	ck_assert_int_eq(tg_traceparent_parse("cc-" TRACE_ID "-" PARENT_ID
	                                      "-01-what-the-future-will-be-like", &tp), 0);
	ck_assert_uint_eq(tp.flags, 1);
}
END_TEST

START_TEST(traceparent_optional_whitespace)
{
	ck_assert(parses(" " VALID));
	ck_assert(parses("\t" VALID));
	ck_assert(parses(VALID " "));
	ck_assert(parses(VALID "\t"));
	ck_assert(parses("\t " VALID " \t"));
	ck_assert(!parses("00 -" TRACE_ID "-" PARENT_ID "-01"));
}
END_TEST

START_TEST(hex_encode_every_byte)
{
	uint8_t bytes[256];
	char hex[2 * sizeof(bytes) + 1], want[3];

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)i;
	tg_hex_encode(hex, bytes, sizeof(bytes));
	ck_assert_uint_eq(strlen(hex), 2 * sizeof(bytes));
	for (size_t i = 0; i < sizeof(bytes); i++) {
		snprintf(want, sizeof(want), "%02x", (unsigned)i);
		ck_assert_mem_eq(hex + 2 * i, want, 2);
	}
}
END_TEST

/* Every length, so that whole words and the bytes after them both count,
 * at every alignment of the input. */
START_TEST(hex_encode_every_length)
{
	uint8_t bytes[40];
	char hex[2 * 32 + 2], want[2 * 32 + 1];

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(0x9e * i + 0x3b);
	for (size_t at = 0; at < 8; at++) {
		for (size_t n = 0; n <= 32; n++) {
			for (size_t i = 0; i < n; i++)
				snprintf(want + 2 * i, 3, "%02x", bytes[at + i]);
			want[2 * n] = '\0';
			memset(hex, 'X', sizeof(hex));
			tg_hex_encode(hex, bytes + at, n);
			ck_assert_str_eq(hex, want);
			ck_assert_int_eq(hex[2 * n + 1], 'X');
		}
	}
}
END_TEST

START_TEST(traceparent_format_round_trip)
{
	struct tg_traceparent tp;
	char out[56];

	ck_assert_int_eq(tg_traceparent_parse(VALID, &tp), 0);
	tg_traceparent_format(out, tp.trace_id, tp.parent_id, tp.flags);
	ck_assert_str_eq(out, VALID);
	ck_assert_uint_eq(strlen(out), TG_TRACEPARENT_LEN);
}
END_TEST

START_TEST(random_ids_are_not_zero_and_differ)
{
	uint8_t a[16], b[16];

	tg_id_random(a, sizeof(a));
	tg_id_random(b, sizeof(b));
	ck_assert(!tg_id_is_zero(a, sizeof(a)));
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

START_TEST(ratio_sampling)
{
	uint8_t low[16] = {0}, high[16];
	unsigned sampled = 0;

	memset(high, 0xff, sizeof(high));
	low[15] = 1;
	ck_assert(tg_trace_ratio_sampled(low, 1.0));
	ck_assert(!tg_trace_ratio_sampled(low, 0.0));
	ck_assert(tg_trace_ratio_sampled(low, 0.5));
	ck_assert(!tg_trace_ratio_sampled(high, 0.5));
	ck_assert(tg_trace_ratio_sampled(high, 1.0));

	/* Random ids: close to the ratio over many traces. */
	for (int i = 0; i < 4000; i++) {
		uint8_t id[16];

		tg_id_random(id, sizeof(id));
		sampled += (unsigned)tg_trace_ratio_sampled(id, 0.25);
	}
	ck_assert_uint_gt(sampled, 800);
	ck_assert_uint_lt(sampled, 1200);
}
END_TEST

/* --- span tree ------------------------------------------------------------ */

static void
add_header(struct tg_headers *h, const char *name, const char *value)
{
	ck_assert_int_eq(tg_headers_add(h, name, strlen(name), value, strlen(value)), 0);
}

START_TEST(tree_continues_valid_parent)
{
	struct tg_headers h;
	struct tg_trace *t;
	char hex[33];

	tg_headers_init(&h);
	add_header(&h, "TraceParent", VALID);
	add_header(&h, "tracestate", "rojo=00f067aa0ba902b7");
	add_header(&h, "Tracestate", "congo=t61rcWkgMzE");
	t = tg_trace_begin(&h, 0.0, "POST /v1/chat/completions", 1000, TEST_WALL_NS, NULL);
	ck_assert_ptr_nonnull(t);
	tg_trace_id_hex(t, hex);
	ck_assert_str_eq(hex, TRACE_ID);
	ck_assert_int_eq(t->sampled, 1);        /* the parent's flag, not the ratio */
	ck_assert_str_eq(t->trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	tg_hex_encode(hex, t->server->parent_id, 8);
	ck_assert_str_eq(hex, PARENT_ID);
	ck_assert_uint_eq(t->server->kind, TG_SPAN_SERVER);
	ck_assert_uint_eq(t->server->flags, 0x301);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_unsampled_parent_is_followed)
{
	struct tg_headers h;
	struct tg_trace *t;

	tg_headers_init(&h);
	add_header(&h, "traceparent", "00-" TRACE_ID "-" PARENT_ID "-00");
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	ck_assert_int_eq(t->sampled, 0);
	ck_assert_ptr_null(tg_trace_child(t, TG_SPAN_INTERNAL, "cache lookup", 2000));
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_invalid_parent_starts_new_trace)
{
	struct tg_headers h;
	struct tg_trace *t;
	char hex[33];

	tg_headers_init(&h);
	add_header(&h, "traceparent", "00-" TRACE_ID "-0000000000000000-01");
	add_header(&h, "tracestate", "rojo=00f067aa0ba902b7");
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	tg_trace_id_hex(t, hex);
	ck_assert_str_ne(hex, TRACE_ID);
	ck_assert_ptr_null(t->trace_state);     /* dropped with the parent */
	ck_assert(tg_id_is_zero(t->server->parent_id, 8));
	ck_assert_int_eq(t->sampled, 1);
	ck_assert_uint_eq(t->server->flags, 0x101);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

/* The id in hex is the same before an attempt and after, when it is
 * taken from the traceparent sent upstream. */
START_TEST(tree_trace_id_hex_after_attempt)
{
	struct tg_headers h;
	struct tg_trace *t;
	char before[33], after[33];

	tg_headers_init(&h);
	add_header(&h, "traceparent", VALID);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	tg_trace_id_hex(t, before);
	ck_assert_str_eq(before, TRACE_ID);
	ck_assert_ptr_nonnull(tg_trace_attempt_begin(t, "chat m", 2000));
	memset(after, 'x', sizeof(after));
	tg_trace_id_hex(t, after);
	ck_assert_str_eq(after, TRACE_ID);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_duplicated_traceparent_starts_new_trace)
{
	struct tg_headers h;
	struct tg_trace *t;
	char hex[33];

	tg_headers_init(&h);
	add_header(&h, "traceparent", VALID);
	add_header(&h, "traceparent", "00-" TRACE_ID "-b7ad6b7169203331-01");
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	tg_trace_id_hex(t, hex);
	ck_assert_str_ne(hex, TRACE_ID);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_ratio_zero_records_nothing)
{
	struct tg_headers h;
	struct tg_trace *t;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 0.0, "POST", 1000, TEST_WALL_NS, NULL);
	ck_assert_int_eq(t->sampled, 0);
	/* The attempt still gets an id for the traceparent sent upstream. */
	ck_assert_ptr_nonnull(tg_trace_attempt_begin(t, "chat m", 2000));
	ck_assert_str_eq(t->upstream_traceparent + 53, "00");
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_upstream_traceparent_names_attempt)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *a1, *a2;
	struct tg_traceparent sent;

	tg_headers_init(&h);
	add_header(&h, "traceparent", VALID);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	a1 = tg_trace_attempt_begin(t, "chat m", 2000);
	ck_assert_int_eq(tg_traceparent_parse(t->upstream_traceparent, &sent), 0);
	ck_assert_mem_eq(sent.trace_id, t->trace_id, 16);
	ck_assert_mem_eq(sent.parent_id, a1->span_id, 8);
	ck_assert_uint_eq(sent.flags, 1);
	ck_assert_mem_eq(a1->parent_id, t->server->span_id, 8);
	ck_assert_uint_eq(a1->kind, TG_SPAN_CLIENT);

	/* A second attempt is a new span and a new parent id upstream. */
	a2 = tg_trace_attempt_begin(t, "chat m", 3000);
	ck_assert_int_eq(tg_traceparent_parse(t->upstream_traceparent, &sent), 0);
	ck_assert_mem_eq(sent.parent_id, a2->span_id, 8);
	ck_assert(memcmp(a1->span_id, a2->span_id, 8) != 0);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

/* The server span starts at the wall time given, and a later instant is
 * that plus the monotonic time since, whatever the system clock reads. */
START_TEST(tree_maps_times_from_the_start_pair)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *attempt;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 5000, TEST_WALL_NS, NULL);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->server->start_ns, TEST_WALL_NS);
	attempt = tg_trace_attempt_begin(t, "chat m", 7000);
	ck_assert_uint_eq(attempt->start_ns, TEST_WALL_NS + 2000);
	ck_assert_uint_eq(tg_trace_time(t, 4000), TEST_WALL_NS - 1000);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(tree_children_end_inside_server_span)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *attempt, *cache;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000000, TEST_WALL_NS, NULL);
	cache = tg_trace_child(t, TG_SPAN_INTERNAL, "cache lookup", 2000000);
	tg_trace_span_end(t, cache, 3000000);
	attempt = tg_trace_attempt_begin(t, "chat m", 4000000);
	ck_assert_uint_eq(cache->end_ns - cache->start_ns, 1000000);

	/* Finishing ends the running attempt and the server span together;
	 * no tracer, so the spans are freed. */
	ck_assert_uint_eq(attempt->end_ns, 0);
	ck_assert_uint_eq(t->server->start_ns + 3000000, attempt->start_ns);
	tg_trace_finish(t, NULL, 9000000);
	tg_headers_free(&h);
}
END_TEST

/* A tree keeps its first spans in its own array, and moves them when a
 * request makes more (a failover per backend, say). */
START_TEST(tree_keeps_every_span_past_its_own_array)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *made[20];
	char name[16];

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	made[0] = t->server;
	for (size_t i = 1; i < 20; i++) {
		snprintf(name, sizeof(name), "attempt %zu", i);
		made[i] = tg_trace_attempt_begin(t, name, 1000 + i);
		ck_assert_ptr_nonnull(made[i]);
	}
	ck_assert_uint_eq(t->n_spans, 20);
	for (size_t i = 0; i < 20; i++) {
		ck_assert_ptr_eq(t->spans[i], made[i]);
		if (i > 0) {
			snprintf(name, sizeof(name), "attempt %zu", i);
			ck_assert_str_eq(t->spans[i]->name, name);
		}
	}
	tg_trace_finish(t, NULL, 9000);
	tg_headers_free(&h);
}
END_TEST

/* --- spans ---------------------------------------------------------------- */

START_TEST(span_attributes_replace_and_drop)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);
	static char keys[TG_SPAN_MAX_ATTRS + 5][16];

	tg_attrs_int(&s->attrs, "a", 1);
	tg_attrs_string(&s->attrs, "a", "two");
	ck_assert_uint_eq(s->attrs.count, 1);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, "a")->v.s, "two");

	for (int i = 0; i < TG_SPAN_MAX_ATTRS + 5; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		tg_attrs_bool(&s->attrs, keys[i], 1);
	}
	ck_assert_uint_eq(s->attrs.count, TG_SPAN_MAX_ATTRS);
	ck_assert_uint_eq(s->attrs.dropped, 6);
	tg_span_free(s);
}
END_TEST

/* String values share blocks of memory: each keeps its bytes however many
 * come after it, however long, and a key is the same key whatever
 * pointer spells it. */
START_TEST(span_attribute_strings_kept)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);
	static char keys[40][16];
	static char same_key[] = "gen_ai.request.model";
	char long_value[3000], value[32];
	const char *items[] = {"stop", "length", ""};
	const struct tg_attr *list;

	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	for (int i = 0; i < 40; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		snprintf(value, sizeof(value), "value number %d", i);
		if (i == 20)
			tg_attrs_string(&s->attrs, keys[i], long_value);
		else if (i == 21)
			tg_attrs_strings(&s->attrs, keys[i], items, 3);
		else
			tg_attrs_string(&s->attrs, keys[i], value);
	}
	tg_attrs_stringn(&s->attrs, "cut", "abc\0def", 7);
	tg_attrs_string(&s->attrs, TG_SC(GEN_AI_REQUEST_MODEL), "first");
	tg_attrs_string(&s->attrs, same_key, "second");

	for (int i = 0; i < 40; i++) {
		const struct tg_attr *a = tg_attrs_find(&s->attrs, keys[i]);

		snprintf(value, sizeof(value), "value number %d", i);
		ck_assert_ptr_nonnull(a);
		if (i == 20)
			ck_assert_str_eq(a->v.s, long_value);
		else if (i != 21)
			ck_assert_str_eq(a->v.s, value);
	}
	list = tg_attrs_find(&s->attrs, "k21");
	ck_assert_uint_eq(list->v.list.n, 3);
	ck_assert_str_eq(list->v.list.items[0], "stop");
	ck_assert_str_eq(list->v.list.items[1], "length");
	ck_assert_str_eq(list->v.list.items[2], "");
	ck_assert_str_eq(tg_attrs_find(&s->attrs, "cut")->v.s, "abc");
	ck_assert_uint_eq(s->attrs.count, 42);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, TG_SC(GEN_AI_REQUEST_MODEL))->v.s, "second");
	tg_span_free(s);
}
END_TEST

/* A static value is kept where it is, with the length and the plainness
 * that the encoder reads, and replaces a copied value of its key and is
 * replaced by one. */
START_TEST(span_attribute_static_strings)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);
	static const char plain[] = "chat";
	static const char quoted[] = "say \"hi\"";
	const struct tg_attr *a;

	tg_attrs_string(&s->attrs, TG_SC(GEN_AI_OPERATION_NAME), "copied");
	tg_attrs_static_string(&s->attrs, TG_SC(GEN_AI_OPERATION_NAME), plain);
	tg_attrs_static_string(&s->attrs, "quoted", quoted);
	tg_attrs_static_string(&s->attrs, "replaced", plain);
	tg_attrs_string(&s->attrs, "replaced", "copy");

	a = tg_attrs_find(&s->attrs, TG_SC(GEN_AI_OPERATION_NAME));
	ck_assert_ptr_eq(a->v.s, plain);
	ck_assert_int_eq(a->type, TG_ATTR_STRING);
	ck_assert_uint_eq(a->value_len, 4);
	ck_assert_int_eq(a->value_plain, 1);
	a = tg_attrs_find(&s->attrs, "quoted");
	ck_assert_ptr_eq(a->v.s, quoted);
	ck_assert_uint_eq(a->value_len, sizeof(quoted) - 1);
	ck_assert_int_eq(a->value_plain, 0);
	a = tg_attrs_find(&s->attrs, "replaced");
	ck_assert_str_eq(a->v.s, "copy");
	ck_assert_uint_eq(a->value_len, 4);
	ck_assert_uint_eq(s->attrs.count, 3);
	tg_span_free(s);
}
END_TEST

START_TEST(span_attribute_static_plain)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);
	static const char path[] = "/v1/chat/completions";
	const struct tg_attr *a;

	tg_attrs_string(&s->attrs, TG_SC(URL_PATH), "copied");
	tg_attrs_static_plain(&s->attrs, TG_SC(URL_PATH), path, 8);
	tg_attrs_literal(&s->attrs, TG_SC(URL_SCHEME), "https");

	a = tg_attrs_find(&s->attrs, TG_SC(URL_PATH));
	ck_assert_ptr_eq(a->v.s, path);
	ck_assert_int_eq(a->type, TG_ATTR_STRING);
	ck_assert_uint_eq(a->value_len, 8);
	ck_assert_int_eq(a->value_plain, 1);
	a = tg_attrs_find(&s->attrs, TG_SC(URL_SCHEME));
	ck_assert_str_eq(a->v.s, "https");
	ck_assert_uint_eq(a->value_len, 5);
	ck_assert_int_eq(a->value_plain, 1);
	ck_assert_uint_eq(s->attrs.count, 2);
	tg_span_free(s);
}
END_TEST

static void
assert_plain_word(const char *what, const char *word)
{
	ck_assert_msg(tg_json_is_plain(word, strlen(word)),
	              "%s \"%s\" needs escaping in JSON", what, word);
}

/* The names that tracing sets with tg_attrs_static_plain(), which does
 * not check them. */
START_TEST(static_plain_names_need_no_escape)
{
	static const char *const paths[] = {
		"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
	};

#define CHECK_METHOD(num, name, string) assert_plain_word("method", llhttp_method_name(num));
	HTTP_ALL_METHOD_MAP(CHECK_METHOD)
#undef CHECK_METHOD

	assert_plain_word("side", tg_side_name(TG_SIDE_REQUEST));
	assert_plain_word("side", tg_side_name(TG_SIDE_RESPONSE));
	assert_plain_word("action", tg_filter_action_name(TG_ACTION_FLAG));
	assert_plain_word("action", tg_filter_action_name(TG_ACTION_MASK));
	assert_plain_word("action", tg_filter_action_name(TG_ACTION_BLOCK));

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const struct tg_genai_endpoint *e = tg_genai_endpoint(paths[i]);

		ck_assert_ptr_nonnull(e);
		ck_assert_str_eq(e->path, paths[i]);
		ck_assert_uint_eq(e->path_len, strlen(e->path));
		ck_assert_uint_eq(e->operation_len, strlen(e->operation));
		ck_assert_uint_eq(e->provider_len, strlen(e->provider));
		assert_plain_word("path", e->path);
		assert_plain_word("operation", e->operation);
		assert_plain_word("provider", e->provider);
	}
	assert_plain_word("finish reason", tg_known_finish_reason("stop", 4));
	assert_plain_word("finish reason", tg_known_finish_reason("length", 6));
	assert_plain_word("finish reason", tg_known_finish_reason("tool_calls", 10));
	assert_plain_word("finish reason", tg_known_finish_reason("content_filter", 14));
	assert_plain_word("finish reason", tg_known_finish_reason("function_call", 13));

	ck_assert_str_eq(tg_genai_endpoint("/v1/chat/completions")->operation, "chat");
	ck_assert_str_eq(tg_genai_endpoint("/v1/completions")->operation, "text_completion");
	ck_assert_str_eq(tg_genai_endpoint("/v1/embeddings")->operation, "embeddings");
	ck_assert_str_eq(tg_genai_endpoint("/v1/messages")->operation, "chat");
	ck_assert_str_eq(tg_genai_endpoint("/v1/messages")->provider, "anthropic");
	ck_assert_str_eq(tg_genai_endpoint("/v1/chat/completions")->provider, "openai");
	ck_assert_ptr_null(tg_genai_endpoint("/v1/models"));
	ck_assert_ptr_null(tg_genai_endpoint("/v1/chat/completions/"));
}
END_TEST

START_TEST(span_error_status_is_kept)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);

	tg_span_set_status(s, TG_STATUS_ERROR, "boom");
	tg_span_set_status(s, TG_STATUS_UNSET, NULL);
	ck_assert_int_eq(s->status, TG_STATUS_ERROR);
	ck_assert_str_eq(s->status_message, "boom");
	tg_span_end(s, 5);              /* before its start: clamped */
	ck_assert_uint_eq(s->end_ns, 10);
	tg_span_end(s, 50);             /* already ended */
	ck_assert_uint_eq(s->end_ns, 10);
	tg_span_free(s);
}
END_TEST

/* A key is one key whether TG_SC() or a literal spells it, in either
 * order, and keys of the same length stay apart. */
START_TEST(span_attribute_key_by_text_or_address)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);

	/* Only TG_SC() names so far. */
	tg_attrs_string(&s->attrs, TG_SC(URL_SCHEME), "http");
	tg_attrs_int(&s->attrs, TG_SC(URL_SCHEME), 1);
	ck_assert_uint_eq(s->attrs.count, 1);
	ck_assert_int_eq(tg_attrs_find(&s->attrs, "url.scheme")->v.i, 1);

	tg_attrs_string(&s->attrs, "url.path", "/a");
	tg_attrs_string(&s->attrs, TG_SC(URL_PATH), "/b");
	ck_assert_uint_eq(s->attrs.count, 2);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, TG_SC(URL_PATH))->v.s, "/b");

	tg_attrs_string(&s->attrs, TG_SC(URL_SCHEME), "http");
	tg_attrs_string(&s->attrs, "url.scheme", "https");
	ck_assert_uint_eq(s->attrs.count, 2);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, TG_SC(URL_SCHEME))->v.s, "https");

	/* "error.type" and "url.scheme" have the same length. */
	tg_attrs_string(&s->attrs, TG_SC(ERROR_TYPE), "timeout");
	tg_attrs_int(&s->attrs, TG_SC(URL_PATH), 3);
	ck_assert_uint_eq(s->attrs.count, 3);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, "url.scheme")->v.s, "https");
	ck_assert_str_eq(tg_attrs_find(&s->attrs, "error.type")->v.s, "timeout");
	ck_assert_int_eq(tg_attrs_find(&s->attrs, "url.path")->v.i, 3);

	tg_span_free(s);

	/* An event name and an attribute name spell "tollgate.filter.decision". */
	s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 10);
	tg_attrs_string(&s->attrs, TG_SC(TOLLGATE_FILTER_DECISION), "pass");
	tg_attrs_string(&s->attrs, TG_SC(EVENT_FILTER_DECISION), "mask");
	ck_assert_uint_eq(s->attrs.count, 1);
	ck_assert_str_eq(tg_attrs_find(&s->attrs, TG_SC(TOLLGATE_FILTER_DECISION))->v.s, "mask");
	tg_span_free(s);
}
END_TEST

/* A span freed on another thread gives its memory back to its pool, and
 * the next span made from the pool starts as empty as a new one. */
static void *
free_span_thread(void *arg)
{
	tg_span_free(arg);
	return NULL;
}

START_TEST(span_pool_reuses_memory)
{
	uint8_t trace_id[16] = {1};
	struct tg_span_pool *pool = tg_span_pool_new();
	struct tg_span *first, *second;
	pthread_t thread;

	ck_assert_ptr_nonnull(pool);
	first = tg_span_new_in(pool, trace_id, NULL, TG_SPAN_SERVER, "first", 10);
	tg_attrs_string(&first->attrs, TG_SC(URL_PATH), "/v1/chat/completions");
	tg_span_add_event(first, TG_SC(EVENT_FAILOVER), 11);
	tg_span_set_status(first, TG_STATUS_ERROR, "failed");
	tg_span_end(first, 12);
	ck_assert_int_eq(pthread_create(&thread, NULL, free_span_thread, first), 0);
	ck_assert_int_eq(pthread_join(thread, NULL), 0);

	second = tg_span_new_in(pool, trace_id, NULL, TG_SPAN_CLIENT, "second", 20);
	ck_assert_ptr_eq(second, first);
	ck_assert_str_eq(second->name, "second");
	ck_assert_uint_eq(second->attrs.count, 0);
	ck_assert_uint_eq(second->n_events, 0);
	ck_assert_int_eq(second->status, TG_STATUS_UNSET);
	ck_assert_ptr_null(second->status_message);
	ck_assert_uint_eq(second->end_ns, 0);

	/* The pool outlives its owner until its last span goes. */
	tg_span_pool_release(pool);
	tg_attrs_string(&second->attrs, TG_SC(URL_PATH), "/v1/models");
	ck_assert_str_eq(tg_attrs_find(&second->attrs, "url.path")->v.s, "/v1/models");
	tg_span_free(second);
}
END_TEST

/* A tree made from a pool takes the memory of the pool's last freed tree,
 * and starts as empty as a new one. */
START_TEST(span_pool_reuses_trace_memory)
{
	struct tg_span_pool *pool = tg_span_pool_new();
	json_t *chunk = json_loads("{\"choices\":[{\"finish_reason\":\"custom\"}]}", 0, NULL);
	struct tg_headers h;
	struct tg_trace *first, *second;
	struct tg_span *attempt;
	uint8_t zero[8] = {0};

	ck_assert_ptr_nonnull(pool);
	tg_headers_init(&h);
	add_header(&h, "traceparent", VALID);
	add_header(&h, "tracestate", "rojo=1");
	first = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, pool);
	attempt = tg_trace_attempt_begin(first, "chat m", 2000);
	tg_genai_stream_event(first, attempt, chunk, 3000, 2000);
	ck_assert_uint_eq(first->n_finish_reasons, 1);
	tg_trace_finish(first, NULL, 4000);
	tg_headers_free(&h);

	tg_headers_init(&h);
	second = tg_trace_begin(&h, 1.0, "POST", 5000, TEST_WALL_NS, pool);
	ck_assert_ptr_eq(second, first);
	ck_assert_ptr_null(second->trace_state);
	ck_assert_mem_eq(second->remote_parent, zero, sizeof(zero));
	ck_assert_uint_eq(second->n_spans, 1);
	ck_assert_ptr_eq(second->spans[0], second->server);
	ck_assert_ptr_null(second->attempt);
	ck_assert_ptr_null(second->last_attempt);
	ck_assert_uint_eq(second->n_finish_reasons, 0);
	ck_assert_int_eq(second->first_chunk_seen, 0);
	ck_assert_uint_eq(second->server->flags, 0x101);
	tg_trace_finish(second, NULL, 6000);
	tg_headers_free(&h);
	json_decref(chunk);
	tg_span_pool_release(pool);
}
END_TEST

/* A pool keeps the memory of every tree that was alive at once, as a
 * worker with several requests in progress frees them. */
START_TEST(span_pool_keeps_concurrent_traces)
{
	struct tg_span_pool *pool = tg_span_pool_new();
	struct tg_headers h;
	struct tg_trace *first, *second, *third, *fourth;

	ck_assert_ptr_nonnull(pool);
	tg_headers_init(&h);
	first = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, pool);
	second = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, pool);
	tg_trace_finish(first, NULL, 2000);
	tg_trace_finish(second, NULL, 2000);

	third = tg_span_pool_take_trace(pool);
	fourth = tg_span_pool_take_trace(pool);
	ck_assert_ptr_eq(third, second);
	ck_assert_ptr_eq(fourth, first);
	ck_assert_ptr_null(tg_span_pool_take_trace(pool));

	tg_span_pool_keep_trace(pool, third);
	tg_span_pool_keep_trace(pool, fourth);
	tg_headers_free(&h);
	tg_span_pool_release(pool);
}
END_TEST

/* A pool keeps at most TG_SPAN_POOL_IDLE_MAX freed spans and traces, and
 * the rest go back to malloc, so that a burst does not leave its peak of
 * memory held. */
START_TEST(span_pool_idle_bounded)
{
	enum { N = TG_SPAN_POOL_IDLE_MAX + 10 };
	static struct tg_span *spans[N];
	static struct tg_trace *traces[N];
	uint8_t trace_id[16] = {1};
	struct tg_span_pool *pool = tg_span_pool_new();
	struct tg_headers h;
	size_t kept = 0;

	ck_assert_ptr_nonnull(pool);
	for (size_t i = 0; i < N; i++)
		spans[i] = tg_span_new_in(pool, trace_id, NULL, TG_SPAN_SERVER, "s", 10);
	for (size_t i = 0; i < N; i++)
		tg_span_free(spans[i]);
	ck_assert_uint_eq(tg_span_pool_idle(pool), TG_SPAN_POOL_IDLE_MAX);

	/* Taking a span out of the pool makes room for one more. */
	spans[0] = tg_span_new_in(pool, trace_id, NULL, TG_SPAN_SERVER, "s", 10);
	ck_assert_uint_eq(tg_span_pool_idle(pool), TG_SPAN_POOL_IDLE_MAX - 1);
	tg_span_free(spans[0]);
	ck_assert_uint_eq(tg_span_pool_idle(pool), TG_SPAN_POOL_IDLE_MAX);

	tg_headers_init(&h);
	for (size_t i = 0; i < N; i++)
		traces[i] = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, pool);
	for (size_t i = 0; i < N; i++)
		tg_trace_finish(traces[i], NULL, 2000);
	while ((traces[kept] = tg_span_pool_take_trace(pool)) != NULL)
		kept++;
	ck_assert_uint_eq(kept, TG_SPAN_POOL_IDLE_MAX);
	for (size_t i = 0; i < kept; i++)
		tg_span_pool_keep_trace(pool, traces[i]);
	tg_headers_free(&h);
	tg_span_pool_release(pool);
}
END_TEST

/* --- GenAI attributes ----------------------------------------------------- */

static const struct tg_attr *
attr(const struct tg_span *s, const char *key)
{
	const struct tg_attr *a = tg_attrs_find(&s->attrs, key);

	ck_assert_msg(a != NULL, "attribute %s missing", key);
	return a;
}

START_TEST(genai_request_parameters)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", 10);
	json_t *body = json_loads("{\"model\":\"gpt-4o\",\"max_tokens\":50,\"temperature\":0.7,"
	                          "\"top_p\":1,\"stop\":[\"END\",\"STOP\"],\"seed\":42,"
	                          "\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
	                          0, NULL);
	struct tg_request_params params;

	tg_request_params_of(body, &params);
	tg_genai_request(s, tg_genai_endpoint("/v1/chat/completions"), "gpt-4o-2024", 1, &params);
	ck_assert_str_eq(attr(s, "gen_ai.operation.name")->v.s, "chat");
	ck_assert_str_eq(attr(s, "gen_ai.provider.name")->v.s, "openai");
	ck_assert_str_eq(attr(s, "gen_ai.request.model")->v.s, "gpt-4o-2024");
	ck_assert_int_eq(attr(s, "gen_ai.request.stream")->v.b, 1);
	ck_assert_int_eq(attr(s, "gen_ai.request.max_tokens")->v.i, 50);
	ck_assert_double_eq(attr(s, "gen_ai.request.temperature")->v.d, 0.7);
	ck_assert_double_eq(attr(s, "gen_ai.request.top_p")->v.d, 1.0);
	ck_assert_uint_eq(attr(s, "gen_ai.request.stop_sequences")->v.list.n, 2);
	ck_assert_str_eq(attr(s, "gen_ai.request.stop_sequences")->v.list.items[1], "STOP");
	ck_assert_int_eq(attr(s, "gen_ai.request.seed")->v.i, 42);
	ck_assert_int_eq(attr(s, "gen_ai.request.choice.count")->v.i, 2);
	/* Content is opt-in. */
	ck_assert_ptr_null(tg_attrs_find(&s->attrs, "gen_ai.input.messages"));
	tg_request_params_free(&params);
	json_decref(body);
	tg_span_free(s);
}
END_TEST

/* Every parameter, in the order the attributes are set whatever the
 * order of the members, and no attribute from a name that is close. */
START_TEST(genai_request_attributes_in_order)
{
	static const char *const want[] = {
		"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
		"gen_ai.request.stream", "gen_ai.request.max_tokens",
		"gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.seed",
		"gen_ai.request.frequency_penalty", "gen_ai.request.presence_penalty",
		"gen_ai.request.stop_sequences", "gen_ai.request.choice.count",
	};
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", 10);
	json_t *body = json_loads("{\"n\":3,\"stop\":\"END\",\"presence_penalty\":0.5,"
	                          "\"frequency_penalty\":-1,\"seed\":7,\"top_p\":0.25,"
	                          "\"temperature\":0,\"max_tokens\":9,"
	                          "\"max_completion_tokens\":\"many\",\"max_tokens_x\":1,"
	                          "\"nn\":2,\"\":1,\"t\":1,\"model\":\"m\"}", 0, NULL);
	struct tg_request_params params;

	ck_assert_ptr_nonnull(body);
	tg_request_params_of(body, &params);
	tg_genai_request(s, tg_genai_endpoint("/v1/chat/completions"), "m", 0, &params);
	ck_assert_uint_eq(s->attrs.count, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < s->attrs.count; i++)
		ck_assert_str_eq(s->attrs.items[i].key, want[i]);
	/* A max_completion_tokens that is not a number leaves max_tokens. */
	ck_assert_int_eq(attr(s, "gen_ai.request.max_tokens")->v.i, 9);
	ck_assert_double_eq(attr(s, "gen_ai.request.frequency_penalty")->v.d, -1.0);
	ck_assert_str_eq(attr(s, "gen_ai.request.stop_sequences")->v.list.items[0], "END");
	ck_assert_int_eq(attr(s, "gen_ai.request.choice.count")->v.i, 3);
	tg_request_params_free(&params);
	json_decref(body);
	tg_span_free(s);
}
END_TEST

START_TEST(genai_input_messages_truncated)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", 10);
	json_t *body = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
	                          "{\"role\":\"user\",\"content\":\"h\\u00e9llo world\"}]}",
	                          0, NULL);
	json_t *messages;

	/* 8 bytes for "be brief", 2 left: "h" and not half of the é. */
	tg_genai_input_messages(s, body, 10);
	messages = json_loads(attr(s, "gen_ai.input.messages")->v.s, 0, NULL);
	ck_assert_ptr_nonnull(messages);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(messages, 0), "role")),
	                 "system");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(
	                 json_array_get(messages, 1), "parts"), 0), "content")), "h");
	json_decref(messages);
	json_decref(body);
	tg_span_free(s);
}
END_TEST

START_TEST(genai_response_body)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *s;
	json_t *body = json_loads("{\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-2024\","
	                          "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	                          "\"content\":\"ok\"},\"finish_reason\":\"stop\"},"
	                          "{\"index\":1,\"message\":{\"content\":\"no\"},"
	                          "\"finish_reason\":\"length\"}],"
	                          "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
	                          "\"prompt_tokens_details\":{\"cached_tokens\":3},"
	                          "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
	                          0, NULL);
	const struct tg_attr *reasons;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	s = tg_trace_attempt_begin(t, "chat m", 2000);
	ck_assert_int_eq(tg_genai_capture_output(t, 100), 0);
	tg_genai_response(t, s, body);
	tg_genai_attempt_done(t, s);
	ck_assert_str_eq(attr(s, "gen_ai.response.id")->v.s, "chatcmpl-1");
	ck_assert_str_eq(attr(s, "gen_ai.response.model")->v.s, "gpt-4o-2024");
	ck_assert_int_eq(attr(s, "gen_ai.usage.input_tokens")->v.i, 12);
	ck_assert_int_eq(attr(s, "gen_ai.usage.output_tokens")->v.i, 7);
	ck_assert_int_eq(attr(s, "gen_ai.usage.cache_read.input_tokens")->v.i, 3);
	ck_assert_int_eq(attr(s, "gen_ai.usage.reasoning.output_tokens")->v.i, 2);
	reasons = attr(s, "gen_ai.response.finish_reasons");
	ck_assert_uint_eq(reasons->type, TG_ATTR_STRINGS);
	ck_assert_uint_eq(reasons->v.list.n, 2);
	ck_assert_str_eq(reasons->v.list.items[0], "stop");
	ck_assert_str_eq(reasons->v.list.items[1], "length");
	ck_assert_str_eq(attr(s, "gen_ai.output.messages")->v.s,
	                 "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"ok\"}],"
	                 "\"finish_reason\":\"stop\"},{\"role\":\"assistant\",\"parts\":"
	                 "[{\"type\":\"text\",\"content\":\"no\"}],\"finish_reason\":\"length\"}]");
	json_decref(body);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

/* Start an attempt of t at time 2000, stream the n chunks to it from
 * time 3000 and finish it. Returns the attempt's span. */
static struct tg_span *
streamed_attempt(struct tg_trace *t, const char *const *chunks, size_t n)
{
	struct tg_span *s = tg_trace_attempt_begin(t, "chat m", 2000);

	for (size_t i = 0; i < n; i++) {
		json_t *chunk = json_loads(chunks[i], 0, NULL);

		ck_assert_ptr_nonnull(chunk);
		tg_genai_stream_event(t, s, chunk, 3000 + i, 2000);
		json_decref(chunk);
	}
	tg_genai_attempt_done(t, s);
	return s;
}

/* The finish reasons of every choice index, known to OpenAI or not, come
 * in index order, with the last one given for an index. A new attempt
 * starts without them. */
START_TEST(genai_finish_reasons_by_index)
{
	static const char *const chunks[] = {
		"{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}",
		"{\"choices\":[{\"index\":2,\"finish_reason\":\"tool_calls\"}]}",
		"{\"choices\":[{\"index\":6,\"finish_reason\":\"length\"}]}",
		"{\"choices\":[{\"index\":6,\"finish_reason\":\"end_turn\"}]}",
		"{\"choices\":[{\"index\":0,\"finish_reason\":\"content_filter\"}]}",
		"{\"choices\":[{\"index\":3,\"finish_reason\":\"custom\"}]}",
		"{\"choices\":[{\"index\":3,\"finish_reason\":\"function_call\"}]}",
	};
	static const char *const want[] = {"content_filter", "tool_calls", "function_call",
	                                   "end_turn"};
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *s;
	const struct tg_attr *reasons;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	s = streamed_attempt(t, chunks, sizeof(chunks) / sizeof(chunks[0]));
	reasons = attr(s, "gen_ai.response.finish_reasons");
	ck_assert_uint_eq(reasons->v.list.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_str_eq(reasons->v.list.items[i], want[i]);

	s = tg_trace_attempt_begin(t, "chat m", 4000);
	tg_genai_attempt_done(t, s);
	ck_assert_ptr_null(tg_attrs_find(&s->attrs, "gen_ai.response.finish_reasons"));
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

/* Reasons that are all known are kept as the table's strings, which stay
 * when the attempt is reset. The array is the span's own. */
START_TEST(genai_known_finish_reasons_not_copied)
{
	static const char *const chunks[] = {
		"{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}",
		"{\"choices\":[{\"index\":1,\"finish_reason\":\"length\"}]}",
	};
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *s;
	const struct tg_attr *reasons;

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000, TEST_WALL_NS, NULL);
	s = streamed_attempt(t, chunks, sizeof(chunks) / sizeof(chunks[0]));
	tg_genai_attempt_reset(t);

	reasons = attr(s, "gen_ai.response.finish_reasons");
	ck_assert_int_eq(reasons->type, TG_ATTR_STRINGS);
	ck_assert_uint_eq(reasons->v.list.n, 2);
	ck_assert_ptr_eq(reasons->v.list.items[0], tg_known_finish_reason("stop", 4));
	ck_assert_ptr_eq(reasons->v.list.items[1], tg_known_finish_reason("length", 6));
	ck_assert_ptr_ne(reasons->v.list.items, t->first_finish_reasons);
	ck_assert_int_eq(reasons->value_plain, 1);
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(genai_stream_events)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *s;
	const char *chunks[] = {
		"{\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
		"{\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}",
		"{\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}",
		"{\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
		"{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
	};

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000000000, TEST_WALL_NS, NULL);
	s = tg_trace_attempt_begin(t, "chat m", 1000000000);
	ck_assert_int_eq(tg_genai_capture_output(t, 100), 0);
	for (size_t i = 0; i < 5; i++) {
		json_t *chunk = json_loads(chunks[i], 0, NULL);

		tg_genai_stream_event(t, s, chunk, 1250000000 + i * 1000000, 1000000000);
		json_decref(chunk);
	}
	tg_genai_stream_event(t, s, NULL, 1300000000, 1000000000);     /* [DONE] */
	tg_genai_attempt_done(t, s);

	ck_assert_double_eq_tol(attr(s, "gen_ai.response.time_to_first_chunk")->v.d, 0.25, 1e-9);
	ck_assert_uint_eq(s->n_events, 1);      /* the role-only chunk has no content */
	ck_assert_str_eq(s->events[0].name, "tollgate.first_token");
	ck_assert_uint_eq(s->events[0].time_ns, tg_trace_time(t, 1251000000));
	ck_assert_str_eq(attr(s, "gen_ai.response.id")->v.s, "c1");
	ck_assert_str_eq(attr(s, "gen_ai.response.model")->v.s, "m-1");
	ck_assert_str_eq(attr(s, "gen_ai.response.finish_reasons")->v.list.items[0], "stop");
	ck_assert_int_eq(attr(s, "gen_ai.usage.input_tokens")->v.i, 5);
	ck_assert_int_eq(attr(s, "gen_ai.usage.output_tokens")->v.i, 2);
	ck_assert_ptr_nonnull(strstr(attr(s, "gen_ai.output.messages")->v.s, "\"Hello\""));
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

/* The first id and model of a response are kept, and a new attempt
 * takes those of its own response. */
START_TEST(genai_first_response_ids_per_attempt)
{
	struct tg_headers h;
	struct tg_trace *t;
	struct tg_span *first, *second;
	const char *chunks[] = {
		"{\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[]}",
		"{\"id\":\"c2\",\"model\":\"m-2\",\"choices\":[]}",
	};

	tg_headers_init(&h);
	t = tg_trace_begin(&h, 1.0, "POST", 1000000000, TEST_WALL_NS, NULL);
	first = tg_trace_attempt_begin(t, "chat m", 1000000000);
	for (size_t i = 0; i < 2; i++) {
		json_t *chunk = json_loads(chunks[i], 0, NULL);

		tg_genai_stream_event(t, first, chunk, 1100000000, 1000000000);
		json_decref(chunk);
	}
	second = tg_trace_attempt_begin(t, "chat m", 2000000000);
	for (size_t i = 2; i > 0; i--) {
		json_t *chunk = json_loads(chunks[i - 1], 0, NULL);

		tg_genai_stream_event(t, second, chunk, 2100000000, 2000000000);
		json_decref(chunk);
	}

	ck_assert_str_eq(attr(first, "gen_ai.response.id")->v.s, "c1");
	ck_assert_str_eq(attr(first, "gen_ai.response.model")->v.s, "m-1");
	ck_assert_str_eq(attr(second, "gen_ai.response.id")->v.s, "c2");
	ck_assert_str_eq(attr(second, "gen_ai.response.model")->v.s, "m-2");
	tg_trace_free(t);
	tg_headers_free(&h);
}
END_TEST

START_TEST(genai_no_usage_no_tokens)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", 10);
	struct tg_trace t;
	json_t *body = json_loads("{\"id\":\"x\",\"choices\":[]}", 0, NULL);

	memset(&t, 0, sizeof(t));
	tg_genai_response(&t, s, body);
	tg_genai_attempt_done(&t, s);
	ck_assert_ptr_null(tg_attrs_find(&s->attrs, "gen_ai.usage.input_tokens"));
	ck_assert_ptr_null(tg_attrs_find(&s->attrs, "gen_ai.usage.output_tokens"));
	ck_assert_ptr_null(tg_attrs_find(&s->attrs, "gen_ai.response.finish_reasons"));
	json_decref(body);
	tg_span_free(s);
	tg_genai_attempt_reset(&t);
}
END_TEST

/* --- OTLP JSON ------------------------------------------------------------ */

static struct tg_span *
sample_span(void)
{
	struct tg_traceparent tp;
	struct tg_span *s;
	struct tg_attrs *ev;
	const char *reasons[] = {"stop"};

	ck_assert_int_eq(tg_traceparent_parse(VALID, &tp), 0);
	s = tg_span_new(tp.trace_id, tp.parent_id, TG_SPAN_CLIENT, "chat gpt-4o",
	                1700000000123456789ull);
	s->trace_state = strdup("rojo=1");
	s->flags = 0x101;
	tg_attrs_string(&s->attrs, "gen_ai.request.model", "gpt-4o");
	tg_attrs_int(&s->attrs, "gen_ai.usage.input_tokens", 9007199254740993ll);
	tg_attrs_double(&s->attrs, "gen_ai.request.temperature", 0.5);
	tg_attrs_bool(&s->attrs, "gen_ai.request.stream", 0);
	tg_attrs_strings(&s->attrs, "gen_ai.response.finish_reasons", reasons, 1);
	ev = tg_span_add_event(s, "tollgate.first_token", 1700000000200000000ull);
	tg_attrs_int(ev, "n", 1);
	tg_span_set_status(s, TG_STATUS_ERROR, "upstream failed");
	tg_span_end(s, 1700000001000000000ull);
	return s;
}

/* span as the exporter writes it, read back with jansson. */
static json_t *
span_json(const struct tg_span *span)
{
	struct tg_json_writer w = {0};
	json_error_t error;
	json_t *j;

	tg_otlp_write_span(&w, span);
	ck_assert_int_eq(w.failed, 0);
	j = json_loadb(w.data, w.len, 0, &error);
	ck_assert_msg(j != NULL, "the span is not JSON: %s: %.*s", error.text, (int)w.len, w.data);
	tg_json_writer_free(&w);
	return j;
}

static const char *
value_of(json_t *attrs, const char *key, const char *type)
{
	static char buf[64];

	for (size_t i = 0; i < json_array_size(attrs); i++) {
		json_t *kv = json_array_get(attrs, i);
		json_t *v;

		if (strcmp(json_string_value(json_object_get(kv, "key")), key) != 0)
			continue;
		ck_assert_uint_eq(json_object_size(json_object_get(kv, "value")), 1);
		v = json_object_get(json_object_get(kv, "value"), type);
		ck_assert_msg(v != NULL, "%s is not a %s", key, type);
		if (json_is_string(v))
			return json_string_value(v);
		if (json_is_real(v))
			snprintf(buf, sizeof(buf), "%g", json_real_value(v));
		else if (json_is_boolean(v))
			snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "true" : "false");
		else
			snprintf(buf, sizeof(buf), "other");
		return buf;
	}
	ck_abort_msg("attribute %s not encoded", key);
	return NULL;
}

/* A new name replaces the old one in the encoding, escapes included. */
START_TEST(otlp_span_renamed)
{
	struct tg_span *s = sample_span();
	json_t *j;

	tg_span_set_name(s, "a much longer name, \"quoted\"\n");
	j = span_json(s);
	ck_assert_str_eq(json_string_value(json_object_get(j, "name")),
	                 "a much longer name, \"quoted\"\n");
	json_decref(j);
	tg_span_set_name(s, "short");
	j = span_json(s);
	ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "short");
	json_decref(j);
	tg_span_free(s);
}
END_TEST

START_TEST(otlp_span_encoding)
{
	struct tg_span *s = sample_span();
	json_t *j = span_json(s);
	json_t *ev, *reasons;

	ck_assert_str_eq(json_string_value(json_object_get(j, "traceId")), TRACE_ID);
	ck_assert_str_eq(json_string_value(json_object_get(j, "parentSpanId")), PARENT_ID);
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "spanId"))), 16);
	ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "chat gpt-4o");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "kind")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "flags")), 0x101);
	ck_assert_str_eq(json_string_value(json_object_get(j, "traceState")), "rojo=1");
	/* 64-bit integers are decimal strings. */
	ck_assert_str_eq(json_string_value(json_object_get(j, "startTimeUnixNano")),
	                 "1700000000123456789");
	ck_assert_str_eq(json_string_value(json_object_get(j, "endTimeUnixNano")),
	                 "1700000001000000000");
	ck_assert_str_eq(value_of(json_object_get(j, "attributes"), "gen_ai.usage.input_tokens",
	                          "intValue"), "9007199254740993");
	ck_assert_str_eq(value_of(json_object_get(j, "attributes"), "gen_ai.request.model",
	                          "stringValue"), "gpt-4o");
	ck_assert_str_eq(value_of(json_object_get(j, "attributes"), "gen_ai.request.temperature",
	                          "doubleValue"), "0.5");
	ck_assert_str_eq(value_of(json_object_get(j, "attributes"), "gen_ai.request.stream",
	                          "boolValue"), "false");
	reasons = json_object_get(json_object_get(json_object_get(json_array_get(
	          json_object_get(j, "attributes"), 4), "value"), "arrayValue"), "values");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(reasons, 0),
	                                                   "stringValue")), "stop");
	ev = json_array_get(json_object_get(j, "events"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "name")), "tollgate.first_token");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "timeUnixNano")),
	                 "1700000000200000000");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "status"), "code")),
	                 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "status"),
	                                                   "message")), "upstream failed");
	/* Nothing was dropped, so the counts are left out. */
	ck_assert_ptr_null(json_object_get(j, "droppedAttributesCount"));
	ck_assert_ptr_null(json_object_get(j, "droppedEventsCount"));
	json_decref(j);
	tg_span_free(s);
}
END_TEST

START_TEST(otlp_root_span_has_no_parent)
{
	uint8_t trace_id[16] = {0xab};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_SERVER, "POST", 1);
	json_t *j;

	tg_span_end(s, 2);
	j = span_json(s);
	ck_assert_ptr_null(json_object_get(j, "parentSpanId"));
	ck_assert_ptr_null(json_object_get(j, "traceState"));
	ck_assert_int_eq(json_integer_value(json_object_get(j, "kind")), 2);
	ck_assert_uint_eq(json_object_size(json_object_get(j, "status")), 0);
	json_decref(j);
	tg_span_free(s);
}
END_TEST

START_TEST(otlp_request_structure)
{
	struct tg_span *spans[2] = {sample_span(), sample_span()};
	struct tg_otlp_resource res = {"svc", "1.2.3", "0b6f2c3e-7a1d-4c55-9a43-2d8f3b6e1a90"};
	struct tg_json_writer w = {0};
	json_t *root, *rs, *ss;

	tg_otlp_write(&w, spans, 2, &res);
	root = json_loadb(w.data, w.len, 0, NULL);

	ck_assert_ptr_nonnull(root);
	ck_assert_uint_eq(json_object_size(root), 1);
	rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
	ck_assert_str_eq(value_of(json_object_get(json_object_get(rs, "resource"), "attributes"),
	                          "service.name", "stringValue"), "svc");
	ck_assert_str_eq(value_of(json_object_get(json_object_get(rs, "resource"), "attributes"),
	                          "service.instance.id", "stringValue"),
	                 "0b6f2c3e-7a1d-4c55-9a43-2d8f3b6e1a90");
	ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ss, "scope"), "name")),
	                 "tollgate");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ss, "scope"),
	                                                   "version")), "1.2.3");
	ck_assert_uint_eq(json_array_size(json_object_get(ss, "spans")), 2);
	json_decref(root);
	tg_json_writer_free(&w);
	tg_span_free(spans[0]);
	tg_span_free(spans[1]);
}
END_TEST

START_TEST(otlp_dropped_counts)
{
	uint8_t trace_id[16] = {1};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_INTERNAL, "x", 1);
	json_t *j;

	for (int i = 0; i < TG_SPAN_MAX_EVENTS + 2; i++)
		tg_span_add_event(s, "e", 1);
	s->attrs.dropped = 3;
	tg_span_end(s, 2);
	j = span_json(s);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "droppedEventsCount")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "droppedAttributesCount")), 3);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), TG_SPAN_MAX_EVENTS);
	json_decref(j);
	tg_span_free(s);
}
END_TEST

/* Check that the OTLP text of span s is want, and free s. */
static void
assert_span_text(struct tg_span *s, const char *want)
{
	struct tg_json_writer w = {0};

	tg_otlp_write_span(&w, s);
	ck_assert_int_eq(w.failed, 0);
	ck_assert_uint_eq(w.len, strlen(want));
	ck_assert_mem_eq(w.data, want, w.len);
	tg_json_writer_free(&w);
	tg_span_free(s);
}

/* Every attribute type, and string values that need escaping, in the
 * exact text the exporter sends. */
START_TEST(otlp_attribute_types_exact_text)
{
	uint8_t trace_id[16] = {0xab};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_SERVER, "POST \"x\"", 5);
	const char *items[] = {"stop", "line\nbreak"};
	const char *want;

	memset(s->span_id, 0xcd, sizeof(s->span_id));
	tg_attrs_string(&s->attrs, "s", "tab\t \x01 quote\" back\\ \xc3\xa9 bad\xff");
	tg_attrs_int(&s->attrs, "i", -9007199254740993);
	tg_attrs_double(&s->attrs, "d", 0.25);
	tg_attrs_double(&s->attrs, "whole", 3.0);
	tg_attrs_bool(&s->attrs, "b", 1);
	tg_attrs_strings(&s->attrs, "a", items, 2);
	tg_attrs_strings(&s->attrs, "empty", items, 0);
	tg_span_end(s, 6);
	want = "{\"traceId\":\"ab000000000000000000000000000000\","
	       "\"spanId\":\"cdcdcdcdcdcdcdcd\",\"name\":\"POST \\\"x\\\"\",\"kind\":2,"
	       "\"startTimeUnixNano\":\"5\",\"endTimeUnixNano\":\"6\",\"attributes\":["
	       "{\"key\":\"s\",\"value\":{\"stringValue\":"
	       "\"tab\\t \\u0001 quote\\\" back\\\\ \xc3\xa9 bad\xef\xbf\xbd\"}},"
	       "{\"key\":\"i\",\"value\":{\"intValue\":\"-9007199254740993\"}},"
	       "{\"key\":\"d\",\"value\":{\"doubleValue\":0.25}},"
	       "{\"key\":\"whole\",\"value\":{\"doubleValue\":3.0}},"
	       "{\"key\":\"b\",\"value\":{\"boolValue\":true}},"
	       "{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":["
	       "{\"stringValue\":\"stop\"},{\"stringValue\":\"line\\nbreak\"}]}}},"
	       "{\"key\":\"empty\",\"value\":{\"arrayValue\":{\"values\":[]}}}],"
	       "\"events\":[],\"status\":{}}";
	assert_span_text(s, want);
}
END_TEST

/* The same with semconv keys, whose text comes from a table: first in
 * the list or not, the last name of the table, and literal keys between
 * them. */
START_TEST(otlp_semconv_keys_exact_text)
{
	uint8_t trace_id[16] = {0xab};
	struct tg_span *s = tg_span_new(trace_id, NULL, TG_SPAN_CLIENT, "chat m", 5);
	const char *items[] = {"stop"};
	const char *want;

	memset(s->span_id, 0xcd, sizeof(s->span_id));
	tg_attrs_string(&s->attrs, TG_SC(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS), "plain");
	tg_attrs_int(&s->attrs, TG_SC(SERVER_PORT), 8080);
	tg_attrs_string(&s->attrs, "literal", "x");
	tg_attrs_double(&s->attrs, TG_SC(GEN_AI_REQUEST_TEMPERATURE), 0.5);
	tg_attrs_bool(&s->attrs, TG_SC(GEN_AI_REQUEST_STREAM), 0);
	tg_attrs_strings(&s->attrs, TG_SC(GEN_AI_RESPONSE_FINISH_REASONS), items, 1);
	tg_attrs_string(&s->attrs, TG_SC(URL_PATH), "/a\"b");
	tg_attrs_string(&s->attrs, tg_semconv_names[TG_SC_COUNT - 1], "last");
	tg_span_end(s, 6);
	want = "{\"traceId\":\"ab000000000000000000000000000000\","
	       "\"spanId\":\"cdcdcdcdcdcdcdcd\",\"name\":\"chat m\",\"kind\":3,"
	       "\"startTimeUnixNano\":\"5\",\"endTimeUnixNano\":\"6\",\"attributes\":["
	       "{\"key\":\"gen_ai.usage.cache_read.input_tokens\",\"value\":"
	       "{\"stringValue\":\"plain\"}},"
	       "{\"key\":\"server.port\",\"value\":{\"intValue\":\"8080\"}},"
	       "{\"key\":\"literal\",\"value\":{\"stringValue\":\"x\"}},"
	       "{\"key\":\"gen_ai.request.temperature\",\"value\":{\"doubleValue\":0.5}},"
	       "{\"key\":\"gen_ai.request.stream\",\"value\":{\"boolValue\":false}},"
	       "{\"key\":\"gen_ai.response.finish_reasons\",\"value\":{\"arrayValue\":"
	       "{\"values\":[{\"stringValue\":\"stop\"}]}}},"
	       "{\"key\":\"url.path\",\"value\":{\"stringValue\":\"/a\\\"b\"}},"
	       "{\"key\":\"tollgate.failover\",\"value\":{\"stringValue\":\"last\"}}],"
	       "\"events\":[],\"status\":{}}";
	assert_span_text(s, want);
}
END_TEST

/* A value that is not UTF-8 costs only its bad bytes, not the batch. */
START_TEST(otlp_invalid_utf8_keeps_the_batch)
{
	struct tg_span *spans[2] = {sample_span(), sample_span()};
	struct tg_otlp_resource res = {"svc", "1.2.3", NULL};
	json_t *root, *span;

	tg_attrs_string(&spans[1]->attrs, "url.path", "/v1/\xc0\xaf\x80");
	root = tg_otlp_encode(spans, 2, &res);
	ck_assert_ptr_nonnull(root);
	span = json_array_get(json_object_get(json_array_get(json_object_get(
	       json_array_get(json_object_get(root, "resourceSpans"), 0), "scopeSpans"), 0),
	       "spans"), 1);
	ck_assert_str_eq(value_of(json_object_get(span, "attributes"), "url.path", "stringValue"),
	                 "/v1/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(root);
	tg_span_free(spans[0]);
	tg_span_free(spans[1]);
}
END_TEST

START_TEST(semconv_table_names)
{
	ck_assert_str_eq(TG_SC(GEN_AI_OPERATION_NAME), "gen_ai.operation.name");
	ck_assert_str_eq(TG_SC(GEN_AI_PROVIDER_NAME), "gen_ai.provider.name");
	ck_assert_str_eq(TG_SC(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
	                 "gen_ai.usage.cache_read.input_tokens");
	for (int i = 0; i < TG_SC_COUNT; i++)
		ck_assert_ptr_nonnull(tg_semconv_names[i]);
}
END_TEST

/* The OTLP encoder writes table names without escaping them. */
START_TEST(semconv_names_are_plain_ascii)
{
	for (int i = 0; i < TG_SC_COUNT; i++) {
		const char *name = tg_semconv_names[i];

		ck_assert_uint_gt(strlen(name), 0);
		for (const char *c = name; *c != '\0'; c++) {
			ck_assert_msg(*c > 0x20 && *c < 0x7f && *c != '"' && *c != '\\',
			              "semconv name \"%s\" needs escaping in JSON", name);
		}
	}
}
END_TEST

/* A key's entry is its bit in a list's semconv_keys, so two entries with
 * one text would be two keys. */
START_TEST(semconv_texts_unique)
{
	for (int i = 0; i < TG_SC_COUNT; i++) {
		for (int j = i + 1; j < TG_SC_COUNT; j++)
			ck_assert_msg(strcmp(tg_semconv_names[i], tg_semconv_names[j]) != 0,
			              "semconv entries %d and %d both spell \"%s\"", i, j,
			              tg_semconv_names[i]);
	}
}
END_TEST

START_TEST(semconv_names_known_by_address)
{
	char copy[64];

	strcpy(copy, TG_SC(URL_PATH));
	ck_assert(tg_semconv_is_name(TG_SC(GEN_AI_OPERATION_NAME)));
	ck_assert(tg_semconv_is_name(TG_SC(EVENT_FILTER_DECISION)));
	for (int i = 0; i < TG_SC_COUNT; i++)
		ck_assert(tg_semconv_is_name(tg_semconv_names[i]));
	/* The same text elsewhere is not a table name. */
	ck_assert(!tg_semconv_is_name(copy));
	ck_assert(!tg_semconv_is_name("url.path"));
	ck_assert(!tg_semconv_is_name(NULL));
}
END_TEST

static Suite *
trace_suite(void)
{
	Suite *s = suite_create("trace");
	TCase *context = tcase_create("context");
	TCase *tree = tcase_create("tree");
	TCase *span = tcase_create("span");
	TCase *genai = tcase_create("genai");
	TCase *otlp = tcase_create("otlp");

	tcase_add_test(context, traceparent_valid_fields);
	tcase_add_test(context, traceparent_unsampled_and_unknown_flags);
	tcase_add_loop_test(context, traceparent_invalid_cases, 0,
	                    sizeof(invalid_traceparents) / sizeof(invalid_traceparents[0]));
	tcase_add_test(context, traceparent_future_version);
	tcase_add_test(context, traceparent_optional_whitespace);
	tcase_add_test(context, traceparent_format_round_trip);
	tcase_add_test(context, hex_encode_every_byte);
	tcase_add_test(context, hex_encode_every_length);
	tcase_add_test(context, random_ids_are_not_zero_and_differ);
	tcase_add_test(context, ratio_sampling);
	tcase_add_test(tree, tree_continues_valid_parent);
	tcase_add_test(tree, tree_unsampled_parent_is_followed);
	tcase_add_test(tree, tree_invalid_parent_starts_new_trace);
	tcase_add_test(tree, tree_duplicated_traceparent_starts_new_trace);
	tcase_add_test(tree, tree_trace_id_hex_after_attempt);
	tcase_add_test(tree, tree_ratio_zero_records_nothing);
	tcase_add_test(tree, tree_upstream_traceparent_names_attempt);
	tcase_add_test(tree, tree_maps_times_from_the_start_pair);
	tcase_add_test(tree, tree_children_end_inside_server_span);
	tcase_add_test(tree, tree_keeps_every_span_past_its_own_array);
	tcase_add_test(span, span_attributes_replace_and_drop);
	tcase_add_test(span, span_attribute_strings_kept);
	tcase_add_test(span, span_attribute_static_strings);
	tcase_add_test(span, span_attribute_static_plain);
	tcase_add_test(span, static_plain_names_need_no_escape);
	tcase_add_test(span, span_error_status_is_kept);
	tcase_add_test(span, span_pool_reuses_memory);
	tcase_add_test(span, span_pool_reuses_trace_memory);
	tcase_add_test(span, span_pool_keeps_concurrent_traces);
	tcase_add_test(span, span_pool_idle_bounded);
	tcase_add_test(span, span_attribute_key_by_text_or_address);
	tcase_add_test(genai, genai_request_parameters);
	tcase_add_test(genai, genai_request_attributes_in_order);
	tcase_add_test(genai, genai_input_messages_truncated);
	tcase_add_test(genai, genai_response_body);
	tcase_add_test(genai, genai_stream_events);
	tcase_add_test(genai, genai_first_response_ids_per_attempt);
	tcase_add_test(genai, genai_finish_reasons_by_index);
	tcase_add_test(genai, genai_known_finish_reasons_not_copied);
	tcase_add_test(genai, genai_no_usage_no_tokens);
	tcase_add_test(otlp, otlp_span_encoding);
	tcase_add_test(otlp, otlp_span_renamed);
	tcase_add_test(otlp, otlp_root_span_has_no_parent);
	tcase_add_test(otlp, otlp_request_structure);
	tcase_add_test(otlp, otlp_dropped_counts);
	tcase_add_test(otlp, otlp_attribute_types_exact_text);
	tcase_add_test(otlp, otlp_semconv_keys_exact_text);
	tcase_add_test(otlp, otlp_invalid_utf8_keeps_the_batch);
	tcase_add_test(otlp, semconv_table_names);
	tcase_add_test(otlp, semconv_names_are_plain_ascii);
	tcase_add_test(otlp, semconv_names_known_by_address);
	tcase_add_test(otlp, semconv_texts_unique);
	suite_add_tcase(s, context);
	suite_add_tcase(s, tree);
	suite_add_tcase(s, span);
	suite_add_tcase(s, genai);
	suite_add_tcase(s, otlp);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(trace_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
