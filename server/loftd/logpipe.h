/*
 * logpipe.h: the maillog_file of a running loftd, held open by the master
 * alone. Every other process of loftd writes its lines into one pipe that
 * the master copies into the file, so that reopening the file by name on
 * SIGHUP (after logrotate renamed it) takes effect for every process at
 * once, the long-lived mail processes included.
 */
#ifndef LOFT_LOGPIPE_H
#define LOFT_LOGPIPE_H

struct ioloop;

/* logpipe_open: log the master's own lines to path and make the pipe for
 * its children. Returns 0, or -1 and *error_r (nothing changed). */
int logpipe_open(const char *path, const char **error_r);
/* logpipe_watch: copy what the children write from now on, in loop. */
void logpipe_watch(struct ioloop *loop);
/* logpipe_child_fd: the descriptor a child logs to (the pipe's write end),
 * or -1 when there is no maillog_file (syslog or standard error). */
int logpipe_child_fd(void);
/* logpipe_reopen: open path anew (SIGHUP). On failure the old file stays
 * in use, and a warning in it says why. An empty path keeps the old. */
void logpipe_reopen(const char *path);
/* logpipe_close: copy what is left in the pipe, then stop watching it.
 * The master goes on logging to the file itself. */
void logpipe_close(void);

#endif
