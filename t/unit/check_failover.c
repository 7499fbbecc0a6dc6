/*
 * Unit tests for backend health, Retry-After parsing and the balancers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer.h"
#include "clock.h"
#include "config-t.h"
#include "health.h"

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

/* A route of one tier over n backends, each with fresh health state. */
struct fixture {
	struct tg_backend backends[4];
	struct tg_backend_state states[4];
	struct tg_health_policy policy;
	struct tg_tier_member members[4];
	struct tg_tier tier;
	struct tg_backend *flat[4];
	struct tg_route route;
};

static void
fixture_init(struct fixture *f, size_t n, enum tg_balance balance, const unsigned *weights)
{
	static const char *const names[] = {"a", "b", "c", "d"};

	memset(f, 0, sizeof(*f));
	f->policy.consecutive_failures = 3;
	f->policy.base_ejection = 1000;
	f->policy.max_ejection = 4000;
	f->policy.window = 10000;
	f->policy.min_requests = 1;
	for (size_t i = 0; i < n; i++) {
		f->backends[i].name = (char *)names[i];
		ck_assert_int_eq(tg_health_state_init(&f->states[i]), 0);
		f->backends[i].state = &f->states[i];
		f->backends[i].health = &f->policy;
		f->members[i].backend = &f->backends[i];
		f->members[i].weight = weights ? weights[i] : 1;
		f->tier.total_weight += f->members[i].weight;
		f->flat[i] = &f->backends[i];
	}
	f->tier.balance = balance;
	f->tier.n_members = n;
	f->tier.members = f->members;
	f->route.name = "r";
	f->route.n_tiers = 1;
	f->route.tiers = &f->tier;
	f->route.n_backends = n;
	f->route.backends = f->flat;
}

static int
never_tried(void *arg, const struct tg_backend *b)
{
	(void)arg;
	(void)b;
	return 0;
}

static int
tried_a(void *arg, const struct tg_backend *b)
{
	(void)arg;
	return strcmp(b->name, "a") == 0;
}

static int
tried_b(void *arg, const struct tg_backend *b)
{
	(void)arg;
	return strcmp(b->name, "b") == 0;
}

/* --- Retry-After ---------------------------------------------------------- */

static uint64_t
retry_after(const char *name, const char *value, const char *name2, const char *value2)
{
	struct tg_headers h;
	uint64_t ns;

	tg_headers_init(&h);
	if (name != NULL)
		tg_headers_add(&h, name, strlen(name), value, strlen(value));
	if (name2 != NULL)
		tg_headers_add(&h, name2, strlen(name2), value2, strlen(value2));
	ns = tg_health_retry_after(&h, 1000000000);
	tg_headers_free(&h);
	return ns;
}

