/*
 * auth_proto.c: encode and decode the login <-> auth records described in
 * auth_proto.h.
 *
 * SECURITY: the auth process decodes records from login processes, which
 * speak to the network and may be compromised: every field is read through
 * lib/ipc's length-checked getters, and anything unexpected (a short or
 * long record, a flag that is not 0 or 1, an unknown service) fails the
 * whole record. Values are not trusted beyond that: names and passwords
 * are checked by the caller.
 *
 * The master decodes AUTH_RESP_USER from the auth process and trusts what
 * it says, but still decodes the user record as strictly as any record
 * from a peer (a valid name, an absolute home, ids that are not "unset"),
 * because the mail process decodes the same record from the master and
 * will switch to the uid it holds.
 */
#include "config.h"

#include <string.h>

#include "xmalloc.h"
#include "auth_proto.h"

static const char *const auth_proto_services[] = {
	"pop3", "imap", "smtp", "submission"
};

bool
auth_proto_service_valid(const char *service)
{
	size_t i;

	for (i = 0; i < sizeof(auth_proto_services) /
	    sizeof(auth_proto_services[0]); i++)
		if (strcmp(service, auth_proto_services[i]) == 0)
			return true;
	return false;
}

static const char *
auth_proto_s(const char *s)
{
	return s != NULL ? s : "";
}

static void
auth_proto_add_head(struct ipc_msg *m, const struct auth_req *req)
{
	ipc_add_str(m, auth_proto_s(req->service));
	ipc_add_str(m, auth_proto_s(req->ip));
	ipc_add_u32(m, req->secure ? 1 : 0);
}

