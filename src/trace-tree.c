/*
 * The per-request span tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "trace-context.h"
#include "trace-export.h"
#include "trace-genai.h"
#include "trace-span.h"
#include "trace-tree.h"

/* OTLP SpanFlags: bit 8 tells whether bit 9 is known, and bit 9 that the
 * parent is remote (opentelemetry-proto trace.proto). */
#define SPAN_FLAGS_HAS_IS_REMOTE 0x100
#define SPAN_FLAGS_IS_REMOTE 0x200

/* Join every tracestate header with ',', as RFC 9110 allows for list
 * headers. NULL when there is none or memory ran out. */
static char *
joined_tracestate(const struct tg_headers *headers)
{
	char *joined = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&joined, &len);
	int first = 1;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < headers->count; i++) {
		if (strcasecmp(headers->items[i].name, "tracestate") != 0)
			continue;
		fprintf(out, "%s%s", first ? "" : ",", headers->items[i].value);
		first = 0;
	}
	fclose(out);
	if (first || joined == NULL || joined[0] == '\0') {
		free(joined);
		return NULL;
	}
	return joined;
}

/* The parent from traceparent: 0 when there is exactly one valid header. */
static int
incoming_parent(const struct tg_headers *headers, struct tg_traceparent *parent)
{
	const char *value = NULL;

	/* The length first: nearly every request has no traceparent, and a
	 * strcasecmp() per header cost about 40 instructions. */
	for (size_t i = 0; i < headers->count; i++) {
		if (headers->items[i].name_len != sizeof("traceparent") - 1 ||
		    strcasecmp(headers->items[i].name, "traceparent") != 0)
			continue;
		if (value != NULL)
			return -1;      /* two headers: which one is meant is unknown */
		value = headers->items[i].value;
	}
	return value == NULL ? -1 : tg_traceparent_parse(value, parent);
}

static int
add_span(struct tg_trace *t, struct tg_span *span)
{
	if (t->n_spans == t->spans_capacity) {
		size_t capacity = t->spans_capacity ? t->spans_capacity * 2 : 8;
		struct tg_span **spans = t->spans == t->first_spans
		                         ? malloc(capacity * sizeof(*spans))
		                         : realloc(t->spans, capacity * sizeof(*spans));

		if (spans == NULL)
			return -1;
		if (t->spans == t->first_spans)
			memcpy(spans, t->first_spans, t->n_spans * sizeof(*spans));
		t->spans = spans;
		t->spans_capacity = capacity;
	}
	t->spans[t->n_spans++] = span;
	return 0;
}

uint64_t
tg_trace_time(const struct tg_trace *t, uint64_t mono_ns)
{
	if (mono_ns >= t->mono_base_ns)
		return t->wall_base_ns + (mono_ns - t->mono_base_ns);
	return t->wall_base_ns - (t->mono_base_ns - mono_ns);
}

/* A span of the tree with the tree's ids, trace state and flags. */
static struct tg_span *
tree_span(struct tg_trace *t, const uint8_t *parent_id, enum tg_span_kind kind,
          const char *name, uint64_t start_mono, uint32_t flags)
{
	struct tg_span *span = tg_span_new_in(t->pool, t->trace_id, parent_id, kind, name,
	                                      tg_trace_time(t, start_mono));

	if (span == NULL)
		return NULL;
	span->flags = flags | (t->sampled ? TG_TRACE_FLAG_SAMPLED : 0);
	if (t->trace_state != NULL)
		span->trace_state = strdup(t->trace_state);
	if (add_span(t, span) != 0) {
		tg_span_free(span);
		return NULL;
	}
	return span;
}

