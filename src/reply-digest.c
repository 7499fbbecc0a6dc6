/*
 * The digest of a reply (reply-digest.h), read with yajl's callbacks.
 *
 * The parser keeps a stack of the containers it is inside. Each frame
 * records what the container is (its place in the shapes below) and, for an
 * object, which member the last key named. A value is judged by the frame
 * it arrives in. A container without members of interest becomes an
 * OTHER frame, whose contents are skipped. The places:
 *
 *   {"error": non-null, "type": "...", "choices": [CHOICE...], "usage": USAGE,
 *    "message": {"usage": USAGE}, "response": {"usage": USAGE},
 *    "delta": {"stop_reason": ...}, "sequence_number": n}
 *   CHOICE = {"text": "...", "finish_reason": ..., "delta": {"content",
 *             "refusal", "reasoning", "reasoning_content": "...",
 *             "tool_calls": [...], "function_call": {...}}}
 *   USAGE  = {"prompt_tokens": n, ..., "prompt_tokens_details":
 *             {"cached_tokens": n}, "completion_tokens_details":
 *             {"reasoning_tokens": n}}, or the Responses API's names:
 *             "input_tokens_details" and "output_tokens_details"
 *
 * A read with a detail (struct tg_reply_detail) also takes "id" and
 * "model" at the top level and "index" in a CHOICE, and records the
 * values of members as they come, so that a later one replaces them.
 * A read with a tap passes each event on to that second reader (the
 * response filters' text reader), so that one parse serves both.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <yajl/yajl_parse.h>

#include "reply-digest.h"
#include "yajl-arena.h"
#include "yajl-jansson.h"

/* The deepest nesting jansson reads, where a scalar counts as one more
 * level than its container. The digest rejects deeper text too, so that
 * both call the same texts JSON. */
#define MAX_DEPTH 2048

/* Frames kept on the stack; deeper containers are all OTHER. */
#define MAX_FRAMES 16

enum place {
	P_OTHER,
	P_ROOT,
	P_CHOICES,
	P_CHOICE,
	P_DELTA,                /* a choice's delta */
	P_TOOL_CALLS,
	P_MESSAGE,
	P_EVENT_DELTA,          /* the top-level delta of message_delta */
	P_USAGE,
	P_PROMPT_DETAILS,
	P_COMPLETION_DETAILS,
};

/* Members of interest, named by the key before a value. */
enum member {
	M_NONE,
	M_ERROR, M_TYPE, M_CHOICES, M_USAGE, M_MESSAGE, M_DELTA,
	M_TEXT, M_FINISH_REASON,
	M_CONTENT, M_REFUSAL, M_REASONING, M_TOOL_CALLS, M_FUNCTION_CALL,
	M_STOP_REASON, M_SEQUENCE,
	M_PROMPT_DETAILS, M_COMPLETION_DETAILS,
	M_COUNT,                /* a usage count; the frame's count names which */
	M_ID, M_MODEL, M_INDEX, /* read only for a detail */
};

struct frame {
	unsigned char place;    /* enum place */
	unsigned char member;   /* enum member the last key named */
	unsigned char count;    /* enum tg_usage_count when member is M_COUNT */
	unsigned char message;  /* inside "message": the usage is message_usage */
};

struct reader {
	const struct tg_reply_tap *tap; /* NULL, or another reader of the events */
	int tap_stopped;                /* a callback of the tap stopped the read */
	struct tg_reply_digest *d;
	struct tg_reply_detail *x;      /* NULL without a detail, or once it failed */
	struct tg_reply_detail *detail; /* the caller's detail, or NULL */
	int string_rejected;    /* the string being taken is one jansson rejects */
	int depth;              /* containers open, frames or not */
	int root_object;        /* the text is an object */
	yajl_handle handle;
	size_t base;            /* offset in the text of the segment yajl reads */
	unsigned usage_keys;    /* keys named "usage", at any depth */
	size_t usage_key_end;   /* offset past the last key named "usage" */
	struct frame frames[MAX_FRAMES];

	/* With a detail: the piece of text that yajl_parse() reads, when it
	 * is ASCII without a NUL, else NULL. */
	const unsigned char *ascii;
	size_t ascii_len;
};

struct key {
	const char *name;
	size_t len;
	unsigned char member;
	unsigned char count;
};

/* A table entry; the length is counted once, at compile time. */
#define KEY(name, member, count) {name, sizeof(name) - 1, member, count}
#define END_KEYS {NULL, 0, 0, 0}

/* In ROOT_KEYS and CHOICE_KEYS, the keys read only for a detail come
 * first, so that a read without one starts after them. */
