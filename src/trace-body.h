/*
 * The request body of an OTLP export: the encoded batch, lent to
 * libevent's output buffers by reference instead of copied into them.
 * A batch of 512 spans takes hundreds of kilobytes, and its copy took
 * about an eighth of the exporter thread's instructions.
 *
 * libevent may hold a reference after the request that took it has
 * ended (in a connection's output buffer), so the body counts its
 * holders: the tracer, and each buffer until it lets go. The tracer
 * rewrites the body only when it is the one holder left. Exporter
 * thread only, or the main thread after it ended.
 */
#ifndef TOLLGATE_TRACE_BODY_H
#define TOLLGATE_TRACE_BODY_H

#include "json-writer.h"

struct evbuffer;

struct tg_export_body {
	struct tg_json_writer text;     /* JSON text or protobuf bytes */
	size_t start;           /* of the body in text.data: a protobuf request
	                           starts after room left for its header */
	const char *content_type;       /* of the encoding, for every attempt */
	unsigned holders;       /* the tracer, and each buffer referencing text */
};

/* Create an empty body held by the caller. Returns NULL when out of memory. */
struct tg_export_body *tg_export_body_new(void);

/* Release the caller's hold on body, which the last holder frees. body may
 * be NULL. */
void tg_export_body_release(struct tg_export_body *body);

/* Return 1 when a buffer still references the text, which must then not
 * change, else 0. */
int tg_export_body_lent(const struct tg_export_body *body);

/* Append the bytes from start to out by reference. out keeps body until libevent
 * frees the bytes. Returns 0, or -1 when out of memory. */
int tg_export_body_lend(struct tg_export_body *body, struct evbuffer *out);

#endif
