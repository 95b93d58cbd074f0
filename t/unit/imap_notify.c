/*
 * Unit tests for the NOTIFY command's parser (server/imap/imap_notify.c,
 * RFC 5465 section 8 and the rules of sections 5 and 6.1): each command
 * is fed to the IMAP command parser one byte at a time (need more until
 * its last LF), and once whole, then its arguments go through
 * imap_notify_parse: filters, mailbox names (atom, quoted, literal,
 * lists), events with and without fetch-att, keywords in any case, the
 * BAD rules, BADEVENT for events not served, the limits at N and N + 1
 * (groups, names, fetch-att items), nesting, and hostile input.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"
#include "server/imap/imap_notify.h"
#include "server/imap/imap_parser.h"
#include "tap.h"

static int
t_cont(void *ctx, uint64_t size)
{
	(void)ctx;
	(void)size;
	return 0;
}

static const struct imap_parser_callbacks t_cb = {
	.need_continuation = t_cont,
};

/*
 * Parse text (one command) fed byte by byte (bytewise) or at once;
 * *ret_r the imap_notify_parse result, spec filled (caller frees). false
 * if the IMAP parser itself refused the line or needed more at the end,
 * or said "complete" before the last byte.
 */
static bool
t_parse(const char *text, bool bytewise, struct imap_notify_spec *spec,
    int *ret_r, const char **error_r)
{
	struct imap_parser_settings set = { 0 };
	struct imap_parser *p = imap_parser_new(&set, &t_cb, NULL);
	struct imap_cmd *cmd = NULL;
	size_t len = strlen(text), used = 0;
	int r = 0;
	bool good = true;

	memset(spec, 0, sizeof(*spec));
	if (bytewise) {
		for (size_t i = 0; i < len; i++) {
			used += imap_parser_input(p,
			    (const unsigned char *)text + i, 1);
			r = imap_parser_next(p, &cmd);
			if (r != 0 && i + 1 < len)
				good = false;
		}
	} else {
		used = imap_parser_input(p, (const unsigned char *)text, len);
		r = imap_parser_next(p, &cmd);
	}
	if (!good || used != len || r != 1) {
		imap_parser_free(&p);
		return false;
	}
	*ret_r = imap_notify_parse(cmd->args, cmd->argc, spec, error_r);
	imap_parser_free(&p);
	return true;
}

struct tcase {
	const char *name;
	const char *in;
	int want;
};

#define OK	IMAP_NOTIFY_PARSE_OK
#define BAD	IMAP_NOTIFY_PARSE_BAD
#define BADEV	IMAP_NOTIFY_PARSE_BADEVENT
#define TOOBIG	IMAP_NOTIFY_PARSE_TOOBIG