static const struct key ROOT_KEYS[] = {
	KEY("id", M_ID, 0), KEY("model", M_MODEL, 0),
	KEY("error", M_ERROR, 0), KEY("type", M_TYPE, 0), KEY("choices", M_CHOICES, 0),
	KEY("usage", M_USAGE, 0), KEY("message", M_MESSAGE, 0), KEY("delta", M_DELTA, 0),
	KEY("response", M_MESSAGE, 0), KEY("sequence_number", M_SEQUENCE, 0),
	END_KEYS
};
static const struct key CHOICE_KEYS[] = {
	KEY("index", M_INDEX, 0),
	KEY("text", M_TEXT, 0), KEY("finish_reason", M_FINISH_REASON, 0), KEY("delta", M_DELTA, 0),
	END_KEYS
};
static const struct key DELTA_KEYS[] = {
	KEY("content", M_CONTENT, 0), KEY("refusal", M_REFUSAL, 0),
	KEY("reasoning_content", M_REASONING, 0), KEY("reasoning", M_REASONING, 0),
	KEY("tool_calls", M_TOOL_CALLS, 0), KEY("function_call", M_FUNCTION_CALL, 0),
	END_KEYS
};
static const struct key MESSAGE_KEYS[] = {
	KEY("usage", M_USAGE, 0), END_KEYS
};
static const struct key EVENT_DELTA_KEYS[] = {
	KEY("stop_reason", M_STOP_REASON, 0), END_KEYS
};
static const struct key USAGE_KEYS[] = {
	KEY("prompt_tokens", M_COUNT, TG_USAGE_PROMPT_TOKENS),
	KEY("completion_tokens", M_COUNT, TG_USAGE_COMPLETION_TOKENS),
	KEY("input_tokens", M_COUNT, TG_USAGE_INPUT_TOKENS),
	KEY("output_tokens", M_COUNT, TG_USAGE_OUTPUT_TOKENS),
	KEY("cache_read_input_tokens", M_COUNT, TG_USAGE_CACHE_READ_INPUT_TOKENS),
	KEY("cache_creation_input_tokens", M_COUNT, TG_USAGE_CACHE_CREATION_INPUT_TOKENS),
	KEY("prompt_tokens_details", M_PROMPT_DETAILS, 0),
	KEY("completion_tokens_details", M_COMPLETION_DETAILS, 0),
	KEY("input_tokens_details", M_PROMPT_DETAILS, 0),
	KEY("output_tokens_details", M_COMPLETION_DETAILS, 0),
	END_KEYS
};
static const struct key PROMPT_DETAILS_KEYS[] = {
	KEY("cached_tokens", M_COUNT, TG_USAGE_CACHED_TOKENS), END_KEYS
};
static const struct key COMPLETION_DETAILS_KEYS[] = {
	KEY("reasoning_tokens", M_COUNT, TG_USAGE_REASONING_TOKENS), END_KEYS
};

/* The keys of interest in each place, indexed by enum place, and how many
 * of them at the start are read only for a detail. */
static const struct {
	const struct key *keys;
	unsigned char detail_only;
} PLACE_KEYS[] = {
	[P_ROOT] = {ROOT_KEYS, 2},
	[P_CHOICE] = {CHOICE_KEYS, 1},
	[P_DELTA] = {DELTA_KEYS, 0},
	[P_MESSAGE] = {MESSAGE_KEYS, 0},
	[P_EVENT_DELTA] = {EVENT_DELTA_KEYS, 0},
	[P_USAGE] = {USAGE_KEYS, 0},
	[P_PROMPT_DETAILS] = {PROMPT_DETAILS_KEYS, 0},
	[P_COMPLETION_DETAILS] = {COMPLETION_DETAILS_KEYS, 0},
};

static const struct {
	const char *name;
	enum tg_reply_type type;
} TYPES[] = {
	{"error", TG_REPLY_TYPE_ERROR},
	{"ping", TG_REPLY_TYPE_PING},
	{"message_start", TG_REPLY_TYPE_MESSAGE_START},
	{"message_delta", TG_REPLY_TYPE_MESSAGE_DELTA},
	{"message_stop", TG_REPLY_TYPE_MESSAGE_STOP},
	{"content_block_start", TG_REPLY_TYPE_CONTENT_BLOCK_START},
	{"content_block_delta", TG_REPLY_TYPE_CONTENT_BLOCK_DELTA},
	{"content_block_stop", TG_REPLY_TYPE_CONTENT_BLOCK_STOP},
	{"response.completed", TG_REPLY_TYPE_RESPONSE_END},
	{"response.incomplete", TG_REPLY_TYPE_RESPONSE_END},
	{"response.failed", TG_REPLY_TYPE_RESPONSE_END},
};

