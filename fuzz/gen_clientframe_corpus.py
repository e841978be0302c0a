#!/usr/bin/python3
"""Writes the seed corpus of fuzz/clientframe_fuzz.c: valid ClientFrames of
every request the node serves (and a few it does not), plus edge cases at
the node's limits. Protobuf is encoded by hand (varints and
length-delimited fields), so no protobuf package is needed.

usage: gen_clientframe_corpus.py [OUTDIR]   (default fuzz/corpus/clientframe)
"""
import os
import sys


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint((field << 3) | wire)


def vint(field, n):
    return key(field, 0) + varint(n)


def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def packed(field, values):
    return ld(field, b"".join(varint(v) for v in values))


def frame(rid, body_field, body):
    return vint(1, rid) + ld(body_field, body)


DEV = bytes(range(32))
DEV2 = bytes(range(32, 64))
SIG = bytes([0x5A]) * 64
MSG_ID = bytes(range(16))

# ClientFrame body field numbers (proto/chat.proto).
AUTH, REGISTER, LINK, LINK_APPROVE, REVOKE, UPLOAD, FETCH, SEND, ACK = 10, 11, 12, 13, 14, 15, 16, 17, 18
SUBSCRIBE, UNSUBSCRIBE, SET_PRESENCE, GCREATE, GUPDATE, GGET = 19, 20, 21, 22, 23, 24
MBEGIN, MCHUNK, MEND, MGET, HAPPEND, HQUERY, PING, GET_DEVICES, LIST_THREADS = (
    25, 26, 27, 28, 29, 30, 31, 32, 33)


def envelope(dev, ct):
    return ld(1, dev) + ld(2, ct)


def send(to="bob", envs=((DEV, b"ciphertext"),), kind=0, extra=b""):
    body = ld(1, MSG_ID) + (vint(2, kind) if kind else b"") + ld(3, to)
    for d, c in envs:
        body += ld(4, envelope(d, c))
    return body + extra


def signed_prekey(key_id=1):
    return vint(1, key_id) + ld(2, bytes(32)) + ld(3, SIG)


def otpk(key_id):
    return vint(1, key_id) + ld(2, bytes([key_id & 0xFF]) * 32)


