"""End to end: Azure Cache for Redis through the real builder, orchestrator and ``apphost`` CLI,
against the ARM emulator over HTTP (the real azure-mgmt-redis client; nothing is mocked).

Run mode builds an app host in-process and starts it with ``builder.build().start()``; the CLI
tests run ``python -m apphost_sdk plan|provision|destroy APPHOST.py`` on a real app host file
in a subprocess. Both read their Azure settings the way users give them: ``appsettings.json``
beside the app host, or ``Azure__*`` environment variables.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication
from apphost_sdk.orchestration.states import Health, State
from provisioning.emulator.control import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
GROUP = "rg-e2e-shop"
CREATE_DELAY = 0.4
WRITE_METHODS = ("PUT", "PATCH", "DELETE")
CACHE_PATH = re.compile(r"/providers/microsoft\.cache/redis/([^/]+)$", re.I)

#: The tiny service: records the environment it was started with, then prints the password
#: (the app host must mask it in everything it shows).
DUMP_ENV = """\
import json, os
target = os.environ["DUMP_TO"]
with open(target + ".tmp", "w", encoding="utf-8") as handle:
    json.dump(dict(os.environ), handle)
os.replace(target + ".tmp", target)
print("password seen:", os.environ.get("CACHE_PASSWORD", "<none>"), flush=True)
"""

#: The app host file the CLI tests run; ``EXISTING_CACHE`` adds an ``as_existing`` cache.
APPHOST = """\
import os
from apphost_sdk import DistributedApplication

builder = DistributedApplication.create_builder()
cache = builder.add_azure_redis("cache")
keyed = builder.add_azure_redis("keyed").with_access_key_authentication()
api = builder.add_python_app("api", "service", "dump_env.py")
api.with_reference(cache).with_reference(keyed).wait_for(cache)
if os.environ.get("EXISTING_CACHE"):
    legacy = builder.add_azure_redis("legacy").as_existing(os.environ["EXISTING_CACHE"])
    api.with_reference(legacy)
