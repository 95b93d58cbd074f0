/*
 * maildir.c: Maildir++ folders and message files: folder name <-> path
 * mapping, creating maildirs, delivering through tmp/ into new/, giving
 * messages their UID in the file name, parsing and building file names,
 * and listing messages and folders.
 *
 * SECURITY: folder names come from IMAP clients and from directory
 * entries, file names from directory entries that other programs (mutt,
 * procmail, Dovecot, the user) may have written: all are untrusted and
 * checked byte by byte; a folder name can never leave the Maildir root
 * ('/', '.' and ".." are refused). The Maildir root and the dir arguments
 * are trusted (they come from the configuration or from
 * maildir_folder_path). Runs as the mailbox owner, never as root.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/time.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "compat/compat.h"
#include "buf.h"
#include "log.h"
#include "maildir.h"
#include "mindex.h"
#include "utf7.h"
#include "xmalloc.h"

#define MAILDIR_ERR_SIZE 1024
/* Bytes of a folder name in UTF-8 beyond which it cannot fit in
 * MAILDIR_DIRENT_MAX on disk: no character takes fewer bytes in
 * modified UTF-7 than 8/9 of its UTF-8 bytes. */
#define MAILDIR_FOLDER_UTF8_MAX (2 * MAILDIR_DIRENT_MAX)
#define MAILDIR_HOST_MAX 128
/* Attempts at a unique tmp name before giving up (qmail sleeps and
 * retries; our names also hold a counter and random bits, so a clash
 * means something else is wrong). */
#define MAILDIR_TMP_TRIES 3

static char maildir_errbuf[MAILDIR_ERR_SIZE];

static const char *maildir_flag_letters = "DFPRST";
static const uint32_t maildir_flag_bits[] = {
	MINDEX_F_DRAFT, MINDEX_F_FLAGGED, MINDEX_F_FORWARDED,
	MINDEX_F_ANSWERED, MINDEX_F_SEEN, MINDEX_F_DELETED
};
#define MAILDIR_NFLAGS \
	(sizeof(maildir_flag_bits) / sizeof(maildir_flag_bits[0]))

static const char * __attribute__((format(printf, 1, 2)))
maildir_err(const char *fmt, ...)
{
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	vsnprintf(maildir_errbuf, sizeof(maildir_errbuf), fmt, ap);
	va_end(ap);
	errno = saved_errno;
	return maildir_errbuf;
}

/* maildir_syserr: "op path: strerror(errno)", errno kept. */
static const char *
maildir_syserr(const char *op, const char *path)
{
	return maildir_err("%s %s: %s", op, path, strerror(errno));
}

/*
 * Folder names.
 */

static bool
maildir_is_wildcard(unsigned char c)
{
	return c == '%' || c == '*';
}

/* maildir_folder_parts: the rules on '/' and the parts between. */
static const char *
maildir_folder_parts(const char *folder)
{
	const char *p, *end;
	size_t plen;

	if (folder[0] == '\0')
		return "empty name";
	if (folder[0] == '/')
		return "starts with '/'";
	if (folder[strlen(folder) - 1] == '/')
		return "ends with '/'";
	for (p = folder; ; p = end + 1) {
		end = strchr(p, '/');
		plen = end == NULL ? strlen(p) : (size_t)(end - p);
		if (plen == 0)
			return "empty part between '/'";
		if ((plen == 1 && p[0] == '.') ||
		    (plen == 2 && p[0] == '.' && p[1] == '.'))
			return "'.' and '..' are not folder names";
		if (end == NULL)
			return NULL;
	}
}

/* maildir_folder_bytes: the rules on single bytes. UTF-8 validity is
 * left to utf7_encode(). */
static const char *
maildir_folder_bytes(const char *folder)
{
	const unsigned char *p;

	for (p = (const unsigned char *)folder; *p != '\0'; p++) {
		if (*p == '.')
			return "'.' is not supported in folder names "
			    "(Maildir++ uses it as the separator on disk)";
		if (maildir_is_wildcard(*p))
			return "'%' and '*' are IMAP wildcards";
		if (*p < 0x20 || *p == 0x7f)
			return "control character";
		/* C1 controls U+0080-U+009F are 0xc2 0x80-0x9f. */
		if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return "control character";
	}
	return NULL;
}

