/*
 * Content filters on the request path.
 *
 * Request side: regex and plugin filters run at once, in route order; then
 * the moderation filters run in parallel, and the request goes on when the
 * last one has replied (or is rejected at the first that blocks). Response
 * side: non-streaming bodies are filtered whole, streams event by event
 * through filter-stream.c. Classifier filters do not run on streams.
 * A request body, and a non-streaming response body, is scanned without a
 * tree first, and its jansson tree is built only when a filter matches
 * (or a plugin or moderation filter applies).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "filter-moderation.h"
#include "filter-request.h"
#include "filter-stream.h"
#include "filter.h"
#include "json-splice.h"
#include "json-writer.h"
#include "log.h"
#include "relay.h"
#include "request.h"
#include "trace.h"
#include "worker.h"

struct tg_filter_state {
	struct tg_filter_log log;
	struct tg_scan scan;
	struct tg_text_list texts;      /* of the request, while calls run */
	int changed;                    /* the request body was masked */

	struct tg_moderation_call **calls;
	const struct tg_filter **call_filters;  /* the filter of each call */
	size_t n_calls;                 /* slots used; finished ones are NULL */
	size_t n_running;
	tg_filter_next_fn *next;

	struct tg_filter_stream *stream;
	int stream_none;                /* no response filter applies to streams */
	tg_filter_send_fn *send;
	int response_blocked;
	int response_checked;           /* tg_filter_response_checked() */
};

static const struct tg_filter_chain *
route_chain(const struct tg_request *req)
{
	const struct tg_route_filters_config *rf = req->route ? req->route->filters : NULL;

	return rf != NULL && rf->chain.n > 0 ? &rf->chain : NULL;
}

static struct tg_filter_state *
state_of(struct tg_request *req)
{
	if (req->filters == NULL) {
		req->filters = calloc(1, sizeof(*req->filters));
		if (req->filters != NULL)
			tg_scan_init(&req->filters->scan);
	}
	return req->filters;
}

const struct tg_filter_log *
tg_filter_decisions(const struct tg_request *req)
{
	return req->filters != NULL ? &req->filters->log : NULL;
}

void
tg_filter_request_done(struct tg_request *req)
{
	struct tg_filter_state *st = req->filters;

	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n_calls; i++) {
		if (st->calls[i] != NULL)
			tg_moderation_cancel(st->calls[i]);
	}
	free(st->calls);
	free(st->call_filters);
	tg_text_list_free(&st->texts);
	tg_filter_stream_free(st->stream);
	tg_scan_free(&st->scan);
	tg_filter_log_free(&st->log);
	free(st);
	req->filters = NULL;
}

/* Outcome of the scan of a body without a tree. */
enum body_scan {
	SCAN_CLEAN,             /* read whole: no regex filter matched a text */
	SCAN_MATCH,             /* a filter matched a text */
	SCAN_FAILED,            /* a scan failed (tg_scan_describe_error) */
	SCAN_UNREAD,            /* not scanned: yajl cannot read the body, its
	                           top level is not an object, or a plugin
	                           filter must classify every text */
	SCAN_NONE,              /* no filter checks this side */
};

struct probe {
	const struct tg_filter_chain *chain;
	enum tg_side side;
	struct tg_scan *scan;
	int rc;                 /* of the last tg_filter_text_matches() */
};

static int
probe_text(void *arg, const char *text, size_t len)
{
	struct probe *p = arg;

	p->rc = tg_filter_text_matches(p->chain, p->side, text, len, p->scan);
	return p->rc != 0;
}

/* --- request side ------------------------------------------------------- */

