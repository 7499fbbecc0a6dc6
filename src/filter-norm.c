/*
 * Normalisation with an offset map, on libunistring's NFKC and case
 * folding and its Unicode character properties.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "filter-norm.h"

/* A segment grows by joining the next one while NFKC composes across them;
 * past this many input bytes it is cut. Only runs of composing starters,
 * such as long Hangul jamo sequences, get that far, and a cut there changes
 * the normalised text, never the mapping of what was matched. */
#define GROUP_MAX_BYTES 64

struct bytes {
	uint8_t *data;
	size_t len, cap;
};

/* Input bytes of one segment (or of several joined ones) and their output. */
struct group {
	struct bytes in;        /* the kept code points, valid UTF-8 */
	struct bytes out;       /* their normalised form */
	size_t orig_start, orig_end;
};

void
tg_norm_init(struct tg_norm *n)
{
	memset(n, 0, sizeof(*n));
}

void
tg_norm_free(struct tg_norm *n)
{
	free(n->text);
	free(n->start);
	free(n->end);
	tg_norm_init(n);
}

static int
bytes_reserve(struct bytes *b, size_t need)
{
	uint8_t *data;
	size_t cap;

	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 32;
	while (cap < need)
		cap *= 2;
	data = realloc(b->data, cap);
	if (data == NULL)
		return -1;
	b->data = data;
	b->cap = cap;
	return 0;
}

static int
bytes_append(struct bytes *b, const uint8_t *s, size_t len)
{
	if (bytes_reserve(b, b->len + len) != 0)
		return -1;
	memcpy(b->data + b->len, s, len);
	b->len += len;
	return 0;
}

/* Make room for need output bytes and the NUL. */
static int
norm_reserve(struct tg_norm *n, size_t need)
{
	char *text;
	uint32_t *start, *end;
	size_t cap;

	if (need + 1 <= n->cap)
		return 0;
	cap = n->cap ? n->cap : 64;
	while (cap < need + 1)
		cap *= 2;

	text = realloc(n->text, cap);
	if (text == NULL)
		return -1;
	n->text = text;
	start = realloc(n->start, cap * sizeof(*start));
	if (start == NULL)
		return -1;
	n->start = start;
	end = realloc(n->end, cap * sizeof(*end));
	if (end == NULL)
		return -1;
	n->end = end;
	n->cap = cap;
	return 0;
}

static int
emit(struct tg_norm *n, const uint8_t *s, size_t len, size_t orig_start, size_t orig_end)
{
	if (norm_reserve(n, n->len + len) != 0)
		return -1;
	memcpy(n->text + n->len, s, len);
	for (size_t i = 0; i < len; i++) {
		n->start[n->len + i] = (uint32_t)orig_start;
		n->end[n->len + i] = (uint32_t)orig_end;
	}
	n->len += len;
	return 0;
}

/* Format characters (general category Cf) and the other default-ignorable
 * code points render as nothing, so they could hide inside a word. */
static int
is_invisible(ucs4_t uc)
{
	return uc_is_general_category(uc, UC_CATEGORY_Cf) ||
	       uc_is_property_default_ignorable_code_point(uc);
}

/* Normalise in into out (replacing its contents). */
static int
normalise(const struct bytes *in, int fold, struct bytes *out)
{
	uint8_t buf[256];
	size_t len = sizeof(buf);
	uint8_t *result;
	int rc;

	if (fold)
		result = u8_casefold(in->data, in->len, NULL, UNINORM_NFKC, buf, &len);
	else
		result = u8_normalize(UNINORM_NFKC, in->data, in->len, buf, &len);
	if (result == NULL)
		return -1;

	out->len = 0;
	rc = bytes_append(out, result, len);
	if (result != buf)
		free(result);
	return rc;
}

/* Decode the code point at s[pos]; invalid bytes decode as U+FFFD, one
 * byte each. Returns its length in bytes. */
static size_t
decode(const char *s, size_t len, size_t pos, ucs4_t *uc)
{
	int l = u8_mbtouc(uc, (const uint8_t *)s + pos, len - pos);

	return l > 0 ? (size_t)l : 1;
}

