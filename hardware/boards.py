"""Check a board definition (hardware/boards/*.json) against what its chip allows.

A board file maps the evaluator's parts to GPIO numbers. A wrong number is
found on the bench as a dead button or a board that will not boot, so this
rejects, before flashing, what the real part would reject: a pin the module
does not have, a pin two parts share, a pull-up button on an input-only pin,
an I2C pin pair the peripheral cannot route.

    python -m hardware.boards [FILE ...]     # default: every file in hardware/boards/
"""
import argparse
import glob
import json
import os
import sys

from protocol import LEVELS

HERE = os.path.dirname(os.path.abspath(__file__))
BOARDS_DIR = os.path.join(HERE, "boards")

# The evaluator's keys: a rating button per protocol level, then the staff key.
BUTTONS = LEVELS + ("staff",)
LIGHT_PINS = {"leds": ("green", "yellow", "red"), "rgb": ("red", "green", "blue")}
SSD1306_ADDRS = (0x3C, 0x3D)


class BoardError(ValueError):
    """A board file the hardware cannot honour; the message says which key and why."""


class Chip:
    """What one chip (as wired on its module) can do with each GPIO."""

    def __init__(self, title, gpios, reserved=None, input_only=(), strapping=(),
                 i2c_buses=(0, 1), i2c_pins=None):
        self.title = title
        self.gpios = frozenset(gpios)
        self.reserved = reserved or {}          # pin -> why it is not free
        self.input_only = frozenset(input_only)
        self.strapping = frozenset(strapping)
        self.i2c_buses = i2c_buses
        self.i2c_pins = i2c_pins                # None: any pin (GPIO matrix); else bus -> (sda set, scl set)

    def problem(self, pin):
        """Why `pin` cannot be used at all, or None."""
        if not isinstance(pin, int) or isinstance(pin, bool):
            return "%r is not a GPIO number" % (pin,)
        if pin in self.reserved:
            return "GPIO%d is %s" % (pin, self.reserved[pin])
        if pin not in self.gpios:
            return "GPIO%d does not exist on %s" % (pin, self.title)
        return None


_ESP32_FLASH = "wired to the module's SPI flash"
_ESP32_CONSOLE = "UART0, the USB serial console used for flashing and the REPL"
CHIPS = {
    # ESP32-WROOM-32: GPIO6-11 go to the flash, 34-39 are inputs without pull-ups,
    # 20/24/28-31 do not exist and 37/38 are not brought out of the module.
    "esp32": Chip(
        "ESP32-WROOM-32",
        gpios=list(range(0, 6)) + list(range(12, 20)) + [21, 22, 23, 25, 26, 27] + list(range(32, 40)),
        reserved=dict([(p, _ESP32_FLASH) for p in range(6, 12)]
                      + [(1, _ESP32_CONSOLE), (3, _ESP32_CONSOLE),
                         (37, "not brought out of the WROOM-32 module"),
                         (38, "not brought out of the WROOM-32 module")]),
        input_only=range(34, 40),
        strapping=(0, 2, 5, 12, 15),
    ),
    # Pico W: GP23-25 and GP29 belong to the CYW43439 radio; the RP2040 I2C
    # blocks reach only fixed pins.
    "rp2040_pico_w": Chip(
        "Raspberry Pi Pico W",
        gpios=list(range(0, 23)) + [26, 27, 28],
        reserved=dict((p, "used by the CYW43439 Wi-Fi chip on the Pico W") for p in (23, 24, 25, 29)),
        i2c_pins={0: ({0, 4, 8, 12, 16, 20}, {1, 5, 9, 13, 17, 21}),
                  1: ({2, 6, 10, 14, 18, 26}, {3, 7, 11, 15, 19, 27})},
    ),
    # ESP32-S3-WROOM-1-N8 (no PSRAM): GPIO26-32 go to the flash, 19/20 are the
    # USB serial console, 43/44 UART0; 22-25 do not exist. Any pin routes I2C/UART/SPI.
    "esp32s3": Chip(
        "ESP32-S3-WROOM-1-N8",
        gpios=list(range(0, 22)) + list(range(26, 49)),
        reserved=dict([(p, _ESP32_FLASH) for p in range(26, 33)]
                      + [(19, "USB D- (the USB serial console)"), (20, "USB D+ (the USB serial console)"),
                         (43, _ESP32_CONSOLE), (44, _ESP32_CONSOLE)]),
        strapping=(0, 3, 45, 46),
    ),
}

