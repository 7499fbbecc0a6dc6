/*
 * JSON text written straight into a growing byte buffer, for output built
 * often enough that a jansson tree per value costs too much (the OTLP
 * export of every span, the access-log line of every request). The caller writes the structure (braces, commas,
 * keys) as literals and the values through the functions below, which
 * write them as jansson's compact dump does, so both produce the same
 * bytes. There is no parser here: reading JSON stays with jansson.
 *
 * When memory runs out, the writer sets "failed" and ignores every later
 * write, so a caller checks once at the end.
 */
#ifndef TOLLGATE_JSON_WRITER_H
#define TOLLGATE_JSON_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct tg_json_writer {
	char *data;             /* not NUL-terminated; NULL until the first write */
	size_t len, capacity;
	int failed;             /* set when memory ran out; the text is then cut */
};

/* Empty the text but keep the memory for the next document. */
void tg_json_writer_reset(struct tg_json_writer *w);

/* Free the memory. The writer is then empty and may be used again. */
void tg_json_writer_free(struct tg_json_writer *w);

/* Make room for n more bytes; the slow path of tg_json_room(). Returns 0,
 * or -1 with "failed" set when memory ran out or had run out before. */
int tg_json_grow(struct tg_json_writer *w, size_t n);

/* Make sure of room for n more bytes at w->data + w->len, as
 * tg_json_grow() does, without a call when there is room already. */
static inline int
tg_json_room(struct tg_json_writer *w, size_t n)
{
	if (w->failed || w->capacity - w->len < n)
		return tg_json_grow(w, n);
	return 0;
}

/*
 * Append n bytes unchanged: structure, and keys that need no escaping.
 * It is inline because an OTLP export makes over a hundred of these writes
 * per span, most of them short literals. With the length known at the
 * call, the copy compiles to a few moves instead of a call to memcpy.
 */
static inline void
tg_json_raw(struct tg_json_writer *w, const char *s, size_t n)
{
	if (tg_json_room(w, n) != 0)
		return;
	memcpy(w->data + w->len, s, n);
	w->len += n;
}

/* Append a string literal unchanged, such as "{\"key\":". The "" makes a
 * pointer, whose sizeof is not its length, fail to compile. */
#define tg_json_literal(w, s) tg_json_raw((w), "" s, sizeof("" s) - 1)

/*
 * Append n bytes unchanged into room that tg_json_room() made before, so
 * that a run of short writes checks for room once. The OTLP encoder makes
 * over a hundred writes per span, and the check per write cost about as
 * much as the copies of its short literals.
 */
static inline void
tg_json_put(struct tg_json_writer *w, const char *s, size_t n)
{
	memcpy(w->data + w->len, s, n);
	w->len += n;
}

#define tg_json_put_literal(w, s) tg_json_put((w), "" s, sizeof("" s) - 1)

/* The maximum number of bytes that tg_json_put_uint() writes. */
#define TG_JSON_UINT_SIZE 20

/* Append v as tg_json_uint() does, into room that tg_json_room() made
 * for TG_JSON_UINT_SIZE bytes. */
void tg_json_put_uint(struct tg_json_writer *w, uint64_t v);

/* Return 1 when none of the len bytes at s needs an escape (printable
 * ASCII other than '"' and '\\'), so that they may go between quotes as
 * they are. */
int tg_json_is_plain(const char *s, size_t len);

/* Copy len bytes from src to dst, and return what tg_json_is_plain()
 * returns for them: one pass where a copy and a check would take two. */
int tg_json_copy_plain(char *dst, const char *src, size_t len);

/*
 * Append len bytes of s as a quoted JSON string. '"', '\\' and control
 * characters are escaped as jansson does: "\n", or "\u001F" for those
 * without a short form. Well-formed UTF-8 is copied unchanged.
 *
 * Each byte that does not start a well-formed sequence becomes U+FFFD: a
 * stray continuation byte, an overlong form, a surrogate, a code point
 * above U+10FFFF, a cut sequence. The text is therefore valid UTF-8
 * whatever the input.
 */
void tg_json_stringn(struct tg_json_writer *w, const char *s, size_t len);

/* Append the len bytes of s between quotes. The caller vouches that
 * none of them needs an escape (printable ASCII other than '"' and '\\'),
 * as for names from a table that a test checks. */
void tg_json_plain(struct tg_json_writer *w, const char *s, size_t len);

/* Append s as tg_json_stringn() does, or null when s is NULL (a value the
 * caller does not have). */
void tg_json_string(struct tg_json_writer *w, const char *s);

/*
 * Append s as tg_json_string() does, but keep at most limit bytes of its
 * text, so that a value a client chose cannot make a record as long as the
 * request. The bytes are counted after replacement and before escaping (a
 * U+FFFD counts 3, an escape the 1 byte it stands for), and the cut falls
 * between characters, never inside one.
 */
void tg_json_string_cut(struct tg_json_writer *w, const char *s, size_t limit);

/* Append v as a bare decimal number. */
void tg_json_int(struct tg_json_writer *w, int64_t v);
void tg_json_uint(struct tg_json_writer *w, uint64_t v);

void tg_json_bool(struct tg_json_writer *w, int v);

/*
 * Append v as jansson writes a real: 17 significant digits, with a '.' or
 * an exponent so that it reads back as a real, and the exponent without
 * '+' or leading zeros ("0.5", "2.0", "1e20"). v must be finite, because
 * JSON has no NaN nor infinity.
 */
void tg_json_double(struct tg_json_writer *w, double v);

/* Append v as tg_json_double() does, with precision significant digits
 * (1 to 17), as jansson writes it with JSON_REAL_PRECISION(precision). */
void tg_json_double_precision(struct tg_json_writer *w, double v, int precision);

/* Return the length of the well-formed UTF-8 sequence that starts s (at
 * most left bytes, left > 0), or 0 when the bytes there are not one. */
size_t tg_utf8_sequence(const unsigned char *s, size_t left);

/* Return the length of the len bytes at s once each byte that does not
 * start a well-formed UTF-8 sequence is replaced by U+FFFD, as
 * tg_json_stringn() replaces them. Each replacement adds 2 bytes, so the
 * bytes are valid UTF-8 exactly when the result is len. */
size_t tg_utf8_repaired_len(const char *s, size_t len);

/* Copy the len bytes at s to out with those replacements, into room for
 * tg_utf8_repaired_len(s, len) bytes, and return the end of the copy. */
char *tg_utf8_repair(char *out, const char *s, size_t len);

#endif
