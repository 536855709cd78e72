"""Make the Chinese bitmap font a window terminal's SSD1306 needs.

A full CJK font will not fit on a small board, and the display only ever
shows a few dozen Chinese characters: the fixed screens (请您评价, 谢谢您的评价,
暂停服务 ...) and the names of the staff on duty. This rasterises exactly those
characters from a font file that a Debian package ships (fonts-wqy-microhei)
into a small binary file that firmware/cjkfont.py draws from.

    python -m tools.fontgen -o build/font.qlf [--config site.json ...] [--size 16] [TEXT ...]

Covered: every non-ASCII string literal in firmware/*.py (the screens'
texts, read from the code so they are written once), every string in the
--config JSON files (the agent's retained device config with "staff": "张三",
or a roster) and every TEXT argument. ASCII is left to the display's
built-in 8x8 font.

File format (little-endian), "QLF1":
    b"QLF1"  u8 size  u8 reserved  u16 count
    count x u16 code point, ascending (BMP only)
    count x glyph bitmap: size rows of (size + 7) // 8 bytes, MONO_HLSB (MSB = left)
"""
import argparse
import ast
import glob
import json
import os
import struct
import sys

DEFAULT_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
FIRMWARE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware")
MAGIC = b"QLF1"
HEADER = struct.Struct("<4sBBH")



class FontError(Exception):
    """The font file, the size or the text cannot make a font for the display."""


def charset(texts):
    """The characters the display must draw from this font: non-ASCII, BMP, no controls."""
    chars = set()
    for text in texts:
        for ch in text:
            if ord(ch) < 128 or ch.isspace():
                continue
            if ord(ch) > 0xFFFF:
                raise FontError("%r (U+%X) is outside the Basic Multilingual Plane" % (ch, ord(ch)))
            chars.add(ch)
    return sorted(chars)


def firmware_strings(folder=FIRMWARE):
    """Non-ASCII string literals in the firmware's modules, docstrings excepted."""
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        docs = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                docs.add(id(body[0].value))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and not node.value.isascii()):
                yield node.value


def strings_in(value):
    """Every string anywhere in a parsed JSON value (keys too: rosters keyed by name)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def rasterise(chars, size, font_path=DEFAULT_FONT):
    """{char: list of `size` rows, each a list of 0/1} rendered without anti-aliasing."""
    from PIL import Image, ImageDraw, ImageFont  # only the generator needs Pillow
    if not os.path.exists(font_path):
        raise FontError("%s is missing: `make setup` installs fonts-wqy-microhei" % font_path)
    try:
        font = ImageFont.truetype(font_path, size, index=0)
    except OSError as e:
        raise FontError("%s: %s" % (font_path, e)) from None
    glyphs = {}
    for ch in chars:
        img = Image.new("1", (size, size), 0)
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"  # hard pixels: the OLED is one bit deep
        # Centre on the em box, not on the ink, so 一 sits mid-line like 十.
        draw.text((size / 2, size / 2), ch, font=font, fill=1, anchor="mm")
        px = img.load()
        glyphs[ch] = [[1 if px[x, y] else 0 for x in range(size)] for y in range(size)]
    return glyphs


def pack(glyphs, size):
    """The QLF1 bytes for {char: rows}."""
    stride = (size + 7) // 8
    chars = sorted(glyphs)
    out = bytearray(HEADER.pack(MAGIC, size, 0, len(chars)))
    for ch in chars:
        out += struct.pack("<H", ord(ch))
    for ch in chars:
        for row in glyphs[ch]:
            bits = bytearray(stride)
            for x, on in enumerate(row):
                if on:
                    bits[x >> 3] |= 0x80 >> (x & 7)
            out += bits
    return bytes(out)


def unpack(data):
    """{char: rows} from QLF1 bytes (the inverse of pack, for tests and `--show`)."""
    magic, size, _, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FontError("not a QLF1 font")
    stride = (size + 7) // 8
    codes = struct.unpack_from("<%dH" % count, data, HEADER.size)
    base = HEADER.size + 2 * count
    glyphs = {}
    for i, code in enumerate(codes):
        g = data[base + i * stride * size: base + (i + 1) * stride * size]
        glyphs[chr(code)] = [[(g[y * stride + (x >> 3)] >> (7 - (x & 7))) & 1 for x in range(size)]
                             for y in range(size)]
    return size, glyphs


def gb2312():
    """Every character of GB2312 (6,763 hanzi plus punctuation and symbols):
    the names staff are given are in it, so a font made at installation draws
    whoever goes on duty later."""
    out = []
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes((hi, lo)).decode("gb2312"))
            except UnicodeDecodeError:
                pass  # unassigned cells of the 94x94 grid
    return "".join(out)


def build(texts, size=16, font_path=DEFAULT_FONT, ui=True, full=False):
    if not 8 <= size <= 32:
        raise FontError("size %d: the 128x64 display wants 8..32 pixels" % size)
    texts = list(texts) + ([gb2312()] if full else [])
    chars = charset(texts + (list(firmware_strings()) if ui else []))
    return pack(rasterise(chars, size, font_path), size)


def show(glyph_rows):
    return "\n".join("".join("#" if on else "." for on in row) for row in glyph_rows)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.fontgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("text", nargs="*", help="extra text to cover, e.g. a staff name")
    ap.add_argument("-o", "--output", required=True, help="font file to write (copy it to the device as font.qlf)")
    ap.add_argument("--config", action="append", default=[], help="JSON file whose strings to cover (repeatable)")
    ap.add_argument("--size", type=int, default=16, help="glyph cell in pixels (default 16: 4 lines of 8 on 128x64)")
    ap.add_argument("--font", default=DEFAULT_FONT, help="TrueType/OpenType file (default: %(default)s)")
    ap.add_argument("--no-ui", action="store_true", help="leave out the firmware's own screen texts")
    ap.add_argument("--gb2312", action="store_true",
                    help="cover all of GB2312 (about 7,400 glyphs, 240 KB at 16 px) so later names draw too")
    ap.add_argument("--show", action="store_true", help="print each glyph as text art")
    args = ap.parse_args(argv)
    texts = list(args.text)
    try:
        for path in args.config:
            try:
                with open(path, encoding="utf-8") as f:
                    texts.extend(strings_in(json.load(f)))
            except (OSError, ValueError) as e:
                raise FontError("%s: %s" % (path, e)) from None
        data = build(texts, args.size, args.font, ui=not args.no_ui, full=args.gb2312)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "wb") as f:
            f.write(data)
    except FontError as e:
        print("fontgen: %s" % e, file=sys.stderr)
        return 1
    size, glyphs = unpack(data)
    if args.show:
        for ch, rows in sorted(glyphs.items()):
            print("%s U+%04X\n%s\n" % (ch, ord(ch), show(rows)))
    print("%s: %d glyphs, %dx%d, %d bytes" % (args.output, len(glyphs), size, size, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