# A kiosk board (app "kiosk"): the keypad's rows and columns, a rating button
# per level under the screen, the colour panel on SPI, two UARTs, a buzzer.
KIOSK_KEYPAD = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "enter", "clear", "back", "print")
KIOSK_BAUDS = (9600, 19200, 38400, 57600, 115200)


def validate(board):
    """Return (errors, warnings) for a parsed board dict; both lists of 'key: reason'."""
    if board.get("app") == "kiosk":
        return validate_kiosk(board)
    errors, warnings = [], []
    chip = CHIPS.get(board.get("chip"))
    if chip is None:
        return ["chip: %r is not one of %s" % (board.get("chip"), ", ".join(sorted(CHIPS)))], []
    used = {}  # pin -> key that claimed it

    def claim(key, pin, pull_up=False, output=False):
        why = chip.problem(pin)
        if why:
            errors.append("%s: %s" % (key, why))
            return False
        if pin in used:
            errors.append("%s: GPIO%d is already used by %s" % (key, pin, used[pin]))
            return False
        used[pin] = key
        if pull_up and pin in chip.input_only:
            errors.append("%s: GPIO%d is input-only on %s and has no internal pull-up; "
                          "an active-low button needs one" % (key, pin, chip.title))
        elif output and pin in chip.input_only:
            errors.append("%s: GPIO%d is input-only on %s and cannot drive an output"
                          % (key, pin, chip.title))
        return True

    buttons = board.get("buttons") or {}
    for name in BUTTONS:
        if name not in buttons:
            errors.append("buttons.%s: missing (the evaluator needs all of %s)" % (name, ", ".join(BUTTONS)))
    for name, pin in sorted(buttons.items()):
        key = "buttons." + name
        if name not in BUTTONS:
            errors.append("%s: unknown button (known: %s)" % (key, ", ".join(BUTTONS)))
            continue
        if claim(key, pin, pull_up=True) and pin in chip.strapping:
            # A citizen pressing during power-up would change how the chip boots.
            errors.append("%s: GPIO%d is a strapping pin; a press during power-up changes the boot mode"
                          % (key, pin))

    light = board.get("light") or {}
    kind = light.get("kind")
    if kind not in LIGHT_PINS:
        errors.append("light.kind: %r is not one of %s" % (kind, ", ".join(LIGHT_PINS)))
    else:
        for colour in LIGHT_PINS[kind]:
            if colour not in light:
                errors.append("light.%s: missing for kind %r" % (colour, kind))
            elif claim("light." + colour, light[colour], output=True) and light[colour] in chip.strapping:
                warnings.append("light.%s: GPIO%d is a strapping pin; keep the LED's current path "
                                "from pulling it the wrong way at boot" % (colour, light[colour]))

    buzzer = board.get("buzzer") or {}
    if "pin" not in buzzer:
        errors.append("buzzer.pin: missing")
    elif claim("buzzer.pin", buzzer["pin"], output=True) and buzzer["pin"] in chip.strapping:
        warnings.append("buzzer.pin: GPIO%d is a strapping pin" % buzzer["pin"])
    freq = buzzer.get("freq", 2700)
    if not isinstance(freq, int) or not 100 <= freq <= 10000:
        errors.append("buzzer.freq: %r Hz is outside 100..10000" % (freq,))
    duty = buzzer.get("duty_u16", 32768)
    if not isinstance(duty, int) or not 0 < duty <= 65535:
        errors.append("buzzer.duty_u16: %r is outside 1..65535" % (duty,))
    if not isinstance(light.get("active_high", True), bool):
        errors.append("light.active_high: must be true or false")

    country = (board.get("wifi") or {}).get("country", "CN")
    if not (isinstance(country, str) and len(country) == 2 and country.isupper()):
        errors.append("wifi.country: %r is not a two-letter country code such as CN" % (country,))

    display = board.get("display") or {}
    if display.get("driver") != "ssd1306":
        errors.append("display.driver: %r is not supported (ssd1306)" % (display.get("driver"),))
    if (display.get("width"), display.get("height")) != (128, 64):
        errors.append("display: %rx%r; the evaluator screens are laid out for 128x64"
                      % (display.get("width"), display.get("height")))
    i2c = display.get("i2c") or {}
    bus = i2c.get("bus")
    if bus not in chip.i2c_buses:
        errors.append("display.i2c.bus: %r is not an I2C block of %s (%s)"
                      % (bus, chip.title, ", ".join(map(str, chip.i2c_buses))))
    for role in ("sda", "scl"):
        key = "display.i2c." + role
        if role not in i2c:
            errors.append(key + ": missing")
            continue
        pin = i2c[role]
        if claim(key, pin, output=True) and chip.i2c_pins and bus in chip.i2c_pins:
            allowed = chip.i2c_pins[bus][0 if role == "sda" else 1]
            if pin not in allowed:
                errors.append("%s: I2C%s %s can only be on GPIO %s, not GPIO%d"
                              % (key, bus, role.upper(), ", ".join(map(str, sorted(allowed))), pin))
    if i2c.get("addr") not in SSD1306_ADDRS:
        errors.append("display.i2c.addr: %r is not an SSD1306 address (60 = 0x3C, 61 = 0x3D)"
                      % (i2c.get("addr"),))
    return errors, warnings


