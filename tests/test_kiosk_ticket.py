"""Queue tickets at the kiosk (issue 9), all real parts: kiosks and an
evaluator running the real firmware under MicroPython (the kiosk at
-X heapsize=128k with its simulated printer), real Mosquitto, the real
agent and county. A ticket taken online is numbered by the agent and
printed from its job; the evaluator's staff key calls it and its session
carries it. A kiosk that cannot ask hands out numbers from the block it
reserved, on flash across its reboots, and they join their queue and
reach the county when it is back."""
import threading

import pytest

from harness import wait_for, wait_port
from kiosk_rig import drained, ready, sessions, take_ticket, wait_state
from tools.hall import Hall

HALL = "tk-hall"


@pytest.fixture
def hall(tmp_path, request):
    kiosks, devices = getattr(request, "param", (1, 1))
    h = Hall(str(tmp_path / "hall"), hall=HALL, devices=devices, kiosks=kiosks, heapsize="64k",
             queues={"A": "综合受理", "B": "不动产登记"}, serve={"A01": "AB"} if devices else None,
             agent_config={"devices": {"prompt_s": 3}, "queue": {"block_size": 20}},
             kiosk_opts={"site": {"status_s": 60, "ack_timeout_s": 5}})
    try:
        h.start()
        for vk in h.kiosks.values():
            ready(vk)
            # Each kiosk's blocks (20 numbers of each queue: 1-20, 21-40, ...), asked
            # for at boot: the queues were there.
            for letter in "AB":
                _blocked(vk, letter)
        yield h
    finally:
        h.stop()


def _take(vk, choice):
    """A citizen takes a ticket from the menu (1..n); the printer's slip count after it."""
    n = len(vk.printer.cut_slips())
    wait_state(vk, ("idle", "thanks"))
    vk.tap("ticket")
    wait_for(lambda: any(l.startswith("%d " % choice) for l in vk.lines()), 20, 0.05, what="the queue menu")
    vk.tap(str(choice))
    wait_for(lambda: len(vk.printer.cut_slips()) > n, 60, 0.1, what="the ticket printed")
    wait_state(vk, "prompt", 30)
    return vk.printer.cut_slips()[-1]


def _blocked(vk, letter):
    return wait_for(lambda: letter in (vk.stats().get("blocks") or {}) and vk.stats()["blocks"][letter],
                    60, 0.2, what="the kiosk's block for %s" % letter)


def test_a_ticket_taken_online_is_printed_and_called_by_the_window(hall):
    vk, vd = hall.kiosks["ks-01"], hall.devices["ev-01"]
    wait_for(lambda: "Welcome" in vd.screen()["lines"], 30, what="the evaluator has its config")
    slip = _take(vk, 1)             # the first number after the kiosk's block, A001-A020
    assert vk.printer.error is None and slip.cut
    text = slip.text
    for part in ("排队凭条", "A021", "业务:综合受理", "前面等候:0 人", "大厅:%s" % HALL):
        assert part in text, (part, text)
    prints = hall.agent_events("print")
    assert [(p["doc"], p["result"]) for p in prints] == [("ticket", "ok")]
    assert "凭条号:%s" % prints[0]["job"] in text
    # The agent holds the county's link key: the slip's QR is the ticket's signed link.
    assert len(slip.qr) == 1 and "/r/%s/ticket/" % HALL in slip.qr[0] and "-A021/" in slip.qr[0], slip.qr
    vk.tap("very_satisfied")                     # 一次一评: the ticket transaction is rated too
    drained(vk)
    rating = [r for r in hall.agent_events("rating") if r["channel"] == "kiosk"]
    assert len(rating) == 1
    assert sessions(hall.agent_events("kiosk_session")) == {rating[0]["session"]: ["started", "ended"]}
    # A second ticket, of queue B: the kiosk's menu has both.
    slip = _take(vk, 2)
    assert "B021" in slip.text and "不动产登记" in slip.text
    # The window calls: A021 first (issued first), its session carries the ticket.
    for want in ("A021", "B021"):
        vd.staff("start")
        wait_for(lambda: vd.screen()["lines"][1].startswith(want), 30, what="%s called at A01" % want)
        vd.staff("end")
        vd.press("satisfied")
    wait_for(lambda: [s.get("ticket") for s in hall.agent_events("session") if s["action"] == "started"]
             == ["A021", "B021"], 30, what="the window's sessions carry the tickets")
    called = [e for e in hall.agent_events("ticket") if e.get("action") == "called"]
    assert [(e["ticket"], e["window"]) for e in called] == [("A021", "A01"), ("B021", "A01")]


