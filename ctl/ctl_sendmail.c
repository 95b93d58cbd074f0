/*
 * ctl_sendmail.c: the sendmail-compatible command (installed as
 * $sbindir/sendmail, a link to loftctl, and as `loftctl sendmail`):
 * local programs (cron, mutt, PHP's mail(), logwatch) hand it a message
 * on standard input, and it drops the message into the queue's maildrop
 * (smtp/smtp_pickup), whether loftd runs or not, and wakes the pickup.
 *
 *   sendmail [-t] [-i|-oi] [-f sender] [-F fullname] [-C config]
 *       [ignored options] [--] [recipient ...]
 *   sendmail -bs	SMTP on standard input and output, into the maildrop
 *   sendmail -bp	mailq;  -bi, -I: newaliases;  -q: queue flush
 *
 * Options Postfix's sendmail(1) accepts and ignores are accepted and
 * ignored here (-B, -G, -h, -L, -N, -n, -O, -R, -U, -V, -v, -X, -c, -m,
 * -x, -A, -e, -p, and -o with anything but i: -oem, -odi, -odb, -oQ...).
 * -r is -f. Exit codes (sysexits): 0 only once the message is fsynced
 * into the maildrop; 64 bad arguments, 65 a message or address that
 * breaks a limit or does not parse, 67 an invoking uid without a passwd
 * entry, 75 anything that may work later (no maildrop, a full disk, an
 * unreadable configuration).
 *
 * No privilege: it runs as whoever calls it, and can do nothing a local
 * user cannot do with a file: the pickup trusts nothing in the file, and
 * takes the user from the file's owner.
 *
 * Trusts: the configuration. Does not trust: the message and arguments
 * (bounded, checked before a file is written), though they are the
 * caller's own.
 */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "ctl.h"
#include "log.h"
#include "msg.h"
#include "xmalloc.h"
#include "smtp/smtp_pickup.h"
#include "smtp/smtp_session.h"

#define CTL_SENDMAIL_READ		65536	/* stdin read at a time */
/* A header value (To:, Cc:, Bcc:) unfolded: the text line limit. */
#define CTL_SENDMAIL_VALUE_MAX	SMTP_TEXT_LINE_DEFAULT

enum ctl_sendmail_mode {
	CTL_SENDMAIL_DELIVER,	/* -bm, the default */
	CTL_SENDMAIL_SMTP,		/* -bs */
	CTL_SENDMAIL_MAILQ,		/* -bp */
	CTL_SENDMAIL_NEWALIASES,	/* -bi, -I */
	CTL_SENDMAIL_FLUSH		/* -q */
};

/* The recipients, in order, without duplicates; owned. */
struct ctl_sendmail_rcpts {
	char **v;
	unsigned int count, alloc;
};

struct ctl_sendmail {
	enum ctl_sendmail_mode mode;
	const char *config;		/* -C, or NULL */
	const char *sender;		/* -f/-r as given, or NULL */
	const char *fullname;		/* -F, or NULL */
	bool extract;			/* -t */
	bool ignore_dots;		/* -i, -oi */
	struct smtp_pickup_limits lim;
	struct ctl_sendmail_rcpts rcpts;
	char maildrop[PATH_MAX];
	char fifo[PATH_MAX];
};

static int
ctl_sendmail_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "sendmail: %s\n", why);
	fprintf(stderr, "usage: sendmail [-t] [-i] [-f sender] [-F fullname] "
	    "[-C config] [recipient ...]\n"
	    "       sendmail -bs | -bp | -bi | -q\n");
	return EX_USAGE;
}

/*
 * Recipients.
 */

static void
ctl_sendmail_rcpt_add(struct ctl_sendmail_rcpts *r, const char *addr,
    size_t len)
{
	for (unsigned int i = 0; i < r->count; i++)
		if (strlen(r->v[i]) == len && memcmp(r->v[i], addr, len) == 0)
			return;
	if (r->count == r->alloc) {
		r->alloc = r->alloc == 0 ? 16 : r->alloc * 2;
		r->v = xreallocarray(r->v, r->alloc, sizeof(*r->v));
	}
	r->v[r->count++] = xstrndup(addr, len);
}

