/*
 * Unit tests of the configuration loader, the duration and size parsers and
 * route matching.
 *
 * Small configs are written inline to a temporary file, so each case sits
 * next to the exact error output it must produce. That output shows the
 * temporary file as "T". Larger configs live in data/.
 */
#include <arpa/inet.h>
#include <check.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* By path, because the build directory's autoconf config.h comes first on the
 * include path and has the same name. */
#include "../../src/config.h"
#include "../../src/headers.h"
#include "../../src/log.h"
#include "../../src/route.h"

#ifndef TG_TEST_DIR
#error "TG_TEST_DIR must name the t/unit directory"
#endif

#define DATA_DIR TG_TEST_DIR "/data"

/* A listen entry with TLS; the certificate files are real and readable. */
#define TLS_FILES "\"cert\": \"" DATA_DIR "/test-cert.pem\", " \
                  "\"key\": \"" DATA_DIR "/test-key.pem\""

/* The required part of a config, to append to the keys under test. */
#define BACKEND_AND_ROUTE \
	"\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9001\"}}," \
	"\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]"

/* Replace every occurrence of from in s with to, in place; to is shorter. */
static void replace_all(char *s, const char *from, const char *to)
{
	size_t from_len = strlen(from), to_len = strlen(to);
	char *p;

	ck_assert_uint_le(to_len, from_len);
	while ((p = strstr(s, from)) != NULL) {
		memcpy(p, to, to_len);
		memmove(p + to_len, p + from_len, strlen(p + from_len) + 1);
	}
}

/* Load the file at path; return its error output with path shown as name. */
static char *load_path(const char *path, const char *name,
                       struct tg_config **cfg)
{
	char *out = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&out, &len);

	ck_assert_ptr_nonnull(err);
	*cfg = tg_config_load(path, err);
	fclose(err);

	replace_all(out, path, name);
	return out;
}

/* Write json to a temporary file and load it; see load_path(). */
static char *load_json(const char *json, struct tg_config **cfg)
{
	char path[] = "/tmp/tg-check-config-XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);

	char *out = load_path(path, "T", cfg);
	unlink(path);
	return out;
}

/* Load json, expect it to fail with exactly the given error output. */
static void expect_errors(const char *json, const char *expected)
{
	struct tg_config *cfg;
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, expected);
	ck_assert_ptr_null(cfg);
	free(out);
}

/* Load json, expect it to succeed with no output, and return it. */
static struct tg_config *expect_valid(const char *json)
{
	struct tg_config *cfg;
	char *out = load_json(json, &cfg);

	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);
	free(out);
	return cfg;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* The name of the route that cfg picks for a request of method with
 * path, model (NULL: none) and headers (NULL: none), or "(none)". */
static const char *route_for(const struct tg_config *cfg, const char *method,
                             const char *path, const char *model,
                             const struct tg_headers *headers)
{
	struct tg_headers none;
	struct tg_route_query q;
	const struct tg_route *r;

	tg_headers_init(&none);
	q = (struct tg_route_query){
		.path = path, .method = tg_route_method_id(method), .model = model,
		.headers = headers != NULL ? headers : &none,
	};
	ck_assert_int_ge(q.method, 0);
	r = tg_route_match(cfg, &q);
	tg_headers_free(&none);
	return r == NULL ? "(none)" : r->name;
}

/* route_for() a POST without headers, as most API requests are. */
static const char *match_name(const struct tg_config *cfg, const char *path,
                              const char *model)
{
	return route_for(cfg, "POST", path, model, NULL);
}

/* --- valid configs ------------------------------------------------------ */

START_TEST(default_config_loads_without_env)
{
	struct tg_config *cfg;
	char *out;

	unsetenv("PRIMARY_API_KEY");
	out = load_path(TG_TEST_DIR "/../../conf/tollgate.json", "conf", &cfg);
	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);

	ck_assert_uint_eq(cfg->n_listen, 1);
	ck_assert_str_eq(cfg->listen[0].address, "127.0.0.1:8080");
	ck_assert_str_eq(cfg->admin.address, "127.0.0.1:9090");
	ck_assert_uint_eq(cfg->n_backends, 1);
	ck_assert_str_eq(cfg->backends[0].name, "mock");
	ck_assert_str_eq(cfg->backends[0].port, "9001");
	ck_assert_int_eq(cfg->backends[0].port_number, 9001);
	ck_assert_ptr_null(cfg->backends[0].api_key);

	ck_assert_str_ne(match_name(cfg, "/v1/chat/completions", "any"), "(none)");
	ck_assert_str_ne(match_name(cfg, "/v1/completions", "any"), "(none)");
	ck_assert_str_ne(match_name(cfg, "/v1/embeddings", "any"), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v1/other", NULL), "(none)");

	tg_config_unref(cfg);
	free(out);
}
END_TEST

START_TEST(minimal_config_gets_defaults)
{
	struct tg_config *cfg;
	char *out = load_path(DATA_DIR "/minimal.json", "minimal.json", &cfg);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	/* The default is the processor count, within the 1..256 range. */
	if (cpus < 1)
		cpus = 1;
	if (cpus > 256)
		cpus = 256;

	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(cfg->path, DATA_DIR "/minimal.json");

	ck_assert_uint_eq(cfg->n_listen, 1);
	ck_assert_str_eq(cfg->listen[0].address, "127.0.0.1:8080");
	ck_assert_str_eq(cfg->listen[0].host, "127.0.0.1");
	ck_assert_str_eq(cfg->listen[0].port, "8080");
	ck_assert_ptr_null(cfg->listen[0].tls_cert);
	ck_assert_ptr_null(cfg->listen[0].tls_key);
	ck_assert_str_eq(cfg->admin.address, "127.0.0.1:9090");
	ck_assert_uint_eq(cfg->admin_max_connections, 16);
	ck_assert_uint_eq(cfg->admin_idle_timeout, 30000);
	ck_assert_int_eq(cfg->workers, cpus);
	ck_assert_uint_eq(cfg->drain_timeout, 30000);
	ck_assert_int_eq(cfg->log_level, TG_LOG_INFO);
	ck_assert_str_eq(cfg->access_log, "-");
	ck_assert_uint_eq(cfg->access_log_buffer, 64 * 1024);
	ck_assert_uint_eq(cfg->access_log_flush, 1000);

	ck_assert_uint_eq(cfg->limits.max_body, 32 * 1024 * 1024);
	ck_assert_uint_eq(cfg->limits.max_header, 64 * 1024);
	ck_assert_uint_eq(cfg->limits.max_response_body, 64 * 1024 * 1024);
	ck_assert_uint_eq(cfg->limits.client_header_timeout, 10000);
	ck_assert_uint_eq(cfg->limits.client_body_timeout, 30000);
	ck_assert_uint_eq(cfg->limits.keepalive_timeout, 75000);

	const struct tg_backend *b = &cfg->backends[0];
	ck_assert_uint_eq(b->timeouts.connect, 5000);
	ck_assert_uint_eq(b->timeouts.first_byte, 600000);
	ck_assert_uint_eq(b->timeouts.idle, 600000);
	ck_assert_uint_eq(b->max_idle, 64);
	ck_assert_uint_eq(b->idle_keepalive, 60000);
	ck_assert_int_eq(b->tls_config.verify, 1);
	ck_assert_ptr_null(b->tls_config.ca_file);
	ck_assert_ptr_null(b->api_key);
	ck_assert_int_eq(b->api_key_header, TG_KEY_AUTHORIZATION);
	ck_assert_uint_eq(b->health->max_cooldown, 60000);

	const struct tg_route *r = &cfg->routes[0];
	ck_assert_str_eq(r->name, "all");
	ck_assert_ptr_null(r->match_path);
	ck_assert_ptr_null(r->match_model);
	ck_assert_uint_eq(r->n_backends, 1);
	ck_assert_ptr_eq(r->backends[0], b);

	tg_config_unref(cfg);
	free(out);
}
END_TEST

START_TEST(full_config_values)
{
	struct tg_config *cfg;
	char *out;

	setenv("TG_TEST_DATA", DATA_DIR, 1);
	setenv("TG_TEST_PRIMARY_KEY", "sk-primary", 1);
	out = load_path(DATA_DIR "/full.json", "full.json", &cfg);
	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(cfg);

	ck_assert_uint_eq(cfg->n_listen, 3);
	ck_assert_str_eq(cfg->listen[1].address, "[::1]:8081");
	ck_assert_str_eq(cfg->listen[1].host, "::1");
	ck_assert_str_eq(cfg->listen[1].port, "8081");
	ck_assert_str_eq(cfg->listen[2].host, "0.0.0.0");
	ck_assert_str_eq(cfg->listen[2].tls_cert, DATA_DIR "/test-cert.pem");
	ck_assert_str_eq(cfg->listen[2].tls_key, DATA_DIR "/test-key.pem");
	ck_assert_ptr_null(cfg->listen[0].tls_ctx);
	ck_assert_ptr_nonnull(cfg->listen[2].tls_ctx);
	ck_assert_str_eq(cfg->admin.address, "127.0.0.1:9191");
	ck_assert_int_eq(cfg->workers, 4);
	ck_assert_uint_eq(cfg->drain_timeout, 120000);
	ck_assert_str_eq(cfg->access_log, "/var/log/tollgate/access.log");
	ck_assert_uint_eq(cfg->access_log_buffer, 8 * 1024);
	ck_assert_uint_eq(cfg->access_log_flush, 250);

	ck_assert_uint_eq(cfg->limits.max_body, 1024 * 1024);
	ck_assert_uint_eq(cfg->limits.max_header, 16000);
	ck_assert_uint_eq(cfg->limits.max_response_body, 2048);
	ck_assert_uint_eq(cfg->limits.client_header_timeout, 500);
	ck_assert_uint_eq(cfg->limits.client_body_timeout, 60000);
	ck_assert_uint_eq(cfg->limits.keepalive_timeout, 3600000);

	const struct tg_backend *p = tg_config_backend(cfg, "primary");
	ck_assert_ptr_eq(p, &cfg->backends[0]);
	ck_assert_str_eq(p->url, "https://127.0.0.1:9001/openai/");
	ck_assert_int_eq(p->tls, 1);
	ck_assert_str_eq(p->host, "127.0.0.1");
	ck_assert_str_eq(p->port, "9001");
	ck_assert_str_eq(p->host_header, "127.0.0.1:9001");
	ck_assert_str_eq(p->base_path, "/openai");
	ck_assert_str_eq(p->api_key, "sk-primary");
	ck_assert_str_eq(p->tls_config.ca_file, DATA_DIR "/test-cert.pem");
	ck_assert_int_eq(p->tls_config.verify, 0);
	ck_assert_ptr_nonnull(p->tls_ctx);   /* https, so loaded with the config */
	ck_assert_uint_eq(p->timeouts.connect, 2000);
	ck_assert_uint_eq(p->timeouts.first_byte, 90000);
	ck_assert_uint_eq(p->timeouts.idle, 15000);
	ck_assert_uint_eq(p->max_idle, 8);
	ck_assert_uint_eq(p->idle_keepalive, 300000);

	const struct tg_backend *s = tg_config_backend(cfg, "secondary");
	ck_assert_ptr_eq(s, &cfg->backends[1]);
	ck_assert_int_eq(s->tls, 1);
	ck_assert_str_eq(s->host, "api.example.test");
	ck_assert_str_eq(s->port, "443");
	ck_assert_str_eq(s->host_header, "api.example.test");
	ck_assert_str_eq(s->base_path, "");
	ck_assert_int_eq(s->tls_config.verify, 1);
	ck_assert_ptr_nonnull(s->tls_ctx);

	const struct tg_backend *v6 = tg_config_backend(cfg, "v6");
	ck_assert_str_eq(v6->host, "::1");
	ck_assert_str_eq(v6->host_header, "[::1]:9002");
	ck_assert_ptr_null(tg_config_backend(cfg, "missing"));

	ck_assert_uint_eq(cfg->n_routes, 4);
	ck_assert_str_eq(cfg->routes[0].match_model, "gpt-*");
	ck_assert_uint_eq(cfg->routes[0].n_backends, 2);
	ck_assert_ptr_eq(cfg->routes[0].backends[0], p);
	ck_assert_ptr_eq(cfg->routes[0].backends[1], s);

	tg_config_unref(cfg);
	free(out);
}
END_TEST

