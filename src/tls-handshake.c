/*
 * Failed TLS handshakes on the listeners (tls-handshake.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "config-t.h"
#include "metrics-table.h"
#include "tls-handshake.h"
#include "tls.h"

static const char *const reason_labels[TG_HANDSHAKE_REASONS] = {
	[TG_HANDSHAKE_PROTOCOL] = "protocol",
	[TG_HANDSHAKE_CERTIFICATE] = "certificate",
	[TG_HANDSHAKE_CLOSED] = "closed",
	[TG_HANDSHAKE_TIMEOUT] = "timeout",
	[TG_HANDSHAKE_OTHER] = "other",
};

int
tg_tls_listeners_new(const struct tg_config *cfg, struct tg_tls_listener **out)
{
	struct tg_tls_listener *listeners = calloc(cfg->n_listen, sizeof(*listeners));

	*out = NULL;
	if (listeners == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		listeners[i].tls = cfg->listen[i].tls_cert != NULL;
		listeners[i].address = strdup(cfg->listen[i].address);
		if (listeners[i].address == NULL) {
			tg_tls_listeners_free(listeners, i);
			return -1;
		}
	}
	*out = listeners;
	return 0;
}

void
tg_tls_listeners_free(struct tg_tls_listener *listeners, size_t n)
{
	if (listeners == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(listeners[i].address);
	free(listeners);
}

int
tg_tls_handshake_pending(struct bufferevent *bev)
{
	SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;

	return ssl != NULL && !SSL_is_init_finished(ssl);
}

/* The first error OpenSSL recorded for bev, or 0. libevent also records a
 * failed system call as the bare code SSL_ERROR_SYSCALL, which is no
 * OpenSSL error: errno describes that one. */
static unsigned long
first_tls_error(struct bufferevent *bev)
{
	unsigned long err;

	do
		err = bufferevent_get_openssl_error(bev);
	while (err == SSL_ERROR_SYSCALL);
	while (bufferevent_get_openssl_error(bev) != 0)
		continue;
	ERR_clear_error();
	return err;
}

static enum tg_handshake_reason
classify(unsigned long err, short events)
{
	if (events & BEV_EVENT_TIMEOUT)
		return TG_HANDSHAKE_TIMEOUT;
	if (err == 0)
		return TG_HANDSHAKE_CLOSED;
	if (ERR_GET_LIB(err) != ERR_LIB_SSL)
		return TG_HANDSHAKE_OTHER;

	switch (ERR_GET_REASON(err)) {
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TG_HANDSHAKE_CLOSED;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
		return TG_HANDSHAKE_PROTOCOL;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return TG_HANDSHAKE_CERTIFICATE;
	default:
		return TG_HANDSHAKE_OTHER;
	}
}

/* What went wrong, for the log line: OpenSSL's reason when it has one. */
static const char *
describe(unsigned long err, short events, int sys_error, char *buf, size_t size)
{
	if (events & BEV_EVENT_TIMEOUT)
		return "not done within limits.client_header_timeout";
	if (err != 0)
		return tg_tls_error_string(err, buf, size);
	if ((events & BEV_EVENT_EOF) || sys_error == 0)
		return "the client closed the connection";
	return strerror(sys_error);
}

void
tg_tls_handshake_failed(struct tg_tls_listener *l, const char *client_addr,
                        struct bufferevent *bev, short events)
{
	int sys_error = errno;
	unsigned long err = first_tls_error(bev);
	enum tg_handshake_reason reason = classify(err, events);
	uint64_t skipped;
	char text[256];

	atomic_fetch_add_explicit(&l->failures[reason], 1, memory_order_relaxed);
	if (!tg_log_enabled(TG_LOG_INFO) ||
	    !tg_log_burst_take(&l->log, TG_HANDSHAKE_LOG_PER_SECOND, tg_now_ms(), &skipped))
		return;
	if (skipped > 0)
		tg_info("client %s: TLS handshake on %s failed (%s): %s; %llu more failed "
		        "handshakes on it were not logged, over %d a second", client_addr,
		        l->address, reason_labels[reason],
		        describe(err, events, sys_error, text, sizeof(text)),
		        (unsigned long long)skipped, TG_HANDSHAKE_LOG_PER_SECOND);
	else
		tg_info("client %s: TLS handshake on %s failed (%s): %s", client_addr, l->address,
		        reason_labels[reason], describe(err, events, sys_error, text, sizeof(text)));
}

/* Write value as a label value: backslash, double quote and newline
 * escaped, as the exposition formats require. */
static int
write_label_value(struct evbuffer *out, const char *value)
{
	int rc = 0;

	for (const char *p = value; *p != '\0' && rc == 0; p++) {
		if (*p == '\\' || *p == '"')
			rc = evbuffer_add_printf(out, "\\%c", *p) < 0;
		else if (*p == '\n')
			rc = evbuffer_add(out, "\\n", 2);
		else
			rc = evbuffer_add(out, p, 1);
	}
	return rc;
}

static int
write_listener(struct evbuffer *out, const struct tg_tls_listener *l)
{
	static const char name[] = "tollgate_tls_handshake_errors_total";
	int rc = 0;

	for (size_t r = 0; r < TG_HANDSHAKE_REASONS && rc == 0; r++) {
		rc = evbuffer_add_printf(out, "%s{listener=\"", name) < 0;
		rc |= write_label_value(out, l->address);
		rc |= evbuffer_add_printf(out, "\",reason=\"%s\"} %llu\n", reason_labels[r],
		                          (unsigned long long)atomic_load(&l->failures[r])) < 0;
	}
	return rc;
}

int
tg_tls_handshake_write_metrics(const struct tg_tls_listener *listeners, size_t n,
                               struct evbuffer *out, enum tg_metrics_format format)
{
	int any_tls = 0;
	int rc;

	for (size_t i = 0; i < n; i++)
		any_tls |= listeners[i].tls;
	if (!any_tls)
		return 0;

	rc = tg_metrics_write_header(out, "tollgate_tls_handshake_errors_total", "counter",
	                             "TLS handshakes with clients that failed, by listen "
	                             "address and reason: protocol, certificate, closed, "
	                             "timeout or other.", format);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (listeners[i].tls)
			rc = write_listener(out, &listeners[i]);
	}
	return rc;
}
