/*
 * OTLP JSON encoding with jansson.
 *
 * Every builder returns a new reference or NULL, and the json_*_new()
 * calls steal references even when they fail, so a NULL anywhere below
 * makes the whole request NULL without leaking.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "trace-context.h"
#include "trace-otlp.h"
#include "trace-semconv.h"

#define SCOPE_NAME "tollgate"

/* A 64-bit integer as the JSON mapping writes it: a decimal string. */
static json_t *
int64_string(int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return json_string(buf);
}

static json_t *
uint64_string(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return json_string(buf);
}

static json_t *
hex_id(const uint8_t *id, size_t n)
{
	char buf[2 * TG_TRACE_ID_SIZE + 1];

	tg_hex_encode(buf, id, n);
	return json_string(buf);
}

/* An AnyValue. */
static json_t *
any_value(const struct tg_attr *attr)
{
	json_t *values;

	switch (attr->type) {
	case TG_ATTR_STRING:
		return json_pack("{s:o}", "stringValue", json_string(attr->v.s));
	case TG_ATTR_INT:
		return json_pack("{s:o}", "intValue", int64_string(attr->v.i));
	case TG_ATTR_DOUBLE:
		return json_pack("{s:f}", "doubleValue", attr->v.d);
	case TG_ATTR_BOOL:
		return json_pack("{s:b}", "boolValue", attr->v.b);
	case TG_ATTR_STRINGS:
		values = json_array();
		for (size_t i = 0; values != NULL && i < attr->v.list.n; i++) {
			if (json_array_append_new(values, json_pack("{s:s}", "stringValue",
			                                             attr->v.list.items[i])) != 0) {
				json_decref(values);
				values = NULL;
			}
		}
		return json_pack("{s:{s:o}}", "arrayValue", "values", values);
	}
	return NULL;
}

/* A list of KeyValue. */
static json_t *
key_values(const struct tg_attrs *attrs)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < attrs->count; i++) {
		json_t *kv = json_pack("{s:s, s:o}", "key", attrs->items[i].key,
		                       "value", any_value(&attrs->items[i]));

		if (json_array_append_new(list, kv) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}

/* Set "droppedXCount" only when something was dropped: the mapping omits
 * fields at their default value. */
static int
set_dropped(json_t *obj, const char *key, uint32_t dropped)
{
	if (dropped == 0)
		return 0;
	return json_object_set_new(obj, key, json_integer(dropped));
}

static json_t *
span_event(const struct tg_span_event *ev)
{
	json_t *obj = json_pack("{s:o, s:s, s:o}",
	                        "timeUnixNano", uint64_string(ev->time_ns),
	                        "name", ev->name,
	                        "attributes", key_values(&ev->attrs));

	if (obj != NULL && set_dropped(obj, "droppedAttributesCount", ev->attrs.dropped) != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static json_t *
span_events(const struct tg_span *span)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < span->n_events; i++) {
		if (json_array_append_new(list, span_event(&span->events[i])) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return list;
}

static json_t *
span_status(const struct tg_span *span)
{
	json_t *status = json_object();

	if (status == NULL || span->status == TG_STATUS_UNSET)
		return status;
	if (json_object_set_new(status, "code", json_integer(span->status)) != 0 ||
	    (span->status_message != NULL &&
	     json_object_set_new(status, "message", json_string(span->status_message)) != 0)) {
		json_decref(status);
		return NULL;
	}
	return status;
}

json_t *
tg_otlp_span(const struct tg_span *span)
{
	json_t *obj = json_pack("{s:o, s:o, s:s, s:i, s:o, s:o, s:o, s:o, s:o}",
	                        "traceId", hex_id(span->trace_id, TG_TRACE_ID_SIZE),
	                        "spanId", hex_id(span->span_id, TG_SPAN_ID_SIZE),
	                        "name", span->name,
	                        "kind", (int)span->kind,
	                        "startTimeUnixNano", uint64_string(span->start_ns),
	                        "endTimeUnixNano", uint64_string(span->end_ns),
	                        "attributes", key_values(&span->attrs),
	                        "events", span_events(span),
	                        "status", span_status(span));
	int rc = 0;

	if (obj == NULL)
		return NULL;
	if (!tg_id_is_zero(span->parent_id, TG_SPAN_ID_SIZE))
		rc |= json_object_set_new(obj, "parentSpanId",
		                          hex_id(span->parent_id, TG_SPAN_ID_SIZE));
	if (span->trace_state != NULL && span->trace_state[0] != '\0')
		rc |= json_object_set_new(obj, "traceState", json_string(span->trace_state));
	if (span->flags != 0)
		rc |= json_object_set_new(obj, "flags", json_integer(span->flags));
	rc |= set_dropped(obj, "droppedAttributesCount", span->attrs.dropped);
	rc |= set_dropped(obj, "droppedEventsCount", span->dropped_events);
	if (rc != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static json_t *
resource_attributes(const struct tg_otlp_resource *r)
{
	struct tg_attrs attrs = {0};
	struct tg_attr items[5] = {
		{ .key = TG_SC(SERVICE_NAME), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->service_name },
		{ .key = TG_SC(SERVICE_VERSION), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->service_version },
		{ .key = TG_SC(TELEMETRY_SDK_NAME), .type = TG_ATTR_STRING,
		  .v.s = (char *)SCOPE_NAME },
		{ .key = TG_SC(TELEMETRY_SDK_LANGUAGE), .type = TG_ATTR_STRING,
		  .v.s = (char *)"c" },
		{ .key = TG_SC(SERVICE_INSTANCE_ID), .type = TG_ATTR_STRING,
		  .v.s = (char *)r->instance_id },
	};

	/* A borrowed view: key_values() only reads. */
	attrs.items = items;
	attrs.count = r->instance_id != NULL ? 5 : 4;
	return key_values(&attrs);
}

json_t *
tg_otlp_encode(struct tg_span *const *spans, size_t n,
               const struct tg_otlp_resource *resource)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < n; i++) {
		if (json_array_append_new(list, tg_otlp_span(spans[i])) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	return json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}",
	                 "resourceSpans",
	                 "resource", "attributes", resource_attributes(resource),
	                 "scopeSpans",
	                 "scope", "name", SCOPE_NAME, "version", resource->service_version,
	                 "spans", list);
}

char *
tg_otlp_dumps(struct tg_span *const *spans, size_t n,
              const struct tg_otlp_resource *resource)
{
	json_t *root = tg_otlp_encode(spans, n, resource);
	char *text;

	if (root == NULL)
		return NULL;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}
