/*
 * The model, stream flag, user and stream options of a request body,
 * read with yajl (request-scan.h).
 *
 * The scan keeps a stack of the containers it is inside, each with the
 * start of its keys for the duplicate check. At the top object it notes
 * which member the last key named, so that a value of "model", "stream"
 * or "user" is kept, and in the object of "stream_options" whether
 * "include_usage" is true. Once the scan is unsure it stops yajl, since
 * jansson will read the body anyway.
 */
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

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
	M_INCLUDE_USAGE,        /* in the object of "stream_options" */
};

struct frame {
	int array;
	int options;            /* the object of the top "stream_options" */
	size_t first_key;       /* an object's first key in the keys */
};

struct scan {
	const char *data;
	size_t len;
	struct tg_yj_keys *keys;
	struct tg_request_facts *facts;
	yajl_handle h;
	int root;               /* the top value is an object */
	size_t root_end;        /* just after the top object's closing brace */
	int unsure;
	size_t depth;
	enum member member;     /* what the last key of the top object named */
	enum member option;     /* what the last key of "stream_options" named */
	struct frame frames[MAX_FRAMES];
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

/* A value other than an object, for the member now read. */
static void
scalar(struct scan *s)
{
	if (at_top(s) && s->member == M_STREAM_OPTIONS)
		s->facts->stream_options = TG_STREAM_OPTIONS_INVALID;
}

/* Give up: jansson decides. Returns 0 to stop yajl. */
static int
unsure(struct scan *s)
{
	s->unsure = 1;
	return 0;
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
	s->frames[s->depth] = (struct frame){
		.array = array, .first_key = s->keys->n,
		.options = !array && at_top(s) && s->member == M_STREAM_OPTIONS,
	};
	s->depth++;
	return 1;
}

static int
on_start_map(void *ctx)
{
	return open_container(ctx, 0);
}

static int
on_start_array(void *ctx)
{
	return open_container(ctx, 1);
}

static int
on_end(void *ctx)
{
	struct scan *s = ctx;
	struct frame *f = &s->frames[--s->depth];

	if (!f->array)
		tg_yj_keys_close(s->keys, f->first_key);
	if (s->depth == 0)
		s->root_end = yajl_get_bytes_consumed(s->h);
	return 1;
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
	if (s->depth == 1) {
		s->facts->has_members = 1;
		s->member = M_OTHER;
		if (len == 5 && memcmp(key, "model", 5) == 0)
			s->member = M_MODEL;
		else if (len == 6 && memcmp(key, "stream", 6) == 0)
			s->member = M_STREAM;
		else if (len == 4 && memcmp(key, "user", 4) == 0)
			s->member = M_USER;
		else if (len == 14 && memcmp(key, "stream_options", 14) == 0)
			s->member = M_STREAM_OPTIONS;
	}
	return 1;
}

static int
on_string(void *ctx, const unsigned char *str, size_t len)
{
	struct scan *s = ctx;
	char *copy;

	if (!tg_yj_string_ok(str, len))
		return unsure(s);
	scalar(s);
	if (!at_top(s) || (s->member != M_MODEL && s->member != M_USER))
		return 1;

	/* No NUL inside (checked above), so the copy is the whole string. A
	 * member given twice stopped the scan at its key, so none is set yet. */
	copy = strndup((const char *)str, len);
	if (copy == NULL)
		return unsure(s);
	if (s->member == M_MODEL)
		s->facts->model = copy;
	else
		s->facts->user = copy;
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
	return 1;
}

static int
on_null(void *ctx)
{
	scalar(ctx);
	return 1;
}

static int
on_integer(void *ctx, long long value)
{
	(void)value;
	return on_null(ctx);
}

static int
on_double(void *ctx, double value)
{
	(void)value;
	return on_null(ctx);
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
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

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

enum tg_scan_result
tg_request_scan(const char *data, size_t len, struct tg_yj_keys *keys,
                struct tg_request_facts *facts)
{
	struct scan s = {.data = data, .len = len, .keys = keys, .facts = facts};
	yajl_handle h;
	yajl_status st;

	memset(facts, 0, sizeof(*facts));
	tg_yj_keys_close(keys, 0);
	if (len == 0 || tg_yj_text_unsure(data, len))
		return TG_SCAN_UNSURE;
	h = s.h = tg_yajl_alloc(&CALLBACKS, &s);
	if (h == NULL)
		return TG_SCAN_UNSURE;

	st = yajl_parse(h, (const unsigned char *)data, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	tg_yajl_free(h);

	if (st == yajl_status_ok && s.root && !s.unsure && only_whitespace_after(&s))
		return TG_SCAN_READ;
	tg_request_facts_free(facts);
	return TG_SCAN_UNSURE;
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

void
tg_request_facts_free(struct tg_request_facts *facts)
{
	free(facts->model);
	free(facts->user);
	memset(facts, 0, sizeof(*facts));
}
