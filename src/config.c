/*
 * Loading and validation of the JSON configuration file.
 *
 * Every setting is declared once, in the tables near the end of this file:
 * key, type, field, default, bounds and one line of help. The same tables
 * drive parsing, defaults, range checks, the list of valid keys in "unknown
 * key" messages and tg_config_print_settings(). Defaults are written as JSON
 * text and go through the same parser as values read from the file.
 *
 * Errors do not stop the load. Each one is printed when found, parsing goes
 * on with the next value, and tg_config_load() returns NULL at the end if any
 * was printed, so one run lists everything the user has to fix.
 *
 * Secrets: a string value may come from the environment through ${NAME}.
 * Messages quote values as written in the file, never as expanded, and never
 * quote api_key at all, so neither an expanded value nor a key can reach the
 * error output.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/http.h>
#include <jansson.h>

#include "config.h"

#define PATH_LEN 256    /* key path such as "backends.primary.pool.max_idle" */
#define QUOTE_LEN 100   /* a value quoted in a message; longer ones are cut */
#define NAME_MAX_LEN 64 /* backend and route names */
#define MAX_WORKERS 256

struct load_ctx {
	const char *file;
	FILE *err;
	unsigned n_errors;
	struct tg_config *cfg;  /* being built; routes look up its backends */
};

enum setting_type {
	T_STRING,       /* char *, non-empty */
	T_NAME,         /* char *, letters, digits, '_', '-', '.' */
	T_FILE,         /* char *, a regular file readable at load time */
	T_ADDRESS,      /* char *, "host:port" or "[v6addr]:port" */
	T_BOOL,         /* int, 0 or 1 */
	T_INT,          /* int within [min, max] */
	T_COUNT,        /* size_t within [min, max] */
	T_DURATION,     /* tg_msec_t within [min, max] milliseconds */
	T_SIZE,         /* size_t within [min, max] bytes */
	T_SECTION,      /* object whose settings write into the same base */
	T_CUSTOM,       /* parsed by setting.parse */
};

struct setting;

/* Parse value, found at key path, into the struct at base. Report problems
 * through ctx and leave the field as it was. */
typedef void parse_fn(struct load_ctx *ctx, const char *path, json_t *value,
                      void *base, const struct setting *s);

struct section {
	const struct setting *settings;
	size_t n;
};

struct setting {
	const char *key;
	enum setting_type type;
	size_t offset;                  /* of the field in the base struct */
	const char *def;                /* default as JSON text; NULL: none */
	json_t *(*def_fn)(void);        /* computed default, documented in help */
	bool required;
	uint64_t min, max;              /* bounds of numbers, durations, sizes */
	const struct section *section;  /* T_SECTION, or the element of a list */
	const char *element;            /* "[]" or ".NAME": how docs name one */
	parse_fn *parse;                /* T_CUSTOM */
	const char *doc_type;           /* T_CUSTOM type, for docs */
	const char *help;
};

#define FIELD(base, s, type) ((type *)(void *)((char *)(base) + (s)->offset))

/* --- messages ----------------------------------------------------------- */

static void report(struct load_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Print one error line, "FILE: PATH: message", or "FILE: message" for the
 * top level, and count it.
 */
static void report(struct load_ctx *ctx, const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(ctx->err, "%s: ", ctx->file);
	if (path[0] != '\0')
		fprintf(ctx->err, "%s: ", path);

	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);

	fputc('\n', ctx->err);
	ctx->n_errors++;
}

static void report_oom(struct load_ctx *ctx, const char *path)
{
	report(ctx, path, "out of memory");
}

/*
 * Write s into buf as a double-quoted string, escaping quotes, backslashes
 * and control bytes so that a message stays on one line. A long value is cut
 * and ends in "...". Returns buf.
 */
static const char *quote(const char *s, char *buf, size_t size)
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

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a fractional number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown JSON type";
}

