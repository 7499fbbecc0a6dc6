/*
 * Texts of response bodies: the yajl reader (tg_text_read_response) against
 * the tree walk (tg_text_collect_response) over recorded and crafted
 * bodies, and the same reader in the pass of the reply digest against the
 * two read apart. Then the scan that needs no tree, and
 * tg_filter_response_body() on top of them.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "filter-args.h"
#include "filter-helpers.h"
#include "filter-request.h"
#include "filter.h"
#include "fixture.h"
#include "relay.h"
#include "reply-digest.h"
#include "request.h"
#include "trace-t.h"
#include "trace.h"

#define MAX_TEXTS 64

/* Texts as read, copied out of the reader's callback. */
struct texts {
	size_t n;
	char *items[MAX_TEXTS];
	size_t lens[MAX_TEXTS];
	size_t stop_after;      /* stop the read after this many; 0: never */
};

static void
texts_free(struct texts *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->items[i]);
	t->n = 0;
}

static int
keep_text(void *arg, const char *text, size_t len)
{
	struct texts *t = arg;

	ck_assert_uint_lt(t->n, MAX_TEXTS);
	t->items[t->n] = malloc(len + 1);
	ck_assert_ptr_nonnull(t->items[t->n]);
	memcpy(t->items[t->n], text, len);
	t->items[t->n][len] = '\0';
	t->lens[t->n++] = len;
	return t->stop_after != 0 && t->n >= t->stop_after;
}

/* A buffer with len bytes of body in one segment, or in two when cut is
 * between 1 and len - 1. */
static struct evbuffer *
body_buffer(const char *body, size_t len, size_t cut)
{
	struct evbuffer *buf = evbuffer_new();

	ck_assert_ptr_nonnull(buf);
	if (cut > 0 && cut < len) {
		/* References are never merged, so each is a segment. */
		ck_assert_int_eq(evbuffer_add_reference(buf, body, cut, NULL, NULL), 0);
		ck_assert_int_eq(evbuffer_add_reference(buf, body + cut, len - cut, NULL, NULL), 0);
	} else {
		ck_assert_int_eq(evbuffer_add(buf, body, len), 0);
	}
	return buf;
}

/* Read len bytes of body with the yajl reader, from body_buffer(). */
static int
read_texts(const char *body, size_t len, size_t cut, struct texts *out)
{
	struct evbuffer *buf = body_buffer(body, len, cut);
	int rc = tg_text_read_response(buf, keep_text, out);

	evbuffer_free(buf);
	return rc;
}

static int
keep_value_text(void *arg, const char *text, size_t len, size_t end)
{
	(void)end;
	return keep_text(arg, text, len);
}

/* Keep the texts the regex filters read in a text the tree walk
 * collected: the values of a tool call's arguments one by one when they
 * are JSON, or else the arguments and their escaped strings. */
static void
keep_collected(struct texts *out, json_t *value, int inner_json)
{
	const char *text = json_string_value(value);
	size_t len = json_string_length(value);

	if (inner_json && tg_args_values(text, len, keep_value_text, keep_text, out) !=
	                          TG_ARGS_NOT_JSON)
		return;
	keep_text(out, text, len);
	if (inner_json)
		tg_args_read(text, len, keep_text, out);
}

/* The tree walk's texts of body, or -1 when jansson rejects it. */
static int
collect_texts(const char *body, size_t len, struct texts *out)
{
	json_t *json = json_loadb(body, len, 0, NULL);
	struct tg_text_list list = {0};

	if (json == NULL)
		return -1;
	ck_assert_int_eq(tg_text_collect_response(json, &list), 0);
	for (size_t i = 0; i < list.n; i++)
		keep_collected(out, list.items[i], list.kinds[i] == TG_TEXT_ARGUMENTS);
	tg_text_list_free(&list);
	json_decref(json);
	return 0;
}

