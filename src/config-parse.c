/*
 * The machinery of the configuration loader: typed values, sections driven
 * by struct setting tables, key paths, error messages and the settings
 * printer. It declares no setting itself: config.c declares tollgate's
 * sections, and feature modules declare theirs as config-parse.h describes.
 *
 * Errors do not stop the load. Each one is printed when found, parsing goes
 * on with the next value, and tg_config_load() returns NULL at the end if any
 * was printed, so one run lists everything the user has to fix.
 *
 * Secrets: a string value may come from the environment through ${NAME}.
 * Messages quote values as written in the file, never as expanded, so an
 * expanded value cannot reach the error output.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "config-parse.h"
#include "headers.h"
#include "json-double.h"
#include "json-type.h"

/* --- messages ----------------------------------------------------------- */

/* The variable that filled the key at path or a key above it, or NULL. */
static const struct env_origin *origin_of(const struct load_ctx *ctx, const char *path)
{
	for (size_t i = 0; i < ctx->n_origins; i++) {
		const char *key = ctx->origins[i].path;
		size_t len = strlen(key);

		if (strncmp(path, key, len) == 0 && (path[len] == '\0' || path[len] == '.'))
			return &ctx->origins[i];
	}
	return NULL;
}

/* Print "FILE: ", then the key path, or the variable that filled it with
 * its value and the path in brackets. */
static void print_location(struct load_ctx *ctx, const char *path)
{
	const struct env_origin *origin = origin_of(ctx, path);
	char q[QUOTE_LEN];

	fprintf(ctx->err, "%s: ", ctx->file);
	if (origin != NULL && origin->value != NULL)
		fprintf(ctx->err, "%s=%s (%s): ", origin->name, quote(origin->value, q, sizeof(q)),
		        path);
	else if (origin != NULL)
		fprintf(ctx->err, "%s (%s): ", origin->name, path);
	else if (path[0] != '\0')
		fprintf(ctx->err, "%s: ", path);
}

/*
 * Print one error line, "FILE: PATH: message", or "FILE: message" for the
 * top level, and count it.
 */
void report(struct load_ctx *ctx, const char *path, const char *fmt, ...)
{
	va_list ap;

	print_location(ctx, path);

	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);

	fputc('\n', ctx->err);
	ctx->n_errors++;
}

void report_warning(struct load_ctx *ctx, const char *path, const char *fmt, ...)
{
	va_list ap;

	print_location(ctx, path);
	fputs("warning: ", ctx->err);

	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);

	fputc('\n', ctx->err);
}

void report_oom(struct load_ctx *ctx, const char *path)
{
	report(ctx, path, "out of memory");
}

/*
 * Write s into buf as a double-quoted string, escaping quotes, backslashes
 * and control bytes so that a message stays on one line. A long value is cut
 * and ends in "...". Returns buf.
 */
const char *quote(const char *s, char *buf, size_t size)
{
	size_t n = 0;

	assert(size >= 16);
	buf[n++] = '"';

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		/* Room for the longest escape, the closing quote and "...". */
		if (n + 4 + 1 + 3 + 1 > size) {
			memcpy(buf + n, "...\"", 5);
			return buf;
		}

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
		} else {
			buf[n++] = (char)c;
		}
	}

	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

/* The type of value as a message names it. An empty array or object gets
 * its own words, since "expected a non-empty array, got an array" would
 * hide what is wrong. */
static const char *
value_kind(const json_t *value)
{
	if (json_is_array(value) && json_array_size(value) == 0)
		return "an empty array";
	if (json_is_object(value) && json_object_size(value) == 0)
		return "an empty object";
	return tg_json_type_name(value);
}

void report_type(struct load_ctx *ctx, const char *path,
                 const char *expected, const json_t *value)
{
	report(ctx, path, "expected %s, got %s", expected, value_kind(value));
}

