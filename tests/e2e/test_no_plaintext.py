#!/usr/bin/python3
"""Acceptance: after an exchange in both directions (messages, a chat
session with receipts and typing), none of the plaintexts occurs in the
node's data directory (RocksDB files including the WAL), nor in its log,
nor in the clients' sealed files (identity, prekeys, sessions, trust).

usage: test_no_plaintext.py CHATNODE CHATCLIENT
"""
import os
import secrets
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-scan-")
    # sync=always: every envelope is in the WAL on disk when the scan runs.
    node = nodeproc.Node(chatnode, work, ["--sync", "always", "--log-level", "debug"])
    ok = False
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        tag = secrets.token_hex(6)
        texts = ["plaintext-%s-%03d the quick brown fox" % (tag, i) for i in range(60)]
        alice.send_lines("bob", texts[:30])
        got, _, _ = bob.recv()
        assert [m["text"] for m in got] == texts[:30]
        bob.send_lines("alice", texts[30:])
        # Leave some envelopes queued in the mailbox (not acked) for the scan.
        alice.send_lines("bob", ["queued-%s-%d" % (tag, i) for i in range(5)])
        chat = subprocess.run(
            [chatclient, "--server", node.url, "--insecure", "--home", alice.home, "chat", "bob",
             "--wait", "2"],
            input="/typing\nchat-line-%s\n" % tag, capture_output=True, text=True, timeout=60)
        assert chat.returncode == 0, chat.stderr
        # alice's chat session drained her mailbox: bob's messages, decrypted.
        shown = [t for t in texts[30:] if ("bob: " + t) in chat.stdout]
        assert shown == texts[30:], chat.stdout[-2000:]
        needles = [t.encode() for t in texts]
        needles += [("queued-%s-%d" % (tag, i)).encode() for i in range(5)]
        needles.append(("chat-line-%s" % tag).encode())
        needles.append(tag.encode())
        # The scanner itself works: it finds a needle planted in a file.
        probe = os.path.join(work, "probe")
        os.mkdir(probe)
        with open(os.path.join(probe, "x"), "wb") as f:
            f.write(b"..." + needles[0] + b"...")
        assert e2eproc.scan([probe], needles[:1]), "scanner broken"
        data = os.path.join(work, "data")
        wal = [n for n in os.listdir(data) if n.endswith(".log")]
        assert wal, "no WAL file to scan"
        assert os.path.getsize(os.path.join(data, wal[0])) > 0 or len(wal) > 1
        targets = [data, node.log_path, os.path.join(alice.home, "sessions"),
                   os.path.join(bob.home, "sessions"), os.path.join(alice.home, "identity"),
                   os.path.join(bob.home, "prekeys"), os.path.join(alice.home, "trust")]
        hits = e2eproc.scan([t for t in targets if os.path.isdir(t)], needles)
        for t in targets:
            if os.path.isfile(t):
                with open(t, "rb") as f:
                    blob = f.read()
                hits += [(t, n) for n in needles if n in blob]
        assert not hits, "plaintext found: %s" % hits[:5]
        # And after a clean shutdown (memtables flushed to SST files).
        assert node.stop() == 0
        hits = e2eproc.scan([data, node.log_path], needles)
        assert not hits, "plaintext found after shutdown: %s" % hits[:5]
        # The receiver still decrypts all of it.
        node.start()
        got, _, _ = bob.recv()
        got_texts = [m["text"] for m in got]
        assert got_texts[:5] == ["queued-%s-%d" % (tag, i) for i in range(5)], got_texts
        assert "chat-line-%s" % tag in got_texts
        assert node.stop() == 0
        ok = True
        print("scanned %d files, %d plaintexts: none found" % (
            sum(len(f) for _, _, f in os.walk(data)), len(needles)))
        print("1 passed, 0 failed")
    finally:
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work dir kept: %s" % work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
