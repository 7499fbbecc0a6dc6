/*
 * Checks of a client request head that llhttp leaves to the server.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>
#include <llhttp.h>

#include "request-head.h"

#define CHUNKED "chunked"
#define CHUNKED_LEN (sizeof(CHUNKED) - 1)
#define QUOTED_MAX 64           /* bytes of a name quoted in a message */
#define LINE_START_SHOWN 16     /* bytes of a request line quoted in a message */

/* The printable ASCII bytes that RFC 3986 allows in no path or query,
 * other than "#" (check_target_bytes()). */
#define TARGET_FORBIDDEN "\"<>\\^`{|}"
/* Square brackets, which RFC 3986 allows only around an IP literal, are
 * rejected in a path. A query keeps them, because clients send arrays as
 * "include[]=x" unencoded and nginx forwards them. */
#define PATH_FORBIDDEN TARGET_FORBIDDEN "[]"
#define MAX_PORT 65535

/* The codings of all Transfer-Encoding lines of one request, in order. */
struct coding_scan {
	size_t n_codings;
	size_t n_chunked;
	const char *last;               /* name of the last coding */
	size_t last_len;
	int last_is_chunked;
	const char *other;              /* name of the first coding other than chunked */
	size_t other_len;
};

static int
at_least_http11(int http_major, int http_minor)
{
	return http_major > 1 || (http_major == 1 && http_minor >= 1);
}

static int
quoted_length(size_t len)
{
	return (int)(len > QUOTED_MAX ? QUOTED_MAX : len);
}

/* The origin form of a parsed absolute-form target: its path, "/" for an
 * empty one, then its query. Returns NULL when out of memory. */
static char *
origin_of_uri(const struct evhttp_uri *uri)
{
	const char *path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	char *origin;

	if (path == NULL || path[0] == '\0')
		path = "/";
	if (query == NULL)
		return strdup(path);
	if (asprintf(&origin, "%s?%s", path, query) < 0)
		return NULL;
	return origin;
}

/* Check the parts of a parsed absolute-form target. Returns TG_OK, or
 * TG_E_BAD_REQUEST with the reason in message. */
static enum tg_error
check_absolute_uri(const struct evhttp_uri *uri, char *message, size_t size)
{
	const char *scheme = evhttp_uri_get_scheme(uri);
	const char *host = evhttp_uri_get_host(uri);

	if (scheme == NULL || host == NULL) {
		snprintf(message, size, "%s", TG_REQUEST_TARGET_INVALID);
		return TG_E_BAD_REQUEST;
	}
	/* libevent accepts only ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
	 * as a scheme, so quoting it keeps the message ASCII. */
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		snprintf(message, size, "the request target has the scheme \"%.*s\"; send "
		         "an http:// or https:// URL, or the path alone",
		         quoted_length(strlen(scheme)), scheme);
		return TG_E_BAD_REQUEST;
	}
	if (host[0] == '\0') {
		snprintf(message, size, "the request target URL has an empty host, which "
		         "an http or https URL must not have; send the host, or the path alone");
		return TG_E_BAD_REQUEST;
	}
	if (evhttp_uri_get_userinfo(uri) != NULL) {
		snprintf(message, size, "the request target URL contains user information "
		         "before \"@\", which HTTP does not allow; send the host and path alone");
		return TG_E_BAD_REQUEST;
	}
	if (evhttp_uri_get_fragment(uri) != NULL) {
		snprintf(message, size, "the request target URL contains a fragment after "
		         "\"#\", which a request target does not carry; leave it out");
		return TG_E_BAD_REQUEST;
	}
	return TG_OK;
}

/* Reduce an absolute-form target as tg_request_head_origin_form()
 * documents. */
static enum tg_error
absolute_form_to_origin(const char *target, char **origin, char *message, size_t size)
{
	struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, 0);
	enum tg_error err;

	if (uri == NULL) {
		snprintf(message, size, "%s", TG_REQUEST_TARGET_INVALID);
		return TG_E_BAD_REQUEST;
	}

	err = check_absolute_uri(uri, message, size);
	if (err == TG_OK) {
		*origin = origin_of_uri(uri);
		if (*origin == NULL)
			err = TG_E_INTERNAL;
	}

	evhttp_uri_free(uri);
	return err;
}

