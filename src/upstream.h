/*
 * Upstream connections: connect (plain or TLS) or reuse a pooled
 * connection, send one request, parse the response with llhttp, and hand
 * the head, body pieces and end to a handler. It knows nothing of LLM
 * providers or of the client side.
 */
#ifndef TOLLGATE_UPSTREAM_H
#define TOLLGATE_UPSTREAM_H

#include <stddef.h>

#include "config-t.h"
#include "errors.h"
#include "headers.h"

struct tg_worker;
struct tg_upstream_conn;
struct evbuffer;

/*
 * Events of one upstream exchange, called on the worker thread. After
 * on_complete or on_error no other call comes, and the connection is no
 * longer the handler's. A handler must not call tg_upstream_cancel() from
 * on_head or on_body; it returns non-zero from them to stop the exchange
 * instead (no on_error follows then). A head that arrived whole but is
 * refused (a content or transfer coding the gateway cannot read) goes to
 * on_head_refused with its status, 200-599, just before the on_error of
 * TG_E_UPSTREAM_INVALID, so the handler can tell that a head came.
 */
struct tg_upstream_handler {
	int (*on_head)(void *arg, int status, struct tg_headers *headers);
	int (*on_body)(void *arg, const char *data, size_t len);
	void (*on_complete)(void *arg);
	void (*on_error)(void *arg, enum tg_error err, const char *detail);
	void (*on_connected)(void *arg);        /* may be NULL */
	void (*on_head_refused)(void *arg, int status);     /* may be NULL */
};

/*
 * Send request (a whole HTTP/1.1 request: head and body) to backend. The
 * bytes are copied, so request may change after the call. A pooled
 * connection is reused when one is idle; when a reused connection fails
 * before any response byte arrives, the request is sent once more on a new
 * connection, since the upstream cannot have answered it.
 *
 * Returns the connection, or NULL when it could not even be started (the
 * handler's on_error is not called then; *err says why).
 */
struct tg_upstream_conn *tg_upstream_send(struct tg_worker *w,
                                          const struct tg_backend *backend,
                                          struct evbuffer *request,
                                          const struct tg_upstream_handler *handler,
                                          void *arg, enum tg_error *err);

/* Close the connection at once; no handler call follows. */
void tg_upstream_cancel(struct tg_upstream_conn *c);

/* Stop and restart reading the response (client back-pressure). */
void tg_upstream_pause(struct tg_upstream_conn *c);
void tg_upstream_resume(struct tg_upstream_conn *c);

/* Free every pooled connection of the worker. */
void tg_upstream_pools_free(struct tg_worker *w);

#endif
