"""Regression tests of the publish review (issue 13): ``.env`` values survive a re-publish,
the user's own Dockerfile owns its command, executable paths outside the app host stay as
given, the URI-password note in ``.env``, uvicorn in generated Dockerfiles, and a raising
``configure_infrastructure`` callback reported as one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apphost_sdk import DistributedApplication
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.publishing import publish
from apphost_sdk.publishing.compose import ENV_HEADER, read_env_file
from apphost_sdk.publishing.context import PublishError
from apphost_sdk.publishing.dockerfiles import python_dockerfile

UVICORN_LINE = "RUN python -m pip install --no-cache-dir uvicorn"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "state"))


def _builder(root: Path) -> DistributedApplicationBuilder:
    root.mkdir(parents=True, exist_ok=True)
    (root / "apphost.py").write_text("")
    return DistributedApplicationBuilder([], root / "apphost.py", DistributedApplication)


def _app(root: Path, name: str = "api", requirements: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text("print('hi')\n")
    if requirements:
        (folder / "requirements.txt").write_text("redis\n")
    return folder


def _env_values(out: Path) -> list[str]:
    return [x for x in (out / ".env").read_text().splitlines() if not x.startswith("#")]


# -- 1: .env survives publishing again ------------------------------------------------------------
def _compose_model(root: Path, with_extra: bool) -> DistributedApplicationBuilder:
    b = _builder(root)
    _app(root)
    pw = b.add_parameter("cache-password", secret=True)
    cache = b.add_redis("cache", password=pw)
    api = b.add_python_app("api", "api", "app.py").with_reference(cache)
    if with_extra:
        api.with_environment("TOKEN", b.add_parameter("token", secret=True))
    else:
        api.with_environment("OLD", b.add_parameter("old-secret", secret=True))
    return b


def test_publishing_again_keeps_the_filled_env_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(_compose_model(tmp_path / "one", with_extra=False), out, "docker-compose")
    assert _env_values(out) == ["CACHE_PASSWORD=", "OLD_SECRET="]
    env = out / ".env"
    env.write_text(
        env.read_text()
        .replace("CACHE_PASSWORD=", "CACHE_PASSWORD=Filled-pass=1")
        .replace("OLD_SECRET=", "OLD_SECRET=gone")
    )
    env.chmod(0o644)
    publish(_compose_model(tmp_path / "one", with_extra=True), out, "docker-compose")
    # kept (an '=' in a value included), the new variable empty, the dropped one removed
    assert _env_values(out) == ["CACHE_PASSWORD=Filled-pass=1", "TOKEN="]
    assert env.stat().st_mode & 0o777 == 0o600
    # a fresh folder is still deterministic: nothing filled in
    fresh = tmp_path / "fresh"
    publish(_compose_model(tmp_path / "one", with_extra=True), fresh, "docker-compose")
    assert _env_values(fresh) == ["CACHE_PASSWORD=", "TOKEN="]


def test_an_unreadable_env_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"A=\xff\n")
    with pytest.raises(PublishError, match=r"\.env .*fix or remove it"):
        read_env_file(tmp_path / ".env")
    assert read_env_file(tmp_path / "missing.env") == {}


# -- 2: the user's own Dockerfile owns its command ------------------------------------------------
def test_the_users_dockerfile_gets_no_command_in_either_publisher(tmp_path: Path) -> None:
    b = _builder(tmp_path)
    folder = _app(tmp_path)
    (folder / "Dockerfile").write_text('FROM scratch\nCMD ["serve"]\n')
    b.add_python_app("api", "api", "app.py", "--x", "1")
    b.add_python_app("api2", "api", "app.py").with_args("--flag", "on")
    publish(b, tmp_path / "compose", "docker-compose")
    compose = (tmp_path / "compose" / "docker-compose.yaml").read_text()
    assert "command:" not in compose
    publish(b, tmp_path / "manifest")
    manifest = json.loads((tmp_path / "manifest" / "aspire-manifest.json").read_text())
    for name in ("api", "api2"):
        entry = manifest["resources"][name]
        assert entry["build"]["dockerfile"] == "../api/Dockerfile"
        assert "args" not in entry, name


def test_a_generated_dockerfile_still_gets_its_command(tmp_path: Path) -> None:
    b = _builder(tmp_path)
    _app(tmp_path)
    b.add_python_app("api", "api", "app.py", "--x", "1")
    publish(b, tmp_path / "compose", "docker-compose")
    assert 'command: ["--x", "1"]' in (tmp_path / "compose" / "docker-compose.yaml").read_text()


# -- 3: executable paths ---------------------------------------------------------------------------
def test_an_absolute_executable_outside_the_app_host_is_kept_as_given(tmp_path: Path) -> None:
    b = _builder(tmp_path / "host")
    inside = tmp_path / "host" / "bin" / "tool"
    b.add_executable("outside", "/usr/bin/env", str(tmp_path / "host"), "true")
    b.add_executable("inside", str(inside), str(tmp_path / "host"))
    publish(b, tmp_path / "host" / "out")
    resources = json.loads((tmp_path / "host" / "out" / "aspire-manifest.json").read_text())[
        "resources"
    ]
    assert resources["outside"]["command"] == "/usr/bin/env"
    assert resources["inside"]["command"] == "../bin/tool"


# -- 4: URI passwords ------------------------------------------------------------------------------
def test_the_env_header_says_uri_passwords_are_not_encoded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(_compose_model(tmp_path, with_extra=False), out, "docker-compose")
    text = (out / ".env").read_text()
    assert text.startswith("\n".join(ENV_HEADER) + "\n")
    assert "not\n# URL-encoded: use URL-safe passwords (letters, digits and - . _ ~ only)" in text
    compose = (out / "docker-compose.yaml").read_text()
    assert 'CACHE_URI: "redis://:${CACHE_PASSWORD}@cache:6379"' in compose


# -- 5: uvicorn in generated Dockerfiles -----------------------------------------------------------
def test_a_uvicorn_app_without_requirements_installs_uvicorn(tmp_path: Path) -> None:
    b = _builder(tmp_path)
    _app(tmp_path, "bare", requirements=False)
    _app(tmp_path, "reqs")
    proj = _app(tmp_path, "proj", requirements=False)
    (proj / "pyproject.toml").write_text("[project]\nname = 'p'\nversion = '1'\n")
    bare = b.add_uvicorn_app("bare", "bare", "main:app")
    text = python_dockerfile(bare)
    assert f"WORKDIR /app\n{UVICORN_LINE}\nCOPY . .\n" in text
    assert UVICORN_LINE not in python_dockerfile(b.add_uvicorn_app("reqs", "reqs", "main:app"))
    assert UVICORN_LINE not in python_dockerfile(b.add_uvicorn_app("proj", "proj", "main:app"))
    plain = b.add_python_app("plain", "bare", "app.py")
    assert UVICORN_LINE not in python_dockerfile(plain)


# -- 7: a raising configure_infrastructure callback ------------------------------------------------
APPHOST = textwrap.dedent(
    """
    from apphost_sdk import DistributedApplication

    def broken(spec):
        raise KeyError("sku-name")

    builder = DistributedApplication.create_builder()
    builder.add_azure_{kind}("cache").configure_infrastructure(broken)
    builder.build().run()
    """
)


@pytest.mark.parametrize("kind", ["redis", "managed_redis"])
def test_a_raising_configure_infrastructure_callback_is_one_line(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "apphost.py").write_text(APPHOST.replace("{kind}", kind))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "APPHOST_STATE_DIR": str(tmp_path / "state"),
        "NO_COLOR": "1",
    }
    result = subprocess.run(
        [sys.executable, "apphost.py", "--publisher", "manifest", "--output-path", "out"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cache: its configure_infrastructure callback raised KeyError: 'sku-name'" in lines[0]
    assert not (root / "out").exists()
