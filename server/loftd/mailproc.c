/*
 * mailproc.c: a mail process of loftd. The master starts one per mailbox
 * owner (uid, gid) and hands it every logged-in client of that owner: the
 * client's socket (or a relay socketpair from the login process for TLS
 * clients), the bytes the client pipelined after logging in, and the
 * user's record as the auth process confirmed it. Each client is one POP3
 * engine in TRANSACTION state, or one IMAP engine after login, on the one
 * event loop. IMAP COMPRESS runs here (lib/conn_zlib over the client's
 * socket or the login process's relay, so inside TLS when TLS is used).
 * It also stores the mail the queue manager delivers to its owner
 * (LOFTD_DELIVER, relayed and checked by the master), with the store code
 * loft-deliver uses.
 *
 * SECURITY: runs as the mailbox owner, never root (the master refuses
 * uid 0). Client input is parsed by the POP3 engine; the records from the
 * master are checked field by field, and only the master is heard: the
 * queue manager's requests reach this process only after the master has
 * looked the user up itself. A queued message is stored, never
 * interpreted; the addresses put into its header are refused if they
 * hold a control byte.
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "conn.h"
#include "conn_zlib.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "net.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "notify.h"
#include "pop3_session.h"
#include "server/imap/imap_session.h"
#include "chan.h"
#include "loftd.h"
#include "rate.h"

#define MAILPROC_INPUT_MAX	4096
#define MAILPROC_STALL_MS	(10 * 60 * 1000)
/* A session quiet for this long closes its mailbox index until the
 * client speaks again: an idle session costs kilobytes, not an LMDB
 * environment. */
#define MAILPROC_RELEASE_MS	1000
/* A queued message may exceed message_size_limit by what loftd added to
 * it (its Received: line) and the delivery adds (Return-Path:,
 * Delivered-To:). */
#define MAILPROC_DELIVER_SLACK	(64 * 1024)
/* Longest address put into a header by a delivery (RFC 5321's path, with
 * room). */
#define MAILPROC_ADDR_MAX	512

struct mailproc_session {
	struct mailproc_session *prev, *next;
	uint32_t id;
	uint32_t service;
	char rip[NET_ADDR_STR_MAX];
	bool secured;
	struct user *user;		/* owned */
	struct conn *conn;		/* owned */
	bool compress_pending;		/* COMPRESS: switch on the next drain */
	bool compressed;		/* COMPRESS done */
	struct conn_zlib_stats zstats;	/* counted by conn_zlib */
	struct pop3_session *pop3;	/* owned (POP3) */
	struct imap_session *imap;	/* owned (IMAP) */
	struct notify_watch *watch[2];	/* owned: the selected folder */
	struct buf pending;		/* client bytes not yet taken */
	uint64_t in_bytes, out_bytes;
	struct rate rate;
	struct timeout *rate_to;	/* owned */
	struct timeout *end_to;		/* owned */
	struct timeout *release_to;	/* owned */
	bool closing, ended;
	const char *reason;
	char reason_buf[160];
};

struct mailproc {
	struct ioloop *loop;
	struct chan *master;		/* owned */
	struct mailproc_session *sessions;
	size_t nsessions;
	struct notify *notify;		/* owned; NULL if inotify failed */
	bool retired;
	unsigned rate_limit;
	unsigned idle_ms;
	size_t line_max;
	bool compress;			/* imap_compress */
};

static struct mailproc mailproc;
static struct ipc_msg mailproc_out;

static void mailproc_feed(struct mailproc_session *s);

/*
 * Ending a session.
 */

