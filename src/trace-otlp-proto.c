/*
 * OTLP protobuf encoding, written straight from the span structs.
 *
 * A message inside another is prefixed with its length as a varint of
 * the fewest bytes, so a span's size is computed first (span_size), and
 * the span is then written in one pass into room made once for it. The
 * sizes functions mirror the put functions field by field; an assert
 * after each span checks that they agree.
 *
 * The request, its ResourceSpans and its ScopeSpans are prefixed with
 * lengths that depend on the size of every span. The spans are therefore
 * written first, after room kept for the longest header, and the header
 * goes last, right before the first span. That saves a pass over the
 * spans to size them all.
 *
 * Fields are written in the order of their numbers, and a field at its
 * default value (0, "", an UNSET status) is left out, as proto3 encoders
 * do, except the span times, which are never 0 once a span ended.
 */
#include <assert.h>
#include <string.h>

#include "trace-context.h"
#include "trace-otlp-proto.h"
#include "trace-semconv.h"

/* Wire types. */
#define WIRE_VARINT 0
#define WIRE_I64 1
#define WIRE_LEN 2
#define WIRE_I32 5

/* The one-byte key of a field numbered below 16. */
#define KEY(field, wire) ((field) << 3 | (wire))

/*
 * Field keys, from the field numbers of opentelemetry-proto's
 * collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
 * resource/v1/resource.proto and common/v1/common.proto.
 */
enum {
	/* ExportTraceServiceRequest */
	REQUEST_RESOURCE_SPANS = KEY(1, WIRE_LEN),

	/* ResourceSpans, Resource */
	RESOURCE_SPANS_RESOURCE = KEY(1, WIRE_LEN),
	RESOURCE_SPANS_SCOPE_SPANS = KEY(2, WIRE_LEN),
	RESOURCE_ATTRIBUTES = KEY(1, WIRE_LEN),

	/* ScopeSpans, InstrumentationScope */
	SCOPE_SPANS_SCOPE = KEY(1, WIRE_LEN),
	SCOPE_SPANS_SPANS = KEY(2, WIRE_LEN),
	SCOPE_NAME = KEY(1, WIRE_LEN),
	SCOPE_VERSION = KEY(2, WIRE_LEN),

	/* Span, except flags (field 16), whose key takes two bytes */
	SPAN_TRACE_ID = KEY(1, WIRE_LEN),
	SPAN_SPAN_ID = KEY(2, WIRE_LEN),
	SPAN_TRACE_STATE = KEY(3, WIRE_LEN),
	SPAN_PARENT_SPAN_ID = KEY(4, WIRE_LEN),
	SPAN_NAME = KEY(5, WIRE_LEN),
	SPAN_KIND = KEY(6, WIRE_VARINT),
	SPAN_START_TIME = KEY(7, WIRE_I64),
	SPAN_END_TIME = KEY(8, WIRE_I64),
	SPAN_ATTRIBUTES = KEY(9, WIRE_LEN),
	SPAN_DROPPED_ATTRIBUTES = KEY(10, WIRE_VARINT),
	SPAN_EVENTS = KEY(11, WIRE_LEN),
	SPAN_DROPPED_EVENTS = KEY(12, WIRE_VARINT),
	SPAN_STATUS = KEY(15, WIRE_LEN),

	/* Span.Event */
	EVENT_TIME = KEY(1, WIRE_I64),
	EVENT_NAME = KEY(2, WIRE_LEN),
	EVENT_ATTRIBUTES = KEY(3, WIRE_LEN),
	EVENT_DROPPED_ATTRIBUTES = KEY(4, WIRE_VARINT),

	/* Status, whose field 1 is reserved */
	STATUS_MESSAGE = KEY(2, WIRE_LEN),
	STATUS_CODE = KEY(3, WIRE_VARINT),

