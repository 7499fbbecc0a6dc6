/*
 * Unit tests of the "tracing" configuration section and the OpenTelemetry
 * environment variables that stand in for its keys. Check runs each test
 * in its own process, so setenv() in one test does not leak into another.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* By path, as check_config.c does, so that no generated header of the same
 * name is picked up instead. */
#include "../../src/config.h"
#include "trace-t.h"

#define DATA_DIR TG_TEST_DIR "/data"

#define BACKEND_AND_ROUTE \
	"\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:9001\"}}," \
	"\"routes\": [{\"name\": \"r\", \"backends\": [\"b\"]}]"

/* Load {BACKEND_AND_ROUTE, extra}; return the error output (to free). */
static char *
load(const char *extra, struct tg_config **cfg)
{
	char path[] = "/tmp/tg-check-trace-config-XXXXXX";
	char *json = NULL, *out = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&out, &len);
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(asprintf(&json, "{" BACKEND_AND_ROUTE "%s%s}", extra[0] ? "," : "",
	                          extra), 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	*cfg = tg_config_load(path, err);
	fclose(err);
	unlink(path);
	free(json);
	return out;
}

static const struct tg_tracing_config *
load_ok(const char *extra, struct tg_config **cfg)
{
	char *errors = load(extra, cfg);

	ck_assert_msg(*cfg != NULL, "load failed: %s", errors);
	ck_assert_str_eq(errors, "");
	free(errors);
	ck_assert_ptr_nonnull((*cfg)->tracing);
	return (*cfg)->tracing;
}

/* Load {BACKEND_AND_ROUTE, extra}, expect it to pass with output that
 * contains warning, and return the tracing config. */
static const struct tg_tracing_config *
load_warned(const char *extra, const char *warning, struct tg_config **cfg)
{
	char *errors = load(extra, cfg);

	ck_assert_msg(*cfg != NULL, "load failed: %s", errors);
	ck_assert_msg(strstr(errors, warning) != NULL, "no \"%s\" in: %s", warning, errors);
	free(errors);
	ck_assert_ptr_nonnull((*cfg)->tracing);
	return (*cfg)->tracing;
}

/* Expect the load to fail with an error line containing text. */
static void
load_fails(const char *extra, const char *text)
{
	struct tg_config *cfg;
	char *errors = load(extra, &cfg);

	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(errors, text) != NULL, "no \"%s\" in: %s", text, errors);
	free(errors);
}

