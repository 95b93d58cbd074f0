/*
 * Unit tests for smtp/smtp_mx.c: DNS answers built here byte by byte and
 * fed to the parser (MX records in and out of order, compression, CNAMEs
 * skipped, NXDOMAIN, SERVFAIL, REFUSED, null MX, truncation at every
 * length, bad names, pointer loops, the host limit at N and N+1), the
 * ordering with shuffled ties (a fixed random source, then the real one),
 * the relayhost forms and their refusals, addresses from getaddrinfo for
 * localhost and literals, and one live lookup through the system
 * resolver, skipped when it gets no answer (no network).
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat/compat.h"
#include "smtp/smtp_mx.h"
#include "tap.h"

/* --- building answers --- */

struct pkt {
	unsigned char b[4096];
	size_t len;
};

static void
put8(struct pkt *p, unsigned v)
{
	if (p->len >= sizeof(p->b))
		bail("test packet too long");
	p->b[p->len++] = (unsigned char)v;
}

static void
put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8);
	put8(p, v & 0xff);
}

/* putname: "a.b.c" as labels; "" is the root; a name ending in "@N"
 * ends with a pointer to offset N instead of the root. */
static void
putname(struct pkt *p, const char *name)
{
	const char *s = name, *dot, *at = strchr(name, '@');
	const char *end = at != NULL ? at : name + strlen(name);

	while (s < end) {
		dot = memchr(s, '.', (size_t)(end - s));
		if (dot == NULL)
			dot = end;
		put8(p, (unsigned)(dot - s));
		while (s < dot)
			put8(p, (unsigned char)*s++);
		s = dot < end ? dot + 1 : end;
	}
	if (at != NULL)
		put16(p, 0xc000 | (unsigned)atoi(at + 1));
	else
		put8(p, 0);
}

/* header: flags (QR set by the caller), counts. */
static void
header(struct pkt *p, unsigned flags, unsigned qd, unsigned an)
{
	p->len = 0;
	put16(p, 0x1234);
	put16(p, flags);
	put16(p, qd);
	put16(p, an);
	put16(p, 0);
	put16(p, 0);
}

#define QR	0x8000
#define RD_RA	0x0180

static void
question(struct pkt *p, const char *name)
{
	putname(p, name);
	put16(p, 15);		/* MX */
	put16(p, 1);		/* IN */
}

/* rr: owner, type, then rdata as built by the caller after rr_begin. */
static size_t
rr_begin(struct pkt *p, const char *owner, unsigned type)
{
	putname(p, owner);
	put16(p, type);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);
	put16(p, 0);		/* rdlength, patched */
	return p->len;
}

static void
rr_end(struct pkt *p, size_t start)
{
	size_t n = p->len - start;

	p->b[start - 2] = (unsigned char)(n >> 8);
	p->b[start - 1] = (unsigned char)(n & 0xff);
}

static void
mx(struct pkt *p, const char *owner, unsigned pref, const char *target)
{
	size_t s = rr_begin(p, owner, 15);

	put16(p, pref);
	putname(p, target);
	rr_end(p, s);
}

static struct smtp_mx_host hosts[SMTP_MX_HOSTS_MAX + 4];
static unsigned count;
static const char *dsn, *error;

static int
parse(const struct pkt *p, unsigned max)
{
	dsn = error = NULL;
	return smtp_mx_parse_answer(p->b, p->len, hosts, max, &count, &dsn,
	    &error);
}

/* --- answers --- */

static void
test_basic(void)
{
	struct pkt p;

	header(&p, QR | RD_RA, 1, 3);
	question(&p, "example.org");
	mx(&p, "example.org", 20, "MX2.Example.ORG.");
	mx(&p, "@12", 10, "mx1a@12");	/* owner and target compressed */
	mx(&p, "@12", 10, "mx1b.example.net");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "3 MX: ok");
	is_int(count, 3, "3 MX: 3 hosts");
	is_string(hosts[0].name, "mx2.example.org",
	    "name lower-cased, trailing dot dropped");
	is_int(hosts[0].pref, 20, "preference 20");
	is_string(hosts[1].name, "mx1a.example.org",
	    "compressed target expanded");
	is_string(hosts[2].name, "mx1b.example.net", "third host");

	header(&p, QR | RD_RA, 1, 0);
	question(&p, "example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK,
	    "NOERROR without records: ok");
	is_int(count, 0, "and no host (fall back to A/AAAA)");

	header(&p, QR | RD_RA, 1, 2);
	question(&p, "www.example.org");
	{
		size_t s = rr_begin(&p, "@12", 5);	/* CNAME */

		putname(&p, "example.org");
		rr_end(&p, s);
	}
	mx(&p, "example.org", 5, "mx.example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "CNAME then MX");
	ok(count == 1 && strcmp(hosts[0].name, "mx.example.org") == 0,
	    "the CNAME is skipped, the MX kept");
}

