/*
 * The span tree of one request: where the trace comes from (a continued
 * traceparent or a new trace id), the sampling decision, the SERVER span
 * and its children, and what is sent upstream as traceparent.
 *
 * Times given to these functions are CLOCK_MONOTONIC nanoseconds, as
 * tg_now_ns() returns them; the tree turns them into Unix time.
 */
#ifndef TOLLGATE_TRACE_TREE_H
#define TOLLGATE_TRACE_TREE_H

#include <stdint.h>

#include "headers.h"
#include "trace-t.h"

struct tg_tracer;

/*
 * Start the tree of a request that began at start_mono, which was
 * start_wall on the system clock. The tree maps its later CLOCK_MONOTONIC
 * instants to wall time from this pair and reads no clock itself. A
 * request with exactly one valid traceparent header continues that trace
 * and keeps its sampled flag. Any other starts a new trace, sampled with
 * probability sample_ratio, and drops tracestate. The tree and its spans
 * take their memory from pool, the calling thread's (NULL: from malloc),
 * and the tree must then be finished or freed on that thread too. Returns NULL
 * when out of memory.
 */
struct tg_trace *tg_trace_begin(const struct tg_headers *headers, double sample_ratio,
                                const char *server_span_name, uint64_t start_mono,
                                uint64_t start_wall, struct tg_span_pool *pool);

/* Unix time of a CLOCK_MONOTONIC instant, on the tree's clock. */
uint64_t tg_trace_time(const struct tg_trace *t, uint64_t mono_ns);

/* Start a child of the server span. NULL when not sampled or out of
 * memory; every function below takes a NULL span and does nothing. */
struct tg_span *tg_trace_child(struct tg_trace *t, enum tg_span_kind kind,
                               const char *name, uint64_t start_mono);

/*
 * Start a CLIENT span for an upstream attempt and make it the tree's
 * current attempt. It always gets a span id, sampled or not, since the
 * traceparent sent upstream names it as the parent: afterwards
 * t->upstream_traceparent holds that header's value. NULL when out of
 * memory.
 */
struct tg_span *tg_trace_attempt_begin(struct tg_trace *t, const char *name,
                                       uint64_t start_mono);

/* End span at end_mono. */
void tg_trace_span_end(struct tg_trace *t, struct tg_span *span, uint64_t end_mono);

/* The trace id as 32 hex digits and a NUL in out. */
void tg_trace_id_hex(const struct tg_trace *t, char *out);

/*
 * End every running span at end_mono, the server span last so that it
 * covers its children; hand the spans of a sampled tree to tracer (which
 * may be NULL: they are freed) and free the tree.
 */
void tg_trace_finish(struct tg_trace *t, struct tg_tracer *tracer, uint64_t end_mono);

/* Free the tree and all its spans without submitting anything. */
void tg_trace_free(struct tg_trace *t);

#endif
