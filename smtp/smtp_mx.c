/*
 * smtp_mx.c: MX resolution for outbound SMTP (smtp_mx.h): the query
 * through the system resolver (res_nmkquery/res_nsend, in glibc's libc),
 * our own parser of the answer (split from the query so that tests feed
 * it built packets; ns_parserr would need libresolv and the rcode
 * handling of res_nquery would hide NXDOMAIN from a parser test),
 * ordering by preference with shuffled ties, getaddrinfo for the
 * addresses, and the relayhost forms.
 *
 * Trusts nothing from DNS: every length and offset of a packet is
 * checked against its end, names are expanded by dn_expand into a bounded
 * buffer and must be plain host names, record counts are capped. The
 * relayhost setting is the administrator's, but it is checked as
 * strictly.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat/compat.h"
#include "xmalloc.h"
#include "smtp_mx.h"

#define MX_HDR_LEN	12
#define MX_RR_FIXED	10	/* type, class, ttl, rdlength */
#define MX_RCODE_NXDOMAIN 3
#define MX_QUERY_MAX	512	/* a question fits a UDP packet */
#define MX_LABEL_MAX	63
/* NXDOMAIN in Postfix's words, which name what was asked: "name=N
 * type=MX: Host not found" follows. */
#define MX_NXDOMAIN_TEXT "Host or domain name not found. Name service " \
	"error for "

static char mx_error[512];

static int __attribute__((format(printf, 4, 5)))
mx_fail(int ret, const char *dsn, const char **dsn_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mx_error, sizeof(mx_error), fmt, ap);
	va_end(ap);
	if (dsn_r != NULL)
		*dsn_r = dsn;
	return ret;
}

/* mx_error_r: point *error_r at the text mx_fail wrote. */
static int
mx_ret(int ret, const char **error_r)
{
	*error_r = mx_error;
	return ret;
}

/*
 * mx_name_norm: check a host name (letters, digits, '-', '_', labels of
 * 1..63, at most SMTP_DOMAIN_MAX) and copy it lower-cased, without a
 * trailing dot, into out (SMTP_DOMAIN_MAX + 1). -1 if it is not one.
 */
static int
mx_name_norm(const char *s, size_t len, char *out)
{
	size_t i, label = 0;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > MX_LABEL_MAX)
				return -1;
		} else
			return -1;
		out[i] = (char)tolower(c);
	}
	if (label == 0)
		return -1;
	out[len] = '\0';
	return 0;
}

/* --- relayhost --- */

static int
mx_parse_port(const char *s, unsigned *port_r)
{
	unsigned long v = 0;

	if (*s == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    strlen(s) > 5)
		return -1;
	v = strtoul(s, NULL, 10);
	if (v == 0 || v > 65535)
		return -1;
	*port_r = (unsigned)v;
	return 0;
}

/* mx_literal: the text in brackets: an address, or a name. */
static int
mx_literal(const char *s, size_t len, struct smtp_mx_relayhost *r)
{
	unsigned char a[sizeof(struct in6_addr)];
	char tmp[SMTP_DOMAIN_MAX + 1];

	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (strncasecmp(tmp, "ipv6:", 5) == 0) {
		if (inet_pton(AF_INET6, tmp + 5, a) != 1)
			return -1;
		strlcpy(r->host, tmp + 5, sizeof(r->host));
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, a) == 1 ||
	    inet_pton(AF_INET, tmp, a) == 1) {
		strlcpy(r->host, tmp, sizeof(r->host));
		return 0;
	}
	return mx_name_norm(tmp, len, r->host);
}

