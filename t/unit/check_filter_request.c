/*
 * The request filters without a tree. First the yajl reader of request
 * texts (tg_text_read_request) against the tree walk
 * (tg_text_collect_request), on bodies that the dispatch's scan
 * (tg_request_scan) reads. Then tg_filter_request() on a scanned body
 * against the same call on a body that jansson parsed first, which is how
 * every request was filtered before the screen without a tree.
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "filter-helpers.h"
#include "filter-request.h"
#include "filter.h"
#include "request-scan.h"
#include "request.h"

#define MAX_TEXTS 32

/* Texts as read, copied out of the reader's callback. */
struct texts {
	size_t n;
	char *items[MAX_TEXTS];
};

static void
texts_free(struct texts *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->items[i]);
	t->n = 0;
}

static void
add_text(struct texts *t, const char *text, size_t len)
{
	ck_assert_uint_lt(t->n, MAX_TEXTS);
	t->items[t->n] = strndup(text, len);
	ck_assert_ptr_nonnull(t->items[t->n]);
	t->n++;
}

static int
keep_text(void *arg, const char *text, size_t len)
{
	add_text(arg, text, len);
	return 0;
}

/* The reader's texts of len bytes of body; returns what it returned. */
static int
read_texts(const char *body, size_t len, struct texts *out)
{
	struct evbuffer *buf = evbuffer_new();
	int rc;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(evbuffer_add(buf, body, len), 0);
	rc = tg_text_read_request(buf, keep_text, out);
	evbuffer_free(buf);
	return rc;
}

/* The tree walk's texts of body, parsed as the dispatch parses it, or -1
 * when jansson rejects it. */
static int
collect_texts(const char *body, size_t len, struct texts *out)
{
	json_t *json = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	struct tg_text_list list = {0};

	if (json == NULL)
		return -1;
	ck_assert_int_eq(tg_text_collect_request(json, &list), 0);
	for (size_t i = 0; i < list.n; i++)
		add_text(out, json_string_value(list.items[i]), json_string_length(list.items[i]));
	tg_text_list_free(&list);
	json_decref(json);
	return 0;
}

/* Scan len bytes of body, keeping its texts in *facts unless facts is
 * NULL. */
static enum tg_scan_result
scan_texts(const char *body, size_t len, struct tg_request_facts *facts)
{
	struct tg_yj_keys keys = {0};
	struct tg_request_facts own;
	enum tg_scan_result r = tg_request_scan(body, len, TG_SCAN_TEXTS, &keys,
	                                        facts != NULL ? facts : &own);

	if (facts == NULL)
		tg_request_facts_free(&own);
	tg_yj_keys_free(&keys);
	return r;
}

static enum tg_scan_result
scan(const char *body, size_t len)
{
	return scan_texts(body, len, NULL);
}

/* The texts that the scan kept of len bytes of body, which it read. */
static void
scanned_texts(const char *body, size_t len, struct texts *out)
{
	struct tg_request_facts facts;

	ck_assert_int_eq(scan_texts(body, len, &facts), TG_SCAN_READ);
	ck_assert_int_eq(facts.read_texts, 1);
	for (size_t i = 0; i < facts.texts.n; i++)
		add_text(out, tg_text_span_bytes(&facts.texts, i, body), facts.texts.items[i].len);
	tg_request_facts_free(&facts);
}

static int
compare_texts(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether a and b hold the same texts, in any order: the tree walk goes
 * by the table's order of members, the reader by the order of the text. */
static int
same_texts(struct texts *a, struct texts *b)
{
	if (a->n != b->n)
		return 0;
	qsort(a->items, a->n, sizeof(a->items[0]), compare_texts);
	qsort(b->items, b->n, sizeof(b->items[0]), compare_texts);
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->items[i], b->items[i]) != 0)
			return 0;
	}
	return 1;
}

/* --- the reader against the tree walk ----------------------------------- */

struct request_case {
	const char *name;
	const char *body;
	const char *texts[MAX_TEXTS];   /* in the text's order */
};

