/*
 * loftd.c: the command line of loftd, and the choice of role. Run by an
 * administrator: "loftd [-c FILE] [-f]" becomes the master. Run by the
 * master: "loftd -c FILE -X ROLE ..." becomes one of its children (see
 * loftd.h); those options are not for people.
 *
 * Built a second time with LOFTD_MAIL_ONLY, this file is the main of
 * loftd-mail, the mail role alone, which the master runs for every mail
 * process: "loftd-mail -c FILE -X mail ...". That program is linked with
 * LMDB and libc only. The mail role never speaks TLS (the login process
 * relays TLS clients in plaintext) nor checks a password, and a process
 * that merely maps libcrypto, libssl and libsasl2 pays some 500 KiB of
 * their relocated data: with one mail process per mailbox owner, that was
 * most of what an idle session of a system user cost. (The TLS setting
 * checks of the parameter table are lib/tls_nocheck.c's stand-ins there.)
 *
 * Trusts its arguments only as far as an administrator's.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "ioloop.h"
#include "log.h"
#include "loftd.h"
#include "pop3_session.h"

const char *loftd_conf_path;

static void
loftd_usage(void)
{
#ifdef LOFTD_MAIL_ONLY
	fprintf(stderr, "loftd-mail: started by loftd only\n");
#else
	fprintf(stderr, "usage: loftd [-c config_file] [-f]\n");
#endif
	exit(64);
}

const char *
loftd_service_name(uint32_t service)
{
	return service == LOFTD_SVC_POP3 ? "pop3" :
	    service == LOFTD_SVC_IMAP ? "imap" :
	    service == LOFTD_SVC_SMTP ? "smtp" :
	    service == LOFTD_SVC_SUBMISSION ||
	    service == LOFTD_SVC_SUBMISSIONS ? "submission" :
	    loftd_service_lmtp(service) ? "lmtp" : "?";
}

bool
loftd_service_smtp(uint32_t service)
{
	return service == LOFTD_SVC_SMTP || service == LOFTD_SVC_SUBMISSION ||
	    service == LOFTD_SVC_SUBMISSIONS;
}

bool
loftd_service_lmtp(uint32_t service)
{
	return service == LOFTD_SVC_LMTP || service == LOFTD_SVC_LMTP_UNIX;
}

void
loftd_date(char *out, size_t size)
{
	static const char *const days[] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec"
	};
	time_t now = time(NULL);
	struct tm tm;
	long off;

	localtime_r(&now, &tm);
	off = tm.tm_gmtoff / 60;
	snprintf(out, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

void
loftd_pop3_policy(struct pop3_settings *set)
{
	set->login_delay = (unsigned)conf_time("pop3_login_delay");
	set->expire_now = strcmp(conf_str("pop3_expire"), "0") == 0;
}

void
loftd_drop_privileges(const char *param, const char *chroot_dir)
{
	struct rlimit rl = { 0, 0 };
	struct passwd *pw;
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0)
		return;
	if ((pw = getpwnam(conf_str(param))) == NULL || pw->pw_uid == 0)
		log_fatal("%s %s: not a usable account", param,
		    conf_str(param));
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	tzset();
#ifdef __SANITIZE_ADDRESS__
	/* LeakSanitizer reads /proc at exit: a test build is not chrooted,
	 * so that the leaks of these processes are checked too. */
	chroot_dir = NULL;
#endif
	if (chroot_dir != NULL && chroot_dir[0] != '\0' &&
	    chroot(chroot_dir) < 0)
		log_fatal("chroot %s: %s", chroot_dir, strerror(errno));
	if (chdir("/") < 0 || setgroups(1, &gid) < 0 ||
	    setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0 ||
	    setuid(0) == 0 || geteuid() != uid)
		log_fatal("cannot become %s %s", param, conf_str(param));
	/* No children, no setuid programs, no core files with keys. (Under
	 * AddressSanitizer, LeakSanitizer needs to clone a thread at exit.) */
