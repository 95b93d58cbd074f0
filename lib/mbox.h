/*
 * mbox.h: mboxrd files, written the way procmail, mutt and Postfix's local
 * write them and read the way they read them.
 *
 * A message is stored as
 *	From SENDER DATE\n
 *	the message, each line matching ^>*From  given one more '>'
 *	\n			only if the message does not end with one
 *	\n			the empty separator line
 * SENDER is the envelope sender (MAILER-DAEMON for <>), DATE is asctime(3)
 * form in local time as procmail writes it ("Sun Nov 29 10:23:33 2026").
 * Line endings inside the message are kept: a CRLF message stays CRLF. A
 * From_ line is a line starting "From " at offset 0 or after an empty line
 * ("\n" or "\r\n"); the escaping above keeps message lines from looking like
 * one, whatever precedes them.
 */
#ifndef LOFT_MBOX_H
#define LOFT_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* Longest sender written into a From_ line; longer ones are cut (an SMTP
 * path is at most 256 octets, RFC 5321 4.5.3.1.3). */
#define MBOX_SENDER_MAX		256
/* A From_ line is parsed from its first MBOX_FROM_LINE_MAX bytes only. */
#define MBOX_FROM_LINE_MAX	1024

struct mbox_entry {
	uint64_t from_offset;	/* the From_ line */
	uint64_t data_offset;	/* first header byte */
	uint64_t data_len;	/* escaped message bytes, without the separator
				   empty line */
	time_t from_time;	/* from the From_ line, -1 if unparseable */
	char sender[256];	/* from the From_ line, truncated */
};

/*
 * mbox_append: append one message at the end of the open, locked fd (open
 * O_RDWR, O_APPEND allowed). Notes the size first; if the file is not empty
 * and does not end with an empty line (a writer that crashed, or one that
 * does not write the separator), writes the newlines that make our From_
 * line one. Then writes the From_ line for sender ("" is <>) and when, and
 * the escaped message, in large writes; fsyncs if do_fsync. On any error
 * the file is ftruncate()d back to the noted size, exactly as before, and
 * -1 is returned with errno kept (ENOSPC, EDQUOT, EFBIG: the caller says
 * "disk full").
 * A newly created mbox also needs its directory fsynced, by the caller.
 * On success, *from_offset_r is the offset of the From_ line,
 * *data_offset_r that of the first header byte, and *data_len_r counts the
 * escaped message bytes written, including the newline added to a message
 * that lacked one but not the separator line: exactly what mbox_scan()
 * reports for the message.
 */
int mbox_append(int fd, const char *sender, time_t when,
    const unsigned char *msg, size_t len, bool do_fsync,
    uint64_t *from_offset_r, uint64_t *data_offset_r, uint64_t *data_len_r,
    const char **error_r);

/*
 * mbox_scan: walk the messages in map[0..len), starting at offset start,
 * which must be 0, len (nothing to do), or the offset of a From_ line.
 * For each message cb gets its entry, and returns 0 to go on, 1 to stop or
 * -1 on error. A last message cut short (no final newline, or even no
 * newline after its From_ line) is still reported; bytes after the last
 * From_ line belong to the last message, whatever they are.
 * Returns 0 (also for an empty file), or -1 if start is not at a From_ line
 * or the file does not start with one (not an mbox), or cb returned -1.
 */
int mbox_scan(const unsigned char *map, size_t len, uint64_t start,
    int (*cb)(const struct mbox_entry *e, void *ctx), void *ctx);

/*
 * mbox_unescape: mboxrd un-escape of data (one '>' removed from each line
 * matching ^>+From ), appended to out. Returns 1 if anything changed, 0 if
 * not (out is then untouched and the caller uses data as it is), or -1 if
 * out's maximum was reached (out is then back to its length on entry).
 */
int mbox_unescape(const unsigned char *data, size_t len, struct buf *out);

/* mbox_from_format: the From_ line for sender and when, with its "\n", into
 * out (size outsize; MBOX_SENDER_MAX + 64 always suffices). Bytes of sender
 * that would break the line (space, controls, DEL) are written as '_'.
 * Returns the line's length, or 0 if it did not fit. */
size_t mbox_from_format(char *out, size_t outsize, const char *sender,
    time_t when);

/* mbox_from_parse: fill e->sender and e->from_time from a From_ line
 * (line[0..len), starting "From ", with or without its line end). The date
 * is found as the first asctime-like date after a space, so that senders
 * with spaces and a time zone or " remote from" after the date survive;
 * without one, sender is the first word and from_time -1. */
void mbox_from_parse(const unsigned char *line, size_t len,
    struct mbox_entry *e);

#endif
