/*
 * sasl.c: server-side SASL with Cyrus libsasl2, answering from loft's user
 * lookup.
 *
 * libsasl2 runs the mechanisms; loft supplies the secrets through three
 * hooks: a checkpass callback verifies PLAIN and LOGIN passwords against
 * the crypt(3) hash (libsasl2 itself can only compare plaintext), an
 * in-process auxprop plugin hands the SCRAM mechanisms the authPassword
 * values (RFC 5803) built from the user's scram-sha-*= fields, and the
 * canon_user and proxy policy callbacks apply loft's name rules. Options
 * come only from sasl_cb_getopt below: libsasl2 configuration files are
 * refused, so an /etc/sasl2 file cannot turn on sasldb or other
 * mechanisms.
 *
 * Trust: everything from the client (mechanism name, responses, names)
 * is untrusted and reaches libsasl2 length-checked; names are validated
 * by user_name_valid_len before any lookup. The user file is trusted as
 * the administrator's. Passwords are never logged or copied unwiped.
 */
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "log.h"
#include "pwhash.h"
#include "sasl.h"
#include "user.h"
#include "xmalloc.h"

/* libsasl2 stores every callback as int (*)(void); going through
 * void (*)(void) tells the compiler the cast is meant. */
#define SASL_PROC(f) ((int (*)(void))(void (*)(void))(f))
#define SASL_AUXPROP_NAME "loft"
#define SASL_MECH_LIST "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN"
/* The property libsasl2's SCRAM plugin reads stored secrets from (plain
 * "userPassword" would make it derive them from a plaintext password). */
#define SASL_PROP_AUTHPASSWORD "*authPassword"
/* Checked against the dummy hash for unknown users; it can never log
 * anyone in, since an unknown user fails whatever the result. */
#define SASL_DUMMY_PASSWORD "loft-dummy-password"

enum sasl_sess_state {
	SASL_SESS_NEW,
	SASL_SESS_RUNNING,
	SASL_SESS_DONE,
	SASL_SESS_FAILED,
};

struct sasl_sess {
	sasl_conn_t *conn;		/* owned */
	sasl_callback_t callbacks[4];	/* context: this session */
	enum sasl_sess_state state;
	char *mechs;			/* owned */
	char *user;			/* owned; set when DONE */
	/* Why the last check failed, set by the callbacks (which cannot
	 * return text); "" if none. */
	char reason[64 + 4 * USER_NAME_MAX + 8];
};

static bool sasl_initialised;
static char *sasl_dummy_hash;		/* owned; from pwhash_make */
static char sasl_error_buf[1024];

static const char * __attribute__((format(printf, 1, 2)))
sasl_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sasl_error_buf, sizeof(sasl_error_buf), fmt, ap);
	va_end(ap);
	return sasl_error_buf;
}

/* Record why a callback refused, with the name escaped for the log. */
static void
sasl_sess_reason(struct sasl_sess *s, const char *what, const char *name,
    size_t len)
{
	char raw[USER_NAME_MAX + 1], esc[4 * USER_NAME_MAX + 8];

	if (len > USER_NAME_MAX)
		len = USER_NAME_MAX;
	memcpy(raw, name, len);
	raw[len] = '\0';
	snprintf(s->reason, sizeof(s->reason), "%s <%s>", what,
	    log_escape(raw, esc, sizeof(esc)));
}

/* Options: answered here, and only here (configuration files are refused
 * by sasl_cb_verifyfile). */
