/*
 * tollgate filter plugin ABI, version 1.
 *
 * A plugin is a shared object that tollgate loads with dlopen(3) for a
 * filter of type "plugin". It exports one object, named by
 * TOLLGATE_PLUGIN_SYMBOL, of type struct tollgate_plugin:
 *
 *     const struct tollgate_plugin tollgate_plugin = {
 *         .abi_version = TOLLGATE_PLUGIN_ABI_VERSION,
 *         .name = "my-classifier",
 *         .init = my_init,
 *         .classify = my_classify,
 *         .destroy = my_destroy,
 *     };
 *
 * (In C++, declare it extern "C".) tollgate rejects the plugin, naming its
 * file, when the symbol is missing or abi_version differs from the version
 * it was built with. Build against this header with
 * `pkg-config --cflags tollgate-plugin`; a plugin needs no tollgate library.
 *
 * Lifetime: init runs once per filter each time a configuration is loaded
 * (at start and on every reload), on the main thread. classify then runs on
 * the worker threads, several at once on the same state, so it must be
 * thread-safe and must not block for long: it runs on the event loop. Once
 * no request uses that configuration any more, destroy runs once, on any
 * thread.
 */
#ifndef TOLLGATE_PLUGIN_H
#define TOLLGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised only when a field of the structs below changes meaning or place;
 * a plugin built for another version is rejected at load. */
#define TOLLGATE_PLUGIN_ABI_VERSION 1

#define TOLLGATE_PLUGIN_SYMBOL "tollgate_plugin"

/* What init gets. Every pointer is valid during the init call only. */
struct tollgate_plugin_config {
	const char *filter;             /* the filter's name in the config */
	const char *model;              /* its "model" setting; NULL when unset */
	const char *config_json;        /* the filter's whole object, compact JSON */
};

/* One label with its score, from 0 to 1 inclusive. name must stay valid until
 * destroy (a label of the loaded model, say), since tollgate keeps the
 * pointer while it compares the score with the configured threshold. */
struct tollgate_label {
	const char *name;
	double score;
};

struct tollgate_plugin {
	uint32_t abi_version;           /* TOLLGATE_PLUGIN_ABI_VERSION */
	const char *name;               /* for messages */

	/*
	 * Prepare a classifier for one filter and store its state in *state.
	 * Returns 0, or -1 with a one-line reason in err (err_size bytes,
	 * NUL-terminated) that tollgate prints as a configuration error.
	 */
	int (*init)(const struct tollgate_plugin_config *config, void **state,
	            char *err, size_t err_size);

	/*
	 * Classify len bytes of UTF-8 text (not NUL-terminated). Write up to
	 * max_labels labels into labels, in any order. Returns how many were
	 * written, or -1 when classification failed; the filter's on_error
	 * setting then decides whether the text passes. A result that breaks
	 * this contract is handled as a failure, and the first one is logged:
	 * a count above max_labels, a label written past max_labels whatever
	 * the count, a NULL name, or a score that is NaN, infinite, below 0
	 * or above 1.
	 *
	 * The labels array has room for max_labels labels, and tollgate keeps
	 * as many again after them, marked before the call and checked after
	 * it, before any label is read. So a plugin that writes up to twice
	 * max_labels labels is caught and overwrites none of tollgate's memory.
	 * A write past twice max_labels is out of bounds. max_labels is 32 in
	 * this version, but may change without a new ABI version: read it
	 * rather than assume it.
	 *
	 * The texts are those the regex filters read, one call each: a
	 * message's content, for instance. The arguments of a tool call are a
	 * JSON text inside a string, which clients decode a second time, so
	 * they come decoded, one call per string value (escapes decoded) or
	 * number at any depth, keys left out. Arguments that are not JSON
	 * come whole, as written, then, unless that call gave a decision,
	 * each of their strings written with an escape, decoded.
	 */
	int (*classify)(void *state, const char *text, size_t len,
	                struct tollgate_label *labels, size_t max_labels);

	/* Release what init made. */
	void (*destroy)(void *state);
};

#ifdef __cplusplus
}
#endif

#endif
