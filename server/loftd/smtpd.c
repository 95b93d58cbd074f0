/*
 * smtpd.c: an smtpd process of loftd: the receiving side of SMTP. It takes
 * the connections of smtp_listen (port 25), submission_listen (587) and
 * submissions_listen (465, TLS from the first byte) from the master, runs
 * the ESMTP engine (smtp/smtp_session) on each, does STARTTLS, hands SMTP
 * AUTH to the auth process (as a login process does for POP3 and IMAP),
 * decides each recipient with relay control (smtp/smtp_relay), the alias
 * maps (smtp/smtp_alias) and the auth process's word on whether a local
 * user exists, and writes each message into the queue (smtp/smtp_queue),
 * answering 250 only once smtp_queue_commit has made it durable, and
 * then telling the master (LOFTD_QUEUED), which tells the queue manager.
 * The commits (their fsyncs) run on the queue's committer threads, so
 * that the other clients are served meanwhile and commits that wait at
 * the same moment share the file system's journal commits; the client
 * whose message it is waits for its 250 (its pipelined input is held).
 * Delivery out of the queue is the qmgr process's job (qmgr.c). The
 * connection, the engine's input and output, the timeouts and the log of
 * a client's life are smtp_conn.c's, shared with the lmtp process.
 *
 * SECURITY: this process parses what any client on the Internet sends.
 * Started as root it loads the TLS key, then becomes mail_owner for good
 * (no way back: no_new_privs; no core dumps; no children), and is not
 * chrooted only because it writes the queue directory, which mail_owner
 * owns. It cannot read the user database (the auth process answers
 * AUTH_REQ_EXISTS instead) nor any mailbox (the master refuses a
 * mail_owner that owns virtual users' mail). Client bytes reach only the
 * engine, which is strict about line ends (no SMTP smuggling) and drops
 * plaintext pipelined behind STARTTLS; addresses are logged escaped.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include "user.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "smtp_addr.h"
#include "smtp_alias.h"
#include "smtp_queue.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "chan.h"
#include "loftd.h"
#include "smtp_conn.h"

/* smtp_session.c's bound on the mechanism list (SMTP_MECHS_MAX there). */
#define SMTPD_MECHS_MAX		400
/* How often a missing alias database is looked for again. */
#define SMTPD_ALIAS_RETRY_MS	10000
/* Commits at once (each client has at most one under way): enough that
 * the commits of many clients wait for the same journal commit. */
#define SMTPD_COMMIT_THREADS	16

/* What the one outstanding auth request of a client is for. */
enum smtpd_wait {
	SMTPD_WAIT_NONE,
	SMTPD_WAIT_SASL,		/* an AUTH step */
	SMTPD_WAIT_EXISTS,		/* a local recipient's user lookup */
	SMTPD_WAIT_QUOTA		/* its quota, asked of the master */
};

/* A recipient waiting for the auth process's answer. */
struct smtpd_rcpt {
	struct smtp_path path;
	char name[2][SMTP_LOCAL_MAX + 1];	/* user names to try */
	int nnames, tried;
	bool alias_unknown;		/* the alias maps failed */
	char *orcpt;			/* owned, or NULL */
	unsigned notify;
};

struct smtpd_client {
	struct smtp_conn sc;		/* first: the connection, the engine */
	/* The auth request in flight (at most one: the engine waits). */
	enum smtpd_wait wait;
	uint32_t auth_id;
	uint32_t sasl_id;		/* the SASL session, or 0 */
	char sasl_mech[32];
	struct smtpd_rcpt rcpt;		/* SMTPD_WAIT_EXISTS, _QUOTA */
	uint32_t quota_req;		/* SMTPD_WAIT_QUOTA: the request */
	uint64_t size_announced;	/* MAIL's SIZE=, or 0 */
	/* The transaction (MAIL's names: sc). */
	char *envid;			/* owned, or NULL */
	enum smtp_ret ret;
	struct smtp_queue_msg *msg;	/* owned, or NULL */
	char qid[SMTP_QUEUE_ID_MAX];	/* "" until the queue file exists */
	char first_rcpt[SMTP_CONN_PATH_BUF];	/* for the Received: line */
	uint64_t size;			/* bytes written to the queue */
	const char *qerror;		/* a write failed: the error */
	bool qfull;			/* ... because the disk is full */
	struct smtpd_commit *commit;	/* its commit under way, or NULL;
					   owned by the committer */
};

/* A message being committed on a committer thread: what its log line
 * and its client need when the commit is done. */
struct smtpd_commit {
	struct smtpd_client *c;		/* NULL: the client left meanwhile */
	char *from;			/* the sender, escaped; owned */
	uint64_t size;
	unsigned nrcpt;
};

