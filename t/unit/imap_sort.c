/*
 * Unit tests for server/imap/imap_sort.c and imap_thread.c: the base
 * subject of RFC 5256 section 2.1, the keys taken from a header block,
 * SORT's order (every key, REVERSE, ties by sequence number) and both
 * THREAD algorithms, on the RFC's cases and on hostile input (loops,
 * duplicate and missing Message-IDs, a chain of 20,000 replies, thousands
 * of references in one message).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"
#include "server/imap/imap_parser.h"
#include "server/imap/imap_sort.h"
#include "tap.h"

static void
t_base(const char *in, const char *want, int reply)
{
	struct buf out;
	bool r;

	buf_init(&out, 8192);
	imap_sort_base_subject((const unsigned char *)in, strlen(in), &out,
	    &r);
	is_string(buf_cstr(&out), want, "base subject of \"%s\"", in);
	if (reply >= 0)
		ok(r == (reply != 0), "  %s a reply or forward", reply ?
		    "is" : "is not");
	buf_free(&out);
}

static void
test_base_subject(void)
{
	t_base("hello", "hello", 0);
	t_base("Re: hello", "hello", 1);
	t_base("RE:hello", "hello", 1);
	t_base("Fw: hello", "hello", 1);
	t_base("FWD: hello", "hello", 1);
	t_base("re: Re: fwd: hello", "hello", 1);
	t_base("Re [list]: hello", "hello", 1);
	t_base("[list] Re: hello", "hello", 1);
	t_base("RE: [a][b] Re: hello", "hello", 1);
	t_base("[list] hello", "hello", 0);
	t_base("[list]", "[list]", 0);
	t_base("[list]   ", "[list]", 0);
	t_base("hello (fwd)", "hello", 1);
	t_base("hello (FWD) (fwd)  ", "hello", 1);
	t_base("[Fwd: hello]", "hello", 1);
	t_base("[fwd: Re: hello (fwd)]", "hello", 1);
	t_base("  hello \t  world  ", "hello world", 0);
	t_base("Subject with Re: inside", "Subject with Re: inside", 0);
	t_base("Re:", "", 1);
	t_base("Re: (fwd)", "", 1);
	t_base("", "", 0);
	t_base("Ref: something", "Ref: something", 0);
	t_base("Re:Re:Re:Re:Re:Re:Re:Re: x", "x", 1);
	t_base("=?UTF-8?Q?Re=3A_caf=C3=A9?=", "caf\xc3\xa9", 1);
	t_base("=?UTF-8?B?w6l0w6k=?= =?UTF-8?B?w6l0w6k=?=",
	    "\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9", 0);
	t_base("[unterminated blob hello", "[unterminated blob hello", 0);
	t_base("[a[b]] hello", "[a[b]] hello", 0);
}

static size_t nmsgs;

/* A message from a header text; num = seq. */
static void
t_msg(struct imap_sort_msg *m, uint32_t seq, uint64_t size, int64_t arrival,
    const char *hdr)
{
	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->num = seq;
	m->size = size;
	m->arrival = arrival;
	imap_sort_msg_fields(m, (const unsigned char *)hdr, strlen(hdr));
	nmsgs++;
}

static void
test_fields(void)
{
	struct imap_sort_msg m;

	t_msg(&m, 1, 10, 1000,
	    "Subject: Re: [list] Hello\r\n"
	    "From: \"Smith, John\" <John.Smith@Example.COM>\r\n"
	    "To: undisclosed-recipients:;, bob@b.example\r\n"
	    "Cc: =?UTF-8?Q?Ren=C3=A9?= <rene@c.example>\r\n"
	    "Date: Mon, 2 Jan 2023 10:00:00 +0100\r\n"
	    "Message-ID: junk <id1@x> more\r\n"
	    "In-Reply-To: <parent@x>\r\n"
	    "Subject: second subject ignored\r\n\r\nbody\r\n");
	is_string(m.subject, "Hello", "fields: base subject");
	ok(m.reply, "fields: a reply");
	is_string(m.from, "John.Smith", "fields: FROM is the addr-mailbox");
	is_string(m.dfrom, "Smith, John", "fields: DISPLAYFROM the name");
	is_string(m.to, "bob", "fields: TO skips an empty group");
	is_string(m.dto, "bob@b.example",
	    "fields: DISPLAYTO without a name is the addr-spec");
	is_string(m.cc, "rene", "fields: CC");
	ok(m.date == 1672650000, "fields: Date in UTC (%lld)",
	    (long long)m.date);
	is_string(m.msgid, "<id1@x>", "fields: Message-ID's <...>");
	is_string(m.refs, "<parent@x>",
	    "fields: In-Reply-To when there are no References");
	imap_sort_msgs_free(&m, 1);

	t_msg(&m, 2, 10, 1234, "Date: not a date\nReferences: <a@x> <b@x>\n"
	    "In-Reply-To: <c@x>\n\n");
	ok(m.date == 1234, "fields: bad Date falls back on INTERNALDATE");
	is_string(m.refs, "<a@x> <b@x>", "fields: References win");
	is_string(m.subject, "", "fields: no Subject is empty");
	is_string(m.from, "", "fields: no From is empty");
	is_string(m.msgid, "", "fields: no Message-ID is empty");
	imap_sort_msgs_free(&m, 1);

	t_msg(&m, 3, 0, 0, "");
	is_string(m.subject, "", "fields: empty header");
	imap_sort_msgs_free(&m, 1);
}

