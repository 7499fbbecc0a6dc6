/*
 * The members of a request body that every request needs, read with
 * yajl's event parser instead of a jansson tree.
 *
 * Routing reads the top-level "model" and "stream" of each request body,
 * the session metrics its "user", and the stream usage of the metrics its
 * "stream_options".
 * A jansson tree of the body costs far more than those two members, and
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

#include "yajl-jansson.h"

/* The top-level "stream_options" of a body, as the stream usage reads it. */
enum tg_stream_options {
	TG_STREAM_OPTIONS_ABSENT,
	TG_STREAM_OPTIONS_USAGE,        /* an object with "include_usage": true */
	TG_STREAM_OPTIONS_NO_USAGE,     /* an object without it */
	TG_STREAM_OPTIONS_INVALID,      /* not an object */
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
};

enum tg_scan_result {
	TG_SCAN_READ,           /* jansson reads the body as an object with
	                           these facts */
	TG_SCAN_UNSURE,         /* jansson must read the body (also when it
	                           is invalid, or memory ran out) */
};

/*
 * Scan the len bytes of data. keys is the caller's scratch for the key
 * check, kept from scan to scan so that memory is reused. On
 * TG_SCAN_READ, *facts is filled and the caller frees it with
 * tg_request_facts_free(); on TG_SCAN_UNSURE, *facts is zeroed.
 */
enum tg_scan_result tg_request_scan(const char *data, size_t len, struct tg_yj_keys *keys,
                                    struct tg_request_facts *facts);

/* The top-level "stream_options" of body, a tree of the whole request
 * body, read as the scan reads them. */
enum tg_stream_options tg_stream_options_of(const json_t *body);

/* Free the strings of *facts and zero it. */
void tg_request_facts_free(struct tg_request_facts *facts);

#endif