struct smtpd {
	struct ioloop *loop;		/* smtp_conn's */
	struct chan *auth;		/* owned */
	struct tls_ctx *tls;		/* owned, or NULL */
	char mechs[SMTPD_MECHS_MAX + 1];
	struct smtp_relay *relay;	/* owned */
	struct smtp_queue *queue;	/* owned */
	struct smtp_queue_committer *committer;	/* owned */
	struct io *commit_io;		/* owned: the committer's fd */
	struct smtp_alias_map *aliases;	/* owned; NULL: unreadable */
	uint64_t alias_tried_ms;
	uint32_t next_id;
};

static struct smtpd smtpd;
static struct ipc_msg smtpd_out;

/*
 * The transaction's state in the queue.
 */

static void
smtpd_txn_clear(struct smtpd_client *c)
{
	smtp_queue_abort(&c->msg);
	free(c->envid);
	c->envid = NULL;
	c->ret = SMTP_RET_NONE;
	c->qid[0] = '\0';
	c->first_rcpt[0] = '\0';
	c->size = 0;
	c->qerror = NULL;
	c->qfull = false;
}

/*
 * Ending a client.
 */

/* smtp_conn_ops.free: the SASL session and the transaction go. */
static void
smtpd_client_free(struct smtp_conn *sc)
{
	struct smtpd_client *c = (struct smtpd_client *)sc;

	if (c->sasl_id != 0 && chan_ok(smtpd.auth)) {
		struct auth_req req;
		const char *error;

		memset(&req, 0, sizeof(req));
		req.type = AUTH_REQ_SASL_ABORT;
		req.id = ++smtpd.next_id;
		req.session = c->sasl_id;
		if (auth_proto_req_encode(&smtpd_out, &req, &error) == 0)
			(void)chan_send(smtpd.auth, &smtpd_out);
	}
	/* The engine's cb->reset would do it too: the queue file goes. A
	 * commit under way goes on (a message that reaches the queue gets
	 * no 250: the client sends it again, RFC 1047's duplicate). */
	if (c->commit != NULL)
		c->commit->c = NULL;
	smtpd_txn_clear(c);
	free(c->rcpt.orcpt);
	c->rcpt.orcpt = NULL;
}

/* smtp_conn_ops.in_rcpt: "lost connection after RCPT". */
static bool
smtpd_in_rcpt(const struct smtp_conn *sc)
{
	const struct smtpd_client *c = (const struct smtpd_client *)sc;

	return c->wait == SMTPD_WAIT_EXISTS || c->wait == SMTPD_WAIT_QUOTA ||
	    smtp_session_rcpt_count(sc->smtp) > 0;
}

/*
 * Requests to the auth process.
 */

static int
smtpd_auth_send(struct smtpd_client *c, struct auth_req *req,
    enum smtpd_wait wait)
{
	const char *error;
	int ret;

	req->id = ++smtpd.next_id;
	if (req->id == 0)
		req->id = ++smtpd.next_id;
	if (req->type != AUTH_REQ_EXISTS) {
		req->service = loftd_service_name(c->sc.service);
		req->ip = c->sc.rip;
		req->secure = c->sc.secured;
	}
	ret = auth_proto_req_encode(&smtpd_out, req, &error);
	if (ret == 0)
		ret = chan_send(smtpd.auth, &smtpd_out);
	else
		log_warning("auth request: %s", error);
	/* The record may have held a password. */
	explicit_bzero(smtpd_out.data, sizeof(smtpd_out.data));
	if (ret < 0)
		return -1;
	c->auth_id = req->id;
	c->wait = wait;
	return 0;
}

/*
 * AUTH.
 */

static enum smtp_auth_result
smtpd_sasl(void *ctx, const char *mech, bool first, const unsigned char *resp,
    size_t resp_len, bool has_resp, const unsigned char **challenge_r,
    size_t *challenge_len_r, const char **user_r)
{
	struct smtpd_client *c = ctx;
	struct auth_req req;

	(void)challenge_r;
	(void)challenge_len_r;
	(void)user_r;
	memset(&req, 0, sizeof(req));
	if (first) {
		c->sc.n_auth++;
		strlcpy(c->sasl_mech, mech, sizeof(c->sasl_mech));
		req.type = AUTH_REQ_SASL_START;
		req.mech = mech;
		req.has_initial = has_resp;
		req.initial = resp;
		req.initial_len = resp_len;
	} else {
		req.type = AUTH_REQ_SASL_STEP;
		req.session = c->sasl_id;
		req.data = resp;
		req.data_len = resp_len;
	}
	if (smtpd_auth_send(c, &req, SMTPD_WAIT_SASL) < 0)
		return SMTP_AUTH_TEMPFAIL;
	if (first)
		c->sasl_id = c->auth_id;
	return SMTP_AUTH_PENDING;
}