int
smtp_mx_relayhost_parse(const char *spec, struct smtp_mx_relayhost *r,
    const char **error_r)
{
	struct smtp_mx_relayhost tmp;
	const char *end, *colon;
	unsigned char a[sizeof(struct in_addr)];

	memset(&tmp, 0, sizeof(tmp));
	tmp.port = SMTP_MX_PORT;
	if (*spec == '\0')
		return mx_ret(mx_fail(-1, NULL, NULL, "relayhost: empty"),
		    error_r);
	if (*spec == '[') {
		if ((end = strchr(spec, ']')) == NULL)
			return mx_ret(mx_fail(-1, NULL, NULL, "relayhost %s: "
			    "missing ']'", spec), error_r);
		if (mx_literal(spec + 1, (size_t)(end - spec - 1), &tmp) < 0)
			return mx_ret(mx_fail(-1, NULL, NULL, "relayhost %s: "
			    "bad host in brackets", spec), error_r);
		colon = end + 1;
		if (*colon != '\0' && *colon != ':')
			return mx_ret(mx_fail(-1, NULL, NULL, "relayhost %s: "
			    "junk after ']'", spec), error_r);
	} else {
		colon = strchr(spec, ':');
		end = colon != NULL ? colon : spec + strlen(spec);
		if (strchr(spec, ']') != NULL || mx_name_norm(spec,
		    (size_t)(end - spec), tmp.host) < 0)
			return mx_ret(mx_fail(-1, NULL, NULL, "relayhost %s: "
			    "bad host name", spec), error_r);
		/* A bare IPv4 address has no MX to look up. */
		tmp.mx = inet_pton(AF_INET, tmp.host, a) != 1;
		if (colon == NULL)
			colon = end;
	}
	if (*colon == ':' && mx_parse_port(colon + 1, &tmp.port) < 0)
		return mx_ret(mx_fail(-1, NULL, NULL, "relayhost %s: bad port",
		    spec), error_r);
	*r = tmp;
	return 0;
}

/* --- the answer --- */

struct mx_pkt {
	const unsigned char *p, *end;
	const unsigned char *cur;
};

static unsigned
mx_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* mx_skip_name: step over a (compressed) name; -1 if malformed. */
static int
mx_skip_name(struct mx_pkt *k)
{
	int n = dn_skipname(k->cur, k->end);

	if (n < 0)
		return -1;
	k->cur += n;
	return 0;
}

static int
mx_skip_questions(struct mx_pkt *k, unsigned qd)
{
	while (qd-- > 0) {
		if (mx_skip_name(k) < 0 || k->end - k->cur < 4)
			return -1;
		k->cur += 4;
	}
	return 0;
}

/* mx_keep: add h to hosts[0..*n) of room max; when full, it replaces the
 * highest preference if it is lower (the lowest ones are kept). */
static void
mx_keep(struct smtp_mx_host *hosts, unsigned max, unsigned *n,
    const struct smtp_mx_host *h)
{
	unsigned i, worst = 0;

	if (*n < max) {
		hosts[(*n)++] = *h;
		return;
	}
	for (i = 1; i < max; i++)
		if (hosts[i].pref > hosts[worst].pref)
			worst = i;
	if (max > 0 && h->pref < hosts[worst].pref)
		hosts[worst] = *h;
}

/*
 * mx_rdata: one MX record's rdata at rd (rdlen bytes) into h. 1 for a
 * host, 0 for a null MX, -1 if malformed.
 */
static int
mx_rdata(const struct mx_pkt *k, const unsigned char *rd, size_t rdlen,
    struct smtp_mx_host *h)
{
	char name[NS_MAXDNAME];
	int n;

	if (rdlen < 3)
		return -1;
	memset(h, 0, sizeof(*h));
	h->pref = mx_get16(rd);
	n = dn_expand(k->p, k->end, rd + 2, name, sizeof(name));
	if (n < 0 || (size_t)n != rdlen - 2)
		return -1;
	if (name[0] == '\0' || strcmp(name, ".") == 0)
		return 0;
	return mx_name_norm(name, strlen(name), h->name) < 0 ? -1 : 1;
}

struct mx_scan {
	unsigned seen, bad;
	bool null_mx;
};

/* mx_answers: walk an answer records, keeping the MX ones. */
static int
mx_answers(struct mx_pkt *k, unsigned an, struct smtp_mx_host *hosts,
    unsigned max, unsigned *count_r, struct mx_scan *scan)
{
	struct smtp_mx_host h;
	unsigned type, class;
	size_t rdlen;
	int r;

	for (; an > 0; an--) {
		if (mx_skip_name(k) < 0 || k->end - k->cur < MX_RR_FIXED)
			return -1;
		type = mx_get16(k->cur);
		class = mx_get16(k->cur + 2);
		rdlen = mx_get16(k->cur + 8);
		k->cur += MX_RR_FIXED;
		if ((size_t)(k->end - k->cur) < rdlen)
			return -1;
		if (type == ns_t_mx && class == ns_c_in) {
			scan->seen++;
			if ((r = mx_rdata(k, k->cur, rdlen, &h)) == 0)
				scan->null_mx = true;
			else if (r < 0)
				scan->bad++;
			else
				mx_keep(hosts, max, count_r, &h);
		}
		k->cur += rdlen;
	}
	return 0;
}

