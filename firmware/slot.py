"""Which app image a board boots: the factory one, or an update's (OTA).

The choice is one line on flash, `app`: the active image's file, the
previous one's, and the trial count, e.g. `b.rom a.rom 1`; `-` is the
board's own (factory) image. No `app` file: the factory image.

    slot.switch(root, "b.rom")  # boot b.rom on trial from the next boot on

The board's boot reads the line before anything of the app loads
(firmware/sim/romboot.py on a PC: with names the firmware has anyway, so
the choice costs the evaluator's heap nothing) and mounts that image. A
trial count above 0 means the image has not yet reported healthy: each
boot of it counts one more, and at the third (it crashed or hung and the
watchdog reset it) the board boots the previous image again by itself.
The app's OTA code (ota.py) writes the line when it switches (`switch`),
when the update reported healthy (`keep`), and when its health deadline
passed (`back`). Every write replaces the file whole (littlefs rename:
atomic), so a power cut leaves the old line or the new one. Imported only
with ota.py, never at a plain boot.
"""


def read(root):
    """[active, previous, tries] from `app`, or None (the factory image)."""
    try:
        with open(root + "/app") as f:
            a = f.read().split()
        return [a[0], a[1], int(a[2])]
    except (OSError, ValueError, IndexError):
        return None


def write(root, active, previous, tries):
    tmp = root + "/app.tmp"
    with open(tmp, "w") as f:
        f.write("%s %s %d\n" % (active, previous, tries))
    import os
    os.rename(tmp, root + "/app")


def switch(root, image):
    """Boot `image` (a file under root) on trial from the next boot on."""
    a = read(root) or ["-", "-", 0]
    write(root, image, a[0], 1)


def keep(root):
    """The running image reported healthy: it stays."""
    a = read(root)
    if a and a[2]:
        write(root, a[0], a[1], 0)


def back(root):
    """The previous image again (a failed trial); returns what was given up."""
    a = read(root)
    if a is None:
        return None
    write(root, a[1], "-", 0)
    return a[0]


def spare(root):
    """The image file an update may be written to: not the active one."""
    a = read(root)
    return "b.rom" if a and a[0] == "a.rom" else "a.rom"