static void
smtpd_sasl_abort(void *ctx)
{
	struct smtpd_client *c = ctx;
	struct auth_req req;
	const char *error;

	if (c->sasl_id == 0)
		return;
	memset(&req, 0, sizeof(req));
	req.type = AUTH_REQ_SASL_ABORT;
	req.id = ++smtpd.next_id;
	req.session = c->sasl_id;
	c->sasl_id = 0;
	/* Its answer is ignored: no client waits for it. */
	if (auth_proto_req_encode(&smtpd_out, &req, &error) == 0)
		(void)chan_send(smtpd.auth, &smtpd_out);
}

static void
smtpd_sasl_answer(struct smtpd_client *c, const struct auth_resp *r)
{
	enum auth_result res = (enum auth_result)r->result;

	if (res != AUTH_RESULT_CONTINUE)
		c->sasl_id = 0;
	if (res == AUTH_RESULT_OK)
		c->sc.n_auth_ok++;
	smtp_session_auth_reply(c->sc.smtp, res == AUTH_RESULT_OK ?
	    SMTP_AUTH_OK : res == AUTH_RESULT_CONTINUE ? SMTP_AUTH_CONTINUE :
	    res == AUTH_RESULT_TEMPFAIL ? SMTP_AUTH_TEMPFAIL : SMTP_AUTH_FAIL,
	    r->challenge, r->challenge_len, r->user);
}

/*
 * MAIL.
 */

static void
smtpd_mail(void *ctx, const struct smtp_mail *m)
{
	struct smtpd_client *c = ctx;

	smtpd_txn_clear(c);
	smtp_conn_mail(&c->sc, m);
	c->size_announced = m->has_size ? m->size : 0;
	c->envid = m->envid != NULL ? xstrdup(m->envid) : NULL;
	c->ret = m->ret;
	smtp_session_reply(c->sc.smtp, 250, "2.1.0", "Ok");
}

/*
 * RCPT: the decision, then the queue.
 */

static const char *
smtpd_proto(const struct smtpd_client *c)
{
	return c->sc.helo[0] == '\0' ? "SMTP" : "ESMTP";
}

/* One "reject" line, Postfix's form. */
static void
smtpd_log_reject(struct smtpd_client *c, const struct smtp_path *to,
    unsigned code, const char *enh, const char *text)
{
	char path[SMTP_CONN_PATH_BUF], eto[SMTP_CONN_PATH_BUF * 4];
	char efrom[SMTP_CONN_PATH_BUF * 4], ehelo[sizeof(c->sc.helo) * 4];
	char etext[SMTP_RELAY_REPLY_MAX * 4];

	smtp_conn_path_bare(to, path, sizeof(path));
	log_info("%s: reject: RCPT from %s: %u %s %s; from=<%s> to=<%s> "
	    "proto=%s helo=<%s>", c->qid[0] != '\0' ? c->qid : "NOQUEUE",
	    c->sc.client, code, enh, log_escape(text, etext, sizeof(etext)),
	    log_escape(c->sc.sender, efrom, sizeof(efrom)),
	    log_escape(path, eto, sizeof(eto)), smtpd_proto(c),
	    log_escape(c->sc.helo, ehelo, sizeof(ehelo)));
}

static void
smtpd_rcpt_refuse(struct smtpd_client *c, const struct smtp_path *to,
    unsigned code, const char *enh, const char *text)
{
	smtpd_log_reject(c, to, code, enh, text);
	smtp_session_reply(c->sc.smtp, code, enh, text);
}

/* A reply line of smtp_relay_check ("554 5.7.1 <a@b>: Relay access
 * denied") answered as it is. */
static void
smtpd_rcpt_refuse_line(struct smtpd_client *c, const struct smtp_path *to,
    const char *line)
{
	char enh[16];
	const char *sp, *text;
	unsigned code = (unsigned)atoi(line);
	size_t len;

	sp = strchr(line, ' ');
	text = sp != NULL ? strchr(sp + 1, ' ') : NULL;
	len = sp != NULL && text != NULL ? (size_t)(text - sp - 1) : 0;
	if (code < 400 || code > 599 || len == 0 || len >= sizeof(enh)) {
		/* Not the form smtp_relay.h promises: a bug, refuse safely. */
		smtpd_rcpt_refuse(c, to, 451, "4.3.0", "Error: internal "
		    "error");
		return;
	}
	memcpy(enh, sp + 1, len);
	enh[len] = '\0';
	smtpd_rcpt_refuse(c, to, code, enh, text + 1);
}

static void
smtpd_log_client(struct smtpd_client *c)
{
	const char *user = smtp_session_auth_user(c->sc.smtp);
	char euser[(SMTP_USER_MAX + 1) * 4];

	if (user == NULL)
		log_info("%s: client=%s", c->qid, c->sc.client);
	else
		log_info("%s: client=%s, sasl_method=%s, sasl_username=%s",
		    c->qid, c->sc.client, c->sasl_mech,
		    log_escape(user, euser, sizeof(euser)));
}

/* The queue file, made at the first accepted recipient (so that refused
 * transactions cost no file, and log NOQUEUE, as in Postfix); -1 after
 * logging. */
