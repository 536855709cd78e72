"""Draw Chinese text (staff names, fixed screens) on a framebuf display.

Glyphs come from the QLF1 font file that tools/fontgen.py makes and the
flashing tool copies to flash as font.qlf: by default every GB2312 character,
so a staff name pushed by the agent months after installation still draws.
Nothing of the file stays in RAM but its header and one open file: draw()
binary-searches the code-point index on flash and reads each glyph into one
preallocated cell. The file stays open from the first draw: opening it per
draw asked the fragmented heap for a fresh ~640-byte block every second. ASCII uses framebuf's
built-in 8x8 font; a character missing from the file is drawn as a box, so
a name that arrived after the font was made shows up as boxes, not garbage.
"""
import framebuf
from micropython import const

FONT_FILE = "font.qlf"   # relative to the flash root, the firmware's working directory
_HEADER = const(8)       # b"QLF1", u8 size, u8 reserved, u16 count

_path = FONT_FILE
# (size, count, index bytes, cell bytearray, cell FrameBuffer, file) once
# read; None: not looked for yet; (): looked for and absent (boxes until
# use() names another). One global, not two: each name is a qstr in the heap.
_font = None
_inverse = None          # palette for c=0: glyph ink drawn as 0, background left alone


def use(path):
    """Draw from the font at `path` from now on (the simulator's flash lives elsewhere)."""
    global _path, _font
    if _font:
        _font[5].close()
    _path, _font = path, None


def _load():
    global _font
    if _font is None:
        _font = ()
        try:
            f = open(_path, "rb")
        except OSError:
            return None  # no font on flash: boxes until one is provisioned
        head = f.read(_HEADER)
        if len(head) == _HEADER and head[:4] == b"QLF1":
            size = head[4]
            count = head[6] | head[7] << 8
            cell = bytearray((size + 7) // 8 * size)
            _font = (size, count, bytearray(2), cell,
                     framebuf.FrameBuffer(cell, size, size, framebuf.MONO_HLSB), f)
        else:
            f.close()
    return _font or None


def size():
    """Height of a text line in pixels: the font's cell, or 8 without a font."""
    font = _load()
    return font[0] if font else 8


def width(s):
    """Pixels that draw(s) advances: 8 per ASCII character, one cell per other."""
    cell = size()
    w = 0
    for b in memoryview(s):     # UTF-8 bytes: see draw()
        if b < 0x80:
            w += 8
        elif b >= 0xC0:         # a lead byte; continuation bytes (10xxxxxx) add nothing
            w += cell
    return w


def _find(f, probe, count, code):
    # The sorted index lives on flash: ~13 two-byte reads for all of GB2312.
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) >> 1
        f.seek(_HEADER + 2 * mid)
        f.readinto(probe)
        got = probe[0] | probe[1] << 8
        if got < code:
            lo = mid + 1
        elif got > code:
            hi = mid
        else:
            return mid
    return -1


def draw(fb, s, x, y, c=1):
    """Draw `s` with its top-left at x, y in colour c; return the x after it."""
    global _inverse
    font = _load()
    cell = font[0] if font else 8
    ascii_dy = (cell - 8) // 2  # centre the 8x8 font on the line
    # Walk the UTF-8 bytes, not the characters: iterating a str makes each
    # non-ASCII character a str of its own, which MicroPython interns as a
    # qstr kept for good (a new qstr pool is a fresh ~640-byte block).
    b = memoryview(s)
    n = len(b)
    i = k = 0               # byte index, character index
    run = -1                # character index where a run of ASCII began
    while i < n:
        code = b[i]
        if code < 0x80:
            if run < 0:
                run = k
            i += 1
            k += 1
            continue
        if run >= 0:
            x = _ascii(fb, s, run, k, x, y + ascii_dy, c)
            run = -1
        if code >= 0xF0:
            code, more = code & 0x07, 3
        elif code >= 0xE0:
            code, more = code & 0x0F, 2
        else:
            code, more = code & 0x1F, 1
        for j in range(i + 1, min(i + 1 + more, n)):
            code = code << 6 | (b[j] & 0x3F)
        i += 1 + more
        k += 1
        g = -1 if font is None else _find(font[5], font[2], font[1], code)
        if font is None or g < 0:
            fb.rect(x + 1, y + 1, cell - 2, cell - 2, c)
        else:
            f, glyph = font[5], font[3]
            f.seek(_HEADER + 2 * font[1] + g * len(glyph))
            f.readinto(glyph)
            if c:
                fb.blit(font[4], x, y, 0)
            else:
                if _inverse is None:
                    _inverse = framebuf.FrameBuffer(bytearray(b"\x80"), 2, 1, framebuf.MONO_HLSB)
                fb.blit(font[4], x, y, 1, _inverse)
        x += cell
    if run >= 0:
        x = _ascii(fb, s, run, k, x, y + ascii_dy, c)
    return x


def _ascii(fb, s, start, end, x, y, c):
    # Characters start..end of s, all ASCII, in the 8x8 font. A slice is a
    # new str, never interned.
    fb.text(s[start:end], x, y, c)
    return x + 8 * (end - start)
