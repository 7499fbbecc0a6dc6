/*
 * The "tracing" section, and the OpenTelemetry environment variables that
 * stand in for its keys.
 *
 * A key written in the file wins. A key the file leaves out takes its
 * value from the standard variable when one is set, else the default
 * below. The variables are read at every load. A variable whose key the
 * file sets is neither used nor checked, and gets a warning that it is
 * ignored, so that a value the gateway does not use cannot fail a load.
 *
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  otlp.endpoint, used as is
 *   OTEL_EXPORTER_OTLP_ENDPOINT         otlp.endpoint, with /v1/traces added
 *   OTEL_EXPORTER_OTLP_[TRACES_]HEADERS otlp.headers, "k=v,k2=v2", percent-encoded
 *   OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT otlp.timeout, milliseconds
 *   OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL otlp.protocol
 *   OTEL_BSP_EXPORT_TIMEOUT             otlp.timeout, milliseconds
 *   OTEL_BSP_SCHEDULE_DELAY             batch.schedule_delay, milliseconds
 *   OTEL_BSP_MAX_QUEUE_SIZE             batch.max_queue_size
 *   OTEL_BSP_MAX_EXPORT_BATCH_SIZE      batch.max_export_batch_size
 *   OTEL_SERVICE_NAME                   service_name
 *   OTEL_TRACES_SAMPLER[_ARG]           sample_ratio
 *   OTEL_SDK_DISABLED=true              enabled defaults to false
 *
 * The protocol defaults to http/protobuf, as in the OpenTelemetry SDKs:
 * every OTLP/HTTP receiver takes it, and it costs the exporter thread less
 * than JSON. "grpc", the other value of the variable, is not supported.
 * From the variable it gets a warning and the default, as the JavaScript
 * SDK (sdk-node) treats a protocol it does not support. The variable may
 * be set for every process of a host, most of which may speak gRPC. In
 * the file it is an error.
 *
 * An error in a value that a variable filled names the variable and its
 * value (struct env_origin), since the file has no such key to look up.
 *
 * For an https:// endpoint the TLS context is made here, at every load, so
 * that a CA file OpenSSL cannot read fails the load rather than each
 * export. free_tracing frees it with the snapshot.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "config.h"
#include "headers.h"
#include "tls.h"
#include "trace-config.h"
#include "trace-ring.h"
#include "trace-t.h"

#define MAX_QUEUE_SIZE (1u << 20)
#define MAX_HEADERS 64

static void parse_sample_ratio(struct load_ctx *ctx, const char *path,
                               json_t *value, void *base, const struct setting *s);
static void parse_endpoint(struct load_ctx *ctx, const char *path,
                           json_t *value, void *base, const struct setting *s);
static void parse_headers(struct load_ctx *ctx, const char *path,
                          json_t *value, void *base, const struct setting *s);
static void parse_protocol(struct load_ctx *ctx, const char *path,
                           json_t *value, void *base, const struct setting *s);

static const struct setting otlp_settings[] = {
	{ .key = "endpoint", .type = T_CUSTOM, .parse = parse_endpoint,
	  .doc_type = "string",
	  .help = "OTLP/HTTP traces URL, http(s)://host:port/v1/traces; absent: no export" },
	{ .key = "protocol", .type = T_CUSTOM, .parse = parse_protocol,
	  .def = "\"http/protobuf\"", .doc_type = "string",
	  .offset = offsetof(struct tg_tracing_config, protocol),
	  .help = "encoding of the export body: \"http/protobuf\" or \"http/json\"" },
	{ .key = "headers", .type = T_CUSTOM, .parse = parse_headers,
	  .doc_type = "object",
	  .help = "request headers sent with every export, name to value" },
	{ .key = "timeout", .type = T_DURATION, .def = "\"30s\"",
	  .min = 1, .max = 600000,
	  .offset = offsetof(struct tg_tracing_config, export_timeout),
	  .help = "time one export may take, retries included" },
	{ .key = "shutdown_timeout", .type = T_DURATION, .def = "\"5s\"",
	  .max = 600000,
	  .offset = offsetof(struct tg_tracing_config, shutdown_timeout),
	  .help = "on SIGTERM, time to send the spans still queued" },
	{ .key = "tls", .type = T_SECTION, .def = "{}",
	  .offset = offsetof(struct tg_tracing_config, tls),
	  .section = &tg_tls_client_section, .help = "TLS to an https:// endpoint" },
};
static const struct section otlp_section = SECTION(otlp_settings);

static const struct setting batch_settings[] = {
	{ .key = "max_queue_size", .type = T_COUNT, .def = "2048",
	  .min = 1, .max = MAX_QUEUE_SIZE,
	  .offset = offsetof(struct tg_tracing_config, max_queue_size),
	  .help = "spans waiting for export; more are dropped; restart to change" },
	{ .key = "max_export_batch_size", .type = T_COUNT, .def = "512",
	  .min = 1, .max = MAX_QUEUE_SIZE,
	  .offset = offsetof(struct tg_tracing_config, max_export_batch_size),
	  .help = "spans per export request, at most max_queue_size" },
	{ .key = "schedule_delay", .type = T_DURATION, .def = "\"5s\"",
	  .min = 1, .max = 3600000,
	  .offset = offsetof(struct tg_tracing_config, schedule_delay),
	  .help = "time between two exports when no batch is full" },
};
static const struct section batch_section = SECTION(batch_settings);

static const struct setting retry_settings[] = {
	{ .key = "max_attempts", .type = T_COUNT, .def = "5", .min = 1, .max = 100,
	  .offset = offsetof(struct tg_tracing_config, max_attempts),
	  .help = "attempts per export on 429, 502, 503, 504 or connection failure" },
	{ .key = "initial_backoff", .type = T_DURATION, .def = "\"1s\"",
	  .min = 1, .max = 600000,
	  .offset = offsetof(struct tg_tracing_config, initial_backoff),
	  .help = "delay before the first retry when no Retry-After came; doubles" },
	{ .key = "max_backoff", .type = T_DURATION, .def = "\"5s\"",
	  .min = 1, .max = 600000,
	  .offset = offsetof(struct tg_tracing_config, max_backoff),
	  .help = "maximum delay between two attempts without Retry-After" },
};
static const struct section retry_section = SECTION(retry_settings);

static const struct setting tracing_settings[] = {
	{ .key = "enabled", .type = T_BOOL,
	  .offset = offsetof(struct tg_tracing_config, enabled),
	  .help = "record spans; default: true when an OTLP endpoint is set" },
	{ .key = "sample_ratio", .type = T_CUSTOM, .parse = parse_sample_ratio,
	  .def = "1.0", .doc_type = "number",
	  .help = "share of new traces sampled, 0 to 1; continued traces follow "
	          "their parent" },
	{ .key = "service_name", .type = T_STRING, .def = "\"tollgate\"",
	  .offset = offsetof(struct tg_tracing_config, service_name),
	  .help = "service.name of the exported spans" },
	{ .key = "recent_traces", .type = T_COUNT, .def = "100", .max = TG_RING_MAX_TRACES,
	  .offset = offsetof(struct tg_tracing_config, recent_traces),
	  .help = "traces kept for GET /api/traces on the admin listener" },
	{ .key = "capture_content", .type = T_BOOL, .def = "false",
	  .offset = offsetof(struct tg_tracing_config, capture_content),
	  .help = "record prompts and completions in gen_ai.*.messages" },
	{ .key = "max_content_length", .type = T_SIZE, .def = "\"4KiB\"",
	  .min = 1, .max = 1024 * 1024,
	  .offset = offsetof(struct tg_tracing_config, max_content_length),
	  .help = "message text kept per span and direction when capturing" },
	{ .key = "otlp", .type = T_SECTION, .def = "{}", .section = &otlp_section,
	  .help = "where and how spans are exported" },
	{ .key = "batch", .type = T_SECTION, .def = "{}", .section = &batch_section,
	  .help = "batching of exports" },
	{ .key = "retry", .type = T_SECTION, .def = "{}", .section = &retry_section,
	  .help = "retries of failed exports" },
};
static const struct section tracing_section = SECTION(tracing_settings);

/* --- typed values ------------------------------------------------------- */

