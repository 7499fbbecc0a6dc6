/*
 * The process's file descriptors: their limit and the kernel's table of them,
 * both set once at startup, before any thread starts.
 *
 * Each stream uses two descriptors, the client's and the upstream's, so the
 * usual soft limit of 1024 would stop a gateway at about 500 streams while
 * the hard limit allows far more. The soft limit is raised to the hard one,
 * because the hard limit is what the administrator set.
 *
 * Linux grows a process's descriptor table by doubling it, and in a process
 * with more than one thread each growth waits for an RCU grace period, often
 * 10 ms or more, inside the accept() or socket() that needed the room. Under
 * a ramp of new connections a worker would stall at each doubling (measured:
 * 1% of 1,000 new streams started 10 to 25 ms late). Growing the table once
 * here, while the process has one thread, takes those waits out of requests.
 *
 * A client connection accepted with the last free descriptors would get
 * 503, because none is left for its upstream. So the workers accept only
 * as many client connections as leave a descriptor for each upstream
 * (tg_descriptors_client_max). The pause is in accept-pause.c.
 *
 * In a process started with stdin, stdout or stderr closed, the next file
 * opened takes that number. Log lines would then go to an event loop, a
 * pipe or a client socket. tg_descriptors_open_standard() fills them first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "descriptors.h"
#include "log.h"

/*
 * The table is reserved up to the limit, but for no more than this many
 * descriptors: the kernel keeps about 8 bytes per slot, so 65,536 slots cost
 * about 520 KiB, while a hard limit of a million would cost 8 MiB. Past this
 * size a growth stalls a worker once per doubling, at 65,536, 131,072, ...
 * open descriptors.
 */
#define TG_DESCRIPTORS_RESERVE_MAX 65536

/* Raise the soft limit to the hard one; returns the soft limit in force. */
static rlim_t
raise_soft_limit(void)
{
	struct rlimit rl;
	rlim_t before;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		tg_warn("cannot read the open-files limit: %s", strerror(errno));
		return 0;
	}
	if (rl.rlim_cur == rl.rlim_max)
		return rl.rlim_cur;

	before = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		/* A hard limit of "unlimited" is above what Linux allows
		 * (fs.nr_open); the soft limit stays as it was. */
		tg_warn("cannot raise the open-files limit from %llu to %llu: %s; "
		        "keeping %llu", (unsigned long long)before,
		        (unsigned long long)rl.rlim_max, strerror(errno),
		        (unsigned long long)before);
		return before;
	}
	tg_info("raised the open-files limit from %llu to the hard limit %llu",
	        (unsigned long long)before, (unsigned long long)rl.rlim_max);
	return rl.rlim_max;
}

/*
 * Make the kernel's table cover descriptors 0 to slots - 1 by placing a
 * descriptor at slots - 1 and closing it again. A descriptor already open
 * there (inherited) means the table is that large already, and it is left
 * alone.
 */
static void
reserve_table(rlim_t slots)
{
	int top, spare;

	if (slots == 0)
		return;
	top = (int)(slots - 1);
	if (fcntl(top, F_GETFD) != -1)
		return;

	spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (spare < 0 || dup3(spare, top, O_CLOEXEC) < 0) {
		tg_warn("cannot reserve a descriptor table of %d slots: %s; "
		        "workers may pause while it grows", top + 1, strerror(errno));
	} else {
		close(top);
	}
	if (spare >= 0)
		close(spare);
}

int
tg_descriptors_open_standard(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		int null_fd;

		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;

		/* open() returns the lowest free number, which is fd, since the
		 * ones below it are open by now. */
		null_fd = open("/dev/null", O_RDWR);
		if (null_fd == -1)
			return -1;
		if (null_fd != fd) {
			close(null_fd);
			return -1;
		}
	}
	return 0;
}

void
tg_descriptors_prepare(void)
{
	rlim_t limit = raise_soft_limit();

	if (limit == RLIM_INFINITY || limit > TG_DESCRIPTORS_RESERVE_MAX)
		limit = TG_DESCRIPTORS_RESERVE_MAX;
	reserve_table(limit);
}

/* The descriptors kept outside client and upstream connections, for the
 * process and for workers each listening on listeners addresses. */
static rlim_t
spare_descriptors(int workers, size_t listeners)
{
	return TG_DESCRIPTORS_SPARE +
	       (rlim_t)workers * (TG_DESCRIPTORS_SPARE_PER_WORKER + listeners);
}

int
tg_descriptors_check(int workers, size_t listeners)
{
	struct rlimit rl;
	rlim_t spare = spare_descriptors(workers, listeners);
	rlim_t needed = spare + 2;      /* one client connection and its upstream */

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= needed)
		return 0;
	tg_error("the open-files limit %llu is below the %llu descriptors tollgate needs "
	         "with %d worker%s and %zu listen address%s (%llu for event loops, "
	         "listeners, logs and admin, 2 for one client connection and its "
	         "upstream); raise the hard limit to at least %llu, plus 2 for each "
	         "client connection to serve at once (ulimit -n, or LimitNOFILE= in "
	         "a systemd unit)", (unsigned long long)rl.rlim_cur,
	         (unsigned long long)needed, workers, workers == 1 ? "" : "s", listeners,
	         listeners == 1 ? "" : "es", (unsigned long long)spare,
	         (unsigned long long)needed);
	return -1;
}

size_t
tg_descriptors_client_max(int workers, size_t listeners)
{
	struct rlimit rl;
	rlim_t spare = spare_descriptors(workers, listeners);
	size_t max;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;

	max = rl.rlim_cur > spare + 2 ? (size_t)((rl.rlim_cur - spare) / 2) : 1;
	if (max < TG_DESCRIPTORS_FEW_CLIENTS)
		tg_warn("the open-files limit %llu leaves room for %zu client connection%s "
		        "(%llu descriptors are spare, two go to each connection); raise "
		        "the hard limit", (unsigned long long)rl.rlim_cur, max,
		        max == 1 ? "" : "s", (unsigned long long)spare);
	else
		tg_info("accepting up to %zu client connections, two descriptors each "
		        "under the open-files limit %llu", max,
		        (unsigned long long)rl.rlim_cur);
	return max;
}
