/*
 * Cache entries: what is stored for one response, how a streamed response
 * is recorded event by event, and how an entry is replayed to a client that
 * asks for a stream or for one JSON body.
 *
 * An entry is a line of JSON, the header, then a line feed and the
 * payload: the response body, or the data of each server-sent event, one
 * after the other, byte for byte:
 *
 *   {"v":2,"created_ms":T,"kind":"json","bytes":[N]}\n<response body>
 *   {"v":2,"created_ms":T,"kind":"stream","usage":true,"usage_event":K,
 *    "bytes":[N1,N2,...]}\n<data 1><data 2>...
 *   {"v":2,"created_ms":T,"kind":"events","bytes":[N1,N2,...]}\n
 *    <name 1>\n<data 1><name 2>\n<data 2>...
 *
 * "bytes" gives the length of each part of the payload. After it, an
 * entry may have "headers": {"content-type": "...", ...}, the response
 * headers a hit replays (tg_cache_header_keeps()); an entry without them
 * has the bytes older versions wrote, and older versions skip them. A value read back
 * from Redis goes through the checks of the header (cache-header.h), and
 * the lengths must add up to the payload's, before it is trusted. The payload is not
 * JSON inside JSON, because decoding a body written as a JSON string cost
 * a hit about 60,000 instructions (callgrind).
 *
 * created_ms is the wall-clock time of storing, in Unix milliseconds, for
 * the Age header; it is the same for every instance that shares a Redis.
 * A stream's parts are its events in order, without the final "[DONE]",
 * which every stored stream had. The events of an Anthropic Messages
 * stream ("events") are named, so each part is a name, a line feed and the
 * data. Its final message_stop is kept and its pings are left out. "usage"
 * is true when some event carries a usage object. "usage_event" is the index of
 * the usage-only chunk ("choices": []) that a client gets only when it set
 * stream_options.include_usage, or -1.
 *
 * Only complete, successful responses become entries: JSON bodies that are
 * an object without "error" and whose choices all have a finish_reason
 * other than "content_filter"; streams whose every choice got such a
 * finish_reason and that ended with "data: [DONE]"; Anthropic streams
 * whose message_delta gave a stop_reason other than "refusal" and that
 * ended with message_stop.
 */
#ifndef TOLLGATE_CACHE_ENTRY_H
#define TOLLGATE_CACHE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "headers.h"

/* Choices a recorded stream may have; more make it unstorable. OpenAI
 * allows n up to 128. */
#define TG_CACHE_MAX_CHOICES 128

/* A stream being recorded while it is relayed. */
struct tg_cache_record {
	json_t *events;                 /* data of each event, as JSON strings */
	size_t bytes;                   /* data bytes so far */
	size_t max_bytes;               /* beyond this the stream is not stored */
	long usage_event;               /* index of the usage-only chunk, or -1 */
	int has_usage;
	int done;                       /* "[DONE]" or message_stop was the last event */
	int too_large;                  /* rejected for passing max_bytes */
	int named;                      /* events are stored with their names: the
	                                   first event was message_start or
	                                   response.created */
	int responses;                  /* named, and a Responses API stream */
	int stopped;                    /* named: message_delta gave a stop_reason,
	                                   or response.completed came */
	const char *unstorable;         /* why it cannot be stored, or NULL */
	unsigned char choices[TG_CACHE_MAX_CHOICES];  /* enum choice_state by index */
};

/* Prepare r for a stream of at most max_bytes of event data. */
void tg_cache_record_init(struct tg_cache_record *r, size_t max_bytes);
void tg_cache_record_free(struct tg_cache_record *r);

/*
 * Record one event as the client receives it: type is its "event" field
 * ("" when absent), data its data, and chunk the data parsed as JSON (NULL
 * when it is not JSON), which the relay parsed once for every feature that
 * reads the event. A stream whose first event is message_start is
 * recorded as an Anthropic Messages stream, and one whose first event is
 * response.created as a Responses API stream. Recording stops, and the
 * stream will not be stored, at the first event that is not an OpenAI
 * chunk (in a named stream, not a JSON object). It also stops at an
 * error, a content_filter finish, a refusal stop_reason, a Responses API
 * response that failed or is incomplete, an event after the end, or when
 * max_bytes is passed. r->unstorable then names the reason.
 */
void tg_cache_record_event(struct tg_cache_record *r, const char *type, size_t type_len,
                           const char *data, size_t data_len, const json_t *chunk);

