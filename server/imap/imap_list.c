/*
 * imap_list.c: LIST as RFC 3501 and RFC 5258 (LIST-EXTENDED) have it,
 * with RFC 5819 (LIST-STATUS) and RFC 6154 (SPECIAL-USE) attributes;
 * LSUB; XLIST, the legacy Gmail command; and the default folders a new
 * user gets.
 *
 * Choices: subscriptions (SUBSCRIBE, UNSUBSCRIBE, LSUB, LIST (SUBSCRIBED))
 * live in a small file of the user's beside the folders,
 * "loft-subscriptions" ("NAME" lines, as the store spells folders). A
 * user without one (every user before the first SUBSCRIBE or
 * UNSUBSCRIBE) has every folder that can hold messages subscribed; the
 * first change writes the file with those folders and the change. A
 * subscribed name that is no folder stays subscribed (RFC 3501 6.3.6):
 * LSUB shows it \Noselect, LIST (SUBSCRIBED) \NonExistent. RENAME moves
 * subscriptions with the folder (as Dovecot does), DELETE keeps them.
 * Special use is kept by name (the top-level folders Sent, Drafts,
 * Trash, Junk and Archive) and, for folders made with CREATE-SPECIAL-USE
 * (RFC 6154 section 3), in another such file, "loft-special-use", one
 * "\Attr<TAB>folder" line each. Both files are named with a leading dot
 * in an mbox directory (which keeps them out of LIST), read bounded
 * (IMAP_USERFILE_MAX), and replaced whole (written, fsynced, renamed).
 * Not in the index, which a rebuild replaces. Special-use attributes are returned by every LIST (RFC 6154
 * allows it); XLIST adds \Inbox and spells \Junk as Gmail does, \Spam.
 * CHILDREN information is always returned (RFC 5258 allows it).
 *
 * Names and patterns are modified UTF-7, or UTF-8 in a session with
 * UTF8=ACCEPT or IMAP4rev2 enabled (imap_mailbox_put writes them).
 *
 * Trusts nothing the client sends: arguments come through the parser's
 * accessors, names through lib/utf7 or imap_mailbox_utf8_valid;
 * patterns are matched in time bounded by pattern length times name
 * length, never by backtracking.
 * Lines of those files that cannot be read are skipped, and they hold
 * at most IMAP_SPECIAL_ENTRIES_MAX and IMAP_SUBS_MAX names. Trusts the
 * store's folder list and the index.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "mindex.h"
#include "store.h"
#include "utf7.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"

/* Until imap_private.h carries them (the lead adds them there). */
void imap_cmd_list_ext(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_create_ext(struct imap_session *s, const struct imap_cmd *cmd);
int imap_special_use_rename(struct imap_session *s, const char *from,
    const char *to);
int imap_default_folders(struct imap_session *s);

/* Reference + pattern, decoded, in bytes. */
#define IMAP_LIST_NAME_MAX	1024
#define IMAP_LIST_FOLDERS_MAX	10000	/* folders one LIST reports */
#define IMAP_LIST_PATTERNS_MAX	32	/* patterns in one LIST */
/* Bytes of the special-use or subscriptions file read. */
#define IMAP_USERFILE_MAX	(256 * 1024)
#define IMAP_SPECIAL_ENTRIES_MAX 1000	/* folders in the special-use file */
#define IMAP_SUBS_MAX		IMAP_LIST_FOLDERS_MAX	/* subscriptions */
/* A subscribed name that is no folder, in imap_list_folders.attrs. */
#define IMAP_LIST_NONEXISTENT	0x100u

/* Selection options (RFC 5258 section 3.1). */
#define IMAP_LSEL_SUBSCRIBED	0x01u
#define IMAP_LSEL_REMOTE	0x02u
#define IMAP_LSEL_RECURSIVE	0x04u
#define IMAP_LSEL_SPECIAL	0x08u
/* Return options (RFC 5258 section 3.2, RFC 5819, RFC 6154). */
#define IMAP_LRET_CHILDREN	0x01u
#define IMAP_LRET_SUBSCRIBED	0x02u
#define IMAP_LRET_SPECIAL	0x04u
#define IMAP_LRET_STATUS	0x08u

struct imap_list_req {
	const char *verb;		/* "LIST", "LSUB", "XLIST" */
	unsigned sel, ret;
	/* owned: reference + pattern, decoded */
	char *pats[IMAP_LIST_PATTERNS_MAX];
	unsigned npats;
	const struct imap_arg *status;	/* RETURN (STATUS (items)) */
	unsigned nstatus;
	bool utf8;			/* names in UTF-8 (session's utf8) */
};

/* The special-use file: uses are bits of imap_special[]. */
struct imap_special_use {
	char **names;		/* owned */
	unsigned *uses;		/* owned */
	size_t count;
};

/* The subscriptions: all, or the names listed. */
struct imap_subs {
	bool all;		/* no file: every selectable folder */
	char **names;		/* owned */
	size_t count;
};

struct imap_list_folders {
	char **names;		/* owned */
	unsigned *attrs;	/* owned, STORE_FOLDER_*, IMAP_LIST_NONEXISTENT */
	size_t count;
	struct imap_special_use su;
	struct imap_subs subs;
};

static const struct {
	const char *name;
	const char *attr;
} imap_special[] = {
	{ "Sent", "\\Sent" }, { "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" }, { "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};
#define IMAP_SPECIAL_COUNT \
    (sizeof(imap_special) / sizeof(imap_special[0]))

static const char *const imap_status_items[] = {
	"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "DELETED",
	"SIZE", "HIGHESTMODSEQ",
};
#define IMAP_STATUS_COUNT \
    (sizeof(imap_status_items) / sizeof(imap_status_items[0]))

/*
 * The special-use file.
 */

static void
imap_special_free(struct imap_special_use *u)
{
	for (size_t i = 0; i < u->count; i++)
		free(u->names[i]);
	free(u->names);
	free(u->uses);
	memset(u, 0, sizeof(*u));
}

/* Give name the uses (0: forget it). */
static void
imap_special_set(struct imap_special_use *u, const char *name,
    unsigned uses)
{
	size_t i;

	for (i = 0; i < u->count; i++)
		if (strcmp(u->names[i], name) == 0)
			break;
	if (i == u->count) {
		if (uses == 0 || u->count >= IMAP_SPECIAL_ENTRIES_MAX)
			return;
		u->names = xreallocarray(u->names, u->count + 1,
		    sizeof(char *));
		u->uses = xreallocarray(u->uses, u->count + 1,
		    sizeof(unsigned));
		u->names[u->count] = xstrdup(name);
		u->uses[u->count++] = 0;
	}
	u->uses[i] = uses;
}

/*
 * The user's small files beside the folders: base "special-use" is
 * "loft-special-use" in a Maildir, ".loft-special-use" in an mbox
 * directory.
 */
static int
imap_userfile_path(struct store *st, const char *base, char *out,
    size_t size)
{
	const struct mailloc *ml = store_location(st);

	return snprintf(out, size, "%s/%sloft-%s", ml->root,
	    ml->format == MAILLOC_MBOX ? "." : "", base) < (int)size ? 0 : -1;
}

/* The file's text, NUL-terminated, into *text_r (caller frees): 1; 0 if
 * there is none; -1 if it cannot be read (logged). At most
 * IMAP_USERFILE_MAX bytes are read. */
static int
imap_userfile_read(struct store *st, const char *base, char **text_r)
{
	char path[PATH_MAX], *text;
	FILE *f;
	size_t n;

	*text_r = NULL;
	if (imap_userfile_path(st, base, path, sizeof(path)) < 0)
		return -1;
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		log_warning("imap: cannot read %s: %s", path,
		    strerror(errno));
		return -1;
	}
	text = xmalloc(IMAP_USERFILE_MAX + 1);
	n = fread(text, 1, IMAP_USERFILE_MAX, f);
	text[n] = '\0';
	fclose(f);
	*text_r = text;
	return 1;
}

/* Replace the file with the bytes of b: written beside it, fsynced,
 * renamed over it, the directory fsynced. 0, or -1 with *error_r. */
static int
imap_userfile_replace(struct store *st, const char *base,
    const struct buf *b, const char **error_r)
{
	static char error[PATH_MAX + 128];
	char path[PATH_MAX], tmp[PATH_MAX];
	bool made = false;
	int fd;

	if (imap_userfile_path(st, base, path, sizeof(path)) < 0 ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		*error_r = "path too long";
		return -1;
	}
	if (b->len > IMAP_USERFILE_MAX) {
		errno = EFBIG;
		goto fail;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) < 0)
		goto fail;
	made = true;
	if ((b->len > 0 && write(fd, b->data, b->len) != (ssize_t)b->len) ||
	    fsync(fd) < 0) {
		(void)close(fd);
		goto fail;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0)
		goto fail;
	made = false;
	if (fsutil_fsync_parent(path) < 0)
		goto fail;
	return 0;
fail:
	snprintf(error, sizeof(error), "cannot write %s: %s", path,
	    strerror(errno));
	if (made)
		(void)unlink(tmp);
	*error_r = error;
	return -1;
}

/* One "\Attr<TAB>folder" line; lines we cannot read are skipped. */
static void
imap_special_line(struct imap_special_use *u, char *line)
{
	char *tab = strchr(line, '\t');
	unsigned have = 0;

	if (tab == NULL || tab[1] == '\0')
		return;
	*tab = '\0';
	for (size_t k = 0; k < IMAP_SPECIAL_COUNT; k++) {
		if (strcmp(line, imap_special[k].attr) != 0)
			continue;
		for (size_t i = 0; i < u->count; i++)
			if (strcmp(u->names[i], tab + 1) == 0)
				have = u->uses[i];
		imap_special_set(u, tab + 1, have | 1u << k);
	}
}

/* The file into *u; missing is empty, unreadable is logged and empty. */
static void
imap_special_load(struct store *st, struct imap_special_use *u)
{
	char *text, *line, *next;

	memset(u, 0, sizeof(*u));
	if (imap_userfile_read(st, "special-use", &text) <= 0)
		return;
	for (line = text; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		imap_special_line(u, line);
	}
	free(text);
}

/* Replace the file with *u. 0, or -1 with *error_r. */
static int
imap_special_save(struct store *st, const struct imap_special_use *u,
    const char **error_r)
{
	struct buf b;
	int ret;

	buf_init(&b, IMAP_USERFILE_MAX + 1);
	for (size_t i = 0; i < u->count; i++)
		for (size_t k = 0; k < IMAP_SPECIAL_COUNT; k++)
			if (u->uses[i] & 1u << k)
				(void)buf_printf(&b, "%s\t%s\n",
				    imap_special[k].attr, u->names[i]);
	ret = imap_userfile_replace(st, "special-use", &b, error_r);
	buf_free(&b);
	return ret;
}

/*
 * Subscriptions.
 */

static void
imap_subs_free(struct imap_subs *u)
{
	for (size_t i = 0; i < u->count; i++)
		free(u->names[i]);
	free(u->names);
	memset(u, 0, sizeof(*u));
}

static bool
imap_subs_listed(const struct imap_subs *u, const char *name)
{
	for (size_t i = 0; i < u->count; i++)
		if (strcmp(u->names[i], name) == 0)
			return true;
	return false;
}

static void
imap_subs_add(struct imap_subs *u, const char *name)
{
	if (imap_subs_listed(u, name) || u->count >= IMAP_SUBS_MAX)
		return;
	u->names = xreallocarray(u->names, u->count + 1, sizeof(char *));
	u->names[u->count++] = xstrdup(name);
}

static void
imap_subs_remove(struct imap_subs *u, const char *name)
{
	for (size_t i = 0; i < u->count; i++)
		if (strcmp(u->names[i], name) == 0) {
			free(u->names[i]);
			u->names[i] = u->names[--u->count];
			return;
		}
}

/* The file into *u: a missing file is "all"; one that cannot be read
 * too (logged), so that nothing disappears from a client's view. */
static void
imap_subs_load(struct store *st, struct imap_subs *u)
{
	char *text, *line, *next;

	memset(u, 0, sizeof(*u));
	if (imap_userfile_read(st, "subscriptions", &text) <= 0) {
		u->all = true;
		return;
	}
	for (line = text; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (line[0] != '\0' && strlen(line) <= STORE_FOLDER_NAME_MAX)
			imap_subs_add(u, line);
	}
	free(text);
}

static int
imap_subs_save(struct store *st, const struct imap_subs *u,
    const char **error_r)
{
	struct buf b;
	int ret;

	buf_init(&b, IMAP_USERFILE_MAX + 1);
	for (size_t i = 0; i < u->count; i++)
		(void)buf_printf(&b, "%s\n", u->names[i]);
	ret = imap_userfile_replace(st, "subscriptions", &b, error_r);
	buf_free(&b);
	return ret;
}

/* The uses of folder name: by its name, and from the file. */
static unsigned
imap_special_uses(const struct imap_special_use *u, const char *name)
{
	unsigned uses = 0;

	for (size_t k = 0; k < IMAP_SPECIAL_COUNT; k++)
		if (strcmp(name, imap_special[k].name) == 0)
			uses |= 1u << k;
	for (size_t i = 0; i < u->count; i++)
		if (strcmp(u->names[i], name) == 0)
			uses |= u->uses[i];
	return uses;
}

/*
 * Matching.
 */

/*
 * '*' matches anything, '%' anything but '/'. One row of states per
 * name position, updated for each pattern byte: O(|pat| * |name|).
 */
static bool
imap_list_match(const char *pat, const char *name)
{
	bool row[STORE_FOLDER_NAME_MAX + 2], next[STORE_FOLDER_NAME_MAX + 2];
	size_t n = strlen(name), j;
	bool any;

	if (n > STORE_FOLDER_NAME_MAX)
		return false;
	memset(row, 0, sizeof(row));
	row[0] = true;
	for (; *pat != '\0'; pat++) {
		memset(next, 0, sizeof(next));
		any = false;
		for (j = 0; j <= n; j++) {
			if (*pat == '*' || *pat == '%') {
				if (*pat == '%' && j > 0 && name[j - 1] == '/')
					any = false;
				any |= row[j];
				next[j] = any;
			} else if (j < n && row[j] && name[j] == *pat)
				next[j + 1] = true;
		}
		memcpy(row, next, sizeof(row));
	}
	return row[n];
}

/* INBOX is the inbox in any case, also as the first level of a
 * pattern ("inbox/%"): spell it as the store does. */
static void
imap_list_inbox_case(char *pat)
{
	if (strncasecmp(pat, "INBOX", 5) == 0 &&
	    (pat[5] == '\0' || pat[5] == '/'))
		memcpy(pat, "INBOX", 5);
}

static bool
imap_list_matches_any(const struct imap_list_req *r, const char *name)
{
	for (unsigned i = 0; i < r->npats; i++)
		if (imap_list_match(r->pats[i], name))
			return true;
	return false;
}

/*
 * Parsing the command.
 */

static int
imap_list_sel_opts(struct imap_list_req *r, const struct imap_arg *arg)
{
	const struct imap_arg *l;
	const char *a, *error;
	unsigned n;

	if (imap_arg_list(arg, &l, &n, &error) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_atom(&l[i], &a, &error) < 0)
			return -1;
		if (strcasecmp(a, "SUBSCRIBED") == 0)
			r->sel |= IMAP_LSEL_SUBSCRIBED;
		else if (strcasecmp(a, "REMOTE") == 0)
			r->sel |= IMAP_LSEL_REMOTE;
		else if (strcasecmp(a, "RECURSIVEMATCH") == 0)
			r->sel |= IMAP_LSEL_RECURSIVE;
		else if (strcasecmp(a, "SPECIAL-USE") == 0)
			r->sel |= IMAP_LSEL_SPECIAL;
		else
			return -1;
	}
	/* RFC 5258: RECURSIVEMATCH needs a selection to recurse on. */
	if ((r->sel & IMAP_LSEL_RECURSIVE) &&
	    !(r->sel & (IMAP_LSEL_SUBSCRIBED | IMAP_LSEL_SPECIAL)))
		return -1;
	return 0;
}

