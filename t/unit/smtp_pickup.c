/*
 * Unit tests for smtp/smtp_pickup.c, on real directories under /tmp:
 * - content limits (size, line length) at N and N+1, counted with CRLF;
 * - the maildrop file: a round trip, every prefix of a good file refused
 *   (truncated), a dozen damaged forms, recipients and address length at
 *   N and N+1;
 * - address qualification with myorigin;
 * - the queue content byte for byte: Received:, the fields added when
 *   missing and only then, CRLF line ends, a body without a separator;
 * - prepare: modes of the queue, maildrop, public and the FIFO;
 * - runs: a dropped file becomes a queued message (envelope, content)
 *   and leaves the maildrop; a symbolic link, a file with two links, a
 *   FIFO and a strange name are removed unread; a truncated file and one
 *   over the limits go to corrupt/; young temporary files stay, old ones
 *   go; max bounds a run; the wake-up FIFO.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "smtp/smtp_pickup.h"
#include "xmalloc.h"
#include "tap.h"

/* pathf: snprintf into a path buffer; a truncated path ends the test. */
#define pathf(buf, size, ...) do {					\
	if ((size_t)snprintf((buf), (size), __VA_ARGS__) >= (size))	\
		bail("path too long");					\
} while (0)

static char base[256];
static char last_id[SMTP_QUEUE_ID_MAX];
static unsigned int queued_count;

static const struct smtp_pickup_limits lim3 = {
	.size_max = 1000, .rcpt_max = 3, .line_max = 100
};

static void
on_queued(const char *id, void *ctx)
{
	(void)ctx;
	strlcpy(last_id, id, sizeof(last_id));
	queued_count++;
}

/* make_file: a maildrop file text into out (fresh). */
static void
make_file(struct buf *out, const char *sender, const char *fullname,
    unsigned int n, const char *content)
{
	char *rcpts[8] = { "bob@example.org", "carol", "dave", "erin", "f",
	    "g", "h", "i" };
	const char *error;

	buf_init(out, 1 << 20);
	if (smtp_pickup_format(out, sender, fullname, rcpts, n,
	    (const unsigned char *)content, strlen(content), &error) < 0)
		bail("format: %s", error);
}

static int
parse_text(const char *text, const struct smtp_pickup_limits *lim,
    const char **error_r)
{
	struct smtp_pickup_file f;
	int r;

	r = smtp_pickup_parse((const unsigned char *)text, strlen(text), lim,
	    &f, error_r);
	if (r == 0)
		smtp_pickup_file_clear(&f);
	return r;
}

static void
test_content_limits(void)
{
	struct smtp_pickup_limits lim = { .size_max = 10, .rcpt_max = 1,
	    .line_max = 6 };
	const char *error;
	uint64_t size;

	/* "abcd\n" is 6 bytes as "abcd\r\n": the line limit exactly. */
	is_int(smtp_pickup_content_check((const unsigned char *)"abcd\n", 5,
	    &lim, &size, &error), 0, "line at line_max (LF counted as CRLF)");
	is_int(size, 6, "size counts the CR added");
	is_int(smtp_pickup_content_check((const unsigned char *)"abcde\n", 6,
	    &lim, &size, &error), -1, "line at line_max + 1 refused");
	is_int(smtp_pickup_content_check((const unsigned char *)"abcd\r\n", 6,
	    &lim, &size, &error), 0, "CRLF line at line_max");
	is_int(smtp_pickup_content_check((const unsigned char *)"abcd", 4,
	    &lim, &size, &error), 0, "last line without an ending: +2");
	is_int(size, 6, "its size with the CRLF added");
	is_int(smtp_pickup_content_check((const unsigned char *)"abcde", 5,
	    &lim, &size, &error), -1, "...and one byte more refused");
	lim.line_max = 100;
	/* 10 bytes: "abc\r\n" twice. */
	is_int(smtp_pickup_content_check((const unsigned char *)"abc\nabc\n",
	    8, &lim, &size, &error), 0, "size at size_max");
	is_int(size, 10, "size 10");
	is_int(smtp_pickup_content_check((const unsigned char *)"abc\nabcd\n",
	    9, &lim, &size, &error), -1, "size at size_max + 1 refused");
	ok(strstr(error, "size") != NULL, "the error names the size (%s)",
	    error);
	is_int(smtp_pickup_content_check((const unsigned char *)"", 0,
	    &lim, &size, &error), 0, "empty content");
	is_int(size, 0, "empty: size 0");
}

