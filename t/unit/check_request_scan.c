/*
 * Unit tests for the request body scan. jansson (JSON_REJECT_DUPLICATES)
 * must read each body the scan reads as an object with the same model,
 * stream flag, user, stream options and traced parameters. Bodies that
 * jansson rejects or might read otherwise must be left to jansson.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "request-scan.h"
#include "yajl-jansson.h"

/* Bodies the scan reads; jansson must find the same facts in them. */
static const char *const agreed[] = {
	"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]}",
	"{\"model\":\"gpt-4o\",\"stream\":true}",
	"{\"stream\":false,\"model\":\"m\"}",
	"{\"model\":\"gpt-4o\",\"user\":\"u-1\",\"temperature\":0.5,\"max_tokens\":100}",
	"  {\"model\" : \"a\\\"b\\\\c\\u00e9\\u20ac\\/\"}\r\n\t",
	"{\"model\":\"caf\xc3\xa9\",\"stream\":null,\"n\":-1e300}",
	"{\"model\":42,\"stream\":\"true\"}",
	"{\"model\":\"m\",\"stream\":1}",
	"{}",
	"{\"model\":\"m\",\"messages\":[{\"model\":\"inner\",\"stream\":true,\"user\":\"x\"}]}",
	"{\"model\":\"m\",\"a\":{\"model\":\"n\"},\"b\":{\"model\":\"o\"}}",
	"{\"model\":\"m\",\"big\":9223372036854775807,\"small\":-9223372036854775807}",
	"{\"model\":\"\",\"user\":\"\"}",
	"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
	"{\"stream_options\":{\"include_usage\":false,\"x\":{\"include_usage\":true}}}",
	"{\"stream_options\":{\"a\":[true],\"include_usage\":true}}",
	"{\"stream_options\":{}}",
	"{\"stream_options\":null}",
	"{\"stream_options\":[{\"include_usage\":true}]}",
	"{\"stream_options\":\"include_usage\"}",
	"{\"o\":{\"stream_options\":{\"include_usage\":true}},\"include_usage\":true}",
	"{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
	"\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\"}}}}}]}",
	/* Traced parameters: integers, reals, and values of other types. */
	"{\"model\":\"m\",\"max_tokens\":50,\"temperature\":0.7,\"top_p\":1,\"top_k\":40,\"seed\":-0,"
	"\"frequency_penalty\":-1.5e-3,\"presence_penalty\":2E2,\"n\":3,\"stop\":\"END\"}",
	"{\"max_completion_tokens\":9223372036854775807,\"max_tokens\":\"many\","
	"\"temperature\":1e-400,\"top_p\":null,\"top_k\":0.5,\"seed\":1.0,\"n\":true}",
	"{\"max_completion_tokens\":\"x\",\"max_tokens\":-9223372036854775807,"
	"\"temperature\":{\"v\":1},\"top_p\":[0.5],\"seed\":1e308,\"n\":-1}",
	"{\"stop\":[\"a\",1,\"\\u0045ND\\n\",null,[\"nested\"],{\"s\":\"x\"},\"\"]}",
	"{\"stop\":[]}",
	"{\"stop\":null,\"n\":1}",
	"{\"stop\":{\"a\":\"b\"}}",
	"{\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\","
	"\"13\",\"14\",\"15\",\"16\",\"17\",\"18\"]}",
	/* The "type" of "response_format", and values that have none. */
	"{\"response_format\":{\"type\":\"json_object\"}}",
	"{\"response_format\":{\"json_schema\":{\"type\":\"object\"},\"type\":\"json_schema\"}}",
	"{\"response_format\":{\"json_schema\":{\"type\":\"object\"}}}",
	"{\"response_format\":\"json\",\"o\":{\"response_format\":{\"type\":\"text\"}}}",
	"{\"response_format\":{\"type\":1}}",
	"{\"response_format\":[{\"type\":\"text\"}]}",
	"{\"stream_options\":{\"type\":\"text\"},\"response_format\":{\"include_usage\":true}}",
	/* The known strings of "modalities"; other items and shapes set no bit. */
	"{\"modalities\":[\"text\",\"audio\"]}",
	"{\"modalities\":[\"image\",\"video\",7,[\"audio\"],{\"text\":1},null]}",
	"{\"modalities\":\"audio\",\"o\":{\"modalities\":[\"text\"]}}",
	"{\"modalities\":[\"\\u0061udio\",\"Text\",\"text \"]}",
	/* Embeddings' parameters. */
	"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":256,\"encoding_format\":\"base64\"}",
	"{\"dimensions\":\"256\",\"encoding_format\":[\"float\"]}",
	"{\"dimensions\":1.5,\"encoding_format\":null,\"o\":{\"encoding_format\":\"float\"}}",
	/* Names of parameters, nested or close, are not parameters. */
	"{\"o\":{\"max_tokens\":5,\"stop\":\"x\"},\"max_tokens_x\":1,\"nn\":2,\"\":1,"
	"\"stops\":[\"s\"],\"messages\":[{\"n\":4,\"stop\":[\"y\"]}]}",
};

