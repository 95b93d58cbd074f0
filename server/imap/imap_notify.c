/*
 * imap_notify.c: NOTIFY (RFC 5465): the command's parser, and a
 * session's NOTIFY state: the mailboxes it watches, what it last told the
 * client of each (a STATUS snapshot, and the folder list with the
 * subscriptions), and the untagged STATUS and LIST lines that report
 * what changed since.
 *
 * How changes are learnt: through the process's lib/notify (inotify),
 * never by polling. A watched mailbox is watched where its changes land
 * (Maildir: new/ and cur/; mbox: its entry in its directory, and the
 * index's data.mdb, where mbox flags live); MailboxName and
 * SubscriptionChange through the user's mail root (Maildir++ folders
 * and the subscriptions file are entries of it; mbox: its directories
 * too). A wake-up only marks things to look at; the look (a lazy sync
 * and one index lookup per marked mailbox; the folder list) and the
 * report come at the next moment a response may be sent: at once when no
 * command is running (IDLE, or between commands: RFC 5465 allows any
 * time), else at the end of the command.
 *
 * Choices: a mailbox named by several groups takes the events of the
 * last one (so "(personal (...)) (mailboxes Spam NONE)" leaves Spam
 * out). SELECTED and SELECTED-DELAYED both report expunges only where
 * RFC 3501 allows them (SELECTED-DELAYED's rule, which SELECTED allows
 * too), and new mail and flags as soon as no command runs. Changes this
 * session makes itself are not reported (RFC 5465 section 5 SHOULD): the
 * snapshots are taken again, silently, after a command that changes
 * folders, subscriptions or another mailbox's messages. A rename is
 * recognised by its UIDVALIDITY (kept by RENAME, never reused), so it is
 * one LIST with OLDNAME, not a deletion and a creation.
 *
 * Trusts nothing the client sends: arguments through the parser's
 * accessors, mailbox names through imap_mailbox_from_wire, counts under
 * the IMAP_NOTIFY_*_MAX limits. Trusts the store, the index and the
 * folder list of imap_list.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat/compat.h"
#include "log.h"
#include "mailloc.h"
#include "mindex.h"
#include "notify.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_notify.h"
#include "server/imap/imap_private.h"

/*
 * The parser.
 */

static const struct {
	const char *name;
	enum imap_notify_filter filter;
	bool names;		/* takes one-or-more-mailbox */
} imap_notify_filters[] = {
	{ "SELECTED", IMAP_NOTIFY_SELECTED, false },
	{ "SELECTED-DELAYED", IMAP_NOTIFY_SELECTED_DELAYED, false },
	{ "INBOXES", IMAP_NOTIFY_INBOXES, false },
	{ "PERSONAL", IMAP_NOTIFY_PERSONAL, false },
	{ "SUBSCRIBED", IMAP_NOTIFY_SUBSCRIBED, false },
	{ "SUBTREE", IMAP_NOTIFY_SUBTREE, true },
	{ "MAILBOXES", IMAP_NOTIFY_MAILBOXES, true },
};
#define IMAP_NOTIFY_NFILTERS \
    (sizeof(imap_notify_filters) / sizeof(imap_notify_filters[0]))

/* Events known by name but not served: NO [BADEVENT]. */
#define IMAP_NOTIFY_EV_ANNOTATION	0x100u
#define IMAP_NOTIFY_EV_METADATA		0x200u	/* Mailbox-, ServerMetadata */
#define IMAP_NOTIFY_EV_OTHER		0x400u	/* an event-ext */

static const struct {
	const char *name;
	unsigned ev;
} imap_notify_events[] = {
	{ "MessageNew", IMAP_NOTIFY_EV_NEW },
	{ "MessageExpunge", IMAP_NOTIFY_EV_EXPUNGE },
	{ "FlagChange", IMAP_NOTIFY_EV_FLAG },
	{ "AnnotationChange", IMAP_NOTIFY_EV_ANNOTATION },
	{ "MailboxName", IMAP_NOTIFY_EV_NAME },
	{ "SubscriptionChange", IMAP_NOTIFY_EV_SUBS },
	{ "MailboxMetadataChange", IMAP_NOTIFY_EV_METADATA },
	{ "ServerMetadataChange", IMAP_NOTIFY_EV_METADATA },
};
#define IMAP_NOTIFY_NEVENTS \
    (sizeof(imap_notify_events) / sizeof(imap_notify_events[0]))

struct imap_notify_parse {
	struct imap_notify_spec *spec;
	unsigned names;		/* mailbox names so far */
	bool selected;		/* a SELECTED(-DELAYED) group seen */
	bool badevent;		/* an event not served (answered last) */
	const char *error;
	int code;
};

static int
imap_notify_err(struct imap_notify_parse *p, int code, const char *error)
{
	p->code = code;
	p->error = error;
	return -1;
}

/* fetch-att of MessageNew: a non-empty list of the items served. */
static int
imap_notify_parse_fetch(struct imap_notify_parse *p,
    struct imap_notify_group *g, const struct imap_arg *arg)
{
	const struct imap_arg *l;
	const char *att, *error;
	unsigned n;

	if (imap_arg_list(arg, &l, &n, &error) < 0 || n == 0)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "MessageNew: (fetch-att ...) expected");
	if (n > IMAP_NOTIFY_FETCH_MAX)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_TOOBIG,
		    "Too many fetch-att items");
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_atom(&l[i], &att, &error) < 0)
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "MessageNew: fetch-att must be atoms");
		if (strcasecmp(att, "UID") == 0)
			g->fetch |= IMAP_NOTIFY_FETCH_UID;
		else if (strcasecmp(att, "FLAGS") == 0)
			g->fetch |= IMAP_NOTIFY_FETCH_FLAGS;
		else if (strcasecmp(att, "MODSEQ") == 0)
			g->fetch |= IMAP_NOTIFY_FETCH_MODSEQ;
		else
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "MessageNew: only UID, FLAGS and MODSEQ are "
			    "served as fetch-att");
	}
	return 0;
}

