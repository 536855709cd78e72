"""`make bench`: run every benchmark in bench/, each measuring its baseline in
the same run, and print their tables. `python -m bench NAME ...` runs some.

Each bench module is standalone (`python -m bench.NAME --help`); this runner
only calls them one after another so that they do not compete for the two cores.

Every run also writes bench/results.json: the machine (CPU, cores, memory,
kernel, Python, load when it started, the commit) and per benchmark its exit,
its time and the last lines it printed (its table), plus the figures it wrote
itself as JSON to $QL_BENCH_JSON when it does (bench.press_to_county does).
A run of some benchmarks replaces only their entries.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")


def modules():
    return sorted(f[:-3] for f in os.listdir(HERE)
                  if f.endswith(".py") and not f.startswith("_"))


def machine():
    """What the figures were measured on."""
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            return None
    rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
            "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
            "python": platform.python_version(), "load_at_start": os.getloadavg(),
            "commit": rev.stdout.strip() or None, "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def run_one(name):
    """Run bench.NAME, its output passed through; (exit code, entry for results.json)."""
    fd, js = tempfile.mkstemp(prefix="bench-%s-" % name, suffix=".json")
    os.close(fd)
    started = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "bench." + name], cwd=os.path.dirname(HERE), text=True,
                         stdout=subprocess.PIPE, env=dict(os.environ, QL_BENCH_JSON=js))
    lines = []
    for line in p.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    rc = p.wait()
    entry = {"exit": rc, "seconds": round(time.monotonic() - started), "output": lines[-40:]}
    try:
        with open(js) as f:
            entry["results"] = json.load(f)
    except (OSError, ValueError):
        pass
    os.remove(js)
    return rc, entry


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks: " + ", ".join(modules()))
        return 0
    names = argv or modules()
    failed = []
    try:
        with open(RESULTS) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {}
    results["machine"] = machine()
    results.setdefault("benchmarks", {})
    for name in names:
        print("\n=== bench.%s ===" % name, flush=True)
        rc, entry = run_one(name)
        entry["machine"] = results["machine"]
        results["benchmarks"][name] = entry
        with open(RESULTS, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
        print("--- bench.%s: %s in %ds" % (name, "ok" if rc == 0 else "FAILED (exit %d)" % rc, entry["seconds"]),
              flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
