/*
 * qmgr_smtp.c: remote delivery of the queue manager (qmgr_smtp.h). A
 * message's remote recipients become jobs, one per destination and
 * sender (at most QMGR_SMTP_RCPT_MAX recipients each); a destination
 * (relayhost, else the recipient's domain) is looked up once while it is
 * in use, its addresses flattened by preference, and served by up to
 * default_destination_concurrency_limit smtp_client sessions, which take
 * its jobs one after the other and stay open for
 * smtp_connection_cache_time_limit when none is left (Postfix's
 * connection cache, in spirit). A session that fails before it is ready
 * (connect, greeting, EHLO, TLS, AUTH) goes on to the next address; when
 * the last one fails, and no other session of the destination lives, the
 * waiting jobs get that failure and the destination is dead for
 * QMGR_SMTP_DEAD_SECS.
 *
 * The lookups block (smtp_mx.h; no thread, and a resolver child would
 * have to be forked before the privilege drop and would count as a
 * second qmgr process): they run from a timer, one per loop turn, so
 * that local deliveries' answers are taken in between; the resolver
 * waits QMGR_SMTP_DNS_TIMEOUT seconds once per server (RES_OPTIONS for
 * getaddrinfo too); after a lookup that failed slowly no lookup is made
 * for QMGR_SMTP_DEAD_SECS (recipients are deferred), so a dead DNS
 * stalls the loop once a minute, for seconds.
 *
 * Loops: a destination whose address and port are one of our SMTP
 * listeners (an address of an interface for a wildcard listener) is cut
 * from the first such host on (MX hosts of equal or worse preference, as
 * Postfix does); with nothing left its recipients fail with "mail for
 * DOMAIN loops back to myself".
 *
 * SECURITY: runs in the qmgr process (mail_owner). Replies of remote
 * servers are parsed and bounded by smtp_client; what reaches the log is
 * escaped. smtp_sasl_password_maps is read once before the privilege
 * drop; passwords are borrowed by sessions, never logged.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "compat/compat.h"
#include "conf.h"
#include "ioloop.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include "xmalloc.h"
#include "smtp_client.h"
#include "smtp_mx.h"
#include "smtp_queue.h"
#include "qmgr_smtp.h"

/* Recipients of one SMTP transaction (Postfix's
 * default_destination_recipient_limit). */
#define QMGR_SMTP_RCPT_MAX	50
/* Addresses one session tries before it gives up (Postfix's
 * smtp_mx_address_limit is 5; ours counts addresses, not hosts). */
#define QMGR_SMTP_TRIES		10
/* Resolver timeout per server and try, in seconds; one try. */
#define QMGR_SMTP_DNS_TIMEOUT	2
/* A lookup that failed after this long is taken for a dead resolver. */
#define QMGR_SMTP_DNS_SLOW_MS	1500
/* Lines of smtp_sasl_password_maps, and the longest one. */
#define QMGR_SMTP_PASSWD_MAX	1000
#define QMGR_SMTP_PASSWD_LINE	1024
#define QMGR_SMTP_LOCAL_MAX	256

struct qmgr_smtp_addr {
	char host[SMTP_DOMAIN_MAX + 1];
	struct net_addr addr;
};

enum dest_state {
	DEST_NEW,		/* not looked up yet */
	DEST_READY,		/* addrs filled */
	DEST_FAILED		/* fail_* say why, until dead_until */
};

struct qmgr_smtp_dest {
	struct qmgr_smtp_dest *next;		/* smtp.dests */
	char key[SMTP_DOMAIN_MAX + 1];		/* domain, or "" for relayhost */
	enum dest_state state;
	struct qmgr_smtp_addr *addrs;		/* owned */
	unsigned naddrs;
	bool fail_perm;
	char fail_dsn[SMTP_CLIENT_DSN_MAX];
	char fail_text[SMTP_CLIENT_TEXT_MAX];
	time_t dead_until;
	struct qmgr_smtp_job *jobs, **jobs_tail;	/* owned FIFO, waiting */
	unsigned njobs;				/* in jobs */
	unsigned sessions;			/* alive, ours */
	unsigned starting;			/* of them not ready yet */
	/* A session failed before it was ready while others lived (a
	 * server with a connection limit): no new session until they
	 * are all gone; the live ones take the jobs. */
	bool throttled;
	bool lookup_queued;
	bool loop;				/* failed: it is us */
};

struct qmgr_smtp_job {
	struct qmgr_smtp_job *next;
	struct qmgr_smtp_msg *msg;
	struct qmgr_smtp_dest *dest;
	char *sender;				/* owned */
	struct smtp_client_msg cmsg;
	struct smtp_client_rcpt *rcpts;		/* owned, cmsg.rcpts */
	unsigned *index;			/* owned: env rcpt of each */
	char **to;				/* owned: rcpts[].addr */
	char *domain;				/* owned: for the texts */
	struct timeval handed;			/* given to a session */
	double conn_secs;			/* its session's setup */
};

