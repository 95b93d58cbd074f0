/*
 * smtp_mx.h: where outbound mail goes: the MX hosts of a domain, by
 * preference, each with its addresses (RFC 5321 section 5.1), and the
 * relayhost forms of Postfix ("[host]:port" without MX lookup, "host" and
 * "host:port" with one).
 *
 * The lookups BLOCK: MX through the system resolver (res_nmkquery and
 * res_nsend, answers parsed here), addresses through getaddrinfo(3).
 * They are bounded by the resolver's timeout and attempts
 * (smtp_mx_settings, else /etc/resolv.conf: 5 s x 2 by default, per
 * server); getaddrinfo has only resolv.conf's. There is no asynchronous
 * form (no threads in loft). The queue manager should run them in the
 * delivery process that then connects (one lookup per destination, in a
 * process that does nothing else meanwhile), not in its scheduling loop.
 *
 * Results: SMTP_MX_OK, or a failure that says whether it is permanent
 * (bounce: the domain does not exist, has a null MX, or no host with an
 * address) or temporary (defer: SERVFAIL, timeouts, a malformed answer),
 * with an enhanced status code for the DSN and a text for the log.
 *
 * Not thread-safe (error texts in static buffers). Trusts nothing from
 * DNS: names are checked and bounded, counts capped.
 */
#ifndef LOFT_SMTP_MX_H
#define LOFT_SMTP_MX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "smtp_addr.h"		/* SMTP_DOMAIN_MAX */

/* Kept MX hosts (the lowest preferences: more are never tried; Postfix's
 * smtp_mx_address_limit is 5) and addresses per host. */
#define SMTP_MX_HOSTS_MAX	16
#define SMTP_MX_ADDRS_MAX	8
/* Largest DNS answer read (over UDP the resolver retries with TCP). */
#define SMTP_MX_ANSWER_MAX	65535
#define SMTP_MX_PORT		25

/* Return values of the lookups. */
#define SMTP_MX_OK		0
#define SMTP_MX_TEMP		(-1)	/* defer: try again later */
#define SMTP_MX_PERM		(-2)	/* bounce */

struct smtp_mx_host {
	char name[SMTP_DOMAIN_MAX + 1];	/* lower case, no trailing dot */
	unsigned pref;			/* MX preference; 0 without MX */
	struct net_addr addrs[SMTP_MX_ADDRS_MAX];	/* port set */
	unsigned addr_count;
};

struct smtp_mx_list {
	bool mx;			/* from MX records; false: the
					   domain's or relayhost's own
					   addresses */
	struct smtp_mx_host *hosts;	/* owned; by preference */
	unsigned count;			/* >= 1 on success */
};

/* Resolver bounds: timeout_s per try and server (RES_TIMEOUT; 0: from
 * resolv.conf), tries (RES_DFLRETRY; 0: from resolv.conf); family:
 * AF_UNSPEC (Postfix inet_protocols = all), AF_INET (ipv4) or AF_INET6
 * (ipv6): which addresses are kept. */
struct smtp_mx_settings {
	unsigned timeout_s;
	unsigned tries;
	int family;
};

/* A relayhost setting, parsed. */
struct smtp_mx_relayhost {
	char host[SMTP_DOMAIN_MAX + 1];	/* name or address, no brackets */
	unsigned port;
	bool mx;			/* no brackets: look up host's MX */
};

/*
 * smtp_mx_relayhost_parse: spec is "[host]", "[host]:port", "host",
 * "host:port", with host a domain name or, in brackets only, an IPv4
 * address or an IPv6 one ("[2001:db8::1]" or "[ipv6:2001:db8::1]");
 * port 1..65535 in decimal, default SMTP_MX_PORT. Names are lower-cased,
 * a trailing dot dropped. Refused with *error_r: empty, unbalanced
 * brackets, junk after "]", a bad port, a name with characters outside
 * letters, digits, '-', '_' and '.', an empty label, over
 * SMTP_DOMAIN_MAX. 0 with *r, or -1 with *r untouched.
 */
int smtp_mx_relayhost_parse(const char *spec, struct smtp_mx_relayhost *r,
    const char **error_r);

/*
 * smtp_mx_parse_answer: the DNS answer pkt[0..len) to an MX query
 * (split from the query so that tests can feed built packets). The MX
 * records of the answer section (class IN; other types, CNAMEs, are
 * skipped) go to hosts[] (room for max; names checked as host names,
 * addresses not filled); when there are more, the lowest preferences are
 * kept. Returns:
 *	SMTP_MX_OK	*count_r hosts, in answer order (0: no MX record,
 *			NOERROR/NODATA: fall back to the domain itself)
 *	SMTP_MX_PERM	NXDOMAIN ("5.1.2"), or a null MX (RFC 7505: a
 *			target of "." at any preference: "5.1.10")
 *	SMTP_MX_TEMP	SERVFAIL and every other rcode, a truncated or
 *			malformed packet, not a response ("4.4.3")
 * with *dsn_r and *error_r set on failure (static).
 */
int smtp_mx_parse_answer(const unsigned char *pkt, size_t len,
    struct smtp_mx_host *hosts, unsigned max, unsigned *count_r,
    const char **dsn_r, const char **error_r);

/*
 * smtp_mx_sort: order hosts by preference, shuffling hosts of equal
 * preference (RFC 5321 section 5.1) with rnd(n), which returns a number
 * below n (NULL: arc4random_uniform).
 */
void smtp_mx_sort(struct smtp_mx_host *hosts, unsigned count,
    uint32_t (*rnd)(uint32_t n));

/*
 * smtp_mx_host_addrs: fill h->addrs with the addresses of h->name (or of
 * the address literal in it) for port, through getaddrinfo (blocking),
 * duplicates dropped, at most SMTP_MX_ADDRS_MAX. SMTP_MX_OK (addr_count
 * >= 1), SMTP_MX_PERM (the name does not exist or has no address of the
 * family), or SMTP_MX_TEMP (EAI_AGAIN and other failures).
 */
int smtp_mx_host_addrs(const struct smtp_mx_settings *set,
    struct smtp_mx_host *h, unsigned port, const char **dsn_r,
    const char **error_r);

/*
 * smtp_mx_lookup: where mail for domain goes, on port: its MX hosts by
 * preference (equal ones shuffled) with their addresses (hosts without
 * any are dropped), or, without MX records, the domain's own addresses.
 * BLOCKS (see above). SMTP_MX_OK with *list_r (free with
 * smtp_mx_list_free), or SMTP_MX_PERM / SMTP_MX_TEMP with *dsn_r and
 * *error_r: permanent for NXDOMAIN, a null MX, and when no MX host (or
 * the domain) has an address and no lookup failed temporarily; temporary
 * otherwise. domain must be a host name (not a literal).
 */
int smtp_mx_lookup(const struct smtp_mx_settings *set, const char *domain,
    unsigned port, struct smtp_mx_list **list_r, const char **dsn_r,
    const char **error_r);

/*
 * smtp_mx_lookup_relayhost: where mail goes through relayhost r: the
 * MX hosts of r->host when r->mx (as smtp_mx_lookup, falling back to its
 * own addresses), else r->host's addresses alone; on r->port. BLOCKS.
 * As smtp_mx_lookup for the results.
 */
int smtp_mx_lookup_relayhost(const struct smtp_mx_settings *set,
    const struct smtp_mx_relayhost *r, struct smtp_mx_list **list_r,
    const char **dsn_r, const char **error_r);

/* smtp_mx_list_free: free *list (NULL is fine) and set it to NULL. */
void smtp_mx_list_free(struct smtp_mx_list **list);

#endif
