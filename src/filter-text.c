/*
 * The texts of OpenAI-shaped and Anthropic Messages JSON bodies, found in
 * a jansson tree or read with yajl's event parser, and
 * the synchronous filters over them: regex rules (flag, mask, block) and
 * in-process plugins.
 */
#include <assert.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <tollgate/plugin.h>
#include <yajl/yajl_parse.h>

#include "filter-args.h"
#include "filter-members.h"
#include "filter-number.h"
#include "filter-plugin.h"
#include "filter.h"
#include "json-splice.h"
#include "json-writer.h"
#include "reply-digest.h"
#include "yajl-arena.h"
#include "yajl-jansson.h"

void
tg_text_list_free(struct tg_text_list *list)
{
	/* Most lists own nothing, and every request frees one. */
	if (list->n_owned > 0) {
		for (size_t i = 0; i < list->n; i++) {
			if (list->kinds[i] == TG_TEXT_KEY || list->kinds[i] == TG_TEXT_NUMBER)
				json_decref(list->items[i]);
		}
		free(list->slots);
	}
	free(list->items);
	free(list->kinds);
	memset(list, 0, sizeof(*list));
}

/* Make room for cap slots (struct tg_text_slot). */
static int
grow_slots(struct tg_text_list *list, size_t cap)
{
	struct tg_text_slot *slots = realloc(list->slots, cap * sizeof(*slots));

	if (slots == NULL)
		return -1;
	list->slots = slots;
	return 0;
}

/* Append value to the list with the way the filters read it. */
static int
add_text(struct tg_text_list *list, json_t *value, enum tg_text_kind kind)
{
	if (list->n == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		json_t **items = realloc(list->items, cap * sizeof(*items));
		unsigned char *kinds;

		if (items == NULL)
			return -1;
		list->items = items;
		kinds = realloc(list->kinds, cap);
		if (kinds == NULL)
			return -1;
		list->kinds = kinds;
		if (list->slots != NULL && grow_slots(list, cap) != 0)
			return -1;
		list->cap = cap;
	}
	list->kinds[list->n] = (unsigned char)kind;
	list->items[list->n++] = value;
	return 0;
}

int
tg_text_list_add(struct tg_text_list *list, json_t *value)
{
	return add_text(list, value, TG_TEXT_PLAIN);
}

/* Append a copy of key, len bytes of an object's key, as a TG_TEXT_KEY
 * text. The filters read the copy, and the list frees it, so a mask has
 * no way to rewrite the key; a mask that matches it blocks. jansson
 * checked the key's UTF-8 when it parsed the body. */
static int
add_key(struct tg_text_list *list, const char *key, size_t len)
{
	json_t *copy = json_stringn_nocheck(key, len);

	if (copy == NULL)
		return -1;
	if (add_text(list, copy, TG_TEXT_KEY) != 0) {
		json_decref(copy);
		return -1;
	}
	list->n_owned++;
	return 0;
}

/* Append the number value, a member key or the item index of parent, as
 * a TG_TEXT_NUMBER text: a string of the text it is read by. A number of
 * data read verbatim (kind) is never rewritten either. */
static int
add_number(struct tg_text_list *list, json_t *parent, const char *key, size_t index,
           json_t *value, enum tg_text_kind kind)
{
	char text[TG_JSON_DOUBLE_SIZE];
	size_t len = json_is_integer(value)
	                     ? (size_t)snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT,
	                                        json_integer_value(value))
	                     : tg_number_real_text(json_real_value(value), text);
	json_t *copy = json_stringn_nocheck(text, len);

	if (copy == NULL)
		return -1;
	if ((list->slots == NULL && grow_slots(list, list->cap ? list->cap : 16) != 0) ||
	    add_text(list, copy, TG_TEXT_NUMBER) != 0) {
		json_decref(copy);
		return -1;
	}
	list->slots[list->n - 1] = (struct tg_text_slot){parent, key, index,
	                                                 kind == TG_TEXT_VERBATIM};
	list->n_owned++;
	return 0;
}

/* Put the masked string of number text i in the number's place. */
static int
place_number(const struct tg_text_list *list, size_t i)
{
	const struct tg_text_slot *slot = &list->slots[i];

	return slot->key != NULL ? json_object_set(slot->parent, slot->key, list->items[i])
	                         : json_array_set(slot->parent, slot->index, list->items[i]);
}

/* --- which members are texts -------------------------------------------- */

/*
 * The places of OpenAI-shaped and Anthropic Messages bodies that contain
 * texts, as one table. Both readers follow it: the tree walk, which
 * collects the strings the filters may rewrite, and the yajl reader, which
 * scans a response without building a tree. A value is read by a rule: a
 * string is a text when the rule's text is set, the items of an array are
 * read by the rule's items rule, and the members of an object by the
 * rule's members. A rule with "all" set reads every string inside the
 * value, at any depth, as a text. Any other value contains no text.
 * Requests and responses share the reader; each starts from its root rule.
 *
 * The two shapes share the rules where their members mean the same: a
 * message's "content" is a string or an array of parts in both, and a
 * part's "text" is its text whatever its "type". Members of one shape do
 * not occur in the other, so each reads the other's members in vain.
 *
 * A rule with "schema" set reads a JSON Schema (schema_key()): only
 * strings that the model reads as prose or as a choice are texts, so a
 * mask leaves the schema's keys, types and structure as they were.
 */
enum rule {
	R_NONE,
	R_TEXT,                 /* a string */
	R_VERBATIM,             /* a string read, never rewritten
	                           (TG_TEXT_VERBATIM) */
	R_NAME,                 /* the name of a tool, a call or a format:
	                           read as R_VERBATIM, in requests only
	                           (S_REQUEST) */
	R_TEXTS,                /* a string, or an array of them ("prompt",
	                           "suffix"), or a prompt template */
	R_VARIABLES,            /* a prompt template's "variables": each
	                           member a string or a text part */
	R_INPUT,                /* "input": a string, or an array of strings and
	                           Responses API items */
	R_INPUT_ITEM,           /* a string, or an item of the Responses API:
	                           a message, a tool call or a tool's output,
	                           a reasoning item */
	R_CONTENT,              /* a string, or an array of parts, or one part
	                           as an object, which some servers take */
	R_BLOCKS,               /* an array of parts: a response's "content" */
	R_PART,                 /* {"type": "text", "text": ...}, a refusal part,
	                           "input_text" and "output_text" parts of the
	                           Responses API shape, and Anthropic's content
	                           blocks: text, thinking, tool_use, tool_result,
	                           document, search_result */
	R_RESULT,               /* a tool_result's "content": a string, or an
	                           array of result parts, or the object of a
	                           server tool's result */
	R_RESULT_PART,          /* a part of a tool result: text, document,
	                           search_result */
	R_SOURCE,               /* a document's "source" */
	R_SOURCE_TYPE,          /* a source's "type", not a text */
	R_SOURCE_DATA,          /* a source's "data": a text when the source's
	                           "type" is "text", not base64 */
	R_TEXT_PARTS,           /* a string, or an array of text parts */
	R_TEXT_PART,            /* a string, or {"type": "text", "text": ...} */
	R_ACTION,               /* what a Responses API tool call did */
	R_OPERATION,            /* an apply_patch_call's "operation" */
	R_LOGS,                 /* a code_interpreter_call's "outputs" */
	R_LOG,
	R_VALUES,               /* every string at any depth: "citations" */
	R_TOOL_INPUT,           /* every string, number and key at any depth:
	                           a tool_use block's "input" */
	R_MESSAGES,
	R_MESSAGE,
	R_CALLS,
	R_CALL,
	R_FUNCTION,             /* a call's "function", or "function_call" */
	R_ARGUMENTS,            /* a JSON text in a string: a call's "arguments" */
	R_CHOICES,
	R_CHOICE,
	R_REQUEST,
	R_RESPONSE,
	R_ERROR,                /* a reply's "error": its "message" */
	R_TOOLS,                /* "tools", and the older "functions" */
	R_TOOL,                 /* a tool of any of the three shapes */
	R_TOOL_FUNCTION,        /* a chat tool's "function" */
	R_SCHEMA,               /* a JSON Schema, at any depth */
	R_PREDICTION,           /* "prediction": predicted output */
	R_RESPONSE_FORMAT,      /* "response_format" of chat completions */
	R_OUTPUT_FORMAT,        /* a "json_schema" format: its description and
	                           schema */
	R_ANNOTATIONS,          /* an output_text part's "annotations", and
	                           a chat message's */
	R_ANNOTATION,
	R_URL_CITATION,         /* a chat annotation's "url_citation" */
	R_REASONING,            /* "reasoning" and "reasoning_content": a
	                           string, or every string of an object or
	                           array given in its place */
	R_REASONING_DETAILS,    /* OpenRouter's "reasoning_details" */
	R_REASONING_DETAIL,
	R_AUDIO,                /* a chat message's "audio": its transcript */
	R_RESULT_BODY,          /* the "content" of a server tool's result:
	                           a string (a file's text), an array of
	                           result parts, or a document */
	R_TEXT_CONFIG,          /* the Responses API's "text": its "format" */
	R_TOOL_CHOICE,          /* "tool_choice", and the older
	                           "function_call": the names it gives */
	R_ALLOWED_TOOLS,        /* chat completions' "allowed_tools" of a
	                           tool choice */
	R_COUNT
};

struct member {
	const char *key;
	size_t len;
	enum rule rule;
};

/* A table entry; the length is counted once, at compile time. */
#define MEMBER(key, rule) {key, sizeof(key) - 1, rule}
#define END_MEMBERS {NULL, 0, R_NONE}

/*
 * Members in the order the tree walk collects them, which is the order
 * tg_filter_texts() logs decisions and names the rule of a block in.
 *
 * A thinking block's "thinking" is read as text: it is model output that
 * clients show, and may repeat what the prompt contained. Masking it
 * changes the text its "signature" covers, so the signature no longer
 * matches if the client sends the block back in a later turn. A block
 * filter has no such cost.
 * A tool_use block's "input" is a JSON object whose strings and numbers
 * are read as texts, at any depth, and masked in place (a number becomes
 * a string), and whose keys are read verbatim, since the tool's code
 * reads its arguments by them. That screens what a model puts into a
 * tool call, as the arguments of an OpenAI tool call are screened.
 *
 * A text block's "citations" have their strings read, so that a
 * cited_text quoted from a document is screened as the stream's
 * citations_delta is.
 *
 * A tool_use block's "name" (and a server_tool_use block's) is read
 * verbatim, in requests only (R_NAME): the model reads the conversation's
 * calls by name, and the client's code dispatches on it, so a mask that
 * matches it blocks.
 *
 * A document block gives the model its "title", its "context" and the
 * text of its "source": the "data" of a source of type "text", or the
 * "content" of one of type "content" (a string or text blocks). These
 * are read as prose and may be masked. A search_result block has the
 * same "title" and "content"; its "source" is a URL string, not read.
 * A tool_result's "content" may hold both kinds of block
 * (RESULT_PART_MEMBERS).
 *
 * The "stdout" and "stderr" of a part are the output of a command that
 * the model reads: each item of a Responses API shell_call_output's
 * "output" has them. They are last, as the rarest keys.
 *
 * NOTE: the "data" of a base64 source (a PDF) and the file a "file" or
 * "url" source names are not read: a regex cannot screen the text they
 * hold.
 */
