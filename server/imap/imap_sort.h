/*
 * imap_sort.h: SORT (RFC 5256, with ESORT of RFC 5267 and SORT=DISPLAY of
 * RFC 5957) and THREAD=ORDEREDSUBJECT / THREAD=REFERENCES (RFC 5256).
 *
 * Both commands run the search program first (imap_search_run), then load
 * what they compare for each match from the index's cached header fields
 * (a message whose cache lacks a field it needs, MINDEX_C_HEADERS_PARTIAL,
 * has its header read from storage), and work on that array alone: the
 * ordering and threading functions below are pure, so the unit tests feed
 * them messages directly.
 *
 * Comparisons are i;ascii-casemap (ASCII letters without case, other
 * bytes as they are), for DISPLAYFROM and DISPLAYTO too (RFC 5957 asks
 * i;unicode-casemap; non-ASCII names therefore compare by their UTF-8
 * bytes). Ties go by sequence number, as RFC 5256 requires.
 */
#ifndef LOFT_IMAP_SORT_H
#define LOFT_IMAP_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct imap_cmd;
struct imap_session;

/* Sort keys (RFC 5256, RFC 5957). */
enum imap_sort_key {
	IMAP_SORT_ARRIVAL,
	IMAP_SORT_CC,
	IMAP_SORT_DATE,
	IMAP_SORT_FROM,
	IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT,
	IMAP_SORT_TO,
	IMAP_SORT_DISPLAYFROM,
	IMAP_SORT_DISPLAYTO,
};

/* Most keys in one SORT program (each may be REVERSE'd). */
#define IMAP_SORT_KEYS_MAX	16
/* Message-IDs kept from one message's References (the last ones). */
#define IMAP_THREAD_REFS_MAX	100
/* Deepest a thread may grow: a link that would hang a message deeper is
 * not made (it starts a thread of its own), which bounds the work of the
 * loop checks and the recursion of the answer. */
#define IMAP_THREAD_DEPTH_MAX	4096

struct imap_sort_prog {
	enum imap_sort_key key[IMAP_SORT_KEYS_MAX];
	bool reverse[IMAP_SORT_KEYS_MAX];
	unsigned count;
};

/* What SORT and THREAD know of one message. Strings are owned, never
 * NULL ("" when the field is missing), NUL-terminated. */
struct imap_sort_msg {
	uint32_t seq;		/* sequence number */
	uint32_t num;		/* what the answer names: seq or UID */
	uint64_t size;		/* RFC822.SIZE */
	int64_t arrival;	/* INTERNALDATE */
	int64_t date;		/* Date:, or INTERNALDATE if none parses */
	char *subject;		/* base subject (imap_sort_base_subject) */
	bool reply;		/* its subject was a reply or forward */
	char *from, *to, *cc;	/* addr-mailbox of the first address */
	char *dfrom, *dto;	/* display name, or the addr-spec */
	char *msgid;		/* "<...>" of Message-ID, "" if none */
	char *refs;		/* References value (or In-Reply-To's) */
};

/*
 * imap_sort_parse: the sort criteria list (SORT's first argument) into
 * prog. 0, or -1 with *error_r (static, for BAD): not a list, empty, an
 * unknown key, REVERSE not followed by a key, more than
 * IMAP_SORT_KEYS_MAX keys.
 */
struct imap_arg;
int imap_sort_parse(const struct imap_arg *arg, struct imap_sort_prog *prog,
    const char **error_r);

/*
 * imap_sort_base_subject: the base subject of RFC 5256 section 2.1 of an
 * unfolded Subject value: encoded words decoded, white space runs made one
 * space, "(fwd)" trailers, "Re:", "Fw:", "Fwd:" leaders (with [blob]s) and
 * "[Fwd: ...]" wrappers removed. Appended to out; *reply_r (may be NULL)
 * says whether anything but white space was removed (a reply or forward,
 * as THREAD=REFERENCES step 5 wants).
 */
void imap_sort_base_subject(const unsigned char *value, size_t len,
    struct buf *out, bool *reply_r);

/* imap_sort_msg_fields: fill m's strings and date from a header block (raw
 * fields one after the other, as the index caches them, or a message's
 * own header); the first field of each name counts. m's seq, num, size
 * and arrival must be set first (date falls back on arrival). */
void imap_sort_msg_fields(struct imap_sort_msg *m, const unsigned char *hdr,
    size_t len);
/* imap_sort_msg_free: the strings of msgs[0..count). */
void imap_sort_msgs_free(struct imap_sort_msg *msgs, size_t count);

/* imap_sort_order: sort msgs[0..count) by prog, ties by seq. */
void imap_sort_order(struct imap_sort_msg *msgs, size_t count,
    const struct imap_sort_prog *prog);

/*
 * imap_thread_write: the threads of msgs[0..count) (any order; seq must
 * be distinct) by ORDEREDSUBJECT (references false) or REFERENCES, as
 * the text after "* THREAD" (" (...)(...)", nothing if count is 0),
 * appended to out. Returns 0, or -1 if out reached its maximum.
 */
int imap_thread_write(struct imap_sort_msg *msgs, size_t count,
    bool references, struct buf *out);

/* The commands (imap_sort.c, imap_thread.c): SORT, UID SORT (with RETURN
 * for ESORT), THREAD, UID THREAD. */
void imap_cmd_sort(struct imap_session *s, const struct imap_cmd *cmd);
void imap_cmd_thread(struct imap_session *s, const struct imap_cmd *cmd);

/* imap_sort_load: run the search program of args (after SORT's or
 * THREAD's charset) over the selected folder and load the matches into
 * *msgs_r (free with imap_sort_msgs_free, then free()). 0, or -1 after
 * answering (BAD, NO). For imap_cmd_sort and imap_cmd_thread. */
int imap_sort_load(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned first_arg, struct imap_sort_msg **msgs_r, size_t *count_r);

/* imap_sort_collect: the messages of the view whose state is 1 as
 * imap_sort_load loads them (num: the UID if uid, else the sequence
 * number; a record not found is left out), into *msgs_r (free as
 * there). Answers nothing: -1 (logged) if the index cannot be read. For
 * the SORT contexts of RFC 5267 (imap_context.c). */
struct store;
int imap_sort_collect(struct imap_session *s, struct store *st, bool uid,
    const unsigned char *state, struct imap_sort_msg **msgs_r,
    size_t *count_r);

#endif
