/*
 * The routes[].match section: path or path_prefix, method, model and
 * headers. route.c tests them against requests, and this file reads and
 * checks them. A condition that could never hold, or would hold for
 * requests its author did not mean, is a config error.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "headers.h"
#include "request-head.h"
#include "route-config.h"
#include "route.h"

/* Why no request path can contain the byte at p, or NULL when one can.
 * A request path ends at "?", the gateway rejects a target with "#" with
 * 400, and llhttp 8.1, as the gateway runs it, rejects a request target
 * with a byte other than printable ASCII without the space. */
static const char *
impossible_path_byte(const char *p)
{
	unsigned char c = (unsigned char)*p;

	if (c == '?')
		return "a request path ends where its query starts, at \"?\", and routes "
		       "compare the path only; leave out the query";
	if (c == '#')
		return "a request carries no fragment after \"#\", and the gateway answers "
		       "one that does with 400; leave out the fragment";
	if (c <= ' ' || c >= 0x7f)
		return "a request path contains only printable ASCII characters other than "
		       "the space; percent-encode the byte, such as \"%20\" for a space";
	return NULL;
}

/* Read a path or a path prefix: a string that starts with "/", has no "*",
 * only bytes a request path can contain, and is in the normal form of
 * tg_request_head_check_path(). Returns the string to free, or NULL after
 * reporting. */
static char *
get_route_path(struct load_ctx *ctx, const char *path, json_t *value)
{
	const char *raw;
	char q[QUOTE_LEN];
	char reason[256];
	char *str = get_string(ctx, path, value, "a path string", &raw);

	if (str == NULL)
		return NULL;

	if (str[0] != '/') {
		report(ctx, path, "invalid path %s; a path starts with \"/\"",
		       quote(raw, q, sizeof(q)));
		free(str);
		return NULL;
	}

	/* Unlike match.model, a path is no pattern. A "*" would only match
	 * itself, which is never what its author meant. */
	if (strchr(str, '*') != NULL) {
		report(ctx, path, "invalid path %s; glob patterns are not supported, "
		       "since the path is compared exactly; list each path in its own "
		       "route, or leave out \"path\" to match any", quote(raw, q, sizeof(q)));
		free(str);
		return NULL;
	}

	for (const char *p = str; *p != '\0'; p++) {
		const char *why = impossible_path_byte(p);

		if (why != NULL) {
			report(ctx, path, "invalid path %s, which no request can match: %s",
			       quote(raw, q, sizeof(q)), why);
			free(str);
			return NULL;
		}
	}

	/* The gateway rejects a request whose path is not in normal form
	 * before it routes, so such a route path could never match. */
	if (tg_request_head_check_path(str, reason, sizeof(reason)) != TG_OK) {
		report(ctx, path, "invalid path %s, which no request can match, since "
		       "the gateway answers such a request with 400: %s",
		       quote(raw, q, sizeof(q)), reason);
		free(str);
		return NULL;
	}
	return str;
}

/* match.path. The gateway responds to GET and HEAD /v1/models itself and
 * rejects other methods there with 405, so a route on that path gets a
 * warning: it would never see a request. */
static void
parse_match_path(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                 const struct setting *s)
{
	char *str = get_route_path(ctx, path, value);

	if (str != NULL && strcmp(str, "/v1/models") == 0)
		report_warning(ctx, path, "the gateway answers GET /v1/models itself and "
		               "other methods on it with 405, so this route never sees a "
		               "request; remove the route");
	*FIELD(base, s, char *) = str;
}

/* match.path_prefix, which comes after match.path in the table, so that
 * it can refuse to be set beside it: one of the two would be moot. */
static void
parse_match_path_prefix(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                        const struct setting *s)
{
	struct tg_route *route = base;
	char *prefix = get_route_path(ctx, path, value);

	(void)s;
	if (prefix == NULL)
		return;
	if (route->match_path != NULL) {
		report(ctx, path, "set either \"path\" (one exact path) or \"path_prefix\" "
		       "(a path and those under it), not both");
		free(prefix);
		return;
	}
	route->match_path_prefix = prefix;
	route->match_path_prefix_len = strlen(prefix);
}

/* Report why name, at path, is no method a route can take: a known method
 * in the wrong case, CONNECT, which the gateway rejects itself, or an
 * unknown word. */
