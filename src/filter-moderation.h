/*
 * Calls to classifier services for moderation filters, through the
 * upstream module (so TLS, pooling and the backend's timeouts apply), with
 * the filter's own timeout on top.
 */
#ifndef TOLLGATE_FILTER_MODERATION_H
#define TOLLGATE_FILTER_MODERATION_H

#include "filter-t.h"

struct tg_worker;
struct tg_text_list;
struct tg_moderation_call;

enum tg_moderation_verdict {
	TG_VERDICT_SAFE,
	TG_VERDICT_FLAGGED,
	TG_VERDICT_ERROR,       /* failed, timed out or unreadable */
};

/* The end of a call. category is the configured threshold that was
 * reached, a Llama Guard code such as "S1", "flagged" or "unsafe"; it is a
 * static or config string. detail tells what failed, for the log. */
typedef void tg_moderation_done_fn(void *arg, const struct tg_filter *f,
                                   enum tg_moderation_verdict verdict,
                                   const char *category, const char *detail);

/*
 * Ask f's classifier about texts, on worker w; request_id goes upstream in
 * X-Request-Id. done is called exactly once, later, from the event loop,
 * unless the call is cancelled first; the call is freed before done runs.
 * Returns NULL when the call could not start (done is not called then),
 * with *failure set to why.
 */
struct tg_moderation_call *tg_moderation_start(struct tg_worker *w,
                                               const struct tg_filter *f,
                                               const struct tg_text_list *texts,
                                               const char *request_id,
                                               tg_moderation_done_fn *done, void *arg,
                                               const char **failure);

/* Stop a call whose done has not run; done will not run. */
void tg_moderation_cancel(struct tg_moderation_call *c);

/*
 * Read a classifier's response body to a call about n_inputs texts
 * (exposed for the unit tests). Returns the verdict; *category as for
 * tg_moderation_done_fn. For TG_VERDICT_ERROR, why (of why_size bytes)
 * says what was wrong: a body that is not JSON, the JSON path of a member
 * that is missing or of the wrong type, or a count of results other than
 * n_inputs.
 */
enum tg_moderation_verdict tg_moderation_parse(const struct tg_filter *f, const char *body,
                                               size_t len, size_t n_inputs,
                                               const char **category, char *why,
                                               size_t why_size);

#endif
