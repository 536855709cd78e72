"""Run the county app (app.py) under uvicorn: one process, one event loop,
store work in a thread pool; several processes may share one PostgreSQL.

uvicorn answers requests its HTTP parser refuses (a Content-Length that is
not a number, say) itself, in plain text; CountyHTTP answers those in the
API's JSON like every other error. The parser is h11 rather than httptools:
h11 reads a connection's next request only once the current one is
answered, so the bytes after a POST without Content-Length are not
mistaken for a second request before the first gets its 411. SIGTERM (or Ctrl-C): stop accepting, let
batches in hand commit and be answered, close idle connections, exit.
"""
import asyncio
import json
import logging
import socket
import sys

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from tools.county import accesslog
from tools.county.errors import CountyError

log = logging.getLogger("county")
GRACE_S = 30                    # batches in hand get this long to commit and be answered after SIGTERM
KEEP_ALIVE_S = 30               # an idle hall connection is closed after this


class CountyHTTP(H11Protocol):
    """uvicorn's h11 protocol with JSON answers to unparseable
    requests, and a way for the --fail-after-commit hook to drop a
    connection unanswered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        app = self.app

        async def with_abort(scope, receive, send):
            scope.setdefault("extensions", {})["qinglian.abort"] = self.transport.abort
            await app(scope, receive, send)
        self.app = with_abort

    def send_400_response(self, msg):
        # Called inside uvicorn's `except h11.RemoteProtocolError`: the parser's own words are there.
        why = sys.exc_info()[1]
        detail = str(why) if isinstance(why, h11.RemoteProtocolError) and str(why) else "malformed request"
        body = json.dumps({"error": "bad HTTP request: %s" % detail}).encode()
        log.info("refused an unparseable request from %s: %s", self.client and self.client[0], detail)
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


def listen(host, port):
    """Bind before serving, so a taken port is one error line, not uvicorn's exit."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        # proto must say TCP: asyncio sets TCP_NODELAY only then, and without it an answer's
        # body waits out the client's delayed ACK behind its headers (40 ms a request).
        sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as e:
        raise CountyError("cannot listen on %s:%d: %s" % (host, port, e.strerror or e))
    sock.set_inheritable(True)
    return sock


def serve(app, sock, tls_cert=None, tls_key=None, log_level="INFO"):
    """Serve until SIGTERM or Ctrl-C; returns when every request in hand is answered."""
    config = uvicorn.Config(
        accesslog.AccessLog(app), http=CountyHTTP, lifespan="off", log_config=None,
        access_log=False,                   # accesslog.py writes one JSON line per request instead
        log_level=log_level.lower(), timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACE_S, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
        server_header=False, date_header=True, proxy_headers=False)
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))
