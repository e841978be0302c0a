#!/usr/bin/python3
"""Clean-room RFC 6455 conformance suite for chatnode's WebSocket layer.

Written from RFC 6455 and the public descriptions of the Autobahn
testsuite cases (case numbers follow Autobahn where a case has a
counterpart; H.* are handshake cases, L.* limits, B.* the binary-only
rules of docs/PROTOCOL.md). It drives `chatnode --test-echo` (every binary
message echoed, no protobuf, no auth) over raw TLS 1.3 sockets, one fresh
connection per case.

The node is binary only (DESIGN.md section 4): cases built on text frames
(UTF-8 payloads, text echo) do not apply and are listed as N/A with the
reason; where an Autobahn case only uses text as a carrier for a framing
rule (reserved bits, fragmentation), the rule is checked with binary frames
instead and the case says so. The 1003 answer to text frames is asserted
by the B.* cases.

Failing the connection (RFC 6455 7.1.7) is checked strictly: the node must
send a close frame with the expected code (docs/PROTOCOL.md lists them)
and then close the TCP connection.

usage: test_ws_conformance.py CHATNODE
Prints one verdict line per case, then `N passed, N failed`; exit 0 when
nothing failed.
"""
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import nodeproc  # noqa: E402
import wsclient as ws  # noqa: E402
from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT  # noqa: E402

MAX_MESSAGE = 512 * 1024  # README, Limits: WebSocket message
WAIT = 10.0


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


CASES = []


def case(cid, desc, na=None, upgrade=True):
    def register(fn):
        CASES.append((cid, desc, fn, na, upgrade))
        return fn
    return register


def not_applicable(cid, desc, reason):
    CASES.append((cid, desc, None, reason, False))


# ------------------------------------------------------------------ helpers

def echo(c, payload, chop=None, timeout=WAIT):
    c.send_frame(OP_BINARY, payload, chop=chop)
    expect_echo(c, payload, timeout)


def expect_echo(c, payload, timeout=WAIT):
    op, got = c.recv_message(timeout)
    check(op == OP_BINARY, "expected a binary echo, got opcode %d" % op)
    check(got == payload, "echo differs (%d bytes, sent %d)" % (len(got), len(payload)))


def expect_pong(c, payload, timeout=WAIT):
    f = c.recv_frame(timeout)
    check(f.opcode == OP_PONG, "expected a pong, got opcode %d" % f.opcode)
    check(f.payload == payload, "pong payload differs from the ping's")
    check(not f.masked, "server frame is masked (RFC 6455 5.1)")


def alive(c):
    """The connection still works and nothing unexpected was sent before."""
    probe = os.urandom(8)
    c.send_frame(OP_PING, probe)
    expect_pong(c, probe)


def check_close_notify(c):
    """RFC 8446 6.1: the node ends TLS with close_notify before closing TCP."""
    check(c.eof_kind == "close_notify", "TCP closed without a TLS close_notify (%s)" % c.eof_kind)


def expect_fail(c, code, allow_before=()):
    """The node fails the connection: close frame with code, then TCP close."""
    got, _, before = c.expect_close(WAIT)
    for f in before:
        check(f.opcode in allow_before, "unexpected frame before the close: %r" % f)
    check(got is not None, "connection dropped without a close frame (want %d)" % code)
    check(got == code, "close code %s, want %d" % (got, code))
    check(c.wait_eof(WAIT), "TCP connection not closed after the close handshake")
    check_close_notify(c)
    return before


def expect_clean_close(c, codes):
    got, reason, before = c.expect_close(WAIT)
    check(not before, "unexpected frames before the close: %r" % before)
    check(got in codes, "close code %s, want one of %s" % (got, sorted(codes)))
    check(c.wait_eof(WAIT), "TCP connection not closed after the close handshake")
    check_close_notify(c)
    return reason


# ------------------------------------------------- H: opening handshake

@case("H.1", "valid upgrade: 101 with the RFC 6455 4.2.2 accept value", upgrade=False)
def h1(c):
    headers = c.upgrade()
    check(headers.get("upgrade", "").lower() == "websocket", "Upgrade header missing")
    check("upgrade" in headers.get("connection", "").lower(), "Connection: Upgrade missing")
    echo(c, b"after upgrade")


