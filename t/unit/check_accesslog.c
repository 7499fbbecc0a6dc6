/*
 * Unit tests for the access-log writer (src/accesslog.c) on a named pipe
 * whose reader is slow: a write that the pipe cuts inside a line must still
 * end that line, on the flush timer, once the reader is back.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "accesslog.h"
#include "clock.h"
#include "request.h"

/* A named pipe with its reader open, in a fresh directory. */
struct fifo {
	char dir[64];
	char path[96];
	int reader;
};

static void
fifo_open(struct fifo *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/tg-check-accesslog-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/log", f->dir);
	ck_assert_int_eq(mkfifo(f->path, 0600), 0);
	f->reader = open(f->path, O_RDONLY | O_NONBLOCK);
	ck_assert_int_ge(f->reader, 0);
}

static void
fifo_close(struct fifo *f)
{
	close(f->reader);
	unlink(f->path);
	rmdir(f->dir);
}

/* Read exactly len bytes that are already in the pipe. */
static void
read_exactly(int fd, char *out, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, out + got, len - got);

		ck_assert_msg(n > 0, "read from the pipe: %zd (%s)", n, strerror(errno));
		got += (size_t)n;
	}
}

/* Read the bytes in the pipe now, up to cap; returns the count. */
static size_t
read_available(int fd, char *out, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap && (n = read(fd, out + got, cap - got)) > 0)
		got += (size_t)n;
	return got;
}

/* Fill the pipe behind fd with whole filler lines, then free exactly one
 * page of it, so that the next large write takes one page and stops. */
static size_t
fill_all_but_one_page(int writer, int reader)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int capacity = fcntl(writer, F_GETPIPE_SZ);
	char *filler, *sink;

	ck_assert_int_gt(capacity, 0);
	filler = malloc((size_t)capacity);
	sink = malloc(page);
	ck_assert_ptr_nonnull(filler);
	ck_assert_ptr_nonnull(sink);
	memset(filler, 'x', (size_t)capacity);
	for (int i = 63; i < capacity; i += 64)
		filler[i] = '\n';
	ck_assert_int_eq(write(writer, filler, (size_t)capacity), capacity);
	read_exactly(reader, sink, page);
	free(filler);
	free(sink);
	return (size_t)capacity - page;
}

/* A request whose line has the same length every time: start_ns 0 makes
 * the duration the clock's uptime, whose length does not change within a
 * test. */
static void
request_init(struct tg_request *req, const char *path)
{
	memset(req, 0, sizeof(*req));
	snprintf(req->id, sizeof(req->id), "cut-line-test");
	snprintf(req->time, sizeof(req->time), "2024-01-01T00:00:00.000Z");
	snprintf(req->client_addr, sizeof(req->client_addr), "127.0.0.1:1");
	req->method = "POST";
	req->path = (char *)path;
	req->response.status = 200;
}

START_TEST(cut_line_is_ended_by_the_flush_timer)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct tg_accesslog_file file = {.fd = -1};
	struct tg_config cfg = {.access_log_buffer = 1 << 20, .access_log_flush = 1};
	struct event_base *base = event_base_new();
	struct tg_accesslog *log;
	struct tg_request req;
	char path[64] = "/v1/chat/completions";
	size_t line_len, lines, filler, got;
	char *out;
	struct fifo f;

	ck_assert_ptr_nonnull(base);
	fifo_open(&f);
	ck_assert_int_eq(tg_accesslog_open(&file, f.path), 0);
	ck_assert_int_eq(file.sink, TG_SINK_NONBLOCKING);
	log = tg_accesslog_new(&file, base, &cfg);
	ck_assert_ptr_nonnull(log);

	/* Lines of a length that does not divide a page, so that the write
	 * the pipe cuts after one page stops inside the last line. */
	request_init(&req, path);
	tg_accesslog_write(log, &req);
	line_len = log->lines.len;
	if (page % line_len == 0) {
		strcat(path, "x");
		log->lines.len = 0;
		tg_accesslog_write(log, &req);
		line_len = log->lines.len;
	}
	lines = page / line_len + 1;
	for (size_t i = 1; i < lines; i++)
		tg_accesslog_write(log, &req);
	ck_assert_uint_eq(log->lines.len, lines * line_len);

	filler = fill_all_but_one_page(file.fd, f.reader);
	tg_accesslog_flush(log);
	ck_assert_uint_eq(log->lines.len - log->head, 0);
	ck_assert_uint_gt(file.cut.len, 0);

	/* The flush timer fires while the pipe is still full: it must stay
	 * armed for the cut line, though the worker's buffer is empty. */
	event_base_loop(base, EVLOOP_ONCE);
	ck_assert_uint_gt(file.cut.len, 0);

	/* The reader catches up; no request ends after this. */
	out = malloc(filler + lines * line_len + 1);
	ck_assert_ptr_nonnull(out);
	got = read_available(f.reader, out, filler + lines * line_len);
	ck_assert_uint_eq(got, filler + page);

	/* Runs until no event is left: the flush timer must end the line. */
	event_base_dispatch(base);
	got += read_available(f.reader, out + got, filler + lines * line_len - got);
	ck_assert_msg(got == filler + lines * line_len,
	              "the pipe got %zu of the %zu bytes of %zu lines; the cut line "
	              "was not ended", got - filler, lines * line_len, lines);
	ck_assert_int_eq(out[got - 1], '\n');

	free(out);
	tg_accesslog_free(log, 0);
	tg_accesslog_close(&file);
	fifo_close(&f);
	event_base_free(base);
}
END_TEST

static Suite *
accesslog_suite(void)
{
	Suite *s = suite_create("accesslog");
	TCase *pipe_case = tcase_create("pipe");

	tcase_add_test(pipe_case, cut_line_is_ended_by_the_flush_timer);
	suite_add_tcase(s, pipe_case);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(accesslog_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
