"""Fetch the micropython-lib packages the firmware uses, by name and pinned hash.

The micropython-lib releases on PyPI are old upip-style sdists without a
setup.py, which pip refuses. This downloads each pinned sdist from the
package index, checks its sha256, and unpacks only its modules into
build/mplib/ (git-ignored). Host runs put that folder on MICROPYPATH; the
flashing tool copies from it. Nothing from micropython-lib is committed.

    python -m tools.mplib [--dest build/mplib] [--index URL]
"""
import argparse
import hashlib
import html.parser
import io
import os
import sys
import tarfile
import urllib.request

# name: (version, sha256 of the sdist, what it gives the firmware)
PINS = {
    "micropython-umqtt.simple": (
        "1.3.4", "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
        "MQTT 3.1.1 client; the baseline in bench/ and the simplest publisher"),
    "micropython-ssd1306": (
        "0.3", "d00cae1ff680e6ae504e258e700f002874b0d924b1a604253b6ea63144b58289",
        "SSD1306 OLED framebuf driver (the classic MicroPython one, MIT); board_mcu drives the display with it"),
}

DEFAULT_INDEX = os.environ.get("QINGLIAN_PYPI_SIMPLE", "https://pypi.org/simple")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DEST = os.path.join(HERE, "build", "mplib")


class FetchError(Exception):
    pass


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs).get("href", ""))


def _normalise(name):
    return name.lower().replace("_", "-").replace(".", "-")


def sdist_url(index, name, version):
    page = urllib.request.urlopen(index.rstrip("/") + "/" + _normalise(name) + "/", timeout=60)
    parser = _Links()
    parser.feed(page.read().decode())
    want = ("%s-%s.tar.gz" % (name, version)).lower()
    for href in parser.links:
        if href.split("#")[0].rsplit("/", 1)[-1].lower() == want:
            return href.split("#")[0]
    raise FetchError("%s %s is not on %s" % (name, version, index))


def modules(sdist_bytes):
    """Yield (relative path, bytes) of the .py modules in an sdist."""
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")[1:]
            if (member.isfile() and parts and parts[-1].endswith(".py")
                    and parts[0] not in ("setup.py", "sdist_upip.py")
                    and not any(p.endswith(".egg-info") or p == ".." for p in parts)):
                yield "/".join(parts), tar.extractfile(member).read()


def fetch(name, version, sha256, dest, index=DEFAULT_INDEX):
    stamp = os.path.join(dest, ".%s-%s.ok" % (name, version))
    if os.path.exists(stamp):
        return False
    url = sdist_url(index, name, version)
    data = urllib.request.urlopen(url, timeout=120).read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise FetchError("%s %s: sha256 %s does not match the pin %s" % (name, version, got, sha256))
    for rel, body in modules(data):
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
    open(stamp, "w").close()
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.mplib", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=DEFAULT_DEST, help="where to unpack (default: build/mplib)")
    ap.add_argument("--index", default=DEFAULT_INDEX, help="PEP 503 simple index (default: %(default)s)")
    args = ap.parse_args(argv)
    os.makedirs(args.dest, exist_ok=True)
    try:
        for i, (name, (version, sha, why)) in enumerate(sorted(PINS.items()), 1):
            done = fetch(name, version, sha, args.dest, args.index)
            print("[%d/%d] %s %s %s" % (i, len(PINS), name, version, "fetched" if done else "up to date"))
    except (FetchError, OSError) as e:
        print("mplib: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
