/*
 * Request lifecycle: creation when a request starts arriving, dispatch once
 * it is read whole, and the single end point that logs and frees it.
 */
#ifndef TOLLGATE_REQUEST_H
#define TOLLGATE_REQUEST_H

#include "clock.h"
#include "request-t.h"

struct tg_request *tg_request_new(struct tg_client *client);

/* Route the fully read request and respond to it, locally or from upstream. */
void tg_request_dispatch(struct tg_request *req);

/*
 * The request body as a jansson tree, built on the first call, or NULL
 * when the body is not JSON (none was needed) or memory ran out (then
 * body_json_pending stays set). Every
 * reader of the tree goes through here: the dispatch only scans the body
 * (request-scan.h), so that a request no feature reads pays for no tree.
 * A reader may change the tree; later calls return the same tree.
 */
json_t *tg_request_json(struct tg_request *req);

/* The tree if tg_request_json() built it already, else NULL: for a writer
 * of the body, which must keep a built tree the same as the body. */
json_t *tg_request_json_if_built(const struct tg_request *req);

/* Whether the body is a JSON object, known without building its tree:
 * the scan or jansson read it as one. A reader of the body's text may
 * count on jansson reading that text. */
int tg_request_body_is_object(const struct tg_request *req);

/* The error shape the client of req reads: Anthropic's on its Messages
 * API, a path of /v1/messages or under it (count_tokens, batches), and
 * OpenAI's on every other path, or before the path is read. */
enum tg_error_shape tg_request_error_shape(const struct tg_request *req);

/* Respond with the gateway's own error response, in the shape of
 * tg_request_error_shape(). message may be NULL for the kind's default
 * text. */
void tg_request_fail(struct tg_request *req, enum tg_error err, const char *message);

/* The same with extra header lines (each ending in CRLF, may be NULL), for
 * a status that names what the client may send instead, such as Allow. */
void tg_request_fail_with(struct tg_request *req, enum tg_error err,
                          const char *extra_headers, const char *message);

/*
 * For a request whose head is read and whose client waits for 100 Continue
 * before it sends the body: the error that the head alone earns, or TG_OK.
 * That is a 401 or 403 of the gateway keys (tg_auth_head_refusal()), a 415
 * of a Content-Encoding on a body the gateway reads, or a 429 of a used-up
 * rate limit of the caller's key (tg_ratelimit_head_refusal(), which sets
 * req->key and req->ratelimit), unless the dispatch would respond
 * otherwise first. The caller refuses
 * the request with tg_request_fail_unread() rather than ask for a body that
 * would be read for nothing. message gets the client's message ("" for the
 * error's default).
 */
enum tg_error tg_request_head_refusal(struct tg_request *req, char *message, size_t size);

/* Respond as tg_request_fail() does to a request that the gateway rejects
 * before it was read whole (a malformed or too large head or body, a read
 * timeout, a credential or a used-up rate limit refused before the body was
 * asked for). A 401 carries its WWW-Authenticate challenge, a 415 of a
 * content coding its Accept-Encoding, a 429 its Retry-After, and a 405 or
 * 501 of a site its allow_lines (worker.h). Its phase stays
 * TG_PHASE_REQUEST, so that its termination code (GR, or cR on a timeout)
 * sets it apart from a request rejected after it was read (GL). */
void tg_request_fail_unread(struct tg_request *req, enum tg_error err, const char *message);

/* The client went away or timed out before the response was complete:
 * cancel the upstream at once and end the request with cause. */
void tg_request_abort(struct tg_request *req, enum tg_cause cause);

/* Called by the client connection once the whole response left the gateway
 * (or the connection failed): write the access-log line and free req. */
void tg_request_done(struct tg_request *req);

/* Return tg_now_ns(), or req->done_ns once tg_request_done() began. An
 * attempt or span still open then ends with the request, so no child span
 * ends after the server span. */
static inline uint64_t
tg_request_now(const struct tg_request *req)
{
	return req->done_ns != 0 ? req->done_ns : tg_now_ns();
}

/* Return the model the last attempt sent upstream, which a failover group
 * member may have renamed, or the client's model (req->model) when no
 * attempt was made. That model produced the response, so prices and the
 * model label of metrics follow it. */
static inline const char *
tg_request_sent_model(const struct tg_request *req)
{
	return req->n_attempts > 0 ? req->attempts[req->n_attempts - 1].model : req->model;
}

#endif