@case("H.2", "permessage-deflate offered: not negotiated (no extension in the 101)",
      upgrade=False)
def h2(c):
    headers = c.upgrade(extra=[("Sec-WebSocket-Extensions",
                                "permessage-deflate; client_max_window_bits")])
    check("sec-websocket-extensions" not in headers, "an extension was negotiated")
    echo(c, b"x" * 200)


@case("H.3", "unknown subprotocol offered: none selected (RFC 6455 4.2.2)", upgrade=False)
def h3(c):
    headers = c.upgrade(extra=[("Sec-WebSocket-Protocol", "chat, superchat")])
    check("sec-websocket-protocol" not in headers, "a subprotocol was selected")


@case("H.4", "Sec-WebSocket-Version 8: 426 naming version 13 (RFC 6455 4.4)", upgrade=False)
def h4(c):
    req, _ = ws.upgrade_request(version="8")
    status, headers = c.http_request(req)
    check(status == 426, "status %d, want 426" % status)
    check(headers.get("sec-websocket-version") == "13", "no Sec-WebSocket-Version: 13")


@case("H.5", "missing Sec-WebSocket-Key: 400", upgrade=False)
def h5(c):
    req, _ = ws.upgrade_request(omit=("Sec-WebSocket-Key",))
    status, _ = c.http_request(req)
    check(status == 400, "status %d, want 400" % status)


@case("H.6", "Sec-WebSocket-Key not 16 bytes of base64: 400", upgrade=False)
def h6(c):
    req, _ = ws.upgrade_request(key="c2hvcnQ=")
    status, _ = c.http_request(req)
    check(status == 400, "status %d, want 400" % status)


@case("H.7", "POST upgrade: 405 (RFC 6455 4.2.1: the method must be GET)", upgrade=False)
def h7(c):
    req, _ = ws.upgrade_request(method="POST")
    status, _ = c.http_request(req)
    check(status == 405, "status %d, want 405" % status)


@case("H.8", "missing Upgrade: websocket: refused with 4xx", upgrade=False)
def h8(c):
    req, _ = ws.upgrade_request(omit=("Upgrade",))
    status, _ = c.http_request(req)
    check(400 <= status < 500, "status %d, want 4xx" % status)


@case("H.9", "request head above 8 KiB: 431", upgrade=False)
def h9(c):
    req, _ = ws.upgrade_request(extra=[("X-Pad", "p" * 9000)])
    status, _ = c.http_request(req)
    check(status == 431, "status %d, want 431" % status)


@case("H.10", "upgrade head split into 1-byte writes", upgrade=False)
def h10(c):
    req, key = ws.upgrade_request()
    c.send(req, chop=1)
    head = c.recv_until(b"\r\n\r\n", time.monotonic() + WAIT)
    check(head.startswith(b"HTTP/1.1 101"), "no 101")
    check(ws.accept_for(key).encode() in head, "bad accept value")
    echo(c, b"ok")


@case("H.11", "frame bytes in the same write as the upgrade head are kept", upgrade=False)
def h11(c):
    req, _ = ws.upgrade_request()
    c.send(req + ws.encode_frame(OP_BINARY, b"early"))
    c.recv_until(b"\r\n\r\n", time.monotonic() + WAIT)
    expect_echo(c, b"early")


# ------------------------------------------------------- 1: framing

for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536), 1):
    not_applicable("1.1.%d" % i, "text message, payload %d" % n,
                   "text frames are refused with 1003 by a binary-only server (see B.1)")
not_applicable("1.1.8", "text message 65536 in 997-byte chops",
               "text frames are refused with 1003 by a binary-only server (see B.1)")


def binary_len_case(cid, n, chop=None):
    @case(cid, "binary message, payload %d%s" % (n, " in %d-byte chops" % chop if chop else ""))
    def fn(c):
        echo(c, os.urandom(n), chop=chop)


for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536), 1):
    binary_len_case("1.2.%d" % i, n)
binary_len_case("1.2.8", 65536, chop=997)