static void
test_file_roundtrip(void)
{
	struct smtp_pickup_file f;
	struct buf b;
	const char *error;
	size_t fails = 0;

	make_file(&b, "alice", "Alice Example", 2, "Subject: hi\n\nbody\n");
	is_string((const char *)b.data,
	    "loft-maildrop 1\nsender <alice>\nfullname Alice Example\n"
	    "rcpt <bob@example.org>\nrcpt <carol>\ncontent 18\n"
	    "Subject: hi\n\nbody\nend\n", "the file's form");
	is_int(smtp_pickup_parse(b.data, b.len, &lim3, &f, &error), 0,
	    "parses");
	is_string(f.sender, "alice", "sender");
	is_string(f.fullname, "Alice Example", "full name");
	is_int(f.rcpt_count, 2, "two recipients");
	is_string(f.rcpts[1], "carol", "second recipient");
	is_mem(f.content, f.content_len, "Subject: hi\n\nbody\n", 18,
	    "content");
	smtp_pickup_file_clear(&f);
	/* Fed a byte at a time: every proper prefix is a truncated file. */
	for (size_t n = 0; n < b.len; n++) {
		if (smtp_pickup_parse(b.data, n, &lim3, &f, &error) == 0) {
			smtp_pickup_file_clear(&f);
			diag("prefix of %zu bytes parsed", n);
		} else
			fails++;
	}
	is_int(fails, b.len, "every prefix of the file refused");
	buf_free(&b);
	make_file(&b, "", "", 1, "");
	is_int(smtp_pickup_parse(b.data, b.len, &lim3, &f, &error), 0,
	    "null sender, no full name, empty content");
	is_string(f.sender, "", "null sender");
	is_int(f.content_len, 0, "no content");
	smtp_pickup_file_clear(&f);
	buf_free(&b);
}

static void
test_file_damaged(void)
{
	static const struct {
		const char *text, *name;
	} bad[] = {
		{ "loft-maildrop 2\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 0\nend\n", "other version" },
		{ "loft-maildrop 1\nsender a\nfullname \nrcpt <b>\n"
		  "content 0\nend\n", "sender without brackets" },
		{ "loft-maildrop 1\nsender <a>\nrcpt <b>\ncontent 0\nend\n",
		  "fullname missing" },
		{ "loft-maildrop 1\nsender <a>\nfullname\nrcpt <b>\n"
		  "content 0\nend\n", "fullname without its space" },
		{ "loft-maildrop 1\nsender <a>\nfullname \ncontent 0\nend\n",
		  "no recipient" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <>\n"
		  "content 0\nend\n", "empty recipient" },
		{ "loft-maildrop 1\nsender <a\tb>\nfullname \nrcpt <b>\n"
		  "content 0\nend\n", "control byte in the sender" },
		{ "loft-maildrop 1\nsender <a>\nfullname x\ry\nrcpt <b>\n"
		  "content 0\nend\n", "CR in the full name" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 01\nx\nend\n", "leading zero" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content -1\nend\n", "negative length" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 99999999999999999999999\nend\n", "huge length" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 5\nab\nend\n", "length past the end" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 1\nab\nend\n", "length short of the end" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 0\nend\nx", "data after end" },
		{ "loft-maildrop 1\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 0\nend", "end without LF" },
		{ "loft-maildrop 1\nsender <a>\nsender <a>\nfullname \n"
		  "rcpt <b>\ncontent 0\nend\n", "sender twice" },
		{ "loft-maildrop 1\nfullname \nsender <a>\nrcpt <b>\n"
		  "content 0\nend\n", "fields out of order" },
		{ "loft-maildrop 1\r\nsender <a>\nfullname \nrcpt <b>\n"
		  "content 0\nend\n", "CRLF line" },
	};
	const char *error;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		is_int(parse_text(bad[i].text, &lim3, &error), -1,
		    "refused: %s", bad[i].name);
	}
	ok(strncmp(error, "line ", 5) == 0, "errors name the line (%s)",
	    error);
}