static void
parse_sample_ratio(struct load_ctx *ctx, const char *path, json_t *value,
                   void *base, const struct setting *s)
{
	double ratio;

	(void)s;
	if (!json_is_number(value)) {
		report_type(ctx, path, "a number from 0 to 1", value);
		return;
	}
	ratio = json_number_value(value);
	if (!(ratio >= 0.0 && ratio <= 1.0)) {
		report(ctx, path, "%g is out of range; valid values are 0 to 1", ratio);
		return;
	}
	((struct tg_tracing_config *)base)->sample_ratio = ratio;
}

/* Map "http/protobuf" or "http/json", the values of OTEL_EXPORTER_OTLP_PROTOCOL
 * that an OTLP/HTTP exporter can use, to *out. Returns 0, or -1 for any
 * other name. */
static int
protocol_of(const char *name, enum tg_otlp_protocol *out)
{
	if (strcmp(name, "http/protobuf") == 0)
		*out = TG_OTLP_HTTP_PROTOBUF;
	else if (strcmp(name, "http/json") == 0)
		*out = TG_OTLP_HTTP_JSON;
	else
		return -1;
	return 0;
}

/* Report raw as an unsupported protocol under name, which is the key path
 * or the variable that raw came from. */
static void
report_protocol(struct load_ctx *ctx, const char *name, const char *raw)
{
	char q[QUOTE_LEN];

	if (strcasecmp(raw, "grpc") == 0)
		report(ctx, name, "unsupported protocol %s: tollgate exports over OTLP/HTTP "
		       "only; use \"http/protobuf\" or \"http/json\", with the receiver's "
		       "OTLP/HTTP endpoint (port 4318 by default)", quote(raw, q, sizeof(q)));
	else
		report(ctx, name, "unsupported protocol %s; use \"http/protobuf\" or "
		       "\"http/json\"", quote(raw, q, sizeof(q)));
}

