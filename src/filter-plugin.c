/*
 * The plugin loader. Each loaded configuration gets its own instance, and
 * dlopen(3) counts references, so a reload that names the same file maps
 * it once.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tollgate/plugin.h>

#include "filter-plugin.h"

struct tg_plugin_instance {
	void *handle;
	const struct tollgate_plugin *api;
	void *state;
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

	if (p == NULL) {
		snprintf(err, err_size, "%s: out of memory", path);
		return NULL;
	}

	p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (p->handle == NULL) {
		snprintf(err, err_size, "cannot load plugin: %s", dlerror());
		free(p);
		return NULL;
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
	free(p);
	return NULL;
}

int
tg_plugin_classify(const struct tg_plugin_instance *p, const char *text, size_t len,
                   struct tollgate_label *labels, size_t max_labels)
{
	int n = p->api->classify(p->state, text, len, labels, max_labels);

	return n > (int)max_labels ? (int)max_labels : n;
}

void
tg_plugin_unload(struct tg_plugin_instance *p)
{
	p->api->destroy(p->state);
	dlclose(p->handle);
	free(p);
}