static int
append_code_point(struct bytes *b, ucs4_t uc)
{
	uint8_t buf[6];
	int l = u8_uctomb(buf, uc, sizeof(buf));

	return l > 0 ? bytes_append(b, buf, (size_t)l) : -1;
}

/*
 * Read one segment starting at *pos into seg: a code point and every
 * non-starter (combining class other than 0) after it, skipping invisible
 * code points in between. Invisible code points at *pos are skipped first.
 * Returns 1 with *pos past the segment, 0 when only invisible code points
 * were left, -1 when out of memory.
 */
static int
read_segment(const char *s, size_t len, size_t *pos, struct group *seg)
{
	ucs4_t uc;
	size_t l;

	seg->in.len = 0;
	for (;;) {
		if (*pos >= len)
			return 0;
		l = decode(s, len, *pos, &uc);
		if (!is_invisible(uc))
			break;
		*pos += l;
	}

	seg->orig_start = *pos;
	if (append_code_point(&seg->in, uc) != 0)
		return -1;
	*pos += l;
	seg->orig_end = *pos;

	for (size_t p = *pos; p < len; p += l) {
		l = decode(s, len, p, &uc);
		if (is_invisible(uc))
			continue;
		if (uc_combining_class(uc) == 0)
			break;
		if (append_code_point(&seg->in, uc) != 0)
			return -1;
		*pos = p + l;
		seg->orig_end = *pos;
	}
	return 1;
}

static int
is_ascii(unsigned char c)
{
	return c < 0x80;
}

/* Whether uc is a nonspacing or an enclosing mark (general category Mn or
 * Me); spacing marks (Mc) are visible and stay. */
static int
is_mark(ucs4_t uc)
{
	return (uc_general_category(uc).bitmask & (UC_CATEGORY_MASK_Mn | UC_CATEGORY_MASK_Me)) != 0;
}

/*
 * Whether the mark uc spells part of a word after the code point base: it
 * belongs to the script of a non-ASCII base (a Thai vowel sign after a Thai
 * consonant, a Devanagari virama after a Devanagari letter). The other
 * marks only decorate what they sit on: marks of no script of their own
 * (Inherited or Common, such as U+0301 COMBINING ACUTE ACCENT and U+20DD
 * COMBINING ENCLOSING CIRCLE), and marks on ASCII, digits or punctuation.
 * Readers look through them, so kept they would hide words from the rules.
 */
static int
mark_spells(ucs4_t uc, ucs4_t base)
{
	const uc_script_t *script;

	if (base < 0x80)
		return 0;
	script = uc_script(uc);
	if (script == NULL || strcmp(script->name, "Inherited") == 0 ||
	    strcmp(script->name, "Common") == 0)
		return 0;
	return uc_script(base) == script;
}

/*
 * Rewrite the normalised bytes b, in place, into the text the rules match.
 * Each decimal digit of another script (general category Nd, such as
 * Arabic-Indic U+0664 or Devanagari U+096A) becomes its ASCII digit: NFKC
 * keeps them, and readers take them as digits. (NFKC has already mapped
 * the compatibility digits, full-width and mathematical.) Each mark that
 * spells no word (mark_spells()) is removed. before is the code point
 * emitted before b, 0 for none.
 */
static void
reduce(struct bytes *b, ucs4_t before)
{
	ucs4_t base = before;
	size_t in = 0, out = 0;

	while (in < b->len) {
		ucs4_t uc;
		size_t char_len;
		int digit;

		if (is_ascii(b->data[in])) {
			base = b->data[in];
			b->data[out++] = b->data[in++];
			continue;
		}
		char_len = (size_t)u8_mbtouc(&uc, b->data + in, b->len - in);
		digit = uc_decimal_value(uc);
		if (digit >= 0) {
			base = (ucs4_t)('0' + digit);
			b->data[out++] = (uint8_t)base;
		} else if (!is_mark(uc) || mark_spells(uc, base)) {
			base = uc;
			memmove(b->data + out, b->data + in, char_len);
			out += char_len;
		}
		in += char_len;
	}
	b->len = out;
}

