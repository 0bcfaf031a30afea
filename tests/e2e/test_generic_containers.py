"""The generic container API end to end: ``add_container`` / ``add_dockerfile`` with every
``with_*`` option, references resolved per consumer (host process, container, container to host
process), the Redis side tools built on it, and the model errors ``build()`` reports.

Everything runs for real on the Docker engine with the offline test images
(``tests/support/build_*_image.sh``): ``apphost-test/recorder:1`` serves its environment as
``/env.txt`` (and ``/env0.txt``, NUL-separated) on port 5540, ``apphost-test/kv:1`` is memcached
on 11211, ``apphost-test/redis-commander:1`` is the real Redis Commander on 8081.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ModelValueError, ResourceStartError, ValidationError
from apphost_sdk.runtimes.engines import Engine
from apphost_sdk.runtimes.health import free_port

from .conftest import (
    COMMANDER_IMAGE,
    DEFAULT_IMAGE,
    KV_IMAGE,
    RECORDER_IMAGE,
    TALK_SCRIPT,
    TEST_IMAGE,
    TEST_TAG,
    AppFolder,
    wait_until,
    write_file,
)

# --------------------------------------------------------------------------- helpers


def _image(ref: str) -> tuple[str, str]:
    name, _, tag = ref.rpartition(":")
    return name, tag


def _http_get(url: str, timeout: float = 5.0) -> str | None:
    """The body of a 200 answer, or None (not listening yet, reset, 404...)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _fetch(url: str, timeout: float = 30.0) -> str:
    """GET ``url`` until it answers 200 (a container's server may take a moment)."""
    got: list[str] = []

    def answered() -> bool:
        body = _http_get(url)
        if body is not None:
            got.append(body)
        return body is not None

    wait_until(answered, timeout=timeout, interval=0.2, what=f"GET {url}")
    return got[-1]


def _recorder_env(endpoint: str) -> dict[str, str]:
    """The environment a recorder container was started with (its ``/env0.txt``)."""
    raw = _fetch(endpoint + "/env0.txt")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _snaps(app: Any) -> dict[str, Any]:
    return {s.name: s for s in app.snapshots()}


def _container(api: Any, app_id: str, resource: str) -> dict[str, Any]:
    """``docker inspect`` of the app's one container of ``resource``."""
    flt = {"label": [f"apphost-sdk.app-id={app_id}", f"apphost-sdk.resource={resource}"]}
    found = api.containers(all=True, filters=flt)
    assert len(found) == 1, found
    return dict(api.inspect_container(found[0]["Id"]))


def _without_env(info: dict[str, Any]) -> str:
    """Everything ``docker inspect`` shows except the environment values (labels, arguments,
    entrypoint, command, host config...), as one string to search for secrets."""
    shown = copy.deepcopy(info)
    shown["Config"]["Env"] = [e.split("=", 1)[0] for e in shown["Config"].get("Env") or []]
    return json.dumps(shown)


