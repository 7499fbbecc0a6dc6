/*
 * The JSON writer: a byte buffer that doubles when full.
 */
#include <stdlib.h>
#include <string.h>

#include "json-double.h"
#include "json-writer.h"

#define REPLACEMENT "\xEF\xBF\xBD"      /* U+FFFD in UTF-8 */
#define REPLACEMENT_LEN (sizeof(REPLACEMENT) - 1)

void
tg_json_writer_reset(struct tg_json_writer *w)
{
	w->len = 0;
	w->failed = 0;
}

void
tg_json_writer_free(struct tg_json_writer *w)
{
	free(w->data);
	memset(w, 0, sizeof(*w));
}

int
tg_json_grow(struct tg_json_writer *w, size_t n)
{
	size_t capacity;
	char *grown;

	if (w->failed)
		return -1;
	if (w->capacity - w->len >= n)
		return 0;
	/* Sizes come from spans and log lines, far below SIZE_MAX; a request
	 * that would overflow the doubling fails like a failed allocation. */
	if (n > SIZE_MAX / 2 - w->len) {
		w->failed = 1;
		return -1;
	}
	capacity = w->capacity ? w->capacity : 4096;
	while (capacity - w->len < n)
		capacity *= 2;
	grown = realloc(w->data, capacity);
	if (grown == NULL) {
		w->failed = 1;
		return -1;
	}
	w->data = grown;
	w->capacity = capacity;
	return 0;
}

size_t
tg_utf8_sequence(const unsigned char *s, size_t left)
{
	/* The smallest code point of each length. Below it, a form is overlong. */
	static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
	uint32_t code_point;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0) {
		len = 2;
		code_point = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		len = 3;
		code_point = s[0] & 0x0F;
	} else if ((s[0] & 0xF8) == 0xF0) {
		len = 4;
		code_point = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > left)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		code_point = code_point << 6 | (s[i] & 0x3F);
	}
	if (code_point < smallest[len] || code_point > 0x10FFFF ||
	    (code_point >= 0xD800 && code_point <= 0xDFFF))
		return 0;
	return len;
}

size_t
tg_utf8_repaired_len(const char *s, size_t len)
{
	const unsigned char *in = (const unsigned char *)s;
	size_t out = 0;

	for (size_t i = 0; i < len;) {
		size_t n = in[i] < 0x80 ? 1 : tg_utf8_sequence(in + i, len - i);

		out += n > 0 ? n : REPLACEMENT_LEN;
		i += n > 0 ? n : 1;
	}
	return out;
}

char *
tg_utf8_repair(char *out, const char *s, size_t len)
{
	const unsigned char *in = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		size_t n = in[i] < 0x80 ? 1 : tg_utf8_sequence(in + i, len - i);

		if (n == 0) {
			memcpy(out, REPLACEMENT, REPLACEMENT_LEN);
			out += REPLACEMENT_LEN;
			i++;
			continue;
		}
		memcpy(out, s + i, n);
		out += n;
		i += n;
	}
	return out;
}

/* Write the escape of an ASCII byte that JSON does not allow unescaped
 * into out (7 bytes at least), and return its length. */
static size_t
escape_ascii(unsigned char c, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	char short_form = 0;

	switch (c) {
	case '"': short_form = '"'; break;
	case '\\': short_form = '\\'; break;
	case '\b': short_form = 'b'; break;
	case '\f': short_form = 'f'; break;
	case '\n': short_form = 'n'; break;
	case '\r': short_form = 'r'; break;
	case '\t': short_form = 't'; break;
	}
	out[0] = '\\';
	if (short_form != 0) {
		out[1] = short_form;
		return 2;
	}
	memcpy(out + 1, "u00", 3);
	out[4] = hex[c >> 4];
	out[5] = hex[c & 0xF];
	return 6;
}

static int
is_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/*
 * Return the top bit of each of the 8 bytes packed in word that needs an
 * escape, and maybe of more significant ones: 0 when none does. Each
 * test sets the top bit of a byte that fails it. A byte of 0x80 or more
 * has it set already. A byte below 0x20 borrows in word - 0x20, and a
 * byte equal to '"' or '\\' borrows in (word ^ c) - 1, since x - 1
 * borrows only from a zero byte. A borrow can spread to more significant
 * bytes, but only from a byte that failed, so the result for the whole
 * word is exact.
 */
static uint64_t
word_escapes(uint64_t word)
{
	const uint64_t ones = 0x0101010101010101u;

	return (word | (word - ones * 0x20) | ((word ^ ones * '"') - ones) |
	        ((word ^ ones * '\\') - ones)) & ones * 0x80;
}

