/*
 * imap_seqset.h: IMAP sequence sets (RFC 9051 sequence-set, "$" of RFC
 * 5182 SEARCHRES) as a compact list of ranges: ascending, disjoint and
 * never adjacent, so "1:3,7,4:5" is held as 1:5,7 and "1:4294967295" is
 * one range. Parsing resolves "*" against the largest number in use;
 * formatting writes the shortest form back (UIDPLUS, ESEARCH answers).
 */
#ifndef LOFT_IMAP_SEQSET_H
#define LOFT_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Most ranges a set holds, and most elements a parsed text may have
 * before they are merged. */
#define IMAP_SEQSET_RANGES_MAX	100000

struct imap_seq_range {
	uint32_t lo, hi;		/* lo <= hi, both >= 1 */
};

struct imap_seqset {
	struct imap_seq_range *ranges;	/* owned; count of them */
	unsigned count, cap;
	bool searchres;			/* "$" was given (RFC 5182): the
					   engine adds the saved result */
};

struct imap_seqset_iter {
	const struct imap_seqset *set;
	unsigned i;			/* range of the next number */
	uint32_t next;
};

/* imap_seqset_init: an empty set. imap_seqset_deinit frees it (and
 * leaves it empty, ready for reuse). imap_seqset_clear empties it. */
void imap_seqset_init(struct imap_seqset *set);
void imap_seqset_deinit(struct imap_seqset *set);
void imap_seqset_clear(struct imap_seqset *set);

/*
 * imap_seqset_parse: replace set with text, e.g. "1:3,7,9:*" or "$".
 * Numbers are nz-number (1 .. 4294967295, no leading zero) or "*", which
 * stands for max (the number of messages, or the highest UID). "a:b" is
 * the same as "b:a". A range with "*" ends at max, and its other end is
 * taken as at most max ("n:*" with n > max means max:max, RFC 9051
 * 6.4.8); with max 0 (an empty mailbox) such a range is empty. Numbers
 * without "*" are kept as given, even above max: the engine decides
 * (BAD for message numbers, ignored UIDs: imap_seqset_truncate). "$"
 * sets set->searchres. Returns 0, or -1 with *error_r (static text for a
 * BAD reply) and set empty: bad syntax or more than
 * IMAP_SEQSET_RANGES_MAX elements.
 */
int imap_seqset_parse(struct imap_seqset *set, const char *text,
    uint32_t max, const char **error_r);
/* imap_seqset_add: add lo:hi (either order; 0 is refused). Returns 0, or
 * -1 with *error_r if the set would pass IMAP_SEQSET_RANGES_MAX ranges
 * (set unchanged). O(1) when added in ascending order. */
int imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi,
    const char **error_r);
/* imap_seqset_truncate: drop the numbers above max. */
void imap_seqset_truncate(struct imap_seqset *set, uint32_t max);

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);
/* imap_seqset_count: how many numbers (up to 4294967295). */
uint64_t imap_seqset_count(const struct imap_seqset *set);
/* imap_seqset_last: the highest number, 0 if empty. */
uint32_t imap_seqset_last(const struct imap_seqset *set);

/* Iteration in ascending order; the set must not change meanwhile. */
void imap_seqset_iter_init(struct imap_seqset_iter *it,
    const struct imap_seqset *set);
bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *num_r);

/* imap_seqset_format: append the set as text ("1:5,7"; nothing for an
 * empty set) to out. 0, or -1 if out's maximum would be passed (out is
 * then as before). */
int imap_seqset_format(const struct imap_seqset *set, struct buf *out);
/* imap_seqset_format_nums: append count numbers as a set, runs of
 * consecutive ascending numbers as ranges ("3:5,9,11:12"), in the order
 * given (so two lists of the same length stay in step, as COPYUID
 * needs). 0, or -1 as for imap_seqset_format. */
int imap_seqset_format_nums(const uint32_t *nums, size_t count,
    struct buf *out);

#endif