static const struct request_case cases[] = {
	{"chat messages of every role",
	 "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"S\"},"
	 " {\"role\": \"user\", \"name\": \"NM\", \"content\": [{\"type\": \"text\", \"text\": \"P1\"},"
	 " {\"type\": \"image_url\", \"image_url\": {\"url\": \"no\", \"detail\": \"no\"}},"
	 " {\"type\": \"input_text\", \"text\": \"P2\"}]},"
	 " {\"role\": \"assistant\", \"content\": null, \"refusal\": \"R\", \"tool_calls\":"
	 " [{\"id\": \"no\", \"type\": \"function\", \"function\": {\"name\": \"N1\","
	 " \"arguments\": \"A\"}}], \"function_call\": {\"name\": \"N2\", \"arguments\": \"F\"}},"
	 " {\"role\": \"tool\", \"tool_call_id\": \"no\", \"content\": \"T\"}],"
	 " \"user\": \"no\", \"stop\": [\"no\"], \"metadata\": {\"content\": \"no\"}}",
	 {"S", "NM", "P1", "P2", "R", "N1", "A", "N2", "F", "T"}},
	{"completion prompts",
	 "{\"model\": \"m\", \"prompt\": [\"P1\", [1, 2], 3, \"P2\", [\"no\"], {\"text\": \"no\"}],"
	 " \"suffix\": \"X\"}",
	 {"P1", "P2", "X"}},
	{"a suffix in every form of a prompt",
	 "{\"model\": \"m\", \"prompt\": \"P\", \"suffix\": [\"X1\", [1], \"X2\"]}",
	 {"P", "X1", "X2"}},
	{"embedding input",
	 "{\"model\": \"m\", \"input\": \"I\", \"encoding_format\": \"float\"}",
	 {"I"}},
	{"Anthropic messages",
	 "{\"model\": \"m\", \"system\": [{\"type\": \"text\", \"text\": \"S1\","
	 " \"cache_control\": {\"type\": \"no\"}}, {\"type\": \"text\", \"text\": \"S2\"}],"
	 " \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"U\"},"
	 " {\"type\": \"image\", \"source\": {\"type\": \"base64\", \"data\": \"no\"}},"
	 " {\"type\": \"tool_result\", \"tool_use_id\": \"no\", \"content\": \"TR1\"},"
	 " {\"type\": \"tool_result\", \"content\": [{\"type\": \"text\", \"text\": \"TR2\"},"
	 " {\"type\": \"image\", \"source\": {\"type\": \"url\", \"data\": \"no\"}}]}]},"
	 " {\"role\": \"assistant\", \"content\": [{\"type\": \"thinking\", \"thinking\": \"H\","
	 " \"signature\": \"no\"}, {\"type\": \"tool_use\", \"id\": \"no\", \"name\": \"N1\","
	 " \"input\": {\"q\": \"V1\", \"o\": {\"list\": [\"V2\", 1, {\"d\": \"V3\"}], \"n\": null}}}]}],"
	 " \"max_tokens\": 10}",
	 {"S1", "S2", "U", "TR1", "TR2", "H", "N1", "q", "V1", "o", "list", "V2", "1", "d",
	  "V3", "n"}},
	{"escaped texts decoded",
	 "{\"messages\": [{\"content\": \"a\\u0040b.io \\\"q\\\" \\\\ \\/ caf\\u00e9\\n\\t\"},"
	 " {\"content\": [{\"text\": \"\\u20ac\\u0041\"}]}]}",
	 {"a@b.io \"q\" \\ / caf\xc3\xa9\n\t", "\xe2\x82\xac" "A"}},
	{"members in another order",
	 "{\"input\": \"I\", \"messages\": [{\"tool_calls\": [{\"function\": {\"arguments\": \"A\"}}],"
	 " \"content\": \"C\"}], \"system\": \"S\", \"prompt\": \"P\"}",
	 {"I", "A", "C", "S", "P"}},
	{"values that are not texts, and parts as objects",
	 "{\"messages\": [{\"content\": {\"text\": \"OC\"}, \"refusal\": 1,"
	 " \"tool_calls\": {\"function\": {\"arguments\": \"no\"}}}, \"no\", [\"no\"], 5,"
	 " {\"content\": [[{\"text\": \"no\"}], \"no\"]}], \"system\": {\"text\": \"OS\"},"
	 " \"prompt\": {\"p\": \"no\"}, \"input\": [[\"no\"]], \"text\": \"no\","
	 " \"content\": \"no\"}",
	 {"OC", "OS"}},
	{"Responses API input items",
	 "{\"model\": \"m\", \"instructions\": \"N\", \"input\": [\"S\","
	 " {\"role\": \"user\", \"content\": \"M1\"},"
	 " {\"type\": \"message\", \"role\": \"user\", \"content\": [{\"type\": \"input_text\","
	 " \"text\": \"M2\"}, {\"type\": \"input_image\", \"image_url\": \"no\"}]},"
	 " {\"type\": \"function_call\", \"call_id\": \"no\", \"name\": \"N1\", \"arguments\": \"A\"},"
	 " {\"type\": \"function_call_output\", \"call_id\": \"no\", \"output\": \"O\"},"
	 " [\"no\"], 5]}",
	 {"N", "S", "M1", "M2", "N1", "A", "O"}},
	{"tools, formats and predicted output",
	 "{\"model\": \"m\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"N1\","
	 " \"description\": \"D1\", \"parameters\": {\"type\": \"object\", \"title\": \"T1\","
	 " \"properties\": {\"description\": {\"type\": \"string\", \"description\": \"D2\"},"
	 " \"enum\": {\"enum\": [\"E1\", 1, {\"description\": \"E2\"}, [\"E3\"], \"E4\"]}},"
	 " \"required\": [\"description\"], \"enum\": \"E5\", \"$defs\": {\"a\": {\"items\":"
	 " [{\"description\": \"D3\"}], \"description\": 5, \"x\": \"no\"}}}}},"
	 " {\"type\": \"function\", \"name\": \"N2\", \"description\": \"D4\", \"parameters\": \"no\"},"
	 " {\"name\": \"N3\", \"description\": \"D5\", \"input_schema\": {\"description\": \"D6\"}}],"
	 " \"functions\": [{\"name\": \"N4\", \"description\": \"D7\"}],"
	 " \"prediction\": {\"type\": \"content\", \"content\": [{\"type\": \"text\", \"text\": \"P\"}]},"
	 " \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"N5\","
	 " \"description\": \"R1\", \"schema\": {\"description\": \"R2\"}}},"
	 " \"text\": {\"format\": {\"type\": \"json_schema\", \"name\": \"N6\", \"schema\":"
	 " {\"enum\": [\"R3\"]}}}}",
	 {"N1", "D1", "T1", "description", "D2", "enum", "E1", "1", "E2", "E3", "E4", "description",
	  "E5", "a", "D3", "N2", "D4", "N3", "D5", "D6", "N4", "D7", "P", "N5", "R1", "R2", "N6",
	  "R3"}},
	{"schema data at any depth",
	 "{\"tools\": [{\"name\": \"N1\", \"input_schema\": {\"type\": \"object\","
	 " \"$comment\": \"K1\", \"const\": \"C1\","
	 " \"default\": {\"k\": [\"V1\", {\"description\": \"V2\"}], \"n\": 1},"
	 " \"examples\": [\"X1\", {\"type\": \"X2\"}], \"example\": \"X3\","
	 " \"properties\": {\"default\": {\"type\": \"string\", \"default\": \"V3\"},"
	 " \"examples\": {\"type\": \"array\", \"examples\": [[\"X4\"]]},"
	 " \"const\": {\"const\": null}, \"title\": \"no\"},"
	 " \"patternProperties\": {\"^enum$\": {\"enum\": [\"E1\"]}},"
	 " \"definitions\": {\"const\": {\"properties\": {\"description\":"
	 " {\"description\": \"D1\"}}}}, \"required\": [\"default\"]}}],"
	 " \"response_format\": {\"json_schema\": {\"schema\": {\"anyOf\": [{\"const\": \"C2\"}],"
	 " \"items\": {\"default\": [\"V4\"]}}}}, \"text\": {\"format\": {\"schema\":"
	 " {\"dependentSchemas\": {\"examples\": {\"examples\": \"X5\"}}}}}}",
	 {"N1", "K1", "C1", "V1", "V2", "1", "X1", "X2", "X3", "default", "V3", "examples", "X4", "const",
	  "title", "^enum$", "E1", "const", "description", "D1", "default", "C2", "V4", "examples",
	  "X5"}},
	{"Anthropic documents and search results",
	 "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"document\","
	 " \"source\": {\"type\": \"text\", \"media_type\": \"text/plain\", \"data\": \"S1\"},"
	 " \"title\": \"T1\", \"context\": \"X1\", \"citations\": {\"enabled\": true}},"
	 " {\"type\": \"document\", \"source\": {\"type\": \"content\", \"content\":"
	 " [{\"type\": \"text\", \"text\": \"S2\"}, {\"type\": \"image\", \"source\": {}}]}},"
	 " {\"type\": \"document\", \"source\": {\"type\": \"content\", \"content\": \"S3\"}},"
	 " {\"type\": \"document\", \"source\": {\"type\": \"base64\","
	 " \"media_type\": \"application/pdf\", \"data\": \"no\"}},"
	 " {\"type\": \"document\", \"source\": {\"type\": \"url\", \"url\": \"no\"}},"
	 " {\"type\": \"search_result\", \"source\": \"no\", \"title\": \"T2\","
	 " \"content\": [{\"type\": \"text\", \"text\": \"R1\"}]},"
	 " {\"type\": \"tool_result\", \"content\": [{\"type\": \"document\", \"source\":"
	 " {\"type\": \"text\", \"data\": \"S4\"}, \"title\": \"T3\"}, {\"type\":"
	 " \"document\", \"source\": {\"type\": \"content\", \"content\": [{\"type\": \"text\","
	 " \"text\": \"S5\"}]}}, {\"type\": \"search_result\", \"source\": \"no\","
	 " \"title\": \"T4\", \"content\": [{\"type\": \"text\", \"text\": \"R2\"}]}]}]}]}",
	 {"S1", "T1", "X1", "S2", "S3", "T2", "R1", "S4", "T3", "S5", "T4", "R2"}},
	{"Responses API items of every kind and a prompt template",
	 "{\"prompt\": {\"id\": \"no\", \"version\": \"no\", \"variables\": {\"a\": \"V1\","
	 " \"b\": {\"type\": \"input_text\", \"text\": \"V2\"}, \"c\": {\"type\":"
	 " \"input_image\", \"image_url\": \"no\"}}}, \"input\": [{\"type\": \"reasoning\","
	 " \"id\": \"no\", \"summary\": [{\"type\": \"summary_text\", \"text\": \"R1\"}],"
	 " \"encrypted_content\": \"no\"}, {\"type\": \"custom_tool_call\", \"call_id\": \"no\","
	 " \"name\": \"N1\", \"input\": \"I1\"}, {\"type\": \"custom_tool_call_output\","
	 " \"output\": \"O1\"}, {\"type\": \"code_interpreter_call\", \"code\": \"K1\","
	 " \"container_id\": \"no\"}, {\"type\": \"file_search_call\", \"queries\": [\"Q1\"],"
	 " \"status\": \"no\", \"results\": [{\"file_id\": \"no\", \"text\": \"F1\"}]},"
	 " {\"type\": \"mcp_call\", \"name\": \"N2\", \"server_label\": \"no\","
	 " \"arguments\": \"A\", \"output\": \"O2\", \"error\": \"X1\"},"
	 " {\"type\": \"mcp_list_tools\", \"server_label\": \"no\", \"tools\": [{\"name\":"
	 " \"N3\", \"description\": \"D1\", \"input_schema\": {\"title\": \"D2\"}}]}]}",
	 {"V1", "V2", "R1", "N1", "I1", "O1", "K1", "Q1", "F1", "N2", "A", "O2", "X1", "N3", "D1",
	  "D2"}},
	{"Responses API actions, patches, logs and MCP servers",
	 "{\"tools\": [{\"type\": \"mcp\", \"server_label\": \"no\", \"server_url\": \"no\","
	 " \"server_description\": \"M1\"}], \"input\": [{\"type\": \"web_search_call\","
	 " \"action\": {\"type\": \"search\", \"query\": \"A1\"}}, {\"type\": \"web_search_call\","
	 " \"action\": {\"type\": \"find\", \"url\": \"no\", \"pattern\": \"A2\"}},"
	 " {\"type\": \"computer_call\", \"action\": {\"type\": \"type\", \"text\": \"A3\"}},"
	 " {\"type\": \"local_shell_call\", \"action\": {\"type\": \"exec\", \"command\":"
	 " [\"A4\", \"A5\"], \"env\": {\"K\": \"no\"}}}, {\"type\": \"shell_call\", \"action\":"
	 " {\"commands\": [\"A6\"]}}, {\"type\": \"apply_patch_call\", \"operation\":"
	 " {\"type\": \"update_file\", \"path\": \"no\", \"diff\": \"P1\"}},"
	 " {\"type\": \"code_interpreter_call\", \"outputs\": [{\"type\": \"logs\", \"logs\": \"L1\"},"
	 " {\"type\": \"image\", \"url\": \"no\"}]}]}",
	 {"M1", "A1", "A2", "A3", "A4", "A5", "A6", "P1", "L1"}},
	{"Anthropic server tool results",
	 "{\"messages\": [{\"role\": \"assistant\", \"content\": [{\"type\":"
	 " \"web_fetch_tool_result\", \"tool_use_id\": \"no\", \"content\": {\"type\":"
	 " \"web_fetch_result\", \"url\": \"no\", \"content\": {\"type\": \"document\","
	 " \"source\": {\"type\": \"text\", \"media_type\": \"text/plain\", \"data\": \"W1\"},"
	 " \"title\": \"W2\"}}}, {\"type\": \"web_search_tool_result\", \"content\": [{\"type\":"
	 " \"web_search_result\", \"url\": \"no\", \"title\": \"W3\", \"encrypted_content\":"
	 " \"no\"}]}, {\"type\": \"bash_code_execution_tool_result\", \"content\": {\"type\":"
	 " \"bash_code_execution_result\", \"stdout\": \"O1\", \"stderr\": \"O2\","
	 " \"return_code\": 0, \"content\": [{\"file_id\": \"no\"}]}}]}]}",
	 {"W1", "W2", "W3", "O1", "O2"}},
	{"a chat tool choice and custom tools",
	 "{\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"C1\"}},"
	 " \"function_call\": {\"name\": \"C2\"}, \"tools\": [{\"type\": \"custom\","
	 " \"custom\": {\"name\": \"N1\", \"description\": \"D1\", \"format\": {\"type\":"
	 " \"grammar\", \"grammar\": {\"syntax\": \"lark\", \"definition\": \"no\"}}}}]}",
	 {"C1", "C2", "N1", "D1"}},
	{"allowed tools of chat completions",
	 "{\"tool_choice\": {\"type\": \"allowed_tools\", \"allowed_tools\": {\"mode\":"
	 " \"auto\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"C1\"}},"
	 " {\"type\": \"custom\", \"custom\": {\"name\": \"C2\"}}]}}, \"function_call\": \"no\"}",
	 {"C1", "C2"}},
	{"allowed tools of the Responses API",
	 "{\"tool_choice\": {\"type\": \"allowed_tools\", \"mode\": \"required\", \"tools\":"
	 " [{\"type\": \"function\", \"name\": \"C1\"}, {\"type\": \"mcp\","
	 " \"server_label\": \"no\"}]}}",
	 {"C1"}},
	{"tool choices by name and by mode",
	 "{\"tool_choice\": {\"type\": \"tool\", \"name\": \"C1\","
	 " \"disable_parallel_tool_use\": true}, \"messages\": [{\"tool_choice\": \"no\"}]}",
	 {"C1"}},
	{"a tool choice that is a mode",
	 "{\"tool_choice\": \"auto\", \"function_call\": \"none\"}",
	 {NULL}},
	{"names of properties, empty too",
	 "{\"tools\": [{\"input_schema\": {\"properties\": {\"a@b\": {\"properties\":"
	 " {\"\": {\"description\": \"D1\"}}}, \"q'\": true}, \"required\":"
	 " [\"a@b\", 5], \"dependencies\": {\"k\": [\"no\"]}, \"items\": [{\"$defs\":"
	 " {\"d\": {}}, \"properties\": {}}], \"additionalProperties\": {\"patternProperties\":"
	 " {\"^x\": {}}}}}]}",
	 {"a@b", "", "D1", "q'", "a@b", "5", "k", "d", "^x"}},
	{"tool_use input nested deep",
	 "{\"messages\": [{\"content\": [{\"type\": \"tool_use\", \"input\": "
	 "[[[[[[[[[[[[[[[[[[[[{\"a\": [[[[\"DEEP\"]]]]}]]]]]]]]]]]]]]]]]]]]}]}]}",
	 {"a", "DEEP"}},
};

