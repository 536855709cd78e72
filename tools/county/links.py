"""Signed rating links (一事一评 by QR): `<county base>/r/<hall>/<kind>/<id>/<sig>`.

kind is `case` or `ticket`; sig is the first 16 bytes, hex, of
HMAC-SHA256(hall_link_key, "<kind>:<id>"), and hall_link_key is
HMAC-SHA256(county secret, "link:" + hall). The county gives each hall its
key (GET /v1/halls/<hall>/link-key) so the hall's agent can sign ticket
links offline; one hall's key signs nothing for another.
"""
import hashlib
import hmac
import urllib.parse

KINDS = ("case", "ticket")


def hall_key(secret, hall):
    return hmac.new(secret.encode(), ("link:" + hall).encode(), hashlib.sha256).digest()


def sign(key, kind, ident):
    return hmac.new(key, ("%s:%s" % (kind, ident)).encode(), hashlib.sha256).digest()[:16].hex()


def url(base, secret, hall, kind, ident):
    return "%s/r/%s/%s/%s/%s" % (base.rstrip("/"), hall, kind, urllib.parse.quote(ident, safe=""),
                                sign(hall_key(secret, hall), kind, ident))


def valid(secret, hall, kind, ident, sig):
    return kind in KINDS and hmac.compare_digest(sign(hall_key(secret, hall), kind, ident), sig.lower())