struct tg_trace *
tg_trace_begin(const struct tg_headers *headers, double sample_ratio,
               const char *server_span_name, uint64_t start_mono,
               uint64_t start_wall, struct tg_span_pool *pool)
{
	struct tg_trace *t = pool != NULL ? tg_span_pool_take_trace(pool) : NULL;
	struct tg_traceparent parent;
	uint32_t flags = SPAN_FLAGS_HAS_IS_REMOTE;

	if (t != NULL)
		memset(t, 0, sizeof(*t));
	else
		t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->spans = t->first_spans;
	t->spans_capacity = sizeof(t->first_spans) / sizeof(t->first_spans[0]);
	t->pool = pool;
	t->wall_base_ns = start_wall;
	t->mono_base_ns = start_mono;

	if (incoming_parent(headers, &parent) == 0) {
		memcpy(t->trace_id, parent.trace_id, TG_TRACE_ID_SIZE);
		memcpy(t->remote_parent, parent.parent_id, TG_SPAN_ID_SIZE);
		t->sampled = parent.flags & TG_TRACE_FLAG_SAMPLED;
		t->trace_state = joined_tracestate(headers);
		flags |= SPAN_FLAGS_IS_REMOTE;
	} else {
		tg_id_random(t->trace_id, TG_TRACE_ID_SIZE);
		t->sampled = tg_trace_ratio_sampled(t->trace_id, sample_ratio);
	}

	t->server = tree_span(t, t->remote_parent, TG_SPAN_SERVER, server_span_name,
	                      start_mono, flags);
	if (t->server == NULL) {
		tg_trace_free(t);
		return NULL;
	}
	return t;
}

struct tg_span *
tg_trace_child(struct tg_trace *t, enum tg_span_kind kind, const char *name,
               uint64_t start_mono)
{
	if (!t->sampled)
		return NULL;
	return tree_span(t, t->server->span_id, kind, name, start_mono,
	                 SPAN_FLAGS_HAS_IS_REMOTE);
}

struct tg_span *
tg_trace_attempt_begin(struct tg_trace *t, const char *name, uint64_t start_mono)
{
	struct tg_span *span = tree_span(t, t->server->span_id, TG_SPAN_CLIENT, name,
	                                 start_mono, SPAN_FLAGS_HAS_IS_REMOTE);

	if (span == NULL)
		return NULL;
	tg_genai_attempt_reset(t);
	t->attempt = span;
	t->last_attempt = span;
	tg_traceparent_format(t->upstream_traceparent, t->trace_id, span->span_id,
	                      t->sampled ? TG_TRACE_FLAG_SAMPLED : 0);
	return span;
}

void
tg_trace_span_end(struct tg_trace *t, struct tg_span *span, uint64_t end_mono)
{
	if (span != NULL)
		tg_span_end(span, tg_trace_time(t, end_mono));
}

void
tg_trace_id_hex(const struct tg_trace *t, char *out)
{
	/* Once an attempt began, the traceparent sent upstream contains these
	 * digits: a copy costs a tenth of the 80 instructions of encoding
	 * them again for the access log (callgrind). */
	if (t->last_attempt != NULL) {
		memcpy(out, t->upstream_traceparent + TG_TRACEPARENT_TRACE_ID,
		       2 * TG_TRACE_ID_SIZE);
		out[2 * TG_TRACE_ID_SIZE] = '\0';
		return;
	}
	tg_hex_encode(out, t->trace_id, TG_TRACE_ID_SIZE);
}

void
tg_trace_free(struct tg_trace *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_spans; i++)
		tg_span_free(t->spans[i]);
	tg_genai_attempt_reset(t);
	if (t->spans != t->first_spans)
		free(t->spans);
	free(t->trace_state);
	if (t->pool != NULL)
		tg_span_pool_keep_trace(t->pool, t);
	else
		free(t);
}

void
tg_trace_finish(struct tg_trace *t, struct tg_tracer *tracer, uint64_t end_mono)
{
	uint64_t end = tg_trace_time(t, end_mono);

	/* Children first: a child that ran to the end of the request must
	 * not end after the server span. */
	for (size_t i = t->n_spans; i > 0; i--)
		tg_span_end(t->spans[i - 1], end);

	if (t->sampled && tracer != NULL) {
		for (size_t i = 0; i < t->n_spans; i++)
			tg_tracer_submit(tracer, t->spans[i]);
		t->n_spans = 0;
	}
	tg_trace_free(t);
}
