/*
 * pwhash.h: password hashes in crypt(3) form, from libxcrypt. New hashes
 * are yescrypt ("$y$"), or SHA-512-crypt ("$6$") where the library lacks
 * yescrypt; any method libxcrypt accepts can be verified, so hashes
 * carried over from /etc/shadow or another server keep working.
 */
#ifndef LOFT_PWHASH_H
#define LOFT_PWHASH_H

#include <stddef.h>

/* Longest password accepted, in bytes: libxcrypt's own limit
 * (CRYPT_MAX_PASSPHRASE_SIZE counts the NUL). */
#define PWHASH_PASSWORD_MAX 511

/*
 * pwhash_make: hash password with a fresh random salt (getrandom, via
 * crypt_gensalt) at the library's default cost. Returns 0 and a new
 * *hash_r (the caller frees it), or -1 with *error_r: empty password,
 * longer than PWHASH_PASSWORD_MAX, or the library failed. The password is
 * not copied; the caller wipes its own copy.
 */
int pwhash_make(const char *password, char **hash_r, const char **error_r);

/*
 * pwhash_verify: 1 if password matches hash, else 0 (also for an empty,
 * locked ("!..." or "*..."), unknown-method or malformed hash, and for a
 * password over PWHASH_PASSWORD_MAX). The final comparison takes the same
 * time wherever the first difference is. Scratch state is wiped.
 * To hide which users exist, a caller should verify against some valid
 * hash for an unknown user too, so both cases cost the same.
 */
int pwhash_verify(const char *password, const char *hash);
/* pwhash_verify_len: the same for a password given by length (from SASL);
 * a password holding a NUL byte never matches, since it would otherwise be
 * cut short at the NUL. */
int pwhash_verify_len(const char *password, size_t len, const char *hash);

/*
 * SCRAM secrets (RFC 5802, RFC 7677) for the SCRAM-SHA-1 and SCRAM-SHA-256
 * SASL mechanisms. The stored form is RFC 5803's authPassword without the
 * leading scheme:
 *
 *	ITERATIONS:SALT$STOREDKEY:SERVERKEY
 *
 * SALT, STOREDKEY and SERVERKEY in base64. It holds no ' ', so it fits a
 * key=value field of the user file (scram-sha-256=..., scram-sha-1=...);
 * sasl.c prefixes the mechanism name to hand it to libsasl2. Like a crypt
 * hash it lets an attacker test guesses offline, and unlike one it lets
 * whoever reads it impersonate the server to a client: keep the file
 * private. The password is used as given (no SASLprep), as libsasl2's
 * client does.
 */
#define PWHASH_SCRAM_ITERATIONS 4096
/* Fewest and most iterations pwhash_scram_make_salt accepts. */
#define PWHASH_SCRAM_ITERATIONS_MIN 4096
#define PWHASH_SCRAM_ITERATIONS_MAX 10000000
#define PWHASH_SCRAM_SALT_LEN 16
#define PWHASH_SCRAM_SALT_MAX 64

/*
 * pwhash_scram_make: the stored SCRAM secret of password for mech
 * ("SCRAM-SHA-1" or "SCRAM-SHA-256", case-insensitive) with a fresh random
 * salt of PWHASH_SCRAM_SALT_LEN bytes and PWHASH_SCRAM_ITERATIONS.
 * Returns 0 and a new *secret_r (the caller frees it), or -1 with
 * *error_r: unknown mech, empty password, longer than PWHASH_PASSWORD_MAX,
 * or the library failed. Password-derived scratch data is wiped.
 */
int pwhash_scram_make(const char *mech, const char *password,
    char **secret_r, const char **error_r);
/* pwhash_scram_make_salt: the same with a given salt (1 to
 * PWHASH_SCRAM_SALT_MAX bytes) and iteration count (PWHASH_SCRAM_ITERATIONS_MIN
 * to PWHASH_SCRAM_ITERATIONS_MAX); for tests and for importing. */
int pwhash_scram_make_salt(const char *mech, const char *password,
    const unsigned char *salt, size_t saltlen, unsigned int iterations,
    char **secret_r, const char **error_r);

#endif
