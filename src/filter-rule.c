/*
 * PCRE2 rules, the built-in presets, and scanning normalised text.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "filter-rule.h"

/* Counts of digits that a phone number may have: the shortest national
 * numbers have 7, and E.164 allows at most 15. */
#define PHONE_MIN_DIGITS 7
#define PHONE_MAX_DIGITS 15

/* --- presets ------------------------------------------------------------ */

static int
count_digits(const char *text, size_t len)
{
	int n = 0;

	for (size_t i = 0; i < len; i++)
		n += text[i] >= '0' && text[i] <= '9';
	return n;
}

int
tg_luhn_valid(const char *text, size_t len)
{
	int digits = count_digits(text, len);
	int sum = 0;
	int doubled = 0;

	if (digits < 13 || digits > 19)
		return 0;

	/* From the rightmost digit, every second digit is doubled, and a
	 * doubled value over 9 contributes its digit sum (value - 9). */
	for (size_t i = len; i-- > 0;) {
		int d;

		if (text[i] < '0' || text[i] > '9')
			continue;
		d = text[i] - '0';
		if (doubled) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
		doubled = !doubled;
	}
	return sum % 10 == 0;
}

static int
phone_valid(const char *text, size_t len)
{
	int digits = count_digits(text, len);

	return digits >= PHONE_MIN_DIGITS && digits <= PHONE_MAX_DIGITS;
}

/* The pattern finds candidates; inet_pton(3) decides. */
static int
ipv6_valid(const char *text, size_t len)
{
	char buf[INET6_ADDRSTRLEN + 1];
	struct in6_addr addr;

	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, text, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &addr) == 1;
}

struct preset {
	const char *name;
	const char *pattern;
	tg_rule_validate_fn *validate;
	/* A byte every match contains, 0 for none. It replaces the code unit
	 * PCRE2 records when PCRE2's is one that ordinary prose has too. */
	char required;
};

/* A card number in groups split by the separator pattern sep: 4-4-4 and a
 * last group of 1 to 7 digits (13 to 19 digits in all), or 4-6-5. */
#define CARD_GROUPS(sep) \
	"(?:[0-9]{4}(?:" sep "[0-9]{4}){2}" sep "[0-9]{1,7}" \
	"|[0-9]{4}" sep "[0-9]{6}" sep "[0-9]{5})"

/* The dashes between groups: hyphen-minus, underscore, U+2010 to U+2015
 * (hyphens, figure dash, en and em dashes, horizontal bar), minus sign. */
#define CARD_DASH "[-_\\x{2010}-\\x{2015}\\x{2212}]"

/* Separators that may differ from group to group: one to four spaces or
 * tabs, or one dash. */
#define CARD_SPACE_OR_DASH "(?:[ \\t]{1,4}|" CARD_DASH ")"

/* Not right after a group of four digits and such a separator, so that a
 * card does not start inside a longer run of groups. After a shorter or
 * longer number ("Step 3 4111 ...") a card may start. Each branch has a
 * fixed length, as PCRE2 before 10.43 requires in a lookbehind. */
#define NOT_AFTER_GROUP \
	"(?<![0-9]{4}(?:[ \\t]|" CARD_DASH ")|[0-9]{4}[ \\t]{2}|[0-9]{4}[ \\t]{3}|[0-9]{4}[ \\t]{4})"

/* Not right after a line of four digits, so that a column of numbers
 * offers only its first four lines as a card. */
#define NOT_AFTER_DIGIT_LINE \
	"(?<!\\v[0-9]{4}\\v)(?<!^[0-9]{4}\\v)(?<!\\v[0-9]{4}\\r\\n)(?<!^[0-9]{4}\\r\\n)"

/*
 * The domain of an e-mail address with dot as the separator of its labels.
 * IDNA (RFC 3490, section 3.1) takes U+3002 IDEOGRAPHIC FULL STOP for a
 * label dot, and NFKC has already turned its full-width and half-width
 * forms into "." and U+3002. In prose U+3002 ends a sentence, so only this
 * preset reads it as a dot, and only in a domain with no "." between its
 * labels: "jane@example.com\u3002" ends at "com", not at the next words.
 * NOTE: a domain written with U+3002 alone still takes the CJK words
 * after a final U+3002 (up to 24 letters) for its top-level domain.
 * The "xn--" form is tried first: a "-" may follow the letters form, which
 * would otherwise end "xn--p1ai" at "xn".
 */