/* Format a size with the largest binary unit that divides it exactly. */
static const char *format_size(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB" };
	size_t u = 0;

	while (u + 1 < sizeof(units) / sizeof(units[0]) &&
	       bytes != 0 && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}

	snprintf(buf, size, "%llu%s", (unsigned long long)bytes, units[u]);
	return buf;
}

/* --- key paths ---------------------------------------------------------- */

/* Mark a key path cut by snprintf(), whose result was n, with "...". */
static const char *finish_path(char *out, int n)
{
	if (n < 0 || n >= PATH_LEN)
		memcpy(out + PATH_LEN - 4, "...", 4);
	return out;
}

/* Build "parent.key", or "key" at the top level. */
const char *path_key(char *out, const char *parent, const char *key)
{
	if (parent[0] == '\0')
		return finish_path(out, snprintf(out, PATH_LEN, "%s", key));
	return finish_path(out, snprintf(out, PATH_LEN, "%s.%s", parent, key));
}

const char *path_index(char *out, const char *parent, size_t i)
{
	return finish_path(out, snprintf(out, PATH_LEN, "%s[%zu]", parent, i));
}

/* --- environment expansion ---------------------------------------------- */

static bool is_name_start(char c)
{
	return c == '_' || isalpha((unsigned char)c);
}

static bool is_name_char(char c)
{
	return c == '_' || isalnum((unsigned char)c);
}

/*
 * Check the variable reference at p (just past "${") and return the length
 * of its name, or 0 after reporting why it is not a valid reference.
 */
static size_t scan_variable(struct load_ctx *ctx, const char *path,
                            const char *p)
{
	size_t len = 0;

	while (is_name_char(p[len]))
		len++;

	if (p[len] == '}' && len > 0 && is_name_start(p[0]))
		return len;

	if (strchr(p, '}') == NULL)
		report(ctx, path, "\"${\" without a closing \"}\"; "
		       "write \"$${\" for a literal \"${\"");
	else
		report(ctx, path, "invalid variable name after \"${\"; a name is a "
		       "letter or \"_\" followed by letters, digits or \"_\"");
	return 0;
}

/*
 * Return a copy of raw with each ${NAME} replaced by the value of the
 * environment variable NAME, and each "$${" by a literal "${". Any other '$'
 * is kept. Values are inserted as they are, not expanded again. Returns NULL
 * after reporting an unset variable or a malformed reference; the messages
 * name the variable and never contain a value.
 */
static char *expand_env(struct load_ctx *ctx, const char *path, const char *raw)
{
	char *out = NULL;
	size_t out_len = 0;
	unsigned errors = ctx->n_errors;
	FILE *f = open_memstream(&out, &out_len);

	if (f == NULL) {
		report_oom(ctx, path);
		return NULL;
	}

	for (const char *p = raw; *p != '\0'; p++) {
		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			fputs("${", f);
			p += 2;
			continue;
		}

		if (p[0] != '$' || p[1] != '{') {
			fputc(*p, f);
			continue;
		}

		size_t len = scan_variable(ctx, path, p + 2);
		if (len == 0)
			break;

		char name[PATH_LEN];
		snprintf(name, sizeof(name), "%.*s", (int)len, p + 2);
		const char *value = getenv(name);
		if (value == NULL)
			report(ctx, path, "environment variable %s is not set", name);
		else
			fputs(value, f);
		p += 2 + len;
	}

	if (fclose(f) != 0 && ctx->n_errors == errors)
		report_oom(ctx, path);

	if (ctx->n_errors != errors) {
		free(out);
		return NULL;
	}
	return out;
}

/*
 * Check that value is a JSON string and return its expanded copy, or NULL
 * after reporting. *raw, when given, receives the text as written.
 */
char *get_string(struct load_ctx *ctx, const char *path,
                 const json_t *value, const char *expected,
                 const char **raw)
{
	if (!json_is_string(value)) {
		report_type(ctx, path, expected, value);
		return NULL;
	}

	if (raw != NULL)
		*raw = json_string_value(value);
	return expand_env(ctx, path, json_string_value(value));
}

