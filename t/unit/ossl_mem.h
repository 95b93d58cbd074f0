/*
 * ossl_mem.h: counts the bytes OpenSSL holds in a test process, through
 * CRYPTO_set_mem_functions (call ossl_mem_install() before any other
 * OpenSSL call). Each block starts with its size. Header-only, for the
 * TLS unit tests.
 */
#ifndef LOFT_T_OSSL_MEM_H
#define LOFT_T_OSSL_MEM_H

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

static size_t ossl_bytes;

#define MEM_HDR	16		/* keeps max_align_t alignment */

static void *
mem_malloc(size_t n, const char *file, int line)
{
	unsigned char *p = malloc(n + MEM_HDR);

	(void)file;
	(void)line;
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	ossl_bytes += n;
	return p + MEM_HDR;
}

static void
mem_free(void *ptr, const char *file, int line)
{
	unsigned char *p = ptr;
	size_t n;

	(void)file;
	(void)line;
	if (p == NULL)
		return;
	memcpy(&n, p - MEM_HDR, sizeof(n));
	ossl_bytes -= n;
	free(p - MEM_HDR);
}

static void *
mem_realloc(void *ptr, size_t n, const char *file, int line)
{
	unsigned char *p = ptr, *q;
	size_t old;

	if (p == NULL)
		return mem_malloc(n, file, line);
	memcpy(&old, p - MEM_HDR, sizeof(old));
	if ((q = realloc(p - MEM_HDR, n + MEM_HDR)) == NULL)
		return NULL;
	memcpy(q, &n, sizeof(n));
	ossl_bytes += n - old;		/* modular: may shrink */
	return q + MEM_HDR;
}

/* ossl_mem_install: 1 on success, as CRYPTO_set_mem_functions. */
static int __attribute__((unused))
ossl_mem_install(void)
{
	return CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free);
}

#endif
