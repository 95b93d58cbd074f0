/*
 * imap_search.h: the SEARCH program of RFC 3501 section 6.4.4 (RFC 9051
 * 6.4.4), with the RETURN options of ESEARCH (RFC 4731) and the saved
 * result "$" of SEARCHRES (RFC 5182): parse the search keys of a command
 * into a tree, then match messages against it in two steps, so a message
 * file is opened only when the index cannot decide:
 *
 *  1. imap_search_match_index: flags, sequence numbers, UIDs, sizes,
 *     internal dates, keywords, and header keys on the header fields the
 *     index caches (msg_cache_field) answer at once; a key that needs the
 *     message (BODY, TEXT, a header field that is not cached, or one
 *     missing from a cache marked MINDEX_C_HEADERS_PARTIAL) leaves the
 *     answer open (IMAP_SEARCH_NEED) unless the other keys decide it.
 *  2. imap_search_match_message: the message is read once, in chunks,
 *     through the caller's reader, and only the keys left open are
 *     matched against it (memory is bounded whatever the message size).
 *
 * Matching: strings are case-insensitive substrings (ASCII letters, and
 * the Latin-1 letters of UTF-8 U+00C0..U+00DE); an empty string matches
 * any message (HEADER name "": any message with that field). Header keys
 * match the unfolded value with RFC 2047 encoded words decoded (UTF-8,
 * US-ASCII and ISO-8859-1 to UTF-8; other charsets stay as sent). BODY
 * matches the body after the top-level header, with base64 and
 * quoted-printable "text" parts decoded as lib/cte decodes them (line
 * ends as stored; other parts raw); TEXT matches
 * the raw header, every decoded header value, and the body as BODY does.
 * Dates: BEFORE, ON, SINCE compare the day of the internal date in UTC
 * (as FETCH INTERNALDATE reports it); SENT* the day of the Date: field in
 * its own time zone (numeric zones; names count as +0000). \Recent is not
 * kept by this version (SELECT reports 0 RECENT): RECENT and NEW match
 * nothing, OLD everything.
 *
 * Trusts nothing in the arguments (they come from the client through the
 * parser's accessors) nor in the message bytes; trusts the index.
 */
#ifndef LOFT_IMAP_SEARCH_H
#define LOFT_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/imap/imap_parser.h"

struct buf;
struct mindex_msg;
struct imap_search;
struct imap_seqset;
struct imap_session;

/* Most NOT, OR and parenthesized levels around one key: a key inside
 * IMAP_SEARCH_DEPTH_MAX of them parses, one more is BAD. */
#define IMAP_SEARCH_DEPTH_MAX	64
/* Bytes of one header field kept for matching while a message is read;
 * the rest of a longer field is not matched. */
#define IMAP_SEARCH_FIELD_MAX	(64 * 1024)
/* Chunk size of imap_search_match_message's reads. */
#define IMAP_SEARCH_CHUNK	8192

/* Results of imap_search_parse. */
#define IMAP_SEARCH_PARSE_OK		0
#define IMAP_SEARCH_PARSE_BAD		(-1)	/* answer BAD *error_r */
#define IMAP_SEARCH_PARSE_BADCHARSET	(-2)	/* answer NO [BADCHARSET
						   (US-ASCII UTF-8)] */

/* Results of imap_search_match_index (besides 1 match, 0 no match). */
#define IMAP_SEARCH_NEED	2

/*
 * imap_search_parse: the arguments of SEARCH (args[0..argc), optionally
 * starting with CHARSET name) into *search_r (free with
 * imap_search_free). msgs is the number of messages in the view and
 * uid_max its highest UID, for "*" in sequence sets; numbers above them
 * are kept and simply match nothing. CHARSET may be US-ASCII or UTF-8 (any
 * case). Returns IMAP_SEARCH_PARSE_OK, or _BAD / _BADCHARSET with
 * *search_r NULL and *error_r a static text fit for "tag BAD <text>"
 * (valid until the next call).
 */
