/*
 * The header line of a cache entry: writing and reading it.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yajl/yajl_parse.h>

#include "cache-header.h"
#include "yajl-arena.h"

static const struct {
	const char *name;
	size_t len;
} KIND_NAMES[] = {
	[TG_CACHE_KIND_JSON] = {"json", 4},
	[TG_CACHE_KIND_STREAM] = {"stream", 6},
	[TG_CACHE_KIND_EVENTS] = {"events", 6},
};

/* The response headers kept with an entry (tg_cache_header_keeps()). */
static const struct {
	const char *name;
	size_t len;
} KEPT_HEADERS[] = {
	{"content-type", 12},
	{"cache-control", 13},
	{"x-upstream-request-id", 21},
	{"request-id", 10},
	{"openai-processing-ms", 20},
	{"openai-version", 14},
	{"openai-organization", 19},
	{"openai-project", 14},
	{"anthropic-organization-id", 25},
};

int
tg_cache_header_keeps(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(KEPT_HEADERS) / sizeof(KEPT_HEADERS[0]); i++) {
		if (KEPT_HEADERS[i].len == len && strncasecmp(KEPT_HEADERS[i].name, name, len) == 0)
			return 1;
	}
	return 0;
}

/* --- writing --------------------------------------------------------------- */

/* Append ,"headers":{...} with the headers of h->headers that are kept,
 * or nothing when none is, so that an entry without them has the bytes
 * of older versions. */
static void
write_kept_headers(struct tg_json_writer *w, const struct tg_cache_header *h)
{
	int first = 1;

	for (size_t i = 0; h->headers != NULL && i < h->headers->count; i++) {
		const struct tg_header *hd = &h->headers->items[i];

		if (!tg_cache_header_keeps(hd->name, hd->name_len))
			continue;
		if (first)
			tg_json_literal(w, ",\"headers\":{");
		else
			tg_json_literal(w, ",");
		tg_json_stringn(w, hd->name, hd->name_len);
		tg_json_literal(w, ":");
		tg_json_stringn(w, hd->value, hd->value_len);
		first = 0;
	}
	if (!first)
		tg_json_literal(w, "}");
}

void
tg_cache_header_write(struct tg_json_writer *w, const struct tg_cache_header *h)
{
	tg_json_literal(w, "{\"v\":");
	tg_json_int(w, TG_CACHE_ENTRY_VERSION);
	tg_json_literal(w, ",\"created_ms\":");
	tg_json_int(w, h->created_ms);
	tg_json_literal(w, ",\"kind\":");
	tg_json_plain(w, KIND_NAMES[h->kind].name, KIND_NAMES[h->kind].len);
	if (h->kind == TG_CACHE_KIND_STREAM) {
		tg_json_literal(w, ",\"usage\":");
		tg_json_bool(w, h->has_usage);
		tg_json_literal(w, ",\"usage_event\":");
		tg_json_int(w, h->usage_event);
	}
	tg_json_literal(w, ",\"bytes\":[");
	for (size_t i = 0; i < h->n_parts; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		tg_json_uint(w, h->bytes[i]);
	}
	tg_json_literal(w, "]");
	write_kept_headers(w, h);
	tg_json_literal(w, "}");
}

/* --- reading --------------------------------------------------------------- */

/* The members of the header object that are read. */
enum member {
	M_OTHER,
	M_VERSION,
	M_CREATED,
	M_KIND,
	M_USAGE,
	M_USAGE_EVENT,
	M_BYTES,
	M_HEADERS,
};

/* One bit per member whose last value had the right type. */
#define HAS(m) (1u << (m))

struct reader {
	struct tg_cache_header *h;
	unsigned has;
	long long version;
	size_t depth;           /* containers open; the header object is 1 */
	enum member member;     /* the member whose value comes next, at depth 1 */
	int in_bytes;           /* inside the array of "bytes" (depth 2) */
	int in_headers;         /* inside the object of "headers" (depth 2) */
	char header_name[64];   /* the name of the member of "headers" read
	                           last, when kept; else "" */
	size_t capacity;        /* of h->bytes */
	int out_of_memory;
};

