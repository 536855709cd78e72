"""hallctl: the technician's tool for evaluators and kiosks.

    hallctl ports                                   list serial ports
    hallctl install PORT --board esp32_devkitc      copy the firmware onto a board [--production]
    hallctl update PORT [--board esp32_devkitc]     copy only the firmware files that changed
    hallctl info PORT [--json]                      what is on a board: firmware, site, outbox
    hallctl provision PORT --hall H --device D --key-file F --broker HOST[:PORT] ...
    hallctl flash PORT --firmware micropython.bin   write MicroPython itself (esptool)
    hallctl libs                                    fetch pinned micropython-lib modules
    hallctl fleet [--agent URL ...] [--json]        every device of the halls, those needing a visit first
    hallctl ota build -o FILE                       an update bundle from the ship list
    hallctl ota rollout FILE --first D --then D,..  over the air, one device first, stop at a failure
    hallctl ota status                              where each device stands with its update

Register the device with the agent first (`edge-agent devices add D --window W`
prints its key), then install and provision the board on the bench.
"""
import json
import sys
import urllib.parse

from edge_agent import cmdline
from edge_agent.cmdline import Command
from edge_agent.terminal import dumps, printable
from tools.hallctl.device import Board, HallctlError, ProductionBoard

PROG = "hallctl"


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


def _agent_url(url):
    """--agent checked; None: the agent on this machine."""
    url = url or "http://127.0.0.1:8080"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https") or not urllib.parse.urlsplit(url).hostname:
        raise HallctlError("--agent %s: give the agent's address as http://HOST:PORT" % printable(url))
    return url


def cmd_fleet(args):
    from tools.hallctl import fleet
    if not 0 < args.timeout <= 300:
        raise HallctlError("--timeout must be more than 0 and at most 300 seconds")
    urls = [_agent_url(u) for u in args.agent or [None]]
    rows, unreachable = fleet.gather(urls, args.timeout)
    if args.json:
        print(dumps({"devices": rows, "unreachable": unreachable}, indent=2))
    else:
        print(fleet.table(rows))
        need = sum(1 for r in rows if r["visit"])
        print("%d device(s), %d need a visit" % (len(rows), need))
    for url, why in unreachable.items():
        print("%s: %s: agent not reachable: %s" % (PROG, printable(url), printable(why)), file=sys.stderr)
    return 1 if unreachable else 0


def cmd_ota_build(args):
    from tools.hallctl import ota
    m = ota.build(args.output, args.port)
    f = m["files"][0]
    print("%s: %s for %s, %s %d bytes, sha256 %s, %d modules" % (args.output, m["version"], m["port"], f["name"],
                                                                 f["size"], f["sha256"], len(m["ship"])))
    return 0


def cmd_ota_rollout(args):
    from tools.hallctl import ota
    if not 10 <= args.health_s <= 3600:
        raise HallctlError("--health-s must be 10 to 3600 seconds")
    if args.wave < 0:
        raise HallctlError("--wave must be 0 (all at once) or more devices")
    if not 0 < args.timeout <= 86400:
        raise HallctlError("--timeout must be more than 0 and at most 86400 seconds")
    agent = ota.Agent(_agent_url(args.agent), args.token)
    if args.then == "all":      # the hall's devices running the same app (an evaluator's image is not a kiosk's)
        rest = agent.devices(ota.bundle_version(args.bundle).split("/")[0] + "/")
    else:
        rest = [d for d in (args.then or "").split(",") if d]
    ota.rollout(agent, args.bundle, args.first, rest, args.wave, args.health_s, args.timeout,
                say=lambda line: print(printable(line), flush=True))
    return 0


def cmd_ota_status(args):
    from tools.hallctl import ota
    rows = sorted(ota.Agent(_agent_url(args.agent)).status().values(), key=lambda r: r["device"])
    if args.json:
        print(dumps({"devices": rows}, indent=2))
    else:
        print(ota.status_table(rows))
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


PORT = (("port",), dict(help="serial port, e.g. /dev/ttyUSB0"))

