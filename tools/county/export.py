"""Rating records exported upward (to the provincial 好差评 platform): every
rating of a hall's month - a device's, one taken by QR link (with its 追评),
and the system defaults - as a record of the province profile's interface:
field names, level codes, channel codes, 评价次数, time format, all from
the profile's `export` mapping (data/profiles/<name>.json). Levels stay
names inside the county; numbers appear only here, because the national
standard (GB/T 39046-2020 App. A.8: 1 = 非常满意) and provinces (1 = 非常不满意)
number them in opposite directions.

JSON lines (one record a line) or CSV (UTF-8 with BOM, one column per field).
A record has no rater: the county never had one.
"""
import csv
import datetime
import io
import json

from tools.county import tables
from tools.county.errors import CountyError

ORDER = ("case", "item", "channel_code", "time", "number", "level_name", "level_code", "reasons", "text",
         "region", "staff")


class ExportError(CountyError):
    """A rating the profile's mapping cannot express (say, a channel without a code)."""


def ratings(store, hall, start_ms, end_ms):
    """The month's ratings as the county knows them: dicts of case, item,
    level, channel, number (1, or 2 for a 追评), t, reasons, staff."""
    out = []
    with tables.read(store) as db:
        got = tables.rows(db, store, 'SELECT t, received_ms, level, channel, item, "case", staff, session, body '
                                     "FROM events WHERE hall = ? AND kind = 'rating' AND ((t >= ? AND t < ?) "
                                     "OR (t = 0 AND received_ms >= ? AND received_ms < ?)) ORDER BY t, device, seq",
                          (hall, start_ms, end_ms, start_ms, end_ms))
        for t, received, level, channel, item, case, staff, session, body in got:
            out.append({"case": case or "%s-%s" % (hall, session), "item": item, "level": level, "channel": channel,
                        "number": 1, "t": t or received, "reasons": json.loads(body).get("reasons") or [],
                        "staff": staff})
        got = tables.rows(db, store, 'SELECT kind, ref, n, level, channel, reasons, t, item, "case", staff '
                                     "FROM county_ratings WHERE hall = ? AND t >= ? AND t < ? ORDER BY t, kind, ref, n",
                          (hall, start_ms, end_ms))
        for kind, ref, n, level, channel, reasons, t, item, case, staff in got:
            out.append({"case": case or "%s-%s" % (hall, ref), "item": item, "level": level, "channel": channel,
                        "number": n, "t": t, "reasons": json.loads(reasons), "staff": staff})
    out.sort(key=lambda r: r["t"])
    return out


def record(rating, profile, region, zone):
    """One rating -> the profile's record (its field names, codes and time format)."""
    m = profile["export"]
    if rating["channel"] not in m["channels"]:
        raise ExportError("profile %s has no code for channel %s (case %s)" % (profile["name"], rating["channel"],
                                                                              rating["case"]))
    when = datetime.datetime.fromtimestamp(rating["t"] / 1000, zone)
    values = {
        "case": rating["case"], "item": rating["item"], "channel_code": m["channels"][rating["channel"]],
        "time": when.strftime(m["time_format"]), "number": m["numbers"][str(rating["number"])],
        "level_name": m.get("level_names", {}).get(rating["level"]), "level_code": m["levels"][rating["level"]],
        "reasons": list(rating["reasons"]), "text": None, "region": region, "staff": rating["staff"],
    }
    return {m["fields"][k]: values[k] for k in ORDER if k in m["fields"] and values[k] is not None}


def records(store, profile, hall, start_ms, end_ms, region, zone):
    return [record(r, profile, region, zone) for r in ratings(store, hall, start_ms, end_ms)]


def jsonl(recs):
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in recs)


def to_csv(recs, profile):
    fields = profile["export"]["fields"]
    header = [fields[k] for k in ORDER if k in fields]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in recs:
        w.writerow([";".join(r[h]) if isinstance(r.get(h), list) else r.get(h, "") for h in header])
    return buf.getvalue()
