/*
 * Checks that a yajl read agrees with jansson's (yajl-jansson.h).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "yajl-jansson.h"

/* The kinds of escape that tg_yj_text_rejected() distinguishes: the high or
 * the low half of a surrogate pair, and any other. */
enum escape { ESCAPE_OTHER, ESCAPE_HIGH, ESCAPE_LOW };

/* Return the kind of the escape at p, a backslash before end. */
static enum escape
escape_at(const char *p, const char *end)
{
	if (end - p < 6 || p[1] != 'u' || (p[2] != 'd' && p[2] != 'D') || p[3] == '\0')
		return ESCAPE_OTHER;
	if (strchr("89abAB", p[3]) != NULL)
		return ESCAPE_HIGH;
	if (strchr("cdefCDEF", p[3]) != NULL)
		return ESCAPE_LOW;
	return ESCAPE_OTHER;
}

/* Whether data has \f or \v, which yajl reads as whitespace between
 * tokens and jansson rejects. Inside a string both reject them. */
static int
has_other_whitespace(const char *data, size_t len)
{
	return memchr(data, '\f', len) != NULL || memchr(data, '\v', len) != NULL;
}

/* A backslash is an escape inside a string and appears nowhere else, so
 * every "\uD8".."\uDF" found is an escaped surrogate. */
int
tg_yj_text_unsure(const char *data, size_t len)
{
	const char *end = data + len;

	if (has_other_whitespace(data, len))
		return 1;
	for (const char *p = memchr(data, '\\', len); p != NULL && end - p >= 4;
	     p = memchr(p, '\\', (size_t)(end - p))) {
		if (p[1] == 'u' && (p[2] == 'd' || p[2] == 'D') && p[3] != '\0' &&
		    strchr("89abcdefABCDEF", p[3]) != NULL)
			return 1;
		p += 2;
	}
	return 0;
}

/* As above, but a surrogate pair is read alike by both: only one half
 * without the other differs. yajl reads a lone high half as "?", and
 * combines it with any escape after it. */
int
tg_yj_text_rejected(const char *data, size_t len)
{
	const char *end = data + len;

	if (has_other_whitespace(data, len))
		return 1;
	for (const char *p = memchr(data, '\\', len); p != NULL && end - p >= 2;
	     p = memchr(p, '\\', (size_t)(end - p))) {
		switch (escape_at(p, end)) {
		case ESCAPE_LOW:
			return 1;
		case ESCAPE_HIGH:
			if (escape_at(p + 6, end) != ESCAPE_LOW)
				return 1;
			p += 12;
			break;
		case ESCAPE_OTHER:
			p += 2;
			break;
		}
	}
	return 0;
}

/*
 * The top bit of each byte of word that is NUL or not ASCII, and maybe of
 * more significant ones: 0 when there is none. A NUL borrows in
 * word - ONES, and only a NUL starts a borrow, so the result for the
 * whole word is exact.
 */
static uint64_t
word_not_ascii_text(uint64_t word)
{
	const uint64_t ones = 0x0101010101010101u;

	return (word | ((word - ones) & ~word)) & ones * 0x80;
}

/* The same for 4 bytes, with 'a' in the other 4 bytes of the word. */
static uint64_t
half_not_ascii_text(uint32_t half)
{
	return word_not_ascii_text((uint64_t)0x61616161u << 32 | half);
}

/*
 * It reads a word at a time, and the last word or half-word overlaps the
 * one before, so a short key takes one or two checks. A byte loop took
 * about 80 instructions per key or string of a 336-byte reply (callgrind).
 */
int
tg_yj_ascii_text(const unsigned char *s, size_t len)
{
	uint64_t word, bad = 0;
	uint32_t half;
	size_t i = 0;

	if (len < sizeof(half)) {
		for (; i < len; i++)
			bad |= s[i] == '\0' || s[i] >= 0x80;
		return bad == 0;
	}
	if (len < sizeof(word)) {
		memcpy(&half, s, sizeof(half));
		bad = half_not_ascii_text(half);
		memcpy(&half, s + len - sizeof(half), sizeof(half));
		return (bad | half_not_ascii_text(half)) == 0;
	}
	for (; len - i > sizeof(word); i += sizeof(word)) {
		memcpy(&word, s + i, sizeof(word));
		bad |= word_not_ascii_text(word);
	}
	memcpy(&word, s + len - sizeof(word), sizeof(word));
	return (bad | word_not_ascii_text(word)) == 0;
}