def _talk(port: int, payload: bytes, until: bytes | None, host: str = "127.0.0.1") -> bytes:
    """Send ``payload`` and read until ``until`` appears (None: until the peer closes)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while until is None or until not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _port_of(endpoint: str | None) -> int:
    assert endpoint is not None
    return int(endpoint.rsplit(":", 1)[1].rstrip("/"))


def _redis_password(connection_string: str | None) -> str:
    assert connection_string is not None
    return connection_string.partition(",password=")[2]


@pytest.fixture
def docker_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")


# --------------------------------------------------------------------------- 1. every option

#: The "web" container's command (under tini, given with with_entrypoint): it records what it
#: got, serves /www on 8080 at once (the HTTP endpoint) but says ready only after 2 s (the health
#: check's path), and serves /www on 7000 too (the TCP endpoint of the connection string).
WEB_SCRIPT = r"""
set -eu
env -0 > /www/env0.txt
printf '%s\n' "$@" > /www/args.txt
cat /bound/hello.txt > /www/bound.txt
echo run >> /vol/runs.txt
cat /vol/runs.txt > /www/runs.txt
/bin/busybox httpd -p 8080 -h /www
sleep 2
echo ready > /www/ready.txt
exec /bin/busybox httpd -f -p 7000 -h /www
"""


def test_add_container_with_every_option_starts_healthy_and_reaches_the_engine(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    api = engine.client.api
    token = "tok-" + uuid.uuid4().hex  # a secret parameter's value
    tcp_port = free_port()
    container_name = f"apphost-e2e-web-{uuid.uuid4().hex[:8]}"
    static = app_folder.folder / "static"
    write_file(static / "hello.txt", "hello from the app host folder\n")

    def build() -> Any:
        b = app_folder.builder()
        secret = b.add_parameter("web-token", token, secret=True)
        (
            b.add_container("web", *_image(RECORDER_IMAGE))
            .with_http_endpoint(8080)
            .with_endpoint(7000, port=tcp_port)
            .with_environment("GREETING", "hello world $HOME")
            .with_environment("WEB_TOKEN", secret)
            .with_entrypoint("/usr/bin/tini")
            .with_args("--", "/bin/sh", "-c", WEB_SCRIPT, "web-script", "first arg", "2nd")
            .with_volume(None, "/vol")
            .with_bind_mount("static", "/bound", read_only=True)
            .with_container_name(container_name)
            .with_container_runtime_args("--memory", "64m")
            .with_lifetime("session")
            .with_http_health_check("/ready.txt")
            .with_connection_string("{host}:{port}")
        )
        (
            b.add_container("kv", *_image(KV_IMAGE))
            .with_endpoint(11211)
            .with_args("-p", "11211", "-l", "0.0.0.0", "-m", "32")  # replaces the image's CMD
            .with_lifetime("persistent")
            .with_connection_string("{host}:{port}")
        )
        return b.build()

    started = time.monotonic()
    with build().start(timeout=120, quiet=True) as app:
        elapsed = time.monotonic() - started
        snaps = _snaps(app)
        assert set(snaps) == {"web", "kv"}
        for s in snaps.values():
            assert (s.kind, s.state.value, s.health.value, s.runtime) == (
                "container",
                "Running",
                "Healthy",
                "docker",
            ), s
        # Healthy only once GET /ready.txt answered 2xx, which the script allows after 2 s.
        assert elapsed >= 2.0, elapsed
        web = snaps["web"].endpoint
        assert web is not None and web.startswith("http://localhost:")
        assert _http_get(web + "/ready.txt") == "ready\n"

        env = _recorder_env(web)
        assert env["GREETING"] == "hello world $HOME"  # a value, never seen by a shell
        assert env["WEB_TOKEN"] == token
        assert _fetch(web + "/args.txt") == "first arg\n2nd\n"
        assert _fetch(web + "/bound.txt") == "hello from the app host folder\n"
        assert _fetch(web + "/runs.txt") == "run\n"
        assert app.environment_for("web")["WEB_TOKEN"] == token

        # The TCP endpoint on its fixed host port, and the connection string over it.
        assert app.connection_string("web") == f"localhost:{tcp_port}"
        assert b"hello world" in _talk(tcp_port, b"GET /env0.txt HTTP/1.0\r\n\r\n", None)

        # kv: arguments replaced the image's CMD (memcached -m 32).
        kv_port = _port_of(snaps["kv"].endpoint)
        assert app.connection_string("kv") == f"localhost:{kv_port}"
        settings = _talk(kv_port, b"stats settings\r\n", b"END\r\n")
        assert b"STAT maxbytes 33554432\r\n" in settings

        info = _container(api, app_folder.app_id, "web")
        assert info["Name"] == "/" + container_name
        assert info["Config"]["Entrypoint"] == ["/usr/bin/tini"]
        assert info["Config"]["Cmd"][:3] == ["--", "/bin/sh", "-c"]
        assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert f"WEB_TOKEN={token}" in info["Config"]["Env"]
        assert token not in _without_env(info)  # not in labels, arguments, command...
        labels = info["Config"]["Labels"]
        assert labels["apphost-sdk.lifetime"] == "session"
        assert "WEB_TOKEN" in labels["apphost-sdk.env-names"].split(",")
        bindings = info["HostConfig"]["PortBindings"]
        assert bindings["7000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(tcp_port)}]
        assert bindings["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(_port_of(web))}]
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/bound"]["Type"] == "bind"
        assert mounts["/bound"]["Source"] == str(static)  # relative to the app host folder
        assert mounts["/bound"]["RW"] is False
        assert mounts["/vol"]["Type"] == "volume"
        volume = mounts["/vol"]["Name"]
        assert app_folder.app_name in volume and "web" in volume

        kv_info = _container(api, app_folder.app_id, "kv")
        assert kv_info["Config"]["Cmd"] == ["-p", "11211", "-l", "0.0.0.0", "-m", "32"]
        assert kv_info["Config"]["Labels"]["apphost-sdk.lifetime"] == "persistent"
        kv_id = kv_info["Id"]

    # Session: removed; persistent: left running, as in Aspire; the volume stays for the next run.
    flt = {"label": [f"apphost-sdk.app-id={app_folder.app_id}"]}
    left = api.containers(all=True, filters=flt)
    assert [c["Id"] for c in left] == [kv_id]
    assert left[0]["State"] == "running"

    with build().start(timeout=120, quiet=True) as app:
        web = _snaps(app)["web"].endpoint
        assert web is not None
        assert _fetch(web + "/runs.txt") == "run\nrun\n"  # the same volume
        assert _container(api, app_folder.app_id, "kv")["Id"] == kv_id  # reused as it runs
        kv_port = _port_of(_snaps(app)["kv"].endpoint)
        assert _talk(kv_port, b"version\r\n", b"\r\n").startswith(b"VERSION ")


# --------------------------------------------------------------------------- 2. references

#: A host process that references containers: records what it was given and uses it.
CLIENT = (
    TALK_SCRIPT
    + r"""
import json, os, sys, time, urllib.request

