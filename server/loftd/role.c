/*
 * role.c: what the network roles of loftd (login, smtpd, lmtp) do alike:
 * at start, before they serve a client, load the TLS context the
 * configuration names (as root, before the privilege drop) and ask the
 * auth process once for the SASL mechanisms it offers; then keep the
 * channel to the master: new connections, retirement, LOFTD_CONN_DONE.
 * Trusts the configuration the master checked, the auth process, and the
 * master (whose records are still checked for form: a malformed one is
 * logged and dropped).
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "tls.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "chan.h"
#include "loftd.h"

/* How long the auth process may take to list its mechanisms at start. */
#define ROLE_MECHS_TIMEOUT_MS	10000

/* The master channel of this process (one a process). */
struct role_master {
	struct ioloop *loop;
	struct chan *chan;			/* owned */
	const struct role_master_ops *ops;
	size_t nclients;
	bool retired;
};

static struct role_master role_master;
static struct ipc_msg role_out;

int
role_tls_ctx(struct tls_ctx **ctx_r, const char **error_r)
{
	*ctx_r = NULL;
	if (conf_str("tls_cert_file")[0] == '\0')
		return 0;
	return tls_ctx_new(conf_str("tls_cert_file"), conf_str("tls_key_file"),
	    conf_str("tls_protocols"), conf_str("tls_ciphers"),
	    conf_str("tls_ciphersuites"), ctx_r, error_r);
}

int
role_auth_mechs(char **mechs_r, const char **error_r)
{
	struct ipc_chan *ch = ipc_chan_new(dup(LOFTD_FD_AUTH));
	static struct ipc_msg out, resp;
	struct auth_req req;
	struct auth_resp r;
	int ret;

	*mechs_r = NULL;
	memset(&req, 0, sizeof(req));
	req.type = AUTH_REQ_MECHS;
	req.id = 1;
	req.secure = true;
	ret = auth_proto_req_encode(&out, &req, error_r);
	if (ret == 0)
		ret = ipc_call(ch, &out, &resp, ROLE_MECHS_TIMEOUT_MS, error_r);
	if (ret == 0)
		ret = auth_proto_resp_decode(&resp, &r, error_r);
	if (ret == 0 && r.mechs == NULL) {
		*error_r = "no mechanism list";
		ret = -1;
	}
	if (ret == 0)
		*mechs_r = xstrdup(r.mechs);
	ipc_msg_clear(&out);
	ipc_msg_clear(&resp);
	ipc_chan_free(&ch);
	return ret;
}

/*
 * The master channel.
 */

static void
role_maybe_exit(void)
{
	if (role_master.retired && role_master.nclients == 0)
		ioloop_stop(role_master.loop);
}

void
role_client_add(void)
{
	role_master.nclients++;
}

void
role_client_remove(void)
{
	role_master.nclients--;
	role_maybe_exit();
}

void
role_conn_refuse(struct role_conn *rc)
{
	log_warning("bad connection record from the master");
	if (rc->fd >= 0)
		close(rc->fd);
	rc->fd = -1;
}

static void
role_conn_new(struct ipc_msg *m)
{
	struct role_conn rc;
	const char *error;

	memset(&rc, 0, sizeof(rc));
	rc.fd = ipc_msg_take_fd(m);
	ipc_get_u32(m, &rc.id);
	ipc_get_u32(m, &rc.service);
	ipc_get_u32(m, &rc.tls);
	ipc_get_str(m, &rc.rip);
	ipc_get_u32(m, &rc.rport);
	ipc_get_str(m, &rc.lip);
	ipc_get_u32(m, &rc.lport);
	if (ipc_get_end(m, &error) < 0 || rc.fd < 0) {
		role_conn_refuse(&rc);
		return;
	}
	role_master.ops->conn_new(&rc);
}

static void
role_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	switch (m->type) {
	case LOFTD_CONN_NEW:
		role_conn_new(m);
		break;
	case LOFTD_RETIRE:
		role_master.retired = true;
		role_maybe_exit();
		break;
	default:
		if (role_master.ops->msg == NULL ||
		    !role_master.ops->msg(m))
			log_warning("unexpected record %u from the master",
			    m->type);
	}
}

static void
role_master_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (error != NULL)
		log_error("master channel: %s", error);
	/* Without the master no client comes and none can be handed on:
	 * end everything. */
	ioloop_stop(role_master.loop);
}

static const struct chan_callbacks role_master_cb = {
	.msg = role_master_msg,
	.closed = role_master_closed,
};

void
role_master_open(struct ioloop *loop, const struct role_master_ops *ops)
{
	role_master.loop = loop;
	role_master.ops = ops;
	role_master.chan = chan_new(loop, LOFTD_FD_MASTER, &role_master_cb,
	    NULL);
}

void
role_master_close(void)
{
	chan_free(&role_master.chan);
}

int
role_master_send(struct ipc_msg *m)
{
	return chan_send(role_master.chan, m);
}

void
role_conn_done(uint32_t id)
{
	if (role_master.chan == NULL || !chan_ok(role_master.chan))
		return;
	ipc_msg_init(&role_out, LOFTD_CONN_DONE, 0);
	ipc_add_u32(&role_out, id);
	(void)chan_send(role_master.chan, &role_out);
}
