/*
 * qmgr.c: the queue manager of loftd. One qmgr process takes mail out of
 * queue_directory: it finds messages by a scan at start, by the master's
 * LOFTD_QUEUED (relayed from the smtpd process that committed one), by a
 * timer for deferred ones (smtp_queue_next_attempt) and by LOFTD_FLUSH
 * (SIGUSR1 to the master). For each recipient due it checks for a mail
 * forwarding loop, expands aliases (with recipient_delimiter), and asks
 * the master for one local delivery per user (LOFTD_DELIVER: queue ID,
 * user, address, sender and a read-only descriptor of the content); the
 * master looks the user up and has the mail process of that user's owner
 * store the message. The results are recorded in the envelope
 * (smtp_queue_rcpt_result, smtp_queue_save), and a message whose every
 * recipient is final (delivered or failed) leaves the queue. always_bcc
 * is added as a recipient at the first run over a message.
 *
 * Remote recipients (and remote alias targets) go to qmgr_smtp.c, which
 * sends them by SMTP and reports each outcome back here. Once every
 * recipient is final, a message with failed ones gets its bounce
 * (smtp_bounce) before it is removed. Alias targets that are commands
 * or files go to the master as LOFTD_DELIVER_LOCAL (localcmd.h), which
 * runs them as Postfix's local(8) would, and are answered as a delivery.
 *
 * Crash-safety: the envelope is saved after the deliveries of a run have
 * answered; a qmgr killed in between delivers those recipients again
 * (a duplicate, never a loss), the window of doc/design.md. Users of a
 * recipient that an alias expands to, delivered in an earlier run of this
 * process while another part of the expansion was deferred, are not
 * delivered again (kept in memory only: after a restart they may be).
 *
 * SECURITY: runs as mail_owner (it owns the queue), no new privileges, not
 * dumpable, no children; it can write into no mailbox: a delivery is a
 * request the master checks. It trusts the envelopes as smtp_queue's
 * strict parser reads them, and reads of a message's content only its
 * header (bounded), to count Received: lines and compare Delivered-To:
 * values. The alias maps are the administrator's; include files are read
 * as smtp_alias allows. A command or file target is only named to the
 * master, with the alias it came from: the master expands that alias
 * again and runs what it finds there, not what qmgr says.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp_addr.h"
#include "smtp_alias.h"
#include "smtp_queue.h"
#include "smtp_relay.h"
#include "smtp_pickup.h"
#include "smtp_bounce.h"
#include "chan.h"
#include "loftd.h"
#include "localcmd.h"
#include "qmgr_smtp.h"

/* Messages delivered at once (each locked, its content open). */
#define QMGR_ACTIVE_MAX		20
/* Delivery requests at the master at once (below LOFTD_DELIVER_MAX, so
 * the master never refuses one for being busy). */
#define QMGR_INFLIGHT_MAX	32
/* Seconds before a message another process holds is tried again. */
#define QMGR_LOCKED_RETRY	10
/* Seconds before a message whose content could not be opened is tried
 * again. */
#define QMGR_ERROR_RETRY	60
/* Header bytes read for loop detection; beyond it the rest counts as
 * body (Postfix's header_size_limit is 102400). */
#define QMGR_HEADER_MAX		(1024 * 1024)
/* Addresses in a local domain that aliases expand to are expanded again,
 * at most this deep (a deeper chain is taken for a loop). */
#define QMGR_ALIAS_DEPTH	5
/* Delivered-To: values remembered per message. */
#define QMGR_DT_MAX		1000
/* An address as the log and headers take it. */
#define QMGR_ADDR_BUF		(SMTP_QUEUE_ADDR_MAX + SMTP_DOMAIN_MAX + 2)

/* A delivery request: one local user for one recipient of a message. */
struct qmgr_req {
	struct qmgr_req *next;		/* in the send queue or in flight */
	struct qmgr_msg *msg;
	unsigned rcpt;			/* index in msg->env->rcpts */
	uint32_t id;			/* 0 until sent */
	char *user;			/* owned: the local name */
	char *to;			/* owned: the address, for the log */
	char *sender;			/* owned: Return-Path */
	bool alias_unknown;		/* the alias maps could not be read */
	/* An alias's command or file (LOFTD_DELIVER_LOCAL) rather than a
	 * user: user is then "|command" or "/path" (the key of m->done). */
	enum smtp_alias_kind kind;	/* SMTP_ALIAS_ADDRESS: a user */
	char *alias;			/* owned: the name expanded */
	char *target;			/* owned: command line or path */
};

/* What a run over a message made of one recipient. Outcomes rank OK <
 * PERM < TEMP: any temporary part defers the recipient (a retry may
 * deliver it), else any permanent part fails it. */
struct qmgr_rcpt_run {
	bool tried;
	unsigned pending;		/* requests not answered yet */
	int rank;			/* -1: no part yet */
	char diag[SMTP_QUEUE_DIAG_MAX + 1];	/* "dsn text" of the rank */
};

struct qmgr_msg {
	struct qmgr_msg *prev, *next;	/* qmgr.msgs */
	char id[SMTP_QUEUE_ID_MAX];
	time_t due;			/* run it then (0: now) */
	bool flush;			/* deferred recipients are due now */
	bool active;
	/* While active: */
	struct smtp_queue_env *env;	/* owned, locked */
	int fd;				/* owned: the content, read-only */
	struct qmgr_rcpt_run *runs;	/* owned, one per recipient */
	unsigned pending;
	unsigned hops;			/* Received: lines */
	char **dt;			/* owned: Delivered-To:, lower case */
	size_t ndt;
	struct qmgr_smtp_msg smtp;	/* its remote recipients, while
					   active */
	/* Across runs: "INDEX USER" of what was delivered (see the top). */
	char **done;			/* owned */
	size_t ndone;
};

struct qmgr {
	struct ioloop *loop;
	struct chan *master;		/* owned */
	struct smtp_queue *queue;	/* owned */
	struct smtp_alias_map *aliases;	/* owned; NULL if unreadable */
	struct smtp_relay *relay;	/* owned: mydestination */
	struct smtp_queue_sched sched;
	struct qmgr_msg *msgs;		/* owned list */
	size_t nactive;
	struct qmgr_req *sendq;		/* owned FIFO, not sent yet */
	struct qmgr_req **sendq_tail;
	struct qmgr_req *inflight;	/* owned, sent */
	size_t ninflight;
	uint32_t req_seq;
	struct timeout *wake_to;	/* owned: the next deferred one */
	struct timeout *kick_to;	/* owned: schedule soon */
	bool retired;
	char hostname[SMTP_DOMAIN_MAX + 1];
	const char *delim;		/* recipient_delimiter */
	const char *bcc;		/* always_bcc, or "" */
	unsigned hopcount_limit;
	/* Local submission (smtp_pickup): */
	char maildrop[PATH_MAX];
	int pickup_fd;			/* owned: public/pickup, or -1 */
	struct io *pickup_io;		/* owned */
	struct timeout *pickup_poll;	/* owned: every QMGR_PICKUP_POLL */
	struct timeout *pickup_more;	/* owned: a full batch was taken */
};

