/*
 * Client connections.
 *
 * A connection reads one request at a time. When a request has been read
 * whole, the parser is paused and the request is dispatched, to the routes
 * or to the worker's site (the admin listener's endpoints); pipelined bytes
 * wait in the input buffer. Once the response has been written out, the
 * request ends (access log) and the connection reads the next request,
 * waits for one (keep-alive), or closes.
 *
 * Timers, one per connection and re-armed by state:
 *   idle      limits.keepalive_timeout (client_header_timeout before the
 *             first request), then close without a response
 *   head      limits.client_header_timeout for the whole head, then 408
 *   body      limits.client_body_timeout between two body reads, then 408
 *   closing   CLIENT_LINGER for a client that is still sending after an
 *             error response, so its unread bytes do not reset the
 *             connection before it has read the response
 *   serving   none: the timer of the reading may still run, does nothing
 *             when it fires, and the end of the response re-arms it. An
 *             event_del() at the end of each read request would cost
 *             about 220 instructions (callgrind).
 *
 * Output: tg_client_send() writes to a plain socket itself while the
 * bufferevent has nothing queued, and queues only the rest. The bufferevent
 * arms EV_WRITE only while its output is not empty, so it does not poll for
 * writability while this path writes. send_timeout, the write watermark and
 * the write callback apply to the queued rest as they did to all output.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "relay.h"
#include "request.h"
#include "request-head.h"
#include "tls-handshake.h"
#include "worker.h"

#define CLIENT_LINGER_MS 2000

/* The version of a request line as llhttp reads it, "D.D", and the bytes
 * from its end back to the byte before the space that ends the target:
 * the version, "HTTP/", then that space. */
#define VERSION_LEN 3
#define VERSION_TAIL (VERSION_LEN + 5 + 1 + 1)
_Static_assert(VERSION_TAIL <= TG_CLIENT_HISTORY, "the history holds a version's tail");

/* Chunk extensions carry nothing the gateway uses, and limits.max_body
 * counts chunk data only, so their bytes have a bound of their own. */
#define CHUNK_EXTENSIONS_MAX (16 * 1024)
#define CLIENT_OUTPUT_HIGH (256 * 1024)  /* stop reading the upstream above */
#define CLIENT_OUTPUT_LOW (64 * 1024)    /* and resume below */

/* Maximum pipelined bytes a connection reads ahead while a request is
 * served. Above it, reading stops until the requests read ahead take less
 * again, so the input of a client that pipelines and never reads stays
 * within this and one read more, whatever it sends. Hundreds of small
 * pipelined requests still fit. */
#define CLIENT_PIPELINE_MAX (64 * 1024)

static void client_parse(struct tg_client *c);
static void client_free(struct tg_client *c);

static void
arm_timer(struct tg_client *c, tg_msec_t ms)
{
	struct timeval tv = tg_timeval_ms(ms);

	event_add(c->timer, &tv);
}

/* What the parser's callbacks want of the timer: timer_due. */
enum {
	TIMER_KEEP,             /* leave it as it is */
	TIMER_ARM,              /* arm it for timer_due_ms */
};

/*
 * The parser's callbacks set the timer through timer_due, and
 * apply_due_timer() sets it once after each llhttp_execute(). A request
 * read whole would otherwise move the timer three times or more (header
 * timeout, body timeout, again per body piece), each an event_add() under
 * the base's lock: about 300 instructions each under callgrind. The
 * deadlines move by the time one execute takes.
 */
static void
set_due_timer(struct tg_client *c, tg_msec_t ms)
{
	c->timer_due = TIMER_ARM;
	c->timer_due_ms = ms;
}

static void
apply_due_timer(struct tg_client *c)
{
	if (c->timer_due == TIMER_ARM)
		arm_timer(c, c->timer_due_ms);
	c->timer_due = TIMER_KEEP;
}

/* The bounds of c's requests: its site's, or those of the config of the
 * request being read, else of the newest config. */
static const struct tg_limits *
client_limits(const struct tg_client *c)
{
	if (c->worker->site != NULL)
		return &c->worker->site->limits;
	if (c->req != NULL)
		return &c->req->config->limits;
	return &c->worker->config->limits;
}

/* Return the prefix of a bound's name in messages: "limits.", or the
 * site's. */
static const char *
limits_name(const struct tg_client *c)
{
	return c->worker->site != NULL ? c->worker->site->limits_name : "limits.";
}

/* Record a request error found while parsing; the llhttp callback then
 * returns the error code so parsing stops there. (on_headers_complete
 * turns any non-zero code into HPE_CB_HEADERS_COMPLETE, so the reason is
 * kept here, not in the code.) */
static int
parse_fail(struct tg_client *c, enum tg_error err)
{
	c->parse_error = err;
	return HPE_USER;
}

/* Record a request error as parse_fail() does, with the message the client
 * gets in place of the error's default one. */
