/*
 * The exposition. A scrape gathers the series of every shard and of the
 * archive under the registry lock, sums equal ones outside it, and writes
 * them in the Prometheus text format 0.0.4 or in OpenMetrics 1.0.0. The two
 * differ here in the family names of counters, the escaping of help text,
 * the form of whole-number bucket bounds, the type of build_info and the
 * closing "# EOF".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "config.h"
#include "metrics-table.h"
#include "metrics.h"
#include "request.h"

/* --- content negotiation ------------------------------------------------------ */

/* The q value of one media range's parameters, 1 when absent. */
static double
range_quality(const char *params, size_t len)
{
	const char *q = NULL;

	for (size_t i = 0; i + 2 <= len; i++) {
		if ((i == 0 || params[i - 1] == ';' || params[i - 1] == ' ') &&
		    strncasecmp(params + i, "q=", 2) == 0)
			q = params + i + 2;
	}
	return q != NULL ? strtod(q, NULL) : 1.0;
}

enum tg_metrics_format
tg_metrics_negotiate(const char *accept)
{
	double best_openmetrics = 0, best_text = 0;
	const char *p = accept;

	if (accept == NULL)
		return TG_METRICS_TEXT;

	/* Prometheus 2.42 sends "application/openmetrics-text;version=1.0.0,
	 * application/openmetrics-text;version=0.0.1;q=0.75,
	 * text/plain;version=0.0.4;q=0.5" and a wildcard at q=0.1. */
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		const char *range = p + strspn(p, " \t");
		size_t range_len = len - (size_t)(range - p);
		size_t type_len = strcspn(range, ";,");
		double q = range_quality(range + type_len, range_len - type_len);

		if (type_len >= 28 && strncasecmp(range, "application/openmetrics-text", 28) == 0)
			best_openmetrics = fmax(best_openmetrics, q);
		else
			best_text = fmax(best_text, q);
		p += len;
		if (*p == ',')
			p++;
	}
	return best_openmetrics > 0 && best_openmetrics >= best_text ? TG_METRICS_OPENMETRICS
	                                                             : TG_METRICS_TEXT;
}

const char *
tg_metrics_content_type(enum tg_metrics_format format)
{
	return format == TG_METRICS_OPENMETRICS
	       ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
	       : "text/plain; version=0.0.4; charset=utf-8";
}

/* --- writing ------------------------------------------------------------------------ */