START_TEST(absent_section_gets_defaults)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc = load_ok("", &cfg);

	ck_assert_int_eq(tc->enabled, 0);
	ck_assert_double_eq(tc->sample_ratio, 1.0);
	ck_assert_str_eq(tc->service_name, "tollgate");
	ck_assert_ptr_null(tc->endpoint);
	ck_assert_uint_eq(tc->max_queue_size, 2048);
	ck_assert_uint_eq(tc->max_export_batch_size, 512);
	ck_assert_uint_eq(tc->schedule_delay, 5000);
	ck_assert_uint_eq(tc->export_timeout, 30000);
	ck_assert_uint_eq(tc->max_attempts, 5);
	ck_assert_uint_eq(tc->recent_traces, 100);
	ck_assert_int_eq(tc->capture_content, 0);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(endpoint_enables_and_splits)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc = load_ok(
		"\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:4318/v1/traces\","
		" \"headers\": {\"X-Tenant\": \"t1\"}}, \"sample_ratio\": 0.25,"
		" \"service_name\": \"gw\"}", &cfg);

	ck_assert_int_eq(tc->enabled, 1);
	ck_assert_str_eq(tc->endpoint_host, "127.0.0.1");
	ck_assert_str_eq(tc->endpoint_port, "4318");
	ck_assert_str_eq(tc->endpoint_path, "/v1/traces");
	ck_assert_uint_eq(tc->n_headers, 1);
	ck_assert_str_eq(tc->headers[0].name, "X-Tenant");
	ck_assert_str_eq(tc->headers[0].value, "t1");
	ck_assert_double_eq(tc->sample_ratio, 0.25);
	ck_assert_str_eq(tc->service_name, "gw");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(enabled_without_endpoint)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc = load_ok("\"tracing\": {\"enabled\": true}", &cfg);

	ck_assert_int_eq(tc->enabled, 1);
	ck_assert_ptr_null(tc->endpoint);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(endpoint_default_port_and_path)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc = load_ok(
		"\"tracing\": {\"otlp\": {\"endpoint\": \"http://[::1]\"}}", &cfg);

	ck_assert_str_eq(tc->endpoint_host, "::1");
	ck_assert_str_eq(tc->endpoint_port, "80");
	ck_assert_str_eq(tc->endpoint_path, "/");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(https_endpoint_gets_tls_context)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc = load_ok(
		"\"tracing\": {\"otlp\": {\"endpoint\": \"https://collector.example/v1/traces\","
		" \"tls\": {\"ca_file\": \"" DATA_DIR "/test-cert.pem\"}}}", &cfg);

	ck_assert_int_eq(tc->endpoint_tls, 1);
	ck_assert_str_eq(tc->endpoint_host, "collector.example");
	ck_assert_str_eq(tc->endpoint_port, "443");
	ck_assert_str_eq(tc->tls.ca_file, DATA_DIR "/test-cert.pem");
	ck_assert_int_eq(tc->tls.verify, 1);
	ck_assert_ptr_nonnull(tc->tls_ctx);
	tg_config_unref(cfg);

	tc = load_ok("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:4318\"}}", &cfg);
	ck_assert_int_eq(tc->endpoint_tls, 0);
	ck_assert_ptr_null(tc->tls_ctx);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(invalid_tls_settings_rejected)
{
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"https://127.0.0.1:4318/v1/traces\","
	           " \"tls\": {\"ca_file\": \"/nonexistent/ca.pem\"}}}",
	           "tracing.otlp.tls.ca_file: cannot read \"/nonexistent/ca.pem\": "
	           "No such file or directory");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"https://127.0.0.1:4318/v1/traces\","
	           " \"tls\": {\"ca_file\": \"" DATA_DIR "/minimal.json\"}}}",
	           "tracing.otlp.tls.ca_file: cannot load CA certificates from \""
	           DATA_DIR "/minimal.json\" (expected a PEM bundle): error:");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:4318/v1/traces\","
	           " \"tls\": {\"ca_file\": \"" DATA_DIR "/test-cert.pem\"}}}",
	           "tracing.otlp.tls.ca_file: \"" DATA_DIR "/test-cert.pem\" is set, but "
	           "tracing.otlp.endpoint is http://; a CA file applies only to an https:// endpoint");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:99999/v1/traces\"}}",
	           "tracing.otlp.endpoint: invalid endpoint \"http://127.0.0.1:99999/v1/traces\": "
	           "not a valid URL; expected http:// or https://, a host, an optional port from 1 to 65535 and a path");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"https://127.0.0.1:4318/v1/traces\","
	           " \"tls\": {\"verify\": \"no\"}}}",
	           "tracing.otlp.tls.verify: expected true or false");
}
END_TEST

