/*
 * auth_server.c: loftd's auth service (see auth_server.h): checks the
 * credentials login processes send over ipc channels against user_lookup
 * and lib/sasl, counts failures per client IP and per user, and holds back
 * the answer to a failure with an ioloop timeout. It issues a one-time
 * token for every successful login and redeems it, once, for the user
 * record on the master's channel.
 *
 * SECURITY: this is the only process that reads the password database.
 * Its peers, the login processes, talk to the network and are not trusted:
 * records are decoded by auth_proto (every length checked, a malformed
 * record closes that channel), user names are checked by user_name_valid
 * before any lookup, texts from the peer are escaped before they are
 * logged, and passwords never reach the log and are wiped from the record
 * once checked. The failure tables and SASL sessions are bounded, so a
 * peer cannot grow this process without limit.
 *
 * Tokens are what the master believes instead of the login process, so
 * they are 128 bits from the OpenSSL CSPRNG, compared in constant time,
 * good once and for token_ttl_secs, held in a bounded table and wiped when
 * they leave it. Only a master channel may redeem them and a master
 * channel may do nothing else, so a login process cannot turn a token (its
 * own or a guessed one) into a user record.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "compat/compat.h"
#include "conf.h"
#include "log.h"
#include "pwhash.h"
#include "sasl.h"
#include "user.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "auth_server.h"

#define AUTH_KEY_MAX	(USER_NAME_MAX + 1)
/* A service name with its NUL: "submission" is the longest. */
#define AUTH_SERVICE_MAX	16
#define AUTH_TEMPFAIL_PREFIX "temporary failure"

/* One failure counter, keyed by IP text or user name. */
struct auth_fail {
	char key[AUTH_KEY_MAX];
	unsigned int count;
	uint64_t last_ms;	/* monotonic, for fail_forget_secs */
	uint64_t stamp;		/* LRU order */
};

struct auth_fail_table {
	struct auth_fail *v;	/* owned; max entries */
	size_t n, max;
};

/* An open SASL exchange of one channel. */
struct auth_sasl {
	struct auth_sasl *prev, *next;	/* conn's list, oldest first */
	uint32_t id;			/* id of its SASL_START */
	struct sasl_sess *sess;		/* owned */
	char service[AUTH_SERVICE_MAX];
	char ip[AUTH_KEY_MAX];
	char mech[32];
	char user[AUTH_KEY_MAX];	/* claimed by the client, or "" */
	unsigned int steps;
};

/* A login token, issued and not yet redeemed; all zero when free. */
struct auth_token {
	bool used;
	unsigned char token[AUTH_TOKEN_LEN];
	char user[AUTH_KEY_MAX];	/* canonical */
	char service[AUTH_SERVICE_MAX];
	char ip[AUTH_KEY_MAX];
	uint64_t issued_ms;		/* the server's clock */
	uint64_t seq;			/* issue order: oldest is lowest */
};

/* An answer held back for the failure delay. */
struct auth_pending {
	struct auth_pending *prev, *next;
	struct auth_conn *conn;
	struct timeout *to;		/* owned */
	struct ipc_msg *msg;		/* owned */
};

struct auth_conn {
	struct auth_conn *prev, *next;
	struct auth_server *srv;
	bool master;			/* the master's, not a login's */
	bool smtpd;			/* an smtpd process's */
	struct ipc_chan *chan;		/* owned */
	struct io *io_read, *io_write;	/* owned */
	struct auth_sasl *sasl_head, *sasl_tail;
	size_t sasl_count;
	struct auth_pending *pending;	/* owned list */
};

struct auth_server {
	struct ioloop *loop;		/* not owned */
	struct auth_settings set;
	char *dummy_hash;		/* owned */
	struct auth_fail_table ips, users;
	uint64_t clock;
	struct auth_token *tokens;	/* owned; tokens_max slots */
	size_t ntokens;
	uint64_t token_seq;
	uint64_t (*now_ms)(void *ctx);	/* NULL: CLOCK_MONOTONIC */
	void *now_ctx;
	struct auth_conn *conns;	/* owned list */
	size_t nconns;
	void (*idle_cb)(void *ctx);
	void *idle_ctx;
};

/* Scratch records: this process is single-threaded and a handler never
 * runs inside another, so one of each is enough. */
static struct ipc_msg auth_req_msg, auth_resp_msg;

void
auth_settings_default(struct auth_settings *set_r)
{
	set_r->fail_delay_ms = AUTH_FAIL_DELAY_MS;
	set_r->fail_delay_max_ms = AUTH_FAIL_DELAY_MAX_MS;
	set_r->fail_forget_secs = AUTH_FAIL_FORGET_SECS;
	set_r->fail_table_max = AUTH_FAIL_TABLE_MAX;
	set_r->sasl_sessions_max = AUTH_SASL_SESSIONS_MAX;
	set_r->tokens_max = AUTH_TOKENS_MAX;
	set_r->token_ttl_secs = AUTH_TOKEN_TTL_SECS;
}