static void
ctl_sendmail_rcpts_free(struct ctl_sendmail_rcpts *r)
{
	for (unsigned int i = 0; i < r->count; i++)
		free(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* The state of a walk over an RFC 5322 address list. */
struct ctl_sendmail_alist {
	struct buf word;	/* the mailbox's text outside comments */
	struct buf angle;	/* inside <...> */
	bool has_angle;
	bool in_angle;
	bool in_quote;
	unsigned int comment;	/* nesting depth */
};

/* ctl_sendmail_alist_end: a mailbox ends (',' ';' or the end): its address
 * is the <...> part if any, else the bare text. */
static void
ctl_sendmail_alist_end(struct ctl_sendmail_alist *a,
    struct ctl_sendmail_rcpts *out)
{
	struct buf *b = a->has_angle ? &a->angle : &a->word;
	size_t s = 0, e = b->len;

	while (s < e && (b->data[s] == ' ' || b->data[s] == '\t'))
		s++;
	while (e > s && (b->data[e - 1] == ' ' || b->data[e - 1] == '\t'))
		e--;
	if (e > s)
		ctl_sendmail_rcpt_add(out, (const char *)b->data + s, e - s);
	buf_truncate(&a->word, 0);
	buf_truncate(&a->angle, 0);
	a->has_angle = false;
}

/* ctl_sendmail_alist_byte: one byte outside a comment and a quote. */
static void
ctl_sendmail_alist_byte(struct ctl_sendmail_alist *a, unsigned char c,
    struct ctl_sendmail_rcpts *out)
{
	struct buf *b = a->in_angle ? &a->angle : &a->word;

	if (c == '"')
		a->in_quote = true;
	else if (c == '(') {
		a->comment = 1;
		return;
	} else if (c == '<' && !a->in_angle) {
		a->in_angle = a->has_angle = true;
		buf_truncate(&a->angle, 0);
		return;
	} else if (c == '>' && a->in_angle) {
		a->in_angle = false;
		return;
	} else if (!a->in_angle && (c == ',' || c == ';')) {
		ctl_sendmail_alist_end(a, out);
		return;
	} else if (!a->in_angle && c == ':') {
		buf_truncate(&a->word, 0);	/* a group's display name */
		return;
	} else if (c == '\r' || c == '\n')
		c = ' ';
	(void)buf_append_byte(b, c);
}

/*
 * ctl_sendmail_alist: the addresses of an address list (a To: value or a
 * command-line argument): "Name <a@b>", "a@b (Name)", "\"x, y\" <c@d>",
 * groups "list: a@b, c@d;". Only the address of each mailbox is kept,
 * with a source route's "@a:" left for the path parser to drop.
 */
static void
ctl_sendmail_alist(const unsigned char *v, size_t len,
    struct ctl_sendmail_rcpts *out)
{
	struct ctl_sendmail_alist a = { .comment = 0 };

	buf_init(&a.word, CTL_SENDMAIL_VALUE_MAX);
	buf_init(&a.angle, CTL_SENDMAIL_VALUE_MAX);
	for (size_t i = 0; i < len; i++) {
		struct buf *b = a.in_angle ? &a.angle : &a.word;

		if (a.comment > 0) {
			if (v[i] == '\\' && i + 1 < len)
				i++;
			else if (v[i] == '(')
				a.comment++;
			else if (v[i] == ')')
				a.comment--;
		} else if (a.in_quote) {
			(void)buf_append_byte(b, v[i]);
			if (v[i] == '\\' && i + 1 < len)
				(void)buf_append_byte(b, v[++i]);
			else if (v[i] == '"')
				a.in_quote = false;
		} else
			ctl_sendmail_alist_byte(&a, v[i], out);
	}
	ctl_sendmail_alist_end(&a, out);
	buf_free(&a.word);
	buf_free(&a.angle);
}

/* ctl_sendmail_check_addrs: each recipient (and the sender) valid as the
 * pickup will see it, and not too many. 0 or an exit code. */
static int
ctl_sendmail_check_addrs(const struct ctl_sendmail *sm, const char *sender)
{
	char out[SMTP_QUEUE_ADDR_MAX + 1];
	const char *origin = conf_str("myorigin"), *err;

	if (smtp_pickup_address(sender, origin, true, out, sizeof(out),
	    &err) < 0) {
		fprintf(stderr, "sendmail: bad sender address: %s\n", err);
		return EX_DATAERR;
	}
	if (sm->rcpts.count == 0) {
		fprintf(stderr, "sendmail: no recipients specified\n");
		return sm->extract ? EX_DATAERR : EX_USAGE;
	}
	if (sm->rcpts.count > sm->lim.rcpt_max) {
		fprintf(stderr, "sendmail: %u recipients: more than "
		    "smtpd_recipient_limit (%u)\n", sm->rcpts.count,
		    sm->lim.rcpt_max);
		return EX_DATAERR;
	}
	for (unsigned int i = 0; i < sm->rcpts.count; i++) {
		if (strlen(sm->rcpts.v[i]) > SMTP_QUEUE_ADDR_MAX ||
		    smtp_pickup_address(sm->rcpts.v[i], origin, false, out,
		    sizeof(out), &err) < 0) {
			fprintf(stderr, "sendmail: bad recipient address: "
			    "%s\n", strlen(sm->rcpts.v[i]) >
			    SMTP_QUEUE_ADDR_MAX ? "too long" : err);
			return EX_DATAERR;
		}
	}
	return 0;
}

/*
 * The message from standard input.
 */

/* ctl_sendmail_dot_line: whether data[from..) holds a complete line "." (LF
 * or CRLF); *end_r is where the scan stopped (the last line start). */
static bool
ctl_sendmail_dot_line(const struct buf *b, size_t *scan)
{
	const unsigned char *nl;
	size_t n;

	while (*scan < b->len && (nl = memchr(b->data + *scan, '\n',
	    b->len - *scan)) != NULL) {
		n = (size_t)(nl - (b->data + *scan));
		if ((n == 1 && b->data[*scan] == '.') || (n == 2 &&
		    b->data[*scan] == '.' && b->data[*scan + 1] == '\r'))
			return true;
		*scan += n + 1;
	}
	return false;
}

/* ctl_sendmail_read: the message into b: to the end of input, or without
 * -i to a line "." alone. 0, or an exit code (said why). */
static int
ctl_sendmail_read(const struct ctl_sendmail *sm, struct buf *b)
{
	unsigned char chunk[CTL_SENDMAIL_READ];
	size_t scan = 0;
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "sendmail: reading the message: %s\n",
			    strerror(errno));
			return EX_IOERR;
		}
		if (n == 0)
			return 0;
		if (buf_append(b, chunk, (size_t)n) < 0) {
			fprintf(stderr, "sendmail: message too large: "
			    "message_size_limit is %llu bytes\n",
			    (unsigned long long)sm->lim.size_max);
			return EX_DATAERR;
		}
		if (!sm->ignore_dots && ctl_sendmail_dot_line(b, &scan)) {
			buf_truncate(b, scan);
			return 0;
		}
	}
}

