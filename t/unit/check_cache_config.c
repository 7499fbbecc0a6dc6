/*
 * Unit tests of the cache config sections (src/cache-config.c): defaults,
 * the Redis URL, route settings, and the error messages, which must never
 * show a password.
 *
 * Configs are written to a temporary file, shown as "T" in the output.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* By path, because the build directory's autoconf config.h comes first on the
 * include path and has the same name. */
#include "../../src/config.h"
#include "cache-memory.h"
#include "cache-t.h"

#define BACKEND "\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9001\"}}"

/* Load json from a temporary file; return the error output with the file
 * name shown as "T", and the config (NULL on errors) in *cfg. */
static char *
load_json(const char *json, struct tg_config **cfg)
{
	char path[] = "/tmp/tg-check-cache-config-XXXXXX";
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

	/* Show the path as "T". */
	for (char *p; (p = strstr(out, path)) != NULL;) {
		*p = 'T';
		memmove(p + 1, p + strlen(path), strlen(p + strlen(path)) + 1);
	}
	return out;
}

static struct tg_config *
expect_valid(const char *json)
{
	struct tg_config *cfg;
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);
	free(out);
	return cfg;
}

static void
expect_errors(const char *json, const char *expected)
{
	struct tg_config *cfg;
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, expected);
	ck_assert_ptr_null(cfg);
	free(out);
}

/* A config with one route whose "cache" is route_cache, and the top-level
 * cache section given (or "" for none). */
static char *
config_with(const char *route_cache, const char *cache_section)
{
	char *json;

	ck_assert_int_ge(asprintf(&json, "{" BACKEND ", \"routes\": [{\"name\": \"r\", "
	                          "\"backends\": [\"b\"]%s%s}]%s%s}",
	                          route_cache[0] != '\0' ? ", \"cache\": " : "", route_cache,
	                          cache_section[0] != '\0' ? ", \"cache\": " : "", cache_section), 0);
	return json;
}

START_TEST(defaults_are_the_memory_store)
{
	char *json = config_with("true", "");
	struct tg_config *cfg = expect_valid(json);

	ck_assert_ptr_nonnull(cfg->cache);
	ck_assert_int_eq(cfg->cache->store, TG_CACHE_STORE_MEMORY);
	ck_assert_uint_eq(cfg->cache->max_bytes, 256u << 20);
	ck_assert_uint_eq(cfg->cache->ttl, 60 * 60 * 1000);
	ck_assert_uint_eq(cfg->cache->timeout, 50);
	ck_assert_uint_eq(cfg->cache->connect_timeout, 1000);
	ck_assert_uint_eq(cfg->cache->max_entry_bytes, 4u << 20);
	ck_assert_ptr_null(cfg->cache->tenant_header);
	ck_assert_uint_eq(cfg->cache->n_ignore_fields, 0);
	ck_assert_ptr_nonnull(cfg->cache->memory);
	ck_assert_uint_eq(tg_cache_memory_max_bytes(cfg->cache->memory), 256u << 20);
	ck_assert_ptr_nonnull(cfg->routes[0].cache);
	ck_assert_uint_eq(cfg->routes[0].cache->ttl, 0);
	tg_config_unref(cfg);
	free(json);
}
END_TEST

/* The key reads the body's text (cache-key.h), so a caching route leaves
 * the dispatch to scan bodies instead of building their jansson tree. */
START_TEST(caching_routes_read_no_tree)
{
	char *json = config_with("true", "");
	struct tg_config *cfg = expect_valid(json);

	ck_assert_int_eq(cfg->routes_read_request_tree, 0);
	tg_config_unref(cfg);
	free(json);
}
END_TEST

START_TEST(no_store_without_caching_routes)
{
	char *json = config_with("", "{\"max_bytes\": \"1MiB\"}");
	struct tg_config *cfg = expect_valid(json);

	ck_assert_ptr_null(cfg->routes[0].cache);
	ck_assert_ptr_nonnull(cfg->cache);
	ck_assert_ptr_null(cfg->cache->memory);
	tg_config_unref(cfg);
	free(json);

	json = config_with("false", "");
	cfg = expect_valid(json);
	ck_assert_ptr_null(cfg->routes[0].cache);
	ck_assert_ptr_null(cfg->cache->memory);
	tg_config_unref(cfg);
	free(json);
}
END_TEST

START_TEST(route_overrides_ttl)
{
	char *json = config_with("{\"ttl\": \"10m\"}", "{\"ttl\": \"2h\"}");
	struct tg_config *cfg = expect_valid(json);

	ck_assert_uint_eq(cfg->routes[0].cache->ttl, 10 * 60 * 1000);
	ck_assert_uint_eq(cfg->cache->ttl, 2 * 60 * 60 * 1000);
	tg_config_unref(cfg);
	free(json);
}
END_TEST

