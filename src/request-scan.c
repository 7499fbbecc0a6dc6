/*
 * The model, stream flag, user, stream options and traced parameters of
 * a request body, read with yajl (request-scan.h).
 *
 * The scan keeps a stack of the containers it is inside, each with the
 * start of its keys for the duplicate check. At the top object it notes
 * which member the last key named, so that a value of "model", "stream",
 * "user" or a parameter is kept, in the object of "stream_options"
 * whether "include_usage" is true, in that of "response_format" its
 * "type", and in the array of "modalities" the known strings. Once the
 * scan is unsure it stops
 * yajl, since jansson will read the body anyway.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "reply-digest.h"
#include "request-scan.h"
#include "yajl-arena.h"

/* Containers whose keys are checked; a deeper one makes the scan unsure. */
#define MAX_FRAMES 32

enum member {
	M_OTHER,
	M_MODEL,
	M_STREAM,
	M_USER,
	M_STREAM_OPTIONS,
	M_STOP,
	M_NUMBER,               /* a parameter of enum tg_request_number */
	M_RESPONSE_FORMAT,
	M_ENCODING_FORMAT,
	M_MODALITIES,
	M_INCLUDE_USAGE,        /* in the object of "stream_options" */
	M_FORMAT_TYPE,          /* in the object of "response_format" */
};

/* Four bytes for the flags keep a frame at 16 bytes: the scan zeroes
 * its frames for every body. */
struct frame {
	int array;
	unsigned char options;  /* the object of the top "stream_options" */
	unsigned char format;   /* the object of the top "response_format" */
	unsigned char stop;     /* the array of the top "stop" */
	unsigned char modalities;       /* the array of the top "modalities" */
	size_t first_key;       /* an object's first key in the keys */
};

struct scan {
	const char *data;
	size_t len;
	struct tg_yj_keys *keys;
	struct tg_request_facts *facts;
	yajl_handle h;
	int want_params;        /* read the traced parameters */
	const struct tg_reply_tap *tap; /* the reader of texts, or NULL */
	int root;               /* the top value is an object */
	size_t root_end;        /* just after the top object's closing brace */
	int unsure;
	size_t depth;
	enum member member;     /* what the last key of the top object named */
	enum tg_request_number number;  /* and which parameter, for M_NUMBER */
	enum member option;     /* what the last key of "stream_options" or
	                           "response_format" named */
	struct frame frames[MAX_FRAMES];       /* last: the members before it
	                                          are zeroed for each scan */
};

/* The value now read is a member of the top object. */
static int
at_top(const struct scan *s)
{
	return s->depth == 1 && !s->frames[0].array;
}

/* The value now read is a member of the "stream_options" object. */
static int
in_options(const struct scan *s)
{
	return s->depth == 2 && s->frames[1].options;
}

/* The value now read is a member of the "response_format" object. */
static int
in_format(const struct scan *s)
{
	return s->depth == 2 && s->frames[1].format;
}

/* The value now read is an item of the top "stop" array. */
static int
in_stop(const struct scan *s)
{
	return s->depth == 2 && s->frames[1].stop;
}

/* The value now read is an item of the top "modalities" array. */
static int
in_modalities(const struct scan *s)
{
	return s->depth == 2 && s->frames[1].modalities;
}

/* Give up: jansson decides. Returns 0 to stop yajl. */
static int
unsure(struct scan *s)
{
	s->unsure = 1;
	return 0;
}

/* Pass an event to the tap when it takes it, with the arguments that
 * follow. Yields 1 to read on, or 0 when the tap stopped: then the scan
 * is unsure, since it has not read every text. */
#define TAP(s, cb, ...) \
	((s)->tap == NULL || (s)->tap->callbacks->cb == NULL || \
	 (s)->tap->callbacks->cb((s)->tap->ctx, __VA_ARGS__) ? 1 : unsure(s))
#define TAP_EVENT(s, cb) \
	((s)->tap == NULL || (s)->tap->callbacks->cb == NULL || \
	 (s)->tap->callbacks->cb((s)->tap->ctx) ? 1 : unsure(s))

