/*
 * HTTP header lists and the rewriting a proxy does on them.
 *
 * Names keep the case they arrived with and compare case-insensitively.
 * These functions do no I/O, so the unit tests drive them directly.
 */
#ifndef TOLLGATE_HEADERS_H
#define TOLLGATE_HEADERS_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "config-t.h"

/* A header line. The name and the value are copies in the text blocks of
 * the list, which stay in place until tg_headers_free(). */
struct tg_header {
	char *name;
	char *value;
	size_t name_len;
	size_t value_len;
};

struct tg_header_text;

/* A header list. Names and values are copied into blocks of about 1 KiB,
 * and the first block also holds the first 8 items, so that most lists
 * cost one allocation instead of one per header. A removed header's text
 * stays in its block. */
struct tg_headers {
	struct tg_header *items;
	size_t count;
	size_t capacity;
	struct tg_header_text *text;    /* the newest block, or NULL */
	int items_in_text;              /* items is in the first block */
};

void tg_headers_init(struct tg_headers *h);
void tg_headers_free(struct tg_headers *h);

/* Append a copy of the header, up to the first NUL of name and of value.
 * Returns 0, or -1 when out of memory. */
int tg_headers_add(struct tg_headers *h, const char *name, size_t name_len,
                   const char *value, size_t value_len);

/* 1 when hd is called name of len bytes, in any case. The lengths are
 * compared first, so that most other names cost no string comparison. */
static inline int
tg_header_named(const struct tg_header *hd, const char *name, size_t len)
{
	return hd->name_len == len && strncasecmp(hd->name, name, len) == 0;
}

/* 1 when hd is called name, in any case. */
static inline int
tg_header_is(const struct tg_header *hd, const char *name)
{
	return tg_header_named(hd, name, strlen(name));
}

/* The headers that carry a client's credential: Authorization (OpenAI and
 * most others), x-api-key (Anthropic) and api-key (Azure OpenAI), in the
 * order the cache looks for a caller's identity. */
#define TG_N_CREDENTIAL_HEADERS 3
extern const char *const tg_credential_headers[TG_N_CREDENTIAL_HEADERS];

/* 1 when hd is one of tg_credential_headers. */
int tg_header_is_credential(const struct tg_header *hd);

/* The value of the first header called name of len bytes, or NULL. */
const char *tg_headers_find(const struct tg_headers *h, const char *name, size_t len);

/* The value of the first header called name, or NULL. Inline, so that the
 * length of a literal name is counted at compile time. */
static inline const char *
tg_headers_get(const struct tg_headers *h, const char *name)
{
	return tg_headers_find(h, name, strlen(name));
}

/* 1 when h has lines called name of len bytes, and their values joined
 * in order with ", " equal value exactly. Joined, because RFC 9110
 * section 5.3 lets a proxy combine the lines into one, so several lines
 * must not match where their combination would not. */
int tg_headers_value_is(const struct tg_headers *h, const char *name, size_t len,
                        const char *value);

/* Return how many headers are called name. */
size_t tg_headers_count(const struct tg_headers *h, const char *name);

/* Remove every header called name; returns how many were removed. */
size_t tg_headers_remove(struct tg_headers *h, const char *name);

/* Append n bytes at to the growable buffer *buf of *len bytes and *cap
 * capacity, keeping it NUL-terminated: for names and values that llhttp
 * delivers in pieces. Returns 0, or -1 when out of memory (*buf is kept). */
int tg_bytes_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n);

/*
 * A header name or value that llhttp hands over in pieces. It usually
 * comes in one piece, which stays where it lies in the parser's input, so
 * that its bytes are copied once, into the header list. A second piece
 * moves the text into buf, and so must tg_header_part_keep() before the
 * input is drained. A zeroed part is empty.
 */
struct tg_header_part {
	const char *at;                 /* the text: in the input or buf */
	size_t len;
	char *buf;                      /* NUL-terminated copy, or NULL */
	size_t cap;
};

/* tg_header_part_add() for a part that has text already. */
int tg_header_part_join(struct tg_header_part *p, const char *at, size_t len);

/* Append len bytes of text from at. Returns 0, or -1 when out of memory.
 * Inline, because the first piece costs two stores, while a call cost
 * about 20 instructions more for each of the 18 names and values of a
 * plain request and its reply (callgrind). */
static inline int
tg_header_part_add(struct tg_header_part *p, const char *at, size_t len)
{
	if (p->len > 0)
		return tg_header_part_join(p, at, len);
	p->at = at;
	p->len = len;
	return 0;
}

/* Copy the text into the part's own buffer if it is still in the input.
 * Returns 0, or -1 when out of memory. */
int tg_header_part_keep(struct tg_header_part *p);

/* Empty the part; it keeps its buffer for the next text. */
static inline void
tg_header_part_clear(struct tg_header_part *p)
{
	p->len = 0;
}

void tg_header_part_free(struct tg_header_part *p);

/* Append the header whose name and value llhttp handed over, like
 * tg_headers_add(), without the spaces and tabs that end the value, which
 * are not part of it (RFC 9110 section 5.5). llhttp rejects a NUL in
 * either, so no other byte is cut. Returns 0, or -1 when out of memory. */
int tg_headers_add_parts(struct tg_headers *h, const struct tg_header_part *name,
                         const struct tg_header_part *value);

/* 1 when name is a token (RFC 9110, section 5.6.2): one or more of
 * letters, digits and !#$%&'*+-.^_`|~. */
int tg_header_name_valid(const char *name, size_t len);

