"""The publish entry points as a user meets them: ``apphost publish APPHOST.py -o DIR`` and
``python apphost.py --publisher manifest --output-path DIR``, run as real subprocesses.

Publishing writes files and nothing else: no process is started, no run file appears in the
app's state folder, no Azure setting is needed and no Azure endpoint is called, no
``run_as_container()`` configure callback runs, and no secret value reaches a file or the
output. Bad input exits 1 with one line naming the fix.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphost_sdk import DistributedApplication
from apphost_sdk.errors import ApphostError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.publishing import MANIFEST_FILE, PublishError, check_publisher, publish
from apphost_sdk.publishing.publish import output_target, write_files

#: A secret given through configuration; it must appear in no written file and no output.
SECRET = "s3cret-Value-that-must-never-leak-42"

APPHOST = textwrap.dedent(
    """
    import atexit, json, os
    from pathlib import Path

    from apphost_sdk import DistributedApplication

    HERE = Path(__file__).resolve().parent


    def children():
        me, found = str(os.getpid()), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[1] == me:
                    found.append(int(entry))
        return found


    # What the app host process left running when it exits: publishing starts nothing.
    atexit.register(lambda: (HERE / "children.json").write_text(json.dumps(children())))

    builder = DistributedApplication.create_builder()
    (HERE / "mode.txt").write_text(builder.execution_context.operation)
    api_key = builder.add_parameter("api-key", secret=True)
    cache = builder.add_redis("cache")
    {extra}
    (
        builder.add_python_app("api", "api", "app.py")
        .with_http_endpoint(env="PORT")
        .with_environment("API_KEY", api_key)
        .with_reference(cache)
        .wait_for(cache)
    )
    builder.build().run()
    """
)

AZURE = """
sessions = builder.add_azure_managed_redis("sessions").run_as_container(
    lambda r: (HERE / "configured.txt").write_text("configure ran")
)
legacy = builder.add_azure_redis("legacy")
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_app(root: Path, extra: str = "", body: str | None = None) -> Path:
    """An app host folder ``root`` with a Python app ``api``; returns the apphost.py path."""
    write(root / "api" / "app.py", "import os\nprint(os.environ.get('PORT'))\n")
    write(root / "api" / "requirements.txt", "redis\n")
    source = body if body is not None else APPHOST.format(extra=textwrap.indent(extra, ""))
    return write(root / "apphost.py", source)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The subprocesses' environment: an own state folder, the secret as configuration, no
    Azure settings, and the Azure endpoint pointed at a socket that must see no connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().startswith(("azure", "connectionstrings__", "parameters__", "apphost_"))
    }
    environ.update(
        APPHOST_STATE_DIR=str(tmp_path / "state"),
        APPHOST_CONTAINER_RUNTIME="process",
        NO_COLOR="1",
        Azure__ResourceManagerEndpoint=f"http://127.0.0.1:{listener.getsockname()[1]}",
    )
    environ["Parameters__api-key"] = SECRET
    yield environ
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        conn = None
    listener.close()
    if conn is not None:
        conn.close()
        pytest.fail("publishing connected to the Azure Resource Manager endpoint")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def apphost(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "apphost_sdk", *args], env, cwd)


def assert_nothing_started(app_root: Path, state: Path) -> None:
    """No child process outlived the publish, no configure callback ran, no run file."""
    assert json.loads((app_root / "children.json").read_text()) == []
    assert not (app_root / "configured.txt").exists(), "run_as_container configure ran"
    run_files = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
    assert run_files == []


