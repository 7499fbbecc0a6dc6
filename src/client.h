/*
 * Client connections: read requests with llhttp, enforce the size and time
 * limits, write responses, keep the connection alive between requests.
 * The gateway's listeners and the admin listener share this code, and a
 * worker's site (worker.h) selects the handlers of the requests.
 */
#ifndef TOLLGATE_CLIENT_H
#define TOLLGATE_CLIENT_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/util.h>
#include <llhttp.h>

#include "config-t.h"
#include "errors.h"
#include "headers.h"
#include "socket-reader.h"

struct tg_worker;
struct tg_request;
struct bufferevent;
struct event;
struct evbuffer;
struct tg_tls_listener;

enum tg_client_state {
	TG_CLIENT_IDLE,         /* between requests */
	TG_CLIENT_HEAD,         /* reading a request head */
	TG_CLIENT_BODY,         /* reading a request body */
	TG_CLIENT_SERVING,      /* request read; parser paused until answered */
	TG_CLIENT_CLOSING,      /* flushing the last response, then close */
};

/* Bytes of a connection's input kept across reads, enough for the checks
 * of the request line that look back from a version "D.D" at its end: the
 * version, " HTTP/" and the byte before that space (client.c). */
#define TG_CLIENT_HISTORY 16

struct tg_client {
	struct tg_worker *worker;
	struct bufferevent *bev;
	struct tg_socket_reader reader; /* reads bev: enable and disable through
	                                   it, not the bufferevent */
	struct event *timer;
	int timer_due;                  /* what to do with timer after the
	                                   parser's run (client.c) */
	tg_msec_t timer_due_ms;         /* the timeout to arm then */
	llhttp_t parser;
	enum tg_client_state state;
	int tls;
	struct tg_tls_listener *listener;       /* counts failed handshakes */
	struct event *sniff;            /* waits for the first byte on a TLS
	                                   listener, while bev is NULL */
	struct ssl_st *sniff_ssl;       /* the TLS state for bev meanwhile */
	char addr[64];                  /* "ip:port" */
	char ip[48];

	struct tg_request *req;         /* request being read or served */
	size_t head_bytes;              /* request line and headers so far */
	size_t extension_bytes;         /* chunk extensions of the body so far */
	char *url;                      /* request target being assembled */
	size_t url_len, url_cap;
	struct tg_header_part field;    /* header name being assembled */
	struct tg_header_part value;    /* header value being assembled */
	enum tg_error parse_error;      /* why a callback stopped the parser */
	int line_read;                  /* the request line was read, so an
	                                   error of llhttp's is in a header */
	char parse_message[256];        /* the client's error message for it, or
	                                   "" for the default of parse_error */
	enum tg_error target_error;     /* why the request target is invalid,
	                                   reported at the end of the head; its
	                                   message waits in parse_message */
	const char *read_start;         /* bytes handed to llhttp_execute() */
	const char *read_end;           /* end of those bytes */
	const char *value_end;          /* end of the last header value piece */
	char before_read[TG_CLIENT_HISTORY]; /* the bytes before read_start
	                                   that llhttp read last, oldest first;
	                                   NUL before the connection's first */
	int cr_pending;                 /* the empty lines before a request
	                                   line ended on a CR in an earlier read */
	size_t version_len;             /* bytes of the request line's version
	                                   read so far */
	int version_ends_read;          /* the version ended the last read, and
	                                   the line end after it is unchecked */

	struct evbuffer *held;          /* bytes sent while corked */
	int corked;                     /* nesting depth of tg_client_cork() */
	int response_done;              /* whole response passed to send */
	int close_after_response;
	int unread_input;               /* an error cut the request short, so
	                                   the client may still be sending */
	int read_ahead_full;            /* reading stopped: the input holds
	                                   CLIENT_PIPELINE_MAX (client.c) */
	uint64_t idle_since_ns;         /* tg_now_ns when the last response
	                                   was written; 0 before the first */
	TAILQ_ENTRY(tg_client) link;    /* in its worker's clients */
};

/* Take over an accepted socket of listener. tls is the context its
 * handshake uses, or NULL for plain HTTP. */
void tg_client_accept(struct tg_worker *w, evutil_socket_t fd,
                      const struct sockaddr *addr, int addrlen, SSL_CTX *tls,
                      struct tg_tls_listener *listener);

/* Send data to the client and leave data empty. With nothing queued, a
 * plain TCP client gets the bytes written to its socket at once. This saves
 * the event loop two epoll_ctl() calls per write. The rest, and all output
 * to a TLS client, is queued on the bufferevent under limits.send_timeout.
 * A failed write is not reported here. The bytes stay queued, so the
 * bufferevent's own write fails and ends the connection as before: the
 * request is aborted once, with the client as the cause. */
void tg_client_send(struct tg_client *c, struct evbuffer *data);

/* Send len bytes at bytes, as tg_client_send() does. */
void tg_client_send_bytes(struct tg_client *c, const void *bytes, size_t len);

/* Hold what is sent until the matching tg_client_uncork(), so that the
 * pieces from one upstream read leave in one write. Calls nest, and the
 * outermost uncork writes. A caller must uncork before it returns to the
 * event loop. */
void tg_client_cork(struct tg_client *c);
void tg_client_uncork(struct tg_client *c);

/* Return the buffer of bytes sent while corked, so that a writer can format
 * into it (evbuffer_add_printf). Valid only while corked. */
struct evbuffer *tg_client_corked_output(struct tg_client *c);

/* The response of the current request has been sent whole. Once it has
 * been written, the request ends and the connection reads the next one or closes. */
void tg_client_response_done(struct tg_client *c);

/* Close an idle connection now (drain). Returns 0, leaving it open, when a
 * request is under way or has started to arrive; it closes after that
 * request's response. */
int tg_client_close_if_idle(struct tg_client *c);

/* Close the keep-alive connection of w that has waited longest for its
 * next request, to make room for a new connection at the connection limit,
 * as nginx does. Only a connection that has had a response and has no byte
 * of its next request yet is closed. Returns 1 when one was closed. */
int tg_client_close_longest_idle(struct tg_worker *w);

/* End the connection now, aborting any request with cause (drain deadline). */
void tg_client_close(struct tg_client *c, int cause);

/* Return whether the output queued on the bufferevent has passed its high
 * mark. The relay then stops reading the upstream until the write callback
 * drains the output below its low mark and calls tg_relay_client_writable().
 * Corked bytes do not count, because they may still go to the socket at
 * once and then no write callback would resume the upstream. Ask again
 * after tg_client_uncork(). */
int tg_client_output_full(const struct tg_client *c);

#endif
