"""HTTP routes for cases (办件) and their 红黄牌 lights (cases.py), and the
hall's rating-link key (links.py). API.md, "Cases and 红黄牌"."""
import asyncio
import json
import time

from fastapi import Query, Request

from tools.county import batch, cases, links, schema
from tools.county.app import COUNTY_SECURITY, HALL, HALL_SECURITY, answer

MAX_BODY = 1 << 20
SYSTEM_SECURITY = [{"systemToken": []}] + COUNTY_SECURITY
SINCE = Query(None, max_length=40, description="the cursor of the last answer; left out: everything open")


def need(ok, message):
    if not ok:
        raise batch.Refused(401, message)


def base_url(county, request):
    return county.public_url or str(request.base_url).rstrip("/")


async def _json(request):
    n = batch.declared_length(request.headers.get("content-length"))
    if n > MAX_BODY:
        raise batch.Refused(413, "request over %d bytes" % MAX_BODY)
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise batch.Refused(400, "body is not JSON")


def routes(app, county):
    rules = county.rules

    async def store_events(request, hall):
        need(county.tokens.system(request.headers.get("authorization")),
             "needs a business system's token or the county token")
        doc = await _json(request)
        try:
            events = cases.parse(doc, rules.calendar, hall)
        except cases.Bad as e:
            raise batch.Refused(400, str(e))
        now_ms = int(time.time() * 1000)
        results = await asyncio.get_running_loop().run_in_executor(
            None, cases.post, county.store, rules.calendar, events, now_ms)
        return answer(request, 200, {"results": results})

    @app.post("/v1/halls/{hall}/cases", responses=schema.errors(400, 401, 404, 413, 503),
              openapi_extra={"security": SYSTEM_SECURITY, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}}}}},
              summary="a business system's case events for this hall (accepted, suspended, ...)")
    async def post_hall_cases(request: Request, hall: str = HALL):
        return await store_events(request, hall)

    @app.post("/v1/cases", responses=schema.errors(400, 401, 413, 503),
              openapi_extra={"security": SYSTEM_SECURITY, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}}}}},
              summary="case events for any hall (each event names its hall)")
    async def post_cases(request: Request):
        return await store_events(request, None)

    @app.get("/v1/halls/{hall}/cases", responses=schema.errors(400, 401, 404, 503),
             openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
             summary="the hall's cases changed since the cursor, each with its light and rating link")
    def get_cases(request: Request, hall: str = HALL, since: str = SINCE):
        need(county.tokens.hall_device(hall, request.headers.get("authorization")),
             "needs hall %s's token or the county token" % hall)
        link = cases.rate_link(base_url(county, request), county.link_secret, hall)
        try:
            return answer(request, 200, cases.listing(county.store, rules, hall, since, rules.today(), link))
        except cases.Bad as e:
            raise batch.Refused(400, str(e))

    @app.get("/v1/halls/{hall}/cards", responses=schema.errors(401, 404, 503),
             openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
             summary="today's 红黄牌 counts: open cases by light (the lobby screen)")
    def get_cards(request: Request, hall: str = HALL):
        need(county.tokens.hall_device(hall, request.headers.get("authorization")),
             "needs hall %s's token or the county token" % hall)
        return answer(request, 200, dict(cases.cards(county.store, rules, hall, rules.today()), hall=hall))

    @app.get("/v1/halls/{hall}/link-key", responses=schema.errors(401, 404),
             openapi_extra={"security": HALL_SECURITY}, summary="the hall's key for signing rating links offline")
    def link_key(request: Request, hall: str = HALL):
        need(county.tokens.hall(hall, request.headers.get("authorization")),
             "bad or missing bearer token for hall %s" % hall)
        if not county.link_secret:
            raise batch.Refused(404, "rating links are not set up on this server (county-server run --link-secret-file)")
        return answer(request, 200, {"hall": hall, "key": links.hall_key(county.link_secret, hall).hex(),
                                     "base": base_url(county, request), "kinds": list(links.KINDS)})
