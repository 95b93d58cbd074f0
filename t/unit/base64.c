/*
 * Unit tests for lib/base64.c: RFC 4648's test vectors both ways, every
 * byte value through a round trip, and the strictness SASL needs (length,
 * alphabet, NUL and white space, where '=' may stand).
 */
#include "config.h"

#include <string.h>

#include "base64.h"
#include "buf.h"
#include "tap.h"

static void
t_vector(const char *plain, const char *enc)
{
	unsigned char out[64];
	struct buf b;
	size_t n;

	buf_init(&b, 256);
	base64_encode((const unsigned char *)plain, strlen(plain), &b);
	is_string(buf_cstr(&b), enc, "encode \"%s\"", plain);
	ok(base64_decode(enc, strlen(enc), out, &n) == 0 &&
	    n == strlen(plain) && memcmp(out, plain, n) == 0,
	    "decode \"%s\"", enc);
	buf_free(&b);
}

static void
t_bad(const char *enc, size_t len, const char *why)
{
	unsigned char out[64];
	size_t n;

	ok(base64_decode(enc, len, out, &n) < 0, "refused: %s", why);
}

int
main(void)
{
	unsigned char all[256], back[256 + 3];
	struct buf b;
	size_t n;

	/* RFC 4648 section 10. */
	t_vector("", "");
	t_vector("f", "Zg==");
	t_vector("fo", "Zm8=");
	t_vector("foo", "Zm9v");
	t_vector("foob", "Zm9vYg==");
	t_vector("fooba", "Zm9vYmE=");
	t_vector("foobar", "Zm9vYmFy");
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	buf_init(&b, 1024);
	base64_encode(all, sizeof(all), &b);
	is_int(b.len, 344, "256 bytes encode to 344");
	ok(base64_decode((const char *)b.data, b.len, back, &n) == 0 &&
	    n == 256 && memcmp(back, all, 256) == 0,
	    "every byte value survives a round trip");
	buf_free(&b);
	t_bad("Zg=", 3, "length not a multiple of 4");
	t_bad("Zg", 2, "no padding");
	t_bad("Zg==Zg==", 8, "padding in the middle");
	t_bad("Z===", 4, "'=' in the second place");
	t_bad("Zm=v", 4, "data after '='");
	t_bad("Zm9 ", 4, "a space");
	t_bad("Zm9\n", 4, "a line feed");
	t_bad("Zm\0v", 4, "a NUL");
	t_bad("Zm9-", 4, "'-' (base64url)");
	t_bad("Zm9_", 4, "'_' (base64url)");
	return done_testing();
}