static int
hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The byte that "%XX" at p encodes, or -1 when XX is not two hex digits. */
static int
escaped_byte(const char *p)
{
	int high = hex_digit_value(p[1]);
	int low = high < 0 ? -1 : hex_digit_value(p[2]);

	return low < 0 ? -1 : high * 16 + low;
}

/* Whether c is a byte that RFC 3986 says to write bare (an unreserved
 * character), or a "/" or a backslash, which servers that decode before
 * routing take as a separator. */
static int
is_needless_escape(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == '\\';
}

/*
 * Check the escape "%XX" at p of the path at origin, len bytes up to its
 * query, whose current segment starts after the "/" at segment. Rejected
 * are the escapes check_path_normal() lists. Returns TG_OK, or
 * TG_E_BAD_REQUEST with the reason in message.
 */
static enum tg_error
check_escape(const char *origin, size_t len, const char *p, const char *segment,
             int slash_escapable, char *message, size_t size)
{
	int c = escaped_byte(p);

	if (is_needless_escape(c) && !(c == '/' && slash_escapable)) {
		snprintf(message, size, "the request path \"%.*s\" percent-encodes "
		         "\"%.3s\", which servers decode before they route; send that "
		         "character as it is", quoted_length(len), origin, p);
		return TG_E_BAD_REQUEST;
	}
	if ((c >= 0 && c < 0x20) || c == 0x7f) {
		snprintf(message, size, "the request path \"%.*s\" percent-encodes the "
		         "control character \"%.3s\", which no API path has and servers "
		         "read differently (one that decodes into a C string ends the "
		         "path at %%00); send the path without it", quoted_length(len), origin, p);
		return TG_E_BAD_REQUEST;
	}
	/* p[3] exists when p[1] and p[2] are hex digits. */
	if (c == ' ' && (p == segment + 1 || p + 3 == origin + len || p[3] == '/')) {
		snprintf(message, size, "the request path \"%.*s\" starts or ends a "
		         "segment with an encoded space (\"%.3s\"), which a server that "
		         "trims names would drop before it routes; send the path without "
		         "it", quoted_length(len), origin, p);
		return TG_E_BAD_REQUEST;
	}
	return TG_OK;
}

/*
 * Check that the path of an origin-form target, up to its query, is in the
 * form routes compare. Routes compare paths as bytes, but many servers
 * remove dot segments, decode escapes, drop path parameters or end a path
 * at a NUL before they route. So "/v1/chat/../chat/completions" would miss
 * a route's match.path here and take a later route without its filters,
 * yet still reach the upstream's chat endpoint. Rejected are:
 *   a "." or ".." segment;
 *   a ";", which starts the parameters of a segment that Tomcat drops;
 *   a percent-encoded unreserved character, "/" or backslash;
 *   a percent-encoded control character, %00 to %1F and %7F;
 *   "%20" at the start or end of a segment.
 * Each accepted path is its own normal form, so routes, the endpoint's
 * handling and the upstream all read the same path, sent as it came.
 * With slash_escapable set, "%2F" is accepted: for a path the gateway
 * serves itself, which no other server reads.
 * Returns TG_OK, or TG_E_BAD_REQUEST with the reason in message.
 */
static enum tg_error
check_path_normal(const char *origin, int slash_escapable, char *message, size_t size)
{
	const char *segment = origin;
	size_t len = strcspn(origin, "?");

	for (size_t i = 0; i <= len; i++) {
		const char *p = origin + i;
		enum tg_error err;

		if (i < len && *p == '%' &&
		    (err = check_escape(origin, len, p, segment, slash_escapable, message,
		                        size)) != TG_OK)
			return err;
		if (i < len && *p == ';') {
			snprintf(message, size, "the request path \"%.*s\" has a \";\", which "
			         "starts path parameters that servers such as Tomcat drop before "
			         "they route; send the path without them, and options in the "
			         "query", quoted_length(len), origin);
			return TG_E_BAD_REQUEST;
		}
		if (i < len && *p != '/')
			continue;
		if ((p - segment == 2 && segment[1] == '.') ||
		    (p - segment == 3 && segment[1] == '.' && segment[2] == '.')) {
			snprintf(message, size, "the request path \"%.*s\" has a \".\" or "
			         "\"..\" segment, which servers remove before they route; send "
			         "the path without it", quoted_length(len), origin);
			return TG_E_BAD_REQUEST;
		}
		segment = p;
	}
	return TG_OK;
}