START_TEST(retry_after_seconds)
{
	ck_assert_uint_eq(retry_after("Retry-After", "2", NULL, NULL), 2 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after", "0", NULL, NULL), 0);
	ck_assert_uint_eq(retry_after("Retry-After", "soon", NULL, NULL), 0);
	ck_assert_uint_eq(retry_after(NULL, NULL, NULL, NULL), 0);
}
END_TEST

START_TEST(retry_after_http_date)
{
	char date[64];
	time_t when = 1000000000 + 30;
	struct tm tm;

	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	ck_assert_uint_eq(retry_after("Retry-After", date, NULL, NULL), 30 * NS_PER_S);
}
END_TEST

/* retry-after-ms wins over Retry-After when it is valid, as OpenAI's SDKs
 * read them; an invalid one leaves Retry-After to decide. */
START_TEST(retry_after_ms_first)
{
	ck_assert_uint_eq(retry_after("retry-after-ms", "1500", "Retry-After", "2"),
	                  1500 * NS_PER_MS);
	ck_assert_uint_eq(retry_after("Retry-After", "1", "retry-after-ms", "30000"),
	                  30 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after-ms", " 20.5\t", NULL, NULL), 20500000ull);
	ck_assert_uint_eq(retry_after("retry-after-ms", "0", "Retry-After", "2"), 0);
	ck_assert_uint_eq(retry_after("retry-after-ms", "-1", "Retry-After", "2"), 2 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after-ms", "1e3", "Retry-After", "2"), 2 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after-ms", "5.", "Retry-After", "2"), 2 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after-ms", "", "Retry-After", "2"), 2 * NS_PER_S);
	ck_assert_uint_eq(retry_after("retry-after-ms", "99999999999999999999", NULL, NULL),
	                  3600 * NS_PER_S);
}
END_TEST

START_TEST(retry_after_capped)
{
	ck_assert_uint_eq(retry_after("Retry-After", "999999", NULL, NULL), 3600 * NS_PER_S);
}
END_TEST

/* Retry-After values and the cooldown each must give, at now = 10^9 s
 * (Sun, 09 Sep 2001 01:46:40 GMT). delay-seconds is one or more ASCII
 * digits (RFC 9110, section 10.2.3), and spaces and tabs around it are
 * ignored as around any field value. Any other value gives no cooldown. */
static const struct {
	const char *value;
	uint64_t seconds;
} retry_after_cases[] = {
	{ "2", 2 },
	{ "007", 7 },
	{ " 2", 2 },
	{ "2 ", 2 },
	{ "\t2\t", 2 },
	{ "-1", 0 },
	{ "-5", 0 },
	{ "+5", 0 },
	{ "\v2", 0 },
	{ "1e3", 0 },
	{ "5abc", 0 },
	{ "1.5", 0 },
	{ "0x10", 0 },
	{ "2 3", 0 },
	{ "", 0 },
	{ " ", 0 },
	{ "3600", 3600 },
	{ "3601", 3600 },
	{ "18446744074", 3600 },                /* times 10^9 overflows 64 bits */
	{ "99999999999999999999", 3600 },       /* overflows strtoull */
	{ "Sun, 09 Sep 2001 01:47:10 GMT", 30 },
	{ "Sun, 09 Sep 2001 01:47:10 GMT ", 30 },
	{ "Sun, 09 Sep 2001 01:46:10 GMT", 0 },  /* in the past */
	{ "Fri, 31 Dec 9999 23:59:59 GMT", 3600 },
	{ "Sun, 09 Sep 2001 01:47:10", 0 },
	/* The obsolete forms: RFC 850 with a two-digit year, and asctime. */
	{ "Sunday, 09-Sep-01 01:47:10 GMT", 30 },
	{ "Sunday, 09-Sep-01 01:46:10 GMT", 0 },
	{ "Sunday, 09-Sep-51 01:46:50 GMT", 3600 },     /* 2051: 50 years on */
	{ "Sunday, 09-Sep-52 01:46:50 GMT", 0 },        /* 1952, not 2052 */
	{ "Sunday, 09-Sep-01 01:47:10", 0 },
	{ "Sun Sep  9 01:47:10 2001", 30 },
	{ "Sun Sep 9 01:47:10 2001", 30 },
	{ "Sun Sep  9 01:47:10 2001 GMT", 0 },
	/* Dates that do not exist, which timegm() would carry over. */
	{ "Mon, 31 Sep 2001 01:47:10 GMT", 0 },         /* 1 Oct */
	{ "Sun, 09 Sep 2001 01:47:61 GMT", 0 },         /* 01:48:01 */
	{ "Sun, 31 Feb 2094 08:49:37 GMT", 0 },
	/* A leap second carries into the next minute. */
	{ "Sun, 09 Sep 2001 01:47:60 GMT", 80 },
};

START_TEST(retry_after_table)
{
	const char *value = retry_after_cases[_i].value;
	uint64_t expected = retry_after_cases[_i].seconds * NS_PER_S;
	uint64_t cooldown = retry_after("Retry-After", value, NULL, NULL);

	ck_assert_msg(cooldown == expected, "Retry-After \"%s\" gave %llu ns, expected %llu",
	              value, (unsigned long long)cooldown, (unsigned long long)expected);
}
END_TEST

START_TEST(ratelimit_reset_of_spent_limit)
{
	/* The requests limit is spent: its reset counts. */
	ck_assert_uint_eq(retry_after("x-ratelimit-remaining-requests", "0",
	                              "x-ratelimit-reset-requests", "1.5s"),
	                  1500000000ull);
	/* Tokens remain: their reset says nothing about this 429. */
	ck_assert_uint_eq(retry_after("x-ratelimit-remaining-tokens", "900",
	                              "x-ratelimit-reset-tokens", "6m0s"), 0);
	/* Without a remaining header, the reset is taken as given. */
	ck_assert_uint_eq(retry_after("x-ratelimit-reset-tokens", "20ms", NULL, NULL),
	                  20000000ull);
}
END_TEST

START_TEST(retry_after_longest_wins)
{
	ck_assert_uint_eq(retry_after("Retry-After", "1", "x-ratelimit-reset-requests", "3s"),
	                  3 * NS_PER_S);
}
END_TEST

START_TEST(go_durations)
{
	uint64_t ns;

	ck_assert_int_eq(tg_parse_go_duration("6m0s", &ns), 0);
	ck_assert_uint_eq(ns, 360 * NS_PER_S);
	ck_assert_int_eq(tg_parse_go_duration("1h2m3.5s", &ns), 0);
	ck_assert_uint_eq(ns, 3723500000000ull);
	ck_assert_int_eq(tg_parse_go_duration("20ms", &ns), 0);
	ck_assert_uint_eq(ns, 20000000ull);
	ck_assert_int_eq(tg_parse_go_duration("7us", &ns), 0);
	ck_assert_uint_eq(ns, 7000ull);
	ck_assert_int_eq(tg_parse_go_duration("", &ns), -1);
	ck_assert_int_eq(tg_parse_go_duration("5", &ns), -1);
	ck_assert_int_eq(tg_parse_go_duration("5 s", &ns), -1);
	ck_assert_int_eq(tg_parse_go_duration("-1s", &ns), -1);
	ck_assert_int_eq(tg_parse_go_duration("1d", &ns), -1);
}
END_TEST

/* --- health ------------------------------------------------------------------ */

START_TEST(cooldown_later_deadline_wins)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	tg_health_cooldown(&f.backends[0], 3 * NS_PER_S);
	tg_health_cooldown(&f.backends[0], 1 * NS_PER_S);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 2 * NS_PER_S, &trial), 0);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 3 * NS_PER_S, &trial), 1);
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, NULL, 2 * NS_PER_S), 3 * NS_PER_S);
}
END_TEST

