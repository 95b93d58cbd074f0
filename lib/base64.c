/*
 * base64.c: strict Base64 for SASL (see base64.h). Input is the client's:
 * every byte is checked against the alphabet, and the output never
 * exceeds the bound base64.h gives.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "base64.h"
#include "buf.h"

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
base64_encode(const unsigned char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		uint32_t v = (uint32_t)in[i] << 16;
		char q[4];

		if (n > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		q[0] = base64_alphabet[v >> 18];
		q[1] = base64_alphabet[(v >> 12) & 63];
		q[2] = n > 1 ? base64_alphabet[(v >> 6) & 63] : '=';
		q[3] = n > 2 ? base64_alphabet[v & 63] : '=';
		buf_append(out, q, 4);
	}
}

static int
base64_value(char c)
{
	const char *p = c != '\0' ? strchr(base64_alphabet, c) : NULL;

	return p != NULL ? (int)(p - base64_alphabet) : -1;
}

int
base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *out_len_r)
{
	size_t n = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		uint32_t w;

		for (int j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == len && j >= 2) {
				pad++;
				v[j] = 0;
			} else if (pad > 0 ||
			    (v[j] = base64_value(in[i + j])) < 0)
				return -1;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
		    (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[n++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[n++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[n++] = (unsigned char)w;
	}
	*out_len_r = n;
	return 0;
}
