/*
 * The JSON texts in a string of a stream (inner_json_kind()): tool call
 * arguments and Anthropic's partial_json. A window of such a text has a
 * decoder (filter-args.h), fed the text that no filter can change any more
 * (settled_end()). Each string it completes is scanned decoded: one with an
 * escape as a text of its own (on_decoded()), one without in place in the
 * window, as are numbers (scan_plain_value()). A mask inside a number writes
 * the number again as a string (quote_masked_numbers()), as a body that is
 * not streamed has it.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-writer.h"

#include "filter-args.h"
#include "filter-number.h"
#include "filter-stream-int.h"
#include "filter.h"

static int on_decoded(void *arg, const char *text, size_t len);

/* A decoder for a window of JSON texts; NULL when out of memory. */
struct tg_args_decoder *
tg_window_args_new(struct tg_filter_stream *s)
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

void
tg_window_args_free(struct tg_args_decoder *d)
{
	if (d != NULL)
		tg_args_close(d);
	free(d);
}

/* The characters a JSON number is written with. */
static int
is_number_char(char c)
{
	return c != '\0' && strchr("0123456789+-.eE", c) != NULL;
}

/* Whether match m of w's text could lie inside a number of the JSON text
 * in w: the decoder still reads it, and m has only number characters. */
int
tg_window_in_number(const struct window *w, const struct tg_match *m)
{
	if (w->args == NULL || w->args->stopped)
		return 0;
	for (size_t k = m->start; k < m->end; k++) {
		if (!is_number_char(w->text[k]))
			return 0;
	}
	return 1;
}

int
tg_window_add_masked_span(struct window *w, size_t start, size_t end)
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
 * Return where a string value of the JSON text in w may be open: the end
 * of the last string the decoder read, or 0 when that was trimmed. A mask
 * rewrites a value in place once it is complete (scan_plain_value()), so
 * the filters that change text hold it. SIZE_MAX when w is no JSON text,
 * or no more of it can come.
 */
size_t
tg_window_open_value(const struct window *w)
{
	size_t open;

	if (w->args == NULL || w->args->stopped)
		return SIZE_MAX;
	open = w->args->token_end - w->trimmed;
	return open <= w->len ? open : 0;
}

/* Return the window offset from which the JSON text decoder keeps the
 * window's text back, or SIZE_MAX for none. Text that hold_timeout released
 * before it was settled is not decoded yet, so a backslash there counts too. */
size_t
tg_window_decoded_hold(const struct window *w)
{
	size_t hold;

	if (w->args == NULL)
		return SIZE_MAX;
	hold = tg_args_hold(w->args, memchr(w->text + w->fed, '\\', w->len - w->fed) != NULL);
	return hold == SIZE_MAX ? hold : hold - w->trimmed;
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
		rc = tg_window_replace(s, w, p->start, p->start + p->len, quoted.data, quoted.len);
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
 * are masked in place instead (tg_window_mask_matches()). Returns 0, or -1 when out
 * of memory.
 */
static int
mask_number(struct tg_filter_stream *s, const struct tg_filter *f, struct window *w,
            struct plain_value *p)
{
	struct tg_scan *sc = &s->scan;
	size_t last_end, before = w->len;
	int rc;

	if (p->start < tg_window_sent_end(w)) {
		rc = tg_window_mask_matches(s, f, w, 0, &last_end);
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
	int went_out = p->start < tg_window_sent_end(w);
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

/*
 * Scan the string value or number p of w with filter i as a text of its
 * own, so that an anchored rule matches it whole. A match that the scan
 * of the whole text reports too was recorded, masked or blocked there, and
 * is dropped here, so each counts once. Others are recorded, block, or are
 * masked: in place in a string without an escape, which has its decoded
 * offsets, and by writing a number again as a string (mask_number()).
 * p->len follows the mask.
 */
static enum tg_stream_verdict
scan_plain_value(struct tg_filter_stream *s, size_t i, struct window *w, struct plain_value *p)
{
	const struct tg_filter *f = s->filters[i];
	struct tg_scan *sc = &s->scan;
	size_t sent = tg_window_sent_end(w), before = w->len, last_end;
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
		                      tg_window_match_action(f, &sc->matches[k], sent), TG_SIDE_RESPONSE, 0) != 0)
			return TG_STREAM_ERROR;
	}
	if (sc->n_matches > 0 && f->action == TG_ACTION_BLOCK)
		return TG_STREAM_BLOCK;
	if (sc->n_matches == 0 || f->action != TG_ACTION_MASK)
		return TG_STREAM_OK;
	if (p->number)
		return mask_number(s, f, w, p) == 0 ? TG_STREAM_OK : TG_STREAM_ERROR;
	if (tg_window_mask_matches(s, f, w, 0, &last_end) != 0)
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

void
tg_window_drop_masked_span(struct window *w, size_t k)
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
		tg_window_drop_masked_span(w, k);
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
			tg_window_drop_masked_span(w, k);
			continue;
		}
		while (start > w->fed && is_number_char(w->text[start - 1]))
			start--;

		/* A number that began in text the decoder read cannot be quoted. */
		if (start == w->fed && (start > 0 ? is_number_char(w->text[start - 1])
		                                  : w->trimmed != 0)) {
			tg_window_drop_masked_span(w, k);
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
		if (last_string > start || start < tg_window_sent_end(w) ||
		    memchr(w->text + last_string, '"', start - last_string) != NULL) {
			tg_window_drop_masked_span(w, k);
			continue;
		}

		run_end = number_run_end(w, w->masked[k].end);
		if (run_end > *end || (run_end == w->len && !w->finished)) {
			*end = start;
			return 0;
		}
		tg_window_drop_masked_span(w, k);
		tg_json_stringn(&quoted, w->text + start, run_end - start);
		rc = quoted.failed ? -1 : tg_window_replace(s, w, start, run_end, quoted.data, quoted.len);
		*end = tg_shift_offset(*end, start, run_end, quoted.len);
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
enum tg_stream_verdict
tg_window_decode(struct tg_filter_stream *s, struct window *w)
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
