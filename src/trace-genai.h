/*
 * OpenTelemetry GenAI attributes of an upstream attempt's CLIENT span, read
 * from the OpenAI-shaped request body, the response body or each event of
 * a streamed response. Only what the upstream reported is recorded: no
 * token count is estimated.
 *
 * Message content (gen_ai.input.messages, gen_ai.output.messages) is
 * recorded only when capture is on. It is read from the request body as
 * it is sent upstream and from the response as it is relayed, so callers
 * must call these functions after any filter that masks content has run.
 */
#ifndef TOLLGATE_TRACE_GENAI_H
#define TOLLGATE_TRACE_GENAI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "reply-digest.h"
#include "request-scan.h"
#include "trace-t.h"

/* Output text captured from a streamed or buffered response. */
struct tg_content_capture {
	char **texts;           /* per choice index; NULL when none came */
	size_t *lengths;
	size_t n_choices;
	size_t budget;          /* bytes of text that may still be kept */
	int truncated;
};

/* The shape of an endpoint's bodies, which decides how a span reads them. */
enum tg_genai_shape {
	TG_GENAI_OPENAI,        /* OpenAI's chat, completions and embeddings */
	TG_GENAI_ANTHROPIC,     /* Anthropic's Messages API */
};

/*
 * An endpoint the gateway traces as a GenAI call: its path, its
 * gen_ai.operation.name ("chat", "text_completion", "embeddings") and its
 * gen_ai.provider.name ("openai", "anthropic"). The strings are literals
 * that need no JSON escape (a unit test checks it), so that a span may
 * point to them with tg_attrs_static_plain() instead of copying and
 * checking them on every request.
 */
struct tg_genai_endpoint {
	const char *path;
	size_t path_len;
	const char *operation;
	size_t operation_len;
	const char *provider;
	size_t provider_len;
	enum tg_genai_shape shape;
};

/* The endpoint whose path is path, or NULL for other paths. */
const struct tg_genai_endpoint *tg_genai_endpoint(const char *path);

/*
 * Set the request attributes on span: the endpoint's operation and
 * provider, model (the name sent upstream), stream, and the parameters of
 * the body (max tokens, temperature, top_p, top_k, stop, seed, penalties,
 * choice count, output type, and the dimensions and encoding format of
 * embeddings). The parameters come from the scan of the body or from its tree
 * (request-scan.h), so that a request needs no tree for them.
 */
void tg_genai_request(struct tg_span *span, const struct tg_genai_endpoint *endpoint,
                      const char *model, int stream, const struct tg_request_params *params);

/* Set gen_ai.input.messages on span from body, the request's tree as it
 * goes upstream, with at most max_content bytes of message text. */
void tg_genai_input_messages(struct tg_span *span, json_t *body, size_t max_content);

/*
 * Set the attributes of an Anthropic Messages request body that the scan
 * of the body does not read: "stop_sequences", since the scan reads
 * OpenAI's "stop", and the output type of "output_config". When capture is set, the messages become
 * gen_ai.input.messages, their content blocks parts (text, tool_call,
 * tool_call_response), and "system" becomes gen_ai.system_instructions,
 * each with at most max_content bytes of text.
 */
void tg_genai_anthropic_request(struct tg_span *span, json_t *body, int capture,
                                size_t max_content);

/* Start capturing output text for the tree's current attempt, with at most
 * max_content bytes. Returns 0, or -1 when out of memory. */
int tg_genai_capture_output(struct tg_trace *t, size_t max_content);

/* A whole (non-streamed) response body of the current attempt. */
void tg_genai_response(struct tg_trace *t, struct tg_span *span, json_t *body);

/*
 * The same two for Anthropic's Messages API, which the reply detail does
 * not read. They record the id and model (of the body, or of
 * message_start's "message"), stop_reason as the one finish reason,
 * content blocks as output, and usage under the GenAI names.
 * gen_ai.usage.input_tokens counts cache reads and writes too, as the
 * conventions and the gateway's metrics do. The parts go to
 * gen_ai.usage.cache_read.input_tokens and
 * gen_ai.usage.cache_creation.input_tokens.
 */
void tg_genai_anthropic_response(struct tg_trace *t, struct tg_span *span, json_t *body);
void tg_genai_anthropic_event(struct tg_trace *t, struct tg_span *span, json_t *event,
                              uint64_t now_mono, uint64_t start_mono);

/*
 * Record one event of a streamed response of the current attempt, received
 * at now_mono after the attempt started at start_mono. The first event sets
 * gen_ai.response.time_to_first_chunk, and the first with content adds the
 * first-token event. Id, model, finish reasons and usage are read as they
 * come. chunk is the event's data parsed as JSON, or NULL.
 */
void tg_genai_stream_event(struct tg_trace *t, struct tg_span *span, json_t *chunk,
                           uint64_t now_mono, uint64_t start_mono);

/*
 * The same two from the digest and the usable detail of the body or of
 * the event's data (tg_reply_digest_detail), which cost a fraction of a
 * tree. Both ways set the same attributes for every text but the few that
 * reply-digest.h names. A text whose detail is not usable goes to the
 * tree functions, which decide. Output text is not read, so call these
 * only while no output is captured (t->output is NULL).
 */
void tg_genai_response_detail(struct tg_trace *t, struct tg_span *span,
                              const struct tg_reply_digest *d,
                              const struct tg_reply_detail *x);
void tg_genai_stream_detail(struct tg_trace *t, struct tg_span *span,
                            const struct tg_reply_digest *d, const struct tg_reply_detail *x,
                            uint64_t now_mono, uint64_t start_mono);

/*
 * Record the finish reasons of body as the upstream sent it, before a
 * content filter rewrote them (a block makes them "content_filter", or an
 * Anthropic stop_reason "refusal"): each choice's "finish_reason", or an
 * Anthropic message's "stop_reason", or that of a message_delta's
 * "delta". With keep set, the readers of the body as the client got it
 * record no finish reason for the rest of the attempt. The same from the
 * usable detail x of a stream event, which keeps nothing.
 */
void tg_genai_upstream_finish(struct tg_trace *t, json_t *body, int keep);
void tg_genai_upstream_finish_detail(struct tg_trace *t, const struct tg_reply_detail *x);

/* The attempt's response is complete: set the finish reasons and the
 * captured output messages. */
void tg_genai_attempt_done(struct tg_trace *t, struct tg_span *span);

/* Forget what the previous attempt's response showed. */
void tg_genai_attempt_reset(struct tg_trace *t);

#endif
