"""One JSON line per request on the `county.access` logger: who asked what,
the answer's status and size, how long it took, and for a batch its hall,
id, size and per-status counts. Tokens and bodies are never logged.

    {"client": "10.0.3.7", "method": "POST", "path": "/v1/halls/hall-a/batches", "status": 200,
     "ms": 41.2, "in": 18211, "out": 20344, "hall": "hall-a", "batch": "18c1f...", "events": 500,
     "results": {"stored": 498, "duplicate": 2}}
"""
import json
import logging
import time

log = logging.getLogger("county.access")
# What a route may leave in request.state for the access line.
FIELDS = ("hall", "batch", "events", "results", "error")


class AccessLog:
    """ASGI middleware around the whole app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {"status": None, "out": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            line = {"client": (scope.get("client") or ("-",))[0], "method": scope["method"],
                    "path": scope["path"][:200], "status": seen["status"],
                    "ms": round((time.perf_counter() - started) * 1000, 1), "out": seen["out"]}
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    line["in"] = int(value) if value.isdigit() else value.decode("latin-1")[:20]
            state = scope.get("state") or {}
            line.update((k, state[k]) for k in FIELDS if k in state)
            if seen["status"] is None:
                line["dropped"] = True          # no answer went out: the client hung up, or the test hook
            log.info("%s", json.dumps(line, ensure_ascii=False))