/* The parameters of the body, allocated when the first one is read, so
 * that a body without them allocates nothing. NULL when memory ran out:
 * then the scan is unsure. */
static struct tg_request_params *
params_of(struct scan *s)
{
	if (s->facts->params == NULL) {
		s->facts->params = calloc(1, sizeof(*s->facts->params));
		if (s->facts->params == NULL)
			unsure(s);
	}
	return s->facts->params;
}

/* A value other than an object, for the member now read. */
static void
scalar(struct scan *s)
{
	if (at_top(s) && s->member == M_STREAM_OPTIONS)
		s->facts->stream_options = TG_STREAM_OPTIONS_INVALID;
}

static int
open_container(struct scan *s, int array)
{
	if (s->depth == 0 && array)
		return unsure(s);       /* not an object */
	if (s->depth >= MAX_FRAMES)
		return unsure(s);

	if (s->depth == 0)
		s->root = 1;
	if (array)
		scalar(s);
	else if (at_top(s) && s->member == M_STREAM_OPTIONS)
		s->facts->stream_options = TG_STREAM_OPTIONS_NO_USAGE;
	if (array && at_top(s) && s->member == M_STOP) {
		if (params_of(s) == NULL)
			return 0;
		s->facts->params->has_stop = 1;
	}
	s->frames[s->depth] = (struct frame){
		.array = array, .first_key = s->keys->n,
		.options = !array && at_top(s) && s->member == M_STREAM_OPTIONS,
		.format = !array && at_top(s) && s->member == M_RESPONSE_FORMAT,
		.stop = array && at_top(s) && s->member == M_STOP,
		.modalities = array && at_top(s) && s->member == M_MODALITIES,
	};
	s->depth++;
	return 1;
}

static int
on_start_map(void *ctx)
{
	struct scan *s = ctx;

	return open_container(s, 0) && TAP_EVENT(s, yajl_start_map);
}

static int
on_start_array(void *ctx)
{
	struct scan *s = ctx;

	return open_container(s, 1) && TAP_EVENT(s, yajl_start_array);
}

static void
close_container(struct scan *s)
{
	struct frame *f = &s->frames[--s->depth];

	if (!f->array)
		tg_yj_keys_close(s->keys, f->first_key);
	if (s->depth == 0)
		s->root_end = yajl_get_bytes_consumed(s->h);
}

static int
on_end_map(void *ctx)
{
	struct scan *s = ctx;

	close_container(s);
	return TAP_EVENT(s, yajl_end_map);
}

static int
on_end_array(void *ctx)
{
	struct scan *s = ctx;

	close_container(s);
	return TAP_EVENT(s, yajl_end_array);
}

/* Whether the key of len bytes is the literal name. A constant length
 * lets the compiler inline the comparison. */
#define KEY_IS(key, len, name) \
	((len) == sizeof(name) - 1 && memcmp((key), (name), sizeof(name) - 1) == 0)

static enum member
number_member(enum tg_request_number *number, enum tg_request_number which)
{
	*number = which;
	return M_NUMBER;
}

/* The member of the top object that key names; *number is set for
 * M_NUMBER. The scan calls this for each key of every body, so the
 * length picks the few names to compare. */