static unsigned
imap_notify_event_bit(const char *name)
{
	for (size_t k = 0; k < IMAP_NOTIFY_NEVENTS; k++)
		if (strcasecmp(name, imap_notify_events[k].name) == 0)
			return imap_notify_events[k].ev;
	return IMAP_NOTIFY_EV_OTHER;
}

/* events: "NONE" or a non-empty list; *all_r every event named, served
 * or not. */
static int
imap_notify_parse_events(struct imap_notify_parse *p,
    struct imap_notify_group *g, const struct imap_arg *arg,
    unsigned *all_r)
{
	const struct imap_arg *l;
	const char *name, *error;
	unsigned n, ev;

	*all_r = 0;
	if (arg->type == IMAP_ARG_ATOM &&
	    imap_arg_atom(arg, &name, &error) == 0 &&
	    strcasecmp(name, "NONE") == 0)
		return 0;
	if (imap_arg_list(arg, &l, &n, &error) < 0 || n == 0)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "Events: NONE or (event ...) expected");
	for (unsigned i = 0; i < n; i++) {
		if (l[i].type != IMAP_ARG_ATOM ||
		    imap_arg_atom(&l[i], &name, &error) < 0)
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "Events: event names expected");
		ev = imap_notify_event_bit(name);
		if ((*all_r & ev) != 0 && ev != IMAP_NOTIFY_EV_OTHER &&
		    ev != IMAP_NOTIFY_EV_METADATA)
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "Events: an event named twice");
		*all_r |= ev;
		if (ev == IMAP_NOTIFY_EV_NEW && i + 1 < n &&
		    l[i + 1].type == IMAP_ARG_LIST &&
		    imap_notify_parse_fetch(p, g, &l[++i]) < 0)
			return -1;
	}
	return 0;
}

/* The RFC 5465 rules (sections 5, 6.1) on one group's events. */
static int
imap_notify_check_group(struct imap_notify_parse *p,
    const struct imap_notify_group *g, unsigned all)
{
	bool sel = g->filter == IMAP_NOTIFY_SELECTED ||
	    g->filter == IMAP_NOTIFY_SELECTED_DELAYED;
	bool nw = (all & IMAP_NOTIFY_EV_NEW) != 0;
	bool ex = (all & IMAP_NOTIFY_EV_EXPUNGE) != 0;

	if (nw != ex)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "MessageNew and MessageExpunge go together");
	if ((all & (IMAP_NOTIFY_EV_FLAG | IMAP_NOTIFY_EV_ANNOTATION)) != 0 &&
	    !nw)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "FlagChange and AnnotationChange need MessageNew and "
		    "MessageExpunge");
	if (sel && (all & (IMAP_NOTIFY_EV_NAME | IMAP_NOTIFY_EV_SUBS |
	    IMAP_NOTIFY_EV_METADATA)) != 0)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "SELECTED and SELECTED-DELAYED take message events only");
	if (!sel && g->fetch != 0)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "fetch-att only for SELECTED and SELECTED-DELAYED");
	return 0;
}

/* one-or-more-mailbox: a mailbox or a non-empty list of them. */
static int
imap_notify_parse_names(struct imap_notify_parse *p,
    struct imap_notify_group *g, const struct imap_arg *arg)
{
	const struct imap_arg *l = arg;
	const char *name, *error;
	unsigned n = 1;

	if (arg->type == IMAP_ARG_LIST &&
	    (imap_arg_list(arg, &l, &n, &error) < 0 || n == 0))
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "Mailboxes: a name or (name ...) expected");
	if (p->names + n > IMAP_NOTIFY_NAMES_MAX)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_TOOBIG,
		    "Too many mailbox names");
	g->names = xcalloc(n, sizeof(char *));
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_astring(&l[i], &name, &error) < 0)
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "Mailboxes: mailbox names expected");
		g->names[g->nnames++] = xstrdup(name);
	}
	p->names += n;
	return 0;
}

/* event-group: "(" filter-mailboxes SP events ")". */
static int
imap_notify_parse_group(struct imap_notify_parse *p,
    const struct imap_arg *arg)
{
	struct imap_notify_group *g;
	const struct imap_arg *l;
	const char *name, *error;
	unsigned n, all;
	size_t k;

	if (p->spec->ngroups == IMAP_NOTIFY_GROUPS_MAX)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_TOOBIG,
		    "Too many event groups");
	if (imap_arg_list(arg, &l, &n, &error) < 0 || n < 2 || n > 3 ||
	    imap_arg_atom(&l[0], &name, &error) < 0)
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "Event group: (filter [mailboxes] events) expected");
	for (k = 0; k < IMAP_NOTIFY_NFILTERS; k++)
		if (strcasecmp(name, imap_notify_filters[k].name) == 0)
			break;
	if (k == IMAP_NOTIFY_NFILTERS || n != (imap_notify_filters[k].names ?
	    3u : 2u))
		return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
		    "Unknown mailbox filter, or mailboxes missing");
	g = &p->spec->groups[p->spec->ngroups++];
	g->filter = imap_notify_filters[k].filter;
	if (g->filter == IMAP_NOTIFY_SELECTED ||
	    g->filter == IMAP_NOTIFY_SELECTED_DELAYED) {
		if (p->selected)
			return imap_notify_err(p, IMAP_NOTIFY_PARSE_BAD,
			    "SELECTED or SELECTED-DELAYED given twice");
		p->selected = true;
	}
	if (n == 3 && imap_notify_parse_names(p, g, &l[1]) < 0)
		return -1;
	if (imap_notify_parse_events(p, g, &l[n - 1], &all) < 0 ||
	    imap_notify_check_group(p, g, all) < 0)
		return -1;
	if ((all & ~(IMAP_NOTIFY_EV_MESSAGE | IMAP_NOTIFY_EV_NAME |
	    IMAP_NOTIFY_EV_SUBS)) != 0)
		p->badevent = true;
	g->events = all & (IMAP_NOTIFY_EV_MESSAGE | IMAP_NOTIFY_EV_NAME |
	    IMAP_NOTIFY_EV_SUBS);
	return 0;
}