/* The kinds of value the parser reports: a scalar, or a container's start. */
enum value {
	V_NULL, V_BOOL, V_INTEGER, V_DOUBLE, V_STRING, V_MAP, V_ARRAY,
};

static int
names(const unsigned char *s, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(s, name, len) == 0;
}

static enum tg_reply_type
type_named(const unsigned char *s, size_t len)
{
	static const char responses[] = "response.";

	for (size_t i = 0; i < sizeof(TYPES) / sizeof(TYPES[0]); i++)
		if (names(s, len, TYPES[i].name))
			return TYPES[i].type;
	if (len > sizeof(responses) - 1 && memcmp(s, responses, sizeof(responses) - 1) == 0)
		return TG_REPLY_TYPE_RESPONSE_EVENT;
	return TG_REPLY_TYPE_OTHER;
}

/* The innermost frame, or NULL at the top level and below the frames. */
static struct frame *
current(struct reader *r)
{
	if (r->depth == 0 || r->depth > MAX_FRAMES)
		return NULL;
	return &r->frames[r->depth - 1];
}

static struct tg_reply_usage *
usage_of(struct reader *r, const struct frame *f)
{
	return f->message ? &r->d->message_usage : &r->d->usage;
}

/* Open a container whose place is known; returns 0 when it is too deep. */
static int
push(struct reader *r, enum place place, int message)
{
	if (++r->depth > MAX_DEPTH)
		return 0;
	if (r->depth <= MAX_FRAMES)
		r->frames[r->depth - 1] = (struct frame){place, M_NONE, 0, (unsigned char)message};
	return 1;
}

/* A usage object starts: it replaces an earlier one, as a later member
 * does in a tree. */
static void
start_usage(struct tg_reply_usage *u, enum value v)
{
	memset(u, 0, sizeof(*u));
	if (v == V_MAP)
		u->shape = TG_USAGE_OBJECT;
	else if (v == V_NULL)
		u->shape = TG_USAGE_NULL;
	else
		u->shape = TG_USAGE_OTHER;
}

/* The place of a container that opens as the value of f's current member.
 * A "choices" array also starts the count of choices. */
static enum place
place_of_member(struct reader *r, const struct frame *f, enum value v)
{
	struct tg_reply_digest *d = r->d;

	switch (f->member) {
	case M_CHOICES:
		if (f->place != P_ROOT || v != V_ARRAY)
			return P_OTHER;
		d->choices = 1;
		d->n_choices = 0;
		return P_CHOICES;
	case M_USAGE:
		return v == V_MAP ? P_USAGE : P_OTHER;
	case M_MESSAGE:
		return v == V_MAP ? P_MESSAGE : P_OTHER;
	case M_DELTA:
		if (v != V_MAP)
			return P_OTHER;
		return f->place == P_ROOT ? P_EVENT_DELTA : P_DELTA;
	case M_TOOL_CALLS:
		return v == V_ARRAY ? P_TOOL_CALLS : P_OTHER;
	case M_PROMPT_DETAILS:
		return v == V_MAP ? P_PROMPT_DETAILS : P_OTHER;
	case M_COMPLETION_DETAILS:
		return v == V_MAP ? P_COMPLETION_DETAILS : P_OTHER;
	default:
		return P_OTHER;
	}
}

/* Record what the value of the frame's current member shows. */
static void
take_member(struct reader *r, struct frame *f, enum value v, const unsigned char *s,
            size_t len, long long integer)
{
	struct tg_reply_digest *d = r->d;
	struct tg_reply_usage *u;

	switch (f->member) {
	case M_ERROR:
		/* Some upstreams put "error": null in every ordinary chunk. */
		if (v != V_NULL)
			d->error = 1;
		break;
	case M_TYPE:
		d->type = v == V_STRING ? type_named(s, len) : TG_REPLY_TYPE_NONE;
		d->response_delta = d->type == TG_REPLY_TYPE_RESPONSE_EVENT && len > 6 &&
		                    memcmp(s + len - 6, ".delta", 6) == 0;
		break;
	case M_USAGE:
		start_usage(usage_of(r, f), v);
		if (f->place == P_ROOT && v == V_NULL) {
			d->null_usage_key_end = r->usage_key_end;
			d->null_usage_end = r->base + yajl_get_bytes_consumed(r->handle);
		}
		break;
	case M_TEXT:
	case M_CONTENT:
	case M_REFUSAL:
		if (v == V_STRING && len > 0)
			d->output = 1;
		break;
	case M_REASONING:
		if (v == V_STRING && len > 0)
			d->reasoning = 1;
		break;
	case M_FUNCTION_CALL:
		if (v == V_MAP)
			d->output = 1;
		break;
	case M_FINISH_REASON:
		if (v != V_NULL)
			d->finish = 1;
		break;
	case M_STOP_REASON:
		if (v != V_NULL)
			d->stop_reason = 1;
		break;
	case M_SEQUENCE:
		/* A later member wins, as in a tree. */
		d->has_sequence = v == V_INTEGER && integer >= 0;
		d->sequence = d->has_sequence ? integer : 0;
		break;
	case M_COUNT:
		u = usage_of(r, f);
		u->present |= 1u << f->count;
		if (v == V_INTEGER && integer >= 0)
			u->readable |= 1u << f->count;
		else
			u->readable &= ~(1u << f->count);       /* a later member wins */
		u->count[f->count] = v == V_INTEGER && integer > 0 ? (uint64_t)integer : 0;
		break;
	default:
		break;
	}
}

