"""Who may change the staff on duty over HTTP: reading is open (the lobby
screen), writing needs the bearer token, or comes from the Pi itself when
no token is set. Real sockets: a request from the machine's own LAN address
is not loopback, as a request from the lobby PC would not be."""
import json
import socket
import urllib.error
import urllib.request

import pytest

from edge_agent import config as config_mod
from edge_agent.http_api import HallHTTP
from edge_agent.store import Store


def lan_address():
    """This machine's address on its network (no packet is sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("203.0.113.1", 9))   # any routable address: UDP connect only picks a route
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(token=None, runtime=dict, **http):
        http.update(host="0.0.0.0", port=0)
        if token:
            http["token"] = token
        cfg = config_mod.validate({"hall": "h1", "http": http})
        store = Store(str(tmp_path / ("agent%d.db" % len(servers))))
        api = HallHTTP(store, cfg, runtime=runtime, health=lambda: (True, None)).start()
        servers.append(api)
        return api
    yield start
    for api in servers:
        api.stop()


def post(host, port, window, body, token=None):
    req = urllib.request.Request("http://%s:%d/api/windows/%s" % (host, port, window),
                                 data=json.dumps(body).encode(), method="POST")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def staff(api, window):
    row = api.store.conn.execute("SELECT staff FROM windows WHERE window = ?", (window,)).fetchone()
    return row and row[0]


def test_without_a_token_only_the_pi_itself_may_write(serve):
    lan = lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    api = serve()
    assert post("127.0.0.1", api.port, "A01", {"staff": "张三"}) == (200, {"ok": True})
    code, body = post(lan, api.port, "A01", {"staff": "冒名"})
    assert code == 403 and "[http] token" in body["error"]
    assert staff(api, "A01") == "张三"
    with urllib.request.urlopen("http://%s:%d/api/hall" % (lan, api.port), timeout=5) as r:
        assert r.status == 200             # the lobby screen reads from anywhere


def test_with_a_token_every_writer_needs_it(serve):
    api = serve(token="s3cret-hall-token")
    assert post("127.0.0.1", api.port, "A02", {"staff": "李四"})[0] == 401       # even from the Pi
    assert post("127.0.0.1", api.port, "A02", {"staff": "李四"}, token="wrong")[0] == 401
    assert staff(api, "A02") is None
    assert post("127.0.0.1", api.port, "A02", {"staff": "李四"}, token="s3cret-hall-token") == (200, {"ok": True})
    assert staff(api, "A02") == "李四"
    lan = lan_address()
    if lan:
        assert post(lan, api.port, "A02", {"staff": "王五"}, token="s3cret-hall-token")[0] == 200
