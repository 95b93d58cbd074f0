/*
 * role.c: what the network roles of loftd (login, smtpd) do alike at
 * start, before they serve a client: load the TLS context the
 * configuration names (as root, before the privilege drop) and ask the
 * auth process once for the SASL mechanisms it offers.
 * Trusts the configuration the master checked, and the auth process.
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "ipc.h"
#include "tls.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "loftd.h"

/* How long the auth process may take to list its mechanisms at start. */
#define ROLE_MECHS_TIMEOUT_MS	10000

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
