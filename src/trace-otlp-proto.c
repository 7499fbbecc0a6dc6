/*
 * OTLP protobuf encoding, written straight from the span structs.
 *
 * A message inside another is prefixed with its length as a varint of
 * the fewest bytes. A span or an event is written after room left for a
 * length of the usual width (2 bytes for a span, 1 for an event), and the
 * length goes in once the message is written. When it needs another
 * width, the message's bytes move, which costs less than a pass to size
 * the message first. A KeyValue is sized from its attribute before it is
 * written, because that takes a few additions.
 *
 * The request, its ResourceSpans and its ScopeSpans are prefixed with
 * lengths that depend on the size of every span. The spans are therefore
 * written first, after room kept for the longest header, and the header
 * goes last, right before the first span.
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

/* The ArrayValue of a TG_ATTR_STRINGS value, without its key and length.
 * plain is the attribute's value_plain. */
static size_t
strings_size(char *const *items, size_t n, int plain)
{
	size_t size = 0;

	for (size_t i = 0; i < n; i++)
		size += field_size(field_size(text_size(items[i], strlen(items[i]), plain)));
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
		return field_size(strings_size(a->v.list.items, a->v.list.n, a->value_plain));
	}
	return 0;
}

/* A repeated KeyValue field, keys and lengths included. */
static size_t
attrs_size(const struct tg_attrs *attrs)
{
	size_t size = 0;

	for (size_t i = 0; i < attrs->count; i++) {
		const struct tg_attr *a = &attrs->items[i];

		size += field_size(field_size(key_size(a)) + field_size(any_value_size(a)));
	}
	return size;
}

/* --- writes into room made before --------------------------------------- */

/* Room for a field's key and its length: 1 + 10 bytes at most. */
#define FIELD_HEAD 11

/* A semconv name's length fits in the one byte that put_semconv_key()
 * writes. */
_Static_assert(TG_SEMCONV_SLOT < 128, "a semconv name's length needs one varint byte");

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

/* A fixed64 or double: little-endian, whatever the host's order. GCC -O2
 * wrote a loop of byte shifts as eight stores, about 40 instructions per
 * field, where a little-endian host copies the word as it is. */
static inline uint8_t *
put_fixed64(uint8_t *p, int key, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	*p++ = (uint8_t)key;
	memcpy(p, &v, sizeof(v));
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

/* The key of a KeyValue that is a semconv name, len bytes long, into room
 * for 2 + TG_SEMCONV_SLOT bytes. The whole slot is copied, which compiles
 * to a few moves where a copy of len bytes calls memcpy. */
static inline uint8_t *
put_semconv_key(uint8_t *p, const char *name, size_t len)
{
	*p++ = KEY_VALUE_KEY;
	*p++ = (uint8_t)len;
	memcpy(p, name, TG_SEMCONV_SLOT);
	return p + len;
}

static inline uint8_t *
put_count(uint8_t *p, int key, uint32_t count)
{
	if (count == 0)
		return p;
	*p++ = (uint8_t)key;
	return put_varint(p, count);
}

/* The length of a field's contents from its field_size(), so that a
 * size is not computed again from the contents. field_size() grows with
 * the length, so one length fits: the first, counting down from size - 2
 * (a byte of key, at least one of length), that gives size. */
static size_t
contents_len(size_t size)
{
	size_t len = size - 2;

	while (field_size(len) > size)
		len--;
	assert(field_size(len) == size);
	return len;
}

/* Write the ArrayValue of a TG_ATTR_STRINGS value, with its key and
 * length, given its strings_size() as size. */
static uint8_t *
put_strings(uint8_t *p, char *const *items, size_t n, int plain, size_t size)
{
	p = put_len(p, ANY_ARRAY, size);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(items[i]);
		size_t text = text_size(items[i], len, plain);

		p = put_len(p, ARRAY_VALUES, field_size(text));
		p = put_text(p, ANY_STRING, items[i], len, text);
	}
	return p;
}

