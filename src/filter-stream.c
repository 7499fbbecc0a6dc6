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

#include "filter-stream-int.h"

static void on_hold_timeout(evutil_socket_t fd, short what, void *arg);

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
	free(ev->repeats);
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
		free(s->windows[i].sent);
		tg_window_args_free(s->windows[i].args);
	}
	free(s->windows);
	free(s->plain);
	free(s->filters);
	tg_scan_free(&s->scan);
	tg_chunk_free(&s->chunk);
	tg_responses_free(&s->responses_read);
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
	case RESPONSES_UNREAD:
		snprintf(buf, size, "the Responses API event %s may carry model text, which the "
		         "stream filters do not read", s->unread_type);
		return;
	case REPEAT_DIFFERS:
		snprintf(buf, size, "a Responses API event repeats a text with a length other "
		         "than that of its deltas, so the filters cannot tell which text it is");
		return;
	case RESPONSES_TOO_LONG:
		snprintf(buf, size, "the texts of a Responses API stream, which its last events "
		         "repeat, passed %zu bytes", s->max_held);
		return;
	case READABLE:
		break;
	}
	tg_scan_describe_error(&s->scan, buf, size);
}

int
tg_filter_stream_blocked_unread(const struct tg_filter_stream *s)
{
	return s->unreadable == RESPONSES_UNREAD;
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

struct window *
tg_window_lookup(struct tg_filter_stream *s, long choice, enum tg_chunk_kind kind, long tool)
{
	for (size_t i = 0; i < s->n_windows; i++) {
		struct window *w = &s->windows[i];

		if (w->choice == choice && w->kind == kind && w->tool == tool)
			return w;
	}
	return NULL;
}

struct window *
tg_window_find(struct tg_filter_stream *s, long choice, enum tg_chunk_kind kind, long tool)
{
	struct window *w = tg_window_lookup(s, choice, kind, tool);

	if (w != NULL)
		return w;
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
		w->args = tg_window_args_new(s);
	if (w->scan_from == NULL || w->let_go == NULL || (inner_json_kind(kind) && w->args == NULL)) {
		free(w->scan_from);
		free(w->let_go);
		tg_window_args_free(w->args);
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

int
tg_window_add_piece(struct window *w, struct held_event *ev, const char *text, size_t len,
                    size_t at, size_t to)
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
	w->pieces[w->n_pieces++] = (struct piece){ev, at, to, start, w->len, NULL};
	ev->n_pieces++;
	return 0;
}

/* Move an offset at or after a replaced span [a, b), now rlen bytes long. */
size_t
tg_shift_offset(size_t pos, size_t a, size_t b, size_t rlen)
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
int
tg_window_replace(struct tg_filter_stream *s, struct window *w, size_t a, size_t b,
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
			p->start = tg_shift_offset(p->start, a, b, rlen);
			p->end = tg_shift_offset(p->end, a, b, rlen);
		}
	}
	for (size_t i = 0; i < s->n_filters; i++) {
		w->scan_from[i] = tg_shift_offset(w->scan_from[i], a, b, rlen);
		w->let_go[i] = tg_shift_offset(w->let_go[i], a, b, rlen);
	}
	w->release = tg_shift_offset(w->release, a, b, rlen);
	for (size_t i = 0; i < w->n_masked; i++) {
		w->masked[i].start = tg_shift_offset(w->masked[i].start, a, b, rlen);
		w->masked[i].end = tg_shift_offset(w->masked[i].end, a, b, rlen);
	}

	/* The decoder's offsets stay: a window offset plus trimmed. */
	fed = w->fed;
	w->fed = tg_shift_offset(w->fed, a, b, rlen);
	w->trimmed += fed - w->fed;
	return 0;
}

/* The end of the text already sent: the start of the first held piece. */
size_t
tg_window_sent_end(const struct window *w)
{
	return w->n_pieces > 0 ? w->pieces[0].start : w->len;
}

/* The action a match takes. A mask on text that was all sent (let go by
 * hold_timeout before the match was complete) changes nothing, so it is
 * recorded as a flag. */
