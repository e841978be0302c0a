"""Helpers for the conversation acceptance tests (issue 4): a chatclient
process whose stdout is read line by line with deadlines, and device
linking. Standard library only; waits are observations, never sleeps."""
import atexit
import os
import queue
import re
import subprocess
import threading
import time

import e2eproc  # noqa: F401  (puts tests/integration on the path)
from e2eproc import nodeproc  # noqa: F401


class Proc:
    """A long-running chatclient (chat, swarm, link, send-file) read by a thread."""

    def __init__(self, binary, node, home, *args, stdin=True, env=None):
        e = dict(os.environ)
        e.pop("CHATCLIENT_TEST_FAULTS", None)
        e.update(env or {})
        self.p = subprocess.Popen([binary, "--server", node.url, "--insecure", "--home", home] +
                                  list(args), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  bufsize=1, env=e)
        atexit.register(self.kill)  # no process outlives a failed test
        self.lines = queue.Queue()
        self.seen = []
        self.err = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _pump(f, q):
        for line in f:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _drain(self):
        for line in self.p.stderr:
            self.err.append(line)

    def expect(self, pattern, timeout=60.0):
        """Reads lines until one matches pattern; returns (match, seconds waited)."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m, time.monotonic() - start
        raise AssertionError("no line matching %r; stdout: %s; stderr: %s" %
                             (pattern, "\n".join(self.seen[-30:]), "".join(self.err)[-2000:]))

    def write(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def close(self, timeout=60):
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        return self.p.wait(timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def link(binary, node, old, new_home, name="second"):
    """Links new_home as another device of old's user; returns its Client."""
    p = Proc(binary, node, new_home, "link", old.handle, "--name", name, stdin=False)
    code = p.expect(r"^code: (\S+)$")[0].group(1)
    r = old.run("approve", code)
    assert "approved" in r.stdout and name in r.stdout, r.stdout
    assert p.p.wait(120) == 0, "".join(p.err)
    p.expect(r"^linked: %s [0-9a-f]{64}$" % old.handle)
    return e2eproc.Client(binary, node, new_home, old.handle)
