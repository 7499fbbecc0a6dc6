/*
 * Request lifecycle: creation when a request starts arriving, dispatch once
 * it is read whole, and the single end point that logs and frees it.
 */
#ifndef TOLLGATE_REQUEST_H
#define TOLLGATE_REQUEST_H

#include "clock.h"
#include "request-t.h"

struct tg_request *tg_request_new(struct tg_client *client);

/* Route the fully read request and respond to it, locally or from upstream. */
void tg_request_dispatch(struct tg_request *req);

/* Respond with the gateway's own error response (the OpenAI error shape).
 * message may be NULL for the kind's default text. */
void tg_request_fail(struct tg_request *req, enum tg_error err, const char *message);

/* The client went away or timed out before the response was complete:
 * cancel the upstream at once and end the request with cause. */
void tg_request_abort(struct tg_request *req, enum tg_cause cause);

/* Called by the client connection once the whole response left the gateway
 * (or the connection failed): write the access-log line and free req. */
void tg_request_done(struct tg_request *req);

#endif
