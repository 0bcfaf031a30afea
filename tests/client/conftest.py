"""Fixtures of the service-side tests: one real redis-server for the session."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from .redis_cluster import RedisClusterProcess, TlsFiles, make_tls
from .redis_process import RedisProcess
from .twins import close_twin, open_twin

KINDS = ["sync", "async"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A redis-server on a free loopback port, stopped at the end of the session."""
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    """A plain redis-py client on a flushed database (the way .NET or a test pokes at keys)."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushall()
    client.script_flush()
    yield client
    client.close()


@pytest.fixture(params=["sync", "async"])
def twin(
    request: pytest.FixtureRequest, redis_server: RedisProcess, raw: redis.Redis
) -> Iterator[Any]:
    """Each test runs against ``DistributedCache`` and ``AsyncDistributedCache``."""
    cache = open_twin(request.param, redis_server.host, redis_server.port)
    yield cache
    close_twin(cache)


@pytest.fixture
def open_cache(redis_server: RedisProcess, raw: redis.Redis) -> Iterator[Callable[..., Any]]:
    """Open more twins (instance name, clock, ...); all closed after the test."""
    opened: list[Any] = []

    def factory(kind: str, **kwargs: Any) -> Any:
        cache = open_twin(kind, redis_server.host, redis_server.port, **kwargs)
        opened.append(cache)
        return cache

    yield factory
    for cache in opened:
        close_twin(cache)


@pytest.fixture(scope="session")
def noscript_user(redis_server: RedisProcess) -> Iterator[dict[str, str]]:
    """Credentials of a user who may do everything except run scripts."""
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    admin.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">noscript-pw", "~*", "&*", "+@all", "-@scripting"
    )
    yield {"username": "noscript", "password": "noscript-pw"}
    admin.execute_command("ACL", "DELUSER", "noscript")
    admin.close()


@pytest.fixture(
    params=[(k, s) for k in KINDS for s in (True, False)],
    ids=lambda p: f"{p[0]}-{'lua' if p[1] else 'nolua'}",
)
def mode(request: pytest.FixtureRequest, noscript_user: dict[str, str]) -> dict[str, Any]:
    kind, scripting = request.param
    return {"kind": kind, **({} if scripting else noscript_user)}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    """A plaintext 3-master Redis Cluster with a password, stopped at the end of the session."""
    cluster = RedisClusterProcess(password="cluster-pw")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a 127.0.0.1 server certificate (as the ARM emulator's data plane makes)."""
    return make_tls(tmp_path_factory.mktemp("cluster-tls"))


@pytest.fixture(scope="session")
def tls_cluster(cluster_tls: TlsFiles) -> Iterator[RedisClusterProcess]:
    """A TLS 3-master Redis Cluster on 127.0.0.1 under ``cluster_tls``'s CA."""
    cluster = RedisClusterProcess(password="tls-cluster-pw", tls=cluster_tls)
    try:
        yield cluster
    finally:
        cluster.stop()


class TokenServer:
    """A tiny real HTTP server implementing the ARM emulator's ``POST /_emulator/token``.

    Tokens are unsigned JWTs (``alg: none``) as the emulator issues; ``on_issue(oid, token,
    exp)`` runs before a token is returned (tests register it as a Redis ACL password there).
    """

    DEFAULT_OID = "7f3b6a2e-1c4d-4e5f-9a8b-0c1d2e3f4a5b"

    def __init__(self, lifetime: int = 3600) -> None:
        import http.server
        import threading

        self.lifetime = lifetime
        self.requests: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self.on_issue: Callable[[str, str, int], None] | None = None
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/_emulator/token":
                    self.send_error(404)
                    return
                owner.requests.append(body)
                reply = json.dumps(owner.issue(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        """Make and register a token as the emulator's contract says."""
        now = int(time.time())
        oid = body.get("objectId") or self.DEFAULT_OID
        scope = (body.get("scopes") or ["https://redis.azure.com/.default"])[0]
        claims = {
            "oid": oid,
            "tid": "00000000-0000-4000-8000-00000000e001",
            "aud": scope.removesuffix("/.default"),
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_hex(8),
        }
        token = f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."
        if self.on_issue is not None:
            self.on_issue(oid, token, claims["exp"])
        self.issued.append(token)
        return {"accessToken": token, "expiresOn": claims["exp"], "objectId": oid}

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    """A token endpoint on a free loopback port, stopped after the test."""
    server = TokenServer()
    yield server
    server.stop()
