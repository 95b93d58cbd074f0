/* Unit tests for lib/user.c and lib/userdb.c: the name rules (limit at
 * 255 and 256 bytes), line parsing (every limit at N and N+1, every prefix
 * of a full line), the file (bytes on disk after edits, modes, comments
 * and malformed lines kept, the warning with file:line, the size limit),
 * the lock between processes, concurrent writers, and user_lookup_with on
 * virtual and system users. */
#include "config.h"
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <unistd.h>
#include "compat/compat.h"
#include "user.h"
#include "userdb.h"
#include "tap.h"

#define HASH_A "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$zwtVrjrUCmXcyLTs6oxLTQlzif" \
	"SUkF8RHJ./tK5KU79"

static char dir[64];
static char path[128];

/* ---- helpers ---- */

static void
write_file(const char *p, const char *text, mode_t mode)
{
	int fd;

	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		bail("write %s: %s", p, strerror(errno));
	fchmod(fd, mode);
	close(fd);
}

/* The file's contents (caller frees), or NULL if it cannot be read. */
static char *
read_file(const char *p)
{
	char *data;
	struct stat st;
	int fd = open(p, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	data = calloc(1, (size_t)st.st_size + 1);
	if (data == NULL || read(fd, data, (size_t)st.st_size) !=
	    (ssize_t)st.st_size)
		bail("read %s", p);
	close(fd);
	return data;
}

static void
is_file(const char *p, const char *want, const char *name)
{
	char *got = read_file(p);

	is_string(got, want, "%s", name);
	free(got);
}

static int
file_mode(const char *p)
{
	struct stat st;

	return stat(p, &st) < 0 ? -1 : (int)(st.st_mode & 07777);
}

/* Send stderr to a file until stderr_end(), which returns what was
 * written (the caller frees it). */
static int stderr_saved = -1;

static void
stderr_begin(void)
{
	char cap[160];
	int fd;

	snprintf(cap, sizeof(cap), "%s/stderr", dir);
	fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	stderr_saved = dup(2);
	if (stderr_saved < 0 || fd < 0)
		bail("capture stderr");
	dup2(fd, 2);
	close(fd);
}

static char *
stderr_end(void)
{
	char cap[160];
	char *text;

	snprintf(cap, sizeof(cap), "%s/stderr", dir);
	dup2(stderr_saved, 2);
	close(stderr_saved);
	text = read_file(cap);
	unlink(cap);
	return text;
}

/* ---- name rules ---- */

static void
name_ok(const char *name, const char *why)
{
	const char *error = NULL;

	if (!ok(user_name_valid(name, &error) == 0, "valid: %s", why))
		diag("error: %s", error);
}

static void
name_bad(const char *name, const char *why, const char *want_error)
{
	const char *error = NULL;

	ok(user_name_valid(name, &error) == -1 && error != NULL,
	    "refused: %s", why);
	if (want_error != NULL)
		is_string(error, want_error, "  error for %s", why);
}

static void
test_names(void)
{
	char name[USER_NAME_MAX + 2];
	const char *error;

	name_ok("a", "one letter");
	name_ok("alice.b-c_d+e", "punctuation");
	name_ok("bob@example.org", "user@domain");
	name_ok("a@b@c", "two @");
	name_ok("a.", "trailing dot");
	name_ok("j\xc3\xa9r\xc3\xb4me", "UTF-8 (2-byte)");
	name_ok("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b.cn", "UTF-8 (3-byte)");
	name_ok("\xf0\x9f\x93\xa7", "UTF-8 (4-byte)");
	name_bad("", "empty", "empty user name");
	name_bad("/", "slash alone", NULL);
	name_bad("a/b", "a/b", "user name holds '/'");
	name_bad("../x", "../x", NULL);
	name_bad(".", ".", NULL);
	name_bad("..", "..", NULL);
	name_bad("a..b", "a..b", "user name holds \"..\"");
	name_bad("a..", "a..", NULL);
	name_bad(".x", ".x", "user name starts with '-', '.' or '#'");
	name_bad("-x", "-x", NULL);
	name_bad("#x", "#x (a comment line)", NULL);
	name_bad("a:b", "a:b", "user name holds ':'");
	name_bad("a b", "space", "user name holds white space");
	name_bad("a\tb", "tab", "user name holds a control character");
	name_bad("a\nb", "newline", NULL);
	name_bad("a\rb", "CR", NULL);
	name_bad("a\x01", "0x01", NULL);
	name_bad("a\x1f", "0x1f", NULL);
	name_bad("a\x7f", "DEL", NULL);
	name_bad("@example.org", "leading @",
	    "user name has an empty local part or domain");
	name_bad("bob@", "trailing @", NULL);
	name_bad("a\xc2\x85", "NEL (C1)", NULL);
	name_bad("a\xc2\x9f", "C1 control", NULL);
	name_bad("a\xc2\xa0" "b", "no-break space",
	    "user name holds an invisible or white space character");
	name_bad("a\xe2\x80\x8b" "b", "zero-width space", NULL);
	name_bad("a\xe2\x80\xae" "b", "right-to-left override", NULL);
	name_bad("a\xe2\x80\xa8" "b", "line separator", NULL);
	name_bad("a\xe3\x80\x80" "b", "ideographic space", NULL);
	name_bad("\xef\xbb\xbf" "a", "BOM", NULL);
	name_bad("a\xc3", "truncated sequence", "user name is not valid UTF-8");
	name_bad("a\xc0\xaf", "overlong '/'", NULL);
	name_bad("a\xe0\x80\xaf", "3-byte overlong '/'", NULL);
	name_bad("a\xed\xa0\x80", "surrogate", NULL);
	name_bad("a\xf4\x90\x80\x80", "past U+10FFFF", NULL);
	name_bad("a\xf5\x80\x80\x80", "0xf5", NULL);
	name_bad("a\x80", "lone continuation", NULL);
	name_bad("a\xff", "0xff", NULL);

	memset(name, 'n', sizeof(name));
	name[USER_NAME_MAX] = '\0';
	name_ok(name, "255 bytes");
	name[USER_NAME_MAX] = 'n';
	name[USER_NAME_MAX + 1] = '\0';
	name_bad(name, "256 bytes", "user name longer than 255 bytes");
	is_int(user_name_valid_len("alice", 5, &error), 0, "by length");
	is_int(user_name_valid_len("alice/x", 5, &error), 0,
	    "length bounds the name");
	is_int(user_name_valid_len("ali\0ce", 6, &error), -1,
	    "embedded NUL refused");
	is_string(error, "user name holds a NUL byte", "  error");
	is_int(user_name_valid_len("alice", 0, &error), -1, "length 0");
}

/* ---- parsing lines ---- */

static int
parse(const char *line, struct user **user_r, const char **error_r)
{
	return userdb_parse_line(line, strlen(line), user_r, error_r);
}

static void
line_bad(const char *line, const char *why, const char *want_error)
{
	struct user *u = (struct user *)1;
	const char *error = NULL;

	ok(parse(line, &u, &error) == -1 && u == NULL && error != NULL,
	    "malformed: %s", why);
	if (want_error != NULL)
		is_string(error, want_error, "  error for %s", why);
}

static void
line_good(const char *line, const char *why)
{
	struct user *u = NULL;
	const char *error = NULL;

	if (!ok(parse(line, &u, &error) == 1, "parses: %s", why))
		diag("error: %s", error);
	user_free(&u);
}

static void
test_parse_full(void)
{
	struct user *u = NULL;
	const char *error = NULL;

	is_int(parse("alice:" HASH_A ":1001:1002:/home/alice:quota=1048576 "
	    "mail=mbox:/srv/%u:INBOX=/var/mail/%u x-scram=abc=def", &u,
	    &error), 1, "full line");
	if (u == NULL)
		bail("no user: %s", error);
	is_string(u->name, "alice", "  name");
	is_string(u->pwhash, HASH_A, "  hash");
	is_int(u->uid, 1001, "  uid");
	is_int(u->gid, 1002, "  gid");
	is_string(u->home, "/home/alice", "  home");
	ok(u->has_quota && u->quota == 1048576, "  quota");
	is_string(u->mail_location, "mbox:/srv/%u:INBOX=/var/mail/%u",
	    "  mail= holds ':' and '='");
	is_string(u->fields, "quota=1048576 mail=mbox:/srv/%u:INBOX="
	    "/var/mail/%u x-scram=abc=def", "  raw fields kept");
	ok(!u->system, "  not a system user");
	user_free(&u);
	ok(u == NULL, "user_free clears the pointer");
	user_free(&u);

	is_int(parse("bob:", &u, &error), 1, "name and empty hash only");
	ok(u != NULL && u->uid == USER_UID_UNSET && u->gid == USER_GID_UNSET &&
	    strcmp(u->pwhash, "") == 0 && strcmp(u->home, "") == 0 &&
	    !u->has_quota && u->mail_location == NULL &&
	    strcmp(u->fields, "") == 0, "  everything defaulted");
	user_free(&u);
	is_int(parse("", &u, &error), 0, "blank line");
	is_int(parse("   ", &u, &error), 0, "spaces only");
	is_int(parse("# alice:x", &u, &error), 0, "comment");
	is_int(parse("#", &u, &error), 0, "bare #");
	ok(u == NULL, "no user for comments");
}

static void
test_parse_bad(void)
{
	line_bad("alice", "no ':'", "no ':' after the name");
	line_bad(":x", "empty name", "empty user name");
	line_bad("../x:", "hostile name", NULL);
	line_bad(" alice:x", "leading space", NULL);
	line_bad("alice:a b", "space in hash", NULL);
	line_bad("alice:x\xc3\xa9", "non-ASCII hash", NULL);
	line_bad("alice:x:abc", "uid not a number", "uid is not a number");
	line_bad("alice:x:-1", "negative uid", NULL);
	line_bad("alice:x:+1", "uid with sign", NULL);
	line_bad("alice:x:1:x", "gid not a number", "gid is not a number");
	line_bad("alice:x:::home", "relative home", NULL);
	line_bad("alice:x:::/home/../root", "home with ..",
	    "home has a '.' or '..' component");
	line_bad("alice:x:::/home/.", "home ending /.", NULL);
	line_bad("alice:x\t:", "tab", "control character");
	line_bad("alice:x:::/h:quota=1\r", "CR", NULL);
	line_bad("alice:x:::/h:quota=0", "quota=0",
	    "quota= is not a number of bytes >= 1");
	line_bad("alice:x:::/h:quota=", "empty quota", NULL);
	line_bad("alice:x:::/h:quota=1k", "quota with suffix", NULL);
	line_bad("alice:x:::/h:quota=1 quota=2", "quota twice",
	    "quota= given twice");
	line_bad("alice:x:::/h:mail=", "empty mail", NULL);
	line_bad("alice:x:::/h:mail=mh:~/x", "bad mail=",
	    "mail=: unknown mail format \"mh\"");
	line_bad("alice:x::::mail=maildir:~/M", "mail= needs a home",
	    "mail=: the user has no home directory");
	line_bad("alice:x:::/h:foo", "field without =",
	    "a field is not key=value");
	line_bad("alice:x:::/h:=v", "field without key", NULL);
	line_bad("alice:x:::/h:k\xc3\xa9y=v", "non-ASCII key", NULL);
	line_good("alice:x:::/h:quota=1 k=", "unknown key, empty value");
	line_good("alice:x:::/h:  quota=1   k=v  ", "extra spaces");
	line_good("alice:x:::/:", "home /");
}

/* Numbers at N and N+1: uid/gid up to 2^32-2 ((uid_t)-1 means unset),
 * quota up to 2^64-1. */
static void
test_parse_limits(void)
{
	char line[USERDB_LINE_MAX + 2];
	struct user *u = NULL;
	const char *error = NULL;
	size_t len;

	is_int(parse("a:x:4294967294:4294967294", &u, &error), 1,
	    "uid and gid 4294967294");
	ok(u != NULL && u->uid == 4294967294U && u->gid == 4294967294U,
	    "  values");
	user_free(&u);
	line_bad("a:x:4294967295", "uid 4294967295", NULL);
	line_bad("a:x::4294967295", "gid 4294967295", NULL);
	line_bad("a:x:99999999999999999999", "uid overflow", NULL);
	is_int(parse("a:x:::/h:quota=18446744073709551615", &u, &error), 1,
	    "quota 2^64-1");
	ok(u != NULL && u->quota == UINT64_MAX, "  value");
	user_free(&u);
	line_bad("a:x:::/h:quota=18446744073709551616", "quota 2^64", NULL);

	/* 8192 bytes is a line, 8193 is malformed */
	strlcpy(line, "a:x:::/h:k=", sizeof(line));
	len = strlen(line);
	memset(line + len, 'v', sizeof(line) - len);
	is_int(userdb_parse_line(line, USERDB_LINE_MAX, &u, &error), 1,
	    "line of 8192 bytes");
	user_free(&u);
	is_int(userdb_parse_line(line, USERDB_LINE_MAX + 1, &u, &error), -1,
	    "line of 8193 bytes");
	is_string(error, "line longer than 8192 bytes", "  error");
	is_int(userdb_parse_line("a:x:::/h:", 9, &u, &error), 1,
	    "length bounds the line (no NUL needed)");
	ok(u != NULL && strcmp(u->home, "/h") == 0, "  home cut at length");
	user_free(&u);
	is_int(userdb_parse_line("a:x\0y", 5, &u, &error), -1, "NUL byte");
}

/* Every prefix of a full line, parsed from an exact-size copy so ASan
 * sees any read past the end: a clean 1, 0 or -1, never more. */
static void
test_parse_prefixes(void)
{
	const char *full = "bob@example.org:" HASH_A ":1001:1002:/home/bob:"
	    "quota=5 mail=maildir:/m/%d/%n:INDEX=/i/%u x=y";
	size_t i, n = strlen(full);
	int bad = 0, ret = 0;

	for (i = 0; i <= n; i++) {
		char *copy = malloc(i == 0 ? 1 : i);
		struct user *u = NULL;
		const char *error = NULL;

		memcpy(copy, full, i);
		ret = userdb_parse_line(copy, i, &u, &error);
		if ((ret == 1) != (u != NULL) || (ret < 0 && error == NULL))
			bad++;
		user_free(&u);
		free(copy);
	}
	ok(bad == 0 && ret == 1, "every prefix of a full line answers "
	    "cleanly (%zu prefixes)", n + 1);
}

/* ---- the file ---- */

static struct userdb *
open_db(bool for_update)
{
	struct userdb *db = NULL;
	const char *error = NULL;

	if (userdb_open(path, for_update, &db, &error) < 0)
		bail("userdb_open %s: %s", path, error);
	return db;
}

static void
test_file_create(void)
{
	struct userdb *db;
	struct user *u = NULL;
	const struct user *e;
	const char *error = NULL;
	char lock[160], tmp[160];
	size_t pos = 0;

	unlink(path);
	db = open_db(true);
	ok(userdb_next(db, &pos) == NULL, "missing file is an empty db");
	is_int(userdb_add(db, "alice", HASH_A, "/home/alice", 0, false,
	    &error), 0, "add alice");
	is_int(userdb_add(db, "bob@example.org", NULL, NULL, 5000, true,
	    &error), 0, "add bob with quota, no password, no home");
	is_int(userdb_add(db, "alice", "x", NULL, 0, false, &error), -1,
	    "add alice again");
	is_string(error, "user alice already exists", "  error");
	is_int(userdb_find(db, "alice", &u), 1, "find before save");
	user_free(&u);
	ok(access(path, F_OK) < 0, "nothing written before save");
	is_int(userdb_save(db, &error), 0, "save");
	is_file(path, "alice:" HASH_A ":::/home/alice:\n"
	    "bob@example.org:::::quota=5000\n", "file bytes");
	is_int(file_mode(path), 0600, "new file is 0600");
	snprintf(lock, sizeof(lock), "%s.lock", path);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	is_int(file_mode(lock), 0600, "lock file is 0600");
	ok(access(tmp, F_OK) < 0, "no temporary file left");
	userdb_close(&db);
	ok(db == NULL, "close clears the pointer");

	db = open_db(false);
	is_int(userdb_find(db, "bob@example.org", &u), 1, "find bob");
	ok(u != NULL && u->has_quota && u->quota == 5000 &&
	    strcmp(u->pwhash, "") == 0 && u->uid == USER_UID_UNSET,
	    "  bob's fields");
	user_free(&u);
	is_int(userdb_find(db, "carol", &u), 0, "unknown user");
	is_int(userdb_find(db, "../alice", &u), 0, "invalid name");
	ok(u == NULL, "  no user");
	pos = 0;
	e = userdb_next(db, &pos);
	ok(e != NULL && strcmp(e->name, "alice") == 0, "next: alice");
	e = userdb_next(db, &pos);
	ok(e != NULL && strcmp(e->name, "bob@example.org") == 0, "next: bob");
	ok(userdb_next(db, &pos) == NULL, "next: end");
	is_int(userdb_add(db, "carol", NULL, NULL, 0, false, &error), -1,
	    "read-only db refuses add");
	is_string(error, "user database not opened for update", "  error");
	is_int(userdb_save(db, &error), -1, "read-only db refuses save");
	userdb_close(&db);
}

static void
test_file_edits(void)
{
	struct userdb *db = open_db(true);
	struct user *u = NULL;
	const char *error = NULL;

	is_int(userdb_set_password(db, "alice", "$6$s$h", &error), 0,
	    "set password");
	is_int(userdb_set_quota(db, "alice", 77, true, &error), 0,
	    "set quota");
	is_int(userdb_set_quota(db, "bob@example.org", 0, false, &error), 0,
	    "remove quota");
	is_int(userdb_set_quota(db, "alice", 0, true, &error), -1,
	    "quota 0 refused");
	is_int(userdb_set_password(db, "nobody", "x", &error), -1,
	    "password of unknown user");
	is_string(error, "no such user: nobody", "  error");
	is_int(userdb_set_password(db, "alice", "x:0:0", &error), -1,
	    "hash holding ':' refused");
	is_int(userdb_set_password(db, "alice", "x\ny", &error), -1,
	    "hash holding a newline refused");
	is_int(userdb_add(db, "carol", "x", "home", 0, false, &error), -1,
	    "relative home refused");
	is_int(userdb_add(db, "carol", "x", "/h:1", 0, false, &error), -1,
	    "home with ':' refused");
	is_int(userdb_add(db, "carol", "x", "/h\n", 0, false, &error), -1,
	    "home with newline refused");
	is_int(userdb_add(db, "a:b", "x", NULL, 0, false, &error), -1,
	    "hostile name refused by add");
	is_int(userdb_add(db, "carol", NULL, NULL, 0, true, &error), -1,
	    "add with quota 0 refused");
	is_int(userdb_find(db, "carol", &u), 0, "failed adds added nothing");
	is_int(userdb_delete(db, "nobody", &error), -1, "delete unknown");
	is_int(userdb_delete(db, "../x", &error), -1, "delete invalid name");
	is_int(userdb_save(db, &error), 0, "save edits");
	is_file(path, "alice:$6$s$h:::/home/alice:quota=77\n"
	    "bob@example.org:::::\n", "edited bytes");
	is_int(userdb_delete(db, "alice", &error), 0, "delete alice");
	is_int(userdb_find(db, "alice", &u), 0, "  gone in memory");
	is_int(userdb_add(db, "alice", NULL, NULL, 0, false, &error), 0,
	    "  and can be added again");
	is_int(userdb_delete(db, "alice", &error), 0, "  and deleted again");
	is_int(userdb_save(db, &error), 0, "save delete");
	is_file(path, "bob@example.org:::::\n", "delete bytes");
	userdb_close(&db);
}

/* A file edited by hand: comments, blank lines, malformed and duplicate
 * lines, no final newline. Only the edited line may change. */
static void
test_file_hand(void)
{
	const char *text =
	    "# users\n"
	    "\n"
	    "alice:" HASH_A ":1001::/home/alice:x-future=1  quota=9\n"
	    "garbage line\n"
	    "bob:x:notanumber\n"
	    "alice:other\n"
	    "carol:c:::/c:";
	struct userdb *db;
	struct user *u = NULL;
	const char *error = NULL;
	char *log, want[256];

	write_file(path, text, 0600);
	stderr_begin();
	db = open_db(false);
	userdb_close(&db);
	log = stderr_end();
	snprintf(want, sizeof(want), "%s:4: no ':' after the name", path);
	ok(log != NULL && strstr(log, want) != NULL,
	    "malformed line logged with file:line");
	snprintf(want, sizeof(want), "%s:5: uid is not a number", path);
	ok(log != NULL && strstr(log, want) != NULL, "  and the next one");
	snprintf(want, sizeof(want), "%s:6: duplicate of line 3", path);
	ok(log != NULL && strstr(log, want) != NULL, "  and the duplicate");
	ok(log != NULL && strstr(log, "line skipped") != NULL &&
	    strstr(log, HASH_A) == NULL, "  no hash in the log");
	free(log);

	stderr_begin();
	db = open_db(true);
	free(stderr_end());
	is_int(userdb_find(db, "alice", &u), 1, "first alice wins");
	ok(u != NULL && strcmp(u->pwhash, HASH_A) == 0 && u->uid == 1001 &&
	    u->has_quota && u->quota == 9, "  with the first line's fields");
	user_free(&u);
	is_int(userdb_find(db, "bob", &u), 0, "malformed bob is unknown");
	ok(userdb_name_taken(db, "bob"), "  but his name is taken");
	ok(!userdb_name_taken(db, "dave"), "dave's is not");
	is_int(userdb_add(db, "bob", "x", NULL, 0, false, &error), -1,
	    "  so bob cannot be added twice");
	is_int(userdb_set_password(db, "bob", "x", &error), -1,
	    "  nor edited");
	is_int(userdb_find(db, "carol", &u), 1, "last line without newline");
	user_free(&u);
	is_int(userdb_set_quota(db, "alice", 10, true, &error), 0,
	    "edit alice");
	is_int(userdb_save(db, &error), 0, "save");
	is_file(path,
	    "# users\n"
	    "\n"
	    "alice:" HASH_A ":1001::/home/alice:x-future=1 quota=10\n"
	    "garbage line\n"
	    "bob:x:notanumber\n"
	    "alice:other\n"
	    "carol:c:::/c:\n", "only alice's line changed; unknown key kept");
	is_int(userdb_delete(db, "bob", &error), 0, "delete malformed bob");
	is_int(userdb_delete(db, "alice", &error), 0,
	    "delete alice (both lines)");
	is_int(userdb_save(db, &error), 0, "save");
	is_file(path, "# users\n\ngarbage line\ncarol:c:::/c:\n",
	    "deleted lines gone, the rest kept");
	userdb_close(&db);
}

static void
test_file_modes(void)
{
	struct userdb *db;
	struct user *u = NULL;
	const char *error = NULL;
	struct stat before, after;
	char target[160], tmp[160];

	write_file(path, "a:\n", 0640);
	db = open_db(true);
	is_int(userdb_add(db, "b", NULL, NULL, 0, false, &error), 0, "add");
	is_int(userdb_save(db, &error), 0, "save over a 0640 file");
	is_int(file_mode(path), 0640, "group read kept");
	userdb_close(&db);

	write_file(path, "a:\n", 0644);
	db = open_db(true);
	is_int(userdb_add(db, "b", NULL, NULL, 0, false, &error), 0, "add");
	is_int(userdb_save(db, &error), 0, "save over a 0644 file");
	is_int(file_mode(path), 0640, "world read dropped, group read kept");
	userdb_close(&db);

	write_file(path, "a:\n", 0606);
	db = open_db(true);
	is_int(userdb_add(db, "b", NULL, NULL, 0, false, &error), 0, "add");
	/* a stale temporary file of a dead process with our pid */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	write_file(tmp, "stale", 0644);
	is_int(userdb_save(db, &error), 0, "save over 0606, stale tmp");
	is_int(file_mode(path), 0600, "0606 becomes 0600");
	is_file(path, "a:\nb:::::\n", "stale tmp not used");
	userdb_close(&db);

	/* As root, the owner and group of the old file are kept, so that a
	 * 0640 file of group loft stays readable by loft. */
	if (geteuid() == 0) {
		write_file(path, "a:\n", 0640);
		if (chown(path, 1, 1) < 0)
			bail("chown: %s", strerror(errno));
		db = open_db(true);
		is_int(userdb_add(db, "c", NULL, NULL, 0, false, &error), 0,
		    "add");
		is_int(userdb_save(db, &error), 0, "save over a 1:1 0640 file");
		stat(path, &after);
		ok(after.st_uid == 1 && after.st_gid == 1 &&
		    (after.st_mode & 07777) == 0640,
		    "  owner, group, mode kept");
		userdb_close(&db);
	} else {
		ok(1, "# SKIP not root: owner kept");
		ok(1, "# SKIP not root");
		ok(1, "# SKIP not root");
	}

	stat(path, &before);
	db = open_db(true);
	is_int(userdb_save(db, &error), 0, "save without edits");
	stat(path, &after);
	ok(before.st_ino == after.st_ino, "  does not rewrite");
	userdb_close(&db);

	snprintf(target, sizeof(target), "%s/real", dir);
	write_file(target, "a:\n", 0600);
	unlink(path);
	if (symlink(target, path) < 0)
		bail("symlink: %s", strerror(errno));
	db = open_db(true);
	is_int(userdb_find(db, "a", &u), 1, "a symlinked file is read");
	user_free(&u);
	is_int(userdb_add(db, "b", NULL, NULL, 0, false, &error), 0, "add");
	is_int(userdb_save(db, &error), -1, "but not replaced");
	is_file(target, "a:\n", "  target unchanged");
	userdb_close(&db);
	unlink(path);
	unlink(target);
}

/* 64 MiB passes (as one huge malformed line), 64 MiB + 1 is an error.
 * Sparse files, so the test writes nothing. */
static void
test_file_size(void)
{
	struct userdb *db = NULL;
	const char *error = NULL;
	char *log;
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, USERDB_SIZE_MAX + 1) < 0)
		bail("ftruncate");
	is_int(userdb_open(path, false, &db, &error), -1,
	    "file of 64 MiB + 1 refused");
	ok(db == NULL && error != NULL && strstr(error, "67108864") != NULL,
	    "  error names the limit");
	if (ftruncate(fd, USERDB_SIZE_MAX) < 0)
		bail("ftruncate");
	close(fd);
	stderr_begin();
	is_int(userdb_open(path, false, &db, &error), 0,
	    "file of 64 MiB read");
	log = stderr_end();
	ok(log != NULL && strstr(log, "users:1: line longer than 8192 bytes; "
	    "line skipped") != NULL, "  as one over-long line, reported");
	free(log);
	userdb_close(&db);
	unlink(path);
}

