/*
 * imap_notify.h: the NOTIFY command (RFC 5465): which events of which
 * mailboxes a session is told of without asking, and the untagged
 * responses that tell it: STATUS for a watched mailbox other than the
 * selected one, LIST for mailboxes created, deleted, renamed or
 * (un)subscribed, and, for the selected mailbox, the EXISTS, EXPUNGE and
 * FETCH it gets today (or, with SELECTED NONE, no EXISTS and no FETCH of
 * other sessions' flag changes).
 *
 * Two halves: a pure parser of the command's arguments (unit-tested
 * without a store), and a session's NOTIFY state in imap_notify.c,
 * which learns of changes through the process's lib/notify (inotify)
 * watches on the folders asked about, never by polling.
 */
#ifndef LOFT_IMAP_NOTIFY_H
#define LOFT_IMAP_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

struct imap_arg;
struct notify;

/* Event groups in one NOTIFY SET; one more is BAD [TOOBIG]. */
#define IMAP_NOTIFY_GROUPS_MAX	16
/* Mailbox names in one NOTIFY SET, all groups together. */
#define IMAP_NOTIFY_NAMES_MAX	100
/* fetch-att items after MessageNew. */
#define IMAP_NOTIFY_FETCH_MAX	8
/* Mailboxes one session watches for message events; with more (a
 * PERSONAL of a user with 1001 folders), NOTIFY SET is refused with NO
 * [NOTIFICATIONOVERFLOW] and nothing changes; a later growth past it
 * (folders created meanwhile) leaves the newest ones unwatched (logged
 * once), as counting them would mean polling. */
#define IMAP_NOTIFY_WATCH_MAX	1000
/* Bytes of notifications written and not yet drained to the client:
 * past this the session "cannot keep up" (RFC 5465 5.8): "* OK
 * [NOTIFICATIONOVERFLOW]" and NOTIFY NONE. Below the connection's hard
 * output limit (1 MiB), which would end the session instead. */
#define IMAP_NOTIFY_UNDRAINED_MAX	(256 * 1024)

/* Events (RFC 5465 section 5) this version serves. */
#define IMAP_NOTIFY_EV_NEW	0x01u	/* MessageNew */
#define IMAP_NOTIFY_EV_EXPUNGE	0x02u	/* MessageExpunge */
#define IMAP_NOTIFY_EV_FLAG	0x04u	/* FlagChange */
#define IMAP_NOTIFY_EV_NAME	0x08u	/* MailboxName */
#define IMAP_NOTIFY_EV_SUBS	0x10u	/* SubscriptionChange */
#define IMAP_NOTIFY_EV_MESSAGE	\
    (IMAP_NOTIFY_EV_NEW | IMAP_NOTIFY_EV_EXPUNGE | IMAP_NOTIFY_EV_FLAG)
/* What "NO [BADEVENT (...)]" names. */
#define IMAP_NOTIFY_EVENTS_TEXT	\
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"

/* The fetch-att of MessageNew served (answered from the view). */
#define IMAP_NOTIFY_FETCH_UID	0x01u
#define IMAP_NOTIFY_FETCH_FLAGS	0x02u
#define IMAP_NOTIFY_FETCH_MODSEQ 0x04u

enum imap_notify_filter {
	IMAP_NOTIFY_SELECTED,
	IMAP_NOTIFY_SELECTED_DELAYED,
	IMAP_NOTIFY_INBOXES,
	IMAP_NOTIFY_PERSONAL,
	IMAP_NOTIFY_SUBSCRIBED,
	IMAP_NOTIFY_SUBTREE,
	IMAP_NOTIFY_MAILBOXES
};

struct imap_notify_group {
	enum imap_notify_filter filter;
	char **names;		/* owned: SUBTREE, MAILBOXES: as sent (wire
				   form, decoded by the session) */
	unsigned nnames;
	unsigned events;	/* IMAP_NOTIFY_EV_*; 0 for NONE */
	unsigned fetch;		/* IMAP_NOTIFY_FETCH_* (SELECTED only) */
};

/* A parsed NOTIFY command. */
struct imap_notify_spec {
	bool none;		/* NOTIFY NONE */
	bool status;		/* SET STATUS */
	struct imap_notify_group groups[IMAP_NOTIFY_GROUPS_MAX];
	unsigned ngroups;
};

/* imap_notify_parse returns: */
#define IMAP_NOTIFY_PARSE_OK		0
#define IMAP_NOTIFY_PARSE_BAD		(-1)	/* syntax, or an RFC 5465
						   rule: tagged BAD */
#define IMAP_NOTIFY_PARSE_BADEVENT	(-2)	/* a valid event not served
						   (AnnotationChange, the
						   METADATA ones, an unknown
						   extension): NO [BADEVENT] */
#define IMAP_NOTIFY_PARSE_TOOBIG	(-3)	/* a limit above: BAD
						   [TOOBIG] */
/*
 * imap_notify_parse: the arguments of NOTIFY (args[0..argc), as the
 * parser gave them) into *spec (which the caller frees with
 * imap_notify_spec_free whatever the result). Grammar: RFC 5465 section
 * 8, keywords in any case. Rules checked (BAD): MessageNew and
 * MessageExpunge come together; FlagChange needs both; SELECTED and
 * SELECTED-DELAYED take message events only, and only one of them in a
 * command; fetch-att only after MessageNew of a SELECTED group, and only
 * UID, FLAGS, MODSEQ (anything else: BAD, as not served); an event at
 * most once in a group; no empty lists; SET needs a group. Returns
 * IMAP_NOTIFY_PARSE_* with *error_r (static text) on failure.
 */
int imap_notify_parse(const struct imap_arg *args, unsigned argc,
    struct imap_notify_spec *spec, const char **error_r);
void imap_notify_spec_free(struct imap_notify_spec *spec);

/*
 * The process's side. imap_notify_use: the inotify instance (lib/notify)
 * of the process that runs sessions after login (loftd's mail process),
 * through which NOTIFY sessions watch folders; call once before the
 * sessions start. Without it (NULL, or never called: the login process,
 * unit tests) NOTIFY is not advertised and the command is answered NO.
 */
void imap_notify_use(struct notify *n);
/* imap_notify_available: whether imap_notify_use gave an instance. */
bool imap_notify_available(void);

#endif