static int
smtpd_queue_begin(struct smtpd_client *c)
{
	const char *error;

	if (c->msg != NULL)
		return 0;
	if (smtp_queue_begin(smtpd.queue, c->sc.sender,
	    (unsigned)conf_int("smtpd_recipient_limit"), &c->msg,
	    &error) < 0) {
		log_error("%s", error);
		return -1;
	}
	strlcpy(c->qid, smtp_queue_msg_id(c->msg), sizeof(c->qid));
	if (smtp_queue_set_dsn(c->msg, c->envid, c->ret, &error) < 0)
		log_warning("%s: %s", c->qid, error);
	smtpd_log_client(c);
	return 0;
}

/* to is accepted: into the queue's envelope, then 250. */
static void
smtpd_rcpt_accept(struct smtpd_client *c, const struct smtp_path *to,
    const char *orcpt, unsigned notify)
{
	char bare[SMTP_CONN_PATH_BUF];
	const char *error;

	smtp_conn_path_bare(to, bare, sizeof(bare));
	if (smtpd_queue_begin(c) < 0) {
		smtpd_rcpt_refuse(c, to, 451, "4.3.0", "Error: queue file "
		    "write error");
		return;
	}
	if (smtp_queue_add_rcpt(c->msg, bare, orcpt, notify, &error) < 0) {
		log_warning("%s: to=<%s>: %s", c->qid, bare, error);
		smtpd_rcpt_refuse(c, to, 452, "4.5.3", "Error: too many "
		    "recipients");
		return;
	}
	if (c->first_rcpt[0] == '\0')
		smtp_path_format(to, c->first_rcpt, sizeof(c->first_rcpt));
	c->sc.n_rcpt_ok++;
	smtp_session_reply(c->sc.smtp, 250, "2.1.5", "Ok");
}

static void
smtpd_rcpt_unknown(struct smtpd_client *c, const struct smtp_path *to)
{
	char path[SMTP_CONN_PATH_BUF], text[SMTP_CONN_PATH_BUF + 80];

	smtp_path_format(to, path, sizeof(path));
	snprintf(text, sizeof(text), "%s: Recipient address rejected: User "
	    "unknown in local recipient table", path);
	smtpd_rcpt_refuse(c, to, 550, "5.1.1", text);
}

static void
smtpd_rcpt_tempfail(struct smtpd_client *c, const struct smtp_path *to)
{
	char path[SMTP_CONN_PATH_BUF], text[SMTP_CONN_PATH_BUF + 80];

	smtp_path_format(to, path, sizeof(path));
	snprintf(text, sizeof(text), "%s: Temporary lookup failure", path);
	smtpd_rcpt_refuse(c, to, 451, "4.3.0", text);
}

/* The alias maps, opened now if they could not be before. */
static struct smtp_alias_map *
smtpd_aliases(void)
{
	const char *error;

	if (smtpd.aliases != NULL) {
		if (smtp_alias_refresh(smtpd.aliases, &error) < 0)
			log_warning("alias_maps: %s", error);
		return smtpd.aliases;
	}
	if (ioloop_now_ms() - smtpd.alias_tried_ms < SMTPD_ALIAS_RETRY_MS &&
	    smtpd.alias_tried_ms != 0)
		return NULL;
	smtpd.alias_tried_ms = ioloop_now_ms();
	if (smtp_alias_open_conf(&smtpd.aliases, &error) < 0) {
		log_warning("alias_maps: %s (local recipients that are no "
		    "user are deferred)", error);
		smtpd.aliases = NULL;
	}
	return smtpd.aliases;
}

/* Whether name is an alias: 1, 0, or -1 when the maps cannot say. */
static int
smtpd_alias_exists(const char *name)
{
	struct smtp_alias_map *map = smtpd_aliases();
	struct smtp_alias_value *values;
	const char *error;
	size_t count;
	int ret;

	if (map == NULL)
		return -1;
	ret = smtp_alias_lookup(map, name, &values, &count, NULL, &error);
	if (ret < 0) {
		log_warning("alias_maps: %s", error);
		return -1;
	}
	if (ret > 0)
		smtp_alias_values_free(values, count);
	return ret;
}

/* The names a local part may be known as: itself, and without its
 * address extension (recipient_delimiter, "user+tag" -> "user"). */
static void
smtpd_rcpt_names(struct smtpd_rcpt *r)
{
	const char *delim = conf_str("recipient_delimiter");
	size_t cut;

	strlcpy(r->name[0], r->path.local, sizeof(r->name[0]));
	r->nnames = 1;
	if (delim[0] == '\0')
		return;
	cut = strcspn(r->path.local, delim);
	if (cut > 0 && r->path.local[cut] != '\0') {
		memcpy(r->name[1], r->path.local, cut);
		r->name[1][cut] = '\0';
		r->nnames = 2;
	}
}

/* Ask the auth process whether the next name is a user; -1 if it
 * cannot be asked. */
