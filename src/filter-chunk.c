/*
 * The texts of a streamed chunk, read with yajl's callbacks (filter-chunk.h).
 *
 * The reader keeps a stack of the containers it is inside. Each frame
 * records what the container is in the chunk's shape and, for an object,
 * which member the last key named. A container outside the shape is
 * OTHER, and only its keys are read. The shape:
 *
 *   {"choices": [CHOICE...]}
 *   CHOICE = {"index": n, "finish_reason": "...", "text": "...",
 *             "delta": {"content": "..." or [{"text": "...", "refusal": "..."}],
 *                       "refusal": "...", "reasoning_content": "...",
 *                       "reasoning": "...",
 *                       "audio": {"transcript": "..."},
 *                       "tool_calls": [{"index": n,
 *                                       "function": {"arguments": "..."}}],
 *                       "function_call": {"arguments": "..."}}}
 *
 * and Anthropic's, whose top-level "type" names the event:
 *
 *   {"type": "...", "index": n,
 *    "message": {"content": [MESSAGE_BLOCK...]},
 *    "content_block": {"text": "...", "thinking": "...", "input": VALUES},
 *    "delta": {"text": "...", "partial_json": "...", "thinking": "...",
 *              "citation": VALUES}}
 *   MESSAGE_BLOCK = {"text": "...", "thinking": "...", "input": VALUES}
 *
 * where every string inside VALUES, at any depth, is a text of its own.
 * The other members of a content_block, and of a MESSAGE_BLOCK, are read
 * by the member tables of a body (filter-members.h), in frames of place
 * P_RULED, and each string they read is a text of its own too: the result
 * of a server tool, which content_block_start carries whole.
 * The message and param of an error event, {"error": {"message": "...",
 * "param": "..."}} in either API's shape, and {"error": "..."}, are texts
 * of their own too, as an error body's are.
 * The texts are read whatever the block's or delta's own "type", as the
 * table of filter-text.c reads a part's "text". message_start's blocks
 * are the first blocks of the message, so each is the block whose index
 * is its position, as the Anthropic SDK keys them. Anthropic sends them
 * and a tool_use block's input empty, but another server of that shape
 * could fill them.
 * yajl reports where it is in the text (yajl_get_bytes_consumed), which is
 * just after the token of the current callback. A text's JSON string thus
 * ends there, and starts at the first double quote after its key, since
 * only whitespace and the colon lie between.
 *
 * yajl takes a few texts that jansson rejects, and a tree keeps one member
 * of a name given twice where yajl reports both. Whatever the reader
 * cannot rule out cheaply makes the read unsure, and then jansson decides.
 * These are \f or \v (yajl's whitespace), an escaped surrogate (yajl
 * turns a lone high one into "?"), and an escaped key (its bytes are not
 * in the data to be compared). So are a string that is not UTF-8 or has a
 * NUL, a key given twice, and an object with many keys or containers
 * nested deep, which keep the key check short.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "filter-chunk.h"
#include "filter-members.h"
#include "reply-digest.h"
#include "yajl-arena.h"
#include "yajl-jansson.h"

enum place {
	P_OTHER,
	P_ROOT,
	P_CHOICES,
	P_CHOICE,
	P_DELTA,
	P_CALLS,
	P_CALL,
	P_FUNCTION,
	P_FUNCTION_CALL,        /* the legacy delta.function_call */
	P_PARTS,                /* delta.content given as an array */
	P_PART,
	P_BLOCK,                /* Anthropic's "content_block" */
	P_BLOCK_DELTA,          /* Anthropic's top-level "delta" */
	P_MESSAGE,              /* Anthropic's top-level "message" */
	P_MESSAGE_BLOCKS,       /* its "content" */
	P_MESSAGE_BLOCK,
	P_VALUES,               /* a tool_use "input" or a "citation" */
	P_ERROR,                /* the top-level "error" of an error event */
	P_AUDIO,                /* delta.audio */
	P_RULED,                /* inside an Anthropic block, read by the
	                           member tables (filter-members.h) */
	P_COUNT
};