static void
report_bad_method(struct load_ctx *ctx, const char *path, const char *name)
{
	char q[QUOTE_LEN], upper[32], valid[400];
	size_t len = strlen(name);

	if (strcasecmp(name, "CONNECT") == 0) {
		report(ctx, path, "CONNECT never reaches a route: the gateway answers it "
		       "with 501, since it opens no tunnels");
		return;
	}
	if (len < sizeof(upper)) {
		for (size_t i = 0; i <= len; i++)
			upper[i] = (char)toupper((unsigned char)name[i]);
		if (tg_route_method_id(upper) >= 0) {
			report(ctx, path, "unknown method %s; methods are case-sensitive: "
			       "write \"%s\"", quote(name, q, sizeof(q)), upper);
			return;
		}
	}
	tg_route_method_list(tg_route_http_methods() & ~tg_route_method_bit(HTTP_CONNECT),
	                     valid, sizeof(valid));
	report(ctx, path, "unknown method %s; use one of %s", quote(name, q, sizeof(q)), valid);
}

/* Add the method named by value, at path, to *methods. Returns 0, or -1
 * after reporting. */
static int
add_method(struct load_ctx *ctx, const char *path, const json_t *value, uint64_t *methods)
{
	const char *name;
	int id;
	char q[QUOTE_LEN];

	if (!json_is_string(value)) {
		report_type(ctx, path, "a method name such as \"POST\"", value);
		return -1;
	}
	name = json_string_value(value);
	id = tg_route_method_id(name);
	if (id < 0 || id == HTTP_CONNECT) {
		report_bad_method(ctx, path, name);
		return -1;
	}
	if (*methods & tg_route_method_bit(id)) {
		report(ctx, path, "method %s is listed twice", quote(name, q, sizeof(q)));
		return -1;
	}
	*methods |= tg_route_method_bit(id);
	return 0;
}

/* match.method: one method name, or an array of at least one. The mask is
 * stored only when every name is valid, since a partial list would take
 * fewer methods than written.
 * NOTE: a route whose path is one of the endpoints that request.c rejects
 * with 405 for other methods (POST /v1/chat/completions...) never sees a
 * method its endpoint refuses; no check warns of such a route. */
static void
parse_match_method(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                   const struct setting *s)
{
	char child[PATH_LEN];
	uint64_t methods = 0;
	int failed = 0;
	size_t i;
	json_t *name;

	if (json_is_string(value)) {
		if (add_method(ctx, path, value, &methods) == 0)
			*FIELD(base, s, uint64_t) = methods;
		return;
	}
	if (!json_is_array(value)) {
		report_type(ctx, path, "a method name or an array of them", value);
		return;
	}
	if (json_array_size(value) == 0) {
		report(ctx, path, "must list at least one method; leave out \"method\" to "
		       "take any");
		return;
	}
	json_array_foreach(value, i, name)
		failed |= add_method(ctx, path_index(child, path, i), name, &methods) != 0;
	if (!failed)
		*FIELD(base, s, uint64_t) = methods;
}

/* match.model: a model name or an fnmatch(3) glob, not empty like any
 * string setting, that tg_route_model_glob_check() accepts. */
static void
parse_match_model(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                  const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char problem[200];
	char *str = get_string(ctx, path, value, "a string", &raw);

	if (str == NULL)
		return;

	if (str[0] == '\0') {
		report(ctx, path, "must not be empty");
		free(str);
		return;
	}

	if (tg_route_model_glob_check(str, problem, sizeof(problem)) != 0) {
		report(ctx, path, "invalid model pattern %s: %s", quote(raw, q, sizeof(q)),
		       problem);
		free(str);
		return;
	}
	if (!check_unreserved_name(ctx, path, str, "model", "other",
	                           "models the config does not list")) {
		free(str);
		return;
	}
	*FIELD(base, s, char *) = str;
}

/* Check the header name of a condition, at path: a token, not hop-by-hop,
 * and not named by an earlier condition in another case. The gateway
 * removes hop-by-hop headers before it routes, so a condition on one would
 * test nothing the client sent. Returns 0, or -1 after reporting. */
static int
check_header_name(struct load_ctx *ctx, const char *path, const struct tg_route *route,
                  const char *name)
{
	char q[QUOTE_LEN], q2[QUOTE_LEN];
	size_t len = strlen(name);

	if (!tg_header_name_valid(name, len)) {
		report(ctx, path, "invalid header name %s; a name is a token of letters, "
		       "digits and !#$%%&'*+-.^_`|~", quote(name, q, sizeof(q)));
		return -1;
	}
	if (tg_header_name_hop_by_hop(name, len)) {
		report(ctx, path, "%s is a hop-by-hop header, which the gateway removes "
		       "before it routes; match on an end-to-end header",
		       quote(name, q, sizeof(q)));
		return -1;
	}
	for (size_t i = 0; i < route->n_match_headers; i++) {
		if (strcasecmp(route->match_headers[i].name, name) == 0) {
			report(ctx, path, "header %s is already tested as %s; header names "
			       "compare in any case", quote(name, q, sizeof(q)),
			       quote(route->match_headers[i].name, q2, sizeof(q2)));
			return -1;
		}
	}
	return 0;
}

