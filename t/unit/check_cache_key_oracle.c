/*
 * The cache key read from the body's text (src/cache-key.c) against the
 * key that a jansson tree of the body gave before it, kept here as the
 * oracle. Instances that share a Redis must agree on keys, so every body
 * must get the very same canonical text. A body must have no key exactly
 * when the old path had none. That is when jansson rejected it (and the
 * gateway with it), when it was not an object, or when jansson read it
 * only with every integer as a real.
 *
 * The bodies are the recorded requests of t/fixtures/openai-recorded/,
 * each also with its keys reversed, escaped to ASCII and indented. Then
 * come hand-made edge cases, and random bodies built from pieces that
 * cover escapes, equal keys spelt two ways, numbers at the limits of
 * int64 and double, and nesting.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache-key.h"
#include "fixture.h"
#include "json-writer.h"
#include "sha256.h"

/* --- the old key, from a jansson tree ----------------------------------- */

#define EXACT_INTEGER_MAX 9007199254740992.0    /* 2^53 */

static const char *const old_ignored_fields[] = {"stream", "stream_options", "user"};

static const char *const old_varying_headers[] = {
	"anthropic-beta", "anthropic-version", "openai-beta",
};

static int
old_real_as_integer(double d, json_int_t *out)
{
	if (!isfinite(d) || d != floor(d) || fabs(d) > EXACT_INTEGER_MAX)
		return 0;
	*out = (json_int_t)d;
	return 1;
}

struct old_member {
	const char *key;
	size_t key_len;
	const json_t *value;
};

static int
old_compare_members(const void *a, const void *b)
{
	const struct old_member *x = a, *y = b;
	size_t common = x->key_len < y->key_len ? x->key_len : y->key_len;
	int order = memcmp(x->key, y->key, common);

	if (order != 0)
		return order;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static void old_write_value(struct tg_json_writer *w, const json_t *value);

static int
old_ignored_field(const char *key, const struct tg_cache_key_scope *scope)
{
	for (size_t i = 0; i < sizeof(old_ignored_fields) / sizeof(old_ignored_fields[0]); i++) {
		if (strcmp(key, old_ignored_fields[i]) == 0)
			return 1;
	}
	for (size_t i = 0; i < scope->n_ignore_fields; i++) {
		if (strcmp(key, scope->ignore_fields[i]) == 0)
			return 1;
	}
	return 0;
}

static void
old_write_object(struct tg_json_writer *w, const json_t *object,
                 const struct tg_cache_key_scope *scope)
{
	size_t size = json_object_size(object), n = 0;
	struct old_member *members = malloc((size + 1) * sizeof(*members));
	const char *key;
	json_t *value;

	ck_assert_ptr_nonnull(members);
	json_object_foreach((json_t *)object, key, value) {
		if (scope == NULL || !old_ignored_field(key, scope))
			members[n++] = (struct old_member){key, strlen(key), value};
	}
	qsort(members, n, sizeof(*members), old_compare_members);

	tg_json_literal(w, "{");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		tg_json_stringn(w, members[i].key, members[i].key_len);
		tg_json_literal(w, ":");
		old_write_value(w, members[i].value);
	}
	tg_json_literal(w, "}");
	free(members);
}