static void
mailproc_log_logout(struct mailproc_session *s)
{
	struct pop3_stats st;

	if (s->imap != NULL) {
		struct imap_stats ist;
		char deflate[96] = "";

		imap_session_stats(s->imap, &ist);
		if (s->compressed)
			snprintf(deflate, sizeof(deflate), ", deflate_in=%llu, "
			    "deflate_out=%llu",
			    (unsigned long long)s->zstats.in_wire,
			    (unsigned long long)s->zstats.out_wire);
		log_info("imap(%s): logout: rip=%s, reason=%s, fetches=%u/%llu, "
		    "in=%llu, out=%llu%s", s->user->name, s->rip,
		    s->reason != NULL ? s->reason : "disconnected",
		    ist.fetches, (unsigned long long)ist.fetched,
		    (unsigned long long)s->in_bytes,
		    (unsigned long long)s->out_bytes, deflate);
		return;
	}
	pop3_session_stats(s->pop3, &st);
	log_info("%s(%s): logout: rip=%s, reason=%s, messages=%u/%llu, "
	    "retr=%u/%llu, top=%u/%llu, dele=%u/%llu, in=%llu, out=%llu",
	    loftd_service_name(s->service), s->user->name, s->rip,
	    s->reason != NULL ? s->reason : "disconnected", st.messages,
	    (unsigned long long)st.size, st.retr,
	    (unsigned long long)st.retr_bytes, st.top,
	    (unsigned long long)st.top_bytes, st.dele,
	    (unsigned long long)st.dele_bytes,
	    (unsigned long long)s->in_bytes,
	    (unsigned long long)s->out_bytes);
}

static void
mailproc_session_free(struct mailproc_session *s)
{
	if (chan_ok(mailproc.master)) {
		ipc_msg_init(&mailproc_out, LOFTD_CONN_DONE, 0);
		ipc_add_u32(&mailproc_out, s->id);
		(void)chan_send(mailproc.master, &mailproc_out);
	}
	/* Without QUIT, freeing the engine deletes nothing (RFC 1939). */
	pop3_session_free(&s->pop3);
	notify_remove(&s->watch[0]);
	notify_remove(&s->watch[1]);
	imap_session_free(&s->imap);
	conn_close(&s->conn);
	timeout_remove(&s->rate_to);
	timeout_remove(&s->end_to);
	timeout_remove(&s->release_to);
	buf_free(&s->pending);
	user_free(&s->user);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		mailproc.sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	mailproc.nsessions--;
	free(s);
	if (mailproc.retired && mailproc.nsessions == 0)
		ioloop_stop(mailproc.loop);
}

static void
mailproc_end_now(void *ctx)
{
	struct mailproc_session *s = ctx;

	mailproc_log_logout(s);
	mailproc_session_free(s);
}

/* End s from a callback that may still use it. */
static void
mailproc_end(struct mailproc_session *s, const char *reason)
{
	if (s->ended)
		return;
	s->ended = true;
	if (s->reason == NULL)
		s->reason = reason;
	s->end_to = timeout_add(mailproc.loop, 0, false, mailproc_end_now, s);
}

/*
 * The engine's callbacks.
 */

static void
mailproc_pop3_write(void *ctx, const unsigned char *data, size_t len)
{
	struct mailproc_session *s = ctx;

	if (s->ended)
		return;
	if (conn_write(s->conn, data, len) < 0) {
		mailproc_end(s, "output buffer full");
		return;
	}
	s->out_bytes += len;
}

static void
mailproc_pop3_authenticated(void *ctx, const char *user)
{
	(void)ctx;
	(void)user;
	log_panic("mail process: authentication after login");
}

static void mailproc_feed(struct mailproc_session *s);

static void
mailproc_imap_closed(void *ctx)
{
	struct mailproc_session *s = ctx;
	struct imap_stats st;

	imap_session_stats(s->imap, &st);
	s->closing = true;
	if (s->reason == NULL)
		s->reason = st.logout ? "LOGOUT" : st.bad >= IMAP_BAD_MAX ?
		    "too many bad commands" : "closed by the server";
	conn_close_after_flush(s->conn);
}

static void
mailproc_folder_changed(void *ctx)
{
	struct mailproc_session *s = ctx;

	imap_session_changed(s->imap);
}