static void
test_file_limits(void)
{
	char addr[SMTP_QUEUE_ADDR_MAX + 2], *text;
	struct buf b;
	const char *error;

	make_file(&b, "a", "", 3, "x\n");
	is_int(parse_text((const char *)b.data, &lim3, &error), 0,
	    "recipients at rcpt_max");
	buf_free(&b);
	make_file(&b, "a", "", 4, "x\n");
	is_int(parse_text((const char *)b.data, &lim3, &error), -1,
	    "recipients at rcpt_max + 1 refused");
	ok(strstr(error, "more than 3") != NULL, "said so (%s)", error);
	buf_free(&b);
	memset(addr, 'a', sizeof(addr));
	addr[SMTP_QUEUE_ADDR_MAX] = '\0';
	text = xasprintf("loft-maildrop 1\nsender <%s>\nfullname \n"
	    "rcpt <%s>\ncontent 0\nend\n", addr, addr);
	is_int(parse_text(text, &lim3, &error), 0, "addresses at 256 bytes");
	free(text);
	addr[SMTP_QUEUE_ADDR_MAX] = 'a';
	addr[SMTP_QUEUE_ADDR_MAX + 1] = '\0';
	text = xasprintf("loft-maildrop 1\nsender <a>\nfullname \n"
	    "rcpt <%s>\ncontent 0\nend\n", addr);
	is_int(parse_text(text, &lim3, &error), -1, "recipient at 257 refused");
	free(text);
	text = xasprintf("loft-maildrop 1\nsender <%s>\nfullname \n"
	    "rcpt <b>\ncontent 0\nend\n", addr);
	is_int(parse_text(text, &lim3, &error), -1, "sender at 257 refused");
	free(text);
	/* Content limits hold in the parser too (1000 bytes). */
	text = xmalloc(2000);
	memset(text, 'x', 2000);
	for (size_t i = 98; i < 2000; i += 99)
		text[i] = '\n';		/* lines of 98 + LF: 100 with CRLF */
	text[999] = '\0';
	{
		char *file = xasprintf("loft-maildrop 1\nsender <a>\n"
		    "fullname \nrcpt <b>\ncontent %zu\n%send\n",
		    strlen(text), text);
		/* 999 bytes with 10 LF: 1009 counted, over 1000. */
		is_int(parse_text(file, &lim3, &error), -1,
		    "content over size_max refused by the parser");
		free(file);
	}
	text[990] = '\0';	/* 990 bytes, 10 LF: 1000 with CRLF */
	{
		char *file = xasprintf("loft-maildrop 1\nsender <a>\n"
		    "fullname \nrcpt <b>\ncontent %zu\n%send\n",
		    strlen(text), text);

		is_int(parse_text(file, &lim3, &error), 0,
		    "content at size_max parsed");
		free(file);
	}
	free(text);
}

static void
test_address(void)
{
	char out[SMTP_QUEUE_ADDR_MAX + 1];
	const char *error;

	is_int(smtp_pickup_address("alice", "origin.test", false, out,
	    sizeof(out), &error), 0, "unqualified address");
	is_string(out, "alice@origin.test", "gets @myorigin");
	is_int(smtp_pickup_address("Bob@EXAMPLE.Org", "origin.test", false,
	    out, sizeof(out), &error), 0, "qualified address");
	is_string(out, "Bob@example.org", "domain in lower case");
	is_int(smtp_pickup_address("", "origin.test", true, out, sizeof(out),
	    &error), 0, "null sender");
	is_string(out, "", "stays null");
	is_int(smtp_pickup_address("", "origin.test", false, out, sizeof(out),
	    &error), -1, "empty recipient refused");
	is_int(smtp_pickup_address("a..b", "origin.test", false, out,
	    sizeof(out), &error), -1, "bad local part refused");
	is_int(smtp_pickup_address("a b@x", "origin.test", false, out,
	    sizeof(out), &error), -1, "space refused");
}

static void
check_message(const char *content, const char *sender, const char *full,
    const char *want, const char *name)
{
	struct smtp_pickup_file f = { 0 };
	struct smtp_pickup_stamp st = { .hostname = "host.test",
	    .origin = "origin.test", .id = "0SZ7R2QW0B7X00ABC", .uid = 1000,
	    .login = "alice", .submitted = 0, .now = 0 };
	struct buf b;
	char *received;

	f.sender = (char *)sender;
	f.fullname = (char *)full;
	f.content = (const unsigned char *)content;
	f.content_len = strlen(content);
	buf_init(&b, 1 << 16);
	if (smtp_pickup_message(&f, &st, &b) < 0)
		bail("message");
	received = xasprintf("Received: by host.test (loft pickup, uid 1000)"
	    "\r\n\tid 0SZ7R2QW0B7X00ABC; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
	    "%s", want);
	is_mem(b.data, b.len, received, strlen(received), "%s", name);
	free(received);
	buf_free(&b);
}

