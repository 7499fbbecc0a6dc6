/*
 * Checks that a yajl read agrees with jansson's (yajl-jansson.h).
 */
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "yajl-jansson.h"

/* A backslash is an escape inside a string and appears nowhere else, so
 * every "\uD8".."\uDF" found is an escaped surrogate. */
int
tg_yj_text_unsure(const char *data, size_t len)
{
	const char *end = data + len;

	if (memchr(data, '\f', len) != NULL || memchr(data, '\v', len) != NULL)
		return 1;
	for (const char *p = memchr(data, '\\', len); p != NULL && end - p >= 4;
	     p = memchr(p, '\\', (size_t)(end - p))) {
		if (p[1] == 'u' && (p[2] == 'd' || p[2] == 'D') && p[3] != '\0' &&
		    strchr("89abcdefABCDEF", p[3]) != NULL)
			return 1;
		p += 2;
	}
	return 0;
}

/* Most strings are ASCII, which the loop passes without the two calls. */
int
tg_yj_string_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len && s[i] != '\0' && s[i] < 0x80)
		i++;
	if (i == len)
		return 1;
	return memchr(s + i, '\0', len - i) == NULL && u8_check(s + i, len - i) == NULL;
}

int
tg_yj_key_add(struct tg_yj_keys *k, size_t first, const char *data, size_t len,
              const unsigned char *s, size_t s_len)
{
	size_t at = (size_t)((const char *)s - data);

	/* An escaped key was decoded elsewhere; its bytes in the data differ. */
	if ((const char *)s < data || at > len || s_len > len - at ||
	    (k->n - first) / 2 >= TG_YJ_MAX_KEYS)
		return 1;
	for (size_t i = first; i < k->n; i += 2) {
		if (k->at[i + 1] == s_len && memcmp(data + k->at[i], s, s_len) == 0)
			return 1;
	}

	if (k->n + 2 > k->cap) {
		size_t want = k->cap ? k->cap * 2 : 16;
		size_t *p = realloc(k->at, want * sizeof(*p));

		if (p == NULL)
			return -1;
		k->at = p;
		k->cap = want;
	}
	k->at[k->n++] = at;
	k->at[k->n++] = s_len;
	return 0;
}

void
tg_yj_keys_close(struct tg_yj_keys *k, size_t first)
{
	k->n = first;
}

void
tg_yj_keys_free(struct tg_yj_keys *k)
{
	free(k->at);
	memset(k, 0, sizeof(*k));
}
