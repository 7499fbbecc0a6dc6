/*
 * The state of the stream filters (filter-stream.c), shared with the reading
 * of JSON texts in a string (filter-stream-args.c). Not for other callers:
 * filter-stream.h is the interface.
 */
#ifndef TOLLGATE_FILTER_STREAM_INT_H
#define TOLLGATE_FILTER_STREAM_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "relay.h"

#include "filter-args.h"
#include "filter-chunk.h"
#include "filter-responses.h"
#include "filter-stream.h"
#include "filter.h"

struct held_event;

/* A string value of a JSON text in a window, written without an escape,
 * or a number: its decoded bytes are the window's bytes [start, start +
 * len). */
struct plain_value {
	size_t start, len;
	int number;
};

/* A replacement that the scan of a JSON text in a string wrote for a
 * match made of characters that a number may have, not decoded yet. */
struct masked_span {
	size_t start, end;
};

/* The part of a window's text that one held event carries. */
struct piece {
	struct held_event *event;
	size_t at, to;          /* its JSON string in the event's data */
	size_t start, end;      /* in the window's text */
	json_t *string;         /* its string in the tree of a Responses API
	                           event, which is written through the tree;
	                           NULL for other events */
};

/* A Responses API event's string that repeats the whole text of a window:
 * it goes out as the window sent that text (write_tree()). */
struct repeat {
	json_t *string;
	size_t window;          /* in the stream's windows */
};

/* One text of a choice (enum tg_chunk_kind). */
struct window {
	long choice;
	enum tg_chunk_kind kind;
	long tool;              /* tool call index, for TG_CHUNK_ARGUMENTS */

	char *text;
	size_t len, cap;
	size_t *scan_from;      /* per filter of the stream */
	size_t *let_go;         /* per filter: text before it is no longer
	                           held, as its hold_timeout passed */
	size_t release;         /* text before it may be sent */
	int finished;           /* the choice has a finish_reason */
	int dirty;              /* text or state changed since the last scan */

	struct piece *pieces;   /* of held events, oldest first */
	size_t n_pieces, cap_pieces;

	/* A JSON text in a string (inner_json_kind()), read decoded too. */
	struct tg_args_decoder *args;   /* NULL for other texts; its offsets
	                                   count from the window's first
	                                   byte, trimmed or not. Allocated
	                                   apart, since yajl keeps its
	                                   address and windows move. */
	size_t fed;             /* text before it went to args */
	size_t trimmed;         /* a decoder offset less its window offset:
	                           bytes trim_window() dropped, less what
	                           masks of decoded text added (unsigned
	                           arithmetic, so it may wrap) */
	struct masked_span *masked;     /* that may sit in a number
	                                   (quote_masked_numbers()) */
	size_t n_masked, cap_masked;

	/* A text of a Responses API stream that later events repeat whole. */
	int keeps_sent;
	char *sent;             /* the text as it went out, masks included */
	size_t sent_len, sent_cap;
	size_t received;        /* bytes of text that came, before masking */
};

struct held_event {
	struct held_event *next;
	char *raw;
	size_t raw_len;
	char *data;             /* the JSON of its data, in raw's block; NULL
	                           when the data is not a JSON object */
	size_t data_len;
	enum tg_event_kind kind;        /* as the relay classified it */
	int finish;
	json_t *json;           /* the relay's tree, when one was built */
	struct tg_reply_digest digest;  /* the relay's, while nothing changed */
	int changed;            /* some text of it was masked */
	size_t n_pieces;        /* its pieces, in windows */
	int tree;               /* a Responses API event, written through its
	                           tree (json) when changed */
	struct repeat *repeats; /* of a Responses API event */
	size_t n_repeats;
	uint64_t arrived;       /* tg_now_ns() when it came; with a timer only */
};

