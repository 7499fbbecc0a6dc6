/*
 * Unit tests for the metrics module: buckets and label sets, the tables of
 * a config, recording through the request hooks, the exposition formats,
 * reloads, stream usage, sessions, and a scrape racing a recording worker.
 *
 * Each test runs in its own process (Check's fork mode), so the
 * process-wide registry starts empty in every test.
 */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "accesslog.h"
#include "config.h"
#include "health.h"
#include "metrics-table.h"
#include "metrics.h"
#include "relay.h"
#include "request.h"
#include "trace-t.h"
#include "worker.h"

#define MS 1000000ull

#ifndef TG_TEST_PLUGINS
#define TG_TEST_PLUGINS "plugins"
#endif

static const char BASE_CONFIG[] =
	"{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"},"
	"                \"b\": {\"url\": \"http://127.0.0.1:2\"}},"
	" \"routes\": ["
	"  {\"name\": \"exact\", \"match\": {\"path\": \"/v1/chat/completions\", \"model\": \"gpt-4o\"},"
	"   \"backends\": [\"a\", \"b\"]},"
	"  {\"name\": \"glob\", \"match\": {\"path\": \"/v1/chat/completions\", \"model\": \"gpt-*\"},"
	"   \"backends\": [\"b\"]},"
	"  {\"name\": \"any\", \"match\": {\"path\": \"/v1/completions\"}, \"backends\": [\"a\"]}],"
	" \"pricing\": {\"currency\": \"EUR\", \"models\": {"
	"  \"gpt-4o-mini\": {\"input\": 1, \"output\": 2},"
	"  \"gpt-4o\": {\"input\": 2.5, \"cached_input\": 1.25, \"output\": 10}}},"
	" \"sessions\": {\"idle_timeout\": \"1s\"}}";

/* --- helpers ------------------------------------------------------------------ */

static struct tg_config *
load(const char *json)
{
	char path[] = "/tmp/tg-check-metrics-XXXXXX";
	int fd = mkstemp(path);
	struct tg_config *cfg;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	cfg = tg_config_load(path, stderr);
	unlink(path);
	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

/* A worker of cfg, which is loaded first, as main() does. */
static struct tg_worker *
new_worker(struct tg_config *cfg)
{
	struct tg_worker *w = calloc(1, sizeof(*w));

	ck_assert_ptr_nonnull(w);
	tg_metrics_config_loaded(cfg);
	w->config = cfg;
	w->metrics = tg_metrics_shard_new(0);
	ck_assert_ptr_nonnull(w->metrics);
	return w;
}

/* Also frees the body buffers that tg_relay_reset() gave back to w. */
static void
free_worker(struct tg_worker *w)
{
	for (size_t i = 0; i < w->n_spare_buffers; i++)
		evbuffer_free(w->spare_buffers[i]);
	tg_metrics_shard_free(w->metrics);
	free(w);
}

static const struct tg_route *
route_named(const struct tg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		if (strcmp(cfg->routes[i].name, name) == 0)
			return &cfg->routes[i];
	}
	ck_abort_msg("no route %s", name);
	return NULL;
}

/* A request bound to w's shard that matched route (a name, or NULL for no
 * route) with model, read whole at its start. */
static struct tg_request *
new_request(struct tg_worker *w, struct tg_config *cfg, const char *route, const char *model)
{
	struct tg_request *req = calloc(1, sizeof(*req));

	ck_assert_ptr_nonnull(req);
	req->worker = w;
	req->config = cfg;
	req->start_ns = tg_now_ns();
	req->start_wall_ns = tg_wall_ns();
	tg_headers_init(&req->headers);
	tg_metrics_request_start(req);
	ck_assert_ptr_nonnull(req->metrics.table);
	req->metrics.dispatched = 1;
	req->metrics.read_ns = req->start_ns;
	req->route = route ? route_named(cfg, route) : NULL;
	req->model = model;
	return req;
}

/* Add an ended attempt on backend (a name) that took from start to end. */
static void
add_attempt(struct tg_request *req, const char *backend, uint64_t start, uint64_t end,
            int status, enum tg_outcome outcome, enum tg_error err)
{
	struct tg_attempt *a = &req->attempts[req->n_attempts++];

	a->backend = tg_config_backend(req->config, backend);
	ck_assert_ptr_nonnull(a->backend);
	a->model = req->model;          /* as sent by a member that keeps it */
	a->start_ns = start;
	a->end_ns = end;
	a->status = status;
	a->outcome = (int)outcome;
	a->error = err;
	req->backend = a->backend;
}

/* End req at done_ns (CLOCK_MONOTONIC), as tg_request_done() would. */
static void
end_request_at(struct tg_request *req, int status, uint64_t done_ns)
{
	req->response.status = status;
	req->response.head_sent = status != 0;
	req->done_ns = done_ns;
	tg_metrics_request_end(req);
	ck_assert_ptr_null(req->metrics.table);
	tg_headers_free(&req->headers);
	json_decref(req->body_json);
	if (req->body != NULL)
		evbuffer_free(req->body);
	free(req);
}

static void
end_request(struct tg_request *req, int status)
{
	end_request_at(req, status, tg_now_ns());
}

static char *
scrape(enum tg_metrics_format format)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	ck_assert_int_eq(tg_metrics_scrape(out, format), 0);
	ck_assert_int_eq(tg_metrics_scrape_end(out, format), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

/* The value of the sample whose name and labels are series exactly, or
 * NAN when the scrape has no such line. */
static double
sample(const char *text, const char *series)
{
	size_t len = strlen(series);

	for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
		if (strncmp(line, series, len) == 0 && line[len] == ' ')
			return strtod(line + len + 1, NULL);
		if (strchr(line, '\n') == NULL)
			break;
	}
	return NAN;
}

/* Sample lines (not comments) in a scrape. */
static size_t
count_samples(const char *text)
{
	size_t n = 0;

	for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
		if (line[0] != '#')
			n++;
		if (strchr(line, '\n') == NULL)
			break;
	}
	return n;
}

static struct tg_stream_event
event(const char *data)
{
	struct tg_stream_event ev = {.kind = TG_EVENT_CONTENT};

	ev.raw = evbuffer_new();
	evbuffer_add_printf(ev.raw, "data: %s\n\n", data);
	ev.data_at = strlen("data: ");
	tg_reply_digest(&ev.digest, data, strlen(data));
	ev.data = data;         /* the tree is built when asked for, as in the relay */
	ev.data_len = strlen(data);
	return ev;
}

static char *
event_text(const struct tg_stream_event *ev)
{
	size_t len = evbuffer_get_length(ev->raw);
	char *text = malloc(len + 1);

	evbuffer_copyout(ev->raw, text, len);
	text[len] = '\0';
	return text;
}

static void
free_event(struct tg_stream_event *ev)
{
	evbuffer_free(ev->raw);
	json_decref(ev->json);
}

/* --- buckets and fixed label sets ---------------------------------------------- */

static const double genai_ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                                    0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0};
static const double genai_tpot[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
                                    0.5, 0.75, 1.0, 2.5};
static const double genai_duration[] = {0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
                                        2.56, 5.12, 10.24, 20.48, 40.96, 81.92};

static void
assert_bounds(enum tg_buckets kind, const double *expected, size_t n, size_t skip)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[kind];

	ck_assert_uint_eq(spec->n, n + skip);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(spec->bounds[skip + i], (uint64_t)(expected[i] * 1e9 + 0.5));
}

START_TEST(buckets_follow_genai)
{
	assert_bounds(TG_BUCKETS_TTFT, genai_ttft, 16, 0);
	assert_bounds(TG_BUCKETS_TPOT, genai_tpot, 13, 0);
	assert_bounds(TG_BUCKETS_UPSTREAM, genai_duration, 14, 0);
	/* Extended below: 1 ms and 5 ms for the request, 3 for tokens. */
	assert_bounds(TG_BUCKETS_DURATION, genai_duration, 14, 2);
	assert_bounds(TG_BUCKETS_TBT, genai_tpot, 13, 3);
	ck_assert_uint_eq(tg_bucket_specs[TG_BUCKETS_OVERHEAD].bounds[0], 10000);
	for (size_t k = 0; k < TG_BUCKETS_COUNT; k++) {
		ck_assert_uint_le(tg_bucket_specs[k].n, TG_HIST_MAX_BOUNDS);
		for (size_t i = 1; i < tg_bucket_specs[k].n; i++)
			ck_assert_uint_gt(tg_bucket_specs[k].bounds[i], tg_bucket_specs[k].bounds[i - 1]);
	}
}
END_TEST

