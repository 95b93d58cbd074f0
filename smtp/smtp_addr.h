/*
 * smtp_addr.h: the paths of MAIL FROM and RCPT TO (RFC 5321 section
 * 4.1.2, with RFC 6531 for SMTPUTF8), parsed strictly, and what about an
 * address matters to relay control: forms that have carried mail through
 * other servers' relay checks (a '%' or '!' in the local part, a source
 * route, a quoted local part, an IP literal, a trailing dot) are reported
 * so that the policy (smtp_relay.h) never relays them.
 *
 * Trusts nothing: the text comes from the client.
 */
#ifndef LOFT_SMTP_ADDR_H
#define LOFT_SMTP_ADDR_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 section 4.5.3.1: local part 64 octets, domain 255, path 256
 * (with the angle brackets). */
#define SMTP_LOCAL_MAX	64
#define SMTP_DOMAIN_MAX	255
#define SMTP_PATH_MAX	256

struct smtp_path {
	bool null;		/* "<>" (MAIL FROM only) */
	/* The local part as the mailbox means it: a quoted string without
	 * its quotes and backslashes (so "a b"@x gives a b); NUL-terminated. */
	char local[SMTP_LOCAL_MAX + 1];
	/* The domain, lower-cased, without a trailing dot; an address
	 * literal keeps its brackets ("[192.0.2.1]", "[ipv6:2001:db8::1]").
	 * "" for <> and for RCPT TO:<postmaster>. */
	char domain[SMTP_DOMAIN_MAX + 1];
	bool quoted;		/* the local part was a quoted string */
	bool route;		/* a source route "@a,@b:" came first (dropped) */
	bool literal;		/* the domain is an address literal */
	bool trailing_dot;	/* the domain ended in '.' as sent */
	bool percent;		/* '%' in the local part (the percent hack) */
	bool bang;		/* '!' in the local part (UUCP bang path) */
	bool utf8;		/* non-ASCII bytes: needs SMTPUTF8 */
	bool postmaster;	/* RCPT TO:<postmaster> without a domain */
};

/*
 * smtp_path_parse: text[0..len) is what follows "FROM:" or "TO:" up to
 * the first space outside the path (the caller splits off the ESMTP
 * parameters): "<" [route ":"] mailbox ">", or "<>" when allow_null.
 * RCPT's "<postmaster>" (any case) is accepted as postmaster with an
 * empty domain. Non-ASCII bytes (valid UTF-8 only) are accepted when
 * smtputf8. Refused with *error_r (static text for a 501/553 reply):
 * missing brackets, empty local part or domain, a local part or domain
 * over the limits, a dot-string with empty atoms ("a..b", ".a"),
 * characters outside RFC 5321's atext or qtext, NUL, control bytes, an
 * unbalanced quote, a malformed literal, invalid UTF-8.
 * The local part limit counts its octets as sent (quotes and backslashes
 * included), the path limit everything from "<" to ">" (route and
 * trailing dot included); the path limit being the tighter one, a domain
 * reaches at most 252 octets. Only IPv4 and "IPv6:" address literals are
 * accepted (no other tag is registered with IANA). '>' may appear inside
 * a quoted local part.
 * Returns 0, or -1 with *p untouched.
 */
int smtp_path_parse(const char *text, size_t len, bool allow_null,
    bool smtputf8, struct smtp_path *p, const char **error_r);

/* smtp_path_format: "<local@domain>" (local quoted again if it must be),
 * "<>" or "<postmaster>", into out (outsize bytes, at least
 * SMTP_PATH_MAX + 3 always suffices). Returns out. */
char *smtp_path_format(const struct smtp_path *p, char *out, size_t outsize);

/* smtp_path_needs_quotes: whether p's local part can only be written as a
 * quoted string (it is not a Dot-string), as smtp_path_format writes it.
 * Added for relay control: a quoted local part that needs no quotes is
 * the same mailbox as the unquoted one (RFC 5321 section 4.1.2). */
bool smtp_path_needs_quotes(const struct smtp_path *p);

#endif
