"""StackExchange.Redis connection strings and ``redis://`` URLs, parsed and rendered.

What the app host injects as ``ConnectionStrings__{name}`` is a StackExchange.Redis string
(``host:port,password=...,ssl=true``). ``RedisConnectionOptions.parse`` reads it (or a
``redis://`` / ``rediss://`` URL), ``render`` writes it back, and ``to_redis_kwargs`` maps it to
redis-py arguments. Passwords never appear in ``repr``, errors or logs.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

from .configuration import parse_bool
from .errors import ConfigurationError

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["RedisConnectionOptions", "RedisEndpoint", "is_azure_redis_host"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 6379
DEFAULT_TLS_PORT = 6380
AZURE_REDIS_SUFFIXES = (".redis.cache.windows.net", ".redis.azure.net")


def is_azure_redis_host(host: str) -> bool:
    """Whether ``host`` is an Azure Cache for Redis / Azure Managed Redis endpoint."""
    return host.rstrip(".").casefold().endswith(AZURE_REDIS_SUFFIXES)


def _redact(value: object) -> str:
    return "None" if value is None else "'***'"


_WHERE = "the Redis connection string"
_AN_ENDPOINT = f"an endpoint of {_WHERE}"
#: An integer as StackExchange.Redis reads one: ASCII digits with an optional sign (Python's
#: ``int()`` would also take ``1_000`` and non-ASCII digits).
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT32_MAX = 2**31 - 1
#: Characters no host name or address holds (a URL's delimiters, whitespace is checked apart).
_NOT_IN_HOST = frozenset("/\\@?#[]%,=;")


def _strict_int(text: str) -> int | None:
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _host_problem(host: str) -> str | None:
    """Why ``host`` is no host name, IPv4 or IPv6 address (never echoing it: in a connection
    string a piece of a password with a comma may land here)."""
    if not host:
        return "has no host"
    if ":" in host:
        if _is_ipv6(host):
            return None
        return (
            "is malformed: expected host, host:port, [IPv6] or [IPv6]:port, and a host with "
            "more than one ':' must be an IPv6 address"
        )
    if any(ch.isspace() or ch in _NOT_IN_HOST or not ch.isprintable() for ch in host):
        return "has a host with whitespace, control characters or one of / \\ @ ? # [ ] % , = ;"
    return None


def _port_problem(port: int) -> str | None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return "has a port out of range (1 to 65535)"
    return None


@attrs.frozen
class RedisEndpoint:
    """One ``host[:port]`` endpoint; ``port`` is None when the string gave none.

    ``host`` is a host name, an IPv4 address or an IPv6 address (without brackets); ``port``
    is 1 to 65535. Anything else is a ``ConfigurationError``.
    """

    host: str
    port: int | None = None

    def __attrs_post_init__(self) -> None:
        problem = _host_problem(self.host) if isinstance(self.host, str) else "has no host"
        if problem is None and self.port is not None:
            problem = _port_problem(self.port)
        if problem is not None:
            raise ConfigurationError(f"an endpoint of {_WHERE} {problem}")

    def resolved_port(self, tls: bool) -> int:
        """The port to dial: the explicit one, else 6380 with TLS and 6379 without."""
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if tls else DEFAULT_PORT

    def render(self) -> str:
        """Render as StackExchange.Redis writes it (IPv6 hosts in brackets when a port follows)."""
        host = f"[{self.host}]" if ":" in self.host and self.port is not None else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @classmethod
    def parse(cls, token: str, where: str = _AN_ENDPOINT) -> RedisEndpoint:
        """Parse ``host``, ``host:port``, ``[ipv6]``, ``[ipv6]:port`` or a bare IPv6 address.

        ``where`` names the endpoint in errors (``"the endpoint in item 2 of ..."``); the token
        itself is never echoed, as it may be a piece of a password that held a comma.
        """
        token = token.strip()
        if token.startswith("["):
            close = token.find("]")
            if close < 0:
                raise ConfigurationError(f"{where} has an unclosed '['")
            host, rest = token[1:close], token[close + 1 :]
            if not _is_ipv6(host):
                raise ConfigurationError(
                    f"{where} is malformed: only an IPv6 address goes in brackets"
                )
            if not rest:
                return cls._checked(where, host, None)
            if not rest.startswith(":"):
                raise ConfigurationError(f"{where} is malformed (expected host:port)")
            return cls._checked(where, host, _parse_port(rest[1:], where))
        if token.count(":") == 1:
            host, port = token.split(":")
            return cls._checked(where, host, _parse_port(port, where))
        return cls._checked(where, token, None)  # a bare host, or an IPv6 address without a port

    @classmethod
    def _checked(cls, where: str, host: str, port: int | None) -> RedisEndpoint:
        problem = _host_problem(host)
        if problem is not None:
            raise ConfigurationError(f"{where} {problem}")
        return cls(host, port)


def _parse_port(text: str, where: str = _AN_ENDPOINT) -> int:
    port = _strict_int(text)
    if port is None:
        raise ConfigurationError(
            f"{where} has a port that is not a number "
            "(expected host:port; a password with a comma cannot be written in this format)"
        )
    problem = _port_problem(port)
    if problem is not None:
        raise ConfigurationError(f"{where} {problem}")
    return port


# --- value kinds --------------------------------------------------------------------------


def _to_str(_key: str, raw: str) -> str:
    return raw


def _to_bool(key: str, raw: str) -> bool:
    value = parse_bool(raw)
    if value is None:
        raise ConfigurationError(
            f"connection string key {key} must be true/false, 1/0, yes/no or on/off"
        )
    return value


@attrs.frozen
class _IntRange:
    """A whole-number key and the values it may take; what StackExchange.Redis or redis-py
    would refuse only when connecting is refused here, naming the key (never the value)."""

    low: int
    high: int
    unit: str

    def __call__(self, key: str, raw: str) -> int:
        value = _strict_int(raw)
        if value is None:
            raise ConfigurationError(f"connection string key {key} must be a whole number")
        self.check(key, value)
        return value

    def check(self, key: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"connection string key {key} must be a whole number")
        if not self.low <= value <= self.high:
            raise ConfigurationError(
                f"connection string key {key} is out of range: it must be from {self.low} to "
                f"{self.high}{self.unit}"
            )


#: Milliseconds (0 keeps the default of 5000).
_MILLISECONDS = _IntRange(0, _INT32_MAX, " milliseconds (0 for the default)")
_COUNT = _IntRange(0, _INT32_MAX, "")
#: Seconds of idle time before TCP keep-alive probes; Linux takes at most 32767 (-1 and 0
#: leave the system default, as -1 does in .NET).
_KEEP_ALIVE = _IntRange(-1, 32767, " seconds")


def _to_protocol(key: str, raw: str) -> int:
    low = raw.strip().casefold()
    if low in {"resp2", "2"}:
        return 2
    if low in {"resp3", "3"}:
        return 3
    raise ConfigurationError(f"connection string key {key} must be resp2 or resp3")


def _render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# canonical key (as rendered) -> (attribute, converter, has a redis-py meaning)
_Converter = Callable[[str, str], object]
_KEYS: dict[str, tuple[str, _Converter, bool]] = {
    "password": ("password", _to_str, True),
    "user": ("user", _to_str, True),
    "ssl": ("ssl", _to_bool, True),
    "sslHost": ("ssl_host", _to_str, False),
    "sslProtocols": ("ssl_protocols", _to_str, True),
    "abortConnect": ("abort_connect", _to_bool, True),
    "connectTimeout": ("connect_timeout", _MILLISECONDS, True),
    "syncTimeout": ("sync_timeout", _MILLISECONDS, True),
    "asyncTimeout": ("async_timeout", _MILLISECONDS, True),
    "connectRetry": ("connect_retry", _COUNT, True),
    "defaultDatabase": ("default_database", _COUNT, True),
    "name": ("name", _to_str, True),
    "keepAlive": ("keep_alive", _KEEP_ALIVE, True),
    "serviceName": ("service_name", _to_str, True),
    "protocol": ("protocol", _to_protocol, True),
    "allowAdmin": ("allow_admin", _to_bool, False),
    "tiebreaker": ("tiebreaker", _to_str, False),
    "configChannel": ("config_channel", _to_str, False),
    "version": ("version", _to_str, False),
    "proxy": ("proxy", _to_str, False),
    "resolveDns": ("resolve_dns", _to_bool, False),
    "checkCertificateRevocation": ("check_certificate_revocation", _to_bool, False),
    "setlib": ("setlib", _to_bool, True),
    "highIntegrity": ("high_integrity", _to_bool, False),
    "tunnel": ("tunnel", _to_str, False),
    "configCheckSeconds": ("config_check_seconds", _IntRange(0, _INT32_MAX, " seconds"), False),
    "responseTimeout": ("response_timeout", _MILLISECONDS, False),
    "writeBuffer": ("write_buffer", _IntRange(0, _INT32_MAX, " bytes"), False),
    "channelPrefix": ("channel_prefix", _to_str, False),
    "ignoreUnknown": ("ignore_unknown", _to_bool, True),
}
_BY_FOLDED = {k.casefold(): k for k in _KEYS}

# .NET ConfigurationOptions property names (as bound from configuration sections) -> keys.
_PROPERTY_ALIASES = {
    "abortonconnectfail": "abortConnect",
    "clientname": "name",
    "sslprotocols": "sslProtocols",
    "checkcertificaterevocation": "checkCertificateRevocation",
    "includedetailinexceptions": "",
    "includeperformancecountersinexceptions": "",
    "reconnectretrypolicy": "",
    "libraryname": "",
    "configurationchannel": "configChannel",
    "defaultversion": "version",
    "setclientlibrary": "setlib",
    "heartbeatinterval": "",
    "heartbeatconsistencychecks": "",
}
# Query parameters of redis:// URLs in redis-py's own spelling.
_URL_ALIASES = {"db": "defaultDatabase", "client_name": "name", "username": "user"}


# What errors and logs say instead of a key that may be a piece of a password: a password
# with a comma spills into the items after it.
_AFTER_PASSWORD = "the item after password="
_COMMA_HINT = "a password cannot contain a comma"


def _opt() -> Any:
    return attrs.field(default=None, kw_only=True)


@attrs.frozen
class RedisConnectionOptions:
    """Everything a StackExchange.Redis connection string can say, as an immutable value.

    Every option field is None when the string did not set it, so ``render`` writes back
    exactly what was parsed. Timeouts are milliseconds and ``keep_alive`` seconds, as in .NET.
    """

    endpoints: tuple[RedisEndpoint, ...] = attrs.field(
        default=(), converter=tuple[RedisEndpoint, ...]
    )
    password: str | None = attrs.field(default=None, kw_only=True, repr=_redact)
    user: str | None = _opt()
    ssl: bool | None = _opt()
    ssl_host: str | None = _opt()
    ssl_protocols: str | None = _opt()
    abort_connect: bool | None = _opt()
    connect_timeout: int | None = _opt()
    sync_timeout: int | None = _opt()
    async_timeout: int | None = _opt()
    connect_retry: int | None = _opt()
    default_database: int | None = _opt()
    name: str | None = _opt()
    keep_alive: int | None = _opt()
    service_name: str | None = _opt()
    protocol: int | None = _opt()
    allow_admin: bool | None = _opt()
    tiebreaker: str | None = _opt()
    config_channel: str | None = _opt()
    version: str | None = _opt()
    proxy: str | None = _opt()
    resolve_dns: bool | None = _opt()
    check_certificate_revocation: bool | None = _opt()
    setlib: bool | None = _opt()
    high_integrity: bool | None = _opt()
    tunnel: str | None = _opt()
    config_check_seconds: int | None = _opt()
    response_timeout: int | None = _opt()
    write_buffer: int | None = _opt()
    channel_prefix: str | None = _opt()
    ignore_unknown: bool | None = _opt()

    def __attrs_post_init__(self) -> None:
        """Whole-number options outside what StackExchange.Redis and redis-py take are refused
        here, naming the key, rather than when connecting."""
        for key, (attr, convert, _m) in _KEYS.items():
            value = getattr(self, attr)
            if value is not None and isinstance(convert, _IntRange):
                convert.check(key, value)
        for endpoint in self.endpoints:
            if not isinstance(endpoint, RedisEndpoint):
                raise ConfigurationError(
                    "the endpoints of RedisConnectionOptions must be RedisEndpoint values"
                )

    # -- parsing --------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> RedisConnectionOptions:
        """Parse a StackExchange.Redis connection string or a ``redis://``/``rediss://`` URL.

        Unknown keys raise ``ConfigurationError`` naming the key unless ``ignoreUnknown=true``.
        """
        stripped = text.strip()
        if stripped.casefold().startswith(("redis://", "rediss://")):
            return cls._parse_url(stripped)
        endpoints: list[RedisEndpoint] = []
        pairs: list[tuple[str, str]] = []
        # Indexes in ``pairs`` of the first key=value item after a password item: when the
        # password held a comma, that "key" is a piece of it and must never be echoed.
        after_password: set[int] = set()
        following_password = False
        for item, raw in enumerate(stripped.split(","), start=1):
            token = raw.strip()
            if not token:
                continue
            if "=" in token:
                key, value = token.split("=", 1)
                key = key.strip()
                if following_password:
                    after_password.add(len(pairs))
                pairs.append((key, value.strip()))
                following_password = key.casefold() == "password"
            else:
                endpoints.append(
                    RedisEndpoint.parse(token, f"the endpoint in item {item} of {_WHERE}")
                )
        return cls(tuple(endpoints))._apply(pairs, aliases=False, after_password=after_password)

    @classmethod
    def _parse_url(cls, url: str) -> RedisConnectionOptions:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigurationError(
                "the redis URL has an invalid host or port (expected "
                "redis://[user:password@]host[:port][/db], the port from 1 to 65535)"
            ) from None
        if port is not None and _port_problem(port) is not None:
            raise ConfigurationError("the redis URL has a port out of range (1 to 65535)")
        if parts.hostname is None and port is not None:
            raise ConfigurationError("the redis URL has a port but no host")
        if parts.hostname is not None:
            problem = _host_problem(parts.hostname)
            if problem is not None:
                raise ConfigurationError(f"the redis URL {problem}")
        tls = parts.scheme.casefold() == "rediss"
        values: list[tuple[str, str]] = []
        if tls:
            values.append(("ssl", "true"))
        if parts.username:
            values.append(("user", unquote(parts.username)))
        if parts.password is not None:
            values.append(("password", unquote(parts.password)))
        path = parts.path.strip("/")
        if path:
            values.append(("defaultDatabase", path))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            values.append((_URL_ALIASES.get(key.casefold(), key), value))
        endpoints = (RedisEndpoint(parts.hostname, port),) if parts.hostname else ()
        return cls(endpoints).with_values(values)

    def with_values(
        self, pairs: Mapping[str, str] | list[tuple[str, str]], *, aliases: bool = False
    ) -> RedisConnectionOptions:
        """Return a copy with ``key=value`` pairs applied (connection-string key names).

        With ``aliases=True`` the .NET ``ConfigurationOptions`` property names bound from a
        configuration section (``AbortOnConnectFail``, ``ClientName``, ...) are accepted too,
        and ``EndPoints:N`` entries add endpoints.
        """
        items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
        return self._apply(items, aliases=aliases, after_password=())

    def _apply(
        self, items: list[tuple[str, str]], *, aliases: bool, after_password: Collection[int]
    ) -> RedisConnectionOptions:
        """``with_values``; the keys at ``after_password`` are never echoed (see ``parse``)."""
        ignore_unknown = self.ignore_unknown or any(
            k.casefold() == "ignoreunknown" and parse_bool(v) is True for k, v in items
        )
        changes: dict[str, Any] = {}
        endpoints = list(self.endpoints)
        for index, (key, value) in enumerate(items):
            folded = key.casefold()
            if aliases and folded.startswith("endpoints:"):
                endpoints.append(RedisEndpoint.parse(value, f"the Redis endpoint setting {key}"))
                continue
            if aliases and folded in _PROPERTY_ALIASES:
                folded = _PROPERTY_ALIASES[folded].casefold()
                if not folded:
                    _log.debug("Redis option %s has no redis-py equivalent; ignored", key)
                    continue
            canonical = _BY_FOLDED.get(folded)
            if canonical is None:
                hidden = index in after_password
                shown = f"({_AFTER_PASSWORD}; {_COMMA_HINT})" if hidden else key
                if key.startswith("$"):
                    _log.debug("Redis command rename %s has no redis-py equivalent; ignored", shown)
                    continue
                if ignore_unknown:
                    _log.debug("unknown Redis connection string key %s ignored", shown)
                    continue
                if hidden:
                    raise ConfigurationError(
                        f"{_AFTER_PASSWORD} in the Redis connection string is not a known key "
                        f"({_COMMA_HINT})"
                    )
                raise ConfigurationError(
                    f"unknown Redis connection string key {key!r} "
                    "(add ignoreUnknown=true to ignore unknown keys)"
                )
            attr, convert, meaningful = _KEYS[canonical]
            if not meaningful:
                _log.debug("Redis connection string key %s has no redis-py meaning; ignored", key)
            changes[attr] = convert(canonical, value)
        return attrs.evolve(self, endpoints=tuple(endpoints), **changes)

    # -- rendering ------------------------------------------------------------------------
    def render(self) -> str:
        """Render as a StackExchange.Redis connection string (includes the password)."""
        parts = [e.render() for e in self.endpoints]
        for key, (attr, _convert, _m) in _KEYS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if attr == "protocol":
                value = f"resp{value}"
            parts.append(f"{key}={_render_value(value)}")
        return ",".join(parts)

    def render_uri(self) -> str:
        """Render the first endpoint as a ``redis://``/``rediss://`` URL (includes the password).

        Only endpoint, credentials, TLS and database are carried; use ``render`` for the rest.
        """
        endpoint = self.primary_endpoint
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.user is not None or self.password is not None:
            auth = quote(self.user or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        path = f"/{self.default_database}" if self.default_database is not None else ""
        return f"{scheme}://{auth}{host}:{endpoint.resolved_port(self.tls)}{path}"

    # -- effective values -----------------------------------------------------------------
    @property
    def tls(self) -> bool:
        """Whether to use TLS (``ssl=true``)."""
        return bool(self.ssl)

    @property
    def primary_endpoint(self) -> RedisEndpoint:
        """The first endpoint; a ``ConfigurationError`` when there is none."""
        if not self.endpoints:
            raise ConfigurationError("the Redis connection string names no endpoint")
        return self.endpoints[0]

    @property
    def is_azure(self) -> bool:
        """Whether the first endpoint is an Azure Redis host."""
        return bool(self.endpoints) and is_azure_redis_host(self.endpoints[0].host)

    def to_redis_kwargs(self, *, for_async: bool = False) -> dict[str, Any]:
        """Map to keyword arguments of ``redis.Redis`` / ``redis.asyncio.Redis``.

        Timeouts default to StackExchange.Redis's 5 s; ``asyncTimeout`` is used for the
        async client. Options with no redis-py meaning are left out.
        """
        endpoint = self.primary_endpoint
        if len(self.endpoints) > 1 and not self.service_name:
            _log.debug("redis-py connects to the first of %d endpoints", len(self.endpoints))
        kwargs: dict[str, Any] = {
            "host": endpoint.host,
            "port": endpoint.resolved_port(self.tls),
            "socket_connect_timeout": (self.connect_timeout or 5000) / 1000,
        }
        timeout = self.async_timeout if for_async else self.sync_timeout
        kwargs["socket_timeout"] = (timeout or self.sync_timeout or 5000) / 1000
        if self.password is not None:
            kwargs["password"] = self.password
        if self.user is not None:
            kwargs["username"] = self.user
        if self.tls:
            kwargs["ssl"] = True
            version = _min_tls_version(self.ssl_protocols)
            if version is not None:
                kwargs["ssl_min_version"] = version
        if self.default_database is not None:
            kwargs["db"] = self.default_database
        if self.name is not None:
            kwargs["client_name"] = self.name
        if self.protocol is not None:
            kwargs["protocol"] = self.protocol
        if self.setlib is False:
            kwargs["lib_name"] = None
            kwargs["lib_version"] = None
        kwargs["socket_keepalive"] = True
        keep_idle = getattr(socket, "TCP_KEEPIDLE", None)
        if self.keep_alive is not None and self.keep_alive > 0 and keep_idle is not None:
            kwargs["socket_keepalive_options"] = {keep_idle: self.keep_alive}
        if self.connect_retry is not None:
            from redis.backoff import ExponentialWithJitterBackoff

            # asyncio clients take redis.asyncio's Retry (the blocking one is converted with a
            # warning on every client).
            if for_async:
                from redis.asyncio.retry import Retry as AsyncRetry

                kwargs["retry"] = AsyncRetry(
                    ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=self.connect_retry
                )
            else:
                from redis.retry import Retry

                kwargs["retry"] = Retry(
                    ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=self.connect_retry
                )
        return kwargs


def _min_tls_version(protocols: str | None) -> _ssl.TLSVersion | None:
    if not protocols:
        return None
    import ssl as _ssl  # lazy: the app host renders connection strings but never opens TLS

    table = {
        "tls": _ssl.TLSVersion.TLSv1,
        "tls11": _ssl.TLSVersion.TLSv1_1,
        "tls12": _ssl.TLSVersion.TLSv1_2,
        "tls13": _ssl.TLSVersion.TLSv1_3,
    }
    found = [
        table[p.strip().casefold()] for p in protocols.split("|") if p.strip().casefold() in table
    ]
    return min(found) if found else None