static int
parse_fail_with(struct tg_client *c, enum tg_error err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
parse_fail_with(struct tg_client *c, enum tg_error err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vsnprintf(c->parse_message, sizeof(c->parse_message), fmt, args);
	va_end(args);
	return parse_fail(c, err);
}

static int
head_grew(struct tg_client *c, size_t len)
{
	size_t max_header = client_limits(c)->max_header;

	c->head_bytes += len;
	if (c->head_bytes <= max_header)
		return 0;
	/* Trailer fields count against the same limit as the head. */
	if (c->state == TG_CLIENT_BODY)
		return parse_fail_with(c, TG_E_HEADER_TOO_LARGE, "the request head and the "
		                       "trailer fields of its chunked body exceed "
		                       "%smax_header (%zu bytes)", limits_name(c), max_header);
	return parse_fail_with(c, TG_E_HEADER_TOO_LARGE, "the request head exceeds "
	                       "%smax_header (%zu bytes)", limits_name(c), max_header);
}

/* The byte back bytes before at, a position in the bytes of the current
 * llhttp_execute(): from those bytes, or from the history of earlier
 * reads when at is closer to their start. back is 1 to TG_CLIENT_HISTORY. */
static char
byte_before(const struct tg_client *c, const char *at, size_t back)
{
	size_t in_read = (size_t)(at - c->read_start);

	assert(back >= 1);
	assert(back <= TG_CLIENT_HISTORY);
	if (back <= in_read)
		return at[-(ptrdiff_t)back];
	return c->before_read[TG_CLIENT_HISTORY - (back - in_read)];
}

/* Add the consumed bytes from read_start to the history that
 * byte_before() reads, before they leave the input buffer. */
static void
remember_history(struct tg_client *c, size_t consumed)
{
	const size_t keep = TG_CLIENT_HISTORY;

	if (consumed >= keep) {
		memcpy(c->before_read, c->read_start + consumed - keep, keep);
		return;
	}
	memmove(c->before_read, c->before_read + consumed, keep - consumed);
	memcpy(c->before_read + keep - consumed, c->read_start, consumed);
}

/* --- llhttp callbacks ----------------------------------------------------- */

static int
on_message_begin(llhttp_t *p)
{
	struct tg_client *c = p->data;

	c->parse_error = TG_OK;
	c->parse_message[0] = '\0';
	c->target_error = TG_OK;
	c->line_read = 0;
	c->req = tg_request_new(c);
	if (c->req == NULL)
		return parse_fail(c, TG_E_INTERNAL);
	c->state = TG_CLIENT_HEAD;
	c->head_bytes = 0;
	c->extension_bytes = 0;
	c->version_len = 0;
	tg_header_part_clear(&c->field);
	tg_header_part_clear(&c->value);
	set_due_timer(c, client_limits(c)->client_header_timeout);
	return 0;
}

/*
 * Reject a request line with more than one space between two of its parts,
 * where llhttp 8.1 skips any number. The grammar of RFC 9112 section 3
 * has one SP there. The section lets a recipient split on runs of
 * whitespace, at the risk of reading a line otherwise than a server in
 * front of it, and says it SHOULD respond 400 to an invalid request line
 * rather than guess its meaning.
 *
 * between names the two parts. Returns HPE_USER with the error recorded.
 */
static int
several_spaces(struct tg_client *c, const char *between)
{
	return parse_fail_with(c, TG_E_BAD_REQUEST, "the request line has more than one "
	                       "space between its %s; separate its three parts with one "
	                       "space each", between);
}

/*
 * Record the method, which llhttp has read whole once the target starts.
 * A request that fails later still logs its method, and one that fails
 * inside its method logs none rather than a guess.
 *
 * Then reject a request line that ends after its target, without a
 * version: the simple request of HTTP/0.9, which llhttp 8.1 takes and then
 * reads header lines after. An HTTP/0.9 client could not read a status
 * line, but few if any are in use. Such a line most likely comes from a
 * hand-written client that left the version out, and a 400 that names the
 * fault helps it more than a silent close.
 *
 * The byte after the target ends it, and a line end there leaves no room
 * for a version. As with on_version(), a target cut off by the end of the
 * bytes read so far comes again with the next bytes.
 */
static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;

	if (c->req->method == NULL) {
		c->req->method_id = p->method;
		c->req->method = llhttp_method_name(p->method);
	}
	if (c->url_len == 0 && byte_before(c, at, 2) == ' ')
		return several_spaces(c, "method and target");
	if (at + len < c->read_end && (at[len] == '\r' || at[len] == '\n'))
		return parse_fail_with(c, TG_E_BAD_REQUEST, "the request line ends after the "
		                       "target, without an HTTP version (HTTP/0.9 style); "
		                       "end it with \" HTTP/1.1\"");
	if (head_grew(c, len) != 0)
		return HPE_USER;
	if (tg_bytes_append(&c->url, &c->url_len, &c->url_cap, at, len) != 0)
		return parse_fail(c, TG_E_INTERNAL);
	return 0;
}

/* Set req->url and req->path from the request target read so far, in
 * origin form. Returns TG_OK, or the error with its reason in
 * c->parse_message. */
static enum tg_error
set_request_target(struct tg_client *c, struct tg_request *req)
{
	/* llhttp rejects a request line without a target, and
	 * tg_bytes_append() keeps c->url NUL-terminated. */
	const char *target = c->url;
	enum tg_error err;

	assert(c->url_len > 0);
	c->url_len = 0;
	err = tg_request_head_origin_form(target, req->method, &req->url, c->parse_message,
	                                  sizeof(c->parse_message));
	if (err != TG_OK)
		return err;

	req->path = strndup(req->url, strcspn(req->url, "?"));
	return req->path != NULL ? TG_OK : TG_E_INTERNAL;
}

/*
 * Set the target and the path once the request line has its target whole.
 * A request rejected later in its head, such as with a 431, then logs its
 * path and gets the error shape of its API. An invalid target is reported
 * only at the end of the head (on_headers_complete()), so that an error in
 * the version or a header field takes precedence over it. The HTTP/2
 * preface "PRI * HTTP/2.0" thus gets a 505, not a 400 for its target "*".
 */
static int
on_url_complete(llhttp_t *p)
{
	struct tg_client *c = p->data;

	c->target_error = set_request_target(c, c->req);
	return 0;
}

/*
 * Whether the gateway serves requests of HTTP version major.minor: 1.0 and
 * 1.1 only. Any other gets 505 with a message that names the versions it
 * takes, as RFC 9110 section 15.6.6 recommends. HTTP/2 is not served: its
 * connection preface ("PRI * HTTP/2.0") and a request line sent as 2.0
 * both end here. RFC 9110 section 6.2 would have HTTP/1.2 read as 1.1, but
 * llhttp 8.1 has no leniency for it and stops on any 1.x above 1.1. When
 * the version is not supported, records the error and returns 0.
 */
static int
version_supported(struct tg_client *c, int major, int minor)
{
	if (major == 1 && minor <= 1)
		return 1;
	parse_fail_with(c, TG_E_VERSION_NOT_SUPPORTED, "the request line gives HTTP/%d.%d, "
	                "which the gateway does not serve; send the request as HTTP/1.1 "
	                "(or HTTP/1.0)", major, minor);
	return 0;
}

/* Record that the request line ends with a bare LF. RFC 9112 section 2.2
 * allows a recipient to accept one, and llhttp 8.1 does, but a server in
 * front that does not would read this line and the next as one. Returns
 * HPE_USER. */
static int
request_line_bare_lf(struct tg_client *c)
{
	return parse_fail_with(c, TG_E_BAD_REQUEST, "the request line ends with a bare "
	                       "LF; end each line of the request head with CRLF");
}

/*
 * Check the request line once llhttp has read its version "D.D": the single
 * space before "HTTP/", the version (version_supported()) and the line end
 * after it. llhttp ends the version's span after its last digit, whether or
 * not the byte after it has arrived, so a version cut by the end of a read
 * comes in two calls, and the last call may end the read. The line end is
 * then checked at the start of the next read (check_read_start()).
 */
