/*
 * Unit tests of gateway keys: the "gateway_keys" and routes[].auth config
 * sections (src/auth-config.c), which must never show a secret, and how a
 * caller is identified and checked against a route (src/auth.c).
 *
 * Configs are written to a temporary file, shown as "T" in the output.
 */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

/* By path, because the build directory's autoconf config.h comes first on the
 * include path and has the same name. */
#include "../../src/config.h"
#include "auth.h"
#include "auth-t.h"

#define BACKEND "\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9001\"}}"

/* The SHA-256 of "ci-secret", as sha256sum prints it. */
#define CI_DIGEST "f82da6e2b2e51c046a2eaf10964ef184b69c0aee9892f10a2a7b657477d407e6"

/* 64 characters, two of them no hexadecimal digit. */
#define NOT_HEX "zz2da6e2b2e51c046a2eaf10964ef184b69c0aee9892f10a2a7b657477d407e6"

/* Load json from a temporary file; return the error output with the file
 * name shown as "T", and the config (NULL on errors) in *cfg. */
static char *
load_json(const char *json, struct tg_config **cfg)
{
	char path[] = "/tmp/tg-check-auth-XXXXXX";
	int fd = mkstemp(path);
	char *out = NULL;
	size_t len = 0;
	FILE *err;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);

	err = open_memstream(&out, &len);
	ck_assert_ptr_nonnull(err);
	*cfg = tg_config_load(path, err);
	fclose(err);
	unlink(path);

	for (char *p; (p = strstr(out, path)) != NULL;) {
		*p = 'T';
		memmove(p + 1, p + strlen(path), strlen(p + strlen(path)) + 1);
	}
	return out;
}

/* A config with the gateway_keys object keys and the routes routes. */
static char *
config_with(const char *keys, const char *routes)
{
	char *json;

	ck_assert_int_ge(asprintf(&json, "{" BACKEND ", \"gateway_keys\": %s, \"routes\": %s}",
	                          keys, routes), 0);
	return json;
}

static struct tg_config *
expect_valid(const char *keys, const char *routes)
{
	struct tg_config *cfg;
	char *json = config_with(keys, routes);
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);
	free(out);
	free(json);
	return cfg;
}

static void
expect_errors(const char *keys, const char *routes, const char *expected)
{
	struct tg_config *cfg;
	char *json = config_with(keys, routes);
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, expected);
	ck_assert_ptr_null(cfg);
	free(out);
	free(json);
}

static void
digest_of(const char *secret, unsigned char out[TG_KEY_DIGEST_LEN])
{
	unsigned int len = 0;

	ck_assert_int_eq(EVP_Digest(secret, strlen(secret), out, &len, EVP_sha256(), NULL), 1);
	ck_assert_uint_eq(len, TG_KEY_DIGEST_LEN);
}

static const char *const one_route = "[{\"name\": \"r\", \"backends\": [\"b\"]}]";

/* --- config --------------------------------------------------------------- */

