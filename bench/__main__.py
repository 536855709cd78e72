"""`make bench`: run every benchmark in bench/, each measuring its baseline in
the same run, and print their tables. `python -m bench NAME ...` runs some.

Each bench module is standalone (`python -m bench.NAME --help`); this runner
only calls them one after another so that they do not compete for the two cores.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def modules():
    return sorted(f[:-3] for f in os.listdir(HERE)
                  if f.endswith(".py") and not f.startswith("_"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks: " + ", ".join(modules()))
        return 0
    names = argv or modules()
    failed = []
    for name in names:
        print("\n=== bench.%s ===" % name, flush=True)
        started = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", "bench." + name], cwd=os.path.dirname(HERE))
        print("--- bench.%s: %s in %.0fs" % (name, "ok" if rc == 0 else "FAILED (exit %d)" % rc,
                                          time.monotonic() - started), flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
