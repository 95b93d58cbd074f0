/*
 * smtp_relay.c: relay control with Postfix's parameters: the settings are
 * checked and compiled once (smtp_relay_new), then each RCPT TO is
 * decided by smtp_relay_check, which walks smtpd_relay_restrictions the
 * way Postfix's generic_checks() does, after refusing the address forms
 * that are never relayed.
 *
 * Trusts the settings only as far as the administrator wrote them (each
 * item is checked, errors name the parameter and the item); the client
 * address comes from the kernel, the recipient from smtp_path_parse,
 * which has checked its syntax but not its intent.
 */
#include "config.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compat/compat.h"
#include "conf.h"
#include "xmalloc.h"
#include "smtp_relay.h"

#define SMTP_RELAY_SEP		", \t\r\n"
#define SMTP_RELAY_SHOW_MAX	200	/* of a bad item, in an error */

enum smtp_relay_restriction {
	SMTP_RELAY_R_PERMIT_MYNETWORKS,
	SMTP_RELAY_R_PERMIT_SASL,
	SMTP_RELAY_R_REJECT_UNAUTH,
	SMTP_RELAY_R_DEFER_UNAUTH,
	SMTP_RELAY_R_PERMIT,
	SMTP_RELAY_R_REJECT
};

static const struct {
	const char *name;
	enum smtp_relay_restriction r;
	bool stops_relay;	/* refuses unknown destinations */
} smtp_relay_names[] = {
	{ "permit_mynetworks", SMTP_RELAY_R_PERMIT_MYNETWORKS, false },
	{ "permit_sasl_authenticated", SMTP_RELAY_R_PERMIT_SASL, false },
	{ "reject_unauth_destination", SMTP_RELAY_R_REJECT_UNAUTH, true },
	{ "defer_unauth_destination", SMTP_RELAY_R_DEFER_UNAUTH, true },
	{ "permit", SMTP_RELAY_R_PERMIT, false },
	{ "reject", SMTP_RELAY_R_REJECT, true },
};

struct smtp_relay_net {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network order, no host bits */
	unsigned int prefix;
};

struct smtp_relay {
	char **mydestination;		/* lower case; owned */
	size_t mydestination_count;
	char **relay_domains;		/* lower case, maybe ".domain" */
	size_t relay_domains_count;
	struct smtp_relay_net *nets;
	size_t net_count;
	enum smtp_relay_restriction *restrictions;
	size_t restriction_count;
};

/* The item parser of one list: 0, or -1 with the reason in reason. */
typedef int smtp_relay_item_fn(struct smtp_relay *relay, const char *item,
    char *reason, size_t reasonsize);

static char smtp_relay_error[1024];

/* smtp_relay_fail: "param: bad value "item": reason" into the module's
 * error buffer; the item is shown with non-printable bytes as '?'. */
static const char *
smtp_relay_fail(const char *param, const char *item, const char *reason)
{
	char show[SMTP_RELAY_SHOW_MAX + 4];
	size_t i;

	for (i = 0; item[i] != '\0' && i < SMTP_RELAY_SHOW_MAX; i++)
		show[i] = item[i] >= 0x20 && item[i] < 0x7f ? item[i] : '?';
	show[i] = '\0';
	if (item[i] != '\0')
		strlcat(show, "...", sizeof(show));
	snprintf(smtp_relay_error, sizeof(smtp_relay_error),
	    "%s: bad value \"%s\": %s", param, show, reason);
	return smtp_relay_error;
}

/* smtp_relay_lower: ASCII lower case in place. */
static void
smtp_relay_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* smtp_relay_unsupported: the Postfix item forms loft does not have. */
static const char *
smtp_relay_unsupported(const char *item)
{
	if (item[0] == '!')
		return "negation (\"!\") is not supported";
	if (item[0] == '/' || strchr(item, ':') != NULL)
		return "lookup tables are not supported";
	return NULL;
}

/* smtp_relay_hostname: whether s is a host name as this module takes it:
 * labels of letters, digits, '-', '_' and 8-bit bytes (gethostname() may
 * give any of them), no empty label. */