static enum member
member_of(const unsigned char *key, size_t len)
{
	static const struct {
		const char *name;
		size_t len;
		enum member member;
	} names[] = {
		{"v", 1, M_VERSION},
		{"created_ms", 10, M_CREATED},
		{"kind", 4, M_KIND},
		{"usage", 5, M_USAGE},
		{"usage_event", 11, M_USAGE_EVENT},
		{"bytes", 5, M_BYTES},
		{"headers", 7, M_HEADERS},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (names[i].len == len && memcmp(names[i].name, key, len) == 0)
			return names[i].member;
	}
	return M_OTHER;
}

/* A value of a member of "headers" that is not a string: as in jansson's
 * tree, it replaces an earlier value of that name, so the name is gone. */
static void
drop_header_value(struct reader *r)
{
	if (r->header_name[0] != '\0')
		tg_headers_remove(&r->h->kept, r->header_name);
}

/* The member "headers" gets a value: it replaces the headers of an
 * earlier "headers", and only an object gives new ones. */
static void
start_headers(struct reader *r, int is_object)
{
	tg_headers_free(&r->h->kept);
	r->in_headers = is_object;
}

/* A value of a member of the header object: the member counts as given
 * when valid is 1, as absent otherwise, whatever an earlier value was. */
static void
member_value(struct reader *r, int valid)
{
	if (r->member == M_HEADERS)
		start_headers(r, 0);
	if (valid)
		r->has |= HAS(r->member);
	else
		r->has &= ~HAS(r->member);
}

/* Append len to the lengths of "bytes". Returns 0, or -1 out of memory. */
static int
add_length(struct reader *r, size_t len)
{
	struct tg_cache_header *h = r->h;

	if (h->n_parts == r->capacity) {
		size_t capacity = r->capacity ? 2 * r->capacity : 8;
		size_t *bytes = realloc(h->bytes, capacity * sizeof(*bytes));

		if (bytes == NULL) {
			r->out_of_memory = 1;
			return -1;
		}
		h->bytes = bytes;
		r->capacity = capacity;
	}
	h->bytes[h->n_parts++] = len;
	return 0;
}

/* A value other than an integer inside the array of "bytes" spoils it. */
static void
spoil_bytes(struct reader *r)
{
	r->has &= ~HAS(M_BYTES);
}

/* A scalar of a type that no member takes: null, a real. Returns 0 (stop)
 * only for a text that is not an object. */
static int
other_scalar(struct reader *r)
{
	if (r->depth == 0)
		return 0;
	if (r->depth == 1) {
		member_value(r, 0);
	} else if (r->in_bytes && r->depth == 2) {
		spoil_bytes(r);
	} else if (r->in_headers && r->depth == 2) {
		drop_header_value(r);
	}
	return 1;
}

static int
on_null(void *ctx)
{
	return other_scalar(ctx);
}

static int
on_double(void *ctx, double value)
{
	(void)value;
	return other_scalar(ctx);
}

static int
on_boolean(void *ctx, int value)
{
	struct reader *r = ctx;

	if (r->depth != 1)
		return other_scalar(r);
	member_value(r, r->member == M_USAGE);
	if (r->member == M_USAGE)
		r->h->has_usage = value != 0;
	return 1;
}

static int
on_integer(void *ctx, long long value)
{
	struct reader *r = ctx;

	if (r->in_bytes && r->depth == 2) {
		if (value < 0)
			spoil_bytes(r);
		else if (add_length(r, (size_t)value) != 0)
			return 0;
		return 1;
	}
	if (r->depth != 1)
		return other_scalar(r);

	member_value(r, r->member == M_VERSION || r->member == M_CREATED ||
	                r->member == M_USAGE_EVENT);
	if (r->member == M_VERSION)
		r->version = value;
	else if (r->member == M_CREATED)
		r->h->created_ms = value;
	else if (r->member == M_USAGE_EVENT)
		r->h->usage_event = value;
	return 1;
}

/* 1 when the len bytes at value may be sent as a header value, with no
 * control character but HTAB (RFC 9110 section 5.5). An entry altered in
 * Redis thus cannot add a line to a response or break its head. */
