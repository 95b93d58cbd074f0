/*
 * imap_cmd_write.c: the IMAP commands that change mail: STORE, EXPUNGE,
 * COPY, MOVE (each also as UID command; UID EXPUNGE of RFC 4315), APPEND
 * (its message streamed into an unlinked temporary file), CREATE, DELETE,
 * RENAME, SUBSCRIBE and UNSUBSCRIBE, and CLOSE's silent expunge. The
 * storage work is lib/store.h's; this file turns the client's sets into
 * UIDs of the view, store_op outcomes into RFC 5530 response codes, and
 * reports what changed (FETCH FLAGS, EXPUNGE, EXISTS, COPYUID,
 * APPENDUID). STORE takes RFC 7162's (UNCHANGEDSINCE n) and answers
 * [MODIFIED set]; with CONDSTORE on its FETCH responses carry MODSEQ;
 * with QRESYNC on, expunges are told as VANISHED (imap_mailbox.c).
 *
 * Choices: keywords are stored (PERMANENTFLAGS has \*; lib/store.h says
 * where they live and their limits): STORE and APPEND take any
 * flag-keyword atom of 1..STORE_KEYWORD_MAX bytes, at most
 * STORE_KEYWORDS_MAX in one command; more, a longer name, a message that
 * would pass STORE_KEYWORDS_MAX or a Maildir folder that would need a
 * 27th keyword is "NO [LIMIT]", and nothing changes. A keyword new to
 * the folder is announced by "* FLAGS" and "* OK [PERMANENTFLAGS]"
 * before the FETCH that shows it (here, and to the other sessions at
 * their next sync). \Recent is ignored; "\*" and any other "\X" are
 * BAD, as is an atom with characters no flag-keyword has. $Forwarded is
 * the flag Maildir writes "P". SUBSCRIBE and UNSUBSCRIBE check the name
 * and change the user's subscriptions (imap_list.c keeps them; RENAME
 * moves them along).
 *
 * APPEND takes several messages (MULTIAPPEND, RFC 3502), each with its
 * own flags and date, each a literal or a literal8 (RFC 3516: stored as
 * sent, NUL bytes and all). They are all received before anything is
 * stored, then stored all or none (store_append_multi), and APPENDUID
 * gives their UIDs as a set, in the order of the messages ("5:7").
 * After ENABLE UTF8=ACCEPT a message may also come as "UTF8 (~{n})" (RFC
 * 6855 section 4), stored as sent like any other; before it, that form
 * is BAD, as the RFC asks. A message may also be a CATENATE (RFC 4469)
 * of TEXT literals and IMAP URLs of the user's own messages or their
 * sections (imap_url.c parses them; a URL of another user, another
 * UIDVALIDITY or no such message or section is NO [BADURL "url"]); it is
 * put together at the end of the same temporary file, held to
 * APPENDLIMIT (NO [TOOBIG]), and stored all or none with the others. A
 * TEXT literal counts as one of the command's literals for the limits.
 *
 * Trusts nothing from the client: arguments come through the parser's
 * accessors, sets through imap_seqset and are cut to the view, names
 * through imap_mailbox_from_wire and the store's name rules, each APPEND
 * literal's size is checked against IMAP_APPEND_LIMIT, and the command's
 * count and total against IMAP_MULTIAPPEND_MAX and
 * IMAP_APPEND_TOTAL_LIMIT, before any continuation. Trusts the store and
 * the index.
 */
#include "config.h"

#include <sys/mman.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "compat/compat.h"
#include "log.h"
#include "mindex.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_seqset.h"
#include "server/imap/imap_url.h"

#define IMAP_WRITE_NAME_MAX	1024	/* a decoded mailbox name */
/* Where APPEND's message waits: unlinked at once, so only this process
 * ever sees it. */
#define IMAP_APPEND_TMPDIR	"/tmp"
/* Output built before it is written, for long responses. */
#define IMAP_WRITE_FLUSH	(64 * 1024)
/* The longest COPYUID response code; past it, none is given (RFC 4315
 * lets a server leave it out). */
#define IMAP_COPYUID_MAX	(1024 * 1024)

enum imap_append_refusal {
	IMAP_APPEND_TAKEN,
	IMAP_APPEND_TOOBIG,		/* one message over APPENDLIMIT */
	IMAP_APPEND_TOTAL,		/* all of them over the total */
	IMAP_APPEND_MANY,		/* more than IMAP_MULTIAPPEND_MAX */
	IMAP_APPEND_NOTMP
};

/* One message of the command: where it lies in the file. */
struct imap_append_msg {
	uint64_t off;
	uint64_t size;			/* announced */
};

struct imap_append {
	int fd;				/* the unlinked file, or -1 */
	struct imap_append_msg *msgs;	/* owned; count in order */
	unsigned count, cap;
	uint64_t total;			/* announced, all messages */
	uint64_t got;			/* written of the last one */
	enum imap_append_refusal refused;
	int write_errno;		/* a write failed: the error */
};

/*
 * Replies.
 */

/* Answer a failed store operation with its RFC 5530 code. trycreate:
 * NONEXISTENT is about a target folder (APPEND, COPY, MOVE). */
static void
imap_op_no(struct imap_session *s, enum store_op op, bool trycreate,
    const char *error)
{
	switch (op) {
	case STORE_OP_BADNAME:
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
		break;
	case STORE_OP_EXISTS:
		imap_tagged(s, "NO", "[ALREADYEXISTS] Mailbox already exists");
		break;
	case STORE_OP_NONEXISTENT:
		imap_tagged(s, "NO", trycreate ? "[TRYCREATE] Mailbox does "
		    "not exist" : "[NONEXISTENT] Mailbox does not exist");
		break;
	case STORE_OP_CANNOT:
		imap_tagged(s, "NO", "[CANNOT] Not allowed for this mailbox");
		break;
	case STORE_OP_OVERQUOTA:
		imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
		break;
	case STORE_OP_INUSE:
		imap_tagged(s, "NO", "[INUSE] Mailbox is locked, try again");
		break;
	case STORE_OP_LIMIT:
		/* The store's text is its own, fixed ("a message has at
		 * most 64 keywords"), never client bytes. */
		imap_tagged(s, "NO", "[LIMIT] Too many keywords (%s)",
		    error != NULL ? error : "limit reached");
		break;
	default:
		log_error("imap: user=<%s>, mailbox operation failed (%s)",
		    s->user, error != NULL ? error : "unknown error");
		imap_tagged(s, "NO", "[UNAVAILABLE] Mail store error, try "
		    "again later");
		break;
	}
}

/*
 * Flags.
 */

/* Flags and keywords as the client gave them. */
struct imap_flags {
	uint32_t bits;		/* MINDEX_F_* */
	struct buf kw;		/* keywords as the index keeps them */
	unsigned nkw;
};

/* Bytes of STORE_KEYWORDS_MAX names with their NULs. */
#define IMAP_FLAGS_KW_BYTES	(STORE_KEYWORDS_MAX * (STORE_KEYWORD_MAX + 1))

static void
imap_flags_init(struct imap_flags *f)
{
	f->bits = 0;
	f->nkw = 0;
	buf_init(&f->kw, IMAP_FLAGS_KW_BYTES);
}

static void
imap_flags_free(struct imap_flags *f)
{
	buf_free(&f->kw);
}

