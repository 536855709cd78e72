"""Durable outbox: events wait on flash until the agent acks them.

A press that showed "thank you" must survive a power cut and reach the agent
exactly once, so every event is committed to flash before the citizen sees
anything, and deleted only after the agent's ack (protocol/SPEC.md, delivery).

    ob = Outbox(root_dir, segment_bytes=4096, max_segments=32)
    seq = ob.append(build, droppable=False)
        # build(seq) -> bytes, the signed event for that seq. Returns seq once
        # the record is committed to flash; None if a droppable event was
        # dropped; raises OutboxFull if a non-droppable one does not fit.
    ob.pending(limit, after=0)  # [(seq, payload)], unacked, oldest first, seq > after
    ob.ack(ranges)              # [(lo, hi), ...] inclusive, any order
    ob.depth()                  # unacked records
    ob.raise_floor(hwm)         # the next seq will be > hwm (agent's hwm after a reflash)
    ob.full                     # True: the next rating may be refused -> alarm
    ob.dropped                  # droppable events refused since boot
    ob.corrupt                  # records found broken (torn tail or bad CRC)
    ob.close()

    Outbox(root_dir, ..., readonly=True).depth()
        # a look from outside (hallctl info): nothing on flash is written or
        # deleted, appends raise OSError.

On flash (root_dir):
- `<first seq>.seg`: append-only segment files, at most segment_bytes each
  (keep it at most one littlefs block: littlefs copies a file's partial last
  block on every synced append). A segment holds consecutive seqs; a gap in
  seqs (raise_floor) starts a new segment. Each record is a 12-byte header
  (magic, flags, payload length, seq, CRC-32 over header and payload) and
  the payload.
- `ptr`: a log of 16-byte entries (acked-up-to seq, floor, CRC), one appended
  and synced per ack that moves the pointer; started over atomically (write
  `ptr.tmp`, rename) at open and every 128 entries. Every seq ever handed
  out is either in a segment or at most max(acked, floor), so seqs are never
  reused, even when all is acked and every segment deleted.

Power cuts: append() returns only after the file is synced (flush), so a
returned seq is on flash. A record cut short fails its CRC: on open it ends
its segment and new records go to a fresh segment; earlier records are never
rewritten. Segments are deleted only after `ptr` covers them.

Acks: ranges may come in any order; the pointer moves over the acked prefix,
acks above it are kept in RAM as merged ranges (lost on reboot, which only
means those events are sent again and acked as duplicates).

Full policy: capacity is max_segments segments. Droppable (status) events are
refused once fewer than max_segments // 4 (at least 1) segments are free, so
that space stays for ratings and sessions, which are never dropped. When even
those do not fit, append raises OutboxFull: the app refuses the press with an
error on screen and raises the `outbox_full` alarm in status.

Memory: RAM holds three 32-bit numbers per segment (first seq, last seq,
bytes) in arrays sized once at open for max_segments, and the ack ranges,
never the payloads; pending() reads records from flash as asked, with one
header buffer allocated once (and a scratch buffer while open scans). (A list per segment
was ~64 bytes each on the heap, allocated and freed as segments come and
go: a full outbox's bookkeeping now costs 12 bytes a segment, allocated at boot.)
"""
import os
import struct
from array import array
from binascii import crc32

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

_MAGIC = const(0xA7)
_HDR = const(12)  # magic B, flags B, length H, seq I, crc I (little-endian)
_HDR_FMT = "<BBHII"
_FLAG_DROPPABLE = const(1)
_PTR_MAGIC = b"QLP1"
_PTR_FMT = "<4sIII"  # magic, acked, floor, crc of the first 12 bytes
_PTR_LEN = const(16)
_PTR_RECORDS = const(128)  # pointer log entries before it is started over
_SCRATCH = const(256)
_MAX_EVENT = const(1024)  # protocol limit, used for `full`


def _u32s(n):
    # n 32-bit slots, allocated once (seqs fit: protocol MAX_SEQ_DEVICE).
    # From a range, which has a length: array("I", bytes(4 * n)) would be
    # read as raw bytes by MicroPython but as values by CPython.
    return array("I", range(n))


class OutboxFull(Exception):
    pass


