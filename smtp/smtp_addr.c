/*
 * smtp_addr.c: the Reverse-path and Forward-path of MAIL FROM and RCPT TO
 * (RFC 5321 section 4.1.2, extended by RFC 6531 for SMTPUTF8), parsed by
 * the grammar and nothing more lenient, and formatted again for replies
 * and the queue.
 *
 * The parse goes in phases: a scan of the whole text for bytes that have
 * no place in any path (NUL, controls, non-ASCII without SMTPUTF8, invalid
 * UTF-8), the brackets and the path limit, the source route, the local
 * part, the domain. Each phase only sees text that passed the one before.
 *
 * Trusts nothing: the text comes straight from the client. The result is
 * written to the caller's struct only on success.
 */
#include "config.h"
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include "compat/compat.h"
#include "smtp_addr.h"

#define SMTP_ADDR_LABEL_MAX	63	/* RFC 1035 section 2.3.4 */
#define SMTP_ADDR_V6_MAX	45	/* INET6_ADDRSTRLEN - 1 */

/* A cursor over the text between the angle brackets. */
struct smtp_addr_cur {
	const unsigned char *s;
	size_t len;
	size_t pos;
};

/* smtp_addr_utf8_len: the length of the valid UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, nothing past U+10FFFF) that starts at
 * s, with left bytes available; 0 if it is not one. s[0] >= 0x80. */
