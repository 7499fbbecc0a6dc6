/*
 * The text of a JSON real, as jansson writes it: printf's "%.*g", then
 * ".0" when that has neither a '.' nor an exponent, and the exponent
 * without '+' or leading zeros ("0.5", "2.0", "1e20", "1e-7").
 *
 * The access log writes a duration on every request and the exporter the
 * real attributes of every span, and snprintf took about 2,200
 * instructions for a duration. So reals from 1e-5 to 1e15 (durations,
 * sampling parameters, scores) are written from exact integer arithmetic
 * where the compiler has 128-bit integers. Other reals, and every real on
 * other compilers, still go through snprintf.
 */
#ifndef TOLLGATE_JSON_DOUBLE_H
#define TOLLGATE_JSON_DOUBLE_H

#include <stddef.h>

/* Significant digits of a duration in seconds, in the access log and the
 * admin API's trace list. That keeps microseconds below 1 s, without the
 * binary noise of 17 digits (0.00058298599999999996). */
#define TG_JSON_DURATION_DIGITS 6

/* Bytes that the text of any real takes, NUL included. */
#define TG_JSON_DOUBLE_SIZE 40

/*
 * Write the text of v (finite) with precision significant digits (1 to
 * 17) and a NUL into out (TG_JSON_DOUBLE_SIZE bytes); return its length.
 * The text is the same as snprintf's under the default rounding mode,
 * round to nearest, ties to even, which tollgate never changes.
 */
size_t tg_json_double_text(char *out, double v, int precision);

#endif
