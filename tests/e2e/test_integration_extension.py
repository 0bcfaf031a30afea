"""A third-party integration (``kv_integration.py``: a ``ContainerResource`` subclass and an
``add_key_value(builder, name)`` function, public names only) runs like a built-in resource:
health-checked by its own probe, referenced with per-consumer connection info, and shown by
``apphost start --json`` / ``apphost status --json`` with a built-in Redis beside it."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ApphostError
from apphost_sdk.runtimes.engines import Engine

from .conftest import (
    RECORDER_IMAGE,
    TALK_SCRIPT,
    TEST_IMAGE,
    TEST_TAG,
    AppFolder,
    apphost_cli,
    port_accepts,
    wait_until,
    write_file,
)
from .kv_integration import KeyValueResource, add_key_value, memcached_version

E2E_DIR = Path(__file__).resolve().parent

#: A host process that sets and gets a key on each key-value server it references, at once and
#: without retrying (it starts only once they are healthy), through the injected variables.
WORKER = (
    TALK_SCRIPT
    + r"""
import json, os, sys, time

record = {"env": {k: v for k, v in os.environ.items()
                  if k.startswith(("ConnectionStrings__", "KV", "SLOWKV", "CACHE_"))}}
for name in sys.argv[2:]:
    try:
        host, _, port = os.environ[f"ConnectionStrings__{name}"].rpartition(":")
        value = f"{name}-value".encode()
        request = b"set k 0 0 %d\r\n%s\r\nget k\r\n" % (len(value), value)
        record[name] = talk(host, port, request, b"END\r\n")
        prefix = name.upper().replace("-", "_")
        record[name + "-by-host-port"] = talk(
            os.environ[prefix + "_HOST"], os.environ[prefix + "_PORT"], b"get k\r\n", b"END\r\n"
        )
    except Exception as exc:
        record[name] = repr(exc)
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump(record, fh)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""
)

#: memcached starts listening only after a busy loop (the image's /bin/sh is dash: no sleep):
#: the engine publishes the port at once, so only the integration's probe can tell it is ready.
SLOW_START = (
    "i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; exec memcached -p 11211 -l 0.0.0.0"
)


def _http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def _port(endpoint: str | None) -> int:
    assert endpoint is not None and endpoint.startswith("localhost:"), endpoint
    return int(endpoint.rsplit(":", 1)[1])


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(wait_until(lambda: path.exists() and path.read_text(), timeout=30)))


