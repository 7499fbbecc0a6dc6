/*
 * OTLP JSON encoding, written straight from the span structs.
 *
 * The exporter thread encodes every span it sends, so no jansson tree is
 * built here. Keys come out in the order of the proto fields, then the
 * optional ones, as the earlier jansson encoding wrote them. A field at
 * its default value is left out, as the mapping allows.
 *
 * The fixed text around ids, numbers, semconv keys and plain values goes
 * into room made once per run (tg_json_room, then tg_json_put). Strings
 * that may need escapes go through the checked writes.
 */
#include <math.h>
#include <string.h>

#include "trace-context.h"
#include "trace-otlp.h"
#include "trace-semconv.h"

/* Room made for the fixed text of one run of puts, with the hex ids and
 * numbers in it. The longest run, of a span's kind and times, is 126
 * bytes long. */
#define RUN_ROOM 160

/* Put n bytes of id as hex digits, into room made for 2 * n + 1. */
static void
put_hex(struct tg_json_writer *w, const uint8_t *id, size_t n)
{
	tg_hex_encode(w->data + w->len, id, n);         /* and a NUL, overwritten later */
	w->len += 2 * n;
}

/* Put name, a semconv name of len bytes, between quotes, into room made
 * for TG_SEMCONV_SLOT + 2 bytes. The whole slot, whose size is fixed, is
 * copied without a call to memcpy; the bytes after the name are
 * overwritten next. */
static void
put_semconv_name(struct tg_json_writer *w, const char *name, size_t len)
{
	tg_json_put_literal(w, "\"");
	memcpy(w->data + w->len, name, TG_SEMCONV_SLOT);
	w->len += len;
	tg_json_put_literal(w, "\"");
}

/* Put a 64-bit integer as the JSON mapping writes it: a decimal string. */
static void
put_uint64_string(struct tg_json_writer *w, uint64_t v)
{
	tg_json_put_literal(w, "\"");
	tg_json_put_uint(w, v);
	tg_json_put_literal(w, "\"");
}

/* Write v as a number, or as the string that the proto3 JSON mapping uses
 * for NaN and infinity, which JSON numbers cannot express. */
static void
write_double(struct tg_json_writer *w, double v)
{
	if (isnan(v))
		tg_json_literal(w, "\"NaN\"");
	else if (isinf(v))
		tg_json_string(w, v > 0 ? "Infinity" : "-Infinity");
	else
		tg_json_double(w, v);
}

static void
write_strings(struct tg_json_writer *w, char *const *items, size_t n)
{
	tg_json_literal(w, "arrayValue\":{\"values\":[");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		tg_json_literal(w, "{\"stringValue\":");
		tg_json_string(w, items[i]);
		tg_json_literal(w, "}");
	}
	tg_json_literal(w, "]}}}");
}

/*
 * Write the rest of a KeyValue after write_key(), which ends inside the
 * AnyValue: the name of the value's type and the value, and close both.
 * Each type's text is one literal, because an export writes a few dozen
 * of these per request.
 */
static void
write_string_value(struct tg_json_writer *w, const struct tg_attr *attr)
{
	/* Most values are plain text: one run with their bytes in it. */
	if (attr->value_plain) {
		if (tg_json_room(w, attr->value_len + RUN_ROOM) != 0)
			return;
		tg_json_put_literal(w, "stringValue\":\"");
		tg_json_put(w, attr->v.s, attr->value_len);
		tg_json_put_literal(w, "\"}}");
		return;
	}
	tg_json_literal(w, "stringValue\":");
	tg_json_string(w, attr->v.s);
	tg_json_literal(w, "}}");
}

static void
write_int_value(struct tg_json_writer *w, int64_t v)
{
	if (tg_json_room(w, RUN_ROOM) != 0)
		return;
	tg_json_put_literal(w, "intValue\":\"");
	if (v < 0)
		tg_json_put_literal(w, "-");
	/* Negated as unsigned so that INT64_MIN does not overflow. */
	tg_json_put_uint(w, v < 0 ? -(uint64_t)v : (uint64_t)v);
	tg_json_put_literal(w, "\"}}");
}

static void
write_value(struct tg_json_writer *w, const struct tg_attr *attr)
{
	switch (attr->type) {
	case TG_ATTR_STRING:
		write_string_value(w, attr);
		break;
	case TG_ATTR_INT:
		write_int_value(w, attr->v.i);
		break;
	case TG_ATTR_DOUBLE:
		tg_json_literal(w, "doubleValue\":");
		write_double(w, attr->v.d);
		tg_json_literal(w, "}}");
		break;
	case TG_ATTR_BOOL:
		if (attr->v.b)
			tg_json_literal(w, "boolValue\":true}}");
		else
			tg_json_literal(w, "boolValue\":false}}");
		break;
	case TG_ATTR_STRINGS:
		write_strings(w, attr->v.list.items, attr->v.list.n);
		break;
	}
}

/* Bytes of each semconv name's slot in KEY_TEXTS: the longest text (57
 * bytes and a NUL) fits, and this file fails to compile when a new name
 * does not. */
