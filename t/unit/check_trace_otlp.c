/*
 * Unit tests for the OTLP JSON text (src/trace-otlp.c) over many random
 * spans: every attribute type, events, status, parent, trace state, flags
 * and dropped counts, with strings that need escaping or replacement and
 * doubles from every corner of the format (NaN, infinities, negative
 * zero, subnormals, huge and tiny values).
 *
 * The spans come from a seeded generator, so the text is the same on
 * every run. Its SHA-256 was taken from the encoder before it was made
 * faster, because the text the exporter sends must not change by one
 * byte. When the digest differs, the test writes the text to a file, to
 * compare with the output of an older build.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "trace-otlp.h"
#include "trace-semconv.h"
#include "trace-span.h"

#include "random-helpers.h"

/* SHA-256 of the text of the N_SPANS random spans, as the encoder of
 * commit 620c408 wrote it. */
#define WANT_SHA256 "14962755c5226e72c86aa2fc713580395cf8aa2e1877fb1a5675609eb3c1526a"

/* Written when the digest differs. */
#define MISMATCH_FILE "check_trace_otlp.out.json"

#define N_SPANS 400

/* SHA-256 of the text of the long_span() spans, as the encoder of commit
 * cd6c795 wrote it. */
#define WANT_LONG_SHA256 "efa815dc7973918ce0b715442ef74eda1bcd07e90cd646564c1880a96c4fdf76"

/* --- random text and numbers ----------------------------------------------- */

static struct random_seq rng = {0x746f6c6c67617465u};      /* "tollgate" */

/* Append to out (room for 4 more bytes) one piece of text of a random
 * kind, weighted towards the plain ASCII that most values are. Returns
 * the bytes written. */
static size_t
random_piece(char *out)
{
	static const char *const pieces[] = {
		"\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f", "/",
		"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
		"\xe2\x80\xa8",
		"\xff", "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\xe2\x82", "\xc3",
	};
	size_t kind = random_below(&rng, 4);

	if (kind < 3) {
		out[0] = (char)(0x20 + random_below(&rng, 0x5f));
		return 1;
	}
	if (random_below(&rng, 4) == 0) {
		/* Any byte but NUL, which would end the C string. */
		out[0] = (char)(1 + random_below(&rng, 255));
		return 1;
	}
	kind = random_below(&rng, sizeof(pieces) / sizeof(pieces[0]));
	memcpy(out, pieces[kind], strlen(pieces[kind]));
	return strlen(pieces[kind]);
}

/* A random NUL-terminated string in buf (size bytes, 8 at least), mostly
 * short, sometimes as long as buf allows. */
static char *
random_text(char *buf, size_t size)
{
	size_t max = random_below(&rng, 8) == 0 ? size - 5 : 40;
	size_t len = 0, want = random_below(&rng, max + 1);

	while (len < want)
		len += random_piece(buf + len);
	buf[len] = '\0';
	return buf;
}

/* A double from random bits, or one of the values at the edges. */
static double
random_double(void)
{
	static const double edges[] = {
		0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 2.0, 1e-7, 1e20, 1e21, 1e-5, 1e-4,
		123456789.125, 4.9e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
		9007199254740993.0, 0.30000000000000004, 1e15, 1e16, 1e17,
	};
	uint64_t bits = random_next(&rng);
	double v;
	int scale;

	switch (random_below(&rng, 4)) {
	case 0:
		v = edges[random_below(&rng, sizeof(edges) / sizeof(edges[0]))];
		return random_below(&rng, 2) ? -v : v;
	case 1:
		memcpy(&v, &bits, sizeof(v));   /* NaN and infinities included */
		return v;
	case 2:
		/* Values a request carries: a few decimal digits. */
		scale = (int)random_below(&rng, 20);
		return (double)(bits % 100000) / (double)(1u << scale);
	default:
		scale = (int)random_below(&rng, 200) - 150;
		return ldexp((double)(bits >> 11), scale);
	}
}

static int64_t
random_int(void)
{
	static const int64_t edges[] = {0, 1, -1, INT64_MAX, INT64_MIN, 9007199254740993};

	if (random_below(&rng, 4) == 0)
		return edges[random_below(&rng, sizeof(edges) / sizeof(edges[0]))];
	uint64_t bits = random_next(&rng);

	return (int64_t)(bits >> random_below(&rng, 64));
}

/* --- random spans ------------------------------------------------------------ */

