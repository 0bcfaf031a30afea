"""The Docker Compose publisher: the YAML and .env it writes, generated Dockerfiles, and a real
``docker-compose up`` of a published app (Debian's docker-compose 1.29, offline base images
from tests/support/build_python_image.sh)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from apphost_sdk import DistributedApplication
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.publishing import publish
from apphost_sdk.publishing.compose import to_yaml
from apphost_sdk.publishing.context import PublishError
from apphost_sdk.publishing.dockerfiles import container_ports, python_dockerfile

ROOT = Path(__file__).resolve().parents[2]
PYTHON_IMAGE = os.environ.get("APPHOST_TEST_PYTHON_IMAGE", "apphost-test/python:3")
REDIS_IMAGE = os.environ.get("APPHOST_TEST_REDIS_CLI_IMAGE", "apphost-test/redis-cli:7")
SECRET = "s3cret-Value-that-must-not-leak"

APP_PY = textwrap.dedent(
    """\
    import http.server, os, redis

    def connect():
        # ConnectionStrings__cache is "host:port,password=..." (StackExchange.Redis form)
        server, _, rest = os.environ["ConnectionStrings__cache"].partition(",")
        host, _, port = server.rpartition(":")
        password = rest.partition("password=")[2] or None
        assert host == os.environ["CACHE_HOST"], host
        return redis.Redis(host=host, port=int(port), password=password, socket_timeout=5)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b"ok"
            else:
                r = connect()
                r.set("last-path", self.path)
                body = f"{r.incr('visits')} {r.get('last-path').decode()}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def _builder(tmp_path: Path, *args: str) -> DistributedApplicationBuilder:
    app_host = tmp_path / "apphost.py"
    app_host.write_text("")
    return DistributedApplicationBuilder(
        ["--publisher=docker-compose", *args], app_host, DistributedApplication
    )


def _api_folder(tmp_path: Path, requirements: str | None = "redis\n") -> Path:
    api = tmp_path / "api"
    api.mkdir(exist_ok=True)
    (api / "app.py").write_text(APP_PY)
    if requirements is not None:
        (api / "requirements.txt").write_text(requirements)
    return api


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "state"))


def everything(tmp_path: Path) -> DistributedApplicationBuilder:
    """Redis with a secret password and a volume, Azure caches with and without a container
    form, a connection string, a Python app, a module and a uvicorn app."""
    _api_folder(tmp_path)
    b = _builder(tmp_path, f"--ConnectionStrings:db=Server=db;Password={SECRET}")
    pw = b.add_parameter("cache-password", SECRET, secret=True)
    region = b.add_parameter("region", "westeurope")
    cache = b.add_redis("cache", password=pw).with_data_volume().with_args("--maxmemory", "64mb")
    az = b.add_azure_redis("az").run_as_container()
    amr = b.add_azure_managed_redis("amr")
    db = b.add_connection_string("db")
    api = (
        b.add_python_app("api", "api", "app.py", "--greeting", "$HOME")
        .with_http_endpoint(port=8085, env="PORT")
        .with_http_health_check("/health")
        .with_environment("REGION", region)
        .with_environment("PRICE", "5$")
        .with_reference(cache)
        .with_reference(az)
        .with_reference(amr)
        .with_reference(db)
        .wait_for(cache)
    )
    b.add_python_module("worker", "api", "app").with_reference(api).wait_for_start(cache)
    b.add_uvicorn_app("web", "api", "main:app").with_reference(api).wait_for(api)
    return b


# --------------------------------------------------------------------------- the YAML


def test_compose_file_resolves_references_to_service_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = publish(everything(tmp_path), out, "docker-compose")
    assert sorted(p.name for p in written) == sorted(
        [".env", "api.Dockerfile", "docker-compose.yaml", "web.Dockerfile", "worker.Dockerfile"]
    )
    text = (out / "docker-compose.yaml").read_text()
    # Redis: the password is a required variable, `$` reaches the shell as `$$`
    assert 'REDIS_PASSWORD: "${CACHE_PASSWORD:?}"' in text
    assert '--requirepass \\"$$REDIS_PASSWORD\\"' in text
    assert "'--maxmemory' '64mb'" not in text and "--maxmemory 64mb" in text
    assert 'volumes: ["cache-data:/data"]' in text
    assert "cache-data: {}" in text
    assert "REDISCLI_AUTH" in text and "redis-cli ping" in text
    # the API: references as service names, its own fixed port published, literal `$` escaped
    assert 'ConnectionStrings__cache: "cache:6379,password=${CACHE_PASSWORD}"' in text
    assert 'CACHE_HOST: "cache"' in text
    assert 'ConnectionStrings__az: "az:6379,password=${AZ_PASSWORD}"' in text
    assert 'ConnectionStrings__amr: "${AMR_CONNECTION_STRING:?}"' in text
    assert 'ConnectionStrings__db: "${DB_CONNECTION_STRING:?}"' in text
    assert 'REGION: "${REGION}"' in text
    assert 'PRICE: "5$$"' in text
    assert 'command: ["--greeting", "$$HOME"]' in text
    assert 'ports: ["8085:8085"]' in text
    assert text.count("ports:") == 1  # nothing else fixed a host port
    assert 'services__api__http__0: "http://api:8085"' in text
    assert 'condition: "service_healthy"' in text and 'condition: "service_started"' in text
    assert 'dockerfile: "../out/api.Dockerfile"' in text and 'context: "../api"' in text
    # Azure Managed Redis without a container form publishes no service
    assert "\n  amr:" not in text and "\n  az:" in text
    assert 'UVICORN_HOST: "0.0.0.0"' in text
    env = (out / ".env").read_text().splitlines()
    assert [line for line in env if not line.startswith("#")] == [
        "AMR_CONNECTION_STRING=",
        "AZ_PASSWORD=",
        "CACHE_PASSWORD=",
        "DB_CONNECTION_STRING=",
        "REGION=westeurope",
    ]
    assert (out / ".env").stat().st_mode & 0o777 == 0o600


