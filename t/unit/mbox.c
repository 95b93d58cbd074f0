/*
 * Unit tests for lib/mbox.c: mboxrd escaping and un-escaping, From_ lines,
 * append then scan, files procmail and mutt write, rollback when the file
 * cannot grow (RLIMIT_FSIZE: EFBIG; the full-tmpfs case, ENOSPC, is left to
 * the integration tests, which can mount one).
 */
#include "config.h"
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include "buf.h"
#include "mbox.h"
#include "tap.h"

#define T_SUN_NOV_29	1795947813	/* Sun Nov 29 10:23:33 2026 UTC */
#define T_MON_NOV_9	1794211383	/* Mon Nov  9 08:03:03 2026 UTC */

struct collect {
	size_t n;
	int stop_after;		/* cb returns 1 after this many, 0: never */
	struct mbox_entry e[16];
};

static char dir[] = "/tmp/loft-mbox-XXXXXX";
static int file_seq;

static int
collect_cb(const struct mbox_entry *e, void *ctx)
{
	struct collect *c = ctx;

	if (c->n < sizeof(c->e) / sizeof(c->e[0]))
		c->e[c->n] = *e;
	c->n++;
	return c->stop_after > 0 && (int)c->n >= c->stop_after ? 1 : 0;
}

static int
fail_cb(const struct mbox_entry *e, void *ctx)
{
	(void)e;
	(void)ctx;
	return -1;
}

static unsigned char *
read_all(const char *path, size_t *len_r)
{
	struct stat st;
	unsigned char *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		bail("open %s: %s", path, strerror(errno));
	p = malloc((size_t)st.st_size + 1);
	if (p == NULL || read(fd, p, (size_t)st.st_size) != st.st_size)
		bail("read %s", path);
	close(fd);
	*len_r = (size_t)st.st_size;
	return p;
}

/* A new empty file in dir, open O_RDWR; its name in path. */
static int
new_file(char *path, size_t size, int flags)
{
	int fd;

	snprintf(path, size, "%s/mbox%d", dir, ++file_seq);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | flags, 0600);
	if (fd < 0)
		bail("create %s: %s", path, strerror(errno));
	return fd;
}

static void
write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, p, n) != (ssize_t)n)
		bail("write %s", path);
	close(fd);
}

/* Append msg alone to a new file; check the file's bytes against the
 * expected escaped form, scan it back and un-escape it. */
static void
roundtrip(const char *name, const char *msg, size_t len, const char *esc,
    size_t esclen)
{
	char path[256], from[128];
	uint64_t fo, dof, dl;
	const char *error = NULL;
	unsigned char *file, *want;
	struct collect c;
	struct buf out;
	size_t flen, fromlen, wantlen, origlen;
	int fd, r;

	fd = new_file(path, sizeof(path), 0);
	fromlen = mbox_from_format(from, sizeof(from), "a@b", T_SUN_NOV_29);
	is_int(mbox_append(fd, "a@b", T_SUN_NOV_29, (const unsigned char *)msg,
	    len, false, &fo, &dof, &dl, &error), 0, "%s: append", name);
	close(fd);
	file = read_all(path, &flen);
	wantlen = fromlen + esclen + 1;
	want = malloc(wantlen);
	memcpy(want, from, fromlen);
	memcpy(want + fromlen, esc, esclen);
	want[wantlen - 1] = '\n';
	is_mem(file, flen, want, wantlen, "%s: file bytes", name);
	ok(fo == 0 && dof == fromlen && dl == esclen,
	    "%s: offsets %llu %llu %llu", name, (unsigned long long)fo,
	    (unsigned long long)dof, (unsigned long long)dl);
	memset(&c, 0, sizeof(c));
	is_int(mbox_scan(file, flen, 0, collect_cb, &c), 0, "%s: scan", name);
	ok(c.n == 1 && c.e[0].data_offset == dof && c.e[0].data_len == dl,
	    "%s: scan finds the message where append put it", name);
	buf_init(&out, 1 << 20);
	r = mbox_unescape(file + dof, (size_t)dl, &out);
	origlen = len > 0 && msg[len - 1] != '\n' ? len + 1 : len;
	if (r == 1)
		ok(out.len == origlen && memcmp(out.data, msg, len) == 0 &&
		    (origlen == len || out.data[len] == '\n'),
		    "%s: unescape gives the message back", name);
	else
		ok(r == 0 && out.data == NULL && dl == origlen &&
		    memcmp(file + dof, msg, len) == 0,
		    "%s: nothing to unescape, data is the message", name);
	buf_free(&out);
	free(want);
	free(file);
}