/* The session selected another folder: watch it instead. */
static void
mailproc_imap_selected(void *ctx)
{
	struct mailproc_session *s = ctx;
	struct imap_watch w[2];
	const char *error;
	unsigned n;

	notify_remove(&s->watch[0]);
	notify_remove(&s->watch[1]);
	if (mailproc.notify == NULL)
		return;
	n = imap_session_watches(s->imap, w);
	for (unsigned i = 0; i < n; i++)
		if (notify_add(mailproc.notify, w[i].dir, w[i].name,
		    mailproc_folder_changed, s, &s->watch[i], &error) < 0)
			log_warning("imap(%s): %s (IDLE falls back to "
			    "reporting at the next command)", s->user->name,
			    error);
}

/* COMPRESS: the engine's OK comes next; switch once it has left
 * (mailproc_event). */
static int
mailproc_imap_start_compress(void *ctx)
{
	struct mailproc_session *s = ctx;

	if (s->compressed || s->compress_pending)
		return -1;
	s->compress_pending = true;
	return 0;
}

/* The OK has been sent: from here on the client's bytes, those it
 * pipelined through the login process and those conn has buffered
 * included, are compressed. */
static void
mailproc_compress(struct mailproc_session *s)
{
	const char *error;

	s->compress_pending = false;
	if (conn_zlib_start(s->conn, s->pending.data, s->pending.len,
	    &s->zstats, &error) < 0) {
		log_error("imap(%s): %s", s->user->name, error);
		mailproc_end(s, "COMPRESS failed");
		return;
	}
	s->compressed = true;
	buf_truncate(&s->pending, 0);
	imap_session_compress_started(s->imap);
}

static void
mailproc_pop3_closed(void *ctx)
{
	struct mailproc_session *s = ctx;
	struct pop3_stats st;

	pop3_session_stats(s->pop3, &st);
	s->closing = true;
	if (s->reason == NULL)
		s->reason = st.bad >= POP3_BAD_MAX ? "too many bad commands" :
		    "QUIT";
	conn_close_after_flush(s->conn);
}

static const struct pop3_callbacks mailproc_pop3_cb = {
	.write = mailproc_pop3_write,
	.authenticated = mailproc_pop3_authenticated,
	.closed = mailproc_pop3_closed,
};

static const struct imap_callbacks mailproc_imap_cb = {
	.write = mailproc_pop3_write,
	.authenticated = mailproc_pop3_authenticated,
	.closed = mailproc_imap_closed,
	.selected = mailproc_imap_selected,
};

/* With imap_compress = yes. */
static const struct imap_callbacks mailproc_imap_cb_compress = {
	.write = mailproc_pop3_write,
	.authenticated = mailproc_pop3_authenticated,
	.closed = mailproc_imap_closed,
	.selected = mailproc_imap_selected,
	.start_compress = mailproc_imap_start_compress,
};

/*
 * Input.
 */

static void
mailproc_rate_resume(void *ctx)
{
	struct mailproc_session *s = ctx;

	timeout_remove(&s->rate_to);
	mailproc_feed(s);
}

/* Offer data to the engine under the rate limit; returns bytes taken. */
static size_t
mailproc_offer(struct mailproc_session *s, const unsigned char *data,
    size_t len)
{
	size_t allowed, used;
	unsigned wait_ms;

	allowed = rate_take(&s->rate, mailproc.rate_limit, ioloop_now_ms(),
	    data, len, &wait_ms);
	if (allowed == 0) {
		s->rate_to = timeout_add(mailproc.loop, wait_ms, false,
		    mailproc_rate_resume, s);
		return 0;
	}
	used = s->imap != NULL ? imap_session_input(s->imap, data, allowed) :
	    pop3_session_input(s->pop3, data, allowed);
	s->in_bytes += used;
	return used;
}

static void
mailproc_feed(struct mailproc_session *s)
{
	const unsigned char *data;
	size_t len, used;

	while (!s->ended && !s->closing && s->rate_to == NULL &&
	    (s->imap != NULL ? !imap_session_waiting(s->imap) :
	    !pop3_session_want_output(s->pop3)) &&
	    !conn_output_full(s->conn)) {
		if (s->pending.len > 0) {
			used = mailproc_offer(s, s->pending.data,
			    s->pending.len);
			memmove(s->pending.data, s->pending.data + used,
			    s->pending.len - used);
			buf_truncate(&s->pending, s->pending.len - used);
			if (s->pending.len > 0)
				return;
			continue;
		}
		data = conn_input_peek(s->conn, &len);
		if (len == 0)
			return;
		used = mailproc_offer(s, data, len);
		conn_input_consume(s->conn, used);
		if (used < len)
			return;
	}
}