/* The scan reads each case, the reader finds its texts in order, the
 * scan keeps the same, and the tree walk finds the same texts. */
START_TEST(reader_and_tree_on_crafted_bodies)
{
	const struct request_case *c = &cases[_i];
	size_t len = strlen(c->body);
	struct texts read = {0}, kept = {0}, collected = {0};
	size_t n = 0;

	ck_assert_msg(scan(c->body, len) == TG_SCAN_READ, "%s: the scan is unsure", c->name);
	ck_assert_int_eq(read_texts(c->body, len, &read), 0);
	while (n < MAX_TEXTS && c->texts[n] != NULL)
		n++;
	ck_assert_msg(read.n == n, "%s: %zu texts read, expected %zu", c->name, read.n, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(read.items[i], c->texts[i]) == 0,
		              "%s: text %zu is \"%s\", expected \"%s\"", c->name, i, read.items[i],
		              c->texts[i]);
	scanned_texts(c->body, len, &kept);
	ck_assert_msg(kept.n == n, "%s: %zu texts kept, expected %zu", c->name, kept.n, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strcmp(kept.items[i], c->texts[i]) == 0,
		              "%s: text %zu kept is \"%s\", expected \"%s\"", c->name, i,
		              kept.items[i], c->texts[i]);
	ck_assert_int_eq(collect_texts(c->body, len, &collected), 0);
	ck_assert_msg(same_texts(&read, &collected), "%s: the tree walk finds other texts",
	              c->name);
	texts_free(&read);
	texts_free(&kept);
	texts_free(&collected);
}
END_TEST

