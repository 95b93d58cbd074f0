/*
 * deliver.c: loft-deliver, the local delivery agent.
 *
 *   loft-deliver [-c FILE] -d USER [-f SENDER] [-a RECIPIENT] [-m FOLDER]
 *       [ARG...]
 *
 * ARGs are the rules' $1, $2 ... (procmail's -a, for a Postfix
 * mailbox_command such as 'loft-deliver -d "$USER" -- "$EXTENSION"').
 * Reads one message on standard input, prepends Return-Path: and
 * Delivered-To:, runs the user's procmail-style rules (mda_rules_file,
 * lib/rules.h) unless -m names the folder, stores it in the user's mail
 * (store.h) and exits with a
 * sysexits(3) code that Postfix's mailbox_command (and any MTA) reads:
 * 0 only once the message is on disk. Every other outcome prints one line
 * on standard error that starts with an enhanced status code (RFC 3463),
 * which Postfix copies into its DSN, and logs one maillog line.
 *
 * SECURITY: started as root it switches to the mailbox owner before it
 * reads the message or touches any mailbox. The message is untrusted and
 * is only stored (and parsed by the bounded parsers of lib/msg.c), never
 * interpreted; the rules are the user's, read and run as the user.
 */
#include "config.h"
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "forward.h"
#include "lock.h"
#include "log.h"
#include "priv.h"
#include "rules.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"

struct deliver_args {
	const char *config;
	const char *user;
	const char *sender;	/* NULL: none given */
	const char *orig_rcpt;
	const char *folder;
	char *const *args;	/* the rules' $1 ... */
	size_t nargs;
};

struct deliver_ctx {
	struct deliver_args a;
	struct timeval start;
	char rcpt[512];		/* for the log: user@domain */
	char sender[512];
	bool sender_given;	/* -f, possibly empty (<>, a bounce) */
};

static void __attribute__((noreturn))
deliver_usage(void)
{
	fprintf(stderr, "usage: loft-deliver [-c config] -d user "
	    "[-f sender] [-a original_recipient] [-m folder] [arg ...] "
	    "< message\n");
	exit(EX_USAGE);
}

static double
deliver_delay(const struct deliver_ctx *c)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (double)(now.tv_sec - c->start.tv_sec) +
	    (double)(now.tv_usec - c->start.tv_usec) / 1e6;
}

/* deliver_finish: the maillog line, the standard error line and the exit.
 * dsn is "2.0.0"-style; text is the reason shown to the sender. */
static void __attribute__((noreturn))
deliver_finish(struct deliver_ctx *c, int status, const char *dsn,
    const char *text)
{
	const char *what = status == EX_OK ? "sent" :
	    status == EX_TEMPFAIL ? "deferred" : "bounced";
	char esc[1024], orig[600];

	log_escape(text, esc, sizeof(esc));
	orig[0] = '\0';
	if (c->a.orig_rcpt != NULL) {
		char e2[520];

		snprintf(orig, sizeof(orig), ", orig_to=<%s>",
		    log_escape(c->a.orig_rcpt, e2, sizeof(e2)));
	}
	log_info("to=<%s>%s, delay=%.2f, dsn=%s, status=%s (%s)", c->rcpt,
	    orig, deliver_delay(c), dsn, what, esc);
	if (status != EX_OK)
		fprintf(stderr, "%s %s\n", dsn, esc);
	exit(status);
}

static void
deliver_parse_args(int argc, char **argv, struct deliver_args *a)
{
	int ch;

	memset(a, 0, sizeof(*a));
	a->config = conf_default_path();
	while ((ch = getopt(argc, argv, "c:d:f:a:m:")) != -1) {
		switch (ch) {
		case 'c':
			a->config = optarg;
			break;
		case 'd':
			a->user = optarg;
			break;
		case 'f':
			a->sender = optarg;
			break;
		case 'a':
			a->orig_rcpt = optarg;
			break;
		case 'm':
			a->folder = optarg;
			break;
		default:
			deliver_usage();
		}
	}
	if (a->user == NULL)
		deliver_usage();
	a->args = argv + optind;
	a->nargs = (size_t)(argc - optind);
}