/* 1 when path, before its query, has a byte that check_path_normal() must
 * look at: most paths have none, and need no loop. Inline, because as a
 * call check_path_normal() cost the benchmark's request 17 instructions
 * more (callgrind). */
static inline int
path_has_special_byte(const char *path)
{
	const char *special = strpbrk(path, "%.;?");

	return special != NULL && *special != '?';
}

/*
 * Check that each byte of an origin-form target is one that RFC 3986
 * allows in a path or a query (sections 3.3 and 3.4): an unreserved
 * character, a sub-delim, ":", "@", "/", "?" or "%". Built strict, llhttp
 * has rejected every byte outside printable ASCII, and the space, so the
 * bytes left to reject are TARGET_FORBIDDEN. "#" starts a fragment, which
 * tg_request_head_origin_form() rejects with a reason of its own. Most
 * such bytes would reach the upstream as they came, and servers read them
 * in ways of their own: many take a backslash for "/", so that
 * "/v1/..\admin" matches the path_prefix "/v1/" here and reaches /admin
 * there. The rest (a quote, braces, brackets) are rejected alike, as
 * HAProxy does by default, rather than guessed at, except brackets in a
 * query (PATH_FORBIDDEN). Returns TG_OK, or TG_E_BAD_REQUEST with the byte
 * and its position in message.
 */
static enum tg_error
check_target_bytes(const char *origin, char *message, size_t size)
{
	size_t path_len = strcspn(origin, "?");
	const char *bad = origin + strcspn(origin, PATH_FORBIDDEN);
	size_t len;

	if ((size_t)(bad - origin) >= path_len)
		bad = strpbrk(origin + path_len, TARGET_FORBIDDEN);
	if (bad == NULL || *bad == '\0')
		return TG_OK;

	/* An escaped backslash is rejected too (check_escape()), so the
	 * advice for it differs. */
	len = strlen(origin);
	if (*bad == '\\')
		snprintf(message, size, "the request target \"%.*s\" has \"\\\" at position "
		         "%zu, which RFC 3986 allows in no path or query, and which servers "
		         "that take it for \"/\" would route otherwise; send the path without "
		         "it", quoted_length(len), origin, (size_t)(bad - origin) + 1);
	else
		snprintf(message, size, "the request target \"%.*s\" has \"%c\" at position "
		         "%zu, which RFC 3986 allows in no path or query; send it "
		         "percent-encoded, as %%%02X", quoted_length(len), origin, *bad,
		         (size_t)(bad - origin) + 1, (unsigned)(unsigned char)*bad);
	return TG_E_BAD_REQUEST;
}

enum tg_error
tg_request_head_check_path(const char *path, char *message, size_t size)
{
	enum tg_error err = check_target_bytes(path, message, size);

	if (err != TG_OK || !path_has_special_byte(path))
		return err;
	return check_path_normal(path, 0, message, size);
}

int
tg_request_head_names_model(const char *method, const char *path)
{
	static const size_t prefix_len = sizeof(TG_MODEL_PATH) - 1;

	return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
	       strncmp(path, TG_MODEL_PATH, prefix_len) == 0 &&
	       path[prefix_len] != '\0' && path[prefix_len] != '?';
}

