/*
 * The bounded queue between the workers, which submit finished spans, and
 * the exporter thread, which takes them.
 *
 * It is lock-free: a ring of cells with a sequence number each (Dmitry
 * Vyukov's bounded MPMC queue, used here with one consumer). A producer
 * claims a position with one compare-and-swap and never waits for another
 * producer or for the consumer, so a worker never blocks on tracing. When
 * the ring is full, a push fails at once and the caller drops the span and
 * counts it. A mutex would have been simpler, but a worker could then sit
 * behind the exporter thread when the scheduler preempts it inside the
 * lock.
 */
#ifndef TOLLGATE_TRACE_QUEUE_H
#define TOLLGATE_TRACE_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct tg_span_queue_cell {
	atomic_size_t sequence;
	void *item;
};

struct tg_span_queue {
	struct tg_span_queue_cell *cells;
	size_t capacity;
	/* Apart, so that producers and the consumer do not share a cache line. */
	_Alignas(64) atomic_size_t head;        /* next position to push */
	_Alignas(64) atomic_size_t tail;        /* next position to pop */
};

/* capacity is any number from 1. Returns 0, or -1 when out of memory. */
int tg_span_queue_init(struct tg_span_queue *q, size_t capacity);

/* Free the cells; the items left in the queue are the caller's. */
void tg_span_queue_free(struct tg_span_queue *q);

/* Any thread. Returns 0, or -1 when the queue is full. */
int tg_span_queue_push(struct tg_span_queue *q, void *item);

/* The consumer thread only. Returns the oldest item, or NULL when empty. */
void *tg_span_queue_pop(struct tg_span_queue *q);

/* Items in the queue, approximate while producers push. */
size_t tg_span_queue_length(struct tg_span_queue *q);

#endif
