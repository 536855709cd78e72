"""ESP32 evaluator board (ESP32-DevKitC / WROOM-32): board_mcu plus what
only the esp32 port means.

Pins come from board.json (hardware/boards/esp32_devkitc.json).
"""
import machine

import board_mcu  # the module, not its class: board.load() takes the one Board subclass here


class Esp32Board(board_mcu.McuBoard):
    TIMER_ID = 0  # hardware timer group 0; its callbacks are scheduled, not hard IRQs
    # machine.reset() and panics read SOFT_RESET; the EN button reads HARD_RESET,
    # which to the evaluator is a power-up. The port has no brownout code: a
    # brownout reads as a watchdog or power-on reset (hardware/README.md, Power).
    CAUSES = {
        machine.PWRON_RESET: "power_on",
        machine.HARD_RESET: "power_on",
        machine.SOFT_RESET: "soft",
        machine.WDT_RESET: "watchdog",
        machine.DEEPSLEEP_RESET: "deep_sleep",
    }
