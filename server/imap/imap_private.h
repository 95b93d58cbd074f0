/*
 * imap_private.h: what the files of the IMAP engine share: the session,
 * the selected folder's view, reply helpers, and the command handlers.
 * Not for use outside server/imap.
 */
#ifndef LOFT_IMAP_PRIVATE_H
#define LOFT_IMAP_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "user.h"
#include "server/imap/imap_parser.h"
#include "server/imap/imap_session.h"
#include "server/imap/imap_seqset.h"

struct store;
struct mindex_msg;
struct imap_append;

/* Flags this version keeps (the index's MINDEX_F_* system flags). */
#define IMAP_SYSTEM_FLAGS	"\\Answered \\Flagged \\Deleted \\Seen \\Draft"

/* One message of the selected folder; its sequence number is its place
 * in the array plus one. */
struct imap_msgref {
	uint32_t uid;
	uint32_t flags;		/* MINDEX_F_* as last reported */
	uint64_t modseq;
	uint32_t kw;		/* its keywords as last reported: entry
				   kw - 1 of the view's kwsets; 0 none */
};

/* Byte strings interned for a view (imap_mailbox.c): each once, numbered
 * from 0 in the order first seen, found again by hash. Empty (all zero)
 * until the first one is added; grows with the folder's content. */
struct imap_kwent {
	size_t off, len;	/* in data */
	uint32_t hash;
};

struct imap_kwtab {
	struct buf data;	/* the strings, back to back */
	struct imap_kwent *ent;	/* owned */
	unsigned count, cap;
	uint32_t *slot;		/* owned: open addressing, entry + 1 */
	unsigned nslots;
};

/* Search contexts one session keeps at once (RFC 5267 RETURN (UPDATE));
 * one more is refused with NOUPDATE. */
#define IMAP_CONTEXT_MAX	8
struct imap_context;

/* The selected folder as this session sees it (RFC 3501 section 5.2):
 * sequence numbers change only when this session reports them. */
struct imap_view {
	char *name;		/* owned, UTF-8 ("INBOX", "A/B") */
	bool readonly;
	uint32_t folder_id;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	struct imap_msgref *msgs;	/* owned */
	unsigned count, cap;
	bool dirty;		/* a change notification came */
	/* Keywords: the distinct keyword lists of its messages (as the
	 * index keeps them, so two messages with the same list share an
	 * entry and a change shows as a new number), and every keyword
	 * name seen (ASCII case-insensitive), the first kw_announced of
	 * them told to the client in FLAGS. */
	struct imap_kwtab kwsets;
	struct imap_kwtab kwnames;
	unsigned kw_announced;
	/* RFC 5267 contexts (imap_context.c): they live as long as the
	 * folder stays selected. Owned. */
	struct imap_context *ctx[IMAP_CONTEXT_MAX];
	unsigned nctx;
};

struct imap_session {
	enum imap_state state;
	struct imap_settings set;	/* mechanisms: owned copy */
	const struct imap_callbacks *cb;
	void *ctx;
	struct imap_parser *parser;	/* owned */
	char tag[IMAP_PARSER_TAG_MAX + 1];	/* command in progress */
	char user[USER_NAME_MAX + 1];

	struct user *u;			/* owned, after login */
	struct store *st;		/* owned; NULL while released */
	struct imap_view view;		/* in SELECTED */
	struct imap_fetch_job *fetch;	/* owned: a FETCH streaming bodies */
	struct imap_append *append;	/* owned: APPEND's message being
					   received (imap_cmd_write.c) */