static bool
smtp_relay_hostname(const char *s)
{
	unsigned char c, prev = '.';

	if (*s == '\0' || strlen(s) > SMTP_DOMAIN_MAX)
		return false;
	for (; (c = (unsigned char)*s) != '\0'; s++, prev = c) {
		if (c == '.' ? prev == '.' : !((c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c >= 0x80))
			return false;
	}
	return prev != '.';
}

/* smtp_relay_domain_item: a host name (final '.' dropped), or with
 * subdomains a ".name", or with literal an address literal, normalized
 * into *out_r (allocated). */
static int
smtp_relay_domain_item(const char *item, bool subdomains, bool literal,
    char **out_r, char *reason, size_t reasonsize)
{
	const char *why = smtp_relay_unsupported(item);
	const char *err = "not a literal";
	struct smtp_path p;
	char *d, path[SMTP_PATH_MAX + 8];
	size_t len;

	if (literal && item[0] == '[') {
		snprintf(path, sizeof(path), "<x@%s>", item);
		if (smtp_path_parse(path, strlen(path), false, false, &p,
		    &err) < 0 || !p.literal) {
			snprintf(reason, reasonsize, "not an address literal "
			    "(%s)", err);
			return -1;
		}
		*out_r = xstrdup(p.domain);
		return 0;
	}
	if (why != NULL) {
		strlcpy(reason, why, reasonsize);
		return -1;
	}
	d = xstrdup(item);
	smtp_relay_lower(d);
	len = strlen(d);
	if (len > 1 && d[len - 1] == '.')
		d[len - 1] = '\0';
	if (!smtp_relay_hostname(subdomains && d[0] == '.' ? d + 1 : d)) {
		free(d);
		strlcpy(reason, "not a domain name", reasonsize);
		return -1;
	}
	*out_r = d;
	return 0;
}

static int
smtp_relay_mydestination_item(struct smtp_relay *relay, const char *item,
    char *reason, size_t reasonsize)
{
	char *d;

	if (smtp_relay_domain_item(item, false, true, &d, reason,
	    reasonsize) < 0)
		return -1;
	relay->mydestination = xreallocarray(relay->mydestination,
	    relay->mydestination_count + 1, sizeof(char *));
	relay->mydestination[relay->mydestination_count++] = d;
	return 0;
}

static int
smtp_relay_relay_domains_item(struct smtp_relay *relay, const char *item,
    char *reason, size_t reasonsize)
{
	char *d;

	if (smtp_relay_domain_item(item, true, false, &d, reason,
	    reasonsize) < 0)
		return -1;
	relay->relay_domains = xreallocarray(relay->relay_domains,
	    relay->relay_domains_count + 1, sizeof(char *));
	relay->relay_domains[relay->relay_domains_count++] = d;
	return 0;
}

/* smtp_relay_prefix: "/n" at s (or nothing: the whole address), n being
 * 1..3 decimal digits up to max. */
static int
smtp_relay_prefix(const char *s, unsigned int max, unsigned int *prefix_r)
{
	unsigned int n = 0;
	size_t digits = 0;

	if (*s == '\0') {
		*prefix_r = max;
		return 0;
	}
	if (*s++ != '/')
		return -1;
	for (; *s >= '0' && *s <= '9' && digits < 3; s++, digits++)
		n = n * 10 + (unsigned int)(*s - '0');
	if (digits == 0 || *s != '\0' || n > max)
		return -1;
	*prefix_r = n;
	return 0;
}

/* smtp_relay_mask: clear the host bits of addr (len bytes) past prefix;
 * whether any was set. */
static bool
smtp_relay_mask(unsigned char *addr, size_t len, unsigned int prefix)
{
	bool had = false;
	unsigned char keep;
	size_t i;

	for (i = 0; i < len; i++) {
		if (prefix >= 8 * (i + 1))
			continue;
		keep = prefix <= 8 * i ? 0 :
		    (unsigned char)(0xff << (8 - (prefix - 8 * i)));
		had |= (addr[i] & ~keep) != 0;
		addr[i] &= keep;
	}
	return had;
}

/* smtp_relay_v6: whether item[0..len) is an IPv6 address. */
static bool
smtp_relay_v6(const char *item, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len >= sizeof(addr))
		return false;
	memcpy(addr, item, len);
	addr[len] = '\0';
	return inet_pton(AF_INET6, addr, &a) == 1;
}

