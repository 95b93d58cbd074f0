/*
 * Unit tests for smtp/smtp_relay.c: an open-relay battery (every address
 * form that has sneaked mail through relay checks, from an untrusted
 * client, from mynetworks and authenticated), relay_domains, the CIDR
 * edges of mynetworks at the boundary address and one past it (IPv4,
 * IPv6, IPv4-mapped), each order of the restrictions, and configuration
 * errors, both from smtp_relay_new and through loft.conf.
 *
 * The decisions are written as the reply a client would see, or LOCAL /
 * RELAY, like Postfix's smtpd_check.ref.
 */
#include "config.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
#include "smtp/smtp_addr.h"
#include "smtp/smtp_relay.h"
#include "tap.h"

#define UNTRUSTED	"203.0.113.5"
#define TRUSTED		"198.51.100.7"

static const struct smtp_relay_settings battery_set = {
	"mail.example.org, localhost.example.org, localhost, Example.ORG., "
	    "[192.0.2.1]",
	"127.0.0.0/8 [::1]/128 198.51.100.0/24 [2001:db8:1::]/48",
	"relayed.example, .sub.example",
	SMTP_RELAY_DEF_RESTRICTIONS
};

/* client: text to a net_addr ("" gives NULL: unknown). */
static const struct net_addr *
client(const char *text, struct net_addr *a)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

	if (text[0] == '\0')
		return NULL;
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		a->len = sizeof(*sin6);
	} else
		bail("bad test address %s", text);
	return a;
}

/* decide: the decision for rcpt from ip, as "LOCAL", "RELAY" or the
 * reply; a path that does not parse gives "PARSE: error". */
static const char *
decide(const struct smtp_relay *relay, const char *ip, bool auth,
    const char *rcpt)
{
	static char out[SMTP_RELAY_REPLY_MAX + 16];
	char reply[SMTP_RELAY_REPLY_MAX];
	struct smtp_path p;
	struct net_addr a;
	const char *err;

	if (smtp_path_parse(rcpt, strlen(rcpt), false, true, &p, &err) < 0) {
		snprintf(out, sizeof(out), "PARSE: %s", err);
		return out;
	}
	memset(reply, 'x', sizeof(reply));
	switch (smtp_relay_check(relay, client(ip, &a), auth, &p, reply,
	    sizeof(reply))) {
	case SMTP_RELAY_LOCAL:
		return reply[0] == '\0' ? "LOCAL" : "LOCAL with a reply";
	case SMTP_RELAY_RELAY:
		return reply[0] == '\0' ? "RELAY" : "RELAY with a reply";
	case SMTP_RELAY_REFUSE:
		snprintf(out, sizeof(out), "%s%s", reply,
		    reply[0] == '5' ? "" : " (not 5xx)");
		return out;
	case SMTP_RELAY_DEFER:
		snprintf(out, sizeof(out), "%s%s", reply,
		    reply[0] == '4' ? "" : " (not 4xx)");
		return out;
	}
	return "?";
}

struct battery {
	const char *rcpt;
	const char *untrusted;	/* from UNTRUSTED, not authenticated */
	const char *trusted;	/* from TRUSTED (mynetworks) */
	const char *authed;	/* from UNTRUSTED, authenticated */
};

#define DENIED(a)	"554 5.7.1 " a ": Relay access denied"
#define SYNTAX(a)	"553 5.1.3 " a ": Bad recipient address syntax"
#define ALL(r)		r, r, r

