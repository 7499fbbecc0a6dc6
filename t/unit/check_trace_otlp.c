/*
 * Unit tests for the OTLP JSON text (src/trace-otlp.c) and protobuf bytes
 * (src/trace-otlp-proto.c) over many random spans: every attribute type, events, status, parent, trace state, flags
 * and dropped counts, with strings that need escaping or replacement and
 * doubles from every corner of the format (NaN, infinities, negative
 * zero, subnormals, huge and tiny values).
 *
 * The spans come from a seeded generator, so the text is the same on
 * every run. Its SHA-256 was taken from the encoder before it was made
 * faster, because the text the exporter sends must not change by one
 * byte. When the digest differs, the test writes the text to a file, to
 * compare with the output of an older build.
 *
 * The protobuf bytes are pinned the same way and read back with a walk
 * over the wire format, which maps each field to the message it contains.
 * Every length must end inside its parent and every varint be minimal.
 * The spans, attributes and events must come back as many as were
 * written, with their ids and times.
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
#include "trace-otlp-proto.h"
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

#define SEED 0x746f6c6c67617465u        /* "tollgate" */

/* Each test starts it again from SEED, so that one test's spans do not
 * depend on which tests ran before it in the same process. */
static struct random_seq rng = {SEED};

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

/* Entries of the table added after the digests were pinned, in table
 * order, which random_key() skips. */
static const enum tg_semconv ADDED_ENTRIES[] = {
	TG_SC_GEN_AI_REQUEST_TOP_K,
	TG_SC_GEN_AI_OUTPUT_TYPE,
	TG_SC_GEN_AI_REQUEST_ENCODING_FORMATS,
	TG_SC_GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
	TG_SC_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
	TG_SC_GEN_AI_SYSTEM_INSTRUCTIONS,
	TG_SC_URL_TEMPLATE,
	TG_SC_TOLLGATE_KEY,
	TG_SC_TOLLGATE_FILTER_UNMASKABLE,
};
#define N_ADDED_ENTRIES (sizeof(ADDED_ENTRIES) / sizeof(ADDED_ENTRIES[0]))

/* A key: mostly a semantic-convention name, as in the gateway, sometimes
 * a literal of the kinds tests use. Keys must have static storage. */
