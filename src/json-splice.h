/*
 * A JSON text written again with some of its string values replaced and
 * every other byte as the client sent it. Numbers keep their form (0.7,
 * 1E2, integers beyond 64 bits), and so do the order of keys, the spacing
 * and the escapes of the other values. A backend, or a signature over the
 * body, then sees the client's text but for the values the gateway
 * changed.
 *
 * The places of the values come from tg_args_values() (filter-args.h),
 * which reads the text with yajl and gives the end of each value as
 * written; each replacement is a string written by tg_json_stringn(). The
 * request filters splice the masked values of a tool call's arguments
 * into the arguments this way, and the masked texts of a request into its
 * body (tg_splice_tree()).
 */
#ifndef TOLLGATE_JSON_SPLICE_H
#define TOLLGATE_JSON_SPLICE_H

#include <stddef.h>

#include <jansson.h>

#include "json-writer.h"

/* The place of a value in a text: the bytes from..to, quotes included. */
struct tg_splice_place {
	size_t from, to;
	int string;             /* the value is a string, not a number */
};

/*
 * Find the place in raw (raw_len bytes) of the value that tg_args_values()
 * passed as text, len and end while reading raw. Returns 0, or -1 when the
 * place is unknown: a value passed from yajl's own buffer without an end
 * (a number that ends the text).
 */
int tg_splice_place(const char *raw, size_t raw_len, const char *text, size_t len, size_t end,
                    struct tg_splice_place *place);

/* raw written again, up to done, into out. */
struct tg_splice {
	struct tg_json_writer out;
	const char *raw;
	size_t raw_len;
	size_t done;            /* bytes of raw that out holds, replaced or not */
	int changed;            /* a value was replaced */
};

/* Start writing raw again; raw must stay unchanged until the end. */
void tg_splice_init(struct tg_splice *s, const char *raw, size_t raw_len);

/* Copy raw up to place, then write the len bytes of text as a JSON string
 * instead of the value there. Places must come in the order of the text,
 * each after the one before. A failure shows in s->out.failed. */
void tg_splice_string(struct tg_splice *s, struct tg_splice_place place, const char *text,
                      size_t len);

/* Copy the rest of raw. Returns 0, or -1 when memory ran out: s->out then
 * contains no usable text. */
int tg_splice_finish(struct tg_splice *s);

/* The result of tg_splice_tree() when tree and raw do not pair up. */
#define TG_SPLICE_UNPAIRED 2

/*
 * Write raw (raw_len bytes) into out with each string value replaced by
 * the string that tree contains there. tree is jansson's parse of raw, with
 * strings changed in place since (json_string_setn()); it must not have
 * gained or lost a string or a number. The values pair up in the order of
 * the text: jansson keeps the members of an object in the order it read
 * them, and the parse refused a key given twice. A string that the tree
 * contains as it was read is copied as written.
 *
 * Returns 0 when out contains the text (the caller frees it with
 * tg_json_writer_free()), -1 when memory ran out, and TG_SPLICE_UNPAIRED
 * when yajl cannot read raw, or its strings and numbers differ in number
 * or kind from the tree's; out is then empty.
 */
int tg_splice_tree(const char *raw, size_t raw_len, json_t *tree, struct tg_json_writer *out);

#endif
