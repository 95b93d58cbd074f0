#!/usr/bin/env python3
"""corpus.py: make a deterministic corpus of mail for the benchmarks.

Message i is built from its own random generator seeded with "SEED:i", so the
same seed always gives the same bytes, and the corpus for N=100 is the first
100 messages of the corpus for N=2000.  Nothing here reads outside input: the
only inputs are the command line arguments.

Two profiles:

  mixed (default), for the delivery benchmark:
      70 %  plain text, 2-20 KB
      20 %  multipart/alternative (text + HTML), 4-30 KB
       5 %  multipart/mixed with a base64 attachment, 100 KB-1 MB
       5 %  short notifications, 0.5-2 KB
    independently: 30 % mailing-list mail (List-Id, List-Unsubscribe, ...),
    10 % have body lines starting with "From " (mbox escaping), 15 % an
    RFC 2047 encoded UTF-8 subject, 10 % an 8bit UTF-8 body.

  small, for the reindex benchmark: plain text 1-4 KB, 30 % list mail.

Three outputs:

  corpus.py [-n N] [-s SEED] [--profile P] --dir DIR
      DIR/msg-000001.eml ... one message per file, and DIR/MANIFEST
  corpus.py ... --maildir DIR [--new-percent P]
      writes the messages straight into DIR/cur (with Maildir names and
      flags, S=size) and P % of them into DIR/new, as a foreign MDA would
  corpus.py ... --mbox FILE
      one mbox file, "From " lines escaped mboxrd-style

Several outputs may be given at once; the messages are generated once.
Messages use LF line endings, as an MTA hands them to an MDA.

Planting, for the IMAP benchmark's SEARCH checks (off unless asked for;
without these options every message is byte for byte what it was before
they existed, and with them only the planted messages change):

  corpus.py ... --plant-every K --plant-word WORD --plant-from ADDR
      message i with i % K == 0 gets a paragraph holding WORD before the
      signature of its (first) text part; message i with
      i % K == K // 2 gets "From: Planted Sender <ADDR>"; see planted()

Every message's Message-ID starts with its number: "<i.", see number_of().
"""

import argparse
import base64
import os
import random
import re
import sys
import time

# A fixed start for the Date: headers, so that nothing depends on the clock.
EPOCH = 1704067200  # 2024-01-01 00:00:00 UTC
HOSTNAME = "benchhost"

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there been one all "
    "we their has would when if so no will more about up out can them what "
    "time some could into other only new these two may first then do any "
    "like my now over such our man me even most made after also did many "
    "before must through back years where much your way well down should "
    "because each just those people how too little state good very make "
    "world still own see men work long get here between both life being "
    "under never day same another know while last might us great old year "
    "off come since against go came right used take three server mailbox "
    "delivery message queue release patch build kernel config review merge "
    "branch deadline meeting agenda invoice quarterly report budget travel "
    "customer support ticket update password account security schedule "
    "project milestone draft proposal feedback summary minutes attached "
    "please thanks regards hello team question answer issue bug fixed "
    "tested deploy staging production rollback latency throughput index "
    "cache storage backup restore network firewall certificate renewal").split()

UTF8_WORDS = ("café", "naïve", "Grüße", "résumé", "Ελληνικά", "日本語",
              "Привет", "façade", "smörgåsbord", "über", "niño", "Zürich")

FIRST = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
         "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert",
         "Sybil", "Trent", "Victor", "Walter", "Zoé")
LAST = ("Smith", "Jones", "Müller", "Rossi", "Dubois", "Nakamura", "Novak",
        "Garcia", "Ivanova", "O'Brien", "Kowalski", "Larsen", "Silva")
DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com",
           "lists.example.org", "corp.example.net", "university.example.edu")
LISTS = ("dev", "announce", "users", "security", "ops", "release", "general")
MAILERS = ("Mutt/2.2.9", "Thunderbird 115.6.0", "Apple Mail (2.3731)",
           "Microsoft Outlook 16.0", "Roundcube Webmail/1.6.5", "aerc 0.16.0")
