/*
 * Unit tests for the resolver cache's state (resolve.h): how long answers
 * are kept, when a connect refreshes or waits, what a failed refresh keeps,
 * which state changes are logged, and the order addresses are picked in.
 * The tests give the clock themselves; no query is sent.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>

#include "clock.h"
#include "resolve.h"

#define S (TG_NS_PER_S)
#define T0 (1000 * S)   /* any clock reading well above 0 */

static const struct tg_resolver_config bounds = {
	.min_ttl = 5000, .max_ttl = 300000, .max_stale = 60000,
};

/* An entry that has never been resolved. */
static struct tg_host_entry *
new_entry(void)
{
	struct tg_host_entry *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	TAILQ_INIT(&e->waits);
	return e;
}

/* Answer a query with these IPv4 and IPv6 addresses (NULL-terminated
 * lists, either NULL for no record of that family) and one TTL. */
static enum tg_host_change
answer(struct tg_host_entry *e, uint64_t now, const char *const *v4,
       const char *const *v6, int ttl)
{
	struct in_addr a[4];
	struct in6_addr a6[4];
	int n4 = 0, n6 = 0;

	for (; v4 != NULL && v4[n4] != NULL; n4++)
		ck_assert_int_eq(inet_pton(AF_INET, v4[n4], &a[n4]), 1);
	for (; v6 != NULL && v6[n6] != NULL; n6++)
		ck_assert_int_eq(inet_pton(AF_INET6, v6[n6], &a6[n6]), 1);

	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET6, n6 ? DNS_ERR_NONE : DNS_ERR_NODATA, n6, ttl, a6);
	tg_host_query_half(e, AF_INET, n4 ? DNS_ERR_NONE : DNS_ERR_NODATA, n4, ttl, a);
	return tg_host_query_end(e, now, &bounds);
}

/* Fail a query: both halves with err. */
static enum tg_host_change
fail_query(struct tg_host_entry *e, uint64_t now, int err)
{
	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET, err, 0, 0, NULL);
	tg_host_query_half(e, AF_INET6, err, 0, 0, NULL);
	return tg_host_query_end(e, now, &bounds);
}

/* Pick an address and write it as "ip port". */
static const char *
pick(struct tg_host_entry *e, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN];
	int len = tg_host_pick(e, 8080, &ss, NULL);

	ck_assert_int_gt(len, 0);
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		ck_assert_int_eq(len, sizeof(*sin));
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s %d", ip, ntohs(sin->sin_port));
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		ck_assert_int_eq(len, sizeof(*sin6));
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s %d", ip, ntohs(sin6->sin6_port));
	}
	return buf;
}

START_TEST(new_entry_waits_for_one_query)
{
	struct tg_host_entry *e = new_entry();

	ck_assert_int_eq(tg_host_use_at(e, T0), TG_HOST_WAIT_AND_QUERY);
	tg_host_query_begin(e);
	ck_assert_int_eq(tg_host_use_at(e, T0), TG_HOST_WAIT);
	free(e);
}
END_TEST

START_TEST(answer_kept_for_its_ttl)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", NULL};

	ck_assert_int_eq(answer(e, T0, v4, NULL, 30), TG_HOST_SAME);
	ck_assert_int_eq(tg_host_use_at(e, T0), TG_HOST_USE);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 30 * S - 1), TG_HOST_USE);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 30 * S), TG_HOST_USE_AND_REFRESH);

	/* One refresh at a time: the old answer serves while it runs. */
	tg_host_query_begin(e);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 31 * S), TG_HOST_USE);
	free(e);
}
END_TEST

START_TEST(ttl_clamped_to_bounds)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", NULL};

	answer(e, T0, v4, NULL, 0);
	ck_assert_uint_eq(e->fresh_until_ns, T0 + 5 * S);
	answer(e, T0, v4, NULL, 86400);
	ck_assert_uint_eq(e->fresh_until_ns, T0 + 300 * S);
	free(e);
}
END_TEST

START_TEST(lowest_ttl_of_the_halves)
{
	struct tg_host_entry *e = new_entry();
	struct in_addr a;
	struct in6_addr a6;

	inet_pton(AF_INET, "192.0.2.1", &a);
	inet_pton(AF_INET6, "2001:db8::1", &a6);
	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET, DNS_ERR_NONE, 1, 120, &a);
	tg_host_query_half(e, AF_INET6, DNS_ERR_NONE, 1, 60, &a6);
	tg_host_query_end(e, T0, &bounds);
	ck_assert_uint_eq(e->fresh_until_ns, T0 + 60 * S);
	free(e);
}
END_TEST