static void
old_write_value(struct tg_json_writer *w, const json_t *value)
{
	json_int_t integer;
	size_t i;
	json_t *item;

	switch (json_typeof(value)) {
	case JSON_OBJECT:
		old_write_object(w, value, NULL);
		break;
	case JSON_ARRAY:
		tg_json_literal(w, "[");
		json_array_foreach((json_t *)value, i, item) {
			if (i > 0)
				tg_json_literal(w, ",");
			old_write_value(w, item);
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
		if (old_real_as_integer(json_real_value(value), &integer))
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

static void
old_write_varying_headers(struct tg_json_writer *w, const struct tg_headers *headers)
{
	int first = 1;

	for (size_t i = 0; headers != NULL && i < sizeof(old_varying_headers) / sizeof(old_varying_headers[0]); i++) {
		const char *value = tg_headers_get(headers, old_varying_headers[i]);

		if (value == NULL)
			continue;
		tg_json_raw(w, first ? "\"headers\":{" : ",", first ? 11 : 1);
		tg_json_string(w, old_varying_headers[i]);
		tg_json_literal(w, ":");
		tg_json_string(w, value);
		first = 0;
	}
	if (!first)
		tg_json_literal(w, "},");
}

static void
old_write_canonical(struct tg_json_writer *w, const json_t *body,
                    const struct tg_cache_key_scope *scope)
{
	tg_json_literal(w, "{");
	if (scope->filters != NULL) {
		tg_json_literal(w, "\"filters\":");
		tg_json_string(w, scope->filters);
		tg_json_literal(w, ",");
	}
	old_write_varying_headers(w, scope->headers);
	tg_json_literal(w, "\"path\":");
	tg_json_string(w, scope->path);
	if (scope->query != NULL && scope->query[0] != '\0') {
		tg_json_literal(w, ",\"query\":");
		tg_json_string(w, scope->query);
	}
	tg_json_literal(w, ",\"request\":");
	old_write_object(w, body, scope);
	tg_json_literal(w, ",\"route\":");
	tg_json_string(w, scope->route);
	tg_json_literal(w, ",\"tenant\":");
	tg_json_string(w, scope->tenant);
	tg_json_literal(w, ",\"v\":");
	tg_json_int(w, TG_CACHE_KEY_VERSION);
	tg_json_literal(w, "}");
}

/*
 * The canonical text the old path gave the len bytes at data, or NULL when
 * it gave no key. The body is read as request.c reads it, so a duplicate
 * key rejects it. On an integer overflow request.c read it again with
 * every integer as a real, and the cache passed such a body by, as it did
 * one that is not an object.
 */
static char *
old_canonical(const char *data, size_t len, const struct tg_cache_key_scope *scope)
{
	struct tg_json_writer w = {0};
	json_error_t error;
	json_t *body = json_loadb(data, len, JSON_REJECT_DUPLICATES, &error);
	char *text;

	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		return NULL;
	}
	old_write_canonical(&w, body, scope);
	json_decref(body);
	ck_assert(!w.failed);
	text = malloc(w.len + 1);
	ck_assert_ptr_nonnull(text);
	memcpy(text, w.data, w.len);
	text[w.len] = '\0';
	tg_json_writer_free(&w);
	return text;
}

/* --- comparing ---------------------------------------------------------- */

static struct tg_headers varying;
static char *ignored[] = {"metadata", "model", "k1"};

/* The scopes each body is keyed under: bare; with ignored fields; with
 * filters, varying headers and a query. */
static struct tg_cache_key_scope
scope_of(int i)
{
	struct tg_cache_key_scope s = {
		.path = "/v1/chat/completions", .route = "chat", .tenant = "t",
	};

	if (i == 1) {
		s.ignore_fields = ignored;
		s.n_ignore_fields = sizeof(ignored) / sizeof(ignored[0]);
	} else if (i == 2) {
		s.filters = "[\"{\\\"pattern\\\":\\\"\\u00e9\\\"}\"]";
		s.headers = &varying;
		s.query = "api-version=2024-10-21";
	}
	return s;
}

#define N_SCOPES 3

/* Bodies compared, and of those the ones with a key. */
static size_t compared, keyed;

/* Compare the new and the old canonical text and key of the len bytes at
 * data under every scope. */
static void
compare(const char *what, const char *data, size_t len)
{
	for (int i = 0; i < N_SCOPES; i++) {
		struct tg_cache_key_scope s = scope_of(i);
		char *old = old_canonical(data, len, &s);
		char *text = tg_cache_canonical(data, len, &s);
		unsigned char key[TG_CACHE_KEY_LEN], old_key[TG_SHA256_LEN];
		int rc = tg_cache_key(data, len, &s, key);

		ck_assert_msg((old == NULL) == (text == NULL),
		              "%s, scope %d: old %s, new %s:\n%.*s", what, i,
		              old != NULL ? "gave a key" : "gave no key", text != NULL ? text : "none",
		              (int)len, data);
		ck_assert_int_eq(rc, old != NULL ? 0 : TG_CACHE_KEY_UNKEYED);
		if (old != NULL) {
			ck_assert_msg(strcmp(old, text) == 0, "%s, scope %d:\n%.*s\nold %s\nnew %s",
			              what, i, (int)len, data, old, text);
			ck_assert_int_eq(tg_sha256(old, strlen(old), old_key), 0);
			ck_assert_mem_eq(key, old_key, TG_CACHE_KEY_LEN);
			keyed++;
		}
		compared++;
		free(old);
		free(text);
	}
}

static void
compare_text(const char *what, const char *data)
{
	compare(what, data, strlen(data));
}

static void
setup(void)
{
	tg_headers_init(&varying);
	ck_assert_int_eq(tg_headers_add(&varying, "OpenAI-Beta", 11, "assistants=v2", 13), 0);
	ck_assert_int_eq(tg_headers_add(&varying, "anthropic-version", 17, "2023-06-01", 10), 0);
	compared = keyed = 0;
}

static void
teardown(void)
{
	tg_headers_free(&varying);
}

/* --- recorded requests ------------------------------------------------- */

/* A copy of value with the members of every object in reverse order. */
static json_t *
reversed(const json_t *value)
{
	const char **keys;
	const char *key;
	json_t *child, *copy;
	size_t i, n = 0;

	if (json_is_array(value)) {
		copy = json_array();
		json_array_foreach(value, i, child)
			json_array_append_new(copy, reversed(child));
		return copy;
	}
	if (!json_is_object(value))
		return json_deep_copy(value);

	keys = malloc((json_object_size(value) + 1) * sizeof(*keys));
	ck_assert_ptr_nonnull(keys);
	json_object_foreach((json_t *)value, key, child)
		keys[n++] = key;
	copy = json_object();
	while (n-- > 0)
		json_object_set_new(copy, keys[n], reversed(json_object_get(value, keys[n])));
	free(keys);
	return copy;
}

/* The recorded body, then written again by jansson: keys reversed and
 * compact, escaped to ASCII, indented, and with fields the key ignores. */
static void
compare_recorded(const char *name, const char *body, size_t len)
{
	static const size_t flags[] = {
		JSON_COMPACT | JSON_PRESERVE_ORDER,
		JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER,
		JSON_INDENT(3) | JSON_PRESERVE_ORDER,
	};
	json_t *tree = json_loadb(body, len, 0, NULL), *turned;
	char *text;

	compare(name, body, len);
	ck_assert_msg(json_is_object(tree), "%s: the recorded request is not an object", name);
	turned = reversed(tree);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		text = json_dumps(turned, flags[i]);
		compare_text(name, text);
		free(text);
	}
	json_object_set_new(turned, "user", json_string("someone"));
	json_object_set_new(turned, "stream", json_true());
	json_object_set_new(turned, "metadata", json_pack("{s:i}", "b", 1));
	text = json_dumps(turned, JSON_PRESERVE_ORDER);
	compare_text(name, text);
	free(text);
	json_decref(turned);
	json_decref(tree);
}

START_TEST(recorded_requests)
{
	struct fixture_cache *cache = NULL;
	DIR *dir = opendir(TG_FIXTURE_DIR);
	struct dirent *entry;
	size_t bodies = 0;

	ck_assert_msg(dir != NULL, "cannot open %s", TG_FIXTURE_DIR);
	while ((entry = readdir(dir)) != NULL) {
		char name[128], err[256];
		size_t len = strlen(entry->d_name);
		const struct fixture *f;

		if (len <= 5 || len - 5 >= sizeof(name) ||
		    strcmp(entry->d_name + len - 5, ".yaml") != 0)
			continue;
		memcpy(name, entry->d_name, len - 5);
		name[len - 5] = '\0';
		f = fixture_get(&cache, TG_FIXTURE_DIR, name, err, sizeof(err));
		ck_assert_msg(f != NULL, "%s: %s", name, err);
		ck_assert_msg(f->request_body_len > 0, "%s has no request body", name);
		compare_recorded(name, f->request_body, f->request_body_len);
		bodies++;
	}
	closedir(dir);
	fixture_cache_free(cache);
	ck_assert_uint_ge(bodies, 15);
	ck_assert_uint_eq(keyed, compared);
}
END_TEST

/* --- hand-made bodies --------------------------------------------------- */

/* Bodies with a key. */
static const char *const keyed_bodies[] = {
	"{}",
	" {\"a\":1} \n",
	"{\"model\": \"m\", \"messages\": [], \"tools\": {}, \"x\": [[], {}, [{}]]}",
	/* key order, nested */
	"{\"z\": {\"y\": {\"x\": 1, \"w\": 2}, \"v\": [{\"u\": 1, \"t\": 2}]}, \"a\": 0}",
	"{\"b\": 1, \"a\": 2, \"ab\": 3, \"A\": 4, \"\": 5, \"aa\": 6}",
	/* unicode, escaped and not, in keys and values */
	"{\"\\u00e9\": \"\\u00e9\", \"\xc3\xa8\": \"\xc3\xa8\", \"\\ud83d\\ude00\": \"\\uD83D\\uDE00\","
	" \"e\\u0301\": \"\xe2\x80\xa8\\u2028\", \"\\u0041\": \"\\u007f\\u0080\\u07ff\\u0800\\uffff\"}",
	"{\"s\": \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0001 \\u001f \\u0020\"}",
	/* numbers: big and negative integers, reals at and past 2^53 */
	"{\"i\": [0, -0, 1, -1, 9223372036854775807, -9223372036854775808, 1234567890123456789]}",
	"{\"r\": [0.1, 0.5, 5e-1, 1.0, 1e0, 1E2, 1e+2, -0.0, 0e10, 1e300, -1e-300, 1e-400,"
	" 5e-324, 1.7976931348623157e308, 9007199254740992.0, 9007199254740993.0,"
	" -9007199254740992e0, 9007199254740994.0, 1e16, 123456789.123456789, 0.30000000000000004,"
	" 100000000000000000000000.0, 2.5e-3]}",
	/* fields the key ignores, at the top and deeper, where they count */
	"{\"model\": \"m\", \"user\": \"u\", \"stream\": true, \"stream_options\": {\"include_usage\": true},"
	" \"metadata\": {\"user\": 1, \"stream\": 2}, \"k1\": [1], \"n\": {\"model\": \"inner\"}}",
	"{\"user\": \"only ignored\", \"stream\": false}",
	/* more members than the insertion sort and the stack arrays take */
	"{\"k20\":0,\"k19\":0,\"k18\":0,\"k17\":0,\"k16\":0,\"k15\":0,\"k14\":0,\"k13\":0,\"k12\":0,"
	"\"k11\":0,\"k10\":0,\"k09\":0,\"k08\":0,\"k07\":0,\"k06\":0,\"k05\":0,\"k04\":0,\"k03\":0,"
	"\"k02\":0,\"k01\":{\"b\":1,\"a\":[{\"d\":1,\"c\":2}]},\"k00\":0,\"user\":1}",
	/* whitespace jansson takes */
	"\t{\r\n\"a\" :\t[ 1 ,2 ] , \"b\":{ } }\r\n",
};

/* Bodies without a key: jansson rejects them, reads them only with its
 * integers as reals, or they are not an object. */
static const char *const unkeyed_bodies[] = {
	"",
	"[]",
	"[{\"a\": 1}]",
	"\"s\"",
	"1",
	"null",
	"{\"a\": 1",
	"{\"a\": 1}}",
	"{\"a\": 1} {}",
	"{\"a\": 1}x",
	"{a: 1}",
	"{\"a\": 01}",
	"{\"a\": 1.}",
	"{\"a\": .5}",
	"{\"a\": +1}",
	"{\"a\": NaN}",
	"{\"a\": [1,]}",
	"{\"a\": 1,}",
	"{\"a\": 'x'}",
	"{\"a\": 1} // comment",
	/* duplicate keys, spelt alike or not, at the top and deeper */
	"{\"a\": 1, \"a\": 1}",
	"{\"a\": 1, \"b\": 2, \"a\": 3}",
	"{\"\\u0061\": 1, \"a\": 2}",
	"{\"user\": 1, \"user\": 2}",
	"{\"x\": {\"k\": 1, \"j\": 0, \"k\": 2}}",
	"{\"x\": [{\"k\": 1}, {\"k\": 1, \"k\": 1}]}",
	"{\"k20\":0,\"k19\":0,\"k18\":0,\"k17\":0,\"k16\":0,\"k15\":0,\"k14\":0,\"k13\":0,\"k12\":0,"
	"\"k11\":0,\"k10\":0,\"k09\":0,\"k08\":0,\"k07\":0,\"k06\":0,\"k05\":0,\"k04\":0,\"k03\":0,"
	"\"k02\":0,\"k01\":0,\"k00\":0,\"k13\":1}",
	/* integers beyond 64 bits, also in an ignored field; reals beyond a double */
	"{\"seed\": 9223372036854775808}",
	"{\"seed\": -9223372036854775809}",
	"{\"user\": 123456789012345678901234567890}",
	"{\"t\": 1e400}",
	"{\"t\": -1e400}",
	/* strings jansson rejects */
	"{\"s\": \"\\u0000\"}",
	"{\"\\u0000\": 1}",
	"{\"s\": \"\xff\"}",
	"{\"s\": \"\xc3\"}",
	"{\"s\": \"\xed\xa0\x80\"}",
	"{\"s\": \"\\ud800\"}",
	"{\"s\": \"\\ud800x\"}",
	"{\"s\": \"\\ud800\\u0041\"}",
	"{\"s\": \"\\udc00\"}",
	"{\"s\": \"\\ude00\\ud83d\"}",
	"{\"\\ud800\": 1}",
	"{\"s\": \"a\tb\"}",
	"{\"s\": \"a\nb\"}",
	"{\"s\": \"\\x\"}",
	"{\"s\": \"\\u12\"}",
	/* whitespace that yajl takes and jansson does not */
	"{\"a\":\f1}",
	"{\"a\":\v1}",
};

START_TEST(hand_made_bodies)
{
	for (size_t i = 0; i < sizeof(keyed_bodies) / sizeof(keyed_bodies[0]); i++)
		compare_text("keyed body", keyed_bodies[i]);
	ck_assert_uint_eq(keyed, compared);

	keyed = compared = 0;
	for (size_t i = 0; i < sizeof(unkeyed_bodies) / sizeof(unkeyed_bodies[0]); i++)
		compare_text("unkeyed body", unkeyed_bodies[i]);
	ck_assert_uint_eq(keyed, 0);
}
END_TEST

/* Nesting up to jansson's limit has a key; one level more has none. */
START_TEST(deep_nesting)
{
	for (int depth = 2046; depth <= 2049; depth++) {
		char *text = malloc(2 * (size_t)depth + 16);
		size_t len = 0;

		ck_assert_ptr_nonnull(text);
		len += (size_t)sprintf(text, "{\"a\":");
		for (int i = 1; i < depth; i++)
			text[len++] = '[';
		text[len++] = '1';
		for (int i = 1; i < depth; i++)
			text[len++] = ']';
		text[len++] = '}';
		compare("deep body", text, len);
		free(text);
	}
	ck_assert_uint_gt(keyed, 0);
	ck_assert_uint_lt(keyed, compared);
}
END_TEST

/* --- bodies written at random ------------------------------------------ */

/* A small deterministic generator (xorshift), so a failure repeats. */
static uint64_t rng_state;

static unsigned
pick(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

#define PICK(array) ((array)[pick(sizeof(array) / sizeof((array)[0]))])

/* Keys, some the same once decoded, some ignored, some prefixes of others. */
static const char *const keys[] = {
	"a", "b", "ab", "A", "", "aa", "\\u0061", "\xc3\xa9", "\\u00e9", "\\u00E9", "\\ud83d\\ude00",
	"\xf0\x9f\x98\x80", "model", "user", "stream", "stream_options", "metadata", "k1", "a\\\"b",
	"\\n", "z", "\\/", "/", "messages", "role", "content",
};

static const char *const strings[] = {
	"", "hi", "\xc3\xa9", "\\u00e9", "\\n", "\\\"", "\\\\", "\\/", "\\ud83d\\ude00",
	"\\uD83D\\uDE00", "\\u0041", "\xe6\x97\xa5\xe6\x9c\xac", "\\t", "\x7f", "\\u001f", "\\u2028",
	" ", "a b", "\\b\\f\\r",
	/* rarely: what jansson rejects */
	"\\u0000", "\\ud800", "\\udc00", "\xff",
};

static const char *const numbers[] = {
	"0", "-0", "1", "-1", "7", "42", "1.0", "1e0", "1E+2", "1e-2", "0.1", "0.5", "-0.0", "1e-400",
	"2.5e-3", "5e-324", "1.7976931348623157e308", "0.30000000000000004", "9007199254740992",
	"9007199254740993", "9007199254740993.0", "9007199254740992.0", "-9007199254740994.0",
	"9223372036854775807", "-9223372036854775808", "123456789.123456789", "1e21", "1e22",
	"100000000000000000000.0",
	/* rarely: beyond int64 or double */
	"9223372036854775808", "-9223372036854775809", "1e400",
};

static const char *const spaces[] = {"", "", "", " ", "\n", "\t", "\r\n", "  "};

static void write_random_value(struct tg_json_writer *w, int depth);

static void
write_space(struct tg_json_writer *w)
{
	const char *s = pick(2000) == 0 ? "\f" : PICK(spaces);

	tg_json_raw(w, s, strlen(s));
}

/* A string of up to 3 pieces; one that jansson rejects comes once in
 * many bodies. */
static void
write_random_string(struct tg_json_writer *w)
{
	size_t n = sizeof(strings) / sizeof(strings[0]);

	tg_json_literal(w, "\"");
	for (unsigned i = 0, pieces = pick(4); i < pieces; i++) {
		const char *s = pick(200) == 0 ? strings[pick((unsigned)n)]
		                               : strings[pick((unsigned)n - 4)];

		tg_json_raw(w, s, strlen(s));
	}
	tg_json_literal(w, "\"");
}

/* A key from the list, or one of many others, so that not every object
 * with a few members has a key twice. */
static void
write_random_key(struct tg_json_writer *w, unsigned others)
{
	char key[16];
	const char *k = key;

	if (pick(3) == 0)
		k = PICK(keys);
	else
		snprintf(key, sizeof(key), "k%u", pick(others));
	tg_json_literal(w, "\"");
	tg_json_raw(w, k, strlen(k));
	tg_json_literal(w, "\"");
}

static void
write_random_object(struct tg_json_writer *w, int depth)
{
	unsigned n = pick(20) == 0 ? 18 + pick(30) : pick(7);

	tg_json_literal(w, "{");
	for (unsigned i = 0; i < n; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		write_space(w);
		write_random_key(w, n > 16 ? 2000 : 200);
		write_space(w);
		tg_json_literal(w, ":");
		write_space(w);
		write_random_value(w, depth + 1);
		write_space(w);
	}
	tg_json_literal(w, "}");
}

static void
write_random_value(struct tg_json_writer *w, int depth)
{
	unsigned kind = depth > 4 ? 2 + pick(5) : pick(7);
	const char *s;

	switch (kind) {
	case 0:
		write_random_object(w, depth);
		break;
	case 1:
		tg_json_literal(w, "[");
		for (unsigned i = 0, n = pick(5); i < n; i++) {
			if (i > 0)
				tg_json_literal(w, ",");
			write_space(w);
			write_random_value(w, depth + 1);
		}
		tg_json_literal(w, "]");
		break;
	case 2:
	case 3:
		write_random_string(w);
		break;
	case 4:
		s = pick(30) == 0 ? PICK(numbers) : numbers[pick(sizeof(numbers) / sizeof(numbers[0]) - 3)];
		tg_json_raw(w, s, strlen(s));
		break;
	default:
		s = PICK(((const char *const[]){"true", "false", "null"}));
		tg_json_raw(w, s, strlen(s));
		break;
	}
}

START_TEST(random_bodies)
{
	struct tg_json_writer w = {0};
	size_t bodies = 0;

	rng_state = 0x9e3779b97f4a7c15u;
	for (int i = 0; i < 20000; i++) {
		tg_json_writer_reset(&w);
		write_space(&w);
		if (pick(100) == 0)
			write_random_value(&w, 0);
		else
			write_random_object(&w, 0);
		write_space(&w);
		ck_assert(!w.failed);
		compare("random body", w.data, w.len);
		bodies++;
	}
	tg_json_writer_free(&w);
	/* Both kinds were met often. */
	ck_assert_uint_gt(keyed, compared / 2);
	ck_assert_uint_gt(compared - keyed, compared / 20);
}
END_TEST

static Suite *
cache_key_oracle_suite(void)
{
	Suite *s = suite_create("cache-key-oracle");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, recorded_requests);
	tcase_add_test(tc, hand_made_bodies);
	tcase_add_test(tc, deep_nesting);
	tcase_add_test(tc, random_bodies);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cache_key_oracle_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