static void
parse_protocol(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	const char *raw;
	char *name = get_string(ctx, path, value, "\"http/protobuf\" or \"http/json\"", &raw);

	if (name == NULL)
		return;
	if (protocol_of(name, FIELD(base, s, enum tg_otlp_protocol)) != 0)
		report_protocol(ctx, path, raw);
	free(name);
}

/* Split an http:// or https:// URL into host, port (default 80 or 443)
 * and path with query (default "/"). Returns NULL, or why the URL cannot
 * be used. */
static const char *
split_endpoint(const char *url, struct tg_tracing_config *tc)
{
	struct evhttp_uri *uri = evhttp_uri_parse_with_flags(url, 0);
	const char *scheme, *host, *path, *query;
	char port[8];
	const char *problem = NULL;

	if (uri == NULL)
		return "not a valid URL; expected http:// or https://, a host, an optional "
		       "port from 1 to 65535 and a path";
	scheme = evhttp_uri_get_scheme(uri);
	host = evhttp_uri_get_host(uri);
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);

	if (scheme == NULL || (strcasecmp(scheme, "http") != 0 &&
	                       strcasecmp(scheme, "https") != 0))
		problem = "the scheme must be http:// or https://";
	else if (host == NULL || host[0] == '\0')
		problem = "the URL has no host";
	else if (evhttp_uri_get_userinfo(uri) != NULL)
		problem = "credentials in the URL are not supported; use tracing.otlp.headers";
	else if (evhttp_uri_get_port(uri) == 0)
		problem = "port 0 is no port; write a port from 1 to 65535";
	else if (url_has_empty_port(url))
		problem = "the port is empty; write a port from 1 to 65535, or no \":\" for "
		          "the default (80 for http://, 443 for https://)";
	else if (evhttp_uri_get_fragment(uri) != NULL)
		problem = "the URL has a fragment (\"#...\"), which a request cannot carry";
	if (problem != NULL) {
		evhttp_uri_free(uri);
		return problem;
	}

	tc->endpoint_tls = strcasecmp(scheme, "https") == 0;
	snprintf(port, sizeof(port), "%d", evhttp_uri_get_port(uri) > 0
	         ? evhttp_uri_get_port(uri) : tc->endpoint_tls ? 443 : 80);
	/* "[::1]" is kept as "::1", the form that name resolution takes. */
	if (host[0] == '[')
		tc->endpoint_host = strndup(host + 1, strlen(host) - 2);
	else
		tc->endpoint_host = strdup(host);
	tc->endpoint_port = strdup(port);
	if (asprintf(&tc->endpoint_path, "%s%s%s", path && path[0] ? path : "/",
	             query ? "?" : "", query ? query : "") < 0)
		tc->endpoint_path = NULL;
	evhttp_uri_free(uri);
	if (tc->endpoint_host == NULL || tc->endpoint_port == NULL || tc->endpoint_path == NULL)
		return "out of memory";
	return NULL;
}

