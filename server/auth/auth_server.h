/*
 * auth_server.h: the auth service of loftd. It answers the records of
 * auth_proto.h from login processes, one ipc channel per login process,
 * on the process's ioloop: plain user/password checks, SASL exchanges
 * (lib/sasl), the list of mechanisms. Failed logins are counted per
 * client IP and per user name and their answers are held back for a delay
 * that grows with the count, with an ioloop timeout, so other requests
 * keep being answered meanwhile.
 *
 * Every successful login on a login channel is given a one-time token
 * (auth_proto.h), remembered here with the canonical user name, service,
 * client IP and issue time. The master redeems it once, within
 * token_ttl_secs, on its own channel (auth_conn_new_master) for the user
 * record, so it never takes the login process's word for who logged in.
 *
 * Configuration read (conf.h): disable_plaintext_auth (PLAIN and LOGIN,
 * and AUTH_REQ_PLAIN, only on secure connections unless "no"), and what
 * user_lookup reads.
 */
#ifndef LOFT_AUTH_SERVER_H
#define LOFT_AUTH_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ioloop.h"
#include "ipc.h"

/* Defaults of struct auth_settings. */
#define AUTH_FAIL_DELAY_MS		500	/* per counted failure */
#define AUTH_FAIL_DELAY_MAX_MS		5000
#define AUTH_FAIL_FORGET_SECS		3600	/* idle counter restarts */
#define AUTH_FAIL_TABLE_MAX		4096	/* IPs; users, separately */
#define AUTH_SASL_SESSIONS_MAX		1024	/* per channel */
#define AUTH_TOKENS_MAX			1024	/* not yet redeemed */
#define AUTH_TOKEN_TTL_SECS		60

struct auth_settings {
	/* The answer to a failure waits fail_delay_ms times the larger of
	 * the IP's and the user's failure counts (this one included), at
	 * most fail_delay_max_ms. 0 answers at once. */
	unsigned int fail_delay_ms;
	unsigned int fail_delay_max_ms;
	/* A counter not touched for this long starts again from 0. */
	unsigned int fail_forget_secs;
	/* Entries per failure table (>= 1); when full, the least recently
	 * touched entry is dropped. */
	size_t fail_table_max;
	/* SASL exchanges open at once on one channel (>= 1); starting one
	 * more drops the oldest, whose later steps are answered FAIL. */
	size_t sasl_sessions_max;
	/* Login tokens held at once (>= 1); issuing one more drops (and
	 * wipes) the oldest, which is then unknown to the master. */
	size_t tokens_max;
	/* A token is redeemable for this long after it was issued (>= 1):
	 * at an age of token_ttl_secs * 1000 ms it has expired. */
	unsigned int token_ttl_secs;
};

struct auth_server;
struct auth_conn;

/* auth_settings_default: the AUTH_* defaults above. */
void auth_settings_default(struct auth_settings *set_r);

/*
 * auth_server_new: a service on loop with settings set (copied). Calls
 * sasl_lib_init("loft-auth") and prepares a dummy hash, so an unknown
 * user costs as much as a wrong password. Returns 0 and *srv_r, or -1
 * with *error_r (libsasl2 or libxcrypt failed).
 */
int auth_server_new(struct ioloop *loop, const struct auth_settings *set,
    struct auth_server **srv_r, const char **error_r);
/* auth_server_free: close every channel (freeing their SASL sessions and
 * dropping held answers) and free *srv; *srv becomes NULL. The caller
 * calls sasl_lib_deinit if it wants. */
void auth_server_free(struct auth_server **srv);

/* auth_server_set_idle_cb: call cb(ctx) whenever the last channel has
 * closed (e.g. to stop the loop: a process serving one login channel then
 * exits cleanly once that channel breaks or closes). */
void auth_server_set_idle_cb(struct auth_server *srv, void (*cb)(void *ctx),
    void *ctx);
/* auth_server_channels: channels open now. */
size_t auth_server_channels(const struct auth_server *srv);

