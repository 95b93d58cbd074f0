/* Unit tests for lib/pwhash.c: hashing, verification, the password limit
 * at 511 and 512 bytes, fixed vectors (SHA-crypt from Drepper's
 * specification; yescrypt made by Python's crypt module over the same
 * library), locked and malformed hashes. */
#include "config.h"
#include <string.h>
#include "pwhash.h"
#include "tap.h"

#define SHA_VECTOR "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817" \
	"G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
#define Y_VECTOR "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$zwtVrjrUCmXcyLTs6oxLTQlzif" \
	"SUkF8RHJ./tK5KU79"

static void
test_make(void)
{
	char *h1 = NULL, *h2 = NULL;
	const char *error = NULL;

	is_int(pwhash_make("s3cret", &h1, &error), 0, "make a hash");
	ok(h1 != NULL && (strncmp(h1, "$y$", 3) == 0 ||
	    strncmp(h1, "$6$", 3) == 0), "yescrypt or SHA-512 prefix: %s",
	    h1 != NULL ? h1 : "(null)");
	ok(h1 != NULL && strncmp(h1, "$y$", 3) == 0,
	    "this libxcrypt has yescrypt, so $y$");
	is_int(pwhash_verify("s3cret", h1), 1, "right password matches");
	is_int(pwhash_verify("s3creT", h1), 0, "wrong password does not");
	is_int(pwhash_verify("s3cre", h1), 0, "prefix does not");
	is_int(pwhash_verify("s3crett", h1), 0, "extension does not");
	is_int(pwhash_verify("", h1), 0, "empty password does not");
	is_int(pwhash_make("s3cret", &h2, &error), 0, "hash again");
	ok(h2 != NULL && strcmp(h1, h2) != 0, "fresh salt: hashes differ");
	is_int(pwhash_verify("s3cret", h2), 1, "second hash matches too");
	free(h1);
	free(h2);
	h1 = (char *)1;
	is_int(pwhash_make("", &h1, &error), -1, "empty password refused");
	ok(h1 == NULL, "no hash on failure");
	is_string(error, "empty password", "error says why");
}

static void
test_limits(void)
{
	char pw[PWHASH_PASSWORD_MAX + 2], *h = NULL;
	const char *error = NULL;

	memset(pw, 'p', sizeof(pw));
	pw[PWHASH_PASSWORD_MAX] = '\0';
	is_int(pwhash_make(pw, &h, &error), 0, "511-byte password hashed");
	is_int(pwhash_verify(pw, h != NULL ? h : ""), 1,
	    "511-byte password verifies");
	pw[PWHASH_PASSWORD_MAX - 1] = 'q';
	is_int(pwhash_verify(pw, h != NULL ? h : ""), 0,
	    "last byte of 511 counts");
	pw[PWHASH_PASSWORD_MAX - 1] = 'p';
	pw[PWHASH_PASSWORD_MAX] = 'p';
	pw[PWHASH_PASSWORD_MAX + 1] = '\0';
	free(h);
	h = NULL;
	is_int(pwhash_make(pw, &h, &error), -1, "512-byte password refused");
	is_int(pwhash_verify(pw, SHA_VECTOR), 0,
	    "512-byte password never verifies");
	is_int(pwhash_verify_len(pw, PWHASH_PASSWORD_MAX + 1, SHA_VECTOR), 0,
	    "512 bytes by length refused");
}

static void
test_vectors(void)
{
	char hash[sizeof(SHA_VECTOR)];

	is_int(pwhash_verify("Hello world!", SHA_VECTOR), 1,
	    "SHA-crypt specification vector");
	is_int(pwhash_verify("Hello world?", SHA_VECTOR), 0,
	    "SHA-crypt vector, wrong password");
	is_int(pwhash_verify("correct horse", Y_VECTOR), 1, "yescrypt vector");
	is_int(pwhash_verify("correct horsE", Y_VECTOR), 0,
	    "yescrypt vector, wrong password");
	memcpy(hash, SHA_VECTOR, sizeof(hash));
	hash[sizeof(hash) - 2] = '\0';
	is_int(pwhash_verify("Hello world!", hash), 0, "truncated hash");
	memcpy(hash, SHA_VECTOR, sizeof(hash));
	hash[sizeof(hash) - 2] = hash[sizeof(hash) - 2] == 'a' ? 'b' : 'a';
	is_int(pwhash_verify("Hello world!", hash), 0, "altered last char");
	is_int(pwhash_verify_len("Hello world!", 12, SHA_VECTOR), 1,
	    "by length");
	is_int(pwhash_verify_len("Hello world!\0x", 14, SHA_VECTOR), 0,
	    "embedded NUL never matches");
	is_int(pwhash_verify_len("Hello world!x", 12, SHA_VECTOR), 1,
	    "length bounds the password");
}

static void
test_refused_hashes(void)
{
	is_int(pwhash_verify("", ""), 0, "empty hash, empty password");
	is_int(pwhash_verify("x", ""), 0, "empty hash");
	is_int(pwhash_verify("Hello world!", "!" SHA_VECTOR), 0,
	    "locked with !");
	is_int(pwhash_verify("Hello world!", "*"), 0, "locked with *");
	is_int(pwhash_verify("x", "$9$nonsense"), 0, "unknown method");
	is_int(pwhash_verify("x", "$6$"), 0, "setting without hash");
	is_int(pwhash_verify("x", "x"), 0, "garbage hash");
}

int
main(void)
{
	plan(36);
	test_make();
	test_limits();
	test_vectors();
	test_refused_hashes();
	return done_testing();
}
