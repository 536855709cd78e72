"""A virtual window evaluator: the real firmware under the MicroPython unix
port on the simulated board, driven like a citizen and a staff member would.

    vd = VirtualDevice(work_dir, "hall-1", "ev-01", key, broker_port).start()
    vd.call("A012"); vd.staff("end"); vd.press("satisfied")
    vd.screen()  # {'lines': [...], 'light': 'green', 'beeps': 1, ...}
    vd.stats()   # {'thanks': 1, 'ignored': 0, 'outbox': 0, ...}
    vd.kill()    # SIGKILL: a power cut; start() again boots from the same flash

The flash image (littlefs2) lives in work_dir and persists across restarts.
Provisioning writes site.json onto it before the first boot, as the
technician's flashing tool does. A firmware reset (watchdog, `reset`
command) exits with code 75 and is booted again, like a board.
"""
import json
import os
import socket
import subprocess
import threading
import time

from protocol import LEVELS  # noqa: F401 (the rating buttons; tests take them from here)
from tools.procs import MICROPYTHON, ROOT, Proc, free_port, micropython_path, own_name, wait_for

STAFF_ACTIONS = ("start", "end", "pause", "resume")
EXIT_RESET = 75
FIRMWARE = os.path.join(ROOT, "firmware")


SIM = os.path.join(FIRMWARE, "sim")
# The simulated board and its flash, in place of a port's board modules; the
# ROMFS boot (romboot.py) is the entry point outside the image.
SIM_BOARD = ("board_sim.py", "lfsblock.py", "board_kiosk_sim.py", "clock_jump.py")
ROM_DIR = os.path.join(ROOT, "build", "romfs")


def rom_sources():
    """[(local path, name in the image)]: what firmware/manifest.py ships
    (tools.hallctl.bundle.shipped, port "sim": no real-board module), with
    the protocol package under protocol/, and the simulated board."""
    from tools.hallctl.bundle import shipped
    srcs = [(local, name[len("lib/"):] if name.startswith("lib/") else name) for name, local in shipped("sim")]
    return srcs + [(os.path.join(SIM, name), name) for name in SIM_BOARD]


def firmware_romfs(srcs=None):
    """Build (once per content) the firmware ROMFS image of `srcs` (default:
    rom_sources()); return its path."""
    import hashlib
    import shutil
    import tempfile
    srcs = srcs or rom_sources()
    h = hashlib.sha256()
    for path, name in srcs:
        with open(path, "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    out = os.path.join(ROM_DIR, h.hexdigest()[:16] + ".romfs")
    if os.path.exists(out):
        return out
    import contextlib
    import io
    from mpremote.romfs import make_romfs
    os.makedirs(ROM_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "protocol"))
        for path, name in srcs:
            shutil.copy(path, os.path.join(tmp, name))
        with contextlib.redirect_stdout(io.StringIO()):
            image = make_romfs(tmp, mpy_cross=True)
    part = own_name(out)
    with open(part, "wb") as f:
        f.write(image)
    os.replace(part, out)
    return out


EVALUATOR_MODULES = "evaluator, board_sim, uplink, mqtt, ota"


def rom_qstr_bytes(rom, modules=EVALUATOR_MODULES):
    """Heap the unix port spends interning the ROM modules' names, which a
    frozen build keeps in flash; measured once per image (and app: `modules`,
    what its boot imports)."""
    side = rom + (".qstr" if modules == EVALUATOR_MODULES else ".%s.qstr" % modules.split(",")[0])
    if os.path.exists(side):
        with open(side) as f:
            return int(f.read())
    import re
    # QL_FLASH: romboot loads the simulated chip for the boot's image choice
    # (a board's C driver: its names are not the firmware's), from `boot`.
    boot = rom + ".boot"
    os.makedirs(boot, exist_ok=True)
    link = os.path.join(boot, "lfsblock.mpy")
    if not os.path.islink(link):
        # Boards booting at once (the chaos run's threads) race here.
        tmp = own_name(link)
        os.symlink(boot_chip(rom), tmp)
        os.replace(tmp, link)
    env = dict(os.environ, MICROPYPATH=micropython_path(".frozen"), QL_ROMFS=rom, QL_ROM_ONLY="1",
               QL_FLASH="flash.img")
    code = ("import micropython;micropython.qstr_info();import romboot;"
            "import " + modules + ";micropython.qstr_info()")
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=1m", "-c", code], env=env,
                         capture_output=True, text=True, timeout=60, cwd=boot)
    sizes = [int(x) for x in re.findall(r"n_total_bytes=(\d+)", out.stdout)]
    if out.returncode != 0 or len(sizes) != 2:
        raise DeviceError("measuring the ROM image failed: %s" % (out.stdout + out.stderr)[-1000:])
    n = sizes[1] - sizes[0]
    part = own_name(side)
    with open(part, "w") as f:
        f.write(str(n))
    os.replace(part, side)
    return n