static int
imap_list_status_items(struct imap_list_req *r, const struct imap_arg *arg)
{
	const char *a, *error;
	size_t k;

	if (imap_arg_list(arg, &r->status, &r->nstatus, &error) < 0 ||
	    r->nstatus == 0)
		return -1;
	for (unsigned i = 0; i < r->nstatus; i++) {
		if (imap_arg_atom(&r->status[i], &a, &error) < 0)
			return -1;
		for (k = 0; k < IMAP_STATUS_COUNT; k++)
			if (strcasecmp(a, imap_status_items[k]) == 0)
				break;
		if (k == IMAP_STATUS_COUNT)
			return -1;
	}
	return 0;
}

static int
imap_list_ret_opts(struct imap_list_req *r, const struct imap_arg *arg)
{
	const struct imap_arg *l;
	const char *a, *error;
	unsigned n;

	if (imap_arg_list(arg, &l, &n, &error) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_atom(&l[i], &a, &error) < 0)
			return -1;
		if (strcasecmp(a, "CHILDREN") == 0)
			r->ret |= IMAP_LRET_CHILDREN;
		else if (strcasecmp(a, "SUBSCRIBED") == 0)
			r->ret |= IMAP_LRET_SUBSCRIBED;
		else if (strcasecmp(a, "SPECIAL-USE") == 0)
			r->ret |= IMAP_LRET_SPECIAL;
		else if (strcasecmp(a, "STATUS") == 0 && i + 1 < n &&
		    (r->ret & IMAP_LRET_STATUS) == 0) {
			r->ret |= IMAP_LRET_STATUS;
			if (imap_list_status_items(r, &l[++i]) < 0)
				return -1;
		} else
			return -1;
	}
	return 0;
}