static int
word_is_plain(uint64_t word)
{
	return word_escapes(word) == 0;
}

/* The escapes of the 4 bytes packed in half, as word_escapes() finds
 * them, with spaces (which need none) in the other 4 bytes of the word. */
static uint64_t
half_escapes(uint32_t half)
{
	return word_escapes((uint64_t)0x20202020u << 32 | half);
}

/*
 * Check the len bytes at src as tg_json_is_plain() does and, when dst is
 * not NULL, copy them there. Always inline, so that each of the two
 * callers gets its own copy without the tests of dst. Most values checked
 * are a few bytes long, and reading them in overlapping words took half
 * the instructions of a loop over their bytes (callgrind).
 */
static inline __attribute__((always_inline)) int
scan_plain(char *dst, const char *src, size_t len)
{
	uint64_t word, escapes = 0;
	uint32_t half;
	size_t i = 0;

	if (len < sizeof(half)) {
		int plain = 1;

		for (; i < len; i++) {
			if (dst != NULL)
				dst[i] = src[i];
			plain &= is_plain((unsigned char)src[i]);
		}
		return plain;
	}
	if (len < sizeof(word)) {
		/* Two halves, which overlap unless len is 8. */
		memcpy(&half, src, sizeof(half));
		if (dst != NULL)
			memcpy(dst, &half, sizeof(half));
		escapes = half_escapes(half);
		memcpy(&half, src + len - sizeof(half), sizeof(half));
		if (dst != NULL)
			memcpy(dst + len - sizeof(half), &half, sizeof(half));
		return (escapes | half_escapes(half)) == 0;
	}
	for (; len - i > sizeof(word); i += sizeof(word)) {
		memcpy(&word, src + i, sizeof(word));
		if (dst != NULL)
			memcpy(dst + i, &word, sizeof(word));
		escapes |= word_escapes(word);
	}
	/* The last word, which overlaps the one before unless len is a
	 * multiple of 8. */
	memcpy(&word, src + len - sizeof(word), sizeof(word));
	if (dst != NULL)
		memcpy(dst + len - sizeof(word), &word, sizeof(word));
	return (escapes | word_escapes(word)) == 0;
}

int
tg_json_copy_plain(char *dst, const char *src, size_t len)
{
	return scan_plain(dst, src, len);
}

int
tg_json_is_plain(const char *s, size_t len)
{
	return scan_plain(NULL, s, len);
}

/* Count the bytes at the start of s that need no escape: printable ASCII
 * other than the quote and the backslash. Most values are such text, so
 * it is scanned 8 bytes at a time. */
static size_t
plain_run(const unsigned char *s, size_t left)
{
	size_t n = 0;
	uint64_t word;

	while (left - n >= sizeof(word)) {
		memcpy(&word, s + n, sizeof(word));
		if (!word_is_plain(word))
			break;
		n += sizeof(word);
	}
	while (n < left && is_plain(s[n]))
		n++;
	return n;
}

void
tg_json_plain(struct tg_json_writer *w, const char *s, size_t len)
{
	char *out;

	if (tg_json_room(w, len + 2) != 0)
		return;
	out = w->data + w->len;
	out[0] = '"';
	memcpy(out + 1, s, len);
	out[len + 1] = '"';
	w->len += len + 2;
}

/* Append len bytes of s as a quoted string holding at most limit bytes of
 * text, counted as tg_json_string_cut() documents. The one escaper behind
 * every string function. */
static void
write_string(struct tg_json_writer *w, const char *s, size_t len, size_t limit)
{
	const unsigned char *in = (const unsigned char *)s;
	size_t i = 0, kept = 0;

	/* Most values are plain text within the limit. They are copied into
	 * the room and checked in one pass, which costs about half of a check
	 * and then a copy, and the copy is kept when it is plain. Else the
	 * escaping below writes over it. The pass is inline here, because the
	 * access log writes about 10 values per request, and the call to
	 * tg_json_copy_plain() cost about 20 instructions each (callgrind). */
	if (len <= limit) {
		char *out;

		if (tg_json_room(w, len + 2) != 0)
			return;
		out = w->data + w->len;
		if (scan_plain(out + 1, s, len)) {
			out[0] = '"';
			out[len + 1] = '"';
			w->len += len + 2;
			return;
		}
	}
	tg_json_literal(w, "\"");
	while (i < len && !w->failed) {
		size_t room = limit - kept;
		size_t n = plain_run(in + i, len - i);
		char escaped[8];

		if (n > 0) {
			/* Plain ASCII may be cut anywhere. */
			if (n > room)
				n = room;
			if (n == 0)
				break;
			tg_json_raw(w, s + i, n);
			kept += n;
			i += n;
			continue;
		}
		if (in[i] < 0x80) {
			if (room == 0)
				break;
			tg_json_raw(w, escaped, escape_ascii(in[i], escaped));
			kept++;
			i++;
			continue;
		}
		n = tg_utf8_sequence(in + i, len - i);
		if (n == 0) {
			if (room < REPLACEMENT_LEN)
				break;
			tg_json_literal(w, REPLACEMENT);
			kept += REPLACEMENT_LEN;
			i++;
			continue;
		}
		if (room < n)
			break;
		tg_json_raw(w, s + i, n);
		kept += n;
		i += n;
	}
	tg_json_literal(w, "\"");
}