/* smtp_relay_net_parse: "a.b.c.d[/n]" or "[ipv6][/n]" into *net. */
static int
smtp_relay_net_parse(const char *item, struct smtp_relay_net *net,
    char *reason, size_t reasonsize)
{
	char addr[64];
	const char *end, *rest;
	size_t len;

	memset(net, 0, sizeof(*net));
	if (item[0] == '[') {
		net->family = AF_INET6;
		if ((end = strchr(item, ']')) == NULL) {
			strlcpy(reason, "missing \"]\"", reasonsize);
			return -1;
		}
		len = (size_t)(end - item - 1);
		rest = end + 1;
		item++;
	} else {
		net->family = AF_INET;
		len = strcspn(item, "/");
		rest = item + len;
		if ((end = smtp_relay_unsupported(item)) != NULL) {
			strlcpy(reason, smtp_relay_v6(item, len) ?
			    "an IPv6 network must be in brackets, as in "
			    "[::1]/128" : end, reasonsize);
			return -1;
		}
	}
	if (len >= sizeof(addr)) {
		strlcpy(reason, "not an IP address", reasonsize);
		return -1;
	}
	memcpy(addr, item, len);
	addr[len] = '\0';
	if (inet_pton(net->family, addr, net->addr) != 1) {
		strlcpy(reason, net->family == AF_INET6 ? "not an IPv6 address "
		    "in brackets" : "not an IPv4 address", reasonsize);
		return -1;
	}
	if (smtp_relay_prefix(rest, net->family == AF_INET ? 32 : 128,
	    &net->prefix) < 0) {
		snprintf(reason, reasonsize, "bad network prefix \"%s\" "
		    "(expected /0 to /%d)", rest,
		    net->family == AF_INET ? 32 : 128);
		return -1;
	}
	return 0;
}

static int
smtp_relay_mynetworks_item(struct smtp_relay *relay, const char *item,
    char *reason, size_t reasonsize)
{
	struct smtp_relay_net net;
	char text[INET6_ADDRSTRLEN];

	if (smtp_relay_net_parse(item, &net, reason, reasonsize) < 0)
		return -1;
	if (smtp_relay_mask(net.addr, net.family == AF_INET ? 4 : 16,
	    net.prefix)) {
		inet_ntop(net.family, net.addr, text, sizeof(text));
		snprintf(reason, reasonsize, "non-null host address bits, "
		    "perhaps you should use \"%s%s%s/%u\" instead",
		    net.family == AF_INET6 ? "[" : "", text,
		    net.family == AF_INET6 ? "]" : "", net.prefix);
		return -1;
	}
	relay->nets = xreallocarray(relay->nets, relay->net_count + 1,
	    sizeof(*relay->nets));
	relay->nets[relay->net_count++] = net;
	return 0;
}

static int
smtp_relay_restriction_item(struct smtp_relay *relay, const char *item,
    char *reason, size_t reasonsize)
{
	size_t i;

	for (i = 0; i < sizeof(smtp_relay_names) /
	    sizeof(smtp_relay_names[0]); i++) {
		if (strcmp(item, smtp_relay_names[i].name) != 0)
			continue;
		relay->restrictions = xreallocarray(relay->restrictions,
		    relay->restriction_count + 1,
		    sizeof(*relay->restrictions));
		relay->restrictions[relay->restriction_count++] =
		    smtp_relay_names[i].r;
		return 0;
	}
	strlcpy(reason, "unknown restriction", reasonsize);
	return -1;
}

/* smtp_relay_list: call fn for each item of value. */
static int
smtp_relay_list(struct smtp_relay *relay, const char *param,
    const char *value, smtp_relay_item_fn *fn, const char **error_r)
{
	char reason[256], *item;
	size_t len;
	int r;

	if (value == NULL)
		return 0;
	for (value += strspn(value, SMTP_RELAY_SEP); *value != '\0';
	    value += strspn(value, SMTP_RELAY_SEP)) {
		len = strcspn(value, SMTP_RELAY_SEP);
		item = xstrndup(value, len);
		r = fn(relay, item, reason, sizeof(reason));
		if (r < 0)
			*error_r = smtp_relay_fail(param, item, reason);
		free(item);
		if (r < 0)
			return -1;
		value += len;
	}
	return 0;
}

/* smtp_relay_stops: whether one restriction refuses unknown destinations,
 * without which Postfix will not run. */
static int
smtp_relay_stops(const struct smtp_relay *relay, const char *value,
    const char **error_r)
{
	size_t i, j;

	for (i = 0; i < relay->restriction_count; i++)
		for (j = 0; j < sizeof(smtp_relay_names) /
		    sizeof(smtp_relay_names[0]); j++)
			if (smtp_relay_names[j].r == relay->restrictions[i] &&
			    smtp_relay_names[j].stops_relay)
				return 0;
	*error_r = smtp_relay_fail("smtpd_relay_restrictions",
	    value != NULL ? value : "", "specify at least one of "
	    "reject_unauth_destination, defer_unauth_destination or reject "
	    "(else this is an open relay)");
	return -1;
}