int
imap_notify_parse(const struct imap_arg *args, unsigned argc,
    struct imap_notify_spec *spec, const char **error_r)
{
	struct imap_notify_parse p;
	const char *word, *error;
	unsigned i = 1;

	memset(spec, 0, sizeof(*spec));
	memset(&p, 0, sizeof(p));
	p.spec = spec;
	if (argc < 1 || imap_arg_atom(&args[0], &word, &error) < 0) {
		*error_r = "NOTIFY SET [STATUS] (group) ... or NOTIFY NONE";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (strcasecmp(word, "NONE") == 0 && argc == 1) {
		spec->none = true;
		return IMAP_NOTIFY_PARSE_OK;
	}
	if (strcasecmp(word, "SET") != 0) {
		*error_r = "NOTIFY SET [STATUS] (group) ... or NOTIFY NONE";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	if (argc > 1 && args[1].type == IMAP_ARG_ATOM &&
	    imap_arg_atom(&args[1], &word, &error) == 0 &&
	    strcasecmp(word, "STATUS") == 0) {
		spec->status = true;
		i = 2;
	}
	if (i == argc) {
		*error_r = "NOTIFY SET needs an event group";
		return IMAP_NOTIFY_PARSE_BAD;
	}
	for (; i < argc; i++)
		if (imap_notify_parse_group(&p, &args[i]) < 0) {
			*error_r = p.error;
			return p.code;
		}
	if (p.badevent) {
		*error_r = "Unsupported NOTIFY event";
		return IMAP_NOTIFY_PARSE_BADEVENT;
	}
	return IMAP_NOTIFY_PARSE_OK;
}

void
imap_notify_spec_free(struct imap_notify_spec *spec)
{
	for (unsigned i = 0; i < spec->ngroups; i++) {
		for (unsigned k = 0; k < spec->groups[i].nnames; k++)
			free(spec->groups[i].names[k]);
		free(spec->groups[i].names);
	}
	memset(spec, 0, sizeof(*spec));
}

/*
 * The process's inotify.
 */

static struct notify *imap_notify_inotify;

void
imap_notify_use(struct notify *n)
{
	imap_notify_inotify = n;
}

bool
imap_notify_available(void)
{
	return imap_notify_inotify != NULL;
}

/*
 * A session's NOTIFY state.
 */

/* A mailbox watched for message events (not the selected one's, which
 * the view reports). Allocated one by one: its address is its watches'
 * context. */
struct imap_notify_box {
	struct imap_session *s;
	char *name;		/* owned, as the store spells it */
	unsigned events;	/* IMAP_NOTIFY_EV_* */
	bool dirty;		/* its storage changed: sync and look */
	bool stale;		/* the index changed: look (no sync, which
				   would write the index and wake us) */
	bool have;		/* snap holds what the client knows */
	struct mindex_folder snap;
	struct notify_watch *w[2];	/* owned */
};

struct imap_notify {
	/* The groups, names as the store spells them. */
	struct imap_notify_spec spec;
	int sel_events;		/* -1: no selected group (SELECTED NONE) */
	unsigned sel_fetch;
	bool sel_delayed;
	unsigned list_events;	/* EV_NAME | EV_SUBS of any group */
	struct imap_notify_box **boxes;	/* owned */
	size_t nboxes;
	/* The folder list as the client was told (MailboxName,
	 * SubscriptionChange), with each folder's UIDVALIDITY (0: none). */
	struct imap_folder_ent *folders;	/* owned */
	uint32_t *uidv;			/* owned */
	size_t nfolders;
	bool list_dirty;
	bool pending;		/* something is marked: look at the next
				   moment a response may go out */
	bool overflow;		/* gave up: the caller frees the state */
	bool cut_logged;
	size_t undrained;	/* notification bytes not yet read */
	struct notify_watch *root_w;	/* owned: the mail root */
	struct notify_watch *index_w;	/* owned: mbox: data.mdb */
	struct notify_watch **dir_w;	/* owned: mbox directories */
	size_t ndir;
};

static void imap_notify_kick(struct imap_session *s);

static void
imap_notify_box_free(struct imap_notify_box **bp)
{
	struct imap_notify_box *b = *bp;

	if (b == NULL)
		return;
	notify_remove(&b->w[0]);
	notify_remove(&b->w[1]);
	free(b->name);
	free(b);
	*bp = NULL;
}

static void
imap_notify_state_free(struct imap_notify **np)
{
	struct imap_notify *n = *np;

	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nboxes; i++)
		imap_notify_box_free(&n->boxes[i]);
	free(n->boxes);
	for (size_t i = 0; i < n->ndir; i++)
		notify_remove(&n->dir_w[i]);
	free(n->dir_w);
	notify_remove(&n->root_w);
	notify_remove(&n->index_w);
	imap_list_snapshot_free(&n->folders, n->nfolders);
	free(n->uidv);
	imap_notify_spec_free(&n->spec);
	free(n);
	*np = NULL;
}

void
imap_notify_free(struct imap_session *s)
{
	imap_notify_state_free(&s->notify);
}

bool
imap_notify_can_send(const struct imap_session *s)
{
	return !s->closed && s->fetch == NULL && s->append == NULL &&
	    !s->waiting_auth && !s->handed_over && !s->tls_reset &&
	    s->sasl_mech == NULL && (s->state == IMAP_STATE_AUTH ||
	    s->state == IMAP_STATE_SELECTED);
}

int
imap_notify_selected(const struct imap_session *s, unsigned *fetch_r)
{
	*fetch_r = 0;
	if (s->notify == NULL)
		return -1;
	*fetch_r = s->notify->sel_fetch;
	return s->notify->sel_events < 0 ? 0 : s->notify->sel_events;
}

bool
imap_notify_selected_delayed(const struct imap_session *s)
{
	return s->notify != NULL && s->notify->sel_delayed;
}

/* The store, opened again if the session released it (quiet client);
 * *reopened_r says so, for closing it after. NULL (logged): no
 * notification now. Never answers: no command runs. */
static struct store *
imap_notify_store(struct imap_session *s, bool *reopened_r)
{
	const char *error;

	*reopened_r = false;
	if (s->st != NULL)
		return s->st;
	if (s->u == NULL || store_open(s->u, &s->st, &error) < 0) {
		log_error("imap: user=<%s>, NOTIFY: cannot open the mail "
		    "store (%s)", s->user, s->u != NULL ? error : "no user");
		return NULL;
	}
	*reopened_r = true;
	return s->st;
}

/* Write one notification line (without "* " and CRLF); past
 * IMAP_NOTIFY_UNDRAINED_MAX unread bytes, the session cannot keep up. */
static void
imap_notify_send(struct imap_session *s, const struct buf *line)
{
	struct imap_notify *n = s->notify;

	if (n->overflow)
		return;
	if (n->undrained + line->len + 4 > IMAP_NOTIFY_UNDRAINED_MAX) {
		n->overflow = true;
		imap_untagged(s, "OK [NOTIFICATIONOVERFLOW] Too many "
		    "notifications unread: NOTIFY is now NONE");
		log_info("imap: user=<%s>, NOTIFY overflow (%zu bytes unread)",
		    s->user, n->undrained);
		return;
	}
	n->undrained += line->len + 4;
	imap_untagged_buf(s, line);
}

void
imap_notify_drained(struct imap_session *s)
{
	if (s->notify != NULL)
		s->notify->undrained = 0;
}

/*
 * Which mailboxes, which events.
 */

static bool
imap_notify_below(const char *name, const char *top)
{
	size_t n = strlen(top);

	return strncmp(name, top, n) == 0 && (name[n] == '\0' ||
	    name[n] == '/');
}

/* Whether group g covers folder e. */
static bool
imap_notify_covers(const struct imap_notify_group *g,
    const struct imap_folder_ent *e)
{
	switch (g->filter) {
	case IMAP_NOTIFY_INBOXES:
		return strcmp(e->name, "INBOX") == 0;
	case IMAP_NOTIFY_PERSONAL:
		return true;
	case IMAP_NOTIFY_SUBSCRIBED:
		return e->sub;
	case IMAP_NOTIFY_SUBTREE:
	case IMAP_NOTIFY_MAILBOXES:
		for (unsigned k = 0; k < g->nnames; k++)
			if (g->filter == IMAP_NOTIFY_SUBTREE ?
			    imap_notify_below(e->name, g->names[k]) :
			    strcmp(e->name, g->names[k]) == 0)
				return true;
		return false;
	default:
		return false;
	}
}

/* The events of folder e: the last group covering it decides. */
static unsigned
imap_notify_events_of(const struct imap_notify *n,
    const struct imap_folder_ent *e)
{
	unsigned ev = 0;

	for (unsigned i = 0; i < n->spec.ngroups; i++)
		if (imap_notify_covers(&n->spec.groups[i], e))
			ev = n->spec.groups[i].events;
	return ev;
}

/*
 * Watches.
 */

static void
imap_notify_box_changed(void *ctx)
{
	struct imap_notify_box *b = ctx;
	struct imap_session *s = b->s;

	b->dirty = true;
	if (s->notify != NULL)
		s->notify->pending = true;
	imap_notify_kick(s);
}

static void
imap_notify_list_changed(void *ctx)
{
	struct imap_session *s = ctx;

	if (s->notify == NULL)
		return;
	s->notify->list_dirty = s->notify->pending = true;
	imap_notify_kick(s);
}

/* mbox: a write to the index may be a flag change of any mailbox. */
static void
imap_notify_index_changed(void *ctx)
{
	struct imap_session *s = ctx;

	if (s->notify == NULL)
		return;
	for (size_t i = 0; i < s->notify->nboxes; i++)
		s->notify->boxes[i]->stale = true;
	s->notify->pending = true;
	imap_notify_kick(s);
}

static void
imap_notify_watch_failed(struct imap_session *s, const char *what,
    const char *error)
{
	log_warning("imap: user=<%s>, NOTIFY cannot watch %s (%s): its "
	    "changes are reported at the next command instead", s->user,
	    what, error);
}

/* Watch where b's changes land. */
static void
imap_notify_box_watch(struct imap_session *s, struct store *st,
    struct imap_notify_box *b)
{
	char path[4096], dir[4096 + 8], *slash;
	const char *error;