static int
sasl_cb_getopt(void *context, const char *plugin_name, const char *option,
    const char **result, unsigned *len)
{
	(void)context;
	(void)plugin_name;
	if (strcmp(option, "mech_list") == 0)
		*result = SASL_MECH_LIST;
	else if (strcmp(option, "auxprop_plugin") == 0)
		*result = SASL_AUXPROP_NAME;
	else if (strcmp(option, "pwcheck_method") == 0)
		*result = "auxprop";
	else
		return SASL_FAIL;
	if (len != NULL)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int
sasl_cb_verifyfile(void *context, const char *file, sasl_verify_type_t type)
{
	(void)context;
	(void)file;
	return type == SASL_VRFY_CONF ? SASL_CONTINUE : SASL_OK;
}

static int
sasl_cb_log(void *context, int level, const char *message)
{
	char esc[1024];

	(void)context;
	if (level == SASL_LOG_ERR)
		log_error("sasl: %s", log_escape(message, esc, sizeof(esc)));
	else if (level == SASL_LOG_WARN)
		log_warning("sasl: %s", log_escape(message, esc, sizeof(esc)));
	return SASL_OK;
}

static sasl_callback_t sasl_global_callbacks[] = {
	{ SASL_CB_GETOPT, SASL_PROC(sasl_cb_getopt), NULL },
	{ SASL_CB_VERIFYFILE, SASL_PROC(sasl_cb_verifyfile), NULL },
	{ SASL_CB_LOG, SASL_PROC(sasl_cb_log), NULL },
	{ SASL_CB_LIST_END, NULL, NULL },
};

/*
 * The auxprop plugin.
 */

static const struct {
	const char *key, *mech;
	size_t keylen;		/* StoredKey and ServerKey bytes */
} sasl_scram_map[] = {
	{ "scram-sha-256=", "SCRAM-SHA-256", 32 },
	{ "scram-sha-1=", "SCRAM-SHA-1", 20 },
};

/* Key of the made-up SCRAM secrets below; random per process. */
static unsigned char sasl_dummy_key[32];
static bool sasl_dummy_key_set;

/* b64 of the first len bytes of HMAC-SHA256(dummy key, what|mech|name). */
static void
sasl_dummy_part(const char *what, const char *mech, const char *name,
    size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE], msg[USER_NAME_MAX + 64];
	unsigned maclen = 0;
	int n;

	n = snprintf((char *)msg, sizeof(msg), "%s|%s|%s", what, mech, name);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	HMAC(EVP_sha256(), sasl_dummy_key, sizeof(sasl_dummy_key), msg,
	    (size_t)n, mac, &maclen);
	EVP_EncodeBlock((unsigned char *)out, mac, (int)(len < maclen ?
	    len : maclen));
}

/*
 * A user with no SCRAM secret (unknown, or stored before SCRAM) gets a
 * made-up one, stable for the name: the exchange then goes on to the
 * client's proof and fails there, as for a wrong password, instead of
 * telling at the first message whether the name exists (RFC 5802
 * section 9). HMAC, not PBKDF2: a real user's secret is stored ready, so
 * this costs about what a lookup of one does.
 */
static void
sasl_aux_dummy(const sasl_utils_t *utils, struct propctx *ctx,
    const char *name)
{
	char salt[64], stored[64], server[64], *v;

	for (size_t i = 0; i < sizeof(sasl_scram_map) /
	    sizeof(sasl_scram_map[0]); i++) {
		const char *mech = sasl_scram_map[i].mech;

		sasl_dummy_part("salt", mech, name, PWHASH_SCRAM_SALT_LEN,
		    salt);
		sasl_dummy_part("stored", mech, name,
		    sasl_scram_map[i].keylen, stored);
		sasl_dummy_part("server", mech, name,
		    sasl_scram_map[i].keylen, server);
		v = xasprintf("%s$%u:%s$%s:%s", mech, PWHASH_SCRAM_ITERATIONS,
		    salt, stored, server);
		utils->prop_set(ctx, SASL_PROP_AUTHPASSWORD, v, 0);
		free(v);
	}
}

/* Add "MECH$VALUE" for each scram-sha-*=VALUE field to the property;
 * returns how many. */
static int
sasl_aux_fields(const sasl_utils_t *utils, struct propctx *ctx,
    const char *fields)
{
	const char *p = fields;
	size_t len, i, klen;
	char *v;
	int n = 0;

	for (; *p != '\0'; p += len) {
		len = strcspn(p, " ");
		for (i = 0; len > 0 && i < sizeof(sasl_scram_map) /
		    sizeof(sasl_scram_map[0]); i++) {
			klen = strlen(sasl_scram_map[i].key);
			if (len <= klen ||
			    strncmp(p, sasl_scram_map[i].key, klen) != 0)
				continue;
			v = xasprintf("%s$%.*s", sasl_scram_map[i].mech,
			    (int)(len - klen), p + klen);
			utils->prop_set(ctx, SASL_PROP_AUTHPASSWORD, v, 0);
			explicit_bzero(v, strlen(v));
			free(v);
			n++;
		}
		if (len == 0)
			len = 1;
	}
	return n;
}