enum member {
	M_NONE,
	M_CHOICES,
	M_INDEX,
	M_FINISH_REASON,
	M_TEXT,
	M_DELTA,
	M_CONTENT,
	M_REFUSAL,
	M_TOOL_CALLS,
	M_FUNCTION,
	M_ARGUMENTS,
	M_TYPE,
	M_CONTENT_BLOCK,
	M_THINKING,
	M_PARTIAL_JSON,
	M_FUNCTION_CALL,
	M_REASONING_CONTENT,
	M_REASONING,
	M_MESSAGE,
	M_INPUT,
	M_CITATION,
	M_ERROR,
	M_AUDIO,
	M_TRANSCRIPT,
	M_PARAM,
	M_RULED,                /* a member the tables read: the frame's
	                           member_rule reads its value */
};

struct key {
	const char *name;
	size_t len;
	enum member member;
};

#define KEY(name, member) {name, sizeof(name) - 1, member}
#define END_KEYS {NULL, 0, M_NONE}

static const struct key ROOT_KEYS[] = {
	KEY("choices", M_CHOICES), KEY("type", M_TYPE), KEY("index", M_INDEX),
	KEY("content_block", M_CONTENT_BLOCK), KEY("delta", M_DELTA), KEY("message", M_MESSAGE),
	KEY("error", M_ERROR), END_KEYS
};
static const struct key CHOICE_KEYS[] = {
	KEY("index", M_INDEX), KEY("finish_reason", M_FINISH_REASON), KEY("text", M_TEXT),
	KEY("delta", M_DELTA), END_KEYS
};
static const struct key DELTA_KEYS[] = {
	KEY("content", M_CONTENT), KEY("refusal", M_REFUSAL), KEY("tool_calls", M_TOOL_CALLS),
	KEY("function_call", M_FUNCTION_CALL), KEY("reasoning_content", M_REASONING_CONTENT),
	KEY("reasoning", M_REASONING), KEY("audio", M_AUDIO), END_KEYS
};
static const struct key AUDIO_KEYS[] = {KEY("transcript", M_TRANSCRIPT), END_KEYS};
/* A content part's text, whatever its "type", as filter-text.c reads it. */
static const struct key PART_KEYS[] = {
	KEY("text", M_TEXT), KEY("refusal", M_REFUSAL), END_KEYS
};
static const struct key CALL_KEYS[] = {
	KEY("index", M_INDEX), KEY("function", M_FUNCTION), END_KEYS
};
static const struct key FUNCTION_KEYS[] = {KEY("arguments", M_ARGUMENTS), END_KEYS};
static const struct key BLOCK_KEYS[] = {
	KEY("text", M_TEXT), KEY("thinking", M_THINKING), KEY("input", M_INPUT), END_KEYS
};
static const struct key BLOCK_DELTA_KEYS[] = {
	KEY("text", M_TEXT), KEY("partial_json", M_PARTIAL_JSON), KEY("thinking", M_THINKING),
	KEY("citation", M_CITATION), END_KEYS
};
static const struct key MESSAGE_KEYS[] = {KEY("content", M_CONTENT), END_KEYS};
static const struct key ERROR_KEYS[] = {
	KEY("message", M_MESSAGE), KEY("param", M_PARAM), END_KEYS
};

/* The keys read in an object of each place; NULL: none. */
static const struct key *const PLACE_KEYS[P_COUNT] = {
	[P_ROOT] = ROOT_KEYS, [P_CHOICE] = CHOICE_KEYS, [P_DELTA] = DELTA_KEYS,
	[P_CALL] = CALL_KEYS, [P_FUNCTION] = FUNCTION_KEYS, [P_FUNCTION_CALL] = FUNCTION_KEYS,
	[P_PART] = PART_KEYS, [P_BLOCK] = BLOCK_KEYS,
	[P_BLOCK_DELTA] = BLOCK_DELTA_KEYS, [P_MESSAGE] = MESSAGE_KEYS,
	[P_MESSAGE_BLOCK] = BLOCK_KEYS, [P_ERROR] = ERROR_KEYS, [P_AUDIO] = AUDIO_KEYS,
};

/* Return items, an array of *cap items of size bytes, grown when it has
 * no room for item n; NULL when out of memory, and items is then unchanged. */