	if (store_folder_path(st, b->name, path, sizeof(path), &error) < 0)
		return;
	if (store_location(st)->format == MAILLOC_MAILDIR) {
		for (unsigned i = 0; i < 2; i++) {
			snprintf(dir, sizeof(dir), "%s/%s", path,
			    i == 0 ? "new" : "cur");
			if (notify_add(imap_notify_inotify, dir, NULL,
			    imap_notify_box_changed, b, &b->w[i],
			    &error) < 0)
				imap_notify_watch_failed(s, dir, error);
		}
		return;
	}
	if ((slash = strrchr(path, '/')) == NULL)
		return;
	*slash = '\0';
	if (notify_add(imap_notify_inotify, path[0] != '\0' ? path : "/",
	    slash + 1, imap_notify_box_changed, b, &b->w[0], &error) < 0)
		imap_notify_watch_failed(s, b->name, error);
}

/* The mail root (folders, the subscriptions file), mbox directories and
 * the mbox index. */
static void
imap_notify_watch_list(struct imap_session *s, struct store *st)
{
	struct imap_notify *n = s->notify;
	const struct mailloc *ml = store_location(st);
	char path[4096];
	const char *error;

	if (n->root_w == NULL && notify_add(imap_notify_inotify, ml->root,
	    NULL, imap_notify_list_changed, s, &n->root_w, &error) < 0)
		imap_notify_watch_failed(s, ml->root, error);
	if (ml->format != MAILLOC_MBOX)
		return;
	if (n->index_w == NULL && n->nboxes > 0 &&
	    notify_add(imap_notify_inotify, ml->index_dir, "data.mdb",
	    imap_notify_index_changed, s, &n->index_w, &error) < 0)
		imap_notify_watch_failed(s, ml->index_dir, error);
	/* Folders below the root are made in its directories. */
	for (size_t i = 0; i < n->ndir; i++)
		notify_remove(&n->dir_w[i]);
	n->ndir = 0;
	for (size_t i = 0; i < n->nfolders; i++) {
		if (!n->folders[i].exists ||
		    (n->folders[i].attrs & STORE_FOLDER_NOSELECT) == 0 ||
		    n->ndir >= IMAP_NOTIFY_WATCH_MAX ||
		    store_folder_path(st, n->folders[i].name, path,
		    sizeof(path), &error) < 0)
			continue;
		n->dir_w = xreallocarray(n->dir_w, n->ndir + 1,
		    sizeof(*n->dir_w));
		n->dir_w[n->ndir] = NULL;
		if (notify_add(imap_notify_inotify, path, NULL,
		    imap_notify_list_changed, s, &n->dir_w[n->ndir],
		    &error) == 0)
			n->ndir++;
	}
}

/*
 * Looking, and telling.
 */

/* The index's record of name, after a lazy sync if sync. 1, 0 (no such
 * folder), -1 (logged). */
static int
imap_notify_folder_get(struct imap_session *s, struct store *st,
    const char *name, bool sync, struct mindex_folder *f)
{
	struct mindex_txn *txn;
	const char *error;
	bool exists = true;
	int ret;

	if (sync && store_sync_lazy(st, name, &exists, &error) < 0) {
		log_error("imap: user=<%s>, NOTIFY: sync %s: %s", s->user,
		    name, error);
		return -1;
	}
	if (!exists)
		return 0;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: user=<%s>, NOTIFY: %s", s->user, error);
		return -1;
	}
	ret = mindex_folder_get(txn, name, f);
	mindex_abort(&txn);
	return ret < 0 ? -1 : ret > 0;
}