/* --- the detail ----------------------------------------------------------- */


static const struct {
	const char *text;
	size_t len;
} KNOWN_FINISH_REASONS[] = {
#define KNOWN(text) {text, sizeof(text) - 1}
	KNOWN("stop"), KNOWN("length"), KNOWN("tool_calls"), KNOWN("content_filter"),
	KNOWN("function_call"),
#undef KNOWN
};

#define N_KNOWN_FINISH_REASONS (sizeof(KNOWN_FINISH_REASONS) / sizeof(KNOWN_FINISH_REASONS[0]))

const char *
tg_known_finish_reason(const char *s, size_t len)
{
	for (size_t i = 0; i < N_KNOWN_FINISH_REASONS; i++) {
		if (KNOWN_FINISH_REASONS[i].len == len &&
		    memcmp(s, KNOWN_FINISH_REASONS[i].text, len) == 0)
			return KNOWN_FINISH_REASONS[i].text;
	}
	return NULL;
}

int
tg_is_known_finish_reason(const char *s)
{
	for (size_t i = 0; i < N_KNOWN_FINISH_REASONS; i++) {
		if (s == KNOWN_FINISH_REASONS[i].text)
			return 1;
	}
	return 0;
}

/* The first choices of a detail and the copies of its strings. */
struct tg_reply_detail_block {
	struct tg_reply_choice choices[2];
	char text[128];
};

/* x's block, allocated when x has none yet; NULL when memory ran out. */
static struct tg_reply_detail_block *
detail_block(struct tg_reply_detail *x)
{
	if (x->block == NULL)
		x->block = malloc(sizeof(*x->block));
	return x->block;
}

/* Whether s points into the text of x's block. Compared as integers: C
 * orders pointers only within one object. */
static int
in_block(const struct tg_reply_detail *x, const char *s)
{
	return x->block != NULL &&
	       (uintptr_t)s - (uintptr_t)x->block->text < sizeof(x->block->text);
}

/* Free a string of x that is neither in its block nor a known reason. */
static void
free_string(const struct tg_reply_detail *x, char *s)
{
	if (s != NULL && !in_block(x, s) && !tg_is_known_finish_reason(s))
		free(s);
}

/* A NUL-terminated copy of the len bytes at s, none of which is NUL, in
 * x's block while it has room, else allocated alone; NULL when memory ran
 * out. */
static char *
copy_string(struct tg_reply_detail *x, const unsigned char *s, size_t len)
{
	struct tg_reply_detail_block *block = detail_block(x);
	char *copy;

	if (block == NULL || len >= sizeof(block->text) - x->block_used)
		return strndup((const char *)s, len);
	copy = block->text + x->block_used;
	memcpy(copy, s, len);
	copy[len] = '\0';
	x->block_used += len + 1;
	return copy;
}

/* Set *to to a copy of a string value, or to NULL for any other value.
 * Returns 0 when memory ran out. */
static int
replace_string(struct tg_reply_detail *x, char **to, enum value v, const unsigned char *s,
               size_t len)
{
	free_string(x, *to);
	*to = NULL;
	if (v != V_STRING)
		return 1;
	*to = copy_string(x, s, len);
	return *to != NULL;
}

/* replace_string() for a finish reason, which is nearly always one of
 * the known ones. */
static int
replace_reason(struct tg_reply_detail *x, char **to, enum value v, const unsigned char *s,
               size_t len)
{
	const char *known = v == V_STRING ? tg_known_finish_reason((const char *)s, len) : NULL;

	if (known == NULL)
		return replace_string(x, to, v, s, len);
	free_string(x, *to);
	*to = (char *)known;
	return 1;
}

