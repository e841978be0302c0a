#!/usr/bin/python3
"""Registration policy `invite`: a token from `chatadmin invite create`
registers exactly one user; no token or a used token is refused.

usage: test_invite.py CHATNODE CHATCLIENT CHATADMIN
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nodeproc  # noqa: E402


def main():
    chatnode, chatclient, chatadmin = sys.argv[1:4]
    work = nodeproc.workdir("cn-invite-")
    node = nodeproc.Node(chatnode, work, ["--registration", "invite"], admin=True)
    ok = False

    def register(name, *extra):
        home = os.path.join(work, name)
        return subprocess.run([chatclient, "--server", node.url, "--insecure", "--home", home,
                               "register", name] + list(extra),
                              capture_output=True, text=True, timeout=60)

    try:
        node.start()
        refused = register("mallory")
        assert refused.returncode == 2, refused
        assert "invite" in refused.stderr, refused.stderr
        out = subprocess.run([chatadmin, "--socket", node.admin_socket, "--json", "invite",
                              "create"], capture_output=True, text=True, timeout=30, check=True)
        token = json.loads(out.stdout)["token"]
        assert len(token) == 32
        alice = register("alice", "--invite", token)
        assert alice.returncode == 0, alice
        reused = register("bob", "--invite", token)
        assert reused.returncode == 2, reused
        assert "invalid invite token" in reused.stderr, reused.stderr
        bad = register("carol", "--invite", "not-a-token")
        assert bad.returncode == 2, bad
        # chatadmin's own failure modes: usage and an unreachable node.
        usage = subprocess.run([chatadmin, "--socket", node.admin_socket, "nonsense"],
                               capture_output=True, text=True, timeout=30)
        assert usage.returncode == 2, usage
        assert node.stop() == 0
        gone = subprocess.run([chatadmin, "--socket", node.admin_socket, "stats"],
                              capture_output=True, text=True, timeout=30)
        assert gone.returncode == 5, gone
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
