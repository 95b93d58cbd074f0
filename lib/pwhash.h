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

#endif