enum tg_error
tg_request_head_origin_form(const char *target, const char *method, char **origin,
                            char *message, size_t size)
{
	enum tg_error err;

	*origin = NULL;

	if (strcmp(method, "CONNECT") == 0) {
		snprintf(message, size, "CONNECT is not supported: tollgate forwards API "
		         "requests and opens no tunnels");
		return TG_E_NOT_IMPLEMENTED;
	}
	if (target[0] == '/' && strchr(target, '#') != NULL) {
		snprintf(message, size, "the request target contains a fragment after \"#\", "
		         "which a request target does not carry; leave it out");
		return TG_E_BAD_REQUEST;
	}
	if (strcmp(target, "*") == 0 && strcmp(method, "OPTIONS") != 0) {
		snprintf(message, size, "the request target \"*\" is only for OPTIONS, not "
		         "%s; send the path, such as /v1/chat/completions", method);
		return TG_E_BAD_REQUEST;
	}
	if (target[0] != '/' && strcmp(target, "*") != 0)
		err = absolute_form_to_origin(target, origin, message, size);
	else
		err = (*origin = strdup(target)) != NULL ? TG_OK : TG_E_INTERNAL;
	if (err != TG_OK || strcmp(*origin, "*") == 0)
		return err;

	/* openai-node sends the model id "org/model" as "org%2Fmodel". */
	err = check_target_bytes(*origin, message, size);
	if (err == TG_OK && path_has_special_byte(*origin))
		err = check_path_normal(*origin, tg_request_head_names_model(method, *origin),
		                        message, size);
	if (err != TG_OK) {
		free(*origin);
		*origin = NULL;
	}
	return err;
}

/* Check a Host value as uri-host [ ":" port ] (RFC 9110 section 7.2), or
 * empty, as a client sends it for a target without an authority. libevent
 * checks the host syntax of RFC 3986 and the port in the authority of
 * "http://VALUE/". A "/", "?", "#" or "@" in the value ends that authority
 * early, so it shows as a path, query, fragment or user information. Returns
 * TG_OK, TG_E_BAD_REQUEST or TG_E_INTERNAL when out of memory. */
static enum tg_error
check_host_value_as_uri(const char *value)
{
	struct evhttp_uri *uri;
	const char *path;
	char *url;
	int valid;

	if (asprintf(&url, "http://%s/", value) < 0)
		return TG_E_INTERNAL;
	uri = evhttp_uri_parse_with_flags(url, 0);
	free(url);
	if (uri == NULL)
		return TG_E_BAD_REQUEST;

	path = evhttp_uri_get_path(uri);
	valid = evhttp_uri_get_userinfo(uri) == NULL && evhttp_uri_get_host(uri) != NULL &&
	        path != NULL && strcmp(path, "/") == 0 &&
	        evhttp_uri_get_query(uri) == NULL && evhttp_uri_get_fragment(uri) == NULL;
	evhttp_uri_free(uri);
	return valid ? TG_OK : TG_E_BAD_REQUEST;
}

/* An unreserved character of RFC 3986 section 2.3, in ASCII whatever the
 * locale, as libevent reads it. */
static int
is_unreserved(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Judge a Host value of the common shapes without building a URL:
 * unreserved characters (a reg-name or an IPv4 address), then optionally
 * ":" and digits. Returns 1 with the verdict of check_host_value_as_uri()
 * in *valid, or 0 for any other shape. For these shapes libevent 2.1.12
 * (parse_authority() in http.c) accepts an empty host and an empty port
 * and rejects a port above MAX_PORT. The unit tests compare both paths. */
static int
judge_common_host_value(const char *value, int *valid)
{
	const char *p = value;
	long port = 0;

	while (is_unreserved(*p))
		p++;
	if (*p == ':') {
		/* The port stops growing past MAX_PORT, so that no run of
		 * digits overflows it. */
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (port <= MAX_PORT)
				port = port * 10 + (*p - '0');
		}
	}
	if (*p != '\0')
		return 0;

	*valid = port <= MAX_PORT;
	return 1;
}

/* Check a Host value as check_host_value_as_uri() does, taking the common
 * shapes on a path that costs no allocation. */
static enum tg_error
check_host_value(const char *value)
{
	int valid;

	if (judge_common_host_value(value, &valid))
		return valid ? TG_OK : TG_E_BAD_REQUEST;
	return check_host_value_as_uri(value);
}

void
tg_request_head_quote(const char *bytes, size_t len, char *out, size_t size)
{
	size_t n = 0;

	assert(size >= 8);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)bytes[i];
		int plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';

		/* Room for this byte's text, and for "..." and the NUL after
		 * it when another byte follows. */
		if (n + (plain ? 1 : 4) + (i + 1 < len ? 3 : 0) + 1 > size) {
			memcpy(out + n, "...", 4);
			return;
		}
		if (plain)
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
	}
	out[n] = '\0';
}