/* imap_list_decode: a reference or pattern in wire form into out, as
 * modified UTF-7 or, with utf8, as UTF-8 that imap_mailbox_utf8_valid
 * takes. The wildcards survive either. -1 if it is neither. */
static int
imap_list_decode(const struct imap_list_req *r, const char *wire,
    struct buf *out)
{
	size_t len = strlen(wire);

	if (!r->utf8)
		return utf7_decode(wire, out);
	if (!imap_mailbox_utf8_valid(wire, len))
		return -1;
	return buf_append(out, wire, len);
}

/* Add reference + pattern (both wire form) to r; -1 if one cannot be
 * decoded or there are too many. */
static int
imap_list_add_pattern(struct imap_list_req *r, const char *ref_w,
    const char *pat_w)
{
	struct buf ref, pat;
	int ret = -1;

	if (r->npats >= IMAP_LIST_PATTERNS_MAX)
		return -1;
	buf_init(&ref, IMAP_LIST_NAME_MAX);
	buf_init(&pat, IMAP_LIST_NAME_MAX);
	if ((ref_w[0] == '\0' || imap_list_decode(r, ref_w, &ref) == 0) &&
	    imap_list_decode(r, pat_w, &pat) == 0 &&
	    buf_append(&ref, pat.data, pat.len) == 0) {
		r->pats[r->npats] = xstrdup(buf_cstr(&ref));
		imap_list_inbox_case(r->pats[r->npats++]);
		ret = 0;
	}
	buf_free(&ref);
	buf_free(&pat);
	return ret;
}

