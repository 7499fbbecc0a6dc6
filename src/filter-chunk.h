/*
 * The texts of one streamed chunk (chat.completion.chunk or
 * text_completion) or Anthropic Messages stream event, read with yajl's
 * event parser for the stream filters, which need no jansson tree for an
 * event they do not change.
 *
 * A read gives each text the filters check: a choice's delta.content
 * (a string, or the "text" and "refusal" of each part of an array),
 * delta.refusal, delta.reasoning_content, delta.reasoning, text, the
 * function arguments of each tool call, and
 * delta.function_call.arguments of the legacy functions API. Of
 * an Anthropic event it gives content_block.text and .thinking
 * (content_block_start), and delta.text, .partial_json and .thinking
 * (content_block_delta), the text and thinking of each block of
 * message.content (message_start), and each string inside a tool_use
 * block's input and a citations_delta's citation. The other members of
 * those blocks are read by the member tables of a response body
 * (filter-members.h), such as a server tool's result. Of a chat chunk it
 * gives delta.audio.transcript too, and of an error event, in either
 * shape, error.message, error.param, or an error given as a string. An
 * Anthropic event
 * reads as one choice, its content block. The choice's index is the
 * event's "index", and a content_block_stop event finishes it. A
 * message_start event reads as one choice per block. Each
 * comes decoded, with the place of its JSON string in the data, so that a
 * masked text can be written into the data again. The read also finds
 * whether jansson reads the data exactly as yajl did. When it cannot be
 * sure, jansson decides, since the filters must fail closed on data that
 * a tree would not keep whole (a member given twice, the escape \u0000,
 * a lone surrogate, invalid UTF-8, \f or \v between tokens).
 */
#ifndef TOLLGATE_FILTER_CHUNK_H
#define TOLLGATE_FILTER_CHUNK_H

#include <stddef.h>

#include <yajl/yajl_parse.h>

#include "yajl-jansson.h"

struct tg_reply_tap;

/* Containers whose keys are checked; a deeper one makes the read unsure. */
#define TG_CHUNK_MAX_FRAMES 32

/* The largest "index" read. JavaScript clients key choices and tool calls
 * by the number's value, which a double keeps exact up to 2^53; this
 * bound is far inside that, and far above any real count. */
#define TG_CHUNK_MAX_INDEX 2147483647L

/* Kinds of text in a choice, in the order the filters take them. */
enum tg_chunk_kind {
	TG_CHUNK_CONTENT,       /* delta.content */
	TG_CHUNK_REFUSAL,       /* delta.refusal */
	TG_CHUNK_TEXT,          /* choices[].text of a completion */
	TG_CHUNK_ARGUMENTS,     /* delta.tool_calls[].function.arguments */
	TG_CHUNK_FUNCTION_CALL, /* delta.function_call.arguments (legacy) */
	TG_CHUNK_THINKING,      /* Anthropic delta.thinking, content_block.thinking */
	TG_CHUNK_INPUT_JSON,    /* Anthropic delta.partial_json */
	TG_CHUNK_REASONING_CONTENT,     /* delta.reasoning_content */
	TG_CHUNK_REASONING,     /* delta.reasoning */
	TG_CHUNK_TRANSCRIPT,    /* delta.audio.transcript */
	TG_CHUNK_VALUE,         /* Anthropic: a string inside a tool_use
	                           block's "input" or a "citation", a text
	                           of its own, complete */
};

struct tg_chunk_text {
	size_t choice;          /* position of its choice in the chunk's list */
	enum tg_chunk_kind kind;
	long tool;              /* its tool call's "index", or the call's
	                           position in tool_calls (TG_CHUNK_ARGUMENTS) */
	size_t at, end;         /* its JSON string in the data, quotes included */
	size_t text, len;       /* its decoded bytes, at text in the chunk's buf */
	size_t call;            /* its tool call, in the read's own count */
	size_t order;           /* of arrival, to keep it among equals */
};

/* An object of the top-level "choices" array, or an Anthropic event's
 * content block. */
struct tg_chunk_choice {
	long index;             /* "index" when an integer, else its position
	                           (a block's: 0) */
	int finished;           /* "finish_reason" is a non-empty string, or
	                           the event is a content_block_stop */
	int indexed;            /* a choice's "index" was read; an Anthropic
	                           block always counts as indexed */
};

