/*
 * Loading filter plugins (include/tollgate/plugin.h) with dlopen(3).
 */
#ifndef TOLLGATE_FILTER_PLUGIN_H
#define TOLLGATE_FILTER_PLUGIN_H

#include <stddef.h>

#include <tollgate/plugin.h>

/* Labels a plugin may return from one call: the max_labels it is given.
 * A classifier with more labels must pick the ones it returns. */
#define TG_PLUGIN_LABELS_MAX 32

/* Size of tg_plugin_labels, the checked room past max_labels included. */
#define TG_PLUGIN_LABELS_ROOM (2 * TG_PLUGIN_LABELS_MAX)

/*
 * The buffer classify writes its labels into. The room past
 * TG_PLUGIN_LABELS_MAX is not the plugin's: tollgate marks it before the
 * call and checks it after. So a plugin that writes past max_labels writes
 * into memory tollgate owns, and is caught before its result is read.
 */
struct tg_plugin_labels {
	struct tollgate_label items[TG_PLUGIN_LABELS_ROOM];
};

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

/* Call the plugin's classify with room for TG_PLUGIN_LABELS_MAX labels in
 * out. Returns the number of labels, in out->items, or -1 when it failed or
 * returned a result outside the ABI contract (logged once per instance).
 * Any thread. */
int tg_plugin_classify(struct tg_plugin_instance *p, const char *text, size_t len,
                       struct tg_plugin_labels *out);

/* Run the plugin's destroy and drop the dlopen reference. */
void tg_plugin_unload(struct tg_plugin_instance *p);

#endif