static void
t_order(struct imap_sort_msg *msgs, size_t n, const char *prog_text,
    const char *want)
{
	struct imap_sort_prog prog;
	struct imap_arg list[IMAP_SORT_KEYS_MAX * 2], arg;
	char words[IMAP_SORT_KEYS_MAX * 2][32], copy[256], *w, *save;
	const char *err;
	unsigned count = 0;
	struct buf out;

	snprintf(copy, sizeof(copy), "%s", prog_text);
	memset(list, 0, sizeof(list));
	for (w = strtok_r(copy, " ", &save); w != NULL && count <
	    IMAP_SORT_KEYS_MAX * 2; w = strtok_r(NULL, " ", &save)) {
		snprintf(words[count], sizeof(words[count]), "%s", w);
		list[count].type = IMAP_ARG_ATOM;
		list[count].data = (const unsigned char *)words[count];
		list[count].len = strlen(words[count]);
		list[count].pos = count + 1;
		list[count].depth = 1;
		count++;
	}
	memset(&arg, 0, sizeof(arg));
	arg.type = IMAP_ARG_LIST;
	arg.list = list;
	arg.count = count;
	if (imap_sort_parse(&arg, &prog, &err) < 0) {
		ok(0, "sort (%s): parse failed: %s", prog_text, err);
		return;
	}
	imap_sort_order(msgs, n, &prog);
	buf_init(&out, 4096);
	for (size_t i = 0; i < n; i++)
		buf_printf(&out, "%s%u", i == 0 ? "" : " ", msgs[i].num);
	is_string(buf_cstr(&out), want, "sort (%s)", prog_text);
	buf_free(&out);
}

static void
t_parse_bad(const char *text, unsigned count)
{
	struct imap_arg list[20], arg;
	struct imap_sort_prog prog;
	const char *err = "(none)";

	memset(list, 0, sizeof(list));
	for (unsigned i = 0; i < count; i++) {
		list[i].type = IMAP_ARG_ATOM;
		list[i].data = (const unsigned char *)text;
		list[i].len = strlen(text);
		list[i].pos = i + 1;
		list[i].depth = 1;
	}
	memset(&arg, 0, sizeof(arg));
	arg.type = IMAP_ARG_LIST;
	arg.list = list;
	arg.count = count;
	ok(imap_sort_parse(&arg, &prog, &err) < 0, "sort program of %u x %s "
	    "refused (%s)", count, text, err);
}

