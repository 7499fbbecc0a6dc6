/*
 * Unit tests for the checks of a client request head: the request target,
 * the method llhttp rejects, the Host header, the transfer codings, and the
 * header bytes that llhttp checks in their place.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

/* The source file rather than its header, so that the tests reach the two
 * ways a Host value is judged and compare them. */
#include "request-head.c"

/* A header list built from "Name: value" lines. */
static void
headers_from(struct tg_headers *h, const char *const *lines, size_t n)
{
	tg_headers_init(h);
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(lines[i], ':');
		const char *value = colon + 1;

		while (*value == ' ')
			value++;
		ck_assert_int_eq(tg_headers_add(h, lines[i], (size_t)(colon - lines[i]), value,
		                                strlen(value)), 0);
	}
}

static enum tg_error
check_host(const char *const *lines, size_t n, int http_minor, char *message, size_t size)
{
	struct tg_headers h;
	enum tg_error err;

	headers_from(&h, lines, n);
	message[0] = '\0';
	err = tg_request_head_check_host(&h, 1, http_minor, message, size);
	tg_headers_free(&h);
	return err;
}

static enum tg_error
check_codings_in(const char *const *lines, size_t n, int http_minor, char *message,
                 size_t size)
{
	struct tg_headers h;
	enum tg_error err;

	headers_from(&h, lines, n);
	message[0] = '\0';
	err = tg_request_head_check_transfer_coding(&h, 1, http_minor, message, size);
	tg_headers_free(&h);
	return err;
}

/* Check the codings of an HTTP/1.1 request. */
static enum tg_error
check_codings(const char *const *lines, size_t n, char *message, size_t size)
{
	return check_codings_in(lines, n, 1, message, size);
}

/* Reduce target for method, expecting the result expected, with the
 * reason for a rejection in message. Returns the origin form, which the
 * caller frees, or NULL. */
static char *
reduce_target(const char *target, const char *method, enum tg_error expected,
              char *message, size_t size)
{
	char *origin = NULL;

	message[0] = '\0';
	ck_assert_int_eq(tg_request_head_origin_form(target, method, &origin, message, size),
	                 expected);
	return origin;
}

static void
assert_origin_form(const char *target, const char *method, const char *expected)
{
	char message[256];
	char *origin = reduce_target(target, method, TG_OK, message, sizeof(message));

	ck_assert_str_eq(origin, expected);
	ck_assert_str_eq(message, "");
	free(origin);
}

static void
assert_target_rejected(const char *target, const char *method, const char *reason)
{
	char message[256];

	ck_assert_ptr_null(reduce_target(target, method, TG_E_BAD_REQUEST, message,
	                                 sizeof(message)));
	ck_assert_msg(strstr(message, reason) != NULL, "message for %s: %s", target, message);
}

START_TEST(origin_form_kept)
{
	assert_origin_form("/v1/chat/completions", "POST", "/v1/chat/completions");
	assert_origin_form("/v1/embeddings?user=a%20b", "POST", "/v1/embeddings?user=a%20b");
	assert_origin_form("*", "OPTIONS", "*");
}
END_TEST

START_TEST(absolute_form_reduced_to_path)
{
	assert_origin_form("http://api.example/v1/chat/completions", "POST",
	                   "/v1/chat/completions");
	assert_origin_form("HTTPS://API.example:8443/v1/embeddings?a=1&b", "POST",
	                   "/v1/embeddings?a=1&b");
	assert_origin_form("http://[::1]:8080/v1/models", "GET", "/v1/models");
	assert_origin_form("http://api.example", "POST", "/");
	assert_origin_form("http://api.example?q=1", "POST", "/?q=1");
}
END_TEST

START_TEST(absolute_form_rejected)
{
	assert_target_rejected("ftp://api.example/v1/chat/completions", "POST",
	                       "the scheme \"ftp\"; send an http:// or https:// URL");
	assert_target_rejected("http://user:secret@api.example/", "POST",
	                       "user information before \"@\"");
	assert_target_rejected("http:///v1/chat/completions", "POST", "empty host");
	assert_target_rejected("http://api.example/v1/chat/completions#part", "POST",
	                       "fragment after \"#\"");
	assert_target_rejected("http://api.example:99999/", "POST", TG_REQUEST_TARGET_INVALID);
	assert_target_rejected("http://api.example/%zz", "POST", TG_REQUEST_TARGET_INVALID);
	assert_target_rejected("mailto:someone", "POST", TG_REQUEST_TARGET_INVALID);
}
END_TEST

