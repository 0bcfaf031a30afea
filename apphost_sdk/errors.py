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


class ModelArgumentError(ApphostError, TypeError):
    """A builder or resource method got an argument of the wrong type.

    The message names the call (``cache.with_host_port``), the argument's type and the fix. It
    is a ``TypeError`` too, so ``except TypeError`` still catches it.
    """


class ModelValueError(ApphostError, ValueError):
    """A builder or resource method got an argument of the right type but a wrong value.

    The message names the call, the value (never a secret one) and the fix. It is a
    ``ValueError`` too, so ``except ValueError`` still catches it.
    """
