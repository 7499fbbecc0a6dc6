/*
 * Unit tests for the socket reader (src/socket-reader.c): a bufferevent
 * on one end of a socketpair, read by a reader on a real event base, with
 * the test writing, closing or resetting the other end.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* The source file rather than its header, for READ_SIZE. */
#include "socket-reader.c"

struct fixture {
	struct event_base *base;
	struct bufferevent *bev;
	struct tg_socket_reader *reader; /* on the heap, as in a connection, so
	                                    that valgrind sees a use after free */
	int peer;                       /* the other end of the socketpair */

	char data[4 * READ_SIZE];      /* what the read callback took */
	size_t data_len;
	int reads;                      /* read callback calls */
	size_t first_read_len;          /* input length at the first call */
	int events;                     /* event callback calls */
	short last_event;
	int last_errno;

	int pause_in_callback;          /* the read callback disables reading */
	int free_in_callback;           /* the callbacks free the connection */
};

/* Release the reader, then free the bufferevent (which closes its socket),
 * as the owners of connections do. */
static void
free_connection(struct fixture *f)
{
	tg_socket_reader_release(f->reader);
	free(f->reader);
	f->reader = NULL;
	bufferevent_free(f->bev);
	f->bev = NULL;
}

/* Take the whole input, as a parser would. */
static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct fixture *f = arg;
	struct evbuffer *input = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(input);

	if (f->reads++ == 0)
		f->first_read_len = len;
	ck_assert_uint_le(f->data_len + len, sizeof(f->data));
	evbuffer_remove(input, f->data + f->data_len, len);
	f->data_len += len;

	if (f->pause_in_callback)
		tg_socket_reader_disable(f->reader);
	if (f->free_in_callback)
		free_connection(f);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct fixture *f = arg;

	(void)bev;
	f->last_errno = errno;
	f->events++;
	f->last_event = what;
	if (f->free_in_callback)
		free_connection(f);
}

/* Set up the connection without its socket, as an upstream connection is
 * before it connects; fixture_attach() gives it one. */
static void
fixture_init_unconnected(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	ck_assert_ptr_nonnull(f->base);
	f->bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(f->bev);
	f->reader = malloc(sizeof(*f->reader));
	ck_assert_ptr_nonnull(f->reader);
	tg_socket_reader_init(f->reader, f->bev, 1);
	bufferevent_setcb(f->bev, read_cb, NULL, event_cb, f);
	f->peer = -1;
}