static int
compare_texts(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether a and b hold the same texts, in any order. The tree walk goes
 * by the table's order of members, the reader by the order of the text. */
static void
assert_same_texts(struct texts *a, struct texts *b, const char *what)
{
	ck_assert_msg(a->n == b->n, "%s: %zu texts against %zu", what, a->n, b->n);
	qsort(a->items, a->n, sizeof(a->items[0]), compare_texts);
	qsort(b->items, b->n, sizeof(b->items[0]), compare_texts);
	for (size_t i = 0; i < a->n; i++)
		ck_assert_msg(strcmp(a->items[i], b->items[i]) == 0, "%s: text \"%s\" against \"%s\"",
		              what, a->items[i], b->items[i]);
}

/* --- recorded bodies ---------------------------------------------------- */

typedef void fixture_check_fn(const char *name, const char *body, size_t len, void *arg);

/* Call check on the response body of each recorded fixture. Returns how
 * many there are. */
static size_t
check_fixtures(fixture_check_fn *check, void *arg)
{
	DIR *dir = opendir(TG_FIXTURE_DIR);
	struct fixture_cache *cache = NULL;
	struct dirent *entry;
	size_t n_fixtures = 0;

	ck_assert_msg(dir != NULL, "cannot open %s", TG_FIXTURE_DIR);
	while ((entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		char name[128], err[512];
		const struct fixture *f;

		if (len < 6 || strcmp(entry->d_name + len - 5, ".yaml") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), entry->d_name);
		f = fixture_get(&cache, TG_FIXTURE_DIR, name, err, sizeof(err));
		ck_assert_msg(f != NULL, "%s", err);
		check(name, f->body, f->body_len, arg);
		n_fixtures++;
	}
	closedir(dir);
	fixture_cache_free(cache);
	return n_fixtures;
}

/* The reader against the tree walk on one body; adds its texts to *arg. */
static void
reader_agrees_on(const char *name, const char *body, size_t len, void *arg)
{
	size_t *n_texts = arg;
	struct texts read = {0}, collected = {0};
	int read_rc = read_texts(body, len, 0, &read);
	int collect_rc = collect_texts(body, len, &collected);

	ck_assert_msg((read_rc == 0) == (collect_rc == 0),
	              "%s: the reader returns %d, jansson %s it", name, read_rc,
	              collect_rc == 0 ? "parses" : "rejects");
	assert_same_texts(&read, &collected, name);
	*n_texts += read.n;
	texts_free(&read);
	texts_free(&collected);
}

START_TEST(reader_agrees_on_fixtures)
{
	size_t n_texts = 0;
	size_t n_fixtures = check_fixtures(reader_agrees_on, &n_texts);

	/* The recorded set: chat, completion, tools, errors, embeddings and
	 * streams. Nine of its JSON responses carry one text each. */
	ck_assert_uint_ge(n_fixtures, 17);
	ck_assert_uint_ge(n_texts, 9);
}
END_TEST

/* --- crafted bodies ----------------------------------------------------- */

struct text_case {
	const char *name;
	const char *body;
	const char *read[20];           /* by the reader, in the text's order */
	const char *collected[20];      /* by the tree walk, in its order */
};

static const struct text_case cases[] = {
	{"every kind of text",
	 "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"C\","
	 " \"refusal\": \"R\", \"tool_calls\": [{\"id\": \"x\", \"type\": \"function\","
	 " \"function\": {\"name\": \"f\", \"arguments\": \"A1\"}}, {\"function\":"
	 " {\"arguments\": \"A2\"}}], \"function_call\": {\"name\": \"g\", \"arguments\":"
	 " \"F\"}}, \"text\": \"T\"}]}",
	 {"C", "R", "A1", "A2", "F", "T"}, {"C", "R", "A1", "A2", "F", "T"}},
	{"content parts",
	 "{\"choices\": [{\"message\": {\"content\": [{\"type\": \"text\", \"text\": \"P1\"},"
	 " {\"type\": \"refusal\", \"refusal\": \"P2\"}, {\"type\": \"image_url\","
	 " \"image_url\": {\"url\": \"U\"}}, \"bare\", [{\"text\": \"nested\"}],"
	 " {\"type\": \"output_text\", \"text\": \"P3\", \"annotations\": [{\"text\": \"no\"}]}]}}]}",
	 {"P1", "P2", "P3"}, {"P1", "P2", "P3"}},
	{"escapes decoded",
	 "{\"choices\": [{\"message\": {\"content\": \"caf\\u00e9\\nline \\\"q\\\" \\\\ \\/"
	 " \\ud83d\\ude00\\t\"}}]}",
	 {"caf\xc3\xa9\nline \"q\" \\ / \xf0\x9f\x98\x80\t"},
	 {"caf\xc3\xa9\nline \"q\" \\ / \xf0\x9f\x98\x80\t"}},
	{"escaped keys",
	 "{\"ch\\u006fices\": [{\"m\\u0065ssage\": {\"c\\u006fntent\": \"K\"}}]}",
	 {"K"}, {"K"}},
	{"members in another order",
	 "{\"choices\": [{\"text\": \"T\", \"message\": {\"tool_calls\": [{\"function\":"
	 " {\"arguments\": \"A\"}}], \"content\": \"C\"}}]}",
	 {"T", "A", "C"}, {"C", "A", "T"}},
	{"member given twice",
	 "{\"choices\": [{\"message\": {\"content\": \"first\", \"content\": \"second\"}}]}",
	 {"first", "second"}, {"second"}},
	{"choices given twice",
	 "{\"choices\": [{\"text\": \"one\"}], \"choices\": [{\"text\": \"two\"}]}",
	 {"one", "two"}, {"two"}},
	{"values that are not texts, and objects read as data",
	 "{\"choices\": [{\"message\": {\"content\": null, \"refusal\": false,"
	 " \"tool_calls\": {\"function\": {\"arguments\": \"not in an array\"}},"
	 " \"function_call\": \"str\"}, \"text\": 12}, {\"message\": \"str\"}, 5, null,"
	 " \"text\", [\"text\"], {\"message\": {\"content\": {\"text\": \"object\"}}},"
	 " {\"message\": {\"tool_calls\": [{\"function\": {\"arguments\": {\"a\": \"b\"}}},"
	 " {\"function\": \"f\"}, \"call\"]}}, {\"text\": [\"t\"]}]}",
	 {"object", "a", "b"}, {"object", "a", "b"}},
	{"choices not an array",
	 "{\"choices\": {\"message\": {\"content\": \"x\"}}}",
	 {NULL}, {NULL}},
	{"top level not an object",
	 "[{\"choices\": [{\"text\": \"x\"}]}]",
	 {NULL}, {NULL}},
	{"texts in other places",
	 "{\"message\": {\"content\": \"top\"}, \"text\": \"top\", \"content\": \"top\","
	 " \"choices\": [{\"delta\": {\"content\": \"d\"}, \"logprobs\": {\"content\":"
	 " [{\"token\": \"t\", \"text\": \"l\"}]}, \"message\": {\"message\": {\"content\":"
	 " \"deep\"}, \"choices\": [{\"text\": \"deep\"}], \"audio\": {\"data\": \"no\"}}}],"
	 " \"usage\": {\"text\": \"u\"}}",
	 {NULL}, {NULL}},
	{"error messages of both APIs",
	 "{\"type\": \"error\", \"error\": {\"type\": \"invalid_request_error\","
	 " \"message\": \"M\", \"param\": \"P\", \"code\": null, \"details\":"
	 " {\"message\": \"no\"}}}",
	 {"M", "P"}, {"M", "P"}},
	{"error given as a string",
	 "{\"error\": \"plain\", \"message\": \"no\"}",
	 {"plain"}, {"plain"}},
	{"message members a block removes",
	 "{\"choices\": [{\"message\": {\"content\": \"C\", \"reasoning\": {\"text\": \"R1\","
	 " \"parts\": [\"R2\"]}, \"reasoning_content\": [\"R3\"], \"audio\": {\"id\": \"no\","
	 " \"data\": \"no\", \"expires_at\": 1, \"transcript\": \"AU\"}, \"reasoning_details\":"
	 " [{\"type\": \"reasoning.text\", \"text\": \"D1\", \"signature\": \"no\"},"
	 " {\"type\": \"reasoning.summary\", \"summary\": \"D2\"}, {\"type\":"
	 " \"reasoning.encrypted\", \"data\": \"no\"}], \"annotations\": [{\"type\":"
	 " \"url_citation\", \"url_citation\": {\"url\": \"no\", \"title\": \"AT\","
	 " \"start_index\": 0}}]}}]}",
	 {"C", "R1", "R2", "R3", "AU", "D1", "D2", "AT"},
	 {"C", "R3", "R1", "R2", "AU", "D1", "D2", "AT"}},
	{"tool outputs",
	 "{\"output\": [{\"type\": \"shell_call_output\", \"call_id\": \"no\", \"output\":"
	 " [{\"stdout\": \"O1\", \"stderr\": \"E1\", \"outcome\": {\"type\": \"exit\","
	 " \"exit_code\": 0}}]}, {\"type\": \"image_generation_call\", \"result\": \"no\","
	 " \"revised_prompt\": \"RP\"}], \"content\": [{\"type\":"
	 " \"text_editor_code_execution_tool_result\", \"tool_use_id\": \"no\", \"content\":"
	 " {\"type\": \"text_editor_code_execution_view_result\", \"file_type\": \"text\","
	 " \"content\": \"V\", \"num_lines\": 1}}, {\"type\":"
	 " \"text_editor_code_execution_tool_result\", \"content\": {\"type\":"
	 " \"text_editor_code_execution_str_replace_result\", \"lines\": [\"L1\", \"L2\"]}},"
	 " {\"type\": \"bash_code_execution_tool_result\", \"content\": {\"type\":"
	 " \"bash_code_execution_result\", \"stdout\": \"O2\", \"stderr\": \"E2\","
	 " \"return_code\": 0, \"content\": []}}]}",
	 {"O1", "E1", "RP", "V", "L1", "L2", "O2", "E2"},
	 {"V", "L1", "L2", "O2", "E2", "O1", "E1", "RP"}},
	{"anthropic message",
	 "{\"id\": \"msg_1\", \"type\": \"message\", \"role\": \"assistant\", \"content\": ["
	 "{\"type\": \"thinking\", \"thinking\": \"H\", \"signature\": \"sig\"},"
	 " {\"type\": \"redacted_thinking\", \"data\": \"D\"},"
	 " {\"type\": \"text\", \"text\": \"T\", \"citations\": [{\"cited_text\": \"C\"}]},"
	 " {\"type\": \"tool_use\", \"id\": \"tu\", \"name\": \"f\", \"input\": {\"q\": \"I1\","
	 " \"opts\": {\"list\": [\"I2\", 3, {\"deep\": \"I3\"}], \"n\": 1.5, \"b\": true,"
	 " \"z\": null, \"k\\u0065y\": \"I4\"}}}], \"stop_reason\": \"end_turn\","
	 " \"usage\": {\"input_tokens\": 1}}",
	 {"H", "T", "C", "q", "I1", "opts", "list", "I2", "3", "deep", "I3", "n", "1.5", "b",
	  "z", "key", "I4"},
	 {"H", "T", "C", "q", "I1", "opts", "list", "I2", "3", "deep", "I3", "n", "1.5", "b",
	  "z", "key", "I4"}},
	{"anthropic tool results and input values",
	 "{\"content\": [{\"type\": \"tool_result\", \"content\": \"R1\"},"
	 " {\"type\": \"tool_result\", \"content\": [{\"type\": \"text\", \"text\": \"R2\"},"
	 " {\"type\": \"image\", \"source\": {\"type\": \"base64\", \"data\": \"no\"}}, \"bare\","
	 " {\"type\": \"tool_result\", \"content\": \"nested\"}]},"
	 " {\"type\": \"tool_use\", \"input\": \"I\"}, {\"input\": [[\"V1\"], {\"k\": {\"k\": \"V2\"}}]},"
	 " \"bare\", [{\"text\": \"nested\"}]]}",
	 {"R1", "R2", "nested", "I", "V1", "k", "k", "V2"},
	 {"R1", "R2", "nested", "I", "V1", "k", "k", "V2"}},
	{"anthropic values that are not texts, and a block as an object",
	 "{\"content\": {\"text\": \"object\"}, \"system\": \"request only\", \"messages\":"
	 " [{\"content\": \"request only\"}], \"type\": \"message\", \"stop_sequence\": \"s\"}",
	 {"object"}, {"object"}},
	{"responses api output",
	 "{\"object\": \"response\", \"id\": \"no\", \"instructions\": \"no\", \"output\": ["
	 "{\"type\": \"reasoning\", \"summary\": [{\"type\": \"summary_text\", \"text\": \"S\"}],"
	 " \"encrypted_content\": \"no\"}, {\"type\": \"message\", \"id\": \"no\", \"content\": ["
	 "{\"type\": \"output_text\", \"text\": \"T\", \"annotations\": [{\"type\":"
	 " \"url_citation\", \"url\": \"no\", \"title\": \"A\", \"start_index\": 0}]},"
	 " {\"type\": \"refusal\", \"refusal\": \"R\"}]}, {\"type\": \"function_call\","
	 " \"name\": \"no\", \"call_id\": \"no\", \"arguments\": \"F\"},"
	 " {\"type\": \"custom_tool_call\", \"name\": \"no\", \"input\": \"C\"}],"
	 " \"output_text\": \"O\"}",
	 {"S", "T", "A", "R", "F", "C", "O"}, {"S", "T", "A", "R", "F", "C", "O"}},
	{"several choices and empty texts",
	 "{\"choices\": [{\"message\": {\"content\": \"a\"}}, {\"message\": {\"content\": \"\"}},"
	 " {\"text\": \"c\"}]}",
	 {"a", "", "c"}, {"a", "", "c"}},
};

static void
assert_texts(const struct texts *got, const char *const *want, const char *what)
{
	size_t n = 0;

	while (n < 20 && want[n] != NULL)
		n++;
	ck_assert_msg(got->n == n, "%s: %zu texts, expected %zu", what, got->n, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(got->items[i], want[i]) == 0, "%s: text %zu is \"%s\", "
		              "expected \"%s\"", what, i, got->items[i], want[i]);
}

START_TEST(reader_and_tree_on_crafted_bodies)
{
	const struct text_case *c = &cases[_i];
	struct texts read = {0}, collected = {0};

	ck_assert_int_eq(read_texts(c->body, strlen(c->body), 0, &read), 0);
	ck_assert_int_eq(collect_texts(c->body, strlen(c->body), &collected), 0);
	assert_texts(&read, c->read, c->name);
	assert_texts(&collected, c->collected, c->name);
	texts_free(&read);
	texts_free(&collected);
}
END_TEST

/* A body in two segments, cut at every byte: inside keys, escapes and
 * the UTF-8 of a surrogate pair. */
START_TEST(reader_takes_body_in_segments)
{
	const struct text_case *c = &cases[_i];
	size_t len = strlen(c->body);

	for (size_t cut = 1; cut < len; cut++) {
		struct texts read = {0};
		char what[128];

		snprintf(what, sizeof(what), "%s, cut at %zu", c->name, cut);
		ck_assert_int_eq(read_texts(c->body, len, cut, &read), 0);
		assert_texts(&read, c->read, what);
		texts_free(&read);
	}
}
END_TEST

START_TEST(reader_stops_when_asked)
{
	const char *body = cases[0].body;
	struct texts read = {.stop_after = 2};

	ck_assert_int_eq(read_texts(body, strlen(body), 0, &read), 1);
	ck_assert_uint_eq(read.n, 2);
	ck_assert_str_eq(read.items[1], "R");
	texts_free(&read);
}
END_TEST

START_TEST(reader_rejects_invalid_json)
{
	static const char *const bodies[] = {
		"{\"choices\": [{\"text\": \"a\"}",
		"{\"choices\": [{\"text\": \"a\"}]} trailing",
		"{\"choices\": [{\"text\": \"a\",}]}",
		"data: {\"choices\": []}\n\n",
		"{\"choices\": [{\"text\": \"\xff\"}]}",
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct texts read = {0};

		ck_assert_msg(read_texts(bodies[i], strlen(bodies[i]), 0, &read) == -1,
		              "body %zu read as JSON", i);
		texts_free(&read);
	}
}
END_TEST

/* The reader gives a tool input's numbers by their value, an integer
 * beyond 64 bits too, which yajl's own conversion rejects. */
START_TEST(reader_reads_numbers_by_value)
{
	static const char body[] = "{\"content\": [{\"type\": \"tool_use\", \"input\":"
	                           " {\"n\": 18446744073709551617, \"m\": 4.111111111111111e15}}]}";
	static const char *const want[] = {"n", "18446744073709551616", "m", "4111111111111111"};
	struct texts read = {0};

	ck_assert_int_eq(read_texts(body, strlen(body), 0, &read), 0);
	ck_assert_uint_eq(read.n, 4);
	for (size_t i = 0; i < 4; i++)
		ck_assert_str_eq(read.items[i], want[i]);
	texts_free(&read);
}
END_TEST

/* yajl reads some texts that jansson rejects; the reader still gives
 * their texts, NUL byte included. */
START_TEST(reader_takes_nul_escape_jansson_rejects)
{
	static const char body[] = "{\"choices\": [{\"text\": \"a\\u0000b\"}]}";
	struct texts read = {0}, collected = {0};

	ck_assert_int_eq(read_texts(body, strlen(body), 0, &read), 0);
	ck_assert_uint_eq(read.n, 1);
	ck_assert_uint_eq(read.lens[0], 3);
	ck_assert_mem_eq(read.items[0], "a\0b", 3);
	ck_assert_int_eq(collect_texts(body, strlen(body), &collected), -1);
	texts_free(&read);
}
END_TEST

/* --- the reader in the pass of the digest -------------------------------- */

/* yajl handles made for a body, counted by wrapping yajl_alloc() at link
 * time (-Wl,--wrap=yajl_alloc), so that a test can tell how often a body
 * was parsed. The parse of a tool call's arguments inside it
 * (tg_args_values()) follows no container, and is not counted. */
static unsigned n_parses;

yajl_handle __real_yajl_alloc(const yajl_callbacks *callbacks, yajl_alloc_funcs *afs,
                              void *ctx);
yajl_handle __wrap_yajl_alloc(const yajl_callbacks *callbacks, yajl_alloc_funcs *afs,
                              void *ctx);

yajl_handle
__wrap_yajl_alloc(const yajl_callbacks *callbacks, yajl_alloc_funcs *afs, void *ctx)
{
	if (callbacks->yajl_start_map != NULL)
		n_parses++;
	return __real_yajl_alloc(callbacks, afs, ctx);
}

static int
same_string(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static void
assert_same_detail(const struct tg_reply_detail *a, const struct tg_reply_detail *b,
                   const char *what)
{
	ck_assert_msg(a->usable == b->usable, "%s: detail usable %d against %d", what,
	              a->usable, b->usable);
	ck_assert_msg(same_string(a->id, b->id), "%s: id differs", what);
	ck_assert_msg(same_string(a->model, b->model), "%s: model differs", what);
	ck_assert_msg(a->n_choices == b->n_choices, "%s: %zu choices against %zu", what,
	              a->n_choices, b->n_choices);
	for (size_t i = 0; i < a->n_choices; i++) {
		const struct tg_reply_choice *ca = &a->choices[i], *cb = &b->choices[i];

		ck_assert_msg(ca->position == cb->position && ca->index == cb->index &&
		              ca->text == cb->text && ca->content == cb->content &&
		              ca->tool_calls == cb->tool_calls, "%s: choice %zu differs", what, i);
		ck_assert_msg(same_string(ca->finish_reason, cb->finish_reason),
		              "%s: finish_reason of choice %zu differs", what, i);
	}
	ck_assert_msg(a->usage_integer == b->usage_integer, "%s: usage counts differ", what);
	for (int c = 0; c < TG_USAGE_COUNTS; c++)
		ck_assert_msg(!(a->usage_integer >> c & 1u) || a->usage[c] == b->usage[c],
		              "%s: usage count %d differs", what, c);
}

/*
 * Read len bytes of body in one pass (tg_text_read_response_digest) and
 * with the text reader and the digest apart, from body_buffer(), and
 * assert that both give the same result, texts in the same order, digest
 * and detail. Returns the result of the one pass, and adds its texts to
 * *n_texts unless that is NULL.
 */
static int
assert_one_pass_agrees(const char *body, size_t len, size_t cut, const char *what,
                       size_t *n_texts)
{
	struct evbuffer *buf = body_buffer(body, len, cut);
	struct texts one = {0}, apart = {0};
	struct tg_reply_digest d_one, d_apart;
	struct tg_reply_detail x_one, x_apart;
	unsigned parses = n_parses;
	int rc = tg_text_read_response_digest(buf, keep_text, &one, &d_one, &x_one);
	int text_rc, digest_rc;

	ck_assert_msg(n_parses == parses + 1, "%s: %u parses in one pass", what,
	              n_parses - parses);
	text_rc = tg_text_read_response(buf, keep_text, &apart);
	digest_rc = tg_reply_digest_detail_buffer(&d_apart, &x_apart, buf);

	ck_assert_msg(rc == digest_rc, "%s: one pass returns %d, the digest %d", what, rc,
	              digest_rc);
	ck_assert_msg(memcmp(&d_one, &d_apart, sizeof(d_one)) == 0, "%s: digests differ", what);
	assert_same_detail(&x_one, &x_apart, what);

	/* On -1 the texts need not agree: the reader may take the body. */
	if (rc != -1) {
		ck_assert_msg(rc == text_rc, "%s: one pass returns %d, the reader %d", what, rc,
		              text_rc);
		ck_assert_msg(one.n == apart.n, "%s: %zu texts against %zu", what, one.n, apart.n);
	}
	for (size_t i = 0; rc != -1 && i < one.n; i++)
		ck_assert_msg(one.lens[i] == apart.lens[i] &&
		              memcmp(one.items[i], apart.items[i], one.lens[i]) == 0,
		              "%s: text %zu is \"%s\" against \"%s\"", what, i, one.items[i],
		              apart.items[i]);

	if (n_texts != NULL)
		*n_texts += one.n;
	tg_reply_detail_free(&x_one);
	tg_reply_detail_free(&x_apart);
	texts_free(&one);
	texts_free(&apart);
	evbuffer_free(buf);
	return rc;
}

static void
one_pass_agrees_on(const char *name, const char *body, size_t len, void *arg)
{
	assert_one_pass_agrees(body, len, 0, name, arg);
}

START_TEST(one_pass_agrees_on_fixtures)
{
	size_t n_texts = 0;

	ck_assert_uint_ge(check_fixtures(one_pass_agrees_on, &n_texts), 17);
	ck_assert_uint_ge(n_texts, 9);
}
END_TEST

/* A body in two segments, cut at every byte. */
START_TEST(one_pass_agrees_on_crafted_bodies)
{
	const struct text_case *c = &cases[_i];
	size_t len = strlen(c->body);

	for (size_t cut = 0; cut < len; cut++) {
		char what[128];

		snprintf(what, sizeof(what), "%s, cut at %zu", c->name, cut);
		ck_assert_int_eq(assert_one_pass_agrees(c->body, len, cut, what, NULL), 0);
	}
}
END_TEST

/* Bodies that the digest and its detail read beyond texts, and bodies
 * that yajl, jansson or both reject. */
static const struct {
	const char *body;
	int rc;
} digest_bodies[] = {
	{"{\"id\": \"chatcmpl-1\", \"model\": \"gpt-4o\", \"choices\": [{\"index\": 0,"
	 " \"message\": {\"content\": \"hi\", \"tool_calls\": [{\"function\": {\"arguments\":"
	 " \"{}\"}}]}, \"finish_reason\": \"stop\", \"logprobs\": null}], \"usage\":"
	 " {\"prompt_tokens\": 12, \"completion_tokens\": 3.5, \"total_tokens\": -1,"
	 " \"prompt_tokens_details\": {\"cached_tokens\": 4}, \"completion_tokens_details\":"
	 " {\"reasoning_tokens\": true}}}\n", 0},
	{"{\"type\": \"message\", \"error\": {\"message\": \"x\"}, \"choices\": [1, \"a\","
	 " {\"text\": \"t\", \"index\": 7, \"index\": \"8\"}], \"message\": {\"usage\":"
	 " {\"input_tokens\": 5}}, \"usage\": null}", 0},
	{"{\"choices\": [{\"text\": \"a\\u0000b\"}], \"model\": \"m\"}", 0},
	{"{\"choices\": [{\"text\": \"a\"}]}\f", -1},
	{"{\"choices\": [{\"text\": \"a\"}]} trailing", -1},
	{"{\"choices\": [{\"text\": \"a\"}", -1},
	{"data: {\"choices\": []}\n\n", -1},
	{"", -1},
};

START_TEST(one_pass_agrees_on_other_bodies)
{
	const char *body = digest_bodies[_i].body;
	size_t len = strlen(body);

	for (size_t cut = 0; cut == 0 || cut < len; cut++) {
		char what[64];

		snprintf(what, sizeof(what), "body %d, cut at %zu", _i, cut);
		ck_assert_int_eq(assert_one_pass_agrees(body, len, cut, what, NULL),
		                 digest_bodies[_i].rc);
	}
}
END_TEST

/* A stopped read leaves no digest: it would be the digest of part of the
 * body. */
START_TEST(one_pass_stops_without_digest)
{
	struct evbuffer *buf = body_buffer(digest_bodies[0].body, strlen(digest_bodies[0].body), 0);
	struct texts read = {.stop_after = 1};
	struct tg_reply_digest d, zero;
	struct tg_reply_detail x;

	memset(&zero, 0, sizeof(zero));
	ck_assert_int_eq(tg_text_read_response_digest(buf, keep_text, &read, &d, &x), 1);
	ck_assert_uint_eq(read.n, 1);
	ck_assert_str_eq(read.items[0], "hi");
	ck_assert_mem_eq(&d, &zero, sizeof(d));
	ck_assert_int_eq(x.usable, 0);
	ck_assert_ptr_null(x.id);
	ck_assert_uint_eq(x.n_choices, 0);
	texts_free(&read);
	evbuffer_free(buf);
}
END_TEST

/* A body with a text after containers nested deeper than jansson reads,
 * which is text the digest rejects and the reader takes. */
static char *
deep_body(const char *text)
{
	size_t depth = 2100;
	char *body = malloc(2 * depth + strlen(text) + 64);
	size_t n = 0;

	ck_assert_ptr_nonnull(body);
	n += (size_t)sprintf(body, "{\"x\": ");
	for (size_t i = 0; i < depth; i++)
		body[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		body[n++] = ']';
	sprintf(body + n, ", \"choices\": [{\"text\": \"%s\"}]}", text);
	return body;
}

START_TEST(one_pass_misses_texts_past_depth)
{
	char *body = deep_body("jane@example.com");
	struct evbuffer *buf = body_buffer(body, strlen(body), 0);
	struct texts one = {0}, apart = {0};
	struct tg_reply_digest d;

	ck_assert_int_eq(tg_text_read_response_digest(buf, keep_text, &one, &d, NULL), -1);
	ck_assert_uint_eq(one.n, 0);
	ck_assert_int_eq(tg_text_read_response(buf, keep_text, &apart), 0);
	ck_assert_uint_eq(apart.n, 1);
	texts_free(&apart);
	evbuffer_free(buf);
	free(body);
}
END_TEST

/* --- the scan without a tree -------------------------------------------- */

static const char *const email_rule[] = {"preset:email", NULL};
static const char *const runaway_rule[] = {"nested=^(a|a)+$", NULL};

START_TEST(text_matches_response_filters_only)
{
	struct tg_filter *in = make_filter("in", TG_ACTION_MASK, TG_SIDE_REQUEST, email_rule);
	struct tg_filter *out = make_filter("out", TG_ACTION_FLAG, TG_SIDE_RESPONSE, email_rule);
	const struct tg_filter *both[] = {in, out};
	struct tg_filter_chain chain = {1, both};
	struct tg_scan sc;
	static const char text[] = "write to jane@example.com";

	tg_scan_init(&sc);
	ck_assert_int_eq(tg_filter_text_matches(&chain, TG_SIDE_RESPONSE, text, strlen(text), &sc), 0);
	chain.n = 2;
	ck_assert_int_eq(tg_filter_text_matches(&chain, TG_SIDE_RESPONSE, text, strlen(text), &sc), 1);
	ck_assert_int_eq(tg_filter_text_matches(&chain, TG_SIDE_RESPONSE, "no address", 10, &sc), 0);
	ck_assert_uint_eq(tg_filter_types(&chain, TG_SIDE_RESPONSE), 1u << TG_FILTER_REGEX);
	ck_assert_uint_eq(tg_filter_types(&chain, TG_SIDE_REQUEST), 1u << TG_FILTER_REGEX);
	chain.n = 1;
	ck_assert_uint_eq(tg_filter_types(&chain, TG_SIDE_RESPONSE), 0);
	tg_scan_free(&sc);
	destroy_filter(in);
	destroy_filter(out);
}
END_TEST

START_TEST(text_matches_reports_failed_scan)
{
	struct tg_filter *f = make_filter("slow", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, runaway_rule);
	const struct tg_filter *filters[] = {f};
	struct tg_filter_chain chain = {1, filters};
	struct tg_scan sc;
	char text[64];

	memset(text, 'a', 40);
	strcpy(text + 40, "!");
	tg_scan_init(&sc);
	ck_assert_int_eq(tg_filter_text_matches(&chain, TG_SIDE_RESPONSE, text, strlen(text), &sc), -1);
	tg_scan_free(&sc);
	destroy_filter(f);
}
END_TEST

/* --- bodies no rule can match ------------------------------------------ */

/* What tg_filter_body_unmatched() returns for body, cut in two segments at
 * cut (see body_buffer()), for a chain of f alone on the response side. */
static int
unmatched(struct tg_filter *f, const char *body, size_t cut)
{
	const struct tg_filter *filters[] = {f};
	struct tg_filter_chain chain = {1, filters};
	struct evbuffer *buf = body_buffer(body, strlen(body), cut);
	int rc = tg_filter_body_unmatched(&chain, TG_SIDE_RESPONSE, buf);

	evbuffer_free(buf);
	return rc;
}

START_TEST(unmatched_body_without_required_byte)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule);

	ck_assert_int_eq(unmatched(f, "{\"content\":\"Hello there\"}", 0), 1);
	ck_assert_int_eq(unmatched(f, "{\"content\":\"a line\\nbreak \\\"q\\\" \\/\"}", 0), 1);
	ck_assert_int_eq(unmatched(f, "{\"content\":\"a line\\nbreak\"}", 16), 1);
	destroy_filter(f);
}
END_TEST

START_TEST(unmatched_not_when_a_text_may_hold_the_byte)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule);
	/* A tool call's arguments are JSON read again: "\\u0040" is an '@'. */
	static const char inner[] =
		"{\"arguments\":\"{\\\"to\\\":\\\"jane\\\\u0040example.com\\\"}\"}";
	static const char split[] = "{\"content\":\"jane\\u0040example.com\"}";

	ck_assert_int_eq(unmatched(f, "{\"content\":\"jane@example.com\"}", 0), 0);
	ck_assert_int_eq(unmatched(f, split, 0), 0);
	ck_assert_int_eq(unmatched(f, inner, 0), 0);
	/* U+FF20, which NFKC makes an '@'. */
	ck_assert_int_eq(unmatched(f, "{\"content\":\"jane\xef\xbc\xa0" "example.com\"}", 0), 0);
	/* The escape cut between its backslash and its 'u'. */
	ck_assert_int_eq(unmatched(f, split, (size_t)(strchr(split, 'u') - split)), 0);
	destroy_filter(f);
}
END_TEST

