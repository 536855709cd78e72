"""Simulated peripherals for host runs (CPython): the kiosk's thermal
printer and its barcode scanner, each a strict peer on a serial line.

The kiosk firmware runs under the MicroPython unix port with the simulated
board (firmware/sim/board_kiosk_sim.py), which opens its end of each line as
the board's UART; these open the other end with pyserial, as they would a
real USB-UART, so the same peer can stand in for a printer on a real board's
wires too. Nothing here ships to a board (firmware/sim/ is MicroPython, this
is the host's side)."""
