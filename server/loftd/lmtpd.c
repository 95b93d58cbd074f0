/*
 * lmtpd.c: the lmtp process of loftd: LMTP (RFC 2033) for the MTA in
 * front of loft, so that Postfix hands mail over with mailbox_transport
 * (or virtual_transport) = lmtp:unix:/path or lmtp:inet:host:port without
 * a process per message. The master gives it the connections of
 * lmtp_listen; the engine is smtp/smtp_session in LMTP mode.
 *
 * A recipient must be in a local domain (mydestination) and name a user:
 * the master looks the local part up as it will for the delivery
 * (LOFTD_LMTP_RCPT) and says whether the size MAIL announced fits under
 * the user's quota limit. The message is spooled, behind a Received:
 * line, into a file of queue_directory/lmtp that is unlinked as soon as
 * it is open; at the end of data each recipient gets a delivery request
 * of its own (LOFTD_DELIVER with a read-only descriptor of that file),
 * exactly as the queue manager's: the master checks it, and the mail
 * process of the user's owner adds Return-Path: and Delivered-To:, stores
 * and fsyncs. Each recipient's reply goes out, in RCPT order, once its
 * own delivery has answered. Nothing is queued: the client keeps the
 * message until it has its 250, and tries again after a 4xx.
 *
 * The quota at RCPT is checked against what the master knows (the user's
 * limit, and SIZE), not against the usage: that is in the user's index,
 * which only a process of the owner's uid opens. A full mailbox is found
 * at delivery and answered 552 5.2.2 (452 4.2.2 with quota_full_tempfail)
 * for that recipient alone after the data. Moving it to RCPT needs a
 * quota query the mail process answers (store_quota), relayed by the
 * master as LOFTD_DELIVER is: a record mailproc.c does not serve yet.
 *
 * SECURITY: this process parses what the LMTP client sends. It runs as
 * mail_owner (no_new_privs, not dumpable, no children), not chrooted only
 * because it writes its spool directory. A TCP client outside mynetworks
 * is answered 421 before any command is read; on a UNIX socket, whoever
 * the socket's mode lets connect may speak. It reads no user database
 * and no mailbox: the master decides who is a user and which mail process
 * stores. Client bytes reach only the engine (strict CRLF, bounded lines,
 * recipients and size); addresses are logged escaped.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "compat/compat.h"
#include "conf.h"
#include "conn.h"
#include "fsutil.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "net.h"
#include "xmalloc.h"
#include "smtp_addr.h"
#include "smtp_queue.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "chan.h"
#include "loftd.h"

/* Client bytes read ahead of the engine (which keeps its own bounded
 * queue while it waits). */
#define LMTPD_INPUT_MAX		16384
/* Delivery requests at the master at once, from all clients: with the
 * queue manager's 32, well below LOFTD_DELIVER_MAX, so the master never
 * refuses one for being busy. The rest wait here, in order. */
#define LMTPD_INFLIGHT_MAX	64
/* "unknown[" address "]" for the log. */
#define LMTPD_CLIENT_MAX	(NET_ADDR_STR_MAX + 16)
/* A path as smtp_path_format writes it, with room to spare. */
#define LMTPD_PATH_BUF		(SMTP_PATH_MAX + 3)
/* The reason a delivery gave, kept for the reply and the log. */
#define LMTPD_TEXT_MAX		256
/* The spool, below queue_directory. */
#define LMTPD_SPOOL		"lmtp"
/* A spool file is unlinked at once; one still there is a crash's
 * leftover, removed at start once it is this old (seconds), since a
 * younger one may belong to the lmtp process a reload is retiring. */
#define LMTPD_SPOOL_AGE		60

/* An accepted recipient of the transaction. */
struct lmtpd_rcpt {
	char addr[LMTPD_PATH_BUF];	/* without <>: Delivered-To:, log */
	char user[SMTP_LOCAL_MAX + 1];	/* the name the master looks up */
	bool answered;
	enum loftd_dstatus status;
	char dsn[8];
	char text[LMTPD_TEXT_MAX];
};

struct lmtpd_client {
	struct lmtpd_client *prev, *next;
	uint32_t id;			/* the master's conn_id */
	uint32_t service;
	char rip[NET_ADDR_STR_MAX];	/* "" on a UNIX socket */
	char client[LMTPD_CLIENT_MAX];	/* for the log */
	struct conn *conn;		/* owned */
	struct smtp_session *smtp;	/* owned; NULL for a refused client */
	bool quit, dying, in_engine;
	struct timeout *kill_to;	/* owned */
	/* A RCPT waiting for the master's word (at most one: the engine
	 * waits for the decision). */
	uint32_t rcpt_req;
	struct smtp_path rcpt_path;
	/* The transaction. */
	char helo[SMTP_HELO_MAX + 1];
	char sender[LMTPD_PATH_BUF];	/* without <>; "" for <> */
	uint64_t size_announced;	/* MAIL's SIZE=, or 0 */
	char qid[SMTP_QUEUE_ID_MAX];	/* "" until data begins */
	int spool_fd;			/* owned, read-write; or -1 */
	int spool_ro;			/* owned, read-only, passed on */
	uint64_t size;			/* bytes written to the spool */
	const char *werror;		/* a spool write failed: why */
	bool wfull;			/* ... because the disk is full */
	struct lmtpd_rcpt *rcpts;	/* owned array */
	unsigned nrcpts, rcpts_cap;
	unsigned next_send;		/* next recipient to ask for */
	unsigned next_reply;		/* next recipient to answer */
	bool delivered;			/* a recipient got its 250 */
	uint64_t data_end_ms;		/* for the delay in the log */
	/* Counts for the disconnect line. */
	unsigned n_mail, n_rcpt, n_rcpt_ok, n_data, n_data_ok;
};