static int
on_version(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;
	const char *end = at + len;

	c->version_len += len;
	if (c->version_len < VERSION_LEN)
		return 0;
	if (byte_before(c, end, VERSION_TAIL) == ' ')
		return several_spaces(c, "target and version");
	if (!version_supported(c, p->http_major, p->http_minor))
		return HPE_USER;
	if (end == c->read_end)
		c->version_ends_read = 1;
	else if (*end == '\n')
		return request_line_bare_lf(c);
	c->line_read = 1;
	return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;

	if (head_grew(c, len) != 0)
		return HPE_USER;
	if (tg_header_part_add(&c->field, at, len) != 0)
		return parse_fail(c, TG_E_INTERNAL);
	return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;

	/* llhttp passes an obs-fold line on as a second piece of the value,
	 * with the CRLF between them left out. A piece that neither follows
	 * the previous one nor starts a new read is such a fold: rejected, as
	 * RFC 9112 section 5.2 allows, since proxies disagree on its meaning. */
	if (c->value.len > 0 && at != c->value_end && at != c->read_start)
		return parse_fail_with(c, TG_E_BAD_HEADER, "a header value goes on over a second "
		                       "line (obs-fold); send each value on one line");
	c->value_end = at + len;

	if (head_grew(c, len) != 0)
		return HPE_USER;
	if (tg_header_part_add(&c->value, at, len) != 0)
		return parse_fail(c, TG_E_INTERNAL);
	return 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct tg_client *c = p->data;
	int rc = 0;

	/* Trailer fields of a chunked body come after the headers were
	 * checked and stripped: drop them rather than forward them. */
	if (c->state == TG_CLIENT_BODY) {
		tg_header_part_clear(&c->field);
		tg_header_part_clear(&c->value);
		return 0;
	}

	/* The ": " and CRLF of the line count too, so that max_header bounds
	 * the bytes of a head of many short lines as well. */
	if (head_grew(c, 4) != 0)
		return HPE_USER;

	/* llhttp has checked every byte of the name and of the value, and
	 * tg_request_head_name_valid() checks that the name is not empty. */
	if (!tg_request_head_name_valid(c->field.at, c->field.len))
		rc = parse_fail_with(c, TG_E_BAD_HEADER, "%s", TG_REQUEST_HEADER_NAME_EMPTY);
	else if (tg_headers_add_parts(&c->req->headers, &c->field, &c->value) != 0)
		rc = parse_fail(c, TG_E_INTERNAL);

	tg_header_part_clear(&c->field);
	tg_header_part_clear(&c->value);
	return rc;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct tg_client *c = p->data;
	struct tg_request *req = c->req;
	const struct tg_limits *limits = client_limits(c);
	enum tg_error err;

	req->http_minor = p->http_minor;
	if (c->target_error != TG_OK)
		return parse_fail(c, c->target_error);

	err = tg_request_head_check_host(&req->headers, p->http_major, p->http_minor,
	                                 c->parse_message, sizeof(c->parse_message));
	if (err == TG_OK)
		err = tg_request_head_check_transfer_coding(&req->headers, p->http_major,
		                                            p->http_minor, c->parse_message,
		                                            sizeof(c->parse_message));
	if (err == TG_E_BAD_REQUEST)
		err = TG_E_BAD_HEADER;  /* both checks read header fields */
	if (err != TG_OK)
		return parse_fail(c, err);

	/* Refuse an announced body that is too large before it is read. */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > limits->max_body)
		return parse_fail_with(c, TG_E_BODY_TOO_LARGE, "the request body of %llu bytes "
		                       "(Content-Length) exceeds %smax_body (%zu bytes)",
		                       (unsigned long long)p->content_length, limits_name(c),
		                       limits->max_body);

	tg_headers_strip_hop_by_hop(&req->headers);
	c->state = TG_CLIENT_BODY;
	set_due_timer(c, limits->client_body_timeout);

	/* Pause so that client_parse() gets the position where the head
	 * ends, which llhttp passes to no callback. head_read() resumes. */
	return HPE_PAUSED;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;
	struct tg_request *req = c->req;
	const struct tg_limits *limits = client_limits(c);

	if (req->body_len + len > limits->max_body)
		return parse_fail_with(c, TG_E_BODY_TOO_LARGE, "the request body exceeds "
		                       "%smax_body (%zu bytes)", limits_name(c), limits->max_body);

	/* NOTE: a body takes about twice its size at peak, from two copies:
	 * evbuffer_pullup() in request.c copies these pieces into one block,
	 * and build_request() in attempt.c copies the body into the upstream
	 * request. Sizing req->body by Content-Length in on_headers_complete()
	 * (evbuffer_expand) and adding the body to the upstream request by
	 * reference would avoid both: a 30 MB body then raised the peak RSS
	 * by 29 MB instead of 59 MB (one worker, tollgate-mock upstream). */
	if (evbuffer_add(req->body, at, len) != 0)
		return parse_fail(c, TG_E_INTERNAL);
	req->body_len += len;
	set_due_timer(c, limits->client_body_timeout);
	return 0;
}

/* Reject a chunk as soon as its size line takes the body past
 * limits.max_body, since waiting for its bytes cannot change the result. */
static int
on_chunk_header(llhttp_t *p)
{
	struct tg_client *c = p->data;
	struct tg_request *req = c->req;
	size_t max_body = client_limits(c)->max_body;

	/* on_body keeps body_len at most max_body, so this cannot wrap. */
	if (p->content_length > max_body - req->body_len)
		return parse_fail_with(c, TG_E_BODY_TOO_LARGE, "a chunk of %llu bytes takes "
		                       "the request body past %smax_body (%zu bytes)",
		                       (unsigned long long)p->content_length, limits_name(c),
		                       max_body);
	return 0;
}

/* Count the bytes of a chunk extension's name or value. */
static int
on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
	struct tg_client *c = p->data;

	(void)at;
	c->extension_bytes += len;
	if (c->extension_bytes > CHUNK_EXTENSIONS_MAX)
		return parse_fail_with(c, TG_E_BODY_TOO_LARGE, "the chunk extensions of the "
		                       "request body exceed %d bytes; send chunks without them",
		                       CHUNK_EXTENSIONS_MAX);
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct tg_client *c = p->data;

	c->req->keepalive = llhttp_should_keep_alive(p);
	c->state = TG_CLIENT_SERVING;
	c->timer_due = TIMER_KEEP;      /* see "serving" at the top */

	/* Stop here: the next pipelined request waits until this one has
	 * its response. */
	return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_url_complete = on_url_complete,
	.on_version = on_version,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_chunk_header = on_chunk_header,
	.on_chunk_extension_name = on_chunk_extension,
	.on_chunk_extension_value = on_chunk_extension,
	.on_message_complete = on_message_complete,
};

/* --- connection ----------------------------------------------------------- */

/* Respond to a request that could not be read, then close the connection.
 * message replaces the error's default message unless it is NULL. */
