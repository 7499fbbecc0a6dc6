/*
 * The members of a request body that every request needs, read with
 * yajl's event parser instead of a jansson tree.
 *
 * Routing reads the top-level "model" and "stream" of each request body,
 * the session metrics its "user", the stream usage of the metrics its
 * "stream_options", and tracing the parameters it records as gen_ai
 * request attributes (max tokens, temperature, stop, the "type" of
 * "response_format" and the like). The request filters screen the
 * texts of the body, which the scan keeps in the same pass when asked.
 * A jansson tree of the body costs far more than those members, and
 * most requests need nothing else, so the request keeps the body as text
 * and builds the tree only when a reader asks (tg_request_json()).
 *
 * The body must still be rejected exactly when jansson, with
 * JSON_REJECT_DUPLICATES, rejects it, and with jansson's error. So the
 * scan reports facts only for a body that jansson reads as an object with
 * the same members (the checks of yajl-jansson.h). For any other body,
 * every invalid one included, it returns "unsure" and jansson decides.
 */
#ifndef TOLLGATE_REQUEST_SCAN_H
#define TOLLGATE_REQUEST_SCAN_H

#include <stddef.h>

#include <jansson.h>

#include "filter.h"
#include "yajl-jansson.h"

/* The top-level "stream_options" of a body, as the stream usage reads it. */
enum tg_stream_options {
	TG_STREAM_OPTIONS_ABSENT,
	TG_STREAM_OPTIONS_USAGE,        /* an object with "include_usage": true */
	TG_STREAM_OPTIONS_NO_USAGE,     /* an object without it */
	TG_STREAM_OPTIONS_INVALID,      /* not an object */
};

/* The numeric top-level members that tracing records. */
enum tg_request_number {
	TG_PARAM_MAX_COMPLETION_TOKENS,
	TG_PARAM_MAX_TOKENS,
	TG_PARAM_TEMPERATURE,
	TG_PARAM_TOP_P,
	TG_PARAM_TOP_K,         /* Anthropic's, and some OpenAI-compatible servers' */
	TG_PARAM_SEED,
	TG_PARAM_FREQUENCY_PENALTY,
	TG_PARAM_PRESENCE_PENALTY,
	TG_PARAM_N,
	TG_PARAM_DIMENSIONS,    /* of embeddings */
	TG_PARAM_NUMBERS
};

/* The JSON type that jansson gives a member tracing records as a number. */
enum tg_number_kind {
	TG_NUMBER_NONE,         /* absent, or not a number */
	TG_NUMBER_INTEGER,      /* json_is_integer() */
	TG_NUMBER_REAL,         /* json_is_real() */
};

struct tg_body_number {
	enum tg_number_kind kind;
	long long integer;      /* the value of an integer */
	double value;           /* json_number_value(): of an integer too */
};

/* Stop sequences kept at most: the first this many strings of "stop". */
#define TG_MAX_STOP 16

/* The output modalities that chat completions' "modalities" array
 * requests, as bits of tg_request_params.modalities. OpenAI accepts
 * "text" and "audio", and compatible servers may accept "image". */
enum tg_modality {
	TG_MODALITY_TEXT = 1u << 0,
	TG_MODALITY_AUDIO = 1u << 1,
	TG_MODALITY_IMAGE = 1u << 2,
};

/* The top-level members of a body that tracing records as gen_ai
 * request attributes (trace-genai.h). */
struct tg_request_params {
	struct tg_body_number number[TG_PARAM_NUMBERS];
	int has_stop;           /* "stop" is a string or an array */
	size_t n_stop;
	char *stop[TG_MAX_STOP];        /* the string, or the array's first
	                                   strings, in order (malloc) */
	char *response_format;  /* the string "type" of an object
	                           "response_format" (malloc), or NULL */
	char *encoding_format;  /* embeddings' "encoding_format" when a
	                           string (malloc), else NULL */
	unsigned modalities;    /* enum tg_modality bits of the strings in a
	                           "modalities" array; others are skipped */
};

/* Members found by the scan in a body that jansson reads as an object. */
struct tg_request_facts {
	char *model;            /* top-level "model" when a string (malloc),
	                           else NULL */
	char *user;             /* top-level "user" when a string (malloc),
	                           else NULL; sessions are named by it */
	int stream;             /* top-level "stream" is true */
	enum tg_stream_options stream_options;
	int has_members;        /* the object is not {} */
	int read_params;        /* the scan read the traced parameters */
	struct tg_request_params *params;       /* then those the body has
	                                           (malloc), or NULL for none */
	int read_texts;         /* the scan read the texts the filters screen */
	struct tg_text_spans texts;     /* then those, into the body */
};

/* Parts of the body a scan reads besides the members every request needs. */
enum tg_scan_reads {
	TG_SCAN_PARAMS = 1u << 0,       /* the parameters tracing records */
	TG_SCAN_TEXTS = 1u << 1,        /* the texts of the request filters
	                                   (tg_text_read_request()) */
};

enum tg_scan_result {
	TG_SCAN_READ,           /* jansson reads the body as an object with
	                           these facts */
	TG_SCAN_UNSURE,         /* jansson must read the body (also when it
	                           is invalid, or memory ran out) */
};

/*
 * Scan the len bytes of data, and what the bits of reads (enum
 * tg_scan_reads) ask for too. keys is the caller's scratch for the key
 * check, kept from scan to scan so that memory is reused. On
 * TG_SCAN_READ, *facts is filled and the caller frees it with
 * tg_request_facts_free(); the texts point into data, which must not
 * change while they are read. On TG_SCAN_UNSURE, *facts is zeroed.
 */
enum tg_scan_result tg_request_scan(const char *data, size_t len, unsigned reads,
                                    struct tg_yj_keys *keys, struct tg_request_facts *facts);

/*
 * Read the numeric parameters of data, the len bytes of a body that
 * jansson read only with JSON_DECODE_INT_AS_REAL, into numbers. Such a
 * body has an integer beyond 64 bits somewhere, so tg_request_scan() is
 * unsure of it and its tree has every integer as a real. Here each
 * parameter is read from its text as jansson reads it alone, so that a
 * "max_tokens" that fits is an integer beside a "seed" that does not,
 * which becomes a real. Returns 0, or -1 when the scan could not read the
 * body (memory ran out, or a string yajl reads otherwise than jansson),
 * and numbers is then unchanged.
 */
int tg_request_numbers_of_text(const char *data, size_t len, struct tg_yj_keys *keys,
                               struct tg_body_number numbers[TG_PARAM_NUMBERS]);

/* The top-level "stream_options" of body, a tree of the whole request
 * body, read as the scan reads them. */
enum tg_stream_options tg_stream_options_of(const json_t *body);

/* Fill *params with the members of body, a tree of the whole request
 * body (or NULL, for none), read as the scan reads them. The caller frees
 * *params with tg_request_params_free(). Out of memory, a stop sequence
 * is left out. */
void tg_request_params_of(const json_t *body, struct tg_request_params *params);

/* Free the strings of *params and zero it. */
void tg_request_params_free(struct tg_request_params *params);

/* Free the strings of *facts and zero it. */
void tg_request_facts_free(struct tg_request_facts *facts);

#endif