/* Look value up among the n words, compared with compare; see
 * parse_keyword(). */
static int
match_keyword(struct load_ctx *ctx, const char *path, const json_t *value,
              const struct keyword *words, size_t n,
              int (*compare)(const char *, const char *), int *out)
{
	char q[QUOTE_LEN], valid[256] = "";

	if (!json_is_string(value)) {
		report_type(ctx, path, "a string", value);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (compare(json_string_value(value), words[i].name) == 0) {
			*out = words[i].value;
			return 0;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strcat(valid, i + 1 == n ? " or " : ", ");
		strcat(valid, words[i].name);
	}
	report(ctx, path, "invalid value %s; use %s",
	       quote(json_string_value(value), q, sizeof(q)), valid);
	return -1;
}

int parse_keyword(struct load_ctx *ctx, const char *path, const json_t *value,
                  const struct keyword *words, size_t n, int *out)
{
	return match_keyword(ctx, path, value, words, n, strcmp, out);
}

int parse_keyword_any_case(struct load_ctx *ctx, const char *path, const json_t *value,
                           const struct keyword *words, size_t n, int *out)
{
	return match_keyword(ctx, path, value, words, n, strcasecmp, out);
}

/* --- addresses, names, files -------------------------------------------- */

/*
 * Split "host:port" or "[v6addr]:port" into newly allocated host (without
 * brackets) and port. Returns NULL, or the reason the address is invalid.
 */
/* 0 when the len bytes at host are written as an IP address but are not
 * one: in brackets, not IPv6 (a "%zone" suffix aside); digits and dots
 * only, not IPv4. Else getaddrinfo() would take "999.1.1.1" for a host
 * name and ask DNS. */
static int
literal_is_valid(const char *host, size_t len, int bracketed)
{
	char text[INET6_ADDRSTRLEN + 1];
	unsigned char bytes[sizeof(struct in6_addr)];
	const char *zone = bracketed ? memchr(host, '%', len) : NULL;

	if (!bracketed && strspn(host, "0123456789.") < len)
		return 1;
	if (zone != NULL)
		len = (size_t)(zone - host);
	if (len >= sizeof(text))
		return 0;
	memcpy(text, host, len);
	text[len] = '\0';
	return inet_pton(bracketed ? AF_INET6 : AF_INET, text, bytes) == 1;
}

const char *split_address(const char *addr, char **host, char **port)
{
	const char *colon, *host_start, *host_end;

	if (addr[0] == '[') {
		host_start = addr + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL)
			return "\"[\" without a closing \"]\"";
		if (host_end[1] != ':')
			return "expected \":port\" after \"]\"";
		colon = host_end + 1;
	} else {
		host_start = addr;
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return "missing \":port\"";
		if (memchr(addr, ':', (size_t)(colon - addr)) != NULL)
			return "an IPv6 address needs brackets, as in \"[::1]:8080\"";
		host_end = colon;
	}

	if (host_end == host_start)
		return "missing host";
	if (!literal_is_valid(host_start, (size_t)(host_end - host_start), addr[0] == '['))
		return addr[0] == '[' ? "the host in brackets is not a valid IPv6 address"
		                      : "the host is not a valid IPv4 address";

	const char *p = colon + 1;
	unsigned long n = 0;
	for (; *p >= '0' && *p <= '9' && n <= 65535; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (p == colon + 1 || *p != '\0' || n == 0 || n > 65535)
		return "the port must be a number from 1 to 65535";

	if (host != NULL) {
		*host = strndup(host_start, (size_t)(host_end - host_start));
		*port = strdup(colon + 1);
		if (*host == NULL || *port == NULL) {
			free(*host);
			free(*port);
			*host = *port = NULL;
			return "out of memory";
		}
	}
	return NULL;
}

bool url_has_empty_port(const char *url)
{
	const char *authority = strstr(url, "://");
	size_t len;

	if (authority == NULL)
		return false;
	authority += 3;
	len = strcspn(authority, "/?#");
	return len > 0 && authority[len - 1] == ':';
}

/* Backend and route names appear in metric labels and key paths. */
bool is_valid_name(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && strchr("_-.", *s) == NULL)
			return false;
	}
	return true;
}