START_TEST(unmatched_by_the_bytes_each_rule_requires)
{
	static const char *const caseless[] = {"~word=secret", NULL};
	static const char *const no_byte[] = {"digits=[0-9]+", NULL};
	static const char *const newline[] = {"eol=x\\n", NULL};
	struct tg_filter *word = make_filter("word", TG_ACTION_FLAG, TG_SIDE_RESPONSE, caseless);
	struct tg_filter *digits = make_filter("digits", TG_ACTION_FLAG, TG_SIDE_RESPONSE, no_byte);
	struct tg_filter *eol = make_filter("eol", TG_ACTION_FLAG, TG_SIDE_RESPONSE, newline);

	/* Keys count too: "content" contains a 't'. */
	ck_assert_int_eq(word->rules[0].required, 't');
	ck_assert_int_eq(unmatched(word, "{\"a\":\"SECRE\"}", 0), 1);
	ck_assert_int_eq(unmatched(word, "{\"a\":\"SECRET\"}", 0), 0);
	ck_assert_int_eq(unmatched(word, "{\"a\":\"secret\"}", 0), 0);
	ck_assert_int_eq(unmatched(word, "{\"content\":\"hi\"}", 0), 0);

	ck_assert_int_lt(digits->rules[0].required, 0);
	ck_assert_int_eq(unmatched(digits, "{\"content\":\"hi\"}", 0), 0);

	ck_assert_int_eq(eol->rules[0].required, '\n');
	ck_assert_int_eq(unmatched(eol, "{\"content\":\"x y\"}", 0), 1);
	ck_assert_int_eq(unmatched(eol, "{\"content\":\"x\\ny\"}", 0), 0);
	destroy_filter(word);
	destroy_filter(digits);
	destroy_filter(eol);
}
END_TEST

