"""Connection information and the environment variables a reference injects (pure, no I/O).

Mirrors Aspire: ``ConnectionStrings__{name}`` plus ``{NAME}_HOST``, ``{NAME}_PORT``,
``{NAME}_PASSWORD`` (only when there is one) and ``{NAME}_URI``.
"""

from __future__ import annotations

import attrs

from ..connection_strings import RedisConnectionOptions
from ..connection_strings import RedisEndpoint as _Endpoint
from .names import env_prefix


@attrs.frozen
class RedisEndpoint:
    """Where and how a consumer reaches one Redis server."""

    host: str
    port: int | None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    #: A connection string given by the source (Azure's outputs), used as is.
    fixed_connection_string: str | None = attrs.field(default=None, repr=False)

    def _options(self) -> RedisConnectionOptions:
        """The endpoint as connection options (an empty password is no password)."""
        return RedisConnectionOptions(
            (_Endpoint(self.host, self.port),),
            password=self.password or None,
            ssl=True if self.tls else None,
        )

    def connection_string(self) -> str:
        """The StackExchange.Redis connection string (``host:port,password=…[,ssl=true]``)."""
        if self.fixed_connection_string is not None:
            return self.fixed_connection_string
        return self._options().render()

    def uri(self) -> str:
        """The ``redis://`` (or ``rediss://``) URI with the password URL-encoded."""
        return self._options().render_uri()

    def environment(self, connection_name: str) -> dict[str, str]:
        """The variables injected into a consumer that references this endpoint."""
        prefix = env_prefix(connection_name)
        port = _Endpoint(self.host, self.port).resolved_port(self.tls)
        env = {
            f"ConnectionStrings__{connection_name}": self.connection_string(),
            f"{prefix}_HOST": self.host,
            f"{prefix}_PORT": str(port),
            f"{prefix}_URI": self.uri(),
        }
        if self.password:
            env[f"{prefix}_PASSWORD"] = self.password
        return env


def connection_string_environment(connection_name: str, value: str) -> dict[str, str]:
    """The variables injected for a plain connection-string resource."""
    return {f"ConnectionStrings__{connection_name}": value}


def service_environment(name: str, url: str) -> dict[str, str]:
    """The service-discovery variable injected for a referenced HTTP endpoint (Aspire's form)."""
    return {f"services__{name}__http__0": url}