bool check_unreserved_name(struct load_ctx *ctx, const char *path, const char *name,
                           const char *label, const char *placeholder, const char *meaning)
{
	char q[QUOTE_LEN];

	if (strcmp(name, placeholder) != 0)
		return true;
	report(ctx, path, "reserved name %s: the metrics label %s as %s=%s, and the "
	       "series of this name would merge with theirs; choose another name",
	       quote(name, q, sizeof(q)), meaning, label, q);
	return false;
}

/* Levenshtein distance, capped at limit + 1 to stay cheap on long names. */
size_t edit_distance(const char *a, const char *b, size_t limit)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[NAME_MAX_LEN + 1];

	if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
		return limit + 1;
	if ((la > lb ? la - lb : lb - la) > limit)
		return limit + 1;

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;

	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* Returns NULL when path names a readable regular file, or the reason. */
static const char *check_readable_file(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return strerror(errno);

	int rc = fstat(fd, &st);
	int saved_errno = errno;
	close(fd);

	if (rc < 0)
		return strerror(saved_errno);
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	return NULL;
}

/* --- values sent in HTTP headers ----------------------------------------- */

bool is_header_name(const char *name)
{
	return tg_header_name_valid(name, strlen(name));
}

/* The offset of the first byte of value that RFC 9110 section 5.5 keeps
 * out of a field value (a control byte other than HTAB, or DEL), or the
 * length of value when it has none. */
