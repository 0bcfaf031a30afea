"""The embedded Redis runtime: a real ``redis-server`` child (issue 2, "The embedded Redis
runtime" and "Secrets and state")."""

from __future__ import annotations

import json
import os
import socket
import stat
import string
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.runtimes.health import free_port

from .helpers import apphost_file, builder_from, pid_alive, wait_until


def client_for(app: DistributedApplication, name: str = "cache") -> redis.Redis:
    cs = app.connection_string(name)
    assert cs is not None
    hostport, _, rest = cs.partition(",")
    host, _, port = hostport.rpartition(":")
    password = rest.partition("password=")[2] or None
    return redis.Redis(
        host=host, port=int(port), password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def start(builder: DistributedApplicationBuilder, apps: list[DistributedApplication]):  # type: ignore[no-untyped-def]
    app = builder.build()
    apps.append(app)
    return app.start(timeout=20, quiet=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_password_never_in_arguments_and_config_is_private(
    apps: list[DistributedApplication],
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    app = start(b, apps)
    client = client_for(app)
    password = client.connection_pool.connection_kwargs["password"]
    assert client.ping() is True
    port = client.connection_pool.connection_kwargs["port"]
    for wrong in (None, "wrong"):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password=wrong, retry=Retry(NoBackoff(), 0)).ping()
    info = client.info("server")
    pid = int(info["process_id"])
    assert pid in _children()
    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert password.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert password not in ps.stdout
    # bound to loopback only, configured through a 0600 file inside the app's state directory
    assert client.config_get("bind") == {"bind": "127.0.0.1"}
    conf = Path(info["config_file"])
    assert conf.is_relative_to(app.state_dir)
    assert mode(conf) == 0o600
    assert "requirepass" in conf.read_text()
    assert mode(app.state_dir) == 0o700
    app.stop()
    assert wait_until(lambda: not pid_alive(pid), 5)
    assert not conf.exists()


def _children() -> list[int]:
    from .helpers import children_of

    return children_of(os.getpid())


def test_generated_password_is_kept_per_app_host(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    body = """
    def with_cache(args):
        b = make_builder(args)
        b.add_redis("cache")
        return b
    """
    host = apphost_file(tmp_path / "shop", body)
    passwords = []
    for _ in range(2):
        app = start(builder_from(host, function="with_cache"), apps)
        client = client_for(app)
        assert client.ping()
        passwords.append(client.connection_pool.connection_kwargs["password"])
        secrets_file = app.state_dir / "secrets.json"
        app.stop()
    assert passwords[0] == passwords[1]
    pw = passwords[0]
    assert len(pw) == 22 and set(pw) <= set(string.ascii_letters + string.digits)
    assert mode(secrets_file) == 0o600
    assert pw in json.loads(secrets_file.read_text()).values()
    # another app host gets its own password and state folder
    other = apphost_file(tmp_path / "other", body)
    app = start(builder_from(other, function="with_cache"), apps)
    assert client_for(app).connection_pool.connection_kwargs["password"] != pw
    assert app.state_dir != secrets_file.parent


def test_data_volume_keeps_data_across_runs(apps: list[DistributedApplication]) -> None:
    def build(volume: bool) -> DistributedApplicationBuilder:
        b = DistributedApplication.create_builder([])
        cache = b.add_redis("cache")
        if volume:
            cache.with_data_volume()
        return b

    app = start(build(True), apps)
    client = client_for(app)
    assert client.config_get("save") == {"save": "60 1"}
    client.set("kept", "yes")
    app.stop()
    app = start(build(True), apps)
    assert client_for(app).get("kept") == b"yes"
    app.stop()
    # without a volume every run starts empty; the save policy is Redis's default on every
    # runtime alike (the run's data folder is removed at stop)
    app = start(build(False), apps)
    client = client_for(app)
    assert client.config_get("save") == {"save": "3600 1 300 100 60 10000"}
    assert client.get("kept") is None
    client.set("gone", "1")
    app.stop()
    app = start(build(False), apps)
    assert client_for(app).get("gone") is None


def test_bind_mount_persistence_and_args_are_honoured(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    data = tmp_path / "redis-data"
    b = DistributedApplication.create_builder([])
    (
        b.add_redis("cache")
        .with_data_bind_mount(str(data))
        .with_persistence(timedelta(seconds=7), keys_changed_threshold=3)
        .with_args("--maxmemory", "12mb")
    )
    app = start(b, apps)
    client = client_for(app)
    assert client.config_get("save") == {"save": "7 3"}
    assert client.config_get("maxmemory") == {"maxmemory": str(12 * 1024 * 1024)}
    assert Path(client.config_get("dir")["dir"]).resolve() == data.resolve()
    client.set("k", "v")
    app.stop()
    assert (data / "dump.rdb").is_file()


def test_fixed_host_port_is_used_and_reusable_right_after_a_stop(
    apps: list[DistributedApplication],
) -> None:
    port = free_port()

    def run() -> DistributedApplication:
        b = DistributedApplication.create_builder([])
        b.add_redis("cache", port=port)
        return start(b, apps)

    app = run()
    cs = app.connection_string("cache")
    assert cs is not None and cs.startswith(f"localhost:{port},")
    client = client_for(app)
    assert client.ping()
    app.stop()  # the server closes the client's connection: TIME_WAIT on the fixed port
    app = run()
    assert client_for(app).ping()


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_fixed_host_port_with_any_listener_is_taken(
    address: str, apps: list[DistributedApplication]
) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, 0))
        s.listen()
        port = s.getsockname()[1]
        b = DistributedApplication.create_builder([])
        b.add_redis("cache", port=port)
        app = b.build()
        apps.append(app)
        with pytest.raises(ResourceStartError, match=f"host port {port} is already in use"):
            app.start(timeout=10, quiet=True)


def test_fixed_host_port_taken_fails_clearly(
    tmp_path: Path, svc: Path, taken_port: int, apps: list[DistributedApplication]
) -> None:
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache").with_host_port(taken_port)
    b.add_python_app("api", str(svc), "dump.py", str(tmp_path / "api.json")).with_reference(cache)
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=20, quiet=True)
    message = str(info.value)
    assert f"host port {taken_port} is already in use" in message
    assert "cache" in message and "with_host_port" in message
    assert message.startswith("cache failed: "), message
    assert not (tmp_path / "api.json").exists()


def test_missing_redis_binary_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    monkeypatch.setenv("APPHOST_REDIS_SERVER", str(tmp_path / "nope" / "redis-server"))
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError, match=r"APPHOST_REDIS_SERVER=.*fix the path"):
        app.start(timeout=10, quiet=True)


