/*
 * t/unit/imap_url.c: the IMAP URL parser of CATENATE (server/imap/imap_url.c):
 * the forms RFC 4469 and RFC 5092 allow, every part decoded, and hostile
 * input refused: "..", ".", empty levels, "%2F" making one, NUL and
 * control bytes escaped, bad escapes, overlong and zero-led numbers, a
 * part one byte past its maximum; every prefix of a valid URL, byte by
 * byte, either refused or a different URL, never read past its end.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/imap/imap_url.h"
#include "t/unit/tap.h"

static int
parse(const char *text, struct imap_url *u)
{
	const char *error;

	return imap_url_parse(text, u, &error);
}

static void
test_good(void)
{
	struct imap_url u;

	is_int(parse("/INBOX;UIDVALIDITY=1700000000/;UID=20", &u), 0,
	    "relative, UIDVALIDITY");
	is_string(u.mailbox, "INBOX", "mailbox");
	ok(u.uidvalidity == 1700000000 && u.uid == 20, "numbers");
	is_string(u.user, "", "no user");
	ok(u.section[0] == '\0' && !u.partial, "no section, no partial");

	is_int(parse("/INBOX/;UID=7", &u), 0, "no UIDVALIDITY");
	ok(u.uidvalidity == 0 && u.uid == 7 && strcmp(u.mailbox, "INBOX") == 0,
	    "the / before ;UID is not the mailbox's");

	is_int(parse("/Archive/2024%20Q1;uidvalidity=5/;uid=4294967295"
	    "/;section=1.2.HEADER.FIELDS%20(From%20To)/;partial=0.100", &u), 0,
	    "levels, escapes, any case, every part");
	is_string(u.mailbox, "Archive/2024 Q1", "levels kept, %%20 decoded");
	ok(u.uid == 4294967295u, "UID at 2^32-1");
	is_string(u.section, "1.2.HEADER.FIELDS (From To)", "section decoded");
	ok(u.partial && u.origin == 0 && u.length == 100, "partial 0.100");

	is_int(parse("/INBOX/;UID=3/;PARTIAL=12", &u), 0, "partial, no length");
	ok(u.partial && u.origin == 12 && u.length == 0, "origin only");

	is_int(parse("/Entw%C3%BCrfe/;UID=1", &u), 0, "UTF-8 escaped");
	is_string(u.mailbox, "Entw\xc3\xbcrfe", "decoded UTF-8 bytes");

	is_int(parse("imap://alice@mail.example.org/INBOX/;UID=9", &u), 0,
	    "absolute");
	is_string(u.user, "alice", "its user");
	is_int(parse("IMAP://al%40ice;AUTH=*@[::1]:143/INBOX/;UID=9", &u), 0,
	    "absolute with AUTH, IPv6 literal, port");
	is_string(u.user, "al@ice", "escaped @ in the user");
}

static void
test_bad(void)
{
	static const char *const bad[] = {
		"", "/", "INBOX/;UID=1", "/INBOX", "/INBOX;UIDVALIDITY=1",
		"/INBOX/;UID=", "/INBOX/;UID=0", "/INBOX/;UID=01",
		"/INBOX/;UID=4294967296", "/INBOX/;UID=99999999999999999999",
		"/INBOX/;UID=-1", "/INBOX/;UID=+1", "/INBOX/;UID=1x",
		"/INBOX;UIDVALIDITY=0/;UID=1", "/INBOX;UIDVALIDITY=4294967296/;UID=1",
		"/../INBOX/;UID=1", "/INBOX/../x/;UID=1", "/./INBOX/;UID=1",
		"/a/./b/;UID=1", "/a//b/;UID=1", "//INBOX/;UID=1",
		"/INBOX%2F/;UID=1", "/%2F/;UID=1", "/%2E%2E/;UID=1",
		"/a%2F%2Fb/;UID=1",
		"/IN%00BOX/;UID=1", "/IN%0ABOX/;UID=1", "/IN%7FBOX/;UID=1",
		"/IN%1/;UID=1", "/IN%G0/;UID=1", "/IN%/;UID=1",
		"/IN BOX/;UID=1", "/IN\"BOX/;UID=1", "/IN?BOX/;UID=1",
		"/IN#BOX/;UID=1", "/IN\x80" "BOX/;UID=1",
		"/INBOX/;UID=1/;SECTION=", "/INBOX/;UID=1/;SECTION=1%00",
		"/INBOX/;UID=1/;SECTION=1/x", "/INBOX/;UID=1/;PARTIAL=",
		"/INBOX/;UID=1/;PARTIAL=1.0", "/INBOX/;UID=1/;PARTIAL=01",
		"/INBOX/;UID=1/;PARTIAL=0.4294967296",
		"/INBOX/;UID=1/;PARTIAL=9223372036854775808",
		"/INBOX/;UID=1/", "/INBOX/;UID=1;x",
		"/INBOX/;UID=1/;PARTIAL=1/;SECTION=1",
		"imap:///INBOX/;UID=1", "imap://@host/INBOX/;UID=1",
		"imap://alice@/INBOX/;UID=1", "imap://alice/INBOX/;UID=1",
		"imap://alice;AUTH=@host/INBOX/;UID=1",
		"imap://alice@host", "imap://al%00ice@host/INBOX/;UID=1",
	};
	struct imap_url u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(parse(bad[i], &u) < 0, "refused: \"%s\"", bad[i]);
	/* Origin at 2^63 - 1 is the largest taken. */
	is_int(parse("/INBOX/;UID=1/;PARTIAL=9223372036854775807", &u), 0,
	    "PARTIAL origin at 2^63-1");
}

