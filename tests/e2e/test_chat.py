#!/usr/bin/python3
"""Acceptance: two interactive `chatclient chat` sessions through a real
chatnode. alice sees bob's message, bob's typing notice and the delivered
and read receipts of her own message, all carried as E2E envelopes; the
two sides compute the same safety number.

usage: test_chat.py CHATNODE CHATCLIENT
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402


def chat(binary, node, home, peer, wait):
    return subprocess.Popen([binary, "--server", node.url, "--insecure", "--home", home, "chat",
                             peer, "--wait", str(wait)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)


def read_until(proc, pattern, timeout=30.0):
    """Reads proc's stdout lines until one matches; returns the match."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError("no line matching %r in: %s" % (pattern, "".join(seen)[-2000:]))


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-chat-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    procs = []
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        a = chat(chatclient, node, alice.home, "bob", 30)
        b = chat(chatclient, node, bob.home, "alice", 30)
        procs = [a, b]
        read_until(a, r"chatting with bob")
        read_until(b, r"chatting with alice")
        a.stdin.write("hello bob, it is alice\n")
        a.stdin.flush()
        sid = read_until(a, r"\* sending ([0-9a-f]{8})").group(1)
        read_until(b, r"alice: hello bob, it is alice")
        read_until(a, r"\* delivered %s by bob" % sid)
        b.stdin.write("/typing\n")
        b.stdin.flush()
        read_until(a, r"\* bob is typing")
        b.stdin.write("hi alice\n")  # bob acted: alice's message is read
        b.stdin.flush()
        read_until(a, r"\* read %s by bob" % sid)
        read_until(a, r"bob: hi alice")
        for p in procs:
            p.stdin.write("/quit\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read()
        fa = alice.run("fingerprint", "bob").stdout.split(":", 1)[1].split()
        fb = bob.run("fingerprint", "alice").stdout.split(":", 1)[1].split()
        assert fa == fb and len("".join(fa)) == 60, (fa, fb)
        assert node.stop() == 0
        ok = True
        print("1 passed, 0 failed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work dir kept: %s" % work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
