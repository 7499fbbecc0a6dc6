/*
 * Unit tests for state notices to the service manager (src/sd-notify.c):
 * the datagram reaches a socket named by $NOTIFY_SOCKET, in the file
 * system or the abstract namespace, and nothing is sent without it.
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd-notify.h"

/* Bind a datagram socket to name ('@' for the abstract namespace) and
 * point $NOTIFY_SOCKET at it. Returns the socket. */
static int
listen_as_manager(const char *name)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(addr.sun_path, name, len);
	if (name[0] == '@')
		addr.sun_path[0] = '\0';
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr,
	                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
	return fd;
}

/* The next datagram on fd, or "" when none is waiting. */
static const char *
received(int fd)
{
	static char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(notice_reaches_path_socket)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/tollgate-notify-%ld", (long)getpid());
	unlink(path);
	fd = listen_as_manager(path);

	tg_notify("READY=1\nSTATUS=serving");
	ck_assert_str_eq(received(fd), "READY=1\nSTATUS=serving");
	tg_notify("STOPPING=1");
	ck_assert_str_eq(received(fd), "STOPPING=1");

	close(fd);
	unlink(path);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(notice_reaches_abstract_socket)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "@tollgate-notify-%ld", (long)getpid());
	fd = listen_as_manager(name);

	tg_notify("RELOADING=1");
	ck_assert_str_eq(received(fd), "RELOADING=1");

	close(fd);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

/* Without the variable, or with a name that is not a socket address,
 * nothing is sent and nothing fails. */
START_TEST(no_socket_no_notice)
{
	unsetenv("NOTIFY_SOCKET");
	tg_notify("READY=1");
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	tg_notify("READY=1");
	setenv("NOTIFY_SOCKET", "/nonexistent/tollgate-notify", 1);
	tg_notify("READY=1");
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

static Suite *
sd_notify_suite(void)
{
	Suite *s = suite_create("sd-notify");
	TCase *tc = tcase_create("notify");

	tcase_add_test(tc, notice_reaches_path_socket);
	tcase_add_test(tc, notice_reaches_abstract_socket);
	tcase_add_test(tc, no_socket_no_notice);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(sd_notify_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