@pytest.mark.parametrize("hall", [(2, 0)], indirect=True)
def test_kiosks_cut_off_issue_unique_tickets_from_their_blocks(hall):
    k1, k2 = hall.kiosks["ks-01"], hall.kiosks["ks-02"]
    online = _take(k1, 1)                        # the agent's first after the two blocks: A041
    assert "A041" in online.text
    k1.tap("satisfied")
    blocks = {vk.device: _blocked(vk, "A") for vk in (k1, k2)}
    assert blocks["ks-01"][0] == blocks["ks-02"][0]           # the same day
    r1, r2 = (range(b[1], b[2] + 1) for b in blocks.values())
    assert not set(r1) & set(r2) and 41 not in r1 and 41 not in r2
    # Cut both off the hall's Wi-Fi: tickets from the blocks, printed by the kiosks.
    for vk in (k1, k2):
        vk.wifi(False)
    wait_for(lambda: not k1.stats()["connected"] and not k2.stats()["connected"], 30, what="kiosks offline")
    got = []
    for vk in (k1, k2, k1, k2):
        slip = _take(vk, 1)
        assert "(offline)" in slip.text and "综合受理" in slip.text and vk.printer.error is None, slip.text
        got.append(slip.lines[0])
        vk.tap("satisfied")
    # The kiosk reboots (a power cut) and is back on the Wi-Fi, the agent gone: the
    # block on flash goes on where it was, never the same number again.
    hall.agent.stop()
    k1.kill()
    k1.start()
    k1.wifi(True)
    ready(k1, 60)
    slip = _take(k1, 1)
    assert "(offline)" in slip.text
    got.append(slip.lines[0])
    k1.tap("satisfied")
    assert len(set(got)) == 5, got
    assert all(t[0] == "A" for t in got)
    # The agent is back, ks-02 on the Wi-Fi again: every offline ticket is in queue A
    # (from a block), and at the county.
    hall.agent.start()
    k2.wifi(True)
    for vk in (k1, k2):
        drained(vk)
    wait_for(lambda: sorted(t for (t,) in hall.agent_rows("SELECT ticket FROM tickets WHERE source = 'block'"))
             == sorted(got), 60, 0.5, what="the offline tickets in their queue")
    rows = hall.agent_rows("SELECT ticket, queue, state FROM tickets ORDER BY ticket")
    assert len(rows) == 6 and all(q == "A" and s == "waiting" for _, q, s in rows)
    at = wait_for(lambda: len(hall.county_events("ticket", "ks-")) >= 5 and hall.county_events("ticket", "ks-"),
                  120, 0.5, what="the offline tickets at the county")
    assert sorted(e["ticket"] for e in at) == sorted(got)
    assert not [r for r in hall.agent_rows("SELECT name FROM counters WHERE name LIKE 'queue_offline_refused%'")]


@pytest.mark.parametrize("hall", [(2, 0)], indirect=True)
def test_200_tickets_from_two_kiosks_through_an_agent_kill_no_number_twice_none_lost(hall):
    """Two kiosks hand out 200 tickets between them, citizens pressing as fast
    as keys go; the agent is SIGKILLed mid-stream and stays away until each
    kiosk has handed out tickets of its own block, then comes back."""
    kiosks = list(hall.kiosks.values())
    shown = {vk.device: [] for vk in kiosks}
    failed = []

    def citizens(vk):
        try:
            for i in range(100):
                shown[vk.device].append(take_ticket(vk, 1 + i % 2))
        except BaseException as e:          # the test thread reports it
            failed.append((vk.device, e))

    threads = [threading.Thread(target=citizens, args=(vk,)) for vk in kiosks]
    for t in threads:
        t.start()
    wait_for(lambda: sum(map(len, shown.values())) >= 70 or failed, 60, 0.1, what="70 tickets before the kill")
    hall.agent.kill()            # SIGKILL, mid-stream: a ticket asked, perhaps committed and not answered
    wait_for(lambda: all(vk.stats()["issued_offline"] for vk in kiosks) or failed, 60, 0.5,
             what="each kiosk's own tickets while the agent is away")
    hall.agent.start()
    wait_port(hall.http_port, 30)
    for t in threads:
        t.join(120)
    assert not failed, failed
    got = [t for v in shown.values() for t, _ in v]
    assert len(got) == 200 and len(set(got)) == 200, "a number given twice"
    offline = {t for vk in kiosks for t in _offline(vk, shown[vk.device])}
    assert sum(vk.stats()["issued_offline"] for vk in kiosks) == len(offline) >= 2
    for vk in kiosks:
        drained(vk)
    wait_for(lambda: {t for (t,) in hall.agent_rows("SELECT ticket FROM tickets WHERE source = 'block'")} == offline,
             60, 0.5, what="the offline tickets in their queues")
    day = hall.agent_rows("SELECT max(day) FROM tickets")[0][0]
    stored = {t for (t,) in hall.agent_rows("SELECT ticket FROM tickets WHERE day = ?", (day,))}
    assert set(got) <= stored
    # What the kill cut off (committed, never answered: QoS 0 requests die with the
    # agent) is on record, no more than a kiosk had in flight.
    assert len(stored - set(got)) <= len(kiosks)
    # Every number of each queue's day is on record, once: an online ticket, or a
    # kiosk's block (the numbers of a block it handed out among them).
    for q in "AB":
        last = hall.agent_rows("SELECT last FROM queue_numbers WHERE queue = ? AND day = ?", (q, day))[0][0]
        numbers = [int(t[1:]) for (t,) in hall.agent_rows(
            "SELECT ticket FROM tickets WHERE queue = ? AND day = ? AND source = 'agent'", (q, day))]
        blocks = hall.agent_rows("SELECT device, lo, hi FROM queue_blocks WHERE queue = ? AND day = ?", (q, day))
        for _, lo, hi in blocks:
            numbers += range(lo, hi + 1)
        assert sorted(numbers) == list(range(1, last + 1)), "queue %s: a number skipped or given twice" % q
        for device, ticket in hall.agent_rows(
                "SELECT device, ticket FROM tickets WHERE queue = ? AND day = ? AND source = 'block'", (q, day)):
            assert any(d == device and lo <= int(ticket[1:]) <= hi for d, lo, hi in blocks), ticket
    # Each online ticket went to the county's queue once, as the agent's own `issued` event.
    assert hall.agent_rows("SELECT count(*) FROM events WHERE device = '_queue' AND "
                           "json_extract(body, '$.action') = 'issued'")[0][0] == len(stored - offline)


def _offline(vk, shown):
    """The tickets a kiosk handed out from its block: its own slips say so."""
    own = {slip.lines[0] for slip in vk.printer.cut_slips() if "(offline)" in slip.text}
    return [t for t, _ in shown if t in own]
