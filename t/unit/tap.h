/*
 * tap.h: a small Test Anything Protocol producer for the C unit tests,
 * shaped like rra/c-tap-harness: plan, ok, is_int, is_string, is_mem, diag,
 * bail, skip_all. Header-only: each test is a single .c file.
 */
#ifndef LOFT_TAP_H
#define LOFT_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_run, tap_failed, tap_planned = -1;

static void __attribute__((unused))
plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static void __attribute__((unused))
diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

static int __attribute__((unused, format(printf, 2, 3)))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tap_run++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	return cond;
}

#define is_int(got, want, ...) do {					\
	long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);\
	if (!ok(tap_g_ == tap_w_, __VA_ARGS__))				\
		diag("got %lld, want %lld", tap_g_, tap_w_);		\
} while (0)

#define is_string(got, want, ...) do {					\
	const char *tap_g_ = (got), *tap_w_ = (want);			\
	int tap_c_ = (tap_g_ == NULL || tap_w_ == NULL) ?		\
	    tap_g_ == tap_w_ : strcmp(tap_g_, tap_w_) == 0;		\
	if (!ok(tap_c_, __VA_ARGS__))					\
		diag("got \"%s\", want \"%s\"",				\
		    tap_g_ ? tap_g_ : "(null)", tap_w_ ? tap_w_ : "(null)");\
} while (0)

#define is_mem(got, gotlen, want, wantlen, ...) do {			\
	size_t tap_gl_ = (gotlen), tap_wl_ = (wantlen);		\
	if (!ok(tap_gl_ == tap_wl_ &&					\
	    memcmp((got), (want), tap_wl_) == 0, __VA_ARGS__))		\
		diag("lengths %zu and %zu or bytes differ",		\
		    tap_gl_, tap_wl_);					\
} while (0)

static void __attribute__((unused, noreturn))
bail(const char *fmt, ...)
{
	va_list ap;

	fputs("Bail out! ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	exit(255);
}

static void __attribute__((unused, noreturn))
skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

/* done_testing: print the plan if none was given; exit status says
 * whether everything passed. */
static int __attribute__((unused))
done_testing(void)
{
	if (tap_planned < 0)
		printf("1..%d\n", tap_run);
	else if (tap_planned != tap_run)
		diag("planned %d tests but ran %d", tap_planned, tap_run);
	return tap_failed > 0 || (tap_planned >= 0 &&
	    tap_planned != tap_run) ? 1 : 0;
}

#endif