builder.build().run()
"""


# -- the emulator -------------------------------------------------------------------------------
class Emulator(EmulatorProcess):
    """The emulator with the queries these tests make of its request log."""

    def reset(self, **delays: float) -> None:
        super().reset(create_delay=CREATE_DELAY, update_delay=0.2, delete_delay=0.2)

    def writes(self) -> list[str]:
        """``METHOD path`` of every PUT/PATCH/DELETE received."""
        return [
            f"{r['method']} {r['path']}" for r in self.requests() if r["method"] in WRITE_METHODS
        ]

    def cache_puts(self) -> list[str]:
        """Names of the caches that received a PUT on themselves (creates and full updates)."""
        names = []
        for r in self.requests():
            match = CACHE_PATH.search(r["path"])
            if r["method"] == "PUT" and match:
                names.append(match.group(1))
        return names

    def settings(self, **overrides: str) -> dict[str, str]:
        """The ``Azure`` section for this emulator, as ``appsettings.json`` keys."""
        values = {
            "SubscriptionId": SUBSCRIPTION,
            "Location": "westus",
            "ResourceGroup": GROUP,
            "AllowResourceGroupCreation": "true",
            "CredentialSource": "Emulator",
            "ResourceManagerEndpoint": self.endpoint,
            "PollIntervalSeconds": "0.05",
            "RetryBaseDelaySeconds": "0.02",
            "RetryMaxDelaySeconds": "0.2",
        }
        values.update(overrides)
        return values

    def clients(self) -> Any:
        """azure-mgmt clients on the emulator, to set up and inspect what the app sees."""
        from apphost_sdk.configuration import Configuration
        from provisioning.arm import create_clients
        from provisioning.credentials import EmulatorCredential
        from provisioning.settings import ProvisioningSettings

        config = Configuration({f"Azure:{k}": v for k, v in self.settings().items()})
        settings = ProvisioningSettings.from_configuration(config, "shop")
        return create_clients(settings, EmulatorCredential())


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    started = EmulatorProcess.start()
    with Emulator(started.endpoint, started.process, started.startup) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    emulator_process.reset()
    return emulator_process


# -- app hosts ---------------------------------------------------------------------------------
@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``{tmp}/shop`` (app name ``shop``) with the service; state kept under ``{tmp}/state``.

    Any ``Azure__*`` variable of the outer environment is removed so only the test's count.
    """
    for key in list(os.environ):
        if key.lower().startswith("azure__") or key in ("GITHUB_OUTPUT", "GITHUB_ENV"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NO_COLOR", "1")
    directory = tmp_path / "shop"
    (directory / "service").mkdir(parents=True)
    (directory / "service" / "dump_env.py").write_text(DUMP_ENV)
    (directory / "apphost.py").write_text(APPHOST)
    return directory


def write_appsettings(app_dir: Path, azure: dict[str, str]) -> None:
    (app_dir / "appsettings.json").write_text(json.dumps({"Azure": azure}, indent=2))


def build_run_app(app_dir: Path, access_keys: bool = False) -> DistributedApplication:
    """The run-mode app: cache (Entra ID unless ``access_keys``) and a service waiting for it."""
    builder = DistributedApplicationBuilder([], app_dir / "apphost.py")
    cache = builder.add_azure_redis("cache")
    if access_keys:
        cache.with_access_key_authentication()
    api = builder.add_python_app("api", "service", "dump_env.py")
    api.with_reference(cache).wait_for(cache)
    api.with_environment("DUMP_TO", str(app_dir / "api-env.json"))
    return builder.build()


def wait_for_file(path: Path, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout} s")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def finished(app: DistributedApplication, name: str) -> bool:
    return any(s.name == name and s.state is State.FINISHED for s in app.snapshots())


def states_seen(output: str, resource: str) -> list[str]:
    """The states the plain reporter printed for ``resource``, in order, repeats dropped."""
    seen: list[str] = []
    for match in re.finditer(
        rf"^apphost\s+\| {re.escape(resource)}: ([A-Za-z ]+?)(?:[:(]|$| at )", output, re.M
    ):
        state = match.group(1).strip()
        if not seen or seen[-1] != state:
            seen.append(state)
    return seen


# == run mode ==================================================================================
def test_run_mode_provisions_then_starts_the_dependent_with_entra_id_variables(
    emulator: Emulator, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_appsettings(app_dir, emulator.settings())
    with build_run_app(app_dir).start() as app:
        snaps = {s.name: s for s in app.snapshots()}
        env = wait_for_file(app_dir / "api-env.json")
        wait_for(lambda: finished(app, "api"))
        status = json.loads(app.state.status_file.read_text())
    out = capsys.readouterr().out

    cache = snaps["cache"]
    assert (cache.state, cache.health) == (State.RUNNING, Health.HEALTHY)
    host = cache.endpoint.rsplit(":", 1)[0] if cache.endpoint else ""
    # The emulator backs the cache with a live TLS redis-server on its own loopback address.
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", host), host
    assert cache.endpoint == f"{host}:6380"
    # Provisioning (with progress), Provisioned, then Running; the service only after that.
    assert states_seen(out, "cache")[:1] == ["Provisioning"]
    assert states_seen(out, "cache")[-2:] == ["Provisioned", "Running"]
    assert re.search(r"cache: Provisioning: Provisioning \(Creating, \dm\d\ds\)", out), out
    assert out.index("cache: Running") < out.index("api: Starting")

    # Entra ID: host:6380,ssl=true, no password anywhere.
    assert env["ConnectionStrings__cache"] == f"{host}:6380,ssl=true"
    assert env["CACHE_HOST"] == host
    assert env["CACHE_PORT"] == "6380"
    assert env["CACHE_URI"] == f"rediss://{host}:6380"
    assert "CACHE_PASSWORD" not in env
    assert "password=" not in env["ConnectionStrings__cache"]
    assert "password seen: <none>" in out

    # What the emulator saw: one create, one access policy assignment for the app host's user.
    assert [re.sub(r"-[a-z0-9]+$", "", n) for n in emulator.cache_puts()] == ["cache"]
    assert any("/accessPolicyAssignments/" in w for w in emulator.writes())
    cache_status = next(r for r in status["resources"] if r["name"] == "cache")
    assert cache_status["state"] == "Running"
    assert cache_status["injects"]["ConnectionStrings__cache"] == f"{host}:6380,ssl=true"

    # A second run of the same app host: one cheap read, no write, same variables.
    (app_dir / "api-env.json").unlink()
    before = len(emulator.requests())
    with build_run_app(app_dir).start(quiet=True):
        again = wait_for_file(app_dir / "api-env.json")
    rerun = emulator.requests()[before:]
    assert [r["method"] for r in rerun] == ["GET"], rerun
    assert CACHE_PATH.search(rerun[0]["path"])
    assert again["ConnectionStrings__cache"] == env["ConnectionStrings__cache"]


def test_run_mode_access_keys_from_environment_variables_are_masked(
    emulator: Emulator,
    app_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # This time the settings come from Azure__* variables, and the group is created.
    for key, value in emulator.settings(ResourceGroup="rg-e2e-keys").items():
        monkeypatch.setenv(f"Azure__{key}", value)
    with build_run_app(app_dir, access_keys=True).start() as app:
        env = wait_for_file(app_dir / "api-env.json")
        wait_for(lambda: finished(app, "api"))
        status_text = app.state.status_file.read_text()
        live_status = app.status()
        host = app.connection_string("cache") or ""
    out = capsys.readouterr().out

    key = env["CACHE_PASSWORD"]
    assert len(key) >= 20
    host = host.split(":", 1)[0]
    assert env["ConnectionStrings__cache"] == f"{host}:6380,ssl=true,password={key}"
    assert env["CACHE_PORT"] == "6380"
    assert env["CACHE_URI"].startswith("rediss://:") and env["CACHE_URI"].endswith(f"@{host}:6380")
    # The key is the one Azure reports (listKeys), and it is shown nowhere.
    clients = emulator.clients()
    try:
        keys = clients.redis.redis.list_keys("rg-e2e-keys", emulator.cache_puts()[0])
    finally:
        clients.close()
    assert keys.primary_key == key
    assert key not in out
    assert "password seen: ***" in out
    masked = next(r for r in live_status["resources"] if r["name"] == "cache")["injectsMasked"]
    assert key not in json.dumps(masked)
    assert masked["CACHE_PASSWORD"] == "***"
    assert "***" in masked["ConnectionStrings__cache"]
    file_masked = next(r for r in json.loads(status_text)["resources"] if r["name"] == "cache")[
        "injectsMasked"
    ]
    assert key not in json.dumps(file_masked)
    assert [re.sub(r"-[a-z0-9]+$", "", n) for n in emulator.cache_puts()] == ["cache"]
    assert not any("/accessPolicyAssignments/" in w for w in emulator.writes())
    # On disk the key lives only in files of mode 0600.
    state = Path(os.environ["APPHOST_STATE_DIR"])
    holding = [p for p in state.rglob("*") if p.is_file() and key in p.read_text()]
    assert holding, "the key is kept for the next run"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in holding), holding
    assert not any(p.name == "cache.json" for p in holding)


def test_run_mode_missing_configuration_names_every_key_and_blocks_the_dependent(
    emulator: Emulator, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_appsettings(app_dir, {"CredentialSource": "Emulator"})
    app = build_run_app(app_dir)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=30)
    message = str(info.value)
    out = capsys.readouterr().out
    for key in ("SubscriptionId", "Location"):
        assert f"Azure:{key}" in message and f"Azure__{key}" in message
    assert "ResourceGroup" not in message.split("missing:")[1].split(".")[0]
    assert message.startswith("cache failed: Azure provisioning needs settings")
    assert re.search(r"cache: Failed to provision: .*Azure__SubscriptionId", out)
    # start() gives up as soon as the cache failed; the service was waiting and never started.
    assert states_seen(out, "api") in (["Waiting"], ["Waiting", "FailedToStart"])
    assert not (app_dir / "api-env.json").exists()
    assert emulator.requests() == []
    status = json.loads(app.state.status_file.read_text())
    assert status["phase"] == "failed" and "Azure__Location" in status["error"]


def test_run_mode_create_that_ends_failed_names_the_resource(
    emulator: Emulator, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_appsettings(app_dir, emulator.settings())
    emulator.fault("create-failed")
    app = build_run_app(app_dir)
    with pytest.raises(ResourceStartError) as info:
        app.start(timeout=30)
    message = str(info.value)
    out = capsys.readouterr().out
    assert re.search(r"cache failed: (cache: )?Azure reports cache cache-\w+ as Failed", message)
    assert "apphost destroy" in message
    assert "cache: Failed to provision" in out
    assert "api: Starting" not in out
    assert not (app_dir / "api-env.json").exists()
    assert len(emulator.cache_puts()) == 1
    # No partial state recorded as a success: the next run does not reuse outputs.
    record = app.state.directory / "azure" / "cache.json"
    assert not record.exists() or json.loads(record.read_text())["status"] != "succeeded"


# == CLI ======================================================================================
def apphost(
    app_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m apphost_sdk ARGS`` (the app host path is ``{app_dir}/apphost.py``)."""
    return subprocess.run(
        [sys.executable, "-m", "apphost_sdk", *args],
        cwd=app_dir.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def apphost_parallel(
    cwd: Path, runs: list[tuple[list[str], dict[str, str]]]
) -> list[tuple[int, str, str]]:
    """Run several ``python -m apphost_sdk`` commands at once: (exit code, stdout, stderr)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "apphost_sdk", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for args, env in runs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out, err))
    return results


def create_existing_cache(emulator: Emulator, name: str, tags: dict[str, str]) -> None:
    """A cache made outside the app (Entra ID on), in the app's resource group."""
    from azure.mgmt.redis import models

    clients = emulator.clients()
    try:
        clients.resources.resource_groups.create_or_update(GROUP, {"location": "westus"})
        body = models.RedisCreateParameters(
            location="westus",
            sku=models.Sku(name="Basic", family="C", capacity=0),
            redis_configuration=models.RedisCommonPropertiesRedisConfiguration(
                additional_properties={"aad-enabled": "true"}
            ),
            tags=tags,
        )
        clients.redis.redis.begin_create(GROUP, name, body, polling=False)
    finally:
        clients.close()


def cache_names(emulator: Emulator) -> list[str]:
    clients = emulator.clients()
    try:
        return sorted(str(c.name) for c in clients.redis.redis.list_by_resource_group(GROUP))
    finally:
        clients.close()


def test_cli_plan_then_provision_json_secrets_and_idempotent_rerun(
    emulator: Emulator, app_dir: Path
) -> None:
    write_appsettings(app_dir, emulator.settings())
    app_host = str(app_dir / "apphost.py")

    plan = apphost(app_dir, "plan", app_host)
    assert plan.returncode == 0, plan.stderr
    assert re.search(
        rf"^cache: create cache-\w+ in {GROUP} \(and create resource group", plan.stdout, re.M
    )
    assert re.search(r"^keyed: create keyed-\w+ in ", plan.stdout, re.M)
    assert emulator.writes() == []

    provision = apphost(app_dir, "provision", app_host, "--json")
    assert provision.returncode == 0, provision.stderr
    data = json.loads(provision.stdout)["resources"]
    assert set(data) == {"cache", "keyed"}
    assert data["cache"]["authentication"] == "entraId"
    assert data["cache"]["connectionString"] == f"{data['cache']['hostName']}:6380,ssl=true"
    assert data["cache"]["sslPort"] == 6380
    assert data["keyed"]["connectionString"] == "***"
    assert data["keyed"]["primaryKey"] == "***"
    assert "cache: Provisioned" in provision.stderr and "keyed: Provisioned" in provision.stderr
    assert sorted(emulator.cache_puts()) == sorted([data["cache"]["name"], data["keyed"]["name"]])
    writes_after_create = len(emulator.writes())

    shown = apphost(app_dir, "provision", app_host, "--json", "--show-secrets")
    assert shown.returncode == 0, shown.stderr
    keyed = json.loads(shown.stdout)["resources"]["keyed"]
    key = keyed["primaryKey"]
    assert key != "***" and keyed["connectionString"] == (
        f"{keyed['hostName']}:6380,ssl=true,password={key}"
    )
    assert key not in provision.stdout + provision.stderr

    # Re-runs are idempotent: no further write, and the plan says so.
    again = apphost(app_dir, "provision", app_host, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(provision.stdout)
    assert len(emulator.writes()) == writes_after_create
    replan = apphost(app_dir, "plan", app_host, "--json")
    assert replan.returncode == 0, replan.stderr
    actions = {i["resource"]: i["action"] for i in json.loads(replan.stdout)["resources"]}
    assert actions == {"cache": "no-change", "keyed": "no-change"}
    assert len(emulator.writes()) == writes_after_create

    # Running the app afterwards (same app host, same state) reuses what the pipeline made.
    before = len(emulator.requests())
    with build_run_app(app_dir).start(quiet=True):
        env = wait_for_file(app_dir / "api-env.json")
    assert [r["method"] for r in emulator.requests()[before:]] == ["GET"]
    assert env["ConnectionStrings__cache"] == data["cache"]["connectionString"]


def test_cli_provision_github_format_writes_files_and_masks(
    emulator: Emulator, app_dir: Path, tmp_path: Path
) -> None:
    write_appsettings(app_dir, emulator.settings())
    gh_output, gh_env = tmp_path / "github_output", tmp_path / "github_env"
    gh_output.write_text("earlier=1\n")
    env = {"GITHUB_OUTPUT": str(gh_output), "GITHUB_ENV": str(gh_env)}
    result = apphost(
        app_dir, "provision", str(app_dir / "apphost.py"), "--format", "github", env=env
    )
    assert result.returncode == 0, result.stderr

    outputs = dict(line.split("=", 1) for line in gh_output.read_text().splitlines())
    environment = dict(line.split("=", 1) for line in gh_env.read_text().splitlines())
    assert outputs["earlier"] == "1"  # appended, never truncated
    key = outputs["keyed_primary_key"]
    assert f"::add-mask::{key}" in result.stdout
    first_mask = result.stdout.index("::add-mask::")
    assert all(
        key not in line
        for line in (result.stdout + result.stderr).splitlines()
        if not line.startswith("::add-mask::")
    )
    assert first_mask < result.stdout.index("keyed:")
    host = outputs["cache_host_name"]
    assert outputs["cache_connection_string"] == f"{host}:6380,ssl=true"
    assert outputs["keyed_connection_string"].endswith(f":6380,ssl=true,password={key}")
    assert outputs["cache_ssl_port"] == "6380"
    assert environment["ConnectionStrings__cache"] == f"{host}:6380,ssl=true"
    assert environment["CACHE_PORT"] == "6380"
    assert "CACHE_PASSWORD" not in environment
    assert environment["KEYED_PASSWORD"] == key

    # --format env without --show-secrets leaves secrets out of stdout.
    env_form = apphost(app_dir, "provision", str(app_dir / "apphost.py"), "--format", "env")
    assert env_form.returncode == 0, env_form.stderr
    assert key not in env_form.stdout
    assert f"ConnectionStrings__cache={host}:6380,ssl=true" in env_form.stdout
    assert "# ConnectionStrings__keyed omitted (secret)" in env_form.stdout


def test_cli_destroy_deletes_only_what_the_app_created(emulator: Emulator, app_dir: Path) -> None:
    write_appsettings(app_dir, emulator.settings())
    # An existing cache the app uses (even one carrying this app's tag is never ours to delete)
    # and a foreign one in the same resource group.
    create_existing_cache(emulator, "legacy-cache", {"apphost-app": "shop"})
    create_existing_cache(emulator, "foreign1", {"apphost-app": "other"})
    env = {"EXISTING_CACHE": "legacy-cache"}
    app_host = str(app_dir / "apphost.py")
    before = len(emulator.cache_puts())
    provision = apphost(app_dir, "provision", app_host, "--json", env=env)
    assert provision.returncode == 0, provision.stderr
    data = json.loads(provision.stdout)["resources"]
    assert data["legacy"]["name"] == "legacy-cache"
    assert data["legacy"]["authentication"] == "entraId"
    assert "legacy-cache" not in emulator.cache_puts()[before:]
    created = sorted([data["cache"]["name"], data["keyed"]["name"]])
    assert cache_names(emulator) == sorted([*created, "foreign1", "legacy-cache"])

    refused = apphost(app_dir, "destroy", app_host, env=env)
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not any(w.startswith("DELETE") for w in emulator.writes())

    destroy = apphost(app_dir, "destroy", app_host, "--yes", env=env)
    assert destroy.returncode == 0, destroy.stderr
    assert sorted(re.findall(r"^Deleted (\S+)$", destroy.stdout, re.M)) == created
    assert cache_names(emulator) == ["foreign1", "legacy-cache"]
    deletes = [w for w in emulator.writes() if w.startswith("DELETE")]
    assert len(deletes) == 2 and not any("legacy-cache" in d or "foreign1" in d for d in deletes)

    # Nothing left: destroy again is a no-op, and the plan wants to create them again.
    again = apphost(app_dir, "destroy", app_host, "--yes", env=env)
    assert again.returncode == 0, again.stderr
    assert "Nothing to delete" in again.stdout
    plan = apphost(app_dir, "plan", app_host, "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    actions = {i["resource"]: i["action"] for i in json.loads(plan.stdout)["resources"]}
    assert actions == {"cache": "create", "keyed": "create", "legacy": "use-existing"}


def test_cli_bad_input_exits_non_zero_with_one_line(
    emulator: Emulator, app_dir: Path, tmp_path: Path
) -> None:
    app_host = str(app_dir / "apphost.py")
    settings = emulator.settings()
    base = {f"Azure__{k}": v for k, v in settings.items()}
    no_run = tmp_path / "norun"
    no_run.mkdir()
    (no_run / "apphost.py").write_text(
        "from apphost_sdk import DistributedApplication\n"
        "DistributedApplication.create_builder().add_azure_redis('cache')\n"
    )
    cases: list[tuple[list[str], dict[str, str], int, str]] = [
        (
            ["plan", app_host],
            {**base, "Azure__ResourceManagerEndpoint": "http://arm.example.com"},
            1,
            "plain http on a non-loopback host",
        ),
        (
            ["provision", app_host],
            {**base, "Azure__ResourceManagerEndpoint": "https://management.azure.com"},
            1,
            "CredentialSource=Emulator issues unsigned test tokens",
        ),
        (["provision", app_host, "--json"], {}, 1, "Azure__SubscriptionId"),
        (["plan", app_host], {**base, "Azure__SubscriptionId": "not-a-guid"}, 1, "SubscriptionId"),
        (["provision", app_host, "--format", "xml"], base, 2, "invalid choice: 'xml'"),
        (["provision", app_host, "--json", "--format", "env"], base, 2, "exclusive"),
        (["destroy", str(tmp_path / "missing.py"), "--yes"], base, 1, "no such app host file"),
        (["plan", str(no_run / "apphost.py")], base, 1, "never called builder.build().run()"),
    ]
    results = apphost_parallel(tmp_path, [(args, env) for args, env, _, _ in cases])
    errors = []
    for (code_seen, out, err), (args, _, code, expected) in zip(results, cases, strict=True):
        errors.append(err)
        assert code_seen == code, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith(f"apphost {args[0]}"), (args, err)
        assert expected in lines[0], (args, err)
        if args[1] == app_host and "--json" in args:
            assert out == ""
    # Missing settings are all listed, in both forms.
    for key in ("SubscriptionId", "Location"):
        assert f"Azure:{key}" in errors[2] and f"Azure__{key}" in errors[2]
    assert emulator.requests() == []

    # What Azure refuses: an expired sign-in, a missing permission.
    for fault, expected in (
        ("expired-token", "sign in again"),
        ("forbidden,method=PUT", "lacks permission 'Microsoft.Cache/redis/write'"),
    ):
        emulator.reset()
        emulator.fault(fault)
        result = apphost(app_dir, "provision", app_host, "--json", env=base)
        assert result.returncode == 1, result
        assert result.stdout == ""
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("apphost provision: error: ") and expected in last, result.stderr


def test_cli_app_without_azure_resources_needs_no_azure_settings(
    emulator: Emulator, tmp_path: Path
) -> None:
    app = tmp_path / "plain"
    app.mkdir()
    (app / "apphost.py").write_text(
        "from apphost_sdk import DistributedApplication\n"
        "builder = DistributedApplication.create_builder()\n"
        "builder.add_executable('tool', 'true', '.')\n"
        "builder.build().run()\n"
    )
    app_host = str(app / "apphost.py")
    results = apphost_parallel(
        tmp_path,
        [
            (["plan", app_host], {}),
            (["plan", app_host, "--json"], {}),
            (["provision", app_host, "--json"], {}),
            (["provision", app_host], {}),
            (["destroy", app_host, "--yes"], {}),
        ],
    )
    assert [code for code, _, _ in results] == [0] * 5, results
    assert "No Azure resources" in results[0][1]
    assert json.loads(results[1][1]) == {"resources": []}
    assert json.loads(results[2][1]) == {"resources": {}}
    assert "No Azure resources" in results[3][1]
    assert "Nothing to delete" in results[4][1]
    assert emulator.requests() == []


def test_stop_during_a_create_then_the_next_run_resumes_it(
    emulator: Emulator, app_dir: Path
) -> None:
    """Ctrl-C while Azure creates the cache: waiting stops at once, and the next run waits on
    the same create instead of starting another one."""
    from provisioning.app_model import requests_from_app
    from provisioning.provisioner import ProvisioningCancelled
    from provisioning.run_mode import provision_for_run

    write_appsettings(app_dir, emulator.settings())
    emulator.configure(create_delay=2.5)
    app = build_run_app(app_dir)
    stopping = threading.Event()
    statuses: list[str] = []

    def on_status(resource: str, text: str) -> None:
        statuses.append(text)
        if text.startswith("Provisioning (Creating"):
            stopping.set()

    started = time.monotonic()
    with pytest.raises(ProvisioningCancelled, match="run again to resume"):
        provision_for_run(
            requests_from_app(app),
            app.configuration,
            app.state_dir,
            app.app_name,
            on_status,
            cancel=stopping,
        )
    assert time.monotonic() - started < 2.0
    assert len(emulator.cache_puts()) == 1

    with build_run_app(app_dir).start(quiet=True, timeout=30) as again:
        env = wait_for_file(app_dir / "api-env.json")
        host = again.connection_string("cache")
    assert env["ConnectionStrings__cache"] == host
    assert len(emulator.cache_puts()) == 1  # resumed: no second create


def test_stop_during_a_create_through_the_app_is_prompt_and_the_next_run_resumes(
    emulator: Emulator, app_dir: Path
) -> None:
    write_appsettings(app_dir, emulator.settings())
    emulator.configure(create_delay=30)
    app = build_run_app(app_dir)
    started = time.monotonic()
    with pytest.raises(ResourceStartError, match="not ready after 1 s"):
        app.start(timeout=1, quiet=True)
    assert time.monotonic() - started < 5, "stop() must cancel the wait on a create"
    assert len(emulator.cache_puts()) == 1
    emulator.configure(create_delay=CREATE_DELAY)
    again = build_run_app(app_dir)
    with again.start(timeout=30, quiet=True):
        connection = again.connection_string("cache")
    assert connection is not None and connection.endswith(":6380,ssl=true")
    assert len(emulator.cache_puts()) == 1, "the next run resumes the create, never a second PUT"


def test_cli_configuration_overrides_on_the_command_line_reach_the_app_host(
    emulator: Emulator, app_dir: Path
) -> None:
    # No appsettings.json: every Azure setting comes as --Azure:Key=Value after the file.
    app_host = str(app_dir / "apphost.py")
    overrides = [f"--Azure:{key}={value}" for key, value in emulator.settings().items()]
    plan = apphost(app_dir, "plan", app_host, *overrides)
    assert plan.returncode == 0, plan.stderr
    assert "cache: create" in plan.stdout
    provision = apphost(app_dir, "provision", app_host, "--json", *overrides)
    assert provision.returncode == 0, provision.stderr
    assert set(json.loads(provision.stdout)["resources"]) == {"cache", "keyed"}