def test_a_third_party_resource_is_probed_and_referenced_like_a_built_in_one(
    app_folder: AppFolder,
    engine: Engine,
    extra_images: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")
    out = tmp_path / "worker.json"
    write_file(app_folder.folder / "worker" / "worker.py", WORKER)
    b = app_folder.builder()
    kv = add_key_value(b, "kv").with_max_memory(32)
    slow = add_key_value(b, "slowkv").with_entrypoint("/bin/sh").with_args("-c", SLOW_START)
    assert isinstance(kv, KeyValueResource) and isinstance(slow, KeyValueResource)
    (
        b.add_python_app("worker", "worker", "worker.py", str(out), "kv", "slowkv")
        .with_reference(kv)
        .with_reference(slow)
        .wait_for(kv)
        .wait_for(slow)
    )
    b.add_container("rec", *RECORDER_IMAGE.split(":")).with_http_endpoint(5540).with_reference(kv)
    app = b.build()

    # Start in the background and watch slowkv's state and health while it starts.
    errors: list[BaseException] = []

    def start() -> None:
        try:
            app.start(timeout=120, quiet=True)
        except BaseException as exc:
            errors.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    seen: list[tuple[str, str, bool | None]] = []  # state, health, answers `version`
    deadline = time.monotonic() + 120
    while starter.is_alive() and time.monotonic() < deadline:
        try:
            snap = next(s for s in app.snapshots() if s.name == "slowkv")
        except (ApphostError, StopIteration):  # not started yet
            time.sleep(0.01)
            continue
        answers = None
        if snap.state.value == "Running" and snap.health.value != "Healthy":
            answers = memcached_version("127.0.0.1", _port(snap.endpoint)) is not None
        if not seen or seen[-1][:2] != (snap.state.value, snap.health.value) or answers:
            seen.append((snap.state.value, snap.health.value, answers))
        time.sleep(0.01)
    starter.join(10)
    assert not errors, errors
    try:
        transitions = [s[:2] for s in seen]
        # Running but not yet healthy while memcached did not answer, then Healthy.
        assert ("Running", "Unknown", False) in seen, seen
        assert transitions[-1] == ("Running", "Healthy"), seen
        assert transitions.index(("Running", "Unknown")) < transitions.index(("Running", "Healthy"))

        snaps = {s.name: s for s in app.snapshots()}
        for name in ("kv", "slowkv"):
            snap = snaps[name]
            assert (snap.kind, snap.state.value, snap.health.value, snap.runtime) == (
                "key-value",
                "Running",
                "Healthy",
                "docker",
            ), snap
        kv_port, slow_port = _port(snaps["kv"].endpoint), _port(snaps["slowkv"].endpoint)
        assert app.connection_string("kv") == f"localhost:{kv_port}"
        assert memcached_version("127.0.0.1", kv_port)

        # The worker started once both were healthy and used them at its first try.
        record = _read_json(out)
        env = record["env"]
        assert env["ConnectionStrings__kv"] == f"localhost:{kv_port}"
        assert (env["KV_HOST"], env["KV_PORT"]) == ("localhost", str(kv_port))
        assert env["ConnectionStrings__slowkv"] == f"localhost:{slow_port}"
        for name in ("kv", "slowkv"):
            value = f"{name}-value"
            assert record[name] == f"STORED\r\nVALUE k 0 {len(value)}\r\n{value}\r\nEND\r\n"
            assert record[name + "-by-host-port"] == f"VALUE k 0 {len(value)}\r\n{value}\r\nEND\r\n"

        # A container reaches it by resource name and target port.
        rec = snaps["rec"].endpoint
        assert rec is not None
        raw = wait_until(lambda: _http_get(rec + "/env.txt"), timeout=30)
        rec_env = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
        assert rec_env["ConnectionStrings__kv"] == "kv:11211"
        assert (rec_env["KV_HOST"], rec_env["KV_PORT"]) == ("kv", "11211")

        # Its own fluent method reached the server (memcached -m 32).
        with socket.create_connection(("127.0.0.1", kv_port), timeout=5) as sock:
            sock.sendall(b"stats settings\r\n")
            data = b""
            while b"END\r\n" not in data:
                data += sock.recv(4096)
        assert b"STAT maxbytes 33554432\r\n" in data
    finally:
        app.stop()


APPHOST = f"""
    from apphost_sdk import DistributedApplication
    from kv_integration import add_key_value

    builder = DistributedApplication.create_builder()
    cache = builder.add_redis("cache").with_image("{TEST_IMAGE}", "{TEST_TAG}")
    kv = add_key_value(builder, "kv").with_max_memory(16)
    (
        builder.add_python_app("worker", "worker", "worker.py", "out.json", "kv")
        .with_reference(kv)
        .with_reference(cache)
        .wait_for(kv)
        .wait_for(cache)
    )
    builder.build().run()
"""


def test_a_third_party_integration_shows_in_apphost_status_like_a_built_in_one(
    app_folder: AppFolder, engine: Engine, extra_images: None
) -> None:
    path = write_file(app_folder.path, APPHOST)  # the folder's own app host file
    write_file(app_folder.folder / "worker" / "worker.py", WORKER)
    pythonpath = os.pathsep.join(p for p in (str(E2E_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {"APPHOST_CONTAINER_RUNTIME": "docker", "PYTHONPATH": pythonpath}
    api = engine.client.api
    flt = {"label": [f"apphost-sdk.app-id={app_folder.app_id}"]}
    port: int | None = None
    try:
        started = apphost_cli("start", str(path), "--json", env=env, timeout=180)
        assert started.returncode == 0, started.stderr
        status = json.loads(started.stdout)
        assert status["phase"] == "ready"
        resources = {r["name"]: r for r in status["resources"]}
        kv, cache = resources["kv"], resources["cache"]
        assert set(kv) == set(cache)  # the same shape as a built-in resource's
        for r in (kv, cache):
            assert (r["state"], r["health"], r["runtime"]) == ("Running", "Healthy", "docker"), r
        assert (kv["kind"], cache["kind"]) == ("key-value", "redis")
        port = _port(kv["endpoint"])
        assert kv["environment"] == {
            "ConnectionStrings__kv": f"localhost:{port}",
            "KV_HOST": "localhost",
            "KV_PORT": str(port),
        }
        assert cache["environment"]["CACHE_PASSWORD"] == "***"  # a built-in's secrets, masked

        shown = apphost_cli("status", str(path), "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        [again] = json.loads(shown.stdout)
        kv_again = next(r for r in again["resources"] if r["name"] == "kv")
        assert {k: kv_again[k] for k in ("kind", "state", "health", "endpoint", "runtime")} == {
            k: kv[k] for k in ("kind", "state", "health", "endpoint", "runtime")
        }
        assert kv_again["environment"] == kv["environment"]

        table = apphost_cli("status", str(path), env=env)
        assert table.returncode == 0, table.stderr
        [row] = [ln for ln in table.stdout.splitlines() if ln.split()[:1] == ["kv"]]
        assert "key-value" in row and "Healthy" in row and f"localhost:{port}" in row

        record = _read_json(app_folder.folder / "worker" / "out.json")
        assert record["kv"] == "STORED\r\nVALUE k 0 8\r\nkv-value\r\nEND\r\n"
        assert memcached_version("127.0.0.1", port)
        assert len(api.containers(filters=flt)) == 2  # cache and kv
    finally:
        stopped = apphost_cli("stop", str(path), env=env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert api.containers(all=True, filters=flt) == []
    assert port is not None and not port_accepts(port)
