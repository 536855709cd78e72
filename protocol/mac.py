"""HMAC-SHA256 (RFC 2104) and a constant-time comparison.

CPython uses its own hmac module. MicroPython's hashlib has no copy() and
no digest_size, which the micropython-hmac package on PyPI needs, so the
two-pass construction is written out here; the golden vectors prove both
give the same MAC.
"""
import hashlib
import sys

_BLOCK = 64


def attach(body, tag):
    """The wire bytes: `body` (a JSON object's bytes) with `"mac":tag` as its
    last member. The one place events and sealed messages get their mac."""
    # One join, not a chain of +: each + is another ~300-byte buffer, and on
    # the evaluator's 64 KiB heap those temporaries are what fragments it.
    return b"".join((body[:-1], b',"mac":"', tag.encode(), b'"}'))


if sys.implementation.name == "micropython":
    import binascii

    def digest(key, msg):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(_BLOCK - len(key))
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        inner.update(msg)
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        outer.update(inner.digest())
        return outer.digest()

    def sign(key, msg):
        return binascii.hexlify(digest(key, msg)).decode()

    def equal(a, b):
        # Over the UTF-8 bytes: a[i] of a str is a new one-character str,
        # which MicroPython interns as a qstr; the hex digits of the first
        # MAC a device checked started a new qstr pool, ~7 KB of its heap.
        a, b = memoryview(a), memoryview(b)
        if len(a) != len(b):
            return False
        r = 0
        for i in range(len(a)):     # same time whatever the first difference is
            r |= a[i] ^ b[i]
        return r == 0
else:
    import hmac as _hmac

    def digest(key, msg):
        return _hmac.new(key, msg, hashlib.sha256).digest()

    def sign(key, msg):
        return _hmac.new(key, msg, hashlib.sha256).hexdigest()

    def equal(a, b):
        # compare_digest raises on non-ASCII text: a MAC like that just does not match.
        return a.isascii() and b.isascii() and _hmac.compare_digest(a, b)