static enum tg_reply_text
text_kind(enum value v, size_t len)
{
	if (v != V_STRING)
		return TG_REPLY_TEXT_NONE;
	return len > 0 ? TG_REPLY_TEXT_SOME : TG_REPLY_TEXT_EMPTY;
}

static void
drop_choices(struct tg_reply_detail *x)
{
	for (size_t i = 0; i < x->n_choices; i++)
		free_string(x, x->choices[i].finish_reason);
	x->n_choices = 0;
}

/* An object starts at position in "choices". Returns 0 when memory ran
 * out. */
static int
add_choice(struct tg_reply_detail *x, size_t position)
{
	if (x->choices == NULL) {
		if (detail_block(x) == NULL)
			return 0;
		x->choices = x->block->choices;
		x->cap_choices = sizeof(x->block->choices) / sizeof(x->block->choices[0]);
	}
	if (x->n_choices == x->cap_choices) {
		int first = x->block != NULL && x->choices == x->block->choices;
		size_t cap = 2 * x->cap_choices;
		struct tg_reply_choice *grown = first ? malloc(cap * sizeof(*grown))
		                                : realloc(x->choices, cap * sizeof(*grown));

		if (grown == NULL)
			return 0;
		if (first)
			memcpy(grown, x->choices, x->n_choices * sizeof(*grown));
		x->choices = grown;
		x->cap_choices = cap;
	}
	x->choices[x->n_choices++] = (struct tg_reply_choice){
		.position = position, .index = -1,
	};
	return 1;
}

/* The choice whose object, or a container in it, is open. Members of a
 * CHOICE or its delta arrive only after add_choice(). */
static struct tg_reply_choice *
open_choice(struct tg_reply_detail *x)
{
	return &x->choices[x->n_choices - 1];
}

/* A count of the top-level usage, or of one of its details objects: the
 * last member of that name decides. */
static void
take_count(struct tg_reply_detail *x, enum tg_usage_count c, enum value v, long long integer)
{
	if (v == V_INTEGER) {
		x->usage_integer |= 1u << c;
		x->usage[c] = integer;
	} else {
		x->usage_integer &= ~(1u << c);
	}
}

/* Stop reading the detail, which may then differ from a tree's view. The
 * digest goes on as without a detail: the detail's keys are ignored from
 * here on, and they mean nothing to the digest. */
static void
give_up_detail(struct reader *r)
{
	r->x = NULL;
}

/* Record in the detail what the value of f's current member shows.
 * Returns 0 when memory ran out. */
static int
take_detail(struct reader *r, const struct frame *f, enum value v, const unsigned char *s,
            size_t len, long long integer)
{
	struct tg_reply_detail *x = r->x;
	enum value copied = r->string_rejected ? V_NULL : v;   /* of the members kept as text */

	switch (f->member) {
	case M_ID:
		return replace_string(x, &x->id, copied, s, len);
	case M_MODEL:
		return replace_string(x, &x->model, copied, s, len);
	case M_CHOICES:
		drop_choices(x);
		break;
	case M_INDEX:
		open_choice(x)->index = v == V_INTEGER && integer >= 0 ? integer : -1;
		break;
	case M_FINISH_REASON:
		return replace_reason(x, &open_choice(x)->finish_reason, copied, s, len);
	case M_TEXT:
		open_choice(x)->text = (unsigned char)text_kind(v, len);
		break;
	case M_DELTA:
		if (f->place == P_CHOICE) {
			open_choice(x)->content = TG_REPLY_TEXT_NONE;
			open_choice(x)->tool_calls = 0;
		}
		break;
	case M_CONTENT:
		open_choice(x)->content = (unsigned char)text_kind(v, len);
		break;
	case M_TOOL_CALLS:
		open_choice(x)->tool_calls = 0;         /* until an element comes */
		break;
	case M_USAGE:
		if (!f->message)
			x->usage_integer = 0;
		break;
	case M_PROMPT_DETAILS:
		if (!f->message)
			take_count(x, TG_USAGE_CACHED_TOKENS, V_NULL, 0);
		break;
	case M_COMPLETION_DETAILS:
		if (!f->message)
			take_count(x, TG_USAGE_REASONING_TOKENS, V_NULL, 0);
		break;
	case M_COUNT:
		if (!f->message)
			take_count(x, f->count, v, integer);
		break;
	default:
		break;
	}
	return 1;
}