static bool
maildir_is_inbox(const char *s, size_t len)
{
	return len == 5 && strncasecmp(s, "INBOX", 5) == 0;
}

/* maildir_folder_encode: ".A.B" for folder into out (max set by the
 * caller). Returns 1 for INBOX (the root; out untouched), 0, or -1 with
 * the reason in *why_r. */
static int
maildir_folder_encode(const char *folder, struct buf *out,
    const char **why_r)
{
	const char *rest = folder;
	size_t i;

	if ((*why_r = maildir_folder_parts(folder)) != NULL ||
	    (*why_r = maildir_folder_bytes(folder)) != NULL)
		return -1;
	if (maildir_is_inbox(folder, strlen(folder)))
		return 1;
	if (strlen(folder) > MAILDIR_FOLDER_UTF8_MAX) {
		*why_r = "too long";
		return -1;
	}
	buf_append_byte(out, '.');
	/* INBOX's children are spelt one way whatever the client's case. */
	if (maildir_is_inbox(folder, 5) && folder[5] == '/') {
		buf_append_str(out, "INBOX");
		rest = folder + 5;
	}
	if (utf7_encode(rest, out) < 0) {
		*why_r = "not valid UTF-8";
		return -1;
	}
	if (out->len > MAILDIR_DIRENT_MAX) {
		*why_r = "longer than 255 bytes on disk";
		return -1;
	}
	for (i = 1; i < out->len; i++)
		if (out->data[i] == '/')
			out->data[i] = '.';
	return 0;
}

static void
maildir_encode_buf_init(struct buf *b)
{
	/* Modified UTF-7 takes at most 5 bytes per UTF-8 byte ("\x01" is
	 * "&AAE-"), and the input is at most MAILDIR_FOLDER_UTF8_MAX. */
	buf_init(b, 5 * MAILDIR_FOLDER_UTF8_MAX + 16);
}

int
maildir_folder_path(const char *root, const char *folder, char *out,
    size_t outsize, const char **error_r)
{
	char esc[128];
	const char *why, *sep;
	struct buf d;
	int r, n;

	if (root[0] == '\0') {
		*error_r = maildir_err("empty Maildir root");
		return -1;
	}
	maildir_encode_buf_init(&d);
	r = maildir_folder_encode(folder, &d, &why);
	if (r < 0) {
		*error_r = maildir_err("invalid folder name \"%s\": %s",
		    log_escape(folder, esc, sizeof(esc)), why);
		buf_free(&d);
		return -1;
	}
	sep = root[strlen(root) - 1] == '/' ? "" : "/";
	n = snprintf(out, outsize, "%s%s%s", root, r == 1 ? "" : sep,
	    buf_cstr(&d));
	buf_free(&d);
	if (n < 0 || (size_t)n >= outsize) {
		*error_r = maildir_err("path of folder \"%s\" is too long",
		    log_escape(folder, esc, sizeof(esc)));
		return -1;
	}
	return 0;
}

int
maildir_folder_name(const char *dirent, char *out, size_t outsize)
{
	struct buf enc, name, again;
	const char *why;
	size_t i;
	int ret = -1;

	if (dirent[0] != '.' || strlen(dirent) > MAILDIR_DIRENT_MAX)
		return -1;
	buf_init(&enc, MAILDIR_DIRENT_MAX);
	buf_init(&name, 4 * MAILDIR_DIRENT_MAX);
	maildir_encode_buf_init(&again);
	buf_append_str(&enc, dirent + 1);
	for (i = 0; i < enc.len; i++)
		if (enc.data[i] == '.')
			enc.data[i] = '/';
	/* Accept only what the forward mapping makes, so that every folder
	 * has exactly one directory and the other way round. */
	if (utf7_decode(buf_cstr(&enc), &name) == 0 &&
	    maildir_folder_encode(buf_cstr(&name), &again, &why) == 0 &&
	    strcmp(buf_cstr(&again), dirent) == 0 &&
	    strlcpy(out, buf_cstr(&name), outsize) < outsize)
		ret = 0;
	buf_free(&enc);
	buf_free(&name);
	buf_free(&again);
	return ret;
}