@case("1.3.1", "masking key of zeros and an all-ones key")
def c131(c):
    c.send_frame(OP_BINARY, b"zero key", mask_key=b"\0\0\0\0")
    expect_echo(c, b"zero key")
    c.send_frame(OP_BINARY, b"ones key", mask_key=b"\xff\xff\xff\xff")
    expect_echo(c, b"ones key")


@case("1.3.2", "server frames are unmasked and minimally encoded (RFC 6455 5.1, 5.2)")
def c132(c):
    for n in (5, 200, 70000):
        payload = os.urandom(n)
        c.send_frame(OP_BINARY, payload)
        f = c.recv_frame(WAIT)
        check(not f.masked, "server frame masked")
        check(f.opcode == OP_BINARY and f.fin and f.payload == payload, "bad echo frame")


# ------------------------------------------------------ 2: ping / pong

@case("2.1", "ping without payload: pong without payload")
def c21(c):
    c.send_frame(OP_PING, b"")
    expect_pong(c, b"")


@case("2.2", "ping with small text-like payload: pong echoes it")
def c22(c):
    c.send_frame(OP_PING, b"Hello, world!")
    expect_pong(c, b"Hello, world!")


@case("2.3", "ping with small binary payload: pong echoes it")
def c23(c):
    c.send_frame(OP_PING, bytes([0, 255, 254, 253, 252, 251, 0, 255]))
    expect_pong(c, bytes([0, 255, 254, 253, 252, 251, 0, 255]))


@case("2.4", "ping with 125-byte payload: pong echoes it")
def c24(c):
    p = b"\xfe" * 125
    c.send_frame(OP_PING, p)
    expect_pong(c, p)


@case("2.5", "ping with 126-byte payload: fail with 1002 (RFC 6455 5.5)")
def c25(c):
    c.send_frame(OP_PING, b"\xfe" * 126)
    expect_fail(c, 1002)


@case("2.6", "ping with 125-byte payload in 1-byte chops")
def c26(c):
    p = b"\xfe" * 125
    c.send_frame(OP_PING, p, chop=1)
    expect_pong(c, p)


@case("2.7", "unsolicited pong without payload: ignored")
def c27(c):
    c.send_frame(OP_PONG, b"")
    alive(c)


@case("2.8", "unsolicited pong with payload: ignored")
def c28(c):
    c.send_frame(OP_PONG, b"unsolicited pong payload")
    alive(c)


@case("2.9", "unsolicited pong, then ping: only the ping is answered")
def c29(c):
    c.send_frame(OP_PONG, b"unsolicited")
    c.send_frame(OP_PING, b"solicited")
    expect_pong(c, b"solicited")
    alive(c)


@case("2.10", "10 pings with payload: 10 pongs in order")
def c210(c):
    for i in range(10):
        c.send_frame(OP_PING, b"payload-%d" % i)
    for i in range(10):
        expect_pong(c, b"payload-%d" % i)


@case("2.11", "10 pings with payload in 1-byte chops: 10 pongs in order")
def c211(c):
    for i in range(10):
        c.send_frame(OP_PING, b"payload-%d" % i, chop=1)
    for i in range(10):
        expect_pong(c, b"payload-%d" % i)


# --------------------------------------------------- 3: reserved bits

@case("3.1", "RSV1 set (binary instead of text, no extension): fail with 1002")
def c31(c):
    c.send_frame(OP_BINARY, b"Hello", rsv=4)
    expect_fail(c, 1002)


@case("3.2", "echo, then RSV2 set, then ping: echo, then fail with 1002")
def c32(c):
    c.send_frame(OP_BINARY, b"Hello")
    c.send_frame(OP_BINARY, b"Hello", rsv=2)
    c.send_frame(OP_PING, b"")
    before = expect_fail(c, 1002, allow_before=(OP_BINARY,))
    check(len(before) <= 1, "more than the first echo before the close")


@case("3.3", "RSV3 set, chopped, after a valid echo: fail with 1002")
def c33(c):
    echo(c, b"Hello", chop=1)
    c.send_frame(OP_BINARY, b"Hello", rsv=1, chop=1)
    c.send_frame(OP_PING, b"", chop=1)
    expect_fail(c, 1002)