static const struct url_case {
	const char *url;
	int tls;
	const char *host, *port, *host_header, *base_path;
} url_cases[] = {
	{ "http://h", 0, "h", "80", "h", "" },
	{ "http://h:80", 0, "h", "80", "h", "" },
	{ "http://h:8080", 0, "h", "8080", "h:8080", "" },
	{ "https://h", 1, "h", "443", "h", "" },
	{ "HTTPS://h:443/", 1, "h", "443", "h", "" },
	{ "https://h:8443/openai", 1, "h", "8443", "h:8443", "/openai" },
	{ "http://h/a/b//", 0, "h", "80", "h", "/a/b" },
	{ "http://[::1]", 0, "::1", "80", "[::1]", "" },
	{ "https://[2001:db8::1]:8443/p", 1, "2001:db8::1", "8443", "[2001:db8::1]:8443", "/p" },
};

START_TEST(backend_url_split)
{
	const struct url_case *c = &url_cases[_i];
	char json[512];

	snprintf(json, sizeof(json),
	         "{\"backends\": {\"b\": {\"url\": \"%s\"}},"
	         "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}", c->url);
	struct tg_config *cfg = expect_valid(json);
	const struct tg_backend *b = &cfg->backends[0];

	ck_assert_str_eq(b->url, c->url);
	ck_assert_int_eq(b->tls, c->tls);
	ck_assert_str_eq(b->host, c->host);
	ck_assert_str_eq(b->port, c->port);
	ck_assert_str_eq(b->host_header, c->host_header);
	ck_assert_str_eq(b->base_path, c->base_path);
	tg_config_unref(cfg);
}
END_TEST

/* Hosts that are numeric addresses get their socket address at load. Names
 * get none (family 0), and so does "127.1", which the resolver does not
 * take as numeric either. */
static const struct address_case {
	const char *url;
	int family;
	const char *address;
	int port;
} address_cases[] = {
	{ "http://127.0.0.1:9001", AF_INET, "127.0.0.1", 9001 },
	{ "https://10.1.2.3/openai", AF_INET, "10.1.2.3", 443 },
	{ "http://[::1]:8080", AF_INET6, "::1", 8080 },
	{ "http://[2001:db8::1]", AF_INET6, "2001:db8::1", 80 },
	{ "http://[::ffff:127.0.0.1]:81", AF_INET6, "::ffff:127.0.0.1", 81 },
	{ "http://localhost:9001", 0, NULL, 0 },
	{ "https://api.example.test", 0, NULL, 0 },
	{ "http://127.1", 0, NULL, 0 },
};

/* Format the address and port of b's socket address as "ADDRESS PORT". */
static void format_address(const struct tg_backend *b, char *buf, size_t size)
{
	char text[INET6_ADDRSTRLEN];
	const struct sockaddr_in *in = (const struct sockaddr_in *)&b->addr;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&b->addr;

	if (b->addr.ss_family == AF_INET6) {
		ck_assert_int_eq(b->addr_len, (int)sizeof(*in6));
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
		snprintf(buf, size, "%s %d", text, ntohs(in6->sin6_port));
	} else {
		ck_assert_int_eq(b->addr_len, (int)sizeof(*in));
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
		snprintf(buf, size, "%s %d", text, ntohs(in->sin_port));
	}
}

START_TEST(backend_numeric_address)
{
	const struct address_case *c = &address_cases[_i];
	char json[512], got[128], want[128];

	snprintf(json, sizeof(json),
	         "{\"backends\": {\"b\": {\"url\": \"%s\"}},"
	         "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}", c->url);
	struct tg_config *cfg = expect_valid(json);
	const struct tg_backend *b = &cfg->backends[0];

	ck_assert_int_eq(b->addr.ss_family, c->family);
	if (c->family == 0) {
		ck_assert_int_eq(b->addr_len, 0);
	} else {
		format_address(b, got, sizeof(got));
		snprintf(want, sizeof(want), "%s %d", c->address, c->port);
		ck_assert_str_eq(got, want);
	}
	tg_config_unref(cfg);
}
END_TEST

START_TEST(env_expansion)
{
	setenv("TG_TEST_KEY", "sk-123", 1);
	setenv("TG_TEST_HOST", "127.0.0.2", 1);
	setenv("TG_TEST_EMPTY", "", 1);
	setenv("TG_TEST_NESTED", "${TG_TEST_KEY}", 1);

	struct tg_config *cfg = expect_valid(
		"{\"access_log\": \"/logs/$${HOME}/$HOME/$$/${TG_TEST_EMPTY}a.log\","
		" \"admin\": \"${TG_TEST_HOST}:9${TG_TEST_EMPTY}090\","
		" \"backends\": {"
		"   \"b\": {\"url\": \"http://${TG_TEST_HOST}:9001\","
		"          \"api_key\": \"Bearer-${TG_TEST_KEY}\"},"
		"   \"c\": {\"url\": \"http://h\", \"api_key\": \"${TG_TEST_NESTED}\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}");

	ck_assert_str_eq(cfg->access_log, "/logs/${HOME}/$HOME/$$/a.log");
	ck_assert_str_eq(cfg->admin.address, "127.0.0.2:9090");
	ck_assert_str_eq(cfg->backends[0].host, "127.0.0.2");
	ck_assert_str_eq(cfg->backends[0].api_key, "Bearer-sk-123");
	/* A value is inserted as it is, never expanded a second time. */
	ck_assert_str_eq(cfg->backends[1].api_key, "${TG_TEST_KEY}");
	tg_config_unref(cfg);
}
END_TEST

static const struct {
	const char *value;
	enum tg_key_header expected;
} key_header_cases[] = {
	{"authorization", TG_KEY_AUTHORIZATION},
	{"x-api-key", TG_KEY_X_API_KEY},
	{"api-key", TG_KEY_API_KEY},
	{"X-Api-Key", TG_KEY_X_API_KEY},
	{"Authorization", TG_KEY_AUTHORIZATION},
	{"API-KEY", TG_KEY_API_KEY},
};

START_TEST(api_key_header_values)
{
	char json[512];

	snprintf(json, sizeof(json),
	         "{\"backends\": {\"b\": {\"url\": \"http://h\", \"api_key\": \"k\","
	         " \"api_key_header\": \"%s\"}},"
	         " \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
	         key_header_cases[_i].value);
	struct tg_config *cfg = expect_valid(json);

	ck_assert_int_eq(cfg->backends[0].api_key_header, key_header_cases[_i].expected);
	tg_config_unref(cfg);
}
END_TEST

/* The metrics label requests of no route, backend or listed model with a
 * placeholder, so no configured name may be that placeholder. */
START_TEST(reserved_names_rejected)
{
	expect_errors(
		"{\"backends\": {\"none\": {\"url\": \"http://h\"}, \"b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"none\", \"backends\": [\"b\"]},"
		"   {\"name\": \"r\", \"match\": {\"model\": \"other\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"s\", \"backends\": [{\"name\": \"b\", \"model\": \"other\"}]}]}",
		"T: backends.none: reserved name \"none\": the metrics label requests that reached "
		"no backend as backend=\"none\", and the series of this name would merge with theirs; "
		"choose another name\n"
		"T: routes[0].name: reserved name \"none\": the metrics label requests that matched "
		"no route as route=\"none\", and the series of this name would merge with theirs; "
		"choose another name\n"
		"T: routes[1].match.model: reserved name \"other\": the metrics label models the "
		"config does not list as model=\"other\", and the series of this name would merge "
		"with theirs; choose another name\n"
		"T: routes[2].backends[0].model: reserved name \"other\": the metrics label models "
		"the config does not list as model=\"other\", and the series of this name would "
		"merge with theirs; choose another name\n");
}
END_TEST

START_TEST(api_key_header_errors)
{
	expect_errors(
		"{\"backends\": {"
		"   \"a\": {\"url\": \"http://h\", \"api_key\": \"k\", \"api_key_header\": \"Bearer\"},"
		"   \"b\": {\"url\": \"http://h\", \"api_key\": \"k\", \"api_key_header\": 1},"
		"   \"c\": {\"url\": \"http://h\", \"api_key_header\": \"x-api-key\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"a\"]}]}",
		"T: backends.a.api_key_header: invalid value \"Bearer\"; use authorization, "
		"x-api-key or api-key\n"
		"T: backends.b.api_key_header: expected a string, got an integer\n"
		"T: backends.c.api_key_header: has no effect without \"api_key\"; set api_key "
		"or remove this key\n");
}
END_TEST

/* A key goes into a header line of each upstream request: a CR or LF in
 * it would end that line and add headers of the key's choosing. */
START_TEST(api_key_control_bytes_rejected)
{
	setenv("TG_TEST_KEY_NEWLINE", "sk-abc123\n", 1);
	setenv("TG_TEST_KEY_CRLF", "sk-abc123\r\n", 1);
	setenv("TG_TEST_KEY_INJECT", "k\r\nX-Env-Injected: 2", 1);
	expect_errors(
		"{\"backends\": {"
		"   \"a\": {\"url\": \"http://h\", \"api_key\": \"${TG_TEST_KEY_NEWLINE}\"},"
		"   \"b\": {\"url\": \"http://h\", \"api_key\": \"${TG_TEST_KEY_CRLF}\"},"
		"   \"c\": {\"url\": \"http://h\", \"api_key\": \"${TG_TEST_KEY_INJECT}\"},"
		"   \"d\": {\"url\": \"http://h\", \"api_key\": \"abc\\r\\nX-Injected: 1\"},"
		"   \"e\": {\"url\": \"http://h\", \"api_key\": \"abc\\u007f\"},"
		"   \"f\": {\"url\": \"http://h\", \"api_key\": \"\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"a\"]}]}",
		"T: backends.a.api_key: the value from the environment ends with a line break, "
		"which an HTTP header cannot carry; it is usually the final newline of the file "
		"or variable the value was read from: remove it there (tollgate does not strip it)\n"
		"T: backends.b.api_key: the value from the environment ends with a line break, "
		"which an HTTP header cannot carry; it is usually the final newline of the file "
		"or variable the value was read from: remove it there (tollgate does not strip it)\n"
		"T: backends.c.api_key: the value from the environment contains a carriage return "
		"(\\r) at byte 2, which an HTTP header cannot carry; a header value holds "
		"printable characters, spaces and tabs (the value is not shown: it may be a secret)\n"
		"T: backends.d.api_key: the value contains a carriage return (\\r) at byte 4, "
		"which an HTTP header cannot carry; a header value holds printable characters, "
		"spaces and tabs (the value is not shown: it may be a secret)\n"
		"T: backends.e.api_key: the value contains the control byte 0x7f at byte 4, "
		"which an HTTP header cannot carry; a header value holds printable characters, "
		"spaces and tabs (the value is not shown: it may be a secret)\n"
		"T: backends.f.api_key: must not be empty; remove the key to pass the client's "
		"credential on\n");
	unsetenv("TG_TEST_KEY_NEWLINE");
	unsetenv("TG_TEST_KEY_CRLF");
	unsetenv("TG_TEST_KEY_INJECT");
}
END_TEST

