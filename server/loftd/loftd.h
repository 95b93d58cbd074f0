/*
 * loftd.h: the processes of loftd and the records they exchange
 * (doc/design.md, "Process model"). Every process is this one program:
 * the master execs itself with -X ROLE for each child (for a mail process,
 * loftd-mail from the same directory: this program's mail role alone,
 * without OpenSSL and libsasl2; see loftd.c), so that each child starts
 * from a fresh address space (its own ASLR layout, none of the master's
 * memory) and loads only what its role needs.
 *
 *	master	root; binds, accepts, counts connections, spawns and reaps
 *		the others; never parses client input
 *	auth	root; checks credentials (server/auth), issues login tokens
 *	login	login_user, chrooted; TLS and the protocol before login
 *	mail	the mailbox owner's uid; the protocol after login
 *	smtpd	mail_owner, not chrooted (it writes the queue directory);
 *		TLS and SMTP on the smtp, submission and submissions
 *		listeners, relay control, the queue (smtpd.c)
 *	qmgr	mail_owner; one, outside the generations: takes mail out
 *		of the queue, expands aliases, asks the master for local
 *		deliveries and records their results (qmgr.c)
 *	lmtp	mail_owner; one, outside the generations, when lmtp_listen
 *		is set: LMTP (RFC 2033) from the MTA in front of loft,
 *		each recipient checked and each message delivered through
 *		the master as qmgr's are, no queue (lmtpd.c)
 *
 * Descriptors a child finds at start: LOFTD_FD_MASTER, its channel to the
 * master (every role); for login and smtpd, LOFTD_FD_AUTH, its channel to
 * the auth process; for auth, LOFTD_FD_AUTH onwards, one channel per
 * login process of its generation (-n COUNT), then one per smtpd process
 * (-s COUNT); LOFTD_FD_LOG, the maillog file when logging to one (-L).
 *
 * Records (lib/ipc; fields in order, ipc.h types). conn_id names a client
 * connection for the master; a stale or foreign one is ignored.
 *
 * master -> login, and -> smtpd for the SMTP services, -> lmtp for LMTP
 *	LOFTD_CONN_NEW	fd: the accepted socket. u32 conn_id, u32 service,
 *			u32 implicit_tls, str rip, u32 rport, str lip,
 *			u32 lport (LOFTD_SVC_LMTP_UNIX: rip and lip are
 *			"", the ports 0)
 *	LOFTD_LOGIN_RESULT  u32 conn_id, u32 ok (the session was handed to a
 *			mail process; 0: answer a temporary failure)
 *	LOFTD_RETIRE	(no fields) no new connections will come; exit once
 *			the last client (logging in, or relayed) is gone
 * login, smtpd, lmtp -> master (smtpd and lmtp send LOFTD_CONN_DONE only)
 *	LOFTD_LOGIN	fd: the client socket (plaintext) or the mail end of
 *			a relay socketpair (TLS). u32 conn_id, data token,
 *			u32 relayed, u32 secured, data pending (client bytes
 *			after the login command, at most LOFTD_PENDING_MAX)
 *	LOFTD_CONN_DONE	u32 conn_id: this process no longer holds it
 * master -> mail
 *	LOFTD_SESSION	fd. u32 conn_id, u32 service, str rip, u32 rport,
 *			u32 secured, data pending, then the user record of
 *			auth_proto_add_user()
 *	LOFTD_DELIVER	fd: the queued content, read-only. u32 id (the
 *			master's), str queue_id, str rcpt (the address
 *			for Delivered-To:), str sender (Return-Path:,
 *			"" for <>), then the user record, as the master
 *			looked it up
 *	LOFTD_RETIRE	as above: exit once the last session ends
 * mail -> master
 *	LOFTD_CONN_DONE	u32 conn_id: the session ended
 *	LOFTD_DELIVER_RESULT  u32 id, u32 status (enum loftd_dstatus),
 *			str dsn ("2.0.0"), str text (for the log and the
 *			queue's diagnostic)
 * smtpd -> master, and master -> qmgr (relayed as it came)
 *	LOFTD_QUEUED	str queue_id: a message was committed to the queue
 * master -> qmgr
 *	LOFTD_FLUSH	(no fields) SIGUSR1 to the master: deliver every
 *			deferred message now (Postfix's postqueue -f)
 *	LOFTD_RETIRE	finish the deliveries under way, then exit
 *	LOFTD_DELIVER_RESULT  u32 req (qmgr's), u32 status, str dsn,
 *			str text
 * qmgr -> master, and lmtp -> master
 *	LOFTD_DELIVER	fd: the content (data/ID; for lmtp, its spool
 *			file), read-only. u32 req (the sender's number,
 *			repeated in the result), str queue_id (lmtp: an
 *			ID of the same form, for the log only), str user
 *			(a local name: the master looks it up, as
 *			itself, then without its recipient_delimiter
 *			extension, then in lower case), str rcpt, str
 *			sender. The master answers every request exactly
 *			once.
 * master -> lmtp
 *	LOFTD_DELIVER_RESULT  as to qmgr
 * lmtp or smtpd -> master (smtpd for a recipient the auth process knows)
 *	LOFTD_LMTP_RCPT	u32 req, str user (looked up as for LOFTD_DELIVER),
 *			u64 size (MAIL's SIZE=, 0: not given). Answered
 *			once with LOFTD_LMTP_RCPT_RESULT: u32 req, u32
 *			status (enum loftd_dstatus), str dsn, str text:
 *			OK for a user whose quota limit (quota=, else
 *			mailbox_size_limit) size does not exceed; PERM
 *			5.1.1 for no user, PERM 5.2.2 (TEMP 4.2.2 with
 *			quota_full_tempfail) for a size over the limit,
 *			TEMP 4.3.0 when the user database cannot be
 *			read. When a limit applies, the usage is asked
 *			of the mail process of the user's owner (only it
 *			opens the index): LOFTD_QUOTA_CHECK, below, and
 *			its answer is the RCPT's.
 * master -> mail
 *	LOFTD_QUOTA_CHECK  u32 id, u64 size, then the user record as in
 *			LOFTD_DELIVER. Answered with LOFTD_DELIVER_RESULT
 *			(u32 id, u32 status, str dsn, str text): OK when
 *			usage + size fits the limit, else PERM 5.2.2 (TEMP
 *			4.2.2 with quota_full_tempfail), TEMP 4.3.0 when
 *			the index cannot be read.
 * qmgr -> master
 *	LOFTD_DELIVER_LOCAL  an alias's command or file: see localcmd.h.
 *	LOFTD_DELIVER_BATCH  one item of a batch of deliveries to the same
 *			user, sent back to back, one record (and one
 *			descriptor) per item: fd: the content, read-only.
 *			u32 req, str queue_id, str user, str rcpt, str
 *			sender (as LOFTD_DELIVER), then u32 left: how many
 *			items of the batch follow this one (0: the last).
 *			A batch holds at most LOFTD_BATCH_MAX items and
 *			LOFTD_BATCH_BYTES of content; every item names the
 *			same user, and no other record comes between its
 *			items: a record that breaks this is a protocol
 *			error (the master closes the channel). Each item
 *			is answered once with LOFTD_DELIVER_RESULT, as a
 *			LOFTD_DELIVER is.
 * master -> mail
 *	LOFTD_DELIVER_BATCH  the items of one batch the master checked,
 *			back to back, one record and descriptor each: fd:
 *			the content. u32 id (the master's), str queue_id,
 *			str rcpt, str sender, u32 left (items of the batch
 *			that follow), then the user record (the same in
 *			every item). The mail process stores them with one
 *			store_deliver_batch once the last (left 0) is in,
 *			and answers each id once with LOFTD_DELIVER_RESULT.
 *			Should the master fail to send the rest of a batch,
 *			what came is stored after MAILPROC_BATCH_WAIT_MS, or
 *			as soon as any other record arrives.
 */
