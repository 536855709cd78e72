"""A strict stand-in for a board's `machine` module on the MicroPython unix
port, for tests of firmware/board_mcu.py and the port modules.

It refuses what the real chip refuses (a pin the module lacks, a pull-up or
an output on an input-only pin, an I2C pin the block cannot reach, a timer
id or watchdog timeout the port rejects) and records what the board drives,
so a test reads like the circuit. The chip's facts come from the JSON file
named by QL_CHIP (written by the test from hardware/boards.py); the reset
cause the port would report from QL_RESET_CAUSE.
"""
import json
import os

with open(os.getenv("QL_CHIP")) as _f:
    CHIP = json.load(_f)
_GPIOS = set(CHIP["gpios"])
_INPUT_ONLY = set(CHIP["input_only"])

PWRON_RESET = 1
WDT_RESET = 3
if CHIP["port"] == "esp32":
    HARD_RESET = 2
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

PRESSED = set()      # GPIOs whose button is held down (pulls the line to ground)
LEVELS = {}          # GPIO -> level driven by an output
I2C_DEVICES = {}     # address -> [bytes written so far, the last write] of a device that ACKs
TIMERS = []          # armed one-shot timers
WDT_LOG = []         # ("start", timeout) / ("feed",)
EVENTS = []          # ("reset",)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        if id not in _GPIOS:
            raise ValueError("invalid pin")
        self.id, self.mode, self.pull = id, mode, pull
        if pull == Pin.PULL_UP and id in _INPUT_ONLY:
            raise ValueError("pin %d has no pull-up" % id)
        if mode in (Pin.OUT, Pin.OPEN_DRAIN) and id in _INPUT_ONLY:
            raise ValueError("pin can only be input")
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.OUT:
                return LEVELS.get(self.id, 0)
            if self.id in PRESSED:
                return 0
            if self.pull == Pin.PULL_UP:
                return 1
            raise RuntimeError("GPIO%d floats: no pull-up and nothing driving it" % self.id)
        if self.mode != Pin.OUT:
            raise RuntimeError("GPIO%d is not an output" % self.id)
        LEVELS[self.id] = 1 if v else 0


class PWM:
    def __init__(self, pin, *, freq=None, duty_u16=None):
        if pin.mode == Pin.IN:
            raise ValueError("PWM needs an output pin")
        self.pin, self._freq, self._duty = pin, 0, 0
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        PWMS[pin.id] = self

    def freq(self, f=None):
        if f is None:
            return self._freq
        if not 1 <= f <= 40000000:
            raise ValueError("freq out of range")
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        if not 0 <= d <= 65535:
            raise ValueError("duty out of range")
        self._duty = d


PWMS = {}


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1):
        if id not in CHIP["timers"]:
            raise ValueError("Timer(%d) does not exist" % id)
        self.id = id

    def init(self, *, mode=PERIODIC, period=-1, callback=None):
        if period < 1 or callback is None:
            raise ValueError("period and callback")
        if self in TIMERS:
            TIMERS.remove(self)  # re-arming restarts the count
        self.mode, self.period, self.callback = mode, period, callback
        TIMERS.append(self)


def expire_timers():
    """Let every armed one-shot run out, as time passing would."""
    while TIMERS:
        t = TIMERS.pop(0)
        t.callback(t)


class I2C:
    def __init__(self, id, *, scl, sda, freq=400000):
        if id not in CHIP["i2c_buses"]:
            raise ValueError("I2C(%d) does not exist" % id)
        routes = CHIP["i2c_pins"]
        if routes is not None:
            sdas, scls = routes[str(id)]
            if sda.id not in sdas or scl.id not in scls:
                raise ValueError("bad SCL/SDA pins for I2C(%d)" % id)
        if freq > 1000000:
            raise ValueError("freq")
        self.id = id

    def writeto(self, addr, buf, stop=True):
        self.writevto(addr, (buf,), stop)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        dev = I2C_DEVICES.get(addr)
        if dev is None:
            raise OSError(19)  # ENODEV: nothing acknowledged the address
        last = b"".join(vector)
        dev[0] += len(last)
        dev[1] = last


class WDT:
    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= CHIP["wdt_max_ms"]:
            raise ValueError("timeout %d out of range" % timeout)
        WDT_LOG.append(("start", timeout))

    def feed(self):
        WDT_LOG.append(("feed",))


def reset_cause():
    return int(os.getenv("QL_RESET_CAUSE") or PWRON_RESET)


def reset():
    EVENTS.append(("reset",))
    raise SystemExit("machine.reset()")