int
smtp_mx_parse_answer(const unsigned char *pkt, size_t len,
    struct smtp_mx_host *hosts, unsigned max, unsigned *count_r,
    const char **dsn_r, const char **error_r)
{
	struct mx_pkt k = { pkt, pkt + len, pkt + MX_HDR_LEN };
	struct mx_scan scan = { 0, 0, false };
	unsigned flags, rcode;

	*count_r = 0;
	if (len < MX_HDR_LEN)
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "malformed DNS reply (too short)"), error_r);
	flags = mx_get16(pkt + 2);
	rcode = flags & 0xf;
	if ((flags & 0x8000) == 0 || (flags >> 11 & 0xf) != ns_o_query)
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "malformed DNS reply (not a query response)"), error_r);
	/* The name asked is the caller's to add (mx_query does). */
	if (rcode == MX_RCODE_NXDOMAIN)
		return mx_ret(mx_fail(SMTP_MX_PERM, "5.1.2", dsn_r,
		    MX_NXDOMAIN_TEXT "type=MX: Host not found"), error_r);
	if (rcode != 0)
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "DNS lookup failed (rcode %u%s)", rcode, rcode == 2 ?
		    ": SERVFAIL" : ""), error_r);
	if ((flags & 0x0200) != 0)
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "DNS reply truncated"), error_r);
	if (mx_skip_questions(&k, mx_get16(pkt + 4)) < 0 ||
	    mx_answers(&k, mx_get16(pkt + 6), hosts, max, count_r,
	    &scan) < 0) {
		*count_r = 0;
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "malformed DNS reply"), error_r);
	}
	if (scan.null_mx) {
		*count_r = 0;
		return mx_ret(mx_fail(SMTP_MX_PERM, "5.1.10", dsn_r,
		    "domain does not accept mail (null MX)"), error_r);
	}
	/* MX records that all failed to parse are no "no MX": falling back
	 * to the domain's address would send mail where it was not meant. */
	if (scan.seen > 0 && *count_r == 0)
		return mx_ret(mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r,
		    "malformed host name in MX record"), error_r);
	return SMTP_MX_OK;
}

/* --- ordering --- */

static int
mx_cmp_pref(const void *a, const void *b)
{
	const struct smtp_mx_host *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

static uint32_t
mx_rnd_default(uint32_t n)
{
	return arc4random_uniform(n);
}

void
smtp_mx_sort(struct smtp_mx_host *hosts, unsigned count,
    uint32_t (*rnd)(uint32_t n))
{
	struct smtp_mx_host tmp;
	unsigned start, end, i, j;

	if (rnd == NULL)
		rnd = mx_rnd_default;
	if (count > 1)
		qsort(hosts, count, sizeof(*hosts), mx_cmp_pref);
	/* Fisher-Yates over each run of equal preference. */
	for (start = 0; start < count; start = end) {
		for (end = start + 1; end < count &&
		    hosts[end].pref == hosts[start].pref; end++)
			;
		for (i = end - 1; i > start; i--) {
			j = start + rnd(i - start + 1);
			tmp = hosts[i];
			hosts[i] = hosts[j];
			hosts[j] = tmp;
		}
	}
}

/* --- addresses --- */

static bool
mx_addr_dup(const struct smtp_mx_host *h, const struct addrinfo *ai)
{
	for (unsigned i = 0; i < h->addr_count; i++)
		if (h->addrs[i].len == ai->ai_addrlen &&
		    memcmp(&h->addrs[i].ss, ai->ai_addr, ai->ai_addrlen) == 0)
			return true;
	return false;
}

static int
mx_gai_fail(int e, const char *name, const char **dsn_r)
{
	switch (e) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return mx_fail(SMTP_MX_PERM, "5.4.4", dsn_r, "Host or domain "
		    "name not found: %s has no address", name);
	default:
		return mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r, "address lookup "
		    "of %s failed: %s", name, e == EAI_SYSTEM ?
		    strerror(errno) : gai_strerror(e));
	}
}