int
smtp_relay_new(const struct smtp_relay_settings *set,
    struct smtp_relay **relay_r, const char **error_r)
{
	struct smtp_relay *relay = xcalloc(1, sizeof(*relay));

	if (smtp_relay_list(relay, "mydestination", set->mydestination,
	    smtp_relay_mydestination_item, error_r) < 0 ||
	    smtp_relay_list(relay, "mynetworks", set->mynetworks,
	    smtp_relay_mynetworks_item, error_r) < 0 ||
	    smtp_relay_list(relay, "relay_domains", set->relay_domains,
	    smtp_relay_relay_domains_item, error_r) < 0 ||
	    smtp_relay_list(relay, "smtpd_relay_restrictions",
	    set->restrictions, smtp_relay_restriction_item, error_r) < 0 ||
	    smtp_relay_stops(relay, set->restrictions, error_r) < 0) {
		smtp_relay_free(&relay);
		return -1;
	}
	*relay_r = relay;
	return 0;
}

int
smtp_relay_new_conf(struct smtp_relay **relay_r, const char **error_r)
{
	struct smtp_relay_settings set;

	set.mydestination = conf_str("mydestination");
	set.mynetworks = conf_str("mynetworks");
	set.relay_domains = conf_str("relay_domains");
	set.restrictions = conf_str("smtpd_relay_restrictions");
	return smtp_relay_new(&set, relay_r, error_r);
}

static void
smtp_relay_free_strings(char **list, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		free(list[i]);
	free(list);
}

void
smtp_relay_free(struct smtp_relay **relayp)
{
	struct smtp_relay *relay = *relayp;

	if (relay == NULL)
		return;
	smtp_relay_free_strings(relay->mydestination,
	    relay->mydestination_count);
	smtp_relay_free_strings(relay->relay_domains,
	    relay->relay_domains_count);
	free(relay->nets);
	free(relay->restrictions);
	free(relay);
	*relayp = NULL;
}

bool
smtp_relay_is_local(const struct smtp_relay *relay, const char *domain)
{
	size_t i;

	for (i = 0; i < relay->mydestination_count; i++)
		if (strcmp(relay->mydestination[i], domain) == 0)
			return true;
	return false;
}

/* smtp_relay_is_relay_domain: domain matches relay_domains: an entry
 * itself or a subdomain of it, or a subdomain of a ".entry". */
static bool
smtp_relay_is_relay_domain(const struct smtp_relay *relay,
    const char *domain)
{
	size_t i, dlen = strlen(domain), elen;
	const char *e;

	for (i = 0; i < relay->relay_domains_count; i++) {
		e = relay->relay_domains[i];
		elen = strlen(e);
		if (e[0] != '.' && strcmp(domain, e) == 0)
			return true;
		if (e[0] != '.' && dlen > elen + 1 &&
		    domain[dlen - elen - 1] == '.' &&
		    strcmp(domain + dlen - elen, e) == 0)
			return true;
		if (e[0] == '.' && dlen > elen &&
		    strcmp(domain + dlen - elen, e) == 0)
			return true;
	}
	return false;
}

/* smtp_relay_client_bytes: the client's address bytes and family, an
 * IPv4-mapped IPv6 address as IPv4 (as Postfix's smtpd does). */
static bool
smtp_relay_client_bytes(const struct net_addr *client, int *family_r,
    unsigned char *addr)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	if (client == NULL)
		return false;
	if (client->ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&client->ss;
		memcpy(addr, &sin->sin_addr, 4);
		*family_r = AF_INET;
		return true;
	}
	if (client->ss.ss_family != AF_INET6)
		return false;
	sin6 = (const struct sockaddr_in6 *)&client->ss;
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
		*family_r = AF_INET;
	} else {
		memcpy(addr, sin6->sin6_addr.s6_addr, 16);
		*family_r = AF_INET6;
	}
	return true;
}

bool
smtp_relay_client_trusted(const struct smtp_relay *relay,
    const struct net_addr *client)
{
	unsigned char addr[16];
	int family;
	size_t i;

	if (!smtp_relay_client_bytes(client, &family, addr))
		return false;
	for (i = 0; i < relay->net_count; i++) {
		const struct smtp_relay_net *n = &relay->nets[i];
		unsigned char masked[16];

		if (n->family != family)
			continue;
		memcpy(masked, addr, sizeof(masked));
		smtp_relay_mask(masked, family == AF_INET ? 4 : 16,
		    n->prefix);
		if (memcmp(masked, n->addr, family == AF_INET ? 4 : 16) == 0)
			return true;
	}
	return false;
}