/* A request at the master: a delivery, or a RCPT check. */
struct lmtpd_req {
	struct lmtpd_req *next;
	uint32_t req;
	struct lmtpd_client *c;		/* NULL once the client has gone */
	unsigned index;			/* deliveries: the recipient */
};

struct lmtpd {
	struct ioloop *loop;
	struct chan *master;		/* owned */
	struct smtp_relay *relay;	/* owned: mydestination, mynetworks */
	char spool[4096];
	struct lmtpd_client *clients;
	size_t nclients;
	struct lmtpd_req *reqs;		/* owned list: deliveries out */
	unsigned inflight;
	uint32_t next_req;
	uint64_t last_id_us;
	bool retired;
	unsigned timeout_ms;
	char hostname[SMTP_HELO_MAX + 1];
};

static struct lmtpd lmtpd;
static struct ipc_msg lmtpd_out;

static void lmtpd_feed(struct lmtpd_client *c);
static void lmtpd_pump(void);

static void
lmtpd_maybe_exit(void)
{
	if (lmtpd.retired && lmtpd.nclients == 0)
		ioloop_stop(lmtpd.loop);
}

static uint32_t
lmtpd_req_new(void)
{
	if (++lmtpd.next_req == 0)
		lmtpd.next_req = 1;
	return lmtpd.next_req;
}

/*
 * IDs, for the log and the Received: line: the queue's form
 * (doc/design.md, "The SMTP queue": 8 base-32 digits of seconds, 4 of
 * microseconds, 5 of the pid), so that one grep finds a message whichever
 * way it came. Never the same microsecond twice in this process.
 */
static void
lmtpd_b32(char *out, uint64_t v, size_t digits)
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

	while (digits-- > 0) {
		out[digits] = b32[v & 31];
		v >>= 5;
	}
}

static void
lmtpd_id_make(char id[SMTP_QUEUE_ID_MAX])
{
	struct timeval tv;
	uint64_t us;

	gettimeofday(&tv, NULL);
	us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	if (us <= lmtpd.last_id_us)
		us = lmtpd.last_id_us + 1;
	lmtpd.last_id_us = us;
	lmtpd_b32(id, us / 1000000, 8);
	lmtpd_b32(id + 8, us % 1000000, 4);
	lmtpd_b32(id + 12, (uint64_t)getpid(), 5);
	id[SMTP_QUEUE_ID_LEN] = '\0';
}

/*
 * The transaction.
 */

static void
lmtpd_spool_close(struct lmtpd_client *c)
{
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	if (c->spool_ro >= 0)
		close(c->spool_ro);
	c->spool_fd = c->spool_ro = -1;
}

/* Forget the transaction. Deliveries still at the master stay counted
 * there and in lmtpd.inflight; their answers find no recipient. */
static void
lmtpd_txn_clear(struct lmtpd_client *c)
{
	for (struct lmtpd_req *r = lmtpd.reqs; r != NULL; r = r->next)
		if (r->c == c)
			r->c = NULL;
	lmtpd_spool_close(c);
	free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpts = c->rcpts_cap = 0;
	c->next_send = c->next_reply = 0;
	c->delivered = false;
	c->qid[0] = '\0';
	c->size = 0;
	c->size_announced = 0;
	c->werror = NULL;
	c->wfull = false;
}

/* The path without its angle brackets. */
static void
lmtpd_path_bare(const struct smtp_path *p, char *out, size_t size)
{
	char buf[LMTPD_PATH_BUF];
	size_t len;

	smtp_path_format(p, buf, sizeof(buf));
	len = strlen(buf);
	if (len >= 2 && buf[0] == '<' && buf[len - 1] == '>') {
		buf[len - 1] = '\0';
		strlcpy(out, buf + 1, size);
	} else
		strlcpy(out, buf, size);
}

/*
 * Ending a client.
 */

static void
lmtpd_client_free(struct lmtpd_client *c, bool notify)
{
	if (notify && chan_ok(lmtpd.master)) {
		ipc_msg_init(&lmtpd_out, LOFTD_CONN_DONE, 0);
		ipc_add_u32(&lmtpd_out, c->id);
		(void)chan_send(lmtpd.master, &lmtpd_out);
	}
	for (struct lmtpd_req *r = lmtpd.reqs; r != NULL; r = r->next)
		if (r->c == c)
			r->c = NULL;
	smtp_session_free(&c->smtp);
	lmtpd_txn_clear(c);
	conn_close(&c->conn);
	timeout_remove(&c->kill_to);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		lmtpd.clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	lmtpd.nclients--;
	free(c);
	lmtpd_maybe_exit();
}

