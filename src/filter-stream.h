/*
 * Filtering a streamed response (server-sent events of chat.completion.chunk
 * or text_completion objects) with a sliding window.
 *
 * Each text of the stream (a choice's content, refusal, text, or the
 * arguments of one tool call) is a window: the text of events not yet
 * sent, plus a little already sent text as context for lookbehind. After
 * each event the regex filters scan the window with partial matching, so a
 * match split over several events is found before any of its text leaves.
 * An event is held while some of its text could still be the start of a
 * match, and at most the filter's "hold" bytes of text are held; the rest
 * goes out at once. Events the filters do not change are sent byte for
 * byte as received; changed events are written again whole, as one
 * "data:" line of compact JSON. Classifier filters (moderation, plugin)
 * do not run on streams.
 */
#ifndef TOLLGATE_FILTER_STREAM_H
#define TOLLGATE_FILTER_STREAM_H

#include <stddef.h>

#include "filter-t.h"

struct evbuffer;
struct tg_filter_stream;

enum tg_stream_verdict {
	TG_STREAM_OK,
	TG_STREAM_BLOCK,        /* a block filter matched: the stream ends */
	TG_STREAM_ERROR,        /* out of memory, or a match failed in PCRE2 */
};

/*
 * Start filtering one response stream with the response-side regex filters
 * of chain, recording decisions in log (both must outlive the stream).
 * Returns NULL with *none set when no such filter applies, NULL with *none
 * clear when out of memory.
 */
struct tg_filter_stream *tg_filter_stream_new(const struct tg_filter_chain *chain,
                                              struct tg_filter_log *log, int *none);

/*
 * Feed one whole event: raw_len bytes as received (raw) and its data field.
 * Appends to out what may be sent now, in order: this event unchanged, held
 * events it completes, or nothing while it is held. On TG_STREAM_BLOCK, out
 * gets instead the end of the stream: a chunk whose finish_reason is
 * "content_filter", then "data: [DONE]"; the held events are dropped, and
 * the caller must cancel the upstream and feed nothing more.
 */
enum tg_stream_verdict tg_filter_stream_event(struct tg_filter_stream *s,
                                              const char *raw, size_t raw_len,
                                              const char *data, size_t data_len,
                                              struct evbuffer *out);

/* The upstream stream ended: scan what is held as final text and append
 * every held event to out. May block, as above. */
enum tg_stream_verdict tg_filter_stream_finish(struct tg_filter_stream *s,
                                               struct evbuffer *out);

/* Events held back right now. */
size_t tg_filter_stream_held(const struct tg_filter_stream *s);

void tg_filter_stream_free(struct tg_filter_stream *s);

#endif
