/*
 * OpenSSL contexts for listeners and upstreams.
 */
#include <arpa/inet.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"

const char *
tg_tls_error_string(unsigned long err, char *buf, size_t size)
{
	if (err == 0) {
		snprintf(buf, size, "no OpenSSL error recorded");
		return buf;
	}
	ERR_error_string_n(err, buf, size);
	return buf;
}

static void
log_openssl_error(const char *what, const char *subject)
{
	char text[256];

	tg_error("%s %s failed: %s", what, subject,
	         tg_tls_error_string(ERR_get_error(), text, sizeof(text)));
	ERR_clear_error();
}

SSL_CTX *
tg_tls_server_ctx(const struct tg_listen *listen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		log_openssl_error("creating the TLS context for", listen->address);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

	if (SSL_CTX_use_certificate_chain_file(ctx, listen->tls_cert) != 1) {
		log_openssl_error("loading the certificate", listen->tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, listen->tls_key, SSL_FILETYPE_PEM) != 1) {
		log_openssl_error("loading the private key", listen->tls_key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_openssl_error("matching the private key with the certificate of",
		                  listen->address);
		goto fail;
	}
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tg_tls_client_ctx(const struct tg_backend *backend)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		log_openssl_error("creating the TLS context for backend", backend->name);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

	if (!backend->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}

	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (backend->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, backend->ca_file, NULL) != 1) {
			log_openssl_error("loading the CA file", backend->ca_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		log_openssl_error("loading the system CA store for backend", backend->name);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int
is_ip_address(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

SSL *
tg_tls_client_ssl(SSL_CTX *ctx, const struct tg_backend *backend)
{
	SSL *ssl = SSL_new(ctx);
	int ip = is_ip_address(backend->host);

	if (ssl == NULL)
		return NULL;

	/* SNI carries host names only (RFC 6066, section 3). */
	if (!ip && SSL_set_tlsext_host_name(ssl, backend->host) != 1)
		goto fail;

	if (backend->tls_verify) {
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), backend->host)
		            : SSL_set1_host(ssl, backend->host);

		if (ok != 1)
			goto fail;
	}
	return ssl;

fail:
	SSL_free(ssl);
	return NULL;
}