/* The AnyValue of a, whose any_value_size() is size. */
static uint8_t *
put_any_value(uint8_t *p, const struct tg_attr *a, size_t size)
{
	uint64_t bits;

	p = put_len(p, KEY_VALUE_VALUE, size);
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
		return put_strings(p, a->v.list.items, a->v.list.n, a->value_plain,
		                   contents_len(size));
	}
	return p;
}

/* --- writes that make room ---------------------------------------------- */

static inline uint8_t *
tail_of(struct tg_json_writer *w)
{
	return (uint8_t *)w->data + w->len;
}

static inline void
end_at(struct tg_json_writer *w, const uint8_t *p)
{
	w->len = (size_t)((const char *)p - w->data);
}

/* Start a length-delimited field whose length is known only once its
 * contents are written, into room made for 1 + width bytes: write its key
 * and leave width bytes for the length. Returns where the key is. */
static inline size_t
open_field(struct tg_json_writer *w, int key, size_t width)
{
	size_t at = w->len;

	w->data[at] = (char)key;
	w->len += 1 + width;
	return at;
}

/* The general case of close_field(): a length of another width than
 * the room left for it, or a writer that failed. */
static __attribute__((noinline)) void
close_field_moving(struct tg_json_writer *w, size_t at, size_t width)
{
	size_t start = at + 1 + width;
	size_t len = w->len - start;
	size_t needed = varint_size(len);

	if (w->failed)
		return;
	if (needed != width) {
		if (needed > width && tg_json_room(w, needed - width) != 0)
			return;
		memmove(w->data + at + 1 + needed, w->data + start, len);
		w->len = at + 1 + needed + len;
	}
	put_varint((uint8_t *)w->data + at + 1, len);
}

/* Write the length of the field that open_field(w, key, width) returned
 * at, whose contents end at w->len. When it takes another width, the
 * contents move to follow it. A span of 128 bytes to 16 KiB, which
 * fills the two bytes left for it, is the common case, written here
 * without a call or a varint loop. */
static inline void
close_field(struct tg_json_writer *w, size_t at, size_t width)
{
	size_t len = w->len - (at + 1 + width);

	if (width == 2 && len >= 128 && len < 128 * 128 && !w->failed) {
		w->data[at + 1] = (char)(len | 0x80);
		w->data[at + 2] = (char)(len >> 7);
		return;
	}
	close_field_moving(w, at, width);
}

/*
 * Copy len bytes, fewer than 128, with a few moves of 16, 8 or 4 bytes
 * that may overlap. Attribute values are mostly a few bytes long, and a
 * call to memcpy cost more than the copy.
 */
static inline void
copy_short(uint8_t *dst, const char *src, size_t len)
{
	assert(len < 128);
	if (len >= 16) {
		for (size_t i = 0; i + 16 < len; i += 16)
			memcpy(dst + i, src + i, 16);
		memcpy(dst + len - 16, src + len - 16, 16);
	} else if (len >= 8) {
		memcpy(dst, src, 8);
		memcpy(dst + len - 8, src + len - 8, 8);
	} else if (len >= 4) {
		memcpy(dst, src, 4);
		memcpy(dst + len - 4, src + len - 4, 4);
	} else if (len > 0) {
		dst[0] = (uint8_t)src[0];
		dst[len / 2] = (uint8_t)src[len / 2];
		dst[len - 1] = (uint8_t)src[len - 1];
	}
}

/* The AnyValue of a TG_ATTR_STRINGS value whose items are plain, when
 * its lengths take one byte, or 128 when it is longer. The sum stops
 * there, so a long list is not read twice. It is not inlined, since its
 * loop made the loop over short KeyValues keep its values on the stack. */
static __attribute__((noinline)) size_t
short_strings_size(char *const *items, size_t n)
{
	size_t value = 2;

	for (size_t i = 0; i < n && value < 128; i++)
		value += 4 + strlen(items[i]);
	return value < 128 ? value : 128;
}

/*
 * A short KeyValue has a semconv key and a value that is a plain string,
 * a non-negative integer, a boolean or a list of plain strings, and takes
 * under 128 bytes: nearly every attribute. Its lengths all take one byte,
 * so it is written without sizing the value twice or a varint loop.
 *
 * Return whether a, whose AnyValue takes value bytes, fits: its key is a
 * semconv name and the KeyValue is under 128 bytes.
 */
