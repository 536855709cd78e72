"""A virtual self-service kiosk: the real firmware (firmware/kiosk.py) under
the MicroPython unix port on the simulated kiosk board, with its thermal
printer and barcode scanner as strict simulated parts on serial lines
(hardware/sim/), driven like a citizen would.

    vk = VirtualKiosk(work_dir, "hall-1", "ks-01", key, broker_port).start()
    vk.scan("KC2025000123"); vk.tap("print"); vk.tap("satisfied")
    vk.printer.slips[-1].text     # what came out of the printer
    vk.kill()                     # a power cut; the printer and scanner stay on

Everything else is tools.vdevice.VirtualDevice: the flash image, resets,
power cuts, the harness link.
"""
from hardware.sim.line import Line
from hardware.sim.printer import Printer
from hardware.sim.scanner import Scanner
from tools.vdevice import VirtualDevice

KIOSK_MODULES = "kiosk, kiosk_print, board_kiosk_sim, uplink, mqtt"


class VirtualKiosk(VirtualDevice):
    APP_MODULES = KIOSK_MODULES

    def __init__(self, work_dir, hall, device, key, broker_port, printer_baud=115200,
                 scanner_baud=9600, printer_opts=None, **kw):
        kw.setdefault("window", "K01")
        VirtualDevice.__init__(self, work_dir, hall, device, key, broker_port, **kw)
        self.printer_baud, self.scanner_baud = printer_baud, scanner_baud
        self.printer_opts = dict(printer_opts or {})
        self._plines = Line(self.work_dir, "printer")
        self._slines = Line(self.work_dir, "scanner")
        self.printer = self.scanner = None

    def _env(self):
        env = VirtualDevice._env(self)
        env.update(QL_BOARD="kiosk_sim", QL_PRINTER=self._plines.dev, QL_SCANNER=self._slines.dev,
                   QL_PRINTER_BAUD=str(self.printer_baud), QL_SCANNER_BAUD=str(self.scanner_baud))
        return env

    def start(self, ready_timeout=30):
        if self.printer is None:
            self.printer = Printer(self._plines.open(self.printer_baud), self.printer_baud,
                                   **self.printer_opts).start()
            self.scanner = Scanner(self._slines.open(self.scanner_baud), self.scanner_baud)
        return VirtualDevice.start(self, ready_timeout)

    def close(self):
        """Stop the kiosk and switch off its parts."""
        self.stop()
        if self.printer is not None:
            self.printer.stop()
            self._plines.close()
            self._slines.close()
            self.printer = None

    # -- what people do ---------------------------------------------------------------
    def tap(self, k):
        """A key on the keypad, or a rating button (a protocol level)."""
        self._rpc({"op": "key", "key": k})

    def type_in(self, text):
        for ch in text:
            self.tap(ch)

    def scan(self, code):
        """A barcode held under the scanner."""
        self.scanner.scan(code)

    def lines(self):
        return self.screen()["lines"]

    def state(self):
        return self.stats()["state"]