#define RT(name, msg, esc) \
	roundtrip(name, msg, sizeof(msg) - 1, esc, sizeof(esc) - 1)

static void
test_escaping(void)
{
	RT("first line", "From me\nX: y\n\nbody\n", ">From me\nX: y\n\nbody\n");
	RT("body line", "S: x\n\nhi\nFrom me\nbye\n",
	    "S: x\n\nhi\n>From me\nbye\n");
	RT(">From", "S: x\n\n>From me\n", "S: x\n\n>>From me\n");
	RT(">>From", "S: x\n\n>>From me\n", "S: x\n\n>>>From me\n");
	RT("From inside a line", "S: x\n\na From b\n x>From c\n",
	    "S: x\n\na From b\n x>From c\n");
	RT("From without space", "S: x\n\nFrom\nFromage\n>From:\n",
	    "S: x\n\nFrom\nFromage\n>From:\n");
	RT("> From with a space", "S: x\n\n> From me\n",
	    "S: x\n\n> From me\n");
	RT("last line without newline", "S: x\n\nFrom me",
	    "S: x\n\n>From me\n");
	RT("no newline at all", "abc", "abc\n");
	RT("CRLF kept", "S: x\r\n\r\nFrom a\r\n>From b\r\nc\r\n",
	    "S: x\r\n\r\n>From a\r\n>>From b\r\nc\r\n");
	RT("ends with an empty line", "S: x\n\nbody\n\n", "S: x\n\nbody\n\n");
	RT("NUL bytes", "S: \0\n\nFrom \0x\n\0", "S: \0\n\n>From \0x\n\0\n");
	RT("empty message", "", "");
	RT("just a newline", "\n", "\n");
	RT("many quotes", "\n>>>>>>>>From x\nFrom From From \n",
	    "\n>>>>>>>>>From x\n>From From From \n");
}

static void
test_unescape_limits(void)
{
	static const unsigned char d[] = "a\n>From b\n>>From c\n";
	static const unsigned char plain[] = "a\nFrom b\n";
	size_t dlen = sizeof(d) - 1, want = dlen - 2;
	struct buf out;

	buf_init(&out, want);
	is_int(mbox_unescape(d, dlen, &out), 1, "unescape into exactly N");
	is_mem(out.data, out.len, "a\nFrom b\n>From c\n", want,
	    "unescape bytes");
	buf_free(&out);
	buf_init(&out, want + 3);
	buf_append(&out, "xyz", 3);
	is_int(mbox_unescape(d, dlen, &out), 1, "unescape appends to out");
	is_mem(out.data, out.len, "xyza\nFrom b\n>From c\n", want + 3,
	    "earlier contents kept");
	buf_free(&out);
	buf_init(&out, want + 2);
	buf_append(&out, "xyz", 3);
	is_int(mbox_unescape(d, dlen, &out), -1, "N+1 bytes needed: -1");
	is_mem(out.data, out.len, "xyz", 3, "out back to its length on entry");
	buf_free(&out);
	buf_init(&out, 0);
	is_int(mbox_unescape(plain, sizeof(plain) - 1, &out), 0,
	    "nothing to unescape (a bare From line is mboxrd-wrong, kept)");
	ok(out.len == 0 && out.data == NULL, "out untouched");
	is_int(mbox_unescape(plain, 0, &out), 0, "empty data");
	buf_free(&out);
}