static uint64_t
auth_now_ms(struct auth_server *srv)
{
	struct timespec ts;

	if (srv->now_ms != NULL)
		return srv->now_ms(srv->now_ctx);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Failure tables.
 */

static struct auth_fail *
auth_fail_find(struct auth_fail_table *t, const char *key)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->v[i].key, key) == 0)
			return &t->v[i];
	return NULL;
}

/* The entry for key, made (dropping the least recently touched one when
 * full) if absent. */
static struct auth_fail *
auth_fail_get(struct auth_server *srv, struct auth_fail_table *t,
    const char *key)
{
	struct auth_fail *f;
	size_t i, old = 0;

	if ((f = auth_fail_find(t, key)) != NULL)
		return f;
	if (t->n < t->max) {
		f = &t->v[t->n++];
	} else {
		for (i = 1; i < t->n; i++)
			if (t->v[i].stamp < t->v[old].stamp)
				old = i;
		f = &t->v[old];
	}
	memset(f, 0, sizeof(*f));
	(void)strlcpy(f->key, key, sizeof(f->key));
	(void)srv;
	return f;
}

/* Count one failure of key; returns the count, this one included. */
static unsigned int
auth_fail_add(struct auth_server *srv, struct auth_fail_table *t,
    const char *key)
{
	struct auth_fail *f = auth_fail_get(srv, t, key);
	uint64_t now = auth_now_ms(srv);

	if (f->count > 0 && now - f->last_ms >
	    (uint64_t)srv->set.fail_forget_secs * 1000)
		f->count = 0;
	if (f->count < UINT32_MAX)
		f->count++;
	f->last_ms = now;
	f->stamp = ++srv->clock;
	return f->count;
}

static void
auth_fail_forget(struct auth_fail_table *t, const char *key)
{
	struct auth_fail *f = auth_fail_find(t, key);

	if (f != NULL)
		f->count = 0;
}

/* Count a failure of ip and (if known) user; the delay it earns. */
static unsigned int
auth_fail_count(struct auth_server *srv, const char *ip, const char *user)
{
	unsigned int n, nu = 0;
	uint64_t d;

	n = auth_fail_add(srv, &srv->ips, ip);
	if (user != NULL && user[0] != '\0')
		nu = auth_fail_add(srv, &srv->users, user);
	if (nu > n)
		n = nu;
	d = (uint64_t)srv->set.fail_delay_ms * n;
	if (d > srv->set.fail_delay_max_ms)
		d = srv->set.fail_delay_max_ms;
	return (unsigned int)d;
}

unsigned int
auth_server_failures(struct auth_server *srv, const char *ip,
    const char *user)
{
	struct auth_fail *f;

	f = ip != NULL ? auth_fail_find(&srv->ips, ip) :
	    auth_fail_find(&srv->users, user);
	return f != NULL ? f->count : 0;
}

size_t
auth_server_fail_entries(const struct auth_server *srv, bool users)
{
	return users ? srv->users.n : srv->ips.n;
}

/*
 * Login tokens.
 */

static void
auth_token_drop(struct auth_server *srv, struct auth_token *t)
{
	explicit_bzero(t, sizeof(*t));
	srv->ntokens--;
}

/* A free slot, made by dropping the oldest token when the table is full. */
static struct auth_token *
auth_token_slot(struct auth_server *srv)
{
	struct auth_token *old = NULL;
	size_t i;

	for (i = 0; i < srv->set.tokens_max; i++) {
		if (!srv->tokens[i].used)
			return &srv->tokens[i];
		if (old == NULL || srv->tokens[i].seq < old->seq)
			old = &srv->tokens[i];
	}
	log_warning("auth: %zu login tokens not redeemed: dropping the "
	    "oldest", srv->ntokens);
	auth_token_drop(srv, old);
	return old;
}

/* Remember a new token for user; NULL if no random bytes could be had. */
static struct auth_token *
auth_token_issue(struct auth_server *srv, const char *user,
    const char *service, const char *ip)
{
	struct auth_token *t = auth_token_slot(srv);

	if (RAND_bytes(t->token, sizeof(t->token)) != 1) {
		explicit_bzero(t->token, sizeof(t->token));
		log_error("auth: no random bytes for a login token");
		return NULL;
	}
	t->used = true;
	(void)strlcpy(t->user, user, sizeof(t->user));
	(void)strlcpy(t->service, service, sizeof(t->service));
	(void)strlcpy(t->ip, ip, sizeof(t->ip));
	t->issued_ms = auth_now_ms(srv);
	t->seq = ++srv->token_seq;
	srv->ntokens++;
	return t;
}

/* The slot holding token, or NULL. Every slot is compared, in constant
 * time each, so timing says nothing about how close a guess came. */
static struct auth_token *
auth_token_find(struct auth_server *srv, const unsigned char *token)
{
	struct auth_token *found = NULL;
	size_t i;

	for (i = 0; i < srv->set.tokens_max; i++)
		if (CRYPTO_memcmp(srv->tokens[i].token, token,
		    AUTH_TOKEN_LEN) == 0 && srv->tokens[i].used)
			found = &srv->tokens[i];
	return found;
}

size_t
auth_server_tokens(const struct auth_server *srv)
{
	return srv->ntokens;
}

/*
 * Outcomes: log, count, answer.
 */