/* The reason a stream failed on an event the filters must not pass. */
enum unreadable {
	READABLE,
	NOT_AN_OBJECT,          /* not a JSON object with each member once */
	BAD_INDEX,              /* an "index" that is not a small integer */
	TEXT_AFTER_FINISH,      /* text for a choice after its finish_reason */
	MIXED_SHAPES,           /* OpenAI choices and Anthropic content blocks */
	DEEP_TEXT,              /* texts nested deeper than the read follows */
	ODD_TEXT,               /* a text that is not a string (odd_text) */
	MISSING_INDEX,          /* a choice without "index" that clients key
	                           apart (unkeyed_choices()) */
	HELD_TOO_MUCH,          /* the held events passed max_held */
	ARGUMENTS_TOO_LONG,     /* a JSON text in a string passed max_held */
	BIG_INTEGER,            /* a masked event has an integer beyond 64 bits,
	                           which its rewrite through a tree cannot keep */
	RESPONSES_UNREAD,       /* a Responses API event with model text that
	                           the read does not follow: blocked unread */
	REPEAT_DIFFERS,         /* a Responses API event repeats a text with a
	                           length other than that of its deltas */
	RESPONSES_TOO_LONG,     /* the texts of a Responses API stream, which
	                           its last events repeat, passed max_held */
};

struct tg_filter_stream {
	enum unreadable unreadable;
	const struct tg_filter **filters;       /* response-side regex filters */
	size_t n_filters;
	struct tg_filter_log *log;
	tg_filter_emit_fn *emit;
	void *emit_arg;
	uint32_t context;       /* code points of sent text kept for lookbehind */

	struct window *windows;
	size_t n_windows;

	struct held_event *head, *tail;
	size_t n_held;
	size_t held_bytes;      /* raw and data bytes of the held events */
	size_t max_held;        /* the bound on held_bytes, and on the text a
	                           decoder of JSON texts reads */

	struct tg_scan scan;
	struct tg_chunk chunk;  /* the texts of the event being read */
	enum tg_chunk_result tapped;    /* of the read in the relay's digest */
	json_t *meta;           /* id, object, created, model of the stream */
	int anthropic;          /* the events are Anthropic's Messages stream */
	int openai_texts;       /* an event had "choices" */
	int anthropic_texts;    /* an event started or continued a content block */
	int done;               /* [DONE] passed, or the stream was blocked */
	long long n_emitted;    /* events sent */
	long long next_sequence;        /* the "sequence_number" of a Responses
	                                   API event the stream adds: one past
	                                   that of the last event sent, or
	                                   n_emitted when none had one */
	int responses;          /* the events are a Responses API stream */
	struct tg_responses_event responses_read;       /* of the last event */
	char unread_type[64];   /* the type of a RESPONSES_UNREAD event */
	size_t kept_bytes;      /* received bytes of windows that keep_sent */
	int blocked;            /* a block dropped the held events: what is
	                           emitted since is the gateway's end */
	int holds;              /* a filter masks or blocks, so text is held */
	long values;            /* TG_CHUNK_VALUE texts so far, each a window */
	int indexed;            /* a choice with an "index" came */
	int unindexed;          /* a choice without one came */
	const char *decoded_block;      /* the rule a decoded text blocked by */
	int decoded_failed;     /* a scan of a decoded text failed */
	struct window *decoding;        /* the window whose decoder runs */
	struct plain_value *plain;      /* string values without an escape
	                                   that the decoder completed */
	size_t n_plain, cap_plain;
	size_t value_keep;      /* the largest "hold" of the filters: the
	                           most of an open string value kept */

	struct event *timer;    /* hold_timeout; NULL when no filter has one */
	uint64_t timer_at;      /* tg_now_ns() time it is armed for; 0: not */
	int failed;             /* the timer could not send what it let go */
};

/* --- windows (filter-stream.c) ------------------------------------------- */

/* Move an offset at or after a replaced span [a, b), now rlen bytes long. */
size_t tg_shift_offset(size_t pos, size_t a, size_t b, size_t rlen);

/* Replace [a, b) of w's text with rlen bytes at rep, moving every offset
 * of w along. Returns 0, or -1 when out of memory. */
