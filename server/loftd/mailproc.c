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
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
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
#include "server/imap/imap_notify.h"
#include "server/imap/imap_session.h"
#include "chan.h"
#include "loftd.h"
#include "rate.h"
#include "rules.h"

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
/* A batch the master began and did not finish sending (its channel
 * failed it mid-way) is stored after this long with what came. */
#define MAILPROC_BATCH_WAIT_MS	1000

/* One item of a LOFTD_DELIVER_BATCH, until the batch is stored. */
struct mailproc_batch_item {
	uint32_t id;			/* the master's */
	int fd;				/* owned: the content */
	char *qid, *rcpt, *sender;	/* owned */
};

/* The items of the batch being received (loftd.h). */
struct mailproc_batch {
	struct user *user;		/* owned: of the first item */
	struct mailproc_batch_item item[LOFTD_BATCH_MAX];
	size_t n;
	uint32_t left;			/* as the last item said */
	struct timeout *wait_to;	/* owned: MAILPROC_BATCH_WAIT_MS */
};

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
	struct mailproc_agent *agents;	/* owned: loft-deliver runs */
	size_t nagents;
	char agent_path[4096];		/* loft-deliver, or "" */
	struct mailproc_batch *batch;	/* owned: LOFTD_DELIVER_BATCH items
					   collected, or NULL */
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
	if (mailproc.retired && mailproc.nsessions == 0 &&
	    mailproc.nagents == 0)
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

	/* rcpt NULL: the content alone (for loft-deliver, which adds
	 * them). */
	if (rcpt != NULL && buf_printf(out, "Return-Path: <%s>\n"
	    "Delivered-To: %s\n", sender, rcpt) < 0)
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
	/* No .forward and no rules (those go to loft-deliver: see
	 * mailproc_agent_start): as Postfix's local(8) by default,
	 * everything goes to INBOX, user+tag included. */
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

/*
 * A user with a ~/.forward or a rule file (mda_rules_file) gets the
 * message through loft-deliver, which runs them (forward.h, rules.h):
 * this process, which links no PCRE2 and already runs as the user, forks
 * it with the queued content on its standard input, as Postfix's local(8)
 * runs a mailbox_command, and reads its exit status and the line it
 * writes on standard error (an enhanced status code, then the reason)
 * without waiting for it: a rule's command may take up to
 * mda_command_timeout, and the user's sessions in this process go on.
 */
#define MAILPROC_AGENT_ERR_MAX	1024

struct mailproc_agent {
	struct mailproc_agent *next;
	pid_t pid;
	int err_fd;			/* owned: its standard error */
	struct io *io;			/* owned */
	char err[MAILPROC_AGENT_ERR_MAX];
	size_t err_len;
	uint32_t id;			/* the master's request */
	char qid[64];
	char rcpt[MAILPROC_ADDR_MAX];
	char user[USER_NAME_MAX + 1];
};

/* Whether u has a .forward or a rule file (a stat each: cheap next to a
 * delivery). */
static bool
mailproc_agent_wanted(const struct user *u)
{
	char path[4096];
	struct stat st;

	if (mailproc.agent_path[0] == '\0' || u->home[0] == '\0')
		return false;
	if ((size_t)snprintf(path, sizeof(path), "%s/.forward", u->home) <
	    sizeof(path) && lstat(path, &st) == 0)
		return true;
	return rules_file_path(conf_str("mda_rules_file"), u->home, path,
	    sizeof(path)) && stat(path, &st) == 0;
}

/* loft-deliver beside this program (installed), or in the build tree. */
static void
mailproc_agent_find(void)
{
	char self[3072], *slash;	/* room for the suffixes below */
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	mailproc.agent_path[0] = '\0';
	if (n <= 0)
		return;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return;
	*slash = '\0';
	snprintf(mailproc.agent_path, sizeof(mailproc.agent_path),
	    "%s/loft-deliver", self);
	if (access(mailproc.agent_path, X_OK) == 0)
		return;
	snprintf(mailproc.agent_path, sizeof(mailproc.agent_path),
	    "%s/../../mda/loft-deliver", self);
	if (access(mailproc.agent_path, X_OK) != 0)
		mailproc.agent_path[0] = '\0';
}

