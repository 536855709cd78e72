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
