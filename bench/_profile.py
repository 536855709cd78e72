"""Run `edge-agent ARGS...` with cProfile in every thread (the committer and
paho's network loop do the work, not the main thread) and write the merged
profile, top functions by own time and by cumulative time, to OUT.

    python -m bench._profile OUT run --config agent.toml

Used by the benches' `--profile`; a leading underscore keeps it out of `make bench`.
"""
import atexit
import cProfile
import io
import pstats
import sys
import threading

_profiles = []


def _start_in_thread(*_):
    # threading.setprofile's hook runs first thing in each new thread: swap it
    # for a profiler of that thread's own (Thread subclasses included).
    sys.setprofile(None)
    p = cProfile.Profile()
    _profiles.append(p)
    p.enable()


def _dump(out, main):
    main.disable()
    buf = io.StringIO()
    stats = pstats.Stats(main, stream=buf)
    for p in _profiles:
        stats.add(p)
    stats.strip_dirs()
    for order in ("tottime", "cumulative"):
        stats.sort_stats(order).print_stats(60)
    with open(out, "w") as f:
        f.write(buf.getvalue())
    stats.dump_stats(out + ".pstats")


def main():
    out, argv = sys.argv[1], sys.argv[2:]
    threading.setprofile(_start_in_thread)
    main_profile = cProfile.Profile()
    atexit.register(_dump, out, main_profile)
    from edge_agent.cli import main as agent_main
    main_profile.enable()
    return agent_main(argv)


if __name__ == "__main__":
    sys.exit(main())