static void
lmtpd_client_kill_now(void *ctx)
{
	struct lmtpd_client *c = ctx;

	log_info("disconnect from %s mail=%u rcpt=%u/%u data=%u/%u",
	    c->client, c->n_mail, c->n_rcpt_ok, c->n_rcpt, c->n_data_ok,
	    c->n_data);
	lmtpd_client_free(c, true);
}

/* End c from inside a callback that may still use it: the free runs from
 * the loop, right after. */
static void
lmtpd_client_kill(struct lmtpd_client *c)
{
	if (c->dying)
		return;
	c->dying = true;
	if (c->kill_to == NULL)
		c->kill_to = timeout_add(lmtpd.loop, 0, false,
		    lmtpd_client_kill_now, c);
}

static const char *
lmtpd_state_name(const struct lmtpd_client *c)
{
	if (c->smtp == NULL)
		return "CONNECT";
	switch (smtp_session_state(c->smtp)) {
	case SMTP_STATE_INIT:
		return "CONNECT";
	case SMTP_STATE_READY:
		return "LHLO";
	case SMTP_STATE_MAIL:
		return c->rcpt_req != 0 || c->nrcpts > 0 ? "RCPT" : "MAIL";
	case SMTP_STATE_DATA:
		return "DATA";
	case SMTP_STATE_CHUNKING:
		return "BDAT";
	default:
		return "END-OF-MESSAGE";
	}
}

/*
 * MAIL.
 */

static void
lmtpd_mail(void *ctx, const struct smtp_mail *m)
{
	struct lmtpd_client *c = ctx;

	c->n_mail++;
	lmtpd_txn_clear(c);
	strlcpy(c->helo, m->helo != NULL ? m->helo : "", sizeof(c->helo));
	if (m->from->null)
		c->sender[0] = '\0';
	else
		lmtpd_path_bare(m->from, c->sender, sizeof(c->sender));
	c->size_announced = m->has_size ? m->size : 0;
	smtp_session_reply(c->smtp, 250, "2.1.0", "Ok");
}

/*
 * RCPT: a local domain, a sound local part, then the master's word.
 */

static void
lmtpd_rcpt_refuse(struct lmtpd_client *c, const struct smtp_path *to,
    unsigned code, const char *enh, const char *what)
{
	char path[LMTPD_PATH_BUF], text[LMTPD_PATH_BUF + LMTPD_TEXT_MAX];
	char epath[LMTPD_PATH_BUF * 4], etext[sizeof(text) * 4];

	smtp_path_format(to, path, sizeof(path));
	snprintf(text, sizeof(text), "%s: %s", path, what);
	log_info("NOQUEUE: reject: RCPT from %s: %u %s %s; to=%s proto=LMTP",
	    c->client, code, enh, log_escape(text, etext, sizeof(etext)),
	    log_escape(path, epath, sizeof(epath)));
	smtp_session_reply(c->smtp, code, enh, text);
}

/* A reply line of smtp_relay_check ("553 5.1.3 <a@b>: text"). */
static void
lmtpd_rcpt_refuse_line(struct lmtpd_client *c, const struct smtp_path *to,
    const char *line)
{
	char enh[16];
	unsigned code;
	int n = 0;

	if (sscanf(line, "%3u %15s %n", &code, enh, &n) != 2 || n == 0 ||
	    code < 400 || code > 599 || (unsigned)(enh[0] - '0') !=
	    code / 100) {
		lmtpd_rcpt_refuse(c, to, 451, "4.3.0", "internal error");
		return;
	}
	/* The line names the path itself: send it as it is. */
	log_info("NOQUEUE: reject: RCPT from %s: %s; proto=LMTP", c->client,
	    line);
	smtp_session_reply(c->smtp, code, enh, line + n);
}

static void
lmtpd_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	struct lmtpd_client *c = ctx;
	char reply[SMTP_RELAY_REPLY_MAX];

	c->n_rcpt++;
	/* LMTP delivers; it never relays, whoever the client is. */
	if (!r->to->postmaster && !smtp_relay_is_local(lmtpd.relay,
	    r->to->domain)) {
		lmtpd_rcpt_refuse(c, r->to, 550, "5.1.2", "Recipient address "
		    "rejected: not a local domain");
		return;
	}
	/* The routing forms (a '%', a '!', a route, needless quotes). */
	if (smtp_relay_check(lmtpd.relay, NULL, false, r->to, reply,
	    sizeof(reply)) != SMTP_RELAY_LOCAL) {
		lmtpd_rcpt_refuse_line(c, r->to, reply);
		return;
	}
	c->rcpt_path = *r->to;
	c->rcpt_req = lmtpd_req_new();
	ipc_msg_init(&lmtpd_out, LOFTD_LMTP_RCPT, 0);
	ipc_add_u32(&lmtpd_out, c->rcpt_req);
	ipc_add_str(&lmtpd_out, r->to->local);
	ipc_add_u64(&lmtpd_out, c->size_announced);
	if (chan_send(lmtpd.master, &lmtpd_out) < 0) {
		c->rcpt_req = 0;
		lmtpd_rcpt_refuse(c, r->to, 451, "4.3.0", "Temporary lookup "
		    "failure");
	}
}