ATTACH = (("application/pdf", "report.pdf", b"%PDF-1.5\n"),
          ("image/jpeg", "photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
          ("application/zip", "logs.zip", b"PK\x03\x04"),
          ("application/vnd.openxmlformats-officedocument."
           "spreadsheetml.sheet", "budget.xlsx", b"PK\x03\x04"))

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
          "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def planted(i, every):
	"""What message i carries with --plant-every every: "word", "from" or
	None.  The two never fall on the same message (every >= 2)."""
	if not every:
		return None
	if i % every == 0:
		return "word"
	if i % every == every // 2:
		return "from"
	return None


MESSAGE_ID_NUMBER = re.compile(rb"^Message-ID: <(\d+)\.", re.I | re.M)


def number_of(data):
	"""The number i of a message of this corpus (its bytes, LF or CRLF
	lines, or just its Message-ID header line), or None."""
	m = MESSAGE_ID_NUMBER.search(data)
	return int(m.group(1)) if m else None


def plant_paragraph(word):
	return "A planted word for the search benchmark: %s." % word


def log_uniform(rng, lo, hi):
	"""A size between lo and hi, small sizes as likely per octave as large."""
	return int(lo * (hi / lo) ** rng.random())


def wrap(words, width=72):
	lines, cur = [], ""
	for w in words:
		if cur and len(cur) + 1 + len(w) > width:
			lines.append(cur)
			cur = w
		else:
			cur = w if not cur else cur + " " + w
	if cur:
		lines.append(cur)
	return lines


class Pool:
	"""Paragraphs made once per seed; messages pick from them.

	Generating every word of 100,000 messages one by one would make the
	corpus slow to build; picking whole paragraphs keeps it fast and still
	gives each message different text."""

	def __init__(self, seed):
		rng = random.Random("%s:pool" % seed)
		self.ascii = []
		self.utf8 = []
		for _ in range(600):
			n = rng.randint(25, 110)
			words = [rng.choice(WORDS) for _ in range(n)]
			words[0] = words[0].capitalize()
			self.ascii.append("\n".join(wrap(words)) + ".")
			for k in range(0, n, 9):
				words[k] = rng.choice(UTF8_WORDS)
			self.utf8.append("\n".join(wrap(words)) + ".")


def rfc2822_date(ts):
	t = time.gmtime(ts)
	return "%s, %d %s %d %02d:%02d:%02d +0000" % (
	    DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year,
	    t.tm_hour, t.tm_min, t.tm_sec)


def ctime_date(ts):
	"""The date format of an mbox "From " line (asctime, UTC)."""
	t = time.gmtime(ts)
	return "%s %s %2d %02d:%02d:%02d %d" % (
	    DAYS[t.tm_wday], MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour,
	    t.tm_min, t.tm_sec, t.tm_year)


def person(rng):
	first, last = rng.choice(FIRST), rng.choice(LAST)
	dom = rng.choice(DOMAINS)
	addr = "%s.%s@%s" % (first.lower(), last.lower().replace("'", ""), dom)
	addr = addr.encode("ascii", "replace").decode().replace("?", "u")
	name = "%s %s" % (first, last)
	if any(ord(c) > 127 for c in name):
		name = "=?UTF-8?B?%s?=" % base64.b64encode(name.encode()).decode()
	elif "'" in name:
		name = '"%s"' % name
	return name, addr


def b64_folded(data, width=76):
	s = base64.b64encode(data).decode()
	return "\n".join(s[k:k + width] for k in range(0, len(s), width))


def text_body(rng, pool, target, utf8=False, from_lines=False, plant=None):
	"""Paragraphs until the body is about target bytes; with plant, one
	more paragraph holding that word (the generator is not drawn on for
	it, so the rest of the corpus stays the same)."""
	paras = pool.utf8 if utf8 else pool.ascii
	out, size = [], 0
	if rng.random() < 0.3:
		out.append("Hi %s," % rng.choice(FIRST))
	while size < target:
		p = rng.choice(paras)
		r = rng.random()
		if r < 0.15:
			p = "\n".join("> " + l for l in p.split("\n"))
		elif from_lines and r < 0.35:
			# A body line that an mbox writer has to escape.
			p = "From " + p[0].lower() + p[1:]
		out.append(p)
		size += len(p.encode()) + 2
	if plant:
		out.append(plant_paragraph(plant))
	out.append("-- \n%s %s" % (rng.choice(FIRST), rng.choice(LAST)))
	return "\n\n".join(out) + "\n"


def html_of(text):
	esc = (text.replace("&", "&amp;").replace("<", "&lt;")
	       .replace(">", "&gt;"))
	paras = esc.split("\n\n")
	return ("<html><head><meta charset=\"utf-8\"></head><body>\n" +
	        "\n".join("<p>%s</p>" % p.replace("\n", "<br>\n")
	                  for p in paras) + "\n</body></html>\n")


def headers(rng, i, kind, is_list, subject_utf8, date, plant_from=None):
	name, addr = person(rng)
	_, to = person(rng)
	h = []
	# The trace an MTA leaves: newest first.
	hops = rng.randint(2, 5)
	for k in range(hops):
		ip = "192.0.2.%d" % rng.randint(1, 254)
		relay = "mx%d.%s" % (rng.randint(1, 9), rng.choice(DOMAINS))
		h.append("Received: from %s (%s [%s])\n\tby mx%d.example.org "
		         "(Postfix) with ESMTPS id %08X\n\tfor <bench@example.org>;"
		         " %s" % (relay, relay, ip, k + 1, rng.getrandbits(32),
		                  rfc2822_date(date + 5 * (hops - k))))
	if rng.random() < 0.6:
		h.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
		         "d=%s;\n\ts=sel%d; h=from:to:subject:date:message-id;\n"
		         "\tbh=%s;\n\tb=%s" % (
		             addr.split("@")[1], rng.randint(1, 3),
		             base64.b64encode(rng.randbytes(32)).decode(),
		             b64_folded(rng.randbytes(256), 70).replace(
		                 "\n", "\n\t  ")))
	subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
	subject = subject.capitalize()
	if subject_utf8:
		subject = "=?UTF-8?Q?%s?=" % "".join(
		    "=%02X" % b if b > 126 or b in b"=?_ " else chr(b)
		    for b in (subject + " " + rng.choice(UTF8_WORDS)).encode())
	if is_list:
		lst = rng.choice(LISTS)
		subject = "[%s] %s" % (lst, subject)
	h.append("From: %s <%s>" % (("Planted Sender", plant_from) if plant_from
	                            else (name, addr)))
	h.append("To: %s" % ("%s-list@lists.example.org" % lst if is_list
	                     else "bench@example.org"))
	if rng.random() < 0.2:
		h.append("Cc: %s <%s>" % person(rng))
	h.append("Subject: %s" % subject)
	h.append("Date: %s" % rfc2822_date(date))
	h.append("Message-ID: <%d.%016x@%s>" % (i, rng.getrandbits(64),
	                                        addr.split("@")[1]))
	if rng.random() < 0.4:
		h.append("In-Reply-To: <%d.%016x@example.com>" %
		         (max(1, i - rng.randint(1, 50)), rng.getrandbits(64)))
	if is_list:
		h.append("List-Id: %s list <%s.lists.example.org>" % (lst, lst))
		h.append("List-Unsubscribe: <mailto:%s-leave@lists.example.org>,"
		         "\n <https://lists.example.org/%s/unsubscribe>" % (lst, lst))
		h.append("List-Post: <mailto:%s@lists.example.org>" % lst)
		h.append("List-Archive: <https://lists.example.org/archive/%s/>"
		         % lst)
		h.append("List-Help: <mailto:%s-request@lists.example.org"
		         "?subject=help>" % lst)
		h.append("Precedence: list")
		h.append("Sender: %s-bounces@lists.example.org" % lst)
	if kind != "notify":
		h.append("X-Mailer: %s" % rng.choice(MAILERS))
	h.append("MIME-Version: 1.0")
	return h