/* A value arrived in the innermost container (or is the whole text). */
static int
take_value(struct reader *r, enum value v, const unsigned char *s, size_t len,
           long long integer)
{
	struct frame *f = current(r);
	int opens = v == V_MAP || v == V_ARRAY;

	if (!opens && r->depth >= MAX_DEPTH)
		return 0;       /* one level deeper than jansson reads */
	if (r->depth == 0 && v == V_MAP) {
		r->root_object = 1;
		return push(r, P_ROOT, 0);
	}
	if (f == NULL)          /* a scalar text, or deeper than the frames */
		return opens ? push(r, P_OTHER, 0) : 1;

	switch (f->place) {
	case P_CHOICES:
		r->d->n_choices++;
		if (r->x != NULL && v == V_MAP && !add_choice(r->x, r->d->n_choices - 1))
			give_up_detail(r);
		return opens ? push(r, v == V_MAP ? P_CHOICE : P_OTHER, 0) : 1;
	case P_TOOL_CALLS:
		r->d->output = 1;
		if (r->x != NULL)
			open_choice(r->x)->tool_calls = 1;
		return opens ? push(r, P_OTHER, 0) : 1;
	case P_OTHER:
		return opens ? push(r, P_OTHER, 0) : 1;
	default:
		break;
	}

	/* The value of a member of an object the shapes describe. */
	take_member(r, f, v, s, len, integer);
	if (r->x != NULL && !take_detail(r, f, v, s, len, integer))
		give_up_detail(r);
	if (!opens)
		return 1;
	return push(r, place_of_member(r, f, v), f->message || f->member == M_MESSAGE);
}

/* --- yajl callbacks ------------------------------------------------------ */

/*
 * Whether jansson takes the string or key s as yajl reported it. For a
 * string without escapes that lies whole in the piece being parsed, yajl
 * passes a pointer into that piece, so when the piece is ASCII without a
 * NUL, the string is too. Any other string (escapes decoded, or a string
 * split between pieces) comes from yajl's own buffers and is checked
 * alone. For the benchmark's chat completion, callgrind counts about 360
 * instructions for the check of the text, and 850 for those of its 31
 * keys and strings.
 */
static int
string_ok(const struct reader *r, const unsigned char *s, size_t len)
{
	uintptr_t at = (uintptr_t)s - (uintptr_t)r->ascii;

	if (r->ascii != NULL && at <= r->ascii_len && len <= r->ascii_len - at)
		return 1;
	return tg_yj_string_ok(s, len);
}

/* The result of a tap's callback: 0 stops the read. */
static int
tap_result(struct reader *r, int go_on)
{
	if (!go_on)
		r->tap_stopped = 1;
	return go_on;
}

/* Pass the event of yajl callback cb to the tap, if it takes that event,
 * with the arguments that follow. Yields 0 when the tap stops the read. */
#define TAP(r, cb, ...) \
	((r)->tap == NULL || (r)->tap->callbacks->cb == NULL || \
	 tap_result((r), (r)->tap->callbacks->cb((r)->tap->ctx, __VA_ARGS__)))
#define TAP_EVENT(r, cb) \
	((r)->tap == NULL || (r)->tap->callbacks->cb == NULL || \
	 tap_result((r), (r)->tap->callbacks->cb((r)->tap->ctx)))

static int
on_null(void *ctx)
{
	struct reader *r = ctx;

	return take_value(r, V_NULL, NULL, 0, 0) && TAP_EVENT(r, yajl_null);
}

static int
on_boolean(void *ctx, int value)
{
	struct reader *r = ctx;

	return take_value(r, V_BOOL, NULL, 0, 0) && TAP(r, yajl_boolean, value);
}

static int
on_integer(void *ctx, long long value)
{
	struct reader *r = ctx;

	return take_value(r, V_INTEGER, NULL, 0, value) && TAP(r, yajl_integer, value);
}

static int
on_double(void *ctx, double value)
{
	struct reader *r = ctx;

	return take_value(r, V_DOUBLE, NULL, 0, 0) && TAP(r, yajl_double, value);
}

/* Numbers come as text, so that an integer beyond 64 bits, which is valid
 * JSON, reads as a real (a usage count that is not one) where yajl's own
 * conversion would stop the read. jansson builds no tree of such a text,
 * so the detail, which replaces one, gives up. */
static int
on_number(void *ctx, const char *s, size_t len)
{
	struct reader *r = ctx;
	long long integer;
	double real;

	switch (tg_yj_number(s, len, &integer, &real)) {
	case TG_YJ_INTEGER:
		return on_integer(ctx, integer);
	case TG_YJ_BIG_INTEGER:
		give_up_detail(r);
		return on_double(ctx, real);
	case TG_YJ_REAL:
		return on_double(ctx, real);
	case TG_YJ_OVERFLOW:
		break;
	}
	return 0;
}