/* What -t finds in the header: recipients, and the Bcc: fields to cut. */
struct ctl_sendmail_hdr {
	struct ctl_sendmail *sm;
	const unsigned char *base;
	size_t cut_from[64], cut_len[64];	/* Bcc: fields */
	unsigned int cuts;
	bool too_many;
};

static int
ctl_sendmail_hdr_field(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct ctl_sendmail_hdr *h = ctx;
	bool bcc = name_len == 3 && strncasecmp((const char *)name, "Bcc",
	    3) == 0;
	struct buf v;

	if (bcc) {
		if (h->cuts == sizeof(h->cut_from) / sizeof(h->cut_from[0])) {
			h->too_many = true;
			return 1;
		}
		h->cut_from[h->cuts] = (size_t)(raw - h->base);
		h->cut_len[h->cuts++] = raw_len;
	}
	if (!h->sm->extract || !(bcc || (name_len == 2 &&
	    strncasecmp((const char *)name, "To", 2) == 0) || (name_len == 2 &&
	    strncasecmp((const char *)name, "Cc", 2) == 0)))
		return 0;
	buf_init(&v, CTL_SENDMAIL_VALUE_MAX);
	(void)msg_header_value(raw, raw_len, &v);
	ctl_sendmail_alist(v.data, v.len, &h->sm->rcpts);
	buf_free(&v);
	return 0;
}

