/*
 * Unit tests for the failure kinds and HTTP reason phrases (src/errors.c).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "errors.h"

START_TEST(reason_of_registered_statuses)
{
	ck_assert_str_eq(tg_http_reason(200), "OK");
	ck_assert_str_eq(tg_http_reason(101), "Switching Protocols");
	ck_assert_str_eq(tg_http_reason(202), "Accepted");
	ck_assert_str_eq(tg_http_reason(206), "Partial Content");
	ck_assert_str_eq(tg_http_reason(308), "Permanent Redirect");
	ck_assert_str_eq(tg_http_reason(409), "Conflict");
	ck_assert_str_eq(tg_http_reason(415), "Unsupported Media Type");
	ck_assert_str_eq(tg_http_reason(421), "Misdirected Request");
	ck_assert_str_eq(tg_http_reason(422), "Unprocessable Content");
	ck_assert_str_eq(tg_http_reason(429), "Too Many Requests");
	ck_assert_str_eq(tg_http_reason(505), "HTTP Version Not Supported");
	ck_assert_str_eq(tg_http_reason(511), "Network Authentication Required");
}
END_TEST

/* A status line may have an empty reason phrase (RFC 9112 section 4), so
 * a code without a registered phrase gets none rather than a made-up one. */
START_TEST(reason_of_unregistered_statuses)
{
	ck_assert_str_eq(tg_http_reason(299), "");
	ck_assert_str_eq(tg_http_reason(306), "");
	ck_assert_str_eq(tg_http_reason(418), "");
	ck_assert_str_eq(tg_http_reason(599), "");
	ck_assert_str_eq(tg_http_reason(600), "");
	ck_assert_str_eq(tg_http_reason(-1), "");
}
END_TEST

/* Every status from 100 to 599 has a reason of visible ASCII and spaces
 * (RFC 9112 section 4 also allows obs-text, which no registered phrase
 * uses). */
START_TEST(reason_is_valid_text)
{
	for (int status = 100; status <= 599; status++) {
		const char *reason = tg_http_reason(status);

		ck_assert_ptr_nonnull(reason);
		for (const char *p = reason; *p != '\0'; p++)
			ck_assert_msg(*p == ' ' || (*p > 0x20 && *p < 0x7f),
			              "status %d has byte 0x%02x in its reason", status, *p);
	}
}
END_TEST

START_TEST(error_status_has_its_reason)
{
	for (int err = TG_E_BAD_REQUEST; err < TG_E_COUNT; err++) {
		int status = tg_error_info((enum tg_error)err)->status;

		ck_assert_msg(tg_http_reason(status)[0] != '\0',
		              "status %d of error %d has no reason phrase", status, err);
	}
}
END_TEST

/* Each failure kind has a reason of its own, so that the access log and
 * tollgate_gateway_errors_total tell apart kinds that share a code. A
 * request without an error has none. */
START_TEST(reason_names_one_kind)
{
	ck_assert_ptr_null(tg_error_info(TG_OK)->reason);
	for (int err = TG_E_BAD_REQUEST; err < TG_E_COUNT; err++) {
		const char *reason = tg_error_info((enum tg_error)err)->reason;

		ck_assert_msg(reason != NULL && reason[0] != '\0', "error %d has no reason", err);
		for (int other = TG_E_BAD_REQUEST; other < err; other++)
			ck_assert_msg(strcmp(reason, tg_error_info((enum tg_error)other)->reason) != 0,
			              "errors %d and %d share the reason \"%s\"", other, err, reason);
	}
}
END_TEST

/* The types Anthropic's API documents for its error bodies. */
START_TEST(anthropic_type_is_documented)
{
	static const char *const types[] = {
		"invalid_request_error", "authentication_error", "permission_error",
		"not_found_error", "request_too_large", "rate_limit_error", "api_error",
		"overloaded_error",
	};

	for (int err = TG_E_BAD_REQUEST; err < TG_E_COUNT; err++) {
		const char *type = tg_error_info((enum tg_error)err)->anthropic_type;
		size_t i = 0;

		ck_assert_msg(type != NULL, "error %d has no Anthropic type", err);
		while (i < sizeof(types) / sizeof(types[0]) && strcmp(type, types[i]) != 0)
			i++;
		ck_assert_msg(i < sizeof(types) / sizeof(types[0]),
		              "error %d has the Anthropic type \"%s\"", err, type);
	}
}
END_TEST

