/*
 * pwhash.c: crypt(3) hashing and verification with libxcrypt.
 *
 * Trusts nothing it is given: the password comes from a client or a
 * terminal, the hash from a file an administrator may have edited by
 * hand. Both are length-checked before libxcrypt sees them, and the
 * library's scratch state (which holds password-derived data) is wiped.
 * Nothing here logs a password or a hash.
 */
#include "config.h"
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pwhash.h"
#include "xmalloc.h"

#if PWHASH_PASSWORD_MAX >= CRYPT_MAX_PASSPHRASE_SIZE
#error "PWHASH_PASSWORD_MAX is above what libxcrypt accepts"
#endif

static char pwhash_error_buf[256];

static const char *
pwhash_err(const char *what)
{
	snprintf(pwhash_error_buf, sizeof(pwhash_error_buf), "%s: %s", what,
	    strerror(errno));
	return pwhash_error_buf;
}

/* A setting for prefix with a fresh salt, or -1 if the library lacks the
 * method. NULL rbytes makes libxcrypt draw the salt from getrandom. */
static int
pwhash_gensalt(const char *prefix, char *setting, int size)
{
	if (crypt_gensalt_rn(prefix, 0, NULL, 0, setting, size) == NULL)
		return -1;
	/* Some versions signal failure with a "*" string instead. */
	return setting[0] == '*' ? -1 : 0;
}

/* crypt_rn into data; the output string lives inside data. NULL if the
 * setting is malformed or its method unknown or disabled. */
static const char *
pwhash_crypt(const char *password, const char *setting,
    struct crypt_data *data)
{
	const char *out;

	out = crypt_rn(password, setting, data, (int)sizeof(*data));
	if (out == NULL || out[0] == '*')
		return NULL;
	return out;
}

int
pwhash_make(const char *password, char **hash_r, const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data;
	const char *out;

	*hash_r = NULL;
	if (password[0] == '\0') {
		*error_r = "empty password";
		return -1;
	}
	if (strlen(password) > PWHASH_PASSWORD_MAX) {
		*error_r = "password longer than 511 bytes";
		return -1;
	}
	if (pwhash_gensalt("$y$", setting, sizeof(setting)) < 0 &&
	    pwhash_gensalt("$6$", setting, sizeof(setting)) < 0) {
		*error_r = pwhash_err("crypt_gensalt failed");
		return -1;
	}
	data = xcalloc(1, sizeof(*data));
	out = pwhash_crypt(password, setting, data);
	if (out == NULL)
		*error_r = pwhash_err("crypt failed");
	else
		*hash_r = xstrdup(out);
	explicit_bzero(data, sizeof(*data));
	free(data);
	return *hash_r == NULL ? -1 : 0;
}

/* Compare without returning early: the time taken does not depend on
 * where the strings first differ, only on their (public) length. */
static int
pwhash_equal(const char *a, const char *b)
{
	size_t len = strlen(a), i;
	volatile unsigned char diff = 0;

	if (len != strlen(b))
		return 0;
	for (i = 0; i < len; i++)
		diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return diff == 0;
}

int
pwhash_verify(const char *password, const char *hash)
{
	struct crypt_data *data;
	const char *out;
	int match;

	/* An empty hash would make some crypt implementations compare
	 * against nothing; "!" and "*" are the usual "locked" markers. */
	if (hash[0] == '\0' || hash[0] == '!' || hash[0] == '*')
		return 0;
	if (strlen(password) > PWHASH_PASSWORD_MAX ||
	    strlen(hash) >= CRYPT_OUTPUT_SIZE)
		return 0;
	data = xcalloc(1, sizeof(*data));
	out = pwhash_crypt(password, hash, data);
	match = out != NULL && pwhash_equal(out, hash);
	explicit_bzero(data, sizeof(*data));
	free(data);
	return match;
}

int
pwhash_verify_len(const char *password, size_t len, const char *hash)
{
	char copy[PWHASH_PASSWORD_MAX + 1];
	int match;

	if (len > PWHASH_PASSWORD_MAX || memchr(password, '\0', len) != NULL)
		return 0;
	memcpy(copy, password, len);
	copy[len] = '\0';
	match = pwhash_verify(copy, hash);
	explicit_bzero(copy, sizeof(copy));
	return match;
}
