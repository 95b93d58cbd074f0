/* Unit tests for lib/buf.c: bounded growth, NUL spare, limits at N, N+1. */
#include "config.h"
#include "buf.h"
#include "tap.h"

int
main(void)
{
	struct buf b;
	unsigned char *p;
	size_t len;

	buf_init(&b, 10);
	is_string(buf_cstr(&b), "", "empty buffer is an empty string");
	is_int(buf_append(&b, "hello", 5), 0, "append within max");
	is_int(buf_append(&b, "world", 5), 0, "append up to max exactly");
	is_int(b.len, 10, "length at max");
	is_int(buf_append(&b, "!", 1), -1, "append past max fails");
	is_int(b.len, 10, "failed append leaves length");
	is_string(buf_cstr(&b), "helloworld", "contents intact, NUL kept");
	buf_truncate(&b, 5);
	is_int(buf_printf(&b, "%d", 12345), 0, "printf fits exactly");
	is_int(buf_printf(&b, "%d", 1), -1, "printf past max fails");
	is_string(buf_cstr(&b), "hello12345", "printf contents");
	is_int(buf_append(&b, "\0", 1) , -1, "NUL byte counted as data");
	p = buf_steal(&b, &len);
	is_int(len, 10, "steal hands over the length");
	ok(b.data == NULL && b.len == 0, "steal empties the buffer");
	free(p);
	buf_init(&b, (size_t)-1);
	is_int(buf_reserve(&b, (size_t)-1), -1,
	    "reserve rejects an impossible size without allocating");
	buf_free(&b);
	buf_init(&b, 24);
	is_int(buf_append_uint(&b, 0), 0, "uint 0");
	is_int(buf_append_byte(&b, ' '), 0, "space");
	is_int(buf_append_uint(&b, 10), 0, "uint 10");
	is_string(buf_cstr(&b), "0 10", "uint digits");
	buf_truncate(&b, 4);
	is_int(buf_append_uint(&b, 18446744073709551615ull), 0,
	    "uint at its maximum");
	is_string(buf_cstr(&b), "0 1018446744073709551615", "all 20 digits");
	buf_truncate(&b, 5);
	is_int(buf_append_uint(&b, 18446744073709551615ull), -1,
	    "uint past the buffer's max fails");
	is_string(buf_cstr(&b), "0 101", "and leaves the buffer");
	buf_free(&b);
	return done_testing();
}