void
tg_json_stringn(struct tg_json_writer *w, const char *s, size_t len)
{
	write_string(w, s, len, SIZE_MAX);
}

void
tg_json_string(struct tg_json_writer *w, const char *s)
{
	tg_json_string_cut(w, s, SIZE_MAX);
}

void
tg_json_string_cut(struct tg_json_writer *w, const char *s, size_t limit)
{
	if (s == NULL) {
		tg_json_literal(w, "null");
		return;
	}
	write_string(w, s, strlen(s), limit);
}

/* The numbers 00 to 99 as two digits each, so that a number takes one
 * division per two digits. Span times have 19 digits. */
static const char TWO_DIGITS[] =
	"0001020304050607080910111213141516171819"
	"2021222324252627282930313233343536373839"
	"4041424344454647484950515253545556575859"
	"6061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* Write the 8 digits of v (below 100,000,000), with leading zeros, at
 * out. */
static void
put_eight_digits(char *out, uint32_t v)
{
	uint32_t high = v / 10000, low = v % 10000;

	memcpy(out, TWO_DIGITS + 2 * (high / 100), 2);
	memcpy(out + 2, TWO_DIGITS + 2 * (high % 100), 2);
	memcpy(out + 4, TWO_DIGITS + 2 * (low / 100), 2);
	memcpy(out + 6, TWO_DIGITS + 2 * (low % 100), 2);
}

void
tg_json_put_uint(struct tg_json_writer *w, uint64_t v)
{
	/* The digits end at digits + TG_JSON_UINT_SIZE. A copy of a fixed
	 * TG_JSON_UINT_SIZE bytes from where they start moves them without a
	 * call to memcpy. The bytes past them that it also copies land in the
	 * room made, and the next write overwrites them. */
	char digits[2 * TG_JSON_UINT_SIZE];
	size_t n = TG_JSON_UINT_SIZE;

	memset(digits + TG_JSON_UINT_SIZE, 0, TG_JSON_UINT_SIZE);

	/* Eight digits per 64-bit division, in 32-bit steps without a loop:
	 * the 19 digits of a span time took about 200 instructions two at a
	 * time. */
	while (v >= 100000000) {
		n -= 8;
		put_eight_digits(digits + n, (uint32_t)(v % 100000000));
		v /= 100000000;
	}
	while (v >= 100) {
		n -= 2;
		memcpy(digits + n, TWO_DIGITS + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10) {
		n -= 2;
		memcpy(digits + n, TWO_DIGITS + 2 * v, 2);
	} else {
		digits[--n] = (char)('0' + v);
	}
	memcpy(w->data + w->len, digits + n, TG_JSON_UINT_SIZE);
	w->len += TG_JSON_UINT_SIZE - n;
}

void
tg_json_uint(struct tg_json_writer *w, uint64_t v)
{
	if (tg_json_room(w, TG_JSON_UINT_SIZE) == 0)
		tg_json_put_uint(w, v);
}

void
tg_json_int(struct tg_json_writer *w, int64_t v)
{
	if (v >= 0) {
		tg_json_uint(w, (uint64_t)v);
		return;
	}
	tg_json_literal(w, "-");
	/* Negated as unsigned so that INT64_MIN does not overflow. */
	tg_json_uint(w, -(uint64_t)v);
}

void
tg_json_bool(struct tg_json_writer *w, int v)
{
	if (v)
		tg_json_literal(w, "true");
	else
		tg_json_literal(w, "false");
}

void
tg_json_double(struct tg_json_writer *w, double v)
{
	tg_json_double_precision(w, v, 17);
}

void
tg_json_double_precision(struct tg_json_writer *w, double v, int precision)
{
	char text[TG_JSON_DOUBLE_SIZE];

	tg_json_raw(w, text, tg_json_double_text(text, v, precision));
}