/* ctl_sendmail_header: a leading "From " line dropped (as Postfix's
 * sendmail), -t's recipients taken, Bcc: fields removed. */
static int
ctl_sendmail_header(struct ctl_sendmail *sm, struct buf *msg)
{
	struct ctl_sendmail_hdr h = { .sm = sm };
	const unsigned char *nl;
	struct buf out;
	size_t pos = 0;

	if (msg->len >= 5 && memcmp(msg->data, "From ", 5) == 0) {
		nl = memchr(msg->data, '\n', msg->len);
		pos = nl != NULL ? (size_t)(nl - msg->data) + 1 : msg->len;
	}
	h.base = msg->data;
	if (msg->len > pos && msg_header_iter(msg->data + pos, msg->len - pos,
	    ctl_sendmail_hdr_field, &h, NULL) != 0 && h.too_many) {
		fprintf(stderr, "sendmail: more than 64 Bcc: fields\n");
		return EX_DATAERR;
	}
	buf_init(&out, msg->max);
	for (unsigned int i = 0; i <= h.cuts; i++) {
		size_t end = i < h.cuts ? h.cut_from[i] : msg->len;

		(void)buf_append(&out, msg->data + pos, end - pos);
		if (i < h.cuts)
			pos = h.cut_from[i] + h.cut_len[i];
	}
	buf_free(msg);
	*msg = out;
	return 0;
}

/*
 * The maildrop.
 */

static int
ctl_sendmail_paths(struct ctl_sendmail *sm)
{
	const char *q = conf_str("queue_directory");

	if (q[0] != '/' || (size_t)snprintf(sm->maildrop, sizeof(sm->maildrop),
	    "%s/%s", q, SMTP_PICKUP_MAILDROP) >= sizeof(sm->maildrop) ||
	    (size_t)snprintf(sm->fifo, sizeof(sm->fifo), "%s/%s", q,
	    SMTP_PICKUP_FIFO) >= sizeof(sm->fifo)) {
		fprintf(stderr, "sendmail: queue_directory %s: not an "
		    "absolute path of a usable length\n", q);
		return EX_TEMPFAIL;
	}
	return 0;
}

/* ctl_sendmail_drop: the message into the maildrop, the pickup woken. 0, or
 * an exit code. */
static int
ctl_sendmail_drop(const struct ctl_sendmail *sm, const char *sender,
    const char *fullname, const unsigned char *content, size_t len,
    char name_r[SMTP_PICKUP_NAME_MAX])
{
	const char *err;
	struct buf file;
	int r = 0;

	buf_init(&file, (size_t)-1);
	if (smtp_pickup_format(&file, sender, fullname, sm->rcpts.v,
	    sm->rcpts.count, content, len, &err) < 0) {
		fprintf(stderr, "sendmail: %s\n", err);
		r = EX_DATAERR;
	} else if (smtp_pickup_drop(sm->maildrop, file.data, file.len, name_r,
	    &err) < 0) {
		fprintf(stderr, "sendmail: cannot queue the message: %s%s\n",
		    err, errno == ENOENT || errno == EACCES ? " (loftd makes "
		    "the maildrop when its queue manager starts)" : "");
		r = EX_TEMPFAIL;
	} else
		(void)smtp_pickup_wake(sm->fifo);
	buf_free(&file);
	return r;
}

/* ctl_sendmail_identity: the sender (-f, else the login name) and the full
 * name (-F, else the passwd entry's, unless -f named someone else). */
