"""Every command of every CLI explains itself: `--help` exits 0 and says
more than its usage line (sqlite-utils keeps the same promise in its tests)."""
import os
import re
import subprocess

import pytest

from harness import VENV_BIN

CLIS = ["edge-agent", "county-server", "hallctl"]


def help_text(argv):
    out = subprocess.run([os.path.join(VENV_BIN, argv[0])] + argv[1:] + ["--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (argv, out.stderr)
    return out.stdout


def subcommands(text):
    """Names listed under 'positional arguments' that are subcommands."""
    section = text.split("positional arguments:", 1)
    if len(section) < 2:
        return []
    names = []
    for line in section[1].split("\n\n")[0].splitlines()[1:]:
        m = re.match(r"^    (\w[\w-]*)(\s|$)", line)
        if m:
            names.append(m.group(1))
    return names


def walk(argv, seen):
    text = help_text(argv)
    seen.append((argv, text))
    for name in subcommands(text):
        walk(argv + [name], seen)


@pytest.mark.parametrize("cli", CLIS)
def test_every_command_has_help(cli):
    seen = []
    walk([cli], seen)
    assert len(seen) > 1, "%s lists no subcommands" % cli
    for argv, text in seen:
        body = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("usage:")]
        assert len(body) >= 2, "%s --help says nothing beyond usage" % " ".join(argv)


@pytest.mark.parametrize("argv", [
    ["edge-agent", "devices", "add"],                   # a required argument missing
    ["edge-agent", "--config", "/nonexistent/agent.toml", "status"],
    ["hallctl", "nonsense"],
    ["hallctl", "info", "/dev/nonexistent-port"],
    ["county-server", "report", "--db", "x.db"],
    ["county-server", "stats", "--db", "/nonexistent/county.db"],
])
def test_every_failure_is_one_error_line_and_exit_1(argv, tmp_path):
    # One table-of-commands helper for all three (edge_agent/cmdline.py), usage mistakes included.
    out = subprocess.run([os.path.join(VENV_BIN, argv[0])] + argv[1:], capture_output=True, text=True,
                         timeout=60, cwd=str(tmp_path))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith(argv[0] + ": error: "), out.stderr


def test_the_shared_cli_helper_needs_nothing_from_tools():
    # The Pi has edge_agent/ and protocol/, not tools/ (nor hallctl's dependencies).
    import sys
    code = ("import sys, edge_agent.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tools', 'serial', 'esptool', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_argument_in_every_table_has_help():
    from edge_agent import cli as agent_cli
    from tools.county import cli as county_cli
    from tools.hallctl import cli as hallctl_cli
    for table in (agent_cli.COMMANDS, county_cli.COMMANDS, hallctl_cli.COMMANDS):
        for c in table:
            assert c.help, c.words
            for flags, kw in c.arguments:
                assert kw.get("help"), (c.words, flags)
