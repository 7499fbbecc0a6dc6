/*
 * Incremental server-sent events parser. sse.h states the contract.
 *
 * The relay calls tg_sse_feed() with each chunk it forwards, so the common
 * case is a chunk that contains several whole lines. Such lines are parsed in
 * place, straight from the caller's buffer; only the unfinished line at the
 * end of a chunk is copied, into p->line, until its line end arrives. The
 * event buffers grow by doubling and keep their memory from one event to the
 * next, so a stream of similar events stops allocating after the first few.
 *
 * Bytes are not decoded: a UTF-8 sequence never contains the CR, LF or ':'
 * bytes, so a sequence split across chunks comes out whole. Invalid UTF-8
 * passes through unchanged, where a browser would substitute U+FFFD.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define SSE_DEFAULT_MAX_EVENT   (1024 * 1024)
#define SSE_MIN_CAPACITY        256

static const char sse_bom[] = "\xEF\xBB\xBF";

/* Make room for need bytes in *buf, doubling the capacity. Returns 0, or -1
 * when memory ran out (the buffer is then unchanged). */
static int
sse_reserve(char **buf, size_t *cap, size_t need)
{
	size_t new_cap;
	char *grown;

	if (need <= *cap)
		return 0;

	new_cap = *cap ? *cap : SSE_MIN_CAPACITY;
	while (new_cap < need)
		new_cap *= 2;

	grown = realloc(*buf, new_cap);
	if (grown == NULL)
		return -1;

	*buf = grown;
	*cap = new_cap;
	return 0;
}

/* Append n bytes to a buffer and keep it NUL-terminated. */
static int
sse_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (sse_reserve(buf, cap, *len + n + 1) != 0)
		return -1;

	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* Bytes the current event keeps in its field buffers. */
static size_t
sse_event_size(const struct tg_sse_parser *p)
{
	return p->data_len + p->type_len + p->id_len;
}

static void
sse_reset_event(struct tg_sse_parser *p)
{
	p->data_len = 0;
	p->has_data = 0;
	p->type_len = 0;
	p->id_len = 0;
	p->has_id = 0;
	p->in_event = 0;
}

/*
 * Handle a blank line: hand the event to on_event when it has data, and
 * start a new one either way. The id is reset too, because sse.h reports the
 * id of each event alone, not the WHATWG "last event ID" that carries over.
 */
static int
sse_dispatch(struct tg_sse_parser *p)
{
	struct tg_sse_event ev;
	int rc;

	if (!p->has_data) {
		sse_reset_event(p);
		return 0;
	}

	ev.type = p->type_len ? p->type : "";
	ev.type_len = p->type_len;
	ev.data = p->data_len ? p->data : "";
	ev.data_len = p->data_len;
	ev.id = NULL;
	if (p->has_id)
		ev.id = p->id_len ? p->id : "";
	ev.id_len = p->id_len;
	ev.data_at = p->data_at;
	ev.raw_len = p->raw_len;

	p->raw_len = 0;
	p->events++;

	rc = p->on_event(p->arg, &ev);

	sse_reset_event(p);
	return rc;
}

/* Apply one "name: value" field to the current event. value_at is the
 * offset of value in the event's raw bytes. */
static int
sse_field(struct tg_sse_parser *p, const char *name, size_t name_len,
          const char *value, size_t value_len, size_t value_at)
{
	p->in_event = 1;
	if (name_len == 4 && memcmp(name, "data", 4) == 0) {
		p->data_at = p->has_data ? 0 : value_at;
		if (p->has_data &&
		    sse_append(&p->data, &p->data_len, &p->data_cap, "\n", 1) != 0)
			return TG_SSE_ERR_TOO_LARGE;
		p->has_data = 1;
		if (sse_append(&p->data, &p->data_len, &p->data_cap,
		               value, value_len) != 0)
			return TG_SSE_ERR_TOO_LARGE;
		return 0;
	}

	if (name_len == 5 && memcmp(name, "event", 5) == 0) {
		p->type_len = 0;
		if (sse_append(&p->type, &p->type_len, &p->type_cap,
		               value, value_len) != 0)
			return TG_SSE_ERR_TOO_LARGE;
		return 0;
	}

	/* The standard ignores an id that contains NUL. */
	if (name_len == 2 && memcmp(name, "id", 2) == 0 &&
	    memchr(value, '\0', value_len) == NULL) {
		p->id_len = 0;
		p->has_id = 1;
		if (sse_append(&p->id, &p->id_len, &p->id_cap,
		               value, value_len) != 0)
			return TG_SSE_ERR_TOO_LARGE;
		return 0;
	}

	/* "retry" only matters to a client that reconnects, and the standard
	 * ignores every other field name. */
	return 0;
}

/*
 * Interpret one complete line of len bytes, without its line end. Called
 * after p->raw_len has counted the line and its first line-end byte.
 */