START_TEST(origin_form_fragment_rejected)
{
	assert_target_rejected("/v1/chat/completions#part", "POST", "fragment after \"#\"");
	assert_target_rejected("/v1/models?a=1#", "GET", "fragment after \"#\"");
}
END_TEST

START_TEST(path_not_in_normal_form_rejected)
{
	assert_target_rejected("/v1/chat/../chat/completions", "POST", "\"..\" segment");
	assert_target_rejected("/v1/./chat/completions", "POST", "\".\" or \"..\" segment");
	assert_target_rejected("/v1/chat/completions/..", "POST", "segment");
	assert_target_rejected("/v1/chat/.", "POST", "segment");
	assert_target_rejected("/v1/chat/%2E%2e/chat/completions", "POST", "percent-encodes \"%2E\"");
	assert_target_rejected("/v1/chat/%63ompletions", "POST", "percent-encodes \"%63\"");
	assert_target_rejected("/v1/chat%2Fcompletions", "POST", "percent-encodes \"%2F\"");
	assert_target_rejected("/v1/chat%5ccompletions", "POST", "percent-encodes \"%5c\"");
	assert_target_rejected("http://api.example/v1/../v1/models", "GET", "segment");
}
END_TEST

/* Upstreams that drop path parameters or end a path at a NUL would serve
 * these as /v1/chat/completions, which the route's match.path misses. */
START_TEST(path_parameters_and_controls_rejected)
{
	assert_target_rejected("/v1/chat/completions;x=1", "POST", "has a \";\"");
	assert_target_rejected("/v1/chat;a/completions", "POST", "has a \";\"");
	assert_target_rejected("/v1/chat/completions;", "POST", "has a \";\"");
	assert_target_rejected("http://api.example/v1/chat/completions;x", "POST",
	                       "has a \";\"");
	assert_target_rejected("/v1/chat/completions%00", "POST",
	                       "percent-encodes the control character \"%00\"");
	assert_target_rejected("/v1/chat/completions%00.json", "POST", "\"%00\"");
	assert_target_rejected("/v1/chat/completions%0a", "POST", "\"%0a\"");
	assert_target_rejected("/v1/chat/completions%09", "POST", "\"%09\"");
	assert_target_rejected("/v1/chat/completions%1F", "POST", "\"%1F\"");
	assert_target_rejected("/v1/chat/completions%7f", "POST", "\"%7f\"");
	assert_target_rejected("/v1/chat/completions%20", "POST",
	                       "ends a segment with an encoded space (\"%20\")");
	assert_target_rejected("/v1/chat/completions%20?x=1", "POST", "encoded space");
	assert_target_rejected("/v1/chat/%20completions", "POST", "encoded space");
	assert_target_rejected("/v1/chat%20/completions", "POST", "encoded space");
	assert_target_rejected("/%20", "GET", "encoded space");
}
END_TEST

/* Servers that take a backslash for "/" would serve "/v1/..\admin" as
 * /admin, which the path_prefix "/v1/" matched here. */
START_TEST(bytes_outside_rfc3986_rejected)
{
	static const char forbidden[] = "\"<>\\^`{|}[]";
	char target[64];
	char reason[64];

	assert_target_rejected("/v1/..\\admin", "GET",
	                       "has \"\\\" at position 7, which RFC 3986 allows in no path "
	                       "or query, and which servers that take it for \"/\" would route "
	                       "otherwise; send the path without it");
	assert_target_rejected("/v1/a^b", "GET", "has \"^\" at position 6, which RFC 3986 "
	                       "allows in no path or query; send it percent-encoded, as %5E");
	for (const char *c = forbidden; *c != '\0'; c++) {
		snprintf(target, sizeof(target), "/v1/chat%ccompletions", *c);
		snprintf(reason, sizeof(reason), "has \"%c\" at position 9,", *c);
		assert_target_rejected(target, "POST", reason);
		if (*c == '[' || *c == ']')
			continue;
		snprintf(target, sizeof(target), "/v1/models?q=%c", *c);
		snprintf(reason, sizeof(reason), "has \"%c\" at position 14,", *c);
		assert_target_rejected(target, "GET", reason);
	}

	/* A query keeps brackets, which clients send unencoded in arrays. */
	assert_origin_form("/v1/models?include[]=x&a[b]=1", "GET", "/v1/models?include[]=x&a[b]=1");
	assert_target_rejected("/v1/a[0]?q=1", "GET", "has \"[\" at position 6,");
	assert_target_rejected("/v1/models?filter={\"a\":1}", "GET", "as %7B");
	assert_target_rejected("/v1/a|b", "GET", "as %7C");
}
END_TEST