struct qmgr_smtp_sess {
	struct qmgr_smtp_sess *prev, *next;	/* smtp.sessions */
	struct qmgr_smtp_dest *dest;
	struct smtp_client *client;		/* owned */
	struct smtp_client_settings set;	/* strings borrowed */
	unsigned addr;				/* index in dest->addrs */
	unsigned tries;
	bool ready_once;
	bool quitting;
	struct qmgr_smtp_job *job;		/* owned while sending */
	struct timeout *idle_to;		/* owned */
	struct timeval connect_start;
	double conn_secs;			/* setup, for the 1st job */
};

struct qmgr_smtp_passwd {
	char *key, *user, *password;		/* owned */
};

static struct {
	struct ioloop *loop;
	void (*kick)(void);
	struct smtp_client_settings set;	/* the base; strings below */
	char *helo_name;			/* owned */
	struct tls_ctx *tls;			/* owned; NULL: none */
	bool have_relayhost;
	struct smtp_mx_relayhost relayhost;
	struct smtp_mx_settings mx;
	struct qmgr_smtp_passwd *passwd;	/* owned */
	size_t npasswd;
	struct net_addr listen[QMGR_SMTP_LOCAL_MAX];
	size_t nlisten;
	struct net_addr ifaddrs[QMGR_SMTP_LOCAL_MAX];	/* ports unset */
	size_t nifaddrs;
	unsigned dest_limit, total_limit;
	unsigned cache_ms;
	struct qmgr_smtp_dest *dests;		/* owned */
	struct qmgr_smtp_sess *sessions;	/* owned */
	unsigned nsessions;
	struct timeout *tick_to;		/* owned */
	time_t dns_dead_until;
	bool retired;
} smtp;

static void dest_run(struct qmgr_smtp_dest *d);

/*
 * Settings.
 */

static unsigned
smtp_ms(const char *name)
{
	long long s = conf_time(name);

	return s > 86400 ? 86400000u : (unsigned)s * 1000u;
}

static enum smtp_client_tls
smtp_tls_level(void)
{
	const char *v = conf_str("smtp_tls_security_level");

	if (strcmp(v, "none") == 0)
		return SMTP_CLIENT_TLS_NONE;
	if (strcmp(v, "encrypt") == 0)
		return SMTP_CLIENT_TLS_ENCRYPT;
	if (strcmp(v, "verify") == 0)
		return SMTP_CLIENT_TLS_VERIFY;
	return SMTP_CLIENT_TLS_MAY;
}

static bool
smtp_list_has(const char *param, const char *item)
{
	size_t n;
	char **v = conf_list(param, &n);
	bool found = false;

	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i], item) == 0)
			found = true;
	conf_list_free(&v);
	return found;
}

static void
smtp_tls_init(void)
{
	const char *error;

	if (smtp.set.tls_level == SMTP_CLIENT_TLS_NONE)
		return;
	if (tls_client_ctx_new(conf_str("tls_protocols"),
	    conf_str("smtp_tls_CAfile"), &smtp.tls, &error) == 0) {
		smtp.set.tls_ctx = smtp.tls;
		return;
	}
	if (smtp.set.tls_level >= SMTP_CLIENT_TLS_ENCRYPT)
		log_fatal("smtp_tls_security_level %s: %s",
		    conf_str("smtp_tls_security_level"), error);
	log_warning("outbound TLS off: %s", error);
	smtp.tls = NULL;
}

static void
smtp_settings(void)
{
	struct smtp_client_settings *s = &smtp.set;

	memset(s, 0, sizeof(*s));
	smtp.helo_name = xstrdup(conf_str("smtp_helo_name"));
	s->helo_name = smtp.helo_name;
	s->tls_level = smtp_tls_level();
	s->sasl_enable = conf_bool("smtp_sasl_auth_enable");
	s->sasl_allow_plaintext = !smtp_list_has("smtp_sasl_security_options",
	    "noplaintext");
	s->connect_timeout = smtp_ms("smtp_connect_timeout");
	s->helo_timeout = smtp_ms("smtp_helo_timeout");
	s->starttls_timeout = smtp_ms("smtp_starttls_timeout");
	s->mail_timeout = smtp_ms("smtp_mail_timeout");
	s->rcpt_timeout = smtp_ms("smtp_rcpt_timeout");
	s->data_init_timeout = smtp_ms("smtp_data_init_timeout");
	s->data_xfer_timeout = smtp_ms("smtp_data_xfer_timeout");
	s->data_done_timeout = smtp_ms("smtp_data_done_timeout");
	s->rset_timeout = smtp_ms("smtp_rset_timeout");
	s->quit_timeout = smtp_ms("smtp_quit_timeout");
	smtp.dest_limit = (unsigned)conf_int(
	    "default_destination_concurrency_limit");
	smtp.total_limit = (unsigned)conf_int("default_process_limit");
	smtp.cache_ms = smtp_ms("smtp_connection_cache_time_limit");
	smtp.mx.timeout_s = QMGR_SMTP_DNS_TIMEOUT;
	smtp.mx.tries = 1;
	smtp.mx.family = AF_UNSPEC;
}

