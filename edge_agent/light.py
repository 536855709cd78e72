"""The hall's tower light: green, yellow, red lamps and a buzzer on the Pi's
GPIO, through gpiozero (its default pin factory on the Pi, MockFactory in
tests).

    light = HallLight({"green": 17, "yellow": 27, "red": 22, "buzzer": 23})
    light.show("warn")

Most relay boards sold for the Pi switch on a LOW input: build those with
active_high=False, and an unpowered or stopped agent still leaves every
lamp dark (gpiozero drives the pin high for "off").

One lamp at a time shows the hall's worst state: `ok` green, `warn`
yellow, `alarm` red with the buzzer. show() is called every few seconds
with the current state; only a change of state touches the pins, so the
buzzer pattern is not restarted by a repeated alarm.
"""
import itertools

LAMPS = ("green", "yellow", "red")
STATES = {"ok": "green", "warn": "yellow", "alarm": "red", "off": None}

# Buzzer in steps of BEEP_STEP_S: three short beeps, then quiet for a minute, repeated.
# A continuous tone for an hour-long outage would be switched off at the wall.
BEEP_STEP_S = 0.2
BEEP_PATTERN = (1, 0, 1, 0, 1) + (0,) * 295


class LightError(ValueError):
    """A pin map the circuit cannot have, or a state the light cannot show."""


def check_pins(pins):
    """The pin map as the circuit allows it: the three lamps, an optional
    buzzer, each on its own pin."""
    if not isinstance(pins, dict):
        raise LightError("tower light pins must be a table of lamp name -> GPIO pin")
    unknown = sorted(set(pins) - set(LAMPS) - {"buzzer"})
    if unknown:
        raise LightError("tower light has no %s (it has %s and an optional buzzer)"
                         % (", ".join(unknown), ", ".join(LAMPS)))
    missing = [lamp for lamp in LAMPS if pins.get(lamp) is None]
    if missing:
        raise LightError("tower light pins missing for %s" % ", ".join(missing))
    seen = {}
    for name, pin in pins.items():
        if pin is None:
            continue
        if isinstance(pin, bool) or not isinstance(pin, (int, str)):
            raise LightError("tower light %s: pin must be a GPIO number or name, not %r" % (name, pin))
        if pin in seen:
            raise LightError("tower light %s and %s are both on pin %s" % (seen[pin], name, pin))
        seen[pin] = name
    return pins


class HallLight:
    def __init__(self, pins, pin_factory=None, active_high=True):
        from gpiozero import LED, Buzzer          # on the Pi only when the light is enabled
        from gpiozero.exc import GPIOZeroError
        check_pins(pins)
        self.state = None
        self._devices = []
        try:
            self.lamps = {}
            for lamp in LAMPS:
                self.lamps[lamp] = self._own(LED(pins[lamp], active_high=active_high, pin_factory=pin_factory))
            self.buzzer = None
            if pins.get("buzzer") is not None:
                self.buzzer = self._own(Buzzer(pins["buzzer"], active_high=active_high,
                                                 pin_factory=pin_factory))
                self.buzzer.source_delay = BEEP_STEP_S
        except GPIOZeroError as e:
            # gpiozero knows the board: a pin it does not have, or one named twice in two spellings.
            self.close()
            raise LightError("tower light: %s" % e)
        except BaseException:
            self.close()
            raise

    def _own(self, device):
        self._devices.append(device)
        return device

    def show(self, state):
        """Light the lamp for `state` (ok, warn, alarm, off)."""
        if state not in STATES:
            raise LightError("tower light cannot show %r (states: %s)" % (state, ", ".join(STATES)))
        if state == self.state:
            return
        lit = STATES[state]
        # Off first, then on: never two lamps at once, even for a moment.
        for lamp, led in self.lamps.items():
            if lamp != lit:
                led.off()
        if lit:
            self.lamps[lit].on()
        if self.buzzer is not None:
            if state == "alarm":
                self.buzzer.source = itertools.cycle(BEEP_PATTERN)
            else:
                self.buzzer.source = None
                self.buzzer.off()
        self.state = state

    def close(self):
        """All lamps and the buzzer off; the pins are released."""
        for device in reversed(self._devices):
            try:
                device.source = None
                device.off()
            finally:
                device.close()
        self._devices = []
        self.state = None