/*
 * Creating maildirs.
 */

static int
maildir_mkdir(const char *path, const char **error_r)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		*error_r = maildir_syserr("mkdir", path);
		return -1;
	}
	if (stat(path, &st) < 0) {
		*error_r = maildir_syserr("stat", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		*error_r = maildir_syserr("mkdir", path);
		return -1;
	}
	return 0;
}

/* maildir_mkdir_parents: mkdir -p, walking up only as far as needed. */
static int
maildir_mkdir_parents(const char *path, const char **error_r)
{
	char *parent, *slash;
	int r;

	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return maildir_mkdir(path, error_r);
	if (errno != ENOENT) {
		*error_r = maildir_syserr("mkdir", path);
		return -1;
	}
	parent = xstrdup(path);
	slash = strrchr(parent, '/');
	while (slash != NULL && slash > parent && slash[-1] == '/')
		slash--;
	if (slash == NULL || slash == parent) {
		free(parent);
		*error_r = maildir_syserr("mkdir", path);
		return -1;
	}
	*slash = '\0';
	r = maildir_mkdir_parents(parent, error_r);
	free(parent);
	return r < 0 ? -1 : maildir_mkdir(path, error_r);
}

static int
maildir_touch(const char *path, const char **error_r)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		*error_r = maildir_syserr("create", path);
		return -1;
	}
	close(fd);
	return 0;
}

int
maildir_create(const char *dir, bool is_subfolder, const char **error_r)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char *path;
	size_t i;
	int r = 0;

	if (maildir_mkdir_parents(dir, error_r) < 0)
		return -1;
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]) && r == 0; i++) {
		path = xasprintf("%s/%s", dir, subs[i]);
		r = maildir_mkdir(path, error_r);
		free(path);
	}
	if (r == 0 && is_subfolder) {
		path = xasprintf("%s/maildirfolder", dir);
		r = maildir_touch(path, error_r);
		free(path);
	}
	return r;
}

/*
 * Delivery: tmp/, then new/.
 */

/* maildir_host: the host name for file names, escaped as maildir.h
 * says and cut to MAILDIR_HOST_MAX bytes at a character boundary. */
static void
maildir_host(char *out, size_t outsize)
{
	char host[256];
	const unsigned char *p;
	size_t o = 0;

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	for (p = (const unsigned char *)host; *p != '\0'; p++) {
		if (*p > 0x20 && *p < 0x7f && *p != '/' && *p != ':' &&
		    *p != ',' && *p != '\\') {
			if (o + 1 >= outsize)
				break;
			out[o++] = (char)*p;
		} else {
			if (o + 4 >= outsize)
				break;
			snprintf(out + o, 5, "\\%03o", *p);
			o += 4;
		}
	}
	out[o] = '\0';
}

static void
maildir_random_hex(char *out, size_t outsize, const struct timeval *tv,
    unsigned counter)
{
	uint64_t r = 0;

#ifdef HAVE_GETRANDOM
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
#endif
		/* Uniqueness rests on pid, counter and time; this part only
		 * guards against pid reuse within a microsecond. */
		r = (uint64_t)tv->tv_usec << 32 ^ (uint64_t)tv->tv_sec ^
		    counter;
	snprintf(out, outsize, "%016llx", (unsigned long long)r);
}

/* maildir_unique_name: a new base name, ",S=size" included. */
static char *
maildir_unique_name(size_t size)
{
	static unsigned counter;
	static pid_t counter_pid;
	char host[MAILDIR_HOST_MAX + 1], rnd[17];
	struct timeval tv;
	pid_t pid = getpid();

	if (pid != counter_pid) {
		counter_pid = pid;
		counter = 0;
	}
	counter++;
	gettimeofday(&tv, NULL);
	maildir_random_hex(rnd, sizeof(rnd), &tv, counter);
	maildir_host(host, sizeof(host));
	return xasprintf("%lld.M%06ldP%ldQ%uR%s.%s,S=%zu",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)pid, counter, rnd,
	    host, size);
}