static void
test_rcodes(void)
{
	struct pkt p;

	header(&p, QR | RD_RA | 3, 1, 0);
	question(&p, "nowhere.example");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_PERM, "NXDOMAIN: perm");
	is_string(dsn, "5.1.2", "NXDOMAIN: 5.1.2");
	ok(error != NULL && strstr(error, "not found") != NULL,
	    "NXDOMAIN: text says not found (%s)", error);

	header(&p, QR | RD_RA | 2, 1, 0);
	question(&p, "example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP, "SERVFAIL: temp");
	is_string(dsn, "4.4.3", "SERVFAIL: 4.4.3");
	ok(strstr(error, "SERVFAIL") != NULL, "SERVFAIL named (%s)", error);

	header(&p, QR | RD_RA | 5, 1, 0);
	question(&p, "example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP, "REFUSED: temp");

	header(&p, RD_RA, 1, 0);
	question(&p, "example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "not a response (QR clear): temp");

	header(&p, QR | RD_RA | 0x0200, 1, 0);
	question(&p, "example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP, "TC set: temp");

	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	mx(&p, "@12", 0, "");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_PERM, "null MX: perm");
	is_string(dsn, "5.1.10", "null MX: 5.1.10");
	ok(strstr(error, "does not accept mail") != NULL,
	    "null MX: \"domain does not accept mail\" (%s)", error);

	header(&p, QR | RD_RA, 1, 2);
	question(&p, "example.org");
	mx(&p, "@12", 10, "mx.example.org");
	mx(&p, "@12", 0, "");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_PERM,
	    "null MX beside another MX: still perm");
	is_int(count, 0, "and no host is handed out");
}

static void
test_malformed(void)
{
	struct pkt p, cut;
	size_t n;
	int bad = 0;

	header(&p, QR | RD_RA, 1, 2);
	question(&p, "example.org");
	mx(&p, "@12", 10, "mx1@12");
	mx(&p, "@12", 20, "mx2.example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "whole packet: ok");
	for (n = 0; n < p.len; n++) {
		cut = p;
		cut.len = n;
		if (parse(&cut, SMTP_MX_HOSTS_MAX) != SMTP_MX_TEMP)
			bad++;
	}
	is_int(bad, 0, "every truncation (0..%zu bytes) is a temp failure",
	    p.len - 1);

	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	mx(&p, "@12", 10, "loop@43");	/* points at itself */
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "a compression loop: temp");

	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	mx(&p, "@12", 10, "bad_but_ok.ex ample.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "the only MX has a space in its name: temp, no A fallback");
	ok(strstr(error, "malformed host name") != NULL, "said so (%s)",
	    error);

	header(&p, QR | RD_RA, 1, 2);
	question(&p, "example.org");
	mx(&p, "@12", 10, "bad\\name.example.org");
	mx(&p, "@12", 20, "good_host.example.org");
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK,
	    "a bad name beside a good one: ok");
	ok(count == 1 && strcmp(hosts[0].name, "good_host.example.org") == 0,
	    "only the good one is kept");

	/* rdlength one byte longer than the MX data. */
	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	{
		size_t s = rr_begin(&p, "@12", 15);

		put16(&p, 10);
		putname(&p, "mx.example.org");
		put8(&p, 0);
		rr_end(&p, s);
	}
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "rdlength that does not match the name: temp");
}

static void
test_names(void)
{
	char l63[64], l64[65], name[400];
	struct pkt p;

	memset(l63, 'a', 63);
	l63[63] = '\0';
	memset(l64, 'b', 64);
	l64[64] = '\0';
	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	snprintf(name, sizeof(name), "%s.example.org", l63);
	mx(&p, "@12", 10, name);
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "63-byte label: ok");
	is_int((int)strlen(hosts[0].name), 63 + 12, "and kept whole");

	/* A 64-byte label cannot even be encoded (0x40 is not a length):
	 * the packet is malformed. */
	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	snprintf(name, sizeof(name), "%s.example.org", l64);
	mx(&p, "@12", 10, name);
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "64-byte label: temp");

	/* 253 characters (the longest wire name), then 255 + with a dot. */
	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", l63, l63, l63, l63);
	mx(&p, "@12", 10, name);
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "253-byte name: ok");
	is_int((int)strlen(hosts[0].name), 253, "kept whole");
	header(&p, QR | RD_RA, 1, 1);
	question(&p, "example.org");
	snprintf(name, sizeof(name), "%s.%s.%s.%.62s.a", l63, l63, l63, l63);
	mx(&p, "@12", 10, name);
	is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_TEMP,
	    "a name over 255 wire bytes: temp");
}

