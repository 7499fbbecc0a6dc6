/*
 * Recorded exchanges (go-vcr YAML cassettes) replayed by fixture=NAME.
 */
#ifndef TOLLGATE_MOCK_FIXTURE_H
#define TOLLGATE_MOCK_FIXTURE_H

#include <stddef.h>

/* The parts of interactions[0].response that the mock replays, and the
 * body of the request recorded with it, which tests read. */
struct fixture {
	int code;
	char *content_type;     /* "application/json" when none was recorded */
	char *body;
	size_t body_len;
	char *request_body;     /* "" when none was recorded */
	size_t request_body_len;
};

struct fixture_cache;

/*
 * Return the fixture NAME.yaml from dir, loading it on first use and keeping
 * it for the life of the process (fixtures do not change during a test run).
 * Returns NULL with the reason in err when the file is missing or is not a
 * cassette with a response body and code.
 */
const struct fixture *fixture_get(struct fixture_cache **cache,
                                  const char *dir, const char *name,
                                  char *err, size_t err_size);

/* Nonzero when the fixture contains a server-sent event stream. */
int fixture_is_stream(const struct fixture *f);

void fixture_cache_free(struct fixture_cache *cache);

#endif
