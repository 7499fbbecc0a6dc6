/*
 * The span model: attributes, events, status and end of one span, and
 * the pools that recycle span memory.
 *
 * Every traced request sets a few dozen attributes. So a span's name,
 * attribute lists and string values share the span's arena
 * (trace-arena.h) instead of taking an allocation each. A key is found by
 * its length and bytes, and a TG_SC() name by its entry of the semconv
 * table, which its address gives.
 */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json-writer.h"
#include "trace-context.h"
#include "trace-semconv.h"
#include "trace-span.h"

#define TG_SEMCONV_FITS(id, name) \
	_Static_assert(sizeof(name) <= TG_SEMCONV_SLOT, "the name " name " needs a larger TG_SEMCONV_SLOT");
TG_SEMCONV_TABLE(TG_SEMCONV_FITS)
#undef TG_SEMCONV_FITS

const char tg_semconv_slots[TG_SC_COUNT][TG_SEMCONV_SLOT] = {
#define TG_SEMCONV_TEXT(id, name) [TG_SC_##id] = name,
	TG_SEMCONV_TABLE(TG_SEMCONV_TEXT)
#undef TG_SEMCONV_TEXT
};

const uint8_t tg_semconv_lengths[TG_SC_COUNT] = {
#define TG_SEMCONV_LENGTH(id, name) [TG_SC_##id] = sizeof(name) - 1,
	TG_SEMCONV_TABLE(TG_SEMCONV_LENGTH)
#undef TG_SEMCONV_LENGTH
};

const char *const tg_semconv_names[TG_SC_COUNT] = {
#define TG_SEMCONV_NAME(id, name) tg_semconv_slots[TG_SC_##id],
	TG_SEMCONV_TABLE(TG_SEMCONV_NAME)
#undef TG_SEMCONV_NAME
};

/* Bytes of the arena block that comes in one allocation with the span:
 * room for the name, SPAN_CAPACITY attributes and a few events of each
 * span of a chat completion, so that most spans take one malloc, or none
 * when their pool has one. */
#define FIRST_BLOCK 2048

/* Attributes a span has room for from the start: the spans of a chat
 * completion set 3 to 16, and growing the list from FIRST_CAPACITY took
 * about 100 instructions per span. */
#define SPAN_CAPACITY 16

/* A span with the first block of its arena. The span comes first, so
 * that the span's address is the allocation's. */
struct span_storage {
	struct tg_span span;
	struct tg_span_block first;
	alignas(max_align_t) char bytes[FIRST_BLOCK];
};

/*
 * A pool is a stack of freed spans. Any thread pushes a span with a
 * compare-and-swap, and only the owner takes spans off, the whole stack at
 * once with an exchange. Since nothing leaves the stack alone, a span
 * cannot leave and come back between a pusher's read and its swap (the
 * ABA problem), so the pointer needs no counter beside it.
 *
 * The pool keeps at most TG_SPAN_POOL_IDLE_MAX freed spans (about 2.3 MiB)
 * and as many traces. Past that, freed memory goes back to malloc. Without
 * the bound, a burst of traced streams would leave its peak of span memory
 * held for the life of the process. The bound is loose: givers on two
 * threads may both pass it by one.
 */
struct tg_span_pool {
	_Atomic(struct tg_span *) returned;     /* spans that any thread freed */
	struct tg_span *spare;          /* owner only: spans taken from "returned" */
	atomic_size_t idle;             /* spans in "returned" and "spare" */
	atomic_size_t holders;          /* the owner, and each span not yet freed */
	struct tg_trace *spare_traces;  /* owner only: freed traces, linked by spare_next */
	size_t n_spare_traces;          /* owner only */
};

struct tg_span_pool *
tg_span_pool_new(void)
{
	struct tg_span_pool *pool = malloc(sizeof(*pool));

	if (pool == NULL)
		return NULL;
	atomic_init(&pool->returned, NULL);
	pool->spare = NULL;
	atomic_init(&pool->idle, 0);
	atomic_init(&pool->holders, 1);
	pool->spare_traces = NULL;
	pool->n_spare_traces = 0;
	return pool;
}

static void
free_list(struct tg_span *span)
{
	while (span != NULL) {
		struct tg_span *next = span->next;

		free(span);
		span = next;
	}
}

