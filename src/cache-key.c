/*
 * Cache keys: canonical request text and its SHA-256.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cache-key.h"

/* Integers up to this magnitude convert exactly between double and int64. */
#define EXACT_INTEGER_MAX 9007199254740992.0    /* 2^53 */

/* Request fields that never change the generated output. */
static const char *const fixed_ignored_fields[] = {"stream", "stream_options", "user"};

/* Request headers that choose what a provider returns: API versions and
 * beta features. Responses to requests that differ in them may differ. */
static const char *const varying_headers[] = {
	"anthropic-version", "anthropic-beta", "openai-beta",
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

/* Write the hex SHA-256 of "name:value", so that equal values under
 * different headers give different tenants. Returns 0, or -1 when OpenSSL
 * failed (out of memory). */
static int
hash_header(const char *name, const char *value, char out[TG_CACHE_KEY_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx != NULL &&
	     EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, name, strlen(name)) == 1 &&
	     EVP_DigestUpdate(ctx, ":", 1) == 1 &&
	     EVP_DigestUpdate(ctx, value, strlen(value)) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &md_len) == 1;
	EVP_MD_CTX_free(ctx);

	if (!ok || md_len != TG_CACHE_KEY_LEN)
		return -1;
	hex_encode(md, md_len, out);
	return 0;
}

int
tg_cache_tenant(const struct tg_headers *headers, const char *tenant_header,
                char tenant[TG_CACHE_KEY_HEX_LEN + 1])
{
	const char *value;

	if (tenant_header != NULL) {
		value = tg_headers_get(headers, tenant_header);
		if (value != NULL)
			return hash_header("tenant-header", value, tenant);
	}

	/* Without a tenant header, the first credential header present. */
	for (size_t i = 0; i < TG_N_CREDENTIAL_HEADERS; i++) {
		value = tg_headers_get(headers, tg_credential_headers[i]);
		if (value != NULL)
			return hash_header(tg_credential_headers[i], value, tenant);
	}
	tenant[0] = '\0';
	return 0;
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

/* Normalise one member or element: replace it in its container when it is
 * a real with an integral value, or descend into it. */
static int
normalize_child(json_t *container, const char *key, size_t index, json_t *child)
{
	json_int_t integer;

	if (!json_is_real(child))
		return tg_cache_normalize_numbers(child);
	if (!real_as_integer(json_real_value(child), &integer))
		return 0;
	if (key != NULL)
		return json_object_set_new(container, key, json_integer(integer));
	return json_array_set_new(container, index, json_integer(integer));
}

int
tg_cache_normalize_numbers(json_t *value)
{
	const char *key;
	json_t *child;
	size_t index;

	if (json_is_object(value)) {
		json_object_foreach(value, key, child) {
			if (normalize_child(value, key, 0, child) != 0)
				return -1;
		}
	} else if (json_is_array(value)) {
		json_array_foreach(value, index, child) {
			if (normalize_child(value, NULL, index, child) != 0)
				return -1;
		}
	}
	return 0;
}

/* Add to canonical, as "headers", the varying headers that headers
 * contains, under the lower-case names of the table. Nothing is added when
 * it contains none, so that the keys of requests without them stay what
 * they were. Returns 0, or -1 when out of memory. */
static int
add_varying_headers(json_t *canonical, const struct tg_headers *headers)
{
	json_t *found = json_object();
	int rc = 0;

	if (found == NULL)
		return -1;
	for (size_t i = 0; headers != NULL && i < sizeof(varying_headers) / sizeof(varying_headers[0]); i++) {
		const char *value = tg_headers_get(headers, varying_headers[i]);

		/* Unchecked: a header value may contain bytes that are not UTF-8. */
		if (value != NULL &&
		    json_object_set_new(found, varying_headers[i], json_string_nocheck(value)) != 0)
			rc = -1;
	}
	if (rc == 0 && json_object_size(found) > 0)
		return json_object_set_new(canonical, "headers", found);
	json_decref(found);
	return rc;
}

char *
tg_cache_canonical(const json_t *body, const struct tg_cache_key_scope *scope)
{
	json_t *request = json_deep_copy(body);
	json_t *canonical;
	char *text;

	if (request == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(fixed_ignored_fields) / sizeof(fixed_ignored_fields[0]); i++)
		json_object_del(request, fixed_ignored_fields[i]);
	for (size_t i = 0; i < scope->n_ignore_fields; i++)
		json_object_del(request, scope->ignore_fields[i]);

	if (tg_cache_normalize_numbers(request) != 0) {
		json_decref(request);
		return NULL;
	}

	canonical = json_pack("{s:i, s:s, s:s, s:s, s:o}", "v", TG_CACHE_KEY_VERSION,
	                      "path", scope->path, "route", scope->route,
	                      "tenant", scope->tenant, "request", request);
	if (canonical == NULL)
		return NULL;

	/* Added only when set, so the keys of routes without response filters
	 * stay what they were. */
	if (scope->filters != NULL &&
	    json_object_set_new(canonical, "filters", json_string(scope->filters)) != 0) {
		json_decref(canonical);
		return NULL;
	}
	if (add_varying_headers(canonical, scope->headers) != 0) {
		json_decref(canonical);
		return NULL;
	}
	text = json_dumps(canonical, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(canonical);
	return text;
}

int
tg_cache_key(const json_t *body, const struct tg_cache_key_scope *scope,
             unsigned char key[TG_CACHE_KEY_LEN])
{
	char *text = tg_cache_canonical(body, scope);
	unsigned int md_len = 0;
	int ok;

	if (text == NULL)
		return -1;
	ok = EVP_Digest(text, strlen(text), key, &md_len, EVP_sha256(), NULL) == 1 &&
	     md_len == TG_CACHE_KEY_LEN;
	free(text);
	return ok ? 0 : -1;
}
