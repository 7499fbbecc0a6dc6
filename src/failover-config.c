/*
 * Config sections of routing policy: a route's "backends" as tiers, its
 * "retry" policy, and a backend's "health" policy.
 *
 *   "backends": [{"balance": "ewma", "members": [{"name": "a", "weight": 3},
 *                                                {"name": "b", "model": "m"}]},
 *                "c"]
 *   "retry": {"on": ["connect", "timeout", 429, 500, 502, 503, 504, 529],
 *             "max_attempts": 3, "budget": 0.2, "min_retries": 3,
 *             "hold_stream": true}
 *   "health": {"consecutive_failures": 5, "error_ratio": 0.5, "window": "10s",
 *              "min_requests": 10, "base_ejection": "5s", "max_ejection": "5m",
 *              "max_cooldown": "60s",
 *              "probe": {"path": "/v1/models", "interval": "5s", "timeout": "2s"}}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "config-parse.h"
#include "config.h"
#include "failover-config.h"
#include "failover-t.h"

#define MAX_TIER_MEMBERS 64
#define MAX_WEIGHT 1000

/* --- ratios ----------------------------------------------------------------- */

static void
parse_ratio(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	double ratio;

	if (!json_is_number(value)) {
		report_type(ctx, path, "a number from 0 to 1", value);
		return;
	}
	ratio = json_number_value(value);
	if (ratio < 0.0 || ratio > 1.0) {
		report(ctx, path, "%g is out of range; use a number from 0 to 1", ratio);
		return;
	}
	*FIELD(base, s, double) = ratio;
}

/* --- retry -------------------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned bit;
} retry_kinds[] = {
	{"connect", TG_RETRY_CONNECT},
	{"timeout", TG_RETRY_TIMEOUT},
	{"reset", TG_RETRY_RESET},
	{"stream_error", TG_RETRY_STREAM_ERROR},
};

static void
parse_retry_on_entry(struct load_ctx *ctx, const char *path, json_t *entry,
                     struct tg_retry_policy *p)
{
	char q[QUOTE_LEN];

	if (json_is_integer(entry)) {
		json_int_t status = json_integer_value(entry);

		if (status < 400 || status > 599) {
			report(ctx, path, "status %lld cannot be retried; use 400 to 599",
			       (long long)status);
			return;
		}
		if (p->n_statuses == TG_RETRY_MAX_STATUSES) {
			report(ctx, path, "too many statuses; at most %d", TG_RETRY_MAX_STATUSES);
			return;
		}
		p->statuses[p->n_statuses++] = (int)status;
		return;
	}
	if (json_is_string(entry)) {
		for (size_t k = 0; k < ARRAY_LEN(retry_kinds); k++) {
			if (strcmp(json_string_value(entry), retry_kinds[k].name) == 0) {
				p->on |= retry_kinds[k].bit;
				return;
			}
		}
		report(ctx, path, "unknown failure kind %s; valid: connect, timeout, reset, "
		       "stream_error, or an HTTP status 400-599",
		       quote(json_string_value(entry), q, sizeof(q)));
		return;
	}
	report_type(ctx, path, "a failure kind or an HTTP status", entry);
}

static void
parse_retry_on(struct load_ctx *ctx, const char *path, json_t *value, void *base,
               const struct setting *s)
{
	struct tg_retry_policy *p = base;
	char child[PATH_LEN];
	size_t i;
	json_t *entry;

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of failure kinds and statuses", value);
		return;
	}
	p->on = 0;
	p->n_statuses = 0;
	json_array_foreach(value, i, entry)
		parse_retry_on_entry(ctx, path_index(child, path, i), entry, p);
}

static const struct setting retry_settings[] = {
	{ .key = "on", .type = T_CUSTOM, .parse = parse_retry_on, .doc_type = "array",
	  .def = "[\"connect\", \"timeout\", \"reset\", \"stream_error\", "
	         "429, 500, 502, 503, 504, 529]",
	  .help = "failures that move a request to the next backend: connect, timeout, "
	          "reset, stream_error, HTTP statuses; 502 implies reset, any 5xx stream_error" },
	{ .key = "max_attempts", .type = T_COUNT, .def = "3", .min = 1,
	  .max = TG_MAX_ATTEMPTS_CONFIG,
	  .offset = offsetof(struct tg_retry_policy, max_attempts),
	  .help = "attempts per request, the first included" },
	{ .key = "budget", .type = T_CUSTOM, .parse = parse_ratio, .def = "0.2",
	  .doc_type = "number", .offset = offsetof(struct tg_retry_policy, budget),
	  .help = "retries allowed as a fraction of the route's requests over 10 s" },
	{ .key = "min_retries", .type = T_COUNT, .def = "3", .max = 1000000,
	  .offset = offsetof(struct tg_retry_policy, min_retries),
	  .help = "retries allowed per 10 s whatever the budget, for quiet routes" },
	{ .key = "hold_stream", .type = T_BOOL, .def = "true",
	  .offset = offsetof(struct tg_retry_policy, hold_stream),
	  .help = "hold a stream's events until its first content while a failure could "
	          "still move it; false sends them at once" },
};
static const struct section retry_section = SECTION(retry_settings);

static void
parse_retry(struct load_ctx *ctx, const char *path, json_t *value, void *base,
            const struct setting *s)
{
	struct tg_retry_policy *p = parse_object(ctx, path, value, sizeof(*p), &retry_section);

	if (p == NULL)
		return;

	/* Failures without a status map to the statuses they stand for: a
	 * connection lost before the head is a 502, an error event before
	 * any content a 5xx sent in the stream. */
	for (size_t i = 0; i < p->n_statuses; i++) {
		if (p->statuses[i] == 502)
			p->on |= TG_RETRY_RESET;
		if (p->statuses[i] >= 500)
			p->on |= TG_RETRY_STREAM_ERROR;
	}
	*FIELD(base, s, struct tg_retry_policy *) = p;
}

