/*
 * ctl_user.c: "loftctl user", which manages the virtual user file
 * (user_database, see userdb.h).
 *
 *	loftctl user add NAME [--quota BYTES] [--home DIR] [--no-password]
 *	loftctl user passwd NAME [--no-password]
 *	loftctl user quota NAME BYTES|none
 *	loftctl user del NAME
 *	loftctl user list
 *	loftctl user show NAME
 *
 * The password is read from standard input: from a terminal, twice and
 * without echo; otherwise one line, its "\n" (or "\r\n") removed. An
 * empty password is refused; --no-password makes an account without one
 * (no password login) and reads nothing.
 *
 * Exit status: 0; 1 on failure (message on stderr); EX_USAGE (64) for bad
 * usage. Trusts the configuration the dispatcher loaded; argv and the
 * password come from the administrator but are checked like anything
 * else: names by user_name_valid before a password is even asked for,
 * the rest by userdb when the line is composed. Never prints a password
 * or a hash.
 */
#include "config.h"
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>
#include "conf.h"
#include "ctl.h"
#include "pwhash.h"
#include "user.h"
#include "userdb.h"
#include "xmalloc.h"

/* Room for the longest password, one byte more to see it is too long,
 * and the NUL. */
#define CTL_USER_PWBUF (PWHASH_PASSWORD_MAX + 2)

#define CTL_USER_OPT_QUOTA	0x01u
#define CTL_USER_OPT_HOME	0x02u
#define CTL_USER_OPT_NOPASS	0x04u

struct ctl_user_args {
	const char *cmd;	/* "add", "passwd", ... */
	const char *pos[2];	/* positional arguments after cmd */
	int npos;
	const char *home;	/* --home, or NULL */
	uint64_t quota;		/* --quota */
	bool has_quota;
	bool no_password;	/* --no-password */
};

struct ctl_user_cmd {
	const char *name;
	int (*run)(const struct ctl_user_args *args);
	int npos;		/* positional arguments required */
	unsigned int opts;	/* CTL_USER_OPT_* allowed */
};

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios ctl_user_saved_tty;
static volatile sig_atomic_t ctl_user_echo_off;

static int
ctl_user_fail(const struct ctl_user_args *args, const char *what)
{
	fprintf(stderr, "loftctl: user %s: %s\n", args->cmd, what);
	return 1;
}

static int
ctl_user_usage(void)
{
	fprintf(stderr,
	    "usage: loftctl user add NAME [--quota BYTES] [--home DIR] "
	    "[--no-password]\n"
	    "       loftctl user passwd NAME [--no-password]\n"
	    "       loftctl user quota NAME BYTES|none\n"
	    "       loftctl user del NAME\n"
	    "       loftctl user list\n"
	    "       loftctl user show NAME\n");
	return EX_USAGE;
}

/* ---- arguments ---- */

/* BYTES: decimal digits, at least 1, no overflow. */
static int
ctl_user_parse_bytes(const char *s, uint64_t *value_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned int d = (unsigned char)*s - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v == 0)
		return -1;
	*value_r = v;
	return 0;
}

/* One "--name" or "--name=value" option; *i moves past its value. */
static int
ctl_user_option(int argc, char **argv, int *i, struct ctl_user_args *a,
    unsigned int *seen)
{
	const char *opt = argv[*i] + 2, *eq = strchr(opt, '='), *value;
	size_t len = eq != NULL ? (size_t)(eq - opt) : strlen(opt);

	if (len == 11 && strncmp(opt, "no-password", len) == 0 && eq == NULL) {
		a->no_password = true;
		*seen |= CTL_USER_OPT_NOPASS;
		return 0;
	}
	if (eq != NULL)
		value = eq + 1;
	else if (*i + 1 < argc)
		value = argv[++*i];
	else
		return -1;
	if (len == 5 && strncmp(opt, "quota", len) == 0) {
		*seen |= CTL_USER_OPT_QUOTA;
		a->has_quota = true;
		if (ctl_user_parse_bytes(value, &a->quota) == 0)
			return 0;
		fprintf(stderr, "loftctl: user %s: --quota wants a number of "
		    "bytes >= 1\n", a->cmd);
		return -1;
	}
	if (len == 4 && strncmp(opt, "home", len) == 0) {
		*seen |= CTL_USER_OPT_HOME;
		a->home = value;
		return 0;
	}
	return -1;
}

static int
ctl_user_parse(int argc, char **argv, struct ctl_user_args *a,
    unsigned int *seen)
{
	bool options = true;
	int i;

	for (i = 2; i < argc; i++) {
		if (options && strcmp(argv[i], "--") == 0)
			options = false;
		else if (options && strncmp(argv[i], "--", 2) == 0) {
			if (ctl_user_option(argc, argv, &i, a, seen) < 0)
				return -1;
		} else if (a->npos < 2)
			a->pos[a->npos++] = argv[i];
		else
			return -1;
	}
	return 0;
}

