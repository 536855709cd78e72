"""The tower light on mock GPIO pins, read like the circuit: which lamp is
lit, what the buzzer does, which pin maps the board refuses."""
import time

import pytest
from gpiozero.pins.mock import MockFactory

from harness import wait_for
from edge_agent.errors import ConfigError
from edge_agent.light import BEEP_PATTERN, BEEP_STEP_S, HallLight, LightError

PINS = {"green": 17, "yellow": 27, "red": 22, "buzzer": 23}


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def light(factory):
    lt = HallLight(PINS, pin_factory=factory)
    yield lt
    lt.close()


def lit(factory):
    return {name: factory.pin(n).state for name, n in PINS.items() if name != "buzzer"}


def buzzer(factory):
    return factory.pin(PINS["buzzer"])


def test_ok_is_green_only(light, factory):
    light.show("ok")
    assert lit(factory) == {"green": 1, "yellow": 0, "red": 0}
    assert buzzer(factory).state == 0


def test_warn_is_yellow_only(light, factory):
    light.show("ok")
    light.show("warn")
    assert lit(factory) == {"green": 0, "yellow": 1, "red": 0}
    assert buzzer(factory).state == 0


def test_alarm_is_red_and_the_buzzer_beeps_three_times(light, factory):
    light.show("alarm")
    assert lit(factory) == {"green": 0, "yellow": 0, "red": 1}
    # The buzzer pin's history: off at setup, then on/off/on/off/on in BEEP_STEP_S steps.
    wait_for(lambda: len(buzzer(factory).states) >= 7, 5, 0.05, "three beeps")
    states = [s.state for s in buzzer(factory).states]
    assert states[:7] == [False, True, False, True, False, True, False]
    assert BEEP_PATTERN[:5] == (1, 0, 1, 0, 1) and sum(BEEP_PATTERN) == 3


def test_a_repeated_alarm_does_not_restart_the_beeps(light, factory):
    light.show("alarm")
    wait_for(lambda: len(buzzer(factory).states) >= 7, 5, 0.05, "three beeps")
    for _ in range(5):
        light.show("alarm")                 # the agent re-shows its state every few seconds
    time.sleep(BEEP_STEP_S * 3)
    assert len(buzzer(factory).states) == 7       # quiet after the third beep


def test_leaving_alarm_silences_the_buzzer(light, factory):
    light.show("alarm")
    wait_for(lambda: buzzer(factory).state, 5, 0.01, "the first beep")
    light.show("ok")
    assert buzzer(factory).state == 0
    assert lit(factory) == {"green": 1, "yellow": 0, "red": 0}
    n = len(buzzer(factory).states)
    time.sleep(BEEP_STEP_S * 3)
    assert len(buzzer(factory).states) == n


def test_off_and_close_leave_every_pin_low(factory):
    lt = HallLight(PINS, pin_factory=factory)
    lt.show("warn")
    lt.show("off")
    assert lit(factory) == {"green": 0, "yellow": 0, "red": 0}
    lt.show("alarm")
    lt.close()
    assert lit(factory) == {"green": 0, "yellow": 0, "red": 0} and buzzer(factory).state == 0
    # The pins are free again: the light can be built anew (agent restart).
    HallLight(PINS, pin_factory=factory).close()


def test_the_buzzer_is_optional(factory):
    lt = HallLight({"green": 5, "yellow": 6, "red": 13}, pin_factory=factory)
    try:
        lt.show("alarm")
        assert factory.pin(13).state == 1
    finally:
        lt.close()


def test_an_unknown_state_is_refused(light, factory):
    light.show("ok")
    with pytest.raises(LightError, match="cannot show 'blue'"):
        light.show("blue")
    assert lit(factory) == {"green": 1, "yellow": 0, "red": 0}


@pytest.mark.parametrize("pins, words", [
    ({"green": 17, "yellow": 17, "red": 22}, "green and yellow are both on pin 17"),
    ({"green": 17, "yellow": 27, "red": 22, "buzzer": 22}, "red and buzzer are both on pin 22"),
    ({"green": 17, "yellow": 27}, "missing for red"),
    ({"green": 17, "yellow": 27, "red": 22, "blue": 5}, "pins.blue"),
    ({"green": 17, "yellow": 27, "red": True}, "BCM pin number"),
    ({"green": 17, "yellow": "GPIO17", "red": 22}, "BCM pin number"),
    ({"green": 17, "yellow": 27, "red": 99}, "BCM pin number 0-27"),
    ([17, 27, 22], "table"),
])
def test_an_impossible_pin_map_is_refused_before_touching_pins(pins, words, factory):
    # The same check as `edge-agent config check` (edge_agent/config.py).
    with pytest.raises(ConfigError, match=words):
        HallLight(pins, pin_factory=factory)
    HallLight(PINS, pin_factory=factory).close()


def test_a_pin_another_device_holds_is_refused_by_the_board(factory):
    from gpiozero import LED
    other = LED(22, pin_factory=factory)
    try:
        with pytest.raises(LightError, match="tower light"):
            HallLight(PINS, pin_factory=factory)
    finally:
        other.close()
    # Nothing stays reserved after the refusal.
    HallLight(PINS, pin_factory=factory).close()


def test_a_relay_board_that_switches_on_low_gets_inverted_pins(factory):
    # `[light] active_high = false`: the lit lamp's pin is the LOW one, the dark ones are held high.
    lt = HallLight(PINS, pin_factory=factory, active_high=False)
    try:
        assert lit(factory) == {"green": 1, "yellow": 1, "red": 1} and buzzer(factory).state == 1
        lt.show("warn")
        assert lit(factory) == {"green": 1, "yellow": 0, "red": 1}
        lt.show("alarm")
        assert lit(factory)["red"] == 0
        wait_for(lambda: buzzer(factory).state == 0, 5, 0.01, "the first beep pulls the buzzer low")
        lt.show("ok")
        assert lit(factory) == {"green": 0, "yellow": 1, "red": 1} and buzzer(factory).state == 1
    finally:
        lt.close()