static void
lmtpd_rcpt_add(struct lmtpd_client *c, const struct smtp_path *to)
{
	struct lmtpd_rcpt *r;

	if (c->nrcpts == c->rcpts_cap) {
		c->rcpts_cap = c->rcpts_cap == 0 ? 8 : c->rcpts_cap * 2;
		c->rcpts = xreallocarray(c->rcpts, c->rcpts_cap,
		    sizeof(*c->rcpts));
	}
	r = &c->rcpts[c->nrcpts++];
	memset(r, 0, sizeof(*r));
	lmtpd_path_bare(to, r->addr, sizeof(r->addr));
	strlcpy(r->user, to->local, sizeof(r->user));
}

/* The master's word on the pending RCPT. */
static void
lmtpd_rcpt_answer(struct lmtpd_client *c, enum loftd_dstatus status,
    const char *dsn)
{
	struct smtp_path to = c->rcpt_path;
	bool quota = strlen(dsn) == 5 && strcmp(dsn + 1, ".2.2") == 0;

	c->rcpt_req = 0;
	if (status == LOFTD_DELIVER_OK) {
		lmtpd_rcpt_add(c, &to);
		c->n_rcpt_ok++;
		smtp_session_reply(c->smtp, 250, "2.1.5", "Ok");
	} else if (quota)
		lmtpd_rcpt_refuse(c, &to, status == LOFTD_DELIVER_PERM ? 552 :
		    452, status == LOFTD_DELIVER_PERM ? "5.2.2" : "4.2.2",
		    "Recipient address rejected: Mailbox full (the message "
		    "is larger than the quota)");
	else if (status == LOFTD_DELIVER_PERM)
		lmtpd_rcpt_refuse(c, &to, 550, "5.1.1", "Recipient address "
		    "rejected: User unknown in local recipient table");
	else
		lmtpd_rcpt_refuse(c, &to, 451, "4.3.0", "Temporary lookup "
		    "failure");
}

/*
 * The message: spooled behind a Received: line.
 */

/* A spool file, unlinked at once: a read-write descriptor for us, a
 * read-only one for the deliveries. -1 after logging. */
static int
lmtpd_spool_open(struct lmtpd_client *c)
{
	char path[sizeof(lmtpd.spool) + 32];

	snprintf(path, sizeof(path), "%s/lmtp.XXXXXX", lmtpd.spool);
	if ((c->spool_fd = mkostemp(path, O_CLOEXEC)) < 0) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	c->spool_ro = open(path, O_RDONLY | O_CLOEXEC);
	if (c->spool_ro < 0)
		log_error("%s: %s", path, strerror(errno));
	(void)unlink(path);
	if (c->spool_ro < 0) {
		lmtpd_spool_close(c);
		return -1;
	}
	return 0;
}

static void
lmtpd_write(struct lmtpd_client *c, const unsigned char *data, size_t len)
{
	ssize_t n;

	if (c->spool_fd < 0 || c->werror != NULL)
		return;
	while (len > 0) {
		if ((n = write(c->spool_fd, data, len)) < 0) {
			if (errno == EINTR)
				continue;
			c->wfull = fsutil_is_disk_full(errno);
			c->werror = c->wfull ? "disk full" : "write error";
			log_error("%s: spool: %s", c->qid, strerror(errno));
			return;
		}
		data += n;
		len -= (size_t)n;
		c->size += (uint64_t)n;
	}
}

/* The trace line (RFC 5321 section 4.4; RFC 3848's "LMTP"), as smtpd
 * writes it: the LHLO name and the client's address literal (or "local"
 * on a UNIX socket), the ID, the recipient when there is one. */
static void
lmtpd_received(struct lmtpd_client *c)
{
	char date[64], lit[NET_ADDR_STR_MAX + 8], *line;

	if (c->rip[0] == '\0')
		strlcpy(lit, "local", sizeof(lit));
	else
		snprintf(lit, sizeof(lit), "[%s%s]", strchr(c->rip, ':') !=
		    NULL ? "IPv6:" : "", c->rip);
	loftd_date(date, sizeof(date));
	if (c->nrcpts == 1)
		line = xasprintf("Received: from %s (%s)\r\n\tby %s (loft) "
		    "with LMTP id %s\r\n\tfor <%s>; %s\r\n", c->helo, lit,
		    lmtpd.hostname, c->qid, c->rcpts[0].addr, date);
	else
		line = xasprintf("Received: from %s (%s)\r\n\tby %s (loft) "
		    "with LMTP id %s;\r\n\t%s\r\n", c->helo, lit,
		    lmtpd.hostname, c->qid, date);
	lmtpd_write(c, (const unsigned char *)line, strlen(line));
	free(line);
}

