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

/* The three forms of an HTTP-date (RFC 9110, section 5.6.7): IMF-fixdate,
 * and the obsolete RFC 850 and asctime forms, which recipients must accept
 * too. strptime reads the names in the C locale, which tollgate never
 * changes. */
static const char *const HTTP_DATE_FORMATS[] = {
	"%a, %d %b %Y %H:%M:%S GMT",    /* Sun, 06 Nov 1994 08:49:37 GMT */
	"%A, %d-%b-%y %H:%M:%S GMT",    /* Sunday, 06-Nov-94 08:49:37 GMT */
	"%a %b %e %H:%M:%S %Y",         /* Sun Nov  6 08:49:37 1994 */
};
#define RFC850_FORM 1

/* A two-digit year that would lie more than 50 years after now is the most
 * recent past year with the same last two digits (RFC 9110, section 5.6.7).
 * strptime's own rule (69 to 99 are 19xx) differs from it. */
static void
place_two_digit_year(struct tm *tm, time_t now_unix)
{
	struct tm now;
	int year;

	gmtime_r(&now_unix, &now);
	year = now.tm_year + 1900 - (now.tm_year + 1900) % 100 + tm->tm_year % 100;
	if (year > now.tm_year + 1900 + 50)
		year -= 100;
	tm->tm_year = year - 1900;
}

/* Whether timegm() kept the date of tm as it is, rather than carrying an
 * impossible day or second over (31 Feb to 3 Mar). A second of 60, which
 * HTTP-date allows for a leap second, carries into the next minute. */
static int
date_exists(const struct tm *tm, time_t when)
{
	struct tm back;

	if (gmtime_r(&when, &back) == NULL)
		return 0;
	if (tm->tm_sec == 60)
		return 1;
	return back.tm_year == tm->tm_year && back.tm_mon == tm->tm_mon &&
	       back.tm_mday == tm->tm_mday && back.tm_hour == tm->tm_hour &&
	       back.tm_min == tm->tm_min && back.tm_sec == tm->tm_sec;
}

static int
parse_http_date(const char *value, time_t now_unix, time_t *when)
{
	for (size_t i = 0; i < sizeof(HTTP_DATE_FORMATS) / sizeof(HTTP_DATE_FORMATS[0]); i++) {
		struct tm tm, normalised;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(value, HTTP_DATE_FORMATS[i], &tm);
		if (end == NULL || *skip_ows(end) != '\0')
			continue;

		if (i == RFC850_FORM)
			place_two_digit_year(&tm, now_unix);
		normalised = tm;        /* timegm() normalises its argument */
		*when = timegm(&normalised);
		return *when == (time_t)-1 || !date_exists(&tm, *when) ? -1 : 0;
	}
	return -1;
}

int
tg_retry_after_parse(const char *value, time_t now_unix, uint64_t max_seconds,
                     uint64_t *seconds)
{
	time_t when;

	value = skip_ows(value);
	if (parse_delay_seconds(value, max_seconds, seconds) == 0)
		return 0;
	if (parse_http_date(value, now_unix, &when) != 0)
		return -1;

	if (when <= now_unix)
		*seconds = 0;
	else if ((uint64_t)(when - now_unix) > max_seconds)
		*seconds = max_seconds;
	else
		*seconds = (uint64_t)(when - now_unix);
	return 0;
}

int
tg_retry_after_ms_parse(const char *value, uint64_t max_ns, uint64_t *ns)
{
	size_t whole, fraction = 0;
	double ms;

	value = skip_ows(value);
	whole = strspn(value, "0123456789");
	if (whole == 0)
		return -1;
	if (value[whole] == '.') {
		fraction = strspn(value + whole + 1, "0123456789");
		if (fraction == 0)
			return -1;
		fraction++;     /* the dot */
	}
	if (*skip_ows(value + whole + fraction) != '\0')
		return -1;

	/* Only digits and a dot are left for strtod, which the C locale reads
	 * with "." as the decimal point, as tollgate runs in it. */
	ms = strtod(value, NULL);
	*ns = ms * 1e6 >= (double)max_ns ? max_ns : (uint64_t)(ms * 1e6);
	return 0;
}
