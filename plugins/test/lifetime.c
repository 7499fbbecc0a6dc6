/*
 * A plugin for the tests that watch when tollgate frees a configuration.
 * The filter's "model" setting names a file; init appends "init FILTER"
 * and destroy appends "destroy FILTER" to it, so a test can count the
 * configurations still alive. classify returns no label, so the filter
 * never matches.
 *
 * While a file named like the log file plus ".hold" exists, init and
 * destroy wait, after their line, until it is removed. A test uses that to
 * act while tollgate is inside one of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tollgate/plugin.h>

struct lifetime_state {
	char *path;
	char *filter;
};

/* Wait while path.hold exists. */
static void
wait_while_held(const char *path)
{
	char hold[4096];
	struct timespec pause = {0, 10 * 1000 * 1000};

	if (snprintf(hold, sizeof(hold), "%s.hold", path) >= (int)sizeof(hold))
		return;
	while (access(hold, F_OK) == 0)
		nanosleep(&pause, NULL);
}

/* Append one line, then wait while path.hold exists. A failed write shows
 * up in the test as a missing line. */
static void
append_line(const char *path, const char *event, const char *filter)
{
	FILE *f = fopen(path, "a");

	if (f == NULL)
		return;
	fprintf(f, "%s %s\n", event, filter);
	fclose(f);
	wait_while_held(path);
}

static int
lifetime_init(const struct tollgate_plugin_config *config, void **state, char *err,
              size_t err_size)
{
	struct lifetime_state *s;

	if (config->model == NULL) {
		snprintf(err, err_size, "\"model\" must name the file to log init and destroy in");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(config->model)) == NULL ||
	    (s->filter = strdup(config->filter)) == NULL) {
		if (s != NULL)
			free(s->path);
		free(s);
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	append_line(s->path, "init", s->filter);
	*state = s;
	return 0;
}

static int
lifetime_classify(void *state, const char *text, size_t len, struct tollgate_label *labels,
                  size_t max_labels)
{
	(void)state;
	(void)text;
	(void)len;
	(void)labels;
	(void)max_labels;
	return 0;
}

static void
lifetime_destroy(void *state)
{
	struct lifetime_state *s = state;

	append_line(s->path, "destroy", s->filter);
	free(s->path);
	free(s->filter);
	free(s);
}

const struct tollgate_plugin tollgate_plugin = {
	.abi_version = TOLLGATE_PLUGIN_ABI_VERSION,
	.name = "lifetime",
	.init = lifetime_init,
	.classify = lifetime_classify,
	.destroy = lifetime_destroy,
};