	/* A line read outside the parser: a SASL response or IDLE's DONE. */
	struct buf line;
	bool line_skipping;
	char *sasl_mech;		/* owned, in an AUTHENTICATE */
	bool waiting_auth;		/* the check answers later */
	bool handed_over;		/* authenticated: input is not ours */
	bool idling;
	bool closed;
	/* RFC 7162, for the rest of the session once on: condstore puts
	 * MODSEQ in unsolicited FETCH and STORE's FETCH; qresync (implies
	 * condstore): VANISHED for EXPUNGE, SELECT's QRESYNC parameter. */
	bool condstore;
	bool qresync;
	/* ENABLE, for the rest of the session (imap_session.c). utf8:
	 * mailbox names are UTF-8 on the wire (never modified UTF-7),
	 * quoted strings may carry UTF-8 both ways, APPEND takes the UTF8
	 * (literal8) form; set by UTF8=ACCEPT (RFC 6855) and by IMAP4rev2.
	 * utf8_accept: UTF8=ACCEPT itself, after which SEARCH CHARSET is
	 * BAD (RFC 6855 section 3). rev2: IMAP4rev2 (RFC 9051): no RECENT,
	 * SEARCH answered as ESEARCH, LIST in SELECT, [CLOSED] always. */
	bool utf8;
	bool utf8_accept;
	bool rev2;
	bool tls_reset;			/* STARTTLS: drop the rest of input */
	/* RFC 5182: the result saved by SEARCH RETURN (SAVE), as UIDs so
	 * expunges do not shift it; "$" in later commands. Empty (all
	 * zero) until saved; imap_search.c owns it. */
	struct imap_seqset searchres;
	unsigned bad;
	struct imap_stats stats;
	struct buf out;			/* response being built */
	/* RFC 5465: the NOTIFY SET in force (imap_notify.c); NULL when
	 * none (or after NOTIFY NONE). Owned. */
	struct imap_notify *notify;
	char watch_dirs[2][4096];	/* imap_session_watches' memory */
	char watch_name[256];
};

/* Replies (imap_session.c). The text is ours, never client bytes
 * unquoted. */
