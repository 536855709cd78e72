"""One window's service sessions: the state machine behind the staff key,
the queue call and the citizen's rating buttons.

Pure logic on ticks (ms) passed in, no I/O: the evaluator turns what these
methods return into signed events and puts them in the outbox. Each
method returns a list of session steps, each a dict with `action`,
`session` and the optional fields of a protocol `session` event.

    idle --start/call--> serving <--pause/resume--> paused
    serving|paused --end--> prompt --rating--> thanks --(a few s)--> idle
                             prompt --timeout--> idle (session unrated)
                             prompt --不满意/非常不满意--> reasons --> thanks

One rating per session (一次一评): only a prompt accepts a rating, and the
prompt closes with it. Starting a new service while a prompt is open
closes that prompt as unrated; a device never invents a rating.
"""
import time

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

# The states. Private consts (`_X`): no globals and no names in the device's
# heap; evaluator.py and ui.py name the ones they look at the same way
# (tests/test_firmware_heap.py keeps the numbers equal).
_IDLE = const(0)
_SERVING = const(1)
_PAUSED = const(2)
_PROMPT = const(3)
_THANKS = const(4)
_REASONS = const(5)      # a bad rating on flash, its reasons being chosen (evaluator.py)


def name(state):
    """A state's name (the simulator's stats). Code, not a tuple: every str
    in a constant tuple is an object in the device's heap."""
    return ("idle" if state == _IDLE else "serving" if state == _SERVING else "paused"
            if state == _PAUSED else "prompt" if state == _PROMPT else "thanks" if state == _THANKS
            else "reasons")


class Desk:
    def __init__(self, device, boot):
        self.device = device
        self.boot = boot          # boot counter: session ids stay unique across reboots
        self.state = _IDLE
        self.n = 0
        self.session = None
        self.ticket = None
        self.item = None          # 事项编码, when the queue system says
        self.case = None          # 办件编号, when the call names one
        self.started = 0          # ticks at start
        self.paused_at = 0
        self.paused_ms = 0
        self.service_ms = 0       # fixed at end
        self.until = 0            # prompt deadline, reason screen's or end of the thank-you
        # The reason screen (names the device interns already, none new):
        self.first = 0            # the index of the reason on its first row
        self.reasons = 0          # the reasons chosen, a bit each (bit i: the config's i-th)

    def copy_to(self, other):
        """Copy the session state (everything a transition may change) into
        another Desk: the evaluator keeps one spare to put the desk back when
        a transition's events cannot be written (attributes only, so it
        allocates nothing on a full heap; one by one, not from a tuple of
        their names, which the device would keep in its heap)."""
        other.state, other.n, other.session = self.state, self.n, self.session
        other.ticket, other.item, other.started = self.ticket, self.item, self.started
        other.case = self.case
        other.paused_at, other.paused_ms = self.paused_at, self.paused_ms
        other.service_ms, other.until = self.service_ms, self.until

    def service(self, now):
        """Service time so far, paused time excluded."""
        if self.state == _SERVING:
            return time.ticks_diff(now, self.started) - self.paused_ms
        if self.state == _PAUSED:
            return time.ticks_diff(self.paused_at, self.started) - self.paused_ms
        return self.service_ms

    def _close(self, now):
        """Steps that close whatever is open, before a new service starts."""
        if self.state == _SERVING or self.state == _PAUSED:
            return self.end(now, 0) + self._unrated()
        if self.state == _PROMPT:
            return self._unrated()
        return []

    def _unrated(self):
        self.state = _IDLE
        return [{"action": "unrated", "session": self.session}]

    def start(self, now, ticket=None, item=None, case=None):
        steps = self._close(now)
        self.n += 1
        self.session = "%s-%d-%d" % (self.device, self.boot, self.n)
        self.ticket = ticket
        self.item = item
        self.case = case
        self.started = now
        self.paused_ms = 0
        self.service_ms = 0
        self.state = _SERVING
        step = {"action": "started", "session": self.session}
        if item:
            step["item"] = item
        if case:
            step["case"] = case
        if ticket:
            step["ticket"] = ticket
            steps.append({"action": "called", "session": self.session, "ticket": ticket})
        steps.append(step)
        return steps

    def end(self, now, prompt_ms):
        if self.state == _PAUSED:
            self.resume(now)
        if self.state != _SERVING:
            return []
        self.service_ms = max(0, self.service(now))
        self.state = _PROMPT
        self.until = time.ticks_add(now, prompt_ms)
        return [{"action": "ended", "session": self.session,
                 "service_ms": self.service_ms, "paused_ms": self.paused_ms}]

    def pause(self, now):
        if self.state != _SERVING:
            return []
        self.state = _PAUSED
        self.paused_at = now
        return [{"action": "paused", "session": self.session}]

    def resume(self, now):
        if self.state != _PAUSED:
            return []
        self.paused_ms += time.ticks_diff(now, self.paused_at)
        self.state = _SERVING
        return [{"action": "resumed", "session": self.session}]

    def staff_short(self, now, prompt_ms):
        if self.state == _SERVING or self.state == _PAUSED:
            return self.end(now, prompt_ms)
        return self.start(now)

    def staff_long(self, now):
        if self.state == _SERVING:
            return self.pause(now)
        if self.state == _PAUSED:
            return self.resume(now)
        return []

    def can_rate(self, now):
        return self.state == _PROMPT and time.ticks_diff(now, self.until) < 0

    def rated(self, now, thanks_ms):
        """The rating is on flash: show thanks, take no second rating."""
        self.state = _THANKS
        self.until = time.ticks_add(now, thanks_ms)

    def tick(self, now):
        if self.state == _PROMPT and time.ticks_diff(now, self.until) >= 0:
            return self._unrated()
        if self.state == _THANKS and time.ticks_diff(now, self.until) >= 0:
            self.state = _IDLE
        return ()       # the empty tuple is a constant: no list every 10 ms