#define EMAIL_DOMAIN(dot) \
	"(?:[\\p{L}\\p{N}](?:[\\p{L}\\p{M}\\p{N}-]{0,61}[\\p{L}\\p{M}\\p{N}])?" dot "){1,8}" \
	"(?:xn--[A-Za-z0-9-]{1,59}|\\p{L}[\\p{L}\\p{M}]{1,23})"

/*
 * The named sk- keys: OpenAI's project, service account, admin and older
 * user keys, Anthropic's (sk-ant-api03-, sk-ant-admin01-) and OpenRouter's
 * (sk-or-v1-). A bare "sk-" takes only letters and digits, as OpenAI's
 * first keys did, so that names such as "sk-learn-preprocessing" are not
 * keys. SK_HAS_DIGIT requires a digit among the next 200 key characters:
 * words joined by hyphens rarely have one, and random keys almost always
 * do (a random 48-character key of letters and digits lacks one about once
 * in 4,600).
 */
#define SK_NAMED "sk-(?:proj|svcacct|admin|None|ant|or)-"
#define SK_HAS_DIGIT "(?=[A-Za-z_-]{0,199}[0-9])"

/*
 * Each pattern is bounded (no unlimited repeats), so that a stream never
 * needs to hold back more than the longest match, and starts and ends with
 * lookarounds so that it does not match inside a longer token.
 */
static const struct preset presets[] = {
	/* Internationalized addresses too (RFC 6531): letters, marks and
	 * digits of any script in the local part and the domain, and a
	 * top-level domain in letters or in its ASCII form ("xn--"). The
	 * address starts at a letter or digit that no letter, mark or digit
	 * precedes, and ends at the longest domain that no letter, mark or
	 * digit follows: punctuation around it ("see:-jane@example.com--she")
	 * cannot continue an address. */
	{"email",
	 "(?<![\\p{L}\\p{M}\\p{N}])[\\p{L}\\p{N}][\\p{L}\\p{M}\\p{N}._%+'-]{0,63}@"
	 "(?:" EMAIL_DOMAIN("\\.") "|" EMAIL_DOMAIN("\\x{3002}") ")"
	 "(?![\\p{L}\\p{M}\\p{N}])",
	 NULL, '@'},

	/* International form with a country code, or a national form with
	 * two separators; never part of a longer run of digit groups, such
	 * as an IP address or a card number. */
	{"phone",
	 "(?<![0-9A-Za-z+])(?<![0-9][ .-])"
	 "(?:\\+[1-9][0-9]{0,2}(?:[ .-]?\\(?[0-9]{1,4}\\)?){2,6}"
	 "|\\(?[0-9]{2,5}\\)?[ .-][0-9]{3,4}[ .-][0-9]{3,4})"
	 "(?![0-9A-Za-z])(?![ .-][0-9])",
	 phone_valid, 0},

	/* 13 to 19 digits that pass the Luhn check: bare, or in groups of
	 * four (or Amex's 4-6-5) split by runs of spaces or tabs and by
	 * dashes, by dots, by slashes or by line breaks. Dots, slashes and line
	 * breaks must split every group, so that two decimal numbers
	 * ("1234.5678 9012.3456") or a line that ends in a number above a line
	 * of numbers are not taken for one card. No form starts inside a
	 * longer run of groups split the same way. */
	{"credit_card",
	 "(?<![0-9])(?:"
	 NOT_AFTER_GROUP "(?:[0-9]{13,19}|" CARD_GROUPS(CARD_SPACE_OR_DASH) ")"
	 "|(?<![0-9]\\.)" CARD_GROUPS("\\.")
	 "|(?<![0-9]/)" CARD_GROUPS("/")
	 "|" NOT_AFTER_DIGIT_LINE CARD_GROUPS("\\R")
	 ")(?![0-9])",
	 tg_luhn_valid, 0},

	/* OpenAI and Anthropic keys, AWS access key ids, GitHub, GitLab, Slack,
	 * Google API and Stripe tokens, JSON Web Tokens, PEM private keys.
	 * A key ends where its alphabet does, so "-" or "_" may follow one
	 * whose alphabet lacks them, and may follow "_" or "-" ("my_sk-...").
	 * Two shapes are distinct enough to be found right after a word, as in
	 * "keysk-proj-...". One is a named sk- key with 40 or more characters
	 * after its prefix, an upper-case letter among them. The other is an
	 * AWS key id, which may touch anything but upper-case letters and digits. */
	{"api_key",
	 "(?:"
	 "(?<![A-Za-z0-9])(?:"
	 SK_NAMED SK_HAS_DIGIT "[A-Za-z0-9_-]{20,200}"
	 "|sk-(?=[A-Za-z]{0,199}[0-9])[A-Za-z0-9]{20,200}"
	 "|gh[pousr]_[A-Za-z0-9]{36,251}"
	 "|github_pat_[A-Za-z0-9_]{22,251}"
	 "|glpat-[A-Za-z0-9_-]{20}"
	 "|xox[abposr]-[A-Za-z0-9-]{10,200}"
	 "|AIza[0-9A-Za-z_-]{35}"
	 "|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,200}"
	 "|eyJ[A-Za-z0-9_-]{10,2000}\\.eyJ[A-Za-z0-9_-]{10,2000}\\.[A-Za-z0-9_-]{10,2000}"
	 "|-----BEGIN (?:[A-Z]{1,10} )?PRIVATE KEY-----"
	 ")(?![A-Za-z0-9])"
	 "|" SK_NAMED SK_HAS_DIGIT "(?=[a-z0-9_-]{0,199}[A-Z])[A-Za-z0-9_-]{40,200}(?![A-Za-z0-9])"
	 "|(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"
	 ")",
	 NULL, 0},

	{"ipv4",
	 "(?<![0-9A-Za-z.])"
	 "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}"
	 "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
	 "(?![0-9A-Za-z])(?!\\.[0-9])",
	 NULL, 0},

	/* Candidates with at least two colons, including an IPv4 tail. */
	{"ipv6",
	 "(?<![0-9A-Za-z:.])"
	 "(?:(?:[0-9A-Fa-f]{0,4}:){2,6}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
	 "(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
	 "|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})"
	 "(?![0-9A-Za-z:])(?!\\.[0-9])",
	 ipv6_valid, 0},
};

