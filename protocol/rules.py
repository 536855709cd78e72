"""The protocol's field rules in words, for the errors and help a person
reads (the agent's). Derived from the schema in events.py, so the words
cannot drift from the checks; a device never imports this.
"""
from protocol.events import MAX_INT, _INT, _TARGETS, _ENUM, _MAX_STR, field


def rule(kind, name):
    """One field's rule, e.g. rule("rating", "staff")."""
    typ, allowed = field(kind, name)
    if typ == _INT or typ == _TARGETS:
        lo, hi = allowed or (0, MAX_INT)
        words = "a whole number %d-%d" % (lo, hi)
        return words if typ == _INT else "item names, each with " + words + " (seconds)"
    if typ == _ENUM:
        return "one of " + ", ".join(allowed)
    return "1-%d characters, no control characters (tab, newline, ...)" % _MAX_STR
