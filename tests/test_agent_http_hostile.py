"""The agent's HTTP server against what a neighbour on the hall Wi-Fi can
send, over real sockets: idle and slowloris connections, broken
Content-Length and bodies, a page from another origin, and an internal
error that must not tell anyone the agent's insides."""
import json
import socket
import time

import pytest

from test_agent_http_auth import serve, staff  # noqa: F401 (fixture)


def raw(port, data, timeout=5, text=False):
    """Send bytes, read to close: (status, JSON body or None; text if asked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if text:
        return status, body.decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def post(port, body=b"", headers=(), window="A01"):
    lines = ["POST /api/windows/%s HTTP/1.1" % window, "Host: 127.0.0.1:%d" % port] + list(headers)
    return raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def get(port, path="/healthz"):
    return raw(port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode())


def closed_by_server(s, within):
    """True when the server hangs up on `s` within `within` seconds."""
    s.settimeout(within)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_idle_connections_are_capped_then_closed(serve):  # noqa: F811
    api = serve(max_connections=4, timeout_s=1.0)
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        status, body = get(api.port)
        assert status == 503 and "too many" in body["error"]
        started = time.monotonic()
        assert all(closed_by_server(s, 4) for s in idle)
        assert time.monotonic() - started < 4
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    assert get(api.port)[0] == 200
    status, metrics = raw(api.port, b"GET /metrics HTTP/1.0\r\n\r\n", text=True)
    assert "qinglian_agent_http_refused_total 1" in metrics and "qinglian_agent_http_cut_total 4" in metrics


def test_a_slowloris_request_is_cut_at_its_deadline(serve):  # noqa: F811
    api = serve(timeout_s=1.0)
    with socket.create_connection(("127.0.0.1", api.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        cut = False
        for _ in range(30):                # one byte every 0.2 s: each read is quick, the request never ends
            try:
                s.sendall(b"X")
            except OSError:
                cut = True
                break
            time.sleep(0.2)
            s.settimeout(0.01)
            try:
                if s.recv(4096) == b"":
                    cut = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                cut = True
                break
    assert cut and time.monotonic() - started < 4
    assert get(api.port)[0] == 200


def test_an_internal_error_is_500_without_internals(serve):  # noqa: F811
    def runtime():
        raise RuntimeError("secret /var/lib/qinglian/agent.db token=abc")
    api = serve(runtime=runtime)
    status, body = get(api.port, "/api/status")
    assert status == 500
    assert "secret" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)
    assert body["error"]


@pytest.mark.parametrize("headers, body, status, words", [
    ([], b'{"staff":"x"}', 411, "Content-Length required"),
    (["Content-Length: -5"], b'{"staff":"x"}', 400, "whole number"),
    (["Content-Length: abc"], b'{"staff":"x"}', 400, "whole number"),
    (["Content-Length: 99999999999999999999"], b"", 413, "body over"),
    (["Content-Length: 3"], b"[1]", 400, "JSON object"),
    (["Content-Length: 4"], b"null", 400, "JSON object"),
    (["Content-Length: 8"], b"not json", 400, "not JSON"),
    (["Content-Length: 2"], b"\xff\xfe", 400, "not JSON"),
    (["Content-Length: 3"], b"NaN", 400, "not JSON"),
    (["Content-Length: 0"], b"", 400, "not JSON"),
])
def test_a_bad_body_is_a_4xx_with_a_clear_error(serve, headers, body, status, words):  # noqa: F811
    api = serve()
    got, answer = post(api.port, body, headers)
    assert (got, words in answer["error"]) == (status, True), answer
    assert staff(api, "A01") is None
    assert get(api.port)[0] == 200


@pytest.mark.parametrize("origin", [["Origin: http://evil.example"], ["Origin: null"],
                                    ["Origin: http://127.0.0.1:1"], ["Sec-Fetch-Site: cross-site"]])
def test_a_page_from_another_origin_cannot_write(serve, origin):  # noqa: F811
    for api, auth in ((serve(), []), (serve(token="s3cret-hall-token"), ["Authorization: Bearer s3cret-hall-token"])):
        body = json.dumps({"staff": "冒名"}).encode()
        status, answer = post(api.port, body, ["Content-Length: %d" % len(body)] + auth + origin)
        assert status == 403 and "origin" in answer["error"]
        assert staff(api, "A01") is None
        own = ["Origin: http://127.0.0.1:%d" % api.port, "Sec-Fetch-Site: same-origin"]
        assert post(api.port, body, ["Content-Length: %d" % len(body)] + auth + own)[0] == 200
        assert staff(api, "A01") == "冒名"