START_TEST(redis_url_parts)
{
	char *json = config_with("true", "{\"store\": \"redis\", "
	                         "\"redis\": \"redis://:s3cret@127.0.0.1:6380/2\", "
	                         "\"timeout\": \"20ms\", \"connect_timeout\": \"300ms\", "
	                         "\"max_entry_bytes\": \"512KiB\"}");
	struct tg_config *cfg = expect_valid(json);
	const struct tg_cache_config *c = cfg->cache;

	ck_assert_int_eq(c->store, TG_CACHE_STORE_REDIS);
	ck_assert_str_eq(c->redis_host, "127.0.0.1");
	ck_assert_int_eq(c->redis_port, 6380);
	ck_assert_int_eq(c->redis_db, 2);
	ck_assert_ptr_null(c->redis_user);
	ck_assert_str_eq(c->redis_password, "s3cret");
	ck_assert_str_eq(c->redis_url, "redis://127.0.0.1:6380/2");
	ck_assert_uint_eq(c->timeout, 20);
	ck_assert_uint_eq(c->connect_timeout, 300);
	ck_assert_uint_eq(c->max_entry_bytes, 512u << 10);
	ck_assert_ptr_null(c->memory);
	tg_config_unref(cfg);
	free(json);
}
END_TEST

START_TEST(redis_url_user_and_ipv6)
{
	char *json = config_with("true", "{\"store\": \"redis\", "
	                         "\"redis\": \"redis://app:p%40ss@[::1]\"}");
	struct tg_config *cfg = expect_valid(json);
	const struct tg_cache_config *c = cfg->cache;

	ck_assert_str_eq(c->redis_host, "::1");
	ck_assert_int_eq(c->redis_port, 6379);
	ck_assert_int_eq(c->redis_db, 0);
	ck_assert_str_eq(c->redis_user, "app");
	ck_assert_str_eq(c->redis_password, "p@ss");
	ck_assert_str_eq(c->redis_url, "redis://[::1]:6379/0");
	tg_config_unref(cfg);
	free(json);
}
END_TEST

START_TEST(key_settings)
{
	char *json = config_with("true", "{\"tenant_header\": \"X-Tenant-Id\", "
	                         "\"ignore_fields\": [\"metadata\", \"store\"]}");
	struct tg_config *cfg = expect_valid(json);

	ck_assert_str_eq(cfg->cache->tenant_header, "X-Tenant-Id");
	ck_assert_uint_eq(cfg->cache->n_ignore_fields, 2);
	ck_assert_str_eq(cfg->cache->ignore_fields[0], "metadata");
	ck_assert_str_eq(cfg->cache->ignore_fields[1], "store");
	tg_config_unref(cfg);
	free(json);
}
END_TEST

static const struct error_case {
	const char *route_cache;
	const char *cache_section;
	const char *expected;
} error_cases[] = {
	{ "true", "{\"store\": \"disk\"}",
	  "T: cache.store: unknown store \"disk\"; use \"memory\" or \"redis\"\n" },
	{ "true", "{\"store\": \"redis\"}",
	  "T: cache: store \"redis\" needs \"redis\": \"redis://HOST:PORT/DB\"\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://h\", \"max_bytes\": \"1MiB\"}",
	  "T: cache.max_bytes: applies to the memory store only; Redis bounds its memory "
	  "with its own maxmemory\n" },
	{ "true", "{\"timeout\": \"10ms\", \"redis\": \"redis://h\"}",
	  "T: cache.redis: applies to the redis store only; set \"store\": \"redis\" or remove it\n"
	  "T: cache.timeout: applies to the redis store only; set \"store\": \"redis\" or remove it\n" },
	{ "true", "{\"max_entry_bytes\": \"1MiB\"}",
	  "T: cache.max_entry_bytes: applies to the redis store only; set \"store\": \"redis\" "
	  "or remove it\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://h\", \"max_entry_bytes\": \"1GiB\"}",
	  "T: cache.max_entry_bytes: \"1GiB\" is out of range; valid values are 1KiB to 512MiB\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://h\", \"max_entry_bytes\": 100}",
	  "T: cache.max_entry_bytes: 100 is out of range; valid values are 1KiB to 512MiB\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"http://h:6379\"}",
	  "T: cache.redis: invalid Redis URL \"http://h:6379\"; expected "
	  "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://h:0\"}",
	  "T: cache.redis: the URL \"redis://h:0\" has port 0; write a port from 1 to 65535, "
	  "or no \":\" for the default, 6379\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://:hunter2@h:/1\"}",
	  "T: cache.redis: the URL \"redis://***@h:/1\" has an empty port; write a port from "
	  "1 to 65535, or no \":\" for the default, 6379\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://h/db1\"}",
	  "T: cache.redis: invalid database in \"redis://h/db1\"; the path is a number from 0 "
	  "to 65535, as in redis://127.0.0.1:6379/0\n" },
	/* The password never appears, not even in a message about another part. */
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://:hunter2@h/x\"}",
	  "T: cache.redis: invalid database in \"redis://***@h/x\"; the path is a number "
	  "from 0 to 65535, as in redis://127.0.0.1:6379/0\n" },
	/* libevent rejects these without saying why: the message names the
	 * part at fault and quotes none of it. */
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://:%zzhunter2@h\"}",
	  "T: cache.redis: invalid Redis URL \"redis://***@h\": the password has a \"%\" "
	  "that two hexadecimal digits do not follow; write a \"%\" itself as %25\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://app:hunter2%4@h\"}",
	  "T: cache.redis: invalid Redis URL \"redis://***@h\": the password has a \"%\" "
	  "that two hexadecimal digits do not follow; write a \"%\" itself as %25\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://a%g0:hunter2@h\"}",
	  "T: cache.redis: invalid Redis URL \"redis://***@h\": the user has a \"%\" "
	  "that two hexadecimal digits do not follow; write a \"%\" itself as %25\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://:hun@ter2@h:6379/0\"}",
	  "T: cache.redis: invalid Redis URL \"redis://***@h:6379/0\": the password has a "
	  "character that a URL does not allow there, such as \"@\", \"/\", \"?\", \"#\" "
	  "or a space; percent-encode it, as %40 for \"@\"\n" },
	{ "true", "{\"store\": \"redis\", \"redis\": \"redis://:hunter2@h st\"}",
	  "T: cache.redis: invalid Redis URL \"redis://***@h st\"; expected "
	  "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n" },
	{ "true", "{\"tenant_header\": \"X Tenant\"}",
	  "T: cache.tenant_header: invalid header name \"X Tenant\"; use letters, digits and "
	  "!#$%&'*+-.^_`|~, as in \"X-Tenant-Id\"\n" },
	{ "true", "{\"ignore_fields\": [\"\", 1]}",
	  "T: cache.ignore_fields[0]: empty field name; name a top-level request field such "
	  "as \"metadata\"\n"
	  "T: cache.ignore_fields[1]: expected a field name, got an integer\n" },
	{ "true", "{\"ignore_fields\": \"metadata\"}",
	  "T: cache.ignore_fields: expected an array of request field names, got a string\n" },
	{ "\"yes\"", "",
	  "T: routes[0].cache: expected true, false or an object such as {\"ttl\": \"10m\"}, "
	  "got a string\n" },
	{ "{\"ttl\": \"5m\", \"store\": \"redis\"}", "",
	  "T: routes[0].cache: unknown key \"store\"; valid keys: ttl\n" },
};