static int
imap_list_patterns(struct imap_list_req *r, const char *ref_w,
    const struct imap_arg *arg)
{
	const struct imap_arg *l;
	const char *p, *error;
	unsigned n;

	if (arg->type != IMAP_ARG_LIST) {
		if (imap_arg_list_mailbox(arg, &p, &error) < 0)
			return -1;
		return imap_list_add_pattern(r, ref_w, p);
	}
	if (imap_arg_list(arg, &l, &n, &error) < 0 || n == 0)
		return -1;
	for (unsigned i = 0; i < n; i++)
		if (imap_arg_list_mailbox(&l[i], &p, &error) < 0 ||
		    imap_list_add_pattern(r, ref_w, p) < 0)
			return -1;
	return 0;
}

/* The whole command into r; -1 for BAD. *delim_r: the RFC 3501 special
 * case of a single empty pattern, which asks for the delimiter. */
static int
imap_list_parse(struct imap_list_req *r, const struct imap_cmd *cmd,
    bool *delim_r)
{
	const struct imap_arg *a = cmd->args;
	unsigned i = 0;
	const char *ref_w, *word, *error;

	*delim_r = false;
	if (strcmp(r->verb, "LIST") == 0 && cmd->argc > 0 &&
	    a[0].type == IMAP_ARG_LIST) {
		if (imap_list_sel_opts(r, &a[0]) < 0)
			return -1;
		i++;
	}
	if (i + 2 > cmd->argc ||
	    imap_arg_astring(&a[i], &ref_w, &error) < 0 ||
	    imap_list_patterns(r, ref_w, &a[i + 1]) < 0)
		return -1;
	*delim_r = a[i + 1].type != IMAP_ARG_LIST && r->npats == 1 &&
	    a[i + 1].len == 0;
	i += 2;
	if (i < cmd->argc && strcmp(r->verb, "LIST") == 0) {
		if (imap_arg_atom(&a[i], &word, &error) < 0 ||
		    strcasecmp(word, "RETURN") != 0 || i + 1 >= cmd->argc ||
		    imap_list_ret_opts(r, &a[i + 1]) < 0)
			return -1;
		i += 2;
	}
	return i == cmd->argc ? 0 : -1;
}

