"""Simulated flash for host runs: a littlefs2 filesystem on a host image file.

The block device writes straight through to the image (MicroPython's unix
files are unbuffered: every write is one write(2)), so a SIGKILL of the
micropython process in the middle of a write is a power cut: whatever the
kernel got stays, the rest never happens. It behaves like NOR flash and
rejects what a real chip would get wrong: programming bytes that were not
erased first, or touching a block outside the chip.

    import lfsblock
    lfsblock.mount("/tmp/flash.img", "/flash")   # formats only a new image

ESP32 and rp2 use 4096-byte erase blocks; so does this by default.
"""
import os
import vfs

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

_IOCTL_INIT = const(1)
_IOCTL_DEINIT = const(2)
_IOCTL_SYNC = const(3)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)
_CHUNK = const(64)


class FileBlockDev:
    """The extended block protocol (offsets within a block) that littlefs uses.

    Only 64-byte buffers, allocated once: on a board this is C code, not
    heap, so the simulated chip must not eat the firmware's 64 KiB."""

    def __init__(self, path, block_size=4096, block_count=None, strict=True, tear=0):
        self.f = open(path, "r+b")
        self.block_size = block_size
        # None: as many blocks as the image holds (the simulated board's chip).
        self.block_count = block_count or self.f.seek(0, 2) // block_size
        self.strict = strict
        self.tear = tear  # >0: program and erase in pieces this big, so a cut can tear them
        self.broken = False  # the harness broke the chip: every program fails (EIO)
        self._ff = b"\xff" * _CHUNK
        self._chk = bytearray(_CHUNK)
        self.prog_bytes = 0  # wear and write amplification, for bench/
        self.erases = 0

    def readblocks(self, block, buf, offset=0):
        if block < 0 or block >= self.block_count or offset < 0 or offset + len(buf) > self.block_size:
            raise OSError(22)  # EINVAL: outside the chip (checked inline: a function less in the heap)
        self.f.seek(block * self.block_size + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if self.broken:
            raise OSError(5)  # EIO
        if offset is None:  # the simple protocol: erase, then program the whole block
            self.erase(block)
            offset = 0
        n = len(buf)
        if block < 0 or block >= self.block_count or offset < 0 or offset + n > self.block_size:
            raise OSError(22)  # EINVAL
        pos = block * self.block_size + offset
        if self.strict:
            # NOR flash only programs erased bytes; littlefs must erase first.
            self.f.seek(pos)
            chk, left = self._chk, n
            while left > 0:
                k = min(left, _CHUNK)
                self.f.readinto(memoryview(chk)[:k])
                if chk[:k] != self._ff[:k]:
                    raise OSError(5)  # EIO
                left -= k
        self.f.seek(pos)
        t = self.tear
        if t:
            mv = memoryview(buf)
            for i in range(0, n, t):
                self.f.write(mv[i:i + t])
        else:
            self.f.write(buf)
        self.prog_bytes += n

    def erase(self, block):
        if self.broken:
            raise OSError(5)
        if block < 0 or block >= self.block_count:
            raise OSError(22)  # EINVAL
        self.f.seek(block * self.block_size)
        # In tear-sized pieces when asked: a cut can leave a block half erased.
        t = self.tear or _CHUNK
        ff = memoryview(self._ff)
        for _ in range(self.block_size // _CHUNK):
            for i in range(0, _CHUNK, t):
                self.f.write(ff[i:i + t])
        self.erases += 1

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            self.erase(arg)
            return 0
        if op in (_IOCTL_INIT, _IOCTL_DEINIT, _IOCTL_SYNC):
            return 0
        return None


def create_image(path, block_size=4096, block_count=256):
    """A new, fully erased chip."""
    blank = b"\xff" * block_size
    with open(path, "wb") as f:
        for _ in range(block_count):
            f.write(blank)


def mount(image, mountpoint="/flash", block_size=4096, block_count=256, strict=True, tear=0):
    """Mount the image at mountpoint and return the block device.

    A missing image is created erased and formatted. An existing image that
    does not mount raises OSError: a power cut must never need a reformat,
    so this never formats an image it did not just create."""
    try:
        os.stat(image)
        new = False
    except OSError:
        new = True
    if new:
        # Provisioning: build the formatted chip aside, so a cut leaves no half image.
        tmp = image + ".new"
        create_image(tmp, block_size, block_count)
        bdev = FileBlockDev(tmp, block_size, block_count, strict)
        vfs.VfsLfs2.mkfs(bdev)
        bdev.f.close()
        os.rename(tmp, image)
    # An existing chip is as big as its image (block_count only sizes a new one).
    bdev = FileBlockDev(image, block_size, None, strict, tear)
    vfs.mount(vfs.VfsLfs2(bdev), mountpoint)
    return bdev
