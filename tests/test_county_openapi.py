"""schemathesis against the live county server, from the server's own
/openapi.json: valid and invalid requests generated for every operation,
with the hall's (or the county's) token. No answer is a 5xx; every 4xx is a
JSON error with a message; a refused request stores nothing; answers match
the documented statuses, content types and schemas. Bounded to a few dozen
examples per operation so that it takes well under a minute."""
import re
import sqlite3

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as oas

from tools.county.testing import COUNTY_TOKEN, CountyProc

HALL, TOKEN = "hall-a", "tok-" + "a" * 20
HALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
EXAMPLES = 60
COUNTY_WIDE = ("/v1/stats", "/v1/county/report", "/county")


def negative_data_rejected(ctx, response, case):
    # 413 is a rejection too (schemathesis's default list leaves it out): an
    # invalid batch can also be over the documented 10,000 events or 8 MiB.
    if response.status_code == 413:
        return None
    return oas.negative_data_rejection(ctx, response, case)


CHECKS = [schemathesis.checks.not_a_server_error, oas.status_code_conformance, oas.content_type_conformance,
          oas.response_schema_conformance, negative_data_rejected]


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    work = tmp_path_factory.mktemp("county-openapi")
    c = CountyProc(str(work), str(work / "county.db"), {HALL: TOKEN}, extra=["--log-level", "WARNING"]).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api(county):
    return schemathesis.openapi.from_url(county.url + "/openapi.json")


def operations():
    """Every operation the server describes (read in-process at collection)."""
    from tools.county.app import County, make_app
    doc = make_app(County(None, {})).openapi()
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            out.append(pytest.param(path, method.upper(), GenerationMode.POSITIVE, id="%s %s" % (method, path)))
            if op.get("parameters") or op.get("requestBody"):       # else nothing can be made invalid
                out.append(pytest.param(path, method.upper(), GenerationMode.NEGATIVE,
                                        id="%s %s invalid" % (method, path)))
    return out


def stored(county):
    """Everything a request could have left in the store."""
    db = sqlite3.connect("file:%s?mode=ro" % county.db, uri=True)
    try:
        return db.execute("SELECT coalesce(sum(value), 0) FROM counters").fetchone()[0]
    finally:
        db.close()


def aim(case):
    """Point a generated request at the hall that exists: a valid hall id
    replaced by another valid one keeps a negative case negative."""
    if HALL_ID.match(str((case.path_parameters or {}).get("hall", ""))):
        case.path_parameters["hall"] = HALL
    if isinstance(case.body, dict) and isinstance(case.body.get("hall"), str):
        case.body["hall"] = HALL


@pytest.mark.parametrize("path, method, mode", operations())
def test_the_api_keeps_its_own_description(county, api, path, method, mode):
    strategy = api[path][method].as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def one(case):
        aim(case)
        token = COUNTY_TOKEN if case.path in COUNTY_WIDE else TOKEN
        before = stored(county)
        response = case.call(headers={"Authorization": "Bearer " + token}, timeout=30)
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            assert response.status_code < 500, response.text
            error = response.json().get("error")
            assert isinstance(error, str) and len(error) > 5, response.text
            assert stored(county) == before, "a refused request stored something: %s" % response.text
    one()
