/*
 * tollgate: an HTTP gateway in front of OpenAI-compatible LLM endpoints.
 *
 * The main thread loads the configuration, opens the admin listener, starts
 * the workers and then only handles signals and admin requests:
 *   SIGHUP          load the file again and swap it in for new requests
 *   SIGTERM, SIGINT, SIGQUIT
 *                   stop accepting, finish requests in flight up to
 *                   drain_timeout, exit 0 (a second signal stops at once)
 *   SIGUSR1         reopen the access log (after rotation)
 *   SIGUSR2 and the other signals in ignored_signals[]
 *                   log a warning and go on: their default action would end
 *                   the process without a word
 * All of them are blocked from before the config is loaded until their
 * handlers are in place, so one that arrives during start-up waits for
 * them instead of taking its default action.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "accesslog.h"
#include "admin.h"
#include "clock.h"
#include "config.h"
#include "descriptors.h"
#include "health.h"
#include "ratelimit.h"
#include "log.h"
#include "sd-notify.h"
#include "metrics.h"
#include "start-settings.h"
#include "tls-handshake.h"
#include "trace-export.h"
#include "worker.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define DEFAULT_CONFIG SYSCONFDIR "/tollgate.json"
#define DRAIN_POLL_MS 50

/* The signals that tollgate acts on. */
static const int handled_signals[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1};

/*
 * Signals whose default action ends the process but that tollgate has no use
 * for. Each is logged and ignored, since a stray one should not take a
 * gateway down in silence. SIGUSR2 starts a binary upgrade in nginx, which
 * tollgate does not have. SIGXFSZ is here so that a write past the file-size
 * limit fails with EFBIG, which the access log counts. Fault signals (SEGV,
 * BUS, FPE, ILL, ABRT) and SIGPROF and SIGTRAP, which profilers and debuggers
 * use, keep their default actions.
 */
static const struct {
	int signo;
	const char *name;
} ignored_signals[] = {
	{SIGUSR2, "SIGUSR2"},
	{SIGALRM, "SIGALRM"},
	{SIGVTALRM, "SIGVTALRM"},
	{SIGIO, "SIGIO"},
	{SIGPWR, "SIGPWR"},
	{SIGXFSZ, "SIGXFSZ"},
};

#define N_HANDLED_SIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))
#define N_IGNORED_SIGNALS (sizeof(ignored_signals) / sizeof(ignored_signals[0]))

struct daemon {
	const char *config_path;
	struct tg_config *config;       /* the latest loaded */
	struct tg_start_settings started;       /* what only a restart changes */
	struct tg_health_registry health;   /* backend health across reloads */
	struct tg_ratelimit_registry limits;    /* key limits across reloads */
	struct tg_runtime runtime;
	struct event_base *base;
	struct tg_admin *admin;
	struct tg_worker **workers;
	int n_workers;
	struct event *drain_poll;
	struct event *drain_deadline;
	uint64_t stop_deadline_ns;      /* tg_now_ns by which the process ends:
	                                   drain_timeout after the first signal,
	                                   at once after a second */
	struct event *signals[N_HANDLED_SIGNALS + N_IGNORED_SIGNALS];
	size_t n_signals;
};

static void
usage(FILE *out, const char *prog)
{
	fprintf(out,
	        "usage: %s [-t] [-c FILE]\n"
	        "       %s -V | -h\n"
	        "  -c, --config FILE  configuration file (default %s)\n"
	        "  -t, --test         check the configuration and exit: 0 when valid, 1 when not\n"
	        "  -V, --version      print the version and exit\n"
	        "  -h, --help         print this help and exit\n",
	        prog, prog, DEFAULT_CONFIG);
}

/* Return 1, after printing why, when path is the default config file (used
 * without -c) and does not exist. A build that is not installed has none,
 * and "cannot open" alone would not say how to pass another file. */
