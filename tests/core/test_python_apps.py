"""Python apps of the resource model: ``add_uvicorn_app`` and ``add_python_module``, with their
tools found in the app's ``.venv``, else the app host's environment, else PATH."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.model.executables import find_tool
from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import wait_json, write

ASGI_APP = """
import json, os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    status = 200 if scope["path"] in ("/", "/health") else 404
    body = json.dumps({"path": scope["path"], "cache": os.environ.get("ConnectionStrings__cache")})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})
"""

MODULE_MAIN = """
import json, os, sys
with open(sys.argv[1], "w") as fh:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "module": __name__}, fh)
"""


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def test_uvicorn_app_serves_on_its_endpoint_with_references(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    write(tmp_path / "web" / "main.py", ASGI_APP)
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    api = (
        b.add_uvicorn_app("api", tmp_path / "web", "main:app")
        .with_http_health_check("/health")
        .with_reference(cache)
        .wait_for(cache)
    )
    assert api.kind == "uvicorn-app"
    app = b.build()
    apps.append(app)
    app.start(timeout=60, quiet=True)
    snap = {s.name: s for s in app.snapshots()}["api"]
    assert snap.health.value == "Healthy"
    assert snap.endpoint is not None and snap.endpoint.startswith("http://localhost:")
    body = _get(f"{snap.endpoint}/")
    assert body["path"] == "/"
    assert body["cache"] == app.connection_string("cache")
    env = app.environment_for("api")
    assert env["UVICORN_HOST"] == "127.0.0.1"
    assert env["UVICORN_PORT"] == snap.endpoint.rsplit(":", 1)[1]
    app.stop()


def test_uvicorn_app_with_a_fixed_port(tmp_path: Path, apps: list[DistributedApplication]) -> None:
    from apphost_sdk.runtimes.health import free_port

    write(tmp_path / "web" / "main.py", ASGI_APP)
    port = free_port()
    b = DistributedApplication.create_builder([])
    b.add_uvicorn_app("api", tmp_path / "web", "main:app").with_http_endpoint(port=port)
    app = b.build()
    apps.append(app)
    app.start(timeout=60, quiet=True)
    assert _get(f"http://127.0.0.1:{port}/health")["path"] == "/health"
    app.stop()


def test_python_module_runs_with_the_app_hosts_interpreter(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    write(tmp_path / "worker" / "jobs" / "__init__.py", "")
    write(tmp_path / "worker" / "jobs" / "run.py", MODULE_MAIN)
    out = tmp_path / "out.json"
    b = DistributedApplication.create_builder([])
    cache = b.add_redis("cache")
    b.add_python_module("jobs", tmp_path / "worker", "jobs.run", str(out), "--x").with_reference(
        cache
    )
    app = b.build()
    apps.append(app)
    app.start(timeout=60, quiet=True)
    record = wait_json(out)
    assert record["module"] == "__main__"
    assert record["argv"] == [str(out), "--x"]
    assert record["env"]["ConnectionStrings__cache"] == app.connection_string("cache")
    assert record["env"]["OTEL_SERVICE_NAME"] == "jobs"
    app.stop()


def test_python_module_prefers_the_apps_own_venv(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    folder = tmp_path / "worker"
    write(folder / "jobs" / "__init__.py", "")
    write(
        folder / "jobs" / "run.py",
        MODULE_MAIN.replace('"module": __name__', '"exe": sys.executable'),
    )
    venv_python = folder / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    # A stand-in interpreter in the app's .venv: it records that it ran, then runs the real one.
    marker = tmp_path / "venv-used"
    write(venv_python, f'#!/bin/sh\ntouch {marker}\nexec {sys.executable} "$@"\n')
    venv_python.chmod(0o755)
    out = tmp_path / "out.json"
    b = DistributedApplication.create_builder([])
    b.add_python_module("jobs", folder, "jobs.run", str(out))
    app = b.build()
    apps.append(app)
    app.start(timeout=60, quiet=True)
    wait_json(out)
    assert marker.exists()
    app.stop()


def test_tools_are_found_in_the_venv_then_the_app_host_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir = tmp_path / "app"
    tool = app_dir / ".venv" / "bin" / "mytool"
    write(tool, "#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_tool("mytool", app_dir) == str(tool)
    # uvicorn is installed beside the app host's interpreter, not necessarily on PATH
    monkeypatch.setenv("PATH", "/nonexistent")
    found = find_tool("uvicorn", tmp_path / "no-venv")
    assert found is not None and Path(found).parent == Path(sys.executable).parent
    on_path = tmp_path / "bin" / "only-on-path"
    write(on_path, "#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_tool("only-on-path") == str(on_path)
    assert find_tool("missing-tool-xyz") is None


def test_an_executable_found_in_the_app_hosts_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apps: list[DistributedApplication]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    b = DistributedApplication.create_builder([])
    b.add_executable("v", "uvicorn", tmp_path, "--version").with_environment("X", "1")
    app = b.build()
    apps.append(app)
    app.start(timeout=30, quiet=True)
    snap = {s.name: s for s in app.snapshots()}["v"]
    assert snap.state.value in ("Running", "Finished")
    app.stop()


def test_a_missing_uvicorn_is_a_clear_start_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apps: list[DistributedApplication]
) -> None:
    import apphost_sdk.model.executables as executables

    write(tmp_path / "web" / "main.py", ASGI_APP)
    monkeypatch.setattr(executables, "find_tool", lambda name, directory=None: None)
    b = DistributedApplication.create_builder([])
    b.add_uvicorn_app("api", tmp_path / "web", "main:app")
    app = b.build()
    apps.append(app)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=30, quiet=True)
    assert "uvicorn was not found" in str(info.value)
    assert "pip install uvicorn" in str(info.value)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda b: b.add_uvicorn_app("api", ".", "main"), "'module:attribute'"),
        (lambda b: b.add_uvicorn_app("api", ".", "ma-in:app"), "a dotted module name"),
        (lambda b: b.add_python_module("w", ".", "not a module"), "a dotted module name"),
        (lambda b: b.add_python_module("w", ".", 3), "must be a string"),
    ],
)
def test_bad_python_app_arguments_fail_at_the_call(call: object, fragment: str) -> None:
    from apphost_sdk.errors import ApphostError

    b = DistributedApplication.create_builder([])
    with pytest.raises(ApphostError) as info:
        call(b)  # type: ignore[operator]
    assert fragment in str(info.value)


def test_an_executables_command_is_found_in_its_folders_venv(
    tmp_path: Path, apps: list[DistributedApplication]
) -> None:
    out = tmp_path / "ran.txt"
    tool = write(tmp_path / "app" / ".venv" / "bin" / "mytool-xyz", f"#!/bin/sh\ntouch {out}\n")
    tool.chmod(0o755)
    b = DistributedApplication.create_builder([])
    b.add_executable("x", "mytool-xyz", tmp_path / "app")
    app = b.build()
    apps.append(app)
    app.start(timeout=30, quiet=True)  # returns once it has finished (exit 0)
    assert out.exists()
    app.stop()
