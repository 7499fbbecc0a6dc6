/*
 * Unit tests for the error-log writer (src/log.c): the timestamps it and
 * the access log put on every line.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>

/* The source file rather than its header, so that the tests can pass the
 * time and the cache to the formatter. */
#include "log.c"

/* The stamp as it was formatted before the cache: gmtime_r(), strftime()
 * and snprintf() for every call. */
static void
reference_timestamp(const struct timespec *now, char *buf, size_t size)
{
	struct tm tm;
	char date[32];

	gmtime_r(&now->tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ", date, now->tv_nsec / 1000000);
}

/* Seconds since the epoch of a UTC date and time. */
static time_t
utc(int year, int month, int day, int hour, int minute, int second)
{
	struct tm tm = {
		.tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day,
		.tm_hour = hour, .tm_min = minute, .tm_sec = second,
	};

	return timegm(&tm);
}

/* Format now with cache and compare the stamp with the reference one. */
static void
assert_stamp(struct stamp_cache *cache, time_t second, long nsec)
{
	struct timespec now = {.tv_sec = second, .tv_nsec = nsec};
	char expected[64];
	char stamp[64];

	reference_timestamp(&now, expected, sizeof(expected));
	format_timestamp(cache, &now, stamp, sizeof(stamp));
	ck_assert_str_eq(stamp, expected);
}

START_TEST(stamp_format_exact)
{
	struct stamp_cache cache = {0};
	char stamp[32];
	struct timespec now = {.tv_sec = utc(2026, 12, 4, 19, 43, 57), .tv_nsec = 123456789};

	format_timestamp(&cache, &now, stamp, sizeof(stamp));
	ck_assert_str_eq(stamp, "2026-12-04T19:43:57.123Z");
	ck_assert_uint_eq(strlen(stamp) + 1, 25);
}
END_TEST

START_TEST(stamps_across_boundaries)
{
	/* The last second before each boundary: of a minute, hour, day,
	 * month (also February in leap and common years, and in the century
	 * years 2000 and 2100), year, and the 32-bit time_t limit. */
	const time_t last_seconds[] = {
		0, utc(2026, 12, 4, 19, 43, 59), utc(2026, 12, 4, 19, 59, 59),
		utc(2026, 12, 4, 23, 59, 59), utc(2026, 11, 30, 23, 59, 59),
		utc(2024, 2, 28, 23, 59, 59), utc(2024, 2, 29, 23, 59, 59),
		utc(2023, 2, 28, 23, 59, 59), utc(2000, 2, 28, 23, 59, 59),
		utc(2100, 2, 28, 23, 59, 59), utc(2026, 12, 31, 23, 59, 59),
		utc(1999, 12, 31, 23, 59, 59), utc(2038, 1, 19, 3, 14, 7),
	};
	const long nsecs[] = {0, 999999, 1000000, 499999999, 998999999, 999000000, 999999999};

	for (size_t i = 0; i < sizeof(last_seconds) / sizeof(last_seconds[0]); i++) {
		struct stamp_cache cache = {0};
		time_t second = last_seconds[i];

		/* Forward over the boundary, within the second after it, and
		 * back, as a wall clock set back would go. */
		for (size_t j = 0; j < sizeof(nsecs) / sizeof(nsecs[0]); j++)
			assert_stamp(&cache, second, nsecs[j]);
		for (size_t j = 0; j < sizeof(nsecs) / sizeof(nsecs[0]); j++)
			assert_stamp(&cache, second + 1, nsecs[j]);
		assert_stamp(&cache, second, 999999999);
		assert_stamp(&cache, second + 1, 0);
		assert_stamp(&cache, second + 2, 0);
	}
}
END_TEST

START_TEST(stamps_on_random_walk)
{
	struct stamp_cache cache = {0};
	time_t second = utc(2026, 12, 31, 23, 0, 0);
	unsigned seed = 1;

	/* Steps of 0 to 3 seconds, now and then a day back or forward, so
	 * that the cache meets every kind of change many times. */
	for (int i = 0; i < 20000; i++) {
		long nsec = (long)(rand_r(&seed) % 1000000000);
		int step = rand_r(&seed) % 100;

		if (step == 0)
			second -= 86400;
		else if (step == 1)
			second += 86400;
		else
			second += step % 4;
		assert_stamp(&cache, second, nsec);
	}
}
END_TEST

START_TEST(stamp_cut_to_buffer)
{
	struct stamp_cache cache = {0};
	struct timespec now = {.tv_sec = utc(2026, 12, 4, 19, 43, 57), .tv_nsec = 7000000};
	char stamp[32];

	memset(stamp, 'x', sizeof(stamp));
	format_timestamp(&cache, &now, stamp, 0);
	ck_assert_int_eq(stamp[0], 'x');

	format_timestamp(&cache, &now, stamp, 1);
	ck_assert_str_eq(stamp, "");
	format_timestamp(&cache, &now, stamp, 11);
	ck_assert_str_eq(stamp, "2026-12-04");
	format_timestamp(&cache, &now, stamp, 24);
	ck_assert_str_eq(stamp, "2026-12-04T19:43:57.007");
	format_timestamp(&cache, &now, stamp, 25);
	ck_assert_str_eq(stamp, "2026-12-04T19:43:57.007Z");
}
END_TEST

START_TEST(stamps_in_one_second_reuse_date)
{
	struct stamp_cache cache = {0};
	struct timespec now = {.tv_sec = utc(2026, 12, 4, 19, 43, 57), .tv_nsec = 0};
	char stamp[32];

	format_timestamp(&cache, &now, stamp, sizeof(stamp));
	ck_assert_str_eq(stamp, "2026-12-04T19:43:57.000Z");

	/* A marked cache shows whether the next stamp formats the date again. */
	memcpy(cache.text, "2026-12-04T19:43:5x", cache.len);
	now.tv_nsec = 250000000;
	format_timestamp(&cache, &now, stamp, sizeof(stamp));
	ck_assert_str_eq(stamp, "2026-12-04T19:43:5x.250Z");

	now.tv_sec++;
	format_timestamp(&cache, &now, stamp, sizeof(stamp));
	ck_assert_str_eq(stamp, "2026-12-04T19:43:58.250Z");
}
END_TEST

START_TEST(stamp_of_current_time)
{
	struct timespec before, after;
	char stamp[32];
	char low[64], high[64];

	clock_gettime(CLOCK_REALTIME, &before);
	tg_log_timestamp(stamp, sizeof(stamp));
	clock_gettime(CLOCK_REALTIME, &after);

	reference_timestamp(&before, low, sizeof(low));
	reference_timestamp(&after, high, sizeof(high));
	ck_assert_uint_eq(strlen(stamp), 24);
	ck_assert_str_le(low, stamp);
	ck_assert_str_ge(high, stamp);
}
END_TEST

/* libevent's own warnings (here evdns's, for a nameserver that is no IP
 * address) come out as lines of this log, not libevent's "[warn] ...". */
START_TEST(libevent_messages_reach_log)
{
	char path[] = "/tmp/check_log_XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(STDERR_FILENO);
	struct event_base *base = event_base_new();
	struct evdns_base *dns = evdns_base_new(base, 0);
	char text[1024] = {0};

	ck_assert_int_ge(fd, 0);
	tg_log_capture_libevent();
	dup2(fd, STDERR_FILENO);
	evdns_base_nameserver_ip_add(dns, "300.1.1.1");
	dup2(saved, STDERR_FILENO);
	ck_assert_int_gt(pread(fd, text, sizeof(text) - 1, 0), 0);

	ck_assert_msg(strstr(text, "Z [warn] libevent: ") != NULL, "logged: %s", text);
	ck_assert_msg(strstr(text, "300.1.1.1") != NULL, "logged: %s", text);
	evdns_base_free(dns, 0);
	event_base_free(base);
	close(fd);
	close(saved);
	unlink(path);
}
END_TEST

/* The interval is an hour, so the second and third calls fall inside it
 * however slow the machine. */
START_TEST(limit_lets_one_line_per_interval)
{
	struct tg_log_limit limit = {0};
	uint64_t skipped = 99;

	ck_assert_int_eq(tg_log_limit_take(&limit, 3600000, &skipped), 1);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_int_eq(tg_log_limit_take(&limit, 3600000, &skipped), 0);
	ck_assert_int_eq(tg_log_limit_take(&limit, 3600000, &skipped), 0);

	/* An interval of 0 has passed at once: the line counts the two. */
	ck_assert_int_eq(tg_log_limit_take(&limit, 0, &skipped), 1);
	ck_assert_uint_eq(skipped, 2);
}
END_TEST

START_TEST(burst_lets_max_lines_a_second)
{
	struct tg_log_burst burst = {0};
	uint64_t skipped = 99;

	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 5000, &skipped), 1);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 5999, &skipped), 1);
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 5999, &skipped), 0);
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 5999, &skipped), 0);

	/* The next second lets two more through; the first counts the two
	 * left out. */
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 6000, &skipped), 1);
	ck_assert_uint_eq(skipped, 2);
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 6001, &skipped), 1);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_int_eq(tg_log_burst_take(&burst, 2, 6002, &skipped), 0);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *stamps = tcase_create("timestamp");
	TCase *libevent = tcase_create("libevent");
	TCase *limits = tcase_create("limits");

	tcase_add_test(stamps, stamp_format_exact);
	tcase_add_test(stamps, stamps_across_boundaries);
	tcase_add_test(stamps, stamps_on_random_walk);
	tcase_add_test(stamps, stamp_cut_to_buffer);
	tcase_add_test(stamps, stamps_in_one_second_reuse_date);
	tcase_add_test(stamps, stamp_of_current_time);
	suite_add_tcase(s, stamps);
	tcase_add_test(libevent, libevent_messages_reach_log);
	suite_add_tcase(s, libevent);
	tcase_add_test(limits, limit_lets_one_line_per_interval);
	tcase_add_test(limits, burst_lets_max_lines_a_second);
	suite_add_tcase(s, limits);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(log_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