@case("3.4", "RSV1|RSV3 on a binary frame: fail with 1002")
def c34(c):
    c.send_frame(OP_BINARY, bytes(range(8)), rsv=5)
    expect_fail(c, 1002)


@case("3.5", "RSV2|RSV3 on a binary frame: fail with 1002")
def c35(c):
    c.send_frame(OP_BINARY, bytes(range(8)), rsv=3)
    expect_fail(c, 1002)


@case("3.6", "RSV1|RSV2 on a ping: fail with 1002")
def c36(c):
    c.send_frame(OP_PING, b"Hello", rsv=6)
    expect_fail(c, 1002)


@case("3.7", "all RSV bits on a close: fail with 1002")
def c37(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000), rsv=7)
    expect_fail(c, 1002)


# ------------------------------------------------------- 4: opcodes

def reserved_opcode_case(cid, opcode, payload, after_echo):
    desc = "reserved %s opcode %d%s%s" % ("control" if opcode >= 8 else "non-control", opcode,
                                         " with payload" if payload else "",
                                         " after a valid echo" if after_echo else "")

    @case(cid, desc + ": fail with 1002")
    def fn(c):
        if after_echo:
            echo(c, b"Hello")
        c.send_frame(opcode, payload)
        c.send_frame(OP_PING, b"")
        expect_fail(c, 1002)


for i, (op, pl, after) in enumerate(((3, b"", False), (4, b"reserved", False),
                                     (5, b"reserved", True), (6, b"", True),
                                     (7, b"reserved", True)), 1):
    reserved_opcode_case("4.1.%d" % i, op, pl, after)
for i, (op, pl, after) in enumerate(((11, b"", False), (12, b"reserved", False),
                                     (13, b"reserved", True), (14, b"", True),
                                     (15, b"reserved", True)), 1):
    reserved_opcode_case("4.2.%d" % i, op, pl, after)


# ------------------------------------------------- 5: fragmentation

@case("5.1", "ping in 2 fragments: fail with 1002 (control frames are not fragmented)")
def c51(c):
    c.send_frame(OP_PING, b"frag1", fin=False)
    c.send_frame(OP_CONT, b"frag2")
    expect_fail(c, 1002)


@case("5.2", "pong in 2 fragments: fail with 1002")
def c52(c):
    c.send_frame(OP_PONG, b"frag1", fin=False)
    c.send_frame(OP_CONT, b"frag2")
    expect_fail(c, 1002)


def fragmented_case(cid, chop, ping_between):
    desc = "binary message in 2 fragments%s%s (text in Autobahn)" % (
        ", ping in between" if ping_between else "", ", 1-byte chops" if chop == 1 else
        ", chopped" if chop else "")

    @case(cid, desc)
    def fn(c):
        c.send_frame(OP_BINARY, b"fragment1", fin=False, chop=chop)
        if ping_between:
            c.send_frame(OP_PING, b"pongme!", chop=chop)
        c.send_frame(OP_CONT, b"fragment2", chop=chop)
        if ping_between:
            expect_pong(c, b"pongme!")
        expect_echo(c, b"fragment1fragment2")


fragmented_case("5.3", None, False)
fragmented_case("5.4", 3, False)
fragmented_case("5.5", 1, False)
fragmented_case("5.6", None, True)
fragmented_case("5.7", 3, True)
fragmented_case("5.8", 1, True)


def orphan_continuation_case(cid, fin, chop):
    desc = "continuation (FIN=%d) with nothing to continue%s" % (
        fin, ", 1-byte chops" if chop == 1 else ", chopped" if chop else "")

    @case(cid, desc + ": fail with 1002")
    def fn(c):
        c.send_frame(OP_CONT, b"non-continuation payload", fin=fin, chop=chop)
        c.send_frame(OP_BINARY, b"Hello, world!", chop=chop)
        expect_fail(c, 1002)


orphan_continuation_case("5.9", True, None)
orphan_continuation_case("5.10", True, 4)
orphan_continuation_case("5.11", True, 1)
orphan_continuation_case("5.12", False, None)
orphan_continuation_case("5.13", False, 4)
orphan_continuation_case("5.14", False, 1)