/* One flag into f: 0 (a flag, a keyword, or \Recent, ignored), -1 for
 * what is no flag (BAD), -2 past a keyword limit (NO [LIMIT]). */
static int
imap_flag_one(const char *flag, struct imap_flags *f)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} map[] = {
		{ "\\Seen", MINDEX_F_SEEN },
		{ "\\Answered", MINDEX_F_ANSWERED },
		{ "\\Flagged", MINDEX_F_FLAGGED },
		{ "\\Deleted", MINDEX_F_DELETED },
		{ "\\Draft", MINDEX_F_DRAFT },
		{ "$Forwarded", MINDEX_F_FORWARDED },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasecmp(flag, map[i].name) == 0) {
			f->bits |= map[i].bit;
			return 0;
		}
	if (strcasecmp(flag, "\\Recent") == 0)
		return 0;
	if (flag[0] == '\\')
		return -1;
	/* Counted before any check of its own, so the work per command
	 * stays bounded whatever the list holds. */
	if (++f->nkw > STORE_KEYWORDS_MAX || strlen(flag) > STORE_KEYWORD_MAX)
		return -2;
	if (!store_keyword_valid(flag))
		return -1;
	if (buf_append(&f->kw, flag, strlen(flag) + 1) < 0)
		return -2;
	return 0;
}

/* Flags as n atoms, or one list when list is set, into f (initialised
 * here; freed by the caller also after a failure); -1 after BAD or NO. */
static int
imap_flags_parse(struct imap_session *s, const struct imap_arg *args,
    unsigned n, bool list, struct imap_flags *f)
{
	const char *flag, *error;
	unsigned count = n;
	int ret;

	imap_flags_init(f);
	if (list && imap_arg_list(args, &args, &count, &error) < 0) {
		imap_bad(s, error);
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		if (imap_arg_atom(&args[i], &flag, &error) < 0) {
			imap_bad(s, error);
			return -1;
		}
		if ((ret = imap_flag_one(flag, f)) == -2) {
			imap_tagged(s, "NO", "[LIMIT] At most %d keywords of "
			    "at most %d bytes each", STORE_KEYWORDS_MAX,
			    STORE_KEYWORD_MAX);
			return -1;
		}
		if (ret < 0) {
			imap_bad(s, flag[0] == '\\' ? "Invalid system flag" :
			    "Invalid keyword");
			return -1;
		}
	}
	return 0;
}

/*
 * Sets: the client's sequence or UID set, cut to the messages of the
 * view, as UID ranges for the store.
 */

struct imap_uids {
	struct store_uid_range *r;	/* owned */
	size_t count, cap;
};

static void
imap_uids_add(struct imap_uids *u, uint32_t uid)
{
	if (u->count > 0 && u->r[u->count - 1].last + 1 == uid) {
		u->r[u->count - 1].last = uid;
		return;
	}
	if (u->count == u->cap) {
		u->cap = u->cap == 0 ? 16 : u->cap * 2;
		u->r = xreallocarray(u->r, u->cap, sizeof(*u->r));
	}
	u->r[u->count].first = u->r[u->count].last = uid;
	u->count++;
}

/* text NULL: every message of the view. -1 after BAD. */
static int
imap_uids_from(struct imap_session *s, const char *text, bool uid,
    struct imap_uids *u)
{
	const struct imap_view *v = &s->view;
	struct imap_seqset set;
	const char *error;
	uint32_t max;

	memset(u, 0, sizeof(*u));
	if (text == NULL) {
		for (unsigned i = 0; i < v->count; i++)
			imap_uids_add(u, v->msgs[i].uid);
		return 0;
	}
	max = uid ? (v->count > 0 ? v->msgs[v->count - 1].uid : 0) : v->count;
	imap_seqset_init(&set);
	if (imap_seqset_parse(&set, text, max, &error) < 0 ||
	    (set.searchres && set.count > 0)) {
		if (set.searchres)
			error = "$ must stand alone";
		imap_seqset_deinit(&set);
		imap_bad(s, error);
		return -1;
	}
	/* "$": the result SEARCH saved (RFC 5182), empty if none. */
	if (set.searchres)
		imap_search_saved_set(s, uid, &set);
	if (!uid && imap_seqset_last(&set) > v->count) {
		imap_seqset_deinit(&set);
		imap_bad(s, "Message sequence number out of range");
		return -1;
	}
	for (unsigned i = 0; i < v->count; i++)
		if (imap_seqset_contains(&set, uid ? v->msgs[i].uid : i + 1))
			imap_uids_add(u, v->msgs[i].uid);
	imap_seqset_deinit(&set);
	return 0;
}

/* The view's index of uid, or -1. */
static long
imap_view_find(const struct imap_view *v, uint32_t uid)
{
	unsigned a = 0, z = v->count;

	while (a < z) {
		unsigned mid = a + (z - a) / 2;

		if (v->msgs[mid].uid == uid)
			return (long)mid;
		if (v->msgs[mid].uid < uid)
			a = mid + 1;
		else
			z = mid;
	}
	return -1;
}

/*
 * STORE.
 */

/* "+FLAGS.SILENT" and friends. -1 if it is none of them. */
static int
imap_store_item(const char *item, enum store_flags_how *how_r,
    bool *silent_r)
{
	*how_r = STORE_FLAGS_REPLACE;
	if (*item == '+' || *item == '-') {
		*how_r = *item == '+' ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE;
		item++;
	}
	*silent_r = strcasecmp(item, "FLAGS.SILENT") == 0;
	return *silent_r || strcasecmp(item, "FLAGS") == 0 ? 0 : -1;
}

/* One message's FETCH after STORE: FLAGS unless silent, MODSEQ once
 * CONDSTORE is on (even silent, for a message that changed: RFC 7162
 * section 3.1.3). */
static void
imap_store_fetch(struct imap_session *s, long at,
    const struct store_flag_result *r, bool uid, bool silent)
{
	bool modseq = s->condstore && (r->changed || !silent);

	if (silent && !modseq)
		return;
	buf_printf(&s->out, "* %ld FETCH (", at + 1);
	if (uid)
		buf_printf(&s->out, "UID %u ", r->uid);
	if (!silent) {
		buf_append_str(&s->out, "FLAGS ");
		imap_flags_write(r->flags, r->keywords, r->keywords_len,
		    &s->out);
		if (modseq)
			buf_append_byte(&s->out, ' ');
	}
	if (modseq)
		buf_printf(&s->out, "MODSEQ (%llu)",
		    (unsigned long long)imap_modseq_out(r->modseq));
	buf_append_str(&s->out, ")\r\n");
}

/* Record what the store did in the view and tell; the messages that
 * failed UNCHANGEDSINCE go to modified (as UIDs or sequence numbers),
 * unchanged. */
static void
imap_store_report(struct imap_session *s, const struct store_flag_result *res,
    size_t count, bool uid, bool silent, struct imap_seqset *modified)
{
	const char *error;

	/* Keywords new to the folder are announced before any FETCH. */
	for (size_t i = 0; i < count; i++)
		if (!res[i].modified)
			(void)imap_view_kw_names(&s->view, res[i].keywords,
			    res[i].keywords_len);
	(void)imap_view_kw_announce(s);
	for (size_t i = 0; i < count; i++) {
		long at = imap_view_find(&s->view, res[i].uid);

		if (at < 0)
			continue;
		if (res[i].modified) {
			(void)imap_seqset_add(modified, uid ? res[i].uid :
			    (uint32_t)at + 1, uid ? res[i].uid :
			    (uint32_t)at + 1, &error);
			continue;
		}
		s->view.msgs[at].flags = res[i].flags;
		s->view.msgs[at].modseq = res[i].modseq;
		s->view.msgs[at].kw = imap_view_kw_set(&s->view,
		    res[i].keywords, res[i].keywords_len);
		imap_store_fetch(s, at, &res[i], uid, silent);
		if (s->out.len >= IMAP_WRITE_FLUSH)
			imap_send(s);
	}
	imap_send(s);
}