/* Take a string that jansson rejects. jansson then rejects the whole text,
 * so no tree can stand in for the detail. The detail therefore leaves out
 * the id, model or finish reason that the string would be, as if it were
 * null, and keeps its other members. The digest takes it as any string. */
static int
take_rejected_string(struct reader *r, const unsigned char *s, size_t len)
{
	int ok;

	r->string_rejected = 1;
	ok = take_value(r, V_STRING, s, len, 0);
	r->string_rejected = 0;
	return ok;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct reader *r = ctx;

	if (r->x != NULL && !string_ok(r, s, len))
		return take_rejected_string(r, s, len) && TAP(r, yajl_string, s, len);
	return take_value(r, V_STRING, s, len, 0) && TAP(r, yajl_string, s, len);
}

static int
on_start_map(void *ctx)
{
	struct reader *r = ctx;

	return take_value(r, V_MAP, NULL, 0, 0) && TAP_EVENT(r, yajl_start_map);
}

static int
on_start_array(void *ctx)
{
	struct reader *r = ctx;

	return take_value(r, V_ARRAY, NULL, 0, 0) && TAP_EVENT(r, yajl_start_array);
}

static int
on_end_map(void *ctx)
{
	struct reader *r = ctx;

	r->depth--;
	return TAP_EVENT(r, yajl_end_map);
}

static int
on_end_array(void *ctx)
{
	struct reader *r = ctx;

	r->depth--;
	return TAP_EVENT(r, yajl_end_array);
}

/* The member a key names in the innermost frame, if it is one whose keys
 * the digest reads. */
static void
take_key(struct reader *r, const unsigned char *s, size_t len)
{
	struct frame *f = current(r);
	const struct key *k;

	if (f == NULL || f->place >= sizeof(PLACE_KEYS) / sizeof(PLACE_KEYS[0]) ||
	    PLACE_KEYS[f->place].keys == NULL)
		return;
	f->member = M_NONE;
	k = PLACE_KEYS[f->place].keys;
	if (r->x == NULL)
		k += PLACE_KEYS[f->place].detail_only;
	/* The first byte distinguishes most keys of the same length without a
	 * call to memcmp(), and a chunk has a dozen such keys. */
	for (; k->name != NULL; k++) {
		if (k->len == len && (unsigned char)k->name[0] == s[0] &&
		    memcmp(s, k->name, len) == 0) {
			f->member = k->member;
			f->count = k->count;
			break;
		}
	}
}

static int
on_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct reader *r = ctx;

	/* A key that jansson rejects cannot be one of the ASCII keys that the
	 * detail reads, so the detail goes on, as for a rejected string. */
	if (len == 5 && memcmp(s, "usage", 5) == 0) {
		r->usage_keys++;
		r->usage_key_end = r->base + yajl_get_bytes_consumed(r->handle);
	}
	take_key(r, s, len);
	return TAP(r, yajl_map_key, s, len);
}

static const yajl_callbacks CALLBACKS = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/* --- reading ------------------------------------------------------------- */

/* Start a read into d, and into x and tap unless they are NULL. The tap
 * gets numbers through yajl_integer and yajl_double (on_number), so one
 * that set yajl_number would miss them. The parser stops at
 * the end of the value, because yajl would take an unterminated string
 * after it for a token yet to end. read_text() checks the text after the
 * value instead. */
static yajl_handle
start(struct reader *r, struct tg_reply_digest *d, struct tg_reply_detail *x,
      const struct tg_reply_tap *tap)
{
	yajl_handle h;

	assert(tap == NULL || tap->callbacks->yajl_number == NULL);
	memset(d, 0, sizeof(*d));
	memset(r, 0, sizeof(*r));
	r->tap = tap;
	r->d = d;
	if (x != NULL)
		memset(x, 0, sizeof(*x));
	r->x = x;
	r->detail = x;
	h = tg_yajl_alloc(&CALLBACKS, r);
	if (h != NULL)
		yajl_config(h, yajl_allow_trailing_garbage, 1);
	r->handle = h;
	return h;
}

/* Whether c is whitespace in JSON's grammar. */
static int
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Read the next len bytes of the text. Those after the end of the value
 * must be whitespace, as jansson requires. The detail also fails on \f
 * and \v, which jansson rejects anywhere and yajl takes for whitespace
 * between tokens (inside a string, both reject them). */
static yajl_status
read_text(struct reader *r, yajl_handle h, const unsigned char *text, size_t len)
{
	yajl_status st;

	if (r->x != NULL && (memchr(text, '\f', len) != NULL || memchr(text, '\v', len) != NULL))
		give_up_detail(r);
	if (r->x != NULL && tg_yj_ascii_text(text, len)) {
		r->ascii = text;
		r->ascii_len = len;
	}
	st = yajl_parse(h, text, len);
	r->ascii = NULL;

	if (st != yajl_status_ok)
		return st;
	for (size_t i = yajl_get_bytes_consumed(h); i < len; i++)
		if (!is_space(text[i]))
			return yajl_status_error;
	return st;
}