static void
test_sort(void)
{
	struct imap_sort_msg m[5];
	struct imap_arg list[20], arg;
	struct imap_sort_prog prog;
	const char *err;

	t_msg(&m[0], 1, 300, 50, "Subject: b\nFrom: zed@x\nTo: b@x\n"
	    "Cc: c@x\nDate: Thu, 1 Jan 2015 00:00:00 +0000\n\n");
	t_msg(&m[1], 2, 100, 40, "Subject: Re: A\nFrom: Al <al@x>\n"
	    "To: a@x\nDate: Thu, 1 Jan 2015 00:00:10 +0000\n\n");
	t_msg(&m[2], 3, 200, 40, "Subject: a\nFrom: Bo <bo@x>\n"
	    "To: Zoe <c@x>\nDate: Thu, 1 Jan 2015 00:00:05 +0000\n\n");
	t_msg(&m[3], 4, 100, 60, "Subject: [x] c\nFrom: yves@x\n\n");
	t_msg(&m[4], 5, 200, 10, "Subject: B\nFrom: ALAN@x\nCc: a@x\n"
	    "Date: Wed, 31 Dec 2014 23:00:00 -0100\n\n");
	t_order(m, 5, "ARRIVAL", "5 2 3 1 4");
	t_order(m, 5, "REVERSE ARRIVAL", "4 1 2 3 5");
	t_order(m, 5, "SIZE", "2 4 3 5 1");
	t_order(m, 5, "REVERSE SIZE", "1 3 5 2 4");
	t_order(m, 5, "SIZE REVERSE ARRIVAL", "4 2 3 5 1");
	t_order(m, 5, "SUBJECT", "2 3 1 5 4");
	t_order(m, 5, "SUBJECT REVERSE SIZE", "3 2 1 5 4");
	t_order(m, 5, "FROM", "2 5 3 4 1");
	t_order(m, 5, "DISPLAYFROM", "2 5 3 4 1");
	t_order(m, 5, "TO", "4 5 2 1 3");
	t_order(m, 5, "DISPLAYTO", "4 5 2 1 3");
	t_order(m, 5, "CC", "2 3 4 5 1");
	/* Message 4 has no Date: its INTERNALDATE (60) is its date; 5's is
	 * 2015-01-01 00:00:00 UTC, a tie with 1 broken by number. */
	t_order(m, 5, "DATE", "4 1 5 3 2");
	t_order(m, 5, "reverse date", "2 3 1 5 4");
	imap_sort_msgs_free(m, 5);

	t_parse_bad("REVERSE", 1);
	t_parse_bad("NOSUCH", 1);
	t_parse_bad("SIZE", IMAP_SORT_KEYS_MAX + 1);
	t_parse_bad("SIZE", 0);
	memset(list, 0, sizeof(list));
	memset(&arg, 0, sizeof(arg));
	arg.type = IMAP_ARG_ATOM;
	arg.data = (const unsigned char *)"SIZE";
	arg.len = 4;
	ok(imap_sort_parse(&arg, &prog, &err) < 0, "sort program not a "
	    "list refused");
	for (unsigned i = 0; i < IMAP_SORT_KEYS_MAX; i++) {
		list[i].type = IMAP_ARG_ATOM;
		list[i].data = (const unsigned char *)"size";
		list[i].len = 4;
		list[i].depth = 1;
	}
	arg.type = IMAP_ARG_LIST;
	arg.list = list;
	arg.count = IMAP_SORT_KEYS_MAX;
	ok(imap_sort_parse(&arg, &prog, &err) == 0 &&
	    prog.count == IMAP_SORT_KEYS_MAX, "sort program of exactly "
	    "IMAP_SORT_KEYS_MAX keys taken");
}

/* THREAD over messages given as header texts (dates in order of the
 * array unless the header says). */
static void
t_thread(const char *const *hdrs, size_t n, bool refs, const char *want,
    const char *what)
{
	struct imap_sort_msg *m = xcalloc(n + 1, sizeof(*m));
	struct buf out;

	for (size_t i = 0; i < n; i++)
		t_msg(&m[i], (uint32_t)i + 1, 100, 1000 + (int64_t)i, hdrs[i]);
	buf_init(&out, SIZE_MAX);
	ok(imap_thread_write(m, n, refs, &out) == 0 &&
	    strcmp(buf_cstr(&out), want) == 0, "thread %s: %s", refs ?
	    "REFERENCES" : "ORDEREDSUBJECT", what);
	if (strcmp(buf_cstr(&out), want) != 0)
		diag("got  \"%s\"\nwant \"%s\"", buf_cstr(&out), want);
	imap_sort_msgs_free(m, n);
	free(m);
	buf_free(&out);
}