static void
mailproc_release(void *ctx)
{
	struct mailproc_session *s = ctx;

	if (s->imap != NULL) {
		imap_session_idle_release(s->imap);
		/* Quiet: the deflater (about 134 KiB) goes until the next
		 * response; the inflater must stay. */
		if (s->compressed)
			conn_zlib_release(s->conn);
	} else
		pop3_session_idle(s->pop3);
}

static void
mailproc_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct mailproc_session *s = ctx;

	if (s->release_to != NULL)
		timeout_reset(s->release_to);
	switch (ev) {
	case CONN_EV_INPUT:
		mailproc_feed(s);
		break;
	case CONN_EV_DRAINED:
		if (s->compress_pending && !s->ended) {
			mailproc_compress(s);
			if (s->ended)
				break;
		}
		/* POP3 wants to hear of every drain, streaming or not: its
		 * queued commands may be waiting for one. */
		if (s->imap != NULL)
			imap_session_output_ready(s->imap);
		else
			pop3_session_output_ready(s->pop3);
		mailproc_feed(s);
		break;
	case CONN_EV_TIMEOUT:
		/* RFC 1939 autologout: close, delete nothing, say nothing. */
		mailproc_end(s, "idle timeout");
		break;
	case CONN_EV_CLOSED:
		if (s->closing) {
			mailproc_end(s, NULL);
			break;
		}
		/* The client's last bytes (a QUIT) still count. */
		mailproc_feed(s);
		if (!s->closing)
			mailproc_end(s, "disconnected");
		break;
	case CONN_EV_STALLED:
		mailproc_end(s, "output stalled");
		break;
	case CONN_EV_ERROR:
		if (s->closing) {
			mailproc_end(s, NULL);
			break;
		}
		snprintf(s->reason_buf, sizeof(s->reason_buf), "%s",
		    conn_error(conn) != NULL ? conn_error(conn) : "error");
		mailproc_end(s, s->reason_buf);
		break;
	}
}

/*
 * A new session from the master.
 */

static int
mailproc_pop3_start(struct mailproc_session *s, const struct user *u)
{
	struct pop3_settings set;

	memset(&set, 0, sizeof(set));
	set.secured = s->secured;
	set.mechanisms = "";
	set.line_max = mailproc.line_max;
	loftd_pop3_policy(&set);
	s->pop3 = pop3_session_new_authenticated(&set, &mailproc_pop3_cb, s,
	    u->name);
	/* Queue what was pipelined after the login command, so it runs
	 * after the login's answer, in order. */
	if (s->pending.len > 0) {
		size_t used = pop3_session_input(s->pop3, s->pending.data,
		    s->pending.len);

		memmove(s->pending.data, s->pending.data + used,
		    s->pending.len - used);
		buf_truncate(&s->pending, s->pending.len - used);
		s->in_bytes += used;
	}
	pop3_session_login(s->pop3, u);
	if (!s->closing &&
	    pop3_session_state(s->pop3) != POP3_STATE_TRANSACTION) {
		/* [IN-USE] or a mailbox that cannot be opened: answered. */
		s->reason = "login refused";
		s->closing = true;
		conn_close_after_flush(s->conn);
		return -1;
	}
	return 0;
}