START_TEST(failed_refresh_keeps_answer_until_max_stale)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", NULL};
	char buf[64];

	answer(e, T0, v4, NULL, 10);
	ck_assert_int_eq(fail_query(e, T0 + 10 * S, DNS_ERR_SERVERFAILED), TG_HOST_STARTS_FAILING);
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "192.0.2.1 8080");

	/* Asked again after min_ttl, not at each connect. */
	ck_assert_int_eq(tg_host_use_at(e, T0 + 14 * S), TG_HOST_USE);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 15 * S), TG_HOST_USE_AND_REFRESH);
	ck_assert_int_eq(fail_query(e, T0 + 15 * S, DNS_ERR_TIMEOUT), TG_HOST_SAME);

	/* The answer expired at T0 + 10 s and serves 60 s more. */
	ck_assert_int_eq(tg_host_use_at(e, T0 + 70 * S - 1), TG_HOST_USE_AND_REFRESH);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 70 * S), TG_HOST_WAIT_AND_QUERY);

	ck_assert_int_eq(answer(e, T0 + 71 * S, v4, NULL, 10), TG_HOST_RECOVERS);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 71 * S), TG_HOST_USE);
	free(e);
}
END_TEST

START_TEST(failure_without_answer)
{
	struct tg_host_entry *e = new_entry();

	ck_assert_int_eq(fail_query(e, T0, DNS_ERR_NOTEXIST), TG_HOST_STARTS_FAILING);
	ck_assert_int_eq(e->new_error, DNS_ERR_NOTEXIST);
	ck_assert_int_eq(tg_host_use_at(e, T0), TG_HOST_WAIT_AND_QUERY);
	ck_assert_int_eq(fail_query(e, T0, DNS_ERR_NOTEXIST), TG_HOST_SAME);
	free(e);
}
END_TEST

START_TEST(failure_cached_for_negative_ttl)
{
	struct tg_resolver_config negative = bounds;
	struct tg_host_entry *e = new_entry();

	negative.negative_ttl = 2000;
	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET, DNS_ERR_NOTEXIST, 0, 0, NULL);
	tg_host_query_half(e, AF_INET6, DNS_ERR_NOTEXIST, 0, 0, NULL);
	ck_assert_int_eq(tg_host_query_end(e, T0, &negative), TG_HOST_STARTS_FAILING);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 1 * S), TG_HOST_FAIL);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 2 * S), TG_HOST_WAIT_AND_QUERY);

	/* The time of the answer's SOA record, when shorter, is kept instead. */
	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET, DNS_ERR_NOTEXIST, 0, 1, NULL);
	tg_host_query_half(e, AF_INET6, DNS_ERR_NOTEXIST, 0, 60, NULL);
	tg_host_query_end(e, T0 + 2 * S, &negative);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 2 * S), TG_HOST_FAIL);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 3 * S), TG_HOST_WAIT_AND_QUERY);

	/* A name with stale addresses keeps serving them instead. */
	e->failed_until_ns = 0;
	answer(e, T0, (const char *const[]){"192.0.2.1", NULL}, NULL, 30);
	fail_query(e, T0 + 31 * S, DNS_ERR_NOTEXIST);
	ck_assert_int_eq(tg_host_use_at(e, T0 + 32 * S), TG_HOST_USE);
	free(e);
}
END_TEST

START_TEST(stale_past_the_answers_ttl)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", NULL};

	ck_assert_int_eq(tg_host_is_stale(e, T0), 0);
	answer(e, T0, v4, NULL, 30);
	ck_assert_int_eq(tg_host_is_stale(e, T0 + 29 * S), 0);
	ck_assert_int_eq(tg_host_is_stale(e, T0 + 30 * S), 1);

	/* A failed refresh moves the next query, not the answer's expiry. */
	fail_query(e, T0 + 30 * S, DNS_ERR_SERVERFAILED);
	ck_assert_int_eq(tg_host_is_stale(e, T0 + 31 * S), 1);
	answer(e, T0 + 40 * S, v4, NULL, 30);
	ck_assert_int_eq(tg_host_is_stale(e, T0 + 41 * S), 0);
	free(e);
}
END_TEST

START_TEST(no_records_is_a_failure)
{
	struct tg_host_entry *e = new_entry();

	ck_assert_int_eq(answer(e, T0, NULL, NULL, 30), TG_HOST_STARTS_FAILING);
	ck_assert_int_eq(e->new_error, DNS_ERR_NODATA);
	ck_assert_uint_eq(e->n_addrs, 0);
	free(e);
}
END_TEST

START_TEST(a_records_in_turn_aaaa_unused)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", "192.0.2.2", NULL};
	const char *const v6[] = {"2001:db8::1", NULL};
	char buf[64];

	answer(e, T0, v4, v6, 30);
	ck_assert_uint_eq(e->n_addrs, 3);
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "192.0.2.1 8080");
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "192.0.2.2 8080");
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "192.0.2.1 8080");
	free(e);
}
END_TEST