static size_t first_control_byte(const char *value)
{
	size_t i = 0;

	for (; value[i] != '\0'; i++) {
		unsigned char c = (unsigned char)value[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return i;
	}
	return i;
}

/* Name the control byte c in words a reader can find in the file. */
static const char *control_byte_name(unsigned char c, char *buf, size_t size)
{
	if (c == '\r')
		return "a carriage return (\\r)";
	if (c == '\n')
		return "a line feed (\\n)";
	snprintf(buf, size, "the control byte 0x%02x", c);
	return buf;
}

/* The length of the line break that ends value and is its only control
 * byte: "\n", "\r\n" or "\r"; 0 for any other value. */
static size_t final_line_break_len(const char *value, size_t len)
{
	size_t n = 0;

	if (n < len && value[len - 1 - n] == '\n')
		n++;
	if (n < len && value[len - 1 - n] == '\r')
		n++;
	return first_control_byte(value) == len - n ? n : 0;
}

enum tg_ows_strip header_ows_strip(const char *value)
{
	size_t len = strlen(value);
	size_t lead = strspn(value, " \t");

	if (lead == len)
		return TG_OWS_EMPTY;
	if (lead > 0 || value[len - 1] == ' ' || value[len - 1] == '\t')
		return TG_OWS_EDGES;
	return TG_OWS_KEPT;
}

bool check_header_value(struct load_ctx *ctx, const char *path, const char *raw,
                        const char *value)
{
	size_t len = strlen(value);
	size_t bad = first_control_byte(value);
	/* With no such byte as written, the environment put it there. */
	const char *subject = raw[first_control_byte(raw)] == '\0'
	                      ? "the value from the environment" : "the value";
	char name[32];

	if (bad == len)
		return true;

	if (final_line_break_len(value, len) > 0) {
		report(ctx, path, "%s ends with a line break, which an HTTP header cannot "
		       "carry; it is usually the final newline of the file or variable the "
		       "value was read from: remove it there (tollgate does not strip it)",
		       subject);
		return false;
	}
	report(ctx, path, "%s contains %s at byte %zu, which an HTTP header cannot carry; "
	       "a header value holds printable characters, spaces and tabs (the value is "
	       "not shown: it may be a secret)", subject,
	       control_byte_name((unsigned char)value[bad], name, sizeof(name)), bad + 1);
	return false;
}

/* --- typed values ------------------------------------------------------- */

static void parse_string_value(struct load_ctx *ctx, const char *path,
                               json_t *value, void *base,
                               const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char *str = get_string(ctx, path, value, "a string", &raw);
	const char *problem;

	if (str == NULL)
		return;

	if (str[0] == '\0') {
		report(ctx, path, "must not be empty");
		goto fail;
	}

	switch (s->type) {
	case T_NAME:
		if (!is_valid_name(str)) {
			report(ctx, path, "invalid name %s; use 1 to %d letters, "
			       "digits, \"_\", \"-\" or \".\"",
			       quote(raw, q, sizeof(q)), NAME_MAX_LEN);
			goto fail;
		}
		break;
	case T_FILE:
		problem = check_readable_file(str);
		if (problem != NULL) {
			report(ctx, path, "cannot read %s: %s",
			       quote(raw, q, sizeof(q)), problem);
			goto fail;
		}
		break;
	case T_ADDRESS:
		problem = split_address(str, NULL, NULL);
		if (problem != NULL) {
			report(ctx, path, "invalid address %s: %s; expected "
			       "\"host:port\"", quote(raw, q, sizeof(q)), problem);
			goto fail;
		}
		break;
	default:
		break;
	}

	*FIELD(base, s, char *) = str;
	return;

fail:
	free(str);
}

static void parse_bool_value(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base,
                             const struct setting *s)
{
	if (!json_is_boolean(value)) {
		report_type(ctx, path, "true or false", value);
		return;
	}
	*FIELD(base, s, int) = json_is_true(value);
}

/* Write the shortest text of the real v that reads back as v, as jansson
 * writes reals ("1.5", "2.0", "1e20"), into out (TG_JSON_DOUBLE_SIZE
 * bytes). Returns out. */
static const char *shortest_real(double v, char *out)
{
	for (int precision = 1; precision < 17; precision++) {
		tg_json_double_text(out, v, precision);
		if (strtod(out, NULL) == v)
			return out;
	}
	tg_json_double_text(out, v, 17);
	return out;
}

/* Whether s is an optional "-" and digits: an integer written in quotes. */
static bool is_integer_text(const char *s)
{
	if (*s == '-')
		s++;
	return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* Report value, of a setting s that takes an integer, as of the wrong
 * type. A scalar is shown, with the range of s and how to write it. */
static void report_not_integer(struct load_ctx *ctx, const char *path,
                               const json_t *value, const struct setting *s)
{
	char expected[96], q[QUOTE_LEN], real[TG_JSON_DOUBLE_SIZE];

	snprintf(expected, sizeof(expected), "an integer from %llu to %llu",
	         (unsigned long long)s->min, (unsigned long long)s->max);
	if (json_is_real(value))
		report(ctx, path, "invalid value %s; expected %s, written without a "
		       "fraction or an exponent",
		       shortest_real(json_real_value(value), real), expected);
	else if (json_is_string(value))
		report(ctx, path, "invalid value %s (a string); expected %s%s",
		       quote(json_string_value(value), q, sizeof(q)), expected,
		       is_integer_text(json_string_value(value)) ? ", written without quotes" : "");
	else if (json_is_boolean(value) || json_is_null(value))
		report(ctx, path, "invalid value %s; expected %s", json_is_null(value) ? "null" :
		       json_is_true(value) ? "true" : "false", expected);
	else
		report_type(ctx, path, expected, value);
}

static void parse_integer_value(struct load_ctx *ctx, const char *path,
                                json_t *value, void *base,
                                const struct setting *s)
{
	if (!json_is_integer(value)) {
		report_not_integer(ctx, path, value, s);
		return;
	}

	json_int_t n = json_integer_value(value);
	if (n < 0 || (uint64_t)n < s->min || (uint64_t)n > s->max) {
		report(ctx, path, "%lld is out of range; valid values are %llu to %llu",
		       (long long)n, (unsigned long long)s->min,
		       (unsigned long long)s->max);
		return;
	}

	if (s->type == T_INT)
		*FIELD(base, s, int) = (int)n;
	else
		*FIELD(base, s, size_t) = (size_t)n;
}

/* The largest value s accepts: its own max, and for a duration at most
 * DURATION_MAX. */
static uint64_t max_of(const struct setting *s)
{
	if (s->type == T_DURATION && s->max > DURATION_MAX)
		return DURATION_MAX;
	return s->max;
}

/* Report a parsed duration or size outside [s->min, max_of(s)]; shown is
 * the value as the message should print it. */
static bool check_bounds(struct load_ctx *ctx, const char *path,
                         const char *shown, uint64_t n, const struct setting *s)
{
	uint64_t max = max_of(s);
	char lo[32], hi[32];

	if (n >= s->min && n <= max)
		return true;

	if (s->type == T_DURATION) {
		tg_format_duration(s->min, lo, sizeof(lo));
		tg_format_duration(max, hi, sizeof(hi));
	} else {
		format_size(s->min, lo, sizeof(lo));
		format_size(max, hi, sizeof(hi));
	}

	if (max == UINT64_MAX)
		report(ctx, path, "%s is below the minimum of %s", shown, lo);
	else
		report(ctx, path, "%s is out of range; valid values are %s to %s",
		       shown, lo, hi);
	return false;
}

static void parse_duration_value(struct load_ctx *ctx, const char *path,
                                 json_t *value, void *base,
                                 const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	tg_msec_t ms;

	if (json_is_integer(value)) {
		report(ctx, path, "expected a string with a unit, such as \"30s\", "
		       "got an integer");
		return;
	}

	char *str = get_string(ctx, path, value, "a duration string such as \"30s\"", &raw);
	if (str == NULL)
		return;

	int rc = tg_parse_duration(str, &ms);
	free(str);

	/* Every duration has a maximum, so a value too large to count is
	 * reported with the valid range, as one that only exceeds it is. */
	if (rc == -2) {
		check_bounds(ctx, path, quote(raw, q, sizeof(q)), UINT64_MAX, s);
		return;
	}
	if (rc < 0) {
		report(ctx, path, "invalid duration %s; expected a non-negative "
		       "integer followed by ms, s, m or h, such as \"30s\"",
		       quote(raw, q, sizeof(q)));
		return;
	}

	if (check_bounds(ctx, path, quote(raw, q, sizeof(q)), ms, s))
		*FIELD(base, s, tg_msec_t) = ms;
}

/* Write into buf an example size that s accepts: "32MiB", or the maximum of
 * s when 32MiB is over it. */
static const char *size_example(const struct setting *s, char *buf, size_t size)
{
	const uint64_t usual = (uint64_t)32 << 20;

	if (usual >= s->min && usual <= s->max)
		snprintf(buf, size, "32MiB");
	else
		format_size(s->max, buf, size);
	return buf;
}

/* Write ", from MIN to MAX" into buf for a size setting with a maximum, or
 * nothing when it has none. */
static const char *size_range(const struct setting *s, char *buf, size_t size)
{
	char lo[32], hi[32];

	buf[0] = '\0';
	if (s->max != NO_MAX)
		snprintf(buf, size, ", from %s to %s", format_size(s->min, lo, sizeof(lo)),
		         format_size(s->max, hi, sizeof(hi)));
	return buf;
}

static void parse_size_value(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base, const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN], text[32];
	size_t bytes;

	/* A bare integer is a byte count. */
	if (json_is_integer(value) && json_integer_value(value) >= 0) {
		snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(value));
		bytes = (size_t)json_integer_value(value);
		if (check_bounds(ctx, path, text, bytes, s))
			*FIELD(base, s, size_t) = bytes;
		return;
	}

	if (json_is_integer(value)) {
		report(ctx, path, "%lld is negative; a size is a non-negative "
		       "number of bytes", (long long)json_integer_value(value));
		return;
	}

	char example[32], expected[96], range[96];

	size_example(s, example, sizeof(example));
	snprintf(expected, sizeof(expected), "a size such as \"%s\" or a number of bytes",
	         example);
	char *str = get_string(ctx, path, value, expected, &raw);
	if (str == NULL)
		return;

	int rc = tg_parse_size(str, &bytes);
	free(str);

	if (rc == -2 && s->max != NO_MAX) {
		check_bounds(ctx, path, quote(raw, q, sizeof(q)), UINT64_MAX, s);
		return;
	}
	if (rc == -2) {
		report(ctx, path, "%s is too large to count in bytes; write a size "
		       "such as \"%s\"", quote(raw, q, sizeof(q)), example);
		return;
	}
	if (rc < 0) {
		report(ctx, path, "invalid size %s; expected a non-negative integer "
		       "with an optional unit B, KiB, MiB, GiB, KB, MB or GB%s, "
		       "such as \"%s\"", quote(raw, q, sizeof(q)),
		       size_range(s, range, sizeof(range)), example);
		return;
	}

	if (check_bounds(ctx, path, quote(raw, q, sizeof(q)), bytes, s))
		*FIELD(base, s, size_t) = bytes;
}

