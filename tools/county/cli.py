"""county-server: the reference county server for Qinglian halls.

  county-server run --db county.db --port 8470 --token HALL=TOKEN
  county-server run --db postgresql://county@db/qinglian --tokens-file /etc/qinglian/tokens
  county-server migrate --db county.db
  county-server stats --db county.db [--hall HALL] [--json]
  county-server report --db county.db --hall HALL --month 2026-10 [--format text|csv|json|xlsx|html]
  county-server followup list|show|update --db county.db --hall HALL ...
  county-server export --db county.db --hall HALL --month 2026-10 --profile zhejiang --region 431100
"""
import contextlib
import json
import logging
import signal
import ssl
import sys
import time

from edge_agent import cmdline
from edge_agent.cmdline import Command
from tools.county.errors import CountyError

PROG = "county-server"
MAX_WORKERS = 64     # --workers: a typo of 10000 would fork the machine to a halt


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
    from tools.county import serve
    from tools.county.app import County, make_app
    from tools.county.auth import Tokens
    from tools.county.store import open_store
    tokens = parse_tokens(args.token, args.tokens_file)
    if not tokens:
        raise CountyError("no hall may post: give --token HALL=TOKEN or --tokens-file FILE")
    county_token = read_county_token(args.county_token, args.county_token_file)
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CountyError("--tls-cert and --tls-key go together")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise CountyError("cannot load TLS certificate: %s" % e)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CountyError("--workers must be 1 to %d (processes; a few per core)" % MAX_WORKERS)
    county = Tokens(tokens, county_token, parse_tokens(args.manager_token, []),
                    [t for t in args.system_token if _long(t, "--system-token")])
    extra = county_settings(args)
    store = open_store(args.db)             # migrates, and says in one line if the database is not there
    if args.workers > 1:
        store.close()                       # each worker opens its own, after the fork
        return serve_workers(args, county, extra)
    try:
        app = make_app(County(store, county, fail_after_commit=args.fail_after_commit, **extra))
        sock = serve.listen(args.host, args.port)
        # uvicorn re-raises the stopping signal once it has shut down; by then there is nothing left to stop.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        announce(args, sock, tokens, county_token)
        serve.serve(app, sock, args.tls_cert, args.tls_key, args.log_level)
    finally:
        store.close()
    return 0


def _long(token, flag):
    if len(token.strip()) < 8:
        raise CountyError("%s must be 8 or more characters" % flag)
    return token.strip()


def county_settings(args):
    """The profile, the day (a test hook), the link secret and base URL -> County() keywords."""
    import datetime
    from tools.county.profiles import Rules
    today = None
    if args.today:
        try:
            today = datetime.date.fromisoformat(args.today)
        except ValueError:
            raise CountyError("--today must be YYYY-MM-DD")
    secret = args.link_secret
    if args.link_secret_file:
        secret = read_county_token(None, args.link_secret_file)
    if secret is not None:
        secret = _long(secret, "the link secret")
    return {"rules": Rules(args.profile, today=today), "link_secret": secret,
            "public_url": args.public_url.rstrip("/") if args.public_url else None}


def announce(args, sock, tokens, county_token):
    host, port = sock.getsockname()[:2]
    print("%s: listening on %s://%s:%d (store %s; halls %s%s%s)" % (
        PROG, "https" if args.tls_cert else "http", host, port, args.db, ", ".join(sorted(tokens)),
        "; county token set" if county_token else "", "; %d workers" % args.workers if args.workers > 1 else ""),
        flush=True)


