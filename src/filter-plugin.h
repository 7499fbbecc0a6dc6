/*
 * Loading filter plugins (include/tollgate/plugin.h) with dlopen(3).
 */
#ifndef TOLLGATE_FILTER_PLUGIN_H
#define TOLLGATE_FILTER_PLUGIN_H

#include <stddef.h>

struct tollgate_label;

/* A loaded plugin with the state its init made for one filter. */
struct tg_plugin_instance;

/*
 * Load the shared object at path, check its ABI version and run its init
 * for filter (model and config_json are passed through). Returns the
 * instance, or NULL with a one-line reason in err that names path: a file
 * dlopen cannot load, a missing symbol, another ABI version, or the
 * plugin's own init error.
 */
struct tg_plugin_instance *tg_plugin_load(const char *path, const char *filter,
                                          const char *model, const char *config_json,
                                          char *err, size_t err_size);

/* Call the plugin's classify. Returns the number of labels, or -1 when it
 * failed or returned a result outside the ABI contract (logged once per
 * instance). Any thread. */
int tg_plugin_classify(struct tg_plugin_instance *p, const char *text,
                       size_t len, struct tollgate_label *labels, size_t max_labels);

/* Run the plugin's destroy and drop the dlopen reference. */
void tg_plugin_unload(struct tg_plugin_instance *p);

#endif
