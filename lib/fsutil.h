/*
 * fsutil.h: small file system helpers shared by the storage modules.
 */
#ifndef LOFT_FSUTIL_H
#define LOFT_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* fsutil_mkdir_p: create path and missing parents with mode; 0 or -1
 * (errno set). An existing directory is success. */
int fsutil_mkdir_p(const char *path, mode_t mode);
/* fsutil_fsync_dir: fsync the directory path (after a rename or link into
 * it, so the new name survives a crash). 0 or -1 (errno set). */
int fsutil_fsync_dir(const char *path);
/* fsutil_fsync_parent: fsync the directory that holds path. */
int fsutil_fsync_parent(const char *path);

/* A read-only view of a whole file. Empty files have data == NULL. */
struct fsutil_map {
	const unsigned char *data;
	size_t len;
	void *addr;		/* for munmap; NULL if nothing mapped */
};
/* fsutil_map_fd / fsutil_map_path: map a regular file read-only.
 * 0, or -1 with errno set. Unmap with fsutil_unmap. */
int fsutil_map_fd(int fd, struct fsutil_map *m);
int fsutil_map_path(const char *path, struct fsutil_map *m);
void fsutil_unmap(struct fsutil_map *m);
/* fsutil_open_read_noatime: open path read-only (plus flags) without
 * updating its access time where the kernel allows it (O_NOATIME needs
 * the file's owner: else it opens as usual). For Maildir files, whose
 * atime nothing reads, and whose first read would otherwise dirty an
 * inode per message. The fd, or -1 with errno. */
int fsutil_open_read_noatime(const char *path, int flags);
/* fsutil_is_disk_full: errno values that mean "no space" (ENOSPC, EDQUOT,
 * EFBIG), which loft reports as a temporary failure. */
bool fsutil_is_disk_full(int err);
/* fsutil_remove_tree: remove a directory and everything under it (no
 * symlinks followed). 0 or -1. */
int fsutil_remove_tree(const char *path);

#endif