static struct qmgr qmgr;
static struct ipc_msg qmgr_out;

static void qmgr_kick(void);
static void qmgr_finish(struct qmgr_msg *m);

/*
 * Known messages.
 */

static struct qmgr_msg *
qmgr_msg_find(const char *id)
{
	for (struct qmgr_msg *m = qmgr.msgs; m != NULL; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

/* Note that message id is due at due (a flush makes its deferred
 * recipients due too). */
static void
qmgr_msg_note(const char *id, time_t due, bool flush)
{
	struct qmgr_msg *m = qmgr_msg_find(id);

	if (m == NULL) {
		m = xcalloc(1, sizeof(*m));
		strlcpy(m->id, id, sizeof(m->id));
		m->fd = -1;
		m->due = due;
		m->next = qmgr.msgs;
		if (m->next != NULL)
			m->next->prev = m;
		qmgr.msgs = m;
	} else if (due < m->due)
		m->due = due;
	m->flush = m->flush || flush;
}

static void
qmgr_strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
qmgr_msg_forget(struct qmgr_msg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		qmgr.msgs = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	smtp_queue_env_free(&m->env);
	if (m->fd >= 0)
		close(m->fd);
	free(m->runs);
	qmgr_strings_free(m->dt, m->ndt);
	qmgr_strings_free(m->done, m->ndone);
	free(m);
}

/* The whole queue: every message on hold or not (held ones are skipped
 * at their run), due as its envelope says, or now with flush. */
static void
qmgr_scan(bool flush)
{
	struct smtp_queue_iter *it;
	struct smtp_queue_env *env;
	const char *error;
	time_t next;
	unsigned n = 0;
	int r;

	if (smtp_queue_iter_new(qmgr.queue, &it, &error) < 0) {
		log_error("%s", error);
		return;
	}
	while ((r = smtp_queue_iter_next(it, &env, &error)) != 0) {
		if (r < 0) {
			log_error("%s", error);
			continue;
		}
		if (!env->hold) {
			/* All final already: a removal a crash cut short;
			 * the run removes it. */
			if (!smtp_queue_env_due(env, &next))
				next = 0;
			qmgr_msg_note(env->id, flush ? 0 : next, flush);
			n++;
		}
		smtp_queue_env_free(&env);
	}
	smtp_queue_iter_free(&it);
	if (flush)
		qmgr_smtp_flush();
	if (n > 0)
		log_info("queue %s: %u message%s", flush ? "flush" : "scan", n,
		    n == 1 ? "" : "s");
	qmgr_kick();
}

/*
 * The header of a message: Received: lines and Delivered-To: values.
 */

static size_t
qmgr_field_len(const unsigned char *p, size_t len)
{
	size_t i = 0;
	const unsigned char *nl;

	for (;;) {
		if ((nl = memchr(p + i, '\n', len - i)) == NULL)
			return len;
		i = (size_t)(nl - p) + 1;
		if (i >= len || (p[i] != ' ' && p[i] != '\t'))
			return i;
	}
}

static bool
qmgr_field_is(const unsigned char *p, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && strncasecmp((const char *)p, name, n) == 0 &&
	    p[n] == ':';
}

/* A Delivered-To: value as an address: blanks, folding and <> around it
 * gone, lower case. */
static char *
qmgr_dt_value(const unsigned char *p, size_t len)
{
	const unsigned char *v = memchr(p, ':', len), *end = p + len;
	char *out, *o;

	for (v++; v < end && (*v == ' ' || *v == '\t' || *v == '<' ||
	    *v == '\r' || *v == '\n'); v++)
		;
	while (end > v && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t' || end[-1] == '>'))
		end--;
	o = out = xmalloc((size_t)(end - v) + 1);
	for (; v < end; v++)
		*o++ = (char)(*v >= 'A' && *v <= 'Z' ? *v - 'A' + 'a' : *v);
	*o = '\0';
	return out;
}

static void
qmgr_header_parse(struct qmgr_msg *m, const unsigned char *p, size_t len)
{
	size_t i, flen;

	for (i = 0; i < len; i += flen) {
		if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len &&
		    p[i + 1] == '\n'))
			break;
		flen = qmgr_field_len(p + i, len - i);
		if (qmgr_field_is(p + i, flen, "Received"))
			m->hops++;
		else if (qmgr_field_is(p + i, flen, "Delivered-To") &&
		    m->ndt < QMGR_DT_MAX) {
			m->dt = xreallocarray(m->dt, m->ndt + 1,
			    sizeof(*m->dt));
			m->dt[m->ndt++] = qmgr_dt_value(p + i, flen);
		}
	}
}

/* Whether the header's end (an empty line) is in b; the bytes before
 * from were looked at already (but for the two that may begin it). */
static bool
qmgr_header_done(const struct buf *b, size_t from)
{
	from = from >= 2 ? from - 2 : 0;
	if (b->data == NULL || b->len <= from)
		return false;
	return memmem(b->data + from, b->len - from, "\n\n", 2) != NULL ||
	    memmem(b->data + from, b->len - from, "\n\r\n", 3) != NULL;
}

/* Read the header (up to the empty line, at most QMGR_HEADER_MAX). */
static int
qmgr_header_read(struct qmgr_msg *m, const char **error_r)
{
	static char errbuf[128];
	struct buf b;
	unsigned char chunk[16384];
	ssize_t n;

	buf_init(&b, QMGR_HEADER_MAX);
	for (;;) {
		n = pread(m->fd, chunk, sizeof(chunk), (off_t)b.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(errbuf, sizeof(errbuf), "%s: reading the "
			    "content: %s", m->id, strerror(errno));
			*error_r = errbuf;
			buf_free(&b);
			return -1;
		}
		if (n == 0 || buf_append(&b, chunk, (size_t)n) < 0)
			break;
		if (qmgr_header_done(&b, b.len - (size_t)n))
			break;
	}
	if (b.len > 0)
		qmgr_header_parse(m, b.data, b.len);
	buf_free(&b);
	return 0;
}

/*
 * Outcomes.
 */

static double
qmgr_delay(const struct smtp_queue_env *env)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (double)(now.tv_sec - env->arrival) +
	    ((double)now.tv_usec - (double)env->arrival_usec) / 1e6;
}

