/*
 * imap_seqset.c: sequence sets as sorted range lists: parsing (collect
 * the elements, sort, merge), insertion that keeps the list merged,
 * lookup by binary search, iteration, and formatting.
 * Trusts nothing in the text it parses (every number is range-checked,
 * the element count is bounded); trusts its callers' sets and buffers.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"
#include "imap_seqset.h"

/* The "*" marker while parsing: not a valid number. */
#define IMAP_SEQSET_STAR	0

void
imap_seqset_init(struct imap_seqset *set)
{
	memset(set, 0, sizeof(*set));
}

void
imap_seqset_deinit(struct imap_seqset *set)
{
	free(set->ranges);
	imap_seqset_init(set);
}

void
imap_seqset_clear(struct imap_seqset *set)
{
	set->count = 0;
	set->searchres = false;
}

static void
imap_seqset_grow(struct imap_seqset *set)
{
	if (set->count < set->cap)
		return;
	set->cap = set->cap == 0 ? 16 : set->cap * 2;
	if (set->cap > IMAP_SEQSET_RANGES_MAX)
		set->cap = IMAP_SEQSET_RANGES_MAX;
	set->ranges = xreallocarray(set->ranges, set->cap,
	    sizeof(*set->ranges));
}

/* Parsing. */

/* imap_seqset_number: an nz-number or "*" at *sp; -1 if neither. */
static int
imap_seqset_number(const char **sp, uint32_t *num_r)
{
	const char *s = *sp;
	uint64_t n = 0;

	if (*s == '*') {
		*num_r = IMAP_SEQSET_STAR;
		*sp = s + 1;
		return 0;
	}
	if (*s < '1' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		n = n * 10 + (uint64_t)(*s++ - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	*num_r = (uint32_t)n;
	*sp = s;
	return 0;
}

/* imap_seqset_resolve: a:b with "*" as max, per imap_seqset_parse; 0 if
 * the range is empty. */
static int
imap_seqset_resolve(uint32_t a, uint32_t b, uint32_t max,
    struct imap_seq_range *r)
{
	uint32_t t;

	if (a == IMAP_SEQSET_STAR || b == IMAP_SEQSET_STAR) {
		if (max == 0)
			return 0;
		if (a == IMAP_SEQSET_STAR)
			a = b;		/* "*:n" is "n:*" */
		if (a == IMAP_SEQSET_STAR || a > max)
			a = max;
		b = max;
	}
	if (a > b) {
		t = a;
		a = b;
		b = t;
	}
	r->lo = a;
	r->hi = b;
	return 1;
}

static int
imap_seqset_cmp(const void *x, const void *y)
{
	const struct imap_seq_range *a = x, *b = y;

	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	return 0;
}

/* imap_seqset_normalize: sort and merge overlapping or adjacent ranges. */
static void
imap_seqset_normalize(struct imap_seqset *set)
{
	struct imap_seq_range *r = set->ranges;
	unsigned i, n = 0;

	if (set->count == 0)
		return;
	qsort(r, set->count, sizeof(*r), imap_seqset_cmp);
	for (i = 1; i < set->count; i++) {
		if ((uint64_t)r[i].lo <= (uint64_t)r[n].hi + 1) {
			if (r[i].hi > r[n].hi)
				r[n].hi = r[i].hi;
		} else
			r[++n] = r[i];
	}
	set->count = n + 1;
}

/* imap_seqset_element: one element at *sp into set (unsorted). */
static int
imap_seqset_element(struct imap_seqset *set, const char **sp, uint32_t max,
    const char **error_r)
{
	struct imap_seq_range r;
	uint32_t a, b;

	if (**sp == '$') {
		set->searchres = true;
		(*sp)++;
		return 0;
	}
	if (imap_seqset_number(sp, &a) < 0) {
		*error_r = "Invalid sequence set";
		return -1;
	}
	b = a;
	if (**sp == ':') {
		(*sp)++;
		if (imap_seqset_number(sp, &b) < 0) {
			*error_r = "Invalid sequence set";
			return -1;
		}
	}
	if (imap_seqset_resolve(a, b, max, &r) == 0)
		return 0;
	imap_seqset_grow(set);
	set->ranges[set->count++] = r;
	return 0;
}

int
imap_seqset_parse(struct imap_seqset *set, const char *text, uint32_t max,
    const char **error_r)
{
	const char *s = text;
	unsigned elements = 0;

	imap_seqset_clear(set);
	for (;;) {
		if (++elements > IMAP_SEQSET_RANGES_MAX) {
			*error_r = "Too many ranges in sequence set";
			break;
		}
		if (imap_seqset_element(set, &s, max, error_r) < 0)
			break;
		if (*s == '\0') {
			imap_seqset_normalize(set);
			return 0;
		}
		if (*s++ != ',') {
			*error_r = "Invalid sequence set";
			break;
		}
	}
	imap_seqset_clear(set);
	return -1;
}

/* Building and looking up. */

/* imap_seqset_find: the first range whose hi + 1 >= n (count if none). */
static unsigned
imap_seqset_find(const struct imap_seqset *set, uint64_t n)
{
	unsigned lo = 0, hi = set->count, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((uint64_t)set->ranges[mid].hi + 1 < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int
imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi,
    const char **error_r)
{
	struct imap_seq_range *r;
	unsigned i, j;
	uint32_t t;

	if (lo > hi) {
		t = lo;
		lo = hi;
		hi = t;
	}
	if (lo == 0) {
		*error_r = "Invalid number 0 in sequence set";
		return -1;
	}
	i = imap_seqset_find(set, lo);
	/* Ranges i .. j - 1 touch lo:hi and merge with it. */
	for (j = i; j < set->count &&
	    (uint64_t)set->ranges[j].lo <= (uint64_t)hi + 1; j++)
		;
	if (i == j) {
		if (set->count >= IMAP_SEQSET_RANGES_MAX) {
			*error_r = "Too many ranges in sequence set";
			return -1;
		}
		imap_seqset_grow(set);
		r = set->ranges;
		memmove(r + i + 1, r + i, (set->count - i) * sizeof(*r));
		r[i].lo = lo;
		r[i].hi = hi;
		set->count++;
		return 0;
	}
	r = set->ranges;
	r[i].lo = r[i].lo < lo ? r[i].lo : lo;
	r[i].hi = r[j - 1].hi > hi ? r[j - 1].hi : hi;
	memmove(r + i + 1, r + j, (set->count - j) * sizeof(*r));
	set->count -= j - i - 1;
	return 0;
}

void
imap_seqset_truncate(struct imap_seqset *set, uint32_t max)
{
	while (set->count > 0 && set->ranges[set->count - 1].lo > max)
		set->count--;
	if (set->count > 0 && set->ranges[set->count - 1].hi > max)
		set->ranges[set->count - 1].hi = max;
}

bool
imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	unsigned i;

	if (n == 0)
		return false;
	i = imap_seqset_find(set, (uint64_t)n + 1);
	return i < set->count && set->ranges[i].lo <= n &&
	    n <= set->ranges[i].hi;
}

uint64_t
imap_seqset_count(const struct imap_seqset *set)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < set->count; i++)
		n += (uint64_t)set->ranges[i].hi - set->ranges[i].lo + 1;
	return n;
}