static const struct tcase cases[] = {
	{ "NONE", "a NOTIFY NONE\r\n", OK },
	{ "none in lower case", "a NOTIFY none\r\n", OK },
	{ "SET with SELECTED", "a NOTIFY SET (selected (MessageNew "
	    "MessageExpunge FlagChange))\r\n", OK },
	{ "SET STATUS", "a NOTIFY SET STATUS (personal (MessageNew "
	    "MessageExpunge))\r\n", OK },
	{ "the brief's SET", "a NOTIFY SET (selected (MessageNew "
	    "MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge "
	    "MailboxName SubscriptionChange))\r\n", OK },
	{ "SELECTED-DELAYED NONE", "a NOTIFY SET (selected-delayed NONE)\r\n",
	    OK },
	{ "INBOXES", "a NOTIFY SET (inboxes (MessageNew MessageExpunge))\r\n",
	    OK },
	{ "SUBSCRIBED mailbox events", "a NOTIFY SET (subscribed "
	    "(MailboxName SubscriptionChange))\r\n", OK },
	{ "SUBTREE one name", "a NOTIFY SET (subtree Lists (MessageNew "
	    "MessageExpunge))\r\n", OK },
	{ "MAILBOXES a list", "a NOTIFY SET (mailboxes (INBOX \"Sent Items\" "
	    "{4+}\r\nWork) (MessageNew MessageExpunge))\r\n", OK },
	{ "fetch-att on SELECTED", "a NOTIFY SET (selected (MessageNew (UID "
	    "FLAGS MODSEQ) MessageExpunge))\r\n", OK },
	{ "keywords in any case", "a notify set status (SeLeCtEd "
	    "(messagenew messageexpunge flagchange))\r\n", OK },
	/* The rules: BAD. */
	{ "NONE with arguments", "a NOTIFY NONE STATUS\r\n", BAD },
	{ "no arguments", "a NOTIFY\r\n", BAD },
	{ "neither SET nor NONE", "a NOTIFY GET (personal NONE)\r\n", BAD },
	{ "SET without group", "a NOTIFY SET\r\n", BAD },
	{ "SET STATUS without group", "a NOTIFY SET STATUS\r\n", BAD },
	{ "a group that is not a list", "a NOTIFY SET personal\r\n", BAD },
	{ "MessageNew alone", "a NOTIFY SET (personal (MessageNew))\r\n", BAD },
	{ "MessageExpunge alone", "a NOTIFY SET (personal "
	    "(MessageExpunge))\r\n", BAD },
	{ "FlagChange alone", "a NOTIFY SET (personal (FlagChange))\r\n", BAD },
	{ "FlagChange with MessageNew only", "a NOTIFY SET (personal "
	    "(FlagChange MessageNew))\r\n", BAD },
	{ "AnnotationChange alone (the rule before BADEVENT)",
	    "a NOTIFY SET (personal (AnnotationChange))\r\n", BAD },
	{ "MailboxName on SELECTED", "a NOTIFY SET (selected (MessageNew "
	    "MessageExpunge MailboxName))\r\n", BAD },
	{ "SubscriptionChange on SELECTED-DELAYED", "a NOTIFY SET "
	    "(selected-delayed (SubscriptionChange))\r\n", BAD },
	{ "SELECTED twice", "a NOTIFY SET (selected NONE) (selected "
	    "NONE)\r\n", BAD },
	{ "SELECTED and SELECTED-DELAYED", "a NOTIFY SET (selected NONE) "
	    "(selected-delayed NONE)\r\n", BAD },
	{ "fetch-att on PERSONAL", "a NOTIFY SET (personal (MessageNew (UID) "
	    "MessageExpunge))\r\n", BAD },
	{ "fetch-att not served", "a NOTIFY SET (selected (MessageNew "
	    "(BODY[]) MessageExpunge))\r\n", BAD },
	{ "empty fetch-att", "a NOTIFY SET (selected (MessageNew () "
	    "MessageExpunge))\r\n", BAD },
	{ "fetch-att after another event", "a NOTIFY SET (selected "
	    "(MessageExpunge (UID) MessageNew))\r\n", BAD },
	{ "an event twice", "a NOTIFY SET (personal (MessageNew "
	    "MessageExpunge MessageExpunge))\r\n", BAD },
	{ "empty events", "a NOTIFY SET (personal ())\r\n", BAD },
	{ "events a string", "a NOTIFY SET (personal \"NONE\")\r\n", BAD },
	{ "an event a string", "a NOTIFY SET (personal (\"MessageNew\" "
	    "MessageExpunge))\r\n", BAD },
	{ "unknown filter", "a NOTIFY SET (everything NONE)\r\n", BAD },
	{ "filter a string", "a NOTIFY SET (\"personal\" NONE)\r\n", BAD },
	{ "SUBTREE without names", "a NOTIFY SET (subtree NONE)\r\n", BAD },
	{ "PERSONAL with names", "a NOTIFY SET (personal INBOX NONE)\r\n",
	    BAD },
	{ "MAILBOXES empty list", "a NOTIFY SET (mailboxes () NONE)\r\n", BAD },
	{ "MAILBOXES nested list", "a NOTIFY SET (mailboxes ((INBOX)) "
	    "NONE)\r\n", BAD },
	{ "a group of one", "a NOTIFY SET (personal)\r\n", BAD },
	{ "a group of four", "a NOTIFY SET (mailboxes INBOX NONE NONE)\r\n",
	    BAD },
	{ "an empty group", "a NOTIFY SET ()\r\n", BAD },
	{ "deep nesting", "a NOTIFY SET ((((((((personal))))))))\r\n", BAD },
	{ "NIL as events", "a NOTIFY SET (personal NIL)\r\n", BAD },
	/* Events not served: NO [BADEVENT]. */
	{ "AnnotationChange", "a NOTIFY SET (personal (MessageNew "
	    "MessageExpunge AnnotationChange))\r\n", BADEV },
	{ "MailboxMetadataChange", "a NOTIFY SET (personal "
	    "(MailboxMetadataChange))\r\n", BADEV },
	{ "ServerMetadataChange", "a NOTIFY SET (personal "
	    "(ServerMetadataChange))\r\n", BADEV },
	{ "an extension event", "a NOTIFY SET (inboxes (XFuture))\r\n",
	    BADEV },
	{ "BAD in a later group wins over BADEVENT", "a NOTIFY SET (inboxes "
	    "(XFuture)) (personal (MessageNew))\r\n", BAD },
};

