/*
 * The relay: the upstream handler that turns an upstream response into the
 * client's response. Streams (text/event-stream) go out as they arrive and
 * each event is parsed on the way; other bodies are buffered whole, bounded,
 * then sent.
 */
#ifndef TOLLGATE_RELAY_H
#define TOLLGATE_RELAY_H

#include "upstream.h"

struct tg_request;

extern const struct tg_upstream_handler tg_relay_handler;

/* Write a complete response of the gateway's own: status, extra header
 * lines (each ending in CRLF, may be NULL), and a JSON body. */
void tg_relay_local_response(struct tg_request *req, int status,
                             const char *extra_headers, struct evbuffer *body);

/* The client's output drained below its low mark: resume the upstream. */
void tg_relay_client_writable(struct tg_request *req);

#endif