/* Without gateway_keys, callers need no key, and nothing is allocated. */
START_TEST(no_keys_by_default)
{
	struct tg_config *cfg;
	char *out = load_json("{" BACKEND ", \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
	                      &cfg);

	ck_assert_str_eq(out, "");
	ck_assert_ptr_null(cfg->gateway_keys);
	ck_assert_ptr_null(cfg->routes[0].auth);
	free(out);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(keys_from_environment_and_digest)
{
	unsigned char team[TG_KEY_DIGEST_LEN], ci[TG_KEY_DIGEST_LEN];
	struct tg_config *cfg;

	setenv("TG_CHECK_AUTH_KEY", "team-secret", 1);
	cfg = expect_valid("{\"team\": {\"key\": \"${TG_CHECK_AUTH_KEY}\"}, "
	                   "\"ci\": {\"sha256\": \"" CI_DIGEST "\"}}", one_route);
	digest_of("team-secret", team);
	digest_of("ci-secret", ci);

	ck_assert_uint_eq(cfg->gateway_keys->n, 2);
	ck_assert_str_eq(cfg->gateway_keys->keys[0].name, "team");
	ck_assert_mem_eq(cfg->gateway_keys->keys[0].digest, team, TG_KEY_DIGEST_LEN);
	ck_assert_str_eq(cfg->gateway_keys->keys[1].name, "ci");
	ck_assert_mem_eq(cfg->gateway_keys->keys[1].digest, ci, TG_KEY_DIGEST_LEN);
	ck_assert_int_eq(cfg->gateway_keys->any_open_route, 0);
	ck_assert_ptr_null(cfg->routes[0].auth);
	tg_config_unref(cfg);
	unsetenv("TG_CHECK_AUTH_KEY");
}
END_TEST

/* sha256sum prints lower case; upper case is the same digest. */
START_TEST(digest_in_upper_case)
{
	unsigned char ci[TG_KEY_DIGEST_LEN];
	char upper[] = CI_DIGEST;
	char keys[200];
	struct tg_config *cfg;

	for (char *p = upper; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	snprintf(keys, sizeof(keys), "{\"ci\": {\"sha256\": \"%s\"}}", upper);
	cfg = expect_valid(keys, one_route);
	digest_of("ci-secret", ci);
	ck_assert_mem_eq(cfg->gateway_keys->keys[0].digest, ci, TG_KEY_DIGEST_LEN);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(route_auth_resolves_names)
{
	struct tg_config *cfg = expect_valid(
		"{\"a\": {\"key\": \"secret-a\"}, \"b\": {\"key\": \"secret-b\"}}",
		"[{\"name\": \"only-b\", \"backends\": [\"b\"], \"auth\": {\"keys\": [\"b\"]}},"
		" {\"name\": \"open\", \"backends\": [\"b\"], \"auth\": {\"required\": false}},"
		" {\"name\": \"any\", \"backends\": [\"b\"], \"auth\": {}}]");
	const struct tg_route_auth *only_b = cfg->routes[0].auth;

	ck_assert_int_eq(only_b->required, 1);
	ck_assert_uint_eq(only_b->n_allowed, 1);
	ck_assert_ptr_eq(only_b->allowed[0], &cfg->gateway_keys->keys[1]);
	ck_assert_int_eq(cfg->routes[1].auth->required, 0);
	ck_assert_int_eq(cfg->routes[2].auth->required, 1);
	ck_assert_uint_eq(cfg->routes[2].auth->n_allowed, 0);
	ck_assert_int_eq(cfg->gateway_keys->any_open_route, 1);
	tg_config_unref(cfg);
}
END_TEST

/* Every mistake in one run, naming the value at fault and what is valid,
 * and never a secret: not the literal ones, not the expanded one. */
START_TEST(key_errors_in_one_run)
{
	setenv("TG_CHECK_AUTH_TWIN", "twin-secret", 1);
	expect_errors(
		"{\"both\": {\"key\": \"both-secret\", \"sha256\": \"" CI_DIGEST "\"},"
		" \"neither\": {},"
		" \"short\": {\"sha256\": \"abc\"},"
		" \"not-hex\": {\"sha256\": \"" NOT_HEX "\"},"
		" \"unset\": {\"key\": \"${TG_CHECK_AUTH_UNSET}\"},"
		" \"twin\": {\"key\": \"twin-secret\"},"
		" \"twin-2\": {\"key\": \"${TG_CHECK_AUTH_TWIN}\"},"
		" \"bad name\": {\"key\": \"x-secret\"},"
		" \"extra\": {\"key\": \"extra-secret\", \"hash\": 1},"
		" \"none\": {\"key\": \"none-secret\"},"
		" \"number\": 5}",
		one_route,
		"T: gateway_keys.both: give the secret once: either \"key\" (such as "
		"\"${TEAM_KEY}\") or \"sha256\" (its hex SHA-256)\n"
		"T: gateway_keys.neither: give the secret once: either \"key\" (such as "
		"\"${TEAM_KEY}\") or \"sha256\" (its hex SHA-256)\n"
		"T: gateway_keys.short.sha256: invalid digest \"abc\"; expected 64 hexadecimal "
		"digits, as sha256sum prints them\n"
		"T: gateway_keys.not-hex.sha256: invalid digest \"" NOT_HEX "\"; expected 64 "
		"hexadecimal digits, as sha256sum prints them\n"
		"T: gateway_keys.unset.key: environment variable TG_CHECK_AUTH_UNSET is not set\n"
		"T: gateway_keys.twin-2: has the same secret as gateway_keys.twin; each key needs "
		"a secret of its own, so that callers can be told apart\n"
		"T: gateway_keys: invalid key name \"bad name\"; use 1 to 64 letters, digits, "
		"\"_\", \"-\" or \".\"\n"
		"T: gateway_keys.extra: unknown key \"hash\"; valid keys: key, sha256, limits\n"
		"T: gateway_keys.none: reserved name \"none\": the metrics label requests without "
		"a gateway key as key=\"none\", and the series of this name would merge with "
		"theirs; choose another name\n"
		"T: gateway_keys.number: expected an object with \"key\" or \"sha256\", got an "
		"integer\n");
	unsetenv("TG_CHECK_AUTH_TWIN");
}
END_TEST

/* Limits per key: either kind or both, and neither without "limits". */
START_TEST(key_limits_parsed)
{
	struct tg_config *cfg = expect_valid(
		"{\"both\": {\"key\": \"both-secret\", \"limits\": "
		"{\"requests_per_minute\": 3, \"tokens_per_minute\": 1000000000}},"
		" \"requests\": {\"key\": \"requests-secret\", \"limits\": {\"requests_per_minute\": 1}},"
		" \"tokens\": {\"key\": \"tokens-secret\", \"limits\": {\"tokens_per_minute\": 500}},"
		" \"unlimited\": {\"key\": \"unlimited-secret\"}}", one_route);
	const struct tg_gateway_key *k = cfg->gateway_keys->keys;

	ck_assert_uint_eq(k[0].limits.requests_per_minute, 3);
	ck_assert_uint_eq(k[0].limits.tokens_per_minute, 1000000000);
	ck_assert_uint_eq(k[1].limits.requests_per_minute, 1);
	ck_assert_uint_eq(k[1].limits.tokens_per_minute, 0);
	ck_assert_uint_eq(k[2].limits.requests_per_minute, 0);
	ck_assert_uint_eq(k[2].limits.tokens_per_minute, 500);
	ck_assert_uint_eq(k[3].limits.requests_per_minute, 0);
	ck_assert_uint_eq(k[3].limits.tokens_per_minute, 0);
	ck_assert_ptr_null(k[0].limiter);
	tg_config_unref(cfg);
}
END_TEST

/* Every invalid limit in one run, with the value and the valid range. */
START_TEST(key_limit_errors_in_one_run)
{
	expect_errors(
		"{\"zero\": {\"key\": \"zero-secret\", \"limits\": {\"requests_per_minute\": 0}},"
		" \"negative\": {\"key\": \"negative-secret\", \"limits\": {\"tokens_per_minute\": -5}},"
		" \"huge\": {\"key\": \"huge-secret\", \"limits\": {\"tokens_per_minute\": 1000000001}},"
		" \"fraction\": {\"key\": \"fraction-secret\", \"limits\": {\"requests_per_minute\": 2.5}},"
		" \"text\": {\"key\": \"text-secret\", \"limits\": {\"requests_per_minute\": \"3\"}},"
		" \"empty\": {\"key\": \"empty-secret\", \"limits\": {}},"
		" \"typo\": {\"key\": \"typo-secret\", \"limits\": {\"requests_per_min\": 3}},"
		" \"number\": {\"key\": \"number-secret\", \"limits\": 60}}",
		one_route,
		"T: gateway_keys.zero.limits.requests_per_minute: 0 is out of range; valid values "
		"are 1 to 1000000000\n"
		"T: gateway_keys.negative.limits.tokens_per_minute: -5 is out of range; valid "
		"values are 1 to 1000000000\n"
		"T: gateway_keys.huge.limits.tokens_per_minute: 1000000001 is out of range; valid "
		"values are 1 to 1000000000\n"
		"T: gateway_keys.fraction.limits.requests_per_minute: invalid value 2.5; expected "
		"an integer from 1 to 1000000000, written without a fraction or an exponent\n"
		"T: gateway_keys.text.limits.requests_per_minute: invalid value \"3\" (a string); "
		"expected an integer from 1 to 1000000000, written without quotes\n"
		"T: gateway_keys.empty.limits: sets no limit; give \"requests_per_minute\", "
		"\"tokens_per_minute\" or both, or remove \"limits\"\n"
		"T: gateway_keys.typo.limits: unknown key \"requests_per_min\"; valid keys: "
		"requests_per_minute, tokens_per_minute\n"
		"T: gateway_keys.number.limits: expected an object with \"requests_per_minute\", "
		"\"tokens_per_minute\" or both, got an integer\n");
}
END_TEST

START_TEST(empty_keys_rejected)
{
	expect_errors("{}", one_route,
	              "T: gateway_keys: expected a non-empty object of named keys, got an empty "
	              "object\n");
	expect_errors("[]", one_route,
	              "T: gateway_keys: expected a non-empty object of named keys, got an empty "
	              "array\n");
}
END_TEST

START_TEST(route_auth_errors)
{
	expect_errors(
		"{\"a\": {\"key\": \"secret-a\"}}",
		"[{\"name\": \"r\", \"backends\": [\"b\"], \"auth\": {\"keys\": [\"ab\", 3]}},"
		" {\"name\": \"s\", \"backends\": [\"b\"], \"auth\": {\"required\": false, \"keys\": [\"a\"]}},"
		" {\"name\": \"t\", \"backends\": [\"b\"], \"auth\": {\"keys\": []}},"
		" {\"name\": \"u\", \"backends\": [\"b\"], \"auth\": true},"
		" {\"name\": \"v\", \"backends\": [\"b\"], \"auth\": {\"required\": \"no\", \"keys\": [\"a\"]}}]",
		"T: routes[0].auth.keys[0]: unknown gateway key \"ab\"; it must be a name in gateway_keys\n"
		"T: routes[0].auth.keys[1]: expected the name of a gateway key, got an integer\n"
		"T: routes[1].auth.keys: has no effect when \"required\" is false, since anyone "
		"may use the route; remove one of the two\n"
		"T: routes[2].auth.keys: expected a non-empty array of gateway_keys names, got an "
		"empty array\n"
		"T: routes[3].auth: expected an object, got a boolean\n"
		"T: routes[4].auth.required: expected true or false, got a string\n");
}
END_TEST

START_TEST(route_auth_needs_keys)
{
	struct tg_config *cfg;
	char *out = load_json("{" BACKEND ", \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"],"
	                      " \"auth\": {\"required\": false}}]}", &cfg);

	ck_assert_str_eq(out, "T: routes[0].auth: has no effect without \"gateway_keys\"; "
	                 "define the keys at the top level or remove this key\n");
	ck_assert_ptr_null(cfg);
	free(out);
}
END_TEST

/* --- callers -------------------------------------------------------------- */

static struct tg_config *
two_keys(void)
{
	return expect_valid(
		"{\"team\": {\"key\": \"team-secret\"}, \"ci\": {\"sha256\": \"" CI_DIGEST "\"}}",
		"[{\"name\": \"any\", \"backends\": [\"b\"]},"
		" {\"name\": \"ci-only\", \"backends\": [\"b\"], \"auth\": {\"keys\": [\"ci\"]}},"
		" {\"name\": \"open\", \"backends\": [\"b\"], \"auth\": {\"required\": false}}]");
}

/* Identify a caller who sends the header name: value (name NULL: none). */
static enum tg_auth_result
identify(const struct tg_config *cfg, const char *name, const char *value,
         const struct tg_gateway_key **key)
{
	struct tg_headers h;
	enum tg_auth_result result;

	tg_headers_init(&h);
	if (name != NULL)
		ck_assert_int_eq(tg_headers_add(&h, name, strlen(name), value, strlen(value)), 0);
	result = tg_auth_identify(cfg->gateway_keys, &h, key);
	tg_headers_free(&h);
	return result;
}

static const struct {
	const char *name, *value;
	enum tg_auth_result result;
	const char *key;        /* its name, for TG_AUTH_KEY */
} callers[] = {
	{NULL, NULL, TG_AUTH_ANONYMOUS, NULL},
	{"Authorization", "Bearer team-secret", TG_AUTH_KEY, "team"},
	{"authorization", "bearer   ci-secret", TG_AUTH_KEY, "ci"},
	{"x-api-key", "team-secret", TG_AUTH_KEY, "team"},
	{"Api-Key", "ci-secret", TG_AUTH_KEY, "ci"},
	{"Authorization", "Bearer team-secret2", TG_AUTH_UNKNOWN, NULL},
	{"Authorization", "Basic team-secret", TG_AUTH_UNKNOWN, NULL},
	{"Authorization", "Bearerteam-secret", TG_AUTH_UNKNOWN, NULL},
	{"Authorization", "Bearer ", TG_AUTH_ANONYMOUS, NULL},
	{"Authorization", "bearer", TG_AUTH_ANONYMOUS, NULL},
	{"Authorization", "", TG_AUTH_ANONYMOUS, NULL},
	{"Authorization", "team-secret", TG_AUTH_UNKNOWN, NULL},
	{"Authorization", "Basic", TG_AUTH_UNKNOWN, NULL},
	{"x-api-key", "", TG_AUTH_ANONYMOUS, NULL},
	{"api-key", "", TG_AUTH_ANONYMOUS, NULL},
	{"api-key", "Bearer team-secret", TG_AUTH_UNKNOWN, NULL},
	{"X-Other", "team-secret", TG_AUTH_ANONYMOUS, NULL},
};

START_TEST(identify_callers)
{
	struct tg_config *cfg = two_keys();
	const struct tg_gateway_key *key = (const void *)1;

	ck_assert_int_eq(identify(cfg, callers[_i].name, callers[_i].value, &key),
	                 callers[_i].result);
	if (callers[_i].key != NULL)
		ck_assert_str_eq(key->name, callers[_i].key);
	else
		ck_assert_ptr_null(key);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(routes_check_the_key)
{
	struct tg_config *cfg = two_keys();
	const struct tg_route *any = &cfg->routes[0], *ci_only = &cfg->routes[1];
	const struct tg_route *open = &cfg->routes[2];
	const struct tg_gateway_key *team = &cfg->gateway_keys->keys[0];
	const struct tg_gateway_key *ci = &cfg->gateway_keys->keys[1];

	ck_assert_int_eq(tg_auth_check_route(any, NULL), TG_E_MISSING_API_KEY);
	ck_assert_int_eq(tg_auth_check_route(any, team), TG_OK);
	ck_assert_int_eq(tg_auth_check_route(ci_only, NULL), TG_E_MISSING_API_KEY);
	ck_assert_int_eq(tg_auth_check_route(ci_only, team), TG_E_KEY_NOT_ALLOWED);
	ck_assert_int_eq(tg_auth_check_route(ci_only, ci), TG_OK);
	ck_assert_int_eq(tg_auth_check_route(open, NULL), TG_OK);
	ck_assert_int_eq(tg_auth_check_route(open, team), TG_OK);
	tg_config_unref(cfg);
}
END_TEST

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *config = tcase_create("config");
	TCase *requests = tcase_create("callers");

	tcase_add_test(config, no_keys_by_default);
	tcase_add_test(config, keys_from_environment_and_digest);
	tcase_add_test(config, digest_in_upper_case);
	tcase_add_test(config, route_auth_resolves_names);
	tcase_add_test(config, key_errors_in_one_run);
	tcase_add_test(config, key_limits_parsed);
	tcase_add_test(config, key_limit_errors_in_one_run);
	tcase_add_test(config, empty_keys_rejected);
	tcase_add_test(config, route_auth_errors);
	tcase_add_test(config, route_auth_needs_keys);
	tcase_add_loop_test(requests, identify_callers, 0, sizeof(callers) / sizeof(callers[0]));
	tcase_add_test(requests, routes_check_the_key);
	suite_add_tcase(s, config);
	suite_add_tcase(s, requests);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
