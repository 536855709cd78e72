# The simulated board's `clock` op (board_sim.py): the wall clock jumps by
# jump_ms (a glitch, a bad time source) until the agent's next live beacon
# sets it right. A module of its own, imported on the first jump, so a board
# never asked keeps the firmware's Clock and pays no heap for this.
import clock


def jump(ms):
    C = clock.Clock
    if "jump" not in C.__dict__:
        now, beacon = C.now, C.beacon
        C.jump = 0
        C.now = lambda s: now(s) + C.jump if s.base else 0
        C.beacon = lambda s, t, a=True: (a and setattr(C, "jump", 0)) or beacon(s, t, a)
    C.jump = ms