static void report_type(struct load_ctx *ctx, const char *path,
                        const char *expected, const json_t *value)
{
	report(ctx, path, "expected %s, got %s", expected, json_type_name(value));
}

/* Format a duration with the largest unit that divides it exactly. */
static const char *format_duration(tg_msec_t ms, char *buf, size_t size)
{
	if (ms != 0 && ms % (60 * 60 * 1000) == 0)
		snprintf(buf, size, "%lluh", (unsigned long long)(ms / (60 * 60 * 1000)));
	else if (ms != 0 && ms % (60 * 1000) == 0)
		snprintf(buf, size, "%llum", (unsigned long long)(ms / (60 * 1000)));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, size, "%llums", (unsigned long long)ms);
	return buf;
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
static const char *path_key(char *out, const char *parent, const char *key)
{
	if (parent[0] == '\0')
		return finish_path(out, snprintf(out, PATH_LEN, "%s", key));
	return finish_path(out, snprintf(out, PATH_LEN, "%s.%s", parent, key));
}

static const char *path_index(char *out, const char *parent, size_t i)
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
static char *get_string(struct load_ctx *ctx, const char *path,
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

/* --- addresses, names, files -------------------------------------------- */

/*
 * Split "host:port" or "[v6addr]:port" into newly allocated host (without
 * brackets) and port. Returns NULL, or the reason the address is invalid.
 */
static const char *split_address(const char *addr, char **host, char **port)
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

/* Backend and route names appear in metric labels and key paths. */
static bool is_valid_name(const char *s)
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

/* --- typed values ------------------------------------------------------- */

static void parse_section(struct load_ctx *ctx, const char *path,
                          json_t *obj, void *base, const struct section *sec);

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

static void parse_integer_value(struct load_ctx *ctx, const char *path,
                                json_t *value, void *base,
                                const struct setting *s)
{
	if (!json_is_integer(value)) {
		report_type(ctx, path, "an integer", value);
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

/* Report a parsed duration or size outside [s->min, s->max]; shown is the
 * value as the message should print it. */
static bool check_bounds(struct load_ctx *ctx, const char *path,
                         const char *shown, uint64_t n, const struct setting *s)
{
	char lo[32], hi[32];

	if (n >= s->min && n <= s->max)
		return true;

	if (s->type == T_DURATION) {
		format_duration(s->min, lo, sizeof(lo));
		format_duration(s->max, hi, sizeof(hi));
	} else {
		format_size(s->min, lo, sizeof(lo));
		format_size(s->max, hi, sizeof(hi));
	}

	if (s->max == UINT64_MAX)
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

	if (rc < 0) {
		report(ctx, path, "invalid duration %s; expected a non-negative "
		       "integer followed by ms, s, m or h, such as \"30s\"",
		       quote(raw, q, sizeof(q)));
		return;
	}

	if (check_bounds(ctx, path, quote(raw, q, sizeof(q)), ms, s))
		*FIELD(base, s, tg_msec_t) = ms;
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

	char *str = get_string(ctx, path, value,
	                       "a size such as \"32MiB\" or a number of bytes", &raw);
	if (str == NULL)
		return;

	int rc = tg_parse_size(str, &bytes);
	free(str);

	if (rc < 0) {
		report(ctx, path, "invalid size %s; expected a non-negative integer "
		       "with an optional unit B, KiB, MiB, GiB, KB, MB or GB, "
		       "such as \"32MiB\"", quote(raw, q, sizeof(q)));
		return;
	}

	if (check_bounds(ctx, path, quote(raw, q, sizeof(q)), bytes, s))
		*FIELD(base, s, size_t) = bytes;
}

static void parse_value(struct load_ctx *ctx, const char *path, json_t *value,
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
			parse_section(ctx, path, value, base, s->section);
		break;
	case T_CUSTOM:
		s->parse(ctx, path, value, base, s);
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
static void parse_section(struct load_ctx *ctx, const char *path,
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

/* --- custom settings ---------------------------------------------------- */

static json_t *default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	return json_integer(n);
}

static void parse_access_log(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base, const struct setting *s)
{
	if (json_is_false(value) || json_is_null(value)) {
		*FIELD(base, s, char *) = NULL;
		return;
	}

	char *str = get_string(ctx, path, value,
	                       "a path, \"-\" for standard output, or false", NULL);
	if (str == NULL)
		return;

	if (str[0] == '\0') {
		report(ctx, path, "must not be empty; use false to turn the log off");
		free(str);
		return;
	}
	*FIELD(base, s, char *) = str;
}

static const struct section listen_section;

static void parse_listen_entry(struct load_ctx *ctx, const char *path,
                               json_t *value, struct tg_listen *l)
{
	static const struct setting address = {
		.key = "address", .type = T_ADDRESS,
		.offset = offsetof(struct tg_listen, address),
	};

	if (json_is_string(value))
		parse_string_value(ctx, path, value, l, &address);
	else if (json_is_object(value))
		parse_section(ctx, path, value, l, &listen_section);
	else
		report_type(ctx, path, "\"host:port\" or an object", value);

	if (l->address == NULL)
		return;

	const char *problem = split_address(l->address, &l->host, &l->port);
	if (problem != NULL)
		report(ctx, path, "%s", problem);
}

static void parse_listen(struct load_ctx *ctx, const char *path, json_t *value,
                         void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	char child[PATH_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of addresses", value);
		return;
	}
	if (n == 0) {
		report(ctx, path, "must list at least one address");
		return;
	}

	cfg->listen = calloc(n, sizeof(*cfg->listen));
	if (cfg->listen == NULL) {
		report_oom(ctx, path);
		return;
	}
	cfg->n_listen = n;

	for (size_t i = 0; i < n; i++) {
		path_index(child, path, i);
		parse_listen_entry(ctx, child, json_array_get(value, i), &cfg->listen[i]);

		for (size_t j = 0; j < i && cfg->listen[i].address != NULL; j++) {
			if (cfg->listen[j].address != NULL &&
			    strcmp(cfg->listen[i].address, cfg->listen[j].address) == 0)
				report(ctx, child, "same address as %s[%zu]", path, j);
		}
	}
}

/*
 * Fill the connection fields of b from its URL: scheme, host, port, Host
 * header and path prefix. Credentials in the URL are rejected, because they
 * would be logged with it; the message does not quote such a URL.
 */
static void parse_url(struct load_ctx *ctx, const char *path, json_t *value,
                      void *base, const struct setting *s)
{
	struct tg_backend *b = base;
	const char *raw;
	char q[QUOTE_LEN];
	char *url = get_string(ctx, path, value, "a URL string", &raw);
	struct evhttp_uri *uri = NULL;

	(void)s;
	if (url == NULL)
		return;

	/* A URL without a scheme is as unusable as one that does not parse. */
	uri = evhttp_uri_parse_with_flags(url, 0);
	if (uri == NULL || evhttp_uri_get_scheme(uri) == NULL) {
		if (strchr(raw, '@') != NULL)
			report(ctx, path, "invalid URL; expected http://HOST[:PORT][/PATH] "
			       "or https://...");
		else
			report(ctx, path, "invalid URL %s; expected "
			       "http://HOST[:PORT][/PATH] or https://...",
			       quote(raw, q, sizeof(q)));
		goto out;
	}

	if (evhttp_uri_get_userinfo(uri) != NULL) {
		report(ctx, path, "the URL must not contain credentials (user:password@); "
		       "put the key in \"api_key\" instead");
		goto out;
	}

	const char *scheme = evhttp_uri_get_scheme(uri);
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		report(ctx, path, "unsupported URL scheme in %s; use http:// or https://",
		       quote(raw, q, sizeof(q)));
		goto out;
	}

	const char *host = evhttp_uri_get_host(uri);
	if (host == NULL || host[0] == '\0') {
		report(ctx, path, "the URL %s has no host", quote(raw, q, sizeof(q)));
		goto out;
	}

	if (evhttp_uri_get_query(uri) != NULL || evhttp_uri_get_fragment(uri) != NULL) {
		report(ctx, path, "the URL %s must not have a query or fragment",
		       quote(raw, q, sizeof(q)));
		goto out;
	}

	int port = evhttp_uri_get_port(uri);
	if (port == 0) {
		report(ctx, path, "the URL %s has port 0; valid ports are 1 to 65535",
		       quote(raw, q, sizeof(q)));
		goto out;
	}

	b->tls = strcasecmp(scheme, "https") == 0;
	int default_port = b->tls ? 443 : 80;
	if (port < 0)
		port = default_port;

	/* libevent keeps the brackets of an IPv6 literal: the Host header
	 * needs them, the resolver and the SNI name do not. */
	size_t host_len = strlen(host);
	if (host[0] == '[')
		b->host = strndup(host + 1, host_len - 2);
	else
		b->host = strdup(host);

	if (port == default_port)
		b->host_header = strdup(host);
	else if (asprintf(&b->host_header, "%s:%d", host, port) < 0)
		b->host_header = NULL;

	if (asprintf(&b->port, "%d", port) < 0)
		b->port = NULL;

	const char *uri_path = evhttp_uri_get_path(uri);
	size_t path_len = strlen(uri_path);
	while (path_len > 0 && uri_path[path_len - 1] == '/')
		path_len--;
	b->base_path = strndup(uri_path, path_len);

	if (b->host == NULL || b->host_header == NULL || b->port == NULL ||
	    b->base_path == NULL) {
		report_oom(ctx, path);
		goto out;
	}

	b->url = url;
	url = NULL;

out:
	if (uri != NULL)
		evhttp_uri_free(uri);
	free(url);
}

static const struct section backend_section;

static void parse_backends(struct load_ctx *ctx, const char *path,
                           json_t *value, void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	const char *name;
	json_t *b;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t i = 0;

	(void)s;
	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of named backends", value);
		return;
	}
	if (json_object_size(value) == 0) {
		report(ctx, path, "must define at least one backend");
		return;
	}

	cfg->backends = calloc(json_object_size(value), sizeof(*cfg->backends));
	if (cfg->backends == NULL) {
		report_oom(ctx, path);
		return;
	}

	/* jansson keeps object keys in file order, so backends keep it too. */
	json_object_foreach(value, name, b) {
		struct tg_backend *backend = &cfg->backends[i++];

		cfg->n_backends = i;
		path_key(child, path, name);

		if (!is_valid_name(name))
			report(ctx, path, "invalid backend name %s; use 1 to %d letters, "
			       "digits, \"_\", \"-\" or \".\"",
			       quote(name, q, sizeof(q)), NAME_MAX_LEN);

		backend->name = strdup(name);
		if (backend->name == NULL)
			report_oom(ctx, child);

		if (!json_is_object(b))
			report_type(ctx, child, "an object", b);
		else
			parse_section(ctx, child, b, backend, &backend_section);
	}
}

/* Levenshtein distance, capped at limit + 1 to stay cheap on long names. */
static size_t edit_distance(const char *a, const char *b, size_t limit)
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

static void report_unknown_backend(struct load_ctx *ctx, const char *path,
                                   const char *raw)
{
	const struct tg_config *cfg = ctx->cfg;
	const char *closest = NULL;
	size_t best = 3; /* suggest only names within two edits */
	char q[QUOTE_LEN], qc[QUOTE_LEN];

	for (size_t i = 0; i < cfg->n_backends; i++) {
		const char *name = cfg->backends[i].name;
		size_t d;

		if (name == NULL)
			continue;
		d = edit_distance(raw, name, best - 1);
		if (d < best && d < strlen(name)) {
			best = d;
			closest = name;
		}
	}

	if (closest != NULL)
		report(ctx, path, "unknown backend %s; did you mean %s?",
		       quote(raw, q, sizeof(q)), quote(closest, qc, sizeof(qc)));
	else
		report(ctx, path, "unknown backend %s", quote(raw, q, sizeof(q)));
}

static void parse_route_backends(struct load_ctx *ctx, const char *path,
                                 json_t *value, void *base,
                                 const struct setting *s)
{
	struct tg_route *r = base;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of backend names", value);
		return;
	}
	if (n == 0) {
		report(ctx, path, "must list at least one backend");
		return;
	}

	r->backends = calloc(n, sizeof(*r->backends));
	if (r->backends == NULL) {
		report_oom(ctx, path);
		return;
	}

	for (size_t i = 0; i < n; i++) {
		const char *raw;
		char *name;
		const struct tg_backend *b;

		path_index(child, path, i);
		name = get_string(ctx, child, json_array_get(value, i),
		                  "a backend name", &raw);
		if (name == NULL)
			continue;

		b = tg_config_backend(ctx->cfg, name);
		free(name);
		if (b == NULL) {
			report_unknown_backend(ctx, child, raw);
			continue;
		}

		for (size_t j = 0; j < r->n_backends; j++) {
			if (r->backends[j] == b) {
				report(ctx, child, "backend %s is listed twice",
				       quote(raw, q, sizeof(q)));
				b = NULL;
				break;
			}
		}

		/* ctx->cfg is being built, hence not const yet. */
		if (b != NULL)
			r->backends[r->n_backends++] = (struct tg_backend *)b;
	}
}

static void parse_match_path(struct load_ctx *ctx, const char *path,
                             json_t *value, void *base, const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char *str = get_string(ctx, path, value, "a path string", &raw);

	if (str == NULL)
		return;

	if (str[0] != '/') {
		report(ctx, path, "invalid path %s; a path starts with \"/\"",
		       quote(raw, q, sizeof(q)));
		free(str);
		return;
	}
	*FIELD(base, s, char *) = str;
}

static const struct section route_section;

static void parse_routes(struct load_ctx *ctx, const char *path, json_t *value,
                         void *base, const struct setting *s)
{
	struct tg_config *cfg = base;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t n = json_array_size(value);

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of routes", value);
		return;
	}
	if (n == 0) {
		report(ctx, path, "must define at least one route");
		return;
	}

	cfg->routes = calloc(n, sizeof(*cfg->routes));
	if (cfg->routes == NULL) {
		report_oom(ctx, path);
		return;
	}
	cfg->n_routes = n;

	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(value, i);
		const char *name;

		path_index(child, path, i);
		if (!json_is_object(r)) {
			report_type(ctx, child, "an object", r);
			continue;
		}
		parse_section(ctx, child, r, &cfg->routes[i], &route_section);

		name = cfg->routes[i].name;
		for (size_t j = 0; j < i && name != NULL; j++) {
			if (cfg->routes[j].name != NULL &&
			    strcmp(cfg->routes[j].name, name) == 0) {
				char name_path[PATH_LEN];

				report(ctx, path_key(name_path, child, "name"),
				       "duplicate route name %s; %s[%zu] has it too",
				       quote(name, q, sizeof(q)), path, j);
				break;
			}
		}
	}
}