static const struct {
	enum tg_buckets kind;
	uint64_t value;
	size_t bucket;
} observations[] = {
	{TG_BUCKETS_TTFT, 0, 0},
	{TG_BUCKETS_TTFT, 1 * MS, 0},           /* le is inclusive */
	{TG_BUCKETS_TTFT, 1 * MS + 1, 1},
	{TG_BUCKETS_TTFT, 200 * MS, 8},         /* le="0.25" */
	{TG_BUCKETS_TTFT, 11000 * MS, 16},      /* +Inf */
	{TG_BUCKETS_TBT, 60 * MS, 6},           /* le="0.075" */
	{TG_BUCKETS_TURNS, 3, 2},
	{TG_BUCKETS_TURNS, 7, 6},               /* le="8" */
};

START_TEST(observe_picks_bucket)
{
	struct tg_hist h;

	memset(&h, 0, sizeof(h));
	tg_hist_observe(&h, observations[_i].kind, observations[_i].value);
	for (size_t b = 0; b <= TG_HIST_MAX_BOUNDS; b++)
		ck_assert_uint_eq(tg_counter_get(&h.bucket[b]), b == observations[_i].bucket);
	ck_assert_uint_eq(tg_counter_get(&h.sum), observations[_i].value);
}
END_TEST

START_TEST(status_codes_bounded)
{
	ck_assert_str_eq(tg_code_label(tg_code_slot(200)), "200");
	ck_assert_str_eq(tg_code_label(tg_code_slot(429)), "429");
	ck_assert_str_eq(tg_code_label(tg_code_slot(503)), "503");
	ck_assert_str_eq(tg_code_label(tg_code_slot(529)), "529");
	ck_assert_str_eq(tg_code_label(tg_code_slot(201)), "2xx");
	ck_assert_str_eq(tg_code_label(tg_code_slot(418)), "4xx");
	ck_assert_str_eq(tg_code_label(tg_code_slot(599)), "5xx");
	ck_assert_str_eq(tg_code_label(tg_code_slot(999)), "5xx");
	ck_assert_str_eq(tg_code_label(tg_code_slot(0)), "none");
	for (int status = 0; status < 1000; status++)
		ck_assert_uint_lt(tg_code_slot(status), TG_CODE_SLOTS);
}
END_TEST

/* --- tables ------------------------------------------------------------------- */

START_TEST(unlisted_model_is_other)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_metrics_table *t = tg_metrics_table_new(cfg);
	size_t other;

	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->n_models, 3);     /* gpt-4o, gpt-4o-mini, other */
	other = t->n_models - 1;
	ck_assert_str_eq(tg_metrics_model_name(t, tg_metrics_model_index(t, "gpt-4o")), "gpt-4o");
	ck_assert_str_eq(tg_metrics_model_name(t, tg_metrics_model_index(t, "gpt-4o-mini")),
	                 "gpt-4o-mini");
	ck_assert_uint_eq(tg_metrics_model_index(t, "gpt-4o-2024"), other);
	ck_assert_uint_eq(tg_metrics_model_index(t, "claude"), other);
	ck_assert_uint_eq(tg_metrics_model_index(t, NULL), other);
	ck_assert_str_eq(tg_metrics_model_name(t, other), "other");
	tg_metrics_table_free(t);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(routes_see_matching_models)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_metrics_table *t = tg_metrics_table_new(cfg);
	size_t seen[64] = {0};

	ck_assert_uint_eq(t->n_routes, 4);     /* three and "none" */
	ck_assert_uint_eq(t->layout[0].n_model_slots, 2);      /* gpt-4o, other */
	ck_assert_uint_eq(t->layout[0].n_backend_slots, 3);    /* a, b, none */
	ck_assert_uint_eq(t->layout[1].n_model_slots, 3);      /* both, other */
	ck_assert_uint_eq(t->layout[1].n_backend_slots, 2);
	ck_assert_uint_eq(t->layout[2].n_model_slots, 3);
	ck_assert_uint_eq(t->layout[3].n_backend_slots, 1);    /* none only */

	/* Every (route, backend, model) of the routes has a cell of its own. */
	for (size_t r = 0; r < t->n_routes; r++) {
		for (size_t b = 0; b <= cfg->n_backends; b++) {
			for (size_t m = 0; m < t->n_models; m++) {
				size_t cell = tg_metrics_cell_index(t, r, b, m);

				ck_assert_uint_lt(cell, t->n_cells);
				ck_assert_uint_lt(cell, 64);
				seen[cell] = 1;
			}
		}
	}
	for (size_t c = 0; c < t->n_cells; c++)
		ck_assert_msg(seen[c], "cell %zu is never used", c);
	ck_assert_uint_ne(tg_metrics_cell_index(t, 0, 0, 0), tg_metrics_cell_index(t, 0, 1, 0));
	tg_metrics_table_free(t);
	tg_config_unref(cfg);
}
END_TEST

/* --- recording and exposition ----------------------------------------------------- */

START_TEST(request_counted_by_labels)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	uint64_t t0 = req->start_ns;
	char *text;

	add_attempt(req, "a", t0 + 1 * MS, t0 + 2 * MS, 503, TG_OUTCOME_FAILURE, TG_OK);
	add_attempt(req, "b", t0 + 3 * MS, t0 + 4 * MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	end_request(req, 200);
	req = new_request(w, cfg, NULL, "whatever");
	end_request(req, 404);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_requests_total{route=\"exact\",backend=\"b\","
	                                 "model=\"gpt-4o\",code=\"200\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_requests_total{route=\"none\",backend=\"none\","
	                                 "model=\"other\",code=\"404\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_upstream_attempts_total{backend=\"a\","
	                                 "outcome=\"server_error\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_upstream_attempts_total{backend=\"b\","
	                                 "outcome=\"success\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_failovers_total{route=\"exact\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_request_duration_seconds_count{route=\"exact\","
	                                 "model=\"gpt-4o\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_requests_in_flight"), 0);
	ck_assert_double_eq(sample(text, "tollgate_backend_up{backend=\"a\"}"), 1);
	ck_assert(isnan(sample(text, "tollgate_requests_total{route=\"exact\",backend=\"a\","
	                             "model=\"gpt-4o\",code=\"200\"}")));
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(in_flight_while_open)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *a = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_request *b = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_stream_event ev = event("{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}");
	char *text;

	ck_assert_int_eq(tg_metrics_stream_event(b, &ev), 0);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_requests_in_flight"), 2);
	ck_assert_double_eq(sample(text, "tollgate_streams_open"), 1);
	free(text);

	end_request(a, 200);
	end_request(b, 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_requests_in_flight"), 0);
	ck_assert_double_eq(sample(text, "tollgate_streams_open"), 0);
	free(text);
	free_event(&ev);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* One request for a model the config does not list, made from a random
 * name, with a random session user. */
static void
random_model_request(struct tg_worker *w, struct tg_config *cfg)
{
	struct tg_request *req;
	char model[32];

	snprintf(model, sizeof(model), "gpt-%08x", (unsigned)rand());
	req = new_request(w, cfg, "glob", model);
	req->body_json = json_pack("{s:s}", "user", model);
	req->user = json_string_value(json_object_get(req->body_json, "user"));
	add_attempt(req, "b", req->start_ns, req->start_ns + 1, 200, TG_OUTCOME_SUCCESS, TG_OK);
	tg_metrics_content_event(req, req->start_ns + 2);
	end_request(req, 200);
}

START_TEST(unlisted_models_add_no_series)
{
	char json[sizeof(BASE_CONFIG)];
	struct tg_config *cfg;
	struct tg_worker *w;
	size_t before;
	char *text;

	/* Sessions that end while the loop runs would add the turns histogram,
	 * a series of fixed labels: keep them open. */
	memcpy(json, BASE_CONFIG, sizeof(json));
	memcpy(strstr(json, "\"1s\""), "\"1h\"", 4);
	cfg = load(json);
	w = new_worker(cfg);
	srand(7);
	random_model_request(w, cfg);
	text = scrape(TG_METRICS_TEXT);
	before = count_samples(text);
	free(text);

	for (int i = 0; i < 10000; i++)
		random_model_request(w, cfg);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_uint_eq(count_samples(text), before);
	ck_assert_double_eq(sample(text, "tollgate_requests_total{route=\"glob\",backend=\"b\","
	                                 "model=\"other\",code=\"200\"}"), 10001);
	ck_assert_ptr_null(strstr(text, "gpt-0"));
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(stream_timing_in_buckets)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	uint64_t t0 = req->start_ns;
	const char *cell = "{route=\"exact\",backend=\"a\",model=\"gpt-4o\"";
	char name[256], *text;

	add_attempt(req, "a", t0, t0 + 200 * MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	/* First content at 200 ms, then nine more 60 ms apart. */
	for (int i = 0; i < 10; i++)
		tg_metrics_content_event(req, t0 + 200 * MS + (uint64_t)i * 60 * MS);
	req->metrics.usage = (struct tg_usage){.input = 10, .output = 10, .reported = 1};
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	snprintf(name, sizeof(name), "tollgate_time_to_first_token_seconds_bucket%s,le=\"0.1\"}", cell);
	ck_assert_double_eq(sample(text, name), 0);
	snprintf(name, sizeof(name), "tollgate_time_to_first_token_seconds_bucket%s,le=\"0.25\"}", cell);
	ck_assert_double_eq(sample(text, name), 1);
	snprintf(name, sizeof(name), "tollgate_time_between_tokens_seconds_bucket%s,le=\"0.05\"}", cell);
	ck_assert_double_eq(sample(text, name), 0);
	snprintf(name, sizeof(name), "tollgate_time_between_tokens_seconds_bucket%s,le=\"0.075\"}", cell);
	ck_assert_double_eq(sample(text, name), 9);
	snprintf(name, sizeof(name), "tollgate_time_between_tokens_seconds_count%s}", cell);
	ck_assert_double_eq(sample(text, name), 9);
	/* (540 ms) / (10 - 1) = 60 ms per token. */
	snprintf(name, sizeof(name), "tollgate_time_per_output_token_seconds_sum%s}", cell);
	ck_assert_double_eq_tol(sample(text, name), 0.06, 1e-9);
	snprintf(name, sizeof(name), "tollgate_time_per_output_token_seconds_bucket%s,le=\"0.075\"}",
	         cell);
	ck_assert_double_eq(sample(text, name), 1);
	/* The types without a count are written too, at 0. */
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"cached_input\"}", cell);
	ck_assert_double_eq(sample(text, name), 0);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(tokens_and_cost_from_usage)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	const char *body = "{\"id\":\"x\",\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":400,"
	                   "\"prompt_tokens_details\":{\"cached_tokens\":600},"
	                   "\"completion_tokens_details\":{\"reasoning_tokens\":100}}}";
	const char *labels = "{route=\"exact\",backend=\"a\",model=\"gpt-4o\"";
	char name[256], *text;

	add_attempt(req, "a", req->start_ns, req->start_ns + MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	req->response.body = evbuffer_new();
	evbuffer_add(req->response.body, body, strlen(body));
	tg_metrics_response_body(req);
	tg_relay_reset(req);
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"input\"}", labels);
	ck_assert_double_eq(sample(text, name), 1000);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"output\"}", labels);
	ck_assert_double_eq(sample(text, name), 400);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"cached_input\"}", labels);
	ck_assert_double_eq(sample(text, name), 600);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"reasoning\"}", labels);
	ck_assert_double_eq(sample(text, name), 100);
	/* 400 * 2.5 + 600 * 1.25 + 400 * 10, per million. */
	snprintf(name, sizeof(name), "tollgate_cost_total%s}", labels);
	ck_assert_double_eq_tol(sample(text, name), 5750e-6, 1e-12);
	ck_assert_ptr_nonnull(strstr(text, "Currency: EUR."));
	ck_assert_ptr_null(strstr(text, "tollgate_estimated_tokens_total{"));
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* Metrics read a whole body's usage without building its tree, so a
 * response no other feature reads is never parsed into one. A tree that
 * another feature built stays the one they share. */
