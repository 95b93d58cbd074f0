/*
 * Unit tests for lib/conf.c: syntax, expansion, every type's good and bad
 * values with their messages, unknown names, limits at N and N+1, dynamic
 * defaults, conf_set, conf_foreach, lookups that must panic, a golden-file
 * driver over t/data/conf/NAME.cf, and the shipped conf/loft.conf and
 * doc/loft.conf.5 kept in step with the parameter table.
 *
 * Set LOFT_CONF_REGEN=1 to rewrite the .ref files instead of comparing.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "compat/compat.h"
#include "buf.h"
#include "conf.h"
#include "tap.h"

static const char *top;		/* LOFT_TOP, or "." */

/* ---- Helpers: capture the log, load text ---- */

static FILE *cap_file;
static int cap_saved = -1;
static char cap_text[65536];

static void
cap_begin(void)
{
	fflush(stderr);
	if ((cap_file = tmpfile()) == NULL)
		bail("tmpfile: %s", strerror(errno));
	cap_saved = dup(STDERR_FILENO);
	dup2(fileno(cap_file), STDERR_FILENO);
}

static const char *
cap_end(void)
{
	size_t n;

	fflush(stderr);
	dup2(cap_saved, STDERR_FILENO);
	close(cap_saved);
	rewind(cap_file);
	n = fread(cap_text, 1, sizeof(cap_text) - 1, cap_file);
	cap_text[n] = '\0';
	fclose(cap_file);
	return cap_text;
}

static char load_err[4096];
static char load_log[65536];

/* load_n: conf_load_buffer with the log captured in load_log and the
 * error (or "") in load_err. */
static int
load_n(const char *name, const char *text, size_t len)
{
	const char *err = "";
	int rc;

	cap_begin();
	rc = conf_load_buffer(name, text, len, &err);
	strlcpy(load_log, cap_end(), sizeof(load_log));
	strlcpy(load_err, rc < 0 ? err : "", sizeof(load_err));
	return rc;
}

static int
load(const char *text)
{
	return load_n("t.cf", text, strlen(text));
}

/* check_load: text loads, and param then expands to want. */
static void
check_value(const char *text, const char *param, const char *want,
    const char *what)
{
	if (!ok(load(text) == 0, "%s: loads", what)) {
		diag("error: %s", load_err);
		return;
	}
	is_string(conf_str(param), want, "%s: %s", what, param);
}

/* check_error: text fails with exactly want. */
static void
check_error(const char *text, const char *want, const char *what)
{
	is_int(load(text), -1, "%s: fails", what);
	is_string(load_err, want, "%s: message", what);
}

static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		bail("out of memory");
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static char *
read_text(const char *path, size_t *len_r)
{
	struct buf b;
	char chunk[8192];
	size_t n;
	FILE *fp = fopen(path, "r");

	if (fp == NULL)
		return NULL;
	buf_init(&b, 16 * 1024 * 1024);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (buf_append(&b, chunk, n) < 0)
			bail("%s: too large", path);
	fclose(fp);
	if (len_r != NULL)
		*len_r = b.len;
	buf_append_byte(&b, '\0');
	return (char *)buf_steal(&b, NULL);
}

static void
write_text(const char *path, const char *text, size_t len)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL || fwrite(text, 1, len, fp) != len || fclose(fp) != 0)
		bail("cannot write %s: %s", path, strerror(errno));
}

static const char *
test_hostname(void)
{
	static char host[256];

	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	if (host[0] == '\0')
		strlcpy(host, "localhost", sizeof(host));
	return host;
}

/* ---- Syntax ---- */

static void
test_syntax(void)
{
	check_value("# comment\n\n   # indented comment\n"
	    "myorigin = example.org\n", "myorigin", "example.org",
	    "comments and blank lines");
	check_value("myorigin\t=\t  example.org  \t\n", "myorigin",
	    "example.org", "white space around = and at the end");
	check_value("myorigin=example.org", "myorigin", "example.org",
	    "no spaces, no final newline");
	check_value("myorigin = example.org\r\n", "myorigin", "example.org",
	    "CRLF line end");
	check_value("mydestination = a,\n  b,\n\tc\n", "mydestination",
	    "a, b, c", "continuation joined with one space");
	check_value("mydestination = a   \n# c\n\n   \n \t b\n",
	    "mydestination", "a b", "continuation across comment and blank lines");
	check_value("myorigin\n  = example.org\n", "myorigin", "example.org",
	    "continuation before the =");
	check_value("myorigin = one\nmyorigin = two\n", "myorigin", "two",
	    "later definition overrides");
	check_value("myorigin = a=b # c\n", "myorigin", "a=b # c",
	    "= and # inside a value are text");
	check_value("recipient_delimiter =\n", "recipient_delimiter", "",
	    "empty value");
	check_value("recipient_delimiter = +-\n", "recipient_delimiter",
	    "+-", "several delimiter characters");
	is_string(load_log, "", "known names log nothing");

	check_error("myorigin = a\nfoo bar\n",
	    "t.cf:2: bad line \"foo bar\": expected name = value",
	    "line without =");
	check_error("myorigin = a\n  b\n\n# x\nfoo\n  bar\n",
	    "t.cf:5: bad line \"foo bar\": expected name = value",
	    "line number counts physical lines");
	check_error("  myorigin = a\n",
	    "t.cf:1: line starts with white space but continues no "
	    "parameter", "continuation with nothing before");
	check_error("# c\n\tmyorigin = a\n",
	    "t.cf:2: line starts with white space but continues no "
	    "parameter", "continuation after only a comment");
	check_error("my-origin = a\n",
	    "t.cf:1: bad parameter name \"my-origin\": expected letters, "
	    "digits and \"_\"", "bad name");
	check_error("= a\n",
	    "t.cf:1: bad parameter name \"\": expected letters, digits and "
	    "\"_\"", "empty name");
	check_error("my origin = a\n",
	    "t.cf:1: bad parameter name \"my origin\": expected letters, "
	    "digits and \"_\"", "name with a space");
	is_int(load_n("t.cf", "myorigin = a\nx = b\0c\n", 20), -1,
	    "NUL byte fails");
	is_string(load_err, "t.cf:2: NUL byte in line", "NUL byte message");
	check_error("bad\001 line\n",
	    "t.cf:1: bad line \"bad\\001 line\": expected name = value",
	    "control characters are escaped in messages");
	check_value("", "myorigin", test_hostname(), "empty file");
}

/* test_prefixes: every prefix of a file, as a truncated write would leave
 * it, either loads or fails with a file:line message (and under ASan,
 * never reads out of bounds: the buffer is exactly the prefix). */