static void
lmtpd_data_begin(void *ctx)
{
	struct lmtpd_client *c = ctx;

	c->n_data++;
	lmtpd_id_make(c->qid);
	log_info("%s: client=%s", c->qid, c->client);
	if (lmtpd_spool_open(c) < 0) {
		c->werror = "cannot make a spool file";
		return;
	}
	lmtpd_received(c);
}

static void
lmtpd_data(void *ctx, const unsigned char *data, size_t len)
{
	lmtpd_write(ctx, data, len);
}

/*
 * The end of data: a delivery per recipient, a reply per recipient.
 */

/* A code for a delivery's outcome: the DSN's subject says which. */
static unsigned
lmtpd_code(enum loftd_dstatus status, const char *dsn)
{
	bool perm = status == LOFTD_DELIVER_PERM;

	if (status == LOFTD_DELIVER_OK)
		return 250;
	/* Mailbox full, message too big, no room on the system. */
	if (strcmp(dsn + 1, ".2.2") == 0 || strcmp(dsn + 1, ".3.4") == 0 ||
	    strcmp(dsn + 1, ".3.1") == 0)
		return perm ? 552 : 452;
	return perm ? 550 : 451;
}

/* Whether dsn is "c.s.d" (1 to 3 digits each) of the class status needs:
 * the engine takes nothing else, and it came from another process. */
static bool
lmtpd_dsn_ok(enum loftd_dstatus status, const char *dsn)
{
	char cls = status == LOFTD_DELIVER_OK ? '2' :
	    status == LOFTD_DELIVER_TEMP ? '4' : '5';
	const char *p = dsn + 2;
	int parts = 0;

	if (dsn[0] != cls || dsn[1] != '.')
		return false;
	while (parts < 2) {
		size_t n = strspn(p, "0123456789");

		if (n < 1 || n > 3)
			return false;
		p += n;
		parts++;
		if (parts == 1 && *p++ != '.')
			return false;
	}
	return *p == '\0';
}

/* Send the replies that are due, in RCPT order. The last one ends the
 * transaction, and the engine may then run the client's next commands
 * (and our callbacks): everything is cleared before it. */
static void
lmtpd_replies(struct lmtpd_client *c)
{
	char text[LMTPD_PATH_BUF + LMTPD_TEXT_MAX + 64], dsn[8];
	enum loftd_dstatus status;
	struct lmtpd_rcpt *r;
	bool last;

	while (c->smtp != NULL && c->next_reply < c->nrcpts &&
	    c->rcpts[c->next_reply].answered) {
		r = &c->rcpts[c->next_reply++];
		status = r->status;
		strlcpy(dsn, r->dsn, sizeof(dsn));
		if (status == LOFTD_DELIVER_OK) {
			c->delivered = true;
			snprintf(text, sizeof(text), "<%s> Ok, id=%s (%s)",
			    r->addr, c->qid, r->text);
		} else
			snprintf(text, sizeof(text), "<%s> %s", r->addr,
			    r->text);
		last = c->next_reply == c->nrcpts;
		if (last && c->delivered)
			c->n_data_ok++;
		if (last)
			lmtpd_txn_clear(c);
		smtp_session_data_done(c->smtp, lmtpd_code(status, dsn), dsn,
		    text);
		if (last) {
			if (!c->in_engine)
				lmtpd_feed(c);
			return;
		}
	}
}

/* Recipient i is answered (by the master, or by us when it could not be
 * asked); log it as a delivery. */
static void
lmtpd_result(struct lmtpd_client *c, unsigned i, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	struct lmtpd_rcpt *r = &c->rcpts[i];
	char eto[LMTPD_PATH_BUF * 4], etext[LMTPD_TEXT_MAX * 4];

	if (!lmtpd_dsn_ok(status, dsn)) {
		status = status == LOFTD_DELIVER_OK ? LOFTD_DELIVER_TEMP :
		    status;
		dsn = status == LOFTD_DELIVER_PERM ? "5.0.0" : "4.3.0";
	}
	r->answered = true;
	r->status = status;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
	strlcpy(r->text, text, sizeof(r->text));
	log_info("%s: to=<%s>, relay=local, delay=%.2f, dsn=%s, status=%s "
	    "(%s)", c->qid, log_escape(r->addr, eto, sizeof(eto)),
	    (double)(ioloop_now_ms() - c->data_end_ms) / 1000.0, r->dsn,
	    status == LOFTD_DELIVER_OK ? "sent" : status ==
	    LOFTD_DELIVER_TEMP ? "deferred" : "bounced",
	    log_escape(r->text, etext, sizeof(etext)));
}

/* Ask the master for the delivery of c's next recipient; -1 if it cannot
 * be asked (the recipient is then answered 4.3.0). */