static int
default_config_missing(const char *path)
{
	if (strcmp(path, DEFAULT_CONFIG) != 0 || access(path, F_OK) == 0 || errno != ENOENT)
		return 0;
	fprintf(stderr, "%s: cannot open the default config file: %s; give one with "
	        "-c FILE, such as -c conf/tollgate.json in the source tree, which "
	        "make install copies to that path\n", path, strerror(errno));
	return 1;
}

/* Load path, sending each error to the log; NULL when invalid. */
static struct tg_config *
load_config_logged(const char *path)
{
	char *errors = NULL;
	size_t size = 0;
	FILE *stream = open_memstream(&errors, &size);
	struct tg_config *cfg;
	char *line, *save = NULL;

	if (stream == NULL)
		return tg_config_load(path, stderr);
	cfg = tg_config_load(path, stream);
	fclose(stream);
	for (line = strtok_r(errors, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		/* report_warning() lines, which leave the load valid. */
		if (strstr(line, ": warning: ") != NULL)
			tg_warn("%s", line);
		else
			tg_error("%s", line);
	}
	free(errors);
	return cfg;
}

static void
reload(struct daemon *d)
{
	struct tg_config *cfg;

	tg_info("reloading configuration from %s", d->config_path);
	tg_notify("RELOADING=1");
	cfg = load_config_logged(d->config_path);
	if (cfg == NULL) {
		tg_error("reload of %s failed, keeping the running configuration",
		         d->config_path);
		tg_notify("READY=1\nSTATUS=reload failed, running the previous configuration");
		return;
	}
	if (tg_health_attach(&d->health, cfg) != 0 || tg_ratelimit_attach(&d->limits, cfg) != 0) {
		tg_error("reload of %s failed: out of memory", d->config_path);
		tg_config_unref(cfg);
		tg_notify("READY=1\nSTATUS=reload failed, running the previous configuration");
		return;
	}
	tg_start_settings_warn_changes(&d->started, cfg);
	tg_metrics_config_loaded(cfg);
	tg_log_set_level((enum tg_log_level)cfg->log_level);
	for (int i = 0; i < d->n_workers; i++)
		tg_worker_post_config(d->workers[i], cfg);
	tg_tracer_post_config(d->runtime.tracer, cfg);
	tg_admin_set_config(d->admin, cfg);
	tg_config_unref(d->config);
	d->config = cfg;
	tg_info("configuration reloaded from %s", d->config_path);
	tg_notify("READY=1\nSTATUS=serving");
}

static void
drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	(void)fd;
	(void)what;
	for (int i = 0; i < d->n_workers; i++) {
		if (!atomic_load(&d->workers[i]->finished))
			return;
	}
	event_base_loopexit(d->base, NULL);
}

static void
force_stop(struct daemon *d, int by_signal)
{
	for (int i = 0; i < d->n_workers; i++)
		tg_worker_post_force_stop(d->workers[i], by_signal);
}

static void
drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	force_stop(arg, 0);
}

/* tg_now_ns() plus ms, saturated: drain_timeout has no upper bound. */
static uint64_t
deadline_after_ms(tg_msec_t ms)
{
	uint64_t now = tg_now_ns();

	if (ms > (UINT64_MAX - now) / TG_NS_PER_MS)
		return UINT64_MAX;
	return now + ms * TG_NS_PER_MS;
}

static void
start_drain(struct daemon *d, int signo)
{
	struct timeval poll = {0, DRAIN_POLL_MS * 1000};
	struct timeval deadline = {
		.tv_sec = d->config->drain_timeout / 1000,
		.tv_usec = (d->config->drain_timeout % 1000) * 1000,
	};

	if (atomic_exchange(&d->runtime.draining, 1)) {
		tg_warn("signal %s during shutdown; closing all connections now",
		        strsignal(signo));
		d->stop_deadline_ns = tg_now_ns();
		force_stop(d, 1);
		return;
	}
	d->stop_deadline_ns = deadline_after_ms(d->config->drain_timeout);
	tg_notify("STOPPING=1");
	tg_info("signal %s: draining, up to %llu ms for requests in flight",
	        strsignal(signo), (unsigned long long)d->config->drain_timeout);
	for (int i = 0; i < d->n_workers; i++)
		tg_worker_post_drain(d->workers[i]);
	evtimer_add(d->drain_deadline, &deadline);
	event_add(d->drain_poll, &poll);
}