/* STORE's optional (UNCHANGEDSINCE n) at args[1]: 1 given, 0 not, -1
 * after BAD. */
static int
imap_store_unchangedsince(struct imap_session *s, const struct imap_cmd *cmd,
    uint64_t *since_r)
{
	const struct imap_arg *l;
	const char *name, *error;
	unsigned n;

	*since_r = STORE_MODSEQ_NONE;
	if (cmd->argc < 2 || cmd->args[1].type != IMAP_ARG_LIST)
		return 0;
	if (imap_arg_list(&cmd->args[1], &l, &n, &error) < 0 || n != 2 ||
	    imap_arg_atom(&l[0], &name, &error) < 0 ||
	    strcasecmp(name, "UNCHANGEDSINCE") != 0 ||
	    imap_arg_number64(&l[1], since_r, &error) < 0) {
		imap_bad(s, "STORE modifier: (UNCHANGEDSINCE mod-sequence)");
		return -1;
	}
	return 1;
}

/* The tagged OK, with [MODIFIED set] when some failed UNCHANGEDSINCE. */
static void
imap_store_done(struct imap_session *s, bool uid,
    const struct imap_seqset *modified)
{
	struct buf b;

	if (modified->count == 0) {
		imap_tagged(s, "OK", "%sSTORE completed", uid ? "UID " : "");
		return;
	}
	/* The set may be longer than a reply line allows: built here. */
	buf_init(&b, 4 * 1024 * 1024);
	buf_printf(&b, "%s OK [MODIFIED ", s->tag);
	(void)imap_seqset_format(modified, &b);
	buf_printf(&b, "] Conditional %sSTORE failed\r\n", uid ? "UID " :
	    "");
	buf_append(&s->out, b.data, b.len);
	buf_free(&b);
	imap_send(s);
}

/* Change the flags and keywords (f) of the view's messages u as c says
 * and report it; false after NO. */
static bool
imap_store_run(struct imap_session *s, struct store *st,
    struct store_flags_change *c, const struct imap_flags *f,
    const struct imap_uids *u, bool uid, bool silent,
    struct imap_seqset *modified)
{
	struct store_uidset set = { u->r, u->count };
	struct store_flag_result *res = NULL;
	const char *error = NULL;
	size_t count = 0;
	enum store_op op;

	if (u->count == 0)
		return true;
	c->uids = &set;
	c->flags = f->bits;
	if ((op = store_flags_change_kw(st, s->view.name, c,
	    (const char *)f->kw.data, f->kw.len, &res, &count,
	    &error)) != STORE_OP_OK) {
		imap_op_no(s, op, false, error);
		return false;
	}
	imap_store_report(s, res, count, uid, silent, modified);
	free(res);
	return true;
}

void
imap_cmd_store(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct store_flags_change c;
	struct imap_seqset modified;
	struct imap_flags f;
	struct imap_uids u;
	struct store *st;
	const char *text, *item, *error;
	bool silent, list;
	int cond;
	unsigned a;

	memset(&c, 0, sizeof(c));
	if (cmd->argc < 3 ||
	    imap_arg_atom(&cmd->args[0], &text, &error) < 0 ||
	    (cond = imap_store_unchangedsince(s, cmd,
	    &c.unchangedsince)) < 0)
		goto bad;
	a = cond > 0 ? 2 : 1;
	if (cmd->argc < a + 2 ||
	    imap_arg_atom(&cmd->args[a], &item, &error) < 0 ||
	    imap_store_item(item, &c.how, &silent) < 0)
		goto bad;
	list = cmd->args[a + 1].type == IMAP_ARG_LIST;
	if (list && cmd->argc != a + 2) {
		imap_bad(s, "STORE takes one flag list");
		return;
	}
	if (imap_flags_parse(s, &cmd->args[a + 1], cmd->argc - a - 1, list,
	    &f) < 0)
		goto out;
	if (s->view.readonly) {
		imap_tagged(s, "NO", "[CANNOT] Mailbox is read-only");
		goto out;
	}
	if (cond > 0)
		imap_condstore_on(s);
	/* Others' changes first, so ours are reported on top of them. */
	if (imap_view_sync(s, false) < 0 ||
	    imap_uids_from(s, text, cmd->uid, &u) < 0)
		goto out;
	if ((st = imap_store(s)) == NULL) {
		free(u.r);
		goto out;
	}
	imap_seqset_init(&modified);
	if (imap_store_run(s, st, &c, &f, &u, cmd->uid, silent, &modified)) {
		/* The view holds the new flags: contexts follow. */
		imap_context_refresh(s);
		imap_store_done(s, cmd->uid, &modified);
	}
	imap_seqset_deinit(&modified);
	free(u.r);
out:
	imap_flags_free(&f);
	return;
bad:
	imap_bad(s, "STORE sequence-set [(UNCHANGEDSINCE n)] "
	    "[+-]FLAGS[.SILENT] (flags)");
}

/*
 * EXPUNGE, UID EXPUNGE, CLOSE.
 */

/* Expunge the \Deleted messages of text (NULL: the whole view). */
static enum store_op
imap_expunge_run(struct imap_session *s, const struct imap_uids *u,
    const char **error_r)
{
	struct store_uidset set = { u->r, u->count };
	struct store *st;
	uint32_t *gone = NULL;
	size_t count = 0;
	enum store_op op;

	if (u->count == 0)
		return STORE_OP_OK;
	if ((st = imap_store(s)) == NULL)
		return STORE_OP_TEMPFAIL;
	op = store_expunge(st, s->view.name, &set, false, &gone, &count,
	    error_r);
	free(gone);
	return op;
}

void
imap_cmd_expunge(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_uids u;
	const char *text = NULL, *error = NULL;
	enum store_op op;

	if (cmd->argc != (cmd->uid ? 1u : 0u) || (cmd->uid &&
	    imap_arg_atom(&cmd->args[0], &text, &error) < 0)) {
		imap_bad(s, cmd->uid ? "UID EXPUNGE uid-set" :
		    "EXPUNGE takes no arguments");
		return;
	}
	if (s->view.readonly) {
		imap_tagged(s, "NO", "[CANNOT] Mailbox is read-only");
		return;
	}
	if (imap_uids_from(s, text, true, &u) < 0)
		return;
	op = imap_expunge_run(s, &u, &error);
	free(u.r);
	if (op != STORE_OP_OK) {
		if (s->st != NULL)
			imap_op_no(s, op, false, error);
		return;
	}
	/* The sync reports our expunges and anyone else's, each with the
	 * sequence number right at the time it is read. */
	if (imap_view_sync(s, true) < 0)
		return;
	imap_tagged(s, "OK", "%sEXPUNGE completed", cmd->uid ? "UID " : "");
}