	/* KeyValue, AnyValue, ArrayValue */
	KEY_VALUE_KEY = KEY(1, WIRE_LEN),
	KEY_VALUE_VALUE = KEY(2, WIRE_LEN),
	ANY_STRING = KEY(1, WIRE_LEN),
	ANY_BOOL = KEY(2, WIRE_VARINT),
	ANY_INT = KEY(3, WIRE_VARINT),
	ANY_DOUBLE = KEY(4, WIRE_I64),
	ANY_ARRAY = KEY(5, WIRE_LEN),
	ARRAY_VALUES = KEY(1, WIRE_LEN),
};

/* Span.flags, a fixed32 numbered 16: its key 16 << 3 | 5 as a varint. */
#define SPAN_FLAGS_KEY (((16 << 3 | WIRE_I32) & 0x7F) | 0x80), ((16 << 3 | WIRE_I32) >> 7)
#define SPAN_FLAGS_SIZE (2 + 4)

/* Room for the header before the first span, beyond the resource and
 * scope messages: four keys and four lengths of at most 10 bytes. */
#define HEADER_FRAME (4 * (1 + 10))

/* --- sizes -------------------------------------------------------------- */

/* Bytes of v as a varint: 7 bits per byte, at least one byte. */
static inline size_t
varint_size(uint64_t v)
{
	size_t bits = 64 - (size_t)__builtin_clzll(v | 1);

	return (bits * 9 + 64) / 64;    /* ceil(bits / 7) for 1 to 64 bits */
}

/* Bytes of a length-delimited field of len bytes with a one-byte key. */
static inline size_t
field_size(size_t len)
{
	return 1 + varint_size(len) + len;
}

/* Bytes of the len bytes at s as a proto3 string, which must be UTF-8.
 * Plain text is ASCII, so it needs no check. */
static inline size_t
text_size(const char *s, size_t len, int plain)
{
	return plain ? len : tg_utf8_repaired_len(s, len);
}

/* Semconv names are ASCII. Other keys are literals, checked all the same. */
static inline size_t
key_size(const struct tg_attr *a)
{
	return tg_semconv_is_name(a->key) ? a->key_len : text_size(a->key, a->key_len, 0);
}

/* The ArrayValue of a TG_ATTR_STRINGS value, without its key and length. */
static size_t
strings_size(char *const *items, size_t n)
{
	size_t size = 0;

	for (size_t i = 0; i < n; i++)
		size += field_size(field_size(text_size(items[i], strlen(items[i]), 0)));
	return size;
}

/* The AnyValue of a, without its key and length. A NULL string, which
 * JSON writes as null, is an AnyValue with no value set. */
static size_t
any_value_size(const struct tg_attr *a)
{
	switch (a->type) {
	case TG_ATTR_STRING:
		return a->v.s != NULL ? field_size(text_size(a->v.s, a->value_len, a->value_plain)) : 0;
	case TG_ATTR_INT:
		return 1 + varint_size((uint64_t)a->v.i);
	case TG_ATTR_DOUBLE:
		return 1 + 8;
	case TG_ATTR_BOOL:
		return 1 + 1;
	case TG_ATTR_STRINGS:
		return field_size(strings_size(a->v.list.items, a->v.list.n));
	}
	return 0;
}

static inline size_t
key_value_size(const struct tg_attr *a)
{
	return field_size(key_size(a)) + field_size(any_value_size(a));
}

/* A repeated KeyValue field, keys and lengths included. */
static size_t
attrs_size(const struct tg_attrs *attrs)
{
	size_t size = 0;

	for (size_t i = 0; i < attrs->count; i++)
		size += field_size(key_value_size(&attrs->items[i]));
	return size;
}

/* A uint32 field left out at 0. */
static inline size_t
count_size(uint32_t count)
{
	return count != 0 ? 1 + varint_size(count) : 0;
}

static inline size_t
name_size(const char *name)
{
	size_t len = strlen(name);

	return tg_semconv_is_name(name) ? len : text_size(name, len, 0);
}