record = {"env": {k: v for k, v in os.environ.items()
                  if k.startswith(("ConnectionStrings__", "services__", "CACHE_"))}}
try:
    hostport = os.environ["ConnectionStrings__kv"]
    host, _, port = hostport.rpartition(":")
    record["kv"] = talk(host, port, b"set greeting 0 0 5\r\nhello\r\nget greeting\r\n", b"END\r\n")
except Exception as exc:
    record["kv"] = repr(exc)
try:
    url = os.environ["services__site__http__0"] + "/env.txt"
    record["site"] = urllib.request.urlopen(url, timeout=5).read().decode()
except Exception as exc:
    record["site"] = repr(exc)
try:
    pw = os.environ["CACHE_PASSWORD"].encode()
    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw)
    record["redis"] = talk(os.environ["CACHE_HOST"], os.environ["CACHE_PORT"], auth, b"PONG")
except Exception as exc:
    record["redis"] = repr(exc)
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump(record, fh)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""
)

#: The "peer" container's command: reach the others by the names it was given, then run the
#: recorder's own entrypoint (which records the environment and serves /www on 5540).
PEER_SCRIPT = r"""
for i in 1 2 3 4 5 6 7 8 9 10; do
  busybox wget -q -O /www/site-env.txt "$services__site__http__0/env.txt" && break
  sleep 0.5
done
printf 'AUTH %s\r\nPING\r\n' "$CACHE_PASSWORD" | busybox nc -w 2 "$CACHE_HOST" "$CACHE_PORT" \
  > /www/redis.txt 2>&1
kv="$ConnectionStrings__kv"
printf 'set peer 0 0 2\r\nok\r\nget peer\r\n' | busybox nc -w 2 "${kv%:*}" "${kv##*:}" \
  > /www/kv.txt 2>&1
exec /entrypoint.sh
"""


def test_references_resolve_per_consumer(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None, tmp_path: Path
) -> None:
    out = tmp_path / "client.json"
    write_file(app_folder.folder / "client" / "client.py", CLIENT)
    b = app_folder.builder()
    cache = b.add_redis("cache").with_image(TEST_IMAGE, TEST_TAG)
    kv = (
        b.add_container("kv", *_image(KV_IMAGE))
        .with_endpoint(11211)
        .with_connection_string("{host}:{port}")
    )
    site = (
        b.add_container("site", *_image(RECORDER_IMAGE))
        .with_http_endpoint(5540)
        .with_environment("SITE_MARK", "site-was-here")
        .with_http_health_check("/env.txt")
    )
    (
        b.add_python_app("client", "client", "client.py", str(out))
        .with_reference(kv)
        .with_reference(site)
        .with_reference(cache)
        .wait_for(kv)
        .wait_for(site)
        .wait_for(cache)
    )
    (
        b.add_container("peer", *_image(RECORDER_IMAGE))
        .with_http_endpoint(5540)
        .with_entrypoint("/usr/bin/tini")
        .with_args("--", "/bin/sh", "-c", PEER_SCRIPT)
        .with_reference(cache)
        .with_reference(site)
        .with_reference(kv)
        .wait_for(cache)
        .wait_for(site)
        .wait_for(kv)
    )
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        assert all(
            (s.state.value, s.health.value) == ("Running", "Healthy") for s in snaps.values()
        ), snaps
        cache_cs = app.connection_string("cache")
        password = _redis_password(cache_cs)
        assert cache_cs is not None and cache_cs.startswith("localhost:")
        cache_port = int(cache_cs.split(",")[0].rsplit(":", 1)[1])
        kv_port = _port_of(snaps["kv"].endpoint)
        site_port = _port_of(snaps["site"].endpoint)

        # A host process reaches containers at localhost:{host port}, and can use them.
        record = json.loads(wait_until(lambda: out.exists() and out.read_text(), timeout=30))
        env = record["env"]
        assert env["ConnectionStrings__kv"] == f"localhost:{kv_port}"
        assert env["services__site__http__0"] == f"http://localhost:{site_port}"
        assert env["ConnectionStrings__cache"] == f"localhost:{cache_port},password={password}"
        assert (env["CACHE_HOST"], env["CACHE_PORT"]) == ("localhost", str(cache_port))
        assert record["kv"].endswith("VALUE greeting 0 5\r\nhello\r\nEND\r\n"), record["kv"]
        assert "SITE_MARK=site-was-here" in record["site"], record["site"]
        assert record["redis"] == "+OK\r\n+PONG\r\n", record["redis"]
        assert app.environment_for("client")["ConnectionStrings__kv"] == (f"localhost:{kv_port}")

        # A container reaches them by resource name and target port on the app's network.
        peer = snaps["peer"].endpoint
        assert peer is not None
        peer_env = _recorder_env(peer)
        assert peer_env["CACHE_HOST"] == "cache"
        assert peer_env["CACHE_PORT"] == "6379"
        assert peer_env["CACHE_PASSWORD"] == password
        assert peer_env["ConnectionStrings__cache"] == f"cache:6379,password={password}"
        assert peer_env["CACHE_URI"] == f"redis://:{password}@cache:6379"
        assert peer_env["services__site__http__0"] == "http://site:5540"
        assert peer_env["ConnectionStrings__kv"] == "kv:11211"
        assert "SITE_MARK=site-was-here" in _fetch(peer + "/site-env.txt")
        assert _fetch(peer + "/redis.txt") == "+OK\r\n+PONG\r\n"
        assert _fetch(peer + "/kv.txt").endswith("VALUE peer 0 2\r\nok\r\nEND\r\n")
        assert app.environment_for("peer")["CACHE_HOST"] == "cache"

        # The password is in the peer's environment only.
        info = _container(engine.client.api, app_folder.app_id, "peer")
        assert password not in _without_env(info)