static const char *
qmgr_status_word(enum loftd_dstatus status)
{
	return status == LOFTD_DELIVER_OK ? "sent" :
	    status == LOFTD_DELIVER_TEMP ? "deferred" : "bounced";
}

/* One part of recipient i's outcome: logged as Postfix logs a delivery,
 * and ranked into the recipient's run. to is what was delivered to (an
 * alias's target, or the recipient), relay "local", "none" or
 * "host[addr]:port"; delays "a/b/c/d" or NULL. */
static void
qmgr_outcome(struct qmgr_msg *m, unsigned i, const char *to,
    const char *relay, const char *delays, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	struct qmgr_rcpt_run *run = &m->runs[i];
	const char *rcpt = m->env->rcpts[i].addr;
	char eto[QMGR_ADDR_BUF * 4], eorig[QMGR_ADDR_BUF * 4], etext[1024];
	char orig[sizeof(eorig) + 16] = "", erelay[1024], edelays[96] = "";
	int rank = status == LOFTD_DELIVER_OK ? 0 :
	    status == LOFTD_DELIVER_PERM ? 1 : 2;

	log_escape(text, etext, sizeof(etext));
	log_escape(to, eto, sizeof(eto));
	if (strcasecmp(to, rcpt) != 0)
		snprintf(orig, sizeof(orig), ", orig_to=<%s>",
		    log_escape(rcpt, eorig, sizeof(eorig)));
	if (delays != NULL)
		snprintf(edelays, sizeof(edelays), ", delays=%s", delays);
	log_info("%s: to=<%s>%s, relay=%s, delay=%.2f%s, dsn=%s, status=%s "
	    "(%s)", m->id, eto, orig, log_escape(relay, erelay,
	    sizeof(erelay)), qmgr_delay(m->env), edelays, dsn,
	    qmgr_status_word(status), etext);
	if (rank > run->rank) {
		run->rank = rank;
		snprintf(run->diag, sizeof(run->diag), "%s %s", dsn, text);
	}
}

static void
qmgr_part(struct qmgr_msg *m, unsigned i, const char *to, const char *relay,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	qmgr_outcome(m, i, to, relay, NULL, status, dsn, text);
}

/* qmgr_smtp's report of one remote part (struct qmgr_smtp_msg). */
static void
qmgr_smtp_part(void *ctx, unsigned i, const char *to, const char *relay,
    const char *delays, enum loftd_dstatus status, const char *dsn,
    const char *text)
{
	qmgr_outcome(ctx, i, to, relay, delays, status, dsn, text);
}

/* qmgr_smtp's end of one job (counted in m->pending by the run). */
static void
qmgr_smtp_job_done(void *ctx)
{
	struct qmgr_msg *m = ctx;

	if (--m->pending == 0)
		qmgr_finish(m);
}

static void
qmgr_req_free(struct qmgr_req *r)
{
	free(r->user);
	free(r->to);
	free(r->sender);
	free(r->alias);
	free(r->target);
	free(r);
}

static bool
qmgr_done_has(const struct qmgr_msg *m, const char *key)
{
	for (size_t i = 0; i < m->ndone; i++)
		if (strcmp(m->done[i], key) == 0)
			return true;
	return false;
}

/* A request's answer (from the master, or made up when it could not be
 * sent). Frees r. */
static void
qmgr_req_result(struct qmgr_req *r, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	struct qmgr_msg *m = r->msg;
	char *key;

	if (status == LOFTD_DELIVER_PERM && strcmp(dsn, "5.1.1") == 0 &&
	    r->alias_unknown) {
		/* It may be an alias we could not read: not final. */
		status = LOFTD_DELIVER_TEMP;
		dsn = "4.3.0";
		text = "unknown user, and alias_maps cannot be read";
	}
	qmgr_part(m, r->rcpt, r->to, "local", status, dsn, text);
	if (status == LOFTD_DELIVER_OK) {
		key = xasprintf("%u %s", r->rcpt, r->user);
		m->done = xreallocarray(m->done, m->ndone + 1,
		    sizeof(*m->done));
		m->done[m->ndone++] = key;
	}
	m->runs[r->rcpt].pending--;
	qmgr_req_free(r);
	if (--m->pending == 0)
		qmgr_finish(m);
}

/*
 * Sending requests to the master.
 */

/* LOFTD_DELIVER_LOCAL for r (localcmd.h): rcpt is the address the alias
 * was found for (r->to), orig_rcpt the message's recipient. */
static void
qmgr_local_record(const struct qmgr_req *r)
{
	ipc_msg_init(&qmgr_out, LOFTD_DELIVER_LOCAL, 0);
	ipc_add_u32(&qmgr_out, r->id);
	ipc_add_str(&qmgr_out, r->msg->id);
	ipc_add_str(&qmgr_out, r->alias);
	ipc_add_u32(&qmgr_out, (uint32_t)r->kind);
	ipc_add_str(&qmgr_out, r->target);
	ipc_add_str(&qmgr_out, r->to);
	ipc_add_str(&qmgr_out, r->msg->env->rcpts[r->rcpt].addr);
	ipc_add_str(&qmgr_out, r->sender);
}

/* Take the request *rp out of the send queue. */
static struct qmgr_req *
qmgr_sendq_take(struct qmgr_req **rp)
{
	struct qmgr_req *r = *rp;

	if ((*rp = r->next) == NULL)
		qmgr.sendq_tail = rp;
	r->next = NULL;
	return r;
}

/* Requests sent: in flight until answered. */
static void
qmgr_inflight_add(struct qmgr_req *r)
{
	r->next = qmgr.inflight;
	qmgr.inflight = r;
	qmgr.ninflight++;
}

/*
 * A batch: the first request waiting for a user (r, taken out of the
 * send queue already), and those waiting for the same user behind it,
 * in order, at most LOFTD_BATCH_MAX of them, LOFTD_BATCH_BYTES of
 * content (one larger message goes alone) and what QMGR_INFLIGHT_MAX
 * leaves. Whatever is waiting now is taken: nothing waits for more.
 */
static size_t
qmgr_batch_collect(struct qmgr_req *r, struct qmgr_req **b)
{
	struct qmgr_req **rp = &qmgr.sendq;
	uint64_t bytes = r->msg->env->size;
	size_t n = 0;

	b[n++] = r;
	while (*rp != NULL && n < LOFTD_BATCH_MAX &&
	    qmgr.ninflight + n < QMGR_INFLIGHT_MAX) {
		if ((*rp)->kind != SMTP_ALIAS_ADDRESS ||
		    strcmp((*rp)->user, r->user) != 0 ||
		    bytes + (*rp)->msg->env->size > LOFTD_BATCH_BYTES) {
			rp = &(*rp)->next;
			continue;
		}
		bytes += (*rp)->msg->env->size;
		b[n++] = qmgr_sendq_take(rp);
	}
	return n;
}

