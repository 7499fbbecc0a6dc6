/*
 * The key path of a number that jansson cannot read (config-overflow.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "config-overflow.h"

/* The walk gives up on a value nested deeper than this, because no
 * setting is nested more than a few levels. */
#define MAX_DEPTH 32

struct frame {
	bool array;
	size_t index;                   /* of the next element of an array */
	char base[PATH_LEN];            /* the path of the array or object */
};

struct walk {
	struct frame frames[MAX_DEPTH];
	size_t depth;
	bool too_deep;
	char current[PATH_LEN];         /* the path of the value being read */
	struct tg_config_overflow *found;
	bool done;
};

/* A value starts: in an array, its path is the next index. A value of an
 * object has its path from its key already (on_map_key()). */
static void
value_starts(struct walk *w)
{
	struct frame *top;

	if (w->depth == 0) {
		w->current[0] = '\0';
		return;
	}
	top = &w->frames[w->depth - 1];
	if (top->array)
		path_index(w->current, top->base, top->index++);
}

static int
push(struct walk *w, bool array)
{
	struct frame *f;

	value_starts(w);
	if (w->depth == MAX_DEPTH) {
		w->too_deep = true;
		return 0;
	}
	f = &w->frames[w->depth++];
	f->array = array;
	f->index = 0;
	memcpy(f->base, w->current, PATH_LEN);
	return 1;
}

static int
pop(struct walk *w)
{
	w->depth--;
	return 1;
}

static int
on_start_map(void *ctx)
{
	return push(ctx, false);
}

static int
on_start_array(void *ctx)
{
	return push(ctx, true);
}

static int
on_end(void *ctx)
{
	return pop(ctx);
}

static int
on_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct walk *w = ctx;
	char name[PATH_LEN];

	snprintf(name, sizeof(name), "%.*s", (int)(len < PATH_LEN ? len : PATH_LEN - 1), key);
	path_key(w->current, w->frames[w->depth - 1].base, name);
	return 1;
}

static int
on_scalar(void *ctx)
{
	value_starts(ctx);
	return 1;
}

static int
on_boolean(void *ctx, int value)
{
	(void)value;
	return on_scalar(ctx);
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	(void)s;
	(void)len;
	return on_scalar(ctx);
}

/* Whether jansson 2.14 fails on text, a JSON number: its lexer reads a
 * number without ".", "e" or "E" with strtoll() and fails on ERANGE, and
 * another with strtod() and fails when that overflows to infinity. */
static bool
jansson_overflows(const char *text, bool *integer)
{
	double real;

	*integer = strpbrk(text, ".eE") == NULL;
	errno = 0;
	if (*integer) {
		(void)strtoll(text, NULL, 10);
		return errno == ERANGE;
	}
	real = strtod(text, NULL);
	return errno == ERANGE && isinf(real);
}

static int
on_number(void *ctx, const char *s, size_t len)
{
	struct walk *w = ctx;
	char *text;
	bool integer, overflows;

	value_starts(w);
	text = strndup(s, len);
	if (text == NULL)
		return 0;
	overflows = jansson_overflows(text, &integer);
	free(text);
	if (!overflows)
		return 1;

	memcpy(w->found->path, w->current, PATH_LEN);
	if (len < sizeof(w->found->number))
		snprintf(w->found->number, sizeof(w->found->number), "%.*s", (int)len, s);
	else
		snprintf(w->found->number, sizeof(w->found->number), "%.*s...",
		         (int)sizeof(w->found->number) - 4, s);
	w->found->integer = integer;
	w->done = true;
	return 0;       /* stop: jansson stopped here too */
}

static const yajl_callbacks walk_callbacks = {
	.yajl_null = on_scalar,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

int
tg_config_find_overflow(const char *text, size_t len, struct tg_config_overflow *found)
{
	struct walk *w = calloc(1, sizeof(*w));
	yajl_handle h;
	bool done;

	if (w == NULL)
		return -1;
	h = yajl_alloc(&walk_callbacks, NULL, w);
	if (h == NULL) {
		free(w);
		return -1;
	}
	w->found = found;
	/* A number at the very end reaches on_number() only at the completion,
	 * since more digits could have followed it. */
	if (yajl_parse(h, (const unsigned char *)text, len) == yajl_status_ok)
		(void)yajl_complete_parse(h);
	done = w->done && !w->too_deep;
	yajl_free(h);
	free(w);
	return done ? 0 : -1;
}