@case("5.15", "2 fragments, then a continuation with nothing to continue: echo, then 1002")
def c515(c):
    c.send_frame(OP_BINARY, b"fragment1", fin=False)
    c.send_frame(OP_CONT, b"fragment2")
    c.send_frame(OP_CONT, b"fragment3", fin=False)
    c.send_frame(OP_BINARY, b"fragment4")
    before = expect_fail(c, 1002, allow_before=(OP_BINARY,))
    check([f.payload for f in before] in ([], [b"fragment1fragment2"]), "wrong echo")


@case("5.16", "continuation, binary (FIN=0), continuation, twice: fail with 1002")
def c516(c):
    for _ in range(2):
        c.send_frame(OP_CONT, b"fragment1", fin=False)
        c.send_frame(OP_BINARY, b"fragment2", fin=False)
        c.send_frame(OP_CONT, b"fragment3")
    expect_fail(c, 1002)


@case("5.17", "continuation (FIN=1), binary (FIN=0), continuation, twice: fail with 1002")
def c517(c):
    for _ in range(2):
        c.send_frame(OP_CONT, b"fragment1")
        c.send_frame(OP_BINARY, b"fragment2", fin=False)
        c.send_frame(OP_CONT, b"fragment3")
    expect_fail(c, 1002)


@case("5.18", "new binary frame inside a fragmented message: fail with 1002")
def c518(c):
    c.send_frame(OP_BINARY, b"fragment1", fin=False)
    c.send_frame(OP_BINARY, b"fragment2")
    expect_fail(c, 1002)


def five_fragments_case(cid, chop):
    @case(cid, "binary message in 5 fragments with 2 pings between%s" % (
        ", chopped" if chop else ""))
    def fn(c):
        c.send_frame(OP_BINARY, b"fragment1", fin=False, chop=chop)
        c.send_frame(OP_CONT, b"fragment2", fin=False, chop=chop)
        c.send_frame(OP_PING, b"pongme 1!", chop=chop)
        c.send_frame(OP_CONT, b"fragment3", fin=False, chop=chop)
        c.send_frame(OP_CONT, b"fragment4", fin=False, chop=chop)
        c.send_frame(OP_PING, b"pongme 2!", chop=chop)
        c.send_frame(OP_CONT, b"fragment5", chop=chop)
        expect_pong(c, b"pongme 1!")
        expect_pong(c, b"pongme 2!")
        expect_echo(c, b"fragment1fragment2fragment3fragment4fragment5")


five_fragments_case("5.19", None)
five_fragments_case("5.20", 1)


@case("5.21", "fragments of 0 bytes around the payload")
def c521(c):
    c.send_frame(OP_BINARY, b"", fin=False)
    c.send_frame(OP_CONT, b"middle", fin=False)
    c.send_frame(OP_CONT, b"")
    expect_echo(c, b"middle")


# --------------------------------------------------------- 6: UTF-8

for group, count, what in (("6.1", 3, "empty text frames"), ("6.2", 4, "valid UTF-8, fragmented"),
                           ("6.3", 2, "invalid UTF-8 text"), ("6.4", 4, "fail fast on invalid UTF-8"),
                           ("6.5", 5, "valid UTF-8 sequences"), ("6.6", 11, "Greek text"),
                           ("6.7", 4, "first sequences of each length"),
                           ("6.8", 2, "last sequences of each length"),
                           ("6.9", 4, "boundary sequences"), ("6.10", 3, "unexpected continuation"),
                           ("6.11", 5, "other boundary conditions"),
                           ("6.12", 8, "lonely start characters"),
                           ("6.13", 5, "sequences with the last byte missing"),
                           ("6.14", 10, "concatenated incomplete sequences"),
                           ("6.15", 1, "impossible bytes"), ("6.16", 3, "overlong sequences"),
                           ("6.17", 5, "maximal overlong sequences"),
                           ("6.18", 5, "overlong NUL"), ("6.19", 5, "single UTF-16 surrogates"),
                           ("6.20", 7, "paired UTF-16 surrogates"),
                           ("6.21", 8, "noncharacters"), ("6.22", 34, "noncharacter code points"),
                           ("6.23", 7, "replacement characters")):
    not_applicable("%s.1-%s.%d" % (group, group, count), "text payloads: " + what,
                   "UTF-8 validation of text messages; a binary-only server refuses every "
                   "text frame with 1003 before its payload (see B.1-B.3)")


