/*
 * Parsing of behaviour options (see mock/README.md for the list).
 *
 * Every key is declared once in option_table with its parser. A value that
 * does not parse is rejected with a message that names the key, the value
 * and the valid forms, because a test author reads it in a failed test.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "options.h"

#define MAX_COUNT 1000000               /* events, words, keepalive */
#define MAX_SIZE (64L * 1024 * 1024)    /* size= upper bound, bytes */
#define MAX_DELAY_MS (3600 * 1000.0)    /* one hour */

typedef int (*option_parser)(struct mock_options *o, const char *key,
                             const char *value, char *err, size_t err_size);

struct option_def {
	const char *key;
	option_parser parse;
};

void
mock_options_init(struct mock_options *o)
{
	memset(o, 0, sizeof(*o));
	o->events = 5;
	o->words = 5;
	o->size = -1;
	o->close_after = -1;
	o->stall_after = -1;
	o->stream_error = -1;
	o->usage = MOCK_USAGE_REQUEST;
}

int
mock_options_reframe(const struct mock_options *o)
{
	return o->crlf || o->cr || o->nospace || o->keepalive > 0;
}

/* Parse a whole decimal number in [min, max]. */
static int
parse_count(const char *key, const char *value, long min, long max,
            long *out, char *err, size_t err_size)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (!isdigit((unsigned char)value[0]) || *end != '\0' || errno != 0
	    || v < min || v > max) {
		snprintf(err, err_size,
		         "invalid value \"%s\" for option %s: expected an "
		         "integer from %ld to %ld", value, key, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* Parse "250ms", "2s" or "1.5s" into milliseconds. */
static int
parse_duration(const char *key, const char *value, uint64_t *out_ms,
               char *err, size_t err_size)
{
	char *end;
	double v, ms;

	errno = 0;
	v = strtod(value, &end);
	if (!isdigit((unsigned char)value[0]) || errno != 0)
		goto invalid;

	if (strcmp(end, "ms") == 0)
		ms = v;
	else if (strcmp(end, "s") == 0)
		ms = v * 1000.0;
	else
		goto invalid;

	if (!isfinite(ms) || ms > MAX_DELAY_MS)
		goto invalid;
	*out_ms = (uint64_t)(ms + 0.5);
	return 0;

invalid:
	snprintf(err, err_size,
	         "invalid value \"%s\" for option %s: expected a duration "
	         "with a unit, such as 250ms or 2s, of at most 3600s", value, key);
	return -1;
}

static int
parse_flag(const char *key, const char *value, int *out,
           char *err, size_t err_size)
{
	if (strcmp(value, "0") == 0 || strcmp(value, "1") == 0) {
		*out = value[0] == '1';
		return 0;
	}
	snprintf(err, err_size,
	         "invalid value \"%s\" for option %s: expected 0 or 1",
	         value, key);
	return -1;
}

static int
opt_fixture(struct mock_options *o, const char *key, const char *value,
            char *err, size_t err_size)
{
	size_t len = strlen(value);

	/* The name becomes part of a file path: letters, digits, '-', '_' and
	 * inner dots only, so it can never leave the fixture directory. */
	int valid = len > 0 && len < sizeof(o->fixture) && value[0] != '.';
	for (size_t i = 0; valid && i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		valid = isalnum(c) || c == '-' || c == '_' || c == '.';
	}
	if (!valid) {
		snprintf(err, err_size,
		         "invalid value \"%s\" for option %s: expected a "
		         "fixture name made of letters, digits, '-', '_' and '.', "
		         "without the .yaml suffix", value, key);
		return -1;
	}
	memcpy(o->fixture, value, len + 1);
	return 0;
}

static int
opt_status(struct mock_options *o, const char *key, const char *value,
           char *err, size_t err_size)
{
	long v;

	if (parse_count(key, value, 200, 599, &v, err, err_size) < 0)
		return -1;

	/* These statuses forbid a body, and every mock response has one. */
	if (v == 204 || v == 304) {
		snprintf(err, err_size,
		         "invalid value \"%s\" for option %s: 204 and 304 "
		         "cannot carry a body; use another status from 200 to 599",
		         value, key);
		return -1;
	}
	o->status = (int)v;
	return 0;
}

static int
opt_retry_after(struct mock_options *o, const char *key, const char *value,
                char *err, size_t err_size)
{
	size_t len = strlen(value);
	int valid = len > 0 && len < sizeof(o->retry_after);

	for (size_t i = 0; valid && i < len; i++)
		valid = isprint((unsigned char)value[i]);
	if (!valid) {
		snprintf(err, err_size,
		         "invalid value \"%s\" for option %s: expected 1 to "
		         "%zu printable characters, such as 2 or a HTTP date",
		         value, key, sizeof(o->retry_after) - 1);
		return -1;
	}
	memcpy(o->retry_after, value, len + 1);
	return 0;
}

static int
opt_first_byte_delay(struct mock_options *o, const char *key,
                     const char *value, char *err, size_t err_size)
{
	return parse_duration(key, value, &o->first_byte_delay_ms, err, err_size);
}

static int
opt_event_delay(struct mock_options *o, const char *key, const char *value,
                char *err, size_t err_size)
{
	return parse_duration(key, value, &o->event_delay_ms, err, err_size);
}

static int
opt_events(struct mock_options *o, const char *key, const char *value,
           char *err, size_t err_size)
{
	long v;

	if (parse_count(key, value, 0, MAX_COUNT, &v, err, err_size) < 0)
		return -1;
	o->events = (unsigned)v;
	return 0;
}

static int
opt_words(struct mock_options *o, const char *key, const char *value,
          char *err, size_t err_size)
{
	long v;

	if (parse_count(key, value, 0, MAX_COUNT, &v, err, err_size) < 0)
		return -1;
	o->words = (unsigned)v;
	return 0;
}

static int
opt_size(struct mock_options *o, const char *key, const char *value,
         char *err, size_t err_size)
{
	return parse_count(key, value, 0, MAX_SIZE, &o->size, err, err_size);
}

static int
opt_stall_after(struct mock_options *o, const char *key, const char *value,
                char *err, size_t err_size)
{
	return parse_count(key, value, 0, MAX_COUNT, &o->stall_after,
	                   err, err_size);
}

static int
opt_stream_error(struct mock_options *o, const char *key, const char *value,
                 char *err, size_t err_size)
{
	return parse_count(key, value, 0, MAX_COUNT, &o->stream_error,
	                   err, err_size);
}

static int
opt_hangup(struct mock_options *o, const char *key, const char *value,
           char *err, size_t err_size)
{
	return parse_flag(key, value, &o->hangup, err, err_size);
}

static int
opt_close_after(struct mock_options *o, const char *key, const char *value,
                char *err, size_t err_size)
{
	return parse_count(key, value, 0, MAX_COUNT, &o->close_after,
	                   err, err_size);
}

static int
opt_split(struct mock_options *o, const char *key, const char *value,
          char *err, size_t err_size)
{
	size_t n = 0;
	const char *p = value;

	for (;;) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(p, &end, 10);
		if (!isdigit((unsigned char)*p) || errno != 0 || v == 0
		    || (n > 0 && v <= o->split[n - 1]) || n == MOCK_SPLIT_MAX
		    || (*end != ',' && *end != '\0'))
			goto invalid;
		o->split[n++] = (size_t)v;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	o->n_split = n;
	return 0;

invalid:
	o->n_split = 0;
	snprintf(err, err_size,
	         "invalid value \"%s\" for option %s: expected up to %d "
	         "strictly increasing byte offsets above 0, separated by commas",
	         value, key, MOCK_SPLIT_MAX);
	return -1;
}

static int
opt_crlf(struct mock_options *o, const char *key, const char *value,
         char *err, size_t err_size)
{
	return parse_flag(key, value, &o->crlf, err, err_size);
}

static int
opt_cr(struct mock_options *o, const char *key, const char *value,
       char *err, size_t err_size)
{
	return parse_flag(key, value, &o->cr, err, err_size);
}

static int
opt_nospace(struct mock_options *o, const char *key, const char *value,
            char *err, size_t err_size)
{
	return parse_flag(key, value, &o->nospace, err, err_size);
}

static int
opt_keepalive(struct mock_options *o, const char *key, const char *value,
              char *err, size_t err_size)
{
	long v;

	if (parse_count(key, value, 0, MAX_COUNT, &v, err, err_size) < 0)
		return -1;
	o->keepalive = (unsigned)v;
	return 0;
}

static int
opt_usage(struct mock_options *o, const char *key, const char *value,
          char *err, size_t err_size)
{
	if (strcmp(value, "on") == 0) {
		o->usage = MOCK_USAGE_ON;
		return 0;
	}
	if (strcmp(value, "off") == 0) {
		o->usage = MOCK_USAGE_OFF;
		return 0;
	}
	snprintf(err, err_size,
	         "invalid value \"%s\" for option %s: expected on or off",
	         value, key);
	return -1;
}

static int
opt_tools(struct mock_options *o, const char *key, const char *value,
          char *err, size_t err_size)
{
	return parse_flag(key, value, &o->tools, err, err_size);
}

static int
opt_unicode(struct mock_options *o, const char *key, const char *value,
            char *err, size_t err_size)
{
	return parse_flag(key, value, &o->unicode, err, err_size);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * content=TEXT: the generated text is TEXT, percent-decoded (%3B for ';',
 * %7C for a literal '|'). A '|' cuts it into pieces, one stream event
 * each, and sets events= to their number.
 */
static int
opt_content(struct mock_options *o, const char *key, const char *value,
            char *err, size_t err_size)
{
	size_t len = 0, pieces = 1;

	o->content_cuts[0] = 0;
	for (const char *p = value; *p != '\0'; p++) {
		char c = *p;

		if (c == '|') {
			if (pieces == MOCK_CONTENT_PIECES) {
				snprintf(err, err_size, "invalid %s: more than %d pieces", key,
				         MOCK_CONTENT_PIECES);
				return -1;
			}
			o->content_cuts[pieces++] = len;
			continue;
		}
		if (c == '%') {
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);

			if (lo < 0) {
				snprintf(err, err_size, "invalid %s: '%%' must start a %%XX escape", key);
				return -1;
			}
			c = (char)(hi * 16 + lo);
			p += 2;
		}
		if (len + 1 >= MOCK_CONTENT_MAX) {
			snprintf(err, err_size, "invalid %s: longer than %d bytes", key,
			         MOCK_CONTENT_MAX - 1);
			return -1;
		}
		o->content[len++] = c;
	}
	o->content[len] = '\0';
	o->content_cuts[pieces] = len;

	/* Each piece becomes a JSON string, which must be UTF-8. */
	for (size_t i = 0; i < pieces; i++) {
		size_t from = o->content_cuts[i], to = o->content_cuts[i + 1];
		json_t *text = json_stringn(o->content + from, to - from);

		if (text == NULL) {
			snprintf(err, err_size, "invalid %s: piece %zu is not valid UTF-8 once "
			         "percent-decoded", key, i + 1);
			return -1;
		}
		json_decref(text);
	}
	o->n_content_pieces = pieces;
	o->events = (unsigned)pieces;
	return 0;
}

static int
opt_reset_next(struct mock_options *o, const char *key, const char *value,
               char *err, size_t err_size)
{
	return parse_flag(key, value, &o->reset_next, err, err_size);
}

static int
opt_stamp(struct mock_options *o, const char *key, const char *value,
          char *err, size_t err_size)
{
	return parse_flag(key, value, &o->stamp, err, err_size);
}

static const struct option_def option_table[] = {
	{ "fixture", opt_fixture },
	{ "status", opt_status },
	{ "retry_after", opt_retry_after },
	{ "first_byte_delay", opt_first_byte_delay },
	{ "event_delay", opt_event_delay },
	{ "events", opt_events },
	{ "words", opt_words },
	{ "size", opt_size },
	{ "close_after", opt_close_after },
	{ "stall_after", opt_stall_after },
	{ "stream_error", opt_stream_error },
	{ "hangup", opt_hangup },
	{ "split", opt_split },
	{ "crlf", opt_crlf },
	{ "cr", opt_cr },
	{ "nospace", opt_nospace },
	{ "keepalive", opt_keepalive },
	{ "usage", opt_usage },
	{ "tools", opt_tools },
	{ "unicode", opt_unicode },
	{ "reset_next", opt_reset_next },
	{ "content", opt_content },
	{ "stamp", opt_stamp },
};

/* Apply one "key=value" item; item is NUL-terminated and writable. */
static int
parse_item(struct mock_options *o, char *item, char *err, size_t err_size)
{
	char *eq = strchr(item, '=');
	const char *key = item, *value;

	if (eq == NULL) {
		snprintf(err, err_size,
		         "invalid item \"%s\": expected key=value", item);
		return -1;
	}
	*eq = '\0';
	value = eq + 1;

	for (size_t i = 0; i < sizeof(option_table) / sizeof(option_table[0]); i++)
		if (strcmp(option_table[i].key, key) == 0)
			return option_table[i].parse(o, key, value, err, err_size);

	snprintf(err, err_size,
	         "unknown option \"%s\"; valid options: fixture, status, "
	         "retry_after, first_byte_delay, event_delay, events, words, size, "
	         "close_after, stall_after, stream_error, hangup, split, crlf, cr, "
	         "nospace, keepalive, usage, tools, unicode, reset_next, content, "
	         "stamp", key);
	return -1;
}

/* Trim spaces and tabs at both ends, in place. */
static char *
trim(char *s)
{
	char *end = s + strlen(s);

	while (*s == ' ' || *s == '\t')
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

int
mock_options_parse(struct mock_options *o, const char *text, size_t len,
                   const char *source, char *err, size_t err_size)
{
	char *copy = strndup(text, len);
	char *cursor = copy, *item;
	char problem[512];
	int rc = 0;

	if (copy == NULL) {
		snprintf(err, err_size, "out of memory while parsing the options of %s", source);
		return -1;
	}

	while (rc == 0 && (item = strsep(&cursor, ";")) != NULL) {
		item = trim(item);
		if (*item != '\0')
			rc = parse_item(o, item, problem, sizeof(problem));
	}
	if (rc != 0)
		snprintf(err, err_size, "%s: %s", source, problem);

	free(copy);
	return rc;
}