/* --- the settings ------------------------------------------------------- */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SECTION(table) { (table), ARRAY_LEN(table) }
#define NO_MAX UINT64_MAX

static const struct setting listen_tls_settings[] = {
	{ .key = "cert", .type = T_FILE, .required = true,
	  .offset = offsetof(struct tg_listen, tls_cert),
	  .help = "PEM certificate chain, read at load time" },
	{ .key = "key", .type = T_FILE, .required = true,
	  .offset = offsetof(struct tg_listen, tls_key),
	  .help = "PEM private key of the certificate" },
};
static const struct section listen_tls_section = SECTION(listen_tls_settings);

static const struct setting listen_settings[] = {
	{ .key = "address", .type = T_ADDRESS, .required = true,
	  .offset = offsetof(struct tg_listen, address),
	  .help = "\"host:port\" to accept clients on; IPv6 as \"[::1]:8080\"" },
	{ .key = "tls", .type = T_SECTION, .section = &listen_tls_section,
	  .help = "serve HTTPS with this certificate; absent means plain HTTP" },
};
static const struct section listen_section = SECTION(listen_settings);

static const struct setting limits_settings[] = {
	{ .key = "max_body", .type = T_SIZE, .def = "\"32MiB\"", .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_body),
	  .help = "largest request body accepted" },
	{ .key = "max_header", .type = T_SIZE, .def = "\"64KiB\"",
	  .min = 1024, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_header),
	  .help = "largest request line plus headers accepted" },
	{ .key = "max_response_body", .type = T_SIZE, .def = "\"64MiB\"",
	  .min = 1024, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.max_response_body),
	  .help = "largest non-streaming upstream body held in memory" },
	{ .key = "client_header_timeout", .type = T_DURATION, .def = "\"10s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.client_header_timeout),
	  .help = "time allowed to read the request line and headers" },
	{ .key = "client_body_timeout", .type = T_DURATION, .def = "\"30s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.client_body_timeout),
	  .help = "longest gap between two reads of the request body" },
	{ .key = "keepalive_timeout", .type = T_DURATION, .def = "\"75s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_config, limits.keepalive_timeout),
	  .help = "how long an idle client connection is kept open" },
};
static const struct section limits_section = SECTION(limits_settings);

