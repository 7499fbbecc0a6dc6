/*
 * The span model: attributes, events, status and end of one span.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trace-context.h"
#include "trace-semconv.h"
#include "trace-span.h"

const char *const tg_semconv_names[TG_SC_COUNT] = {
#define TG_SEMCONV_NAME(id, name) name,
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

static void
attr_clear(struct tg_attr *attr)
{
	if (attr->type == TG_ATTR_STRING) {
		free(attr->v.s);
	} else if (attr->type == TG_ATTR_STRINGS) {
		for (size_t i = 0; i < attr->v.list.n; i++)
			free(attr->v.list.items[i]);
		free(attr->v.list.items);
	}
}

void
tg_attrs_free(struct tg_attrs *a)
{
	for (size_t i = 0; i < a->count; i++)
		attr_clear(&a->items[i]);
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

const struct tg_attr *
tg_attrs_find(const struct tg_attrs *a, const char *key)
{
	for (size_t i = 0; i < a->count; i++) {
		if (strcmp(a->items[i].key, key) == 0)
			return &a->items[i];
	}
	return NULL;
}

/* The slot for key: its current attribute, cleared, or a new one. NULL
 * when the list is full or memory ran out; the value is then dropped. */
static struct tg_attr *
attr_slot(struct tg_attrs *a, const char *key)
{
	struct tg_attr *attr = (struct tg_attr *)tg_attrs_find(a, key);

	if (attr != NULL) {
		attr_clear(attr);
		return attr;
	}
	if (a->count == TG_SPAN_MAX_ATTRS) {
		a->dropped++;
		return NULL;
	}
	if (a->count == a->capacity) {
		size_t capacity = a->capacity ? a->capacity * 2 : 8;
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
	attr->v.s = strndup(value, len);
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
	copy = calloc(n ? n : 1, sizeof(*copy));
	if (copy == NULL) {
		attr_drop(a, attr);
		return;
	}
	attr->v.list.items = copy;
	for (size_t i = 0; i < n; i++) {
		copy[i] = strdup(items[i]);
		if (copy[i] == NULL) {
			attr_clear(attr);
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
