/*
 * The text of a JSON number that the content filters read
 * (filter-number.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter-number.h"
#include "json-double.h"

/* The minimum magnitude that parsers show with an exponent. */
#define EXPONENT_FROM 1e21

/* The maximum length of a text parsed from the stack. A longer one (the
 * zeros of a fraction, say) is copied to the heap for strtod(). */
#define STACK_TEXT 128

/* Write the digits of v, an integer below EXPONENT_FROM in magnitude. */
static size_t
integer_digits(double v, char out[TG_NUMBER_TEXT_SIZE])
{
	int n = snprintf(out, TG_NUMBER_TEXT_SIZE, "%.0f", v);

	return n > 0 && n < TG_NUMBER_TEXT_SIZE ? (size_t)n : 0;
}

static int
is_integer_value(double v)
{
	return isfinite(v) && fabs(v) < EXPONENT_FROM && v == trunc(v);
}

size_t
tg_number_integer_text(const char *text, size_t len, char out[TG_NUMBER_TEXT_SIZE])
{
	char stack[STACK_TEXT];
	char *copy = stack;
	double v;

	/* Most numbers are integers as written, their digits already. */
	if (memchr(text, '.', len) == NULL && memchr(text, 'e', len) == NULL &&
	    memchr(text, 'E', len) == NULL)
		return 0;
	if (len >= sizeof(stack) && (copy = malloc(len + 1)) == NULL)
		return 0;
	memcpy(copy, text, len);
	copy[len] = '\0';
	v = strtod(copy, NULL);
	if (copy != stack)
		free(copy);

	return is_integer_value(v) ? integer_digits(v, out) : 0;
}

const char *
tg_number_read_text(const char *text, size_t len, char out[TG_NUMBER_TEXT_SIZE],
                    size_t *read_len)
{
	size_t n = tg_number_integer_text(text, len, out);

	*read_len = n > 0 ? n : len;
	return n > 0 ? out : text;
}

size_t
tg_number_real_text(double v, char out[TG_JSON_DOUBLE_SIZE])
{
	size_t n = 0;

	if (is_integer_value(v))
		return integer_digits(v, out);

	/* The shortest of up to 17 significant digits that reads back as v,
	 * which is what JavaScript shows. */
	for (int precision = 1; precision <= 17; precision++) {
		n = tg_json_double_text(out, v, precision);
		if (strtod(out, NULL) == v)
			break;
	}
	return n;
}