/* smtp_relay_routed: a form that names another destination than its
 * domain (percent hack, bang path, source route, '@' in the local part:
 * what Postfix's resolver flags as RESOLVE_FLAG_ROUTED), or a local part
 * that needs quotes. */
static bool
smtp_relay_routed(const struct smtp_path *p)
{
	return p->percent || p->bang || p->route ||
	    strchr(p->local, '@') != NULL || smtp_path_needs_quotes(p);
}

/* smtp_relay_reply: write "code dsn <addr>: text" into reply and return
 * result. */
static enum smtp_relay_result
smtp_relay_reply(enum smtp_relay_result result, const char *code,
    const struct smtp_path *p, const char *text, char *reply,
    size_t replysize)
{
	char addr[SMTP_PATH_MAX + 3];

	smtp_path_format(p, addr, sizeof(addr));
	snprintf(reply, replysize, "%s %s: %s", code, addr, text);
	return result;
}

#define SMTP_RELAY_DENIED	"Relay access denied"

/* smtp_relay_walk: the restrictions in order; 1 accepted, else the
 * refusal as a result with its reply. */
static int
smtp_relay_walk(const struct smtp_relay *relay,
    const struct net_addr *client, bool sasl_authenticated,
    const struct smtp_path *p, bool local, enum smtp_relay_result *result_r,
    char *reply, size_t replysize)
{
	bool auth_dest = local || smtp_relay_is_relay_domain(relay,
	    p->domain);
	size_t i;

	for (i = 0; i < relay->restriction_count; i++) {
		switch (relay->restrictions[i]) {
		case SMTP_RELAY_R_PERMIT_MYNETWORKS:
			if (smtp_relay_client_trusted(relay, client))
				return 1;
			break;
		case SMTP_RELAY_R_PERMIT_SASL:
			if (sasl_authenticated)
				return 1;
			break;
		case SMTP_RELAY_R_PERMIT:
			return 1;
		case SMTP_RELAY_R_REJECT_UNAUTH:
		case SMTP_RELAY_R_DEFER_UNAUTH:
			if (auth_dest)
				break;
			*result_r = relay->restrictions[i] ==
			    SMTP_RELAY_R_REJECT_UNAUTH ?
			    smtp_relay_reply(SMTP_RELAY_REFUSE, "554 5.7.1", p,
			    SMTP_RELAY_DENIED, reply, replysize) :
			    smtp_relay_reply(SMTP_RELAY_DEFER, "454 4.7.1", p,
			    SMTP_RELAY_DENIED, reply, replysize);
			return 0;
		case SMTP_RELAY_R_REJECT:
			*result_r = smtp_relay_reply(SMTP_RELAY_REFUSE,
			    "554 5.7.1", p, "Recipient address rejected: "
			    "Access denied", reply, replysize);
			return 0;
		}
	}
	return 1;
}

enum smtp_relay_result
smtp_relay_check(const struct smtp_relay *relay,
    const struct net_addr *client, bool sasl_authenticated,
    const struct smtp_path *rcpt, char *reply, size_t replysize)
{
	enum smtp_relay_result result;
	bool local;

	if (replysize > 0)
		reply[0] = '\0';
	if (rcpt->postmaster)
		return SMTP_RELAY_LOCAL;
	if (rcpt->null)
		return smtp_relay_reply(SMTP_RELAY_REFUSE, "553 5.1.3", rcpt,
		    "Bad recipient address syntax", reply, replysize);
	local = smtp_relay_is_local(relay, rcpt->domain);
	if (local && smtp_relay_routed(rcpt))
		return smtp_relay_reply(SMTP_RELAY_REFUSE, "553 5.1.3", rcpt,
		    "Bad recipient address syntax", reply, replysize);
	if (!local && (smtp_relay_routed(rcpt) || rcpt->quoted ||
	    rcpt->literal || rcpt->trailing_dot))
		return smtp_relay_reply(SMTP_RELAY_REFUSE, "554 5.7.1", rcpt,
		    SMTP_RELAY_DENIED, reply, replysize);
	if (!smtp_relay_walk(relay, client, sasl_authenticated, rcpt, local,
	    &result, reply, replysize))
		return result;
	return local ? SMTP_RELAY_LOCAL : SMTP_RELAY_RELAY;
}
