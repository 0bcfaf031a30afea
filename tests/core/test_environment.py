"""What a reference injects, checked from inside real child processes (aspire-model.md,
"Resources and references")."""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from apphost_sdk.connection_strings import RedisConnectionOptions
from apphost_sdk.model.connection import RedisEndpoint
from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import wait_json

PREFIX_KEYS = ("_HOST", "_PORT", "_PASSWORD", "_URI")


def dumped(tmp_path: Path, name: str) -> dict[str, Any]:
    record = wait_json(tmp_path / f"{name}.json")
    assert isinstance(record, dict)
    return record


def test_redis_reference_injects_aspire_variables(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"))
        .with_reference(cache)
        .wait_for(cache)
        .with_environment("PING_REDIS", "CACHE")
        .with_environment("PING_NAME", "cache")
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    record = dumped(tmp_path, "api")
    env = record["env"]
    port = int(env["CACHE_PORT"])
    pw = env["CACHE_PASSWORD"]
    assert len(pw) == 22
    assert set(pw) <= set(string.ascii_letters + string.digits)
    assert env["ConnectionStrings__cache"] == f"localhost:{port},password={pw}"
    assert env["CACHE_HOST"] == "localhost"
    assert env["CACHE_URI"] == f"redis://:{pw}@localhost:{port}"
    assert record["uri_ping"] is True
    assert record["cs_ping"] is True
    assert env["OTEL_SERVICE_NAME"] == "api"
    # the programmatic view agrees with what the child saw
    assert app.connection_string("cache") == env["ConnectionStrings__cache"]
    injected = app.environment_for("api")
    for key in ("ConnectionStrings__cache", *("CACHE" + k for k in PREFIX_KEYS)):
        assert injected[key] == env[key]
    snaps = {s.name: s for s in app.snapshots()}
    assert snaps["cache"].endpoint == f"localhost:{port}"


def test_names_prefixes_override_and_no_password(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    my_cache = b.add_redis("my-cache").with_password(None)
    other = b.add_redis("other")
    (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"))
        .with_reference(my_cache)
        .with_reference(other, connection_name="sessions")
        .wait_for(my_cache)
        .wait_for(other)
        .with_environment("PING_REDIS", "MY_CACHE")
        .with_environment("PING_NAME", "my-cache")
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    env = (record := dumped(tmp_path, "api"))["env"]
    port = int(env["MY_CACHE_PORT"])
    assert env["ConnectionStrings__my-cache"] == f"localhost:{port}"
    assert env["MY_CACHE_HOST"] == "localhost"
    assert env["MY_CACHE_URI"] == f"redis://localhost:{port}"
    assert "MY_CACHE_PASSWORD" not in env
    assert record["uri_ping"] is True and record["cs_ping"] is True
    # connection_name overrides the resource name everywhere
    sport = int(env["SESSIONS_PORT"])
    spw = env["SESSIONS_PASSWORD"]
    assert env["ConnectionStrings__sessions"] == f"localhost:{sport},password={spw}"
    assert env["SESSIONS_URI"] == f"redis://:{spw}@localhost:{sport}"
    assert not [k for k in env if k.startswith("OTHER_") or k == "ConnectionStrings__other"]
    assert sport != port


def test_password_parameter_is_url_encoded_in_the_uri(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    secret = "p@ss:w/rd x%?#"
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache", password=b.add_parameter("cache-pw", secret, secret=True))
    (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"))
        .with_reference(cache)
        .wait_for(cache)
        .with_environment("PING_REDIS", "CACHE")
        .with_environment("PING_NAME", "cache")
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    env = (record := dumped(tmp_path, "api"))["env"]
    port = int(env["CACHE_PORT"])
    assert env["CACHE_PASSWORD"] == secret
    assert env["ConnectionStrings__cache"] == f"localhost:{port},password={secret}"
    assert env["CACHE_URI"] == f"redis://:{quote(secret, safe='')}@localhost:{port}"
    assert "p%40ss%3Aw%2Frd%20x%25%3F%23" in env["CACHE_URI"]
    assert record["uri_ping"] is True and record["cs_ping"] is True


def test_azure_redis_run_as_container_connection_string_parameters_and_services(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ConnectionStrings__db", "Server=db.example;Password=hunter2hunter2")
    b = DistributedApplication.create_builder(["--Parameters:region=westeurope"])
    configured: list[object] = []
    cache = b.add_azure_redis("cache").run_as_container(configured.append)
    db = b.add_connection_string("db")
    web = b.add_python_app("web", str(svc), "web.py", str(tmp_path)).with_http_endpoint()
    token = b.add_parameter("token", secret=True)
    (
        b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"))
        .with_reference(cache)
        .with_reference(db, connection_name="main")
        .with_reference(web)
        .wait_for(cache)
        .wait_for(web)
        .with_environment("REGION", b.add_parameter("region"))
        .with_environment("TOKEN", token)
        .with_environment("PLAIN", "value")
    )
    app = b.build()
    assert len(configured) == 1
    apps.append(app)
    app.start(timeout=20, quiet=True)
    env = dumped(tmp_path, "api")["env"]
    port = int(env["CACHE_PORT"])
    assert env["ConnectionStrings__cache"] == f"localhost:{port},password={env['CACHE_PASSWORD']}"
    assert env["ConnectionStrings__main"] == "Server=db.example;Password=hunter2hunter2"
    web_port = int(app.environment_for("web")["PORT"])
    assert env["services__web__http__0"] == f"http://localhost:{web_port}"
    assert env["REGION"] == "westeurope"
    assert env["PLAIN"] == "value"
    assert len(env["TOKEN"]) == 22 and env["TOKEN"].isalnum()
    # a generated secret parameter is kept in the state directory
    assert env["TOKEN"] == app.state.secret("parameter:token")


def test_python_app_uses_its_own_venv(
    tmp_path: Path, svc: Path, apps: list[DistributedApplication]
) -> None:
    venv_python = svc / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    b = DistributedApplication.create_builder([])
    b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json"), "30")
    app = b.build()
    apps.append(app)
    app.start(timeout=20, quiet=True)
    record = dumped(tmp_path, "api")
    cmdline = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == str(venv_python).encode()
    assert cmdline[1:3] == [b"-u", str(svc / "dump.py").encode()]


def test_ipv6_hosts_are_bracketed_where_a_port_follows() -> None:
    endpoint = RedisEndpoint("::1", 6379, "p,w@d", tls=True)
    assert endpoint.connection_string() == "[::1]:6379,password=p,w@d,ssl=true"
    assert endpoint.uri() == "rediss://:p%2Cw%40d@[::1]:6379"
    env = endpoint.environment("cache")
    assert (env["CACHE_HOST"], env["CACHE_PORT"]) == ("::1", "6379")
    assert env["CACHE_URI"] == endpoint.uri()
    parsed = RedisConnectionOptions.parse(endpoint.uri())
    assert (parsed.primary_endpoint.host, parsed.password) == ("::1", "p,w@d")
    # Normal hosts keep their exact forms.
    plain = RedisEndpoint("localhost", None, "pw")
    assert plain.connection_string() == "localhost,password=pw"
    assert plain.uri() == "redis://:pw@localhost:6379"
    assert RedisEndpoint("::1", None).connection_string() == "::1"


@pytest.mark.parametrize(
    ("host", "port", "password", "tls"),
    [
        ("localhost", 6379, "Abc123xyz", False),
        ("cache.redis.cache.windows.net", None, None, True),
        ("::1", 7000, "p@ss:w/rd%20", False),
        ("10.0.0.5", 6380, "key+/=", True),
    ],
)
def test_what_the_app_host_renders_the_service_side_parses_back(
    host: str, port: int | None, password: str | None, tls: bool
) -> None:
    # The app host renders with model.connection (kept light for start-up); the service side
    # parses with connection_strings: they must agree on every form.
    from apphost_sdk.connection_strings import RedisConnectionOptions
    from apphost_sdk.model.connection import RedisEndpoint as Rendered

    rendered = Rendered(host, port, password, tls)
    for text in (rendered.connection_string(), rendered.uri()):
        options = RedisConnectionOptions.parse(text)
        (endpoint,) = options.endpoints
        assert endpoint.host == host
        assert endpoint.resolved_port(tls) == (port or (6380 if tls else 6379))
        assert options.password == password
        assert bool(options.ssl) == tls