const struct feature tg_retry_feature = {
	.parse = parse_retry, .free = free, .section = &retry_section,
	.doc_type = "object",
};

/* --- health ------------------------------------------------------------------- */

/* 1 when path, which starts with "/", is a path with an optional query as
 * a URL may hold one: libevent reads it after a stand-in scheme and host.
 * That keeps out spaces and control bytes, which would end the probe's
 * request line early, and a fragment, which a request never carries. */
static int
is_url_path(const char *path)
{
	char *url = NULL;
	struct evhttp_uri *uri;
	int ok;

	if (asprintf(&url, "http://host%s", path) < 0)
		return 0;
	uri = evhttp_uri_parse_with_flags(url, 0);
	ok = uri != NULL && evhttp_uri_get_fragment(uri) == NULL;
	if (uri != NULL)
		evhttp_uri_free(uri);
	free(url);
	return ok;
}

static void
parse_probe_path(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                 const struct setting *s)
{
	const char *raw;
	char q[QUOTE_LEN];
	char *probe_path = get_string(ctx, path, value, "a path such as \"/v1/models\"", &raw);

	if (probe_path == NULL)
		return;
	if (probe_path[0] != '/' || !is_url_path(probe_path)) {
		report(ctx, path, "invalid path %s; write a path that starts with \"/\", "
		       "such as \"/v1/models\", with an optional query and no fragment, "
		       "and percent-encode spaces, control bytes and other characters a "
		       "URL cannot hold", quote(raw, q, sizeof(q)));
		free(probe_path);
		return;
	}
	*FIELD(base, s, char *) = probe_path;
}

static const struct setting probe_settings[] = {
	{ .key = "path", .type = T_CUSTOM, .parse = parse_probe_path, .required = true,
	  .doc_type = "string", .offset = offsetof(struct tg_health_policy, probe_path),
	  .help = "path to GET, under the backend URL's path; a 2xx response is healthy" },
	{ .key = "interval", .type = T_DURATION, .def = "\"5s\"", .min = 100, .max = NO_MAX,
	  .offset = offsetof(struct tg_health_policy, probe_interval),
	  .help = "time between probes" },
	{ .key = "timeout", .type = T_DURATION, .def = "\"2s\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_health_policy, probe_timeout),
	  .help = "connect and response timeout of one probe" },
};
static const struct section probe_section = SECTION(probe_settings);

static const struct setting health_settings[] = {
	{ .key = "consecutive_failures", .type = T_COUNT, .def = "5", .max = 1000000,
	  .offset = offsetof(struct tg_health_policy, consecutive_failures),
	  .help = "eject after this many failed attempts in a row; 0 turns it off" },
	{ .key = "error_ratio", .type = T_CUSTOM, .parse = parse_ratio, .def = "0",
	  .doc_type = "number", .offset = offsetof(struct tg_health_policy, error_ratio),
	  .help = "eject when failures over the window pass this fraction; 0 turns it off" },
	{ .key = "window", .type = T_DURATION, .def = "\"10s\"", .min = 100, .max = NO_MAX,
	  .offset = offsetof(struct tg_health_policy, window),
	  .help = "window of error_ratio" },
	{ .key = "min_requests", .type = T_COUNT, .def = "10", .min = 1, .max = 1000000,
	  .offset = offsetof(struct tg_health_policy, min_requests),
	  .help = "attempts in the window before error_ratio applies" },
	{ .key = "base_ejection", .type = T_DURATION, .def = "\"5s\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_health_policy, base_ejection),
	  .help = "first ejection; each one in a row doubles it" },
	{ .key = "max_ejection", .type = T_DURATION, .def = "\"5m\"", .min = 1, .max = NO_MAX,
	  .offset = offsetof(struct tg_health_policy, max_ejection),
	  .help = "maximum ejection" },
	{ .key = "max_cooldown", .type = T_DURATION, .def = "\"60s\"", .min = 0,
	  .max = TG_MAX_COOLDOWN_MS, .offset = offsetof(struct tg_health_policy, max_cooldown),
	  .help = "maximum cooldown a 429, 503 or 529 can set; 0 ignores their Retry-After" },
	{ .key = "probe", .type = T_SECTION, .section = &probe_section,
	  .help = "active probe; off when absent" },
};
static const struct section health_section = SECTION(health_settings);

