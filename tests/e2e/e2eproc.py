"""Helpers for the E2E acceptance tests: chatclient runs against a
nodeproc.Node (tests/integration/nodeproc.py, imported read-only)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import nodeproc  # noqa: E402,F401  (re-exported)

FAULT_RE = re.compile(r"event=client\.test_(drop|hold|dup_rejected|dup_accepted|corrupt) id=([0-9a-f]{32})")


class Client:
    def __init__(self, binary, node, home, handle, env=None):
        self.binary, self.node, self.home, self.handle = binary, node, home, handle
        self.env = dict(os.environ)
        self.env.pop("CHATCLIENT_TEST_FAULTS", None)
        self.env.update(env or {})

    def run(self, *args, stdin=None, faults=None, timeout=120, check=True):
        env = dict(self.env)
        if faults:
            env["CHATCLIENT_TEST_FAULTS"] = faults
        r = subprocess.run([self.binary, "--server", self.node.url, "--insecure", "--home",
                            self.home] + list(args), input=stdin, capture_output=True, text=True,
                           env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("chatclient %s exited %d: %s" % (" ".join(args), r.returncode,
                                                                 r.stderr[-2000:]))
        return r

    def register(self):
        return self.run("register", self.handle)

    def send_lines(self, to, lines):
        """Sends lines; returns the ids acked, in order."""
        r = self.run("send", to, "--stdin", "--verbose", stdin="\n".join(lines) + "\n")
        return [l.split()[1] for l in r.stdout.splitlines() if l.startswith("sent ")]

    def recv(self, faults=None, wait=0):
        import json
        args = ["recv", "--json"] + (["--wait", str(wait)] if wait else [])
        r = self.run(*args, faults=faults)
        msgs = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        events = FAULT_RE.findall(r.stderr)
        return msgs, events, r.stderr


def scan(paths, needles):
    """Every (file, needle) where a needle's bytes occur in a file under paths."""
    hits = []
    for top in paths:
        for root, _dirs, files in os.walk(top):
            for name in files:
                p = os.path.join(root, name)
                try:
                    with open(p, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for n in needles:
                    if n in data:
                        hits.append((p, n))
    return hits