/* End a read whose parse status so far is st. Returns the result of
 * tg_reply_digest_tap_buffer(). */
static int
finish(struct reader *r, yajl_handle h, yajl_status st)
{
	if (h == NULL)
		st = yajl_status_error;
	else if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (h != NULL)
		tg_yajl_free(h);

	if (r->detail != NULL && (st != yajl_status_ok || r->x == NULL))
		tg_reply_detail_free(r->detail);
	else if (r->detail != NULL)
		r->detail->usable = 1;

	if (st != yajl_status_ok) {
		memset(r->d, 0, sizeof(*r->d));
		return r->tap_stopped ? 1 : -1;
	}
	r->d->object = r->root_object;
	if (r->usage_keys != 1 || r->d->usage.shape != TG_USAGE_NULL) {
		r->d->null_usage_key_end = 0;
		r->d->null_usage_end = 0;
	}
	return 0;
}

/* Read len bytes of text in one yajl call; *handle, unless handle is
 * NULL, is the parse's handle meanwhile. */
static int
read_all(struct tg_reply_digest *d, struct tg_reply_detail *x, const char *text, size_t len,
         const struct tg_reply_tap *tap, yajl_handle *handle)
{
	struct reader r;
	yajl_handle h = start(&r, d, x, tap);
	yajl_status st = yajl_status_ok;

	if (handle != NULL)
		*handle = h;
	if (h != NULL)
		st = read_text(&r, h, (const unsigned char *)text, len);
	return finish(&r, h, st);
}

static int
read_buffer(struct tg_reply_digest *d, struct tg_reply_detail *x, struct evbuffer *buf,
            const struct tg_reply_tap *tap)
{
	struct reader r;
	yajl_handle h = start(&r, d, x, tap);
	yajl_status st = yajl_status_ok;
	size_t total = evbuffer_get_length(buf), done = 0;
	struct evbuffer_ptr at;
	struct evbuffer_iovec seg;

	/* Segment by segment, so a body that arrived in pieces is not copied
	 * into one block first. */
	evbuffer_ptr_set(buf, &at, 0, EVBUFFER_PTR_SET);
	while (h != NULL && st == yajl_status_ok && done < total) {
		if (evbuffer_peek(buf, -1, &at, &seg, 1) < 1)
			break;
		st = read_text(&r, h, seg.iov_base, seg.iov_len);
		r.base += seg.iov_len;
		done += seg.iov_len;
		if (done < total && evbuffer_ptr_set(buf, &at, seg.iov_len, EVBUFFER_PTR_ADD) != 0)
			break;
	}
	return finish(&r, h, st);
}

int
tg_reply_digest(struct tg_reply_digest *d, const char *text, size_t len)
{
	return read_all(d, NULL, text, len, NULL, NULL);
}

int
tg_reply_digest_buffer(struct tg_reply_digest *d, struct evbuffer *buf)
{
	return read_buffer(d, NULL, buf, NULL);
}

int
tg_reply_digest_detail(struct tg_reply_digest *d, struct tg_reply_detail *x,
                       const char *text, size_t len)
{
	return read_all(d, x, text, len, NULL, NULL);
}

int
tg_reply_digest_detail_buffer(struct tg_reply_digest *d, struct tg_reply_detail *x,
                              struct evbuffer *buf)
{
	return read_buffer(d, x, buf, NULL);
}

int
tg_reply_digest_tap_buffer(struct tg_reply_digest *d, struct tg_reply_detail *x,
                           struct evbuffer *buf, const struct tg_reply_tap *tap)
{
	return read_buffer(d, x, buf, tap);
}

int
tg_reply_digest_tap(struct tg_reply_digest *d, struct tg_reply_detail *x, const char *text,
                    size_t len, const struct tg_reply_tap *tap, yajl_handle *handle)
{
	return read_all(d, x, text, len, tap, handle);
}

void
tg_reply_detail_free(struct tg_reply_detail *x)
{
	drop_choices(x);
	if (x->block == NULL || x->choices != x->block->choices)
		free(x->choices);
	free_string(x, x->id);
	free_string(x, x->model);
	free(x->block);
	memset(x, 0, sizeof(*x));
}

int
tg_reply_tree_has_error(const json_t *reply)
{
	const json_t *error = json_object_get(reply, "error");

	return error != NULL && !json_is_null(error);
}