def seeds():
    s = {}
    s["auth"] = frame(1, AUTH, ld(1, DEV) + ld(2, SIG))
    s["auth_short_sig"] = frame(2, AUTH, ld(1, DEV) + ld(2, SIG[:63]))
    s["register"] = frame(1, REGISTER, ld(1, "alice") + ld(2, DEV) + ld(3, SIG) + ld(4, "laptop"))
    s["register_invite"] = frame(1, REGISTER, ld(1, "Alice.B-2") + ld(2, DEV) + ld(3, SIG) +
                                 ld(5, "0123456789abcdef"))
    s["register_long_name"] = frame(1, REGISTER, ld(1, "alice") + ld(2, DEV) + ld(3, SIG) +
                                    ld(4, "n" * 65))
    s["register_bad_handle"] = frame(1, REGISTER, ld(1, "a!") + ld(2, DEV) + ld(3, SIG))
    s["upload_prekeys"] = frame(3, UPLOAD, ld(1, signed_prekey()) +
                                b"".join(ld(2, otpk(i)) for i in range(1, 6)))
    s["upload_100"] = frame(3, UPLOAD, b"".join(ld(2, otpk(i)) for i in range(100)))
    s["upload_101"] = frame(3, UPLOAD, b"".join(ld(2, otpk(i)) for i in range(101)))
    s["upload_empty"] = frame(3, UPLOAD, b"")
    s["fetch"] = frame(4, FETCH, ld(1, "bob"))
    s["fetch_devices"] = frame(4, FETCH, ld(1, "bob") + ld(2, DEV) + ld(2, DEV2))
    s["fetch_17"] = frame(4, FETCH, ld(1, "bob") + ld(2, DEV) * 17)
    s["get_devices"] = frame(5, GET_DEVICES, ld(1, "bob"))
    s["send"] = frame(6, SEND, send())
    s["send_two"] = frame(6, SEND, send(envs=((DEV, b"one"), (DEV2, b"two"))))
    s["send_dup_device"] = frame(6, SEND, send(envs=((DEV, b"one"), (DEV, b"two"))))
    s["send_no_envelopes"] = frame(6, SEND, send(envs=()))
    s["send_typing"] = frame(6, SEND, send(kind=2) + vint(7, 1))
    s["send_bad_kind"] = frame(6, SEND, send(kind=99))
    s["send_group"] = frame(6, SEND, send(extra=ld(5, MSG_ID) + ld(6, b"skct")))
    s["send_64"] = frame(6, SEND, send(envs=[(bytes([i]) * 32, b"c") for i in range(64)]))
    s["send_65"] = frame(6, SEND, send(envs=[(bytes([i]) * 32, b"c") for i in range(65)]))
    s["send_big_ct"] = frame(6, SEND, send(envs=((DEV, b"x" * (64 * 1024 + 1)),)))
    s["ack"] = frame(7, ACK, packed(1, [1, 2, 3, 1 << 63]))
    s["ack_unpacked"] = frame(7, ACK, vint(1, 5) + vint(1, 6))
    s["ack_1025"] = frame(7, ACK, packed(1, range(1, 1026)))
    s["ping"] = frame(8, PING, vint(1, 1700000000000))
    s["ping_empty"] = frame(8, PING, b"")
    s["request_id_zero"] = frame(0, PING, b"")
    s["no_body"] = vint(1, 9)
    s["empty"] = b""
    s["two_bodies"] = vint(1, 10) + ld(PING, b"") + ld(AUTH, ld(1, DEV))
    s["unknown_field"] = frame(11, PING, b"") + ld(99, b"unknown") + key(100, 5) + b"\0\0\0\0"
    s["fixed64_unknown"] = vint(1, 12) + key(50, 1) + b"\1" * 8
    s["link_device"] = frame(13, LINK, ld(1, "alice") + ld(2, DEV) + ld(3, SIG) + ld(4, "phone"))
    s["link_approve"] = frame(13, LINK_APPROVE, ld(1, "123456") + ld(2, DEV) + ld(3, SIG))
    s["revoke"] = frame(14, REVOKE, ld(1, DEV))
    s["subscribe"] = frame(15, SUBSCRIBE, ld(1, "bob") + ld(1, "carol"))
    s["unsubscribe"] = frame(15, UNSUBSCRIBE, ld(1, "bob"))
    s["set_presence"] = frame(15, SET_PRESENCE, vint(1, 1))
    member = ld(1, "bob") + vint(2, 1)
    s["group_create"] = frame(16, GCREATE, ld(1, MSG_ID) + ld(2, member))
    s["group_update"] = frame(16, GUPDATE, ld(1, MSG_ID) + vint(2, 3) + ld(3, member) +
                              ld(4, "carol") + ld(5, member))
    s["group_get"] = frame(16, GGET, ld(1, MSG_ID))
    s["media_begin"] = frame(17, MBEGIN, ld(1, MSG_ID) + vint(2, 1 << 20) + ld(3, "image/png"))
    s["media_chunk"] = frame(17, MCHUNK, ld(1, MSG_ID) + vint(2, 0) + ld(3, b"chunk" * 10))
    s["media_end"] = frame(17, MEND, ld(1, MSG_ID) + ld(2, bytes(32)))
    s["media_get"] = frame(17, MGET, ld(1, MSG_ID) + vint(2, 0) + vint(3, 4096))
    s["history_append"] = frame(18, HAPPEND, ld(1, bytes(32)) + vint(2, 5) + ld(3, MSG_ID) +
                                ld(4, b"sealed"))
    s["history_query"] = frame(18, HQUERY, ld(1, bytes(32)) + vint(2, 0) + vint(3, 50))
    s["list_threads"] = frame(18, LIST_THREADS, b"")
    s["varint_overlong"] = b"\x08" + b"\xff" * 10 + b"\x01"
    s["len_overflow"] = b"\x08\x01\xfa\x01" + b"\xff" * 9 + b"\x01"
    s["nested_truncated"] = frame(6, SEND, send())[:-3]
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "clientframe")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds()), out))


if __name__ == "__main__":
    main()
