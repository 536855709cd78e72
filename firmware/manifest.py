# What a Qinglian evaluator firmware image freezes (MicroPython manifest file).
# Frozen modules run from flash: their bytecode and constants cost no heap.
#
# From a board's own manifest in a MicroPython checkout:
#     include("$(PORT_DIR)/boards/manifest.py")
#     include("/path/to/qinglian/firmware/manifest.py", port="esp32")   # or port="rp2"
# makemanifest runs this file with firmware/ as the current directory.
import os

options.defaults(port="esp32")  # noqa: F821 (makemanifest provides options, module, package, require)

# Stay on the filesystem: main.py so provisioning can replace it; boot.py is the port's.
_ON_FLASH_FS = ("main.py", "boot.py", "manifest.py")
# Host-only: the simulator, its flash image and the unix-port ROMFS boot never ship.
_HOST_ONLY = ("lfsblock.py", "romboot.py")


def _frozen(name, port):
    if not name.endswith(".py") or name in _ON_FLASH_FS or name in _HOST_ONLY or "sim" in name:
        return False
    if name.startswith("board_"):
        return name in ("board_mcu.py", "board_%s.py" % port)
    return True


for _name in sorted(os.listdir(".")):
    if _frozen(_name, options.port):  # noqa: F821
        module(_name)  # noqa: F821

package("protocol", base_path="..")  # noqa: F821 (the wire protocol, shared with the agent)
require("ssd1306")  # noqa: F821 (micropython-lib display driver)