static void
smtp_relayhost_init(void)
{
	const char *spec = conf_str("relayhost"), *error;

	if (*spec == '\0')
		return;
	if (smtp_mx_relayhost_parse(spec, &smtp.relayhost, &error) < 0)
		log_fatal("relayhost %s: %s", spec, error);
	smtp.have_relayhost = true;
}

/*
 * smtp_sasl_password_maps: "KEY USER:PASSWORD" lines; # comments.
 */

static void
smtp_passwd_line(const char *path, unsigned lineno, char *line)
{
	char *key, *cred, *colon, *end;
	struct qmgr_smtp_passwd *p;

	key = line + strspn(line, " \t");
	if (*key == '\0' || *key == '#')
		return;
	cred = key + strcspn(key, " \t");
	if (*cred != '\0')
		*cred++ = '\0';
	cred += strspn(cred, " \t");
	for (end = cred + strlen(cred); end > cred && isspace(
	    (unsigned char)end[-1]); end--)
		;
	*end = '\0';
	if ((colon = strchr(cred, ':')) == NULL || colon == cred) {
		/* The line holds a password: say where, not what. */
		log_warning("%s line %u: not \"host user:password\"", path,
		    lineno);
		return;
	}
	if (smtp.npasswd >= QMGR_SMTP_PASSWD_MAX) {
		log_warning("%s line %u: more than %d entries", path, lineno,
		    QMGR_SMTP_PASSWD_MAX);
		return;
	}
	*colon = '\0';
	smtp.passwd = xreallocarray(smtp.passwd, smtp.npasswd + 1,
	    sizeof(*smtp.passwd));
	p = &smtp.passwd[smtp.npasswd++];
	p->key = xstrdup(key);
	p->user = xstrdup(cred);
	p->password = xstrdup(colon + 1);
}

static void
smtp_passwd_init(void)
{
	const char *path = conf_str("smtp_sasl_password_maps");
	char line[QMGR_SMTP_PASSWD_LINE];
	unsigned lineno = 0;
	FILE *f;

	if (!smtp.set.sasl_enable || *path == '\0')
		return;
	if ((f = fopen(path, "re")) == NULL) {
		log_warning("smtp_sasl_password_maps %s: %s (no AUTH to "
		    "remote servers)", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			log_warning("%s line %u: too long", path, lineno);
			while (fgets(line, sizeof(line), f) != NULL &&
			    strchr(line, '\n') == NULL)
				;
			continue;
		}
		line[strcspn(line, "\r\n")] = '\0';
		smtp_passwd_line(path, lineno, line);
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
}

static const struct qmgr_smtp_passwd *
smtp_passwd_find(const char *key)
{
	for (size_t i = 0; i < smtp.npasswd; i++)
		if (strcasecmp(smtp.passwd[i].key, key) == 0)
			return &smtp.passwd[i];
	return NULL;
}

/*
 * Our own addresses: the SMTP listeners, and the interfaces for a
 * listener on a wildcard address.
 */

static void
smtp_local_listeners(const char *param)
{
	struct net_addr *a;
	const char *error;
	size_t n, count;
	char **v = conf_list(param, &n);

	for (size_t i = 0; i < n; i++) {
		if (net_parse_listen(v[i], &a, &count, &error) < 0)
			continue;	/* the master refused it already */
		for (size_t k = 0; k < count &&
		    smtp.nlisten < QMGR_SMTP_LOCAL_MAX; k++)
			smtp.listen[smtp.nlisten++] = a[k];
		free(a);
	}
	conf_list_free(&v);
}

static void
smtp_local_init(void)
{
	struct ifaddrs *ifa, *i;
	size_t len;

	smtp_local_listeners("smtp_listen");
	smtp_local_listeners("submission_listen");
	smtp_local_listeners("submissions_listen");
	if (getifaddrs(&ifa) < 0)
		return;
	for (i = ifa; i != NULL && smtp.nifaddrs < QMGR_SMTP_LOCAL_MAX;
	    i = i->ifa_next) {
		if (i->ifa_addr == NULL || (i->ifa_addr->sa_family != AF_INET &&
		    i->ifa_addr->sa_family != AF_INET6))
			continue;
		len = i->ifa_addr->sa_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		memset(&smtp.ifaddrs[smtp.nifaddrs], 0,
		    sizeof(smtp.ifaddrs[0]));
		memcpy(&smtp.ifaddrs[smtp.nifaddrs].ss, i->ifa_addr, len);
		smtp.ifaddrs[smtp.nifaddrs++].len = (socklen_t)len;
	}
	freeifaddrs(ifa);
}

/* smtp_ip_eq: same family and address (ports not compared). */
static bool
smtp_ip_eq(const struct net_addr *a, const struct net_addr *b)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;

	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)&a->ss;
		b4 = (const struct sockaddr_in *)&b->ss;
		return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	}
	a6 = (const struct sockaddr_in6 *)&a->ss;
	b6 = (const struct sockaddr_in6 *)&b->ss;
	return memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
}