static bool
sasl_aux_wanted(const sasl_utils_t *utils, struct propctx *ctx,
    unsigned flags)
{
	const struct propval *pv;

	for (pv = utils->prop_get(ctx); pv != NULL && pv->name != NULL;
	    pv++) {
		if (strcmp(pv->name, SASL_PROP_AUTHPASSWORD) != 0)
			continue;
		if (pv->values == NULL)
			return true;
		if ((flags & SASL_AUXPROP_OVERRIDE) != 0) {
			utils->prop_erase(ctx, pv->name);
			return true;
		}
	}
	return false;
}

static int
sasl_aux_lookup(void *glob_context, sasl_server_params_t *sparams,
    unsigned flags, const char *user, unsigned ulen)
{
	const sasl_utils_t *utils = sparams->utils;
	struct user *u;
	const char *error;
	char *name;
	int ret;

	(void)glob_context;
	/* Secrets belong to the authentication identity only. */
	if ((flags & SASL_AUXPROP_AUTHZID) != 0 ||
	    !sasl_aux_wanted(utils, sparams->propctx, flags))
		return SASL_OK;
	if (user_name_valid_len(user, ulen, &error) < 0)
		return SASL_NOUSER;
	name = xstrndup(user, ulen);
	ret = user_lookup(name, &u, &error);
	if (ret < 0)
		log_error("sasl: user lookup failed: %s", error);
	else if (ret == 0 ||
	    sasl_aux_fields(utils, sparams->propctx, u->fields) == 0)
		sasl_aux_dummy(utils, sparams->propctx, name);
	user_free(&u);
	free(name);
	return ret < 0 ? SASL_UNAVAIL : SASL_OK;
}

static sasl_auxprop_plug_t sasl_aux_plug = {
	.auxprop_lookup = sasl_aux_lookup,
	.name = (char *)SASL_AUXPROP_NAME,
};

static int
sasl_aux_plug_init(const sasl_utils_t *utils, int max_version,
    int *out_version, sasl_auxprop_plug_t **plug, const char *plugname)
{
	(void)utils;
	(void)plugname;
	if (max_version < SASL_AUXPROP_PLUG_VERSION)
		return SASL_BADVERS;
	*out_version = SASL_AUXPROP_PLUG_VERSION;
	*plug = &sasl_aux_plug;
	return SASL_OK;
}

/*
 * Per-session callbacks.
 */

/* PLAIN and LOGIN: verify against the crypt(3) hash. */
static int
sasl_cb_checkpass(sasl_conn_t *conn, void *context, const char *user,
    const char *pass, unsigned passlen, struct propctx *propctx)
{
	struct sasl_sess *s = context;
	struct user *u = NULL;
	const char *error, *hash;
	int ret, match;

	(void)conn;
	(void)propctx;
	ret = user_lookup(user, &u, &error);
	if (ret < 0) {
		snprintf(s->reason, sizeof(s->reason),
		    "temporary failure: %s", error);
		return SASL_UNAVAIL;
	}
	hash = ret > 0 ? u->pwhash : sasl_dummy_hash;
	match = pwhash_verify_len(pass, passlen, hash);
	user_free(&u);
	if (ret > 0 && match)
		return SASL_OK;
	sasl_sess_reason(s, ret > 0 ? "wrong password for" : "unknown user",
	    user, strlen(user));
	return SASL_BADAUTH;
}

static int
sasl_cb_canon_user(sasl_conn_t *conn, void *context, const char *in,
    unsigned inlen, unsigned flags, const char *user_realm, char *out,
    unsigned out_max, unsigned *out_len)
{
	struct sasl_sess *s = context;
	const char *error;

	(void)conn;
	(void)flags;
	(void)user_realm;
	if (inlen == 0)
		inlen = (unsigned)strlen(in);
	if (user_name_valid_len(in, inlen, &error) < 0) {
		sasl_sess_reason(s, "invalid user name", in, inlen);
		return SASL_BADPROT;
	}
	if (inlen >= out_max)
		return SASL_BUFOVER;
	memcpy(out, in, inlen);
	out[inlen] = '\0';
	*out_len = inlen;
	return SASL_OK;
}

/* No proxy login: the authorization identity, if given, is the
 * authentication identity. */
static int
sasl_cb_authorize(sasl_conn_t *conn, void *context, const char *requested_user,
    unsigned rlen, const char *auth_identity, unsigned alen,
    const char *def_realm, unsigned urlen, struct propctx *propctx)
{
	struct sasl_sess *s = context;

	(void)def_realm;
	(void)urlen;
	(void)propctx;
	if (rlen == alen && memcmp(requested_user, auth_identity, alen) == 0)
		return SASL_OK;
	sasl_sess_reason(s, "authorization identity differs from",
	    auth_identity, alen);
	sasl_seterror(conn, SASL_NOLOG, "authorization identity refused");
	return SASL_NOAUTHZ;
}