static const struct setting timeouts_settings[] = {
	{ .key = "connect", .type = T_DURATION, .def = "\"5s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.connect),
	  .help = "TCP connect plus TLS handshake" },
	{ .key = "first_byte", .type = T_DURATION, .def = "\"60s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.first_byte),
	  .help = "from request sent to the first response byte" },
	{ .key = "idle", .type = T_DURATION, .def = "\"30s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, timeouts.idle),
	  .help = "longest silence inside a response body" },
};
static const struct section timeouts_section = SECTION(timeouts_settings);

static const struct setting backend_tls_settings[] = {
	{ .key = "ca_file", .type = T_FILE,
	  .offset = offsetof(struct tg_backend, ca_file),
	  .help = "PEM bundle of trusted CAs; absent uses the system store" },
	{ .key = "verify", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_backend, tls_verify),
	  .help = "verify the certificate and host name of https:// backends" },
};
static const struct section backend_tls_section = SECTION(backend_tls_settings);

static const struct setting pool_settings[] = {
	{ .key = "max_idle", .type = T_COUNT, .def = "64", .max = 65536,
	  .offset = offsetof(struct tg_backend, max_idle),
	  .help = "idle connections kept per worker; 0 disables reuse" },
	{ .key = "idle_timeout", .type = T_DURATION, .def = "\"60s\"",
	  .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_backend, idle_keepalive),
	  .help = "how long a pooled connection may stay idle" },
};
static const struct section pool_section = SECTION(pool_settings);

