"""``apphost plan / provision / destroy`` on an app with Azure Managed Redis (and a classic
cache beside it), with a stand-in app, against the emulator."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import AzureCache, AzureManagedRedis, Emulator

from apphost_sdk.cli import azure_commands
from apphost_sdk.cli.main import build_parser
from provisioning.managed_spec import ManagedRedisSpec


def _single(spec: ManagedRedisSpec) -> None:
    spec.clustering_policy = "NoCluster"  # one redis-server per cache: fast on a small machine


def managed(name: str, **kw: Any) -> AzureManagedRedis:
    return AzureManagedRedis(name, infrastructure_callbacks=[_single], **kw)


def cli(app: Any, command: str, *flags: str) -> int:
    args, config = build_parser().parse_known_args([command, "apphost.py", *flags])
    assert config == []
    run: Callable[[Any, argparse.Namespace], int] = getattr(azure_commands, command)
    return run(app, args)


def make_app(emulator: Emulator, tmp_path: Path, *resources: Any) -> Any:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return SimpleNamespace(
        model=SimpleNamespace(resources=list(resources)),
        configuration=emulator.settings(),
        state_dir=state,
        app_name="shop",
    )


def test_plan_provision_destroy_json_with_both_kinds(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(
        emulator,
        tmp_path,
        managed("cache"),
        managed("kv", use_access_keys=True),
        AzureCache("legacy"),
    )
    assert cli(app, "plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)["resources"]
    assert [(p["resource"], p["action"]) for p in plan] == [
        ("cache", "create"),
        ("kv", "create"),
        ("legacy", "create"),
    ]
    assert emulator.writes() == []

    assert cli(app, "provision", "--json") == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)["resources"]
    assert data["cache"]["kind"] == "managed-redis" and data["legacy"]["kind"] == "redis"
    assert data["cache"]["sslPort"] == 10000 and data["legacy"]["sslPort"] == 6380
    assert data["cache"]["connectionString"] == f"{data['cache']['hostName']}:10000,ssl=true"
    assert data["cache"]["clusteringPolicy"] == "NoCluster"
    assert data["kv"]["connectionString"] == "***" and data["kv"]["primaryKey"] == "***"
    assert "cache: Provisioned" in captured.err

    def bigger(spec: Any) -> None:
        spec.sku_name = "Balanced_B3"

    app.model.resources[0].infrastructure_callbacks.append(bigger)
    before = len(emulator.writes())
    assert cli(app, "plan") == 0
    out = capsys.readouterr().out
    assert "cache: update" in out and "sku: Balanced_B0 -> Balanced_B3" in out
    assert "kv: no-change" in out and "legacy: no-change" in out
    assert len(emulator.writes()) == before

    assert cli(app, "destroy", "--yes") == 0
    out = capsys.readouterr().out
    assert out.count("Deleted ") == 3
    assert cli(app, "destroy", "--yes") == 0
    assert "Nothing to delete" in capsys.readouterr().out


def test_env_and_github_outputs_mirror_classic(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app(emulator, tmp_path, managed("my-cache", use_access_keys=True))
    assert cli(app, "provision", "--format", "env") == 0
    out = capsys.readouterr().out
    assert "MY_CACHE_HOST=" in out and "MY_CACHE_PORT=10000" in out
    assert "# ConnectionStrings__my-cache omitted (secret)" in out and "password=" not in out
    assert cli(app, "provision", "--format", "env", "--show-secrets") == 0
    shown = capsys.readouterr().out
    assert "MY_CACHE_URI=rediss://:" in shown and ":10000,ssl=true,password=" in shown

    outputs, env = tmp_path / "gh_output", tmp_path / "gh_env"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_ENV", str(env))
    assert cli(app, "provision", "--format", "github") == 0
    out = capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    key = lines["my_cache_primary_key"]
    assert f"::add-mask::{key}" in out
    assert lines["my_cache_ssl_port"] == "10000"
    assert lines["my_cache_clustering_policy"] == "NoCluster"
    assert f"MY_CACHE_PASSWORD={key}" in env.read_text()


def test_provision_text_names_the_kind(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, managed("cache"))
    assert cli(app, "provision") == 0
    out = capsys.readouterr().out
    assert "(Azure Managed Redis, entraId)" in out and ":10000" in out


def test_bad_sku_fails_with_one_line(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def bad(spec: Any) -> None:
        spec.sku_name = "Premium_P1"

    app = make_app(emulator, tmp_path, AzureManagedRedis("cache", infrastructure_callbacks=[bad]))
    assert cli(app, "provision") == 1
    err = capsys.readouterr().err
    assert "apphost provision: error: cache: invalid Azure Managed Redis configuration" in err
    assert "Balanced_B0..B1000" in err
    assert emulator.requests() == []