START_TEST(errors_name_key_and_fix)
{
	const struct error_case *c = &error_cases[_i];
	char *json = config_with(c->route_cache, c->cache_section);

	expect_errors(json, c->expected);
	free(json);
}
END_TEST

/* The credentials are judged as expanded, not as written with ${VARS}. */
START_TEST(redis_credentials_from_the_environment)
{
	char *json;

	setenv("TG_TEST_REDIS_PASSWORD", "hunter%2", 1);
	json = config_with("true", "{\"store\": \"redis\", "
	                   "\"redis\": \"redis://:${TG_TEST_REDIS_PASSWORD}@h\"}");
	expect_errors(json, "T: cache.redis: invalid Redis URL \"redis://***@h\": the password "
	              "has a \"%\" that two hexadecimal digits do not follow; write a \"%\" "
	              "itself as %25\n");
	free(json);

	setenv("TG_TEST_REDIS_PASSWORD", "hunter2", 1);
	json = config_with("true", "{\"store\": \"redis\", "
	                   "\"redis\": \"redis://:${TG_TEST_REDIS_PASSWORD}@h st\"}");
	expect_errors(json, "T: cache.redis: invalid Redis URL \"redis://***@h st\"; expected "
	              "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n");
	free(json);
	unsetenv("TG_TEST_REDIS_PASSWORD");
}
END_TEST

START_TEST(bounds_come_from_the_table)
{
	struct tg_config *cfg;
	char *json = config_with("{\"ttl\": \"0s\"}", "{\"max_bytes\": \"1KiB\"}");
	char *out = load_json(json, &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(strstr(out, "T: routes[0].cache.ttl: "));
	ck_assert_ptr_nonnull(strstr(out, "T: cache.max_bytes: "));
	free(out);
	free(json);
}
END_TEST

static Suite *
cache_config_suite(void)
{
	Suite *s = suite_create("cache-config");
	TCase *valid = tcase_create("valid");
	TCase *invalid = tcase_create("invalid");

	tcase_add_test(valid, defaults_are_the_memory_store);
	tcase_add_test(valid, caching_routes_read_no_tree);
	tcase_add_test(valid, no_store_without_caching_routes);
	tcase_add_test(valid, route_overrides_ttl);
	tcase_add_test(valid, redis_url_parts);
	tcase_add_test(valid, redis_url_user_and_ipv6);
	tcase_add_test(valid, key_settings);
	suite_add_tcase(s, valid);

	tcase_add_test(invalid, redis_credentials_from_the_environment);
	tcase_add_loop_test(invalid, errors_name_key_and_fix, 0,
	                    sizeof(error_cases) / sizeof(error_cases[0]));
	tcase_add_test(invalid, bounds_come_from_the_table);
	suite_add_tcase(s, invalid);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(cache_config_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