static const struct setting backend_settings[] = {
	{ .key = "url", .type = T_CUSTOM, .parse = parse_url, .required = true,
	  .doc_type = "URL",
	  .help = "http:// or https://, host, optional port and path prefix" },
	{ .key = "api_key", .type = T_STRING,
	  .offset = offsetof(struct tg_backend, api_key),
	  .help = "credential sent upstream instead of the client's; absent passes the client's on" },
	{ .key = "timeouts", .type = T_SECTION, .def = "{}",
	  .section = &timeouts_section, .help = "upstream timeouts" },
	{ .key = "tls", .type = T_SECTION, .def = "{}",
	  .section = &backend_tls_section, .help = "TLS to https:// backends" },
	{ .key = "pool", .type = T_SECTION, .def = "{}",
	  .section = &pool_section, .help = "upstream connection reuse" },
};
static const struct section backend_section = SECTION(backend_settings);

static const struct setting match_settings[] = {
	{ .key = "path", .type = T_CUSTOM, .parse = parse_match_path,
	  .doc_type = "string", .offset = offsetof(struct tg_route, match_path),
	  .help = "exact request path; absent matches any path" },
	{ .key = "model", .type = T_STRING,
	  .offset = offsetof(struct tg_route, match_model),
	  .help = "model name or fnmatch(3) glob; absent matches any request" },
};
static const struct section match_section = SECTION(match_settings);

