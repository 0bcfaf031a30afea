"""``apphost plan / provision / destroy`` functions, with a stand-in app, against the emulator."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import AzureCache, Emulator

from apphost_sdk.cli import azure_commands
from apphost_sdk.cli.main import build_parser, main
from provisioning.arm import create_clients
from provisioning.credentials import EmulatorCredential
from provisioning.settings import ProvisioningSettings


def cache(name: str, **kw: Any) -> AzureCache:
    return AzureCache(name, **kw)


def cli(app: Any, command: str, *flags: str) -> int:
    """``apphost COMMAND apphost.py FLAGS`` on ``app``: parsed by the ``apphost`` parser (the
    one parser of the command), then run by the command."""
    args, config = build_parser().parse_known_args([command, "apphost.py", *flags])
    assert config == []
    run: Callable[[Any, argparse.Namespace], int] = getattr(azure_commands, command)
    return run(app, args)


def make_app(emulator: Emulator, tmp_path: Path, *resources: Any, **overrides: str) -> Any:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return SimpleNamespace(
        model=SimpleNamespace(resources=list(resources)),
        configuration=emulator.settings(**overrides),
        state_dir=state,
        app_name="shop",
    )


def test_plan_makes_no_write_and_reports_actions(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, cache("cache"), cache("kv", use_access_keys=True))
    assert cli(app, "plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)["resources"]
    assert [(p["resource"], p["action"], p.get("resourceGroupAction")) for p in plan] == [
        ("cache", "create", "create"),
        ("kv", "create", "create"),
    ]
    assert emulator.writes() == []
    assert cli(app, "provision") == 0
    capsys.readouterr()

    def bigger(spec: Any) -> None:
        spec.capacity = 2

    app.model.resources[0].infrastructure_callbacks.append(bigger)
    before = len(emulator.writes())
    assert cli(app, "plan") == 0
    out = capsys.readouterr().out
    assert "cache: update" in out and "sku: Basic C1 -> Basic C2" in out
    assert "kv: no-change" in out
    assert len(emulator.writes()) == before


def test_provision_json_hides_secrets_unless_asked(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, cache("cache"), cache("kv", use_access_keys=True))
    assert cli(app, "provision", "--json") == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)["resources"]
    assert data["kv"]["connectionString"] == "***" and data["kv"]["primaryKey"] == "***"
    assert data["cache"]["connectionString"] == f"{data['cache']['hostName']}:6380,ssl=true"
    assert data["cache"]["authentication"] == "entraId"
    assert "cache: Provisioned" in captured.err
    assert cli(app, "provision", "--json", "--show-secrets") == 0
    shown = json.loads(capsys.readouterr().out)["resources"]["kv"]
    assert shown["connectionString"].endswith(f",password={shown['primaryKey']}")


def test_provision_env_format(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, cache("my-cache", use_access_keys=True))
    assert cli(app, "provision", "--format", "env") == 0
    out = capsys.readouterr().out
    assert "MY_CACHE_HOST=" in out and "MY_CACHE_PORT=6380" in out
    assert "# ConnectionStrings__my-cache omitted (secret)" in out
    assert "password=" not in out
    assert cli(app, "provision", "--format", "env", "--show-secrets") == 0
    shown = capsys.readouterr().out
    assert "ConnectionStrings__my-cache=" in shown and ",password=" in shown


def test_provision_github_format_masks_and_writes_files(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs, env = tmp_path / "gh_output", tmp_path / "gh_env"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_ENV", str(env))
    app = make_app(emulator, tmp_path, cache("kv", use_access_keys=True))
    assert cli(app, "provision", "--format", "github") == 0
    out = capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    key = lines["kv_primary_key"]
    assert f"::add-mask::{key}" in out
    assert out.index("::add-mask::") < out.index("kv:")
    unmasked = [line for line in out.splitlines() if not line.startswith("::add-mask::")]
    assert unmasked and not any(key in line for line in unmasked)
    assert lines["kv_connection_string"].endswith(f",password={key}")
    assert lines["kv_ssl_port"] == "6380"
    assert f"KV_PASSWORD={key}" in env.read_text()
    assert "ConnectionStrings__kv=" in env.read_text()


def test_destroy_deletes_only_what_this_app_created(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, cache("cache"), cache("kv", use_access_keys=True))
    assert cli(app, "provision") == 0
    settings = ProvisioningSettings.from_configuration(app.configuration, "shop")
    clients = create_clients(settings, EmulatorCredential())
    from azure.mgmt.redis import models

    foreign = models.RedisCreateParameters(
        location="westus",
        sku=models.Sku(name="Basic", family="C", capacity=0),
        tags={"apphost-app": "other-app"},
    )
    clients.redis.redis.begin_create(settings.resource_group, "foreign1", foreign, polling=False)
    untagged = models.RedisCreateParameters(
        location="westus", sku=models.Sku(name="Basic", family="C", capacity=0)
    )
    clients.redis.redis.begin_create(settings.resource_group, "existing1", untagged, polling=False)
    app.model.resources.append(cache("ref", existing_name="existing1"))
    capsys.readouterr()

    assert cli(app, "destroy") == 1  # no --yes and no terminal: refuses
    assert "pass --yes" in capsys.readouterr().err
    assert cli(app, "destroy", "--yes") == 0
    out = capsys.readouterr().out
    left = sorted(
        c.name for c in clients.redis.redis.list_by_resource_group(settings.resource_group)
    )
    assert left == ["existing1", "foreign1"]
    assert out.count("Deleted ") == 2
    assert not (app.state_dir / "azure" / "cache.json").exists()
    assert not (app.state_dir / "azure" / "kv.secrets.json").exists()
    clients.close()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("expired-token", "sign in again"),
        ("forbidden,method=PUT", "lacks permission 'Microsoft.Cache/redis/write'"),
    ],
)
def test_failures_exit_nonzero_with_one_line(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    expected: str,
) -> None:
    emulator.fault(fault)
    app = make_app(emulator, tmp_path, cache("cache"))
    assert cli(app, "provision", "--json") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("apphost provision: error: ") and expected in last


def test_missing_configuration_and_bad_arguments(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(emulator, tmp_path, cache("cache"))
    app.configuration = type(app.configuration)({})
    assert cli(app, "plan") == 1
    err = capsys.readouterr().err
    assert "Azure__SubscriptionId" in err and "Azure__Location" in err
    assert len(err.strip().splitlines()) == 1
    assert cli(app, "provision", "--json", "--format", "env") == 2
    assert capsys.readouterr().err == "apphost provision: --json and --format are exclusive\n"
    # A bad flag is refused by the parser, in one line, before the app host runs.
    app_host = tmp_path / "apphost.py"
    app_host.write_text("raise SystemExit('the app host must not run')\n")
    assert main(["provision", str(app_host), "--format", "xml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("apphost provision: argument --format: invalid choice: 'xml'")
    assert emulator.requests() == []


def test_each_command_has_one_parser_for_help_and_for_parsing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = {
        "plan": ["--json"],
        "provision": ["--json", "--format", "--show-secrets"],
        "destroy": ["--yes"],
    }
    for command, expected in flags.items():
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: apphost {command} ")
        assert all(flag in shown for flag in expected), (command, shown)
        assert "-- --help" not in shown
    # Whatever the command's parser does not know is configuration for the app host, in order
    # (no abbreviations: --form is not --format).
    args, config = build_parser().parse_known_args(
        ["provision", "app.py", "--Azure:Location", "westus", "--json", "--form=x", "--A:B=1"]
    )
    assert (args.apphost, args.json, args.format, args.show_secrets) == (
        "app.py",
        True,
        None,
        False,
    )
    assert config == ["--Azure:Location", "westus", "--form=x", "--A:B=1"]


def test_destroy_lists_once_and_ctrl_d_at_the_prompt_means_no(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app(emulator, tmp_path, cache("cache"))
    assert cli(app, "provision") == 0
    settings = ProvisioningSettings.from_configuration(app.configuration, "shop")
    clients = create_clients(settings, EmulatorCredential())

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", eof)
    capsys.readouterr()
    assert cli(app, "destroy") == 1
    captured = capsys.readouterr()
    assert "Nothing deleted." in captured.out and "Traceback" not in captured.err
    assert len(list(clients.redis.redis.list_by_resource_group(settings.resource_group))) == 1

    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    listings = emulator.count("GET", suffix="/providers/Microsoft.Cache/redis")
    assert cli(app, "destroy") == 0
    assert emulator.count("GET", suffix="/providers/Microsoft.Cache/redis") == listings + 1
    assert list(clients.redis.redis.list_by_resource_group(settings.resource_group)) == []
    clients.close()


def test_connection_variables_are_what_run_mode_injects() -> None:
    from provisioning.outputs import CacheOutputs

    common = dict(
        resource_name="my-cache",
        name="mycache-abc",
        resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/x",
        host_name="mycache-abc.redis.cache.windows.net",
        ssl_port=6380,
        principal_object_id=None,
    )
    keyed = CacheOutputs.build(primary_key="a/b+c=", **common)  # type: ignore[arg-type]
    host = "mycache-abc.redis.cache.windows.net"
    assert azure_commands.connection_variables(keyed) == [
        ("ConnectionStrings__my-cache", f"{host}:6380,ssl=true,password=a/b+c=", True),
        ("MY_CACHE_HOST", host, False),
        ("MY_CACHE_PORT", "6380", False),
        ("MY_CACHE_URI", f"rediss://:a%2Fb%2Bc%3D@{host}:6380", True),
        ("MY_CACHE_PASSWORD", "a/b+c=", True),
    ]
    entra = CacheOutputs.build(primary_key=None, **common)  # type: ignore[arg-type]
    assert azure_commands.connection_variables(entra) == [
        ("ConnectionStrings__my-cache", f"{host}:6380,ssl=true", False),
        ("MY_CACHE_HOST", host, False),
        ("MY_CACHE_PORT", "6380", False),
        ("MY_CACHE_URI", f"rediss://{host}:6380", False),
    ]