/* ---- locking and concurrent writers ---- */

static void
test_lock(void)
{
	struct userdb *db;
	char lock[160], c;
	int up[2], down[2], fd, status;
	pid_t pid;

	snprintf(lock, sizeof(lock), "%s.lock", path);
	if (pipe(up) < 0 || pipe(down) < 0)
		bail("pipe");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		db = open_db(true);
		(void)!write(up[1], "l", 1);
		(void)!read(down[0], &c, 1);
		userdb_close(&db);
		(void)!write(up[1], "u", 1);
		_exit(0);
	}
	(void)!read(up[0], &c, 1);
	fd = open(lock, O_RDWR);
	ok(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 &&
	    errno == EWOULDBLOCK, "a writer holds FILE.lock");
	(void)!write(down[1], "x", 1);
	(void)!read(up[0], &c, 1);
	ok(flock(fd, LOCK_EX | LOCK_NB) == 0, "close releases it");
	close(fd);
	waitpid(pid, &status, 0);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
}

#define WRITERS 12

static void
writer(int i)
{
	struct userdb *db = open_db(true);
	const char *error;
	char name[32];

	snprintf(name, sizeof(name), "user%d", i);
	if (userdb_add(db, name, NULL, NULL, 0, false, &error) < 0 ||
	    userdb_save(db, &error) < 0)
		_exit(1);
	userdb_close(&db);
	_exit(0);
}