static const struct battery battery[] = {
	/* The plain cases. */
	{ "<bob@example.net>", DENIED("<bob@example.net>"), "RELAY",
	    "RELAY" },
	{ "<bob@example.org>", ALL("LOCAL") },
	{ "<bob@EXAMPLE.Org>", ALL("LOCAL") },
	{ "<bob@mail.example.org>", ALL("LOCAL") },
	{ "<bob@localhost>", ALL("LOCAL") },
	{ "<postmaster>", ALL("LOCAL") },
	{ "<POSTMASTER>", ALL("LOCAL") },
	{ "<postmaster@example.org>", ALL("LOCAL") },
	{ "<postmaster@example.net>", DENIED("<postmaster@example.net>"),
	    "RELAY", "RELAY" },
	{ "<bob+tag@example.org>", ALL("LOCAL") },
	/* mydestination is exact: no subdomains, no parents. */
	{ "<bob@sub.example.org>", DENIED("<bob@sub.example.org>"), "RELAY",
	    "RELAY" },
	{ "<bob@org>", DENIED("<bob@org>"), "RELAY", "RELAY" },
	{ "<bob@xexample.org>", DENIED("<bob@xexample.org>"), "RELAY",
	    "RELAY" },
	/* The percent hack. */
	{ "<bob%evil.example@example.org>",
	    ALL(SYNTAX("<bob%evil.example@example.org>")) },
	{ "<bob%evil.example@example.net>",
	    ALL(DENIED("<bob%evil.example@example.net>")) },
	{ "<bob%evil.example%x@localhost>",
	    ALL(SYNTAX("<bob%evil.example%x@localhost>")) },
	/* Bang paths. */
	{ "<evil.example!bob@example.org>",
	    ALL(SYNTAX("<evil.example!bob@example.org>")) },
	{ "<evil.example!bob@example.net>",
	    ALL(DENIED("<evil.example!bob@example.net>")) },
	/* Source routes: dropped from the reply. */
	{ "<@example.org:bob@evil.example>",
	    ALL(DENIED("<bob@evil.example>")) },
	{ "<@evil.example:bob@example.org>",
	    ALL(SYNTAX("<bob@example.org>")) },
	{ "<@example.org,@localhost:bob@example.org>",
	    ALL(SYNTAX("<bob@example.org>")) },
	/* Quoted local parts. */
	{ "<\"bob@evil.example\"@example.org>",
	    ALL(SYNTAX("<\"bob@evil.example\"@example.org>")) },
	{ "<\"bob%evil.example\"@example.org>",
	    ALL(SYNTAX("<bob%evil.example@example.org>")) },
	{ "<\"bob smith\"@example.org>",
	    ALL(SYNTAX("<\"bob smith\"@example.org>")) },
	{ "<\"bob\"@example.org>", ALL("LOCAL") },
	{ "<\"bob\"@example.net>", ALL(DENIED("<bob@example.net>")) },
	{ "<\"bob@example.net\"@example.net>",
	    ALL(DENIED("<\"bob@example.net\"@example.net>")) },
	/* Address literals. */
	{ "<bob@[203.0.113.9]>", ALL(DENIED("<bob@[203.0.113.9]>")) },
	{ "<bob@[IPv6:2001:db8::9]>",
	    ALL(DENIED("<bob@[ipv6:2001:db8::9]>")) },
	{ "<bob@[192.0.2.1]>", ALL("LOCAL") },
	{ "<bob%x@[192.0.2.1]>", ALL(SYNTAX("<bob%x@[192.0.2.1]>")) },
	{ "<bob@[192.0.2.01]>", ALL(DENIED("<bob@[192.0.2.01]>")) },
	/* Trailing dots. */
	{ "<bob@example.net.>", ALL(DENIED("<bob@example.net>")) },
	{ "<bob@relayed.example.>", ALL(DENIED("<bob@relayed.example>")) },
	{ "<bob@example.org.>", ALL("LOCAL") },
	{ "<bob%x@example.org.>", ALL(SYNTAX("<bob%x@example.org>")) },
	/* relay_domains: the domain and its subdomains; ".sub.example"
	 * only the subdomains. */
	{ "<bob@relayed.example>", ALL("RELAY") },
	{ "<bob@a.b.relayed.example>", ALL("RELAY") },
	{ "<bob@notrelayed.example>", DENIED("<bob@notrelayed.example>"),
	    "RELAY", "RELAY" },
	{ "<bob@sub.example>", DENIED("<bob@sub.example>"), "RELAY",
	    "RELAY" },
	{ "<bob@a.sub.example>", ALL("RELAY") },
	{ "<bob%x@relayed.example>", ALL(DENIED("<bob%x@relayed.example>")) },
	{ "<bob@relayed.example.evil>", DENIED("<bob@relayed.example.evil>"),
	    "RELAY", "RELAY" },
	/* SMTPUTF8. */
	{ "<bob@b\xc3\xbc" "cher.example>",
	    DENIED("<bob@b\xc3\xbc" "cher.example>"), "RELAY", "RELAY" },
	{ "<j\xc3\xb6rg@example.org>", ALL("LOCAL") },
};

