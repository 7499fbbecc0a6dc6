/*
 * The sliding window over a streamed response.
 *
 * Offsets in a window are byte offsets into its text buffer. Text before
 * the buffer was sent and dropped; what the buffer keeps before the first
 * held piece was sent too, and is context for lookbehind and for matches
 * that began before a hold_timeout let their start go. Per filter,
 * scan_from is where that filter's next match may begin: the start of the
 * earliest possible match it reported (a partial match), or the end of the
 * text when there was none. A filter holds the text from scan_from on,
 * unless its hold_timeout let go of it (let_go) or it only flags. Events
 * that carry only text no filter holds may go out.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "clock.h"
#include "errors.h"
#include "json-writer.h"
#include "relay.h"
#include "sse.h"

#include "filter-args.h"
#include "filter-chunk.h"
#include "filter-number.h"
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
	RESPONSES_EVENTS,       /* a Responses API event, which the filters do
	                           not read: blocked unread */
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
	long long n_emitted;    /* events sent: the "sequence_number" of a
	                           Responses API event the stream adds */
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

static void on_hold_timeout(evutil_socket_t fd, short what, void *arg);
static int on_decoded(void *arg, const char *text, size_t len);

/* A decoder for a window of JSON texts; NULL when out of memory. */
static struct tg_args_decoder *
new_args(struct tg_filter_stream *s)
{
	struct tg_args_decoder *d = malloc(sizeof(*d));

	if (d != NULL && tg_args_open(d, on_decoded, s) != 0) {
		free(d);
		return NULL;
	}
	if (d != NULL)
		d->values = 1;
	return d;
}

static void
free_args(struct tg_args_decoder *d)
{
	if (d != NULL)
		tg_args_close(d);
	free(d);
}


/* 1 when filter f needs a timer: it holds text, with a time bound. */
static int
has_hold_timeout(const struct tg_filter *f)
{
	return f->hold_timeout > 0 && f->action != TG_ACTION_FLAG;
}

struct tg_filter_stream *
tg_filter_stream_new(const struct tg_filter_chain *chain, struct tg_filter_log *log,
                     struct event_base *base, tg_filter_emit_fn *emit, void *emit_arg,
                     size_t max_held, int *none)
{
	struct tg_filter_stream *s;
	int timed = 0;

	*none = 1;
	for (size_t i = 0; chain != NULL && i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if (f->type == TG_FILTER_REGEX && (f->apply_to & TG_SIDE_RESPONSE))
			*none = 0;
	}
	if (*none)
		return NULL;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->filters = calloc(chain->n, sizeof(*s->filters));
	if (s->filters == NULL) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if (f->type != TG_FILTER_REGEX || !(f->apply_to & TG_SIDE_RESPONSE))
			continue;
		s->filters[s->n_filters++] = f;
		s->holds |= f->action != TG_ACTION_FLAG;
		if (f->hold > s->value_keep)
			s->value_keep = f->hold;
		if (f->lookbehind > s->context)
			s->context = f->lookbehind;
		timed |= has_hold_timeout(f);
	}
	if (timed && base != NULL) {
		s->timer = evtimer_new(base, on_hold_timeout, s);
		if (s->timer == NULL) {
			free(s->filters);
			free(s);
			return NULL;
		}
	}
	s->log = log;
	s->emit = emit;
	s->emit_arg = emit_arg;
	s->max_held = max_held;
	tg_scan_init(&s->scan);
	return s;
}

static void
free_event(struct held_event *ev)
{
	json_decref(ev->json);
	free(ev->raw);
	free(ev);
}

void
tg_filter_stream_free(struct tg_filter_stream *s)
{
	if (s == NULL)
		return;
	if (s->timer != NULL)
		event_free(s->timer);
	while (s->head != NULL) {
		struct held_event *next = s->head->next;

		free_event(s->head);
		s->head = next;
	}
	for (size_t i = 0; i < s->n_windows; i++) {
		free(s->windows[i].text);
		free(s->windows[i].scan_from);
		free(s->windows[i].let_go);
		free(s->windows[i].pieces);
		free(s->windows[i].masked);
		free_args(s->windows[i].args);
	}
	free(s->windows);
	free(s->plain);
	free(s->filters);
	tg_scan_free(&s->scan);
	tg_chunk_free(&s->chunk);
	json_decref(s->meta);
	free(s);
}

void
tg_filter_stream_describe_error(const struct tg_filter_stream *s, char *buf, size_t size)
{
	switch (s->unreadable) {
	case NOT_AN_OBJECT:
		snprintf(buf, size, "an event's data is not a JSON object with each member "
		         "once, which the filters cannot read");
		return;
	case BAD_INDEX:
		snprintf(buf, size, "an event has an \"index\" that is not an integer from 0 "
		         "to %ld, so the filters cannot tell which text it continues",
		         TG_CHUNK_MAX_INDEX);
		return;
	case MISSING_INDEX:
		snprintf(buf, size, "an event has a choice without an \"index\" beside another "
		         "choice, which clients key differently, so the filters cannot tell which "
		         "text it continues");
		return;
	case ODD_TEXT:
		snprintf(buf, size, "an event has a number, a boolean or an object where a text "
		         "string belongs, which clients may read as text but the filters cannot "
		         "screen");
		return;
	case DEEP_TEXT:
		snprintf(buf, size, "an event has texts nested deeper than %d containers, "
		         "which the filters cannot read", TG_CHUNK_MAX_FRAMES);
		return;
	case BIG_INTEGER:
		snprintf(buf, size, "an event with a masked text has an integer beyond 64 bits, "
		         "which the rewritten event cannot keep");
		return;
	case TEXT_AFTER_FINISH:
		snprintf(buf, size, "an event has text for a choice after that choice's "
		         "finish_reason, which the filters scanned as complete");
		return;
	case MIXED_SHAPES:
		snprintf(buf, size, "the stream mixes OpenAI chunks and Anthropic content "
		         "blocks, whose texts the filters cannot tell apart");
		return;
	case HELD_TOO_MUCH:
		snprintf(buf, size, "the events held back to be screened passed %zu bytes",
		         s->max_held);
		return;
	case ARGUMENTS_TOO_LONG:
		snprintf(buf, size, "the arguments of a tool call passed %zu bytes", s->max_held);
		return;
	case RESPONSES_EVENTS:
		snprintf(buf, size, "the stream is a Responses API stream, whose events the "
		         "stream filters do not read");
		return;
	case READABLE:
		break;
	}
	tg_scan_describe_error(&s->scan, buf, size);
}

int
tg_filter_stream_blocked_unread(const struct tg_filter_stream *s)
{
	return s->unreadable == RESPONSES_EVENTS;
}

size_t
tg_filter_stream_held(const struct tg_filter_stream *s)
{
	return s->n_held;
}

/* --- windows ------------------------------------------------------------ */

/* Whether the texts of kind are JSON texts in a string, whose escaped
 * strings clients decode (filter-args.h). Their string values and
 * numbers are scanned one by one besides (scan_plain_value()), and a
 * number with a mask is written again as a string (quote_masked_numbers()).
 * NOTE: a number whose start went out before its mask (past "hold", or
 * after hold_timeout) keeps the mask in place, and the arguments are then
 * invalid JSON. A key is masked in place too, where a body that is not
 * streamed blocks instead of rewriting it (run_regex_keys()). */
static int
inner_json_kind(enum tg_chunk_kind kind)
{
	return kind == TG_CHUNK_ARGUMENTS || kind == TG_CHUNK_FUNCTION_CALL ||
	       kind == TG_CHUNK_INPUT_JSON;
}

static struct window *
find_window(struct tg_filter_stream *s, long choice, enum tg_chunk_kind kind, long tool)
{
	struct window *w;

	for (size_t i = 0; i < s->n_windows; i++) {
		w = &s->windows[i];
		if (w->choice == choice && w->kind == kind && w->tool == tool)
			return w;
	}

	w = realloc(s->windows, (s->n_windows + 1) * sizeof(*w));
	if (w == NULL)
		return NULL;
	s->windows = w;
	w = &s->windows[s->n_windows];
	memset(w, 0, sizeof(*w));
	w->choice = choice;
	w->kind = kind;
	w->tool = tool;
	w->scan_from = calloc(s->n_filters, sizeof(*w->scan_from));
	w->let_go = calloc(s->n_filters, sizeof(*w->let_go));
	if (inner_json_kind(kind))
		w->args = new_args(s);
	if (w->scan_from == NULL || w->let_go == NULL || (inner_json_kind(kind) && w->args == NULL)) {
		free(w->scan_from);
		free(w->let_go);
		free_args(w->args);
		return NULL;
	}
	s->n_windows++;
	return w;
}

