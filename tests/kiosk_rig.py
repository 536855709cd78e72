"""The kiosk tests' hall, all real parts (tools/hall.py): Mosquitto, the
reference county server with its case API, the edge agent with its own
kiosk handlers (edge_agent/kiosk.py) and case cache polling the county,
and a virtual kiosk (tools/vkiosk.py) at -X heapsize=128k with its
simulated printer and scanner.

The county's day is fixed (TODAY), so the cases posted through its case
API at start (CASE_EVENTS, as the hall's business system would) have known
states, promised dates and lights (CASES)."""
import urllib.request

from harness import wait_for
from tools.hall import Hall as WholeHall

HALL = "ks-hall"
TODAY = "2026-09-28"        # a Monday; Friday 09-25 was 中秋 (tools/county/data/calendar/2026.json)


def _accepted(case, date, days, item, name):
    return {"id": case + "-1", "case": case, "type": "accepted", "date": date, "item": item,
            "item_name": name, "department": "市场监管局", "window": "A01", "promised_days": days}


def _step(case, n, kind, date):
    return {"id": "%s-%d" % (case, n), "case": case, "type": kind, "date": date}


CASE_EVENTS = [
    # 5 working days from 09-21 with 中秋 off: due 09-29, 4 gone today: yellow.
    _accepted("KC2026000123", "2026-09-21", 5, "431100-001", "食品经营许可"),
    _step("KC2026000123", 2, "in_review", "2026-09-22"),
    # 10 working days from today (国庆 off, the 调休 Saturday 10-10 worked): due 10-16, green.
    _accepted("KC2026000777", "2026-09-28", 10, "431100-014", "个体工商户登记"),
    # 3 working days from 09-14: due 09-17, red.
    _accepted("KC2026000042", "2026-09-14", 3, "431100-020", "不动产登记"),
    # Done and waiting to be collected: no light.
    _accepted("KC2026000900", "2026-09-21", 5, "431100-031", "道路运输经营许可"),
    _step("KC2026000900", 2, "completed", "2026-09-24"),
    _step("KC2026000900", 3, "ready", "2026-09-24"),
]
# What each case is at, by the county's rules on TODAY (state, promised, light).
CASES = {
    "KC2026000123": ("in_review", "2026-09-29", "yellow"),
    "KC2026000777": ("accepted", "2026-10-16", "green"),
    "KC2026000042": ("accepted", "2026-09-17", "red"),
    "KC2026000900": ("ready", "2026-09-29", None),
}


class Hall:
    """One kiosk (`kiosk`, ks-01 at K01) in a whole hall without evaluators."""

    def __init__(self, tmp_path, prompt_s=3, heapsize="128k", site=None, **kiosk):
        site = dict({"status_s": 60, "ack_timeout_s": 5}, **(site or {}))
        self.whole = WholeHall(str(tmp_path / "hall"), hall=HALL, devices=0, kiosks=1, today=TODAY,
                               agent_config={"devices": {"prompt_s": prompt_s},
                                             "kiosk": {"cases_poll_s": 0.5, "cases_fresh_s": 10.0}},
                               kiosk_opts=dict(kiosk, heapsize=heapsize, site=site))
        self.agent = self.whole.agent
        try:
            self.whole.start()
            self.kiosk = self.whole.kiosks["ks-01"]
            self.whole.post_cases(CASE_EVENTS)
            wait_for(lambda: set(CASES) <= set(self.cached()), 30, 0.2, what="the county's cases in the agent's cache")
        except BaseException:
            self.stop()
            raise

    @property
    def db_path(self):
        return self.whole.work_dir + "/agent.db"

    def cached(self):
        return [c for (c,) in self.whole.agent_rows('SELECT "case" FROM cases')]

    def of_kind(self, kind):
        """The agent's stored events of `kind` (bodies), by device and seq."""
        return self.whole.agent_events(kind)

    def jobs(self):
        """The agent's print jobs: {job: (case, sha)}."""
        return {j: (c, sha) for j, c, sha in self.whole.agent_rows('SELECT job, "case", sha FROM print_jobs')}

    def at_county(self, kind):
        return self.whole.county_events(kind)

    def rate_url(self, case):
        return self.whole.county_cases()[case]["rate_url"]

    def open(self, url):
        """GET a page (the county's rating page from a QR code): (status, text)."""
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()

    def wait_county(self, kind, n, timeout=120):
        """Until the county holds n events of `kind` from the kiosk (the uplink's batches)."""
        wait_for(lambda: len(self.at_county(kind)) >= n, timeout, 0.5, what="%d %s events at the county" % (n, kind))
        return self.at_county(kind)

    def stop(self):
        self.whole.stop()


def ready(vk, timeout=30):
    wait_for(lambda: vk.stats().get("ready") and vk.state() == "idle", timeout, what="kiosk ready and idle")


def wait_state(vk, states, timeout=30):
    states = (states,) if isinstance(states, str) else states
    return wait_for(lambda: vk.state() in states and vk.state(), timeout, 0.05, what="kiosk in %s" % (states,))


def take_ticket(vk, choice, level="satisfied"):
    """A citizen at the thank-you or idle screen takes a ticket of the menu's
    `choice` (1..n) as fast as keys can be pressed, reads the number and rates
    the transaction: (ticket, printed). The kiosk takes one key at a time, and
    a key answered has been taken, so only the menu and the number are waited for."""
    vk.tap("ticket")
    wait_for(lambda: any(line.startswith("%d " % choice) for line in vk.lines()), 20, 0.02, what="the queue menu")
    vk.tap(str(choice))
    shown = wait_for(lambda: _number_shown(vk.lines()), 30, 0.02, what="the ticket's number")
    vk.tap("back")                       # read: on to the rating prompt
    vk.tap(level)
    return shown


def _number_shown(lines):
    # The message after a ticket: "Your number A012" or "Your number A012 (not printed)".
    if len(lines) != 2:                  # (the printing screen has four lines)
        return None
    if lines[0].startswith("Cannot"):
        raise AssertionError("the kiosk gave no ticket: %s" % lines)
    if not lines[0].startswith("Your number "):
        return None
    words = lines[0].split()
    return words[2], not lines[0].endswith("(not printed)")


def drained(vk, timeout=120):
    wait_for(lambda: vk.stats()["outbox"] == 0, timeout, 0.2, what="the kiosk's outbox acked")


def sessions(events):
    """kiosk_session events -> {session: [actions]}."""
    out = {}
    for ev in events:
        out.setdefault(ev["session"], []).append(ev["action"])
    return out


def ratings(events):
    """rating events -> {session: [levels]}."""
    out = {}
    for r in events:
        out.setdefault(r["session"], []).append(r["level"])
    return out
