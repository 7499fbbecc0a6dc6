/*
 * Lock-free bounded span queue.
 *
 * Cell i starts with sequence i. A producer at position pos may write cell
 * pos % capacity when its sequence equals pos, and publishes the item by
 * setting it to pos + 1. The consumer at position pos may read the cell
 * when its sequence equals pos + 1, and frees it for the producer one lap
 * later by setting it to pos + capacity. Positions grow without wrapping
 * in practice (size_t), so the capacity need not be a power of two.
 */
#include <stdlib.h>

#include "trace-queue.h"

int
tg_span_queue_init(struct tg_span_queue *q, size_t capacity)
{
	q->cells = calloc(capacity, sizeof(*q->cells));
	if (q->cells == NULL)
		return -1;
	q->capacity = capacity;
	for (size_t i = 0; i < capacity; i++)
		atomic_init(&q->cells[i].sequence, i);
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	return 0;
}

void
tg_span_queue_free(struct tg_span_queue *q)
{
	free(q->cells);
	q->cells = NULL;
}

int
tg_span_queue_push(struct tg_span_queue *q, void *item)
{
	size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
	struct tg_span_queue_cell *cell;

	for (;;) {
		size_t seq;

		cell = &q->cells[pos % q->capacity];
		seq = atomic_load_explicit(&cell->sequence, memory_order_acquire);
		if (seq == pos) {
			/* The cell is free at our lap: claim the position. On
			 * failure pos holds the head another producer moved to. */
			if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
			                                          memory_order_relaxed,
			                                          memory_order_relaxed))
				break;
		} else if (seq < pos) {
			return -1;      /* the consumer has not freed it: full */
		} else {
			pos = atomic_load_explicit(&q->head, memory_order_relaxed);
		}
	}
	cell->item = item;
	atomic_store_explicit(&cell->sequence, pos + 1, memory_order_release);
	return 0;
}

void *
tg_span_queue_pop(struct tg_span_queue *q)
{
	size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	struct tg_span_queue_cell *cell = &q->cells[pos % q->capacity];
	void *item;

	/* A producer may have claimed the cell but not published it yet; the
	 * item then counts as not there, and the next pop finds it. */
	if (atomic_load_explicit(&cell->sequence, memory_order_acquire) != pos + 1)
		return NULL;
	item = cell->item;
	atomic_store_explicit(&cell->sequence, pos + q->capacity, memory_order_release);
	atomic_store_explicit(&q->tail, pos + 1, memory_order_relaxed);
	return item;
}

size_t
tg_span_queue_length(struct tg_span_queue *q)
{
	size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
	size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);

	return head > tail ? head - tail : 0;
}