/* Bodies jansson must decide: invalid, or read otherwise by yajl. */
static const char *const unsure[] = {
	"",
	"   ",
	"{\"model\":\"m\"",
	"{\"model\":\"m\"}x",
	"{\"model\":\"m\"}{}",
	"{\"model\":\"m\"} \"x",
	"{\"model\":\"m\"}\"}",
	"{\"model\":\"m\"} 1",
	"{\"model\":\"m\"}\n-",
	"{\"model\":\"m\",}",
	"{'model':'m'}",
	"[{\"model\":\"m\"}]",
	"\"model\"",
	"42",
	"null",
	"{\"model\":\"m\",\"model\":\"n\"}",
	"{\"model\":\"m\",\"stream\":true,\"stream\":false}",
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"system\"}]}",
	"{\"model\":\"m\",\"mod\\u0065l\":\"n\"}",
	"{\"model\":\"m\",\"t\":NaN}",
	"{\"model\":\"m\",\"t\":Infinity}",
	"{\"model\":\"m\",\"t\":-Infinity}",
	"\xef\xbb\xbf{\"model\":\"m\"}",
	"{\"model\":\"\xff\"}",
	"{\"model\":\"\xc0\xaf\"}",
	"{\"model\":\"\xed\xa0\x80\"}",
	"{\"model\":\"\xf4\x90\x80\x80\"}",
	"{\"\xc3\":\"m\"}",
	"{\"model\":\"a\\u0000b\"}",
	"{\"a\\u0000\":1,\"model\":\"m\"}",
	"{\"model\":\"\\ud800\"}",
	"{\"model\":\"\\udc00x\"}",
	"{\"model\":\"\\uD83D\"}",
	/* A valid escaped pair too: the check for surrogates is by escape. */
	"{\"model\":\"\\ud83d\\ude00\"}",
	/* yajl refuses the least long long, which jansson takes. */
	"{\"model\":\"m\",\"t\":-9223372036854775808}",
	"{\"model\":\"m\",\f\"stream\":true}",
	"{\"model\":\"m\",\v\"stream\":true}",
	"{\"model\":\"m\"/* c */}",
	"{\"model\":\"m\",\"t\":01}",
	"{\"model\":\"m\",\"t\":1.}",
	"{\"model\":\"m\",\"t\":.5}",
	"{\"model\":\"m\",\"t\":+1}",
	"{\"model\":\"m\",\"t\":1e999}",
	"{\"model\":\"m\",\"t\":99999999999999999999}",
	"{\"model\":\"m\",\"t\":-99999999999999999999}",
	"{\"model\":\"m\",\"t\":\"a\tb\"}",
	"{\"model\":\"m\",\"t\":\"\\x\"}",
	"{\"model\":\"m\",\"t\":tru}",
	"{\"model\":\"m\",\"stop\":\"a\",\"stop\":[\"b\"]}",
	"{\"max_tokens\":1,\"max_tokens\":2}",
	"{\"max_tokens\":1e999}",
	"{\"seed\":-1e999}",
	"{\"max_tokens\":99999999999999999999}",
	"{\"stop\":[\"\\udbff\\udfff\"]}",
	"{\"stop\":\"a\\u0000\"}",
};

