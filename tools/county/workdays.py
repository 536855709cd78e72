"""Working days (工作日) from the published holiday schedule, kept as data:
data/calendar/<year>.json holds the year's public holidays and make-up
working days (调休), with the notice it was copied from.

A year without a file is refused (NoCalendar), never guessed: the State
Council publishes the next year's schedule around November, and until then
nobody knows which weekend will be worked.

One rule for every deadline the county keeps (case lights, follow-up
stages): "N working days from day D" is over once more than N working days
have passed after D, so a deadline that ends on a Friday is overdue on the
next working day - a Monday, or a 调休 Saturday.
"""
import datetime
import json
import os

from tools.county.errors import CountyError

DATA = os.path.join(os.path.dirname(__file__), "data", "calendar")


class NoCalendar(CountyError, ValueError):
    """A date in a year whose holiday schedule the county does not have."""


class Calendar:
    def __init__(self, folder=DATA):
        self.folder = folder
        self._years = {}

    def year(self, y):
        """{date: True (worked) / False (off)} for the days that differ from Mon-Fri."""
        if y not in self._years:
            path = os.path.join(self.folder, "%d.json" % y)
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
            except FileNotFoundError:
                raise NoCalendar("no holiday schedule for %d (tools/county/data/calendar/%d.json): working days "
                                 "in %d are not known until the State Council publishes that year's holiday "
                                 "notice; add the file from it" % (y, y, y))
            if doc.get("year") != y or not doc.get("source"):
                raise NoCalendar("%s: expected year %d and the notice it comes from (source)" % (path, y))
            days = {}
            for worked, part in ((False, "holidays"), (True, "workdays")):
                for dates in doc.get(part, {}).values():
                    for d in dates:
                        days[datetime.date.fromisoformat(d)] = worked
            self._years[y] = days
        return self._years[y]

    def source(self, y):
        self.year(y)
        with open(os.path.join(self.folder, "%d.json" % y), encoding="utf-8") as f:
            return json.load(f)["source"]

    def is_workday(self, day):
        special = self.year(day.year).get(day)
        return special if special is not None else day.weekday() < 5

    def elapsed(self, start, end):
        """Working days in (start, end]: 0 when end <= start."""
        n, day = 0, start
        while day < end:
            day += datetime.timedelta(days=1)
            n += self.is_workday(day)
        return n

    def add(self, start, n):
        """The date on which n working days after `start` have passed (start itself when n = 0)."""
        day = start
        while n > 0:
            day += datetime.timedelta(days=1)
            n -= self.is_workday(day)
        return day

    def overdue(self, start, days, today):
        """Has a deadline of `days` working days from `start` passed by `today`?"""
        return self.elapsed(start, today) > days


CALENDAR = Calendar()