/* A tab and bytes above ASCII may stand in a header value. */
START_TEST(api_key_tab_and_utf8_accepted)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\", \"api_key\": \"a\\tb\u00e9\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}");

	ck_assert_str_eq(cfg->backends[0].api_key, "a\tb\xc3\xa9");
	tg_config_unref(cfg);
}
END_TEST

/* The probe path goes into the request line of each probe. */
START_TEST(probe_path_errors)
{
	expect_errors(
		"{\"backends\": {"
		"   \"a\": {\"url\": \"http://h\", \"health\": {\"probe\": {\"path\": \"v1/models\"}}},"
		"   \"b\": {\"url\": \"http://h\", \"health\": {\"probe\": {\"path\": "
		"\"/v1\\r\\nX-Injected: 1\"}}},"
		"   \"c\": {\"url\": \"http://h\", \"health\": {\"probe\": {\"path\": \"/v1 x\"}}},"
		"   \"d\": {\"url\": \"http://h\", \"health\": {\"probe\": {\"path\": \"/v1#x\"}}},"
		"   \"e\": {\"url\": \"http://h\", \"health\": {\"probe\": {\"path\": \"/v1?a=1\"}}}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"a\"]}]}",
		"T: backends.a.health.probe.path: invalid path \"v1/models\"; write a path that "
		"starts with \"/\", such as \"/v1/models\", with an optional query and no fragment, "
		"and percent-encode spaces, control bytes and other characters a URL cannot hold\n"
		"T: backends.b.health.probe.path: invalid path \"/v1\\x0d\\x0aX-Injected: 1\"; write "
		"a path that starts with \"/\", such as \"/v1/models\", with an optional query and "
		"no fragment, and percent-encode spaces, control bytes and other characters a URL "
		"cannot hold\n"
		"T: backends.c.health.probe.path: invalid path \"/v1 x\"; write a path that "
		"starts with \"/\", such as \"/v1/models\", with an optional query and no fragment, "
		"and percent-encode spaces, control bytes and other characters a URL cannot hold\n"
		"T: backends.d.health.probe.path: invalid path \"/v1#x\"; write a path that "
		"starts with \"/\", such as \"/v1/models\", with an optional query and no fragment, "
		"and percent-encode spaces, control bytes and other characters a URL cannot hold\n");
}
END_TEST

