/*
 * Unit tests for the failure kinds and HTTP reason phrases (src/errors.c).
 */
#include <check.h>
#include <stdlib.h>

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

int
main(void)
{
	Suite *suite = suite_create("errors");
	TCase *reasons = tcase_create("reasons");
	SRunner *runner;
	int failed;

	tcase_add_test(reasons, reason_of_registered_statuses);
	tcase_add_test(reasons, reason_of_unregistered_statuses);
	tcase_add_test(reasons, reason_is_valid_text);
	tcase_add_test(reasons, error_status_has_its_reason);
	suite_add_tcase(suite, reasons);

	runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