/* "STATUS name (MESSAGES n UIDNEXT n UIDVALIDITY n UNSEEN n
 * [HIGHESTMODSEQ n])": RFC 5465 3.1 asks for MESSAGES, UIDNEXT and
 * UIDVALIDITY, 5.1 for HIGHESTMODSEQ under CONDSTORE. */
static void
imap_notify_status(struct imap_session *s, const char *name,
    const struct mindex_folder *f)
{
	struct buf line;

	buf_init(&line, SIZE_MAX);
	buf_append_str(&line, "STATUS ");
	imap_mailbox_put(s, name, &line);
	buf_printf(&line, " (MESSAGES %u UIDNEXT %u UIDVALIDITY %u UNSEEN %u",
	    f->count, f->uidnext, f->uidvalidity, f->unseen);
	if (s->condstore)
		buf_printf(&line, " HIGHESTMODSEQ %llu",
		    (unsigned long long)imap_modseq_out(f->highestmodseq));
	buf_append_byte(&line, ')');
	imap_notify_send(s, &line);
	buf_free(&line);
}

static bool
imap_notify_is_selected(const struct imap_session *s, const char *name)
{
	return s->state == IMAP_STATE_SELECTED && s->view.name != NULL &&
	    strcmp(s->view.name, name) == 0;
}

/* Whether what changed from old to now is an event b asks for. */
static bool
imap_notify_box_news(const struct imap_notify_box *b,
    const struct mindex_folder *now)
{
	const struct mindex_folder *old = &b->snap;

	if ((b->events & (IMAP_NOTIFY_EV_NEW | IMAP_NOTIFY_EV_EXPUNGE)) &&
	    (now->count != old->count || now->uidnext != old->uidnext ||
	    now->uidvalidity != old->uidvalidity))
		return true;
	return (b->events & IMAP_NOTIFY_EV_FLAG) &&
	    (now->unseen != old->unseen ||
	    now->highestmodseq != old->highestmodseq);
}

/* Look at b: with tell, a STATUS if it changed as b's events ask (never
 * for the selected mailbox, which the view reports); the snapshot
 * follows either way. */
static void
imap_notify_box_check(struct imap_session *s, struct store *st,
    struct imap_notify_box *b, bool tell, bool sync)
{
	struct mindex_folder f;

