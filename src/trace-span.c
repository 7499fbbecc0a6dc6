/*
 * The span model: attributes, events, status and end of one span.
 *
 * Every traced request sets a few dozen attributes. So the string values
 * of an attribute list share blocks of memory (struct tg_attr_text)
 * instead of taking an allocation each. A key is found by its length and
 * bytes, or at once when the caller passes the same pointer again, as
 * calls through TG_SC() do.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trace-context.h"
#include "trace-semconv.h"
#include "trace-span.h"

const struct tg_semconv_text tg_semconv_text = {
#define TG_SEMCONV_TEXT(id, name) .sc_##id = name,
	TG_SEMCONV_TABLE(TG_SEMCONV_TEXT)
#undef TG_SEMCONV_TEXT
};

const char *const tg_semconv_names[TG_SC_COUNT] = {
#define TG_SEMCONV_NAME(id, name) tg_semconv_text.sc_##id,
	TG_SEMCONV_TABLE(TG_SEMCONV_NAME)
#undef TG_SEMCONV_NAME
};

struct tg_span *
tg_span_new(const uint8_t trace_id[TG_TRACE_ID_SIZE],
            const uint8_t parent_id[TG_SPAN_ID_SIZE],
            enum tg_span_kind kind, const char *name, uint64_t start_ns)
{
	struct tg_span *span = calloc(1, sizeof(*span));

	if (span == NULL)
		return NULL;
	span->name = strdup(name);
	if (span->name == NULL) {
		free(span);
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

/* --- string values ------------------------------------------------------- */

/* Bytes per block: the strings of a chat completion's CLIENT span take
 * about 150. */
#define TEXT_BLOCK 256

/* A block of string values. A value set again takes new room, and the
 * old one stays until the list is freed: no caller sets a string
 * attribute more than a few times. */
struct tg_attr_text {
	struct tg_attr_text *next;      /* the blocks filled before */
	size_t used, size;
	alignas(char *) char bytes[];
};

/* Room for size bytes aligned to align (a power of two) in a's blocks;
 * NULL when out of memory. */
static void *
text_alloc(struct tg_attrs *a, size_t size, size_t align)
{
	struct tg_attr_text *head = a->text, *block;
	size_t at, room = size > TEXT_BLOCK ? size : TEXT_BLOCK;

	if (head != NULL) {
		at = (head->used + align - 1) & ~(align - 1);
		if (at <= head->size && size <= head->size - at) {
			head->used = at + size;
			return head->bytes + at;
		}
	}
	block = malloc(sizeof(*block) + room);
	if (block == NULL)
		return NULL;
	block->used = size;
	block->size = room;

	/* A value larger than a block gets a block of its own behind the
	 * head, so that the head's free room is still used. */
	if (size > TEXT_BLOCK && head != NULL) {
		block->next = head->next;
		head->next = block;
	} else {
		block->next = head;
		a->text = block;
	}
	return block->bytes;
}

/* A copy of value in a's blocks, up to len bytes or its NUL as strndup()
 * takes them; NULL when out of memory. */
static char *
text_copy(struct tg_attrs *a, const char *value, size_t len)
{
	char *copy;

	len = strnlen(value, len);
	copy = text_alloc(a, len + 1, 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, value, len);
	copy[len] = '\0';
	return copy;
}

void
tg_attrs_free(struct tg_attrs *a)
{
	while (a->text != NULL) {
		struct tg_attr_text *next = a->text->next;

		free(a->text);
		a->text = next;
	}
	free(a->items);
	a->items = NULL;
	a->count = a->capacity = 0;
}

void
tg_span_free(struct tg_span *span)
{
	if (span == NULL)
		return;
	tg_attrs_free(&span->attrs);
	for (size_t i = 0; i < span->n_events; i++)
		tg_attrs_free(&span->events[i].attrs);
	free(span->events);
	free(span->name);
	free(span->trace_state);
	free(span->status_message);
	free(span);
}

