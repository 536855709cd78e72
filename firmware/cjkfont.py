"""Draw Chinese text (staff names, fixed screens) on a framebuf display.

Glyphs come from the small QLF1 font file that tools/fontgen.py makes for the
configured strings and the flashing tool copies to flash as font.qlf. Only
the code-point index stays in RAM (2 bytes a glyph); each draw() reads its
glyph bitmaps from flash into one preallocated cell. ASCII uses framebuf's
built-in 8x8 font; a character missing from the file is drawn as a box, so
a name that arrived after the font was made shows up as boxes, not garbage.
"""
import framebuf
from micropython import const

FONT_FILE = "font.qlf"   # relative to the flash root, the firmware's working directory
_HEADER = const(8)       # b"QLF1", u8 size, u8 reserved, u16 count

_path = FONT_FILE
_font = None             # (size, count, index bytes, cell bytearray, cell FrameBuffer) once read
_tried = False           # the file was looked for (absent: boxes until use() names another)
_inverse = None          # palette for c=0: glyph ink drawn as 0, background left alone


def use(path):
    """Draw from the font at `path` from now on (the simulator's flash lives elsewhere)."""
    global _path, _font, _tried
    _path, _font, _tried = path, None, False


def _load():
    global _font, _tried
    if not _tried:
        _tried = True
        try:
            with open(_path, "rb") as f:
                head = f.read(_HEADER)
                if len(head) == _HEADER and head[:4] == b"QLF1":
                    size = head[4]
                    count = head[6] | head[7] << 8
                    index = f.read(2 * count)
                    cell = bytearray((size + 7) // 8 * size)
                    _font = (size, count, index, cell, framebuf.FrameBuffer(cell, size, size, framebuf.MONO_HLSB))
        except OSError:
            pass  # no font on flash: boxes until one is provisioned
    return _font


def size():
    """Height of a text line in pixels: the font's cell, or 8 without a font."""
    font = _load()
    return font[0] if font else 8


def width(s):
    """Pixels that draw(s) advances: 8 per ASCII character, one cell per other."""
    cell = size()
    w = 0
    for ch in s:
        w += 8 if ord(ch) < 128 else cell
    return w


def _find(index, count, code):
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) >> 1
        got = index[2 * mid] | index[2 * mid + 1] << 8
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
    f = None
    try:
        for ch in s:
            code = ord(ch)
            if code < 128:
                fb.text(ch, x, y + ascii_dy, c)
                x += 8
                continue
            i = -1 if font is None else _find(font[2], font[1], code)
            if font is None or i < 0:
                fb.rect(x + 1, y + 1, cell - 2, cell - 2, c)
            else:
                if f is None:
                    f = open(_path, "rb")
                glyph = font[3]
                f.seek(_HEADER + 2 * font[1] + i * len(glyph))
                f.readinto(glyph)
                if c:
                    fb.blit(font[4], x, y, 0)
                else:
                    if _inverse is None:
                        _inverse = framebuf.FrameBuffer(bytearray(b"\x80"), 2, 1, framebuf.MONO_HLSB)
                    fb.blit(font[4], x, y, 1, _inverse)
            x += cell
    finally:
        if f is not None:
            f.close()
    return x
