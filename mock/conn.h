/*
 * One client connection: reads requests with llhttp and writes each planned
 * response on the schedule its options ask for.
 */
#ifndef TOLLGATE_MOCK_CONN_H
#define TOLLGATE_MOCK_CONN_H

#include <event2/util.h>

#include "mock.h"

/* Take over an accepted socket (plain, or TLS when m->ssl_ctx is set).
 * On failure the socket is closed and an error is logged. */
void conn_accept(struct mock *m, evutil_socket_t fd);

/* Close every open connection at once, as at shutdown. */
void conn_close_all(struct mock *m);

#endif