START_TEST(usage_read_without_a_tree)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	const char *body = "{\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":400,"
	                   "\"prompt_tokens_details\":{\"cached_tokens\":600}}}";
	json_t *parsed;

	req->response.body = evbuffer_new();
	evbuffer_add(req->response.body, body, strlen(body));
	tg_metrics_response_body(req);
	ck_assert_uint_eq(req->metrics.usage.input, 1000);
	ck_assert_uint_eq(req->metrics.usage.output, 400);
	ck_assert_uint_eq(req->metrics.usage.cached_input, 600);
	ck_assert_ptr_null(req->response.json);
	ck_assert_int_eq(req->response.json_parsed, 0);

	parsed = tg_relay_response_json(req);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_ptr_eq(tg_relay_response_json(req), parsed);

	tg_relay_reset(req);
	ck_assert_ptr_null(req->response.json);
	end_request(req, 200);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(stream_without_usage_estimated)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "any", "gpt-4o-mini");
	struct tg_stream_event content = event("{\"choices\":[{\"text\":\"one\"}]}");
	struct tg_stream_event finish = event("{\"choices\":[{\"text\":\"\",\"finish_reason\":\"stop\"}]}");
	char *text;

	add_attempt(req, "a", req->start_ns, req->start_ns + MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(tg_metrics_stream_event(req, &content), 0);
	ck_assert_int_eq(tg_metrics_stream_event(req, &finish), 0);
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_estimated_tokens_total{route=\"any\",backend=\"a\","
	                                 "model=\"gpt-4o-mini\",type=\"output\"}"), 3);
	ck_assert_ptr_null(strstr(text, "tollgate_tokens_total{"));
	ck_assert_ptr_null(strstr(text, "tollgate_cost_total{"));
	free(text);
	free_event(&content);
	free_event(&finish);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(abandonment_by_phase)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *before = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_request *mid = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_request *done = new_request(w, cfg, "exact", "gpt-4o");
	char *text;

	before->cause = TG_CAUSE_CLIENT_CLOSED;
	end_request(before, 0);
	tg_metrics_content_event(mid, tg_now_ns());
	mid->cause = TG_CAUSE_CLIENT_TIMEOUT;
	end_request(mid, 200);
	tg_metrics_content_event(done, tg_now_ns());
	end_request(done, 200);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_requests_abandoned_total{route=\"exact\","
	                                 "phase=\"before_first_token\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_requests_abandoned_total{route=\"exact\","
	                                 "phase=\"mid_stream\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_requests_total{route=\"exact\",backend=\"none\","
	                                 "model=\"gpt-4o\",code=\"none\"}"), 1);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(overhead_excludes_upstream)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	uint64_t t0 = req->metrics.read_ns;
	char *text;

	/* 1 ms before the first attempt, 2 ms between the two; the tail after
	 * the last exchange is the client's. */
	add_attempt(req, "a", t0 + 1 * MS, t0 + 50 * MS, 502, TG_OUTCOME_FAILURE, TG_OK);
	add_attempt(req, "b", t0 + 52 * MS, t0 + 60 * MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	req->metrics.upstream_end_ns = t0 + 90 * MS;
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq_tol(sample(text, "tollgate_gateway_overhead_seconds_sum{route=\"exact\"}"),
	                        0.003, 1e-9);
	ck_assert_double_eq(sample(text, "tollgate_gateway_overhead_seconds_bucket{route=\"exact\","
	                                 "le=\"0.0025\"}"), 0);
	ck_assert_double_eq(sample(text, "tollgate_gateway_overhead_seconds_bucket{route=\"exact\","
	                                 "le=\"0.005\"}"), 1);
	/* b's exchange lasted until its body was received whole. */
	ck_assert_double_eq_tol(sample(text, "tollgate_upstream_duration_seconds_sum{backend=\"b\"}"),
	                        0.038, 1e-9);
	ck_assert_double_eq_tol(sample(text, "tollgate_upstream_duration_seconds_sum{backend=\"a\"}"),
	                        0.049, 1e-9);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(filter_series_by_address)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	static char names[TG_FILTER_SERIES_MAX + 10][8];
	char *text;

	tg_metrics_filter_decision(req->metrics.table, "pii", "email", "mask", "request", 2);
	tg_metrics_filter_decision(req->metrics.table, "pii", "email", "mask", "request", 1);
	tg_metrics_filter_decision(req->metrics.table, "pii", NULL, "flag", "request", 1);
	for (size_t i = 0; i < TG_FILTER_SERIES_MAX + 10; i++)
		tg_metrics_filter_decision(req->metrics.table, "many", names[i], "flag", "response", 1);
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_filter_decisions_total{filter=\"pii\","
	                                 "rule=\"email\",action=\"mask\",side=\"request\"}"), 3);
	ck_assert_double_eq(sample(text, "tollgate_filter_series_dropped_total"), 11);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(labels_escaped)
{
	struct tg_config *cfg = load(
		"{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
		" \"routes\": [{\"name\": \"r\", \"backends\": [\"a\"]}],"
		" \"pricing\": {\"models\": {\"we\\\"ird\\\\model\\nx\": {\"input\": 1, \"output\": 1}}}}");
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "r", "we\"ird\\model\nx");
	char *text;

	end_request(req, 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_requests_total{route=\"r\",backend=\"none\","
	                                 "model=\"we\\\"ird\\\\model\\nx\",code=\"200\"}"), 1);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* Each family has one HELP and one TYPE line before its samples; histogram
 * buckets grow and end in +Inf equal to _count. */
