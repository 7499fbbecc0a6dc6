/*
 * Building regex filters by hand for the filter unit tests, the way the
 * config loader builds them.
 */
#ifndef TOLLGATE_T_FILTER_HELPERS_H
#define TOLLGATE_T_FILTER_HELPERS_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "filter-rule.h"
#include "filter.h"

/* rules: "preset:NAME", "NAME=PATTERN", or "~NAME=PATTERN" for a caseless
 * rule; NULL-terminated. */
static inline struct tg_filter *
make_filter(const char *name, enum tg_filter_action action, unsigned apply_to,
            const char *const *rules)
{
	struct tg_filter *f = calloc(1, sizeof(*f));
	size_t n = 0;

	while (rules[n] != NULL)
		n++;
	f->name = strdup(name);
	f->type = TG_FILTER_REGEX;
	f->action = action;
	f->apply_to = apply_to;
	f->hold = TG_FILTER_HOLD;
	f->rules = calloc(n, sizeof(*f->rules));
	for (size_t i = 0; i < n; i++) {
		const char *spec = rules[i];
		char err[256] = "";

		if (strncmp(spec, "preset:", 7) == 0) {
			ck_assert_int_eq(tg_rule_preset(&f->rules[i], spec + 7), 0);
		} else {
			int caseless = spec[0] == '~';
			const char *eq = strchr(spec, '=');
			char *rule_name = strndup(spec + caseless, (size_t)(eq - spec) - (size_t)caseless);

			ck_assert_msg(tg_rule_compile(&f->rules[i], rule_name, eq + 1, caseless,
			                              err, sizeof(err)) == 0, "%s", err);
			free(rule_name);
		}
		if (f->rules[i].lookbehind > f->lookbehind)
			f->lookbehind = f->rules[i].lookbehind;
	}
	f->n_rules = n;
	return f;
}

static inline void
destroy_filter(struct tg_filter *f)
{
	tg_filter_free(f);
	free(f);
}

#endif
