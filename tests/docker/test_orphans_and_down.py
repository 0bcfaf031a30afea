"""Nothing left behind: orphans of a SIGKILLed app host, and ``apphost down``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apphost_sdk.runtimes.base import ContainerSpec, MountSpec
from apphost_sdk.runtimes.cleanup import down
from apphost_sdk.runtimes.docker_runtime import APP_ID, LIFETIME, DockerRuntime

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from apphost_sdk.runtimes.base import ContainerSpec
    from apphost_sdk.runtimes.engines import find_engine
    from apphost_sdk.runtimes.docker_runtime import DockerRuntime

    app_id, session_id, state_dir = sys.argv[1:4]
    runtime = DockerRuntime(find_engine().engine)
    common = dict(app_id=app_id, app_name="orphanapp", session_id=session_id,
                  image="apphost-test/redis", tag="7", state_dir=Path(state_dir))
    sink = lambda stream, line: None
    session = runtime.start(ContainerSpec(resource_name="cache", **common), sink)
    kept = runtime.start(
        ContainerSpec(resource_name="store", lifetime="persistent", **common), sink
    )
    kept.wait_attached()  # the session one was created on the run's network
    print(session.container_id, kept.container_id, flush=True)
    time.sleep(600)
    """
)


def labelled(api: Any, app_id: str) -> dict[str, list[Any]]:
    filters = {"label": [f"{APP_ID}={app_id}"]}
    return {
        "containers": api.containers(all=True, filters=filters),
        "networks": api.networks(filters=filters),
        "volumes": (api.volumes(filters=filters) or {}).get("Volumes") or [],
    }


def test_orphans_of_a_killed_app_host_are_removed_persistent_kept(
    engine: object, make_runtime: Callable[[], DockerRuntime], api: Any, app_id: str, tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, app_id, uuid.uuid4().hex, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        session_id, persistent_id = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    before = labelled(api, app_id)
    assert len(before["containers"]) == 2 and len(before["networks"]) == 1

    removed = make_runtime().cleanup_orphans()

    after = labelled(api, app_id)
    assert [c["Id"] for c in after["containers"]] == [persistent_id]
    assert after["containers"][0]["State"] == "running"
    assert after["networks"] == []
    assert any("resource cache" in r for r in removed), removed
    assert any(r.startswith("network ") for r in removed), removed
    assert not any(session_id in r for r in removed if "store" in r)


def test_cleanup_keeps_objects_of_a_living_app_host(
    make_runtime: Callable[[], DockerRuntime],
    make_spec: Callable[..., ContainerSpec],
    api: Any,
    app_id: str,
) -> None:
    handle = make_runtime().start(make_spec(), lambda stream, line: None)
    make_runtime().cleanup_orphans()
    assert [c["Id"] for c in labelled(api, app_id)["containers"]] == [handle.container_id]


def test_down_removes_session_objects_and_only_on_request_persistent_and_volumes(
    make_runtime: Callable[[], DockerRuntime],
    make_spec: Callable[..., ContainerSpec],
    api: Any,
    app_id: str,
) -> None:
    runtime = make_runtime()
    session = make_spec().session_id
    sink = lambda stream, line: None  # noqa: E731
    runtime.start(make_spec(session_id=session, mounts=(MountSpec(None, "/data"),)), sink)
    kept = runtime.start(
        make_spec(session_id=session, resource_name="db", lifetime="persistent"), sink
    )
    kept.wait_attached()
    other = make_spec(app_id="other-" + app_id, session_id=session, resource_name="x")
    other_handle = runtime.start(other, sink)
    lines: list[str] = []

    removed = down(app_id, False, lines.append)

    left = labelled(api, app_id)
    assert [c["Labels"][LIFETIME] for c in left["containers"]] == ["persistent"]
    assert left["networks"] == []
    assert len(left["volumes"]) == 1
    assert any("resource cache" in r for r in removed)
    assert lines and all(line.startswith("removed ") for line in lines)

    down(app_id, True, lines.append)
    assert labelled(api, app_id) == {"containers": [], "networks": [], "volumes": []}
    # Another app's objects are untouched.
    assert [c["Id"] for c in labelled(api, other.app_id)["containers"]] == [
        other_handle.container_id
    ]
    down(other.app_id, True, lines.append)


def test_down_without_engine_says_so(engine: object) -> None:
    lines: list[str] = []
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "APPHOST_CONTAINER_RUNTIME": "docker"}
    assert down(None, False, lines.append, environ=env) == []
    assert "no container engine answers" in lines[0]
    assert "/nonexistent/docker.sock" in lines[0]