static int
value_sendable(const char *value, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* A string in the object of "headers": the value of the name before it.
 * Returns 0 (stop) when memory ran out. */
static int
header_value(struct reader *r, const unsigned char *s, size_t len)
{
	const char *value = (const char *)s;

	drop_header_value(r);
	if (r->header_name[0] == '\0' || !value_sendable(value, len))
		return 1;
	if (tg_headers_add(&r->h->kept, r->header_name, strlen(r->header_name), value, len) != 0) {
		r->out_of_memory = 1;
		return 0;
	}
	return 1;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct reader *r = ctx;

	if (r->in_headers && r->depth == 2)
		return header_value(r, s, len);
	if (r->depth != 1)
		return other_scalar(r);
	member_value(r, r->member == M_KIND);
	if (r->member != M_KIND)
		return 1;

	r->h->kind = TG_CACHE_KIND_OTHER;
	for (size_t k = 1; k < sizeof(KIND_NAMES) / sizeof(KIND_NAMES[0]); k++) {
		if (KIND_NAMES[k].len == len && memcmp(KIND_NAMES[k].name, s, len) == 0)
			r->h->kind = (enum tg_cache_kind)k;
	}
	return 1;
}

static int
on_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct reader *r = ctx;

	if (r->depth == 1) {
		r->member = member_of(key, len);
	} else if (r->in_headers && r->depth == 2) {
		r->header_name[0] = '\0';
		if (tg_cache_header_keeps((const char *)key, len) && len < sizeof(r->header_name)) {
			memcpy(r->header_name, key, len);
			r->header_name[len] = '\0';
		}
	}
	return 1;
}

/* An object or array opens: the header object itself, the array of
 * "bytes", or a value that spoils the member it is given to. */
static int
open_container(struct reader *r, int is_array)
{
	if (r->depth == 0 && is_array)
		return 0;
	if (r->depth == 1) {
		int bytes = is_array && r->member == M_BYTES;

		member_value(r, bytes);
		if (bytes) {
			r->in_bytes = 1;
			r->h->n_parts = 0;      /* a later "bytes" replaces an earlier one */
		}
		if (r->member == M_HEADERS)
			start_headers(r, !is_array);
	} else if (r->in_bytes && r->depth == 2) {
		spoil_bytes(r);
	} else if (r->in_headers && r->depth == 2) {
		drop_header_value(r);
	}
	r->depth++;
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
on_end_container(void *ctx)
{
	struct reader *r = ctx;

	r->depth--;
	if (r->depth == 1) {
		r->in_bytes = 0;
		r->in_headers = 0;
	}
	return 1;
}

static const yajl_callbacks CALLBACKS = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_integer = on_integer,
	.yajl_double = on_double,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_container,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_container,
};

/* Whether the members read make a header of this version. */
static int
header_complete(const struct reader *r)
{
	unsigned needed = HAS(M_VERSION) | HAS(M_CREATED) | HAS(M_KIND) | HAS(M_BYTES);

	if (r->h->kind == TG_CACHE_KIND_STREAM)
		needed |= HAS(M_USAGE) | HAS(M_USAGE_EVENT);
	return (r->has & needed) == needed && r->version == TG_CACHE_ENTRY_VERSION;
}

int
tg_cache_header_read(const char *text, size_t len, struct tg_cache_header *h)
{
	struct reader r = {.h = h};
	yajl_handle parser;
	yajl_status st;

	memset(h, 0, sizeof(*h));
	h->usage_event = -1;
	parser = tg_yajl_alloc(&CALLBACKS, &r);
	if (parser == NULL)
		return -1;
	st = yajl_parse(parser, (const unsigned char *)text, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(parser);
	tg_yajl_free(parser);

	if (st == yajl_status_ok && header_complete(&r))
		return 0;
	tg_cache_header_free(h);
	return -1;
}

void
tg_cache_header_free(struct tg_cache_header *h)
{
	free(h->bytes);
	h->bytes = NULL;
	h->n_parts = 0;
	tg_headers_free(&h->kept);
}
