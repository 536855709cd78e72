"""The evaluator against the hall's real broker setup: no anonymous login,
per-device passwords and the ACL that `edge-agent broker-config` writes
(edge_agent.broker). A device with the wrong password keeps every thanked
press on flash and delivers it once its credentials are fixed."""
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import Mosquitto, free_port, wait_for
from edge_agent import broker as broker_conf
from edge_agent import registry
from tools.vdevice import Acker, VirtualDevice

HALL = "acl-hall"
DEV = "ev-21"
KEY = bytes(range(7, 39))
AGENT_PW = "agent-secret"


@pytest.fixture
def acl_broker():
    # Mosquitto drops to its own user before it reads the password file and
    # writes persistence: it needs a directory it can reach (pytest's are 0700).
    d = tempfile.mkdtemp(prefix="qinglian-fw-broker-")
    os.chmod(d, 0o755)
    port = free_port()
    with open(os.path.join(d, "acl"), "w") as f:
        f.write(broker_conf.acl_text(HALL, [DEV]))
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write("%s:%s\n%s:%s\n" % (broker_conf.agent_user(HALL), AGENT_PW, DEV, registry.mqtt_password(KEY)))
    subprocess.run([broker_conf.MOSQUITTO_PASSWD, "-U", os.path.join(d, "passwd")], check=True)
    conf = "\n".join([
        "per_listener_settings false", "allow_anonymous false",
        "password_file %s/passwd" % d, "acl_file %s/acl" % d,
        "persistence false",
        "max_queued_messages 0", "listener %d 127.0.0.1" % port, "log_dest stdout", ""])
    for name in ("passwd", "acl"):
        os.chmod(os.path.join(d, name), 0o644)
    b = Mosquitto(d, port=port, conf=conf).start()
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_per_device_credentials_and_the_hall_acl(tmp_path, acl_broker):
    acker = Acker(acl_broker.port, HALL, {DEV: KEY}, {"*": {"window": "B01", "staff_no": "9", "prompt_s": 10}},
                  username=broker_conf.agent_user(HALL), password=AGENT_PW).start()
    vd = VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, acl_broker.port, username=DEV,
                       password=registry.mqtt_password(KEY), site={"long_ms": 150})
    try:
        vd.start()
        assert vd.stats()["ready"]
        vd.call("C001")
        vd.staff("end")
        vd.press("satisfied")
        wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="acked through the ACL")
        assert [r["level"] for r in acker.of_kind("rating")] == ["satisfied"]
        assert acker.presence[DEV]["online"] is True

        # A wrong password: refused at the door, presses kept and thanked all the same.
        vd.stop()
        vd.provision(site={"password": "wrong"})
        vd.start(ready_timeout=0)
        for i in range(3):
            vd.call("C1%02d" % i)
            vd.staff("end")
            vd.press("very_satisfied")
        st = vd.stats()
        assert st["thanks"] == 3 and not st["connected"] and st["outbox"] >= 3
        wait_for(lambda: vd.stats()["reconnects"] >= 2, 20, what="retries with backoff")
        assert len(acker.of_kind("rating")) == 1

        vd.stop()
        vd.provision(site={"password": registry.mqtt_password(KEY)})
        vd.start()
        wait_for(lambda: vd.stats()["outbox"] == 0, 30, what="backlog delivered with the right password")
        assert [r["level"] for r in acker.of_kind("rating")] == ["satisfied"] + ["very_satisfied"] * 3
        assert acker.conflicts == 0 and not acker.rejected
    finally:
        vd.stop()
        acker.stop()