static const struct setting route_settings[] = {
	{ .key = "name", .type = T_NAME, .required = true,
	  .offset = offsetof(struct tg_route, name),
	  .help = "unique name, used in logs and metric labels" },
	{ .key = "match", .type = T_SECTION, .section = &match_section,
	  .help = "conditions a request must meet; absent matches all" },
	{ .key = "backends", .type = T_CUSTOM, .parse = parse_route_backends,
	  .required = true, .doc_type = "array",
	  .help = "backend names, tried in order" },
};
static const struct section route_section = SECTION(route_settings);

/* Backends come before routes so that routes can resolve backend names. */
static const struct setting top_settings[] = {
	{ .key = "listen", .type = T_CUSTOM, .parse = parse_listen,
	  .def = "[\"127.0.0.1:8080\"]", .section = &listen_section,
	  .element = "[]", .doc_type = "array",
	  .help = "client addresses: \"host:port\" strings or objects" },
	{ .key = "admin", .type = T_ADDRESS, .def = "\"127.0.0.1:9090\"",
	  .offset = offsetof(struct tg_config, admin),
	  .help = "\"host:port\" of the metrics and health listener" },
	{ .key = "workers", .type = T_INT, .def_fn = default_workers,
	  .min = 1, .max = MAX_WORKERS,
	  .offset = offsetof(struct tg_config, workers),
	  .help = "worker threads; default: online processors, at most 256" },
	{ .key = "drain_timeout", .type = T_DURATION, .def = "\"30s\"",
	  .max = NO_MAX, .offset = offsetof(struct tg_config, drain_timeout),
	  .help = "on SIGTERM, how long requests in flight may finish" },
	{ .key = "access_log", .type = T_CUSTOM, .parse = parse_access_log,
	  .def = "\"-\"", .doc_type = "string|false",
	  .offset = offsetof(struct tg_config, access_log),
	  .help = "access log path, \"-\" for standard output, false for none" },
	{ .key = "limits", .type = T_SECTION, .def = "{}",
	  .section = &limits_section, .help = "client request limits" },
	{ .key = "backends", .type = T_CUSTOM, .parse = parse_backends,
	  .required = true, .section = &backend_section, .element = ".NAME",
	  .doc_type = "object", .help = "upstream endpoints by name" },
	{ .key = "routes", .type = T_CUSTOM, .parse = parse_routes,
	  .required = true, .section = &route_section, .element = "[]",
	  .doc_type = "array", .help = "request routes, matched in order" },
};
static const struct section top_section = SECTION(top_settings);