/* Lines of requests that ended before the signal go to the old file. The
 * file is the one opened at start: a reload does not change access_log. */
static void
reopen_access_log(struct daemon *d)
{
	const char *path = d->started.access_log;

	if (path == NULL || d->runtime.access_log.fd < 0)
		return;
	for (int i = 0; i < d->n_workers; i++)
		tg_accesslog_flush(d->workers[i]->access_log);
	if (tg_accesslog_reopen(&d->runtime.access_log, path) == 0)
		tg_info("access log %s reopened", path);
}

static void
warn_ignored_signal(int signo)
{
	const char *name = "?";

	for (size_t i = 0; i < N_IGNORED_SIGNALS; i++) {
		if (ignored_signals[i].signo == signo)
			name = ignored_signals[i].name;
	}
	if (signo == SIGUSR2)
		tg_warn("signal %s ignored: tollgate has no binary upgrade; send SIGHUP to "
		        "reload the configuration, or restart to run a new binary", name);
	else
		tg_warn("signal %s ignored; tollgate acts on SIGHUP, SIGUSR1, SIGTERM, "
		        "SIGINT and SIGQUIT", name);
}

static void
signal_cb(evutil_socket_t signo, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	switch (signo) {
	case SIGHUP:
		reload(d);
		break;
	case SIGUSR1:
		reopen_access_log(d);
		break;
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
		start_drain(d, (int)signo);
		break;
	default:
		warn_ignored_signal((int)signo);
		break;
	}
}

/*
 * Check every listen address before the workers bind them with
 * SO_REUSEPORT, so that a port that another process serves stops the
 * start instead of being shared with it. A process that already listens
 * keeps its sockets bound until it stops, accept pauses included, so the
 * probe fails on it. The one gap: two processes that both set
 * SO_REUSEPORT and both pass the check in the few milliseconds before
 * either binds.
 * Reloads keep the listeners, so they never come here.
 */
static int
probe_listen_addresses(const struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++) {
		if (tg_listen_probe(&cfg->listen[i]) != 0)
			return -1;
	}
	return 0;
}

/* Stop and free the first n_made workers of d, of which the first
 * n_started run, after one of them failed to start. */
static void
undo_workers(struct daemon *d, int n_made, int n_started)
{
	for (int i = 0; i < n_started; i++)
		tg_worker_post_force_stop(d->workers[i], 0);
	for (int i = 0; i < n_started; i++)
		tg_worker_join_and_free(d->workers[i], tg_now_ns());
	for (int i = n_started; i < n_made; i++)
		tg_worker_free(d->workers[i]);
}

/* Check the listen addresses, then make and start d's workers. On failure,
 * stops and frees the workers made so far, so that d has none. */
static int
start_workers(struct daemon *d)
{
	int n_made, n_started;

	if (probe_listen_addresses(d->config) != 0)
		return -1;

	d->workers = calloc((size_t)d->config->workers, sizeof(*d->workers));
	if (d->workers == NULL)
		return -1;
	for (n_made = 0; n_made < d->config->workers; n_made++) {
		d->workers[n_made] = tg_worker_new(n_made, d->config, &d->runtime);
		if (d->workers[n_made] == NULL) {
			undo_workers(d, n_made, 0);
			return -1;
		}
	}
	for (n_started = 0; n_started < n_made; n_started++) {
		if (tg_worker_start(d->workers[n_started]) != 0) {
			undo_workers(d, n_made, n_started);
			return -1;
		}
	}
	d->n_workers = n_made;
	return 0;
}