/* Return NULL when r contains a complete stream, else the reason it does
 * not (for debug logs). */
const char *tg_cache_record_incomplete(const struct tg_cache_record *r);

/*
 * Encode an entry. From a record that tg_cache_record_incomplete() accepts,
 * or from a JSON response body, which is checked here through parsed, its
 * parse (NULL when it is not JSON). Of headers, the response's headers
 * (NULL for none), those that tg_cache_header_keeps() names are stored.
 * Returns the envelope text (free() it) and its length in *len, or NULL
 * with *reason set when the response must not be stored or memory ran out.
 */
char *tg_cache_entry_from_record(const struct tg_cache_record *r,
                                 const struct tg_headers *headers, int64_t created_ms,
                                 size_t *len, const char **reason);
char *tg_cache_entry_from_body(const char *body, size_t body_len, const json_t *parsed,
                               const struct tg_headers *headers, int64_t created_ms,
                               size_t *len, const char **reason);

/* One part of an entry's payload, followed by a NUL of its own. */
struct tg_cache_part {
	const char *data;
	size_t len;
};

/* A decoded entry; parts point into payload, a copy of the stored one. */
struct tg_cache_entry {
	char *payload;
	struct tg_cache_part *parts;    /* stream: the events */
	size_t n_parts;
	int64_t created_ms;
	int is_stream;
	int named;                      /* parts are "NAME\nDATA" of Anthropic events */
	const char *body;               /* json: the response body, parts[0] */
	size_t body_len;
	int has_usage;
	long usage_event;
	struct tg_headers headers;      /* the stored response headers */
};

/* Decode an envelope. Returns 0, or -1 when data is not a valid entry of
 * this version (then there is nothing to free). */
int tg_cache_entry_decode(const char *data, size_t len, struct tg_cache_entry *e);
void tg_cache_entry_free(struct tg_cache_entry *e);

/* Content types of a replayed entry that stored none, or that is
 * converted: those OpenAI and Anthropic send. */
#define TG_CACHE_TYPE_JSON "application/json"
#define TG_CACHE_TYPE_STREAM "text/event-stream; charset=utf-8"

/* 1 when e serves a request for a stream (stream set) or for one JSON
 * body in the kind it was stored as, so that its stored Content-Type and
 * Cache-Control describe the response; 0 when it is converted. */
int tg_cache_entry_kind_serves(const struct tg_cache_entry *e, int stream);

/*
 * Append the response body for a request to out: as server-sent
 * events ending in "data: [DONE]" when stream is set, with the usage chunk
 * only when want_usage is set, or else as one JSON body. A stored stream
 * replays its events unchanged, and an Anthropic one with their names and
 * without "[DONE]". A stream stored with usage lost, for a client that did
 * not ask for usage, the "usage": null of each chunk too, as the relay
 * takes it out for such a client. The other kind is converted, for chat and text
 * completions only, so an Anthropic stream serves only streaming requests. Returns 0, or -1 when this entry cannot answer the
 * request (a conversion it cannot do, or usage the client needs and the
 * entry lacks), which the caller treats as a miss; out is then unchanged.
 */
int tg_cache_entry_render(const struct tg_cache_entry *e, int stream, int want_usage,
                          struct evbuffer *out);

/* Append one server-sent event carrying data to out, one "data:" line per
 * line of data. Returns 0, or -1 when out of memory. */
int tg_cache_write_event(struct evbuffer *out, const char *data, size_t len);

/* --- conversions (cache-convert.c) ------------------------------------------ */

/*
 * Build the chunks a stream would carry for a chat.completion or
 * text_completion body: per choice, one chunk with the whole message and
 * one with the finish_reason, then the usage-only chunk when want_usage is
 * set. Returns a new array of chunk objects, or NULL when body is of
 * another kind, lacks usage that want_usage needs, or memory ran out.
 */
json_t *tg_cache_body_to_chunks(const json_t *body, int want_usage);

/*
 * Merge the chunks of a stream (the data of its n events, without
 * "[DONE]") into the chat.completion or text_completion body a
 * non-streaming request gets: contents, refusals and tool-call arguments
 * concatenated, logprobs joined, the last finish_reason and usage kept.
 * Returns the new body, or NULL when the chunks are of another kind or
 * memory ran out.
 */
json_t *tg_cache_chunks_to_body(const struct tg_cache_part *events, size_t n);

#endif
