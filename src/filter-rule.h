/*
 * Regex rules of the content filters: compiling patterns and presets with
 * PCRE2, and scanning text for them after normalisation.
 */
#ifndef TOLLGATE_FILTER_RULE_H
#define TOLLGATE_FILTER_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "filter-norm.h"
#include "filter-t.h"

/*
 * Compile pattern (UTF-8, PCRE2 syntax) for rule name, with Unicode
 * properties, and JIT-compile it for complete and partial matching. A
 * caseless rule also matches case-insensitively (it runs on case-folded
 * text, and PCRE2_CASELESS covers upper-case letters in the pattern).
 * Returns 0, or -1 with a message in err such as "invalid pattern: missing
 * closing parenthesis at offset 7".
 */
int tg_rule_compile(struct tg_filter_rule *rule, const char *name,
                    const char *pattern, int caseless, char *err, size_t err_size);

/* Fill rule with the built-in preset called name. Returns 0, or -1 when
 * there is no such preset. */
int tg_rule_preset(struct tg_filter_rule *rule, const char *name);

/* The preset names, NULL-terminated, for messages and docs. */
extern const char *const tg_rule_preset_names[];

void tg_rule_free(struct tg_filter_rule *rule);

/* The Luhn checksum of the digits in text (other bytes are skipped). 1 when
 * it holds and there are 13 to 19 digits. */
int tg_luhn_valid(const char *text, size_t len);

/*
 * The bytes of which an ASCII text must hold one for rule to match it:
 * its required byte, and the other case too when that is a letter. Puts
 * them in bytes and returns how many (1 or 2), or 0 when the rule
 * requires no byte.
 */
size_t tg_rule_required_bytes(const struct tg_filter_rule *rule, char bytes[2]);

/* A match in original-text offsets. */
struct tg_match {
	size_t start, end;
	const struct tg_filter_rule *rule;
};

/* Scratch space and results of scans; reuse one across calls to save
 * allocations. */
struct tg_scan {
	struct tg_norm plain;
	struct tg_norm folded;
	void *match_data;               /* pcre2_match_data_8 */
	struct tg_match *matches;       /* sorted by start, not overlapping */
	size_t n_matches, cap_matches;
	size_t hold_from;               /* original offset where a match may
	                                   still be completed by later text;
	                                   SIZE_MAX when none */
	int error;                      /* PCRE2 error of the failed scan, or 0 */
	const struct tg_filter_rule *error_rule;        /* the rule it came from */
};

void tg_scan_init(struct tg_scan *sc);

/* Why the last scan failed, for a log line: the rule and PCRE2's message
 * (such as "match limit exceeded"), or "out of memory". */
void tg_scan_describe_error(const struct tg_scan *sc, char *buf, size_t size);
void tg_scan_free(struct tg_scan *sc);

/*
 * Run the rules of the regex filter f over len bytes of text. Matches must
 * start at original offset from or later; the bytes before from are
 * context for lookbehind only. With partial, text may be continued later:
 * a match that reaches the end of text and could grow is not reported,
 * and hold_from tells where the earliest such possible match begins.
 * Overlapping matches of different rules are merged into one, named after
 * the rule of the earliest. Returns 0, or -1 when out of memory or PCRE2
 * failed (its match limit, for instance).
 */
int tg_scan_run(struct tg_scan *sc, const struct tg_filter *f,
                const char *text, size_t len, size_t from, int partial);

#endif