static int
ctl_sendmail_identity(const struct ctl_sendmail *sm, char *sender, size_t ssize,
    char *fullname, size_t fsize)
{
	struct passwd *pw = getpwuid(getuid());
	const char *f = sm->sender;
	size_t n;

	fullname[0] = '\0';
	if (sm->fullname != NULL)
		strlcpy(fullname, sm->fullname, fsize);
	if (f != NULL) {
		n = strlen(f);
		if (n >= 2 && f[0] == '<' && f[n - 1] == '>') {
			f++;
			n -= 2;
		}
		if (n >= ssize) {
			fprintf(stderr, "sendmail: sender address too long\n");
			return EX_USAGE;
		}
		memcpy(sender, f, n);
		sender[n] = '\0';
		return 0;
	}
	if (pw == NULL) {
		fprintf(stderr, "sendmail: uid %lu has no passwd entry: give "
		    "the sender with -f\n", (unsigned long)getuid());
		return EX_NOUSER;
	}
	strlcpy(sender, pw->pw_name, ssize);
	if (sm->fullname == NULL && pw->pw_gecos != NULL) {
		strlcpy(fullname, pw->pw_gecos, fsize);
		fullname[strcspn(fullname, ",")] = '\0';
	}
	/* Control bytes have no place in a From: phrase. */
	for (char *p = fullname; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return 0;
}

static int
ctl_sendmail_deliver(struct ctl_sendmail *sm)
{
	char sender[SMTP_QUEUE_ADDR_MAX + 3], name[SMTP_PICKUP_NAME_MAX];
	char fullname[SMTP_PICKUP_FULLNAME_MAX + 1];
	struct buf msg;
	const char *err;
	uint64_t max = sm->lim.size_max == 0 ? SMTP_PICKUP_HARD_MAX :
	    sm->lim.size_max;
	int r;

	if ((r = ctl_sendmail_identity(sm, sender, sizeof(sender), fullname,
	    sizeof(fullname))) != 0)
		return r;
	if (!sm->extract && sm->rcpts.count == 0)
		return ctl_sendmail_usage("no recipients specified");
	/* Content as read is never longer than as counted (CRLF). */
	buf_init(&msg, (size_t)max);
	if ((r = ctl_sendmail_read(sm, &msg)) == 0 &&
	    (r = ctl_sendmail_header(sm, &msg)) == 0 &&
	    (r = ctl_sendmail_check_addrs(sm, sender)) == 0) {
		if (smtp_pickup_content_check(msg.data, msg.len, &sm->lim,
		    NULL, &err) < 0) {
			fprintf(stderr, "sendmail: %s\n", err);
			r = EX_DATAERR;
		} else
			r = ctl_sendmail_drop(sm, sender, fullname, msg.data,
			    msg.len, name);
	}
	buf_free(&msg);
	return r;
}

/*
 * -bs: SMTP on standard input and output, each message into the
 * maildrop (no network, no daemon needed).
 */

struct ctl_sendmail_smtp {
	struct ctl_sendmail *sm;
	struct smtp_session *s;
	char sender[SMTP_PATH_MAX + 3];
	struct buf data;
	bool closed;
	bool write_failed;
};

static void
ctl_sendmail_smtp_write(void *ctx, const unsigned char *data, size_t len)
{
	struct ctl_sendmail_smtp *c = ctx;
	ssize_t n;

	while (len > 0 && !c->write_failed) {
		n = write(STDOUT_FILENO, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->write_failed = true;
			return;
		}
		data += n;
		len -= (size_t)n;
	}
}

/* ctl_sendmail_smtp_path: p without its angle brackets. */
static void
ctl_sendmail_smtp_path(const struct smtp_path *p, char *out, size_t size)
{
	char text[SMTP_PATH_MAX + 3];
	size_t n;

	smtp_path_format(p, text, sizeof(text));
	n = strlen(text);
	if (n < 2 || n - 2 >= size) {
		out[0] = '\0';
		return;
	}
	memcpy(out, text + 1, n - 2);
	out[n - 2] = '\0';
}

static void
ctl_sendmail_smtp_mail(void *ctx, const struct smtp_mail *m)
{
	struct ctl_sendmail_smtp *c = ctx;

	if (m->from->null)
		c->sender[0] = '\0';
	else
		ctl_sendmail_smtp_path(m->from, c->sender, sizeof(c->sender));
	smtp_session_reply(c->s, 250, "2.1.0", "Ok");
}

static void
ctl_sendmail_smtp_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	struct ctl_sendmail_smtp *c = ctx;
	char addr[SMTP_PATH_MAX + 3];

	ctl_sendmail_smtp_path(r->to, addr, sizeof(addr));
	if (r->to->postmaster)
		strlcpy(addr, "postmaster", sizeof(addr));
	if (addr[0] == '\0') {
		smtp_session_reply(c->s, 501, "5.1.3", "Bad recipient address");
		return;
	}
	ctl_sendmail_rcpt_add(&c->sm->rcpts, addr, strlen(addr));
	smtp_session_reply(c->s, 250, "2.1.5", "Ok");
}

