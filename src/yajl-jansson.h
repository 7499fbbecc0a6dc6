/*
 * Checks that a yajl event parse runs to know that jansson, with
 * JSON_REJECT_DUPLICATES, reads the same text the same way.
 *
 * yajl takes a few texts that jansson rejects, and reports both members
 * of a name given twice where a tree keeps one. A reader that uses yajl
 * to spare a tree (the stream filters' chunk reader, the request body
 * scan) runs these checks, and lets jansson decide whenever one of them
 * cannot rule a difference out:
 * - \f or \v between tokens (yajl's whitespace), or an escaped surrogate
 *   (yajl turns a lone one into "?"): tg_yj_text_unsure();
 * - a string or key that is not UTF-8 or has a NUL: tg_yj_string_ok();
 * - a key given twice in one object: struct tg_yj_keys. An escaped key
 *   and an object with many keys are unsure too, which keeps the check a
 *   short comparison of bytes in the text.
 */
#ifndef TOLLGATE_YAJL_JANSSON_H
#define TOLLGATE_YAJL_JANSSON_H

#include <stddef.h>

/* Keys of one object compared for a repeat; more make the read unsure. */
#define TG_YJ_MAX_KEYS 32

/* The keys of the objects open in a read, as offset and length pairs in
 * the text. Zeroed is empty; reuse across reads keeps the memory. */
struct tg_yj_keys {
	size_t *at;
	size_t n, cap;
};

/* Whether data has what yajl reads otherwise than jansson outside the
 * callbacks' view: \f or \v, or an escaped surrogate. */
int tg_yj_text_unsure(const char *data, size_t len);

/* Whether data has what jansson rejects and yajl takes outside the
 * callbacks' view: \f or \v, or an escaped surrogate that is not half of
 * a pair. Unlike tg_yj_text_unsure(), a pair passes: yajl decodes it as
 * jansson does. */
int tg_yj_text_rejected(const char *data, size_t len);

/* Whether jansson takes the decoded string or key s: UTF-8 without NUL. */
int tg_yj_string_ok(const unsigned char *s, size_t len);

/* Whether the len bytes at s are ASCII without a NUL, which
 * tg_yj_string_ok() takes without a closer look. */
int tg_yj_ascii_text(const unsigned char *s, size_t len);

/*
 * Record the key s, reported by yajl while reading the text data of len
 * bytes, in the object whose keys start at first (the value of k->n when
 * it opened). Returns 0 when recorded, 1 when the read is unsure (the key
 * is escaped, repeated, or one too many), -1 when out of memory.
 */
int tg_yj_key_add(struct tg_yj_keys *k, size_t first, const char *data, size_t len,
                  const unsigned char *s, size_t s_len);

/* Forget the keys of the object whose keys start at first: it closed. */
void tg_yj_keys_close(struct tg_yj_keys *k, size_t first);

void tg_yj_keys_free(struct tg_yj_keys *k);

/* The kind of number tg_yj_number() read. */
enum tg_yj_number {
	TG_YJ_INTEGER,          /* an integer that fits a long long */
	TG_YJ_REAL,             /* a number with a fraction or an exponent */
	TG_YJ_BIG_INTEGER,      /* an integer beyond 64 bits, read as a real */
	TG_YJ_OVERFLOW,         /* a real beyond a double's range */
};

/*
 * Read the text of a number that yajl passes to a yajl_number callback
 * (len bytes at s, valid JSON): an integer into *integer, anything else
 * into *real. An integer beyond 64 bits is valid JSON, which yajl's own
 * conversion rejects. A reader takes it as a real. jansson builds no tree
 * of such a text without JSON_DECODE_INT_AS_REAL. A real
 * beyond a double's range is an error, as in jansson and yajl.
 */
enum tg_yj_number tg_yj_number(const char *s, size_t len, long long *integer, double *real);

/* Read a number's text with tg_yj_number() and pass it to the yajl_integer
 * or yajl_double callback of ctx, an integer beyond 64 bits as a real.
 * Returns what the callback returns, or 0 (stop) for a real beyond a
 * double's range. For readers with a yajl_number callback. */
int tg_yj_number_as(void *ctx, const char *s, size_t len, int (*on_integer)(void *, long long),
                    int (*on_double)(void *, double));

#endif