static void
mailproc_agent_done(struct mailproc_agent *a)
{
	const char *dsn = "4.3.0", *text = "delivery agent failed";
	enum loftd_dstatus status = LOFTD_DELIVER_TEMP;
	char dsnbuf[16], *nl;
	int wst = 0, code;

	while (waitpid(a->pid, &wst, 0) < 0 && errno == EINTR)
		;
	a->err[a->err_len] = '\0';
	if ((nl = strchr(a->err, '\n')) != NULL)
		*nl = '\0';
	/* "loft-deliver: 5.1.1 reason" or "5.1.1 reason": the code. */
	text = a->err;
	if (strncmp(text, "loft-deliver: ", 14) == 0)
		text += 14;
	if (strlen(text) >= 6 && text[0] >= '2' && text[0] <= '5' &&
	    text[1] == '.' && strspn(text + 2, "0123456789.") >= 3) {
		size_t len = strcspn(text, " ");

		if (len < sizeof(dsnbuf)) {
			memcpy(dsnbuf, text, len);
			dsnbuf[len] = '\0';
			dsn = dsnbuf;
			text += len + (text[len] == ' ');
		}
	}
	code = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
	if (code == 0) {
		status = LOFTD_DELIVER_OK;
		if (dsn[0] != '2')
			dsn = "2.0.0";
		if (text[0] == '\0')
			text = "delivered by loft-deliver";
	} else if (code == EX_NOUSER || code == EX_UNAVAILABLE ||
	    code == EX_DATAERR || code == EX_NOPERM || code == EX_USAGE ||
	    code == EX_NOINPUT || code == EX_PROTOCOL || code == EX_CONFIG ||
	    code == EX_NOHOST || code == EX_SOFTWARE) {
		status = LOFTD_DELIVER_PERM;
		if (dsn[0] != '5')
			dsn = "5.3.0";
	} else if (dsn[0] != '4')
		dsn = "4.3.0";
	if (text[0] == '\0')
		text = code < 0 ? "delivery agent killed by a signal" :
		    "delivery agent failed";
	if (status != LOFTD_DELIVER_OK)
		log_info("%s: deliver(%s): to=<%s>, dsn=%s, %s (%s)", a->qid,
		    a->user, a->rcpt, dsn, status == LOFTD_DELIVER_TEMP ?
		    "deferred" : "failed", text);
	mailproc_deliver_answer(a->id, status, dsn, text);
}

