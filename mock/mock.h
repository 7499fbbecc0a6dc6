/*
 * tollgate-mock: shared server context.
 *
 * One struct mock per process, created in mock.c and passed by pointer to
 * every connection; nothing on the request path reads a global.
 */
#ifndef TOLLGATE_MOCK_H
#define TOLLGATE_MOCK_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>

#define MOCK_LOG_MAX 100        /* requests kept for /_mock/requests */

/* Counters served by /_mock/stats. Requests to /_mock/ and connections whose
 * first request goes to /_mock/ are left out, so reading the counters does
 * not change them. */
struct mock_stats {
	uint64_t connections_opened;
	uint64_t connections_closed_by_peer;
	uint64_t requests;
	uint64_t responses_completed;
	uint64_t responses_aborted;
};

struct fixture_cache;
struct response_cache;
struct conn;
struct mock_request;
struct logged_request;

struct mock {
	struct event_base *base;
	SSL_CTX *ssl_ctx;               /* NULL when serving plain HTTP */
	const char *fixture_dir;
	int quiet;                      /* no per-request line on stderr */
	char *default_options;          /* --options list, NULL when none;
	                                 * POST /_mock/options replaces it */

	struct mock_stats stats;
	struct logged_request *log[MOCK_LOG_MAX];  /* ring of logged requests */
	size_t log_start, log_count;

	char date[64];                  /* the Date header at date_time */
	time_t date_time;

	uint64_t connection_seq;        /* number of the last accepted connection */
	uint64_t response_seq;          /* feeds generated ids */

	struct fixture_cache *fixtures;
	struct response_cache *responses;  /* generated responses to reuse */
	struct conn *connections;       /* open connections, to free at exit */
};

/* Append a copy of req to the request log, dropping the oldest past
 * MOCK_LOG_MAX. Out of memory, the request is not logged. */
void mock_log_request(struct mock *m, const struct mock_request *req);

/* Return a new JSON array of the logged requests, oldest first, or NULL
 * when out of memory. */
json_t *mock_log_dump(const struct mock *m);

/* Zero the counters and empty the request log. */
void mock_reset(struct mock *m);

#endif