static void
fixture_attach(struct fixture *f)
{
	int fds[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	ck_assert_int_eq(evutil_make_socket_nonblocking(fds[0]), 0);
	ck_assert_int_eq(bufferevent_setfd(f->bev, fds[0]), 0);
	f->peer = fds[1];
}

/* A connected connection with reading enabled. */
static void
fixture_init(struct fixture *f)
{
	fixture_init_unconnected(f);
	fixture_attach(f);
	tg_socket_reader_enable(f->reader);
}

static void
fixture_free(struct fixture *f)
{
	if (f->bev != NULL)
		free_connection(f);
	if (f->peer >= 0)
		close(f->peer);
	event_base_free(f->base);
}

/* Run every event that is ready now, a few rounds, without waiting. */
static void
run_ready(struct fixture *f)
{
	for (int i = 0; i < 5; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static void
peer_send(struct fixture *f, const void *bytes, size_t len)
{
	ck_assert_int_eq(send(f->peer, bytes, len, 0), (ssize_t)len);
}

START_TEST(data_reaches_read_callback)
{
	struct fixture f;

	fixture_init(&f);
	peer_send(&f, "hello", 5);
	run_ready(&f);

	ck_assert_int_eq(f.reads, 1);
	ck_assert_uint_eq(f.data_len, 5);
	ck_assert_mem_eq(f.data, "hello", 5);
	ck_assert_int_eq(f.events, 0);
	fixture_free(&f);
}
END_TEST

/* Bytes that arrive while the input still contains unparsed ones are
 * appended behind them. */
START_TEST(data_appends_to_input)
{
	struct fixture f;
	struct evbuffer *input;

	fixture_init(&f);
	bufferevent_setcb(f.bev, NULL, NULL, event_cb, &f);
	input = bufferevent_get_input(f.bev);
	peer_send(&f, "abc", 3);
	run_ready(&f);
	peer_send(&f, "def", 3);
	run_ready(&f);

	ck_assert_uint_eq(evbuffer_get_length(input), 6);
	ck_assert_mem_eq(evbuffer_pullup(input, 6), "abcdef", 6);
	fixture_free(&f);
}
END_TEST

/* The socket bufferevent keeps the end of its input frozen outside its
 * reads; the reader must leave it so. */
START_TEST(input_end_stays_frozen)
{
	struct fixture f;

	fixture_init(&f);
	peer_send(&f, "x", 1);
	run_ready(&f);

	ck_assert_int_eq(f.reads, 1);
	ck_assert_int_eq(evbuffer_add(bufferevent_get_input(f.bev), "y", 1), -1);
	fixture_free(&f);
}
END_TEST

/* One read takes READ_SIZE bytes when that many are waiting. */
START_TEST(read_takes_read_size)
{
	struct fixture f;
	static char bulk[3 * READ_SIZE];

	memset(bulk, 'b', sizeof(bulk));
	fixture_init(&f);
	peer_send(&f, bulk, sizeof(bulk));
	run_ready(&f);

	ck_assert_uint_eq(f.first_read_len, READ_SIZE);
	ck_assert_uint_eq(f.data_len, sizeof(bulk));
	ck_assert_mem_eq(f.data, bulk, sizeof(bulk));
	fixture_free(&f);
}
END_TEST

START_TEST(eof_after_data)
{
	struct fixture f;

	fixture_init(&f);
	peer_send(&f, "last", 4);
	ck_assert_int_eq(shutdown(f.peer, SHUT_WR), 0);
	run_ready(&f);

	ck_assert_int_eq(f.reads, 1);
	ck_assert_mem_eq(f.data, "last", 4);
	ck_assert_int_eq(f.events, 1);
	ck_assert_int_eq(f.last_event, BEV_EVENT_READING | BEV_EVENT_EOF);
	fixture_free(&f);
}
END_TEST

/* After EOF reading is disabled, so the EOF is reported once, and an
 * enable reads (and reports) it again. */
START_TEST(eof_disables_reading)
{
	struct fixture f;

	fixture_init(&f);
	close(f.peer);
	f.peer = -1;
	run_ready(&f);
	ck_assert_int_eq(f.events, 1);
	ck_assert(!event_pending(f.reader->event, EV_READ, NULL));

	tg_socket_reader_enable(f.reader);
	run_ready(&f);
	ck_assert_int_eq(f.events, 2);
	ck_assert_int_eq(f.last_event, BEV_EVENT_READING | BEV_EVENT_EOF);
	fixture_free(&f);
}
END_TEST

/* An AF_UNIX peer that closes with bytes unread resets the connection. */
START_TEST(error_with_errno)
{
	struct fixture f;

	fixture_init(&f);
	ck_assert_int_eq(send(bufferevent_getfd(f.bev), "unread", 6, 0), 6);
	close(f.peer);
	f.peer = -1;
	run_ready(&f);

	ck_assert_int_eq(f.reads, 0);
	ck_assert_int_eq(f.events, 1);
	ck_assert_int_eq(f.last_event, BEV_EVENT_READING | BEV_EVENT_ERROR);
	ck_assert_int_eq(f.last_errno, ECONNRESET);
	ck_assert(!event_pending(f.reader->event, EV_READ, NULL));
	fixture_free(&f);
}
END_TEST

START_TEST(disabled_reader_reads_nothing)
{
	struct fixture f;

	fixture_init(&f);
	tg_socket_reader_disable(f.reader);
	peer_send(&f, "wait", 4);
	close(f.peer);
	f.peer = -1;
	run_ready(&f);
	ck_assert_int_eq(f.reads, 0);
	ck_assert_int_eq(f.events, 0);

	tg_socket_reader_enable(f.reader);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 1);
	ck_assert_mem_eq(f.data, "wait", 4);
	ck_assert_int_eq(f.events, 1);
	ck_assert_int_eq(f.last_event, BEV_EVENT_READING | BEV_EVENT_EOF);
	fixture_free(&f);
}
END_TEST

/* Backpressure: the read callback pauses reading until the owner resumes
 * it. */
START_TEST(pause_from_read_callback)
{
	struct fixture f;

	fixture_init(&f);
	f.pause_in_callback = 1;
	peer_send(&f, "one", 3);
	run_ready(&f);
	peer_send(&f, "two", 3);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 1);
	ck_assert_uint_eq(f.data_len, 3);

	f.pause_in_callback = 0;
	tg_socket_reader_enable(f.reader);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 2);
	ck_assert_mem_eq(f.data, "onetwo", 6);
	fixture_free(&f);
}
END_TEST