/* ---- passwords ---- */

static void
ctl_user_restore_tty(void)
{
	if (ctl_user_echo_off) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_user_saved_tty);
		ctl_user_echo_off = 0;
	}
}

/* Interrupted with echo off: put the terminal back, then die of the
 * signal as we would have. */
static void
ctl_user_signal(int sig)
{
	ctl_user_restore_tty();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
ctl_user_catch_signals(void (*handler)(int))
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT,
	    SIGTSTP };
	size_t i;

	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], handler);
}

/* One line from standard input, without its "\n" or "\r\n", read a byte
 * at a time so nothing past it is consumed. */
static int
ctl_user_read_line(char *buf, size_t size, const char **error_r)
{
	size_t len = 0;
	ssize_t n;
	char c;

	for (;;) {
		n = read(STDIN_FILENO, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = strerror(errno);
			return -1;
		}
		if (n == 0 || c == '\n')
			break;
		if (c == '\0' || len + 1 >= size) {
			*error_r = c == '\0' ? "password holds a NUL byte" :
			    "password longer than 511 bytes";
			return -1;
		}
		buf[len++] = c;
	}
	if (n == 0 && len == 0) {
		*error_r = "no password on standard input";
		return -1;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return 0;
}

static int
ctl_user_prompt(const char *prompt, char *buf, size_t size,
    const char **error_r)
{
	struct termios noecho;
	int ret;

	if (tcgetattr(STDIN_FILENO, &ctl_user_saved_tty) < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	noecho = ctl_user_saved_tty;
	noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	fputs(prompt, stderr);
	fflush(stderr);
	ctl_user_catch_signals(ctl_user_signal);
	ctl_user_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) < 0) {
		ctl_user_echo_off = 0;
		*error_r = strerror(errno);
		return -1;
	}
	ret = ctl_user_read_line(buf, size, error_r);
	ctl_user_restore_tty();
	ctl_user_catch_signals(SIG_DFL);
	fputc('\n', stderr);
	return ret;
}

static int
ctl_user_ask(char *buf, size_t size, const char **error_r)
{
	char again[CTL_USER_PWBUF];
	int ret;

	if (!isatty(STDIN_FILENO))
		return ctl_user_read_line(buf, size, error_r);
	if (ctl_user_prompt("Password: ", buf, size, error_r) < 0)
		return -1;
	ret = ctl_user_prompt("Again: ", again, sizeof(again), error_r);
	if (ret == 0 && strcmp(buf, again) != 0) {
		*error_r = "passwords do not match";
		ret = -1;
	}
	explicit_bzero(again, sizeof(again));
	return ret;
}

/* What a password turns into: the crypt(3) hash, and the SCRAM secrets
 * that let SCRAM-SHA-256 and SCRAM-SHA-1 log in without the password. */
struct ctl_user_secrets {
	char *hash;
	char *scram[2];		/* NULL with --no-password */
};

static const struct {
	const char *mech;	/* as pwhash_scram_make names it */
	const char *field;	/* the user database field */
} ctl_user_scram[2] = {
	{ "SCRAM-SHA-256", "scram-sha-256" },
	{ "SCRAM-SHA-1", "scram-sha-1" },
};

static void
ctl_user_secrets_free(struct ctl_user_secrets *sec)
{
	free(sec->hash);
	for (size_t i = 0; i < 2; i++)
		free(sec->scram[i]);
	memset(sec, 0, sizeof(*sec));
}

/* The secrets to store: an empty hash with --no-password, else those of a
 * password read as above. */
static int
ctl_user_new_secrets(const struct ctl_user_args *a,
    struct ctl_user_secrets *sec, const char **error_r)
{
	char pw[CTL_USER_PWBUF];
	int ret;

	memset(sec, 0, sizeof(*sec));
	if (a->no_password) {
		sec->hash = xstrdup("");
		return 0;
	}
	ret = ctl_user_ask(pw, sizeof(pw), error_r);
	if (ret == 0 && pw[0] == '\0') {
		*error_r = "empty password (use --no-password for an account "
		    "without one)";
		ret = -1;
	}
	if (ret == 0)
		ret = pwhash_make(pw, &sec->hash, error_r);
	for (size_t i = 0; i < 2 && ret == 0; i++)
		ret = pwhash_scram_make(ctl_user_scram[i].mech, pw,
		    &sec->scram[i], error_r);
	explicit_bzero(pw, sizeof(pw));
	if (ret < 0)
		ctl_user_secrets_free(sec);
	return ret;
}