static enum member
top_member(const unsigned char *key, size_t len, enum tg_request_number *number)
{
	switch (len) {
	case 1:
		return KEY_IS(key, len, "n") ? number_member(number, TG_PARAM_N) : M_OTHER;
	case 4:
		if (KEY_IS(key, len, "user"))
			return M_USER;
		if (KEY_IS(key, len, "stop"))
			return M_STOP;
		return KEY_IS(key, len, "seed") ? number_member(number, TG_PARAM_SEED) : M_OTHER;
	case 5:
		if (KEY_IS(key, len, "model"))
			return M_MODEL;
		if (KEY_IS(key, len, "top_k"))
			return number_member(number, TG_PARAM_TOP_K);
		return KEY_IS(key, len, "top_p") ? number_member(number, TG_PARAM_TOP_P) : M_OTHER;
	case 6:
		return KEY_IS(key, len, "stream") ? M_STREAM : M_OTHER;
	case 10:
		if (KEY_IS(key, len, "dimensions"))
			return number_member(number, TG_PARAM_DIMENSIONS);
		if (KEY_IS(key, len, "modalities"))
			return M_MODALITIES;
		return KEY_IS(key, len, "max_tokens") ? number_member(number, TG_PARAM_MAX_TOKENS)
		                                      : M_OTHER;
	case 11:
		return KEY_IS(key, len, "temperature")
		       ? number_member(number, TG_PARAM_TEMPERATURE) : M_OTHER;
	case 14:
		return KEY_IS(key, len, "stream_options") ? M_STREAM_OPTIONS : M_OTHER;
	case 15:
		if (KEY_IS(key, len, "encoding_format"))
			return M_ENCODING_FORMAT;
		return KEY_IS(key, len, "response_format") ? M_RESPONSE_FORMAT : M_OTHER;
	case 16:
		return KEY_IS(key, len, "presence_penalty")
		       ? number_member(number, TG_PARAM_PRESENCE_PENALTY) : M_OTHER;
	case 17:
		return KEY_IS(key, len, "frequency_penalty")
		       ? number_member(number, TG_PARAM_FREQUENCY_PENALTY) : M_OTHER;
	case 21:
		return KEY_IS(key, len, "max_completion_tokens")
		       ? number_member(number, TG_PARAM_MAX_COMPLETION_TOKENS) : M_OTHER;
	default:
		return M_OTHER;
	}
}

static int
on_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct scan *s = ctx;
	struct frame *f = &s->frames[s->depth - 1];

	if (!tg_yj_string_ok(key, len) ||
	    tg_yj_key_add(s->keys, f->first_key, s->data, s->len, key, len) != 0)
		return unsure(s);
	if (in_options(s))
		s->option = len == 13 && memcmp(key, "include_usage", 13) == 0 ? M_INCLUDE_USAGE
		                                                               : M_OTHER;
	if (in_format(s))
		s->option = KEY_IS(key, len, "type") ? M_FORMAT_TYPE : M_OTHER;
	if (s->depth == 1) {
		s->facts->has_members = 1;
		s->member = top_member(key, len, &s->number);
		if (!s->want_params && (s->member == M_NUMBER || s->member == M_STOP ||
		                        s->member == M_RESPONSE_FORMAT ||
		                        s->member == M_ENCODING_FORMAT ||
		                        s->member == M_MODALITIES))
			s->member = M_OTHER;
	}
	return TAP(s, yajl_map_key, key, len);
}

/* Where the string now read goes, or NULL when the scan keeps none (or
 * memory ran out, and the scan is unsure). */
static char **
string_slot(struct scan *s)
{
	struct tg_request_params *p = s->facts->params;

	/* The array's opening allocated the parameters. */
	if (in_stop(s))
		return p->n_stop < TG_MAX_STOP ? &p->stop[p->n_stop++] : NULL;
	if (in_format(s) && s->option == M_FORMAT_TYPE) {
		p = params_of(s);
		return p != NULL ? &p->response_format : NULL;
	}
	if (!at_top(s))
		return NULL;
	switch (s->member) {
	case M_MODEL:
		return &s->facts->model;
	case M_USER:
		return &s->facts->user;
	case M_ENCODING_FORMAT:
		p = params_of(s);
		return p != NULL ? &p->encoding_format : NULL;
	case M_STOP:
		p = params_of(s);
		if (p == NULL)
			return NULL;
		p->has_stop = 1;
		p->n_stop = 1;
		return &p->stop[0];
	default:
		return NULL;
	}
}

