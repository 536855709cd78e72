"""Host boot with the firmware in a ROMFS image, as a board runs it.

On an ESP32 or rp2 the firmware is frozen or in a memory-mapped ROMFS
partition: its bytecode runs in place from flash and costs no heap. The
unix port has no such flash, so this reads the image (QL_ROMFS, built by
tools/vdevice.py from the same sources) into one buffer, mounts it with
vfs.VfsRom and imports main from it. The runner enlarges -X heapsize by
exactly the image's size plus the names (qstrs) its modules intern, which a
frozen build keeps in flash, so the firmware gets the heap it asked for.
"""
import os
import sys
import vfs

_img = os.getenv("QL_ROMFS")
if _img:
    _rom = bytearray(os.stat(_img)[6])
    with open(_img, "rb") as _f:
        _f.readinto(_rom)
    vfs.mount(vfs.VfsRom(_rom), "/rom")
    sys.path.insert(0, "/rom")
    del _f
if not os.getenv("QL_ROM_ONLY"):
    import main  # noqa: E402,F401