/* Make room for len more bytes of text and the NUL. */
static int
window_reserve(struct window *w, size_t len)
{
	size_t cap = w->cap ? w->cap : 256;
	char *p;

	if (w->len + len + 1 <= w->cap)
		return 0;
	while (cap < w->len + len + 1)
		cap *= 2;
	p = realloc(w->text, cap);
	if (p == NULL)
		return -1;
	w->text = p;
	w->cap = cap;
	return 0;
}

static int
window_append(struct window *w, const char *text, size_t len)
{
	if (window_reserve(w, len) != 0)
		return -1;
	memcpy(w->text + w->len, text, len);
	w->len += len;
	w->text[w->len] = '\0';
	return 0;
}

/* Append a text of ev to w: len bytes of text, whose JSON string is at
 * [at, to) in ev's data. */
static int
add_piece(struct window *w, struct held_event *ev, const char *text, size_t len, size_t at,
          size_t to)
{
	size_t start = w->len;

	if (w->n_pieces == w->cap_pieces) {
		size_t cap = w->cap_pieces ? w->cap_pieces * 2 : 8;
		struct piece *p = realloc(w->pieces, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		w->pieces = p;
		w->cap_pieces = cap;
	}
	if (window_append(w, text, len) != 0)
		return -1;
	w->pieces[w->n_pieces++] = (struct piece){ev, at, to, start, w->len};
	ev->n_pieces++;
	return 0;
}

/* Move an offset at or after a replaced span [a, b), now rlen bytes long. */
static size_t
shift_offset(size_t pos, size_t a, size_t b, size_t rlen)
{
	if (pos >= b)
		return pos - (b - a) + rlen;
	if (pos > a)
		return a + rlen;
	return pos;
}

/*
 * Replace [a, b) of the window's text with rep. The piece that contains a
 * takes the replacement, pieces inside the span become empty, and the
 * events of every piece it touches are marked changed.
 */
static int
window_replace(struct tg_filter_stream *s, struct window *w, size_t a, size_t b,
               const char *rep, size_t rlen)
{
	size_t tail = w->len - b;
	size_t fed;

	if (rlen > b - a && window_reserve(w, rlen - (b - a)) != 0)
		return -1;
	memmove(w->text + a + rlen, w->text + b, tail);
	memcpy(w->text + a, rep, rlen);
	w->len = a + rlen + tail;
	w->text[w->len] = '\0';

	for (size_t i = 0; i < w->n_pieces; i++) {
		struct piece *p = &w->pieces[i];

		if (p->end > a && p->start < b)
			p->event->changed = 1;
		if (p->end <= a)
			continue;
		if (p->start <= a)
			p->end = p->end >= b ? p->end - (b - a) + rlen : a + rlen;
		else {
			p->start = shift_offset(p->start, a, b, rlen);
			p->end = shift_offset(p->end, a, b, rlen);
		}
	}
	for (size_t i = 0; i < s->n_filters; i++) {
		w->scan_from[i] = shift_offset(w->scan_from[i], a, b, rlen);
		w->let_go[i] = shift_offset(w->let_go[i], a, b, rlen);
	}
	w->release = shift_offset(w->release, a, b, rlen);
	for (size_t i = 0; i < w->n_masked; i++) {
		w->masked[i].start = shift_offset(w->masked[i].start, a, b, rlen);
		w->masked[i].end = shift_offset(w->masked[i].end, a, b, rlen);
	}

	/* The decoder's offsets stay: a window offset plus trimmed. */
	fed = w->fed;
	w->fed = shift_offset(w->fed, a, b, rlen);
	w->trimmed += fed - w->fed;
	return 0;
}

/* The end of the text already sent: the start of the first held piece. */
static size_t
sent_end(const struct window *w)
{
	return w->n_pieces > 0 ? w->pieces[0].start : w->len;
}

/* The action a match takes. A mask on text that was all sent (let go by
 * hold_timeout before the match was complete) changes nothing, so it is
 * recorded as a flag. */
static enum tg_filter_action
match_action(const struct tg_filter *f, const struct tg_match *m, size_t sent)
{
	if (f->action == TG_ACTION_MASK && m->end <= sent)
		return TG_ACTION_FLAG;
	return f->action;
}

/* The characters a JSON number is written with. */
static int
is_number_char(char c)
{
	return c != '\0' && strchr("0123456789+-.eE", c) != NULL;
}

/* Whether match m of w's text could lie inside a number of the JSON text
 * in w: the decoder still reads it, and m has only number characters. */
static int
may_be_in_number(const struct window *w, const struct tg_match *m)
{
	if (w->args == NULL || w->args->stopped)
		return 0;
	for (size_t k = m->start; k < m->end; k++) {
		if (!is_number_char(w->text[k]))
			return 0;
	}
	return 1;
}

static int
add_masked_span(struct window *w, size_t start, size_t end)
{
	if (w->n_masked == w->cap_masked) {
		size_t cap = w->cap_masked ? w->cap_masked * 2 : 4;
		struct masked_span *p = realloc(w->masked, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		w->masked = p;
		w->cap_masked = cap;
	}
	w->masked[w->n_masked++] = (struct masked_span){start, end};
	return 0;
}

/*
 * Replace the matches of the last scan, the last first so that the
 * offsets of the earlier ones stay valid. Only the part of a match that
 * was not sent yet is replaced: a match whose start hold_timeout let go
 * keeps that start and loses the rest to the replacement. With
 * whole_text (a scan of the whole window), a replacement that may sit in
 * a number is kept for quote_masked_numbers(). *last_end gets the end of
 * the last match after masking. Returns 0, or -1 when out of memory.
 */
static int
mask_matches(struct tg_filter_stream *s, const struct tg_filter *f, struct window *w,
             int whole_text, size_t *last_end)
{
	const struct tg_scan *sc = &s->scan;
	size_t sent = sent_end(w);

	*last_end = sc->matches[sc->n_matches - 1].end;
	for (size_t k = sc->n_matches; k-- > 0;) {
		const struct tg_match *m = &sc->matches[k];
		struct tg_match one = {0, m->end - m->start, m->rule};
		size_t a = m->start > sent ? m->start : sent;
		size_t rlen;
		char *rep;
		int rc;

		/* Sorted, so every earlier match was sent too. */
		if (m->end <= sent)
			break;
		int numeric = whole_text && a == m->start && may_be_in_number(w, m);

		rep = tg_filter_mask(f, w->text + m->start, m->end - m->start, &one, 1, &rlen);
		if (rep == NULL)
			return -1;
		rc = window_replace(s, w, a, m->end, rep, rlen);
		free(rep);
		if (rc == 0 && numeric)
			rc = add_masked_span(w, a, a + rlen);
		if (rc != 0)
			return -1;
		if (k == sc->n_matches - 1)
			*last_end = a + rlen;
		else
			*last_end = shift_offset(*last_end, a, m->end, rlen);
	}
	return 0;
}

/* Move pos forward to the start of a UTF-8 sequence. */
static size_t
char_boundary(const struct window *w, size_t pos)
{
	while (pos < w->len && ((unsigned char)w->text[pos] & 0xc0) == 0x80)
		pos++;
	return pos;
}

/*
 * Scan the window with filter i, mask what it found, and move its
 * scan_from. Returns TG_STREAM_BLOCK when a block filter matched.
 */
static enum tg_stream_verdict
scan_filter(struct tg_filter_stream *s, size_t i, struct window *w, int final)
{
	const struct tg_filter *f = s->filters[i];
	struct tg_scan *sc = &s->scan;
	size_t sent = sent_end(w);
	size_t last_end;

	if (tg_scan_run(sc, f, w->text, w->len, w->scan_from[i], !final) != 0)
		return TG_STREAM_ERROR;

	for (size_t k = 0; k < sc->n_matches; k++) {
		if (tg_filter_log_add(s->log, f, sc->matches[k].rule->name,
		                      match_action(f, &sc->matches[k], sent),
		                      TG_SIDE_RESPONSE, 0) != 0)
			return TG_STREAM_ERROR;
	}
	if (sc->n_matches > 0 && f->action == TG_ACTION_BLOCK)
		return TG_STREAM_BLOCK;

	/* Set before masking, which shifts it along with the text. */
	w->scan_from[i] = sc->hold_from == SIZE_MAX || final ? w->len : sc->hold_from;
	if (sc->n_matches > 0) {
		if (f->action == TG_ACTION_MASK) {
			if (mask_matches(s, f, w, 1, &last_end) != 0)
				return TG_STREAM_ERROR;
		} else {
			last_end = sc->matches[sc->n_matches - 1].end;
		}
		/* A replacement is never scanned again. */
		if (w->scan_from[i] < last_end)
			w->scan_from[i] = last_end;
	}

	/* The bound: a possible match longer than "hold" is let go. */
	if (!final && w->len - w->scan_from[i] > f->hold)
		w->scan_from[i] = char_boundary(w, w->len - f->hold);
	return TG_STREAM_OK;
}

/*
 * Return where a string value of the JSON text in w may be open: the end
 * of the last string the decoder read, or 0 when that was trimmed. A mask
 * rewrites a value in place once it is complete (scan_plain_value()), so
 * the filters that change text hold it. SIZE_MAX when w is no JSON text,
 * or no more of it can come.
 */
static size_t
open_value(const struct window *w)
{
	size_t open;

	if (w->args == NULL || w->args->stopped)
		return SIZE_MAX;
	open = w->args->token_end - w->trimmed;
	return open <= w->len ? open : 0;
}

/*
 * Where filter i holds the window's text from. A flag filter changes no
 * text, so it holds none: its matches are recorded when they complete,
 * after their text may have gone. Others hold from scan_from, or from an
 * open value, at most "hold" bytes of it, or from where their
 * hold_timeout let go, whichever is later.
 */
static size_t
hold_point(const struct tg_filter_stream *s, const struct window *w, size_t i)
{
	const struct tg_filter *f = s->filters[i];
	size_t h = w->scan_from[i];
	size_t open = open_value(w);

	if (f->action == TG_ACTION_FLAG)
		return w->len;
	if (open != SIZE_MAX && w->len - open > f->hold)
		open = char_boundary(w, w->len - f->hold);
	if (open < h)
		h = open;
	return h > w->let_go[i] ? h : w->let_go[i];
}

/* Return the window offset from which the JSON text decoder keeps the
 * window's text back, or SIZE_MAX for none. Text that hold_timeout released
 * before it was settled is not decoded yet, so a backslash there counts too. */
static size_t
decoded_hold(const struct window *w)
{
	size_t hold;

	if (w->args == NULL)
		return SIZE_MAX;
	hold = tg_args_hold(w->args, memchr(w->text + w->fed, '\\', w->len - w->fed) != NULL);
	return hold == SIZE_MAX ? hold : hold - w->trimmed;
}

/* Text before the lowest hold point may be sent. Called after masking,
 * which changes the window's length. A string of a JSON text with an
 * escape is held until its end is decoded and scanned, hold_timeout or
 * not, since its decoded form may match where its text does not. */
static void
update_release(const struct tg_filter_stream *s, struct window *w)
{
	size_t release = w->len;
	size_t decoded = s->holds ? decoded_hold(w) : SIZE_MAX;

	for (size_t i = 0; i < s->n_filters; i++) {
		size_t h = hold_point(s, w, i);

		if (h < release)
			release = h;
	}
	if (decoded < release)
		release = decoded;
	w->release = release;
}

/*
 * Keep the place of a string value without an escape, or of a number,
 * that the decoder of w completed, to scan it once the decoder returns: a
 * mask changes the text the decoder reads from. A value whose start was
 * trimmed was sent, and is left to the scan of the whole text. Returns 0,
 * or 1 to stop the decoder when out of memory.
 */
static int
keep_plain_value(struct tg_filter_stream *s, struct window *w, const char *text, size_t len)
{
	const struct tg_args_decoder *d = w->args;
	int number = d->last_number;

	/* token_end is just after a string's closing quote. */
	size_t start = (number ? d->number_end : d->token_end - 1) - len - w->trimmed;

	if (start > w->len || len > w->len - start)
		return 0;
	assert(memcmp(w->text + start, text, len) == 0);

	if (s->n_plain == s->cap_plain) {
		size_t cap = s->cap_plain ? s->cap_plain * 2 : 8;
		struct plain_value *p = realloc(s->plain, cap * sizeof(*p));

		if (p == NULL) {
			s->decoded_failed = 1;
			return 1;
		}
		s->plain = p;
		s->cap_plain = cap;
	}
	s->plain[s->n_plain++] = (struct plain_value){start, len, number};
	return 0;
}

/* Copy the matches of the last scan to *out, NULL when there are none.
 * Returns 0, or -1 when out of memory. */
static int
copy_matches(const struct tg_scan *sc, struct tg_match **out, size_t *n)
{
	*out = NULL;
	*n = sc->n_matches;
	if (*n == 0)
		return 0;
	*out = malloc(*n * sizeof(**out));
	if (*out == NULL)
		return -1;
	memcpy(*out, sc->matches, *n * sizeof(**out));
	return 0;
}

/* Whether one of the *n matches in raw, of the window's text, has the rule
 * and the bytes of match m of the decoded text. The one found is removed,
 * so that it pairs with one decoded match only. */
static int
take_raw_match(struct tg_match *raw, size_t *n, const char *window_text, const struct tg_match *m,
               const char *text)
{
	size_t len = m->end - m->start;

	for (size_t j = 0; j < *n; j++) {
		if (raw[j].rule == m->rule && raw[j].end - raw[j].start == len &&
		    memcmp(window_text + raw[j].start, text + m->start, len) == 0) {
			raw[j] = raw[--*n];
			return 1;
		}
	}
	return 0;
}

/*
 * Record the matches of flag filter f in text, a string of w's JSON text
 * decoded, that was written with an escape. A match the scan of the whole
 * text recorded is left out: one with the same rule and bytes in the text
 * from the end of the string or key before. A match that spans no escape
 * reads the same in both. Returns 0, or -1 when a scan failed or memory
 * ran out.
 */
static int
flag_decoded(struct tg_filter_stream *s, const struct tg_filter *f, const struct window *w,
             const char *text, size_t len)
{
	struct tg_scan *sc = &s->scan;
	size_t from = w->args->token_start - w->trimmed;
	size_t to = w->args->token_end - w->trimmed;
	struct tg_match *raw = NULL;
	size_t n_raw = 0;
	int rc = 0;

	/* A start that was trimmed wraps past the end. */
	if (from <= to && to <= w->len &&
	    (tg_scan_run(sc, f, w->text, to, from, 0) != 0 || copy_matches(sc, &raw, &n_raw) != 0))
		return -1;
	if (tg_scan_run(sc, f, text, len, 0, 0) != 0) {
		free(raw);
		return -1;
	}

	for (size_t k = 0; k < sc->n_matches && rc == 0; k++) {
		if (take_raw_match(raw, &n_raw, w->text, &sc->matches[k], text))
			continue;
		rc = tg_filter_log_add(s->log, f, sc->matches[k].rule->name, TG_ACTION_FLAG,
		                       TG_SIDE_RESPONSE, 0);
	}
	free(raw);
	return rc != 0 ? -1 : 0;
}

/* A string of a JSON text, decoded, that had an escape: scan it with
 * every filter (tg_filter_decoded_text(), or flag_decoded() for a flag
 * filter). Stops the decoder at a block. */
static int
on_decoded(void *arg, const char *text, size_t len)
{
	struct tg_filter_stream *s = arg;

	if (!s->decoding->args->last_escaped)
		return keep_plain_value(s, s->decoding, text, len);

	for (size_t i = 0; i < s->n_filters; i++) {
		const struct tg_filter *f = s->filters[i];
		int rc = f->action == TG_ACTION_FLAG
		         ? flag_decoded(s, f, s->decoding, text, len)
		         : tg_filter_decoded_text(f, TG_SIDE_RESPONSE, s->log, &s->scan, text, len,
		                                  &s->decoded_block);

		if (rc < 0)
			s->decoded_failed = 1;
		if (rc != 0)
			return 1;
	}
	return 0;
}

/* Where no filter can change the window's text any more: text before it
 * is as it will be sent, and may be decoded. */
static size_t
settled_end(const struct tg_filter_stream *s, const struct window *w)
{
	size_t end = w->len;

	if (w->finished)
		return end;
	for (size_t i = 0; i < s->n_filters; i++) {
		if (s->filters[i]->action != TG_ACTION_FLAG && w->scan_from[i] < end)
			end = w->scan_from[i];
	}
	return end;
}

/*
 * Keep in the last scan only the matches that the scan of the whole text
 * does not report, n_raw of them in raw, and move them to window offsets
 * from start.
 */
static void
drop_raw_matches(struct tg_scan *sc, const struct tg_match *raw, size_t n_raw, size_t start)
{
	size_t n_new = 0;

	for (size_t k = 0; k < sc->n_matches; k++) {
		struct tg_match m = sc->matches[k];
		int seen = 0;

		m.start += start;
		m.end += start;
		for (size_t j = 0; j < n_raw && !seen; j++)
			seen = raw[j].start == m.start && raw[j].end == m.end && raw[j].rule == m.rule;
		if (!seen)
			sc->matches[n_new++] = m;
	}
	sc->n_matches = n_new;
}

/*
 * Write the number p of w again as a JSON string of text (p->len bytes,
 * or the digits of its value), with the matches of the last scan, in
 * offsets of text, masked. p becomes the string's text, between its
 * quotes. Returns 0, or -1 when out of memory.
 */
static int
quote_masked_number(struct tg_filter_stream *s, const struct tg_filter *f, struct window *w,
                    struct plain_value *p, const char *text, size_t len)
{
	struct tg_scan *sc = &s->scan;
	struct tg_json_writer quoted = {0};
	size_t masked_len;
	char *masked = tg_filter_mask(f, text, len, sc->matches, sc->n_matches, &masked_len);
	int rc = -1;

	if (masked == NULL)
		return -1;
	tg_json_stringn(&quoted, masked, masked_len);
	free(masked);
	if (!quoted.failed)
		rc = window_replace(s, w, p->start, p->start + p->len, quoted.data, quoted.len);
	if (rc == 0)
		*p = (struct plain_value){p->start + 1, quoted.len - 2, 0};
	tg_json_writer_free(&quoted);
	return rc;
}

/*
 * Mask the matches of the last scan (window offsets) in the number p of w
 * by writing the number again as a JSON string of its masked text. A body
 * that is not streamed has it so too, since masked digits outside quotes
 * would not be JSON. p becomes the string's text, between its quotes. A
 * number whose start was sent cannot be quoted any more, so its matches
 * are masked in place instead (mask_matches()). Returns 0, or -1 when out
 * of memory.
 */
static int
mask_number(struct tg_filter_stream *s, const struct tg_filter *f, struct window *w,
            struct plain_value *p)
{
	struct tg_scan *sc = &s->scan;
	size_t last_end, before = w->len;
	int rc;

	if (p->start < sent_end(w)) {
		rc = mask_matches(s, f, w, 0, &last_end);
		p->len = p->len + w->len - before;
		return rc;
	}

	/* The scratch matches move to offsets in the number. */
	for (size_t k = 0; k < sc->n_matches; k++) {
		sc->matches[k].start -= p->start;
		sc->matches[k].end -= p->start;
	}
	return quote_masked_number(s, f, w, p, w->text + p->start, p->len);
}

/*
 * Scan the string value or number p of w with filter i as a text of its
 * own, so that an anchored rule matches it whole. A match that the scan
 * of the whole text reports too was recorded, masked or blocked there, and
 * is dropped here, so each counts once. Others are recorded, block, or are
 * masked: in place in a string without an escape, which has its decoded
 * offsets, and by writing a number again as a string (mask_number()).
 * p->len follows the mask.
 */
/*
 * Scan the number p of w, written with a fraction or an exponent, by its
 * value: the len bytes of digits (filter-number.h), as a body that is not
 * streamed reads it. A mask writes the number again as a string of the
 * masked digits, unless its start went out, when the match is recorded
 * as a flag, as one in text that went out is.
 */
static enum tg_stream_verdict
scan_number_value(struct tg_filter_stream *s, size_t i, struct window *w, struct plain_value *p,
                  const char *digits, size_t len)
{
	const struct tg_filter *f = s->filters[i];
	struct tg_scan *sc = &s->scan;
	int went_out = p->start < sent_end(w);
	enum tg_filter_action action = f->action == TG_ACTION_MASK && went_out ? TG_ACTION_FLAG
	                                                                        : f->action;

	if (tg_scan_run(sc, f, digits, len, 0, 0) != 0)
		return TG_STREAM_ERROR;
	for (size_t k = 0; k < sc->n_matches; k++) {
		if (tg_filter_log_add(s->log, f, sc->matches[k].rule->name, action,
		                      TG_SIDE_RESPONSE, 0) != 0)
			return TG_STREAM_ERROR;
	}
	if (sc->n_matches == 0 || action == TG_ACTION_FLAG)
		return TG_STREAM_OK;
	if (action == TG_ACTION_BLOCK)
		return TG_STREAM_BLOCK;
	return quote_masked_number(s, f, w, p, digits, len) == 0 ? TG_STREAM_OK
	                                                         : TG_STREAM_ERROR;
}

static enum tg_stream_verdict
scan_plain_value(struct tg_filter_stream *s, size_t i, struct window *w, struct plain_value *p)
{
	const struct tg_filter *f = s->filters[i];
	struct tg_scan *sc = &s->scan;
	size_t sent = sent_end(w), before = w->len, last_end;
	struct tg_match *raw = NULL;
	size_t n_raw;
	char digits[TG_NUMBER_TEXT_SIZE];
	size_t n_digits = p->number ? tg_number_integer_text(w->text + p->start, p->len, digits)
	                            : 0;

	if (n_digits > 0)
		return scan_number_value(s, i, w, p, digits, n_digits);

	if (tg_scan_run(sc, f, w->text, p->start + p->len, p->start, 0) != 0 ||
	    copy_matches(sc, &raw, &n_raw) != 0)
		return TG_STREAM_ERROR;
	if (tg_scan_run(sc, f, w->text + p->start, p->len, 0, 0) != 0) {
		free(raw);
		return TG_STREAM_ERROR;
	}
	drop_raw_matches(sc, raw, n_raw, p->start);
	free(raw);

	for (size_t k = 0; k < sc->n_matches; k++) {
		if (tg_filter_log_add(s->log, f, sc->matches[k].rule->name,
		                      match_action(f, &sc->matches[k], sent), TG_SIDE_RESPONSE, 0) != 0)
			return TG_STREAM_ERROR;
	}
	if (sc->n_matches > 0 && f->action == TG_ACTION_BLOCK)
		return TG_STREAM_BLOCK;
	if (sc->n_matches == 0 || f->action != TG_ACTION_MASK)
		return TG_STREAM_OK;
	if (p->number)
		return mask_number(s, f, w, p) == 0 ? TG_STREAM_OK : TG_STREAM_ERROR;
	if (mask_matches(s, f, w, 0, &last_end) != 0)
		return TG_STREAM_ERROR;
	p->len = p->len + w->len - before;
	return TG_STREAM_OK;
}

/* Scan the string values without an escape that the decoder completed,
 * the last first, so that a mask leaves the places of the others. */
static enum tg_stream_verdict
scan_plain_values(struct tg_filter_stream *s, struct window *w)
{
	enum tg_stream_verdict v = TG_STREAM_OK;

	while (s->n_plain > 0 && v == TG_STREAM_OK) {
		struct plain_value p = s->plain[--s->n_plain];

		for (size_t i = 0; i < s->n_filters && v == TG_STREAM_OK; i++)
			v = scan_plain_value(s, i, w, &p);
	}
	s->n_plain = 0;
	return v;
}

/* Give the decoder of w the window's text up to end. */
static void
feed_decoder(struct window *w, size_t end)
{
	tg_args_feed(w->args, w->text + w->fed, end - w->fed, w->finished && end == w->len);
	w->fed = end;
}

static void
drop_masked_span(struct window *w, size_t k)
{
	memmove(w->masked + k, w->masked + k + 1, (w->n_masked - k - 1) * sizeof(*w->masked));
	w->n_masked--;
}

/* The index of the masked span of w that starts first, or SIZE_MAX. */
static size_t
first_masked_span(const struct window *w)
{
	size_t first = SIZE_MAX;

	for (size_t k = 0; k < w->n_masked; k++) {
		if (first == SIZE_MAX || w->masked[k].start < w->masked[first].start)
			first = k;
	}
	return first;
}

/* Return the end of the run of number characters and masked spans that
 * continues at pos, dropping the spans it takes in. */
static size_t
number_run_end(struct window *w, size_t pos)
{
	for (;;) {
		size_t k = 0;

		while (pos < w->len && is_number_char(w->text[pos]))
			pos++;
		while (k < w->n_masked && w->masked[k].start != pos)
			k++;
		if (k == w->n_masked)
			return pos;
		pos = w->masked[k].end;
		drop_masked_span(w, k);
	}
}

/*
 * Write again as JSON strings the numbers of w that the scan of the whole
 * text masked inside. That scan masks a match in place before the decoder
 * reaches it, so the decoder is fed up to the start of the run of number
 * characters around each replacement first. When it has no string open
 * there (no quote after the last string it read), the run is a number,
 * which is written again as a string of its masked text, as a body that
 * is not streamed has it. *end, the settled end, follows the text, and
 * moves back to the start of a number that may still grow, or that a
 * filter may still change, so that the decoder waits there. Returns 0, or
 * -1 when out of memory.
 */
static int
quote_masked_numbers(struct tg_filter_stream *s, struct window *w, size_t *end)
{
	size_t k;

	while ((k = first_masked_span(w)) != SIZE_MAX && w->masked[k].start < *end) {
		size_t start = w->masked[k].start, last_string, run_end;
		struct tg_json_writer quoted = {0};
		int rc;

		if (start < w->fed) {
			drop_masked_span(w, k);
			continue;
		}
		while (start > w->fed && is_number_char(w->text[start - 1]))
			start--;

		/* A number that began in text the decoder read cannot be quoted. */
		if (start == w->fed && (start > 0 ? is_number_char(w->text[start - 1])
		                                  : w->trimmed != 0)) {
			drop_masked_span(w, k);
			continue;
		}
		feed_decoder(w, start);

		/* A stopped decoder reads nothing more: the text is not JSON, or
		 * a filter blocked or failed. */
		if (w->args->stopped) {
			w->n_masked = 0;
			return 0;
		}
		last_string = w->args->token_end - w->trimmed;
		if (last_string > start || start < sent_end(w) ||
		    memchr(w->text + last_string, '"', start - last_string) != NULL) {
			drop_masked_span(w, k);
			continue;
		}

		run_end = number_run_end(w, w->masked[k].end);
		if (run_end > *end || (run_end == w->len && !w->finished)) {
			*end = start;
			return 0;
		}
		drop_masked_span(w, k);
		tg_json_stringn(&quoted, w->text + start, run_end - start);
		rc = quoted.failed ? -1 : window_replace(s, w, start, run_end, quoted.data, quoted.len);
		*end = shift_offset(*end, start, run_end, quoted.len);
		tg_json_writer_free(&quoted);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* Give the decoder of a JSON text the window's settled text, and scan the
 * strings it completes. yajl (2.1) keeps an unfinished string, and a byte per
 * open container, so the text it reads is bounded by max_held, as a
 * non-streamed response is. */
static enum tg_stream_verdict
decode_window(struct tg_filter_stream *s, struct window *w)
{
	size_t end = settled_end(s, w);

	if (w->args == NULL || (end <= w->fed && !w->finished))
		return TG_STREAM_OK;
	if (!w->args->stopped && w->args->base + (end - w->fed) > s->max_held) {
		s->unreadable = ARGUMENTS_TOO_LONG;
		return TG_STREAM_TOO_LARGE;
	}
	s->decoded_block = NULL;
	s->decoded_failed = 0;
	s->decoding = w;
	s->n_plain = 0;
	if (quote_masked_numbers(s, w, &end) != 0)
		return TG_STREAM_ERROR;
	feed_decoder(w, end);
	if (s->decoded_failed)
		return TG_STREAM_ERROR;
	if (s->decoded_block != NULL)
		return TG_STREAM_BLOCK;
	return scan_plain_values(s, w);
}

/* Scan the window with every filter and work out what may be released. */
static enum tg_stream_verdict
scan_window(struct tg_filter_stream *s, struct window *w)
{
	enum tg_stream_verdict v;

	for (size_t i = 0; i < s->n_filters; i++) {
		v = scan_filter(s, i, w, w->finished);
		if (v != TG_STREAM_OK)
			return v;
	}
	v = decode_window(s, w);
	if (v != TG_STREAM_OK)
		return v;
	update_release(s, w);
	return TG_STREAM_OK;
}

/* Drop sent text that no lookbehind can reach any more, keeping s->context
 * code points before the first offset still needed. */
static void
trim_window(const struct tg_filter_stream *s, struct window *w)
{
	size_t keep = w->release;
	size_t open = open_value(w);
	size_t cut;

	if (w->n_pieces > 0 && w->pieces[0].start < keep)
		keep = w->pieces[0].start;
	for (size_t i = 0; i < s->n_filters; i++) {
		if (w->scan_from[i] < keep)
			keep = w->scan_from[i];
	}

	/* The text of an open string value stays, sent or not, so that the
	 * value is scanned whole when it completes (keep_plain_value()), and
	 * a flag filter finds there what it recorded (flag_decoded()). */
	if (open != SIZE_MAX && w->len - open > s->value_keep)
		open = char_boundary(w, w->len - s->value_keep);
	if (open < keep)
		keep = open;

	cut = keep;
	for (uint32_t n = 0; cut > 0 && n < s->context; n++) {
		cut--;
		while (cut > 0 && ((unsigned char)w->text[cut] & 0xc0) == 0x80)
			cut--;
	}
	if (cut == 0)
		return;

	memmove(w->text, w->text + cut, w->len - cut + 1);
	w->len -= cut;
	w->release -= cut;
	if (w->args != NULL) {
		w->fed -= cut;
		w->trimmed += cut;
	}
	for (size_t i = 0; i < s->n_filters; i++) {
		w->scan_from[i] -= cut;
		w->let_go[i] = w->let_go[i] > cut ? w->let_go[i] - cut : 0;
	}
	for (size_t i = 0; i < w->n_pieces; i++) {
		w->pieces[i].start -= cut;
		w->pieces[i].end -= cut;
	}
	for (size_t k = w->n_masked; k-- > 0;) {
		if (w->masked[k].start < cut) {
			drop_masked_span(w, k);
			continue;
		}
		w->masked[k].start -= cut;
		w->masked[k].end -= cut;
	}
}

/* --- events ------------------------------------------------------------- */

/*
 * Add a text the chunk reader found in ev to its window. A finished
 * window was scanned as complete and sent, so a match that began in it
 * can no longer be held back: text for it fails the stream (clients such
 * as openai-node still append it to the choice).
 */
static int
add_text(struct tg_filter_stream *s, struct held_event *ev, const struct tg_chunk_text *t,
         long choice)
{
	long tool = t->kind == TG_CHUNK_ARGUMENTS ? t->tool : 0;
	struct window *w;

	/* A value is complete, so it is a window of its own, scanned whole. */
	if (t->kind == TG_CHUNK_VALUE)
		tool = s->values++;
	w = find_window(s, choice, t->kind, tool);
	if (w == NULL)
		return -1;
	if (w->finished && t->len > 0) {
		s->unreadable = TEXT_AFTER_FINISH;
		return -1;
	}
	w->dirty = 1;
	if (add_piece(w, ev, s->chunk.buf + t->text, t->len, t->at, t->end) != 0)
		return -1;
	w->finished |= t->kind == TG_CHUNK_VALUE;
	return 0;
}

/*
 * Whether the chunk just read has a choice without "index" that clients
 * may key apart from the filters. openai-node keys choices by the value
 * of "index", so every choice without one joins the same choice
 * (choices[undefined]). Other clients key such a choice by its position.
 * The two agree, and the filters with them, only while no chunk has a
 * choice without "index" beside another choice, and no stream mixes
 * choices with and without one.
 */
static int
unkeyed_choices(struct tg_filter_stream *s)
{
	const struct tg_chunk *c = &s->chunk;

	for (size_t i = 0; i < c->n_choices; i++) {
		if (c->choices[i].indexed)
			s->indexed = 1;
		else if (c->n_choices > 1)
			return 1;
		else
			s->unindexed = 1;
	}
	return s->indexed && s->unindexed;
}

/* Keep id, object, created and model of the first chunk, for the chunk
 * that ends a blocked stream. */
static void
remember_meta(struct tg_filter_stream *s, json_t *chunk)
{
	const char *keys[] = {"id", "object", "created", "model", "system_fingerprint"};

	if (s->meta != NULL)
		return;
	s->meta = json_object();
	for (size_t i = 0; s->meta != NULL && i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(chunk, keys[i]);

		if (v != NULL)
			json_object_set(s->meta, keys[i], v);
	}
}

/* Add the texts of the event just read (s->chunk) to their windows,
 * choice by choice. A choice with a finish_reason ends every text of that
 * choice, those of its later choices not included. */
static int
add_texts(struct tg_filter_stream *s, struct held_event *ev)
{
	const struct tg_chunk *c = &s->chunk;
	size_t t = 0;

	for (size_t i = 0; i < c->n_choices; i++) {
		long choice = c->choices[i].index;

		for (; t < c->n_texts && c->texts[t].choice == i; t++) {
			if (add_text(s, ev, &c->texts[t], choice) != 0)
				return -1;
		}
		if (!c->choices[i].finished)
			continue;
		for (size_t k = 0; k < s->n_windows; k++) {
			if (s->windows[k].choice == choice) {
				s->windows[k].finished = 1;
				s->windows[k].dirty = 1;
			}
		}
	}
	return 0;
}

/* Scan every window that changed; *blocked_choice gets the choice of a
 * block. With final, every window is scanned as finished. */
static enum tg_stream_verdict
scan_dirty(struct tg_filter_stream *s, int final, long *blocked_choice)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		struct window *w = &s->windows[k];
		enum tg_stream_verdict v;

		if (final && !w->finished) {
			w->finished = 1;
			w->dirty = 1;
		}
		if (!w->dirty)
			continue;
		w->dirty = 0;
		v = scan_window(s, w);
		if (v == TG_STREAM_BLOCK)
			*blocked_choice = w->choice;
		if (v != TG_STREAM_OK)
			return v;
	}
	return TG_STREAM_OK;
}

/* --- output ------------------------------------------------------------- */

/* 1 when every piece of the event lies before its window's release. */
static int
releasable(const struct tg_filter_stream *s, const struct held_event *ev)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		const struct window *w = &s->windows[k];

		for (size_t i = 0; i < w->n_pieces && w->pieces[i].event == ev; i++) {
			if (w->pieces[i].end > w->release)
				return 0;
		}
	}
	return 1;
}