void parse_value(struct load_ctx *ctx, const char *path, json_t *value,
                 void *base, const struct setting *s)
{
	switch (s->type) {
	case T_STRING:
	case T_NAME:
	case T_FILE:
	case T_ADDRESS:
		parse_string_value(ctx, path, value, base, s);
		break;
	case T_BOOL:
		parse_bool_value(ctx, path, value, base, s);
		break;
	case T_INT:
	case T_COUNT:
		parse_integer_value(ctx, path, value, base, s);
		break;
	case T_DURATION:
		parse_duration_value(ctx, path, value, base, s);
		break;
	case T_SIZE:
		parse_size_value(ctx, path, value, base, s);
		break;
	case T_SECTION:
		if (!json_is_object(value))
			report_type(ctx, path, "an object", value);
		else
			parse_section(ctx, path, value, (char *)base + s->offset, s->section);
		break;
	case T_CUSTOM:
		s->parse(ctx, path, value, base, s);
		break;
	case T_FEATURE:
		s->feature->parse(ctx, path, value, base, s);
		break;
	}
}

/* --- sections ----------------------------------------------------------- */

static const struct setting *find_setting(const struct section *sec,
                                          const char *key)
{
	for (size_t i = 0; i < sec->n; i++) {
		if (strcmp(sec->settings[i].key, key) == 0)
			return &sec->settings[i];
	}
	return NULL;
}

