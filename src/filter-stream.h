/*
 * Filtering a streamed response (server-sent events of chat.completion.chunk
 * or text_completion objects, of Anthropic's Messages stream, or of the
 * OpenAI Responses API) with a sliding window.
 *
 * Each text of the stream (a choice's content, refusal, text, or the
 * arguments of one tool call; an Anthropic content block's text, thinking
 * or tool input JSON; a Responses API output item's text, refusal,
 * arguments or reasoning summary) is a window: the text of events not yet
 * sent, plus a little already sent text as context for lookbehind. After
 * each event the regex filters scan the window with partial matching, so a
 * match split over several events is found before any of its text leaves.
 * An event is held while some of its text could still be the start of a
 * match, and at most the filter's "hold" bytes of text are held; the rest
 * goes out at once. Flag filters hold nothing, since they change no text.
 *
 * A filter's "hold_timeout" bounds the time instead: text it held that
 * long goes out from a timer, before the match is decided. That trades
 * masking for latency. When later events complete the match, only its
 * part not yet sent is replaced, because the start already went out as
 * it was. A match whose text all went out is recorded as a flag. A block
 * still ends the stream, after its start went out.
 *
 * Events the filters do not change are sent byte for byte as received;
 * changed events are written again whole, as one "data:" line of compact
 * JSON after the "event:" line they came with, if any, which Anthropic's
 * clients need. Classifier filters (moderation, plugin) do not run on
 * streams.
 */
#ifndef TOLLGATE_FILTER_STREAM_H
#define TOLLGATE_FILTER_STREAM_H

#include <stddef.h>

#include <yajl/yajl_parse.h>

#include "filter-t.h"

struct event_base;
struct tg_filter_stream;
struct tg_reply_tap;
struct tg_stream_event;

enum tg_stream_verdict {
	TG_STREAM_OK,
	TG_STREAM_BLOCK,        /* a block filter matched: the stream ends */
	TG_STREAM_ERROR,        /* out of memory, or a match failed in PCRE2 */
	TG_STREAM_TOO_LARGE,    /* the stream needs more memory held than
	                           max_held allows: the stream ends */
};

/* Receives each event that may go to the client now, in order. ev and its
 * buffers are valid during the call only. */
typedef void tg_filter_emit_fn(void *arg, struct tg_stream_event *ev);

/*
 * Start filtering one response stream with the response-side regex filters
 * of chain, recording decisions in log (both must outlive the stream), and
 * passing what may be sent to emit. max_held bounds, in bytes, the events
 * held back at once (raw and data, as received) and the arguments of one
 * tool call, which the decoder of JSON texts reads whole. When a filter has a hold_timeout, the
 * stream's timer runs on base (the worker's), and emit may also be called
 * from that timer, between the calls below. With base NULL, text is held
 * until an event decides, and hold_timeout has no effect. Returns NULL with
 * *none set when no such filter applies, NULL with *none clear when out of
 * memory.
 */
struct tg_filter_stream *tg_filter_stream_new(const struct tg_filter_chain *chain,
                                              struct tg_filter_log *log,
                                              struct event_base *base,
                                              tg_filter_emit_fn *emit, void *emit_arg,
                                              size_t max_held, int *none);

/*
 * Feed one whole event as the relay classified it. ev->raw and ev->data
 * are copied. The texts are read from ev->data without a jansson tree,
 * which is built only when jansson must decide whether the data is
 * readable, for the first chunk of the stream, and for an event whose
 * text is masked. Emits, in order, this event unchanged (with ev->data,
 * from which a later feature may build the tree), held events it
 * completes, or nothing while it is held.
 * On TG_STREAM_BLOCK the held events are dropped and the end of the stream
 * is emitted instead: a chunk whose finish_reason is "content_filter",
 * then "data: [DONE]", or for an Anthropic stream an "error" event
 * (tg_error_anthropic_body) without message_stop, each marked from_gateway
 * (struct tg_stream_event). The caller must cancel
 * the upstream and feed nothing more.
 * On TG_STREAM_ERROR and TG_STREAM_TOO_LARGE nothing more is emitted, the
 * held events included: the caller ends the stream with an error event
 * and feeds nothing more.
 */
enum tg_stream_verdict tg_filter_stream_event(struct tg_filter_stream *s,
                                              struct tg_stream_event *ev);

/*
 * Read the texts of the next event's data (len bytes at data) in the
 * relay's digest pass over it, instead of a pass of the filters' own:
 * fills *tap, and returns the handle to give tg_reply_digest_tap(). Then
 * call tg_filter_stream_tapped() with what that returned, and feed the
 * event with "tapped" set, unless the relay keeps it back first.
 */
yajl_handle *tg_filter_stream_tap(struct tg_filter_stream *s, const char *data, size_t len,
                                  struct tg_reply_tap *tap);
void tg_filter_stream_tapped(struct tg_filter_stream *s, int rc);

/* The upstream stream ended without [DONE]: scan what is held as final
 * text and emit every held event. May block, as above. Both calls return
 * TG_STREAM_ERROR once the timer failed to send what it let go. */
enum tg_stream_verdict tg_filter_stream_finish(struct tg_filter_stream *s);

/* Events held back right now. */
size_t tg_filter_stream_held(const struct tg_filter_stream *s);

/* Whether the stream was blocked unread: an event may carry model text
 * the filters do not read (a Responses API event type they do not
 * follow), so they fail closed. */
int tg_filter_stream_blocked_unread(const struct tg_filter_stream *s);

/* Why the last call returned TG_STREAM_ERROR or TG_STREAM_TOO_LARGE, or
 * why a stream was blocked unread, for a log line: the rule and PCRE2's
 * message, "out of memory" (see tg_scan_describe_error()), or what grew
 * past max_held. */
void tg_filter_stream_describe_error(const struct tg_filter_stream *s, char *buf,
                                     size_t size);

/* Free the stream and stop its timer (client gone, failover, end). */
void tg_filter_stream_free(struct tg_filter_stream *s);

#endif
