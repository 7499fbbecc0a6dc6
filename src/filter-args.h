/*
 * The strings of a JSON text that is itself the value of a JSON string:
 * the "arguments" of an OpenAI tool call or function call, and the
 * "partial_json" of an Anthropic input_json_delta.
 *
 * The filters read such a text once decoded from the outer string, where
 * an escape of the inner level is still written out. The arguments
 * {"to":"a\u0040b.com"} reach a client's JSON.parse as a@b.com, while a
 * regex matches against a\u0040b.com. A decoder reads the inner text with yajl, fed
 * whole or piece by piece as a stream delivers it, and passes the caller
 * each string and key whose inner JSON has an escape, decoded, and on
 * request each string value without one, which is a substring of the
 * text (a rule anchored with ^ and $ matches it only alone).
 * A text that is not JSON stops the decoder, as it stops the client's
 * parse: the filters then read the text as it is.
 */
#ifndef TOLLGATE_FILTER_ARGS_H
#define TOLLGATE_FILTER_ARGS_H

#include <stddef.h>

#include <yajl/yajl_parse.h>

#include "filter.h"

struct tg_args_decoder {
	yajl_handle h;
	tg_text_fn *fn;
	void *arg;
	const char *data;       /* the piece the parse under way was given */
	size_t base;            /* its offset in the whole text */
	size_t token_end;       /* offset just after the last string or key */
	size_t token_start;     /* token_end of the one before it, where the
	                           text of the last string or key began */
	int escaped;            /* the text before the piece, from token_end
	                           on, has a backslash */
	int stopped;            /* not JSON, or fn returned nonzero */
	int fn_stopped;         /* fn returned nonzero */
	int values;             /* set by the caller: pass fn every string
	                           value, with or without an escape, and
	                           every number */
	int last_escaped;       /* the string fn got was written with one */
	int last_number;        /* fn got a number, as written */
	size_t number_end;      /* then the offset just after it */
	int completing;         /* in yajl_complete_parse() */
};

/* Start a decoder that calls fn(arg, string, len) on each escaped string.
 * With d->values set after this, fn gets every string value too (keys
 * only when escaped), with d->last_escaped telling which, and token_end
 * just after its closing quote. It gets each number as well, with
 * d->last_number set and number_end just after it, but not a number that
 * ends the text, which yajl passes only from its own buffer. Returns 0,
 * or -1 when out of memory. */
int tg_args_open(struct tg_args_decoder *d, tg_text_fn *fn, void *arg);

/*
 * Give the decoder the next len bytes of the text; with last, the text
 * ends there. data need stay valid only during the call. Returns 1 when fn returned nonzero, else
 * 0 (a text that is not JSON stops the decoder quietly).
 */
int tg_args_feed(struct tg_args_decoder *d, const char *data, size_t len, int last);

/*
 * Return the offset from which the decoder keeps the text back. That is the
 * start of an incomplete string with a backslash, whose decoded form no
 * filter has scanned yet. Returns SIZE_MAX when there is none, or when the
 * decoder stopped. rest_escaped is 1 when the text not yet given to the
 * decoder has a backslash, which may continue the last string or start
 * another.
 */
size_t tg_args_hold(const struct tg_args_decoder *d, int rest_escaped);

/* Free what d owns; d is then closed. */
void tg_args_close(struct tg_args_decoder *d);

/*
 * Decode the whole text of len bytes, calling fn on each escaped string
 * and key. Returns 0 when fn never returned nonzero, 1 when it did, -1
 * when out of memory. A text without a backslash costs one memchr().
 */
int tg_args_read(const char *text, size_t len, tg_text_fn *fn, void *arg);

/* A value that tg_args_values() passes: its decoded text of len bytes,
 * and end, the offset in the arguments just past the value as written
 * (past the closing quote of a string), or SIZE_MAX when yajl passes the
 * value only as the parse completes (a number that ends the text). */
typedef int tg_args_value_fn(void *arg, const char *text, size_t len, size_t end);

/* Whether the value that tg_args_values() passed fn from the text of
 * raw_len bytes at raw is a number: one in place, not after a quote, or
 * one passed as the parse completes. */
int tg_args_is_number(const char *raw, size_t raw_len, const char *text, size_t len,
                      size_t end);

/* The result of tg_args_values() for a text that is not JSON. */
#define TG_ARGS_NOT_JSON 2

/*
 * Call fn on each string value of the JSON text of len bytes, decoded, and
 * on the text of each number, and key_fn, unless NULL, on each key,
 * decoded. Keys are not values, nor are literals (true, false, null).
 * The parse takes its memory from the thread's block (yajl-arena.h), so
 * it may run inside a callback of the parse of the body around the text.
 * The whole text goes to one yajl_parse() call, so a string written
 * without an escape and every number reach fn in place, at their offsets
 * in text. A string with an escape reaches fn from yajl's own buffer.
 * Returns 0 when the text is JSON and neither fn nor key_fn returned
 * nonzero, and 1 when one did, which stops the read. Returns
 * TG_ARGS_NOT_JSON when the text is not JSON, though fn may have seen the
 * values before the fault, and -1 when out of memory.
 */
int tg_args_values(const char *text, size_t len, tg_args_value_fn *fn, tg_text_fn *key_fn,
                   void *arg);

#endif