def test_a_killed_app_hosts_run_folder_is_swept_at_the_next_start(
    apps: list[DistributedApplication],
) -> None:
    b = DistributedApplication.create_builder([])
    b.add_redis("cache")
    app = b.build()
    # What an app host killed by SIGKILL leaves: its run folder, config file with the password.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = app.state_dir / "run" / "deadbeef0000"
    stale.mkdir(parents=True)
    (stale / "owner.json").write_text(json.dumps({"pid": dead.pid, "start": "1"}))
    (stale / "cache.conf").write_text("requirepass secret-of-a-dead-run\n")
    # A run whose owner still lives (this test process) is left alone.
    live = app.state_dir / "run" / "cafe00000000"
    live.mkdir(parents=True)
    (live / "owner.json").write_text(json.dumps({"pid": os.getpid()}))
    apps.append(app)
    app.start(timeout=20, quiet=True)
    assert not stale.exists()
    assert live.exists()
    app.stop()
    runs = {p.name for p in (app.state_dir / "run").iterdir()}
    assert runs == {"cafe00000000"}, "a cleanly stopped run leaves no folder"


def test_a_password_with_quotes_backslashes_and_spaces_works(
    apps: list[DistributedApplication],
) -> None:
    password = "pa\"ss\\word line2 #$(x) 'q' and-more"
    b = DistributedApplication.create_builder([])
    b.add_redis("cache").with_password(b.add_parameter("pw", password, secret=True))
    app = start(b, apps)
    port = int((app.connection_string("cache") or "").split(",")[0].rsplit(":", 1)[1])
    assert redis.Redis(port=port, password=password, retry=Retry(NoBackoff(), 0)).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="pa", retry=Retry(NoBackoff(), 0)).ping()
