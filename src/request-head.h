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

#endif
