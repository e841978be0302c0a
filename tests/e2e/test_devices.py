#!/usr/bin/python3
"""Acceptance (issue 4, several devices and history):

1. A user with two devices sees both sides of a conversation on both:
   what bob sends reaches both of alice's devices; what one of alice's
   devices sends reaches bob and, as a sync copy naming the peer, alice's
   other device ("me -> bob").
2. A newly linked device reads the last 100 messages of a conversation
   from the history archive (keys handed over by the approving device).
3. `devices` lists both, `device revoke` removes one.

usage: test_devices.py CHATNODE CHATCLIENT
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convproc  # noqa: E402
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402


def texts(msgs):
    return [m["text"] for m in msgs if m["kind"] == "message"]


def both_sides(chatclient, node, work, alice, bob):
    phone = convproc.link(chatclient, node, alice, os.path.join(work, "alice-phone"), "phone")
    ids = phone.run("whoami").stdout.split()
    listing = alice.run("devices").stdout
    assert ids[1] in listing and "phone" in listing and "(this device)" in listing, listing
    assert len(listing.strip().splitlines()) == 2, listing
    bob.run("send", "alice", "hi alice, it is bob")
    for dev in (alice, phone):
        msgs, _, err = dev.recv()
        assert texts(msgs) == ["hi alice, it is bob"], (msgs, err[-1500:])
        assert msgs[0]["from"] == "bob" and "peer" not in msgs[0], msgs
    alice.run("send", "bob", "hello bob from the laptop")
    phone.run("send", "bob", "and from the phone")
    msgs, _, _ = bob.recv()
    assert texts(msgs) == ["hello bob from the laptop", "and from the phone"], msgs
    msgs, _, _ = phone.recv()
    assert [(m["from"], m.get("peer"), m["text"]) for m in msgs] == [
        ("alice", "bob", "hello bob from the laptop")], msgs
    msgs, _, _ = alice.recv()
    assert [(m["from"], m.get("peer"), m["text"]) for m in msgs] == [
        ("alice", "bob", "and from the phone")], msgs
    # The text view says who it was for.
    alice.run("send", "bob", "one more")
    out = phone.run("recv").stdout
    assert "me -> bob: one more" in out, out
    print("two devices: both sides of the conversation on both")
    return phone


def history(chatclient, node, work, alice, bob):
    mine = ["alice says %d" % i for i in range(60)]
    theirs = ["bob says %d" % i for i in range(60)]
    alice.send_lines("bob", mine)
    bob.send_lines("alice", theirs)
    msgs, _, _ = alice.recv()
    assert texts(msgs) == theirs, msgs
    tablet = convproc.link(chatclient, node, alice, os.path.join(work, "alice-tablet"), "tablet")
    r = tablet.run("history", "--with", "bob", "--limit", "100", "--json")
    entries = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(entries) == 100, (len(entries), r.stderr[-1500:])
    got = [e["text"] for e in entries]
    # The original device's archive (these 120 and the 4 above): the new device's 100 are its
    # newest 100, in the same order (the window sends alice's messages out
    # of order, so the node's times decide which 40 of hers are the newest).
    full = [json.loads(l) for l in alice.run("history", "--with", "bob", "--limit", "500",
                                              "--json").stdout.splitlines() if l.strip()]
    assert set(mine + theirs) <= {e["text"] for e in full} and len(full) == 124, len(full)
    assert got == [e["text"] for e in full][-100:], got
    assert set(theirs) <= set(got) and len(set(got) & set(mine)) == 40, got
    assert [e["ts"] for e in entries] == sorted(e["ts"] for e in entries), "not chronological"
    assert all(e["peer"] == "bob" for e in entries), entries[:3]
    assert {e["from"] for e in entries} == {"alice", "bob"}
    conv = tablet.run("conversations").stdout.splitlines()
    assert conv and conv[0].endswith(" bob"), conv
    print("linked device read the last %d messages from history" % len(entries))
    return tablet


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-devices-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        phone = both_sides(chatclient, node, work, alice, bob)
        tablet = history(chatclient, node, work, alice, bob)
        tid = tablet.run("whoami").stdout.split()[1]
        r = alice.run("device", "revoke", tid)
        assert "revoked" in r.stdout, r.stdout
        listing = phone.run("devices").stdout
        assert tid not in listing and len(listing.strip().splitlines()) == 2, listing
        assert tablet.run("recv", check=False).returncode != 0  # refused: revoked
        bob.run("send", "alice", "after the revocation")
        msgs, _, _ = phone.recv()
        assert texts(msgs)[-1] == "after the revocation", msgs
        assert node.stop() == 0
        ok = True
    finally:
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work, file=sys.stderr)
    print("ok")


if __name__ == "__main__":
    main()