/* maildir_write_fd: write everything, fsync if asked, close; fd is
 * closed in every case and errno is that of the first failure. */
static int
maildir_write_fd(int fd, const unsigned char *msg, size_t len,
    bool do_fsync, const char **op_r)
{
	size_t off = 0;
	ssize_t n;
	int saved_errno;

	*op_r = "write";
	while (off < len) {
		n = write(fd, msg + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		off += (size_t)n;
	}
	*op_r = "fsync";
	if (do_fsync && fsync(fd) < 0)
		goto fail;
	/* NFS reports a full quota at close. */
	*op_r = "close";
	return close(fd);
fail:
	saved_errno = errno;
	close(fd);
	errno = saved_errno;
	return -1;
}

/* maildir_tmp_open: create dir/tmp/NAME for a new name; *name_r and
 * *path_r are the caller's to free. */
static int
maildir_tmp_open(const char *dir, size_t len, char **name_r, char **path_r,
    const char **error_r)
{
	int fd, tries;

	for (tries = 1; ; tries++) {
		*name_r = maildir_unique_name(len);
		*path_r = xasprintf("%s/tmp/%s", dir, *name_r);
		fd = open(*path_r, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		*error_r = maildir_syserr("create", *path_r);
		free(*name_r);
		free(*path_r);
		*name_r = *path_r = NULL;
		if (errno != EEXIST || tries == MAILDIR_TMP_TRIES)
			return -1;
	}
}

int
maildir_tmp_write(const char *dir, const unsigned char *msg, size_t len,
    bool do_fsync, char **name_r, const char **error_r)
{
	char *name, *path;
	const char *op;
	int fd, saved_errno;

	*name_r = NULL;
	if ((fd = maildir_tmp_open(dir, len, &name, &path, error_r)) < 0)
		return -1;
	if (maildir_write_fd(fd, msg, len, do_fsync, &op) < 0) {
		*error_r = maildir_syserr(op, path);
		saved_errno = errno;
		unlink(path);
		errno = saved_errno;
		free(name);
		free(path);
		return -1;
	}
	free(path);
	*name_r = name;
	return 0;
}

static int
maildir_fsync_dir(const char *path, const char **error_r)
{
	int fd, saved_errno;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = maildir_syserr("open", path);
		return -1;
	}
	if (fsync(fd) < 0) {
		*error_r = maildir_syserr("fsync", path);
		saved_errno = errno;
		close(fd);
		errno = saved_errno;
		return -1;
	}
	close(fd);
	return 0;
}

/* maildir_move_fallback: for file systems without hard links, a rename
 * that refuses to replace; on a failed fsync the file is put back. */
static int
maildir_move_fallback(const char *src, const char *dst, const char *dstdir,
    bool do_fsync, const char **error_r)
{
#ifdef RENAME_NOREPLACE
	int saved_errno;

	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
		*error_r = maildir_syserr("rename to", dst);
		return -1;
	}
	if (do_fsync && maildir_fsync_dir(dstdir, error_r) < 0) {
		saved_errno = errno;
		(void)renameat2(AT_FDCWD, dst, AT_FDCWD, src,
		    RENAME_NOREPLACE);
		errno = saved_errno;
		return -1;
	}
	return 0;
#else
	(void)src;
	(void)dstdir;
	(void)do_fsync;
	*error_r = maildir_syserr("link to", dst);
	return -1;
#endif
}

static bool
maildir_link_unsupported(int err)
{
	return err == EPERM || err == ENOSYS || err == EOPNOTSUPP ||
	    err == ENOTSUP;
}

/* maildir_move: src to dst without ever replacing dst, durable in dstdir
 * when do_fsync; on failure src is still there and dst is not. As qmail
 * does: link, (fsync,) unlink. */
