"""Layered, case-insensitive configuration of the app host (issue 2, "The builder API")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apphost_sdk.configuration import Configuration, load_layered, parse_command_line
from apphost_sdk.errors import ConfigurationError

from .helpers import apphost_file, builder_from, write


def _settings(folder: Path, name: str, data: object) -> None:
    write(folder / name, json.dumps(data))


def test_layers_in_order_lowest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = apphost_file(tmp_path / "shop")
    _settings(
        tmp_path / "shop",
        "appsettings.json",
        {"Layer": {"A": "json", "B": "json", "C": "json", "D": "json"}, "OnlyJson": "j"},
    )
    _settings(
        tmp_path / "shop",
        "appsettings.Development.json",
        {"Layer": {"B": "env-json", "C": "env-json", "D": "env-json"}},
    )
    monkeypatch.setenv("Layer__C", "environment")
    monkeypatch.setenv("LAYER__D", "environment")
    builder = builder_from(host, ["--Layer:D=command-line", "leftover"])
    config = builder.configuration
    assert config["Layer:A"] == "json"
    assert config["Layer:B"] == "env-json"
    assert config["Layer:C"] == "environment"
    assert config["Layer:D"] == "command-line"
    assert config["OnlyJson"] == "j"
    assert builder.args == ["leftover"]
    assert builder.environment == "Development"
    assert builder.app_host_directory == (tmp_path / "shop").resolve()
    assert builder.execution_context.is_run_mode
    assert not builder.execution_context.is_publish_mode


def test_defaults_are_the_lowest_layer(tmp_path: Path) -> None:
    _settings(tmp_path, "appsettings.json", {"A": "json"})
    config, rest = load_layered(
        tmp_path, "Development", ["--C", "cli"], defaults={"A": "d", "B": "d", "C": "d"}, environ={}
    )
    assert (config["A"], config["B"], config["C"]) == ("json", "d", "cli")
    assert rest == []


def test_environment_selects_the_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = apphost_file(tmp_path / "app")
    _settings(tmp_path / "app", "appsettings.json", {"Where": "base"})
    _settings(tmp_path / "app", "appsettings.Development.json", {"Where": "development"})
    _settings(tmp_path / "app", "appsettings.Production.json", {"Where": "production"})
    assert builder_from(host).configuration["Where"] == "development"
    monkeypatch.setenv("APPHOST_ENVIRONMENT", "Production")
    builder = builder_from(host)
    assert builder.environment == "Production"
    assert builder.configuration["Where"] == "production"


def test_command_line_forms(tmp_path: Path) -> None:
    host = apphost_file(tmp_path / "app")
    builder = builder_from(
        host, ["--Azure:Location", "westeurope", "--Azure__SubscriptionId=sub-1", "--flag"]
    )
    config = builder.configuration
    assert config["azure:location"] == "westeurope"
    assert config["AZURE:SUBSCRIPTIONID"] == "sub-1"
    assert builder.args == ["--flag"]
    pairs, rest = parse_command_line(["--A=1=2", "--B", "x", "--C", "--D", "y", "pos"])
    assert pairs == {"A": "1=2", "B": "x", "D": "y"}
    assert rest == ["--C", "pos"]


def test_keys_are_case_insensitive_and_double_underscore_is_colon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = apphost_file(tmp_path / "app")
    _settings(tmp_path / "app", "appsettings.json", {"azure": {"subscriptionid": "from-json"}})
    monkeypatch.setenv("AZURE__SUBSCRIPTIONID", "from-env")
    config = builder_from(host).configuration
    for key in ("Azure:SubscriptionId", "azure__subscriptionid", "AZURE:SUBSCRIPTIONID"):
        assert config[key] == "from-env"
        assert key in config
    section = config.get_section("AZURE")
    assert section["SubscriptionId"] == "from-env"
    assert config.get_str("Azure:Missing", "dflt") == "dflt"


def test_json_is_flattened_with_types(tmp_path: Path) -> None:
    _settings(tmp_path, "appsettings.json", {"A": {"On": True, "N": 5, "F": 1.5, "L": ["x", "y"]}})
    config, _ = load_layered(tmp_path, "Development", [], environ={})
    assert config.get_bool("a:on") is True
    assert config.get_int("A:N") == 5
    assert config.get_float("A:F") == 1.5
    assert (config["A:L:0"], config["A:L:1"]) == ("x", "y")


def test_malformed_values_name_the_key() -> None:
    config = Configuration({"Port": "eighty", "On": "maybe"})
    with pytest.raises(ConfigurationError, match="Port"):
        config.get_int("Port")
    with pytest.raises(ConfigurationError, match="On"):
        config.get_bool("On")


@pytest.mark.parametrize("name", ["appsettings.json", "appsettings.Development.json"])
def test_malformed_json_names_the_file(tmp_path: Path, name: str) -> None:
    host = apphost_file(tmp_path / "app")
    write(tmp_path / "app" / name, '{\n  "Azure": {"Location": "x",}\n}\n')
    with pytest.raises(ConfigurationError) as info:
        builder_from(host)
    message = str(info.value)
    assert name in message
    assert "line 2" in message


def test_json_must_be_an_object(tmp_path: Path) -> None:
    write(tmp_path / "appsettings.json", "[1, 2]")
    with pytest.raises(ConfigurationError, match=r"appsettings\.json"):
        load_layered(tmp_path, "Development", [], environ={})


def test_publisher_switches_to_publish_mode(tmp_path: Path) -> None:
    host = apphost_file(tmp_path / "app")
    builder = builder_from(host, ["--publisher", "manifest"])
    assert builder.execution_context.is_publish_mode


def test_get_section_keeps_the_original_sub_keys() -> None:
    config = Configuration({"Straße:Key": "v", "Azure:Sub:Id": "x", "azure__Location": "we"})
    assert config.get_section("Straße").to_dict() == {"Key": "v"}
    section = config.get_section("AZURE")
    assert section.to_dict() == {"Sub:Id": "x", "Location": "we"}
    assert section.get_section("sub")["ID"] == "x"


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}(:[A-Za-z][A-Za-z0-9]{0,6}){0,2}", fullmatch=True),
        st.text(max_size=5),
        max_size=6,
    ),
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}(__[A-Za-z][A-Za-z0-9]{0,6}){0,2}", fullmatch=True),
        st.text(max_size=5),
        max_size=6,
    ),
)
def test_later_layers_win_whatever_the_case(
    json_layer: dict[str, str], env_layer: dict[str, str]
) -> None:
    config = Configuration()
    config.add_mapping(json_layer)
    config.add_environment(env_layer)
    expected: dict[str, str] = {}
    for layer in (json_layer, env_layer):
        for k, v in layer.items():
            expected[k.replace("__", ":").casefold()] = v
    for k, v in expected.items():
        assert config[k.upper()] == v
        assert config[k.replace(":", "__")] == v
    assert len(config) == len(expected)
