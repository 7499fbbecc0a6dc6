/*
 * Parsing of the duration and size values used in the configuration, and
 * the text of a duration in messages.
 *
 * Both take an unsigned decimal integer followed directly by a unit, with no
 * sign, space or fraction, so "1.5s", "+2s" and "2 s" are all invalid. A
 * value of that form that does not fit the result type is rejected too,
 * with a return value of its own, rather than being silently clamped.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

struct unit {
	const char *name;
	uint64_t factor;
};

/* A suffix must equal a unit name whole, so the order of the tables does not
 * matter. A duration needs a unit; a size without one is in bytes. */
static const struct unit duration_units[] = {
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
};

static const struct unit size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "KiB", (uint64_t)1 << 10 },
	{ "MiB", (uint64_t)1 << 20 },
	{ "GiB", (uint64_t)1 << 30 },
	{ "KB", 1000 },
	{ "MB", 1000 * 1000 },
	{ "GB", 1000 * 1000 * 1000 },
};

/*
 * Parse the leading decimal digits of s into *out and point *rest past them.
 * Returns -1 when there are no digits, or -2 when the number exceeds
 * UINT64_MAX (*rest is then set, *out is not).
 */
static int parse_digits(const char *s, uint64_t *out, const char **rest)
{
	uint64_t n = 0;
	const char *p = s;
	int overflow = 0;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - digit) / 10)
			overflow = 1;
		n = n * 10 + digit;
	}

	if (p == s)
		return -1;

	*rest = p;
	if (overflow)
		return -2;
	*out = n;
	return 0;
}

/*
 * Parse "<digits><unit>" with the unit taken from units[], multiplying by its
 * factor without overflowing uint64_t. Returns 0, -1 when s is not of that
 * form, or -2 when it is but the value exceeds UINT64_MAX.
 */
static int parse_with_unit(const char *s, const struct unit *units,
                           size_t n_units, uint64_t *out)
{
	uint64_t n = 0;
	const char *suffix = NULL;
	int rc;

	if (s == NULL)
		return -1;
	rc = parse_digits(s, &n, &suffix);
	if (rc == -1)
		return -1;

	for (size_t i = 0; i < n_units; i++) {
		if (strcmp(suffix, units[i].name) != 0)
			continue;
		if (rc == -2 || n > UINT64_MAX / units[i].factor)
			return -2;
		*out = n * units[i].factor;
		return 0;
	}

	return -1;
}

int tg_parse_duration(const char *s, tg_msec_t *out)
{
	uint64_t ms;
	int rc = parse_with_unit(s, duration_units,
	                         sizeof(duration_units) / sizeof(duration_units[0]), &ms);

	if (rc < 0)
		return rc;

	*out = ms;
	return 0;
}

int tg_parse_size(const char *s, size_t *out)
{
	uint64_t bytes;
	int rc = parse_with_unit(s, size_units, sizeof(size_units) / sizeof(size_units[0]),
	                         &bytes);

	if (rc < 0)
		return rc;

	/* size_t is narrower than uint64_t on 32-bit targets. */
	if (bytes > SIZE_MAX)
		return -2;

	*out = (size_t)bytes;
	return 0;
}

const char *tg_format_duration(tg_msec_t ms, char *buf, size_t size)
{
	if (ms != 0 && ms % (60 * 60 * 1000) == 0)
		snprintf(buf, size, "%lluh", (unsigned long long)(ms / (60 * 60 * 1000)));
	else if (ms != 0 && ms % (60 * 1000) == 0)
		snprintf(buf, size, "%llum", (unsigned long long)(ms / (60 * 1000)));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, size, "%llums", (unsigned long long)ms);
	return buf;
}
