/*
 * W3C Trace Context (Recommendation, level 1): the traceparent header, ids
 * and the sampling decision for traces that start here.
 *
 *   traceparent: 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>
 *
 * Hex digits are lowercase; all-zero ids and version ff are invalid. A
 * version above 00 is parsed for the fields that 00 defines, as the
 * Recommendation asks, and is answered with version 00.
 */
#ifndef TOLLGATE_TRACE_CONTEXT_H
#define TOLLGATE_TRACE_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "trace-t.h"

#define TG_TRACEPARENT_LEN 55           /* version 00, without the NUL */
#define TG_TRACEPARENT_TRACE_ID 3       /* where the trace id's hex starts */
#define TG_TRACE_FLAG_SAMPLED 0x01

struct tg_traceparent {
	uint8_t version;
	uint8_t trace_id[TG_TRACE_ID_SIZE];
	uint8_t parent_id[TG_SPAN_ID_SIZE];
	uint8_t flags;
};

/*
 * Parse one traceparent header value. Spaces and tabs around it are
 * ignored (HTTP optional whitespace). Returns 0 and fills out when the
 * value is valid; -1 when it is not, and the caller starts a new trace.
 */
int tg_traceparent_parse(const char *value, struct tg_traceparent *out);

/* Write "00-TRACE-SPAN-FLAGS" and a NUL into out (at least 56 bytes). */
void tg_traceparent_format(char *out, const uint8_t trace_id[TG_TRACE_ID_SIZE],
                           const uint8_t span_id[TG_SPAN_ID_SIZE], uint8_t flags);

/* Write 2 * n lowercase hex digits and a NUL into out. */
void tg_hex_encode(char *out, const uint8_t *in, size_t n);

/* Read exactly 2 * n lowercase hex digits from in. Returns 0, or -1 when
 * any of them is not one. */
int tg_hex_decode(uint8_t *out, const char *in, size_t n);

/* 1 when all n bytes are zero. */
int tg_id_is_zero(const uint8_t *id, size_t n);

/*
 * Fill id with n random bytes that are not all zero, from OpenSSL's
 * RAND_bytes, drawn in blocks of a few ids per thread. OpenSSL 3 keeps a
 * DRBG per thread, so workers that make ids at the same time do not
 * contend for one generator.
 */
void tg_id_random(uint8_t *id, size_t n);

/*
 * The sampling decision for a trace that starts here, from its trace id
 * (the TraceIdRatioBased rule of the OpenTelemetry SDK): the last 8 bytes,
 * read as a big-endian number, fall below ratio * 2^64. The same trace id
 * always gets the same answer. Returns 1 to sample.
 */
int tg_trace_ratio_sampled(const uint8_t trace_id[TG_TRACE_ID_SIZE], double ratio);

#endif