static const char *
random_key(void)
{
	static const char *const literals[] = {"a", "s", "k21", "quote\"key", "tab\tkey",
	                                       "\xc3\xa9t\xc3\xa9", "bad\xffkey", ""};

	size_t semconv;

	if (random_below(&rng, 4) == 0)
		return literals[random_below(&rng, sizeof(literals) / sizeof(literals[0]))];

	/* The pinned digests drew from the table when the event name
	 * "tollgate.filter.decision" had an entry of its own, the last, and
	 * before the entries of ADDED_ENTRIES were added. */
	semconv = random_below(&rng, TG_SC_COUNT + 1 - N_ADDED_ENTRIES);
	for (size_t i = 0; i < N_ADDED_ENTRIES; i++) {
		if (semconv >= ADDED_ENTRIES[i])
			semconv++;
	}
	return semconv < TG_SC_COUNT ? tg_semconv_names[semconv] : TG_SC(EVENT_FILTER_DECISION);
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

	rng.state = SEED;
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

/* --- protobuf ------------------------------------------------------------------ */

/* SHA-256 of the protobuf bytes of the N_SPANS random spans and of the
 * long_span() spans, as the first protobuf encoder wrote them. The walk
 * below checks what they hold; the digests pin them byte for byte. */
#define WANT_PROTO_SHA256 "29b0a1ef21abba0be561f82bc70e2e0ac9c859c86a8351178648ab8333f1eff2"
#define WANT_LONG_PROTO_SHA256 "2b1826f075b8709611980a728a0cf547f2ff934121c77d171d549c0acb72fa05"

/* The messages of an ExportTraceServiceRequest that the walk reads, and
 * the two kinds of length-delimited field that are not messages. */
enum message {
	M_NONE, M_REQUEST, M_RESOURCE_SPANS, M_RESOURCE, M_SCOPE_SPANS, M_SCOPE, M_SPAN,
	M_EVENT, M_STATUS, M_KEY_VALUE, M_ANY_VALUE, M_ARRAY_VALUE, M_COUNT,
	M_BYTES = M_COUNT, M_STRING,    /* a string must be valid UTF-8 */
};

/* Field n of a message: its wire type plus 1 (0: not a field the encoder
 * may write), and what a length-delimited one holds. */
struct field {
	int wire;
	enum message holds;
};

#define VARINT {1, M_NONE}
#define I64 {2, M_NONE}
#define I32 {6, M_NONE}
#define LEN(what) {3, what}

/* The field numbers of opentelemetry-proto, as the encoder uses them. */
static const struct field FIELDS[M_COUNT][17] = {
	[M_REQUEST] = {[1] = LEN(M_RESOURCE_SPANS)},
	[M_RESOURCE_SPANS] = {[1] = LEN(M_RESOURCE), [2] = LEN(M_SCOPE_SPANS)},
	[M_RESOURCE] = {[1] = LEN(M_KEY_VALUE)},
	[M_SCOPE_SPANS] = {[1] = LEN(M_SCOPE), [2] = LEN(M_SPAN)},
	[M_SCOPE] = {[1] = LEN(M_STRING), [2] = LEN(M_STRING)},
	[M_SPAN] = {[1] = LEN(M_BYTES), [2] = LEN(M_BYTES), [3] = LEN(M_STRING),
	            [4] = LEN(M_BYTES), [5] = LEN(M_STRING), [6] = VARINT, [7] = I64,
	            [8] = I64, [9] = LEN(M_KEY_VALUE), [10] = VARINT, [11] = LEN(M_EVENT),
	            [12] = VARINT, [15] = LEN(M_STATUS), [16] = I32},
	[M_EVENT] = {[1] = I64, [2] = LEN(M_STRING), [3] = LEN(M_KEY_VALUE), [4] = VARINT},
	[M_STATUS] = {[2] = LEN(M_STRING), [3] = VARINT},
	[M_KEY_VALUE] = {[1] = LEN(M_STRING), [2] = LEN(M_ANY_VALUE)},
	[M_ANY_VALUE] = {[1] = LEN(M_STRING), [2] = VARINT, [3] = VARINT, [4] = I64,
	                 [5] = LEN(M_ARRAY_VALUE)},
	[M_ARRAY_VALUE] = {[1] = LEN(M_ANY_VALUE)},
};

/* The walk's findings: counts of messages of each kind, and each span's
 * ids and times, in order. */
struct walk {
	size_t count[M_COUNT];
	struct {
		const uint8_t *trace_id, *span_id;
		size_t trace_id_len, span_id_len;
		uint64_t start, end;
	} spans[N_SPANS];
};

/* Read a varint that must end before end and have no padding (a last
 * byte of 0 after the first). */
static const uint8_t *
read_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	uint64_t value = 0;

	for (int shift = 0; shift < 64 && p < end; shift += 7) {
		uint8_t b = *p++;

		value |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			ck_assert_msg(shift == 0 || b != 0, "a padded varint");
			*v = value;
			return p;
		}
	}
	ck_abort_msg("a varint runs past its message or 10 bytes");
	return end;
}

