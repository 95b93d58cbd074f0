/*
 * pwhash.c: crypt(3) hashing and verification with libxcrypt.
 *
 * Trusts nothing it is given: the password comes from a client or a
 * terminal, the hash from a file an administrator may have edited by
 * hand. Both are length-checked before libxcrypt sees them, and the
 * library's scratch state (which holds password-derived data) is wiped.
 * SCRAM secrets are derived with OpenSSL (PBKDF2, HMAC) and their
 * intermediate keys wiped the same way.
 * Nothing here logs a password or a hash.
 */
#include "config.h"
#include <crypt.h>
#include <errno.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
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

/* The digest for a SCRAM mechanism name, or NULL if unknown. */
static const EVP_MD *
pwhash_scram_md(const char *mech)
{
	if (strcasecmp(mech, "SCRAM-SHA-1") == 0)
		return EVP_sha1();
	if (strcasecmp(mech, "SCRAM-SHA-256") == 0)
		return EVP_sha256();
	return NULL;
}

/* base64 of len bytes, NUL-terminated, into out (4 * ceil(len / 3) + 1
 * bytes: callers size it from EVP_MAX_MD_SIZE or PWHASH_SCRAM_SALT_MAX). */
static void
pwhash_b64(const unsigned char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey =
 * HMAC(SaltedPassword, "Server Key"), RFC 5802 section 3. */
static int
pwhash_scram_keys(const EVP_MD *md, const char *password,
    const unsigned char *salt, size_t saltlen, unsigned int iterations,
    unsigned char *stored, unsigned char *server)
{
	unsigned char salted[EVP_MAX_MD_SIZE], client[EVP_MAX_MD_SIZE];
	int mdlen = EVP_MD_get_size(md);
	unsigned int len;
	int ok;

	ok = PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
	    (int)saltlen, (int)iterations, md, mdlen, salted) == 1 &&
	    HMAC(md, salted, mdlen, (const unsigned char *)"Client Key", 10,
	    client, &len) != NULL &&
	    EVP_Digest(client, (size_t)mdlen, stored, &len, md, NULL) == 1 &&
	    HMAC(md, salted, mdlen, (const unsigned char *)"Server Key", 10,
	    server, &len) != NULL;
	explicit_bzero(salted, sizeof(salted));
	explicit_bzero(client, sizeof(client));
	return ok ? 0 : -1;
}

static int
pwhash_scram_check(const char *mech, const char *password, size_t saltlen,
    unsigned int iterations, const EVP_MD **md_r, const char **error_r)
{
	if ((*md_r = pwhash_scram_md(mech)) == NULL) {
		*error_r = "unknown SCRAM mechanism";
		return -1;
	}
	if (password[0] == '\0') {
		*error_r = "empty password";
		return -1;
	}
	if (strlen(password) > PWHASH_PASSWORD_MAX) {
		*error_r = "password longer than 511 bytes";
		return -1;
	}
	if (saltlen == 0 || saltlen > PWHASH_SCRAM_SALT_MAX) {
		*error_r = "bad SCRAM salt length";
		return -1;
	}
	if (iterations < PWHASH_SCRAM_ITERATIONS_MIN ||
	    iterations > PWHASH_SCRAM_ITERATIONS_MAX) {
		*error_r = "bad SCRAM iteration count";
		return -1;
	}
	return 0;
}

int
pwhash_scram_make_salt(const char *mech, const char *password,
    const unsigned char *salt, size_t saltlen, unsigned int iterations,
    char **secret_r, const char **error_r)
{
	unsigned char stored[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
	char b_salt[(PWHASH_SCRAM_SALT_MAX + 2) / 3 * 4 + 1];
	char b_stored[(EVP_MAX_MD_SIZE + 2) / 3 * 4 + 1];
	char b_server[sizeof(b_stored)];
	const EVP_MD *md;
	size_t mdlen;

	*secret_r = NULL;
	if (pwhash_scram_check(mech, password, saltlen, iterations, &md,
	    error_r) < 0)
		return -1;
	if (pwhash_scram_keys(md, password, salt, saltlen, iterations,
	    stored, server) < 0) {
		explicit_bzero(server, sizeof(server));
		*error_r = "SCRAM key derivation failed";
		return -1;
	}
	mdlen = (size_t)EVP_MD_get_size(md);
	pwhash_b64(salt, saltlen, b_salt);
	pwhash_b64(stored, mdlen, b_stored);
	pwhash_b64(server, mdlen, b_server);
	*secret_r = xasprintf("%u:%s$%s:%s", iterations, b_salt, b_stored,
	    b_server);
	explicit_bzero(server, sizeof(server));
	explicit_bzero(b_server, sizeof(b_server));
	return 0;
}

int
pwhash_scram_make(const char *mech, const char *password, char **secret_r,
    const char **error_r)
{
	unsigned char salt[PWHASH_SCRAM_SALT_LEN];

	*secret_r = NULL;
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		*error_r = "no random bytes for a SCRAM salt";
		return -1;
	}
	return pwhash_scram_make_salt(mech, password, salt, sizeof(salt),
	    PWHASH_SCRAM_ITERATIONS, secret_r, error_r);
}