/*
 * The folders.
 */

static int
imap_list_folder_cb(const char *name, unsigned attrs, void *ctx)
{
	struct imap_list_folders *f = ctx;

	if (f->count >= IMAP_LIST_FOLDERS_MAX)
		return 1;
	f->names = xreallocarray(f->names, f->count + 1, sizeof(char *));
	f->attrs = xreallocarray(f->attrs, f->count + 1, sizeof(unsigned));
	f->names[f->count] = xstrdup(name);
	f->attrs[f->count++] = attrs;
	return 0;
}

static void
imap_list_folders_free(struct imap_list_folders *f)
{
	for (size_t i = 0; i < f->count; i++)
		free(f->names[i]);
	free(f->names);
	free(f->attrs);
	imap_special_free(&f->su);
	imap_subs_free(&f->subs);
	memset(f, 0, sizeof(*f));
}

/* Every folder, INBOX always among them. -1 with *error_r. */
static int
imap_list_load(struct store *st, struct imap_list_folders *f,
    const char **error_r)
{
	bool inbox = false;

	memset(f, 0, sizeof(*f));
	if (store_folder_list(st, imap_list_folder_cb, f, error_r) !=
	    STORE_OP_OK && f->count < IMAP_LIST_FOLDERS_MAX) {
		imap_list_folders_free(f);
		return -1;
	}
	for (size_t i = 0; i < f->count; i++)
		inbox |= strcmp(f->names[i], "INBOX") == 0;
	if (!inbox && f->count < IMAP_LIST_FOLDERS_MAX)
		(void)imap_list_folder_cb("INBOX", 0, f);
	imap_special_load(st, &f->su);
	imap_subs_load(st, &f->subs);
	/* Subscribed names that are no folder are listed too, marked. */
	for (size_t k = 0; k < f->subs.count; k++) {
		size_t i;

		for (i = 0; i < f->count; i++)
			if (strcmp(f->names[i], f->subs.names[k]) == 0)
				break;
		if (i == f->count && f->count < IMAP_LIST_FOLDERS_MAX)
			(void)imap_list_folder_cb(f->subs.names[k],
			    IMAP_LIST_NONEXISTENT | STORE_FOLDER_NOSELECT, f);
	}
	return 0;
}

static bool
imap_list_subscribed(const struct imap_list_folders *f, size_t i)
{
	if (f->subs.all)
		return (f->attrs[i] & STORE_FOLDER_NOSELECT) == 0;
	return imap_subs_listed(&f->subs, f->names[i]);
}

/* A folder below f->names[i] that is subscribed (RECURSIVEMATCH). */
static bool
imap_list_sub_below(const struct imap_list_folders *f, size_t i)
{
	size_t n = strlen(f->names[i]);

	for (size_t j = 0; j < f->count; j++)
		if (strncmp(f->names[j], f->names[i], n) == 0 &&
		    f->names[j][n] == '/' && imap_list_subscribed(f, j))
			return true;
	return false;
}

/*
 * Answering.
 */

static void
imap_list_attr(struct buf *b, const char *attr)
{
	if (b->len > 0 && b->data[b->len - 1] != '(')
		buf_append_byte(b, ' ');
	buf_append_str(b, attr);
}

/* The attribute list of folder name; sub: it is listed as subscribed;
 * uses: its special uses. */
static void
imap_list_attrs(const struct imap_list_req *r, const char *name,
    unsigned attrs, bool sub, unsigned uses, struct buf *b)
{
	const char *special;
	bool xlist = strcmp(r->verb, "XLIST") == 0;

	bool lsub = strcmp(r->verb, "LSUB") == 0;

	buf_append_byte(b, '(');
	/* RFC 5258: \NonExistent implies \Noselect; LSUB knows only the
	 * latter. */
	if ((attrs & IMAP_LIST_NONEXISTENT) && !lsub)
		imap_list_attr(b, "\\NonExistent");
	else if (attrs & STORE_FOLDER_NOSELECT)
		imap_list_attr(b, "\\Noselect");
	if (attrs & STORE_FOLDER_NOINFERIORS)
		imap_list_attr(b, "\\Noinferiors");
	if (!(attrs & IMAP_LIST_NONEXISTENT))
		imap_list_attr(b, attrs & STORE_FOLDER_CHILDREN ?
		    "\\HasChildren" : "\\HasNoChildren");
	if (sub && !lsub)
		imap_list_attr(b, "\\Subscribed");
	if (xlist && strcmp(name, "INBOX") == 0)
		imap_list_attr(b, "\\Inbox");
	for (size_t k = 0; k < IMAP_SPECIAL_COUNT; k++) {
		if (strcmp(r->verb, "LSUB") == 0 || !(uses & 1u << k))
			continue;
		special = imap_special[k].attr;
		imap_list_attr(b, xlist && strcmp(special, "\\Junk") == 0 ?
		    "\\Spam" : special);
	}
	buf_append_byte(b, ')');
}

/* RFC 5819: the STATUS response right after the folder's LIST. A folder
 * whose status cannot be had is left out, as the RFC allows. */
