/*
 * Unit tests of the per-key rate limits: the token bucket arithmetic
 * (src/ratelimit-bucket.c), driven by a fake clock in microseconds, and
 * the x-ratelimit-* headers and the registry of src/ratelimit.c.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "auth-t.h"
#include "config-t.h"
#include "headers.h"
#include "ratelimit-bucket.h"
#include "ratelimit.h"
#include "request-t.h"

#define US_PER_S 1000000ull
#define MINUTE (60 * US_PER_S)

/* An arbitrary start, far from 0, so that no test relies on a zero clock. */
#define T0 (1000 * US_PER_S)

/* --- bucket ----------------------------------------------------------------- */

START_TEST(bucket_starts_full)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 3, T0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 3);
	ck_assert_int_eq(tg_bucket_admits(&b), 1);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 0);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 0);
}
END_TEST

/* Three per minute: a burst of three, then one every 20 seconds. */
START_TEST(bucket_burst_then_refill)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 3, T0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(tg_bucket_admits(&b), 1);
		tg_bucket_take(&b, 1);
	}
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 0);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 20 * US_PER_S);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 60 * US_PER_S);

	tg_bucket_refill(&b, T0 + 20 * US_PER_S - 1);
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 1);

	tg_bucket_refill(&b, T0 + 20 * US_PER_S);
	ck_assert_int_eq(tg_bucket_admits(&b), 1);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 1);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 40 * US_PER_S);
}
END_TEST

/* The refill stops at the limit, however long the bucket stayed idle. */
START_TEST(bucket_refill_caps_at_limit)
{
	struct tg_bucket b;

	tg_bucket_init(&b, TG_BUCKET_LIMIT_MAX, T0);
	tg_bucket_take(&b, TG_BUCKET_LIMIT_MAX);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 0);
	tg_bucket_refill(&b, T0 + 365 * 24 * 60 * MINUTE);
	ck_assert_uint_eq(tg_bucket_remaining(&b), TG_BUCKET_LIMIT_MAX);

	tg_bucket_init(&b, 5, T0);
	tg_bucket_refill(&b, UINT64_MAX);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 5);
}
END_TEST

/* A clock reading earlier than the last one neither adds nor takes. */
START_TEST(bucket_ignores_clock_going_back)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 60, T0);
	tg_bucket_take(&b, 60);
	tg_bucket_refill(&b, T0 - 30 * US_PER_S);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 0);
	tg_bucket_refill(&b, T0 + US_PER_S);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 1);
}
END_TEST

/* Tokens charged after a response may exceed what is left: the bucket
 * goes into debt, and admits again only once the refill repaid it. */
START_TEST(bucket_debt_delays_admission)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 100, T0);
	tg_bucket_take(&b, 250);
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 0);
	/* From -150 to +1: 151 tokens at 100 per minute. */
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 151 * MINUTE / 100);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 250 * MINUTE / 100);

	tg_bucket_refill(&b, T0 + 151 * MINUTE / 100 - 1);
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	tg_bucket_refill(&b, T0 + 151 * MINUTE / 100);
	ck_assert_int_eq(tg_bucket_admits(&b), 1);
}
END_TEST

/* A report of absurd usage shuts the key out for the debt bound, an hour
 * of refill, and no longer. */
START_TEST(bucket_debt_is_bounded)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 1000, T0);
	tg_bucket_take(&b, UINT64_MAX);
	ck_assert_uint_eq(tg_bucket_wait_us(&b),
	                  (TG_BUCKET_DEBT_MINUTES * 1000 + 1) * MINUTE / 1000);

	tg_bucket_init(&b, TG_BUCKET_LIMIT_MAX, T0);
	tg_bucket_take(&b, UINT64_MAX);
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	tg_bucket_refill(&b, T0 + (TG_BUCKET_DEBT_MINUTES + 1) * MINUTE);
	ck_assert_uint_eq(tg_bucket_remaining(&b), TG_BUCKET_LIMIT_MAX);
}
END_TEST

/* A reload keeps what the key spent under its new limit. */
START_TEST(bucket_new_limit_keeps_spent)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 3, T0);
	tg_bucket_take(&b, 2);
	tg_bucket_set_limit(&b, 10, T0);
	ck_assert_uint_eq(b.limit, 10);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 8);

	/* Lowered below what was spent: empty, not a debt of the difference. */
	tg_bucket_set_limit(&b, 1, T0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 0);
	ck_assert_int_eq(tg_bucket_admits(&b), 0);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 60 * US_PER_S);
}
END_TEST