static int
smtpd_rcpt_ask(struct smtpd_client *c)
{
	struct auth_req req;

	memset(&req, 0, sizeof(req));
	req.type = AUTH_REQ_EXISTS;
	req.user = c->rcpt.name[c->rcpt.tried++];
	return smtpd_auth_send(c, &req, SMTPD_WAIT_EXISTS);
}

/*
 * A recipient in a local domain must be an alias or a user. The aliases
 * are read here; whether a user exists only the auth process can say,
 * which answers later (smtpd_rcpt_answer).
 */
static void
smtpd_rcpt_local(struct smtpd_client *c, const struct smtp_rcpt *r)
{
	struct smtpd_rcpt *pr = &c->rcpt;
	int i, ret;

	/* RFC 5321 section 4.5.1: postmaster is always accepted. */
	if (r->to->postmaster || strcasecmp(r->to->local, "postmaster") == 0) {
		smtpd_rcpt_accept(c, r->to, r->orcpt, r->notify);
		return;
	}
	free(pr->orcpt);
	memset(pr, 0, sizeof(*pr));
	pr->path = *r->to;
	pr->orcpt = r->orcpt != NULL ? xstrdup(r->orcpt) : NULL;
	pr->notify = r->notify;
	smtpd_rcpt_names(pr);
	for (i = 0; i < pr->nnames; i++) {
		if ((ret = smtpd_alias_exists(pr->name[i])) > 0) {
			smtpd_rcpt_accept(c, r->to, r->orcpt, r->notify);
			return;
		}
		if (ret < 0)
			pr->alias_unknown = true;
	}
	if (smtpd_rcpt_ask(c) < 0)
		smtpd_rcpt_tempfail(c, r->to);
}

static int smtpd_quota_ask(struct smtpd_client *c, const char *name);

static void
smtpd_rcpt_answer(struct smtpd_client *c, const struct auth_resp *r)
{
	struct smtpd_rcpt *pr = &c->rcpt;

	if (r->result == AUTH_RESULT_FAIL && pr->tried < pr->nnames) {
		if (smtpd_rcpt_ask(c) == 0)
			return;
		smtpd_rcpt_tempfail(c, &pr->path);
	} else if (r->result == AUTH_RESULT_OK) {
		/* A user: is there room in the mailbox? (Answered in
		 * smtpd_quota_answer; without the master, at delivery.) */
		if (smtpd_quota_ask(c, pr->name[pr->tried - 1]) == 0)
			return;
		smtpd_rcpt_accept(c, &pr->path, pr->orcpt, pr->notify);
	} else if (r->result == AUTH_RESULT_FAIL && !pr->alias_unknown)
		smtpd_rcpt_unknown(c, &pr->path);
	else
		smtpd_rcpt_tempfail(c, &pr->path);
	free(pr->orcpt);
	pr->orcpt = NULL;
}

/*
 * Quota at RCPT: the master looks the user up and, when a limit applies,
 * asks the mail process of the user's owner, the only one that opens the
 * index, whether MAIL's SIZE (or anything) still fits (LOFTD_LMTP_RCPT).
 */
static int
smtpd_quota_ask(struct smtpd_client *c, const char *name)
{
	static uint32_t seq;

	if (++seq == 0)
		seq = 1;
	ipc_msg_init(&smtpd_out, LOFTD_LMTP_RCPT, 0);
	ipc_add_u32(&smtpd_out, seq);
	ipc_add_str(&smtpd_out, name);
	ipc_add_u64(&smtpd_out, c->size_announced);
	if (role_master_send(&smtpd_out) < 0)
		return -1;
	c->quota_req = seq;
	c->wait = SMTPD_WAIT_QUOTA;
	return 0;
}

static void
smtpd_quota_answer(struct smtpd_client *c, enum loftd_dstatus status,
    const char *dsn)
{
	struct smtpd_rcpt *pr = &c->rcpt;
	bool full = strlen(dsn) == 5 && strcmp(dsn + 1, ".2.2") == 0;

	c->wait = SMTPD_WAIT_NONE;
	c->quota_req = 0;
	if (status == LOFTD_DELIVER_OK || !full)
		/* Anything but a full mailbox (a lookup that failed just
		 * now) is the delivery's to find out. */
		smtpd_rcpt_accept(c, &pr->path, pr->orcpt, pr->notify);
	else
		smtpd_rcpt_refuse(c, &pr->path, status == LOFTD_DELIVER_PERM ?
		    552 : 452, status == LOFTD_DELIVER_PERM ? "5.2.2" : "4.2.2",
		    "Recipient address rejected: Mailbox full");
	free(pr->orcpt);
	pr->orcpt = NULL;
}