static void
imap_list_status(struct imap_session *s, const struct imap_list_req *r,
    struct store *st, const char *name)
{
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct buf line;
	const char *item, *error;
	bool exists = false;
	int ret = -1;

	if (store_sync(st, name, false, &exists, &error) == 0 && exists &&
	    mindex_begin(store_index(st), false, &txn, &error) == 0) {
		ret = mindex_folder_get(txn, name, &f);
		mindex_abort(&txn);
	}
	if (ret <= 0)
		return;
	buf_init(&line, STORE_FOLDER_NAME_MAX * 4 + 512);
	buf_append_str(&line, "STATUS ");
	imap_mailbox_put(s, name, &line);
	buf_append_str(&line, " (");
	for (unsigned i = 0; i < r->nstatus; i++) {
		const unsigned long long v[IMAP_STATUS_COUNT] = { f.count,
		    f.uidnext, f.uidvalidity, f.unseen, 0, f.deleted, f.vsize,
		    f.highestmodseq };
		size_t k;

		(void)imap_arg_atom(&r->status[i], &item, &error);
		for (k = 0; k < IMAP_STATUS_COUNT; k++)
			if (strcasecmp(item, imap_status_items[k]) == 0)
				break;
		buf_printf(&line, "%s%s %llu", i > 0 ? " " : "",
		    imap_status_items[k], v[k]);
	}
	buf_append_byte(&line, ')');
	imap_untagged_buf(s, &line);
	buf_free(&line);
}

/* Whether folder i is listed, and how: *sub_r \Subscribed, *childinfo_r
 * RFC 5258 CHILDINFO ("SUBSCRIBED"). */
static bool
imap_list_selected(const struct imap_list_req *r,
    const struct imap_list_folders *f, size_t i, bool *sub_r,
    bool *childinfo_r)
{
	bool sub = imap_list_subscribed(f, i);
	bool recursive = (r->sel & IMAP_LSEL_RECURSIVE) != 0;

	*sub_r = sub && (r->sel & IMAP_LSEL_SUBSCRIBED ||
	    r->ret & IMAP_LRET_SUBSCRIBED);
	*childinfo_r = recursive && (r->sel & IMAP_LSEL_SUBSCRIBED) &&
	    imap_list_sub_below(f, i);
	if (!imap_list_matches_any(r, f->names[i]))
		return false;
	/* A name that is only a subscription: for subscription lists. */
	if ((f->attrs[i] & IMAP_LIST_NONEXISTENT) &&
	    !(r->sel & IMAP_LSEL_SUBSCRIBED))
		return false;
	if ((r->sel & IMAP_LSEL_SPECIAL) &&
	    imap_special_uses(&f->su, f->names[i]) == 0)
		return false;
	if ((r->sel & IMAP_LSEL_SUBSCRIBED) && !sub && !*childinfo_r)
		return false;
	return true;
}

static void
imap_list_answer(struct imap_session *s, const struct imap_list_req *r,
    struct store *st, const struct imap_list_folders *f)
{
	struct buf line;
	bool sub, childinfo;

