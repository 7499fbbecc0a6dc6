/*
 * Unit tests for the "filters" config sections: what a valid section
 * builds, each error message, and plugin loading (a plugin with another
 * ABI version or without the symbol is rejected, naming the file).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "filter-config.h"
#include "filter.h"

#ifndef TG_TEST_PLUGINS
#define TG_TEST_PLUGINS "plugins"
#endif

/* Load a config whose "filters" section is filters and whose route lists
 * route_filters; errors go to *errors (to free). */
static struct tg_config *
load_with(const char *filters, const char *route_filters, char **errors)
{
	char path[] = "/tmp/tollgate-filter-config-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	size_t len = 0;
	FILE *err = open_memstream(errors, &len);
	struct tg_config *cfg;

	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"backends\": {\"llm\": {\"url\": \"http://127.0.0.1:9\"},"
	           " \"moderator\": {\"url\": \"http://127.0.0.1:9\"}},"
	           " \"filters\": %s,"
	           " \"routes\": [{\"name\": \"chat\", \"backends\": [\"llm\"],"
	           " \"filters\": %s}]}", filters, route_filters);
	fclose(f);
	cfg = tg_config_load(path, err);
	fclose(err);
	unlink(path);
	return cfg;
}

static struct tg_config *
load_ok(const char *filters, const char *route_filters)
{
	char *errors = NULL;
	struct tg_config *cfg = load_with(filters, route_filters, &errors);

	ck_assert_msg(cfg != NULL, "load failed:\n%s", errors);
	free(errors);
	return cfg;
}

/* Load and return the error output; the load must fail. */
static char *
load_fails(const char *filters, const char *route_filters)
{
	char *errors = NULL;
	struct tg_config *cfg = load_with(filters, route_filters, &errors);

	ck_assert_msg(cfg == NULL, "load succeeded");
	return errors;
}

static void
assert_error(const char *filters, const char *route_filters, const char *expected)
{
	char *errors = load_fails(filters, route_filters);

	ck_assert_msg(strstr(errors, expected) != NULL, "expected \"%s\" in:\n%s",
	              expected, errors);
	free(errors);
}

static const struct tg_filter_chain *
route_chain(const struct tg_config *cfg)
{
	return &cfg->routes[0].filters->chain;
}

