/*
 * State notices to the service manager (sd-notify.h).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sd-notify.h"

/* Set after the first failure, so that a manager gone away costs one line. */
static int notify_failed;

/* Fill addr with the socket path, in the file system or, for a name that
 * starts with '@', in the abstract namespace. Returns the address length,
 * or 0 for a name that is neither or does not fit. */
static socklen_t
notify_address(const char *name, struct sockaddr_un *addr)
{
	size_t len = strlen(name);

	if ((name[0] != '/' && name[0] != '@') || len < 2 || len >= sizeof(addr->sun_path))
		return 0;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, name, len);
	if (name[0] == '@')
		addr->sun_path[0] = '\0';       /* abstract: no terminating NUL counts */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	                   (name[0] == '/' ? 1 : 0));
}

static void
notify_warn(const char *name, const char *state, const char *why)
{
	if (notify_failed)
		return;
	notify_failed = 1;
	tg_warn("cannot send \"%s\" to the service manager at NOTIFY_SOCKET=%s: %s; "
	        "a unit with Type=notify will not see the service's state", state, name, why);
}

void
tg_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr;
	socklen_t addr_len;
	int fd;

	if (name == NULL || name[0] == '\0')
		return;
	addr_len = notify_address(name, &addr);
	if (addr_len == 0) {
		notify_warn(name, state, "not an absolute path or an @abstract name that fits "
		            "a socket address");
		return;
	}

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		notify_warn(name, state, strerror(errno));
		return;
	}
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
	           addr_len) < 0)
		notify_warn(name, state, strerror(errno));
	close(fd);
}
