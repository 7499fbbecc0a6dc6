/*
 * A plugin for the tests that returns results outside the ABI contract.
 * The filter's "model" setting picks the fault:
 *   too-many     writes and returns one label more than max_labels
 *   write-past   writes one label more than max_labels, returns 1
 *   null-name    returns a label without a name
 *   nan, inf     return such a score
 *   above-one    returns the score 1.5
 *   below-zero   returns the score -0.5
 * Any other model returns the label "__label__ok" with the score 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tollgate/plugin.h>

enum fault {
	FAULT_NONE, FAULT_TOO_MANY, FAULT_WRITE_PAST, FAULT_NULL_NAME, FAULT_NAN, FAULT_INF,
	FAULT_ABOVE_ONE, FAULT_BELOW_ZERO,
};

struct contract_state {
	enum fault fault;
};

static const char ok_label[] = "__label__ok";

static enum fault
fault_of(const char *model)
{
	static const struct {
		const char *name;
		enum fault fault;
	} faults[] = {
		{"too-many", FAULT_TOO_MANY},
		{"write-past", FAULT_WRITE_PAST},
		{"null-name", FAULT_NULL_NAME},
		{"nan", FAULT_NAN},
		{"inf", FAULT_INF},
		{"above-one", FAULT_ABOVE_ONE},
		{"below-zero", FAULT_BELOW_ZERO},
	};

	for (size_t i = 0; model != NULL && i < sizeof(faults) / sizeof(faults[0]); i++) {
		if (strcmp(model, faults[i].name) == 0)
			return faults[i].fault;
	}
	return FAULT_NONE;
}

static int
contract_init(const struct tollgate_plugin_config *config, void **state, char *err,
              size_t err_size)
{
	struct contract_state *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	s->fault = fault_of(config->model);
	*state = s;
	return 0;
}

static int
contract_classify(void *state, const char *text, size_t len, struct tollgate_label *labels,
                  size_t max_labels)
{
	const struct contract_state *s = state;

	(void)text;
	(void)len;
	if (max_labels == 0)
		return 0;
	labels[0].name = ok_label;
	labels[0].score = 0;

	switch (s->fault) {
	case FAULT_TOO_MANY:
		for (size_t i = 1; i <= max_labels; i++)
			labels[i] = labels[0];
		return (int)max_labels + 1;
	case FAULT_WRITE_PAST:
		labels[max_labels] = labels[0];
		break;
	case FAULT_NULL_NAME:
		labels[0].name = NULL;
		break;
	case FAULT_NAN:
		labels[0].score = NAN;
		break;
	case FAULT_INF:
		labels[0].score = INFINITY;
		break;
	case FAULT_ABOVE_ONE:
		labels[0].score = 1.5;
		break;
	case FAULT_BELOW_ZERO:
		labels[0].score = -0.5;
		break;
	case FAULT_NONE:
		break;
	}
	return 1;
}

static void
contract_destroy(void *state)
{
	free(state);
}

const struct tollgate_plugin tollgate_plugin = {
	.abi_version = TOLLGATE_PLUGIN_ABI_VERSION,
	.name = "contract",
	.init = contract_init,
	.classify = contract_classify,
	.destroy = contract_destroy,
};