/* Send the n requests of b as one LOFTD_DELIVER_BATCH (loftd.h), each
 * with its own descriptor; a request that cannot go is answered as a
 * temporary failure. */
static void
qmgr_batch_send(struct qmgr_req **b, size_t n)
{
	int fd[LOFTD_BATCH_MAX];
	size_t k = 0, left;

	for (size_t i = 0; i < n; i++) {
		if ((fd[i] = dup(b[i]->msg->fd)) < 0) {
			qmgr_req_result(b[i], LOFTD_DELIVER_TEMP, "4.3.0",
			    "out of descriptors");
			b[i] = NULL;
			continue;
		}
		k++;
	}
	left = k;
	for (size_t i = 0; i < n; i++) {
		struct qmgr_req *r = b[i];

		if (r == NULL)
			continue;
		if (++qmgr.req_seq == 0)
			qmgr.req_seq = 1;
		r->id = qmgr.req_seq;
		ipc_msg_init(&qmgr_out, LOFTD_DELIVER_BATCH, 0);
		ipc_add_u32(&qmgr_out, r->id);
		ipc_add_str(&qmgr_out, r->msg->id);
		ipc_add_str(&qmgr_out, r->user);
		ipc_add_str(&qmgr_out, r->msg->env->rcpts[r->rcpt].addr);
		ipc_add_str(&qmgr_out, r->sender);
		ipc_add_u32(&qmgr_out, (uint32_t)--left);
		ipc_msg_set_fd(&qmgr_out, fd[i]);
		if (chan_send(qmgr.master, &qmgr_out) < 0) {
			/* The channel failed: the rest cannot go either. */
			for (size_t j = i; j < n; j++) {
				if (b[j] == NULL)
					continue;
				if (j > i)
					close(fd[j]);
				qmgr_req_result(b[j], LOFTD_DELIVER_TEMP,
				    "4.3.0", "the master cannot be reached");
			}
			return;
		}
		qmgr_inflight_add(r);
	}
}

static void
qmgr_dispatch(void)
{
	struct qmgr_req *r, *b[LOFTD_BATCH_MAX];
	size_t n;
	int fd;

	while ((r = qmgr.sendq) != NULL && qmgr.ninflight < QMGR_INFLIGHT_MAX) {
		r = qmgr_sendq_take(&qmgr.sendq);
		if (r->kind == SMTP_ALIAS_ADDRESS &&
		    (n = qmgr_batch_collect(r, b)) > 1) {
			qmgr_batch_send(b, n);
			continue;
		}
		if ((fd = dup(r->msg->fd)) < 0) {
			qmgr_req_result(r, LOFTD_DELIVER_TEMP, "4.3.0",
			    "out of descriptors");
			continue;
		}
		if (++qmgr.req_seq == 0)
			qmgr.req_seq = 1;
		r->id = qmgr.req_seq;
		if (r->kind != SMTP_ALIAS_ADDRESS)
			qmgr_local_record(r);
		else {
			ipc_msg_init(&qmgr_out, LOFTD_DELIVER, 0);
			ipc_add_u32(&qmgr_out, r->id);
			ipc_add_str(&qmgr_out, r->msg->id);
			ipc_add_str(&qmgr_out, r->user);
			ipc_add_str(&qmgr_out,
			    r->msg->env->rcpts[r->rcpt].addr);
			ipc_add_str(&qmgr_out, r->sender);
		}
		ipc_msg_set_fd(&qmgr_out, fd);
		if (chan_send(qmgr.master, &qmgr_out) < 0) {
			qmgr_req_result(r, LOFTD_DELIVER_TEMP, "4.3.0",
			    "the master cannot be reached");
			continue;
		}
		qmgr_inflight_add(r);
	}
}

/* Queue a delivery of recipient i to the local user (for the log: to);
 * the request is returned for a command or file target to complete,
 * NULL when it was delivered in an earlier run. */
static struct qmgr_req *
qmgr_request(struct qmgr_msg *m, unsigned i, const char *user,
    const char *to, const char *sender, bool alias_unknown)
{
	struct qmgr_req *r;
	char *key = xasprintf("%u %s", i, user);
	bool done = qmgr_done_has(m, key);

	free(key);
	if (done)
		return NULL;	/* delivered in an earlier run */
	r = xcalloc(1, sizeof(*r));
	r->msg = m;
	r->rcpt = i;
	r->user = xstrdup(user);
	r->to = xstrdup(to);
	r->sender = xstrdup(sender);
	r->alias_unknown = alias_unknown;
	*qmgr.sendq_tail = r;
	qmgr.sendq_tail = &r->next;
	m->runs[i].pending++;
	m->pending++;
	return r;
}

/* Queue the delivery of recipient i to the command or file t, a target
 * of alias (found for the address to). */
static void
qmgr_request_target(struct qmgr_msg *m, unsigned i,
    const struct smtp_alias_target *t, const char *alias, const char *to,
    const char *sender)
{
	struct qmgr_req *r;
	char *key = t->kind == SMTP_ALIAS_COMMAND ?
	    xasprintf("|%s", t->value) : xstrdup(t->value);

	if ((r = qmgr_request(m, i, key, to, sender, false)) != NULL) {
		r->kind = t->kind;
		r->alias = xstrdup(alias);
		r->target = xstrdup(t->value);
	}
	free(key);
}

/*
 * Recipients: loops, aliases, local users.
 */

/* The alias maps, opened again if they could not be before, and
 * refreshed (newaliases replaces the file). NULL if unreadable. */
static struct smtp_alias_map *
qmgr_aliases(void)
{
	const char *error;

	if (qmgr.aliases == NULL &&
	    smtp_alias_open_conf(&qmgr.aliases, &error) < 0) {
		log_warning("alias_maps: %s (recipients that are no user are "
		    "deferred)", error);
		qmgr.aliases = NULL;
	} else if (qmgr.aliases != NULL &&
	    smtp_alias_refresh(qmgr.aliases, &error) < 0)
		log_warning("alias_maps: %s", error);
	return qmgr.aliases;
}

static void qmgr_expand(struct qmgr_msg *m, unsigned i, const char *local,
    const char *sender, unsigned depth);

/* Recipient i goes to the remote address to (domain as parsed). */
static void
qmgr_remote(struct qmgr_msg *m, unsigned i, const char *to,
    const char *domain, const char *sender)
{
	char lower[SMTP_DOMAIN_MAX + 1];
	size_t k;

	for (k = 0; domain[k] != '\0' && k + 1 < sizeof(lower); k++)
		lower[k] = (char)(domain[k] >= 'A' && domain[k] <= 'Z' ?
		    domain[k] - 'A' + 'a' : domain[k]);
	lower[k] = '\0';
	qmgr_smtp_add(&m->smtp, i, to, lower, sender);
}