static void
test_from_format(void)
{
	char line[MBOX_SENDER_MAX + 64], sender[MBOX_SENDER_MAX + 2];
	size_t n;

	n = mbox_from_format(line, sizeof(line), "alice@example.org",
	    T_SUN_NOV_29);
	is_string(line, "From alice@example.org Sun Nov 29 10:23:33 2026\n",
	    "From_ line in asctime form");
	is_int(n, strlen(line), "length returned");
	mbox_from_format(line, sizeof(line), "", T_MON_NOV_9);
	is_string(line, "From MAILER-DAEMON Mon Nov  9 08:03:03 2026\n",
	    "<> is MAILER-DAEMON, one-digit day padded");
	mbox_from_format(line, sizeof(line), "a b\nFrom x\t\x7f", T_MON_NOV_9);
	is_string(line, "From a_b_From_x__ Mon Nov  9 08:03:03 2026\n",
	    "spaces and controls in the sender replaced");
	memset(sender, 'x', sizeof(sender));
	sender[MBOX_SENDER_MAX] = '\0';
	n = mbox_from_format(line, sizeof(line), sender, T_MON_NOV_9);
	is_int(n, 5 + MBOX_SENDER_MAX + 26, "sender of MBOX_SENDER_MAX kept");
	sender[MBOX_SENDER_MAX] = 'y';
	sender[MBOX_SENDER_MAX + 1] = '\0';
	n = mbox_from_format(line, sizeof(line), sender, T_MON_NOV_9);
	ok(n == 5 + MBOX_SENDER_MAX + 26 && strchr(line, 'y') == NULL,
	    "sender of MBOX_SENDER_MAX+1 cut");
	n = strlen("From a Sun Nov 29 10:23:33 2026\n");
	is_int(mbox_from_format(line, n + 1, "a", T_SUN_NOV_29), n,
	    "fits in exactly its length + NUL");
	is_int(mbox_from_format(line, n, "a", T_SUN_NOV_29), 0,
	    "one byte less: 0");
	setenv("TZ", "CET-1", 1);
	tzset();
	mbox_from_format(line, sizeof(line), "a", T_SUN_NOV_29);
	is_string(line, "From a Sun Nov 29 11:23:33 2026\n",
	    "local time, as procmail writes");
	setenv("TZ", "UTC0", 1);
	tzset();
}

static void
parse_is(const char *line, const char *sender, time_t t, const char *name)
{
	struct mbox_entry e;

	memset(&e, 'z', sizeof(e));
	mbox_from_parse((const unsigned char *)line, strlen(line), &e);
	is_string(e.sender, sender, "parse %s: sender", name);
	is_int(e.from_time, t, "parse %s: time", name);
}

