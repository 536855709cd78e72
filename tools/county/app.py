"""The county's HTTP API (API.md) as an ASGI application: batch ingest per
hall, stats, the monthly report (JSON, XLSX, an HTML page) and the county
overview. serve.py runs it under uvicorn.

Each batch is one store transaction in a worker thread, committed before the
answer is written, so an answer always means "on disk". Every error is JSON
`{"error": ...}`; after an error answer to a POST the connection is closed
(its body may be unread).
"""
import asyncio
import concurrent.futures
import gzip
import json
import logging
import re
import threading
import time

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from tools.county import batch, records, report, schema
from tools.county.auth import Tokens
from tools.county.errors import StoreError

log = logging.getLogger("county")
BODY_TIMEOUT_S = 120            # a hall that stalls mid-body frees its slot
GZIP_OVER = 4096                # answers larger than this are gzip'd for clients that take it
HALL = Path(pattern=schema.HALL_PATTERN, description="the hall's id (1-32 of A-Za-z0-9_-)")
MONTH = Query(pattern=r"^2\d{3}-(0[1-9]|1[0-2])$", description="the calendar month, such as 2026-10")
TZ = Query(report.DEFAULT_TZ, max_length=64, description="IANA time zone of the month's boundaries")
DEADLINE = Query(report.DEFAULT_DEADLINE_DAYS, ge=1, le=report.MAX_DEADLINE_DAYS,
                 description="rectify each 差评 within this many working days (Mon-Fri)")
# What a person is told when a field of the URL is wrong (FastAPI's own words name pydantic types).
FIELD_HELP = {
    "month": "month must be YYYY-MM, such as 2026-10",
    "tz": "tz must be an IANA time zone name such as Asia/Shanghai (at most 64 characters)",
    "deadline_days": "deadline_days must be a whole number of working days, 1-%d" % report.MAX_DEADLINE_DAYS,
    "hall": "no such resource (a hall id is 1-32 of A-Za-z0-9_-)",
}
REQUIRED = {"month": "month=YYYY-MM is required"}
HALL_SECURITY = [{"hallToken": []}, {"hallPassword": []}]
COUNTY_SECURITY = [{"countyToken": []}, {"countyPassword": []}]


class DropAnswer(Exception):
    """Test hook (--fail-after-commit): the batch is committed; the
    connection is to be dropped without an answer."""


class County:
    """What the routes share: the store, the tokens, the test hook."""

    def __init__(self, store, tokens, fail_after_commit=0, rules=None, link_secret=None, public_url=None):
        from tools.county.profiles import Rules
        self.store = store
        self.tokens = tokens if isinstance(tokens, Tokens) else Tokens(tokens)
        self.rules = rules or Rules()
        self.link_secret = link_secret      # signs rating links (links.py); None: no links
        self.public_url = public_url        # the county's base URL in links; None: as the request came
        self._lose = fail_after_commit
        self._lose_lock = threading.Lock()
        self._ingesting = None

    def ingesting(self):
        """The threads batches are parsed and stored in: as many as the store
        takes at once (made on first use, from the event loop)."""
        if self._ingesting is None:
            self._ingesting = concurrent.futures.ThreadPoolExecutor(
                self.store.ingest_threads, thread_name_prefix="county-ingest")
        return self._ingesting

    def lose_answer(self):
        with self._lose_lock:
            if self._lose > 0:
                self._lose -= 1
                return True
        return False


def answer(request, status, doc, headers=None):
    """JSON, gzip'd when large and the client takes gzip."""
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    h = dict(headers or {})
    if len(data) > GZIP_OVER and "gzip" in (request.headers.get("accept-encoding") or ""):
        data = gzip.compress(data, 5)
        h["Content-Encoding"] = "gzip"
    if status >= 400 and request.method == "POST":
        h["Connection"] = "close"       # the body may be unread: this connection cannot carry another request
    return Response(data, status, headers=h, media_type="application/json")


def refuse(request, status, message):
    request.state.error = message
    response = answer(request, status, {"error": message})
    if status == 401:
        # Programs send a Bearer token; a browser (a report page, its XLSX link) asks for Basic.
        response.headers.append("WWW-Authenticate", 'Bearer realm="qinglian-county"')
        if request.method == "GET":
            response.headers.append("WWW-Authenticate", 'Basic realm="qinglian-county", charset="UTF-8"')
    return response