int
imap_expunge_silent(struct imap_session *s)
{
	struct imap_uids u;
	const char *error = NULL;
	enum store_op op;

	if (s->view.readonly || s->view.name == NULL)
		return 0;
	(void)imap_uids_from(s, NULL, true, &u);
	if (u.count == 0)
		return 0;
	if ((op = imap_expunge_run(s, &u, &error)) != STORE_OP_OK)
		log_warning("imap: user=<%s>, CLOSE of %s expunged nothing "
		    "(%s)", s->user, s->view.name, error != NULL ? error :
		    "store unavailable");
	free(u.r);
	return op == STORE_OP_OK ? 0 : -1;
}

/*
 * COPY, MOVE.
 */

/* "[COPYUID v src dst] " into b, or nothing when it cannot be given. */
static void
imap_copyuid(const struct store_copied *c, struct buf *b)
{
	size_t start = b->len;

	if (c->count == 0)
		return;
	for (size_t i = 0; i < c->count; i++)
		if (c->dst_uids[i] == 0)
			return;
	if (buf_printf(b, "[COPYUID %u ", c->uidvalidity) < 0 ||
	    imap_seqset_format_nums(c->src_uids, c->count, b) < 0 ||
	    buf_append_byte(b, ' ') < 0 ||
	    imap_seqset_format_nums(c->dst_uids, c->count, b) < 0 ||
	    buf_append_str(b, "] ") < 0)
		buf_truncate(b, start);
}

void
imap_cmd_copy(struct imap_session *s, const struct imap_cmd *cmd)
{
	bool move = strcmp(cmd->name, "MOVE") == 0;
	struct store_copied out;
	struct store_uidset set;
	struct imap_uids u;
	struct store *st;
	struct buf name, code;
	const char *text, *wire, *error;
	enum store_op op = STORE_OP_OK;

	if (cmd->argc != 2 ||
	    imap_arg_atom(&cmd->args[0], &text, &error) < 0 ||
	    imap_arg_astring(&cmd->args[1], &wire, &error) < 0) {
		imap_bad(s, move ? "MOVE sequence-set mailbox" :
		    "COPY sequence-set mailbox");
		return;
	}
	if (move && s->view.readonly) {
		imap_tagged(s, "NO", "[CANNOT] Mailbox is read-only");
		return;
	}
	buf_init(&name, IMAP_WRITE_NAME_MAX * 4);
	if (imap_mailbox_from_wire(s, wire, &name) < 0 ||
	    imap_uids_from(s, text, cmd->uid, &u) < 0) {
		buf_free(&name);
		return;
	}
	if ((st = imap_store(s)) == NULL) {
		free(u.r);
		buf_free(&name);
		return;
	}
	memset(&out, 0, sizeof(out));
	set.ranges = u.r;
	set.count = u.count;
	if (u.count > 0)
		op = store_append_copy(st, s->view.name, &set,
		    buf_cstr(&name), move, &out, &error);
	else if (store_folder_exists(st, buf_cstr(&name), &error) == 0)
		op = STORE_OP_NONEXISTENT;
	free(u.r);
	buf_free(&name);
	if (op != STORE_OP_OK) {
		imap_op_no(s, op, true, error);
		return;
	}
	buf_init(&code, IMAP_COPYUID_MAX);
	imap_copyuid(&out, &code);
	store_copied_free(&out);
	if (move) {
		/* RFC 6851: COPYUID untagged, then the EXPUNGEs. */
		if (code.len > 0)
			buf_printf(&s->out, "* OK %sMoved\r\n",
			    buf_cstr(&code));
		imap_send(s);
		if (imap_view_sync(s, true) == 0)
			imap_tagged(s, "OK", "%sMOVE completed",
			    cmd->uid ? "UID " : "");
	} else if (imap_view_sync(s, cmd->uid) == 0) {
		/* The tag is ours; the code may pass IMAP_REPLY_MAX. */
		buf_printf(&s->out, "%s OK %s%sCOPY completed\r\n", s->tag,
		    buf_cstr(&code), cmd->uid ? "UID " : "");
		imap_send(s);
	}
	buf_free(&code);
}

/*
 * APPEND: the literal.
 */

static struct imap_append *
imap_append_get(struct imap_session *s)
{
	if (s->append == NULL) {
		s->append = xcalloc(1, sizeof(*s->append));
		s->append->fd = -1;
	}
	return s->append;
}

static int
imap_append_tmpfile(void)
{
	char path[] = IMAP_APPEND_TMPDIR "/loft-append-XXXXXX";
	int fd;

	if ((fd = mkstemp(path)) < 0)
		return -1;
	(void)unlink(path);
	return fd;
}

/* Which limit the next literal, of size bytes, would pass. */
static enum imap_append_refusal
imap_append_check(const struct imap_append *a, uint64_t size)
{
	if (a->count >= IMAP_MULTIAPPEND_MAX)
		return IMAP_APPEND_MANY;
	if (size > IMAP_APPEND_LIMIT)
		return IMAP_APPEND_TOOBIG;
	if (size > IMAP_APPEND_TOTAL_LIMIT - a->total)
		return IMAP_APPEND_TOTAL;
	return IMAP_APPEND_TAKEN;
}

int
imap_append_literal_start(struct imap_session *s, uint64_t size,
    bool literal8)
{
	struct imap_append *a = imap_append_get(s);

	/* A literal8 is a message like any other, stored as sent. */
	(void)literal8;
	if (a->refused != IMAP_APPEND_TAKEN)
		return -1;
	if (a->count > 0 && a->got != a->msgs[a->count - 1].size)
		log_panic("imap: APPEND literal begun before the last ended");
	if ((a->refused = imap_append_check(a, size)) != IMAP_APPEND_TAKEN)
		return -1;
	if (a->fd < 0 && (a->fd = imap_append_tmpfile()) < 0) {
		log_error("imap: user=<%s>, APPEND: temporary file in %s: %s",
		    s->user, IMAP_APPEND_TMPDIR, strerror(errno));
		a->refused = IMAP_APPEND_NOTMP;
		return -1;
	}
	if (a->count == a->cap) {
		a->cap = a->cap == 0 ? 4 : a->cap * 2;
		a->msgs = xreallocarray(a->msgs, a->cap, sizeof(*a->msgs));
	}
	a->msgs[a->count].off = a->total;
	a->msgs[a->count].size = size;
	a->count++;
	a->total += size;
	a->got = 0;
	return 0;
}

void
imap_append_literal_data(struct imap_session *s, const unsigned char *data,
    size_t len)
{
	struct imap_append *a = s->append;
	ssize_t n;

	if (a == NULL || a->fd < 0 || a->count == 0)
		log_panic("imap: literal data without a literal");
	a->got += len;
	/* After a failed write, keep reading the client's bytes: the
	 * command is answered NO at its end. The file is only appended
	 * to, so each message lies where imap_append_literal_start put
	 * it. */
	while (len > 0 && a->write_errno == 0) {
		if ((n = write(a->fd, data, len)) < 0) {
			if (errno == EINTR)
				continue;
			a->write_errno = errno;
			break;
		}
		data += n;
		len -= (size_t)n;
	}
}