/* 1 when value may be sent in a header: no CR, LF or NUL. */
int tg_header_value_valid(const char *value, size_t len);

/* Return the next element of the comma-separated list at *cursor, without
 * the whitespace around it, with its length in *len, and move *cursor past
 * it. Empty elements are skipped, as RFC 9110 section 5.6.1 requires of a
 * recipient. Returns NULL at the end of the list. */
const char *tg_header_list_next(const char **cursor, size_t *len);

/* 1 when the comma-separated list value contains token, case-insensitively
 * ("keep-alive, Upgrade" contains "upgrade"). */
int tg_header_list_has(const char *value, const char *token);

/* Return the first content coding other than identity that the
 * Content-Encoding lines of h name, with its length in *len, or NULL when
 * they name none. Coding names compare case-insensitively (RFC 9110
 * section 8.4.1). The gateway reads bodies as they are, so a caller
 * refuses a body under any coding this returns. */
const char *tg_headers_content_coding(const struct tg_headers *h, size_t *len);

/* 1 when name of len bytes is one of the hop-by-hop headers that
 * tg_headers_strip_hop_by_hop() always removes, in any case. */
int tg_header_name_hop_by_hop(const char *name, size_t len);

/*
 * Remove hop-by-hop headers (RFC 9110, section 7.6.1): Connection and every
 * header it names, Keep-Alive, Proxy-Connection, Proxy-Authenticate,
 * Proxy-Authorization, TE, Trailer, Transfer-Encoding and Upgrade.
 */
void tg_headers_strip_hop_by_hop(struct tg_headers *h);

#define TG_HEAD_BUFFER 2048       /* bytes of a head gathered before a write */

/*
 * A message head being written to an evbuffer. The text gathers in buf and
 * goes to out in one evbuffer_add() per TG_HEAD_BUFFER bytes, because each
 * call costs about 130 instructions (callgrind, libevent 2.1) and a head
 * has some 30 pieces. Start with tg_head_start(), add text, and end with
 * tg_head_end(), which writes the rest: until then out lacks part of the
 * head. The struct is meant for the caller's stack.
 */
struct tg_head {
	struct evbuffer *out;
	size_t len;                     /* bytes of buf in use */
	int failed;                     /* an evbuffer_add() failed */
	char buf[TG_HEAD_BUFFER];
};

void tg_head_start(struct tg_head *head, struct evbuffer *out);

void tg_head_add_long(struct tg_head *head, const char *text, size_t len);

/* Append len bytes of text. Inline, because a request has some 60 pieces
 * and most are a few bytes, whose memcpy() the compiler then inlines. */
static inline void
tg_head_add(struct tg_head *head, const char *text, size_t len)
{
	if (len > sizeof(head->buf) - head->len) {
		tg_head_add_long(head, text, len);
		return;
	}
	memcpy(head->buf + head->len, text, len);
	head->len += len;
}

/* Append the line "name: value\r\n". */
void tg_head_line(struct tg_head *head, const char *name, size_t name_len,
                  const char *value, size_t value_len);

/* tg_head_line() for a name that is a string literal and a string value. */
#define TG_HEAD_LINE(head, literal, value) \
	tg_head_line((head), literal, sizeof(literal) - 1, (value), strlen(value))

/* Append "name: value\r\n" with value in decimal. Formatted by hand, as
 * every line is: printf-style calls cost thousands of instructions per
 * response. */
void tg_head_number(struct tg_head *head, const char *name, size_t name_len,
                    unsigned long long value);

/* Write the rest of the head to out. Returns 0, or -1 when memory ran out
 * at any point of the head. */
int tg_head_end(struct tg_head *head);

/* Append the line "name: value\r\n" to out. Returns 0, or -1 when out of
 * memory. */
int tg_header_write(struct evbuffer *out, const char *name, const char *value);

/* Values the gateway adds to or replaces in the request it sends upstream. */
struct tg_upstream_rewrite {
	const char *target_prefix;  /* put before the target (a backend's base
	                               path); NULL for none */
	const char *host;           /* Host header value */
	const char *api_key;        /* replaces the client's credential
	                               headers; NULL keeps them */
	enum tg_key_header key_header;  /* the header that carries api_key */
	int drop_credentials;       /* leave the client's credential headers
	                               out even without api_key: they carry
	                               gateway keys, which stay at the gateway */
	const char *client_ip;      /* appended to X-Forwarded-For and, with
	                               proto, to Forwarded; NULL for a request
	                               of the gateway's own, which sends none */
	const char *proto;          /* X-Forwarded-Proto: "http" or "https" */
	const char *request_id;     /* X-Request-Id */
	const char *traceparent;    /* replaces traceparent; NULL keeps the client's */
	int drop_tracestate;        /* leave the client's tracestate out */
};

/* The start of the header line that carries a key sent as which, up to
 * the key itself: "Authorization: Bearer ", "x-api-key: " or "api-key: ".
 * The line ends after the key with "\r\n". */
const char *tg_key_line_start(enum tg_key_header which);

/*
 * Write an HTTP/1.1 request head for the upstream into out: the request
 * line, the client's end-to-end headers rewritten as rw specifies, and a
 * Content-Length of body_len. client_headers must already be stripped of
 * hop-by-hop headers. Returns 0, or -1 when out of memory.
 */
int tg_headers_write_upstream_request(struct evbuffer *out, const char *method,
                                      const char *target,
                                      const struct tg_headers *client_headers,
                                      const struct tg_upstream_rewrite *rw,
                                      size_t body_len);

#endif