static const struct member PART_MEMBERS[] = {
	MEMBER("text", R_TEXT), MEMBER("refusal", R_TEXT), MEMBER("thinking", R_TEXT),
	MEMBER("input", R_TOOL_INPUT), MEMBER("content", R_RESULT), MEMBER("citations", R_VALUES),
	MEMBER("title", R_TEXT), MEMBER("context", R_TEXT), MEMBER("source", R_SOURCE),
	MEMBER("name", R_NAME), MEMBER("annotations", R_ANNOTATIONS), MEMBER("stdout", R_TEXT),
	MEMBER("stderr", R_TEXT), END_MEMBERS
};
/* An annotation of a Responses API output_text part, or of a chat
 * message, whose url_citation has the same members: the "title" of a
 * cited web page is text the client shows beside the response text. Its
 * URL, file names and offsets are not read: a mask there would break a
 * link or a file reference, and they name what a tool found, which the
 * model did not write. */
static const struct member ANNOTATION_MEMBERS[] = {
	MEMBER("title", R_TEXT), MEMBER("url_citation", R_URL_CITATION), END_MEMBERS
};
static const struct member URL_CITATION_MEMBERS[] = {
	MEMBER("title", R_TEXT), END_MEMBERS
};
static const struct member RESULT_PART_MEMBERS[] = {
	MEMBER("text", R_TEXT), MEMBER("title", R_TEXT), MEMBER("context", R_TEXT),
	MEMBER("source", R_SOURCE), MEMBER("content", R_TEXT_PARTS), END_MEMBERS
};
/* A source's "data" is read only when its "type" is "text", not "base64"
 * (S_TYPED). */
static const struct member SOURCE_MEMBERS[] = {
	MEMBER("type", R_SOURCE_TYPE), MEMBER("data", R_SOURCE_DATA),
	MEMBER("content", R_TEXT_PARTS), END_MEMBERS
};
static const struct member TEXT_PART_MEMBERS[] = {
	MEMBER("text", R_TEXT), END_MEMBERS
};
/* The result of an Anthropic server tool, in an assistant turn sent
 * back or in a response. It is a web fetch's document ("content"), the
 * output of code the tool ran, the text of a file its text editor viewed
 * ("content", a string) or the "lines" of an edit it made. */
static const struct member RESULT_MEMBERS[] = {
	MEMBER("content", R_RESULT_BODY), MEMBER("stdout", R_TEXT), MEMBER("stderr", R_TEXT),
	MEMBER("lines", R_TEXTS), END_MEMBERS
};
/* "reasoning_content" (DeepSeek and servers that copy it) and
 * "reasoning" carry a model's reasoning, which clients may show as they
 * show the content. A server that gives either as an object or an array
 * has every string in it read (R_REASONING), since no shape of it is
 * known. OpenRouter's "reasoning_details" repeat the reasoning as items:
 * the "text" and "summary" of each are read; their "data" is encrypted.
 * An audio reply's "transcript" is the text the audio speaks, and an
 * annotation's title is shown beside the content.
 * A block removes every member read here from a response's message
 * (tg_text_clear_choice()).
 * A message's "name" names the speaker to the model, so it may contain a
 * person's name or address. A mask that matches it blocks the request
 * instead of rewriting it. OpenAI's API rejects a name with a space or
 * one of < | \ / > (its error message gives that pattern), which a
 * replacement may contain, and two names masked alike would make two
 * speakers one. */
static const struct member MESSAGE_MEMBERS[] = {
	MEMBER("content", R_CONTENT), MEMBER("refusal", R_TEXT),
	MEMBER("reasoning_content", R_REASONING), MEMBER("reasoning", R_REASONING),
	MEMBER("tool_calls", R_CALLS), MEMBER("function_call", R_FUNCTION),
	MEMBER("name", R_VERBATIM), MEMBER("audio", R_AUDIO),
	MEMBER("reasoning_details", R_REASONING_DETAILS), MEMBER("annotations", R_ANNOTATIONS),
	END_MEMBERS
};
static const struct member REASONING_DETAIL_MEMBERS[] = {
	MEMBER("text", R_TEXT), MEMBER("summary", R_TEXT), END_MEMBERS
};
static const struct member AUDIO_MEMBERS[] = {
	MEMBER("transcript", R_TEXT), END_MEMBERS
};
static const struct member CALL_MEMBERS[] = {
	MEMBER("function", R_FUNCTION), END_MEMBERS
};
/* Arguments are JSON text (filter-args.h). In requests and responses each
 * string value, number and key of them is a text of its own, decoded, as
 * in a tool_use block's "input" (run_regex_arguments()). Arguments that are
 * not JSON are one plain text. The text between the values is not read,
 * because that would show each match twice. A number is read as a value,
 * so a card number outside quotes is still found. A stream reads the
 * arguments as plain text and each string value too (filter-stream.c),
 * since it learns only at their end whether they are JSON. */
static const struct member FUNCTION_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("arguments", R_ARGUMENTS), END_MEMBERS
};
static const struct member CHOICE_MEMBERS[] = {
	MEMBER("message", R_MESSAGE), MEMBER("text", R_TEXT), END_MEMBERS
};
/*
 * An item of a Responses API "input" array. The model reads these items
 * as the conversation so far. Read are a message's "content", the
 * "arguments" of a function_call or mcp_call, the "output" of a tool call
 * (a string or parts), and a reasoning item's "summary" and "content".
 * So are a custom_tool_call's "input" (free text), a
 * code_interpreter_call's "code" and the "logs" of its "outputs", and a
 * file_search_call's "queries" and the "text" of its "results". So are
 * an mcp_call's "error", the "action" of a search, shell or computer
 * call, and the "diff" of an apply_patch_call. So is the "stdout" and
 * "stderr" of each part of a shell_call_output's "output"
 * (PART_MEMBERS), and an image_generation_call's "revised_prompt", the
 * prompt the model wrote for the image. The "tools" of an
 * mcp_list_tools item are read as the request's own tools are. The
 * "name" of a call is read verbatim (R_NAME).
 */
static const struct member INPUT_ITEM_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("content", R_CONTENT), MEMBER("arguments", R_ARGUMENTS),
	MEMBER("output", R_CONTENT), MEMBER("summary", R_CONTENT), MEMBER("input", R_TEXT),
	MEMBER("code", R_TEXT), MEMBER("queries", R_TEXTS), MEMBER("results", R_TEXT_PARTS),
	MEMBER("error", R_TEXT), MEMBER("tools", R_TOOLS), MEMBER("action", R_ACTION),
	MEMBER("operation", R_OPERATION), MEMBER("outputs", R_LOGS),
	MEMBER("revised_prompt", R_TEXT), END_MEMBERS
};
/* The "action" of a web search, shell or computer call: its query, the
 * text it found or typed, its commands. */
static const struct member ACTION_MEMBERS[] = {
	MEMBER("query", R_TEXT), MEMBER("pattern", R_TEXT), MEMBER("text", R_TEXT),
	MEMBER("command", R_TEXTS), MEMBER("commands", R_TEXTS), END_MEMBERS
};
static const struct member OPERATION_MEMBERS[] = {
	MEMBER("diff", R_TEXT), END_MEMBERS
};
static const struct member LOG_MEMBERS[] = {
	MEMBER("logs", R_TEXT), END_MEMBERS
};
/*
 * A tool, in the shape of chat completions ({"type": "function",
 * "function": {...}}, or "custom" for a custom tool), of the Responses
 * API (the function's members in the tool) or of Anthropic
 * ("input_schema" for "parameters"). The model
 * reads a tool's description and its parameters' schema as a prompt, so
 * both are read, the schema by R_SCHEMA, and so is an MCP tool's
 * "server_description". A tool's "name" is read verbatim (R_NAME): the
 * model reads it too, and the client's code dispatches on it.
 */
static const struct member TOOL_FUNCTION_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("description", R_TEXT), MEMBER("parameters", R_SCHEMA),
	END_MEMBERS
};
static const struct member TOOL_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("function", R_TOOL_FUNCTION),
	MEMBER("custom", R_TOOL_FUNCTION), MEMBER("description", R_TEXT),
	MEMBER("parameters", R_SCHEMA), MEMBER("input_schema", R_SCHEMA),
	MEMBER("server_description", R_TEXT), END_MEMBERS
};
/* Predicted output is sent to the model with the prompt. A mask there
 * only makes less of it match the completion. */
static const struct member PREDICTION_MEMBERS[] = {
	MEMBER("content", R_CONTENT), END_MEMBERS
};
/* A structured output format: chat completions' "response_format" has
 * it in "json_schema", the Responses API's "text" in "format". Its
 * "name" is read verbatim, since clients find the format by it. */
static const struct member OUTPUT_FORMAT_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("description", R_TEXT), MEMBER("schema", R_SCHEMA),
	END_MEMBERS
};
/*
 * A tool choice names the tool the model must call: {"type": "function",
 * "function": {"name": ...}} in chat completions, {"type": "function",
 * "name": ...} in the Responses API, {"type": "tool", "name": ...} in
 * Anthropic's, {"name": ...} in the older "function_call", or a list of
 * allowed tools in either shape of a tool. A string ("auto", "none") is
 * a mode, not a name.
 */
