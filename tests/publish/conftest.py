"""Shared fixtures of the publish tests: ``model_with_everything()`` builds an app host in a
temporary folder that uses every resource type the publishers know (all kinds of parameters,
Redis, generic containers, a Dockerfile build, an executable, the three Python app kinds, a
connection string and the Azure caches in each variant)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from apphost_sdk.model.builder import DistributedApplicationBuilder

#: Secret values given to the model: they must never appear in a published file.
GIVEN_SECRETS = (
    "given-Db-Secret-0123456789",
    "configured-Api-Key-9876543210",
    "Server=legacy;Password=conn-Secret-5556667778",
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def app_folder(root: Path) -> Path:
    """The app host's files: Python apps, a Dockerfile build context, a worker, a folder to
    bind-mount."""
    _write(root / "apphost.py", "# the model is built by the test\n")
    _write(root / "api" / "app.py", "import os\nprint(os.environ['PORT'])\n")
    _write(root / "api" / "requirements.txt", "redis\n")
    _write(root / "jobs" / "jobs" / "__init__.py", "")
    _write(root / "jobs" / "jobs" / "main.py", "print('job')\n")
    _write(root / "jobs" / "pyproject.toml", '[project]\nname = "jobs"\nversion = "0"\n')
    _write(root / "front" / "main.py", "async def app(scope, receive, send):\n    pass\n")
    _write(root / "web" / "Dockerfile", 'FROM busybox\nCMD ["httpd", "-f"]\n')
    _write(root / "worker" / "main.py", "print('worker')\n")
    _write(root / "init" / "schema.sql", "select 1;\n")
    return root


def build_model_with_everything(root: Path, *, azure: bool = True) -> DistributedApplicationBuilder:
    """A builder (not built) whose app host lives in ``root``; ``azure=False`` leaves the
    Azure caches out."""
    app_folder(root)
    builder = DistributedApplicationBuilder(
        [
            f"--Parameters:api-key={GIVEN_SECRETS[1]}",
            f"--ConnectionStrings:legacy-db={GIVEN_SECRETS[2]}",
        ],
        root / "apphost.py",
    )
    api_key = builder.add_parameter("api-key", secret=True)  # configured, secret
    greeting = builder.add_parameter("greeting", "hello")  # a value, not secret
    db_password = builder.add_parameter("db-password", GIVEN_SECRETS[0], secret=True)
    legacy_db = builder.add_connection_string("legacy-db")
    cache = builder.add_redis("cache").with_data_volume().with_persistence()
    session = builder.add_redis("session", port=6390, password=db_password)
    db = (
        builder.add_container("db", "postgres", "16")
        .with_environment("POSTGRES_PASSWORD", db_password)
        .with_endpoint(5432, name="tcp", scheme="tcp")
        .with_volume(None, "/var/lib/postgresql/data")
        .with_bind_mount("init", "/docker-entrypoint-initdb.d", read_only=True)
        .with_connection_string("Host={host};Port={port};Password={param:db-password}")
        .with_entrypoint("docker-entrypoint.sh")
        .with_args("postgres", "-c", "max_connections=50")
    )
    api = (
        builder.add_python_app("api", "api", "app.py")
        .with_http_endpoint(env="PORT")
        .with_http_health_check("/health")
        .with_reference(cache)
        .with_reference(legacy_db)
        .with_environment("API_KEY", api_key)
        .with_environment("GREETING", greeting)
        .wait_for(cache)
    )
    web = (
        builder.add_dockerfile("web", "web")
        .with_http_endpoint(8080, port=8088)
        .with_http_health_check("/health")
        .with_reference(db)
        .with_environment("API_URL", api.get_endpoint("http"))
        .wait_for(db)
    )
    builder.add_executable("worker", "python", "worker", "main.py", "--once").with_reference(
        session
    ).with_endpoint(env="WORKER_PORT", name="metrics")
    jobs = builder.add_python_module("jobs", "jobs", "jobs.main").with_reference(cache)
    jobs.wait_for_completion(db)
    builder.add_uvicorn_app("front", "front", "main:app").with_reference(api).with_reference(web)
    if azure:
        managed = builder.add_azure_managed_redis("managed").configure_infrastructure(
            lambda spec: None
        )
        legacy = builder.add_azure_redis("legacy-cache").run_as_container()
        keyed = builder.add_azure_managed_redis("keyed").with_access_key_authentication()
        existing = builder.add_azure_redis("existing").as_existing("myexistingcache", "rg-other")
        for target in (managed, legacy, keyed, existing):
            api.with_reference(target)
    return builder


@pytest.fixture
def model_with_everything(tmp_path: Path) -> Callable[..., DistributedApplicationBuilder]:
    """``model_with_everything(azure=True)``: a fresh builder in its own folder under
    ``tmp_path`` on each call (two calls build the same model in two folders)."""
    count = 0

    def make(*, azure: bool = True, root: Path | None = None) -> DistributedApplicationBuilder:
        nonlocal count
        count += 1
        return build_model_with_everything(root or tmp_path / f"app{count}", azure=azure)

    return make
