class ProtocolError(ValueError):
    """Every way a message can be refused. `code` is machine-readable and
    listed in SPEC.md; the agent counts quarantined messages by it."""

    def __init__(self, code, detail=""):
        super().__init__(code if not detail else code + ": " + detail)
        self.code = code
        self.detail = detail
