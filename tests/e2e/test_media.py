#!/usr/bin/python3
"""Acceptance (issue 4, media): a 20 MiB upload interrupted halfway (the
sender is killed once its progress line says half is stored) resumes at
the node's offset on the next send-file and completes; the receiver
saves the file under its home and reports its verified SHA-256.

usage: test_media.py CHATNODE CHATCLIENT
"""
import hashlib
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convproc  # noqa: E402
import e2eproc  # noqa: E402
from e2eproc import nodeproc  # noqa: E402

SIZE = 20 * 1024 * 1024
PROGRESS = r"^upload ([0-9a-f]{32}) (\d+)/(\d+)$"


def main():
    chatnode, chatclient = sys.argv[1], sys.argv[2]
    work = nodeproc.workdir("cn-e2e-media-")
    node = nodeproc.Node(chatnode, work)
    ok = False
    try:
        node.start()
        alice = e2eproc.Client(chatclient, node, os.path.join(work, "alice"), "alice")
        bob = e2eproc.Client(chatclient, node, os.path.join(work, "bob"), "bob")
        alice.register()
        bob.register()
        data = os.urandom(SIZE)
        path = os.path.join(work, "holiday.bin")
        with open(path, "wb") as f:
            f.write(data)
        first = convproc.Proc(chatclient, node, alice.home, "send-file", "bob", path, "--verbose",
                              stdin=False)
        while True:
            m = first.expect(PROGRESS, timeout=120)[0]
            media, stored, total = m.group(1), int(m.group(2)), int(m.group(3))
            if stored >= total // 2:
                break
        first.kill()  # mid-upload: the rest of the file never left
        assert stored < total, "the upload finished before it could be interrupted"
        second = convproc.Proc(chatclient, node, alice.home, "send-file", "bob", path,
                               "--verbose", stdin=False)
        m = second.expect(PROGRESS, timeout=120)[0]
        assert m.group(1) == media, "a new upload instead of the interrupted one"
        resumed_at = int(m.group(2))
        assert resumed_at >= stored, (resumed_at, stored)
        second.expect(r"^upload %s %d/%d$" % (media, total, total), timeout=120)
        second.expect(r"^sent file ", timeout=120)
        assert second.close() == 0, "".join(second.err)
        msgs, _, err = bob.recv()
        files = [x for x in msgs if "file" in x]
        assert len(files) == 1, (msgs, err[-2000:])
        want = hashlib.sha256(data).hexdigest()
        assert files[0]["sha256"] == want and files[0]["file_name"] == "holiday.bin", files
        saved = files[0]["file"]
        assert saved.startswith(os.path.join(bob.home, "files") + os.sep), saved
        with open(saved, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want
        assert not re.search(r"undecryptable", err)
        print("20 MiB upload killed at %d/%d bytes, resumed at %d, delivered and verified" %
              (stored, total, resumed_at))
        assert node.stop() == 0
        ok = True
    finally:
        node.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work, file=sys.stderr)
    print("ok")


if __name__ == "__main__":
    main()