	buf_init(&line, STORE_FOLDER_NAME_MAX * 4 + 512);
	for (size_t i = 0; i < f->count; i++) {
		if (!imap_list_selected(r, f, i, &sub, &childinfo))
			continue;
		buf_truncate(&line, 0);
		buf_printf(&line, "%s ", r->verb);
		imap_list_attrs(r, f->names[i], f->attrs[i], sub,
		    imap_special_uses(&f->su, f->names[i]), &line);
		buf_append_str(&line, " \"/\" ");
		imap_mailbox_put(s, f->names[i], &line);
		if (childinfo)
			buf_append_str(&line,
			    " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		imap_untagged_buf(s, &line);
		if ((r->ret & IMAP_LRET_STATUS) &&
		    (f->attrs[i] & STORE_FOLDER_NOSELECT) == 0)
			imap_list_status(s, r, st, f->names[i]);
	}
	buf_free(&line);
}

static void
imap_list_req_free(struct imap_list_req *r)
{
	for (unsigned i = 0; i < r->npats; i++)
		free(r->pats[i]);
	r->npats = 0;
}

void
imap_cmd_list_ext(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_list_req r;
	struct imap_list_folders f;
	struct store *st;
	const char *error;
	bool delim;

	memset(&r, 0, sizeof(r));
	r.verb = cmd->name;
	r.utf8 = s->utf8;
	if (strcmp(r.verb, "LSUB") == 0)
		r.sel |= IMAP_LSEL_SUBSCRIBED;
	if (imap_list_parse(&r, cmd, &delim) < 0) {
		imap_list_req_free(&r);
		imap_bad(s, "LIST [(options)] reference pattern "
		    "[RETURN (options)]");
		return;
	}
	if (delim) {
		imap_untagged(s, "%s (\\Noselect) \"/\" \"\"", r.verb);
		imap_tagged(s, "OK", "%s completed", r.verb);
	} else if ((st = imap_store(s)) != NULL) {
		if (imap_list_load(st, &f, &error) < 0) {
			log_error("imap: user=<%s>, %s: %s", s->user, r.verb,
			    error);
			imap_tagged(s, "NO", "[UNAVAILABLE] Cannot list "
			    "mailboxes");
		} else {
			imap_list_answer(s, &r, st, &f);
			imap_list_folders_free(&f);
			imap_tagged(s, "OK", "%s completed", r.verb);
		}
	}
	imap_list_req_free(&r);
}

/*
 * Default folders.
 */

int
imap_default_folders(struct imap_session *s)
{
	struct imap_list_folders f;
	const char *error;
	enum store_op op;
	int ret = 0;

	if (s->st == NULL)
		return -1;
	if (imap_list_load(s->st, &f, &error) < 0) {
		log_error("imap: user=<%s>, default folders: %s", s->user,
		    error);
		return -1;
	}
	/* Only a user who has nothing but INBOX: folders someone removed
	 * on purpose are not made again. */
	if (f.count == 1) {
		for (size_t i = 0; i < IMAP_SPECIAL_COUNT; i++) {
			op = store_folder_create(s->st, imap_special[i].name,
			    &error);
			if (op != STORE_OP_OK && op != STORE_OP_EXISTS) {
				log_error("imap: user=<%s>, cannot create "
				    "%s (%s)", s->user, imap_special[i].name,
				    error);
				ret = -1;
			}
		}
	}
	imap_list_folders_free(&f);
	return ret;
}

/*
 * CREATE-SPECIAL-USE (RFC 6154 section 3, RFC 4466 create-params).
 */

/* "(USE (\\Attr ...))" into *uses_r: 0, -1 for BAD, -2 for an attribute
 * we do not keep ([USEATTR]). */
static int
imap_create_params(const struct imap_arg *arg, unsigned *uses_r)
{
	const struct imap_arg *l, *attrs;
	const char *a, *error;
	unsigned n, na;
	size_t k;

	*uses_r = 0;
	if (imap_arg_list(arg, &l, &n, &error) < 0 || n != 2 ||
	    imap_arg_atom(&l[0], &a, &error) < 0 ||
	    strcasecmp(a, "USE") != 0 ||
	    imap_arg_list(&l[1], &attrs, &na, &error) < 0)
		return -1;
	for (unsigned i = 0; i < na; i++) {
		if (imap_arg_atom(&attrs[i], &a, &error) < 0 || a[0] != '\\')
			return -1;
		for (k = 0; k < IMAP_SPECIAL_COUNT; k++)
			if (strcasecmp(a, imap_special[k].attr) == 0)
				break;
		if (k == IMAP_SPECIAL_COUNT)
			return -2;
		*uses_r |= 1u << k;
	}
	return 0;
}

/* Answer a failed store_folder_create as imap_cmd_write.c does. */
static void
imap_create_no(struct imap_session *s, enum store_op op, const char *error)
{
	if (op == STORE_OP_EXISTS)
		imap_tagged(s, "NO", "[ALREADYEXISTS] Mailbox already exists");
	else if (op == STORE_OP_BADNAME || op == STORE_OP_CANNOT)
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
	else {
		log_error("imap: user=<%s>, CREATE failed (%s)", s->user,
		    error != NULL ? error : "unknown error");
		imap_tagged(s, "NO", "[UNAVAILABLE] Mail store error, try "
		    "again later");
	}
}

/* Create folder name with uses, or leave nothing behind. */
static void
imap_create_special(struct imap_session *s, struct store *st,
    const char *name, unsigned uses)
{
	char canon[STORE_FOLDER_NAME_MAX + 1];
	struct imap_special_use u;
	const char *error = NULL;
	enum store_op op;

	if ((op = store_folder_name(st, name, canon, sizeof(canon),
	    &error)) != STORE_OP_OK ||
	    (op = store_folder_create(st, canon, &error)) != STORE_OP_OK) {
		imap_create_no(s, op, error);
		return;
	}
	imap_special_load(st, &u);
	imap_special_set(&u, canon, uses);
	if (imap_special_save(st, &u, &error) < 0) {
		log_error("imap: user=<%s>, CREATE: %s", s->user, error);
		(void)store_folder_delete(st, canon, &error);
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot keep the special "
		    "use, try again later");
	} else
		imap_tagged(s, "OK", "CREATE completed");
	imap_special_free(&u);
}

void
imap_cmd_create_ext(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct store *st;
	struct buf name;
	const char *wire, *error;
	unsigned uses;
	int ret;

	if (cmd->argc != 2) {
		imap_cmd_create(s, cmd);
		return;
	}
	if (imap_arg_astring(&cmd->args[0], &wire, &error) < 0 ||
	    (ret = imap_create_params(&cmd->args[1], &uses)) == -1) {
		imap_bad(s, "CREATE mailbox [(USE (attributes))]");
		return;
	}
	if (ret == -2) {
		imap_tagged(s, "NO", "[USEATTR] Special use not supported");
		return;
	}
	buf_init(&name, IMAP_LIST_NAME_MAX);
	if (imap_mailbox_from_wire(s, wire, &name) == 0 &&
	    (st = imap_store(s)) != NULL) {
		/* As CREATE: a trailing separator is dropped. */
		if (name.len > 1 && name.data[name.len - 1] == '/')
			buf_truncate(&name, name.len - 1);
		imap_create_special(s, st, buf_cstr(&name), uses);
	}
	buf_free(&name);
}

