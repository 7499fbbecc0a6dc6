/*
 * The Retry-After header (RFC 9110, section 10.2.3), read by the upstream
 * cooldown and by the OTLP exporter's retry.
 */
#ifndef TOLLGATE_RETRY_AFTER_H
#define TOLLGATE_RETRY_AFTER_H

#include <stdint.h>
#include <time.h>

/*
 * Parse a Retry-After value into whole seconds from now_unix (seconds since
 * the epoch), at most max_seconds. The value is delay-seconds, one or more
 * ASCII digits ("120"), or an HTTP-date in any of its three forms ("Fri, 04
 * Dec 2026 20:00:00 GMT", "Friday, 04-Dec-26 20:00:00 GMT", "Fri Dec  4
 * 20:00:00 2026"). Spaces and tabs around it are ignored, as around any
 * field value. A date in the past gives 0, and a longer delay or a later
 * date gives max_seconds, however many digits it has. Returns 0, or -1
 * when the value is neither form, such as "-1", "+5", "1.5" or "5abc".
 */
int tg_retry_after_parse(const char *value, time_t now_unix, uint64_t max_seconds,
                         uint64_t *seconds);

#endif
