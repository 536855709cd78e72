"""The agent's store has one front door: SQL, connections and the store's
connection appear in edge_agent/store/ and nowhere else in edge_agent/."""
import ast
import os
import re

from harness import ROOT

AGENT = os.path.join(ROOT, "edge_agent")
STORE = os.path.join(AGENT, "store")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT)\s")
CALLS = {"execute", "executemany", "executescript", "connect", "cursor"}


def agent_modules():
    for folder, _, files in os.walk(AGENT):
        if folder.startswith(STORE):
            continue
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def reaching_in(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    where = os.path.relpath(path, ROOT)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is str and SQL.search(node.value):
            yield "%s:%d: SQL %r" % (where, node.lineno, node.value[:60])
        elif isinstance(node, ast.Attribute) and node.attr == "conn":
            yield "%s:%d: .conn (the store's connection)" % (where, node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS
              and isinstance(node.func.value, ast.Name) and node.func.value.id in ("sqlite3", "db", "conn")):
            yield "%s:%d: %s.%s()" % (where, node.lineno, node.func.value.id, node.func.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("sqlite_utils",) for n in names):
                yield "%s:%d: sqlite_utils" % (where, node.lineno)


def test_no_sql_outside_the_store():
    found = [line for path in agent_modules() for line in reaching_in(path)]
    assert not found, "ask the store through a named method (edge_agent/store/):\n" + "\n".join(found)


def test_the_check_finds_sql(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(store):\n    store.conn.execute("SELECT 1 FROM events")\n')
    assert len(list(reaching_in(str(bad)))) == 2