static void
mailproc_session_new(struct ipc_msg *m)
{
	struct mailproc_session *s;
	const unsigned char *pending;
	const char *rip, *error;
	uint32_t id, service, rport, secured;
	size_t pending_len;
	struct user *u = NULL;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &service);
	ipc_get_str(m, &rip);
	ipc_get_u32(m, &rport);
	ipc_get_u32(m, &secured);
	ipc_get_data(m, &pending, &pending_len);
	if (m->error != NULL || auth_proto_get_user(m, &u, &error) < 0 ||
	    ipc_get_end(m, &error) < 0 || fd < 0 ||
	    (service != LOFTD_SVC_POP3 && service != LOFTD_SVC_IMAP) ||
	    pending_len > LOFTD_PENDING_MAX) {
		log_warning("bad session record from the master");
		user_free(&u);
		if (fd >= 0)
			close(fd);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->id = id;
	s->service = service;
	s->secured = secured != 0;
	s->user = u;
	strlcpy(s->rip, rip, sizeof(s->rip));
	buf_init(&s->pending, LOFTD_PENDING_MAX);
	(void)buf_append(&s->pending, pending, pending_len);
	s->next = mailproc.sessions;
	if (s->next != NULL)
		s->next->prev = s;
	mailproc.sessions = s;
	mailproc.nsessions++;
	s->conn = conn_new(mailproc.loop, fd, MAILPROC_INPUT_MAX,
	    mailproc_event, s);
	conn_set_idle_timeout(s->conn, mailproc.idle_ms);
	conn_set_output_timeout(s->conn, MAILPROC_STALL_MS);

	if (service == LOFTD_SVC_IMAP) {
		struct imap_settings iset;

		memset(&iset, 0, sizeof(iset));
		iset.secured = s->secured;
		iset.mechanisms = "";
		iset.default_folders = true;
		s->imap = imap_session_new_authenticated(&iset,
		    mailproc.compress ? &mailproc_imap_cb_compress :
		    &mailproc_imap_cb, s, u->name);
		if (imap_session_login(s->imap, u) < 0) {
			/* "* BYE" written, closed callback called. */
			s->reason = "mail store unavailable";
			return;
		}
	} else if (mailproc_pop3_start(s, u) < 0)
		return;
	log_info("%s(%s): login: rip=%s, %s", loftd_service_name(service),
	    u->name, s->rip, s->secured ? "TLS" : "plaintext");
	s->release_to = timeout_add(mailproc.loop, MAILPROC_RELEASE_MS, false,
	    mailproc_release, s);
	mailproc_feed(s);
}

/*
 * Deliveries from the queue.
 */

/* An address fit for a header line: at most MAILPROC_ADDR_MAX bytes, no
 * control byte (a CR or LF would start a header of its own). */
static bool
mailproc_addr_ok(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return n <= MAILPROC_ADDR_MAX;
}

/*
 * The message as it is stored: Return-Path: and Delivered-To: on top, as
 * loft-deliver and Postfix's local(8) write them, then the queued content
 * with its CRLF line ends made LF, the form Maildir and mbox files have
 * (what Postfix and Dovecot's LMTP store; the POP3 and IMAP engines send
 * CRLF again). The content is read with pread, so the descriptor's offset,
 * which other deliveries of the same file may share, does not matter.
 * Returns 0, 1 when the message is larger than out's maximum, -1 on a read
 * error (*error_r).
 */
static int
mailproc_deliver_compose(int fd, const char *rcpt, const char *sender,
    struct buf *out, const char **error_r)
{
	static char errbuf[128];
	unsigned char chunk[65536];
	bool cr = false;
	off_t off = 0;
	ssize_t n;

