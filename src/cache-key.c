/*
 * Cache keys: canonical request text and its SHA-256.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <yajl/yajl_parse.h>

#include "cache-key.h"
#include "json-writer.h"
#include "sha256.h"
#include "yajl-arena.h"
#include "yajl-jansson.h"

/* Integers up to this magnitude convert exactly between double and int64. */
#define EXACT_INTEGER_MAX 9007199254740992.0    /* 2^53 */

/* Request fields that never change the generated output. */
static const char *const fixed_ignored_fields[] = {"stream", "stream_options", "user"};

/* Request headers that choose what a provider returns: API versions and
 * beta features. Responses to requests that differ in them may differ.
 * Lower case and in key order, as the canonical text has them. */
static const char *const varying_headers[] = {
	"anthropic-beta", "anthropic-version", "openai-beta",
};

static void
hex_encode(const unsigned char *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

void
tg_cache_key_hex(const unsigned char key[TG_CACHE_KEY_LEN],
                 char hex[TG_CACHE_KEY_HEX_LEN + 1])
{
	hex_encode(key, TG_CACHE_KEY_LEN, hex);
}

/*
 * Write the tenant of a caller: the hex SHA-256 of "NAME:VALUE" for the
 * caller's identity (caller_name NULL: none), followed, when tenant_value
 * is not NULL, by a NUL, "tenant-header:" and the tenant header's value.
 * Header values are C strings without a NUL, so the NUL keeps the two
 * parts apart. A tenant header thus only splits the entries of a caller
 * and never reaches those of another caller. Returns 0, or -1 when
 * OpenSSL failed (out of memory).
 */
static int
hash_tenant(const char *caller_name, const char *caller_value,
            const char *tenant_value, char out[TG_CACHE_KEY_HEX_LEN + 1])
{
	static const char tenant_part[] = "\0tenant-header:";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx != NULL && tg_sha256_md() != NULL &&
	     EVP_DigestInit_ex(ctx, tg_sha256_md(), NULL) == 1;
	if (ok && caller_name != NULL)
		ok = EVP_DigestUpdate(ctx, caller_name, strlen(caller_name)) == 1 &&
		     EVP_DigestUpdate(ctx, ":", 1) == 1 &&
		     EVP_DigestUpdate(ctx, caller_value, strlen(caller_value)) == 1;
	if (ok && tenant_value != NULL)
		ok = EVP_DigestUpdate(ctx, tenant_part, sizeof(tenant_part) - 1) == 1 &&
		     EVP_DigestUpdate(ctx, tenant_value, strlen(tenant_value)) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1;
	EVP_MD_CTX_free(ctx);

	if (!ok || md_len != TG_CACHE_KEY_LEN)
		return -1;
	hex_encode(md, md_len, out);
	return 0;
}

int
tg_cache_tenant(const struct tg_headers *headers, const char *tenant_header,
                const char *gateway_key, char tenant[TG_CACHE_KEY_HEX_LEN + 1])
{
	/* "gateway-key" is no header name, so no credential header gives
	 * the identity of a gateway key. */
	const char *caller_name = gateway_key != NULL ? "gateway-key" : NULL;
	const char *caller_value = gateway_key;
	const char *tenant_value = tenant_header != NULL ? tg_headers_get(headers, tenant_header)
	                                                 : NULL;

	/* Without a gateway key: the first credential header present. */
	for (size_t i = 0; i < TG_N_CREDENTIAL_HEADERS && caller_value == NULL; i++) {
		caller_name = tg_credential_headers[i];
		caller_value = tg_headers_get(headers, caller_name);
	}
	if (caller_value == NULL)
		caller_name = NULL;

	if (caller_name == NULL && tenant_value == NULL) {
		tenant[0] = '\0';
		return 0;
	}
	return hash_tenant(caller_name, caller_value, tenant_value, tenant);
}

/* The integer equal to a real, when there is one we can represent exactly. */
static int
real_as_integer(double d, int64_t *out)
{
	if (!isfinite(d) || d != floor(d) || fabs(d) > EXACT_INTEGER_MAX)
		return 0;
	*out = (int64_t)d;      /* also turns -0.0 into 0 */
	return 1;
}

/* --- the canonical request body ------------------------------------------ */

/*
 * The body is read with yajl's events and its canonical text written as
 * they come: each value in its place, each object's members first in the
 * order sent. When an object closes, its members are put in key order
 * in place, so the text of a nested object is final before its parent
 * sorts. Building and freeing a jansson tree of a 250-byte chat body
 * took about 55,000 instructions; this read takes about 14,000
 * (callgrind).
 */

/* Members and containers that a reader keeps without malloc: enough for
 * every body in the recorded requests. */
#define STACK_MEMBERS 32
#define STACK_CONTAINERS 16

/* The deepest nesting jansson reads, where a scalar counts as one more
 * level than its container. */
#define MAX_DEPTH 2048

/* Objects up to this size are sorted by insertion, which costs less than
 * qsort()'s calls for the few members of most. */
#define INSERTION_SORT_MAX 16

/* A member of an open object. */
struct member {
	const char *key;                /* decoded: in the body, or in
	                                   reader.keys once the object closes */
	size_t key_at, key_len;         /* the key's offset in reader.keys,
	                                   when key is NULL */
	size_t at, len;                 /* "key":value, in the canonical text;
	                                   len is set when the object closes */
	int ignored;                    /* a field of the body that scope
	                                   leaves out */
};

/* An open object or array. */
struct container {
	size_t at;                      /* its text after the '{' or '[' */
	size_t first_member;            /* its first in reader.members */
	size_t keys_at;                 /* reader.keys when it opened */
	size_t n;                       /* its members or items so far */
	int object;
};

struct body_reader {
	struct tg_json_writer *out;     /* the canonical text */
	const struct tg_cache_key_scope *scope;
	const char *data;               /* the body */
	size_t len;
	struct tg_json_writer keys;     /* keys that yajl decoded from escapes */
	struct member *members;         /* of the open objects */
	size_t n_members, members_cap;
	struct container *open;
	size_t depth, open_cap;
	int unkeyed;                    /* the body has no key */
	struct member members_on_stack[STACK_MEMBERS];
	struct container open_on_stack[STACK_CONTAINERS];
};

/* Order keys as jansson's JSON_SORT_KEYS does: bytewise, a prefix first. */
static int
compare_members(const struct member *x, const struct member *y)
{
	size_t common = x->key_len < y->key_len ? x->key_len : y->key_len;
	int order = memcmp(x->key, y->key, common);

	if (order != 0)
		return order;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static int
compare_for_qsort(const void *a, const void *b)
{
	return compare_members(a, b);
}

/* Whether key is one of the body fields that scope leaves out. */
static int
ignored_field(const char *key, size_t len, const struct tg_cache_key_scope *scope)
{
	for (size_t i = 0; i < sizeof(fixed_ignored_fields) / sizeof(fixed_ignored_fields[0]); i++) {
		if (strlen(fixed_ignored_fields[i]) == len &&
		    memcmp(key, fixed_ignored_fields[i], len) == 0)
			return 1;
	}
	for (size_t i = 0; i < scope->n_ignore_fields; i++) {
		if (strlen(scope->ignore_fields[i]) == len &&
		    memcmp(key, scope->ignore_fields[i], len) == 0)
			return 1;
	}
	return 0;
}

/* Stop the read: the body has no key. Returns 0 for yajl. */
static int
unkeyed(struct body_reader *r)
{
	r->unkeyed = 1;
	return 0;
}

/* Whether the read goes on: memory has not run out. */
static int
writing(const struct body_reader *r)
{
	return !r->out->failed && !r->keys.failed;
}

/*
 * Make room in *array, of *cap elements of size bytes, for one more than
 * n. The array starts on_stack and moves to the heap when that is full.
 * Returns 0, or -1 when out of memory.
 */
static int
make_room(void **array, const void *on_stack, size_t *cap, size_t n, size_t size)
{
	void *p;

	if (n < *cap)
		return 0;
	if (*array == on_stack) {
		if ((p = malloc(*cap * 2 * size)) != NULL)
			memcpy(p, on_stack, n * size);
	} else {
		p = realloc(*array, *cap * 2 * size);
	}
	if (p == NULL)
		return -1;
	*array = p;
	*cap *= 2;
	return 0;
}

/* A value starts: write the comma before an item of an array. Returns 0
 * when the value cannot be here: the body is not an object, or nests
 * deeper than jansson reads. */
static int
begin_value(struct body_reader *r)
{
	struct container *c;

	if (r->depth == 0 || r->depth >= MAX_DEPTH)
		return 0;
	c = &r->open[r->depth - 1];
	if (!c->object && c->n++ > 0)
		tg_json_literal(r->out, ",");
	return 1;
}

static int
open_container(struct body_reader *r, int object)
{
	if (r->depth > 0 && !begin_value(r))
		return unkeyed(r);
	if (r->depth == 0 && !object)
		return unkeyed(r);
	if (make_room((void **)&r->open, r->open_on_stack, &r->open_cap, r->depth,
	              sizeof(*r->open)) != 0) {
		r->out->failed = 1;
		return 0;
	}
	tg_json_raw(r->out, object ? "{" : "[", 1);
	r->open[r->depth++] = (struct container){
		.at = r->out->len, .first_member = r->n_members, .keys_at = r->keys.len,
		.object = object,
	};
	return writing(r);
}

static int
on_start_map(void *ctx)
{
	return open_container(ctx, 1);
}

static int
on_start_array(void *ctx)
{
	return open_container(ctx, 0);
}

static int
on_end_array(void *ctx)
{
	struct body_reader *r = ctx;

	r->depth--;
	tg_json_literal(r->out, "]");
	return writing(r);
}

/* Return whether the n members m of an object, whose text ends at end,
 * are in key order already with none left out, so that its text is kept
 * as written. Each member's length and key are set on the way. */
static int
members_in_order(struct body_reader *r, struct member *m, size_t n, size_t end)
{
	int in_order = 1;

	for (size_t i = 0; i < n; i++) {
		m[i].len = (i + 1 < n ? m[i + 1].at - 1 : end) - m[i].at;
		if (m[i].key == NULL)
			m[i].key = r->keys.data + m[i].key_at;
		in_order &= !m[i].ignored && (i == 0 || compare_members(&m[i - 1], &m[i]) < 0);
	}
	return in_order;
}

/* Put the n members m in key order. Returns 0, or -1 when a key is given
 * twice: jansson rejects such a body (JSON_REJECT_DUPLICATES), which
 * therefore never had a key. */
static int
sort_members(struct member *m, size_t n)
{
	if (n > INSERTION_SORT_MAX) {
		qsort(m, n, sizeof(*m), compare_for_qsort);
		for (size_t i = 1; i < n; i++) {
			if (compare_members(&m[i - 1], &m[i]) == 0)
				return -1;
		}
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		struct member next = m[i];
		size_t j = i;
		int order = 1;

		while (j > 0 && (order = compare_members(&m[j - 1], &next)) > 0) {
			m[j] = m[j - 1];
			j--;
		}
		if (order == 0)
			return -1;
		m[j] = next;
	}
	return 0;
}

/*
 * Write the text of the object c again, its n members m in key order and
 * without those left out. The sorted text is written after the object,
 * then moved in place of it. Returns 0, or -1 for a key given twice.
 */
static int
write_in_order(struct body_reader *r, const struct container *c, struct member *m, size_t n)
{
	struct tg_json_writer *out = r->out;
	size_t end = out->len, written = 0;

	if (sort_members(m, n) != 0)
		return -1;
	if (tg_json_room(out, end - c->at) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i].ignored)
			continue;
		if (written++ > 0)
			tg_json_put_literal(out, ",");
		tg_json_put(out, out->data + m[i].at, m[i].len);
	}
	memmove(out->data + c->at, out->data + end, out->len - end);
	out->len = c->at + (out->len - end);
	return 0;
}

