/*
 * The TLS contexts of a configuration snapshot (tls-config.h).
 */
#include <limits.h>
#include <string.h>

#include "config-parse.h"
#include "tls-config.h"
#include "tls.h"

static void
load_listener(struct load_ctx *ctx, const char *path, struct tg_listen *l)
{
	enum tg_tls_server_file failed;
	char child[PATH_LEN], why[PATH_MAX + 400];

	if (l->tls_cert == NULL || l->tls_key == NULL)
		return;
	l->tls_ctx = tg_tls_server_ctx(l->tls_cert, l->tls_key, &failed, why, sizeof(why));
	if (l->tls_ctx == NULL)
		report(ctx, path_key(child, path, failed == TG_TLS_CERT ? "tls.cert" : "tls.key"),
		       "%s", why);
}

static int
same_client_settings(const struct tg_tls_client_config *a, const struct tg_tls_client_config *b)
{
	if (a->verify != b->verify)
		return 0;
	if (a->ca_file == NULL || b->ca_file == NULL)
		return a->ca_file == b->ca_file;
	return strcmp(a->ca_file, b->ca_file) == 0;
}

/* The context of an earlier backend of cfg, before index n, with the same
 * settings as b, or NULL. Sharing it reads a CA bundle, the system's
 * included, once per load rather than once per backend. */
static SSL_CTX *
context_to_share(const struct tg_config *cfg, size_t n, const struct tg_backend *b)
{
	for (size_t i = 0; i < n; i++) {
		const struct tg_backend *other = &cfg->backends[i];

		if (other->tls_ctx != NULL && same_client_settings(&other->tls_config, &b->tls_config))
			return other->tls_ctx;
	}
	return NULL;
}

static void
load_backend(struct load_ctx *ctx, const struct tg_config *cfg, size_t n)
{
	struct tg_backend *b = &cfg->backends[n];
	SSL_CTX *shared;
	char backend[PATH_LEN], child[PATH_LEN], why[PATH_MAX + 400];

	if (!b->tls || b->name == NULL)
		return;
	shared = context_to_share(cfg, n, b);
	if (shared != NULL) {
		SSL_CTX_up_ref(shared);
		b->tls_ctx = shared;
		return;
	}
	b->tls_ctx = tg_tls_client_ctx(&b->tls_config, why, sizeof(why));
	if (b->tls_ctx == NULL) {
		path_key(backend, "backends", b->name);
		report(ctx, path_key(child, backend, b->tls_config.ca_file != NULL ? "tls.ca_file"
		                                                                   : "tls"), "%s", why);
	}
}

void
tg_tls_load_contexts(struct load_ctx *ctx, struct tg_config *cfg)
{
	char child[PATH_LEN];

	for (size_t i = 0; i < cfg->n_listen; i++)
		load_listener(ctx, path_index(child, "listen", i), &cfg->listen[i]);
	for (size_t i = 0; i < cfg->n_backends; i++)
		load_backend(ctx, cfg, i);
}

void
tg_tls_free_contexts(struct tg_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listen; i++)
		SSL_CTX_free(cfg->listen[i].tls_ctx);
	for (size_t i = 0; i < cfg->n_backends; i++)
		SSL_CTX_free(cfg->backends[i].tls_ctx);
}