def message(seed, i, pool, profile, plant=None):
	"""Message number i (from 1) as bytes, its Date as a Unix time and its
	generator; plant is None or (every, word, sender address)."""
	rng = random.Random("%s:%d" % (seed, i))
	date = EPOCH + i * 300 + rng.randint(0, 299)
	if profile == "small":
		kind, lo, hi = "plain", 1000, 4000
		is_list = rng.random() < 0.3
		subject_utf8 = utf8 = from_lines = False
	else:
		r = rng.random()
		if r < 0.05:
			kind, lo, hi = "attach", 100_000, 1_000_000
		elif r < 0.25:
			kind, lo, hi = "alt", 4000, 30_000
		elif r < 0.30:
			kind, lo, hi = "notify", 500, 2000
		else:
			kind, lo, hi = "plain", 2000, 20_000
		is_list = rng.random() < 0.3
		subject_utf8 = rng.random() < 0.15
		utf8 = rng.random() < 0.10
		from_lines = rng.random() < 0.10
	target = log_uniform(rng, lo, hi)
	kind_planted = planted(i, plant[0]) if plant else None
	word = plant[1] if kind_planted == "word" else None
	h = headers(rng, i, kind, is_list, subject_utf8, date,
	            plant[2] if kind_planted == "from" else None)
	head = "\n".join(h) + "\n"
	charset = "utf-8" if utf8 else "us-ascii"
	cte = "8bit" if utf8 else "7bit"
	budget = max(200, target - len(head.encode()))

	if kind in ("plain", "notify"):
		body = text_body(rng, pool, budget, utf8, from_lines, word)
		msg = (head + "Content-Type: text/plain; charset=%s\n"
		       "Content-Transfer-Encoding: %s\n\n" % (charset, cte) + body)
	elif kind == "alt":
		bnd = "=_alt_%016x" % rng.getrandbits(64)
		# text + its HTML is about 2.3 times the text.
		text = text_body(rng, pool, int(budget / 2.3), utf8, from_lines,
		                 word)
		msg = (head + "Content-Type: multipart/alternative;\n"
		       " boundary=\"%s\"\n\n"
		       "This is a multi-part message in MIME format.\n\n"
		       "--%s\nContent-Type: text/plain; charset=%s\n"
		       "Content-Transfer-Encoding: %s\n\n%s\n"
		       "--%s\nContent-Type: text/html; charset=utf-8\n"
		       "Content-Transfer-Encoding: 8bit\n\n%s\n--%s--\n" % (
		           bnd, bnd, charset, cte, text, bnd, html_of(text), bnd))
	else:
		bnd = "=_mixed_%016x" % rng.getrandbits(64)
		ctype, fname, magic = rng.choice(ATTACH)
		text = text_body(rng, pool, rng.randint(300, 3000), utf8,
		                 from_lines, word)
		# base64 grows the data by 4/3 plus a newline per 76 characters.
		raw = max(1000, int((budget - len(text.encode())) * 57 / 77))
		data = magic + rng.randbytes(raw - len(magic))
		msg = (head + "Content-Type: multipart/mixed;\n"
		       " boundary=\"%s\"\n\n"
		       "--%s\nContent-Type: text/plain; charset=%s\n"
		       "Content-Transfer-Encoding: %s\n\n%s\n"
		       "--%s\nContent-Type: %s; name=\"%s\"\n"
		       "Content-Disposition: attachment; filename=\"%s\"\n"
		       "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n" % (
		           bnd, bnd, charset, cte, text, bnd, ctype, fname, fname,
		           b64_folded(data), bnd))
	return msg.encode(), date, rng


