"""The hall's tower light: green, yellow, red lamps and a buzzer on the Pi's
GPIO, through gpiozero's own devices (an LEDBoard of the three lamps and a
Buzzer; its default pin factory on the Pi, MockFactory in tests). The pin
map is checked by the config (edge_agent/config.py check_pins); what the
light shows is decided by edge_agent/status/alarms.py.

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

from edge_agent.config import LAMPS, check_pins

STATES = {"ok": "green", "warn": "yellow", "alarm": "red", "off": None}

# Buzzer in steps of BEEP_STEP_S: three short beeps, then quiet for a minute, repeated.
# A continuous tone for an hour-long outage would be switched off at the wall.
BEEP_STEP_S = 0.2
BEEP_PATTERN = (1, 0, 1, 0, 1) + (0,) * 295


class LightError(ValueError):
    """A pin the board refuses, or a state the light cannot show."""


class HallLight:
    def __init__(self, pins, pin_factory=None, active_high=True):
        from gpiozero import Buzzer, LEDBoard     # on the Pi only when the light is enabled
        from gpiozero.exc import GPIOZeroError
        check_pins(pins)
        self.state = None
        self.lamps = self.buzzer = None
        try:
            self.lamps = LEDBoard(_order=LAMPS, active_high=active_high, pin_factory=pin_factory,
                                  **{lamp: pins[lamp] for lamp in LAMPS})
            if pins.get("buzzer") is not None:
                self.buzzer = Buzzer(pins["buzzer"], active_high=active_high, pin_factory=pin_factory)
                self.buzzer.source_delay = BEEP_STEP_S
        except GPIOZeroError as e:
            # gpiozero knows the board: a pin it does not have, or one another device holds.
            self.close()
            raise LightError("tower light: %s" % e)
        except BaseException:
            self.close()
            raise

    def show(self, state):
        """Light the lamp for `state` (ok, warn, alarm, off)."""
        if state not in STATES:
            raise LightError("tower light cannot show %r (states: %s)" % (state, ", ".join(STATES)))
        if state == self.state:
            return
        lit = STATES[state]
        # Off first, then on: never two lamps at once, even for a moment.
        for lamp in LAMPS:
            if lamp != lit:
                getattr(self.lamps, lamp).off()
        if lit:
            getattr(self.lamps, lit).on()
        if self.buzzer is not None:
            if state == "alarm":
                self.buzzer.source = itertools.cycle(BEEP_PATTERN)
            else:
                self.buzzer.source = None
                self.buzzer.off()
        self.state = state

    def close(self):
        """All lamps and the buzzer off; the pins are released."""
        try:
            if self.buzzer is not None:
                self.buzzer.source = None
                self.buzzer.off()
                self.buzzer.close()
        finally:
            self.buzzer = None
            if self.lamps is not None:
                self.lamps.off()
                self.lamps.close()
            self.lamps = None
            self.state = None