/* Store the SCRAM secrets of sec for the user of a (after the hash). */
static int
ctl_user_set_scram(struct userdb *db, const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec, const char **error_r)
{
	for (size_t i = 0; i < 2; i++) {
		if (sec->scram[i] != NULL &&
		    userdb_set_field(db, a->pos[0], ctl_user_scram[i].field,
		    sec->scram[i], error_r) < 0)
			return -1;
	}
	return 0;
}

/* ---- the database ---- */

static int
ctl_user_open(const struct ctl_user_args *a, bool for_update,
    struct userdb **db_r)
{
	const char *error;

	if (userdb_open(conf_str("user_database"), for_update, db_r,
	    &error) < 0)
		return ctl_user_fail(a, error);
	return 0;
}

/* Apply an edit under the lock and save; the edit gets the database and
 * the arguments and returns 0 or -1 with *error_r. */
static int
ctl_user_edit(const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec,
    int (*edit)(struct userdb *, const struct ctl_user_args *,
    const struct ctl_user_secrets *, const char **))
{
	struct userdb *db;
	const char *error;
	int ret;

	if (ctl_user_open(a, true, &db) != 0)
		return 1;
	ret = edit(db, a, sec, &error) < 0 || userdb_save(db, &error) < 0;
	if (ret != 0)
		ctl_user_fail(a, error);
	userdb_close(&db);
	return ret;
}

/* Before asking for a password: is the name acceptable, and does it
 * exist (want_exists) or not? */
static int
ctl_user_precheck(const struct ctl_user_args *a, bool want_exists)
{
	struct userdb *db;
	const char *error;
	bool taken;
	char msg[320];

	if (user_name_valid(a->pos[0], &error) < 0)
		return ctl_user_fail(a, error);
	if (ctl_user_open(a, false, &db) != 0)
		return 1;
	taken = userdb_name_taken(db, a->pos[0]);
	userdb_close(&db);
	if (taken == want_exists)
		return 0;
	snprintf(msg, sizeof(msg), want_exists ? "no such user: %s" :
	    "user %s already exists", a->pos[0]);
	return ctl_user_fail(a, msg);
}

/* ---- the commands ---- */

static int
ctl_user_edit_add(struct userdb *db, const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec, const char **error_r)
{
	if (userdb_add(db, a->pos[0], sec->hash, a->home, a->quota,
	    a->has_quota, error_r) < 0)
		return -1;
	return ctl_user_set_scram(db, a, sec, error_r);
}

static int
ctl_user_edit_passwd(struct userdb *db, const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec, const char **error_r)
{
	if (userdb_set_password(db, a->pos[0], sec->hash, error_r) < 0)
		return -1;
	return ctl_user_set_scram(db, a, sec, error_r);
}

static int
ctl_user_edit_quota(struct userdb *db, const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec, const char **error_r)
{
	(void)sec;
	return userdb_set_quota(db, a->pos[0], a->quota, a->has_quota,
	    error_r);
}

static int
ctl_user_edit_del(struct userdb *db, const struct ctl_user_args *a,
    const struct ctl_user_secrets *sec, const char **error_r)
{
	(void)sec;
	return userdb_delete(db, a->pos[0], error_r);
}

/* add and passwd: check, read the password (not holding the lock while a
 * person types), then edit. */
static int
ctl_user_with_password(const struct ctl_user_args *a, bool want_exists,
    int (*edit)(struct userdb *, const struct ctl_user_args *,
    const struct ctl_user_secrets *, const char **))
{
	struct ctl_user_secrets sec;
	const char *error;
	int ret;

	if (ctl_user_precheck(a, want_exists) != 0)
		return 1;
	if (ctl_user_new_secrets(a, &sec, &error) < 0)
		return ctl_user_fail(a, error);
	ret = ctl_user_edit(a, &sec, edit);
	ctl_user_secrets_free(&sec);
	return ret;
}

static int
ctl_user_add(const struct ctl_user_args *a)
{
	return ctl_user_with_password(a, false, ctl_user_edit_add);
}

static int
ctl_user_passwd(const struct ctl_user_args *a)
{
	return ctl_user_with_password(a, true, ctl_user_edit_passwd);
}

static int
ctl_user_quota(const struct ctl_user_args *a)
{
	struct ctl_user_args q = *a;

	if (strcmp(a->pos[1], "none") == 0)
		q.has_quota = false;
	else if (ctl_user_parse_bytes(a->pos[1], &q.quota) < 0)
		return ctl_user_fail(a, "quota is not a number of bytes >= 1 "
		    "or \"none\"");
	else
		q.has_quota = true;
	return ctl_user_edit(&q, NULL, ctl_user_edit_quota);
}

static int
ctl_user_del(const struct ctl_user_args *a)
{
	return ctl_user_edit(a, NULL, ctl_user_edit_del);
}

