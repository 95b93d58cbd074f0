/*
 * xmalloc.h: allocation that never returns NULL. Out of memory is fatal:
 * it is logged and the process exits with EX_TEMPFAIL (75), so a delivery
 * is retried by the MTA instead of being lost. Sizes that come from the
 * network or from files must be validated by the caller first.
 */
#ifndef LOFT_XMALLOC_H
#define LOFT_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* xreallocarray: realloc nmemb*size with the multiplication checked. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xasprintf: a newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