/* One target of alias (the local part of the address alias_to). */
static void
qmgr_target(struct qmgr_msg *m, unsigned i,
    const struct smtp_alias_target *t, const char *alias,
    const char *alias_to, const char *sender, unsigned depth)
{
	struct smtp_path p;
	char to[QMGR_ADDR_BUF], path[SMTP_QUEUE_ADDR_MAX + 3];
	const char *error;

	switch (t->kind) {
	case SMTP_ALIAS_ADDRESS:
		if (strchr(t->value, '@') == NULL) {
			snprintf(to, sizeof(to), "%s@%s", t->value,
			    qmgr.hostname);
			(void)qmgr_request(m, i, t->value, to, sender, false);
			return;
		}
		snprintf(path, sizeof(path), "<%s>", t->value);
		if (smtp_path_parse(path, strlen(path), false, true, &p,
		    &error) < 0) {
			qmgr_part(m, i, t->value, "none", LOFTD_DELIVER_PERM,
			    "5.1.3", error);
			return;
		}
		if (smtp_relay_is_local(qmgr.relay, p.domain)) {
			/* Postfix queues it again; we expand it at once. */
			if (depth + 1 >= QMGR_ALIAS_DEPTH)
				qmgr_part(m, i, t->value, "none",
				    LOFTD_DELIVER_PERM, "5.4.6", "mail "
				    "forwarding loop: aliases nested too "
				    "deep");
			else
				qmgr_expand(m, i, p.local, sender, depth + 1);
			return;
		}
		qmgr_remote(m, i, t->value, p.domain, sender);
		return;
	case SMTP_ALIAS_COMMAND:
	case SMTP_ALIAS_FILE:
		qmgr_request_target(m, i, t, alias, alias_to, sender);
		return;
	default:
		qmgr_part(m, i, t->value, "none", t->temporary ?
		    LOFTD_DELIVER_TEMP : LOFTD_DELIVER_PERM, t->temporary ?
		    "4.3.0" : "5.3.0", t->reason != NULL ? t->reason :
		    "alias error");
	}
}

/* Deliver recipient i, whose local part is local, through the aliases
 * (depth: how many local addresses of aliases led here). */
static void
qmgr_expand(struct qmgr_msg *m, unsigned i, const char *local,
    const char *sender, unsigned depth)
{
	struct smtp_alias_map *map = qmgr_aliases();
	struct smtp_alias_target *targets;
	const char *error;
	char to[QMGR_ADDR_BUF];
	size_t count;
	int ret = 0;

	if (map != NULL && (ret = smtp_alias_expand(map, local, qmgr.delim,
	    qmgr.hostname, &targets, &count, &error)) < 0) {
		qmgr_part(m, i, m->env->rcpts[i].addr, "none",
		    LOFTD_DELIVER_TEMP, "4.3.0", error);
		return;
	}
	if (depth == 0)
		strlcpy(to, m->env->rcpts[i].addr, sizeof(to));
	else
		snprintf(to, sizeof(to), "%s@%s", local, qmgr.hostname);
	if (ret == 0) {
		(void)qmgr_request(m, i, local, to, sender, map == NULL);
		return;
	}
	for (size_t k = 0; k < count; k++)
		qmgr_target(m, i, &targets[k], local, to,
		    targets[k].owner != NULL ? targets[k].owner : sender,
		    depth);
	smtp_alias_targets_free(targets, count);
}

static bool
qmgr_dt_has(const struct qmgr_msg *m, const char *addr)
{
	for (size_t k = 0; k < m->ndt; k++)
		if (strcasecmp(m->dt[k], addr) == 0)
			return true;
	return false;
}

/* Start recipient i: a loop, a remote address, or local delivery. */
static void
qmgr_rcpt_start(struct qmgr_msg *m, unsigned i)
{
	const char *addr = m->env->rcpts[i].addr, *error;
	char path[SMTP_QUEUE_ADDR_MAX + 3], text[128];
	struct smtp_path p;
	bool remote;

	m->runs[i].tried = true;
	snprintf(path, sizeof(path), "<%s>", addr);
	if (smtp_path_parse(path, strlen(path), false, true, &p,
	    &error) < 0) {
		qmgr_part(m, i, addr, "none", LOFTD_DELIVER_PERM, "5.1.3",
		    error);
		return;
	}
	remote = p.domain[0] != '\0' && !smtp_relay_is_local(qmgr.relay,
	    p.domain);
	if (m->hops > qmgr.hopcount_limit) {
		snprintf(text, sizeof(text), "mail forwarding loop: %u "
		    "Received: headers, hopcount_limit is %u", m->hops,
		    qmgr.hopcount_limit);
		qmgr_part(m, i, addr, remote ? "none" : "local",
		    LOFTD_DELIVER_PERM, "5.4.6", text);
		return;
	}
	if (remote) {
		qmgr_remote(m, i, addr, p.domain, m->env->sender);
		return;
	}
	if (qmgr_dt_has(m, addr)) {
		qmgr_part(m, i, addr, "local", LOFTD_DELIVER_PERM, "5.4.6",
		    "mail forwarding loop: Delivered-To: is this address "
		    "already");
		return;
	}
	qmgr_expand(m, i, p.local, m->env->sender, 0);
}

/*
 * Runs over a message.
 */

/* always_bcc, once per message: at its first run, before anything of it
 * was delivered. struct smtp_queue_env offers no call to add a recipient
 * after the commit; its array is its own, and smtp_queue_env_free frees
 * each entry's strings, so one more entry made the same way is freed the
 * same way, and smtp_queue_save writes it. (Postfix adds always_bcc in
 * cleanup(8), as the message enters the queue.) */