struct auth_outcome {
	enum auth_result result;
	const char *user;		/* canonical or claimed; may be "" */
	const char *reason;
	const unsigned char *challenge;
	size_t challenge_len;
};

static void
auth_log_failure(const char *service, const char *ip, const char *user,
    const char *reason, bool temp)
{
	char euser[AUTH_KEY_MAX * 4], eip[AUTH_KEY_MAX * 4];

	log_escape(user != NULL ? user : "", euser, sizeof(euser));
	log_escape(ip, eip, sizeof(eip));
	if (temp)
		log_error("%s login failed: user=<%s>, rip=%s, reason=%s",
		    service, euser, eip, reason);
	else
		log_info("%s login failed: user=<%s>, rip=%s, reason=%s",
		    service, euser, eip, reason);
}

static void
auth_encode_tempfail(struct ipc_msg *resp, uint32_t id, const char *why)
{
	const char *error;

	(void)auth_proto_resp_encode(resp, id, AUTH_RESULT_TEMPFAIL, "", why,
	    NULL, 0, NULL, 0, &error);
}

/* A successful login: forget its failures, log it, answer with a new
 * token (login channels only; the master never logs anybody in). */
static void
auth_finish_ok(struct auth_conn *conn, uint32_t id, const char *service,
    const char *ip, const struct auth_outcome *o, struct ipc_msg *resp)
{
	struct auth_server *srv = conn->srv;
	struct auth_token *t = NULL;
	char eip[AUTH_KEY_MAX * 4], euser[AUTH_KEY_MAX * 4];
	const char *error;

	/* An smtpd process keeps its session: nothing to redeem. */
	if (!conn->master && !conn->smtpd &&
	    (t = auth_token_issue(srv, o->user, service, ip)) == NULL) {
		auth_encode_tempfail(resp, id, "cannot issue a login token");
		return;
	}
	auth_fail_forget(&srv->ips, ip);
	auth_fail_forget(&srv->users, o->user);
	log_info("%s login: user=<%s>, rip=%s", service,
	    log_escape(o->user, euser, sizeof(euser)),
	    log_escape(ip, eip, sizeof(eip)));
	if (auth_proto_resp_encode(resp, id, o->result, o->user, o->reason,
	    NULL, 0, t != NULL ? t->token : NULL, t != NULL ?
	    AUTH_TOKEN_LEN : 0, &error) < 0) {
		log_error("auth: cannot encode answer: %s", error);
		if (t != NULL)
			auth_token_drop(srv, t);
		auth_encode_tempfail(resp, id, "answer too long");
	}
}

/* Encode the outcome; count and log failures; the delay to hold it. */
static unsigned int
auth_finish(struct auth_conn *conn, uint32_t id, const char *service,
    const char *ip, const struct auth_outcome *o, bool counted,
    struct ipc_msg *resp)
{
	const char *error;
	unsigned int delay = 0;

	if (o->result == AUTH_RESULT_OK) {
		auth_finish_ok(conn, id, service, ip, o, resp);
		return 0;
	}
	if (o->result != AUTH_RESULT_CONTINUE) {
		auth_log_failure(service, ip, o->user, o->reason,
		    o->result == AUTH_RESULT_TEMPFAIL);
		if (counted && o->result == AUTH_RESULT_FAIL)
			delay = auth_fail_count(conn->srv, ip, o->user);
	}
	if (auth_proto_resp_encode(resp, id, o->result, o->user, o->reason,
	    o->challenge, o->challenge_len, NULL, 0, &error) < 0) {
		log_error("auth: cannot encode answer: %s", error);
		auth_encode_tempfail(resp, id, "answer too long");
	}
	return delay;
}

/*
 * AUTH_REQ_PLAIN.
 */

static bool
auth_plaintext_allowed(bool secure)
{
	return secure || !conf_bool("disable_plaintext_auth");
}

/* Check user/password; *counted says whether a failure counts. */
static void
auth_plain_check(struct auth_server *srv, const struct auth_req *req,
    struct auth_outcome *o, bool *counted, char *reason, size_t rsize)
{
	struct user *u = NULL;
	const char *error;
	int ret, match;

	o->result = AUTH_RESULT_FAIL;
	o->user = req->user;
	*counted = false;
	if (!auth_plaintext_allowed(req->secure)) {
		o->reason = "plaintext authentication disallowed without TLS";
		return;
	}
	*counted = true;
	if (user_name_valid(req->user, &error) < 0) {
		/* Nothing to hide: an invalid name exists nowhere. */
		o->user = "";
		snprintf(reason, rsize, "invalid user name (%s)", error);
		o->reason = reason;
		return;
	}
	ret = user_lookup(req->user, &u, &error);
	if (ret < 0) {
		o->result = AUTH_RESULT_TEMPFAIL;
		snprintf(reason, rsize, AUTH_TEMPFAIL_PREFIX ": %s", error);
		o->reason = reason;
		return;
	}
	match = pwhash_verify(req->password, ret > 0 ? u->pwhash :
	    srv->dummy_hash);
	if (ret > 0 && match) {
		o->result = AUTH_RESULT_OK;
		(void)strlcpy(reason, u->name, rsize);
		o->user = reason;
		o->reason = "";
	} else
		o->reason = ret > 0 ? "wrong password" : "unknown user";
	user_free(&u);
}