static enum tg_scan_result
scan(const char *body, size_t len, struct tg_request_facts *facts)
{
	struct tg_yj_keys keys = {0};
	enum tg_scan_result r = tg_request_scan(body, len, TG_SCAN_PARAMS, &keys, facts);

	tg_yj_keys_free(&keys);
	return r;
}

/* A string member of the top object as jansson reads it, or NULL. */
static const char *
string_of(json_t *root, const char *name)
{
	return json_string_value(json_object_get(root, name));
}

static void
check_same_string(const char *scanned, const char *parsed)
{
	if (parsed == NULL)
		ck_assert_ptr_null(scanned);
	else
		ck_assert_str_eq(scanned, parsed);
}

static const struct tg_request_params none;

/* The scan's parameters against those read from the tree. */
static void
check_same_params(const struct tg_request_params *scanned, const struct tg_request_params *tree)
{
	for (int i = 0; i < TG_PARAM_NUMBERS; i++) {
		const struct tg_body_number *a = &scanned->number[i], *b = &tree->number[i];

		ck_assert_msg(a->kind == b->kind, "parameter %d: kind %d, the tree's %d", i,
		              a->kind, b->kind);
		ck_assert_msg(a->integer == b->integer, "parameter %d: integer %lld, the tree's %lld",
		              i, a->integer, b->integer);
		ck_assert_msg(memcmp(&a->value, &b->value, sizeof(a->value)) == 0,
		              "parameter %d: value %.17g, the tree's %.17g", i, a->value, b->value);
	}
	if (tree->response_format == NULL)
		ck_assert_ptr_null(scanned->response_format);
	else
		ck_assert_pstr_eq(scanned->response_format, tree->response_format);
	if (tree->encoding_format == NULL)
		ck_assert_ptr_null(scanned->encoding_format);
	else
		ck_assert_pstr_eq(scanned->encoding_format, tree->encoding_format);
	ck_assert_uint_eq(scanned->modalities, tree->modalities);
	ck_assert_int_eq(scanned->has_stop, tree->has_stop);
	ck_assert_uint_eq(scanned->n_stop, tree->n_stop);
	for (size_t i = 0; i < tree->n_stop; i++)
		ck_assert_str_eq(scanned->stop[i], tree->stop[i]);
}

/* The scan read body: jansson must read it as an object with the same
 * model, stream flag, user, stream options and emptiness. */
static void
check_agrees(const char *body, size_t len, const struct tg_request_facts *facts)
{
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	struct tg_request_params params;

	ck_assert_msg(json_is_object(root), "jansson refuses a body the scan read: %.*s",
	              (int)len, body);
	check_same_string(facts->model, string_of(root, "model"));
	check_same_string(facts->user, string_of(root, "user"));
	ck_assert_int_eq(facts->stream, json_is_true(json_object_get(root, "stream")));
	ck_assert_int_eq(facts->stream_options, tg_stream_options_of(root));
	ck_assert_int_eq(facts->has_members, json_object_size(root) > 0);
	ck_assert_int_eq(facts->read_params, 1);
	tg_request_params_of(root, &params);
	check_same_params(facts->params != NULL ? facts->params : &none, &params);
	tg_request_params_free(&params);
	json_decref(root);
}

/* Set the numbers of params as tg_request_numbers_of_text() reads them
 * from body. */
static void
numbers_of_text(const char *body, struct tg_request_params *params)
{
	struct tg_yj_keys keys = {0};

	ck_assert_int_eq(tg_request_numbers_of_text(body, strlen(body), &keys, params->number), 0);
	tg_yj_keys_free(&keys);
}

