"""The quick start as a user runs it: ``apphost start samples/quickstart/apphost.py --json``,
then HTTP to the API, ``apphost status``, ``apphost stop``, on both Redis runtimes."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from apphost_sdk.runtimes.engines import Engine
from apphost_sdk.state import app_identity

from .conftest import (
    QUICKSTART,
    TEST_IMAGE,
    TEST_TAG,
    apphost_cli,
    pid_alive,
    port_accepts,
    redis_server_cmdlines,
    wait_until,
    write_file,
)

QUICKSTART_APP_ID = app_identity(QUICKSTART)[1]


def _docker_objects(api: Any, app_id: str) -> list[str]:
    """Containers and networks (any state) carrying the app's id label."""
    flt = {"label": [f"apphost-sdk.app-id={app_id}"]}
    found = [f"container {c['Names'][0]}" for c in api.containers(all=True, filters=flt)]
    found += [f"network {n['Name']}" for n in api.networks(filters=flt)]
    return found


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each quick-start test runs once per runtime; the docker one needs the engine and the
    quick start's default image (tagged from the local test image, see conftest)."""
    name = str(request.param)
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", name)
    api = None
    if name == "docker":
        engine: Engine = request.getfixturevalue("engine")
        request.getfixturevalue("default_redis_image")
        api = engine.client.api
        from apphost_sdk.runtimes.cleanup import remove_app_objects

        remove_app_objects(api, QUICKSTART_APP_ID, False)  # leftovers of an aborted run
    yield name
    # Whatever happened, leave no app host running.
    apphost_cli("stop", str(QUICKSTART))


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return dict(json.loads(resp.read()))


def _one_json_object(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)  # the whole output is exactly one JSON document
    assert isinstance(data, dict), stdout
    return data


def _resource(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in status["resources"] if r["name"] == name)


def test_quickstart_start_status_stop(
    runtime: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    started = apphost_cli("start", str(QUICKSTART), "--json")
    assert started.returncode == 0, started.stderr
    status = _one_json_object(started.stdout)
    assert status["phase"] == "ready"
    host_pid = int(status["pid"])
    cache, api = _resource(status, "cache"), _resource(status, "api")
    assert (cache["state"], cache["health"]) == ("Running", "Healthy")
    assert (api["state"], api["health"]) == ("Running", "Healthy")
    assert cache["runtime"] == runtime
    api_pid = int(api["runtime"].removeprefix("pid "))

    # Secrets are masked in the JSON ...
    env = cache["environment"]
    assert env["CACHE_PASSWORD"] == "***"
    assert env["ConnectionStrings__cache"] == f"localhost:{env['CACHE_PORT']},password=***"
    redis_port = int(env["CACHE_PORT"])

    # ... and shown with --show-secrets (a second start of a running app prints its status).
    shown = apphost_cli("start", str(QUICKSTART), "--json", "--show-secrets")
    assert shown.returncode == 0, shown.stderr
    shown_status = _one_json_object(shown.stdout)
    assert shown_status["pid"] == host_pid
    password = _resource(shown_status, "cache")["environment"]["CACHE_PASSWORD"]
    assert password != "***" and len(password) == 22
    assert password not in started.stdout
    assert (
        _resource(shown_status, "cache")["environment"]["ConnectionStrings__cache"]
        == f"localhost:{redis_port},password={password}"
    )

    # The API counts visits in Redis: two GETs increment, and the key is in that Redis.
    first = _get(api["endpoint"] + "/")
    second = _get(api["endpoint"] + "/")
    assert second["visits"] == first["visits"] + 1
    assert second["firstVisit"] == first["firstVisit"]
    client = redis.Redis(host="127.0.0.1", port=redis_port, password=password)
    try:
        assert any(b"visits" in key for key in client.keys("*"))
    finally:
        client.close()

    listed = apphost_cli("status", "--json")
    assert listed.returncode == 0, listed.stderr
    apps = json.loads(listed.stdout)
    assert [(a["app"], a["pid"], a["phase"]) for a in apps] == [("quickstart", host_pid, "ready")]
    assert "***" in listed.stdout and password not in listed.stdout

    stopped = apphost_cli("stop", str(QUICKSTART))
    assert stopped.returncode == 0, stopped.stderr
    assert f"pid {host_pid}" in stopped.stdout and "SIGKILL" not in stopped.stdout

    # Nothing is left: app host, API, Redis (process or container and network).
    assert not pid_alive(host_pid) and not pid_alive(api_pid)
    assert not [c for c in redis_server_cmdlines() if f":{redis_port}" in c]
    assert not port_accepts(redis_port)
    if runtime == "docker":
        api_client = request.getfixturevalue("engine").client.api
        assert _docker_objects(api_client, QUICKSTART_APP_ID) == []
    assert json.loads(apphost_cli("status", "--json").stdout) == []
    log = (tmp_path / "state" / QUICKSTART_APP_ID / "apphost.log").read_text()
    assert "cache" in log and password not in log


FIXED_PORT_APPHOST = f"""
    from apphost_sdk import DistributedApplication

    builder = DistributedApplication.create_builder()
    port = int(builder.configuration.get_str("Test:Port"))
    builder.add_azure_redis("cache").run_as_container(
        lambda redis: redis.with_image("{TEST_IMAGE}", "{TEST_TAG}").with_host_port(port)
    )
    builder.build().run()
"""


def test_start_fails_on_a_taken_fixed_port(
    runtime: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app_host = write_file(tmp_path / "fixedport" / "apphost.py", FIXED_PORT_APPHOST)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = apphost_cli("start", str(app_host), "--json", "--", f"--Test:Port={port}")
    assert done.returncode != 0
    assert done.stdout == ""
    reason = done.stderr.splitlines()[0]
    assert reason.startswith("apphost start: ") and str(port) in reason, done.stderr
    assert "Traceback" not in done.stderr
    if runtime == "docker":  # the port is checked before anything is created
        api_client = request.getfixturevalue("engine").client.api
        assert _docker_objects(api_client, app_identity(app_host)[1]) == []
    state_dir = tmp_path / "state" / app_identity(app_host)[1]
    status = json.loads((state_dir / "status.json").read_text())
    wait_until(lambda: not pid_alive(int(status["pid"])), what="the failed app host to exit")