static size_t
event_size(const struct tg_span_event *ev)
{
	size_t name = name_size(ev->name);

	return 1 + 8 + (name > 0 ? field_size(name) : 0) + attrs_size(&ev->attrs) +
	       count_size(ev->attrs.dropped);
}

static size_t
status_size(const struct tg_span *span)
{
	size_t size = 1 + varint_size((uint64_t)span->status);

	if (span->status_message != NULL && span->status_message[0] != '\0')
		size += field_size(text_size(span->status_message,
		                             strlen(span->status_message), 0));
	return size;
}

/* The Span message, without its key and length. */
static size_t
span_size(const struct tg_span *span)
{
	size_t size = field_size(TG_TRACE_ID_SIZE) + field_size(TG_SPAN_ID_SIZE);
	size_t name = text_size(span->name, span->name_len, span->name_plain);

	if (span->trace_state != NULL && span->trace_state[0] != '\0')
		size += field_size(text_size(span->trace_state, strlen(span->trace_state), 0));
	if (!tg_id_is_zero(span->parent_id, TG_SPAN_ID_SIZE))
		size += field_size(TG_SPAN_ID_SIZE);
	if (name > 0)
		size += field_size(name);
	if (span->kind != 0)
		size += 1 + varint_size((uint64_t)span->kind);
	size += 2 * (1 + 8);            /* start and end times */
	size += attrs_size(&span->attrs) + count_size(span->attrs.dropped);
	for (size_t i = 0; i < span->n_events; i++)
		size += field_size(event_size(&span->events[i]));
	size += count_size(span->dropped_events);
	if (span->status != TG_STATUS_UNSET)
		size += field_size(status_size(span));
	if (span->flags != 0)
		size += SPAN_FLAGS_SIZE;
	return size;
}

/* --- writes into room made before --------------------------------------- */

static inline uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* The key and length of a length-delimited field. */
static inline uint8_t *
put_len(uint8_t *p, int key, size_t len)
{
	*p++ = (uint8_t)key;
	return put_varint(p, len);
}

/* A fixed64 or double: little-endian, whatever the host's order. */
static inline uint8_t *
put_fixed64(uint8_t *p, int key, uint64_t v)
{
	*p++ = (uint8_t)key;
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + 8;
}

static inline uint8_t *
put_bytes(uint8_t *p, int key, const void *bytes, size_t len)
{
	p = put_len(p, key, len);
	memcpy(p, bytes, len);
	return p + len;
}

/* A string field whose text_size() is size. */
static inline uint8_t *
put_text(uint8_t *p, int key, const char *s, size_t len, size_t size)
{
	if (size == len)
		return put_bytes(p, key, s, len);
	p = put_len(p, key, size);
	return (uint8_t *)tg_utf8_repair((char *)p, s, len);
}

static inline uint8_t *
put_count(uint8_t *p, int key, uint32_t count)
{
	if (count == 0)
		return p;
	*p++ = (uint8_t)key;
	return put_varint(p, count);
}

static uint8_t *
put_strings(uint8_t *p, char *const *items, size_t n)
{
	p = put_len(p, ANY_ARRAY, strings_size(items, n));
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(items[i]);
		size_t size = text_size(items[i], len, 0);

		p = put_len(p, ARRAY_VALUES, field_size(size));
		p = put_text(p, ANY_STRING, items[i], len, size);
	}
	return p;
}