uint32_t
imap_seqset_last(const struct imap_seqset *set)
{
	return set->count == 0 ? 0 : set->ranges[set->count - 1].hi;
}

void
imap_seqset_iter_init(struct imap_seqset_iter *it,
    const struct imap_seqset *set)
{
	it->set = set;
	it->i = 0;
	it->next = set->count > 0 ? set->ranges[0].lo : 0;
}

bool
imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *num_r)
{
	const struct imap_seqset *set = it->set;

	if (it->i >= set->count)
		return false;
	*num_r = it->next;
	/* Never step past hi: it may be 4294967295. */
	if (it->next == set->ranges[it->i].hi) {
		if (++it->i < set->count)
			it->next = set->ranges[it->i].lo;
	} else
		it->next++;
	return true;
}

/* Formatting. */

static int
imap_seqset_put(struct buf *out, bool first, uint32_t lo, uint32_t hi)
{
	if (lo == hi)
		return buf_printf(out, "%s%u", first ? "" : ",", lo);
	return buf_printf(out, "%s%u:%u", first ? "" : ",", lo, hi);
}

int
imap_seqset_format(const struct imap_seqset *set, struct buf *out)
{
	size_t start = out->len;
	unsigned i;

	for (i = 0; i < set->count; i++) {
		if (imap_seqset_put(out, i == 0, set->ranges[i].lo,
		    set->ranges[i].hi) < 0) {
			buf_truncate(out, start);
			return -1;
		}
	}
	return 0;
}

int
imap_seqset_format_nums(const uint32_t *nums, size_t count, struct buf *out)
{
	size_t start = out->len, i, run;

	for (i = 0; i < count; i = run) {
		for (run = i + 1; run < count &&
		    (uint64_t)nums[run] == (uint64_t)nums[run - 1] + 1; run++)
			;
		if (imap_seqset_put(out, i == 0, nums[i], nums[run - 1]) < 0) {
			buf_truncate(out, start);
			return -1;
		}
	}
	return 0;
}