/* Reading the numbers from their text must agree too, for a body whose
 * integers all fit. */
START_TEST(scan_agrees_with_jansson)
{
	const char *body = agreed[_i];
	struct tg_request_facts facts;
	struct tg_request_params from_text;

	ck_assert_msg(scan(body, strlen(body), &facts) == TG_SCAN_READ, "unsure of %s", body);
	check_agrees(body, strlen(body), &facts);

	/* The same parameters but for the numbers, which come from the text. */
	from_text = facts.params != NULL ? *facts.params : none;
	numbers_of_text(body, &from_text);
	check_same_params(&from_text, facts.params != NULL ? facts.params : &none);
	tg_request_facts_free(&facts);
}
END_TEST

/* A body with an integer beyond 64 bits, which jansson reads only with
 * every integer as a real: each parameter that fits is an integer still,
 * and one that does not is a real. */
START_TEST(numbers_of_text_keep_integers_that_fit)
{
	static const char body[] =
		"{\"model\":\"m\",\"seed\":9223372036854775808,\"max_tokens\":50,"
		"\"n\":-9223372036854775808,\"temperature\":1,\"top_p\":0.5e0,"
		"\"top_k\":-99999999999999999999,\"o\":{\"max_completion_tokens\":3},"
		"\"frequency_penalty\":[1]}";
	struct tg_request_params params;
	const struct tg_body_number *p = params.number;

	memset(&params, 0, sizeof(params));
	numbers_of_text(body, &params);
	ck_assert_int_eq(p[TG_PARAM_MAX_TOKENS].kind, TG_NUMBER_INTEGER);
	ck_assert_int_eq(p[TG_PARAM_MAX_TOKENS].integer, 50);
	ck_assert_int_eq(p[TG_PARAM_N].kind, TG_NUMBER_INTEGER);
	ck_assert(p[TG_PARAM_N].integer == -9223372036854775807LL - 1);
	ck_assert_int_eq(p[TG_PARAM_SEED].kind, TG_NUMBER_REAL);
	ck_assert_double_eq(p[TG_PARAM_SEED].value, 9223372036854775808.0);
	ck_assert_int_eq(p[TG_PARAM_TEMPERATURE].kind, TG_NUMBER_INTEGER);
	ck_assert_double_eq(p[TG_PARAM_TEMPERATURE].value, 1.0);
	ck_assert_int_eq(p[TG_PARAM_TOP_P].kind, TG_NUMBER_REAL);
	ck_assert_double_eq(p[TG_PARAM_TOP_P].value, 0.5);
	ck_assert_int_eq(p[TG_PARAM_TOP_K].kind, TG_NUMBER_REAL);
	ck_assert_double_eq(p[TG_PARAM_TOP_K].value, -1e20);
	ck_assert_int_eq(p[TG_PARAM_MAX_COMPLETION_TOKENS].kind, TG_NUMBER_NONE);
	ck_assert_int_eq(p[TG_PARAM_FREQUENCY_PENALTY].kind, TG_NUMBER_NONE);
}
END_TEST

START_TEST(scan_leaves_to_jansson)
{
	const char *body = unsure[_i];
	struct tg_request_facts facts;

	ck_assert_msg(scan(body, strlen(body), &facts) == TG_SCAN_UNSURE, "read %s", body);
	ck_assert_ptr_null(facts.model);
	ck_assert_ptr_null(facts.user);
	ck_assert_int_eq(facts.stream, 0);
}
END_TEST

/* The values themselves, not only the agreement with the tree, so that
 * a reader broken on both sides alike fails too. */
