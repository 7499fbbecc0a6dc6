/*
 * Process metrics under the names every Prometheus client library uses
 * (process_cpu_seconds_total, process_resident_memory_bytes, ...), read
 * from /proc/self at scrape time, and tollgate_build_info.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "metrics-table.h"
#include "metrics.h"

struct process_stats {
	double cpu_seconds;             /* user plus system time */
	double start_time;              /* seconds since the Unix epoch */
	double virtual_bytes;
	double resident_bytes;
	int have_stat;
	double open_fds;                /* -1 when /proc/self/fd is unreadable */
	double max_fds;                 /* -1 when unlimited */
};

/* Seconds since the epoch at boot, from /proc/stat's btime line. */
static double
boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	double btime = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "btime %lf", &btime) == 1)
			break;
	}
	fclose(f);
	return btime;
}

/* Fields of /proc/self/stat (proc(5)): utime (14), stime (15), starttime
 * (22), vsize (23) and rss (24). The command name (2) may hold spaces and
 * parentheses, so the fields are counted from its closing ')'. */
static void
read_stat(struct process_stats *ps)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	size_t len = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	unsigned long long utime, stime, start, vsize, rss;
	double ticks = (double)sysconf(_SC_CLK_TCK);
	double page = (double)sysconf(_SC_PAGESIZE);
	const char *p;

	if (f != NULL)
		fclose(f);
	buf[len] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL || ticks <= 0 || page <= 0)
		return;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
	           "%*d %*d %*d %*d %*d %*d %llu %llu %llu",
	           &utime, &stime, &start, &vsize, &rss) != 5)
		return;

	ps->cpu_seconds = (double)(utime + stime) / ticks;
	ps->start_time = boot_time() + (double)start / ticks;
	ps->virtual_bytes = (double)vsize;
	ps->resident_bytes = (double)rss * page;
	ps->have_stat = 1;
}

static double
count_open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	double n = 0;

	if (dir == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] != '.')
			n++;
	}
	closedir(dir);
	return n - 1;   /* the descriptor the listing itself used */
}

static double
max_fds(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return -1;
	return (double)rl.rlim_cur;
}

static int
write_one(struct evbuffer *out, const char *name, const char *type, const char *help,
          double v, enum tg_metrics_format format)
{
	if (tg_metrics_write_header(out, name, type, help, format) != 0)
		return -1;
	return tg_metrics_write_sample(out, name, "", v);
}

int
tg_metrics_write_process(struct evbuffer *out, enum tg_metrics_format format)
{
	struct process_stats ps = {.open_fds = count_open_fds(), .max_fds = max_fds()};
	int rc = 0;

	read_stat(&ps);
	if (ps.have_stat) {
		rc |= write_one(out, "process_cpu_seconds_total", "counter",
		                "User and system CPU time spent.", ps.cpu_seconds, format);
		rc |= write_one(out, "process_start_time_seconds", "gauge",
		                "Start time of the process since the Unix epoch.",
		                ps.start_time, format);
		rc |= write_one(out, "process_virtual_memory_bytes", "gauge",
		                "Virtual memory size.", ps.virtual_bytes, format);
		rc |= write_one(out, "process_resident_memory_bytes", "gauge",
		                "Resident memory size.", ps.resident_bytes, format);
	}
	if (ps.open_fds >= 0)
		rc |= write_one(out, "process_open_fds", "gauge", "Open file descriptors.",
		                ps.open_fds, format);
	if (ps.max_fds >= 0)
		rc |= write_one(out, "process_max_fds", "gauge",
		                "Limit on open file descriptors.", ps.max_fds, format);

	/* An info family in OpenMetrics, named without its _info suffix; a
	 * gauge of 1 in the text format, which has no info type. */
	if (format == TG_METRICS_OPENMETRICS)
		rc |= tg_metrics_write_header(out, "tollgate_build", "info",
		                              "Version of the running tollgate.", format);
	else
		rc |= tg_metrics_write_header(out, "tollgate_build_info", "gauge",
		                              "Version of the running tollgate.", format);
	rc |= tg_metrics_write_sample(out, "tollgate_build_info",
	                              "version=\"" PACKAGE_VERSION "\"", 1);
	return rc ? -1 : 0;
}
