/*
 * The `"usage": null` member of a stream chunk, in the chunk's text.
 */
#include <string.h>

#include "null-usage.h"

static const char USAGE_KEY[] = "\"usage\"";

_Static_assert(sizeof(USAGE_KEY) - 1 == TG_USAGE_KEY_LEN, "the key's length");

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

const char *
tg_null_usage_end(const char *p, const char *end)
{
	if ((size_t)(end - p) < TG_USAGE_KEY_LEN || memcmp(p, USAGE_KEY, TG_USAGE_KEY_LEN) != 0)
		return NULL;
	p += TG_USAGE_KEY_LEN;
	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p++ != ':')
		return NULL;
	while (p < end && is_blank(*p))
		p++;
	if (end - p < 4 || memcmp(p, "null", 4) != 0)
		return NULL;
	return p + 4;
}

/* The start of the `"usage": null` member whose colon is at colon, or
 * NULL when there is none. The key is what ends at the last byte before
 * the colon that is not a blank. */
static const char *
null_usage_before(const char *data, const char *colon, const char *end)
{
	const char *p = colon;

	while (p > data && is_blank(p[-1]))
		p--;
	if ((size_t)(p - data) < TG_USAGE_KEY_LEN)
		return NULL;
	p -= TG_USAGE_KEY_LEN;
	return tg_null_usage_end(p, end) != NULL ? p : NULL;
}

/* Each occurrence has one colon, and a chunk has far fewer colons than
 * double quotes, so the search goes from colon to colon. */
int
tg_null_usage_find(const char *data, size_t len, const char **from, const char **to)
{
	const char *end = data + len;

	*from = NULL;
	*to = NULL;
	for (const char *p = memchr(data, ':', len); p != NULL;
	     p = memchr(p + 1, ':', (size_t)(end - p - 1))) {
		const char *start = null_usage_before(data, p, end);

		if (start == NULL)
			continue;
		if (*from != NULL)
			return 0;       /* more than one: not sure which */
		*from = start;
		*to = tg_null_usage_end(start, end);
	}
	return *from != NULL;
}

void
tg_null_usage_widen(const char *data, const char *end, const char **from, const char **to)
{
	const char *p = *from;

	while (p > data && is_blank(p[-1]))
		p--;
	if (p > data && p[-1] == ',') {
		*from = p - 1;
		return;
	}
	p = *to;
	while (p < end && is_blank(*p))
		p++;
	if (p < end && *p == ',')
		*to = p + 1;
}