/* The tg_modality bit of a "modalities" item, or 0 for another string. */
static unsigned
modality_of(const char *item, size_t len)
{
	if (KEY_IS(item, len, "text"))
		return TG_MODALITY_TEXT;
	if (KEY_IS(item, len, "audio"))
		return TG_MODALITY_AUDIO;
	return KEY_IS(item, len, "image") ? TG_MODALITY_IMAGE : 0;
}

static int
on_string(void *ctx, const unsigned char *str, size_t len)
{
	struct scan *s = ctx;
	char **slot;

	if (!tg_yj_string_ok(str, len))
		return unsure(s);
	scalar(s);
	if (in_modalities(s)) {
		if (params_of(s) == NULL)
			return 0;
		s->facts->params->modalities |= modality_of((const char *)str, len);
	}
	slot = string_slot(s);
	if (slot == NULL && s->unsure)
		return 0;

	/* No NUL inside (checked above), so the copy is the whole string. A
	 * member given twice stopped the scan at its key, so none is set yet. */
	if (slot != NULL && (*slot = strndup((const char *)str, len)) == NULL)
		return unsure(s);
	return TAP(s, yajl_string, str, len);
}

/* A number: kept when it is the value of a parameter. Returns 0 to stop
 * yajl when memory ran out. */
static int
keep_number(struct scan *s, enum tg_number_kind kind, long long integer, double value)
{
	if (!at_top(s) || s->member != M_NUMBER)
		return 1;
	if (params_of(s) == NULL)
		return 0;
	s->facts->params->number[s->number] = (struct tg_body_number){kind, integer, value};
	return 1;
}

static int
on_boolean(void *ctx, int value)
{
	struct scan *s = ctx;

	scalar(s);
	if (at_top(s) && s->member == M_STREAM)
		s->facts->stream = value;
	if (in_options(s) && s->option == M_INCLUDE_USAGE && value)
		s->facts->stream_options = TG_STREAM_OPTIONS_USAGE;
	return TAP(s, yajl_boolean, value);
}

static int
on_null(void *ctx)
{
	struct scan *s = ctx;

	scalar(s);
	return TAP_EVENT(s, yajl_null);
}

/* jansson's json_number_value() gives an integer as a double too. */
static int
on_integer(void *ctx, long long value)
{
	struct scan *s = ctx;

	scalar(s);
	return keep_number(s, TG_NUMBER_INTEGER, value, (double)value) &&
	       TAP(s, yajl_integer, value);
}

static int
on_double(void *ctx, double value)
{
	struct scan *s = ctx;

	scalar(s);
	return keep_number(s, TG_NUMBER_REAL, 0, value) && TAP(s, yajl_double, value);
}

/* The number whose JSON text is the len bytes at text, as jansson reads
 * it without JSON_DECODE_INT_AS_REAL: an integer when the text has no
 * fraction or exponent and fits in 64 bits, else a real. An integer that
 * does not fit is a real, as the tree that read it has it. Returns 0, or
 * -1 when out of memory. */
static int
number_of_text(const char *text, size_t len, struct tg_body_number *out)
{
	char *copy = strndup(text, len);
	long long integer = 0;
	int integral;

	if (copy == NULL)
		return -1;
	integral = strpbrk(copy, ".eE") == NULL;
	errno = 0;
	if (integral)
		integer = strtoll(copy, NULL, 10);
	if (integral && errno != ERANGE)
		*out = (struct tg_body_number){TG_NUMBER_INTEGER, integer, (double)integer};
	else
		*out = (struct tg_body_number){TG_NUMBER_REAL, 0, strtod(copy, NULL)};
	free(copy);
	return 0;
}

/* Each number as its text, for tg_request_numbers_of_text(), whose bodies
 * have an integer that yajl's integer callback would refuse. */
static int
on_number_text(void *ctx, const char *text, size_t len)
{
	struct scan *s = ctx;
	struct tg_body_number number;

	scalar(s);
	if (!at_top(s) || s->member != M_NUMBER)
		return 1;
	if (number_of_text(text, len, &number) != 0)
		return unsure(s);
	return keep_number(s, number.kind, number.integer, number.value);
}