/* Drop the pieces of ev, which are the first of their windows. */
static void
drop_pieces(struct tg_filter_stream *s, const struct held_event *ev)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		struct window *w = &s->windows[k];
		size_t n = 0;

		while (n < w->n_pieces && w->pieces[n].event == ev)
			n++;
		memmove(w->pieces, w->pieces + n, (w->n_pieces - n) * sizeof(*w->pieces));
		w->n_pieces -= n;
	}
}

/* A piece's (masked) text, to be written where its string is. */
struct splice {
	size_t at, to;          /* the string in the event's data */
	const char *text;
	size_t len;
};

static int
compare_splices(const void *a, const void *b)
{
	const struct splice *x = a, *y = b;

	return x->at < y->at ? -1 : x->at > y->at;
}

/* Write the data of ev with the string of each of its pieces replaced by
 * the piece's text, as JSON, into out. The pieces are the first of their
 * windows; they come in window order, and are written in data order. */
static int
splice_pieces(const struct tg_filter_stream *s, const struct held_event *ev,
              struct tg_json_writer *out)
{
	struct splice *spl = calloc(ev->n_pieces ? ev->n_pieces : 1, sizeof(*spl));
	size_t n = 0, pos = 0;

	if (spl == NULL)
		return -1;
	for (size_t k = 0; k < s->n_windows; k++) {
		const struct window *w = &s->windows[k];

		for (size_t i = 0; i < w->n_pieces && w->pieces[i].event == ev; i++) {
			const struct piece *p = &w->pieces[i];

			assert(n < ev->n_pieces);
			spl[n++] = (struct splice){p->at, p->to, w->text + p->start, p->end - p->start};
		}
	}
	qsort(spl, n, sizeof(*spl), compare_splices);

