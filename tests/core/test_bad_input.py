"""Input that used to be accepted and only failed once things ran (issue 11): every case is a
``build()`` problem naming what to fix, and none echoes a secret value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apphost_sdk.errors import ValidationError
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import children_of, services, write


def new_builder(args: list[str] | None = None) -> DistributedApplicationBuilder:
    return DistributedApplication.create_builder([] if args is None else args)


def problems_of(builder: DistributedApplicationBuilder) -> list[str]:
    before = set(children_of(os.getpid()))
    with pytest.raises(ValidationError) as info:
        builder.build()
    assert set(children_of(os.getpid())) == before  # nothing started
    return info.value.problems


# -- passwords and secrets with edge whitespace or NUL ------------------------------------------
#
# Redis accepts such a password, but its consumers never connect: connection-string parsers
# (StackExchange.Redis's and ours) trim the value, so a client sends another password, and NUL
# cannot travel in an environment variable or argument at all. Other control characters inside
# a password go through intact (tests/core/test_process_runtime.py starts Redis with one).

_EDGE = "starts or ends with whitespace"
_NUL = "contains a NUL character"
_BAD_SECRETS = [
    pytest.param(" Passw0rd-long", _EDGE, id="leading-space"),
    pytest.param("Passw0rd-long ", _EDGE, id="trailing-space"),
    pytest.param("Passw0rd-long\n", _EDGE, id="trailing-newline"),
    pytest.param("Passw0rd-long\r\n", _EDGE, id="trailing-crlf"),
    pytest.param("\tPassw0rd-long", _EDGE, id="leading-tab"),
    pytest.param("Passw0rd-long\u00a0", _EDGE, id="trailing-no-break-space"),
    pytest.param("Passw0rd\x00long", _NUL, id="nul-inside"),
    pytest.param("Passw0rd-long\x00", _NUL, id="nul-at-the-end"),
]


@pytest.mark.parametrize(("value", "why"), _BAD_SECRETS)
def test_a_secret_parameter_with_edge_whitespace_or_nul(value: str, why: str) -> None:
    b = new_builder()
    pw = b.add_parameter("db-password", value, secret=True)
    b.add_executable("api", "true", ".").with_environment("DB_PASSWORD", pw)
    problems = problems_of(b)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"parameter db-password (its value is not shown) {why}")
    assert "Parameters:db-password" in problems[0]
    assert "Passw0rd" not in problems[0] and "long" not in problems[0]


# An environment variable cannot hold NUL (that case is covered through value=).
@pytest.mark.parametrize(
    ("value", "why"), [p for p in _BAD_SECRETS if "\x00" not in str(p.values[0])]
)
def test_a_redis_password_from_configuration(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    """A password given in configuration (here the environment), secret or not."""
    monkeypatch.setenv("Parameters__cache-password", value)
    for secret in (True, False):
        b = new_builder()
        b.add_redis("cache", password=b.add_parameter("cache-password", secret=secret))
        problems = problems_of(b)
        assert len(problems) == 1, problems
        assert "parameter cache-password" in problems[0] and why in problems[0]
        assert "Parameters:cache-password" in problems[0]
        assert "Passw0rd" not in problems[0]


def test_a_password_from_appsettings_json(tmp_path: Path) -> None:
    from .helpers import apphost_file, builder_from

    host = apphost_file(tmp_path / "shop")
    write(tmp_path / "shop" / "appsettings.json", '{"Parameters": {"pw": "Passw0rd\\u0000x"}}')
    b = builder_from(host)
    b.add_redis("cache", password=b.add_parameter("pw"))
    (problem,) = problems_of(b)
    assert problem.startswith("parameter pw (its value is not shown) contains a NUL character")


def test_both_problems_of_one_value_are_reported() -> None:
    b = new_builder()
    b.add_redis("cache", password=b.add_parameter("pw", " Pass\x00word ", secret=True))
    problems = problems_of(b)
    assert len(problems) == 2, problems
    assert _EDGE in problems[0] and _NUL in problems[1]


@pytest.mark.parametrize(
    "value",
    [
        "Passw0rd with inner spaces",
        "pässwörd-ünïcode",
        "p@ss:w0rd/;{}'\"",
        "x" * 200,
    ],
)
def test_ordinary_passwords_are_accepted(value: str) -> None:
    b = new_builder()
    b.add_redis("cache", password=b.add_parameter("pw", value, secret=True))
    b.build()


def test_a_plain_parameter_may_hold_whitespace() -> None:
    """Only secrets and the parameters a resource type needs (a password) are checked."""
    b = new_builder()
    greeting = b.add_parameter("greeting", " hello\tworld ")
    b.add_executable("api", "true", ".").with_environment("GREETING", greeting)
    b.build()


# -- Python apps whose folder or script does not exist ----------------------------------------


def test_a_python_app_in_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    b = new_builder()
    b.add_python_app("api", str(missing), "app.py")
    b.add_python_module("worker", str(missing), "worker.main")
    b.add_uvicorn_app("web", str(missing), "main:app")
    problems = problems_of(b)
    assert problems == [
        f"{name}: the app_directory {missing} does not exist: create it or fix the "
        f"app_directory passed to {method}({name!r}, ...)"
        for name, method in (
            ("api", "add_python_app"),
            ("worker", "add_python_module"),
            ("web", "add_uvicorn_app"),
        )
    ]


def test_a_python_app_whose_script_is_missing(tmp_path: Path) -> None:
    folder = services(tmp_path / "svc")
    (folder / "a-folder.py").mkdir()
    b = new_builder()
    b.add_python_app("api", str(folder), "app.py")
    b.add_python_app("sub", str(folder), "a-folder.py")
    b.add_python_app("ok", str(folder), "dump.py", str(tmp_path / "out.json"))
    problems = problems_of(b)
    assert problems == [
        f"api: the script {folder / 'app.py'} does not exist: create it or fix the script "
        "passed to add_python_app('api', ...) (a path relative to the app_directory)",
        f"sub: the script {folder / 'a-folder.py'} is not a file: create it or fix the script "
        "passed to add_python_app('sub', ...) (a path relative to the app_directory)",
    ]


def test_an_app_directory_that_is_a_file(tmp_path: Path) -> None:
    file = write(tmp_path / "app.py", "print('hi')\n")
    b = new_builder()
    b.add_python_module("worker", str(file), "worker")
    (problem,) = problems_of(b)
    assert problem.startswith(f"worker: the app_directory {file} is not a folder")


def test_relative_folders_are_checked_against_the_app_host(tmp_path: Path) -> None:
    from .helpers import apphost_file, builder_from

    host = apphost_file(tmp_path / "shop")
    write(tmp_path / "shop" / "api" / "app.py", "print('hi')\n")
    b = builder_from(host)
    b.add_python_app("api", "api", "app.py")
    b.add_python_app("gone", "gone", "app.py")
    (problem,) = problems_of(b)
    assert problem.startswith(f"gone: the app_directory {tmp_path / 'shop' / 'gone'} does not")


@pytest.mark.parametrize("inner", ["\n", "\t", "\r", "\x1b", "\x7f", "\x01"])
def test_a_password_with_a_control_character_is_reported(inner: str) -> None:
    from apphost_sdk import DistributedApplication
    from apphost_sdk.errors import ValidationError

    secret = f"long-{inner}-secret"
    b = DistributedApplication.create_builder([])
    b.add_redis("cache").with_password(b.add_parameter("pw", secret, secret=True))
    with pytest.raises(ValidationError) as info:
        b.build()
    assert any("contains a control character" in p for p in info.value.problems)
    assert secret not in str(info.value)