static void
parse_health(struct load_ctx *ctx, const char *path, json_t *value, void *base,
             const struct setting *s)
{
	struct tg_health_policy *h = parse_object(ctx, path, value, sizeof(*h), &health_section);
	char child[PATH_LEN];

	if (h == NULL)
		return;
	if (h->max_ejection < h->base_ejection)
		report(ctx, path_key(child, path, "max_ejection"),
		       "must not be shorter than base_ejection");
	*FIELD(base, s, struct tg_health_policy *) = h;
}

static void
free_health(void *obj)
{
	struct tg_health_policy *h = obj;

	free(h->probe_path);
	free(h);
}

const struct feature tg_health_feature = {
	.parse = parse_health, .free = free_health, .section = &health_section,
	.doc_type = "object",
};

/* --- tiers ---------------------------------------------------------------------- */

static const char *const balance_names[] = {
	[TG_BALANCE_ROUND_ROBIN] = "round_robin",
	[TG_BALANCE_LEAST_REQUESTS] = "least_requests",
	[TG_BALANCE_EWMA] = "ewma",
};

/* Resolve a backend name for a route; NULL after reporting. */
static struct tg_backend *
find_backend(struct load_ctx *ctx, const char *path, json_t *value)
{
	const char *raw;
	char *name = get_string(ctx, path, value, "a backend name", &raw);
	const struct tg_backend *b;

	if (name == NULL)
		return NULL;
	b = tg_config_backend(ctx->cfg, name);
	free(name);
	if (b == NULL)
		report_unknown_backend(ctx, path, raw);
	/* ctx->cfg is being built, hence not const yet. */
	return (struct tg_backend *)b;
}

static int
parse_member(struct load_ctx *ctx, const char *path, json_t *value,
             struct tg_tier_member *m)
{
	char child[PATH_LEN], q[QUOTE_LEN];
	const char *key;
	json_t *v;

	m->weight = 1;
	if (json_is_string(value)) {
		m->backend = find_backend(ctx, path, value);
		return m->backend ? 0 : -1;
	}
	if (!json_is_object(value)) {
		report_type(ctx, path, "a backend name or {\"name\", \"weight\", \"model\"}", value);
		return -1;
	}
	json_object_foreach(value, key, v) {
		path_key(child, path, key);
		if (strcmp(key, "name") == 0) {
			m->backend = find_backend(ctx, child, v);
		} else if (strcmp(key, "weight") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > MAX_WEIGHT)
				report(ctx, child, "must be an integer from 1 to %d", MAX_WEIGHT);
			else
				m->weight = (unsigned)json_integer_value(v);
		} else if (strcmp(key, "model") == 0) {
			m->model = get_string(ctx, child, v, "a model name", NULL);
			if (m->model != NULL)
				check_unreserved_name(ctx, child, m->model, "model", "other",
				                      "models the config does not list");
		} else {
			report(ctx, path, "unknown key %s; valid keys: name, weight, model",
			       quote(key, q, sizeof(q)));
		}
	}
	if (json_object_get(value, "name") == NULL)
		report(ctx, path, "missing key \"name\"");
	return m->backend ? 0 : -1;
}

static void
parse_balance(struct load_ctx *ctx, const char *path, json_t *value, struct tg_tier *t)
{
	char q[QUOTE_LEN];

	if (!json_is_string(value)) {
		report_type(ctx, path, "a balancer name", value);
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(balance_names); i++) {
		if (strcmp(json_string_value(value), balance_names[i]) == 0) {
			t->balance = (enum tg_balance)i;
			return;
		}
	}
	report(ctx, path, "unknown balancer %s; valid: round_robin, least_requests, ewma",
	       quote(json_string_value(value), q, sizeof(q)));
}