static void *
grow(void *items, size_t *cap, size_t n, size_t size)
{
	size_t want = *cap ? *cap * 2 : 8;
	void *p;

	if (n < *cap)
		return items;
	p = realloc(items, want * size);
	if (p != NULL)
		*cap = want;
	return p;
}


/* The innermost frame, or NULL outside the frames (at the top, or too deep). */
static struct tg_chunk_frame *
top(struct tg_chunk *c)
{
	if (c->depth == 0 || c->depth > TG_CHUNK_MAX_FRAMES)
		return NULL;
	return &c->frames[c->depth - 1];
}

/* A value starts: count it in its array. Returns its position there. */
static size_t
value_starts(struct tg_chunk *c)
{
	struct tg_chunk_frame *f = top(c);

	return f != NULL && f->array ? f->items++ : 0;
}

/* The member the innermost object's last key named, in place p only. */
static enum member
member_in(struct tg_chunk *c, enum place p)
{
	struct tg_chunk_frame *f = top(c);

	return f != NULL && !f->array && f->place == p ? f->member : M_NONE;
}

/* Whether the value that starts now is an "index" the read keys texts by:
 * a choice's, a tool call's, or the top-level one of an Anthropic event. */
static int
is_index(struct tg_chunk *c)
{
	return member_in(c, P_CHOICE) == M_INDEX || member_in(c, P_CALL) == M_INDEX ||
	       member_in(c, P_ROOT) == M_INDEX;
}

/* The rule of the member tables that reads the value that starts now,
 * inside an Anthropic block; 0 elsewhere, or when none reads it. */
static unsigned
value_rule(struct tg_chunk *c)
{
	struct tg_chunk_frame *f = top(c);

	if (f == NULL)
		return 0;
	if (f->array)
		return f->place == P_RULED ? tg_member_item(f->rule) : 0;
	return f->member == M_RULED ? f->member_rule : 0;
}

/* Whether the value that starts now holds texts at any depth: a tool_use
 * block's "input", a citation, or a value the tables read so
 * (tg_member_all()). */
static int
is_values(struct tg_chunk *c)
{
	struct tg_chunk_frame *f = top(c);
	unsigned rule;

	if (f == NULL)
		return 0;
	if (f->place == P_VALUES)
		return 1;
	rule = value_rule(c);
	if (rule != 0)
		return tg_member_all(rule);
	if (f->array)
		return 0;
	return ((f->place == P_BLOCK || f->place == P_MESSAGE_BLOCK) && f->member == M_INPUT) ||
	       (f->place == P_BLOCK_DELTA && f->member == M_CITATION);
}

/* The place of a container that starts now, as the value it is. */
static enum place
place_of(struct tg_chunk *c, int array)
{
	struct tg_chunk_frame *f = top(c);

	if (c->depth == 0)
		return array ? P_OTHER : P_ROOT;
	if (f == NULL)
		return P_OTHER;
	if (is_values(c))
		return P_VALUES;
	if (value_rule(c) != 0)
		return P_RULED;
	if (array && !f->array && f->place == P_MESSAGE && f->member == M_CONTENT)
		return P_MESSAGE_BLOCKS;
	if (!array && f->array && f->place == P_MESSAGE_BLOCKS)
		return P_MESSAGE_BLOCK;
	if (!array && !f->array && f->place == P_ROOT && f->member == M_MESSAGE)
		return P_MESSAGE;
	if (!array && !f->array && f->place == P_ROOT && f->member == M_ERROR)
		return P_ERROR;
	if (array && !f->array && f->place == P_ROOT && f->member == M_CHOICES)
		return P_CHOICES;
	if (array && !f->array && f->place == P_DELTA && f->member == M_TOOL_CALLS)
		return P_CALLS;
	if (array && !f->array && f->place == P_DELTA && f->member == M_CONTENT)
		return P_PARTS;
	if (array)
		return P_OTHER;
	if (!f->array && f->place == P_ROOT && f->member == M_CONTENT_BLOCK)
		return P_BLOCK;
	if (!f->array && f->place == P_ROOT && f->member == M_DELTA)
		return P_BLOCK_DELTA;
	if (f->array && f->place == P_CHOICES)
		return P_CHOICE;
	if (f->array && f->place == P_CALLS)
		return P_CALL;
	if (f->array && f->place == P_PARTS)
		return P_PART;
	if (!f->array && f->place == P_DELTA && f->member == M_FUNCTION_CALL)
		return P_FUNCTION_CALL;
	if (!f->array && f->place == P_DELTA && f->member == M_AUDIO)
		return P_AUDIO;
	if (!f->array && f->place == P_CHOICE && f->member == M_DELTA)
		return P_DELTA;
	if (!f->array && f->place == P_CALL && f->member == M_FUNCTION)
		return P_FUNCTION;
	return P_OTHER;
}

