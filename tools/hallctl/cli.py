"""hallctl: the technician's tool for evaluators and kiosks.

    hallctl ports                                   list serial ports
    hallctl install PORT --board esp32_devkitc      copy the firmware onto a board [--production]
    hallctl update PORT [--board esp32_devkitc]     copy only the firmware files that changed
    hallctl info PORT [--json]                      what is on a board: firmware, site, outbox
    hallctl provision PORT --hall H --device D --key-file F --broker HOST[:PORT] ...
    hallctl flash PORT --firmware micropython.bin   write MicroPython itself (esptool)
    hallctl libs                                    fetch pinned micropython-lib modules

Register the device with the agent first (`edge-agent devices add D --window W`
prints its key), then install and provision the board on the bench.
"""
import argparse
import json
import sys

from edge_agent.terminal import dumps, printable
from tools.hallctl.device import Board, HallctlError, ProductionBoard


def _progress(label):
    """A one-line progress bar for file copies on a slow UART."""
    def show(done, total):
        width = 24
        filled = width * done // total if total else width
        sys.stdout.write("\r  %-38s [%s%s] %3d%%" % (label[-38:], "#" * filled, "." * (width - filled),
                                                     100 * done // total if total else 100))
        if done >= total:
            sys.stdout.write("\n")
        sys.stdout.flush()
    return show


def cmd_ports(args):
    from serial.tools import list_ports
    ports = list(list_ports.comports())
    if not ports:
        print("no serial ports found (is the USB cable a data cable?)")
    for p in ports:
        print("%-20s %s" % (p.device, p.description))
    return 0


def _stopped(port, out=sys.stdout):
    # Talking to the board interrupted its firmware (the raw REPL stops main.py);
    # it stays stopped until the board restarts.
    print("the firmware on %s is stopped for this: press EN (ESP32) or power-cycle the board "
          "to start it again" % port, file=out)


def _bring(args, copy_all):
    """install and update: one routine (sync.py), install copies every file."""
    from tools.hallctl import bundle, sync
    with Board(args.port) as board:
        old = sync.installed(board)
        production = getattr(args, "production", False) or bundle.PRODUCTION in old.get("files", {})
        name = args.board or old.get("board")
        if not name:
            raise HallctlError("%s has no firmware installed by hallctl: say which board with "
                               "--board NAME (one of %s)" % (args.port, ", ".join(bundle.board_names())))
        try:
            files = bundle.files(name, font=args.font)
        except ValueError as e:
            raise HallctlError(str(e))
        if production:   # kept by update: a production board stays one
            files.append((bundle.PRODUCTION, bundle.PRODUCTION_NOTE))
        want, data = bundle.manifest(name, files)
        changed, unchanged, removed = sync.sync(
            board, want, data, old, copy_all=copy_all, keep=() if args.font else (bundle.FONT,),
            progress=lambda i, n, path: _progress("[%d/%d] %s" % (i, n, path)))
    return name, want["firmware"], changed, unchanged, removed


def cmd_install(args):
    name, version, changed, _, removed = _bring(args, copy_all=True)
    print("installed %d files for %s (%s) on %s%s" % (
        len(changed), name, version, args.port,
        "; removed %d an older bundle had" % len(removed) if removed else ""))
    if args.production:
        print("production board: from its first boot with a site.json (provision it now, before "
              "pressing EN) its serial REPL is off; the way back is hallctl flash, which erases it")
    _stopped(args.port)
    return 0


def cmd_update(args):
    name, version, changed, unchanged, removed = _bring(args, copy_all=False)
    print("updated %s on %s to %s: %d changed, %d unchanged, %d removed" % (
        name, args.port, version, len(changed), len(unchanged), len(removed)))
    _stopped(args.port)
    return 0


def cmd_info(args):
    from tools.hallctl import info
    try:
        with Board(args.port) as board:
            facts = info.probe(board)
    except ProductionBoard as e:
        # What there is to know about it, and no more can be read.
        print(dumps({"port": args.port, "production": True, "serial_repl": False}, indent=2)
              if args.json else printable(e))
        return 0
    # Everything in facts came from the board: escaped for the terminal.
    if args.json:
        print(dumps(facts, indent=2))
        _stopped(args.port, sys.stderr)   # standard output stays one JSON document
    else:
        print("\n".join(printable(line) for line in info.report(facts, args.port).split("\n")))
        _stopped(args.port)
    return 0


def cmd_provision(args):
    from protocol.topics import valid_id
    from tools.hallctl import site as site_mod
    for what in ("hall", "device"):
        if not valid_id(getattr(args, what)):
            raise HallctlError("--%s %r: use 1-32 letters, digits, - or _" % (what, getattr(args, what)))
    site = site_mod.site_config(args)
    ca = site_mod.read_ca(args.ca) if args.ca else None
    with Board(args.port) as board:
        if ca is not None:   # before site.json names it
            board.write_atomic(site_mod.CA_FILE, ca)
        # Atomic: a cable pulled mid-write leaves the old site.json, never half of one.
        board.write_atomic("site.json", json.dumps(site).encode())
    print("provisioned %s/%s on %s (broker %s:%d%s)" % (
        args.hall, args.device, args.port, site["broker_host"], site["broker_port"],
        ", TLS checked against %s as %s" % (args.ca, site["tls_name"]) if ca else ""))
    _stopped(args.port)
    return 0


def cmd_flash(args):
    import esptool
    argv = ["--port", args.port, "--chip", args.chip, "--baud", str(args.baud)]
    try:
        if args.erase:
            esptool.main(argv + ["erase-flash"])
        esptool.main(argv + ["write-flash", args.address, args.firmware])
    except (esptool.FatalError, OSError) as e:
        raise HallctlError("flashing %s failed: %s" % (args.port, e))
    except SystemExit as e:
        if e.code:
            raise HallctlError("flashing %s failed (esptool exit %s)" % (args.port, e.code))
    return 0


def cmd_libs(args):
    from tools import mplib
    return mplib.main([])


def build_parser():
    ap = argparse.ArgumentParser(prog="hallctl", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ports", help="list serial ports", description="List serial ports.")
    p.set_defaults(func=cmd_ports)

    p = sub.add_parser("install", help="copy the firmware onto a board",
                       description="Copy the firmware, the protocol package, micropython-lib modules and "
                                   "the board definition onto a board running MicroPython: every file, each "
                                   "checked after writing, and listed with its sha256 in installed.json on "
                                   "the board (what `update` and `info` read).")
    p.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--board", default="esp32_devkitc", help="board definition in hardware/boards (default: %(default)s)")
    p.add_argument("--no-font", dest="font", action="store_false",
                   help="keep the font already on the board (the GB2312 font is 250 KB, slow on a UART)")
    p.add_argument("--production", action="store_true",
                   help="a production board: once provisioned, its firmware turns the serial REPL off "
                        "at boot (no Ctrl-C, no mpremote, nothing readable over USB, `info` says so); "
                        "the way back is `hallctl flash`, which erases the flash and its secrets")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("update", help="copy only the firmware files that changed",
                       description="Bring a board to the bundle `install` would write, copying only the "
                                   "files whose sha256 on the board differs, each checked after writing. "
                                   "Files an older install put there that the bundle no longer has are "
                                   "removed; site.json, the outbox and files hallctl did not install are "
                                   "never touched.")
    p.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--board", help="board definition in hardware/boards (default: the one installed)")
    p.add_argument("--no-font", dest="font", action="store_false",
                   help="leave the font on the board as it is")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("info", help="what is on a board: firmware, site, outbox, free flash",
                       description="Read a board over its serial port and say what is on it: MicroPython "
                                   "version, board definition, firmware version (each file checked), site "
                                   "config (with a key fingerprint, never the key or passwords), events "
                                   "waiting in the outbox, free flash. Writes nothing.")
    p.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("provision", help="write a device's site config (identity, key, broker)",
                       description="Write site.json: hall, device id, key, broker and Wi-Fi; with --ca, the CA "
                                   "the device checks the broker's TLS certificate against. site.json is "
                                   "written aside and renamed, so a pulled cable never leaves half of it.",
                       epilog="Secrets: every option on the command line is visible to all users of this "
                              "machine (ps, shell history). Give the key and passwords as a file "
                              "(--key-file FILE, - for standard input: `edge-agent devices show D --show-key` "
                              "prints it) or in the environment: QL_DEVICE_KEY, QL_WIFI_PASSWORD, "
                              "QL_BROKER_PASSWORD. A file's first line is read.")
    p.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--hall", required=True, help="hall id, as in the agent config")
    p.add_argument("--device", required=True, help="device id, as registered with `edge-agent devices add`")
    p.add_argument("--key", help="the device key, 64 hex characters (visible in ps: prefer --key-file or "
                                 "QL_DEVICE_KEY)")
    p.add_argument("--key-file", metavar="FILE", help="read the device key from FILE (- for standard input)")
    p.add_argument("--broker", required=True,
                   help="the Pi's broker, HOST[:PORT] (default port 1883, or %d with --ca)" % 8883)
    p.add_argument("--ca", metavar="FILE",
                   help="use TLS: the device checks the broker's certificate against this CA (PEM), "
                        "written to the board as ca.der")
    p.add_argument("--broker-name", metavar="NAME",
                   help="with --ca: the name in the broker's certificate (default: HOST from --broker)")
    p.add_argument("--window", default="A01", help="window number shown until the agent's config arrives")
    p.add_argument("--user", help="broker user (default: the device id, as broker-config writes it)")
    p.add_argument("--password", help="broker password (default: derived from the key, as broker-config "
                                      "does; or QL_BROKER_PASSWORD)")
    p.add_argument("--password-file", metavar="FILE", help="read the broker password from FILE (- for stdin)")
    p.add_argument("--wifi-ssid", default="", help="Wi-Fi network name")
    p.add_argument("--wifi-password", help="Wi-Fi password (visible in ps: prefer --wifi-password-file or "
                                           "QL_WIFI_PASSWORD)")
    p.add_argument("--wifi-password-file", metavar="FILE",
                   help="read the Wi-Fi password from FILE (- for standard input)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("flash", help="write MicroPython itself onto an ESP32 (esptool)",
                       description="Erase the flash and write a MicroPython firmware image with esptool. "
                                   "The erase is the way back for a production board: it destroys "
                                   "site.json (key and passwords) with everything else.")
    p.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--firmware", required=True, help="the MicroPython .bin for the board")
    p.add_argument("--chip", default="esp32", help="esptool chip name (default: %(default)s)")
    p.add_argument("--address", default="0x1000", help="flash offset (ESP32: 0x1000; S3/C3: 0x0)")
    p.add_argument("--baud", type=int, default=460800, help="baud rate (default: %(default)s)")
    p.add_argument("--no-erase", dest="erase", action="store_false",
                   help="keep the old flash contents (a production board stays closed, its secrets kept)")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("libs", help="fetch the pinned micropython-lib modules into build/mplib",
                       description="Fetch the pinned micropython-lib modules (sha256-checked).")
    p.set_defaults(func=cmd_libs)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 1
    try:
        return args.func(args)
    except HallctlError as e:
        print("hallctl: %s" % printable(e), file=sys.stderr)   # it may quote the board
        return 1
    except KeyboardInterrupt:
        print("hallctl: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