static void
answer_blocked(struct tg_request *req, const struct tg_filter *f, const char *rule)
{
	struct evbuffer *body = evbuffer_new();

	tg_log_request(req, TG_LOG_INFO, "request rejected by content filter %s (%s)",
	               f->name, rule ? rule : "classifier error");
	req->error = TG_E_CONTENT_FILTER;
	req->cause = TG_CAUSE_GATEWAY;
	req->phase = TG_PHASE_LOCAL;
	if (body != NULL && tg_filter_error_body(body, tg_request_error_shape(req), f, rule) != 0) {
		evbuffer_free(body);
		body = NULL;
	}
	tg_relay_local_response(req, 400, NULL, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* Replace body with text. Returns 0, or -1 when out of memory. */
static int
replace_body(struct evbuffer *body, const char *text, size_t len)
{
	evbuffer_drain(body, evbuffer_get_length(body));
	return evbuffer_add(body, text, len);
}

/* Replace the body that goes upstream with len bytes of text. */
static int
replace_request_body(struct tg_request *req, const char *text, size_t len)
{
	if (replace_body(req->body, text, len) != 0)
		return -1;
	req->body_len = len;
	return 0;
}

/* Write the whole tree, when the masked texts cannot be spliced into the
 * client's bytes. */
static int
dump_body(struct tg_request *req)
{
	char *text = json_dumps(tg_request_json(req), JSON_COMPACT);
	int rc;

	if (text == NULL)
		return -1;
	rc = replace_request_body(req, text, strlen(text));
	free(text);
	return rc;
}

/*
 * Write the masked texts of the tree into the body that goes upstream,
 * each in place of the original text, and every other byte as the client
 * sent it (json-splice.h). A dump of the tree would change the form of
 * numbers (0.7 into 0.69999999999999996), and the escapes of every string.
 */
static int
rewrite_body(struct tg_request *req)
{
	const char *raw = (const char *)evbuffer_pullup(req->body, -1);
	struct tg_json_writer out;
	int rc = tg_splice_tree(raw, req->body_len, tg_request_json(req), &out);

	if (rc == TG_SPLICE_UNPAIRED) {
		tg_log_request(req, TG_LOG_WARN, "cannot splice the masked texts into the body as "
		               "sent, because its values do not match the parsed body; sending "
		               "the body written again from the parsed body instead");
		return dump_body(req);
	}
	if (rc == 0)
		rc = replace_request_body(req, out.data, out.len);
	tg_json_writer_free(&out);
	return rc;
}

/* Every filter let the request through: on to next. */
static void
pass_request(struct tg_request *req, tg_filter_next_fn *next)
{
	struct tg_filter_state *st = req->filters;

	tg_text_list_free(&st->texts);
	if (st->changed && rewrite_body(req) != 0) {
		tg_request_fail(req, TG_E_INTERNAL, NULL);
		return;
	}
	next(req);
}

static void cancel_calls(struct tg_filter_state *st);

/* How often a moderation filter's failures are logged at most: an outage
 * of its classifier fails every request, and the access log records each
 * one ("error": true in its decisions). */
#define FAILURE_LOG_INTERVAL_MS 5000

/* Log that f's classifier failed for req (detail says how), and what
 * on_error does about it, within FAILURE_LOG_INTERVAL_MS. */
static void
log_classifier_failure(struct tg_request *req, const struct tg_filter *f, const char *detail)
{
	uint64_t skipped;
	char more[96] = "";

	if (!tg_log_limit_take(f->moderation.failure_log, FAILURE_LOG_INTERVAL_MS, &skipped))
		return;
	if (skipped > 0)
		snprintf(more, sizeof(more), " (and %llu more failures of this filter since the "
		         "last message)", (unsigned long long)skipped);
	tg_log_request(req, TG_LOG_WARN, "moderation filter %s failed: %s; %s%s", f->name,
	               detail, f->on_error_block ? "on_error is block, so the request is "
	               "rejected" : "on_error is allow, so the request goes on", more);
}

static void
on_moderation_done(void *arg, const struct tg_filter *f, enum tg_moderation_verdict v,
                   const char *category, const char *detail)
{
	struct tg_request *req = arg;
	struct tg_filter_state *st = req->filters;
	enum tg_filter_action action = f->action;
	int error = v == TG_VERDICT_ERROR;

	/* The call freed itself; a route lists each filter once, so the
	 * filter finds its slot. */
	for (size_t i = 0; i < st->n_calls; i++) {
		if (st->call_filters[i] == f)
			st->calls[i] = NULL;
	}
	st->n_running--;

	if (error) {
		action = f->on_error_block ? TG_ACTION_BLOCK : TG_ACTION_FLAG;
		log_classifier_failure(req, f, detail ? detail : "no detail");
	}
	if (v != TG_VERDICT_SAFE)
		tg_filter_log_add(&st->log, f, category, action, TG_SIDE_REQUEST, error);

	if (v != TG_VERDICT_SAFE && action == TG_ACTION_BLOCK) {
		cancel_calls(st);
		answer_blocked(req, f, category);
		return;
	}
	if (st->n_running == 0)
		pass_request(req, st->next);
}

static void
cancel_calls(struct tg_filter_state *st)
{
	for (size_t i = 0; i < st->n_calls; i++) {
		if (st->calls[i] != NULL)
			tg_moderation_cancel(st->calls[i]);
		st->calls[i] = NULL;
	}
	st->n_running = 0;
}

/*
 * Start the moderation filters of chain that check requests, and return
 * how many started. A filter whose call could not start counts as a failed
 * call at once, so *blocked is set when its on_error blocks.
 */
static size_t
start_calls(struct tg_request *req, const struct tg_filter_chain *chain,
            const struct tg_filter **blocked)
{
	struct tg_filter_state *st = req->filters;

	st->calls = calloc(chain->n, sizeof(*st->calls));
	st->call_filters = calloc(chain->n, sizeof(*st->call_filters));
	if (st->calls == NULL || st->call_filters == NULL)
		return 0;
	for (size_t i = 0; i < chain->n && *blocked == NULL; i++) {
		const struct tg_filter *f = chain->filters[i];
		struct tg_moderation_call *c;
		const char *failure;

		if (f->type != TG_FILTER_MODERATION || !(f->apply_to & TG_SIDE_REQUEST))
			continue;
		c = tg_moderation_start(req->worker, f, &st->texts, req->id, on_moderation_done, req,
		                        &failure);
		if (c != NULL) {
			st->call_filters[st->n_calls] = f;
			st->calls[st->n_calls++] = c;
			st->n_running++;
			continue;
		}
		log_classifier_failure(req, f, failure);
		tg_filter_log_add(&st->log, f, NULL, f->on_error_block ? TG_ACTION_BLOCK
		                                                       : TG_ACTION_FLAG,
		                  TG_SIDE_REQUEST, 1);
		if (f->on_error_block)
			*blocked = f;
	}
	return st->n_running;
}

/* Probe the texts that the dispatch's scan kept, as tg_text_read_request()
 * would read them: returns 0 when every text was probed, 1 when one
 * stopped the probe. */
static int
probe_spans(struct tg_request *req, struct probe *p)
{
	const struct tg_text_spans *texts = &req->scanned.texts;
	const char *body = (const char *)evbuffer_pullup(req->body, -1);

	for (size_t i = 0; i < texts->n; i++) {
		if (probe_text(p, tg_text_span_bytes(texts, i, body), texts->items[i].len) != 0)
			return 1;
	}
	return 0;
}

/*
 * Screen the texts of a request body with the regex filters, read with
 * yajl, when the dispatch's scan found that jansson would read the body
 * alike (request-scan.h) and so left its tree unbuilt. The scan kept the
 * texts when a route of the config has a regex filter on the request
 * side. Otherwise they are read in a pass of their own. Building the tree
 * cost about 15,000 instructions for the benchmark's 73-byte chat request
 * (callgrind, bench/post.lua), and most requests match nothing, so they
 * pass without a tree. A match, a rule that failed, or a plugin or
 * moderation filter takes the tree path, which decides and logs exactly
 * as it did before this screen: the screen records nothing. The rule that
 * failed goes there too because a block by another text stops the tree
 * path before it runs that rule.
 */
static enum body_scan
screen_without_tree(struct tg_request *req, const struct tg_filter_chain *chain)
{
	unsigned types = tg_filter_types(chain, TG_SIDE_REQUEST);
	struct probe p = {chain, TG_SIDE_REQUEST, &req->filters->scan, 0};
	int rc;

	if (types == 0)
		return SCAN_NONE;
	if (types != 1u << TG_FILTER_REGEX || !req->body_json_pending)
		return SCAN_UNREAD;
	/* The dispatch's scan read the body whole as JSON, so a body whose
	 * bytes show that no rule can match passes, as the probe would pass it. */
	if (tg_filter_body_unmatched(chain, TG_SIDE_REQUEST, req->body))
		return SCAN_CLEAN;
	if (req->scanned.read_texts)
		rc = probe_spans(req, &p);
	else
		rc = tg_text_read_request(req->body, probe_text, &p);
	if (rc == 0)
		return SCAN_CLEAN;
	if (rc < 0 || p.rc < 0)
		return SCAN_UNREAD;
	return SCAN_MATCH;
}

/* The first filter of chain that checks requests and would act on a
 * match (mask or block), or NULL when every such filter only flags. */
static const struct tg_filter *
first_acting_filter(const struct tg_filter_chain *chain)
{
	for (size_t i = 0; i < chain->n; i++) {
		const struct tg_filter *f = chain->filters[i];

		if ((f->apply_to & TG_SIDE_REQUEST) && f->action != TG_ACTION_FLAG)
			return f;
	}
	return NULL;
}

int
tg_filter_reads_json_only(const struct tg_route *route)
{
	const struct tg_route_filters_config *rf = route->filters;

	return rf != NULL && rf->chain.n > 0 && first_acting_filter(&rf->chain) != NULL;
}

int
tg_filter_reject_unreadable(struct tg_request *req)
{
	const struct tg_filter_chain *chain = route_chain(req);
	const struct tg_filter *f = chain != NULL ? first_acting_filter(chain) : NULL;
	const char *type = tg_headers_get(&req->headers, "Content-Type");
	char message[400];

	if (!req->body_opaque || f == NULL)
		return 0;
	snprintf(message, sizeof(message), "the request body, of Content-Type \"%.80s\", is "
	         "not JSON, and the route's filter \"%.80s\" (action %s) reads JSON request "
	         "bodies only; send the body as application/json, or use a route without "
	         "that filter", type, f->name, f->action == TG_ACTION_MASK ? "mask" : "block");
	tg_log_request(req, TG_LOG_INFO, "request rejected: filter %s cannot read a body of "
	               "Content-Type %.80s", f->name, type);
	tg_request_fail(req, TG_E_UNREADABLE_BODY, message);
	return 1;
}

void
tg_filter_request(struct tg_request *req, tg_filter_next_fn *next)
{
	const struct tg_filter_chain *chain = route_chain(req);
	struct tg_filter_result res = {0};
	const struct tg_filter *blocked = NULL;
	struct tg_filter_state *st;
	enum body_scan scan;
	json_t *body;
	int moderation = 0;

	if (chain == NULL) {
		next(req);
		return;
	}
	/* tg_filter_reject_unreadable() let this unread body through. */
	if (req->body_opaque) {
		next(req);
		return;
	}
	st = state_of(req);
	if (st == NULL) {
		tg_request_fail(req, TG_E_INTERNAL, NULL);
		return;
	}
	scan = screen_without_tree(req, chain);
	if (scan == SCAN_CLEAN || scan == SCAN_NONE) {
		pass_request(req, next);
		return;
	}

	body = tg_request_json(req);
	if (body == NULL && req->body_json_pending) {
		tg_request_fail(req, TG_E_INTERNAL, NULL);      /* unchecked: fail closed */
		return;
	}
	if (body == NULL) {
		next(req);
		return;
	}

	if (tg_text_collect_request(body, &st->texts) != 0 ||
	    tg_filter_texts(chain, TG_SIDE_REQUEST, &st->texts, &st->log, &st->scan, &res,
	                    &moderation) != 0) {
		char why[192];

		tg_scan_describe_error(&st->scan, why, sizeof(why));
		tg_log_request(req, TG_LOG_ERROR, "request filters failed (%s)", why);
		tg_request_fail(req, TG_E_INTERNAL, NULL);
		return;
	}
	st->changed = res.changed;
	if (res.blocked != NULL) {
		answer_blocked(req, res.blocked, res.blocked_rule);
		return;
	}
	if (!moderation || st->texts.n == 0) {
		pass_request(req, next);
		return;
	}

	st->next = next;
	if (start_calls(req, chain, &blocked) == 0 || blocked != NULL) {
		cancel_calls(st);
		if (blocked != NULL)
			answer_blocked(req, blocked, NULL);
		else
			pass_request(req, next);
	}
}

/* --- response side ------------------------------------------------------ */

/* Replace the texts of an upstream error that a block filter matched: its
 * message, its "param" (null, as OpenAI sends when no parameter is at
 * fault) and an error given as a string. */
static void
withhold_error_message(json_t *body)
{
	static const char withheld[] = "the upstream's error message was withheld by a "
	                               "content filter";
	json_t *error = json_object_get(body, "error");

	if (json_is_string(error)) {
		json_object_set_new(body, "error", json_string(withheld));
		return;
	}
	if (!json_is_object(error))
		return;
	json_object_set_new(error, "message", json_string(withheld));
	if (json_is_string(json_object_get(error, "param")))
		json_object_set_new(error, "param", json_null());
}

/*
 * Empty every choice and mark it content_filter. An Anthropic message
 * loses every content block and gets the stop_reason "refusal", the value
 * Anthropic's API gives when its own classifiers stop a reply, because
 * that API defines no "content_filter" reason. A Responses API response
 * loses every output item (and the "output_text" that some servers add
 * as the SDKs do) and becomes "incomplete" with the reason
 * "content_filter", as OpenAI marks a response its own filter stopped.
 * An "error" beside them, which the filters read too, is withheld.
 */
static void
block_answer(json_t *body)
{
	json_t *choices = json_object_get(body, "choices");
	size_t i;
	json_t *choice;

	json_array_foreach(choices, i, choice) {
		tg_text_clear_choice(choice);
		json_object_set_new(choice, "finish_reason", json_string("content_filter"));
	}
	if (json_is_array(json_object_get(body, "content"))) {
		json_object_set_new(body, "content", json_array());
		json_object_set_new(body, "stop_reason", json_string("refusal"));
	}
	if (json_is_array(json_object_get(body, "output"))) {
		json_object_set_new(body, "output", json_array());
		json_object_del(body, "output_text");
		json_object_set_new(body, "status", json_string("incomplete"));
		json_object_set_new(body, "incomplete_details",
		                    json_pack("{s:s}", "reason", "content_filter"));
	}
	withhold_error_message(body);
}

/* Write the filtered JSON back as the body the client gets. Returns 0, or
 * -1 when out of memory. */
static int
rewrite_response(struct evbuffer *body, const json_t *json)
{
	char *text = json_dumps(json, JSON_COMPACT);
	int rc = -1;

	if (text != NULL) {
		evbuffer_drain(body, evbuffer_get_length(body));
		rc = evbuffer_add_printf(body, "%s\n", text) < 0 ? -1 : 0;
		free(text);
	}
	return rc;
}

/*
 * Whether body, which yajl read whole as JSON, is an object: the texts are
 * read only inside one. A body of another kind, such as an array or a
 * string, gave the filters nothing to read, though a client may still
 * show it. The digest records that, but also reads no object in a body nested
 * deeper than jansson reads, which yajl read whole and clean. Since yajl
 * accepted the text, its first byte after JSON whitespace gives its kind.
 */
static int
opens_object(struct evbuffer *body)
{
	static const char whitespace[] = " \t\n\r";
	struct evbuffer_ptr at;

	evbuffer_ptr_set(body, &at, 0, EVBUFFER_PTR_SET);
	for (;;) {
		char c;

		if (evbuffer_copyout_from(body, &at, &c, 1) != 1)
			return 0;
		if (c == '{')
			return 1;
		if (c == '\0' || strchr(whitespace, c) == NULL)
			return 0;
		if (evbuffer_ptr_set(body, &at, 1, EVBUFFER_PTR_ADD) != 0)
			return 0;
	}
}

/*
 * Scan the texts of the response body with the regex filters, read with
 * yajl, which costs a fraction of building the jansson tree the rewrite
 * needs: about 13,000 against 69,000 instructions for a 336-byte chat
 * completion (callgrind). Most responses match nothing, and then no tree
 * is built, and the pass that read the texts also read the reply digest
 * for the metrics and tracing (tg_relay_response_texts). The scan records
 * nothing, so the tree path that follows a match logs each decision once.
 * A plugin filter is left to the tree path alone, so that no text is
 * classified twice.
 */
static enum body_scan
scan_without_tree(struct tg_request *req, const struct tg_filter_chain *chain)
{
	unsigned types = tg_filter_types(chain, TG_SIDE_RESPONSE);
	struct probe p = {chain, TG_SIDE_RESPONSE, &req->filters->scan, 0};
	int rc;

	/* Moderation filters check requests only (the config rejects them on
	 * responses). */
	if (!(types & (1u << TG_FILTER_REGEX | 1u << TG_FILTER_PLUGIN)))
		return SCAN_NONE;
	if (types & 1u << TG_FILTER_PLUGIN)
		return SCAN_UNREAD;
	/* Texts that no rule can match need no reading: the digest that the
	 * metrics read anyway records whether yajl read an object. Any other
	 * body goes the way below, which decides what becomes of it. */
	if (tg_filter_body_unmatched(chain, TG_SIDE_RESPONSE, req->response.body) &&
	    tg_relay_response_digest(req)->object)
		return SCAN_CLEAN;
	rc = tg_relay_response_texts(req, probe_text, &p);

	if (rc == 0 && !tg_relay_response_digest(req)->object && !opens_object(req->response.body))
		return SCAN_UNREAD;
	if (rc == 0)
		return SCAN_CLEAN;
	if (rc < 0)
		return SCAN_UNREAD;
	return p.rc < 0 ? SCAN_FAILED : SCAN_MATCH;
}

static void
log_scan_failed(struct tg_request *req)
{
	char why[192];

	tg_scan_describe_error(&req->filters->scan, why, sizeof(why));
	tg_log_request(req, TG_LOG_ERROR, "response filters failed (%s); responding "
	               "with an error instead of the unchecked response", why);
}

/*
 * Screen an upstream error body that is not a JSON object (a proxy's HTML
 * or text page) as one text, since its message may echo the prompt, and
 * keep the upstream's status either way. Bytes that are not UTF-8 are read
 * as U+FFFD, because the regex engine takes only UTF-8. Without a match
 * the body goes out as it came. A mask writes it again with the matches
 * masked, and a block replaces it with a sentence. Returns 0, or -1 when
 * the scan failed or memory ran out (the relay then responds with an error).
 */
static int
screen_error_page(struct tg_request *req, const struct tg_filter_chain *chain,
                  struct tg_filter_state *st)
{
	static const char withheld[] = "the upstream's error message was withheld by a "
	                               "content filter\n";
	struct evbuffer *body = req->response.body;
	size_t raw_len = evbuffer_get_length(body);
	const char *raw = (const char *)evbuffer_pullup(body, -1);
	struct tg_text_list texts = {0};
	struct tg_filter_result res = {0};
	json_t *text = NULL;
	char *repaired = NULL;
	size_t len = raw ? tg_utf8_repaired_len(raw, raw_len) : 0;
	int rc = -1;

	if (raw != NULL && len != raw_len && (repaired = malloc(len)) != NULL)
		tg_utf8_repair(repaired, raw, raw_len);
	if (raw != NULL && (len == raw_len || repaired != NULL))
		text = json_stringn_nocheck(repaired ? repaired : raw, len);
	if (text == NULL || tg_text_list_add(&texts, text) != 0) {
		tg_log_request(req, TG_LOG_ERROR, "cannot screen the error page (out of memory); "
		               "responding with an error instead");
		goto out;
	}

	if (tg_filter_texts(chain, TG_SIDE_RESPONSE, &texts, &st->log, &st->scan, &res, NULL) != 0) {
		log_scan_failed(req);
		goto out;
	}
	rc = 0;
	if (res.blocked != NULL) {
		tg_log_request(req, TG_LOG_INFO, "error page withheld by content filter %s (%s)",
		               res.blocked->name, res.blocked_rule ? res.blocked_rule : "error");
		rc = replace_body(body, withheld, sizeof(withheld) - 1);
	} else if (res.changed) {
		rc = replace_body(body, json_string_value(text), json_string_length(text));
	}
out:
	json_decref(text);
	free(repaired);
	tg_text_list_free(&texts);
	return rc;
}

/*
 * Without a match the body goes out as it came. Otherwise the filters
 * change the shared parse of the body in place (tg_relay_response_json),
 * then write the body again from it, so the features after them see what
 * the client gets. The body must not go out unchecked when the filters
 * fail (a rule hit PCRE2's match limit, or memory ran out), or when a text
 * matched in a body that jansson cannot parse. Then the parse is dropped,
 * since it may already hold masked text, and the relay, seeing -1,
 * responds with an error instead, as the request side and the stream
 * filters do.
 */
int
tg_filter_response_body(struct tg_request *req)
{
	const struct tg_filter_chain *chain = route_chain(req);
	struct tg_filter_state *st = req->filters;
	struct evbuffer *body = req->response.body;
	struct tg_text_list texts = {0};
	struct tg_filter_result res = {0};
	enum body_scan scan;
	json_t *json;
	int rc = 0;

	/* Error bodies are screened too: their message may echo the prompt.
	 * An empty body has no text to screen. */
	if (chain == NULL || st == NULL || body == NULL || evbuffer_get_length(body) == 0)
		return 0;
	st->response_checked = 1;
	scan = scan_without_tree(req, chain);
	if (scan == SCAN_CLEAN || scan == SCAN_NONE)
		return 0;
	if (scan == SCAN_FAILED) {
		log_scan_failed(req);
		return -1;
	}

	json = tg_relay_response_json(req);
	if (!json_is_object(json) && scan == SCAN_UNREAD && req->response.status != 200)
		return screen_error_page(req, chain, st);
	if (!json_is_object(json) && scan == SCAN_UNREAD) {
		/* Clients read bodies that are not strict JSON (NaN, a byte order
		 * mark, a member given twice), so an unread one must not pass. */
		tg_log_request(req, TG_LOG_ERROR, "the response body is not a JSON object "
		               "with each member once, which the filters cannot read; "
		               "responding with an error instead");
		return -1;
	}
	if (!json_is_object(json)) {
		tg_log_request(req, TG_LOG_ERROR, "response filters matched a text of a body "
		               "that is not a JSON object with each member once, so it cannot "
		               "be rewritten; responding with an error instead");
		return -1;
	}

	if (tg_text_collect_response(json, &texts) != 0 ||
	    tg_filter_texts(chain, TG_SIDE_RESPONSE, &texts, &st->log, &st->scan, &res,
	                    NULL) != 0) {
		log_scan_failed(req);
		rc = -1;
		goto out;
	}
	if (res.blocked != NULL && req->response.status != 200) {
		/* The upstream's status is kept; only its message is withheld. */
		tg_log_request(req, TG_LOG_INFO, "error message withheld by content filter %s (%s)",
		               res.blocked->name, res.blocked_rule ? res.blocked_rule : "error");
		withhold_error_message(json);
	} else if (res.blocked != NULL) {
		tg_log_request(req, TG_LOG_INFO, "response blocked by content filter %s (%s)",
		               res.blocked->name, res.blocked_rule ? res.blocked_rule : "error");
		req->error = TG_E_CONTENT_FILTER;
		req->cause = TG_CAUSE_GATEWAY;
		tg_trace_response_blocking(req, json);
		block_answer(json);
	} else if (!res.changed) {
		goto out;
	}
	tg_filter_drop_logprobs(json);
	if (rewrite_response(body, json) != 0) {
		tg_log_request(req, TG_LOG_ERROR, "cannot write the filtered response (out of "
		               "memory); responding with an error instead");
		rc = -1;
	}
out:
	if (rc != 0)
		tg_relay_response_json_stale(req);
	tg_text_list_free(&texts);
	return rc;
}

static void
send_filtered(void *arg, struct tg_stream_event *ev)
{
	struct tg_request *req = arg;

	req->filters->send(req, ev);
}

/* Start the stream's window on its first event. Returns 0 when no filter
 * applies to the stream. */
static int
stream_ready(struct tg_request *req, tg_filter_send_fn *send)
{
	struct tg_filter_state *st = req->filters;
	const struct tg_filter_chain *chain = route_chain(req);

	if (st == NULL || chain == NULL || st->stream_none)
		return 0;
	st->send = send;
	if (st->stream == NULL) {
		st->stream = tg_filter_stream_new(chain, &st->log,
		                                  req->worker != NULL ? req->worker->base : NULL,
		                                  send_filtered, req,
		                                  req->config->limits.max_response_body,
		                                  &st->stream_none);
		if (st->stream == NULL && !st->stream_none) {
			tg_log_request(req, TG_LOG_ERROR, "out of memory; stream sent unfiltered");
			st->stream_none = 1;
		}
	}
	st->response_checked |= st->stream != NULL;
	return st->stream != NULL;
}

/* Log a stream's block: a match at info level, or, as a warning with its
 * reason, a block of events the filters do not read, which the operator
 * may fix by routing them elsewhere. */
static void
log_stream_block(struct tg_request *req, const struct tg_filter_stream *stream)
{
	char why[192];

	if (!tg_filter_stream_blocked_unread(stream)) {
		tg_log_request(req, TG_LOG_INFO, "streamed response blocked by a content filter; "
		               "upstream cancelled");
		return;
	}
	tg_filter_stream_describe_error(stream, why, sizeof(why));
	tg_log_request(req, TG_LOG_WARN, "streamed response blocked unread (%s), since the "
	               "route's mask and block filters must not pass it unchecked; upstream "
	               "cancelled", why);
}

static int
after_stream_call(struct tg_request *req, enum tg_stream_verdict v)
{
	struct tg_filter_state *st = req->filters;

	if (v == TG_STREAM_BLOCK) {
		st->response_blocked = 1;
		req->error = TG_E_CONTENT_FILTER;
		req->cause = TG_CAUSE_GATEWAY;
		log_stream_block(req, st->stream);
	} else if (v == TG_STREAM_ERROR) {
		char why[192];

		tg_filter_stream_describe_error(st->stream, why, sizeof(why));
		tg_log_request(req, TG_LOG_ERROR, "stream filters failed (%s); ending the stream "
		               "with an error event", why);
		st->response_blocked = 1;
		req->error = TG_E_INTERNAL;
		req->cause = TG_CAUSE_GATEWAY;
	} else if (v == TG_STREAM_TOO_LARGE) {
		char why[192];

		tg_filter_stream_describe_error(st->stream, why, sizeof(why));
		tg_log_request(req, TG_LOG_WARN, "streamed response too large to screen (%s, "
		               "limits.max_response_body); upstream cancelled, ending the stream "
		               "with an error event", why);
		st->response_blocked = 1;
		req->error = TG_E_UPSTREAM_TOO_LARGE;
		req->cause = TG_CAUSE_UPSTREAM_FAILED;
	}
	return 1;
}

int
tg_filter_response_event(struct tg_request *req, struct tg_stream_event *ev,
                         tg_filter_send_fn *send)
{
	if (!stream_ready(req, send))
		return 0;
	if (req->filters->response_blocked)
		return 1;
	return after_stream_call(req, tg_filter_stream_event(req->filters->stream, ev));
}

yajl_handle *
tg_filter_response_tap(struct tg_request *req, const char *data, size_t len,
                       struct tg_reply_tap *tap)
{
	struct tg_filter_state *st = req->filters;

	/* The stream starts with its first event, which it reads alone. */
	if (st == NULL || st->stream == NULL || st->response_blocked)
		return NULL;
	return tg_filter_stream_tap(st->stream, data, len, tap);
}

int
tg_filter_response_tapped(struct tg_request *req, int rc)
{
	tg_filter_stream_tapped(req->filters->stream, rc);
	return rc != -2;
}

int
tg_filter_response_end(struct tg_request *req, tg_filter_send_fn *send)
{
	if (!stream_ready(req, send))
		return 0;
	if (req->filters->response_blocked)
		return 1;
	return after_stream_call(req, tg_filter_stream_finish(req->filters->stream));
}

void
tg_filter_response_reset(struct tg_request *req)
{
	struct tg_filter_state *st = req->filters;

	if (st == NULL)
		return;
	tg_filter_stream_free(st->stream);
	st->stream = NULL;
	st->stream_none = 0;
	st->response_blocked = 0;
}

int
tg_filter_response_checked(const struct tg_request *req)
{
	return req->filters != NULL && req->filters->response_checked;
}

int
tg_filter_response_screened(const struct tg_request *req)
{
	return tg_filter_types(route_chain(req), TG_SIDE_RESPONSE) != 0;
}

int
tg_filter_response_blocked(const struct tg_request *req)
{
	return req->filters != NULL && req->filters->response_blocked;
}
