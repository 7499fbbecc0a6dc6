/*
 * tollgate-mock: an OpenAI-compatible server for tests and benchmarks.
 *
 * This file contains the command line, the listening socket and the signal
 * handling. mock/README.md describes the endpoints and options.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cache.h"
#include "conn.h"
#include "fixture.h"
#include "mock.h"
#include "options.h"

#ifndef TG_FIXTURE_DIR
#define TG_FIXTURE_DIR "t/fixtures/openai-recorded"
#endif
#ifndef TG_INSTALLED_FIXTURE_DIR
#define TG_INSTALLED_FIXTURE_DIR TG_FIXTURE_DIR
#endif

#define DEFAULT_LISTEN "127.0.0.1:9001"
#define LISTEN_BACKLOG 1024

/* The backlog of --no-accept. Linux queues one connection more than the
 * backlog, so that many connections fill the queue. It is not 0 because
 * libevent takes 0 for a socket that already listens. */
#define NO_ACCEPT_BACKLOG 1
#define NO_ACCEPT_FILLERS (NO_ACCEPT_BACKLOG + 1)

struct cli {
	const char *listen;
	const char *tls_cert, *tls_key;
	const char *fixtures;
	const char *options;
	int quiet;
	int no_accept;
};

static void
usage(FILE *out)
{
	fprintf(out,
	"usage: tollgate-mock [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]\n"
	"                     [--fixtures DIR] [--options LIST] [--quiet] [--no-accept]\n"
	"\n"
	"An OpenAI-compatible server for tests and benchmarks.\n"
	"\n"
	"  --listen HOST:PORT  address to listen on (default " DEFAULT_LISTEN ");\n"
	"                      port 0 picks a free port; IPv6 as [::1]:PORT\n"
	"  --tls-cert FILE     PEM certificate chain; with --tls-key, serve HTTPS\n"
	"  --tls-key FILE      PEM private key of the certificate\n"
	"  --fixtures DIR      directory of recorded NAME.yaml exchanges\n"
	"                      (default " TG_FIXTURE_DIR ",\n"
	"                      or " TG_INSTALLED_FIXTURE_DIR " without it)\n"
	"  --options LIST      behaviour options for every API request, such as\n"
	"                      \"status=500\" or \"first_byte_delay=2s;events=3\";\n"
	"                      a request's own options apply on top\n"
	"  --quiet             do not log each request on stderr\n"
	"  --no-accept         accept no connection: connects to the address\n"
	"                      time out, as to a blackholed one\n"
	"  --help              show this help and exit\n"
	"\n"
	"Once listening it prints \"tollgate-mock listening on HOST:PORT\" on\n"
	"stdout. SIGTERM and SIGINT stop it with exit status 0. Requests choose\n"
	"a behaviour with the x-mock header or a model suffix such as\n"
	"\"gpt-4o@events=3;event_delay=10ms\"; see mock/README.md.\n");
}

/* Parse argv into cli; returns 0, 1 after --help, or -1 on an error. */
static int
parse_args(int argc, char **argv, struct cli *cli)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "fixtures", required_argument, NULL, 'f' },
		{ "options", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "no-accept", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': cli->listen = optarg; break;
		case 'c': cli->tls_cert = optarg; break;
		case 'k': cli->tls_key = optarg; break;
		case 'f': cli->fixtures = optarg; break;
		case 'o': cli->options = optarg; break;
		case 'q': cli->quiet = 1; break;
		case 'n': cli->no_accept = 1; break;
		case 'h': usage(stdout); return 1;
		case ':':
			fprintf(stderr, "tollgate-mock: option %s requires a value; "
			        "see --help\n", argv[optind - 1]);
			return -1;
		default:
			fprintf(stderr, "tollgate-mock: unknown option %s; valid options: "
			        "--listen, --tls-cert, --tls-key, --fixtures, --options, "
			        "--quiet, --no-accept, --help\n", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tollgate-mock: unexpected argument \"%s\"; the mock "
		        "takes options only (see --help)\n", argv[optind]);
		return -1;
	}
	if ((cli->tls_cert == NULL) != (cli->tls_key == NULL)) {
		fprintf(stderr, "tollgate-mock: --tls-cert and --tls-key must be "
		        "given together\n");
		return -1;
	}
	if (cli->options != NULL) {
		struct mock_options o;
		char err[512];

		mock_options_init(&o);
		if (mock_options_parse(&o, cli->options, strlen(cli->options), "--options",
		                       err, sizeof(err)) < 0) {
			fprintf(stderr, "tollgate-mock: %s\n", err);
			return -1;
		}
	}
	return 0;
}