START_TEST(cooldown_bounded_by_max_cooldown)
{
	struct fixture f;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	f.policy.max_cooldown = 60000;
	ck_assert_uint_eq(tg_health_cooldown_length(&f.backends[0], 3600 * NS_PER_S),
	                  60 * NS_PER_S);
	ck_assert_uint_eq(tg_health_cooldown_length(&f.backends[0], 2 * NS_PER_S),
	                  2 * NS_PER_S);

	/* 0 ignores what the response requests. */
	f.policy.max_cooldown = 0;
	ck_assert_uint_eq(tg_health_cooldown_length(&f.backends[0], 2 * NS_PER_S), 0);
}
END_TEST

static void
fail_once(struct fixture *f, int trial, uint64_t now)
{
	tg_health_attempt_start(&f->backends[0]);
	tg_health_attempt_end(&f->backends[0], TG_OUTCOME_FAILURE, trial, 1000, now);
}

START_TEST(ejected_after_consecutive_failures)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	fail_once(&f, 0, 10);
	fail_once(&f, 0, 20);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 30, &trial), 1);
	tg_health_attempt_start(&f.backends[0]);
	ck_assert_int_eq(tg_health_attempt_end(&f.backends[0], TG_OUTCOME_FAILURE, 0, 1000, 30),
	                 TG_HEALTH_EJECTED);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 31, &trial), 0);
	ck_assert_uint_eq(atomic_load(&f.states[0].in_flight), 0);
}
END_TEST

START_TEST(success_resets_failure_count)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	fail_once(&f, 0, 10);
	fail_once(&f, 0, 20);
	tg_health_attempt_start(&f.backends[0]);
	tg_health_attempt_end(&f.backends[0], TG_OUTCOME_SUCCESS, 0, 1000, 25);
	fail_once(&f, 0, 30);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 40, &trial), 1);
}
END_TEST

START_TEST(rate_limit_is_not_a_failure)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 10; i++) {
		tg_health_attempt_start(&f.backends[0]);
		tg_health_attempt_end(&f.backends[0], TG_OUTCOME_RATE_LIMITED, 0, 0, 10);
	}
	ck_assert_int_eq(tg_health_available(&f.backends[0], 20, &trial), 1);
}
END_TEST