static void
test_thread(void)
{
	static const char *const tree[] = {
		"Message-ID: <a@x>\nSubject: topic\n\n",
		"Message-ID: <b@x>\nReferences: <a@x>\nSubject: Re: topic\n\n",
		"Message-ID: <c@x>\nReferences: <a@x> <b@x>\n"
		    "Subject: Re: topic\n\n",
		"Message-ID: <d@x>\nIn-Reply-To: <a@x>\nSubject: Re: topic\n\n",
		"Message-ID: <e@x>\nSubject: other\n\n",
	};
	static const char *const missing[] = {
		"Message-ID: <b@x>\nReferences: <gone@x>\nSubject: one\n\n",
		"Message-ID: <c@x>\nReferences: <gone@x>\nSubject: two\n\n",
		"Message-ID: <d@x>\nReferences: <lost@x>\nSubject: three\n\n",
	};
	static const char *const loop[] = {
		"Message-ID: <a@x>\nReferences: <b@x>\nSubject: l1\n\n",
		"Message-ID: <b@x>\nReferences: <a@x>\nSubject: l2\n\n",
		"Message-ID: <c@x>\nReferences: <c@x>\nSubject: l3\n\n",
	};
	static const char *const subjects[] = {
		"Message-ID: <1@x>\nSubject: hello\n\n",
		"Message-ID: <2@x>\nSubject: Re: hello\n\n",
		"Message-ID: <3@x>\nSubject: news\n\n",
		"Message-ID: <4@x>\nSubject: NEWS\n\n",
	};
	static const char *const dup[] = {
		"Message-ID: <same@x>\nSubject: d1\n\n",
		"Message-ID: <same@x>\nSubject: d2\n\n",
		"Subject: d3\n\n",
		"Subject: d4\n\n",
	};
	static const char *const ordered[] = {
		"Subject: a\nDate: Thu, 1 Jan 2015 00:00:03 +0000\n\n",
		"Subject: b\nDate: Thu, 1 Jan 2015 00:00:01 +0000\n\n",
		"Subject: re: a\nDate: Thu, 1 Jan 2015 00:00:05 +0000\n\n",
		"Subject: A\nDate: Thu, 1 Jan 2015 00:00:04 +0000\n\n",
		"Subject: b (fwd)\nDate: Thu, 1 Jan 2015 00:00:02 +0000\n\n",
	};

	t_thread(tree, 5, true, " (1 (2 3)(4))(5)", "a tree");
	t_thread(missing, 3, true, " ((1)(2))(3)",
	    "a missing parent of two is a dummy; of one, promoted");
	t_thread(loop, 3, true, " (2 1)(3)", "loops are not made");
	t_thread(subjects, 4, true, " (1 2)((3)(4))",
	    "roots gathered by base subject");
	t_thread(dup, 4, true, " (1)(2)(3)(4)",
	    "duplicate and missing Message-IDs each stand alone");
	t_thread(ordered, 5, false, " (2 5)(1 (4)(3))",
	    "ORDEREDSUBJECT");
	t_thread(NULL, 0, true, "", "no messages");
}

/* A chain of replies longer than IMAP_THREAD_DEPTH_MAX, and a message
 * with thousands of references: bounded, every message once. */
static void
test_thread_hostile(void)
{
	size_t n = 20000, refs = 5000, seen = 0;
	struct imap_sort_msg *m = xcalloc(n + 2, sizeof(*m));
	struct buf hdr, out;
	const char *p;

	buf_init(&hdr, SIZE_MAX);
	for (size_t i = 0; i < n; i++) {
		buf_truncate(&hdr, 0);
		buf_printf(&hdr, "Message-ID: <%zu@x>\n", i);
		if (i > 0)
			buf_printf(&hdr, "In-Reply-To: <%zu@x>\n", i - 1);
		buf_append_str(&hdr, "Subject: chain\n\n");
		t_msg(&m[i], (uint32_t)i + 1, 1, (int64_t)i, buf_cstr(&hdr));
	}
	buf_truncate(&hdr, 0);
	buf_append_str(&hdr, "Message-ID: <many@x>\nReferences:");
	for (size_t i = 0; i < refs; i++)
		buf_printf(&hdr, " <r%zu@x>", i);
	buf_append_str(&hdr, "\nSubject: many\n\n");
	t_msg(&m[n], (uint32_t)n + 1, 1, (int64_t)n, buf_cstr(&hdr));
	buf_init(&out, SIZE_MAX);
	ok(imap_thread_write(m, n + 1, true, &out) == 0,
	    "thread: a 20,000 chain and 5,000 references");
	for (p = buf_cstr(&out); *p != '\0'; p++)
		if (*p >= '0' && *p <= '9' && (p == buf_cstr(&out) ||
		    p[-1] < '0' || p[-1] > '9'))
			seen++;
	ok(seen == n + 1, "  every message once (%zu of %zu)", seen, n + 1);
	imap_sort_msgs_free(m, n + 1);
	free(m);
	buf_free(&hdr);
	buf_free(&out);
}

int
main(void)
{
	test_base_subject();
	test_fields();
	test_sort();
	test_thread();
	test_thread_hostile();
	return done_testing();
}