/* Most strings are ASCII, which passes without the two calls. */
int
tg_yj_string_ok(const unsigned char *s, size_t len)
{
	if (tg_yj_ascii_text(s, len))
		return 1;
	return memchr(s, '\0', len) == NULL && u8_check(s, len) == NULL;
}

int
tg_yj_key_add(struct tg_yj_keys *k, size_t first, const char *data, size_t len,
              const unsigned char *s, size_t s_len)
{
	size_t at = (size_t)((const char *)s - data);

	/* An escaped key was decoded elsewhere; its bytes in the data differ. */
	if ((const char *)s < data || at > len || s_len > len - at ||
	    (k->n - first) / 2 >= TG_YJ_MAX_KEYS)
		return 1;
	for (size_t i = first; i < k->n; i += 2) {
		if (k->at[i + 1] == s_len && memcmp(data + k->at[i], s, s_len) == 0)
			return 1;
	}

	if (k->n + 2 > k->cap) {
		size_t want = k->cap ? k->cap * 2 : 16;
		size_t *p = realloc(k->at, want * sizeof(*p));

		if (p == NULL)
			return -1;
		k->at = p;
		k->cap = want;
	}
	k->at[k->n++] = at;
	k->at[k->n++] = s_len;
	return 0;
}

void
tg_yj_keys_close(struct tg_yj_keys *k, size_t first)
{
	k->n = first;
}

void
tg_yj_keys_free(struct tg_yj_keys *k)
{
	free(k->at);
	memset(k, 0, sizeof(*k));
}

/*
 * Read s as an integer of at most 18 digits, which cannot overflow a long
 * long, and return 1; return 0 for any other number. yajl has checked the
 * token already (an optional '-', digits without a leading zero), so only
 * its form is tested here. Usage counts, indexes and timestamps are such
 * integers: this path saves the copy and the locale-aware strtoll() of
 * the general one, about 200 instructions per number (callgrind).
 */
static int
read_short_integer(const char *s, size_t len, long long *integer)
{
	int negative = len > 0 && s[0] == '-';
	long long value = 0;

	if (len - (size_t)negative == 0 || len - (size_t)negative > 18)
		return 0;
	for (size_t i = (size_t)negative; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		value = value * 10 + (s[i] - '0');
	}
	*integer = negative ? -value : value;
	return 1;
}

enum tg_yj_number
tg_yj_number(const char *s, size_t len, long long *integer, double *real)
{
	char small[64];
	char *text;
	int fraction;
	enum tg_yj_number kind = TG_YJ_REAL;

	if (read_short_integer(s, len, integer))
		return TG_YJ_INTEGER;

	/* Without memory the number cannot be read; a huge real is what it
	 * must be then, and the read stops as for one. */
	text = len < sizeof(small) ? small : malloc(len + 1);
	if (text == NULL)
		return TG_YJ_OVERFLOW;
	memcpy(text, s, len);
	text[len] = '\0';
	fraction = memchr(s, '.', len) != NULL || memchr(s, 'e', len) != NULL ||
	           memchr(s, 'E', len) != NULL;

	errno = 0;
	if (!fraction) {
		*integer = strtoll(text, NULL, 10);
		kind = errno == 0 ? TG_YJ_INTEGER : TG_YJ_BIG_INTEGER;
		errno = 0;
	}
	if (kind != TG_YJ_INTEGER) {
		*real = strtod(text, NULL);
		/* ERANGE also marks an underflow to 0 or a subnormal, which
		 * jansson and yajl take; only infinity is an overflow. */
		if (errno == ERANGE && isinf(*real))
			kind = TG_YJ_OVERFLOW;
	}
	if (text != small)
		free(text);
	return kind;
}

int
tg_yj_number_as(void *ctx, const char *s, size_t len, int (*on_integer)(void *, long long),
                int (*on_double)(void *, double))
{
	long long integer;
	double real;

	switch (tg_yj_number(s, len, &integer, &real)) {
	case TG_YJ_INTEGER:
		return on_integer(ctx, integer);
	case TG_YJ_REAL:
	case TG_YJ_BIG_INTEGER:
		return on_double(ctx, real);
	case TG_YJ_OVERFLOW:
		break;
	}
	return 0;
}
