/*
 * Config sections of gateway keys:
 *
 *   "gateway_keys": {
 *     "team-a": {"key": "${TEAM_A_KEY}"},
 *     "ci": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
 *            "limits": {"requests_per_minute": 60}}
 *   }
 *   "routes": [{..., "auth": {"keys": ["team-a"]}},
 *              {..., "auth": {"required": false}}]
 *
 * A secret is given as "key", which reads the environment through
 * ${NAME} as a backend's api_key does, or as the hex SHA-256 of the secret,
 * so that the file need not hold it at all. Either way only the digest is
 * kept. Messages never quote a "key" value, expanded or not.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "auth-config.h"
#include "auth-t.h"
#include "config-parse.h"
#include "ratelimit-config.h"
#include "sha256.h"

/* A key object as written, before its secret becomes a digest. */
struct key_entry {
	char *key;              /* secret, expanded */
	char *sha256;           /* hex digest */
	struct tg_key_limits limits;
};

static const struct setting key_settings[] = {
	{ .key = "key", .type = T_STRING, .offset = offsetof(struct key_entry, key),
	  .help = "the secret, best as \"${NAME}\" from the environment; or give sha256" },
	{ .key = "sha256", .type = T_STRING, .offset = offsetof(struct key_entry, sha256),
	  .help = "hex SHA-256 of the secret, instead of key" },
	{ .key = "limits", .type = T_CUSTOM, .parse = tg_parse_key_limits, .doc_type = "object",
	  .section = &tg_key_limits_section, .offset = offsetof(struct key_entry, limits),
	  .help = "requests and tokens per minute that the key may use, in this instance" },
};
static const struct section key_section = SECTION(key_settings);

/* Read the 64 hex digits of hex into digest. Returns 0, or -1 when hex is
 * not of that form. */
static int
parse_hex_digest(const char *hex, unsigned char digest[TG_KEY_DIGEST_LEN])
{
	if (strlen(hex) != 2 * TG_KEY_DIGEST_LEN)
		return -1;
	for (size_t i = 0; i < TG_KEY_DIGEST_LEN; i++) {
		unsigned hi, lo;

		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]))
			return -1;
		hi = (unsigned)(isdigit((unsigned char)hex[2 * i]) ? hex[2 * i] - '0'
		                : tolower((unsigned char)hex[2 * i]) - 'a' + 10);
		lo = (unsigned)(isdigit((unsigned char)hex[2 * i + 1]) ? hex[2 * i + 1] - '0'
		                : tolower((unsigned char)hex[2 * i + 1]) - 'a' + 10);
		digest[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* The SHA-256 of the empty string. */
static const unsigned char empty_digest[TG_KEY_DIGEST_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8,
	0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

/* Set k's digest from the entry, which must give exactly one of key and
 * sha256, and a secret that a caller can present. Returns 0, or -1 after
 * reporting. */
static int
set_digest(struct load_ctx *ctx, const char *path, const struct key_entry *e,
           struct tg_gateway_key *k)
{
	char child[PATH_LEN], q[QUOTE_LEN];

	if ((e->key == NULL) == (e->sha256 == NULL)) {
		report(ctx, path, "give the secret once: either \"key\" (such as "
		       "\"${TEAM_KEY}\") or \"sha256\" (its hex SHA-256)");
		return -1;
	}
	if (e->sha256 != NULL && parse_hex_digest(e->sha256, k->digest) != 0) {
		report(ctx, path_key(child, path, "sha256"), "invalid digest %s; expected "
		       "64 hexadecimal digits, as sha256sum prints them",
		       quote(e->sha256, q, sizeof(q)));
		return -1;
	}
	if (e->key != NULL && header_ows_strip(e->key) != TG_OWS_KEPT) {
		report(ctx, path_key(child, path, "key"), "starts or ends with a space or tab, "
		       "which HTTP strips from a header value, so no caller could present this "
		       "key; remove the spaces and tabs around it (the value is not shown: it is "
		       "a secret)");
		return -1;
	}
	if (e->key != NULL && tg_sha256(e->key, strlen(e->key), k->digest) != 0) {
		report_oom(ctx, path);
		return -1;
	}
	if (e->sha256 != NULL && memcmp(k->digest, empty_digest, sizeof(empty_digest)) == 0) {
		report(ctx, path_key(child, path, "sha256"), "is the SHA-256 of the empty "
		       "string, which no caller can present, since an empty credential header "
		       "counts as none; give the digest of the key");
		return -1;
	}
	return 0;
}

/* Report a key whose secret an earlier key has too: the gateway could
 * not tell which of the two a caller is. */
static void
check_unique_secret(struct load_ctx *ctx, const char *path,
                    const struct tg_gateway_keys *keys, size_t i)
{
	for (size_t j = 0; j < i; j++) {
		if (keys->keys[j].name != NULL &&
		    memcmp(keys->keys[j].digest, keys->keys[i].digest, TG_KEY_DIGEST_LEN) == 0) {
			report(ctx, path, "has the same secret as gateway_keys.%s; each key "
			       "needs a secret of its own, so that callers can be told apart",
			       keys->keys[j].name);
			return;
		}
	}
}

/* Parse the key object value, found at path, into k's digest. Returns 0,
 * or -1 after reporting. */
static int
parse_key(struct load_ctx *ctx, const char *path, json_t *value, struct tg_gateway_key *k)
{
	struct key_entry e = {0};
	unsigned errors_before = ctx->n_errors;
	int rc = -1;

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object with \"key\" or \"sha256\"", value);
		return -1;
	}
	parse_section(ctx, path, value, &e, &key_section);
	if (ctx->n_errors == errors_before)
		rc = set_digest(ctx, path, &e, k);
	k->limits = e.limits;

	if (e.key != NULL)
		explicit_bzero(e.key, strlen(e.key));
	free(e.key);
	free(e.sha256);
	return rc;
}