#define ADDED_DATE	"Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
#define ADDED_ID	"Message-ID: <0SZ7R2QW0B7X00ABC@host.test>\r\n"

static void
test_message(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	check_message("Subject: hi\n\nline\n.dot\n", "alice@origin.test",
	    "Alice Example", "Subject: hi\r\nFrom: Alice Example "
	    "<alice@origin.test>\r\n" ADDED_DATE ADDED_ID "\r\nline\r\n"
	    ".dot\r\n", "missing fields added at the header's end, CRLF");
	check_message("From: x@y\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n"
	    "message-id: <m@y>\n\nbody", "alice@origin.test", "",
	    "From: x@y\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
	    "message-id: <m@y>\r\n\r\nbody\r\n",
	    "present fields (any case) kept, nothing added");
	check_message("Subject: folded\n two\nno colon here\nmore\n",
	    "alice@origin.test", "Doe, John",
	    "Subject: folded\r\n two\r\nFrom: \"Doe, John\" "
	    "<alice@origin.test>\r\n" ADDED_DATE ADDED_ID "\r\n"
	    "no colon here\r\nmore\r\n",
	    "a body without separator gets one; a phrase quoted");
	check_message("", "", "", "From: alice@origin.test\r\n" ADDED_DATE
	    ADDED_ID, "empty message, null sender: From: the login");
	check_message("To: b\n", "a@b.c", "Say \"Hi\"",
	    "To: b\r\nFrom: \"Say \\\"Hi\\\"\" <a@b.c>\r\n" ADDED_DATE ADDED_ID,
	    "header only; quotes escaped in the phrase");
	check_message("Body line with: colon?\n", "a@b.c", "",
	    "From: a@b.c\r\n" ADDED_DATE ADDED_ID "\r\nBody line with: "
	    "colon?\r\n", "a space in the name: not a field, the body");
	check_message("X-Note:x\n", "a@b.c", "",
	    "X-Note:x\r\nFrom: a@b.c\r\n" ADDED_DATE ADDED_ID,
	    "a field without a space after the colon is a field");
	check_message(" leading space\n", "a@b.c", "",
	    "From: a@b.c\r\n" ADDED_DATE ADDED_ID "\r\n leading space\r\n",
	    "a continuation line without a field starts the body");
}

static int
mode_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) < 0 ? -1 : (int)(st.st_mode & 07777);
}

static int
count_dir(const char *path)
{
	struct dirent *d;
	DIR *dp = opendir(path);
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((d = readdir(dp)) != NULL)
		if (d->d_name[0] != '.')
			n++;
	closedir(dp);
	return n;
}

static void
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		bail("write %s: %s", path, strerror(errno));
	close(fd);
}

static char *
read_file(const char *path, size_t *len_r)
{
	struct fsutil_map m;
	char *s;

	if (fsutil_map_path(path, &m) < 0)
		return NULL;
	s = xmalloc(m.len + 1);
	if (m.len > 0)
		memcpy(s, m.data, m.len);
	s[m.len] = '\0';
	*len_r = m.len;
	fsutil_unmap(&m);
	return s;
}

/* A final name sendmail would make, with a number of our choice. */
static void
final_name(char *out, size_t size, const char *md, unsigned int n)
{
	pathf(out, size, "%s/d%011u.AAAAAAAAAAAAAAAAAAAAAAAA%02u", md, n,
	    n % 100);
}

static void
test_prepare(const char *qdir)
{
	char path[PATH_MAX];
	const char *error;

	is_int(smtp_pickup_prepare(qdir, &error), 0, "prepare");
	is_int(mode_of(qdir), 0711, "queue directory 0711");
	pathf(path, sizeof(path), "%s/maildrop", qdir);
	is_int(mode_of(path), 01733, "maildrop 1733");
	pathf(path, sizeof(path), "%s/public", qdir);
	is_int(mode_of(path), 0711, "public 0711");
	pathf(path, sizeof(path), "%s/public/pickup", qdir);
	is_int(mode_of(path), 0622, "public/pickup 0622");
	chmod(path, 0666);
	is_int(smtp_pickup_prepare(qdir, &error), 0, "prepare again");
	is_int(mode_of(path), 0622, "the FIFO's mode set back");
}

