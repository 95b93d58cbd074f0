/*
 * smtp_conn.h: the client side of loftd's SMTP-speaking roles, smtpd
 * (SMTP, submission) and lmtp (LMTP), which differ in what they do with
 * a recipient and a message but not in how they hold a client: the
 * connection from the master (LOFTD_CONN_NEW), the smtp_session engine
 * fed from it, the engine's replies written back, STARTTLS, the timeouts
 * and the log lines of a client's life ("connect from", "lost connection
 * after RCPT from", "disconnect from"), and the process's list of
 * clients. One process serves one role, so the state here is the
 * process's.
 *
 * A role's client structure starts with a struct smtp_conn (its first
 * member), and the engine's ctx is that structure: a role's engine
 * callbacks get their own client, and smtp_conn_engine_write,
 * smtp_conn_engine_start_tls and smtp_conn_engine_closed, which a role
 * puts in its smtp_callbacks, get the smtp_conn at the same address.
 */
#ifndef LOFT_LOFTD_SMTP_CONN_H
#define LOFT_LOFTD_SMTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "smtp_addr.h"
#include "smtp_session.h"

struct conn;
struct ioloop;
struct ipc_msg;
struct role_conn;
struct timeout;
struct tls_ctx;

/* "unknown[" address "]" for the log. */
#define SMTP_CONN_CLIENT_MAX	(NET_ADDR_STR_MAX + 16)
/* A path as smtp_path_format writes it, with room to spare. */
#define SMTP_CONN_PATH_BUF	(SMTP_PATH_MAX + 3)

struct smtp_conn {
	struct smtp_conn *prev, *next;	/* the process's clients */
	uint32_t id;			/* the master's conn_id */
	uint32_t service;
	char rip[NET_ADDR_STR_MAX];	/* "" on a UNIX socket */
	char client[SMTP_CONN_CLIENT_MAX];	/* "unknown[ip]" or "local" */
	struct net_addr addr;		/* rip, for relay control */
	bool have_addr;			/* ... when rip is an address */
	struct conn *conn;		/* owned */
	struct smtp_session *smtp;	/* owned; NULL until smtp_conn_start */
	bool secured;			/* TLS is on */
	bool starting_tls;		/* STARTTLS answered, not yet on */
	bool quit;			/* closing after the last reply */
	bool dying;			/* smtp_conn_kill: freed by the loop */
	bool in_engine;			/* inside smtp_session_input */
	struct timeout *kill_to;	/* owned */
	/* The transaction's MAIL (smtp_conn_mail). */
	char helo[SMTP_HELO_MAX + 1];
	char sender[SMTP_CONN_PATH_BUF];	/* without <>; "" for <> */
	/* Counts for the disconnect line. */
	unsigned n_mail, n_rcpt, n_rcpt_ok, n_data, n_data_ok, n_auth,
	    n_auth_ok;
};

/* What a role adds. */
struct smtp_conn_ops {
	/* The engine's callbacks, ctx the role's client (see above). */
	const struct smtp_callbacks *engine;
	/* hello: the greeting command of the protocol, "EHLO" or "LHLO",
	 * the state named in the log after it. */
	const char *hello;
	/* auth: the disconnect line counts AUTH (n_auth, n_auth_ok). */
	bool auth;
	/* in_rcpt: whether the transaction has a recipient, accepted or
	 * awaiting its decision ("after RCPT", not "after MAIL"). */
	bool (*in_rcpt)(const struct smtp_conn *sc);
	/* free: release the role's part of sc, which is about to go (its
	 * session still exists: freeing it runs the engine's reset). */
	void (*free)(struct smtp_conn *sc);
	/* conn_new: a LOFTD_CONN_NEW from the master (role_master_ops). */
	void (*conn_new)(struct role_conn *rc);
	/* master_msg: another record from the master; false if the role
	 * does not take it. May be NULL. */
	bool (*master_msg)(struct ipc_msg *m);
	/* stop: the loop has stopped; the clients and the master channel
	 * are still there (they go next). May be NULL. */
	void (*stop)(void);
};

/* smtp_conn_role_init: what an smtpd or lmtp process does first: log as
 * program, ignore SIGPIPE, umask 077, and take myhostname (fatal if it is
 * not a host name). */
void smtp_conn_role_init(const char *program, bool foreground,
    bool have_log_fd);
/* smtp_conn_hostname: myhostname, as smtp_conn_role_init took it. */
const char *smtp_conn_hostname(void);

/* smtp_conn_loop_new: the event loop (SIGTERM stops it) with the master
 * channel on it, clients timing out after smtpd_timeout; ops is kept, tls
 * (not owned, kept; NULL: none) serves implicit TLS and STARTTLS.
 * Returns the loop, which stays smtp_conn's. */
struct ioloop *smtp_conn_loop_new(const struct smtp_conn_ops *ops,
    struct tls_ctx *tls);
/* smtp_conn_loop_run: serve until the loop stops, then free every client
 * (without telling the master) and close the master channel. */
void smtp_conn_loop_run(void);
/* smtp_conn_loop_free: free the loop and the configuration; last. */
void smtp_conn_loop_free(void);

/* smtp_conn_add: set up sc (zeroed by the caller, the first member of a
 * role's client) for the connection rc announces: takes rc->fd, links sc
 * into the list, logs "connect from", starts implicit TLS when rc->tls.
 * Returns 0, or -1 when TLS could not start (sc is then being killed:
 * only return). */
int smtp_conn_add(struct smtp_conn *sc, struct role_conn *rc);
/* smtp_conn_settings: the engine settings every role shares (hostname,
 * size, recipient and error limits) into set, the rest zero. */
void smtp_conn_settings(struct smtp_settings *set);
/* smtp_conn_start: the engine for sc with set and ops->engine; greets. */
void smtp_conn_start(struct smtp_conn *sc, const struct smtp_settings *set);
/* smtp_conn_first: the first client of the process (then ->next). */
struct smtp_conn *smtp_conn_first(void);

/* smtp_conn_feed: give the engine what the client sent, as much as it
 * takes; call when a decision it waited for has been given. */
void smtp_conn_feed(struct smtp_conn *sc);
/* smtp_conn_kill: end sc from a callback that may still use it: it is
 * logged and freed from the loop, right after. */
void smtp_conn_kill(struct smtp_conn *sc);
/* smtp_conn_mail: note MAIL's HELO name and sender and count it. */
void smtp_conn_mail(struct smtp_conn *sc, const struct smtp_mail *m);
/* smtp_conn_path_bare: p without its angle brackets into out (size). */
void smtp_conn_path_bare(const struct smtp_path *p, char *out, size_t size);
/* smtp_conn_received: the Received: line (RFC 5321 section 4.4) of a
 * message from sc, with protocol with (RFC 3848), ID id, for rcpt (a
 * path in <>, or NULL); the caller's to free. */
char *smtp_conn_received(const struct smtp_conn *sc, const char *with,
    const char *id, const char *rcpt);

/* The engine callbacks every role shares; ctx is the smtp_conn. */
void smtp_conn_engine_write(void *ctx, const unsigned char *data,
    size_t len);
void smtp_conn_engine_start_tls(void *ctx);
void smtp_conn_engine_closed(void *ctx);

#endif