int tg_window_replace(struct tg_filter_stream *s, struct window *w, size_t a, size_t b,
                      const char *rep, size_t rlen);

/* The end of w's text already sent. */
size_t tg_window_sent_end(const struct window *w);

/* The action match m of filter f takes, given the end of the text sent. */
enum tg_filter_action tg_window_match_action(const struct tg_filter *f, const struct tg_match *m,
                                             size_t sent);

/* Mask the matches of the last scan in w's text. Returns 0, or -1 when out
 * of memory. */
int tg_window_mask_matches(struct tg_filter_stream *s, const struct tg_filter *f,
                           struct window *w, int whole_text, size_t *last_end);

/* The window of a text; NULL when it has none yet. */
struct window *tg_window_lookup(struct tg_filter_stream *s, long choice, enum tg_chunk_kind kind,
                                long tool);

/* The window of a text, made when it has none yet; NULL when out of memory. */
struct window *tg_window_find(struct tg_filter_stream *s, long choice, enum tg_chunk_kind kind,
                              long tool);

/* Append a text of ev to w: len bytes of text, whose JSON string is at
 * [at, to) in ev's data. Returns 0, or -1 when out of memory. */
int tg_window_add_piece(struct window *w, struct held_event *ev, const char *text, size_t len,
                        size_t at, size_t to);

/* Send one event made by the stream (the end of a blocked one): raw_len
 * bytes at raw, whose data digest read. Returns 0, or -1 when out of memory. */
int tg_stream_emit_end(struct tg_filter_stream *s, enum tg_event_kind kind, const char *raw,
                       size_t raw_len, const struct tg_reply_digest *digest);

/* Drop every held event: a block ends the stream before them. */
void tg_stream_drop_held(struct tg_filter_stream *s);

/* --- Responses API events (filter-stream-responses.c) --------------------- */

/* Read the texts of in, a Responses API event, into s->responses_read.
 * Returns 0, 1 when the event has model text the read does not follow
 * (s->unread_type names its type), or -1 with s->unreadable set or when
 * out of memory. */
int tg_stream_read_responses(struct tg_filter_stream *s, struct tg_stream_event *in);

/* Add the texts read to their windows, as pieces of ev. Returns 0, or -1
 * with s->unreadable set or when out of memory. */
int tg_stream_add_responses_texts(struct tg_filter_stream *s, struct held_event *ev);

/* Write the texts of ev, released, into its tree. Returns 0, or -1 when
 * out of memory. */
int tg_stream_write_tree(struct tg_filter_stream *s, struct held_event *ev);

/* End a Responses API stream with that API's "error" event: for a block,
 * or, with unread, for an event the read does not follow. */
enum tg_stream_verdict tg_stream_end_responses(struct tg_filter_stream *s, int unread);

/* --- JSON texts in a string (filter-stream-args.c) ----------------------- */

/* A decoder for a window of a JSON text; NULL when out of memory. */
struct tg_args_decoder *tg_window_args_new(struct tg_filter_stream *s);
void tg_window_args_free(struct tg_args_decoder *d);

/* Whether match m may lie inside a number of the JSON text in w. */
int tg_window_in_number(const struct window *w, const struct tg_match *m);

/* Keep [start, end), a replacement that may sit in a number, for
 * tg_window_decode(). Returns 0, or -1 when out of memory. */
int tg_window_add_masked_span(struct window *w, size_t start, size_t end);
void tg_window_drop_masked_span(struct window *w, size_t k);

/* Where a string value of the JSON text in w may be open; SIZE_MAX: none. */
size_t tg_window_open_value(const struct window *w);

/* Where the decoder of w keeps its text back; SIZE_MAX: nowhere. */
size_t tg_window_decoded_hold(const struct window *w);

/* Decode and scan the settled text of w, when it is a JSON text. */
enum tg_stream_verdict tg_window_decode(struct tg_filter_stream *s, struct window *w);

#endif
