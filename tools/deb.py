"""`make deb`: the edge agent as a Debian package, qinglian-agent_<version>_all.deb.

The agent and the pinned versions of what `qinglian[agent]` needs go into
/usr/lib/qinglian (pure Python: one package for every Pi; the two compiled
ones python-escpos needs, Pillow and PyYAML, are Debian's: FROM_DEBIAN); /usr/bin/edge-agent
puts that directory ahead of Debian's python3-* modules (bookworm's
python3-paho-mqtt is 1.6, the agent is written for paho 2). The unit is
deploy/edge-agent.service with the package's paths; the Mosquitto drop-in is
what `edge-agent broker-config` writes, in its conf.d form. The maintainer
scripts and README.Debian are in deploy/debian/.

    python -m tools.deb [--out build/deb]
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

from edge_agent import broker
from tools import venvs
from tools.procs import ROOT

PACKAGE = "qinglian-agent"
LIB = "usr/lib/qinglian"
BROKER_DIR = "/etc/qinglian/mosquitto"
DROP_IN = "etc/mosquitto/conf.d/qinglian.conf"
UNIT = "lib/systemd/system/edge-agent.service"
DOC = "usr/share/doc/" + PACKAGE
DEBIAN_DIR = os.path.join(ROOT, "deploy", "debian")
# setuptools is declared by gpiozero's colorzero and never imported when the agent runs;
# pip comes with any venv. Debian's python3 has its own of both.
NOT_BUNDLED = {"pip", "setuptools"}
# Compiled libraries python-escpos needs (kiosk print jobs): Debian builds them for every
# Pi, so the package depends on Debian's and stays Architecture: all.
FROM_DEBIAN = {"pillow": "python3-pil", "pyyaml": "python3-yaml"}
MAINTAINER = "Qinglian maintainers <qinglian@example.org>"
DESCRIPTION = """\
Description: Qinglian edge agent for government service hall rating terminals
 The hall's Raspberry Pi: takes the window evaluators' signed rating events
 from the hall's Mosquitto broker, stores them in SQLite before acknowledging
 them, sends them to the county server, and drives the lobby screen and the
 tower light. Its config lives in /etc/qinglian, its store in
 /var/lib/qinglian; it runs as the system user qinglian.
"""


class DebError(Exception):
    pass


def version():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"] + "-1"


def source_date_epoch():
    """SOURCE_DATE_EPOCH, else the last commit's time: the same tree gives the same package."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else int(time.time())


def pinned_closure(work):
    """[(name, version)] that `qinglian[agent]`'s requirements resolve to under constraints.txt."""
    report = os.path.join(work, "resolve.json")
    venvs.pip("install", "--dry-run", "--quiet", "--ignore-installed", "--only-binary", ":all:",
              "--report", report, "-c", venvs.CONSTRAINTS, *venvs.extra("agent"))
    with open(report) as f:
        items = json.load(f)["install"]
    return sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in items)


def install_libraries(stage, work):
    """The agent's libraries into /usr/lib/qinglian, no bytecode (postinst compiles), no scripts."""
    wanted = [(n, v) for n, v in pinned_closure(work) if n.lower() not in NOT_BUNDLED | set(FROM_DEBIAN)]
    lib = os.path.join(stage, LIB)
    venvs.pip("install", "--quiet", "--no-deps", "--no-compile", "--only-binary", ":all:", "--target", lib,
              *["%s==%s" % nv for nv in wanted])
    shutil.rmtree(os.path.join(lib, "bin"), ignore_errors=True)  # entry points with the build's shebang
    return wanted


def copy_agent(stage):
    """edge_agent/ and protocol/, the files the agent runs (tools/ and hardware/ stay on the laptop)."""
    for package, patterns in (("protocol", ("*.py", "*reasons.json")), ("edge_agent", ("*.py", "*.html"))):
        src = os.path.join(ROOT, package)
        for top, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if any(f.endswith(p[1:]) for p in patterns):
                    dest = os.path.join(stage, LIB, os.path.relpath(os.path.join(top, f), ROOT))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copyfile(os.path.join(top, f), dest)


def unit_text():
    """deploy/edge-agent.service with the package's paths; its hardening unchanged."""
    with open(os.path.join(ROOT, "deploy", "edge-agent.service")) as f:
        lines = f.read().splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("[Unit]")):]
    swap = {"ExecStart=": "ExecStart=/usr/bin/edge-agent run --config /etc/qinglian/edge-agent.toml",
            "Documentation=": "Documentation=file:///usr/share/doc/%s/README.Debian" % PACKAGE}
    out = ["# Qinglian edge agent, from the %s package. Config: /etc/qinglian/edge-agent.toml" % PACKAGE]
    for line in body:
        key = next((k for k in swap if line.startswith(k)), None)
        out.append(swap[key] if key else line)
    if not any(line.startswith("ExecStart=/usr/bin/") for line in out):
        raise DebError("deploy/edge-agent.service has no ExecStart= line to point at /usr/bin/edge-agent")
    return "\n".join(out) + "\n"


def drop_in_text():
    return ("# From the %s package: the hall's broker, as `edge-agent broker-config` writes it, for\n"
            "# Debian's mosquitto.conf (which sets persistence_location and the log). Logins and ACL:\n"
            "#   sudo -u qinglian edge-agent broker-config --out %s\n"
            "# A change you make here is yours: dpkg keeps it on upgrades.\n"
            % (PACKAGE, BROKER_DIR)) + broker.conf_text(BROKER_DIR, drop_in=True)


