"""Raspberry Pi Pico W evaluator board (RP2040 + CYW43439): board_mcu plus
what only the rp2 port means.

Pins come from board.json (hardware/boards/pico_w.json).
"""
import machine

import board_mcu  # the module, not its class: board.load() takes the one Board subclass here


class PicoWBoard(board_mcu.McuBoard):
    TIMER_ID = -1        # a virtual (soft) timer; the RP2040 has one hardware alarm block
    WDT_MAX_MS = 8388    # RP2040 watchdog counter limit
    # rp2 knows only these two; machine.reset() itself goes through the watchdog,
    # so without the reset flag an intentional reset would read "watchdog".
    CAUSES = {
        machine.PWRON_RESET: "power_on",
        machine.WDT_RESET: "watchdog",
    }