const char *const tg_rule_preset_names[] = {
	"email", "phone", "credit_card", "api_key", "ipv4", "ipv6", NULL,
};

/* --- compiling ---------------------------------------------------------- */

/* Return the code unit that PCRE2 found in every match of code, the last
 * literal one or else the first, or -1 when there is none. Under (?i),
 * PCRE2 records a unit only when its other case is one ASCII letter too.
 * It does not report whether the unit is caseless, so the caller accepts
 * a letter in either case. */
static int
required_unit(const pcre2_code *code)
{
	uint32_t type = 0, unit = 0;

	if (pcre2_pattern_info(code, PCRE2_INFO_LASTCODETYPE, &type) == 0 && type == 1 &&
	    pcre2_pattern_info(code, PCRE2_INFO_LASTCODEUNIT, &unit) == 0)
		return (int)unit;
	if (pcre2_pattern_info(code, PCRE2_INFO_FIRSTCODETYPE, &type) == 0 && type == 1 &&
	    pcre2_pattern_info(code, PCRE2_INFO_FIRSTCODEUNIT, &unit) == 0)
		return (int)unit;
	return -1;
}

int
tg_rule_compile(struct tg_filter_rule *rule, const char *name, const char *pattern,
                int caseless, char *err, size_t err_size)
{
	uint32_t options = PCRE2_UTF | PCRE2_UCP | (caseless ? PCRE2_CASELESS : 0);
	PCRE2_UCHAR message[256];
	PCRE2_SIZE offset;
	int code_err;
	pcre2_code *code;
	uint32_t lookbehind = 0, min_length = 0;

	memset(rule, 0, sizeof(*rule));
	code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options,
	                     &code_err, &offset, NULL);
	if (code == NULL) {
		pcre2_get_error_message(code_err, message, sizeof(message));
		snprintf(err, err_size, "invalid pattern: %s at offset %zu",
		         (const char *)message, (size_t)offset);
		return -1;
	}

	/* Without JIT (some architectures) the interpreter serves, slower. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
	(void)pcre2_pattern_info(code, PCRE2_INFO_MAXLOOKBEHIND, &lookbehind);
	(void)pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &min_length);

	rule->name = strdup(name);
	rule->pattern = strdup(pattern);
	if (rule->name == NULL || rule->pattern == NULL) {
		pcre2_code_free(code);
		tg_rule_free(rule);
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	rule->code = code;
	rule->caseless = caseless;
	/* One more character than the lookbehind, for \b and \B. */
	rule->lookbehind = lookbehind + 1;
	rule->required = required_unit(code);
	rule->min_length = min_length;
	return 0;
}