	for (size_t i = 0; i < n; i++) {
		tg_json_raw(out, ev->data + pos, spl[i].at - pos);
		tg_json_stringn(out, spl[i].text, spl[i].len);
		pos = spl[i].to;
	}
	tg_json_raw(out, ev->data + pos, ev->data_len - pos);
	free(spl);
	return out->failed ? -1 : 0;
}

/* The tree of a changed event, read from its data with the masked texts
 * in place and its logprobs, which would repeat them, set to null; NULL
 * when out of memory, or with s->unreadable set. The tree is written out
 * again whole, so that a changed event is one line of compact JSON,
 * whatever the layout of the data it came with.
 * NOTE: jansson keeps an integer beyond 64 bits only as a real, which
 * would write every integer of the event as one ("index": 0.0), so such
 * an event fails the stream instead (BIG_INTEGER). */
static json_t *
changed_json(struct tg_filter_stream *s, const struct held_event *ev)
{
	struct tg_json_writer out = {0};
	json_t *json = NULL;
	json_error_t error;

	if (splice_pieces(s, ev, &out) == 0) {
		json = json_loadb(out.data, out.len, 0, &error);
		if (json == NULL && json_error_code(&error) == json_error_numeric_overflow)
			s->unreadable = BIG_INTEGER;
	}
	tg_json_writer_free(&out);
	tg_filter_drop_logprobs(json);
	return json;
}