#: A host process that writes the connection strings it was given to a JSON file.
DUMP_ENV = r"""
import json, os, sys, time
env = {k: v for k, v in os.environ.items() if k.startswith("ConnectionStrings__")}
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump(env, fh)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""


def test_a_connection_string_template_renders_parameters_per_consumer(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None, tmp_path: Path
) -> None:
    out = tmp_path / "dump.json"
    write_file(app_folder.folder / "dump" / "dump.py", DUMP_ENV)
    token = "tok-" + uuid.uuid4().hex
    b = app_folder.builder()
    b.add_parameter("kv-label", "e2e")
    b.add_parameter("kv-token", token, secret=True)
    kv = (
        b.add_container("kv", *_image(KV_IMAGE))
        .with_endpoint(11211)
        .with_connection_string("{host}:{port},label={param:kv-label},token={param:kv-token}")
    )
    b.add_python_app("dump", "dump", "dump.py", str(out)).with_reference(kv)
    b.add_container("rec", *_image(RECORDER_IMAGE)).with_http_endpoint(5540).with_reference(kv)
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        port = _port_of(snaps["kv"].endpoint)
        expected = f"localhost:{port},label=e2e,token={token}"
        assert app.connection_string("kv") == expected
        dumped = json.loads(wait_until(lambda: out.exists() and out.read_text(), timeout=30))
        assert dumped["ConnectionStrings__kv"] == expected
        rec = snaps["rec"].endpoint
        assert rec is not None
        env = _recorder_env(rec)
        assert env["ConnectionStrings__kv"] == f"kv:11211,label=e2e,token={token}"
        info = _container(engine.client.api, app_folder.app_id, "rec")
        assert token not in _without_env(info)


def test_an_endpoint_given_as_an_environment_value_resolves_per_consumer(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None, tmp_path: Path
) -> None:
    """``with_environment("X", other.get_endpoint(...))`` without ``with_reference``: the
    consumer starts once ``other`` has its endpoint, and gets it as that consumer reaches it."""
    out = tmp_path / "dump.json"
    write_file(
        app_folder.folder / "dump" / "dump.py",
        DUMP_ENV.replace('k.startswith("ConnectionStrings__")', 'k.endswith("_URL")'),
    )
    b = app_folder.builder()
    cache = b.add_redis("cache").with_image(TEST_IMAGE, TEST_TAG)
    site = b.add_container("site", *_image(RECORDER_IMAGE)).with_http_endpoint(5540)
    (
        b.add_container("rec", *_image(RECORDER_IMAGE))
        .with_http_endpoint(5540)
        .with_environment("SITE_URL", site.get_endpoint("http"))
        .with_environment("CACHE_URL", cache.get_endpoint("tcp"))
    )
    (
        b.add_python_app("dump", "dump", "dump.py", str(out))
        .with_environment("SITE_URL", site.get_endpoint("http"))
        .with_environment("CACHE_URL", cache.get_endpoint("tcp"))
    )
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        site_port = _port_of(snaps["site"].endpoint)
        cache_port = _port_of(snaps["cache"].endpoint)
        dumped = json.loads(wait_until(lambda: out.exists() and out.read_text(), timeout=30))
        assert dumped == {
            "SITE_URL": f"http://localhost:{site_port}",
            "CACHE_URL": f"redis://localhost:{cache_port}",
        }
        rec = snaps["rec"].endpoint
        assert rec is not None
        env = _recorder_env(rec)
        assert (env["SITE_URL"], env["CACHE_URL"]) == ("http://site:5540", "redis://cache:6379")


# --------------------------------------------------------------------------- 2b. container -> host


@pytest.fixture
def no_default_redis_image(engine: Engine) -> Iterator[None]:
    """Make sure ``docker.io/library/redis:8.6`` is NOT on the engine (no registry is
    reachable, so ``add_redis`` with its default image then runs as a local process under
    ``auto``). A tag some other fixture made is moved aside and put back afterwards."""
    import docker

    api = engine.client.api
    backup = ("apphost-test/redis-default-backup", uuid.uuid4().hex[:12])
    moved = False
    try:
        api.inspect_image(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        pass
    else:
        api.tag(DEFAULT_IMAGE, *backup)  # keeps the image when its last tag goes
        api.remove_image(DEFAULT_IMAGE)
        moved = True
    yield
    if moved:
        with contextlib.suppress(docker.errors.APIError):
            api.tag(f"{backup[0]}:{backup[1]}", "docker.io/library/redis", "8.6")
            api.remove_image(f"{backup[0]}:{backup[1]}")


def _commander_info(endpoint: str, labels: set[str], timeout: float = 45.0) -> dict[str, Any]:
    """``GET /apiv2/server/info`` of Redis Commander until every connection in ``labels``
    reports its server info; returns them by label (fails showing the last answer)."""
    last: list[Any] = []

    def connected() -> dict[str, Any] | None:
        body = _http_get(endpoint + "/apiv2/server/info")
        if body is None:
            return None
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            return None
        last[:] = [data]
        found = {d.get("label"): d for d in data if isinstance(d, dict)}
        if set(found) >= labels and all(found[x].get("info") for x in labels):
            return found
        return None

    try:
        return wait_until(connected, timeout=timeout, interval=0.5, what="Redis Commander")
    except AssertionError:
        raise AssertionError(f"Redis Commander did not connect; last answer: {last}") from None


def _info_value(connection: dict[str, Any], key: str) -> str | None:
    for item in connection.get("info") or []:
        if isinstance(item, dict) and item.get("key") == key:
            return str(item.get("value"))
    return None


def test_a_container_reaches_redis_running_as_a_host_process(
    app_folder: AppFolder,
    engine: Engine,
    extra_images: None,
    no_default_redis_image: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "auto")  # the engine answers
    b = app_folder.builder()
    cache = b.add_redis("cache").with_redis_commander(
        configure=lambda c: c.with_image(*_image(COMMANDER_IMAGE))
    )
    b.add_container("rec", *_image(RECORDER_IMAGE)).with_http_endpoint(5540).with_reference(
        cache
    ).wait_for(cache)
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        assert snaps["cache"].runtime == "process"  # the stock image cannot be had
        assert snaps["rec"].runtime == "docker"
        assert snaps["cache-commander"].runtime == "docker"
        assert snaps["cache-commander"].kind == "redis-commander"
        cs = app.connection_string("cache")
        password = _redis_password(cs)
        assert cs is not None and cs.startswith("localhost:")
        port = int(cs.split(",")[0].rsplit(":", 1)[1])

        rec = snaps["rec"].endpoint
        assert rec is not None
        env = _recorder_env(rec)
        assert env["CACHE_HOST"] == "host.docker.internal"
        assert env["CACHE_PORT"] == str(port)  # the real host port
        assert env["ConnectionStrings__cache"] == (
            f"host.docker.internal:{port},password={password}"
        )

        # Functional: Redis Commander, in a container, connects to the host process.
        commander = snaps["cache-commander"].endpoint
        assert commander is not None
        found = _commander_info(commander, {"cache"})["cache"]
        assert "error" not in found, found
        assert (found["host"], found["port"]) == ("host.docker.internal", port)
        assert _info_value(found, "Redis version")
        assert _info_value(found, "Tcp port") == str(port)


# --------------------------------------------------------------------------- 3. Redis tools


def test_redis_insight_gets_every_redis_of_the_app_by_environment(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    b = app_folder.builder()
    b.add_redis("cache").with_image(TEST_IMAGE, TEST_TAG).with_redis_insight(
        configure=lambda c: c.with_image(*_image(RECORDER_IMAGE))
    )
    b.add_redis("sessions").with_image(TEST_IMAGE, TEST_TAG)  # added after: connected too
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        assert set(snaps) == {"cache", "sessions", "cache-insight"}
        insight = snaps["cache-insight"]
        assert (insight.kind, insight.state.value, insight.health.value) == (
            "redis-insight",
            "Running",
            "Healthy",
        )
        passwords = {n: _redis_password(app.connection_string(n)) for n in ("cache", "sessions")}
        assert all(len(p) == 22 for p in passwords.values()) and len(set(passwords.values())) == 2
        assert insight.endpoint is not None
        env = _recorder_env(insight.endpoint)
        ri = {k: v for k, v in env.items() if k.startswith("RI_")}
        assert ri == {
            "RI_ACCEPT_TERMS_AND_CONDITIONS": "true",
            "RI_REDIS_HOST1": "cache",
            "RI_REDIS_PORT1": "6379",
            "RI_REDIS_ALIAS1": "cache",
            "RI_REDIS_PASSWORD1": passwords["cache"],
            "RI_REDIS_HOST2": "sessions",
            "RI_REDIS_PORT2": "6379",
            "RI_REDIS_ALIAS2": "sessions",
            "RI_REDIS_PASSWORD2": passwords["sessions"],
        }
        assert app.environment_for("cache-insight")["RI_REDIS_PASSWORD2"] == passwords["sessions"]
        info = _container(engine.client.api, app_folder.app_id, "cache-insight")
        shown = _without_env(info)
        for password in passwords.values():
            assert password not in shown  # never in labels or arguments
        assert _fetch(insight.endpoint + "/args.txt") == ""


def test_redis_commander_connects_to_every_redis_of_the_app(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    b = app_folder.builder()
    b.add_redis("cache").with_image(TEST_IMAGE, TEST_TAG).with_redis_commander(
        configure=lambda c: c.with_image(*_image(COMMANDER_IMAGE))
    )
    b.add_redis("sessions").with_image(TEST_IMAGE, TEST_TAG)
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        commander = snaps["cache-commander"]
        assert (commander.state.value, commander.health.value) == ("Running", "Healthy")
        assert commander.endpoint is not None
        found = _commander_info(commander.endpoint, {"cache", "sessions"})
        for name in ("cache", "sessions"):
            assert "error" not in found[name], found[name]
            assert (found[name]["host"], found[name]["port"]) == (name, 6379)
            assert (_info_value(found[name], "Redis version") or "").startswith("7.")
        info = _container(engine.client.api, app_folder.app_id, "cache-commander")
        shown = _without_env(info)
        for name in ("cache", "sessions"):
            assert _redis_password(app.connection_string(name)) not in shown


# --------------------------------------------------------------------------- 4. add_dockerfile

DOCKERFILE = f"""\
FROM {KV_IMAGE}
LABEL org.apphost-e2e.purpose="a Dockerfile built by the app host"
COPY greeting.txt /tmp/greeting.txt
"""


def _start_lines(
    app_folder: AppFolder, api: Any, capfd: pytest.CaptureFixture[str]
) -> tuple[str, list[str]]:
    """Run the app once; the image its container ran and the output lines of ``kvb``."""
    b = app_folder.builder()
    b.add_dockerfile("kvb", "kvimage").with_endpoint(11211)
    capfd.readouterr()
    with b.build().start(timeout=180, quiet=False) as app:
        snap = _snaps(app)["kvb"]
        assert (snap.kind, snap.state.value, snap.health.value) == (
            "dockerfile",
            "Running",
            "Healthy",
        )
        reply = _talk(_port_of(snap.endpoint), b"version\r\n", b"\r\n")
        assert reply.startswith(b"VERSION "), reply
        image = str(_container(api, app_folder.app_id, "kvb")["Config"]["Image"])
    lines = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("kvb ")]
    return image, lines


def _greeting(image: str) -> str:
    """The first line of /tmp/greeting.txt in ``image`` (copied there by its Dockerfile)."""
    script = "read line < /tmp/greeting.txt; echo $line"
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_add_dockerfile_builds_runs_and_rebuilds_only_when_the_context_changes(
    app_folder: AppFolder,
    engine: Engine,
    extra_images: None,
    docker_runtime: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api = engine.client.api
    context = app_folder.folder / "kvimage"
    write_file(context / "Dockerfile", DOCKERFILE)
    first_greeting = f"hello {uuid.uuid4().hex}"  # a context no earlier run built
    write_file(context / "greeting.txt", first_greeting + "\n")

    image, lines = _start_lines(app_folder, api, capfd)
    assert image.startswith("apphost-build/kvb:")
    text = "\n".join(lines)
    assert f"building {image}" in text, text
    assert re.search(rf"^kvb +\| Step 1/\d+ : FROM {KV_IMAGE}$", text, re.M), text
    assert re.search(r"^kvb +\| Step 3/\d+ : COPY greeting.txt /tmp/greeting.txt$", text, re.M)
    assert f"Successfully tagged {image}" in text, text
    built = api.inspect_image(image)
    assert built["Config"]["Labels"]["org.apphost-e2e.purpose"] == (
        "a Dockerfile built by the app host"
    )
    assert built["Config"]["Labels"]["apphost-sdk.app-id"] == app_folder.app_id
    assert _greeting(image) == first_greeting

    # Unchanged context: the same image, no build.
    again, lines = _start_lines(app_folder, api, capfd)
    assert again == image
    text = "\n".join(lines)
    assert f"image {image} is up to date" in text, text
    assert "Step 1/" not in text

    # A changed file: a new tag, built again.
    write_file(context / "greeting.txt", "changed\n")
    changed, lines = _start_lines(app_folder, api, capfd)
    assert changed != image and changed.startswith("apphost-build/kvb:")
    text = "\n".join(lines)
    assert f"building {changed}" in text and "Step 3/" in text, text
    assert api.inspect_image(changed)["Id"] != built["Id"]
    assert _greeting(changed) == "changed"


def test_a_dockerfile_that_does_not_build_fails_naming_the_resource_and_the_step(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    write_file(app_folder.folder / "broken" / "Dockerfile", f"FROM {KV_IMAGE}\nRUN exit 3\n")
    b = app_folder.builder()
    b.add_dockerfile("broken", "broken").with_endpoint(11211)
    with pytest.raises(ResourceStartError) as caught:
        b.build().start(timeout=120, quiet=True)
    message = str(caught.value)
    assert message.startswith("broken failed: building its image failed"), message
    assert "exit 3" in message and "non-zero code: 3" in message, message
    flt = {"label": [f"apphost-sdk.app-id={app_folder.app_id}"]}
    assert engine.client.api.containers(all=True, filters=flt) == []


def test_two_endpoints_on_one_target_port_are_both_published_or_refused(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    """Two endpoints of one container on the same target port: each must reach the program
    on its own host port (as ``docker run -p A:5540 -p B:5540`` does), unless ``build()``
    refuses the model; never an endpoint shown in status that nothing publishes."""
    b = app_folder.builder()
    (
        b.add_container("rec", *_image(RECORDER_IMAGE))
        .with_http_endpoint(5540)
        .with_endpoint(5540, name="raw")
    )
    try:
        app = b.build()
    except ValidationError as exc:
        assert "5540" in str(exc) and "rec" in str(exc)
        return
    with app.start(timeout=60, quiet=True) as started:
        snap = _snaps(started)["rec"]
        info = _container(engine.client.api, app_folder.app_id, "rec")
        ports = json.loads(info["Config"]["Labels"]["apphost-sdk.host-port"])
        assert set(ports) == {"http", "raw"}
        assert snap.endpoint == f"http://localhost:{ports['http']}"
        for port in ports.values():
            assert "PATH=" in _fetch(f"http://localhost:{port}/env.txt", timeout=10), port
        published = {b["HostPort"] for b in info["HostConfig"]["PortBindings"]["5540/tcp"]}
        assert published == {str(p) for p in ports.values()}


# --------------------------------------------------------------------------- 5. validation


def _problems(builder: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        builder.build()
    return list(caught.value.problems)


def _one(problems: list[str], *needles: str) -> str:
    """The one problem containing every needle."""
    found = [p for p in problems if all(n in p for n in needles)]
    assert len(found) == 1, (needles, problems)
    return found[0]


def test_build_reports_every_container_problem_at_once(tmp_path: Path) -> None:
    folder = AppFolder(tmp_path / "invalid")
    (folder.folder / "ctx-without-dockerfile").mkdir()
    port = free_port()
    b = folder.builder()
    b.add_container("dup", "busybox").with_endpoint(80, name="web").with_http_endpoint(
        8080, name="web"
    )
    b.add_container("first", "busybox").with_endpoint(80, port=port)
    b.add_container("second", "busybox").with_endpoint(81, port=port)
    b.add_container("binder", "busybox").with_bind_mount("no-such-folder", "/srv")
    b.add_dockerfile("noctx", "no-such-context")
    b.add_dockerfile("nofile", "ctx-without-dockerfile")
    b.add_dockerfile("otherfile", "ctx-without-dockerfile", "build/Other.Dockerfile")
    b.add_container("wrongep", "busybox").with_endpoint(5432).with_connection_string(
        "{host}:{port}", endpoint="db"
    )
    b.add_container("opts", "busybox").with_container_runtime_args(
        "--network=host", "--memory", "lots", "--cpus"
    )
    problems = _problems(b)

    assert "two endpoints named 'web'" in _one(problems, "dup ")
    shared = _one(problems, f"host port {port}")
    assert "first" in shared and "second" in shared
    missing = _one(problems, "binder")
    assert str(folder.folder / "no-such-folder") in missing and "does not exist" in missing
    assert str(folder.folder / "no-such-context") in _one(problems, "noctx")
    assert "Dockerfile" in _one(problems, "nofile:")
    assert "Other.Dockerfile" in _one(problems, "otherfile")
    assert "'db'" in _one(problems, "wrongep")
    assert "'--network' is not supported" in _one(problems, "opts", "--network")
    assert "'lots' is not a size" in _one(problems, "opts", "'lots'")
    assert _one(problems, "opts", "--cpus needs a value")
    assert len(problems) == 10, problems


def test_a_fixed_host_port_shared_by_a_container_and_an_executable_names_both(
    tmp_path: Path,
) -> None:
    folder = AppFolder(tmp_path / "ports")
    port = free_port()
    b = folder.builder()
    b.add_container("db", "busybox").with_endpoint(5432, port=port)
    b.add_executable("api", "python", ".").with_http_endpoint(port=port)
    [problem] = _problems(b)
    assert f"host port {port}" in problem and "db" in problem and "api" in problem


def test_a_missing_bind_mount_source_is_reported_whatever_the_target(tmp_path: Path) -> None:
    """A generic container's bind mount of a missing folder is a build() error for every
    target, ``/data`` included (only Redis's own data folder may be created on demand)."""
    folder = AppFolder(tmp_path / "binds")
    b = folder.builder()
    b.add_container("db", "busybox").with_bind_mount("missing-data", "/data")
    [problem] = _problems(b)
    assert str(folder.folder / "missing-data") in problem and "does not exist" in problem


def test_argument_errors_are_raised_at_the_call(tmp_path: Path) -> None:
    b = AppFolder(tmp_path / "calls").builder()
    web = b.add_container("web", "busybox").with_endpoint(80)
    with pytest.raises(ModelValueError, match=r"placeholder \{db\}"):
        web.with_connection_string("{host}:{port}/{db}")
    with pytest.raises(ModelValueError, match="not a valid template"):
        web.with_connection_string("{host")
    secret = b.add_parameter("token", "a-long-secret", secret=True)
    with pytest.raises(ModelValueError, match="secret parameter token") as caught:
        web.with_args(secret)
    assert "a-long-secret" not in str(caught.value)
    with pytest.raises(ModelValueError, match="env='PORT'"):
        web.with_http_endpoint()
    b.build()  # none of the refused calls left anything behind


def test_an_unknown_parameter_in_a_connection_string_fails_at_build(tmp_path: Path) -> None:
    b = AppFolder(tmp_path / "params").builder()
    b.add_parameter("known", "value")
    b.add_container("db", "busybox").with_endpoint(5432).with_connection_string(
        "{host}:{port},user={param:known},password={param:no-such-param}"
    )
    [problem] = _problems(b)
    assert "db.with_connection_string uses {param:no-such-param}" in problem
    assert "add_parameter('no-such-param'" in problem


def test_a_health_check_on_an_endpoint_the_container_lacks_fails_at_build(tmp_path: Path) -> None:
    """Else it would be skipped at run time and the container counted healthy at once."""
    b = AppFolder(tmp_path / "health").builder()
    b.add_container("web", "busybox").with_http_endpoint(8080).with_http_health_check(
        "/health", endpoint="htp"
    )
    [problem] = _problems(b)
    assert "web" in problem and "'htp'" in problem


# --------------------------------------------------------------------------- review follow-ups

#: A uvicorn app that listens on loopback only (the SDK sets UVICORN_HOST=127.0.0.1).
ASGI_HELLO = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello from the host"})
"""

#: Fetch $API_URL from inside the container (busybox wget), then serve the answer on 5540.
FETCH_SCRIPT = (
    "env -0 > /www/env0.txt; "
    'busybox wget -q -O /www/got.txt "$API_URL" || echo failed > /www/got.txt; '
    "exec busybox httpd -f -p 5540 -h /www"
)


def _listening_hosts(port: int) -> set[str]:
    """The IPv4 addresses with a TCP listener on ``port`` (from /proc/net/tcp)."""
    import ipaddress

    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            hosts.add(str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1])))
    return hosts


def test_a_container_reaches_a_uvicorn_app_that_listens_on_loopback(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    """The app host relays the engine's gateway address to the loopback-only program, never
    listening on all interfaces."""
    write_file(app_folder.folder / "api" / "main.py", ASGI_HELLO)
    b = app_folder.builder()
    api = b.add_uvicorn_app("api", "api", "main:app")
    (
        b.add_container("fetch", *_image(RECORDER_IMAGE))
        .with_entrypoint("/bin/sh")
        .with_args("-c", FETCH_SCRIPT)
        .with_http_endpoint(5540)
        .with_environment("API_URL", api.get_endpoint("http"))
        .wait_for(api)
    )
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        api_port = _port_of(snaps["api"].endpoint)
        got = _fetch(f"{snaps['fetch'].endpoint}/got.txt")
        assert got == "hello from the host"
        env = _recorder_env(str(snaps["fetch"].endpoint))
        assert env["API_URL"] == f"http://host.docker.internal:{api_port}"
        assert app.environment_for("api")["UVICORN_HOST"] == "127.0.0.1"
        # Nothing listens on all interfaces for it: only loopback and the gateway.
        hosts = _listening_hosts(api_port)
        assert "127.0.0.1" in hosts and len(hosts) == 2, hosts  # loopback + the gateway
        assert "0.0.0.0" not in hosts, hosts


def test_a_one_shot_container_finishes_without_being_unhealthy(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    b = app_folder.builder()
    job = b.add_container("job", *_image(KV_IMAGE)).with_args("-V")  # prints its version, exits 0
    after = b.add_container("after", *_image(KV_IMAGE)).with_endpoint(11211)
    after.wait_for_completion(job)
    with b.build().start(timeout=120, quiet=True) as app:
        snaps = _snaps(app)
        assert (snaps["job"].state.value, snaps["job"].exit_code) == ("Finished", 0)
        assert snaps["job"].health.value == "Unknown"
        assert snaps["after"].health.value == "Healthy"


def test_a_persistent_container_told_its_port_is_reused_across_runs(
    app_folder: AppFolder, engine: Engine, extra_images: None, docker_runtime: None
) -> None:
    """An endpoint without a target port is told a fixed in-container port, so a persistent
    container's configuration does not change from run to run (no recreation)."""
    api = engine.client.api

    def build() -> Any:
        b = app_folder.builder()
        (
            b.add_container("web", *_image(RECORDER_IMAGE))
            .with_entrypoint("/bin/sh")
            .with_args("-c", 'exec busybox httpd -f -p "$PORT" -h /')
            .with_http_endpoint(env="PORT")
            .with_lifetime("persistent")
        )
        return b

    with build().build().start(timeout=120, quiet=True) as app:
        first = _container(api, app_folder.app_id, "web")["Id"]
        assert app.environment_for("web")["PORT"] == "8080"
    with build().build().start(timeout=120, quiet=True):
        assert _container(api, app_folder.app_id, "web")["Id"] == first