bool
imap_append_refused(struct imap_session *s)
{
	struct imap_append *a = s->append;
	enum imap_append_refusal why;

	if (a == NULL || a->refused == IMAP_APPEND_TAKEN)
		return false;
	why = a->refused;
	imap_append_free(s);
	switch (why) {
	case IMAP_APPEND_TOOBIG:
		imap_tagged(s, "NO", "[TOOBIG] Message is larger than "
		    "APPENDLIMIT=%u", (unsigned)IMAP_APPEND_LIMIT);
		break;
	case IMAP_APPEND_TOTAL:
		imap_tagged(s, "NO", "[TOOBIG] The messages of one APPEND are "
		    "larger than %llu bytes in all",
		    (unsigned long long)IMAP_APPEND_TOTAL_LIMIT);
		break;
	case IMAP_APPEND_MANY:
		imap_tagged(s, "NO", "[LIMIT] At most %u messages in one "
		    "APPEND", (unsigned)IMAP_MULTIAPPEND_MAX);
		break;
	default:
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot take the message "
		    "now");
		break;
	}
	return true;
}

void
imap_append_free(struct imap_session *s)
{
	if (s->append == NULL)
		return;
	if (s->append->fd >= 0)
		(void)close(s->append->fd);
	free(s->append->msgs);
	free(s->append);
	s->append = NULL;
}

/*
 * APPEND: the command.
 */

static int
imap_date_num(const char *p, size_t n, int *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		*v = *v * 10 + (p[i] - '0');
	}
	return 0;
}

/* date-time of RFC 3501: "dd-Mon-yyyy hh:mm:ss +zzzz", the day maybe
 * " d". -1 if it is not one. */
static int
imap_date_parse(const char *text, time_t *t_r)
{
	static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *m;
	struct tm tm;
	int zh, zm, off;
	time_t t;

	if (strlen(text) != 26 || text[2] != '-' || text[6] != '-' ||
	    text[11] != ' ' || text[14] != ':' || text[17] != ':' ||
	    text[20] != ' ' || (text[21] != '+' && text[21] != '-'))
		return -1;
	memset(&tm, 0, sizeof(tm));
	if (imap_date_num(text[0] == ' ' ? text + 1 : text,
	    text[0] == ' ' ? 1 : 2, &tm.tm_mday) < 0 ||
	    imap_date_num(text + 7, 4, &tm.tm_year) < 0 ||
	    imap_date_num(text + 12, 2, &tm.tm_hour) < 0 ||
	    imap_date_num(text + 15, 2, &tm.tm_min) < 0 ||
	    imap_date_num(text + 18, 2, &tm.tm_sec) < 0 ||
	    imap_date_num(text + 22, 2, &zh) < 0 ||
	    imap_date_num(text + 24, 2, &zm) < 0)
		return -1;
	for (m = mon; *m != '\0'; m += 3)
		if (strncasecmp(m, text + 3, 3) == 0)
			break;
	if (*m == '\0' || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_year < 1970 || tm.tm_hour > 23 || tm.tm_min > 59 ||
	    tm.tm_sec > 60 || zm > 59)
		return -1;
	tm.tm_mon = (int)((m - mon) / 3);
	tm.tm_year -= 1900;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	off = (zh * 60 + zm) * 60;
	*t_r = text[21] == '+' ? t - off : t + off;
	return 0;
}

/* The messages of one APPEND as the store takes them. */
struct imap_append_set {
	struct store_append *ap;	/* owned; n */
	struct imap_flags *f;		/* owned; n (ap's keywords point in) */
	struct store_appended *out;	/* owned; n */
	uint64_t *off, *size;		/* owned; n: each message in the file */
	unsigned n;
	unsigned lit;			/* literals of the file taken */
	uint64_t total;			/* bytes of the messages, all */
	void *map;			/* the file mapped, or NULL */
	size_t map_len;
};

static void
imap_append_set_free(struct imap_append_set *set)
{
	for (unsigned i = 0; i < set->n; i++)
		imap_flags_free(&set->f[i]);
	free(set->ap);
	free(set->f);
	free(set->out);
	free(set->off);
	free(set->size);
	if (set->map != NULL)
		(void)munmap(set->map, set->map_len);
	memset(set, 0, sizeof(*set));
}

static int imap_append_literal_take(struct imap_session *s,
    struct imap_append_set *set);
static int imap_catenate(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned *i, struct imap_append_set *set);

/* RFC 6855 section 4: the message as "UTF8 (~{n}...)", its header
 * fields maybe in UTF-8, at args[*i]; stored as it is, like any other.
 * Only after ENABLE UTF8=ACCEPT (else BAD, as the RFC says); the
 * parser streamed the literal8 in the list like a plain message. -1
 * after BAD. */
static int
imap_append_utf8(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned *i)
{
	const struct imap_arg *l;
	const char *atom, *error;
	unsigned n;

	if (imap_arg_atom(&cmd->args[*i], &atom, &error) < 0 ||
	    strcasecmp(atom, "UTF8") != 0 || *i + 1 >= cmd->argc ||
	    imap_arg_list(&cmd->args[*i + 1], &l, &n, &error) < 0 ||
	    n != 1 || l[0].type != IMAP_ARG_STREAMED || !l[0].literal8) {
		imap_bad(s, "APPEND mailbox 1*([(flags)] [date-time] "
		    "(literal / UTF8 (literal8)))");
		return -1;
	}
	if (!s->utf8_accept) {
		imap_bad(s, "APPEND UTF8 needs ENABLE UTF8=ACCEPT");
		return -1;
	}
	*i += 2;
	return 0;
}

/* One message's [(flags)] [date-time] literal (or UTF8 (literal8)) from
 * args[*i], into ap and f (initialised here). -1 after BAD or NO. */
static int
imap_append_msg_args(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned *i, struct imap_append_set *set)
{
	struct store_append *ap = &set->ap[set->n];
	struct imap_flags *f = &set->f[set->n];
	const char *date, *error;

	memset(ap, 0, sizeof(*ap));
	imap_flags_init(f);
	if (*i < cmd->argc && cmd->args[*i].type == IMAP_ARG_LIST) {
		if (imap_flags_parse(s, &cmd->args[*i], 1, true, f) < 0)
			return -1;
		ap->flags = f->bits;
		ap->keywords = f->kw.len > 0 ? (const char *)f->kw.data : NULL;
		ap->keywords_len = f->kw.len;
		(*i)++;
	}
	if (*i < cmd->argc && (cmd->args[*i].type == IMAP_ARG_STRING ||
	    cmd->args[*i].type == IMAP_ARG_LITERAL)) {
		if (imap_arg_string(&cmd->args[*i], &date, &error) < 0 ||
		    imap_date_parse(date, &ap->internal_date) < 0) {
			imap_bad(s, "Invalid date-time");
			return -1;
		}
		(*i)++;
	}
	if (*i < cmd->argc && cmd->args[*i].type == IMAP_ARG_ATOM &&
	    imap_arg_atom(&cmd->args[*i], &date, &error) == 0 &&
	    strcasecmp(date, "CATENATE") == 0)
		return imap_catenate(s, cmd, i, set);
	if (*i < cmd->argc && cmd->args[*i].type == IMAP_ARG_ATOM) {
		if (imap_append_utf8(s, cmd, i) < 0)
			return -1;
		return imap_append_literal_take(s, set);
	}
	if (*i >= cmd->argc || cmd->args[*i].type != IMAP_ARG_STREAMED) {
		imap_bad(s, "APPEND mailbox 1*([(flags)] [date-time] literal)");
		return -1;
	}
	(*i)++;
	return imap_append_literal_take(s, set);
}