def copyright_text(bundled):
    lines = ["Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
             "Upstream-Name: qinglian", "Comment: /usr/lib/qinglian also holds these Python packages, each",
             " under the licence its .dist-info names: " + ", ".join("%s %s" % nv for nv in bundled) + ".", "",
             "Files: *", "Copyright: 2026 Qinglian contributors", "License: MIT", "",
             "License: MIT",
             " Permission is hereby granted, free of charge, to any person obtaining a copy of this",
             " software and associated documentation files (the \"Software\"), to deal in the Software",
             " without restriction, including without limitation the rights to use, copy, modify, merge,",
             " publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons",
             " to whom the Software is furnished to do so, subject to the following conditions:", " .",
             " The above copyright notice and this permission notice shall be included in all copies or",
             " substantial portions of the Software.", " .",
             " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,",
             " INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR",
             " PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE",
             " FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR",
             " OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER",
             " DEALINGS IN THE SOFTWARE."]
    return "\n".join(lines) + "\n"


def changelog_gz(ver, epoch):
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    text = ("%s (%s) unstable; urgency=medium\n\n  * Built from the qinglian tree by `make deb`.\n\n -- %s  %s\n"
            % (PACKAGE, ver, MAINTAINER, date))
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def write(stage, rel, data, mode=0o644):
    path = os.path.join(stage, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def normalise(stage, epoch):
    """Modes as lintian expects (0755 dirs and programs, 0644 the rest); mtimes the source's."""
    for top, dirs, files in os.walk(stage):
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o755)
        for f in files:
            p = os.path.join(top, f)
            executable = os.path.relpath(p, stage).startswith(("usr/bin/", "DEBIAN/post", "DEBIAN/pre"))
            os.chmod(p, 0o755 if executable else 0o644)
    for top, dirs, files in os.walk(stage):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (epoch, epoch), follow_symlinks=False)


def control(ver, stage):
    kib = sum((os.lstat(os.path.join(t, f)).st_size + 1023) // 1024 for t, _, fs in os.walk(stage) for f in fs)
    return ("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: %s\nInstalled-Size: %d\n"
            "Depends: python3 (>= 3.11), adduser, mosquitto, tzdata, %s\n"
            "Suggests: python3-lgpio, espeak-ng, alsa-utils\n"
            "Section: net\nPriority: optional\n%s" % (PACKAGE, ver, MAINTAINER, kib,
                                                   ", ".join(sorted(FROM_DEBIAN.values())), DESCRIPTION))


def md5sums(stage, skip):
    lines = []
    for top, dirs, files in os.walk(stage):
        dirs.sort()
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(top, f), stage)
            if rel.startswith("DEBIAN/") or "/" + rel in skip:
                continue
            with open(os.path.join(top, f), "rb") as fh:
                lines.append("%s  %s\n" % (hashlib.md5(fh.read()).hexdigest(), rel))
    return "".join(lines)


def build(out_dir):
    """Build the package in `out_dir`; returns its path."""
    ver, epoch = version(), source_date_epoch()
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qinglian-deb-") as work:
        stage = os.path.join(work, "stage")
        bundled = install_libraries(stage, work)
        copy_agent(stage)
        compiled = [os.path.join(t, f) for t, _, fs in os.walk(stage) for f in fs if f.endswith((".so", ".pyd"))]
        if compiled:
            raise DebError("not pure Python, cannot be Architecture: all: %s" % ", ".join(compiled))
        with open(os.path.join(DEBIAN_DIR, "edge-agent")) as f:
            write(stage, "usr/bin/edge-agent", f.read())
        write(stage, UNIT, unit_text())
        write(stage, DROP_IN, drop_in_text())
        write(stage, DOC + "/copyright", copyright_text(bundled))
        write(stage, DOC + "/changelog.Debian.gz", changelog_gz(ver, epoch))
        shutil.copyfile(os.path.join(DEBIAN_DIR, "README.Debian"), os.path.join(stage, DOC, "README.Debian"))
        for script in ("postinst", "prerm", "postrm"):
            with open(os.path.join(DEBIAN_DIR, script)) as f:
                write(stage, "DEBIAN/" + script, f.read())
        conffiles = ["/" + DROP_IN]
        write(stage, "DEBIAN/conffiles", "".join(c + "\n" for c in conffiles))
        write(stage, "DEBIAN/md5sums", md5sums(stage, set(conffiles)))
        write(stage, "DEBIAN/control", control(ver, stage))
        normalise(stage, epoch)
        deb = os.path.join(os.path.abspath(out_dir), "%s_%s_all.deb" % (PACKAGE, ver))
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        out = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, deb],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise DebError("dpkg-deb: %s" % (out.stderr.strip() or out.returncode))
    return deb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "deb"), help="directory for the .deb")
    args = ap.parse_args(argv)
    if not shutil.which("dpkg-deb"):
        print("deb: error: dpkg-deb not found (apt-get install dpkg-dev)", file=sys.stderr)
        return 1
    try:
        print(build(args.out))
    except (DebError, RuntimeError) as e:
        print("deb: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