#ifndef __SANITIZE_ADDRESS__
	(void)setrlimit(RLIMIT_NPROC, &rl);
#else
	(void)rl;
#endif
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_fatal("prctl: %s", strerror(errno));
}

static void
loftd_sigterm(int signo, void *ctx)
{
	(void)signo;
	ioloop_stop(ctx);
}

void
loftd_stop_on_sigterm(struct ioloop *loop)
{
	if (ioloop_signal_add(loop, SIGTERM, loftd_sigterm, loop) < 0)
		log_fatal("signals: cannot watch SIGTERM");
}

void
loftd_log_setup(const char *program, bool foreground, bool have_log_fd)
{
	char ident[64];

	snprintf(ident, sizeof(ident), "%s/%s", conf_str("syslog_name"),
	    program);
	if (have_log_fd) {
		log_open(ident, LOG_DEST_FILE);
		log_set_fd(LOFTD_FD_LOG);
	} else if (foreground)
		log_open(ident, LOG_DEST_STDERR);
	else if (log_set_syslog(conf_str("syslog_name"), program,
	    conf_str("syslog_facility")) < 0)
		log_open(ident, LOG_DEST_SYSLOG);
}

/* Read the configuration text from LOFTD_FD_CONF and load it. */
static int
loftd_conf_inherit(const char *path, const char **error_r)
{
	struct buf text;
	unsigned char chunk[8192];
	ssize_t n;
	int ret;

	buf_init(&text, CONF_FILE_MAX);
	if (lseek(LOFTD_FD_CONF, 0, SEEK_SET) < 0) {
		*error_r = "no configuration from the master";
		buf_free(&text);
		return -1;
	}
	while ((n = read(LOFTD_FD_CONF, chunk, sizeof(chunk))) > 0)
		if (buf_append(&text, chunk, (size_t)n) < 0)
			break;
	close(LOFTD_FD_CONF);
	ret = conf_load_buffer(path, text.data != NULL ?
	    (const char *)text.data : "", text.len,
	    error_r);
	buf_free(&text);
	return ret;
}

int
main(int argc, char **argv)
{
	const char *conf_path = conf_default_path(), *role = NULL, *error;
	bool foreground = false, have_log = false;
	int ch, nchan = 0, nsmtpd = 0;

	log_open("loftd", LOG_DEST_STDERR);
	while ((ch = getopt(argc, argv, "c:fLn:s:X:")) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'L':
			have_log = true;
			break;
		case 'n':
			nchan = atoi(optarg);
			break;
		case 's':
			nsmtpd = atoi(optarg);
			break;
		case 'X':
			role = optarg;
			break;
		default:
			loftd_usage();
		}
	}
	if (optind != argc)
		loftd_usage();
#ifdef LOFTD_MAIL_ONLY
	(void)nchan;
	(void)nsmtpd;
	if (role == NULL || strcmp(role, "mail") != 0)
		loftd_usage();
#else
	if (role == NULL)
		return master_main(conf_path, foreground);
#endif
	/* A child: the configuration is the text the master runs with. */
	loftd_conf_path = conf_path;
	if (loftd_conf_inherit(conf_path, &error) < 0)
		log_fatal("%s", error);
#ifndef LOFTD_MAIL_ONLY
	if (strcmp(role, "auth") == 0 && nchan >= 1 && nsmtpd >= 0 &&
	    nsmtpd <= LOFTD_LOGIN_MAX - nchan)
		return authproc_main(nchan, nsmtpd, foreground, have_log);
	if (strcmp(role, "login") == 0)
		return login_main(foreground, have_log);
	if (strcmp(role, "smtpd") == 0)
		return smtpd_main(foreground, have_log);
	if (strcmp(role, "qmgr") == 0)
		return qmgr_main(foreground, have_log);
	if (strcmp(role, "lmtp") == 0)
		return lmtpd_main(foreground, have_log);
#endif
	if (strcmp(role, "mail") == 0)
		return mailproc_main(foreground, have_log);
	loftd_usage();
	return 64;
}