/*
 * CATENATE (RFC 4469): a message made of TEXT literals (streamed into the
 * file like any APPEND literal) and URL parts (the user's own messages,
 * or sections of them, as FETCH gives them), written at the end of the
 * file and stored from there.
 */

/* The next streamed literal is the current message. */
static int
imap_append_literal_take(struct imap_session *s, struct imap_append_set *set)
{
	const struct imap_append *a = s->append;

	if (set->lit >= a->count) {
		/* More literals than the parser streamed: cannot be, but
		 * never read past what was received. */
		imap_bad(s, "APPEND: more messages than literals");
		return -1;
	}
	set->off[set->n] = a->msgs[set->lit].off;
	set->size[set->n] = a->msgs[set->lit].size;
	set->lit++;
	set->total += set->size[set->n];
	return 0;
}

/* "tag NO [BADURL "url"] why": the URL quoted, a control byte as "?". */
static void
imap_catenate_badurl(struct imap_session *s, const char *url, const char *why)
{
	buf_printf(&s->out, "%s NO [BADURL \"", s->tag);
	for (const unsigned char *p = (const unsigned char *)url; *p != '\0';
	    p++) {
		if (*p == '"' || *p == '\\')
			buf_append_byte(&s->out, '\\');
		buf_append_byte(&s->out, *p < 0x20 || *p == 0x7f ? '?' : *p);
	}
	buf_printf(&s->out, "\"] %s\r\n", why);
	imap_send(s);
}

static void
imap_catenate_toobig(struct imap_session *s)
{
	imap_tagged(s, "NO", "[TOOBIG] Message is larger than APPENDLIMIT=%u",
	    (unsigned)IMAP_APPEND_LIMIT);
}

/* The file, made if no literal came before. */
static int
imap_catenate_fd(struct imap_session *s)
{
	struct imap_append *a = s->append;

	if (a->fd < 0 && (a->fd = imap_append_tmpfile()) < 0) {
		log_error("imap: user=<%s>, APPEND: temporary file in %s: %s",
		    s->user, IMAP_APPEND_TMPDIR, strerror(errno));
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot take the message "
		    "now");
		return -1;
	}
	return 0;
}

/* A TEXT part: literal number set->lit, copied to the end of the file. */
static int
imap_catenate_text(struct imap_session *s, struct imap_append_set *set,
    uint64_t *len)
{
	struct imap_append *a = s->append;
	unsigned char chunk[65536];
	uint64_t off, left;
	ssize_t n;

	if (set->lit >= a->count) {
		imap_bad(s, "CATENATE: more TEXT parts than literals");
		return -1;
	}
	off = a->msgs[set->lit].off;
	left = a->msgs[set->lit].size;
	set->lit++;
	if (left > IMAP_APPEND_LIMIT - *len) {
		imap_catenate_toobig(s);
		return -1;
	}
	while (left > 0) {
		size_t want = left < sizeof(chunk) ? (size_t)left :
		    sizeof(chunk);

		n = pread(a->fd, chunk, want, (off_t)off);
		if (n <= 0 || write(a->fd, chunk, (size_t)n) != n) {
			imap_tagged(s, "NO", "[UNAVAILABLE] Cannot take the "
			    "message now");
			return -1;
		}
		off += (uint64_t)n;
		left -= (uint64_t)n;
		*len += (uint64_t)n;
	}
	return 0;
}

/* The folder of u, checked: 0 with *folder_id_r, or -1 (not the user's,
 * no such folder, another UIDVALIDITY). */
static int
imap_catenate_folder(struct imap_session *s, struct store *st,
    const struct imap_url *u, uint32_t *folder_id_r)
{
	struct mindex_folder f;
	struct mindex_txn *txn;
	const char *error;
	int r;

	if ((u->user[0] != '\0' && strcmp(u->user, s->user) != 0) ||
	    !imap_mailbox_utf8_valid(u->mailbox, strlen(u->mailbox)))
		return -1;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0)
		return -1;
	/* The index spells INBOX so, whatever case the URL used. */
	r = mindex_folder_get(txn, strcasecmp(u->mailbox, "INBOX") == 0 ?
	    "INBOX" : u->mailbox, &f);
	mindex_abort(&txn);
	if (r <= 0 || (u->uidvalidity != 0 && u->uidvalidity != f.uidvalidity))
		return -1;
	*folder_id_r = f.id;
	return 0;
}

/* A URL part, copied to the end of the file. */
static int
imap_catenate_url(struct imap_session *s, const struct imap_arg *arg,
    uint64_t *len)
{
	struct imap_url u;
	struct store *st;
	const char *text, *error;
	uint32_t folder_id;
	uint64_t got;
	int r;

	if (arg->type == IMAP_ARG_STREAMED ||
	    imap_arg_astring(arg, &text, &error) < 0) {
		imap_bad(s, "CATENATE: URL takes a quoted string");
		return -1;
	}
	if (imap_url_parse(text, &u, &error) < 0) {
		imap_catenate_badurl(s, text, error);
		return -1;
	}
	if ((st = imap_store(s)) == NULL)
		return -1;
	if (imap_catenate_folder(s, st, &u, &folder_id) < 0) {
		imap_catenate_badurl(s, text, "No such mailbox of yours, or "
		    "another UIDVALIDITY");
		return -1;
	}
	r = imap_section_copy(st, strcasecmp(u.mailbox, "INBOX") == 0 ?
	    "INBOX" : u.mailbox, folder_id, u.uid, u.section, u.partial,
	    u.origin, u.length, IMAP_APPEND_LIMIT - *len, s->append->fd, &got);
	if (r == IMAP_SECTION_COPY_BAD)
		imap_catenate_badurl(s, text, "No such message or section");
	else if (r == IMAP_SECTION_COPY_TOOBIG)
		imap_catenate_toobig(s);
	else if (r < 0)
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot read the message");
	if (r < 0)
		return -1;
	*len += got;
	return 0;
}

/* "CATENATE (part ...)" at args[*i]: the current message of set. -1
 * after BAD or NO. */
static int
imap_catenate(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned *i, struct imap_append_set *set)
{
	const struct imap_arg *l;
	const char *word, *error;
	uint64_t start, len = 0;
	unsigned n;
	int r = 0;

	if (*i + 1 >= cmd->argc ||
	    imap_arg_list(&cmd->args[*i + 1], &l, &n, &error) < 0 || n == 0 ||
	    n % 2 != 0) {
		imap_bad(s, "CATENATE (TEXT literal / URL url ...)");
		return -1;
	}
	*i += 2;
	if (imap_catenate_fd(s) < 0)
		return -1;
	start = s->append->total;
	for (unsigned k = 0; k < n && r == 0; k += 2) {
		if (imap_arg_atom(&l[k], &word, &error) < 0)
			word = "";
		if (strcasecmp(word, "TEXT") == 0 &&
		    l[k + 1].type == IMAP_ARG_STREAMED)
			r = imap_catenate_text(s, set, &len);
		else if (strcasecmp(word, "URL") == 0)
			r = imap_catenate_url(s, &l[k + 1], &len);
		else {
			imap_bad(s, "CATENATE (TEXT literal / URL url ...)");
			r = -1;
		}
	}
	/* A literal of a failed part is not ours to read twice: count the
	 * ones after it as taken, so the command ends as one failure. */
	s->append->total = start + len;
	if (r < 0)
		return -1;
	if (len > IMAP_APPEND_TOTAL_LIMIT - set->total) {
		imap_tagged(s, "NO", "[TOOBIG] The messages of one APPEND are "
		    "larger than %llu bytes in all",
		    (unsigned long long)IMAP_APPEND_TOTAL_LIMIT);
		return -1;
	}
	set->off[set->n] = start;
	set->size[set->n] = len;
	set->total += len;
	return 0;
}