/* Hand one event to the output callback. digest is what the relay read
 * of its data (NULL: none, for [DONE]). json is its tree, or NULL, and
 * then data (data_len bytes, or NULL) is what a later feature that wants
 * the tree builds it from. */
static int
emit(struct tg_filter_stream *s, enum tg_event_kind kind, int finish, const char *raw,
     size_t raw_len, json_t *json, const char *data, size_t data_len,
     const struct tg_reply_digest *digest)
{
	struct tg_stream_event out = {
		.kind = kind, .raw = evbuffer_new(), .json = json, .finish = finish,
		.data = json == NULL ? data : NULL, .data_len = data_len,
		.from_gateway = s->blocked,
	};

	if (digest != NULL)
		out.digest = *digest;
	if (out.raw == NULL || evbuffer_add(out.raw, raw, raw_len) != 0) {
		if (out.raw != NULL)
			evbuffer_free(out.raw);
		return -1;
	}
	s->emit(s->emit_arg, &out);
	evbuffer_free(out.raw);
	s->n_emitted++;

	/* A tree that a feature built while the event went out. */
	if (out.json != json)
		json_decref(out.json);
	return 0;
}

/* Emit json as one "data:" line of compact JSON, read anew, since masking
 * can empty a text the relay saw, after an "event:" line when name is not
 * NULL. */