/* Bodies whose texts the reader reads otherwise than jansson: the scan
 * must leave each to jansson, so that the filters read its tree. */
static const char *const read_otherwise[] = {
	/* A member given twice: the reader reads both, the tree the last. */
	"{\"messages\": [{\"content\": \"a@b.io\", \"content\": \"clean\"}]}",
	"{\"messages\": [{\"content\": \"a@b.io\"}], \"messages\": []}",
	"{\"prompt\": \"a@b.io\", \"prompt\": \"clean\"}",
	"{\"input\": [\"x\"], \"model\": \"m\", \"input\": \"y\"}",
	/* An escaped key may name a member given twice. */
	"{\"messages\": [{\"content\": \"a@b.io\", \"c\\u006fntent\": \"clean\"}]}",
	/* Escapes that yajl decodes and jansson rejects. */
	"{\"messages\": [{\"content\": \"a@b.io\\ud800\"}]}",
	"{\"messages\": [{\"content\": \"a@b.io\\u0000\"}]}",
	/* Bytes that are not UTF-8, and whitespace that only yajl takes. */
	"{\"messages\": [{\"content\": \"a@b.io \xff\"}]}",
	"{\"messages\":\f[{\"content\": \"a@b.io\"}]}",
	/* A number out of jansson's range, and one out of yajl's. */
	"{\"messages\": [{\"content\": \"a@b.io\"}], \"max_tokens\": 99999999999999999999}",
	"{\"messages\": [{\"content\": \"a@b.io\"}], \"seed\": -9223372036854775808}",
	"{\"messages\": [{\"content\": \"a@b.io\"}], \"temperature\": 1e400}",
};