static void
test_run_good(struct smtp_queue *q, const char *qdir, const char *md)
{
	char name[SMTP_PICKUP_NAME_MAX], path[PATH_MAX], *got;
	struct smtp_queue_env *env;
	const char *error;
	unsigned int picked;
	struct buf b;
	size_t len;

	make_file(&b, "alice", "", 2, "Subject: s\n\nhello\n");
	is_int(smtp_pickup_drop(md, b.data, b.len, name, &error), 0, "drop");
	buf_free(&b);
	pathf(path, sizeof(path), "%s/%s", md, name);
	is_int(mode_of(path), 0644, "dropped file 0644 (umask ignored)");
	is_int(smtp_pickup_run(q, md, 10, &picked, &error), 0, "run");
	is_int(picked, 1, "one picked");
	is_int(queued_count, 1, "the callback heard of it");
	is_int(count_dir(md), 0, "maildrop empty");
	if (smtp_queue_load(q, last_id, 0, &env, &error) != 1)
		bail("load %s: %s", last_id, error);
	is_string(env->sender, "alice@origin.test", "sender qualified");
	is_int(env->rcpt_count, 2, "two recipients");
	is_string(env->rcpts[1].addr, "carol@origin.test", "rcpt qualified");
	smtp_queue_env_free(&env);
	pathf(path, sizeof(path), "%s/data/%s", qdir, last_id);
	got = read_file(path, &len);
	ok(got != NULL && strncmp(got, "Received: by host.test (loft pickup, "
	    "uid ", 37) == 0, "content starts with Received:");
	ok(got != NULL && strstr(got, "\r\n\tid ") != NULL &&
	    strstr(got, last_id) != NULL, "...with the queue ID");
	ok(got != NULL && strstr(got, "\r\nSubject: s\r\nFrom: "
	    "alice@origin.test\r\nDate: ") != NULL, "From: added");
	ok(got != NULL && len > 12 && strcmp(got + len - 12,
	    ">\r\n\r\nhello\r\n") == 0, "body last, after the Message-ID");
	free(got);
}

static void
test_run_hostile(struct smtp_queue *q, const char *qdir, const char *md)
{
	char path[PATH_MAX], other[PATH_MAX], target[PATH_MAX];
	struct timeval tv[2] = { { 1000, 0 }, { 1000, 0 } };
	const char *error;
	unsigned int picked;
	struct buf b;
	struct stat st;

	/* A symbolic link to a file with a valid maildrop text. */
	make_file(&b, "mallory", "", 1, "x\n");
	pathf(target, sizeof(target), "%s/target", base);
	write_file(target, b.data, b.len);
	final_name(path, sizeof(path), md, 1);
	if (symlink(target, path) < 0)
		bail("symlink: %s", strerror(errno));
	/* A hard link: a second name for a good file. */
	final_name(path, sizeof(path), md, 2);
	write_file(path, b.data, b.len);
	pathf(other, sizeof(other), "%s/hardlink", base);
	if (link(path, other) < 0)
		bail("link: %s", strerror(errno));
	/* A FIFO under a final name: must not block the run. */
	final_name(path, sizeof(path), md, 3);
	if (mkfifo(path, 0644) < 0)
		bail("mkfifo: %s", strerror(errno));
	/* A truncated file, and a file over the recipient limit. */
	final_name(path, sizeof(path), md, 4);
	write_file(path, b.data, b.len - 2);
	buf_free(&b);
	make_file(&b, "a", "", 4, "x\n");	/* conf: 3 recipients */
	final_name(path, sizeof(path), md, 5);
	write_file(path, b.data, b.len);
	buf_free(&b);
	/* A strange name; a young and an old temporary file. */
	pathf(path, sizeof(path), "%s/../maildrop/whatever", md);
	write_file(path, "x", 1);
	pathf(path, sizeof(path), "%s/t.AAAAAAAAAAAAAAAAAAAAAAAAAA", md);
	write_file(path, "x", 1);
	pathf(path, sizeof(path), "%s/t.BBBBBBBBBBBBBBBBBBBBBBBBBB", md);
	write_file(path, "x", 1);
	utimes(path, tv);
	queued_count = 0;
	is_int(smtp_pickup_run(q, md, 10, &picked, &error), 0,
	    "run over hostile files");
	is_int(picked, 0, "nothing queued");
	is_int(queued_count, 0, "no callback");
	is_int(count_dir(md), 1, "only the young temporary file is left");
	pathf(path, sizeof(path), "%s/t.AAAAAAAAAAAAAAAAAAAAAAAAAA", md);
	ok(stat(path, &st) == 0, "the young temporary file stays");
	ok(stat(target, &st) == 0 && st.st_nlink == 1,
	    "the symlink's target untouched");
	ok(stat(other, &st) == 0 && st.st_nlink == 1,
	    "the hard link's other name untouched");
	pathf(path, sizeof(path), "%s/corrupt/maildrop.d%011u."
	    "AAAAAAAAAAAAAAAAAAAAAAAA04", qdir, 4);
	ok(stat(path, &st) == 0, "the truncated file in corrupt/");
	pathf(path, sizeof(path), "%s/corrupt/maildrop.d%011u."
	    "AAAAAAAAAAAAAAAAAAAAAAAA05", qdir, 5);
	ok(stat(path, &st) == 0, "the file over the limit in corrupt/");
	pathf(path, sizeof(path), "%s/t.AAAAAAAAAAAAAAAAAAAAAAAAAA", md);
	unlink(path);
}