/* role_master_ops.msg: the answers to quota questions. */
static bool
smtpd_master_msg(struct ipc_msg *m)
{
	const char *dsn, *text, *error;
	uint32_t req, status;
	struct smtp_conn *sc;

	if (m->type != LOFTD_LMTP_RCPT_RESULT)
		return false;
	ipc_get_u32(m, &req);
	ipc_get_u32(m, &status);
	ipc_get_str(m, &dsn);
	ipc_get_str(m, &text);
	if (ipc_get_end(m, &error) < 0) {
		log_warning("bad quota answer from the master: %s", error);
		return true;
	}
	for (sc = smtp_conn_first(); sc != NULL; sc = sc->next) {
		struct smtpd_client *c = (struct smtpd_client *)sc;

		if (c->wait != SMTPD_WAIT_QUOTA || c->quota_req != req ||
		    sc->dying)
			continue;
		smtpd_quota_answer(c, status > LOFTD_DELIVER_PERM ?
		    LOFTD_DELIVER_TEMP : (enum loftd_dstatus)status, dsn);
		smtp_conn_feed(sc);
		break;
	}
	return true;
}

static void
smtpd_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	struct smtpd_client *c = ctx;
	char reply[SMTP_RELAY_REPLY_MAX];

	c->sc.n_rcpt++;
	switch (smtp_relay_check(smtpd.relay, c->sc.have_addr ? &c->sc.addr :
	    NULL, smtp_session_auth_user(c->sc.smtp) != NULL, r->to, reply,
	    sizeof(reply))) {
	case SMTP_RELAY_LOCAL:
		smtpd_rcpt_local(c, r);
		break;
	case SMTP_RELAY_RELAY:
		smtpd_rcpt_accept(c, r->to, r->orcpt, r->notify);
		break;
	default:
		smtpd_rcpt_refuse_line(c, r->to, reply);
		break;
	}
}

/*
 * The message.
 */

static void
smtpd_write(struct smtpd_client *c, const unsigned char *data, size_t len)
{
	const char *error;

	if (c->msg == NULL || c->qerror != NULL)
		return;
	if (smtp_queue_write(c->msg, data, len, &error) < 0) {
		c->qerror = error;
		c->qfull = fsutil_is_disk_full(errno);
		log_error("%s: %s", c->qid, error);
		return;
	}
	c->size += len;
}

/* RFC 5321 section 4.4's protocol names (RFC 3848). */
static const char *
smtpd_with(const struct smtpd_client *c)
{
	bool auth = smtp_session_auth_user(c->sc.smtp) != NULL;

	if (c->sc.helo[0] == '\0')
		return "SMTP";
	return c->sc.secured ? (auth ? "ESMTPSA" : "ESMTPS") :
	    (auth ? "ESMTPA" : "ESMTP");
}

/*
 * The trace line loftd prepends (RFC 5321 section 4.4): from the EHLO
 * name and the address literal of the client (no reverse DNS), by
 * myhostname, with the protocol, the queue ID, for the recipient when
 * there is exactly one, and the date.
 */
static void
smtpd_received(struct smtpd_client *c)
{
	char *line;
	bool one = smtp_session_rcpt_count(c->sc.smtp) == 1 &&
	    c->first_rcpt[0] != '\0';

	line = smtp_conn_received(&c->sc, smtpd_with(c), c->qid,
	    one ? c->first_rcpt : NULL);
	smtpd_write(c, (const unsigned char *)line, strlen(line));
	free(line);
}

static void
smtpd_data_begin(void *ctx)
{
	struct smtpd_client *c = ctx;

	c->sc.n_data++;
	if (c->msg == NULL) {
		/* The engine starts data only after an accepted RCPT. */
		c->qerror = "no queue file";
		return;
	}
	smtpd_received(c);
}

static void
smtpd_data(void *ctx, const unsigned char *data, size_t len)
{
	smtpd_write(ctx, data, len);
}

/* Tell the queue manager (through the master) that message id is in
 * the queue, so it need not wait for its next scan. Lost on the way (the
 * master's queue full, no qmgr running) it is found by the scan the next
 * qmgr process makes when it starts, or by a flush. */
static void
smtpd_notify_queued(const char *id)
{
	ipc_msg_init(&smtpd_out, LOFTD_QUEUED, 0);
	ipc_add_str(&smtpd_out, id);
	(void)role_master_send(&smtpd_out);
}

/* The answer to a message whose commit failed, or could not start. */
static void
smtpd_data_failed(struct smtpd_client *c, bool full)
{
	smtp_session_data_done(c->sc.smtp, full ? 452 : 451, full ?
	    "4.3.1" : "4.3.0", full ? "Error: insufficient system "
	    "storage" : "Error: queue file write error");
}

/* smtp_queue_commit_cb: a commit is over (on the loop's thread). Durable
 * (smtp_queue.h): only now the 250, and the queue manager hears of it
 * even if the client left meanwhile. */