/*
 * Check rest, the len bytes of a request line after its method up to the
 * end of what was read, as llhttp reads them after a method it parses
 * (GET). A line such as "THIS IS NOT HTTP" thus gets 400, not a 501 for
 * "THIS". A line that the end of rest cuts off is valid so far.
 * Returns NULL when valid, else llhttp's reason.
 */
static const char *
line_after_method_error(const char *rest, size_t len)
{
	const char *lf = memchr(rest, '\n', len);
	llhttp_settings_t settings;
	llhttp_t parser;
	llhttp_errno_t rc;

	llhttp_settings_init(&settings);
	llhttp_init(&parser, HTTP_REQUEST, &settings);
	rc = llhttp_execute(&parser, "GET", 3);
	if (rc == HPE_OK)
		rc = llhttp_execute(&parser, rest, lf != NULL ? (size_t)(lf - rest) + 1 : len);
	/* An empty line ends the head that the line starts. */
	if (rc == HPE_OK && lf != NULL)
		rc = llhttp_execute(&parser, "\r\n", 2);
	return rc == HPE_OK ? NULL : llhttp_get_error_reason(&parser);
}

enum tg_error
tg_request_head_unknown_method(const char *line, size_t len, char *method,
                               size_t method_size, char *message, size_t size)
{
	char shown[4 * LINE_START_SHOWN + 4];
	size_t token = 0;
	const char *error;

	assert(method_size > TG_REQUEST_METHOD_SHOWN);
	method[0] = '\0';
	while (token < len && tg_header_name_valid(line + token, 1))
		token++;

	tg_request_head_quote(line, len < LINE_START_SHOWN ? len : LINE_START_SHOWN, shown,
	                      sizeof(shown));
	if (token == 0 || (token < len && line[token] != ' ')) {
		snprintf(message, size, "the request line does not start with a method such "
		         "as POST and a space, but with \"%s\"; send METHOD TARGET "
		         "HTTP/1.1", shown);
		return TG_E_BAD_REQUEST;
	}
	error = line_after_method_error(line + token, len - token);
	if (error != NULL) {
		snprintf(message, size, "the request line that starts with \"%s\" is not "
		         "METHOD TARGET HTTP/1.1 after its method (llhttp: %s)", shown, error);
		return TG_E_BAD_REQUEST;
	}

	/* A token contains printable ASCII only, which needs no escape. */
	if (token > TG_REQUEST_METHOD_SHOWN)
		token = TG_REQUEST_METHOD_SHOWN;
	memcpy(method, line, token);
	method[token] = '\0';
	snprintf(message, size, "the gateway does not implement the method \"%s\"; it "
	         "forwards standard methods such as GET and POST, whose names are "
	         "case-sensitive", method);
	return TG_E_NOT_IMPLEMENTED;
}

int
tg_request_head_name_valid(const char *name, size_t len)
{
	(void)name;
	return len > 0;
}

enum tg_error
tg_request_head_check_host(const struct tg_headers *h, int http_major, int http_minor,
                           char *message, size_t size)
{
	size_t n_host = tg_headers_count(h, "Host");
	int host_required = at_least_http11(http_major, http_minor);
	enum tg_error err;

	if (n_host > 1) {
		snprintf(message, size, "the request has %zu Host headers; send exactly one",
		         n_host);
		return TG_E_BAD_REQUEST;
	}
	if (n_host == 0 && host_required) {
		snprintf(message, size, "the HTTP/%d.%d request has no Host header, which "
		         "HTTP/1.1 requires; send one with the host the request is for",
		         http_major, http_minor);
		return TG_E_BAD_REQUEST;
	}
	if (n_host == 0)
		return TG_OK;

	/* The value is not quoted: its bytes may not be valid UTF-8, which
	 * the JSON error body needs. */
	err = check_host_value(tg_headers_get(h, "Host"));
	if (err == TG_E_BAD_REQUEST)
		snprintf(message, size, "the Host header is not a valid uri-host[:port]; send "
		         "a host name, an IPv4 address or an IPv6 address in brackets, "
		         "optionally followed by :PORT with a port of 0 to 65535");
	return err;
}

/* Length of the coding name at the start of element: up to its parameters
 * (";"), without the whitespace before them. */