/* Drop one holder of pool; the last frees the pool and what it holds. */
static void
pool_unhold(struct tg_span_pool *pool)
{
	if (atomic_fetch_sub_explicit(&pool->holders, 1, memory_order_acq_rel) != 1)
		return;
	free_list(atomic_exchange_explicit(&pool->returned, NULL, memory_order_acquire));
	free(pool);
}

void
tg_span_pool_release(struct tg_span_pool *pool)
{
	if (pool == NULL)
		return;
	free_list(pool->spare);
	pool->spare = NULL;
	while (pool->spare_traces != NULL) {
		struct tg_trace *next = pool->spare_traces->spare_next;

		free(pool->spare_traces);
		pool->spare_traces = next;
	}
	pool_unhold(pool);
}

size_t
tg_span_pool_idle(struct tg_span_pool *pool)
{
	return atomic_load_explicit(&pool->idle, memory_order_relaxed);
}

struct tg_trace *
tg_span_pool_take_trace(struct tg_span_pool *pool)
{
	struct tg_trace *t = pool->spare_traces;

	if (t != NULL) {
		pool->spare_traces = t->spare_next;
		pool->n_spare_traces--;
	}
	return t;
}

void
tg_span_pool_keep_trace(struct tg_span_pool *pool, struct tg_trace *t)
{
	if (pool->n_spare_traces == TG_SPAN_POOL_IDLE_MAX) {
		free(t);
		return;
	}
	t->spare_next = pool->spare_traces;
	pool->spare_traces = t;
	pool->n_spare_traces++;
}

/* Owner thread: a freed span's memory, or NULL when the pool has none. */
static struct span_storage *
pool_take(struct tg_span_pool *pool)
{
	struct tg_span *span;

	if (pool->spare == NULL)
		pool->spare = atomic_exchange_explicit(&pool->returned, NULL,
		                                       memory_order_acquire);
	span = pool->spare;
	if (span == NULL)
		return NULL;
	pool->spare = span->next;
	atomic_fetch_sub_explicit(&pool->idle, 1, memory_order_relaxed);
	return (struct span_storage *)span;
}

static void
pool_give(struct tg_span_pool *pool, struct tg_span *span)
{
	struct tg_span *top;

	if (atomic_fetch_add_explicit(&pool->idle, 1, memory_order_relaxed) >= TG_SPAN_POOL_IDLE_MAX) {
		atomic_fetch_sub_explicit(&pool->idle, 1, memory_order_relaxed);
		free(span);
		pool_unhold(pool);
		return;
	}
	top = atomic_load_explicit(&pool->returned, memory_order_relaxed);
	do {
		span->next = top;
	} while (!atomic_compare_exchange_weak_explicit(&pool->returned, &top, span,
	                                                memory_order_release,
	                                                memory_order_relaxed));
	pool_unhold(pool);
}

void
tg_span_free(struct tg_span *span)
{
	if (span == NULL)
		return;
	tg_arena_free(&span->arena);
	free(span->trace_state);
	free(span->status_message);
	if (span->pool != NULL)
		pool_give(span->pool, span);
	else
		free(span);
}

/* A NUL-terminated copy of the len bytes at s in arena, or NULL when out
 * of memory. *plain is set to 1 when none of them needs a JSON escape,
 * so that the encoder on the exporter thread need not scan them again. */