START_TEST(scan_reads_parameters)
{
	static const char body[] =
		"{\"model\":\"m\",\"max_tokens\":50,\"temperature\":0.5,\"top_p\":1,\"top_k\":5,"
		"\"stop\":[\"\\u0045ND\",7,\"S\\/T\"],\"o\":{\"seed\":3},\"n\":2,"
		"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"type\":\"x\"}}}";
	const struct tg_body_number *p;
	struct tg_request_facts facts;

	ck_assert_int_eq(scan(body, sizeof(body) - 1, &facts), TG_SCAN_READ);
	ck_assert_ptr_nonnull(facts.params);
	p = facts.params->number;
	ck_assert_int_eq(p[TG_PARAM_MAX_TOKENS].kind, TG_NUMBER_INTEGER);
	ck_assert_int_eq(p[TG_PARAM_MAX_TOKENS].integer, 50);
	ck_assert_int_eq(p[TG_PARAM_TEMPERATURE].kind, TG_NUMBER_REAL);
	ck_assert_double_eq(p[TG_PARAM_TEMPERATURE].value, 0.5);
	ck_assert_int_eq(p[TG_PARAM_TOP_P].kind, TG_NUMBER_INTEGER);
	ck_assert_double_eq(p[TG_PARAM_TOP_P].value, 1.0);
	ck_assert_int_eq(p[TG_PARAM_TOP_K].kind, TG_NUMBER_INTEGER);
	ck_assert_int_eq(p[TG_PARAM_TOP_K].integer, 5);
	ck_assert_int_eq(p[TG_PARAM_SEED].kind, TG_NUMBER_NONE);
	ck_assert_int_eq(p[TG_PARAM_N].integer, 2);
	ck_assert_int_eq(facts.params->has_stop, 1);
	ck_assert_uint_eq(facts.params->n_stop, 2);
	ck_assert_str_eq(facts.params->stop[0], "END");
	ck_assert_str_eq(facts.params->stop[1], "S/T");
	ck_assert_str_eq(facts.params->response_format, "json_schema");
	tg_request_facts_free(&facts);
}
END_TEST

/* Unless asked, the scan keeps no parameter, and allocates nothing for
 * them. */
/* Each known string of "modalities" sets its bit; others set none. */
START_TEST(scan_reads_modalities)
{
	static const struct {
		const char *body;
		unsigned modalities;
	} cases[] = {
		{"{\"modalities\":[\"text\"]}", TG_MODALITY_TEXT},
		{"{\"modalities\":[\"text\",\"audio\"]}", TG_MODALITY_TEXT | TG_MODALITY_AUDIO},
		{"{\"modalities\":[\"image\",\"video\"]}", TG_MODALITY_IMAGE},
		{"{\"modalities\":[\"\\u0061udio\"]}", TG_MODALITY_AUDIO},
		{"{\"modalities\":[\"Audio\",[\"audio\"]]}", 0},
		{"{\"modalities\":\"audio\",\"model\":\"m\"}", 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tg_request_facts facts;
		unsigned modalities;

		ck_assert_int_eq(scan(cases[i].body, strlen(cases[i].body), &facts), TG_SCAN_READ);
		modalities = facts.params != NULL ? facts.params->modalities : 0;
		ck_assert_msg(modalities == cases[i].modalities, "%s: modalities %#x, expected %#x",
		              cases[i].body, modalities, cases[i].modalities);
		tg_request_facts_free(&facts);
	}
}
END_TEST

START_TEST(scan_skips_parameters_unasked)
{
	static const char body[] = "{\"model\":\"m\",\"max_tokens\":5,\"stop\":[\"x\"],\"n\":2}";
	struct tg_yj_keys keys = {0};
	struct tg_request_facts facts;

	ck_assert_int_eq(tg_request_scan(body, sizeof(body) - 1, 0, &keys, &facts), TG_SCAN_READ);
	ck_assert_str_eq(facts.model, "m");
	ck_assert_int_eq(facts.read_params, 0);
	ck_assert_ptr_null(facts.params);
	tg_request_facts_free(&facts);
	tg_yj_keys_free(&keys);
}
END_TEST

/* A NUL byte in the body, which C strings above cannot hold. */
START_TEST(scan_leaves_nul_byte_to_jansson)
{
	static const char body[] = "{\"model\":\"m\"}\0";
	struct tg_request_facts facts;

	ck_assert_int_eq(scan(body, sizeof(body) - 1, &facts), TG_SCAN_UNSURE);
}
END_TEST

/* Nesting deeper than the scan checks keys in, and objects with more
 * keys than it compares, are left to jansson. */
START_TEST(scan_leaves_deep_and_wide_to_jansson)
{
	char body[1024];
	size_t n = 0;
	struct tg_request_facts facts;

	n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"model\":\"m\",\"a\":");
	for (int i = 0; i < 40; i++)
		body[n++] = '[';
	for (int i = 0; i < 40; i++)
		body[n++] = ']';
	body[n++] = '}';
	ck_assert_int_eq(scan(body, n, &facts), TG_SCAN_UNSURE);

	n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\"");
	for (int i = 0; i < TG_YJ_MAX_KEYS; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"k%d\":%d", i, i);
	body[n++] = '}';
	ck_assert_int_eq(scan(body, n, &facts), TG_SCAN_UNSURE);
}
END_TEST

