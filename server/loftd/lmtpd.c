/*
 * lmtpd.c: the lmtp process of loftd: LMTP (RFC 2033) for the MTA in
 * front of loft, so that Postfix hands mail over with mailbox_transport
 * (or virtual_transport) = lmtp:unix:/path or lmtp:inet:host:port without
 * a process per message. The master gives it the connections of
 * lmtp_listen; the engine is smtp/smtp_session in LMTP mode, and a client
 * is held as smtpd's are (smtp_conn.c): this file is what LMTP does with
 * a recipient and a message.
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
 * The quota at RCPT: the master checks SIZE against the user's limit and
 * asks the mail process of the owner's uid, which alone opens the index,
 * whether the mailbox has room (LOFTD_QUOTA_CHECK). The delivery checks
 * again: a mailbox that filled meanwhile is answered 552 5.2.2 (452 4.2.2
 * with quota_full_tempfail) for that recipient alone after the data.
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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "loftd.h"
#include "smtp_conn.h"

/* Delivery requests at the master at once, from all clients: with the
 * queue manager's 32, well below LOFTD_DELIVER_MAX, so the master never
 * refuses one for being busy. The rest wait here, in order. */
#define LMTPD_INFLIGHT_MAX	64
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
	char addr[SMTP_CONN_PATH_BUF];	/* without <>: Delivered-To:, log */
	char user[SMTP_LOCAL_MAX + 1];	/* the name the master looks up */
	bool answered;
	enum loftd_dstatus status;
	char dsn[8];
	char text[LMTPD_TEXT_MAX];
};

struct lmtpd_client {
	struct smtp_conn sc;		/* first: the connection, the engine
					   (no engine for a refused client) */
	/* A RCPT waiting for the master's word (at most one: the engine
	 * waits for the decision). */
	uint32_t rcpt_req;
	struct smtp_path rcpt_path;
	/* The transaction (MAIL's names: sc). */
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
};

/* A request at the master: a delivery, or a RCPT check. */
struct lmtpd_req {
	struct lmtpd_req *next;
	uint32_t req;
	struct lmtpd_client *c;		/* NULL once the client has gone */
	unsigned index;			/* deliveries: the recipient */
};

struct lmtpd {
	struct smtp_relay *relay;	/* owned: mydestination, mynetworks */
	char spool[4096];
	struct lmtpd_req *reqs;		/* owned list: deliveries out */
	unsigned inflight;
	uint32_t next_req;
	uint64_t last_id_us;
};

static struct lmtpd lmtpd;
static struct ipc_msg lmtpd_out;

static void lmtpd_pump(void);

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

/*
 * Ending a client.
 */

/* smtp_conn_ops.free: deliveries still at the master find no client;
 * the transaction goes. */
static void
lmtpd_client_free(struct smtp_conn *sc)
{
	struct lmtpd_client *c = (struct lmtpd_client *)sc;

	lmtpd_txn_clear(c);
}

/* smtp_conn_ops.in_rcpt: "lost connection after RCPT". */
static bool
lmtpd_in_rcpt(const struct smtp_conn *sc)
{
	const struct lmtpd_client *c = (const struct lmtpd_client *)sc;

	return c->rcpt_req != 0 || c->nrcpts > 0;
}

/*
 * MAIL.
 */

static void
lmtpd_mail(void *ctx, const struct smtp_mail *m)
{
	struct lmtpd_client *c = ctx;

	lmtpd_txn_clear(c);
	smtp_conn_mail(&c->sc, m);
	c->size_announced = m->has_size ? m->size : 0;
	smtp_session_reply(c->sc.smtp, 250, "2.1.0", "Ok");
}

/*
 * RCPT: a local domain, a sound local part, then the master's word.
 */

static void
lmtpd_rcpt_refuse(struct lmtpd_client *c, const struct smtp_path *to,
    unsigned code, const char *enh, const char *what)
{
	char path[SMTP_CONN_PATH_BUF];
	char text[SMTP_CONN_PATH_BUF + LMTPD_TEXT_MAX];
	char epath[SMTP_CONN_PATH_BUF * 4], etext[sizeof(text) * 4];

	smtp_path_format(to, path, sizeof(path));
	snprintf(text, sizeof(text), "%s: %s", path, what);
	log_info("NOQUEUE: reject: RCPT from %s: %u %s %s; to=%s proto=LMTP",
	    c->sc.client, code, enh, log_escape(text, etext, sizeof(etext)),
	    log_escape(path, epath, sizeof(epath)));
	smtp_session_reply(c->sc.smtp, code, enh, text);
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
	log_info("NOQUEUE: reject: RCPT from %s: %s; proto=LMTP", c->sc.client,
	    line);
	smtp_session_reply(c->sc.smtp, code, enh, line + n);
}