static void
assert_well_formed(const char *text)
{
	char *copy = strdup(text), *save = NULL;
	char family[128] = "", last_bucket_series[512] = "";
	double last_bucket = -1;
	size_t families = 0;

	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			char name[128];

			sscanf(line + 7, "%127s", name);
			ck_assert_msg(strcmp(name, family) != 0, "second HELP for %s", name);
			snprintf(family, sizeof(family), "%s", name);
			families++;
			continue;
		}
		if (line[0] == '#')
			continue;
		ck_assert_msg(strncmp(line, family, strlen(family)) == 0,
		              "sample %s outside its family %s", line, family);
		if (strstr(line, "_bucket{") != NULL) {
			char *le = strstr(line, "le=\"");
			double v = strtod(strrchr(line, ' ') + 1, NULL);
			size_t series_len = (size_t)(le - line);

			if (strncmp(line, last_bucket_series, series_len) == 0)
				ck_assert_msg(v >= last_bucket, "bucket counts fall at %s", line);
			snprintf(last_bucket_series, sizeof(last_bucket_series), "%.*s",
			         (int)series_len, line);
			last_bucket = v;
		}
	}
	ck_assert_uint_ge(families, TG_F_COUNT);
	free(copy);
}

START_TEST(text_format_well_formed)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	char *text;

	add_attempt(req, "a", req->start_ns, req->start_ns + MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	tg_metrics_content_event(req, req->start_ns + 5 * MS);
	tg_metrics_content_event(req, req->start_ns + 9 * MS);
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	assert_well_formed(text);
	ck_assert_ptr_nonnull(strstr(text, "# TYPE tollgate_requests_total counter\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE tollgate_build_info gauge\n"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"1\"}"));
	ck_assert_ptr_null(strstr(text, "# EOF"));
	ck_assert_double_eq(sample(text, "tollgate_time_to_first_token_seconds_bucket{"
	                                 "route=\"exact\",backend=\"a\",model=\"gpt-4o\",le=\"+Inf\"}"),
	                    sample(text, "tollgate_time_to_first_token_seconds_count{"
	                                 "route=\"exact\",backend=\"a\",model=\"gpt-4o\"}"));
	ck_assert(sample(text, "process_open_fds") > 0);
	ck_assert(sample(text, "process_resident_memory_bytes") > 0);
	ck_assert(!isnan(sample(text, "process_cpu_seconds_total")));
	ck_assert_double_eq(sample(text, "tollgate_build_info{version=\"" PACKAGE_VERSION "\"}"), 1);
	ck_assert_int_eq(text[strlen(text) - 1], '\n');
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(openmetrics_format)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	size_t len;
	char *text;

	tg_metrics_content_event(req, req->start_ns + 5 * MS);
	end_request(req, 200);
	text = scrape(TG_METRICS_OPENMETRICS);
	len = strlen(text);
	ck_assert_ptr_null(strstr(text, " # {"));      /* no trace, no exemplar */

	ck_assert_uint_gt(len, 6);
	ck_assert_str_eq(text + len - 6, "# EOF\n");
	ck_assert_ptr_nonnull(strstr(text, "# TYPE tollgate_requests counter\n"));
	ck_assert_ptr_nonnull(strstr(text, "# HELP tollgate_requests Requests"));
	ck_assert_ptr_nonnull(strstr(text, "\ntollgate_requests_total{"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE process_cpu_seconds counter\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE tollgate_build info\n"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"1.0\"}"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"0.25\"}"));
	ck_assert_ptr_null(strstr(text, "le=\"1\"}"));
	ck_assert_ptr_null(strstr(text, "# TYPE tollgate_requests_total"));
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(exemplars_of_sampled_traces)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_trace sampled = {.sampled = 1}, unsampled = {.sampled = 0};
	struct tg_request *req;
	const char *line;
	char *text;

	for (int i = 0; i < TG_TRACE_ID_SIZE; i++) {
		sampled.trace_id[i] = (uint8_t)(i + 1);
		unsampled.trace_id[i] = 0xee;
	}
	req = new_request(w, cfg, "exact", "gpt-4o");
	req->trace = &sampled;
	tg_metrics_content_event(req, req->start_ns + 5 * MS);
	end_request(req, 200);
	req = new_request(w, cfg, "exact", "gpt-4o");
	req->trace = &unsampled;
	tg_metrics_content_event(req, req->start_ns + 700 * MS);
	end_request(req, 200);

	text = scrape(TG_METRICS_OPENMETRICS);
	ck_assert_ptr_nonnull(strstr(text, "tollgate_time_to_first_token_seconds_bucket{route=\"exact\","
	                                   "backend=\"none\",model=\"gpt-4o\",le=\"0.005\"} 1 # "
	                                   "{trace_id=\"0102030405060708090a0b0c0d0e0f10\"} 0.005 "));
	ck_assert_ptr_nonnull(strstr(text, "tollgate_request_duration_seconds_bucket{route=\"exact\","
	                                   "model=\"gpt-4o\",le=\"+Inf\"} 2"));
	/* The request's duration has one too, in whichever bucket it fell. */
	line = strstr(text, "\ntollgate_request_duration_seconds_bucket{");
	ck_assert_ptr_nonnull(line);
	ck_assert_ptr_nonnull(strstr(line, "# {trace_id=\"0102030405060708090a0b0c0d0e0f10\"}"));
	ck_assert(strstr(line, "# {trace_id=\"0102030405060708090a0b0c0d0e0f10\"}") <
	          strstr(line, "\ntollgate_request_duration_seconds_sum{"));
	ck_assert_ptr_null(strstr(text, "eeeeeeee"));
	free(text);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_ptr_null(strstr(text, " # {"));
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* Return the access log line of req, taken from the log's buffer before
 * any write. */
static char *
access_log_line(const struct tg_request *req)
{
	struct tg_accesslog_file file = {.fd = -1};
	struct tg_config cfg = {.access_log_buffer = 1 << 20, .access_log_flush = 1000};
	struct event_base *base = event_base_new();
	struct tg_accesslog *log;
	char *line;

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(tg_accesslog_open(&file, "/dev/null"), 0);
	log = tg_accesslog_new(&file, base, &cfg);
	ck_assert_ptr_nonnull(log);
	tg_accesslog_write(log, req);
	line = strndup(log->lines.data, log->lines.len);
	tg_accesslog_free(log, 0);
	tg_accesslog_close(&file);
	event_base_free(base);
	return line;
}

/* The access log's duration, the duration histogram and its exemplar's
 * time all come from req->done_ns, so they agree for one request. */
START_TEST(request_end_shared_by_metrics_and_access_log)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_trace sampled = {.sampled = 1};
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	uint64_t done_ns = req->start_ns + 1500 * MS;
	char *line, *text;

	sampled.trace_id[15] = 1;
	req->trace = &sampled;
	req->start_wall_ns = 1796428800ull * 1000 * MS;         /* 2026-12-05T00:00:00Z */
	req->done_ns = done_ns;
	line = access_log_line(req);
	end_request_at(req, 200, done_ns);

	ck_assert_msg(strstr(line, "\"duration\":1.5,") != NULL, "access log line: %s", line);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_request_duration_seconds_sum{route=\"exact\","
	                                 "model=\"gpt-4o\"}"), 1.5);
	free(text);
	text = scrape(TG_METRICS_OPENMETRICS);
	ck_assert_ptr_nonnull(strstr(text, "# {trace_id=\"00000000000000000000000000000001\"} "
	                                   "1.5 1796428801.500\n"));
	free(text);
	free(line);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

static const struct {
	const char *accept;
	enum tg_metrics_format format;
} accepts[] = {
	{NULL, TG_METRICS_TEXT},
	{"*/*", TG_METRICS_TEXT},
	{"text/plain;version=0.0.4", TG_METRICS_TEXT},
	{"application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
	 "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", TG_METRICS_OPENMETRICS},
	{"application/openmetrics-text", TG_METRICS_OPENMETRICS},
	{"text/plain;q=1, application/openmetrics-text;q=0.2", TG_METRICS_TEXT},
	{"application/openmetrics-text;q=0", TG_METRICS_TEXT},
};

START_TEST(negotiates_format)
{
	ck_assert_int_eq(tg_metrics_negotiate(accepts[_i].accept), accepts[_i].format);
}
END_TEST

/* --- reloads ----------------------------------------------------------------------- */