/* The route config rejects a path that check_path() rejects, so no route
 * path can contain such a byte either. */
START_TEST(route_path_bytes_checked)
{
	char message[256];

	ck_assert_int_eq(tg_request_head_check_path("/v1/a^b", message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
	ck_assert_msg(strstr(message, "has \"^\" at position 6") != NULL, "%s", message);
	ck_assert_int_eq(tg_request_head_check_path("/v1/a~b", message, sizeof(message)), TG_OK);
}
END_TEST

START_TEST(path_in_normal_form_kept)
{
	assert_origin_form("/v1/a-b_c.d~e!$&'()*+,=:@/f?g=!$&'()*+,;=:@/?%41", "GET",
	                   "/v1/a-b_c.d~e!$&'()*+,=:@/f?g=!$&'()*+,;=:@/?%41");
	assert_origin_form("/v1/models/ft:gpt-4o:org:1.2", "GET", "/v1/models/ft:gpt-4o:org:1.2");
	assert_origin_form("/v1/files/.hidden/...", "GET", "/v1/files/.hidden/...");
	assert_origin_form("/v1/files/a%20b%3Fc%25", "GET", "/v1/files/a%20b%3Fc%25");
	assert_origin_form("/v1/models?after=../x&q=%63", "GET", "/v1/models?after=../x&q=%63");
	assert_origin_form("/v1/x%4", "GET", "/v1/x%4");
	assert_origin_form("/v1/x%", "GET", "/v1/x%");
	assert_origin_form("/v1/x%2", "GET", "/v1/x%2");
	assert_origin_form("/v1/files/a%20%20b", "GET", "/v1/files/a%20%20b");
	assert_origin_form("/v1/files/a%3Bb%80", "GET", "/v1/files/a%3Bb%80");
	assert_origin_form("/v1/models?x=;&y=%00%20", "GET", "/v1/models?x=;&y=%00%20");
}
END_TEST

static enum tg_error
judge_method(const char *line, size_t len, char *method, char *message, size_t size)
{
	message[0] = '\0';
	return tg_request_head_unknown_method(line, len, method, TG_REQUEST_METHOD_SHOWN + 1,
	                                      message, size);
}

/* RFC 9110 section 9.1: a method the server does not recognize gets 501. */
START_TEST(unknown_method_not_implemented)
{
	static const char *const lines[][2] = {
		{ "FOO /v1/models HTTP/1.1", "FOO" },
		{ "get /v1/models HTTP/1.1", "get" },
		{ "QUERY /v1/models HTTP/1.1", "QUERY" },
		{ "GETX /", "GETX" },
		{ "BREW", "BREW" },     /* cut off by the end of the bytes read */
		{ "SETUP", "SETUP" },
		{ "X-Y_Z!#$%&'*+.^`|~ /", "X-Y_Z!#$%&'*+.^`|~" },
	};
	char method[TG_REQUEST_METHOD_SHOWN + 1];
	char message[256];
	char expected[256];

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		ck_assert_int_eq(judge_method(lines[i][0], strlen(lines[i][0]), method, message,
		                              sizeof(message)), TG_E_NOT_IMPLEMENTED);
		ck_assert_str_eq(method, lines[i][1]);
		snprintf(expected, sizeof(expected), "the gateway does not implement the method "
		         "\"%s\"; it forwards standard methods such as GET and POST, whose "
		         "names are case-sensitive", lines[i][1]);
		ck_assert_str_eq(message, expected);
	}
}
END_TEST

START_TEST(long_unknown_method_cut)
{
	char line[80];
	char method[TG_REQUEST_METHOD_SHOWN + 1];
	char message[256];

	memset(line, 'M', 60);
	memcpy(line + 60, " / HTTP/1.1", 11);
	ck_assert_int_eq(judge_method(line, 71, method, message, sizeof(message)),
	                 TG_E_NOT_IMPLEMENTED);
	ck_assert_uint_eq(strlen(method), TG_REQUEST_METHOD_SHOWN);
	ck_assert_int_eq(strspn(method, "M"), TG_REQUEST_METHOD_SHOWN);
}
END_TEST

/* Bytes that are no token get 400, and are quoted with their escapes. */
START_TEST(line_without_method_rejected)
{
	char method[TG_REQUEST_METHOD_SHOWN + 1];
	char message[256];

	ck_assert_int_eq(judge_method("G@T / HTTP/1.1", 14, method, message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
	ck_assert_str_eq(method, "");
	ck_assert_str_eq(message, "the request line does not start with a method such as "
	                 "POST and a space, but with \"G@T / HTTP/1.1\"; send METHOD "
	                 "TARGET HTTP/1.1");
	ck_assert_int_eq(judge_method("\x16\x03\x01\x02\x00\x01", 6, method, message,
	                              sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_msg(strstr(message, "but with \"\\x16\\x03\\x01\\x02\\x00\\x01\";") != NULL,
	              "%s", message);
	ck_assert_int_eq(judge_method("GET\t/ HTTP/1.1", 14, method, message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
	ck_assert_int_eq(judge_method("", 0, method, message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
}
END_TEST

/* A method is judged only in a line that llhttp would read after a method
 * it knows: "THIS IS NOT HTTP" is no request with the method THIS. */
START_TEST(line_invalid_after_method_rejected)
{
	static const char *const lines[] = {
		"THIS IS NOT HTTP\r\n\r\n",
		"FOO /v1/models HTTP/1.1 x\r\n",
		"FOO /v1/models XTTP/1.1\r\n",
		"FOO /v1/\x01 HTTP/1.1\r\n",
	};
	static const char request[] = "FOO /v1/models HTTP/1.1\r\nHost: a\r\n\r\n";
	char method[TG_REQUEST_METHOD_SHOWN + 1];
	char message[256];

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		ck_assert_int_eq(judge_method(lines[i], strlen(lines[i]), method, message,
		                              sizeof(message)), TG_E_BAD_REQUEST);
		ck_assert_str_eq(method, "");
		ck_assert_msg(strstr(message, " is not METHOD TARGET HTTP/1.1 after its method "
		                     "(llhttp: ") != NULL, "%s: %s", lines[i], message);
	}
	ck_assert_int_eq(judge_method(lines[0], strlen(lines[0]), method, message,
	                              sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_msg(strncmp(message, "the request line that starts with \"THIS IS NOT HTTP\"",
	                      51) == 0, "%s", message);
	ck_assert_int_eq(judge_method(request, strlen(request), method, message,
	                              sizeof(message)), TG_E_NOT_IMPLEMENTED);
	ck_assert_str_eq(method, "FOO");
}
END_TEST

START_TEST(client_bytes_quoted)
{
	char out[32];

	tg_request_head_quote("12ab", 4, out, sizeof(out));
	ck_assert_str_eq(out, "12ab");
	tg_request_head_quote("a\"b\\c\x80\x00" "d", 8, out, sizeof(out));
	ck_assert_str_eq(out, "a\\x22b\\x5cc\\x80\\x00d");
	tg_request_head_quote("", 0, out, sizeof(out));
	ck_assert_str_eq(out, "");
	/* Cut where "..." and the NUL still fit. */
	tg_request_head_quote("0123456789", 10, out, 10);
	ck_assert_str_eq(out, "012345...");
	tg_request_head_quote("012345", 6, out, 10);
	ck_assert_str_eq(out, "012345");
	tg_request_head_quote("\x01\x02\x03", 3, out, 10);
	ck_assert_str_eq(out, "\\x01...");
}
END_TEST

START_TEST(connect_not_implemented)
{
	char message[256];

	ck_assert_ptr_null(reduce_target("api.example:443", "CONNECT", TG_E_NOT_IMPLEMENTED,
	                                 message, sizeof(message)));
	ck_assert_str_eq(message, "CONNECT is not supported: tollgate forwards API requests "
	                 "and opens no tunnels");
}
END_TEST

START_TEST(credentials_not_quoted)
{
	char message[256];

	ck_assert_ptr_null(reduce_target("http://user:secret@api.example/", "POST",
	                                 TG_E_BAD_REQUEST, message, sizeof(message)));
	ck_assert_ptr_null(strstr(message, "secret"));
}
END_TEST

START_TEST(asterisk_form_only_for_options)
{
	assert_target_rejected("*", "POST", "the request target \"*\" is only for OPTIONS, "
	                       "not POST");
	assert_target_rejected("*", "GET", "not GET");
}
END_TEST

START_TEST(host_once_accepted)
{
	static const char *const lines[] = {"host: api.example"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 1, message, sizeof(message)), TG_OK);
	ck_assert_int_eq(check_host(lines, 1, 0, message, sizeof(message)), TG_OK);
}
END_TEST

START_TEST(host_missing_in_http11)
{
	static const char *const lines[] = {"Content-Type: application/json"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "no Host header"));
}
END_TEST

START_TEST(host_missing_in_http10_accepted)
{
	static const char *const lines[] = {"Content-Type: application/json"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 1, 0, message, sizeof(message)), TG_OK);
	ck_assert_str_eq(message, "");
}
END_TEST

START_TEST(host_twice_rejected)
{
	static const char *const lines[] = {"Host: a.example", "HOST: b.example"};
	char message[256];

	ck_assert_int_eq(check_host(lines, 2, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_str_eq(message, "the request has 2 Host headers; send exactly one");
	ck_assert_int_eq(check_host(lines, 2, 0, message, sizeof(message)), TG_E_BAD_REQUEST);
}
END_TEST

START_TEST(host_values_checked)
{
	static const struct {
		const char *value;
		enum tg_error expected;
	} cases[] = {
		{"api.example", TG_OK},
		{"api.example:8080", TG_OK},
		{"127.0.0.1", TG_OK},
		{"[::1]:8080", TG_OK},
		{"[v1.fe]", TG_OK},
		{"xn--bcher-kva.example", TG_OK},
		{"a%41.example", TG_OK},
		{"api.example:", TG_OK},
		{"", TG_OK},
		{"a b/c", TG_E_BAD_REQUEST},
		{"api.example/v1", TG_E_BAD_REQUEST},
		{"user@api.example", TG_E_BAD_REQUEST},
		{"api.example?q", TG_E_BAD_REQUEST},
		{"api.example#f", TG_E_BAD_REQUEST},
		{"::1", TG_E_BAD_REQUEST},
		{"[::1", TG_E_BAD_REQUEST},
		{"[::1]x", TG_E_BAD_REQUEST},
		{"api.example:http", TG_E_BAD_REQUEST},
		{"api.example:65536", TG_E_BAD_REQUEST},
		{"api.example:80:80", TG_E_BAD_REQUEST},
		{"a%zz", TG_E_BAD_REQUEST},
		{"caf\xc3\xa9.example", TG_E_BAD_REQUEST},
		{"\xff", TG_E_BAD_REQUEST},
	};
	const char *invalid = "the Host header is not a valid uri-host[:port]; send a host "
	                      "name, an IPv4 address or an IPv6 address in brackets, "
	                      "optionally followed by :PORT with a port of 0 to 65535";
	char line[64];
	const char *lines[] = {line};
	char message[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(line, sizeof(line), "Host: %s", cases[i].value);
		ck_assert_msg(check_host(lines, 1, 1, message, sizeof(message)) == cases[i].expected,
		              "Host \"%s\": %s", cases[i].value, message);
		ck_assert_str_eq(message, cases[i].expected == TG_OK ? "" : invalid);
	}
}
END_TEST

/* Judge value on both paths of check_host_value(): when the common-shape
 * path takes it, its verdict must be the one libevent's URI parser gives.
 * Returns 1 when the common-shape path took it. */
static int
assert_host_paths_agree(const char *value)
{
	enum tg_error by_uri = check_host_value_as_uri(value);
	int valid;
	int common = judge_common_host_value(value, &valid);

	ck_assert_int_ne(by_uri, TG_E_INTERNAL);
	if (common)
		ck_assert_msg((valid ? TG_OK : TG_E_BAD_REQUEST) == by_uri,
		              "Host \"%s\": the common-shape path judges it %s, "
		              "the URI parser %s", value, valid ? "valid" : "invalid",
		              by_uri == TG_OK ? "valid" : "invalid");
	ck_assert_int_eq(check_host_value(value), by_uri);
	return common;
}

/* Compare the paths on template with every byte value from 1 to 255 put in
 * place of each of its bytes, and inserted before each byte and at its
 * end. Returns how many of the values the common-shape path took. */
static size_t
assert_host_paths_agree_around(const char *template)
{
	size_t len = strlen(template);
	size_t common = 0;
	char value[128];

	ck_assert_uint_lt(len + 2, sizeof(value));
	for (size_t pos = 0; pos <= len; pos++) {
		for (int byte = 1; byte <= 255; byte++) {
			memcpy(value, template, len + 1);
			if (pos < len) {
				value[pos] = (char)byte;
				common += (size_t)assert_host_paths_agree(value);
			}

			memcpy(value, template, pos);
			value[pos] = (char)byte;
			memcpy(value + pos + 1, template + pos, len - pos + 1);
			common += (size_t)assert_host_paths_agree(value);
		}
	}
	return common;
}

START_TEST(host_paths_agree_on_byte_changes)
{
	static const char *const templates[] = {
		"", "a", "api.example", "api.example:8080", "127.0.0.1", "127.0.0.1:443",
		"localhost:", ":80", "x:65535", "x:65536", "[::1]", "[::1]:8080",
		"a%41b:1", "a-b_c~d.e:0",
	};

	size_t common = 0;

	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
		common += assert_host_paths_agree_around(templates[i]);
	/* The change of a byte to another unreserved one keeps the shape. */
	ck_assert_uint_gt(common, 1000);
}
END_TEST

START_TEST(host_paths_agree_on_edge_cases)
{
	static const char *const values[] = {
		"", ":", "::", "a:", ":0", "a:0", "a:00000000000000000080", "a:65535",
		"a:65536", "a:99999", "a:100000", "a:4294967297", "a:18446744073709551617",
		"a:999999999999999999999999999999", "a:-1", "a:+1", "a: 80", "a :80",
		"a:80:", "a::80", "1.2.3.4.5", "256.256.256.256", "1.2.3.4:",
		"[::1]", "[::1]:", "[::1]:80", "[::1]:65536", "[fe80::1%25eth0]",
		"[2001:db8::1]", "[2001:db8::zz]", "[::ffff:127.0.0.1]", "[v1.fe]", "[v1.fe]:1",
		"[]", "[:]", "[::1", "::1]", "[::1]]", "[[::1]]",
		"a@b", "@", "a@", "a/b", "/", "?", "#", "a%4", "a%41", "a%", "%",
		"a!$&'()*+,;=b", "-", ".", "_", "~", "..", "a..b",
	};

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_host_paths_agree(values[i]);
}
END_TEST

START_TEST(host_common_shapes_skip_uri_parser)
{
	static const char *const common[] = {
		"api.example", "api.example:8080", "127.0.0.1", "127.0.0.1:443", "localhost",
		"localhost:", "", "x:65536",
	};
	static const char *const other[] = {"[::1]:8080", "a%41", "a!b", "a@b", "a:b"};
	int valid;

	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		ck_assert_msg(judge_common_host_value(common[i], &valid),
		              "Host \"%s\" should take the common-shape path", common[i]);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		ck_assert_msg(!judge_common_host_value(other[i], &valid),
		              "Host \"%s\" should go to the URI parser", other[i]);
}
END_TEST

START_TEST(codings_absent_or_chunked_accepted)
{
	static const char *const none[] = {"Host: a.example"};
	static const char *const chunked[] = {"Transfer-Encoding: Chunked"};
	static const char *const padded[] = {"Transfer-Encoding: , chunked ,"};
	char message[256];

	ck_assert_int_eq(check_codings(none, 1, message, sizeof(message)), TG_OK);
	ck_assert_int_eq(check_codings(chunked, 1, message, sizeof(message)), TG_OK);
	ck_assert_int_eq(check_codings(padded, 1, message, sizeof(message)), TG_OK);
}
END_TEST

START_TEST(coding_before_chunked_not_implemented)
{
	static const char *const one_line[] = {"Transfer-Encoding: gzip, chunked"};
	static const char *const two_lines[] = {"Transfer-Encoding: gzip", "Transfer-Encoding: chunked"};
	static const char *const params[] = {"Transfer-Encoding: deflate ; level=1, x-custom, chunked"};
	char message[256];

	ck_assert_int_eq(check_codings(one_line, 1, message, sizeof(message)),
	                 TG_E_TRANSFER_CODING);
	ck_assert_str_eq(message, "the transfer coding \"gzip\" is not supported; send the "
	                 "body with chunked alone, or with Content-Length");
	ck_assert_int_eq(check_codings(two_lines, 2, message, sizeof(message)),
	                 TG_E_TRANSFER_CODING);
	ck_assert_ptr_nonnull(strstr(message, "\"gzip\""));
	ck_assert_int_eq(check_codings(params, 1, message, sizeof(message)),
	                 TG_E_TRANSFER_CODING);
	ck_assert_ptr_nonnull(strstr(message, "\"deflate\""));
}
END_TEST

START_TEST(list_not_ending_with_chunked_rejected)
{
	static const char *const alone[] = {"Transfer-Encoding: gzip"};
	static const char *const after[] = {"Transfer-Encoding: chunked, gzip"};
	char message[256];

	ck_assert_int_eq(check_codings(alone, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "ends with \"gzip\", not chunked"));
	ck_assert_int_eq(check_codings(after, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "ends with \"gzip\", not chunked"));
}
END_TEST

START_TEST(malformed_codings_rejected)
{
	static const char *const empty[] = {"Transfer-Encoding: "};
	static const char *const twice[] = {"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"};
	static const char *const with_params[] = {"Transfer-Encoding: chunked;ext=1"};
	static const char *const not_token[] = {"Transfer-Encoding: gzip, g\"zip\", chunked"};
	static const char *const no_name[] = {"Transfer-Encoding: ;q=1, chunked"};
	char message[256];

	ck_assert_int_eq(check_codings(empty, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "Transfer-Encoding is empty"));
	ck_assert_int_eq(check_codings(twice, 2, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "chunked 2 times"));
	ck_assert_int_eq(check_codings(with_params, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "chunked parameters"));
	ck_assert_int_eq(check_codings(not_token, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "coding 2 is not a valid name"));
	ck_assert_int_eq(check_codings(no_name, 1, message, sizeof(message)), TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "coding 1 is not a valid name"));
}
END_TEST

START_TEST(codings_in_http10_rejected)
{
	static const char *const chunked[] = {"Transfer-Encoding: chunked"};
	static const char *const gzip[] = {"Transfer-Encoding: gzip, chunked"};
	static const char *const none[] = {"Content-Length: 2"};
	char message[256];

	ck_assert_int_eq(check_codings_in(chunked, 1, 0, message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
	ck_assert_str_eq(message, "the HTTP/1.0 request has Transfer-Encoding, which HTTP/1.0 "
	                 "does not define, so its body framing is faulty; send Content-Length, "
	                 "or HTTP/1.1 for a chunked body");
	ck_assert_int_eq(check_codings_in(gzip, 1, 0, message, sizeof(message)),
	                 TG_E_BAD_REQUEST);
	ck_assert_ptr_nonnull(strstr(message, "HTTP/1.0 request has Transfer-Encoding"));
	ck_assert_int_eq(check_codings_in(none, 1, 0, message, sizeof(message)), TG_OK);
}
END_TEST

START_TEST(long_coding_name_cut_in_message)
{
	char line[400] = "Transfer-Encoding: ";
	const char *lines[] = {line};
	char message[256];

	memset(line + strlen(line), 'x', 300);
	strcat(line, ", chunked");
	ck_assert_int_eq(check_codings(lines, 1, message, sizeof(message)), TG_E_TRANSFER_CODING);
	ck_assert_ptr_nonnull(strstr(message, "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\""));
}
END_TEST

/* Whether llhttp, set up as the client side sets it up, accepts a request
 * with the header line "X<byte>Y: ab" when in_name, or "X: a<byte>b"
 * otherwise. */
static int
llhttp_accepts(unsigned char byte, int in_name)
{
	char head[64];
	size_t len = 0;
	llhttp_settings_t settings;
	llhttp_t parser;

	len += (size_t)snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX");
	if (in_name) {
		head[len++] = (char)byte;
		len += (size_t)snprintf(head + len, sizeof(head) - len, "Y: ab\r\n\r\n");
	} else {
		len += (size_t)snprintf(head + len, sizeof(head) - len, ": a");
		head[len++] = (char)byte;
		len += (size_t)snprintf(head + len, sizeof(head) - len, "b\r\n\r\n");
	}
	llhttp_settings_init(&settings);
	llhttp_init(&parser, HTTP_REQUEST, &settings);
	return llhttp_execute(&parser, head, len) == HPE_OK;
}

/* The client side leaves these bytes to llhttp: tg_request_head_name_valid()
 * checks only that a name is not empty, and nothing else checks a value. A
 * space fails here when llhttp is built loose (LLHTTP_STRICT_MODE 0). */
START_TEST(llhttp_rejects_name_bytes_outside_token)
{
	for (int byte = 0; byte < 256; byte++) {
		unsigned char b = (unsigned char)byte;
		char c = (char)b;

		if (b == ':')
			continue;       /* ends the name */
		if (tg_header_name_valid(&c, 1))
			ck_assert_msg(llhttp_accepts(b, 1), "name byte 0x%02x rejected", byte);
		else
			ck_assert_msg(!llhttp_accepts(b, 1), "name byte 0x%02x accepted", byte);
	}
}
END_TEST

START_TEST(llhttp_rejects_control_bytes_in_values)
{
	for (int byte = 0; byte < 256; byte++) {
		unsigned char b = (unsigned char)byte;

		if (b == '\t' || (b >= 0x20 && b != 0x7f))
			ck_assert_msg(llhttp_accepts(b, 0), "value byte 0x%02x rejected", byte);
		else
			ck_assert_msg(!llhttp_accepts(b, 0), "value byte 0x%02x accepted", byte);
	}
}
END_TEST

START_TEST(names_llhttp_lets_through_rejected)
{
	ck_assert_int_eq(tg_request_head_name_valid("", 0), 0);
	ck_assert_int_eq(tg_request_head_name_valid(NULL, 0), 0);
	ck_assert_int_eq(tg_request_head_name_valid("X-Y", 3), 1);
	ck_assert_int_eq(tg_request_head_name_valid("!#$%&'*+-.^_`|~09Az", 19), 1);
}
END_TEST

static Suite *
request_head_suite(void)
{
	Suite *s = suite_create("request-head");
	TCase *target = tcase_create("target");
	TCase *host = tcase_create("host");
	TCase *codings = tcase_create("transfer-coding");
	TCase *names = tcase_create("header-bytes");

	tcase_add_test(target, origin_form_kept);
	tcase_add_test(target, origin_form_fragment_rejected);
	tcase_add_test(target, path_not_in_normal_form_rejected);
	tcase_add_test(target, path_parameters_and_controls_rejected);
	tcase_add_test(target, path_in_normal_form_kept);
	tcase_add_test(target, bytes_outside_rfc3986_rejected);
	tcase_add_test(target, route_path_bytes_checked);
	tcase_add_test(target, connect_not_implemented);
	tcase_add_test(target, unknown_method_not_implemented);
	tcase_add_test(target, long_unknown_method_cut);
	tcase_add_test(target, line_without_method_rejected);
	tcase_add_test(target, line_invalid_after_method_rejected);
	tcase_add_test(target, client_bytes_quoted);
	tcase_add_test(target, absolute_form_reduced_to_path);
	tcase_add_test(target, absolute_form_rejected);
	tcase_add_test(target, credentials_not_quoted);
	tcase_add_test(target, asterisk_form_only_for_options);
	tcase_add_test(host, host_once_accepted);
	tcase_add_test(host, host_missing_in_http11);
	tcase_add_test(host, host_missing_in_http10_accepted);
	tcase_add_test(host, host_twice_rejected);
	tcase_add_test(host, host_values_checked);
	tcase_add_test(host, host_paths_agree_on_byte_changes);
	tcase_add_test(host, host_paths_agree_on_edge_cases);
	tcase_add_test(host, host_common_shapes_skip_uri_parser);
	tcase_add_test(codings, codings_absent_or_chunked_accepted);
	tcase_add_test(codings, coding_before_chunked_not_implemented);
	tcase_add_test(codings, list_not_ending_with_chunked_rejected);
	tcase_add_test(codings, malformed_codings_rejected);
	tcase_add_test(codings, codings_in_http10_rejected);
	tcase_add_test(codings, long_coding_name_cut_in_message);
	tcase_add_test(names, llhttp_rejects_name_bytes_outside_token);
	tcase_add_test(names, llhttp_rejects_control_bytes_in_values);
	tcase_add_test(names, names_llhttp_lets_through_rejected);
	suite_add_tcase(s, target);
	suite_add_tcase(s, host);
	suite_add_tcase(s, codings);
	suite_add_tcase(s, names);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(request_head_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
