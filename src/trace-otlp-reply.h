/*
 * The partial success in an OTLP/HTTP trace endpoint's successful response:
 * how many spans of the export it rejected, and why.
 */
#ifndef TG_TRACE_OTLP_REPLY_H
#define TG_TRACE_OTLP_REPLY_H

#include <stddef.h>
#include <stdint.h>

/* The partial success of an ExportTraceServiceResponse. The message
 * points into the body read, or into a buffer of the reader's; it is not
 * NUL-terminated. */
struct tg_otlp_partial {
	int64_t rejected_spans;
	const char *message;
	size_t message_len;
};

/* The size of the message buffer that tg_otlp_reply_read() needs. */
#define TG_OTLP_REPLY_MESSAGE_MAX 256

/*
 * Read the partial success of a response body of len bytes, in the
 * encoding content_type names (application/x-protobuf, or else JSON, since
 * an OTLP/HTTP endpoint responds in the encoding of the request).
 * message_buf has room for TG_OTLP_REPLY_MESSAGE_MAX bytes of a JSON
 * message. Returns 0 with *out filled (all zero when the body has no
 * partial success), or -1 when the body is not a response of that
 * encoding.
 */
int tg_otlp_reply_read(const char *content_type, const unsigned char *body, size_t len,
                       char *message_buf, struct tg_otlp_partial *out);

#endif