static int
emit_json(struct tg_filter_stream *s, enum tg_event_kind kind, int finish, json_t *json,
          const char *name)
{
	char *text = json_dumps(json, JSON_COMPACT);
	struct tg_reply_digest digest;
	char *event;
	int len, rc;

	if (text == NULL)
		return -1;
	tg_reply_digest(&digest, text, strlen(text));
	if (name != NULL)
		len = asprintf(&event, "event: %s\ndata: %s\n\n", name, text);
	else
		len = asprintf(&event, "data: %s\n\n", text);
	free(text);
	if (len < 0)
		return -1;
	rc = emit(s, kind, finish, event, (size_t)len, json, NULL, 0, &digest);
	free(event);
	return rc;
}

/* The "event" field of an event, as the SSE parser reads it. */
struct event_name {
	char *name;             /* NULL: none */
	int failed;             /* out of memory */
};

static int
on_named_event(void *arg, const struct tg_sse_event *sse)
{
	struct event_name *n = arg;

	if (sse->type_len > 0) {
		n->name = strndup(sse->type, sse->type_len);
		n->failed = n->name == NULL;
	}
	return 1;
}

/*
 * Emit a changed event: its tree, written as emit_json() does, under the
 * event name it came with, read from its raw bytes with the SSE parser.
 * Anthropic's clients go by that name ("content_block_delta"), and would
 * skip an event without it. Returns 0, or -1 when out of memory.
 */
static int
emit_changed(struct tg_filter_stream *s, const struct held_event *ev, json_t *json)
{
	struct tg_sse_parser parser;
	struct event_name n = {NULL, 0};
	int rc;

	tg_sse_init(&parser, ev->raw_len + 1, on_named_event, NULL, &n);
	rc = tg_sse_feed(&parser, ev->raw, ev->raw_len);
	tg_sse_free(&parser);
	if (rc == TG_SSE_ERR_TOO_LARGE || n.failed)
		return -1;
	rc = emit_json(s, ev->kind, ev->finish, json, n.name);
	free(n.name);
	return rc;
}

/* Send the held events from the oldest on, up to the first that must
 * still wait. */
static int
release_events(struct tg_filter_stream *s)
{
	while (s->head != NULL && releasable(s, s->head)) {
		struct held_event *ev = s->head;
		json_t *changed = ev->changed ? changed_json(s, ev) : NULL;
		int rc = ev->changed && changed == NULL ? -1 : 0;

		drop_pieces(s, ev);

		/* Unlink first: the callback may end the request. */
		s->head = ev->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->n_held--;
		s->held_bytes -= ev->raw_len + ev->data_len;

		if (rc == 0 && ev->changed)
			rc = emit_changed(s, ev, changed);
		else if (rc == 0)
			rc = emit(s, ev->kind, ev->finish, ev->raw, ev->raw_len, ev->json, ev->data,
			          ev->data_len, &ev->digest);
		json_decref(changed);
		free_event(ev);
		if (rc != 0)
			return -1;
	}
	for (size_t k = 0; k < s->n_windows; k++)
		trim_window(s, &s->windows[k]);
	return 0;
}

