"""Exceptions raised by apphost-sdk.

Every error names the thing to fix; none carries a secret value in its message.
"""

from __future__ import annotations


class ApphostError(Exception):
    """Base class for every error this SDK raises on purpose."""


class ConfigurationError(ApphostError):
    """A configuration value is missing or malformed; the message names the key."""


class ValidationError(ApphostError):
    """The application model is invalid; raised by ``builder.build()`` before anything starts."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = "the application model has {} problems:\n{}".format(
                len(self.problems), "\n".join(f"  - {p}" for p in self.problems)
            )
        super().__init__(message)


class RuntimeUnavailableError(ApphostError):
    """A requested container runtime (engine or redis-server binary) cannot be used."""


class ResourceStartError(ApphostError):
    """A resource failed to start; the message names the resource and its last log lines."""


class ImageUnavailableError(ApphostError):
    """A container image is neither local nor pullable."""