def validate_kiosk(board):
    """A kiosk board: every pin real, free and used once; UARTs at a baud the parts take."""
    errors, warnings = [], []
    chip = CHIPS.get(board.get("chip"))
    if chip is None:
        return ["chip: %r is not one of %s" % (board.get("chip"), ", ".join(sorted(CHIPS)))], []
    used = {}

    def claim(key, pin, pull_up=False):
        why = chip.problem(pin)
        if why:
            errors.append("%s: %s" % (key, why))
        elif pin in used:
            errors.append("%s: GPIO%d is already used by %s" % (key, pin, used[pin]))
        else:
            used[pin] = key
            if pull_up and pin in chip.strapping:
                errors.append("%s: GPIO%d is a strapping pin; a press during power-up changes the boot mode"
                              % (key, pin))

    rating = board.get("rating") or {}
    for name in LEVELS:
        if name not in rating:
            errors.append("rating.%s: missing (a button per level)" % name)
        else:
            claim("rating." + name, rating[name], pull_up=True)
    keypad = board.get("keypad") or {}
    for role in ("rows", "cols"):
        pins = keypad.get(role) or []
        if len(pins) != 4:
            errors.append("keypad.%s: a 4x4 keypad has 4, not %d" % (role, len(pins)))
        for i, pin in enumerate(pins):
            claim("keypad.%s[%d]" % (role, i), pin, pull_up=role == "cols")
    keys = [k for row in keypad.get("keys") or [] for k in row]
    missing = [k for k in KIOSK_KEYPAD if k not in keys]
    if missing:
        errors.append("keypad.keys: missing %s" % ", ".join(missing))
    for part in ("printer", "scanner"):
        u = board.get(part) or {}
        if u.get("uart") not in (1, 2):
            errors.append("%s.uart: %r; UART1 or UART2 (UART0 is the console)" % (part, u.get("uart")))
        if u.get("baud") not in KIOSK_BAUDS:
            errors.append("%s.baud: %r is not one of %s" % (part, u.get("baud"), KIOSK_BAUDS))
        for role in ("tx", "rx"):
            if role not in u:
                errors.append("%s.%s: missing" % (part, role))
            else:
                claim("%s.%s" % (part, role), u[role])
    if (board.get("printer") or {}).get("uart") == (board.get("scanner") or {}).get("uart"):
        errors.append("scanner.uart: the printer has that UART")
    disp = board.get("display") or {}
    if disp.get("driver") != "st7789" or (disp.get("width"), disp.get("height")) != (320, 240):
        errors.append("display: the kiosk screens are laid out for a 320x240 st7789")
    for role in ("sck", "mosi", "cs", "dc", "rst", "backlight"):
        if role not in (disp.get("spi") or {}):
            errors.append("display.spi.%s: missing" % role)
        else:
            claim("display.spi." + role, disp["spi"][role])
    buzzer = board.get("buzzer") or {}
    if "pin" not in buzzer:
        errors.append("buzzer.pin: missing")
    else:
        claim("buzzer.pin", buzzer["pin"])
    return errors, warnings


def load(path):
    """Parse and validate one board file; return the dict or raise BoardError."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
    except (OSError, ValueError) as e:
        raise BoardError("%s: %s" % (name, e)) from None
    if not isinstance(board, dict):
        raise BoardError("%s: top level must be an object" % name)
    errors, _ = validate(board)
    if errors:
        raise BoardError("%s: %s" % (name, "; ".join(errors)))
    return board


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hardware.boards", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="board files (default: hardware/boards/*.json)")
    args = ap.parse_args(argv)
    failed = 0
    for path in args.files or sorted(glob.glob(os.path.join(BOARDS_DIR, "*.json"))):
        try:
            board = load(path)
        except BoardError as e:
            print("error: %s" % e, file=sys.stderr)
            failed += 1
            continue
        for w in validate(board)[1]:
            print("warning: %s: %s" % (os.path.basename(path), w), file=sys.stderr)
        print("ok: %s (%s)" % (os.path.basename(path), board.get("title", board.get("name"))))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