static const struct member TOOL_CHOICE_MEMBERS[] = {
	MEMBER("name", R_NAME), MEMBER("function", R_TOOL_FUNCTION),
	MEMBER("allowed_tools", R_ALLOWED_TOOLS), MEMBER("tools", R_TOOLS), END_MEMBERS
};
static const struct member ALLOWED_TOOLS_MEMBERS[] = {
	MEMBER("tools", R_TOOLS), END_MEMBERS
};
static const struct member RESPONSE_FORMAT_MEMBERS[] = {
	MEMBER("json_schema", R_OUTPUT_FORMAT), END_MEMBERS
};
static const struct member TEXT_CONFIG_MEMBERS[] = {
	MEMBER("format", R_OUTPUT_FORMAT), END_MEMBERS
};
/* The Responses API's "prompt" is a template, and the model reads its
 * "variables" in its text: each a string or an input_text part. An image
 * or file part contains no text. */
static const struct member PROMPT_MEMBERS[] = {
	MEMBER("variables", R_VARIABLES), END_MEMBERS
};
/* The members of a map: none by name, since the items rule reads each. */
static const struct member MAP_MEMBERS[] = {
	END_MEMBERS
};
/* Anthropic's "system" is a string or an array of text blocks, and the
 * Responses API's "instructions" a string. The legacy completions'
 * "suffix" follows the completion, and the model reads it as it reads
 * "prompt": it is read in the forms "prompt" may take. "suffix" is last,
 * as the rarest key. */
static const struct member REQUEST_MEMBERS[] = {
	MEMBER("system", R_CONTENT), MEMBER("messages", R_MESSAGES), MEMBER("prompt", R_TEXTS),
	MEMBER("input", R_INPUT), MEMBER("instructions", R_TEXT), MEMBER("tools", R_TOOLS),
	MEMBER("functions", R_TOOLS), MEMBER("prediction", R_PREDICTION),
	MEMBER("response_format", R_RESPONSE_FORMAT), MEMBER("text", R_TEXT_CONFIG),
	MEMBER("tool_choice", R_TOOL_CHOICE), MEMBER("function_call", R_TOOL_CHOICE),
	MEMBER("suffix", R_TEXTS), END_MEMBERS
};
/* An error's message may echo the prompt back, in both APIs' shapes, and
 * so may an error given as a string (R_ERROR reads one). Its "param"
 * names a request parameter ("messages[0].content"), which a server may
 * fill with the value it rejects. */
static const struct member ERROR_MEMBERS[] = {
	MEMBER("message", R_TEXT), MEMBER("param", R_TEXT), END_MEMBERS
};
/* An Anthropic message's "content" is an array of blocks; a string there
 * is no shape of either API, and is left unread as before. A Responses
 * API response has the model's output in "output": items of the shapes
 * an "input" array contains (INPUT_ITEM_MEMBERS), read the same way: a
 * message's output_text and refusal parts, a reasoning item's summary
 * and content, a function call's arguments (decoded, as a chat tool
 * call's), a custom tool call's input, and the other tool calls' texts.
 * Some servers add "output_text", the output's text joined as the SDKs
 * join it, which must be masked as the output is. These two are last,
 * so that the chat completion, read most often, finds its keys first. */
static const struct member RESPONSE_MEMBERS[] = {
	MEMBER("choices", R_CHOICES), MEMBER("content", R_BLOCKS), MEMBER("error", R_ERROR),
	MEMBER("output", R_INPUT), MEMBER("output_text", R_TEXT), END_MEMBERS
};

/*
 * The part a string read by a rule plays, besides rule_def.text.
 *
 * Names (R_NAME) are read in requests only. In a response, a tool call's
 * function name or a tool_use block's name, streamed or not, is not read:
 * the model does not write a name of its own there but picks one the
 * request declared, whose tools and tool choice the request filters read.
 * A block there would end every response that calls that tool, for a name
 * the client wrote. The stream readers (filter-chunk.c) skip the name
 * too, so both paths of a response agree.
 * NOTE: chat completions without "strict" may return a name the request
 * did not declare; it reaches the client's dispatch unread.
 */
enum string_role {
	S_PLAIN,
	S_TYPE,                 /* the object's "type": whether it is "text" */
	S_TYPED,                /* a text only when the object's "type" member
	                           is "text" */
	S_REQUEST,              /* a text only in a request */
};

/* What a rule_def.all reads, besides every string: numbers by their value
 * (filter-number.h) and keys verbatim (TG_TEXT_KEY). */
enum {
	ALL_STRINGS = 1,
	ALL_NUMBERS = 2,
	ALL_KEYS = 4,
};

struct rule_def {
	int text;                       /* a string is a text */
	enum rule items;                /* the rule of an array's items, and
	                                   of every member of a map */
	const struct member *members;   /* of an object; NULL: none are read */
	int all;                        /* every string inside, at any depth,
	                                   and with ALL_NUMBERS and ALL_KEYS
	                                   set, every number and key */
	enum tg_text_kind kind;         /* how the filters read the string */
	int schema;                     /* a JSON Schema: schema_key() */
	int map;                        /* an object whose every member is
	                                   read by the items rule; its
	                                   members are MAP_MEMBERS */
	enum string_role role;
	int data;                       /* an object or array is read as
	                                   rule_def.all reads, with these: a
	                                   rule with "all" has them equal, and
	                                   a string rule may read a container
	                                   given in its place so. The yajl
	                                   reader tests this one field. */
};

static const struct rule_def RULES[] = {
	[R_NONE] = {0, R_NONE, NULL, 0},
	[R_TEXT] = {1, R_NONE, NULL, 0},
	[R_VERBATIM] = {1, R_NONE, NULL, 0, TG_TEXT_VERBATIM},
	[R_NAME] = {1, R_NONE, NULL, 0, TG_TEXT_VERBATIM, .role = S_REQUEST},
	[R_TEXTS] = {1, R_TEXT, PROMPT_MEMBERS, 0},     /* nested token arrays are skipped */
	[R_VARIABLES] = {0, R_TEXT_PART, MAP_MEMBERS, 0, .map = 1},
	[R_INPUT] = {1, R_INPUT_ITEM, NULL, 0},
	[R_INPUT_ITEM] = {1, R_NONE, INPUT_ITEM_MEMBERS, 0},
	[R_CONTENT] = {1, R_PART, PART_MEMBERS, 0},     /* an object: one part */
	[R_BLOCKS] = {0, R_PART, PART_MEMBERS, 0},
	[R_PART] = {0, R_NONE, PART_MEMBERS, 0},
	[R_RESULT] = {1, R_RESULT_PART, RESULT_MEMBERS, 0},
	[R_RESULT_PART] = {0, R_NONE, RESULT_PART_MEMBERS, 0},
	[R_SOURCE] = {0, R_NONE, SOURCE_MEMBERS, 0},
	[R_SOURCE_TYPE] = {0, R_NONE, NULL, 0, .role = S_TYPE},
	[R_SOURCE_DATA] = {1, R_NONE, NULL, 0, .role = S_TYPED},
	[R_TEXT_PARTS] = {1, R_TEXT_PART, NULL, 0},
	[R_TEXT_PART] = {1, R_NONE, TEXT_PART_MEMBERS, 0},
	[R_ACTION] = {0, R_NONE, ACTION_MEMBERS, 0},
	[R_OPERATION] = {0, R_NONE, OPERATION_MEMBERS, 0},
	[R_LOGS] = {0, R_LOG, NULL, 0},
	[R_LOG] = {0, R_NONE, LOG_MEMBERS, 0},
	[R_VALUES] = {1, R_NONE, NULL, ALL_STRINGS, .data = ALL_STRINGS},
	[R_TOOL_INPUT] = {1, R_NONE, NULL, ALL_STRINGS | ALL_NUMBERS | ALL_KEYS,
	                  .data = ALL_STRINGS | ALL_NUMBERS | ALL_KEYS},
	[R_MESSAGES] = {0, R_MESSAGE, NULL, 0},
	[R_MESSAGE] = {0, R_NONE, MESSAGE_MEMBERS, 0},
	[R_CALLS] = {0, R_CALL, NULL, 0},
	[R_CALL] = {0, R_NONE, CALL_MEMBERS, 0},
	[R_FUNCTION] = {0, R_NONE, FUNCTION_MEMBERS, 0},
	[R_ARGUMENTS] = {1, R_NONE, NULL, 0, TG_TEXT_ARGUMENTS,
	                 .data = ALL_STRINGS | ALL_NUMBERS | ALL_KEYS},
	[R_CHOICES] = {0, R_CHOICE, NULL, 0},
	[R_CHOICE] = {0, R_NONE, CHOICE_MEMBERS, 0},
	[R_REQUEST] = {0, R_NONE, REQUEST_MEMBERS, 0},
	[R_RESPONSE] = {0, R_NONE, RESPONSE_MEMBERS, 0},
	[R_ERROR] = {1, R_NONE, ERROR_MEMBERS, 0},
	[R_TOOLS] = {0, R_TOOL, NULL, 0},
	[R_TOOL] = {0, R_NONE, TOOL_MEMBERS, 0},
	[R_TOOL_FUNCTION] = {0, R_NONE, TOOL_FUNCTION_MEMBERS, 0},
	[R_SCHEMA] = {0, R_NONE, NULL, 0, TG_TEXT_PLAIN, 1},
	[R_PREDICTION] = {0, R_NONE, PREDICTION_MEMBERS, 0},
	[R_RESPONSE_FORMAT] = {0, R_NONE, RESPONSE_FORMAT_MEMBERS, 0},
	[R_OUTPUT_FORMAT] = {0, R_NONE, OUTPUT_FORMAT_MEMBERS, 0},
	[R_ANNOTATIONS] = {0, R_ANNOTATION, NULL, 0},
	[R_ANNOTATION] = {0, R_NONE, ANNOTATION_MEMBERS, 0},
	[R_URL_CITATION] = {0, R_NONE, URL_CITATION_MEMBERS, 0},
	[R_REASONING] = {1, R_NONE, NULL, 0, .data = ALL_STRINGS},
	[R_REASONING_DETAILS] = {0, R_REASONING_DETAIL, NULL, 0},
	[R_REASONING_DETAIL] = {0, R_NONE, REASONING_DETAIL_MEMBERS, 0},
	[R_AUDIO] = {0, R_NONE, AUDIO_MEMBERS, 0},
	[R_RESULT_BODY] = {1, R_RESULT_PART, RESULT_PART_MEMBERS, 0},
	[R_TEXT_CONFIG] = {0, R_NONE, TEXT_CONFIG_MEMBERS, 0},
	[R_TOOL_CHOICE] = {0, R_NONE, TOOL_CHOICE_MEMBERS, 0},
	[R_ALLOWED_TOOLS] = {0, R_NONE, ALLOWED_TOOLS_MEMBERS, 0},
};

