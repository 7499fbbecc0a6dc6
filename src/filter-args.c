/*
 * The escaped strings of a JSON text inside a JSON string (filter-args.h).
 *
 * yajl keeps a token split between two pieces and reports it when its end
 * comes, so an escape split across stream events decodes as one. In a
 * callback, yajl_get_bytes_consumed() is just after the token, in the
 * piece under way; the token's text runs from the end of the one before.
 * Only strings and keys are followed: the text between them (numbers,
 * literals, punctuation) has no backslash in valid JSON.
 */
#include <stdint.h>
#include <string.h>

#include "filter-args.h"
#include "yajl-arena.h"

/* Whether the string or key just read was written with an escape, and
 * move token_end past it. */
static int
token_escaped(struct tg_args_decoder *d)
{
	size_t end = yajl_get_bytes_consumed(d->h);
	size_t from = d->token_end > d->base ? d->token_end - d->base : 0;
	int escaped = (d->token_end < d->base && d->escaped) ||
	              (from < end && memchr(d->data + from, '\\', end - from) != NULL);

	d->token_start = d->token_end;
	d->token_end = d->base + end;
	d->escaped = 0;
	return escaped;
}

/* Pass a string or key on to fn when it was escaped, or when value is
 * set and the caller wants every value. */
static int
pass_token(struct tg_args_decoder *d, const unsigned char *s, size_t len, int value)
{
	d->last_escaped = token_escaped(d);
	if (!d->last_escaped && !(value && d->values))
		return 1;
	if (d->fn(d->arg, (const char *)s, len) != 0) {
		d->fn_stopped = 1;
		return 0;
	}
	return 1;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	return pass_token(ctx, s, len, 1);
}

static int
on_key(void *ctx, const unsigned char *s, size_t len)
{
	return pass_token(ctx, s, len, 0);
}

/* Pass a number on when the caller wants every value. yajl (2.1) passes
 * its text as written, since yajl_number is set. token_end stays, as it
 * follows strings and keys alone. */
static int
on_number(void *ctx, const char *s, size_t len)
{
	struct tg_args_decoder *d = ctx;
	int stop;

	if (!d->values || d->completing)
		return 1;
	d->last_escaped = 0;
	d->last_number = 1;
	d->number_end = d->base + yajl_get_bytes_consumed(d->h);
	stop = d->fn(d->arg, s, len) != 0;
	d->last_number = 0;
	if (stop)
		d->fn_stopped = 1;
	return !stop;
}

static const yajl_callbacks CALLBACKS = {
	.yajl_string = on_string,
	.yajl_map_key = on_key,
	.yajl_number = on_number,
};

int
tg_args_open(struct tg_args_decoder *d, tg_text_fn *fn, void *arg)
{
	*d = (struct tg_args_decoder){.fn = fn, .arg = arg};
	d->h = yajl_alloc(&CALLBACKS, NULL, d);
	return d->h != NULL ? 0 : -1;
}

int
tg_args_feed(struct tg_args_decoder *d, const char *data, size_t len, int last)
{
	yajl_status st;
	size_t from;

	if (d->stopped)
		return d->fn_stopped;
	d->data = data;
	st = yajl_parse(d->h, (const unsigned char *)data, len);
	if (st == yajl_status_ok && last) {
		d->completing = 1;
		st = yajl_complete_parse(d->h);
	}
	if (st != yajl_status_ok || last) {
		d->stopped = 1;
		return d->fn_stopped;
	}

	/* What follows the last string is the start of the next one. */
	from = d->token_end > d->base ? d->token_end - d->base : 0;
	if (from < len && memchr(data + from, '\\', len - from) != NULL)
		d->escaped = 1;
	d->base += len;
	d->data = NULL;
	return 0;
}

size_t
tg_args_hold(const struct tg_args_decoder *d, int rest_escaped)
{
	return (d->escaped || rest_escaped) && !d->stopped ? d->token_end : SIZE_MAX;
}

void
tg_args_close(struct tg_args_decoder *d)
{
	if (d->h != NULL)
		yajl_free(d->h);
	memset(d, 0, sizeof(*d));
}

int
tg_args_read(const char *text, size_t len, tg_text_fn *fn, void *arg)
{
	struct tg_args_decoder d;
	int rc;

	if (memchr(text, '\\', len) == NULL)
		return 0;
	if (tg_args_open(&d, fn, arg) != 0)
		return -1;
	rc = tg_args_feed(&d, text, len, 1);
	tg_args_close(&d);
	return rc;
}

int
tg_args_is_number(const char *raw, size_t raw_len, const char *text, size_t len, size_t end)
{
	size_t at;

	if (end == SIZE_MAX)
		return 1;
	if (text < raw || text > raw + raw_len || len > (size_t)(raw + raw_len - text))
		return 0;       /* decoded from an escape: a string */
	at = (size_t)(text - raw);
	return at == 0 || raw[at - 1] != '"';
}

/* The state of tg_args_values(). */
struct values_read {
	tg_args_value_fn *fn;
	tg_text_fn *key_fn;
	void *arg;
	int fn_stopped;
	yajl_handle h;
	int completing;         /* in yajl_complete_parse() */
};

static int
on_value(void *ctx, const char *s, size_t len)
{
	struct values_read *v = ctx;

	/* Inside a callback, yajl has consumed the value's token whole. A
	 * value passed by yajl_complete_parse() (a number that ends the text)
	 * was read from yajl's own buffer, so its end is unknown. */
	size_t end = v->completing ? SIZE_MAX : yajl_get_bytes_consumed(v->h);

	if (v->fn(v->arg, s, len, end) != 0) {
		v->fn_stopped = 1;
		return 0;
	}
	return 1;
}

static int
on_value_string(void *ctx, const unsigned char *s, size_t len)
{
	return on_value(ctx, (const char *)s, len);
}

static int
on_value_key(void *ctx, const unsigned char *s, size_t len)
{
	struct values_read *v = ctx;

	if (v->key_fn == NULL)
		return 1;
	if (v->key_fn(v->arg, (const char *)s, len) != 0) {
		v->fn_stopped = 1;
		return 0;
	}
	return 1;
}

/* With yajl_number set, yajl passes a number's text as it is written and
 * converts none. */
static const yajl_callbacks VALUE_CALLBACKS = {
	.yajl_string = on_value_string,
	.yajl_number = on_value,
	.yajl_map_key = on_value_key,
};

int
tg_args_values(const char *text, size_t len, tg_args_value_fn *fn, tg_text_fn *key_fn,
               void *arg)
{
	struct values_read v = {fn, key_fn, arg, 0, NULL, 0};
	yajl_handle h = tg_yajl_alloc(&VALUE_CALLBACKS, &v);
	yajl_status st;

	if (h == NULL)
		return -1;
	v.h = h;
	st = yajl_parse(h, (const unsigned char *)text, len);
	if (st == yajl_status_ok) {
		v.completing = 1;
		st = yajl_complete_parse(h);
	}
	tg_yajl_free(h);

	if (v.fn_stopped)
		return 1;
	return st == yajl_status_ok ? 0 : TG_ARGS_NOT_JSON;
}
