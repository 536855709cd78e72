"""How fast a kiosk streams a print job to its printer, against the
printer's wire speed (its UART baud), both in this run:

  wire        what the baud carries at most: baud / 10 bytes/s (8N1);
  kiosk       the real kiosk firmware (tools/vkiosk.py at -X heapsize=128k,
              simulated board and UART) printing the real agent's case-status
              slip (python-escpos bytes, fetched in chunks onto flash first)
              to the strict simulated ESC/POS printer on a PTY, its head
              fast enough never to hold the line: bytes from the job's first
              ESC @ to its closing GS r, over the time between them.

Also the whole citizen-visible time: print key to `printed` (status checks,
the job fetched from the agent in chunks, streamed, GS r answered).
Each baud runs in a hall of its own (tools/hall.py: county with the case,
agent, Mosquitto, one kiosk).

    python -m bench.kiosk_print [--bauds 9600,19200,38400,115200] [--jobs 3]
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))

from tools.hall import Hall  # noqa: E402
from tools.procs import wait_for  # noqa: E402

CASE = "KB2026000001"
EVENTS = [{"id": "b-1", "case": CASE, "type": "accepted", "date": "2026-09-21", "item": "431100-001",
           "item_name": "食品经营许可", "window": "A01", "promised_days": 5}]


def stream_rate(rx_log):
    """(bytes, seconds) from the job's ESC @ (the kiosk's and the job's own) to its GS r."""
    stream, times = b"", []
    for t, data in rx_log:
        stream += data
        times += [t] * len(data)
    start = stream.find(b"\x1b@\x1b@")
    end = stream.find(b"\x1dr\x01", start)
    if start < 0 or end < 0:
        raise RuntimeError("no whole job in the printer's stream")
    end += 3
    return end - start, times[end - 1] - times[start]


def run(baud, jobs, work):
    hall = Hall(os.path.join(work, "b%d" % baud), hall="bench-hall", devices=0, kiosks=1, today="2026-09-28",
                agent_config={"kiosk": {"cases_poll_s": 0.5, "cases_fresh_s": 30.0}, "devices": {"prompt_s": 1}},
                kiosk_opts={"printer_baud": baud, "printer_opts": {"print_bps": 10 ** 7},
                            "site": {"status_s": 600}})
    try:
        hall.start()
        hall.post_cases(EVENTS)
        vk = hall.kiosks["ks-01"]
        wait_for(lambda: vk.stats().get("ready") and vk.state() == "idle", 60, 0.1, "kiosk ready")
        out = []
        for i in range(jobs):
            wait_for(lambda: vk.state() == "idle", 60, 0.05, "kiosk idle")
            pr = vk.printer
            vk.scan(CASE)
            wait_for(lambda: vk.state() in ("case", "message"), 60, 0.02, "the case on screen")
            if vk.state() != "case":       # the cache not filled yet: try again
                wait_for(lambda: vk.state() == "idle", 60, 0.1, "kiosk idle")
                continue
            pr.rx_log = []
            printed = vk.stats()["printed"]
            t0 = time.monotonic()
            vk.tap("print")
            wait_for(lambda: vk.stats()["printed"] > printed, 120, 0.02, "printed")
            total = time.monotonic() - t0
            size, seconds = stream_rate(pr.rx_log)
            pr.rx_log = None
            out.append((size, seconds, total))
            wait_for(lambda: vk.state() == "prompt", 60, 0.05, "the prompt")
            vk.tap("satisfied")
        if pr.error:
            raise RuntimeError("printer stopped: %s" % pr.error)
        return out
    finally:
        hall.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bauds", default="9600,19200,38400,115200")
    ap.add_argument("--jobs", type=int, default=3, help="print jobs per baud (the median is shown)")
    args = ap.parse_args(argv)
    print("%8s %12s %14s %8s %12s %14s" % ("baud", "wire B/s", "streamed B/s", "of wire", "job bytes",
                                            "key->printed"))
    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as work:
        for baud in (int(b) for b in args.bauds.split(",")):
            got = sorted(run(baud, args.jobs, work), key=lambda r: r[0] / r[1])
            size, seconds, total = got[len(got) // 2]
            wire = baud / 10
            rate = size / seconds
            print("%8d %12.0f %14.0f %7.0f%% %12d %13.2fs" % (baud, wire, rate, 100 * rate / wire, size, total),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