/* Return the set of handled_signals[] and ignored_signals[]. */
static sigset_t
acted_on_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < N_HANDLED_SIGNALS; i++)
		sigaddset(&set, handled_signals[i]);
	for (size_t i = 0; i < N_IGNORED_SIGNALS; i++)
		sigaddset(&set, ignored_signals[i].signo);
	return set;
}

/* Block or unblock (how) the signals of acted_on_signals() in the calling
 * thread; threads made meanwhile inherit the mask. */
static int
mask_acted_on_signals(int how)
{
	sigset_t set = acted_on_signals();
	int err = pthread_sigmask(how, &set, NULL);

	if (err != 0)
		tg_error("cannot %s signals: %s", how == SIG_BLOCK ? "block" : "unblock",
		         strerror(err));
	return err != 0 ? -1 : 0;
}

static int
add_signal(struct daemon *d, int signo)
{
	struct event *ev = evsignal_new(d->base, signo, signal_cb, d);

	if (ev == NULL)
		return -1;
	d->signals[d->n_signals++] = ev;
	return event_add(ev, NULL) != 0 ? -1 : 0;
}

/* Install the handlers of handled_signals[] and ignored_signals[], then
 * unblock them. One that arrived since main() blocked them is delivered
 * now, and acted on once the event loop runs. */
static int
add_signals(struct daemon *d)
{
	for (size_t i = 0; i < N_HANDLED_SIGNALS; i++) {
		if (add_signal(d, handled_signals[i]) != 0)
			return -1;
	}
	for (size_t i = 0; i < N_IGNORED_SIGNALS; i++) {
		if (add_signal(d, ignored_signals[i].signo) != 0)
			return -1;
	}
	return mask_acted_on_signals(SIG_UNBLOCK);
}

/* Set up everything but the workers. Returns 0, or 1 after logging why;
 * daemon_free() then releases what was set up. */
static int
set_up(struct daemon *d)
{
	tg_descriptors_prepare();      /* while this is the only thread */
	if (tg_descriptors_check(d->config->workers, d->config->n_listen) != 0)
		return 1;

	if (tg_start_settings_copy(&d->started, d->config) != 0) {
		tg_error("cannot start: out of memory");
		return 1;
	}

	/* Thread support locks the bases that other threads post to, such as
	 * the tracer's, and libevent's global state. Worker bases opt out of
	 * it and take messages through their mailboxes (worker.c). */
	if (evthread_use_pthreads() != 0 || (d->base = event_base_new()) == NULL) {
		tg_error("cannot set up the event loop");
		return 1;
	}
	if (d->config->access_log != NULL &&
	    tg_accesslog_open(&d->runtime.access_log, d->config->access_log) != 0)
		return 1;
	if (tg_tls_listeners_new(d->config, &d->runtime.tls_listeners) != 0) {
		tg_error("cannot start: out of memory");
		return 1;
	}
	d->runtime.n_tls_listeners = d->config->n_listen;
	if (tg_health_attach(&d->health, d->config) != 0 ||
	    tg_ratelimit_attach(&d->limits, d->config) != 0)
		return 1;
	tg_metrics_config_loaded(d->config);
	d->runtime.tracer = tg_tracer_new(d->config);
	if (d->runtime.tracer == NULL || tg_tracer_start(d->runtime.tracer) != 0)
		return 1;
	d->admin = tg_admin_start(d->base, d->config, &d->runtime);
	if (d->admin == NULL)
		return 1;
	if (add_signals(d) != 0) {
		tg_error("cannot install signal handlers");
		return 1;
	}
	d->drain_poll = event_new(d->base, -1, EV_PERSIST, drain_poll_cb, d);
	d->drain_deadline = evtimer_new(d->base, drain_deadline_cb, d);
	d->runtime.clients.max = tg_descriptors_client_max(d->config->workers,
	                                                   d->config->n_listen);
	return 0;
}

