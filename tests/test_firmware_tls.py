"""The evaluator's MQTT link over TLS: real firmware under the MicroPython
unix port at 64 KiB, provisioned with `hallctl provision --ca` over a real
serial line, against the TLS listener `edge-agent broker-config` writes for
a real Mosquitto. The device checks the broker against the CA provisioning
wrote: a broker with any other certificate gets no connection, the device
retries, and its events wait on flash until the hall's broker is back."""
import os
import shutil
import subprocess

import pytest

from harness import Mosquitto, VENV_BIN, free_port, wait_for
from test_agent_broker import make_certs
from test_agent_support import add_devices, broker_dir, edge_agent, write_config
from tools.vdevice import Acker, VirtualDevice
from tools.vserial import VirtualSerial

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("socat")),
                                reason="openssl and socat are installed by make (tools/system-deps.sh)")

HALL = "tls-hall"
DEV = "ev-tls"


def _rate(vd, n):
    for i in range(n):
        vd.call("T%03d" % i)
        vd.staff("end")
        vd.press("satisfied")


def test_events_arrive_over_tls_and_a_broker_with_another_ca_gets_nothing(tmp_path):
    work, bdir, fake = str(tmp_path), broker_dir(), broker_dir()
    ca = make_certs(bdir)
    make_certs(fake)          # someone else's CA and broker certificate, same address
    plain, tls = free_port(), free_port()
    config = write_config(work, plain, hall=HALL, extra='username = "agent-%s"\npassword = "agent-pw"' % HALL)
    key = add_devices(config, [DEV])[DEV]
    edge_agent(config, "broker-config", "--out", bdir, "--data-dir", bdir + "/data", "--listen", "127.0.0.1",
               "--port", str(plain), "--tls-port", str(tls), "--tls-cert", bdir + "/server.pem",
               "--tls-key", bdir + "/server.key")
    conf = open(bdir + "/mosquitto.conf").read()
    impostor_conf = conf.replace(bdir + "/server.", fake + "/server.")
    assert impostor_conf != conf

    image = str(tmp_path / "flash.img")
    serial = VirtualSerial(work, image).start()
    try:
        out = subprocess.run([os.path.join(VENV_BIN, "hallctl"), "provision", serial.tty, "--hall", HALL,
                              "--device", DEV, "--key-file", "-", "--broker", "127.0.0.1:%d" % tls, "--ca", ca],
                             input=key.hex(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "TLS checked against" in out.stdout
    finally:
        serial.stop()

    def broker(conf_text):
        return Mosquitto(bdir, port=plain, conf=conf_text).start()

    def agent():
        return Acker(plain, HALL, {DEV: key}, username="agent-" + HALL, password="agent-pw").start()

    # TLS keeps ~5 KB more of the MicroPython heap than plain MQTT (SSL context
    # and socket; hardware/README.md): at 64k the evaluator refuses presses, at 68k it fits.
    vd = VirtualDevice(str(tmp_path / "dev"), "ignored", "ignored", b"\0" * 32, 1, heapsize="68k")
    vd.image = image      # the flash hallctl wrote: site.json says TLS, ca.pem beside it
    b, a = broker(conf), agent()
    try:
        vd.start(ready_timeout=30)
        _rate(vd, 1)
        wait_for(lambda: len(a.of_kind("rating")) == 1 and vd.stats()["outbox"] == 0, 30,
                 what="a rating over TLS, acked")
        b.stop()
        a.stop()

        b, a = broker(impostor_conf), agent()      # same address and port, certificate not from our CA
        reconnects = vd.stats()["reconnects"]
        _rate(vd, 2)
        wait_for(lambda: vd.stats()["reconnects"] >= reconnects + 3, 90, what="the device retrying")
        st = vd.stats()
        assert st["connected"] is False and st["thanks"] == 3 and st["outbox"] >= 6
        # Not one MQTT packet got through (what it holds is the will retained from before).
        assert not a.events and (a.presence.get(DEV) or {}).get("online") is not True
        b.stop()
        a.stop()

        b, a = broker(conf), agent()               # the hall's broker again: nothing was lost
        # Up to 180 s: the reconnect backoff has grown to 15-30 s against the impostor,
        # and on a loaded 2-core machine a handshake can miss its 5 s bound and wait again.
        wait_for(lambda: len(a.of_kind("rating")) == 2 and vd.stats()["outbox"] == 0, 180,
                 what="the waiting ratings over TLS")
        st = vd.stats()
        assert not a.rejected and st["refused"] == 0 and st["thanks"] == 3 and vd.restarts == 0
    finally:
        vd.stop()
        a.stop()
        b.stop()


# Runs under MicroPython: the firmware's MQTT client alone, to the hall's TLS listener.
_CONNECT = """
import sys, tasks
from mqtt import MQTT
async def main():
    m = MQTT("probe", "127.0.0.1", %(port)d, ca_file=%(ca)r, server_hostname=%(name)r)
    try:
        await m.connect()
        print("connected")
    except OSError as e:           # the one failure type the uplink retries
        print("refused:", e)
    finally:
        m.close()
tasks.run(main())
"""


def test_the_broker_must_carry_the_provisioned_name(tmp_path):
    """Same CA, another name: refused, as an OSError the uplink retries, never a crash."""
    from tools.procs import MICROPYTHON, micropython_path
    bdir = broker_dir()
    ca = make_certs(bdir)              # the broker's certificate names IP:127.0.0.1 only
    der = os.path.join(bdir, "ca.der")
    subprocess.run(["openssl", "x509", "-in", ca, "-outform", "der", "-out", der], check=True)
    plain, tls = free_port(), free_port()
    b = Mosquitto(bdir, port=plain)
    conf = b.default_conf() + "listener %d 127.0.0.1\ncertfile %s/server.pem\nkeyfile %s/server.key\n" % (
        tls, bdir, bdir)
    b = Mosquitto(bdir, port=plain, conf=conf).start()
    try:
        said = {}
        for name in ("127.0.0.1", "broker.hall.example"):
            out = subprocess.run([MICROPYTHON, "-c", _CONNECT % {"port": tls, "ca": der, "name": name}],
                                 env=dict(os.environ, MICROPYPATH=micropython_path(".frozen")),
                                 capture_output=True, text=True, timeout=60)
            said[name] = out.stdout.strip()
    finally:
        b.stop()
    assert said["127.0.0.1"] == "connected"
    assert said["broker.hall.example"].startswith("refused:") and "CN" in said["broker.hall.example"]
