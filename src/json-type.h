/*
 * Names of JSON value types, for messages about a value of the wrong type.
 */
#ifndef TOLLGATE_JSON_TYPE_H
#define TOLLGATE_JSON_TYPE_H

#include <jansson.h>

/* The type of v in words with an article ("an object", "a string"), or
 * "missing" for NULL (a member that is absent). */
const char *tg_json_type_name(const json_t *v);

#endif
