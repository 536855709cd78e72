class CountyError(RuntimeError):
    """Every failure the county server reports to its operator: one line,
    exit 1 (a bad --db, an unreachable database, a bad token spec)."""


class StoreError(CountyError):
    """The store could not commit or read; the client should retry later."""