/*
 * Resolve "HOST:PORT" or "[IPV6]:PORT" (numeric port) into an address.
 * Returns the getaddrinfo list, or NULL after printing why.
 */
static struct addrinfo *
resolve_listen(const char *spec)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *colon = strrchr(spec, ':');
	char host[256];
	size_t host_len;
	int rc;

	if (colon == NULL || colon[1] == '\0' || colon == spec
	    || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		goto invalid;
	host_len = (size_t)(colon - spec);
	if (spec[0] == '[') {
		if (host_len < 3 || spec[host_len - 1] != ']')
			goto invalid;
		spec++;
		host_len -= 2;
	}
	if (host_len >= sizeof(host))
		goto invalid;
	memcpy(host, spec, host_len);
	host[host_len] = '\0';

	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "tollgate-mock: --listen %s: cannot resolve host "
		        "\"%s\": %s\n", spec, host, gai_strerror(rc));
		return NULL;
	}
	return res;

invalid:
	fprintf(stderr, "tollgate-mock: invalid --listen \"%s\": expected "
	        "HOST:PORT such as 127.0.0.1:9001 or [::1]:0\n", spec);
	return NULL;
}

static void
on_accept(struct evconnlistener *listener, evutil_socket_t fd,
          struct sockaddr *addr, int addr_len, void *arg)
{
	(void)listener;
	(void)addr;
	(void)addr_len;
	conn_accept(arg, fd);
}

static void
on_accept_error(struct evconnlistener *listener, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)listener;
	(void)arg;
	fprintf(stderr, "tollgate-mock: accept failed: %s\n",
	        evutil_socket_error_to_string(err));
}

/* Print the ready line, with the bound port, that tests wait for. */
static int
announce(struct evconnlistener *listener)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int port;

	if (getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&ss,
	                &len) < 0) {
		fprintf(stderr, "tollgate-mock: getsockname failed: %s\n",
		        strerror(errno));
		return -1;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		printf("tollgate-mock listening on [%s]:%d\n", host, port);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		printf("tollgate-mock listening on %s:%d\n", host, port);
	}
	fflush(stdout);
	return 0;
}

/*
 * Fill the accept queue of a listener that never accepts, so that the
 * kernel drops the SYN of every later connect and the connect times out.
 * fds receives NO_ACCEPT_FILLERS descriptors. Returns 0, or -1 after
 * printing why.
 */
static int
fill_backlog(struct evconnlistener *listener, int *fds)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&ss, &len) < 0)
		return -1;
	for (int i = 0; i < NO_ACCEPT_FILLERS; i++) {
		fds[i] = socket(ss.ss_family, SOCK_STREAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&ss, len) < 0) {
			fprintf(stderr, "tollgate-mock: --no-accept: cannot fill the backlog: "
			        "%s\n", strerror(errno));
			return -1;
		}
	}
	return 0;
}

static struct evconnlistener *
open_listener(struct mock *m, const char *spec, int no_accept)
{
	struct addrinfo *res = resolve_listen(spec);
	struct evconnlistener *listener;
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;

	if (res == NULL)
		return NULL;
	if (no_accept)
		flags |= LEV_OPT_DISABLED;
	listener = evconnlistener_new_bind(m->base, on_accept, m, flags,
	                                   no_accept ? NO_ACCEPT_BACKLOG : LISTEN_BACKLOG, res->ai_addr,
	                                   (int)res->ai_addrlen);
	if (listener == NULL)
		fprintf(stderr, "tollgate-mock: cannot listen on %s: %s\n", spec,
		        strerror(errno));
	else
		evconnlistener_set_error_cb(listener, on_accept_error);
	freeaddrinfo(res);
	return listener;
}