static void
test_prefixes(void)
{
	static const char text[] = "# c\nmyorigin = ${x?a}$(y)$z$$\n"
	    "mydestination = a,\n  b\nx = 1\nmessage_size_limit = 100\n"
	    "deliver_lock_delay = 10m\n";
	size_t k, bad = 0;
	char *copy;

	for (k = 0; k <= sizeof(text) - 1; k++) {
		copy = malloc(k + 1);
		memcpy(copy, text, k);
		if (load_n("t.cf", copy, k) < 0 &&
		    strncmp(load_err, "t.cf:", 5) != 0) {
			diag("prefix %zu: %s", k, load_err);
			bad++;
		}
		free(copy);
	}
	is_int(bad, 0, "every prefix loads or fails with file:line");
	ok(load(text) == 0 && conf_int("message_size_limit") == 100 &&
	    conf_time("deliver_lock_delay") == 600, "the whole file loads");
}

/* ---- Expansion ---- */

static void
test_expand(void)
{
	check_value("x = hello\nmyorigin = $x|${x}|$(x)\n", "myorigin",
	    "hello|hello|hello", "$x ${x} $(x)");
	check_value("a = $b\nb = ${c}.d\nc = x\nmyorigin = <$a>\n",
	    "myorigin", "<x.d>", "nested");
	check_value("myorigin = [$nope][${nope}]\n", "myorigin", "[][]",
	    "undefined is empty");
	check_value("myorigin = a$$b$$$$\n", "myorigin", "a$b$$",
	    "$$ is a literal $");
	check_value("x = 1\nempty =\n"
	    "myorigin = ${x?yes}${x:no}${empty?Y}${empty:N}${undef:U}\n",
	    "myorigin", "yesNU", "${x?text} and ${x:text}");
	check_value("x = 1\ny = Y\nmyorigin = ${x?<$y>}$(x?($y))\n",
	    "myorigin", "<Y>(Y)", "conditional text is expanded");
	check_value("x = 1\nmyorigin = ${x?a{b}c}\n", "myorigin", "a{b}c",
	    "brackets of the same kind nest");
	check_value("myorigin = $x\nx = later\n", "myorigin", "later",
	    "expansion is lazy: use before definition");
	check_value("x = $y$y\ny = ab\nmyorigin = $x.$x\n", "myorigin",
	    "abab.abab", "a name used twice");
	check_value("p = [$q]\nq = ${r:none}\nmyorigin = $p\n", "myorigin",
	    "[none]", "conditional inside a chain");
}

static void
test_expand_errors(void)
{
	check_error("a = x$b\nb = y$a\nmyorigin = $a\n",
	    "t.cf:3: myorigin: cannot expand \"$a\": expansion loop: $a "
	    "refers to itself", "loop through user-defined names");
	check_error("myorigin = x$myorigin\n",
	    "t.cf:1: myorigin: cannot expand \"x$myorigin\": expansion "
	    "loop: $myorigin refers to itself", "self-reference");
	check_error("x = 1\nmyorigin = ${x?$myorigin}\n",
	    "t.cf:2: myorigin: cannot expand \"${x?$myorigin}\": "
	    "expansion loop: $myorigin refers to itself",
	    "loop inside conditional text");
	check_error("myorigin = ${x\n",
	    "t.cf:1: myorigin: cannot expand \"${x\": unterminated \"${\"",
	    "unterminated ${");
	check_error("myorigin = $(x\n",
	    "t.cf:1: myorigin: cannot expand \"$(x\": unterminated \"$(\"",
	    "unterminated $(");
	check_error("myorigin = ${x y}\n",
	    "t.cf:1: myorigin: cannot expand \"${x y}\": bad expression "
	    "\"${x y}\": expected ${name}, ${name?text} or ${name:text}",
	    "bad expression");
	check_error("myorigin = ${}\n",
	    "t.cf:1: myorigin: cannot expand \"${}\": bad expression "
	    "\"${}\": expected ${name}, ${name?text} or ${name:text}",
	    "empty ${}");
	check_error("myorigin = a$\n",
	    "t.cf:1: myorigin: cannot expand \"a$\": \"$\" not followed by "
	    "a parameter name (write \"$$\" for a \"$\")", "trailing $");
	check_error("myorigin = a$-b\n",
	    "t.cf:1: myorigin: cannot expand \"a$-b\": \"$\" not followed "
	    "by a parameter name (write \"$$\" for a \"$\")", "$-");

	/* A loop nothing uses is only found when something looks. */
	is_int(load("a = $b\nb = $a\n"), 0, "unused loop loads");
}

static void
test_expand_limits(void)
{
	char *text, *p;
	size_t i;

	/* Depth: myorigin is level 0, so 99 names below it fit. */
	for (i = 99; i <= 100; i++) {
		size_t n;
		struct buf b;

		buf_init(&b, 1 << 20);
		buf_printf(&b, "myorigin = $a1\n");
		for (n = 1; n < i; n++)
			buf_printf(&b, "a%zu = $a%zu\n", n, n + 1);
		buf_printf(&b, "a%zu = end\n", i);
		if (i == 99)
			check_value(buf_cstr(&b), "myorigin", "end",
			    "nesting 100 levels deep");
		else
			check_error(buf_cstr(&b), "t.cf:1: myorigin: cannot "
			    "expand \"$a1\": expansion nested deeper than 100 "
			    "levels (at $a100)", "nesting 101 levels deep");
		buf_free(&b);
	}

	/* Conditionals nested in one value count too: myorigin's text is
	 * level 1, so 98 fit. */
	for (i = 98; i <= 99; i++) {
		struct buf b;
		size_t n;

		buf_init(&b, 1 << 20);
		buf_printf(&b, "x = 1\nmyorigin = ");
		for (n = 0; n < i; n++)
			buf_printf(&b, "${x?");
		buf_printf(&b, "deep");
		for (n = 0; n < i; n++)
			buf_printf(&b, "}");
		buf_printf(&b, "\n");
		if (i == 98)
			check_value(buf_cstr(&b), "myorigin", "deep",
			    "98 nested conditionals");
		else {
			is_int(load(buf_cstr(&b)), -1,
			    "99 nested conditionals fail");
			ok(strstr(load_err, ": expansion nested deeper than "
			    "100 levels (in ${x?...})") != NULL,
			    "with the depth message");
		}
		buf_free(&b);
	}
	/* Deeper still: a stack overflow here would crash the test. */
	{
		struct buf b;

		buf_init(&b, 4 << 20);
		buf_printf(&b, "x = 1\nmyorigin = ");
		for (i = 0; i < 100000; i++)
			buf_printf(&b, "${x?\n ");
		for (i = 0; i < 100000; i++)
			buf_printf(&b, "\n }");
		is_int(load(buf_cstr(&b)), -1,
		    "100000 nested conditionals fail");
		ok(strstr(load_err, "t.cf:2: myorigin: cannot expand") ==
		    load_err && strstr(load_err, ": expansion nested deeper "
		    "than 100 levels (in ${x?...})") != NULL,
		    "on the depth limit, without exhausting the stack");
		buf_free(&b);
	}

	/* Size: a20 doubles 20 times to exactly CONF_VALUE_MAX bytes. */
	text = malloc(4096);
	p = text + snprintf(text, 4096, "a0 = x\n");
	for (i = 1; i <= 20; i++)
		p += snprintf(p, 64, "a%zu = $a%zu$a%zu\n", i, i - 1, i - 1);
	strlcpy(p, "syslog_name = $a20\n", 64);
	if (ok(load(text) == 0, "expanded value of CONF_VALUE_MAX bytes"))
		is_int(strlen(conf_str("syslog_name")), CONF_VALUE_MAX,
		    "its length");
	strlcpy(p, "syslog_name = ${a20}x\n", 64);
	check_error(text, "t.cf:22: syslog_name: cannot expand \"${a20}x\": "
	    "expanded value longer than 1048576 bytes",
	    "expanded value of CONF_VALUE_MAX + 1 bytes");
	free(text);

	/* Memoised: 2^60 references to an empty name must be instant
	 * (main() sets an alarm, so this fails rather than hangs). */
	text = malloc(4096);
	p = text + snprintf(text, 4096, "e0 =\n");
	for (i = 1; i <= 60; i++)
		p += snprintf(p, 64, "e%zu = $e%zu$e%zu\n", i, i - 1, i - 1);
	strlcpy(p, "myorigin = <$e60>\n", 64);
	check_value(text, "myorigin", "<>", "exponential expansion memoised");
	free(text);
}