static void
ctl_sendmail_smtp_data_begin(void *ctx)
{
	struct ctl_sendmail_smtp *c = ctx;

	buf_truncate(&c->data, 0);
}

static void
ctl_sendmail_smtp_data(void *ctx, const unsigned char *data, size_t len)
{
	struct ctl_sendmail_smtp *c = ctx;

	(void)buf_append(&c->data, data, len);
}

static void
ctl_sendmail_smtp_reset(void *ctx)
{
	struct ctl_sendmail_smtp *c = ctx;

	ctl_sendmail_rcpts_free(&c->sm->rcpts);
	buf_truncate(&c->data, 0);
}

static void
ctl_sendmail_smtp_data_end(void *ctx)
{
	struct ctl_sendmail_smtp *c = ctx;
	char name[SMTP_PICKUP_NAME_MAX], text[80];
	const char *err;

	if (smtp_pickup_content_check(c->data.data, c->data.len, &c->sm->lim,
	    NULL, &err) < 0)
		smtp_session_data_done(c->s, 552, "5.3.4", err);
	else if (ctl_sendmail_drop(c->sm, c->sender, "", c->data.data,
	    c->data.len, name) != 0)
		smtp_session_data_done(c->s, 451, "4.3.0",
		    "Error: cannot write to the maildrop");
	else {
		snprintf(text, sizeof(text), "Ok: queued as %s", name);
		smtp_session_data_done(c->s, 250, "2.0.0", text);
	}
	ctl_sendmail_smtp_reset(c);
}

static void
ctl_sendmail_smtp_closed(void *ctx)
{
	struct ctl_sendmail_smtp *c = ctx;

	c->closed = true;
}

static const struct smtp_callbacks ctl_sendmail_smtp_cb = {
	.write = ctl_sendmail_smtp_write,
	.mail = ctl_sendmail_smtp_mail,
	.rcpt = ctl_sendmail_smtp_rcpt,
	.data_begin = ctl_sendmail_smtp_data_begin,
	.data = ctl_sendmail_smtp_data,
	.data_end = ctl_sendmail_smtp_data_end,
	.reset = ctl_sendmail_smtp_reset,
	.closed = ctl_sendmail_smtp_closed,
};

