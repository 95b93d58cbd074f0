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
 */
#include "config.h"

#include <string.h>

#include "auth_proto.h"

static const char *const auth_proto_services[] = { "pop3", "imap", "smtp" };

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
	if (req_r->type == AUTH_REQ_SASL_START && !req_r->has_initial)
		req_r->initial = NULL;
	return 0;
}

int
auth_proto_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *user, const char *reason,
    const unsigned char *challenge, size_t challenge_len,
    const char **error_r)
{
	ipc_msg_init(m, AUTH_RESP, id);
	ipc_add_u32(m, (uint32_t)result);
	ipc_add_str(m, auth_proto_s(user));
	ipc_add_str(m, auth_proto_s(reason));
	ipc_add_data(m, challenge, challenge_len);
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
	return 0;
}
