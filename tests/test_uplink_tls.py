"""HTTPS to the county with the county's CA pinned: the uplink trusts that
CA only, so a server with any other certificate gets nothing."""
import shutil
import socket
import subprocess

import pytest

from test_uplink import HALL, Running, county_stats, events, start_county
from harness import wait_for
from tools.county.testing import add_events, agent_store

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl command not installed")


def make_ca(d, name):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, capture_output=True, cwd=str(d))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", name + "-ca.key", "-out", name + "-ca.pem",
        "-subj", "/CN=%s county CA" % name, "-days", "2")
    run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", name + ".csr", "-CA", name + "-ca.pem", "-CAkey", name + "-ca.key",
        "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", "san.ext")
    return str(d / (name + "-ca.pem")), str(d / (name + ".pem")), str(d / (name + ".key"))


def test_uplink_over_https_trusts_only_the_pinned_ca(tmp_path):
    ca, cert, key = make_ca(tmp_path, "real")
    other_ca, _, _ = make_ca(tmp_path, "other")
    path = str(tmp_path / "agent.db")
    db = agent_store(path)
    add_events(db, events("ev-t", 40))
    county = start_county(tmp_path, "--tls-cert", cert, "--tls-key", key)
    try:
        assert county.url.startswith("https://")
        for wrong in (other_ca, None):               # another CA; the system store
            up = Running(path, county.url, ca_file=wrong)
            try:
                st = wait_for(lambda: (lambda s: s if s["last_error"] else None)(up.up.state()),
                              30, 0.1, "a TLS failure")
            finally:
                up.close()
            assert "CERTIFICATE_VERIFY_FAILED" in st["last_error"] and st["pending"] == 40
        # A client that connects and says nothing must not hold up the others.
        silent = socket.create_connection(("127.0.0.1", county.port))
        up = Running(path, county.url, ca_file=ca)
        try:
            up.drained()
        finally:
            up.close()
            silent.close()
    finally:
        county.stop()
        db.close()
    assert county_stats(county, HALL)["total"] == 40