START_TEST(regex_filter_builds)
{
	struct tg_config *cfg = load_ok(
		"{\"pii\": {\"type\": \"regex\", \"apply_to\": [\"request\", \"response\"],"
		" \"action\": \"mask\", \"presets\": [\"email\", \"credit_card\"],"
		" \"rules\": [{\"name\": \"ticket\", \"pattern\": \"TCK-[0-9]{6}\"}],"
		" \"hold\": \"256B\", \"hold_timeout\": \"250ms\"},"
		" \"deny\": {\"type\": \"regex\", \"rules\": [{\"name\": \"injection\","
		" \"pattern\": \"ignore previous instructions\", \"caseless\": true}]}}",
		"[\"pii\", \"deny\"]");
	const struct tg_filter_chain *chain = route_chain(cfg);
	const struct tg_filter *pii = chain->filters[0];
	const struct tg_filter *deny = chain->filters[1];

	ck_assert_uint_eq(chain->n, 2);
	ck_assert_str_eq(pii->name, "pii");
	ck_assert_int_eq(pii->action, TG_ACTION_MASK);
	ck_assert_uint_eq(pii->apply_to, TG_SIDE_REQUEST | TG_SIDE_RESPONSE);
	ck_assert_uint_eq(pii->n_rules, 3);
	ck_assert_str_eq(pii->rules[0].name, "email");
	ck_assert_str_eq(pii->rules[2].name, "ticket");
	ck_assert_uint_eq(pii->hold, 256);
	ck_assert_uint_eq(pii->hold_timeout, 250);
	ck_assert_uint_eq(deny->hold_timeout, 0);       /* absent: no time bound */
	ck_assert_str_eq(pii->replacement, "[REDACTED:{rule}]");

	ck_assert_int_eq(deny->action, TG_ACTION_BLOCK);
	ck_assert_uint_eq(deny->apply_to, TG_SIDE_REQUEST);
	ck_assert_int_eq(deny->rules[0].caseless, 1);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(route_without_filters_has_none)
{
	char *errors = NULL;
	struct tg_config *cfg = load_with("{}", "[]", &errors);

	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(route_chain(cfg)->n, 0);
	free(errors);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(moderation_filter_builds)
{
	struct tg_config *cfg = load_ok(
		"{\"guard\": {\"type\": \"moderation\", \"backend\": \"moderator\","
		" \"timeout\": \"500ms\", \"on_error\": \"allow\","
		" \"thresholds\": {\"violence\": 0.7}},"
		" \"llama\": {\"type\": \"moderation\", \"backend\": \"moderator\","
		" \"api\": \"chat\", \"model\": \"llama-guard\"}}",
		"[\"guard\", \"llama\"]");
	const struct tg_filter *guard = route_chain(cfg)->filters[0];
	const struct tg_filter *llama = route_chain(cfg)->filters[1];

	ck_assert_str_eq(guard->moderation.backend->name, "moderator");
	ck_assert_uint_eq(guard->moderation.timeout, 500);
	ck_assert_int_eq(guard->on_error_block, 0);
	ck_assert_uint_eq(guard->moderation.n_thresholds, 1);
	ck_assert_str_eq(guard->moderation.thresholds[0].name, "violence");
	ck_assert(guard->moderation.thresholds[0].score == 0.7);
	ck_assert_int_eq(llama->moderation.api, TG_MODERATION_CHAT);
	ck_assert_ptr_nonnull(llama->moderation.verdict_code);
	ck_assert_int_eq(llama->on_error_block, 1);
	ck_assert_str_eq(llama->model, "llama-guard");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(invalid_pattern_names_rule_and_offset)
{
	assert_error("{\"deny\": {\"type\": \"regex\", \"rules\": [{\"name\": \"ok\", \"pattern\": \"a\"},"
	             " {\"name\": \"broken\", \"pattern\": \"TCK-([0-9]{6}\"}]}}", "[\"deny\"]",
	             ": filters.deny.rules[1]: rule \"broken\": invalid pattern: missing "
	             "closing parenthesis at offset 13\n");
}
END_TEST

START_TEST(every_error_reported_at_once)
{
	char *errors = load_fails(
		"{\"a\": {\"type\": \"regex\", \"presets\": [\"passport\"]},"
		" \"b\": {\"type\": \"regex\", \"action\": \"drop\", \"rules\": []},"
		" \"c\": {\"type\": \"moderation\", \"backend\": \"nope\", \"action\": \"mask\"},"
		" \"d\": {\"type\": \"regex\", \"backend\": \"moderator\", \"rules\": ["
		"   {\"name\": \"x\", \"pattern\": \"x\"}]},"
		" \"e\": {\"type\": \"plugin\"},"
		" \"f\": {\"type\": \"magic\"}}",
		"[\"a\", \"missing\", \"a\"]");

	ck_assert_ptr_nonnull(strstr(errors, "filters.a.presets[0]: unknown preset \"passport\"; "
	                                     "use email, phone, credit_card, api_key, ipv4 or ipv6"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.b.action: invalid value \"drop\"; "
	                                     "use block, mask or flag"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.c.backend: unknown backend \"nope\""));
	ck_assert_ptr_nonnull(strstr(errors, "filters.c.action: mask needs a regex filter"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.d.backend: not used by regex filters"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.e: a plugin filter needs \"path\""));
	ck_assert_ptr_nonnull(strstr(errors, "filters.f.type: invalid value \"magic\"; "
	                                     "use regex, moderation or plugin"));
	ck_assert_ptr_nonnull(strstr(errors, "routes[0].filters[1]: no filter called \"missing\""));
	ck_assert_ptr_nonnull(strstr(errors, "routes[0].filters[2]: filter \"a\" is listed twice"));
	free(errors);
}
END_TEST

/* Decisions, logs and metrics name a rule only by its name. */
START_TEST(duplicate_rule_names_rejected)
{
	char *errors = load_fails(
		"{\"a\": {\"type\": \"regex\", \"rules\": ["
		"   {\"name\": \"x\", \"pattern\": \"x\"}, {\"name\": \"x\", \"pattern\": \"y\"}]},"
		" \"b\": {\"type\": \"regex\", \"presets\": [\"email\"],"
		"   \"rules\": [{\"name\": \"email\", \"pattern\": \"@\"}]},"
		" \"c\": {\"type\": \"regex\", \"presets\": [\"ipv4\", \"ipv4\"]}}",
		"[\"a\", \"b\", \"c\"]");

	ck_assert_ptr_nonnull(strstr(errors, "filters.a.rules[1]: duplicate rule name \"x\" in "
	                                     "this filter; decisions, logs and metrics name a "
	                                     "rule by its name, so rename one\n"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.b.rules[0]: duplicate rule name \"email\""));
	ck_assert_ptr_nonnull(strstr(errors, "filters.c.presets[1]: duplicate rule name \"ipv4\""));
	free(errors);
}
END_TEST

/* The metrics label decisions without a rule rule="none", and those of a
 * failed classifier rule="error". */
START_TEST(reserved_rule_names_rejected)
{
	char *errors = load_fails(
		"{\"a\": {\"type\": \"regex\", \"rules\": ["
		"   {\"name\": \"none\", \"pattern\": \"x\"}, {\"name\": \"error\", \"pattern\": \"y\"}]},"
		" \"m\": {\"type\": \"moderation\", \"backend\": \"moderator\","
		"   \"thresholds\": {\"none\": 0.5}}}",
		"[\"a\", \"m\"]");

	ck_assert_ptr_nonnull(strstr(errors, "filters.a.rules[0].name: reserved name \"none\": "
	                                     "the metrics label filter decisions without a rule "
	                                     "as rule=\"none\", and the series of this name would "
	                                     "merge with theirs; choose another name\n"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.a.rules[1].name: reserved name \"error\": "
	                                     "the metrics label decisions of a classifier that "
	                                     "failed as rule=\"error\""));
	ck_assert_ptr_nonnull(strstr(errors, "filters.m.thresholds.none: reserved name \"none\""));
	free(errors);
}
END_TEST

/* "{rule}" is the only placeholder: any other "{word}" would reach
 * clients as written. */
START_TEST(unknown_placeholder_warned)
{
	const struct tg_filter *f;
	char *out = NULL;
	struct tg_config *cfg = load_with(
		"{\"a\": {\"type\": \"regex\", \"action\": \"mask\", \"presets\": [\"email\"],"
		"   \"replacement\": \"[{nope}:{rule}:{Rule}]\"}}",
		"[\"a\"]", &out);

	ck_assert_ptr_nonnull(cfg);
	ck_assert_ptr_nonnull(strstr(out, "filters.a.replacement: warning: \"{nope}\" in "
	                                  "\"[{nope}:{rule}:{Rule}]\" is no placeholder and is "
	                                  "sent as written; the only placeholder is {rule}, the "
	                                  "name of the rule that matched\n"));
	ck_assert_ptr_nonnull(strstr(out, "filters.a.replacement: warning: \"{Rule}\""));
	f = route_chain(cfg)->filters[0];
	ck_assert_str_eq(f->replacement, "[{nope}:{rule}:{Rule}]");
	free(out);
	tg_config_unref(cfg);

	out = NULL;
	cfg = load_with("{\"a\": {\"type\": \"regex\", \"action\": \"mask\", \"presets\": [\"email\"],"
	                "   \"replacement\": \"{{rule}} {} { rule } {a-b}\"}}", "[\"a\"]", &out);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(out, "");
	f = route_chain(cfg)->filters[0];
	ck_assert_str_eq(f->replacement, "{{rule}} {} { rule } {a-b}");
	free(out);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(hold_timeout_errors_name_value)
{
	char *errors = load_fails(
		"{\"a\": {\"type\": \"regex\", \"presets\": [\"email\"], \"hold_timeout\": \"0ms\","
		"   \"apply_to\": [\"response\"]},"
		" \"b\": {\"type\": \"regex\", \"presets\": [\"email\"], \"hold_timeout\": \"fast\","
		"   \"apply_to\": [\"response\"]},"
		" \"c\": {\"type\": \"regex\", \"presets\": [\"email\"], \"hold_timeout\": 200,"
		"   \"apply_to\": [\"response\"]},"
		" \"d\": {\"type\": \"moderation\", \"backend\": \"moderator\","
		"   \"hold_timeout\": \"1s\"},"
		" \"e\": {\"type\": \"regex\", \"presets\": [\"email\"], \"hold_timeout\": \"61m\","
		"   \"apply_to\": [\"response\"]},"
		/* About 2^63 us: this used to wrap and let held text go at once. */
		" \"f\": {\"type\": \"regex\", \"presets\": [\"email\"],"
		"   \"hold_timeout\": \"9223372036854775ms\", \"apply_to\": [\"response\"]}}",
		"[]");

	ck_assert_ptr_nonnull(strstr(errors, "filters.a.hold_timeout: \"0ms\" is out of range; "
	                                     "valid values are 1ms to 1h"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.e.hold_timeout: \"61m\" is out of range; "
	                                     "valid values are 1ms to 1h"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.f.hold_timeout: \"9223372036854775ms\" is "
	                                     "out of range; valid values are 1ms to 1h"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.b.hold_timeout: invalid duration \"fast\"; "
	                                     "expected a non-negative integer followed by ms, s, "
	                                     "m or h"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.c.hold_timeout: expected a string with a "
	                                     "unit, such as \"30s\", got an integer"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.d.hold_timeout: not used by moderation "
	                                     "filters"));
	free(errors);
}
END_TEST

START_TEST(hold_timeout_needs_response_side)
{
	char *errors = load_fails(
		"{\"req\": {\"type\": \"regex\", \"presets\": [\"email\"],"
		"   \"action\": \"mask\", \"apply_to\": [\"request\"], \"hold_timeout\": \"5ms\"},"
		" \"dflt\": {\"type\": \"regex\", \"presets\": [\"email\"], \"hold_timeout\": \"5ms\"}}",
		"[]");

	ck_assert_ptr_nonnull(strstr(errors, "filters.req.hold_timeout: has no effect because "
	                                     "the filter checks requests only; it bounds how long "
	                                     "streamed response text is held, so add \"response\" "
	                                     "to \"apply_to\" or remove it"));
	ck_assert_ptr_nonnull(strstr(errors, "filters.dflt.hold_timeout: has no effect because"));
	free(errors);
}
END_TEST

START_TEST(regex_filter_needs_rules)
{
	static const char *const filters[] = {
		"{\"x\": {\"type\": \"regex\"}}",
		"{\"x\": {\"type\": \"regex\", \"presets\": [], \"rules\": []}}",
		"{\"x\": {\"type\": \"regex\", \"presets\": []}}",
		"{\"x\": {\"type\": \"regex\", \"rules\": []}}",
	};

	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
		assert_error(filters[i], "[]", "filters.x: a regex filter needs \"presets\", "
		             "\"rules\" or both, with at least one entry");
}
END_TEST

START_TEST(plugin_loads_and_classifies)
{
	struct tg_config *cfg = load_ok(
		"{\"clf\": {\"type\": \"plugin\", \"path\": \"" TG_TEST_PLUGINS "/test/keyword.so\","
		" \"model\": \"LEAK\", \"labels\": {\"__label__secret\": 0.5}}}", "[\"clf\"]");
	const struct tg_filter *clf = route_chain(cfg)->filters[0];
	int failed;

	ck_assert_ptr_nonnull(clf->plugin);
	ck_assert_str_eq(tg_filter_plugin_check(clf, "please LEAK it", 14, &failed),
	                 "__label__secret");
	ck_assert_int_eq(failed, 0);
	ck_assert_ptr_null(tg_filter_plugin_check(clf, "harmless", 8, &failed));
	ck_assert_int_eq(failed, 0);
	ck_assert_ptr_null(tg_filter_plugin_check(clf, "PLUGIN-FAIL", 11, &failed));
	ck_assert_int_eq(failed, 1);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(plugin_wrong_abi_rejected)
{
	assert_error("{\"clf\": {\"type\": \"plugin\", \"path\": \"" TG_TEST_PLUGINS "/test/wrong-abi.so\","
	             " \"labels\": {\"x\": 0.5}}}", "[]",
	             "filters.clf.path: " TG_TEST_PLUGINS "/test/wrong-abi.so: plugin ABI version 42, "
	             "but this tollgate supports version 1;");
}
END_TEST

START_TEST(plugin_missing_symbol_rejected)
{
	assert_error("{\"clf\": {\"type\": \"plugin\", \"path\": \"" TG_TEST_PLUGINS "/test/no-symbol.so\","
	             " \"labels\": {\"x\": 0.5}}}", "[]",
	             "filters.clf.path: " TG_TEST_PLUGINS "/test/no-symbol.so: symbol "
	             "\"tollgate_plugin\" not found");
}
END_TEST

START_TEST(plugin_missing_file_rejected)
{
	assert_error("{\"clf\": {\"type\": \"plugin\", \"path\": \"/nonexistent/x.so\","
	             " \"labels\": {\"x\": 0.5}}}", "[]",
	             "filters.clf.path: cannot load plugin: /nonexistent/x.so:");
}
END_TEST

START_TEST(plugin_bare_name_uses_plugin_dir)
{
	assert_error("{\"clf\": {\"type\": \"plugin\", \"path\": \"nothing-here.so\","
	             " \"labels\": {\"x\": 0.5}}}", "[]",
	             "/nothing-here.so: cannot open shared object file");
}
END_TEST

START_TEST(moderation_response_rejected)
{
	assert_error("{\"g\": {\"type\": \"moderation\", \"backend\": \"moderator\","
	             " \"apply_to\": [\"request\", \"response\"]}}", "[]",
	             "filters.g.apply_to: moderation filters check requests only");
}
END_TEST

START_TEST(score_out_of_range_rejected)
{
	assert_error("{\"g\": {\"type\": \"moderation\", \"backend\": \"moderator\","
	             " \"thresholds\": {\"hate\": 1.5}}}", "[]",
	             "filters.g.thresholds.hate: expected a score from 0 to 1");
}
END_TEST

static Suite *
filter_config_suite(void)
{
	Suite *s = suite_create("filter_config");
	TCase *valid = tcase_create("valid");
	TCase *invalid = tcase_create("invalid");
	TCase *plugins = tcase_create("plugins");

	tcase_add_test(valid, regex_filter_builds);
	tcase_add_test(valid, route_without_filters_has_none);
	tcase_add_test(valid, moderation_filter_builds);
	tcase_add_test(invalid, invalid_pattern_names_rule_and_offset);
	tcase_add_test(invalid, every_error_reported_at_once);
	tcase_add_test(invalid, duplicate_rule_names_rejected);
	tcase_add_test(invalid, reserved_rule_names_rejected);
	tcase_add_test(valid, unknown_placeholder_warned);
	tcase_add_test(invalid, hold_timeout_needs_response_side);
	tcase_add_test(invalid, regex_filter_needs_rules);
	tcase_add_test(invalid, hold_timeout_errors_name_value);
	tcase_add_test(invalid, score_out_of_range_rejected);
	tcase_add_test(invalid, moderation_response_rejected);
	tcase_add_test(plugins, plugin_loads_and_classifies);
	tcase_add_test(plugins, plugin_wrong_abi_rejected);
	tcase_add_test(plugins, plugin_missing_symbol_rejected);
	tcase_add_test(plugins, plugin_missing_file_rejected);
	tcase_add_test(plugins, plugin_bare_name_uses_plugin_dir);
	suite_add_tcase(s, valid);
	suite_add_tcase(s, invalid);
	suite_add_tcase(s, plugins);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(filter_config_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