/* --- attributes ---------------------------------------------------------- */

/* Attributes a list first has room for: the server and CLIENT spans of a
 * chat completion carry 10 to 16, so they need no second allocation. */
#define FIRST_CAPACITY 16

/* The attribute called key, whose length is len, or NULL. */
static struct tg_attr *
attr_find(const struct tg_attrs *a, const char *key, size_t len)
{
	for (size_t i = 0; i < a->count; i++) {
		struct tg_attr *attr = &a->items[i];

		if (attr->key == key ||
		    (attr->key_len == len && memcmp(attr->key, key, len) == 0))
			return attr;
	}
	return NULL;
}

const struct tg_attr *
tg_attrs_find(const struct tg_attrs *a, const char *key)
{
	return attr_find(a, key, strlen(key));
}

/* The slot for key: its current attribute, whose value the caller
 * replaces, or a new one. NULL when the list is full or memory ran out;
 * the value is then dropped. */
static struct tg_attr *
attr_slot(struct tg_attrs *a, const char *key)
{
	size_t len = strlen(key);
	struct tg_attr *attr = attr_find(a, key, len);

	if (attr != NULL)
		return attr;
	if (a->count == TG_SPAN_MAX_ATTRS) {
		a->dropped++;
		return NULL;
	}
	if (a->count == a->capacity) {
		size_t capacity = a->capacity ? a->capacity * 2 : FIRST_CAPACITY;
		struct tg_attr *items = realloc(a->items, capacity * sizeof(*items));

		if (items == NULL) {
			a->dropped++;
			return NULL;
		}
		a->items = items;
		a->capacity = capacity;
	}
	attr = &a->items[a->count++];
	attr->key = key;
	attr->key_len = (uint32_t)len;
	return attr;
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

void
tg_attrs_stringn(struct tg_attrs *a, const char *key, const char *value, size_t len)
{
	struct tg_attr *attr = attr_slot(a, key);

	if (attr == NULL)
		return;
	attr->type = TG_ATTR_STRING;
	attr->v.s = text_copy(a, value, len);
	if (attr->v.s == NULL)
		attr_drop(a, attr);
}

void
tg_attrs_string(struct tg_attrs *a, const char *key, const char *value)
{
	tg_attrs_stringn(a, key, value, strlen(value));
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
	attr->v.list.items = NULL;
	attr->v.list.n = 0;
	copy = text_alloc(a, (n ? n : 1) * sizeof(*copy), alignof(char *));
	if (copy == NULL) {
		attr_drop(a, attr);
		return;
	}
	attr->v.list.items = copy;
	for (size_t i = 0; i < n; i++) {
		copy[i] = text_copy(a, items[i], strlen(items[i]));
		if (copy[i] == NULL) {
			attr_drop(a, attr);
			return;
		}
		attr->v.list.n++;
	}
}

struct tg_attrs *
tg_span_add_event(struct tg_span *span, const char *name, uint64_t time_ns)
{
	struct tg_span_event *ev;

	if (span->n_events == TG_SPAN_MAX_EVENTS) {
		span->dropped_events++;
		return NULL;
	}
	if (span->n_events == span->events_capacity) {
		size_t capacity = span->events_capacity ? span->events_capacity * 2 : 4;
		struct tg_span_event *events = realloc(span->events,
		                                       capacity * sizeof(*events));

		if (events == NULL) {
			span->dropped_events++;
			return NULL;
		}
		span->events = events;
		span->events_capacity = capacity;
	}
	ev = &span->events[span->n_events++];
	memset(ev, 0, sizeof(*ev));
	ev->name = name;
	ev->time_ns = time_ns;
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
	char *copy = strdup(name);

	if (copy == NULL)
		return;
	free(span->name);
	span->name = copy;
}

void
tg_span_end(struct tg_span *span, uint64_t end_ns)
{
	if (span->end_ns != 0)
		return;
	span->end_ns = end_ns > span->start_ns ? end_ns : span->start_ns;
}
