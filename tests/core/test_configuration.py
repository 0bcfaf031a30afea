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


# -- keys equal up to case in one file (issue 11): refused, as .NET refuses them ---------------


@pytest.mark.parametrize("name", ["appsettings.json", "appsettings.Development.json"])
@pytest.mark.parametrize(
    ("text", "keys"),
    [
        (
            '{"Azure": {"Location": "westeurope", "location": "northeurope"}}',
            ["Azure:Location", "Azure:location"],
        ),
        (
            '{"Azure": {"Location": "a"}, "AZURE": {"LOCATION": "b"}}',
            ["Azure:Location", "AZURE:LOCATION"],
        ),
        ('{"A": {"B": {"C": [{"Key": 1, "KEY": 2}]}}}', ["A:B:C:0:Key", "A:B:C:0:KEY"]),
        ('{"Mode": "x", "Mode": "y"}', ["Mode"]),
        (
            '{"Azure:Location": "a", "Azure": {"location": "b"}}',
            ["Azure:Location", "Azure:location"],
        ),
    ],
)
def test_keys_equal_up_to_case_in_one_file_are_an_error(
    tmp_path: Path, name: str, text: str, keys: list[str]
) -> None:
    host = apphost_file(tmp_path / "app")
    write(tmp_path / "app" / name, text)
    with pytest.raises(ConfigurationError) as info:
        builder_from(host)
    message = str(info.value)
    assert str(tmp_path / "app" / name) in message
    for key in keys:
        assert repr(key) in message
    assert "case-insensitive" in message
    for value in ("westeurope", "northeurope", '"a"', '"b"', '"x"', '"y"'):
        assert value not in message  # the values, which may be secrets, are never shown


def test_every_duplicate_of_a_file_is_named_and_values_are_not(tmp_path: Path) -> None:
    write(
        tmp_path / "appsettings.json",
        '{"Parameters": {"pw": "Secret-1", "PW": "Secret-2"}, "a": 1, "A": {"x": 1}, '
        '"B": 1, "b": 2}',
    )
    with pytest.raises(ConfigurationError) as info:
        load_layered(tmp_path, "Development", [], environ={})
    message = str(info.value)
    assert "'Parameters:pw' and 'Parameters:PW' are one key" in message
    assert "'B' and 'b' are one key" in message
    assert "Secret-" not in message


def test_sections_that_differ_in_case_but_not_keys_merge(tmp_path: Path) -> None:
    """As in .NET, only a key set twice is refused: ``A:b`` and ``a:c`` are two keys."""
    _settings(tmp_path, "appsettings.json", {"A": {"b": "1"}, "a": {"c": "2"}})
    config, _ = load_layered(tmp_path, "Development", [], environ={})
    assert (config["a:B"], config["A:C"]) == ("1", "2")


def test_the_same_key_in_two_layers_is_not_a_duplicate(tmp_path: Path) -> None:
    _settings(tmp_path, "appsettings.json", {"Where": "base"})
    _settings(tmp_path, "appsettings.Development.json", {"WHERE": "development"})
    config, _ = load_layered(tmp_path, "Development", ["--where=cli"], environ={"wHeRe": "env"})
    assert config["Where"] == "cli"


def test_the_service_side_refuses_them_too(tmp_path: Path) -> None:
    from apphost_sdk.hosting import HostApplicationBuilder

    write(tmp_path / "appsettings.json", '{"ConnectionStrings": {"cache": "a", "Cache": "b"}}')
    with pytest.raises(
        ConfigurationError, match="'ConnectionStrings:cache' and 'ConnectionStrings:Cache'"
    ):
        HostApplicationBuilder(environ={}, content_root=tmp_path, configure_logging=False)