static uint64_t
read_fixed(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Keep what the span at index has in field number. */
static void
record_span_field(struct walk *w, size_t index, unsigned number, const uint8_t *p,
                  uint64_t v)
{
	ck_assert_uint_lt(index, N_SPANS);
	if (number == 1) {
		w->spans[index].trace_id = p;
		w->spans[index].trace_id_len = v;
	} else if (number == 2) {
		w->spans[index].span_id = p;
		w->spans[index].span_id_len = v;
	} else if (number == 7) {
		w->spans[index].start = v;
	} else if (number == 8) {
		w->spans[index].end = v;
	}
}

/* Walk the message of type that fills p to end. Fields must come in the
 * order of their numbers, as the encoder writes them. */
static void
walk_message(struct walk *w, enum message type, const uint8_t *p, const uint8_t *end)
{
	size_t index = w->count[type]++;
	unsigned last = 0;

	while (p < end) {
		uint64_t key, v = 0;
		unsigned number;
		int wire;
		const struct field *f;

		p = read_varint(p, end, &key);
		number = (unsigned)(key >> 3);
		wire = (int)(key & 7);
		ck_assert_msg(number >= 1 && number <= 16 && FIELDS[type][number].wire == wire + 1,
		              "field %u, wire type %d, is not one of message %d", number, wire, type);
		ck_assert_msg(number >= last, "field %u after field %u", number, last);
		last = number;
		f = &FIELDS[type][number];

		if (wire == 0) {
			p = read_varint(p, end, &v);
		} else if (wire == 1 || wire == 5) {
			int n = wire == 1 ? 8 : 4;

			ck_assert_msg(end - p >= n, "a fixed field runs past its message");
			v = read_fixed(p, n);
			p += n;
		} else {
			p = read_varint(p, end, &v);
			ck_assert_msg(v <= (uint64_t)(end - p), "a length runs past its message");
			if (f->holds == M_STRING)
				ck_assert_msg(tg_utf8_repaired_len((const char *)p, v) == v,
				              "field %u of message %d is not UTF-8", number, type);
			else if (f->holds != M_BYTES)
				walk_message(w, f->holds, p, p + v);
		}
		if (type == M_SPAN)
			record_span_field(w, index, number, p, v);
		if (wire == 2)
			p += v;
	}
}

/* Encode spans, walk the bytes, check what came back, and return the
 * bytes' SHA-256 in digest. */
static void
check_proto(struct tg_span **spans, size_t n, const struct tg_otlp_resource *resource,
            char digest[65])
{
	struct tg_json_writer w = {0};
	struct walk *walk = calloc(1, sizeof(*walk));
	size_t start, events = 0, attrs = resource->instance_id != NULL ? 5 : 4, statuses = 0;

	ck_assert_ptr_nonnull(walk);
	ck_assert_uint_le(n, N_SPANS);
	start = tg_otlp_proto_write(&w, spans, n, resource);
	ck_assert_int_eq(w.failed, 0);
	walk_message(walk, M_REQUEST, (uint8_t *)w.data + start, (uint8_t *)w.data + w.len);

	for (size_t i = 0; i < n; i++) {
		attrs += spans[i]->attrs.count;
		events += spans[i]->n_events;
		for (size_t j = 0; j < spans[i]->n_events; j++)
			attrs += spans[i]->events[j].attrs.count;
		statuses += spans[i]->status != TG_STATUS_UNSET;

		ck_assert_uint_eq(walk->spans[i].trace_id_len, TG_TRACE_ID_SIZE);
		ck_assert_mem_eq(walk->spans[i].trace_id, spans[i]->trace_id, TG_TRACE_ID_SIZE);
		ck_assert_uint_eq(walk->spans[i].span_id_len, TG_SPAN_ID_SIZE);
		ck_assert_mem_eq(walk->spans[i].span_id, spans[i]->span_id, TG_SPAN_ID_SIZE);
		ck_assert_uint_eq(walk->spans[i].start, spans[i]->start_ns);
		ck_assert_uint_eq(walk->spans[i].end, spans[i]->end_ns);
	}
	ck_assert_uint_eq(walk->count[M_REQUEST], 1);
	ck_assert_uint_eq(walk->count[M_RESOURCE_SPANS], 1);
	ck_assert_uint_eq(walk->count[M_SCOPE_SPANS], 1);
	ck_assert_uint_eq(walk->count[M_SPAN], n);
	ck_assert_uint_eq(walk->count[M_EVENT], events);
	ck_assert_uint_eq(walk->count[M_KEY_VALUE], attrs);
	ck_assert_uint_eq(walk->count[M_STATUS], statuses);

	sha256_hex(w.data + start, w.len - start, digest);
	tg_json_writer_free(&w);
	free(walk);
}

START_TEST(random_spans_keep_their_bytes)
{
	struct tg_otlp_resource resource = {"svc \"name\"", "1.2.3", "id-\x01"};
	struct tg_span *spans[N_SPANS];
	char digest[65];

	rng.state = SEED;
	for (size_t i = 0; i < N_SPANS; i++)
		spans[i] = random_span();
	check_proto(spans, N_SPANS, &resource, digest);
	ck_assert_msg(strcmp(digest, WANT_PROTO_SHA256) == 0,
	              "the OTLP protobuf bytes changed: SHA-256 %s", digest);
	for (size_t i = 0; i < N_SPANS; i++)
		tg_span_free(spans[i]);
}
END_TEST

START_TEST(long_values_keep_their_bytes)
{
	static const size_t lengths[] = {1, 127, 128, 16383, 16384, 70000};
	struct tg_otlp_resource resource = {"svc", "1.2.3", NULL};
	struct tg_span *spans[3 * 6];
	size_t n = 0;
	char digest[65];

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		for (int kind = 0; kind < 3; kind++)
			spans[n++] = long_span(lengths[i] + 1, kind);
	}
	check_proto(spans, n, &resource, digest);
	ck_assert_msg(strcmp(digest, WANT_LONG_PROTO_SHA256) == 0,
	              "the OTLP protobuf bytes of long values changed: SHA-256 %s", digest);
	for (size_t i = 0; i < n; i++)
		tg_span_free(spans[i]);
}
END_TEST

