"""Text that came from a device, made safe for a technician's terminal.

A device chooses its `fw`, the alarm names in its status and, on a board on
the bench, everything in its files. An escape sequence in any of them
(ESC, the 8-bit CSI, a bidi override) printed raw would rewrite the
terminal that shows it; so every tool prints such text through here:
control and format characters become visible escapes, Chinese and every
other printable character stay as they are.
"""
import json
import unicodedata

# Controls (C0, DEL, C1), format characters (bidi overrides, zero widths),
# line and paragraph separators, lone surrogates.
_HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs")


def _hidden(ch):
    return unicodedata.category(ch) in _HIDDEN


def printable(text):
    """One line for a terminal: hidden characters as \\xNN, \\uNNNN or \\UNNNNNNNN."""
    text = str(text)
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if not _hidden(ch):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append("\\x%02x" % ord(ch))
        elif ord(ch) < 0x10000:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append("\\U%08x" % ord(ch))
    return "".join(out)


def dumps(value, **kw):
    """JSON for a terminal: readable Chinese, every hidden character as a \\u escape
    (json.dumps itself escapes only C0 controls when it keeps non-ASCII)."""
    text = json.dumps(value, ensure_ascii=False, **kw)
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch < " " or not _hidden(ch):
            out.append(ch)   # raw C0 here is indentation: json.dumps escaped those in strings
        elif ord(ch) < 0x10000:
            out.append("\\u%04x" % ord(ch))
        else:   # JSON escapes only UTF-16 units: a surrogate pair
            n = ord(ch) - 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (n >> 10), 0xDC00 + (n & 0x3FF)))
    return "".join(out)