class DirWriter:
	"""One file per message, and a MANIFEST."""

	def __init__(self, path):
		self.path = path
		os.makedirs(path, exist_ok=True)

	def add(self, i, data, date, rng):
		with open(os.path.join(self.path, "msg-%06d.eml" % i), "wb") as f:
			f.write(data)

	def close(self, args, total):
		with open(os.path.join(self.path, "MANIFEST"), "w") as f:
			f.write("profile=%s seed=%s count=%d bytes=%d\n" %
			        (args.profile, args.seed, args.n, total))
			if args.plant_every:
				f.write("plant-every=%d plant-word=%s plant-from=%s\n" %
				        (args.plant_every, args.plant_word,
				         args.plant_from))


MAILDIR_FLAGS = ("", "S", "S", "S", "RS", "FS", "S", "")


class MaildirWriter:
	"""Files straight into cur/ and new/, named as a foreign MDA would."""

	def __init__(self, path, new_percent):
		self.path = path
		self.new_percent = new_percent
		for sub in ("cur", "new", "tmp"):
			os.makedirs(os.path.join(path, sub), exist_ok=True)

	def add(self, i, data, date, rng):
		base = "%d.M%06dP%dQ%d.%s,S=%d" % (
		    date, rng.randint(0, 999999), 1000 + i % 30000, i, HOSTNAME,
		    len(data))
		if rng.random() * 100 < self.new_percent:
			path = os.path.join(self.path, "new", base)
		else:
			path = os.path.join(self.path, "cur", "%s:2,%s" % (
			    base, rng.choice(MAILDIR_FLAGS)))
		with open(path, "wb") as f:
			f.write(data)
		# Maildir readers take the received date from the mtime.
		os.utime(path, (date, date))

	def close(self, args, total):
		pass