/* Drop every held event: a block ends the stream before them. */
static void
drop_held(struct tg_filter_stream *s)
{
	while (s->head != NULL) {
		struct held_event *next = s->head->next;

		free_event(s->head);
		s->head = next;
	}
	s->tail = NULL;
	s->n_held = 0;
	s->held_bytes = 0;
	for (size_t k = 0; k < s->n_windows; k++)
		s->windows[k].n_pieces = 0;
	s->done = 1;
	s->blocked = 1;
}

/*
 * End a blocked Anthropic stream with an "error" event, which its clients
 * raise as a failed reply, because that API has no finish chunk to send
 * instead. No message_stop follows, so the reply does not read as complete.
 */
static enum tg_stream_verdict
end_blocked_anthropic(struct tg_filter_stream *s)
{
	static const char head[] = "event: error\ndata: ";
	struct evbuffer *out = evbuffer_new();
	struct tg_reply_digest digest;
	const char *event;
	size_t len;
	int rc = -1;

	drop_held(s);
	if (out != NULL && evbuffer_add(out, head, sizeof(head) - 1) == 0 &&
	    tg_error_anthropic_body(out, TG_E_CONTENT_FILTER, "the response was blocked by a "
	                            "content filter") == 0 &&     /* ends with a newline */
	    evbuffer_add(out, "\n", 1) == 0) {
		len = evbuffer_get_length(out);
		event = (const char *)evbuffer_pullup(out, -1);
		tg_reply_digest(&digest, event + sizeof(head) - 1, len - sizeof(head) - 1);
		rc = emit(s, TG_EVENT_ERROR, 0, event, len, NULL, NULL, 0, &digest);
	}
	if (out != NULL)
		evbuffer_free(out);
	return rc == 0 ? TG_STREAM_BLOCK : TG_STREAM_ERROR;
}

/*
 * End a Responses API stream before its events, with that API's "error"
 * event ("type", "code", "message", "param", "sequence_number"), which its
 * SDKs raise as a failed response.
 * NOTE: the stream filters do not read that API's events yet (the deltas
 * of output_text, refusal, function call arguments and reasoning summary
 * text, and the .done and response.completed events that repeat them), so
 * a filter that masks or blocks must not let them pass unread. Each such
 * filter records a block that it could not check (error set), so the
 * access log and the metrics show why the stream ended.
 */
static enum tg_stream_verdict
end_unread_responses(struct tg_filter_stream *s)
{
	static const char head[] = "event: error\ndata: ";
	json_t *error;
	char *data = NULL;
	struct evbuffer *out = evbuffer_new();
	struct tg_reply_digest digest;
	int rc = -1;

	s->unreadable = RESPONSES_EVENTS;
	for (size_t i = 0; i < s->n_filters; i++) {
		if (s->filters[i]->action != TG_ACTION_FLAG &&
		    tg_filter_log_add(s->log, s->filters[i], NULL, TG_ACTION_BLOCK,
		                      TG_SIDE_RESPONSE, 1) != 0)
			goto out;
	}
	drop_held(s);
	error = json_pack("{s:s, s:s, s:s, s:n, s:I}", "type", "error", "code", "content_filter",
	                  "message", "the response was blocked: the gateway's content filters "
	                  "cannot screen Responses API streams; request it without \"stream\"",
	                  "param", "sequence_number", (json_int_t)s->n_emitted);
	if (error != NULL)
		data = json_dumps(error, JSON_COMPACT);
	json_decref(error);
	if (data == NULL || out == NULL || evbuffer_add(out, head, sizeof(head) - 1) != 0 ||
	    evbuffer_add_printf(out, "%s\n\n", data) < 0)
		goto out;
	tg_reply_digest(&digest, data, strlen(data));
	rc = emit(s, TG_EVENT_ERROR, 0, (const char *)evbuffer_pullup(out, -1),
	          evbuffer_get_length(out), NULL, NULL, 0, &digest);
out:
	free(data);
	if (out != NULL)
		evbuffer_free(out);
	return rc == 0 ? TG_STREAM_BLOCK : TG_STREAM_ERROR;
}

/* Drop every held event and end the stream with a content_filter chunk
 * and [DONE], or for an Anthropic stream with an error event. */
static enum tg_stream_verdict
end_blocked(struct tg_filter_stream *s, long choice)
{
	json_t *chunk;
	const char *object;
	json_t *end;
	int rc;

	if (s->anthropic)
		return end_blocked_anthropic(s);
	drop_held(s);
	chunk = s->meta ? json_deep_copy(s->meta) : json_object();
	object = json_string_value(json_object_get(chunk, "object"));
	if (object != NULL && strcmp(object, "text_completion") == 0)
		end = json_pack("{s:i, s:s, s:s, s:n}", "index", (json_int_t)choice, "text", "",
		                "finish_reason", "content_filter", "logprobs");
	else
		end = json_pack("{s:i, s:{}, s:s}", "index", (json_int_t)choice, "delta",
		                "finish_reason", "content_filter");
	if (chunk == NULL || end == NULL) {
		json_decref(chunk);
		json_decref(end);
		return TG_STREAM_ERROR;
	}
	json_object_set_new(chunk, "choices", json_pack("[o]", end));
	rc = emit_json(s, TG_EVENT_CONTENT, 1, chunk, NULL);
	json_decref(chunk);
	if (rc != 0 || emit(s, TG_EVENT_DONE, 0, "data: [DONE]\n\n", 14, NULL, NULL, 0, NULL) != 0)
		return TG_STREAM_ERROR;
	return TG_STREAM_BLOCK;
}

/* Hold the event in, whose data is data_len bytes of JSON at data (NULL
 * when it is not a JSON object). */
static struct held_event *
hold_event(struct tg_filter_stream *s, struct tg_stream_event *in, const char *data,
           size_t data_len)
{
	struct held_event *ev = calloc(1, sizeof(*ev));
	size_t len = evbuffer_get_length(in->raw);

	if (ev == NULL)
		return NULL;
	ev->raw = malloc(len + data_len + 1);
	if (ev->raw == NULL) {
		free(ev);
		return NULL;
	}
	evbuffer_copyout(in->raw, ev->raw, len);
	ev->raw_len = len;
	if (data != NULL) {
		ev->data = ev->raw + len;
		memcpy(ev->data, data, data_len);
		ev->data_len = data_len;
	}
	ev->kind = in->kind;
	ev->finish = in->finish;
	ev->digest = in->digest;
	ev->arrived = s->timer != NULL ? tg_now_ns() : 0;
	if (in->json != NULL)
		ev->json = json_incref(in->json);
	if (s->tail != NULL)
		s->tail->next = ev;
	else
		s->head = ev;
	s->tail = ev;
	s->n_held++;
	s->held_bytes += ev->raw_len + ev->data_len;
	return ev;
}

/* --- hold_timeout ------------------------------------------------------- */

/* The first held piece of w that ends after pos, or NULL. */
static const struct piece *
piece_after(const struct window *w, size_t pos)
{
	for (size_t k = 0; k < w->n_pieces; k++) {
		if (w->pieces[k].end > pos)
			return &w->pieces[k];
	}
	return NULL;
}

/* Return the tg_now_ns() time at which the earliest held text reaches the
 * hold_timeout of a filter that holds it, or 0 when none has a bound. */
static uint64_t
next_deadline(const struct tg_filter_stream *s)
{
	uint64_t at = 0;

	for (size_t k = 0; k < s->n_windows; k++) {
		const struct window *w = &s->windows[k];

		for (size_t i = 0; i < s->n_filters; i++) {
			const struct piece *p;
			uint64_t t;

			if (!has_hold_timeout(s->filters[i]))
				continue;
			p = piece_after(w, hold_point(s, w, i));
			if (p == NULL)
				continue;
			t = p->event->arrived + s->filters[i]->hold_timeout * TG_NS_PER_MS;
			if (at == 0 || t < at)
				at = t;
		}
	}
	return at;
}

/* A duration in nanoseconds as a timeval, rounded up to whole microseconds
 * so that the timer does not fire before the deadline. */
static struct timeval
timeval_ns(uint64_t ns)
{
	uint64_t us = (ns + 999) / 1000;
	struct timeval tv = {.tv_sec = (time_t)(us / 1000000),
	                     .tv_usec = (suseconds_t)(us % 1000000)};

	return tv;
}

/* Set the timer for the next deadline, or stop it when there is none. */
static void
arm_timer(struct tg_filter_stream *s)
{
	uint64_t at, now;
	struct timeval tv;

	if (s->timer == NULL)
		return;
	at = s->done ? 0 : next_deadline(s);
	if (at == s->timer_at)
		return;
	s->timer_at = at;
	if (at == 0) {
		evtimer_del(s->timer);
		return;
	}
	now = tg_now_ns();
	tv = timeval_ns(at > now ? at - now : 0);
	evtimer_add(s->timer, &tv);
}