static void
parse_gateway_keys(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                   const struct setting *s)
{
	struct tg_gateway_keys *keys;
	char child[PATH_LEN], q[QUOTE_LEN];
	const char *name;
	json_t *item;

	if (!json_is_object(value) || json_object_size(value) == 0) {
		report_type(ctx, path, "a non-empty object of named keys", value);
		return;
	}
	keys = calloc(1, sizeof(*keys));
	if (keys != NULL)
		keys->keys = calloc(json_object_size(value), sizeof(*keys->keys));
	if (keys == NULL || keys->keys == NULL) {
		free(keys);
		report_oom(ctx, path);
		return;
	}
	*FIELD(base, s, struct tg_gateway_keys *) = keys;

	json_object_foreach(value, name, item) {
		struct tg_gateway_key *k = &keys->keys[keys->n++];

		path_key(child, path, name);
		if (!is_valid_name(name))
			report(ctx, path, "invalid key name %s; use 1 to %d letters, digits, "
			       "\"_\", \"-\" or \".\"", quote(name, q, sizeof(q)), NAME_MAX_LEN);
		check_unreserved_name(ctx, child, name, "key", "none",
		                      "requests without a gateway key");
		if (parse_key(ctx, child, item, k) != 0)
			continue;
		check_unique_secret(ctx, child, keys, keys->n - 1);
		if ((k->name = strdup(name)) == NULL)
			report_oom(ctx, child);
	}
}

static void
free_gateway_keys(void *obj)
{
	struct tg_gateway_keys *keys = obj;

	for (size_t i = 0; i < keys->n; i++) {
		explicit_bzero(keys->keys[i].digest, TG_KEY_DIGEST_LEN);
		free(keys->keys[i].name);
	}
	free(keys->keys);
	free(keys);
}

const struct feature tg_gateway_keys_feature = {
	.parse = parse_gateway_keys,
	.free = free_gateway_keys,
	.section = &key_section,
	.element = ".NAME",
	.doc_type = "object",
};

/* --- routes[].auth ---------------------------------------------------------- */

/* Find the gateway key called name, or NULL. */
static const struct tg_gateway_key *
find_key(const struct tg_gateway_keys *keys, const char *name)
{
	for (size_t i = 0; keys != NULL && i < keys->n; i++) {
		if (keys->keys[i].name != NULL && strcmp(keys->keys[i].name, name) == 0)
			return &keys->keys[i];
	}
	return NULL;
}

/* routes[].auth.keys: names of gateway keys, resolved into pointers. */
static void
parse_allowed_keys(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                   const struct setting *s)
{
	struct tg_route_auth *auth = base;
	const struct tg_gateway_keys *keys = ctx->cfg->gateway_keys;
	char child[PATH_LEN], q[QUOTE_LEN];
	json_t *item;
	size_t i;

	(void)s;
	if (!json_is_array(value) || json_array_size(value) == 0) {
		report_type(ctx, path, "a non-empty array of gateway_keys names", value);
		return;
	}
	auth->allowed = calloc(json_array_size(value), sizeof(*auth->allowed));
	if (auth->allowed == NULL) {
		report_oom(ctx, path);
		return;
	}
	json_array_foreach(value, i, item) {
		const struct tg_gateway_key *k;

		path_index(child, path, i);
		if (!json_is_string(item)) {
			report_type(ctx, child, "the name of a gateway key", item);
			continue;
		}
		k = find_key(keys, json_string_value(item));
		if (k == NULL) {
			report(ctx, child, "unknown gateway key %s; it must be a name in gateway_keys",
			       quote(json_string_value(item), q, sizeof(q)));
			continue;
		}
		auth->allowed[auth->n_allowed++] = k;
	}
}

static const struct setting route_auth_settings[] = {
	{ .key = "required", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_route_auth, required),
	  .help = "whether a caller needs a gateway key; false opens the route to anyone" },
	{ .key = "keys", .type = T_CUSTOM, .parse = parse_allowed_keys, .doc_type = "array",
	  .help = "names of the gateway keys that may use the route; absent: every key" },
};
static const struct section route_auth_section = SECTION(route_auth_settings);

static void
parse_route_auth(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                 const struct setting *s)
{
	struct tg_route_auth *auth;
	char child[PATH_LEN];

	if (ctx->cfg->gateway_keys == NULL) {
		report(ctx, path, "has no effect without \"gateway_keys\"; define the keys "
		       "at the top level or remove this key");
		return;
	}
	auth = parse_object(ctx, path, value, sizeof(*auth), &route_auth_section);
	if (auth == NULL)
		return;
	*FIELD(base, s, struct tg_route_auth *) = auth;

	/* A "required" of the wrong type was reported and left at zero, so only
	 * a written false opens the route. */
	if (!json_is_false(json_object_get(value, "required")))
		return;
	if (json_object_get(value, "keys") != NULL)
		report(ctx, path_key(child, path, "keys"), "has no effect when \"required\" is "
		       "false, since anyone may use the route; remove one of the two");
	ctx->cfg->gateway_keys->any_open_route = 1;
}

static void
free_route_auth(void *obj)
{
	struct tg_route_auth *auth = obj;

	free(auth->allowed);
	free(auth);
}

const struct feature tg_route_auth_feature = {
	.parse = parse_route_auth,
	.free = free_route_auth,
	.section = &route_auth_section,
	.doc_type = "object",
};
