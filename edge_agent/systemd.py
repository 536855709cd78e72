"""sd_notify without a dependency: one datagram to $NOTIFY_SOCKET.

READY=1 once ingest runs, WATCHDOG=1 while the committer makes progress
(systemd restarts a hung agent after WatchdogSec), STOPPING=1 on SIGTERM.
"""
import os
import socket


def notify(state):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), addr)
        return True
    except OSError:
        return False


def watchdog_interval_s():
    """Half of WatchdogSec, or None when systemd does not watch us."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or (os.environ.get("WATCHDOG_PID") and os.environ["WATCHDOG_PID"] != str(os.getpid())):
        return None
    return int(usec) / 2e6