/* The keys of a closed object no longer count: the same name may come
 * again in a sibling, and the scratch is reused from scan to scan. */
START_TEST(scan_reuses_keys)
{
	static const char body[] = "{\"m\":[{\"a\":1,\"b\":2},{\"a\":1,\"b\":2}],\"model\":\"x\"}";
	struct tg_yj_keys keys = {0};
	struct tg_request_facts facts;

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(tg_request_scan(body, sizeof(body) - 1, TG_SCAN_PARAMS, &keys, &facts),
		                 TG_SCAN_READ);
		ck_assert_str_eq(facts.model, "x");
		tg_request_facts_free(&facts);
	}
	tg_yj_keys_free(&keys);
}
END_TEST

/* Random changes to valid bodies: whatever the scan reads, jansson must
 * read as an object with the same facts. The seed is fixed, so a
 * failure repeats. */
START_TEST(scan_mutations_agree_with_jansson)
{
	static const char bytes[] = "{}[]\",:\\u0dDe1-.+ tfn\f\x80\xc3\xa9\xed\xff";
	unsigned seed = 12345;
	char body[256];

	for (int round = 0; round < 200000; round++) {
		const char *base = agreed[(size_t)round % (sizeof(agreed) / sizeof(agreed[0]))];
		size_t len = strlen(base);
		struct tg_request_facts facts;

		if (len > sizeof(body))
			continue;
		memcpy(body, base, len);
		for (int k = 0; k < 1 + round % 3; k++)
			body[rand_r(&seed) % len] = bytes[rand_r(&seed) % (sizeof(bytes) - 1)];
		if (scan(body, len, &facts) == TG_SCAN_READ)
			check_agrees(body, len, &facts);
		tg_request_facts_free(&facts);
	}
}
END_TEST

/* The string check reads 8 or 4 bytes at a time first, overlapping at
 * the end: a NUL or a byte that is not UTF-8 must count wherever it sits,
 * and any other ASCII passes. */
START_TEST(string_check_finds_bad_byte_anywhere)
{
	/* Around bytes of 0x01 and 0x7f too, the edges of what passes. */
	static const unsigned char fills[] = {'a', 0x01, 0x7f};
	unsigned char s[24];

	for (size_t f = 0; f < sizeof(fills); f++) {
		for (size_t len = 1; len <= sizeof(s); len++) {
			memset(s, fills[f], len);
			ck_assert_int_eq(tg_yj_string_ok(s, len), 1);
			for (size_t at = 0; at < len; at++) {
				memset(s, fills[f], len);
				s[at] = '\0';
				ck_assert_int_eq(tg_yj_string_ok(s, len), 0);
				s[at] = 0xff;
				ck_assert_int_eq(tg_yj_string_ok(s, len), 0);
				s[at] = 0x80;
				ck_assert_int_eq(tg_yj_string_ok(s, len), 0);
				s[at] = '"';
				ck_assert_int_eq(tg_yj_string_ok(s, len), 1);
				s[at] = '\n';
				ck_assert_int_eq(tg_yj_string_ok(s, len), 1);
			}
		}
	}
	ck_assert_int_eq(tg_yj_string_ok((const unsigned char *)"caf\xc3\xa9 au lait", 13), 1);
}
END_TEST