static void
test_concurrent(void)
{
	struct userdb *db;
	struct user *u = NULL;
	pid_t pids[WRITERS];
	int i, failed = 0, found = 0, status;
	char name[32];

	unlink(path);
	fflush(stdout);
	for (i = 0; i < WRITERS; i++) {
		if ((pids[i] = fork()) == 0)
			writer(i);
	}
	for (i = 0; i < WRITERS; i++) {
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed++;
	}
	is_int(failed, 0, "%d concurrent writers succeed", WRITERS);
	db = open_db(false);
	for (i = 0; i < WRITERS; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		found += userdb_find(db, name, &u);
		user_free(&u);
	}
	is_int(found, WRITERS, "no change lost");
	userdb_close(&db);
}

/* ---- user_lookup_with ---- */

static int
lookup(const struct user_settings *set, const char *name, struct user **u,
    const char **error_r)
{
	user_free(u);
	*error_r = NULL;
	return user_lookup_with(set, name, u, error_r);
}

static void
test_lookup_virtual(void)
{
	struct user_settings set = { .user_database = path };
	struct user *u = NULL;
	const char *error;
	struct group *gr;
	char uidbuf[32];
	uid_t free_uid;

	write_file(path,
	    "alice:" HASH_A ":::/home/alice:\n"
	    "bob:x:1234:2345::mail=maildir:/srv/%u quota=5\n"
	    "rooty:x:0::/r:\n", 0600);
	is_int(lookup(&set, "alice", &u, &error), 1, "virtual alice");
	ok(u != NULL && u->uid == geteuid() && u->gid == getegid() &&
	    !u->system && strcmp(u->mail_location, "maildir:~/Maildir") == 0 &&
	    strcmp(u->pwhash, HASH_A) == 0, "  defaults resolved");
	is_int(lookup(&set, "bob", &u, &error), 1, "virtual bob");
	ok(u != NULL && u->uid == 1234 && u->gid == 2345 && u->has_quota &&
	    strcmp(u->mail_location, "maildir:/srv/%u") == 0,
	    "  explicit ids, per-user mail=");
	is_int(lookup(&set, "rooty", &u, &error), 0, "explicit uid 0");
	is_string(error, "user has uid 0 in user_database; refused",
	    "  error");
	ok(u == NULL, "  no user");
	is_int(lookup(&set, "nobody-here", &u, &error), 0, "unknown");
	is_string(error, "unknown user", "  error");
	is_int(lookup(&set, "a/b", &u, &error), 0, "invalid name");
	is_string(error, "user name holds '/'", "  error says why");

	set.virtual_uid = "4321";
	set.virtual_gid = "5432";
	set.mail_location = "mbox:~/m";
	is_int(lookup(&set, "alice", &u, &error), 1, "virtual_uid/gid set");
	ok(u != NULL && u->uid == 4321 && u->gid == 5432 &&
	    strcmp(u->mail_location, "mbox:~/m") == 0, "  used");
	set.virtual_uid = "root";
	is_int(lookup(&set, "alice", &u, &error), 0, "virtual_uid root");
	is_string(error, "virtual_uid is root; refused", "  error");
	set.virtual_uid = "daemon";
	gr = getgrnam("daemon");
	set.virtual_gid = gr != NULL ? "daemon" : "1";
	is_int(lookup(&set, "alice", &u, &error), 1, "ids by name");
	ok(u != NULL && u->uid == getpwnam("daemon")->pw_uid &&
	    u->gid == (gr != NULL ? gr->gr_gid : 1), "  resolved");
	set.virtual_gid = "";
	is_int(lookup(&set, "alice", &u, &error), 1,
	    "empty virtual_gid: primary group of virtual_uid");
	ok(u != NULL && u->gid == getpwnam("daemon")->pw_gid, "  resolved");
	for (free_uid = 4242; getpwuid(free_uid) != NULL; free_uid++)
		;
	snprintf(uidbuf, sizeof(uidbuf), "%lu", (unsigned long)free_uid);
	set.virtual_uid = uidbuf;
	is_int(lookup(&set, "alice", &u, &error), -1,
	    "numeric virtual_uid without passwd entry, no virtual_gid");
	ok(error != NULL && strstr(error, "set virtual_gid") != NULL,
	    "  error says what to do");
	is_int(lookup(&set, "bob", &u, &error), 1,
	    "  but a user with both ids in the file needs neither");
	set.virtual_uid = "no-such-user-here";
	is_int(lookup(&set, "alice", &u, &error), -1, "unknown virtual_uid");
	ok(error != NULL && strstr(error, "does not exist") != NULL,
	    "  error");
	set.virtual_uid = "4294967295";
	is_int(lookup(&set, "alice", &u, &error), -1,
	    "virtual_uid 4294967295 is not an id");

	set.user_database = dir;
	is_int(lookup(&set, "alice", &u, &error), -1,
	    "unreadable database is a temporary error");
	user_free(&u);
}