START_TEST(half_open_admits_one_trial)
{
	struct fixture f;
	uint64_t after = 10 + NS_PER_S;         /* base_ejection is 1 s */
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 3; i++)
		fail_once(&f, 0, 10);
	ck_assert_int_eq(tg_health_available(&f.backends[0], after, &trial), 1);
	ck_assert_int_eq(trial, 1);
	ck_assert_int_eq(tg_health_available(&f.backends[0], after, &trial), 0);

	tg_health_attempt_start(&f.backends[0]);
	ck_assert_int_eq(tg_health_attempt_end(&f.backends[0], TG_OUTCOME_SUCCESS, 1, 1000, after),
	                 TG_HEALTH_RECOVERED);
	ck_assert_int_eq(tg_health_available(&f.backends[0], after, &trial), 1);
	ck_assert_int_eq(trial, 0);
}
END_TEST

START_TEST(failed_trial_doubles_ejection)
{
	struct fixture f;
	uint64_t first_end = 10 + NS_PER_S;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 3; i++)
		fail_once(&f, 0, 10);
	ck_assert_int_eq(tg_health_available(&f.backends[0], first_end, &trial), 1);
	fail_once(&f, 1, first_end);

	/* The second ejection lasts 2 s. */
	ck_assert_int_eq(tg_health_available(&f.backends[0], first_end + NS_PER_S + 1, &trial), 0);
	ck_assert_int_eq(tg_health_available(&f.backends[0], first_end + 2 * NS_PER_S, &trial), 1);
}
END_TEST

START_TEST(probe_success_ends_ejection)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 3; i++)
		fail_once(&f, 0, 10);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 20, &trial), 0);
	tg_health_probe_result(&f.backends[0], 1, 30);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 40, &trial), 1);
	ck_assert_int_eq(trial, 0);
}
END_TEST

START_TEST(error_ratio_ejects)
{
	struct fixture f;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	f.policy.consecutive_failures = 0;
	f.policy.error_ratio = 0.5;
	f.policy.min_requests = 4;
	for (int i = 0; i < 2; i++) {
		tg_health_attempt_start(&f.backends[0]);
		tg_health_attempt_end(&f.backends[0], TG_OUTCOME_SUCCESS, 0, 1000, 10);
		fail_once(&f, 0, 10);
	}
	/* 2 of 4 failed: not over 0.5 yet. */
	ck_assert_int_eq(tg_health_available(&f.backends[0], 20, &trial), 1);
	fail_once(&f, 0, 20);
	ck_assert_int_eq(tg_health_available(&f.backends[0], 30, &trial), 0);
}
END_TEST

/* --- balancers ------------------------------------------------------------------ */

START_TEST(round_robin_follows_weights)
{
	static const unsigned weights[] = {3, 1};
	struct fixture f;
	uint64_t rng = 42;
	unsigned count[2] = {0, 0};
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, weights);
	for (int i = 0; i < 1000; i++) {
		const struct tg_tier_member *m = tg_balancer_pick(&f.route, NULL, never_tried, NULL,
		                                                  &rng, 10, &trial);
		ck_assert_ptr_nonnull(m);
		count[m - f.members]++;
	}
	ck_assert_uint_eq(count[0], 750);
	ck_assert_uint_eq(count[1], 250);
}
END_TEST

/* Each request whose first attempt goes to b retries once: the first
 * attempts still take turns a, b, c. */
START_TEST(round_robin_retry_keeps_turns)
{
	static const char *const first[] = {"a", "b", "c"};
	struct fixture f;
	uint64_t rng = 42;
	int trial;

	fixture_init(&f, 3, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 9; i++) {
		const struct tg_tier_member *m = tg_balancer_pick(&f.route, NULL, never_tried, NULL,
		                                                  &rng, 10, &trial);

		ck_assert_str_eq(m->backend->name, first[i % 3]);
		if (strcmp(m->backend->name, "b") != 0)
			continue;
		m = tg_balancer_pick(&f.route, NULL, tried_b, NULL, &rng, 10, &trial);
		ck_assert_str_eq(m->backend->name, "c");
	}
}
END_TEST

START_TEST(never_picks_tried_backend)
{
	struct fixture f;
	uint64_t rng = 7;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 10; i++) {
		const struct tg_tier_member *m = tg_balancer_pick(&f.route, NULL, tried_a, NULL,
		                                                  &rng, 10, &trial);
		ck_assert_ptr_nonnull(m);
		ck_assert_str_eq(m->backend->name, "b");
	}
}
END_TEST