static void
test_run_max(struct smtp_queue *q, const char *md)
{
	char path[PATH_MAX];
	const char *error;
	unsigned int picked;
	struct buf b;

	make_file(&b, "a", "", 1, "x\n");
	for (unsigned int i = 10; i < 13; i++) {
		final_name(path, sizeof(path), md, i);
		write_file(path, b.data, b.len);
	}
	buf_free(&b);
	is_int(smtp_pickup_run(q, md, 2, &picked, &error), 0, "run, max 2");
	is_int(picked, 2, "two picked");
	is_int(count_dir(md), 1, "one left");
	final_name(path, sizeof(path), md, 12);
	ok(access(path, F_OK) == 0, "the newest name is the one left");
	is_int(smtp_pickup_run(q, md, 2, &picked, &error), 0, "run again");
	is_int(picked, 1, "the last one picked");
}

static void
test_fifo(const char *qdir)
{
	char path[PATH_MAX];
	const char *error;
	int fd;

	pathf(path, sizeof(path), "%s/public/pickup", qdir);
	ok(!smtp_pickup_wake(path), "no listener: wake says so at once");
	fd = smtp_pickup_fifo_open(qdir, &error);
	ok(fd >= 0, "FIFO opened");
	ok(smtp_pickup_wake(path), "wake with a listener");
	ok(smtp_pickup_wake(path), "wake twice");
	smtp_pickup_fifo_drain(fd);
	{
		char c;

		ok(read(fd, &c, 1) < 0 && errno == EAGAIN, "drained, and "
		    "no EOF after the writers left");
	}
	close(fd);
}

int
main(void)
{
	static const char conf[] = "myhostname = host.test\n"
	    "myorigin = origin.test\nmessage_size_limit = 1000\n"
	    "smtpd_recipient_limit = 3\n";
	char qdir[512], md[PATH_MAX];
	struct smtp_queue *q;
	const char *error;

	log_open("smtp_pickup", LOG_DEST_STDERR);
	if (conf_load_buffer("test.conf", conf, strlen(conf), &error) < 0)
		bail("conf: %s", error);
	umask(077);
	pathf(base, sizeof(base), "/tmp/smtp_pickup.XXXXXX");
	if (mkdtemp(base) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	test_content_limits();
	test_file_roundtrip();
	test_file_damaged();
	test_file_limits();
	test_address();
	test_message();
	pathf(qdir, sizeof(qdir), "%s/queue", base);
	pathf(md, sizeof(md), "%s/maildrop", qdir);
	if (smtp_queue_open(qdir, &q, &error) < 0)
		bail("queue: %s", error);
	test_prepare(qdir);
	smtp_pickup_set_queued(on_queued, NULL);
	test_run_good(q, qdir, md);
	test_run_hostile(q, qdir, md);
	test_run_max(q, md);
	test_fifo(qdir);
	smtp_queue_close(&q);
	fsutil_remove_tree(base);
	conf_reset();
	return done_testing();
}
