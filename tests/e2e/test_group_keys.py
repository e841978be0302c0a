#!/usr/bin/python3
"""Acceptance (issue 4, groups and devices): a device linked after a group
member distributed its sender key reads that member's next group message
at once, through a sender key request, without any membership change.

1. alice creates a group with bob and sends; bob's first device reads it.
2. bob links a second device (the phone); alice sends a burst of three
   more without any membership change. The phone keeps them (no key yet)
   and sends alice's device ONE sender key request; alice's device answers
   on its next recv; the phone's next recv shows the three, in order, with
   the group field, each exactly once. bob's first device sees each once.
3. The reverse: the phone sends to the group; alice and bob's first
   device read it.
4. A device of the sender's own user linked later gets the key with the
   next group message, without a request.
5. A request from a device of a user who is no longer a member (bob,
   removed before alice saw the request) is ignored.

usage: test_group_keys.py CHATNODE CHATCLIENT
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convproc  # noqa: E402
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402

LOG = {"CHATCLIENT_LOG": "info"}


def group_texts(msgs, gid):
    return [m["text"] for m in msgs if m.get("group") == gid and m["kind"] == "message"]


def late_device(chatclient, node, work):
    alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice", env=LOG)
    bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob", env=LOG)
    alice.register()
    bob.register()
    gid = alice.run("group", "create", "late phone", "bob").stdout.strip().splitlines()[-1]
    alice.run("group", "send", gid, "before the phone")
    msgs, _, err = bob.recv()
    assert group_texts(msgs, gid) == ["before the phone"], (msgs, err[-1500:])

    phone = convproc.link(chatclient, node, bob, os.path.join(work, "bob-phone"), "phone")
    phone.env.update(LOG)
    burst = ["after the phone %d" % i for i in range(3)]
    for t in burst:
        alice.run("group", "send", gid, t)

    # The phone has no key from alice's device: nothing shown yet, the three
    # wait, and a single request goes out for the whole burst.
    msgs, _, err = phone.recv()
    assert group_texts(msgs, gid) == [], msgs
    assert not [m for m in msgs if m.get("error")], msgs
    assert err.count("event=client.group_pending ") == 3, err[-3000:]
    assert err.count("event=client.sender_key_request ") == 1, err[-3000:]

    # alice's device answers on its next recv (the phone is bob's current
    # device and bob a current member).
    _, _, err = alice.recv()
    assert "event=client.sender_key_answered" in err, err[-3000:]
    assert "sender_key_request_refused" not in err, err[-3000:]

    msgs, _, err = phone.recv()
    got = [m for m in msgs if m.get("group") == gid and m["kind"] == "message"]
    assert [m["text"] for m in got] == burst, (msgs, err[-3000:])
    assert all(m["from"] == "alice" and m.get("group_name") == "late phone" for m in got), got
    # Exactly once: a later recv shows none of them again.
    msgs, _, _ = phone.recv()
    assert group_texts(msgs, gid) == [], msgs
    # bob's first device had the key all along; the answer (it reaches every
    # device of bob) neither repeats nor breaks anything there.
    msgs, _, err = bob.recv()
    assert group_texts(msgs, gid) == burst, (msgs, err[-2000:])
    alice.run("group", "send", gid, "still fine")
    for dev in (bob, phone):
        msgs, _, err = dev.recv()
        assert group_texts(msgs, gid) == ["still fine"], (msgs, err[-2000:])
    print("late device: a burst of %d read after one sender key request" % len(burst))
    return alice, bob, phone, gid


def reverse(alice, bob, phone, gid):
    phone.run("group", "send", gid, "from the phone")
    msgs, _, err = alice.recv()
    got = [m for m in msgs if m.get("group") == gid and m["kind"] == "message"]
    assert [(m["from"], m["text"]) for m in got] == [("bob", "from the phone")], (msgs, err[-2000:])
    msgs, _, err = bob.recv()
    assert group_texts(msgs, gid) == ["from the phone"], (msgs, err[-2000:])
    print("reverse: the new device's group message reached alice and bob's other device")


def own_device(chatclient, node, work, alice, bob, phone, gid):
    """A device of the sender's own user linked later gets the key before
    the next group message (proactively: the approving device's cache
    knows it), so it needs no request."""
    tablet = convproc.link(chatclient, node, alice, os.path.join(work, "alice-tablet"), "tablet")
    tablet.env.update(LOG)
    alice.run("group", "send", gid, "hello from the laptop")
    msgs, _, err = tablet.recv()
    got = [m for m in msgs if m.get("group") == gid and m["kind"] == "message"]
    assert [(m["from"], m["text"]) for m in got] == [("alice", "hello from the laptop")], \
        (msgs, err[-3000:])
    assert "event=client.sender_key_request " not in err, err[-3000:]
    for dev in (bob, phone):
        msgs, _, err = dev.recv()
        assert group_texts(msgs, gid) == ["hello from the laptop"], (msgs, err[-2000:])
    print("own device: a device of the sender's user linked later got the key with the message")


def refusal(chatclient, node, work, alice, bob):
    """A request from a device whose user is no longer a member is not
    answered: bob links a tablet after alice's key went out; alice removes
    bob after her next message, before she sees the tablet's request."""
    gid = alice.run("group", "create", "short lived", "bob").stdout.strip().splitlines()[-1]
    tablet = convproc.link(chatclient, node, bob, os.path.join(work, "bob-tablet"), "tablet")
    tablet.env.update(LOG)
    alice.run("group", "send", gid, "bob may not read this on the tablet")
    msgs, _, err = tablet.recv()
    assert group_texts(msgs, gid) == [], msgs
    assert "event=client.sender_key_request " in err, err[-3000:]
    alice.run("group", "remove", gid, "bob")
    _, _, err = alice.recv()
    assert "event=client.sender_key_request_refused" in err, err[-3000:]
    assert "not a member of the group" in err, err[-3000:]
    assert "event=client.sender_key_answered" not in err, err[-3000:]
    msgs, _, err = tablet.recv()
    assert group_texts(msgs, gid) == [], (msgs, err[-2000:])
    print("refusal: a request from a removed member's device is ignored")


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-group-keys-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    try:
        node.start()
        alice, bob, phone, gid = late_device(chatclient, node, work)
        reverse(alice, bob, phone, gid)
        own_device(chatclient, node, work, alice, bob, phone, gid)
        refusal(chatclient, node, work, alice, bob)
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
