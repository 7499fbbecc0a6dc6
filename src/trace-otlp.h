/*
 * OTLP/HTTP JSON encoding of spans (opentelemetry-proto, the JSON mapping
 * of ExportTraceServiceRequest): lowerCamelCase keys, trace and span ids
 * as lowercase hex, enums as integers, 64-bit integers as decimal strings.
 */
#ifndef TOLLGATE_TRACE_OTLP_H
#define TOLLGATE_TRACE_OTLP_H

#include <stddef.h>

#include <jansson.h>

#include "trace-t.h"

/* What every span of an export shares: the resource and the scope. */
struct tg_otlp_resource {
	const char *service_name;
	const char *service_version;    /* also the scope's version */
	const char *instance_id;        /* service.instance.id; NULL for none */
};

/*
 * Build {"resourceSpans": [...]} holding spans (all ended) under one
 * resource and one instrumentation scope, in the order given. Returns a
 * new reference, or NULL when out of memory.
 */
json_t *tg_otlp_encode(struct tg_span *const *spans, size_t n,
                       const struct tg_otlp_resource *resource);

/* The same as compact JSON text, to free(); NULL when out of memory. */
char *tg_otlp_dumps(struct tg_span *const *spans, size_t n,
                    const struct tg_otlp_resource *resource);

/* One span as an OTLP Span object (new reference, or NULL). */
json_t *tg_otlp_span(const struct tg_span *span);

#endif
