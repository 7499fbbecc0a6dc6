/*
 * The plugin loader. Each loaded configuration gets its own instance, and
 * dlopen(3) counts references, so a reload that names the same file maps
 * it once.
 *
 * A classify result outside the ABI contract counts as a failed classify,
 * so the filter's on_error decides, as it does for -1. That is more labels
 * than there was room for, a label written past that room whatever count
 * classify returned, a label without a name, or a score that is not a
 * number from 0 to 1. The first such result of an instance is logged.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>

#include <tollgate/plugin.h>

#include "filter-plugin.h"
#include "log.h"

struct tg_plugin_instance {
	void *handle;
	const struct tollgate_plugin *api;
	void *state;
	char *path;                     /* for messages */
	char *filter;
	atomic_flag reported;           /* a result outside the contract was logged */
};

/* Check what the plugin exports before anything of it runs. */
static const char *
check_api(const struct tollgate_plugin *api, char *buf, size_t size)
{
	if (api->abi_version != TOLLGATE_PLUGIN_ABI_VERSION) {
		snprintf(buf, size, "plugin ABI version %u, but this tollgate supports "
		         "version %d; rebuild the plugin against its include/tollgate/plugin.h",
		         (unsigned)api->abi_version, TOLLGATE_PLUGIN_ABI_VERSION);
		return buf;
	}
	if (api->init == NULL || api->classify == NULL || api->destroy == NULL)
		return "plugin leaves init, classify or destroy NULL";
	return NULL;
}

struct tg_plugin_instance *
tg_plugin_load(const char *path, const char *filter, const char *model,
               const char *config_json, char *err, size_t err_size)
{
	struct tollgate_plugin_config config = {filter, model, config_json};
	struct tg_plugin_instance *p = calloc(1, sizeof(*p));
	char reason[256], init_err[256] = "";
	const char *problem;

	if (p == NULL || (p->path = strdup(path)) == NULL ||
	    (p->filter = strdup(filter)) == NULL) {
		snprintf(err, err_size, "%s: out of memory", path);
		goto fail_alloc;
	}
	atomic_flag_clear(&p->reported);

	p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (p->handle == NULL) {
		snprintf(err, err_size, "cannot load plugin: %s", dlerror());
		goto fail_alloc;
	}

	p->api = dlsym(p->handle, TOLLGATE_PLUGIN_SYMBOL);
	if (p->api == NULL) {
		snprintf(err, err_size, "%s: symbol \"%s\" not found; is it a tollgate plugin?",
		         path, TOLLGATE_PLUGIN_SYMBOL);
		goto fail;
	}
	problem = check_api(p->api, reason, sizeof(reason));
	if (problem != NULL) {
		snprintf(err, err_size, "%s: %s", path, problem);
		goto fail;
	}

	if (p->api->init(&config, &p->state, init_err, sizeof(init_err)) != 0) {
		init_err[sizeof(init_err) - 1] = '\0';
		snprintf(err, err_size, "%s: plugin init failed: %s", path,
		         init_err[0] ? init_err : "no reason given");
		goto fail;
	}
	return p;

fail:
	dlclose(p->handle);
fail_alloc:
	if (p != NULL) {
		free(p->path);
		free(p->filter);
	}
	free(p);
	return NULL;
}

/* What tollgate writes into the labels past max_labels before a call: a
 * plugin cannot write this name, since it does not know its address. */
static const char slack_mark[] = "(past max_labels)";

static void
mark_slack(struct tg_plugin_labels *out)
{
	for (size_t i = TG_PLUGIN_LABELS_MAX; i < TG_PLUGIN_LABELS_ROOM; i++) {
		out->items[i].name = slack_mark;
		out->items[i].score = -1;
	}
}

/* Whether classify wrote into the labels past max_labels. */
static int
slack_written(const struct tg_plugin_labels *out)
{
	for (size_t i = TG_PLUGIN_LABELS_MAX; i < TG_PLUGIN_LABELS_ROOM; i++) {
		if (out->items[i].name != slack_mark || out->items[i].score != -1)
			return 1;
	}
	return 0;
}

/* Write into buf what breaks the ABI contract in a result of n (>= 0)
 * labels, and return buf; NULL when the result keeps it. */
static const char *
result_problem(const struct tg_plugin_labels *out, int n, char *buf, size_t size)
{
	if (n > TG_PLUGIN_LABELS_MAX) {
		snprintf(buf, size, "classify returned %d labels, more than the %d it had room for",
		         n, TG_PLUGIN_LABELS_MAX);
		return buf;
	}
	if (slack_written(out)) {
		snprintf(buf, size, "classify wrote past the %d labels it had room for, then "
		         "returned %d", TG_PLUGIN_LABELS_MAX, n);
		return buf;
	}
	for (int i = 0; i < n; i++) {
		double score = out->items[i].score;

		if (out->items[i].name == NULL) {
			snprintf(buf, size, "label %d of %d has a NULL name", i + 1, n);
			return buf;
		}
		if (!isfinite(score)) {
			snprintf(buf, size, "label %d of %d has the score %g, which is not a "
			         "finite number", i + 1, n, score);
			return buf;
		}
		if (score < 0 || score > 1) {
			snprintf(buf, size, "label %d of %d has the score %g, outside 0 to 1",
			         i + 1, n, score);
			return buf;
		}
	}
	return NULL;
}

int
tg_plugin_classify(struct tg_plugin_instance *p, const char *text, size_t len,
                   struct tg_plugin_labels *out)
{
	const char *problem;
	char buf[128];
	int n;

	mark_slack(out);
	n = p->api->classify(p->state, text, len, out->items, TG_PLUGIN_LABELS_MAX);
	if (n < 0)
		return -1;
	problem = result_problem(out, n, buf, sizeof(buf));
	if (problem == NULL)
		return n;

	/* Once per instance: a plugin that breaks the contract tends to break
	 * it on every text. */
	if (!atomic_flag_test_and_set(&p->reported))
		tg_error("filter \"%s\": plugin %s: %s; counted as a classifier error, so "
		         "on_error decides; later ones are not logged", p->filter, p->path, problem);
	return -1;
}

void
tg_plugin_unload(struct tg_plugin_instance *p)
{
	p->api->destroy(p->state);
	dlclose(p->handle);
	free(p->path);
	free(p->filter);
	free(p);
}