START_TEST(access_log_off)
{
	struct tg_config *cfg = expect_valid("{\"access_log\": false, " BACKEND_AND_ROUTE "}");

	ck_assert_ptr_null(cfg->access_log);
	tg_config_unref(cfg);

	cfg = expect_valid("{\"access_log\": null, " BACKEND_AND_ROUTE "}");
	ck_assert_ptr_null(cfg->access_log);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(workers_bounds_accepted)
{
	struct tg_config *cfg = expect_valid("{\"workers\": 1, " BACKEND_AND_ROUTE "}");

	ck_assert_int_eq(cfg->workers, 1);
	tg_config_unref(cfg);

	cfg = expect_valid("{\"workers\": 256, " BACKEND_AND_ROUTE "}");
	ck_assert_int_eq(cfg->workers, 256);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(duration_ceiling_accepted)
{
	struct tg_config *cfg = expect_valid("{\"drain_timeout\": \"8760h\", "
	                                     BACKEND_AND_ROUTE "}");

	ck_assert_uint_eq(cfg->drain_timeout, (uint64_t)8760 * 3600 * 1000);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(config_refcount)
{
	struct tg_config *cfg = expect_valid("{" BACKEND_AND_ROUTE "}");

	ck_assert_int_eq(atomic_load(&cfg->refcount), 1);
	ck_assert_ptr_eq(tg_config_ref(cfg), cfg);
	ck_assert_int_eq(atomic_load(&cfg->refcount), 2);
	tg_config_unref(cfg);
	ck_assert_int_eq(atomic_load(&cfg->refcount), 1);
	/* The last unref frees; LeakSanitizer reports it if it does not. */
	tg_config_unref(cfg);
	tg_config_unref(NULL);
}
END_TEST

/* --- invalid configs ---------------------------------------------------- */

START_TEST(json_syntax_error_position)
{
	struct tg_config *cfg;
	char *out = load_path(DATA_DIR "/syntax-error.json", "syntax-error.json", &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(out, "syntax-error.json:3:52: unexpected token near ']'\n");
	free(out);
}
END_TEST

/* A file cut short is reported at its last character that is not
 * whitespace, where jansson would give column 0 of the line after it. */
START_TEST(truncated_file_position)
{
	expect_errors("{\"workers\": [1,\n", "T:1:15: ']' expected near end of file\n");
	expect_errors("{\n  \"workers\": 2,\n\n  \r\n",
	              "T:2:15: string or '}' expected near end of file\n");
	expect_errors("{\"log_level\": \"d\u00e9bu",
	              "T:1:19: premature end of input near '\"d\u00e9bu'\n");
}
END_TEST

/* A number that jansson cannot read is reported at jansson's position,
 * with the key path and the number, at any depth and at the end of a
 * file cut short. */
START_TEST(number_out_of_range_path)
{
	expect_errors("{\"gateway_keys\": {\"a\": {\"key\": \"k\",\n"
	              "  \"limits\": {\"requests_per_minute\": 99999999999999999999}}}}",
	              "T:2:56: gateway_keys.a.limits.requests_per_minute: 99999999999999999999 "
	              "is out of range; a 64-bit integer is from -9223372036854775808 to "
	              "9223372036854775807, and each setting's own range is in "
	              "tollgate.json(5)\n");
	expect_errors("{\"routes\": [{\"name\": \"r\"}, {\"retry\": {\"attempts\": -1e999}}]}",
	              "T:1:56: routes[1].retry.attempts: -1e999 is out of range; a number must be "
	              "below about 1.8e308 in magnitude\n");
	expect_errors("{\"x\": [[1, [2, -99999999999999999999]]]}",
	              "T:1:36: x[0][1][1]: -99999999999999999999 is out of range; a 64-bit "
	              "integer is from -9223372036854775808 to 9223372036854775807, and each "
	              "setting's own range is in tollgate.json(5)\n");
	expect_errors("{\"workers\": 123456789012345678901234567890123456789012345678901234567890",
	              "T:1:72: workers: 12345678901234567890123456789012345678901234... is out "
	              "of range; a 64-bit integer is from -9223372036854775808 to "
	              "9223372036854775807, and each setting's own range is in "
	              "tollgate.json(5)\n");
}
END_TEST

/* An empty file has no position to point at. */
START_TEST(empty_file)
{
	const char *expected = "T: the file has no JSON text (it is empty or only "
	                       "whitespace); a JSON object is expected\n";

	expect_errors("", expected);
	expect_errors(" \n\t\n", expected);
}
END_TEST

START_TEST(duplicate_key_position)
{
	struct tg_config *cfg;
	char *out = load_path(DATA_DIR "/duplicate-key.json", "duplicate-key.json", &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(out, "duplicate-key.json:5:11: duplicate object key near '\"workers\"'\n");
	free(out);
}
END_TEST

START_TEST(missing_file)
{
	struct tg_config *cfg;
	char *out = load_path(DATA_DIR "/no-such-file.json", "F", &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(out, "F: cannot open: No such file or directory\n");
	free(out);
}
END_TEST

START_TEST(top_level_not_object)
{
	expect_errors("[1, 2]", "T: expected a JSON object at the top level, got an array\n");
}
END_TEST

START_TEST(missing_required_keys)
{
	expect_errors("{}",
		"T: missing required key \"backends\"\n"
		"T: missing required key \"routes\"\n");
	expect_errors("{\"backends\": {\"b\": {}}, \"routes\": [{}]}",
		"T: backends.b: missing required key \"url\"\n"
		"T: routes[0]: missing required key \"name\"\n"
		"T: routes[0]: missing required key \"backends\"\n");
}
END_TEST

static const struct error_case {
	const char *json;       /* keys added before BACKEND_AND_ROUTE */
	const char *expected;
} unknown_key_cases[] = {
	{ "\"workerz\": 2,",
	  "T: unknown key \"workerz\"; valid keys: listen, admin, "
	  "admin_max_connections, admin_idle_timeout, workers, drain_timeout, "
	  "log_level, access_log, access_log_buffer, access_log_flush, limits, resolver, "
	  "backends, filters, gateway_keys, routes, cache, pricing, sessions, tracing\n" },
	{ "\"limits\": {\"max_bodyy\": 1},",
	  "T: limits: unknown key \"max_bodyy\"; valid keys: max_body, max_header, "
	  "max_response_body, client_header_timeout, client_body_timeout, "
	  "keepalive_timeout, send_timeout\n" },
	{ "\"listen\": [{\"address\": \"127.0.0.1:1\", \"port\": 1}],",
	  "T: listen[0]: unknown key \"port\"; valid keys: address, tls\n" },
	{ "\"listen\": [{\"address\": \"127.0.0.1:1\", \"tls\": {" TLS_FILES ", \"ca\": 1}}],",
	  "T: listen[0].tls: unknown key \"ca\"; valid keys: cert, key\n" },
	{ "\"x\\n\\\"y\": 1,",
	  "T: unknown key \"x\\x0a\\\"y\"; valid keys: listen, admin, "
	  "admin_max_connections, admin_idle_timeout, workers, drain_timeout, "
	  "log_level, access_log, access_log_buffer, access_log_flush, limits, resolver, "
	  "backends, filters, gateway_keys, routes, cache, pricing, sessions, tracing\n" },
};

START_TEST(unknown_key_top_levels)
{
	const struct error_case *c = &unknown_key_cases[_i];
	char json[1024];

	snprintf(json, sizeof(json), "{%s" BACKEND_AND_ROUTE "}", c->json);
	expect_errors(json, c->expected);
}
END_TEST

START_TEST(unknown_key_backend_levels)
{
	expect_errors(
		"{\"backends\": {\"primary\": {\"url\": \"https://h\", \"timeout\": \"1s\","
		"   \"timeouts\": {\"read\": \"1s\"}, \"tls\": {\"insecure\": true},"
		"   \"pool\": {\"size\": 1}}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"primary\"],"
		"   \"weight\": 1, \"match\": {\"prefix\": \"/v1\"}}]}",
		"T: backends.primary: unknown key \"timeout\"; valid keys: url, api_key, "
		"api_key_header, timeouts, tls, pool, health, stream_usage\n"
		"T: backends.primary.timeouts: unknown key \"read\"; valid keys: connect, "
		"first_byte, idle\n"
		"T: backends.primary.tls: unknown key \"insecure\"; valid keys: ca_file, verify\n"
		"T: backends.primary.pool: unknown key \"size\"; valid keys: max_idle, "
		"idle_timeout\n"
		"T: routes[0]: unknown key \"weight\"; valid keys: name, match, backends, retry, filters, cache, auth\n"
		"T: routes[0].match: unknown key \"prefix\"; valid keys: path, path_prefix, "
		"method, model, headers\n");
}
END_TEST

static const struct error_case type_cases[] = {
	{ "\"listen\": \"127.0.0.1:8080\",",
	  "T: listen: expected an array of addresses, got a string\n" },
	{ "\"listen\": [8080],",
	  "T: listen[0]: expected \"host:port\" or an object, got an integer\n" },
	{ "\"admin\": 9090,", "T: admin: expected a string, got an integer\n" },
	{ "\"workers\": \"2\",",
	  "T: workers: invalid value \"2\" (a string); expected an integer from 1 to 256, "
	  "written without quotes\n" },
	{ "\"workers\": \"two\",",
	  "T: workers: invalid value \"two\" (a string); expected an integer from 1 to 256\n" },
	{ "\"workers\": 2.5,",
	  "T: workers: invalid value 2.5; expected an integer from 1 to 256, written without "
	  "a fraction or an exponent\n" },
	{ "\"workers\": 0.1,",
	  "T: workers: invalid value 0.1; expected an integer from 1 to 256, written without "
	  "a fraction or an exponent\n" },
	{ "\"workers\": 2e0,",
	  "T: workers: invalid value 2.0; expected an integer from 1 to 256, written without "
	  "a fraction or an exponent\n" },
	{ "\"workers\": true,",
	  "T: workers: invalid value true; expected an integer from 1 to 256\n" },
	{ "\"workers\": [2],",
	  "T: workers: expected an integer from 1 to 256, got an array\n" },
	{ "\"drain_timeout\": 30,",
	  "T: drain_timeout: expected a string with a unit, such as \"30s\", got an integer\n" },
	{ "\"drain_timeout\": true,",
	  "T: drain_timeout: expected a duration string such as \"30s\", got a boolean\n" },
	{ "\"log_level\": 1,",
	  "T: log_level: expected \"debug\", \"info\", \"warn\" or \"error\", got an integer\n" },
	{ "\"log_level\": \"verbose\",",
	  "T: log_level: unknown level \"verbose\"; use \"debug\", \"info\", \"warn\" or "
	  "\"error\"\n" },
	{ "\"access_log\": true,",
	  "T: access_log: expected a path, \"-\" for standard output, or false, got a boolean\n" },
	{ "\"limits\": [],", "T: limits: expected an object, got an empty array\n" },
	{ "\"limits\": {\"max_body\": null},",
	  "T: limits.max_body: expected a size such as \"32MiB\" or a number of bytes, got null\n" },
};

START_TEST(wrong_types_top)
{
	const struct error_case *c = &type_cases[_i];
	char json[1024];

	snprintf(json, sizeof(json), "{%s" BACKEND_AND_ROUTE "}", c->json);
	expect_errors(json, c->expected);
}
END_TEST

/* The resolver's defaults, and nameservers as written. */
START_TEST(resolver_settings)
{
	struct tg_config *cfg = expect_valid("{" BACKEND_AND_ROUTE "}");

	ck_assert_uint_eq(cfg->resolver.n_nameservers, 0);
	ck_assert_uint_eq(cfg->resolver.min_ttl, 5000);
	ck_assert_uint_eq(cfg->resolver.max_ttl, 300000);
	ck_assert_uint_eq(cfg->resolver.max_stale, 3600000);
	tg_config_unref(cfg);

	cfg = expect_valid("{\"resolver\": {\"nameservers\": [\"127.0.0.1:5353\", \"[::1]:53\","
	                   " \"10.0.0.2\"], \"min_ttl\": \"1s\", \"max_ttl\": \"1s\","
	                   " \"max_stale\": \"0s\"}, " BACKEND_AND_ROUTE "}");
	ck_assert_uint_eq(cfg->resolver.n_nameservers, 3);
	ck_assert_str_eq(cfg->resolver.nameservers[0], "127.0.0.1:5353");
	ck_assert_str_eq(cfg->resolver.nameservers[1], "[::1]:53");
	ck_assert_str_eq(cfg->resolver.nameservers[2], "10.0.0.2");
	ck_assert_uint_eq(cfg->resolver.min_ttl, 1000);
	ck_assert_uint_eq(cfg->resolver.max_ttl, 1000);
	ck_assert_uint_eq(cfg->resolver.max_stale, 0);
	tg_config_unref(cfg);
}
END_TEST

/* Every bad resolver value is named with its key, in one run. */
START_TEST(resolver_errors)
{
	expect_errors(
		"{\"resolver\": {\"nameservers\": [\"dns.example.test:53\", 53, \"127.0.0.1:99999\"],"
		" \"min_ttl\": \"500ms\", \"max_ttl\": \"10s\"}, " BACKEND_AND_ROUTE "}",
		"T: resolver.nameservers[0]: invalid nameserver \"dns.example.test:53\"; "
		"expected an IP address with an optional port, such as \"127.0.0.1:53\" or "
		"\"[::1]:5353\"\n"
		"T: resolver.nameservers[1]: expected an IP address with an optional port, "
		"got an integer\n"
		"T: resolver.nameservers[2]: invalid nameserver \"127.0.0.1:99999\"; "
		"expected an IP address with an optional port, such as \"127.0.0.1:53\" or "
		"\"[::1]:5353\"\n"
		"T: resolver.min_ttl: \"500ms\" is out of range; valid values are 1s to 8760h\n");

	expect_errors("{\"resolver\": {\"nameservers\": []}, " BACKEND_AND_ROUTE "}",
		"T: resolver.nameservers: expected a non-empty array of nameserver "
		"addresses, got an empty array\n");

	expect_errors("{\"resolver\": {\"min_ttl\": \"60s\", \"max_ttl\": \"30s\"}, "
	              BACKEND_AND_ROUTE "}",
		"T: resolver.max_ttl: 30000 ms is below resolver.min_ttl (60000 ms); "
		"max_ttl must be at least min_ttl\n");
}
END_TEST

START_TEST(wrong_types_nested)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": 1, \"api_key\": 2, \"timeouts\": \"5s\","
		"   \"tls\": {\"verify\": \"yes\"}, \"pool\": {\"max_idle\": \"8\"}},"
		"   \"c\": []},"
		" \"routes\": [{\"name\": 7, \"match\": {\"path\": 1, \"model\": [\"a\"]},"
		"   \"backends\": \"b\"}, \"r\"]}",
		"T: backends.b.url: expected a URL string, got an integer\n"
		"T: backends.b.api_key: expected a string, got an integer\n"
		"T: backends.b.timeouts: expected an object, got a string\n"
		"T: backends.b.tls.verify: expected true or false, got a string\n"
		"T: backends.b.pool.max_idle: invalid value \"8\" (a string); expected an integer "
		"from 0 to 65536, written without quotes\n"
		"T: backends.c: expected an object, got an empty array\n"
		"T: routes[0].name: expected a string, got an integer\n"
		"T: routes[0].match.path: expected a path string, got an integer\n"
		"T: routes[0].match.model: expected a string, got an array\n"
		"T: routes[0].backends: expected an array of backend names and groups, got a string\n"
		"T: routes[1]: expected an object, got a string\n");

	expect_errors("{\"backends\": [], \"routes\": {}}",
		"T: backends: expected an object of named backends, got an empty array\n"
		"T: routes: expected an array of routes, got an empty object\n");
}
END_TEST

static const struct error_case value_cases[] = {
	/* durations */
	{ "\"drain_timeout\": \"30\",",
	  "T: drain_timeout: invalid duration \"30\"; expected a non-negative "
	  "integer followed by ms, s, m or h, such as \"30s\"\n" },
	{ "\"drain_timeout\": \"-1s\",",
	  "T: drain_timeout: invalid duration \"-1s\"; expected a non-negative "
	  "integer followed by ms, s, m or h, such as \"30s\"\n" },
	{ "\"limits\": {\"keepalive_timeout\": \"1d\"},",
	  "T: limits.keepalive_timeout: invalid duration \"1d\"; expected a "
	  "non-negative integer followed by ms, s, m or h, such as \"30s\"\n" },
	{ "\"limits\": {\"client_header_timeout\": \"0s\"},",
	  "T: limits.client_header_timeout: \"0s\" is out of range; valid values "
	  "are 1ms to 8760h\n" },
	/* Every duration stops at a year, since longer ones wrap the clock. */
	{ "\"drain_timeout\": \"9223372036854775ms\",",
	  "T: drain_timeout: \"9223372036854775ms\" is out of range; valid values "
	  "are 0ms to 8760h\n" },
	{ "\"limits\": {\"send_timeout\": \"8761h\"},",
	  "T: limits.send_timeout: \"8761h\" is out of range; valid values are "
	  "1ms to 8760h\n" },
	/* sizes */
	{ "\"limits\": {\"max_body\": \"32 MiB\"},",
	  "T: limits.max_body: invalid size \"32 MiB\"; expected a non-negative "
	  "integer with an optional unit B, KiB, MiB, GiB, KB, MB or GB, such as "
	  "\"32MiB\"\n" },
	{ "\"limits\": {\"max_body\": \"1TiB\"},",
	  "T: limits.max_body: invalid size \"1TiB\"; expected a non-negative "
	  "integer with an optional unit B, KiB, MiB, GiB, KB, MB or GB, such as "
	  "\"32MiB\"\n" },
	{ "\"limits\": {\"max_body\": -5},",
	  "T: limits.max_body: -5 is negative; a size is a non-negative number of bytes\n" },
	/* 0 would reject every body rather than lift the limit. */
	{ "\"limits\": {\"max_body\": 0},",
	  "T: limits.max_body: 0 is below the minimum of 1B\n" },
	{ "\"limits\": {\"max_body\": \"0MiB\"},",
	  "T: limits.max_body: \"0MiB\" is below the minimum of 1B\n" },
	{ "\"limits\": {\"max_header\": \"1000B\"},",
	  "T: limits.max_header: \"1000B\" is below the minimum of 1KiB\n" },
	{ "\"limits\": {\"max_header\": 12},",
	  "T: limits.max_header: 12 is below the minimum of 1KiB\n" },
	/* workers */
	{ "\"workers\": 0,",
	  "T: workers: 0 is out of range; valid values are 1 to 256\n" },
	{ "\"workers\": 257,",
	  "T: workers: 257 is out of range; valid values are 1 to 256\n" },
	{ "\"workers\": -1,",
	  "T: workers: -1 is out of range; valid values are 1 to 256\n" },
	/* the admin listener's connections */
	{ "\"admin_max_connections\": 0,",
	  "T: admin_max_connections: 0 is out of range; valid values are 1 to 65536\n" },
	{ "\"admin_idle_timeout\": \"0s\",",
	  "T: admin_idle_timeout: \"0s\" is out of range; valid values are 1ms to 8760h\n" },
	/* addresses */
	{ "\"admin\": \"localhost\",",
	  "T: admin: invalid address \"localhost\": missing \":port\"; expected \"host:port\"\n" },
	{ "\"admin\": \":9090\",",
	  "T: admin: invalid address \":9090\": missing host; expected \"host:port\"\n" },
	{ "\"admin\": \"h:70000\",",
	  "T: admin: invalid address \"h:70000\": the port must be a number from "
	  "1 to 65535; expected \"host:port\"\n" },
	{ "\"admin\": \"::1:9090\",",
	  "T: admin: invalid address \"::1:9090\": an IPv6 address needs brackets, "
	  "as in \"[::1]:8080\"; expected \"host:port\"\n" },
	{ "\"admin\": \"[::1:9090\",",
	  "T: admin: invalid address \"[::1:9090\": \"[\" without a closing \"]\"; "
	  "expected \"host:port\"\n" },
	{ "\"admin\": \"999.1.1.1:9090\",",
	  "T: admin: invalid address \"999.1.1.1:9090\": the host is not a valid IPv4 "
	  "address; expected \"host:port\"\n" },
	{ "\"admin\": \"[::zz]:9090\",",
	  "T: admin: invalid address \"[::zz]:9090\": the host in brackets is not a valid "
	  "IPv6 address; expected \"host:port\"\n" },
	{ "\"admin\": \"127.0.0.1:8080\",",
	  "T: admin: same address as listen[0]\n" },
	/* listen */
	{ "\"listen\": [],", "T: listen: must list at least one address\n" },
	{ "\"listen\": [\"127.0.0.1:1\", {\"address\": \"127.0.0.1:1\"}],",
	  "T: listen[1]: same address as listen[0]\n" },
	{ "\"listen\": [{\"address\": \"127.0.0.1:1\", \"tls\": {\"cert\": \""
	  DATA_DIR "/test-cert.pem\"}}],",
	  "T: listen[0].tls: missing required key \"key\"\n" },
	{ "\"listen\": [{\"address\": \"127.0.0.1:1\", \"tls\": {\"cert\": \"/nonexistent.pem\","
	  " \"key\": \"" DATA_DIR "\"}}],",
	  "T: listen[0].tls.cert: cannot read \"/nonexistent.pem\": No such file or directory\n"
	  "T: listen[0].tls.key: cannot read \"" DATA_DIR "\": not a regular file\n" },
	{ "\"listen\": [{\"tls\": {" TLS_FILES "}}],",
	  "T: listen[0]: missing required key \"address\"\n" },
	/* access log buffering */
	{ "\"access_log_buffer\": \"17MiB\",",
	  "T: access_log_buffer: \"17MiB\" is out of range; valid values are 0B to 16MiB\n" },
	{ "\"access_log_flush\": \"0s\",",
	  "T: access_log_flush: \"0s\" is out of range; valid values are 1ms to 1h\n" },
	{ "\"access_log_flush\": \"2h\",",
	  "T: access_log_flush: \"2h\" is out of range; valid values are 1ms to 1h\n" },
	/* The example and the range of a size error fit the key. */
	{ "\"access_log_buffer\": \"abc\",",
	  "T: access_log_buffer: invalid size \"abc\"; expected a non-negative "
	  "integer with an optional unit B, KiB, MiB, GiB, KB, MB or GB, from 0B "
	  "to 16MiB, such as \"16MiB\"\n" },
	{ "\"access_log_buffer\": \"99999999999999999999\",",
	  "T: access_log_buffer: \"99999999999999999999\" is out of range; valid values "
	  "are 0B to 16MiB\n" },
	{ "\"limits\": {\"max_body\": \"99999999999GiB\"},",
	  "T: limits.max_body: \"99999999999GiB\" is too large to count in bytes; write "
	  "a size such as \"32MiB\"\n" },
	{ "\"drain_timeout\": \"99999999999999999999s\",",
	  "T: drain_timeout: \"99999999999999999999s\" is out of range; valid values are "
	  "0ms to 8760h\n" },
	{ "\"access_log_buffer\": null,",
	  "T: access_log_buffer: expected a size such as \"16MiB\" or a number of "
	  "bytes, got null\n" },
	/* strings */
	{ "\"access_log\": \"\",",
	  "T: access_log: must not be empty; use false to turn the log off\n" },
};

START_TEST(invalid_values)
{
	const struct error_case *c = &value_cases[_i];
	char json[1024];

	snprintf(json, sizeof(json), "{%s" BACKEND_AND_ROUTE "}", c->json);
	expect_errors(json, c->expected);
}
END_TEST

static const struct error_case url_error_cases[] = {
	{ "ftp://h",
	  "T: backends.b.url: unsupported URL scheme in \"ftp://h\"; use http:// or https://\n" },
	{ "127.0.0.1:9001",
	  "T: backends.b.url: invalid URL \"127.0.0.1:9001\"; expected "
	  "http://HOST[:PORT][/PATH] or https://..., with a port from 1 to 65535\n" },
	{ "http:///v1",
	  "T: backends.b.url: the URL \"http:///v1\" has no host\n" },
	{ "http://h/v1?x=1",
	  "T: backends.b.url: the URL \"http://h/v1?x=1\" must not have a query or fragment\n" },
	{ "http://h:0",
	  "T: backends.b.url: the URL \"http://h:0\" has port 0; write a port from 1 to "
	  "65535, or no \":\" for the default (80 for http://, 443 for https://)\n" },
	/* libevent reads an empty port as none: port 80 was used. */
	{ "http://127.0.0.1:",
	  "T: backends.b.url: the URL \"http://127.0.0.1:\" has an empty port; write a port "
	  "from 1 to 65535, or no \":\" for the default (80 for http://, 443 for https://)\n" },
	{ "https://[::1]:/v2",
	  "T: backends.b.url: the URL \"https://[::1]:/v2\" has an empty port; write a port "
	  "from 1 to 65535, or no \":\" for the default (80 for http://, 443 for https://)\n" },
	{ "http://h:8o",
	  "T: backends.b.url: invalid URL \"http://h:8o\"; expected "
	  "http://HOST[:PORT][/PATH] or https://..., with a port from 1 to 65535\n" },
	{ "http://h/v2#top",
	  "T: backends.b.url: the URL \"http://h/v2#top\" must not have a query or fragment\n" },
	{ "http://k@h",
	  "T: backends.b.url: the URL must not contain credentials (user:password@); "
	  "put the key in \"api_key\" instead\n" },
	/* A line break in the URL would end the request line or the Host
	 * header early. */
	{ "http://h/v2\\r\\nX-Injected: 1",
	  "T: backends.b.url: invalid URL \"http://h/v2\\x0d\\x0aX-Injected: 1\"; expected "
	  "http://HOST[:PORT][/PATH] or https://..., with a port from 1 to 65535\n" },
	{ "http://h:99999",
	  "T: backends.b.url: invalid URL \"http://h:99999\"; expected "
	  "http://HOST[:PORT][/PATH] or https://..., with a port from 1 to 65535\n" },
	{ "",
	  "T: backends.b.url: invalid URL \"\"; expected http://HOST[:PORT][/PATH] or "
	  "https://..., with a port from 1 to 65535\n" },
};

START_TEST(invalid_backend_urls)
{
	const struct error_case *c = &url_error_cases[_i];
	char json[1024];

	snprintf(json, sizeof(json),
	         "{\"backends\": {\"b\": {\"url\": \"%s\"}},"
	         "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}", c->json);
	expect_errors(json, c->expected);
}
END_TEST

/* max_cooldown takes 0 (ignore the times in 429 and 503 responses) up to
 * one hour, the fixed bound that every cooldown had before. */
static const struct error_case max_cooldown_cases[] = {
	{ "\"2h\"",
	  "T: backends.b.health.max_cooldown: \"2h\" is out of range; valid values "
	  "are 0ms to 1h\n" },
	{ "\"3601s\"",
	  "T: backends.b.health.max_cooldown: \"3601s\" is out of range; valid values "
	  "are 0ms to 1h\n" },
	{ "\"-1s\"",
	  "T: backends.b.health.max_cooldown: invalid duration \"-1s\"; expected a "
	  "non-negative integer followed by ms, s, m or h, such as \"30s\"\n" },
	{ "60",
	  "T: backends.b.health.max_cooldown: expected a string with a unit, such as "
	  "\"30s\", got an integer\n" },
};

#define MAX_COOLDOWN_CONFIG(value) \
	"{\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9001\"," \
	" \"health\": {\"max_cooldown\": " value "}}}," \
	"\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}"

START_TEST(max_cooldown_range)
{
	const struct error_case *c = &max_cooldown_cases[_i];
	char json[1024];

	snprintf(json, sizeof(json), MAX_COOLDOWN_CONFIG("%s"), c->json);
	expect_errors(json, c->expected);
}
END_TEST

START_TEST(max_cooldown_bounds_accepted)
{
	struct tg_config *cfg = expect_valid(MAX_COOLDOWN_CONFIG("\"0s\""));

	ck_assert_uint_eq(cfg->backends[0].health->max_cooldown, 0);
	tg_config_unref(cfg);
	cfg = expect_valid(MAX_COOLDOWN_CONFIG("\"1h\""));
	ck_assert_uint_eq(cfg->backends[0].health->max_cooldown, 3600000);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(url_userinfo_rejected_unquoted)
{
	const char *expected =
		"T: backends.b.url: the URL must not contain credentials "
		"(user:password@); put the key in \"api_key\" instead\n";

	expect_errors("{\"backends\": {\"b\": {\"url\": \"https://user:hunter2@h/v1\"}},"
	              "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
	              expected);
	expect_errors("{\"backends\": {\"b\": {\"url\": \"https://token@h\"}},"
	              "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
	              expected);
	/* An unparsable URL with credentials is not quoted either. */
	expect_errors("{\"backends\": {\"b\": {\"url\": \"http://u:hunter2@h:99999\"}},"
	              "\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
	              "T: backends.b.url: invalid URL; expected "
	              "http://HOST[:PORT][/PATH] or https://..., with a port from 1 to 65535\n");
}
END_TEST

START_TEST(unset_env_var_named)
{
	unsetenv("TG_TEST_UNSET");
	unsetenv("TG_TEST_UNSET2");
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\", \"api_key\": \"${TG_TEST_UNSET}\"}},"
		" \"access_log\": \"/${TG_TEST_UNSET}/${TG_TEST_UNSET2}\","
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]}",
		"T: access_log: environment variable TG_TEST_UNSET is not set\n"
		"T: access_log: environment variable TG_TEST_UNSET2 is not set\n"
		"T: backends.b.api_key: environment variable TG_TEST_UNSET is not set\n");
}
END_TEST

START_TEST(bad_env_reference)
{
	expect_errors("{\"access_log\": \"/a/${OPEN\", " BACKEND_AND_ROUTE "}",
		"T: access_log: \"${\" without a closing \"}\"; write \"$${\" for a "
		"literal \"${\"\n");
	expect_errors("{\"access_log\": \"/a/${1X}\", " BACKEND_AND_ROUTE "}",
		"T: access_log: invalid variable name after \"${\"; a name is a letter "
		"or \"_\" followed by letters, digits or \"_\"\n");
	expect_errors("{\"access_log\": \"/a/${}\", " BACKEND_AND_ROUTE "}",
		"T: access_log: invalid variable name after \"${\"; a name is a letter "
		"or \"_\" followed by letters, digits or \"_\"\n");
}
END_TEST

/* Expanded values must never reach the error output, whichever check fails
 * on them, and api keys must not appear even when written literally. */
START_TEST(secrets_never_in_messages)
{
	struct tg_config *cfg;
	char *out;

	setenv("TG_TEST_SECRET", "hunter2-secret", 1);
	out = load_json(
		"{\"drain_timeout\": \"${TG_TEST_SECRET}\","
		" \"admin\": \"${TG_TEST_SECRET}\","
		" \"limits\": {\"max_body\": \"${TG_TEST_SECRET}\"},"
		" \"listen\": [{\"address\": \"127.0.0.1:1\", \"tls\": {"
		"   \"cert\": \"/${TG_TEST_SECRET}\", \"key\": \"/${TG_TEST_SECRET}\"}}],"
		" \"backends\": {\"b\": {\"url\": \"http://h${TG_TEST_SECRET}:1:2\","
		"   \"api_key\": \"${TG_TEST_SECRET}\"},"
		"   \"c\": {\"url\": \"http://h\", \"api_key\": \"\"}},"
		" \"routes\": [{\"name\": \"${TG_TEST_SECRET}\","
		"   \"match\": {\"path\": \"${TG_TEST_SECRET}\"},"
		"   \"backends\": [\"${TG_TEST_SECRET}\"]}]}", &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_ptr_null(strstr(out, "hunter2"));
	ck_assert_uint_eq(count_lines(out), 9);
	ck_assert_ptr_nonnull(strstr(out, "T: drain_timeout: invalid duration \"${TG_TEST_SECRET}\""));
	ck_assert_ptr_nonnull(strstr(out, "T: backends.c.api_key: must not be empty;"));
	ck_assert_ptr_nonnull(strstr(out, "T: routes[0].backends[0]: unknown backend \"${TG_TEST_SECRET}\"\n"));
	free(out);
}
END_TEST

START_TEST(unknown_backend_in_route)
{
	expect_errors(
		"{\"backends\": {\"primary\": {\"url\": \"http://h\"},"
		"   \"secondary\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"a\", \"backends\": [\"primary\"]},"
		"   {\"name\": \"b\", \"backends\": [\"primray\", \"tertiary\", \"xyz\"]}]}",
		"T: routes[1].backends[0]: unknown backend \"primray\"; did you mean \"primary\"?\n"
		"T: routes[1].backends[1]: unknown backend \"tertiary\"\n"
		"T: routes[1].backends[2]: unknown backend \"xyz\"\n");
}
END_TEST

START_TEST(route_list_errors)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"chat\", \"backends\": [\"b\", \"b\"]},"
		"   {\"name\": \"chat\", \"backends\": []},"
		"   {\"name\": \"bad name\", \"match\": {\"path\": \"v1/x\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"\", \"backends\": [\"b\"]},"
		"   {\"name\": \"glob\", \"match\": {\"path\": \"/v1/*\"}, \"backends\": [\"b\"]}]}",
		"T: routes[0].backends[1]: backend \"b\" is listed twice\n"
		"T: routes[1].backends: must list at least one backend\n"
		"T: routes[1].name: duplicate route name \"chat\"; routes[0] has it too\n"
		"T: routes[2].name: invalid name \"bad name\"; use 1 to 64 letters, "
		"digits, \"_\", \"-\" or \".\"\n"
		"T: routes[2].match.path: invalid path \"v1/x\"; a path starts with \"/\"\n"
		"T: routes[3].name: must not be empty\n"
		"T: routes[4].match.path: invalid path \"/v1/*\"; glob patterns are not "
		"supported, since the path is compared exactly; list each path in its "
		"own route, or leave out \"path\" to match any\n");

	expect_errors("{\"backends\": {}, \"routes\": []}",
		"T: backends: must define at least one backend\n"
		"T: routes: must define at least one route\n");

	expect_errors(
		"{\"backends\": {\"a b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"a b\"]}]}",
		"T: backends: invalid backend name \"a b\"; use 1 to 64 letters, "
		"digits, \"_\", \"-\" or \".\"\n");
}
END_TEST

/* fnmatch() reads an unclosed "[" as a plain character and a final
 * backslash as one that never matches, so both are config errors. */
START_TEST(model_glob_errors)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"a\", \"match\": {\"model\": \"[abc\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"model\": \"gpt-[!]\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"c\", \"match\": {\"model\": \"gpt-\\\\\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"d\", \"match\": {\"model\": \"\"}, \"backends\": [\"b\"]}]}",
		"T: routes[0].match.model: invalid model pattern \"[abc\": the \"[\" at character 1 "
		"opens a set that no \"]\" closes; close it, as in \"gpt-[45]*\", or put a "
		"backslash before it to match a \"[\" itself\n"
		"T: routes[1].match.model: invalid model pattern \"gpt-[!]\": the \"[\" at "
		"character 5 opens a set that no \"]\" closes; close it, as in \"gpt-[45]*\", "
		"or put a backslash before it to match a \"[\" itself\n"
		"T: routes[2].match.model: invalid model pattern \"gpt-\\\\\": the backslash at "
		"character 5 escapes nothing; put another before it to match a backslash itself\n"
		"T: routes[3].match.model: must not be empty\n");
}
END_TEST

