"""A raw RFC 6455 client over TLS for hostile and conformance tests.

Standard library only (Debian's /usr/bin/python3): ssl + socket and an
encoder/decoder written from RFC 6455 section 5. It sends what a test asks
for, including frames a well-behaved client never would (bad masks, reserved
bits, wrong lengths, chopped writes), and reads the server's frames back
without interpreting them beyond the framing.
"""
import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Eof(Exception):
    """The TCP/TLS connection ended."""


class Timeout(Exception):
    """Nothing (complete) arrived before the deadline."""


class Frame:
    def __init__(self, fin, rsv, opcode, payload, masked=False):
        self.fin, self.rsv, self.opcode, self.payload, self.masked = fin, rsv, opcode, payload, masked

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        return "Frame(fin=%d rsv=%d op=%d len=%d)" % (self.fin, self.rsv, self.opcode,
                                                       len(self.payload))


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None,
                 length_form=None):
    """One frame. length overrides the announced length (a lie); length_form
    forces 7, 16 or 64 as the length encoding (non-minimal encodings)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    m = 0x80 if mask else 0
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        head = struct.pack("!BB", b0, m | n)
    elif form == 16:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload, key):
    if not payload:
        return b""
    # XOR in one big-integer operation: fast enough for megabytes.
    reps = (key * (len(payload) // 4 + 1))[:len(payload)]
    x = int.from_bytes(payload, "big") ^ int.from_bytes(reps, "big")
    return x.to_bytes(len(payload), "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test node's certificate is self-signed
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # Python sets this by default; without it a TCP close that is not
    # preceded by close_notify is an error (see Conn.eof_kind).
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


_CTX = None


def connect_tls(port, host="127.0.0.1", timeout=10.0):
    global _CTX
    if _CTX is None:
        _CTX = tls_context()
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        # Not suppressing ragged EOFs tells a TLS close_notify (recv returns
        # b"") from a bare TCP close (SSLEOFError): see Conn.eof_kind.
        return _CTX.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    except Exception:
        raw.close()
        raise


def upgrade_request(path="/ws", key=None, version="13", method="GET", extra=(), host="localhost",
                    omit=()):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    headers = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    headers = [(k, v) for k, v in headers if k not in omit] + list(extra)
    text = "%s %s HTTP/1.1\r\n" % (method, path)
    text += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    return text.encode(), key


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Conn:
    """One TLS connection; WebSocket once upgrade() succeeded."""

    def __init__(self, port, timeout=10.0):
        self.sock = connect_tls(port, timeout=timeout)
        self.buf = b""
        self.eof = False
        self.eof_kind = None  # "close_notify" or the exception that ended the stream
        self.frames_sent = 0
        self.send_failed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ bytes

    def send(self, data, chop=None, strict=False):
        """Writes data; chop=N writes it in N-byte TLS records (separate
        sends), so the server sees the bytes split at every boundary.
        A server that failed the connection may be gone before everything
        is written: by default that only sets send_failed (the verdict
        comes from what the server sent); strict=True raises Eof."""
        try:
            if not chop:
                self.sock.sendall(data)
                return
            for i in range(0, len(data), chop):
                self.sock.sendall(data[i:i + chop])
        except (ssl.SSLError, OSError) as e:
            self.send_failed = True
            if strict:
                raise Eof("send failed: %s" % e)

    def _fill(self, deadline):
        """Reads what is there (waiting until deadline for something)."""
        if self.eof:
            raise Eof("connection ended")
        while True:
            if self.sock.pending() == 0:
                left = max(0.0, deadline - time.monotonic())
                p = select.poll()  # select() cannot watch fds above 1023
                p.register(self.sock.fileno(), select.POLLIN)
                if not p.poll(left * 1000):
                    raise Timeout()
            try:
                data = self.sock.recv(65536)
            except ssl.SSLWantReadError:
                if time.monotonic() >= deadline:
                    raise Timeout()
                continue
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError) as e:
                data = b""
                self.eof_kind = type(e).__name__
            if not data:
                self.eof = True
                self.eof_kind = self.eof_kind or "close_notify"
                raise Eof("connection ended")
            self.buf += data
            return

    def recv_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_until(self, marker, deadline, limit=65536):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise Eof("no %r in %d bytes" % (marker, limit))
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def wait_eof(self, timeout=5.0):
        """True when the server closes the connection before the deadline
        (bytes arriving meanwhile are discarded)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                self.buf = b""
        except Eof:
            return True
        except Timeout:
            return False

    # ----------------------------------------------------------- HTTP

    def http_request(self, data, timeout=10.0):
        """Sends an HTTP request head; returns (status, {header: value})."""
        self.send(data)
        head = self.recv_until(b"\r\n\r\n", time.monotonic() + timeout)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    def upgrade(self, path="/ws", timeout=10.0, **kw):
        req, key = upgrade_request(path, **kw)
        status, headers = self.http_request(req, timeout)
        if status != 101:
            raise AssertionError("upgrade answered %d" % status)
        if headers.get("sec-websocket-accept") != accept_for(key):
            raise AssertionError("bad Sec-WebSocket-Accept")
        return headers

    # ---------------------------------------------------------- frames

    def send_frame(self, opcode, payload=b"", chop=None, **kw):
        self.send(encode_frame(opcode, payload, **kw), chop=chop)
        self.frames_sent += 1

    def _parse_frame(self):
        """A complete frame from the front of buf (consumed), or None."""
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack("!Q", b[2:10])[0], 10
        key = None
        if b1 & 0x80:
            if len(b) < off + 4:
                return None
            key, off = b[off:off + 4], off + 4
        if len(b) < off + n:
            return None
        payload = b[off:off + n]
        self.buf = b[off + n:]
        if key:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, key is not None)

    def recv_frame(self, timeout=5.0):
        """The next frame; Timeout leaves a partial frame buffered."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse_frame()
            if f is not None:
                return f
            self._fill(deadline)

    def recv_message(self, timeout=5.0):
        """The next data message, reassembled; control frames are returned as
        they come (a close or pong ends the wait). Returns (opcode, payload)."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode >= 0x8:
                if opcode is None:
                    return f.opcode, f
                continue  # a control frame between fragments
            if opcode is None:
                opcode = f.opcode
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def expect_close(self, timeout=5.0):
        """Reads until the server's close frame. Returns (code, reason,
        frames_before). code is None when the connection ended without a
        close frame, 1005 when the close frame had no code."""
        deadline = time.monotonic() + timeout
        before = []
        try:
            while True:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
                if f.opcode == OP_CLOSE:
                    # Answer it, as a client must (RFC 6455 5.5.1); the
                    # server may already be gone.
                    self.send(encode_frame(OP_CLOSE, f.payload[:2]))
                    return (f.close_code if f.payload else 1005), f.close_reason, before
                before.append(f)
        except Eof:
            return None, b"", before