static int
on_end_map(void *ctx)
{
	struct body_reader *r = ctx;
	const struct container *c = &r->open[r->depth - 1];
	struct member *m = r->members + c->first_member;
	size_t n = r->n_members - c->first_member;

	if (!members_in_order(r, m, n, r->out->len) && write_in_order(r, c, m, n) != 0)
		return unkeyed(r);
	r->keys.len = c->keys_at;
	r->n_members = c->first_member;
	r->depth--;
	tg_json_literal(r->out, "}");
	return writing(r);
}

/* Whether the len bytes at s lie in the body, where a key that yajl did
 * not decode stays as long as the read. */
static int
in_body(const struct body_reader *r, const unsigned char *s, size_t len)
{
	const char *p = (const char *)s;

	return p >= r->data && p <= r->data + r->len && len <= (size_t)(r->data + r->len - p);
}

static int
on_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct body_reader *r = ctx;
	struct container *c = &r->open[r->depth - 1];
	struct member *m;

	/* jansson takes keys and strings of UTF-8 without NUL. */
	if (!tg_yj_string_ok(key, len))
		return unkeyed(r);
	if (make_room((void **)&r->members, r->members_on_stack, &r->members_cap, r->n_members,
	              sizeof(*r->members)) != 0) {
		r->out->failed = 1;
		return 0;
	}
	if (c->n++ > 0)
		tg_json_literal(r->out, ",");

	m = &r->members[r->n_members++];
	*m = (struct member){
		.key_len = len, .at = r->out->len,
		.ignored = r->depth == 1 && ignored_field((const char *)key, len, r->scope),
	};
	/* A decoded key lives in yajl's buffer until the next event. */
	if (in_body(r, key, len)) {
		m->key = (const char *)key;
	} else {
		m->key_at = r->keys.len;
		tg_json_raw(&r->keys, (const char *)key, len);
	}
	tg_json_stringn(r->out, (const char *)key, len);
	tg_json_literal(r->out, ":");
	return writing(r);
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	struct body_reader *r = ctx;

	if (!begin_value(r) || !tg_yj_string_ok(s, len))
		return unkeyed(r);
	tg_json_stringn(r->out, (const char *)s, len);
	return writing(r);
}