START_TEST(reload_keeps_counters)
{
	struct tg_config *old_cfg = load(BASE_CONFIG);
	struct tg_config *new_cfg = load(
		"{\"backends\": {\"b\": {\"url\": \"http://127.0.0.1:2\"}},"
		" \"routes\": [{\"name\": \"glob\", \"match\": {\"model\": \"gpt-*\"},"
		"              \"backends\": [\"b\"]}]}");
	const char *glob = "tollgate_requests_total{route=\"glob\",backend=\"none\","
	                   "model=\"other\",code=\"200\"}";
	const char *exact = "tollgate_requests_total{route=\"exact\",backend=\"none\","
	                    "model=\"gpt-4o\",code=\"200\"}";
	struct tg_worker *w = new_worker(old_cfg);
	struct tg_request *late = new_request(w, old_cfg, "glob", "gpt-x");
	struct tg_request *req;
	char *text;

	end_request(new_request(w, old_cfg, "exact", "gpt-4o"), 200);
	end_request(new_request(w, old_cfg, "glob", "gpt-x"), 200);

	/* The worker swaps configs; a request of the old one is still open. */
	tg_metrics_config_loaded(new_cfg);
	w->config = new_cfg;
	req = new_request(w, new_cfg, "glob", "gpt-x");
	end_request(req, 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, glob), 2);
	ck_assert_double_eq(sample(text, exact), 1);
	free(text);

	/* The old table retires as its last request ends, without a scrape,
	 * and its counts go on in the archive. */
	end_request(late, 200);
	ck_assert_ptr_null(w->metrics->tables->next);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, glob), 3);
	ck_assert_double_eq(sample(text, exact), 1);
	ck_assert_ptr_null(w->metrics->tables->next);
	ck_assert_ptr_eq(w->metrics->tables->config, new_cfg);
	free(text);

	req = new_request(w, new_cfg, "glob", "gpt-x");
	end_request(req, 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, glob), 4);
	ck_assert_double_eq(sample(text, exact), 1);
	/* Gauges come from the live config only. */
	ck_assert(isnan(sample(text, "tollgate_backend_up{backend=\"a\"}")));
	ck_assert_double_eq(sample(text, "tollgate_backend_up{backend=\"b\"}"), 1);
	free(text);

	free_worker(w);
	tg_config_unref(old_cfg);
	tg_config_unref(new_cfg);
}
END_TEST

/* Check that w keeps only the table of new_cfg, current, and that the one
 * request counted on "exact" survived the retirement; then free them all. */
static void
check_retired_and_free(struct tg_worker *w, struct tg_config *old_cfg,
                       struct tg_config *new_cfg)
{
	const char *exact = "tollgate_requests_total{route=\"exact\",backend=\"none\","
	                    "model=\"gpt-4o\",code=\"200\"}";
	char *text;

	ck_assert_ptr_eq(w->metrics->tables, w->metrics->current);
	ck_assert_ptr_eq(w->metrics->tables->config, new_cfg);
	ck_assert_ptr_null(w->metrics->tables->next);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, exact), 1);
	free(text);

	free_worker(w);
	tg_config_unref(old_cfg);
	tg_config_unref(new_cfg);
}

/* Load new_cfg and swap it into w, as a reload does. */
static void
swap_config(struct tg_worker *w, struct tg_config *new_cfg)
{
	tg_metrics_config_loaded(new_cfg);
	w->config = new_cfg;
	tg_metrics_config_swapped(w->metrics);
}

/* A worker that takes a new config lets go of the old one at once when no
 * request uses it, even if it serves no request afterwards. It builds no
 * table for the new one until a request needs it, and the gauges of the
 * config loaded show meanwhile. */
START_TEST(config_swap_retires_idle_table)
{
	struct tg_config *old_cfg = load(BASE_CONFIG);
	struct tg_config *new_cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(old_cfg);
	char *text;

	end_request(new_request(w, old_cfg, "exact", "gpt-4o"), 200);
	ck_assert_ptr_eq(w->metrics->tables->config, old_cfg);

	swap_config(w, new_cfg);
	ck_assert_ptr_null(w->metrics->tables);
	ck_assert_ptr_null(w->metrics->current);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_backend_up{backend=\"a\"}"), 1);
	ck_assert_ptr_nonnull(strstr(text, "Currency: EUR."));
	free(text);

	end_request(new_request(w, new_cfg, "glob", "gpt-x"), 200);
	check_retired_and_free(w, old_cfg, new_cfg);
}
END_TEST

/* A request of an older snapshot after the swap gets a table that stays
 * linked while it runs, and that retires when it ends. */
START_TEST(old_snapshot_request_after_swap)
{
	struct tg_config *old_cfg = load(BASE_CONFIG);
	struct tg_config *new_cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(old_cfg);
	struct tg_request *req;

	swap_config(w, new_cfg);
	req = new_request(w, old_cfg, "exact", "gpt-4o");
	ck_assert_ptr_null(w->metrics->current);
	ck_assert_ptr_eq(req->metrics.table->config, old_cfg);
	ck_assert_ptr_eq(w->metrics->tables, req->metrics.table);

	end_request(req, 200);
	ck_assert_ptr_null(w->metrics->tables);
	end_request(new_request(w, new_cfg, "glob", "gpt-x"), 200);
	check_retired_and_free(w, old_cfg, new_cfg);
}
END_TEST

/* Return whether the file at path has a line equal to line. */
static int
file_has_line(const char *path, const char *line)
{
	FILE *f = fopen(path, "r");
	char buf[256];
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(buf, sizeof(buf), f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		found = strcmp(buf, line) == 0;
	}
	fclose(f);
	return found;
}

static void *
free_worker_thread(void *w)
{
	free_worker(w);
	return NULL;
}

/* A stopping worker frees its tables, and the last worker the config it
 * loaded. Freeing a config runs plugin destroy, which may take long, so it
 * runs without the registry lock.
 * The lifetime plugin waits in destroy while the .hold file exists. */
START_TEST(shard_free_destroys_plugins_unlocked)
{
	char dir[] = "/tmp/tg-check-metrics-XXXXXX";
	char log[sizeof(dir) + 32], hold[sizeof(log) + 8], json[1024];
	struct timespec pause = {0, 10 * MS};
	struct tg_config *cfg;
	struct tg_worker *w;
	pthread_t thread;
	int locked;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s/lifetime.log", dir);
	snprintf(hold, sizeof(hold), "%s.hold", log);
	snprintf(json, sizeof(json),
	         "{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
	         " \"filters\": {\"life\": {\"type\": \"plugin\","
	         "  \"path\": \"%s/test/lifetime.so\", \"model\": \"%s\","
	         "  \"labels\": {\"__label__never\": 0.5}}},"
	         " \"routes\": [{\"name\": \"chat\", \"backends\": [\"a\"],"
	         "  \"filters\": [\"life\"]}]}", TG_TEST_PLUGINS, log);
	cfg = load(json);
	w = new_worker(cfg);
	end_request(new_request(w, cfg, "chat", "gpt-4o"), 200);
	/* The references left are the table's and the registry's, which the
	 * last shard drops as it is freed. */
	tg_config_unref(cfg);

	f = fopen(hold, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(pthread_create(&thread, NULL, free_worker_thread, w), 0);
	while (!file_has_line(log, "destroy life"))
		nanosleep(&pause, NULL);

	/* destroy is running: the lock must be free. */
	locked = pthread_mutex_trylock(&tg_metrics_registry.lock);
	if (locked == 0)
		pthread_mutex_unlock(&tg_metrics_registry.lock);
	unlink(hold);
	pthread_join(thread, NULL);
	unlink(log);
	rmdir(dir);
	ck_assert_int_ne(locked, EBUSY);
	ck_assert_int_eq(locked, 0);
}
END_TEST

START_TEST(shards_summed)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w1 = new_worker(cfg), *w2 = new_worker(cfg);
	const char *series = "tollgate_requests_total{route=\"exact\",backend=\"none\","
	                     "model=\"gpt-4o\",code=\"200\"}";
	char *text;

	end_request(new_request(w1, cfg, "exact", "gpt-4o"), 200);
	end_request(new_request(w2, cfg, "exact", "gpt-4o"), 200);
	end_request(new_request(w2, cfg, "exact", "gpt-4o"), 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, series), 3);
	free(text);

	/* A stopped worker's counts stay while another one runs. */
	free_worker(w1);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, series), 3);
	free(text);
	free_worker(w2);
	tg_config_unref(cfg);
}
END_TEST

/* --- stream usage --------------------------------------------------------------------- */

static struct tg_request *
streaming_request(struct tg_worker *w, struct tg_config *cfg, const char *body)
{
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_yj_keys keys = {0};
	struct tg_request_facts facts;

	req->path = "/v1/chat/completions";
	req->body = evbuffer_new();
	evbuffer_add(req->body, body, strlen(body));
	req->body_len = strlen(body);
	req->body_json = json_loads(body, 0, NULL);
	req->stream = json_is_true(json_object_get(req->body_json, "stream"));
	req->model = json_string_value(json_object_get(req->body_json, "model"));

	/* The stream options as the dispatch's scan reads them. */
	ck_assert_int_eq(tg_request_scan(body, strlen(body), 0, &keys, &facts), TG_SCAN_READ);
	req->stream_options = facts.stream_options;
	req->body_has_members = facts.has_members;
	tg_request_facts_free(&facts);
	tg_yj_keys_free(&keys);

	/* The backend of the attempt whose stream comes back; it takes the
	 * usage request, as backends do by default. */
	req->backend = tg_config_backend(cfg, "a");
	ck_assert_ptr_nonnull(req->backend);
	return req;
}