static void
test_cases(bool bytewise)
{
	struct imap_notify_spec spec;
	const char *error;
	int ret;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		error = NULL;
		ret = 99;
		if (!t_parse(cases[i].in, bytewise, &spec, &ret, &error)) {
			ok(false, "%s%s: the command parser took it",
			    cases[i].name, bytewise ? " (bytewise)" : "");
			continue;
		}
		is_int(ret, cases[i].want, "%s%s (%s)", cases[i].name,
		    bytewise ? " (bytewise)" : "", error != NULL ? error :
		    "no error");
		imap_notify_spec_free(&spec);
	}
}

/* What an accepted command holds. */
static void
test_spec(void)
{
	struct imap_notify_spec spec;
	const char *error;
	int ret = 99;

	ok(t_parse("a NOTIFY SET STATUS (selected-delayed (MessageNew (uid "
	    "Flags) MessageExpunge FlagChange)) (mailboxes (INBOX \"A b\" "
	    "{3+}\r\nx/y) (MessageNew MessageExpunge)) (subtree Lists "
	    "(MailboxName)) (personal NONE)\r\n", true, &spec, &ret, &error) &&
	    ret == OK, "a full SET parses");
	ok(spec.status && !spec.none, "STATUS, not NONE");
	is_int(spec.ngroups, 4, "four groups");
	is_int(spec.groups[0].filter, IMAP_NOTIFY_SELECTED_DELAYED,
	    "group 1: SELECTED-DELAYED");
	is_int(spec.groups[0].events, IMAP_NOTIFY_EV_MESSAGE,
	    "group 1: the three message events");
	is_int(spec.groups[0].fetch, IMAP_NOTIFY_FETCH_UID |
	    IMAP_NOTIFY_FETCH_FLAGS, "group 1: fetch-att UID FLAGS");
	is_int(spec.groups[1].filter, IMAP_NOTIFY_MAILBOXES,
	    "group 2: MAILBOXES");
	is_int(spec.groups[1].nnames, 3, "group 2: three names");
	ok(spec.groups[1].nnames == 3 &&
	    strcmp(spec.groups[1].names[0], "INBOX") == 0 &&
	    strcmp(spec.groups[1].names[1], "A b") == 0 &&
	    strcmp(spec.groups[1].names[2], "x/y") == 0,
	    "group 2: atom, quoted and literal names as sent");
	is_int(spec.groups[1].events, IMAP_NOTIFY_EV_NEW |
	    IMAP_NOTIFY_EV_EXPUNGE, "group 2: MessageNew MessageExpunge");
	is_int(spec.groups[2].filter, IMAP_NOTIFY_SUBTREE, "group 3: SUBTREE");
	ok(spec.groups[2].nnames == 1 &&
	    strcmp(spec.groups[2].names[0], "Lists") == 0,
	    "group 3: one name");
	is_int(spec.groups[2].events, IMAP_NOTIFY_EV_NAME,
	    "group 3: MailboxName");
	is_int(spec.groups[3].events, 0, "group 4: NONE");
	imap_notify_spec_free(&spec);
	is_int(spec.ngroups, 0, "spec_free empties it");

	ok(t_parse("a NOTIFY NONE\r\n", false, &spec, &ret, &error) &&
	    ret == OK && spec.none && spec.ngroups == 0, "NONE: none set");
	imap_notify_spec_free(&spec);
}