/* An upstream connection enables reading before its socket exists, so the
 * reader starts when tg_socket_reader_connected() is called. */
START_TEST(enabled_before_connect)
{
	struct fixture f;

	fixture_init_unconnected(&f);
	tg_socket_reader_enable(f.reader);
	ck_assert_ptr_null(f.reader->event);

	fixture_attach(&f);
	peer_send(&f, "hi", 2);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 0);

	tg_socket_reader_connected(f.reader);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 1);
	ck_assert_mem_eq(f.data, "hi", 2);
	fixture_free(&f);
}
END_TEST

/* A reader disabled before the socket connected stays disabled. */
START_TEST(disabled_before_connect)
{
	struct fixture f;

	fixture_init_unconnected(&f);
	fixture_attach(&f);
	tg_socket_reader_connected(f.reader);
	peer_send(&f, "hi", 2);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 0);
	fixture_free(&f);
}
END_TEST

/* The callbacks may free the connection; the reader must not touch it
 * afterwards (run under valgrind to see a use after free). */
START_TEST(callbacks_free_connection)
{
	struct fixture f;

	fixture_init(&f);
	f.free_in_callback = 1;
	peer_send(&f, "bye", 3);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 1);
	ck_assert_ptr_null(f.bev);
	fixture_free(&f);

	fixture_init(&f);
	f.free_in_callback = 1;
	close(f.peer);
	f.peer = -1;
	run_ready(&f);
	ck_assert_int_eq(f.events, 1);
	ck_assert_ptr_null(f.bev);
	fixture_free(&f);
}
END_TEST

/* A TLS connection's reader only enables and disables the bufferevent's
 * own reading. */
START_TEST(pass_through_uses_bufferevent)
{
	struct fixture f;

	fixture_init_unconnected(&f);
	fixture_attach(&f);
	tg_socket_reader_init(f.reader, f.bev, 0);

	tg_socket_reader_enable(f.reader);
	ck_assert(bufferevent_get_enabled(f.bev) & EV_READ);
	ck_assert_ptr_null(f.reader->event);
	peer_send(&f, "tls", 3);
	run_ready(&f);
	ck_assert_int_eq(f.reads, 1);

	tg_socket_reader_disable(f.reader);
	ck_assert(!(bufferevent_get_enabled(f.bev) & EV_READ));
	fixture_free(&f);
}
END_TEST

static Suite *
socket_reader_suite(void)
{
	Suite *s = suite_create("socket-reader");
	TCase *data = tcase_create("data");
	TCase *end = tcase_create("end");
	TCase *control = tcase_create("control");

	tcase_add_test(data, data_reaches_read_callback);
	tcase_add_test(data, data_appends_to_input);
	tcase_add_test(data, input_end_stays_frozen);
	tcase_add_test(data, read_takes_read_size);
	tcase_add_test(end, eof_after_data);
	tcase_add_test(end, eof_disables_reading);
	tcase_add_test(end, error_with_errno);
	tcase_add_test(control, disabled_reader_reads_nothing);
	tcase_add_test(control, pause_from_read_callback);
	tcase_add_test(control, enabled_before_connect);
	tcase_add_test(control, disabled_before_connect);
	tcase_add_test(control, callbacks_free_connection);
	tcase_add_test(control, pass_through_uses_bufferevent);
	suite_add_tcase(s, data);
	suite_add_tcase(s, end);
	suite_add_tcase(s, control);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(socket_reader_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