/*
 * Library set-up.
 */

int
sasl_lib_init(const char *appname, const char **error_r)
{
	int ret;

	if (sasl_initialised)
		return 0;
	if (!sasl_dummy_key_set) {
		if (RAND_bytes(sasl_dummy_key, sizeof(sasl_dummy_key)) != 1) {
			*error_r = "no random bytes for the SCRAM dummy key";
			return -1;
		}
		sasl_dummy_key_set = true;
	}
	if (sasl_dummy_hash == NULL &&
	    pwhash_make(SASL_DUMMY_PASSWORD, &sasl_dummy_hash, error_r) < 0)
		return -1;
	ret = sasl_server_init(sasl_global_callbacks, appname);
	if (ret != SASL_OK) {
		*error_r = sasl_err("sasl_server_init: %s",
		    sasl_errstring(ret, NULL, NULL));
		return -1;
	}
	ret = sasl_auxprop_add_plugin(SASL_AUXPROP_NAME,
	    sasl_aux_plug_init);
	if (ret != SASL_OK) {
		*error_r = sasl_err("sasl_auxprop_add_plugin: %s",
		    sasl_errstring(ret, NULL, NULL));
		sasl_server_done();
		return -1;
	}
	sasl_initialised = true;
	return 0;
}

void
sasl_lib_deinit(void)
{
	if (sasl_initialised)
		sasl_server_done();
	sasl_initialised = false;
	free(sasl_dummy_hash);
	sasl_dummy_hash = NULL;
}

/*
 * Sessions.
 */

static void
sasl_sess_callbacks(struct sasl_sess *s)
{
	sasl_callback_t *cb = s->callbacks;

	cb[0].id = SASL_CB_SERVER_USERDB_CHECKPASS;
	cb[0].proc = SASL_PROC(sasl_cb_checkpass);
	cb[1].id = SASL_CB_CANON_USER;
	cb[1].proc = SASL_PROC(sasl_cb_canon_user);
	cb[2].id = SASL_CB_PROXY_POLICY;
	cb[2].proc = SASL_PROC(sasl_cb_authorize);
	cb[3].id = SASL_CB_LIST_END;
	cb[0].context = cb[1].context = cb[2].context = s;
}

/* No security layer (TLS does that), no anonymous login, and no
 * plaintext mechanism on a connection that is not protected. */
static int
sasl_sess_secprops(struct sasl_sess *s, bool plaintext)
{
	sasl_security_properties_t sp;

	memset(&sp, 0, sizeof(sp));
	sp.security_flags = SASL_SEC_NOANONYMOUS |
	    (plaintext ? 0 : SASL_SEC_NOPLAINTEXT);
	return sasl_setprop(s->conn, SASL_SEC_PROPS, &sp);
}

static int
sasl_sess_listmech(struct sasl_sess *s)
{
	const char *list;
	unsigned len;
	int count, ret;

	ret = sasl_listmech(s->conn, NULL, "", " ", "", &list, &len, &count);
	if (ret == SASL_NOMECH) {
		s->mechs = xstrdup("");
		return SASL_OK;
	}
	if (ret == SASL_OK)
		s->mechs = xstrndup(list, len);
	return ret;
}

int
sasl_sess_new(const char *service, bool secure, bool allow_plaintext,
    struct sasl_sess **s_r, const char **error_r)
{
	struct sasl_sess *s;
	int ret;

	*s_r = NULL;
	if (!sasl_initialised) {
		*error_r = "sasl_lib_init was not called";
		return -1;
	}
	s = xcalloc(1, sizeof(*s));
	sasl_sess_callbacks(s);
	ret = sasl_server_new(service, NULL, NULL, NULL, NULL, s->callbacks,
	    0, &s->conn);
	if (ret == SASL_OK)
		ret = sasl_sess_secprops(s, secure || allow_plaintext);
	if (ret == SASL_OK)
		ret = sasl_sess_listmech(s);
	if (ret != SASL_OK) {
		*error_r = sasl_err("sasl_server_new: %s",
		    sasl_errstring(ret, NULL, NULL));
		sasl_sess_free(&s);
		return -1;
	}
	*s_r = s;
	return 0;
}