static void
print_tls_error(const char *what, const char *file)
{
	char reason[256];

	ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
	fprintf(stderr, "tollgate-mock: %s %s could not be loaded: %s\n", what,
	        file, reason);
}

static SSL_CTX *
open_tls(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		print_tls_error("TLS context for", cert);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		print_tls_error("--tls-cert", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		print_tls_error("--tls-key", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "tollgate-mock: --tls-key %s does not match the "
		        "certificate in --tls-cert %s\n", key, cert);
		goto fail;
	}
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int
check_fixture_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		fprintf(stderr, "tollgate-mock: --fixtures %s: %s\n", dir,
		        strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "tollgate-mock: --fixtures %s is not a directory\n",
		        dir);
		return -1;
	}
	return 0;
}

/* Return the recordings served by default: those of the source tree the
 * mock was built from, or else the copy that make install put in place,
 * for a mock run after its source tree is gone. */
static const char *
default_fixture_dir(void)
{
	struct stat st;

	if (stat(TG_FIXTURE_DIR, &st) == 0 && S_ISDIR(st.st_mode))
		return TG_FIXTURE_DIR;
	return TG_INSTALLED_FIXTURE_DIR;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

/* An event base whose timers keep microseconds: epoll's own timeout counts
 * milliseconds, which would send the events of streams due within one
 * millisecond together. */
static struct event_base *
new_precise_base(void)
{
	struct event_config *config = event_config_new();
	struct event_base *base;

	if (config == NULL)
		return NULL;
	event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(config);
	event_config_free(config);
	return base;
}

int
main(int argc, char **argv)
{
	struct cli cli = { .listen = DEFAULT_LISTEN, .fixtures = default_fixture_dir() };
	struct mock m = { 0 };
	struct evconnlistener *listener = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	int rc = parse_args(argc, argv, &cli), status = 1;
	int fillers[NO_ACCEPT_FILLERS];

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (check_fixture_dir(cli.fixtures) < 0)
		return 1;

	for (int i = 0; i < NO_ACCEPT_FILLERS; i++)
		fillers[i] = -1;
	signal(SIGPIPE, SIG_IGN);
	m.fixture_dir = cli.fixtures;
	m.quiet = cli.quiet;
	m.base = new_precise_base();
	if (m.base == NULL) {
		fprintf(stderr, "tollgate-mock: event_base_new failed\n");
		return 1;
	}
	if (cli.options != NULL && cli.options[0] != '\0') {
		m.default_options = strdup(cli.options);
		if (m.default_options == NULL) {
			fprintf(stderr, "tollgate-mock: out of memory\n");
			goto out;
		}
	}
	if (cli.tls_cert != NULL) {
		m.ssl_ctx = open_tls(cli.tls_cert, cli.tls_key);
		if (m.ssl_ctx == NULL)
			goto out;
	}

	listener = open_listener(&m, cli.listen, cli.no_accept);
	if (listener == NULL)
		goto out;
	if (cli.no_accept && fill_backlog(listener, fillers) < 0)
		goto out;
	sigterm = evsignal_new(m.base, SIGTERM, on_signal, m.base);
	sigint = evsignal_new(m.base, SIGINT, on_signal, m.base);
	if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) < 0
	    || evsignal_add(sigint, NULL) < 0 || announce(listener) < 0)
		goto out;

	event_base_dispatch(m.base);
	status = 0;

out:
	conn_close_all(&m);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	if (listener != NULL)
		evconnlistener_free(listener);
	for (int i = 0; i < NO_ACCEPT_FILLERS; i++) {
		if (fillers[i] >= 0)
			close(fillers[i]);
	}
	mock_reset(&m);
	fixture_cache_free(m.fixtures);
	response_cache_free(m.responses);
	free(m.default_options);
	if (m.ssl_ctx != NULL)
		SSL_CTX_free(m.ssl_ctx);
	event_base_free(m.base);
	return status;
}
