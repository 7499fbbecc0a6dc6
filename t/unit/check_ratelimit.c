/*
 * Unit tests of the per-key rate limits: the token bucket arithmetic
 * (src/ratelimit-bucket.c), driven by a fake clock in microseconds.
 */
#include <check.h>
#include <stdlib.h>

#include "ratelimit-bucket.h"

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

static Suite *
ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *bucket = tcase_create("bucket");

	tcase_add_test(bucket, bucket_starts_full);
	tcase_add_test(bucket, bucket_burst_then_refill);
	tcase_add_test(bucket, bucket_refill_caps_at_limit);
	tcase_add_test(bucket, bucket_ignores_clock_going_back);
	tcase_add_test(bucket, bucket_debt_delays_admission);
	tcase_add_test(bucket, bucket_debt_is_bounded);
	tcase_add_test(bucket, bucket_new_limit_keeps_spent);
	tcase_add_test(bucket, bucket_new_limit_keeps_debt);
	tcase_add_test(bucket, bucket_limit_added_or_removed);
	suite_add_tcase(s, bucket);
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