START_TEST(skips_cooling_backend)
{
	struct fixture f;
	uint64_t rng = 7;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	tg_health_cooldown(&f.backends[1], 100);
	for (int i = 0; i < 10; i++)
		ck_assert_str_eq(tg_balancer_pick(&f.route, NULL, never_tried, NULL, &rng, 10,
		                                  &trial)->backend->name, "a");
	/* Only a cooling backend left: nothing to pick, even in panic mode. */
	ck_assert_ptr_null(tg_balancer_pick(&f.route, NULL, tried_a, NULL, &rng, 10, &trial));
}
END_TEST

START_TEST(model_cooldown_spares_other_models)
{
	struct fixture f;
	uint64_t rng = 7;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	ck_assert_int_eq(tg_health_model_cooldown(&f.backends[1], "m1", 100, 10), 0);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[1], "m1", 10), 100);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[1], "m2", 10), 0);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[1], NULL, 10), 0);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[1], "m1", 100), 0);
	ck_assert_int_eq(tg_health_cooling_down(&f.backends[1], 10), 0);

	for (int i = 0; i < 10; i++)
		ck_assert_str_eq(tg_balancer_pick(&f.route, "m1", never_tried, NULL, &rng, 10,
		                                  &trial)->backend->name, "a");
	ck_assert_ptr_null(tg_balancer_pick(&f.route, "m1", tried_a, NULL, &rng, 10, &trial));
	ck_assert_str_eq(tg_balancer_pick(&f.route, "m2", tried_a, NULL, &rng, 10,
	                                  &trial)->backend->name, "b");
	ck_assert_str_eq(tg_balancer_pick(&f.route, NULL, tried_a, NULL, &rng, 10,
	                                  &trial)->backend->name, "b");
	ck_assert_str_eq(tg_balancer_pick(&f.route, "m1", tried_a, NULL, &rng, 100,
	                                  &trial)->backend->name, "b");
}
END_TEST

/* A member that renames the model cools down by the name it sends. */
START_TEST(model_cooldown_by_upstream_name)
{
	struct fixture f;
	uint64_t rng = 7;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	f.members[1].model = "upstream";
	tg_health_model_cooldown(&f.backends[1], "upstream", 100, 10);
	for (int i = 0; i < 10; i++)
		ck_assert_str_eq(tg_balancer_pick(&f.route, "client", never_tried, NULL, &rng, 10,
		                                  &trial)->backend->name, "a");
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, "client", 10), 100);
	tg_health_cooldown(&f.backends[0], 50);
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, "client", 10), 50);
}
END_TEST

START_TEST(model_cooldown_later_deadline_wins)
{
	struct fixture f;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	tg_health_model_cooldown(&f.backends[0], "m", 300, 10);
	tg_health_model_cooldown(&f.backends[0], "m", 200, 10);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], "m", 250), 300);

	/* A member comes back at the later end of its backend's cooldown and
	 * its model's; the route, at its earliest member. */
	tg_health_cooldown(&f.backends[0], 400);
	tg_health_model_cooldown(&f.backends[1], "m", 500, 10);
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, "m", 20), 400);
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, "other", 20), 400);
	ck_assert_uint_eq(tg_health_cooldown_end(&f.route, "m", 450), 500);
}
END_TEST

/* A reload that lowers max_cooldown shortens the cooldowns running, for
 * the backend and for each model: an operator lowers it to bring back a
 * backend that an upstream's Retry-After took out for an hour. */
START_TEST(reload_shortens_running_cooldowns)
{
	struct tg_health_registry reg = {0};
	struct tg_health_policy policy = {.max_cooldown = 3600000};
	struct tg_backend b = {.name = "a", .health = &policy};
	struct tg_config cfg = {.n_backends = 1, .backends = &b};
	uint64_t before = tg_now_ns(), after;

	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	tg_health_cooldown(&b, before + 3600 * NS_PER_S);
	tg_health_model_cooldown(&b, "m", before + 3600 * NS_PER_S, before);

	policy.max_cooldown = 1000;
	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	after = tg_now_ns();
	ck_assert_int_eq(tg_health_cooling_down(&b, before), 1);
	ck_assert_int_eq(tg_health_cooling_down(&b, after + NS_PER_S), 0);
	ck_assert_uint_gt(tg_health_model_cooldown_end(&b, "m", before), 0);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&b, "m", after + NS_PER_S), 0);

	/* 0 ignores the times that 429 and 503 responses request. */
	policy.max_cooldown = 0;
	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	after = tg_now_ns();
	ck_assert_int_eq(tg_health_cooling_down(&b, after), 0);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&b, "m", after), 0);
	tg_health_registry_free(&reg);
}
END_TEST