/* A number as jansson stores it: an integer that fits 64 bits, else a
 * real. A real whose value is an integer of magnitude up to 2^53 is
 * written as that integer. An integer beyond 64 bits has no key: jansson
 * reads such a body only with every integer as a real (request.c), and
 * two of them that differ beyond a double's 53 bits would share a key.
 * A real beyond a double's range has no key either: jansson rejects it. */
static int
on_number(void *ctx, const char *s, size_t len)
{
	struct body_reader *r = ctx;
	long long integer;
	int64_t exact;
	double real;

	if (!begin_value(r))
		return unkeyed(r);
	switch (tg_yj_number(s, len, &integer, &real)) {
	case TG_YJ_INTEGER:
		tg_json_int(r->out, integer);
		break;
	case TG_YJ_REAL:
		if (real_as_integer(real, &exact))
			tg_json_int(r->out, exact);
		else
			tg_json_double(r->out, real);
		break;
	case TG_YJ_BIG_INTEGER:
	case TG_YJ_OVERFLOW:
		return unkeyed(r);
	}
	return writing(r);
}

static int
on_boolean(void *ctx, int value)
{
	struct body_reader *r = ctx;

	if (!begin_value(r))
		return unkeyed(r);
	if (value)
		tg_json_literal(r->out, "true");
	else
		tg_json_literal(r->out, "false");
	return writing(r);
}