START_TEST(unmatched_only_for_regex_filters_on_the_side)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule);
	struct tg_filter other = {.type = TG_FILTER_PLUGIN, .apply_to = TG_SIDE_REQUEST};
	const struct tg_filter *filters[] = {f, &other};
	struct tg_filter_chain chain = {2, filters};
	struct evbuffer *buf = body_buffer("{\"content\":\"hi\"}", 16, 0);

	ck_assert_int_eq(tg_filter_body_unmatched(&chain, TG_SIDE_RESPONSE, buf), 1);
	ck_assert_int_eq(tg_filter_body_unmatched(&chain, TG_SIDE_REQUEST, buf), 0);
	other.apply_to = TG_SIDE_REQUEST | TG_SIDE_RESPONSE;
	ck_assert_int_eq(tg_filter_body_unmatched(&chain, TG_SIDE_RESPONSE, buf), 0);
	other.type = TG_FILTER_MODERATION;
	ck_assert_int_eq(tg_filter_body_unmatched(&chain, TG_SIDE_RESPONSE, buf), 0);
	evbuffer_free(buf);
	destroy_filter(f);
}
END_TEST

/* Where tg_filter_body_unmatched() returns 1 for a crafted body, no
 * text the reader takes from it matches, cut anywhere. */
START_TEST(unmatched_agrees_with_the_reader)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule);
	const struct tg_filter *filters[] = {f};
	struct tg_filter_chain chain = {1, filters};
	const char *body = cases[_i].body;
	size_t len = strlen(body);
	struct tg_scan sc;

	tg_scan_init(&sc);
	for (size_t cut = 0; cut < len; cut++) {
		struct texts read = {0};

		if (unmatched(f, body, cut) == 0)
			continue;
		(void)read_texts(body, len, cut, &read);
		for (size_t i = 0; i < read.n; i++)
			ck_assert_int_eq(tg_filter_text_matches(&chain, TG_SIDE_RESPONSE, read.items[i],
			                                        read.lens[i], &sc), 0);
		texts_free(&read);
	}
	tg_scan_free(&sc);
	destroy_filter(f);
}
END_TEST