/* A key: mostly a semantic-convention name, as in the gateway, sometimes
 * a literal of the kinds tests use. Keys must have static storage. */
static const char *
random_key(void)
{
	static const char *const literals[] = {"a", "s", "k21", "quote\"key", "tab\tkey",
	                                       "\xc3\xa9t\xc3\xa9", "bad\xffkey", ""};

	if (random_below(&rng, 4) == 0)
		return literals[random_below(&rng, sizeof(literals) / sizeof(literals[0]))];
	return tg_semconv_names[random_below(&rng, TG_SC_COUNT)];
}

static void
random_attrs(struct tg_attrs *a, size_t max)
{
	size_t n = random_below(&rng, max + 1);
	char text[600];

	for (size_t i = 0; i < n; i++) {
		const char *key = random_key();
		char items[3][64];
		const char *list[3];
		size_t count;

		switch (random_below(&rng, 5)) {
		case 0:
			tg_attrs_string(a, key, random_text(text, sizeof(text)));
			break;
		case 1:
			tg_attrs_int(a, key, random_int());
			break;
		case 2:
			tg_attrs_double(a, key, random_double());
			break;
		case 3:
			tg_attrs_bool(a, key, (int)random_below(&rng, 2));
			break;
		default:
			count = random_below(&rng, 4);
			for (size_t j = 0; j < count; j++)
				list[j] = random_text(items[j], sizeof(items[j]));
			tg_attrs_strings(a, key, list, count);
			break;
		}
	}
	if (random_below(&rng, 8) == 0)
		a->dropped = (uint32_t)random_next(&rng);
}

static void
random_id(uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		id[i] = (uint8_t)random_next(&rng);
}

static void
random_events(struct tg_span *span)
{
	static const char *const names[] = {"tollgate.first_token", "tollgate.failover",
	                                    "ev \"quoted\"", "\xe2\x82\xac"};
	size_t n = random_below(&rng, 4);

	for (size_t i = 0; i < n; i++) {
		const char *name = names[random_below(&rng, 4)];
		uint64_t time_ns = random_next(&rng);
		struct tg_attrs *attrs = tg_span_add_event(span, name, time_ns);

		if (attrs != NULL)
			random_attrs(attrs, 4);
	}
	if (random_below(&rng, 8) == 0)
		span->dropped_events = (uint32_t)random_next(&rng);
}

static struct tg_span *
random_span(void)
{
	uint8_t trace_id[16], parent_id[8] = {0};
	char text[600];
	enum tg_span_kind kind;
	enum tg_span_status status;
	uint64_t start;
	struct tg_span *span;

	/* One call per statement: the order in which a call's arguments are
	 * evaluated is unspecified, and the sequence must not depend on it. */
	random_id(trace_id, sizeof(trace_id));
	if (random_below(&rng, 3) != 0)
		random_id(parent_id, sizeof(parent_id));
	kind = (enum tg_span_kind)(1 + random_below(&rng, 3));
	start = random_next(&rng);
	start >>= random_below(&rng, 64);
	span = tg_span_new(trace_id, parent_id, kind, random_text(text, sizeof(text)), start);
	ck_assert_ptr_nonnull(span);
	random_id(span->span_id, sizeof(span->span_id));
	random_attrs(&span->attrs, 24);
	random_events(span);
	status = (enum tg_span_status)random_below(&rng, 3);
	tg_span_set_status(span, status, random_below(&rng, 2) ? random_text(text, sizeof(text)) : NULL);
	if (random_below(&rng, 3) == 0)
		span->trace_state = strdup(random_text(text, sizeof(text)));
	span->flags = random_below(&rng, 2) ? (uint32_t)random_next(&rng) : 0x100;
	tg_span_end(span, random_next(&rng));
	return span;
}

/* --- the test ------------------------------------------------------------------ */

static void
sha256_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	ck_assert_int_eq(EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL), 1);
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

START_TEST(random_spans_keep_their_text)
{
	struct tg_otlp_resource resource = {"svc \"name\"", "1.2.3", "id-\x01"};
	struct tg_span *spans[N_SPANS];
	struct tg_json_writer w = {0};
	char digest[65];

	for (size_t i = 0; i < N_SPANS; i++)
		spans[i] = random_span();
	tg_otlp_write(&w, spans, N_SPANS, &resource);
	ck_assert_int_eq(w.failed, 0);
	sha256_hex(w.data, w.len, digest);
	if (strcmp(digest, WANT_SHA256) != 0) {
		FILE *out = fopen(MISMATCH_FILE, "w");

		if (out != NULL) {
			fwrite(w.data, 1, w.len, out);
			fclose(out);
		}
	}
	ck_assert_msg(strcmp(digest, WANT_SHA256) == 0,
	              "the OTLP text changed: SHA-256 %s (text in " MISMATCH_FILE ")",
	              digest);
	tg_json_writer_free(&w);
	for (size_t i = 0; i < N_SPANS; i++)
		tg_span_free(spans[i]);
}
END_TEST