/* The bytes of one small span, field by field, so that a reader can
 * check them against the .proto files without a decoder. The span is the
 * last field of the request, so its bytes end it. */
START_TEST(small_span_has_these_bytes)
{
	static const uint8_t want[] = {
		0x12, 0x62,             /* ScopeSpans.spans (2), 98 bytes */
		0x0a, 0x10,             /* trace_id (1), 16 bytes */
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		0x12, 0x08,             /* span_id (2), 8 bytes */
		17, 18, 19, 20, 21, 22, 23, 24,
		0x2a, 0x04, 'c', 'h', 'a', 't',         /* name (5) */
		0x30, 0x03,             /* kind (6): SPAN_KIND_CLIENT */
		0x39, 1, 0, 0, 0, 0, 0, 0, 0,           /* start_time_unix_nano (7), fixed64 */
		0x41, 2, 0, 0, 0, 0, 0, 0, 0,           /* end_time_unix_nano (8), fixed64 */
		0x4a, 0x20,             /* attributes (9): a KeyValue of 32 bytes */
		0x0a, 0x19,             /* key (1), 25 bytes */
		'h', 't', 't', 'p', '.', 'r', 'e', 's', 'p', 'o', 'n', 's', 'e', '.',
		's', 't', 'a', 't', 'u', 's', '_', 'c', 'o', 'd', 'e',
		0x12, 0x03,             /* value (2): an AnyValue of 3 bytes */
		0x18, 0xc8, 0x01,       /* int_value (3): 200 */
		0x7a, 0x02,             /* status (15), 2 bytes */
		0x18, 0x02,             /* code (3): STATUS_CODE_ERROR */
		0x85, 0x01, 1, 0, 0, 0, /* flags (16), fixed32: sampled */
	};
	uint8_t trace_id[16], parent_id[8] = {0};
	struct tg_otlp_resource resource = {"svc", "1.2.3", NULL};
	struct tg_json_writer w = {0};
	struct tg_span *span;
	size_t start;

	for (int i = 0; i < 16; i++)
		trace_id[i] = (uint8_t)(i + 1);
	span = tg_span_new(trace_id, parent_id, TG_SPAN_CLIENT, "chat", 1);
	ck_assert_ptr_nonnull(span);
	for (int i = 0; i < 8; i++)
		span->span_id[i] = (uint8_t)(17 + i);
	tg_attrs_int(&span->attrs, TG_SC(HTTP_RESPONSE_STATUS_CODE), 200);
	tg_span_set_status(span, TG_STATUS_ERROR, NULL);
	span->flags = 1;
	tg_span_end(span, 2);

	start = tg_otlp_proto_write(&w, &span, 1, &resource);
	ck_assert_int_eq(w.failed, 0);
	ck_assert_uint_ge(w.len - start, sizeof(want));
	ck_assert_mem_eq(w.data + w.len - sizeof(want), want, sizeof(want));
	tg_json_writer_free(&w);
	tg_span_free(span);
}
END_TEST