/* --- tg_filter_response_body -------------------------------------------- */

struct response_fixture {
	struct tg_filter *filter;
	const struct tg_filter *filters[1];
	struct tg_route_filters_config route_filters;
	struct tg_route route;
	struct tg_request req;
};

static void
on_next(struct tg_request *req)
{
	(void)req;
}

/* A request on a route with filter f whose non-streaming response, with
 * status 200, is body. */
static void
response_init(struct response_fixture *rf, struct tg_filter *f, const char *body)
{
	memset(rf, 0, sizeof(*rf));
	rf->filter = f;
	rf->filters[0] = f;
	rf->route_filters.chain = (struct tg_filter_chain){1, rf->filters};
	rf->route.name = "chat";
	rf->route.filters = &rf->route_filters;
	rf->req.route = &rf->route;
	snprintf(rf->req.id, sizeof(rf->req.id), "filter-text-test");

	/* Without a request body to check, this only sets up the state. */
	tg_filter_request(&rf->req, on_next);
	ck_assert_ptr_nonnull(rf->req.filters);

	rf->req.response.status = 200;
	rf->req.response.body = evbuffer_new();
	ck_assert_ptr_nonnull(rf->req.response.body);
	ck_assert_int_eq(evbuffer_add(rf->req.response.body, body, strlen(body)), 0);
}

