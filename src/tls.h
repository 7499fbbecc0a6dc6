/*
 * OpenSSL contexts for listeners and upstreams.
 */
#ifndef TOLLGATE_TLS_H
#define TOLLGATE_TLS_H

#include <openssl/ssl.h>

#include "config-t.h"

/* Server context for a TLS listener; logs and returns NULL on failure. */
SSL_CTX *tg_tls_server_ctx(const struct tg_listen *listen);

/* Client context for an https backend: verification on unless the backend
 * turns it off, with its CA file or the system store. */
SSL_CTX *tg_tls_client_ctx(const struct tg_backend *backend);

/* A new SSL for one upstream connection, with SNI and the expected host
 * name (or IP address) set for verification. */
SSL *tg_tls_client_ssl(SSL_CTX *ctx, const struct tg_backend *backend);

/* The most recent OpenSSL error of this thread as text, for logs. */
const char *tg_tls_error_string(unsigned long err, char *buf, size_t size);

#endif