START_TEST(scan_leaves_bodies_read_otherwise)
{
	const char *body = read_otherwise[_i];

	ck_assert_msg(scan(body, strlen(body)) == TG_SCAN_UNSURE, "scanned %s", body);
}
END_TEST

/* Nesting deeper than jansson parses: yajl reads the text inside, the
 * tree is never built, and the scan must be unsure. */
START_TEST(scan_leaves_deep_body)
{
	static const char head[] = "{\"messages\": [{\"content\": [{\"type\": \"tool_use\", \"input\": ";
	static const char tail[] = "}]}]}";
	size_t depth = 3000;
	size_t len = strlen(head) + 2 * depth + strlen("\"a@b.io\"") + strlen(tail);
	char *body = malloc(len + 1);
	struct texts read = {0}, collected = {0};
	char *p = body;

	ck_assert_ptr_nonnull(body);
	p += sprintf(p, "%s", head);
	memset(p, '[', depth);
	p += depth;
	p += sprintf(p, "\"a@b.io\"");
	memset(p, ']', depth);
	p += depth;
	sprintf(p, "%s", tail);

	ck_assert_int_eq(read_texts(body, len, &read), 0);
	ck_assert_uint_eq(read.n, 1);
	ck_assert_int_eq(collect_texts(body, len, &collected), -1);
	ck_assert_int_eq(scan(body, len), TG_SCAN_UNSURE);
	texts_free(&read);
	free(body);
}
END_TEST

