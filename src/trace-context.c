/*
 * W3C traceparent parsing and formatting, span and trace ids, sampling.
 */
#include <string.h>

#include <openssl/rand.h>

#include "trace-context.h"

/* Offsets in a version 00 traceparent. */
#define TP_TRACE_ID TG_TRACEPARENT_TRACE_ID
#define TP_PARENT_ID 36
#define TP_FLAGS 53

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;                      /* uppercase is invalid too */
}

int
tg_hex_decode(uint8_t *out, const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_value(in[2 * i]);
		int lo = hi < 0 ? -1 : hex_value(in[2 * i + 1]);

		if (lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Every byte as two lowercase hex digits, so that a byte takes one
 * lookup: the exporter writes up to 64 digits per span. */
static const char HEX_PAIRS[] =
	"000102030405060708090a0b0c0d0e0f"
	"101112131415161718191a1b1c1d1e1f"
	"202122232425262728292a2b2c2d2e2f"
	"303132333435363738393a3b3c3d3e3f"
	"404142434445464748494a4b4c4d4e4f"
	"505152535455565758595a5b5c5d5e5f"
	"606162636465666768696a6b6c6d6e6f"
	"707172737475767778797a7b7c7d7e7f"
	"808182838485868788898a8b8c8d8e8f"
	"909192939495969798999a9b9c9d9e9f"
	"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
	"b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
	"c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
	"d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
	"e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
	"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void
tg_hex_encode(char *out, const uint8_t *in, size_t n)
{
	size_t i = 0;

	/* Four bytes per turn of the loop: ids are 8 or 16 bytes, and the
	 * loop's own count and test cost as much as a byte's lookup. */
	for (; n - i >= 4; i += 4) {
		memcpy(out + 2 * i, HEX_PAIRS + 2 * (size_t)in[i], 2);
		memcpy(out + 2 * i + 2, HEX_PAIRS + 2 * (size_t)in[i + 1], 2);
		memcpy(out + 2 * i + 4, HEX_PAIRS + 2 * (size_t)in[i + 2], 2);
		memcpy(out + 2 * i + 6, HEX_PAIRS + 2 * (size_t)in[i + 3], 2);
	}
	for (; i < n; i++)
		memcpy(out + 2 * i, HEX_PAIRS + 2 * (size_t)in[i], 2);
	out[2 * n] = '\0';
}

int
tg_id_is_zero(const uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (id[i] != 0)
			return 0;
	}
	return 1;
}

int
tg_traceparent_parse(const char *value, struct tg_traceparent *out)
{
	size_t len;

	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;

	if (len < TG_TRACEPARENT_LEN)
		return -1;
	if (tg_hex_decode(&out->version, value, 1) != 0 || out->version == 0xff)
		return -1;

	/* Version 00 is exactly 55 characters. A later version may append
	 * fields, after a dash. */
	if (out->version == 0 && len != TG_TRACEPARENT_LEN)
		return -1;
	if (len > TG_TRACEPARENT_LEN && value[TG_TRACEPARENT_LEN] != '-')
		return -1;

	if (value[2] != '-' || value[TP_PARENT_ID - 1] != '-' || value[TP_FLAGS - 1] != '-')
		return -1;
	if (tg_hex_decode(out->trace_id, value + TP_TRACE_ID, TG_TRACE_ID_SIZE) != 0 ||
	    tg_hex_decode(out->parent_id, value + TP_PARENT_ID, TG_SPAN_ID_SIZE) != 0 ||
	    tg_hex_decode(&out->flags, value + TP_FLAGS, 1) != 0)
		return -1;

	if (tg_id_is_zero(out->trace_id, TG_TRACE_ID_SIZE) ||
	    tg_id_is_zero(out->parent_id, TG_SPAN_ID_SIZE))
		return -1;
	return 0;
}

void
tg_traceparent_format(char *out, const uint8_t trace_id[TG_TRACE_ID_SIZE],
                      const uint8_t span_id[TG_SPAN_ID_SIZE], uint8_t flags)
{
	memcpy(out, "00-", 3);
	tg_hex_encode(out + TP_TRACE_ID, trace_id, TG_TRACE_ID_SIZE);
	out[TP_PARENT_ID - 1] = '-';
	tg_hex_encode(out + TP_PARENT_ID, span_id, TG_SPAN_ID_SIZE);
	out[TP_FLAGS - 1] = '-';
	tg_hex_encode(out + TP_FLAGS, &flags, 1);
}

/*
 * Bytes drawn from RAND_bytes in one call and handed out a few at a
 * time, because one call per id cost about 3.5% of the process's CPU in a
 * profile at 2,000 traced requests a second. Callgrind counts about 6,400
 * instructions per call plus 3 per byte (OpenSSL 3.0). A traced chat
 * completion takes 40 bytes (a trace id and 3 span ids), so a block of
 * 16 KiB serves about 400 of them, and the call's share is about 16
 * instructions per request. Blocks of 4 KiB made it 63, and blocks of 256
 * bytes about 1,000.
 *
 * The block is per thread, so it needs no lock. A fork would hand the
 * same bytes to two processes, and tollgate never forks.
 */
#define RANDOM_BLOCK_SIZE 16384

static _Thread_local struct {
	uint8_t bytes[RANDOM_BLOCK_SIZE];
	size_t used;
} random_block = { .used = RANDOM_BLOCK_SIZE };

/* Fill out with n bytes from this thread's block, drawing a new block when
 * it runs short. Returns 1, or 0 when RAND_bytes failed. */
static int
random_bytes(uint8_t *out, size_t n)
{
	if (n > RANDOM_BLOCK_SIZE)
		return RAND_bytes(out, (int)n);
	if (RANDOM_BLOCK_SIZE - random_block.used < n) {
		if (RAND_bytes(random_block.bytes, RANDOM_BLOCK_SIZE) != 1)
			return 0;
		random_block.used = 0;
	}
	/* Ids are 8 or 16 bytes: a copy of a size known here compiles to
	 * moves, where memcpy() of n bytes is a call. */
	if (n == TG_SPAN_ID_SIZE)
		memcpy(out, random_block.bytes + random_block.used, TG_SPAN_ID_SIZE);
	else if (n == TG_TRACE_ID_SIZE)
		memcpy(out, random_block.bytes + random_block.used, TG_TRACE_ID_SIZE);
	else
		memcpy(out, random_block.bytes + random_block.used, n);
	random_block.used += n;
	return 1;
}

void
tg_id_random(uint8_t *id, size_t n)
{
	do {
		/* RAND_bytes fails only when the DRBG cannot be seeded, and
		 * then the process has no good randomness left at all: give an
		 * id that is at least unique within the process. */
		if (random_bytes(id, n) != 1) {
			static _Atomic uint64_t fallback;
			uint64_t v = ++fallback;

			memset(id, 0, n);
			memcpy(id + n - sizeof(v) / 2, &v, sizeof(v) / 2);
		}
	} while (tg_id_is_zero(id, n));
}

int
tg_trace_ratio_sampled(const uint8_t trace_id[TG_TRACE_ID_SIZE], double ratio)
{
	uint64_t low = 0;

	if (ratio >= 1.0)
		return 1;
	if (!(ratio > 0.0))
		return 0;
	for (size_t i = TG_TRACE_ID_SIZE - 8; i < TG_TRACE_ID_SIZE; i++)
		low = low << 8 | trace_id[i];
	/* 2^64 as a double is exact; the product is below it. */
	return low < (uint64_t)(ratio * 18446744073709551616.0);
}