static void
qmgr_add_bcc(struct smtp_queue_env *env)
{
	struct smtp_queue_rcpt *r;
	char path[SMTP_QUEUE_ADDR_MAX + 3];
	struct smtp_path p;
	const char *error;

	if (qmgr.bcc[0] == '\0' || env->attempts != 0)
		return;
	for (unsigned i = 0; i < env->rcpt_count; i++)
		if (strcasecmp(env->rcpts[i].addr, qmgr.bcc) == 0)
			return;
	if (strlen(qmgr.bcc) > SMTP_QUEUE_ADDR_MAX || snprintf(path,
	    sizeof(path), "<%s>", qmgr.bcc) < 0 || smtp_path_parse(path,
	    strlen(path), false, true, &p, &error) < 0) {
		log_warning("always_bcc %s: not an address", qmgr.bcc);
		return;
	}
	env->rcpts = xreallocarray(env->rcpts, env->rcpt_count + 1,
	    sizeof(*env->rcpts));
	r = &env->rcpts[env->rcpt_count++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(qmgr.bcc);
	r->state = SMTP_QUEUE_PENDING;
}

/* Load and lock message m; 1 when it is to be run, else 0 (m may be
 * gone). */
static int
qmgr_load(struct qmgr_msg *m, time_t now)
{
	const char *error;
	uint64_t size;
	int r;

	r = smtp_queue_load(qmgr.queue, m->id, SMTP_QUEUE_LOCK, &m->env,
	    &error);
	if (r == SMTP_QUEUE_LOCKED) {
		m->due = now + QMGR_LOCKED_RETRY;
		return 0;
	}
	if (r <= 0 || m->env->hold) {
		if (r < 0)
			log_error("%s", error);
		qmgr_msg_forget(m);
		return 0;
	}
	if (smtp_queue_open_content(qmgr.queue, m->id, &m->fd, &size,
	    &error) != 1) {
		log_error("%s: content: %s", m->id, error);
		smtp_queue_env_free(&m->env);
		m->due = now + QMGR_ERROR_RETRY;
		return 0;
	}
	return 1;
}

static void
qmgr_run(struct qmgr_msg *m)
{
	struct smtp_queue_rcpt *r;
	time_t now = time(NULL);
	const char *error;
	bool flush = m->flush;

	if (qmgr_load(m, now) == 0)
		return;
	m->active = true;
	m->flush = false;
	qmgr.nactive++;
	qmgr_add_bcc(m->env);
	if (m->env->attempts < UINT_MAX)
		m->env->attempts++;
	m->hops = 0;
	if (qmgr_header_read(m, &error) < 0)
		log_error("%s", error);
	m->runs = xcalloc(m->env->rcpt_count, sizeof(*m->runs));
	memset(&m->smtp, 0, sizeof(m->smtp));
	m->smtp.id = m->id;
	m->smtp.env = m->env;
	m->smtp.fd = m->fd;
	gettimeofday(&m->smtp.run_start, NULL);
	m->smtp.part = qmgr_smtp_part;
	m->smtp.job_done = qmgr_smtp_job_done;
	m->smtp.ctx = m;
	/* Counts as one pending until every recipient is started, so
	 * that no answer finishes the run half-way. */
	m->pending = 1;
	for (unsigned i = 0; i < m->env->rcpt_count; i++) {
		r = &m->env->rcpts[i];
		m->runs[i].rank = -1;
		if (r->state == SMTP_QUEUE_PENDING ||
		    (r->state == SMTP_QUEUE_DEFERRED &&
		    (flush || r->next_attempt <= now)))
			qmgr_rcpt_start(m, i);
	}
	m->pending += qmgr_smtp_submit(&m->smtp);
	/* Its requests are sent by qmgr_schedule once every message due
	 * has run, so that those for the same user go as one batch. */
	if (--m->pending == 0)
		qmgr_finish(m);
}

/* The state a run leaves recipient i in, recorded into the envelope. */
static void
qmgr_rcpt_record(struct qmgr_msg *m, unsigned i, time_t now)
{
	struct qmgr_rcpt_run *run = &m->runs[i];
	struct smtp_queue_rcpt *r = &m->env->rcpts[i];
	enum smtp_queue_state state;
	time_t next = 0;
	char eaddr[QMGR_ADDR_BUF * 4], ediag[1024];

	if (run->rank <= 0) {
		/* Every part delivered (an empty include file: none). */
		state = SMTP_QUEUE_DELIVERED;
		if (run->rank < 0)
			strlcpy(run->diag, "2.0.0 alias expanded to no "
			    "recipient", sizeof(run->diag));
	} else if (run->rank == 1)
		state = SMTP_QUEUE_FAILED;
	else if (smtp_queue_next_attempt(&qmgr.sched, m->env->arrival,
	    r->attempts + 1, m->env->bounce, now, &next) == 1)
		state = SMTP_QUEUE_DEFERRED;
	else {
		state = SMTP_QUEUE_FAILED;
		log_info("%s: to=<%s>, relay=none, delay=%.2f, status=expired "
		    "(%s)", m->id, log_escape(r->addr, eaddr, sizeof(eaddr)),
		    qmgr_delay(m->env), log_escape(run->diag, ediag,
		    sizeof(ediag)));
	}
	smtp_queue_rcpt_result(m->env, i, state, now, next,
	    (const unsigned char *)run->diag, strlen(run->diag));
}

/* The bounce to the sender about the recipients that failed and were not
 * reported yet (smtp_bounce decides whether one is due: none for a
 * bounce, none without such a recipient), sent as soon as they fail, as
 * Postfix does, not when the last deferred one is done; then they are
 * marked BOUNCED, so that the envelope saved next keeps them from being
 * reported again. 0 done or none due, -1 (they stay FAILED: tried again
 * at the next run). A crash between the bounce's commit and the save of
 * the envelope reports them twice, never not at all. */
static int
qmgr_bounce(struct qmgr_msg *m)
{
	char id[SMTP_QUEUE_ID_MAX];
	const char *error;
	int r;

	r = smtp_bounce_enqueue(qmgr.queue, m->env, m->fd, qmgr.hostname,
	    "postmaster", id, sizeof(id), &error);
	if (r < 0) {
		log_error("%s: bounce not sent: %s", m->id, error);
		return -1;
	}
	if (r == 0) {
		log_info("%s: sender non-delivery notification: %s", m->id,
		    id);
		qmgr_msg_note(id, 0, false);
	}
	for (unsigned i = 0; i < m->env->rcpt_count; i++)
		smtp_queue_rcpt_reported(m->env, i);
	return 0;
}

/* Every answer of the run is in: record, save, and remove the message
 * if nothing is left to deliver (after its bounce), or set when it is
 * due again. */
static void
qmgr_finish(struct qmgr_msg *m)
{
	time_t now = time(NULL), next = 0;
	const char *error;
	bool due, unreported;

	for (unsigned i = 0; i < m->env->rcpt_count; i++)
		if (m->runs[i].tried)
			qmgr_rcpt_record(m, i, now);
	unreported = qmgr_bounce(m) < 0;
	due = smtp_queue_env_due(m->env, &next) || unreported;
	/* A message with nothing left to do is removed without saving its
	 * envelope first: the removal makes the results durable at once,
	 * and the save would cost two fsyncs for a file about to go. */
	if (due && smtp_queue_save(qmgr.queue, m->env, &error) < 0) {
		/* The old envelope stays: the recipients delivered now
		 * are delivered again at the next run. */
		log_error("%s", error);
		m->due = now + QMGR_ERROR_RETRY;
	} else if (due)
		m->due = unreported ? now + QMGR_ERROR_RETRY :
		    m->flush ? 0 : next;
	free(m->runs);
	m->runs = NULL;
	qmgr_strings_free(m->dt, m->ndt);
	m->dt = NULL;
	m->ndt = 0;
	close(m->fd);
	m->fd = -1;
	m->active = false;
	qmgr.nactive--;
	if (!due) {
		/* The fsync of env/ waits for the loop turn's other
		 * removals (qmgr_schedule). */
		if (smtp_queue_env_remove_later(qmgr.queue, &m->env,
		    &error) < 0)
			log_error("%s", error);
		else
			log_info("%s: removed", m->id);
		qmgr_msg_forget(m);
	} else
		smtp_queue_env_free(&m->env);
	qmgr_kick();
}

/*
 * Scheduling.
 */

static void
qmgr_schedule(void);

static void
qmgr_wake(void *ctx)
{
	(void)ctx;
	timeout_remove(&qmgr.wake_to);
	qmgr_schedule();
}

static void
qmgr_kick_now(void *ctx)
{
	(void)ctx;
	timeout_remove(&qmgr.kick_to);
	qmgr_schedule();
}

/* Schedule from the loop, not from inside a run's callbacks. */
static void
qmgr_kick(void)
{
	if (qmgr.kick_to == NULL)
		qmgr.kick_to = timeout_add(qmgr.loop, 0, false, qmgr_kick_now,
		    NULL);
}

/* Start what is due, as far as QMGR_ACTIVE_MAX allows, oldest first
 * (IDs sort by arrival), and set the timer for what is due later. */
static void
qmgr_schedule(void)
{
	struct qmgr_msg *m, *best;
	time_t now = time(NULL), earliest = 0;
	const char *error;
	unsigned ms;

	/* The removals since the last turn: one fsync of env/ for all. */
	if (smtp_queue_removals_flush(qmgr.queue, &error) < 0)
		log_error("%s", error);
	if (qmgr.retired) {
		/* Finish the runs under way: their requests still go. */
		qmgr_dispatch();
		if (qmgr.nactive == 0 && !qmgr_smtp_busy())
			ioloop_stop(qmgr.loop);
		return;
	}
	while (qmgr.nactive < QMGR_ACTIVE_MAX) {
		best = NULL;
		for (m = qmgr.msgs; m != NULL; m = m->next)
			if (!m->active && m->due <= now &&
			    (best == NULL || strcmp(m->id, best->id) < 0))
				best = m;
		if (best == NULL)
			break;
		qmgr_run(best);
		/* A message run to its end at once, gone, or locked has a
		 * due time in the future now, or is forgotten. */
	}
	qmgr_dispatch();
	for (m = qmgr.msgs; m != NULL; m = m->next)
		if (!m->active && m->due > now &&
		    (earliest == 0 || m->due < earliest))
			earliest = m->due;
	timeout_remove(&qmgr.wake_to);
	if (earliest != 0) {
		ms = earliest - now > 86400 ? 86400000u :
		    (unsigned)(earliest - now) * 1000u;
		qmgr.wake_to = timeout_add(qmgr.loop, ms, false, qmgr_wake,
		    NULL);
	}
}

/*
 * The master's records.
 */

static void
qmgr_result(struct ipc_msg *m)
{
	struct qmgr_req *r, **rp;
	const char *dsn, *text, *error;
	uint32_t id, status;

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &status);
	ipc_get_str(m, &dsn);
	ipc_get_str(m, &text);
	if (ipc_get_end(m, &error) < 0) {
		log_error("master channel: %s", error);
		ioloop_stop(qmgr.loop);
		return;
	}
	for (rp = &qmgr.inflight; (r = *rp) != NULL; rp = &r->next)
		if (r->id == id)
			break;
	if (r == NULL) {
		log_warning("a result for no delivery (%u)", id);
		return;
	}
	*rp = r->next;
	qmgr.ninflight--;
	qmgr_req_result(r, status > LOFTD_DELIVER_PERM ? LOFTD_DELIVER_TEMP :
	    (enum loftd_dstatus)status, dsn, text);
	/* The answers of a batch come together: send what waits once
	 * they are all in (qmgr_schedule, from the loop), not one request
	 * per answer. */
	qmgr_kick();
}