static void
reject_unreadable_request(struct tg_client *c, enum tg_error err, const char *message)
{
	if (c->req == NULL) {
		c->req = tg_request_new(c);
		if (c->req == NULL) {
			client_free(c);
			return;
		}
	}
	c->state = TG_CLIENT_SERVING;
	c->close_after_response = 1;
	c->unread_input = 1;
	event_del(c->timer);
	tg_request_fail_unread(c->req, err, message);
}

/*
 * Name what is wrong with the framing of the head or of a chunked body,
 * where strict llhttp stopped. Its reason goes into the message, since one
 * code covers several bytes: "Expected CRLF after chunk", "Invalid header
 * token" and the like. Other errors get llhttp's reason after the default
 * message.
 */
static void
describe_framing_error(struct tg_client *c, llhttp_errno_t rc)
{
	const char *reason = llhttp_get_error_reason(&c->parser);
	int framing = rc == HPE_STRICT || rc == HPE_LF_EXPECTED ||
	              rc == HPE_INVALID_HEADER_TOKEN || rc == HPE_INVALID_CHUNK_SIZE;

	if (!framing) {
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "the request is not valid HTTP/1.1 (llhttp: %s)", reason);
		return;
	}
	/* In the body, llhttp fails only on chunked framing (chunk-size lines,
	 * the CRLF after chunk data, trailer fields), since it takes a
	 * Content-Length body as bytes. */
	if (c->state == TG_CLIENT_BODY)
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "the chunked request body is malformed (llhttp: %s); send each chunk as "
		         "its size in hexadecimal, CRLF, the data and CRLF, and end with 0 and "
		         "two CRLFs", reason);
	else if (rc == HPE_INVALID_HEADER_TOKEN)
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "a header field of the request is malformed (llhttp: %s); a name is a "
		         "token with no space before the colon, and a value holds no control "
		         "characters", reason);
	else
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "a line of the request head does not end with CRLF (llhttp: %s); end "
		         "each line with CRLF", reason);
}

/* Return the kind of an error llhttp found, by the part of the request it
 * was reading. In the body, llhttp fails only on chunked framing, because
 * it takes a Content-Length body as bytes. */
static enum tg_error
parser_error_kind(const struct tg_client *c)
{
	if (c->state == TG_CLIENT_BODY)
		return TG_E_BAD_CHUNKED_BODY;
	return c->line_read ? TG_E_BAD_HEADER : TG_E_BAD_REQUEST;
}

/* Whether llhttp's HPE_INVALID_CONTENT_LENGTH was a number over 64 bits:
 * llhttp gives that the code of a malformed value, and tells the two apart
 * only by its reason text. */
static int
content_length_overflows(const struct tg_client *c)
{
	const char *reason = llhttp_get_error_reason(&c->parser);

	return reason != NULL && strcmp(reason, "Content-Length overflow") == 0;
}

/* Quote the Content-Length value that llhttp rejected: the part it passed
 * to on_header_value(), then the bytes from where it stopped to the end of
 * the line or of the bytes read. */
static void
describe_content_length(struct tg_client *c)
{
	const char *at = llhttp_get_error_pos(&c->parser);
	char sent[64];
	char shown[40];
	size_t n = c->value.len < sizeof(sent) ? c->value.len : sizeof(sent);

	memcpy(sent, c->value.at, n);
	for (; at < c->read_end && *at != '\r' && *at != '\n' && n < sizeof(sent); at++)
		sent[n++] = *at;
	tg_request_head_quote(sent, n, shown, sizeof(shown));
	snprintf(c->parse_message, sizeof(c->parse_message), "Content-Length is \"%s\", "
	         "not one decimal number of bytes such as 1024; send the length of the "
	         "body in bytes, once", shown);
}

/* Return whether llhttp rejected an RTSP method, which it parses, in an
 * HTTP request line. llhttp reports that with the code of an invalid
 * constant, which only its reason text sets apart. */
static int
is_rtsp_method(const struct tg_client *c, llhttp_errno_t rc)
{
	const char *reason = llhttp_get_error_reason(&c->parser);

	return rc == HPE_INVALID_CONSTANT && c->req != NULL && c->req->method != NULL &&
	       reason != NULL && strcmp(reason, "Invalid method for HTTP/x.x request") == 0;
}

static int
is_token_byte(char byte)
{
	return tg_header_name_valid(&byte, 1);
}

/*
 * Judge the method that llhttp rejected with rc, HPE_INVALID_METHOD or an
 * RTSP method (is_rtsp_method()), by tg_request_head_unknown_method(), and
 * log what was sent as the method. An RTSP method was read whole. For
 * another, llhttp stops at the first byte that no method in its table has
 * at that place. The bytes before that one are the start of a method in
 * the table, at most 11 (UNSUBSCRIBE), and the history keeps them when
 * they came in an earlier read. The method's other bytes follow in this
 * read. A method that the end of the read cuts off is judged by its start.
 */
static enum tg_error
judge_unknown_method(struct tg_client *c, llhttp_errno_t rc)
{
	struct tg_request *req = c->req;
	const char *at = llhttp_get_error_pos(&c->parser);
	size_t earlier = req->bytes_in < TG_CLIENT_HISTORY ? req->bytes_in : TG_CLIENT_HISTORY;
	size_t before = (size_t)(at - c->read_start) + earlier;
	char line[TG_REQUEST_METHOD_SHOWN + 16];
	size_t back = 0, n = 0;
	enum tg_error err;

	if (rc != HPE_INVALID_METHOD)
		return tg_request_head_unknown_method(req->method, strlen(req->method),
		                                      req->method_shown, sizeof(req->method_shown),
		                                      c->parse_message, sizeof(c->parse_message));

	while (back < before && back < TG_CLIENT_HISTORY &&
	       is_token_byte(byte_before(c, at, back + 1)))
		back++;
	for (; back > 0; back--)
		line[n++] = byte_before(c, at, back);
	for (; at < c->read_end && n < sizeof(line); at++)
		line[n++] = *at;

	err = tg_request_head_unknown_method(line, n, req->method_shown,
	                                     sizeof(req->method_shown), c->parse_message,
	                                     sizeof(c->parse_message));
	if (err == TG_E_NOT_IMPLEMENTED)
		req->method = req->method_shown;
	return err;
}

/* Give the client a reason for an error llhttp found, where the default
 * message of TG_E_BAD_REQUEST would leave it guessing. */