static void
test_battery(void)
{
	struct smtp_relay *relay = NULL;
	const char *err;
	size_t i;

	if (!ok(smtp_relay_new(&battery_set, &relay, &err) == 0,
	    "battery settings"))
		bail("%s", err);
	for (i = 0; i < sizeof(battery) / sizeof(battery[0]); i++) {
		const struct battery *b = &battery[i];

		is_string(decide(relay, UNTRUSTED, false, b->rcpt),
		    b->untrusted, "%s from %s", b->rcpt, UNTRUSTED);
		is_string(decide(relay, TRUSTED, false, b->rcpt), b->trusted,
		    "%s from %s (mynetworks)", b->rcpt, TRUSTED);
		is_string(decide(relay, UNTRUSTED, true, b->rcpt), b->authed,
		    "%s from %s, authenticated", b->rcpt, UNTRUSTED);
	}
	/* The same from IPv6 and unknown clients. */
	is_string(decide(relay, "2001:db8:1:ffff::1", false,
	    "<bob@example.net>"), "RELAY", "IPv6 client in mynetworks");
	is_string(decide(relay, "2001:db8:2::1", false, "<bob@example.net>"),
	    DENIED("<bob@example.net>"), "IPv6 client outside");
	is_string(decide(relay, "::1", false, "<bob%x@example.net>"),
	    DENIED("<bob%x@example.net>"), "::1 cannot relay a routed form");
	is_string(decide(relay, "", false, "<bob@example.net>"),
	    DENIED("<bob@example.net>"), "unknown client");
	is_string(decide(relay, "", false, "<bob@example.org>"), "LOCAL",
	    "unknown client, local domain");
	ok(smtp_relay_is_local(relay, "example.org") &&
	    smtp_relay_is_local(relay, "[192.0.2.1]") &&
	    !smtp_relay_is_local(relay, "example.org.") &&
	    !smtp_relay_is_local(relay, "relayed.example"),
	    "smtp_relay_is_local");
	smtp_relay_free(&relay);
	ok(relay == NULL, "smtp_relay_free clears the pointer");
	smtp_relay_free(&relay);
}

/* A short reply buffer is cut, never overrun. */
static void
test_reply_size(void)
{
	struct smtp_relay *relay;
	struct smtp_path p;
	struct net_addr a;
	const char *err;
	char reply[12];

	if (smtp_relay_new(&battery_set, &relay, &err) < 0)
		bail("%s", err);
	smtp_path_parse("<bob@example.net>", 17, false, false, &p, &err);
	is_int(smtp_relay_check(relay, client(UNTRUSTED, &a), false, &p,
	    reply, sizeof(reply)), SMTP_RELAY_REFUSE, "refused, short buffer");
	is_string(reply, "554 5.7.1 <", "reply cut, NUL-terminated");
	is_int(smtp_relay_check(relay, client(UNTRUSTED, &a), false, &p,
	    reply, 0), SMTP_RELAY_REFUSE, "refused, no buffer");
	smtp_relay_free(&relay);
}

struct edge {
	const char *ip;
	bool trusted;
};