void imap_untagged(struct imap_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imap_tagged(struct imap_session *s, const char *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* imap_send: write s->out (a built response) and empty it. */
void imap_send(struct imap_session *s);
/* imap_untagged_buf: "* " + line + CRLF, of any length (imap_untagged
 * cuts at 1 KiB): for lines that hold a mailbox name, which may be a
 * literal. */
void imap_untagged_buf(struct imap_session *s, const struct buf *line);
/* imap_write_flags: the IMAP_WRITE_* flags for this session's responses
 * (UTF8 once utf8 is on, REV2 once IMAP4rev2 is). */
unsigned imap_write_flags(const struct imap_session *s);
void imap_bad(struct imap_session *s, const char *text);
/* imap_store: the store, opened again if released; NULL after a "NO"
 * (the command is answered). */
struct store *imap_store(struct imap_session *s);

/*
 * Mailbox names (imap_mailbox.c). The store keeps names as UTF-8 ("/"
 * separated; Maildir++ folders are modified UTF-7 on disk, which the
 * store converts), so the wire form is converted here only: modified
 * UTF-7 (RFC 3501 5.1.3) for a session without utf8, UTF-8 as it is
 * with it (RFC 6855 section 3, RFC 9051 section 5.1), where a name must
 * be valid UTF-8 (imap_mailbox_utf8_valid).
 */
/* imap_mailbox_from_wire: the client's name (after the parser's
 * accessors) into out as the store spells it; "INBOX" in any case is
 * INBOX. -1 after answering NO [CANNOT]: empty, not canonical modified
 * UTF-7 or not a valid UTF-8 name (as the session has it), or decoded
 * longer than 1024 bytes. */
int imap_mailbox_from_wire(struct imap_session *s, const char *wire,
    struct buf *out);
/* imap_mailbox_utf8_valid: whether name[0..len) may be a mailbox name
 * sent in UTF-8: strict UTF-8 (RFC 3629: no overlong form, no
 * surrogate, nothing past U+10FFFF, nothing cut short) and no control
 * character (U+0000-U+001F, U+007F-U+009F), which RFC 5198's
 * Net-Unicode that RFC 6855 asks for excludes. Normalization (NFC) is
 * not checked. */
bool imap_mailbox_utf8_valid(const char *name, size_t len);
/* imap_mailbox_to_wire: the store's name as the client is to see it:
 * modified UTF-7, or with utf8 the name itself. -1 if it cannot be
 * (not valid UTF-8: the store never gives such a name). */
int imap_mailbox_to_wire(const char *name, bool utf8, struct buf *out);
/* imap_mailbox_put: append name (as the store spells it) as a mailbox of
 * a response for session s to b, in the session's wire form: a quoted
 * string when imap_write_string would quote it (no CR or LF, at most
 * IMAP_WRITE_QUOTED_MAX bytes), else a literal; "" if it cannot be
 * converted. */
void imap_mailbox_put(const struct imap_session *s, const char *name,
    struct buf *b);

/* imap_fetch_flags_text: flags as an IMAP flag list "(\Seen ...)"
 * (imap_mailbox.c). */
void imap_fetch_flags_text(uint32_t flags, struct buf *b);
/* imap_flags_write: flags and keywords (as the index keeps them; a name
 * that is no valid keyword is left out) as an IMAP flag list
 * "(\Seen $Junk)". */
void imap_flags_write(uint32_t flags, const char *kw, size_t kw_len,
    struct buf *b);

/* Keywords of the view (imap_mailbox.c). The view's tables grow as
 * they are used; imap_view_free frees them. */
/* imap_view_kw_set: the imap_msgref.kw number of keyword list kw (0 for
 * none); names new to the view are remembered for imap_view_kw_announce. */
uint32_t imap_view_kw_set(struct imap_view *v, const char *kw, size_t kw_len);
/* imap_view_kw_names: remember the names of kw; true if one was new. */
bool imap_view_kw_names(struct imap_view *v, const char *kw, size_t kw_len);
/* imap_view_kw_announce: when the view has seen keywords the client has
 * not been told of, "* FLAGS (...)" and, read-write, "* OK
 * [PERMANENTFLAGS (... \*)]" into s->out (RFC 3501 7.2.6: before any
 * FETCH that shows them); true if it wrote them. The caller sends. */
bool imap_view_kw_announce(struct imap_session *s);

/* The view (imap_mailbox.c). */
void imap_view_free(struct imap_view *v);
/* imap_view_sync: sync the folder and report changes as untagged
 * responses; expunges only when allowed (not during FETCH, STORE,
 * SEARCH by sequence number, RFC 3501 section 7.4.1). The sync is lazy
 * (store_sync_lazy): a Maildir file another program left is adopted from
 * its name alone (MINDEX_C_UNPARSED: no header cache, no MIME tree, a
 * size from ",S=" and a date from the name), so that the first SELECT of
 * a large folder reads no file. */
int imap_view_sync(struct imap_session *s, bool expunges);

/*
 * Completion. A command that answers from what only reading a file
 * gives asks for it first, by what it needs:
 *  - IMAP_NEED_SIZES: exact RFC822.SIZE (FETCH RFC822.SIZE, SEARCH
 *    LARGER and SMALLER, STATUS SIZE): the files' line ends are counted
 *    (store_complete_sizes);
 *  - IMAP_NEED_PARSE: everything else of the file (ENVELOPE, BODY,
 *    BODYSTRUCTURE, INTERNALDATE, which is the file's time, not the name's,
 *    body sections and header fields, PREVIEW, SEARCH on headers, bodies
 *    and dates, SORT, THREAD): the files are parsed (store_complete).
 * FLAGS, UID, MODSEQ, SAVEDATE and the counts of SELECT and STATUS need
 * none, so Thunderbird's "UID FETCH n:* (FLAGS)" costs what it did; a
 * command that needs more costs one folder lookup when nothing is left
 * unparsed. Where a file could not be read, SEARCH still matches header
 * keys against the message (read again) and SORT sorts by its header,
 * but sizes and dates of such a record are those from its name.
 */
#define IMAP_NEED_SIZES	0x01u
#define IMAP_NEED_PARSE	0x02u
/* imap_view_complete: complete the selected folder's records for need
 * (0: nothing to do) if its record counts unparsed ones (one lookup when
 * none). Completion keeps each record's MODSEQ (nothing a client sees
 * changed), so no FETCH is reported for it. A record whose file could
 * not be read meanwhile (moved: a lazy sync and a second try follow;
 * unreadable, gone) stays as it was. Returns 0 when every record has
 * what need asks, 1 when some may not (the caller checks each with
 * imap_msg_ready and leaves those out), -1 after answering NO. */
int imap_view_complete(struct imap_session *s, unsigned need);
/* imap_msg_ready: whether m has what need (IMAP_NEED_*) asks. */
bool imap_msg_ready(const struct mindex_msg *m, unsigned need);
/* imap_search_needs: what a parsed SEARCH program needs (IMAP_NEED_*):
 * LARGER, SMALLER sizes; header, body and date keys (BEFORE, ON, SINCE,
 * OLDER, YOUNGER: the internal date) the parse; flags, keywords,
 * sequence numbers, UIDs and SAVED* nothing (imap_search.c). */
struct imap_search;
unsigned imap_search_needs(const struct imap_search *search);
/* imap_charset_class: a charset name (len bytes, any case; an RFC 2231
 * "*lang" is cut) as the decoders here know it: 0 UTF-8 or US-ASCII, 1
 * ISO-8859-1, -1 any other (imap_search.c). */
int imap_charset_class(const char *name, size_t len);

/* imap_condstore_on: CONDSTORE enabled by a command that uses it (FETCH
 * MODSEQ, CHANGEDSINCE, STORE UNCHANGEDSINCE, SELECT (CONDSTORE)); from
 * now on flag changes carry MODSEQ (imap_mailbox.c). */
void imap_condstore_on(struct imap_session *s);
/* imap_modseq_out: a mod-sequence as sent: never 0, which RFC 7162's
 * mod-sequence-value does not allow (an empty new folder has 0). */
uint64_t imap_modseq_out(uint64_t modseq);
/* imap_vanished_earlier: "* VANISHED (EARLIER) uids" for the expunge
 * records of the selected folder with a MODSEQ above since whose UID is
 * in known (NULL: any), into s->out. 0, or -1 (logged). */
struct imap_seqset;
int imap_vanished_earlier(struct imap_session *s, uint64_t since,
    const struct imap_seqset *known);

/*
 * Search contexts (RFC 5267, imap_context.c): a SEARCH or SORT with
 * RETURN (UPDATE) keeps its program and result (as UIDs, in mailbox
 * order for SEARCH, in sort order for SORT), and every change of the
 * view the session reports is followed by "* ESEARCH (TAG ...) [UID]
 * ADDTO/REMOVEFROM" lines for the messages entering or leaving the
 * result: REMOVEFROM for expunged messages before their EXPUNGE or
 * VANISHED (imap_context_expunging), the others after the EXISTS and
 * FETCH of the change (imap_context_refresh). A message is looked at
 * again when its MODSEQ passed what the context saw or its UID is new;
 * sequence-number keys are therefore evaluated with the numbers of that
 * moment. SEARCH contexts give position 0 (RFC 5267 4.3.3: anywhere, in
 * mailbox order); SORT contexts the position in their order. A sort key
 * of a member does not change (dates, sizes, header fields), so the
 * order of the members stays.
 */
struct imap_sort_prog;
/* imap_context_add: a context named by s->tag for the result uids[0..
 * count) (ascending for SEARCH, in prog's order for SORT; prog NULL for
 * SEARCH), whose program *search it takes (*search set NULL). -1 when
 * IMAP_CONTEXT_MAX are kept already (the caller answers NOUPDATE). */
int imap_context_add(struct imap_session *s, bool uid,
    const struct imap_sort_prog *prog, struct imap_search **search,
    const uint32_t *uids, size_t count);
/* imap_context_find: the context of tag, or NULL. */
struct imap_context *imap_context_find(const struct imap_session *s,
    const char *tag);
/* imap_context_expunging: the view's messages idx[0..n) (ascending view
 * indexes) are about to be reported expunged: REMOVEFROM for those in a
 * context, sent now. */
void imap_context_expunging(struct imap_session *s, const unsigned *idx,
    size_t n);
/* imap_context_refresh: after the view changed (sync, STORE): evaluate
 * the messages changed since each context looked and send ADDTO and
 * REMOVEFROM. Answers nothing else; an index error is logged and the
 * context is tried again at the next change. */
void imap_context_refresh(struct imap_session *s);
/* imap_context_free_all: the view's contexts (imap_view_free). */
void imap_context_free_all(struct imap_view *v);
/* CANCELUPDATE "tag" ... (RFC 5267 4.3.5). */
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_cmd *cmd);

/*
 * NOTIFY (RFC 5465, imap_notify.c; the parser is in imap_notify.h).
 */
struct imap_notify;
/* NOTIFY SET ... / NOTIFY NONE. */
void imap_cmd_notify(struct imap_session *s, const struct imap_cmd *cmd);
/* imap_notify_free: drop the session's NOTIFY state and its watches. */
void imap_notify_free(struct imap_session *s);
/* imap_notify_selected: -1 when no NOTIFY SET is in force (RFC 3501's
 * behaviour for the selected mailbox), else the IMAP_NOTIFY_EV_* its
 * SELECTED or SELECTED-DELAYED group asks (0: none), and *fetch_r the
 * fetch-att of its MessageNew. */
int imap_notify_selected(const struct imap_session *s, unsigned *fetch_r);
/* imap_notify_selected_delayed: the selected group is SELECTED-DELAYED
 * (expunges wait for a command, as RFC 3501 has it). */
bool imap_notify_selected_delayed(const struct imap_session *s);
/* imap_notify_command_done: command name has been answered: take the
 * snapshots again where it changed things itself (not reported), then
 * send what waits. */
void imap_notify_command_done(struct imap_session *s, const char *name);
/* imap_notify_flush: send the pending notifications if a response may
 * be sent now (no command running, nor a response streaming). */
void imap_notify_flush(struct imap_session *s);
/* imap_notify_drained: the client has read everything sent. */
void imap_notify_drained(struct imap_session *s);
/* imap_notify_can_send: no command runs and nothing streams: an
 * unsolicited response may go out now. */
bool imap_notify_can_send(const struct imap_session *s);

/* A folder as LIST sees it, for NOTIFY's MailboxName and
 * SubscriptionChange (imap_list.c). */
struct imap_folder_ent {
	char *name;		/* owned, as the store spells it */
	unsigned attrs;		/* STORE_FOLDER_* */
	bool exists;		/* false: only a subscription */
	bool sub;		/* \Subscribed */
	unsigned uses;		/* special uses (imap_list.c's bits) */
};
/* imap_list_snapshot: every folder (INBOX always) and subscribed name,
 * sorted by name (strcmp), into *ents_r (free with
 * imap_list_snapshot_free). 0, or -1 with *error_r. */
int imap_list_snapshot(struct store *st, struct imap_folder_ent **ents_r,
    size_t *count_r, const char **error_r);
void imap_list_snapshot_free(struct imap_folder_ent **ents, size_t count);
/* imap_list_notify_line: "LIST (attributes) "/" name" for e as LIST
 * shows it (\NonExistent for a name that is gone), with
 * ("OLDNAME" (oldname)) when oldname is not NULL (RFC 5465 5.4), into
 * line (without "* " and CRLF). */
void imap_list_notify_line(const struct imap_session *s,
    const struct imap_folder_ent *e, const char *oldname, struct buf *line);

/* Command handlers. */
void imap_cmd_select(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_close(struct imap_session *s, const struct imap_cmd *cmd);
/* LIST (RFC 3501, RFC 5258 selection SUBSCRIBED REMOTE RECURSIVEMATCH
 * SPECIAL-USE; return CHILDREN SUBSCRIBED SPECIAL-USE STATUS (RFC 5819);
 * one pattern or a list of up to 32), LSUB, XLIST (imap_list.c). */
void imap_cmd_list_ext(struct imap_session *s, const struct imap_cmd *cmd);
/* CREATE name [(USE (\Sent ...))] (RFC 6154): without the parameter, as
 * imap_cmd_create; an attribute not kept: NO [USEATTR], nothing made. */
void imap_cmd_create_ext(struct imap_session *s, const struct imap_cmd *cmd);
/* imap_special_use_rename: after a RENAME from -> to (children too), or
 * a DELETE (to NULL), keep the special-use file in step. 0 or -1. */
int imap_special_use_rename(struct imap_session *s, const char *from,
    const char *to);
/* imap_subscribe: subscribe (on) or unsubscribe the folder name (as the
 * store spells it; it need not exist) in the user's subscriptions file
 * (imap_list.c). 0; -1 on failure (logged); -2 when the list is full. */
int imap_subscribe(struct imap_session *s, const char *name, bool on);
/* imap_subscriptions_rename: after a RENAME from -> to, the
 * subscriptions of from and of the folders below it follow. 0 or -1
 * (logged). */
int imap_subscriptions_rename(struct imap_session *s, const char *from,
    const char *to);
/* imap_default_folders: Sent, Drafts, Trash, Junk, Archive for a user
 * who has nothing but INBOX. 0, or -1 (logged; login goes on). */
int imap_default_folders(struct imap_session *s);
void imap_cmd_status(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_namespace(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_fetch(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_search(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_getquotaroot(struct imap_session *s,
    const struct imap_cmd *cmd);
void imap_cmd_getquota(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_setquota(struct imap_session *s, const struct imap_cmd *cmd);

/* The FETCH items the index answers, as bits (imap_fetch.c, and
 * imap_fetch_body.c for the FLAGS and MODSEQ a body fetch adds). */
#define IMAP_FETCH_UID		0x01u
#define IMAP_FETCH_FLAGS	0x02u
#define IMAP_FETCH_SIZE		0x04u
#define IMAP_FETCH_DATE		0x08u
#define IMAP_FETCH_ENVELOPE	0x10u
#define IMAP_FETCH_BODY		0x20u
#define IMAP_FETCH_BODYSTRUCT	0x40u
#define IMAP_FETCH_MODSEQ	0x80u
#define IMAP_FETCH_SAVEDATE	0x100u	/* RFC 8514 */
#define IMAP_FETCH_PREVIEW	0x200u	/* RFC 8970: made from the message */
#define IMAP_FETCH_PREVIEW_LAZY	0x400u	/* PREVIEW (LAZY): NIL, as no
					   preview is kept in the index */

/* FETCH of body sections and PREVIEW (imap_fetch_body.c): a job over
 * set (taken) for the index items in want and the section items in
 * items[0..count). check: IMAP_NEED_* a message must have (imap_msg_ready)
 * to be answered, 0 none (imap_view_complete said all have it); one left
 * out ends the FETCH with NO. */
struct imap_seqset;
int imap_fetch_job_new(struct imap_session *s, struct imap_seqset *set,
    bool uid, unsigned want, const char *const *items, unsigned count,
    unsigned check);
bool imap_fetch_job_run(struct imap_session *s);
void imap_fetch_job_free(struct imap_fetch_job **j);

/*
 * imap_section_copy (imap_fetch_body.c): append to fd the bytes FETCH
 * BODY[section] (the text between the brackets: "", "1.2", "HEADER",
 * "1.MIME", "HEADER.FIELDS (From)") gives of message uid of folder (as
 * the store spells it; folder_id its index id), in CRLF as FETCH sends
 * them; with partial, origin and length (0: to the end) as RFC 5092's
 * ;PARTIAL= cut them. Writes nothing when the result would pass max
 * bytes. 0 with *len_r the bytes written; IMAP_SECTION_COPY_BAD: no
 * such message or section, or not a section (the message's structure is
 * unknown: its file was never read); _TOOBIG (*len_r the size); _IO.
 * For CATENATE (imap_cmd_write.c).
 */
#define IMAP_SECTION_COPY_BAD		(-1)
#define IMAP_SECTION_COPY_TOOBIG	(-2)
#define IMAP_SECTION_COPY_IO		(-3)
int imap_section_copy(struct store *st, const char *folder,
    uint32_t folder_id, uint32_t uid, const char *section, bool partial,
    uint64_t origin, uint64_t length, uint64_t max, int fd, uint64_t *len_r);

/*
 * PREVIEW (RFC 8970; imap_fetch.c): the text a client shows under a
 * message's subject, made from the decoded bytes of its first text part
 * (the bytes as decoded by lib/cte, before any charset): ISO-8859-1
 * (latin1) converted to UTF-8, anything else read as UTF-8 with the bytes
 * that are not valid UTF-8 dropped; HTML (html) without its tags,
 * comments and the content of head, title, script and style, with the
 * entities &amp; &lt; &gt; &quot; &apos; &nbsp; and &#N; &#xN; decoded;
 * control characters dropped; every run of white space one space, none
 * at either end; at most IMAP_PREVIEW_CHARS characters. Fed in chunks
 * cut anywhere, with the same result.
 */
#define IMAP_PREVIEW_CHARS	256
/* Decoded bytes of the text part looked at, at most (a preview of HTML
 * may have to get past a long head). */
#define IMAP_PREVIEW_READ_MAX	(64 * 1024)

struct imap_preview {
	bool html, latin1;
	bool full;		/* IMAP_PREVIEW_CHARS reached */
	bool space;		/* white space since the last character */
	uint32_t cp;		/* UTF-8 being decoded */
	unsigned more, seq_len;
	unsigned hstate;	/* HTML state (imap_fetch.c) */
	char tag[16];		/* HTML: the tag name being read, lower case */
	unsigned tag_len;
	bool end_tag;
	char skip[8];		/* HTML: the element whose content goes */
	char raw[8];		/* HTML: script or style, whose content
				   holds no tags, only its own end tag */
	char ent[12];		/* HTML: an entity's name being read */
	unsigned ent_len;
	unsigned dashes;	/* HTML: "-" seen in a row in a comment */
	unsigned char quote;	/* HTML: the quote of an attribute value */
	bool selfclose;		/* HTML: "/" last in the tag ("<br/>") */
	unsigned chars;
	size_t len;
	unsigned char out[IMAP_PREVIEW_CHARS * 4];	/* UTF-8 */
};

void imap_preview_init(struct imap_preview *p, bool html, bool latin1);
/* imap_preview_feed: more decoded bytes; false once the preview is full
 * (what comes after is not looked at). */
bool imap_preview_feed(struct imap_preview *p, const unsigned char *d,
    size_t len);
/* imap_preview_finish: the text ended: out[0..len) is the preview. */
void imap_preview_finish(struct imap_preview *p);

/*
 * The commands that change mail (imap_cmd_write.c): STORE, EXPUNGE,
 * COPY, MOVE (and their UID forms), APPEND, CREATE, DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE.
 */
void imap_cmd_store(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_expunge(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_copy(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_append(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_create(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_delete(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_rename(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_cmd *cmd);
/* imap_expunge_silent: CLOSE of a read-write folder: expunge what the
 * view knows with \Deleted, without untagged responses. 0, or -1 (logged;
 * CLOSE goes on, RFC 3501 gives it no failure). */
int imap_expunge_silent(struct imap_session *s);

/*
 * APPEND's message literals (one, or several: MULTIAPPEND, RFC 3502; each
 * a literal or a literal8 of RFC 3516) are streamed
 * (IMAP_PARSER_CMD_STREAM) into one unlinked temporary file, never held
 * in memory; the parser's literal callbacks in imap_session.c call these.
 * Each literal is checked before any continuation for it: a message over
 * IMAP_APPEND_LIMIT bytes, the IMAP_MULTIAPPEND_MAX + 1st message of one
 * command, or one that takes the command's messages past
 * IMAP_APPEND_TOTAL_LIMIT bytes is refused (NO, and nothing of the
 * command is stored).
 */
#define IMAP_APPEND_LIMIT	(50 * 1024 * 1024)
#define IMAP_MULTIAPPEND_MAX	1000
#define IMAP_APPEND_TOTAL_LIMIT	(2 * (uint64_t)IMAP_APPEND_LIMIT)
/* imap_append_literal_start: 0 to take size bytes, -1 to refuse (a limit
 * above, no temporary file): the parser fails the command with
 * IMAP_PARSE_ERR_REFUSED, answered by imap_append_refused. */
int imap_append_literal_start(struct imap_session *s, uint64_t size,
    bool literal8);
void imap_append_literal_data(struct imap_session *s,
    const unsigned char *data, size_t len);
/* imap_append_refused: answer a REFUSED APPEND as literal_start decided
 * ("NO [TOOBIG]" ...) and free the state; false if APPEND refused
 * nothing (the caller answers). */
bool imap_append_refused(struct imap_session *s);
/* imap_append_free: drop a half-received message (parse error, end of
 * session). */
void imap_append_free(struct imap_session *s);

#endif