static void
parse_endpoint(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	struct tg_tracing_config *tc = base;
	const char *raw, *problem;
	char q[QUOTE_LEN];
	char *url;

	(void)s;
	url = get_string(ctx, path, value, "a URL such as \"http://127.0.0.1:4318/v1/traces\"",
	                 &raw);
	if (url == NULL)
		return;
	problem = split_endpoint(url, tc);
	if (problem != NULL) {
		report(ctx, path, "invalid endpoint %s: %s", quote(raw, q, sizeof(q)), problem);
		free(url);
		return;
	}
	tc->endpoint = url;
}

/* Headers the exporter sets itself. */
static int
is_reserved_header(const char *name)
{
	return strcasecmp(name, "Host") == 0 || strcasecmp(name, "Content-Type") == 0 ||
	       strcasecmp(name, "Content-Length") == 0 ||
	       strcasecmp(name, "Transfer-Encoding") == 0 ||
	       strcasecmp(name, "Connection") == 0;
}

static void
parse_headers(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	struct tg_tracing_config *tc = base;
	const char *name, *raw;
	json_t *item;
	char child[PATH_LEN], q[QUOTE_LEN];

	(void)s;
	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of header names to values", value);
		return;
	}
	if (json_object_size(value) > MAX_HEADERS) {
		report(ctx, path, "%zu headers; at most %d are allowed",
		       json_object_size(value), MAX_HEADERS);
		return;
	}
	tc->headers = calloc(json_object_size(value) + 1, sizeof(*tc->headers));
	if (tc->headers == NULL) {
		report_oom(ctx, path);
		return;
	}
	json_object_foreach(value, name, item) {
		char *text;

		path_key(child, path, name);
		if (!is_header_name(name) || is_reserved_header(name)) {
			report(ctx, child, "invalid header name %s; use a token other than "
			       "Host, Content-Type, Content-Length, Transfer-Encoding and "
			       "Connection", quote(name, q, sizeof(q)));
			continue;
		}
		/* Values may be secrets: never quoted in messages. */
		text = get_string(ctx, child, item, "a string", &raw);
		if (text == NULL)
			continue;
		if (!check_header_value(ctx, child, raw, text)) {
			free(text);
			continue;
		}
		tc->headers[tc->n_headers].name = strdup(name);
		tc->headers[tc->n_headers].value = text;
		if (tc->headers[tc->n_headers].name == NULL) {
			report_oom(ctx, child);
			free(text);
			continue;
		}
		tc->n_headers++;
	}
}

/* --- environment variables ---------------------------------------------- */

/* The maximum number of keys that variables stand for: endpoint, headers,
 * timeout, protocol, the three batch keys, service_name, sample_ratio and
 * enabled. */
#define MAX_ORIGINS 10

/* The state of filling the tracing section at path from the environment. */
struct env_fill {
	struct load_ctx *ctx;
	const char *path;
	struct env_origin origins[MAX_ORIGINS];
	size_t n_origins;
};

/* Record that variable name, with value (NULL to keep it out of
 * messages), stands for the key at key (such as "otlp.timeout"), so that
 * report() names the variable in an error at that key, from here on. */