static char *
copy_text(struct tg_span_arena *arena, const char *s, size_t len, int *plain)
{
	char *copy = tg_arena_alloc(arena, len + 1, 1);

	if (copy == NULL)
		return NULL;
	*plain = tg_json_copy_plain(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/* Make a copy of name the span's name. Returns 0, or -1 when out of
 * memory (the name is then unchanged). */
static int
set_name(struct tg_span *span, const char *name)
{
	size_t len = strlen(name);
	int plain;
	char *copy = copy_text(&span->arena, name, len, &plain);

	if (copy == NULL)
		return -1;
	span->name = copy;
	span->name_len = len;
	span->name_plain = plain;
	return 0;
}

struct tg_span *
tg_span_new(const uint8_t trace_id[TG_TRACE_ID_SIZE],
            const uint8_t parent_id[TG_SPAN_ID_SIZE],
            enum tg_span_kind kind, const char *name, uint64_t start_ns)
{
	return tg_span_new_in(NULL, trace_id, parent_id, kind, name, start_ns);
}

struct tg_span *
tg_span_new_in(struct tg_span_pool *pool, const uint8_t trace_id[TG_TRACE_ID_SIZE],
               const uint8_t parent_id[TG_SPAN_ID_SIZE],
               enum tg_span_kind kind, const char *name, uint64_t start_ns)
{
	/* Only the span is zeroed: the arena hands out its bytes to be
	 * written, never read first. */
	struct span_storage *storage = pool != NULL ? pool_take(pool) : NULL;
	struct tg_span *span;

	if (storage == NULL)
		storage = malloc(sizeof(*storage));
	if (storage == NULL)
		return NULL;
	span = &storage->span;
	memset(span, 0, sizeof(*span));
	if (pool != NULL) {
		atomic_fetch_add_explicit(&pool->holders, 1, memory_order_relaxed);
		span->pool = pool;
	}
	tg_arena_init(&span->arena, &storage->first, storage->bytes, sizeof(storage->bytes));
	span->attrs.arena = &span->arena;
	span->attrs.items = tg_arena_alloc(&span->arena, SPAN_CAPACITY * sizeof(struct tg_attr),
	                                   alignof(struct tg_attr));
	if (span->attrs.items != NULL)
		span->attrs.capacity = SPAN_CAPACITY;
	if (set_name(span, name) != 0) {
		tg_span_free(span);
		return NULL;
	}
	memcpy(span->trace_id, trace_id, TG_TRACE_ID_SIZE);
	if (parent_id != NULL)
		memcpy(span->parent_id, parent_id, TG_SPAN_ID_SIZE);
	tg_id_random(span->span_id, TG_SPAN_ID_SIZE);
	span->kind = kind;
	span->start_ns = start_ns;
	return span;
}

/* --- attributes ---------------------------------------------------------- */

/* Attributes a list has room for, 4 at first, then 4 times as many: an
 * event carries up to 4. A span's list starts at SPAN_CAPACITY. */
#define FIRST_CAPACITY 4
#define GROWTH 4

/* The bit of key_lengths for keys of len bytes. */
static uint64_t
length_bit(size_t len)
{
	return (uint64_t)1 << (len % 64);
}

/* A key as lookups see it. */
struct key_info {
	const char *key;
	size_t len;
	int semconv;            /* a TG_SC() name */
	size_t word;            /* its entry's bit in semconv_keys, when semconv */
	uint64_t bit;
};

static inline void
key_info(const char *key, struct key_info *k)
{
	enum tg_semconv id;

	k->key = key;
	k->semconv = tg_semconv_is_name(key);
	if (!k->semconv) {
		k->len = strlen(key);
		return;
	}
	id = tg_semconv_id(key);
	k->len = tg_semconv_lengths[id];
	k->word = id / 64;
	k->bit = (uint64_t)1 << (id % 64);
}

/* The attribute called k->key, or NULL. */
static inline struct tg_attr *
attr_find(const struct tg_attrs *a, const struct key_info *k)
{
	/* Most keys are set once, so the items are searched only when the
	 * key may be there. A semconv name may be there as its entry, or as
	 * a literal of its length. Any other key may be there as any key of
	 * its length. */
	if (k->semconv) {
		if ((a->semconv_keys[k->word] & k->bit) == 0 &&
		    (a->literal_lengths & length_bit(k->len)) == 0)
			return NULL;
	} else if ((a->key_lengths & length_bit(k->len)) == 0) {
		return NULL;
	}
	for (size_t i = 0; i < a->count; i++) {
		struct tg_attr *attr = &a->items[i];

		if (attr->key == k->key ||
		    (attr->key_len == k->len && memcmp(attr->key, k->key, k->len) == 0))
			return attr;
	}
	return NULL;
}

const struct tg_attr *
tg_attrs_find(const struct tg_attrs *a, const char *key)
{
	struct key_info k;

	key_info(key, &k);
	return attr_find(a, &k);
}

/* Move the items to room for more in the arena. Returns 0, or -1 when
 * out of memory. */
static int
grow_items(struct tg_attrs *a)
{
	size_t capacity = a->capacity ? a->capacity * GROWTH : FIRST_CAPACITY;
	struct tg_attr *items;

	if (capacity > TG_SPAN_MAX_ATTRS)
		capacity = TG_SPAN_MAX_ATTRS;
	items = tg_arena_grow(a->arena, a->items, a->count * sizeof(*items),
	                      capacity * sizeof(*items), alignof(struct tg_attr));
	if (items == NULL)
		return -1;
	a->items = items;
	a->capacity = capacity;
	return 0;
}

/* Append k's key to a, which has room for it and does not contain it. */
static inline struct tg_attr *
append_attr(struct tg_attrs *a, const struct key_info *k)
{
	struct tg_attr *attr = &a->items[a->count++];

	attr->key = k->key;
	attr->key_len = (uint32_t)k->len;
	a->key_lengths |= length_bit(k->len);
	if (k->semconv)
		a->semconv_keys[k->word] |= k->bit;
	else
		a->literal_lengths |= length_bit(k->len);
	return attr;
}

/* attr_slot() for any key and list, out of line, so that the inline
 * path keeps its key_info in registers. */
static __attribute__((noinline)) struct tg_attr *
find_or_append(struct tg_attrs *a, const char *key)
{
	struct key_info k;
	struct tg_attr *attr;

	key_info(key, &k);
	attr = attr_find(a, &k);
	if (attr != NULL)
		return attr;
	if (a->count == TG_SPAN_MAX_ATTRS) {
		a->dropped++;
		return NULL;
	}
	if (a->count == a->capacity && grow_items(a) != 0) {
		a->dropped++;
		return NULL;
	}
	return append_attr(a, &k);
}

/*
 * The slot for key: its current attribute, whose value the caller
 * replaces, or a new one. NULL when the list is full or memory ran out;
 * the value is then dropped. Inline for the common case, a semconv name
 * that is new to a list with room and no literal keys: callgrind counts
 * all of tg_attrs_int() at about 50 instructions that way.
 */
static inline struct tg_attr *
attr_slot(struct tg_attrs *a, const char *key)
{
	struct key_info k;

	if (tg_semconv_is_name(key) && a->literal_lengths == 0 && a->count < a->capacity) {
		key_info(key, &k);
		if ((a->semconv_keys[k.word] & k.bit) == 0)
			return append_attr(a, &k);
	}
	return find_or_append(a, key);
}

/* Remove the slot that attr_slot() returned, when its value could not be
 * stored after all. */
static void
attr_drop(struct tg_attrs *a, struct tg_attr *attr)
{
	size_t i = (size_t)(attr - a->items);

	memmove(&a->items[i], &a->items[i + 1], (a->count - i - 1) * sizeof(*attr));
	a->count--;
	a->dropped++;
}

/* Set key to the len bytes at value, none of which is NUL. A value of
 * 4 GiB or more, which no request can carry, is dropped. */
static void
set_string(struct tg_attrs *a, const char *key, const char *value, size_t len)
{
	struct tg_attr *attr;

	if (len > UINT32_MAX) {
		a->dropped++;
		return;
	}
	attr = attr_slot(a, key);
	if (attr == NULL)
		return;
	attr->type = TG_ATTR_STRING;
	attr->value_len = (uint32_t)len;
	attr->v.s = copy_text(a->arena, value, len, &attr->value_plain);
	if (attr->v.s == NULL)
		attr_drop(a, attr);
}

void
tg_attrs_stringn(struct tg_attrs *a, const char *key, const char *value, size_t len)
{
	/* Up to a NUL, as strndup() takes it. */
	set_string(a, key, value, strnlen(value, len));
}

void
tg_attrs_string(struct tg_attrs *a, const char *key, const char *value)
{
	set_string(a, key, value, strlen(value));
}

/* Set key to the len bytes at value, which has static storage, without a
 * copy. plain is 1 when none of them needs a JSON escape. */
static inline void
set_static(struct tg_attrs *a, const char *key, const char *value, size_t len, int plain)
{
	struct tg_attr *attr = attr_slot(a, key);

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_STRING;
	attr->value_len = (uint32_t)len;
	attr->value_plain = plain;
	attr->v.s = (char *)value;      /* nothing writes or frees a value through v.s */
}

void
tg_attrs_static_string(struct tg_attrs *a, const char *key, const char *value)
{
	size_t len = strlen(value);

	set_static(a, key, value, len, tg_json_is_plain(value, len));
}

void
tg_attrs_static_plain(struct tg_attrs *a, const char *key, const char *value, size_t len)
{
	set_static(a, key, value, len, 1);
}

void
tg_attrs_int(struct tg_attrs *a, const char *key, int64_t value)
{
	struct tg_attr *attr = attr_slot(a, key);

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_INT;
	attr->v.i = value;
}

void
tg_attrs_double(struct tg_attrs *a, const char *key, double value)
{
	struct tg_attr *attr = attr_slot(a, key);

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_DOUBLE;
	attr->v.d = value;
}

void
tg_attrs_bool(struct tg_attrs *a, const char *key, int value)
{
	struct tg_attr *attr = attr_slot(a, key);

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_BOOL;
	attr->v.b = value != 0;
}

void
tg_attrs_strings(struct tg_attrs *a, const char *key, const char *const *items, size_t n)
{
	struct tg_attr *attr = attr_slot(a, key);
	char **copy;

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_STRINGS;
	attr->value_plain = 1;
	attr->v.list.items = NULL;
	attr->v.list.n = 0;
	copy = tg_arena_alloc(a->arena, (n ? n : 1) * sizeof(*copy), alignof(char *));
	if (copy == NULL) {
		attr_drop(a, attr);
		return;
	}
	attr->v.list.items = copy;
	for (size_t i = 0; i < n; i++) {
		int plain;

		copy[i] = copy_text(a->arena, items[i], strlen(items[i]), &plain);
		if (copy[i] == NULL) {
			attr_drop(a, attr);
			return;
		}
		attr->value_plain &= plain;
		attr->v.list.n++;
	}
}

void
tg_attrs_static_strings(struct tg_attrs *a, const char *key, const char *const *items,
                        size_t n)
{
	struct tg_attr *attr = attr_slot(a, key);
	char **copy;

	if (attr == NULL)
		return;
	copy = tg_arena_alloc(a->arena, (n ? n : 1) * sizeof(*copy), alignof(char *));
	if (copy == NULL) {
		attr_drop(a, attr);
		return;
	}
	if (n > 0)
		memcpy(copy, items, n * sizeof(*copy));
	attr->type = TG_ATTR_STRINGS;
	attr->value_plain = 1;
	attr->v.list.items = copy;      /* nothing writes or frees the items' text */
	attr->v.list.n = n;
}

/* Move the events to room for twice as many in the arena. Returns 0, or
 * -1 when out of memory. */
static int
grow_events(struct tg_span *span)
{
	size_t capacity = span->events_capacity ? span->events_capacity * 2 : 4;
	struct tg_span_event *events;

	events = tg_arena_grow(&span->arena, span->events, span->n_events * sizeof(*events),
	                       capacity * sizeof(*events), alignof(struct tg_span_event));
	if (events == NULL)
		return -1;
	span->events = events;
	span->events_capacity = capacity;
	return 0;
}

struct tg_attrs *
tg_span_add_event(struct tg_span *span, const char *name, uint64_t time_ns)
{
	struct tg_span_event *ev;

	if (span->n_events == TG_SPAN_MAX_EVENTS) {
		span->dropped_events++;
		return NULL;
	}
	if (span->n_events == span->events_capacity && grow_events(span) != 0) {
		span->dropped_events++;
		return NULL;
	}
	ev = &span->events[span->n_events++];
	memset(ev, 0, sizeof(*ev));
	ev->name = name;
	ev->time_ns = time_ns;
	ev->attrs.arena = &span->arena;
	return &ev->attrs;
}

void
tg_span_set_status(struct tg_span *span, enum tg_span_status status, const char *message)
{
	if (span->status == TG_STATUS_ERROR && status == TG_STATUS_UNSET)
		return;
	span->status = status;
	free(span->status_message);
	span->status_message = NULL;
	if (status == TG_STATUS_ERROR && message != NULL)
		span->status_message = strdup(message);
}

void
tg_span_set_name(struct tg_span *span, const char *name)
{
	set_name(span, name);
}

void
tg_span_end(struct tg_span *span, uint64_t end_ns)
{
	if (span->end_ns != 0)
		return;
	span->end_ns = end_ns > span->start_ns ? end_ns : span->start_ns;
}