static int
lmtpd_deliver_send(struct lmtpd_client *c)
{
	struct lmtpd_rcpt *r = &c->rcpts[c->next_send];
	struct lmtpd_req *q;
	int fd = dup(c->spool_ro);

	if (fd < 0) {
		log_error("%s: dup: %s", c->qid, strerror(errno));
		return -1;
	}
	q = xcalloc(1, sizeof(*q));
	q->req = lmtpd_req_new();
	q->c = c;
	q->index = c->next_send;
	ipc_msg_init(&lmtpd_out, LOFTD_DELIVER, 0);
	ipc_add_u32(&lmtpd_out, q->req);
	ipc_add_str(&lmtpd_out, c->qid);
	ipc_add_str(&lmtpd_out, r->user);
	ipc_add_str(&lmtpd_out, r->addr);
	ipc_add_str(&lmtpd_out, c->sender);
	ipc_msg_set_fd(&lmtpd_out, fd);
	if (chan_send(lmtpd.master, &lmtpd_out) < 0) {
		free(q);
		return -1;
	}
	q->next = lmtpd.reqs;
	lmtpd.reqs = q;
	lmtpd.inflight++;
	return 0;
}

/* Send what waits, client by client, within LMTPD_INFLIGHT_MAX. */
static void
lmtpd_pump(void)
{
	struct lmtpd_client *c, *next;

	for (c = lmtpd.clients; c != NULL; c = next) {
		next = c->next;
		while (c->spool_ro >= 0 && c->next_send < c->nrcpts &&
		    lmtpd.inflight < LMTPD_INFLIGHT_MAX) {
			if (lmtpd_deliver_send(c) < 0)
				lmtpd_result(c, c->next_send,
				    LOFTD_DELIVER_TEMP, "4.3.0",
				    "cannot reach the master");
			c->next_send++;
		}
		/* May clear the transaction and run the next commands. */
		lmtpd_replies(c);
	}
}

static void
lmtpd_data_end(void *ctx)
{
	struct lmtpd_client *c = ctx;
	char efrom[LMTPD_PATH_BUF * 4];
	const char *why;

	c->data_end_ms = ioloop_now_ms();
	if (c->werror != NULL || c->spool_ro < 0) {
		why = c->wfull ? "Error: insufficient system storage" :
		    "Error: spool file write error";
		for (unsigned i = 0; i < c->nrcpts; i++)
			lmtpd_result(c, i, LOFTD_DELIVER_TEMP, c->wfull ?
			    "4.3.1" : "4.3.0", why);
		c->next_send = c->nrcpts;
		lmtpd_spool_close(c);
		lmtpd_replies(c);
		return;
	}
	log_info("%s: from=<%s>, size=%llu, nrcpt=%u", c->qid,
	    log_escape(c->sender, efrom, sizeof(efrom)),
	    (unsigned long long)c->size, c->nrcpts);
	lmtpd_pump();
}

static void
lmtpd_reset(void *ctx)
{
	lmtpd_txn_clear(ctx);
}

/*
 * The engine's other callbacks, and client input.
 */

static void
lmtpd_engine_write(void *ctx, const unsigned char *data, size_t len)
{
	struct lmtpd_client *c = ctx;

	if (c->dying)
		return;
	if (conn_write(c->conn, data, len) < 0)
		lmtpd_client_kill(c);
}

static void
lmtpd_closed(void *ctx)
{
	struct lmtpd_client *c = ctx;

	c->quit = true;
	conn_close_after_flush(c->conn);
}

static const struct smtp_callbacks lmtpd_cb = {
	.write = lmtpd_engine_write,
	.mail = lmtpd_mail,
	.rcpt = lmtpd_rcpt,
	.data_begin = lmtpd_data_begin,
	.data = lmtpd_data,
	.data_end = lmtpd_data_end,
	.reset = lmtpd_reset,
	.closed = lmtpd_closed,
};

static void
lmtpd_feed(struct lmtpd_client *c)
{
	const unsigned char *data;
	size_t len, used;

	while (!c->dying && !c->quit && c->smtp != NULL &&
	    !conn_output_full(c->conn)) {
		data = conn_input_peek(c->conn, &len);
		if (len == 0)
			return;
		c->in_engine = true;
		used = smtp_session_input(c->smtp, data, len);
		c->in_engine = false;
		conn_input_consume(c->conn, used);
		if (used < len)
			return;
	}
}

static void
lmtpd_client_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct lmtpd_client *c = ctx;

	switch (ev) {
	case CONN_EV_INPUT:
	case CONN_EV_DRAINED:
		lmtpd_feed(c);
		break;
	case CONN_EV_TIMEOUT:
		log_info("timeout after %s from %s", lmtpd_state_name(c),
		    c->client);
		(void)conn_printf(conn, "421 4.4.2 %s Error: timeout "
		    "exceeded\r\n", lmtpd.hostname);
		c->quit = true;
		conn_close_after_flush(conn);
		break;
	case CONN_EV_CLOSED:
		if (!c->quit)
			log_info("lost connection after %s from %s",
			    lmtpd_state_name(c), c->client);
		lmtpd_client_kill(c);
		break;
	case CONN_EV_STALLED:
	case CONN_EV_ERROR:
		if (!c->quit)
			log_info("lost connection after %s from %s (%s)",
			    lmtpd_state_name(c), c->client,
			    ev == CONN_EV_STALLED ? "output stalled" :
			    conn_error(conn) != NULL ? conn_error(conn) :
			    "error");
		lmtpd_client_kill(c);
		break;
	}
}