static void
describe_parser_error(struct tg_client *c, llhttp_errno_t rc)
{
	/* llhttp rejects whatever follows chunked while it reads the header,
	 * before tg_request_head_check_transfer_coding() can run: a coding,
	 * or a bare comma, an empty element that RFC 9110 section 5.6.1 lets
	 * a recipient skip. That check reports every other invalid list. */
	if (rc == HPE_INVALID_TRANSFER_ENCODING)
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "Transfer-Encoding goes on after chunked; chunked must end the "
		         "list, appear once, and have no comma after it");
	/* llhttp reads a target that does not start with "/" or "*" as a URL,
	 * so the authority form ("HOST:PORT") of a method other than CONNECT
	 * ends here, before tg_request_head_origin_form() can run. */
	else if (rc == HPE_INVALID_URL)
		snprintf(c->parse_message, sizeof(c->parse_message), "%s",
		         TG_REQUEST_TARGET_INVALID);
	/* RFC 9112 section 6.3: both framings at once may be a smuggling
	 * attempt, so the request is refused rather than one of them picked.
	 * llhttp gives both cases one code; its flags tell them apart. */
	else if (rc == HPE_UNEXPECTED_CONTENT_LENGTH &&
	         (c->parser.flags & F_TRANSFER_ENCODING))
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "the request has both Content-Length and Transfer-Encoding; "
		         "send only one of them");
	else if (rc == HPE_UNEXPECTED_CONTENT_LENGTH)
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "Content-Length appears more than once; send it once");
	else if (rc == HPE_INVALID_CONTENT_LENGTH && content_length_overflows(c))
		snprintf(c->parse_message, sizeof(c->parse_message),
		         "Content-Length is too large: it is over 18446744073709551615, and a "
		         "request body may have at most %smax_body (%zu bytes)",
		         limits_name(c), client_limits(c)->max_body);
	else if (rc == HPE_INVALID_CONTENT_LENGTH)
		describe_content_length(c);
	else
		describe_framing_error(c, rc);
}

/*
 * Reject a bare LF as the empty line that ends the head or the trailer
 * section of a chunked body. llhttp 8.1 accepts one there, but a server in
 * front that does not would read on into the next request. end is the
 * position after that LF, in the bytes of the current llhttp_execute(),
 * what names the part in the message and err is the error of that part.
 * Returns HPE_PAUSED when the line ends with CRLF, or HPE_USER with the
 * error recorded.
 */
static llhttp_errno_t
check_last_line(struct tg_client *c, const char *end, const char *what, enum tg_error err)
{
	const char *lf = end - 1;
	char before = byte_before(c, lf, 1);

	assert(lf >= c->read_start);
	assert(*lf == '\n');
	if (before == '\r')
		return HPE_PAUSED;
	return parse_fail_with(c, err, "%s ends with a bare LF; end each of its "
	                       "lines, and the empty line after them, with CRLF", what);
}

/* The error that the head of c's request earns before its body is asked
 * for, from c's site or the gateway's routes. */
static enum tg_error
head_refusal(struct tg_client *c)
{
	const struct tg_site *site = c->worker->site;

	if (site != NULL)
		return site->head_refusal(c->req, c->parse_message, sizeof(c->parse_message));
	return tg_request_head_refusal(c->req, c->parse_message, sizeof(c->parse_message));
}

/*
 * At the end of a head read whole and checked, where the parser paused:
 * send 100 Continue if the client waits for it, and resume the parser.
 * A request that the head alone rejects is rejected at once instead, as
 * nginx does, so the client sends no body that would be read for nothing.
 * That is a gateway key missing, unknown, not allowed or over its rate
 * limit, a Content-Encoding on a body the gateway reads, or what a site
 * rejects. Returns 0, or HPE_USER with the error recorded.
 */
static llhttp_errno_t
head_read(struct tg_client *c)
{
	const char *expect = tg_headers_get(&c->req->headers, "Expect");
	enum tg_error err;

	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
	    c->parser.http_minor >= 1) {
		err = head_refusal(c);
		if (err != TG_OK)
			return parse_fail(c, err);
		tg_client_send_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	llhttp_resume(&c->parser);
	return HPE_OK;
}

/* Check the last line before the position where the parser paused: the
 * end of the head, or of a whole request. Returns as check_last_line(). */
static llhttp_errno_t
check_pause(struct tg_client *c)
{
	const char *end = llhttp_get_error_pos(&c->parser);

	if (c->state == TG_CLIENT_BODY)
		return check_last_line(c, end, "the request head", TG_E_BAD_HEADER);
	if (c->parser.flags & F_CHUNKED)
		return check_last_line(c, end, "the chunked request body", TG_E_BAD_CHUNKED_BODY);
	return HPE_PAUSED;
}

/*
 * Run the parser over one piece of input, len bytes at data, and set
 * *consumed to the number of bytes it read. The parser pauses at the end
 * of the head, so that check_pause() learns where the head ends, and goes
 * on over the same bytes: a request without a body then completes even
 * when the head ends the piece. Returns llhttp's code, HPE_PAUSED when a
 * request has been read whole.
 */
static llhttp_errno_t
execute_piece(struct tg_client *c, const char *data, size_t len, size_t *consumed)
{
	const char *at = data;
	llhttp_errno_t rc;

	c->read_start = data;
	c->read_end = data + len;
	for (;;) {
		rc = llhttp_execute(&c->parser, at, (size_t)(c->read_end - at));
		if (rc == HPE_OK) {
			*consumed = len;
			return rc;
		}

		at = llhttp_get_error_pos(&c->parser);
		if (rc == HPE_PAUSED)
			rc = check_pause(c);
		if (rc != HPE_PAUSED || c->state != TG_CLIENT_BODY)
			break;
		rc = head_read(c);
		if (rc != HPE_OK)
			break;
	}
	*consumed = (size_t)(at - data);
	return rc;
}

/*
 * Check the bytes before a request line, in data of len bytes read while
 * no request has begun. llhttp skips any run of CR and LF there. By RFC
 * 9112 section 2.2 a server SHOULD ignore at least one empty line (CRLF)
 * before the request line, and MAY take a bare LF as a line end: both stay
 * allowed. A bare CR is invalid by the same section, which leaves a
 * recipient to refuse it or read it as a space: refused here, as llhttp
 * refuses spaces before the method. A CR that ends one read waits for the
 * next. Returns 0, or HPE_USER with the error recorded.
 */
static int
check_empty_lines(struct tg_client *c, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int bare_cr = c->cr_pending && data[i] != '\n';

		if (bare_cr)
			return parse_fail_with(c, TG_E_BAD_REQUEST, "a CR before the request line "
			                       "is not followed by LF; send only empty lines "
			                       "(CRLF) before it, or none");
		if (data[i] != '\r' && data[i] != '\n')
			break;
		c->cr_pending = data[i] == '\r';
	}
	return 0;
}

/*
 * Check the bytes at the start of a read that llhttp passes to no
 * callback: the empty lines before a request line, and the line end after
 * a version that ended the previous read (see on_version()). Returns 0, or
 * HPE_USER with the error recorded.
 */