/* ---- Types ---- */

struct type_case {
	const char *text;
	const char *error;	/* NULL: must load */
};

static const struct type_case type_cases[] = {
	{ "message_size_limit = 10M", "t.cf:1: message_size_limit: bad value "
	    "\"10M\": expected a number of bytes" },
	{ "message_size_limit = -1", "t.cf:1: message_size_limit: bad value "
	    "\"-1\": expected a number of bytes" },
	{ "message_size_limit = +1", "t.cf:1: message_size_limit: bad value "
	    "\"+1\": expected a number of bytes" },
	{ "message_size_limit =", "t.cf:1: message_size_limit: bad value "
	    "\"\": expected a number of bytes" },
	{ "message_size_limit = 1 000", "t.cf:1: message_size_limit: bad "
	    "value \"1 000\": expected a number of bytes" },
	{ "message_size_limit = 9223372036854775807", NULL },
	{ "message_size_limit = 9223372036854775808", "t.cf:1: "
	    "message_size_limit: bad value \"9223372036854775808\": expected "
	    "a number of bytes" },
	{ "message_size_limit = 0", NULL },
	{ "mailbox_size_limit = 0x10", "t.cf:1: mailbox_size_limit: bad "
	    "value \"0x10\": expected a number of bytes" },
	{ "index_map_size = 65536", NULL },
	{ "index_map_size = 65535", "t.cf:1: index_map_size: bad value "
	    "\"65535\": expected a number of bytes of at least 65536" },
	{ "index_max_size = 65535", "t.cf:1: index_max_size: bad value "
	    "\"65535\": expected a number of bytes of at least 65536" },
	{ "deliver_lock_attempts = 1", NULL },
	{ "deliver_lock_attempts = 1000", NULL },
	{ "deliver_lock_attempts = 0", "t.cf:1: deliver_lock_attempts: bad "
	    "value \"0\": expected an integer from 1 to 1000" },
	{ "deliver_lock_attempts = 1001", "t.cf:1: deliver_lock_attempts: "
	    "bad value \"1001\": expected an integer from 1 to 1000" },
	{ "deliver_lock_attempts = -5", "t.cf:1: deliver_lock_attempts: bad "
	    "value \"-5\": expected an integer from 1 to 1000" },
	{ "deliver_lock_attempts = 5x", "t.cf:1: deliver_lock_attempts: bad "
	    "value \"5x\": expected an integer from 1 to 1000" },
	{ "deliver_lock_attempts = -", "t.cf:1: deliver_lock_attempts: bad "
	    "value \"-\": expected an integer from 1 to 1000" },
	{ "system_users = yes", NULL },
	{ "system_users = No", NULL },
	{ "system_users = TRUE", NULL },
	{ "system_users = false", NULL },
	{ "system_users = maybe", "t.cf:1: system_users: bad value "
	    "\"maybe\": expected yes or no" },
	{ "system_users = 1", "t.cf:1: system_users: bad value \"1\": "
	    "expected yes or no" },
	{ "system_users = yess", "t.cf:1: system_users: bad value "
	    "\"yess\": expected yes or no" },
	{ "deliver_lock_delay = 3600", NULL },
	{ "deliver_lock_delay = 0", NULL },
	{ "deliver_lock_delay = 3601", "t.cf:1: deliver_lock_delay: bad "
	    "value \"3601\": expected a time of at most 3600s: a number with "
	    "an optional unit s, m, h, d or w (default s), at most "
	    "2147483647 seconds" },
	{ "deliver_lock_delay = 1d", "t.cf:1: deliver_lock_delay: bad "
	    "value \"1d\": expected a time of at most 3600s: a number with "
	    "an optional unit s, m, h, d or w (default s), at most "
	    "2147483647 seconds" },
	{ "stale_lock_time = 0", "t.cf:1: stale_lock_time: bad value "
	    "\"0\": expected a time of at least 1s: a number with an "
	    "optional unit s, m, h, d or w (default s), at most 2147483647 "
	    "seconds" },
	{ "stale_lock_time = 2147483647", NULL },
	{ "stale_lock_time = 2147483648", "t.cf:1: stale_lock_time: bad "
	    "value \"2147483648\": expected a time of at least 1s: a number "
	    "with an optional unit s, m, h, d or w (default s), at most "
	    "2147483647 seconds" },
	{ "stale_lock_time = 35791394m", NULL },
	{ "stale_lock_time = 35791395m", "t.cf:1: stale_lock_time: bad "
	    "value \"35791395m\": expected a time of at least 1s: a number "
	    "with an optional unit s, m, h, d or w (default s), at most "
	    "2147483647 seconds" },
	{ "stale_lock_time = 5x", "t.cf:1: stale_lock_time: bad value "
	    "\"5x\": expected a time of at least 1s: a number with an "
	    "optional unit s, m, h, d or w (default s), at most 2147483647 "
	    "seconds" },
	{ "stale_lock_time = 1ms", "t.cf:1: stale_lock_time: bad value "
	    "\"1ms\": expected a time of at least 1s: a number with an "
	    "optional unit s, m, h, d or w (default s), at most 2147483647 "
	    "seconds" },
	{ "stale_lock_time = m", "t.cf:1: stale_lock_time: bad value "
	    "\"m\": expected a time of at least 1s: a number with an "
	    "optional unit s, m, h, d or w (default s), at most 2147483647 "
	    "seconds" },
	{ "stale_lock_time = 5M", "t.cf:1: stale_lock_time: bad value "
	    "\"5M\": expected a time of at least 1s: a number with an "
	    "optional unit s, m, h, d or w (default s), at most 2147483647 "
	    "seconds" },
	{ "mailbox_delivery_lock = flock", NULL },
	{ "mailbox_delivery_lock = fcntl,,dotlock , flock", NULL },
	{ "mailbox_delivery_lock = fcntl, lockf", "t.cf:1: "
	    "mailbox_delivery_lock: bad value \"fcntl, lockf\": expected a "
	    "list of fcntl, dotlock or flock" },
	{ "mailbox_delivery_lock = ,", "t.cf:1: mailbox_delivery_lock: bad "
	    "value \",\": expected a list of fcntl, dotlock or flock" },
	{ "mailbox_delivery_lock = FCNTL", "t.cf:1: mailbox_delivery_lock: "
	    "bad value \"FCNTL\": expected a list of fcntl, dotlock or "
	    "flock" },
	{ "maillog_file = /var/log/loft.log", NULL },
	{ "maillog_file =", NULL },
	{ "maillog_file = var/log/loft.log", "t.cf:1: maillog_file: bad "
	    "value \"var/log/loft.log\": expected an absolute path" },
	{ "user_database = ~/users", "t.cf:1: user_database: bad value "
	    "\"~/users\": expected an absolute path" },
	{ "user_database = $config_directory/virtual", NULL },
	{ "syslog_facility = local0", NULL },
	{ "syslog_facility = local8", "t.cf:1: syslog_facility: bad value "
	    "\"local8\": expected auth, authpriv, daemon, mail, user, local0, "
	    "local1, local2, local3, local4, local5, local6 or local7" },
	{ "mail_location = maildir:~/Maildir:INDEX=/var/idx/%u", NULL },
	{ "mail_location = mbox:~/mail:INBOX=/var/mail/%u:INDEX=~/.i", NULL },
	{ "mail_location = maildir:~/Maildir:INBOX=/var/mail/%u", "t.cf:1: "
	    "mail_location: bad value \"maildir:~/Maildir:INBOX=/var/mail/%u\""
	    ": expected maildir:PATH[:INDEX=DIR] or "
	    "mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "mail_location = mh:~/Mail", "t.cf:1: mail_location: bad value "
	    "\"mh:~/Mail\": expected maildir:PATH[:INDEX=DIR] or "
	    "mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "mail_location = maildir:", "t.cf:1: mail_location: bad value "
	    "\"maildir:\": expected maildir:PATH[:INDEX=DIR] or "
	    "mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "system_mail_location = mbox::INBOX=/x", "t.cf:1: "
	    "system_mail_location: bad value \"mbox::INBOX=/x\": expected "
	    "maildir:PATH[:INDEX=DIR] or mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "system_mail_location = mbox:~/m:INBOX=", "t.cf:1: "
	    "system_mail_location: bad value \"mbox:~/m:INBOX=\": expected "
	    "maildir:PATH[:INDEX=DIR] or mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "mail_location = maildir:~/M:INDEX=/a:INDEX=/b", "t.cf:1: "
	    "mail_location: bad value \"maildir:~/M:INDEX=/a:INDEX=/b\": "
	    "expected maildir:PATH[:INDEX=DIR] or "
	    "mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "mail_location = maildir:~/M:INDEXX=/a", "t.cf:1: "
	    "mail_location: bad value \"maildir:~/M:INDEXX=/a\": "
	    "expected maildir:PATH[:INDEX=DIR] or "
	    "mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
	{ "system_mail_location = mbox:~/m:INDEX=/i:INBOX=/b", NULL },
	{ "system_mail_location = mbox:~/m:", "t.cf:1: "
	    "system_mail_location: bad value \"mbox:~/m:\": expected "
	    "maildir:PATH[:INDEX=DIR] or mbox:PATH[:INBOX=FILE][:INDEX=DIR]" },
};

static void
test_types(void)
{
	const struct type_case *c;
	size_t i;

	for (i = 0; i < sizeof(type_cases) / sizeof(type_cases[0]); i++) {
		c = &type_cases[i];
		if (c->error == NULL) {
			if (!ok(load(c->text) == 0, "good: %s", c->text))
				diag("error: %s", load_err);
		} else
			check_error(c->text, c->error, c->text);
	}
}

static void
test_typed(void)
{
	char **list;
	size_t n;


	ok(load("message_size_limit = 9223372036854775807\n"
	    "deliver_lock_attempts = 7\nsystem_users = TRUE\n"
	    "mail_fsync = false\ndeliver_lock_delay = 2m\n"
	    "stale_lock_time = 1w\n") == 0, "typed values load");
	is_int(conf_int("message_size_limit"), LLONG_MAX, "SIZE at LLONG_MAX");
	is_int(conf_int("deliver_lock_attempts"), 7, "INT");
	ok(conf_bool("system_users"), "BOOL TRUE");
	ok(!conf_bool("mail_fsync"), "BOOL false");
	is_int(conf_time("deliver_lock_delay"), 120, "TIME 2m = 120s");
	is_int(conf_time("stale_lock_time"), 604800, "TIME 1w");
	ok(load("deliver_lock_delay = 5\nstale_lock_time = 1h\n") == 0 &&
	    conf_time("deliver_lock_delay") == 5 &&
	    conf_time("stale_lock_time") == 3600, "TIME default unit, h");
	ok(load("stale_lock_time = 2d\n") == 0 &&
	    conf_time("stale_lock_time") == 172800, "TIME d");

	/* Checked after expansion; the expanded value is quoted. */
	check_error("x = 10M\nmessage_size_limit = $x\n",
	    "t.cf:2: message_size_limit: bad value \"10M\": expected a "
	    "number of bytes", "checked after expansion");
	check_value("x = 100\nmessage_size_limit = ${x}00\n",
	    "message_size_limit", "10000", "number built by expansion");
	is_int(conf_int("message_size_limit"), 10000, "its value");

	/* Several bad values: the earliest line is reported. */
	check_error("message_size_limit = x\nsystem_users = maybe\n",
	    "t.cf:1: message_size_limit: bad value \"x\": expected a number "
	    "of bytes", "earliest of two (table order)");
	check_error("system_users = maybe\nmessage_size_limit = x\n",
	    "t.cf:1: system_users: bad value \"maybe\": expected yes or no",
	    "earliest of two (reverse table order)");

	/* A long value is cut in the message. */
	{
		char *v = repeat('9', 300), *text, want[600];

		v[0] = 'x';
		text = malloc(400);
		snprintf(text, 400, "message_size_limit = %s\n", v);
		v[200] = '\0';
		snprintf(want, sizeof(want), "t.cf:1: message_size_limit: bad "
		    "value \"%s...\": expected a number of bytes", v);
		check_error(text, want, "long value cut at 200 bytes");
		free(text);
		free(v);
	}

	/* Lists. */
	ok(load("mydestination = , a,,b \t c ,\n") == 0, "list loads");
	list = conf_list("mydestination", &n);
	is_int(n, 3, "list: three items");
	ok(list[0] != NULL && strcmp(list[0], "a") == 0 &&
	    strcmp(list[1], "b") == 0 && strcmp(list[2], "c") == 0 &&
	    list[3] == NULL, "list: items and NULL");
	conf_list_free(&list);
	ok(list == NULL, "conf_list_free clears the pointer");
	conf_list_free(&list);
	ok(load("mydestination =\n") == 0, "empty list loads");
	list = conf_list("mydestination", NULL);
	ok(list[0] == NULL, "empty list: no items, count_r may be NULL");
	conf_list_free(&list);
	ok(load("mydestination = x\n") == 0, "one-byte list loads");
	list = conf_list("mydestination", &n);
	ok(n == 1 && strcmp(list[0], "x") == 0 && list[1] == NULL,
	    "one item");
	conf_list_free(&list);
}

/* ---- Unknown names and read-only ---- */

static void
test_unknown(void)
{
	is_int(load("foo = bar\nmyorigin = $foo\n"), 0,
	    "unknown name does not fail");
	is_string(load_log, "loft: warning: t.cf:1: unknown parameter "
	    "\"foo\"\n", "unknown name is a warning naming file and line");
	is_string(conf_str("myorigin"), "bar", "and is kept for expansion");
	is_int(load("foo = 1\n\nfoo = 2\nmyorigin = $foo\n"), 0,
	    "unknown name twice");
	is_string(load_log, "loft: warning: t.cf:1: unknown parameter "
	    "\"foo\"\nloft: warning: t.cf:3: unknown parameter \"foo\"\n",
	    "one warning per line");
	is_string(conf_str("myorigin"), "2", "later one wins");
	is_int(load("config_directory = /elsewhere\n"), 0,
	    "setting config_directory does not fail");
	is_string(load_log, "loft: warning: t.cf:1: config_directory is "
	    "read-only (it is the directory of this file); ignored\n",
	    "but is a warning");
	ok(strcmp(conf_str("config_directory"), "/elsewhere") != 0,
	    "and is ignored");
	is_int(load("foo = bar\nmessage_size_limit = x\n"), -1,
	    "warnings, then an error");
	ok(strstr(load_log, "unknown parameter \"foo\"") != NULL,
	    "the warning was still logged");
}

/* ---- Limits ---- */

/* line_case: a file whose line 2 is prefix + filler, exactly len bytes. */
static char *
line_case(const char *prefix, size_t len, const char *before)
{
	struct buf b;
	char *fill = repeat('x', len - strlen(prefix));

	buf_init(&b, 4 * 1024 * 1024);
	buf_printf(&b, "%s\n%s%s\nmyorigin = after\n", before, prefix, fill);
	free(fill);
	return (char *)buf_steal(&b, NULL);
}

static void
test_line_limit(void)
{
	static const struct {
		const char *what, *prefix, *before;
	} pos[] = {
		{ "value line", "syslog_name = ", "# first" },
		{ "comment line", "# ", "# first" },
		{ "continuation line", "  ", "syslog_name = a" },
		{ "user-defined line", "foo = ", "# first" },
	};
	char want[256], *text;
	size_t i;

	for (i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
		text = line_case(pos[i].prefix, CONF_LINE_MAX, pos[i].before);
		if (!ok(load(text) == 0, "%s of CONF_LINE_MAX bytes loads",
		    pos[i].what))
			diag("%s", load_err);
		is_string(conf_str("myorigin"), "after",
		    "%s: the next line is read", pos[i].what);
		free(text);
		text = line_case(pos[i].prefix, CONF_LINE_MAX + 1,
		    pos[i].before);
		snprintf(want, sizeof(want),
		    "t.cf:2: line longer than %d bytes", CONF_LINE_MAX);
		check_error(text, want, pos[i].what);
		free(text);
	}
	text = line_case("syslog_name = ", CONF_LINE_MAX, "# first");
	load(text);
	is_int(strlen(conf_str("syslog_name")), CONF_LINE_MAX - 14,
	    "the long value is whole");
	free(text);
	/* The limit is on physical lines: continued, the value is longer. */
	{
		struct buf b;
		char *fill = repeat('y', 60000);

		buf_init(&b, 1 << 20);
		buf_printf(&b, "syslog_name = %s\n  %s\n", fill, fill);
		ok(load(buf_cstr(&b)) == 0 &&
		    strlen(conf_str("syslog_name")) == 120001,
		    "logical line longer than CONF_LINE_MAX");
		buf_free(&b);
		free(fill);
	}
}

/* file_case: a file of exactly len bytes that sets myorigin. */
static char *
file_case(size_t len)
{
	char *text = repeat('#', len);
	size_t i;

	memcpy(text, "myorigin = big\n", 15);
	for (i = 1000; i < len; i += 1000)
		text[i] = '\n';
	text[len - 1] = '\n';
	return text;
}

static void
test_file_limit(const char *tmpdir)
{
	char path[PATH_MAX], want[PATH_MAX + 64], *text;
	const char *err;

	text = file_case(CONF_FILE_MAX);
	ok(load_n("t.cf", text, CONF_FILE_MAX) == 0 &&
	    strcmp(conf_str("myorigin"), "big") == 0,
	    "buffer of CONF_FILE_MAX bytes loads");
	free(text);
	text = file_case(CONF_FILE_MAX + 1);
	is_int(load_n("t.cf", text, CONF_FILE_MAX + 1), -1,
	    "buffer of CONF_FILE_MAX + 1 bytes fails");
	is_string(load_err, "t.cf: file larger than 1048576 bytes",
	    "its message");
	free(text);

	snprintf(path, sizeof(path), "%s/big.conf", tmpdir);
	text = file_case(CONF_FILE_MAX);
	write_text(path, text, CONF_FILE_MAX);
	free(text);
	ok(conf_load(path, &err) == 0 &&
	    strcmp(conf_str("myorigin"), "big") == 0,
	    "file of CONF_FILE_MAX bytes loads");
	text = file_case(CONF_FILE_MAX + 1);
	write_text(path, text, CONF_FILE_MAX + 1);
	free(text);
	is_int(conf_load(path, &err), -1,
	    "file of CONF_FILE_MAX + 1 bytes fails");
	snprintf(want, sizeof(want), "%s: file larger than 1048576 bytes",
	    path);
	is_string(err, want, "its message");
	unlink(path);
}

/* ---- Files and dynamic defaults ---- */

static void
test_files(const char *tmpdir)
{
	char path[PATH_MAX], want[PATH_MAX + 64], cwd[PATH_MAX], *real;
	const char *err;

	real = realpath(tmpdir, NULL);
	snprintf(path, sizeof(path), "%s/loft.conf", tmpdir);
	write_text(path, "myorigin = $config_directory\n", 29);
	cap_begin();
	ok(conf_load(path, &err) == 0, "conf_load of a file");
	cap_end();
	is_string(conf_file(), path, "conf_file names it");
	is_string(conf_str("config_directory"), real,
	    "config_directory is its directory");
	is_string(conf_str("myorigin"), real, "and expands");
	snprintf(want, sizeof(want), "%s/users", real);
	is_string(conf_str("user_database"), want,
	    "user_database default follows it");

	if (getcwd(cwd, sizeof(cwd)) == NULL || chdir(tmpdir) < 0)
		bail("chdir: %s", strerror(errno));
	ok(conf_load("loft.conf", &err) == 0, "conf_load of a relative path");
	is_string(conf_str("config_directory"), real,
	    "config_directory is made absolute");
	ok(conf_load("./loft.conf", &err) == 0 &&
	    strcmp(conf_str("config_directory"), real) == 0,
	    "and ./ is resolved");
	if (chdir(cwd) < 0)
		bail("chdir: %s", strerror(errno));

	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	is_int(conf_load(path, &err), -1, "a missing file fails");
	snprintf(want, sizeof(want), "cannot open %s: No such file or "
	    "directory", path);
	is_string(err, want, "naming it");
	is_int(conf_load(tmpdir, &err), -1, "a directory fails");
	snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
	is_string(err, want, "naming it");
	is_string(conf_str("config_directory"), real,
	    "a failed load keeps the configuration in use");
	snprintf(path, sizeof(path), "%s/loft.conf", tmpdir);
	unlink(path);
	free(real);

	is_int(load_n("/srv/loft/loft.conf", "", 0), 0, "absolute buffer name");
	is_string(conf_str("config_directory"), "/srv/loft",
	    "gives config_directory");
	is_string(conf_file(), "/srv/loft/loft.conf", "and conf_file");
	load_n("/loft.conf", "", 0);
	is_string(conf_str("config_directory"), "/", "file in /");
	load_n("x.cf", "", 0);
	snprintf(want, sizeof(want), "%s", conf_default_path());
	*strrchr(want, '/') = '\0';
	is_string(conf_str("config_directory"), want,
	    "a relative buffer name gives the default directory");
#ifdef LOFT_SYSCONFDIR
	is_string(conf_default_path(), LOFT_SYSCONFDIR "/loft/loft.conf",
	    "conf_default_path");
#else
	is_string(conf_default_path(), "/etc/loft/loft.conf",
	    "conf_default_path");
#endif
}

static void
test_dynamic(void)
{
	const char *host = test_hostname(), *dot = strchr(host, '.');
	char want[512];
	const char *def;

	conf_reset();
	is_string(conf_str("myhostname"), host, "myhostname: gethostname()");
	is_string(conf_str("mydomain"), dot != NULL && dot[1] != '\0' ?
	    dot + 1 : "localdomain", "mydomain: from myhostname");
	is_string(conf_str("myorigin"), host, "myorigin: $myhostname");
	ok(conf_file() == NULL, "nothing loaded: conf_file is NULL");
	ok(conf_param_info("myhostname", &def, NULL) == 0 &&
	    strcmp(def, host) == 0, "conf_param_info: dynamic default");

	check_value("myhostname = mail.example.org\n", "mydomain",
	    "example.org", "mydomain follows a set myhostname");
	snprintf(want, sizeof(want), "%s, %s, %s", "mail.example.org",
	    "localhost.example.org", "localhost");
	is_string(conf_str("mydestination"), want, "mydestination default");
	is_string(conf_str("myorigin"), "mail.example.org", "myorigin");
	check_value("myhostname = host\n", "mydomain", "localdomain",
	    "one label: localdomain");
	check_value("myhostname = host.\n", "mydomain", "localdomain",
	    "nothing after the dot: localdomain");
	check_value("myhostname = a.b.c\nmydomain = example.com\n",
	    "mydomain", "example.com", "mydomain set wins");
	check_value("myhostname = mail.$mydomain\nmydomain = example.com\n",
	    "myhostname", "mail.example.com", "myhostname from mydomain");
	check_error("myhostname = mail.$mydomain\n",
	    "t.cf:1: myhostname: cannot expand \"mail.$mydomain\": expansion "
	    "loop: $myhostname refers to itself",
	    "myhostname from the default mydomain is a loop");
	/* conf_str's pointer dies with the next load: copy it. */
	strlcpy(want, conf_str("config_directory"), sizeof(want));
	check_value("config_directory_copy = $config_directory\n"
	    "myorigin = $config_directory_copy\n", "myorigin", want,
	    "dynamic defaults expand");
}

/* ---- conf_set ---- */

static void
test_set(void)
{
	const char *err;
	char *v;

	conf_reset();
	is_int(conf_set("message_size_limit", "5000", &err), 0,
	    "conf_set a good value");
	is_int(conf_int("message_size_limit"), 5000, "it applies");
	is_int(conf_set("message_size_limit", "5k", &err), -1,
	    "conf_set a bad value");
	is_string(err, "message_size_limit: bad value \"5k\": expected a "
	    "number of bytes", "its message");
	is_int(conf_int("message_size_limit"), 5000, "nothing changed");

	is_int(conf_set("x", "10M", &err), 0, "conf_set a user-defined name");
	is_int(conf_set("message_size_limit", "$x", &err), -1,
	    "a reference to a bad value fails");
	is_int(conf_set("x", "42", &err), 0, "fix it");
	is_int(conf_set("message_size_limit", "$x", &err), 0,
	    "the reference now works");
	is_int(conf_int("message_size_limit"), 42, "through the name");
	is_int(conf_set("x", "bad", &err), -1,
	    "breaking a referenced name fails");
	is_string(err, "message_size_limit: bad value \"bad\": expected a "
	    "number of bytes", "naming the parameter that broke");
	is_int(conf_int("message_size_limit"), 42, "and is rolled back");

	is_int(conf_set("config_directory", "/x", &err), -1,
	    "config_directory cannot be set");
	is_string(err, "config_directory is read-only", "its message");
	is_int(conf_set("bad-name", "x", &err), -1, "bad name");
	is_string(err, "bad parameter name \"bad-name\": expected letters, "
	    "digits and \"_\"", "its message");
	is_int(conf_set("", "x", &err), -1, "empty name");
	is_int(conf_set("myorigin", "a\nb", &err), -1, "two lines");
	is_string(err, "myorigin: value is more than one line", "message");

	v = repeat('v', CONF_LINE_MAX);
	is_int(conf_set("syslog_name", v, &err), 0,
	    "conf_set value of CONF_LINE_MAX bytes");
	free(v);
	v = repeat('v', CONF_LINE_MAX + 1);
	is_int(conf_set("syslog_name", v, &err), -1,
	    "conf_set value of CONF_LINE_MAX + 1 bytes");
	is_string(err, "syslog_name: value longer than 65536 bytes",
	    "its message");
	free(v);

	is_int(conf_set("myhostname", "h.example", &err), 0, "set myhostname");
	is_string(conf_str("myorigin"), "h.example",
	    "cached expansions are refreshed");
	is_string(conf_str("mydomain"), "example", "mydomain too");
	is_int(conf_set("myhostname", "h2.example", &err), 0, "again");
	is_string(conf_str("myorigin"), "h2.example", "refreshed again");

	ok(load("myorigin = file\n") == 0, "conf_load after conf_set");
	is_string(conf_str("myorigin"), "file", "the file applies");
	is_string(conf_str("myhostname"), test_hostname(),
	    "conf_set overrides are gone");
	is_int(conf_set("myorigin", "override", &err), 0, "override a file");
	is_string(conf_str("myorigin"), "override", "the override wins");
	conf_reset();
	is_string(conf_str("myorigin"), test_hostname(), "conf_reset");
	ok(conf_file() == NULL, "conf_reset forgets the file");
}

/* ---- conf_foreach ---- */

struct seen {
	struct buf text;
	size_t count;
	bool sorted;
	char last[128];
};

static void
collect(const char *name, const char *value, void *ctx)
{
	struct seen *s = ctx;

	if (strcmp(s->last, name) >= 0)
		s->sorted = false;
	strlcpy(s->last, name, sizeof(s->last));
	buf_printf(&s->text, "%s=%s;", name, value);
	s->count++;
}

static void
seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	buf_init(&s->text, 1 << 20);
	s->sorted = true;
}

