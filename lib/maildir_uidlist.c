/*
 * maildir_uidlist.c: the folder's file "loft-uidlist", which remembers the
 * UIDs given to message files whose names do not carry one (files that
 * another program delivered and loft adopted without renaming them).
 *
 * Lines are "UID BASE\n", appended as files are adopted; where a base name
 * appears more than once the last line wins. The index is what normally
 * maps a file to its UID (its locs table); this file only serves a rebuild
 * of the index from storage alone, so that it keeps those UIDs too. Lines
 * of files since deleted are harmless and go when the file is rewritten.
 *
 * Trusts nothing in the file: a line that does not parse is skipped, and
 * a base name is only ever compared with names read from the directory.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "fsutil.h"
#include "maildir.h"
#include "xmalloc.h"

#define UIDLIST_NAME	"loft-uidlist"
#define UIDLIST_TMP	"loft-uidlist.tmp"

void
maildir_uidlist_add(struct buf *b, uint32_t uid, const char *base,
    size_t base_len)
{
	char num[16];
	size_t n = sizeof(num);

	/* A name with a line end could not be read back as one line. */
	if (memchr(base, '\n', base_len) != NULL)
		return;
	/* By hand: a first sync writes a line for each of 100,000 files,
	 * and buf_printf cost more than the rest of the line. */
	num[--n] = ' ';
	do {
		num[--n] = (char)('0' + uid % 10);
		uid /= 10;
	} while (uid != 0);
	buf_append(b, num + n, sizeof(num) - n);
	buf_append(b, base, base_len);
	buf_append(b, "\n", 1);
}

/* dir/name into path; -1 (ENAMETOOLONG) if it does not fit. */
static int
uidlist_path(char path[PATH_MAX], const char *dir, const char *name)
{
	if ((size_t)snprintf(path, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Open path with extra open flags, write all of b, fsync if asked. */
static int
uidlist_write(const char *path, int oflags, const struct buf *b,
    bool do_fsync)
{
	size_t off = 0;
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | oflags,
	    0600);
	if (fd < 0)
		return -1;
	while (ret == 0 && off < b->len) {
		ssize_t n = write(fd, b->data + off, b->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ret = -1;
		else
			off += (size_t)n;
	}
	if (ret == 0 && do_fsync)
		ret = fsync(fd);
	if (close(fd) < 0)
		ret = -1;
	return ret;
}

int
maildir_uidlist_append(const char *dir, const struct buf *b, bool do_fsync)
{
	char path[PATH_MAX];

	if (b->len == 0)
		return 0;
	if (uidlist_path(path, dir, UIDLIST_NAME) < 0)
		return -1;
	return uidlist_write(path, O_APPEND, b, do_fsync);
}

int
maildir_uidlist_replace(const char *dir, const struct buf *b, bool do_fsync)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int ret;

	if (uidlist_path(tmp, dir, UIDLIST_TMP) < 0 ||
	    uidlist_path(path, dir, UIDLIST_NAME) < 0)
		return -1;
	ret = uidlist_write(tmp, O_TRUNC, b, do_fsync);
	if (ret == 0)
		ret = rename(tmp, path);
	if (ret < 0)
		(void)unlink(tmp);
	else if (do_fsync)
		ret = fsutil_fsync_dir(dir);
	return ret;
}

int64_t
maildir_uidlist_size(const char *dir)
{
	char path[PATH_MAX];
	struct stat sb;

	if (uidlist_path(path, dir, UIDLIST_NAME) < 0 || stat(path, &sb) < 0)
		return 0;
	return (int64_t)sb.st_size;
}

/* One line "UID BASE": 0 and the fields, or -1 if it does not parse. */
static int
uidlist_line(const char *p, size_t len, uint32_t *uid_r, const char **base_r,
    size_t *base_len_r)
{
	uint64_t uid = 0;
	size_t i = 0;

	while (i < len && p[i] >= '0' && p[i] <= '9' && uid <= UINT32_MAX)
		uid = uid * 10 + (uint64_t)(p[i++] - '0');
	if (i == 0 || uid == 0 || uid > UINT32_MAX || i >= len || p[i] != ' ')
		return -1;
	i++;
	if (i == len || memchr(p + i, '/', len - i) != NULL ||
	    memchr(p + i, '\0', len - i) != NULL)
		return -1;
	*uid_r = (uint32_t)uid;
	*base_r = p + i;
	*base_len_r = len - i;
	return 0;
}

int
maildir_uidlist_read(const char *dir,
    void (*cb)(uint32_t uid, const char *base, size_t base_len, void *ctx),
    void *ctx)
{
	char path[PATH_MAX];
	struct fsutil_map map;
	const char *p, *end;

	if (uidlist_path(path, dir, UIDLIST_NAME) < 0)
		return -1;
	if (fsutil_map_path(path, &map) < 0)
		return errno == ENOENT ? 0 : -1;
	p = (const char *)map.data;
	end = p + map.len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *base;
		size_t base_len;
		uint32_t uid;

		if (nl == NULL)
			break;	/* a line cut short by a crash */
		if (uidlist_line(p, (size_t)(nl - p), &uid, &base,
		    &base_len) == 0)
			cb(uid, base, base_len, ctx);
		p = nl + 1;
	}
	fsutil_unmap(&map);
	return 0;
}
