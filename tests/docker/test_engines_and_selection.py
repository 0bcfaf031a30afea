"""Engine discovery (the docker CLI's order) and runtime selection; most need no engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from apphost_sdk.errors import RuntimeUnavailableError
from apphost_sdk.runtimes.engines import candidates, find_engine
from apphost_sdk.runtimes.selection import select_runtime


def test_docker_host_alone_when_set() -> None:
    found = candidates("docker", {"DOCKER_HOST": "tcp://10.0.0.1:2375"})
    assert [(c.url, c.source) for c in found] == [("tcp://10.0.0.1:2375", "DOCKER_HOST")]


def test_default_order_without_docker_host(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/1000"}
    found = [(c.url, c.kind) for c in candidates("any", env)]
    assert found == [
        ("unix:///var/run/docker.sock", "docker"),
        ("unix:///run/user/1000/docker.sock", "docker"),
        (f"unix://{tmp_path}/.docker/run/docker.sock", "docker"),
        ("unix:///run/user/1000/podman/podman.sock", "podman"),
        ("unix:///run/podman/podman.sock", "podman"),
    ]


def write_context(home: Path, name: str, host: str, *, current: bool = True) -> None:
    config = home / ".docker"
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}})
    )
    if current:
        (config / "config.json").write_text(json.dumps({"currentContext": name}))


def test_current_context_comes_first(tmp_path: Path) -> None:
    write_context(tmp_path, "remote", "tcp://192.0.2.7:2376")
    found = candidates("docker", {"HOME": str(tmp_path)})
    assert (found[0].url, found[0].source) == ("tcp://192.0.2.7:2376", "docker context 'remote'")
    assert found[1].url == "unix:///var/run/docker.sock"


def test_docker_context_variable_overrides_config(tmp_path: Path) -> None:
    write_context(tmp_path, "colima", "unix:///tmp/colima.sock", current=False)
    found = candidates("docker", {"HOME": str(tmp_path), "DOCKER_CONTEXT": "colima"})
    assert found[0].url == "unix:///tmp/colima.sock"


def test_podman_candidates_only_for_podman(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/5"}
    assert [c.source for c in candidates("podman", env)] == [
        "Podman user socket",
        "Podman system socket",
    ]


def test_unreachable_candidates_are_reported_with_reasons(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    discovery = find_engine("podman", env)
    assert discovery.engine is None
    assert f"unix://{tmp_path}/podman/podman.sock (Podman user socket): no socket there" in (
        discovery.tried()
    )


def test_explicit_docker_unreachable_is_one_clear_error() -> None:
    env = {"APPHOST_CONTAINER_RUNTIME": "docker", "DOCKER_HOST": "tcp://127.0.0.1:9"}
    with pytest.raises(RuntimeUnavailableError) as info:
        select_runtime(lambda line: None, env)
    message = str(info.value)
    assert "tcp://127.0.0.1:9 (DOCKER_HOST)" in message
    assert "dockerd" in message and "APPHOST_CONTAINER_RUNTIME=process" in message


def test_explicit_podman_unreachable_says_how_to_start_it(tmp_path: Path) -> None:
    env = {"APPHOST_CONTAINER_RUNTIME": "podman", "HOME": str(tmp_path)}
    with pytest.raises(RuntimeUnavailableError, match=r"podman\.socket"):
        select_runtime(lambda line: None, env)


def test_auto_falls_back_to_process_with_one_line() -> None:
    lines: list[str] = []
    env = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    runtime = select_runtime(lines.append, env)
    assert runtime is None  # resources with a process recipe run as local processes
    assert len(lines) == 1
    assert "unix:///nonexistent.sock" in lines[0] and "local processes" in lines[0]


def test_auto_uses_a_reachable_engine(engine: object) -> None:
    runtime = select_runtime(lambda line: None, {"HOME": "/nonexistent"})
    assert runtime is not None
    try:
        assert runtime.name == "docker"
        assert "docker engine" in runtime.describe()
    finally:
        runtime.close()