/* 1 when value starts or ends with a space or tab, which the gateway
 * removes from the values of request headers. */
static int
has_edge_whitespace(const char *value)
{
	size_t len = strlen(value);

	return len > 0 && (value[0] == ' ' || value[0] == '\t' ||
	                   value[len - 1] == ' ' || value[len - 1] == '\t');
}

/* Read the test of one header condition: a value to equal, true for
 * present or false for absent. Returns 0, or -1 after reporting. */
static int
parse_header_test(struct load_ctx *ctx, const char *path, json_t *value,
                  struct tg_header_match *m)
{
	const char *raw;
	char q[QUOTE_LEN];

	if (json_is_boolean(value)) {
		m->test = json_is_true(value) ? TG_HEADER_PRESENT : TG_HEADER_ABSENT;
		return 0;
	}

	m->test = TG_HEADER_EQUALS;
	m->value = get_string(ctx, path, value, "a value string, true (present) or "
	                      "false (absent)", &raw);
	if (m->value == NULL)
		return -1;
	if (!tg_header_value_valid(m->value, strlen(m->value))) {
		report(ctx, path, "invalid header value %s; a value has no CR or LF",
		       quote(raw, q, sizeof(q)));
		free(m->value);
		m->value = NULL;
		return -1;
	}
	if (has_edge_whitespace(m->value)) {
		report(ctx, path, "header value %s starts or ends with a space or tab, "
		       "which a request's value never does (RFC 9110 section 5.5), so the "
		       "test could never hold; leave them out", quote(raw, q, sizeof(q)));
		free(m->value);
		m->value = NULL;
		return -1;
	}
	return 0;
}

/* match.headers: an object of header name to a value, true or false. */
static void
parse_match_headers(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                    const struct setting *s)
{
	struct tg_route *route = base;
	char child[PATH_LEN];
	const char *name;
	json_t *test;

	(void)s;
	if (!json_is_object(value)) {
		report_type(ctx, path, "an object of header names to a value, true or false",
		            value);
		return;
	}
	route->match_headers = calloc(json_object_size(value) + 1,
	                              sizeof(*route->match_headers));
	if (route->match_headers == NULL) {
		report_oom(ctx, path);
		return;
	}

	json_object_foreach(value, name, test) {
		struct tg_header_match *m = &route->match_headers[route->n_match_headers];

		path_key(child, path, name);
		if (check_header_name(ctx, child, route, name) != 0 ||
		    parse_header_test(ctx, child, test, m) != 0)
			continue;
		m->name = strdup(name);
		if (m->name == NULL) {
			free(m->value);
			report_oom(ctx, child);
			continue;
		}
		m->name_len = strlen(name);
		route->n_match_headers++;
	}
}

static const struct setting match_settings[] = {
	{ .key = "path", .type = T_CUSTOM, .parse = parse_match_path,
	  .doc_type = "string", .offset = offsetof(struct tg_route, match_path),
	  .help = "exact request path; absent matches any path" },
	{ .key = "path_prefix", .type = T_CUSTOM, .parse = parse_match_path_prefix,
	  .doc_type = "string",
	  .help = "a path and the paths under it, by whole segments; not with path" },
	{ .key = "method", .type = T_CUSTOM, .parse = parse_match_method,
	  .doc_type = "string|array", .offset = offsetof(struct tg_route, match_methods),
	  .help = "method name or list of them, case-sensitive; absent matches any method" },
	{ .key = "model", .type = T_CUSTOM, .parse = parse_match_model,
	  .doc_type = "string", .offset = offsetof(struct tg_route, match_model),
	  .help = "model name or fnmatch(3) glob; absent matches any request" },
	{ .key = "headers", .type = T_CUSTOM, .parse = parse_match_headers,
	  .doc_type = "object",
	  .help = "header name to exact value, true (present) or false (absent); all must hold" },
};
const struct section tg_route_match_section = SECTION(match_settings);

void
tg_route_match_free(struct tg_route *r)
{
	free(r->match_path);
	free(r->match_path_prefix);
	free(r->match_model);
	for (size_t i = 0; i < r->n_match_headers; i++) {
		free(r->match_headers[i].name);
		free(r->match_headers[i].value);
	}
	free(r->match_headers);
}