/* The response body as a string; the caller frees it. */
static char *
response_text(struct response_fixture *rf)
{
	struct evbuffer *body = rf->req.response.body;
	size_t len = evbuffer_get_length(body);
	char *text = malloc(len + 1);

	ck_assert_ptr_nonnull(text);
	evbuffer_copyout(body, text, len);
	text[len] = '\0';
	return text;
}

static void
response_free(struct response_fixture *rf)
{
	tg_relay_response_json_stale(&rf->req);
	evbuffer_free(rf->req.response.body);
	tg_filter_request_done(&rf->req);
	destroy_filter(rf->filter);
}

static const char clean_body[] =
	"{\"id\": \"c1\", \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\","
	" \"content\": \"Hello there\", \"refusal\": null}, \"finish_reason\": \"stop\"}]}";

START_TEST(response_without_match_builds_no_tree)
{
	struct response_fixture rf;
	char *text;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              clean_body);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	ck_assert_int_eq(rf.req.response.json_parsed, 0);
	ck_assert_uint_eq(tg_filter_decisions(&rf.req)->n, 0);
	text = response_text(&rf);
	ck_assert_str_eq(text, clean_body);
	free(text);
	response_free(&rf);
}
END_TEST

START_TEST(response_match_masked_and_logged_once)
{
	struct response_fixture rf;
	const struct tg_filter_log *log;
	char *text;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              "{\"choices\": [{\"message\": {\"content\": \"mail jane@example.com\"}}]}");
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	text = response_text(&rf);
	ck_assert_str_eq(text, "{\"choices\":[{\"message\":{\"content\":"
	                       "\"mail [REDACTED:email]\"}}]}\n");
	log = tg_filter_decisions(&rf.req);
	ck_assert_uint_eq(log->n, 1);
	ck_assert_uint_eq(log->counts[0], 1);
	ck_assert_int_eq(log->items[0].action, TG_ACTION_MASK);
	ck_assert_int_eq(log->items[0].side, TG_SIDE_RESPONSE);
	free(text);
	response_free(&rf);
}
END_TEST