/* The last code point emitted into n, 0 when there is none. */
static ucs4_t
last_emitted(const struct tg_norm *n)
{
	size_t lead;
	ucs4_t uc;

	if (n->len == 0)
		return 0;
	lead = n->len - 1;
	while (lead > 0 && ((unsigned char)n->text[lead] & 0xc0) == 0x80)
		lead--;
	u8_mbtouc(&uc, (const uint8_t *)n->text + lead, n->len - lead);
	return uc;
}

/* Let the bytes last emitted into n end at original offset orig_end: they
 * take in the original bytes of removed marks after them, so that a mask
 * covers those marks too. Every byte of the last group shares its end. */
static void
extend_last(struct tg_norm *n, size_t orig_end)
{
	uint32_t old;

	if (n->len == 0)
		return;
	old = n->end[n->len - 1];
	for (size_t i = n->len; i-- > 0 && n->end[i] == old;)
		n->end[i] = (uint32_t)orig_end;
}

/* Emit the pending group g, reduced, and empty it. Reducing here rather
 * than in normalise() maps each output once and lets add_segment()
 * compare NFKC's own forms. A group that reduces to nothing (marks alone)
 * joins the original span of what was emitted before it. */
static int
flush_group(struct tg_norm *n, struct group *g)
{
	int rc = 0;

	if (g->in.len > 0) {
		reduce(&g->out, last_emitted(n));
		if (g->out.len > 0)
			rc = emit(n, g->out.data, g->out.len, g->orig_start, g->orig_end);
		else
			extend_last(n, g->orig_end);
	}
	g->in.len = 0;
	g->out.len = 0;
	return rc;
}

/*
 * Add seg after the pending group g. When NFKC of the two together differs
 * from the two normalised apart, they compose across the boundary and are
 * joined; otherwise g is emitted and seg becomes the pending group.
 */
static int
add_segment(struct tg_norm *n, struct group *g, struct group *seg, int fold,
            struct bytes *scratch)
{
	if (normalise(&seg->in, fold, &seg->out) != 0)
		return -1;

	if (g->in.len > 0 && g->in.len + seg->in.len <= GROUP_MAX_BYTES) {
		struct bytes joined = {0};
		int same;

		if (bytes_append(&joined, g->in.data, g->in.len) != 0 ||
		    bytes_append(&joined, seg->in.data, seg->in.len) != 0 ||
		    normalise(&joined, fold, scratch) != 0) {
			free(joined.data);
			return -1;
		}
		same = scratch->len == g->out.len + seg->out.len &&
		       memcmp(scratch->data, g->out.data, g->out.len) == 0 &&
		       memcmp(scratch->data + g->out.len, seg->out.data, seg->out.len) == 0;
		if (!same) {
			struct bytes old_out = g->out;

			free(g->in.data);
			g->in = joined;
			g->out = *scratch;
			*scratch = old_out;
			g->orig_end = seg->orig_end;
			return 0;
		}
		free(joined.data);
	}

	if (flush_group(n, g) != 0)
		return -1;
	g->in.len = 0;
	g->out.len = 0;
	if (bytes_append(&g->in, seg->in.data, seg->in.len) != 0 ||
	    bytes_append(&g->out, seg->out.data, seg->out.len) != 0)
		return -1;
	g->orig_start = seg->orig_start;
	g->orig_end = seg->orig_end;
	return 0;
}

