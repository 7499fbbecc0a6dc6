/*
 * The thread's block for yajl handles (yajl-arena.h).
 *
 * The block is thread-local, like malloc's own per-thread caches, so that
 * the readers that parse with yajl (reply-digest.c, filter-text.c) need no
 * worker to pass in, and unit tests call them as they are. It is a static
 * array, so a thread that ends leaves nothing allocated.
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "yajl-arena.h"

/* Room for a handle, its lexer and stack (under 400 bytes with yajl
 * 2.1) and both buffers grown once to 4 KiB, with space left for a
 * nested handle. */
#define BLOCK_SIZE 16384

#define ALIGNMENT _Alignof(max_align_t)

struct arena {
	_Alignas(max_align_t) unsigned char block[BLOCK_SIZE];
	size_t used;            /* bytes handed out, each allocation rounded up */
	size_t last;            /* offset of the latest allocation */
	unsigned open;          /* handles made and not yet freed */
};

static _Thread_local struct arena thread_arena;

static int
in_block(const struct arena *a, const void *p)
{
	const unsigned char *c = p;

	return c >= a->block && c < a->block + BLOCK_SIZE;
}

/* n rounded up to the alignment, or 0 when that overflows. */
static size_t
aligned_size(size_t n)
{
	size_t size = (n + ALIGNMENT - 1) & ~(size_t)(ALIGNMENT - 1);

	return size < n ? 0 : size;
}

static void *
arena_malloc(void *ctx, size_t n)
{
	struct arena *a = ctx;
	size_t size = aligned_size(n > 0 ? n : 1);

	if (size == 0 || size > BLOCK_SIZE - a->used)
		return malloc(n);
	a->last = a->used;
	a->used += size;
	return a->block + a->last;
}

/* The latest allocation grows or shrinks in place while it fits. Any
 * other block memory moves. Its old size is not recorded, but it ends
 * before a->used, so the copy takes the bytes up to there, at most n. */
static void *
arena_realloc(void *ctx, void *p, size_t n)
{
	struct arena *a = ctx;
	size_t at, size, old_used;
	void *moved;

	if (p == NULL)
		return arena_malloc(ctx, n);
	if (!in_block(a, p))
		return realloc(p, n);

	at = (size_t)((unsigned char *)p - a->block);
	size = aligned_size(n > 0 ? n : 1);
	if (at == a->last && size != 0 && size <= BLOCK_SIZE - at) {
		a->used = at + size;
		return p;
	}

	old_used = a->used;
	moved = arena_malloc(ctx, n);
	if (moved != NULL)
		memcpy(moved, p, n < old_used - at ? n : old_used - at);
	return moved;
}

/* Block memory comes back all at once, when the block is reset. */
static void
arena_free(void *ctx, void *p)
{
	if (!in_block(ctx, p))
		free(p);
}

static void
release_handle(struct arena *a)
{
	assert(a->open > 0);
	if (--a->open == 0) {
		a->used = 0;
		a->last = 0;
	}
}

yajl_handle
tg_yajl_alloc(const yajl_callbacks *callbacks, void *ctx)
{
	struct arena *a = &thread_arena;
	yajl_alloc_funcs funcs = {arena_malloc, arena_realloc, arena_free, a};
	yajl_handle h;

	a->open++;
	h = yajl_alloc(callbacks, &funcs, ctx);
	if (h == NULL)
		release_handle(a);
	return h;
}

void
tg_yajl_free(yajl_handle h)
{
	yajl_free(h);
	release_handle(&thread_arena);
}