/* Take the text of out, which the caller frees. */
static char *
take(struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out);
	char *text = malloc(len + 1);

	ck_assert_ptr_nonnull(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	return text;
}

START_TEST(body_in_each_shape)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	ck_assert_int_eq(tg_error_shaped_body(out, TG_ERROR_OPENAI, TG_E_BODY_TOO_LARGE, NULL,
	                                      NULL), 0);
	text = take(out);
	ck_assert_str_eq(text, "{\"error\":{\"message\":\"the request body exceeds "
	                 "limits.max_body\",\"type\":\"invalid_request_error\","
	                 "\"param\":null,\"code\":\"request_too_large\"}}\n");
	free(text);

	ck_assert_int_eq(tg_error_shaped_body(out, TG_ERROR_ANTHROPIC, TG_E_NO_BACKEND, "none",
	                                      json_pack("{s:i}", "extra", 1)), 0);
	text = take(out);
	ck_assert_str_eq(text, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
	                 "\"message\":\"none\",\"code\":\"no_backend_available\",\"extra\":1}}\n");
	free(text);
	evbuffer_free(out);
}
END_TEST

/* The admin listener's text shape is the message alone, without extra. */
START_TEST(body_as_text)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	ck_assert_int_eq(tg_error_shaped_body(out, TG_ERROR_TEXT, TG_E_BODY_TOO_LARGE, NULL,
	                                      json_pack("{s:i}", "extra", 1)), 0);
	text = take(out);
	ck_assert_str_eq(text, "the request body exceeds limits.max_body\n");
	free(text);

	ck_assert_int_eq(tg_error_shaped_body(out, TG_ERROR_TEXT, TG_E_BAD_REQUEST, "no Host",
	                                      NULL), 0);
	text = take(out);
	ck_assert_str_eq(text, "no Host\n");
	free(text);
	evbuffer_free(out);

	ck_assert_str_eq(tg_error_content_type(TG_ERROR_TEXT), "text/plain; charset=utf-8");
	ck_assert_str_eq(tg_error_content_type(TG_ERROR_OPENAI), "application/json");
}
END_TEST

/* The Responses API's error event has a flat body, a name and a number. */
START_TEST(responses_event)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	ck_assert_int_eq(tg_error_responses_event(out, TG_E_UPSTREAM_INCOMPLETE, NULL, 9), 0);
	text = take(out);
	ck_assert_str_eq(text, "event: error\ndata: {\"type\":\"error\","
	                 "\"code\":\"upstream_incomplete\",\"message\":\"the upstream ended "
	                 "the stream without finishing the response\",\"param\":null,"
	                 "\"sequence_number\":9}\n\n");
	free(text);
	evbuffer_free(out);
}
END_TEST

int
main(void)
{
	Suite *suite = suite_create("errors");
	TCase *reasons = tcase_create("reasons");
	TCase *bodies = tcase_create("bodies");
	SRunner *runner;
	int failed;

	tcase_add_test(reasons, reason_of_registered_statuses);
	tcase_add_test(reasons, reason_of_unregistered_statuses);
	tcase_add_test(reasons, reason_is_valid_text);
	tcase_add_test(reasons, error_status_has_its_reason);
	tcase_add_test(reasons, reason_names_one_kind);
	suite_add_tcase(suite, reasons);
	tcase_add_test(bodies, anthropic_type_is_documented);
	tcase_add_test(bodies, body_in_each_shape);
	tcase_add_test(bodies, body_as_text);
	tcase_add_test(bodies, responses_event);
	suite_add_tcase(suite, bodies);

	runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
