#!/usr/bin/python3
"""Acceptance (issue 4, groups): a 3-member group with one member offline
gets every message to everyone (the offline one on its next recv), with
the group id and the client-side name; a removed member gets nothing
after its removal. Then a 200-member group: one group send reaches all
200 online devices (kept connected by one `chatclient swarm` process).

usage: test_groups.py CHATNODE CHATCLIENT
"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convproc  # noqa: E402
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402

SWARM = 200
# Two hundred registrations, connections and prekey fetches from one
# address in a few seconds: above the per-IP defaults meant for abuse.
LIMITS = ["--ratelimit", "register=1000/s:1000", "--ratelimit", "connect=2000/s:2000",
          "--ratelimit", "prekey-fetch=2000/s:2000"]


def group_msgs(msgs, gid):
    return [m for m in msgs if m.get("group") == gid and m["kind"] == "message"]


def three_members(chatclient, node, work):
    c = {h: e2eproc.Client(chatclient, node, os.path.join(work, h), h)
         for h in ("alice", "bob", "carol")}
    for x in c.values():
        x.register()
    r = c["alice"].run("group", "create", "weekend plans", "bob", "carol")
    gid = r.stdout.strip().splitlines()[-1]
    assert len(gid) == 32 and int(gid, 16) >= 0, r.stdout
    # bob is online (a chat session), carol is offline throughout.
    bob = convproc.Proc(chatclient, node, c["bob"].home, "chat", "alice", "--wait", "5")
    bob.expect(r"chatting with alice")
    texts = ["group message %d" % i for i in range(5)]
    for t in texts:
        c["alice"].run("group", "send", gid, t)
    for t in texts:
        bob.expect(r"alice @ %s weekend plans: %s$" % (gid[:8], t))
    bob.write("/quit")
    assert bob.close() == 0, "".join(bob.err)
    # bob answers in the group; carol, still offline, gets all of it later.
    c["bob"].run("group", "send", gid, "count me in")
    msgs, _, err = c["carol"].recv()
    got = group_msgs(msgs, gid)
    assert [m["text"] for m in got] == texts + ["count me in"], (got, err[-2000:])
    assert all(m.get("group_name") == "weekend plans" for m in got), got
    assert [m["from"] for m in got] == ["alice"] * 5 + ["bob"], got
    msgs, _, _ = c["alice"].recv()
    assert [m["text"] for m in group_msgs(msgs, gid)] == ["count me in"], msgs
    # carol leaves: the sender key is replaced, she cannot read what follows.
    c["alice"].run("group", "remove", gid, "carol")
    c["alice"].run("group", "send", gid, "after carol left")
    msgs, _, _ = c["bob"].recv()
    assert [m["text"] for m in group_msgs(msgs, gid)] == ["after carol left"], msgs
    msgs, _, _ = c["carol"].recv()
    assert group_msgs(msgs, gid) == [], msgs
    print("3-member group: offline member received %d messages on its next recv" % len(got))


def two_hundred(chatclient, node, work):
    alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
    base = os.path.join(work, "swarm")
    os.makedirs(base)
    sw = convproc.Proc(chatclient, node, base, "swarm", "m", str(SWARM), "--register",
                       "--timeout", "300")
    try:
        swarm_send(chatclient, node, alice, sw)
    finally:
        sw.kill()


def swarm_send(chatclient, node, alice, sw):
    started = time.monotonic()
    sw.expect(r"^ready %d$" % SWARM, timeout=240)
    print("swarm of %d registered and connected in %.1fs" % (SWARM, time.monotonic() - started))
    members = ["m%03d" % i for i in range(SWARM)]
    t0 = time.monotonic()
    r = alice.run("group", "create", "everyone", *members, timeout=300)
    gid = r.stdout.strip().splitlines()[-1]
    t1 = time.monotonic()
    r = alice.run("group", "send", gid, "hello two hundred", check=False)
    # A node whose store refuses sends to more than CN_RECIPIENTS_MAX (64)
    # mailboxes answers UNAVAILABLE to every retry of a 200-device fan-out.
    assert r.returncode == 0, "group send to %d devices failed: %s" % (SWARM, r.stderr[-1000:])
    got = set()
    while len(got) < SWARM:
        m = sw.expect(r'"group":"%s"' % gid, timeout=120)[0]
        line = m.string
        assert '"text":"hello two hundred"' in line, line
        to = line.split('"to":"')[1].split('"')[0]
        got.add(to)
    t2 = time.monotonic()
    assert got == set(members), sorted(set(members) - got)
    print("200-member group: create+key distribution %.1fs, send to all %d devices %.1fs" %
          (t1 - t0, len(got), t2 - t1))
    assert sw.close(120) == 0, "".join(sw.err)[-2000:]


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-groups-")
    node = nodeproc.Node(chatnode, work, extra=LIMITS)
    ok = False
    try:
        node.start()
        three_members(chatclient, node, work)
        two_hundred(chatclient, node, work)
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