/* The event's content block takes a place in choices when the read first
 * finds it has one: a text of the block, a top-level "index", or the type
 * content_block_stop. Its index is 0 until "index" gives one. */
static int
open_block(struct tg_chunk *c)
{
	void *p;

	if (c->block != SIZE_MAX)
		return 0;
	p = grow(c->choices, &c->cap_choices, c->n_choices, sizeof(*c->choices));
	if (p == NULL)
		return -1;
	c->choices = p;
	c->block = c->n_choices;
	c->choices[c->n_choices++] = (struct tg_chunk_choice){0, 0, 1};
	return 0;
}

/* A choice, a block of message_start or a tool call starts at position
 * in its array. */
static int
open_item(struct tg_chunk *c, enum place place, size_t position)
{
	void *p;

	if (place == P_CHOICE || place == P_MESSAGE_BLOCK) {
		p = grow(c->choices, &c->cap_choices, c->n_choices, sizeof(*c->choices));
		if (p == NULL)
			return -1;
		c->choices = p;
		c->choices[c->n_choices++] =
			(struct tg_chunk_choice){(long)position, 0, place == P_MESSAGE_BLOCK};
	} else if (place == P_CALL) {
		p = grow(c->calls, &c->cap_calls, c->n_calls, sizeof(*c->calls));
		if (p == NULL)
			return -1;
		c->calls = p;
		c->calls[c->n_calls++] = (long)position;
	}
	return 0;
}

static void check_text_shape(struct tg_chunk *c, int array);

static int
open_container(struct tg_chunk *c, int array)
{
	size_t position;
	enum place place;
	unsigned rule;

	check_text_shape(c, array);
	position = value_starts(c);
	place = place_of(c, array);
	rule = place == P_RULED ? value_rule(c) : 0;
	if (place == P_BLOCK || place == P_MESSAGE_BLOCK)
		rule = tg_member_block();
	if (is_index(c))
		c->bad_index = 1;

	if (c->depth >= TG_CHUNK_MAX_FRAMES) {
		c->unsure = 1;
		if (is_values(c))
			c->deep_text = 1;
		c->depth++;
		return 1;
	}
	if (open_item(c, place, position) != 0) {
		c->failed = 1;
		return 0;
	}
	c->frames[c->depth++] = (struct tg_chunk_frame){
		.place = (unsigned char)place, .array = (unsigned char)array,
		.rule = (unsigned char)rule, .first_key = c->keys.n,
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
	struct tg_chunk *c = ctx;
	struct tg_chunk_frame *f = top(c);

	if (f != NULL && !f->array)
		tg_yj_keys_close(&c->keys, f->first_key);
	c->depth--;
	return 1;
}

static int
on_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct tg_chunk *c = ctx;
	struct tg_chunk_frame *f = top(c);
	const struct key *keys;
	int rc;

	c->key_end = yajl_get_bytes_consumed(c->h);
	if (f == NULL)
		return 1;
	if (!tg_yj_string_ok(s, len))
		c->unsure = 1;
	rc = tg_yj_key_add(&c->keys, f->first_key, c->data, c->len, s, len);
	if (rc < 0) {
		c->failed = 1;
		return 0;
	}
	if (rc > 0)
		c->unsure = 1;
	f->member = M_NONE;
	keys = PLACE_KEYS[f->place];
	for (; keys != NULL && keys->name != NULL; keys++) {
		if (keys->len == len && memcmp(s, keys->name, len) == 0) {
			f->member = keys->member;
			return 1;
		}
	}

	/* A block's other members, and those inside them, are read as the
	 * same block of a body is. */
	if (f->rule != 0) {
		f->member_rule = (unsigned char)tg_member_of(f->rule, (const char *)s, len);
		if (f->member_rule != 0)
			f->member = M_RULED;
	}
	return 1;
}

