/*
 * The Retry-After header (RFC 9110, section 10.2.3), read by the upstream
 * cooldown and by the OTLP exporter's retry, and OpenAI's retry-after-ms.
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

/*
 * Parse a retry-after-ms value, the wait in milliseconds that OpenAI sends
 * beside Retry-After and its SDKs read first: digits with an optional
 * fraction ("20", "1500.5"), spaces and tabs around it ignored. *ns gets
 * the wait in nanoseconds, at most max_ns. Returns 0, or -1 when the value
 * is not that form, such as "-1", "1e3", "" or "5ms".
 */
int tg_retry_after_ms_parse(const char *value, uint64_t max_ns, uint64_t *ns);

#endif