static void
test_from_parse(void)
{
	char line[600];
	struct mbox_entry e;
	int n;

	parse_is("From alice@example.org Sun Nov 29 10:23:33 2026\n",
	    "alice@example.org", T_SUN_NOV_29, "ours");
	parse_is("From a@b  Mon Nov  9 08:03:03 2026\n", "a@b", T_MON_NOV_9,
	    "procmail's two spaces");
	parse_is("From MAILER-DAEMON Sun Nov 29 10:23:33 2026\r\n",
	    "MAILER-DAEMON", T_SUN_NOV_29, "CRLF");
	parse_is("From \"a b\"@c Sun Nov 29 10:23:33 2026", "\"a b\"@c",
	    T_SUN_NOV_29, "sender with a space, no newline");
	parse_is("From a Sun Nov 29 10:23:33 PST 2026\n", "a", T_SUN_NOV_29,
	    "zone before the year");
	parse_is("From a Sun Nov 29 10:23:33 2026 +0000\n", "a", T_SUN_NOV_29,
	    "zone after the year");
	parse_is("From a Sun Nov 29 10:23:33 2026 remote from uucp\n", "a",
	    T_SUN_NOV_29, "UUCP remote from");
	parse_is("From a Sun Nov 29 10:23 2026\n", "a", T_SUN_NOV_29 - 33,
	    "no seconds");
	parse_is("From a sun nov 29 10:23:33 2026\n", "a", T_SUN_NOV_29,
	    "lower case names");
	parse_is("From foo bar baz\n", "foo", -1, "no date");
	parse_is("From a Sun Nov 29 24:00:00 2026\n", "a", -1, "hour 24");
	parse_is("From a Sun Nov 32 10:23:33 2026\n", "a", -1, "day 32");
	parse_is("From a Sun Nov 29 10:23:33 20261\n", "a", -1, "year 20261");
	parse_is("From a Sun Nov 29 10:23:33\n", "a", -1, "no year");
	parse_is("From \n", "", -1, "nothing");
	parse_is("Frobnicate\n", "", -1, "not a From_ line");
	memset(line, 'x', sizeof(line));
	memcpy(line, "From ", 5);
	n = snprintf(line + 5 + 300, sizeof(line) - 305,
	    " Sun Nov 29 10:23:33 2026\n");
	mbox_from_parse((unsigned char *)line, (size_t)(305 + n), &e);
	ok(strlen(e.sender) == sizeof(e.sender) - 1 &&
	    e.from_time == T_SUN_NOV_29, "long sender truncated, date kept");
	memset(line, 'x', sizeof(line));
	memcpy(line, "From a ", 7);
	mbox_from_parse((unsigned char *)line, sizeof(line), &e);
	ok(strcmp(e.sender, "a") == 0 && e.from_time == -1,
	    "line without newline or date");
}

static size_t
scan_str(const char *s, size_t len, uint64_t start, struct collect *c,
    int *ret_r)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);

	/* An exact-size copy, so that ASan sees any read past the end. */
	memcpy(copy, s, len);
	memset(c, 0, sizeof(*c));
	*ret_r = mbox_scan(copy, len, start, collect_cb, c);
	free(copy);
	return c->n;
}