/* --- loading and freeing ------------------------------------------------ */

/* Checks that involve several top-level settings. */
static void check_consistency(struct load_ctx *ctx, const struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen && cfg->admin != NULL; i++) {
		if (cfg->listen[i].address != NULL &&
		    strcmp(cfg->listen[i].address, cfg->admin) == 0)
			report(ctx, "admin", "same address as listen[%zu]", i);
	}
}

/* Read and parse the file, reporting I/O and JSON syntax errors. */
static json_t *read_json(struct load_ctx *ctx)
{
	json_error_t jerr;
	json_t *root;
	FILE *f = fopen(ctx->file, "r");

	if (f == NULL) {
		report(ctx, "", "cannot open: %s", strerror(errno));
		return NULL;
	}

	root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);

	if (root == NULL) {
		fprintf(ctx->err, "%s:%d:%d: %s\n", ctx->file, jerr.line,
		        jerr.column, jerr.text);
		ctx->n_errors++;
		return NULL;
	}

	if (!json_is_object(root)) {
		report_type(ctx, "", "a JSON object at the top level", root);
		json_decref(root);
		return NULL;
	}
	return root;
}

static void free_config(struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++) {
		struct tg_listen *l = &cfg->listen[i];

		free(l->address);
		free(l->host);
		free(l->port);
		free(l->tls_cert);
		free(l->tls_key);
	}
	free(cfg->listen);

	for (size_t i = 0; i < cfg->n_backends; i++) {
		struct tg_backend *b = &cfg->backends[i];

		free(b->name);
		free(b->url);
		free(b->host);
		free(b->port);
		free(b->host_header);
		free(b->base_path);
		if (b->api_key != NULL)
			explicit_bzero(b->api_key, strlen(b->api_key));
		free(b->api_key);
		free(b->ca_file);
	}
	free(cfg->backends);

	for (size_t i = 0; i < cfg->n_routes; i++) {
		struct tg_route *r = &cfg->routes[i];

		free(r->name);
		free(r->match_path);
		free(r->match_model);
		free(r->backends);
	}
	free(cfg->routes);

	free(cfg->admin);
	free(cfg->access_log);
	free(cfg->path);
	free(cfg);
}