int
tg_rule_preset(struct tg_filter_rule *rule, const char *name)
{
	char err[256];

	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
		if (strcmp(presets[i].name, name) != 0)
			continue;
		if (tg_rule_compile(rule, name, presets[i].pattern, 0, err, sizeof(err)) != 0)
			return -1;
		rule->validate = presets[i].validate;
		if (presets[i].required != 0)
			rule->required = presets[i].required;
		return 0;
	}
	return -1;
}

void
tg_rule_free(struct tg_filter_rule *rule)
{
	pcre2_code_free(rule->code);
	free(rule->name);
	free(rule->pattern);
	memset(rule, 0, sizeof(*rule));
}

/* --- scanning ----------------------------------------------------------- */

void
tg_scan_init(struct tg_scan *sc)
{
	memset(sc, 0, sizeof(*sc));
	tg_norm_init(&sc->plain);
	tg_norm_init(&sc->folded);
	sc->hold_from = SIZE_MAX;
}

void
tg_scan_describe_error(const struct tg_scan *sc, char *buf, size_t size)
{
	PCRE2_UCHAR message[120];

	if (sc->error == 0 || sc->error_rule == NULL) {
		snprintf(buf, size, "out of memory");
		return;
	}
	if (pcre2_get_error_message(sc->error, message, sizeof(message)) < 0)
		snprintf((char *)message, sizeof(message), "PCRE2 error %d", sc->error);
	snprintf(buf, size, "rule %s: %s", sc->error_rule->name, (const char *)message);
}

void
tg_scan_free(struct tg_scan *sc)
{
	tg_norm_free(&sc->plain);
	tg_norm_free(&sc->folded);
	pcre2_match_data_free(sc->match_data);
	free(sc->matches);
	tg_scan_init(sc);
}

static int
add_match(struct tg_scan *sc, size_t start, size_t end, const struct tg_filter_rule *rule)
{
	if (sc->n_matches == sc->cap_matches) {
		size_t cap = sc->cap_matches ? sc->cap_matches * 2 : 8;
		struct tg_match *m = realloc(sc->matches, cap * sizeof(*m));

		if (m == NULL)
			return -1;
		sc->matches = m;
		sc->cap_matches = cap;
	}
	sc->matches[sc->n_matches++] = (struct tg_match){start, end, rule};
	return 0;
}

/* Byte length of the UTF-8 sequence that starts with c. */
static size_t
utf8_len(unsigned char c)
{
	if (c < 0xc0)
		return 1;
	if (c < 0xe0)
		return 2;
	if (c < 0xf0)
		return 3;
	return 4;
}

/*
 * Run one rule over the normalised view n, from normalised offset start.
 * Complete matches that pass the rule's check are added in original
 * offsets; a partial match lowers hold_from.
 */
static int
scan_rule(struct tg_scan *sc, const struct tg_filter_rule *rule,
          const struct tg_norm *n, size_t start, int partial)
{
	uint32_t options = PCRE2_NO_UTF_CHECK | (partial ? PCRE2_PARTIAL_HARD : 0);
	PCRE2_SIZE *ov;
	size_t off = start;

	/* Created with the first rule that runs: most texts need none. */
	if (sc->match_data == NULL) {
		sc->match_data = pcre2_match_data_create(1, NULL);
		if (sc->match_data == NULL)
			return -1;
	}
	ov = pcre2_get_ovector_pointer(sc->match_data);

	while (off <= n->len) {
		int rc = pcre2_match(rule->code, (PCRE2_SPTR)n->text, n->len, off, options,
		                     sc->match_data, NULL);
		size_t s, e, orig_s, orig_e;

		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc == PCRE2_ERROR_PARTIAL) {
			size_t orig = tg_norm_origin(n, ov[0]);

			if (orig < sc->hold_from)
				sc->hold_from = orig;
			return 0;
		}
		if (rc < 0) {
			sc->error = rc;
			sc->error_rule = rule;
			return -1;
		}

		s = ov[0];
		e = ov[1];
		if (e == s) {
			/* An empty match masks nothing; step over one character. */
			off = s < n->len ? s + utf8_len((unsigned char)n->text[s]) : n->len + 1;
			continue;
		}
		off = e;
		if (rule->validate != NULL && !rule->validate(n->text + s, e - s))
			continue;
		tg_norm_span(n, s, e, &orig_s, &orig_e);
		if (add_match(sc, orig_s, orig_e, rule) != 0)
			return -1;
	}
	return 0;
}