/* The text of b, which is freed. */
static char *
t_take(struct buf *b)
{
	char *text = xstrdup(buf_cstr(b));

	buf_free(b);
	return text;
}

/* A command of n groups "(inboxes NONE)". */
static char *
t_groups(unsigned n)
{
	struct buf b;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "a NOTIFY SET");
	for (unsigned i = 0; i < n; i++)
		buf_append_str(&b, " (inboxes NONE)");
	buf_append_str(&b, "\r\n");
	return t_take(&b);
}

/* MAILBOXES with n names, in one group or one a group. */
static char *
t_names(unsigned n, bool spread)
{
	struct buf b;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "a NOTIFY SET");
	if (spread) {
		for (unsigned i = 0; i < n; i++)
			buf_printf(&b, " (mailboxes M%u NONE)", i);
	} else {
		buf_append_str(&b, " (mailboxes (");
		for (unsigned i = 0; i < n; i++)
			buf_printf(&b, "%sM%u", i > 0 ? " " : "", i);
		buf_append_str(&b, ") NONE)");
	}
	buf_append_str(&b, "\r\n");
	return t_take(&b);
}

static char *
t_fetch(unsigned n)
{
	struct buf b;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "a NOTIFY SET (selected (MessageNew (");
	for (unsigned i = 0; i < n; i++)
		buf_append_str(&b, i > 0 ? " UID" : "UID");
	buf_append_str(&b, ") MessageExpunge))\r\n");
	return t_take(&b);
}

static void
t_limit(char *in, int want, const char *name)
{
	struct imap_notify_spec spec;
	const char *error = NULL;
	int ret = 99;

	ok(t_parse(in, false, &spec, &ret, &error), "%s: parsed", name);
	is_int(ret, want, "%s (%s)", name, error != NULL ? error : "OK");
	imap_notify_spec_free(&spec);
	free(in);
}

static void
test_limits(void)
{
	t_limit(t_groups(IMAP_NOTIFY_GROUPS_MAX), OK, "groups at the limit");
	t_limit(t_groups(IMAP_NOTIFY_GROUPS_MAX + 1), TOOBIG,
	    "groups past the limit");
	t_limit(t_names(IMAP_NOTIFY_NAMES_MAX, false), OK,
	    "names in one list at the limit");
	t_limit(t_names(IMAP_NOTIFY_NAMES_MAX + 1, false), TOOBIG,
	    "names in one list past the limit");
	/* Spread over groups, the group limit comes first: 16 groups of
	 * names are fine, the names limit counts across groups. */
	t_limit(t_names(IMAP_NOTIFY_GROUPS_MAX, true), OK,
	    "names spread over the most groups");
	t_limit(t_fetch(IMAP_NOTIFY_FETCH_MAX), OK, "fetch-att at the limit");
	t_limit(t_fetch(IMAP_NOTIFY_FETCH_MAX + 1), TOOBIG,
	    "fetch-att past the limit");
}