static void
test_foreach(void)
{
	struct seen s;
	const char *err;
	size_t i;

	ok(load("zz = 1\nmyorigin = $myhostname.x\naa = 2\n"
	    "myhostname = h.example\n") == 0, "load for conf_foreach");
	conf_set("syslog_name", "over", &err);
	seen_init(&s);
	conf_foreach(true, false, collect, &s);
	is_string(buf_cstr(&s.text), "aa=2;myhostname=h.example;"
	    "myorigin=$myhostname.x;syslog_name=over;zz=1;",
	    "nondefault_only, raw: set in the file or by conf_set, sorted");
	buf_free(&s.text);
	seen_init(&s);
	conf_foreach(true, true, collect, &s);
	is_string(buf_cstr(&s.text), "aa=2;myhostname=h.example;"
	    "myorigin=h.example.x;syslog_name=over;zz=1;",
	    "nondefault_only, expanded");
	buf_free(&s.text);

	seen_init(&s);
	conf_foreach(false, false, collect, &s);
	is_int(s.count, conf_params_count + 2,
	    "all: every table parameter and the user-defined ones");
	ok(s.sorted, "sorted by name, each once");
	ok(strstr(buf_cstr(&s.text), ";user_database=$config_directory/"
	    "users;") != NULL, "defaults raw");
	ok(strstr(buf_cstr(&s.text), ";mydomain=example;") != NULL,
	    "dynamic default as computed");
	buf_free(&s.text);
	seen_init(&s);
	conf_foreach(false, true, collect, &s);
	ok(strstr(buf_cstr(&s.text), ";mydestination=h.example, "
	    "localhost.example, localhost;") != NULL, "defaults expanded");
	buf_free(&s.text);

	/* A loop in names nothing uses: given raw, with a warning. */
	ok(load("a = $b\nb = $a\n") == 0, "unused loop loads");
	seen_init(&s);
	cap_begin();
	conf_foreach(true, true, collect, &s);
	is_string(cap_end(), "loft: warning: a: cannot expand \"$b\": "
	    "expansion loop: $a refers to itself\nloft: warning: b: cannot "
	    "expand \"$a\": expansion loop: $b refers to itself\n",
	    "warned when expanded");
	is_string(buf_cstr(&s.text), "a=$b;b=$a;", "and given raw");
	buf_free(&s.text);

	for (i = 0; i < conf_params_count; i++) {
		const char *def, *desc;

		if (conf_param_info(conf_params[i].name, &def, &desc) < 0 ||
		    def == NULL || desc == NULL || desc[0] == '\0' ||
		    strchr(desc, '\n') != NULL)
			break;
	}
	is_int(i, conf_params_count,
	    "conf_param_info: a default and a one-line description each");
	is_int(conf_param_info("a", NULL, NULL), -1,
	    "conf_param_info: user-defined is not in the table");
	ok(conf_param_info("message_size_limit", &err, NULL) == 0 &&
	    strcmp(err, "10240000") == 0, "conf_param_info: a default");
}