static size_t
smtp_addr_utf8_len(const unsigned char *s, size_t left)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;		/* overlong */
		else if (s[0] == 0xed)
			hi = 0x9f;		/* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		if (s[0] == 0xf0)
			lo = 0x90;		/* overlong */
		else if (s[0] == 0xf4)
			hi = 0x8f;		/* past U+10FFFF */
	} else
		return 0;
	if (n > left || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* smtp_addr_scan: refuse bytes no path may hold; *utf8_r tells whether
 * any (valid) non-ASCII byte was seen. */
static int
smtp_addr_scan(const unsigned char *s, size_t len, bool smtputf8,
    bool *utf8_r, const char **error_r)
{
	size_t i = 0, n;

	*utf8_r = false;
	while (i < len) {
		if (s[i] == '\0') {
			*error_r = "NUL byte in address";
			return -1;
		}
		if (s[i] < 0x20 || s[i] == 0x7f) {
			*error_r = "control character in address";
			return -1;
		}
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (!smtputf8) {
			*error_r = "non-ASCII address without SMTPUTF8";
			return -1;
		}
		if ((n = smtp_addr_utf8_len(s + i, len - i)) == 0) {
			*error_r = "invalid UTF-8 in address";
			return -1;
		}
		*utf8_r = true;
		i += n;
	}
	return 0;
}

static bool
smtp_addr_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* smtp_addr_is_atext: RFC 5321 atext (RFC 5322 section 3.2.3), and with
 * RFC 6531 any non-ASCII byte (the scan has checked the UTF-8). */
static bool
smtp_addr_is_atext(unsigned char c)
{
	return smtp_addr_is_alnum(c) || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static char
smtp_addr_lower(unsigned char c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

/* smtp_addr_domain: a Domain (sub-domains of letters, digits and inner
 * hyphens, 1..63 bytes each; non-ASCII bytes count as letters, for
 * RFC 6531 U-labels) from the cursor, lower-cased into out (outsize
 * bytes) if out is not NULL. It stops at the first byte that cannot
 * continue it. A final '.' is taken and reported in *dot_r when dot_r is
 * not NULL (only a mailbox's domain may have one). */
static int
smtp_addr_domain(struct smtp_addr_cur *c, char *out, size_t outsize,
    bool *dot_r, const char **error_r)
{
	size_t start = c->pos, label = 0, n = 0;
	unsigned char ch, prev = '.';

	for (; c->pos < c->len; c->pos++, prev = ch) {
		ch = c->s[c->pos];
		if (ch == '.') {
			if (prev == '.' || prev == '-')
				goto malformed;
			label = 0;
		} else if (smtp_addr_is_alnum(ch) || ch >= 0x80 ||
		    (ch == '-' && prev != '.')) {
			if (++label > SMTP_ADDR_LABEL_MAX) {
				*error_r = "domain label too long";
				return -1;
			}
		} else
			break;
		if (++n > SMTP_DOMAIN_MAX) {
			*error_r = "domain too long";
			return -1;
		}
		if (out != NULL)
			out[n - 1] = smtp_addr_lower(ch);
	}
	if (n == 0) {
		*error_r = c->pos < c->len ? "malformed domain" :
		    "empty domain";
		return -1;
	}
	if (prev == '-' || (prev == '.' && (dot_r == NULL || n == 1)))
		goto malformed;
	if (dot_r != NULL)
		*dot_r = prev == '.';
	if (prev == '.')
		n--;
	if (out != NULL && n < outsize)
		out[n] = '\0';
	return 0;
malformed:
	c->pos = start;
	*error_r = "malformed domain";
	return -1;
}

/* smtp_addr_v4: IPv4-address-literal, Snum 3("." Snum), Snum being 1..3
 * digits of value 0..255. */
static bool
smtp_addr_v4(const unsigned char *s, size_t len)
{
	size_t i = 0, digits;
	unsigned int part, val;

	for (part = 0; part < 4; part++) {
		if (part > 0 && (i >= len || s[i++] != '.'))
			return false;
		for (digits = 0, val = 0; i < len && s[i] >= '0' &&
		    s[i] <= '9'; i++, digits++)
			val = val * 10 + (s[i] - '0');
		if (digits == 0 || digits > 3 || val > 255)
			return false;
	}
	return i == len;
}

/* smtp_addr_v6: "IPv6:" (any case) IPv6-addr, checked by inet_pton,
 * which takes exactly RFC 4291's text forms as RFC 5321's grammar does. */
static bool
smtp_addr_v6(const unsigned char *s, size_t len)
{
	char text[SMTP_ADDR_V6_MAX + 1];
	struct in6_addr a;

	if (len < 5 || strncasecmp((const char *)s, "IPv6:", 5) != 0 ||
	    len - 5 > SMTP_ADDR_V6_MAX)
		return false;
	memcpy(text, s + 5, len - 5);
	text[len - 5] = '\0';
	return inet_pton(AF_INET6, text, &a) == 1;
}

/* smtp_addr_literal: an address-literal that fills the rest of the
 * cursor, "[" ... "]"; only IPv4 and IPv6 ones (General-address-literal
 * needs a tag registered with IANA, and none is). */
static int
smtp_addr_literal(struct smtp_addr_cur *c, char *out, const char **error_r)
{
	const unsigned char *in = c->s + c->pos + 1;
	size_t len = c->len - c->pos, i;

	if (len < 3 || c->s[c->len - 1] != ']' ||
	    memchr(in, ']', len - 2) != NULL) {
		*error_r = "malformed address literal";
		return -1;
	}
	if (len > SMTP_DOMAIN_MAX) {
		*error_r = "domain too long";
		return -1;
	}
	if (!smtp_addr_v4(in, len - 2) && !smtp_addr_v6(in, len - 2)) {
		*error_r = memchr(in, ':', len - 2) != NULL &&
		    strncasecmp((const char *)in, "IPv6:", 5) != 0 ?
		    "unsupported address literal" :
		    "malformed address literal";
		return -1;
	}
	for (i = 0; i < len; i++)
		out[i] = smtp_addr_lower(c->s[c->pos + i]);
	out[len] = '\0';
	c->pos = c->len;
	return 0;
}

/* smtp_addr_route: A-d-l ":" ("@a,@b:"), which RFC 5321 section 4.1.2
 * says to accept and ignore. */
static int
smtp_addr_route(struct smtp_addr_cur *c, const char **error_r)
{
	for (;;) {
		if (c->pos >= c->len || c->s[c->pos] != '@')
			break;
		c->pos++;
		if (smtp_addr_domain(c, NULL, 0, NULL, error_r) < 0) {
			*error_r = "malformed source route";
			return -1;
		}
		if (c->pos < c->len && c->s[c->pos] == ':') {
			c->pos++;
			return 0;
		}
		if (c->pos >= c->len || c->s[c->pos] != ',')
			break;
		c->pos++;
	}
	*error_r = "malformed source route";
	return -1;
}

/* smtp_addr_dotstring: Dot-string, Atom *("." Atom), up to the '@' or the
 * end, into out (SMTP_LOCAL_MAX + 1 bytes). */
static int
smtp_addr_dotstring(struct smtp_addr_cur *c, char *out, const char **error_r)
{
	size_t n = 0;
	unsigned char ch, prev = '.';

	for (; c->pos < c->len && c->s[c->pos] != '@'; c->pos++, prev = ch) {
		ch = c->s[c->pos];
		if (!(ch == '.' ? prev != '.' : smtp_addr_is_atext(ch))) {
			*error_r = "malformed local part";
			return -1;
		}
		if (n >= SMTP_LOCAL_MAX) {
			*error_r = "local part too long";
			return -1;
		}
		out[n++] = (char)ch;
	}
	if (n == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (prev == '.') {
		*error_r = "malformed local part";
		return -1;
	}
	out[n] = '\0';
	return 0;
}

/* smtp_addr_quoted: Quoted-string, its content without the quotes and
 * backslashes into out (SMTP_LOCAL_MAX + 1 bytes). The limit counts the
 * local part as sent, quotes and backslashes included, so that the
 * formatted path (which quotes no more than needed) never grows. */
static int
smtp_addr_quoted(struct smtp_addr_cur *c, char *out, const char **error_r)
{
	size_t start = c->pos, n = 0;
	unsigned char ch;

	for (c->pos++; c->pos < c->len; c->pos++) {
		ch = c->s[c->pos];
		if (ch == '"')
			break;
		if (ch == '\\') {
			if (++c->pos >= c->len)
				break;
			ch = c->s[c->pos];
			if (ch < 0x20 || ch > 0x7e) {
				*error_r = "malformed local part";
				return -1;
			}
		}
		if (c->pos - start + 2 > SMTP_LOCAL_MAX) {
			*error_r = "local part too long";
			return -1;
		}
		out[n++] = (char)ch;
	}
	if (c->pos >= c->len) {
		*error_r = "unbalanced quote in local part";
		return -1;
	}
	c->pos++;
	if (n == 0) {
		*error_r = "empty local part";
		return -1;
	}
	out[n] = '\0';
	return 0;
}

/* smtp_addr_mailbox: Local-part "@" (Domain / address-literal), which must
 * fill the cursor. */
static int
smtp_addr_mailbox(struct smtp_addr_cur *c, struct smtp_path *p,
    const char **error_r)
{
	if (c->pos < c->len && c->s[c->pos] == '"') {
		p->quoted = true;
		if (smtp_addr_quoted(c, p->local, error_r) < 0)
			return -1;
	} else if (smtp_addr_dotstring(c, p->local, error_r) < 0)
		return -1;
	if (c->pos >= c->len || c->s[c->pos] != '@') {
		*error_r = p->quoted && c->pos < c->len ?
		    "malformed local part" : "missing domain";
		return -1;
	}
	c->pos++;
	if (c->pos < c->len && c->s[c->pos] == '[') {
		p->literal = true;
		return smtp_addr_literal(c, p->domain, error_r);
	}
	if (smtp_addr_domain(c, p->domain, sizeof(p->domain),
	    &p->trailing_dot, error_r) < 0)
		return -1;
	if (c->pos < c->len) {
		*error_r = "malformed domain";
		return -1;
	}
	return 0;
}

/* smtp_addr_brackets: the path's own shape: "<" ... ">", within
 * SMTP_PATH_MAX; the inside becomes the cursor. */
static int
smtp_addr_brackets(const char *text, size_t len, struct smtp_addr_cur *c,
    const char **error_r)
{
	if (len == 0) {
		*error_r = "empty address";
		return -1;
	}
	if (len < 2 || text[0] != '<' || text[len - 1] != '>') {
		*error_r = "address not in angle brackets";
		return -1;
	}
	if (len > SMTP_PATH_MAX) {
		*error_r = "address too long";
		return -1;
	}
	c->s = (const unsigned char *)text + 1;
	c->len = len - 2;
	c->pos = 0;
	return 0;
}

int
smtp_path_parse(const char *text, size_t len, bool allow_null,
    bool smtputf8, struct smtp_path *p, const char **error_r)
{
	struct smtp_path r;
	struct smtp_addr_cur c;

	memset(&r, 0, sizeof(r));
	if (smtp_addr_brackets(text, len, &c, error_r) < 0 ||
	    smtp_addr_scan(c.s, c.len, smtputf8, &r.utf8, error_r) < 0)
		return -1;
	if (c.len == 0) {
		if (!allow_null) {
			*error_r = "null address not allowed here";
			return -1;
		}
		r.null = true;
	} else if (!allow_null && c.len == 10 &&
	    strncasecmp((const char *)c.s, "postmaster", 10) == 0) {
		/* RFC 5321 section 4.1.1.3: the one address without a
		 * domain, recognized in any case. */
		r.postmaster = true;
		strlcpy(r.local, "postmaster", sizeof(r.local));
	} else {
		if (c.s[0] == '@') {
			r.route = true;
			if (smtp_addr_route(&c, error_r) < 0)
				return -1;
		}
		if (smtp_addr_mailbox(&c, &r, error_r) < 0)
			return -1;
		r.percent = strchr(r.local, '%') != NULL;
		r.bang = strchr(r.local, '!') != NULL;
	}
	*p = r;
	return 0;
}

/* smtp_addr_is_dotstring: whether s can be written without quotes. */
static bool
smtp_addr_is_dotstring(const char *s)
{
	unsigned char prev = '.';

	for (; *s != '\0'; prev = (unsigned char)*s++)
		if (!(*s == '.' ? prev != '.' :
		    smtp_addr_is_atext((unsigned char)*s)))
			return false;
	return prev != '.';
}

bool
smtp_path_needs_quotes(const struct smtp_path *p)
{
	return !p->null && !p->postmaster && !smtp_addr_is_dotstring(p->local);
}

/* smtp_addr_put: append c to out (outsize bytes) at *n, always leaving
 * room for the NUL; what does not fit is dropped. */
static void
smtp_addr_put(char *out, size_t outsize, size_t *n, char c)
{
	if (*n + 1 < outsize)
		out[(*n)++] = c;
}

char *
smtp_path_format(const struct smtp_path *p, char *out, size_t outsize)
{
	const char *s;
	size_t n = 0;
	bool quote;

	if (outsize == 0)
		return out;
	smtp_addr_put(out, outsize, &n, '<');
	if (!p->null) {
		quote = smtp_path_needs_quotes(p);
		if (quote)
			smtp_addr_put(out, outsize, &n, '"');
		for (s = p->local; *s != '\0'; s++) {
			if (quote && (*s == '"' || *s == '\\'))
				smtp_addr_put(out, outsize, &n, '\\');
			smtp_addr_put(out, outsize, &n, *s);
		}
		if (quote)
			smtp_addr_put(out, outsize, &n, '"');
		if (!p->postmaster) {
			smtp_addr_put(out, outsize, &n, '@');
			for (s = p->domain; *s != '\0'; s++)
				smtp_addr_put(out, outsize, &n, *s);
		}
	}
	smtp_addr_put(out, outsize, &n, '>');
	out[n] = '\0';
	return out;
}