/* The integer and double callbacks make yajl convert each number and
 * refuse one out of range, as jansson does. */
static const yajl_callbacks CALLBACKS = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_integer = on_integer,
	.yajl_double = on_double,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/* The same with each number given as its text. */
static const yajl_callbacks NUMBER_TEXT_CALLBACKS = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number_text,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/* Keep a text that the tap read. Returns nonzero, which stops the read,
 * when out of memory. */
static int
keep_text(void *arg, const char *text, size_t len)
{
	struct scan *s = arg;

	return tg_text_spans_add(&s->facts->texts, s->data, s->len, text, len) != 0;
}

/* Whether only jansson's whitespace follows the top object. yajl's
 * complete parse takes a token cut off by the end of the text, such as
 * the '"x' of '{} "x', as a token still to come, not as garbage. */
static int
only_whitespace_after(const struct scan *s)
{
	for (size_t i = s->root_end; i < s->len; i++) {
		if (strchr(" \t\n\r", s->data[i]) == NULL || s->data[i] == '\0')
			return 0;
	}
	return 1;
}

/* tg_request_scan() with the yajl callbacks given. */
static enum tg_scan_result
scan_with(const yajl_callbacks *callbacks, const char *data, size_t len, unsigned reads,
          struct tg_yj_keys *keys, struct tg_request_facts *facts)
{
	struct scan s;
	struct tg_text_tap_room room;
	struct tg_reply_tap tap;
	yajl_handle h;
	yajl_status st;

	/* A frame is written when its container opens, so the 512 bytes of
	 * frames need no zeroing, which was a tenth of a small body's scan. */
	memset(&s, 0, offsetof(struct scan, frames));
	s.data = data;
	s.len = len;
	s.keys = keys;
	s.facts = facts;
	s.want_params = (reads & TG_SCAN_PARAMS) != 0;

	memset(facts, 0, sizeof(*facts));
	if (reads & TG_SCAN_TEXTS) {
		tg_text_tap_request(&room, keep_text, &s, &tap);
		s.tap = &tap;
	}
	tg_yj_keys_close(keys, 0);
	if (len == 0 || tg_yj_text_unsure(data, len))
		return TG_SCAN_UNSURE;
	h = s.h = tg_yajl_alloc(callbacks, &s);
	if (h == NULL)
		return TG_SCAN_UNSURE;
	/* The callbacks check each string and key for UTF-8 themselves, more
	 * strictly than yajl does. Outside strings a byte above 0x7f is
	 * invalid JSON anyway, so yajl's own check would only repeat theirs. */
	yajl_config(h, yajl_dont_validate_strings, 1);

	/* Once the top object closed, yajl_complete_parse() has nothing to
	 * add: only_whitespace_after() checks the rest, a token yajl still
	 * waits for included. A body whose object did not close is unsure. */
	st = yajl_parse(h, (const unsigned char *)data, len);
	tg_yajl_free(h);

	if (st == yajl_status_ok && s.root && s.depth == 0 && !s.unsure &&
	    only_whitespace_after(&s)) {
		facts->read_params = s.want_params;
		facts->read_texts = s.tap != NULL;
		return TG_SCAN_READ;
	}
	tg_request_facts_free(facts);
	return TG_SCAN_UNSURE;
}

enum tg_scan_result
tg_request_scan(const char *data, size_t len, unsigned reads, struct tg_yj_keys *keys,
                struct tg_request_facts *facts)
{
	return scan_with(&CALLBACKS, data, len, reads, keys, facts);
}

int
tg_request_numbers_of_text(const char *data, size_t len, struct tg_yj_keys *keys,
                           struct tg_body_number numbers[TG_PARAM_NUMBERS])
{
	struct tg_request_facts facts;

	if (scan_with(&NUMBER_TEXT_CALLBACKS, data, len, TG_SCAN_PARAMS, keys, &facts) !=
	    TG_SCAN_READ)
		return -1;
	if (facts.params != NULL)
		memcpy(numbers, facts.params->number, sizeof(facts.params->number));
	else
		memset(numbers, 0, TG_PARAM_NUMBERS * sizeof(*numbers));
	tg_request_facts_free(&facts);
	return 0;
}

