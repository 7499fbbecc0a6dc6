/*
 * The text of a JSON number that the content filters read: its integer
 * value when the number is written with a fraction or an exponent and its
 * value is an integer, else its text as written.
 *
 * A client's JSON parser reads 4.111111111111111e15 and 4111111111111111.0
 * as the integer 4111111111111111, and shows or stores that. A rule
 * written for the digits (the credit_card preset) never matches them in
 * the text as written. So the filters read such a number by its value: the
 * decimal digits of the IEEE double that a parser makes of it. An integer written
 * without a fraction or an exponent is read as written, which are its
 * digits already.
 */
#ifndef TOLLGATE_FILTER_NUMBER_H
#define TOLLGATE_FILTER_NUMBER_H

#include <stddef.h>

#include "json-double.h"

/* Bytes that a number's integer text takes, NUL included: a sign and the
 * 21 digits of a value below 1e21. */
#define TG_NUMBER_TEXT_SIZE 24

/*
 * Write into out (TG_NUMBER_TEXT_SIZE bytes) the integer digits of the
 * JSON number written as len bytes of text, NUL-terminated, and return
 * their length. Returns 0 when the number is read as written: it has no
 * fraction or exponent, or its value is not an integer, or is 1e21 or
 * more, where parsers show an exponent too.
 */
size_t tg_number_integer_text(const char *text, size_t len, char out[TG_NUMBER_TEXT_SIZE]);

/* Of len bytes of a number's text, the text the filters read: out's when
 * tg_number_integer_text() writes one, else text itself. *read_len gets
 * its length. */
const char *tg_number_read_text(const char *text, size_t len, char out[TG_NUMBER_TEXT_SIZE],
                                size_t *read_len);

/*
 * The text the filters read for a JSON number that a tree stores as the
 * double v (jansson's real): its integer digits when v is an integer below
 * 1e21, else its shortest text that reads back as v (v finite). Written
 * into out (TG_JSON_DOUBLE_SIZE bytes) with a NUL; returns the length.
 */
size_t tg_number_real_text(double v, char out[TG_JSON_DOUBLE_SIZE]);

#endif
