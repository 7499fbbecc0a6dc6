/*
 * Generated OpenAI responses. Content depends only on the options and the
 * request, never on time or on earlier requests, so a test can compare a
 * direct response with one relayed by the gateway. Only "id" (numbered per
 * response) and "created" (the clock) vary.
 */
#ifndef TOLLGATE_MOCK_GENERATE_H
#define TOLLGATE_MOCK_GENERATE_H

#include <stdint.h>

#include <jansson.h>

#include "options.h"
#include "response.h"

/* Inputs every generator needs besides the request body. */
struct generate_context {
	const char *model;              /* request model without "@options" */
	const struct mock_options *options;
	uint64_t seq;                   /* response number, for ids */
	long long created;              /* Unix time for "created" */
};

/* Each generator fills r from the request body; a request the real API
 * would reject gets a 400 in r. They return -1 only when out of memory. */
int generate_chat(struct mock_response *r, json_t *request,
                  const struct generate_context *ctx);
int generate_completion(struct mock_response *r, json_t *request,
                        const struct generate_context *ctx);
int generate_embeddings(struct mock_response *r, json_t *request,
                        const struct generate_context *ctx);
/* POST /v1/moderations: each input is flagged when it holds FLAG-ME. */
int generate_moderations(struct mock_response *r, json_t *request,
                         const struct generate_context *ctx);

/* GET /v1/models, or one model's entry when id is not NULL. */
int generate_models(struct mock_response *r, const char *id,
                    long long created);

#endif