static int
on_null(void *ctx)
{
	struct body_reader *r = ctx;

	if (!begin_value(r))
		return unkeyed(r);
	tg_json_literal(r->out, "null");
	return writing(r);
}

static const yajl_callbacks BODY_CALLBACKS = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/*
 * Write the canonical text of the len bytes of body at data into out.
 * Returns 0, TG_CACHE_KEY_UNKEYED when the body has no key, or -1 when
 * out of memory.
 */
static int
write_body(struct tg_json_writer *out, const char *data, size_t len,
           const struct tg_cache_key_scope *scope)
{
	struct body_reader r;
	yajl_handle h;
	yajl_status st;
	int rc;

	/* The arrays on the stack need no zeroing. */
	memset(&r, 0, offsetof(struct body_reader, members_on_stack));
	r.out = out;
	r.scope = scope;
	r.data = data;
	r.len = len;
	r.members = r.members_on_stack;
	r.members_cap = STACK_MEMBERS;
	r.open = r.open_on_stack;
	r.open_cap = STACK_CONTAINERS;
	if (tg_yj_text_rejected(data, len))
		return TG_CACHE_KEY_UNKEYED;
	if ((h = tg_yajl_alloc(&BODY_CALLBACKS, &r)) == NULL)
		return -1;
	/* The callbacks check each string and key as jansson does. */
	yajl_config(h, yajl_dont_validate_strings, 1);
	st = yajl_parse(h, (const unsigned char *)data, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	tg_yajl_free(h);

	if (!writing(&r))
		rc = -1;
	else if (r.unkeyed || st != yajl_status_ok || r.depth != 0 || len == 0)
		rc = TG_CACHE_KEY_UNKEYED;
	else
		rc = 0;
	tg_json_writer_free(&r.keys);
	if (r.members != r.members_on_stack)
		free(r.members);
	if (r.open != r.open_on_stack)
		free(r.open);
	return rc;
}

/* Write, as "headers", the varying headers that headers contains, under
 * the lower-case names of the table, which are in key order. Nothing is
 * written when it contains none, so that the keys of requests without them
 * stay what they were. */
static void
write_varying_headers(struct tg_json_writer *w, const struct tg_headers *headers)
{
	int first = 1;

	for (size_t i = 0; headers != NULL && i < sizeof(varying_headers) / sizeof(varying_headers[0]); i++) {
		const char *value = tg_headers_get(headers, varying_headers[i]);

		if (value == NULL)
			continue;
		tg_json_raw(w, first ? "\"headers\":{" : ",", first ? 11 : 1);
		tg_json_string(w, varying_headers[i]);
		tg_json_literal(w, ":");
		tg_json_string(w, value);
		first = 0;
	}
	if (!first)
		tg_json_literal(w, "},");
}

/*
 * Write the canonical text into w. The members of the outer object are
 * written in key order by hand: filters, headers, path, query, request,
 * route, tenant, v. Returns 0, TG_CACHE_KEY_UNKEYED when the body has no
 * key, or -1 when out of memory.
 */
static int
write_canonical(struct tg_json_writer *w, const char *body, size_t len,
                const struct tg_cache_key_scope *scope)
{
	int rc;

	tg_json_literal(w, "{");
	/* Written only when set, so the keys of routes without response
	 * filters stay what they were. */
	if (scope->filters != NULL) {
		tg_json_literal(w, "\"filters\":");
		tg_json_string(w, scope->filters);
		tg_json_literal(w, ",");
	}
	write_varying_headers(w, scope->headers);
	tg_json_literal(w, "\"path\":");
	tg_json_string(w, scope->path);
	/* Written only when the target has a query, so the keys of requests
	 * without one stay what they were. */
	if (scope->query != NULL && scope->query[0] != '\0') {
		tg_json_literal(w, ",\"query\":");
		tg_json_string(w, scope->query);
	}
	tg_json_literal(w, ",\"request\":");
	if ((rc = write_body(w, body, len, scope)) != 0)
		return rc;
	tg_json_literal(w, ",\"route\":");
	tg_json_string(w, scope->route);
	tg_json_literal(w, ",\"tenant\":");
	tg_json_string(w, scope->tenant);
	tg_json_literal(w, ",\"v\":");
	tg_json_int(w, TG_CACHE_KEY_VERSION);
	tg_json_literal(w, "}");
	return w->failed ? -1 : 0;
}

char *
tg_cache_canonical(const char *body, size_t len, const struct tg_cache_key_scope *scope)
{
	struct tg_json_writer w = {0};
	char *text = NULL;

	if (write_canonical(&w, body, len, scope) == 0 && (text = malloc(w.len + 1)) != NULL) {
		memcpy(text, w.data, w.len);
		text[w.len] = '\0';
	}
	tg_json_writer_free(&w);
	return text;
}

/* Whether s is valid UTF-8. */
static int
is_utf8(const char *s)
{
	size_t len = strlen(s);

	return tg_utf8_repaired_len(s, len) == len;
}

/* Whether the path, the query and the varying headers, which come from
 * the client unchecked, are UTF-8: the canonical text would write other
 * bytes as U+FFFD, so that two different values could share a key. */
static int
scope_is_utf8(const struct tg_cache_key_scope *scope)
{
	if (!is_utf8(scope->path) || (scope->query != NULL && !is_utf8(scope->query)))
		return 0;
	for (size_t i = 0; scope->headers != NULL && i < sizeof(varying_headers) / sizeof(varying_headers[0]); i++) {
		const char *value = tg_headers_get(scope->headers, varying_headers[i]);

		if (value != NULL && !is_utf8(value))
			return 0;
	}
	return 1;
}

int
tg_cache_key(const char *body, size_t len, const struct tg_cache_key_scope *scope,
             unsigned char key[TG_CACHE_KEY_LEN])
{
	struct tg_json_writer w = {0};
	unsigned int md_len = 0;
	int rc;

	if (!scope_is_utf8(scope))
		return TG_CACHE_KEY_NOT_UTF8;
	rc = write_canonical(&w, body, len, scope);
	if (rc == 0 && (tg_sha256_md() == NULL ||
	                EVP_Digest(w.data, w.len, key, &md_len, tg_sha256_md(), NULL) != 1 ||
	                md_len != TG_CACHE_KEY_LEN))
		rc = -1;
	tg_json_writer_free(&w);
	return rc;
}