	b->dirty = b->stale = false;
	if (imap_notify_folder_get(s, st, b->name, sync, &f) <= 0)
		return;

	if (tell && b->have && imap_notify_box_news(b, &f) &&
	    !imap_notify_is_selected(s, b->name))
		imap_notify_status(s, b->name, &f);
	b->snap = f;
	b->have = true;
}

static struct imap_notify_box *
imap_notify_box_find(struct imap_notify_box **boxes, size_t n,
    const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (boxes[i] != NULL && strcmp(boxes[i]->name, name) == 0)
			return boxes[i];
	return NULL;
}

/* The boxes the folder list and the groups give now: those kept keep
 * their snapshot and watches; new ones are looked at (silently: from
 * the index alone, unless sync, since a first sync of a thousand folders
 * writes a thousand index transactions) and watched. -1 when there would
 * be more than IMAP_NOTIFY_WATCH_MAX (nothing changed then) and strict;
 * else the first that many. */
static int
imap_notify_boxes_update(struct imap_session *s, struct store *st,
    bool strict, bool sync)
{
	struct imap_notify *n = s->notify;
	struct imap_notify_box **nb = NULL, *b;
	size_t count = 0, want = 0;
	unsigned ev;

	for (size_t i = 0; i < n->nfolders; i++)
		if (n->folders[i].exists && (n->folders[i].attrs &
		    STORE_FOLDER_NOSELECT) == 0 &&
		    (imap_notify_events_of(n, &n->folders[i]) &
		    IMAP_NOTIFY_EV_MESSAGE) != 0)
			want++;
	if (want > IMAP_NOTIFY_WATCH_MAX) {
		if (strict)
			return -1;
		if (!n->cut_logged)
			log_warning("imap: user=<%s>, NOTIFY: %zu mailboxes, "
			    "only %u watched", s->user, want,
			    IMAP_NOTIFY_WATCH_MAX);
		n->cut_logged = true;
	}
	nb = xcalloc(want + 1, sizeof(*nb));
	for (size_t i = 0; i < n->nfolders && count < IMAP_NOTIFY_WATCH_MAX;
	    i++) {
		const struct imap_folder_ent *e = &n->folders[i];

		ev = imap_notify_events_of(n, e) & IMAP_NOTIFY_EV_MESSAGE;
		if (!e->exists || (e->attrs & STORE_FOLDER_NOSELECT) || ev == 0)
			continue;
		if ((b = imap_notify_box_find(n->boxes, n->nboxes,
		    e->name)) != NULL) {
			for (size_t k = 0; k < n->nboxes; k++)
				if (n->boxes[k] == b)
					n->boxes[k] = NULL;
		} else {
			b = xcalloc(1, sizeof(*b));
			b->s = s;
			b->name = xstrdup(e->name);
			imap_notify_box_check(s, st, b, false, sync);
			imap_notify_box_watch(s, st, b);
		}
		b->events = ev;
		nb[count++] = b;
	}
	for (size_t k = 0; k < n->nboxes; k++)
		imap_notify_box_free(&n->boxes[k]);
	free(n->boxes);
	n->boxes = nb;
	n->nboxes = count;
	return 0;
}

static uint32_t *
imap_notify_uidvalidities(struct imap_session *s, struct store *st,
    const struct imap_folder_ent *f, size_t count)
{
	uint32_t *uv = xcalloc(count + 1, sizeof(*uv));
	struct mindex_folder mf;

	for (size_t i = 0; i < count; i++)
		if (f[i].exists && (f[i].attrs & STORE_FOLDER_NOSELECT) == 0 &&
		    imap_notify_folder_get(s, st, f[i].name, false, &mf) > 0)
			uv[i] = mf.uidvalidity;
	return uv;
}

static const struct imap_folder_ent *
imap_notify_folder_find(const struct imap_folder_ent *f, size_t count,
    const char *name, size_t *idx_r)
{
	size_t a = 0, z = count;

	while (a < z) {
		size_t mid = a + (z - a) / 2;
		int c = strcmp(f[mid].name, name);

		if (c == 0) {
			if (idx_r != NULL)
				*idx_r = mid;
			return &f[mid];
		}
		if (c < 0)
			a = mid + 1;
		else
			z = mid;
	}
	return NULL;
}

static void
imap_notify_list_send(struct imap_session *s,
    const struct imap_folder_ent *e, const char *oldname)
{
	struct buf line;

	buf_init(&line, SIZE_MAX);
	imap_list_notify_line(s, e, oldname, &line);
	imap_notify_send(s, &line);
	buf_free(&line);
}

/* What the client hears of the list going from old to new: LIST with
 * OLDNAME for a rename (a name gone whose UIDVALIDITY came back under
 * a new one), LIST for a name made, LIST (\NonExistent) for one gone,
 * and for SubscriptionChange LIST for a name whose \Subscribed
 * changed. */