def serve_workers(args, county, extra):
    """--workers N: N processes accept on one socket, each with its own store
    connections (as several servers on one database). SIGTERM to the parent
    is passed on; each worker finishes its batches in hand."""
    import os
    from tools.county import serve
    from tools.county.app import County, make_app
    from tools.county.store import open_store
    sock = serve.listen(args.host, args.port)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: None)
                store = open_store(args.db)
                try:
                    serve.serve(make_app(County(store, county, fail_after_commit=args.fail_after_commit, **extra)), sock,
                                args.tls_cert, args.tls_key, args.log_level)
                    code = 0
                finally:
                    store.close()
            except CountyError as e:
                print("%s: error: %s" % (PROG, e), file=sys.stderr)
            finally:
                os._exit(code)
        children.append(pid)

    def stop(sig, _frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce(args, sock, county.halls, county.county)
    sock.close()
    worst = 0
    for pid in children:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        worst = max(worst, os.waitstatus_to_exitcode(status) != 0)
    return worst


def read_county_token(token, path):
    """The county-wide token (stats across halls, the overview page), from
    the command line or the first non-comment line of a file; or None."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        except OSError as e:
            raise CountyError("cannot read county token file %s: %s" % (path, e.strerror))
        token = lines[0] if lines else ""
    if token is not None and len(token.strip()) < 8:
        raise CountyError("the county token must be 8 or more characters")
    return token.strip() if token else None


def cmd_migrate(args):
    from tools.county import migrations
    from tools.county.store import open_store
    store = open_store(args.db)           # opening applies what is pending
    try:
        applied = store.migrated
        steps = migrations.status(store)
    finally:
        store.close()
    for name, ms in steps:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "pending"
        print("%-24s %s%s" % (name, when, "  (applied now)" if name in applied else ""))
    return 0


@contextlib.contextmanager
def _existing_store(db):
    """The database the server made (never created here), closed after use."""
    from tools.county.store import open_store
    store = open_store(db, create=False)
    try:
        yield store
    finally:
        store.close()


def _write_out(data, out):
    """A report's bytes to FILE (--out) or standard output."""
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        with open(out, "wb") as f:
            f.write(data)
    except OSError as e:
        raise CountyError("cannot write %s: %s" % (out, e.strerror))
    return 0


def cmd_stats(args):
    with _existing_store(args.db) as store:
        s = store.stats(args.hall)
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
    from tools.county.profiles import Rules
    report.period(args.month, args.tz)              # a typo fails before the database is opened
    if args.format in ("xlsx", "html") and args.list:
        raise CountyError("--list is for text, csv and json; the %s report holds both views" % args.format)
    if args.format == "xlsx" and args.out is None:
        raise CountyError("--format xlsx needs --out FILE (a workbook is not for a terminal)")
    with _existing_store(args.db) as store:
        r = report_text.narrow(report.build(store, args.hall, args.month, args.tz, args.deadline_days,
                                            Rules(args.profile)), args.list)
    if args.format == "xlsx":
        from tools.county import xlsx
        data = xlsx.workbook(r)                     # what GET .../report.xlsx answers
    elif args.format == "html":
        from tools.county import pages
        data = pages.hall_page(r).encode()          # what GET /halls/HALL/report answers
    elif args.format == "json":
        data = (json.dumps(r, ensure_ascii=False, indent=1) + "\n").encode()
    elif args.format == "csv":
        # The BOM tells Excel the file is UTF-8; without it the Chinese is garbled.
        sheet = {"bad": report_text.bad_csv, "queues": report_text.queues_csv}.get(args.list, report_text.figures_csv)
        data = sheet(r).encode("utf-8-sig")
    else:
        data = report_text.text(r).encode()
    return _write_out(data, args.out)


def _followup_rules(args):
    import datetime
    from tools.county.profiles import Rules
    today = None
    if getattr(args, "today", None):
        try:
            today = datetime.date.fromisoformat(args.today)
        except ValueError:
            raise CountyError("--today must be YYYY-MM-DD")
    return Rules(args.profile, today=today)


def _followup_line(f):
    return "%-28s %-10s %-6s %-10s 自 %s  期限 %s%s" % (
        f["id"], f["workflow"], f["state_zh"], f["state"], f["since"], f["deadline"] or "-",
        "  超期" if f["overdue"] else "")


def cmd_followup_list(args):
    from tools.county import followup
    rules = _followup_rules(args)
    with _existing_store(args.db) as store:
        got = followup.listing(store, rules, args.hall, rules.today(), args.workflow, args.state,
                               True if args.overdue else None)
    if args.json:
        print(json.dumps(got, ensure_ascii=False, indent=1))
    else:
        for f in got:
            print(_followup_line(f))
        print("%d follow-up(s), %d overdue, as of %s" % (len(got), sum(f["overdue"] for f in got), rules.today()))
    return 0


def cmd_followup_show(args):
    from tools.county import followup
    rules = _followup_rules(args)
    with _existing_store(args.db) as store:
        try:
            f = followup.show(store, rules, args.hall, args.id, rules.today())
        except followup.Refused as e:
            raise CountyError(str(e))
    if args.json:
        print(json.dumps(f, ensure_ascii=False, indent=1))
        return 0
    print(_followup_line(f))
    for s in f["steps"]:
        print("  %d. %s %-12s %-24s %s%s" % (s["n"], s["date"], s["state"], s["who"], s["note"],
                                             "  (%s)" % s["level"] if s["level"] else ""))
    return 0


def cmd_followup_update(args):
    from tools.county import followup
    rules = _followup_rules(args)
    with _existing_store(args.db) as store:
        try:
            followup.sync(store, rules, args.hall)
            # Whoever holds the database holds the county's authority (approving appeals too).
            followup.step(store, rules, args.hall, args.id, args.to, "%s (cli)" % args.who, args.note, True,
                          int(time.time() * 1000), args.level)
            print(_followup_line(followup.show(store, rules, args.hall, args.id, rules.today())))
        except followup.Refused as e:
            raise CountyError(str(e))
    return 0


def cmd_export(args):
    import re
    from tools.county import export, profiles, report
    if not re.fullmatch(r"\d{6}", args.region):
        raise CountyError("--region must be the 6-digit 行政区划 code, such as 431100")
    profile = profiles.load(args.profile)
    zone, start, end = report.period(args.month, profile["tz"])
    with _existing_store(args.db) as store:
        recs = export.records(store, profile, args.hall, int(start.timestamp()) * 1000, int(end.timestamp()) * 1000,
                              args.region, zone)
    data = (export.jsonl(recs).encode() if args.format == "jsonl"
            else export.to_csv(recs, profile).encode("utf-8-sig"))
    return _write_out(data, args.out)


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
        (("--format",), dict(default="text", choices=("text", "csv", "json", "xlsx", "html"),
                             help="text: aligned tables; csv: UTF-8 with BOM for Excel; json, xlsx (needs "
                                  "--out) and html (the page with charts): as the HTTP API serves them "
                                  "(default: text)")),
        (("--list",), dict(choices=("figures", "bad", "queues"),
                           help="only the figures, only the bad-rating follow-up list (差评整改清单), or only "
                                "the queue figures (排队叫号: per queue, day and hour); CSV holds one of them "
                                "per file, the figures unless --list bad or queues")),
        (("--out",), dict(metavar="FILE", help="write here instead of standard output")),
        (("--profile",), dict(default="national", metavar="NAME",
                              help="the province profile for case lights and deadlines (default: %(default)s)")),
    ]