/* Start, serve until stopped, and stop. Returns 0, or 1 when the start
 * failed; either way no thread of d is left running. */
static int
run(struct daemon *d)
{
	if (set_up(d) != 0 || start_workers(d) != 0) {
		tg_tracer_stop(d->runtime.tracer);
		d->runtime.tracer = NULL;
		return 1;
	}

	for (size_t i = 0; i < d->config->n_listen; i++)
		tg_info("listening on %s%s", d->config->listen[i].address,
		        d->config->listen[i].tls_cert ? " (TLS)" : "");
	tg_info("admin listening on %s", d->config->admin.address);
	tg_info("tollgate %s started with %d worker%s", PACKAGE_VERSION, d->n_workers,
	        d->n_workers == 1 ? "" : "s");
	atomic_store(&d->runtime.ready, 1);
	tg_notify("READY=1\nSTATUS=serving");

	event_base_dispatch(d->base);

	/* Access-log lines a full pipe does not take by the drain deadline
	 * are lost rather than keep the process alive. */
	for (int i = 0; i < d->n_workers; i++)
		tg_worker_join_and_free(d->workers[i], d->stop_deadline_ns);
	d->n_workers = 0;
	tg_accesslog_finish(&d->runtime.access_log, d->stop_deadline_ns);
	tg_tracer_stop(d->runtime.tracer);     /* sends what the workers left */
	d->runtime.tracer = NULL;
	tg_info("stopped");
	return 0;
}

/* Release what run() set up; workers must have stopped. */
static void
daemon_free(struct daemon *d)
{
	free(d->workers);
	tg_tls_listeners_free(d->runtime.tls_listeners, d->runtime.n_tls_listeners);
	tg_accesslog_close(&d->runtime.access_log);
	tg_admin_free(d->admin);
	if (d->drain_poll != NULL)
		event_free(d->drain_poll);
	if (d->drain_deadline != NULL)
		event_free(d->drain_deadline);
	for (size_t i = 0; i < d->n_signals; i++)
		event_free(d->signals[i]);
	if (d->base != NULL)
		event_base_free(d->base);
	tg_config_unref(d->config);
	tg_start_settings_free(&d->started);
	tg_health_registry_free(&d->health);
	tg_ratelimit_registry_free(&d->limits);
}

int
main(int argc, char **argv)
{
	struct daemon d = {.config_path = DEFAULT_CONFIG};
	int test_only = 0;
	int opt, rc;

	static const struct option long_options[] = {
		{"config", required_argument, NULL, 'c'},
		{"test", no_argument, NULL, 't'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};

	if (tg_descriptors_open_standard() != 0)
		return 1;

	while ((opt = getopt_long(argc, argv, "c:thV", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d.config_path = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 'V':
			printf("tollgate %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", argv[0], argv[optind]);
		usage(stderr, argv[0]);
		return 2;
	}

	if (default_config_missing(d.config_path))
		return 1;
	tg_log_capture_libevent();
	if (test_only) {
		d.config = tg_config_check(d.config_path, stderr);
		if (d.config == NULL)
			return 1;
		fprintf(stderr, "%s: configuration is valid\n", d.config_path);
		tg_config_unref(d.config);
		return 0;
	}
	/* Loading can take a while (a plugin may read a large model): a
	 * signal then waits for its handler rather than end the process. */
	if (mask_acted_on_signals(SIG_BLOCK) != 0)
		return 1;
	d.config = tg_config_load(d.config_path, stderr);
	if (d.config == NULL)
		return 1;
	tg_log_set_level((enum tg_log_level)d.config->log_level);

	/* A client or upstream that closes mid-write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	d.runtime.access_log.fd = -1;
	rc = run(&d);
	daemon_free(&d);
	return rc;
}
