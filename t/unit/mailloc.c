/* Unit tests for lib/mailloc.c: formats, options, every variable, home
 * and "~", path escapes, the path limit at 4095 and 4096 bytes, and every
 * prefix of valid specs (a prefix parses or fails cleanly, never more). */
#include "config.h"
#include <string.h>
#include "mailloc.h"
#include "tap.h"

/* Parse and compare all three paths; want_inbox NULL for maildir. */
static void
check(const char *spec, const char *user, const char *home,
    const char *want_root, const char *want_inbox, const char *want_index)
{
	struct mailloc ml;
	const char *error = "";
	int ret;

	ret = mailloc_parse(spec, user, home, &ml, &error);
	if (!ok(ret == 0, "parse %s for %s", spec, user)) {
		diag("error: %s", error);
		return;
	}
	is_string(ml.root, want_root, "  root");
	is_string(ml.inbox, want_inbox, "  inbox");
	is_string(ml.index_dir, want_index, "  index");
	mailloc_free(&ml);
	ok(ml.root == NULL && ml.inbox == NULL && ml.index_dir == NULL,
	    "  free clears");
}

static void
fails(const char *spec, const char *user, const char *home,
    const char *want_error)
{
	struct mailloc ml;
	const char *error = NULL;
	int ret;

	memset(&ml, 0x5a, sizeof(ml));
	ret = mailloc_parse(spec, user, home, &ml, &error);
	ok(ret == -1 && ml.root == NULL && ml.inbox == NULL &&
	    ml.index_dir == NULL, "refused: %s for %s", spec, user);
	if (want_error != NULL)
		is_string(error, want_error, "  error");
	mailloc_free(&ml);
}

static void
test_good(void)
{
	check("maildir:~/Maildir", "alice", "/home/alice",
	    "/home/alice/Maildir", NULL, "/home/alice/Maildir/loft-index");
	check("maildir:/srv/mail/%d/%n:INDEX=/var/idx/%u", "bob@example.org",
	    "", "/srv/mail/example.org/bob", NULL,
	    "/var/idx/bob@example.org");
	check("mbox:~/mail:INBOX=/var/mail/%u", "carol", "/home/carol",
	    "/home/carol/mail", "/var/mail/carol",
	    "/home/carol/mail/.loft-index");
	check("mbox:/srv/%u", "dave", NULL, "/srv/dave", "/srv/dave/inbox",
	    "/srv/dave/.loft-index");
	check("maildir:%h/M%%d:INDEX=%h/idx", "e", "/home/e/", "/home/e/M%d",
	    NULL, "/home/e/idx");
	check("maildir:/m/%n/%d", "a@b@c", NULL, "/m/a@b/c", NULL,
	    "/m/a@b/c/loft-index");
	check("maildir:/m/%d/%n/", "f", NULL, "/m/f", NULL,
	    "/m/f/loft-index");
	check("maildir:~", "g", "/", "/", NULL, "/loft-index");
	check("mbox:~//mail//:INDEX=/x//y/:INBOX=/var/mail/%n", "h@d", "/h",
	    "/h/mail", "/var/mail/h", "/x/y");
	check("maildir:/m/%u", "j\xc3\xa9r\xc3\xb4me@ex.fr", NULL,
	    "/m/j\xc3\xa9r\xc3\xb4me@ex.fr", NULL,
	    "/m/j\xc3\xa9r\xc3\xb4me@ex.fr/loft-index");
	check("maildir:/m/..a/a../.a/%n.", "x", NULL, "/m/..a/a../.a/x.",
	    NULL, "/m/..a/a../.a/x./loft-index");
}

