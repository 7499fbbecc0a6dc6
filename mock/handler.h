/*
 * From a parsed request to a planned response: routing, behaviour options,
 * fixtures, generation and the /_mock/ introspection endpoints.
 */
#ifndef TOLLGATE_MOCK_HANDLER_H
#define TOLLGATE_MOCK_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "mock.h"
#include "options.h"
#include "response.h"

struct mock_header {
	char *name;             /* lower-case */
	char *value;
};

struct mock_request {
	uint64_t connection;
	char *method;
	char *target;           /* path and query as sent */
	struct mock_header *headers;
	size_t n_headers, headers_cap;
	struct evbuffer *body;
};

/* The response to send and the options that shape its writing. */
struct mock_plan {
	struct mock_response *response;
	struct mock_options options;    /* after model suffix and header */
	int counted;                    /* not a /_mock/ request */
};

/* Return the value of the first header called name (lower-case), or NULL. */
const char *mock_request_header(const struct mock_request *req,
                                const char *name);

/* Whether req counts in the statistics: every request not for /_mock/. */
int mock_request_counted(const struct mock_request *req);

/*
 * Fill plan for req; counts and logs the request unless it is for /_mock/.
 * Returns 0, or -1 when out of memory (the connection then closes).
 */
int mock_handle(struct mock *m, struct mock_request *req,
                struct mock_plan *plan);

#endif
