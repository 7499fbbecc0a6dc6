/*
 * OpenSSL contexts for listeners, upstreams and the tracing exporter.
 */
#ifndef TOLLGATE_TLS_H
#define TOLLGATE_TLS_H

#include <openssl/ssl.h>

#include "config-t.h"

struct bufferevent;

/* The file of a listener's TLS settings that a failure is about. */
enum tg_tls_server_file {
	TG_TLS_CERT,
	TG_TLS_KEY,
};

/* Create the server context of a TLS listener from the PEM certificate
 * chain in cert and its private key in key, loaded as every connection
 * then uses them. On failure, returns NULL, sets *failed to the file at
 * fault and writes what failed with the path and OpenSSL's reason into
 * why, for a config error. */
SSL_CTX *tg_tls_server_ctx(const char *cert, const char *key, enum tg_tls_server_file *failed,
                           char *why, size_t size);

/* Create a client context that verifies the server's certificate and name
 * (unless tls->verify is 0) against tls->ca_file, or else the system store.
 * On failure, returns NULL and writes what failed with OpenSSL's reason
 * into why, for a log line or a config error. */
SSL_CTX *tg_tls_client_ctx(const struct tg_tls_client_config *tls, char *why,
                           size_t size);

/* Create an SSL for one connection to host, a name or an IP address: SNI for
 * a name, and with verify the name or address the certificate must carry.
 * NULL when out of memory. */
SSL *tg_tls_client_ssl(SSL_CTX *ctx, const char *host, int verify);

/* Why the TLS session of an OpenSSL bufferevent failed: "TLS: " and
 * OpenSSL's reason, with the certificate check's result when that failed.
 * NULL when OpenSSL recorded no error for bev. Clears the thread's OpenSSL
 * error queue. */
const char *tg_tls_session_error(struct bufferevent *bev, char *buf, size_t size);

/* The most recent OpenSSL error of this thread as text, for logs. */
const char *tg_tls_error_string(unsigned long err, char *buf, size_t size);

#endif
