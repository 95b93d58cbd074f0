/*
 * mailloc.h: mail_location, where a user's mail lives.
 *
 *	FORMAT:PATH[:KEY=VALUE]...
 *
 * FORMAT is "maildir" or "mbox". PATH is the Maildir (maildir) or the
 * directory of folder files (mbox). Keys: INDEX=DIR (the index directory,
 * default ROOT/loft-index for maildir, ROOT/.loft-index for mbox) and, for
 * mbox only, INBOX=FILE (default ROOT/inbox). Examples:
 *
 *	maildir:~/Maildir
 *	maildir:/srv/mail/%d/%n:INDEX=/var/idx/%u
 *	mbox:~/mail:INBOX=/var/mail/%u
 *
 * In PATH and each VALUE: %u is the full user name, %n its local part
 * (before the last '@', or all of it), %d its domain (after the last '@',
 * or empty), %h the home directory, %% a '%'; a leading "~" (alone or
 * before '/') is the home directory too. Paths cannot contain ':'.
 */
#ifndef LOFT_MAILLOC_H
#define LOFT_MAILLOC_H

enum mailloc_format {
	MAILLOC_MAILDIR,
	MAILLOC_MBOX
};

/* All paths are absolute, without a trailing '/', and owned by the struct
 * (mailloc_free). */
struct mailloc {
	enum mailloc_format format;
	char *root;		/* maildir: the Maildir; mbox: folder dir */
	char *inbox;		/* mbox: the INBOX file; maildir: NULL */
	char *index_dir;	/* INDEX= or the default above */
};

/* Longest expanded path, in bytes (PATH_MAX less the NUL). */
#define MAILLOC_PATH_MAX 4095

/*
 * mailloc_parse: parse spec and expand it for user (a name that passed
 * user_name_valid) whose home is home (NULL or "" if none). Returns 0 and
 * *ml_r, or -1 with *error_r and *ml_r zeroed (mailloc_free is still
 * safe). Errors: unknown format or key, a key given twice, INBOX= for
 * maildir, an empty path, an unknown or trailing '%' escape, %h or "~"
 * without a home, a result that is not absolute, is longer than
 * MAILLOC_PATH_MAX, or contains a "." or ".." component ("/./", "/../",
 * or at the end), and user-derived text (%u %n %d) holding '/'. Repeated
 * '/' (an empty %d, a home of "/") are squeezed to one.
 */
int mailloc_parse(const char *spec, const char *user, const char *home,
    struct mailloc *ml_r, const char **error_r);
/* mailloc_free: free the paths and zero *ml. */
void mailloc_free(struct mailloc *ml);

#endif
