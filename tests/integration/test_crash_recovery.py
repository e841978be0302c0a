#!/usr/bin/python3
"""Acceptance: alice sends 1,000 messages to an offline bob; the node is
SIGKILLed at a random moment; after a restart bob receives every acked
message exactly once and in order, and alice's outbox delivers the unacked
ones, also exactly once.

usage: test_crash_recovery.py CHATNODE CHATCLIENT [COUNT]
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nodeproc  # noqa: E402


def client(binary, node, home):
    return [binary, "--server", node.url, "--insecure", "--home", home]


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    work = nodeproc.workdir("cn-crash-")
    node = nodeproc.Node(chatnode, work, ["--sync", "batch"])
    alice, bob = os.path.join(work, "alice"), os.path.join(work, "bob")
    ok = False
    try:
        node.start()
        for home, name in ((alice, "alice"), (bob, "bob")):
            subprocess.run(client(chatclient, node, home) + ["register", name], check=True,
                           capture_output=True, timeout=60)
        lines = ["message %04d %s" % (i, "x" * (i % 50)) for i in range(count)]
        # stderr to a file: only stdout is read while the sender runs.
        errlog = open(os.path.join(work, "sender.err"), "w+")
        sender = subprocess.Popen(
            client(chatclient, node, alice) + ["--timeout", "120", "send", "bob", "--stdin",
                                               "--verbose"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True)
        sender.stdin.write("\n".join(lines) + "\n")
        sender.stdin.close()
        sender.stdin = None  # communicate() must not touch it again
        # Kill the node after a random number of durable acks, observed on stdout.
        kill_after = random.randint(1, count - 1)
        acked = []
        while len(acked) < kill_after:
            line = sender.stdout.readline()
            if not line:
                break
            if line.startswith("sent "):
                acked.append(line.split()[1])
        node.kill()
        print("killed the node after %d acks" % len(acked))
        node.start()
        # Keep reading through the same buffered reader: communicate() would
        # read the pipe's descriptor directly and miss the lines readline()
        # had already buffered (which once looked like a client that failed
        # to report an ack).
        for line in sender.stdout:
            if line.startswith("sent "):
                acked.append(line.split()[1])
        sender.wait(timeout=180)
        errlog.seek(0)
        err = errlog.read()
        errlog.close()
        # Exit 0 means the outbox is empty: the node acknowledged every message.
        assert sender.returncode == 0, "send exited %d: %s" % (sender.returncode, err)

        out = subprocess.run(client(chatclient, node, bob) + ["recv", "--json"],
                             check=True, capture_output=True, text=True, timeout=120)
        got = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
        texts = [m["text"] for m in got]
        assert texts == lines, "bob got %d messages, first difference at %s" % (
            len(texts), next((i for i, (a, b) in enumerate(zip(texts, lines)) if a != b),
                             min(len(texts), len(lines))))
        # The node stored each message once: bob's mailbox seqs are exactly 1..count.
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(1, count + 1)), "mailbox seqs are not 1..%d" % count
        # Every message acked before or after the kill was delivered (the
        # verbose `sent` lines are the client's report; the node's mailbox
        # above is the proof of exactly once).
        assert set(acked) <= {m["id"] for m in got}, "an acked message was not delivered"
        assert len(set(acked)) == count, "the client reported only %d acks" % len(set(acked))
        # Acked messages are deleted: a second drain finds nothing.
        again = subprocess.run(client(chatclient, node, bob) + ["recv", "--json"],
                               check=True, capture_output=True, text=True, timeout=60)
        assert again.stdout.strip() == "", "messages were delivered twice"
        assert node.stop() == 0
        ok = True
        print("1 passed, 0 failed")
    finally:
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work dir kept: %s" % work)
            with open(node.log_path, "rb") as f:
                sys.stdout.write(f.read()[-4000:].decode(errors="replace"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
