"""Real-board hardware shared by the ESP32 and Pico W boards.

Pins are data: the flashing tool copies hardware/boards/<name>.json to the
flash root as board.json, and this reads it once at boot, so one firmware
image serves every board of a port. The port modules (board_esp32,
board_rp2) add only what differs: timer ids, watchdog limits, the meaning
of machine.reset_cause().

Every hardware failure surfaces as OSError, as the ports raise it; a
missing or unplugged display is survivable (ratings still count) and is
recorded in `faults` for the status event.
"""
import json
import os

import framebuf
import machine
from machine import PWM, Pin

import board

ROOT = "/"                 # the flash root (ends in /), where the port's _boot.py mounted littlefs2
BOARD_FILE = "board.json"  # hardware/boards/<name>.json, copied by the flashing tool
RESET_FLAG = "reset.flag"  # exists only between mark_intentional() and the next boot

# Which lamps make each service-light colour, per kind of light.
_MIX = {
    "leds": {"green": ("green",), "yellow": ("yellow",), "red": ("red",)},
    "rgb": {"green": ("green",), "yellow": ("red", "green"), "red": ("red",)},
}


class McuBoard(board.Board):
    """One evaluator's parts on a real board, as board.json wires them."""
    TIMER_ID = -1          # machine.Timer id for the buzzer's one-shot
    WDT_MAX_MS = 0         # 0: the port has no upper limit worth clamping to
    CAUSES = {}            # machine.reset_cause() value -> a reset cause named in board.py

    def __init__(self):
        board.Board.__init__(self)
        with open(ROOT + BOARD_FILE) as f:
            d = json.load(f)
        self.defn = d
        self.name = d["name"]
        self._cause = self._read_cause()
        self.buttons = {}
        for key, gpio in d["buttons"].items():
            # Pin.value bound once: the evaluator polls it with no allocation.
            self.buttons[key] = Pin(gpio, Pin.IN, Pin.PULL_UP).value
        self._init_light(d["light"])
        self._init_buzzer(d["buzzer"])
        self.display = self._init_display(d["display"])
        self._wlan = None
        self._wdt = None

    # -- service light -------------------------------------------------

    def _init_light(self, light):
        self._on = 1 if light.get("active_high", True) else 0
        self._mix = _MIX[light["kind"]]
        self._lamps = {}
        for colour in ("red", "green", "blue", "yellow"):
            if colour in light:
                self._lamps[colour] = Pin(light[colour], Pin.OUT, value=1 - self._on)

    def set_light(self, color):
        if color is not None and color not in self._mix:
            raise ValueError("light colour %r" % (color,))
        lit = self._mix[color] if color else ()
        for lamp, pin in self._lamps.items():
            pin.value(self._on if lamp in lit else 1 - self._on)

    # -- buzzer ----------------------------------------------------------

    def _init_buzzer(self, buzzer):
        # Duty 0 from the constructor on: no chirp while the board starts.
        self._pwm = PWM(Pin(buzzer["pin"], Pin.OUT, value=0), freq=buzzer.get("freq", 2700), duty_u16=0)
        self._duty = buzzer.get("duty_u16", 32768)
        self._beep_timer = machine.Timer(self.TIMER_ID)
        self._quiet_cb = self._quiet  # bound once: no allocation in the timer callback

    def beep(self, ms):
        # Returns at once; a one-shot timer ends the tone, so the caller never waits.
        self._pwm.duty_u16(self._duty)
        self._beep_timer.init(mode=machine.Timer.ONE_SHOT, period=max(1, ms), callback=self._quiet_cb)

    def _quiet(self, _timer):
        self._pwm.duty_u16(0)

    # -- display -------------------------------------------------------------

    def _init_display(self, disp):
        w, h, bus = disp["width"], disp["height"], disp["i2c"]
        i2c = machine.I2C(bus["bus"], sda=Pin(bus["sda"]), scl=Pin(bus["scl"]), freq=bus.get("freq", 400000))
        try:
            import ssd1306
            self._panel = ssd1306.SSD1306_I2C(w, h, i2c, addr=bus["addr"])
            return board.TextDisplay(self._panel, flush=self._flush)
        except OSError:
            # No ACK at the address: the panel is missing or miswired.
            self.faults.append("display")
            fb = framebuf.FrameBuffer(bytearray(w * h // 8), w, h, framebuf.MONO_VLSB)
            return board.TextDisplay(fb)

    def _flush(self):
        try:
            if "display" in self.faults:
                self._panel.init_display()  # it lost power or came loose: set it up again
                self.faults.remove("display")
            self._panel.show()
        except OSError:
            # A loose I2C cable must not stop the ratings; status reports it.
            if "display" not in self.faults:
                self.faults.append("display")

    # -- flash -----------------------------------------------------------------

    def mount_flash(self):
        # The port's _boot.py has mounted littlefs2 at / (formatting it if blank).
        os.statvfs(ROOT)
        return ROOT.rstrip("/") or "/"

    # -- Wi-Fi -------------------------------------------------------------------

    def wifi_connect(self, ssid, password):
        import network
        if self._wlan is None:
            country = self.defn.get("wifi", {}).get("country")
            if country:
                network.country(country)  # regulatory domain: channels 1-13 in CN
            self._wlan = network.WLAN(network.WLAN.IF_STA)
            self._wlan.active(True)
            # Mains-powered: radio power saving would hold every PUBACK and pushed
            # command until the next beacon wake-up.
            self._wlan.config(pm=network.WLAN.PM_NONE)
        if self._wlan.isconnected() or self._wlan.status() == network.STAT_CONNECTING:
            return
        self._wlan.connect(ssid, password)  # returns at once; poll wifi_connected()

    def wifi_connected(self):
        return self._wlan is not None and self._wlan.isconnected()

    def rssi(self):
        if not self.wifi_connected():
            return None
        return self._wlan.status("rssi")  # type: ignore[union-attr]

    # -- watchdog and resets ------------------------------------------------------

    def wdt_start(self, timeout_ms):
        if self.WDT_MAX_MS:
            timeout_ms = min(timeout_ms, self.WDT_MAX_MS)
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def _read_cause(self):
        try:
            os.remove(ROOT + RESET_FLAG)  # it existed: we asked for this reset
            return "intentional"
        except OSError:
            return self.CAUSES.get(machine.reset_cause(), "power_on")

    def reset_cause(self):
        return self._cause

    def mark_intentional(self):
        # littlefs2 commits on close: the flag is on flash before reset() runs.
        with open(ROOT + RESET_FLAG, "w") as f:
            f.write("1")

    def reset(self):
        self.mark_intentional()
        machine.reset()