START_TEST(response_flag_logged_once_body_kept)
{
	static const char body[] = "{\"choices\": [{\"text\": \"mail jane@example.com\"}]}";
	struct response_fixture rf;
	const struct tg_filter_log *log;
	char *text;

	response_init(&rf, make_filter("audit", TG_ACTION_FLAG, TG_SIDE_RESPONSE, email_rule),
	              body);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	text = response_text(&rf);
	ck_assert_str_eq(text, body);
	log = tg_filter_decisions(&rf.req);
	ck_assert_uint_eq(log->n, 1);
	ck_assert_uint_eq(log->counts[0], 1);
	ck_assert_int_eq(log->items[0].action, TG_ACTION_FLAG);
	free(text);
	response_free(&rf);
}
END_TEST

START_TEST(response_anthropic_masked_and_blocked)
{
	static const char body[] =
		"{\"type\": \"message\", \"role\": \"assistant\", \"content\": [{\"type\": \"text\","
		" \"text\": \"mail jane@example.com\"}, {\"type\": \"tool_use\", \"name\": \"send\","
		" \"input\": {\"to\": [\"joe@example.com\"]}}], \"stop_reason\": \"tool_use\"}";
	struct response_fixture rf;
	char *text;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              body);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	text = response_text(&rf);
	ck_assert_str_eq(text, "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
	                       "\"text\",\"text\":\"mail [REDACTED:email]\"},{\"type\":\"tool_use\","
	                       "\"name\":\"send\",\"input\":{\"to\":[\"[REDACTED:email]\"]}}],"
	                       "\"stop_reason\":\"tool_use\"}\n");
	ck_assert_uint_eq(tg_filter_decisions(&rf.req)->counts[0], 2);
	free(text);
	response_free(&rf);

	response_init(&rf, make_filter("deny", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, email_rule),
	              body);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	ck_assert_int_eq(rf.req.error, TG_E_CONTENT_FILTER);
	text = response_text(&rf);
	ck_assert_str_eq(text, "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
	                       "\"stop_reason\":\"refusal\"}\n");
	free(text);
	response_free(&rf);
}
END_TEST

/* A match in a body that jansson rejects cannot be masked: the body must
 * not go out. Without a match the same kind of body goes out as it is. */
START_TEST(response_match_without_tree_fails)
{
	static const char matched[] = "{\"choices\": [{\"text\": \"jane@example.com\\u0000\"}]}";
	static const char clean[] = "{\"choices\": [{\"text\": \"nothing\\u0000\"}]}";
	struct response_fixture rf;
	char *text;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              matched);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), -1);
	response_free(&rf);

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              clean);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	text = response_text(&rf);
	ck_assert_str_eq(text, clean);
	free(text);
	response_free(&rf);
}
END_TEST

