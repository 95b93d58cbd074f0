/*
 * Unit tests for the query side of smtp/smtp_mx.c (smtp_mx_lookup) with
 * the resolver's res_nsend replaced by the fake below (a definition in
 * the program wins over libc's): what glibc does when every name server
 * refused the query (SERVFAIL, NOTIMP, REFUSED: -1 with ETIMEDOUT, the
 * last refusal left in the answer buffer) is reported as that refusal,
 * a temporary failure; a left-over header that does not answer our query
 * (another ID, no QR bit, another opcode, another rcode) and an untouched
 * buffer are reported as the error they came with; an answer with an MX
 * record goes on to the host's address (localhost, from /etc/hosts).
 * A separate program from t/unit/smtp_mx.c, whose live lookup needs the
 * real resolver.
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_mx.h"
#include "tap.h"

/* What the fake res_nsend does on its next call. */
static struct {
	int ret;			/* returned */
	int err;			/* errno set */
	bool leave;			/* write hdr (or answer) into ans */
	bool answer;			/* a full answer: question + one MX */
	int id_delta;			/* added to the query's ID */
	unsigned flags;			/* of the header left */
	unsigned calls;
} fake;

int
res_nsend(res_state st, const unsigned char *q, int qlen,
    unsigned char *ans, int anslen)
{
	static const unsigned char mx[] = {
		0xc0, 12, 0, ns_t_mx, 0, ns_c_in, 0, 0, 0, 60, 0, 13,
		0, 10, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0 };
	unsigned id;
	size_t n = 12;

	(void)st;
	fake.calls++;
	if (qlen < 12 || anslen < qlen + (int)sizeof(mx))
		bail("fake res_nsend: unexpected sizes %d %d", qlen, anslen);
	if (fake.leave) {
		id = ((unsigned)q[0] << 8 | q[1]) + (unsigned)fake.id_delta;
		memcpy(ans, q, (size_t)qlen);
		ans[0] = (unsigned char)(id >> 8);
		ans[1] = (unsigned char)id;
		ans[2] = (unsigned char)(fake.flags >> 8);
		ans[3] = (unsigned char)fake.flags;
		if (fake.answer) {
			ans[7] = 1;		/* ANCOUNT */
			memcpy(ans + qlen, mx, sizeof(mx));
			n = (size_t)qlen + sizeof(mx);
		}
	}
	errno = fake.err;
	return fake.ret < 0 ? fake.ret : (int)n;
}

/* lookup: smtp_mx_lookup of example.test with the fake set to leave a
 * header with flags (or nothing), return ret with errno err. */
static int
lookup(bool leave, int id_delta, unsigned flags, int ret, int err,
    const char **dsn_r, const char **error_r)
{
	struct smtp_mx_list *l = NULL;
	int r;

	memset(&fake, 0, sizeof(fake));
	fake.leave = leave;
	fake.id_delta = id_delta;
	fake.flags = flags;
	fake.ret = ret;
	fake.err = err;
	*dsn_r = NULL;
	r = smtp_mx_lookup(NULL, "example.test", SMTP_MX_PORT, &l, dsn_r,
	    error_r);
	if (fake.calls != 1)
		diag("res_nsend called %u times", fake.calls);
	smtp_mx_list_free(&l);
	return r;
}

/* QR, opcode QUERY, RD, RA and rcode. */
#define RESP(rcode)	(0x8180u | (rcode))

static void
test_refusals(void)
{
	static const struct {
		unsigned rcode;
		const char *name;
	} t[] = {
		{ ns_r_servfail, "SERVFAIL" },
		{ ns_r_notimpl, "NOTIMP" },
		{ ns_r_refused, "REFUSED" },
	};
	const char *dsn, *error;
	char want[200];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		is_int(lookup(true, 0, RESP(t[i].rcode), -1, ETIMEDOUT, &dsn,
		    &error), SMTP_MX_TEMP, "every server answered %s: "
		    "temporary", t[i].name);
		is_string(dsn, "4.4.3", "  dsn 4.4.3");
		snprintf(want, sizeof(want), "DNS lookup of MX for "
		    "example.test failed: the name server answered %s",
		    t[i].name);
		is_string(error, want, "  the text names the answer, not a "
		    "timeout");
	}
}