static void
note_origin(struct env_fill *f, const char *key, const char *name, const char *value)
{
	struct env_origin *o;

	assert(f->n_origins < MAX_ORIGINS);
	o = &f->origins[f->n_origins++];
	path_key(o->path, f->path, key);
	o->name = name;
	o->value = value;
	f->ctx->origins = f->origins;
	f->ctx->n_origins = f->n_origins;
}

static const char *
env(const char *name)
{
	const char *value = getenv(name);

	return value != NULL && value[0] != '\0' ? value : NULL;
}

/* The first of two variables that is set, the signal-specific one first,
 * or the specific one when neither is. */
static const char *
first_set(const char *specific, const char *general)
{
	return env(specific) == NULL && env(general) != NULL ? general : specific;
}

/*
 * Return the value of variable name for the member key of obj, the key at
 * path under the section (such as "batch.schedule_delay"). Return NULL when
 * the variable is unset, when obj is NULL (the file has another value where
 * the object belongs, which the section parser reports), or when the file
 * sets the key. The file wins, so in that last case the variable gets a
 * warning that it is ignored. A variable that is used is noted as the
 * origin of the key, so that errors at the key name it, and its value
 * unless that may be a secret (the headers).
 */
static const char *
env_for(struct env_fill *f, json_t *obj, const char *key, const char *path,
        const char *name)
{
	const char *value = env(name);
	char full[PATH_LEN];

	if (value == NULL || obj == NULL)
		return NULL;
	if (json_object_get(obj, key) == NULL) {
		note_origin(f, path, name, strcmp(key, "headers") == 0 ? NULL : value);
		return value;
	}

	report_warning(f->ctx, name, "ignored, because the file sets %s, which wins over "
	               "the variable", path_key(full, f->path, path));
	return NULL;
}

/* The object under key in obj, made when absent. NULL when key contains
 * something else, which the section parser then reports. */
static json_t *
child_object(json_t *obj, const char *key)
{
	json_t *child = json_object_get(obj, key);

	if (child == NULL) {
		child = json_object();
		if (json_object_set_new(obj, key, child) != 0)
			return NULL;
	}
	return json_is_object(child) ? child : NULL;
}

/* Put value under key unless the file set it. Takes the reference.
 * Returns 1 when value was put there. */
static int
fill(json_t *obj, const char *key, json_t *value)
{
	if (obj == NULL || json_object_get(obj, key) != NULL || value == NULL) {
		json_decref(value);
		return 0;
	}
	return json_object_set_new(obj, key, value) == 0;
}

/* The setting of section named key, which must be there. */
static const struct setting *
setting_named(const struct section *section, const char *key)
{
	for (size_t i = 0; i < section->n; i++)
		if (strcmp(section->settings[i].key, key) == 0)
			return &section->settings[i];
	assert(!"no such setting");
	return NULL;
}

/*
 * Read variable name, which stands for the setting s at path under the
 * section and contains milliseconds (a duration) or a count: an integer of 0
 * or more. A value that is not one is reported at the key, which names the
 * variable and the value (env_for()), with the setting's range. The
 * section parser reports an integer out of that range. Returns 0, or -1
 * after the report.
 */
static int
env_uint(struct env_fill *f, const char *value, const char *path, const struct setting *s,
         unsigned long long *out)
{
	char full[PATH_LEN];
	char *end;

	errno = 0;
	*out = strtoull(value, &end, 10);
	if (isdigit((unsigned char)value[0]) && *end == '\0' && errno != ERANGE)
		return 0;

	report(f->ctx, path_key(full, f->path, path), "invalid value; expected %s from %llu "
	       "to %llu", s->type == T_DURATION ? "a whole number of milliseconds"
	                                        : "a whole number",
	       (unsigned long long)s->min, (unsigned long long)s->max);
	return -1;
}

/* Fill the duration or count at key of obj, a member of section, from
 * variable name unless the file sets it. path is the key under the tracing
 * section (such as "otlp.timeout"). The section parser reports a number
 * out of the setting's range, and a count past LLONG_MAX reads as that. */