/* A string of len bytes: plain ASCII, with one byte that needs an escape
 * (kind 1) or a UTF-8 sequence (kind 2) at its end. */
static char *
long_text(size_t len, int kind)
{
	char *text = malloc(len + 1);

	ck_assert_ptr_nonnull(text);
	for (size_t i = 0; i < len; i++)
		text[i] = (char)('a' + i % 26);
	if (kind == 1)
		text[len - 1] = '\n';
	if (kind == 2)
		memcpy(text + len - 2, "\xc3\xa9", 2);
	text[len] = '\0';
	return text;
}

/* A span whose strings are as long as len, around the sizes where the
 * writer grows (4 KiB at first, then doubled), with the integers and
 * times at their limits. */
static struct tg_span *
long_span(size_t len, int kind)
{
	uint8_t trace_id[16] = {0xff, 1, 2}, parent_id[8] = {0, 0, 0, 0, 0, 0, 0, 1};
	char *text = long_text(len, kind);
	struct tg_span *span = tg_span_new(trace_id, parent_id, TG_SPAN_CLIENT, text, 0);
	struct tg_attrs *event;

	ck_assert_ptr_nonnull(span);
	memset(span->span_id, 0xab, sizeof(span->span_id));    /* not random */
	tg_attrs_string(&span->attrs, TG_SC(URL_PATH), text);
	tg_attrs_string(&span->attrs, "literal.key", text);
	tg_attrs_int(&span->attrs, TG_SC(SERVER_PORT), INT64_MIN);
	tg_attrs_int(&span->attrs, TG_SC(TOLLGATE_ATTEMPT), INT64_MAX);
	tg_attrs_int(&span->attrs, TG_SC(HTTP_RESPONSE_STATUS_CODE), 0);
	tg_attrs_bool(&span->attrs, TG_SC(GEN_AI_REQUEST_STREAM), 1);
	tg_attrs_strings(&span->attrs, TG_SC(GEN_AI_RESPONSE_FINISH_REASONS),
	                 (const char *const[]){text, "stop"}, 2);
	event = tg_span_add_event(span, TG_SC(EVENT_FAILOVER), UINT64_MAX);
	tg_attrs_string(event, TG_SC(TOLLGATE_BACKEND), text);
	tg_span_set_status(span, TG_STATUS_ERROR, text);
	span->trace_state = strdup(text);
	span->flags = UINT32_MAX;
	span->attrs.dropped = UINT32_MAX;
	tg_span_end(span, UINT64_MAX);
	free(text);
	return span;
}

START_TEST(long_values_keep_their_text)
{
	static const size_t lengths[] = {1, 4000, 4095, 4096, 4097, 70000};
	struct tg_otlp_resource resource = {"svc", "1.2.3", NULL};
	struct tg_span *spans[3 * 6];
	struct tg_json_writer w = {0};
	size_t n = 0;
	char digest[65];
	json_t *back;

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		for (int kind = 0; kind < 3; kind++)
			spans[n++] = long_span(lengths[i] + 1, kind);
	}
	tg_otlp_write(&w, spans, n, &resource);
	ck_assert_int_eq(w.failed, 0);
	back = json_loadb(w.data, w.len, 0, NULL);
	ck_assert_ptr_nonnull(back);
	json_decref(back);
	sha256_hex(w.data, w.len, digest);
	ck_assert_msg(strcmp(digest, WANT_LONG_SHA256) == 0,
	              "the OTLP text of long values changed: SHA-256 %s", digest);
	tg_json_writer_free(&w);
	for (size_t i = 0; i < n; i++)
		tg_span_free(spans[i]);
}
END_TEST

static Suite *
trace_otlp_suite(void)
{
	Suite *s = suite_create("trace_otlp");
	TCase *text = tcase_create("text");

	tcase_add_test(text, random_spans_keep_their_text);
	tcase_add_test(text, long_values_keep_their_text);
	suite_add_tcase(s, text);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(trace_otlp_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
