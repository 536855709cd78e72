"""Province profiles (data/profiles/<name>.json): what differs from one
province to the next and is policy, not code - when a case light turns
yellow, each follow-up stage's deadline in working days, the default-rating
rule, and the export mapping (level and channel codes, field names, time
format). The county runs under one profile (`county-server run --profile`).
"""
import json
import os

from protocol.rules import reason_categories
from tools.county.errors import CountyError

DATA = os.path.join(os.path.dirname(__file__), "data", "profiles")
DEFAULT = "national"


def names():
    return sorted(f[:-5] for f in os.listdir(DATA) if f.endswith(".json") and not f.endswith(".schema.json"))


def load(name=DEFAULT):
    if name not in names():
        raise CountyError("unknown profile %r (known: %s)" % (name, ", ".join(names())))
    with open(os.path.join(DATA, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def schema(name):
    """The JSON Schema an exported record of this profile must meet."""
    with open(os.path.join(DATA, name + ".schema.json"), encoding="utf-8") as f:
        return json.load(f)


def reasons():
    """The 差评 reason categories: [{code, zh, short}], from protocol/reasons.json,
    the one file the agent's reason screens are made from too."""
    return reason_categories()


class Rules:
    """What the county's deadlines and figures go by: its profile, the
    holiday calendar, and what day it is in the profile's time zone
    (`today` fixes the day: a test hook, county-server run --today)."""

    def __init__(self, name=DEFAULT, calendar=None, today=None):
        import datetime
        from zoneinfo import ZoneInfo
        from tools.county.workdays import CALENDAR
        self.name = name
        self.profile = load(name)
        self.calendar = calendar or CALENDAR
        self.zone = ZoneInfo(self.profile["tz"])
        self._today = today
        self._datetime = datetime

    def today(self):
        return self._today or self._datetime.datetime.now(self.zone).date()

    def deadline_days(self, workflow, state):
        """Working days allowed in `state` of `workflow`, or None (no deadline)."""
        return self.profile["workflows"].get(workflow, {}).get(state)