static void
test_limit(void)
{
	struct pkt p;
	char name[64];
	unsigned i, n;
	bool low = false, high = false;

	for (n = SMTP_MX_HOSTS_MAX; n <= SMTP_MX_HOSTS_MAX + 1; n++) {
		header(&p, QR | RD_RA, 1, n);
		question(&p, "example.org");
		/* The best comes last, the worst (n * 10) first. */
		for (i = n; i >= 1; i--) {
			snprintf(name, sizeof(name), "mx%u@12", i);
			mx(&p, "@12", i * 10, name);
		}
		is_int(parse(&p, SMTP_MX_HOSTS_MAX), SMTP_MX_OK, "%u MX: ok", n);
		is_int(count, SMTP_MX_HOSTS_MAX, "%u MX: %u kept", n,
		    SMTP_MX_HOSTS_MAX);
		low = high = false;
		for (i = 0; i < count; i++) {
			low |= hosts[i].pref == 10;
			high |= hosts[i].pref == n * 10;
		}
		ok(low, "%u MX: the best is kept", n);
		if (n > SMTP_MX_HOSTS_MAX)
			ok(!high, "%u MX: the worst is dropped", n);
		else
			ok(high, "%u MX: the worst is kept", n);
	}
}

/* --- ordering --- */

static uint32_t
rnd_zero(uint32_t n)
{
	(void)n;
	return 0;
}

static uint32_t
rnd_last(uint32_t n)
{
	return n - 1;
}

static void
set_hosts(void)
{
	static const unsigned prefs[] = { 30, 10, 20, 10, 10 };
	static const char *const names[] = { "e", "a", "d", "b", "c" };

	memset(hosts, 0, sizeof(hosts));
	for (unsigned i = 0; i < 5; i++) {
		hosts[i].pref = prefs[i];
		strlcpy(hosts[i].name, names[i], sizeof(hosts[i].name));
	}
}

static void
order(char *out)
{
	for (unsigned i = 0; i < 5; i++)
		out[i] = hosts[i].name[0];
	out[5] = '\0';
}

static void
test_sort(void)
{
	char o[6], first[6];
	bool differ = false;
	unsigned i;

	set_hosts();
	smtp_mx_sort(hosts, 5, rnd_zero);
	order(o);
	ok(o[3] == 'd' && o[4] == 'e' && strchr("abc", o[0]) &&
	    strchr("abc", o[1]) && strchr("abc", o[2]),
	    "by preference (%s)", o);
	strlcpy(first, o, sizeof(first));
	set_hosts();
	smtp_mx_sort(hosts, 5, rnd_last);
	order(o);
	ok(strcmp(o + 3, "de") == 0, "the others stay in place (%s)", o);
	ok(strcmp(o, first) != 0, "another random source, another order of "
	    "the ties (%s, %s)", first, o);
	for (i = 0; i < 200 && !differ; i++) {
		set_hosts();
		smtp_mx_sort(hosts, 5, NULL);
		order(o);
		if (strcmp(o + 3, "de") != 0)
			break;
		differ = strcmp(o, first) != 0;
	}
	ok(differ, "arc4random shuffles the ties (%u runs)", i + 1);
	smtp_mx_sort(hosts, 0, NULL);
	ok(1, "an empty list is fine");
}

/* --- relayhost --- */

static void
relay_ok(const char *spec, const char *host, unsigned port, bool is_mx)
{
	struct smtp_mx_relayhost r;

	if (smtp_mx_relayhost_parse(spec, &r, &error) < 0) {
		ok(0, "relayhost %s: %s", spec, error);
		return;
	}
	ok(strcmp(r.host, host) == 0 && r.port == port && r.mx == is_mx,
	    "relayhost %s: host %s port %u%s", spec, r.host, r.port,
	    r.mx ? " (MX)" : "");
}

static void
relay_bad(const char *spec)
{
	struct smtp_mx_relayhost r;
	int ret;

	memset(&r, 0x5a, sizeof(r));
	error = NULL;
	ret = smtp_mx_relayhost_parse(spec, &r, &error);
	ok(ret == -1 && r.port == 0x5a5a5a5a && error != NULL,
	    "relayhost \"%s\" refused (%s)", spec, error);
}