static char *
body_text(struct tg_request *req)
{
	char *text = malloc(req->body_len + 1);

	ck_assert_uint_eq(evbuffer_get_length(req->body), req->body_len);
	evbuffer_copyout(req->body, text, req->body_len);
	text[req->body_len] = '\0';
	return text;
}

static const struct {
	const char *body;
	const char *sent;               /* NULL: unchanged */
} usage_cases[] = {
	{" {\"model\":\"gpt-4o\", \"stream\":true}",
	 " {\"stream_options\":{\"include_usage\":true},\"model\":\"gpt-4o\", \"stream\":true}"},
	{"{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{}}",
	 "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"},
	{"{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
	 "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"},
	{"{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", NULL},
	{"{\"model\":\"gpt-4o\",\"stream\":false}", NULL},
	{"{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":3}", NULL},
};

START_TEST(stream_usage_requested)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = streaming_request(w, cfg, usage_cases[_i].body);
	const char *expected = usage_cases[_i].sent ? usage_cases[_i].sent : usage_cases[_i].body;
	char *sent;

	ck_assert_int_eq(tg_metrics_stream_usage(req), 0);
	sent = body_text(req);
	ck_assert_str_eq(sent, expected);
	ck_assert_int_eq(req->metrics.usage_added, usage_cases[_i].sent != NULL);
	ck_assert_str_eq(req->model, "gpt-4o");
	if (usage_cases[_i].sent != NULL)
		ck_assert(json_is_true(json_object_get(json_object_get(req->body_json, "stream_options"),
		                                       "include_usage")));
	free(sent);
	end_request(req, 200);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(added_usage_hidden_from_client)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = streaming_request(w, cfg, "{\"model\":\"gpt-4o\",\"stream\":true}");
	struct tg_stream_event first = event("{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],"
	                                     "\"usage\":null}");
	struct tg_stream_event middle = event("{\"id\":\"c\", \"usage\" : null , \"choices\":[]}");
	struct tg_stream_event nested = event("{\"choices\":[{\"delta\":{\"usage\":null}}],"
	                                      "\"usage\":null}");
	struct tg_stream_event quoted = event("{\"choices\":[{\"delta\":{\"content\":"
	                                      "\"\\\"usage\\\" : null\"}}], \"usage\"\t:null}");
	struct tg_stream_event usage = event("{\"id\":\"c\",\"choices\":[],\"usage\":"
	                                     "{\"prompt_tokens\":7,\"completion_tokens\":3}}");
	char *text;

	ck_assert_int_eq(tg_metrics_stream_usage(req), 0);
	add_attempt(req, "a", req->start_ns, req->start_ns + MS, 200, TG_OUTCOME_SUCCESS, TG_OK);

	ck_assert_int_eq(tg_metrics_stream_event(req, &first), 0);
	text = event_text(&first);
	ck_assert_str_eq(text, "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
	ck_assert_ptr_nonnull(tg_stream_event_json(&first));
	ck_assert_ptr_null(json_object_get(first.json, "usage"));
	free(text);

	ck_assert_int_eq(tg_metrics_stream_event(req, &middle), 0);
	text = event_text(&middle);
	ck_assert_str_eq(text, "data: {\"id\":\"c\" , \"choices\":[]}\n\n");
	free(text);

	/* Two members named usage: not sure which is the top-level one. */
	ck_assert_int_eq(tg_metrics_stream_event(req, &nested), 0);
	text = event_text(&nested);
	ck_assert_str_eq(text, "data: {\"choices\":[{\"delta\":{\"usage\":null}}],\"usage\":null}\n\n");
	free(text);

	/* Inside a string the quotes are escaped, so the text there is not
	 * the pattern, and the top-level member goes. */
	ck_assert_int_eq(tg_metrics_stream_event(req, &quoted), 0);
	text = event_text(&quoted);
	ck_assert_str_eq(text, "data: {\"choices\":[{\"delta\":{\"content\":"
	                 "\"\\\"usage\\\" : null\"}}]}\n\n");
	free(text);

	ck_assert_int_eq(tg_metrics_stream_event(req, &usage), 1);
	ck_assert_uint_eq(req->metrics.usage.input, 7);
	ck_assert_uint_eq(req->metrics.usage.output, 3);
	ck_assert_uint_eq(req->metrics.content_events, 2);
	end_request(req, 200);

	free_event(&first);
	free_event(&middle);
	free_event(&nested);
	free_event(&quoted);
	free_event(&usage);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* Events and what the client gets of them, the same whether the member is
 * found where the digest saw it or by searching the bytes (data_at 0, as
 * for an event the filters wrote). */
static const struct {
	const char *data;
	const char *sent;
} null_usage_cases[] = {
	{"{\"id\":\"c\", \"usage\"\t: null, \"x\":1}", "{\"id\":\"c\", \"x\":1}"},
	{"{\"usage\":null , \"id\":\"c\"}", "{ \"id\":\"c\"}"},
	{"{\"id\":\"c\",\"usage\"\n:null}", NULL},       /* not the pattern */
	{"{\"id\":\"c\",\"\\u0075sage\":null}", NULL},   /* nor is this */
};

START_TEST(null_usage_found_either_way)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = streaming_request(w, cfg, "{\"model\":\"gpt-4o\",\"stream\":true}");
	const char *data = null_usage_cases[_i].data;
	const char *sent = null_usage_cases[_i].sent ? null_usage_cases[_i].sent : data;
	char expected[128];

	ck_assert_int_eq(tg_metrics_stream_usage(req), 0);
	snprintf(expected, sizeof(expected), "data: %s\n\n", sent);
	for (size_t data_at = 0; data_at <= strlen("data: "); data_at += strlen("data: ")) {
		struct tg_stream_event ev = event(data);
		char *text;

		ck_assert_int_eq(ev.digest.usage.shape, TG_USAGE_NULL);
		ev.data_at = data_at;
		ck_assert_int_eq(tg_metrics_stream_event(req, &ev), 0);
		text = event_text(&ev);
		ck_assert_str_eq(text, expected);
		free(text);
		free_event(&ev);
	}
	end_request(req, 200);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(client_usage_left_alone)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = streaming_request(w, cfg, "{\"model\":\"gpt-4o\",\"stream\":true,"
	                                           "\"stream_options\":{\"include_usage\":true}}");
	struct tg_stream_event chunk = event("{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],"
	                                     "\"usage\":null}");
	struct tg_stream_event usage = event("{\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
	                                     "\"completion_tokens\":3}}");
	char *text;

	ck_assert_int_eq(tg_metrics_stream_usage(req), 0);
	ck_assert_int_eq(tg_metrics_stream_event(req, &chunk), 0);
	text = event_text(&chunk);
	ck_assert_ptr_nonnull(strstr(text, "\"usage\":null"));
	free(text);
	ck_assert_int_eq(tg_metrics_stream_event(req, &usage), 0);
	ck_assert_uint_eq(req->metrics.usage.output, 3);
	end_request(req, 200);
	free_event(&chunk);
	free_event(&usage);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

START_TEST(anthropic_usage_read)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "gpt-4o");
	struct tg_stream_event start = event("{\"type\":\"message_start\",\"message\":{\"usage\":"
	                                     "{\"input_tokens\":5,\"cache_read_input_tokens\":20,"
	                                     "\"output_tokens\":1}}}");
	struct tg_stream_event delta = event("{\"type\":\"content_block_delta\",\"delta\":"
	                                     "{\"type\":\"text_delta\",\"text\":\"Hi\"}}");
	struct tg_stream_event end = event("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	                                   "\"end_turn\"},\"usage\":{\"output_tokens\":12}}");

	ck_assert_int_eq(tg_metrics_stream_event(req, &start), 0);
	ck_assert_int_eq(tg_metrics_stream_event(req, &delta), 0);
	ck_assert_int_eq(tg_metrics_stream_event(req, &end), 0);
	ck_assert_uint_eq(req->metrics.usage.input, 25);
	ck_assert_uint_eq(req->metrics.usage.cached_input, 20);
	ck_assert_uint_eq(req->metrics.usage.output, 12);
	ck_assert_uint_eq(req->metrics.content_events, 1);
	end_request(req, 200);
	free_event(&start);
	free_event(&delta);
	free_event(&end);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* Anthropic's cache writes cost cache_write_input, reads cached_input and
 * the rest of the input the input price. */
