#!/usr/bin/env python3
"""rss.py: the memory a daemon uses, summed over all its processes.

  rss.py PID        prints "PROCS RSS_KIB PSS_KIB PSS_ANON_KIB PSS_FILE_KIB"
                    for PID and every process below it

A daemon such as loftd or Dovecot is a tree of processes (master, auth,
login, one per session), so its memory is the sum over the tree.  Two sums:

  RSS  VmRSS from /proc/PID/status: every resident page of each process,
       so pages that several processes share (the binary, libc, what a
       fork left shared) count once per process: too high for a tree.
  PSS  Pss from /proc/PID/smaps_rollup: each page divided by the number of
       processes that map it, so the sum over a tree counts a page shared
       inside the tree once (pages shared with processes outside it count
       only in part).  This is the number to compare.  It splits into
       Pss_Anon (heap, stacks, copy-on-write pages: the process's own
       memory) and Pss_File (mapped files: the binary, libraries, and
       the LMDB index, which is page cache that the kernel can drop).

Neither includes kernel memory (socket buffers, page tables, the kernel
stack of each process); the process count is printed so that a reader can
add about 16-20 KiB per process for the latter two.  Reading another
user's smaps_rollup needs root (or the same uid).  Processes may exit
while they are read: those are skipped.  Input trusted: /proc.
"""

import os
import sys


def children_map():
	"""{ppid: [pid, ...]} for every process now running."""
	kids = {}
	for name in os.listdir("/proc"):
		if not name.isdigit():
			continue
		try:
			with open("/proc/%s/stat" % name, "rb") as f:
				stat = f.read()
		except OSError:
			continue
		# The command name (field 2) may hold spaces and parentheses;
		# the fields after the last ")" are fixed.
		rest = stat[stat.rfind(b")") + 2:].split()
		kids.setdefault(int(rest[1]), []).append(int(name))
	return kids


def tree(pid):
	"""pid and all its descendants."""
	kids = children_map()
	out, stack = [], [pid]
	while stack:
		p = stack.pop()
		out.append(p)
		stack.extend(kids.get(p, ()))
	return out


def fields_kib(path, names):
	"""The values in kB of the lines "name: N kB" of a /proc file, in the
	order of names (0 for a missing line)."""
	found = {}
	with open(path, "rb") as f:
		for line in f:
			name, sep, rest = line.partition(b":")
			if sep and name in names:
				found[name] = int(rest.split()[0])
	return [found.get(n, 0) for n in names]


ROLLUP = (b"Pss", b"Pss_Anon", b"Pss_File")


def usage(pid):
	"""(processes, RSS, PSS, PSS anonymous, PSS of files), in KiB, summed
	over the tree of pid."""
	total = [0, 0, 0, 0, 0]
	for p in tree(pid):
		try:
			r = fields_kib("/proc/%d/status" % p, (b"VmRSS",))
			s = fields_kib("/proc/%d/smaps_rollup" % p, ROLLUP)
		except (FileNotFoundError, ProcessLookupError):
			continue
		for k, v in enumerate([1] + r + s):
			total[k] += v
	return tuple(total)


def main():
	if len(sys.argv) != 2 or not sys.argv[1].isdigit():
		sys.stderr.write(__doc__)
		return 64
	pid = int(sys.argv[1])
	if not os.path.exists("/proc/%d" % pid):
		sys.stderr.write("rss.py: no process %d\n" % pid)
		return 1
	print("%d %d %d %d %d" % usage(pid))
	return 0


if __name__ == "__main__":
	sys.exit(main())