#ifndef LOFT_LOFTD_H
#define LOFT_LOFTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOFTD_FD_MASTER		3
#define LOFTD_FD_AUTH		4
#define LOFTD_FD_LOG		70
/* A sealed memfd with the configuration text the master runs with, so
 * that a child spawned after a refused reload does not read the broken
 * file. */
#define LOFTD_FD_CONF		71
/* Most login and smtpd processes together (and so auth channels) in one
 * generation. */
#define LOFTD_LOGIN_MAX		64
/* Client bytes carried over from the login to the mail process. */
#define LOFTD_PENDING_MAX	8192
/* Deliveries the master has under way for the qmgr process at once; a
 * request past it is answered with a temporary failure. */
#define LOFTD_DELIVER_MAX	256

enum loftd_service {
	LOFTD_SVC_POP3 = 1,
	LOFTD_SVC_IMAP = 2,
	LOFTD_SVC_SMTP = 3,		/* smtp_listen: port 25 */
	LOFTD_SVC_SUBMISSION = 4,	/* submission_listen: 587 */
	LOFTD_SVC_SUBMISSIONS = 5,	/* submissions_listen: 465, TLS */
	LOFTD_SVC_LMTP = 6,		/* lmtp_listen, a TCP address */
	LOFTD_SVC_LMTP_UNIX = 7		/* lmtp_listen, a UNIX socket path */
};