static void
lmtpd_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	struct lmtpd_client *c = ctx;
	char reply[SMTP_RELAY_REPLY_MAX];

	c->sc.n_rcpt++;
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
	if (role_master_send(&lmtpd_out) < 0) {
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
	smtp_conn_path_bare(to, r->addr, sizeof(r->addr));
	strlcpy(r->user, to->local, sizeof(r->user));
}

/* The master's word on the pending RCPT (text: the reason for a full
 * mailbox, "mailbox full" or the SIZE over the limit). */
static void
lmtpd_rcpt_answer(struct lmtpd_client *c, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	struct smtp_path to = c->rcpt_path;
	bool quota = strlen(dsn) == 5 && strcmp(dsn + 1, ".2.2") == 0;
	char why[LMTPD_TEXT_MAX];

	c->rcpt_req = 0;
	if (status == LOFTD_DELIVER_OK) {
		lmtpd_rcpt_add(c, &to);
		c->sc.n_rcpt_ok++;
		smtp_session_reply(c->sc.smtp, 250, "2.1.5", "Ok");
	} else if (quota) {
		snprintf(why, sizeof(why), "Recipient address rejected: "
		    "Mailbox full (%s)", strcmp(text, "mailbox full") == 0 ?
		    "no room left for the message" :
		    "the message is larger than the quota");
		lmtpd_rcpt_refuse(c, &to, status == LOFTD_DELIVER_PERM ? 552 :
		    452, status == LOFTD_DELIVER_PERM ? "5.2.2" : "4.2.2",
		    why);
	}
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
	char rcpt[SMTP_CONN_PATH_BUF + 2], *line;

	if (c->nrcpts == 1)
		snprintf(rcpt, sizeof(rcpt), "<%s>", c->rcpts[0].addr);
	line = smtp_conn_received(&c->sc, "LMTP", c->qid, c->nrcpts == 1 ?
	    rcpt : NULL);
	lmtpd_write(c, (const unsigned char *)line, strlen(line));
	free(line);
}

