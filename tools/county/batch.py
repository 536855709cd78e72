"""A hall's POST body -> (batch id, items), or the 4xx that refuses it whole.

The limits are the county's protection against one hall's bug or a hostile
client: the body is bounded on the wire and after gunzip (a gzip bomb stops
at MAX_JSON_BYTES), the batch in events, and the JSON in nesting depth.
Nothing here touches the store: a refused request stores nothing.
"""
import json
import re
import zlib

MAX_WIRE_BYTES = 8 << 20        # a request body as sent (gzip or not)
MAX_JSON_BYTES = 32 << 20       # after gunzip
MAX_EVENTS = 10000              # per batch
MAX_DEPTH = 32                  # a batch needs 3; an event body that is not a string is kept as its type name
# A batch id is for tracing: printable ASCII, no spaces or control characters.
BATCH_ID = re.compile(r"[\x21-\x7e]{1,64}")


class Refused(Exception):
    """The request as a whole is refused: HTTP `status` with this message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def declared_length(value):
    """The Content-Length header -> bytes to read, checked against the limit."""
    if value is None:
        raise Refused(411, "Content-Length required")
    if not value.strip().isdigit():
        raise Refused(400, "Content-Length must be a whole number of bytes")
    n = int(value)
    if n > MAX_WIRE_BYTES:
        raise Refused(413, "request over %d bytes" % MAX_WIRE_BYTES)
    return n


def decode(raw, encoding):
    """Undo the Content-Encoding (gzip or none), bounded."""
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return raw
    if enc != "gzip":
        raise Refused(415, "unsupported Content-Encoding %s (gzip or none)" % enc[:40])
    try:
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(raw, MAX_JSON_BYTES + 1)
    except zlib.error:
        raise Refused(400, "bad gzip body")
    if len(out) > MAX_JSON_BYTES:
        raise Refused(413, "batch over %d bytes uncompressed" % MAX_JSON_BYTES)
    return out


def parse(raw, hall):
    """JSON text -> (batch id, items). The items' own checks (device, seq,
    body) are records.key()'s: they decide per event, not here."""
    try:
        doc = json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise Refused(400, "body is JSON nested too deep")
    except ValueError:
        raise Refused(400, "body is not JSON (UTF-8, no NaN or Infinity)")
    if type(doc) is not dict or type(doc.get("events")) is not list:
        raise Refused(400, "expected an object with an events list")
    if _depth(doc) > MAX_DEPTH:
        raise Refused(400, "body is JSON nested too deep (over %d levels)" % MAX_DEPTH)
    batch = doc.get("batch")
    if type(batch) is not str or not BATCH_ID.fullmatch(batch):
        raise Refused(400, "batch id must be 1-64 printable ASCII characters without spaces")
    if doc.get("hall") != hall:
        raise Refused(400, "hall in the body differs from the URL")
    if len(doc["events"]) > MAX_EVENTS:
        raise Refused(413, "batch over %d events" % MAX_EVENTS)
    return batch, doc["events"]


def _depth(doc):
    # Iterative, so a deep document cannot exhaust the stack here. A normal
    # batch is objects of strings and numbers: one pass over its items.
    deepest, todo = 1, [(doc, 1)]
    while todo:
        v, d = todo.pop()
        if d > deepest:
            deepest = d
            if d > MAX_DEPTH:
                return d
        children = v.values() if type(v) is dict else v
        for c in children:
            if type(c) is dict or type(c) is list:
                todo.append((c, d + 1))
    return deepest


def _not_json(name):
    raise ValueError("%s is not JSON" % name)
