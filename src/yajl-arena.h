/*
 * yajl parse handles whose memory comes from a block of the calling thread.
 *
 * A yajl (2.1) parse allocates its handle, lexer and state stack, and two
 * buffers of 2 KiB that double as they fill: one for a token split
 * between chunks of the text, one for a string with escapes. With malloc
 * that is four to seven calls per body or stream event, and the 2 KiB
 * buffers make glibc consolidate its fast bins. A handle made here takes
 * its memory from a block of the thread instead, bumping through it. A
 * realloc of the latest allocation grows in place, and a free does
 * nothing until the block is reset.
 *
 * Contract:
 * - tg_yajl_free() frees what tg_yajl_alloc() made, on the same thread.
 * - Handles may nest (a parse started inside a callback of another) and
 *   may be freed in any order. The block is reset when the last handle
 *   open on the thread is freed, so nested handles share it until then.
 * - What does not fit in the rest of the block comes from malloc and goes
 *   back to free, so a large body costs what it did before.
 * - Memory that yajl returns to the caller (yajl_get_error()) is valid
 *   only until the handle is freed.
 */
#ifndef TOLLGATE_YAJL_ARENA_H
#define TOLLGATE_YAJL_ARENA_H

#include <yajl/yajl_parse.h>

/* yajl_alloc() with the thread's block as its allocator. Returns NULL
 * when memory ran out. */
yajl_handle tg_yajl_alloc(const yajl_callbacks *callbacks, void *ctx);

/* yajl_free(), then reset the thread's block if no handle is open. */
void tg_yajl_free(yajl_handle h);

#endif