/* A debt of tokens outlives a reload: raising the limit repays it only by
 * the difference. */
START_TEST(bucket_new_limit_keeps_debt)
{
	struct tg_bucket b;

	/* 200 in debt; lowered, the debt stays 200, and no more. */
	tg_bucket_init(&b, 100, T0);
	tg_bucket_take(&b, 300);
	tg_bucket_set_limit(&b, 50, T0);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 250 * MINUTE / 50);

	/* Raised by 150: the debt is 50. */
	tg_bucket_set_limit(&b, 200, T0);
	ck_assert_uint_eq(tg_bucket_full_us(&b), 250 * MINUTE / 200);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 51 * MINUTE / 200);
}
END_TEST

/* A limit added where there was none starts full; one removed is gone. */
START_TEST(bucket_limit_added_or_removed)
{
	struct tg_bucket b;

	tg_bucket_init(&b, 0, T0);
	ck_assert_uint_eq(tg_bucket_wait_us(&b), 0);
	tg_bucket_set_limit(&b, 4, T0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 4);
	tg_bucket_take(&b, 4);
	tg_bucket_set_limit(&b, 0, T0);
	ck_assert_uint_eq(b.limit, 0);
	tg_bucket_set_limit(&b, 4, T0);
	ck_assert_uint_eq(tg_bucket_remaining(&b), 4);
}
END_TEST

/* --- headers ----------------------------------------------------------------- */

static const struct {
	uint64_t ms;
	const char *text;
} resets[] = {
	{0, "0s"}, {17, "17ms"}, {999, "999ms"}, {1000, "1s"}, {1500, "1.5s"},
	{8640, "8.64s"}, {20001, "20.001s"}, {59999, "59.999s"}, {60000, "1m0s"},
	{90000, "1m30s"}, {360000, "6m0s"}, {3599999, "59m59.999s"},
	{3600000, "1h0m0s"}, {3661500, "1h1m1.5s"}, {3659987, "1h0m59.987s"},
};

START_TEST(reset_formats_as_openai)
{
	char buf[32];

	ck_assert_str_eq(tg_ratelimit_format_reset(resets[_i].ms, buf, sizeof(buf)),
	                 resets[_i].text);
}
END_TEST

START_TEST(header_lines_of_each_limit)
{
	struct tg_request *req = calloc(1, sizeof(*req));
	char buf[320];

	ck_assert_ptr_nonnull(req);
	ck_assert_uint_eq(tg_ratelimit_header_lines(req, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");

	req->ratelimit.checked = 1;
	req->ratelimit.requests = (struct tg_ratelimit_view){3, 2, 20000};
	tg_ratelimit_header_lines(req, buf, sizeof(buf));
	ck_assert_str_eq(buf, "x-ratelimit-limit-requests: 3\r\n"
	                      "x-ratelimit-remaining-requests: 2\r\n"
	                      "x-ratelimit-reset-requests: 20s\r\n");

	req->ratelimit.tokens = (struct tg_ratelimit_view){1000, 0, 90000};
	tg_ratelimit_header_lines(req, buf, sizeof(buf));
	ck_assert_str_eq(buf, "x-ratelimit-limit-requests: 3\r\n"
	                      "x-ratelimit-remaining-requests: 2\r\n"
	                      "x-ratelimit-reset-requests: 20s\r\n"
	                      "x-ratelimit-limit-tokens: 1000\r\n"
	                      "x-ratelimit-remaining-tokens: 0\r\n"
	                      "x-ratelimit-reset-tokens: 1m30s\r\n");

	/* A buffer too small for a kind leaves it out whole. */
	ck_assert_uint_eq(tg_ratelimit_header_lines(req, buf, 120), strlen(buf));
	ck_assert_str_eq(buf, "x-ratelimit-limit-requests: 3\r\n"
	                      "x-ratelimit-remaining-requests: 2\r\n"
	                      "x-ratelimit-reset-requests: 20s\r\n");
	free(req);
}
END_TEST

/* The upstream's own x-ratelimit-* headers give way to the gateway's,
 * but only for the kinds the key limits. */
START_TEST(upstream_headers_replaced_by_kind)
{
	struct tg_request *req = calloc(1, sizeof(*req));
	struct tg_header requests = {.name = "X-RateLimit-Remaining-Requests", .name_len = 30};
	struct tg_header tokens = {.name = "x-ratelimit-limit-tokens", .name_len = 24};
	struct tg_header other = {.name = "x-request-id", .name_len = 12};

	ck_assert_ptr_nonnull(req);
	ck_assert_int_eq(tg_ratelimit_replaces(req, &requests), 0);

	req->ratelimit.checked = 1;
	req->ratelimit.requests.limit = 3;
	ck_assert_int_eq(tg_ratelimit_replaces(req, &requests), 1);
	ck_assert_int_eq(tg_ratelimit_replaces(req, &tokens), 0);
	ck_assert_int_eq(tg_ratelimit_replaces(req, &other), 0);

	req->ratelimit.tokens.limit = 100;
	ck_assert_int_eq(tg_ratelimit_replaces(req, &tokens), 1);
	free(req);
}
END_TEST

/* --- registry ----------------------------------------------------------------- */

/* A snapshot with the keys of limits, one key per entry, named "k0"... */
struct fake_config {
	struct tg_config cfg;
	struct tg_gateway_keys keys;
	struct tg_gateway_key key[3];
	char names[3][4];
};

static void
fake_config(struct fake_config *f, const struct tg_key_limits *limits, size_t n)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		f->names[i][0] = 'k';
		f->names[i][1] = (char)('0' + i);
		f->key[i].name = f->names[i];
		f->key[i].limits = limits[i];
	}
	f->keys.n = n;
	f->keys.keys = f->key;
	f->cfg.gateway_keys = &f->keys;
}

