/*
 * A small plugin for the tests, so they can drive every outcome without a
 * trained model. It scores the label "__label__secret" 1 when the text
 * contains the keyword given by the filter's "model" setting (default
 * "EXFILTRATE"), and 0 otherwise. Text containing "PLUGIN-FAIL" makes
 * classify fail, and text containing "PLUGIN-SLOW" makes it take 300 ms
 * of the worker's time first, as a large model on a long prompt would.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tollgate/plugin.h>

struct keyword_state {
	char *keyword;
};

static const char secret_label[] = "__label__secret";

static int
keyword_init(const struct tollgate_plugin_config *config, void **state, char *err,
             size_t err_size)
{
	struct keyword_state *k = calloc(1, sizeof(*k));

	if (k == NULL || (k->keyword = strdup(config->model ? config->model : "EXFILTRATE")) == NULL) {
		free(k);
		strncpy(err, "out of memory", err_size - 1);
		return -1;
	}
	*state = k;
	return 0;
}

static int
contains(const char *text, size_t len, const char *word)
{
	size_t n = strlen(word);

	for (size_t i = 0; n <= len && i <= len - n; i++) {
		if (memcmp(text + i, word, n) == 0)
			return 1;
	}
	return 0;
}

static int
keyword_classify(void *state, const char *text, size_t len, struct tollgate_label *labels,
                 size_t max_labels)
{
	const struct keyword_state *k = state;

	if (contains(text, len, "PLUGIN-FAIL"))
		return -1;
	if (contains(text, len, "PLUGIN-SLOW")) {
		struct timespec slow = {0, 300 * 1000 * 1000};

		nanosleep(&slow, NULL);
	}
	if (max_labels == 0)
		return 0;
	labels[0].name = secret_label;
	labels[0].score = contains(text, len, k->keyword) ? 1.0 : 0.0;
	return 1;
}

static void
keyword_destroy(void *state)
{
	struct keyword_state *k = state;

	free(k->keyword);
	free(k);
}

const struct tollgate_plugin tollgate_plugin = {
	.abi_version = TOLLGATE_PLUGIN_ABI_VERSION,
	.name = "keyword",
	.init = keyword_init,
	.classify = keyword_classify,
	.destroy = keyword_destroy,
};