static unsigned int
auth_handle_plain(struct auth_conn *conn, const struct auth_req *req,
    struct ipc_msg *resp)
{
	struct auth_outcome o;
	char reason[512];
	bool counted;

	memset(&o, 0, sizeof(o));
	auth_plain_check(conn->srv, req, &o, &counted, reason,
	    sizeof(reason));
	return auth_finish(conn, req->id, req->service, req->ip, &o,
	    counted, resp);
}

/*
 * SASL exchanges.
 */

static const char *
auth_sasl_service(const char *service)
{
	/* lib/sasl wants GSSAPI service names. */
	return strcmp(service, "pop3") == 0 ? "pop" :
	    strcmp(service, "submission") == 0 ? "smtp" : service;
}

static struct auth_sasl *
auth_sasl_find(struct auth_conn *conn, uint32_t id)
{
	struct auth_sasl *a;

	for (a = conn->sasl_head; a != NULL; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

static void
auth_sasl_free(struct auth_conn *conn, struct auth_sasl *a)
{
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		conn->sasl_head = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	else
		conn->sasl_tail = a->prev;
	conn->sasl_count--;
	sasl_sess_free(&a->sess);
	free(a);
}

static void
auth_sasl_append(struct auth_conn *conn, struct auth_sasl *a)
{
	if (conn->sasl_count >= conn->srv->set.sasl_sessions_max) {
		log_warning("auth: %zu SASL exchanges open on one channel: "
		    "dropping the oldest", conn->sasl_count);
		auth_sasl_free(conn, conn->sasl_head);
	}
	a->prev = conn->sasl_tail;
	a->next = NULL;
	if (conn->sasl_tail != NULL)
		conn->sasl_tail->next = a;
	else
		conn->sasl_head = a;
	conn->sasl_tail = a;
	conn->sasl_count++;
}

/*
 * The user a client claims in a PLAIN, LOGIN or SCRAM response, for the
 * log and the per-user counter (lib/sasl does not say who failed). Only
 * a name that passes user_name_valid is kept.
 */
static void
auth_sasl_claim(struct auth_sasl *a, const unsigned char *in, size_t len)
{
	const unsigned char *p = NULL, *end = NULL, *nul;
	const char *error;

	if (a->user[0] != '\0' || in == NULL)
		return;
	if (strcasecmp(a->mech, "PLAIN") == 0 &&
	    (nul = memchr(in, '\0', len)) != NULL) {
		p = nul + 1;
		end = memchr(p, '\0', len - (size_t)(p - in));
	} else if (strcasecmp(a->mech, "LOGIN") == 0 && a->steps == 1) {
		p = in;
		end = in + len;
	} else if (strncasecmp(a->mech, "SCRAM-", 6) == 0 && a->steps == 0) {
		/* client-first-message: gs2-header "n=" user "," ... */
		nul = len > 0 ? memchr(in, ',', len) : NULL;
		if (nul != NULL)
			nul = memchr(nul + 1, ',', len - (size_t)(nul + 1 - in));
		if (nul != NULL && (size_t)(nul - in) + 3 < len &&
		    memcmp(nul + 1, "n=", 2) == 0) {
			p = nul + 3;
			end = memchr(p, ',', len - (size_t)(p - in));
		}
	}
	if (p == NULL || end == NULL || (size_t)(end - p) >= sizeof(a->user) ||
	    user_name_valid_len((const char *)p, (size_t)(end - p), &error) < 0)
		return;
	memcpy(a->user, p, (size_t)(end - p));
	a->user[end - p] = '\0';
}

/* Turn a lib/sasl result into an outcome; frees a unless it continues. */
static unsigned int
auth_sasl_result(struct auth_conn *conn, struct auth_sasl *a, uint32_t id,
    int ret, const unsigned char *out, size_t outlen, const char *error,
    struct ipc_msg *resp)
{
	struct auth_outcome o;
	char user[AUTH_KEY_MAX], service[AUTH_SERVICE_MAX], ip[AUTH_KEY_MAX];
	unsigned int delay;

	memset(&o, 0, sizeof(o));
	o.user = a->user;
	if (ret == 0) {
		o.result = AUTH_RESULT_CONTINUE;
		o.challenge = out;
		o.challenge_len = outlen;
		o.reason = "";
		a->steps++;
		return auth_finish(conn, id, a->service, a->ip, &o,
		    false, resp);
	}
	if (ret > 0) {
		o.result = AUTH_RESULT_OK;
		(void)strlcpy(user, sasl_sess_user(a->sess), sizeof(user));
		o.user = user;
		o.reason = "";
	} else {
		o.result = strncmp(error, AUTH_TEMPFAIL_PREFIX,
		    strlen(AUTH_TEMPFAIL_PREFIX)) == 0 ?
		    AUTH_RESULT_TEMPFAIL : AUTH_RESULT_FAIL;
		o.reason = error;
		(void)strlcpy(user, a->user, sizeof(user));
		o.user = user;
	}
	/* a dies before the answer is encoded: keep what the log needs. */
	(void)strlcpy(service, a->service, sizeof(service));
	(void)strlcpy(ip, a->ip, sizeof(ip));
	delay = auth_finish(conn, id, service, ip, &o, true, resp);
	auth_sasl_free(conn, a);
	return delay;
}

static unsigned int
auth_handle_sasl_start(struct auth_conn *conn, const struct auth_req *req,
    struct ipc_msg *resp)
{
	struct auth_outcome o;
	struct auth_sasl *a;
	const unsigned char *out;
	const char *error;
	size_t outlen;
	int ret;

	memset(&o, 0, sizeof(o));
	o.result = AUTH_RESULT_FAIL;
	o.user = "";
	if (auth_sasl_find(conn, req->id) != NULL) {
		o.reason = "SASL session id already in use";
		return auth_finish(conn, req->id, req->service, req->ip,
		    &o, false, resp);
	}
	a = xcalloc(1, sizeof(*a));
	a->id = req->id;
	(void)strlcpy(a->service, req->service, sizeof(a->service));
	(void)strlcpy(a->ip, req->ip, sizeof(a->ip));
	(void)strlcpy(a->mech, req->mech, sizeof(a->mech));
	if (sasl_sess_new(auth_sasl_service(req->service), req->secure,
	    auth_plaintext_allowed(false), &a->sess, &error) < 0) {
		free(a);
		o.result = AUTH_RESULT_TEMPFAIL;
		o.reason = error;
		return auth_finish(conn, req->id, req->service, req->ip,
		    &o, false, resp);
	}
	auth_sasl_append(conn, a);
	auth_sasl_claim(a, req->initial, req->initial_len);
	/* An empty initial response ("AUTH PLAIN =") is a response, not
	 * none (RFC 4422 section 5): libsasl2 tells them apart by NULL. */
	ret = sasl_sess_start(a->sess, req->mech, req->has_initial &&
	    req->initial == NULL ? (const unsigned char *)"" : req->initial,
	    req->initial_len, &out, &outlen, &error);
	return auth_sasl_result(conn, a, req->id, ret, out, outlen, error,
	    resp);
}

static unsigned int
auth_handle_sasl_step(struct auth_conn *conn, const struct auth_req *req,
    struct ipc_msg *resp)
{
	struct auth_outcome o;
	struct auth_sasl *a;
	const unsigned char *out;
	const char *error;
	size_t outlen;
	int ret;

	if ((a = auth_sasl_find(conn, req->session)) == NULL) {
		memset(&o, 0, sizeof(o));
		o.result = AUTH_RESULT_FAIL;
		o.user = "";
		o.reason = "no such SASL session";
		/* Not logged as a login failure: no service or IP known. */
		(void)auth_proto_resp_encode(resp, req->id, o.result, o.user,
		    o.reason, NULL, 0, NULL, 0, &error);
		return 0;
	}
	auth_sasl_claim(a, req->data, req->data_len);
	ret = sasl_sess_step(a->sess, req->data, req->data_len, &out,
	    &outlen, &error);
	return auth_sasl_result(conn, a, req->id, ret, out, outlen, error,
	    resp);
}

static void
auth_handle_sasl_abort(struct auth_conn *conn, const struct auth_req *req,
    struct ipc_msg *resp)
{
	struct auth_sasl *a = auth_sasl_find(conn, req->session);
	const char *error;

	if (a != NULL)
		auth_sasl_free(conn, a);
	(void)auth_proto_resp_encode(resp, req->id, a != NULL ?
	    AUTH_RESULT_OK : AUTH_RESULT_FAIL, "", a != NULL ? "aborted" :
	    "no such SASL session", NULL, 0, NULL, 0, &error);
}

static void
auth_handle_mechs(const struct auth_req *req, struct ipc_msg *resp)
{
	struct sasl_sess *s;
	const char *error, *mechs = "";

	if (sasl_sess_new("imap", req->secure, auth_plaintext_allowed(false),
	    &s, &error) < 0) {
		log_error("auth: mechanism list: %s", error);
		s = NULL;
	} else
		mechs = sasl_sess_mechs(s);
	(void)auth_proto_mechs_encode(resp, req->id, mechs, &error);
	sasl_sess_free(&s);
}

/*
 * AUTH_REQ_USER, from the master.
 */

static void
auth_user_encode(struct ipc_msg *resp, uint32_t id, enum auth_result result,
    const char *reason, const struct auth_token *t, const struct user *u)
{
	const char *error;

	if (auth_proto_user_resp_encode(resp, id, result, reason,
	    t != NULL ? t->service : "", t != NULL ? t->ip : "", u,
	    &error) < 0) {
		log_error("auth: cannot encode user answer: %s", error);
		(void)auth_proto_user_resp_encode(resp, id,
		    AUTH_RESULT_TEMPFAIL, "answer too long", "", "", NULL,
		    &error);
	}
}

/* One line per redeemed token: a session begins or is refused. */
static void
auth_user_log(const struct auth_token *t, enum auth_result result,
    const char *reason)
{
	char euser[AUTH_KEY_MAX * 4], eip[AUTH_KEY_MAX * 4];

	log_escape(t->user, euser, sizeof(euser));
	log_escape(t->ip, eip, sizeof(eip));
	if (result == AUTH_RESULT_OK)
		log_info("%s session: user=<%s>, rip=%s", t->service, euser,
		    eip);
	else if (result == AUTH_RESULT_TEMPFAIL)
		log_error("%s session refused: user=<%s>, rip=%s, reason=%s",
		    t->service, euser, eip, reason);
	else
		log_warning("%s session refused: user=<%s>, rip=%s, "
		    "reason=%s", t->service, euser, eip, reason);
}

/* Answer for the token t, already taken out of the table. */
static void
auth_user_answer(struct auth_server *srv, uint32_t id,
    const struct auth_token *t, struct ipc_msg *resp)
{
	struct user *u = NULL;
	char reason[512];
	const char *error;
	uint64_t now = auth_now_ms(srv);
	int ret;

	if (now < t->issued_ms || now - t->issued_ms >=
	    (uint64_t)srv->set.token_ttl_secs * 1000) {
		auth_user_log(t, AUTH_RESULT_FAIL, "login token expired");
		auth_user_encode(resp, id, AUTH_RESULT_FAIL,
		    "login token expired", t, NULL);
		return;
	}
	ret = user_lookup(t->user, &u, &error);
	if (ret < 0) {
		snprintf(reason, sizeof(reason), AUTH_TEMPFAIL_PREFIX ": %s",
		    error);
		auth_user_log(t, AUTH_RESULT_TEMPFAIL, reason);
		auth_user_encode(resp, id, AUTH_RESULT_TEMPFAIL, reason, t,
		    NULL);
	} else if (ret == 0) {
		/* Deleted, or its line broken, since the login. */
		snprintf(reason, sizeof(reason), "user no longer exists (%s)",
		    error);
		auth_user_log(t, AUTH_RESULT_FAIL, reason);
		auth_user_encode(resp, id, AUTH_RESULT_FAIL, reason, t, NULL);
	} else {
		auth_user_log(t, AUTH_RESULT_OK, "");
		auth_user_encode(resp, id, AUTH_RESULT_OK, "", t, u);
	}
	user_free(&u);
}

static void
auth_handle_user(struct auth_conn *conn, const struct auth_req *req,
    struct ipc_msg *resp)
{
	struct auth_server *srv = conn->srv;
	struct auth_token *slot, t;

	if ((slot = auth_token_find(srv, req->token)) == NULL) {
		/* Never issued, used, or dropped: a bug or an attack. */
		log_warning("auth: master presented an unknown login token");
		auth_user_encode(resp, req->id, AUTH_RESULT_FAIL,
		    "unknown or already used login token", NULL, NULL);
		return;
	}
	/* One use, whatever comes of it. */
	t = *slot;
	auth_token_drop(srv, slot);
	auth_user_answer(srv, req->id, &t, resp);
	explicit_bzero(&t, sizeof(t));
}

/*
 * AUTH_REQ_EXISTS, from an smtpd process: is a local recipient a user?
 * Not a login attempt: nothing is counted, delayed or logged, and only
 * smtpd channels may ask, so a login process (which talks to clients
 * before they log in) cannot list the users.
 */
static int
auth_exists_lookup(const char *name, char *canon, size_t csize,
    const char **error_r)
{
	struct user *u = NULL;
	int ret;

	if (user_name_valid(name, error_r) < 0)
		return 0;
	ret = user_lookup(name, &u, error_r);
	if (ret > 0)
		(void)strlcpy(canon, u->name, csize);
	user_free(&u);
	return ret;
}

static void
auth_handle_exists(const struct auth_req *req, struct ipc_msg *resp)
{
	char canon[AUTH_KEY_MAX], lower[AUTH_KEY_MAX], reason[512];
	const char *error = "unknown user";
	size_t i;
	int ret;

	canon[0] = '\0';
	ret = auth_exists_lookup(req->user, canon, sizeof(canon), &error);
	/* SMTP local parts are matched without case, as in Postfix, when
	 * the name as sent is no user. */
	if (ret == 0 && strlcpy(lower, req->user, sizeof(lower)) <
	    sizeof(lower)) {
		for (i = 0; lower[i] != '\0'; i++)
			if (lower[i] >= 'A' && lower[i] <= 'Z')
				lower[i] = (char)(lower[i] - 'A' + 'a');
		if (strcmp(lower, req->user) != 0)
			ret = auth_exists_lookup(lower, canon,
			    sizeof(canon), &error);
	}
	if (ret < 0) {
		snprintf(reason, sizeof(reason), AUTH_TEMPFAIL_PREFIX ": %s",
		    error);
		log_error("auth: user lookup: %s", reason);
	}
	(void)auth_proto_resp_encode(resp, req->id, ret > 0 ? AUTH_RESULT_OK :
	    ret == 0 ? AUTH_RESULT_FAIL : AUTH_RESULT_TEMPFAIL, canon,
	    ret > 0 ? "" : ret == 0 ? "unknown user" : reason, NULL, 0, NULL,
	    0, &error);
}

/* Master channels redeem tokens and do nothing else; login channels
 * never redeem them; only smtpd channels ask whether a user exists. */
static int
auth_request_allowed(const struct auth_conn *conn, const struct auth_req *r,
    const char **error_r)
{
	if (conn->master && r->type != AUTH_REQ_USER) {
		*error_r = "login request on the master channel";
		return -1;
	}
	if (!conn->master && r->type == AUTH_REQ_USER) {
		*error_r = "user request on a login channel";
		return -1;
	}
	if (!conn->smtpd && r->type == AUTH_REQ_EXISTS) {
		*error_r = "recipient request on a login channel";
		return -1;
	}
	return 0;
}

int
auth_server_handle(struct auth_conn *conn, struct ipc_msg *req,
    struct ipc_msg *resp, unsigned int *delay_ms_r, const char **error_r)
{
	struct auth_req r;
	int ret = 0;

	*delay_ms_r = 0;
	if (auth_proto_req_decode(req, &r, error_r) < 0 ||
	    auth_request_allowed(conn, &r, error_r) < 0) {
		ret = -1;
	} else {
		switch (r.type) {
		case AUTH_REQ_PLAIN:
			*delay_ms_r = auth_handle_plain(conn, &r, resp);
			break;
		case AUTH_REQ_SASL_START:
			*delay_ms_r = auth_handle_sasl_start(conn, &r, resp);
			break;
		case AUTH_REQ_SASL_STEP:
			*delay_ms_r = auth_handle_sasl_step(conn, &r, resp);
			break;
		case AUTH_REQ_SASL_ABORT:
			auth_handle_sasl_abort(conn, &r, resp);
			break;
		case AUTH_REQ_USER:
			auth_handle_user(conn, &r, resp);
			break;
		case AUTH_REQ_EXISTS:
			auth_handle_exists(&r, resp);
			break;
		default:
			auth_handle_mechs(&r, resp);
			break;
		}
	}
	explicit_bzero(req->data, req->len);
	return ret;
}

/*
 * The loop driver: channels, held answers.
 */

static void auth_conn_writable(void *ctx);

static const char *
auth_conn_kind(const struct auth_conn *conn)
{
	return conn->master ? "master" : conn->smtpd ? "smtpd" : "login";
}

static void
auth_conn_close(struct auth_conn *conn)
{
	struct auth_server *srv = conn->srv;

	auth_conn_free(&conn);
	if (srv->nconns == 0 && srv->idle_cb != NULL)
		srv->idle_cb(srv->idle_ctx);
}

/* Write what the socket takes; watch for writability while some is left.
 * Returns -1 if the channel failed (it is then closed). */
static int
auth_conn_flush(struct auth_conn *conn)
{
	const char *error;
	int ret;

	ret = ipc_chan_flush(conn->chan, &error);
	if (ret < 0) {
		log_warning("auth: %s channel: %s", auth_conn_kind(conn),
		    error);
		auth_conn_close(conn);
		return -1;
	}
	if (ret > 0 && conn->io_write == NULL)
		conn->io_write = io_add(conn->srv->loop,
		    ipc_chan_fd(conn->chan), IO_WRITE,
		    auth_conn_writable, conn);
	else if (ret == 0)
		io_remove(&conn->io_write);
	return 0;
}

static void
auth_conn_writable(void *ctx)
{
	(void)auth_conn_flush(ctx);
}

static int
auth_conn_send(struct auth_conn *conn, struct ipc_msg *m)
{
	const char *error;

	if (ipc_chan_send(conn->chan, m, &error) < 0) {
		log_warning("auth: %s channel: %s", auth_conn_kind(conn),
		    error);
		auth_conn_close(conn);
		return -1;
	}
	return auth_conn_flush(conn);
}

static void
auth_pending_free(struct auth_pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		p->conn->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	timeout_remove(&p->to);
	free(p->msg);
	free(p);
}

static void
auth_pending_fire(void *ctx)
{
	struct auth_pending *p = ctx;
	struct auth_conn *conn = p->conn;

	/* Unlink first: sending may close conn, which frees the list. */
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		conn->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	timeout_remove(&p->to);
	(void)auth_conn_send(conn, p->msg);
	free(p->msg);
	free(p);
}

static void
auth_pending_add(struct auth_conn *conn, const struct ipc_msg *m,
    unsigned int delay_ms)
{
	struct auth_pending *p = xcalloc(1, sizeof(*p));

	p->conn = conn;
	p->msg = xmalloc(sizeof(*p->msg));
	memcpy(p->msg, m, sizeof(*p->msg));
	p->msg->fd = -1;
	p->to = timeout_add(conn->srv->loop, delay_ms, false,
	    auth_pending_fire, p);
	p->next = conn->pending;
	if (p->next != NULL)
		p->next->prev = p;
	conn->pending = p;
}

/* One record; -1 if the channel was closed. */
static int
auth_conn_request(struct auth_conn *conn, struct ipc_msg *req)
{
	struct ipc_msg *resp = &auth_resp_msg;
	const char *error;
	unsigned int delay;
	int fd, ret;

	if ((fd = ipc_msg_take_fd(req)) >= 0) {
		close(fd);
		explicit_bzero(req->data, req->len);
		error = "unexpected file descriptor";
		fd = -1;
	} else if (auth_server_handle(conn, req, resp, &delay, &error) == 0)
		fd = 0;
	if (fd < 0) {
		log_warning("auth: closing %s channel: %s",
		    auth_conn_kind(conn), error);
		auth_conn_close(conn);
		return -1;
	}
	if (delay > 0) {
		auth_pending_add(conn, resp, delay);
		return 0;
	}
	ret = auth_conn_send(conn, resp);
	/* The channel has its copy; keep no token in the scratch record. */
	explicit_bzero(resp->data, resp->len);
	return ret;
}

static void
auth_conn_read(void *ctx)
{
	struct auth_conn *conn = ctx;
	struct ipc_msg *req = &auth_req_msg;
	const char *error;
	int ret;

	while ((ret = ipc_chan_recv(conn->chan, req, &error)) > 0)
		if (auth_conn_request(conn, req) < 0)
			return;
	if (ret < 0) {
		if (!ipc_chan_closed(conn->chan))
			log_warning("auth: closing %s channel: %s",
			    auth_conn_kind(conn), error);
		auth_conn_close(conn);
	}
}

static struct auth_conn *
auth_conn_add(struct auth_server *srv, int fd, bool master, bool smtpd)
{
	struct auth_conn *conn = xcalloc(1, sizeof(*conn));

	conn->srv = srv;
	conn->master = master;
	conn->smtpd = smtpd;
	conn->chan = ipc_chan_new(fd);
	conn->io_read = io_add(srv->loop, fd, IO_READ, auth_conn_read, conn);
	conn->next = srv->conns;
	if (conn->next != NULL)
		conn->next->prev = conn;
	srv->conns = conn;
	srv->nconns++;
	return conn;
}

struct auth_conn *
auth_conn_new(struct auth_server *srv, int fd)
{
	return auth_conn_add(srv, fd, false, false);
}

struct auth_conn *
auth_conn_new_smtpd(struct auth_server *srv, int fd)
{
	return auth_conn_add(srv, fd, false, true);
}

struct auth_conn *
auth_conn_new_master(struct auth_server *srv, int fd)
{
	return auth_conn_add(srv, fd, true, false);
}

void
auth_conn_free(struct auth_conn **connp)
{
	struct auth_conn *conn = *connp;

	if (conn == NULL)
		return;
	*connp = NULL;
	while (conn->sasl_head != NULL)
		auth_sasl_free(conn, conn->sasl_head);
	while (conn->pending != NULL)
		auth_pending_free(conn->pending);
	io_remove(&conn->io_read);
	io_remove(&conn->io_write);
	ipc_chan_free(&conn->chan);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		conn->srv->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	conn->srv->nconns--;
	free(conn);
}

/*
 * The server.
 */

int
auth_server_new(struct ioloop *loop, const struct auth_settings *set,
    struct auth_server **srv_r, const char **error_r)
{
	struct auth_server *srv;
	char pw[32];

	if (sasl_lib_init("loft-auth", error_r) < 0)
		return -1;
	srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->set = *set;
	if (srv->set.fail_table_max == 0)
		srv->set.fail_table_max = 1;
	if (srv->set.sasl_sessions_max == 0)
		srv->set.sasl_sessions_max = 1;
	if (srv->set.tokens_max == 0)
		srv->set.tokens_max = 1;
	if (srv->set.token_ttl_secs == 0)
		srv->set.token_ttl_secs = 1;
	/* The dummy's password is never used: any fixed text will do. */
	(void)strlcpy(pw, "loft-auth-dummy-password", sizeof(pw));
	if (pwhash_make(pw, &srv->dummy_hash, error_r) < 0) {
		free(srv);
		return -1;
	}
	srv->ips.max = srv->users.max = srv->set.fail_table_max;
	srv->ips.v = xcalloc(srv->ips.max, sizeof(*srv->ips.v));
	srv->users.v = xcalloc(srv->users.max, sizeof(*srv->users.v));
	srv->tokens = xcalloc(srv->set.tokens_max, sizeof(*srv->tokens));
	*srv_r = srv;
	return 0;
}

void
auth_server_free(struct auth_server **srvp)
{
	struct auth_server *srv = *srvp;

	if (srv == NULL)
		return;
	*srvp = NULL;
	while (srv->conns != NULL) {
		struct auth_conn *conn = srv->conns;

		auth_conn_free(&conn);
	}
	free(srv->dummy_hash);
	free(srv->ips.v);
	free(srv->users.v);
	explicit_bzero(srv->tokens, srv->set.tokens_max *
	    sizeof(*srv->tokens));
	free(srv->tokens);
	free(srv);
}

void
auth_server_set_idle_cb(struct auth_server *srv, void (*cb)(void *ctx),
    void *ctx)
{
	srv->idle_cb = cb;
	srv->idle_ctx = ctx;
}

size_t
auth_server_channels(const struct auth_server *srv)
{
	return srv->nconns;
}

void
auth_server_set_clock(struct auth_server *srv,
    uint64_t (*now_ms)(void *ctx), void *ctx)
{
	srv->now_ms = now_ms;
	srv->now_ctx = ctx;
}