# The table of commands (edge_agent/cmdline.py).
COMMANDS = [
    Command(("ports",), cmd_ports, "list serial ports", description="List serial ports."),
    Command(("install",), cmd_install, "copy the firmware onto a board", [
        PORT,
        (("--board",), dict(default="esp32_devkitc",
                            help="board definition in hardware/boards (default: %(default)s)")),
        (("--no-font",), dict(dest="font", action="store_false",
                              help="keep the font already on the board (the GB2312 font is 250 KB, slow on a UART)")),
        (("--production",), dict(action="store_true",
                                 help="a production board: once provisioned, its firmware turns the serial REPL off "
                                      "at boot (no Ctrl-C, no mpremote, nothing readable over USB, `info` says so); "
                                      "the way back is `hallctl flash`, which erases the flash and its secrets"))],
        description="Copy the firmware, the protocol package, micropython-lib modules and "
                    "the board definition onto a board running MicroPython: every file, each "
                    "checked after writing, and listed with its sha256 in installed.json on "
                    "the board (what `update` and `info` read)."),
    Command(("update",), cmd_update, "copy only the firmware files that changed", [
        PORT,
        (("--board",), dict(help="board definition in hardware/boards (default: the one installed)")),
        (("--no-font",), dict(dest="font", action="store_false", help="leave the font on the board as it is"))],
        description="Bring a board to the bundle `install` would write, copying only the "
                    "files whose sha256 on the board differs, each checked after writing. "
                    "Files an older install put there that the bundle no longer has are "
                    "removed; site.json, the outbox and files hallctl did not install are "
                    "never touched."),
    Command(("info",), cmd_info, "what is on a board: firmware, site, outbox, free flash", [
        PORT,
        (("--json",), dict(action="store_true", help="print the facts as JSON"))],
        description="Read a board over its serial port and say what is on it: MicroPython "
                    "version, board definition, firmware version (each file checked), site "
                    "config (with a key fingerprint, never the key or passwords), events "
                    "waiting in the outbox, free flash. Writes nothing."),
    Command(("fleet",), cmd_fleet, "every device of one hall or several, those that need a visit first", [
        (("--agent",), dict(action="append", metavar="URL",
                            help="a hall agent's HTTP address (repeat for several halls; "
                                 "default http://127.0.0.1:8080, the agent on this machine)")),
        (("--timeout",), dict(type=float, default=10.0, metavar="S", help="seconds per agent (default 10)")),
        (("--json",), dict(action="store_true", help="print the rows as JSON"))],
        description="Read each hall agent's fleet view (GET /api/fleet) and list every active "
                    "device: firmware, online or last seen, events in its outbox, last reset "
                    "cause, free heap, Wi-Fi signal, alarms. Devices that need a visit come "
                    "first, each with why (offline, alarm, a reset by watchdog or crash, outbox "
                    "backing up, low heap, weak signal). An agent not reachable is named and "
                    "the exit status is 1."),
    Command(("ota", "build"), cmd_ota_build, "build an update bundle from the ship list `install` copies", [
        (("-o", "--output"), dict(required=True, metavar="FILE", help="the bundle file to write")),
        (("--port",), dict(default="esp32", choices=("esp32", "rp2", "sim"),
                           help="the boards it is for (sim: tools/vdevice.py's virtual devices)"))],
        description="Build an over-the-air update bundle: the firmware's modules as "
                    "firmware/manifest.py ships them, compiled into one ROMFS app image, and a "
                    "manifest with the version (FW in evaluator.py), the image's size and "
                    "sha256, and every module's sha256."),
    Command(("ota", "rollout"), cmd_ota_rollout, "roll an update out: one device, then the rest", [
        (("bundle",), dict(help="the bundle file (hallctl ota build)")),
        (("--first",), dict(required=True, metavar="DEVICE", help="the device that gets it first")),
        (("--then",), dict(metavar="D1,D2,...", help="the devices that follow once the first is healthy "
                                                     "(all: every other device of the hall running the same app)")),
        (("--wave",), dict(type=int, default=0, metavar="N", help="devices per wave after the first (default: all)")),
        (("--health-s",), dict(type=int, default=120, metavar="S",
                               help="seconds a device has to report healthy on the new app before it "
                                    "goes back to the old one by itself (default 120)")),
        (("--timeout",), dict(type=float, default=600.0, metavar="S", help="seconds to wait for a wave (default 600)")),
        (("--agent",), dict(metavar="URL", help="the hall agent's HTTP address (default http://127.0.0.1:8080)")),
        (("--token",), dict(help="the agent's [http] token, when writes from this machine need one"))],
        description="Give the hall's agent the bundle and roll it out: to --first, and once it "
                    "reports healthy on the new version, to the --then devices, a wave at a time. "
                    "The first device that refuses the bundle, rolls back or does not report in "
                    "time stops the rollout (the offers not yet switching are withdrawn; exit 1). "
                    "The outbox and site.json on the devices are never touched."),
    Command(("ota", "status"), cmd_ota_status, "where each device stands with its update", [
        (("--agent",), dict(metavar="URL", help="the hall agent's HTTP address (default http://127.0.0.1:8080)")),
        (("--json",), dict(action="store_true", help="print the rows as JSON"))],
        description="List every device an update was offered to: the version, its state "
                    "(offered, downloading, switching, healthy, rolled_back, refused, failed, "
                    "withdrawn), the firmware it reports now, chunks fetched, and the detail."),
    Command(("provision",), cmd_provision, "write a device's site config (identity, key, broker)", [
        PORT,
        (("--hall",), dict(required=True, help="hall id, as in the agent config")),
        (("--device",), dict(required=True, help="device id, as registered with `edge-agent devices add`")),
        (("--key",), dict(help="the device key, 64 hex characters (visible in ps: prefer --key-file or "
                               "QL_DEVICE_KEY)")),
        (("--key-file",), dict(metavar="FILE", help="read the device key from FILE (- for standard input)")),
        (("--broker",), dict(required=True,
                             help="the Pi's broker, HOST[:PORT] (default port 1883, or %d with --ca)" % 8883)),
        (("--ca",), dict(metavar="FILE",
                         help="use TLS: the device checks the broker's certificate against this CA (PEM), "
                              "written to the board as ca.der")),
        (("--broker-name",), dict(metavar="NAME",
                                  help="with --ca: the name in the broker's certificate (default: HOST from --broker)")),
        (("--window",), dict(default="A01", help="window number shown until the agent's config arrives")),
        (("--user",), dict(help="broker user (default: the device id, as broker-config writes it)")),
        (("--password",), dict(help="broker password (default: derived from the key, as broker-config "
                                    "does; or QL_BROKER_PASSWORD)")),
        (("--password-file",), dict(metavar="FILE", help="read the broker password from FILE (- for stdin)")),
        (("--wifi-ssid",), dict(default="", help="Wi-Fi network name")),
        (("--wifi-password",), dict(help="Wi-Fi password (visible in ps: prefer --wifi-password-file or "
                                         "QL_WIFI_PASSWORD)")),
        (("--wifi-password-file",), dict(metavar="FILE",
                                         help="read the Wi-Fi password from FILE (- for standard input)"))],
        description="Write site.json: hall, device id, key, broker and Wi-Fi; with --ca, the CA "
                    "the device checks the broker's TLS certificate against. site.json is "
                    "written aside and renamed, so a pulled cable never leaves half of it.",
        epilog="Secrets: every option on the command line is visible to all users of this "
               "machine (ps, shell history). Give the key and passwords as a file "
               "(--key-file FILE, - for standard input: `edge-agent devices show D --show-key` "
               "prints it) or in the environment: QL_DEVICE_KEY, QL_WIFI_PASSWORD, "
               "QL_BROKER_PASSWORD. A file's first line is read."),
    Command(("flash",), cmd_flash, "write MicroPython itself onto an ESP32 (esptool)", [
        PORT,
        (("--firmware",), dict(required=True, help="the MicroPython .bin for the board")),
        (("--chip",), dict(default="esp32", help="esptool chip name (default: %(default)s)")),
        (("--address",), dict(default="0x1000", help="flash offset (ESP32: 0x1000; S3/C3: 0x0)")),
        (("--baud",), dict(type=int, default=460800, help="baud rate (default: %(default)s)")),
        (("--no-erase",), dict(dest="erase", action="store_false",
                               help="keep the old flash contents (a production board stays closed, its secrets "
                                    "kept)"))],
        description="Erase the flash and write a MicroPython firmware image with esptool. "
                    "The erase is the way back for a production board: it destroys "
                    "site.json (key and passwords) with everything else."),
    Command(("libs",), cmd_libs, "fetch the pinned micropython-lib modules into build/mplib",
            description="Fetch the pinned micropython-lib modules (sha256-checked)."),
]


def build_parser():
    return cmdline.parser(PROG, __doc__.split("\n\n")[0], COMMANDS, epilog=__doc__.split("\n\n", 1)[1],
                          groups={"ota": "over-the-air updates through the hall's agent"})


def main(argv=None):
    return cmdline.run(PROG, build_parser(), argv, (HallctlError,))


if __name__ == "__main__":
    sys.exit(main())
