/*
 * Incremental parser for server-sent events (WHATWG HTML, "Server-sent
 * events", event stream interpretation).
 *
 * The relay forwards upstream bytes unchanged and feeds the same bytes here
 * to learn where each event ends and what it carries. Input may be split at
 * any byte: inside a field name, between CR and LF, inside a UTF-8 sequence.
 * Lines end in CRLF, LF or CR. A line starting with ':' is a comment. A field
 * "name: value" loses at most one space after the colon. Several data lines
 * join with LF. An empty line dispatches the event unless its data is empty.
 * A stream that ends mid-event drops that event.
 */
#ifndef TOLLGATE_SSE_H
#define TOLLGATE_SSE_H

#include <stddef.h>
#include <stdint.h>

struct tg_sse_event {
	const char *type;       /* "event" field; "" when absent (means "message") */
	size_t type_len;
	const char *data;       /* data lines joined with LF, no trailing LF */
	size_t data_len;
	const char *id;         /* "id" field, NULL when the event had none */
	size_t id_len;
	size_t data_at;         /* offset of data in the raw_len bytes when
	                           it is the value of one data line; 0 when
	                           several lines were joined (a value never
	                           starts the event, "data:" comes first) */
	size_t raw_len;         /* input bytes from the end of the previous
	                           event (or stream start) to this event's
	                           terminating blank line, inclusive; when
	                           that line ends in CRLF, the event ends at
	                           the CR and the LF counts toward the next
	                           event */
};

/* Called once per dispatched event; the pointers are valid only during the
 * call, and type, data and id are also NUL-terminated. Return 0 to go on,
 * non-zero to stop tg_sse_feed() with that value. Use a positive value, so
 * that it cannot be mistaken for TG_SSE_ERR_TOO_LARGE. */
typedef int (*tg_sse_event_cb)(void *arg, const struct tg_sse_event *ev);

/* Called once per comment line, without the leading ':' and line end. */
typedef void (*tg_sse_comment_cb)(void *arg, const char *text, size_t len);

struct tg_sse_parser {
	tg_sse_event_cb on_event;
	tg_sse_comment_cb on_comment;   /* may be NULL */
	void *arg;
	size_t max_event;       /* bytes one event may buffer before it fails */

	/* Private state. */
	char *line;             /* the current, unfinished line */
	size_t line_len, line_cap;
	char *data;             /* data of the current event */
	size_t data_len, data_cap;
	int has_data;
	size_t data_at;         /* tg_sse_event's data_at so far */
	char *type;
	size_t type_len, type_cap;
	char *id;
	size_t id_len, id_cap;
	int has_id;
	int in_event;           /* a field line came since the last event */
	int after_cr;           /* last byte seen was CR: a following LF is
	                           part of the same line end */
	size_t raw_len;         /* bytes since the previous event ended */
	uint64_t events;        /* events dispatched so far */
	uint64_t comments;      /* comment lines seen so far */
	uint64_t bytes_taken;   /* bytes tg_sse_take_between() took */
};

#define TG_SSE_ERR_TOO_LARGE (-1)

/* Prepare p; max_event bounds the memory one event can use (0: 1 MiB). */
void tg_sse_init(struct tg_sse_parser *p, size_t max_event,
                 tg_sse_event_cb on_event, tg_sse_comment_cb on_comment,
                 void *arg);

/*
 * Consume len bytes, calling on_event for each event they complete. buf is
 * only read. An event is dispatched on the CR or LF that ends its blank
 * line, without waiting for the LF of a CRLF that may come in a later chunk.
 * Returns 0; TG_SSE_ERR_TOO_LARGE when one event or line passed max_event
 * or memory for it ran out (the parser is then unusable); or the non-zero
 * value an on_event call returned, which stops parsing at that event. The
 * bytes after that event are left unread and the parser stays usable: the
 * sum of the raw_len of all events gives the stream offset to resume from.
 */
int tg_sse_feed(struct tg_sse_parser *p, const char *buf, size_t len);

/*
 * Count the bytes read since the previous event (or the previous take) as
 * taken, and return how many, when they contain no field of an event but
 * only comment lines and blank lines. The caller may then pass them on at
 * once rather than with the next event. The next event's raw_len then starts
 * after them. Returns 0, taking nothing, while an event or a line is
 * under way. Meant for the comment callback, which is called once the
 * comment's line and the first byte of its line end are counted.
 */
size_t tg_sse_take_between(struct tg_sse_parser *p);

/*
 * The line end that dispatches the event under way when the input so far
 * ends with whole lines of an event that has data, but without the blank
 * line after them: "\n", or "\r" when the last line ended in a CR whose LF
 * has not come (an LF would complete that line end instead). ev then gets
 * the event's type and data as on_event would (raw_len and data_at 0),
 * valid until the next call on p. NULL when no event with data is under
 * way, or a line is unfinished. A stream that ends cleanly there (a last
 * "data: [DONE]" line with no blank line) can then be completed by feeding
 * that line end.
 */
const char *tg_sse_unended_event(const struct tg_sse_parser *p, struct tg_sse_event *ev);

/* Mark the end of the stream. Returns 1 when an unfinished event (a data,
 * event or id field without its blank line) or an unfinished line was
 * pending and is dropped, 0 when the stream ended on an event boundary. */
int tg_sse_finish(struct tg_sse_parser *p);

/* Release the buffers; p may be initialised again afterwards. */
void tg_sse_free(struct tg_sse_parser *p);

#endif
