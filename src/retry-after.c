/*
 * Retry-After parsing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retry-after.h"

/* Optional whitespace around a field value (RFC 9110, section 5.6.3). */
#define OWS " \t"

static const char *
skip_ows(const char *s)
{
	return s + strspn(s, OWS);
}

/* delay-seconds = 1*DIGIT. strtoull alone would take a sign and leading
 * whitespace, and "-1" would wrap to a huge delay, so the digits are
 * checked first and strtoull only converts them. */
static int
parse_delay_seconds(const char *value, uint64_t max_seconds, uint64_t *seconds)
{
	size_t digits = strspn(value, "0123456789");
	unsigned long long number;

	if (digits == 0 || *skip_ows(value + digits) != '\0')
		return -1;

	errno = 0;
	number = strtoull(value, NULL, 10);
	*seconds = errno == ERANGE || number > max_seconds ? max_seconds : number;
	return 0;
}

/* NOTE: only the IMF-fixdate form is accepted, although RFC 9110 (section
 * 5.6.7) requires recipients to accept the obsolete RFC 850 and asctime forms
 * too. */
static int
parse_http_date(const char *value, time_t *when)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL || *skip_ows(end) != '\0')
		return -1;

	*when = timegm(&tm);
	return *when == (time_t)-1 ? -1 : 0;
}

int
tg_retry_after_parse(const char *value, time_t now_unix, uint64_t max_seconds,
                     uint64_t *seconds)
{
	time_t when;

	value = skip_ows(value);
	if (parse_delay_seconds(value, max_seconds, seconds) == 0)
		return 0;
	if (parse_http_date(value, &when) != 0)
		return -1;

	if (when <= now_unix)
		*seconds = 0;
	else if ((uint64_t)(when - now_unix) > max_seconds)
		*seconds = max_seconds;
	else
		*seconds = (uint64_t)(when - now_unix);
	return 0;
}