static uint8_t *
put_any_value(uint8_t *p, const struct tg_attr *a)
{
	uint64_t bits;

	switch (a->type) {
	case TG_ATTR_STRING:
		if (a->v.s == NULL)
			return p;
		return put_text(p, ANY_STRING, a->v.s, a->value_len,
		                text_size(a->v.s, a->value_len, a->value_plain));
	case TG_ATTR_INT:
		*p++ = ANY_INT;
		return put_varint(p, (uint64_t)a->v.i);      /* two's complement, 10 bytes if < 0 */
	case TG_ATTR_DOUBLE:
		memcpy(&bits, &a->v.d, sizeof(bits));
		return put_fixed64(p, ANY_DOUBLE, bits);
	case TG_ATTR_BOOL:
		*p++ = ANY_BOOL;
		*p++ = a->v.b != 0;
		return p;
	case TG_ATTR_STRINGS:
		return put_strings(p, a->v.list.items, a->v.list.n);
	}
	return p;
}

/* One KeyValue of a repeated field keyed key. */
static uint8_t *
put_key_value(uint8_t *p, int key, const struct tg_attr *a)
{
	size_t k = key_size(a), value = any_value_size(a);

	p = put_len(p, key, field_size(k) + field_size(value));
	p = put_text(p, KEY_VALUE_KEY, a->key, a->key_len, k);
	p = put_len(p, KEY_VALUE_VALUE, value);
	return put_any_value(p, a);
}

static uint8_t *
put_attrs(uint8_t *p, int key, const struct tg_attrs *attrs)
{
	for (size_t i = 0; i < attrs->count; i++)
		p = put_key_value(p, key, &attrs->items[i]);
	return p;
}

static uint8_t *
put_event(uint8_t *p, const struct tg_span_event *ev)
{
	size_t len = strlen(ev->name);

	p = put_len(p, SPAN_EVENTS, event_size(ev));
	p = put_fixed64(p, EVENT_TIME, ev->time_ns);
	if (len > 0)
		p = put_text(p, EVENT_NAME, ev->name, len, name_size(ev->name));
	p = put_attrs(p, EVENT_ATTRIBUTES, &ev->attrs);
	return put_count(p, EVENT_DROPPED_ATTRIBUTES, ev->attrs.dropped);
}

static uint8_t *
put_status(uint8_t *p, const struct tg_span *span)
{
	const char *message = span->status_message;

	if (span->status == TG_STATUS_UNSET)
		return p;
	p = put_len(p, SPAN_STATUS, status_size(span));
	if (message != NULL && message[0] != '\0') {
		size_t len = strlen(message);

		p = put_text(p, STATUS_MESSAGE, message, len, text_size(message, len, 0));
	}
	*p++ = STATUS_CODE;
	return put_varint(p, (uint64_t)span->status);
}

/* The fields of a Span from trace_id to its times. */
static uint8_t *
put_span_head(uint8_t *p, const struct tg_span *span)
{
	const char *state = span->trace_state;
	size_t name = text_size(span->name, span->name_len, span->name_plain);

	p = put_bytes(p, SPAN_TRACE_ID, span->trace_id, TG_TRACE_ID_SIZE);
	p = put_bytes(p, SPAN_SPAN_ID, span->span_id, TG_SPAN_ID_SIZE);
	if (state != NULL && state[0] != '\0') {
		size_t len = strlen(state);

		p = put_text(p, SPAN_TRACE_STATE, state, len, text_size(state, len, 0));
	}
	if (!tg_id_is_zero(span->parent_id, TG_SPAN_ID_SIZE))
		p = put_bytes(p, SPAN_PARENT_SPAN_ID, span->parent_id, TG_SPAN_ID_SIZE);
	if (name > 0)
		p = put_text(p, SPAN_NAME, span->name, span->name_len, name);
	if (span->kind != 0) {
		*p++ = SPAN_KIND;
		p = put_varint(p, (uint64_t)span->kind);
	}
	p = put_fixed64(p, SPAN_START_TIME, span->start_ns);
	return put_fixed64(p, SPAN_END_TIME, span->end_ns);
}

