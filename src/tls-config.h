/*
 * The TLS contexts of a configuration snapshot: one per TLS listener and
 * one per https:// backend, made from the files as they are when the
 * snapshot is loaded. The start, each reload and tollgate -t load the
 * config the same way, so a file that the check accepts is the one the
 * gateway serves. A file that OpenSSL cannot use fails the check or the
 * reload, rather than the next start or every request.
 */
#ifndef TOLLGATE_TLS_CONFIG_H
#define TOLLGATE_TLS_CONFIG_H

#include "config-parse.h"

/* Make cfg's listener and backend contexts, reporting each file OpenSSL
 * cannot use at its key path, with the file and OpenSSL's reason. Values
 * that failed to parse are skipped: they were reported already. A
 * check_fn of the loader (config.c). */
void tg_tls_load_contexts(struct load_ctx *ctx, struct tg_config *cfg);

/* Release what tg_tls_load_contexts() made; a field left NULL is skipped. */
void tg_tls_free_contexts(struct tg_config *cfg);

#endif
