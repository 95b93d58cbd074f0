/*
 * imap_search.c: SEARCH and UID SEARCH (RFC 3501 section 6.4.4). Being
 * written: until then the command is answered NO [CANNOT] and SEARCH is
 * not advertised.
 */
#include "config.h"

#include "server/imap/imap_private.h"

void
imap_cmd_search(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imap_tagged(s, "NO", "[CANNOT] SEARCH is not supported yet");
}