#define KEY_SLOT 64

#define KEY_TEXT(name) ",{\"key\":\"" name "\",\"value\":{\""

#define KEY_TEXT_FITS(id, name) \
	_Static_assert(sizeof(KEY_TEXT(name)) <= KEY_SLOT, "the key text of " name " needs a larger KEY_SLOT");
TG_SEMCONV_TABLE(KEY_TEXT_FITS)
#undef KEY_TEXT_FITS

/*
 * The text of a KeyValue up to its value's type, for each semconv name:
 * keys are half the strings of an export, and nearly all are semconv
 * names. A key's text is copied as a whole slot, which compiles to a few
 * moves, so the array has one spare slot for a copy from the last one
 * that starts after its comma.
 */
static const char KEY_TEXTS[TG_SC_COUNT + 1][KEY_SLOT] = {
#define KEY_TEXT_SLOT(id, name) [TG_SC_##id] = KEY_TEXT(name),
	TG_SEMCONV_TABLE(KEY_TEXT_SLOT)
#undef KEY_TEXT_SLOT
};

static const uint8_t KEY_TEXT_LENGTHS[TG_SC_COUNT] = {
#define KEY_TEXT_LENGTH(id, name) [TG_SC_##id] = sizeof(KEY_TEXT(name)) - 1,
	TG_SEMCONV_TABLE(KEY_TEXT_LENGTH)
#undef KEY_TEXT_LENGTH
};

/* Write {"key":KEY,"value":{" of a KeyValue, after a comma unless it is
 * the first. */
static void
write_key(struct tg_json_writer *w, const struct tg_attr *attr, int first)
{
	enum tg_semconv id;

	if (!tg_semconv_is_name(attr->key)) {
		if (!first)
			tg_json_literal(w, ",");
		tg_json_literal(w, "{\"key\":");
		tg_json_string(w, attr->key);
		tg_json_literal(w, ",\"value\":{\"");
		return;
	}
	if (tg_json_room(w, KEY_SLOT) != 0)
		return;
	id = tg_semconv_id(attr->key);
	memcpy(w->data + w->len, KEY_TEXTS[id] + (first != 0), KEY_SLOT);
	w->len += KEY_TEXT_LENGTHS[id] - (first != 0);
}

/* A list of KeyValue. */
static void
write_key_values(struct tg_json_writer *w, const struct tg_attrs *attrs)
{
	tg_json_literal(w, "[");
	for (size_t i = 0; i < attrs->count; i++) {
		write_key(w, &attrs->items[i], i == 0);
		write_value(w, &attrs->items[i]);
	}
	tg_json_literal(w, "]");
}

/* Write ,"droppedXCount":N only when something was dropped, because the
 * mapping omits fields at their default value. key includes its quotes
 * and colon. */
static void
write_dropped(struct tg_json_writer *w, const char *key, size_t key_len, uint32_t dropped)
{
	if (dropped == 0)
		return;
	tg_json_literal(w, ",");
	tg_json_raw(w, key, key_len);
	tg_json_uint(w, dropped);
}

#define DROPPED_KEY(name) "\"" name "\":", sizeof("\"" name "\":") - 1

static void
write_event(struct tg_json_writer *w, const struct tg_span_event *ev)
{
	if (tg_json_room(w, RUN_ROOM) != 0)
		return;
	tg_json_put_literal(w, "{\"timeUnixNano\":");
	put_uint64_string(w, ev->time_ns);
	tg_json_put_literal(w, ",\"name\":");
	if (tg_semconv_is_name(ev->name)) {
		put_semconv_name(w, ev->name, tg_semconv_lengths[tg_semconv_id(ev->name)]);
		tg_json_put_literal(w, ",\"attributes\":");
	} else {
		tg_json_string(w, ev->name);
		tg_json_literal(w, ",\"attributes\":");
	}
	write_key_values(w, &ev->attrs);
	write_dropped(w, DROPPED_KEY("droppedAttributesCount"), ev->attrs.dropped);
	tg_json_literal(w, "}");
}

static void
write_events(struct tg_json_writer *w, const struct tg_span *span)
{
	tg_json_literal(w, "[");
	for (size_t i = 0; i < span->n_events; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		write_event(w, &span->events[i]);
	}
	tg_json_literal(w, "]");
}

static void
write_status(struct tg_json_writer *w, const struct tg_span *span)
{
	if (span->status == TG_STATUS_UNSET) {
		tg_json_literal(w, "{}");
		return;
	}
	tg_json_literal(w, "{\"code\":");
	tg_json_uint(w, (uint64_t)span->status);
	if (span->status_message != NULL) {
		tg_json_literal(w, ",\"message\":");
		tg_json_string(w, span->status_message);
	}
	tg_json_literal(w, "}");
}