static int
check_read_start(struct tg_client *c, const char *data, size_t len)
{
	if (c->req == NULL)
		return check_empty_lines(c, data, len);
	if (!c->version_ends_read)
		return 0;

	c->version_ends_read = 0;
	return data[0] == '\n' ? request_line_bare_lf(c) : 0;
}

/* Read again after client_read_cb() stopped at CLIENT_PIPELINE_MAX. */
static void
resume_read_ahead(struct tg_client *c)
{
	if (!c->read_ahead_full)
		return;
	c->read_ahead_full = 0;
	tg_socket_reader_enable(&c->reader);
}

/* Respond to c's request, read whole: by its site, or by the routes. */
static void
dispatch(struct tg_client *c)
{
	if (c->worker->site != NULL)
		c->worker->site->dispatch(c->req);
	else
		tg_request_dispatch(c->req);
}

/* Record an error that llhttp found, with its reason for the client. It
 * runs before the bytes of the read leave the input and the history, since
 * some reasons quote the bytes where llhttp stopped. */
static void
record_parser_error(struct tg_client *c, llhttp_errno_t rc)
{
	tg_debug("client %s: invalid HTTP request: %s (%s)", c->addr,
	         llhttp_errno_name(rc), llhttp_get_error_reason(&c->parser));
	c->parse_error = parser_error_kind(c);
	describe_parser_error(c, rc);
	if (rc == HPE_INVALID_METHOD || is_rtsp_method(c, rc))
		c->parse_error = judge_unknown_method(c, rc);
}

static void
client_parse(struct tg_client *c)
{
	struct evbuffer *input = bufferevent_get_input(c->bev);

	while (c->state != TG_CLIENT_SERVING && c->state != TG_CLIENT_CLOSING &&
	       evbuffer_get_length(input) > 0) {
		struct evbuffer_iovec chunk;
		llhttp_errno_t rc;
		size_t consumed;

		evbuffer_peek(input, -1, NULL, &chunk, 1);
		if (check_read_start(c, chunk.iov_base, chunk.iov_len) != 0) {
			reject_unreadable_request(c, c->parse_error, c->parse_message);
			return;
		}
		rc = execute_piece(c, chunk.iov_base, chunk.iov_len, &consumed);
		apply_due_timer(c);
		if (rc != HPE_OK && rc != HPE_PAUSED && c->parse_error == TG_OK)
			record_parser_error(c, rc);
		if (c->req != NULL)
			c->req->bytes_in += consumed;

		/* A header line that this chunk cut off goes on in the next one,
		 * so its text leaves the chunk before the chunk is drained. */
		if (rc == HPE_OK &&
		    (tg_header_part_keep(&c->field) != 0 || tg_header_part_keep(&c->value) != 0))
			rc = parse_fail(c, TG_E_INTERNAL);
		remember_history(c, consumed);
		evbuffer_drain(input, consumed);

		if (rc == HPE_OK)
			continue;
		if (rc == HPE_PAUSED) {
			dispatch(c);
			return;
		}
		reject_unreadable_request(c, c->parse_error,
		                          c->parse_message[0] != '\0' ? c->parse_message : NULL);
		return;
	}

	/* The input ran out before a request was read whole: the rest of it
	 * is still to come. */
	if (c->state != TG_CLIENT_CLOSING)
		resume_read_ahead(c);
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct tg_client *c = arg;

	if (c->state == TG_CLIENT_CLOSING) {
		/* Lingering after an error response: discard what still comes. */
		evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	if (c->state == TG_CLIENT_SERVING) {
		/* The parser waits for the response, so the bytes are pipelined
		 * requests: stop reading them past the bound. Until reading
		 * resumes, the end of the connection shows only when a write to
		 * it fails, or at limits.send_timeout. */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > CLIENT_PIPELINE_MAX) {
			tg_socket_reader_disable(&c->reader);
			c->read_ahead_full = 1;
		}
		return;
	}
	if (c->state == TG_CLIENT_IDLE)
		c->state = TG_CLIENT_HEAD;
	client_parse(c);
}

/* Close after an error response without resetting the connection: stop
 * sending, read and discard until the client closes or CLIENT_LINGER_MS. */
static void
client_linger(struct tg_client *c)
{
	c->state = TG_CLIENT_CLOSING;
	if (c->tls) {
		client_free(c);
		return;
	}
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	tg_socket_reader_enable(&c->reader);
	arm_timer(c, CLIENT_LINGER_MS);
}

/* 1 when request bytes have arrived that the parser has not seen yet, in
 * the bufferevent or still in the kernel. */
static int
input_pending(struct tg_client *c)
{
	int kernel_bytes = 0;
	evutil_socket_t fd;

	/* Before the first byte of a TLS connection, only the kernel has any. */
	if (c->bev == NULL)
		fd = event_get_fd(c->sniff);
	else if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		return 1;
	else
		fd = bufferevent_getfd(c->bev);
	return ioctl(fd, FIONREAD, &kernel_bytes) == 0 && kernel_bytes > 0;
}

