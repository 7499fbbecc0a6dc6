/*
 * What the gateway reads of a provider's reply on every request: a
 * non-streamed response body, or the data of one stream event.
 *
 * The relay needs to know whether an event is an error, carries output or
 * a finish reason (to hold events and fail over before the first token),
 * and the metrics need the token usage. Those are a few members at fixed
 * places of OpenAI's and Anthropic's shapes, so they are read with yajl's
 * event parser as the text goes by, without building a tree. Building and
 * freeing a jansson tree of a 270-byte chunk costs about six times as much
 * (3.9 against 0.6 us on the benchmark machine). A tree is still built,
 * from the same text, when a feature needs the whole reply (content
 * filters, the cache, tracing that captures output text).
 *
 * A member given twice counts as given, where a jansson tree would keep
 * only the last one; values read as numbers or text follow the last one.
 *
 * Tracing reads a few members more (the response's id and model, each
 * choice's index and finish reason), and reads every member as a tree
 * would. The relay reads them in the same pass as the digest, with
 * tg_reply_digest_detail(), only for a traced request, so that other
 * reads compare no more keys and copy no strings.
 */
#ifndef TOLLGATE_REPLY_DIGEST_H
#define TOLLGATE_REPLY_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_parse.h>

struct evbuffer;
struct json_t;

/* The top-level "type" of Anthropic's stream events, and of the Responses
 * API's, told apart only as a kind. */
enum tg_reply_type {
	TG_REPLY_TYPE_NONE,             /* absent, or not a string */
	TG_REPLY_TYPE_OTHER,            /* a string not listed here */
	TG_REPLY_TYPE_ERROR,
	TG_REPLY_TYPE_PING,
	TG_REPLY_TYPE_MESSAGE_START,
	TG_REPLY_TYPE_MESSAGE_DELTA,
	TG_REPLY_TYPE_MESSAGE_STOP,
	TG_REPLY_TYPE_CONTENT_BLOCK_START,
	TG_REPLY_TYPE_CONTENT_BLOCK_DELTA,
	TG_REPLY_TYPE_CONTENT_BLOCK_STOP,
	TG_REPLY_TYPE_RESPONSE_EVENT,   /* "response." and more: an event of a
	                                   Responses API stream */
	TG_REPLY_TYPE_RESPONSE_END,     /* response.completed, .incomplete or
	                                   .failed: the last such event */
};

/* The counts a usage object may carry, OpenAI's and Anthropic's names. */
enum tg_usage_count {
	TG_USAGE_PROMPT_TOKENS,
	TG_USAGE_COMPLETION_TOKENS,
	TG_USAGE_CACHED_TOKENS,         /* prompt_tokens_details.cached_tokens */
	TG_USAGE_REASONING_TOKENS,      /* completion_tokens_details.reasoning_tokens */
	TG_USAGE_INPUT_TOKENS,
	TG_USAGE_OUTPUT_TOKENS,
	TG_USAGE_CACHE_READ_INPUT_TOKENS,
	TG_USAGE_CACHE_CREATION_INPUT_TOKENS,
	TG_USAGE_COUNTS
};

enum tg_usage_shape {
	TG_USAGE_ABSENT,
	TG_USAGE_NULL,                  /* "usage": null */
	TG_USAGE_OBJECT,
	TG_USAGE_OTHER,                 /* any other value */
};

struct tg_reply_usage {
	enum tg_usage_shape shape;
	unsigned present;               /* bit (1u << count) set when the member is there */
	unsigned readable;              /* bit (1u << count) set when it is an integer >= 0 */
	uint64_t count[TG_USAGE_COUNTS];        /* positive integers; anything else is 0 */
};