def make_app(county):
    app = FastAPI(
        title="Qinglian county batch API",
        version="1",
        description="What a hall's edge agent sends to the county, and the reports the county "
                    "gives back. Semantics: tools/county/API.md and protocol/SPEC.md.",
        docs_url=None, redoc_url=None)
    app.state.county = county
    _errors(app)
    _docs(app)
    _api(app, county)
    from tools.county import case_routes, followup_routes, pages, qr
    pages.routes(app, county)
    qr.routes(app, county)
    case_routes.routes(app, county)
    followup_routes.routes(app, county)
    return app


def need_hall(county, request, hall):
    if not county.tokens.hall(hall, request.headers.get("authorization")):
        raise batch.Refused(401, "bad or missing bearer token for hall %s" % hall)
    request.state.hall = hall


def need_hall_or_county(county, request, hall):
    if not county.tokens.hall_or_county(hall, request.headers.get("authorization")):
        raise batch.Refused(401, "needs hall %s's token or the county token" % hall)
    request.state.hall = hall


def need_reports(county, request, hall):
    if not county.tokens.reads_reports(hall, request.headers.get("authorization")):
        raise batch.Refused(401, "needs hall %s's manager token or the county token" % hall)
    request.state.hall = hall


def need_county(county, request):
    if not county.tokens.county_wide(request.headers.get("authorization")):
        raise batch.Refused(401, "needs the county token" if county.tokens.county
                            else "needs the county token; this server has none (county-server run --county-token)")


def _api(app, county):
    @app.get("/healthz", response_model=schema.Health, responses=schema.errors(503),
             summary="the database answers")
    def healthz(request: Request):
        county.store.ping()
        return answer(request, 200, {"ok": True})

    # The hot path: a plain Starlette route, no FastAPI dependency solving or
    # response model; batch.py and records.py make every check. BATCH_DOC describes it.
    async def batches(request):
        return await post_batch(county, request)
    app.router.add_route(BATCH_PATH, batches, methods=["POST"], include_in_schema=False)

    @app.get("/v1/halls/{hall}/stats", response_model=schema.Stats, responses=schema.errors(401, 404, 503),
             openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
             summary="a hall's counts (hall or county token)")
    def hall_stats(request: Request, hall: str = HALL):
        need_reports(county, request, hall)
        return answer(request, 200, county.store.stats(hall))

    @app.get("/v1/stats", response_model=schema.Stats, responses=schema.errors(401, 503),
             openapi_extra={"security": COUNTY_SECURITY}, summary="counts across halls (county token)")
    def stats(request: Request):
        need_county(county, request)
        return answer(request, 200, county.store.stats())

    @app.get("/v1/halls/{hall}/report", response_model=schema.Report,
             responses=schema.errors(400, 401, 404, 503), openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
             summary="the hall's monthly 好差评 report (hall or county token)")
    def hall_report(request: Request, hall: str = HALL, month: str = MONTH, tz: str = TZ,
                    deadline_days: int = DEADLINE):
        need_reports(county, request, hall)
        return answer(request, 200, report.build(county.store, hall, month, tz, deadline_days, county.rules))


BATCH_PATH = "/v1/halls/{hall}/batches"
_HALL_ID = re.compile(schema.HALL_PATTERN)
# /openapi.json's entry for the batch route: described by FastAPI, served by post_batch().
BATCH_DOC = APIRouter()


@BATCH_DOC.post(BATCH_PATH, response_model=schema.BatchAnswer,
                responses=schema.errors(400, 401, 404, 408, 411, 413, 415, 503),
                openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Batch"}}}}, "security": HALL_SECURITY},
                summary="store a batch of a hall's events, once each; one result per event")
def _batch_doc(hall: str = HALL):
    raise AssertionError("documentation only: post_batch() serves this route")


async def post_batch(county, request):
    """Store a batch. The request's own checks run in the event loop; gunzip,
    JSON, every event's checks and the transaction in one of the store's
    ingest threads (store.ingest_threads), so neither the work nor the commit
    holds up the loop. Parsing and writing in the same thread: under one
    interpreter lock a parse running beside a write only takes turns with it."""
    hall = request.path_params["hall"]
    if not _HALL_ID.match(hall):
        raise batch.Refused(404, FIELD_HELP["hall"])
    need_hall(county, request, hall)
    n = batch.declared_length(request.headers.get("content-length"))
    raw = await _body(request, n)
    encoding = request.headers.get("content-encoding")
    now_ms = int(time.time() * 1000)

    def ingest():
        batch_id, items = batch.parse(batch.decode(raw, encoding), hall)
        request.state.batch, request.state.events = batch_id, len(items)
        results = county.store.ingest(hall, batch_id, items, now_ms)
        counts = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        request.state.results = counts
        if county.lose_answer():
            raise DropAnswer()
        return answer(request, 200, {"batch": batch_id, "results": results})
    return await asyncio.get_running_loop().run_in_executor(county.ingesting(), ingest)