/* Patterns the check accepts, each with a model that fnmatch() matches. */
START_TEST(model_globs_accepted)
{
	static const char *const globs[][2] = {
		{"gpt-4o", "gpt-4o"},
		{"gpt-*", "gpt-4o-mini"},
		{"gpt-[45]?", "gpt-4o"},
		{"[]x]", "]"},
		{"[!]x]", "y"},
		{"[^a]", "b"},
		{"[[:digit:]]*", "7b"},
		{"x[[:alpha]", "x:"},
		{"[\\]]", "]"},
		{"\\[abc", "[abc"},
		{"org/*", "org/model-7b"},
	};
	char problem[200];

	for (size_t i = 0; i < sizeof(globs) / sizeof(globs[0]); i++) {
		ck_assert_msg(tg_route_model_glob_check(globs[i][0], problem, sizeof(problem)) == 0,
		              "%s: %s", globs[i][0], problem);
		ck_assert_msg(fnmatch(globs[i][0], globs[i][1], 0) == 0, "%s does not match %s",
		              globs[i][0], globs[i][1]);
	}
}
END_TEST

START_TEST(many_errors_one_run)
{
	struct tg_config *cfg;
	char *out = load_path(DATA_DIR "/many-errors.json", "M", &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(out,
		"M: listen[0]: invalid address \"127.0.0.1\": missing \":port\"; "
		"expected \"host:port\"\n"
		"M: workers: 1000 is out of range; valid values are 1 to 256\n"
		"M: drain_timeout: expected a string with a unit, such as \"30s\", "
		"got an integer\n"
		"M: limits: unknown key \"max_headers\"; valid keys: max_body, "
		"max_header, max_response_body, client_header_timeout, "
		"client_body_timeout, keepalive_timeout, send_timeout\n"
		"M: limits.max_body: invalid size \"lots\"; expected a non-negative "
		"integer with an optional unit B, KiB, MiB, GiB, KB, MB or GB, such "
		"as \"32MiB\"\n"
		"M: backends.primary: unknown key \"timeout\"; valid keys: url, "
		"api_key, api_key_header, timeouts, tls, pool, health, stream_usage\n"
		"M: backends.primary.url: the URL must not contain credentials "
		"(user:password@); put the key in \"api_key\" instead\n"
		"M: routes[0].backends[0]: unknown backend \"primray\"; did you mean "
		"\"primary\"?\n"
		"M: routes[1].name: duplicate route name \"chat\"; routes[0] has it too\n");
	ck_assert_ptr_null(strstr(out, "pass@"));
	free(out);
}
END_TEST

/* --- durations and sizes ------------------------------------------------ */

static const struct duration_case {
	const char *text;
	int rc;
	tg_msec_t ms;
} duration_cases[] = {
	{ "0ms", 0, 0 },
	{ "0s", 0, 0 },
	{ "250ms", 0, 250 },
	{ "2s", 0, 2000 },
	{ "5m", 0, 300000 },
	{ "1h", 0, 3600000 },
	{ "007s", 0, 7000 },
	{ "18446744073709551615ms", 0, UINT64_MAX },
	{ "18446744073709551616ms", -2, 0 },    /* UINT64_MAX + 1 */
	{ "99999999999999999999999s", -2, 0 },  /* overflows in the digits */
	{ "18446744073709552s", -2, 0 },        /* overflows in the multiply */
	{ "5124095576030h", 0, UINT64_C(5124095576030) * 3600000 },
	{ "5124095576031h", -2, 0 },           /* the first hour count over */
	{ "99999999999999999999999x", -1, 0 },  /* too large, but no unit either */
	{ "", -1, 0 },
	{ "30", -1, 0 },
	{ "s", -1, 0 },
	{ "-1s", -1, 0 },
	{ "+1s", -1, 0 },
	{ " 1s", -1, 0 },
	{ "1s ", -1, 0 },
	{ "1 s", -1, 0 },
	{ "1.5s", -1, 0 },
	{ "1S", -1, 0 },
	{ "1sec", -1, 0 },
	{ "1d", -1, 0 },
	{ "1us", -1, 0 },
	{ "1h30m", -1, 0 },
};

START_TEST(parse_duration_table)
{
	const struct duration_case *c = &duration_cases[_i];
	tg_msec_t ms = 12345;

	ck_assert_msg(tg_parse_duration(c->text, &ms) == c->rc,
	              "tg_parse_duration(\"%s\") should return %d", c->text, c->rc);
	if (c->rc == 0)
		ck_assert_uint_eq(ms, c->ms);
	else
		ck_assert_uint_eq(ms, 12345);
}
END_TEST

static const struct size_case {
	const char *text;
	int rc;
	size_t bytes;
} size_cases[] = {
	{ "0", 0, 0 },
	{ "512", 0, 512 },
	{ "512B", 0, 512 },
	{ "64KiB", 0, 65536 },
	{ "32MiB", 0, 33554432 },
	{ "1GiB", 0, 1073741824 },
	{ "3KB", 0, 3000 },
	{ "2MB", 0, 2000000 },
	{ "1GB", 0, 1000000000 },
	{ "18446744073709551615", 0, SIZE_MAX },
	{ "18446744073709551616", -2, 0 },
	{ "17179869183GiB", 0, SIZE_MAX - (((size_t)1 << 30) - 1) },
	{ "17179869184GiB", -2, 0 },            /* 2^64 bytes */
	{ "", -1, 0 },
	{ "KiB", -1, 0 },
	{ "-1", -1, 0 },
	{ "1.5MiB", -1, 0 },
	{ "1 MiB", -1, 0 },
	{ "1kib", -1, 0 },
	{ "1K", -1, 0 },
	{ "1TiB", -1, 0 },
	{ "1MiBs", -1, 0 },
};

START_TEST(parse_size_table)
{
	const struct size_case *c = &size_cases[_i];
	size_t bytes = 12345;

	ck_assert_msg(tg_parse_size(c->text, &bytes) == c->rc,
	              "tg_parse_size(\"%s\") should return %d", c->text, c->rc);
	if (c->rc == 0)
		ck_assert_uint_eq(bytes, c->bytes);
	else
		ck_assert_uint_eq(bytes, 12345);
}
END_TEST

/* --- route matching ----------------------------------------------------- */

static struct tg_config *routes_config(void)
{
	return expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"gpt\", \"match\": {\"path\": \"/v1/chat/completions\","
		"     \"model\": \"gpt-*\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"exact\", \"match\": {\"path\": \"/v1/chat/completions\","
		"     \"model\": \"llama-3\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"classes\", \"match\": {\"model\": \"m[0-9]?\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"chat\", \"match\": {\"path\": \"/v1/chat/completions\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"files\", \"match\": {\"path\": \"/v1/files\"},"
		"     \"backends\": [\"b\"]}]}");
}