START_TEST(invalid_values_rejected)
{
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"ftp://collector/v1/traces\"}}",
	           "tracing.otlp.endpoint: invalid endpoint \"ftp://collector/v1/traces\": "
	           "the scheme must be http:// or https://");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"collector:4318\"}}",
	           "tracing.otlp.endpoint: invalid endpoint");
	/* libevent reads an empty port as none, and the default port would
	 * have been used; port 0 was taken for the default too. */
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:/v1/traces\"}}",
	           "tracing.otlp.endpoint: invalid endpoint \"http://127.0.0.1:/v1/traces\": "
	           "the port is empty; write a port from 1 to 65535, or no \":\" for the "
	           "default (80 for http://, 443 for https://)");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:0/v1/traces\"}}",
	           "tracing.otlp.endpoint: invalid endpoint \"http://127.0.0.1:0/v1/traces\": "
	           "port 0 is no port; write a port from 1 to 65535");
	load_fails("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:4318/v1/traces#x\"}}",
	           "tracing.otlp.endpoint: invalid endpoint \"http://127.0.0.1:4318/v1/traces#x\": "
	           "the URL has a fragment (\"#...\"), which a request cannot carry");
	load_fails("\"tracing\": {\"sample_ratio\": 1.5}",
	           "tracing.sample_ratio: 1.5 is out of range; valid values are 0 to 1");
	load_fails("\"tracing\": {\"sample_ratio\": \"all\"}", "tracing.sample_ratio: expected");
	load_fails("\"tracing\": {\"batch\": {\"max_queue_size\": 10, \"max_export_batch_size\": 20}}",
	           "tracing.batch.max_export_batch_size: 20 is larger than batch.max_queue_size (10)");
	load_fails("\"tracing\": {\"batch\": {\"max_queue_size\": 0}}",
	           "tracing.batch.max_queue_size: 0 is out of range");
	load_fails("\"tracing\": {\"sampling\": 1}", "tracing: unknown key \"sampling\"");
	load_fails("\"tracing\": {\"otlp\": {\"headers\": {\"Content-Type\": \"x\"}}}",
	           "tracing.otlp.headers.Content-Type: invalid header name");
	load_fails("\"tracing\": {\"otlp\": {\"headers\": {\"X-A\": 1}}}",
	           "tracing.otlp.headers.X-A: expected a string");
	load_fails("\"tracing\": {\"retry\": {\"initial_backoff\": \"10s\", \"max_backoff\": \"1s\"}}",
	           "tracing.retry.max_backoff: is shorter than retry.initial_backoff");
	load_fails("\"tracing\": true", "tracing: expected an object");
}
END_TEST

START_TEST(environment_fills_missing_keys)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/", 1);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b , X-Scope=tenant-1", 1);
	setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", 1);
	setenv("OTEL_SERVICE_NAME", "edge-gw", 1);
	setenv("OTEL_BSP_SCHEDULE_DELAY", "200", 1);
	setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100", 1);
	setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50", 1);
	setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", 1);
	setenv("OTEL_TRACES_SAMPLER_ARG", "0.5", 1);
	tc = load_ok("", &cfg);

	ck_assert_int_eq(tc->enabled, 1);
	ck_assert_str_eq(tc->endpoint, "http://127.0.0.1:4318/v1/traces");
	ck_assert_uint_eq(tc->n_headers, 2);
	ck_assert_str_eq(tc->headers[0].name, "api-key");
	ck_assert_str_eq(tc->headers[0].value, "a b");
	ck_assert_str_eq(tc->headers[1].name, "X-Scope");
	ck_assert_uint_eq(tc->export_timeout, 2500);
	ck_assert_str_eq(tc->service_name, "edge-gw");
	ck_assert_uint_eq(tc->schedule_delay, 200);
	ck_assert_uint_eq(tc->max_queue_size, 100);
	ck_assert_uint_eq(tc->max_export_batch_size, 50);
	ck_assert_double_eq(tc->sample_ratio, 0.5);
	tg_config_unref(cfg);
}
END_TEST