static size_t
coding_name_length(const char *element, size_t len)
{
	const char *semicolon = memchr(element, ';', len);
	size_t name_len = semicolon != NULL ? (size_t)(semicolon - element) : len;

	while (name_len > 0 && (element[name_len - 1] == ' ' || element[name_len - 1] == '\t'))
		name_len--;
	return name_len;
}

/* Add the codings of one Transfer-Encoding value to scan. Returns TG_OK, or
 * TG_E_BAD_REQUEST with the reason in message when a coding is malformed. */
static enum tg_error
scan_codings(const char *value, struct coding_scan *scan, char *message, size_t size)
{
	const char *cursor = value;
	const char *element;
	size_t len;

	while ((element = tg_header_list_next(&cursor, &len)) != NULL) {
		size_t name_len = coding_name_length(element, len);
		int chunked = name_len == CHUNKED_LEN &&
		              strncasecmp(element, CHUNKED, CHUNKED_LEN) == 0;

		scan->n_codings++;
		/* Only a token is quoted in a message: other bytes may not be
		 * valid UTF-8, which the JSON error body needs. */
		if (!tg_header_name_valid(element, name_len)) {
			snprintf(message, size, "Transfer-Encoding coding %zu is not a valid "
			         "name; a coding name is a token such as chunked", scan->n_codings);
			return TG_E_BAD_REQUEST;
		}
		if (chunked && name_len != len) {
			snprintf(message, size, "Transfer-Encoding gives chunked parameters, "
			         "which chunked does not take");
			return TG_E_BAD_REQUEST;
		}

		if (chunked)
			scan->n_chunked++;
		else if (scan->other == NULL) {
			scan->other = element;
			scan->other_len = name_len;
		}
		scan->last = element;
		scan->last_len = name_len;
		scan->last_is_chunked = chunked;
	}
	return TG_OK;
}

/* Judge the whole list of codings, as tg_request_head_check_transfer_coding()
 * documents. */
static enum tg_error
judge_codings(const struct coding_scan *scan, char *message, size_t size)
{
	if (scan->n_codings == 0) {
		snprintf(message, size, "Transfer-Encoding is empty; send chunked, or "
		         "leave the header out and send Content-Length");
		return TG_E_BAD_REQUEST;
	}
	if (scan->n_chunked > 1) {
		snprintf(message, size, "Transfer-Encoding lists chunked %zu times; "
		         "a body is chunked once", scan->n_chunked);
		return TG_E_BAD_REQUEST;
	}
	if (!scan->last_is_chunked) {
		snprintf(message, size, "Transfer-Encoding ends with \"%.*s\", not chunked, "
		         "so the length of the body cannot be determined; send chunked last, "
		         "or Content-Length", quoted_length(scan->last_len),
		         scan->last);
		return TG_E_BAD_REQUEST;
	}
	if (scan->other != NULL) {
		snprintf(message, size, "the transfer coding \"%.*s\" is not supported; "
		         "send the body with chunked alone, or with Content-Length",
		         quoted_length(scan->other_len), scan->other);
		return TG_E_TRANSFER_CODING;
	}
	return TG_OK;
}

enum tg_error
tg_request_head_check_transfer_coding(const struct tg_headers *h, int http_major,
                                      int http_minor, char *message, size_t size)
{
	struct coding_scan scan = {0};
	int present = 0;

	if (!at_least_http11(http_major, http_minor) &&
	    tg_headers_count(h, "Transfer-Encoding") > 0) {
		snprintf(message, size, "the HTTP/%d.%d request has Transfer-Encoding, which "
		         "HTTP/1.0 does not define, so its body framing is faulty; send "
		         "Content-Length, or HTTP/1.1 for a chunked body", http_major, http_minor);
		return TG_E_BAD_REQUEST;
	}

	for (size_t i = 0; i < h->count; i++) {
		enum tg_error err;

		if (!tg_header_is(&h->items[i], "Transfer-Encoding"))
			continue;
		present = 1;
		err = scan_codings(h->items[i].value, &scan, message, size);
		if (err != TG_OK)
			return err;
	}

	if (!present)
		return TG_OK;
	return judge_codings(&scan, message, size);
}