static int
compare_matches(const void *a, const void *b)
{
	const struct tg_match *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	if (x->end != y->end)
		return x->end > y->end ? -1 : 1;
	return 0;
}

/* Sort the matches and merge the overlapping ones. A possible match that
 * begins inside a complete one holds back from that match's start, so the
 * masked span is released whole. */
static void
merge_matches(struct tg_scan *sc)
{
	size_t out = 0;

	if (sc->n_matches == 0)
		return;
	qsort(sc->matches, sc->n_matches, sizeof(sc->matches[0]), compare_matches);
	for (size_t i = 1; i < sc->n_matches; i++) {
		struct tg_match *last = &sc->matches[out];

		if (sc->matches[i].start < last->end) {
			if (sc->matches[i].end > last->end)
				last->end = sc->matches[i].end;
			continue;
		}
		sc->matches[++out] = sc->matches[i];
	}
	sc->n_matches = out + 1;

	for (size_t i = 0; i < sc->n_matches; i++) {
		if (sc->hold_from > sc->matches[i].start && sc->hold_from < sc->matches[i].end)
			sc->hold_from = sc->matches[i].start;
	}
}

static int
is_ascii_letter(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

size_t
tg_rule_required_bytes(const struct tg_filter_rule *rule, char bytes[2])
{
	int c = rule->required;

	if (c < 0)
		return 0;
	bytes[0] = (char)c;
	if (!is_ascii_letter(c))
		return 1;
	/* Bit 0x20 is the case of an ASCII letter. */
	bytes[1] = (char)(c ^ 0x20);
	return 2;
}

/*
 * Whether rule can match an ASCII text, whose normalised views are the
 * text itself and, folded, its lower case (tg_norm_ascii()). PCRE2 also
 * rejects a text shorter than the shortest match, or one without the code
 * unit that every match contains, before it tries to match. Deciding that
 * here also spares the normalisation, its buffers and the match data.
 * A complete scan that PCRE2 rejects this way finds nothing, so skipping
 * it changes no result. The exception is a pattern that would exhaust
 * PCRE2's match limit on such a text: it no longer fails there.
 */
static int
may_match(const struct tg_filter_rule *rule, const char *text, size_t len)
{
	char bytes[2];
	size_t n = tg_rule_required_bytes(rule, bytes);

	if (len < rule->min_length)
		return 0;
	if (n == 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		if (memchr(text, bytes[i], len) != NULL)
			return 1;
	}
	return 0;
}

/* Whether the scan runs rule. ascii_complete is set for an ASCII text in
 * a complete scan, the only scans that may_match() can judge. */
static int
runs(const struct tg_filter_rule *rule, int ascii_complete, const char *text, size_t len)
{
	return !ascii_complete || may_match(rule, text, len);
}

int
tg_scan_run(struct tg_scan *sc, const struct tg_filter *f, const char *text, size_t len,
            size_t from, int partial)
{
	int need_plain = 0, need_folded = 0;
	int ascii_complete;

	sc->n_matches = 0;
	sc->hold_from = SIZE_MAX;
	sc->error = 0;
	sc->error_rule = NULL;

	/* A partial match may end before the code unit a complete one
	 * needs, so a scan that may be continued runs every rule. A text too
	 * long to normalise fails below, as it did before. */
	ascii_complete = !partial && len <= TG_NORM_MAX_INPUT && tg_norm_ascii(text, len);
	for (size_t i = 0; i < f->n_rules; i++) {
		if (!runs(&f->rules[i], ascii_complete, text, len))
			continue;
		need_plain |= !f->rules[i].caseless;
		need_folded |= f->rules[i].caseless;
	}
	if (need_plain && tg_norm_run(&sc->plain, text, len, 0) != 0)
		return -1;
	if (need_folded && tg_norm_run(&sc->folded, text, len, 1) != 0)
		return -1;

	for (size_t i = 0; i < f->n_rules; i++) {
		const struct tg_filter_rule *rule = &f->rules[i];
		const struct tg_norm *n = rule->caseless ? &sc->folded : &sc->plain;

		if (!runs(rule, ascii_complete, text, len))
			continue;
		if (scan_rule(sc, rule, n, tg_norm_offset(n, from), partial) != 0)
			return -1;
	}

	merge_matches(sc);
	return 0;
}
