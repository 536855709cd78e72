"""Chinese on the SSD1306: tools/fontgen.py rasterises the configured strings
with Pillow on CPython, and firmware/cjkfont.py, running on the real
MicroPython unix port, draws them into a framebuf pixel for pixel as Pillow
rendered them."""
import json
import os
import subprocess
import sys

import pytest

from tools import fontgen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
W, H = 128, 64

pytestmark = pytest.mark.skipif(not os.path.exists(fontgen.DEFAULT_FONT),
                                reason="fonts-wqy-microhei missing: run `make setup`")


def on_device(font_path, body):
    """Run `body` under MicroPython with cjkfont on a 128x64 MONO_VLSB framebuf (the
    SSD1306's layout) named fb; return the screen as rows of '0'/'1'."""
    script = "\n".join([
        "import framebuf, cjkfont",
        "cjkfont.use(%r)" % font_path,
        "fb = framebuf.FrameBuffer(bytearray(%d), %d, %d, framebuf.MONO_VLSB)" % (W * H // 8, W, H),
        body,
        "for y in range(%d):" % H,
        "    print(''.join('1' if fb.pixel(x, y) else '0' for x in range(%d)))" % W,
    ])
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=64k", "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware")), timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    rows = r.stdout.split()
    assert len(rows) == H
    return rows


def blank(fill="0"):
    return [[fill] * W for _ in range(H)]


def paste(screen, rows, x, y, ink="1"):
    for dy, row in enumerate(rows):
        for dx, on in enumerate(row):
            if on and 0 <= x + dx < W and 0 <= y + dy < H:
                screen[y + dy][x + dx] = ink


def box(screen, x, y, size):
    for i in range(1, size - 1):
        for px, py in ((x + i, y + 1), (x + i, y + size - 2), (x + 1, y + i), (x + size - 2, y + i)):
            screen[py][px] = "1"


def text(screen):
    return ["".join(r) for r in screen]


@pytest.fixture(scope="module")
def font(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("font") / "font.qlf")
    assert fontgen.main(["-o", path, "张三", "李四"]) == 0
    return path


def test_staff_name_pixels_match_pillow(font):
    got = on_device(font, "cjkfont.draw(fb, '张三', 5, 3)")
    ref = fontgen.rasterise("张三", 16)
    want = blank()
    paste(want, ref["张"], 5, 3)
    paste(want, ref["三"], 5 + 16, 3)
    assert sum(r.count("1") for r in got) > 40  # real ink, not an empty screen
    assert got == text(want)


def test_mixed_line_ascii_builtin_font_and_missing_glyph_box(font):
    # 王 is not in the font (made for 张三 李四 and the UI strings): a box, not garbage.
    got = on_device(font, "x = cjkfont.draw(fb, 'A03李王', 0, 40)\n"
                          "ref = framebuf.FrameBuffer(bytearray(%d), %d, %d, framebuf.MONO_VLSB)\n"
                          "ref.text('A03', 0, 44)\n"
                          "assert x == 24 + 32, x\n"
                          "assert all(fb.pixel(i, j) == ref.pixel(i, j) for i in range(24) for j in range(64))"
                          % (W * H // 8, W, H))
    want = blank()
    ref = fontgen.rasterise("李", 16)
    paste(want, ref["李"], 24, 40)
    box(want, 40, 40, 16)
    assert [r[24:] for r in got] == [r[24:] for r in text(want)]
    assert "1" in "".join(r[:24] for r in got[44:52])


def test_colour_zero_draws_ink_dark_on_a_lit_background(font):
    got = on_device(font, "fb.fill(1)\ncjkfont.draw(fb, '请评价', 10, 20, 0)")
    ref = fontgen.rasterise("请评价", 16)
    want = blank("1")
    for i, ch in enumerate("请评价"):
        paste(want, ref[ch], 10 + 16 * i, 20, ink="0")
    assert got == text(want)


def test_without_a_font_file_every_character_is_a_box(tmp_path):
    got = on_device(str(tmp_path / "absent.qlf"), "assert cjkfont.width('张三') == 16\ncjkfont.draw(fb, '张三', 0, 0)")
    want = blank()
    box(want, 0, 0, 8)
    box(want, 8, 0, 8)
    assert got == text(want)


def test_file_format_round_trips_and_stays_small(font):
    data = open(font, "rb").read()
    size, glyphs = fontgen.unpack(data)
    assert size == 16 and {"张", "三", "李", "四", "请", "谢", "暂"} <= set(glyphs)
    assert glyphs["三"] == fontgen.rasterise("三", 16)["三"]
    assert len(data) == 8 + len(glyphs) * (2 + 32)
    assert len(data) < 4096  # well inside one littlefs block set; index in RAM is 2 bytes/glyph


def test_config_strings_are_covered_and_errors_are_one_line(tmp_path, capsys):
    conf = tmp_path / "device.json"
    conf.write_text(json.dumps({"window": "A03", "staff": "欧阳娜娜", "staff_no": "1024"}, ensure_ascii=False))
    out = tmp_path / "f.qlf"
    assert fontgen.main(["-o", str(out), "--no-ui", "--config", str(conf)]) == 0
    assert sorted(fontgen.unpack(out.read_bytes())[1]) == sorted(set("欧阳娜娜"))
    r = subprocess.run([sys.executable, "-m", "tools.fontgen", "-o", str(out), "--font", "/nonexistent.ttc", "张"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "fontgen: /nonexistent.ttc is missing: `make setup` installs fonts-wqy-microhei\n"


def test_screen_texts_come_from_the_firmware_code(font, tmp_path):
    (tmp_path / "screen.py").write_text('"""文档 is not shown."""\n'
                                        'def f():\n    """说明"""\n    return ("Hello", "你好")\n', encoding="utf-8")
    assert list(fontgen.firmware_strings(str(tmp_path))) == ["你好"]
    # Whatever the evaluator's screens say in Chinese is in the font it ships with.
    shown = set(fontgen.charset(fontgen.firmware_strings()))
    assert shown and shown <= set(fontgen.unpack(open(font, "rb").read())[1])


def test_gb2312_font_draws_a_name_nobody_configured(tmp_path):
    # Staff change after installation: the full font must draw a name given
    # to no tool, with only the header in RAM (64k heap, index searched on flash).
    path = str(tmp_path / "full.qlf")
    assert fontgen.main(["-o", path, "--gb2312"]) == 0
    assert os.path.getsize(path) > 200000
    got = on_device(path, "cjkfont.draw(fb, '欧阳晓燕', 0, 20)")
    ref = fontgen.rasterise("欧阳晓燕", 16)
    want = blank()
    for i, ch in enumerate("欧阳晓燕"):
        paste(want, ref[ch], 16 * i, 20)
    assert got == text(want)