/* ---- Lookups that are programming errors ---- */

static void
expect_panic(void (*fn)(void), const char *want, const char *what)
{
	char path[] = "/tmp/loft-conf-panic-XXXXXX", got[1024];
	int fd = mkstemp(path), status;
	ssize_t n;
	pid_t pid;

	if (fd < 0)
		bail("mkstemp: %s", strerror(errno));
	fflush(stdout);
	if ((pid = fork()) == 0) {
		dup2(fd, STDERR_FILENO);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "%s: aborts", what);
	n = pread(fd, got, sizeof(got) - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	is_string(got, want, "%s: message", what);
	close(fd);
	unlink(path);
}

static void
panic_unknown(void)
{
	conf_str("no_such_parameter");
}

static void
panic_int(void)
{
	conf_int("myhostname");
}

static void
panic_bool(void)
{
	conf_bool("message_size_limit");
}

static void
panic_time(void)
{
	conf_time("deliver_lock_attempts");
}

static void
panic_list(void)
{
	conf_list("myorigin", NULL);
}

static void
panic_user_defined(void)
{
	const char *err;

	conf_set("mine", "x", &err);
	conf_str("mine");
}

static void
test_panics(void)
{
	expect_panic(panic_unknown, "loft: panic: conf_str: no_such_parameter "
	    "is not a configuration parameter\n", "unknown name");
	expect_panic(panic_int, "loft: panic: conf_int: myhostname is a "
	    "parameter of another type\n", "conf_int on a STRING");
	expect_panic(panic_bool, "loft: panic: conf_bool: message_size_limit "
	    "is a parameter of another type\n", "conf_bool on a SIZE");
	expect_panic(panic_time, "loft: panic: conf_time: "
	    "deliver_lock_attempts is a parameter of another type\n",
	    "conf_time on an INT");
	expect_panic(panic_list, "loft: panic: conf_list: myorigin is a "
	    "parameter of another type\n", "conf_list on a STRING");
	expect_panic(panic_user_defined, "loft: panic: conf_str: mine is not "
	    "a configuration parameter\n", "user-defined name");
}

/* ---- Golden files: t/data/conf/NAME.cf against NAME.ref ---- */

struct golden {
	struct buf out;
};

static void
golden_set(const char *name, const char *value, void *ctx)
{
	struct buf *out = ctx;

	buf_printf(out, "set: %s =%s%s\n", name, *value ? " " : "", value);
}

static void
golden_expanded(const char *name, const char *value, void *ctx)
{
	struct buf *out = ctx;

	buf_printf(out, "expanded: %s =%s%s\n", name, *value ? " " : "",
	    value);
}

/* golden_query: "#? TYPE name" lines ask for a typed lookup. */
static void
golden_query(struct buf *out, const char *type, const char *name)
{
	char **list;
	size_t i;

	if (strcmp(type, "str") == 0)
		buf_printf(out, "str %s = \"%s\"\n", name, conf_str(name));
	else if (strcmp(type, "int") == 0)
		buf_printf(out, "int %s = %lld\n", name, conf_int(name));
	else if (strcmp(type, "time") == 0)
		buf_printf(out, "time %s = %lld\n", name, conf_time(name));
	else if (strcmp(type, "bool") == 0)
		buf_printf(out, "bool %s = %s\n", name,
		    conf_bool(name) ? "true" : "false");
	else if (strcmp(type, "list") == 0) {
		list = conf_list(name, NULL);
		buf_printf(out, "list %s =", name);
		for (i = 0; list[i] != NULL; i++)
			buf_printf(out, " [%s]", list[i]);
		buf_printf(out, "\n");
		conf_list_free(&list);
	} else
		bail("bad query type %s", type);
}

static void
golden_run(const char *file, const char *text, size_t len, struct buf *out)
{
	const char *p, *line;
	char type[16], name[128];

	conf_reset();
	if (load_n(file, text, len) < 0)
		buf_printf(out, "load: %s\n", load_err);
	else
		buf_printf(out, "load: ok\n");
	for (line = load_log; *line != '\0'; line = p + 1) {
		if ((p = strchr(line, '\n')) == NULL)
			break;
		if (strncmp(line, "loft: ", 6) == 0)
			line += 6;
		buf_printf(out, "log: %.*s\n", (int)(p - line), line);
	}
	if (load_err[0] != '\0')
		return;
	conf_foreach(true, false, golden_set, out);
	conf_foreach(true, true, golden_expanded, out);
	for (line = text; line != NULL && *line != '\0';
	    line = (p = strchr(line, '\n')) != NULL ? p + 1 : NULL)
		if (sscanf(line, "#? %15s %127s", type, name) == 2)
			golden_query(out, type, name);
}

static int
golden_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_golden(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 256], *names[256], *text, *ref;
	bool regen = getenv("LOFT_CONF_REGEN") != NULL;
	struct dirent *de;
	size_t n = 0, i, len;
	struct buf out;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/t/data/conf", top);
	if ((d = opendir(dir)) == NULL)
		bail("%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL && n < 256) {
		len = strlen(de->d_name);
		if (len > 3 && strcmp(de->d_name + len - 3, ".cf") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), golden_cmp);
	ok(n >= 10, "golden files found (%zu)", n);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if ((text = read_text(path, &len)) == NULL)
			bail("%s: %s", path, strerror(errno));
		buf_init(&out, 1 << 20);
		golden_run(names[i], text, len, &out);
		strlcpy(path + strlen(path) - 3, ".ref", 8);
		if (regen)
			write_text(path, buf_cstr(&out), out.len);
		ref = read_text(path, NULL);
		if (!ok(ref != NULL && strcmp(buf_cstr(&out), ref) == 0,
		    "golden %s", names[i]))
			diag("output:\n%s", buf_cstr(&out));
		free(ref);
		free(text);
		buf_free(&out);
		free(names[i]);
	}
}

