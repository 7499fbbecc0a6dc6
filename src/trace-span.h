/*
 * Spans: creation, attributes, events, status, end. These functions do no
 * I/O and take no lock; a span belongs to one thread until it is submitted.
 *
 * Setters copy string values into the span's arena, which lives as long
 * as the span, except tg_attrs_static_string(). Keys and event names are
 * not copied: they must have static storage (an entry of tg_semconv_names
 * or a literal).
 * Out of memory, a setter drops the value and counts it as dropped, so
 * tracing never fails a request.
 */
#ifndef TOLLGATE_TRACE_SPAN_H
#define TOLLGATE_TRACE_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "trace-t.h"

/* Nanoseconds since the Unix epoch, from CLOCK_REALTIME. */

/* A new running span with a random span id; NULL when out of memory. */
struct tg_span *tg_span_new(const uint8_t trace_id[TG_TRACE_ID_SIZE],
                            const uint8_t parent_id[TG_SPAN_ID_SIZE],
                            enum tg_span_kind kind, const char *name,
                            uint64_t start_ns);

/* The same, with the span's memory taken from pool when it has some
 * (pool may be NULL). The span goes back to pool when freed. */
struct tg_span *tg_span_new_in(struct tg_span_pool *pool,
                               const uint8_t trace_id[TG_TRACE_ID_SIZE],
                               const uint8_t parent_id[TG_SPAN_ID_SIZE],
                               enum tg_span_kind kind, const char *name,
                               uint64_t start_ns);

/* Any thread: free the span, or give its memory back to its pool. */
void tg_span_free(struct tg_span *span);

/*
 * The memory of spans that one thread makes, given back by whichever
 * thread frees them (the exporter's, mostly). When another thread frees
 * a span to malloc, its memory returns to the making thread's heap only
 * through the slow bins. Callgrind measured about 1,200 instructions per
 * span in malloc then, and a span from the pool costs a few dozen.
 *
 * Only the owner thread makes spans from a pool; any thread frees them.
 * The pool keeps the memory of up to TG_SPAN_POOL_IDLE_MAX freed spans, and
 * goes when its owner has released it and its last span is freed, so a
 * span may outlive the thread that made it.
 */
#define TG_SPAN_POOL_IDLE_MAX 1024
struct tg_span_pool *tg_span_pool_new(void);

/* The owner lets go of pool (NULL does nothing). */
void tg_span_pool_release(struct tg_span_pool *pool);

/* The freed spans that pool keeps for reuse, at most TG_SPAN_POOL_IDLE_MAX
 * but for a race between givers. */
size_t tg_span_pool_idle(struct tg_span_pool *pool);

/*
 * Owner thread only: the memory of a freed struct tg_trace that pool
 * keeps, or NULL, and keeping one. The owner makes a trace per request
 * and frees it at the request's end, and its calloc() and free() cost
 * about 340 instructions. The pool keeps up to TG_SPAN_POOL_IDLE_MAX,
 * one per request in progress, so that concurrent requests need no
 * calloc() either.
 */
struct tg_trace *tg_span_pool_take_trace(struct tg_span_pool *pool);
void tg_span_pool_keep_trace(struct tg_span_pool *pool, struct tg_trace *t);

/* Attributes of a span, or of an event when given its attribute list. A
 * key set twice keeps the last value, as in the OpenTelemetry API. */
void tg_attrs_string(struct tg_attrs *a, const char *key, const char *value);
void tg_attrs_stringn(struct tg_attrs *a, const char *key, const char *value, size_t len);
/* Set key to value without copying it: value must have static storage,
 * such as a literal or one of llhttp's method names. A span outlives its
 * request, so a value that the request or the configuration owns needs
 * tg_attrs_string(). Callgrind counts about 140 instructions here and
 * 200 there for a value of a few bytes. */
void tg_attrs_static_string(struct tg_attrs *a, const char *key, const char *value);
/* The same for the len bytes at value, which the caller vouches need no
 * JSON escape (printable ASCII other than '"' and '\\'), as for a
 * literal or a name from a table that a unit test checks. A request sets
 * about 8 such values, and the strlen() and the check cost about 55
 * instructions for each (callgrind). */
void tg_attrs_static_plain(struct tg_attrs *a, const char *key, const char *value,
                           size_t len);
/* Set key to the string literal s, which must need no JSON escape. The
 * "" makes a pointer, whose sizeof is not its length, fail to compile. */
#define tg_attrs_literal(a, key, s) \
	tg_attrs_static_plain((a), (key), "" s, sizeof("" s) - 1)
void tg_attrs_int(struct tg_attrs *a, const char *key, int64_t value);
void tg_attrs_double(struct tg_attrs *a, const char *key, double value);
void tg_attrs_bool(struct tg_attrs *a, const char *key, int value);
/* items are copied; n may be 0 for an empty array. */
void tg_attrs_strings(struct tg_attrs *a, const char *key,
                      const char *const *items, size_t n);

/* The same without copying the strings, only the array: each item must
 * have static storage and need no JSON escape, as the finish reasons of
 * tg_known_finish_reason() (a unit test checks them). A copy and a check
 * cost about 90 instructions per item (callgrind). */
void tg_attrs_static_strings(struct tg_attrs *a, const char *key,
                             const char *const *items, size_t n);

/* The attribute called key, or NULL. */
const struct tg_attr *tg_attrs_find(const struct tg_attrs *a, const char *key);

/* Add an event at time_ns; returns its attribute list, or NULL when the
 * event was dropped (over TG_SPAN_MAX_EVENTS or out of memory). */
struct tg_attrs *tg_span_add_event(struct tg_span *span, const char *name,
                                   uint64_t time_ns);

/* Set the status. ERROR may carry a message (copied; NULL for none); an
 * ERROR is never downgraded by a later UNSET, as the API specifies. */
void tg_span_set_status(struct tg_span *span, enum tg_span_status status,
                        const char *message);

/* Set the span's name (copied). */
void tg_span_set_name(struct tg_span *span, const char *name);

/* End the span at end_ns, or at its start when end_ns is earlier. Ending
 * an ended span does nothing. */
void tg_span_end(struct tg_span *span, uint64_t end_ns);

#endif