static void report_unknown_key(struct load_ctx *ctx, const char *path,
                               const char *key, const struct section *sec)
{
	char q[QUOTE_LEN];
	char valid[PATH_LEN * 2] = "";
	size_t len = 0;

	for (size_t i = 0; i < sec->n && len < sizeof(valid); i++) {
		len += (size_t)snprintf(valid + len, sizeof(valid) - len, "%s%s",
		                        i > 0 ? ", " : "", sec->settings[i].key);
	}

	report(ctx, path, "unknown key %s; valid keys: %s",
	       quote(key, q, sizeof(q)), valid);
}

/* Give an absent setting its default, or report it missing. */
static void apply_default(struct load_ctx *ctx, const char *parent,
                          const char *path, void *base, const struct setting *s)
{
	json_t *def = NULL;

	if (s->required) {
		report(ctx, parent, "missing required key \"%s\"", s->key);
		return;
	}

	if (s->def_fn != NULL) {
		def = s->def_fn();
	} else if (s->def != NULL) {
		def = json_loads(s->def, JSON_DECODE_ANY, NULL);
		/* A default that does not parse is a bug in the table. */
		assert(def != NULL);
	}

	if (def == NULL)
		return;

	parse_value(ctx, path, def, base, s);
	json_decref(def);
}

