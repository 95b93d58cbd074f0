/*
 * log.h: the maillog. One line per event, syslog facility mail by default,
 * or appended to maillog_file (one write(2) per line, O_APPEND, so lines of
 * concurrent processes never interleave), or standard error in the
 * foreground. Levels follow Postfix: info and warning are survived, error is
 * logged and survived by the caller, fatal exits, panic is a bug and aborts.
 */
#ifndef LOFT_LOG_H
#define LOFT_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_dest {
	LOG_DEST_SYSLOG,	/* syslog(3), facility mail */
	LOG_DEST_STDERR,	/* standard error, for foreground use and tools */
	LOG_DEST_FILE		/* maillog_file, maillog format */
};

/* log_open: ident is the program name as shown in the log, e.g.
 * "loft/deliver"; it is copied. Until called, lines go to stderr. */
void log_open(const char *ident, enum log_dest dest);
/* log_set_syslog: ident becomes "NAME/PROGRAM" (syslog_name), facility
 * one of mail, user, daemon, local0..local7 (syslog_facility); the
 * destination becomes syslog. -1 for an unknown facility (nothing changes). */
int log_set_syslog(const char *name, const char *program,
    const char *facility);
/* log_set_file: send lines to path (appended, created 0640). Returns 0, or
 * -1 (the previous destination stays, and a warning says why). */
int log_set_file(const char *path);
/* log_set_fd: send lines to the open file fd (owned from now on): a
 * maillog_file a parent opened and passed down, so that a process that
 * cannot open it (chrooted, or without the right) still logs to it. */
void log_set_fd(int fd);
/* log_file_fd: the maillog file in use, or -1 when logging elsewhere. */
int log_file_fd(void);
/* log_set_fatal_status: exit status for log_fatal (default 1; loft-deliver
 * sets EX_TEMPFAIL so that any fatal error defers instead of bouncing). */
void log_set_fatal_status(int status);
const char *log_ident(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void log_fatal_status(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* log_escape: copy s into out (size outsize, always NUL-terminated) with
 * control characters and bytes >= 0x7f written as \ooo, so text that came
 * from outside cannot forge log lines. Returns out. */
char *log_escape(const char *s, char *out, size_t outsize);

#endif
