/*
 * OTLP/HTTP JSON encoding of spans (opentelemetry-proto, the JSON mapping
 * of ExportTraceServiceRequest): lowerCamelCase keys, trace and span ids
 * as lowercase hex, enums as integers, 64-bit integers as decimal strings.
 */
#ifndef TOLLGATE_TRACE_OTLP_H
#define TOLLGATE_TRACE_OTLP_H

#include <stddef.h>

#include <jansson.h>

#include "json-writer.h"
#include "trace-t.h"

/* The instrumentation scope's name, also telemetry.sdk.name. */
#define TG_OTLP_SCOPE_NAME "tollgate"

/* What every span of an export shares: the resource and the scope. */
struct tg_otlp_resource {
	const char *service_name;
	const char *service_version;    /* also the scope's version */
	const char *instance_id;        /* service.instance.id; NULL for none */
};

/*
 * Fill items and attrs with the resource's attributes (service.name,
 * service.version, telemetry.sdk.name and .language, service.instance.id
 * when known), with their lengths set, as both encodings write them.
 * attrs borrows items and r's strings: it is to read, not to free.
 */
void tg_otlp_resource_attrs(const struct tg_otlp_resource *r, struct tg_attr items[5],
                            struct tg_attrs *attrs);

/*
 * Append {"resourceSpans": [...]} holding spans (all ended) under one
 * resource and one instrumentation scope, in the order given, to w as
 * compact JSON text. Out of memory, w->failed is set and the text is cut.
 * Attribute values that are not valid UTF-8 are written with U+FFFD in
 * place of the bad bytes (see tg_json_stringn), so one bad value never
 * costs a batch.
 */
void tg_otlp_write(struct tg_json_writer *w, struct tg_span *const *spans, size_t n,
                   const struct tg_otlp_resource *resource);

/* Append one span to w as an OTLP Span object. */
void tg_otlp_write_span(struct tg_json_writer *w, const struct tg_span *span);

/*
 * Return the text of tg_otlp_write() read back as a jansson tree (new
 * reference, or NULL when out of memory), for the admin listener, which
 * dumps it in its own format. Reading the text back keeps one encoding
 * for both; it costs a parse, which is why the export path sends the text.
 */
json_t *tg_otlp_encode(struct tg_span *const *spans, size_t n,
                       const struct tg_otlp_resource *resource);

#endif