/* tg_yj_number() reads every JSON number as strtoll() and strtod() do,
 * through its short-integer path as through the general one. */
START_TEST(number_text_read_as_libc_reads_it)
{
	static const struct {
		const char *text;
		enum tg_yj_number kind;
		long long integer;
		double real;
	} cases[] = {
		{"0", TG_YJ_INTEGER, 0, 0}, {"-0", TG_YJ_INTEGER, 0, 0},
		{"7", TG_YJ_INTEGER, 7, 0}, {"-42", TG_YJ_INTEGER, -42, 0},
		{"999999999999999999", TG_YJ_INTEGER, 999999999999999999LL, 0},
		{"-999999999999999999", TG_YJ_INTEGER, -999999999999999999LL, 0},
		{"9223372036854775807", TG_YJ_INTEGER, 9223372036854775807LL, 0},
		{"-9223372036854775808", TG_YJ_INTEGER, -9223372036854775807LL - 1, 0},
		{"9223372036854775808", TG_YJ_BIG_INTEGER, 0, 9223372036854775808.0},
		{"1.5", TG_YJ_REAL, 0, 1.5}, {"-1E2", TG_YJ_REAL, 0, -100.0},
		{"1e3", TG_YJ_REAL, 0, 1000.0}, {"1e999", TG_YJ_OVERFLOW, 0, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long integer = -1;
		double real = -1;
		enum tg_yj_number kind = tg_yj_number(cases[i].text, strlen(cases[i].text),
		                                      &integer, &real);

		ck_assert_msg(kind == cases[i].kind, "%s: kind %d", cases[i].text, (int)kind);
		if (kind == TG_YJ_INTEGER)
			ck_assert_msg(integer == cases[i].integer, "%s: %lld", cases[i].text, integer);
		else if (kind != TG_YJ_OVERFLOW)
			ck_assert_msg(real == cases[i].real, "%s: %g", cases[i].text, real);
	}
}
END_TEST

static Suite *
request_scan_suite(void)
{
	Suite *s = suite_create("request_scan");
	TCase *tc = tcase_create("scan");
	TCase *mutations = tcase_create("mutations");

	tcase_add_loop_test(tc, scan_agrees_with_jansson, 0,
	                    (int)(sizeof(agreed) / sizeof(agreed[0])));
	tcase_add_loop_test(tc, scan_leaves_to_jansson, 0, (int)(sizeof(unsure) / sizeof(unsure[0])));
	tcase_add_test(tc, scan_reads_parameters);
	tcase_add_test(tc, numbers_of_text_keep_integers_that_fit);
	tcase_add_test(tc, number_text_read_as_libc_reads_it);
	tcase_add_test(tc, string_check_finds_bad_byte_anywhere);
	tcase_add_test(tc, scan_reads_modalities);
	tcase_add_test(tc, scan_skips_parameters_unasked);
	tcase_add_test(tc, scan_leaves_nul_byte_to_jansson);
	tcase_add_test(tc, scan_leaves_deep_and_wide_to_jansson);
	tcase_add_test(tc, scan_reuses_keys);
	suite_add_tcase(s, tc);

	/* Under AddressSanitizer the random bodies take 4 to 5 s of CPU, over
	 * Check's default timeout of 4 s, which only guards against a hang. */
	tcase_set_timeout(mutations, 120);
	tcase_add_test(mutations, scan_mutations_agree_with_jansson);
	suite_add_tcase(s, mutations);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(request_scan_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
