/*
 * base64.h: Base64 (RFC 4648 section 4), strict, for SASL exchanges
 * (RFC 4422: POP3 AUTH, IMAP AUTHENTICATE, SMTP AUTH): no white space, no
 * line breaks, padding only at the very end.
 */
#ifndef LOFT_BASE64_H
#define LOFT_BASE64_H

#include <stddef.h>

struct buf;

/* base64_encode: append the encoding of in[0..len) to out (4 bytes per 3,
 * padded with '='). */
void base64_encode(const unsigned char *in, size_t len, struct buf *out);

/* base64_decode: decode in[0..len) into out, which must have room for
 * len / 4 * 3 bytes; *out_len_r gets the count. -1 (out then holds
 * garbage) if the text is not strict base64: a length that is not a
 * multiple of 4, a byte outside the alphabet (NUL, white space included),
 * '=' anywhere but the last two places, or a data byte after a '='. */
int base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *out_len_r);

#endif