static int
ctl_sendmail_smtp(struct ctl_sendmail *sm)
{
	struct ctl_sendmail_smtp c = { .sm = sm };
	struct smtp_settings set = {
		.hostname = conf_str("myhostname"),
		.extensions = SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |
		    SMTP_EXT_PIPELINING | SMTP_EXT_ENHANCED |
		    SMTP_EXT_SMTPUTF8 | SMTP_EXT_CHUNKING,
		.size_max = sm->lim.size_max,
		.rcpt_max = sm->lim.rcpt_max,
	};
	unsigned char in[CTL_SENDMAIL_READ];
	size_t used, k;
	ssize_t n;

	buf_init(&c.data, sm->lim.size_max == 0 ? SMTP_PICKUP_HARD_MAX :
	    (size_t)sm->lim.size_max + SMTP_DATA_CHUNK);
	c.s = smtp_session_new(&set, &ctl_sendmail_smtp_cb, &c);
	smtp_session_greet(c.s);
	while (!c.closed && !c.write_failed) {
		n = read(STDIN_FILENO, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		/* Every decision is made at once, so the engine takes all
		 * it is given until it closes. */
		for (used = 0; used < (size_t)n && !c.closed; used += k)
			if ((k = smtp_session_input(c.s, in + used,
			    (size_t)n - used)) == 0)
				break;
	}
	smtp_session_free(&c.s);
	buf_free(&c.data);
	ctl_sendmail_rcpts_free(&sm->rcpts);
	return c.write_failed ? EX_IOERR : 0;
}

/*
 * Arguments.
 */

/* ctl_sendmail_b: -bX. 0 or an exit code. */
static int
ctl_sendmail_b(struct ctl_sendmail *sm, const char *arg)
{
	if (strcmp(arg, "m") == 0)
		sm->mode = CTL_SENDMAIL_DELIVER;
	else if (strcmp(arg, "s") == 0)
		sm->mode = CTL_SENDMAIL_SMTP;
	else if (strcmp(arg, "p") == 0)
		sm->mode = CTL_SENDMAIL_MAILQ;
	else if (strcmp(arg, "i") == 0)
		sm->mode = CTL_SENDMAIL_NEWALIASES;
	else if (strcmp(arg, "d") == 0 || strcmp(arg, "D") == 0)
		return ctl_sendmail_usage("-bd: the daemon is loftd");
	else
		return ctl_sendmail_usage("unsupported -b mode");
	return 0;
}

static int
ctl_sendmail_options(struct ctl_sendmail *sm, int argc, char **argv)
{
	int ch, r;

	optind = 1;
	opterr = 1;
	while ((ch = getopt(argc, argv,
	    "+A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:q::r:tvx")) != -1) {
		switch (ch) {
		case 'b':
			if ((r = ctl_sendmail_b(sm, optarg)) != 0)
				return r;
			break;
		case 'C':
			sm->config = optarg;
			break;
		case 'F':
			sm->fullname = optarg;
			break;
		case 'f':
		case 'r':
			sm->sender = optarg;
			break;
		case 'I':
			sm->mode = CTL_SENDMAIL_NEWALIASES;
			break;
		case 'i':
			sm->ignore_dots = true;
			break;
		case 'o':
			/* -oi; every other -o option is Postfix's to
			 * ignore (-oem, -odb, -odi, -oQ..., -om, -o7). */
			if (strcmp(optarg, "i") == 0)
				sm->ignore_dots = true;
			break;
		case 'q':
			sm->mode = CTL_SENDMAIL_FLUSH;
			break;
		case 't':
			sm->extract = true;
			break;
		case '?':
			return ctl_sendmail_usage(NULL);
		default:
			break;	/* accepted and ignored */
		}
	}
	return 0;
}

static int
ctl_sendmail_conf(const struct ctl_sendmail *sm)
{
	const char *err;

	if ((sm->config != NULL || conf_file() == NULL) &&
	    conf_load(sm->config != NULL ? sm->config : conf_default_path(),
	    &err) < 0) {
		fprintf(stderr, "sendmail: %s\n", err);
		return EX_TEMPFAIL;
	}
	return 0;
}

static int
ctl_sendmail_run(struct ctl_sendmail *sm, int argc, char **argv)
{
	char *mailq[] = { "mailq", NULL };
	char *newaliases[] = { "newaliases", NULL };
	char *flush[] = { "queue", "flush", NULL };
	int r;

	if ((r = ctl_sendmail_options(sm, argc, argv)) != 0 ||
	    (r = ctl_sendmail_conf(sm)) != 0)
		return r;
	smtp_pickup_limits_conf(&sm->lim);
	switch (sm->mode) {
	case CTL_SENDMAIL_MAILQ:
		return ctl_mailq_main(1, mailq);
	case CTL_SENDMAIL_NEWALIASES:
		return ctl_newaliases_main(1, newaliases);
	case CTL_SENDMAIL_FLUSH:
		optind = 1;
		return ctl_queue_main(2, flush);
	default:
		break;
	}
	if ((r = ctl_sendmail_paths(sm)) != 0)
		return r;
	if (sm->mode == CTL_SENDMAIL_SMTP)
		return argc > optind ? ctl_sendmail_usage("-bs takes no "
		    "recipients") : ctl_sendmail_smtp(sm);
	for (int i = optind; i < argc; i++)
		ctl_sendmail_alist((const unsigned char *)argv[i], strlen(argv[i]),
		    &sm->rcpts);
	return ctl_sendmail_deliver(sm);
}

int
ctl_sendmail_main(int argc, char **argv)
{
	struct ctl_sendmail sm = { .mode = CTL_SENDMAIL_DELIVER };
	int r;

	log_open("sendmail", LOG_DEST_STDERR);
	r = ctl_sendmail_run(&sm, argc, argv);
	ctl_sendmail_rcpts_free(&sm.rcpts);
	return r;
}