/* The reader and the scan leave len bytes of body to the tree, which
 * finds n texts in it. */
static void
assert_left_to_tree(const char *body, size_t len, size_t n)
{
	struct texts read = {0}, collected = {0};

	ck_assert_int_eq(read_texts(body, len, &read), -1);
	ck_assert_int_eq(scan(body, len), TG_SCAN_UNSURE);
	ck_assert_int_eq(collect_texts(body, len, &collected), 0);
	ck_assert_uint_eq(collected.n, n);
	texts_free(&read);
	texts_free(&collected);
}

/* A document source's "data" before its "type": the reader cannot tell
 * in one pass whether it is text. The tree reads the data of a text
 * source only. */
START_TEST(reader_leaves_data_before_type_to_the_tree)
{
	static const char text[] = "{\"messages\": [{\"content\": [{\"type\": \"document\","
	                           " \"source\": {\"data\": \"S\", \"type\": \"text\"}}]}]}";
	static const char pdf[] = "{\"messages\": [{\"content\": [{\"type\": \"document\","
	                          " \"source\": {\"data\": \"no\", \"type\": \"base64\"}}]}]}";

	static const char twice[] = "{\"messages\": [{\"content\": [{\"type\": \"document\","
	                            " \"source\": {\"type\": \"base64\", \"data\": \"S\","
	                            " \"type\": \"text\"}}]}]}";
	struct texts read = {0};

	assert_left_to_tree(text, strlen(text), 1);
	assert_left_to_tree(pdf, strlen(pdf), 0);

	/* A type given twice: the scan is unsure of any such body, but the
	 * reader alone must leave it too, since the tree keeps the last. */
	ck_assert_int_eq(read_texts(twice, strlen(twice), &read), -1);
	texts_free(&read);
}
END_TEST

/* A schema nested deeper than the reader follows, and not as deep as
 * jansson parses. */
START_TEST(reader_leaves_deep_schema_to_the_tree)
{
	static const char head[] = "{\"tools\": [{\"input_schema\": ";
	static const char level[] = "{\"items\": ";
	size_t depth = 200;
	char body[4096], *p = body;

	p += sprintf(p, "%s", head);
	for (size_t i = 0; i < depth; i++)
		p += sprintf(p, "%s", level);
	p += sprintf(p, "{\"description\": \"D\"}");
	memset(p, '}', depth);
	p += depth;
	sprintf(p, "}]}");

	ck_assert_uint_lt(strlen(body), sizeof(body));
	assert_left_to_tree(body, strlen(body), 1);
}
END_TEST

/* Random changes to the crafted bodies: whenever the scan reads one, the
 * reader and the tree walk must find the same texts. The seed is fixed,
 * so a failure repeats. */
START_TEST(scanned_mutations_read_alike)
{
	static const char bytes[] = "{}[]\",:\\u0dDe1-. tn\f\x80\xc3\xa9\xed\xff";
	const size_t n_cases = sizeof(cases) / sizeof(cases[0]);
	unsigned seed = 4242;
	size_t n_read = 0;
	char body[1024];

	for (int round = 0; round < 100000; round++) {
		const char *base = cases[(size_t)round % n_cases].body;
		size_t len = strlen(base);
		struct texts read = {0}, kept = {0}, collected = {0};

		ck_assert_uint_le(len, sizeof(body));
		memcpy(body, base, len);
		for (int k = 0; k < 1 + round % 3; k++)
			body[rand_r(&seed) % len] = bytes[rand_r(&seed) % (sizeof(bytes) - 1)];
		if (scan(body, len) != TG_SCAN_READ)
			continue;
		n_read++;
		ck_assert_msg(read_texts(body, len, &read) == 0, "the reader failed on %.*s",
		              (int)len, body);
		ck_assert_msg(collect_texts(body, len, &collected) == 0,
		              "jansson rejects a scanned body: %.*s", (int)len, body);
		ck_assert_msg(same_texts(&read, &collected), "texts differ in %.*s", (int)len, body);
		scanned_texts(body, len, &kept);
		ck_assert_msg(same_texts(&kept, &collected), "texts kept differ in %.*s", (int)len,
		              body);
		texts_free(&read);
		texts_free(&kept);
		texts_free(&collected);
	}
	/* Most single changes break the JSON; enough must remain to test. */
	ck_assert_uint_ge(n_read, 1000);
}
END_TEST

/* --- tg_filter_request() ------------------------------------------------ */

static const char *const email_rule[] = {"preset:email", NULL};

struct request_fixture {
	const struct tg_filter *filters[1];
	struct tg_route_filters_config route_filters;
	struct tg_route route;
	struct tg_request req;
	int passed;             /* on_next ran */
	struct tg_filter *filter;       /* made by filter_scanned() */
};

static void
on_next(struct tg_request *req)
{
	struct request_fixture *rf = (struct request_fixture *)((char *)req -
	                                                        offsetof(struct request_fixture, req));

	rf->passed++;
}

/* The state the dispatch left a request body in. */
enum body_read {
	PARSED,                 /* jansson parsed it: the tree is built, as on
	                           every route with request filters before the
	                           screen without a tree */
	SCANNED,                /* the scan read it and kept its texts */
	SCANNED_ONLY,           /* the scan read it but kept no texts */
};

