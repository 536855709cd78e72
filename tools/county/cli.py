"""county-server: the reference county server for Qinglian halls.

  county-server run --db county.db --port 8470 --token HALL=TOKEN
  county-server run --db postgresql://county@db/qinglian --tokens-file /etc/qinglian/tokens
  county-server stats --db county.db [--hall HALL] [--json]
  county-server report --db county.db --hall HALL --month 2026-10 [--format text|csv|json]
"""
import json
import logging
import signal
import ssl
import sys
import threading

from edge_agent import cmdline
from edge_agent.cmdline import Command
from tools.county.errors import CountyError

PROG = "county-server"


def parse_tokens(specs, files):
    """HALL=TOKEN pairs from the command line and from files (one a line,
    '#' comments) -> {hall: token}."""
    from protocol.topics import valid_id
    lines = [(s, "--token") for s in specs]
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines += [(ln.strip(), path) for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as e:
            raise CountyError("cannot read tokens file %s: %s" % (path, e.strerror))
    tokens = {}
    for spec, where in lines:
        hall, sep, token = spec.partition("=")
        hall, token = hall.strip(), token.strip()
        if not sep or not valid_id(hall) or len(token) < 8:
            raise CountyError("%s: expected HALL=TOKEN with a plain hall id and a token of 8+ characters"
                              % where)
        tokens[hall] = token
    return tokens


def cmd_run(args):
    from tools.county.server import CountyServer
    from tools.county.store import open_store
    tokens = parse_tokens(args.token, args.tokens_file)
    if not tokens:
        raise CountyError("no hall may post: give --token HALL=TOKEN or --tokens-file FILE")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CountyError("--tls-cert and --tls-key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise CountyError("cannot load TLS certificate: %s" % e)
    store = open_store(args.db)
    try:
        try:
            server = CountyServer((args.host, args.port), store, tokens,
                                  fail_after_commit=args.fail_after_commit, tls=tls)
        except OSError as e:
            raise CountyError("cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror))
        # SIGTERM: stop accepting, let batches in hand commit and be answered, exit.
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print("%s: listening on %s (store %s; halls %s)" % (
            PROG, server.url, args.db, ", ".join(sorted(tokens))), flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if not server.finish_batches(30):
                print("%s: batches still in hand after 30 s; they roll back and halls resend" % PROG,
                      file=sys.stderr)
            server.server_close()
    finally:
        store.close()
    return 0


def cmd_stats(args):
    from tools.county.store import open_store
    store = open_store(args.db, create=False)
    try:
        s = store.stats(args.hall)
    finally:
        store.close()
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=1))
        return 0
    print("events    %d" % s["total"])
    for kind, n in s["events"].items():
        print("  %-16s %d" % (kind, n))
    print("ratings")
    for level, n in s["ratings"].items():
        print("  %-20s %d" % (level, n))
    print("conflicts %d\ninvalid   %d\nbatches   %d (posted %d times)" % (
        s["conflicts"], s["invalid"], s["batches"], s["batch_posts"]))
    for hall, n in s.get("halls", {}).items():
        print("hall %-20s %d events" % (hall, n))
    return 0


def cmd_report(args):
    from tools.county import report, report_text
    from tools.county.store import open_store
    report.period(args.month, args.tz)              # a typo fails before the database is opened
    store = open_store(args.db, create=False)
    try:
        r = report_text.narrow(report.build(store, args.hall, args.month, args.tz, args.deadline_days),
                               args.list)
    finally:
        store.close()
    if args.format == "json":
        data = (json.dumps(r, ensure_ascii=False, indent=1) + "\n").encode()
    elif args.format == "csv":
        # The BOM tells Excel the file is UTF-8; without it the Chinese is garbled.
        sheet = report_text.bad_csv if args.list == "bad" else report_text.figures_csv
        data = sheet(r).encode("utf-8-sig")
    else:
        data = report_text.text(r).encode()
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        with open(args.out, "wb") as f:
            f.write(data)
    except OSError as e:
        raise CountyError("cannot write %s: %s" % (args.out, e.strerror))
    return 0


DB = (("--db",), dict(required=True, help="SQLite file path, or a postgresql:// URL (production)"))


def _report_args():
    from tools.county.report import DEFAULT_DEADLINE_DAYS, DEFAULT_TZ
    return [
        DB,
        (("--hall",), dict(required=True, help="the hall's id, as in its batches")),
        (("--month",), dict(required=True, metavar="YYYY-MM", help="the calendar month, such as 2026-10")),
        (("--tz",), dict(default=DEFAULT_TZ, help="time zone of the month's boundaries and of the times shown "
                                                 "(default: %(default)s)")),
        (("--deadline-days",), dict(type=int, default=DEFAULT_DEADLINE_DAYS, metavar="N",
                                    help="rectify each 差评 within N working days, Mon-Fri, public holidays not "
                                         "known (default: %(default)s)")),
        (("--format",), dict(default="text", choices=("text", "csv", "json"),
                             help="text: aligned tables; csv: UTF-8 with BOM for Excel; json: as the HTTP API "
                                  "(default: text)")),
        (("--list",), dict(choices=("figures", "bad"),
                           help="only the figures, or only the bad-rating follow-up list (差评整改清单); "
                                "CSV holds one of them per file, the figures unless --list bad")),
        (("--out",), dict(metavar="FILE", help="write here instead of standard output")),
    ]


# The table of commands (edge_agent/cmdline.py).
COMMANDS = [
    Command(("run",), cmd_run, "serve the batch API (API.md) until SIGTERM or Ctrl-C", [
        DB,
        (("--host",), dict(default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")),
        (("--port",), dict(type=int, default=8470, help="port (default: 8470)")),
        (("--token",), dict(action="append", default=[], metavar="HALL=TOKEN",
                            help="a hall's bearer token; repeat for each hall")),
        (("--tokens-file",), dict(action="append", default=[], metavar="FILE",
                                  help="HALL=TOKEN lines; '#' starts a comment")),
        (("--tls-cert",), dict(metavar="PEM", help="serve HTTPS with this certificate chain")),
        (("--tls-key",), dict(metavar="PEM", help="the certificate's private key")),
        (("--log-level",), dict(default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                                help="log verbosity on stderr (default: INFO)")),
        (("--fail-after-commit",), dict(type=int, default=0, metavar="N",
                                        help="TESTS ONLY: commit the first N batches, then drop the connection "
                                             "unanswered"))]),
    Command(("stats",), cmd_stats, "print event, rating, conflict and batch counts from a store", [
        DB,
        (("--hall",), dict(help="only this hall")),
        (("--json",), dict(action="store_true", help="print JSON"))]),
    Command(("report",), cmd_report,
            "a hall's monthly 好差评 report: figures per window and staff, the 差评 follow-up list", _report_args()),
]


def parser():
    return cmdline.parser(PROG, __doc__.split("\n\n")[0], COMMANDS, epilog=__doc__.split("\n\n", 1)[1])


def _call(args):
    logging.basicConfig(level=getattr(args, "log_level", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.fn(args)


def main(argv=None):
    return cmdline.run(PROG, parser(), argv, (CountyError,), _call)


if __name__ == "__main__":
    sys.exit(main())