/* Each limited key gets a state, found again by name on reload; a key
 * without limits gets none. */
START_TEST(registry_keeps_state_by_name)
{
	struct tg_ratelimit_registry reg = {0};
	struct fake_config *first = calloc(1, sizeof(*first));
	struct fake_config *second = calloc(1, sizeof(*second));
	const struct tg_key_limits before[] = {{3, 0}, {0, 0}, {0, 500}};
	const struct tg_key_limits after[] = {{5, 0}, {7, 0}};

	ck_assert_ptr_nonnull(first);
	ck_assert_ptr_nonnull(second);
	fake_config(first, before, 3);
	ck_assert_int_eq(tg_ratelimit_attach(&reg, &first->cfg), 0);
	ck_assert_ptr_nonnull(first->key[0].limiter);
	ck_assert_ptr_null(first->key[1].limiter);
	ck_assert_ptr_nonnull(first->key[2].limiter);
	ck_assert_ptr_ne(first->key[0].limiter, first->key[2].limiter);

	fake_config(second, after, 2);
	ck_assert_int_eq(tg_ratelimit_attach(&reg, &second->cfg), 0);
	ck_assert_ptr_eq(second->key[0].limiter, first->key[0].limiter);
	ck_assert_ptr_nonnull(second->key[1].limiter);

	tg_ratelimit_registry_free(&reg);
	ck_assert_ptr_null(reg.limiters);
	free(first);
	free(second);
}
END_TEST

/* A config without gateway keys attaches nothing. */
START_TEST(registry_without_keys)
{
	struct tg_ratelimit_registry reg = {0};
	struct tg_config cfg = {0};

	ck_assert_int_eq(tg_ratelimit_attach(&reg, &cfg), 0);
	ck_assert_ptr_null(reg.limiters);
}
END_TEST

static Suite *
ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *bucket = tcase_create("bucket");
	TCase *headers = tcase_create("headers");
	TCase *registry = tcase_create("registry");

	tcase_add_test(bucket, bucket_starts_full);
	tcase_add_test(bucket, bucket_burst_then_refill);
	tcase_add_test(bucket, bucket_refill_caps_at_limit);
	tcase_add_test(bucket, bucket_ignores_clock_going_back);
	tcase_add_test(bucket, bucket_debt_delays_admission);
	tcase_add_test(bucket, bucket_debt_is_bounded);
	tcase_add_test(bucket, bucket_new_limit_keeps_spent);
	tcase_add_test(bucket, bucket_new_limit_keeps_debt);
	tcase_add_test(bucket, bucket_limit_added_or_removed);
	tcase_add_loop_test(headers, reset_formats_as_openai, 0,
	                    (int)(sizeof(resets) / sizeof(resets[0])));
	tcase_add_test(headers, header_lines_of_each_limit);
	tcase_add_test(headers, upstream_headers_replaced_by_kind);
	tcase_add_test(registry, registry_keeps_state_by_name);
	tcase_add_test(registry, registry_without_keys);
	suite_add_tcase(s, bucket);
	suite_add_tcase(s, headers);
	suite_add_tcase(s, registry);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ratelimit_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