static inline int
fits_short(const struct tg_attr *a, size_t value)
{
	return 4 + a->key_len + value < 128 && tg_semconv_is_name(a->key);
}

/* The AnyValue of a when it is a boolean or a list of plain strings that
 * may make a short KeyValue, else 0. */
static size_t
rare_short_value_size(const struct tg_attr *a)
{
	if (a->type == TG_ATTR_BOOL)
		return 2;
	if (a->type == TG_ATTR_STRINGS && a->value_plain)
		return short_strings_size(a->v.list.items, a->v.list.n);
	return 0;
}

/* Room for any short KeyValue: 2 bytes of key and length, under 128
 * bytes of KeyValue, and the rest of the semconv slot that
 * put_semconv_key() copies whole. */
#define SHORT_ROOM (2 + 128 + TG_SEMCONV_SLOT)

/* Write the start of the short KeyValue a, whose AnyValue takes value
 * bytes, as one field keyed key into room for SHORT_ROOM bytes: all but
 * the AnyValue's contents. Returns where those go. */
static inline uint8_t *
put_short_head(uint8_t *p, int key, const struct tg_attr *a, size_t value)
{
	/* Read a before writing: p is a byte pointer, which may alias a, so
	 * the compiler would read each field again after every store. */
	const char *name = a->key;
	size_t key_len = a->key_len;

	p[0] = (uint8_t)key;
	p[1] = (uint8_t)(4 + key_len + value);
	p = put_semconv_key(p + 2, name, key_len);
	p[0] = KEY_VALUE_VALUE;
	p[1] = (uint8_t)value;
	return p + 2;
}

/* Write the AnyValue contents of the short KeyValue a, a boolean or a
 * list of strings whose AnyValue takes value bytes. Returns their end.
 * These are one or two per request, so they stay out of the loop over
 * the others. */
static __attribute__((noinline)) uint8_t *
put_short_rare_value(uint8_t *p, const struct tg_attr *a, size_t value)
{
	if (a->type == TG_ATTR_BOOL) {
		p[0] = ANY_BOOL;
		p[1] = a->v.b != 0;
		return p + 2;
	}

	p[0] = ANY_ARRAY;
	p[1] = (uint8_t)(value - 2);
	p += 2;
	for (size_t i = 0; i < a->v.list.n; i++) {
		const char *item = a->v.list.items[i];
		size_t len = strlen(item);

		p[0] = ARRAY_VALUES;
		p[1] = (uint8_t)(2 + len);
		p[2] = ANY_STRING;
		p[3] = (uint8_t)len;
		copy_short(p + 4, item, len);
		p += 4 + len;
	}
	return p;
}

/*
 * Write the short KeyValues from a on as fields keyed key, up to end or
 * the first that is not short, and return where it stopped. Room for all
 * of them is made once, before the run, and the tail of w is kept in a
 * register until its end: checking room, loading and storing w->len
 * around each attribute cost about as much as writing it. Each kind of
 * value has its own branch, so that the type is tested once. Out of
 * memory, w->failed is set and end returned.
 */
static const struct tg_attr *
write_short_run(struct tg_json_writer *w, int key, const struct tg_attr *a,
                const struct tg_attr *end)
{
	uint8_t *p;

	if (tg_json_room(w, (size_t)(end - a) * SHORT_ROOM) != 0)
		return end;
	p = tail_of(w);
	for (; a < end; a++) {
		if (a->type == TG_ATTR_STRING && a->value_plain && a->v.s != NULL) {
			const char *s = a->v.s;
			size_t len = a->value_len;

			if (!fits_short(a, 2 + len))
				break;
			p = put_short_head(p, key, a, 2 + len);
			p[0] = ANY_STRING;
			p[1] = (uint8_t)len;
			copy_short(p + 2, s, len);
			p += 2 + len;
		} else if (a->type == TG_ATTR_INT && a->v.i >= 0) {
			uint64_t i = (uint64_t)a->v.i;

			if (!fits_short(a, 1 + varint_size(i)))
				break;
			p = put_short_head(p, key, a, 1 + varint_size(i));
			*p++ = ANY_INT;
			p = put_varint(p, i);
		} else {
			size_t value = rare_short_value_size(a);

			if (value == 0 || !fits_short(a, value))
				break;
			p = put_short_rare_value(put_short_head(p, key, a, value), a, value);
		}
	}
	end_at(w, p);
	return a;
}