static void
imap_notify_list_diff(struct imap_session *s,
    const struct imap_folder_ent *nf, const uint32_t *nuv, size_t nn)
{
	struct imap_notify *n = s->notify;
	const struct imap_folder_ent *o, *e;
	size_t oi;

	for (size_t i = 0; i < nn && !n->overflow; i++) {
		const char *oldname = NULL;

		e = &nf[i];
		o = imap_notify_folder_find(n->folders, n->nfolders, e->name,
		    &oi);
		if (o != NULL && o->exists == e->exists) {
			if (o->sub != e->sub && ((imap_notify_events_of(n, o) |
			    imap_notify_events_of(n, e)) &
			    IMAP_NOTIFY_EV_SUBS))
				imap_notify_list_send(s, e, NULL);
			continue;
		}
		if (!e->exists) {
			if (o != NULL && (imap_notify_events_of(n, o) &
			    IMAP_NOTIFY_EV_NAME))
				imap_notify_list_send(s, e, NULL);
			continue;
		}
		/* Made: or renamed from a name that is gone now. */
		for (size_t k = 0; nuv[i] != 0 && k < n->nfolders; k++)
			if (n->uidv[k] == nuv[i] &&
			    strcmp(n->folders[k].name, e->name) != 0 &&
			    imap_notify_folder_find(nf, nn,
			    n->folders[k].name, NULL) == NULL)
				oldname = n->folders[k].name;
		if (imap_notify_events_of(n, e) & IMAP_NOTIFY_EV_NAME)
			imap_notify_list_send(s, e, oldname);
	}
	/* Names gone, but not by a rename told above. */
	for (size_t k = 0; k < n->nfolders && !n->overflow; k++) {
		struct imap_folder_ent gone;
		bool renamed = false;

		o = &n->folders[k];
		if (!o->exists || imap_notify_folder_find(nf, nn, o->name,
		    NULL) != NULL)
			continue;
		for (size_t i = 0; n->uidv[k] != 0 && i < nn; i++)
			renamed |= nuv[i] == n->uidv[k] && nf[i].exists;
		if (renamed || !(imap_notify_events_of(n, o) &
		    IMAP_NOTIFY_EV_NAME))
			continue;
		gone = *o;
		gone.exists = false;
		gone.sub = false;
		imap_notify_list_send(s, &gone, NULL);
	}
}

/* Read the folder list again; with tell, report what changed (as the
 * groups ask); the boxes follow. */
static void
imap_notify_list_check(struct imap_session *s, struct store *st, bool tell)
{
	struct imap_notify *n = s->notify;
	struct imap_folder_ent *nf;
	const char *error;
	uint32_t *nuv;
	size_t nn;

	n->list_dirty = false;
	if (imap_list_snapshot(st, &nf, &nn, &error) < 0) {
		log_error("imap: user=<%s>, NOTIFY: folder list: %s", s->user,
		    error);
		return;
	}
	nuv = imap_notify_uidvalidities(s, st, nf, nn);
	if (tell && n->list_events != 0)
		imap_notify_list_diff(s, nf, nuv, nn);
	imap_list_snapshot_free(&n->folders, n->nfolders);
	free(n->uidv);
	n->folders = nf;
	n->uidv = nuv;
	n->nfolders = nn;
	(void)imap_notify_boxes_update(s, st, false, false);
	imap_notify_watch_list(s, st);
}

/* What a look covers. */
#define IMAP_NOTIFY_LOOK_MARKED	0	/* what watches marked: told */
#define IMAP_NOTIFY_LOOK_LIST	1	/* the folder list, silently */
#define IMAP_NOTIFY_LOOK_BOXES	2	/* every box, silently */
#define IMAP_NOTIFY_LOOK_SEL	3	/* the selected box, silently */

/* Look at what how says; a marked box is synced first. */
static void
imap_notify_look(struct imap_session *s, int how)
{
	struct imap_notify *n = s->notify;
	struct imap_notify_box *b;
	struct store *st;
	bool reopened, tell = how == IMAP_NOTIFY_LOOK_MARKED;

	if ((st = imap_notify_store(s, &reopened)) == NULL)
		return;
	if (tell)
		n->pending = false;
	if ((tell && n->list_dirty) || how == IMAP_NOTIFY_LOOK_LIST)
		imap_notify_list_check(s, st, tell);
	for (size_t i = 0; i < n->nboxes && !n->overflow; i++) {
		b = n->boxes[i];
		if ((tell && (b->dirty || b->stale)) ||
		    how == IMAP_NOTIFY_LOOK_BOXES ||
		    (how == IMAP_NOTIFY_LOOK_SEL &&
		    imap_notify_is_selected(s, b->name)))
			imap_notify_box_check(s, st, b, tell, b->dirty);
	}
	if (reopened)
		store_close(&s->st);
	if (n->overflow)
		imap_notify_state_free(&s->notify);
}

void
imap_notify_flush(struct imap_session *s)
{
	if (s->notify == NULL || !s->notify->pending ||
	    !imap_notify_can_send(s))
		return;
	imap_notify_look(s, IMAP_NOTIFY_LOOK_MARKED);
}

/* A watch fired: tell now if a response may go out (RFC 5465 lets
 * notifications come at any time; IDLE is one such time), else at the
 * end of the command running. */
static void
imap_notify_kick(struct imap_session *s)
{
	imap_notify_flush(s);
}

/* The commands whose own changes are not told (RFC 5465 section 5
 * SHOULD), and what they may have changed. */
static const struct {
	const char *name;
	int how;
} imap_notify_changers[] = {
	{ "CREATE", IMAP_NOTIFY_LOOK_LIST },
	{ "DELETE", IMAP_NOTIFY_LOOK_LIST },
	{ "RENAME", IMAP_NOTIFY_LOOK_LIST },
	{ "SUBSCRIBE", IMAP_NOTIFY_LOOK_LIST },
	{ "UNSUBSCRIBE", IMAP_NOTIFY_LOOK_LIST },
	{ "APPEND", IMAP_NOTIFY_LOOK_BOXES },
	{ "COPY", IMAP_NOTIFY_LOOK_BOXES },
	{ "MOVE", IMAP_NOTIFY_LOOK_BOXES },
	{ "STORE", IMAP_NOTIFY_LOOK_SEL },
	{ "EXPUNGE", IMAP_NOTIFY_LOOK_SEL },
	{ "CLOSE", IMAP_NOTIFY_LOOK_BOXES },
};

