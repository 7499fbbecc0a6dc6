/*
 * Text normalisation for the content filters, with a map back to the
 * original bytes.
 *
 * Rules match the normalised text so that look-alike spellings do not
 * bypass them. The text goes through Unicode NFKC (full-width letters,
 * ligatures and compatibility digits become their plain forms), and the
 * decimal digits of every script (Arabic-Indic, Devanagari, ...) become
 * ASCII digits. Format and default-ignorable code points are removed
 * (zero-width space and joiners, soft hyphen, bidi marks, BOM), and so are
 * the nonspacing and enclosing marks that NFKC did not compose, except a
 * script's own marks after its letters (Thai vowels, Devanagari virama),
 * which spell words. Caseless rules get full Unicode case folding. Masking has to replace the
 * original text, so every normalised byte records the span of original bytes
 * it came from, removed marks included when they follow it. ASCII
 * text maps byte for byte and records nothing.
 *
 * The text is normalised in small segments (a starter and the combining
 * marks after it) so that the map stays precise; two segments are joined
 * when NFKC would compose across them, as it does for Hangul jamo.
 */
#ifndef TOLLGATE_FILTER_NORM_H
#define TOLLGATE_FILTER_NORM_H

#include <stddef.h>
#include <stdint.h>

struct tg_norm {
	char *text;             /* normalised, NUL-terminated */
	size_t len;
	uint32_t *start;        /* per normalised byte: first original byte */
	uint32_t *end;          /* per normalised byte: original end, exclusive */
	size_t cap;             /* of text, start and end */
	size_t orig_len;
	int ascii;              /* the input was ASCII: byte i of text comes
	                           from byte i, and start and end are not set */
};

/* Largest input tg_norm_run() takes, since the map stores 32-bit offsets. */
#define TG_NORM_MAX_INPUT ((size_t)UINT32_MAX - 1)

void tg_norm_init(struct tg_norm *n);

/*
 * Normalise len bytes of s into n, replacing what n held. fold adds full
 * case folding. Invalid UTF-8 bytes are kept as U+FFFD, one per byte.
 * Returns 0, or -1 when out of memory or len is over TG_NORM_MAX_INPUT.
 */
int tg_norm_run(struct tg_norm *n, const char *s, size_t len, int fold);

/* Whether the len bytes at s are all ASCII, which tg_norm_run() keeps as
 * they are, lower-cased when folding. */
int tg_norm_ascii(const char *s, size_t len);

/*
 * Map the normalised span [a, b) to the original bytes it came from,
 * [*orig_a, *orig_b). Format characters inside the span are part of it;
 * those just outside are not. a < b <= n->len.
 */
void tg_norm_span(const struct tg_norm *n, size_t a, size_t b,
                  size_t *orig_a, size_t *orig_b);

/* The normalised offset of the first byte that comes from original offset
 * orig or later; n->len when there is none. */
size_t tg_norm_offset(const struct tg_norm *n, size_t orig);

/* The original offset that the normalised byte at i comes from, or the
 * original length for i == n->len. */
size_t tg_norm_origin(const struct tg_norm *n, size_t i);

void tg_norm_free(struct tg_norm *n);

#endif