static void
test_scan_foreign(void)
{
	/* As procmail writes: "From_" with two spaces, ">From" escaping. */
	static const char procmail[] =
	    "From bob@example.net  Sun Nov 29 10:23:33 2026\n"
	    "Subject: one\n\nFirst.\n>From me\n\n"
	    "From MAILER-DAEMON  Mon Nov  9 08:03:03 2026\n"
	    "Subject: two\n\nFrom\nSecond.\n\n";
	/* As mutt writes: Status headers, no blank before a non-From_ line. */
	static const char mutt[] =
	    "From carol@example.com Sun Nov 29 10:23:33 2026\n"
	    "Subject: x\nStatus: RO\n\nbody\nFrom here, not a separator\n\n"
	    "From dave Sun Nov 29 10:23:33 2026\nSubject: y\n\ntail\n";
	static const char garbage[] =
	    "From a Sun Nov 29 10:23:33 2026\nS: 1\n\nx\n\n"
	    "From b Sun Nov 29 10:23:33 2026\nS: 2\n\ncut sh\0\0\x01";
	static const char crlf[] =
	    "From a Sun Nov 29 10:23:33 2026\r\nS: 1\r\n\r\nx\r\n\r\n"
	    "From b Sun Nov 29 10:23:33 2026\r\nS: 2\r\n\r\ny\r\n\r\n";
	static const char cut_from[] =
	    "From a Sun Nov 29 10:23:33 2026\n\nFrom b Sun";
	struct collect c;
	struct buf out;
	size_t off;
	int ret;

	scan_str(procmail, sizeof(procmail) - 1, 0, &c, &ret);
	ok(ret == 0 && c.n == 2, "procmail file: 2 messages");
	is_string(c.e[0].sender, "bob@example.net", "procmail sender");
	is_int(c.e[1].from_time, T_MON_NOV_9, "procmail date");
	off = strlen("From bob@example.net  Sun Nov 29 10:23:33 2026\n");
	ok(c.e[0].data_offset == off &&
	    c.e[0].data_len == strlen("Subject: one\n\nFirst.\n>From me\n"),
	    "procmail message 1 bounds");
	buf_init(&out, 1024);
	is_int(mbox_unescape((const unsigned char *)procmail + off,
	    (size_t)c.e[0].data_len, &out), 1, "escaped body line found");
	is_mem(out.data, out.len, "Subject: one\n\nFirst.\nFrom me\n", out.len,
	    "body line \"From me\" back");
	buf_free(&out);
	ok(c.e[1].from_offset == c.e[0].data_offset + c.e[0].data_len + 1 &&
	    c.e[1].data_offset + c.e[1].data_len + 1 == sizeof(procmail) - 1,
	    "procmail message 2 bounds");
	scan_str(procmail, sizeof(procmail) - 1, c.e[1].from_offset, &c, &ret);
	ok(ret == 0 && c.n == 1 && c.e[0].from_time == T_MON_NOV_9,
	    "scan from the second From_ line");

	scan_str(mutt, sizeof(mutt) - 1, 0, &c, &ret);
	ok(ret == 0 && c.n == 2, "mutt file: From inside a paragraph is not a "
	    "separator");
	is_string(c.e[1].sender, "dave", "mutt second sender");
	is_int(c.e[1].data_offset + c.e[1].data_len, sizeof(mutt) - 1,
	    "last message without separator runs to the end");

	scan_str(garbage, sizeof(garbage) - 1, 0, &c, &ret);
	ok(ret == 0 && c.n == 2 && c.e[1].data_offset + c.e[1].data_len ==
	    sizeof(garbage) - 1, "trailing garbage is the last message's");
	is_int(c.e[0].data_len, strlen("S: 1\n\nx\n"), "first message intact");

	scan_str(crlf, sizeof(crlf) - 1, 0, &c, &ret);
	ok(ret == 0 && c.n == 2 &&
	    c.e[0].data_len == strlen("S: 1\r\n\r\nx\r\n") &&
	    c.e[1].data_len == strlen("S: 2\r\n\r\ny\r\n"),
	    "CRLF file: \\r\\n empty line separates");
	is_string(c.e[0].sender, "a", "CRLF sender");

	scan_str(cut_from, sizeof(cut_from) - 1, 0, &c, &ret);
	ok(ret == 0 && c.n == 2 && c.e[0].data_len == 0 &&
	    c.e[1].data_offset == sizeof(cut_from) - 1 &&
	    c.e[1].data_len == 0 && c.e[1].from_time == -1,
	    "From_ line cut at the end still reported");

	is_int(scan_str("", 0, 0, &c, &ret), 0, "empty file: no message");
	is_int(ret, 0, "empty file is an empty mbox");
	scan_str("Hello\nFrom x\n", 13, 0, &c, &ret);
	ok(ret == -1 && c.n == 0, "non-mbox file: -1");
	scan_str("\nFrom x\n", 8, 0, &c, &ret);
	ok(ret == -1 && c.n == 0, "leading empty line: -1");
	scan_str("From", 4, 0, &c, &ret);
	ok(ret == -1 && c.n == 0, "\"From\" alone: -1");
	scan_str(procmail, sizeof(procmail) - 1, 5, &c, &ret);
	ok(ret == -1 && c.n == 0, "start not at a From_ line: -1");
	scan_str(mutt, sizeof(mutt) - 1, strstr(mutt, "From here") - mutt, &c,
	    &ret);
	ok(ret == -1 && c.n == 0, "start at From after a non-empty line: -1");
	scan_str(mutt, sizeof(mutt) - 1, sizeof(mutt) - 1, &c, &ret);
	ok(ret == 0 && c.n == 0, "start at the end: nothing new");
	scan_str(mutt, sizeof(mutt) - 1, sizeof(mutt), &c, &ret);
	ok(ret == -1 && c.n == 0, "start past the end: -1");
	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	is_int(mbox_scan((const unsigned char *)procmail, sizeof(procmail) - 1,
	    0, collect_cb, &c), 0, "callback stops: 0");
	is_int(c.n, 1, "callback 1 stopped the walk");
	is_int(mbox_scan((const unsigned char *)procmail, sizeof(procmail) - 1,
	    0, fail_cb, NULL), -1, "callback error: -1");
}