/* The traces path goes at the end of the base URL's path, before a query. */
START_TEST(endpoint_base_with_query)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/otlp?tenant=a", 1);
	tc = load_ok("", &cfg);
	ck_assert_str_eq(tc->endpoint, "http://127.0.0.1:4318/otlp/v1/traces?tenant=a");
	ck_assert_str_eq(tc->endpoint_path, "/otlp/v1/traces?tenant=a");
	tg_config_unref(cfg);

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318?tenant=a", 1);
	tc = load_ok("", &cfg);
	ck_assert_str_eq(tc->endpoint_path, "/v1/traces?tenant=a");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(file_wins_over_environment)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1111/x", 1);
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:2222", 1);
	setenv("OTEL_SERVICE_NAME", "from-env", 1);
	tc = load_warned("\"tracing\": {\"service_name\": \"from-file\"}",
	                 "OTEL_SERVICE_NAME: warning: ignored, because the file sets "
	                 "tracing.service_name, which wins over the variable", &cfg);
	ck_assert_str_eq(tc->service_name, "from-file");
	/* The signal-specific variable is the whole URL and comes first. */
	ck_assert_str_eq(tc->endpoint, "http://127.0.0.1:1111/x");
	tg_config_unref(cfg);

	tc = load_warned("\"tracing\": {\"otlp\": {\"endpoint\": \"http://127.0.0.1:3333/v1/traces\"}}",
	                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: warning: ignored", &cfg);
	ck_assert_str_eq(tc->endpoint_port, "3333");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(sdk_disabled_turns_default_off)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", 1);
	setenv("OTEL_SDK_DISABLED", "true", 1);
	tc = load_ok("", &cfg);
	ck_assert_int_eq(tc->enabled, 0);
	tg_config_unref(cfg);

	tc = load_warned("\"tracing\": {\"enabled\": true}",
	                 "OTEL_SDK_DISABLED: warning: ignored", &cfg);
	ck_assert_int_eq(tc->enabled, 1);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(invalid_environment_named)
{
	setenv("OTEL_BSP_SCHEDULE_DELAY", "5s", 1);
	load_fails("", "OTEL_BSP_SCHEDULE_DELAY=\"5s\" (tracing.batch.schedule_delay): invalid "
	           "value; expected a whole number of milliseconds from 1 to 3600000\n");
	unsetenv("OTEL_BSP_SCHEDULE_DELAY");
	setenv("OTEL_BSP_MAX_QUEUE_SIZE", "99999999999999999999", 1);
	load_fails("", "OTEL_BSP_MAX_QUEUE_SIZE=\"99999999999999999999\" "
	           "(tracing.batch.max_queue_size): invalid value; expected a whole number "
	           "from 1 to 1048576\n");
}
END_TEST

/* The file wins, so a variable whose key it sets is not used, nor checked:
 * any value of it gets the same warning. */
START_TEST(overridden_variable_ignored)
{
	static const char *const values[] = { "abc", "0", "5000" };
	static const char file[] = "\"tracing\": {\"batch\": {\"schedule_delay\": \"1s\"}, "
	                           "\"sample_ratio\": 0.5}";
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_TRACES_SAMPLER", "jaeger_remote", 1);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		setenv("OTEL_BSP_SCHEDULE_DELAY", values[i], 1);
		tc = load_warned(file, "OTEL_BSP_SCHEDULE_DELAY: warning: ignored, because the "
		                 "file sets tracing.batch.schedule_delay, which wins over the "
		                 "variable\n", &cfg);
		ck_assert_uint_eq(tc->schedule_delay, 1000);
		tg_config_unref(cfg);
	}
	tc = load_warned(file, "OTEL_TRACES_SAMPLER: warning: ignored, because the file sets "
	                 "tracing.sample_ratio", &cfg);
	ck_assert_double_eq(tc->sample_ratio, 0.5);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(invalid_sampler_named)
{
	setenv("OTEL_TRACES_SAMPLER", "jaeger_remote", 1);
	load_fails("", "OTEL_TRACES_SAMPLER=\"jaeger_remote\" (tracing.sample_ratio): "
	           "unsupported sampler; use always_on,");
	setenv("OTEL_TRACES_SAMPLER", "traceidratio", 1);
	setenv("OTEL_TRACES_SAMPLER_ARG", "2", 1);
	load_fails("", "OTEL_TRACES_SAMPLER_ARG=\"2\" (tracing.sample_ratio): invalid ratio; "
	           "expected a number from 0 to 1\n");
}
END_TEST

START_TEST(protocol_from_environment)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", 1);
	tc = load_ok("", &cfg);
	ck_assert_int_eq(tc->protocol, TG_OTLP_HTTP_JSON);
	tg_config_unref(cfg);

	/* The traces variable wins over the general one, and the file over both. */
	setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf", 1);
	tc = load_ok("", &cfg);
	ck_assert_int_eq(tc->protocol, TG_OTLP_HTTP_PROTOBUF);
	tg_config_unref(cfg);
	tc = load_warned("\"tracing\": {\"otlp\": {\"protocol\": \"http/json\"}}",
	                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: warning: ignored", &cfg);
	ck_assert_int_eq(tc->protocol, TG_OTLP_HTTP_JSON);
	tg_config_unref(cfg);
}
END_TEST

/* The file has no tracing.otlp.protocol, so the error names the variable. */
START_TEST(invalid_protocol_names_variable)
{
	setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml", 1);
	load_fails("", "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/xml\" (tracing.otlp.protocol): "
	           "unsupported protocol \"http/xml\"; use \"http/protobuf\" or \"http/json\"");
	setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc2", 1);
	load_fails("", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"grpc2\" (tracing.otlp.protocol): "
	           "unsupported protocol \"grpc2\"");
}
END_TEST

/* grpc, the other value of the standard, may be set for every process of
 * a host: it gets a warning that names the variable and what to set, and
 * the default protocol. */
START_TEST(grpc_variable_warns_and_falls_back)
{
	static const char *const names[] = {
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct tg_config *cfg;
		char *errors;

		setenv(names[i], i == 0 ? "grpc" : "GRPC", 1);
		errors = load("", &cfg);
		ck_assert_msg(cfg != NULL, "load failed: %s", errors);
		ck_assert_int_eq(cfg->tracing->protocol, TG_OTLP_HTTP_PROTOBUF);
		ck_assert_msg(strstr(errors, names[i]) != NULL, "no %s in: %s", names[i], errors);
		ck_assert_msg(strstr(errors, "warning: ") != NULL, "no warning in: %s", errors);
		ck_assert_msg(strstr(errors, "http/protobuf or http/json") != NULL,
		              "no valid values in: %s", errors);
		free(errors);
		tg_config_unref(cfg);
		unsetenv(names[i]);
	}
}
END_TEST

/* In the file, grpc stays an error, whose message gives the reason and the valid values. */
START_TEST(grpc_in_file_rejected)
{
	load_fails("\"tracing\": {\"otlp\": {\"protocol\": \"grpc\"}}",
	           "tracing.otlp.protocol: unsupported protocol \"grpc\": tollgate exports "
	           "over OTLP/HTTP only; use \"http/protobuf\" or \"http/json\"");
}
END_TEST

/* A value that passes the variable's own check but not the key's is
 * reported with the variable, its value and the key it fills. */
START_TEST(key_errors_name_variable)
{
	static const struct {
		const char *name, *value, *text;
	} cases[] = {
		{"OTEL_BSP_SCHEDULE_DELAY", "0", "OTEL_BSP_SCHEDULE_DELAY=\"0\" "
		 "(tracing.batch.schedule_delay): \"0ms\" is out of range; valid values are 1ms to 1h"},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "0", "OTEL_BSP_MAX_QUEUE_SIZE=\"0\" "
		 "(tracing.batch.max_queue_size): 0 is out of range"},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"5000\" "
		 "(tracing.batch.max_export_batch_size): 5000 is larger than batch.max_queue_size"},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "99999999", "OTEL_EXPORTER_OTLP_TIMEOUT=\"99999999\" "
		 "(tracing.otlp.timeout): \"99999999ms\" is out of range"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://h", "OTEL_EXPORTER_OTLP_ENDPOINT=\"ftp://h\" "
		 "(tracing.otlp.endpoint): invalid endpoint \"ftp://h/v1/traces\": the scheme"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="
		 "\"http://\" (tracing.otlp.endpoint): invalid endpoint \"http://\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv(cases[i].name, cases[i].value, 1);
		load_fails("", cases[i].text);
		unsetenv(cases[i].name);
	}
}
END_TEST