struct tg_config *tg_config_load(const char *path, FILE *err)
{
	struct load_ctx ctx = { .file = path, .err = err };
	struct tg_config *cfg;
	json_t *root;

	assert(path != NULL);
	assert(err != NULL);

	root = read_json(&ctx);
	if (root == NULL)
		return NULL;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		report_oom(&ctx, "");
		free(cfg);
		json_decref(root);
		return NULL;
	}
	atomic_init(&cfg->refcount, 1);
	ctx.cfg = cfg;

	parse_section(&ctx, "", root, cfg, &top_section);
	check_consistency(&ctx, cfg);
	json_decref(root);

	if (ctx.n_errors > 0) {
		free_config(cfg);
		return NULL;
	}
	return cfg;
}

struct tg_config *tg_config_ref(struct tg_config *cfg)
{
	int old = atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);

	assert(old > 0);
	(void)old;
	return cfg;
}

void tg_config_unref(struct tg_config *cfg)
{
	if (cfg == NULL)
		return;

	/* Release so that this thread's reads happen before the free; the
	 * thread that drops the last reference then acquires all of them. */
	int old = atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_release);

	assert(old > 0);
	if (old == 1) {
		atomic_thread_fence(memory_order_acquire);
		free_config(cfg);
	}
}

const struct tg_backend *tg_config_backend(const struct tg_config *cfg,
                                           const char *name)
{
	for (size_t i = 0; i < cfg->n_backends; i++) {
		if (cfg->backends[i].name != NULL &&
		    strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	}
	return NULL;
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
	}
	return "?";
}

static void print_section(FILE *out, const char *prefix, const struct section *sec)
{
	char path[PATH_LEN];

	for (size_t i = 0; i < sec->n; i++) {
		const struct setting *s = &sec->settings[i];
		const char *def = "(none)";

		if (s->required)
			def = "(required)";
		else if (s->def_fn != NULL)
			def = "(computed)";
		else if (s->def != NULL)
			def = s->def;

		path_key(path, prefix, s->key);
		fprintf(out, "%s\t%s\t%s\t%s\n", path, type_name(s), def, s->help);

		if (s->section == NULL)
			continue;
		if (s->element != NULL)
			strncat(path, s->element, sizeof(path) - strlen(path) - 1);
		print_section(out, path, s->section);
	}
}

void tg_config_print_settings(FILE *out)
{
	print_section(out, "", &top_section);
}
