"""The shape all three command-line programs share (edge-agent, hallctl,
county-server; mpremote's main.py is the model): a table of commands, each
with --help, and every failure one line on stderr, "PROG: error: message",
exit status 1 - a usage mistake too.

In the agent's package because the Pi has edge_agent/ and protocol/ and not
tools/; the standard library and edge_agent.terminal are all it needs.

    COMMANDS = [Command(("devices", "add"), cmd_add, "register a device", [
        (("device",), dict(help="device id"))])]
    sys.exit(cmdline.run(PROG, cmdline.parser(PROG, "...", COMMANDS), argv, (MyError,)))
"""
import argparse
import collections
import sys

from edge_agent.terminal import printable

# words: ("run",) or ("devices", "add"); fn(args) (see run's `call`); help: one line;
# arguments: [(flags, add_argument keywords)]; description, epilog: longer text for --help.
Command = collections.namedtuple("Command", "words fn help arguments description epilog",
                                 defaults=((), None, None))


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line and exit 1, as every other failure (argparse's own is usage + line, exit 2).
        prog = self.prog.split()[0]
        self.exit(1, "%s: error: %s (see %s --help)\n" % (prog, message, self.prog))


def parser(prog, description, commands, groups=None, epilog=None, common=()):
    """An ArgumentParser for a table of commands. `groups`: {first word:
    help} for two-word commands; `common`: arguments every command takes."""
    # An epilog is the program's docstring, laid out by hand: kept as it is.
    top = _Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter)
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    grouped = {}
    for c in commands:
        where = subs
        if len(c.words) == 2:
            if c.words[0] not in grouped:
                g = subs.add_parser(c.words[0], help=groups[c.words[0]], description=groups[c.words[0]])
                grouped[c.words[0]] = g.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
            where = grouped[c.words[0]]
        p = where.add_parser(c.words[-1], help=c.help, description=c.description or c.help, epilog=c.epilog)
        for flags, kw in list(common) + list(c.arguments):
            p.add_argument(*flags, **kw)
        p.set_defaults(fn=c.fn)
    return top


def fail(prog, message):
    """The one error line; returns the exit status."""
    print("%s: error: %s" % (prog, printable(message)), file=sys.stderr)
    return 1


def run(prog, ap, argv, errors, call=None):
    """Parse argv and run its command: `call(args)` (default args.fn(args)).
    Returns the exit status; `errors` are the failures a user is told of in one line."""
    args = ap.parse_args(argv)
    try:
        return (call or (lambda a: a.fn(a)))(args) or 0
    except errors as e:
        return fail(prog, e)
    except KeyboardInterrupt:
        return fail(prog, "interrupted")
