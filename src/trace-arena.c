/*
 * Span memory: a list of blocks, the newest first.
 */
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace-arena.h"

/* Bytes of each block after the first: room for a few events or a short
 * captured message. A larger value gets a block of its own. */
#define BLOCK_SIZE 1024

/* The header of an allocated block, rounded up so that its bytes, which
 * follow it, are aligned for any attribute value. */
#define HEADER_SIZE \
	((sizeof(struct tg_span_block) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

void
tg_arena_init(struct tg_span_arena *a, struct tg_span_block *first, char *bytes, size_t size)
{
	first->next = NULL;
	first->bytes = bytes;
	first->used = 0;
	first->size = size;
	first->allocated = 0;
	a->head = first;
}

void *
tg_arena_alloc_block(struct tg_span_arena *a, size_t size, size_t align)
{
	struct tg_span_block *head = a->head, *block;
	size_t room = size > BLOCK_SIZE ? size : BLOCK_SIZE;

	(void)align;            /* the bytes of a new block are aligned for any value */
	block = malloc(HEADER_SIZE + room);
	if (block == NULL)
		return NULL;
	block->bytes = (char *)block + HEADER_SIZE;
	block->used = size;
	block->size = room;
	block->allocated = 1;

	/* A value larger than a block gets a block of its own behind the
	 * head, so that the head's free room is still used. */
	if (size > BLOCK_SIZE && head != NULL) {
		block->next = head->next;
		head->next = block;
	} else {
		block->next = head;
		a->head = block;
	}
	return block->bytes;
}

void *
tg_arena_grow(struct tg_span_arena *a, const void *old, size_t used, size_t size,
              size_t align)
{
	char *grown = tg_arena_alloc(a, size, align);

	if (grown != NULL && used > 0)
		memcpy(grown, old, used);
	return grown;
}

void
tg_arena_free(struct tg_span_arena *a)
{
	while (a->head != NULL) {
		struct tg_span_block *next = a->head->next;

		if (a->head->allocated)
			free(a->head);
		a->head = next;
	}
}