/* One KeyValue of a repeated field keyed key, of any kind. It is not
 * inlined, so that the loop over the attributes saves no registers for it
 * around each short one. */
static __attribute__((noinline)) void
write_key_value(struct tg_json_writer *w, int key, const struct tg_attr *a)
{
	int semconv;
	size_t key_len, value, size;
	uint8_t *p, *start;

	semconv = tg_semconv_is_name(a->key);
	key_len = semconv ? a->key_len : text_size(a->key, a->key_len, 0);
	value = any_value_size(a);
	size = field_size(key_len) + field_size(value);
	if (tg_json_room(w, FIELD_HEAD + size + TG_SEMCONV_SLOT) != 0)
		return;
	p = put_len(tail_of(w), key, size);
	start = p;
	if (semconv)
		p = put_semconv_key(p, a->key, key_len);
	else
		p = put_text(p, KEY_VALUE_KEY, a->key, a->key_len, key_len);
	p = put_any_value(p, a, value);

	assert((size_t)(p - start) == size);
	end_at(w, p);
}

static void
write_attrs(struct tg_json_writer *w, int key, const struct tg_attrs *attrs)
{
	const struct tg_attr *a = attrs->items, *end = a + attrs->count;

	while (a < end) {
		a = write_short_run(w, key, a, end);
		if (a < end)
			write_key_value(w, key, a++);
	}
}

/* An event's length is put in one byte, unless it is 128 bytes or more. */
static void
write_event(struct tg_json_writer *w, const struct tg_span_event *ev)
{
	size_t len = strlen(ev->name);
	size_t name = tg_semconv_is_name(ev->name) ? len : text_size(ev->name, len, 0);
	size_t at;

	if (tg_json_room(w, 2 + 9 + FIELD_HEAD + name) != 0)
		return;
	at = open_field(w, SPAN_EVENTS, 1);
	end_at(w, put_fixed64(tail_of(w), EVENT_TIME, ev->time_ns));
	if (name > 0)
		end_at(w, put_text(tail_of(w), EVENT_NAME, ev->name, len, name));
	write_attrs(w, EVENT_ATTRIBUTES, &ev->attrs);
	if (tg_json_room(w, FIELD_HEAD) != 0)
		return;
	end_at(w, put_count(tail_of(w), EVENT_DROPPED_ATTRIBUTES, ev->attrs.dropped));
	close_field(w, at, 1);
}

/* Return whether a span id is all zeros, as a root span's parent id is:
 * one load, where tg_id_is_zero() is a call and a loop over bytes. */
static inline int
span_id_is_zero(const uint8_t id[TG_SPAN_ID_SIZE])
{
	uint64_t word;

	_Static_assert(TG_SPAN_ID_SIZE == sizeof(word), "a span id is one 64-bit word");
	memcpy(&word, id, sizeof(word));
	return word == 0;
}

/* The fields of a Span from trace_id to its times, into room made for
 * them. state is the trace state's len bytes, whose text_size() is
 * state_size, and name_size the name's text_size(). */
static uint8_t *
put_span_head(uint8_t *p, const struct tg_span *span, size_t state_len, size_t state_size,
              size_t name_size)
{
	p = put_bytes(p, SPAN_TRACE_ID, span->trace_id, TG_TRACE_ID_SIZE);
	p = put_bytes(p, SPAN_SPAN_ID, span->span_id, TG_SPAN_ID_SIZE);
	if (state_len > 0)
		p = put_text(p, SPAN_TRACE_STATE, span->trace_state, state_len, state_size);
	if (!span_id_is_zero(span->parent_id))
		p = put_bytes(p, SPAN_PARENT_SPAN_ID, span->parent_id, TG_SPAN_ID_SIZE);
	if (name_size > 0 && name_size == span->name_len && name_size < 128) {
		*p++ = SPAN_NAME;
		*p++ = (uint8_t)name_size;
		copy_short(p, span->name, name_size);   /* the usual name: no memcpy call */
		p += name_size;
	} else if (name_size > 0) {
		p = put_text(p, SPAN_NAME, span->name, span->name_len, name_size);
	}
	if (span->kind != 0) {
		*p++ = SPAN_KIND;
		p = put_varint(p, (uint64_t)span->kind);
	}
	p = put_fixed64(p, SPAN_START_TIME, span->start_ns);
	return put_fixed64(p, SPAN_END_TIME, span->end_ns);
}