int
smtp_mx_host_addrs(const struct smtp_mx_settings *set,
    struct smtp_mx_host *h, unsigned port, const char **dsn_r,
    const char **error_r)
{
	struct addrinfo hints, *res, *ai;
	char service[8];
	int e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = set != NULL ? set->family : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%u", port);
	h->addr_count = 0;
	if ((e = getaddrinfo(h->name, service, &hints, &res)) != 0)
		return mx_ret(mx_gai_fail(e, h->name, dsn_r), error_r);
	for (ai = res; ai != NULL && h->addr_count < SMTP_MX_ADDRS_MAX;
	    ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(h->addrs[0].ss) ||
		    mx_addr_dup(h, ai))
			continue;
		memcpy(&h->addrs[h->addr_count].ss, ai->ai_addr,
		    ai->ai_addrlen);
		h->addrs[h->addr_count++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (h->addr_count == 0)
		return mx_ret(mx_gai_fail(EAI_NONAME, h->name, dsn_r),
		    error_r);
	return SMTP_MX_OK;
}

/* --- the lookups --- */

/*
 * mx_refusal: the name of the refusal (SERVFAIL, NOTIMP, REFUSED) that
 * ans holds in answer to query q, or NULL. glibc's res_nsend tries the
 * next server on those and, when every one refused, fails with ETIMEDOUT
 * as after a real timeout, but leaves the last refusal in ans: read so,
 * the log says what the server said, not "Connection timed out". Only
 * the header is read, and only when its ID and flags match.
 */
static const char *
mx_refusal(const unsigned char *q, const unsigned char *ans)
{
	unsigned flags = mx_get16(ans + 2);

	if (ans[0] != q[0] || ans[1] != q[1] || (flags & 0x8000) == 0 ||
	    (flags >> 11 & 0xf) != ns_o_query)
		return NULL;
	switch (flags & 0xf) {
	case ns_r_servfail:
		return "SERVFAIL";
	case ns_r_notimpl:
		return "NOTIMP";
	case ns_r_refused:
		return "REFUSED";
	default:
		return NULL;
	}
}

/* mx_query: ask the resolver for domain's MX records, parse the answer. */
static int
mx_query(const struct smtp_mx_settings *set, const char *domain,
    struct smtp_mx_host *hosts, unsigned *count_r, const char **dsn_r)
{
	struct __res_state rs;
	unsigned char q[MX_QUERY_MAX], *ans;
	const char *error, *refusal;
	int qlen, alen, ret;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) < 0)
		return mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r, "cannot "
		    "initialise the resolver");
	if (set != NULL && set->timeout_s > 0)
		rs.retrans = (int)set->timeout_s;
	if (set != NULL && set->tries > 0)
		rs.retry = (int)set->tries;
	qlen = res_nmkquery(&rs, ns_o_query, domain, ns_c_in, ns_t_mx, NULL,
	    0, NULL, q, sizeof(q));
	if (qlen < 0) {
		res_nclose(&rs);
		return mx_fail(SMTP_MX_PERM, "5.1.2", dsn_r, "cannot make a "
		    "DNS query for %s", domain);
	}
	ans = xmalloc(SMTP_MX_ANSWER_MAX);
	memset(ans, 0, MX_HDR_LEN);
	errno = 0;
	alen = res_nsend(&rs, q, qlen, ans, SMTP_MX_ANSWER_MAX);
	res_nclose(&rs);
	if (alen < 0 && (refusal = mx_refusal(q, ans)) != NULL)
		ret = mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r, "DNS lookup of MX "
		    "for %s failed: the name server answered %s", domain,
		    refusal);
	else if (alen < 0)
		ret = mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r, "DNS lookup of MX "
		    "for %s failed: %s", domain, errno == 0 || errno ==
		    ECONNREFUSED ? "no answer from the name servers" :
		    strerror(errno));
	else {
		ret = smtp_mx_parse_answer(ans, alen > SMTP_MX_ANSWER_MAX ?
		    SMTP_MX_ANSWER_MAX : (size_t)alen, hosts,
		    SMTP_MX_HOSTS_MAX, count_r, dsn_r, &error);
		/* PERM from a whole header: NXDOMAIN, or a null MX. */
		if (ret == SMTP_MX_PERM && (mx_get16(ans + 2) & 0xf) ==
		    MX_RCODE_NXDOMAIN)
			ret = mx_fail(SMTP_MX_PERM, "5.1.2", dsn_r,
			    MX_NXDOMAIN_TEXT "name=%s type=MX: Host not found",
			    domain);
	}
	free(ans);
	return ret;
}