struct tg_reply_digest {
	unsigned object:1;              /* valid JSON whose top level is an object */
	unsigned error:1;               /* a top-level "error" member, of any value */
	unsigned choices:1;             /* a top-level "choices" array */
	unsigned output:1;              /* a choice has text, content, refusal or a tool call */
	unsigned reasoning:1;           /* a choice's delta has reasoning text */
	unsigned finish:1;              /* a choice has a finish_reason other than null */
	unsigned stop_reason:1;         /* "delta" has a stop_reason other than null */
	unsigned response_delta:1;      /* a Responses API event "response.*.delta":
	                                   streamed output */
	unsigned has_sequence:1;        /* a top-level "sequence_number", an
	                                   integer of 0 or more (Responses API) */
	size_t n_choices;
	enum tg_reply_type type;
	int64_t sequence;               /* that "sequence_number" when has_sequence */
	struct tg_reply_usage usage;            /* the top-level "usage" */
	struct tg_reply_usage message_usage;    /* "message": {"usage"} (message_start),
	                                           or "response": {"usage"} (the
	                                           Responses API's end events) */
	/* Offsets in the text just past the top-level "usage" key and just
	 * past its value, when that value is null and no other key at any
	 * depth is named "usage". Both are 0 otherwise. */
	size_t null_usage_key_end, null_usage_end;
};

/*
 * Read len bytes of JSON text into d. Returns 0 when the text is valid
 * JSON, else -1 with d zeroed, as for any text that is not an object
 * (d->object is 0).
 *
 * NOTE: validity is yajl's (2.1), which is not jansson's (2.14) on a few
 * texts. yajl also takes \f and \v as whitespace, UTF-8 that is overlong,
 * encodes a surrogate or lies past U+10FFFF, and the escapes \u0000 and
 * lone surrogates. It rejects the integer -9223372036854775808.
 */
int tg_reply_digest(struct tg_reply_digest *d, const char *text, size_t len);

/*
 * Return 1 when reply, a jansson tree of a response body or stream event,
 * reports an error: its "error" member is there and not null. Some
 * upstreams send "error": null in ordinary replies. Return 0 when reply is
 * NULL or not an object. Unlike the digest's error bit, which counts the
 * member whatever its value, this serves the features that read the tree:
 * the cache, and the relay's 502 for a stream that failed.
 */
int tg_reply_tree_has_error(const struct json_t *reply);

/* The same for the whole contents of buf, read in place. */
int tg_reply_digest_buffer(struct tg_reply_digest *d, struct evbuffer *buf);

/* The kind of value of a choice's "text", or of its "delta"'s "content". */
enum tg_reply_text {
	TG_REPLY_TEXT_NONE,             /* absent, or not a string */
	TG_REPLY_TEXT_EMPTY,            /* "" */
	TG_REPLY_TEXT_SOME,             /* a string of one byte or more */
};

/* An object in the top-level "choices" array. */
struct tg_reply_choice {
	size_t position;                /* in the array, from 0 */
	int64_t index;                  /* "index" when an integer >= 0, else -1 */
	char *finish_reason;            /* "finish_reason" when a string, else NULL */
	unsigned char text;             /* enum tg_reply_text of "text" */
	unsigned char content;          /* enum tg_reply_text of "delta": {"content"} */
	unsigned char tool_calls;       /* "delta": {"tool_calls"} is a non-empty array */
};

struct tg_reply_detail_block;

/*
 * The members tracing reads besides the digest. Each member reads as its
 * last occurrence, as in a jansson tree. Strings are copies, or a finish
 * reason of tg_known_finish_reason(). A zeroed detail is empty and not
 * usable.
 *
 * The copies and the first choices go into one block, allocated with the
 * first of them, while it has room: a reply with one choice and an id
 * and a model of usual length then takes one allocation. An allocation
 * per string and for the choices cost about 600 instructions more per
 * reply in malloc() and free().
 */
struct tg_reply_detail {
	int usable;                     /* read whole; see tg_reply_digest_detail() */
	char *id;                       /* top-level "id" when a string, else NULL */
	char *model;                    /* top-level "model" when a string, else NULL */
	struct tg_reply_choice *choices;        /* the objects of the last "choices" */
	size_t n_choices, cap_choices;
	unsigned usage_integer;         /* bit (1u << count) set when the last
	                                 * top-level "usage" is an object with
	                                 * the count as an integer */
	int64_t usage[TG_USAGE_COUNTS]; /* those integers, negative ones too */
	struct tg_reply_detail_block *block;    /* NULL until the first copy or choice */
	size_t block_used;              /* bytes of the block's text room taken */
};

