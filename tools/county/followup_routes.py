"""HTTP routes for follow-ups (followup.py): a hall's manager or the county
reads and updates them; only the county decides an appeal. API.md, "Follow-ups"."""
import time
from typing import Optional

from fastapi import Path, Query, Request

from tools.county import batch, followup, schema
from tools.county.app import COUNTY_SECURITY, HALL, answer, need_reports
from tools.county.case_routes import _json

MANAGER_SECURITY = [{"managerToken": []}] + COUNTY_SECURITY
FID = Path(pattern=followup.ID.pattern, description="the follow-up's id (r:<device>:<seq>, q:<kind>:<ref>, or a 办不成事 id)")


def routes(app, county):
    rules = county.rules

    def refused(e):
        return batch.Refused(e.status, str(e))

    @app.get("/v1/halls/{hall}/followups", responses=schema.errors(400, 401, 404, 503),
             openapi_extra={"security": MANAGER_SECURITY}, summary="the hall's follow-ups with deadlines and overdue flags")
    def list_followups(request: Request, hall: str = HALL,
                       workflow: Optional[str] = Query(None, pattern="^(bad_rating|cannot_do)$"),
                       state: Optional[str] = Query(None, pattern="^[a-z_]{1,20}$"),
                       overdue: Optional[bool] = Query(None)):
        need_reports(county, request, hall)
        today = rules.today()
        return answer(request, 200, {"hall": hall, "date": today.isoformat(), "followups": followup.listing(
            county.store, rules, hall, today, workflow, state, overdue)})

    @app.get("/v1/halls/{hall}/followups/{fid}", responses=schema.errors(401, 404, 503),
             openapi_extra={"security": MANAGER_SECURITY}, summary="one follow-up with every step")
    def show_followup(request: Request, hall: str = HALL, fid: str = FID):
        need_reports(county, request, hall)
        try:
            return answer(request, 200, followup.show(county.store, rules, hall, fid, rules.today()))
        except followup.Refused as e:
            raise refused(e)

    @app.post("/v1/halls/{hall}/followups/{fid}/steps", responses=schema.errors(400, 401, 403, 404, 503),
              openapi_extra={"security": MANAGER_SECURITY, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}}}}},
              summary="append a step: {to, who, note, level (追评/评价 only)}")
    async def add_step(request: Request, hall: str = HALL, fid: str = FID):
        need_reports(county, request, hall)
        doc = await _json(request)
        if type(doc) is not dict:
            raise batch.Refused(400, "expected an object {to, who, note}")
        is_county = county.tokens.county_wide(request.headers.get("authorization"))
        role = "county" if is_county else "manager"
        who = doc.get("who") if type(doc.get("who")) is str else ""
        try:
            followup.sync(county.store, rules, hall)
            followup.step(county.store, rules, hall, fid, doc.get("to"), who and "%s (%s)" % (who, role),
                          doc.get("note"), is_county, int(time.time() * 1000), doc.get("level"))
            return answer(request, 200, followup.show(county.store, rules, hall, fid, rules.today()))
        except followup.Refused as e:
            raise refused(e)

    @app.post("/v1/halls/{hall}/followups", responses=schema.errors(400, 401, 404, 503),
              openapi_extra={"security": MANAGER_SECURITY, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object"}}}}},
              summary="open a 办不成事 report (受理): {id, who, note, item, window}")
    async def open_report(request: Request, hall: str = HALL):
        need_reports(county, request, hall)
        doc = await _json(request)
        if type(doc) is not dict or type(doc.get("who")) is not str or type(doc.get("note")) is not str:
            raise batch.Refused(400, "expected an object {id, who, note, item?, window?}")
        if not doc["note"].strip() or len(doc["note"]) > followup.MAX_NOTE or not 0 < len(doc["who"]) <= 64:
            raise batch.Refused(400, "who: 1-64 characters; note: what the citizen could not get done")
        item, window = doc.get("item"), doc.get("window")
        for v in (item, window):
            if v is not None and (type(v) is not str or not 0 < len(v) <= 64):
                raise batch.Refused(400, "item and window: text of 1-64 characters")
        try:
            made = followup.open_report(county.store, rules, hall, doc.get("id") if type(doc.get("id")) is str else "",
                                        doc["who"], doc["note"], int(time.time() * 1000), item, window)
            return answer(request, 201 if made else 200, followup.show(county.store, rules, hall, doc["id"],
                                                                       rules.today()))
        except followup.Refused as e:
            raise refused(e)
