#!/usr/bin/python3
"""TLS profile of a node (DESIGN.md section 11): TLS 1.3 only, modern
ciphers, no testssl finding rated above LOW.

Runs Debian's testssl (package testssl.sh) against a chatnode on loopback
with an offline, quick option set: no DNS lookups, no CRL/OCSP fetches
(--phone-out is off by default), --fast, and only the checks that concern
the TLS endpoint: protocols (-p), cipher categories (-s), forward secrecy
(-f), ciphers per protocol (-E), server preferences (-P), server defaults incl. certificate (-S) and
vulnerabilities (-U). HTTP security headers (-h) are left out: the port is a
WebSocket endpoint, not a web site, and HSTS has no meaning for it.

The certificate is made here (P-256, 200 days). Three findings describe
that test certificate rather than the node's TLS stack, and are the only
ones tolerated above LOW: cert_chain_of_trust (self-signed),
cert_revocation (no CRL/OCSP URI) and, defensively, cert_trust when it
repeats the former. Every other MEDIUM, HIGH or CRITICAL finding fails, as
does any scanProblem.

usage: test_tls_profile.py CHATNODE
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import nodeproc  # noqa: E402

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
BAD = {"MEDIUM", "HIGH", "CRITICAL"}
CERT_ONLY = {
    "cert_chain_of_trust": "the test certificate is self-signed",
    "cert_revocation": "the test certificate names no CRL or OCSP responder",
    "cert_trust": "the test certificate is self-signed",
}
PROTOCOLS = {"SSLv2": False, "SSLv3": False, "TLS1": False, "TLS1_1": False, "TLS1_2": False,
             "TLS1_3": True}
# docs/PROTOCOL.md: the three TLS 1.3 suites.
ALLOWED_SUITES = {"x1301", "x1302", "x1303"}


def make_cert(directory):
    cert, key = os.path.join(directory, "tls-cert.pem"), os.path.join(directory, "tls-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "200", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def main():
    chatnode = sys.argv[1]
    if not TESTSSL:
        print("FAIL testssl not installed (Debian package testssl.sh; scripts/install-deps.sh)")
        print("0 passed, 1 failed")
        return 1
    work = nodeproc.workdir("cn-tls-")
    node = nodeproc.Node(chatnode, work, ["--threads", "1", "--ratelimit", "connect=1000:1000"])
    node.cert, node.key = make_cert(work)
    results = []

    def verdict(name, ok, detail=""):
        results.append(ok)
        print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""))

    try:
        node.start()
        out = os.path.join(work, "testssl.json")
        t0 = time.monotonic()
        proc = subprocess.run(
            [TESTSSL, "--warnings", "off", "--nodns", "none", "--quiet", "--color", "0",
             "--fast", "--connect-timeout", "10", "--openssl-timeout", "10",
             "-p", "-s", "-E", "-f", "-P", "-S", "-U", "--jsonfile", out,
             "127.0.0.1:%d" % node.port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400)
        took = time.monotonic() - t0
        verdict("testssl ran (%.0f s, exit %d)" % (took, proc.returncode),
                os.path.exists(out), "" if os.path.exists(out) else proc.stdout[-2000:])
        findings = json.load(open(out)) if os.path.exists(out) else []
        by_id = {}
        for f in findings:
            by_id.setdefault(f["id"], []).append(f)

        problems = [f for f in findings if f["id"] == "scanProblem"]
        verdict("no scan problems", not problems, "; ".join(f["finding"] for f in problems))

        for proto, offered in PROTOCOLS.items():
            got = [f["finding"] for f in by_id.get(proto, [])]
            ok = bool(got) and all(g.startswith("offered") == offered for g in got)
            verdict("%s %s" % (proto, "offered" if offered else "not offered"), ok, str(got))

        suites = {f["id"][len("cipher_"):] for f in findings
                  if f["id"].startswith("cipher_x") or f["id"].startswith("cipher-tls1_3_x")}
        suites = {s.split("_")[-1] for s in suites}
        verdict("only the TLS 1.3 suites of docs/PROTOCOL.md", bool(suites) and
                suites <= ALLOWED_SUITES, "offered: %s" % sorted(suites))

        bad = [f for f in findings if f["severity"] in BAD and f["id"] not in CERT_ONLY]
        verdict("no finding above LOW", not bad,
                "; ".join("%s %s: %s" % (f["id"], f["severity"], f["finding"]) for f in bad))
        for f in findings:
            if f["severity"] in BAD and f["id"] in CERT_ONLY:
                print("note: tolerated %s %s (%s): %s" % (f["id"], f["severity"], f["finding"],
                                                          CERT_ONLY[f["id"]]))
        verdict("node still running after the scan", node.proc.poll() is None)
        verdict("node stops cleanly", node.stop() == 0)
    finally:
        node.kill()
    failed = results.count(False)
    if failed:
        print("work dir kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (results.count(True), failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