/* Become the mailbox owner, for good, before any input is read. */
static void
deliver_switch_user(struct deliver_ctx *c, const struct user *u)
{
	const char *err;

	if (priv_become(u, true, &err) < 0)
		deliver_finish(c, EX_TEMPFAIL, "4.3.0", err);
}

/*
 * loftd's mail process runs loft-deliver for a user with rules or a
 * .forward (server/loftd/mailproc.c). It is the user already and cannot
 * read the user database, so it says who the user is in the environment:
 * LOFT_DELIVER_USER (the -d name again), LOFT_DELIVER_HOME,
 * LOFT_DELIVER_MAIL (the mail_location) and LOFT_DELIVER_QUOTA (bytes;
 * empty: none). Taken only when not running as root: then this process
 * can do nothing its caller could not, so nothing is gained by lying.
 */
static struct user *
deliver_user_given(const struct deliver_ctx *c)
{
	const char *name = getenv("LOFT_DELIVER_USER");
	const char *home = getenv("LOFT_DELIVER_HOME");
	const char *mail = getenv("LOFT_DELIVER_MAIL");
	const char *quota = getenv("LOFT_DELIVER_QUOTA");
	struct user *u;
	char *end;

	if (getuid() == 0 || geteuid() == 0 || name == NULL ||
	    strcmp(name, c->a.user) != 0 || home == NULL || mail == NULL ||
	    mail[0] == '\0')
		return NULL;
	u = xcalloc(1, sizeof(*u));
	u->name = xstrdup(name);
	u->pwhash = xstrdup("");
	u->uid = geteuid();
	u->gid = getegid();
	u->home = xstrdup(home);
	u->mail_location = xstrdup(mail);
	u->fields = xstrdup("");
	if (quota != NULL && quota[0] != '\0') {
		u->quota = strtoull(quota, &end, 10);
		u->has_quota = *end == '\0';
	}
	return u;
}

/* Look the user up, trying USER then, with recipient_delimiter, the part
 * before the delimiter (alice+lists -> alice). */
static struct user *
deliver_lookup(struct deliver_ctx *c)
{
	const char *delim = conf_str("recipient_delimiter"), *err = NULL;
	struct user *u = NULL;
	char base[256];
	int ret;

	if ((u = deliver_user_given(c)) != NULL)
		return u;
	ret = user_lookup(c->a.user, &u, &err);
	if (ret == 0 && delim[0] != '\0') {
		size_t n = strcspn(c->a.user, delim);

		if (c->a.user[n] != '\0' && n > 0 && n < sizeof(base)) {
			memcpy(base, c->a.user, n);
			base[n] = '\0';
			ret = user_lookup(base, &u, &err);
		}
	}
	if (ret < 0)
		deliver_finish(c, EX_TEMPFAIL, "4.3.0", err != NULL ? err :
		    "user database unavailable");
	if (ret == 0)
		deliver_finish(c, EX_NOUSER, "5.1.1", err != NULL ?
		    err : "unknown user");
	return u;
}

/* Read the message; more than limit bytes is a permanent refusal. */
static void
deliver_read(struct deliver_ctx *c, struct buf *in, size_t limit)
{
	unsigned char chunk[65536];
	ssize_t n;

	buf_init(in, limit);
	for (;;) {
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			deliver_finish(c, EX_TEMPFAIL, "4.3.0",
			    "error reading the message");
		}
		if (buf_append(in, chunk, (size_t)n) < 0)
			deliver_finish(c, EX_UNAVAILABLE, "5.3.4",
			    "message too big for the system");
	}
	if (in->len == 0)
		deliver_finish(c, EX_DATAERR, "5.6.0",
		    "empty message refused");
}

/* A leading mbox "From " line (some MTAs and fetchmail pass one) is not
 * part of the message; it may name the sender. */
static size_t
deliver_skip_from_line(const struct buf *in, bool keep_sender, char *sender,
    size_t size)
{
	const unsigned char *nl;
	size_t n;

	if (in->len < 5 || memcmp(in->data, "From ", 5) != 0)
		return 0;
	nl = memchr(in->data, '\n', in->len);
	if (nl == NULL)
		return 0;
	n = strcspn((const char *)in->data + 5, " \t\r\n");
	if (n > 0 && n < size && !keep_sender) {
		memcpy(sender, in->data + 5, n);
		sender[n] = '\0';
	}
	return (size_t)(nl - in->data) + 1;
}