/* A reload that lowers max_ejection shortens an ejection running, and one
 * that drops the health policy ends it. */
START_TEST(reload_shortens_running_ejection)
{
	struct tg_health_registry reg = {0};
	struct tg_health_policy policy = {
		.consecutive_failures = 1, .base_ejection = 300000, .max_ejection = 300000,
	};
	struct tg_backend b = {.name = "a", .health = &policy};
	struct tg_config cfg = {.n_backends = 1, .backends = &b};
	uint64_t now, after;
	int trial;

	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	now = tg_now_ns();
	tg_health_attempt_start(&b);
	ck_assert_int_eq(tg_health_attempt_end(&b, TG_OUTCOME_FAILURE, 0, 1000, now),
	                 TG_HEALTH_EJECTED);
	ck_assert_int_eq(tg_health_available(&b, now + 60 * NS_PER_S, &trial), 0);

	policy.max_ejection = 1000;
	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	after = tg_now_ns() + NS_PER_S;
	ck_assert_int_eq(tg_health_available(&b, after, &trial), 1);
	ck_assert_int_eq(trial, 1);

	/* The trial fails: ejected again, then the policy goes. */
	tg_health_attempt_start(&b);
	ck_assert_int_eq(tg_health_attempt_end(&b, TG_OUTCOME_FAILURE, 1, 1000, after),
	                 TG_HEALTH_EJECTED);
	ck_assert_int_eq(tg_health_available(&b, after, &trial), 0);
	b.health = NULL;
	ck_assert_int_eq(tg_health_attach(&reg, &cfg), 0);
	ck_assert_int_eq(tg_health_available(&b, after, &trial), 1);
	ck_assert_int_eq(trial, 0);
	tg_health_registry_free(&reg);
}
END_TEST

/* A full table drops the cooldown that ends first; the rest stay. */
START_TEST(model_cooldown_table_full)
{
	struct fixture f;
	char name[16];

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < TG_MODEL_COOLDOWNS; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		ck_assert_int_eq(tg_health_model_cooldown(&f.backends[0], name, 1000 + i, 10), 0);
	}
	ck_assert_int_eq(tg_health_model_cooldown(&f.backends[0], "new", 5000, 10), 1);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], "new", 10), 5000);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], "m0", 10), 0);
	for (int i = 1; i < TG_MODEL_COOLDOWNS; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], name, 10), 1000 + i);
	}

	/* Once cooldowns run out, their slots are free again. */
	ck_assert_int_eq(tg_health_model_cooldown(&f.backends[0], "later", 9000, 2000), 0);
}
END_TEST

/* Names are compared by their first TG_MODEL_KEY_LEN - 1 bytes. */
START_TEST(model_cooldown_long_names)
{
	struct fixture f;
	char a[TG_MODEL_KEY_LEN + 8], b[TG_MODEL_KEY_LEN + 8], short_a[TG_MODEL_KEY_LEN];

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	memset(a, 'x', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[sizeof(b) - 2] = 'y';
	memcpy(short_a, a, TG_MODEL_KEY_LEN - 2);
	short_a[TG_MODEL_KEY_LEN - 2] = '\0';

	tg_health_model_cooldown(&f.backends[0], a, 100, 10);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], b, 10), 100);
	ck_assert_uint_eq(tg_health_model_cooldown_end(&f.backends[0], short_a, 10), 0);
}
END_TEST

START_TEST(panic_mode_uses_ejected)
{
	struct fixture f;
	uint64_t rng = 7;
	int trial;

	fixture_init(&f, 1, TG_BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 3; i++)
		fail_once(&f, 0, 10);
	ck_assert_ptr_nonnull(tg_balancer_pick(&f.route, NULL, never_tried, NULL, &rng, 20, &trial));
}
END_TEST

START_TEST(least_requests_prefers_idle)
{
	struct fixture f;
	uint64_t rng = 9;
	int trial;

	fixture_init(&f, 3, TG_BALANCE_LEAST_REQUESTS, NULL);
	tg_health_attempt_start(&f.backends[0]);
	tg_health_attempt_start(&f.backends[0]);
	tg_health_attempt_start(&f.backends[2]);
	for (int i = 0; i < 20; i++)
		ck_assert_str_eq(tg_balancer_pick(&f.route, NULL, never_tried, NULL, &rng, 10,
		                                  &trial)->backend->name, "b");
}
END_TEST

