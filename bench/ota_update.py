"""An update's time: over the air through the hall's agent (`hallctl ota`)
against over USB with `hallctl update` (issue 11).

  OTA    a virtual evaluator running the real firmware at 56 KiB (what an update needs) (tools.hall:
         real Mosquitto, the real agent and county), offered a bundle of this
         tree's firmware with a new version: the download (the agent's first
         chunk served to the device's `switching` report) and the whole update
         (offer to `healthy` on the new version, restart included), and the
         chunks the agent served;
  USB    the same board's flash on a serial port (tools.vserial: a PTY, as
         tests/test_hallctl.py uses; no UART baud limit, so a real cable is
         slower), `hallctl install --no-font` (every file), then `hallctl
         update --no-font` after one module on the board changed (what a
         typical fix sends: the files that differ).

    python -m bench.ota_update [--heap 56k]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from tools.hall import Hall  # noqa: E402
from tools.hallctl import ota as hota  # noqa: E402
from tools.procs import VENV_BIN  # noqa: E402
from tools.vdevice import rom_sources  # noqa: E402


def bundle(work, version):
    srcs = []
    os.makedirs(os.path.join(work, "src", "protocol"), exist_ok=True)
    for local, name in rom_sources():
        with open(local) as f:
            text = f.read()
        if name == "evaluator.py":
            text = re.sub(r'FW = "[^"]*"', 'FW = "%s"' % version, text)
        path = os.path.join(work, "src", name)
        with open(path, "w") as f:
            f.write(text)
        srcs.append((path, name))
    out = os.path.join(work, "bench.qlb")
    hota.build(out, "sim", srcs)
    return out


def over_the_air(work, heap):
    h = Hall(os.path.join(work, "hall"), hall="bench-ota", devices=1, heapsize=heap).start()
    try:
        dev = h.device_ids[0]
        path = bundle(work, "ql-eval/0.9-bench")
        size = os.path.getsize(path)
        agent = hota.Agent("http://127.0.0.1:%d" % h.http_port)
        version = agent.send_bundle(path)
        t0 = time.monotonic()
        agent.offer([dev], version, 120)
        first = switching = None
        while True:
            st = agent.status()[dev]
            now = time.monotonic()
            if first is None and st["chunks"]:
                first = now
            if switching is None and st["state"] in ("switching", "healthy"):
                switching = now
            if st["state"] == "healthy":
                done = now
                break
            if st["state"] in ("rolled_back", "refused", "failed") or now - t0 > 600:
                raise SystemExit("the update did not complete: %s" % st)
            time.sleep(0.05)
        with zipfile.ZipFile(path) as z:
            image = json.loads(z.read("manifest.json"))["files"][0]["size"]
        return {"bundle_bytes": size, "image_bytes": image, "chunks": st["chunks"],
                "download_s": round(switching - first, 1), "update_s": round(done - t0, 1)}
    finally:
        h.stop()


def over_usb(work):
    from tools.vserial import VirtualSerial
    hallctl = os.path.join(VENV_BIN, "hallctl")
    port = VirtualSerial(work, os.path.join(work, "usb-flash.img")).start()
    try:
        t0 = time.monotonic()
        out = subprocess.run([hallctl, "install", port.tty, "--board", "esp32_devkitc", "--no-font"],
                             capture_output=True, text=True, timeout=600)
        install_s = time.monotonic() - t0
        if out.returncode:
            raise SystemExit("hallctl install failed: %s" % out.stderr)
        # A fix in one module: the board's evaluator.py differs from the bundle's.
        subprocess.run([os.path.join(VENV_BIN, "mpremote"), "connect", port.tty, "resume", "exec",
                        "f = open('evaluator.py', 'a'); f.write('#'); f.close()"],
                       capture_output=True, text=True, timeout=60, check=True)
        t0 = time.monotonic()
        out = subprocess.run([hallctl, "update", port.tty, "--no-font"], capture_output=True, text=True,
                             timeout=600)
        update_s = time.monotonic() - t0
        if out.returncode:
            raise SystemExit("hallctl update failed: %s" % out.stderr)
        changed = re.search(r"(\d+) changed", out.stdout)
        return {"install_s": round(install_s, 1), "update_s": round(update_s, 1),
                "update_changed": int(changed.group(1)) if changed else None}
    finally:
        port.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.ota_update", description=__doc__.split("\n")[0])
    ap.add_argument("--heap", default="56k", help="-X heapsize of the virtual device (default 56k)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-ota-")
    try:
        air = over_the_air(work, args.heap)
        usb = over_usb(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("update of one evaluator (this tree's firmware, a new version)")
    print("%-44s %10s" % ("", "seconds"))
    print("%-44s %10.1f" % ("OTA: download (%d B image, %d chunks)" % (air["image_bytes"], air["chunks"]),
                            air["download_s"]))
    print("%-44s %10.1f" % ("OTA: offer to healthy (restart included)", air["update_s"]))
    print("%-44s %10.1f" % ("USB: hallctl install --no-font (every file)", usb["install_s"]))
    print("%-44s %10.1f" % ("USB: hallctl update (%s file changed)" % usb["update_changed"], usb["update_s"]))
    js = os.environ.get("QL_BENCH_JSON")
    if js:
        with open(js, "w") as f:
            json.dump({"ota": air, "usb": usb}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