/* mailbox 1*([(flags)] [date-time] message): one entry of set per
 * message, whose literals the parser streamed in the same order. -1
 * after BAD or NO. */
static int
imap_append_args(struct imap_session *s, const struct imap_cmd *cmd,
    const char **wire_r, struct imap_append_set *set)
{
	const struct imap_append *a = s->append;
	const char *error;
	unsigned i = 1;

	memset(set, 0, sizeof(*set));
	if (cmd->argc < 2 ||
	    imap_arg_astring(&cmd->args[0], wire_r, &error) < 0) {
		imap_bad(s, "APPEND mailbox 1*([(flags)] [date-time] literal)");
		return -1;
	}
	/* Each message takes an argument at least. */
	set->ap = xcalloc(cmd->argc, sizeof(*set->ap));
	set->f = xcalloc(cmd->argc, sizeof(*set->f));
	set->out = xcalloc(cmd->argc, sizeof(*set->out));
	set->off = xcalloc(cmd->argc, sizeof(*set->off));
	set->size = xcalloc(cmd->argc, sizeof(*set->size));
	while (i < cmd->argc) {
		if (set->n == IMAP_MULTIAPPEND_MAX) {
			imap_tagged(s, "NO", "[LIMIT] At most %u messages in "
			    "one APPEND", (unsigned)IMAP_MULTIAPPEND_MAX);
			return -1;
		}
		if (imap_append_msg_args(s, cmd, &i, set) < 0) {
			set->n++;
			return -1;
		}
		set->n++;
	}
	if (set->lit != a->count) {
		imap_bad(s, "APPEND mailbox 1*([(flags)] [date-time] literal)");
		return -1;
	}
	return 0;
}

/* Map the received messages (never read whole into memory) and point
 * each entry at its own. */
static int
imap_append_map(struct imap_session *s, struct imap_append_set *set,
    const char **error_r)
{
	const struct imap_append *a = s->append;
	static const unsigned char empty[1];
	const unsigned char *base = empty;

	if (a->total > SIZE_MAX) {
		*error_r = "messages too large to map";
		return -1;
	}
	if (a->total > 0) {
		set->map_len = (size_t)a->total;
		set->map = mmap(NULL, set->map_len, PROT_READ, MAP_PRIVATE,
		    a->fd, 0);
		if (set->map == MAP_FAILED) {
			set->map = NULL;
			*error_r = strerror(errno);
			return -1;
		}
		base = set->map;
	}
	for (unsigned i = 0; i < set->n; i++) {
		set->ap[i].msg = set->size[i] > 0 ? base + set->off[i] : empty;
		set->ap[i].len = (size_t)set->size[i];
	}
	return 0;
}

/* Store them in folder, all or none. */
static enum store_op
imap_append_store(struct imap_session *s, struct store *st,
    const char *folder, struct imap_append_set *set, const char **error_r)
{
	if (imap_append_map(s, set, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (set->n == 1) {
		set->ap[0].folder = folder;
		return store_append(st, &set->ap[0], &set->out[0], error_r);
	}
	return store_append_multi(st, folder, set->ap, set->n, set->out,
	    error_r);
}

/* "[APPENDUID uidvalidity uid-set] " into b, the UIDs in the order of
 * the messages, runs of consecutive ones as ranges; nothing when one of
 * them is stored but not indexed (no UID to give). */
static void
imap_appenduid(const struct imap_append_set *set, struct buf *b)
{
	unsigned i, j;

	for (i = 0; i < set->n; i++)
		if (set->out[i].uid == 0)
			return;
	buf_printf(b, "[APPENDUID %u ", set->out[0].uidvalidity);
	for (i = 0; i < set->n; i = j) {
		for (j = i + 1; j < set->n &&
		    set->out[j - 1].uid < UINT32_MAX &&
		    set->out[j].uid == set->out[j - 1].uid + 1; j++)
			;
		buf_printf(b, "%s%u", i > 0 ? "," : "", set->out[i].uid);
		if (j - 1 > i)
			buf_printf(b, ":%u", set->out[j - 1].uid);
	}
	buf_append_str(b, "] ");
}

/* The tagged reply to a stored APPEND (after the EXISTS of a sync). */
static void
imap_append_done(struct imap_session *s, const struct imap_append_set *set)
{
	struct buf code;

	/* At most IMAP_MULTIAPPEND_MAX numbers of 10 digits: bounded, but
	 * maybe past a reply line, so written here. */
	buf_init(&code, 32 + (size_t)IMAP_MULTIAPPEND_MAX * 22);
	imap_appenduid(set, &code);
	buf_printf(&s->out, "%s OK %sAPPEND completed\r\n", s->tag,
	    buf_cstr(&code));
	buf_free(&code);
	imap_send(s);
}

void
imap_cmd_append(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_append_set set;
	struct store *st;
	struct buf name;
	const char *wire, *error = NULL;
	enum store_op op;
	bool empty = false;

	/* A CATENATE of URLs alone has no literal: nothing was taken. */
	if (s->append == NULL)
		(void)imap_append_get(s);
	if (s->append->count > 0 && (s->append->fd < 0 ||
	    s->append->got != s->append->msgs[s->append->count - 1].size)) {
		imap_append_free(s);
		imap_bad(s, "APPEND mailbox [(flags)] [date-time] literal");
		return;
	}
	if (imap_append_args(s, cmd, &wire, &set) < 0) {
		imap_append_set_free(&set);
		imap_append_free(s);
		return;
	}
	if (s->append->write_errno != 0) {
		log_error("imap: user=<%s>, APPEND: temporary file: %s",
		    s->user, strerror(s->append->write_errno));
		imap_append_set_free(&set);
		imap_append_free(s);
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot take the message "
		    "now");
		return;
	}
	for (unsigned i = 0; i < set.n; i++)
		empty |= set.size[i] == 0;
	buf_init(&name, IMAP_WRITE_NAME_MAX * 4);
	if (imap_mailbox_from_wire(s, wire, &name) < 0 ||
	    (st = imap_store(s)) == NULL) {
		imap_append_set_free(&set);
		imap_append_free(s);
		buf_free(&name);
		return;
	}
	op = imap_append_store(s, st, buf_cstr(&name), &set, &error);
	imap_append_free(s);
	buf_free(&name);
	if (op == STORE_OP_CANNOT && empty)
		imap_tagged(s, "NO", "[CANNOT] Empty message");
	else if (op != STORE_OP_OK)
		imap_op_no(s, op, true, error);
	else if (s->state != IMAP_STATE_SELECTED ||
	    imap_view_sync(s, true) == 0)
		imap_append_done(s, &set);
	imap_append_set_free(&set);
}

/*
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.
 */

/* The one mailbox argument, decoded into name; -1 after BAD or NO. */
static int
imap_name_arg(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned i, struct buf *name)
{
	const char *wire, *error;

	if (imap_arg_astring(&cmd->args[i], &wire, &error) < 0) {
		imap_bad(s, error);
		return -1;
	}
	return imap_mailbox_from_wire(s, wire, name);
}

/* The store's spelling of name into out; false if it is refused. */
static bool
imap_canonical(struct store *st, const char *name, char *out, size_t size)
{
	const char *error;

	return store_folder_name(st, name, out, size, &error) ==
	    STORE_OP_OK;
}

void
imap_cmd_create(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct store *st;
	struct buf name;
	const char *error = NULL;
	enum store_op op;

	buf_init(&name, IMAP_WRITE_NAME_MAX * 4);
	if (cmd->argc != 1) {
		imap_bad(s, "CREATE mailbox");
		goto out;
	}
	if (imap_name_arg(s, cmd, 0, &name) < 0 ||
	    (st = imap_store(s)) == NULL)
		goto out;
	/* RFC 3501: a trailing separator says the client means to put
	 * folders below it; the name is created without it. */
	if (name.len > 1 && name.data[name.len - 1] == '/')
		buf_truncate(&name, name.len - 1);
	op = store_folder_create(st, buf_cstr(&name), &error);
	if (op != STORE_OP_OK)
		imap_op_no(s, op, false, error);
	else
		imap_tagged(s, "OK", "CREATE completed");
out:
	buf_free(&name);
}

void
imap_cmd_delete(struct imap_session *s, const struct imap_cmd *cmd)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], sel[STORE_FOLDER_NAME_MAX + 1];
	struct store *st;
	struct buf name;
	const char *error = NULL;
	bool selected;
	enum store_op op;

	buf_init(&name, IMAP_WRITE_NAME_MAX * 4);
	if (cmd->argc != 1) {
		imap_bad(s, "DELETE mailbox");
		goto out;
	}
	if (imap_name_arg(s, cmd, 0, &name) < 0 ||
	    (st = imap_store(s)) == NULL)
		goto out;
	selected = s->state == IMAP_STATE_SELECTED &&
	    imap_canonical(st, buf_cstr(&name), canon, sizeof(canon)) &&
	    imap_canonical(st, s->view.name, sel, sizeof(sel)) &&
	    strcmp(canon, sel) == 0;
	op = store_folder_delete(st, buf_cstr(&name), &error);
	if (op != STORE_OP_OK) {
		imap_op_no(s, op, false, error);
		goto out;
	}
	/* A special use given at CREATE goes with the folder. */
	if (imap_canonical(st, buf_cstr(&name), canon, sizeof(canon)))
		(void)imap_special_use_rename(s, canon, NULL);
	if (selected) {
		/* Its view means nothing now: leave it as CLOSE would,
		 * and say so (RFC 7162's CLOSED). */
		imap_view_free(&s->view);
		imap_seqset_deinit(&s->searchres);
		s->state = IMAP_STATE_AUTH;
		if (s->cb->selected != NULL)
			s->cb->selected(s->ctx);
		imap_untagged(s, "OK [CLOSED] The selected mailbox was "
		    "deleted");
	}
	imap_tagged(s, "OK", "DELETE completed");