/* Add the string just read as a text of kind in the choice at position
 * choice of c->choices; it is the value of the last key. */
static int
add_text(struct tg_chunk *c, size_t choice, enum tg_chunk_kind kind, const unsigned char *s,
         size_t len)
{
	size_t end = yajl_get_bytes_consumed(c->h);
	const char *quote = memchr(c->data + c->key_end, '"', end - c->key_end);
	struct tg_chunk_text *t;

	assert(quote != NULL);
	assert(c->data[end - 1] == '"');
	t = grow(c->texts, &c->cap_texts, c->n_texts, sizeof(*c->texts));
	if (t == NULL)
		return -1;
	c->texts = t;
	if (c->buf_len + len >= c->buf_cap) {
		size_t cap = c->buf_cap ? c->buf_cap : 256;
		char *p;

		while (cap < c->buf_len + len)
			cap *= 2;
		p = realloc(c->buf, cap);
		if (p == NULL)
			return -1;
		c->buf = p;
		c->buf_cap = cap;
	}
	memcpy(c->buf + c->buf_len, s, len);

	t = &c->texts[c->n_texts++];
	*t = (struct tg_chunk_text){
		.choice = choice, .kind = kind,
		.at = (size_t)(quote - c->data), .end = end,
		.text = c->buf_len, .len = len, .order = c->order++,
		.call = kind == TG_CHUNK_ARGUMENTS ? c->n_calls - 1 : 0,
	};
	c->buf_len += len;
	return 0;
}

/* The kind of a string that the tables read by rule: a text of its own,
 * complete. A document source's "data" is read unless its object's "type"
 * came first and is not "text" (base64), since the reader cannot wait for
 * a type that comes after it. */
static int
ruled_kind(const struct tg_chunk_frame *f, unsigned rule)
{
	switch (tg_member_string(rule)) {
	case TG_MEMBER_TEXT:
		return TG_CHUNK_VALUE;
	case TG_MEMBER_TYPED:
		return f->text_type >= 0 ? TG_CHUNK_VALUE : -1;
	default:
		return -1;
	}
}

/* The kind of text a string in the innermost object is, or -1: none. */
static int
text_kind(struct tg_chunk *c)
{
	struct tg_chunk_frame *f = top(c);
	unsigned rule;

	if (is_values(c))
		return TG_CHUNK_VALUE;
	rule = value_rule(c);
	if (rule != 0)
		return ruled_kind(f, rule);
	if (f == NULL || f->array)
		return -1;
	if (f->place == P_CHOICE && f->member == M_TEXT)
		return TG_CHUNK_TEXT;
	if (f->place == P_DELTA && f->member == M_CONTENT)
		return TG_CHUNK_CONTENT;
	if (f->place == P_DELTA && f->member == M_REFUSAL)
		return TG_CHUNK_REFUSAL;
	if (f->place == P_DELTA && f->member == M_REASONING_CONTENT)
		return TG_CHUNK_REASONING_CONTENT;
	if (f->place == P_DELTA && f->member == M_REASONING)
		return TG_CHUNK_REASONING;
	if (f->place == P_AUDIO && f->member == M_TRANSCRIPT)
		return TG_CHUNK_TRANSCRIPT;
	if (f->place == P_FUNCTION && f->member == M_ARGUMENTS)
		return TG_CHUNK_ARGUMENTS;
	if (f->place == P_FUNCTION_CALL && f->member == M_ARGUMENTS)
		return TG_CHUNK_FUNCTION_CALL;
	if (f->place == P_PART && f->member == M_TEXT)
		return TG_CHUNK_CONTENT;
	if (f->place == P_PART && f->member == M_REFUSAL)
		return TG_CHUNK_REFUSAL;
	if ((f->place == P_BLOCK || f->place == P_BLOCK_DELTA || f->place == P_MESSAGE_BLOCK) &&
	    f->member == M_TEXT)
		return TG_CHUNK_CONTENT;
	if ((f->place == P_BLOCK || f->place == P_BLOCK_DELTA || f->place == P_MESSAGE_BLOCK) &&
	    f->member == M_THINKING)
		return TG_CHUNK_THINKING;
	if (f->place == P_BLOCK_DELTA && f->member == M_PARTIAL_JSON)
		return TG_CHUNK_INPUT_JSON;
	if (f->place == P_ERROR && (f->member == M_MESSAGE || f->member == M_PARAM))
		return TG_CHUNK_VALUE;
	if (f->place == P_ROOT && f->member == M_ERROR)
		return TG_CHUNK_VALUE;          /* an error given as a string */
	return -1;
}