/* --- short KeyValues, written in runs ------------------------------------------ */

/* Append v to out as a varint. Returns the bytes written. */
static size_t
put_test_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* Append a length-delimited field keyed key holding the len bytes at
 * contents to out. Returns the bytes written. */
static size_t
put_test_field(uint8_t *out, uint8_t key, const void *contents, size_t len)
{
	size_t n = 0;

	out[n++] = key;
	n += put_test_varint(out + n, len);
	memcpy(out + n, contents, len);
	return n + len;
}

/* Append to out a Span.attributes field, as the .proto files define it:
 * a KeyValue with this key, whose AnyValue is the value_len bytes at
 * value. Returns the bytes written. */
static size_t
put_test_key_value(uint8_t *out, const char *key, const uint8_t *value, size_t value_len)
{
	uint8_t kv[512];
	size_t n = put_test_field(kv, 0x0a, key, strlen(key));        /* key (1) */

	n += put_test_field(kv + n, 0x12, value, value_len);            /* value (2) */
	return put_test_field(out, 0x4a, kv, n);                        /* attributes (9) */
}

/* Set key to a string value of len bytes on a, and append its
 * Span.attributes field to out. Returns the bytes appended. */
static size_t
add_test_string(struct tg_attrs *a, const char *key, size_t len, uint8_t *out)
{
	char text[256];
	uint8_t any[260];

	ck_assert_uint_lt(len, sizeof(text));
	for (size_t i = 0; i < len; i++)
		text[i] = (char)('a' + (len + i) % 26);
	tg_attrs_stringn(a, key, text, len);
	return put_test_key_value(out, key, any,
	                          put_test_field(any, 0x0a, text, len));  /* string_value (1) */
}

/* Set key to the integer v on a, and append its Span.attributes field
 * to out. Returns the bytes appended. */
static size_t
add_test_int(struct tg_attrs *a, const char *key, int64_t v, uint8_t *out)
{
	uint8_t any[11] = {0x18};                                       /* int_value (3) */

	tg_attrs_int(a, key, v);
	return put_test_key_value(out, key, any, 1 + put_test_varint(any + 1, (uint64_t)v));
}

/* Set key to the boolean v on a, and append its Span.attributes field
 * to out. Returns the bytes appended. */
static size_t
add_test_bool(struct tg_attrs *a, const char *key, int v, uint8_t *out)
{
	uint8_t any[2] = {0x10, (uint8_t)(v != 0)};                     /* bool_value (2) */

	tg_attrs_bool(a, key, v);
	return put_test_key_value(out, key, any, sizeof(any));
}

/* Set key to a list of n strings, of lengths from seed, on a, and append
 * its Span.attributes field to out. Returns the bytes appended. */