/* ---- The shipped example and man page ---- */

/* uncomment: the "#name = value" lines of the example for table
 * parameters, as a configuration; *count_r counts distinct names. */
static char *
uncomment(const char *text, size_t *count_r)
{
	struct buf b;
	const char *line, *nl;
	bool seen[256] = { false };
	size_t i, len;

	buf_init(&b, 1 << 20);
	*count_r = 0;
	for (line = text; *line != '\0'; line = nl + 1) {
		if ((nl = strchr(line, '\n')) == NULL)
			break;
		for (i = 0; i < conf_params_count; i++) {
			len = strlen(conf_params[i].name);
			if (line[0] == '#' &&
			    strncmp(line + 1, conf_params[i].name, len) == 0 &&
			    strncmp(line + 1 + len, " =", 2) == 0) {
				buf_append(&b, line + 1, (size_t)(nl - line));
				if (!seen[i])
					(*count_r)++;
				seen[i] = true;
			}
		}
	}
	return (char *)buf_steal(&b, NULL);
}

static void
test_shipped(void)
{
	char path[PATH_MAX], want[256], *text, *set;
	const char *missing = NULL;
	size_t i, count, len;

	snprintf(path, sizeof(path), "%s/conf/loft.conf", top);
	if ((text = read_text(path, &len)) == NULL) {
		ok(0, "conf/loft.conf exists");
		return;
	}
	ok(load_n("loft.conf", text, len) == 0, "conf/loft.conf loads");
	is_string(load_log, "", "without warnings");
	{
		struct seen s;

		seen_init(&s);
		conf_foreach(true, false, collect, &s);
		is_int(s.count, 0, "and sets nothing: it is all comments");
		buf_free(&s.text);
	}
	set = uncomment(text, &count);
	is_int(count, conf_params_count - 1, "conf/loft.conf has an example "
	    "line for every settable parameter");
	if (!ok(load(set) == 0, "the examples, uncommented, load"))
		diag("%s", load_err);
	is_string(load_log, "", "without warnings");
	free(set);
	free(text);

	snprintf(path, sizeof(path), "%s/doc/loft.conf.5", top);
	if ((text = read_text(path, NULL)) == NULL) {
		ok(0, "doc/loft.conf.5 exists");
		return;
	}
	for (i = 0; i < conf_params_count; i++) {
		snprintf(want, sizeof(want), "\n.B %s\n", conf_params[i].name);
		if (strstr(text, want) == NULL)
			missing = conf_params[i].name;
	}
	is_string(missing, NULL, "doc/loft.conf.5 describes every parameter");
	free(text);
}

int
main(void)
{
	char tmpdir[] = "/tmp/loft-conf-XXXXXX";

	/* Expansion is memoised; if that breaks, fail instead of hanging. */
	alarm(60);
	if ((top = getenv("LOFT_TOP")) == NULL)
		top = ".";
	if (mkdtemp(tmpdir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	test_syntax();
	test_prefixes();
	test_expand();
	test_expand_errors();
	test_expand_limits();
	test_types();
	test_typed();
	test_unknown();
	test_line_limit();
	test_file_limit(tmpdir);
	test_files(tmpdir);
	test_dynamic();
	test_set();
	test_foreach();
	test_panics();
	test_golden();
	test_shipped();
	rmdir(tmpdir);
	conf_reset();
	return done_testing();
}