/* Note a value that starts now where a text string belongs, unless it is
 * an array of parts (array set) in a place that takes one. Strings inside
 * a tool_use input (TG_CHUNK_VALUE) sit among values of any kind. */
static void
check_text_shape(struct tg_chunk *c, int array)
{
	int kind = text_kind(c);

	if (kind < 0 || kind == TG_CHUNK_VALUE)
		return;
	if (array && kind == TG_CHUNK_CONTENT && member_in(c, P_DELTA) == M_CONTENT)
		return;
	c->odd_text = 1;
}

/* Whether a text of the innermost container belongs to the Anthropic
 * block of the event, rather than to the last choice opened: a text of
 * "content_block" or "delta", or inside their values. An error's texts
 * take that place too, since an error event has no choice. */
static int
in_block(struct tg_chunk *c)
{
	const struct tg_chunk_frame *f = top(c);

	if (f != NULL && f->place == P_ROOT)
		return f->member == M_ERROR;
	for (size_t i = c->depth < TG_CHUNK_MAX_FRAMES ? c->depth : TG_CHUNK_MAX_FRAMES; i > 0; i--) {
		enum place p = c->frames[i - 1].place;

		if (p == P_BLOCK || p == P_BLOCK_DELTA || p == P_ERROR)
			return 1;
		if (p != P_VALUES && p != P_RULED)
			return 0;
	}
	return 0;
}

/* Note the "type" of the innermost object when the tables read it
 * (TG_MEMBER_TYPE): whether a document source's "data" is text. */
static void
note_type(struct tg_chunk *c, const unsigned char *s, size_t len)
{
	struct tg_chunk_frame *f = top(c);
	unsigned rule = value_rule(c);

	if (rule != 0 && tg_member_string(rule) == TG_MEMBER_TYPE)
		f->text_type = len == 4 && memcmp(s, "text", 4) == 0 ? 1 : -1;
}

/* Whether len bytes at s are the string lit. */
static int
is_string(const unsigned char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct tg_chunk *c = ctx;
	int kind = text_kind(c);

	value_starts(c);
	if (!tg_yj_string_ok(s, len))
		c->unsure = 1;
	if (is_index(c))
		c->bad_index = 1;
	note_type(c, s, len);

	/* Some servers send "" on every chunk: only a reason ends the text. */
	if (member_in(c, P_CHOICE) == M_FINISH_REASON && len > 0)
		c->choices[c->n_choices - 1].finished = 1;
	if (member_in(c, P_ROOT) == M_TYPE && is_string(s, len, "content_block_stop")) {
		if (open_block(c) != 0)
			goto failed;
		c->choices[c->block].finished = 1;
	}
	if (kind < 0)
		return 1;
	if (in_block(c) && open_block(c) != 0)
		goto failed;
	if (add_text(c, in_block(c) ? c->block : c->n_choices - 1, (enum tg_chunk_kind)kind, s,
	             len) != 0)
		goto failed;
	return 1;
failed:
	c->failed = 1;
	return 0;
}

static int
on_integer(void *ctx, long long value)
{
	struct tg_chunk *c = ctx;

	check_text_shape(c, 0);
	value_starts(c);
	if (value < 0 || value > TG_CHUNK_MAX_INDEX) {
		if (is_index(c))
			c->bad_index = 1;
		return 1;
	}
	if (member_in(c, P_CHOICE) == M_INDEX) {
		c->choices[c->n_choices - 1].index = (long)value;
		c->choices[c->n_choices - 1].indexed = 1;
	}
	else if (member_in(c, P_CALL) == M_INDEX)
		c->calls[c->n_calls - 1] = (long)value;
	else if (member_in(c, P_ROOT) == M_INDEX) {
		if (open_block(c) != 0) {
			c->failed = 1;
			return 0;
		}
		c->choices[c->block].index = (long)value;
	}
	return 1;
}

