#!/usr/bin/python3
"""Crash safety under load: the node is SIGKILLed KILLS times (default 50)
while several senders (chatclient send --stdin, with their outboxes) keep
sending to one offline recipient; it is restarted each time on the same
data directory. Senders ride through the restarts and retry with the same
message ids. At the end the recipient drains its mailbox once and:

- every message a sender saw acknowledged ("sent ID") is there exactly once;
- every message of every sender is there (the outboxes delivered the rest);
- mailbox seqs are exactly 1..N (nothing stored twice, no gap);
- a second drain is empty.

usage: test_sigkill_loop.py CHATNODE CHATCLIENT [KILLS]
"""
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import nodeproc  # noqa: E402

SENDERS = 3
PER_SENDER = 1000
BUDGET_S = 240  # the kill loop; the drain comes after


def client(binary, node, home):
    return [binary, "--server", node.url, "--insecure", "--home", home]


class Sender:
    def __init__(self, chatclient, node, home, name, lines):
        self.lines = lines
        self.acked = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            client(chatclient, node, home) + ["--timeout", "300", "send", "sink", "--stdin",
                                              "--verbose"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write("\n".join(lines) + "\n")
        self.proc.stdin.close()
        self.err = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("sent "):
                with self.lock:
                    self.acked.append(line.split()[1])

    def count(self):
        with self.lock:
            return len(self.acked)


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    work = nodeproc.workdir("cn-sigkill-")
    node = nodeproc.Node(chatnode, work, ["--sync", "batch", "--ratelimit",
                                          "connect=100000:100000"])
    senders = []
    ok = False
    try:
        node.start()
        sink = os.path.join(work, "sink")
        homes = [os.path.join(work, "s%d" % i) for i in range(SENDERS)]
        for home, name in [(sink, "sink")] + [(h, "sender%d" % i) for i, h in enumerate(homes)]:
            subprocess.run(client(chatclient, node, home) + ["register", name], check=True,
                           capture_output=True, timeout=60)
        lines = {i: ["s%d m%04d %s" % (i, k, "x" * random.randint(0, 200))
                     for k in range(PER_SENDER)] for i in range(SENDERS)}
        senders = [Sender(chatclient, node, homes[i], "sender%d" % i, lines[i])
                   for i in range(SENDERS)]

        t0 = time.monotonic()
        done_kills = under_load = 0
        restart_ms = []
        while done_kills < kills and time.monotonic() - t0 < BUDGET_S:
            # Kill after a few more acks (or a short while, if senders are
            # between retries): the node dies in the middle of group commits.
            before = sum(s.count() for s in senders)
            target = before + random.randint(1, 8)
            deadline = time.monotonic() + 3
            while sum(s.count() for s in senders) < target and time.monotonic() < deadline:
                if all(s.proc.poll() is not None for s in senders):
                    break
                time.sleep(0.005)
            under_load += any(s.proc.poll() is None for s in senders)
            node.kill()
            done_kills += 1
            r0 = time.monotonic()
            node.start()
            restart_ms.append((time.monotonic() - r0) * 1000)
        took = time.monotonic() - t0
        acked_during = sum(s.count() for s in senders)
        print("%d SIGKILLs in %.1f s, %d while senders were running (restart %.0f ms mean, "
              "%.0f max); %d acks during the loop" % (
                  done_kills, took, under_load, sum(restart_ms) / len(restart_ms),
                  max(restart_ms), acked_during))
        assert done_kills == kills, "only %d kills within %d s" % (done_kills, BUDGET_S)
        assert under_load == kills, "only %d of %d kills hit a loaded node" % (under_load, kills)

        for s in senders:
            s.proc.wait(timeout=300)
            s.reader.join(30)
            assert s.proc.returncode == 0, "sender exited %d: %s" % (
                s.proc.returncode, "".join(s.err)[-1000:])
        acked = [a for s in senders for a in s.acked]
        total = SENDERS * PER_SENDER
        assert len(set(acked)) == total, "acked %d distinct of %d" % (len(set(acked)), total)

        out = subprocess.run(client(chatclient, node, sink) + ["--timeout", "120", "recv",
                                                               "--json"],
                             check=True, capture_output=True, text=True, timeout=300)
        got = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        ids = [m["id"] for m in got]
        dup = len(ids) - len(set(ids))
        assert dup == 0, "%d messages delivered more than once" % dup
        missing = set(acked) - set(ids)
        assert not missing, "%d acked messages missing, e.g. %s" % (len(missing),
                                                                    sorted(missing)[:3])
        assert set(ids) == set(acked), "delivered ids that were never acked"
        seqs = sorted(m["seq"] for m in got)
        assert seqs == list(range(1, total + 1)), "mailbox seqs are not 1..%d" % total
        for i in range(SENDERS):  # each sender's messages in its order
            texts = [m["text"] for m in got if m["from"] == "sender%d" % i]
            assert texts == lines[i], "sender%d's messages out of order or altered" % i
        again = subprocess.run(client(chatclient, node, sink) + ["recv", "--json"],
                               check=True, capture_output=True, text=True, timeout=60)
        assert again.stdout.strip() == "", "messages were delivered twice"
        assert node.stop() == 0, "node did not stop cleanly"
        ok = True
        print("%d messages from %d senders through %d SIGKILLs: each acked one present exactly "
              "once, seqs 1..%d" % (total, SENDERS, kills, total))
        print("1 passed, 0 failed")
    except AssertionError as e:
        print("FAIL %s" % e)
        print("0 passed, 1 failed")
    finally:
        for s in senders:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work dir kept: %s" % work)
            with open(node.log_path, "rb") as f:
                sys.stdout.write(f.read()[-3000:].decode(errors="replace"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
