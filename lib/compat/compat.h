/*
 * compat.h: functions some libcs lack (strlcpy, strlcat), declared here and
 * built from lib/compat/ only where configure found them missing.
 */
#ifndef LOFT_COMPAT_H
#define LOFT_COMPAT_H

#include <stddef.h>

#ifndef HAVE_STRLCPY
size_t strlcpy(char *dst, const char *src, size_t size);
#endif
#ifndef HAVE_STRLCAT
size_t strlcat(char *dst, const char *src, size_t size);
#endif

#endif