int imap_search_parse(const struct imap_arg *args, unsigned argc,
    uint32_t msgs, uint32_t uid_max, struct imap_search **search_r,
    const char **error_r);
/*
 * imap_search_parse_saved: as imap_search_parse, with "$" (as a key, or
 * after UID) meaning the messages whose UIDs are in saved (the session's
 * saved result; NULL or empty: no message). saved is copied.
 */
int imap_search_parse_saved(const struct imap_arg *args, unsigned argc,
    uint32_t msgs, uint32_t uid_max, const struct imap_seqset *saved,
    struct imap_search **search_r, const char **error_r);
/* imap_search_free: NULL is ignored; sets *search NULL. */
void imap_search_free(struct imap_search **search);

/* imap_search_needs_message: whether any key may need message bytes
 * (BODY, TEXT, or a header key on a field the index does not cache). */
bool imap_search_needs_message(const struct imap_search *search);

/*
 * imap_search_match_index: whether message m, sequence number msn, matches,
 * from the index record alone: 1, 0, or IMAP_SEARCH_NEED (then call
 * imap_search_match_message). m's fields are only read during the call.
 */
int imap_search_match_index(struct imap_search *search, uint32_t msn,
    const struct mindex_msg *m);

/*
 * How imap_search_match_message reads a message: open once, read until
 * 0, close once (also after an error of read). open: 0, or -1 with
 * *error_r. read: up to size bytes into buf (it may return fewer, even
 * one at a time): 1 with *len_r > 0, 0 at the end, -1 with *error_r.
 */
struct imap_search_reader {
	int (*open)(void *ctx, const char **error_r);
	int (*read)(void *ctx, unsigned char *buf, size_t size, size_t *len_r,
	    const char **error_r);
	void (*close)(void *ctx);
};

/*
 * imap_search_match_message: as imap_search_match_index, but reading the
 * message through rd when the index cannot decide (it is not opened
 * otherwise; reading stops after the header when no key needs the
 * body). m->mime (the serialized MIME tree) tells which parts to decode;
 * a tree that does not decode means every body byte is matched raw.
 * Returns 1, 0, or -1 with *error_r (the reader's text) if the message
 * could not be read.
 */
int imap_search_match_message(struct imap_search *search, uint32_t msn,
    const struct mindex_msg *m, const struct imap_search_reader *rd,
    void *rd_ctx, const char **error_r);

/*
 * imap_search_decode_header: append the value of a raw header field
 * value (unfolded already) to out with RFC 2047 encoded words decoded as
 * described above; white space between two encoded words is dropped.
 * Bytes past out's maximum are dropped. Exposed for the unit tests.
 */
void imap_search_decode_header(const unsigned char *value, size_t len,
    struct buf *out);

/*
 * imap_search_run: match every message of s's view (synced by the
 * caller) against search: state (view.count bytes, zeroed) gets 1 for a
 * match. The index first, then the messages it left open, each read
 * once. 0, or -1 after answering NO (the index could not be read). For
 * SEARCH, SORT and THREAD.
 */
struct store;
int imap_search_run(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state);

/* imap_search_files_read: messages opened by SEARCH commands in this
 * process (through the engine's store reader), for tests and logging. */
uint64_t imap_search_files_read(void);

/* RETURN options (RFC 4731, SAVE of RFC 5182), as bits. */
#define IMAP_SEARCH_RET_MIN	0x01
#define IMAP_SEARCH_RET_MAX	0x02
#define IMAP_SEARCH_RET_ALL	0x04
#define IMAP_SEARCH_RET_COUNT	0x08
#define IMAP_SEARCH_RET_SAVE	0x10
#define IMAP_SEARCH_RET_UPDATE	0x20	/* RFC 5267: keep a context */
#define IMAP_SEARCH_RET_CONTEXT	0x40	/* RFC 5267: a hint, ignored */
#define IMAP_SEARCH_RET_PARTIAL	0x80	/* RFC 5267, RFC 9394 */
#define IMAP_SEARCH_RET_ESEARCH	0x100	/* RETURN was given: answer
					   ESEARCH, not SEARCH */

