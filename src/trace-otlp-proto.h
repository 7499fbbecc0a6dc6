/*
 * OTLP/HTTP protobuf encoding of spans: the binary form of
 * ExportTraceServiceRequest (opentelemetry-proto, collector/trace/v1), sent
 * with Content-Type application/x-protobuf. It carries what the JSON
 * encoding of trace-otlp.h carries, with ids as raw bytes and times as
 * fixed64, and takes about half its bytes.
 */
#ifndef TOLLGATE_TRACE_OTLP_PROTO_H
#define TOLLGATE_TRACE_OTLP_PROTO_H

#include <stddef.h>

#include "json-writer.h"
#include "trace-otlp.h"
#include "trace-t.h"

/*
 * Append an ExportTraceServiceRequest holding spans (all ended) under one
 * resource and one instrumentation scope, in the order given, to w, used
 * here as a byte buffer. Returns the offset in w->data where the message
 * starts: the bytes from there to w->len are the request body. Up to a few
 * dozen bytes before that offset are unused, because the lengths that
 * precede the spans are known only once the spans are written. Out of
 * memory, w->failed is set and the bytes are cut.
 *
 * Strings that are not valid UTF-8, which proto3 requires, are written
 * with U+FFFD in place of the bad bytes, as in the JSON encoding.
 */
size_t tg_otlp_proto_write(struct tg_json_writer *w, struct tg_span *const *spans,
                           size_t n, const struct tg_otlp_resource *resource);

#endif