/*
 * auth_conn_new: serve the login process at the other end of the UNIX
 * stream socket fd (owned from now on) from the loop: each request read
 * goes through auth_server_handle and its answer is sent at once or after
 * the failure delay. A malformed record, a record of a type login channels
 * may not send (AUTH_REQ_USER), a clean or unclean close, or a peer that
 * stops reading past IPC_QUEUE_MAX closes this channel only: its SASL
 * sessions are freed, its held answers dropped, a warning logged for a
 * protocol error, and the other channels go on. Tokens it was given stay
 * redeemable. Never NULL.
 */
struct auth_conn *auth_conn_new(struct auth_server *srv, int fd);
/*
 * auth_conn_new_master: serve the master at the other end of fd (owned
 * from now on), as auth_conn_new, except that AUTH_REQ_USER is the only
 * request it may send (any other type is a protocol error that closes
 * the channel). Answers are never delayed. Never NULL.
 */
struct auth_conn *auth_conn_new_master(struct auth_server *srv, int fd);
/*
 * auth_conn_new_smtpd: serve an smtpd process at the other end of fd
 * (owned from now on), as auth_conn_new (PLAIN, SASL and MECHS, with the
 * same failure counting and delays, under the service "smtp" or
 * "submission"), except that a successful login gets no token (the smtpd
 * process keeps its client: nothing is handed over), and that it may also
 * send AUTH_REQ_EXISTS, which no login channel may: whether a local
 * recipient is a user, answered at once from user_lookup (the name as
 * sent, then in lower case), never counted as a failure. Never NULL.
 */
struct auth_conn *auth_conn_new_smtpd(struct auth_server *srv, int fd);
/* auth_conn_free: close the channel as above; *conn becomes NULL. */
void auth_conn_free(struct auth_conn **conn);

/*
 * auth_server_handle: answer one request read from conn's channel into
 * resp (initialized here). Passwords, SASL responses and tokens in req's
 * payload are wiped (explicit_bzero of the whole payload) before
 * returning, on every path. Returns 0 with *delay_ms_r (0: send now;
 * otherwise hold the answer that many milliseconds: a failure), or -1
 * with *error_r when req is malformed (see auth_proto_req_decode) or of a
 * type conn's kind of channel may not send: the caller closes the channel.
 * Logs one line per failure:
 *	pop3 login failed: user=<alice>, rip=192.0.2.7, reason=...
 * On a login channel an OK login answer carries a new token (if no random
 * bytes can be had, the answer is TEMPFAIL instead); on an smtpd channel
 * it carries none. On a master channel
 * AUTH_REQ_USER is answered with AUTH_RESP_USER and consumes the token
 * whatever the outcome; an unknown token is logged as a warning.
 */
int auth_server_handle(struct auth_conn *conn, struct ipc_msg *req,
    struct ipc_msg *resp, unsigned int *delay_ms_r, const char **error_r);

/*
 * For tests and statistics: auth_server_failures is the failure count of
 * ip in the IP table (user == NULL) or of user in the user table (ip ==
 * NULL); 0 when absent. auth_server_fail_entries: entries in the IP table
 * (users false) or the user table.
 */
unsigned int auth_server_failures(struct auth_server *srv, const char *ip,
    const char *user);
size_t auth_server_fail_entries(const struct auth_server *srv, bool users);
/* auth_server_tokens: tokens issued and neither redeemed nor dropped
 * (expired ones included until then). */
size_t auth_server_tokens(const struct auth_server *srv);

/*
 * auth_server_set_clock: read the monotonic time in milliseconds from
 * now_ms(ctx) instead of CLOCK_MONOTONIC, for token expiry and failure
 * forgetting (for tests: the clock is then theirs to move). NULL restores
 * CLOCK_MONOTONIC.
 */
void auth_server_set_clock(struct auth_server *srv,
    uint64_t (*now_ms)(void *ctx), void *ctx);

#endif