/* The end of the header line (with its continuation lines) at p. */
static size_t
deliver_field_len(const unsigned char *p, size_t len)
{
	size_t i = 0;

	for (;;) {
		const unsigned char *nl = memchr(p + i, '\n', len - i);

		if (nl == NULL)
			return len;
		i = (size_t)(nl - p) + 1;
		if (i >= len || (p[i] != ' ' && p[i] != '\t'))
			return i;
	}
}

static bool
deliver_field_is(const unsigned char *p, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && strncasecmp((const char *)p, name, n) == 0 &&
	    p[n] == ':';
}

/* Does the field's value equal addr (ignoring case, blanks, <>)? */
static bool
deliver_field_value_is(const unsigned char *p, size_t len, const char *addr)
{
	const unsigned char *v = memchr(p, ':', len), *end = p + len;
	size_t n = strlen(addr);

	if (v == NULL)
		return false;
	for (v++; v < end && (*v == ' ' || *v == '\t' || *v == '<'); v++)
		;
	while (end > v && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t' || end[-1] == '>'))
		end--;
	return (size_t)(end - v) == n &&
	    strncasecmp((const char *)v, addr, n) == 0;
}

/*
 * The stored message: Return-Path: and Delivered-To: on top, then the
 * message. An MTA such as Postfix's local(8) may already have prepended
 * its own Return-Path:, Delivered-To: and X-Original-To: lines: in that
 * leading block an old Return-Path: is dropped (RFC 5321 4.4: the final
 * delivery sets it) and a Delivered-To: for the same address is not
 * written twice. Everything after that block is kept byte for byte.
 */
static void
deliver_compose(struct deliver_ctx *c, const struct buf *in, size_t skip,
    struct buf *out)
{
	const unsigned char *p = in->data + skip;
	size_t len = in->len - skip, i = 0, flen;
	const unsigned char *nl = memchr(p, '\n', len);
	const char *eol = nl != NULL && nl > p && nl[-1] == '\r' ?
	    "\r\n" : "\n";
	const char *dt = c->a.orig_rcpt != NULL ? c->a.orig_rcpt : c->rcpt;
	char esc_s[600], esc_r[600];
	bool have_dt = false;

	/* Header values must not carry a line break from the command line. */
	log_escape(c->sender, esc_s, sizeof(esc_s));
	log_escape(dt, esc_r, sizeof(esc_r));
	buf_init(out, (size_t)-1);
	if (buf_printf(out, "Return-Path: <%s>%s", esc_s, eol) < 0)
		deliver_finish(c, EX_TEMPFAIL, "4.3.0", "out of memory");
	for (; i < len; i += flen) {
		flen = deliver_field_len(p + i, len - i);
		if (deliver_field_is(p + i, flen, "Return-Path"))
			continue;
		if (deliver_field_is(p + i, flen, "Delivered-To")) {
			have_dt = have_dt ||
			    deliver_field_value_is(p + i, flen, esc_r);
		} else if (!deliver_field_is(p + i, flen, "X-Original-To"))
			break;
		if (buf_append(out, p + i, flen) < 0)
			deliver_finish(c, EX_TEMPFAIL, "4.3.0", "out of memory");
	}
	if ((!have_dt && buf_printf(out, "Delivered-To: %s%s", esc_r,
	    eol) < 0) || buf_append(out, p + i, len - i) < 0)
		deliver_finish(c, EX_TEMPFAIL, "4.3.0", "out of memory");
}

static void
deliver_result(struct deliver_ctx *c, enum store_result r,
    const struct store_delivered *d, const char *folder, const char *err)
{
	char text[1024];

	switch (r) {
	case STORE_OK:
		snprintf(text, sizeof(text), "delivered to %s %s", d->format,
		    folder);
		deliver_finish(c, EX_OK, "2.0.0", text);
	case STORE_OVERQUOTA:
		if (conf_bool("quota_full_tempfail"))
			deliver_finish(c, EX_TEMPFAIL, "4.2.2", err);
		deliver_finish(c, EX_NOPERM, "5.2.2", err);
	case STORE_DISKFULL:
		deliver_finish(c, EX_TEMPFAIL, "4.3.1", err);
	case STORE_LOCKED:
		deliver_finish(c, EX_TEMPFAIL, "4.2.0", err);
	case STORE_PERMFAIL:
		deliver_finish(c, EX_CANTCREAT, "5.2.0", err);
	case STORE_TEMPFAIL:
		break;
	}
	deliver_finish(c, EX_TEMPFAIL, "4.3.0", err);
}

static void
deliver_set_rcpt(struct deliver_ctx *c)
{
	char esc[300];

	log_escape(c->a.user, esc, sizeof(esc));
	if (strchr(c->a.user, '@') != NULL)
		strlcpy(c->rcpt, esc, sizeof(c->rcpt));
	else
		snprintf(c->rcpt, sizeof(c->rcpt), "%s@%s", esc,
		    conf_str("myhostname"));
}

/*
 * A rule file others could have written is not run (procmail's
 * "suspicious rcfile"), by the check .forward files get (forward.c). Unlike
 * a .forward, a symbolic link is followed wherever it leads, on purpose:
 * mda_rules_file may name a file outside the home, and what counts is
 * the file that is read, which must still be the user's. NULL if it may
 * be run, else why not.
 */
static const char *
deliver_rules_suspicious(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;	/* missing: rules_parse_file says so */
	return rules_file_suspicious(&st, geteuid(), false);
}

static void
deliver_rules_log(void *ctx, bool error, const char *line)
{
	char esc[1024];

	(void)ctx;
	log_escape(line, esc, sizeof(esc));
	if (!error) {
		log_info("rules: %s", esc);
		return;
	}
	log_warning("rules: %s", esc);
	fprintf(stderr, "loft-deliver: rules: %s\n", esc);
}

/* sendmail_path, or loft's own sendmail when it is installed, else the
 * system's (what procmail's $SENDMAIL is, and what a .forward's addresses
 * go to). */
static const char *
deliver_sendmail(void)
{
	if (conf_str("sendmail_path")[0] != '\0')
		return conf_str("sendmail_path");
#ifdef LOFT_SBINDIR
	if (access(LOFT_SBINDIR "/sendmail", X_OK) == 0)
		return LOFT_SBINDIR "/sendmail";
#endif
	return "/usr/sbin/sendmail";
}

/* The folder writer rules and .forward targets share: into the store,
 * or beside it under the delivery locks. */
static void
deliver_rules_store_init(struct rules_store *rs, struct store *st,
    const struct deliver_ctx *c)
{
	char **items = conf_list("mailbox_delivery_lock", NULL);
	const char *err;

	memset(rs, 0, sizeof(*rs));
	rs->st = st;
	rs->sender = c->sender;
	rs->received = time(NULL);
	rs->do_fsync = conf_bool("mail_fsync");
	if (lock_methods_parse(items, &rs->lock_methods, &err) < 0)
		rs->lock_methods = LOCK_M_FCNTL | LOCK_M_DOTLOCK;
	conf_list_free(&items);
	rs->lock_attempts = (unsigned)conf_int("deliver_lock_attempts");
	rs->lock_delay_ms = (unsigned)(conf_time("deliver_lock_delay") * 1000);
	rs->lock_stale_secs = (unsigned)conf_time("stale_lock_time");
}

/*
 * The user's ~/.forward (forward.h), before any rule: Postfix's local(8)
 * reads it first too. Returns when the mailbox is to get the message
 * (there is no .forward, it names the user itself (\user), or it is
 * refused: logged, and the mail is not lost); otherwise ends the process:
 * 0 once every target took the message, EX_TEMPFAIL if one may work
 * later (the MTA tries again, all of them: a duplicate for those that
 * worked, as with Postfix), EX_UNAVAILABLE if one never will.
 */
static void
deliver_forward(struct deliver_ctx *c, const struct user *u,
    struct store **stp, const struct buf *msg)
{
	struct rules_callbacks cb = { rules_store_folder, NULL,
	    deliver_rules_log };
	struct forward f = { NULL, 0, 0 };
	struct forward_result res;
	struct forward_env env;
	struct rules_store rs;
	const char *err;
	char path[4096], text[700];
	int r;

	if (u->home[0] == '\0' || (size_t)snprintf(path, sizeof(path),
	    "%s/.forward", u->home) >= sizeof(path))
		return;
	if ((r = forward_read(path, geteuid(), u->home, u->name, &f,
	    &err)) <= 0) {
		if (r < 0) {
			snprintf(text, sizeof(text), "%s; delivering to the "
			    "mailbox instead", err);
			deliver_rules_log(NULL, true, text);
		}
		return;
	}
	deliver_rules_store_init(&rs, *stp, c);
	memset(&env, 0, sizeof(env));
	env.user = u->name;
	env.home = u->home;
	env.sender = c->sender;
	env.recipient = c->rcpt;
	env.sendmail = deliver_sendmail();
	env.command_timeout = (unsigned)conf_time("mda_command_timeout");
	(void)forward_run(&f, &env, &cb, &rs, msg->data, msg->len, &res);
	forward_free(&f);
	if (res.status == RULES_OK && res.self)
		return;
	store_close(stp);
	if (res.status == RULES_TEMPFAIL)
		deliver_finish(c, EX_TEMPFAIL, "4.3.0", res.error);
	if (res.status == RULES_PERMFAIL)
		deliver_finish(c, EX_UNAVAILABLE, "5.3.0", res.error);
	snprintf(text, sizeof(text), "forwarded by ~/.forward to %u "
	    "target%s", res.done, res.done == 1 ? "" : "s");
	deliver_finish(c, EX_OK, "2.0.0", text);
}

/*
 * EXITCODE (or TRAP's exit) set by the rules: procmail exits with it, and
 * so does loft-deliver. The status code says what the number means to
 * the MTA (sysexits: 75 and 4.x.x defers); the text says who chose it.
 */
static void __attribute__((noreturn))
deliver_exitcode(struct deliver_ctx *c, const struct rules_result *res,
    const struct rules_store *rs)
{
	char text[700];
	bool ok = res->delivered && rs->store_failure == STORE_OK;

	snprintf(text, sizeof(text), "exit %d set by the rules (EXITCODE); "
	    "the message %s", res->exitcode, ok ? "was delivered" :
	    "was not delivered");
	deliver_finish(c, res->exitcode, res->exitcode == EX_TEMPFAIL ?
	    "4.3.0" : "5.3.0", text);
}

/*
 * Run the user's rules: every folder write goes through rules_store (into
 * the store, or beside it), the exit says whether the message is where
 * the rules (or $DEFAULT) put it and every folder write succeeded. A rule
 * file that does not parse is reported (file:line, stderr and log) and
 * the message goes to the inbox.
 */
static void __attribute__((noreturn))
deliver_rules(struct deliver_ctx *c, const struct user *u,
    struct store **stp, struct rules *r, const struct buf *msg)
{
	struct store *st = *stp;
	struct rules_callbacks cb = { rules_store_folder, NULL,
	    deliver_rules_log };
	struct rules_result res;
	struct rules_store rs;
	struct rules_env env;
	char *inbox = rules_store_inbox(st);
	char text[700];

	deliver_rules_store_init(&rs, st, c);
	memset(&env, 0, sizeof(env));
	env.user = u->name;
	env.home = u->home[0] != '\0' ? u->home : NULL;
	env.sender = c->sender;
	env.recipient = c->rcpt;
	env.orgmail = inbox;
	env.sendmail = deliver_sendmail();
	env.hostname = conf_str("myhostname");
	env.args = c->a.args;
	env.nargs = c->a.nargs;
	env.stdout_fd = STDOUT_FILENO;
	env.command_timeout = (unsigned)conf_time("mda_command_timeout");
	rules_limits_default(&env.limits);
	(void)rules_run(r, &env, &cb, &rs, msg->data, msg->len, &res);
	free(inbox);
	rules_free(&r);
	store_close(stp);
	if (res.exitcode > 0)
		deliver_exitcode(c, &res, &rs);
	if (res.host_stop && rs.store_failure == STORE_OK)
		deliver_finish(c, EX_OK, "2.0.0", "rules stopped by HOST "
		    "(procmail's: not delivered, not an error)");
	if (res.delivered && rs.store_failure == STORE_OK) {
		snprintf(text, sizeof(text), "delivered by rules%s to %s",
		    res.rules_error ? " (after a rules error)" : "",
		    rs.last_folder[0] != '\0' ? rs.last_folder :
		    res.lastfolder);
		deliver_finish(c, EX_OK, "2.0.0", text);
	}
	if (rs.store_failure != STORE_OK) {
		struct store_delivered none = { 0, 0, "" };

		deliver_result(c, (enum store_result)rs.store_failure, &none,
		    "", rs.failure);
	}
	deliver_finish(c, EX_TEMPFAIL, "4.3.0", res.error[0] != '\0' ?
	    res.error : "rules delivered the message nowhere");
}

int
main(int argc, char **argv)
{
	struct deliver_ctx c;
	struct store_delivery d;
	struct store_delivered done;
	struct store *st;
	struct user *u;
	struct buf in, msg;
	const char *err, *folder;
	enum store_result r;
	size_t skip, limit;
	struct rules *rules = NULL;
	char rpath[4096];
	int ret = 0;

	memset(&c, 0, sizeof(c));
	gettimeofday(&c.start, NULL);
	log_open("loft/deliver", LOG_DEST_SYSLOG);
	log_set_fatal_status(EX_TEMPFAIL);
	/* A file size limit must show as EFBIG (a temporary failure), not
	 * kill us half-way. */
	signal(SIGXFSZ, SIG_IGN);
	deliver_parse_args(argc, argv, &c.a);
	strlcpy(c.rcpt, "unknown", sizeof(c.rcpt));
	if (conf_load(c.a.config, &err) < 0) {
		fprintf(stderr, "4.3.5 %s\n", err);
		log_error("%s", err);
		return EX_TEMPFAIL;
	}
	if (conf_str("maillog_file")[0] != '\0')
		log_set_file(conf_str("maillog_file"));
	else
		log_set_syslog(conf_str("syslog_name"), "deliver",
		    conf_str("syslog_facility"));
	deliver_set_rcpt(&c);
	u = deliver_lookup(&c);
	deliver_switch_user(&c, u);
	if (c.a.sender != NULL) {
		strlcpy(c.sender, c.a.sender, sizeof(c.sender));
		c.sender_given = true;
	}
	limit = conf_int("message_size_limit") > 0 ?
	    (size_t)conf_int("message_size_limit") : (size_t)-1;
	deliver_read(&c, &in, limit);
	skip = deliver_skip_from_line(&in, c.sender_given, c.sender,
	    sizeof(c.sender));
	if (skip == in.len)
		deliver_finish(&c, EX_DATAERR, "5.6.0",
		    "empty message refused");
	deliver_compose(&c, &in, skip, &msg);
	buf_free(&in);
	if (c.a.folder == NULL && rules_file_path(conf_str("mda_rules_file"),
	    u->home, rpath, sizeof(rpath))) {
		const char *why = deliver_rules_suspicious(rpath);

		if (why != NULL) {
			char text[4200];

			snprintf(text, sizeof(text), "%s: %s: ignored", rpath,
			    why);
			deliver_rules_log(NULL, true, text);
			ret = -1;
		} else if ((ret = rules_parse_file(rpath, NULL, &rules,
		    &err)) < 0)
			deliver_rules_log(NULL, true, err);
	}
	if (store_open(u, &st, &err) < 0)
		deliver_finish(&c, EX_TEMPFAIL, "4.3.0", err);
	if (c.a.folder == NULL)
		deliver_forward(&c, u, &st, &msg);
	if (ret != 0)
		deliver_rules(&c, u, &st, rules, &msg);
	folder = c.a.folder != NULL ? c.a.folder : "INBOX";
	d.folder = folder;
	d.sender = c.sender;
	d.received = time(NULL);
	d.msg = msg.data;
	d.len = msg.len;
	r = store_deliver(st, &d, &done, &err);
	if (r == STORE_PERMFAIL && c.a.folder != NULL) {
		char esc[512];

		/* A folder that cannot be used does not lose the mail. */
		log_warning("folder %s refused (%s); delivering to INBOX",
		    log_escape(folder, esc, sizeof(esc)), err);
		d.folder = folder = "INBOX";
		r = store_deliver(st, &d, &done, &err);
	}
	store_close(&st);
	buf_free(&msg);
	user_free(&u);
	deliver_result(&c, r, &done, folder, err);
}