enum loftd_rec {
	LOFTD_CONN_NEW = 200,
	LOFTD_LOGIN_RESULT = 201,
	LOFTD_RETIRE = 202,
	LOFTD_LOGIN = 210,
	LOFTD_CONN_DONE = 211,
	LOFTD_SESSION = 220,
	LOFTD_DELIVER = 230,
	LOFTD_DELIVER_RESULT = 231,
	LOFTD_QUEUED = 232,
	LOFTD_FLUSH = 233,
	LOFTD_LMTP_RCPT = 234,
	LOFTD_LMTP_RCPT_RESULT = 235,
	LOFTD_QUOTA_CHECK = 236,
	LOFTD_DELIVER_LOCAL = 237,	/* localcmd.h */
	LOFTD_DELIVER_BATCH = 238
};

/* A batch of deliveries to one user (LOFTD_DELIVER_BATCH): at most this
 * many items, and this many bytes of content (a single message larger
 * than that goes alone). */
#define LOFTD_BATCH_MAX		32
#define LOFTD_BATCH_BYTES	(4u * 1024 * 1024)

/* The outcome of a local delivery (LOFTD_DELIVER_RESULT). */
enum loftd_dstatus {
	LOFTD_DELIVER_OK = 0,		/* stored: 2.0.0 */
	LOFTD_DELIVER_TEMP = 1,		/* try again later: 4.x.x */
	LOFTD_DELIVER_PERM = 2		/* never: 5.x.x */
};

/* The roles' entry points; each returns the process's exit status. */
int master_main(const char *conf_path, bool foreground);
int authproc_main(int login_channels, int smtpd_channels, bool foreground,
    bool have_log_fd);
int login_main(bool foreground, bool have_log_fd);
int smtpd_main(bool foreground, bool have_log_fd);
int mailproc_main(bool foreground, bool have_log_fd);
/* The configuration file loftd was started with (-c), for the programs
 * a child runs (loft-deliver). */
extern const char *loftd_conf_path;
int qmgr_main(bool foreground, bool have_log_fd);
int lmtpd_main(bool foreground, bool have_log_fd);

/* loftd_log_setup: log as program (e.g. "pop3-login") where the loaded
 * configuration says: the inherited LOFTD_FD_LOG when have_log_fd, else
 * syslog, or standard error in the foreground. */
void loftd_log_setup(const char *program, bool foreground,
    bool have_log_fd);

/* loftd_service_name: "pop3" for LOFTD_SVC_POP3; "smtp" for
 * LOFTD_SVC_SMTP, "submission" for both submission services (the names
 * of auth_proto.h). */
const char *loftd_service_name(uint32_t service);
/* loftd_service_smtp: whether service is one of the SMTP services, which
 * the smtpd processes serve. */
bool loftd_service_smtp(uint32_t service);
/* loftd_service_lmtp: whether service is LMTP (TCP or UNIX socket), which
 * the lmtp process serves. */
