/*
 * fsutil.c: directory creation, directory fsync, read-only file maps.
 * Paths come from the configuration and from loft itself, never from the
 * network.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compat/compat.h"
#include "fsutil.h"

int
fsutil_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	struct stat st;
	char *p;

	if (strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (stat(tmp, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		return -1;
	}
	for (p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
fsutil_fsync_dir(const char *path)
{
	int fd, ret;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

int
fsutil_fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (strlcpy(dir, path, sizeof(dir)) >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return fsutil_fsync_dir(".");
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return fsutil_fsync_dir(dir);
}

int
fsutil_map_fd(int fd, struct fsutil_map *m)
{
	struct stat st;
	void *p;

	m->data = NULL;
	m->len = 0;
	m->addr = NULL;
	if (fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		return -1;
	}
	if (st.st_size == 0)
		return 0;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	m->addr = p;
	m->data = p;
	m->len = (size_t)st.st_size;
	return 0;
}

int
fsutil_map_path(const char *path, struct fsutil_map *m)
{
	int fd, ret, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	ret = fsutil_map_fd(fd, m);
	saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

void
fsutil_unmap(struct fsutil_map *m)
{
	if (m->addr != NULL)
		munmap(m->addr, m->len);
	m->addr = NULL;
	m->data = NULL;
	m->len = 0;
}

int
fsutil_open_read_noatime(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME | flags);

	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	return fd;
}

bool
fsutil_is_disk_full(int err)
{
	return err == ENOSPC || err == EDQUOT || err == EFBIG;
}

int
fsutil_remove_tree(const char *path)
{
	DIR *d;
	struct dirent *de;
	char sub[PATH_MAX];
	struct stat st;
	int ret = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path,
		    de->d_name) >= sizeof(sub)) {
			ret = -1;
			continue;
		}
		if (fsutil_remove_tree(sub) < 0)
			ret = -1;
	}
	closedir(d);
	if (rmdir(path) < 0)
		ret = -1;
	return ret;
}