/* Append span as one field of ScopeSpans.spans. */
static void
write_span(struct tg_json_writer *w, const struct tg_span *span)
{
	static const uint8_t flags_key[2] = { SPAN_FLAGS_KEY };
	size_t size = span_size(span);
	uint8_t *p, *start;

	if (tg_json_room(w, 1 + 10 + size) != 0)
		return;
	p = put_len((uint8_t *)w->data + w->len, SCOPE_SPANS_SPANS, size);
	start = p;

	p = put_span_head(p, span);
	p = put_attrs(p, SPAN_ATTRIBUTES, &span->attrs);
	p = put_count(p, SPAN_DROPPED_ATTRIBUTES, span->attrs.dropped);
	for (size_t i = 0; i < span->n_events; i++)
		p = put_event(p, &span->events[i]);
	p = put_count(p, SPAN_DROPPED_EVENTS, span->dropped_events);
	p = put_status(p, span);
	if (span->flags != 0) {
		memcpy(p, flags_key, sizeof(flags_key));
		for (int i = 0; i < 4; i++)
			p[2 + i] = (uint8_t)(span->flags >> (8 * i));
		p += SPAN_FLAGS_SIZE;
	}

	assert((size_t)(p - start) == size);
	w->len = (size_t)((char *)p - w->data);
}

/* --- the request -------------------------------------------------------- */

/* The InstrumentationScope: tollgate's name and version. */
static size_t
scope_size(const char *version)
{
	size_t size = field_size(sizeof(TG_OTLP_SCOPE_NAME) - 1);

	if (version != NULL && version[0] != '\0')
		size += field_size(text_size(version, strlen(version), 0));
	return size;
}

static uint8_t *
put_scope(uint8_t *p, const char *version)
{
	p = put_bytes(p, SCOPE_NAME, TG_OTLP_SCOPE_NAME, sizeof(TG_OTLP_SCOPE_NAME) - 1);
	if (version != NULL && version[0] != '\0') {
		size_t len = strlen(version);

		p = put_text(p, SCOPE_VERSION, version, len, text_size(version, len, 0));
	}
	return p;
}

/* Write the request's header, whose spans take spans_len bytes, so that
 * it ends at end, and return where it starts. */
static uint8_t *
put_header(uint8_t *end, const struct tg_attrs *resource, const char *version,
           size_t spans_len)
{
	size_t resource_len = attrs_size(resource);
	size_t scope_len = scope_size(version);
	size_t scope_spans_len = field_size(scope_len) + spans_len;
	size_t resource_spans_len = field_size(resource_len) + field_size(scope_spans_len);
	size_t header_len = 1 + varint_size(resource_spans_len) + field_size(resource_len) +
	                    1 + varint_size(scope_spans_len) + field_size(scope_len);
	uint8_t *start = end - header_len, *p = start;

	p = put_len(p, REQUEST_RESOURCE_SPANS, resource_spans_len);
	p = put_len(p, RESOURCE_SPANS_RESOURCE, resource_len);
	p = put_attrs(p, RESOURCE_ATTRIBUTES, resource);
	p = put_len(p, RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
	p = put_len(p, SCOPE_SPANS_SCOPE, scope_len);
	p = put_scope(p, version);

	assert(p == end);
	return start;
}

size_t
tg_otlp_proto_write(struct tg_json_writer *w, struct tg_span *const *spans, size_t n,
                    const struct tg_otlp_resource *resource)
{
	struct tg_attr items[5];
	struct tg_attrs attrs;
	size_t begin = w->len, reserve;
	uint8_t *header;

	tg_otlp_resource_attrs(resource, items, &attrs);
	reserve = HEADER_FRAME + attrs_size(&attrs) + scope_size(resource->service_version);
	if (tg_json_room(w, reserve) != 0)
		return begin;
	w->len += reserve;

	for (size_t i = 0; i < n; i++)
		write_span(w, spans[i]);
	if (w->failed)
		return begin;

	header = put_header((uint8_t *)w->data + begin + reserve, &attrs,
	                    resource->service_version, w->len - begin - reserve);
	return (size_t)((char *)header - w->data);
}
