/*
 * imap_harness.h: a fake connection for the unit tests of the IMAP engine
 * (server/imap): the session writes into the buffer out, the test feeds
 * it commands whole or byte by byte and reads what came back, delivers
 * mail into alice's store and opens sessions already logged in as alice.
 * Header-only, like tap.h (include it after tap.h): each test is one .c
 * file, and each gets its own out and alice.
 *
 * The test sets alice up (home, mail_location, uid, gid) and sizes out
 * with buf_init before it uses any of this.
 */
#ifndef LOFT_T_IMAP_HARNESS_H
#define LOFT_T_IMAP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "buf.h"
#include "store.h"
#include "user.h"
#include "server/imap/imap_session.h"

static struct buf out;		/* what the sessions wrote */
static struct user alice;	/* the mailbox owner of every session */
/* Called before each write the session makes (imap_binary samples the
 * heap there); NULL: none. */
static void (*t_write_hook)(void);

static void __attribute__((unused))
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	if (t_write_hook != NULL)
		t_write_hook();
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static const struct imap_callbacks t_cb __attribute__((unused)) = {
	.write = t_write
};

/* t_input: feed len bytes of data (one at a time if bytewise), keeping
 * what out already holds; all that out holds then. */
static __attribute__((unused)) const char *
t_input(struct imap_session *s, const void *data, size_t len, bool bytewise)
{
	const unsigned char *p = data;
	size_t used = 0;

	if (bytewise) {
		for (size_t i = 0; i < len; i++)
			used += imap_session_input(s, p + i, 1);
	} else
		used = imap_session_input(s, p, len);
	if (used != len)
		diag("only %zu of %zu bytes taken", used, len);
	return buf_cstr(&out);
}

/* t_feed: as t_input, but the answer to these bytes alone. */
static __attribute__((unused)) const char *
t_feed(struct imap_session *s, const void *data, size_t len, bool bytewise)
{
	buf_truncate(&out, 0);
	return t_input(s, data, len, bytewise);
}

/* t_send: the answer to text, fed one byte at a time if bytewise. */
static __attribute__((unused)) const char *
t_send(struct imap_session *s, const char *text, bool bytewise)
{
	return t_feed(s, text, strlen(text), bytewise);
}

/* t_say: the answer to text, fed at once. */
static __attribute__((unused)) const char *
t_say(struct imap_session *s, const char *text)
{
	return t_feed(s, text, strlen(text), false);
}

static bool __attribute__((unused))
has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* t_deliver_data: len bytes of msg into alice's folder, as from
 * bob@example.net at a fixed time; bails out on failure. */
static void __attribute__((unused))
t_deliver_data(const char *folder, const void *msg, size_t len)
{
	struct store *st;
	struct store_delivery d = { folder, "bob@example.net", 1700000000,
	    msg, len };
	struct store_delivered r;
	const char *err;

	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	store_close(&st);
}

static void __attribute__((unused))
t_deliver(const char *folder, const char *msg)
{
	t_deliver_data(folder, msg, strlen(msg));
}

/* t_session: a session of the mail process, logged in as alice (over
 * TLS, no SASL); bails out if her store does not open. */
static __attribute__((unused)) struct imap_session *
t_session(void)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;

	s = imap_session_new_authenticated(&set, &t_cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	return s;
}

#endif
