/*
 * OpenSSL contexts for listeners, upstreams and the tracing exporter.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

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

/* Write "WHAT: REASON" into why, REASON being OpenSSL's latest error. */
static void
describe_openssl_error(char *why, size_t size, const char *what)
{
	char text[256];

	snprintf(why, size, "%s: %s", what,
	         tg_tls_error_string(ERR_get_error(), text, sizeof(text)));
	ERR_clear_error();
}

/* Write what failed with OpenSSL's reason into why, and free ctx.
 * Returns NULL, for the caller to return. */
static SSL_CTX *
fail_loading(SSL_CTX *ctx, char *why, size_t size, const char *what)
{
	describe_openssl_error(why, size, what);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tg_tls_server_ctx(const char *cert, const char *key, enum tg_tls_server_file *failed,
                  char *why, size_t size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char what[PATH_MAX + 160];

	*failed = TG_TLS_CERT;
	if (ctx == NULL)
		return fail_loading(NULL, why, size, "cannot create a TLS context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "cannot load a certificate chain from \"%s\" "
		         "(expected PEM certificates, the server's first)", cert);
		return fail_loading(ctx, why, size, what);
	}

	/* Loading the key also checks it against the certificate: the key
	 * of another certificate fails here with "key values mismatch". */
	*failed = TG_TLS_KEY;
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what), "cannot load a private key from \"%s\" that "
		         "matches the certificate (expected the certificate's PEM key)", key);
		return fail_loading(ctx, why, size, what);
	}
	return ctx;
}

SSL_CTX *
tg_tls_client_ctx(const struct tg_tls_client_config *tls, char *why, size_t size)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char what[PATH_MAX + 64];

	if (ctx == NULL) {
		describe_openssl_error(why, size, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

	if (!tls->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}

	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (tls->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
			snprintf(what, sizeof(what), "cannot load CA certificates from \"%s\" "
			         "(expected a PEM bundle)", tls->ca_file);
			describe_openssl_error(why, size, what);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		describe_openssl_error(why, size, "cannot load the system CA store");
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
tg_tls_client_ssl(SSL_CTX *ctx, const char *host, int verify)
{
	SSL *ssl = SSL_new(ctx);
	int ip = is_ip_address(host);

	if (ssl == NULL)
		return NULL;

	/* SNI carries host names only (RFC 6066, section 3). */
	if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		goto fail;

	if (verify) {
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
		            : SSL_set1_host(ssl, host);

		if (ok != 1)
			goto fail;
	}
	return ssl;

fail:
	SSL_free(ssl);
	return NULL;
}

const char *
tg_tls_session_error(struct bufferevent *bev, char *buf, size_t size)
{
	unsigned long err = bufferevent_get_openssl_error(bev);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long verify = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char text[200];

	/* libevent records a failed system call (a refused connect, a reset)
	 * as the bare code SSL_ERROR_SYSCALL, printed "error:00000005:lib(0)::
	 * reason(5)". That is no TLS error, so the caller reports errno. */
	while (err == SSL_ERROR_SYSCALL)
		err = bufferevent_get_openssl_error(bev);
	if (err == 0)
		return NULL;
	ERR_clear_error();

	/* OpenSSL's error is only "certificate verify failed". The
	 * verification result distinguishes an unknown CA from a wrong name. */
	if (ERR_GET_LIB(err) == ERR_LIB_SSL &&
	    ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK)
		snprintf(buf, size, "TLS: %s (%s)", tg_tls_error_string(err, text, sizeof(text)),
		         X509_verify_cert_error_string(verify));
	else
		snprintf(buf, size, "TLS: %s", tg_tls_error_string(err, text, sizeof(text)));
	return buf;
}