/* Every prefix of a two-message file, as a reader racing a writer sees it:
 * never a read past the end, never a message past the prefix. */
static void
test_scan_prefixes(void)
{
	static const char f[] =
	    "From a Sun Nov 29 10:23:33 2026\nS: 1\n\n>From x\n\n"
	    "From b Sun Nov 29 10:23:33 2026\r\nS: 2\r\n\r\ny\r\n\n";
	size_t len = sizeof(f) - 1, second = strstr(f, "From b") - f, i;
	struct collect c;
	int ret, bad = 0;

	for (i = 0; i <= len; i++) {
		size_t want = i == 0 ? 0 : i < second + 5 ? 1 : 2;

		scan_str(f, i, 0, &c, &ret);
		if (i > 0 && i < 5) {
			bad += ret != -1;
			continue;
		}
		if (ret != 0 || c.n != want ||
		    (want > 0 && c.e[want - 1].data_offset +
		    c.e[want - 1].data_len > i)) {
			diag("prefix %zu: ret %d, %zu messages", i, ret, c.n);
			bad++;
		}
	}
	is_int(bad, 0, "all %zu prefixes scan consistently", len + 1);
	ok(c.n == 2 && c.e[0].data_len == strlen("S: 1\n\n>From x\n") &&
	    c.e[1].data_len == strlen("S: 2\r\n\r\ny\r\n"),
	    "whole file: both messages");
}

static void
test_append_scan(void)
{
	static const char *msgs[] = {
	    "Subject: one\n\nFrom the start\n",
	    "Subject: two\r\n\r\n>From crlf\r\n",
	    "Subject: three\n\nno newline"
	};
	static const char *senders[] = { "a@b", "", "c d@e" };
	char path[256];
	uint64_t fo[3], dof[3], dl[3];
	const char *error;
	unsigned char *file;
	struct collect c;
	struct buf out;
	size_t i, flen;
	int fd, r, good = 0;

	fd = new_file(path, sizeof(path), O_APPEND);
	for (i = 0; i < 3; i++)
		is_int(mbox_append(fd, senders[i], T_SUN_NOV_29 + (time_t)i,
		    (const unsigned char *)msgs[i], strlen(msgs[i]), i == 1,
		    &fo[i], &dof[i], &dl[i], &error), 0,
		    "append %zu (O_APPEND fd)", i);
	close(fd);
	file = read_all(path, &flen);
	memset(&c, 0, sizeof(c));
	is_int(mbox_scan(file, flen, 0, collect_cb, &c), 0, "scan appended");
	is_int(c.n, 3, "three messages");
	for (i = 0; i < 3 && i < c.n; i++) {
		buf_init(&out, 4096);
		r = mbox_unescape(file + c.e[i].data_offset,
		    (size_t)c.e[i].data_len, &out);
		if (r == 0)
			buf_append(&out, file + c.e[i].data_offset,
			    (size_t)c.e[i].data_len);
		if (c.e[i].from_offset == fo[i] &&
		    c.e[i].data_offset == dof[i] && c.e[i].data_len == dl[i] &&
		    c.e[i].from_time == T_SUN_NOV_29 + (time_t)i &&
		    strncmp((char *)out.data, msgs[i], strlen(msgs[i])) == 0)
			good++;
		buf_free(&out);
	}
	is_int(good, 3, "offsets, dates and bytes as appended");
	is_string(c.e[1].sender, "MAILER-DAEMON", "<> read back");
	is_string(c.e[2].sender, "c_d@e", "sanitised sender read back");
	free(file);
}