def mboxrd_escape(data):
	"""Add one ">" to every line matching ^>*From (the mboxrd rule)."""
	out = []
	for line in data.split(b"\n"):
		if line.lstrip(b">").startswith(b"From "):
			line = b">" + line
		out.append(line)
	return b"\n".join(out)


class MboxWriter:
	"""One mbox file; each message is followed by an empty line."""

	def __init__(self, path):
		d = os.path.dirname(os.path.abspath(path))
		os.makedirs(d, exist_ok=True)
		self.f = open(path, "wb")

	def add(self, i, data, date, rng):
		self.f.write(b"From sender@example.com %s\n" %
		             ctime_date(date).encode())
		# Every message ends with a newline, so one more makes the gap.
		self.f.write(mboxrd_escape(data))
		self.f.write(b"\n")

	def close(self, args, total):
		self.f.close()


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	ap.add_argument("-n", type=int, default=2000, help="messages (2000)")
	ap.add_argument("-s", "--seed", default="1", help="seed (1)")
	ap.add_argument("--profile", choices=("mixed", "small"),
	                default="mixed")
	ap.add_argument("--dir", help="one file per message")
	ap.add_argument("--maildir", help="write into a Maildir's cur/, new/")
	ap.add_argument("--mbox", help="write one mbox file")
	ap.add_argument("--new-percent", type=float, default=5.0,
	                help="with --maildir: share put in new/ (5)")
	ap.add_argument("--plant-every", type=int, default=0, metavar="K",
	                help="plant WORD in messages i %% K == 0 and ADDR as "
	                "the sender of i %% K == K // 2 (0: none)")
	ap.add_argument("--plant-word", default="quokkaberry", metavar="WORD",
	                help="the planted word (quokkaberry)")
	ap.add_argument("--plant-from", default="planted.sender@example.com",
	                metavar="ADDR",
	                help="the planted sender (planted.sender@example.com)")
	args = ap.parse_args()
	if args.n < 1 or args.n > 10_000_000:
		ap.error("-n must be between 1 and 10000000")
	if not (args.dir or args.maildir or args.mbox):
		ap.error("give at least one of --dir, --maildir, --mbox")
	if args.plant_every == 1 or args.plant_every < 0:
		ap.error("--plant-every must be 0 (none) or at least 2")
	if not re.fullmatch(r"[a-z]{4,40}", args.plant_word):
		ap.error("--plant-word must be 4 to 40 lower-case letters")
	if not re.fullmatch(r"[a-z0-9.]+@[a-z0-9.]+", args.plant_from):
		ap.error("--plant-from must be a plain address")
	plant = ((args.plant_every, args.plant_word, args.plant_from)
	         if args.plant_every else None)

	# One pass feeds every output: the messages cost more than the writes.
	writers = []
	if args.dir:
		writers.append(DirWriter(args.dir))
	if args.maildir:
		writers.append(MaildirWriter(args.maildir, args.new_percent))
	if args.mbox:
		writers.append(MboxWriter(args.mbox))
	pool = Pool(args.seed)
	total = 0
	for i in range(1, args.n + 1):
		data, date, rng = message(args.seed, i, pool, args.profile, plant)
		for w in writers:
			w.add(i, data, date, rng)
		total += len(data)
	for w in writers:
		w.close(args, total)
	print("corpus: %d messages, %d bytes (profile %s, seed %s)" %
	      (args.n, total, args.profile, args.seed))


if __name__ == "__main__":
	main()