/* A request on a route with filter f, with body, read as how gives. */
static void
request_init(struct request_fixture *rf, const struct tg_filter *f, const char *body,
             enum body_read how)
{
	struct tg_yj_keys keys = {0};

	size_t len = strlen(body);

	memset(rf, 0, sizeof(*rf));
	rf->filters[0] = f;
	rf->route_filters.chain = (struct tg_filter_chain){1, rf->filters};
	rf->route.name = "chat";
	rf->route.filters = &rf->route_filters;
	rf->req.route = &rf->route;
	snprintf(rf->req.id, sizeof(rf->req.id), "filter-request-test");
	rf->req.body = evbuffer_new();
	ck_assert_ptr_nonnull(rf->req.body);
	ck_assert_int_eq(evbuffer_add(rf->req.body, body, len), 0);
	rf->req.body_len = len;
	if (how != PARSED) {
		ck_assert_int_eq(tg_request_scan(body, len, how == SCANNED ? TG_SCAN_TEXTS : 0, &keys,
		                                 &rf->req.scanned), TG_SCAN_READ);
		tg_yj_keys_free(&keys);
		rf->req.body_json_pending = 1;
	} else {
		rf->req.body_json = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
		ck_assert_ptr_nonnull(rf->req.body_json);
	}
}

/* The body as it goes upstream; the caller frees it. */
static char *
request_body(struct request_fixture *rf)
{
	size_t len = evbuffer_get_length(rf->req.body);
	char *text = malloc(len + 1);

	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(len, rf->req.body_len);
	evbuffer_copyout(rf->req.body, text, len);
	text[len] = '\0';
	return text;
}

static void
request_free(struct request_fixture *rf)
{
	tg_filter_request_done(&rf->req);
	tg_request_facts_free(&rf->req.scanned);
	json_decref(rf->req.body_json);
	evbuffer_free(rf->req.body);
}

/* Bodies for both paths: what goes upstream and the decisions must match. */
static const char *const filtered[] = {
	"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]}",
	"{ \"model\" : \"m\" ,\n \"messages\" : [ { \"content\" : \"caf\\u00e9 \\/ \\\"x\\\"\" } ] }",
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mail jane@example.com\"}]}",
	"{\"model\":\"m\",\"messages\":[{\"content\":\"mail jane\\u0040example.com, \\u00e9\\/\"}],"
	"\"temperature\":0.70,\"max_tokens\":1e2,\"n\":-0}",
	"{\"model\":\"m\",\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":\"a@b.io\"},"
	"{\"type\":\"text\",\"text\":\"c@d.io and e@f.io\"}]},{\"role\":\"assistant\","
	"\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"to\\\":\\\"g@h.io\\\"}\"}}]}]}",
	"{\"system\":\"s@t.io\",\"messages\":[{\"content\":[{\"type\":\"tool_use\",\"input\":"
	"{\"to\":[\"u@v.io\",{\"cc\":\"w@x.io\"}],\"n\":1}},{\"type\":\"tool_result\","
	"\"content\":[{\"type\":\"text\",\"text\":\"y@z.io\"}]}]}],\"max_tokens\":5}",
	"{\"model\":\"m\",\"prompt\":[\"p@q.io\",[1,2],\"clean\"]}",
	"{\"model\":\"m\",\"input\":\"i@j.io\"}",
	"{\"model\":\"m\",\"instructions\":\"k@l.io\",\"input\":[{\"role\":\"user\","
	"\"content\":[{\"type\":\"input_text\",\"text\":\"m@n.io\"}]}]}",
};

/* The decisions of a filter log, as one string to compare. */
static void
describe_log(const struct tg_filter_log *log, char *out, size_t size)
{
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; log != NULL && i < log->n && n < size; i++)
		n += (size_t)snprintf(out + n, size - n, "%s/%s/%d/%u;", log->items[i].filter,
		                      log->items[i].rule ? log->items[i].rule : "-",
		                      log->items[i].action, log->counts[i]);
}

/* Filter body as read by how with f; *sent gets the body that went
 * upstream and *log the decisions. Returns whether the tree was built. */
static int
filter_body(const struct tg_filter *f, const char *body, enum body_read how, char **sent,
            char *log, size_t log_size)
{
	struct request_fixture rf;
	int built;

	request_init(&rf, f, body, how);
	tg_filter_request(&rf.req, on_next);
	ck_assert_int_eq(rf.passed, 1);
	*sent = request_body(&rf);
	describe_log(tg_filter_decisions(&rf.req), log, log_size);
	built = rf.req.body_json != NULL;
	request_free(&rf);
	return built;
}

/* The screen of a scanned body, with the texts the scan kept or read
 * again, ends as the tree path ends on the same body: the same bytes
 * upstream and the same decisions, for a mask and a flag filter. */
