#!/usr/bin/python3
"""Acceptance (issue 4, presence): alice's `chat bob` shows bob offline,
then online within 2 s of bob connecting, then offline with a last-seen
time within 2 s of bob disconnecting (PresenceEvents from the node). A
user who hides presence is shown offline without a last-seen time.

usage: test_presence.py CHATNODE CHATCLIENT
"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convproc  # noqa: E402
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402

FLIP_S = 2.0


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-presence-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    procs = []
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        a = convproc.Proc(chatclient, node, alice.home, "chat", "bob", "--wait", "2")
        procs.append(a)
        a.expect(r"\* bob is offline")
        # bob connects: the flip is timed from bob's connection (his chat
        # reports alice's presence once it is signed in).
        b = convproc.Proc(chatclient, node, bob.home, "chat", "alice", "--wait", "2")
        procs.append(b)
        b.expect(r"\* alice is online")
        connected = time.monotonic()
        a.expect(r"\* bob is online", timeout=10)
        up = time.monotonic() - connected
        assert up < FLIP_S, "online shown after %.2fs" % up
        b.write("/quit")
        assert b.close() == 0, "".join(b.err)
        gone = time.monotonic()
        a.expect(r"\* bob is offline \(last seen \d{4}-\d\d-\d\dT", timeout=10)
        down = time.monotonic() - gone
        assert down < FLIP_S, "offline shown after %.2fs" % down
        # Hidden presence: offline, never a last-seen time.
        bob.run("presence", "hide")
        a.expect(r"\* bob is offline$")  # hidden: no last-seen time
        mark = len(a.seen)
        b = convproc.Proc(chatclient, node, bob.home, "chat", "alice", "--wait", "2")
        procs.append(b)
        b.expect(r"\* alice is online")
        b.write("hello from a hidden bob")
        a.expect(r"bob: hello from a hidden bob")
        assert not any("bob is online" in l for l in a.seen[mark:]), a.seen
        b.write("/quit")
        assert b.close() == 0
        a.write("/quit")
        assert a.close() == 0, "".join(a.err)
        print("presence flipped online in %.2fs and offline in %.2fs" % (up, down))
        assert node.stop() == 0
        ok = True
    finally:
        for p in procs:
            p.kill()
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work, file=sys.stderr)
    print("ok")


if __name__ == "__main__":
    main()
