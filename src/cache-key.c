/*
 * Cache keys: canonical request text and its SHA-256.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cache-key.h"
#include "json-writer.h"
#include "sha256.h"

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
real_as_integer(double d, json_int_t *out)
{
	if (!isfinite(d) || d != floor(d) || fabs(d) > EXACT_INTEGER_MAX)
		return 0;
	*out = (json_int_t)d;   /* also turns -0.0 into 0 */
	return 1;
}

/* --- the canonical text ------------------------------------------------- */

/* One member of an object, gathered to be written in key order. */
struct member {
	const char *key;
	size_t key_len;
	const json_t *value;
};

/* Members of objects up to this size are sorted on the stack. */
#define STACK_MEMBERS 16

/* Order keys as jansson's JSON_SORT_KEYS does: bytewise, a prefix first. */
static int
compare_members(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	size_t common = x->key_len < y->key_len ? x->key_len : y->key_len;
	int order = memcmp(x->key, y->key, common);

	if (order != 0)
		return order;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static void write_value(struct tg_json_writer *w, const json_t *value);

/* Whether key is one of the body fields that scope leaves out. */
static int
ignored_field(const char *key, const struct tg_cache_key_scope *scope)
{
	for (size_t i = 0; i < sizeof(fixed_ignored_fields) / sizeof(fixed_ignored_fields[0]); i++) {
		if (strcmp(key, fixed_ignored_fields[i]) == 0)
			return 1;
	}
	for (size_t i = 0; i < scope->n_ignore_fields; i++) {
		if (strcmp(key, scope->ignore_fields[i]) == 0)
			return 1;
	}
	return 0;
}

/* Write object with its members in key order, without those that scope
 * leaves out when scope is not NULL (the top level of a request). */
static void
write_object(struct tg_json_writer *w, const json_t *object,
             const struct tg_cache_key_scope *scope)
{
	struct member on_stack[STACK_MEMBERS];
	struct member *members = on_stack;
	size_t size = json_object_size(object), n = 0;
	const char *key;
	json_t *value;

	if (size > STACK_MEMBERS && (members = malloc(size * sizeof(*members))) == NULL) {
		w->failed = 1;
		return;
	}
	json_object_foreach((json_t *)object, key, value) {
		if (scope == NULL || !ignored_field(key, scope))
			members[n++] = (struct member){key, strlen(key), value};
	}
	qsort(members, n, sizeof(*members), compare_members);

	tg_json_literal(w, "{");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		tg_json_stringn(w, members[i].key, members[i].key_len);
		tg_json_literal(w, ":");
		write_value(w, members[i].value);
	}
	tg_json_literal(w, "}");
	if (members != on_stack)
		free(members);
}

/* Write value as jansson's compact dump does, except that a real whose
 * value is an integer of magnitude up to 2^53 is written as that integer
 * (and -0.0 as 0). */
static void
write_value(struct tg_json_writer *w, const json_t *value)
{
	json_int_t integer;
	size_t i;
	json_t *item;

	switch (json_typeof(value)) {
	case JSON_OBJECT:
		write_object(w, value, NULL);
		break;
	case JSON_ARRAY:
		tg_json_literal(w, "[");
		json_array_foreach((json_t *)value, i, item) {
			if (i > 0)
				tg_json_literal(w, ",");
			write_value(w, item);
		}
		tg_json_literal(w, "]");
		break;
	case JSON_STRING:
		tg_json_stringn(w, json_string_value(value), json_string_length(value));
		break;
	case JSON_INTEGER:
		tg_json_int(w, json_integer_value(value));
		break;
	case JSON_REAL:
		if (real_as_integer(json_real_value(value), &integer))
			tg_json_int(w, integer);
		else
			tg_json_double(w, json_real_value(value));
		break;
	case JSON_TRUE:
		tg_json_literal(w, "true");
		break;
	case JSON_FALSE:
		tg_json_literal(w, "false");
		break;
	case JSON_NULL:
		tg_json_literal(w, "null");
		break;
	}
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
 * route, tenant, v. Returns 0, or -1 when out of memory.
 */
static int
write_canonical(struct tg_json_writer *w, const json_t *body,
                const struct tg_cache_key_scope *scope)
{
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
	write_object(w, body, scope);
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
tg_cache_canonical(const json_t *body, const struct tg_cache_key_scope *scope)
{
	struct tg_json_writer w = {0};
	char *text = NULL;

	if (write_canonical(&w, body, scope) == 0 && (text = malloc(w.len + 1)) != NULL) {
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
tg_cache_key(const json_t *body, const struct tg_cache_key_scope *scope,
             unsigned char key[TG_CACHE_KEY_LEN])
{
	struct tg_json_writer w = {0};
	unsigned int md_len = 0;
	int ok;

	if (!scope_is_utf8(scope))
		return TG_CACHE_KEY_NOT_UTF8;
	ok = write_canonical(&w, body, scope) == 0 && tg_sha256_md() != NULL &&
	     EVP_Digest(w.data, w.len, key, &md_len, tg_sha256_md(), NULL) == 1 &&
	     md_len == TG_CACHE_KEY_LEN;
	tg_json_writer_free(&w);
	return ok ? 0 : -1;
}