/* The finish reasons that OpenAI documents ("stop", "length",
 * "tool_calls", "content_filter", "function_call"): nearly every reply
 * gives one, so that a reader keeps the string of this table instead of a
 * copy. Returns the table's string equal to the len bytes at s, or NULL
 * for any other text. */
const char *tg_known_finish_reason(const char *s, size_t len);

/* Whether s is a string that tg_known_finish_reason() returns, which is
 * not to be freed. */
int tg_is_known_finish_reason(const char *s);

/*
 * Read len bytes of JSON text into d exactly as tg_reply_digest() does,
 * with the same result, and into x the members of struct tg_reply_detail.
 * The caller frees x with tg_reply_detail_free().
 *
 * x is usable only when the text is valid JSON, memory sufficed, and \f
 * and \v do not occur. Otherwise x is empty, and the caller reads the text
 * with jansson instead. A string or key that jansson rejects (invalid
 * UTF-8 by libunistring's u8_check, or a NUL) makes jansson reject the
 * whole text, so x stays usable without it. Such an id, model or finish
 * reason reads as NULL, and the other members are kept.
 * NOTE: yajl takes a lone high surrogate escape ("\ud800") for "?", or
 * pairs it with the escape after it, where jansson rejects the text. The
 * detail of such a text is usable.
 */
int tg_reply_digest_detail(struct tg_reply_digest *d, struct tg_reply_detail *x,
                           const char *text, size_t len);

/* The same for the whole contents of buf, read in place. */
int tg_reply_digest_detail_buffer(struct tg_reply_digest *d, struct tg_reply_detail *x,
                                  struct evbuffer *buf);

/*
 * A second reader of the text, fed in the pass that reads the digest:
 * yajl callbacks and their context. Each event goes to the digest first,
 * then to the tap's callback for it, unless that is NULL. The tap must
 * leave yajl_number NULL, since the digest takes numbers as integers and
 * doubles. A callback of the tap that returns 0 stops the read.
 */
struct tg_reply_tap {
	const yajl_callbacks *callbacks;
	void *ctx;
};

/*
 * tg_reply_digest_detail_buffer(), without a detail when x is NULL, that
 * also feeds tap. Returns 0 or -1 as that does, or 1 when the tap stopped
 * the read. After 1, d is zeroed and x empty, as for a text that is not
 * JSON. After -1, the tap has missed the events from the one where the
 * digest stopped, which may be in text that yajl reads but nested deeper
 * than jansson reads.
 */
int tg_reply_digest_tap_buffer(struct tg_reply_digest *d, struct tg_reply_detail *x,
                               struct evbuffer *buf, const struct tg_reply_tap *tap);

/* The same for len bytes of text, which yajl reads in one call. *handle
 * is set to the parse's handle before the first event, so that the tap's
 * callbacks can call yajl_get_bytes_consumed(), an offset into text. */
int tg_reply_digest_tap(struct tg_reply_digest *d, struct tg_reply_detail *x,
                        const char *text, size_t len, const struct tg_reply_tap *tap,
                        yajl_handle *handle);

/* Free what x owns. */
void tg_reply_detail_free(struct tg_reply_detail *x);

/* Whether u has the count's member, of any value. */
static inline int
tg_usage_has(const struct tg_reply_usage *u, enum tg_usage_count c)
{
	return (u->present >> c) & 1u;
}

/* Whether the count's member of u is an integer of 0 or more, or is not
 * there. A count of another value reads as 0, which is not a real count. */
static inline int
tg_usage_readable(const struct tg_reply_usage *u, enum tg_usage_count c)
{
	return ((u->present & ~u->readable) >> c & 1u) == 0;
}

#endif