static size_t
add_test_strings(struct tg_attrs *a, const char *key, size_t n, size_t seed, uint8_t *out)
{
	char texts[4][64];
	const char *items[4];
	uint8_t array[512], any[520];
	size_t array_len = 0;

	ck_assert_uint_le(n, 4);
	for (size_t i = 0; i < n; i++) {
		size_t len = (seed * 7 + i * 13) % 50;
		uint8_t string[80];
		size_t string_len;

		for (size_t j = 0; j < len; j++)
			texts[i][j] = (char)('A' + (seed + i + j) % 26);
		texts[i][len] = '\0';
		items[i] = texts[i];
		string_len = put_test_field(string, 0x0a, texts[i], len);        /* string_value (1) */
		array_len += put_test_field(array + array_len, 0x0a, string, string_len); /* values (1) */
	}
	tg_attrs_strings(a, key, items, n);
	return put_test_key_value(out, key, any,
	                          put_test_field(any, 0x2a, array, array_len)); /* array_value (5) */
}

/*
 * A span per string length from 0 to 112, each with six attributes: a
 * string of that length, an integer around a varint width, a boolean, an
 * integer under a key of over 32 bytes, a list of up to three strings,
 * and a string of the remaining length. So a short KeyValue (each size
 * of copy, up to the last length whose lengths fit in one byte) comes
 * before and after a long one (a negative integer, strings from about 100
 * bytes on, long lists).
 * Each span's attributes must come out as written by hand from the
 * .proto files.
 */
START_TEST(short_and_long_values_have_these_bytes)
{
	static const int64_t ints[] = {0, 1, 127, -1, 128, 16383, INT64_MAX, 16384};
	uint8_t trace_id[16] = {1}, parent_id[8] = {0};
	struct tg_otlp_resource resource = {"svc", "1.2.3", NULL};
	struct tg_span *spans[113];
	size_t n = sizeof(spans) / sizeof(spans[0]), want_len[113], start;
	uint8_t want[113][1024];
	struct tg_json_writer w = {0};

	for (size_t len = 0; len < n; len++) {
		struct tg_span *span = tg_span_new(trace_id, parent_id, TG_SPAN_CLIENT, "chat", 1);
		uint8_t *out = want[len];

		ck_assert_ptr_nonnull(span);
		out += add_test_string(&span->attrs, TG_SC(GEN_AI_RESPONSE_ID), len, out);
		out += add_test_int(&span->attrs, TG_SC(SERVER_PORT), ints[len % 8], out);
		out += add_test_bool(&span->attrs, TG_SC(GEN_AI_REQUEST_STREAM), (int)len % 2, out);
		out += add_test_int(&span->attrs, TG_SC(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
		                    (int64_t)len, out);         /* a key past 32 bytes */
		out += add_test_strings(&span->attrs, TG_SC(GEN_AI_RESPONSE_FINISH_REASONS), len % 4,
		                        len, out);
		out += add_test_string(&span->attrs, TG_SC(GEN_AI_RESPONSE_MODEL), n - 1 - len, out);
		want_len[len] = (size_t)(out - want[len]);
		tg_span_end(span, 2);
		spans[len] = span;
	}

	start = tg_otlp_proto_write(&w, spans, n, &resource);
	ck_assert_int_eq(w.failed, 0);
	for (size_t len = 0; len < n; len++)
		ck_assert_msg(memmem(w.data + start, w.len - start, want[len], want_len[len]) != NULL,
		              "the attributes of the span with a string of %zu bytes are not "
		              "the %zu bytes of the .proto files", len, want_len[len]);
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
	TCase *proto = tcase_create("protobuf");

	tcase_add_test(text, random_spans_keep_their_text);
	tcase_add_test(text, long_values_keep_their_text);
	suite_add_tcase(s, text);
	tcase_add_test(proto, random_spans_keep_their_bytes);
	tcase_add_test(proto, long_values_keep_their_bytes);
	tcase_add_test(proto, small_span_has_these_bytes);
	tcase_add_test(proto, short_and_long_values_have_these_bytes);
	suite_add_tcase(s, proto);
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