bool loftd_service_lmtp(uint32_t service);

/* loftd_date: the current time as an RFC 5322 date-time in local time,
 * without the locale's names ("Tue, 3 Jun 2025 14:05:09 +0200"), for
 * Received: lines; into out (size bytes, 64 suffices). */
void loftd_date(char *out, size_t size);

/*
 * loftd_drop_privileges: when running as root, become for good the
 * account the configuration parameter param names (login_user,
 * mail_owner), chrooted into chroot_dir unless it is NULL or empty (not
 * under AddressSanitizer, whose leak check reads /proc at exit); then no
 * children (RLIMIT_NPROC 0), no_new_privs, not dumpable. Fatal on any
 * failure. Not root: nothing changes.
 */
void loftd_drop_privileges(const char *param, const char *chroot_dir);
/* loftd_stop_on_sigterm: SIGTERM stops loop (ioloop_stop). Fatal if the
 * signal cannot be watched. */
struct ioloop;
void loftd_stop_on_sigterm(struct ioloop *loop);

/* role.c, for the login and smtpd roles. role_tls_ctx: the server TLS
 * context of tls_cert_file and the other tls_ parameters, or *ctx_r NULL
 * when no certificate is configured; 0, or -1 with *error_r. */
struct tls_ctx;
int role_tls_ctx(struct tls_ctx **ctx_r, const char **error_r);
/* role_auth_mechs: ask the auth process (LOFTD_FD_AUTH, blocking, 10 s at
 * most) for every SASL mechanism it offers, space separated, upper case;
 * *mechs_r is the caller's to free. 0, or -1 with *error_r. */
int role_auth_mechs(char **mechs_r, const char **error_r);

/*
 * role.c: the channel to the master of a login, smtpd or lmtp process
 * (LOFTD_FD_MASTER), one a process. It takes LOFTD_CONN_NEW (parsed, then
 * handed to ops->conn_new) and LOFTD_RETIRE (the process ends once its
 * clients, counted with role_client_add and role_client_remove, are
 * gone), passes any other record to ops->msg, and stops the loop when the
 * master goes.
 */
struct ipc_msg;
/* A LOFTD_CONN_NEW record. The strings point into the record: valid
 * during ops->conn_new only. */
struct role_conn {
	int fd;			/* the client socket: the callee's */
	uint32_t id, service, tls, rport, lport;
	const char *rip, *lip;	/* "" on a UNIX socket */
};
struct role_master_ops {
	/* conn_new: a well-formed LOFTD_CONN_NEW; the role checks that it
	 * is one it serves (else role_conn_refuse) and takes rc->fd. */
	void (*conn_new)(struct role_conn *rc);
	/* msg: any other record than LOFTD_CONN_NEW and LOFTD_RETIRE;
	 * false for one the role does not take (logged). May be NULL. */
	bool (*msg)(struct ipc_msg *m);
};
/* role_master_open: watch LOFTD_FD_MASTER on loop with ops (kept). */
void role_master_open(struct ioloop *loop, const struct role_master_ops *ops);
/* role_master_close: close the channel; nothing more is sent. */
void role_master_close(void);
/* role_master_send: chan_send to the master (m's fd moves); 0 or -1. */
int role_master_send(struct ipc_msg *m);
/* role_conn_done: LOFTD_CONN_DONE for conn_id id, if the master is still
 * there. */
void role_conn_done(uint32_t id);
/* role_conn_refuse: log a bad connection record and close rc->fd. */
void role_conn_refuse(struct role_conn *rc);
/* role_client_add, role_client_remove: count the clients this process
 * holds; the last one's removal ends a retired process (ioloop_stop). */
void role_client_add(void);
void role_client_remove(void);

struct pop3_settings;
/* loftd_pop3_policy: the POP3 policy the configuration sets
 * (pop3_login_delay, pop3_expire) into set, for the login process, which
 * announces it in CAPA, and the mail process, which applies it. */
void loftd_pop3_policy(struct pop3_settings *set);

#endif