static void
fill_number(struct env_fill *f, json_t *obj, const struct section *section,
            const char *path, const char *key, const char *name)
{
	const struct setting *s = setting_named(section, key);
	const char *value = env_for(f, obj, key, path, name);
	unsigned long long n;
	char text[32];
	json_t *number;

	if (value == NULL || env_uint(f, value, path, s, &n) != 0)
		return;
	if (s->type == T_DURATION) {
		snprintf(text, sizeof(text), "%llums", n);
		number = json_string(text);
	} else {
		number = json_integer((json_int_t)(n > LLONG_MAX ? LLONG_MAX : n));
	}
	fill(obj, key, number);
}

/* Decode %XX escapes in place; 0, or -1 on a malformed escape. */
static int
percent_decode(char *s)
{
	char *out = s;

	for (; *s != '\0'; s++) {
		if (*s != '%') {
			*out++ = *s;
			continue;
		}
		if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
			return -1;
		char hex[3] = { s[1], s[2], '\0' };

		*out++ = (char)strtol(hex, NULL, 16);
		s += 2;
	}
	*out = '\0';
	return 0;
}

static char *
trimmed(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* A JSON string of s for a value that the section parser then reads, with
 * each "${" written "$${", so that the parser takes it as text and not as
 * a variable to expand. NULL when memory ran out. */
static json_t *
unexpanded_string(const char *s)
{
	size_t len = strlen(s), n = 0;
	char *text = malloc(2 * len + 1);
	json_t *value;

	if (text == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '$' && s[i + 1] == '{')
			text[n++] = '$';
		text[n++] = s[i];
	}
	text[n] = '\0';
	value = json_string(text);
	free(text);
	return value;
}

/* OTEL_EXPORTER_OTLP_HEADERS: "name=value,name2=value2", values
 * percent-encoded (the W3C Baggage format, which the OTLP exporter
 * specification names). */
static void
fill_headers(struct env_fill *f, json_t *otlp, const char *value)
{
	struct load_ctx *ctx = f->ctx;
	json_t *headers;
	char *copy, *item, *save = NULL;
	char path[PATH_LEN];

	if (value == NULL)
		return;
	path_key(path, f->path, "otlp.headers");
	headers = json_object();
	copy = strdup(value);
	if (headers == NULL || copy == NULL) {
		report_oom(ctx, path);
		json_decref(headers);
		free(copy);
		return;
	}
	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');

		if (eq == NULL) {
			report(ctx, path, "an entry has no \"=\"; expected name=value pairs "
			       "separated by commas");
			continue;
		}
		*eq = '\0';
		if (percent_decode(eq + 1) != 0) {
			report(ctx, path, "a value has an invalid %%XX escape");
			continue;
		}
		json_object_set_new(headers, trimmed(item), unexpanded_string(trimmed(eq + 1)));
	}
	free(copy);
	json_object_set_new(otlp, "headers", headers);
}

/* OTEL_EXPORTER_OTLP_ENDPOINT is a base URL that the traces path is
 * appended to, at the end of its path and so before a query; the _TRACES_
 * variable is the whole URL. */
static void
fill_endpoint(struct env_fill *f, json_t *otlp)
{
	static const char traces[] = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
	static const char general[] = "OTEL_EXPORTER_OTLP_ENDPOINT";
	const char *name = first_set(traces, general);
	const char *base = env_for(f, otlp, "endpoint", "otlp.endpoint", name);
	char *joined;
	size_t path_end;

	if (base == NULL)
		return;
	if (name == traces) {
		fill(otlp, "endpoint", json_string(base));
		return;
	}
	path_end = strcspn(base, "?");
	if (asprintf(&joined, "%.*s%sv1/traces%s", (int)path_end, base,
	             path_end > 0 && base[path_end - 1] == '/' ? "" : "/", base + path_end) < 0)
		return;
	fill(otlp, "endpoint", json_string(joined));
	free(joined);
}

