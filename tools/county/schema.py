"""The shapes of API.md as OpenAPI models: what /openapi.json, the docs page
and schemathesis see. The server does not validate a batch through them
(batch.py and records.py do, with API.md's per-event semantics: a body that
is not a string is `invalid`, not a refused request); they describe it.
"""
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tools.county import batch as limits, records

HALL_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


class Item(BaseModel):
    model_config = ConfigDict(extra="allow")
    device: str = Field(pattern=HALL_PATTERN, description="the device id (1-32 of A-Za-z0-9-_)")
    seq: int = Field(ge=1, le=records.MAX_SAFE_INT, description="the device's sequence number of the event")
    # Not required: an item without one is answered per event like any body
    # that is not a string (schemathesis sent one and got that answer).
    body: object = Field(None, description="the event's wire JSON (SPEC.md) as text, `mac` included; "
                                           "missing or anything but a string is answered `invalid`, `bad_type`")


class Batch(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: str = Field(pattern=r"^[\x21-\x7e]{1,64}$", description="chosen by the hall; the same on every resend")
    hall: str = Field(description="must equal the hall in the URL")
    events: list[Item] = Field(max_length=limits.MAX_EVENTS)


class Result(BaseModel):
    device: str
    seq: int
    status: Literal["stored", "duplicate", "conflict", "invalid"]
    reason: Optional[str] = Field(None, description="for conflict and invalid: why")


class BatchAnswer(BaseModel):
    batch: str
    results: list[Result] = Field(description="one per item, in request order, committed before the answer")


class Error(BaseModel):
    error: str = Field(description="what is wrong, in plain words")


class Health(BaseModel):
    ok: bool


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")
    hall: Optional[str]
    total: int
    events: dict[str, int]
    ratings: dict[str, int]
    conflicts: int
    invalid: int
    batches: int
    batch_posts: int
    halls: Optional[dict[str, int]] = Field(None, description="/v1/stats only: events per hall")


class Report(BaseModel):
    """The monthly report; API.md has every field."""
    model_config = ConfigDict(extra="allow")
    hall: str
    month: str
    tz: str
    events: int
    no_clock: int
    totals: dict
    windows: list[dict]
    staff: list[dict]
    bad: list[dict]
    days: list[dict]
    queues: list[dict] = Field([], description="排队叫号 per queue, with its days and hours (API.md)")


class HallMonth(BaseModel):
    model_config = ConfigDict(extra="allow")
    hall: str
    events: int
    services: int
    rated: int
    bad: int
    participation_pct: Optional[float]
    satisfaction_pct: Optional[float]


class Overview(BaseModel):
    model_config = ConfigDict(extra="allow")
    month: str
    tz: str
    halls: list[HallMonth]
    totals: dict


def errors(*codes):
    """OpenAPI `responses` for these error statuses: all are Error bodies."""
    text = {400: "bad request: the message says what", 401: "bad or missing token", 404: "no such resource",
            403: "this token may not take this step (an appeal is the county's to decide)",
            408: "the body did not arrive in time", 411: "no Content-Length", 413: "over a limit",
            415: "unsupported Content-Encoding", 503: "the database failed; nothing was committed; retry"}
    return {c: {"model": Error, "description": text[c]} for c in codes}