	if (buf_printf(out, "Return-Path: <%s>\nDelivered-To: %s\n", sender,
	    rcpt) < 0)
		return 1;
	while ((n = pread(fd, chunk, sizeof(chunk), off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(errbuf, sizeof(errbuf), "reading the queue "
			    "file: %s", strerror(errno));
			*error_r = errbuf;
			return -1;
		}
		off += n;
		for (ssize_t i = 0; i < n; i++) {
			/* A CR is held back until we see whether LF
			 * follows (it may be the chunk's last byte). */
			if (cr && chunk[i] != '\n' &&
			    buf_append_byte(out, '\r') < 0)
				return 1;
			cr = chunk[i] == '\r';
			if (!cr && buf_append_byte(out, chunk[i]) < 0)
				return 1;
		}
	}
	if (cr && buf_append_byte(out, '\r') < 0)
		return 1;
	return 0;
}

/* store_deliver's outcome as loft-deliver reports it (its exit codes
 * table in doc/design.md), without the exit code. */
static enum loftd_dstatus
mailproc_deliver_status(enum store_result r, const char **dsn_r)
{
	switch (r) {
	case STORE_OK:
		*dsn_r = "2.0.0";
		return LOFTD_DELIVER_OK;
	case STORE_OVERQUOTA:
		if (conf_bool("quota_full_tempfail")) {
			*dsn_r = "4.2.2";
			return LOFTD_DELIVER_TEMP;
		}
		*dsn_r = "5.2.2";
		return LOFTD_DELIVER_PERM;
	case STORE_DISKFULL:
		*dsn_r = "4.3.1";
		return LOFTD_DELIVER_TEMP;
	case STORE_LOCKED:
		*dsn_r = "4.2.0";
		return LOFTD_DELIVER_TEMP;
	case STORE_PERMFAIL:
		*dsn_r = "5.2.0";
		return LOFTD_DELIVER_PERM;
	case STORE_TEMPFAIL:
		break;
	}
	*dsn_r = "4.3.0";
	return LOFTD_DELIVER_TEMP;
}

/*
 * Store the message of fd for u. Runs to the end before the loop goes on
 * (a delivery takes milliseconds; an mbox lock held by another program
 * is waited for within the store's own bound, STORE_LOCKED after it).
 * The reason goes into text (size bytes), the DSN code into *dsn_r.
 */
static enum loftd_dstatus
mailproc_deliver_store(const struct user *u, int fd, const char *rcpt,
    const char *sender, const char **dsn_r, char *text, size_t size)
{
	struct store_delivery d;
	struct store_delivered done;
	struct store *st;
	struct buf msg;
	const char *error;
	enum store_result r;
	size_t limit = conf_int("message_size_limit") > 0 ?
	    (size_t)conf_int("message_size_limit") + MAILPROC_DELIVER_SLACK :
	    (size_t)-1;
	int ret;

	buf_init(&msg, limit);
	if ((ret = mailproc_deliver_compose(fd, rcpt, sender, &msg,
	    &error)) != 0) {
		buf_free(&msg);
		*dsn_r = ret > 0 ? "5.3.4" : "4.3.0";
		snprintf(text, size, "%s", ret > 0 ?
		    "message too big for the system" : error);
		return ret > 0 ? LOFTD_DELIVER_PERM : LOFTD_DELIVER_TEMP;
	}
	if (store_open(u, &st, &error) < 0) {
		buf_free(&msg);
		*dsn_r = "4.3.0";
		snprintf(text, size, "%s", error);
		return LOFTD_DELIVER_TEMP;
	}
	/* Issue 6 hooks in here: the user's .forward and filter rules pick
	 * the folder (or other targets) as they will in loft-deliver; until
	 * then, as Postfix's local(8) by default, everything goes to INBOX,
	 * user+tag included. */
	memset(&d, 0, sizeof(d));
	d.folder = "INBOX";
	d.sender = sender;
	d.received = time(NULL);
	d.msg = msg.data;
	d.len = msg.len;
	r = store_deliver(st, &d, &done, &error);
	if (r == STORE_OK)
		snprintf(text, size, "delivered to %s", done.format);
	else
		snprintf(text, size, "%s", error);
	store_close(&st);
	buf_free(&msg);
	return mailproc_deliver_status(r, dsn_r);
}

static void
mailproc_deliver_answer(uint32_t id, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	ipc_msg_init(&mailproc_out, LOFTD_DELIVER_RESULT, 0);
	ipc_add_u32(&mailproc_out, id);
	ipc_add_u32(&mailproc_out, (uint32_t)status);
	ipc_add_str(&mailproc_out, dsn);
	ipc_add_str(&mailproc_out, text);
	(void)chan_send(mailproc.master, &mailproc_out);
}

/* LOFTD_DELIVER from the master: store, answer. Every request that
 * parses is answered once; one that does not is the master's bug, logged
 * and dropped (the master then fails it when this process exits). */
static void
mailproc_deliver(struct ipc_msg *m)
{
	const char *qid, *rcpt, *sender, *error, *dsn = "4.3.0";
	enum loftd_dstatus status;
	struct user *u = NULL;
	char text[512], esc[MAILPROC_ADDR_MAX * 4 + 1];
	uint32_t id;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_str(m, &qid);
	ipc_get_str(m, &rcpt);
	ipc_get_str(m, &sender);
	if (m->error != NULL || auth_proto_get_user(m, &u, &error) < 0 ||
	    ipc_get_end(m, &error) < 0 || fd < 0) {
		log_warning("bad delivery record from the master");
		user_free(&u);
		if (fd >= 0)
			close(fd);
		return;
	}
	if (!mailproc_addr_ok(rcpt) || !mailproc_addr_ok(sender)) {
		status = LOFTD_DELIVER_PERM;
		dsn = "5.1.3";
		snprintf(text, sizeof(text), "address unfit for a header");
	} else
		status = mailproc_deliver_store(u, fd, rcpt, sender, &dsn,
		    text, sizeof(text));
	close(fd);
	if (status != LOFTD_DELIVER_OK)
		log_info("%s: deliver(%s): to=<%s>, dsn=%s, %s (%s)", qid,
		    u->name, log_escape(rcpt, esc, sizeof(esc)), dsn,
		    status == LOFTD_DELIVER_TEMP ? "deferred" : "failed", text);
	mailproc_deliver_answer(id, status, dsn, text);
	user_free(&u);
}

static void
mailproc_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (m->type == LOFTD_SESSION)
		mailproc_session_new(m);
	else if (m->type == LOFTD_DELIVER)
		mailproc_deliver(m);
	else if (m->type == LOFTD_RETIRE) {
		mailproc.retired = true;
		if (mailproc.nsessions == 0)
			ioloop_stop(mailproc.loop);
	} else
		log_warning("unexpected record %u from the master", m->type);
}