static void
lmtpd_data_begin(void *ctx)
{
	struct lmtpd_client *c = ctx;

	c->sc.n_data++;
	lmtpd_id_make(c->qid);
	log_info("%s: client=%s", c->qid, c->sc.client);
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
	char text[SMTP_CONN_PATH_BUF + LMTPD_TEXT_MAX + 64], dsn[8];
	enum loftd_dstatus status;
	struct lmtpd_rcpt *r;
	bool last;

	while (c->sc.smtp != NULL && c->next_reply < c->nrcpts &&
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
			c->sc.n_data_ok++;
		if (last)
			lmtpd_txn_clear(c);
		smtp_session_data_done(c->sc.smtp, lmtpd_code(status, dsn), dsn,
		    text);
		if (last) {
			if (!c->sc.in_engine)
				smtp_conn_feed(&c->sc);
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
	char eto[SMTP_CONN_PATH_BUF * 4], etext[LMTPD_TEXT_MAX * 4];

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
	ipc_add_str(&lmtpd_out, c->sc.sender);
	ipc_msg_set_fd(&lmtpd_out, fd);
	if (role_master_send(&lmtpd_out) < 0) {
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

	for (c = (struct lmtpd_client *)smtp_conn_first(); c != NULL;
	    c = next) {
		next = (struct lmtpd_client *)c->sc.next;
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
	char efrom[SMTP_CONN_PATH_BUF * 4];
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
	    log_escape(c->sc.sender, efrom, sizeof(efrom)),
	    (unsigned long long)c->size, c->nrcpts);
	lmtpd_pump();
}

static void
lmtpd_reset(void *ctx)
{
	lmtpd_txn_clear(ctx);
}

/*
 * The engine's callbacks.
 */

static const struct smtp_callbacks lmtpd_cb = {
	.write = smtp_conn_engine_write,
	.mail = lmtpd_mail,
	.rcpt = lmtpd_rcpt,
	.data_begin = lmtpd_data_begin,
	.data = lmtpd_data,
	.data_end = lmtpd_data_end,
	.reset = lmtpd_reset,
	.closed = smtp_conn_engine_closed,
};

/*
 * Records from the master.
 */

static void
lmtpd_settings(struct smtp_settings *set)
{
	smtp_conn_settings(set);
	set->lmtp = true;
	/* No DSN (the client makes the bounces), no SMTPUTF8 (no user name
	 * needs it), no STARTTLS or AUTH (trusted clients only). */
	set->extensions = SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |
	    SMTP_EXT_PIPELINING | SMTP_EXT_ENHANCED | SMTP_EXT_CHUNKING;
}

/* Whether a TCP client is in mynetworks (a UNIX socket's always is). */
static bool
lmtpd_client_trusted(const struct lmtpd_client *c)
{
	if (c->sc.service == LOFTD_SVC_LMTP_UNIX)
		return true;
	return c->sc.have_addr && smtp_relay_client_trusted(lmtpd.relay,
	    &c->sc.addr);
}

/* role_master_ops.conn_new: an LMTP client. */
static void
lmtpd_conn_new(struct role_conn *rc)
{
	struct smtp_settings set;
	struct lmtpd_client *c;

	if (!loftd_service_lmtp(rc->service) || rc->tls != 0 ||
	    strlen(rc->rip) >= NET_ADDR_STR_MAX ||
	    (rc->service == LOFTD_SVC_LMTP_UNIX) != (rc->rip[0] == '\0')) {
		role_conn_refuse(rc);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->spool_fd = c->spool_ro = -1;
	(void)smtp_conn_add(&c->sc, rc);
	if (!lmtpd_client_trusted(c)) {
		/* 421, not 554: a client that is refused by mistake (a
		 * mynetworks to fix) defers its mail instead of bouncing
		 * it. */
		log_info("refused LMTP connection from %s: not in "
		    "mynetworks", c->sc.client);
		(void)conn_printf(c->sc.conn, "421 4.7.1 %s Error: LMTP is for "
		    "clients in mynetworks only\r\n", smtp_conn_hostname());
		c->sc.quit = true;
		conn_close_after_flush(c->sc.conn);
		return;
	}
	lmtpd_settings(&set);
	smtp_conn_start(&c->sc, &set);
}

static struct lmtpd_client *
lmtpd_client_by_rcpt(uint32_t req)
{
	struct lmtpd_client *c;

	for (struct smtp_conn *sc = smtp_conn_first(); sc != NULL;
	    sc = sc->next) {
		c = (struct lmtpd_client *)sc;
		if (c->rcpt_req == req)
			return c;
	}
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
		if ((c = lmtpd_client_by_rcpt(req)) == NULL || c->sc.dying)
			return;
		lmtpd_rcpt_answer(c, (enum loftd_dstatus)status, dsn, text);
		smtp_conn_feed(&c->sc);
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
	if (q->c != NULL && !q->c->sc.dying)
		lmtpd_result(q->c, q->index, (enum loftd_dstatus)status, dsn,
		    text);
	free(q);
	lmtpd_pump();
}

/* role_master_ops.msg: the answers to our requests. */
static bool
lmtpd_master_msg(struct ipc_msg *m)
{
	if (m->type != LOFTD_LMTP_RCPT_RESULT &&
	    m->type != LOFTD_DELIVER_RESULT)
		return false;
	lmtpd_master_result(m);
	return true;
}

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

static const struct smtp_conn_ops lmtpd_ops = {
	.engine = &lmtpd_cb,
	.hello = "LHLO",
	.in_rcpt = lmtpd_in_rcpt,
	.free = lmtpd_client_free,
	.conn_new = lmtpd_conn_new,
	.master_msg = lmtpd_master_msg,
};

int
lmtpd_main(bool foreground, bool have_log_fd)
{
	const char *error;

	smtp_conn_role_init("lmtp", foreground, have_log_fd);
	/* As the smtpd processes: mail_owner, no chroot (the spool must
	 * stay reachable). */
	loftd_drop_privileges("mail_owner", NULL);
	lmtpd_spool_prepare();
	if (smtp_relay_new_conf(&lmtpd.relay, &error) < 0)
		log_fatal("%s", error);
	(void)smtp_conn_loop_new(&lmtpd_ops, NULL);
	smtp_conn_loop_run();
	while (lmtpd.reqs != NULL) {
		struct lmtpd_req *q = lmtpd.reqs;

		lmtpd.reqs = q->next;
		free(q);
	}
	smtp_relay_free(&lmtpd.relay);
	smtp_conn_loop_free();
	return 0;
}