enum tg_stream_options
tg_stream_options_of(const json_t *body)
{
	json_t *options = json_object_get(body, "stream_options");

	if (options == NULL)
		return TG_STREAM_OPTIONS_ABSENT;
	if (!json_is_object(options))
		return TG_STREAM_OPTIONS_INVALID;
	if (json_is_true(json_object_get(options, "include_usage")))
		return TG_STREAM_OPTIONS_USAGE;
	return TG_STREAM_OPTIONS_NO_USAGE;
}

static struct tg_body_number
number_of(const json_t *value)
{
	if (json_is_integer(value))
		return (struct tg_body_number){TG_NUMBER_INTEGER, json_integer_value(value),
		                               json_number_value(value)};
	if (json_is_real(value))
		return (struct tg_body_number){TG_NUMBER_REAL, 0, json_real_value(value)};
	return (struct tg_body_number){TG_NUMBER_NONE, 0, 0};
}

/* "stop" is a string or an array of strings; other items are skipped. */
static void
stop_of(const json_t *stop, struct tg_request_params *params)
{
	size_t i;
	const json_t *item;

	if (json_is_string(stop)) {
		params->has_stop = 1;
		params->stop[0] = strdup(json_string_value(stop));
		params->n_stop = params->stop[0] != NULL;
		return;
	}
	params->has_stop = json_is_array(stop);
	json_array_foreach(stop, i, item) {
		if (params->n_stop == TG_MAX_STOP)
			break;
		if (json_is_string(item) &&
		    (params->stop[params->n_stop] = strdup(json_string_value(item))) != NULL)
			params->n_stop++;
	}
}

/* The tg_modality bits of a "modalities" array; other items are skipped. */
static unsigned
modalities_of(const json_t *modalities)
{
	unsigned bits = 0;
	size_t i;
	const json_t *item;

	json_array_foreach(modalities, i, item) {
		if (json_is_string(item))
			bits |= modality_of(json_string_value(item), json_string_length(item));
	}
	return bits;
}

/* The "type" of a "response_format" object, copied, or NULL. */
static char *
response_format_of(const json_t *format)
{
	const char *type = json_string_value(json_object_get(format, "type"));

	return type != NULL ? strdup(type) : NULL;
}

/* One pass over the members: json_object_get() would hash its key for
 * each of the names. */
void
tg_request_params_of(const json_t *body, struct tg_request_params *params)
{
	const char *key;
	const json_t *value;

	memset(params, 0, sizeof(*params));
	json_object_foreach((json_t *)body, key, value) {
		enum tg_request_number number;
		enum member member = top_member((const unsigned char *)key, strlen(key), &number);

		if (member == M_STOP)
			stop_of(value, params);
		else if (member == M_RESPONSE_FORMAT)
			params->response_format = response_format_of(value);
		else if (member == M_MODALITIES)
			params->modalities = modalities_of(value);
		else if (member == M_ENCODING_FORMAT && json_is_string(value))
			params->encoding_format = strdup(json_string_value(value));
		else if (member == M_NUMBER)
			params->number[number] = number_of(value);
	}
}

void
tg_request_params_free(struct tg_request_params *params)
{
	for (size_t i = 0; i < params->n_stop; i++)
		free(params->stop[i]);
	free(params->response_format);
	free(params->encoding_format);
	memset(params, 0, sizeof(*params));
}

void
tg_request_facts_free(struct tg_request_facts *facts)
{
	free(facts->model);
	free(facts->user);
	if (facts->params != NULL) {
		tg_request_params_free(facts->params);
		free(facts->params);
	}
	/* Most scans keep no text: spare the two calls to free(). */
	if (facts->texts.items != NULL || facts->texts.copies != NULL)
		tg_text_spans_free(&facts->texts);
	memset(facts, 0, sizeof(*facts));
}