void
tg_otlp_write_span(struct tg_json_writer *w, const struct tg_span *span)
{
	if (tg_json_room(w, RUN_ROOM) != 0)
		return;
	tg_json_put_literal(w, "{\"traceId\":\"");
	put_hex(w, span->trace_id, TG_TRACE_ID_SIZE);
	tg_json_put_literal(w, "\",\"spanId\":\"");
	put_hex(w, span->span_id, TG_SPAN_ID_SIZE);
	tg_json_put_literal(w, "\",\"name\":");
	if (span->name_plain) {
		if (tg_json_room(w, span->name_len + RUN_ROOM) != 0)
			return;
		tg_json_put_literal(w, "\"");
		tg_json_put(w, span->name, span->name_len);
		tg_json_put_literal(w, "\"");
	} else {
		tg_json_stringn(w, span->name, span->name_len);
		if (tg_json_room(w, RUN_ROOM) != 0)
			return;
	}
	tg_json_put_literal(w, ",\"kind\":");
	tg_json_put_uint(w, (uint64_t)span->kind);
	tg_json_put_literal(w, ",\"startTimeUnixNano\":");
	put_uint64_string(w, span->start_ns);
	tg_json_put_literal(w, ",\"endTimeUnixNano\":");
	put_uint64_string(w, span->end_ns);
	tg_json_put_literal(w, ",\"attributes\":");
	write_key_values(w, &span->attrs);
	tg_json_literal(w, ",\"events\":");
	write_events(w, span);
	tg_json_literal(w, ",\"status\":");
	write_status(w, span);

	/* The optional fields that most spans have, in one run. */
	if (tg_json_room(w, RUN_ROOM) != 0)
		return;
	if (!tg_id_is_zero(span->parent_id, TG_SPAN_ID_SIZE)) {
		tg_json_put_literal(w, ",\"parentSpanId\":\"");
		put_hex(w, span->parent_id, TG_SPAN_ID_SIZE);
		tg_json_put_literal(w, "\"");
	}
	if (span->trace_state != NULL && span->trace_state[0] != '\0') {
		tg_json_put_literal(w, ",\"traceState\":");
		tg_json_string(w, span->trace_state);
		if (tg_json_room(w, RUN_ROOM) != 0)
			return;
	}
	if (span->flags != 0) {
		tg_json_put_literal(w, ",\"flags\":");
		tg_json_put_uint(w, span->flags);
	}
	write_dropped(w, DROPPED_KEY("droppedAttributesCount"), span->attrs.dropped);
	write_dropped(w, DROPPED_KEY("droppedEventsCount"), span->dropped_events);
	tg_json_literal(w, "}");
}

void
tg_otlp_resource_attrs(const struct tg_otlp_resource *r, struct tg_attr items[5],
                       struct tg_attrs *attrs)
{
	const struct tg_attr all[5] = {
		{ .key = TG_SC(SERVICE_NAME), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->service_name },
		{ .key = TG_SC(SERVICE_VERSION), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->service_version },
		{ .key = TG_SC(TELEMETRY_SDK_NAME), .type = TG_ATTR_STRING,
		  .v.s = (char *)TG_OTLP_SCOPE_NAME },
		{ .key = TG_SC(TELEMETRY_SDK_LANGUAGE), .type = TG_ATTR_STRING,
		  .v.s = (char *)"c" },
		{ .key = TG_SC(SERVICE_INSTANCE_ID), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->instance_id },
	};

	memcpy(items, all, sizeof(all));
	*attrs = (struct tg_attrs){ .items = items };
	attrs->count = r->instance_id != NULL ? 5 : 4;
	for (size_t i = 0; i < attrs->count; i++) {
		items[i].key_len = (uint32_t)strlen(items[i].key);
		if (items[i].v.s == NULL)
			continue;       /* written as null */
		items[i].value_len = strlen(items[i].v.s);
		items[i].value_plain = tg_json_is_plain(items[i].v.s, items[i].value_len);
	}
}

void
tg_otlp_write(struct tg_json_writer *w, struct tg_span *const *spans, size_t n,
              const struct tg_otlp_resource *resource)
{
	struct tg_attr items[5];
	struct tg_attrs attrs;

	tg_otlp_resource_attrs(resource, items, &attrs);
	tg_json_literal(w, "{\"resourceSpans\":[{\"resource\":{\"attributes\":");
	write_key_values(w, &attrs);
	tg_json_literal(w, "},\"scopeSpans\":[{\"scope\":{\"name\":\"" TG_OTLP_SCOPE_NAME
	                "\",\"version\":");
	tg_json_string(w, resource->service_version);
	tg_json_literal(w, "},\"spans\":[");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			tg_json_literal(w, ",");
		tg_otlp_write_span(w, spans[i]);
	}
	tg_json_literal(w, "]}]}]}");
}

json_t *
tg_otlp_encode(struct tg_span *const *spans, size_t n,
               const struct tg_otlp_resource *resource)
{
	struct tg_json_writer w = {0};
	json_t *root = NULL;

	tg_otlp_write(&w, spans, n, resource);
	if (!w.failed)
		root = json_loadb(w.data, w.len, 0, NULL);
	tg_json_writer_free(&w);
	return root;
}
