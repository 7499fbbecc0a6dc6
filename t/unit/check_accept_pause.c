/*
 * Unit tests for pausing listeners after accept() fails
 * (src/accept-pause.c): which errors pause, when a failure is logged, and
 * a real loopback listener that stops and starts accepting, after an error
 * or at a connection limit.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The source file rather than its header, so that the tests can pass the
 * time to note_failure() and fire the resume timer by hand. */
#include "accept-pause.c"

#define MS TG_NS_PER_MS

START_TEST(resource_errors_pause)
{
	static const int errors[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM, EBADF, EINVAL};

	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		ck_assert_msg(tg_accept_error_pauses(errors[i]), "%s does not pause",
		              strerror(errors[i]));
}
END_TEST

START_TEST(connection_errors_keep_accepting)
{
	static const int errors[] = {ECONNABORTED, EPERM, EPROTO, ENOPROTOOPT, EOPNOTSUPP,
	                             ENETDOWN, ENETUNREACH, EHOSTDOWN, EHOSTUNREACH};

	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		ck_assert_msg(!tg_accept_error_pauses(errors[i]), "%s pauses",
		              strerror(errors[i]));
}
END_TEST

/* Times are offsets from a start far from 0, as tg_now_ns() returns. */
#define T0 (1000 * TG_NS_PER_S)

START_TEST(first_failure_logged)
{
	struct tg_accept_pause p = {0};
	uint64_t unlogged = 99;

	ck_assert_int_eq(note_burst(&p.failures, T0, &unlogged), 1);
	ck_assert_uint_eq(unlogged, 0);
}
END_TEST

START_TEST(burst_logged_once_per_interval)
{
	struct tg_accept_pause p = {0};
	uint64_t unlogged = 0;
	uint64_t t = T0;
	int lines = 0;

	/* One failure per pause for 25 s: lines at 0, 10 and 20 s. */
	for (int i = 0; i < 250; i++, t += TG_ACCEPT_PAUSE_MS * MS) {
		if (!note_burst(&p.failures, t, &unlogged))
			continue;
		lines++;
		if (lines == 1)
			ck_assert_uint_eq(unlogged, 0);
		else
			ck_assert_uint_eq(unlogged, TG_ACCEPT_LOG_INTERVAL_MS / TG_ACCEPT_PAUSE_MS - 1);
	}
	ck_assert_int_eq(lines, 3);
	ck_assert_uint_eq(p.failures.unlogged, 250 - 1 - 2 * (TG_ACCEPT_LOG_INTERVAL_MS / TG_ACCEPT_PAUSE_MS));
}
END_TEST

START_TEST(new_burst_logged_at_once)
{
	struct tg_accept_pause p = {0};
	uint64_t unlogged = 0;
	uint64_t t = T0;

	ck_assert_int_eq(note_burst(&p.failures, t, &unlogged), 1);
	t += TG_ACCEPT_PAUSE_MS * MS;
	ck_assert_int_eq(note_burst(&p.failures, t, &unlogged), 0);
	t += TG_ACCEPT_PAUSE_MS * MS;
	ck_assert_int_eq(note_burst(&p.failures, t, &unlogged), 0);

	/* Quiet for just under the gap: the same burst. */
	t += TG_ACCEPT_BURST_GAP_MS * MS - 1;
	ck_assert_int_eq(note_burst(&p.failures, t, &unlogged), 0);

	/* Quiet for the whole gap: a new burst, logged with the earlier count. */
	t += TG_ACCEPT_BURST_GAP_MS * MS;
	ck_assert_int_eq(note_burst(&p.failures, t, &unlogged), 1);
	ck_assert_uint_eq(unlogged, 3);
	ck_assert_uint_eq(p.failures.unlogged, 0);
}
END_TEST

/* --- a loopback listener ---------------------------------------------------- */

struct fixture {
	struct event_base *base;
	struct evconnlistener *listeners[2];    /* the second stays NULL */
	struct tg_accept_pause *pause;
	_Atomic uint64_t errors;
	struct tg_accept_limit limit;   /* max 0: no limit */
	int accepted;                   /* counted against the limit */
	int holding;                    /* 1: one accepted at the limit waits */
	int held;                       /* times one was held */
	int port;
};

/* Accept as the workers do: count the connection, or hold it at the limit.
 * The sockets are closed at once; only the counts matter here. */