int
imap_special_use_rename(struct imap_session *s, const char *from,
    const char *to)
{
	struct imap_special_use u;
	const char *error;
	size_t n = strlen(from);
	bool changed = false;
	char *moved;
	int ret = 0;

	if (s->st == NULL)
		return -1;
	imap_special_load(s->st, &u);
	for (size_t i = 0; i < u.count; i++) {
		/* DELETE leaves the children (RFC 3501); RENAME takes
		 * them along. */
		if (strncmp(u.names[i], from, n) != 0 ||
		    (u.names[i][n] != '\0' && (to == NULL ||
		    u.names[i][n] != '/')))
			continue;
		changed = true;
		if (to == NULL) {
			u.uses[i] = 0;
			continue;
		}
		moved = xasprintf("%s%s", to, u.names[i] + n);
		free(u.names[i]);
		u.names[i] = moved;
	}
	if (changed && imap_special_save(s->st, &u, &error) < 0) {
		log_error("imap: user=<%s>, special use: %s", s->user, error);
		ret = -1;
	}
	imap_special_free(&u);
	return ret;
}

int
imap_subscribe(struct imap_session *s, const char *name, bool on)
{
	struct imap_list_folders f;
	const char *error;
	int ret;

	if (s->st == NULL || imap_list_load(s->st, &f, &error) < 0)
		return -1;
	/* The first change writes down what "all" meant until now. */
	if (f.subs.all) {
		f.subs.all = false;
		for (size_t i = 0; i < f.count; i++)
			if ((f.attrs[i] & STORE_FOLDER_NOSELECT) == 0)
				imap_subs_add(&f.subs, f.names[i]);
	}
	if (!on)
		imap_subs_remove(&f.subs, name);
	else if (f.subs.count >= IMAP_SUBS_MAX &&
	    !imap_subs_listed(&f.subs, name)) {
		imap_list_folders_free(&f);
		return -2;
	} else
		imap_subs_add(&f.subs, name);
	ret = imap_subs_save(s->st, &f.subs, &error);
	if (ret < 0)
		log_error("imap: user=<%s>, subscriptions: %s", s->user,
		    error);
	imap_list_folders_free(&f);
	return ret;
}

int
imap_subscriptions_rename(struct imap_session *s, const char *from,
    const char *to)
{
	struct imap_subs u;
	const char *error;
	size_t n = strlen(from);
	bool changed = false;
	char *moved;
	int ret = 0;

	if (s->st == NULL)
		return -1;
	imap_subs_load(s->st, &u);
	for (size_t i = 0; !u.all && i < u.count; i++) {
		if (strncmp(u.names[i], from, n) != 0 ||
		    (u.names[i][n] != '\0' && u.names[i][n] != '/'))
			continue;
		moved = xasprintf("%s%s", to, u.names[i] + n);
		if (strlen(moved) > STORE_FOLDER_NAME_MAX) {
			free(moved);
			continue;
		}
		free(u.names[i]);
		u.names[i] = moved;
		changed = true;
	}
	if (changed && imap_subs_save(s->st, &u, &error) < 0) {
		log_error("imap: user=<%s>, subscriptions: %s", s->user,
		    error);
		ret = -1;
	}
	imap_subs_free(&u);
	return ret;
}

/*
 * NOTIFY's view of the folder list (RFC 5465 MailboxName and
 * SubscriptionChange, imap_notify.c).
 */

static int
imap_folder_ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct imap_folder_ent *)a)->name,
	    ((const struct imap_folder_ent *)b)->name);
}

int
imap_list_snapshot(struct store *st, struct imap_folder_ent **ents_r,
    size_t *count_r, const char **error_r)
{
	struct imap_list_folders f;
	struct imap_folder_ent *e;

	*ents_r = NULL;
	*count_r = 0;
	if (imap_list_load(st, &f, error_r) < 0)
		return -1;
	e = xcalloc(f.count + 1, sizeof(*e));
	for (size_t i = 0; i < f.count; i++) {
		e[i].attrs = f.attrs[i] & ~IMAP_LIST_NONEXISTENT;
		e[i].exists = (f.attrs[i] & IMAP_LIST_NONEXISTENT) == 0;
		e[i].sub = imap_list_subscribed(&f, i);
		e[i].uses = imap_special_uses(&f.su, f.names[i]);
	}
	/* The names change hands last: the lookups above need them. */
	for (size_t i = 0; i < f.count; i++) {
		e[i].name = f.names[i];
		f.names[i] = NULL;
	}
	qsort(e, f.count, sizeof(*e), imap_folder_ent_cmp);
	*ents_r = e;
	*count_r = f.count;
	imap_list_folders_free(&f);
	return 0;
}

void
imap_list_snapshot_free(struct imap_folder_ent **ents, size_t count)
{
	if (*ents == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free((*ents)[i].name);
	free(*ents);
	*ents = NULL;
}

void
imap_list_notify_line(const struct imap_session *s,
    const struct imap_folder_ent *e, const char *oldname, struct buf *line)
{
	struct imap_list_req r;

	memset(&r, 0, sizeof(r));
	r.verb = "LIST";
	buf_append_str(line, "LIST ");
	if (!e->exists)
		buf_append_str(line, e->sub ? "(\\NonExistent \\Subscribed)" :
		    "(\\NonExistent)");
	else
		imap_list_attrs(&r, e->name, e->attrs, e->sub, e->uses, line);
	buf_append_str(line, " \"/\" ");
	imap_mailbox_put(s, e->name, line);
	if (oldname != NULL) {
		buf_append_str(line, " (\"OLDNAME\" (");
		imap_mailbox_put(s, oldname, line);
		buf_append_str(line, "))");
	}
}