async def _body(request, n):
    """Read exactly the declared body, within BODY_TIMEOUT_S."""
    async def read():
        chunks, got = [], 0
        async for chunk in request.stream():
            got += len(chunk)
            if got > n:                 # the HTTP layer frames by Content-Length; belt and braces
                raise batch.Refused(413, "request over its Content-Length")
            chunks.append(chunk)
        return b"".join(chunks)
    try:
        return await asyncio.wait_for(read(), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise batch.Refused(408, "request body not received within %d s" % BODY_TIMEOUT_S)


def _errors(app):
    @app.exception_handler(batch.Refused)
    async def refused(request, e):
        return refuse(request, e.status, str(e))

    @app.exception_handler(records.Malformed)
    async def malformed(request, e):
        return refuse(request, 400, str(e))

    @app.exception_handler(report.ReportError)
    async def bad_report(request, e):
        return refuse(request, 400, str(e))

    @app.exception_handler(StoreError)
    async def store_down(request, e):
        log.error("%s %s: %s", request.method, request.url.path[:200], e)
        return refuse(request, 503, "store unavailable, retry later")

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e):
        # A path that names no possible hall is an unknown resource, as any other unknown path.
        if any(tuple(err.get("loc", ()))[:1] == ("path",) for err in e.errors()):
            return refuse(request, 404, FIELD_HELP["hall"])
        return refuse(request, 400, validation_message(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request, e):
        message = {404: "no such resource", 405: "method not allowed"}.get(e.status_code, str(e.detail))
        return refuse(request, e.status_code, message)

    @app.exception_handler(DropAnswer)
    async def drop(request, e):
        log.warning("hall %s batch %s: committed, answer dropped (--fail-after-commit)",
                    getattr(request.state, "hall", "?"), getattr(request.state, "batch", "?"))
        request.scope["extensions"]["qinglian.abort"]()
        for _ in range(3):                  # let the loop see the connection lost: nothing more is sent
            await asyncio.sleep(0)
        return Response(status_code=204)

    @app.exception_handler(Exception)
    async def bug(request, e):
        # The traceback goes to the county's log (uvicorn logs it), not to whoever sent the request.
        return refuse(request, 500, "internal error; the county's log has the details")


def validation_message(errors):
    """FastAPI's validation errors -> one line a person can act on."""
    out = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ())]
        name = loc[-1] if loc else "request"
        if err.get("type") == "missing":
            text = REQUIRED.get(name, "%s is required" % name)
        else:
            text = FIELD_HELP.get(name, "%s: %s" % (name, err.get("msg", "invalid")))
        if text not in out:
            out.append(text)
    return "; ".join(out) or "bad request"


def _docs(app):
    """Swagger UI from the pinned swagger-ui-bundle package: no CDN."""
    from swagger_ui_bundle import swagger_ui_path
    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return HTMLResponse(DOCS_PAGE)

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes + BATCH_DOC.routes)
            for item in doc["paths"].values():
                for op in item.values():
                    for code, resp in op.get("responses", {}).items():
                        if code[0] in "45":      # errors are JSON on every route, pages included
                            resp["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            comps = doc.setdefault("components", {})
            comps.setdefault("schemas", {})["Batch"] = schema.Batch.model_json_schema(
                ref_template="#/components/schemas/{model}")
            comps["schemas"].update(schema.Batch.model_json_schema(
                ref_template="#/components/schemas/{model}").pop("$defs", {}))
            comps["schemas"]["Batch"].pop("$defs", None)
            comps["securitySchemes"] = {
                "hallToken": {"type": "http", "scheme": "bearer", "description": "the hall's token"},
                "hallPassword": {"type": "http", "scheme": "basic",
                                 "description": "user: the hall id, password: its token (browsers)"},
                "countyToken": {"type": "http", "scheme": "bearer", "description": "the county token"},
                "countyPassword": {"type": "http", "scheme": "basic",
                                   "description": "user: county, password: the county token (browsers)"},
                "managerToken": {"type": "http", "scheme": "bearer", "description": "the hall manager's token"},
                "systemToken": {"type": "http", "scheme": "bearer", "description": "a business system's token"},
            }
            app.openapi_schema = doc
        return app.openapi_schema
    app.openapi = openapi


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Qinglian county API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
