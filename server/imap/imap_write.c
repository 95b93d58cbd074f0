/*
 * imap_write.c: IMAP response syntax appended to a bounded buffer (rules
 * in imap_write.h).
 *
 * SECURITY: the strings written here come from messages and are
 * untrusted: any byte may occur. Every string is checked byte by byte and
 * either quoted with escapes or sent as a literal whose count is the
 * number of bytes actually written, so no content can end a quoted string,
 * a literal or a line early. Atoms are trusted (they come from our own
 * code), but CR and LF in them are still refused.
 */
#include "config.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "server/imap/imap_write.h"

void
imap_write_init(struct imap_write *w, struct buf *out, unsigned flags)
{
	w->out = out;
	w->start = out->len;
	w->flags = flags;
	w->depth = 0;
	w->sp = false;
	w->failed = false;
}

int
imap_write_finish(struct imap_write *w)
{
	if (w->depth != 0)
		log_panic("imap_write_finish: %u lists left open", w->depth);
	if (w->failed) {
		buf_truncate(w->out, w->start);
		w->failed = false;
		w->sp = false;
		return -1;
	}
	return 0;
}

/* imap_write_put: append bytes, failing the writer if they do not fit. */
static int
imap_write_put(struct imap_write *w, const void *p, size_t len)
{
	if (w->failed)
		return -1;
	if (buf_append(w->out, p, len) < 0) {
		w->failed = true;
		return -1;
	}
	return 0;
}

/* imap_write_begin_item: the space that separates this item from the
 * previous one, if one is due. */
static int
imap_write_begin_item(struct imap_write *w)
{
	if (w->failed)
		return -1;
	if (w->sp && imap_write_put(w, " ", 1) < 0)
		return -1;
	w->sp = true;
	return 0;
}

int
imap_write_atom(struct imap_write *w, const char *atom)
{
	if (atom[0] == '\0' || strpbrk(atom, "\r\n") != NULL)
		log_panic("imap_write_atom: empty atom or CR/LF in it");
	if (imap_write_begin_item(w) < 0)
		return -1;
	return imap_write_put(w, atom, strlen(atom));
}

int
imap_write_number(struct imap_write *w, uint64_t n)
{
	char num[32];
	int len;

	len = snprintf(num, sizeof(num), "%" PRIu64, n);
	if (imap_write_begin_item(w) < 0)
		return -1;
	return imap_write_put(w, num, (size_t)len);
}

int
imap_write_nil(struct imap_write *w)
{
	return imap_write_atom(w, "NIL");
}

/* imap_write_utf8_seq: the length of the valid UTF-8 sequence starting at
 * s[i] (bytes >= 0x80 only; NULs in between are skipped, because they are
 * dropped before the client sees the text), or 0 if it is invalid. *end_r
 * is the index after the sequence. */
static size_t
imap_write_utf8_seq(const unsigned char *s, size_t len, size_t i,
    size_t *end_r)
{
	unsigned char c = s[i], lo = 0x80, hi = 0xbf;
	size_t need, got = 0;

	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return 0;
	/* The second byte's range excludes overlong forms, surrogates
	 * (ED A0..BF) and code points past U+10FFFF (RFC 3629 section 4). */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (i++; got < need; i++) {
		if (i >= len)
			return 0;
		if (s[i] == '\0')
			continue;
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		got++;
	}
	*end_r = i;
	return need + 1;
}

bool
imap_write_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, end;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (imap_write_utf8_seq(s, len, i, &end) == 0)
			return false;
		i = end;
	}
	return true;
}

bool
imap_write_quotable(const unsigned char *s, size_t len, unsigned flags)
{
	size_t i = 0, n = 0, k, end;
	bool utf8 = (flags & IMAP_WRITE_UTF8) != 0;

	while (i < len) {
		if (s[i] == '\r' || s[i] == '\n')
			return false;
		if (s[i] < 0x80) {
			n += s[i] != '\0';
			i++;
			continue;
		}
		if (!utf8)
			return false;
		if ((k = imap_write_utf8_seq(s, len, i, &end)) == 0)
			return false;
		n += k;
		i = end;
	}
	return n <= IMAP_WRITE_QUOTED_MAX;
}

/* imap_write_quoted: s between double quotes, '"' and '\' escaped, NULs
 * dropped. Runs without a special byte are appended in one piece. */