/* Limits at N and N + 1: the mailbox (decoded), the section, the URL. */
static void
test_limits(void)
{
	struct imap_url u;
	size_t n = IMAP_URL_MAILBOX_MAX;
	char *t = malloc(IMAP_URL_MAX + 64);

	t[0] = '/';
	memset(t + 1, 'a', n);
	strcpy(t + 1 + n, "/;UID=1");
	is_int(parse(t, &u), 0, "mailbox of the maximum");
	t[0] = '/';
	memset(t + 1, 'a', n + 1);
	strcpy(t + 2 + n, "/;UID=1");
	ok(parse(t, &u) < 0, "mailbox one byte over");
	/* The same as escapes: the decoded length counts. */
	strcpy(t, "/");
	for (size_t i = 0; i < n; i++)
		strcat(t, "%41");
	strcat(t, "/;UID=1");
	is_int(parse(t, &u), 0, "escaped mailbox of the maximum");
	strcpy(t, "/");
	for (size_t i = 0; i < n + 1; i++)
		strcat(t, "%41");
	strcat(t, "/;UID=1");
	ok(parse(t, &u) < 0, "escaped mailbox one over");

	strcpy(t, "/INBOX/;UID=1/;SECTION=");
	memset(t + strlen(t), '1', IMAP_URL_SECTION_MAX);
	t[23 + IMAP_URL_SECTION_MAX] = '\0';
	is_int(parse(t, &u), 0, "section of the maximum");
	strcat(t, "1");
	ok(parse(t, &u) < 0, "section one over");

	/* The URL itself: IMAP_URL_MAX bytes taken, one more refused. */
	strcpy(t, "/INBOX/;UID=1/;SECTION=");
	memset(t + strlen(t), '1', IMAP_URL_MAX - strlen(t));
	t[IMAP_URL_MAX] = '\0';
	ok(parse(t, &u) < 0 && strlen(t) == IMAP_URL_MAX,
	    "a URL of the maximum gets past the length check (the section "
	    "is too long)");
	t[IMAP_URL_MAX] = '1';
	t[IMAP_URL_MAX + 1] = '\0';
	ok(parse(t, &u) < 0, "URL one byte over");
	free(t);
}

/* Each prefix of a valid URL, copied to a buffer of exactly its length
 * (ASan sees a read past it): refused, or parsed to something else. */
static void
test_prefixes(void)
{
	static const char full[] = "imap://alice@h/Sent/2024;UIDVALIDITY=77"
	    "/;UID=123/;SECTION=2.MIME/;PARTIAL=5.10";
	struct imap_url want, u;
	int bad = 0;

	is_int(parse(full, &want), 0, "the full URL parses");
	for (size_t n = 0; n < sizeof(full) - 1; n++) {
		char *p = malloc(n + 1);

		memcpy(p, full, n);
		p[n] = '\0';
		if (parse(p, &u) == 0 && memcmp(&u, &want, sizeof(u)) == 0)
			bad++;
		free(p);
	}
	is_int(bad, 0, "no proper prefix, byte by byte, parses as the whole");
	is_int(parse("/Sent/;UID=12", &u), 0, "a prefix that is a URL itself");
	ok(u.uid == 12, "is that URL");
}

int
main(void)
{
	test_good();
	test_bad();
	test_limits();
	test_prefixes();
	return done_testing();
}