/*
 * Parse the JSON object obj, found at key path, into the struct at base
 * following the table sec. Unknown keys are reported first, in file order.
 * Then each setting is parsed or defaulted in table order, so a setting can
 * rely on those declared before it: routes look up backends.
 */
void parse_section(struct load_ctx *ctx, const char *path,
                   json_t *obj, void *base, const struct section *sec)
{
	const char *key;
	json_t *value;
	char child[PATH_LEN];

	json_object_foreach(obj, key, value) {
		if (find_setting(sec, key) == NULL)
			report_unknown_key(ctx, path, key, sec);
	}

	for (size_t i = 0; i < sec->n; i++) {
		const struct setting *s = &sec->settings[i];

		path_key(child, path, s->key);
		value = json_object_get(obj, s->key);
		if (value == NULL)
			apply_default(ctx, path, child, base, s);
		else
			parse_value(ctx, child, value, base, s);
	}
}

void *parse_object(struct load_ctx *ctx, const char *path, json_t *value,
                   size_t size, const struct section *sec)
{
	void *obj;

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object", value);
		return NULL;
	}

	obj = calloc(1, size);
	if (obj == NULL) {
		report_oom(ctx, path);
		return NULL;
	}

	parse_section(ctx, path, value, obj, sec);
	return obj;
}

void free_features(void *base, const struct section *sec)
{
	for (size_t i = 0; i < sec->n; i++) {
		const struct setting *s = &sec->settings[i];

		if (s->type == T_SECTION) {
			free_features((char *)base + s->offset, s->section);
		} else if (s->type == T_FEATURE) {
			void **obj = FIELD(base, s, void *);

			if (*obj != NULL)
				s->feature->free(*obj);
			*obj = NULL;
		}
	}
}

/* --- documentation ------------------------------------------------------ */

static const char *type_name(const struct setting *s)
{
	switch (s->type) {
	case T_STRING:
	case T_NAME:
		return "string";
	case T_FILE:
		return "file";
	case T_ADDRESS:
		return "host:port";
	case T_BOOL:
		return "boolean";
	case T_INT:
	case T_COUNT:
		return "integer";
	case T_DURATION:
		return "duration";
	case T_SIZE:
		return "size";
	case T_SECTION:
		return "object";
	case T_CUSTOM:
		return s->doc_type;
	case T_FEATURE:
		return s->feature->doc_type;
	}
	return "?";
}

void print_section(FILE *out, const char *prefix, const struct section *sec)
{
	char path[PATH_LEN];

	for (size_t i = 0; i < sec->n; i++) {
		const struct setting *s = &sec->settings[i];
		const struct section *child = s->section;
		const char *element = s->element;
		const char *def = "(none)";

		if (s->required)
			def = "(required)";
		else if (s->def_fn != NULL)
			def = "(computed)";
		else if (s->def != NULL)
			def = s->def;

		path_key(path, prefix, s->key);
		fprintf(out, "%s\t%s\t%s\t%s\n", path, type_name(s), def, s->help);

		/* A feature's table is private to its file. */
		if (s->type == T_FEATURE) {
			child = s->feature->section;
			element = s->feature->element;
		}

		if (child == NULL)
			continue;
		if (element != NULL)
			strncat(path, element, sizeof(path) - strlen(path) - 1);
		print_section(out, path, child);
	}
}

