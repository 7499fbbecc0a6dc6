/*
 * A response as the mock plans to send it: status, content type and the
 * whole body, with the event boundaries of a stream. conn.c decides when
 * each piece goes out; this file only builds the bytes.
 */
#ifndef TOLLGATE_MOCK_RESPONSE_H
#define TOLLGATE_MOCK_RESPONSE_H

#include <stddef.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "options.h"

struct mock_response {
	int status;
	char *content_type;
	struct evbuffer *body;
	int stream;             /* event stream: chunked, written event by event */
	size_t *event_ends;     /* body offset just past each event */
	size_t n_events, events_cap;
};

struct mock_response *mock_response_new(void);
void mock_response_free(struct mock_response *r);

/* Replace the content type; returns -1 when out of memory. */
int mock_response_set_type(struct mock_response *r, const char *type);

/* Make r a non-streaming JSON response with this status and body. Does not
 * take the reference on body. */
int mock_response_json(struct mock_response *r, int status, json_t *body);

/*
 * Make r an OpenAI-shaped error: {"error": {"message", "type", "param",
 * "code"}}. param and code may be NULL (sent as null).
 */
int mock_response_error(struct mock_response *r, int status, const char *type,
                        const char *param, const char *code,
                        const char *message);

/* Turn r into an empty event stream; subsequent events append to it. */
int mock_response_stream(struct mock_response *r);

/*
 * Append one event whose data is the len bytes at data, framed as the
 * options set: keepalive comments first, "data:" with or without a space,
 * lines ending in LF, CRLF or CR.
 */
int mock_response_add_data_event(struct mock_response *r, const char *data,
                                 size_t len, const struct mock_options *o);

/*
 * With stamp=1 each JSON event carries "mock_sent_ns" set to this
 * placeholder, which conn.c overwrites with the send time when the event is
 * written. The time fits the placeholder's 19 digits and is padded with
 * spaces, which JSON allows before a number, so sizes stay as planned.
 */
#define MOCK_STAMP_KEY "mock_sent_ns"
#define MOCK_STAMP_PLACEHOLDER 9000000000000000009LL
#define MOCK_STAMP_MARK "\"" MOCK_STAMP_KEY "\":9000000000000000009"
#define MOCK_STAMP_WIDTH 19

/* Append one event dumped from json (compact), adding the stamp
 * placeholder to it when o->stamp is set. */
int mock_response_add_json_event(struct mock_response *r, json_t *json,
                                 const struct mock_options *o);

/*
 * Append a recorded event: the raw bytes of its lines and terminating blank
 * line. Without framing options the bytes go out unchanged; with them each
 * line is rewritten as mock_response_add_data_event() would frame it.
 */
int mock_response_add_raw_event(struct mock_response *r, const char *raw,
                                size_t len, const struct mock_options *o);

#endif