/* Appends to files that end badly: our From_ line must still be one. */
static void
test_append_padding(void)
{
	static const struct {
		const char *before, *name;
		size_t pad;
	} cases[] = {
		{ "From a Sun Nov 29 10:23:33 2026\n\ncut", "cut line", 2 },
		{ "From a Sun Nov 29 10:23:33 2026\n\nno sep\n", "no sep", 1 },
		{ "From a Sun Nov 29 10:23:33 2026\n", "From_ only", 1 },
		{ "From a Sun Nov 29 10:23:33 2026\r\n\r\nx\r\n\r\n", "CRLF",
		    0 },
		{ "From a Sun Nov 29 10:23:33 2026\n\nx\n\n", "well-formed",
		    0 },
	};
	char path[256];
	uint64_t fo, dof, dl;
	const char *error;
	unsigned char *file;
	struct collect c;
	size_t i, blen, flen;
	int fd;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = new_file(path, sizeof(path), 0);
		blen = strlen(cases[i].before);
		if (write(fd, cases[i].before, blen) != (ssize_t)blen)
			bail("write");
		mbox_append(fd, "z", T_SUN_NOV_29,
		    (const unsigned char *)"S: z\n", 5, false, &fo, &dof, &dl,
		    &error);
		close(fd);
		file = read_all(path, &flen);
		memset(&c, 0, sizeof(c));
		mbox_scan(file, flen, 0, collect_cb, &c);
		ok(fo == blen + cases[i].pad && c.n == 2 &&
		    c.e[1].from_offset == fo && c.e[1].data_len == 5 &&
		    strcmp(c.e[1].sender, "z") == 0 &&
		    memcmp(file, cases[i].before, blen) == 0,
		    "append after %s: %zu newline(s) added", cases[i].name,
		    cases[i].pad);
		free(file);
	}
}

