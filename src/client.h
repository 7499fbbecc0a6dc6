/*
 * Client connections: read requests with llhttp, enforce the size and time
 * limits, write responses, keep the connection alive between requests.
 */
#ifndef TOLLGATE_CLIENT_H
#define TOLLGATE_CLIENT_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/util.h>
#include <llhttp.h>

#include "errors.h"

struct tg_worker;
struct tg_request;
struct bufferevent;
struct event;
struct evbuffer;

enum tg_client_state {
	TG_CLIENT_IDLE,         /* between requests */
	TG_CLIENT_HEAD,         /* reading a request head */
	TG_CLIENT_BODY,         /* reading a request body */
	TG_CLIENT_SERVING,      /* request read; parser paused until answered */
	TG_CLIENT_CLOSING,      /* flushing the last response, then close */
};

struct tg_client {
	struct tg_worker *worker;
	struct bufferevent *bev;
	struct event *timer;
	llhttp_t parser;
	enum tg_client_state state;
	int tls;
	char addr[64];                  /* "ip:port" */
	char ip[48];

	struct tg_request *req;         /* request being read or served */
	size_t head_bytes;              /* request line and headers so far */
	char *url;                      /* request target being assembled */
	size_t url_len, url_cap;
	char *field;                    /* header name being assembled */
	size_t field_len, field_cap;
	char *value;                    /* header value being assembled */
	size_t value_len, value_cap;
	enum tg_error parse_error;      /* why a callback stopped the parser */
	const char *read_start;         /* bytes handed to llhttp_execute() */
	const char *value_end;          /* end of the last header value piece */

	int response_done;              /* whole response queued on bev */
	int close_after_response;
	int unread_input;               /* an error cut the request short, so
	                                   the client may still be sending */
	LIST_ENTRY(tg_client) link;
};

/* Take over an accepted socket. tls is the listener's context or NULL. */
void tg_client_accept(struct tg_worker *w, evutil_socket_t fd,
                      const struct sockaddr *addr, int addrlen, void *tls);

/* Output towards the client, for the relay. */
struct evbuffer *tg_client_output(struct tg_client *c);

/* The response of the current request is queued whole. Once it has been
 * written, the request ends and the connection reads the next one or closes. */
void tg_client_response_done(struct tg_client *c);

/* Close an idle connection now (drain); 0 when the client is busy. */
int tg_client_close_if_idle(struct tg_client *c);

/* End the connection now, aborting any request with cause (drain deadline). */
void tg_client_close(struct tg_client *c, int cause);

/* Let the relay stop reading the upstream while the client is slow: called
 * when the client's output buffer passes its high mark and when it drains. */
int tg_client_output_full(const struct tg_client *c);

#endif
