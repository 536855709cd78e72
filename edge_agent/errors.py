"""One failure type per layer. Everything the agent refuses to do for a
user-facing reason is an AgentError; the CLI prints it as one line."""


class AgentError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class ConfigError(AgentError):
    """The config file is missing, unreadable or wrong."""


class RegistryError(AgentError):
    """A devices/windows command cannot be done (unknown device, ...)."""