def test_output_is_deterministic_and_secret_free(tmp_path: Path) -> None:
    first = tmp_path / "one" / "out"
    second = tmp_path / "two" / "out"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    publish(everything(tmp_path / "one"), first, "docker-compose")
    publish(everything(tmp_path / "two"), second, "docker-compose")
    a, b = _files(first), _files(second)
    assert a == b
    publish(everything(tmp_path / "one"), first, "docker-compose")
    assert _files(first) == a
    for name, data in a.items():
        text = data.decode()
        assert SECRET not in text, name
        assert str(tmp_path) not in text, name


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """Debian's docker-compose 1.29 validates the file, and refuses to run with an empty
    secret (``${VAR:?}``)."""
    out = tmp_path / "out"
    publish(everything(tmp_path), out, "docker-compose")
    compose = _compose_command()
    empty = subprocess.run(
        [*compose, "config", "-q"], cwd=out, capture_output=True, text=True, timeout=60
    )
    assert empty.returncode != 0 and "CACHE_PASSWORD" in empty.stderr
    _fill_env(out, "pw-1")
    ok = subprocess.run([*compose, "config"], cwd=out, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "$$REDIS_PASSWORD" in ok.stdout  # still escaped: the container's shell expands it


def test_plain_executable_is_refused(tmp_path: Path) -> None:
    b = _builder(tmp_path)
    b.add_executable("tool", "sh", ".", "-c", "true")
    with pytest.raises(PublishError, match=r"tool is a plain executable"):
        publish(b, tmp_path / "out", "docker-compose")


def test_bind_mounts_must_stay_in_the_app_folder(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "app").mkdir()
    b = _builder(tmp_path / "app")
    b.add_container("web", "nginx").with_bind_mount(str(outside), "/usr/share/nginx/html")
    with pytest.raises(PublishError, match=r"web: the bind mount .*elsewhere is outside"):
        publish(b, tmp_path / "app" / "out", "docker-compose")

    (tmp_path / "app" / "site").mkdir()
    b = _builder(tmp_path / "app")
    b.add_container("web", "nginx").with_bind_mount("site", "/usr/share/nginx/html", True)
    publish(b, tmp_path / "app" / "out", "docker-compose")
    text = (tmp_path / "app" / "out" / "docker-compose.yaml").read_text()
    assert 'volumes: ["../site:/usr/share/nginx/html:ro"]' in text


def test_wait_for_completion_with_a_failure_code_is_refused(tmp_path: Path) -> None:
    b = _builder(tmp_path)
    job = b.add_container("job", "busybox").with_args("true")
    b.add_container("web", "nginx").wait_for_completion(job, exit_code=3)
    with pytest.raises(PublishError, match="exit with code 3"):
        publish(b, tmp_path / "out", "docker-compose")
    b = _builder(tmp_path)
    job = b.add_container("job", "busybox").with_args("true")
    b.add_container("web", "nginx").wait_for_completion(job)
    publish(b, tmp_path / "out", "docker-compose")
    text = (tmp_path / "out" / "docker-compose.yaml").read_text()
    assert 'condition: "service_completed_successfully"' in text


def test_yaml_writer_quotes_what_yaml_would_misread() -> None:
    text = to_yaml({"a": {"on": "yes", "x y": [1, True, "$"], "empty": {}}, "b": "ü"})
    assert text == textwrap.dedent(
        """\
        a:
          "on": "yes"
          "x y": [1, true, "$"]
          empty: {}
        b: "\\u00fc"
        """
    )


# --------------------------------------------------------------------------- Dockerfiles


def test_generated_dockerfiles(tmp_path: Path) -> None:
    api = _api_folder(tmp_path)
    (api / "pyproject.toml").write_text("[project]\nname = 'api'\nversion = '1'\n")
    b = _builder(tmp_path)
    app = b.add_python_app("api", "api", "app.py", "--x", "1").with_http_endpoint(env="PORT")
    mod = b.add_python_module("worker", "api", "pkg.main")
    web = b.add_uvicorn_app("web", "api", "main:app")
    text = python_dockerfile(app)
    assert "ARG PYTHON_IMAGE=python:3.12-slim\nFROM ${PYTHON_IMAGE}\n" in text
    assert "RUN python -m pip install --no-cache-dir -r requirements.txt" in text
    assert "RUN python -m pip install --no-cache-dir .\n" in text
    assert "ENV PORT=8000\nEXPOSE 8000\n" in text
    assert 'ENTRYPOINT ["python", "-u", "app.py"]\nCMD ["--x", "1"]\n' in text
    assert container_ports(app) == {"http": 8000}
    assert 'ENTRYPOINT ["python", "-u", "-m", "pkg.main"]' in python_dockerfile(mod)
    assert "EXPOSE" not in python_dockerfile(mod)
    web_text = python_dockerfile(web)
    assert "ENV UVICORN_HOST=0.0.0.0 UVICORN_PORT=8000" in web_text
    assert 'ENTRYPOINT ["python", "-m", "uvicorn"]\nCMD ["main:app"]' in web_text
    # the user's own Dockerfile wins
    (api / "Dockerfile").write_text("FROM scratch\n")
    assert python_dockerfile(app) == "FROM scratch\n"
    publish(b, tmp_path / "out", "docker-compose")
    compose = (tmp_path / "out" / "docker-compose.yaml").read_text()
    assert 'dockerfile: "Dockerfile"' in compose
    assert not (tmp_path / "out" / "api.Dockerfile").exists()


# --------------------------------------------------------------------------- a real run


def _compose_command() -> list[str]:
    found = shutil.which("docker-compose")
    assert found, "docker-compose (Debian's, 1.29) is not installed: run tests/run.sh"
    return [found]


def _fill_env(out: Path, value: str) -> None:
    """Fill every empty variable of ``.env`` with ``value``, as the operator would."""
    env = out / ".env"
    lines = [
        f"{line}{value}" if line.endswith("=") and not line.startswith("#") else line
        for line in env.read_text().splitlines()
    ]
    env.write_text("\n".join(lines) + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(what: str, check: Callable[[], str | None], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # not up yet
            last = exc
        else:
            if result is not None:
                return result
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s (last: {last!r})")


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _ensure_images() -> None:
    missing = [
        image
        for image in (PYTHON_IMAGE, REDIS_IMAGE)
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    ]
    if missing:
        _run(["sh", str(ROOT / "tests" / "support" / "build_python_image.sh")], ROOT)


def test_published_app_runs_with_docker_compose(tmp_path: Path) -> None:
    """Publish Redis + a Python API, fill .env, build offline, `up -d`, call the API (it
    writes and reads Redis through the injected variables), `down -v`."""
    docker_ok = subprocess.run(["docker", "version"], capture_output=True, timeout=30)
    assert docker_ok.returncode == 0, "no Docker engine answers: run tests/run.sh"
    compose = _compose_command()
    _ensure_images()
    _api_folder(tmp_path)
    port = _free_port()
    b = _builder(tmp_path)
    pw = b.add_parameter("cache-password", secret=True)
    cache = b.add_redis("cache", password=pw).with_image(REDIS_IMAGE).with_data_volume()
    (
        b.add_python_app("api", "api", "app.py")
        .with_http_endpoint(port=port, env="PORT")
        .with_http_health_check("/health")
        .with_reference(cache)
        .wait_for(cache)
    )
    out = tmp_path / "out"
    publish(b, out, "docker-compose")
    _fill_env(out, "Compose-pass-1234")
    project = f"apphostpub{os.getpid()}{port}"
    base = [*compose, "-p", project]
    try:
        _run([*base, "build", "--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}"], out, 180)
        _run([*base, "up", "-d"], out, 120)

        def health(service: str) -> str | None:
            cid = _run([*base, "ps", "-q", service], out).stdout.strip()
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{json .State}}", cid],
                capture_output=True,
                text=True,
            )
            status = json.loads(state.stdout)
            health = status.get("Health", {}).get("Status")
            return "healthy" if health == "healthy" else None

        _poll("cache healthy", lambda: health("cache"), 60)
        _poll("api healthy", lambda: health("api"), 60)

        def get(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return str(resp.read().decode())

        assert get("/first") == "1 /first"
        assert get("/second") == "2 /second"
    finally:
        subprocess.run(
            [*base, "down", "-v", "--rmi", "local", "--timeout", "2"],
            cwd=out,
            capture_output=True,
            timeout=120,
        )