static void
smtpd_commit_done(void *ctx, int result, const char *id, const char *error)
{
	struct smtpd_commit *cm = ctx;
	struct smtpd_client *c = cm->c;
	char text[64];
	bool full = result < 0 && fsutil_is_disk_full(errno);

	if (result < 0)
		log_error("%s: %s", id, error);
	else {
		log_info("%s: from=<%s>, size=%llu, nrcpt=%u (queue active)",
		    id, cm->from, (unsigned long long)cm->size, cm->nrcpt);
		smtpd_notify_queued(id);
	}
	free(cm->from);
	free(cm);
	if (c == NULL)
		return;
	c->commit = NULL;
	if (c->sc.dying)
		return;
	if (result < 0)
		smtpd_data_failed(c, full);
	else {
		c->sc.n_data_ok++;
		snprintf(text, sizeof(text), "Ok: queued as %s", id);
		smtp_session_data_done(c->sc.smtp, 250, "2.0.0", text);
	}
	/* What the client pipelined behind its message. */
	smtp_conn_feed(&c->sc);
}

static void
smtpd_commit_ready(void *ctx)
{
	(void)ctx;
	(void)smtp_queue_commit_reap(smtpd.committer, smtpd_commit_done);
}

static void
smtpd_data_end(void *ctx)
{
	struct smtpd_client *c = ctx;
	struct smtpd_commit *cm;
	char efrom[SMTP_CONN_PATH_BUF * 4];
	bool full;

	if (c->qerror != NULL || c->msg == NULL) {
		full = c->qfull;
		smtpd_txn_clear(c);
		smtpd_data_failed(c, full);
		return;
	}
	cm = xcalloc(1, sizeof(*cm));
	cm->c = c;
	cm->from = xstrdup(log_escape(c->sc.sender, efrom, sizeof(efrom)));
	cm->size = c->size;
	cm->nrcpt = smtp_session_rcpt_count(c->sc.smtp);
	c->commit = cm;
	smtp_queue_commit_submit(smtpd.committer, &c->msg, cm);
	smtpd_txn_clear(c);
	/* smtpd_commit_done answers, and the engine waits till then. */
}

/* smtp_conn_ops.stop: the loop has stopped; commits under way finish,
 * are logged and announced before the clients and the master channel
 * go (their clients get no answer). */
static void
smtpd_stop(void)
{
	struct smtp_conn *sc;

	for (sc = smtp_conn_first(); sc != NULL; sc = sc->next) {
		struct smtpd_client *c = (struct smtpd_client *)sc;

		if (c->commit != NULL)
			c->commit->c = NULL;
		c->commit = NULL;
	}
	io_remove(&smtpd.commit_io);
	smtp_queue_committer_free(&smtpd.committer, smtpd_commit_done);
}

static void
smtpd_reset(void *ctx)
{
	smtpd_txn_clear(ctx);
}

/*
 * The engine's callbacks.
 */

static const struct smtp_callbacks smtpd_cb = {
	.write = smtp_conn_engine_write,
	.mail = smtpd_mail,
	.rcpt = smtpd_rcpt,
	.data_begin = smtpd_data_begin,
	.data = smtpd_data,
	.data_end = smtpd_data_end,
	.reset = smtpd_reset,
	.sasl = smtpd_sasl,
	.sasl_abort = smtpd_sasl_abort,
	.start_tls = smtp_conn_engine_start_tls,
	.closed = smtp_conn_engine_closed,
};

/*
 * Records from the master.
 */

static void
smtpd_settings(const struct smtpd_client *c, struct smtp_settings *set)
{
	bool plain_ok = !conf_bool("disable_plaintext_auth");

	smtp_conn_settings(set);
	set->extensions = SMTP_EXT_ALL;
	set->tls_available = smtpd.tls != NULL;
	set->secured = c->sc.secured;
	/* AUTH only inside TLS, unless disable_plaintext_auth = no. */
	set->allow_plaintext_auth = plain_ok;
	/* Submission (RFC 6409): AUTH first, and TLS before it (RFC 8314)
	 * unless plaintext passwords are allowed. */
	set->require_auth = c->sc.service != LOFTD_SVC_SMTP;
	set->require_tls = c->sc.service == LOFTD_SVC_SUBMISSION && !plain_ok;
	set->mechanisms = smtpd.mechs;
}