START_TEST(response_failed_scan_fails)
{
	struct response_fixture rf;

	response_init(&rf, make_filter("slow", TG_ACTION_BLOCK, TG_SIDE_RESPONSE, runaway_rule),
	              "{\"choices\": [{\"text\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!\"}]}");
	ck_assert_int_eq(tg_filter_response_body(&rf.req), -1);
	ck_assert_int_eq(rf.req.response.json_parsed, 0);
	response_free(&rf);
}
END_TEST

/* With nothing matched, the scan and the digest that the metrics and
 * tracing read come from one parse of the body. */
START_TEST(response_clean_body_parsed_once)
{
	struct response_fixture rf;
	struct tg_reply_digest d;
	unsigned parses;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              clean_body);
	parses = n_parses;
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	ck_assert_uint_eq(n_parses - parses, 1);
	tg_relay_response_digest(&rf.req);
	ck_assert_uint_eq(n_parses - parses, 1);

	ck_assert_int_eq(tg_reply_digest_buffer(&d, rf.req.response.body), 0);
	ck_assert_mem_eq(tg_relay_response_digest(&rf.req), &d, sizeof(d));
	ck_assert(d.object && d.choices && d.finish);
	response_free(&rf);
}
END_TEST

/* When tracing reads the response, its detail comes from the same parse. */
START_TEST(response_traced_body_parsed_once)
{
	struct response_fixture rf;
	struct tg_span attempt = {0};
	struct tg_trace trace = {.sampled = 1, .attempt = &attempt, .reads_detail = 1};
	const struct tg_reply_detail *x;
	unsigned parses;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              clean_body);
	rf.req.trace = &trace;
	ck_assert(tg_trace_reads_reply_detail(&rf.req));
	parses = n_parses;
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	x = tg_relay_response_detail(&rf.req);
	ck_assert_uint_eq(n_parses - parses, 1);

	ck_assert_ptr_nonnull(x);
	ck_assert_str_eq(x->id, "c1");
	ck_assert_uint_eq(x->n_choices, 1);
	ck_assert_str_eq(x->choices[0].finish_reason, "stop");
	rf.req.trace = NULL;
	response_free(&rf);
}
END_TEST

/* After a match the filters may rewrite the body, so the digest is read
 * again, from the body the client gets. */
START_TEST(response_masked_body_digest_read_after)
{
	struct response_fixture rf;
	struct tg_reply_digest d;
	unsigned parses;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              "{\"choices\": [{\"message\": {\"content\": \"mail jane@example.com\"},"
	              " \"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": 9}}");
	parses = n_parses;
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	ck_assert_uint_eq(n_parses - parses, 1);
	ck_assert_int_eq(rf.req.response.digest_read, 0);
	ck_assert_uint_eq(tg_relay_response_digest(&rf.req)->usage.count[TG_USAGE_PROMPT_TOKENS], 9);
	ck_assert_uint_eq(n_parses - parses, 2);

	ck_assert_int_eq(tg_reply_digest_buffer(&d, rf.req.response.body), 0);
	ck_assert_mem_eq(tg_relay_response_digest(&rf.req), &d, sizeof(d));
	response_free(&rf);
}
END_TEST

/* The digest rejects a body nested deeper than jansson reads, so a text
 * after the deep part is read apart, and a match there must still keep
 * the body from going out, since jansson cannot rewrite it. */
START_TEST(response_match_past_depth_fails)
{
	char *matched = deep_body("jane@example.com"), *clean = deep_body("nothing");
	struct response_fixture rf;

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              matched);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), -1);
	response_free(&rf);

	response_init(&rf, make_filter("pii", TG_ACTION_MASK, TG_SIDE_RESPONSE, email_rule),
	              clean);
	ck_assert_int_eq(tg_filter_response_body(&rf.req), 0);
	ck_assert_int_eq(tg_relay_response_digest(&rf.req)->object, 0);
	response_free(&rf);
	free(matched);
	free(clean);
}
END_TEST

static Suite *
filter_text_suite(void)
{
	Suite *s = suite_create("filter-text");
	TCase *reader = tcase_create("reader");
	TCase *one_pass = tcase_create("one pass");
	TCase *scan = tcase_create("scan");
	TCase *response = tcase_create("response body");
	int n_cases = (int)(sizeof(cases) / sizeof(cases[0]));
	int n_digest_bodies = (int)(sizeof(digest_bodies) / sizeof(digest_bodies[0]));

	tcase_add_test(reader, reader_agrees_on_fixtures);
	tcase_add_loop_test(reader, reader_and_tree_on_crafted_bodies, 0, n_cases);
	tcase_add_loop_test(reader, reader_takes_body_in_segments, 0, n_cases);
	tcase_add_test(reader, reader_stops_when_asked);
	tcase_add_test(reader, reader_rejects_invalid_json);
	tcase_add_test(reader, reader_reads_numbers_by_value);
	tcase_add_test(reader, reader_takes_nul_escape_jansson_rejects);
	suite_add_tcase(s, reader);

	tcase_add_test(one_pass, one_pass_agrees_on_fixtures);
	tcase_add_loop_test(one_pass, one_pass_agrees_on_crafted_bodies, 0, n_cases);
	tcase_add_loop_test(one_pass, one_pass_agrees_on_other_bodies, 0, n_digest_bodies);
	tcase_add_test(one_pass, one_pass_stops_without_digest);
	tcase_add_test(one_pass, one_pass_misses_texts_past_depth);
	suite_add_tcase(s, one_pass);

	tcase_add_test(scan, text_matches_response_filters_only);
	tcase_add_test(scan, text_matches_reports_failed_scan);
	tcase_add_test(scan, unmatched_body_without_required_byte);
	tcase_add_test(scan, unmatched_not_when_a_text_may_hold_the_byte);
	tcase_add_test(scan, unmatched_by_the_bytes_each_rule_requires);
	tcase_add_test(scan, unmatched_only_for_regex_filters_on_the_side);
	tcase_add_loop_test(scan, unmatched_agrees_with_the_reader, 0, n_cases);
	suite_add_tcase(s, scan);

	tcase_add_test(response, response_without_match_builds_no_tree);
	tcase_add_test(response, response_match_masked_and_logged_once);
	tcase_add_test(response, response_flag_logged_once_body_kept);
	tcase_add_test(response, response_anthropic_masked_and_blocked);
	tcase_add_test(response, response_match_without_tree_fails);
	tcase_add_test(response, response_failed_scan_fails);
	tcase_add_test(response, response_clean_body_parsed_once);
	tcase_add_test(response, response_traced_body_parsed_once);
	tcase_add_test(response, response_masked_body_digest_read_after);
	tcase_add_test(response, response_match_past_depth_fails);
	suite_add_tcase(s, response);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(filter_text_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
