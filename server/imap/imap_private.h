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
	bool tls_reset;			/* STARTTLS: drop the rest of input */
	/* RFC 5182: the result saved by SEARCH RETURN (SAVE), as UIDs so
	 * expunges do not shift it; "$" in later commands. Empty (all
	 * zero) until saved; imap_search.c owns it. */
	struct imap_seqset searchres;
	unsigned bad;
	struct imap_stats stats;
	struct buf out;			/* response being built */
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
void imap_bad(struct imap_session *s, const char *text);
/* imap_store: the store, opened again if released; NULL after a "NO"
 * (the command is answered). */
struct store *imap_store(struct imap_session *s);

/* Mailbox names (imap_mailbox.c): the wire form (modified UTF-7) to the
 * store's (UTF-8, "/" separated) and back. -1 after answering BAD/NO. */
int imap_mailbox_from_wire(struct imap_session *s, const char *wire,
    struct buf *out);
int imap_mailbox_to_wire(const char *name, struct buf *out);

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
 * SEARCH by sequence number, RFC 3501 section 7.4.1). */
int imap_view_sync(struct imap_session *s, bool expunges);

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

/* FETCH of body sections (imap_fetch_body.c). */
struct imap_seqset;
int imap_fetch_job_new(struct imap_session *s, struct imap_seqset *set,
    bool uid, unsigned want, const char *const *items, unsigned count);
bool imap_fetch_job_run(struct imap_session *s);
void imap_fetch_job_free(struct imap_fetch_job **j);

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

/*
 * Content-transfer decoding for FETCH BINARY (RFC 3516; imap_fetch_body.c),
 * as a state machine fed the stored bytes of a part in chunks cut
 * anywhere: the output does not depend on where the cuts fall.
 *  - IMAP_CTE_IDENTITY ("binary"): the bytes as they are.
 *  - IMAP_CTE_TEXT ("7bit", "8bit", and a whole message): lines end in
 *    CRLF (a bare LF gets its CR, as BODY[] gives them); NUL stays NUL.
 *  - IMAP_CTE_QP ("quoted-printable", RFC 2045 6.7) on CRLF lines: "=XX"
 *    in upper or lower case is the byte; "=" with optional white space
 *    before the line end is a soft line break, removed (also at the very
 *    end, where the part's last line end belongs to the boundary); white
 *    space at the end of a line is removed (transports add it: held back
 *    up to IMAP_CTE_WS_MAX bytes, so of a longer run only its last part
 *    goes); anything else after "=" is no escape and is kept as it is
 *    ("=G1", "=4x").
 *  - IMAP_CTE_BASE64 (RFC 2045 6.8): bytes outside the alphabet (line
 *    ends, white space, garbage) are skipped; "=" ends a quantum (its
 *    incomplete bits are dropped) and decoding goes on after it, so a
 *    missing, short or extra padding and concatenated encodings decode
 *    to what they hold.
 */
enum imap_cte {
	IMAP_CTE_IDENTITY,
	IMAP_CTE_TEXT,
	IMAP_CTE_QP,
	IMAP_CTE_BASE64
};

#define IMAP_CTE_WS_MAX	64	/* white space held back in a QP line */
/* Output bytes beyond 2 * input that one call may write (held bytes). */
#define IMAP_CTE_SLACK	(IMAP_CTE_WS_MAX + 16)

struct imap_cte_dec {
	enum imap_cte cte;
	bool prev_cr;		/* TEXT, QP: the last input byte was CR */
	unsigned qp;		/* QP state (imap_fetch_body.c) */
	unsigned char qp_hi;	/* the first digit of "=XX" */
	unsigned char ws[IMAP_CTE_WS_MAX];	/* QP: white space held */
	unsigned nws;
	uint32_t b64_acc;	/* BASE64: bits not written yet */
	unsigned b64_bits;
};

/* imap_cte_from_name: the decoder for a Content-Transfer-Encoding as the
 * MIME tree keeps it (lowercased): 0, or -1 for one this server cannot
 * decode (FETCH BINARY answers NO [UNKNOWN-CTE]). */
int imap_cte_from_name(const char *name, enum imap_cte *cte_r);
void imap_cte_init(struct imap_cte_dec *d, enum imap_cte cte);
/* imap_cte_decode: decode in[0..len) into out, which has room for
 * 2 * len + IMAP_CTE_SLACK bytes; returns the bytes written. */
size_t imap_cte_decode(struct imap_cte_dec *d, const unsigned char *in,
    size_t len, unsigned char *out);
/* imap_cte_finish: the input ended: write what is still held (at most
 * IMAP_CTE_SLACK bytes) into out; returns the bytes written. d is then
 * as after imap_cte_init. */
size_t imap_cte_finish(struct imap_cte_dec *d, unsigned char *out);

#endif