static void
mailproc_agent_read(void *ctx)
{
	struct mailproc_agent *a = ctx, **pp;
	char chunk[512];
	ssize_t n = read(a->err_fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		size_t room = sizeof(a->err) - 1 - a->err_len;
		size_t take = (size_t)n < room ? (size_t)n : room;

		memcpy(a->err + a->err_len, chunk, take);
		a->err_len += take;
		return;
	}
	/* EOF (or an error): it has ended, or closed its standard error. */
	io_remove(&a->io);
	close(a->err_fd);
	mailproc_agent_done(a);
	for (pp = &mailproc.agents; *pp != NULL; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	free(a);
	mailproc.nagents--;
	if (mailproc.retired && mailproc.nsessions == 0 &&
	    mailproc.nagents == 0)
		ioloop_stop(mailproc.loop);
}

/* The content of the queue file fd with LF line ends, in a new memfd at
 * offset 0; -1 with text. */
static int
mailproc_agent_input(int fd, char *text, size_t size)
{
	size_t limit = conf_int("message_size_limit") > 0 ?
	    (size_t)conf_int("message_size_limit") + MAILPROC_DELIVER_SLACK :
	    (size_t)-1;
	const char *error = "message too big for the system";
	struct buf msg;
	size_t off = 0;
	int in = -1;

	buf_init(&msg, limit);
	if (mailproc_deliver_compose(fd, NULL, "", &msg, &error) != 0 ||
	    (in = memfd_create("loft-deliver-input", MFD_CLOEXEC)) < 0) {
		snprintf(text, size, "%s", in < 0 && errno != 0 ?
		    strerror(errno) : error);
		buf_free(&msg);
		return -1;
	}
	while (off < msg.len) {
		ssize_t n = write(in, msg.data + off, msg.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(text, size, "memfd: %s", strerror(errno));
			close(in);
			buf_free(&msg);
			return -1;
		}
		off += (size_t)n;
	}
	buf_free(&msg);
	if (lseek(in, 0, SEEK_SET) < 0) {
		close(in);
		return -1;
	}
	return in;
}

/* Start loft-deliver for the message of fd. 0 (the answer comes when it
 * ends), or -1 with text. */
static int
mailproc_agent_start(const struct user *u, int fd, uint32_t id,
    const char *qid, const char *rcpt, const char *sender, char *text,
    size_t size)
{
	struct mailproc_agent *a;
	const char *argv[12];
	char *envp[6];
	int p[2], null, in;
	size_t n = 0;
	pid_t pid;

	/* Its input: the content with LF line ends, as the store keeps
	 * mail, in a file of its own (the queue file's descriptor and its
	 * offset are shared with other deliveries of the same message). */
	if ((in = mailproc_agent_input(fd, text, size)) < 0)
		return -1;
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(text, size, "cannot start the delivery agent: %s",
		    strerror(errno));
		close(in);
		return -1;
	}
	argv[n++] = "loft-deliver";
	argv[n++] = "-c";
	argv[n++] = loftd_conf_path;
	argv[n++] = "-d";
	argv[n++] = u->name;
	argv[n++] = "-f";
	argv[n++] = sender;
	argv[n++] = "-a";
	argv[n++] = rcpt;
	argv[n] = NULL;
	/* Who the user is, since loft-deliver, running as the user, cannot
	 * read the user database (its deliver_user_given). */
	envp[0] = xasprintf("PATH=/usr/local/bin:/usr/bin:/bin");
	envp[1] = xasprintf("LOFT_DELIVER_USER=%s", u->name);
	envp[2] = xasprintf("LOFT_DELIVER_HOME=%s", u->home);
	envp[3] = xasprintf("LOFT_DELIVER_MAIL=%s", u->mail_location != NULL ?
	    u->mail_location : "");
	envp[4] = u->has_quota ? xasprintf("LOFT_DELIVER_QUOTA=%llu",
	    (unsigned long long)u->quota) : xstrdup("LOFT_DELIVER_QUOTA=");
	envp[5] = NULL;
	pid = fork();
	if (pid != 0)
		for (size_t i = 0; envp[i] != NULL; i++)
			free(envp[i]);
	if (pid < 0) {
		snprintf(text, size, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		close(in);
		return -1;
	}
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		null = open("/dev/null", O_RDWR);
		if (dup2(in, 0) < 0 || null < 0 || dup2(null, 1) < 0 ||
		    dup2(p[1], 2) < 0)
			_exit(EX_OSERR);
		execve(mailproc.agent_path, (char *const *)argv, envp);
		_exit(EX_OSERR);
	}
	close(p[1]);
	close(in);
	a = xcalloc(1, sizeof(*a));
	a->pid = pid;
	a->err_fd = p[0];
	a->id = id;
	strlcpy(a->qid, qid, sizeof(a->qid));
	strlcpy(a->rcpt, rcpt, sizeof(a->rcpt));
	strlcpy(a->user, u->name, sizeof(a->user));
	a->io = io_add(mailproc.loop, a->err_fd, IO_READ, mailproc_agent_read,
	    a);
	a->next = mailproc.agents;
	mailproc.agents = a;
	mailproc.nagents++;
	return 0;
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
	} else if (mailproc_agent_wanted(u)) {
		if (mailproc_agent_start(u, fd, id, qid, rcpt, sender, text,
		    sizeof(text)) == 0) {
			close(fd);	/* the agent has its copy */
			user_free(&u);
			return;
		}
		status = LOFTD_DELIVER_TEMP;
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

/*
 * Batches (LOFTD_DELIVER_BATCH): the items of one batch are collected
 * until the last has come, then composed and stored with one
 * store_deliver_batch (one store_open, the fsyncs and the index commit
 * shared), and each is answered.
 */

static void
mailproc_batch_free(struct mailproc_batch **bp)
{
	struct mailproc_batch *b = *bp;

	if (b == NULL)
		return;
	*bp = NULL;
	for (size_t i = 0; i < b->n; i++) {
		close(b->item[i].fd);
		free(b->item[i].qid);
		free(b->item[i].rcpt);
		free(b->item[i].sender);
	}
	timeout_remove(&b->wait_to);
	user_free(&b->user);
	free(b);
}

static void
mailproc_batch_answer(const struct mailproc_batch *b, size_t i,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	char esc[MAILPROC_ADDR_MAX * 4 + 1];

	if (status != LOFTD_DELIVER_OK)
		log_info("%s: deliver(%s): to=<%s>, dsn=%s, %s (%s)",
		    b->item[i].qid, b->user->name, log_escape(b->item[i].rcpt,
		    esc, sizeof(esc)), dsn, status == LOFTD_DELIVER_TEMP ?
		    "deferred" : "failed", text);
	mailproc_deliver_answer(b->item[i].id, status, dsn, text);
}

/* Compose each item (a failure answers it at once) and store the rest
 * into INBOX, as mailproc_deliver_store does one message. */
static void
mailproc_batch_store(struct mailproc_batch *b)
{
	struct store_batch_item *it = xcalloc(b->n, sizeof(*it));
	struct buf *msg = xcalloc(b->n, sizeof(*msg));
	size_t *which = xcalloc(b->n, sizeof(*which)), k = 0;
	size_t limit = conf_int("message_size_limit") > 0 ?
	    (size_t)conf_int("message_size_limit") + MAILPROC_DELIVER_SLACK :
	    (size_t)-1;
	const char *error, *dsn;
	char text[STORE_BATCH_ERROR_MAX + 32];
	struct store *st = NULL;
	enum loftd_dstatus status;
	time_t now = time(NULL);
	int ret;

	for (size_t i = 0; i < b->n; i++) {
		buf_init(&msg[k], limit);
		if ((ret = mailproc_deliver_compose(b->item[i].fd,
		    b->item[i].rcpt, b->item[i].sender, &msg[k],
		    &error)) != 0) {
			buf_free(&msg[k]);
			mailproc_batch_answer(b, i, ret > 0 ?
			    LOFTD_DELIVER_PERM : LOFTD_DELIVER_TEMP, ret > 0 ?
			    "5.3.4" : "4.3.0", ret > 0 ? "message too big for "
			    "the system" : error);
			continue;
		}
		it[k].d.folder = "INBOX";
		it[k].d.sender = b->item[i].sender;
		it[k].d.received = now;
		it[k].d.msg = msg[k].data;
		it[k].d.len = msg[k].len;
		which[k++] = i;
	}
	if (k > 0 && store_open(b->user, &st, &error) < 0) {
		for (size_t j = 0; j < k; j++)
			mailproc_batch_answer(b, which[j], LOFTD_DELIVER_TEMP,
			    "4.3.0", error);
		k = 0;
	}
	if (k > 0)
		store_deliver_batch(st, it, k);
	for (size_t j = 0; j < k; j++) {
		status = mailproc_deliver_status(it[j].result, &dsn);
		if (it[j].result == STORE_OK)
			snprintf(text, sizeof(text), "delivered to %s",
			    it[j].done.format);
		else
			snprintf(text, sizeof(text), "%s", it[j].error);
		mailproc_batch_answer(b, which[j], status, dsn, text);
	}
	store_close(&st);
	for (size_t j = 0; j < k; j++)
		buf_free(&msg[j]);
	free(msg);
	free(it);
	free(which);
}

/* Store and answer the batch collected, complete or not. */
static void
mailproc_batch_flush(void)
{
	struct mailproc_batch *b = mailproc.batch;

	if (b == NULL)
		return;
	mailproc.batch = NULL;
	if (b->n > 0)
		mailproc_batch_store(b);
	mailproc_batch_free(&b);
}

static void
mailproc_batch_wait_over(void *ctx)
{
	(void)ctx;
	log_warning("a delivery batch from the master stopped short: "
	    "storing what came");
	mailproc_batch_flush();
}

/* One LOFTD_DELIVER_BATCH item: checked as mailproc_deliver checks a
 * delivery; a user with .forward or rules gets it through loft-deliver
 * at once, as a single delivery; the rest waits for the batch's end. */
static void
mailproc_deliver_batch(struct ipc_msg *m)
{
	const char *qid, *rcpt, *sender, *error;
	struct mailproc_batch *b = mailproc.batch;
	struct mailproc_batch_item *bi;
	struct user *u = NULL;
	char text[512];
	uint32_t id, left;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_str(m, &qid);
	ipc_get_str(m, &rcpt);
	ipc_get_str(m, &sender);
	ipc_get_u32(m, &left);
	if (m->error != NULL || auth_proto_get_user(m, &u, &error) < 0 ||
	    ipc_get_end(m, &error) < 0 || fd < 0 || left >= LOFTD_BATCH_MAX) {
		log_warning("bad delivery batch record from the master");
		user_free(&u);
		if (fd >= 0)
			close(fd);
		return;
	}
	/* Not the next item of the batch under way: that one is over. */
	if (b != NULL && (left + 1 != b->left ||
	    strcmp(u->name, b->user->name) != 0 || b->n == LOFTD_BATCH_MAX)) {
		mailproc_batch_flush();
		b = NULL;
	}
	if (!mailproc_addr_ok(rcpt) || !mailproc_addr_ok(sender) ||
	    mailproc_agent_wanted(u)) {
		/* As a single delivery: answered now, or by the agent. */
		if (!mailproc_addr_ok(rcpt) || !mailproc_addr_ok(sender))
			mailproc_deliver_answer(id, LOFTD_DELIVER_PERM,
			    "5.1.3", "address unfit for a header");
		else if (mailproc_agent_start(u, fd, id, qid, rcpt, sender,
		    text, sizeof(text)) < 0)
			mailproc_deliver_answer(id, LOFTD_DELIVER_TEMP, "4.3.0",
			    text);
		close(fd);
		if (b != NULL)
			b->left = left;
		user_free(&u);
	} else {
		if (b == NULL) {
			b = mailproc.batch = xcalloc(1, sizeof(*b));
			b->user = u;
		} else
			user_free(&u);
		bi = &b->item[b->n++];
		bi->id = id;
		bi->fd = fd;
		bi->qid = xstrdup(qid);
		bi->rcpt = xstrdup(rcpt);
		bi->sender = xstrdup(sender);
		b->left = left;
	}
	if (left == 0)
		mailproc_batch_flush();
	else if (mailproc.batch != NULL && mailproc.batch->wait_to == NULL)
		mailproc.batch->wait_to = timeout_add(mailproc.loop,
		    MAILPROC_BATCH_WAIT_MS, false, mailproc_batch_wait_over,
		    NULL);
}

/*
 * LOFTD_QUOTA_CHECK from the master: would size more bytes fit the user's
 * quota, by what the index counts now (an RCPT's question: the delivery
 * checks again)? An empty size (0) asks whether anything fits at all.
 */
static void
mailproc_quota_check(struct ipc_msg *m)
{
	const char *error, *dsn = "2.1.5", *text = "ok";
	enum loftd_dstatus status = LOFTD_DELIVER_OK;
	uint64_t size, bytes, msgs, limit;
	bool temp = conf_bool("quota_full_tempfail");
	struct user *u = NULL;
	struct store *st = NULL;
	uint32_t id;

	ipc_get_u32(m, &id);
	ipc_get_u64(m, &size);
	if (m->error != NULL || auth_proto_get_user(m, &u, &error) < 0 ||
	    ipc_get_end(m, &error) < 0) {
		log_warning("bad quota record from the master");
		user_free(&u);
		return;
	}
	if (store_open(u, &st, &error) < 0 ||
	    store_quota(st, &bytes, &msgs, &limit, &error) < 0) {
		status = LOFTD_DELIVER_TEMP;
		dsn = "4.3.0";
		text = error;
	} else if (limit > 0 && bytes + (size > 0 ? size : 1) > limit) {
		status = temp ? LOFTD_DELIVER_TEMP : LOFTD_DELIVER_PERM;
		dsn = temp ? "4.2.2" : "5.2.2";
		text = "mailbox full";
	}
	mailproc_deliver_answer(id, status, dsn, text);
	store_close(&st);
	user_free(&u);
}

static void
mailproc_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	/* The master sends a batch's items back to back: anything else
	 * ends one it could not finish. */
	if (m->type != LOFTD_DELIVER_BATCH)
		mailproc_batch_flush();
	if (m->type == LOFTD_SESSION)
		mailproc_session_new(m);
	else if (m->type == LOFTD_DELIVER_BATCH)
		mailproc_deliver_batch(m);
	else if (m->type == LOFTD_DELIVER)
		mailproc_deliver(m);
	else if (m->type == LOFTD_QUOTA_CHECK)
		mailproc_quota_check(m);
	else if (m->type == LOFTD_RETIRE) {
		mailproc.retired = true;
		if (mailproc.nsessions == 0 && mailproc.nagents == 0)
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
	mailproc_agent_find();
	if (notify_new(mailproc.loop, &mailproc.notify, &error) < 0)
		log_warning("%s: IMAP IDLE reports changes at the next "
		    "command only", error);
	/* IMAP NOTIFY watches through it too (none: not offered). */
	imap_notify_use(mailproc.notify);
	if (ioloop_signal_add(mailproc.loop, SIGTERM, mailproc_signal,
	    mailproc.loop) < 0)
		log_fatal("signals: cannot watch SIGTERM");
	mailproc.master = chan_new(mailproc.loop, LOFTD_FD_MASTER,
	    &mailproc_master_cb, NULL);
	ioloop_run(mailproc.loop);
	/* A batch cut short by the master's end: unanswered, which the
	 * master (if still there) reports as a deferral. */
	mailproc_batch_free(&mailproc.batch);
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