START_TEST(route_match_order_and_glob)
{
	struct tg_config *cfg = routes_config();

	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "gpt-4o"), "gpt");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "gpt-"), "gpt");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "llama-3"), "exact");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "llama-3.1"), "chat");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "GPT-4"), "chat");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", "m7x"), "classes");
	ck_assert_str_eq(match_name(cfg, "/v1/embeddings", "m1a"), "classes");
	ck_assert_str_eq(match_name(cfg, "/v1/embeddings", "mx1"), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v1/embeddings", "m1"), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions/", "x"), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v1/chat", "x"), "(none)");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(route_match_null_model)
{
	struct tg_config *cfg = routes_config();

	/* Without a model only routes without a model pattern can match,
	 * so "gpt" (pattern "gpt-*") is skipped for "chat". */
	ck_assert_str_eq(match_name(cfg, "/v1/chat/completions", NULL), "chat");
	ck_assert_str_eq(match_name(cfg, "/v1/files", NULL), "files");
	ck_assert_str_eq(match_name(cfg, "/v1/embeddings", NULL), "(none)");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(route_match_star_needs_model)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"any-model\", \"match\": {\"model\": \"*\"},"
		"   \"backends\": [\"b\"]}, {\"name\": \"rest\", \"backends\": [\"b\"]}]}");

	ck_assert_str_eq(match_name(cfg, "/x", "org/model-7b"), "any-model");
	ck_assert_str_eq(match_name(cfg, "/x", ""), "any-model");
	ck_assert_str_eq(match_name(cfg, "/x", NULL), "rest");
	tg_config_unref(cfg);
}
END_TEST