def assert_no_secret(out: Path, *outputs: str) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    for text in outputs:
        assert SECRET not in text


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- apphost publish ---------------------------------------------------------------------------
def test_cli_publishes_the_manifest_and_starts_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop", AZURE)
    result = apphost("publish", str(app), "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert {"cache", "api", "api-key", "sessions", "legacy"} <= set(manifest["resources"])
    assert (out / "sessions.module.bicep").is_file() and (out / "legacy.module.bicep").is_file()
    assert manifest["resources"]["api-key"]["type"] == "parameter.v0"
    assert f"wrote {Path('out') / MANIFEST_FILE}" in result.stdout.splitlines()
    for line in result.stdout.splitlines():  # every listed file exists
        assert line.startswith("wrote ") and (tmp_path / line.removeprefix("wrote ")).is_file()
    assert (out / MANIFEST_FILE).read_text().endswith("}\n")
    assert (tmp_path / "shop" / "mode.txt").read_text() == "publish"
    assert sorted(p.name for p in (tmp_path / "shop" / "api").iterdir()) == [
        "app.py",
        "requirements.txt",
    ]  # the generated Dockerfile goes beside the manifest, never into the app
    assert_nothing_started(tmp_path / "shop", tmp_path / "state")
    assert_no_secret(out, result.stdout, result.stderr)


def test_publishing_twice_gives_byte_identical_files(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop", AZURE)
    for out in ("out1", "out2"):
        result = apphost("publish", str(app), "-o", out, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert files(tmp_path / "out1") == files(tmp_path / "out2")


def test_existing_files_are_replaced_and_others_left_alone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app = make_app(tmp_path / "shop")
    out = tmp_path / "out"
    write(out / MANIFEST_FILE, "stale")
    write(out / "notes.txt", "mine")
    result = apphost("publish", str(app), "--output-path", str(out), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / MANIFEST_FILE).read_text())["resources"]
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_publishes_a_docker_compose_app(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop")
    result = apphost(
        "publish", str(app), "-o", "out", "--publisher", "docker-compose", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert "services:" in (out / "docker-compose.yaml").read_text()
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600  # the operator fills secrets
    assert not (out / MANIFEST_FILE).exists()
    listed = {line.removeprefix("wrote ") for line in result.stdout.splitlines()}
    assert {str(Path("out") / "docker-compose.yaml"), str(Path("out") / ".env")} <= listed
    assert_nothing_started(tmp_path / "shop", tmp_path / "state")
    assert_no_secret(out, result.stdout, result.stderr)


# -- python apphost.py --publisher ... --------------------------------------------------------
def test_python_apphost_publisher_manifest(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop", AZURE)
    result = run(
        [sys.executable, str(app), "--publisher", "manifest", "--output-path", "out"],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())["resources"]["cache"]
    assert_nothing_started(tmp_path / "shop", tmp_path / "state")
    assert_no_secret(tmp_path / "out", result.stdout, result.stderr)


def test_an_output_path_ending_in_json_names_the_manifest(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app = make_app(tmp_path / "shop")
    result = run(
        [sys.executable, str(app), "--publisher=manifest", "--output-path=deploy/app.json"],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "deploy" / "app.json").read_text())["resources"]
    assert not (tmp_path / "deploy" / MANIFEST_FILE).exists()
    assert f"wrote {Path('deploy') / 'app.json'}" in result.stdout.splitlines()


def test_values_the_deployer_supplies_need_no_configuration(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A connection string or parameter without a value is a deploy-time input (Aspire's
    ``parameter.v0``), not a model error, when publishing."""
    body = textwrap.dedent(
        """
        from apphost_sdk import DistributedApplication

        builder = DistributedApplication.create_builder()
        db = builder.add_connection_string("db")
        region = builder.add_parameter("region")
        builder.add_container("web", "nginx").with_reference(db).with_environment("REGION", region)
        builder.build().run()
        """
    )
    app = make_app(tmp_path / "shop", body=body)
    result = apphost("publish", str(app), "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resources = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())["resources"]
    assert resources["db"]["type"] == resources["region"]["type"] == "parameter.v0"


def test_python_apphost_help_mentions_publishing(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop")
    result = run([sys.executable, str(app), "--help"], env, tmp_path)
    assert result.returncode == 0
    assert "--publisher manifest|docker-compose" in result.stdout


# -- bad input -----------------------------------------------------------------------------------
def test_an_unknown_publisher_is_refused_before_the_app_host_runs(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app = make_app(tmp_path / "shop")
    result = apphost("publish", str(app), "-o", "out", "--publisher", "helm", env=env, cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "unknown publisher 'helm'" in line and "manifest or docker-compose" in line
    assert not (tmp_path / "shop" / "mode.txt").exists()
    assert not (tmp_path / "out").exists()
    direct = run([sys.executable, str(app), "--publisher=helm", "--output-path=out"], env, tmp_path)
    assert direct.returncode == 1
    assert "unknown publisher 'helm'" in one_line(direct.stderr)


def test_a_missing_output_folder_is_named(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop")
    result = apphost("publish", str(app), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "-o DIR" in one_line(result.stderr)
    direct = run([sys.executable, str(app), "--publisher", "manifest"], env, tmp_path)
    assert direct.returncode == 1
    assert "--output-path DIR" in one_line(direct.stderr)


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop")
    write(tmp_path / "taken", "a file")
    result = apphost("publish", str(app), "-o", "taken", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "is not a folder" in one_line(result.stderr)
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_model_error_exits_1_naming_it(tmp_path: Path, env: dict[str, str]) -> None:
    body = textwrap.dedent(
        """
        from apphost_sdk import DistributedApplication

        builder = DistributedApplication.create_builder()
        builder.add_redis("cache").wait_for(builder.add_redis("CACHE"))
        builder.build().run()
        """
    )
    app = make_app(tmp_path / "shop", body=body)
    result = apphost("publish", str(app), "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "resource name 'CACHE' is used twice" in one_line(result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_app_host_that_raises_is_shown_without_sdk_frames(
    tmp_path: Path, env: dict[str, str]
) -> None:
    body = "raise RuntimeError('broken app host')\n"
    app = make_app(tmp_path / "shop", body=body)
    result = apphost("publish", str(app), "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "RuntimeError: broken app host" in result.stderr
    assert "apphost_sdk/" not in result.stderr


def test_an_app_host_that_never_runs_is_named(tmp_path: Path, env: dict[str, str]) -> None:
    app = make_app(tmp_path / "shop", body="x = 1\n")
    result = apphost("publish", str(app), "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "never called builder.build().run()" in one_line(result.stderr)


def test_a_missing_app_host_is_named(tmp_path: Path, env: dict[str, str]) -> None:
    result = apphost("publish", "nowhere/apphost.py", "-o", "out", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "no such app host file" in one_line(result.stderr)


def test_a_plain_executable_cannot_go_to_compose(tmp_path: Path, env: dict[str, str]) -> None:
    body = textwrap.dedent(
        """
        from apphost_sdk import DistributedApplication

        builder = DistributedApplication.create_builder()
        builder.add_executable("worker", "sleep", ".", "60")
        builder.build().run()
        """
    )
    app = make_app(tmp_path / "shop", body=body)
    result = apphost(
        "publish", str(app), "-o", "out", "--publisher", "docker-compose", env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "worker" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing is written when publishing fails


def test_publish_help(tmp_path: Path, env: dict[str, str]) -> None:
    result = apphost("publish", "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0
    assert "--publisher" in result.stdout and "-o DIR" in result.stdout
    assert "publish APPHOST.py" in apphost("--help", env=env, cwd=tmp_path).stdout


# -- the Python API -----------------------------------------------------------------------------
def test_publish_takes_a_builder_and_returns_the_written_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "state"))
    app_host = write(tmp_path / "apphost.py", "")
    builder = DistributedApplicationBuilder(
        ["--publisher=manifest"], app_host, DistributedApplication
    )
    assert builder.execution_context.is_publish_mode
    builder.add_parameter("api-key", secret=True)
    builder.add_redis("cache")
    written = publish(builder, tmp_path / "out")
    assert written[0] == tmp_path / "out" / MANIFEST_FILE
    assert all(p.is_file() for p in written)
    assert json.loads(written[0].read_text())["resources"]["cache"]


def test_publisher_and_output_checks() -> None:
    assert check_publisher("docker-compose") == "docker-compose"
    with pytest.raises(PublishError, match="unknown publisher 'yaml'"):
        check_publisher("yaml")
    assert output_target("a/b.json").manifest_name == "b.json"
    assert output_target("a/b.json", "docker-compose").directory == Path("a/b.json")
    assert output_target("dir").directory == Path("dir")
    with pytest.raises(PublishError, match="-o DIR"):
        output_target("  ")
    with pytest.raises(ApphostError, match="not a path inside the output folder"):
        write_files(Path("/nonexistent"), {"../escape.txt": ""})