static void
test_lookup_system(void)
{
	struct user_settings set = { .user_database = path };
	struct passwd *pw = getpwnam("daemon");
	struct user *u = NULL;
	const char *error;

	if (pw == NULL || pw->pw_uid == 0)
		bail("this test needs a system user \"daemon\"");
	write_file(path, "alice:\n", 0600);
	is_int(lookup(&set, "daemon", &u, &error), 0,
	    "system user unknown with system_users = no");
	set.system_users = true;
	is_int(lookup(&set, "daemon", &u, &error), 1,
	    "system user found with system_users = yes");
	ok(u != NULL && u->system && u->uid == pw->pw_uid &&
	    u->gid == pw->pw_gid && strcmp(u->home, pw->pw_dir) == 0 &&
	    strcmp(u->mail_location, USER_DEFAULT_SYSTEM_MAIL_LOCATION) == 0,
	    "  ids, home and system_mail_location");
	set.system_mail_location = "mbox:/var/spool/%u";
	is_int(lookup(&set, "daemon", &u, &error), 1, "again");
	is_string(u != NULL ? u->mail_location : NULL, "mbox:/var/spool/%u",
	    "  configured system_mail_location");
	is_int(lookup(&set, "root", &u, &error), 0, "root refused");
	is_string(error, "system user has uid 0; refused", "  error");
	is_int(lookup(&set, "alice", &u, &error), 1,
	    "virtual users come first");
	ok(u != NULL && !u->system, "  not a system user");
	write_file(path, "daemon:x:abc\n", 0600);
	stderr_begin();
	is_int(lookup(&set, "daemon", &u, &error), 0,
	    "a malformed virtual line hides the system user");
	free(stderr_end());
	is_string(error, "user has a malformed line in user_database",
	    "  error");
	user_free(&u);
}