static bool
smtp_ip_any(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(
	    &((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static bool
smtp_ip_local(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET &&
	    (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >>
	    24) == 127)
		return true;
	for (size_t i = 0; i < smtp.nifaddrs; i++)
		if (smtp_ip_eq(a, &smtp.ifaddrs[i]))
			return true;
	return false;
}

/* smtp_is_me: whether a connection to a would reach one of our SMTP
 * listeners. */
static bool
smtp_is_me(const struct net_addr *a)
{
	const struct net_addr *l;

	for (size_t i = 0; i < smtp.nlisten; i++) {
		l = &smtp.listen[i];
		if (net_addr_port(l) != net_addr_port(a))
			continue;
		if (smtp_ip_eq(l, a) || (smtp_ip_any(l) &&
		    l->ss.ss_family == a->ss.ss_family && smtp_ip_local(a)))
			return true;
	}
	return false;
}

void
qmgr_smtp_init(struct ioloop *loop, void (*kick)(void))
{
	smtp.loop = loop;
	smtp.kick = kick;
	smtp_settings();
	smtp_relayhost_init();
	smtp_tls_init();
	smtp_passwd_init();
	smtp_local_init();
	/* getaddrinfo has no timeout of its own: the resolver's, from the
	 * environment, bounds it as smtp_mx_settings bound MX queries. */
	setenv("RES_OPTIONS", "timeout:2 attempts:1", 1);
}

/*
 * Destinations.
 */

static struct qmgr_smtp_dest *
dest_find(const char *domain)
{
	const char *key = smtp.have_relayhost ? "" : domain;
	struct qmgr_smtp_dest *d;

	for (d = smtp.dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	strlcpy(d->key, key, sizeof(d->key));
	d->jobs_tail = &d->jobs;
	d->next = smtp.dests;
	smtp.dests = d;
	return d;
}

static void
dest_unlink(struct qmgr_smtp_dest *d)
{
	struct qmgr_smtp_dest **dp;

	for (dp = &smtp.dests; *dp != NULL; dp = &(*dp)->next)
		if (*dp == d) {
			*dp = d->next;
			break;
		}
	free(d->addrs);
	free(d);
}

/* smtp_gc: forget destinations nobody uses; their lookup is done again
 * for the next message (a dead one is kept until dead_until). */
static void
smtp_gc(void)
{
	struct qmgr_smtp_dest *d, *next;
	time_t now = time(NULL);

	for (d = smtp.dests; d != NULL; d = next) {
		next = d->next;
		if (d->jobs == NULL && d->sessions == 0 && !d->lookup_queued &&
		    (d->state != DEST_FAILED || d->dead_until <= now))
			dest_unlink(d);
	}
}

static const char *
dest_name(const struct qmgr_smtp_dest *d)
{
	return d->key[0] != '\0' ? d->key : smtp.relayhost.host;
}

static void
dest_fail(struct qmgr_smtp_dest *d, bool perm, const char *dsn,
    const char *text)
{
	d->state = DEST_FAILED;
	d->loop = false;
	d->fail_perm = perm;
	strlcpy(d->fail_dsn, dsn, sizeof(d->fail_dsn));
	strlcpy(d->fail_text, text, sizeof(d->fail_text));
	d->dead_until = time(NULL) + QMGR_SMTP_DEAD_SECS;
	free(d->addrs);
	d->addrs = NULL;
	d->naddrs = 0;
}

/* dest_cut_loops: drop the hosts from the best one that is us on (with
 * its preference and worse). */
static void
dest_cut_loops(struct qmgr_smtp_dest *d, const struct smtp_mx_list *l)
{
	unsigned cut = l->count, n = 0;
	char text[SMTP_CLIENT_TEXT_MAX];

	for (unsigned h = 0; h < l->count && cut == l->count; h++)
		for (unsigned k = 0; k < l->hosts[h].addr_count; k++)
			if (smtp_is_me(&l->hosts[h].addrs[k]))
				cut = h;
	while (cut > 0 && cut < l->count &&
	    l->hosts[cut - 1].pref == l->hosts[cut].pref)
		cut--;
	d->addrs = xcalloc(SMTP_MX_HOSTS_MAX * SMTP_MX_ADDRS_MAX,
	    sizeof(*d->addrs));
	for (unsigned h = 0; h < cut; h++)
		for (unsigned k = 0; k < l->hosts[h].addr_count; k++) {
			strlcpy(d->addrs[n].host, l->hosts[h].name,
			    sizeof(d->addrs[n].host));
			d->addrs[n++].addr = l->hosts[h].addrs[k];
		}
	d->naddrs = n;
	d->state = DEST_READY;
	if (n == 0) {
		snprintf(text, sizeof(text), "mail for %s loops back to "
		    "myself", dest_name(d));
		dest_fail(d, true, "5.4.6", text);
		d->loop = true;
	}
}

static void
dest_lookup(struct qmgr_smtp_dest *d)
{
	struct smtp_mx_list *l = NULL;
	const char *dsn = "4.4.3", *error;
	uint64_t start = ioloop_now_ms();
	int r;

	if (smtp.dns_dead_until > time(NULL)) {
		dest_fail(d, false, "4.4.3", "DNS lookups suspended: the last "
		    "one timed out");
		return;
	}
	if (smtp.have_relayhost)
		r = smtp_mx_lookup_relayhost(&smtp.mx, &smtp.relayhost, &l,
		    &dsn, &error);
	else
		r = smtp_mx_lookup(&smtp.mx, d->key, SMTP_MX_PORT, &l, &dsn,
		    &error);
	if (r != SMTP_MX_OK) {
		if (r == SMTP_MX_TEMP && ioloop_now_ms() - start >=
		    QMGR_SMTP_DNS_SLOW_MS)
			smtp.dns_dead_until = time(NULL) + QMGR_SMTP_DEAD_SECS;
		dest_fail(d, r == SMTP_MX_PERM, dsn, error);
		return;
	}
	dest_cut_loops(d, l);
	smtp_mx_list_free(&l);
}

static void smtp_tick(void *ctx);

/* smtp_soon: run the destinations from the loop (never inside a call of
 * qmgr.c's, which must not see job_done there). */
static void
smtp_soon(void)
{
	if (smtp.tick_to == NULL)
		smtp.tick_to = timeout_add(smtp.loop, 0, false, smtp_tick,
		    NULL);
}

/* smtp_tick: run every destination that has jobs, then make one lookup
 * (they block: one per loop turn, so that what else is due runs in
 * between) and come again while more are queued. */
static void
smtp_tick(void *ctx)
{
	struct qmgr_smtp_dest *d, *found = NULL;

	(void)ctx;
	timeout_remove(&smtp.tick_to);
	for (d = smtp.dests; d != NULL; d = d->next)
		dest_run(d);
	for (d = smtp.dests; d != NULL; d = d->next)
		if (d->lookup_queued)
			found = d;
	if (found != NULL) {
		found->lookup_queued = false;
		dest_lookup(found);
		dest_run(found);
	}
	for (d = smtp.dests; d != NULL; d = d->next)
		if (d->lookup_queued)
			smtp_soon();
	smtp_gc();
}

/*
 * Jobs and their outcomes.
 */

static void
job_free(struct qmgr_smtp_job *j)
{
	for (unsigned i = 0; i < j->cmsg.rcpt_count; i++)
		free(j->to[i]);
	free(j->to);
	free(j->rcpts);
	free(j->index);
	free(j->sender);
	free(j->domain);
	free(j);
}

static double
smtp_secs(const struct timeval *from, const struct timeval *to)
{
	return (double)(to->tv_sec - from->tv_sec) +
	    (double)(to->tv_usec - from->tv_usec) / 1e6;
}

/* smtp_delay_fmt: Postfix's way: whole seconds from 10 on, else up to
 * two decimals without trailing zeros ("0", "0.5", "1.25"). */
static const char *
smtp_delay_fmt(double v, char *buf, size_t size)
{
	char *p;

	if (v < 0)
		v = 0;
	if (v >= 10) {
		snprintf(buf, size, "%.0f", v);
		return buf;
	}
	snprintf(buf, size, "%.2f", v);
	if ((p = strchr(buf, '.')) != NULL) {
		for (p += strlen(p) - 1; *p == '0'; p--)
			*p = '\0';
		if (*p == '.')
			*p = '\0';
	}
	return buf;
}

static void
job_delays(const struct qmgr_smtp_job *j, char *out, size_t size)
{
	const struct smtp_queue_env *env = j->msg->env;
	struct timeval now, arrival;
	char a[16], b[16], c[16], d[16];
	bool handed = j->handed.tv_sec != 0;

	gettimeofday(&now, NULL);
	arrival.tv_sec = env->arrival;
	arrival.tv_usec = (suseconds_t)env->arrival_usec;
	snprintf(out, size, "%s/%s/%s/%s",
	    smtp_delay_fmt(smtp_secs(&arrival, &j->msg->run_start), a,
	    sizeof(a)),
	    smtp_delay_fmt(smtp_secs(&j->msg->run_start, handed ? &j->handed :
	    &now), b, sizeof(b)),
	    smtp_delay_fmt(j->conn_secs, c, sizeof(c)),
	    smtp_delay_fmt(handed ? smtp_secs(&j->handed, &now) -
	    j->conn_secs : 0, d, sizeof(d)));
}

static enum loftd_dstatus
smtp_status(enum smtp_client_result r)
{
	return r == SMTP_CLIENT_SENT ? LOFTD_DELIVER_OK :
	    r == SMTP_CLIENT_FAILED ? LOFTD_DELIVER_PERM : LOFTD_DELIVER_TEMP;
}

/* smtp_peer_host: "host[addr]" of "host[addr]:port". */
static void
smtp_peer_host(const char *peer, char *out, size_t size)
{
	const char *b = strrchr(peer, ']');

	strlcpy(out, peer, size);
	if (b != NULL && (size_t)(b - peer) + 1 < size)
		out[b - peer + 1] = '\0';
}

/* job_report: every recipient's outcome, then the job is over. relay:
 * the session's peer, or NULL when no server answered. */
static void
job_report(struct qmgr_smtp_job *j, const char *relay)
{
	struct qmgr_smtp_msg *m = j->msg;
	struct smtp_client_rcpt *r;
	char delays[80], text[SMTP_CLIENT_TEXT_MAX + 400], host[300];

	job_delays(j, delays, sizeof(delays));
	for (unsigned i = 0; i < j->cmsg.rcpt_count; i++) {
		r = &j->rcpts[i];
		if (r->code != 0 && r->result != SMTP_CLIENT_SENT &&
		    relay != NULL) {
			smtp_peer_host(relay, host, sizeof(host));
			snprintf(text, sizeof(text), "host %s said: %s (in "
			    "reply to %s command)", host, r->text,
			    smtp_client_stage_name(r->stage));
		} else
			strlcpy(text, r->text, sizeof(text));
		m->part(m->ctx, j->index[i], r->addr, relay != NULL ? relay :
		    "none", delays,
		    smtp_status(r->result), r->dsn, text);
	}
	m->job_done(m->ctx);
	job_free(j);
}

/* job_fail: every recipient of j gets the same outcome (no server
 * answered for it). */
static void
job_fail(struct qmgr_smtp_job *j, bool perm, const char *dsn,
    const char *text, const char *relay)
{
	for (unsigned i = 0; i < j->cmsg.rcpt_count; i++) {
		j->rcpts[i].result = perm ? SMTP_CLIENT_FAILED :
		    SMTP_CLIENT_DEFERRED;
		j->rcpts[i].code = 0;
		strlcpy(j->rcpts[i].dsn, dsn, sizeof(j->rcpts[i].dsn));
		strlcpy(j->rcpts[i].text, text, sizeof(j->rcpts[i].text));
	}
	job_report(j, relay);
}

static struct qmgr_smtp_job *
dest_pop(struct qmgr_smtp_dest *d)
{
	struct qmgr_smtp_job *j = d->jobs;

	if (j == NULL)
		return NULL;
	if ((d->jobs = j->next) == NULL)
		d->jobs_tail = &d->jobs;
	d->njobs--;
	return j;
}

static void
dest_fail_jobs(struct qmgr_smtp_dest *d)
{
	struct qmgr_smtp_job *j;
	char text[SMTP_CLIENT_TEXT_MAX];

	while ((j = dest_pop(d)) != NULL) {
		if (d->loop) {
			snprintf(text, sizeof(text), "mail for %s loops back "
			    "to myself", j->domain);
			job_fail(j, true, "5.4.6", text, NULL);
		} else
			job_fail(j, d->fail_perm, d->fail_dsn, d->fail_text,
			    NULL);
	}
}

/*
 * Sessions.
 */

static const struct smtp_client_callbacks sess_cb;

static void
sess_free(struct qmgr_smtp_sess *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		smtp.sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	timeout_remove(&s->idle_to);
	smtp_client_free(&s->client);
	if (s->job != NULL)
		job_free(s->job);
	if (!s->ready_once)
		s->dest->starting--;
	if (--s->dest->sessions == 0)
		s->dest->throttled = false;
	smtp.nsessions--;
	free(s);
}

/* sess_connect: a client for the address s->addr; false if no socket
 * could be made (the caller goes on to the next address). */
static bool
sess_connect(struct qmgr_smtp_sess *s)
{
	const struct qmgr_smtp_addr *a = &s->dest->addrs[s->addr];
	const struct qmgr_smtp_passwd *pw;
	const char *error;

	s->set = smtp.set;
	s->set.tls_verify_name = smtp.have_relayhost ? smtp.relayhost.host :
	    a->host;
	s->set.sasl_user = s->set.sasl_password = NULL;
	if (s->set.sasl_enable) {
		pw = NULL;
		if (smtp.have_relayhost)
			pw = smtp_passwd_find(conf_str("relayhost"));
		if (pw == NULL)
			pw = smtp_passwd_find(dest_name(s->dest));
		if (pw == NULL)
			pw = smtp_passwd_find(a->host);
		if (pw != NULL) {
			s->set.sasl_user = pw->user;
			s->set.sasl_password = pw->password;
		}
	}
	gettimeofday(&s->connect_start, NULL);
	s->client = smtp_client_new(smtp.loop, &s->set, &sess_cb, s);
	if (smtp_client_connect(s->client, &a->addr, a->host, &error) == 0)
		return true;
	log_warning("connect to %s: %s", a->host, error);
	smtp_client_free(&s->client);
	return false;
}

/* sess_next_addr: go on to the next address; false when none is left. */
static bool
sess_next_addr(struct qmgr_smtp_sess *s)
{
	while (++s->addr < s->dest->naddrs && ++s->tries < QMGR_SMTP_TRIES)
		if (sess_connect(s))
			return true;
	return false;
}

static void
sess_start(struct qmgr_smtp_dest *d)
{
	struct qmgr_smtp_sess *s = xcalloc(1, sizeof(*s));

	s->dest = d;
	d->sessions++;
	d->starting++;
	smtp.nsessions++;
	s->next = smtp.sessions;
	if (s->next != NULL)
		s->next->prev = s;
	smtp.sessions = s;
	if (!sess_connect(s) && !sess_next_addr(s)) {
		dest_fail(d, false, "4.4.1", "cannot open a socket");
		sess_free(s);
		dest_fail_jobs(d);
	}
}

static void
sess_idle_timeout(void *ctx)
{
	struct qmgr_smtp_sess *s = ctx;

	timeout_remove(&s->idle_to);
	s->quitting = true;
	smtp_client_quit(s->client);
}

/* sess_take: give the session the next job of its destination, or let
 * it wait idle for one. */
static void
sess_take(struct qmgr_smtp_sess *s)
{
	struct qmgr_smtp_job *j = dest_pop(s->dest);

	if (j == NULL) {
		if (smtp.retired || smtp.cache_ms == 0) {
			s->quitting = true;
			smtp_client_quit(s->client);
		} else if (s->idle_to == NULL)
			s->idle_to = timeout_add(smtp.loop, smtp.cache_ms,
			    false, sess_idle_timeout, s);
		return;
	}
	timeout_remove(&s->idle_to);
	s->job = j;
	gettimeofday(&j->handed, NULL);
	j->conn_secs = s->conn_secs;
	s->conn_secs = 0;
	smtp_client_send(s->client, &j->cmsg);
}

static void
sess_ready(void *ctx)
{
	struct qmgr_smtp_sess *s = ctx;
	struct timeval now;

	if (!s->ready_once) {
		s->ready_once = true;
		s->dest->starting--;
		gettimeofday(&now, NULL);
		s->conn_secs = smtp_secs(&s->connect_start, &now);
	}
	sess_take(s);
}

static void
sess_done(void *ctx, struct smtp_client_msg *msg)
{
	struct qmgr_smtp_sess *s = ctx;
	struct qmgr_smtp_job *j = s->job;

	(void)msg;
	s->job = NULL;
	if (j != NULL)
		job_report(j, smtp_client_peer(s->client));
}

static void
sess_closed(void *ctx, const struct smtp_client_status *st)
{
	struct qmgr_smtp_sess *s = ctx;
	struct qmgr_smtp_dest *d = s->dest;

	if (!s->ready_once && !st->ok) {
		log_info("%s", st->text);
		smtp_client_free(&s->client);
		if (sess_next_addr(s))
			return;
		if (d->sessions == 1) {
			/* The last way to this destination failed. */
			dest_fail(d, !st->temporary, st->dsn, st->text);
			sess_free(s);
			dest_fail_jobs(d);
			smtp_soon();
			smtp.kick();
			return;
		}
		d->throttled = true;
	}
	sess_free(s);
	smtp_soon();
	smtp.kick();
}

static const struct smtp_client_callbacks sess_cb = {
	.ready = sess_ready,
	.done = sess_done,
	.closed = sess_closed,
};

/* dest_run: what the destination can do now: fail its jobs, look it up,
 * hand jobs to idle sessions, start sessions within the limits. */
static void
dest_run(struct qmgr_smtp_dest *d)
{
	struct qmgr_smtp_sess *s, *next;

	if (d->jobs == NULL)
		return;
	if (d->state == DEST_FAILED && d->dead_until <= time(NULL) &&
	    d->sessions == 0)
		d->state = DEST_NEW;
	if (d->state == DEST_FAILED) {
		dest_fail_jobs(d);
		return;
	}
	if (d->state == DEST_NEW) {
		d->lookup_queued = true;
		smtp_soon();
		return;
	}
	for (s = smtp.sessions; s != NULL && d->jobs != NULL; s = next) {
		next = s->next;
		if (s->dest == d && s->idle_to != NULL)
			sess_take(s);
	}
	/* A session for each job no session on its way will take. */
	while (d->njobs > d->starting && d->state == DEST_READY &&
	    !d->throttled &&
	    d->sessions < smtp.dest_limit && smtp.nsessions < smtp.total_limit)
		sess_start(d);
}

/*
 * The interface.
 */

static struct qmgr_smtp_job *
job_new(struct qmgr_smtp_msg *m, struct qmgr_smtp_dest *d,
    const char *domain, const char *sender)
{
	struct qmgr_smtp_job *j = xcalloc(1, sizeof(*j));

	j->msg = m;
	j->dest = d;
	j->sender = xstrdup(sender);
	j->domain = xstrdup(domain);
	j->rcpts = xcalloc(QMGR_SMTP_RCPT_MAX, sizeof(*j->rcpts));
	j->index = xcalloc(QMGR_SMTP_RCPT_MAX, sizeof(*j->index));
	j->to = xcalloc(QMGR_SMTP_RCPT_MAX, sizeof(*j->to));
	j->cmsg.sender = j->sender;
	j->cmsg.fd = m->fd;
	j->cmsg.size = m->env->size;
	j->cmsg.envid = m->env->envid;
	j->cmsg.ret = m->env->ret;
	j->cmsg.rcpts = j->rcpts;
	j->next = m->open;
	m->open = j;
	return j;
}

void
qmgr_smtp_add(struct qmgr_smtp_msg *m, unsigned rcpt, const char *to,
    const char *domain, const char *sender)
{
	struct qmgr_smtp_dest *d = dest_find(domain);
	const struct smtp_queue_rcpt *er = &m->env->rcpts[rcpt];
	struct qmgr_smtp_job *j;
	unsigned k;

	for (j = m->open; j != NULL; j = j->next)
		if (j->dest == d && strcmp(j->sender, sender) == 0 &&
		    j->cmsg.rcpt_count < QMGR_SMTP_RCPT_MAX)
			break;
	if (j == NULL)
		j = job_new(m, d, domain, sender);
	k = j->cmsg.rcpt_count++;
	j->to[k] = xstrdup(to);
	j->index[k] = rcpt;
	j->rcpts[k].addr = j->to[k];
	/* ORCPT and NOTIFY belong to the recipient as received, not to
	 * what an alias made of it. */
	if (strcasecmp(to, er->addr) == 0) {
		j->rcpts[k].orcpt = er->orcpt;
		j->rcpts[k].notify = er->notify;
	}
}

unsigned
qmgr_smtp_submit(struct qmgr_smtp_msg *m)
{
	struct qmgr_smtp_job *j, *next, *rev = NULL;
	unsigned n = 0;

	/* Jobs were pushed in front: hand them over in the order made. */
	for (j = m->open; j != NULL; j = next) {
		next = j->next;
		j->next = rev;
		rev = j;
	}
	m->open = NULL;
	for (j = rev; j != NULL; j = next) {
		next = j->next;
		j->next = NULL;
		*j->dest->jobs_tail = j;
		j->dest->jobs_tail = &j->next;
		j->dest->njobs++;
		n++;
	}
	if (n > 0)
		smtp_soon();
	return n;
}

void
qmgr_smtp_flush(void)
{
	struct qmgr_smtp_dest *d, *next;

	smtp.dns_dead_until = 0;
	for (d = smtp.dests; d != NULL; d = next) {
		next = d->next;
		if (d->state == DEST_FAILED)
			d->dead_until = 0;
		if (d->sessions == 0 && d->jobs == NULL && !d->lookup_queued)
			dest_unlink(d);
	}
}

void
qmgr_smtp_retire(void)
{
	struct qmgr_smtp_sess *s, *next;

	smtp.retired = true;
	for (s = smtp.sessions; s != NULL; s = next) {
		next = s->next;
		if (s->idle_to != NULL) {
			timeout_remove(&s->idle_to);
			s->quitting = true;
			smtp_client_quit(s->client);
		}
	}
}

bool
qmgr_smtp_busy(void)
{
	for (struct qmgr_smtp_dest *d = smtp.dests; d != NULL; d = d->next)
		if (d->jobs != NULL)
			return true;
	return smtp.sessions != NULL;
}

void
qmgr_smtp_deinit(void)
{
	struct qmgr_smtp_job *j;

	while (smtp.sessions != NULL)
		sess_free(smtp.sessions);
	while (smtp.dests != NULL) {
		while ((j = dest_pop(smtp.dests)) != NULL)
			job_free(j);
		dest_unlink(smtp.dests);
	}
	timeout_remove(&smtp.tick_to);
	for (size_t i = 0; i < smtp.npasswd; i++) {
		free(smtp.passwd[i].key);
		free(smtp.passwd[i].user);
		explicit_bzero(smtp.passwd[i].password,
		    strlen(smtp.passwd[i].password));
		free(smtp.passwd[i].password);
	}
	free(smtp.passwd);
	free(smtp.helo_name);
	tls_ctx_free(&smtp.tls);
	memset(&smtp, 0, sizeof(smtp));
}