/* Fill otlp.protocol from the variable name, whose value the file did not
 * override (NULL: none). The value is checked here so that the message can tell grpc, which gets a
 * warning and the default, from an invalid value. */
static void
fill_protocol(struct env_fill *f, json_t *otlp, const char *name, const char *value)
{
	enum tg_otlp_protocol protocol;
	char path[PATH_LEN];

	if (value == NULL)
		return;
	if (strcasecmp(value, "grpc") == 0)
		report_warning(f->ctx, name, "\"%s\" is not supported, so spans are exported with "
		               "http/protobuf: tollgate exports over OTLP/HTTP only. Set %s to "
		               "http/protobuf or http/json for tollgate, with the receiver's "
		               "OTLP/HTTP endpoint (port 4318 by default)", value, name);
	else if (protocol_of(value, &protocol) != 0)
		report_protocol(f->ctx, path_key(path, f->path, "otlp.protocol"), value);
	else
		fill(otlp, "protocol", json_string(value));
}

/* OTEL_TRACES_SAMPLER names a sampler; tollgate's sampling is always
 * parent-based, so only the ratio for new traces follows from it. */
static void
fill_sample_ratio(struct env_fill *f, json_t *obj)
{
	struct load_ctx *ctx = f->ctx;
	const char *sampler = env_for(f, obj, "sample_ratio", "sample_ratio",
	                              "OTEL_TRACES_SAMPLER");
	const char *arg = env("OTEL_TRACES_SAMPLER_ARG");
	char q[QUOTE_LEN], path[PATH_LEN];
	char *end;
	double ratio;

	if (sampler == NULL)
		return;
	path_key(path, f->path, "sample_ratio");
	if (strcmp(sampler, "always_on") == 0 || strcmp(sampler, "parentbased_always_on") == 0) {
		fill(obj, "sample_ratio", json_real(1.0));
	} else if (strcmp(sampler, "always_off") == 0 ||
	           strcmp(sampler, "parentbased_always_off") == 0) {
		fill(obj, "sample_ratio", json_real(0.0));
	} else if (strcmp(sampler, "traceidratio") == 0 ||
	           strcmp(sampler, "parentbased_traceidratio") == 0) {
		if (arg == NULL)
			return;
		ratio = strtod(arg, &end);
		if (*end != '\0' || !(ratio >= 0.0 && ratio <= 1.0)) {
			report(ctx, "", "OTEL_TRACES_SAMPLER_ARG=%s (%s): invalid ratio; expected a "
			       "number from 0 to 1", quote(arg, q, sizeof(q)), path);
			return;
		}
		fill(obj, "sample_ratio", json_real(ratio));
	} else {
		report(ctx, path, "unsupported sampler; use always_on, always_off, traceidratio "
		       "or their parentbased_ forms");
	}
}

/* Fill the keys obj leaves out from the environment, and record in f
 * which variable filled each. */
