/*
 * The most recent traces, kept for GET /api/traces on the admin listener so
 * that traces can be read without a collector.
 *
 * The exporter thread adds spans and the admin (main) thread reads; a
 * mutex that only these two threads take guards the ring, so workers never
 * wait on it. Spans are shared with the exporter's send list through
 * span->refs, which only the exporter thread changes.
 */
#ifndef TOLLGATE_TRACE_RING_H
#define TOLLGATE_TRACE_RING_H

#include <pthread.h>
#include <stddef.h>

#include <jansson.h>

#include "trace-otlp.h"
#include "trace-t.h"

/* Spans a kept trace stores in itself before it allocates an array. The
 * trace of a request with one attempt and a filter or two has at most
 * four spans, so it takes no allocation, and no free when it goes. */
#define TG_RING_FIRST_SPANS 4

struct tg_ring_trace {
	uint8_t trace_id[TG_TRACE_ID_SIZE];
	struct tg_span **spans;         /* NULL while they all fit in "first" */
	struct tg_span *first[TG_RING_FIRST_SPANS];
	size_t n_spans, capacity;       /* capacity of spans, 0 while NULL */
	uint64_t added_seq;             /* order of arrival, for listing */
};

/* Kept traces are counted by the last TG_RING_TAIL_BITS bits of their
 * id, in 4096 counters (8 KiB). With the default 100 kept traces, about
 * 1 new trace in 40 then finds its counter taken and looks through them
 * all, where 1024 counters made it 1 in 10. */
#define TG_RING_TAIL_BITS 12

struct tg_trace_ring {
	pthread_mutex_t lock;
	struct tg_ring_trace *traces;   /* circular, oldest at head */
	size_t capacity;                /* traces kept; 0 keeps none */
	size_t head, count;
	uint64_t seq;
	/* Kept traces by the tail of their id, so that the first span of a
	 * new trace is most often known to be new without a look at every
	 * kept trace. Ids are random, or chosen by a client, which then
	 * costs itself only the look. */
	uint16_t *by_tail;
};

/* capacity is at most TG_RING_MAX_TRACES, and 0 keeps nothing. Returns
 * 0, or -1 when out of memory. */
int tg_trace_ring_init(struct tg_trace_ring *r, size_t capacity);

/* Release every span reference and the ring. */
void tg_trace_ring_free(struct tg_trace_ring *r);

/* Exporter thread: keep span under its trace, making the trace the newest
 * one when it was not kept yet (and evicting the oldest when full). Takes
 * a reference on span. Spans of one trace past TG_RING_MAX_SPANS are not
 * kept. */
void tg_trace_ring_add(struct tg_trace_ring *r, struct tg_span *span);

/* The same for n spans under one lock, in their order. */
void tg_trace_ring_add_spans(struct tg_trace_ring *r, struct tg_span *const *spans, size_t n);

/* Exporter thread: change how many traces are kept; the oldest go. */
void tg_trace_ring_resize(struct tg_trace_ring *r, size_t capacity);

/* Admin thread: {"traces": [summary, ...]}, newest first. A summary has
 * trace_id, root span name, start time, duration in seconds, span count,
 * whether a span has status ERROR, and the request id of the root span. */
json_t *tg_trace_ring_list(struct tg_trace_ring *r);

/* Admin thread: the trace with this id (32 lowercase hex digits) as an
 * OTLP ExportTraceServiceRequest, or NULL when it is not kept. */
json_t *tg_trace_ring_get(struct tg_trace_ring *r, const char *trace_id_hex,
                          const struct tg_otlp_resource *resource);

/* Drop a reference taken by the ring or the exporter; free at the last. */
void tg_span_unref(struct tg_span *span);

#define TG_RING_MAX_SPANS 1024

/* The maximum number of traces a ring keeps: the bound of
 * "tracing.recent_traces". */
#define TG_RING_MAX_TRACES 10000

#endif