START_TEST(anthropic_cache_writes_priced)
{
	struct tg_config *cfg = load(
		"{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
		" \"routes\": [{\"name\": \"exact\", \"match\": {\"path\": \"/v1/messages\","
		"   \"model\": \"claude-x\"}, \"backends\": [\"a\"]}],"
		" \"pricing\": {\"models\": {\"claude-x\": {\"input\": 3, \"cached_input\": 0.3,"
		"   \"cache_write_input\": 3.75, \"output\": 15}}}}");
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req = new_request(w, cfg, "exact", "claude-x");
	struct tg_stream_event start = event("{\"type\":\"message_start\",\"message\":{\"usage\":"
	                                     "{\"input_tokens\":10,\"cache_read_input_tokens\":100,"
	                                     "\"cache_creation_input_tokens\":1000,"
	                                     "\"output_tokens\":1}}}");
	struct tg_stream_event end = event("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	                                   "\"end_turn\"},\"usage\":{\"output_tokens\":5}}");
	const char *labels = "{route=\"exact\",backend=\"a\",model=\"claude-x\"";
	char name[256], *text;

	add_attempt(req, "a", req->start_ns, req->start_ns + MS, 200, TG_OUTCOME_SUCCESS, TG_OK);
	ck_assert_int_eq(tg_metrics_stream_event(req, &start), 0);
	ck_assert_int_eq(tg_metrics_stream_event(req, &end), 0);
	end_request(req, 200);

	text = scrape(TG_METRICS_TEXT);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"input\"}", labels);
	ck_assert_double_eq(sample(text, name), 1110);
	snprintf(name, sizeof(name), "tollgate_tokens_total%s,type=\"cache_write_input\"}", labels);
	ck_assert_double_eq(sample(text, name), 1000);
	/* 10 * 3 + 100 * 0.3 + 1000 * 3.75 + 5 * 15, per million. */
	snprintf(name, sizeof(name), "tollgate_cost_total%s}", labels);
	ck_assert_double_eq_tol(sample(text, name), 3885e-6, 1e-12);
	free(text);
	free_event(&start);
	free_event(&end);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* --- sessions -------------------------------------------------------------------------- */

static double
turns_value(struct tg_sessions *s, size_t index)
{
	struct tg_series_set sets[TG_F_COUNT];
	double v;

	memset(sets, 0, sizeof(sets));
	ck_assert_int_eq(tg_sessions_collect(sets, s), 0);
	if (sets[index].n == 0)
		v = 0;
	else if (index == TG_F_SESSION_TURNS)
		v = sets[index].items[0].values[tg_bucket_specs[TG_BUCKETS_TURNS].n + 1];
	else
		v = sets[index].items[0].values[0];
	for (size_t f = 0; f < TG_F_COUNT; f++)
		tg_series_set_free(&sets[f]);
	return v;
}

START_TEST(session_ends_after_idle)
{
	struct tg_sessions *s = tg_sessions_new(64);
	uint64_t t0 = tg_now_ns();

	for (int i = 0; i < 3; i++)
		tg_sessions_touch(s, "conv-1", 6, t0 + (uint64_t)i * 100 * MS, 1000);
	tg_sessions_touch(s, "conv-2", 6, t0, 1000);

	tg_sessions_sweep(s, t0 + 500 * MS);
	ck_assert_double_eq(turns_value(s, TG_F_SESSION_TURNS), 0);
	ck_assert_double_eq(turns_value(s, TG_F_SESSIONS_ACTIVE), 2);

	tg_sessions_sweep(s, t0 + 3000 * MS);
	ck_assert_double_eq(turns_value(s, TG_F_SESSION_TURNS), 4);   /* 3 + 1 turns */
	ck_assert_double_eq(turns_value(s, TG_F_SESSIONS_ACTIVE), 0);
	tg_sessions_free(s);
}
END_TEST

START_TEST(session_resumed_after_expiry)
{
	struct tg_sessions *s = tg_sessions_new(64);
	uint64_t t0 = tg_now_ns();

	tg_sessions_touch(s, "conv", 4, t0, 1000);
	tg_sessions_touch(s, "conv", 4, t0 + 100 * MS, 1000);
	tg_sessions_touch(s, "conv", 4, t0 + 5000 * MS, 1000);    /* a new session */
	ck_assert_double_eq(turns_value(s, TG_F_SESSION_TURNS), 2);
	tg_sessions_sweep(s, t0 + 9000 * MS);
	ck_assert_double_eq(turns_value(s, TG_F_SESSION_TURNS), 3);
	tg_sessions_free(s);
}
END_TEST

START_TEST(session_table_bounded)
{
	struct tg_sessions *s = tg_sessions_new(8);   /* one window */
	uint64_t t0 = tg_now_ns();
	char key[16];

	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		tg_sessions_touch(s, key, strlen(key), t0 + (uint64_t)i * MS, 60000);
	}
	tg_sessions_sweep(s, t0 + 200 * MS);
	ck_assert_double_eq(turns_value(s, TG_F_SESSIONS_ACTIVE), 8);
	ck_assert_double_eq(turns_value(s, TG_F_SESSIONS_EVICTED), 92);
	ck_assert_double_eq(turns_value(s, TG_F_SESSION_TURNS), 92);
	tg_sessions_free(s);
}
END_TEST

START_TEST(resolver_names_bounded)
{
	struct tg_resolver_counters *first = tg_metrics_resolver_counters("n0.test");
	struct tg_resolver_counters *other;
	char name[32];
	char *text;

	/* A name asked for again gets its own counters back. */
	ck_assert_ptr_eq(tg_metrics_resolver_counters("n0.test"), first);
	for (int i = 1; i < TG_RESOLVER_NAMES_MAX + 3; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		tg_metrics_resolver_count(tg_metrics_resolver_counters(name), TG_RESOLVER_QUERY);
	}
	other = tg_metrics_resolver_counters("late.test");
	ck_assert_ptr_eq(other, tg_metrics_resolver_counters("later.test"));
	tg_metrics_resolver_count(first, TG_RESOLVER_FAILURE);

	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_resolver_queries_total{name=\"n0.test\"}"), 0);
	ck_assert_double_eq(sample(text, "tollgate_resolver_failures_total{name=\"n0.test\"}"), 1);
	ck_assert_double_eq(sample(text, "tollgate_resolver_queries_total{name=\"n63.test\"}"), 1);
	ck_assert(isnan(sample(text, "tollgate_resolver_queries_total{name=\"n64.test\"}")));
	ck_assert_double_eq(sample(text, "tollgate_resolver_queries_total{name=\"other\"}"), 3);
	free(text);
}
END_TEST

START_TEST(session_turns_from_requests)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct tg_worker *w = new_worker(cfg);
	struct tg_request *req;
	char *text;

	for (int i = 0; i < 3; i++) {
		req = new_request(w, cfg, "exact", "gpt-4o");
		tg_headers_add(&req->headers, "X-Session-Id", 12, "abc", 3);
		end_request(req, 200);
	}
	req = new_request(w, cfg, "exact", "gpt-4o");
	req->body_json = json_pack("{s:s}", "user", "u1");
	req->user = json_string_value(json_object_get(req->body_json, "user"));
	end_request(req, 200);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_sessions_active"), 2);
	free(text);

	/* End them as a scrape 3 s from now would. */
	tg_sessions_sweep(w->metrics->sessions, tg_now_ns() + 3000 * MS);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, "tollgate_session_turns_count"), 2);
	ck_assert_double_eq(sample(text, "tollgate_session_turns_sum"), 4);
	ck_assert_double_eq(sample(text, "tollgate_session_turns_bucket{le=\"3\"}"), 2);
	ck_assert_double_eq(sample(text, "tollgate_session_turns_bucket{le=\"2\"}"), 1);
	free(text);
	free_worker(w);
	tg_config_unref(cfg);
}
END_TEST

/* The first config loaded that enables sessions sizes the table, whatever
 * configs without sessions came before; later ones do not resize it. */