static void
test_cidr(void)
{
	static const struct smtp_relay_settings set = {
		"example.org",
		"192.0.2.0/25, 10.0.0.0/9 172.16.0.0/23 203.0.113.77/32 "
		    "198.51.100.9 [2001:db8::]/127 [2001:db8:8::]/45 "
		    "[2001:db8:ff::7] [fe80::]/10",
		"", SMTP_RELAY_DEF_RESTRICTIONS
	};
	static const struct edge edges[] = {
		{ "192.0.2.0", true }, { "192.0.2.127", true },
		{ "192.0.2.128", false }, { "192.0.1.255", false },
		{ "10.0.0.0", true }, { "10.127.255.255", true },
		{ "10.128.0.0", false }, { "9.255.255.255", false },
		{ "172.16.0.0", true }, { "172.16.1.255", true },
		{ "172.16.2.0", false }, { "172.15.255.255", false },
		{ "203.0.113.77", true }, { "203.0.113.76", false },
		{ "203.0.113.78", false },
		{ "198.51.100.9", true }, { "198.51.100.10", false },
		{ "2001:db8::", true }, { "2001:db8::1", true },
		{ "2001:db8::2", false },
		{ "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false },
		{ "2001:db8:8::", true }, { "2001:db8:a:8000::", true },
		{ "2001:db8:f:ffff:ffff:ffff:ffff:ffff", true },
		{ "2001:db8:10::", false },
		{ "2001:db8:7:ffff:ffff:ffff:ffff:ffff", false },
		{ "2001:db8:ff::7", true }, { "2001:db8:ff::6", false },
		{ "2001:db8:ff::8", false },
		{ "fe80::", true }, { "febf:ffff::1", true },
		{ "fec0::", false }, { "fe7f:ffff::1", false },
		/* IPv4-mapped IPv6 clients count as IPv4. */
		{ "::ffff:192.0.2.127", true }, { "::ffff:192.0.2.128", false },
		{ "::ffff:198.51.100.9", true },
		/* IPv4-compatible and NAT64 forms are other addresses. */
		{ "::192.0.2.1", false }, { "64:ff9b::192.0.2.1", false },
		{ "127.0.0.1", false }, { "::1", false },
		{ "0.0.0.0", false }, { "255.255.255.255", false },
	};
	static const struct smtp_relay_settings all_set = {
		"", "0.0.0.0/0", "", "reject"
	};
	struct smtp_relay *relay;
	struct net_addr a;
	const char *err;
	size_t i;

	if (!ok(smtp_relay_new(&set, &relay, &err) == 0, "CIDR settings"))
		bail("%s", err);
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		is_int(smtp_relay_client_trusted(relay, client(edges[i].ip,
		    &a)), edges[i].trusted, "%s %s", edges[i].ip,
		    edges[i].trusted ? "trusted" : "not trusted");
	ok(!smtp_relay_client_trusted(relay, NULL), "NULL client");
	memset(&a, 0, sizeof(a));
	a.ss.ss_family = AF_UNIX;
	ok(!smtp_relay_client_trusted(relay, &a), "AF_UNIX client");
	smtp_relay_free(&relay);

	if (smtp_relay_new(&all_set, &relay, &err) < 0)
		bail("%s", err);
	ok(smtp_relay_client_trusted(relay, client("0.0.0.0", &a)) &&
	    smtp_relay_client_trusted(relay, client("255.255.255.255", &a)) &&
	    smtp_relay_client_trusted(relay, client("::ffff:10.0.0.1", &a)),
	    "0.0.0.0/0: every IPv4 address");
	ok(!smtp_relay_client_trusted(relay, client("::", &a)),
	    "0.0.0.0/0: no IPv6 address");
	smtp_relay_free(&relay);
}

struct order {
	const char *restrictions;
	const char *ip;
	bool auth;
	const char *rcpt;
	const char *want;
};

static const struct order orders[] = {
	/* The default, one case per restriction deciding. */
	{ SMTP_RELAY_DEF_RESTRICTIONS, TRUSTED, true, "<b@example.net>",
	    "RELAY" },
	{ SMTP_RELAY_DEF_RESTRICTIONS, UNTRUSTED, true, "<b@example.net>",
	    "RELAY" },
	{ SMTP_RELAY_DEF_RESTRICTIONS, UNTRUSTED, false, "<b@example.net>",
	    DENIED("<b@example.net>") },
	/* reject_unauth_destination before the permits: even trusted and
	 * authenticated clients cannot relay. */
	{ "reject_unauth_destination, permit_mynetworks, "
	    "permit_sasl_authenticated", TRUSTED, true, "<b@example.net>",
	    DENIED("<b@example.net>") },
	{ "reject_unauth_destination, permit_mynetworks", TRUSTED, false,
	    "<b@example.org>", "LOCAL" },
	{ "reject_unauth_destination, permit_mynetworks", TRUSTED, false,
	    "<b@relayed.example>", "RELAY" },
	/* Only authenticated clients. */
	{ "permit_sasl_authenticated, reject_unauth_destination", TRUSTED,
	    false, "<b@example.net>", DENIED("<b@example.net>") },
	{ "permit_sasl_authenticated, reject_unauth_destination", UNTRUSTED,
	    true, "<b@example.net>", "RELAY" },
	/* defer_unauth_destination: 4.7.1, and first wins. */
	{ "permit_mynetworks, defer_unauth_destination", UNTRUSTED, false,
	    "<b@example.net>", "454 4.7.1 <b@example.net>: Relay access "
	    "denied" },
	{ "permit_mynetworks, defer_unauth_destination", TRUSTED, false,
	    "<b@example.net>", "RELAY" },
	{ "permit_mynetworks, defer_unauth_destination", UNTRUSTED, false,
	    "<b@example.org>", "LOCAL" },
	{ "defer_unauth_destination, reject_unauth_destination", UNTRUSTED,
	    false, "<b@example.net>", "454 4.7.1 <b@example.net>: Relay "
	    "access denied" },
	{ "reject_unauth_destination, defer_unauth_destination", UNTRUSTED,
	    false, "<b@example.net>", DENIED("<b@example.net>") },
	/* reject refuses local mail too; postmaster stays reachable. */
	{ "permit_mynetworks, reject", UNTRUSTED, false, "<b@example.org>",
	    "554 5.7.1 <b@example.org>: Recipient address rejected: Access "
	    "denied" },
	{ "permit_mynetworks, reject", TRUSTED, false, "<b@example.org>",
	    "LOCAL" },
	{ "permit_mynetworks, reject", TRUSTED, false, "<b@example.net>",
	    "RELAY" },
	{ "permit_mynetworks, reject", UNTRUSTED, false, "<postmaster>",
	    "LOCAL" },
	{ "reject", TRUSTED, true, "<b@example.org>", "554 5.7.1 "
	    "<b@example.org>: Recipient address rejected: Access denied" },
	{ "reject, permit", TRUSTED, true, "<b@example.org>", "554 5.7.1 "
	    "<b@example.org>: Recipient address rejected: Access denied" },
	/* permit first: Postfix's open relay by choice; the routed forms
	 * are still refused. */
	{ "permit, reject_unauth_destination", UNTRUSTED, false,
	    "<b@example.net>", "RELAY" },
	{ "permit, reject_unauth_destination", UNTRUSTED, false,
	    "<b%c@example.net>", DENIED("<b%c@example.net>") },
	{ "permit, reject_unauth_destination", UNTRUSTED, false,
	    "<b@example.org>", "LOCAL" },
	/* Duplicates are harmless. */
	{ "permit_mynetworks permit_mynetworks reject_unauth_destination "
	    "reject_unauth_destination", UNTRUSTED, false, "<b@example.net>",
	    DENIED("<b@example.net>") },
};

static void
test_orders(void)
{
	struct smtp_relay_settings set = battery_set;
	struct smtp_relay *relay;
	const char *err;
	size_t i;

	for (i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
		const struct order *o = &orders[i];

		set.restrictions = o->restrictions;
		if (!ok(smtp_relay_new(&set, &relay, &err) == 0,
		    "restrictions \"%s\"", o->restrictions)) {
			diag("%s", err);
			continue;
		}
		is_string(decide(relay, o->ip, o->auth, o->rcpt), o->want,
		    "  %s from %s%s", o->rcpt, o->ip,
		    o->auth ? ", authenticated" : "");
		smtp_relay_free(&relay);
	}
}

struct bad_set {
	const char *param;	/* which one is set to value */
	const char *value;
	const char *error;	/* the whole message */
};

#define NOSTOP "specify at least one of reject_unauth_destination, " \
	"defer_unauth_destination or reject (else this is an open relay)"

static const struct bad_set bad_sets[] = {
	{ "mynetworks", "10.1.2.3/8", "mynetworks: bad value \"10.1.2.3/8\": "
	    "non-null host address bits, perhaps you should use "
	    "\"10.0.0.0/8\" instead" },
	{ "mynetworks", "127.0.0.0/8 192.0.2.1/31", "mynetworks: bad value "
	    "\"192.0.2.1/31\": non-null host address bits, perhaps you "
	    "should use \"192.0.2.0/31\" instead" },
	{ "mynetworks", "[2001:db8::1]/32", "mynetworks: bad value "
	    "\"[2001:db8::1]/32\": non-null host address bits, perhaps you "
	    "should use \"[2001:db8::]/32\" instead" },
	{ "mynetworks", "[2001:db8::1]/127", "mynetworks: bad value "
	    "\"[2001:db8::1]/127\": non-null host address bits, perhaps you "
	    "should use \"[2001:db8::]/127\" instead" },
	{ "mynetworks", "::1/128", "mynetworks: bad value \"::1/128\": an "
	    "IPv6 network must be in brackets, as in [::1]/128" },
	{ "mynetworks", "2001:db8::", "mynetworks: bad value \"2001:db8::\": "
	    "an IPv6 network must be in brackets, as in [::1]/128" },
	{ "mynetworks", "hash:/etc/postfix/network_table", "mynetworks: bad "
	    "value \"hash:/etc/postfix/network_table\": lookup tables are "
	    "not supported" },
	{ "mynetworks", "/etc/postfix/networks", "mynetworks: bad value "
	    "\"/etc/postfix/networks\": lookup tables are not supported" },
	{ "mynetworks", "!192.0.2.1", "mynetworks: bad value \"!192.0.2.1\": "
	    "negation (\"!\") is not supported" },
	{ "mynetworks", "192.0.2.0/33", "mynetworks: bad value "
	    "\"192.0.2.0/33\": bad network prefix \"/33\" (expected /0 to "
	    "/32)" },
	{ "mynetworks", "[::1]/129", "mynetworks: bad value \"[::1]/129\": "
	    "bad network prefix \"/129\" (expected /0 to /128)" },
	{ "mynetworks", "192.0.2.0/", "mynetworks: bad value \"192.0.2.0/\": "
	    "bad network prefix \"/\" (expected /0 to /32)" },
	{ "mynetworks", "192.0.2.0/0024", "mynetworks: bad value "
	    "\"192.0.2.0/0024\": bad network prefix \"/0024\" (expected /0 "
	    "to /32)" },
	{ "mynetworks", "192.0.2.0/+24", "mynetworks: bad value "
	    "\"192.0.2.0/+24\": bad network prefix \"/+24\" (expected /0 to "
	    "/32)" },
	{ "mynetworks", "192.0.2.0/24x", "mynetworks: bad value "
	    "\"192.0.2.0/24x\": bad network prefix \"/24x\" (expected /0 to "
	    "/32)" },
	{ "mynetworks", "[::1]x", "mynetworks: bad value \"[::1]x\": bad "
	    "network prefix \"x\" (expected /0 to /128)" },
	{ "mynetworks", "192.0.2.300", "mynetworks: bad value "
	    "\"192.0.2.300\": not an IPv4 address" },
	{ "mynetworks", "192.0.2", "mynetworks: bad value \"192.0.2\": not "
	    "an IPv4 address" },
	{ "mynetworks", "localhost", "mynetworks: bad value \"localhost\": "
	    "not an IPv4 address" },
	{ "mynetworks", "[192.0.2.1]", "mynetworks: bad value "
	    "\"[192.0.2.1]\": not an IPv6 address in brackets" },
	{ "mynetworks", "[::1/128", "mynetworks: bad value \"[::1/128\": "
	    "missing \"]\"" },
	{ "mynetworks", "[]", "mynetworks: bad value \"[]\": not an IPv6 "
	    "address in brackets" },
	{ "smtpd_relay_restrictions", "permit_mynetworks, check_client_access",
	    "smtpd_relay_restrictions: bad value \"check_client_access\": "
	    "unknown restriction" },
	{ "smtpd_relay_restrictions", "Permit_mynetworks, reject",
	    "smtpd_relay_restrictions: bad value \"Permit_mynetworks\": "
	    "unknown restriction" },
	{ "smtpd_relay_restrictions", "permit_mynetworks "
	    "permit_sasl_authenticated", "smtpd_relay_restrictions: bad "
	    "value \"permit_mynetworks permit_sasl_authenticated\": "
	    NOSTOP },
	{ "smtpd_relay_restrictions", "", "smtpd_relay_restrictions: bad "
	    "value \"\": " NOSTOP },
	{ "smtpd_relay_restrictions", " , ", "smtpd_relay_restrictions: bad "
	    "value \" , \": " NOSTOP },
	{ "mydestination", "example.org, ex@mple.org", "mydestination: bad "
	    "value \"ex@mple.org\": not a domain name" },
	{ "mydestination", "hash:/etc/postfix/domains", "mydestination: bad "
	    "value \"hash:/etc/postfix/domains\": lookup tables are not "
	    "supported" },
	{ "mydestination", "/etc/postfix/domains", "mydestination: bad value "
	    "\"/etc/postfix/domains\": lookup tables are not supported" },
	{ "mydestination", "!example.org", "mydestination: bad value "
	    "\"!example.org\": negation (\"!\") is not supported" },
	{ "mydestination", "a..b", "mydestination: bad value \"a..b\": not "
	    "a domain name" },
	{ "mydestination", ".example.org", "mydestination: bad value "
	    "\".example.org\": not a domain name" },
	{ "mydestination", "[192.0.2.300]", "mydestination: bad value "
	    "\"[192.0.2.300]\": not an address literal (malformed address "
	    "literal)" },
	{ "mydestination", "\x01" "bad\x7f", "mydestination: bad value "
	    "\"?bad?\": not a domain name" },
	{ "relay_domains", "..example", "relay_domains: bad value "
	    "\"..example\": not a domain name" },
	{ "relay_domains", ".", "relay_domains: bad value \".\": not a "
	    "domain name" },
	{ "relay_domains", "[192.0.2.1]", "relay_domains: bad value "
	    "\"[192.0.2.1]\": not a domain name" },
	{ "relay_domains", "a/b", "relay_domains: bad value \"a/b\": not a "
	    "domain name" },
};

static void
test_bad_settings(void)
{
	struct smtp_relay *relay;
	const char *err;
	char longv[400], want[400];
	size_t i;

	for (i = 0; i < sizeof(bad_sets) / sizeof(bad_sets[0]); i++) {
		struct smtp_relay_settings set = battery_set;
		const struct bad_set *b = &bad_sets[i];

		if (strcmp(b->param, "mynetworks") == 0)
			set.mynetworks = b->value;
		else if (strcmp(b->param, "mydestination") == 0)
			set.mydestination = b->value;
		else if (strcmp(b->param, "relay_domains") == 0)
			set.relay_domains = b->value;
		else
			set.restrictions = b->value;
		relay = (struct smtp_relay *)&set;	/* must stay */
		err = NULL;
		ok(smtp_relay_new(&set, &relay, &err) == -1 &&
		    relay == (struct smtp_relay *)&set,
		    "%s = %s refused", b->param, b->value);
		is_string(err, b->error, "  message");
	}

	/* A long item is shown cut. */
	memset(longv, 'a', 300);
	longv[0] = '!';
	longv[300] = '\0';
	{
		struct smtp_relay_settings set = battery_set;

		set.mydestination = longv;
		ok(smtp_relay_new(&set, &relay, &err) == -1,
		    "a long bad item");
		snprintf(want, sizeof(want), "mydestination: bad value "
		    "\"%.200s...\": negation (\"!\") is not supported", longv);
		is_string(err, want, "  shown cut at 200 bytes");
	}

	/* Good edge values: /32, /128, /0, empty lists, NULL. */
	{
		struct smtp_relay_settings set = {
			NULL, "192.0.2.1/32 [::1]/128 0.0.0.0/0 [::]/0", NULL,
			"reject_unauth_destination"
		};

		ok(smtp_relay_new(&set, &relay, &err) == 0,
		    "/32, /128, /0, NULL lists accepted");
		smtp_relay_free(&relay);
		set.mynetworks = "";
		set.mydestination = "host_name.example, "
		    "b\xc3\xbc" "cher.example";
		ok(smtp_relay_new(&set, &relay, &err) == 0,
		    "empty mynetworks, '_' and 8-bit in host names");
		smtp_relay_free(&relay);
	}
}

static int
cload(const char *text, const char **err)
{
	return conf_load_buffer("t.cf", text, strlen(text), err);
}

/* Through loft.conf: the parameters, their defaults and conf's own
 * checks. */
static void
test_conf(void)
{
	struct smtp_relay *relay;
	struct net_addr a;
	const char *err;
	static const char good[] =
	    "myhostname = mail.example.org\n"
	    "mydestination = $myhostname, $mydomain\n"
	    "mynetworks = 192.0.2.0/24, [2001:db8::]/32\n"
	    "relay_domains = relayed.example\n";

	conf_reset();
	ok(conf_set("myhostname", "mail.example.org", &err) == 0,
	    "defaults: myhostname set");
	is_string(conf_str("mynetworks"), "127.0.0.0/8 [::1]/128",
	    "mynetworks default");
	is_string(conf_str("relay_domains"), "", "relay_domains default");
	is_string(conf_str("smtpd_relay_restrictions"),
	    SMTP_RELAY_DEF_RESTRICTIONS, "smtpd_relay_restrictions default");
	is_int(conf_int("smtpd_recipient_limit"), 1000,
	    "smtpd_recipient_limit default");
	if (!ok(smtp_relay_new_conf(&relay, &err) == 0,
	    "smtp_relay_new_conf with the defaults"))
		bail("%s", err);
	is_string(decide(relay, "127.0.0.1", false, "<b@example.net>"),
	    "RELAY", "default: 127.0.0.1 relays");
	is_string(decide(relay, "127.255.255.255", false, "<b@example.net>"),
	    "RELAY", "default: 127.255.255.255 relays");
	is_string(decide(relay, "128.0.0.0", false, "<b@example.net>"),
	    DENIED("<b@example.net>"), "default: 128.0.0.0 does not");
	is_string(decide(relay, "::1", false, "<b@example.net>"), "RELAY",
	    "default: ::1 relays");
	is_string(decide(relay, "::2", false, "<b@example.net>"),
	    DENIED("<b@example.net>"), "default: ::2 does not");
	is_string(decide(relay, "192.168.1.1", false, "<b@example.net>"),
	    DENIED("<b@example.net>"), "default: the LAN does not");
	is_string(decide(relay, UNTRUSTED, false, "<b@mail.example.org>"),
	    "LOCAL", "default mydestination: $myhostname");
	is_string(decide(relay, UNTRUSTED, false,
	    "<b@localhost.example.org>"), "LOCAL",
	    "default mydestination: localhost.$mydomain");
	is_string(decide(relay, UNTRUSTED, false, "<b@localhost>"), "LOCAL",
	    "default mydestination: localhost");
	is_string(decide(relay, UNTRUSTED, false, "<b@example.org>"),
	    DENIED("<b@example.org>"), "default mydestination: not $mydomain");
	smtp_relay_free(&relay);

	ok(conf_load_buffer("test.cf", good, sizeof(good) - 1, &err) == 0,
	    "a configuration loads");
	if (!ok(smtp_relay_new_conf(&relay, &err) == 0, "and compiles"))
		diag("%s", err);
	else {
		is_string(decide(relay, UNTRUSTED, false, "<b@example.org>"),
		    "LOCAL", "$mydomain expanded in mydestination");
		is_string(decide(relay, "192.0.2.255", false,
		    "<b@example.net>"), "RELAY", "mynetworks from the file");
		is_string(decide(relay, "127.0.0.1", false,
		    "<b@example.net>"), DENIED("<b@example.net>"),
		    "the default mynetworks replaced");
		is_string(decide(relay, UNTRUSTED, false,
		    "<b@relayed.example>"), "RELAY", "relay_domains");
		ok(smtp_relay_client_trusted(relay, client("2001:db8::9",
		    &a)), "IPv6 network from the file");
		smtp_relay_free(&relay);
	}

	/* conf's checks at load time. */
	ok(cload("mynetworks = 127.0.0.0/8 localhost\n", &err) == -1 &&
	    strstr(err, "t.cf:1: mynetworks: bad value \"127.0.0.0/8 "
	    "localhost\": expected a list of networks") != NULL,
	    "conf refuses a bad mynetworks");
	diag("%s", err);
	ok(cload("mynetworks = ::1/128\n", &err) == -1,
	    "conf refuses IPv6 outside brackets");
	ok(cload("mynetworks = [::1]/129\n", &err) == -1, "conf refuses /129");
	ok(cload("mynetworks = 10.0.0.0/33\n", &err) == -1,
	    "conf refuses /33");
	ok(cload("mynetworks = [::1]/128 10.0.0.0/32 0.0.0.0/0\n",
	    &err) == 0, "conf takes /128, /32 and /0");
	ok(cload("mynetworks = [::1\n", &err) == -1, "conf refuses [::1");
	ok(cload("mynetworks = [::1]/\n", &err) == -1, "conf refuses [::1]/");
	ok(cload("mynetworks = 10.0.0.0/0032\n", &err) == -1,
	    "conf refuses a 4-digit prefix");
	ok(cload("mynetworks =\n", &err) == 0,
	    "conf takes an empty mynetworks");
	ok(cload("smtpd_relay_restrictions = permit_mynetworks, "
	    "check_client_access\n", &err) == -1 &&
	    strstr(err, "smtpd_relay_restrictions: bad value") != NULL,
	    "conf refuses an unknown restriction");
	diag("%s", err);
	ok(cload("smtpd_relay_restrictions = permit_mynetworks\n",
	    &err) == -1, "conf refuses restrictions without a reject");
	ok(cload("smtpd_relay_restrictions =\n", &err) == -1,
	    "conf refuses empty restrictions");
	ok(cload("smtpd_relay_restrictions = reject\n", &err) == 0,
	    "conf takes reject alone");
	ok(cload("smtpd_relay_restrictions = permit, "
	    "defer_unauth_destination\n", &err) == 0,
	    "conf takes defer_unauth_destination");
	ok(cload("smtpd_recipient_limit = 0\n", &err) == -1,
	    "conf refuses smtpd_recipient_limit 0");
	ok(cload("smtpd_recipient_limit = 1\n", &err) == 0,
	    "conf takes smtpd_recipient_limit 1");

	/* A value conf takes that smtp_relay refuses: host bits. */
	ok(cload("mynetworks = 10.1.2.3/8\n", &err) == 0,
	    "conf takes 10.1.2.3/8 (shape only)");
	relay = NULL;
	ok(smtp_relay_new_conf(&relay, &err) == -1 && relay == NULL,
	    "smtp_relay_new_conf refuses it");
	is_string(err, "mynetworks: bad value \"10.1.2.3/8\": non-null host "
	    "address bits, perhaps you should use \"10.0.0.0/8\" instead",
	    "  naming the parameter and the value");
	conf_reset();
}

int
main(void)
{
	test_battery();
	test_reply_size();
	test_cidr();
	test_orders();
	test_bad_settings();
	test_conf();
	return done_testing();
}
