"""Starts and stops real chatnode processes for the script-driven tests.

Standard library only (Debian's /usr/bin/python3). Waits are observations
with deadlines (a log line, a process exit), never fixed sleeps.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


class Node:
    """One chatnode on a fixed port (so clients can reconnect after a restart)."""

    def __init__(self, binary, workdir, extra=(), admin=False, metrics=False):
        self.binary = binary
        self.dir = workdir
        self.port = free_port()
        self.cert, self.key = make_cert(workdir)
        self.extra = list(extra)
        self.proc = None
        self.log_path = os.path.join(workdir, "node.log")
        self.starts = 0
        self.admin_socket = os.path.join(workdir, "admin.sock") if admin else ""
        self.metrics = "127.0.0.1:0" if metrics else ""
        self.metrics_port = None

    @property
    def url(self):
        return "wss://127.0.0.1:%d" % self.port

    def start(self, timeout=20.0):
        self.starts += 1
        log = open(self.log_path, "ab")
        mark = log.tell()
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:%d" % self.port,
             "--data", os.path.join(self.dir, "data"), "--tls-cert", self.cert,
             "--tls-key", self.key, "--admin-socket", self.admin_socket,
             "--metrics", self.metrics,
             "--threads", "2"] + self.extra,
            stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                text = f.read()
                if re.search(rb"event=listening addr=", text):
                    m = re.search(rb"event=metrics_listening addr=[0-9.]+:([0-9]+)", text)
                    self.metrics_port = int(m.group(1)) if m else None
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("chatnode exited with %s" % self.proc.returncode)
            time.sleep(0.02)
        raise RuntimeError("chatnode did not start listening")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=20.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode if self.proc else 0


def http_get(port, path, timeout=10):
    """Plain HTTP GET on loopback; returns (status, body)."""
    import urllib.request
    import urllib.error
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(predicate, timeout=20.0, what="condition"):
    """Polls predicate until it returns a true value (returned) or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def workdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
