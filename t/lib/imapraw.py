"""imapraw.py: an IMAP client for tests that must see the bytes (mailbox
names in UTF-8 or modified UTF-7, literals, untagged lines imaplib hides):
Raw sends what it is given and returns each response line as bytes."""
import re
import socket

TIMEOUT = 15


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