/*
 * The strings of a JSON Schema that are texts. The model reads a
 * schema's "description" and "title" as prose, at any depth (properties,
 * items, $defs, anyOf), so these are read and may be masked.
 *
 * The values of "enum", "const" and "default" are data the model is
 * shown as the values to choose or give. Every string inside them, at
 * any depth, is read verbatim (TG_TEXT_VERBATIM), because the client's
 * code compares the model's output with them (const is an enum of one
 * value), and fills a missing value with the default.
 *
 * The values of "examples" (and OpenAPI's "example") are data too, read
 * at any depth, but plain: they only illustrate a value to the model. No
 * client code compares an answer with them, and validators do not hold
 * examples to the schema, so a mask there changes only what the model is
 * shown, as it does in a description.
 *
 * The keys of objects inside these values are not read: the data is an
 * example or a choice, not a call. Every other string is structure:
 * a key, a "type", a "$ref". A mask there would break the schema.
 *
 * The keys of "properties" and its like are names, not keywords: a
 * property named "default" is a schema, not data. The model reads them,
 * and the client's code reads the values by them, so they are read as
 * keys (TG_TEXT_KEY), which a mask that matches blocks. The names in
 * "required" are the same names, read verbatim as data.
 */
enum schema_key {
	SK_OTHER,               /* a keyword of structure, or one whose value
	                           is a schema */
	SK_TEXT,                /* its string value is a text */
	SK_VERBATIM,            /* its value is data of verbatim texts */
	SK_EXAMPLES,            /* its value is data of plain texts */
	SK_NAMES,               /* its object maps names to schemas */
};

struct schema_keyword {
	const char *key;
	size_t len;
	enum schema_key kind;
};

#define KEYWORD(key, kind) {key, sizeof(key) - 1, kind}

static const struct schema_keyword SCHEMA_KEYWORDS[] = {
	KEYWORD("description", SK_TEXT), KEYWORD("title", SK_TEXT), KEYWORD("$comment", SK_TEXT),
	KEYWORD("enum", SK_VERBATIM), KEYWORD("const", SK_VERBATIM),
	KEYWORD("default", SK_VERBATIM), KEYWORD("required", SK_VERBATIM),
	KEYWORD("examples", SK_EXAMPLES),
	KEYWORD("example", SK_EXAMPLES), KEYWORD("properties", SK_NAMES),
	KEYWORD("patternProperties", SK_NAMES), KEYWORD("$defs", SK_NAMES),
	KEYWORD("definitions", SK_NAMES), KEYWORD("dependentSchemas", SK_NAMES),
	KEYWORD("dependencies", SK_NAMES),
};

static enum schema_key
schema_key(const char *key, size_t len)
{
	for (size_t i = 0; i < sizeof(SCHEMA_KEYWORDS) / sizeof(SCHEMA_KEYWORDS[0]); i++) {
		const struct schema_keyword *k = &SCHEMA_KEYWORDS[i];

		if (k->len == len && memcmp(key, k->key, len) == 0)
			return k->kind;
	}
	return SK_OTHER;
}

/* The kind of text of the strings of data under a key of kind k. */
static enum tg_text_kind
data_kind(enum schema_key k)
{
	return k == SK_VERBATIM ? TG_TEXT_VERBATIM : TG_TEXT_PLAIN;
}

/* The maximum number of containers open on a rule path: request,
 * messages, message, content, tool_result, its content, a document in
 * it, the document's source, its content, a text block of that.
 * The containers inside an R_VALUES value need no frame (struct
 * text_reader). */
#define MAX_RULE_DEPTH 10

/* --- texts of a tree ---------------------------------------------------- */

static int walk_values(struct tg_text_list *list, json_t *value, enum tg_text_kind kind,
                       int reads);

/* Collect item, the member key or the item index of parent: a number as
 * a TG_TEXT_NUMBER text, anything else by walk_values(). */
static int
walk_value_in(struct tg_text_list *list, json_t *parent, const char *key, size_t index,
              json_t *item, enum tg_text_kind kind, int reads)
{
	if (json_is_number(item))
		return reads & ALL_NUMBERS ? add_number(list, parent, key, index, item, kind) : 0;
	return walk_values(list, item, kind, reads);
}

/* Collect every string inside value, at any depth, members in the order
 * the tree keeps them, each string of the given kind, and, as reads sets
 * (rule_def.all), each number and each key (TG_TEXT_KEY) before its value.
 * A number alone, not in a container, has no place a mask could write
 * to, and is not read. jansson limits the depth it parses to, so the
 * recursion is bounded. */
static int
walk_values(struct tg_text_list *list, json_t *value, enum tg_text_kind kind, int reads)
{
	const char *key;
	size_t i, len;
	json_t *item;

	if (json_is_string(value))
		return add_text(list, value, kind);
	json_array_foreach(value, i, item) {
		if (walk_value_in(list, value, NULL, i, item, kind, reads) != 0)
			return -1;
	}
	json_object_keylen_foreach(value, key, len, item) {
		if ((reads & ALL_KEYS) && add_key(list, key, len) != 0)
			return -1;
		if (walk_value_in(list, value, key, 0, item, kind, reads) != 0)
			return -1;
	}
	return 0;
}

static int walk_schema(struct tg_text_list *list, json_t *value);

/* Collect each name of an object of names (SK_NAMES), as a key, and
 * then the texts of the schema it maps to. */
static int
walk_schema_names(struct tg_text_list *list, json_t *value)
{
	const char *key;
	size_t len;
	json_t *item;

	if (!json_is_object(value))
		return walk_schema(list, value);
	json_object_keylen_foreach(value, key, len, item) {
		if (add_key(list, key, len) != 0 || walk_schema(list, item) != 0)
			return -1;
	}
	return 0;
}

/* Collect the texts of the member key of a JSON Schema, whose value is
 * value (enum schema_key). */
static int
walk_schema_member(struct tg_text_list *list, json_t *schema, const char *key, size_t len,
                   json_t *value)
{
	enum schema_key k = schema_key(key, len);

	switch (k) {
	case SK_TEXT:
		if (json_is_string(value))
			return add_text(list, value, TG_TEXT_PLAIN);
		return walk_schema(list, value);
	case SK_VERBATIM:
	case SK_EXAMPLES:
		return walk_value_in(list, schema, key, 0, value, data_kind(k),
		                     ALL_STRINGS | ALL_NUMBERS);
	case SK_NAMES:
		return walk_schema_names(list, value);
	case SK_OTHER:
		break;
	}
	return walk_schema(list, value);
}

/* Collect the texts of a JSON Schema, or of an array of them, in the
 * order the tree keeps members. A string in such a place is structure.
 * jansson bounds the depth it parses to, and so the recursion. */
static int
walk_schema(struct tg_text_list *list, json_t *value)
{
	const char *key;
	size_t i, len;
	json_t *item;

	json_array_foreach(value, i, item) {
		if (walk_schema(list, item) != 0)
			return -1;
	}
	json_object_keylen_foreach(value, key, len, item) {
		if (walk_schema_member(list, value, key, len, item) != 0)
			return -1;
	}
	return 0;
}

/* Whether object's "type" member is the string "text" (S_TYPED). */
static int
has_text_type(json_t *object)
{
	json_t *type = json_object_get(object, "type");

	return json_is_string(type) && json_string_length(type) == 4 &&
	       memcmp(json_string_value(type), "text", 4) == 0;
}

static int walk_tree(struct tg_text_list *list, json_t *value, enum rule r, int request);

/* Whether a member read by rule r is read where it is: S_TYPED only in
 * an object of type "text", S_REQUEST only in a request. */
static int
member_read(enum rule r, json_t *object, int request)
{
	switch (RULES[r].role) {
	case S_TYPED:
		return has_text_type(object);
	case S_REQUEST:
		return request;
	default:
		return 1;
	}
}

/* Collect the texts of the members of object, read by the rules of
 * members, in the table's order. */
static int
walk_members(struct tg_text_list *list, json_t *object, const struct member *members,
             int request)
{
	for (const struct member *m = members; m->key != NULL; m++) {
		if (!member_read(m->rule, object, request))
			continue;
		if (walk_tree(list, json_object_get(object, m->key), m->rule, request) != 0)
			return -1;
	}
	return 0;
}

/* Collect the texts of value read by rule r, in a request body when
 * request is set. Objects are read member by member in the table's
 * order, so a member given twice in the text counts once, with the value
 * the tree kept (the last). */
static int
walk_tree(struct tg_text_list *list, json_t *value, enum rule r, int request)
{
	const struct rule_def *def = &RULES[r];
	const char *key;
	size_t i;
	json_t *item;

	if (def->all)
		return walk_values(list, value, TG_TEXT_PLAIN, def->all);
	if (def->schema)
		return walk_schema(list, value);

	if (json_is_string(value))
		return def->text ? add_text(list, value, def->kind) : 0;
	if (def->data && (json_is_object(value) || json_is_array(value)))
		return walk_values(list, value, TG_TEXT_PLAIN, def->data);

	if (json_is_array(value) && def->items != R_NONE) {
		json_array_foreach(value, i, item) {
			if (walk_tree(list, item, def->items, request) != 0)
				return -1;
		}
		return 0;
	}

	if (json_is_object(value) && def->map) {
		json_object_foreach(value, key, item) {
			if (walk_tree(list, item, def->items, request) != 0)
				return -1;
		}
		return 0;
	}
	if (json_is_object(value) && def->members != NULL)
		return walk_members(list, value, def->members, request);
	return 0;
}

int
tg_text_collect_request(json_t *body, struct tg_text_list *out)
{
	return walk_tree(out, body, R_REQUEST, 1);
}

int
tg_text_collect_response(json_t *body, struct tg_text_list *out)
{
	return walk_tree(out, body, R_RESPONSE, 0);
}

/* The message members that a block removes from a choice: every member
 * that MESSAGE_MEMBERS reads but "content", which the chat completion
 * shape requires, and which becomes null. */
void
tg_text_clear_choice(json_t *choice)
{
	json_t *message = json_object_get(choice, "message");

	if (json_is_object(message)) {
		for (const struct member *m = MESSAGE_MEMBERS; m->key != NULL; m++)
			json_object_del(message, m->key);
		json_object_set_new(message, "content", json_null());
	}
	if (json_object_get(choice, "text") != NULL)
		json_object_set_new(choice, "text", json_string(""));
}

/* --- the tables as a cursor (filter-members.h) ---------------------------- */

unsigned
tg_member_block(void)
{
	return R_PART;
}