/*
 * Records from the master.
 */

static void
lmtpd_settings(struct smtp_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->hostname = lmtpd.hostname;
	set->lmtp = true;
	/* No DSN (the client makes the bounces), no SMTPUTF8 (no user name
	 * needs it), no STARTTLS or AUTH (trusted clients only). */
	set->extensions = SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |
	    SMTP_EXT_PIPELINING | SMTP_EXT_ENHANCED | SMTP_EXT_CHUNKING;
	set->size_max = (uint64_t)conf_int("message_size_limit");
	set->rcpt_max = (unsigned)conf_int("smtpd_recipient_limit");
	set->errors_max = (unsigned)conf_int("smtpd_hard_error_limit");
}

/* Whether a TCP client is in mynetworks (a UNIX socket's always is). */
static bool
lmtpd_client_trusted(const struct lmtpd_client *c)
{
	struct net_addr a;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

	if (c->service == LOFTD_SVC_LMTP_UNIX)
		return true;
	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, c->rip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		a.len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, c->rip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		a.len = sizeof(*sin6);
	} else
		return false;
	return smtp_relay_client_trusted(lmtpd.relay, &a);
}

static struct lmtpd_client *
lmtpd_client_new(uint32_t id, uint32_t service, const char *rip, int fd)
{
	struct lmtpd_client *c = xcalloc(1, sizeof(*c));

	c->id = id;
	c->service = service;
	c->spool_fd = c->spool_ro = -1;
	strlcpy(c->rip, rip, sizeof(c->rip));
	if (rip[0] == '\0')
		strlcpy(c->client, "local", sizeof(c->client));
	else
		snprintf(c->client, sizeof(c->client), "unknown[%s]", rip);
	c->conn = conn_new(lmtpd.loop, fd, LMTPD_INPUT_MAX,
	    lmtpd_client_event, c);
	conn_set_idle_timeout(c->conn, lmtpd.timeout_ms);
	conn_set_output_timeout(c->conn, lmtpd.timeout_ms);
	c->next = lmtpd.clients;
	if (c->next != NULL)
		c->next->prev = c;
	lmtpd.clients = c;
	lmtpd.nclients++;
	return c;
}

static void
lmtpd_conn_new(struct ipc_msg *m)
{
	struct smtp_settings set;
	struct lmtpd_client *c;
	const char *rip, *lip, *error;
	uint32_t id, service, tls, rport, lport;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &service);
	ipc_get_u32(m, &tls);
	ipc_get_str(m, &rip);
	ipc_get_u32(m, &rport);
	ipc_get_str(m, &lip);
	ipc_get_u32(m, &lport);
	if (ipc_get_end(m, &error) < 0 || fd < 0 ||
	    !loftd_service_lmtp(service) || tls != 0 ||
	    strlen(rip) >= NET_ADDR_STR_MAX ||
	    (service == LOFTD_SVC_LMTP_UNIX) != (rip[0] == '\0')) {
		log_warning("bad connection record from the master");
		if (fd >= 0)
			close(fd);
		return;
	}
	c = lmtpd_client_new(id, service, rip, fd);
	log_info("connect from %s", c->client);
	if (!lmtpd_client_trusted(c)) {
		/* 421, not 554: a client that is refused by mistake (a
		 * mynetworks to fix) defers its mail instead of bouncing
		 * it. */
		log_info("refused LMTP connection from %s: not in "
		    "mynetworks", c->client);
		(void)conn_printf(c->conn, "421 4.7.1 %s Error: LMTP is for "
		    "clients in mynetworks only\r\n", lmtpd.hostname);
		c->quit = true;
		conn_close_after_flush(c->conn);
		return;
	}
	lmtpd_settings(&set);
	c->smtp = smtp_session_new(&set, &lmtpd_cb, c);
	smtp_session_greet(c->smtp);
}

static struct lmtpd_client *
lmtpd_client_by_rcpt(uint32_t req)
{
	for (struct lmtpd_client *c = lmtpd.clients; c != NULL; c = c->next)
		if (c->rcpt_req == req)
			return c;
	return NULL;
}

/* LOFTD_LMTP_RCPT_RESULT and LOFTD_DELIVER_RESULT: u32 req, u32 status,
 * str dsn, str text. */
