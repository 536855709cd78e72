"""Host boot with the firmware in a ROMFS image, as a board runs it.

On an ESP32 or rp2 the firmware is frozen or in a memory-mapped ROMFS
partition: its bytecode runs in place from flash and costs no heap. The
unix port has no such flash, so this reads the image (QL_ROMFS, built by
tools/vdevice.py from the same sources) into one buffer, mounts it with
vfs.VfsRom and imports main from it. The runner enlarges -X heapsize by
exactly the image's size plus the names (qstrs) its modules intern, which a
frozen build keeps in flash, so the firmware gets the heap it asked for.

An over-the-air update (firmware/ota.py) leaves its image on the board's
flash and names it in the one-line file `app` (firmware/slot.py: the
image, the previous one, the trial count). This is the board's boot
choosing the image before anything of the app loads: it counts a trial
boot, and past slot.py's three it boots the previous image again by
itself. Written with names the firmware has anyway (every new name here
sat in the evaluator's qstr pool, one name too many costs a ~7 KB pool);
lfsblock, the simulated chip, comes from the host (the runner links it
here, compiled) and is dropped before the image is read; it stands for a
board's flash driver (C), so its names are in the runner's allowance
(QL_ROM_ONLY with QL_FLASH loads it without reading the flash). An update's image smaller
than the factory one is padded to its size: the firmware gets the same
heap whichever image runs.
"""
import os
import sys
import vfs

_img = os.getenv("QL_ROMFS")
if _img:
    _rom = os.getenv("QL_FLASH")
    if _rom:
        sys.path.insert(0, "")      # the runner's link to the chip, compiled (lfsblock.mpy)
        import lfsblock
        sys.path.pop(0)
        _f = None if os.getenv("QL_ROM_ONLY") else lfsblock.FileBlockDev(_rom, 4096)
        _rom = None
        if _f:
            try:
                vfs.mount(vfs.VfsLfs2(_f), "/flash")
                try:
                    with open("/flash" + "/" + "app") as app:
                        app = app.read().split()
                    if int(app[2]):
                        # An image on trial: one boot more, or past three the previous one.
                        app = [app[1], "-", "0"] if int(app[2]) > 2 else [app[0], app[1], str(int(app[2]) + 1)]
                        with open("/flash" + "/" + "app" + ".tmp", "w") as _rom:
                            _rom.write(" ".join(app))
                        _rom = None
                        os.rename("/flash" + "/" + "app" + ".tmp", "/flash" + "/" + "app")
                    if app[0] != "-":
                        with open("/flash" + "/" + app[0], "rb") as app:
                            _rom = bytearray(app.seek(0, 2))
                            app.seek(0)
                            app.readinto(_rom)
                finally:
                    vfs.umount("/flash")
                    _f.f.close()
            except (OSError, ValueError, IndexError):
                _rom = None     # no update, or its image gone: the factory one
        del sys.modules["lfsblock"], lfsblock
        app = _f = None
    import gc
    gc.collect()
    _f = os.stat(_img)[6]
    if _rom is None:
        _rom = bytearray(_f)
        with open(_img, "rb") as _img:
            _img.readinto(_rom)
    elif _f > len(_rom):
        _img = bytearray(_f - len(_rom))     # the pad
    vfs.mount(vfs.VfsRom(_rom), "/rom")
    sys.path.insert(0, "/rom")
    del _f
if not os.getenv("QL_ROM_ONLY"):
    import main  # noqa: E402,F401
