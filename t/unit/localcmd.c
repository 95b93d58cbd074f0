/*
 * Unit tests for server/loftd/localcmd.c: what a command's end means
 * (Postfix's pipe_command and sysexits table), the quoting bounds at N and
 * N + 1, and the file delivery (mbox append, refusals) of the delivery
 * process, called directly. The module is included whole: the Makefile
 * links unit tests with the libraries, and server/loftd's objects are in
 * none of them.
 */
#include "config.h"

#include "../../server/loftd/localcmd.c"

#include <stdlib.h>
#include <sys/stat.h>

#include "tap.h"

static enum loftd_dstatus
st(const char *cmd, int status, bool timed_out, const char *out,
    const char **dsn, char *text, size_t size)
{
	return localcmd_command_status(cmd, status, timed_out, out,
	    out != NULL ? strlen(out) : 0, dsn, text, size);
}

static void
test_status(void)
{
	char text[SMTP_QUEUE_DIAG_MAX];
	const char *dsn;

	is_int(st("/bin/x a", 0, false, "ignored\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_OK, "exit 0: delivered");
	is_string(dsn, "2.0.0", "  2.0.0");
	is_string(text, "delivered to command: /bin/x a", "  the log text");
	is_int(st("/bin/x", 75, false, "try later\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "exit 75: deferred");
	is_string(dsn, "4.3.0", "  4.3.0");
	is_string(text, "temporary failure. Command output: try later",
	    "  sysexits text and the output");
	is_int(st("/bin/x", 71, false, NULL, &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_TEMP, "exit 71 (EX_OSERR): deferred");
	is_string(text, "system resource problem", "  without output: the "
	    "sysexits text alone");
	is_int(st("/bin/x", 67, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 67 (EX_NOUSER): bounced");
	is_string(dsn, "5.1.1", "  5.1.1");
	is_int(st("/bin/x", 78, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 78 (EX_CONFIG): bounced");
	is_string(dsn, "5.3.5", "  5.3.5");
	is_int(st("/bin/x", 1, false, "no list\nsecond\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "exit 1: bounced");
	is_string(dsn, "5.3.0", "  5.3.0");
	is_string(text, "Command died with status 1: \"/bin/x\". Command "
	    "output: no list", "  the first output line quoted");
	is_int(st("/bin/x", 63, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 63 (below the sysexits): bounced");
	is_string(text, "Command died with status 63: \"/bin/x\"",
	    "  no output: no \"Command output\"");
	is_int(st("/bin/x", 79, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 79 (above the sysexits): bounced");
	is_int(st("/bin/x", 128 + 9, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_TEMP, "killed by signal 9: deferred");
	is_string(text, "Command died with signal 9: \"/bin/x\"", "  said so");
	is_int(st("/bin/x", 128 + 9, true, "partial\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "time limit: bounced");
	is_string(text, "Command time limit exceeded: \"/bin/x\". Command "
	    "output: partial", "  said so");
	is_int(st("/bin/x", 1, false, "4.2.1 mailbox busy\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "\"4.2.1 text\" output: as it "
	    "says, deferred");
	is_string(dsn, "4.2.1", "  its code");
	is_string(text, "mailbox busy", "  its text");
	is_int(st("/bin/x", 75, false, "5.1.1 no such user\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "\"5.1.1 text\" outweighs the "
	    "exit status");
	is_string(dsn, "5.1.1", "  its code");
	is_int(st("/bin/x", 1, false, "4.123.123 x\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "three digits a part: a code");
	is_int(st("/bin/x", 1, false, "4.1234.1 x\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "four: not a code");
	is_int(st("/bin/x", 1, false, "6.1.1 x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "class 6: not a code");
	is_int(st("/bin/x", 1, false, "4.1 x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "two parts: not a code");
	is_int(st("/bin/x", 1, false, "4.1.1x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "no blank after it: not a code");
	is_int(st("/bin/x", 1, false, "a\tb\001c\r\nd", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "control bytes");
	is_string(text, "Command died with status 1: \"/bin/x\". Command "
	    "output: a_b_c", "  shown as '_', CRLF ends the line");
}

static void
test_quote_limit(void)
{
	char cmd[LOCALCMD_QUOTE_MAX + 2], out[LOCALCMD_QUOTE_MAX + 2];
	char text[2048], want[2048];
	const char *dsn;

	memset(cmd, 'c', sizeof(cmd) - 1);
	cmd[LOCALCMD_QUOTE_MAX] = '\0';
	memset(out, 'o', sizeof(out) - 1);
	out[LOCALCMD_QUOTE_MAX] = '\0';
	st(cmd, 1, false, out, &dsn, text, sizeof(text));
	snprintf(want, sizeof(want), "Command died with status 1: \"%s\". "
	    "Command output: %s", cmd, out);
	is_string(text, want, "command and output of %d bytes: whole",
	    LOCALCMD_QUOTE_MAX);
	cmd[LOCALCMD_QUOTE_MAX] = 'C';
	cmd[LOCALCMD_QUOTE_MAX + 1] = '\0';
	out[LOCALCMD_QUOTE_MAX] = 'O';
	out[LOCALCMD_QUOTE_MAX + 1] = '\0';
	st(cmd, 1, false, out, &dsn, text, sizeof(text));
	is_string(text, want, "%d bytes: cut at %d", LOCALCMD_QUOTE_MAX + 1,
	    LOCALCMD_QUOTE_MAX);
	st(cmd, 1, false, out, &dsn, text, 40);
	is_int(strlen(text), 39, "the caller's buffer bounds the text");
}

static char *
slurp(const char *path)
{
	static char data[8192];
	FILE *f = fopen(path, "rb");
	size_t n = 0;

	if (f != NULL) {
		n = fread(data, 1, sizeof(data) - 1, f);
		fclose(f);
	}
	data[n] = '\0';
	return data;
}

static void
test_mbox(const char *dir)
{
	static const unsigned char msg[] = "Subject: x\n\nFrom here\nbye\n";
	struct localcmd_result r;
	char path[512], link_path[600], *data;
	struct stat sb;

	snprintf(path, sizeof(path), "%s/box", dir);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "s@example.org", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "mbox: a new file, delivered");
	snprintf(link_path, sizeof(link_path), "delivered to file: %s", path);
	is_string(r.text, link_path, "  \"delivered to file: PATH\"");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "  appended a second time");
	data = slurp(path);
	ok(strncmp(data, "From s@example.org ", 19) == 0, "  From_ line");
	ok(strstr(data, "\n>From here\nbye\n\nFrom MAILER-DAEMON ") != NULL,
	    "  >From quoting, separator, the second From_ line (<> as "
	    "MAILER-DAEMON)");
	ok(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600,
	    "  created mode 0600");

	chmod(path, 0602);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "writable by others: refused");
	is_string(r.dsn, "5.2.0", "  5.2.0");
	ok(strstr(r.text, ": writable by others") != NULL, "  said why");
	chmod(path, 0620);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "writable by the group: taken");

	snprintf(link_path, sizeof(link_path), "%s/link", dir);
	if (symlink(path, link_path) < 0)
		bail("symlink");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(link_path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a symbolic link: refused");
	ok(strstr(r.text, ": is a symbolic link") != NULL, "  said why");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(dir, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a directory: refused");
	ok(strstr(r.text, ": not a regular file") != NULL, "  said why");
	snprintf(link_path, sizeof(link_path), "%s/nodir/box", dir);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(link_path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a missing directory: bounced");
	is_string(r.dsn, "5.2.0", "  5.2.0");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox("/dev/null", "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "/dev/null: delivered");
}

int
main(void)
{
	char dir[] = "/tmp/loft-localcmd-XXXXXX";
	const char *error;
	char cmd[256];

	if (conf_load_buffer("test", "", 0, &error) < 0)
		bail("conf: %s", error);
	test_status();
	test_quote_limit();
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	test_mbox(dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	conf_reset();
	return done_testing();
}
