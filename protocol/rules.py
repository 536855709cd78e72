"""The protocol's field rules in words, for the errors and help a person
reads (the agent's). Derived from the schema in events.py, so the words
cannot drift from the checks; a device never imports this.
"""
import json
import os

from protocol.events import MAX_INT, _INT, _TARGETS, _ENUM, _LIST, _MAX_LIST, _MAX_STR, field

# The 差评 reason categories (GB/T 39734 Annex A): the county's QR page and
# figures, and the agent's default reason screen, all read this one file.
REASONS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reasons.json")


def reason_categories():
    """[{code, zh, short}] from reasons.json: `zh` as a page shows it, `short`
    (1-6 characters) as a terminal's 128-pixel display row does."""
    with open(REASONS_FILE, encoding="utf-8") as f:
        return json.load(f)["reasons"]


def rule(kind, name):
    """One field's rule, e.g. rule("rating", "staff")."""
    typ, allowed = field(kind, name)
    if typ == _INT or typ == _TARGETS:
        lo, hi = allowed or (0, MAX_INT)
        words = "a whole number %d-%d" % (lo, hi)
        return words if typ == _INT else "item names, each with " + words + " (seconds)"
    if typ == _ENUM:
        return "one of " + ", ".join(allowed)
    if typ == _LIST:
        if allowed:
            return ("up to %d entries, each a code, a space and a label of 1-6 characters "
                    "(at most %d characters in all, no control characters)" % (allowed, _MAX_STR))
        return "up to %d texts of 1-%d characters" % (_MAX_LIST, _MAX_STR)
    return "1-%d characters, no control characters (tab, newline, ...)" % _MAX_STR
