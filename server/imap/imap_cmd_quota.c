/*
 * imap_cmd_quota.c: QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA report the
 * one quota root of a user, "", with the STORAGE resource (KiB, as the
 * RFC counts it) and MESSAGE (the number of messages); its limit is the
 * one deliveries enforce (the user's quota or mailbox_size_limit).
 * SETQUOTA is refused: limits are the administrator's (loftctl user
 * quota).
 *
 * Trusts nothing from the client: names through the parser's accessors
 * and lib/utf7 (imap_mailbox_from_wire).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_write.h"

#define IMAP_QUOTA_ROOT	""

/* "* QUOTA "" (STORAGE used limit)" for the user; -1 after NO. */
static int
imap_quota_line(struct imap_session *s)
{
	uint64_t bytes = 0, msgs = 0, limit = 0;
	struct store *st = imap_store(s);
	const char *error;

	if (st == NULL)
		return -1;
	if (store_quota(st, &bytes, &msgs, &limit, &error) < 0) {
		log_error("imap: user=<%s>, quota: %s", s->user, error);
		imap_tagged(s, "NO", "[UNAVAILABLE] Quota unknown");
		return -1;
	}
	if (limit == 0)
		imap_untagged(s, "QUOTA \"%s\" ()", IMAP_QUOTA_ROOT);
	else
		imap_untagged(s, "QUOTA \"%s\" (STORAGE %llu %llu)",
		    IMAP_QUOTA_ROOT, (unsigned long long)((bytes + 1023) / 1024),
		    (unsigned long long)(limit / 1024));
	return 0;
}

void
imap_cmd_getquotaroot(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_write w;
	struct buf name;
	const char *wire, *error;

	if (cmd->argc != 1 ||
	    imap_arg_astring(&cmd->args[0], &wire, &error) < 0) {
		imap_bad(s, "GETQUOTAROOT mailbox");
		return;
	}
	buf_init(&name, 4096);
	if (imap_mailbox_from_wire(s, wire, &name) < 0) {
		buf_free(&name);
		return;
	}
	/* The mailbox is named back as the client sent it. */
	buf_append_str(&s->out, "* QUOTAROOT ");
	imap_write_init(&w, &s->out, imap_write_flags(s));
	(void)imap_write_astring(&w, strcmp(buf_cstr(&name), "INBOX") == 0 ?
	    "INBOX" : wire);
	(void)imap_write_string(&w, IMAP_QUOTA_ROOT);
	(void)imap_write_finish(&w);
	buf_append_str(&s->out, "\r\n");
	imap_send(s);
	buf_free(&name);
	if (imap_quota_line(s) < 0)
		return;
	imap_tagged(s, "OK", "GETQUOTAROOT completed");
}

void
imap_cmd_getquota(struct imap_session *s, const struct imap_cmd *cmd)
{
	const char *root, *error;

	if (cmd->argc != 1 ||
	    imap_arg_astring(&cmd->args[0], &root, &error) < 0) {
		imap_bad(s, "GETQUOTA root");
		return;
	}
	if (strcmp(root, IMAP_QUOTA_ROOT) != 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such quota root");
		return;
	}
	if (imap_quota_line(s) < 0)
		return;
	imap_tagged(s, "OK", "GETQUOTA completed");
}

void
imap_cmd_setquota(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imap_tagged(s, "NO", "[NOPERM] Quotas are set by the administrator");
}
