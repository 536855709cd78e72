"""`make demo`: a hall on this machine, run on embedded defaults.

Starts a private Mosquitto, the reference county server, the edge agent and
virtual evaluators running the real firmware under MicroPython, then lets
simulated citizens be served and press buttons. Prints a live summary until
Ctrl-C, or for --seconds and then checks that every rating a citizen was
thanked for reached the county database exactly once (exit 0) or not (exit 1).
"""
import argparse
import os
import random
import sys
import threading
import time

from tools.hall import Hall

# Most citizens are content; the lobby screen should still see some 差评.
LEVEL_WEIGHTS = [("very_satisfied", 60), ("satisfied", 25), ("basically_satisfied", 8),
                 ("dissatisfied", 4), ("very_dissatisfied", 3)]
# Who is on duty at A01, A02, ...: their names on the evaluators and the lobby screen,
# their numbers (经办人编号) in every rating and in the monthly report.
ROSTER = [("王芳", "1024"), ("李强", "1025"), ("张丽", "1031"), ("刘洋", "1042"), ("陈静", "1057"),
          ("杨帆", "1063"), ("赵敏", "1078"), ("黄磊", "1081")]


def citizen_loop(vd, stop, pressed, lock, rng):
    ticket = 0
    levels = [lv for lv, w in LEVEL_WEIGHTS for _ in range(w)]
    while not stop.is_set():
        ticket += 1
        try:
            vd.call("A%03d" % ticket)
            time.sleep(rng.uniform(0.2, 1.0))          # the service, compressed
            if rng.random() < 0.1:
                vd.staff("pause")
                time.sleep(0.2)
                vd.staff("resume")
            vd.staff("end")
            time.sleep(rng.uniform(0.1, 0.4))          # the citizen reads the prompt
            vd.press(rng.choice(levels))
            with lock:
                pressed[0] += 1
        except OSError as e:                           # device restarting: try again
            print("  %s: %s" % (vd.device, e), file=sys.stderr)
        time.sleep(rng.uniform(0.2, 0.8))


def thanks(hall):
    return sum(vd.stats().get("thanks", 0) for vd in hall.devices.values())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0, help="run this long, then verify (0: until Ctrl-C)")
    ap.add_argument("--devices", type=int, default=5, help="virtual evaluators (default: 5)")
    ap.add_argument("--work-dir", default="demo-run", help="state of this run (default: demo-run/)")
    args = ap.parse_args(argv)

    work = os.path.join(args.work_dir, time.strftime("%Y%m%d-%H%M%S"))
    hall = Hall(work, devices=args.devices)
    print("starting a hall in %s: Mosquitto, county server, edge agent, %d evaluators" % (work, args.devices))
    stop = threading.Event()
    pressed, lock = [0], threading.Lock()
    try:
        hall.start()
        for i in range(args.devices):
            name, number = ROSTER[i % len(ROSTER)]
            hall.edge_agent("window", "set", "A%02d" % (i + 1), "--staff", name, "--staff-no", number)
        print("hall screen:   %s  (JSON: /api/hall, Prometheus: /metrics)" % hall.screen_url)
        print("county server: %s" % hall.county_url)
        print("monthly report: .venv/bin/county-server report --db %s --hall %s --month %s"
              % (os.path.join(work, "county.db"), hall.hall, time.strftime("%Y-%m")))
        rng = random.Random(1)
        threads = [threading.Thread(target=citizen_loop, args=(vd, stop, pressed, lock, random.Random(rng.random())),
                                    daemon=True) for vd in hall.devices.values()]
        for t in threads:
            t.start()
        started = time.monotonic()
        while not args.seconds or time.monotonic() - started < args.seconds:
            time.sleep(2)
            # Downstream first, so a press finishing meanwhile mostly shows as "pressed" ahead
            # of "thanked" (a press counts when its button is released, after the thank-you).
            county, thanked = hall.county_ratings(), thanks(hall)
            print("  %4.0fs  pressed %5d   thanked %5d   at county %5s" % (
                time.monotonic() - started, pressed[0], thanked, county))
        stop.set()
        for t in threads:
            t.join(10)
        want = thanks(hall)
        print("citizens stopped; waiting for the county to hold all %d ratings ..." % want)
        try:
            hall.wait_county_ratings(want, timeout=90)
        except TimeoutError:
            pass
        got = hall.county_ratings()
        print("pressed %d, thanked %d, stored at county %s" % (pressed[0], want, got))
        if got == want == pressed[0]:
            print("OK: every rating reached the county exactly once")
            return 0
        print("MISMATCH: see the logs in %s" % work, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        stop.set()
        hall.stop()


if __name__ == "__main__":
    sys.exit(main())
