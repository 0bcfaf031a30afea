"""Builder and resource methods check their arguments at the call: a wrong type raises
``ModelArgumentError`` (a ``TypeError``), a wrong value ``ModelValueError`` (a ``ValueError``),
each naming the call, the argument and the fix, and never a secret value."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from apphost_sdk.errors import ApphostError, ModelArgumentError, ModelValueError, ValidationError
from apphost_sdk.integrations.azure_redis import AzureRedisResource
from apphost_sdk.integrations.redis import RedisResource
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.executables import ExecutableResource
from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import write

SECRET = "s3cret-pass"


@attrs.define
class Model:
    b: DistributedApplicationBuilder
    cache: RedisResource
    api: ExecutableResource
    az: AzureRedisResource


@pytest.fixture
def m() -> Model:
    b = DistributedApplication.create_builder([])
    return Model(
        b,
        b.add_redis("cache"),
        b.add_executable("api", "true", ".").with_http_endpoint(),
        b.add_azure_redis("az"),
    )


Call = Callable[[Model], object]


def case(call: Call, *expected: str, id: str) -> Any:
    return pytest.param(call, expected, id=id)


# Each case: the call, then substrings of the message (the call's name first, then the fix).
TYPE_CASES = [
    case(
        lambda m: m.b.add_redis("cache2", password=SECRET),
        "add_redis('cache2')",
        "got a str",
        'builder.add_parameter("cache2-password", "...", secret=True)',
        id="add_redis-password-str",
    ),
    case(
        lambda m: m.cache.with_password(SECRET),
        "cache.with_password",
        'builder.add_parameter("cache-password", "...", secret=True)',
        id="with_password-str",
    ),
    case(
        lambda m: m.cache.with_persistence(interval=60),
        "cache.with_persistence",
        "int 60",
        "timedelta(seconds=60)",
        id="with_persistence-interval-int",
    ),
    case(
        lambda m: m.cache.with_persistence(keys_changed_threshold=True),
        "cache.with_persistence",
        "keys_changed_threshold",
        "bool",
        id="with_persistence-threshold-bool",
    ),
    case(
        lambda m: m.cache.with_persistence(keys_changed_threshold=1.5),
        "cache.with_persistence",
        "keys_changed_threshold=1",
        id="with_persistence-threshold-float",
    ),
    case(
        lambda m: m.cache.with_host_port(True),
        "cache.with_host_port",
        "bool True",
        "port=6380",
        id="with_host_port-bool",
    ),
    case(
        lambda m: m.cache.with_host_port("6380"),
        "cache.with_host_port",
        "str '6380'",
        "port=6380",
        id="with_host_port-str",
    ),
    case(
        lambda m: m.b.add_redis("c2", port=True),
        "add_redis('c2')",
        "bool True",
        "or None for a free port",
        id="add_redis-port-bool",
    ),
    case(
        lambda m: m.b.add_redis("c2", port="6380"),
        "add_redis('c2')",
        "str '6380'",
        id="add_redis-port-str",
    ),
    case(
        lambda m: m.api.with_http_endpoint(port=True),
        "api.with_http_endpoint",
        "bool True",
        "port=8000",
        id="with_http_endpoint-port-bool",
    ),
    case(
        lambda m: m.api.with_http_endpoint(port="8000"),
        "api.with_http_endpoint",
        "str '8000'",
        id="with_http_endpoint-port-str",
    ),
    case(
        lambda m: m.api.with_http_endpoint(env=5),
        "api.with_http_endpoint",
        "env must be a string",
        "'PORT'",
        id="with_http_endpoint-env-int",
    ),
    case(
        lambda m: m.api.with_http_health_check(5),
        "api.with_http_health_check",
        "'/health'",
        id="with_http_health_check-int",
    ),
    case(
        lambda m: m.api.with_reference(m.cache, 5),
        "api.with_reference",
        "connection_name",
        "int 5",
        "or None for the resource's name",
        id="with_reference-connection_name-int",
    ),
    case(
        lambda m: m.api.with_reference(m.cache, optional="yes"),
        "api.with_reference",
        "optional=True",
        id="with_reference-optional-str",
    ),
    case(
        lambda m: m.api.with_reference("cache"),
        "api.with_reference",
        "not its name",
        id="with_reference-name-not-resource",
    ),
    case(
        lambda m: m.api.wait_for(None),
        "api.wait_for",
        "builder.add_",
        id="wait_for-none",
    ),
    case(
        lambda m: m.api.wait_for_completion(m.api, exit_code=True),
        "api.wait_for_completion",
        "exit code",
        id="wait_for_completion-exit_code-bool",
    ),
    case(
        lambda m: m.api.with_environment(5, "x"),
        "api.with_environment",
        "'MY_VAR'",
        id="with_environment-name-int",
    ),
    case(
        lambda m: m.api.with_environment("X", 5),
        "api.with_environment('X', ...)",
        "add_parameter",
        id="with_environment-value-int",
    ),
    case(
        lambda m: m.b.add_executable("x", None, "."),
        "add_executable('x')",
        "command",
        "'python'",
        id="add_executable-command-none",
    ),
    case(
        lambda m: m.b.add_executable("x", "ls", None),
        "add_executable('x')",
        "working_directory",
        "'.'",
        id="add_executable-directory-none",
    ),
    case(
        lambda m: m.b.add_executable("x", "ls", ".", None),
        "add_executable('x')",
        "argument 1",
        "leave out missing ones",
        id="add_executable-arg-none",
    ),
    case(
        lambda m: m.b.add_python_app("p", "api", None),
        "add_python_app('p')",
        "script",
        "'app.py'",
        id="add_python_app-script-none",
    ),
    case(
        lambda m: m.b.add_python_app("p", "api", 5),
        "add_python_app('p')",
        "script",
        id="add_python_app-script-int",
    ),
    case(
        lambda m: m.b.add_python_app("p", None, "app.py"),
        "add_python_app('p')",
        "app_directory",
        id="add_python_app-directory-none",
    ),
    case(
        lambda m: m.b.add_parameter("p", value=5),
        "add_parameter('p')",
        "value must be None or a string",
        "pass the value as a string",
        id="add_parameter-value-int",
    ),
    case(
        lambda m: m.b.add_parameter("p", secret="yes"),
        "add_parameter('p')",
        "secret=True",
        id="add_parameter-secret-str",
    ),
    case(
        lambda m: m.cache.with_data_volume(5),
        "cache.with_data_volume",
        "or None to derive one",
        id="with_data_volume-int",
    ),
    case(
        lambda m: m.cache.with_data_bind_mount(None),
        "cache.with_data_bind_mount",
        "pass a folder",
        id="with_data_bind_mount-none",
    ),
    case(
        lambda m: m.cache.with_image(None),
        "cache.with_image",
        "'redis:8.6'",
        id="with_image-image-none",
    ),
    case(
        lambda m: m.cache.with_image("redis", 7),
        "cache.with_image",
        "tag",
        "int 7",
        "'8.6'",
        id="with_image-tag-int",
    ),
    case(
        lambda m: m.cache.with_args(None),
        "cache.with_args",
        "argument 1",
        id="redis-with_args-none",
    ),
    case(
        lambda m: m.cache.with_args("--maxmemory", object()),
        "cache.with_args",
        "argument 2",
        id="redis-with_args-object",
    ),
    case(
        lambda m: m.api.with_args("--x", None),
        "api.with_args",
        "argument 2",
        id="executable-with_args-none",
    ),
    case(
        lambda m: m.cache.with_lifetime(5),
        "cache.with_lifetime",
        "'persistent'",
        id="with_lifetime-int",
    ),
    case(
        lambda m: m.az.run_as_container(5),
        "az.run_as_container",
        "configure",
        "pass a function",
        id="run_as_container-int",
    ),
    case(
        lambda m: m.az.as_existing("n", 5),
        "az.as_existing",
        "resource_group",
        "resource group name",
        id="as_existing-group-int",
    ),
    case(
        lambda m: m.az.as_existing(None),
        "az.as_existing",
        "Azure name",
        id="as_existing-name-none",
    ),
    case(
        lambda m: m.az.configure_infrastructure(5),
        "az.configure_infrastructure",
        "pass a function",
        id="configure_infrastructure-int",
    ),
    case(
        lambda m: DistributedApplication.create_builder("--foo=bar"),
        "create_builder(args)",
        "pass a list of strings such as ['--Key=Value']",
        id="create_builder-str",
    ),
    case(
        lambda m: DistributedApplication.create_builder(["--a=b", 5]),
        "create_builder(args)",
        "args[1]",
        "pass a list of strings such as ['--Key=Value']",
        id="create_builder-item-int",
    ),
    case(
        lambda m: m.b.add_redis(123),
        "add_redis(123): the name must be a string",
        "'cache'",
        id="add_redis-name-int",
    ),
    case(lambda m: m.b.add_azure_redis(None), "add_azure_redis(None)", id="add_azure_redis-name"),
    case(lambda m: m.b.add_parameter(5), "add_parameter(5)", id="add_parameter-name"),
    case(
        lambda m: m.b.add_connection_string(b"db"),
        "add_connection_string(b'db')",
        id="add_connection_string-name",
    ),
    case(
        lambda m: m.b.add_executable(Path("x"), "ls", "."),
        "add_executable(",
        id="add_executable-name",
    ),
    case(lambda m: m.b.add_python_app(1, "api", "app.py"), "add_python_app(1)", id="py-name"),
]

VALUE_CASES = [
    case(
        lambda m: m.cache.with_persistence(interval=timedelta(milliseconds=10)),
        "cache.with_persistence",
        "at least 1 second",
        "timedelta(seconds=60)",
        id="with_persistence-interval-short",
    ),
    case(
        lambda m: m.cache.with_persistence(keys_changed_threshold=0),
        "cache.with_persistence",
        "at least 1",
        id="with_persistence-threshold-zero",
    ),
    case(
        lambda m: m.cache.with_host_port(70000),
        "cache.with_host_port",
        "70000 is not a port",
        id="with_host_port-range",
    ),
    case(
        lambda m: m.b.add_redis("c2", port=0),
        "add_redis('c2')",
        "0 is not a port",
        id="add_redis-port-zero",
    ),
    case(
        lambda m: m.api.with_http_endpoint(port=-1),
        "api.with_http_endpoint",
        "-1 is not a port",
        id="with_http_endpoint-port-negative",
    ),
    case(
        lambda m: m.api.with_http_endpoint(env=""),
        "api.with_http_endpoint",
        "'PORT'",
        id="with_http_endpoint-env-empty",
    ),
    case(
        lambda m: m.api.with_http_endpoint(env="MY PORT"),
        "api.with_http_endpoint",
        "'MY PORT' is not a variable name",
        id="with_http_endpoint-env-space",
    ),
    case(
        lambda m: m.api.with_http_endpoint(env="1PORT"),
        "api.with_http_endpoint",
        "not start with a digit",
        id="with_http_endpoint-env-digit",
    ),
    case(
        lambda m: m.api.with_http_health_check("health"),
        "api.with_http_health_check",
        "start with '/'",
        "'/health'",
        id="with_http_health_check-relative",
    ),
    case(
        lambda m: m.b.add_executable("w", "true", ".").with_http_health_check("/health"),
        "w.with_http_health_check",
        "w.with_http_endpoint()",
        id="with_http_health_check-no-endpoint",
    ),
    case(
        lambda m: m.api.with_reference(m.cache, "my cache"),
        "api.with_reference",
        "'my cache'",
        "letters, digits, hyphens and underscores",
        id="with_reference-connection_name-space",
    ),
    case(
        lambda m: m.api.with_reference(m.cache, ""),
        "api.with_reference",
        "must not be empty",
        id="with_reference-connection_name-empty",
    ),
    case(
        lambda m: m.api.with_reference(m.cache, "1cache"),
        "api.with_reference",
        "start with a letter",
        id="with_reference-connection_name-digit",
    ),
    case(
        lambda m: m.api.with_environment("MY VAR", "x"),
        "api.with_environment",
        "'MY VAR' is not a variable name",
        "'MY_VAR'",
        id="with_environment-name-space",
    ),
    case(
        lambda m: m.api.with_environment("A=B", "x"),
        "api.with_environment",
        "not a variable name",
        id="with_environment-name-equals",
    ),
    case(
        lambda m: m.b.add_executable("x", "", "."),
        "add_executable('x')",
        "command must not be empty",
        id="add_executable-command-empty",
    ),
    case(
        lambda m: m.b.add_python_app("p", "api", ""),
        "add_python_app('p')",
        "script must not be empty",
        id="add_python_app-script-empty",
    ),
    case(
        lambda m: m.cache.with_data_volume("../etc"),
        "cache.with_data_volume",
        "not a volume name",
        id="with_data_volume-traversal",
    ),
    case(
        lambda m: m.cache.with_data_volume(""),
        "cache.with_data_volume",
        "or None to derive one",
        id="with_data_volume-empty",
    ),
    case(
        lambda m: m.cache.with_data_bind_mount(""),
        "cache.with_data_bind_mount",
        "must not be empty",
        id="with_data_bind_mount-empty",
    ),
    case(lambda m: m.cache.with_image(""), "cache.with_image", "image", id="with_image-empty"),
    case(
        lambda m: m.cache.with_image("my redis"),
        "cache.with_image",
        "not an image name",
        id="with_image-space",
    ),
    case(
        lambda m: m.cache.with_image("redis:"),
        "cache.with_image",
        "not an image tag",
        id="with_image-empty-tag",
    ),
    case(
        lambda m: m.cache.with_image("redis:7", "8"),
        "cache.with_image",
        "given twice",
        id="with_image-tag-twice",
    ),
    case(
        lambda m: m.cache.with_image("redis", "-bad"),
        "cache.with_image",
        "not an image tag",
        id="with_image-bad-tag",
    ),
    case(
        lambda m: m.cache.with_lifetime("forever"),
        "cache.with_lifetime",
        "'forever' is not a lifetime",
        id="with_lifetime-unknown",
    ),
    case(
        lambda m: m.az.as_existing(""),
        "az.as_existing",
        "must not be empty",
        id="as_existing-empty",
    ),
    case(
        lambda m: m.az.as_existing("my cache"),
        "az.as_existing",
        "not an Azure cache name",
        id="as_existing-bad-name",
    ),
    case(
        lambda m: m.az.as_existing("c", "rg."),
        "az.as_existing",
        "not a resource group name",
        id="as_existing-bad-group",
    ),
]


def _raise(m: Model, call: Call, kind: type[Exception]) -> str:
    with pytest.raises(kind) as info:
        call(m)
    message = str(info.value)
    assert isinstance(info.value, ApphostError)
    assert "\n" not in message  # the excepthook prints it as one line
    assert "; pass " in message or "; call " in message  # every message ends with the fix
    assert SECRET not in message
    return message


@pytest.mark.parametrize(("call", "expected"), TYPE_CASES)
def test_wrong_types(m: Model, call: Call, expected: tuple[str, ...]) -> None:
    message = _raise(m, call, ModelArgumentError)
    with pytest.raises(TypeError):
        call(m)
    assert not isinstance(ModelArgumentError("x"), ValueError)
    assert message.startswith(expected[0]), message
    for part in expected[1:]:
        assert part in message, message


@pytest.mark.parametrize(("call", "expected"), VALUE_CASES)
def test_wrong_values(m: Model, call: Call, expected: tuple[str, ...]) -> None:
    message = _raise(m, call, ModelValueError)
    with pytest.raises(ValueError):
        call(m)
    assert not isinstance(ModelValueError("x"), TypeError)
    assert message.startswith(expected[0]), message
    for part in expected[1:]:
        assert part in message, message


def test_a_wrong_call_changes_nothing(m: Model) -> None:
    before = (m.cache.host_port, m.cache.password_parameter, m.cache.persistence, m.cache.tag)
    for call in [
        lambda: m.cache.with_host_port(True),
        lambda: m.cache.with_password(SECRET),  # type: ignore[arg-type]
        lambda: m.cache.with_persistence(interval=60),  # type: ignore[arg-type]
        lambda: m.cache.with_image("redis", "-x"),
    ]:
        with pytest.raises(ApphostError):
            call()
    after = (m.cache.host_port, m.cache.password_parameter, m.cache.persistence, m.cache.tag)
    assert after == before
    assert m.cache.password_enabled
    assert len(m.b.resources) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.b.add_parameter("p", value=12345),
        lambda m: m.api.with_environment("TOKEN", 12345),
        lambda m: m.b.add_redis("c2", password=12345),
        lambda m: DistributedApplication.create_builder(["--Parameters:pw=x", 12345]),
    ],
)
def test_secret_values_are_named_by_type_only(m: Model, call: Call) -> None:
    with pytest.raises(ModelArgumentError) as info:
        call(m)
    assert "12345" not in str(info.value)
    assert "int" in str(info.value)


def test_create_builder_args_of_a_str_name_no_value() -> None:
    with pytest.raises(ModelArgumentError) as info:
        DistributedApplication.create_builder(f"--Parameters:pw={SECRET}")  # type: ignore[arg-type]
    assert SECRET not in str(info.value)


def test_good_arguments_are_accepted(m: Model, tmp_path: Path) -> None:
    b = m.b
    pw = b.add_parameter("cache2-password", "long-enough-secret", secret=True)
    cache2 = b.add_redis("cache2", port=6390, password=pw)
    assert cache2.password_parameter is pw and cache2.password_enabled
    assert cache2.host_port == 6390
    assert b.add_redis("cache3", password=None).password_enabled  # None: generate one
    m.cache.with_host_port(6391).with_host_port(None)
    assert m.cache.host_port is None
    m.cache.with_persistence(timedelta(minutes=5), 10)
    assert m.cache.persistence is not None
    assert (m.cache.persistence.interval_seconds, m.cache.persistence.keys_changed_threshold) == (
        300,
        10,
    )
    m.cache.with_image("docker.io/library/redis:7.2")
    assert (m.cache.image, m.cache.tag) == ("docker.io/library/redis", "7.2")
    m.cache.with_image("localhost:5000/redis", "8.0")
    assert (m.cache.image, m.cache.tag) == ("localhost:5000/redis", "8.0")
    m.cache.with_data_volume("cache-data").with_data_volume()
    m.cache.with_data_bind_mount(tmp_path / "data")
    assert m.cache.bind_mount == str(tmp_path / "data")
    m.cache.with_args("--maxmemory", 1024, 0.5, Path("x.conf"))
    assert m.cache.args == ["--maxmemory", "1024", "0.5", "x.conf"]
    m.api.with_http_endpoint(port=8123, env="HTTP_PORT").with_http_health_check("/ready")
    m.api.with_reference(m.cache, "session-store").with_reference(cache2, "my_cache", True)
    assert [r.connection_name for r in m.api.references] == ["session-store", "my_cache"]
    m.api.with_environment("_X1", "v").with_environment("REGION", b.add_parameter("region", "eu"))
    m.api.wait_for_completion(b.add_executable("init", "true", "."), exit_code=3)
    exe = b.add_executable("tool", Path("bin") / "tool", tmp_path, "--n", 3)
    assert (exe.command, exe.working_directory, exe.args) == (
        str(Path("bin") / "tool"),
        str(tmp_path),
        ["--n", "3"],
    )
    svc = tmp_path / "svc"
    svc.mkdir()
    (svc / "main.py").touch()
    app = b.add_python_app("worker", svc, Path("main.py"))
    assert app.command == "main.py" and app.working_directory.endswith("svc")
    m.az.run_as_container(lambda r: r.with_host_port(6392)).as_existing("my-cache", "rg_(1).x")
    m.az.configure_infrastructure(lambda spec: None)
    assert DistributedApplication.create_builder(("--A=1",)).configuration.get_str("A") == "1"
    b.build()


def test_two_references_under_one_connection_name_are_reported_by_build(m: Model) -> None:
    other = m.b.add_redis("other")
    m.api.with_reference(m.cache, "store").with_reference(other, "STORE")
    with pytest.raises(ValidationError) as info:
        m.b.build()
    assert info.value.problems == [
        "api references cache and other under the same connection name (STORE_*): pass "
        "another connection_name to one of the with_reference() calls"
    ]


def test_a_parameter_of_another_builder_is_reported_by_build(m: Model) -> None:
    other = DistributedApplication.create_builder([])
    pw = other.add_parameter("pw", "long-enough-secret", secret=True)
    m.cache.with_password(pw)
    m.api.with_environment("REGION", other.add_parameter("region", "eu"))
    with pytest.raises(ValidationError) as info:
        m.b.build()
    assert info.value.problems == [
        "cache uses parameter 'pw', which belongs to another builder: add it to this "
        "builder with add_parameter() and use that one",
        "api uses parameter 'region', which belongs to another builder: add it to this "
        "builder with add_parameter() and use that one",
    ]


@pytest.mark.parametrize(
    ("line", "start"),
    [
        (
            f'b.add_redis("cache", password="{SECRET}")',
            "apphost: add_redis('cache'): password must be a parameter, got a str; pass "
            'builder.add_parameter("cache-password", "...", secret=True)',
        ),
        (
            'b.add_redis("cache").with_persistence(interval=60)',
            "apphost: cache.with_persistence: interval must be a datetime.timedelta",
        ),
        (
            'b.add_executable("api", "true", ".").with_http_health_check("health")',
            "apphost: api.with_http_health_check:",
        ),
        ("b.add_redis(123)", "apphost: add_redis(123): the name must be a string"),
    ],
)
def test_running_a_broken_app_host_prints_one_line(tmp_path: Path, line: str, start: str) -> None:
    script = write(
        tmp_path / "shop" / "apphost.py",
        "from apphost_sdk import DistributedApplication\n"
        "b = DistributedApplication.create_builder()\n"
        f"{line}\n"
        "b.build().run()\n",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(start), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_create_builder_with_a_str_prints_one_line(tmp_path: Path) -> None:
    script = write(
        tmp_path / "apphost.py",
        "from apphost_sdk import DistributedApplication\n"
        'b = DistributedApplication.create_builder("--foo=bar")\n',
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "apphost: create_builder(args): args must be a list, got str; pass a list of strings "
        "such as ['--Key=Value']"
    )
    assert done.stderr.count("\n") == 1
