"""Rating later by QR link (一事一评) in real headless Chromium at a phone's
size: the case's signed link from the hall's case list opens the county's
page, a 差评 with reasons opens a follow-up, the second rating is the 追评
(closing the answered follow-up), a third is refused; a forged link, or a
ticket link signed with another hall's key, is refused; a ticket link the
hall signs offline with its link key is taken."""
import hashlib
import hmac
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cdp import CHROMIUM, Browser
from tools.county.testing import CountyProc
from tools.procs import ROOT

HALL, TOKEN, MANAGER = "hall-a", "tok-" + "a" * 20, "mgr-" + "a" * 20
SYSTEM, SECRET = "sys-" + "s" * 20, "link-secret-" + "x" * 20
ARTEFACTS = os.path.join(ROOT, "build", "artefacts")

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is installed by make (tools/system-deps.sh)")


@pytest.fixture
def county(tmp_path):
    c = CountyProc(str(tmp_path / "county"), str(tmp_path / "county.db"), {HALL: TOKEN, "hall-b": "tok-" + "b" * 20},
                   extra=["--today", "2026-09-28", "--system-token", SYSTEM, "--link-secret", SECRET,
                          "--manager-token", "%s=%s" % (HALL, MANAGER)]).start()
    yield c
    c.stop()


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path / "chromium"))
    yield b
    b.close()


def post_form(url, form):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form, doseq=True).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rate_in_browser(browser, url, level, reasons=()):
    browser.goto(url)
    assert browser.eval("window.innerWidth") == 390
    # Phone-sized: nothing wider than the screen, buttons a thumb can hit.
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth")
    assert browser.eval("document.querySelector('button').getBoundingClientRect().width") > 300
    assert browser.eval("document.querySelectorAll('input[name=level]').length") == 5
    browser.eval("document.querySelector('input[value=%s]').click()" % level)
    for r in reasons:
        browser.eval("document.querySelector('input[name=reasons][value=%s]').click()" % r)
    browser.eval("document.querySelector('button').click()")
    return browser.wait("!document.querySelector('form') && document.body.innerText")


def test_a_case_rated_by_qr_on_a_phone(county, browser):
    st, got = county.call("POST", "/v1/halls/%s/cases" % HALL, SYSTEM, {"events": [
        {"id": "1", "case": "C-77", "type": "accepted", "date": "2026-09-21", "item": "431100-001",
         "window": "A01", "promised_days": 5}]})
    assert st == 200
    url = county.call("GET", "/v1/halls/%s/cases" % HALL, TOKEN)[1]["cases"][0]["rate_url"]
    assert url.startswith(county.url + "/r/hall-a/case/C-77/")

    browser.goto(url)
    assert browser.eval("document.querySelector('h1').innerText") == "请您评价"
    browser.screenshot(os.path.join(ARTEFACTS, "qr-rating.png"))
    assert "感谢您的评价" in rate_in_browser(browser, url, "dissatisfied", ["attitude", "wait"])

    # The 差评 opened a follow-up, with the case's item and window and the reasons chosen.
    st, f = county.call("GET", "/v1/halls/%s/followups/q:case:C-77" % HALL, MANAGER)
    assert st == 200, f
    assert (f["state"], f["level"], f["item"], f["window"], f["case"], f["reasons"]) == (
        "pending", "dissatisfied", "431100-001", "A01", "C-77", ["attitude", "wait"])
    for to in ("rectifying", "rectified", "answered"):
        assert county.call("POST", "/v1/halls/%s/followups/q:case:C-77/steps" % HALL, MANAGER,
                           {"to": to, "who": "王五", "note": to})[0] == 200

    # The second rating is the 追评; it closes the answered follow-up.
    browser.goto(url)
    assert browser.eval("document.querySelector('h1').innerText") == "追评"
    assert "感谢您的追评" in rate_in_browser(browser, url, "satisfied")
    f = county.call("GET", "/v1/halls/%s/followups/q:case:C-77" % HALL, MANAGER)[1]
    assert (f["state"], f["closed"], f["steps"][-1]["level"], f["steps"][-1]["who"]) == (
        "followed_up", True, "satisfied", "citizen (qr)")

    # Spent: a third rating is refused, in the browser and by a plain POST.
    browser.goto(url)
    assert browser.eval("document.querySelector('h1').innerText") == "已评价"
    assert post_form(url, {"level": "very_satisfied"})[0] == 409


def test_forged_and_foreign_links_are_refused(county):
    base = county.url + "/r/hall-a/ticket/"
    key = bytes.fromhex(county.call("GET", "/v1/halls/%s/link-key" % HALL, TOKEN)[1]["key"])
    sig = hmac.new(key, b"ticket:A017", hashlib.sha256).digest()[:16].hex()
    # The hall signed it offline with its key: the county takes it.
    st, body = post_form(base + "A017/" + sig, {"level": "very_satisfied"})
    assert st == 200 and "感谢您的评价" in body
    forged = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert post_form(base + "A018/" + forged, {"level": "very_satisfied"})[0] == 404
    assert post_form(base + "A018/" + sig, {"level": "very_satisfied"})[0] == 404        # another id
    other = bytes.fromhex(county.call("GET", "/v1/halls/hall-b/link-key", "tok-" + "b" * 20)[1]["key"])
    theirs = hmac.new(other, b"ticket:A019", hashlib.sha256).digest()[:16].hex()
    assert post_form(base + "A019/" + theirs, {"level": "very_satisfied"})[0] == 404     # hall-b's key
    assert post_form(county.url + "/r/hall-a/bogus/A017/" + sig, {"level": "satisfied"})[0] == 404
    assert post_form(base + "A017/" + sig, {"level": "nope"})[0] == 400