/* Config order decides between routes that differ only in method, and a
 * route without "method" takes any. */
START_TEST(route_match_methods)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"read\", \"match\": {\"path\": \"/v1/files\", \"method\": \"GET\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"write\", \"match\": {\"path\": \"/v1/files\","
		"     \"method\": [\"POST\", \"PUT\"]}, \"backends\": [\"b\"]},"
		"   {\"name\": \"batches\", \"match\": {\"path\": \"/v1/batches\"},"
		"     \"backends\": [\"b\"]}]}");

	ck_assert_uint_eq(cfg->routes[0].match_methods, tg_route_method_bit(tg_route_method_id("GET")));
	ck_assert_str_eq(route_for(cfg, "GET", "/v1/files", NULL, NULL), "read");
	ck_assert_str_eq(route_for(cfg, "POST", "/v1/files", NULL, NULL), "write");
	ck_assert_str_eq(route_for(cfg, "PUT", "/v1/files", NULL, NULL), "write");
	ck_assert_str_eq(route_for(cfg, "HEAD", "/v1/files", NULL, NULL), "(none)");
	ck_assert_str_eq(route_for(cfg, "DELETE", "/v1/batches", NULL, NULL), "batches");
	tg_config_unref(cfg);
}
END_TEST

/* The methods that would be taken, for the Allow header of a 405: only of
 * routes whose other conditions hold. */
START_TEST(route_other_methods)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"read\", \"match\": {\"path\": \"/v1/files\", \"method\": \"GET\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"tenant\", \"match\": {\"path\": \"/v1/files\", \"method\": \"DELETE\","
		"     \"headers\": {\"x-tenant\": \"a\"}}, \"backends\": [\"b\"]},"
		"   {\"name\": \"write\", \"match\": {\"path_prefix\": \"/v1/files\","
		"     \"method\": [\"POST\", \"PATCH\"]}, \"backends\": [\"b\"]}]}");
	struct tg_headers h;
	struct tg_route_query q = {.path = "/v1/files", .method = tg_route_method_id("PUT"),
	                           .headers = &h};
	char list[100];

	tg_headers_init(&h);
	ck_assert_str_eq(tg_route_method_list(tg_route_other_methods(cfg, &q), list,
	                                      sizeof(list)), "GET, POST, PATCH");
	ck_assert_int_eq(tg_headers_add(&h, "X-Tenant", 8, "a", 1), 0);
	ck_assert_str_eq(tg_route_method_list(tg_route_other_methods(cfg, &q), list,
	                                      sizeof(list)), "DELETE, GET, POST, PATCH");
	q.path = "/v1/files/abc";
	ck_assert_str_eq(tg_route_method_list(tg_route_other_methods(cfg, &q), list,
	                                      sizeof(list)), "POST, PATCH");
	q.path = "/v1/other";
	ck_assert_uint_eq(tg_route_other_methods(cfg, &q), 0);
	tg_headers_free(&h);
	tg_config_unref(cfg);
}
END_TEST

/* A prefix takes whole segments: itself and the paths under it. */
START_TEST(route_match_path_prefix)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"audio\", \"match\": {\"path_prefix\": \"/v1/audio\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"v2\", \"match\": {\"path_prefix\": \"/v2/\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"root\", \"match\": {\"path_prefix\": \"/\", \"model\": \"m\"},"
		"     \"backends\": [\"b\"]}]}");

	ck_assert_str_eq(match_name(cfg, "/v1/audio", NULL), "audio");
	ck_assert_str_eq(match_name(cfg, "/v1/audio/speech", NULL), "audio");
	ck_assert_str_eq(match_name(cfg, "/v1/audio/", NULL), "audio");
	ck_assert_str_eq(match_name(cfg, "/v1/audiobooks", NULL), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v1/audiobooks", "m"), "root");
	ck_assert_str_eq(match_name(cfg, "/v1", NULL), "(none)");
	ck_assert_str_eq(match_name(cfg, "/v2/x", NULL), "v2");
	ck_assert_str_eq(match_name(cfg, "/v2/", NULL), "v2");
	ck_assert_str_eq(match_name(cfg, "/v2", NULL), "(none)");
	ck_assert_str_eq(match_name(cfg, "/", "m"), "root");
	tg_config_unref(cfg);
}
END_TEST

/* Names in any case, values exactly; true for present, false for absent;
 * several lines compared as one joined with ", ". */
START_TEST(route_match_headers)
{
	struct tg_config *cfg = expect_valid(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"acme\", \"match\": {\"headers\": {\"X-Tenant\": \"acme\","
		"     \"x-beta\": false}}, \"backends\": [\"b\"]},"
		"   {\"name\": \"beta\", \"match\": {\"headers\": {\"x-beta\": true}},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"rest\", \"backends\": [\"b\"]}]}");
	struct tg_headers h;

	tg_headers_init(&h);
	ck_assert_str_eq(route_for(cfg, "POST", "/x", NULL, &h), "rest");
	ck_assert_int_eq(tg_headers_add(&h, "x-tenant", 8, "acme", 4), 0);
	ck_assert_str_eq(route_for(cfg, "POST", "/x", NULL, &h), "acme");
	ck_assert_int_eq(tg_headers_add(&h, "X-BETA", 6, "", 0), 0);
	ck_assert_str_eq(route_for(cfg, "POST", "/x", NULL, &h), "beta");
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "X-Tenant", 8, "ACME", 4), 0);
	ck_assert_str_eq(route_for(cfg, "POST", "/x", NULL, &h), "rest");
	tg_headers_free(&h);

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add(&h, "X-Tenant", 8, "acme", 4), 0);
	ck_assert_int_eq(tg_headers_add(&h, "X-Tenant", 8, "acme", 4), 0);
	ck_assert_str_eq(route_for(cfg, "POST", "/x", NULL, &h), "rest");
	tg_headers_free(&h);

	ck_assert_uint_eq(cfg->routes[0].n_match_headers, 2);
	ck_assert_int_eq(cfg->routes[0].match_headers[0].test, TG_HEADER_EQUALS);
	ck_assert_int_eq(cfg->routes[0].match_headers[1].test, TG_HEADER_ABSENT);
	ck_assert_int_eq(cfg->routes[1].match_headers[0].test, TG_HEADER_PRESENT);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(match_method_errors)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"a\", \"match\": {\"method\": \"post\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"method\": [\"GET\", \"FETCH\", 7, \"GET\"]},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"c\", \"match\": {\"method\": \"CONNECT\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"d\", \"match\": {\"method\": []}, \"backends\": [\"b\"]},"
		"   {\"name\": \"e\", \"match\": {\"method\": {}}, \"backends\": [\"b\"]}]}",
		"T: routes[0].match.method: unknown method \"post\"; methods are "
		"case-sensitive: write \"POST\"\n"
		"T: routes[1].match.method[1]: unknown method \"FETCH\"; use one of DELETE, "
		"GET, HEAD, POST, PUT, OPTIONS, TRACE, COPY, LOCK, MKCOL, MOVE, PROPFIND, "
		"PROPPATCH, SEARCH, UNLOCK, BIND, REBIND, UNBIND, ACL, REPORT, MKACTIVITY, "
		"CHECKOUT, MERGE, M-SEARCH, NOTIFY, SUBSCRIBE, UNSUBSCRIBE, PATCH, PURGE, "
		"MKCALENDAR, LINK, UNLINK, SOURCE\n"
		"T: routes[1].match.method[2]: expected a method name such as \"POST\", "
		"got an integer\n"
		"T: routes[1].match.method[3]: method \"GET\" is listed twice\n"
		"T: routes[2].match.method: CONNECT never reaches a route: the gateway "
		"answers it with 501, since it opens no tunnels\n"
		"T: routes[3].match.method: must list at least one method; leave out "
		"\"method\" to take any\n"
		"T: routes[4].match.method: expected a method name or an array of them, "
		"got an empty object\n");
}
END_TEST