/*
 * Each filter with a hold_timeout lets go of the held pieces that have
 * waited that long by now (tg_now_ns() time), oldest first, since pieces
 * are in arrival order. Its scan_from stays, so a match that the next
 * events complete is still found, and mask_matches replaces what of it
 * was not sent yet.
 */
static void
let_go_expired(struct tg_filter_stream *s, uint64_t now)
{
	for (size_t k = 0; k < s->n_windows; k++) {
		struct window *w = &s->windows[k];

		for (size_t i = 0; i < s->n_filters; i++) {
			const struct tg_filter *f = s->filters[i];

			if (!has_hold_timeout(f))
				continue;
			for (size_t j = 0; j < w->n_pieces; j++) {
				const struct piece *p = &w->pieces[j];

				if (p->end <= hold_point(s, w, i))
					continue;
				if (p->event->arrived + f->hold_timeout * TG_NS_PER_MS > now)
					break;
				w->let_go[i] = p->end;
			}
		}
		update_release(s, w);
	}
}

/* Send what waited too long (the stream's timer, on the worker thread).
 * An error here cannot reach the relay, so the next call reports it. */
static void
on_hold_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct tg_filter_stream *s = arg;

	(void)fd;
	(void)what;
	s->timer_at = 0;
	if (s->done || s->failed)
		return;
	let_go_expired(s, tg_now_ns());
	if (release_events(s) != 0) {
		s->failed = 1;
		return;
	}
	arm_timer(s);
}

/* --- the calls ---------------------------------------------------------- */

/* Scan, then block or release, then time what stays held. */
static enum tg_stream_verdict
scan_and_release(struct tg_filter_stream *s, int final)
{
	long choice = 0;
	enum tg_stream_verdict v = scan_dirty(s, final, &choice);

	if (v == TG_STREAM_BLOCK)
		v = end_blocked(s, choice);
	else if (v == TG_STREAM_OK && release_events(s) != 0)
		v = TG_STREAM_ERROR;
	arm_timer(s);
	return v;
}

/*
 * Record the shape of the texts of an event with digest d. Returns 1 once
 * the stream has had both shapes. The filters tell OpenAI choices and
 * Anthropic content blocks apart by their index alone, so the texts of
 * both would join. A match split across the events of one shape could
 * then hide behind text of the other shape between them.
 */
static int
mixes_shapes(struct tg_filter_stream *s, const struct tg_reply_digest *d)
{
	if (d->choices)
		s->openai_texts = 1;
	if (d->type == TG_REPLY_TYPE_CONTENT_BLOCK_START ||
	    d->type == TG_REPLY_TYPE_CONTENT_BLOCK_DELTA || d->type == TG_REPLY_TYPE_MESSAGE_START)
		s->anthropic_texts = 1;
	return s->openai_texts && s->anthropic_texts;
}

/*
 * Read the texts of event in, whose data is data_len bytes of JSON at data
 * (NULL: not a JSON object), hold the event, and scan. The chunk reader
 * reads the texts without a tree. Data it cannot vouch for is parsed by
 * jansson, as features that want the tree do (tg_stream_event_json). Data
 * that jansson does not read as an object with each member once (invalid
 * JSON, or a member given twice, which a tree keeps once) must not pass
 * unscanned, so the stream fails closed, as when a rule cannot decide.
 */
static enum tg_stream_verdict
read_event(struct tg_filter_stream *s, struct tg_stream_event *in, const char *data,
           size_t data_len, int tapped)
{
	struct held_event *ev;
	enum tg_chunk_result r = TG_CHUNK_READ;
	enum tg_stream_verdict v;

	/* Memory ran out in the relay's read, which then found no JSON. */
	if (tapped && s->tapped == TG_CHUNK_FAILED)
		return TG_STREAM_ERROR;
	if (in->has_data && data == NULL) {
		s->unreadable = NOT_AN_OBJECT;
		return TG_STREAM_ERROR;
	}
	if (tapped)
		r = s->tapped;
	else if (data != NULL)
		r = tg_chunk_read(&s->chunk, data, data_len);
	if (r == TG_CHUNK_FAILED)
		return TG_STREAM_ERROR;
	if (r == TG_CHUNK_UNSURE && tg_stream_event_json(in) == NULL) {
		s->unreadable = NOT_AN_OBJECT;
		return TG_STREAM_ERROR;
	}
	if (data != NULL && s->chunk.bad_index) {
		s->unreadable = BAD_INDEX;
		return TG_STREAM_ERROR;
	}
	if (data != NULL && mixes_shapes(s, &in->digest)) {
		s->unreadable = MIXED_SHAPES;
		return TG_STREAM_ERROR;
	}
	if (data != NULL && s->chunk.deep_text) {
		s->unreadable = DEEP_TEXT;
		return TG_STREAM_ERROR;
	}
	if (data != NULL && s->chunk.odd_text) {
		s->unreadable = ODD_TEXT;
		return TG_STREAM_ERROR;
	}
	if (data != NULL && unkeyed_choices(s)) {
		s->unreadable = MISSING_INDEX;
		return TG_STREAM_ERROR;
	}

	if (data != NULL && s->holds && (in->digest.type == TG_REPLY_TYPE_RESPONSE_EVENT ||
	                                 in->digest.type == TG_REPLY_TYPE_RESPONSE_END))
		return end_unread_responses(s);

	/* Once per stream, for the chunk that ends a blocked one. */
	if (s->meta == NULL && in->digest.choices && tg_stream_event_json(in) != NULL)
		remember_meta(s, in->json);
	if (in->digest.object && !in->digest.choices && in->digest.type != TG_REPLY_TYPE_NONE)
		s->anthropic = 1;

	ev = hold_event(s, in, data, data_len);
	if (ev == NULL || (data != NULL && add_texts(s, ev) != 0))
		return TG_STREAM_ERROR;
	v = scan_and_release(s, 0);
	if (v != TG_STREAM_OK || s->held_bytes <= s->max_held)
		return v;

	/* A string with an escape is held until its end is decoded, whatever
	 * "hold", and every event after a held one waits too, so a backend
	 * could grow the held events without end. Past the bound the stream
	 * fails instead of letting them go: their text was not screened
	 * decoded, and an argument padded with escapes would otherwise carry
	 * past the filters what they must stop. */
	s->unreadable = HELD_TOO_MUCH;
	return TG_STREAM_TOO_LARGE;
}

enum tg_stream_verdict
tg_filter_stream_event(struct tg_filter_stream *s, struct tg_stream_event *in)
{
	enum tg_stream_verdict v;
	char *dump;

	if (s->failed)
		return TG_STREAM_ERROR;
	if (s->done)
		return TG_STREAM_OK;

	/* [DONE] ends every text: what is held is scanned as final and sent
	 * before it. */
	if (in->kind == TG_EVENT_DONE) {
		v = scan_and_release(s, 1);
		if (v != TG_STREAM_OK)
			return v;
		s->done = 1;
		return emit(s, in->kind, in->finish, (const char *)evbuffer_pullup(in->raw, -1),
		            evbuffer_get_length(in->raw), in->json, NULL, 0, &in->digest) == 0
		       ? TG_STREAM_OK : TG_STREAM_ERROR;
	}

	if (in->data == NULL && in->json != NULL) {
		/* The relay built the tree (it held the event), and the data went
		 * with the parser's buffer: the texts are read from the tree's
		 * JSON, which is what a changed event is written from too. */
		dump = json_dumps(in->json, JSON_COMPACT);
		if (dump == NULL)
			return TG_STREAM_ERROR;
		v = read_event(s, in, dump, strlen(dump), 0);
		free(dump);
		return v;
	}
	return read_event(s, in, in->data, in->data_len, in->tapped);
}

yajl_handle *
tg_filter_stream_tap(struct tg_filter_stream *s, const char *data, size_t len,
                     struct tg_reply_tap *tap)
{
	tg_chunk_begin(&s->chunk, data, len, tap);
	return &s->chunk.h;
}

void
tg_filter_stream_tapped(struct tg_filter_stream *s, int rc)
{
	s->tapped = tg_chunk_end(&s->chunk, rc == 0);
}

enum tg_stream_verdict
tg_filter_stream_finish(struct tg_filter_stream *s)
{
	if (s->failed)
		return TG_STREAM_ERROR;
	if (s->done)
		return TG_STREAM_OK;
	s->done = 1;
	return scan_and_release(s, 1);
}