static int
sse_line(struct tg_sse_parser *p, const char *line, size_t len)
{
	const char *colon;
	const char *value;
	size_t name_len, value_len, line_at;

	/*
	 * Only the very first line of the stream may start with a byte order
	 * mark. This line starts at stream offset 0 exactly when no event has
	 * ended yet and raw_len counts only this line and its line end.
	 */
	if (p->events == 0 && p->bytes_taken == 0 && p->raw_len == len + 1 &&
	    len >= 3 && memcmp(line, sse_bom, 3) == 0) {
		line += 3;
		len -= 3;
	}

	if (len == 0)
		return sse_dispatch(p);
	line_at = p->raw_len - len - 1;

	if (line[0] == ':') {
		p->comments++;
		if (p->on_comment != NULL)
			p->on_comment(p->arg, line + 1, len - 1);
		return 0;
	}

	/* A line without a colon names a field whose value is empty. */
	colon = memchr(line, ':', len);
	if (colon == NULL)
		return sse_field(p, line, len, line + len, 0, line_at + len);

	name_len = (size_t)(colon - line);
	value = colon + 1;
	value_len = len - name_len - 1;
	if (value_len > 0 && value[0] == ' ') {
		value++;
		value_len--;
	}

	return sse_field(p, line, name_len, value, value_len, line_at + (size_t)(value - line));
}

/* Return the offset of the first CR or LF in s, or n when there is none.
 * It calls memchr() twice, because glibc's memchr() tests many bytes per
 * step and the lines of LLM streams are long. */
static size_t
sse_find_line_end(const char *s, size_t n)
{
	const char *lf, *cr;
	size_t limit;

	lf = memchr(s, '\n', n);
	limit = lf != NULL ? (size_t)(lf - s) : n;

	cr = memchr(s, '\r', limit);
	return cr != NULL ? (size_t)(cr - s) : limit;
}

void
tg_sse_init(struct tg_sse_parser *p, size_t max_event,
            tg_sse_event_cb on_event, tg_sse_comment_cb on_comment, void *arg)
{
	assert(on_event != NULL);

	memset(p, 0, sizeof(*p));
	p->on_event = on_event;
	p->on_comment = on_comment;
	p->arg = arg;
	p->max_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;
}

/*
 * The event is dispatched on the CR of a CRLF that ends its blank line,
 * without waiting for the LF: that LF may come in a later chunk, and the
 * event must not wait for it. The LF is then counted in the raw_len of the
 * next event, and p->after_cr makes it end no line of its own.
 */
int
tg_sse_feed(struct tg_sse_parser *p, const char *buf, size_t len)
{
	size_t pos = 0;

	assert(p->on_event != NULL);
	assert(buf != NULL || len == 0);

	while (pos < len) {
		const char *line;
		size_t end, line_len;
		int rc;

		if (p->after_cr) {
			p->after_cr = 0;
			if (buf[pos] == '\n') {
				p->raw_len++;
				pos++;
				continue;
			}
		}

		end = sse_find_line_end(buf + pos, len - pos);

		/* The same limit applies whether the line is complete in buf
		 * or has to be kept, so the result does not depend on how the
		 * input was split. */
		if (p->line_len + end + sse_event_size(p) > p->max_event)
			return TG_SSE_ERR_TOO_LARGE;

		/* No line end in buf: keep the partial line for the next call. */
		if (end == len - pos) {
			if (sse_append(&p->line, &p->line_len, &p->line_cap,
			               buf + pos, end) != 0)
				return TG_SSE_ERR_TOO_LARGE;
			p->raw_len += end;
			return 0;
		}

		/* A line that starts and ends in buf is parsed where it is. */
		if (p->line_len == 0) {
			line = buf + pos;
			line_len = end;
		} else {
			if (sse_append(&p->line, &p->line_len, &p->line_cap,
			               buf + pos, end) != 0)
				return TG_SSE_ERR_TOO_LARGE;
			line = p->line;
			line_len = p->line_len;
			p->line_len = 0;
		}

		p->after_cr = buf[pos + end] == '\r';
		p->raw_len += end + 1;
		pos += end + 1;

		rc = sse_line(p, line, line_len);
		if (rc != 0)
			return rc;
	}

	return 0;
}

size_t
tg_sse_take_between(struct tg_sse_parser *p)
{
	size_t n = p->raw_len;

	if (p->in_event || p->line_len > 0)
		return 0;
	p->raw_len = 0;
	p->bytes_taken += n;
	return n;
}

const char *
tg_sse_unended_event(const struct tg_sse_parser *p, struct tg_sse_event *ev)
{
	if (!p->has_data || p->line_len > 0)
		return NULL;

	memset(ev, 0, sizeof(*ev));
	ev->type = p->type_len ? p->type : "";
	ev->type_len = p->type_len;
	ev->data = p->data_len ? p->data : "";
	ev->data_len = p->data_len;
	if (p->has_id)
		ev->id = p->id_len ? p->id : "";
	ev->id_len = p->id_len;
	return p->after_cr ? "\r" : "\n";
}

int
tg_sse_finish(struct tg_sse_parser *p)
{
	int pending;

	pending = p->line_len > 0 || p->has_data || p->type_len > 0 ||
	          p->has_id;

	p->line_len = 0;
	p->after_cr = 0;
	sse_reset_event(p);
	return pending;
}

void
tg_sse_free(struct tg_sse_parser *p)
{
	free(p->line);
	free(p->data);
	free(p->type);
	free(p->id);
	memset(p, 0, sizeof(*p));
}