START_TEST(scanned_body_filtered_as_parsed_one)
{
	static const enum tg_filter_action actions[] = {TG_ACTION_MASK, TG_ACTION_FLAG};
	static const enum body_read scans[] = {SCANNED, SCANNED_ONLY};

	for (size_t a = 0; a < 2; a++) {
		struct tg_filter *f = make_filter("pii", actions[a], TG_SIDE_REQUEST, email_rule);
		char parsed_log[512], *parsed_body;

		filter_body(f, filtered[_i], PARSED, &parsed_body, parsed_log, sizeof(parsed_log));
		for (size_t i = 0; i < 2; i++) {
			char scanned_log[512], *scanned_body;
			int built = filter_body(f, filtered[_i], scans[i], &scanned_body, scanned_log,
			                        sizeof(scanned_log));

			ck_assert_str_eq(scanned_body, parsed_body);
			ck_assert_str_eq(scanned_log, parsed_log);
			/* Without a match the body needs no tree, and goes as it came. */
			if (scanned_log[0] == '\0') {
				ck_assert_int_eq(built, 0);
				ck_assert_str_eq(scanned_body, filtered[_i]);
			}
			free(scanned_body);
		}
		free(parsed_body);
		destroy_filter(f);
	}
}
END_TEST

/* Filter body, scanned, with a mask filter for the emails of side. The
 * request must pass; what went upstream is in *sent (freed by the
 * caller), and rf is left for the caller to check and free. */
static void
filter_scanned(struct request_fixture *rf, enum tg_side side, const char *body, char **sent)
{
	struct tg_filter *f = make_filter("pii", TG_ACTION_MASK, side, email_rule);

	request_init(rf, f, body, SCANNED);
	rf->filter = f;
	tg_filter_request(&rf->req, on_next);
	ck_assert_int_eq(rf->passed, 1);
	*sent = request_body(rf);
}

static void
filter_scanned_free(struct request_fixture *rf, char *sent)
{
	struct tg_filter *f = rf->filter;

	free(sent);
	request_free(rf);
	destroy_filter(f);
}

/* Addresses outside the texts are not screened, so none matches. */
START_TEST(scanned_body_without_match_builds_no_tree)
{
	static const char body[] =
		"{\"model\":\"m\",\"messages\":[{\"content\":\"no address\"}],\"stop\":[\"a@b.io\"],"
		"\"user\":\"c@d.io\",\"metadata\":{\"content\":\"e@f.io\"}}";
	struct request_fixture rf;
	char *sent;

	filter_scanned(&rf, TG_SIDE_REQUEST, body, &sent);
	ck_assert_ptr_null(rf.req.body_json);
	ck_assert_int_eq(rf.req.body_json_pending, 1);
	ck_assert_uint_eq(tg_filter_decisions(&rf.req)->n, 0);
	ck_assert_str_eq(sent, body);
	filter_scanned_free(&rf, sent);
}
END_TEST

/* A match builds the tree and masks from it: an escaped address too. */
START_TEST(scanned_body_with_match_masked)
{
	struct request_fixture rf;
	char *sent;

	filter_scanned(&rf, TG_SIDE_REQUEST,
	               "{\"model\":\"m\",\"messages\":[{\"content\":\"mail jane\\u0040example.com\"}]}",
	               &sent);
	ck_assert_ptr_nonnull(rf.req.body_json);
	ck_assert_uint_eq(tg_filter_decisions(&rf.req)->n, 1);
	ck_assert_str_eq(sent, "{\"model\":\"m\",\"messages\":[{\"content\":"
	                       "\"mail [REDACTED:email]\"}]}");
	filter_scanned_free(&rf, sent);
}
END_TEST

/* A filter of the response side only leaves the request body unread. */
START_TEST(response_filter_leaves_request_unread)
{
	static const char body[] = "{\"model\":\"m\",\"messages\":[{\"content\":\"a@b.io\"}]}";
	struct request_fixture rf;
	char *sent;

	filter_scanned(&rf, TG_SIDE_RESPONSE, body, &sent);
	ck_assert_ptr_null(rf.req.body_json);
	ck_assert_str_eq(sent, body);
	filter_scanned_free(&rf, sent);
}
END_TEST

static Suite *
filter_request_suite(void)
{
	Suite *s = suite_create("filter-request");
	TCase *reader = tcase_create("reader");
	TCase *screen = tcase_create("screen");

	tcase_add_loop_test(reader, reader_and_tree_on_crafted_bodies, 0,
	                    (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_loop_test(reader, scan_leaves_bodies_read_otherwise, 0,
	                    (int)(sizeof(read_otherwise) / sizeof(read_otherwise[0])));
	tcase_add_test(reader, scan_leaves_deep_body);
	tcase_add_test(reader, reader_leaves_data_before_type_to_the_tree);
	tcase_add_test(reader, reader_leaves_deep_schema_to_the_tree);
	tcase_add_test(reader, scanned_mutations_read_alike);
	tcase_set_timeout(reader, 60);
	suite_add_tcase(s, reader);

	tcase_add_loop_test(screen, scanned_body_filtered_as_parsed_one, 0,
	                    (int)(sizeof(filtered) / sizeof(filtered[0])));
	tcase_add_test(screen, scanned_body_without_match_builds_no_tree);
	tcase_add_test(screen, scanned_body_with_match_masked);
	tcase_add_test(screen, response_filter_leaves_request_unread);
	suite_add_tcase(s, screen);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(filter_request_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