START_TEST(match_headers_errors)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"a\", \"match\": {\"headers\": {\"x tenant\": \"a\","
		"     \"Connection\": true, \"X-Tenant\": \"a\", \"x-tenant\": false,"
		"     \"x-v\": \"a\\r\\nb\", \"x-n\": 1, \"x-s\": \"acme \", \"x-t\": \"\\tacme\"}},"
		"    \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"headers\": [\"x-tenant\"]}, \"backends\": [\"b\"]}]}",
		"T: routes[0].match.headers.x tenant: invalid header name \"x tenant\"; a name "
		"is a token of letters, digits and !#$%&'*+-.^_`|~\n"
		"T: routes[0].match.headers.Connection: \"Connection\" is a hop-by-hop header, "
		"which the gateway removes before it routes; match on an end-to-end header\n"
		"T: routes[0].match.headers.x-tenant: header \"x-tenant\" is already tested as "
		"\"X-Tenant\"; header names compare in any case\n"
		"T: routes[0].match.headers.x-v: invalid header value \"a\\x0d\\x0ab\"; a value has "
		"no CR or LF\n"
		"T: routes[0].match.headers.x-n: expected a value string, true (present) or "
		"false (absent), got an integer\n"
		"T: routes[0].match.headers.x-s: header value \"acme \" starts or ends with a "
		"space or tab, which a request's value never does (RFC 9110 section 5.5), so "
		"the test could never hold; leave them out\n"
		"T: routes[0].match.headers.x-t: header value \"\\x09acme\" starts or ends with a "
		"space or tab, which a request's value never does (RFC 9110 section 5.5), so "
		"the test could never hold; leave them out\n"
		"T: routes[1].match.headers: expected an object of header names to a value, "
		"true or false, got an array\n");
}
END_TEST

START_TEST(match_path_prefix_errors)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"a\", \"match\": {\"path\": \"/v1/x\", \"path_prefix\": \"/v1\"},"
		"     \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"path_prefix\": \"v1\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"c\", \"match\": {\"path_prefix\": \"/v1/*\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"d\", \"match\": {\"path\": \"/v1/chat;v=1\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"e\", \"match\": {\"path_prefix\": \"/v1/../x\"}, \"backends\": [\"b\"]}]}",
		"T: routes[0].match.path_prefix: set either \"path\" (one exact path) or "
		"\"path_prefix\" (a path and those under it), not both\n"
		"T: routes[1].match.path_prefix: invalid path \"v1\"; a path starts with \"/\"\n"
		"T: routes[2].match.path_prefix: invalid path \"/v1/*\"; glob patterns are not "
		"supported, since the path is compared exactly; list each path in its own "
		"route, or leave out \"path\" to match any\n"
		"T: routes[3].match.path: invalid path \"/v1/chat;v=1\", which no request can "
		"match, since the gateway answers such a request with 400: the request path "
		"\"/v1/chat;v=1\" has a \";\", which starts path parameters that servers such "
		"as Tomcat drop before they route; send the path without them, and options in "
		"the query\n"
		"T: routes[4].match.path_prefix: invalid path \"/v1/../x\", which no request can "
		"match, since the gateway answers such a request with 400: the request path "
		"\"/v1/../x\" has a \".\" or \"..\" segment, which servers remove before they "
		"route; send the path without it\n");
}
END_TEST

/* Bytes that never reach routing in a request path: the query, a
 * fragment, a space, control bytes and bytes outside ASCII. */
START_TEST(match_path_impossible_bytes)
{
	expect_errors(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": ["
		"   {\"name\": \"a\", \"match\": {\"path\": \"/v1/chat?x=1\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"path_prefix\": \"/v1#top\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"c\", \"match\": {\"path\": \"/v1/my chat\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"d\", \"match\": {\"path\": \"/v1/\\t\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"e\", \"match\": {\"path_prefix\": \"/v1/caf\u00e9\"}, \"backends\": [\"b\"]}]}",
		"T: routes[0].match.path: invalid path \"/v1/chat?x=1\", which no request can "
		"match: a request path ends where its query starts, at \"?\", and routes compare "
		"the path only; leave out the query\n"
		"T: routes[1].match.path_prefix: invalid path \"/v1#top\", which no request can "
		"match: a request carries no fragment after \"#\", and the gateway answers one "
		"that does with 400; leave out the fragment\n"
		"T: routes[2].match.path: invalid path \"/v1/my chat\", which no request can "
		"match: a request path contains only printable ASCII characters other than the "
		"space; percent-encode the byte, such as \"%20\" for a space\n"
		"T: routes[3].match.path: invalid path \"/v1/\\x09\", which no request can "
		"match: a request path contains only printable ASCII characters other than the "
		"space; percent-encode the byte, such as \"%20\" for a space\n"
		"T: routes[4].match.path_prefix: invalid path \"/v1/caf\u00e9\", which no request "
		"can match: a request path contains only printable ASCII characters other than "
		"the space; percent-encode the byte, such as \"%20\" for a space\n");
}
END_TEST

/* The gateway serves GET /v1/models itself and rejects other methods with 405. */
START_TEST(match_path_models_warned)
{
	struct tg_config *cfg;
	char *out = load_json(
		"{\"backends\": {\"b\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"a\", \"match\": {\"path\": \"/v1/models\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"b\", \"match\": {\"path_prefix\": \"/v1/models\"}, \"backends\": [\"b\"]},"
		"   {\"name\": \"c\", \"match\": {\"path\": \"/v1/my%20chat\"}, \"backends\": [\"b\"]}]}",
		&cfg);

	ck_assert_str_eq(out, "T: routes[0].match.path: warning: the gateway answers GET "
	                 "/v1/models itself and other methods on it with 405, so this route "
	                 "never sees a request; remove the route\n");
	ck_assert_ptr_nonnull(cfg);
	free(out);
	tg_config_unref(cfg);
}
END_TEST

/* tls configures the connection to an https:// backend only. */
START_TEST(tls_on_http_backend_warned)
{
	struct tg_config *cfg;
	char *out = load_json(
		"{\"backends\": {\"plain\": {\"url\": \"http://h:8000\", \"tls\": {\"verify\": false}},"
		"   \"secure\": {\"url\": \"https://h\", \"tls\": {\"verify\": false}},"
		"   \"bare\": {\"url\": \"http://h\"}},"
		" \"routes\": [{\"name\": \"a\", \"backends\": [\"plain\", \"secure\", \"bare\"]}]}",
		&cfg);

	ck_assert_str_eq(out, "T: backends.plain.tls: warning: has no effect: backend "
	                 "\"plain\" has the http:// URL \"http://h:8000\", so the gateway "
	                 "connects to it without TLS; write https:// for TLS, or remove tls\n");
	ck_assert_ptr_nonnull(cfg);
	free(out);
	tg_config_unref(cfg);
}
END_TEST

/* --- documentation ------------------------------------------------------ */

static char *read_whole_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t len = 0;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(getdelim(&text, &len, '\0', f) > 0, 1);
	fclose(f);
	return text;
}

/* Every setting in the loader's tables must be documented in the man page
 * under its full key path, so the two cannot drift apart unnoticed. */
START_TEST(man_page_lists_every_setting)
{
	char *man = read_whole_file(TG_TEST_DIR "/../../man/tollgate.json.5");
	char *settings = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&settings, &len);
	size_t checked = 0;

	tg_config_print_settings(out);
	fclose(out);

	for (char *line = strtok(settings, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char *tab = strchr(line, '\t');
		char needle[256];

		ck_assert_ptr_nonnull(tab);
		*tab = '\0';
		snprintf(needle, sizeof(needle), ".B %s\n", line);
		ck_assert_msg(strstr(man, needle) != NULL,
		              "man/tollgate.json.5 has no \".B %s\" entry", line);
		checked++;
	}

	ck_assert_uint_ge(checked, 30);
	free(settings);
	free(man);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *valid = tcase_create("valid");
	TCase *invalid = tcase_create("invalid");
	TCase *units = tcase_create("units");
	TCase *route = tcase_create("route");
	TCase *docs = tcase_create("docs");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
	tcase_add_test(valid, default_config_loads_without_env);
	tcase_add_test(valid, minimal_config_gets_defaults);
	tcase_add_test(valid, full_config_values);
	tcase_add_loop_test(valid, backend_url_split, 0, N(url_cases));
	tcase_add_loop_test(valid, backend_numeric_address, 0, N(address_cases));
	tcase_add_test(valid, env_expansion);
	tcase_add_loop_test(valid, api_key_header_values, 0, N(key_header_cases));
	tcase_add_test(valid, access_log_off);
	tcase_add_test(valid, workers_bounds_accepted);
	tcase_add_test(valid, duration_ceiling_accepted);
	tcase_add_test(valid, config_refcount);
	suite_add_tcase(s, valid);

	tcase_add_test(invalid, json_syntax_error_position);
	tcase_add_test(invalid, truncated_file_position);
	tcase_add_test(invalid, number_out_of_range_path);
	tcase_add_test(invalid, empty_file);
	tcase_add_test(invalid, duplicate_key_position);
	tcase_add_test(invalid, missing_file);
	tcase_add_test(invalid, top_level_not_object);
	tcase_add_test(invalid, missing_required_keys);
	tcase_add_loop_test(invalid, unknown_key_top_levels, 0, N(unknown_key_cases));
	tcase_add_test(invalid, unknown_key_backend_levels);
	tcase_add_loop_test(invalid, wrong_types_top, 0, N(type_cases));
	tcase_add_test(invalid, wrong_types_nested);
	tcase_add_loop_test(invalid, invalid_values, 0, N(value_cases));
	tcase_add_loop_test(invalid, invalid_backend_urls, 0, N(url_error_cases));
	tcase_add_loop_test(invalid, max_cooldown_range, 0, N(max_cooldown_cases));
	tcase_add_test(invalid, max_cooldown_bounds_accepted);
	tcase_add_test(invalid, url_userinfo_rejected_unquoted);
	tcase_add_test(invalid, unset_env_var_named);
	tcase_add_test(invalid, bad_env_reference);
	tcase_add_test(invalid, secrets_never_in_messages);
	tcase_add_test(invalid, api_key_header_errors);
	tcase_add_test(invalid, reserved_names_rejected);
	tcase_add_test(invalid, api_key_control_bytes_rejected);
	tcase_add_test(valid, api_key_tab_and_utf8_accepted);
	tcase_add_test(invalid, probe_path_errors);
	tcase_add_test(invalid, unknown_backend_in_route);
	tcase_add_test(invalid, route_list_errors);
	tcase_add_test(invalid, model_glob_errors);
	tcase_add_test(invalid, model_globs_accepted);
	tcase_add_test(invalid, many_errors_one_run);
	tcase_add_test(valid, resolver_settings);
	tcase_add_test(invalid, resolver_errors);
	suite_add_tcase(s, invalid);

	tcase_add_loop_test(units, parse_duration_table, 0, N(duration_cases));
	tcase_add_loop_test(units, parse_size_table, 0, N(size_cases));
	suite_add_tcase(s, units);

	tcase_add_test(route, route_match_order_and_glob);
	tcase_add_test(route, route_match_null_model);
	tcase_add_test(route, route_match_star_needs_model);
	tcase_add_test(route, route_match_methods);
	tcase_add_test(route, route_other_methods);
	tcase_add_test(route, route_match_path_prefix);
	tcase_add_test(route, route_match_headers);
	tcase_add_test(invalid, match_method_errors);
	tcase_add_test(invalid, match_headers_errors);
	tcase_add_test(invalid, match_path_prefix_errors);
	tcase_add_test(invalid, match_path_impossible_bytes);
	tcase_add_test(invalid, match_path_models_warned);
	tcase_add_test(invalid, tls_on_http_backend_warned);
	suite_add_tcase(s, route);

	tcase_add_test(docs, man_page_lists_every_setting);
	suite_add_tcase(s, docs);
#undef N

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
