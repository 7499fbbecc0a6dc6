/*
 * Checks of a client request head that llhttp leaves to the server. They
 * run once the head is complete, before any body byte is read, and do no
 * I/O, so the unit tests drive them directly.
 */
#ifndef TOLLGATE_REQUEST_HEAD_H
#define TOLLGATE_REQUEST_HEAD_H

#include <stddef.h>

#include "errors.h"
#include "headers.h"

/* The reason given for a request target in none of the forms served. */
#define TG_REQUEST_TARGET_INVALID "the request target is neither a path such as " \
	"/v1/chat/completions nor a valid http:// or https:// URL"

/* The reason given for a header line whose name is empty, which llhttp
 * 8.1 lets through (tg_request_head_name_valid()). */
#define TG_REQUEST_HEADER_NAME_EMPTY "a header line of the request has an empty " \
	"name (it starts with \":\"); send each header as NAME: VALUE, with a name such " \
	"as Content-Type"

/* Maximum length of the name of a method the gateway does not implement,
 * as the access log and the 501 show it. */
#define TG_REQUEST_METHOD_SHOWN 32

/*
 * Reduce the request target to the origin form (path, then "?" and the query
 * if any) that routes match, the access log shows and the upstream request
 * line carries after the backend's path prefix. method is the request's
 * method name. The forms of RFC 9112 section 3.2:
 *   origin form, "/PATH[?QUERY]"      kept as it is; a fragment ("#") is
 *                                     rejected
 *   absolute form, "http://HOST/PATH"  its path and query, "/" for an empty
 *                                     path; the scheme must be http or https
 *                                     and the host not empty, and user
 *                                     information or a fragment is rejected
 *   asterisk form, "*"                kept for OPTIONS, rejected otherwise;
 *                                     dispatch responds to OPTIONS * with 404
 * The path must then pass tg_request_head_check_path().
 * The authority of an absolute-form target replaces Host (section 3.2.2),
 * but routing ignores both, and the upstream gets the backend's Host.
 * Authority form ("HOST:PORT") belongs to CONNECT, and llhttp rejects it for
 * any other method before this check runs. CONNECT itself is not served.
 * Returns TG_OK with *origin set to a string the caller frees,
 * TG_E_BAD_REQUEST or TG_E_NOT_IMPLEMENTED (CONNECT) with the reason for the
 * client in message, or TG_E_INTERNAL when out of memory.
 */
enum tg_error tg_request_head_origin_form(const char *target, const char *method,
                                          char **origin, char *message, size_t size);

/*
 * Check path, an origin-form target with or without a query. Every byte
 * of it must be one that RFC 3986 allows in a path or a query. The path,
 * up to a "?" if any, must be in the normal form that routes compare.
 * tg_request_head_origin_form() checks each request's path so, and
 * request-head.c lists the rules above check_target_bytes() and
 * check_path_normal(). Returns TG_OK, or TG_E_BAD_REQUEST with the reason
 * for the client in message.
 */
enum tg_error tg_request_head_check_path(const char *path, char *message, size_t size);

/* The path prefix of one model of the model list, GET /v1/models/ID. */
#define TG_MODEL_PATH "/v1/models/"

/*
 * 1 when a request of method (a name, such as "GET") to path is one the
 * gateway serves from its model list: GET or HEAD of /v1/models/ID. Such
 * a request is never forwarded.
 */
int tg_request_head_names_model(const char *method, const char *path);

/*
 * Judge the method of a request line that llhttp refused with
 * HPE_INVALID_METHOD (a method it does not know, or not a method at all),
 * or with "Invalid method for HTTP/x.x request" (an RTSP method). line
 * contains the first len bytes of the request line, as many as the caller
 * has: they may end inside the method. Returns
 *   TG_E_NOT_IMPLEMENTED  when line starts with a token (RFC 9110 section
 *                         5.6.2) that a space or the end of line ends,
 *                         and llhttp reads the rest of the line as valid
 *                         after a method it parses: a method the gateway
 *                         does not implement, to which section 9.1 gives
 *                         501. Its first
 *                         TG_REQUEST_METHOD_SHOWN bytes go to method,
 *                         NUL-terminated, and are named in message.
 *   TG_E_BAD_REQUEST      otherwise, with method empty and the start of
 *                         line quoted in message.
 * method_size is at least TG_REQUEST_METHOD_SHOWN + 1.
 */
enum tg_error tg_request_head_unknown_method(const char *line, size_t len, char *method,
                                             size_t method_size, char *message,
                                             size_t size);

/*
 * Write len bytes from a client, which may be anything, into out as text
 * that a message can quote: printable ASCII as it is, other bytes, the
 * double quote and the backslash as \xHH. What does not fit into size
 * bytes is cut, and "..." ends the text then. out is NUL-terminated, and
 * size is at least 8.
 */
void tg_request_head_quote(const char *bytes, size_t len, char *out, size_t size);

/*
 * Check a header name that llhttp accepted, for what llhttp 8.1 lets
 * through: an empty name, which is not a token. Built strict, llhttp itself
 * rejects every name byte that is not a token character (RFC 9110 section
 * 5.6.2), a space before the colon too, which RFC 9112 section 5.1 requires
 * a server to reject. In a value it rejects every control character except
 * HTAB, so CR, LF and NUL too. check_request_head tests both, so that an
 * llhttp that checks less fails there. Returns 1 when the name is valid.
 */
int tg_request_head_name_valid(const char *name, size_t len);

/*
 * Check the Host header lines as RFC 9112 section 3.2 requires: exactly one
 * in an HTTP/1.1 request, at most one in an HTTP/1.0 request, and a value
 * that is uri-host[:port] or empty (RFC 9110 section 7.2). Returns TG_OK,
 * TG_E_BAD_REQUEST with the reason for the client in message, or
 * TG_E_INTERNAL when out of memory.
 */
enum tg_error tg_request_head_check_host(const struct tg_headers *h, int http_major,
                                         int http_minor, char *message, size_t size);

/*
 * Check the Transfer-Encoding header lines, read together as one list. The
 * gateway decodes only chunked, so the list must be absent or be chunked
 * alone. Returns TG_OK, or the error with the reason for the client in
 * message:
 *   TG_E_BAD_REQUEST       any Transfer-Encoding in a request older than
 *                          HTTP/1.1, whose framing RFC 9112 section 6.1
 *                          calls faulty, a coding name that is not a token,
 *                          chunked with parameters or more than once, or a
 *                          list that does not end with chunked, whose body
 *                          length cannot be known (RFC 9112 section 6.3)
 *   TG_E_TRANSFER_CODING   a coding other than chunked before the final
 *                          chunked, named in message (section 6.1)
 * llhttp frames the body by the same header, as chunked only when chunked
 * ends the list, so a list accepted here is never framed another way.
 */
enum tg_error tg_request_head_check_transfer_coding(const struct tg_headers *h,
                                                    int http_major, int http_minor,
                                                    char *message, size_t size);

#endif
