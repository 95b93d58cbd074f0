/*
 * authproc.c: the auth process of loftd: server/auth on an event loop,
 * with one channel from the master (token redemption), one from each
 * login process of its generation and one from each smtpd process (SMTP
 * AUTH, and whether a local recipient is a user). It keeps the master's
 * privileges, because checking passwords means reading the user database
 * (mode 0600) or, for system users, the shadow file; in exchange it reads
 * nothing but length-checked ipc records. It exits when its last channel closes.
 */
#include "config.h"

#include <signal.h>
#include <unistd.h>

#include "conf.h"
#include "ioloop.h"
#include "log.h"
#include "sasl.h"
#include "auth_server.h"
#include "loftd.h"

static void
authproc_idle(void *ctx)
{
	ioloop_stop(ctx);
}

static void
authproc_signal(int signo, void *ctx)
{
	(void)signo;
	ioloop_stop(ctx);
}

int
authproc_main(int login_channels, int smtpd_channels, bool foreground,
    bool have_log_fd)
{
	struct auth_settings set;
	struct auth_server *srv;
	struct ioloop *loop;
	const char *error;

	loftd_log_setup("auth", foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	loop = ioloop_new();
	if (ioloop_signal_add(loop, SIGTERM, authproc_signal, loop) < 0)
		log_fatal("signals: cannot watch SIGTERM");
	auth_settings_default(&set);
	if (auth_server_new(loop, &set, &srv, &error) < 0)
		log_fatal("%s", error);
	auth_server_set_idle_cb(srv, authproc_idle, loop);
	(void)auth_conn_new_master(srv, LOFTD_FD_MASTER);
	for (int i = 0; i < login_channels; i++)
		(void)auth_conn_new(srv, LOFTD_FD_AUTH + i);
	for (int i = 0; i < smtpd_channels; i++)
		(void)auth_conn_new_smtpd(srv, LOFTD_FD_AUTH + login_channels +
		    i);
	ioloop_run(loop);
	auth_server_free(&srv);
	sasl_lib_deinit();
	ioloop_free(&loop);
	conf_reset();
	return 0;
}
