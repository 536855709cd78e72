"""Who may ask what: a hall's token for its own batches, report and stats;
the county token for counts across halls and the county overview.

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
    def __init__(self, halls, county=None):
        self.halls = dict(halls)        # hall -> bearer token
        self.county = county

    def hall(self, hall, header):
        """May this Authorization header act for `hall`?"""
        return _same(self.halls.get(hall), _secret(header, hall))

    def county_wide(self, header):
        return _same(self.county, _secret(header, COUNTY_USER))

    def hall_or_county(self, hall, header):
        return self.hall(hall, header) or self.county_wide(header)


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