void
imap_notify_command_done(struct imap_session *s, const char *name)
{
	/* Others' changes marked meanwhile are told first. */
	imap_notify_flush(s);
	if (s->notify == NULL)
		return;
	for (size_t i = 0; i < sizeof(imap_notify_changers) /
	    sizeof(imap_notify_changers[0]); i++)
		if (strcmp(name, imap_notify_changers[i].name) == 0) {
			imap_notify_look(s, imap_notify_changers[i].how);
			return;
		}
}

/*
 * The command.
 */

/* The groups' names as the store spells them. -1 after a NO. */
static int
imap_notify_decode(struct imap_session *s, struct imap_notify_spec *spec)
{
	struct buf name;

	buf_init(&name, 4096);
	for (unsigned i = 0; i < spec->ngroups; i++)
		for (unsigned k = 0; k < spec->groups[i].nnames; k++) {
			buf_truncate(&name, 0);
			if (imap_mailbox_from_wire(s, spec->groups[i].names[k],
			    &name) < 0) {
				buf_free(&name);
				return -1;
			}
			free(spec->groups[i].names[k]);
			spec->groups[i].names[k] = xstrdup(buf_cstr(&name));
		}
	buf_free(&name);
	return 0;
}

static struct imap_notify *
imap_notify_state_new(struct imap_notify_spec *spec)
{
	struct imap_notify *n = xcalloc(1, sizeof(*n));

	n->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	n->sel_events = -1;
	for (unsigned i = 0; i < n->spec.ngroups; i++) {
		const struct imap_notify_group *g = &n->spec.groups[i];

		if (g->filter == IMAP_NOTIFY_SELECTED ||
		    g->filter == IMAP_NOTIFY_SELECTED_DELAYED) {
			n->sel_events = (int)g->events;
			n->sel_fetch = g->fetch;
			n->sel_delayed =
			    g->filter == IMAP_NOTIFY_SELECTED_DELAYED;
		} else
			n->list_events |= g->events &
			    (IMAP_NOTIFY_EV_NAME | IMAP_NOTIFY_EV_SUBS);
	}
	return n;
}

/* Build the new state in s->notify (the old one is kept aside until it
 * stands): -1 after NO [NOTIFICATIONOVERFLOW] (too many mailboxes) or
 * NO (no store). */
static int
imap_notify_set(struct imap_session *s, struct imap_notify_spec *spec)
{
	struct imap_notify *old = s->notify;
	struct store *st;
	const char *error;

	if ((st = imap_store(s)) == NULL)
		return -1;
	s->notify = imap_notify_state_new(spec);
	if (imap_list_snapshot(st, &s->notify->folders, &s->notify->nfolders,
	    &error) < 0) {
		log_error("imap: user=<%s>, NOTIFY: folder list: %s", s->user,
		    error);
		imap_notify_state_free(&s->notify);
		s->notify = old;
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot list the mailboxes");
		return -1;
	}
	s->notify->uidv = imap_notify_uidvalidities(s, st, s->notify->folders,
	    s->notify->nfolders);
	if (imap_notify_boxes_update(s, st, true,
	    s->notify->spec.status) < 0) {
		imap_notify_state_free(&s->notify);
		s->notify = old;
		imap_tagged(s, "NO", "[NOTIFICATIONOVERFLOW] More than %u "
		    "mailboxes to watch", IMAP_NOTIFY_WATCH_MAX);
		return -1;
	}
	imap_notify_watch_list(s, st);
	imap_notify_state_free(&old);
	return 0;
}

/* SET STATUS: a STATUS of each mailbox with message events (RFC 5465
 * 3.1), before the tagged OK. */
static void
imap_notify_status_all(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	for (size_t i = 0; i < n->nboxes && !n->overflow; i++)
		if (n->boxes[i]->have &&
		    !imap_notify_is_selected(s, n->boxes[i]->name))
			imap_notify_status(s, n->boxes[i]->name,
			    &n->boxes[i]->snap);
}

void
imap_cmd_notify(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_notify_spec spec;
	const char *error = NULL;
	int ret;

	if (!imap_notify_available()) {
		imap_tagged(s, "NO", "[CANNOT] NOTIFY is not available");
		return;
	}
	ret = imap_notify_parse(cmd->args, cmd->argc, &spec, &error);
	if (ret == IMAP_NOTIFY_PARSE_BADEVENT)
		imap_tagged(s, "NO", "[BADEVENT (" IMAP_NOTIFY_EVENTS_TEXT
		    ")] %s", error);
	else if (ret == IMAP_NOTIFY_PARSE_TOOBIG)
		imap_bad(s, "[TOOBIG] NOTIFY: too many groups, names or "
		    "items");
	else if (ret < 0)
		imap_bad(s, error);
	if (ret < 0 || (!spec.none && imap_notify_decode(s, &spec) < 0)) {
		imap_notify_spec_free(&spec);
		return;
	}
	if (spec.none) {
		imap_notify_state_free(&s->notify);
		imap_notify_spec_free(&spec);
		imap_tagged(s, "OK", "NOTIFY completed");
		return;
	}
	if (imap_notify_set(s, &spec) < 0) {
		imap_notify_spec_free(&spec);
		return;
	}
	if (s->notify->spec.status)
		imap_notify_status_all(s);
	/* A successful SET is an implicit NOOP (RFC 5465 3.1). */
	if (s->state == IMAP_STATE_SELECTED && imap_view_sync(s, true) < 0)
		return;
	if (s->notify != NULL && s->notify->overflow)
		imap_notify_state_free(&s->notify);
	imap_tagged(s, "OK", "NOTIFY completed");
}