out:
	buf_free(&name);
}

/* The renamed view's folder may have a new id in the index; a later
 * sync finds it under its name, this keeps FETCH on it until then. */
static void
imap_rename_id(struct imap_session *s, struct store *st)
{
	struct mindex_folder f;
	struct mindex_txn *txn;
	const char *error;

	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_warning("imap: user=<%s>, index: %s", s->user, error);
		return;
	}
	if (mindex_folder_get(txn, s->view.name, &f) > 0 &&
	    f.uidvalidity == s->view.uidvalidity)
		s->view.folder_id = f.id;
	mindex_abort(&txn);
}

/* The selected folder, or one of its parents, was renamed: follow it. */
static void
imap_rename_view(struct imap_session *s, struct store *st, const char *from,
    const char *to)
{
	char f[STORE_FOLDER_NAME_MAX + 1], t[STORE_FOLDER_NAME_MAX + 1];
	char sel[STORE_FOLDER_NAME_MAX + 1];
	size_t flen;

	if (s->state != IMAP_STATE_SELECTED ||
	    !imap_canonical(st, from, f, sizeof(f)) ||
	    !imap_canonical(st, to, t, sizeof(t)) ||
	    !imap_canonical(st, s->view.name, sel, sizeof(sel)) ||
	    strcmp(f, "INBOX") == 0)
		return;
	flen = strlen(f);
	if (strncmp(sel, f, flen) != 0 || (sel[flen] != '\0' &&
	    sel[flen] != '/'))
		return;
	free(s->view.name);
	s->view.name = xasprintf("%s%s", t, sel + flen);
	imap_rename_id(s, st);
	if (s->cb->selected != NULL)
		s->cb->selected(s->ctx);
}

void
imap_cmd_rename(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct store *st;
	struct buf from, to;
	const char *error = NULL;
	enum store_op op;

	buf_init(&from, IMAP_WRITE_NAME_MAX * 4);
	buf_init(&to, IMAP_WRITE_NAME_MAX * 4);
	if (cmd->argc != 2) {
		imap_bad(s, "RENAME mailbox new-name");
		goto out;
	}
	if (imap_name_arg(s, cmd, 0, &from) < 0 ||
	    imap_name_arg(s, cmd, 1, &to) < 0 ||
	    (st = imap_store(s)) == NULL)
		goto out;
	op = store_folder_rename(st, buf_cstr(&from), buf_cstr(&to), &error);
	if (op != STORE_OP_OK) {
		imap_op_no(s, op, false, error);
		goto out;
	}
	{
		char cf[1024], ct[1024];

		if (imap_canonical(st, buf_cstr(&from), cf, sizeof(cf)) &&
		    imap_canonical(st, buf_cstr(&to), ct, sizeof(ct))) {
			(void)imap_special_use_rename(s, cf, ct);
			(void)imap_subscriptions_rename(s, cf, ct);
		}
	}
	imap_rename_view(s, st, buf_cstr(&from), buf_cstr(&to));
	imap_tagged(s, "OK", "RENAME completed");
out:
	buf_free(&from);
	buf_free(&to);
}

/* SUBSCRIBE and UNSUBSCRIBE: the name must be valid, not existing
 * (RFC 3501 6.3.6); imap_list.c keeps the list. */
void
imap_cmd_subscribe(struct imap_session *s, const struct imap_cmd *cmd)
{
	char canon[STORE_FOLDER_NAME_MAX + 1];
	struct store *st;
	struct buf name;
	int ret;

	buf_init(&name, IMAP_WRITE_NAME_MAX * 4);
	if (cmd->argc != 1) {
		imap_bad(s, "SUBSCRIBE mailbox");
		goto out;
	}
	if (imap_name_arg(s, cmd, 0, &name) < 0 ||
	    (st = imap_store(s)) == NULL)
		goto out;
	if (!imap_canonical(st, buf_cstr(&name), canon, sizeof(canon))) {
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
		goto out;
	}
	ret = imap_subscribe(s, canon, strcasecmp(cmd->name, "SUBSCRIBE") ==
	    0);
	if (ret == 0)
		imap_tagged(s, "OK", "%s completed", cmd->name);
	else if (ret == -2)
		imap_tagged(s, "NO", "[LIMIT] Too many subscriptions");
	else
		imap_tagged(s, "NO", "[SERVERBUG] Cannot save the "
		    "subscriptions");
out:
	buf_free(&name);
}