START_TEST(aaaa_when_no_a_record)
{
	struct tg_host_entry *e = new_entry();
	const char *const v6[] = {"2001:db8::1", "2001:db8::2", NULL};
	char buf[64];

	answer(e, T0, NULL, v6, 30);
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "2001:db8::1 8080");
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "2001:db8::2 8080");
	free(e);
}
END_TEST

START_TEST(half_failure_keeps_the_other_half)
{
	struct tg_host_entry *e = new_entry();
	struct in6_addr a6;
	char buf[64];

	inet_pton(AF_INET6, "2001:db8::1", &a6);
	tg_host_query_begin(e);
	tg_host_query_half(e, AF_INET, DNS_ERR_TIMEOUT, 0, 0, NULL);
	tg_host_query_half(e, AF_INET6, DNS_ERR_NONE, 1, 30, &a6);
	ck_assert_int_eq(tg_host_query_end(e, T0, &bounds), TG_HOST_SAME);
	ck_assert_str_eq(pick(e, buf, sizeof(buf)), "2001:db8::1 8080");
	free(e);
}
END_TEST

/* Write the fallback address after `tries` failures as "ip", or "none". */
static const char *
fallback(const struct tg_host_entry *e, unsigned first, unsigned tries, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	int len = tg_host_fallback(e, first, tries, 8080, &ss);
	const void *addr = ss.ss_family == AF_INET
	                 ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
	                 : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;

	if (len == 0)
		return "none";
	inet_ntop(ss.ss_family, addr, buf, (socklen_t)size);
	return buf;
}

START_TEST(fallback_other_a_then_aaaa)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", NULL};
	const char *const v6[] = {"2001:db8::1", NULL};
	char buf[64];

	answer(e, T0, v4, v6, 30);
	ck_assert_str_eq(fallback(e, 1, 1, buf, sizeof(buf)), "192.0.2.3");
	ck_assert_str_eq(fallback(e, 1, 2, buf, sizeof(buf)), "192.0.2.1");
	ck_assert_str_eq(fallback(e, 1, 3, buf, sizeof(buf)), "2001:db8::1");
	ck_assert_str_eq(fallback(e, 1, 4, buf, sizeof(buf)), "none");
	free(e);
}
END_TEST

START_TEST(fallback_after_shorter_refresh)
{
	struct tg_host_entry *e = new_entry();
	const char *const two[] = {"192.0.2.1", "192.0.2.2", NULL};
	const char *const one[] = {"192.0.2.9", NULL};
	char buf[64];

	answer(e, T0, two, NULL, 30);
	answer(e, T0 + 30 * S, one, NULL, 30);
	ck_assert_str_eq(fallback(e, 1, 1, buf, sizeof(buf)), "none");
	ck_assert_str_eq(fallback(e, 0, 1, buf, sizeof(buf)), "none");
	free(e);
}
END_TEST

START_TEST(time_shared_within_a_family)
{
	struct tg_host_entry *e = new_entry();
	const char *const v4[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", NULL};
	const char *const v6[] = {"2001:db8::1", "2001:db8::2", NULL};

	/* The A addresses share the time first. The AAAA ones share what the
	 * A addresses left when they failed at once. */
	answer(e, T0, v4, v6, 30);
	ck_assert_uint_eq(tg_host_left_in_family(e, 0), 3);
	ck_assert_uint_eq(tg_host_left_in_family(e, 2), 1);
	ck_assert_uint_eq(tg_host_left_in_family(e, 3), 2);
	ck_assert_uint_eq(tg_host_left_in_family(e, 4), 1);
	ck_assert_uint_eq(tg_host_left_in_family(e, 5), 0);
	free(e);
}
END_TEST

static Suite *
resolve_suite(void)
{
	Suite *s = suite_create("resolve");
	TCase *ttl = tcase_create("ttl");
	TCase *order = tcase_create("order");

	tcase_add_test(ttl, new_entry_waits_for_one_query);
	tcase_add_test(ttl, answer_kept_for_its_ttl);
	tcase_add_test(ttl, ttl_clamped_to_bounds);
	tcase_add_test(ttl, lowest_ttl_of_the_halves);
	tcase_add_test(ttl, failed_refresh_keeps_answer_until_max_stale);
	tcase_add_test(ttl, failure_without_answer);
	tcase_add_test(ttl, no_records_is_a_failure);
	tcase_add_test(ttl, failure_cached_for_negative_ttl);
	tcase_add_test(ttl, stale_past_the_answers_ttl);
	suite_add_tcase(s, ttl);
	tcase_add_test(order, a_records_in_turn_aaaa_unused);
	tcase_add_test(order, aaaa_when_no_a_record);
	tcase_add_test(order, half_failure_keeps_the_other_half);
	tcase_add_test(order, fallback_other_a_then_aaaa);
	tcase_add_test(order, fallback_after_shorter_refresh);
	tcase_add_test(order, time_shared_within_a_family);
	suite_add_tcase(s, order);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(resolve_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