# --------------------------------------------------- 7: close handling

@case("7.1.1", "echo, then close 1000: clean close")
def c711(c):
    echo(c, b"Hello World!")
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    expect_clean_close(c, {1000})


@case("7.1.2", "close twice: the second is ignored, clean close")
def c712(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    try:
        c.send_frame(OP_CLOSE, ws.close_payload(1000))
    except ws.Eof:
        pass
    expect_clean_close(c, {1000})


@case("7.1.3", "ping after close: not answered, clean close")
def c713(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    try:
        c.send_frame(OP_PING, b"after close")
    except ws.Eof:
        pass
    expect_clean_close(c, {1000})


@case("7.1.4", "binary after close: not echoed, clean close")
def c714(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    try:
        c.send_frame(OP_BINARY, b"after close")
    except ws.Eof:
        pass
    expect_clean_close(c, {1000})


@case("7.1.5", "first fragment, close, last fragment: clean close, no echo")
def c715(c):
    c.send_frame(OP_BINARY, b"fragment1", fin=False)
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    try:
        c.send_frame(OP_CONT, b"fragment2")
    except ws.Eof:
        pass
    expect_clean_close(c, {1000})


@case("7.1.6", "256 KiB message then close: echo and clean close")
def c716(c):
    payload = os.urandom(256 * 1024)
    c.send_frame(OP_BINARY, payload)
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    got, _, before = c.expect_close(WAIT)
    check(got == 1000, "close code %s" % got)
    data = b"".join(f.payload for f in before if f.opcode in (OP_BINARY, OP_CONT))
    check(data in (b"", payload), "partial or corrupt echo before the close")
    check(c.wait_eof(WAIT), "TCP not closed")


@case("7.3.1", "close without payload: clean close")
def c731(c):
    c.send_frame(OP_CLOSE, b"")
    expect_clean_close(c, {1000, 1005})


@case("7.3.2", "close with 1-byte payload: fail with 1002 (RFC 6455 5.5.1)")
def c732(c):
    c.send_frame(OP_CLOSE, b"a")
    expect_fail(c, 1002)


@case("7.3.3", "close 1000 without reason: clean close")
def c733(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000))
    expect_clean_close(c, {1000})


@case("7.3.4", "close 1000 with a reason: clean close")
def c734(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, b"Hello World!"))
    expect_clean_close(c, {1000})


@case("7.3.5", "close 1000 with a 123-byte reason (125-byte payload): clean close")
def c735(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, b"*" * 123))
    expect_clean_close(c, {1000})


@case("7.3.6", "close 1000 with a 124-byte reason (126-byte payload): fail with 1002")
def c736(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, b"*" * 124))
    expect_fail(c, 1002)


@case("7.5.1", "close reason with invalid UTF-8: fail with 1007 (RFC 6455 5.5.1, 8.1)")
def c751(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                                                  b"\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"))
    expect_fail(c, 1007)


@case("7.5.2", "close reason with valid multi-byte UTF-8: clean close")
def c752(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, "κόσμε ✓ 𝄞".encode()))
    expect_clean_close(c, {1000})


@case("7.5.3", "close reason truncated inside a UTF-8 sequence: fail with 1007")
def c753(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, "abc κ".encode()[:-1]))
    expect_fail(c, 1007)


@case("7.5.4", "close reason with an overlong encoding of '/': fail with 1007")
def c754(c):
    c.send_frame(OP_CLOSE, ws.close_payload(1000, b"\xc0\xaf"))
    expect_fail(c, 1007)


for i, code in enumerate((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                          4000, 4999), 1):
    def valid_close(c, code=code):
        c.send_frame(OP_CLOSE, ws.close_payload(code))
        expect_clean_close(c, {code, 1000})
    CASES.append(("7.7.%d" % i, "close with valid code %d: clean close (echoed or 1000)" % code,
                  valid_close, None, True))