static void
test_bad(void)
{
	fails("", "a", "/h", "unknown mail format \"\"");
	fails("maildir", "a", "/h", "no path after the format");
	fails("maildir:", "a", "/h", "empty path");
	fails("mh:~/Mail", "a", "/h", "unknown mail format \"mh\"");
	fails("Maildir:~/Mail", "a", "/h", NULL);
	fails("maildir:Maildir", "a", "/h", "path is not absolute: Maildir");
	fails("maildir:~/Maildir", "a", "", "the user has no home directory");
	fails("maildir:~/Maildir", "a", NULL, "the user has no home directory");
	fails("maildir:%h/Maildir", "a", "", "the user has no home directory");
	fails("maildir:~a/Maildir", "a", "/h", "\"~user\" is not supported");
	fails("maildir:/m/%x", "a", "/h", "unknown variable %x");
	fails("maildir:/m/%", "a", "/h", "'%' at the end of a path");
	fails("maildir:/m:INBOX=/x", "a", "/h", "INBOX= is only for mbox");
	fails("maildir:/m:INDEX=/x:INDEX=/y", "a", "/h", "INDEX given twice");
	fails("mbox:/m:INBOX=/x:INBOX=/y", "a", "/h", "INBOX given twice");
	fails("maildir:/m:FOO=/x", "a", "/h", "unknown option FOO");
	fails("maildir:/m:INDEX", "a", "/h", NULL);
	fails("maildir:/m:INDEX=", "a", "/h", "empty path");
	fails("maildir:/m:", "a", "/h", NULL);
	fails("maildir:/m:INDEX=idx", "a", "/h", NULL);
	fails("maildir:/m/../etc", "a", "/h",
	    "path has a '.' or '..' component");
	fails("maildir:/m/..", "a", "/h", NULL);
	fails("maildir:/m/./x", "a", "/h", NULL);
	fails("maildir:/m/.", "a", "/h", NULL);
	fails("maildir:~/Maildir", "a", "/home/../root", NULL);
	/* What the name rules already refuse, refused here again. */
	fails("maildir:/m/%u", "../../etc", "/h", "user name holds '/'");
	fails("maildir:/m/%n", "a/b@c", "/h", "user name holds '/'");
	fails("maildir:/m/%d", "a@b/c", "/h", "user name holds '/'");
	fails("maildir:/m/%u/x", "..", "/h",
	    "path has a '.' or '..' component");
	fails("maildir:/m/%d/%n", "a@.", "/h", NULL);
	fails("maildir:/m/%d/%n", "..@x", "/h", NULL);
}

/* The limit is on the result: 4095 bytes pass, 4096 fail, both for the
 * root and for the index default derived from it. */
static void
test_limits(void)
{
	char spec[MAILLOC_PATH_MAX + 64], path[MAILLOC_PATH_MAX + 2];
	struct mailloc ml;
	const char *error = NULL;
	size_t len;

	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[MAILLOC_PATH_MAX] = '\0';
	snprintf(spec, sizeof(spec), "maildir:%s:INDEX=/i", path);
	is_int(mailloc_parse(spec, "a", NULL, &ml, &error), 0,
	    "root of 4095 bytes");
	len = ml.root != NULL ? strlen(ml.root) : 0;
	is_int(len, MAILLOC_PATH_MAX, "  kept whole");
	mailloc_free(&ml);
	path[MAILLOC_PATH_MAX] = 'p';
	path[MAILLOC_PATH_MAX + 1] = '\0';
	snprintf(spec, sizeof(spec), "maildir:%s:INDEX=/i", path);
	is_int(mailloc_parse(spec, "a", NULL, &ml, &error), -1,
	    "root of 4096 bytes refused");
	is_string(error, "path longer than 4095 bytes", "  error");
	/* root + "/loft-index" (11 bytes) at 4095 and 4096 */
	path[MAILLOC_PATH_MAX - 11] = '\0';
	snprintf(spec, sizeof(spec), "maildir:%s", path);
	is_int(mailloc_parse(spec, "a", NULL, &ml, &error), 0,
	    "default index of 4095 bytes");
	mailloc_free(&ml);
	path[MAILLOC_PATH_MAX - 11] = 'p';
	path[MAILLOC_PATH_MAX - 10] = '\0';
	snprintf(spec, sizeof(spec), "maildir:%s", path);
	is_int(mailloc_parse(spec, "a", NULL, &ml, &error), -1,
	    "default index of 4096 bytes refused");
	/* "//" squeezed before the limit applies */
	memset(path, '/', sizeof(path));
	path[MAILLOC_PATH_MAX + 1] = '\0';
	snprintf(spec, sizeof(spec), "maildir:%sm", path);
	is_int(mailloc_parse(spec, "a", NULL, &ml, &error), 0,
	    "4097 bytes that squeeze to /m");
	is_string(ml.root, "/m", "  squeezed");
	mailloc_free(&ml);
}

/* Every prefix of a valid spec: a clean answer either way, and the
 * whole spec parses. */
static void
test_prefixes(const char *spec)
{
	char buf[256];
	struct mailloc ml;
	const char *error;
	size_t i, n = strlen(spec);
	int bad = 0, ret = -1;

	for (i = 0; i <= n; i++) {
		memcpy(buf, spec, i);
		buf[i] = '\0';
		error = NULL;
		ret = mailloc_parse(buf, "u@d", "/home/u", &ml, &error);
		if ((ret == 0) != (ml.root != NULL) ||
		    (ret < 0 && error == NULL))
			bad++;
		mailloc_free(&ml);
	}
	ok(bad == 0 && ret == 0, "every prefix of %s answers cleanly", spec);
}

int
main(void)
{
	test_good();
	test_bad();
	test_limits();
	test_prefixes("maildir:/srv/mail/%d/%n:INDEX=/var/idx/%u");
	test_prefixes("mbox:~/mail:INBOX=/var/mail/%u:INDEX=%h/.i");
	return done_testing();
}