/* role_master_ops.conn_new: a client of an SMTP service. */
static void
smtpd_conn_new(struct role_conn *rc)
{
	struct smtp_settings set;
	struct smtpd_client *c;

	if (!loftd_service_smtp(rc->service) || (rc->tls && smtpd.tls ==
	    NULL) || strlen(rc->rip) >= NET_ADDR_STR_MAX) {
		role_conn_refuse(rc);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	if (smtp_conn_add(&c->sc, rc) < 0)
		return;
	smtpd_settings(c, &set);
	smtp_conn_start(&c->sc, &set);
}

/*
 * Answers from the auth process.
 */

static struct smtpd_client *
smtpd_client_by_auth(uint32_t id)
{
	struct smtpd_client *c;

	for (struct smtp_conn *sc = smtp_conn_first(); sc != NULL;
	    sc = sc->next) {
		c = (struct smtpd_client *)sc;
		if (c->auth_id == id && c->wait != SMTPD_WAIT_NONE)
			return c;
	}
	return NULL;
}

static void
smtpd_auth_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	struct smtpd_client *c;
	struct auth_resp r;
	const char *error;
	enum smtpd_wait wait;

	(void)ch;
	(void)ctx;
	if (auth_proto_resp_decode(m, &r, &error) < 0 ||
	    r.type != AUTH_RESP) {
		log_error("auth channel: %s", r.type != AUTH_RESP ?
		    "unexpected record" : error);
		ioloop_stop(smtpd.loop);
		return;
	}
	if (r.id == 0 || (c = smtpd_client_by_auth(r.id)) == NULL)
		return;	/* an ABORT's answer, or the client left */
	wait = c->wait;
	c->wait = SMTPD_WAIT_NONE;
	c->auth_id = 0;
	if (c->sc.dying)
		return;
	if (wait == SMTPD_WAIT_SASL)
		smtpd_sasl_answer(c, &r);
	else
		smtpd_rcpt_answer(c, &r);
	if (c->wait == SMTPD_WAIT_NONE)
		smtp_conn_feed(&c->sc);
}

static void
smtpd_auth_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	log_error("auth channel closed%s%s", error != NULL ? ": " : "",
	    error != NULL ? error : "");
	/* The master starts a new generation when we exit. */
	ioloop_stop(smtpd.loop);
}

static const struct chan_callbacks smtpd_auth_cb = {
	.msg = smtpd_auth_msg,
	.closed = smtpd_auth_closed,
};

/*
 * Start.
 */

/* The mechanisms the auth process offers, cut (at a word) to what the
 * engine takes. */
static int
smtpd_get_mechs(const char **error_r)
{
	char *all, *sp;

	if (role_auth_mechs(&all, error_r) < 0)
		return -1;
	if (strlcpy(smtpd.mechs, all, sizeof(smtpd.mechs)) >=
	    sizeof(smtpd.mechs) && (sp = strrchr(smtpd.mechs, ' ')) != NULL)
		*sp = '\0';
	free(all);
	return 0;
}

/* What needs mail_owner's rights: the queue, relay control, aliases. */
static void
smtpd_open_stores(void)
{
	const char *error;
	unsigned removed = 0;

	if (smtp_queue_open(conf_str("queue_directory"), &smtpd.queue,
	    &error) < 0)
		log_fatal("%s", error);
	if (smtp_queue_cleanup(smtpd.queue, SMTP_QUEUE_CLEANUP_AGE, &removed,
	    &error) < 0)
		log_warning("%s", error);
	else if (removed > 0)
		log_info("queue: removed %u files of interrupted transactions",
		    removed);
	if (smtp_relay_new_conf(&smtpd.relay, &error) < 0)
		log_fatal("%s", error);
	(void)smtpd_aliases();
}

static const struct smtp_conn_ops smtpd_ops = {
	.engine = &smtpd_cb,
	.hello = "EHLO",
	.auth = true,
	.in_rcpt = smtpd_in_rcpt,
	.free = smtpd_client_free,
	.conn_new = smtpd_conn_new,
	.master_msg = smtpd_master_msg,
	.stop = smtpd_stop,
};

int
smtpd_main(bool foreground, bool have_log_fd)
{
	const char *error;

	smtp_conn_role_init("smtpd", foreground, have_log_fd);
	if (role_tls_ctx(&smtpd.tls, &error) < 0)
		log_fatal("%s", error);
	if (smtpd_get_mechs(&error) < 0)
		log_fatal("asking the auth process for mechanisms: %s", error);
	/* Its threads now: no process or thread can start after the drop
	 * (RLIMIT_NPROC 0); they become mail_owner with the process. */
	if (smtp_queue_committer_new(SMTPD_COMMIT_THREADS, &smtpd.committer,
	    &error) < 0)
		log_fatal("%s", error);
	/* As the login processes, but without a chroot: the queue
	 * directory must stay reachable. */
	loftd_drop_privileges("mail_owner", NULL);
	smtpd_open_stores();
	smtpd.loop = smtp_conn_loop_new(&smtpd_ops, smtpd.tls);
	smtpd.auth = chan_new(smtpd.loop, LOFTD_FD_AUTH, &smtpd_auth_cb, NULL);
	smtpd.commit_io = io_add(smtpd.loop,
	    smtp_queue_committer_fd(smtpd.committer), IO_READ,
	    smtpd_commit_ready, NULL);
	smtp_conn_loop_run();
	chan_free(&smtpd.auth);
	tls_ctx_free(&smtpd.tls);
	smtp_alias_close(&smtpd.aliases);
	smtp_relay_free(&smtpd.relay);
	smtp_queue_close(&smtpd.queue);
	smtp_conn_loop_free();
	return 0;
}