/* The fields of a Span after its events, into room made for them, with
 * message_size the text_size() of the status message's message_len
 * bytes. */
static uint8_t *
put_span_tail(uint8_t *p, const struct tg_span *span, size_t message_len,
              size_t message_size)
{
	static const uint8_t flags_key[2] = { SPAN_FLAGS_KEY };

	p = put_count(p, SPAN_DROPPED_EVENTS, span->dropped_events);
	if (span->status != TG_STATUS_UNSET) {
		size_t status = 2 + (message_len > 0 ? field_size(message_size) : 0);

		p = put_len(p, SPAN_STATUS, status);
		if (message_len > 0)
			p = put_text(p, STATUS_MESSAGE, span->status_message, message_len, message_size);
		*p++ = STATUS_CODE;
		*p++ = (uint8_t)span->status;   /* 1 or 2: one varint byte */
	}
	if (span->flags != 0) {
		uint32_t flags = span->flags;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		flags = __builtin_bswap32(flags);
#endif
		memcpy(p, flags_key, sizeof(flags_key));
		memcpy(p + 2, &flags, sizeof(flags));   /* fixed32: little-endian */
		p += SPAN_FLAGS_SIZE;
	}
	return p;
}

/* Append span as one field of ScopeSpans.spans. Its length is put in two
 * bytes unless it is under 128 bytes or 16 KiB or more. */
static void
write_span(struct tg_json_writer *w, const struct tg_span *span)
{
	const char *state = span->trace_state, *message = span->status_message;
	size_t state_len = state != NULL ? strlen(state) : 0;
	size_t message_len = span->status != TG_STATUS_UNSET && message != NULL ? strlen(message) : 0;
	size_t name_size = text_size(span->name, span->name_len, span->name_plain);
	size_t state_size = state_len > 0 ? text_size(state, state_len, 0) : 0;
	size_t message_size = message_len > 0 ? text_size(message, message_len, 0) : 0;
	size_t at;

	if (tg_json_room(w, 3 + 18 + 10 + FIELD_HEAD + state_size + 10 + FIELD_HEAD + name_size +
	                    2 + 2 * 9) != 0)
		return;
	at = open_field(w, SCOPE_SPANS_SPANS, 2);
	end_at(w, put_span_head(tail_of(w), span, state_len, state_size, name_size));
	write_attrs(w, SPAN_ATTRIBUTES, &span->attrs);
	if (tg_json_room(w, FIELD_HEAD) != 0)
		return;
	end_at(w, put_count(tail_of(w), SPAN_DROPPED_ATTRIBUTES, span->attrs.dropped));
	for (size_t i = 0; i < span->n_events; i++)
		write_event(w, &span->events[i]);

	if (tg_json_room(w, FIELD_HEAD + FIELD_HEAD + 2 * FIELD_HEAD + message_size +
	                    SPAN_FLAGS_SIZE) != 0)
		return;
	end_at(w, put_span_tail(tail_of(w), span, message_len, message_size));
	close_field(w, at, 2);
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

/* One attribute of the resource, into room made for it. */
static uint8_t *
put_resource_attr(uint8_t *p, const struct tg_attr *a)
{
	size_t key = key_size(a), value = any_value_size(a);

	p = put_len(p, RESOURCE_ATTRIBUTES, field_size(key) + field_size(value));
	p = put_text(p, KEY_VALUE_KEY, a->key, a->key_len, key);
	return put_any_value(p, a, value);
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
	for (size_t i = 0; i < resource->count; i++)
		p = put_resource_attr(p, &resource->items[i]);
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
