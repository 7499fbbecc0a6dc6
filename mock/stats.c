/*
 * Counters and the request log behind /_mock/stats and /_mock/requests.
 */
#include <string.h>

#include "mock.h"

void
mock_log_request(struct mock *m, json_t *record)
{
	size_t slot;

	if (m->log_count == MOCK_LOG_MAX) {
		json_decref(m->log[m->log_start]);
		m->log[m->log_start] = record;
		m->log_start = (m->log_start + 1) % MOCK_LOG_MAX;
		return;
	}
	slot = (m->log_start + m->log_count) % MOCK_LOG_MAX;
	m->log[slot] = record;
	m->log_count++;
}

json_t *
mock_log_dump(const struct mock *m)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < m->log_count; i++)
		if (json_array_append(list,
		        m->log[(m->log_start + i) % MOCK_LOG_MAX]) < 0) {
			json_decref(list);
			return NULL;
		}
	return list;
}

void
mock_reset(struct mock *m)
{
	for (size_t i = 0; i < m->log_count; i++)
		json_decref(m->log[(m->log_start + i) % MOCK_LOG_MAX]);
	m->log_start = 0;
	m->log_count = 0;
	memset(&m->stats, 0, sizeof(m->stats));
}