/* A null, a boolean or a number with a fraction or an exponent. */
static int
on_other(void *ctx)
{
	struct tg_chunk *c = ctx;

	value_starts(c);
	if (is_index(c))
		c->bad_index = 1;
	return 1;
}

static int
on_boolean(void *ctx, int value)
{
	(void)value;
	check_text_shape(ctx, 0);
	return on_other(ctx);
}

static int
on_double(void *ctx, double value)
{
	(void)value;
	check_text_shape(ctx, 0);
	return on_other(ctx);
}

/* In a read of its own, numbers come as text, as in the relay's digest
 * (reply-digest.c), so that an integer beyond 64 bits reads as a real
 * there and here alike. */
static int
on_number(void *ctx, const char *s, size_t len)
{
	return tg_yj_number_as(ctx, s, len, on_integer, on_double);
}

/* As the digest's tap, which hands numbers on converted. */
static const yajl_callbacks CALLBACKS = {
	.yajl_null = on_other,
	.yajl_boolean = on_boolean,
	.yajl_integer = on_integer,
	.yajl_double = on_double,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* For tg_chunk_read(), its own parse. */
static const yajl_callbacks OWN_CALLBACKS = {
	.yajl_null = on_other,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* Texts by choice, then in the order the filters take the kinds, then as
 * they came. */
static int
compare_texts(const void *a, const void *b)
{
	const struct tg_chunk_text *x = a, *y = b;

	if (x->choice != y->choice)
		return x->choice < y->choice ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

void
tg_chunk_begin(struct tg_chunk *c, const char *data, size_t len, struct tg_reply_tap *tap)
{
	c->n_texts = c->n_choices = c->n_calls = c->buf_len = 0;
	tg_yj_keys_close(&c->keys, 0);
	c->block = SIZE_MAX;
	c->h = NULL;
	c->data = data;
	c->len = len;
	c->unsure = tg_yj_text_unsure(data, len);
	c->failed = c->bad_index = c->deep_text = c->odd_text = 0;
	c->depth = c->key_end = c->order = 0;
	tap->callbacks = &CALLBACKS;
	tap->ctx = c;
}

enum tg_chunk_result
tg_chunk_end(struct tg_chunk *c, int whole)
{
	c->h = NULL;
	if (c->failed)
		return TG_CHUNK_FAILED;
	for (size_t i = 0; i < c->n_texts; i++) {
		if (c->texts[i].kind == TG_CHUNK_ARGUMENTS)
			c->texts[i].tool = c->calls[c->texts[i].call];
	}
	if (c->n_texts > 1)
		qsort(c->texts, c->n_texts, sizeof(*c->texts), compare_texts);

	return c->unsure || !whole ? TG_CHUNK_UNSURE : TG_CHUNK_READ;
}

enum tg_chunk_result
tg_chunk_read(struct tg_chunk *c, const char *data, size_t len)
{
	struct tg_reply_tap tap;
	yajl_status st;

	tg_chunk_begin(c, data, len, &tap);
	c->h = tg_yajl_alloc(&OWN_CALLBACKS, c);
	if (c->h == NULL)
		return TG_CHUNK_FAILED;
	yajl_config(c->h, yajl_allow_trailing_garbage, 1);
	st = yajl_parse(c->h, (const unsigned char *)data, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(c->h);
	tg_yajl_free(c->h);

	/* The caller's digest found the data to be JSON, so the parse reads
	 * it whole. Should it not, jansson decides. */
	assert(st == yajl_status_ok || c->failed);
	return tg_chunk_end(c, st == yajl_status_ok);
}

void
tg_chunk_free(struct tg_chunk *c)
{
	free(c->texts);
	free(c->choices);
	free(c->calls);
	free(c->buf);
	tg_yj_keys_free(&c->keys);
	memset(c, 0, sizeof(*c));
}
