/*
 * Checks of a client request head that llhttp leaves to the server.
 */
#include <stdio.h>

#include "request-head.h"

enum tg_error
tg_request_head_check_host(const struct tg_headers *h, int http_major, int http_minor,
                           char *message, size_t size)
{
	size_t n_host = tg_headers_count(h, "Host");
	int host_required = http_major > 1 || (http_major == 1 && http_minor >= 1);

	if (n_host > 1) {
		snprintf(message, size, "the request has %zu Host headers; send exactly one",
		         n_host);
		return TG_E_BAD_REQUEST;
	}
	if (n_host == 0 && host_required) {
		snprintf(message, size, "the HTTP/%d.%d request has no Host header, which "
		         "HTTP/1.1 requires; send one with the host the request is for",
		         http_major, http_minor);
		return TG_E_BAD_REQUEST;
	}
	return TG_OK;
}