static void
test_dup(void)
{
	struct user *u = NULL, *c;
	const char *error;

	if (parse("z:x:1:2:/z:quota=3 mail=mbox:/m", &u, &error) != 1)
		bail("parse");
	c = user_dup(u);
	ok(c != u && c->name != u->name && strcmp(c->name, "z") == 0 &&
	    strcmp(c->mail_location, "mbox:/m") == 0 && c->uid == 1 &&
	    c->quota == 3 && strcmp(c->fields, u->fields) == 0,
	    "user_dup copies deeply");
	user_free(&u);
	user_free(&c);
}

int
main(void)
{
	char *tmpdir;

	strlcpy(dir, "/tmp/loft-userdb.XXXXXX", sizeof(dir));
	if ((tmpdir = mkdtemp(dir)) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/users", dir);
	test_names();
	test_parse_full();
	test_parse_bad();
	test_parse_limits();
	test_parse_prefixes();
	test_file_create();
	test_file_edits();
	test_file_hand();
	test_file_modes();
	test_file_size();
	test_lock();
	test_concurrent();
	test_lookup_virtual();
	test_lookup_system();
	test_dup();
	unlink(path);
	snprintf(path, sizeof(path), "%s/users.lock", dir);
	unlink(path);
	rmdir(dir);
	return done_testing();
}
