/*
 * imap_url.c: the IMAP URL parser of CATENATE (RFC 4469, RFC 5092):
 * "[imap://user[;AUTH=x]@host[:port]]/mailbox[;UIDVALIDITY=n]/;UID=n
 * [/;SECTION=s][/;PARTIAL=o[.l]]" into its parts, each percent-decoded
 * and bounded. The folder itself is looked up, and the user compared, by
 * the caller (imap_cmd_write.c); this file only makes sure a name cannot
 * name a level above the user's folders or carry bytes the store would
 * have to trust.
 *
 * Trusts nothing: the text is the client's, every byte is checked against
 * the grammar, every number against its maximum before it grows.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "server/imap/imap_url.h"

static const char *imap_url_why;

static int
imap_url_fail(const char *why, const char **error_r)
{
	imap_url_why = why;
	*error_r = imap_url_why;
	return -1;
}

/* RFC 5092 bchar without "%" (escapes are taken apart) and without the
 * "/" ":" "@" that only some places allow: unreserved, sub-delims-sh,
 * "&", "=", "~". */
static bool
imap_url_achar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("-._~!$'()*+,&=", c) != NULL;
}

static int
imap_url_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode the bytes of *pp up to a byte in stop (or the end) into out
 * (size bytes, NUL-terminated): raw bytes must be achar or in extra.
 * -1 on a bad escape, a decoded control byte, a disallowed raw byte or
 * overflow.
 */
static int
imap_url_decode(const char **pp, const char *stop, const char *extra,
    char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)*pp;
	size_t n = 0;

	for (; *p != '\0' && strchr(stop, *p) == NULL; p++) {
		int c = *p, hi, lo;

		if (c == '%') {
			if ((hi = imap_url_hex(p[1])) < 0 ||
			    (lo = imap_url_hex(p[2])) < 0)
				return -1;
			c = hi * 16 + lo;
			p += 2;
			if (c < 0x20 || c == 0x7f)
				return -1;
		} else if (!imap_url_achar((unsigned char)c) &&
		    (extra == NULL || strchr(extra, c) == NULL))
			return -1;
		if (n + 1 >= size)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	*pp = (const char *)p;
	return 0;
}

/* An nz-number (no leading zero) up to max; the digits are consumed. */
static int
imap_url_number(const char **pp, uint64_t max, uint64_t *n_r)
{
	const char *p = *pp;
	uint64_t n = 0;

	if (*p < '1' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (max - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*pp = p;
	*n_r = n;
	return 0;
}

/* Whether *pp starts with word (any case); consumed if it does. */
static bool
imap_url_word(const char **pp, const char *word)
{
	size_t n = strlen(word);

	if (strncasecmp(*pp, word, n) != 0)
		return false;
	*pp += n;
	return true;
}

/* "imap://user[;AUTH=...]@host[:port]" up to the path's "/". */
static int
imap_url_server(const char **pp, struct imap_url *u)
{
	const char *p = *pp;
	char skip[256];

	if (imap_url_decode(&p, ";@/", NULL, u->user, sizeof(u->user)) < 0 ||
	    u->user[0] == '\0')
		return -1;
	if (*p == ';') {
		p++;
		if (!imap_url_word(&p, "AUTH=") || imap_url_decode(&p, "@/",
		    NULL, skip, sizeof(skip)) < 0 || skip[0] == '\0')
			return -1;
	}
	if (*p++ != '@')
		return -1;
	/* The host (and port) are not ours to check: any reg-name, IPv4 or
	 * bracketed IPv6 literal characters. */
	if (imap_url_decode(&p, "/", ":[]", skip, sizeof(skip)) < 0 ||
	    skip[0] == '\0' || *p != '/')
		return -1;
	*pp = p;
	return 0;
}

/* No empty level, no "." or ".." level: a name stays below the user's
 * folders whatever the store makes of it. */
static bool
imap_url_mailbox_ok(const char *name)
{
	const char *p = name;

	if (*p == '\0')
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

static int
imap_url_partial(const char **pp, struct imap_url *u)
{
	uint64_t n;

	u->partial = true;
	/* number: 0, or an nz-number. */
	if (**pp == '0') {
		(*pp)++;
		u->origin = 0;
	} else if (imap_url_number(pp, INT64_MAX, &u->origin) < 0)
		return -1;
	if (**pp == '.') {
		(*pp)++;
		if (imap_url_number(pp, UINT32_MAX, &n) < 0)
			return -1;
		u->length = n;
	}
	return 0;
}

/* The mailbox: it may hold "/" (its levels), not ";"; it ends before
 * ";UIDVALIDITY=" or before the "/" of "/;UID=". */
static int
imap_url_mailbox(const char **pp, struct imap_url *u)
{
	char raw[IMAP_URL_MAX + 1];
	const char *end = strchr(*pp, ';'), *q = raw;
	size_t n;

	if (end == NULL)
		return -1;
	if (end > *pp && end[-1] == '/')
		end--;
	n = (size_t)(end - *pp);
	memcpy(raw, *pp, n);
	raw[n] = '\0';
	if (imap_url_decode(&q, "", "/:@", u->mailbox,
	    sizeof(u->mailbox)) < 0 || !imap_url_mailbox_ok(u->mailbox))
		return -1;
	*pp = end;
	return 0;
}

/* After the mailbox: [;UIDVALIDITY=n] /;UID=n [/;SECTION=s]
 * [/;PARTIAL=o[.l]], then the end. */
static int
imap_url_message(const char *p, struct imap_url *u)
{
	uint64_t n;

	if (imap_url_word(&p, ";UIDVALIDITY=")) {
		if (imap_url_number(&p, UINT32_MAX, &n) < 0)
			return -1;
		u->uidvalidity = (uint32_t)n;
	}
	if (!imap_url_word(&p, "/;UID=") ||
	    imap_url_number(&p, UINT32_MAX, &n) < 0)
		return -1;
	u->uid = (uint32_t)n;
	if (imap_url_word(&p, "/;SECTION=") &&
	    (imap_url_decode(&p, "/", NULL, u->section,
	    sizeof(u->section)) < 0 || u->section[0] == '\0'))
		return -1;
	if (imap_url_word(&p, "/;PARTIAL=") && imap_url_partial(&p, u) < 0)
		return -1;
	return *p == '\0' ? 0 : -1;
}

int
imap_url_parse(const char *text, struct imap_url *u, const char **error_r)
{
	const char *p = text;

	memset(u, 0, sizeof(*u));
	if (strnlen(text, IMAP_URL_MAX + 1) > IMAP_URL_MAX)
		return imap_url_fail("URL too long", error_r);
	if (imap_url_word(&p, "imap://") && imap_url_server(&p, u) < 0)
		return imap_url_fail("Invalid server part", error_r);
	if (*p++ != '/')
		return imap_url_fail("Not an absolute path", error_r);
	if (imap_url_mailbox(&p, u) < 0)
		return imap_url_fail("Invalid mailbox", error_r);
	return imap_url_message(p, u) < 0 ?
	    imap_url_fail("Invalid message part", error_r) : 0;
}