static int
imap_write_quoted(struct imap_write *w, const unsigned char *s, size_t len)
{
	size_t i, run = 0;
	char esc[2] = { '\\', 0 };

	if (imap_write_put(w, "\"", 1) < 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] != '"' && s[i] != '\\' && s[i] != '\0')
			continue;
		if (imap_write_put(w, s + run, i - run) < 0)
			return -1;
		run = i + 1;
		if (s[i] == '\0')
			continue;
		esc[1] = (char)s[i];
		if (imap_write_put(w, esc, 2) < 0)
			return -1;
	}
	if (imap_write_put(w, s + run, len - run) < 0)
		return -1;
	return imap_write_put(w, "\"", 1);
}

/* imap_write_literal_bytes: "{n}\r\n" and the bytes; NULs are dropped
 * (and not counted) if drop_nul, else sent as 0x80. */
static int
imap_write_literal_bytes(struct imap_write *w, const unsigned char *s,
    size_t len, bool drop_nul)
{
	char head[48];
	size_t i, n = len, run = 0;
	int hl;
	unsigned char subst = 0x80;

	if (drop_nul)
		for (i = 0; i < len; i++)
			n -= s[i] == '\0';
	hl = snprintf(head, sizeof(head), "{%zu}\r\n", n);
	if (imap_write_put(w, head, (size_t)hl) < 0 ||
	    buf_reserve(w->out, n) < 0) {
		w->failed = true;
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (s[i] != '\0')
			continue;
		if (imap_write_put(w, s + run, i - run) < 0 ||
		    (!drop_nul && imap_write_put(w, &subst, 1) < 0))
			return -1;
		run = i + 1;
	}
	return imap_write_put(w, s + run, len - run);
}

int
imap_write_string_mem(struct imap_write *w, const unsigned char *s,
    size_t len)
{
	if (imap_write_begin_item(w) < 0)
		return -1;
	if (imap_write_quotable(s, len, w->flags))
		return imap_write_quoted(w, s, len);
	return imap_write_literal_bytes(w, s, len, true);
}

int
imap_write_string(struct imap_write *w, const char *s)
{
	return imap_write_string_mem(w, (const unsigned char *)s, strlen(s));
}

int
imap_write_nstring_mem(struct imap_write *w, const unsigned char *s,
    size_t len)
{
	if (s == NULL)
		return imap_write_nil(w);
	return imap_write_string_mem(w, s, len);
}

int
imap_write_nstring(struct imap_write *w, const char *s)
{
	if (s == NULL)
		return imap_write_nil(w);
	return imap_write_string(w, s);
}

/* imap_write_astring_char: ASTRING-CHAR: a CHAR that is not an
 * atom-special, or ']' (RFC 3501 section 9). */
static bool
imap_write_astring_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\", c) == NULL;
}

int
imap_write_astring(struct imap_write *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i;

	if (s[0] == '\0' || strcasecmp(s, "NIL") == 0)
		return imap_write_string(w, s);
	for (i = 0; p[i] != '\0'; i++)
		if (!imap_write_astring_char(p[i]))
			return imap_write_string(w, s);
	return imap_write_atom(w, s);
}

int
imap_write_literal(struct imap_write *w, const unsigned char *data,
    size_t len)
{
	if (imap_write_begin_item(w) < 0)
		return -1;
	return imap_write_literal_bytes(w, data, len, false);
}

int
imap_write_list_open(struct imap_write *w)
{
	int ret = imap_write_begin_item(w);

	/* The depth is counted even after a failure, so that the caller's
	 * matching close stays balanced. */
	if (w->depth >= IMAP_WRITE_DEPTH_MAX)
		log_panic("imap_write_list_open: nesting past %d",
		    IMAP_WRITE_DEPTH_MAX);
	w->depth++;
	w->sp = false;
	if (ret < 0)
		return -1;
	return imap_write_put(w, "(", 1);
}

int
imap_write_list_close(struct imap_write *w)
{
	if (w->depth == 0)
		log_panic("imap_write_list_close: no list is open");
	w->depth--;
	w->sp = true;
	return imap_write_put(w, ")", 1);
}

void
imap_write_adjacent(struct imap_write *w)
{
	w->sp = false;
}

int
imap_write_crlf(struct imap_write *w)
{
	if (w->depth != 0)
		log_panic("imap_write_crlf: %u lists left open", w->depth);
	w->sp = false;
	return imap_write_put(w, "\r\n", 2);
}
