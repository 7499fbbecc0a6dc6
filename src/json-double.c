/*
 * JSON reals: a fast path for the common range, and snprintf.
 *
 * "%.*g" rounds the exact binary value of v to P significant digits. For
 * v = m * 2^e (m an integer of 53 bits), the P digits at decimal exponent
 * X are v * 10^(P-1-X) rounded to an integer, and with 10^k = 5^k * 2^k
 * that is m * 5^k shifted, or m divided by 5^k shifted: integers of at
 * most 128 bits, and a remainder that shows a tie exactly. No floating
 * point rounding is involved, so the digits are those snprintf prints.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json-double.h"

/* --- snprintf, and jansson's changes to its text --------------------------- */

/* Drop the '+' and the leading zeros of the exponent of text, and update
 * its length *len, as jansson does: "1e+20" -> "1e20", "1e-07" -> "1e-7". */
static void
trim_exponent(char *text, size_t *len)
{
	char *digits = strchr(text, 'e');
	char *first;

	if (digits == NULL)
		return;
	digits++;
	if (*digits == '-')
		digits++;
	first = digits;
	if (*first == '+')
		first++;
	while (*first == '0' && first[1] != '\0')
		first++;
	memmove(digits, first, strlen(first) + 1);
	*len = strlen(text);
}

static size_t
printf_text(char *out, double v, int precision)
{
	size_t len = (size_t)snprintf(out, TG_JSON_DOUBLE_SIZE - 2, "%.*g", precision, v);

	if (strchr(out, '.') == NULL && strchr(out, 'e') == NULL) {
		memcpy(out + len, ".0", 3);
		len += 2;
	}
	trim_exponent(out, &len);
	return len;
}

/* --- exact digits ------------------------------------------------------------ */

#ifdef __SIZEOF_INT128__

typedef unsigned __int128 u128;

/* The range of the fast path: 10^LOWEST_EXPONENT <= |v| < 10^(HIGHEST_EXPONENT + 1). */
#define LOWEST_EXPONENT (-5)
#define HIGHEST_EXPONENT 14

/* The doubles nearest to 10^-5 ... 10^15, to estimate the exponent. */
static const double POWERS_OF_TEN[] = {
	1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
	1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
};

static uint64_t
power(uint64_t base, int exponent)
{
	uint64_t p = 1;

	while (exponent-- > 0)
		p *= base;
	return p;
}

/* Round q + r / d to an integer, ties to even (d > 0, r < d). */
static u128
round_even(u128 q, u128 r, u128 d)
{
	if (2 * r > d || (2 * r == d && (q & 1) != 0))
		q++;
	return q;
}

/*
 * Return a * 10^s rounded to the nearest integer, ties to even, for a in
 * the fast path's range and -14 <= s <= 21, where every intermediate fits
 * in 128 bits. Returns UINT64_MAX when the result does not fit 64 bits.
 */
static uint64_t
scaled(double a, int s)
{
	int e;
	uint64_t m = (uint64_t)ldexp(frexp(a, &e), 53);    /* a = m * 2^(e - 53) */
	u128 q;

	e -= 53;
	if (s >= 0) {
		/* a * 10^s = m * 5^s * 2^(s + e), and s + e <= 18. */
		u128 n = (u128)m * power(5, s);
		int shift = s + e;

		if (shift >= 0)
			q = n << shift;
		else
			q = round_even(n >> -shift, n & (((u128)1 << -shift) - 1), (u128)1 << -shift);
	} else {
		/* a / 10^k = m / (5^k * 2^(k - e)), and k - e <= 66. */
		u128 d = (u128)power(5, -s) << (-s - e);

		q = round_even(m / d, m % d, d);
	}
	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

/* --- %g's layout ---------------------------------------------------------------- */

/* Write the digits of v (at most 3) at out; return how many. */
static size_t
put_small(char *out, int v)
{
	char digits[3];
	size_t n = 0, len;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	for (len = 0; len < n; len++)
		out[len] = digits[n - 1 - len];
	return n;
}

/*
 * Write at out the real whose precision digits are those of r and whose
 * first digit has the decimal exponent x, laid out as "%.*g" does (style
 * e when x < -4 or x >= precision) with jansson's changes. Returns the
 * length.
 */
static size_t
layout(char *out, int negative, uint64_t r, int precision, int x)
{
	char digits[17];
	size_t significant = (size_t)precision;
	char *p = out;

	for (size_t i = significant; i > 0; i--) {
		digits[i - 1] = (char)('0' + r % 10);
		r /= 10;
	}
	while (significant > 1 && digits[significant - 1] == '0')
		significant--;              /* %g drops trailing zeros */
	if (negative)
		*p++ = '-';

	if (x < -4 || x >= precision) {
		*p++ = digits[0];
		if (significant > 1) {
			*p++ = '.';
			memcpy(p, digits + 1, significant - 1);
			p += significant - 1;
		}
		*p++ = 'e';
		if (x < 0)
			*p++ = '-';
		p += put_small(p, x < 0 ? -x : x);
	} else if (x >= 0) {
		size_t whole = (size_t)x + 1;

		memcpy(p, digits, whole);
		p += whole;
		*p++ = '.';
		if (significant > whole) {
			memcpy(p, digits + whole, significant - whole);
			p += significant - whole;
		} else {
			*p++ = '0';         /* jansson's ".0" */
		}
	} else {
		*p++ = '0';
		*p++ = '.';
		for (int i = 0; i < -x - 1; i++)
			*p++ = '0';
		memcpy(p, digits, significant);
		p += significant;
	}
	*p = '\0';
	return (size_t)(p - out);
}

/* The text of v by exact arithmetic, or 0 when v is out of the fast
 * path's range or its exponent was misjudged. */
static size_t
exact_text(char *out, double v, int precision)
{
	double a = fabs(v);
	uint64_t low = power(10, precision - 1), r;
	int x = LOWEST_EXPONENT;

	if (!(a >= POWERS_OF_TEN[0]) || a >= POWERS_OF_TEN[HIGHEST_EXPONENT + 1 - LOWEST_EXPONENT])
		return 0;
	while (x < HIGHEST_EXPONENT && a >= POWERS_OF_TEN[x + 1 - LOWEST_EXPONENT])
		x++;

	/* The table's doubles are not all exact, so x may be one too high
	 * or too low near a power of ten: the digits then come out of range
	 * and snprintf decides. A carry to 10^P is a real next exponent. */
	r = scaled(a, precision - 1 - x);
	if (r == low * 10) {
		r = low;
		x++;
	}
	if (r < low || r >= low * 10)
		return 0;
	return layout(out, v < 0, r, precision, x);
}

#else

static size_t
exact_text(char *out, double v, int precision)
{
	(void)out;
	(void)v;
	(void)precision;
	return 0;
}

#endif

size_t
tg_json_double_text(char *out, double v, int precision)
{
	size_t len;

	assert(isfinite(v));
	assert(precision >= 1);
	assert(precision <= 17);
	len = exact_text(out, v, precision);
	return len > 0 ? len : printf_text(out, v, precision);
}