/* The case folding of an ASCII byte: NFKC leaves ASCII as it is. */
static char
fold_ascii(unsigned char c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

/* The length of the run of ASCII bytes at s[pos] that are each followed
 * by ASCII or by the end: the bytes of the fast path below. */
static size_t
ascii_run(const char *s, size_t len, size_t pos)
{
	size_t end = pos;

	while (end < len && is_ascii((unsigned char)s[end]) &&
	       (end + 1 == len || is_ascii((unsigned char)s[end + 1])))
		end++;
	return end - pos;
}

/* Emit len ASCII bytes that start at original offset orig, each its own
 * normalised form (lower case when folding) mapped to itself. One call per
 * run rather than per byte: most texts are ASCII. */
static int
emit_ascii(struct tg_norm *n, const char *s, size_t len, size_t orig, int fold)
{
	if (norm_reserve(n, n->len + len) != 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		n->text[n->len + i] = fold ? fold_ascii(c) : (char)c;
		n->start[n->len + i] = (uint32_t)(orig + i);
		n->end[n->len + i] = (uint32_t)(orig + i + 1);
	}
	n->len += len;
	return 0;
}

static int
normalise_all(struct tg_norm *n, const char *s, size_t len, int fold,
              struct group *g, struct group *seg, struct bytes *scratch)
{
	size_t pos = 0;

	while (pos < len) {
		unsigned char c = (unsigned char)s[pos];
		int rc;

		/* ASCII followed by ASCII is its own NFKC form and cannot take a
		 * combining mark, which is the common case worth a fast path. */
		if (is_ascii(c) && (pos + 1 == len || is_ascii((unsigned char)s[pos + 1]))) {
			size_t run = ascii_run(s, len, pos);

			if (flush_group(n, g) != 0 || emit_ascii(n, s + pos, run, pos, fold) != 0)
				return -1;
			pos += run;
			continue;
		}

		rc = read_segment(s, len, &pos, seg);
		if (rc < 0)
			return -1;
		if (rc == 0)
			break;
		if (add_segment(n, g, seg, fold, scratch) != 0)
			return -1;
	}
	return flush_group(n, g);
}

/* Copy the len ASCII bytes at s as their normalised form, lower-cased when
 * folding, and leave the offset map unset. Most texts are ASCII, and
 * filling the map took about 26 instructions per byte of a 509-byte text
 * (callgrind). */
static void
copy_ascii(struct tg_norm *n, const char *s, size_t len, int fold)
{
	if (!fold) {
		memcpy(n->text, s, len);
	} else {
		for (size_t i = 0; i < len; i++)
			n->text[i] = fold_ascii((unsigned char)s[i]);
	}
	n->len = len;
	n->ascii = 1;
}

int
tg_norm_ascii(const char *s, size_t len)
{
	const uint64_t high_bits = 0x8080808080808080u;
	uint64_t word, seen = 0;
	size_t i = 0;

	/* A word at a time: the filters ask this of every text. */
	for (; len - i >= sizeof(word); i += sizeof(word)) {
		memcpy(&word, s + i, sizeof(word));
		seen |= word;
	}
	for (; i < len; i++)
		seen |= (unsigned char)s[i];
	return (seen & high_bits) == 0;
}

int
tg_norm_run(struct tg_norm *n, const char *s, size_t len, int fold)
{
	struct group g = {0}, seg = {0};
	struct bytes scratch = {0};
	int rc;

	if (len > TG_NORM_MAX_INPUT)
		return -1;
	n->len = 0;
	n->orig_len = len;
	n->ascii = 0;
	if (norm_reserve(n, len) != 0)
		return -1;

	if (tg_norm_ascii(s, len)) {
		copy_ascii(n, s, len, fold);
		n->text[n->len] = '\0';
		return 0;
	}
	rc = normalise_all(n, s, len, fold, &g, &seg, &scratch);
	n->text[n->len] = '\0';

	free(g.in.data);
	free(g.out.data);
	free(seg.in.data);
	free(seg.out.data);
	free(scratch.data);
	return rc;
}

void
tg_norm_span(const struct tg_norm *n, size_t a, size_t b, size_t *orig_a, size_t *orig_b)
{
	assert(a < b && b <= n->len);
	*orig_a = n->ascii ? a : n->start[a];
	*orig_b = n->ascii ? b : n->end[b - 1];
}

size_t
tg_norm_origin(const struct tg_norm *n, size_t i)
{
	assert(i <= n->len);
	if (i == n->len)
		return n->orig_len;
	return n->ascii ? i : n->start[i];
}

size_t
tg_norm_offset(const struct tg_norm *n, size_t orig)
{
	size_t lo = 0, hi = n->len;

	if (n->ascii)
		return orig < n->len ? orig : n->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (n->start[mid] < orig)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
