#!/usr/bin/python3
"""Acceptance: two chatclient homes exchange 200 messages each way through
a real chatnode while the receiving client library drops, reorders,
duplicates and corrupts deliveries before decryption
(CHATCLIENT_TEST_FAULTS, docs/E2E.md). Every delivery that arrives intact
decrypts to exactly what was sent; duplicates are refused by the ratchet;
corrupted ones are reported with an "error" field and never crash the
client; lost ones are accounted for.

usage: test_exchange.py CHATNODE CHATCLIENT [PER_DIRECTION]
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402

FAULTS = "drop=80,reorder=200,dup=100,corrupt=40"


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    per_dir = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    rounds = 10
    work = nodeproc.workdir("cn-e2e-exchange-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        sent = {}   # id -> (to, text)
        got = {}    # id -> text
        events = {"drop": set(), "hold": set(), "dup_rejected": set(), "dup_accepted": set(),
                  "corrupt": set()}
        errors = {}
        per_round = per_dir // rounds
        for r in range(rounds):
            for src, dst in ((alice, bob), (bob, alice)):
                lines = ["r%02d %s->%s #%03d %s" % (r, src.handle, dst.handle, i, "z" * (i % 7))
                         for i in range(per_round)]
                ids = src.send_lines(dst.handle, lines)
                assert len(ids) == len(lines), "%d of %d acked" % (len(ids), len(lines))
                for i, t in zip(ids, lines):
                    sent[i] = (dst.handle, t)
            for who in (alice, bob):
                msgs, evs, _ = who.recv(faults=FAULTS)
                for kind, mid in evs:
                    events[kind].add(mid)
                for m in msgs:
                    assert m["id"] not in got, "delivered twice: %s" % m["id"]
                    if "error" in m:
                        errors[m["id"]] = m["error"]
                        assert m["text"] is None
                        continue
                    got[m["id"]] = m["text"]
                    assert m["kind"] == "message"
        # A last fault-free drain: nothing may be left behind.
        for who in (alice, bob):
            msgs, _, _ = who.recv()
            for m in msgs:
                assert "error" not in m, m
                got[m["id"]] = m["text"]
        assert len(sent) == 2 * per_round * rounds
        for mid, text in got.items():
            assert mid in sent and sent[mid][1] == text, "wrong plaintext for %s" % mid
        lost = events["drop"]
        assert not events["dup_accepted"], "a duplicate decrypted twice"
        assert set(errors) <= events["corrupt"], "undecryptable without corruption: %s" % (
            set(errors) - events["corrupt"])
        assert set(got) | lost | set(errors) == set(sent), "unaccounted: %d" % len(
            set(sent) - set(got) - lost - set(errors))
        assert events["hold"] and events["dup_rejected"], "faults were not exercised"
        print("sent %d, decrypted %d, dropped %d, reordered %d, duplicates refused %d, "
              "corrupted and reported %d" % (len(sent), len(got), len(lost), len(events["hold"]),
                                             len(events["dup_rejected"]), len(errors)))
        assert node.stop() == 0
        ok = True
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