/* The response of the current request has been written out. */
static void
finish_request(struct tg_client *c)
{
	struct tg_request *req = c->req;

	/* While draining, a request already sent behind this one is still
	 * read, so that it gets a 503 rather than a reset. Only then is the
	 * kernel asked, which saves a system call per request otherwise. */
	int keepalive = req->keepalive && !c->close_after_response &&
	                (!c->worker->draining || input_pending(c));

	c->req = NULL;
	c->response_done = 0;
	tg_request_done(req);

	if (!keepalive) {
		if (c->unread_input)
			client_linger(c);
		else
			client_free(c);
		return;
	}

	c->state = TG_CLIENT_IDLE;
	c->idle_since_ns = tg_now_ns();
	llhttp_resume(&c->parser);

	/* Past the bound, each request read ahead must leave the input
	 * before reading resumes, or each response would let one more read
	 * in and the input would grow by a read per request. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) <= CLIENT_PIPELINE_MAX)
		resume_read_ahead(c);
	arm_timer(c, client_limits(c)->keepalive_timeout);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		c->state = TG_CLIENT_HEAD;
		client_parse(c);
	}
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct tg_client *c = arg;

	assert(c->corked == 0);
	assert(evbuffer_get_length(c->held) == 0);
	if (c->req == NULL)
		return;
	if (c->response_done) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			finish_request(c);
		return;
	}
	tg_relay_client_writable(c->req);
}

static void
client_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct tg_client *c = arg;

	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;

	if (c->tls && tg_tls_handshake_pending(bev)) {
		tg_tls_handshake_failed(c->listener, c->addr, bev, events);
		client_free(c);
		return;
	}
	if (c->req != NULL) {
		int timeout = (events & BEV_EVENT_TIMEOUT) != 0;

		if (timeout)
			tg_log_request(c->req, TG_LOG_WARN, "client accepted no response byte "
			               "for %ssend_timeout; closing", limits_name(c));
		else
			tg_debug("client %s: connection %s during a request", c->addr,
			         (events & BEV_EVENT_EOF) ? "closed" : "failed");
		tg_request_abort(c->req, timeout ? TG_CAUSE_CLIENT_TIMEOUT
		                                 : TG_CAUSE_CLIENT_CLOSED);
		c->req = NULL;
	}
	client_free(c);
}

/* Name the read timeout that ran out, and its value. */
static void
describe_timeout(struct tg_client *c)
{
	const struct tg_site *site = c->worker->site;
	const struct tg_limits *limits = client_limits(c);
	char shown[32];

	if (site != NULL)
		snprintf(c->parse_message, sizeof(c->parse_message), "the client did not send "
		         "the request within %s (%s)", site->timeout_name,
		         tg_format_duration(limits->client_header_timeout, shown, sizeof(shown)));
	else if (c->state == TG_CLIENT_HEAD)
		snprintf(c->parse_message, sizeof(c->parse_message), "the client did not send "
		         "the whole request head within limits.client_header_timeout (%s)",
		         tg_format_duration(limits->client_header_timeout, shown, sizeof(shown)));
	else
		snprintf(c->parse_message, sizeof(c->parse_message), "the client sent no more "
		         "of the request body for limits.client_body_timeout (%s)",
		         tg_format_duration(limits->client_body_timeout, shown, sizeof(shown)));
}

static void
client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_client *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case TG_CLIENT_HEAD:
	case TG_CLIENT_BODY:
		if (c->req != NULL) {
			c->req->cause = TG_CAUSE_CLIENT_TIMEOUT;
			describe_timeout(c);
			reject_unreadable_request(c, TG_E_REQUEST_TIMEOUT, c->parse_message);
			return;
		}
		client_free(c);
		return;
	case TG_CLIENT_IDLE:
		if (c->tls && tg_tls_handshake_pending(c->bev))
			tg_tls_handshake_failed(c->listener, c->addr, c->bev, BEV_EVENT_TIMEOUT);
		client_free(c);
		return;
	case TG_CLIENT_CLOSING:
		client_free(c);
		return;
	case TG_CLIENT_SERVING:
		return;
	}
}

static void
client_free(struct tg_client *c)
{
	struct tg_worker *w = c->worker;

	assert(c->req == NULL);
	TAILQ_REMOVE(&w->clients, c, link);
	tg_socket_reader_release(&c->reader);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	else
		evutil_closesocket(event_get_fd(c->sniff));
	if (c->sniff != NULL)
		event_free(c->sniff);
	SSL_free(c->sniff_ssl);
	event_free(c->timer);
	evbuffer_free(c->held);
	free(c->url);
	tg_header_part_free(&c->field);
	tg_header_part_free(&c->value);
	free(c);
	tg_worker_client_closed(w);
}

static void
format_peer(struct tg_client *c, const struct sockaddr *addr)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

		evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;

		evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(c->ip, sizeof(c->ip), "%s", host);
	snprintf(c->addr, sizeof(c->addr),
	         addr->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

/* The bufferevent of a connection on fd: plain when ssl is NULL, else TLS
 * through ssl, which it then owns (even when it cannot be made). */
static struct bufferevent *
client_bufferevent(struct tg_worker *w, evutil_socket_t fd, SSL *ssl)
{
	struct bufferevent *bev;

	if (ssl == NULL)
		return bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);

	bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* Set the callbacks and timeouts of c's bufferevent, and start reading. */
static void
start_reading(struct tg_client *c)
{
	struct timeval send_timeout;

	tg_socket_reader_init(&c->reader, c->bev, !c->tls);
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, CLIENT_OUTPUT_LOW, 0);

	/* A client that stops reading would otherwise hold this connection
	 * and a paused upstream one for ever. */
	send_timeout = tg_timeval_ms(client_limits(c)->send_timeout);
	bufferevent_set_timeouts(c->bev, NULL, &send_timeout);
	bufferevent_enable(c->bev, EV_WRITE);
	tg_socket_reader_enable(&c->reader);
}

/*
 * Whether byte can be the first of what a TLS client sends. A TLS record
 * starts with its content type, 20 to 24 (RFC 8446 section 5.1; 24 is the
 * heartbeat of RFC 6520). A byte with the high bit set starts the
 * SSLv2-format ClientHello, which OpenSSL accepts for compatibility. An
 * HTTP request starts with a method, and no letter is one of these bytes.
 */
static int
starts_tls(unsigned char byte)
{
	return (byte >= 20 && byte <= 24) || byte >= 0x80;
}

/*
 * The first bytes of a connection to a TLS listener have arrived: go on
 * with TLS, or respond to a plain HTTP request with a plain 400 and close.
 * OpenSSL would fail the handshake and close without a word, and the
 * client would not learn that it should use https://. The byte is only
 * peeked, so that OpenSSL or the parser reads it again.
 */
static void
sniff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_client *c = arg;
	unsigned char first;
	ssize_t n = recv(fd, &first, 1, MSG_PEEK);
	int tls;

	(void)what;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(c->sniff, NULL);
		return;
	}
	if (n <= 0) {
		client_free(c);
		return;
	}

	tls = starts_tls(first);
	c->bev = client_bufferevent(c->worker, fd, tls ? c->sniff_ssl : NULL);
	if (!tls)
		SSL_free(c->sniff_ssl);
	c->sniff_ssl = NULL;
	if (c->bev == NULL) {
		tg_error("client %s: cannot set up the connection: out of memory", c->addr);
		client_free(c);
		return;
	}
	event_free(c->sniff);
	c->sniff = NULL;
	c->tls = tls;
	start_reading(c);

	if (!tls)
		reject_unreadable_request(c, TG_E_PLAIN_HTTP_ON_TLS, NULL);
}

/* Set up the reading of c on fd: at once for a plain listener, and after
 * the first byte for a TLS one (sniff_cb()). Returns 0, or -1 when out of
 * memory. */
static int
client_open(struct tg_client *c, evutil_socket_t fd, SSL_CTX *tls)
{
	if (tls == NULL) {
		c->bev = client_bufferevent(c->worker, fd, NULL);
		return c->bev != NULL ? 0 : -1;
	}

	c->sniff_ssl = SSL_new(tls);
	c->sniff = c->sniff_ssl ? event_new(c->worker->base, fd, EV_READ, sniff_cb, c) : NULL;
	if (c->sniff == NULL) {
		SSL_free(c->sniff_ssl);
		c->sniff_ssl = NULL;
		return -1;
	}
	return 0;
}