/*
 * imap_search_parse_return: "RETURN (options)" at the start of SEARCH's
 * arguments. Without it: *ret_r 0, *used_r 0. With it: *used_r 2 and
 * *ret_r IMAP_SEARCH_RET_ESEARCH plus the options given (any case,
 * repeats allowed; "RETURN ()" means ALL). Returns 0, or -1 with *error_r
 * (static, for BAD) for a missing list or an unknown option.
 */
int imap_search_parse_return(const struct imap_arg *args, unsigned argc,
    unsigned *ret_r, unsigned *used_r, const char **error_r);

/*
 * PARTIAL (RFC 5267 section 4.4; RFC 9394's negative ranges): the
 * results from position lo to hi (1-based, lo <= hi), counted from the
 * first result, or with last from the last one (-1 is the last result).
 */
struct imap_search_partial {
	uint32_t lo, hi;
	bool last;
};

/*
 * imap_search_partial_parse: a partial-range "m:n" or "-m:-n" (each an
 * nz-number up to 4294967295, no sign mixing, no "*"; "5:2" is "2:5").
 * 0, or -1 if text is not one.
 */
int imap_search_partial_parse(const char *text,
    struct imap_search_partial *p);
/* imap_search_partial_slice: results [*first_r, *end_r) (0-based) of
 * count that p names; empty (first == end) when none. */
void imap_search_partial_slice(const struct imap_search_partial *p,
    size_t count, size_t *first_r, size_t *end_r);

/*
 * imap_search_parse_return_ctx: as imap_search_parse_return, also taking
 * the options of CONTEXT=SEARCH (RFC 5267): UPDATE, CONTEXT and
 * "PARTIAL range" (into *partial_r). At most one of PARTIAL and ALL, and
 * PARTIAL once (RFC 5267 4.4): else -1 with *error_r. imap_search_parse_
 * return itself refuses these three (a command that has no contexts).
 */
int imap_search_parse_return_ctx(const struct imap_arg *args, unsigned argc,
    unsigned *ret_r, unsigned *used_r, struct imap_search_partial *partial_r,
    const char **error_r);

/*
 * imap_search_esearch_partial: as imap_search_esearch, plus with
 * IMAP_SEARCH_RET_PARTIAL " PARTIAL (range set)" (or "range NIL") for
 * the results partial names, nums being in the order to answer (mailbox
 * order for SEARCH, the sort order for SORT: MIN and MAX are then the
 * first and the last). partial may be NULL without that option.
 */
int imap_search_esearch_partial(const char *tag, bool uid, unsigned ret,
    const struct imap_search_partial *partial, const uint32_t *nums,
    size_t count, struct buf *out);

/*
 * imap_search_run_some: as imap_search_run, for the messages of the view
 * whose state is 0 only: the others (IMAP_SEARCH_SKIP) are left as they
 * are. Answers nothing: -1 (logged) if the index could not be read. For
 * the updates of a context (imap_context.c), which may come with no
 * command to answer.
 */
#define IMAP_SEARCH_SKIP	0xfe
int imap_search_run_some(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state);

/*
 * imap_search_esearch: append the line "* ESEARCH (TAG "tag") [UID]
 * [MIN n] [MAX n] [COUNT n] [ALL set]\r\n" for the options in ret, nums
 * being the count matches in ascending order (UIDs when uid). MIN, MAX
 * and ALL are left out when nothing matched; COUNT 0 is given. ALL is a
 * compact set ("2:4,9"). Returns 0, or -1 with out unchanged if out's
 * maximum would be passed.
 */
int imap_search_esearch(const char *tag, bool uid, unsigned ret,
    const uint32_t *nums, size_t count, struct buf *out);

/*
 * imap_search_saved_set: set (parsed from "$") becomes the session's
 * saved result (s->searchres, UIDs): the UIDs still in the view when
 * uid, else their sequence numbers; empty when nothing was saved. For
 * FETCH, STORE, COPY, MOVE and their UID forms.
 */
void imap_search_saved_set(struct imap_session *s, bool uid,
    struct imap_seqset *set);

#endif