static void
mailproc_master_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (error != NULL)
		log_error("master channel: %s", error);
	ioloop_stop(mailproc.loop);
}

static const struct chan_callbacks mailproc_master_cb = {
	.msg = mailproc_master_msg,
	.closed = mailproc_master_closed,
};

static void
mailproc_signal(int signo, void *ctx)
{
	(void)signo;
	ioloop_stop(ctx);
}

int
mailproc_main(bool foreground, bool have_log_fd)
{
	const char *error;

	loftd_log_setup("mail", foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	if (geteuid() == 0)
		log_fatal("refusing to serve mailboxes as root");
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Large blocks (LMDB's per-environment lists, message chunks) come
	 * from mmap and go back to the system when freed, instead of raising
	 * the heap for good after a busy moment. A fixed threshold also
	 * keeps LMDB's calloc'd 2 MiB dirty list untouched until used. */
	(void)mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	mailproc.rate_limit = (unsigned)conf_int("command_rate_limit");
	mailproc.idle_ms = (unsigned)conf_time("idle_timeout") * 1000;
	mailproc.line_max = (size_t)conf_int("pop3_line_limit");
	mailproc.compress = conf_bool("imap_compress");
	imap_session_offer_compress(mailproc.compress);
	mailproc.loop = ioloop_new();
	if (notify_new(mailproc.loop, &mailproc.notify, &error) < 0)
		log_warning("%s: IMAP IDLE reports changes at the next "
		    "command only", error);
	if (ioloop_signal_add(mailproc.loop, SIGTERM, mailproc_signal,
	    mailproc.loop) < 0)
		log_fatal("signals: cannot watch SIGTERM");
	mailproc.master = chan_new(mailproc.loop, LOFTD_FD_MASTER,
	    &mailproc_master_cb, NULL);
	ioloop_run(mailproc.loop);
	while (mailproc.sessions != NULL) {
		struct mailproc_session *s = mailproc.sessions;

		if (s->reason == NULL)
			s->reason = "shutdown";
		mailproc_log_logout(s);
		mailproc_session_free(s);
	}
	chan_free(&mailproc.master);
	notify_free(&mailproc.notify);
	ioloop_free(&mailproc.loop);
	conf_reset();
	return 0;
}