static void
qmgr_queued(struct ipc_msg *m)
{
	const char *id, *error;

	ipc_get_str(m, &id);
	if (ipc_get_end(m, &error) < 0 || !smtp_queue_id_valid(id)) {
		log_warning("bad queued record from the master");
		return;
	}
	qmgr_msg_note(id, 0, false);
	qmgr_kick();
}

static void
qmgr_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	switch (m->type) {
	case LOFTD_QUEUED:
		qmgr_queued(m);
		break;
	case LOFTD_DELIVER_RESULT:
		qmgr_result(m);
		break;
	case LOFTD_FLUSH:
		qmgr_scan(true);
		break;
	case LOFTD_RETIRE:
		qmgr.retired = true;
		qmgr_smtp_retire();
		qmgr_kick();
		break;
	default:
		log_warning("unexpected record %u from the master", m->type);
	}
}

static void
qmgr_master_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (error != NULL)
		log_error("master channel: %s", error);
	ioloop_stop(qmgr.loop);
}

static const struct chan_callbacks qmgr_master_cb = {
	.msg = qmgr_master_msg,
	.closed = qmgr_master_closed,
};

/*
 * Local submission: files sendmail dropped into maildrop/ become messages
 * (smtp/smtp_pickup.h), at start, when a byte arrives in public/pickup,
 * and every QMGR_PICKUP_POLL ms in case a wake-up was lost. A run takes
 * QMGR_PICKUP_BATCH files at most (four fsyncs each), and the rest after
 * the loop has turned.
 */
#define QMGR_PICKUP_POLL	60000
#define QMGR_PICKUP_BATCH	100

static void
qmgr_pickup_queued(const char *id, void *ctx)
{
	(void)ctx;
	qmgr_msg_note(id, 0, false);
}

static void qmgr_pickup_again(void *ctx);

static void
qmgr_pickup(void)
{
	unsigned picked;
	const char *error;

	if (qmgr.retired || qmgr.maildrop[0] == '\0')
		return;
	if (smtp_pickup_run(qmgr.queue, qmgr.maildrop, QMGR_PICKUP_BATCH,
	    &picked, &error) < 0)
		log_error("%s", error);
	if (picked > 0)
		qmgr_kick();
	if (picked == QMGR_PICKUP_BATCH && qmgr.pickup_more == NULL)
		qmgr.pickup_more = timeout_add(qmgr.loop, 0, false,
		    qmgr_pickup_again, NULL);
}

static void
qmgr_pickup_again(void *ctx)
{
	(void)ctx;
	timeout_remove(&qmgr.pickup_more);
	qmgr_pickup();
}

