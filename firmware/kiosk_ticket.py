"""The kiosk's queue tickets (排队取号): the menu of queues, the blocks of
numbers it reserved for the time it cannot ask the agent, and the slip it
prints itself for such a ticket.

    tk = Tickets(root)
    tk.set_menu(reply)              # the `queues` reply: the menu, kept on flash
    tk.wants(now)                   # letters whose block is missing, old or nearly used
    tk.add_block(reply)             # the `block` reply, on flash
    got = tk.take("A", now)         # ("A012", "2026-09-28") or None; on flash first
    data = offline_slip(...)        # the ESC/POS bytes of that ticket

Online the agent numbers the ticket and renders its slip (SPEC 'Requests',
`ticket` with "print": true). Offline the kiosk hands out the next number of
its block for that queue and day: the block's `next` goes to flash before
the ticket is shown, written to the outbox or printed, so a reboot never
gives a number twice (a crash between the two leaves a number unused, on
record at the agent as part of the block). Two kiosks never share a block:
the agent takes every number in the transaction that records its block.

The block's `until` (the hall's next midnight, ms, from the agent) ends it:
the kiosk knows no time zone. Without a wall clock (a reboot with no beacon
yet) the kiosk hands out nothing: it cannot tell which day it is.

The device has no GB18030 codec, so its own slip is ASCII (number, queue
letter, day and time) plus the queue's name as the GB18030 bytes the agent
sent with the menu (`name_gb`), when it did.

On flash: queues.json {"hall", "menu": [[letter, name, name_gb], ...],
"blocks": {letter: [day, next, to, until]}}.
"""
import json
from binascii import unhexlify

from app import read_json, write

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int
    const = int

_LOW = const(5)         # numbers left when a fresh block is asked for
_MENU_MAX = const(7)    # keys 1..7: with the title and Back, ten lines of the 240-dot screen
_DAY_MS = const(86400000)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _text(v, n):
    return type(v) is str and 0 < len(v) <= n


def _ascii(v, n):
    # What the kiosk prints itself without a font table: printable ASCII only.
    if not _text(v, n):
        return False
    for b in v.encode():
        if not 0x20 <= b <= 0x7E:
            return False
    return True


class Tickets:
    def __init__(self, root):
        self.path = root + "/queues.json"
        d = read_json(self.path) or {}
        self.hall = d.get("hall")
        self.menu = d.get("menu") or []
        self.blocks = d.get("blocks") or {}

    def _save(self):
        write(self.path, json.dumps({"hall": self.hall, "menu": self.menu, "blocks": self.blocks}).encode())

    def set_menu(self, r):
        """The `queues` reply, checked where it enters; True when it was one."""
        qs = r.get("queues")
        if type(qs) is not list:
            return False
        menu = []
        for q in qs[:_MENU_MAX]:
            if type(q) is not dict:
                return False
            letter, name, gb = q.get("queue"), q.get("name"), q.get("name_gb")
            if type(letter) is not str or len(letter) != 1 or letter not in _LETTERS or not _text(name, 64):
                return False
            if type(gb) is not str or not 0 < len(gb) <= 256:
                gb = None
            else:
                try:
                    unhexlify(gb)
                except ValueError:
                    gb = None
            menu.append([letter, name, gb])
        hall = r.get("hall")
        hall = hall if _ascii(hall, 64) else self.hall
        if menu != self.menu or hall != self.hall:
            self.menu, self.hall = menu, hall
            self._save()
        return True

    def name(self, letter):
        for q in self.menu:
            if q[0] == letter:
                return q
        return None

    def wants(self, now):
        """The menu's letters that need a block: none, of another day, or nearly used."""
        out = []
        for q in self.menu:
            b = self.blocks.get(q[0])
            if b is None or (now and now >= b[3]) or b[2] - b[1] + 1 < _LOW:
                out.append(q[0])
        return out

    def add_block(self, r, letter):
        """The `block` reply for `letter`; True when it was taken. The old
        block's unused numbers stay unused (on record at the agent)."""
        lo, hi, day, until = r.get("from"), r.get("to"), r.get("day"), r.get("until")
        if r.get("queue") != letter or type(lo) is not int or type(hi) is not int or not 0 < lo <= hi \
                or not _ascii(day, 10) or type(until) is not int or until <= 0:
            return False
        self.blocks[letter] = [day, lo, hi, until]
        self._save()
        return True

    def take(self, letter, now):
        """The next number of the letter's block, its `next` on flash first:
        (ticket, day), or None (no block, used up, another day, no clock)."""
        b = self.blocks.get(letter)
        if b is None or not now or now >= b[3] or now < b[3] - _DAY_MS or b[1] > b[2]:
            return None
        n = b[1]
        b[1] = n + 1
        self._save()
        return "%s%03d" % (letter, n), b[0]

    def left(self, letter):
        b = self.blocks.get(letter)
        return 0 if b is None else max(0, b[2] - b[1] + 1)


def offline_slip(ticket, day, hhmm, gb, hall):
    """The ESC/POS bytes of a ticket the kiosk handed out itself: only the
    commands of SPEC 'Print jobs', ASCII text and the agent's GB18030 name."""
    out = bytearray(b"\x1b@\x1c&\x1ba\x01\x1b!\x30")        # reset, GB18030, centre, double size
    out += ticket.encode() + b"\n\x1b!\x00"
    if gb:
        out += unhexlify(gb) + b"\n"
    out += b"Queue " + ticket[:1].encode() + b"\n"
    out += day.encode() + b" " + hhmm.encode() + b"\n"
    if hall:
        out += hall.encode() + b"\n"
    out += b"(offline)\n\x1ba\x00\x1bd\x03\x1dV\x00"        # feed, cut
    return bytes(out)


def hhmm(now, until):
    """The hall's local time of day from the block's `until` (its next midnight)."""
    m = (now - (until - _DAY_MS)) // 60000
    return "%02d:%02d" % (m // 60 % 24, m % 60)
