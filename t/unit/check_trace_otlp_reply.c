/*
 * Unit tests of reading an OTLP export response's partial success, in
 * protobuf and in JSON. The protobuf bodies are spelled out byte by byte:
 * a key is (field number << 3 | wire type).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "trace-otlp-reply.h"

#define PROTOBUF "application/x-protobuf"

/* Read body in the encoding content_type names, asserting the return code. */
static struct tg_otlp_partial
read_reply(const char *content_type, const void *body, size_t len, int expect_rc)
{
	static char message_buf[TG_OTLP_REPLY_MESSAGE_MAX];
	struct tg_otlp_partial partial;

	ck_assert_int_eq(tg_otlp_reply_read(content_type, body, len, message_buf, &partial),
	                 expect_rc);
	return partial;
}

START_TEST(protobuf_partial_success_read)
{
	/* partial_success (1, LEN 9) { rejected_spans (1, VARINT) 2,
	 * error_message (2, LEN 5) "quota" } */
	static const unsigned char body[] = {
		0x0a, 0x09, 0x08, 0x02, 0x12, 0x05, 'q', 'u', 'o', 't', 'a',
	};
	struct tg_otlp_partial p = read_reply(PROTOBUF, body, sizeof(body), 0);

	ck_assert_int_eq(p.rejected_spans, 2);
	ck_assert_uint_eq(p.message_len, 5);
	ck_assert(memcmp(p.message, "quota", 5) == 0);
}
END_TEST

START_TEST(protobuf_unknown_fields_skipped)
{
	/* Fields 2 to 5 of every wire type around partial_success, and a
	 * rejected_spans of 300 (a two-byte varint) inside it after an
	 * unknown fixed32. */
	static const unsigned char body[] = {
		0x10, 0x96, 0x01,                       /* 2: varint 150 */
		0x19, 1, 2, 3, 4, 5, 6, 7, 8,           /* 3: fixed64 */
		0x22, 0x02, 'h', 'i',                   /* 4: bytes "hi" */
		0x0a, 0x08, 0x2d, 9, 9, 9, 9, 0x08, 0xac, 0x02,
		0x2d, 1, 2, 3, 4,                       /* 5: fixed32 */
	};
	struct tg_otlp_partial p = read_reply("Application/X-Protobuf; charset=binary", body,
	                                      sizeof(body), 0);

	ck_assert_int_eq(p.rejected_spans, 300);
	ck_assert_ptr_null(p.message);
}
END_TEST

START_TEST(protobuf_empty_means_success)
{
	struct tg_otlp_partial p = read_reply(PROTOBUF, "", 0, 0);

	ck_assert_int_eq(p.rejected_spans, 0);
	ck_assert_ptr_null(p.message);
}
END_TEST

START_TEST(protobuf_malformed_rejected)
{
	static const unsigned char cut_length[] = {0x0a, 0x09, 0x08, 0x02};
	static const unsigned char cut_varint[] = {0x0a, 0x02, 0x08, 0x80};
	static const unsigned char group[] = {0x0b, 0x0c};
	static const unsigned char long_varint[] = {
		0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
	};
	static const unsigned char cut_fixed64[] = {0x19, 1, 2, 3};

	read_reply(PROTOBUF, cut_length, sizeof(cut_length), -1);
	read_reply(PROTOBUF, cut_varint, sizeof(cut_varint), -1);
	read_reply(PROTOBUF, group, sizeof(group), -1);
	read_reply(PROTOBUF, long_varint, sizeof(long_varint), -1);
	read_reply(PROTOBUF, cut_fixed64, sizeof(cut_fixed64), -1);
	read_reply(PROTOBUF, "{}", 2, -1);
}
END_TEST

START_TEST(json_partial_success_read)
{
	static const char body[] = "{\"partialSuccess\": {\"rejectedSpans\": \"3\", "
	                           "\"errorMessage\": \"too old\"}}";
	static const char numeric[] = "{\"partialSuccess\": {\"rejectedSpans\": 4}}";
	static const char junk[] = "{\"partialSuccess\": {\"rejectedSpans\": \"4x\"}}";
	struct tg_otlp_partial p;

	/* The protobuf JSON mapping writes an int64 as a decimal string. */
	p = read_reply("application/json", body, strlen(body), 0);
	ck_assert_int_eq(p.rejected_spans, 3);
	ck_assert_uint_eq(p.message_len, 7);
	ck_assert(memcmp(p.message, "too old", 7) == 0);
	p = read_reply(NULL, numeric, strlen(numeric), 0);
	ck_assert_int_eq(p.rejected_spans, 4);
	p = read_reply(NULL, junk, strlen(junk), 0);
	ck_assert_int_eq(p.rejected_spans, 0);
	read_reply("application/json", "not json", 8, -1);
}
END_TEST

START_TEST(json_message_cut_to_buffer)
{
	char body[TG_OTLP_REPLY_MESSAGE_MAX + 100];
	struct tg_otlp_partial p;
	int n = snprintf(body, sizeof(body), "{\"partialSuccess\": {\"rejectedSpans\": 1, "
	                 "\"errorMessage\": \"");

	memset(body + n, 'x', TG_OTLP_REPLY_MESSAGE_MAX + 10);
	strcpy(body + n + TG_OTLP_REPLY_MESSAGE_MAX + 10, "\"}}");
	p = read_reply("application/json", body, strlen(body), 0);
	ck_assert_int_eq(p.rejected_spans, 1);
	ck_assert_uint_eq(p.message_len, TG_OTLP_REPLY_MESSAGE_MAX);
	ck_assert_int_eq(p.message[TG_OTLP_REPLY_MESSAGE_MAX - 1], 'x');
}
END_TEST

static Suite *
reply_suite(void)
{
	Suite *s = suite_create("trace_otlp_reply");
	TCase *protobuf = tcase_create("protobuf");
	TCase *json = tcase_create("json");

	tcase_add_test(protobuf, protobuf_partial_success_read);
	tcase_add_test(protobuf, protobuf_unknown_fields_skipped);
	tcase_add_test(protobuf, protobuf_empty_means_success);
	tcase_add_test(protobuf, protobuf_malformed_rejected);
	tcase_add_test(json, json_partial_success_read);
	tcase_add_test(json, json_message_cut_to_buffer);
	suite_add_tcase(s, protobuf);
	suite_add_tcase(s, json);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(reply_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