/* A message much larger than the write chunk, full of From lines. */
static void
test_append_large(void)
{
	char path[256];
	struct buf msg, out;
	uint64_t fo, dof, dl;
	const char *error;
	unsigned char *file;
	struct collect c;
	size_t flen, i, froms = 0;
	int fd;

	buf_init(&msg, 1 << 22);
	buf_append_str(&msg, "Subject: big\n\n");
	for (i = 0; msg.len < 300000; i++) {
		if (i % 7 == 0) {
			buf_printf(&msg, "%.*sFrom line %zu\n", (int)(i % 3),
			    ">>", i);
			froms++;
		} else
			buf_printf(&msg, "line %zu %.*s\n", i, (int)(i % 97),
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	}
	fd = new_file(path, sizeof(path), 0);
	is_int(mbox_append(fd, "big@x", T_SUN_NOV_29, msg.data, msg.len, true,
	    &fo, &dof, &dl, &error), 0, "append %zu bytes", msg.len);
	close(fd);
	is_int(dl, msg.len + froms, "one '>' added per From line (%zu)",
	    froms);
	file = read_all(path, &flen);
	memset(&c, 0, sizeof(c));
	mbox_scan(file, flen, 0, collect_cb, &c);
	ok(c.n == 1 && c.e[0].data_len == dl, "large message scans as one");
	buf_init(&out, 1 << 22);
	is_int(mbox_unescape(file + dof, (size_t)dl, &out), 1,
	    "large message unescaped");
	is_mem(out.data, out.len, msg.data, msg.len, "large message intact");
	buf_free(&out);
	buf_free(&msg);
	free(file);
}

/* The file may not grow past RLIMIT_FSIZE: the append fails with EFBIG
 * and the file must be exactly as before. Limit at N and N+1. */
static void
test_append_rollback(void)
{
	static const char before[] =
	    "From a Sun Nov 29 10:23:33 2026\n\nold\n\n";
	char path[256], from[128];
	unsigned char msg[2000], *file;
	struct rlimit saved, rl;
	uint64_t fo, dof, dl;
	const char *error = NULL;
	size_t flen, need;
	int fd, ret, err;

	memset(msg, 'm', sizeof(msg));
	msg[sizeof(msg) - 1] = '\n';
	need = sizeof(before) - 1 + mbox_from_format(from, sizeof(from), "s",
	    T_SUN_NOV_29) + sizeof(msg) + 1;
	if (getrlimit(RLIMIT_FSIZE, &saved) < 0)
		bail("getrlimit");
	signal(SIGXFSZ, SIG_IGN);
	fd = new_file(path, sizeof(path), 0);
	write_file(path, before, sizeof(before) - 1);
	rl = saved;
	rl.rlim_cur = need - 1;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		bail("setrlimit");
	ret = mbox_append(fd, "s", T_SUN_NOV_29, msg, sizeof(msg), true, &fo,
	    &dof, &dl, &error);
	err = errno;
	is_int(ret, -1, "limit one byte short: -1");
	is_int(err, EFBIG, "errno EFBIG kept for the caller");
	ok(error != NULL && strstr(error, "too large") != NULL,
	    "error says why: %s", error != NULL ? error : "(null)");
	file = read_all(path, &flen);
	is_mem(file, flen, before, sizeof(before) - 1,
	    "file truncated back to exactly what it was");
	free(file);
	rl.rlim_cur = need;
	setrlimit(RLIMIT_FSIZE, &rl);
	is_int(mbox_append(fd, "s", T_SUN_NOV_29, msg, sizeof(msg), true, &fo,
	    &dof, &dl, &error), 0, "limit exactly the size: appended");
	is_int(lseek(fd, 0, SEEK_END), need, "file is the limit long");
	setrlimit(RLIMIT_FSIZE, &saved);
	signal(SIGXFSZ, SIG_DFL);
	close(fd);
	fd = open(path, O_RDONLY);
	is_int(mbox_append(fd, "s", T_SUN_NOV_29, msg, 10, false, &fo, &dof,
	    &dl, &error), -1, "read-only fd: -1");
	close(fd);
	file = read_all(path, &flen);
	is_int(flen, need, "read-only fd: file unchanged");
	free(file);
}

/* /dev/full fails every write with ENOSPC: the caller must see that
 * errno to say "disk full" (a full tmpfs, where the truncation matters
 * too, is left to the integration tests). */
static void
test_append_enospc(void)
{
	uint64_t fo, dof, dl;
	const char *error = NULL;
	int fd = open("/dev/full", O_RDWR), ret, err;

	if (fd < 0) {
		ok(1, "# SKIP no /dev/full");
		return;
	}
	ret = mbox_append(fd, "s", T_SUN_NOV_29, (const unsigned char *)"x\n",
	    2, true, &fo, &dof, &dl, &error);
	err = errno;
	ok(ret == -1 && err == ENOSPC, "disk full: -1 with errno ENOSPC (%s)",
	    error != NULL ? error : "(null)");
	close(fd);
}

static void
cleanup(void)
{
	char path[300];
	int i;

	for (i = 1; i <= file_seq; i++) {
		snprintf(path, sizeof(path), "%s/mbox%d", dir, i);
		unlink(path);
	}
	rmdir(dir);
}

int
main(void)
{
	setenv("TZ", "UTC0", 1);
	tzset();
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	test_escaping();
	test_unescape_limits();
	test_from_format();
	test_from_parse();
	test_scan_foreign();
	test_scan_prefixes();
	test_append_scan();
	test_append_padding();
	test_append_large();
	test_append_rollback();
	test_append_enospc();
	cleanup();
	return done_testing();
}