static void
test_relayhost(void)
{
	relay_ok("[mail.example.com]:587", "mail.example.com", 587, false);
	relay_ok("[mail.example.com]", "mail.example.com", 25, false);
	relay_ok("[192.0.2.1]:587", "192.0.2.1", 587, false);
	relay_ok("[2001:db8::1]", "2001:db8::1", 25, false);
	relay_ok("[IPv6:2001:db8::1]:2525", "2001:db8::1", 2525, false);
	relay_ok("smtp.example.com", "smtp.example.com", 25, true);
	relay_ok("Smtp.Example.COM.:2525", "smtp.example.com", 2525, true);
	relay_ok("192.0.2.7", "192.0.2.7", 25, false);
	relay_ok("host:65535", "host", 65535, true);
	relay_ok("host:1", "host", 1, true);
	relay_bad("");
	relay_bad("[mail.example.com");
	relay_bad("[mail.example.com]x");
	relay_bad("[]:25");
	relay_bad("[ipv6:192.0.2.1]");
	relay_bad("host:");
	relay_bad("host:0");
	relay_bad("host:65536");
	relay_bad("host:+25");
	relay_bad("host:25:25");
	relay_bad("a..b");
	relay_bad("bad host");
	relay_bad("2001:db8::1");
	relay_bad("host]");
	relay_bad("[bad host]:25");
}

/* --- addresses --- */

static void
test_addrs(void)
{
	struct smtp_mx_relayhost r;
	struct smtp_mx_list *l = NULL;
	struct smtp_mx_settings set = { 0, 0, AF_INET };
	struct smtp_mx_host h;
	char a[NET_ADDR_STR_MAX];
	int ret;

	memset(&h, 0, sizeof(h));
	strlcpy(h.name, "localhost", sizeof(h.name));
	ret = smtp_mx_host_addrs(&set, &h, 2525, &dsn, &error);
	is_int(ret, SMTP_MX_OK, "localhost has an IPv4 address");
	ok(h.addr_count >= 1 && strcmp(net_addr_str_port(&h.addrs[0], a,
	    sizeof(a)), "127.0.0.1:2525") == 0, "127.0.0.1:2525 (%s)",
	    h.addr_count > 0 ? a : "none");

	if (smtp_mx_relayhost_parse("[127.0.0.1]:2526", &r, &error) < 0)
		bail("relayhost: %s", error);
	ret = smtp_mx_lookup_relayhost(NULL, &r, &l, &dsn, &error);
	is_int(ret, SMTP_MX_OK, "[127.0.0.1]:2526: no DNS needed");
	ok(l != NULL && l->count == 1 && !l->mx && l->hosts[0].addr_count ==
	    1 && strcmp(net_addr_str_port(&l->hosts[0].addrs[0], a,
	    sizeof(a)), "127.0.0.1:2526") == 0, "one host, one address (%s)",
	    l != NULL ? a : "none");
	smtp_mx_list_free(&l);
	ok(l == NULL, "list freed and cleared");

	if (smtp_mx_relayhost_parse("[::1]", &r, &error) < 0)
		bail("relayhost: %s", error);
	set.family = AF_INET;
	ret = smtp_mx_lookup_relayhost(&set, &r, &l, &dsn, &error);
	is_int(ret, SMTP_MX_PERM, "[::1] with inet_protocols = ipv4: perm");
	smtp_mx_list_free(&l);

	ret = smtp_mx_lookup(NULL, "bad domain", 25, &l, &dsn, &error);
	is_int(ret, SMTP_MX_PERM, "a bad domain name is not looked up");
}

/* --- live --- */

static void
test_live(void)
{
	struct smtp_mx_list *l = NULL;
	unsigned i;
	bool sorted = true;
	int ret;

	ret = smtp_mx_lookup(NULL, "debian.org", 25, &l, &dsn, &error);
	if (ret != SMTP_MX_OK) {
		/* No network, or a sandbox resolver that answers NXDOMAIN
		 * for everything: nothing to compare with. */
		ok(1, "# SKIP live MX lookup of debian.org: %s (%s)", error,
		    dsn);
		ok(1, "# SKIP no live answer");
		return;
	}
	ok(l->mx && l->count >= 1, "live: debian.org has MX hosts (%u)",
	    l->count);
	for (i = 1; i < l->count; i++)
		sorted &= l->hosts[i - 1].pref <= l->hosts[i].pref;
	ok(sorted && l->hosts[0].addr_count >= 1,
	    "live: sorted, first one %s with an address", l->hosts[0].name);
	smtp_mx_list_free(&l);
}

int
main(void)
{
	test_basic();
	test_rcodes();
	test_malformed();
	test_names();
	test_limit();
	test_sort();
	test_relayhost();
	test_addrs();
	test_live();
	return done_testing();
}