/* A group: {"balance": ..., "members": [...]}. */
static void
parse_group(struct load_ctx *ctx, const char *path, json_t *value, struct tg_tier *t)
{
	char child[PATH_LEN], member_path[PATH_LEN], q[QUOTE_LEN];
	json_t *members = json_object_get(value, "members");
	const char *key;
	json_t *v;

	json_object_foreach(value, key, v) {
		if (strcmp(key, "balance") == 0)
			parse_balance(ctx, path_key(child, path, key), v, t);
		else if (strcmp(key, "members") != 0)
			report(ctx, path, "unknown key %s; valid keys: balance, members",
			       quote(key, q, sizeof(q)));
	}

	path_key(child, path, "members");
	if (!json_is_array(members) || json_array_size(members) == 0 ||
	    json_array_size(members) > MAX_TIER_MEMBERS) {
		report(ctx, child, "must be an array of 1 to %d backends", MAX_TIER_MEMBERS);
		return;
	}
	t->members = calloc(json_array_size(members), sizeof(*t->members));
	if (t->members == NULL) {
		report_oom(ctx, child);
		return;
	}
	for (size_t i = 0; i < json_array_size(members); i++) {
		struct tg_tier_member *m = &t->members[t->n_members];

		if (parse_member(ctx, path_index(member_path, child, i),
		                 json_array_get(members, i), m) == 0)
			t->n_members++;
		else
			free(m->model);
	}
}

/* Whether the backend of member m of tier current appears before it in r:
 * a backend may appear once in a route, since a request never goes to the
 * same backend twice. */
static int
listed_before(const struct tg_route *r, const struct tg_tier *current, size_t m)
{
	const struct tg_backend *b = current->members[m].backend;

	for (size_t t = 0; t < r->n_tiers; t++) {
		for (size_t i = 0; i < r->tiers[t].n_members; i++) {
			if (r->tiers[t].members[i].backend == b)
				return 1;
		}
	}
	for (size_t i = 0; i < m; i++) {
		if (current->members[i].backend == b)
			return 1;
	}
	return 0;
}

/* Flatten the tiers into route->backends, in order, for what only needs
 * the list of backends. */
static void
flatten(struct load_ctx *ctx, const char *path, struct tg_route *r, size_t total)
{
	r->backends = calloc(total ? total : 1, sizeof(*r->backends));
	if (r->backends == NULL) {
		report_oom(ctx, path);
		return;
	}
	for (size_t t = 0; t < r->n_tiers; t++) {
		for (size_t i = 0; i < r->tiers[t].n_members; i++)
			r->backends[r->n_backends++] = r->tiers[t].members[i].backend;
	}
}

void
tg_parse_route_backends(struct load_ctx *ctx, const char *path, json_t *value,
                        void *base, const struct setting *s)
{
	struct tg_route *r = base;
	char child[PATH_LEN], q[QUOTE_LEN];
	size_t total = 0;

	(void)s;
	if (!json_is_array(value)) {
		report_type(ctx, path, "an array of backend names and groups", value);
		return;
	}
	if (json_array_size(value) == 0) {
		report(ctx, path, "must list at least one backend");
		return;
	}
	r->tiers = calloc(json_array_size(value), sizeof(*r->tiers));
	if (r->tiers == NULL) {
		report_oom(ctx, path);
		return;
	}

	for (size_t i = 0; i < json_array_size(value); i++) {
		json_t *entry = json_array_get(value, i);
		struct tg_tier *t = &r->tiers[r->n_tiers];

		path_index(child, path, i);
		if (json_is_object(entry) && json_object_get(entry, "members") != NULL) {
			parse_group(ctx, child, entry, t);
		} else {
			t->members = calloc(1, sizeof(*t->members));
			if (t->members == NULL) {
				report_oom(ctx, child);
				continue;
			}
			if (parse_member(ctx, child, entry, &t->members[0]) == 0)
				t->n_members = 1;
		}

		for (size_t m = 0; m < t->n_members; m++) {
			if (listed_before(r, t, m))
				report(ctx, child, "backend %s is listed twice",
				       quote(t->members[m].backend->name, q, sizeof(q)));
			t->total_weight += t->members[m].weight;
		}
		total += t->n_members;
		if (t->n_members > 0)
			r->n_tiers++;
		else
			free(t->members);
	}
	flatten(ctx, path, r, total);
}

void
tg_free_route_tiers(struct tg_route *r)
{
	for (size_t t = 0; t < r->n_tiers; t++) {
		for (size_t i = 0; i < r->tiers[t].n_members; i++)
			free(r->tiers[t].members[i].model);
		free(r->tiers[t].members);
	}
	free(r->tiers);
	r->tiers = NULL;
	r->n_tiers = 0;
}