for i, code in enumerate((0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999), 1):
    def invalid_close(c, code=code):
        c.send_frame(OP_CLOSE, ws.close_payload(code))
        expect_fail(c, 1002)
    CASES.append(("7.9.%d" % i, "close with invalid code %d: fail with 1002 (RFC 6455 7.4)" % code,
                  invalid_close, None, True))

for code in (1012, 1013, 1014):
    not_applicable("7.9.x-%d" % code, "close with code %d" % code,
                   "registered with IANA after RFC 6455 (service restart / try again later / "
                   "bad gateway): both echoing it and failing with 1002 conform")

for i, code in enumerate((5000, 65535), 1):
    def out_of_range(c, code=code):
        c.send_frame(OP_CLOSE, ws.close_payload(code))
        expect_fail(c, 1002)
    CASES.append(("7.13.%d" % i, "close with out-of-range code %d: fail with 1002" % code,
                  out_of_range, None, True))


# ------------------------------------------------------------ 9, L: limits

def big_echo_case(cid, n, frag=None):
    desc = "binary message of %d bytes%s: echoed" % (n, " in %d-byte fragments" % frag
                                                      if frag else "")

    @case(cid, desc)
    def fn(c):
        payload = os.urandom(n)
        if frag:
            for off in range(0, n, frag):
                last = off + frag >= n
                c.send_frame(OP_BINARY if off == 0 else OP_CONT, payload[off:off + frag],
                             fin=last)
        else:
            c.send_frame(OP_BINARY, payload)
        expect_echo(c, payload, timeout=60)


big_echo_case("9.2.1", 64 * 1024)
big_echo_case("9.2.2", 256 * 1024)
big_echo_case("9.2.3", MAX_MESSAGE)
for i, frag in enumerate((64, 256, 1024, 4096, 16384, 65536), 1):
    big_echo_case("9.4.%d" % i, 256 * 1024, frag)
not_applicable("9.1.1-9.1.6", "text messages of 64 KiB to 16 MiB",
               "text frames are refused with 1003 by a binary-only server")
not_applicable("9.3.1-9.3.9", "fragmented text message of 4 MiB",
               "text frames are refused with 1003 by a binary-only server")
not_applicable("9.5.1-9.6.6", "send/receive throughput with small chops",
               "performance cases, not conformance; tests/bench covers throughput")
not_applicable("9.7.1-9.8.6", "round-trip time of many small text/binary messages",
               "performance cases, not conformance; tests/bench covers latency")


@case("L.1", "binary message of 512 KiB + 1: close 1009 from the header alone")
def l1(c):
    c.send(ws.encode_frame(OP_BINARY, b"x", length=MAX_MESSAGE + 1))
    expect_fail(c, 1009)


@case("L.2", "binary message of 16 MiB announced: close 1009 before the payload")
def l2(c):
    c.send(ws.encode_frame(OP_BINARY, b"", length=16 * 1024 * 1024))
    expect_fail(c, 1009)


