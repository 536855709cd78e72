# What goes onto an evaluator board: the one list (MicroPython manifest file).
#
# From a board's own manifest in a MicroPython checkout:
#     include("$(PORT_DIR)/boards/manifest.py")
#     include("/path/to/qinglian/firmware/manifest.py", port="esp32")   # or port="rp2"
# makemanifest runs this file with firmware/ as the current directory.
# tools/hallctl/bundle.py runs it too (`shipped(port)`): hallctl install copies
# the same modules to a board's filesystem, and tools/vdevice.py builds the
# virtual device's ROM image from them (with the simulated board in place of
# the port's). Frozen modules run from flash: their bytecode costs no heap.
#
# firmware/*.py is what ships; host-only files (the simulated board, its flash,
# the unix port's ROMFS boot) live in firmware/sim/ and never do.
import os

options.defaults(port="esp32")  # noqa: F821 (makemanifest provides options, module, package, require)

# On the board's filesystem, not frozen: provisioning may replace main.py.
ON_FILESYSTEM = ("main.py",)
# The build recipe itself.
_RECIPE = ("manifest.py",)
# Ports whose boards share board_mcu.py (real pins); any other port, such as
# tools/vdevice.py's "sim", brings its own board module.
_MCU_PORTS = ("esp32", "rp2")


def _frozen(name, port):
    if not name.endswith(".py") or name in ON_FILESYSTEM or name in _RECIPE:
        return False
    if name.startswith("board_"):
        return name == "board_%s.py" % port or (name == "board_mcu.py" and port in _MCU_PORTS)
    return True


for _name in sorted(os.listdir(".")):
    if _frozen(_name, options.port):  # noqa: F821
        module(_name)  # noqa: F821

package("protocol", base_path="..")  # noqa: F821 (the wire protocol, shared with the agent)
require("ssd1306")  # noqa: F821 (micropython-lib display driver)