static int
maildir_move(const char *src, const char *dst, const char *dstdir,
    bool do_fsync, const char **error_r)
{
	int saved_errno;

	if (link(src, dst) < 0) {
		if (maildir_link_unsupported(errno))
			return maildir_move_fallback(src, dst, dstdir,
			    do_fsync, error_r);
		*error_r = maildir_syserr("link to", dst);
		return -1;
	}
	if (do_fsync && maildir_fsync_dir(dstdir, error_r) < 0) {
		saved_errno = errno;
		unlink(dst);
		errno = saved_errno;
		return -1;
	}
	/* The message is safe under its new name; a stale tmp link is
	 * only untidy (and tmp/ cleaning removes it). */
	if (unlink(src) < 0)
		log_warning("maildir: unlink %s: %s", src, strerror(errno));
	return 0;
}

static bool
maildir_plain_name(const char *name)
{
	return name[0] != '\0' && name[0] != '.' && strchr(name, '/') == NULL;
}

int
maildir_tmp_to_new(const char *dir, const char *tmpname, uint32_t uid,
    bool do_fsync, char **final_r, const char **error_r)
{
	char *src, *dst, *newdir, *final;
	int r;

	*final_r = NULL;
	if (!maildir_plain_name(tmpname)) {
		errno = EINVAL;
		*error_r = maildir_err("bad tmp file name \"%s\"", tmpname);
		return -1;
	}
	final = xasprintf("new/%s,U=%u", tmpname, uid);
	src = xasprintf("%s/tmp/%s", dir, tmpname);
	dst = xasprintf("%s/%s", dir, final);
	newdir = xasprintf("%s/new", dir);
	r = maildir_move(src, dst, newdir, do_fsync, error_r);
	free(src);
	free(dst);
	free(newdir);
	if (r < 0)
		free(final);
	else
		*final_r = final;
	return r;
}

/*
 * File names.
 */

/* maildir_field_find: the first ",K=digits" field of base (len bytes);
 * sets *val_r and *end_r (offset after the digits). */
static bool
maildir_field_find(const char *base, size_t len, char key, size_t *val_r,
    size_t *end_r)
{
	size_t i, j;

	for (i = 0; i + 3 <= len; i++) {
		if (base[i] != ',' || base[i + 1] != key || base[i + 2] != '=')
			continue;
		for (j = i + 3; j < len && base[j] >= '0' && base[j] <= '9';
		    j++)
			;
		if (j > i + 3 && (j == len || base[j] == ',')) {
			*val_r = i + 3;
			*end_r = j;
			return true;
		}
	}
	return false;
}