enum tg_filter_action
tg_window_match_action(const struct tg_filter *f, const struct tg_match *m, size_t sent)
{
	if (f->action == TG_ACTION_MASK && m->end <= sent)
		return TG_ACTION_FLAG;
	return f->action;
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
int
tg_window_mask_matches(struct tg_filter_stream *s, const struct tg_filter *f, struct window *w,
             int whole_text, size_t *last_end)
{
	const struct tg_scan *sc = &s->scan;
	size_t sent = tg_window_sent_end(w);

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
		int numeric = whole_text && a == m->start && tg_window_in_number(w, m);

		rep = tg_filter_mask(f, w->text + m->start, m->end - m->start, &one, 1, &rlen);
		if (rep == NULL)
			return -1;
		rc = tg_window_replace(s, w, a, m->end, rep, rlen);
		free(rep);
		if (rc == 0 && numeric)
			rc = tg_window_add_masked_span(w, a, a + rlen);
		if (rc != 0)
			return -1;
		if (k == sc->n_matches - 1)
			*last_end = a + rlen;
		else
			*last_end = tg_shift_offset(*last_end, a, m->end, rlen);
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
	size_t sent = tg_window_sent_end(w);
	size_t last_end;

	if (tg_scan_run(sc, f, w->text, w->len, w->scan_from[i], !final) != 0)
		return TG_STREAM_ERROR;

	for (size_t k = 0; k < sc->n_matches; k++) {
		if (tg_filter_log_add(s->log, f, sc->matches[k].rule->name,
		                      tg_window_match_action(f, &sc->matches[k], sent),
		                      TG_SIDE_RESPONSE, 0) != 0)
			return TG_STREAM_ERROR;
	}
	if (sc->n_matches > 0 && f->action == TG_ACTION_BLOCK)
		return TG_STREAM_BLOCK;

	/* Set before masking, which shifts it along with the text. */
	w->scan_from[i] = sc->hold_from == SIZE_MAX || final ? w->len : sc->hold_from;
	if (sc->n_matches > 0) {
		if (f->action == TG_ACTION_MASK) {
			if (tg_window_mask_matches(s, f, w, 1, &last_end) != 0)
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
	size_t open = tg_window_open_value(w);

	if (f->action == TG_ACTION_FLAG)
		return w->len;
	if (open != SIZE_MAX && w->len - open > f->hold)
		open = char_boundary(w, w->len - f->hold);
	if (open < h)
		h = open;
	return h > w->let_go[i] ? h : w->let_go[i];
}

/* Text before the lowest hold point may be sent. Called after masking,
 * which changes the window's length. A string of a JSON text with an
 * escape is held until its end is decoded and scanned, hold_timeout or
 * not, since its decoded form may match where its text does not. */
static void
update_release(const struct tg_filter_stream *s, struct window *w)
{
	size_t release = w->len;
	size_t decoded = s->holds ? tg_window_decoded_hold(w) : SIZE_MAX;

	for (size_t i = 0; i < s->n_filters; i++) {
		size_t h = hold_point(s, w, i);

		if (h < release)
			release = h;
	}
	if (decoded < release)
		release = decoded;
	w->release = release;
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
	v = tg_window_decode(s, w);
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
	size_t open = tg_window_open_value(w);
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
			tg_window_drop_masked_span(w, k);
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
	w = tg_window_find(s, choice, t->kind, tool);
	if (w == NULL)
		return -1;
	if (w->finished && t->len > 0) {
		s->unreadable = TEXT_AFTER_FINISH;
		return -1;
	}
	w->dirty = 1;
	if (tg_window_add_piece(w, ev, s->chunk.buf + t->text, t->len, t->at, t->end) != 0)
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

int
tg_stream_emit_end(struct tg_filter_stream *s, enum tg_event_kind kind, const char *raw,
                   size_t raw_len, const struct tg_reply_digest *digest)
{
	return emit(s, kind, 0, raw, raw_len, NULL, NULL, 0, digest);
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
		json_t *changed = NULL;
		int rc = ev->tree ? tg_stream_write_tree(s, ev) : 0;

		if (rc == 0 && ev->changed) {
			changed = ev->tree ? json_incref(ev->json) : changed_json(s, ev);
			rc = changed == NULL ? -1 : 0;
		}

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

void
tg_stream_drop_held(struct tg_filter_stream *s)
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

	tg_stream_drop_held(s);
	if (out != NULL && evbuffer_add(out, head, sizeof(head) - 1) == 0 &&
	    tg_error_anthropic_body(out, TG_E_CONTENT_FILTER, "the response was blocked by a "
	                            "content filter") == 0 &&     /* ends with a newline */
	    evbuffer_add(out, "\n", 1) == 0) {
		len = evbuffer_get_length(out);
		event = (const char *)evbuffer_pullup(out, -1);
		tg_reply_digest(&digest, event + sizeof(head) - 1, len - sizeof(head) - 1);
		rc = tg_stream_emit_end(s, TG_EVENT_ERROR, event, len, &digest);
	}
	if (out != NULL)
		evbuffer_free(out);
	return rc == 0 ? TG_STREAM_BLOCK : TG_STREAM_ERROR;
}

/* Drop every held event and end the stream with a content_filter chunk
 * and [DONE], or for an Anthropic or a Responses API stream with an error
 * event. */
static enum tg_stream_verdict
end_blocked(struct tg_filter_stream *s, long choice)
{
	json_t *chunk;
	const char *object;
	json_t *end;
	int rc;

	if (s->anthropic)
		return end_blocked_anthropic(s);
	if (s->responses)
		return tg_stream_end_responses(s, 0);
	tg_stream_drop_held(s);
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
 * events complete is still found, and tg_window_mask_matches replaces what of it
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
 * the stream has had two shapes. The filters tell OpenAI choices, Anthropic
 * content blocks and Responses API output items apart by their index
 * alone, so the texts of two would join. A match split across the events
 * of one shape could then hide behind text of another shape between them.
 */
static int
mixes_shapes(struct tg_filter_stream *s, const struct tg_reply_digest *d)
{
	if (d->choices)
		s->openai_texts = 1;
	if (d->type == TG_REPLY_TYPE_CONTENT_BLOCK_START ||
	    d->type == TG_REPLY_TYPE_CONTENT_BLOCK_DELTA || d->type == TG_REPLY_TYPE_MESSAGE_START)
		s->anthropic_texts = 1;
	if (d->type == TG_REPLY_TYPE_RESPONSE_EVENT || d->type == TG_REPLY_TYPE_RESPONSE_END)
		s->responses = 1;
	return s->openai_texts + s->anthropic_texts + s->responses > 1;
}

static enum tg_stream_verdict scan_held(struct tg_filter_stream *s);

/* Whether an event is one of a Responses API stream: its "type" starts with
 * "response.", or it is an "error" event of such a stream. */
static int
is_responses_event(const struct tg_filter_stream *s, const struct tg_reply_digest *d)
{
	return s->responses && (d->type == TG_REPLY_TYPE_RESPONSE_EVENT ||
	                        d->type == TG_REPLY_TYPE_RESPONSE_END ||
	                        d->type == TG_REPLY_TYPE_ERROR);
}

/*
 * Read the texts of in, a Responses API event whose data is data_len bytes
 * of JSON at data, hold it, and scan. An event with model text the read
 * does not follow must not pass a filter that masks or blocks, so it ends
 * the stream. With flag filters alone it passes unread.
 */
static enum tg_stream_verdict
read_responses_event(struct tg_filter_stream *s, struct tg_stream_event *in, const char *data,
                     size_t data_len)
{
	int rc = tg_stream_read_responses(s, in);
	struct held_event *ev;

	if (rc < 0)
		return TG_STREAM_ERROR;
	if (rc > 0 && s->holds)
		return tg_stream_end_responses(s, 1);

	ev = hold_event(s, in, data, data_len);
	if (ev == NULL)
		return TG_STREAM_ERROR;
	ev->tree = 1;
	if (rc == 0 && tg_stream_add_responses_texts(s, ev) != 0)
		return s->unreadable == RESPONSES_TOO_LONG ? TG_STREAM_TOO_LARGE : TG_STREAM_ERROR;
	return scan_held(s);
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

	if (data != NULL && is_responses_event(s, &in->digest))
		return read_responses_event(s, in, data, data_len);

	/* Once per stream, for the chunk that ends a blocked one. */
	if (s->meta == NULL && in->digest.choices && tg_stream_event_json(in) != NULL)
		remember_meta(s, in->json);
	if (in->digest.object && !in->digest.choices && in->digest.type != TG_REPLY_TYPE_NONE)
		s->anthropic = 1;

	ev = hold_event(s, in, data, data_len);
	if (ev == NULL || (data != NULL && add_texts(s, ev) != 0))
		return TG_STREAM_ERROR;
	return scan_held(s);
}

/*
 * Scan what the last event added, and release what may go. Past the bound
 * on held events the stream fails.
 */
static enum tg_stream_verdict
scan_held(struct tg_filter_stream *s)
{
	enum tg_stream_verdict v = scan_and_release(s, 0);

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

	/* [DONE], or Anthropic's message_stop, ends every text: what is held
	 * is scanned as final and sent before it. Its data goes along, since
	 * a later feature may want the tree of a message_stop: the cache
	 * stores a Messages stream only when that event is a JSON object. */
	if (in->kind == TG_EVENT_DONE) {
		v = scan_and_release(s, 1);
		if (v != TG_STREAM_OK)
			return v;
		s->done = 1;
		return emit(s, in->kind, in->finish, (const char *)evbuffer_pullup(in->raw, -1),
		            evbuffer_get_length(in->raw), in->json, in->data, in->data_len,
		            &in->digest) == 0 ? TG_STREAM_OK : TG_STREAM_ERROR;
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