/* A container open in the read under way. */
struct tg_chunk_frame {
	unsigned char place;    /* what it is in the chunk's shape */
	unsigned char member;   /* what the last key of an object named */
	unsigned char array;
	unsigned char rule;     /* the rule of the member tables that reads
	                           it: an Anthropic block's, or P_RULED's */
	unsigned char member_rule;      /* the rule of the last key's value,
	                                   when member is M_RULED */
	signed char text_type;  /* an object's "type" the tables read: 1 when
	                           "text", -1 another, 0 not read yet */
	size_t items;           /* an array's values so far */
	size_t first_key;       /* an object's first key in the chunk's keys */
};

/* The result of a read, reused from event to event, so that a stream
 * allocates only while its chunks grow. Zeroed is empty. */
struct tg_chunk {
	struct tg_chunk_text *texts;    /* by choice, then kind, then arrival */
	size_t n_texts, cap_texts;
	struct tg_chunk_choice *choices;        /* objects only, in order */
	size_t n_choices, cap_choices;
	size_t block;           /* the Anthropic block's place in choices;
	                           SIZE_MAX while the read found none */
	long *calls;            /* each tool call's index, in the read's count */
	size_t n_calls, cap_calls;
	char *buf;              /* the decoded texts */
	size_t buf_len, buf_cap;
	struct tg_yj_keys keys; /* of the open objects, for finding a key
	                           given twice */
	int deep_text;          /* texts nested deeper than the frames, which
	                           the read cannot give, so the stream
	                           filters fail closed */
	int odd_text;           /* a number, a boolean, or a container that
	                           is not an array of parts, where a text
	                           string belongs (delta.content: 5). A
	                           client may read it as text (JavaScript's
	                           += turns 5 into "5"), and the read gives
	                           only strings, so the stream filters fail
	                           closed */
	int bad_index;          /* an "index" (of a choice, a tool call or the
	                           Anthropic event) is not an integer from 0 to
	                           TG_CHUNK_MAX_INDEX. Its choice or call then
	                           has its position as index, but clients key
	                           it by the value (1.0 and "1" are 1 to
	                           JavaScript), so the stream filters fail
	                           closed rather than split one text in two. */

	/* The read under way. */
	yajl_handle h;          /* the parse, for yajl_get_bytes_consumed() */
	const char *data;
	size_t len;
	int unsure;             /* jansson must decide */
	int failed;             /* out of memory */
	size_t depth;           /* containers open, frames or not */
	size_t key_end;         /* just after the last key */
	size_t order;           /* texts so far */
	struct tg_chunk_frame frames[TG_CHUNK_MAX_FRAMES];
};

enum tg_chunk_result {
	TG_CHUNK_READ,          /* jansson reads the data with these texts */
	TG_CHUNK_UNSURE,        /* the texts are yajl's; jansson must decide */
	TG_CHUNK_FAILED,        /* out of memory */
};

/*
 * Read len bytes of data, which the reply digest found to be one JSON
 * object (and nothing after it but whitespace), into c. Returns
 * TG_CHUNK_READ when jansson, with JSON_REJECT_DUPLICATES, reads the data
 * as an object with these same texts. TG_CHUNK_UNSURE means the texts are
 * valid only if jansson reads the data; the caller parses it to know.
 */
enum tg_chunk_result tg_chunk_read(struct tg_chunk *c, const char *data, size_t len);

/*
 * The same read, in the pass of the reply digest over the data: begin
 * fills *tap for tg_reply_digest_tap(), which must be given &c->h as its
 * handle, and end returns what tg_chunk_read() would have. whole is 1
 * when the digest read the data to its end (it returned 0), else 0, and
 * then the result is TG_CHUNK_UNSURE or TG_CHUNK_FAILED.
 */
void tg_chunk_begin(struct tg_chunk *c, const char *data, size_t len, struct tg_reply_tap *tap);
enum tg_chunk_result tg_chunk_end(struct tg_chunk *c, int whole);

/* Free what c owns; c is then empty. */
void tg_chunk_free(struct tg_chunk *c);

#endif
