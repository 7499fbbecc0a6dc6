/*
 * Unit tests for the worker's own helpers that need no event loop.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "worker.h"

/* The id as it was formatted before the hex encoder: the prefix, then the
 * sequence number, each as 16 lowercase hex digits. */
static void
assert_request_id(uint64_t prefix, uint64_t seq_before)
{
	struct tg_worker w = {.id_prefix = prefix, .request_seq = seq_before};
	char id[129];
	char expected[64];

	memset(id, 'x', sizeof(id));
	snprintf(expected, sizeof(expected), "%016llx%016llx", (unsigned long long)prefix,
	         (unsigned long long)(seq_before + 1));
	tg_worker_next_request_id(&w, id, sizeof(id));
	ck_assert_str_eq(id, expected);
	ck_assert_uint_eq(w.request_seq, seq_before + 1);
}

START_TEST(request_id_prefix_then_sequence)
{
	assert_request_id(0x0123456789abcdefull, 41);
	assert_request_id(0, 0);
	assert_request_id(UINT64_MAX, UINT64_MAX - 1);
	assert_request_id(0xfedcba9876543210ull, 0x00000000ffffffffull);
	assert_request_id(0x8000000000000001ull, 0x0100000000000000ull);
}
END_TEST

/* A buffer given back comes out of the next take empty, and buffers past
 * the spares' limit are freed (valgrind reports a leak otherwise). */
START_TEST(spare_buffers_come_back_empty)
{
	static struct tg_worker w;
	struct evbuffer *taken[TG_SPARE_BUFFERS_MAX + 2];
	struct evbuffer *first = tg_worker_buffer_take(&w);

	ck_assert_ptr_nonnull(first);
	evbuffer_add(first, "left over", 9);
	tg_worker_buffer_give(&w, first);
	ck_assert_uint_eq(w.n_spare_buffers, 1);
	ck_assert_ptr_eq(tg_worker_buffer_take(&w), first);
	ck_assert_uint_eq(evbuffer_get_length(first), 0);
	tg_worker_buffer_give(&w, first);
	tg_worker_buffer_give(&w, NULL);
	ck_assert_uint_eq(w.n_spare_buffers, 1);

	for (size_t i = 0; i < TG_SPARE_BUFFERS_MAX + 2; i++)
		taken[i] = tg_worker_buffer_take(&w);
	for (size_t i = 0; i < TG_SPARE_BUFFERS_MAX + 2; i++)
		tg_worker_buffer_give(&w, taken[i]);
	ck_assert_uint_eq(w.n_spare_buffers, TG_SPARE_BUFFERS_MAX);
	for (size_t i = 0; i < w.n_spare_buffers; i++)
		evbuffer_free(w.spare_buffers[i]);
}
END_TEST

/* An upstream request is added by reference to the connection's output,
 * which may still hold it when the request ends and gives the buffer
 * back. The output keeps the old bytes while the buffer is reused (under
 * valgrind, a freed chain would show as an invalid read). */
START_TEST(spare_buffer_added_by_reference)
{
	static struct tg_worker w;
	struct evbuffer *output = evbuffer_new();
	struct evbuffer *request = tg_worker_buffer_take(&w);
	char text[8] = "";

	evbuffer_add(request, "request", 7);
	ck_assert_int_eq(evbuffer_add_buffer_reference(output, request), 0);
	tg_worker_buffer_give(&w, request);
	ck_assert_ptr_eq(tg_worker_buffer_take(&w), request);
	ck_assert_uint_eq(evbuffer_get_length(request), 0);
	evbuffer_add(request, "next", 4);

	ck_assert_int_eq(evbuffer_remove(output, text, 7), 7);
	ck_assert_str_eq(text, "request");
	evbuffer_free(output);
	ck_assert_uint_eq(evbuffer_get_length(request), 4);
	evbuffer_free(request);
}
END_TEST

/* A listen entry and the strings it points to. */
struct listen_entry {
	struct tg_listen l;
	char address[32];
	char port[8];
};

/* Fill e for 127.0.0.1 and port. */
static void
loopback_entry(struct listen_entry *e, int port)
{
	snprintf(e->port, sizeof(e->port), "%d", port);
	snprintf(e->address, sizeof(e->address), "127.0.0.1:%d", port);
	e->l = (struct tg_listen){.address = e->address, .host = "127.0.0.1", .port = e->port};
}

/* Open a socket bound to 127.0.0.1 at port (0: any free one), with
 * SO_REUSEPORT when reuse_port is set, as a worker's listener has it, and
 * listening when listening is set. Returns the descriptor and stores the
 * port in *bound. */
static int
loopback_socket(int port, int reuse_port, int listening, int *bound)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t len = sizeof(sin);
	int enable = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable)), 0);
	if (reuse_port)
		ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &enable, sizeof(enable)), 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (listening)
		ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*bound = ntohs(sin.sin_port);
	return fd;
}

/* A port another process listens on fails the probe, whether that
 * listener set SO_REUSEPORT (a running tollgate's worker) or not. */
START_TEST(probe_fails_on_port_in_use)
{
	struct listen_entry e;
	int port;
	int fd = loopback_socket(0, _i, 1, &port);

	loopback_entry(&e, port);
	ck_assert_int_eq(tg_listen_probe(&e.l), -1);
	close(fd);
}
END_TEST

/* On a free port the probe passes and leaves nothing bound, so that two
 * workers can then bind the port with SO_REUSEPORT. */
START_TEST(probe_leaves_port_to_workers)
{
	struct listen_entry e;
	int port, again;
	int fd = loopback_socket(0, 0, 0, &port);
	int first, second;

	close(fd);
	loopback_entry(&e, port);
	ck_assert_int_eq(tg_listen_probe(&e.l), 0);
	first = loopback_socket(port, 1, 1, &again);
	second = loopback_socket(port, 1, 1, &again);
	ck_assert_int_eq(again, port);
	close(first);
	close(second);
}
END_TEST

static Suite *
worker_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *ids = tcase_create("request-id");

	TCase *buffers = tcase_create("spare-buffers");
	TCase *probe = tcase_create("listen-probe");

	tcase_add_test(ids, request_id_prefix_then_sequence);
	suite_add_tcase(s, ids);
	tcase_add_test(buffers, spare_buffers_come_back_empty);
	tcase_add_test(buffers, spare_buffer_added_by_reference);
	suite_add_tcase(s, buffers);
	tcase_add_loop_test(probe, probe_fails_on_port_in_use, 0, 2);
	tcase_add_test(probe, probe_leaves_port_to_workers);
	suite_add_tcase(s, probe);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(worker_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