/* Header values may be secrets: an error names the variable alone. */
START_TEST(header_errors_name_variable_only)
{
	struct tg_config *cfg;
	char *errors;

	setenv("OTEL_EXPORTER_OTLP_HEADERS", "Host=s3cr3t", 1);
	errors = load("", &cfg);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(errors, "OTEL_EXPORTER_OTLP_HEADERS (tracing.otlp.headers.Host): "
	                     "invalid header name \"Host\"") != NULL, "%s", errors);
	ck_assert_ptr_null(strstr(errors, "s3cr3t"));
	free(errors);
}
END_TEST

/* A header value from the variable is literal text: "${" in it is not a
 * reference to expand, as it is in the file. */
START_TEST(header_values_not_expanded)
{
	struct tg_config *cfg;
	const struct tg_tracing_config *tc;

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", 1);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=${HOME},b=$${x}", 1);
	tc = load_ok("", &cfg);
	ck_assert_uint_eq(tc->n_headers, 2);
	ck_assert_str_eq(tc->headers[0].value, "${HOME}");
	ck_assert_str_eq(tc->headers[1].value, "$${x}");
	tg_config_unref(cfg);
}
END_TEST

START_TEST(header_values_never_quoted)
{
	struct tg_config *cfg;
	char *errors;

	setenv("SECRET_TOKEN", "s3cr3t\nx", 1);
	errors = load("\"tracing\": {\"otlp\": {\"headers\": {\"Authorization\": "
	              "\"Bearer ${SECRET_TOKEN}\"}}}", &cfg);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(strstr(errors, "tracing.otlp.headers.Authorization: the value "
	                             "from the environment contains a line feed (\\n) at byte 14"));
	ck_assert_ptr_null(strstr(errors, "s3cr3t"));
	free(errors);
}
END_TEST

