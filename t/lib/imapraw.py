"""imapraw.py: IMAP clients for tests that must see what imaplib hides.
Raw sends bytes as given and returns each response line as bytes (mailbox
names in UTF-8 or modified UTF-7, literals). Lines is a session read line
by line as text, with the caller's tags, for untagged lines that come
between commands (IDLE, NOTIFY, CONTEXT updates)."""
import re
import socket

TIMEOUT = 15


def mail(subject, body="x\n"):
    """A small message to alice, as bytes with LF line ends."""
    return ("From: s@example.net\nTo: alice@example.org\nSubject: %s\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\n\n%s" %
            (subject, body)).encode()


class Lines:
    """An IMAP session on 127.0.0.1:port, through TLS if ctx is given,
    that returns each line the server sends as text without its CRLF."""

    def __init__(self, port, ctx=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = b""
        self.greeting = self.line()

    def line(self, timeout=TIMEOUT):
        """The next line; socket.timeout after timeout seconds, EOFError
        if the server closed the connection."""
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode("utf-8", "replace")

    def send(self, text):
        """text (str or bytes) and CRLF."""
        if isinstance(text, str):
            text = text.encode()
        self.s.sendall(text + b"\r\n")

    def cmd(self, tag, text):
        """Send "tag text"; the lines up to and with the tagged one."""
        self.send("%s %s" % (tag, text))
        return self.until("^" + re.escape(tag) + " ")

    def until(self, pattern):
        """The lines up to and with the first that pattern matches."""
        out = []
        while True:
            ln = self.line()
            out.append(ln)
            if re.search(pattern, ln):
                return out

    def lines(self, n):
        return [self.line() for _ in range(n)]

    def quiet(self):
        """Nothing more is waiting: a NOOP gets its OK alone."""
        return self.cmd("q", "NOOP")

    def close(self):
        """LOGOUT (if the server still listens), then close."""
        try:
            self.cmd("z", "LOGOUT")
        except (OSError, EOFError):
            pass
        self.s.close()


class Lit:
    """A literal argument: {n} (or ~{n} with lit8), sent after the "+"."""

    def __init__(self, data, lit8=False):
        self.data = data
        self.lit8 = lit8


class Raw:
    """An IMAPS client that sends bytes as given and returns each response
    line as bytes (without CRLF; a literal is kept inside its line)."""

    def __init__(self, port, ctx):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.s = ctx.wrap_socket(sock, server_hostname="localhost")
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def _full_line(self):
        ln = self.line()
        m = re.search(rb"~?\{(\d+)\}$", ln)
        while m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            ln += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            rest = self.line()
            ln += rest
            m = re.search(rb"~?\{(\d+)\}$", rest)
        return ln

    def cmd(self, *parts):
        """Send "tag parts..." and return (tagged line, all lines)."""
        self.n += 1
        tag = b"u%d" % self.n
        out = tag + b" "
        lines = []
        for p in parts:
            if isinstance(p, Lit):
                out += b"%s{%d}\r\n" % (b"~" if p.lit8 else b"", len(p.data))
                self.s.sendall(out)
                out = b""
                ln = self._full_line()
                lines.append(ln)
                if not ln.startswith(b"+"):
                    return ln, lines
                out = p.data
            else:
                out += p if isinstance(p, bytes) else p.encode()
        self.s.sendall(out + b"\r\n")
        while True:
            ln = self._full_line()
            lines.append(ln)
            if ln.startswith(tag + b" "):
                return ln, lines

    def login(self):
        tagged, lines = self.cmd("LOGIN alice secret")
        return tagged

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (OSError, EOFError):
            pass
        self.s.close()


def ok(tagged):
    return re.match(rb"^u\d+ OK", tagged) is not None


def status(tagged):
    m = re.match(rb"^u\d+ (\w+)", tagged)
    return m.group(1) if m else b""


def names_of(lines):
    """The mailbox names of LIST lines: bytes as sent (quoted unescaped)."""
    out = []
    for ln in lines:
        m = re.match(rb'^\* LIST \([^)]*\) (?:"/"|NIL) (.*)$', ln)
        if not m:
            continue
        n = m.group(1)
        lm = re.match(rb"^\{(\d+)\}\r\n", n)
        if lm:
            out.append(n[lm.end():lm.end() + int(lm.group(1))])
        elif n.startswith(b'"'):
            out.append(re.sub(rb'\\(.)', rb'\1', n[1:n.rindex(b'"')]))
        else:
            out.append(n)
    return out
