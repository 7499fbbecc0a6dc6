/*
 * Unit tests for the checks of a client request head: the request target,
 * the Host header and the transfer codings.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request-head.h"

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
	assert_target_rejected("api.example:443", "CONNECT", TG_REQUEST_TARGET_INVALID);
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

static Suite *
request_head_suite(void)
{
	Suite *s = suite_create("request-head");
	TCase *target = tcase_create("target");
	TCase *host = tcase_create("host");
	TCase *codings = tcase_create("transfer-coding");

	tcase_add_test(target, origin_form_kept);
	tcase_add_test(target, absolute_form_reduced_to_path);
	tcase_add_test(target, absolute_form_rejected);
	tcase_add_test(target, credentials_not_quoted);
	tcase_add_test(target, asterisk_form_only_for_options);
	tcase_add_test(host, host_once_accepted);
	tcase_add_test(host, host_missing_in_http11);
	tcase_add_test(host, host_missing_in_http10_accepted);
	tcase_add_test(host, host_twice_rejected);
	tcase_add_test(host, host_values_checked);
	tcase_add_test(codings, codings_absent_or_chunked_accepted);
	tcase_add_test(codings, coding_before_chunked_not_implemented);
	tcase_add_test(codings, list_not_ending_with_chunked_rejected);
	tcase_add_test(codings, malformed_codings_rejected);
	tcase_add_test(codings, codings_in_http10_rejected);
	tcase_add_test(codings, long_coding_name_cut_in_message);
	suite_add_tcase(s, target);
	suite_add_tcase(s, host);
	suite_add_tcase(s, codings);
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
