#!/usr/bin/python3
"""Operations acceptance (issue 5), against a live node:
- chatadmin commands and their effect: device list/show, queue show, user
  show/disable, a revoked device is disconnected and cannot reconnect, a
  lowered send limit yields RATE_LIMITED (and chatclient says "rate
  limited"), ratelimit reset, backup, config show, invites with uses;
- /metrics passes promtool and its counters move; /healthz, /readyz;
- an offline device's push gateway gets one wake-up per burst, none for
  online devices.

usage: test_operations.py CHATNODE CHATCLIENT CHATADMIN
"""
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nodeproc  # noqa: E402


class Gateway(http.server.BaseHTTPRequestHandler):
    posts = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Gateway.lock:
            Gateway.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Ops:
    def __init__(self, chatnode, chatclient, chatadmin):
        self.work = nodeproc.workdir("cn-ops-")
        self.gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
        threading.Thread(target=self.gateway.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/wake" % self.gateway.server_address[1]
        self.node = nodeproc.Node(chatnode, self.work, ["--push-gateway", url], admin=True,
                                  metrics=True)
        self.chatclient, self.chatadmin = chatclient, chatadmin

    def client(self, name, *args, timeout=60, check=True, stdin=None):
        cmd = [self.chatclient, "--server", self.node.url, "--insecure", "--home",
               os.path.join(self.work, name)] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check,
                              input=stdin)

    def admin(self, *args, check=True):
        out = subprocess.run([self.chatadmin, "--socket", self.node.admin_socket, "--json"] +
                             list(args), capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, out
            return json.loads(out.stdout) if out.stdout.strip() else None
        return out

    def device_of(self, name):
        return self.client(name, "whoami").stdout.split()[1]

    def metric(self, name):
        status, body = nodeproc.http_get(self.node.metrics_port, "/metrics")
        assert status == 200
        m = re.search(r"^%s (\d+)" % re.escape(name), body, re.M)
        return int(m.group(1)) if m else None


def check_metrics(ops):
    status, body = nodeproc.http_get(ops.node.metrics_port, "/metrics")
    assert status == 200
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is not installed"
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert nodeproc.http_get(ops.node.metrics_port, "/healthz")[0] == 200
    assert nodeproc.http_get(ops.node.metrics_port, "/readyz")[0] == 200
    assert nodeproc.http_get(ops.node.metrics_port, "/nope")[0] == 404


def check_push(ops, bob_dev):
    # bob is offline: a burst of 5 messages yields exactly one wake-up.
    for i in range(5):
        ops.client("alice", "send", "bob", "burst %d" % i)
    nodeproc.wait_for(lambda: len(Gateway.posts) >= 1, what="a wake-up")
    assert Gateway.posts[0] == ("/wake", {"device": bob_dev}), Gateway.posts
    # bob online: messages reach him and no wake-up is made for him; a later
    # wake-up for offline carol proves the sender got past any for bob.
    listener = subprocess.Popen(
        [ops.chatclient, "--server", ops.node.url, "--insecure", "--home",
         os.path.join(ops.work, "bob"), "recv", "--wait", "30", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = []
    while len(got) < 5:
        line = listener.stdout.readline()
        assert line, "bob's recv ended early"
        got.append(json.loads(line))
    ops.client("alice", "send", "bob", "while online")
    while True:
        line = listener.stdout.readline()
        assert line
        if json.loads(line)["text"] == "while online":
            break
    ops.client("alice", "send", "carol", "wake carol")
    carol_dev = ops.device_of("carol")
    nodeproc.wait_for(lambda: any(p[1]["device"] == carol_dev for p in Gateway.posts),
                      what="carol's wake-up")
    assert [p[1]["device"] for p in Gateway.posts].count(bob_dev) == 1, Gateway.posts
    listener.terminate()
    listener.wait()
    assert ops.metric("chatnode_push_wakeups_total") >= 2


def check_admin(ops, alice_dev, bob_dev):
    devices = ops.admin("device", "list")
    assert {d["id"] for d in devices} >= {alice_dev, bob_dev}
    for d in devices:
        assert {"id", "user", "created", "last_seen"} <= set(d)
    assert ops.admin("device", "show", bob_dev)["user"] == "bob"
    q = ops.admin("queue", "show", bob_dev)
    assert int(q["depth"]) == 0 and "oldest_age_s" in q
    ops.client("alice", "send", "bob", "queued for bob")
    q = ops.admin("queue", "show", bob_dev)
    assert int(q["depth"]) == 1 and int(q["bytes"]) > 0
    assert ops.admin("user", "show", "bob")["device1"] == bob_dev
    assert len(ops.admin("user", "list")) >= 3
    cfg = ops.admin("config", "show")
    assert cfg["registration"] == "open" and cfg["sync"] == "batch"
    stats = ops.admin("stats")
    assert int(stats["queued_messages"]) >= 1 and int(stats["devices"]) >= 3
    missing = ops.admin("device", "show", "00" * 32, check=False)
    assert missing.returncode == 3, missing
    assert ops.admin("device", "show", "xyz", check=False).returncode == 2
    backup = os.path.join(ops.work, "backup1")
    ops.admin("backup", backup)
    assert os.path.isfile(os.path.join(backup, "CURRENT"))
    assert ops.admin("backup", backup, check=False).returncode == 4  # exists
    inv = ops.admin("invite", "create", "--uses", "3", "--expires", "1h")
    assert inv["uses"] == "3" and len(inv["token"]) == 32
    help_out = subprocess.run([ops.chatadmin, "ratelimit", "set", "--help"],
                              capture_output=True, text=True)
    assert help_out.returncode == 0 and "--rate" in help_out.stdout


def check_recv_acks(ops, bob_dev):
    """recv acks in batches of 64 that the node answers only on failure
    (silent_ok), then confirms: when it returns, the node has deleted
    everything it handed out. 64 messages are one silent batch and nothing
    left, so the confirmation is the newest seq acked again."""
    ops.client("bob", "recv")
    assert int(ops.admin("queue", "show", bob_dev)["depth"]) == 0
    for count in (64, 70):
        acked = ops.metric("chatnode_messages_acked_total")
        lines = ["ack batch %d/%d" % (i, count) for i in range(count)]
        ops.client("alice", "send", "bob", "--stdin", stdin="\n".join(lines) + "\n")
        assert int(ops.admin("queue", "show", bob_dev)["depth"]) == count
        out = ops.client("bob", "recv", "--json")
        got = [json.loads(l)["text"] for l in out.stdout.splitlines() if l.strip()]
        assert got == lines, got[:3]
        assert int(ops.admin("queue", "show", bob_dev)["depth"]) == 0
        assert ops.metric("chatnode_messages_acked_total") == acked + count


def check_ratelimit(ops, alice_dev):
    ops.admin("ratelimit", "set", "send", "--rate", "1/h", "--burst", "1", "--device", alice_dev)
    listed = ops.admin("ratelimit", "list")
    assert any(p["action"] == "send" and p["device"] == alice_dev for p in listed)
    ops.client("alice", "send", "bob", "one allowed")
    limited = ops.client("alice", "--timeout", "3", "send", "bob", "refused", check=False)
    assert limited.returncode != 0 and "rate limited" in limited.stderr, limited
    before = ops.metric('chatnode_rate_limited_total{action="send"}')
    assert before is None or before >= 0
    ops.admin("ratelimit", "reset", "send", "--device", alice_dev)
    ops.client("alice", "flush")  # the refused message is still in the outbox


def check_keys(ops):
    """keys rotate, then a restart: messages stored before are still delivered."""
    ops.client("alice", "send", "carol", "sealed under key 1")
    keys = ops.admin("keys", "list")
    assert [k["state"] for k in keys if k["id"] == "1"] == ["current"], keys
    assert ops.admin("keys", "rotate")["current"] == "2"
    assert ops.admin("keys", "retire", "2", check=False).returncode == 4  # current
    assert ops.node.stop() == 0
    ops.node.start()
    got = ops.client("carol", "recv", "--json").stdout
    assert "sealed under key 1" in got, got
    # The re-seal pass moves every record to key 2; then key 1 can go.
    nodeproc.wait_for(lambda: any(k["id"] == "1" and k["retirable"] == "yes"
                                  for k in ops.admin("keys", "list")),
                      timeout=60, what="key 1 retirable")
    ops.admin("keys", "retire", "1")
    assert not any(k["id"] == "1" and k["state"] != "retired" for k in ops.admin("keys", "list"))
    assert "resealed" in ops.admin("stats")


def check_revoke_and_disable(ops, bob_dev):
    listener = subprocess.Popen(
        [ops.chatclient, "--server", ops.node.url, "--insecure", "--home",
         os.path.join(ops.work, "bob"), "recv", "--wait", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    nodeproc.wait_for(lambda: int(ops.admin("stats")["devices_online"]) >= 1,
                      what="bob online")
    ops.admin("device", "revoke", bob_dev)
    rc = listener.wait(timeout=60)  # disconnected, then refused on reconnect
    assert rc == 2, (rc, listener.stderr.read())
    again = ops.client("bob", "recv", check=False)
    assert again.returncode == 2 and "revoked" in again.stderr, again
    assert ops.admin("device", "revoke", bob_dev, check=False).returncode == 3
    # The node caches user records (node/usercache.c); the revoke and the
    # disable must be seen by the very next send (alice has sent to both).
    gone = ops.client("alice", "--timeout", "5", "send", "bob", "after revoke", check=False)
    assert gone.returncode == 2 and "unknown user" in gone.stderr, gone
    ops.admin("user", "disable", "carol")
    refused = ops.client("carol", "recv", check=False)
    assert refused.returncode == 2 and "disabled" in refused.stderr, refused
    gone = ops.client("alice", "--timeout", "5", "send", "carol", "after disable", check=False)
    assert gone.returncode == 2 and "unknown user" in gone.stderr, gone
    ops.admin("user", "enable", "carol")
    ops.client("carol", "recv")


def check_admin_revoke_pushes(ops):
    """An operator's revoke tells the user's other devices (DevicesChanged)."""
    ops.client("dave", "register", "dave")
    link = subprocess.Popen(
        [ops.chatclient, "--server", ops.node.url, "--insecure", "--home",
         os.path.join(ops.work, "dave2"), "link", "dave", "--name", "tablet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = None
    for line in link.stdout:
        m = re.match(r"^code: (\S+)$", line.strip())
        if m:
            code = m.group(1)
            break
    assert code, link.stderr.read()
    ops.client("dave", "approve", code)
    assert link.wait(timeout=60) == 0, link.stderr.read()
    tablet = ops.device_of("dave2")
    env = dict(os.environ, CHATCLIENT_LOG="info")
    listener = subprocess.Popen(
        [ops.chatclient, "--server", ops.node.url, "--insecure", "--home",
         os.path.join(ops.work, "dave"), "recv", "--wait", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    nodeproc.wait_for(lambda: int(ops.admin("stats")["devices_online"]) >= 1,
                      what="dave online")
    ops.admin("device", "revoke", tablet)
    time.sleep(3)
    listener.terminate()
    _, err = listener.communicate(timeout=30)
    pushed = [l for l in err.splitlines() if "client.devices_changed" in l]
    assert pushed and "devices=1" in pushed[-1], err


def main():
    ops = Ops(*sys.argv[1:4])
    ok = False
    try:
        ops.node.start()
        for name in ("alice", "bob", "carol"):
            ops.client(name, "register", name)
        alice_dev, bob_dev = ops.device_of("alice"), ops.device_of("bob")
        accepted = ops.metric("chatnode_messages_accepted_total")
        check_push(ops, bob_dev)
        assert ops.metric("chatnode_messages_accepted_total") >= accepted + 7
        check_admin(ops, alice_dev, bob_dev)
        check_recv_acks(ops, bob_dev)
        check_ratelimit(ops, alice_dev)
        check_metrics(ops)
        check_keys(ops)
        check_revoke_and_disable(ops, bob_dev)
        check_admin_revoke_pushes(ops)
        assert ops.node.stop() == 0
        ok = True
        print("1 passed, 0 failed")
    finally:
        ops.node.kill()
        ops.gateway.shutdown()
        if ok:
            shutil.rmtree(ops.work, ignore_errors=True)
        else:
            print("work dir kept: %s" % ops.work)
            with open(ops.node.log_path, "rb") as f:
                sys.stdout.write(f.read()[-3000:].decode(errors="replace"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