unsigned
tg_member_of(unsigned rule, const char *key, size_t len)
{
	const struct member *m = rule < R_COUNT ? RULES[rule].members : NULL;

	for (; m != NULL && m->key != NULL; m++) {
		if (m->len == len && memcmp(key, m->key, len) == 0)
			return m->rule;
	}
	return R_NONE;
}

unsigned
tg_member_item(unsigned rule)
{
	return rule < R_COUNT ? RULES[rule].items : R_NONE;
}

/* A name (S_REQUEST) is read in requests only; the stream reads
 * responses. */
enum tg_member_string
tg_member_string(unsigned rule)
{
	if (rule >= R_COUNT || !(RULES[rule].text || RULES[rule].role == S_TYPE))
		return TG_MEMBER_NONE;
	switch (RULES[rule].role) {
	case S_TYPE:
		return TG_MEMBER_TYPE;
	case S_TYPED:
		return TG_MEMBER_TYPED;
	case S_REQUEST:
		return TG_MEMBER_NONE;
	default:
		return TG_MEMBER_TEXT;
	}
}

/* A schema is read whole here: it has no place in a response. */
int
tg_member_all(unsigned rule)
{
	return rule < R_COUNT && (RULES[rule].all || RULES[rule].data || RULES[rule].schema);
}

/* --- texts of a body read with yajl -------------------------------------- */

/*
 * One container open on the way to a text. Containers without texts get
 * no frame. The reader counts them in skip and ignores their contents.
 * Nor do the containers of an R_VALUES value, whose depth has no bound:
 * the reader counts them in all, and every string inside is a text. The
 * data of a schema's "enum", "const", "default" and "examples" is read
 * the same way. Nor do the containers of a JSON Schema, counted in
 * schema: there a string is a text when it follows a key that
 * schema_key() names. The bit of names for each depth is set when the
 * container there maps names to schemas (SK_NAMES).
 */
struct frame {
	unsigned char array;
	signed char text_type;  /* an object's "type" (S_TYPE): 1 when it is
	                           "text", -1 another, 0 not read yet */
	unsigned char rule;     /* an array's items rule, or the object's own */
	unsigned char member;   /* an object's: the rule of the last key's value */
	unsigned char other;    /* an object's: the rule of a key that no
	                           member names, the items rule of a map */
};

/* A rule fits the bytes of a frame, which keep the frames small for the
 * reader's room (struct tg_text_tap_room). */
_Static_assert(R_COUNT <= UCHAR_MAX, "enum rule does not fit struct frame");

/* The depth of containers in a JSON Schema that the reader follows. A
 * deeper schema leaves the body to the tree (text_reader.unsure). */
#define MAX_SCHEMA_DEPTH 128

struct text_reader {
	tg_text_fn *fn;
	void *arg;
	enum rule root;
	int unsure;             /* stopped, so that the tree decides: at a
	                           schema deeper than MAX_SCHEMA_DEPTH, or a
	                           source's "data" before its "type" */
	size_t skip;            /* containers open inside one without texts */
	size_t all;             /* containers open inside an R_VALUES value,
	                           or inside the data of a schema keyword */
	int all_reads;          /* what is read there besides strings:
	                           rule_def.all, or numbers in schema data */
	size_t schema;          /* containers open inside a JSON Schema */
	enum schema_key key;    /* of the key just read inside a schema;
	                           SK_OTHER after any other event */
	const char *args;       /* the arguments read_arguments() reads */
	size_t args_len;
	int n_frames;
	/* Written before they are read: reader_init() leaves them be. */
	struct frame frames[MAX_RULE_DEPTH];
	unsigned char names[MAX_SCHEMA_DEPTH / 8];      /* bit d - 1 for the
	                                                   schema container
	                                                   at depth d */
};

static void
reader_init(struct text_reader *r, tg_text_fn *fn, void *arg, enum rule root)
{
	memset(r, 0, offsetof(struct text_reader, frames));
	r->fn = fn;
	r->arg = arg;
	r->root = root;
}

/* The rule of the next value in the innermost container. */
static enum rule
next_rule(const struct text_reader *r)
{
	const struct frame *f;

	if (r->n_frames == 0)
		return r->root;
	f = &r->frames[r->n_frames - 1];
	return f->array ? f->rule : f->member;
}

/* Whether the innermost container of a schema maps names to schemas. */
static int
in_names(const struct text_reader *r)
{
	size_t bit = r->schema - 1;

	return (r->names[bit / 8] >> (bit % 8)) & 1;
}

/* A container starts inside a JSON Schema, after a key of kind r->key
 * when it is a member. The value of a data keyword is read as R_VALUES
 * is. Returns 1, or 0 when the schema is too deep to follow. */
static int
open_in_schema(struct text_reader *r, int array)
{
	enum schema_key k = r->key;
	size_t bit = r->schema;
	unsigned char mask = (unsigned char)(1u << (bit % 8));

	r->key = SK_OTHER;
	if (k == SK_VERBATIM || k == SK_EXAMPLES) {
		r->all = 1;
		r->all_reads = ALL_STRINGS | ALL_NUMBERS;
		return 1;
	}
	if (r->schema == MAX_SCHEMA_DEPTH) {
		r->unsure = 1;
		return 0;
	}
	if (!array && k == SK_NAMES)
		r->names[bit / 8] |= mask;
	else
		r->names[bit / 8] &= (unsigned char)~mask;
	r->schema++;
	return 1;
}

/* A container starts: give it a frame when the rule reads its contents. */
static int
open_container(struct text_reader *r, int array)
{
	enum rule rule;
	const struct rule_def *def;
	int reads;

	if (r->skip > 0) {
		r->skip++;
		return 1;
	}
	if (r->all > 0) {
		r->all++;
		return 1;
	}
	if (r->schema > 0)
		return open_in_schema(r, array);
	rule = next_rule(r);
	def = &RULES[rule];
	if (def->data) {
		r->all = 1;
		r->all_reads = def->data;
		return 1;
	}
	if (def->schema) {
		r->key = SK_OTHER;
		return open_in_schema(r, array);
	}
	reads = array ? def->items != R_NONE : def->members != NULL;
	if (!reads) {
		r->skip = 1;
		return 1;
	}

	/* The table has no cycle, so its paths fit the frames. */
	assert(r->n_frames < MAX_RULE_DEPTH);
	r->frames[r->n_frames++] = (struct frame){
		(unsigned char)array, 0, (unsigned char)(array ? def->items : rule), R_NONE,
		(unsigned char)(def->map ? def->items : R_NONE)
	};
	return 1;
}

static int
on_start_map(void *ctx)
{
	return open_container(ctx, 0);
}

static int
on_start_array(void *ctx)
{
	return open_container(ctx, 1);
}

static int
on_end(void *ctx)
{
	struct text_reader *r = ctx;

	if (r->skip > 0) {
		r->skip--;
	} else if (r->all > 0) {
		r->all--;
	} else if (r->schema > 0) {
		r->schema--;
		r->key = SK_OTHER;
	} else {
		r->n_frames--;
	}
	return 1;
}

/* A key inside a JSON Schema: a name (SK_NAMES), which is a text of its
 * own, or a keyword. Returns 0 when fn stopped the read. Kept out of
 * on_map_key(), whose keys of a chat request pay for the registers its
 * inlined loop needs. */
static __attribute__((noinline)) int
on_schema_key(struct text_reader *r, const unsigned char *key, size_t len)
{
	if (in_names(r)) {
		r->key = SK_OTHER;
		return r->fn(r->arg, (const char *)key, len) == 0;
	}
	r->key = schema_key((const char *)key, len);
	return 1;
}

/* A key inside the data that an R_TOOL_INPUT or schema keyword opened:
 * a text of its own when rule_def.all reads keys there. Returns 0 when fn
 * stopped the read. Kept out of on_map_key() as on_schema_key() is. */
static __attribute__((noinline)) int
on_data_key(struct text_reader *r, const unsigned char *key, size_t len)
{
	return r->all_reads & ALL_KEYS ? r->fn(r->arg, (const char *)key, len) == 0 : 1;
}

static int
on_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct text_reader *r = ctx;
	struct frame *f;

	if (r->skip > 0 || r->all > 0)
		return r->skip > 0 ? 1 : on_data_key(r, key, len);
	if (r->schema > 0)
		return on_schema_key(r, key, len);
	f = &r->frames[r->n_frames - 1];
	f->member = f->other;

	/* A member's key is never empty, so the first bytes compare first:
	 * they tell most keys of the same length apart without a call. */
	for (const struct member *m = RULES[f->rule].members; m->key != NULL; m++) {
		if (m->len == len && m->key[0] == (char)key[0] && memcmp(key, m->key, len) == 0) {
			f->member = (unsigned char)m->rule;
			break;
		}
	}
	return 1;
}

/* Pass fn the texts of arguments as the filters read them
 * (run_regex_arguments()): each value when they are JSON, or else the
 * arguments as they are and their escaped strings decoded. Returns 1 to
 * go on, 0 to stop; out of memory stops the read too, which then fails
 * closed. */
static int
pass_value(void *arg, const char *text, size_t len, size_t end)
{
	struct text_reader *r = arg;
	char digits[TG_NUMBER_TEXT_SIZE];
	size_t read_len = len;
	const char *read = tg_args_is_number(r->args, r->args_len, text, len, end)
	                           ? tg_number_read_text(text, len, digits, &read_len)
	                           : text;

	return r->fn(r->arg, read, read_len);
}

/* A key of arguments is a text of its own too, read verbatim
 * (run_regex_keys()). */
static int
pass_key(void *arg, const char *text, size_t len)
{
	struct text_reader *r = arg;

	return r->fn(r->arg, text, len);
}

static int
read_arguments(struct text_reader *r, const char *s, size_t len)
{
	int rc;

	r->args = s;
	r->args_len = len;
	rc = tg_args_values(s, len, pass_value, pass_key, r);

	if (rc == TG_ARGS_NOT_JSON) {
		if (r->fn(r->arg, s, len) != 0)
			return 0;
		rc = tg_args_read(s, len, r->fn, r->arg);
	}
	return rc == 0;
}

/* A string inside a JSON Schema: a text when it is the value of a key
 * that names a text or data. */
static int
on_schema_string(struct text_reader *r, const char *s, size_t len)
{
	enum schema_key k = r->key;

	r->key = SK_OTHER;
	if (k == SK_TEXT || k == SK_VERBATIM || k == SK_EXAMPLES)
		return r->fn(r->arg, s, len) == 0;
	return 1;
}