static Suite *
trace_config_suite(void)
{
	Suite *s = suite_create("trace_config");
	TCase *file = tcase_create("file");
	TCase *environment = tcase_create("environment");

	tcase_add_test(file, absent_section_gets_defaults);
	tcase_add_test(file, endpoint_enables_and_splits);
	tcase_add_test(file, enabled_without_endpoint);
	tcase_add_test(file, endpoint_default_port_and_path);
	tcase_add_test(file, https_endpoint_gets_tls_context);
	tcase_add_test(file, invalid_tls_settings_rejected);
	tcase_add_test(file, invalid_values_rejected);
	tcase_add_test(file, header_values_never_quoted);
	tcase_add_test(environment, environment_fills_missing_keys);
	tcase_add_test(environment, file_wins_over_environment);
	tcase_add_test(environment, endpoint_base_with_query);
	tcase_add_test(environment, sdk_disabled_turns_default_off);
	tcase_add_test(environment, invalid_environment_named);
	tcase_add_test(environment, invalid_sampler_named);
	tcase_add_test(environment, overridden_variable_ignored);
	tcase_add_test(environment, protocol_from_environment);
	tcase_add_test(environment, invalid_protocol_names_variable);
	tcase_add_test(environment, grpc_variable_warns_and_falls_back);
	tcase_add_test(file, grpc_in_file_rejected);
	tcase_add_test(environment, key_errors_name_variable);
	tcase_add_test(environment, header_errors_name_variable_only);
	tcase_add_test(environment, header_values_not_expanded);
	suite_add_tcase(s, file);
	suite_add_tcase(s, environment);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(trace_config_suite());
	int failed;

	/* Each test must run in its own process: they set variables. */
	srunner_set_fork_status(runner, CK_FORK);
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
