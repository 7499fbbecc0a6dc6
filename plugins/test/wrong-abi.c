/*
 * A plugin built for an ABI version tollgate does not have, for the tests:
 * loading it must fail with a message that names the file and the versions.
 */
#include <stddef.h>

#include <tollgate/plugin.h>

static int
never_init(const struct tollgate_plugin_config *config, void **state, char *err,
           size_t err_size)
{
	(void)config;
	(void)state;
	(void)err;
	(void)err_size;
	return -1;
}

static int
never_classify(void *state, const char *text, size_t len, struct tollgate_label *labels,
               size_t max_labels)
{
	(void)state;
	(void)text;
	(void)len;
	(void)labels;
	(void)max_labels;
	return -1;
}

static void
never_destroy(void *state)
{
	(void)state;
}

const struct tollgate_plugin tollgate_plugin = {
	.abi_version = TOLLGATE_PLUGIN_ABI_VERSION + 41,
	.name = "wrong-abi",
	.init = never_init,
	.classify = never_classify,
	.destroy = never_destroy,
};