/* A string of a rule with a role (enum string_role): a name, which is a
 * text of requests only, an object's "type", or a member that is a text
 * only when that type is "text". The tree finds the type wherever it is,
 * and keeps the last of two. When the type comes after the member, or
 * twice, the reader stops, unsure, and leaves the body to the tree. */
static int
on_role_string(struct text_reader *r, enum string_role role, const char *s, size_t len)
{
	struct frame *f;
	int type_read;

	if (role == S_REQUEST)
		return r->root == R_REQUEST ? r->fn(r->arg, s, len) == 0 : 1;
	assert(r->n_frames > 0);
	f = &r->frames[r->n_frames - 1];
	type_read = f->text_type != 0;
	if (role == S_TYPE ? type_read : !type_read) {
		r->unsure = 1;
		return 0;
	}
	if (role == S_TYPE) {
		f->text_type = len == 4 && memcmp(s, "text", 4) == 0 ? 1 : -1;
		return 1;
	}
	return f->text_type > 0 ? r->fn(r->arg, s, len) == 0 : 1;
}

/* A string, decoded by yajl, is a text when its rule's text is set.
 * Returning 0 makes yajl stop with yajl_status_client_canceled. */
static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct text_reader *r = ctx;
	enum rule rule;

	if (r->skip > 0)
		return 1;
	if (r->all > 0)
		return r->fn(r->arg, (const char *)s, len) == 0;
	if (r->schema > 0)
		return on_schema_string(r, (const char *)s, len);
	rule = next_rule(r);
	if (RULES[rule].role != S_PLAIN)
		return on_role_string(r, RULES[rule].role, (const char *)s, len);
	if (!RULES[rule].text)
		return 1;
	if (RULES[rule].kind == TG_TEXT_ARGUMENTS)
		return read_arguments(r, (const char *)s, len);
	return r->fn(r->arg, (const char *)s, len) == 0;
}

/* Whether a number read now is data the filters read: inside a tool_use
 * block's "input", or the data of a schema keyword ("default",
 * "examples"). Resets the schema's key, as a string does. */
static int
number_is_text(struct text_reader *r)
{
	enum schema_key k = r->key;

	if (r->skip > 0)
		return 0;
	if (r->all > 0)
		return (r->all_reads & ALL_NUMBERS) != 0;
	r->key = SK_OTHER;
	return r->schema > 0 && (k == SK_VERBATIM || k == SK_EXAMPLES);
}

/*
 * Numbers come converted, as the reply digest's tap takes them, so the
 * filters read a number by its value (filter-number.h), as the tree walk
 * does (walk_values()): an integer's digits, a real's integer digits when
 * its value is one.
 */
static int
on_integer(void *ctx, long long value)
{
	struct text_reader *r = ctx;
	char text[TG_JSON_DOUBLE_SIZE];
	int len;

	if (!number_is_text(r))
		return 1;
	len = snprintf(text, sizeof(text), "%lld", value);
	return r->fn(r->arg, text, (size_t)len) == 0;
}

static int
on_double(void *ctx, double value)
{
	struct text_reader *r = ctx;
	char text[TG_JSON_DOUBLE_SIZE];

	if (!number_is_text(r))
		return 1;
	return r->fn(r->arg, text, tg_number_real_text(value, text)) == 0;
}

/* In a read of its own, numbers come as text, and are converted as the
 * reply digest converts them for its tap, so that an integer beyond 64
 * bits reads as a real here too rather than failing the parse. */
static int
on_number_text(void *ctx, const char *s, size_t len)
{
	return tg_yj_number_as(ctx, s, len, on_integer, on_double);
}

/* Booleans and null contain no text and need no callback. A tap gets
 * numbers converted (reply-digest.h). */