static void
qmgr_pickup_poll(void *ctx)
{
	(void)ctx;
	qmgr_pickup();
}

static void
qmgr_pickup_wake(void *ctx)
{
	(void)ctx;
	smtp_pickup_fifo_drain(qmgr.pickup_fd);
	qmgr_pickup();
}

static void
qmgr_pickup_init(void)
{
	const char *dir = conf_str("queue_directory"), *error;

	qmgr.pickup_fd = -1;
	if (smtp_pickup_prepare(dir, &error) < 0) {
		log_error("%s (local submission is off)", error);
		return;
	}
	snprintf(qmgr.maildrop, sizeof(qmgr.maildrop), "%s/%s", dir,
	    SMTP_PICKUP_MAILDROP);
	smtp_pickup_set_queued(qmgr_pickup_queued, NULL);
	if ((qmgr.pickup_fd = smtp_pickup_fifo_open(dir, &error)) < 0)
		log_error("%s (sendmail's mail waits for the next poll)",
		    error);
	else
		qmgr.pickup_io = io_add(qmgr.loop, qmgr.pickup_fd, IO_READ,
		    qmgr_pickup_wake, NULL);
	qmgr.pickup_poll = timeout_add(qmgr.loop, QMGR_PICKUP_POLL, true,
	    qmgr_pickup_poll, NULL);
	qmgr_pickup();
}

static void
qmgr_pickup_deinit(void)
{
	io_remove(&qmgr.pickup_io);
	if (qmgr.pickup_fd >= 0)
		close(qmgr.pickup_fd);
	qmgr.pickup_fd = -1;
	timeout_remove(&qmgr.pickup_poll);
	timeout_remove(&qmgr.pickup_more);
	smtp_pickup_set_queued(NULL, NULL);
}

/*
 * Start and end.
 */

static void
qmgr_settings(void)
{
	if (strlcpy(qmgr.hostname, conf_str("myhostname"),
	    sizeof(qmgr.hostname)) >= sizeof(qmgr.hostname) ||
	    qmgr.hostname[0] == '\0')
		log_fatal("myhostname %s: not a host name",
		    conf_str("myhostname"));
	qmgr.delim = conf_str("recipient_delimiter");
	qmgr.bcc = conf_str("always_bcc");
	qmgr.hopcount_limit = (unsigned)conf_int("hopcount_limit");
	smtp_bounce_set_size_limit((uint64_t)conf_int("bounce_size_limit"));
	qmgr.sched.minimal_backoff_time =
	    (unsigned)conf_time("minimal_backoff_time");
	qmgr.sched.maximal_backoff_time =
	    (unsigned)conf_time("maximal_backoff_time");
	qmgr.sched.maximal_queue_lifetime =
	    (unsigned)conf_time("maximal_queue_lifetime");
	qmgr.sched.bounce_queue_lifetime =
	    (unsigned)conf_time("bounce_queue_lifetime");
}

static void
qmgr_free(void)
{
	const char *error;
	struct qmgr_req *r;

	while ((r = qmgr.sendq) != NULL) {
		qmgr.sendq = r->next;
		qmgr_req_free(r);
	}
	while ((r = qmgr.inflight) != NULL) {
		qmgr.inflight = r->next;
		qmgr_req_free(r);
	}
	/* Messages under way keep their old envelopes: what was delivered
	 * of them is delivered again (the crash window, see the top). */
	qmgr_smtp_deinit();
	qmgr_pickup_deinit();
	while (qmgr.msgs != NULL)
		qmgr_msg_forget(qmgr.msgs);
	timeout_remove(&qmgr.wake_to);
	timeout_remove(&qmgr.kick_to);
	chan_free(&qmgr.master);
	smtp_alias_close(&qmgr.aliases);
	smtp_relay_free(&qmgr.relay);
	if (qmgr.queue != NULL &&
	    smtp_queue_removals_flush(qmgr.queue, &error) < 0)
		log_error("%s", error);
	smtp_queue_close(&qmgr.queue);
	ioloop_free(&qmgr.loop);
}

/* SIGUSR1, from `loftctl queue flush` (as mail_owner, which cannot signal
 * the master): deferred mail now, as the master's LOFTD_FLUSH. */
static void
qmgr_sigusr1(int signo, void *ctx)
{
	(void)signo;
	(void)ctx;
	log_info("flush: deferred mail is tried now");
	qmgr_scan(true);
}

/* The queue's pid file (SMTP_QUEUE_PID_FILE): written (beside, then
 * renamed) at start; at the end removed if it still names us (a
 * successor may have written its own). Best effort: without it a flush
 * only marks the mail due. */
static void
qmgr_pid_file(bool start)
{
	char path[PATH_MAX], tmp[PATH_MAX], text[32];
	const char *dir = conf_str("queue_directory");
	ssize_t n;
	int fd, len;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    SMTP_QUEUE_PID_FILE) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return;
	len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (!start) {
		char have[32];

		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return;
		n = read(fd, have, sizeof(have) - 1);
		close(fd);
		if (n == len && memcmp(have, text, (size_t)len) == 0)
			(void)unlink(path);
		return;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) < 0 || write(fd, text, (size_t)len) != len ||
	    close(fd) < 0 || rename(tmp, path) < 0)
		log_warning("cannot write %s: %s", path, strerror(errno));
}

int
qmgr_main(bool foreground, bool have_log_fd)
{
	const char *error;

	loftd_log_setup("qmgr", foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	qmgr_settings();
	qmgr.loop = ioloop_new();
	/* As root still: smtp_sasl_password_maps may be root's alone. */
	qmgr_smtp_init(qmgr.loop, qmgr_kick);
	/* No chroot: the queue and the alias maps must stay reachable. */
	loftd_drop_privileges("mail_owner", NULL);
	if (smtp_queue_open(conf_str("queue_directory"), &qmgr.queue,
	    &error) < 0)
		log_fatal("%s", error);
	if (smtp_relay_new_conf(&qmgr.relay, &error) < 0)
		log_fatal("%s", error);
	qmgr.sendq_tail = &qmgr.sendq;
	loftd_stop_on_sigterm(qmgr.loop);
	qmgr.master = chan_new(qmgr.loop, LOFTD_FD_MASTER, &qmgr_master_cb,
	    NULL);
	(void)qmgr_aliases();
	qmgr_scan(false);
	qmgr_pickup_init();
	if (ioloop_signal_add(qmgr.loop, SIGUSR1, qmgr_sigusr1, NULL) < 0)
		log_fatal("signals: cannot watch SIGUSR1");
	qmgr_pid_file(true);
	ioloop_run(qmgr.loop);
	qmgr_pid_file(false);
	qmgr_free();
	conf_reset();
	return 0;
}