/* mx_addresses: resolve every host, dropping those without address. */
static int
mx_addresses(const struct smtp_mx_settings *set, struct smtp_mx_list *l,
    unsigned port, const char **dsn_r)
{
	const char *dsn, *error;
	char first[sizeof(mx_error)];
	unsigned i, kept = 0;
	bool temp = false;
	int r;

	first[0] = '\0';
	for (i = 0; i < l->count; i++) {
		r = smtp_mx_host_addrs(set, &l->hosts[i], port, &dsn, &error);
		if (r == SMTP_MX_OK) {
			l->hosts[kept++] = l->hosts[i];
			continue;
		}
		temp |= r == SMTP_MX_TEMP;
		if (first[0] == '\0' || r == SMTP_MX_TEMP)
			strlcpy(first, error, sizeof(first));
	}
	l->count = kept;
	if (kept > 0)
		return SMTP_MX_OK;
	if (temp)
		return mx_fail(SMTP_MX_TEMP, "4.4.3", dsn_r, "%s", first);
	return mx_fail(SMTP_MX_PERM, "5.4.4", dsn_r, "%s%s", l->mx ?
	    "no MX host has an address: " : "", first);
}

static struct smtp_mx_list *
mx_list_new(void)
{
	struct smtp_mx_list *l = xcalloc(1, sizeof(*l));

	l->hosts = xcalloc(SMTP_MX_HOSTS_MAX, sizeof(*l->hosts));
	return l;
}

/* mx_finish: addresses for l, then hand it out or free it. */
static int
mx_finish(const struct smtp_mx_settings *set, struct smtp_mx_list *l,
    unsigned port, struct smtp_mx_list **list_r, const char **dsn_r,
    const char **error_r)
{
	int r = mx_addresses(set, l, port, dsn_r);

	if (r != SMTP_MX_OK) {
		smtp_mx_list_free(&l);
		return mx_ret(r, error_r);
	}
	*list_r = l;
	return SMTP_MX_OK;
}

int
smtp_mx_lookup(const struct smtp_mx_settings *set, const char *domain,
    unsigned port, struct smtp_mx_list **list_r, const char **dsn_r,
    const char **error_r)
{
	struct smtp_mx_list *l;
	char name[SMTP_DOMAIN_MAX + 1];
	int r;

	if (mx_name_norm(domain, strlen(domain), name) < 0)
		return mx_ret(mx_fail(SMTP_MX_PERM, "5.1.2", dsn_r, "bad "
		    "domain name for an MX lookup"), error_r);
	l = mx_list_new();
	r = mx_query(set, name, l->hosts, &l->count, dsn_r);
	if (r != SMTP_MX_OK) {
		smtp_mx_list_free(&l);
		return mx_ret(r, error_r);
	}
	if (l->count == 0) {
		/* RFC 5321 section 5.1: no MX, the domain is its own. */
		strlcpy(l->hosts[0].name, name, sizeof(l->hosts[0].name));
		l->count = 1;
	} else {
		l->mx = true;
		smtp_mx_sort(l->hosts, l->count, NULL);
	}
	return mx_finish(set, l, port, list_r, dsn_r, error_r);
}

int
smtp_mx_lookup_relayhost(const struct smtp_mx_settings *set,
    const struct smtp_mx_relayhost *r, struct smtp_mx_list **list_r,
    const char **dsn_r, const char **error_r)
{
	struct smtp_mx_list *l;

	if (r->mx)
		return smtp_mx_lookup(set, r->host, r->port, list_r, dsn_r,
		    error_r);
	l = mx_list_new();
	strlcpy(l->hosts[0].name, r->host, sizeof(l->hosts[0].name));
	l->count = 1;
	return mx_finish(set, l, r->port, list_r, dsn_r, error_r);
}

void
smtp_mx_list_free(struct smtp_mx_list **list)
{
	if (*list == NULL)
		return;
	free((*list)->hosts);
	free(*list);
	*list = NULL;
}