static int
ctl_user_flush(const struct ctl_user_args *a)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return ctl_user_fail(a, "cannot write the output");
	return 0;
}

static int
ctl_user_list(const struct ctl_user_args *a)
{
	struct userdb *db;
	const struct user *u;
	size_t pos = 0;

	if (ctl_user_open(a, false, &db) != 0)
		return 1;
	while ((u = userdb_next(db, &pos)) != NULL) {
		if (u->has_quota)
			printf("%s quota=%" PRIu64 "\n", u->name, u->quota);
		else
			printf("%s\n", u->name);
	}
	userdb_close(&db);
	return ctl_user_flush(a);
}

static void
ctl_user_print_id(const char *label, unsigned long id, bool resolved)
{
	if (resolved)
		printf("%s: %lu\n", label, id);
	else
		printf("%s: (unresolved)\n", label);
}

/* The extra fields, with the SCRAM secrets named but never shown: like
 * the hash, they are enough for an offline guess at the password. */
static void
ctl_user_print_fields(const char *fields)
{
	const char *p = fields;

	printf("fields:");
	while (*p != '\0') {
		size_t len = strcspn(p, " ");

		if (len > 0) {
			if (strncmp(p, "scram-", 6) == 0)
				printf(" %.*s=(secret)", (int)strcspn(p, "="), p);
			else
				printf(" %.*s", (int)len, p);
		}
		p += len;
		if (*p == ' ')
			p++;
	}
	printf("\n");
}

/* Everything but the hash, ids and mail_location as lookups see them. */
static int
ctl_user_print(const struct ctl_user_args *a, struct user *u)
{
	struct user_settings set;
	const char *error = NULL;
	int resolved;

	user_settings_from_conf(&set);
	resolved = user_resolve_virtual(&set, u, &error);
	printf("name: %s\n", u->name);
	printf("password: %s\n", u->pwhash[0] != '\0' ? "set" : "none");
	ctl_user_print_id("uid", (unsigned long)u->uid,
	    u->uid != USER_UID_UNSET && resolved == 1);
	ctl_user_print_id("gid", (unsigned long)u->gid,
	    u->gid != USER_GID_UNSET && resolved == 1);
	printf("home: %s\n", u->home[0] != '\0' ? u->home : "(none)");
	if (u->has_quota)
		printf("quota: %" PRIu64 "\n", u->quota);
	else
		printf("quota: none\n");
	printf("mail_location: %s\n", u->mail_location != NULL ?
	    u->mail_location : "(unresolved)");
	ctl_user_print_fields(u->fields);
	if (ctl_user_flush(a) != 0)
		return 1;
	return resolved == 1 ? 0 : ctl_user_fail(a, error);
}


static int
ctl_user_show(const struct ctl_user_args *a)
{
	struct userdb *db;
	struct user *u = NULL;
	const char *error;
	char msg[320];
	int ret;

	if (user_name_valid(a->pos[0], &error) < 0)
		return ctl_user_fail(a, error);
	if (ctl_user_open(a, false, &db) != 0)
		return 1;
	ret = userdb_find(db, a->pos[0], &u);
	userdb_close(&db);
	if (ret == 0) {
		snprintf(msg, sizeof(msg), "no such user: %s", a->pos[0]);
		return ctl_user_fail(a, msg);
	}
	ret = ctl_user_print(a, u);
	user_free(&u);
	return ret;
}

static const struct ctl_user_cmd ctl_user_cmds[] = {
	{ "add", ctl_user_add, 1,
	    CTL_USER_OPT_QUOTA | CTL_USER_OPT_HOME | CTL_USER_OPT_NOPASS },
	{ "passwd", ctl_user_passwd, 1, CTL_USER_OPT_NOPASS },
	{ "quota", ctl_user_quota, 2, 0 },
	{ "del", ctl_user_del, 1, 0 },
	{ "list", ctl_user_list, 0, 0 },
	{ "show", ctl_user_show, 1, 0 },
};

int
ctl_user_main(int argc, char **argv)
{
	struct ctl_user_args a;
	unsigned int seen = 0;
	size_t i;

	if (argc < 2)
		return ctl_user_usage();
	memset(&a, 0, sizeof(a));
	a.cmd = argv[1];
	for (i = 0; i < sizeof(ctl_user_cmds) / sizeof(ctl_user_cmds[0]);
	    i++) {
		const struct ctl_user_cmd *c = &ctl_user_cmds[i];

		if (strcmp(a.cmd, c->name) != 0)
			continue;
		if (ctl_user_parse(argc, argv, &a, &seen) < 0 ||
		    a.npos != c->npos || (seen & ~c->opts) != 0)
			return ctl_user_usage();
		return c->run(&a);
	}
	return ctl_user_usage();
}