/* maildir_field_u64: the value of field key, if present and <= max. */
static bool
maildir_field_u64(const char *base, size_t len, char key, uint64_t max,
    uint64_t *val_r)
{
	size_t i, end;
	uint64_t v = 0;
	unsigned d;

	if (!maildir_field_find(base, len, key, &i, &end))
		return false;
	for (; i < end; i++) {
		d = (unsigned)(base[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*val_r = v;
	return true;
}

static uint32_t
maildir_info_flags(const char *info)
{
	const char *l;
	uint32_t flags = 0;

	for (; *info != '\0'; info++)
		if ((l = strchr(maildir_flag_letters, *info)) != NULL)
			flags |= maildir_flag_bits[l - maildir_flag_letters];
	return flags;
}

/* maildir_info_letters: the keyword letters a-z of info, as bits. */
static uint32_t
maildir_info_letters(const char *info)
{
	uint32_t letters = 0;

	for (; *info != '\0'; info++)
		if (*info >= 'a' && *info <= 'z')
			letters |= 1u << (*info - 'a');
	return letters;
}

int
maildir_name_parse(const char *name, struct maildir_name *mn_r)
{
	const char *colon;
	uint64_t v;

	memset(mn_r, 0, sizeof(*mn_r));
	if (name[0] == '\0' || name[0] == '.')
		return -1;
	colon = strchr(name, ':');
	mn_r->base_len = colon != NULL ? (size_t)(colon - name) : strlen(name);
	if (colon != NULL && colon[1] == '2' && colon[2] == ',') {
		mn_r->info = colon + 3;
		mn_r->flags = maildir_info_flags(mn_r->info);
		mn_r->kw_letters = maildir_info_letters(mn_r->info);
	}
	if (maildir_field_u64(name, mn_r->base_len, 'S', UINT64_MAX, &v)) {
		mn_r->size = v;
		mn_r->has_size = true;
	}
	if (maildir_field_u64(name, mn_r->base_len, 'U', UINT32_MAX, &v))
		mn_r->uid = (uint32_t)v;
	return 0;
}

static bool
maildir_is_letter(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

void
maildir_flags_to_info(uint32_t flags, const char *keep_letters, char *out,
    size_t outsize)
{
	bool on[128] = { false };
	size_t i, o = 2;
	unsigned char c;

	for (i = 0; i < MAILDIR_NFLAGS; i++)
		if ((flags & maildir_flag_bits[i]) != 0)
			on[(unsigned char)maildir_flag_letters[i]] = true;
	for (; keep_letters != NULL && *keep_letters != '\0'; keep_letters++) {
		c = (unsigned char)*keep_letters;
		if (maildir_is_letter(c) &&
		    strchr(maildir_flag_letters, c) == NULL)
			on[c] = true;
	}
	if (outsize < 3)
		log_panic("maildir_flags_to_info: outsize %zu", outsize);
	out[0] = '2';
	out[1] = ',';
	for (c = 'A'; c <= 'z'; c++) {
		if (!on[c])
			continue;
		if (o + 1 >= outsize)
			log_panic("maildir_flags_to_info: outsize %zu too "
			    "small", outsize);
		out[o++] = (char)c;
	}
	out[o] = '\0';
}

/* maildir_uid_name: name (base + optional ":2,..." tail) with its ",U="
 * set to uid; the caller frees. */
static char *
maildir_uid_name(const char *name, uint32_t uid)
{
	struct maildir_name mn;
	size_t val, end;

	(void)maildir_name_parse(name, &mn);
	if (maildir_field_find(name, mn.base_len, 'U', &val, &end))
		return xasprintf("%.*s%u%s", (int)val, name, uid, name + end);
	return xasprintf("%.*s,U=%u%s", (int)mn.base_len, name, uid,
	    name + mn.base_len);
}

int
maildir_rename_uid(const char *dir, const char *location, uint32_t uid,
    bool do_fsync, char **final_r, const char **error_r)
{
	char *name, *final, *src, *dst, *subdir;
	int r;

	*final_r = NULL;
	if ((strncmp(location, "new/", 4) != 0 &&
	    strncmp(location, "cur/", 4) != 0) ||
	    !maildir_plain_name(location + 4)) {
		errno = EINVAL;
		*error_r = maildir_err("bad message location \"%s\"",
		    location);
		return -1;
	}
	name = maildir_uid_name(location + 4, uid);
	final = xasprintf("%.4s%s", location, name);
	free(name);
	if (strcmp(final, location) == 0) {
		*final_r = final;
		return 0;
	}
	src = xasprintf("%s/%s", dir, location);
	dst = xasprintf("%s/%s", dir, final);
	subdir = xasprintf("%s/%.3s", dir, location);
	r = maildir_move(src, dst, subdir, do_fsync, error_r);
	free(src);
	free(dst);
	free(subdir);
	if (r < 0)
		free(final);
	else
		*final_r = final;
	return r;
}

/*
 * Listing.
 */

/* maildir_dirent_type: S_IFREG, S_IFDIR, ... of an entry, from d_type
 * where the file system gives it; follow: for symlinks, the target's. */
static mode_t
maildir_dirent_type(DIR *d, const struct dirent *de, bool follow)
{
	struct stat st;

	switch (de->d_type) {
	case DT_REG:
		return S_IFREG;
	case DT_DIR:
		return S_IFDIR;
	case DT_LNK:
		if (!follow)
			return S_IFLNK;
		break;
	case DT_UNKNOWN:
		break;
	default:
		return 0;
	}
	/* Vanished since readdir (moved to cur/ by another process): skip. */
	if (fstatat(dirfd(d), de->d_name, &st,
	    follow ? 0 : AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return st.st_mode & S_IFMT;
}

static bool
maildir_want_msg(DIR *d, const struct dirent *de)
{
	return de->d_name[0] != '.' &&
	    maildir_dirent_type(d, de, false) == S_IFREG;
}

static bool
maildir_want_folder(DIR *d, const struct dirent *de)
{
	return de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 &&
	    strcmp(de->d_name, "..") != 0 &&
	    maildir_dirent_type(d, de, true) == S_IFDIR;
}

/* maildir_each: fn for each entry of path that want accepts, until fn
 * returns non-zero. Returns 0 (done, or fn said stop with 1) or -1. */
static int
maildir_each(const char *path, bool (*want)(DIR *, const struct dirent *),
    int (*fn)(const struct dirent *de, void *ctx), void *ctx,
    const char **error_r)
{
	struct dirent *de = NULL;
	DIR *d;
	int r = 0;

	if ((d = opendir(path)) == NULL) {
		*error_r = maildir_syserr("opendir", path);
		return -1;
	}
	while (r == 0) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (want(d, de))
			r = fn(de, ctx);
	}
	if (de == NULL && errno != 0) {
		*error_r = maildir_syserr("readdir", path);
		r = -1;
	} else if (r < 0)
		*error_r = maildir_err("scan of %s stopped by callback", path);
	closedir(d);
	return r < 0 ? -1 : r;
}

struct maildir_scan_ctx {
	const char *sub;
	int (*cb)(const char *sub, const char *name, void *ctx);
	void *ctx;
};

static int
maildir_scan_one(const struct dirent *de, void *ctx)
{
	struct maildir_scan_ctx *s = ctx;

	return s->cb(s->sub, de->d_name, s->ctx);
}

static int
maildir_scan_subs(const char *dir, const char *const *subs, size_t nsubs,
    int (*cb)(const char *sub, const char *name, void *ctx), void *ctx,
    const char **error_r)
{
	struct maildir_scan_ctx s;
	char *path;
	size_t i;
	int r = 0;

	s.cb = cb;
	s.ctx = ctx;
	for (i = 0; i < nsubs && r == 0; i++) {
		s.sub = subs[i];
		path = xasprintf("%s/%s", dir, subs[i]);
		r = maildir_each(path, maildir_want_msg, maildir_scan_one, &s,
		    error_r);
		free(path);
	}
	return r < 0 ? -1 : 0;
}

int
maildir_scan(const char *dir,
    int (*cb)(const char *sub, const char *name, void *ctx), void *ctx,
    const char **error_r)
{
	static const char *const subs[] = { "new", "cur" };

	return maildir_scan_subs(dir, subs, 2, cb, ctx, error_r);
}

int
maildir_scan_new(const char *dir,
    int (*cb)(const char *sub, const char *name, void *ctx), void *ctx,
    const char **error_r)
{
	static const char *const subs[] = { "new" };

	return maildir_scan_subs(dir, subs, 1, cb, ctx, error_r);
}

struct maildir_list_ctx {
	int (*cb)(const char *folder, void *ctx);
	void *ctx;
};

static int
maildir_list_one(const struct dirent *de, void *ctx)
{
	struct maildir_list_ctx *l = ctx;
	char folder[4 * MAILDIR_DIRENT_MAX + 1];

	if (maildir_folder_name(de->d_name, folder, sizeof(folder)) < 0)
		return 0;
	return l->cb(folder, l->ctx);
}

int
maildir_list_folders(const char *root,
    int (*cb)(const char *folder, void *ctx), void *ctx,
    const char **error_r)
{
	struct maildir_list_ctx l;

	l.cb = cb;
	l.ctx = ctx;
	return maildir_each(root, maildir_want_folder, maildir_list_one, &l,
	    error_r) < 0 ? -1 : 0;
}
