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

/*
 * Check the Host header lines as RFC 9112 section 3.2 requires: exactly one
 * in an HTTP/1.1 request, at most one in an HTTP/1.0 request. Returns TG_OK,
 * or TG_E_BAD_REQUEST with the reason for the client in message.
 */
enum tg_error tg_request_head_check_host(const struct tg_headers *h, int http_major,
                                         int http_minor, char *message, size_t size);

/*
 * Check the Transfer-Encoding header lines, read together as one list. The
 * gateway decodes only chunked, so the list must be absent or be chunked
 * alone. Returns TG_OK, or the error with the reason for the client in
 * message:
 *   TG_E_BAD_REQUEST       a coding name that is not a token, chunked with
 *                          parameters or more than once, or a list that
 *                          does not end with chunked, whose body length
 *                          cannot be known (RFC 9112 section 6.3)
 *   TG_E_TRANSFER_CODING   a coding other than chunked before the final
 *                          chunked, named in message (section 6.1)
 * llhttp frames the body by the same header, as chunked only when chunked
 * ends the list, so a list accepted here is never framed another way.
 */
enum tg_error tg_request_head_check_transfer_coding(const struct tg_headers *h,
                                                    char *message, size_t size);

#endif
