"""Fresh installs of this project, as a machine of one role gets it:
`pip install 'qinglian[agent]'` into an empty venv, pinned by constraints.txt.

tests/test_install_extras.py checks what such an install brings,
bench/agent_install.py measures it, tools/deb.py puts the agent's share of it
in the Debian package. pip comes from the running interpreter (`pip --python`),
so the venv holds only what the extras bring.
"""
import json
import os
import shutil
import subprocess
import sys
import tomllib

from tools.procs import ROOT

CONSTRAINTS = os.path.join(ROOT, "constraints.txt")
# What pyproject.toml packages; copied so that setuptools' build/ lands outside the tree.
SOURCE = ("pyproject.toml", "protocol", "edge_agent", "tools", "hardware")


def source_copy(dest):
    """The project's packaged files under `dest`, without bytecode; returns `dest`."""
    os.makedirs(dest, exist_ok=True)
    for name in SOURCE:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest)
    return dest


def pip(*args, python=None):
    """Run this interpreter's pip (on `python`'s environment when given); its output on failure."""
    argv = [sys.executable, "-m", "pip"] + (["--python", python] if python else []) + list(args)
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("pip %s failed:\n%s%s" % (" ".join(args), out.stdout, out.stderr))
    return out.stdout


def install(venv, requirement, work, compile=True):
    """A new venv at `venv` with `requirement` ('.[agent]', '.[test]', ...: '.' is this
    project, copied under `work`) installed from the pinned versions; returns its python.
    `compile` as pip does by default (bytecode written at install); off is quicker."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    if requirement.startswith("."):
        requirement = source_copy(os.path.join(work, "src")) + requirement[1:]
    pip("install", "-q", "--compile" if compile else "--no-compile", "-c", CONSTRAINTS, requirement,
        python=python)
    return python


def distributions(python):
    """{normalised name: version} of what is installed for `python`."""
    code = ("import importlib.metadata as m, json, re;"
            "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
            " for d in m.distributions()}))")
    return json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout)


def tree_bytes(path):
    """Bytes in the files under `path` (symlinks not followed), as `du -b` counts them."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(top, f)).st_size
    return total


def extra(name):
    """The requirements pyproject.toml lists for extra `name`."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"][name]
