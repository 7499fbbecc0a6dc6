/*
 * The tracer: the process-wide end of tracing. Workers submit finished
 * spans into its bounded lock-free queue. Its own thread, with its own
 * event base, drains the queue into the recent-traces ring and sends the
 * spans in batches to the OTLP/HTTP endpoint with libevent's HTTP client,
 * over http or https.
 * One export is in flight at a time, as in the OpenTelemetry batch span
 * processor.
 *
 * A worker never waits for the tracer: when the queue holds max_queue_size
 * spans, a submitted span is dropped and counted (tollgate_spans_dropped_total).
 */
#ifndef TOLLGATE_TRACE_EXPORT_H
#define TOLLGATE_TRACE_EXPORT_H

#include <stdint.h>

#include <jansson.h>

#include "config-t.h"
#include "metrics.h"
#include "trace-t.h"

struct evbuffer;

struct tg_tracer;

struct tg_tracer_stats {
	uint64_t spans_queued;          /* submitted, not yet sent or dropped */
	uint64_t spans_dropped;         /* queue full */
	uint64_t spans_exported;        /* accepted by the endpoint */
	uint64_t spans_failed;          /* export failed for good */
	uint64_t export_requests;       /* HTTP requests sent, retries included */
};

/*
 * Make the tracer for cfg: the queue is sized by cfg's
 * tracing.batch.max_queue_size, which a reload cannot change. Its thread
 * does not run yet. Without tracing in cfg it has no event loop either,
 * until a config that turns tracing on is posted. Returns NULL after
 * logging why.
 */
struct tg_tracer *tg_tracer_new(struct tg_config *cfg);

/* Start the exporter thread, when the tracer has a loop (tracing is on).
 * Returns 0, or -1 after logging why. */
int tg_tracer_start(struct tg_tracer *t);

/* Thread-safe once the exporter thread runs; before that, from the main
 * thread only: use cfg (a new reference is taken) for the exports, the
 * sampling-independent settings and the ring size from now on. A first
 * config with tracing on starts the thread. */
void tg_tracer_post_config(struct tg_tracer *t, struct tg_config *cfg);

/*
 * Main thread, once no worker submits any more: send what is queued, for at
 * most tracing.otlp.shutdown_timeout and without retries, stop the thread
 * and free the tracer. t may be NULL.
 */
void tg_tracer_stop(struct tg_tracer *t);

/* Any thread: queue span (ended) for export, or drop and count it. The
 * tracer owns span from now on in both cases. Returns 0, or -1 when it was
 * dropped. */
int tg_tracer_submit(struct tg_tracer *t, struct tg_span *span);

/* Any thread. */
void tg_tracer_stats(struct tg_tracer *t, struct tg_tracer_stats *out);

/*
 * Any thread: append the tracer's counters to out in the given format:
 * tollgate_spans_dropped_total, tollgate_spans_exported_total,
 * tollgate_spans_export_failed_total, tollgate_span_export_requests_total
 * and the gauge tollgate_spans_queued. Returns 0, or -1 when out of memory.
 */
int tg_tracer_write_metrics(struct tg_tracer *t, struct evbuffer *out,
                            enum tg_metrics_format format);

/* Admin thread: GET /api/traces and GET /api/traces/{trace_id}. The list
 * also carries the counters of tg_tracer_stats. get returns NULL when
 * the trace is not kept. */
json_t *tg_tracer_recent_list(struct tg_tracer *t);
json_t *tg_tracer_recent_get(struct tg_tracer *t, const char *trace_id_hex);

#endif
