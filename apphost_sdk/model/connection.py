"""Connection information and the environment variables a reference injects (pure, no I/O).

Mirrors Aspire: ``ConnectionStrings__{name}`` plus ``{NAME}_HOST``, ``{NAME}_PORT``,
``{NAME}_PASSWORD`` (only when there is one) and ``{NAME}_URI``.
"""

from __future__ import annotations

from urllib.parse import quote

import attrs

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

    @property
    def _host_for_port(self) -> str:
        """The host as written before ``:port`` (an IPv6 address in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def _port(self) -> int:
        """The port, or StackExchange.Redis's default: 6380 with TLS, else 6379."""
        return self.port if self.port is not None else (6380 if self.tls else 6379)

    def connection_string(self) -> str:
        """The StackExchange.Redis connection string (``host:port,password=…[,ssl=true]``).

        Rendered here rather than by ``connection_strings`` (the service side's full parser),
        whose import would cost the app host tens of milliseconds at every start.
        """
        if self.fixed_connection_string is not None:
            return self.fixed_connection_string
        out = self.host if self.port is None else f"{self._host_for_port}:{self.port}"
        if self.password:
            out += f",password={self.password}"
        if self.tls:
            out += ",ssl=true"
        return out

    def uri(self) -> str:
        """The ``redis://`` (or ``rediss://``) URI with the password URL-encoded."""
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{self._host_for_port}:{self._port}"

    def environment(self, connection_name: str) -> dict[str, str]:
        """The variables injected into a consumer that references this endpoint."""
        prefix = env_prefix(connection_name)
        port = self._port
        env = {
            f"ConnectionStrings__{connection_name}": self.connection_string(),
            f"{prefix}_HOST": self.host,
            f"{prefix}_PORT": str(port),
            f"{prefix}_URI": self.uri(),
        }
        if self.password:
            env[f"{prefix}_PASSWORD"] = self.password
        return env
