"""ESP32 evaluator board (ESP32-DevKitC / WROOM-32): board_mcu plus what
only the esp32 port means.

Pins come from board.json (hardware/boards/esp32_devkitc.json).
"""
import machine

import board_mcu  # the module, not its class: board.load() takes the one Board subclass here


class Esp32Board(board_mcu.McuBoard):
    TIMER_ID = 0  # hardware timer group 0; its callbacks are scheduled, not hard IRQs
    # The esp32 port folds brownout into PWRON_RESET (README: power notes), and
    # reports machine.reset() and panics as HARD_RESET: both are unplanned here
    # unless the reset flag said otherwise.
    CAUSES = {
        machine.PWRON_RESET: "power_on",
        machine.HARD_RESET: "soft",
        machine.SOFT_RESET: "soft",
        machine.WDT_RESET: "watchdog",
        machine.DEEPSLEEP_RESET: "deep_sleep",
    }