def boot_chip(rom):
    """The simulated chip (lfsblock) as the ROM image `rom` has it compiled,
    copied out beside the image, for romboot.py's choice of the app image
    (OTA): the same bytecode interns the same names, which the firmware has
    anyway."""
    out = rom + ".lfsblock.mpy"
    if not os.path.exists(out):
        tmp = own_name(out)
        code = ("import vfs;b=open(%r,'rb').read();vfs.mount(vfs.VfsRom(b),'/rom');"
                "open(%r,'wb').write(open('/rom/lfsblock.mpy','rb').read())" % (rom, tmp))
        got = subprocess.run([MICROPYTHON, "-X", "heapsize=4m", "-c", code], capture_output=True, text=True,
                             timeout=60)
        if got.returncode != 0:
            raise DeviceError("no lfsblock in the ROM image: %s" % (got.stdout + got.stderr)[-500:])
        os.replace(tmp, out)
    return out


def _bytes(size):
    s = str(size).strip().lower()
    mult = {"k": 1024, "m": 1024 * 1024}.get(s[-1:], 1)
    return int(s.rstrip("km")) * mult


class DeviceError(OSError):
    """The simulated board refused a request, or the device is not running
    (an I/O failure with the device, so callers that retry on OSError do)."""


class VirtualDevice:
    APP_MODULES = EVALUATOR_MODULES      # what the app's boot imports (its names live in the ROM)

    def __init__(self, work_dir, hall, device, key, broker_port, broker_host="127.0.0.1",
                 window="A01", heapsize=None, username=None, password=None, board="sim",
                 site=None, flash_blocks=256, files=None, rom=None, romboot=None):
        if board != "sim":
            raise ValueError("a virtual device runs on the simulated board only")
        self.work_dir = os.path.abspath(work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.hall, self.device, self.key = hall, device, bytes(key)
        self.heapsize = heapsize
        self.image = os.path.join(self.work_dir, "flash.img")
        self.flash_blocks = flash_blocks
        self.control_port = free_port()
        self.site = {
            "hall": hall, "device": device, "key": self.key.hex(),
            "broker_host": broker_host, "broker_port": broker_port,
            "window": window, "ssid": "hall", "wifi_password": "hall",
            "long_ms": 400, "status_s": 60,
        }
        if username is not None:
            self.site["username"] = username
            self.site["password"] = password
        self.site.update(site or {})
        self.files = dict(files or {})     # extra files for the flash: {name: host path}
        self.env = {}                      # more environment for the firmware (QL_CUT: firmware/ota.py)
        self.proc = None
        # Another firmware build (bench: main's, in the same run): its ROM image and ROMFS boot.
        self._rom, self._romboot = rom, romboot or os.path.join(SIM, "romboot.py")
        self.rom = None
        self.restarts = 0
        self.restarting = False            # booting again after its own reset (not a power-up)
        self._sock = None
        self._file = None
        self._lock = threading.Lock()
        self._watch = None

    # -- processes -----------------------------------------------------------
    def _env(self):
        return {
            "MICROPYPATH": micropython_path(".frozen"),
            "QL_ROMFS": self.rom,
            "QL_BOARD": "sim",
            "QL_FLASH": self.image,
            "QL_CONTROL": str(self.control_port),
            "QL_FLASH_BLOCKS": str(self.flash_blocks),
            **self.env,
        }

    def _boot_env(self):
        """The firmware's own run, with every path short and fixed, relative to
        work_dir where it runs. The unix port interns MICROPYPATH and argv in the
        heap the firmware gets, and a board has neither: with absolute paths a
        deeper checkout left the firmware less heap (a 64 KiB test failed in a
        CI clone and passed in the author's tree)."""
        # lfsblock.mpy: the chip for the boot's choice of the app image (OTA).
        for name, target in (("romboot.py", self._romboot), ("rom.img", self.rom),
                             ("lfsblock.mpy", boot_chip(self.rom))):
            link = os.path.join(self.work_dir, name)
            if os.path.islink(link) and os.readlink(link) == target:
                continue
            os.symlink(target, link + ".new")
            os.replace(link + ".new", link)
        env = self._env()
        env.update(MICROPYPATH=".frozen", QL_ROMFS="rom.img")
        if os.path.dirname(os.path.abspath(self.image)) == self.work_dir:
            env["QL_FLASH"] = os.path.basename(self.image)
        return env

    def _argv(self, *args):
        argv = [MICROPYTHON]
        if self.heapsize:
            # Two things sit in this heap only because the unix port has no
            # memory-mapped flash: the ROM image and the names its modules
            # intern. A board keeps both in flash; the firmware gets `heapsize`.
            heap = _bytes(self.heapsize) + os.path.getsize(self.rom) + rom_qstr_bytes(self.rom, self.APP_MODULES)
            argv += ["-X", "heapsize=%d" % heap]
        return argv + list(args)

    def provision(self, site=None, files=None):
        """Write site.json (and `files`, {name on flash: host path}, such as
        the Chinese font `font.qlf`) onto the flash image, creating it when new."""
        if site:
            self.site.update(site)
        self.rom = self._rom or firmware_romfs()
        site_path = os.path.join(self.work_dir, "site.json")
        with open(site_path, "w") as f:
            json.dump(self.site, f)
        todo = {"site.json": site_path}
        todo.update(files or self.files)
        code = "import board_sim;board_sim.provision(%r,%r)" % (self.image, todo)
        env = dict(os.environ, **self._env())
        out = subprocess.run([MICROPYTHON, "-c", code], env=env, capture_output=True, text=True,
                             cwd=self.work_dir, timeout=120)
        if out.returncode != 0:
            raise DeviceError("provisioning %s failed: %s" % (self.device, (out.stdout + out.stderr).strip()))
        return self

    def start(self, ready_timeout=30):
        """Boot; then wait (up to ready_timeout s) until the device takes
        presses: a new or reflashed one first needs the agent's live config."""
        if not os.path.exists(self.image):
            self.provision()
        self._close()
        # A board that resets boots the ROM it has (and the threads of devices
        # resetting at once do not each rebuild it).
        if not (self.rom and self.restarting):
            self.rom = self._rom or firmware_romfs()
        self.proc = Proc("device-" + self.device, self._argv("romboot.py"),
                         self.work_dir, env=self._boot_env(), cwd=self.work_dir)
        self.proc.start()
        try:
            wait_for(self._booted, 30, 0.05, "%s to boot" % self.device)
        except TimeoutError:
            pass
        if not self.alive():
            raise DeviceError("%s did not boot: %s" % (self.device, self.log()[-2000:]))
        if self._watch is None or not self._watch.is_alive():
            self._watch = threading.Thread(target=self._reboot_on_reset, daemon=True)
            self._watch.start()
        if ready_timeout:
            try:
                wait_for(lambda: self.stats().get("ready"), ready_timeout, 0.05, "ready")
            except TimeoutError:
                pass       # no agent yet: the screen says so ("Connecting")
        return self

    def _booted(self):
        if not self.alive():
            return True     # stop waiting; start() reports the log
        try:
            socket.create_connection(("127.0.0.1", self.control_port), 0.5).close()
            return True
        except OSError:
            return False

    def _reboot_on_reset(self):
        # A board that resets itself boots again; a killed or stopped one does not.
        while True:
            p = self.proc
            if p is None or p.p is None:
                return
            code = p.p.wait()
            if code != EXIT_RESET or self.proc is not p:
                return
            self.restarting = True
            try:
                self.start()
            finally:
                self.restarting = False
            self.restarts += 1     # counted once it is up again

    def kill(self):
        """Power cut. (The harness link just breaks, as it would: a caller
        in another thread sees DeviceError.)"""
        if self.proc is not None:
            p, self.proc = self.proc, None
            p.kill()

    def stop(self):
        self._close()
        if self.proc is not None:
            p, self.proc = self.proc, None
            p.stop()

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def log(self):
        return self.proc.log() if self.proc is not None else ""

    # -- the harness link -------------------------------------------------------
    def _close(self):
        for x in (self._file, self._sock):
            if x is not None:
                try:
                    x.close()
                except OSError:
                    pass
        self._sock = self._file = None

    def _rpc(self, req, timeout=60):
        import time
        booting = time.monotonic() + 15
        with self._lock:
            for attempt in (0, 1):
                # A board that is rebooting by itself answers again shortly.
                while attempt and self.alive() and time.monotonic() < booting and not self._booted():
                    time.sleep(0.05)
                try:
                    if self._sock is None:
                        self._sock = socket.create_connection(("127.0.0.1", self.control_port), timeout)
                        self._file = self._sock.makefile("rb")
                    self._sock.settimeout(timeout)
                    self._sock.sendall(json.dumps(req).encode() + b"\n")
                    line = self._file.readline()
                    if not line.endswith(b"\n"):
                        # Nothing, or a reply cut short: the power went while it was sent.
                        raise OSError("device closed the link")
                    break
                except (OSError, ValueError) as e:
                    self._close()
                    if attempt or not self.alive():
                        raise DeviceError("%s: %s (%s)" % (self.device, req.get("op"), e))
        reply = json.loads(line)
        if "error" in reply:
            raise DeviceError("%s refused %s: %s" % (self.device, req, reply["error"]))
        return reply

    # -- what people do ----------------------------------------------------------
    def press(self, level, ms=60):
        """A citizen presses a rating button; returns once the firmware saw it."""
        if level not in LEVELS:
            raise ValueError("no such rating button: %r" % (level,))
        self._rpc({"op": "press", "button": level, "ms": ms})

    def glitch(self, button):
        """A contact bounce shorter than the debounce: must be ignored."""
        self._rpc({"op": "glitch", "button": button})

    def staff(self, action):
        """The staff key: a short press starts or ends a service, a long one pauses or resumes."""
        if action not in STAFF_ACTIONS:
            raise ValueError("no such staff action: %r" % (action,))
        ms = 60 if action in ("start", "end") else self.site["long_ms"] + 150
        self._rpc({"op": "press", "button": "staff", "ms": ms})

    def call(self, ticket):
        """The queue system calls a ticket to this window."""
        self._rpc({"op": "call", "ticket": ticket})

    def flash_ok(self, ok):
        """Break (or mend) the flash chip: writes fail with EIO until reboot."""
        self._rpc({"op": "flash", "ok": bool(ok)})

    def display_ok(self, ok):
        """Unplug (or plug back) the display panel: while unplugged no frame
        reaches it and the board reports a "display" fault."""
        self._rpc({"op": "display", "ok": bool(ok)})

    def wifi(self, up):
        self._rpc({"op": "wifi", "up": bool(up)})

    def screen(self):
        return self._rpc({"op": "screen"})

    def pixels(self):
        """Lit pixels per 16-pixel row band of the panel: [head, name, state, Chinese state]."""
        return self._rpc({"op": "pixels"})["bands"]

    def stats(self):
        return self._rpc({"op": "stats"})


class Acker:
    """The device-facing half of an edge agent, for firmware tests and the
    drain bench: decode and verify each event, keep it by (device, seq) in
    memory ("commit"), then send the protocol ack, batched every `ack_ms`.
    Publishes each device's retained config on start.

    Identical redeliveries are counted in `duplicates`, same (device, seq)
    with other content in `conflicts`; neither is stored twice."""

    def __init__(self, broker_port, hall, keys, config=None, ack_ms=50, client_id=None,
                 broker_host="127.0.0.1", username=None, password=None):
        import paho.mqtt.client as mqtt
        import protocol
        self._mqtt, self._protocol = mqtt, protocol
        self.hall, self.keys = hall, dict(keys)
        self.config = config if config is not None else {}
        self.ack_ms = ack_ms
        self.events = {}          # (device, seq) -> decoded event
        self.bodies = {}          # (device, seq) -> canonical bytes
        self.duplicates = 0
        self.conflicts = 0
        self.rejected = []
        self.presence = {}
        self.acking = True
        self._todo = {}           # device -> seqs to ack
        self._lock = threading.Lock()
        # Sealed messages: a counter above any earlier Acker's (microseconds
        # now), taken and published under one lock so each topic sees it rise.
        self._n = time.time_ns() // 1000
        self._seal_lock = threading.Lock()
        self._stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "acker-%s" % hall, clean_session=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        # Come back quickly after a broker outage (paho backs off up to 2 min by default).
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.host, self.port = broker_host, broker_port

    def start(self):
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._acks, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()

    def _connected(self, client, userdata, flags, reason, props):
        from protocol import topics
        client.subscribe([(topics.for_all_devices(self.hall, topics.EVENTS), 1),
                          (topics.for_all_devices(self.hall, topics.STATUS), 1)])
        for dev in self.keys:
            self.send_config(dev)

    def publish(self, device, channel, msg, retain=False):
        """Seal msg with the device's key and the next counter, and publish it."""
        from protocol import messages, topics
        with self._seal_lock:
            self._n += 1
            payload = messages.seal(self.keys[device], channel, msg, self._n)
            self.client.publish(topics.topic(self.hall, device, channel), payload, qos=1, retain=retain)
        return payload

    def send_config(self, device, **extra):
        cfg = dict(self.config.get(device, self.config.get("*", {})))
        cfg.update(extra)
        cfg["t"] = int(time.time() * 1000)
        with self._lock:
            cfg.setdefault("hwm", max([s for d, s in self.bodies if d == device] or [0]))
        return self.publish(device, "config", cfg, retain=True)

    def send_cmd(self, device, cmd):
        return self.publish(device, "cmd", cmd)

    def _message(self, client, userdata, msg):
        protocol = self._protocol
        try:
            hall, device, channel = protocol.topics.parse(msg.topic)
        except protocol.ProtocolError:
            return
        if channel == "status":
            self.presence[device] = p = json.loads(msg.payload) if msg.payload else None
            if p and p.get("online") and device in self.keys:
                self.send_config(device)    # as the agent does: a live config with the hwm
            return
        try:
            ev = protocol.parse(msg.payload)
            key = self.keys.get(ev["device"])
            if key is None or ev["device"] != device:
                raise protocol.ProtocolError("unknown_device")
            protocol.verify(ev, key)
        except protocol.ProtocolError as e:
            self.rejected.append(e.code)
            return
        k = (device, ev["seq"])
        body = protocol.body(ev)
        with self._lock:
            if k in self.bodies:
                if self.bodies[k] == body:
                    self.duplicates += 1
                else:
                    self.conflicts += 1
            else:
                self.bodies[k] = body
                self.events[k] = ev
            self._todo.setdefault(device, []).append(ev["seq"])

    def _acks(self):
        from protocol import messages
        while not self._stop.wait(self.ack_ms / 1000.0):
            if not self.acking:
                continue
            with self._lock:
                todo, self._todo = self._todo, {}
            for dev, seqs in todo.items():
                self.publish(dev, "ack", messages.ack(seqs))

    def of_kind(self, kind, device=None):
        with self._lock:
            evs = list(self.events.values())
        return sorted((e for e in evs if e["kind"] == kind and device in (None, e["device"])),
                      key=lambda e: (e["device"], e["seq"]))