static const yajl_callbacks TEXT_CALLBACKS = {
	.yajl_integer = on_integer,
	.yajl_double = on_double,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* The same for read_texts(), its own parse. */
static const yajl_callbacks OWN_TEXT_CALLBACKS = {
	.yajl_number = on_number_text,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* Feed the contents of body to h segment by segment, so a body that
 * arrived in pieces is not copied into one block first. */
static yajl_status
parse_buffer(yajl_handle h, struct evbuffer *body)
{
	size_t total = evbuffer_get_length(body), done = 0;
	struct evbuffer_ptr at;
	struct evbuffer_iovec seg;
	yajl_status st = yajl_status_ok;

	evbuffer_ptr_set(body, &at, 0, EVBUFFER_PTR_SET);
	while (st == yajl_status_ok && done < total) {
		if (evbuffer_peek(body, -1, &at, &seg, 1) < 1)
			return yajl_status_error;
		st = yajl_parse(h, seg.iov_base, seg.iov_len);
		done += seg.iov_len;
		if (done < total && evbuffer_ptr_set(body, &at, seg.iov_len, EVBUFFER_PTR_ADD) != 0)
			return yajl_status_error;
	}
	return st == yajl_status_ok ? yajl_complete_parse(h) : st;
}

/* Read the texts of body by the rules from root, as
 * tg_text_read_response() describes. */
static int
read_texts(struct evbuffer *body, enum rule root, tg_text_fn *fn, void *arg)
{
	struct text_reader r;
	yajl_handle h;
	yajl_status st;

	reader_init(&r, fn, arg, root);
	h = tg_yajl_alloc(&OWN_TEXT_CALLBACKS, &r);
	if (h == NULL)
		return -1;
	st = parse_buffer(h, body);
	tg_yajl_free(h);

	if (st == yajl_status_client_canceled)
		return r.unsure ? -1 : 1;
	return st == yajl_status_ok ? 0 : -1;
}

int
tg_text_read_response(struct evbuffer *body, tg_text_fn *fn, void *arg)
{
	return read_texts(body, R_RESPONSE, fn, arg);
}

int
tg_text_read_request(struct evbuffer *body, tg_text_fn *fn, void *arg)
{
	return read_texts(body, R_REQUEST, fn, arg);
}

/* The reader's state fits the caller's room; checked once, here. */
_Static_assert(sizeof(struct text_reader) <= sizeof(struct tg_text_tap_room),
               "struct tg_text_tap_room is too small for struct text_reader");

void
tg_text_tap_request(struct tg_text_tap_room *room, tg_text_fn *fn, void *arg,
                    struct tg_reply_tap *tap)
{
	struct text_reader *r = (struct text_reader *)room->u.bytes;

	reader_init(r, fn, arg, R_REQUEST);
	*tap = (struct tg_reply_tap){&TEXT_CALLBACKS, r};
}

static int
reserve_spans(struct tg_text_spans *spans)
{
	size_t cap;
	struct tg_text_span *items;

	if (spans->n < spans->cap)
		return 0;
	cap = spans->cap ? spans->cap * 2 : 8;
	items = realloc(spans->items, cap * sizeof(*items));
	if (items == NULL)
		return -1;
	spans->items = items;
	spans->cap = cap;
	return 0;
}

/* Copy len bytes of text to the end of the copies; returns their offset,
 * or (size_t)-1 when out of memory. */
static size_t
copy_text(struct tg_text_spans *spans, const char *text, size_t len)
{
	size_t at = spans->copies_len;

	if (len > spans->copies_cap - at) {
		size_t cap = spans->copies_cap ? spans->copies_cap : 256;
		char *copies;

		while (cap - at < len)
			cap *= 2;
		copies = realloc(spans->copies, cap);
		if (copies == NULL)
			return (size_t)-1;
		spans->copies = copies;
		spans->copies_cap = cap;
	}
	memcpy(spans->copies + at, text, len);
	spans->copies_len += len;
	return at;
}

int
tg_text_spans_add(struct tg_text_spans *spans, const char *body, size_t body_len,
                  const char *text, size_t len)
{
	struct tg_text_span span = {0, len, 0};

	if (reserve_spans(spans) != 0)
		return -1;

	/* yajl passes a string without escapes in place, when the whole of
	 * it is in the text given to one yajl_parse() call. */
	if (text >= body && text <= body + body_len && len <= (size_t)(body + body_len - text)) {
		span.at = (size_t)(text - body);
	} else {
		span.at = copy_text(spans, text, len);
		span.copied = 1;
		if (span.at == (size_t)-1)
			return -1;
	}
	spans->items[spans->n++] = span;
	return 0;
}

const char *
tg_text_span_bytes(const struct tg_text_spans *spans, size_t i, const char *body)
{
	const struct tg_text_span *span = &spans->items[i];

	return (span->copied ? spans->copies : body) + span->at;
}

void
tg_text_spans_free(struct tg_text_spans *spans)
{
	free(spans->items);
	free(spans->copies);
	memset(spans, 0, sizeof(*spans));
}

int
tg_text_read_response_digest(struct evbuffer *body, tg_text_fn *fn, void *arg,
                             struct tg_reply_digest *d, struct tg_reply_detail *x)
{
	struct text_reader r;
	struct tg_reply_tap tap = {&TEXT_CALLBACKS, &r};

	reader_init(&r, fn, arg, R_RESPONSE);

	return tg_reply_digest_tap_buffer(d, x, body, &tap);
}

/* --- running filters ---------------------------------------------------- */

/* Mask the matches of one text in place. */
static int
mask_text(const struct tg_filter *f, json_t *value, const struct tg_scan *sc)
{
	size_t len;
	char *masked = tg_filter_mask(f, json_string_value(value), json_string_length(value),
	                              sc->matches, sc->n_matches, &len);
	int rc;

	if (masked == NULL)
		return -1;
	rc = json_string_setn_nocheck(value, masked, len);
	free(masked);
	return rc;
}

/* Record each match of the last scan with f's action, or as blocks of a
 * mask that had no place to rewrite (tg_filter_log_unmaskable()) when
 * unmaskable is set. */
static int
log_matches(const struct tg_filter *f, enum tg_side side, struct tg_filter_log *log,
            const struct tg_scan *sc, int unmaskable)
{
	for (size_t j = 0; j < sc->n_matches; j++) {
		const char *rule = sc->matches[j].rule->name;
		int rc = unmaskable ? tg_filter_log_unmaskable(log, f, rule, side)
		                    : tg_filter_log_add(log, f, rule, f->action, side, 0);

		if (rc != 0)
			return -1;
	}
	return 0;
}

int
tg_filter_decoded_text(const struct tg_filter *f, enum tg_side side, struct tg_filter_log *log,
                       struct tg_scan *sc, const char *text, size_t len,
                       const char **blocked_rule)
{
	if (tg_scan_run(sc, f, text, len, 0, 0) != 0)
		return -1;
	if (log_matches(f, side, log, sc, f->action == TG_ACTION_MASK) != 0)
		return -1;
	if (sc->n_matches == 0 || f->action == TG_ACTION_FLAG)
		return 0;
	*blocked_rule = sc->matches[0].rule->name;
	return 1;
}

/* One filter over the escaped strings of a JSON text in a string. */
struct inner_scan {
	const struct tg_filter *f;
	enum tg_side side;
	struct tg_filter_log *log;
	struct tg_scan *sc;
	const char *blocked_rule;
	int rc;                 /* of tg_filter_decoded_text(), when not 0 */
};

static int
scan_inner_string(void *arg, const char *text, size_t len)
{
	struct inner_scan *in = arg;

	in->rc = tg_filter_decoded_text(in->f, in->side, in->log, in->sc, text, len,
	                                &in->blocked_rule);
	return in->rc;
}

/* Run f over the escaped strings of the JSON text in value, after its
 * own matches were masked, so that a match left is one the mask could
 * not reach. Returns 0, or -1 when out of memory or PCRE2 failed. */
static int
run_regex_inner(const struct tg_filter *f, enum tg_side side, json_t *value,
                struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	struct inner_scan in = {f, side, log, sc, NULL, 0};
	int rc = tg_args_read(json_string_value(value), json_string_length(value),
	                      scan_inner_string, &in);

	if (rc < 0 || in.rc < 0)
		return -1;
	if (in.blocked_rule != NULL) {
		res->blocked = f;
		res->blocked_rule = in.blocked_rule;
	}
	return 0;
}

/* Run f over one text: record its matches, then block, or mask them in
 * place. A mask that matches a verbatim text (TG_TEXT_VERBATIM) blocks,
 * as one that has no place to write to does (run_regex_value()). Returns 0, or
 * -1 when out of memory or PCRE2 failed. */
static int
run_regex_text(const struct tg_filter *f, enum tg_side side, json_t *value, int verbatim,
               struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	int unmaskable = f->action == TG_ACTION_MASK && verbatim;

	if (tg_scan_run(sc, f, json_string_value(value), json_string_length(value), 0, 0) != 0)
		return -1;
	if (log_matches(f, side, log, sc, unmaskable) != 0)
		return -1;

	if (sc->n_matches > 0 && (f->action == TG_ACTION_BLOCK || unmaskable)) {
		res->blocked = f;
		res->blocked_rule = sc->matches[0].rule->name;
		return 0;
	}
	if (sc->n_matches > 0 && f->action == TG_ACTION_MASK) {
		if (mask_text(f, value, sc) != 0)
			return -1;
		res->changed = 1;
	}
	return 0;
}

/* Arguments that are not JSON are read as plain text. A client's parse
 * of them fails, but may have read the strings before the fault, so the
 * escaped ones are read decoded too, as before the values were read one
 * by one. */
static int
run_regex_not_json(const struct tg_filter *f, enum tg_side side, json_t *value,
                   struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	if (run_regex_text(f, side, value, 0, log, sc, res) != 0)
		return -1;

	/* A flag already recorded stays one decision. */
	if (res->blocked != NULL || (sc->n_matches > 0 && f->action == TG_ACTION_FLAG))
		return 0;
	return run_regex_inner(f, side, value, log, sc, res);
}

/* The values of one text of arguments, kept by tg_args_values(), with
 * the place of each as written. */
struct kept_values {
	const char *raw;
	size_t raw_len;
	struct tg_text_spans spans;
	struct tg_text_spans keys;              /* the keys, decoded */
	struct tg_splice_place *places;         /* one per span */
	unsigned char *placed;                  /* whether its place is known */
	size_t cap_places;
};

static int
keep_value(void *arg, const char *text, size_t len, size_t end)
{
	struct kept_values *k = arg;
	size_t i = k->spans.n;
	char digits[TG_NUMBER_TEXT_SIZE];

	if (i == k->cap_places) {
		size_t cap = k->cap_places ? 2 * k->cap_places : 8;
		struct tg_splice_place *places = realloc(k->places, cap * sizeof(*places));
		unsigned char *placed;

		if (places == NULL)
			return 1;
		k->places = places;
		placed = realloc(k->placed, cap);
		if (placed == NULL)
			return 1;
		k->placed = placed;
		k->cap_places = cap;
	}
	k->placed[i] = tg_splice_place(k->raw, k->raw_len, text, len, end, &k->places[i]) == 0;

	/* A number is read by its value; a mask writes it again as a string
	 * of the masked text, at the place of the number as written. */
	if (tg_args_is_number(k->raw, k->raw_len, text, len, end))
		text = tg_number_read_text(text, len, digits, &len);
	return tg_text_spans_add(&k->spans, k->raw, k->raw_len, text, len) != 0;
}

static int
keep_key(void *arg, const char *text, size_t len)
{
	struct kept_values *k = arg;

	return tg_text_spans_add(&k->keys, k->raw, k->raw_len, text, len) != 0;
}

/* Keep the values and keys of the arguments in value (tg_args_values()),
 * which free_kept_values() releases whatever this returns. */
static int
keep_values(struct kept_values *k, json_t *value)
{
	*k = (struct kept_values){json_string_value(value), json_string_length(value), {0}, {0},
	                          NULL, NULL, 0};
	return tg_args_values(k->raw, k->raw_len, keep_value, keep_key, k);
}

static void
free_kept_values(struct kept_values *k)
{
	tg_text_spans_free(&k->spans);
	tg_text_spans_free(&k->keys);
	free(k->places);
	free(k->placed);
}

/*
 * Write the value i of the arguments again, with the matches of the last
 * scan, in its decoded text, masked. A string is written again, quotes
 * and all, so that a replacement with a quote or a backslash stays valid
 * JSON, and a string written with escapes is written with the escapes
 * JSON needs only. A number becomes a string of the masked digits: masked
 * in place they would leave the arguments invalid JSON.
 */
static int
mask_value(const struct tg_filter *f, const struct kept_values *k, size_t i,
           const struct tg_scan *sc, struct tg_splice *m)
{
	size_t len;
	char *masked = tg_filter_mask(f, tg_text_span_bytes(&k->spans, i, k->raw),
	                              k->spans.items[i].len, sc->matches, sc->n_matches, &len);

	if (masked == NULL)
		return -1;
	tg_splice_string(m, k->places[i], masked, len);
	free(masked);
	return m->out.failed ? -1 : 0;
}

/*
 * Run f over value i of kept arguments, decoded: record its matches, then
 * block, or mask them by writing the value again (mask_value()). Its
 * escapes cannot hide a match, and need no place for a mask.
 */
static int
run_regex_value(const struct tg_filter *f, enum tg_side side, const struct kept_values *k,
                size_t i, struct tg_splice *m, struct tg_filter_log *log,
                struct tg_scan *sc, struct tg_filter_result *res)
{
	const struct tg_text_span *span = &k->spans.items[i];
	const char *text = tg_text_span_bytes(&k->spans, i, k->raw);
	int unmaskable = f->action == TG_ACTION_MASK && !k->placed[i];

	if (tg_scan_run(sc, f, text, span->len, 0, 0) != 0 ||
	    log_matches(f, side, log, sc, unmaskable) != 0)
		return -1;
	if (sc->n_matches == 0 || f->action == TG_ACTION_FLAG)
		return 0;
	if (f->action == TG_ACTION_BLOCK || !k->placed[i]) {
		res->blocked = f;
		res->blocked_rule = sc->matches[0].rule->name;
		return 0;
	}
	return mask_value(f, k, i, sc, m);
}

/*
 * Run f over the keys of JSON arguments, each as a text of its own, read
 * verbatim: the tool's code reads its arguments by them, so a mask never
 * rewrites one, and a mask or block filter that matches one blocks.
 */
static int
run_regex_keys(const struct tg_filter *f, enum tg_side side, const struct kept_values *k,
               struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	for (size_t i = 0; i < k->keys.n; i++) {
		if (tg_scan_run(sc, f, tg_text_span_bytes(&k->keys, i, k->raw), k->keys.items[i].len,
		                0, 0) != 0 ||
		    log_matches(f, side, log, sc, f->action == TG_ACTION_MASK) != 0)
			return -1;
		if (sc->n_matches > 0 && f->action != TG_ACTION_FLAG) {
			res->blocked = f;
			res->blocked_rule = sc->matches[0].rule->name;
			return 0;
		}
	}
	return 0;
}

/*
 * Run f over the values of JSON arguments, each as a text of its own, so
 * that an anchored rule matches a value whole. The text around them
 * (keys, punctuation, literals) is not read, because it contains nothing
 * a tool is given as a value. A mask rewrites value once, after the last
 * value.
 */
static int
run_regex_values(const struct tg_filter *f, enum tg_side side, json_t *value,
                 const struct kept_values *k, struct tg_filter_log *log,
                 struct tg_scan *sc, struct tg_filter_result *res)
{
	struct tg_splice m;
	int rc = run_regex_keys(f, side, k, log, sc, res);

	if (rc != 0 || res->blocked != NULL)
		return rc;
	tg_splice_init(&m, k->raw, k->raw_len);
	for (size_t i = 0; i < k->spans.n && rc == 0 && res->blocked == NULL; i++)
		rc = run_regex_value(f, side, k, i, &m, log, sc, res);

	if (rc == 0 && res->blocked == NULL && m.changed) {
		rc = tg_splice_finish(&m) != 0 ? -1
		                                : json_string_setn_nocheck(value, m.out.data, m.out.len);
		res->changed = 1;
	}
	tg_json_writer_free(&m.out);
	return rc;
}

/*
 * Run f over a text of arguments: each value of it when it is JSON
 * (run_regex_values()), or else the text as it is (run_regex_not_json()).
 * The values are read in a pass before any is scanned, so that text found
 * not to be JSON at its end has recorded nothing.
 */
static int
run_regex_arguments(const struct tg_filter *f, enum tg_side side, json_t *value,
                    struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	struct kept_values k;
	int rc = keep_values(&k, value);

	if (rc == TG_ARGS_NOT_JSON)
		rc = run_regex_not_json(f, side, value, log, sc, res);
	else if (rc == 0)
		rc = run_regex_values(f, side, value, &k, log, sc, res);
	else
		rc = -1;
	free_kept_values(&k);
	return rc;
}

static int
run_regex(const struct tg_filter *f, enum tg_side side, struct tg_text_list *texts,
          struct tg_filter_log *log, struct tg_scan *sc, struct tg_filter_result *res)
{
	for (size_t i = 0; i < texts->n; i++) {
		json_t *value = texts->items[i];
		int number = texts->kinds[i] == TG_TEXT_NUMBER;
		int verbatim = texts->kinds[i] == TG_TEXT_VERBATIM || texts->kinds[i] == TG_TEXT_KEY ||
		               (number && texts->slots[i].verbatim);
		int changed = res->changed;
		int rc;

		res->changed = 0;
		rc = texts->kinds[i] == TG_TEXT_ARGUMENTS
		             ? run_regex_arguments(f, side, value, log, sc, res)
		             : run_regex_text(f, side, value, verbatim, log, sc, res);
		if (rc == 0 && res->changed && number)
			rc = place_number(texts, i);
		res->changed |= changed;
		if (rc != 0)
			return -1;
		if (res->blocked != NULL)
			return 0;
	}
	return 0;
}

const char *
tg_filter_plugin_check(const struct tg_filter *f, const char *text, size_t len, int *failed)
{
	struct tg_plugin_labels labels;
	int n = tg_plugin_classify(f->plugin, text, len, &labels);

	*failed = n < 0;
	for (int i = 0; i < n; i++) {
		const struct tollgate_label *l = &labels.items[i];

		for (size_t j = 0; j < f->n_labels; j++) {
			if (strcmp(l->name, f->labels[j].name) == 0 && l->score >= f->labels[j].score)
				return f->labels[j].name;
		}
	}
	return NULL;
}

/*
 * Classify len bytes of text with plugin filter f and record the decision.
 * Sets res->blocked when the filter blocks. Returns 1 when a decision was
 * recorded, 0 when none was, or -1 when out of memory.
 */
static int
classify_text(const struct tg_filter *f, enum tg_side side, const char *text, size_t len,
              struct tg_filter_log *log, struct tg_filter_result *res)
{
	int failed;
	const char *label = tg_filter_plugin_check(f, text, len, &failed);
	enum tg_filter_action action = f->action;

	if (failed) {
		action = f->on_error_block ? TG_ACTION_BLOCK : TG_ACTION_FLAG;
		if (tg_filter_log_add(log, f, NULL, action, side, 1) != 0)
			return -1;
	} else if (label != NULL) {
		if (tg_filter_log_add(log, f, label, action, side, 0) != 0)
			return -1;
	} else {
		return 0;
	}

	if (action == TG_ACTION_BLOCK) {
		res->blocked = f;
		res->blocked_rule = label;
	}
	return 1;
}

/* One plugin filter over the escaped strings of arguments that are not
 * JSON. */
struct inner_classify {
	const struct tg_filter *f;
	enum tg_side side;
	struct tg_filter_log *log;
	struct tg_filter_result *res;
	int rc;                 /* of classify_text(), when -1 */
};

static int
classify_inner_string(void *arg, const char *text, size_t len)
{
	struct inner_classify *in = arg;

	if (classify_text(in->f, in->side, text, len, in->log, in->res) < 0)
		in->rc = -1;
	return in->rc != 0 || in->res->blocked != NULL;
}

/* Classify arguments that are not JSON as run_regex_not_json() reads
 * them: whole, and, unless that recorded a decision, their escaped
 * strings decoded. */
static int
classify_not_json(const struct tg_filter *f, enum tg_side side, const char *raw,
                  size_t raw_len, struct tg_filter_log *log, struct tg_filter_result *res)
{
	struct inner_classify in = {f, side, log, res, 0};
	int rc = classify_text(f, side, raw, raw_len, log, res);

	if (rc != 0)
		return rc < 0 ? -1 : 0;
	rc = tg_args_read(raw, raw_len, classify_inner_string, &in);
	return rc < 0 || in.rc < 0 ? -1 : 0;
}

/*
 * Classify a text of arguments as the regex filters read it
 * (run_regex_arguments()): each value of it, decoded, when it is JSON, or
 * else the text as it is and its escaped strings decoded. The values are
 * read in a pass before any is classified, so that text found not to be
 * JSON at its end was not classified in part.
 */
static int
classify_arguments(const struct tg_filter *f, enum tg_side side, json_t *value,
                   struct tg_filter_log *log, struct tg_filter_result *res)
{
	struct kept_values k;
	int rc = keep_values(&k, value);

	if (rc == TG_ARGS_NOT_JSON) {
		rc = classify_not_json(f, side, k.raw, k.raw_len, log, res);
	} else if (rc == 0) {
		for (size_t i = 0; i < k.keys.n && rc >= 0 && res->blocked == NULL; i++)
			rc = classify_text(f, side, tg_text_span_bytes(&k.keys, i, k.raw),
			                   k.keys.items[i].len, log, res);
		for (size_t i = 0; i < k.spans.n && rc >= 0 && res->blocked == NULL; i++)
			rc = classify_text(f, side, tg_text_span_bytes(&k.spans, i, k.raw),
			                   k.spans.items[i].len, log, res);
	} else {
		rc = -1;        /* out of memory, in tg_args_values() or keep_value() */
	}
	free_kept_values(&k);
	return rc < 0 ? -1 : 0;
}

static int
run_plugin(const struct tg_filter *f, enum tg_side side, struct tg_text_list *texts,
           struct tg_filter_log *log, struct tg_filter_result *res)
{
	for (size_t i = 0; i < texts->n && res->blocked == NULL; i++) {
		json_t *value = texts->items[i];
		int rc = texts->kinds[i] == TG_TEXT_ARGUMENTS
		                 ? classify_arguments(f, side, value, log, res)
		                 : classify_text(f, side, json_string_value(value),
		                                 json_string_length(value), log, res);

		if (rc < 0)
			return -1;
	}
	return 0;
}

int
tg_filter_text_matches(const struct tg_filter_chain *chain, enum tg_side side,
                       const char *text, size_t len, struct tg_scan *sc)
{
	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if (f->type != TG_FILTER_REGEX || !(f->apply_to & side))
			continue;
		if (tg_scan_run(sc, f, text, len, 0, 0) != 0)
			return -1;
		if (sc->n_matches > 0)
			return 1;
	}
	return 0;
}

/* The segments of a body, read in place. A body in more segments than
 * this is judged by reading its texts. */
#define VIEW_SEGMENTS 8

struct body_view {
	struct evbuffer_iovec seg[VIEW_SEGMENTS];
	int n;
};

/* Fill *v with the segments of body. Returns 0, or -1 when there are too
 * many. */
static int
view_body(struct evbuffer *body, struct body_view *v)
{
	v->n = evbuffer_peek(body, -1, NULL, v->seg, VIEW_SEGMENTS);
	return v->n >= 0 && v->n <= VIEW_SEGMENTS ? 0 : -1;
}

static int
view_ascii(const struct body_view *v)
{
	for (int i = 0; i < v->n; i++) {
		if (!tg_norm_ascii(v->seg[i].iov_base, v->seg[i].iov_len))
			return 0;
	}
	return 1;
}

static int
view_has(const struct body_view *v, char c)
{
	for (int i = 0; i < v->n; i++) {
		if (memchr(v->seg[i].iov_base, c, v->seg[i].iov_len) != NULL)
			return 1;
	}
	return 0;
}

/* Whether the body has a backslash followed by 'u', across segments
 * too. */
static int
view_has_backslash_u(const struct body_view *v)
{
	int after_backslash = 0;

	for (int i = 0; i < v->n; i++) {
		const char *p = v->seg[i].iov_base;
		const char *end = p + v->seg[i].iov_len;

		if (p < end && after_backslash && *p == 'u')
			return 1;
		after_backslash = 0;
		while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
			if (++p == end)
				after_backslash = 1;
			else if (*p == 'u')
				return 1;
		}
	}
	return 0;
}

