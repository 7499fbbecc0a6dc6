/*
 * Failed TLS handshakes on the listeners. Each one gets an info line with
 * the client's address and OpenSSL's reason, at most
 * TG_HANDSHAKE_LOG_PER_SECOND a second per listener so that a flood of
 * them cannot fill the log, and every one is counted in
 * tollgate_tls_handshake_errors_total{listener, reason}.
 */
#ifndef TOLLGATE_TLS_HANDSHAKE_H
#define TOLLGATE_TLS_HANDSHAKE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "metrics.h"

struct bufferevent;
struct evbuffer;
struct tg_config;

#define TG_HANDSHAKE_LOG_PER_SECOND 20

/* Why a handshake failed: the values of the metric's reason label, a
 * fixed set so that clients cannot add series. */
enum tg_handshake_reason {
	TG_HANDSHAKE_PROTOCOL,          /* no TLS version or cipher in common */
	TG_HANDSHAKE_CERTIFICATE,       /* the client rejected the certificate */
	TG_HANDSHAKE_CLOSED,            /* the client closed or reset the connection */
	TG_HANDSHAKE_TIMEOUT,           /* not done in limits.client_header_timeout */
	TG_HANDSHAKE_OTHER,             /* anything else, such as a malformed hello */
	TG_HANDSHAKE_REASONS
};

/* One listen address as the process started with it. Listeners stay
 * across reloads, so this does too; the workers' listeners of the
 * address share it. */
struct tg_tls_listener {
	char *address;                  /* as configured: the listener label */
	int tls;                        /* whether it serves TLS */
	_Atomic uint64_t failures[TG_HANDSHAKE_REASONS];
	struct tg_log_burst log;
};

/* Make one entry per listen address of cfg, the config the process starts
 * with, into *out. Returns 0, or -1 when out of memory (*out is then
 * NULL). */
int tg_tls_listeners_new(const struct tg_config *cfg, struct tg_tls_listener **out);

void tg_tls_listeners_free(struct tg_tls_listener *listeners, size_t n);

/* Whether the TLS connection of bev has not finished its handshake. */
int tg_tls_handshake_pending(struct bufferevent *bev);

/* The handshake of the client at client_addr on l ended without success:
 * libevent reported events on bev (BEV_EVENT_TIMEOUT for the client's
 * header timeout). Count it and log it. Worker threads; clears the
 * thread's OpenSSL error queue. */
void tg_tls_handshake_failed(struct tg_tls_listener *l, const char *client_addr,
                             struct bufferevent *bev, short events);

/* Append the metric family of the TLS listeners among the n, or nothing
 * when there are none. Returns 0, or -1 when out of memory. */
int tg_tls_handshake_write_metrics(const struct tg_tls_listener *listeners, size_t n,
                                   struct evbuffer *out, enum tg_metrics_format format);

#endif
