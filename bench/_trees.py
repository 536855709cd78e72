"""Another revision of this repository, for a bench's same-run baseline:
unpacked with `git archive`, run with this venv (PYTHONPATH puts it first)."""
import os
import subprocess
import sys

from tools.procs import ROOT

_AGENT = "import sys; from edge_agent.cli import main; sys.exit(main())"


def tree_of(rev, work):
    """This repository at `rev`, unpacked under `work`."""
    out = os.path.join(work, "tree-" + rev.replace("/", "_"))
    os.makedirs(out)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


def edge_agent(tree):
    """(argv prefix, env) that run `edge-agent` from `tree`."""
    return [sys.executable, "-c", _AGENT], dict(os.environ, PYTHONPATH=tree)