int
auth_proto_req_encode(struct ipc_msg *m, const struct auth_req *req,
    const char **error_r)
{
	ipc_msg_init(m, req->type, req->id);
	switch (req->type) {
	case AUTH_REQ_PLAIN:
		auth_proto_add_head(m, req);
		ipc_add_str(m, auth_proto_s(req->user));
		ipc_add_str(m, auth_proto_s(req->password));
		break;
	case AUTH_REQ_SASL_START:
		auth_proto_add_head(m, req);
		ipc_add_str(m, auth_proto_s(req->mech));
		ipc_add_u32(m, req->has_initial ? 1 : 0);
		ipc_add_data(m, req->initial, req->has_initial ?
		    req->initial_len : 0);
		break;
	case AUTH_REQ_SASL_STEP:
		ipc_add_u32(m, req->session);
		ipc_add_data(m, req->data, req->data_len);
		break;
	case AUTH_REQ_SASL_ABORT:
		ipc_add_u32(m, req->session);
		break;
	case AUTH_REQ_MECHS:
		ipc_add_u32(m, req->secure ? 1 : 0);
		break;
	case AUTH_REQ_EXISTS:
		ipc_add_str(m, auth_proto_s(req->user));
		break;
	case AUTH_REQ_USER:
		return auth_proto_user_req_encode(m, req->id, req->token,
		    req->token_len, error_r);
	default:
		*error_r = "unknown auth request type";
		return -1;
	}
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

/* A u32 that must be 0 or 1. */
static int
auth_proto_get_bool(struct ipc_msg *m, bool *b_r, bool *bad)
{
	uint32_t v;

	if (ipc_get_u32(m, &v) < 0)
		return -1;
	if (v > 1)
		*bad = true;
	*b_r = v == 1;
	return 0;
}

static void
auth_proto_get_head(struct ipc_msg *m, struct auth_req *req, bool *bad)
{
	ipc_get_str(m, &req->service);
	ipc_get_str(m, &req->ip);
	auth_proto_get_bool(m, &req->secure, bad);
}

/* The fields of req->type; false for an unknown type. */
static bool
auth_proto_req_fields(struct ipc_msg *m, struct auth_req *req, bool *bad)
{
	switch (req->type) {
	case AUTH_REQ_PLAIN:
		auth_proto_get_head(m, req, bad);
		ipc_get_str(m, &req->user);
		ipc_get_str(m, &req->password);
		return true;
	case AUTH_REQ_SASL_START:
		auth_proto_get_head(m, req, bad);
		ipc_get_str(m, &req->mech);
		auth_proto_get_bool(m, &req->has_initial, bad);
		ipc_get_data(m, &req->initial, &req->initial_len);
		if (!req->has_initial && req->initial_len != 0)
			*bad = true;
		return true;
	case AUTH_REQ_SASL_STEP:
		ipc_get_u32(m, &req->session);
		ipc_get_data(m, &req->data, &req->data_len);
		return true;
	case AUTH_REQ_SASL_ABORT:
		ipc_get_u32(m, &req->session);
		return true;
	case AUTH_REQ_MECHS:
		auth_proto_get_bool(m, &req->secure, bad);
		return true;
	case AUTH_REQ_USER:
		ipc_get_data(m, &req->token, &req->token_len);
		return true;
	case AUTH_REQ_EXISTS:
		ipc_get_str(m, &req->user);
		return true;
	default:
		return false;
	}
}

int
auth_proto_req_decode(struct ipc_msg *m, struct auth_req *req_r,
    const char **error_r)
{
	bool bad = false;

	memset(req_r, 0, sizeof(*req_r));
	req_r->type = m->type;
	req_r->id = m->id;
	m->pos = 0;
	if (!auth_proto_req_fields(m, req_r, &bad)) {
		*error_r = "unknown auth request type";
		return -1;
	}
	if (ipc_get_end(m, error_r) < 0)
		return -1;
	if (bad) {
		*error_r = "flag field other than 0 or 1";
		return -1;
	}
	if (req_r->service != NULL && !auth_proto_service_valid(
	    req_r->service)) {
		*error_r = "unknown service";
		return -1;
	}
	if (req_r->type == AUTH_REQ_USER &&
	    req_r->token_len != AUTH_TOKEN_LEN) {
		*error_r = "token of the wrong length";
		return -1;
	}
	if (req_r->type == AUTH_REQ_SASL_START && !req_r->has_initial)
		req_r->initial = NULL;
	return 0;
}

int
auth_proto_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *user, const char *reason,
    const unsigned char *challenge, size_t challenge_len,
    const unsigned char *token, size_t token_len, const char **error_r)
{
	ipc_msg_init(m, AUTH_RESP, id);
	if (token_len != 0 && token_len != AUTH_TOKEN_LEN) {
		*error_r = "token of the wrong length";
		return -1;
	}
	ipc_add_u32(m, (uint32_t)result);
	ipc_add_str(m, auth_proto_s(user));
	ipc_add_str(m, auth_proto_s(reason));
	ipc_add_data(m, challenge, challenge_len);
	ipc_add_data(m, token, token_len);
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

int
auth_proto_mechs_encode(struct ipc_msg *m, uint32_t id, const char *mechs,
    const char **error_r)
{
	ipc_msg_init(m, AUTH_RESP_MECHS, id);
	ipc_add_str(m, mechs);
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

int
auth_proto_resp_decode(struct ipc_msg *m, struct auth_resp *resp_r,
    const char **error_r)
{
	memset(resp_r, 0, sizeof(*resp_r));
	resp_r->type = m->type;
	resp_r->id = m->id;
	m->pos = 0;
	if (m->type == AUTH_RESP_MECHS) {
		ipc_get_str(m, &resp_r->mechs);
	} else if (m->type == AUTH_RESP) {
		ipc_get_u32(m, &resp_r->result);
		ipc_get_str(m, &resp_r->user);
		ipc_get_str(m, &resp_r->reason);
		ipc_get_data(m, &resp_r->challenge, &resp_r->challenge_len);
		ipc_get_data(m, &resp_r->token, &resp_r->token_len);
	} else {
		*error_r = "unknown auth response type";
		return -1;
	}
	if (ipc_get_end(m, error_r) < 0)
		return -1;
	if (resp_r->type == AUTH_RESP &&
	    resp_r->result > AUTH_RESULT_CONTINUE) {
		*error_r = "unknown auth result";
		return -1;
	}
	if (resp_r->token_len != 0 && resp_r->token_len != AUTH_TOKEN_LEN) {
		*error_r = "token of the wrong length";
		return -1;
	}
	return 0;
}

/*
 * Master channel: tokens for user records.
 */

int
auth_proto_user_req_encode(struct ipc_msg *m, uint32_t id,
    const unsigned char *token, size_t len, const char **error_r)
{
	ipc_msg_init(m, AUTH_REQ_USER, id);
	if (len != AUTH_TOKEN_LEN || token == NULL) {
		*error_r = "token of the wrong length";
		return -1;
	}
	if (ipc_add_data(m, token, len) < 0) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

int
auth_proto_user_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *reason, const char *service,
    const char *ip, const struct user *u, const char **error_r)
{
	ipc_msg_init(m, AUTH_RESP_USER, id);
	if (result != AUTH_RESULT_OK && result != AUTH_RESULT_FAIL &&
	    result != AUTH_RESULT_TEMPFAIL) {
		*error_r = "result not allowed in a user answer";
		return -1;
	}
	if ((result == AUTH_RESULT_OK) != (u != NULL)) {
		*error_r = "a user record goes with OK and only with OK";
		return -1;
	}
	ipc_add_u32(m, (uint32_t)result);
	ipc_add_str(m, auth_proto_s(reason));
	ipc_add_str(m, auth_proto_s(service));
	ipc_add_str(m, auth_proto_s(ip));
	if (u != NULL)
		(void)auth_proto_add_user(m, u);
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

static int
auth_proto_user_resp_check(const struct auth_user_resp *r,
    const char **error_r)
{
	if (r->result != AUTH_RESULT_OK && r->result != AUTH_RESULT_FAIL &&
	    r->result != AUTH_RESULT_TEMPFAIL) {
		*error_r = "result not allowed in a user answer";
		return -1;
	}
	if (r->service[0] != '\0' ? !auth_proto_service_valid(r->service) :
	    r->result == AUTH_RESULT_OK) {
		*error_r = "unknown service";
		return -1;
	}
	return 0;
}

int
auth_proto_user_resp_decode(struct ipc_msg *m, struct auth_user_resp *r,
    const char **error_r)
{
	memset(r, 0, sizeof(*r));
	r->id = m->id;
	m->pos = 0;
	if (m->type != AUTH_RESP_USER) {
		*error_r = "not a user answer";
		return -1;
	}
	ipc_get_u32(m, &r->result);
	ipc_get_str(m, &r->reason);
	ipc_get_str(m, &r->service);
	ipc_get_str(m, &r->ip);
	if (m->error == NULL && r->result == AUTH_RESULT_OK &&
	    auth_proto_get_user(m, &r->user, error_r) < 0)
		return -1;
	if (ipc_get_end(m, error_r) < 0 ||
	    auth_proto_user_resp_check(r, error_r) < 0) {
		user_free(&r->user);
		return -1;
	}
	return 0;
}

/*
 * The user record.
 */

int
auth_proto_add_user(struct ipc_msg *m, const struct user *u)
{
	if (u->mail_location == NULL || u->mail_location[0] == '\0') {
		/* Sticky like the builders' own errors. */
		if (m->error == NULL)
			m->error = "user record without a mail_location";
		return -1;
	}
	ipc_add_str(m, u->name);
	ipc_add_u32(m, (uint32_t)u->uid);
	ipc_add_u32(m, (uint32_t)u->gid);
	ipc_add_str(m, auth_proto_s(u->home));
	ipc_add_str(m, u->mail_location);
	ipc_add_u32(m, u->has_quota ? 1 : 0);
	ipc_add_u64(m, u->quota);
	ipc_add_u32(m, u->system ? 1 : 0);
	return m->error != NULL ? -1 : 0;
}

/* The fields of a user record; returns -1 when one is missing (m->error
 * says why), sets *bad for a flag other than 0 or 1. */
static int
auth_proto_get_user_fields(struct ipc_msg *m, struct user *u,
    const char **name_r, const char **home_r, const char **loc_r,
    bool *bad)
{
	uint32_t uid, gid;

	ipc_get_str(m, name_r);
	ipc_get_u32(m, &uid);
	ipc_get_u32(m, &gid);
	ipc_get_str(m, home_r);
	ipc_get_str(m, loc_r);
	auth_proto_get_bool(m, &u->has_quota, bad);
	ipc_get_u64(m, &u->quota);
	auth_proto_get_bool(m, &u->system, bad);
	u->uid = (uid_t)uid;
	u->gid = (gid_t)gid;
	return m->error != NULL ? -1 : 0;
}

static int
auth_proto_user_check(const struct user *u, const char *name,
    const char *home, const char *loc, const char **error_r)
{
	const char *error;

	if (user_name_valid(name, &error) < 0) {
		*error_r = "user record: invalid user name";
		return -1;
	}
	if (home[0] != '\0' && home[0] != '/') {
		*error_r = "user record: home is not an absolute path";
		return -1;
	}
	if (loc[0] == '\0') {
		*error_r = "user record: empty mail_location";
		return -1;
	}
	if (u->has_quota ? u->quota == 0 : u->quota != 0) {
		*error_r = "user record: quota disagrees with has_quota";
		return -1;
	}
	if (u->uid == USER_UID_UNSET || u->gid == USER_GID_UNSET) {
		*error_r = "user record: uid or gid unset";
		return -1;
	}
	return 0;
}

int
auth_proto_get_user(struct ipc_msg *m, struct user **u_r,
    const char **error_r)
{
	struct user tmp;
	const char *name, *home, *loc;
	bool bad = false;

	*u_r = NULL;
	memset(&tmp, 0, sizeof(tmp));
	if (auth_proto_get_user_fields(m, &tmp, &name, &home, &loc,
	    &bad) < 0) {
		*error_r = m->error;
		return -1;
	}
	if (bad) {
		*error_r = "user record: flag field other than 0 or 1";
		return -1;
	}
	if (auth_proto_user_check(&tmp, name, home, loc, error_r) < 0)
		return -1;
	*u_r = xmalloc(sizeof(**u_r));
	**u_r = tmp;
	(*u_r)->name = xstrdup(name);
	(*u_r)->pwhash = xstrdup("");
	(*u_r)->home = xstrdup(home);
	(*u_r)->mail_location = xstrdup(loc);
	(*u_r)->fields = xstrdup("");
	return 0;
}