static void
count_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
             int addrlen, void *arg)
{
	struct fixture *f = arg;

	(void)listener;
	(void)addr;
	(void)addrlen;
	close(fd);
	ck_assert_int_eq(f->holding, 0);
	if (tg_accept_pause_claim(f->pause)) {
		f->accepted++;
		return;
	}
	f->holding = 1;
	f->held++;
	tg_accept_pause_hold(f->pause);
}

/* The room callback: start the held connection if the limit has room. */
static int
start_held(void *arg)
{
	struct fixture *f = arg;

	if (!tg_accept_pause_claim(f->pause))
		return 0;
	f->holding = 0;
	f->accepted++;
	return 1;
}

static void
fixture_init_limited(struct fixture *f, size_t max)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	ck_assert_ptr_nonnull(f->base);
	f->listeners[0] = evconnlistener_new_bind(f->base, count_accept, f, LEV_OPT_CLOSE_ON_FREE,
	                                          16, (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(f->listeners[0]);
	ck_assert_int_eq(getsockname(evconnlistener_get_fd(f->listeners[0]),
	                             (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	f->limit.max = max;
	f->pause = tg_accept_pause_new(f->base, f->listeners, 2, "test listener", &f->errors,
	                               max > 0 ? &f->limit : NULL);
	ck_assert_ptr_nonnull(f->pause);
	tg_accept_pause_set_room_cb(f->pause, start_held, f);
}

static void
fixture_init(struct fixture *f)
{
	fixture_init_limited(f, 0);
}

static void
fixture_free(struct fixture *f)
{
	tg_accept_pause_free(f->pause);
	evconnlistener_free(f->listeners[0]);
	event_base_free(f->base);
}

/* Connect a client to the fixture's listener; the kernel completes the
 * connection into the listen queue whether or not it is accepted. */
static int
connect_client(const struct fixture *f)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* Run every event that is ready now, a few rounds, without waiting. */
static void
run_ready(struct fixture *f)
{
	for (int i = 0; i < 5; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static int
resume_pending(const struct fixture *f)
{
	return event_pending(f->pause->resume, EV_TIMEOUT, NULL) != 0;
}

START_TEST(resource_error_pauses_until_resume)
{
	struct fixture f;
	int client;

	fixture_init(&f);
	tg_accept_pause_error(f.pause, EMFILE);
	ck_assert_uint_eq(f.errors, 1);
	ck_assert(resume_pending(&f));

	client = connect_client(&f);
	run_ready(&f);
	ck_assert_int_eq(f.accepted, 0);

	/* Fire the resume now rather than wait TG_ACCEPT_PAUSE_MS. */
	event_del(f.pause->resume);
	resume_cb(-1, EV_TIMEOUT, f.pause);
	event_base_loop(f.base, EVLOOP_ONCE);
	ck_assert_int_eq(f.accepted, 1);

	close(client);
	fixture_free(&f);
}
END_TEST

START_TEST(connection_error_keeps_accepting)
{
	struct fixture f;
	int client;

	fixture_init(&f);
	tg_accept_pause_error(f.pause, EPROTO);
	ck_assert_uint_eq(f.errors, 1);
	ck_assert(!resume_pending(&f));

	client = connect_client(&f);
	event_base_loop(f.base, EVLOOP_ONCE);
	ck_assert_int_eq(f.accepted, 1);

	close(client);
	fixture_free(&f);
}
END_TEST

START_TEST(cancel_drops_resume)
{
	struct fixture f;

	fixture_init(&f);
	tg_accept_pause_error(f.pause, ENFILE);
	ck_assert(resume_pending(&f));
	tg_accept_pause_cancel(f.pause);
	ck_assert(!resume_pending(&f));
	tg_accept_pause_cancel(NULL);
	fixture_free(&f);
}
END_TEST

/* Two connections at most: the third is held unserved and accepting
 * stops, so the fourth waits in the listen queue. A close starts the held
 * one, and the fourth is then held in turn. */
START_TEST(limit_holds_one_until_close)
{
	struct fixture f;
	int clients[4];

	fixture_init_limited(&f, 2);
	for (int i = 0; i < 4; i++)
		clients[i] = connect_client(&f);
	run_ready(&f);
	ck_assert_int_eq(f.accepted, 2);
	ck_assert_int_eq(f.held, 1);
	ck_assert_uint_eq(f.limit.open, 2);
	ck_assert_uint_eq(f.limit.reached, 1);
	ck_assert(resume_pending(&f));

	tg_accept_pause_closed(f.pause);
	ck_assert_uint_eq(f.limit.open, 1);
	run_ready(&f);
	ck_assert_int_eq(f.accepted, 3);
	ck_assert_int_eq(f.held, 2);
	ck_assert_uint_eq(f.limit.open, 2);
	ck_assert_uint_eq(f.limit.reached, 2);
	ck_assert_uint_eq(f.errors, 0);

	for (int i = 0; i < 4; i++)
		close(clients[i]);
	fixture_free(&f);
}
END_TEST

/* Sets on other threads claim into one count: it stops at max. */
START_TEST(claim_stops_at_the_limit)
{
	struct fixture f;

	fixture_init_limited(&f, 2);
	ck_assert_int_eq(tg_accept_pause_claim(f.pause), 1);
	ck_assert_int_eq(tg_accept_pause_claim(f.pause), 1);
	ck_assert_int_eq(tg_accept_pause_claim(f.pause), 0);
	ck_assert_uint_eq(f.limit.open, 2);
	tg_accept_pause_closed(f.pause);
	ck_assert_int_eq(tg_accept_pause_claim(f.pause), 1);
	ck_assert_uint_eq(f.limit.open, 2);
	fixture_free(&f);
}
END_TEST

/* Run tg_accept_pause_hold() on p with stderr sent to a file, and
 * return what it logged (free() it). */
static char *
hold_logs(struct tg_accept_pause *p)
{
	FILE *out = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *text = calloc(1, 4096);

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(text);
	fflush(stderr);
	ck_assert_int_ge(dup2(fileno(out), STDERR_FILENO), 0);
	tg_accept_pause_hold(p);
	fflush(stderr);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);

	rewind(out);
	ck_assert_uint_gt(fread(text, 1, 4095, out), 0);
	fclose(out);
	return text;
}

START_TEST(limit_warning_names_the_limit)
{
	struct fixture f;
	char *logged;

	fixture_init_limited(&f, 2);
	atomic_store(&f.limit.open, 2);
	logged = hold_logs(f.pause);
	ck_assert_msg(strstr(logged, "at the connection limit of 2 (2 open)") != NULL,
	              "logged: %s", logged);
	free(logged);
	fixture_free(&f);
}
END_TEST

/* A connection open in another set keeps the held one waiting, and this
 * set paused, past the resume timer, until the count is below the limit. */
START_TEST(limit_of_other_sets_keeps_paused)
{
	struct fixture f;
	int clients[2];

	fixture_init_limited(&f, 1);
	atomic_store(&f.limit.open, 1);
	for (int i = 0; i < 2; i++)
		clients[i] = connect_client(&f);
	run_ready(&f);
	ck_assert_int_eq(f.held, 1);

	event_del(f.pause->resume);
	resume_cb(-1, EV_TIMEOUT, f.pause);
	run_ready(&f);
	ck_assert_int_eq(f.accepted, 0);
	ck_assert(resume_pending(&f));

	atomic_store(&f.limit.open, 0);
	event_del(f.pause->resume);
	resume_cb(-1, EV_TIMEOUT, f.pause);
	run_ready(&f);
	ck_assert_int_eq(f.accepted, 1);
	ck_assert_int_eq(f.held, 2);

	for (int i = 0; i < 2; i++)
		close(clients[i]);
	fixture_free(&f);
}
END_TEST

static Suite *
accept_pause_suite(void)
{
	Suite *s = suite_create("accept-pause");
	TCase *errors = tcase_create("errors");
	TCase *logging = tcase_create("logging");
	TCase *listener = tcase_create("listener");

	tcase_add_test(errors, resource_errors_pause);
	tcase_add_test(errors, connection_errors_keep_accepting);
	tcase_add_test(logging, first_failure_logged);
	tcase_add_test(logging, burst_logged_once_per_interval);
	tcase_add_test(logging, new_burst_logged_at_once);
	tcase_add_test(listener, resource_error_pauses_until_resume);
	tcase_add_test(listener, connection_error_keeps_accepting);
	tcase_add_test(listener, cancel_drops_resume);
	tcase_add_test(listener, limit_holds_one_until_close);
	tcase_add_test(listener, claim_stops_at_the_limit);
	tcase_add_test(listener, limit_of_other_sets_keeps_paused);
	tcase_add_test(listener, limit_warning_names_the_limit);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, logging);
	suite_add_tcase(s, listener);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(accept_pause_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