const char *
sasl_sess_mechs(struct sasl_sess *s)
{
	return s->mechs;
}

const char *
sasl_sess_user(struct sasl_sess *s)
{
	return s->state == SASL_SESS_DONE ? s->user : NULL;
}

/* The authenticated name, checked once more: it is what the caller will
 * log in as. */
static int
sasl_sess_finish(struct sasl_sess *s, const char **error_r)
{
	const void *name;
	const char *error;

	if (sasl_getprop(s->conn, SASL_USERNAME, &name) != SASL_OK ||
	    name == NULL || user_name_valid(name, &error) < 0) {
		*error_r = "no valid user name after authentication";
		return -1;
	}
	s->user = xstrdup(name);
	s->state = SASL_SESS_DONE;
	return 1;
}

/* libsasl2's own account of a failure, on one line: its detail text
 * holds newlines and may quote the client. */
static const char *
sasl_sess_detail(struct sasl_sess *s, int ret)
{
	char esc[sizeof(sasl_error_buf) - 64];

	return sasl_err("%s (%s)", sasl_errstring(ret, NULL, NULL),
	    log_escape(sasl_errdetail(s->conn), esc, sizeof(esc)));
}

/* Turn a libsasl2 result into 1 / 0 / -1 and the session state. */
static int
sasl_sess_result(struct sasl_sess *s, int ret, const char *out,
    unsigned outlen, const unsigned char **out_r, size_t *outlen_r,
    const char **error_r)
{
	*out_r = (const unsigned char *)(out != NULL ? out : "");
	*outlen_r = out != NULL ? outlen : 0;
	if (ret == SASL_CONTINUE) {
		s->state = SASL_SESS_RUNNING;
		return 0;
	}
	*outlen_r = 0;
	if (ret == SASL_OK && sasl_sess_finish(s, error_r) > 0)
		return 1;
	s->state = SASL_SESS_FAILED;
	if (ret == SASL_OK)
		return -1;
	if (s->reason[0] != '\0')
		*error_r = sasl_err("%s", s->reason);
	else
		*error_r = sasl_sess_detail(s, ret);
	return -1;
}

static int
sasl_sess_check_input(struct sasl_sess *s, size_t inlen,
    enum sasl_sess_state want, const char **error_r)
{
	if (s->state != want) {
		*error_r = s->state == SASL_SESS_NEW ?
		    "no authentication in progress" :
		    "authentication already ended";
		s->state = SASL_SESS_FAILED;
		return -1;
	}
	if (inlen > SASL_SESS_INPUT_MAX) {
		*error_r = "client response too long";
		s->state = SASL_SESS_FAILED;
		return -1;
	}
	return 0;
}

int
sasl_sess_start(struct sasl_sess *s, const char *mech,
    const unsigned char *in, size_t inlen, const unsigned char **out,
    size_t *outlen, const char **error_r)
{
	const char *sout = NULL;
	unsigned soutlen = 0;
	int ret;

	*out = (const unsigned char *)"";
	*outlen = 0;
	if (sasl_sess_check_input(s, inlen, SASL_SESS_NEW, error_r) < 0)
		return -1;
	s->reason[0] = '\0';
	/* libsasl2 treats in == NULL as "no initial response" and would
	 * read an empty one from a non-NULL pointer anyway. */
	ret = sasl_server_start(s->conn, mech, (const char *)in,
	    (unsigned)inlen, &sout, &soutlen);
	return sasl_sess_result(s, ret, sout, soutlen, out, outlen, error_r);
}

int
sasl_sess_step(struct sasl_sess *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen, const char **error_r)
{
	const char *sout = NULL;
	unsigned soutlen = 0;
	int ret;

	*out = (const unsigned char *)"";
	*outlen = 0;
	if (sasl_sess_check_input(s, inlen, SASL_SESS_RUNNING, error_r) < 0)
		return -1;
	ret = sasl_server_step(s->conn, in != NULL ? (const char *)in : "",
	    (unsigned)inlen, &sout, &soutlen);
	return sasl_sess_result(s, ret, sout, soutlen, out, outlen, error_r);
}

void
sasl_sess_free(struct sasl_sess **sp)
{
	struct sasl_sess *s = *sp;

	if (s == NULL)
		return;
	if (s->conn != NULL)
		sasl_dispose(&s->conn);
	free(s->mechs);
	free(s->user);
	free(s);
	*sp = NULL;
}