void
tg_client_accept(struct tg_worker *w, evutil_socket_t fd,
                 const struct sockaddr *addr, int addrlen, SSL_CTX *tls,
                 struct tg_tls_listener *listener)
{
	struct tg_client *c = calloc(1, sizeof(*c));
	int one = 1;

	(void)addrlen;
	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}

	/* Stream events must not wait for Nagle's algorithm. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	c->worker = w;
	c->tls = tls != NULL;
	c->listener = listener;
	format_peer(c, addr);
	c->timer = evtimer_new(w->base, client_timer_cb, c);
	c->held = c->timer ? evbuffer_new() : NULL;
	if (c->held == NULL || client_open(c, fd, tls) != 0) {
		tg_error("client %s: cannot set up the connection: out of memory", c->addr);
		if (c->timer != NULL)
			event_free(c->timer);
		if (c->held != NULL)
			evbuffer_free(c->held);
		evutil_closesocket(fd);
		free(c);
		return;
	}

	llhttp_init(&c->parser, HTTP_REQUEST, &request_settings);
	c->parser.data = c;
	c->state = TG_CLIENT_IDLE;
	TAILQ_INSERT_TAIL(&w->clients, c, link);
	tg_worker_client_opened(w);

	arm_timer(c, client_limits(c)->client_header_timeout);
	if (c->sniff != NULL)
		event_add(c->sniff, NULL);
	else
		start_reading(c);
}

/* Write the held bytes: straight to a plain socket when nothing is queued
 * before them, the rest through the bufferevent. A failed write leaves the
 * bytes held, so they are queued. The bufferevent then meets the error in
 * its own write and reports it on the next turn of the event loop. */
static void
client_flush(struct tg_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(c->held) == 0)
		return;
	if (!c->tls && evbuffer_get_length(out) == 0)
		(void)evbuffer_write(c->held, bufferevent_getfd(c->bev));
	if (evbuffer_get_length(c->held) > 0)
		evbuffer_add_buffer(out, c->held);
}

/* Make sure the write callback runs once the output is empty, because it
 * ends the request. With the output already empty, no bufferevent write
 * would call it, so it is scheduled on the event loop. */
static void
end_response_when_written(struct tg_client *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

void
tg_client_send(struct tg_client *c, struct evbuffer *data)
{
	evbuffer_add_buffer(c->held, data);
	if (c->corked == 0)
		client_flush(c);
}

void
tg_client_send_bytes(struct tg_client *c, const void *bytes, size_t len)
{
	evbuffer_add(c->held, bytes, len);
	if (c->corked == 0)
		client_flush(c);
}

void
tg_client_cork(struct tg_client *c)
{
	c->corked++;
}

void
tg_client_uncork(struct tg_client *c)
{
	assert(c->corked > 0);
	if (--c->corked > 0)
		return;
	client_flush(c);
	if (c->response_done)
		end_response_when_written(c);
}

struct evbuffer *
tg_client_corked_output(struct tg_client *c)
{
	assert(c->corked > 0);
	return c->held;
}

int
tg_client_output_full(const struct tg_client *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev)) > CLIENT_OUTPUT_HIGH;
}

void
tg_client_response_done(struct tg_client *c)
{
	c->response_done = 1;
	if (c->corked == 0)
		end_response_when_written(c);
}

int
tg_client_close_if_idle(struct tg_client *c)
{
	if (c->req != NULL)
		return 0;

	/* A request sent just before the drain reached this connection would
	 * get a reset. It is read instead, and gets the drain's 503 with
	 * Connection: close. */
	if (input_pending(c)) {
		c->close_after_response = 1;
		return 0;
	}
	client_free(c);
	return 1;
}

/*
 * Write what c still has to send at once, as far as the socket takes it
 * without blocking, for a connection closed next: the event loop would not
 * run again to send it. A TLS connection writes through its SSL object.
 * When libevent has a write in progress there that OpenSSL asked to
 * retry, its bytes start the output. OpenSSL may then refuse this write as
 * a retry from another buffer, and the bytes are lost, as all of them were
 * before.
 */
static void
flush_before_close(struct tg_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len;

	client_flush(c);
	len = evbuffer_get_length(out);
	if (len == 0)
		return;
	if (!c->tls) {
		(void)evbuffer_write(out, bufferevent_getfd(c->bev));
		return;
	}
	(void)SSL_write(bufferevent_openssl_get_ssl(c->bev), evbuffer_pullup(out, -1),
	                len > INT_MAX ? INT_MAX : (int)len);
}

/*
 * Write what the client of a request cut short by the shutdown still gets,
 * so that it can tell the cut from a complete response. A stream in
 * progress gets its error event. A request read whole without a response
 * head out yet, such as one waiting for its upstream's head, gets the 503
 * shutting_down. Either way TG_E_SHUTTING_DOWN becomes the request's error,
 * for the access log, the metrics and the trace. Returns 1 when bytes were
 * written, which the caller flushes before it closes.
 */
static int
write_shutdown_end(struct tg_client *c)
{
	struct tg_request *req = c->req;

	if (tg_relay_cut_stream(req))
		return 1;
	/* A request still being read gets nothing: the bytes it is sending
	 * would make the close a reset, which may discard a response. */
	if (c->state != TG_CLIENT_SERVING || req->response.head_sent)
		return 0;

	req->cause = TG_CAUSE_DRAIN;
	c->close_after_response = 1;
	tg_request_fail(req, TG_E_SHUTTING_DOWN, "the gateway shut down before the response "
	                "started; retry the request");
	return 1;
}

int
tg_client_close_longest_idle(struct tg_worker *w)
{
	struct tg_client *c, *longest = NULL;

	TAILQ_FOREACH(c, &w->clients, link) {
		if (c->state != TG_CLIENT_IDLE || c->idle_since_ns == 0)
			continue;
		if (longest == NULL || c->idle_since_ns < longest->idle_since_ns)
			longest = c;
	}

	/* A request that has started to arrive would get a reset. Its bytes
	 * are read on the next turn of the loop, and a later call picks
	 * another connection. */
	if (longest == NULL || input_pending(longest))
		return 0;
	tg_debug("client %s: closing this idle keep-alive connection for a new one at "
	         "the connection limit", longest->addr);
	client_free(longest);
	return 1;
}

void
tg_client_close(struct tg_client *c, int cause)
{
	if (c->req != NULL) {
		if (cause == TG_CAUSE_DRAIN && write_shutdown_end(c))
			flush_before_close(c);
		tg_request_abort(c->req, (enum tg_cause)cause);
		c->req = NULL;
	}
	client_free(c);
}