@case("L.3", "fragments summing past 512 KiB: close 1009")
def l3(c):
    half = os.urandom(MAX_MESSAGE // 2)
    c.send_frame(OP_BINARY, half, fin=False)
    c.send_frame(OP_CONT, half, fin=False)
    c.send(ws.encode_frame(OP_CONT, b"x", length=1))
    expect_fail(c, 1009)


@case("L.4", "64-bit length 2^63-1 announced: close 1009")
def l4(c):
    c.send(ws.encode_frame(OP_BINARY, b"", length=(1 << 63) - 1))
    expect_fail(c, 1009)


@case("L.5", "64-bit length with the top bit set (2^63): fail with 1002 (RFC 6455 5.2)")
def l5(c):
    c.send(ws.encode_frame(OP_BINARY, b"", length=1 << 63))
    expect_fail(c, 1002)


@case("L.6", "16-bit length form for 5 bytes (not minimal): fail with 1002 (RFC 6455 5.2)")
def l6(c):
    c.send_frame(OP_BINARY, b"hello", length_form=16)
    expect_fail(c, 1002)


@case("L.7", "64-bit length form for 200 bytes (not minimal): fail with 1002")
def l7(c):
    c.send_frame(OP_BINARY, b"h" * 200, length_form=64)
    expect_fail(c, 1002)


@case("L.8", "unmasked client frame: fail with 1002 (RFC 6455 5.1)")
def l8(c):
    c.send_frame(OP_BINARY, b"unmasked", mask=False)
    expect_fail(c, 1002)


@case("L.9", "unmasked ping: fail with 1002")
def l9(c):
    c.send_frame(OP_PING, b"unmasked", mask=False)
    expect_fail(c, 1002)


@case("L.10", "1000 small messages pipelined: 1000 echoes in order")
def l10(c):
    msgs = [os.urandom(1 + i % 300) for i in range(1000)]
    c.send(b"".join(ws.encode_frame(OP_BINARY, m) for m in msgs))
    for m in msgs:
        expect_echo(c, m)


# ------------------------------------------------ 10, 12, 13: N/A

not_applicable("10.1.1", "65536-byte text message, auto-fragmentation",
               "text frames are refused with 1003 by a binary-only server")
not_applicable("12.*", "permessage-deflate, text and binary payloads",
               "permessage-deflate is never negotiated (docs/PROTOCOL.md; see H.2)")
not_applicable("13.*", "permessage-deflate parameter combinations",
               "permessage-deflate is never negotiated (docs/PROTOCOL.md; see H.2)")


# ------------------------------------------------ B: binary-only rules

@case("B.1", "text frame: close 1003 (docs/PROTOCOL.md)")
def b1(c):
    c.send_frame(OP_TEXT, b"Hello, world!")
    expect_fail(c, 1003)


@case("B.2", "text frame after a valid binary echo: echo, then close 1003")
def b2(c):
    echo(c, b"binary first")
    c.send_frame(OP_TEXT, "κόσμε".encode())
    expect_fail(c, 1003)


@case("B.3", "first fragment of a text message (FIN=0): close 1003 before the rest")
def b3(c):
    c.send_frame(OP_TEXT, b"fragment1", fin=False)
    expect_fail(c, 1003)


@case("B.4", "empty text frame: close 1003")
def b4(c):
    c.send_frame(OP_TEXT, b"")
    expect_fail(c, 1003)


# ------------------------------------------------------------- runner

def run_case(port, cid, desc, fn, upgrade):
    try:
        with ws.Conn(port) as c:
            if upgrade:
                c.upgrade()
            fn(c)
        return True, ""
    except Fail as e:
        return False, str(e)
    except ws.Timeout:
        return False, "timed out waiting for the node"
    except ws.Eof as e:
        return False, "connection ended unexpectedly (%s)" % e
    except (AssertionError, OSError) as e:
        return False, "%s: %s" % (type(e).__name__, e)


def main():
    chatnode = sys.argv[1]
    only = sys.argv[2:]  # optional case ids, for debugging
    work = nodeproc.workdir("cn-conformance-")
    # Enough connect tokens for one connection per case.
    node = nodeproc.Node(chatnode, work, ["--test-echo", "--ratelimit", "connect=1000:1000",
                                          "--threads", "1"])
    passed = failed = na = 0
    try:
        node.start()
        for cid, desc, fn, reason, upgrade in CASES:
            if only and cid not in only:
                continue
            if fn is None:
                na += 1
                print("N/A  %s %s: %s" % (cid, desc, reason))
                continue
            t0 = time.monotonic()
            ok, why = run_case(node.port, cid, desc, fn, upgrade)
            ms = (time.monotonic() - t0) * 1000
            if ok:
                passed += 1
                print("PASS %s %s (%.0f ms)" % (cid, desc, ms))
            else:
                failed += 1
                print("FAIL %s %s: %s" % (cid, desc, why))
            sys.stdout.flush()
            if node.proc.poll() is not None:
                print("FAIL node exited with %s during %s" % (node.proc.returncode, cid))
                failed += 1
                break
        if node.proc.poll() is None and node.stop() != 0:
            print("FAIL node exit status %s at shutdown" % node.proc.returncode)
            failed += 1
    finally:
        node.kill()
    if failed:
        print("work dir kept: %s" % work)
        with open(node.log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        print("--- node log (tail) ---\n" + tail)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("%d not applicable" % na)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