START_TEST(ewma_avoids_slow_member)
{
	struct fixture f;
	uint64_t rng = 11;
	unsigned fast = 0;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_EWMA, NULL);
	tg_health_attempt_start(&f.backends[0]);
	tg_health_attempt_end(&f.backends[0], TG_OUTCOME_SUCCESS, 0, 200000000, 10);
	tg_health_attempt_start(&f.backends[1]);
	tg_health_attempt_end(&f.backends[1], TG_OUTCOME_SUCCESS, 0, 2000000, 10);
	for (int i = 0; i < 100; i++)
		fast += strcmp(tg_balancer_pick(&f.route, NULL, never_tried, NULL, &rng, 20,
		                                &trial)->backend->name, "b") == 0;
	/* With two members, both are always compared: b wins every time. */
	ck_assert_uint_eq(fast, 100);
}
END_TEST

START_TEST(lower_tier_only_when_needed)
{
	struct fixture f;
	struct tg_tier tiers[2];
	uint64_t rng = 3;
	int trial;

	fixture_init(&f, 2, TG_BALANCE_ROUND_ROBIN, NULL);
	memset(tiers, 0, sizeof(tiers));
	tiers[0].members = &f.members[0];
	tiers[0].n_members = 1;
	tiers[0].total_weight = 1;
	tiers[1].members = &f.members[1];
	tiers[1].n_members = 1;
	tiers[1].total_weight = 1;
	f.route.tiers = tiers;
	f.route.n_tiers = 2;

	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(tg_balancer_pick(&f.route, NULL, never_tried, NULL, &rng, 10,
		                                  &trial)->backend->name, "a");
	ck_assert_str_eq(tg_balancer_pick(&f.route, NULL, tried_a, NULL, &rng, 10,
	                                  &trial)->backend->name, "b");
}
END_TEST

static Suite *
failover_suite(void)
{
	Suite *s = suite_create("failover");
	TCase *retry = tcase_create("retry_after");
	TCase *health = tcase_create("health");
	TCase *balance = tcase_create("balancer");

	tcase_add_test(retry, retry_after_seconds);
	tcase_add_test(retry, retry_after_http_date);
	tcase_add_test(retry, retry_after_capped);
	tcase_add_test(retry, retry_after_ms_first);
	tcase_add_loop_test(retry, retry_after_table, 0,
	                    sizeof(retry_after_cases) / sizeof(retry_after_cases[0]));
	tcase_add_test(retry, ratelimit_reset_of_spent_limit);
	tcase_add_test(retry, retry_after_longest_wins);
	tcase_add_test(retry, go_durations);
	tcase_add_test(health, cooldown_later_deadline_wins);
	tcase_add_test(health, cooldown_bounded_by_max_cooldown);
	tcase_add_test(health, ejected_after_consecutive_failures);
	tcase_add_test(health, success_resets_failure_count);
	tcase_add_test(health, rate_limit_is_not_a_failure);
	tcase_add_test(health, half_open_admits_one_trial);
	tcase_add_test(health, failed_trial_doubles_ejection);
	tcase_add_test(health, probe_success_ends_ejection);
	tcase_add_test(health, error_ratio_ejects);
	tcase_add_test(balance, round_robin_follows_weights);
	tcase_add_test(balance, round_robin_retry_keeps_turns);
	tcase_add_test(balance, never_picks_tried_backend);
	tcase_add_test(balance, skips_cooling_backend);
	tcase_add_test(balance, model_cooldown_spares_other_models);
	tcase_add_test(balance, model_cooldown_by_upstream_name);
	tcase_add_test(health, model_cooldown_later_deadline_wins);
	tcase_add_test(health, model_cooldown_table_full);
	tcase_add_test(health, reload_shortens_running_cooldowns);
	tcase_add_test(health, reload_shortens_running_ejection);
	tcase_add_test(health, model_cooldown_long_names);
	tcase_add_test(balance, panic_mode_uses_ejected);
	tcase_add_test(balance, least_requests_prefers_idle);
	tcase_add_test(balance, ewma_avoids_slow_member);
	tcase_add_test(balance, lower_tier_only_when_needed);
	suite_add_tcase(s, retry);
	suite_add_tcase(s, health);
	suite_add_tcase(s, balance);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(failover_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