HALL_ARG = (("--hall",), dict(required=True, help="the hall's id"))
PROFILE = (("--profile",), dict(default="national", metavar="NAME", help="the province profile (default: %(default)s)"))
TODAY = (("--today",), dict(metavar="YYYY-MM-DD", help="the day deadlines are judged on, and steps are dated "
                                                        "(default: today in the profile's time zone)"))

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
        (("--county-token",), dict(metavar="TOKEN", help="the county's own token: /v1/stats across halls and "
                                                          "the county overview page")),
        (("--county-token-file",), dict(metavar="FILE", help="read the county token from this file instead")),
        (("--manager-token",), dict(action="append", default=[], metavar="HALL=TOKEN",
                                    help="a hall manager's token: the hall's reports and follow-ups; repeat for "
                                         "each hall (the hall's uplink token then no longer reads reports)")),
        (("--system-token",), dict(action="append", default=[], metavar="TOKEN",
                                   help="a business system's token: posts case events for any hall; repeatable")),
        (("--link-secret",), dict(metavar="SECRET", help="the county secret that signs rating links (QR)")),
        (("--link-secret-file",), dict(metavar="FILE", help="read the link secret from this file instead")),
        (("--public-url",), dict(metavar="URL", help="the county's base URL as phones reach it, for rating links "
                                                     "(default: as each request came)")),
        (("--profile",), dict(default="national", metavar="NAME",
                              help="the province profile in tools/county/data/profiles (default: %(default)s)")),
        (("--today",), dict(metavar="YYYY-MM-DD", help="TESTS ONLY: the day the lights and deadlines are "
                                                       "computed for")),
        (("--tls-cert",), dict(metavar="PEM", help="serve HTTPS with this certificate chain")),
        (("--tls-key",), dict(metavar="PEM", help="the certificate's private key")),
        (("--workers",), dict(type=int, default=1, metavar="N",
                              help="server processes sharing the port, each with its own database connections; "
                                   "more than one uses more cores (default: 1, at most 64)")),
        (("--log-level",), dict(default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                                help="log verbosity on stderr (default: INFO)")),
        (("--fail-after-commit",), dict(type=int, default=0, metavar="N",
                                        help="TESTS ONLY: commit the first N batches, then drop the connection "
                                             "unanswered"))]),
    Command(("migrate",), cmd_migrate,
            "bring a store's schema up to date (run does it too) and list its migrations", [DB]),
    Command(("stats",), cmd_stats, "print event, rating, conflict and batch counts from a store", [
        DB,
        (("--hall",), dict(help="only this hall")),
        (("--json",), dict(action="store_true", help="print JSON"))]),
    Command(("followup", "list"), cmd_followup_list, "a hall's follow-ups (差评, 办不成事): state, deadline, overdue",
            [DB, HALL_ARG, PROFILE, TODAY,
             (("--workflow",), dict(choices=("bad_rating", "cannot_do"), help="only this workflow")),
             (("--state",), dict(help="only follow-ups in this state (pending, rectifying, ...)")),
             (("--overdue",), dict(action="store_true", help="only those past their stage's deadline")),
             (("--json",), dict(action="store_true", help="print JSON, as the HTTP API answers"))]),
    Command(("followup", "show"), cmd_followup_show, "one follow-up with every step (who, when, note)",
            [DB, HALL_ARG, PROFILE, TODAY, (("--id",), dict(required=True, help="the follow-up's id")),
             (("--json",), dict(action="store_true", help="print JSON"))]),
    Command(("followup", "update"), cmd_followup_update, "append a step to a follow-up (never edits one)",
            [DB, HALL_ARG, PROFILE, TODAY, (("--id",), dict(required=True, help="the follow-up's id")),
             (("--to",), dict(required=True, help="the next state (pending -> rectifying or appealed, ...)")),
             (("--who",), dict(required=True, help="the person taking the step")),
             (("--note",), dict(required=True, help="what was done")),
             (("--level",), dict(help="the citizen's rating, for followed_up (追评) and rated (评价)"))]),
    Command(("export",), cmd_export, "a hall's month of ratings as the province's records (GB/T 39046 names, "
                                     "the profile's codes), JSON lines or CSV", [
        DB, HALL_ARG, PROFILE,
        (("--month",), dict(required=True, metavar="YYYY-MM", help="the calendar month, such as 2026-10")),
        (("--region",), dict(required=True, metavar="CODE", help="the county's 6-digit 行政区划 code")),
        (("--format",), dict(default="jsonl", choices=("jsonl", "csv"),
                             help="jsonl: one JSON record a line; csv: UTF-8 with BOM (default: jsonl)")),
        (("--out",), dict(metavar="FILE", help="write here instead of standard output"))]),
    Command(("report",), cmd_report,
            "a hall's monthly 好差评 report: figures per window and staff, the 差评 follow-up list", _report_args()),
]


def parser():
    return cmdline.parser(PROG, __doc__.split("\n\n")[0], COMMANDS, epilog=__doc__.split("\n\n", 1)[1],
                          groups={"followup": "差评 and 办不成事 follow-ups: list, show, update"})


def _call(args):
    logging.basicConfig(level=getattr(args, "log_level", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.fn(args)


def main(argv=None):
    return cmdline.run(PROG, parser(), argv, (CountyError,), _call)


if __name__ == "__main__":
    sys.exit(main())
