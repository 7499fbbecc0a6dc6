/*
 * Reading the partial success of an OTLP/HTTP export response
 * (trace-otlp-reply.h). A protobuf response is read field by field: the
 * message has two fields of interest, so the reader walks the wire format
 * and skips every other field by its wire type. A JSON response goes to
 * jansson.
 *
 *   ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
 *   ExportTracePartialSuccess  { int64 rejected_spans = 1; string error_message = 2; }
 *
 * Field numbers from opentelemetry-proto's
 * collector/trace/v1/trace_service.proto.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "trace-otlp-reply.h"

#define WIRE_VARINT 0
#define WIRE_I64 1
#define WIRE_LEN 2
#define WIRE_I32 5

#define FIELD_PARTIAL_SUCCESS 1
#define FIELD_REJECTED_SPANS 1
#define FIELD_ERROR_MESSAGE 2

/* A cursor over protobuf bytes. */
struct wire {
	const unsigned char *p;
	const unsigned char *end;
};

/* Read a varint of at most 10 bytes into *v. Returns 0, or -1 when the
 * bytes end first or the varint is longer. */
static int
read_varint(struct wire *w, uint64_t *v)
{
	uint64_t value = 0;

	for (int shift = 0; shift < 70; shift += 7) {
		if (w->p == w->end)
			return -1;
		value |= (uint64_t)(*w->p & 0x7f) << shift;
		if ((*w->p++ & 0x80) == 0) {
			*v = value;
			return 0;
		}
	}
	return -1;
}

/* Read the length of a length-delimited field and the bytes it covers
 * into *field. Returns 0, or -1 when they run past the end. */
static int
read_len(struct wire *w, struct wire *field)
{
	uint64_t len;

	if (read_varint(w, &len) != 0 || len > (uint64_t)(w->end - w->p))
		return -1;
	field->p = w->p;
	field->end = w->p + len;
	w->p += len;
	return 0;
}

/* Skip the value of a field of wire type wire_type. Groups (types 3 and 4)
 * are not valid in proto3, so they fail the read. */
static int
skip_value(struct wire *w, unsigned wire_type)
{
	uint64_t ignored;
	struct wire field;
	size_t fixed;

	switch (wire_type) {
	case WIRE_VARINT:
		return read_varint(w, &ignored);
	case WIRE_LEN:
		return read_len(w, &field);
	case WIRE_I64:
	case WIRE_I32:
		fixed = wire_type == WIRE_I64 ? 8 : 4;
		if ((size_t)(w->end - w->p) < fixed)
			return -1;
		w->p += fixed;
		return 0;
	default:
		return -1;
	}
}

/* Read the next field's number and wire type. */
static int
read_key(struct wire *w, uint64_t *field, unsigned *wire_type)
{
	uint64_t key;

	if (read_varint(w, &key) != 0)
		return -1;
	*field = key >> 3;
	*wire_type = (unsigned)(key & 7);
	return 0;
}

/* Read an ExportTracePartialSuccess. A field that repeats replaces the
 * earlier value, as protobuf parsers do. */
static int
read_partial(struct wire w, struct tg_otlp_partial *out)
{
	while (w.p < w.end) {
		uint64_t field, value;
		unsigned wire_type;
		struct wire text;

		if (read_key(&w, &field, &wire_type) != 0)
			return -1;
		if (field == FIELD_REJECTED_SPANS && wire_type == WIRE_VARINT) {
			if (read_varint(&w, &value) != 0)
				return -1;
			out->rejected_spans = (int64_t)value;
		} else if (field == FIELD_ERROR_MESSAGE && wire_type == WIRE_LEN) {
			if (read_len(&w, &text) != 0)
				return -1;
			out->message = (const char *)text.p;
			out->message_len = (size_t)(text.end - text.p);
		} else if (skip_value(&w, wire_type) != 0) {
			return -1;
		}
	}
	return 0;
}

static int
read_protobuf(const unsigned char *body, size_t len, struct tg_otlp_partial *out)
{
	struct wire w = {body, body + len};

	while (w.p < w.end) {
		uint64_t field;
		unsigned wire_type;
		struct wire partial;

		if (read_key(&w, &field, &wire_type) != 0)
			return -1;
		if (field == FIELD_PARTIAL_SUCCESS && wire_type == WIRE_LEN) {
			if (read_len(&w, &partial) != 0 || read_partial(partial, out) != 0)
				return -1;
		} else if (skip_value(&w, wire_type) != 0) {
			return -1;
		}
	}
	return 0;
}

/* The value of an int64 member: the protobuf JSON mapping writes it as a
 * decimal string, and OTLP receivers accept a number too. 0 for anything
 * else. */
static int64_t
json_int64(const json_t *value)
{
	const char *text = json_string_value(value);
	char *end;
	long long n;

	if (json_is_integer(value))
		return json_integer_value(value);
	if (text == NULL || *text == '\0')
		return 0;
	errno = 0;
	n = strtoll(text, &end, 10);
	return *end == '\0' && errno == 0 ? n : 0;
}

/* Read the JSON form, {"partialSuccess": {"rejectedSpans": "n",
 * "errorMessage": "..."}}, copying the message into message_buf, cut to
 * its size. */
static int
read_json(const unsigned char *body, size_t len, char *message_buf,
          struct tg_otlp_partial *out)
{
	json_t *root = json_loadb((const char *)body, len, 0, NULL);
	json_t *partial;
	const char *message;

	if (root == NULL)
		return -1;
	partial = json_object_get(root, "partialSuccess");
	out->rejected_spans = json_int64(json_object_get(partial, "rejectedSpans"));
	message = json_string_value(json_object_get(partial, "errorMessage"));
	if (message != NULL) {
		out->message_len = strnlen(message, TG_OTLP_REPLY_MESSAGE_MAX);
		memcpy(message_buf, message, out->message_len);
		out->message = message_buf;
	}
	json_decref(root);
	return 0;
}

int
tg_otlp_reply_read(const char *content_type, const unsigned char *body, size_t len,
                   char *message_buf, struct tg_otlp_partial *out)
{
	static const char protobuf[] = "application/x-protobuf";

	memset(out, 0, sizeof(*out));
	if (content_type != NULL && strncasecmp(content_type, protobuf, sizeof(protobuf) - 1) == 0)
		return read_protobuf(body, len, out);
	return read_json(body, len, message_buf, out);
}
