#!/usr/bin/env python3
"""mailcount.py: count the messages a benchmark run left on disk.

  mailcount.py maildir DIR   files in DIR/new and DIR/cur
  mailcount.py mbox FILE     "From " separator lines in FILE
  mailcount.py dir DIR       msg-*.eml files in a corpus directory

Prints "COUNT BYTES": the number of messages and the bytes they take (for
mbox, the file size).  A benchmark of a run that lost mail is worthless, so
the harness compares COUNT with what it delivered.  The input is whatever
the MDA under test wrote; nothing in it is trusted beyond being bytes.
"""

import mmap
import os
import re
import sys

# A separator is a line "From SENDER DAY MON DD HH:MM:SS ..." at the start of
# the file or after an empty line.  Requiring the asctime date keeps body
# lines such as "From what I recall" from counting, escaped or not; the
# corpus never puts a full date after a body "From ".
# The pattern starts with a literal so that re can scan for it quickly; the
# first line of the file is checked on its own.
FROM_LINE = (rb"From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} "
             rb"\d\d:\d\d:\d\d ")
MBOX_FROM = re.compile(rb"\n\n" + FROM_LINE)
MBOX_FIRST = re.compile(FROM_LINE)


def count_maildir(path):
	n = size = 0
	for sub in ("new", "cur"):
		d = os.path.join(path, sub)
		if not os.path.isdir(d):
			continue
		with os.scandir(d) as it:
			for e in it:
				if e.is_file() and not e.name.startswith("."):
					n += 1
					size += e.stat().st_size
	return n, size


def count_mbox(path):
	if not os.path.exists(path):
		return 0, 0
	size = os.path.getsize(path)
	if size == 0:
		return 0, 0
	with open(path, "rb") as f:
		with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
			n = sum(1 for _ in MBOX_FROM.finditer(m))
			if MBOX_FIRST.match(m):
				n += 1
	return n, size


def count_dir(path):
	n = size = 0
	with os.scandir(path) as it:
		for e in it:
			if e.name.startswith("msg-") and e.name.endswith(".eml"):
				n += 1
				size += e.stat().st_size
	return n, size


def main():
	if len(sys.argv) != 3 or sys.argv[1] not in ("maildir", "mbox", "dir"):
		sys.stderr.write(__doc__)
		return 64
	fn = {"maildir": count_maildir, "mbox": count_mbox,
	      "dir": count_dir}[sys.argv[1]]
	n, size = fn(sys.argv[2])
	print(n, size)
	return 0


if __name__ == "__main__":
	sys.exit(main())
