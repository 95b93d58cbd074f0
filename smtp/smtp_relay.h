/*
 * smtp_relay.h: relay control at RCPT TO, with Postfix's parameters and
 * meaning (postconf(5), smtpd_check.c): mydestination, mynetworks,
 * relay_domains and smtpd_relay_restrictions, walked in order, each
 * restriction answering permit, reject or "next".
 *
 * On top of Postfix (which relays routed addresses for trusted clients),
 * the address forms that have carried mail through relay checks are
 * never relayed, whoever asks: '%' or '!' in the local part, a source
 * route, a quoted local part, an address literal, a trailing dot (see
 * smtp_relay_check for what happens when their domain is local).
 *
 * A struct smtp_relay is built once from the configuration, then only
 * read: smtp_relay_check does not change it and keeps no state.
 */
#ifndef LOFT_SMTP_RELAY_H
#define LOFT_SMTP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include "net.h"
#include "smtp_addr.h"

/* Room for any reply smtp_relay_check writes, NUL included: the code, the
 * formatted path (at most SMTP_PATH_MAX) and the longest text. */
#define SMTP_RELAY_REPLY_MAX	(SMTP_PATH_MAX + 128)

/* The parameters' defaults, as in Postfix 3 (mynetworks as with
 * mynetworks_style = host, but the loopback networks only). */
#define SMTP_RELAY_DEF_MYNETWORKS	"127.0.0.0/8 [::1]/128"
#define SMTP_RELAY_DEF_RESTRICTIONS \
	"permit_mynetworks, permit_sasl_authenticated, " \
	"reject_unauth_destination"

/* The values of the four parameters, expanded ($name already replaced):
 * lists of items separated by commas and white space. NULL is the same as
 * "". */
struct smtp_relay_settings {
	const char *mydestination;	/* domain or [address literal] */
	const char *mynetworks;		/* a.b.c.d[/n] or [ipv6][/n] */
	const char *relay_domains;	/* domain or .domain */
	const char *restrictions;	/* smtpd_relay_restrictions */
};

struct smtp_relay;

enum smtp_relay_result {
	SMTP_RELAY_LOCAL,	/* deliver on this machine */
	SMTP_RELAY_RELAY,	/* accept and send onward */
	SMTP_RELAY_REFUSE,	/* answer the 5xx reply */
	SMTP_RELAY_DEFER	/* answer the 4xx reply */
};

/*
 * smtp_relay_new: check and compile the settings. Items:
 *   mydestination  host names (letters, digits, '-', '_', '.', 8-bit
 *                  bytes; a final '.' is dropped; compared without case,
 *                  exactly: no subdomains, as in Postfix) or an address
 *                  literal ("[192.0.2.1]", "[ipv6:2001:db8::1]");
 *   relay_domains  host names as above, each also matching its
 *                  subdomains (Postfix's parent_domain_matches_subdomains
 *                  default), or ".example.com": the subdomains only;
 *   mynetworks     "192.0.2.0/24", "192.0.2.7" (/32), "[2001:db8::]/32",
 *                  "[::1]" (/128); host bits set in the address are an
 *                  error, as in Postfix ("non-null host address bits");
 *                  IPv6 outside brackets is an error;
 *   restrictions   permit_mynetworks, permit_sasl_authenticated,
 *                  reject_unauth_destination, defer_unauth_destination,
 *                  permit, reject (lower case); at least one of
 *                  reject_unauth_destination, defer_unauth_destination or
 *                  reject must be there (Postfix refuses to run without
 *                  one: the server would be an open relay).
 * Lookup tables ("hash:...", "/file") and negation ("!item") are not
 * supported and are errors. On error returns -1 with *error_r naming the
 * parameter and the bad item (static buffer, valid until the next call
 * into this module), e.g.
 *   mynetworks: bad value "10.1.2.3/8": non-null host address bits,
 *   perhaps you should use "10.0.0.0/8" instead
 * and *relay_r untouched; else 0 and *relay_r, freed with
 * smtp_relay_free.
 */
int smtp_relay_new(const struct smtp_relay_settings *set,
    struct smtp_relay **relay_r, const char **error_r);

/* smtp_relay_new_conf: smtp_relay_new with the expanded values of the
 * configuration parameters mydestination, mynetworks, relay_domains and
 * smtpd_relay_restrictions (conf.h). loftd calls it at start-up and
 * treats an error as fatal. */
int smtp_relay_new_conf(struct smtp_relay **relay_r, const char **error_r);

/* smtp_relay_free: free *relay (NULL is fine) and set it to NULL. */
void smtp_relay_free(struct smtp_relay **relay);

/*
 * smtp_relay_check: what to do with RCPT TO:rcpt from client (its IP
 * address; NULL if unknown, which no network matches; an IPv4-mapped IPv6
 * address counts as the IPv4 address), SASL-authenticated or not.
 * reply (replysize bytes, SMTP_RELAY_REPLY_MAX suffices) gets the reply
 * line without CRLF for SMTP_RELAY_REFUSE and SMTP_RELAY_DEFER, "" else.
 * In order:
 *  1. <postmaster> without a domain: LOCAL (RFC 5321 section 4.5.1).
 *  2. A routing form (a '%' or '!' or '@' in the local part, a source
 *     route) or a local part that needs quotes, for a local domain:
 *     REFUSE "553 5.1.3 <addr>: Bad recipient address syntax" (loft has
 *     no percent hack or bang paths, and creates no mailbox that needs
 *     quoting; a local part quoted without need is the same mailbox as
 *     unquoted, and passes). For any other domain, and any address
 *     literal that is not in mydestination: REFUSE "554 5.7.1 <addr>:
 *     Relay access denied", even for trusted clients. A trailing dot is
 *     dropped for a local domain (Postfix does the same) and refused for
 *     the others.
 *  3. The restrictions in order: permit_mynetworks (client in
 *     mynetworks), permit_sasl_authenticated (authenticated), permit:
 *     accept; reject_unauth_destination: REFUSE "554 5.7.1 <addr>: Relay
 *     access denied" unless the domain is in mydestination or
 *     relay_domains; defer_unauth_destination: the same as DEFER "454
 *     4.7.1 ..."; reject: REFUSE "554 5.7.1 <addr>: Recipient address
 *     rejected: Access denied" (Postfix's reject_code and relay_code
 *     defaults). The end of the list accepts.
 *  4. Accepted: LOCAL if the domain is in mydestination, else RELAY.
 * <addr> is smtp_path_format's form (the route and trailing dot gone).
 */
enum smtp_relay_result smtp_relay_check(const struct smtp_relay *relay,
    const struct net_addr *client, bool sasl_authenticated,
    const struct smtp_path *rcpt, char *reply, size_t replysize);

/* smtp_relay_is_local: whether domain (lower case, as in struct
 * smtp_path) is in mydestination. */
bool smtp_relay_is_local(const struct smtp_relay *relay, const char *domain);

/* smtp_relay_client_trusted: whether client is in mynetworks (NULL: no). */
bool smtp_relay_client_trusted(const struct smtp_relay *relay,
    const struct net_addr *client);

#endif
