/*
 * imap_url.h: the IMAP URLs of CATENATE (RFC 4469 section 5, RFC 5092):
 * a message, or a section of one, of the logged-in user's own folders,
 *
 *     /INBOX;UIDVALIDITY=1700000000/;UID=20/;SECTION=1.2/;PARTIAL=0.100
 *     imap://alice@host/INBOX/;UID=20
 *
 * the relative form with an absolute path, or the absolute form whose
 * user is checked by the caller (the server's host name is not).
 * UIDVALIDITY, SECTION and PARTIAL are optional; the keywords are
 * matched in any case. A pure parser: no store, no session.
 */
#ifndef LOFT_IMAP_URL_H
#define LOFT_IMAP_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest URL taken, and the parts' longest decoded forms. */
#define IMAP_URL_MAX		8192
#define IMAP_URL_MAILBOX_MAX	1024
#define IMAP_URL_USER_MAX	255
#define IMAP_URL_SECTION_MAX	1024

struct imap_url {
	char user[IMAP_URL_USER_MAX + 1];	/* decoded; "" relative */
	char mailbox[IMAP_URL_MAILBOX_MAX + 1];	/* decoded UTF-8 bytes */
	uint32_t uidvalidity;			/* 0: not given */
	uint32_t uid;				/* never 0 */
	char section[IMAP_URL_SECTION_MAX + 1];	/* decoded; "" whole */
	bool partial;
	uint64_t origin;
	uint64_t length;			/* 0: to the end */
};

/*
 * imap_url_parse: text (NUL-terminated, at most IMAP_URL_MAX bytes) into
 * *u. Percent escapes are decoded (two hex digits); a decoded NUL or
 * control character (below 0x20, 0x7f), a raw byte the RFC 5092 grammar
 * does not allow in that place, a mailbox that is empty, begins or ends
 * with "/", holds "//" or a "." or ".." level, a number with a leading
 * zero, a sign or more than 4294967295 (UIDVALIDITY, UID, the PARTIAL
 * length; the origin up to 2^63 - 1), a part past its maximum, or a
 * missing ";UID=" is refused: -1 with *error_r a static text (valid
 * until the next call). 0 on success.
 */
int imap_url_parse(const char *text, struct imap_url *u,
    const char **error_r);

#endif
