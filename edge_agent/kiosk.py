"""The self-service kiosk's requests (protocol SPEC 'Requests'): a case's
state from the cache (edge_agent/cases.py), and print jobs rendered here
(edge_agent/slips.py) and fetched by the kiosk in chunks.

    Kiosk(cfg).register(requests)

`case` and `print` answer only while the cache is fresh ([kiosk]
cases_fresh_s): past it the kiosk hears `offline` and says it cannot look
the case up now. A print job belongs to the device that asked: another
device asking for its chunks hears `unknown_job`, as if it did not exist.
A job id is never given out twice (reprinting is a new job); once the
kiosk's `print` event for a job is stored its chunks are no longer served
(`job_done`), and [kiosk] job_keep_s after it was made its bytes are gone.
"""
import base64
import hashlib
import math
import os
import secrets
import threading

from protocol import check_field
from edge_agent import cases, slips
from edge_agent.requests import RequestRefused
from edge_agent.store import now_ms

# Raw bytes per chunk: 2,048 characters of base64 in a sealed reply of about
# 2.2 KB, well under the 4,096 bytes a device reads per MQTT packet.
CHUNK = 1536


class Kiosk:
    def __init__(self, cfg):
        self.hall = cfg["hall"]
        self.fresh_ms = int(cfg["kiosk"]["cases_fresh_s"] * 1000)
        self.cache_dir = os.path.join(os.path.dirname(os.path.abspath(cfg["store"]["path"])), "escpos")
        self._warmed = False

    def register(self, requests):
        requests.handle("case", self.case)
        requests.handle("print", self.print)
        requests.handle("chunk", self.chunk)
        return self

    def _fresh_case(self, store, msg):
        case = check_field("rating", "case", msg.get("case"))      # bad_type / bad_value
        as_of = cases.cached_as_of(store)
        if as_of is None or now_ms() - as_of > self.fresh_ms:
            raise RequestRefused("offline")
        row = store.cases.get(case)
        if row is None:
            raise RequestRefused("unknown_case")
        return row, as_of

    def case(self, store, device, msg):
        """{"op":"case","case":C} -> the case as the county last listed it."""
        if not self._warmed:        # a kiosk is here: a print request may follow
            self._warmed = True
            threading.Thread(target=slips.warm, args=(self.cache_dir,), name="escpos-warm", daemon=True).start()
        row, as_of = self._fresh_case(store, msg)
        return {"case": row["case"], "state": row["state"], "item_name": row["item_name"],
                "promised": row["promised"], "light": row["light"], "rate_url": row["rate_url"], "as_of": as_of}

    def print(self, store, device, msg):
        """{"op":"print","doc":D,"case":C} -> a new job: {job, size, sha, chunks}."""
        doc = msg.get("doc")
        if type(doc) is not str or doc not in slips.DOCS:
            raise RequestRefused("unknown_doc")
        row, as_of = self._fresh_case(store, msg)
        now = now_ms()
        job = "%x-%s" % (now, secrets.token_hex(6))
        data = slips.render(doc, row, self.hall, as_of, now, self.cache_dir, job=job)
        sha = hashlib.sha256(data).hexdigest()
        store.print_jobs.add(job, device["device"], doc, row["case"], data, sha, now)
        return {"job": job, "size": len(data), "sha": sha, "chunks": math.ceil(len(data) / CHUNK)}

    def chunk(self, store, device, msg):
        """{"op":"chunk","job":J,"i":i} -> {job, i, data}: bytes [i*CHUNK, (i+1)*CHUNK) in base64."""
        job, i = msg.get("job"), msg.get("i")
        if type(job) is not str or not 0 < len(job) <= 64:
            raise RequestRefused("unknown_job")
        found = store.print_jobs.get(job, device["device"])
        if found is None:
            raise RequestRefused("unknown_job")
        if found["done_ms"] is not None:
            raise RequestRefused("job_done")
        data = found["data"]
        if type(i) is not int or not 0 <= i < math.ceil(len(data) / CHUNK):
            raise RequestRefused("bad_chunk")
        return {"job": job, "i": i, "data": base64.b64encode(data[i * CHUNK:(i + 1) * CHUNK]).decode()}


def purge_jobs(store, keep_s):
    """Delete print jobs made over keep_s ago; returns how many."""
    with store.atomic():
        return store.print_jobs.purge(now_ms() - keep_s * 1000)
