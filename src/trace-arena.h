/*
 * The memory of one span: its name, the attribute lists of the span and
 * of its events, their string values and the event list, carved from
 * blocks that are freed together with the span.
 *
 * Spans are made on a worker thread and freed on the exporter thread, so a
 * freed chunk never returns to the cache of the thread that allocates the
 * next one. Each allocation then costs a few hundred instructions on both
 * threads (measured with callgrind). The first block comes in the span's
 * own allocation (trace-span.c), so most spans take one malloc.
 */
#ifndef TOLLGATE_TRACE_ARENA_H
#define TOLLGATE_TRACE_ARENA_H

#include <stddef.h>

/* A block of a span's memory. Room taken is never given back: a value
 * set again takes new room, and the old one stays until the span goes. */
struct tg_span_block {
	struct tg_span_block *next;     /* the blocks filled before */
	char *bytes;
	size_t used, size;
	int allocated;                  /* 1 when tg_arena_free() frees it */
};

struct tg_span_arena {
	struct tg_span_block *head;     /* the block being filled, or NULL */
};

/* Start an arena on the caller's block first, of size bytes at bytes
 * (aligned for any attribute value). */
void tg_arena_init(struct tg_span_arena *a, struct tg_span_block *first, char *bytes,
                   size_t size);

/* The slow path of tg_arena_alloc(): room in a new block. */
void *tg_arena_alloc_block(struct tg_span_arena *a, size_t size, size_t align);

/*
 * Room for size bytes aligned to align (a power of two, at most that of a
 * pointer or a 64-bit number); NULL when out of memory. Inline, because
 * a span takes a few dozen pieces, nearly all from the block at hand.
 */
static inline void *
tg_arena_alloc(struct tg_span_arena *a, size_t size, size_t align)
{
	struct tg_span_block *head = a->head;
	size_t at;

	if (head == NULL)
		return tg_arena_alloc_block(a, size, align);
	at = (head->used + align - 1) & ~(align - 1);
	if (at > head->size || size > head->size - at)
		return tg_arena_alloc_block(a, size, align);
	head->used = at + size;
	return head->bytes + at;
}

/* Room for size bytes as tg_arena_alloc() gives, with a copy of the
 * first used bytes at old (NULL when used is 0) at its start: an array
 * grown in the arena. The old room stays unused until the span goes. */
void *tg_arena_grow(struct tg_span_arena *a, const void *old, size_t used, size_t size,
                    size_t align);

/* Free the blocks that tg_arena_alloc() allocated. */
void tg_arena_free(struct tg_span_arena *a);

#endif
