"""Error types.

Every error a user can cause derives from `OrunError`; its message is written for the
user (the CLI prints it as `error: <message>`, the server returns it as JSON). Code
never calls `sys.exit` outside `orun.cli`.
"""

from __future__ import annotations


class OrunError(Exception):
    """Root of orun's user-facing errors. `status` is the HTTP status the API uses."""

    status: int = 400
    #: supporting text shown after the message (a build or container log tail)
    detail: str = ""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigError(OrunError):
    """The configuration is invalid; `problems` lists each one with its key path."""

    def __init__(self, problems: list[str], *, source: str = "config") -> None:
        self.problems = list(problems)
        head = f"invalid {source}: " if len(problems) == 1 else f"invalid {source}:\n  "
        super().__init__(head + "\n  ".join(problems))


class SourceError(OrunError):
    """A source could not be read or fetched (missing path, git failure, bad URL)."""


class SpecError(OrunError):
    """A spec is unknown or malformed, or a param value does not fit its spec."""


class AppPathError(OrunError):
    """An app path or glob is malformed, reserved or already taken."""


class NotFoundError(OrunError):
    """The named app (or other object) does not exist."""

    status = 404


class BuildError(OrunError):
    """An image could not be built; `log_tail` holds the last lines of the build log."""

    status = 500

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.detail = log_tail


class ContainerConfigError(OrunError):
    """A container option, volume or port setting is invalid or not allowed."""


class EngineError(OrunError):
    """The container engine is missing, unreachable, or refused an operation."""

    status = 503