static void
test_not_ours(void)
{
	static const struct {
		int id_delta;
		unsigned flags;
		const char *what;
	} t[] = {
		{ 1, RESP(ns_r_servfail), "another ID" },
		{ -1, RESP(ns_r_servfail), "another ID (below)" },
		{ 0, 0x0180u | ns_r_servfail, "no QR bit (a query)" },
		{ 0, RESP(ns_r_servfail) | 2u << 11, "opcode STATUS" },
		{ 0, RESP(ns_r_nxdomain), "rcode NXDOMAIN" },
		{ 0, RESP(ns_r_formerr), "rcode FORMERR" },
		{ 0, RESP(ns_r_noerror), "rcode NOERROR" },
	};
	const char *dsn, *error;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		is_int(lookup(true, t[i].id_delta, t[i].flags, -1, ETIMEDOUT,
		    &dsn, &error), SMTP_MX_TEMP, "left-over header with %s: "
		    "temporary", t[i].what);
		is_string(error, "DNS lookup of MX for example.test failed: "
		    "Connection timed out", "  reported as the timeout it "
		    "came with");
	}
	is_int(lookup(false, 0, 0, -1, ETIMEDOUT, &dsn, &error), SMTP_MX_TEMP,
	    "nothing left (a real timeout): temporary");
	is_string(error, "DNS lookup of MX for example.test failed: "
	    "Connection timed out", "  Connection timed out");
	is_string(dsn, "4.4.3", "  dsn 4.4.3");
	is_int(lookup(false, 0, 0, -1, ECONNREFUSED, &dsn, &error),
	    SMTP_MX_TEMP, "nothing left, ECONNREFUSED: temporary");
	is_string(error, "DNS lookup of MX for example.test failed: no "
	    "answer from the name servers", "  no answer from the name "
	    "servers");
}

static void
test_answers(void)
{
	struct smtp_mx_list *l = NULL;
	const char *dsn = NULL, *error = NULL;
	int r;

	memset(&fake, 0, sizeof(fake));
	fake.leave = fake.answer = true;
	fake.flags = RESP(ns_r_noerror);
	r = smtp_mx_lookup(NULL, "example.test", SMTP_MX_PORT, &l, &dsn,
	    &error);
	if (!ok(r == SMTP_MX_OK && l != NULL, "an answer with MX 10 "
	    "localhost: OK"))
		diag("%d %s", r, error != NULL ? error : "");
	else {
		ok(l->mx && l->count == 1 && strcmp(l->hosts[0].name,
		    "localhost") == 0 && l->hosts[0].pref == 10,
		    "  one MX host, localhost, preference 10");
		ok(l->hosts[0].addr_count >= 1, "  with its address");
	}
	smtp_mx_list_free(&l);
	/* A refusal returned as an answer (res_nsend can: RES_DEBUG-ish
	 * callers) still goes through the parser. */
	memset(&fake, 0, sizeof(fake));
	fake.leave = true;
	fake.flags = RESP(ns_r_servfail);
	r = smtp_mx_lookup(NULL, "example.test", SMTP_MX_PORT, &l, &dsn,
	    &error);
	is_int(r, SMTP_MX_TEMP, "SERVFAIL returned as an answer: temporary");
	is_string(error, "DNS lookup failed (rcode 2: SERVFAIL)",
	    "  the parser's text");
	fake.flags = RESP(ns_r_nxdomain);
	r = smtp_mx_lookup(NULL, "example.test", SMTP_MX_PORT, &l, &dsn,
	    &error);
	is_int(r, SMTP_MX_PERM, "NXDOMAIN returned as an answer: permanent");
	is_string(dsn, "5.1.2", "  dsn 5.1.2");
}

int
main(void)
{
	test_refusals();
	test_not_ours();
	test_answers();
	return done_testing();
}