/* The shortest decimal form that reads back as v. */
static void
format_double(char *buf, size_t size, double v)
{
	if (isinf(v)) {
		snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int precision = 6; precision <= 17; precision++) {
		snprintf(buf, size, "%.*g", precision, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static int
write_value(struct evbuffer *out, double v)
{
	char buf[40];

	format_double(buf, sizeof(buf), v);
	return evbuffer_add(out, buf, strlen(buf));
}

/* HELP text: both formats escape backslash and newline; OpenMetrics also
 * escapes the double quote. */
static int
write_help_text(struct evbuffer *out, const char *text, enum tg_metrics_format format)
{
	int rc = 0;

	for (const char *p = text; *p != '\0' && rc == 0; p++) {
		if (*p == '\\')
			rc = evbuffer_add(out, "\\\\", 2);
		else if (*p == '\n')
			rc = evbuffer_add(out, "\\n", 2);
		else if (*p == '"' && format == TG_METRICS_OPENMETRICS)
			rc = evbuffer_add(out, "\\\"", 2);
		else
			rc = evbuffer_add(out, p, 1);
	}
	return rc;
}

int
tg_metrics_write_header(struct evbuffer *out, const char *name, const char *type,
                        const char *help, enum tg_metrics_format format)
{
	size_t len = strlen(name);
	int rc;

	/* In OpenMetrics a counter family is named without its _total. */
	if (format == TG_METRICS_OPENMETRICS && strcmp(type, "counter") == 0 &&
	    len > 6 && strcmp(name + len - 6, "_total") == 0)
		len -= 6;
	rc = evbuffer_add_printf(out, "# HELP %.*s ", (int)len, name) < 0;
	rc |= write_help_text(out, help, format);
	rc |= evbuffer_add_printf(out, "\n# TYPE %.*s %s\n", (int)len, name, type) < 0;
	return rc ? -1 : 0;
}

/* One sample line: name, {labels} unless there are none, the value, and
 * an exemplar when ex is not NULL. */
static int
write_sample(struct evbuffer *out, const char *name, const char *suffix,
             const char *labels, const char *extra, double v,
             const struct tg_exemplar_copy *ex)
{
	int braces = labels[0] != '\0' || extra[0] != '\0';
	int comma = labels[0] != '\0' && extra[0] != '\0';
	int rc;

	rc = evbuffer_add_printf(out, "%s%s%s%s%s%s%s ", name, suffix, braces ? "{" : "",
	                         labels, comma ? "," : "", extra, braces ? "}" : "") < 0;
	rc |= write_value(out, v);
	if (ex != NULL) {
		rc |= evbuffer_add_printf(out, " # {trace_id=\"%016llx%016llx\"} ",
		                          (unsigned long long)ex->trace_hi,
		                          (unsigned long long)ex->trace_lo) < 0;
		rc |= write_value(out, ex->value);
		rc |= evbuffer_add_printf(out, " %.3f", ex->time) < 0;
	}
	rc |= evbuffer_add(out, "\n", 1);
	return rc ? -1 : 0;
}

int
tg_metrics_write_sample(struct evbuffer *out, const char *name, const char *labels, double v)
{
	return write_sample(out, name, "", labels, "", v, NULL);
}

/* A bucket bound as an "le" value. Whole numbers are written "1.0" in
 * OpenMetrics and "1" in the text format, as Prometheus' Go client library
 * writes them. */
static void
format_bound(char *buf, size_t size, double bound, enum tg_metrics_format format)
{
	format_double(buf, size, bound);
	if (format == TG_METRICS_OPENMETRICS && strpbrk(buf, ".eI") == NULL)
		strncat(buf, ".0", size - strlen(buf) - 1);
}

static int
write_histogram(struct evbuffer *out, const struct tg_family_def *def,
                const struct tg_series *s, enum tg_metrics_format format)
{
	const struct tg_bucket_spec *spec = &tg_bucket_specs[def->buckets];
	double cumulative = 0;
	char extra[64], bound[40];
	int rc = 0;

	for (size_t i = 0; i <= spec->n && rc == 0; i++) {
		const struct tg_exemplar_copy *ex = NULL;

		cumulative += s->values[i];
		if (i < spec->n)
			format_bound(bound, sizeof(bound),
			             (double)spec->bounds[i] / spec->ticks_per_unit, format);
		else
			snprintf(bound, sizeof(bound), "+Inf");
		snprintf(extra, sizeof(extra), "le=\"%s\"", bound);

		/* Exemplars exist in OpenMetrics only. */
		if (format == TG_METRICS_OPENMETRICS && s->exemplars != NULL &&
		    (s->exemplars[i].trace_hi != 0 || s->exemplars[i].trace_lo != 0))
			ex = &s->exemplars[i];
		rc = write_sample(out, def->name, "_bucket", s->labels, extra, cumulative, ex);
	}
	rc |= write_sample(out, def->name, "_sum", s->labels, "", s->values[spec->n + 1], NULL);
	rc |= write_sample(out, def->name, "_count", s->labels, "", cumulative, NULL);
	return rc;
}

static const char *const type_names[] = {
	[TG_COUNTER] = "counter",
	[TG_GAUGE] = "gauge",
	[TG_HISTOGRAM] = "histogram",
};

static int
write_family(struct evbuffer *out, enum tg_family f, const struct tg_series_set *set,
             const char *help, enum tg_metrics_format format)
{
	const struct tg_family_def *def = &tg_families[f];
	int rc = tg_metrics_write_header(out, def->name, type_names[def->type], help, format);

	for (size_t i = 0; i < set->n && rc == 0; i++) {
		if (def->type == TG_HISTOGRAM)
			rc = write_histogram(out, def, &set->items[i], format);
		else
			rc = tg_metrics_write_sample(out, def->name, set->items[i].labels,
			                             set->items[i].values[0]);
	}
	return rc;
}

/* --- gathering ----------------------------------------------------------------------- */

/* The state of one scrape: the series sets and the figures kept apart. */
struct scrape {
	struct tg_series_set sets[TG_F_COUNT];
	double in_flight;
	double streams_open;
	char currency[64];              /* of the latest config loaded */
};

static int
gather_shard(struct scrape *sc, struct tg_metrics_shard *shard)
{
	int rc = 0;

	sc->in_flight += (double)atomic_load_explicit(&shard->in_flight, memory_order_relaxed);
	sc->streams_open += (double)atomic_load_explicit(&shard->streams_open,
	                                                 memory_order_relaxed);

	for (struct tg_metrics_table *t = shard->tables; t != NULL; t = t->next)
		rc |= tg_metrics_collect_table(sc->sets, t);
	return rc;
}

/* The figures of the latest config loaded, whether or not a worker has
 * built its table yet (registry lock held). */
static int
gather_live_config(struct scrape *sc, const struct tg_config *cfg)
{
	if (cfg == NULL)
		return 0;
	if (cfg->pricing != NULL && cfg->pricing->currency != NULL)
		snprintf(sc->currency, sizeof(sc->currency), "%s", cfg->pricing->currency);
	return tg_metrics_collect_backend_up(sc->sets, cfg);
}

static int
gather(struct scrape *sc)
{
	struct tg_metrics_registry *reg = &tg_metrics_registry;
	int rc = 0;

	pthread_mutex_lock(&reg->lock);
	for (struct tg_metrics_shard *shard = reg->shards; shard != NULL; shard = shard->next)
		rc |= gather_shard(sc, shard);
	for (size_t f = 0; f < TG_F_COUNT; f++) {
		const struct tg_series_set *archived = &reg->archive[f];

		for (size_t i = 0; i < archived->n && rc == 0; i++) {
			const struct tg_series *s = &archived->items[i];

			rc = tg_series_add(&sc->sets[f], (enum tg_family)f, s->labels, s->values);
			if (rc == 0 && s->exemplars != NULL)
				rc = tg_series_add_exemplars(&sc->sets[f], (enum tg_family)f, s->exemplars);
		}
	}
	if (reg->sessions != NULL) {
		tg_sessions_sweep(reg->sessions, tg_now_ns());
		rc |= tg_sessions_collect(sc->sets, reg->sessions);
	}
	rc |= tg_metrics_collect_resolver(sc->sets, reg);
	rc |= gather_live_config(sc, reg->live_config);
	pthread_mutex_unlock(&reg->lock);

	rc |= tg_series_add(&sc->sets[TG_F_IN_FLIGHT], TG_F_IN_FLIGHT, "", &sc->in_flight);
	rc |= tg_series_add(&sc->sets[TG_F_STREAMS_OPEN], TG_F_STREAMS_OPEN, "",
	                    &sc->streams_open);
	return rc;
}

/* Append one family of another module with a single sample and no labels. */
static int
write_single(struct evbuffer *out, enum tg_metrics_format format, const char *type,
             const char *name, const char *help, uint64_t value)
{
	if (tg_metrics_write_header(out, name, type, help, format) != 0)
		return -1;
	return tg_metrics_write_sample(out, name, "", (double)value);
}

int
tg_metrics_write_counter(struct evbuffer *out, enum tg_metrics_format format,
                         const char *name, const char *help, uint64_t value)
{
	return write_single(out, format, "counter", name, help, value);
}

int
tg_metrics_write_gauge(struct evbuffer *out, enum tg_metrics_format format,
                       const char *name, const char *help, uint64_t value)
{
	return write_single(out, format, "gauge", name, help, value);
}

int
tg_metrics_scrape_end(struct evbuffer *out, enum tg_metrics_format format)
{
	if (format != TG_METRICS_OPENMETRICS)
		return 0;
	return evbuffer_add(out, "# EOF\n", 6);
}

int
tg_metrics_scrape(struct evbuffer *out, enum tg_metrics_format format)
{
	struct scrape *sc = calloc(1, sizeof(*sc));
	char cost_help[256];
	int rc;

	if (sc == NULL)
		return -1;
	rc = gather(sc);

	for (size_t f = 0; f < TG_F_COUNT && rc == 0; f++) {
		const char *help = tg_families[f].help;

		if (f == TG_F_COST && sc->currency[0] != '\0') {
			snprintf(cost_help, sizeof(cost_help), "%s Currency: %s.", help, sc->currency);
			help = cost_help;
		}
		tg_series_set_merge(&sc->sets[f], (enum tg_family)f);
		rc = write_family(out, (enum tg_family)f, &sc->sets[f], help, format);
	}
	if (rc == 0)
		rc = tg_metrics_write_process(out, format);

	for (size_t f = 0; f < TG_F_COUNT; f++)
		tg_series_set_free(&sc->sets[f]);
	free(sc);
	return rc;
}