class Outbox:
    def __init__(self, root_dir, segment_bytes=4096, max_segments=32, readonly=False):
        if segment_bytes < _HDR + 1 or segment_bytes > 65535 + _HDR:
            raise ValueError("segment_bytes")
        self.root = root_dir.rstrip("/")
        self.segment_bytes = segment_bytes
        self.max_segments = max_segments
        self.reserve = max(1, max_segments // 4)
        self.dropped = 0
        self.corrupt = 0
        self._hdr = bytearray(_HDR)
        self._scratch = None  # for the CRCs of the scan at open only
        # Per segment, oldest first, the first _n entries of each: its first
        # and last seq and its size in bytes (see _scan for the capacity).
        self._first = self._last = self._size = None
        self._n = 0
        self._above = []  # [lo, hi] acked ranges above the pointer, sorted, disjoint
        self._w = None  # the newest segment, open for appending
        self._rotate = True  # next append starts a new segment
        # Where pending() stopped: first seq of the segment (0: nowhere), offset, seq.
        self._cfirst = self._coff = self._cseq = 0
        self.readonly = readonly
        self._ptrbuf = bytearray(_PTR_LEN)
        self._pf = None  # the pointer log, open for appending
        self._ptr_n = 0
        self._acked, self._floor = self._read_ptr()
        if not readonly:
            try:
                os.mkdir(self.root)
            except OSError:
                pass  # exists
            self._write_ptr()  # a fresh one-entry log: no torn tail, no ptr.tmp left
        self._scan()
        last = self._last[self._n - 1] if self._n else 0
        self._next = max(self._acked, self._floor, last) + 1
        if not readonly:
            self._free_acked()

    # ---- flash layout -------------------------------------------------

    def _path(self, name):
        return self.root + "/" + name

    def _seg_path(self, first):
        return self.root + "/" + str(first) + ".seg"

    def _read_ptr(self):
        """The newest (acked, floor) in `ptr` or a finished `ptr.tmp`: values only grow."""
        acked = floor = 0
        b = self._ptrbuf
        for name in ("ptr", "ptr.tmp"):
            try:
                f = open(self._path(name), "rb")
            except OSError:
                continue
            with f:
                while f.readinto(b) == _PTR_LEN:
                    magic, a, fl, crc = struct.unpack(_PTR_FMT, b)
                    if magic != _PTR_MAGIC or crc != crc32(memoryview(b)[:12]):
                        break  # a torn tail: nothing valid follows it
                    acked, floor = max(acked, a), max(floor, fl)
        return acked, floor

    def _write_ptr(self):
        """Append the pointer to its log; start the log over (atomically) when it is long."""
        b = self._ptrbuf
        struct.pack_into("<4sII", b, 0, _PTR_MAGIC, self._acked, self._floor)
        struct.pack_into("<I", b, 12, crc32(memoryview(b)[:12]))
        if self._pf is not None and self._ptr_n < _PTR_RECORDS:
            try:
                self._pf.write(b)
                self._pf.flush()  # one littlefs commit per ack
                self._ptr_n += 1
                return
            except OSError:
                self._ptr_n = _PTR_RECORDS  # next time start the log over
                raise
        if self._pf is not None:
            pf, self._pf = self._pf, None
            pf.close()
        tmp = self._path("ptr.tmp")
        with open(tmp, "wb") as f:
            f.write(b)
        os.rename(tmp, self._path("ptr"))  # littlefs: atomic replace
        self._pf = open(self._path("ptr"), "ab")
        self._ptr_n = 1

    def _scan(self):
        """Rebuild the segment list from flash; stop each segment at its first bad record."""
        firsts = []
        try:
            names = os.listdir(self.root)
        except OSError:
            names = ()  # readonly and never created: an empty outbox
        for name in names:
            if name.endswith(".seg"):
                try:
                    firsts.append(int(name[:-4]))
                except ValueError:
                    pass
        firsts.sort()
        self._scratch = bytearray(_SCRATCH)
        # Appends stop at max_segments; a smaller max_segments than the flash
        # holds (a changed site.json) still keeps every segment found.
        cap = max(self.max_segments, len(firsts))
        self._first, self._last, self._size = _u32s(cap), _u32s(cap), _u32s(cap)
        for first in firsts:
            path = self._seg_path(first)
            with open(path, "rb") as f:
                seq, end = self._walk(f, first)
                size = f.seek(0, 2)
            if seq == first:  # no valid record: a segment created just before a cut
                if not self.readonly:
                    os.remove(path)
                continue
            if end != size:
                self.corrupt += 1
            self._push(first, seq - 1, end)
        # New records always go to a fresh segment after a boot: never append
        # after a torn tail, and the walk above does not leave a handle open.
        self._rotate = True
        self._scratch = None  # not kept: pending() checks each payload whole

    def _push(self, first, last, size):
        i = self._n
        self._first[i], self._last[i], self._size[i] = first, last, size
        self._n = i + 1

    def _walk(self, f, first):
        """Read records while they check out; return (next seq, end offset)."""
        seq, end = first, 0
        hdr = self._hdr
        mv = memoryview(self._scratch)
        while True:
            if f.readinto(hdr) != _HDR:
                return seq, end
            magic, _, n, s, crc = struct.unpack(_HDR_FMT, hdr)
            if magic != _MAGIC or s != seq or _HDR + n > self.segment_bytes:
                return seq, end
            # The CRC of the header and the payload, read in scratch-sized pieces.
            c = crc32(memoryview(hdr)[:8])
            left = n
            while left:
                k = min(left, _SCRATCH)
                if f.readinto(mv[:k]) != k:
                    return seq, end
                c = crc32(mv[:k], c)
                left -= k
            if c != crc:
                return seq, end
            seq += 1
            end += _HDR + n

    # ---- append ------------------------------------------------------

    def _room(self, need):
        """Segments in use after storing `need` bytes."""
        n = self._n
        if self._rotate or not n or self._size[n - 1] + need > self.segment_bytes:
            n += 1
        return n

    @property
    def full(self):
        return self._room(min(self.segment_bytes, _HDR + _MAX_EVENT)) > self.max_segments

    def append(self, build, droppable=False):
        if self.readonly:
            raise OSError(30)  # EROFS
        limit = self.max_segments - (self.reserve if droppable else 0)
        if self._room(_HDR + 1) > limit:  # not even the smallest record fits: skip build
            return self._refuse(droppable)
        seq = self._next
        payload = build(seq)
        need = _HDR + len(payload)
        if need > self.segment_bytes:
            raise ValueError("event larger than a segment")
        if self._room(need) > limit:
            return self._refuse(droppable)
        hdr = self._hdr
        struct.pack_into(_HDR_FMT, hdr, 0, _MAGIC, _FLAG_DROPPABLE if droppable else 0,
                         len(payload), seq, 0)
        struct.pack_into("<I", hdr, 8, crc32(payload, crc32(memoryview(hdr)[:8])))
        try:
            if self._rotate or not self._n or \
                    self._size[self._n - 1] + need > self.segment_bytes:
                self._close_w()
                self._w = open(self._seg_path(seq), "wb")
                self._push(seq, seq - 1, 0)
                self._rotate = False
            self._w.write(hdr)
            self._w.write(payload)
            self._w.flush()  # littlefs: sync = commit; the record is now on flash
        except OSError as e:
            self._abandon(seq)
            if e.args and e.args[0] == 28:  # ENOSPC: the filesystem itself is full
                raise OutboxFull("flash full")
            raise
        i = self._n - 1
        self._last[i] = seq
        self._size[i] += need
        self._next = seq + 1
        return seq

    def _abandon(self, seq):
        """A write failed: end the newest segment before the half-written record."""
        self._rotate = True
        self._cfirst = 0
        try:
            self._close_w()  # may commit the half record: the CRC catches it on open
        except OSError:
            pass
        if self._n and self._first[self._n - 1] == seq:  # it holds nothing of ours
            self._n -= 1
            try:
                os.remove(self._seg_path(seq))
            except OSError:
                pass

    def _refuse(self, droppable):
        if droppable:
            self.dropped += 1
            return None
        raise OutboxFull("outbox full")

    def _close_w(self):
        if self._w is not None:
            try:
                self._w.close()
            finally:
                self._w = None

    def close(self):
        self._close_w()
        self._rotate = True
        if self._pf is not None:
            self._pf.close()
            self._pf = None

    def raise_floor(self, hwm):
        if hwm < self._next:
            return
        self._floor = hwm
        self._write_ptr()
        self._next = hwm + 1
        self._rotate = True  # a segment holds consecutive seqs only

    # ---- read and ack ----------------------------------------------------

    def depth(self):
        n = 0
        for i in range(self._n):
            last = self._last[i]
            lo = max(self._first[i], self._acked + 1)
            if last >= lo:
                n += last - lo + 1
                for a, b in self._above:
                    a, b = max(a, lo), min(b, last)
                    if b >= a:
                        n -= b - a + 1
        return n

    def pending(self, limit, after=0):
        out = []
        start = max(self._acked, after) + 1
        hdr = self._hdr
        for i in range(self._n):
            first, last = self._first[i], self._last[i]
            if last < start:
                continue
            if len(out) >= limit:
                break
            seq, off = first, 0
            if self._cfirst == first and self._cseq <= start:
                seq, off = self._cseq, self._coff
            with open(self._seg_path(first), "rb") as f:
                f.seek(off)
                while seq <= last and len(out) < limit:
                    if f.readinto(hdr) != _HDR:
                        self._lost(i, seq)
                        break
                    magic, _, n, s, crc = struct.unpack(_HDR_FMT, hdr)
                    if magic != _MAGIC or s != seq or _HDR + n > self.segment_bytes:
                        self._lost(i, seq)
                        break
                    skip = seq < start or seq <= self._acked   # or acked above the pointer:
                    if not skip:
                        for lo, hi in self._above:   # sorted, disjoint
                            if lo > seq:
                                break
                            if seq <= hi:
                                skip = True
                                break
                    if skip:
                        f.seek(n, 1)
                    else:
                        payload = f.read(n)
                        if len(payload) != n or \
                                crc32(payload, crc32(memoryview(hdr)[:8])) != crc:
                            self._lost(i, seq)
                            break
                        out.append((seq, payload))
                    seq += 1
                    off += _HDR + n
                self._cfirst, self._coff, self._cseq = first, off, seq
        return out

    def _lost(self, i, seq):
        """A record went bad after boot (flash fault): drop it and the rest of segment i."""
        self.corrupt += 1
        self._last[i] = seq - 1
        if i == self._n - 1:
            self._close_w()
            self._rotate = True
        self._cfirst = 0

    def _next_unacked(self):
        for i in range(self._n):
            if self._last[i] > self._acked:
                return max(self._first[i], self._acked + 1)
        return None

    def ack(self, ranges):
        if self.readonly:
            raise OSError(30)  # EROFS
        last = self._next - 1
        moved = False
        for lo, hi in sorted(ranges):
            lo, hi = max(lo, self._acked + 1), min(hi, last)
            if lo > hi:
                continue
            nu = self._next_unacked()
            if nu is not None and lo <= nu:
                self._acked, moved = hi, True
            else:
                # Kept above the pointer, merged into sorted disjoint ranges.
                r = self._above
                r.append([lo, hi])
                r.sort()
                merged = [r[0]]
                for a, b in r[1:]:
                    if a <= merged[-1][1] + 1:
                        if b > merged[-1][1]:
                            merged[-1][1] = b
                    else:
                        merged.append([a, b])
                self._above = merged
        # Absorb acked ranges that now touch the pointer (possibly across seq gaps).
        while True:
            above = [r for r in self._above if r[1] > self._acked]
            self._above = above
            nu = self._next_unacked()
            if nu is None:
                # everything stored is acked; remaining ranges name nothing we hold
                self._above = []
                break
            if not above or above[0][0] > nu:
                break
            self._acked, moved = above[0][1], True
        if moved:
            self._write_ptr()  # before deleting anything it covers
            self._free_acked()

    def _free_acked(self):
        """Delete segments the pointer covers, except the one being appended to."""
        while self._n and self._last[0] <= self._acked and \
                (self._n > 1 or self._w is None):
            first = self._first[0]
            n = self._n - 1
            for a in (self._first, self._last, self._size):
                for i in range(n):
                    a[i] = a[i + 1]
            self._n = n
            if self._cfirst == first:
                self._cfirst = 0
            os.remove(self._seg_path(first))
