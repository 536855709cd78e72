"""Who may ask what. Four kinds of secret:

- a hall's uplink token (its edge agent): posts batches, reads the hall's
  cases, 红黄牌 cards and rating-link key;
- a hall manager's token: reads that hall's reports and stats and updates
  its follow-ups (差评, 办不成事). The uplink token never reads them: it lives
  on the hall's Pi, and a stolen Pi must not read who rated whom;
- a business system's token: posts case events for any hall;
- the county token: reads every hall, approves appeals, posts cases.

Programs send `Authorization: Bearer <token>`. People open the report pages
in a browser, which asks for a user name and password (HTTP Basic): the user
is the hall id (or `county`), the password its token. Both compare in
constant time.
"""
import base64
import binascii
import hmac

COUNTY_USER = "county"


class Tokens:
    def __init__(self, halls, county=None, managers=None, systems=()):
        self.halls = dict(halls)        # hall -> bearer token
        self.county = county
        self.managers = dict(managers or {})    # hall -> the hall manager's token
        self.systems = list(systems)            # business systems' tokens (case events)

    def hall(self, hall, header):
        """May this Authorization header act for `hall`?"""
        return _same(self.halls.get(hall), _secret(header, hall))

    def county_wide(self, header):
        return _same(self.county, _secret(header, COUNTY_USER))

    def hall_or_county(self, hall, header):
        return self.hall(hall, header) or self.county_wide(header)

    def manager(self, hall, header):
        return _same(self.managers.get(hall), _secret(header, hall))

    def reads_reports(self, hall, header):
        """A hall's reports, stats and follow-ups: its manager or the county."""
        return self.manager(hall, header) or self.county_wide(header)

    def hall_device(self, hall, header):
        """What the hall's own systems read (cases, cards): uplink, manager or county."""
        return self.hall(hall, header) or self.reads_reports(hall, header)

    def system(self, header):
        """May post case events: a business system or the county."""
        secret = _secret(header, "system")
        return any(_same(t, secret) for t in self.systems) or self.county_wide(header)


def _secret(header, user):
    """The token in a Bearer header, or the password of a Basic header whose
    user is `user`; None otherwise."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            name, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password if sep and name == user else None
    return None


def _same(want, got):
    if not want or got is None:
        return False
    return hmac.compare_digest(got.encode("utf-8", "surrogatepass"), want.encode())