static void
fill_from_environment(struct env_fill *f, json_t *obj)
{
	json_t *otlp = child_object(obj, "otlp");
	json_t *batch = child_object(obj, "batch");
	const char *disabled = env_for(f, obj, "enabled", "enabled", "OTEL_SDK_DISABLED");
	const char *name, *value;

	fill_endpoint(f, otlp);
	name = first_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS");
	fill_headers(f, otlp, env_for(f, otlp, "headers", "otlp.headers", name));
	name = first_set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT");
	if (env(name) == NULL)
		name = "OTEL_BSP_EXPORT_TIMEOUT";
	fill_number(f, otlp, &otlp_section, "otlp.timeout", "timeout", name);
	name = first_set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL");
	fill_protocol(f, otlp, name, env_for(f, otlp, "protocol", "otlp.protocol", name));
	fill_number(f, batch, &batch_section, "batch.schedule_delay", "schedule_delay",
	            "OTEL_BSP_SCHEDULE_DELAY");
	fill_number(f, batch, &batch_section, "batch.max_queue_size", "max_queue_size",
	            "OTEL_BSP_MAX_QUEUE_SIZE");
	fill_number(f, batch, &batch_section, "batch.max_export_batch_size",
	            "max_export_batch_size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
	value = env_for(f, obj, "service_name", "service_name", "OTEL_SERVICE_NAME");
	if (value != NULL)
		fill(obj, "service_name", json_string(value));
	fill_sample_ratio(f, obj);

	/* Tracing is on by default when spans have somewhere to go. */
	fill(obj, "enabled", json_boolean(otlp != NULL &&
	                                  json_object_get(otlp, "endpoint") != NULL &&
	                                  !(disabled && strcasecmp(disabled, "true") == 0)));
}

/* --- the section -------------------------------------------------------- */

static void
free_tracing(void *obj)
{
	struct tg_tracing_config *tc = obj;

	for (size_t i = 0; i < tc->n_headers; i++) {
		free(tc->headers[i].name);
		if (tc->headers[i].value != NULL)
			explicit_bzero(tc->headers[i].value, strlen(tc->headers[i].value));
		free(tc->headers[i].value);
	}
	free(tc->headers);
	free(tc->service_name);
	free(tc->endpoint);
	free(tc->endpoint_host);
	free(tc->endpoint_port);
	free(tc->endpoint_path);
	free(tc->tls.ca_file);
	SSL_CTX_free(tc->tls_ctx);
	free(tc);
}

/* Check otlp.tls against the endpoint's scheme, and make the TLS context
 * of an https:// endpoint. */
static void
setup_endpoint_tls(struct load_ctx *ctx, const char *path, struct tg_tracing_config *tc)
{
	char child[PATH_LEN], q[QUOTE_LEN], why[PATH_MAX + 400];

	if (tc->endpoint == NULL)
		return;
	if (!tc->endpoint_tls) {
		if (tc->tls.ca_file != NULL)
			report(ctx, path_key(child, path, "otlp.tls.ca_file"),
			       "%s is set, but tracing.otlp.endpoint is http://; a CA file applies "
			       "only to an https:// endpoint", quote(tc->tls.ca_file, q, sizeof(q)));
		return;
	}
	tc->tls_ctx = tg_tls_client_ctx(&tc->tls, why, sizeof(why));
	if (tc->tls_ctx == NULL)
		report(ctx, path_key(child, path, tc->tls.ca_file != NULL ? "otlp.tls.ca_file"
		                                                          : "otlp.tls"), "%s", why);
}

static void
parse_tracing(struct load_ctx *ctx, const char *path, json_t *value, void *base,
              const struct setting *s)
{
	struct tg_tracing_config *tc;
	struct env_fill filled;
	json_t *merged;
	char child[PATH_LEN];

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object", value);
		return;
	}
	merged = json_deep_copy(value);
	if (merged == NULL) {
		report_oom(ctx, path);
		return;
	}
	filled = (struct env_fill){ .ctx = ctx, .path = path };
	fill_from_environment(&filled, merged);

	/* Until the checks below are done, errors in filled keys name their
	 * variables. */
	ctx->origins = filled.origins;
	ctx->n_origins = filled.n_origins;
	tc = parse_object(ctx, path, merged, sizeof(*tc), &tracing_section);
	json_decref(merged);
	if (tc == NULL) {
		ctx->origins = NULL;
		ctx->n_origins = 0;
		return;
	}

	if (tc->max_export_batch_size > tc->max_queue_size && tc->max_queue_size > 0)
		report(ctx, path_key(child, path, "batch.max_export_batch_size"),
		       "%zu is larger than batch.max_queue_size (%zu)",
		       tc->max_export_batch_size, tc->max_queue_size);
	if (tc->max_backoff < tc->initial_backoff)
		report(ctx, path_key(child, path, "retry.max_backoff"),
		       "is shorter than retry.initial_backoff");
	setup_endpoint_tls(ctx, path, tc);
	ctx->origins = NULL;
	ctx->n_origins = 0;

	*FIELD(base, s, struct tg_tracing_config *) = tc;
}

const struct feature tg_tracing_feature = {
	.parse = parse_tracing,
	.free = free_tracing,
	.section = &tracing_section,
	.doc_type = "object",
};