/* Whether body, or a text that an escape of it other than \uXXXX
 * decodes to, contains one of the bytes that rule requires. */
static int
may_hold_required(const struct tg_filter_rule *rule, const struct body_view *v, int escapes)
{
	/* What the escapes \" \\ \/ \b \f \n \r \t decode to. */
	static const char decoded[] = "\"\\/\b\f\n\r\t";
	char bytes[2];
	size_t n = tg_rule_required_bytes(rule, bytes);

	if (n == 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		/* A number is read by its value (filter-number.h), whose digits
		 * may be missing from the text: 1e5 is read as 100000. */
		if (view_has(v, bytes[i]) || (bytes[i] >= '0' && bytes[i] <= '9'))
			return 1;
		if (escapes && memchr(decoded, bytes[i], sizeof(decoded) - 1) != NULL)
			return 1;
	}
	return 0;
}

int
tg_filter_body_unmatched(const struct tg_filter_chain *chain, enum tg_side side,
                         struct evbuffer *body)
{
	struct body_view v;
	int escapes;

	/* A text above the limit fails to normalise, which the readers must
	 * report. NFKC turns some non-ASCII characters into a required byte
	 * (U+FF20 into '@'), and so does \uXXXX (\u0040). A "\u" after an
	 * escaped backslash counts too, because a tool call's arguments are
	 * read again as JSON, where it is an escape. */
	if (evbuffer_get_length(body) > TG_NORM_MAX_INPUT || view_body(body, &v) != 0 ||
	    !view_ascii(&v))
		return 0;
	escapes = view_has(&v, '\\');
	if (escapes && view_has_backslash_u(&v))
		return 0;

	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if (!(f->apply_to & side))
			continue;
		if (f->type != TG_FILTER_REGEX)
			return 0;
		for (size_t j = 0; j < f->n_rules; j++) {
			if (may_hold_required(&f->rules[j], &v, escapes))
				return 0;
		}
	}
	return 1;
}

unsigned
tg_filter_types(const struct tg_filter_chain *chain, enum tg_side side)
{
	unsigned types = 0;

	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if (f->apply_to & side)
			types |= 1u << f->type;
	}
	return types;
}

int
tg_filter_texts(const struct tg_filter_chain *chain, enum tg_side side,
                struct tg_text_list *texts, struct tg_filter_log *log,
                struct tg_scan *sc, struct tg_filter_result *res, int *need_moderation)
{
	if (need_moderation != NULL)
		*need_moderation = 0;

	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];
		int rc = 0;

		if (!(f->apply_to & side))
			continue;
		if (f->type == TG_FILTER_REGEX)
			rc = run_regex(f, side, texts, log, sc, res);
		else if (f->type == TG_FILTER_PLUGIN)
			rc = run_plugin(f, side, texts, log, res);
		else if (need_moderation != NULL)
			*need_moderation = 1;
		if (rc != 0)
			return -1;
		if (res->blocked != NULL)
			return 0;
	}
	return 0;
}