/* Names across groups: N in all passes, N + 1 does not. */
static void
test_names_across(void)
{
	struct buf b;
	unsigned per = IMAP_NOTIFY_NAMES_MAX / 4;

	for (unsigned extra = 0; extra < 2; extra++) {
		buf_init(&b, SIZE_MAX);
		buf_append_str(&b, "a NOTIFY SET");
		for (unsigned g = 0; g < 4; g++) {
			buf_append_str(&b, " (mailboxes (");
			for (unsigned i = 0; i < per + (g == 3 ? extra : 0);
			    i++)
				buf_printf(&b, "%sG%uM%u", i > 0 ? " " : "",
				    g, i);
			buf_append_str(&b, ") NONE)");
		}
		buf_append_str(&b, "\r\n");
		t_limit(xstrdup(buf_cstr(&b)), extra ? TOOBIG : OK, extra ?
		    "names over four groups: N + 1" :
		    "names over four groups: N");
		buf_free(&b);
	}
}

/* Hostile: each of a set of inputs, then every prefix cut short and
 * closed off, must never crash and never be accepted as OK unless whole. */
static void
test_hostile(void)
{
	static const char *const base = "a NOTIFY SET STATUS (selected "
	    "(MessageNew (UID FLAGS) MessageExpunge FlagChange)) (subtree "
	    "(\"A\" B) (MessageNew MessageExpunge MailboxName))\r\n";
	struct imap_notify_spec spec;
	const char *error;
	char line[512];
	size_t len = strlen(base) - 2;
	unsigned accepted = 0, refused = 0, unparsed = 0;
	int ret;

	for (size_t cut = 0; cut < len; cut++) {
		/* The line cut at cut bytes, its lists closed as far as
		 * the IMAP parser needs to take it. */
		int depth = 0;
		size_t n = 0;

		for (size_t i = 0; i < cut; i++) {
			line[n++] = base[i];
			depth += base[i] == '(' ? 1 : base[i] == ')' ? -1 : 0;
		}
		while (depth-- > 0)
			line[n++] = ')';
		memcpy(line + n, "\r\n", 3);
		ret = 99;
		error = NULL;
		if (!t_parse(line, true, &spec, &ret, &error))
			unparsed++;
		else if (ret == OK)
			accepted++;
		else
			refused++;
		imap_notify_spec_free(&spec);
	}
	diag("cut lines: %u accepted, %u refused, %u not IMAP", accepted,
	    refused, unparsed);
	ok(refused > 0, "cut lines are refused");
	ok(accepted < 30, "only cuts at a group's end are accepted");
	/* Nesting past the IMAP parser's depth never reaches NOTIFY. */
	{
		struct buf b;

		buf_init(&b, SIZE_MAX);
		buf_append_str(&b, "a NOTIFY SET ");
		for (unsigned i = 0; i <= IMAP_PARSER_DEPTH_MAX; i++)
			buf_append_byte(&b, '(');
		for (unsigned i = 0; i <= IMAP_PARSER_DEPTH_MAX; i++)
			buf_append_byte(&b, ')');
		buf_append_str(&b, "\r\n");
		ok(!t_parse(buf_cstr(&b), true, &spec, &ret, &error),
		    "%u nested lists: refused by the command parser",
		    IMAP_PARSER_DEPTH_MAX + 1);
		buf_free(&b);
	}
	/* Control bytes in a literal name are a name, not syntax. */
	ret = 99;
	ok(t_parse("a NOTIFY SET (mailboxes {3+}\r\na\x01) (MailboxName))"
	    "\r\n", false, &spec, &ret, &error) && ret == OK &&
	    spec.groups[0].nnames == 1 &&
	    memcmp(spec.groups[0].names[0], "a\x01)", 4) == 0,
	    "a literal name holding ')' and a control byte");
	imap_notify_spec_free(&spec);
}

int
main(void)
{
	test_cases(false);
	test_cases(true);
	test_spec();
	test_limits();
	test_names_across();
	test_hostile();
	return done_testing();
}
