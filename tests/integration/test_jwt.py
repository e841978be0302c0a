#!/usr/bin/python3
"""Registration policy jwt (issue 5): a JWT signed with the configured key
registers; a forged, expired, replayed or other-handle token is refused.
EdDSA tokens are covered by tests/unit/node/test_jwt.c (Python's standard
library has no Ed25519).

usage: test_jwt.py CHATNODE CHATCLIENT
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nodeproc  # noqa: E402

KEY = b"integration-test-secret-of-32+bytes!"


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(sub, jti, exp_in=600, key=KEY, iss="https://idp.test", aud="chatnode"):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": iss, "aud": aud, "sub": sub, "jti": jti,
                           "exp": int(time.time()) + exp_in}).encode())
    sig = hmac.new(key, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def main():
    chatnode, chatclient = sys.argv[1:3]
    work = nodeproc.workdir("cn-jwt-")
    keyfile = os.path.join(work, "hs256.key")
    with open(keyfile, "wb") as f:
        f.write(KEY + b"\n")
    node = nodeproc.Node(chatnode, work, [
        "--registration", "jwt", "--jwt-hs256-key-file", keyfile,
        "--jwt-issuer", "https://idp.test", "--jwt-audience", "chatnode"])
    ok = False

    def register(name, tok):
        return subprocess.run([chatclient, "--server", node.url, "--insecure", "--home",
                               os.path.join(work, name), "register", name, "--jwt", tok],
                              capture_output=True, text=True, timeout=60)

    try:
        node.start()
        good = register("alice", token("alice", "jti-1"))
        assert good.returncode == 0, good
        cases = [
            ("bob", token("bob", "jti-1"), "JWT already used"),          # replayed jti
            ("bob", token("bob", "jti-2", key=b"x" * 40), "bad signature"),  # forged
            ("bob", token("bob", "jti-3", exp_in=-3600), "expired"),
            ("bob", token("carol", "jti-4"), "another handle"),
            ("bob", token("bob", "jti-5", iss="https://evil"), "wrong issuer"),
            ("bob", token("bob", "jti-6", aud="other"), "wrong audience"),
        ]
        for name, tok, reason in cases:
            res = register(name, tok)
            assert res.returncode == 2, (reason, res)
            assert reason in res.stderr, (reason, res.stderr)
        none = subprocess.run([chatclient, "--server", node.url, "--insecure", "--home",
                               os.path.join(work, "dave"), "register", "dave"],
                              capture_output=True, text=True, timeout=60)
        assert none.returncode == 2 and "JWT is required" in none.stderr, none
        # The refused attempts consumed nothing: a fresh token for bob works.
        assert register("bob", token("bob", "jti-7")).returncode == 0
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