static void
lmtpd_master_result(struct ipc_msg *m)
{
	struct lmtpd_req **pp, *q;
	struct lmtpd_client *c;
	const char *dsn, *text, *error;
	uint32_t req, status;

	ipc_get_u32(m, &req);
	ipc_get_u32(m, &status);
	ipc_get_str(m, &dsn);
	ipc_get_str(m, &text);
	if (ipc_get_end(m, &error) < 0 || status > LOFTD_DELIVER_PERM) {
		log_warning("bad result record from the master");
		return;
	}
	if (m->type == LOFTD_LMTP_RCPT_RESULT) {
		if ((c = lmtpd_client_by_rcpt(req)) == NULL || c->dying)
			return;
		lmtpd_rcpt_answer(c, (enum loftd_dstatus)status, dsn);
		lmtpd_feed(c);
		return;
	}
	for (pp = &lmtpd.reqs; *pp != NULL && (*pp)->req != req;
	    pp = &(*pp)->next)
		;
	if ((q = *pp) == NULL) {
		log_warning("result for an unknown delivery %u", req);
		return;
	}
	*pp = q->next;
	lmtpd.inflight--;
	if (q->c != NULL && !q->c->dying)
		lmtpd_result(q->c, q->index, (enum loftd_dstatus)status, dsn,
		    text);
	free(q);
	lmtpd_pump();
}

static void
lmtpd_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	switch (m->type) {
	case LOFTD_CONN_NEW:
		lmtpd_conn_new(m);
		break;
	case LOFTD_LMTP_RCPT_RESULT:
	case LOFTD_DELIVER_RESULT:
		lmtpd_master_result(m);
		break;
	case LOFTD_RETIRE:
		lmtpd.retired = true;
		lmtpd_maybe_exit();
		break;
	default:
		log_warning("unexpected record %u from the master", m->type);
	}
}

static void
lmtpd_master_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (error != NULL)
		log_error("master channel: %s", error);
	ioloop_stop(lmtpd.loop);
}

static const struct chan_callbacks lmtpd_master_cb = {
	.msg = lmtpd_master_msg,
	.closed = lmtpd_master_closed,
};

/*
 * Start.
 */

/* Remove the spool files a crash left (see LMTPD_SPOOL_AGE). */
static void
lmtpd_spool_cleanup(void)
{
	char path[sizeof(lmtpd.spool) + 300];
	struct dirent *d;
	struct stat st;
	time_t now = time(NULL);
	DIR *dp;

	if ((dp = opendir(lmtpd.spool)) == NULL)
		return;
	while ((d = readdir(dp)) != NULL) {
		if (strncmp(d->d_name, "lmtp.", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", lmtpd.spool, d->d_name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    now - st.st_mtime >= LMTPD_SPOOL_AGE)
			(void)unlink(path);
	}
	closedir(dp);
}

/* queue_directory/lmtp: made if missing, ours alone, not a link. */
static void
lmtpd_spool_prepare(void)
{
	struct stat st;

	if ((size_t)snprintf(lmtpd.spool, sizeof(lmtpd.spool), "%s/%s",
	    conf_str("queue_directory"), LMTPD_SPOOL) >= sizeof(lmtpd.spool))
		log_fatal("queue_directory: path too long");
	if (mkdir(lmtpd.spool, 0700) < 0 && errno != EEXIST)
		log_fatal("%s: %s", lmtpd.spool, strerror(errno));
	if (lstat(lmtpd.spool, &st) < 0)
		log_fatal("%s: %s", lmtpd.spool, strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0)
		log_fatal("%s must be a directory of uid %lu, mode 0700",
		    lmtpd.spool, (unsigned long)geteuid());
	lmtpd_spool_cleanup();
}

int
lmtpd_main(bool foreground, bool have_log_fd)
{
	const char *error;

	loftd_log_setup("lmtp", foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (strlcpy(lmtpd.hostname, conf_str("myhostname"),
	    sizeof(lmtpd.hostname)) >= sizeof(lmtpd.hostname) ||
	    lmtpd.hostname[0] == '\0' || strpbrk(lmtpd.hostname, " \t") !=
	    NULL)
		log_fatal("myhostname %s: not a host name",
		    conf_str("myhostname"));
	/* As the smtpd processes: mail_owner, no chroot (the spool must
	 * stay reachable). */
	loftd_drop_privileges("mail_owner", NULL);
	lmtpd_spool_prepare();
	if (smtp_relay_new_conf(&lmtpd.relay, &error) < 0)
		log_fatal("%s", error);
	lmtpd.timeout_ms = (unsigned)conf_time("smtpd_timeout") * 1000;
	lmtpd.loop = ioloop_new();
	loftd_stop_on_sigterm(lmtpd.loop);
	lmtpd.master = chan_new(lmtpd.loop, LOFTD_FD_MASTER, &lmtpd_master_cb,
	    NULL);
	ioloop_run(lmtpd.loop);
	while (lmtpd.clients != NULL)
		lmtpd_client_free(lmtpd.clients, false);
	while (lmtpd.reqs != NULL) {
		struct lmtpd_req *q = lmtpd.reqs;

		lmtpd.reqs = q->next;
		free(q);
	}
	chan_free(&lmtpd.master);
	smtp_relay_free(&lmtpd.relay);
	ioloop_free(&lmtpd.loop);
	conf_reset();
	return 0;
}