START_TEST(session_table_sized_once)
{
	static const char routes[] =
		"{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
		" \"routes\": [{\"name\": \"chat\", \"backends\": [\"a\"]}],"
		" \"sessions\": %s}";
	const char *sections[] = {"{\"enabled\": false}", "{\"max_sessions\": 1024}",
	                          "{\"max_sessions\": 4096}", "{\"enabled\": false}"};
	struct tg_config *cfgs[4];
	struct tg_sessions *table;
	char json[512];

	for (size_t i = 0; i < 4; i++) {
		snprintf(json, sizeof(json), routes, sections[i]);
		cfgs[i] = load(json);
	}
	tg_metrics_config_loaded(cfgs[0]);
	ck_assert_ptr_null(tg_metrics_registry.sessions);

	tg_metrics_config_loaded(cfgs[1]);
	table = tg_metrics_registry.sessions;
	ck_assert_ptr_nonnull(table);
	ck_assert_uint_eq(tg_metrics_registry.sessions_max, 1024);

	for (size_t i = 2; i < 4; i++) {
		tg_metrics_config_loaded(cfgs[i]);
		ck_assert_ptr_eq(tg_metrics_registry.sessions, table);
		ck_assert_uint_eq(tg_metrics_registry.sessions_max, 1024);
	}

	tg_sessions_free(table);
	tg_metrics_registry.sessions = NULL;
	tg_config_unref(tg_metrics_registry.live_config);
	tg_metrics_registry.live_config = NULL;
	for (size_t i = 0; i < 4; i++)
		tg_config_unref(cfgs[i]);
}
END_TEST

/* --- a scrape racing a worker ------------------------------------------------------------- */

struct race {
	struct tg_worker *worker;
	struct tg_config *config;
	int requests;
};

static void *
record_requests(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < r->requests; i++) {
		struct tg_request *req = new_request(r->worker, r->config, "exact", "gpt-4o");

		add_attempt(req, "a", req->start_ns, req->start_ns + 1, 200, TG_OUTCOME_SUCCESS, TG_OK);
		tg_metrics_content_event(req, req->start_ns + 2);
		end_request(req, 200);
	}
	return NULL;
}

START_TEST(scrape_races_worker)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	struct race r = {.worker = new_worker(cfg), .config = cfg, .requests = 200000};
	const char *series = "tollgate_requests_total{route=\"exact\",backend=\"a\","
	                     "model=\"gpt-4o\",code=\"200\"}";
	double last = 0;
	pthread_t thread;
	char *text;

	ck_assert_int_eq(pthread_create(&thread, NULL, record_requests, &r), 0);
	for (int i = 0; i < 50; i++) {
		double v;

		text = scrape(TG_METRICS_TEXT);
		v = sample(text, series);
		if (!isnan(v)) {
			ck_assert_msg(v >= last, "counter fell from %g to %g", last, v);
			last = v;
		}
		free(text);
	}
	pthread_join(thread, NULL);
	text = scrape(TG_METRICS_TEXT);
	ck_assert_double_eq(sample(text, series), r.requests);
	ck_assert_double_eq(sample(text, "tollgate_time_to_first_token_seconds_count{"
	                                 "route=\"exact\",backend=\"a\",model=\"gpt-4o\"}"), r.requests);
	free(text);
	free_worker(r.worker);
	tg_config_unref(cfg);
}
END_TEST

/* --- config --------------------------------------------------------------------------------- */

START_TEST(pricing_config_parsed)
{
	struct tg_config *cfg = load(BASE_CONFIG);
	const struct tg_pricing_config *p = cfg->pricing;

	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p->currency, "EUR");
	ck_assert_uint_eq(p->n_models, 2);
	for (size_t i = 0; i < p->n_models; i++) {
		/* gpt-4o-mini gives neither cache price: they are its input price. */
		if (strcmp(p->models[i].model, "gpt-4o-mini") == 0)
			ck_assert_double_eq(p->models[i].cached_input, 1);
		else
			ck_assert_double_eq(p->models[i].cached_input, 1.25);
		ck_assert_double_eq(p->models[i].cache_write_input, p->models[i].input);
	}
	ck_assert_int_eq(cfg->sessions->enabled, 1);
	ck_assert_str_eq(cfg->sessions->header, "x-session-id");
	ck_assert_uint_eq(cfg->sessions->idle_timeout, 1000);
	ck_assert_uint_eq(cfg->sessions->max_sessions, 65536);
	tg_config_unref(cfg);
}
END_TEST

static const struct {
	const char *section;
	const char *message;
} bad_sections[] = {
	{"\"pricing\": {\"models\": {\"m\": {\"input\": -1, \"output\": 1}}}",
	 "pricing.models.m.input: -1 is negative; use a price of 0 or more"},
	{"\"pricing\": {\"models\": {\"m\": {\"output\": 1}}}",
	 "pricing.models.m: missing required key \"input\""},
	{"\"pricing\": {\"models\": {\"other\": {\"input\": 1, \"output\": 1}}}",
	 "pricing.models.other: reserved name \"other\": the metrics label models the config "
	 "does not list as model=\"other\""},
	{"\"pricing\": {\"models\": {\"m\": {\"input\": \"1\", \"output\": 1}}}",
	 "pricing.models.m.input: expected a number"},
	{"\"sessions\": {\"header\": \"x session\"}",
	 "sessions.header: \"x session\" is not an HTTP header name"},
	{"\"sessions\": {\"idle_timeout\": \"10ms\"}", "sessions.idle_timeout:"},
	{"\"sessions\": {\"max_sessions\": 2}", "sessions.max_sessions:"},
};

START_TEST(bad_sections_reported)
{
	char json[1024], path[] = "/tmp/tg-check-metrics-XXXXXX";
	char *out = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&out, &len);
	int fd = mkstemp(path);

	snprintf(json, sizeof(json), "{\"backends\": {\"a\": {\"url\": \"http://127.0.0.1:1\"}},"
	         " \"routes\": [{\"name\": \"r\", \"backends\": [\"a\"]}], %s}", bad_sections[_i].section);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	ck_assert_ptr_null(tg_config_load(path, err));
	fclose(err);
	unlink(path);
	ck_assert_msg(strstr(out, bad_sections[_i].message) != NULL, "expected \"%s\" in: %s",
	              bad_sections[_i].message, out);
	free(out);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *basics = tcase_create("basics");
	TCase *record = tcase_create("record");
	TCase *expo = tcase_create("exposition");
	TCase *stream = tcase_create("stream");
	TCase *sessions = tcase_create("sessions");
	TCase *config = tcase_create("config");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
	tcase_add_test(basics, buckets_follow_genai);
	tcase_add_loop_test(basics, observe_picks_bucket, 0, N(observations));
	tcase_add_test(basics, status_codes_bounded);
	tcase_add_test(basics, unlisted_model_is_other);
	tcase_add_test(basics, routes_see_matching_models);
	suite_add_tcase(s, basics);

	tcase_add_test(record, request_counted_by_labels);
	tcase_add_test(record, in_flight_while_open);
	tcase_add_test(record, unlisted_models_add_no_series);
	tcase_add_test(record, stream_timing_in_buckets);
	tcase_add_test(record, tokens_and_cost_from_usage);
	tcase_add_test(record, anthropic_cache_writes_priced);
	tcase_add_test(record, usage_read_without_a_tree);
	tcase_add_test(record, stream_without_usage_estimated);
	tcase_add_test(record, abandonment_by_phase);
	tcase_add_test(record, overhead_excludes_upstream);
	tcase_add_test(record, filter_series_by_address);
	tcase_add_test(record, reload_keeps_counters);
	tcase_add_test(record, config_swap_retires_idle_table);
	tcase_add_test(record, old_snapshot_request_after_swap);
	tcase_add_test(record, shard_free_destroys_plugins_unlocked);
	tcase_add_test(record, shards_summed);
	tcase_add_test(record, scrape_races_worker);
	tcase_set_timeout(record, 60);
	suite_add_tcase(s, record);

	tcase_add_test(expo, labels_escaped);
	tcase_add_test(expo, text_format_well_formed);
	tcase_add_test(expo, openmetrics_format);
	tcase_add_test(expo, exemplars_of_sampled_traces);
	tcase_add_test(expo, request_end_shared_by_metrics_and_access_log);
	tcase_add_loop_test(expo, negotiates_format, 0, N(accepts));
	suite_add_tcase(s, expo);

	tcase_add_loop_test(stream, stream_usage_requested, 0, N(usage_cases));
	tcase_add_test(stream, added_usage_hidden_from_client);
	tcase_add_loop_test(stream, null_usage_found_either_way, 0,
	                    sizeof(null_usage_cases) / sizeof(null_usage_cases[0]));
	tcase_add_test(stream, client_usage_left_alone);
	tcase_add_test(stream, anthropic_usage_read);
	suite_add_tcase(s, stream);

	tcase_add_test(sessions, session_ends_after_idle);
	tcase_add_test(sessions, session_resumed_after_expiry);
	tcase_add_test(sessions, session_table_bounded);
	tcase_add_test(sessions, session_turns_from_requests);
	tcase_add_test(sessions, session_table_sized_once);
	tcase_add_test(sessions, resolver_names_bounded);
	tcase_set_timeout(sessions, 30);
	suite_add_tcase(s, sessions);

	tcase_add_test(config, pricing_config_parsed);
	tcase_add_loop_test(config, bad_sections_reported, 0, N(bad_sections));
	suite_add_tcase(s, config);
#undef N
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
