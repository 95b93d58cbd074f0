/*
 * sasl.h: server-side SASL authentication (RFC 4422) for loftd's POP3,
 * IMAP and SMTP AUTH, built on Cyrus libsasl2 and loft's user lookup.
 *
 * Mechanisms: PLAIN and LOGIN, checked against the crypt(3) hash of
 * user_lookup() (user_database, then system users), and SCRAM-SHA-1 and
 * SCRAM-SHA-256, which need the user's stored SCRAM secret: the fields
 * scram-sha-1=... and scram-sha-256=... of the user file (see pwhash.h
 * for the form). A user without such a field cannot use that SCRAM
 * mechanism. No other libsasl2 mechanism is ever offered, no libsasl2
 * configuration file is read and sasldb is not used.
 *
 * Names: the authentication and authorization identities must pass
 * user_name_valid(); an authorization identity other than the
 * authentication identity is refused (no proxy login).
 *
 * Not thread-safe: libsasl2 keeps global state; one thread per process
 * uses this module.
 */
#ifndef LOFT_SASL_H
#define LOFT_SASL_H

#include <stdbool.h>
#include <stddef.h>

/* Largest client response sasl_sess_start/sasl_sess_step take, in
 * decoded bytes; a larger one fails the exchange. */
#define SASL_SESS_INPUT_MAX 8192

struct sasl_sess;

/*
 * sasl_lib_init: initialise libsasl2 for this process, once, before any
 * sasl_sess_new: loads the mechanism plugins, registers loft's auxprop
 * plugin, and prepares a dummy hash so an unknown user costs as much as a
 * wrong password. appname names this program in libsasl2's own log lines
 * (e.g. "loftd"). Returns 0, or -1 with *error_r (libsasl2 failed, e.g.
 * no plugins installed). A second call returns 0 and does nothing.
 */
int sasl_lib_init(const char *appname, const char **error_r);
/* sasl_lib_deinit: free what sasl_lib_init set up; every session must be
 * freed first. sasl_lib_init may be called again afterwards. */
void sasl_lib_deinit(void);

/*
 * sasl_sess_new: a new authentication exchange for service ("pop",
 * "imap" or "smtp": the GSSAPI-style service name). secure says the
 * connection is protected (TLS); PLAIN and LOGIN are offered and accepted
 * only if secure or allow_plaintext. Returns 0 and *s_r (free it with
 * sasl_sess_free), or -1 with *error_r.
 */
int sasl_sess_new(const char *service, bool secure, bool allow_plaintext,
    struct sasl_sess **s_r, const char **error_r);

/* sasl_sess_mechs: the mechanisms offered now, space-separated, upper
 * case (e.g. "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN"); "" if none. The
 * string belongs to s and lives as long as it. */
const char *sasl_sess_mechs(struct sasl_sess *s);

/*
 * sasl_sess_start: begin mechanism mech (case-insensitive) with the
 * client's initial response in/inlen, already base64-decoded; in = NULL
 * means there was none (an empty initial response, IMAP "=" or SMTP "=",
 * is a non-NULL in with inlen 0). sasl_sess_step: the client's next
 * response, decoded (an empty line is inlen 0).
 * Returns
 *	1  authenticated: sasl_sess_user() names the user;
 *	0  continue: send *out and *outlen (raw bytes, to base64-encode; may be
 *	   empty) as a challenge and pass the answer to sasl_sess_step. The
 *	   SCRAM server signature also comes this way, and the client must
 *	   answer it with an empty response;
 *	-1 failed, with *error_r for the log (never the password; the user
 *	   name is escaped): bad password, unknown user, invalid name,
 *	   another authorization identity, protocol error, input over
 *	   SASL_SESS_INPUT_MAX, a mechanism not offered, a temporary failure
 *	   of the user database, or a call after the exchange ended. A failed
 *	   exchange cannot continue; start again with a new session.
 * *out belongs to s and is valid until the next call on s. in may hold a
 * password (PLAIN, LOGIN): the caller wipes its buffer after the call;
 * copies made here are wiped.
 */
int sasl_sess_start(struct sasl_sess *s, const char *mech,
    const unsigned char *in, size_t inlen, const unsigned char **out,
    size_t *outlen, const char **error_r);
int sasl_sess_step(struct sasl_sess *s, const unsigned char *in,
    size_t inlen, const unsigned char **out, size_t *outlen,
    const char **error_r);

/* sasl_sess_user: the authenticated user name after sasl_sess_start or
 * sasl_sess_step returned 1, else NULL. Belongs to s. */
const char *sasl_sess_user(struct sasl_sess *s);

/* sasl_sess_free: end the exchange and free *s; sets *s to NULL. NULL is
 * allowed. */
void sasl_sess_free(struct sasl_sess **s);

#endif
