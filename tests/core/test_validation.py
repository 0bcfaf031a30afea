"""Build-time validation: every problem found before anything starts, each naming the resource
and the fix (issue 2, "Validation at build time")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apphost_sdk.errors import ValidationError
from apphost_sdk.model.annotations import EndpointAnnotation
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.names import name_problem
from apphost_sdk.orchestration.app import DistributedApplication

from .helpers import apphost_file, builder_from, children_of, write


def new_builder(args: list[str] | None = None) -> DistributedApplicationBuilder:
    return DistributedApplication.create_builder([] if args is None else args)


def problems_of(builder: DistributedApplicationBuilder) -> list[str]:
    with pytest.raises(ValidationError) as info:
        builder.build()
    problems = info.value.problems
    assert problems
    for p in problems:
        assert p in str(info.value)
    return problems


def one_problem(builder: DistributedApplicationBuilder) -> str:
    problems = problems_of(builder)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("1cache", "start with a letter"),
        ("-cache", "start with a letter"),
        ("", "empty"),
        ("my_cache", "letters, digits and hyphens"),
        ("my.cache", "letters, digits and hyphens"),
        ("café", "letters, digits and hyphens"),
        ("my--cache", "'--'"),
        ("cache-", "end with a hyphen"),
        ("a" * 65, "at most 64"),
        ("cache\n", "letters, digits and hyphens"),
    ],
)
def test_bad_names(name: str, why: str) -> None:
    b = new_builder()
    b.add_redis(name)
    problem = one_problem(b)
    assert why in problem
    assert "rename the redis resource" in problem
    if name.strip():
        assert repr(name) in problem


@pytest.mark.parametrize("name", ["a", "cache", "my-cache", "Cache2", "a" * 64, "a-b-c"])
def test_good_names(name: str) -> None:
    assert name_problem(name) is None
    b = new_builder()
    b.add_executable(name, "true", ".")
    b.build()


def test_a_container_name_must_fit_a_dns_label() -> None:
    b = new_builder()
    b.add_redis("a" * 63)
    b.add_container("c" * 64, "busybox")
    with pytest.raises(ValidationError) as info:
        b.build()
    assert info.value.problems == [
        f"{'c' * 64} is 64 characters long, but a container's name is its DNS name on the "
        "app's network, which holds at most 63: shorten it"
    ]


def test_duplicate_names_case_insensitive() -> None:
    b = new_builder()
    b.add_redis("cache")
    b.add_parameter("Cache", "x")
    problem = one_problem(b)
    assert "'Cache'" in problem and "'cache'" in problem
    assert "case-insensitive" in problem
    assert "another name" in problem


def test_every_problem_is_reported_at_once() -> None:
    b = new_builder()
    b.add_redis("1bad")
    b.add_redis("ok").wait_for(b.add_redis("other").with_host_port(7001)).with_host_port(7001)
    problems = problems_of(b)
    assert len(problems) == 2
    assert any("1bad" in p for p in problems)
    assert any("7001" in p for p in problems)


def test_reference_to_another_builders_resource() -> None:
    b1, b2 = new_builder(), new_builder()
    foreign = b2.add_redis("cache")
    b1.add_executable("api", "true", ".").with_reference(foreign)
    problem = one_problem(b1)
    assert problem.startswith("api references 'cache'")
    assert "another builder" in problem
    assert "add it to this builder" in problem


def test_wait_for_another_builders_resource() -> None:
    b1, b2 = new_builder(), new_builder()
    b1.add_executable("api", "true", ".").wait_for(b2.add_redis("cache"))
    problem = one_problem(b1)
    assert "api waits for 'cache'" in problem and "another builder" in problem


@pytest.mark.parametrize("verb", ["wait_for", "wait_for_start", "wait_for_completion"])
def test_self_wait(verb: str) -> None:
    b = new_builder()
    api = b.add_executable("api", "true", ".")
    getattr(api, verb)(api)
    problem = one_problem(b)
    assert problem == f"api waits for itself: remove {verb}(api)"


def test_self_reference() -> None:
    b = new_builder()
    api = b.add_executable("api", "true", ".").with_http_endpoint()
    api.with_reference(api)
    problem = one_problem(b)
    assert "api references itself" in problem and "remove with_reference(api)" in problem


def test_cycle_lists_the_cycle() -> None:
    b = new_builder()
    a = b.add_executable("a", "true", ".").with_http_endpoint()
    c = b.add_executable("c", "true", ".").with_http_endpoint()
    bb = b.add_executable("b", "true", ".").wait_for(c)
    a.wait_for(bb)
    c.with_reference(a)
    b.add_executable("outside", "true", ".").wait_for(a)
    problem = one_problem(b)
    assert "dependency cycle: a -> b -> c -> a" in problem
    assert "remove one of these waits or references" in problem


def test_two_node_cycle() -> None:
    b = new_builder()
    x = b.add_executable("x", "true", ".")
    y = b.add_executable("y", "true", ".").wait_for_start(x)
    x.wait_for_completion(y)
    problem = one_problem(b)
    assert "x -> y -> x" in problem


def test_reference_without_connection_info() -> None:
    b = new_builder()
    worker = b.add_executable("worker", "true", ".")
    b.add_executable("api", "true", ".").with_reference(worker)
    problem = one_problem(b)
    assert "api references worker" in problem
    assert "no connection info" in problem
    assert "worker.with_http_endpoint()" in problem


def test_reference_to_parameter_suggests_with_environment() -> None:
    b = new_builder()
    pw = b.add_parameter("pw", "long-enough-secret", secret=True)
    b.add_executable("api", "true", ".").with_reference(pw)
    problem = one_problem(b)
    assert "api references pw" in problem
    assert "with_environment" in problem
    assert "wait_for(pw)" not in problem  # waiting on a parameter is an error too


def test_executable_with_endpoint_can_be_referenced() -> None:
    b = new_builder()
    web = b.add_executable("web", "true", ".").with_http_endpoint()
    b.add_executable("api", "true", ".").with_reference(web)
    b.build()


def test_completion_wait_on_a_server() -> None:
    b = new_builder()
    cache = b.add_redis("cache")
    b.add_executable("api", "true", ".").wait_for_completion(cache)
    problem = one_problem(b)
    assert "api waits for cache to complete" in problem and "use wait_for(cache)" in problem


def test_fixed_host_port_used_twice() -> None:
    b = new_builder()
    b.add_redis("cache", port=6390)
    b.add_azure_redis("other").run_as_container(lambda r: r.with_host_port(6390))
    b.add_executable("web", "true", ".").with_http_endpoint(port=6391)
    b.add_executable("web2", "true", ".").with_http_endpoint(port=6391)
    problems = problems_of(b)
    assert len(problems) == 2
    assert "host port 6390 is fixed for both cache and other" in problems[0]
    assert "host port 6391 is fixed for both web and web2" in problems[1]
    assert all("another port" in p for p in problems)


def test_missing_connection_string_value(monkeypatch: pytest.MonkeyPatch) -> None:
    b = new_builder()
    db = b.add_connection_string("db")
    b.add_executable("api", "true", ".").with_reference(db)
    problem = one_problem(b)
    assert "connection string db has no value" in problem
    assert "ConnectionStrings:db" in problem and "ConnectionStrings__db" in problem
    # optional references and unreferenced connection strings are fine
    b2 = new_builder()
    b2.add_executable("api", "true", ".").with_reference(
        b2.add_connection_string("db"), optional=True
    )
    b2.add_connection_string("unused")
    b2.build()
    # a value from the environment satisfies it
    monkeypatch.setenv("ConnectionStrings__db", "Host=x")
    b3 = new_builder()
    b3.add_executable("api", "true", ".").with_reference(b3.add_connection_string("db"))
    b3.build()


def test_connection_string_from_appsettings(tmp_path: Path) -> None:
    host = apphost_file(tmp_path / "app")
    write(tmp_path / "app" / "appsettings.json", '{"ConnectionStrings": {"db": "Host=y"}}')
    builder = builder_from(host)
    builder.add_executable("api", "true", ".").with_reference(builder.add_connection_string("db"))
    builder.build()


def test_missing_parameter_value(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> DistributedApplicationBuilder:
        b = new_builder()
        region = b.add_parameter("region")
        b.add_executable("api", "true", ".").with_environment("REGION", region)
        return b

    problem = one_problem(build())
    assert "parameter region has no value" in problem
    assert "Parameters:region" in problem and "Parameters__region" in problem
    monkeypatch.setenv("Parameters__region", "eu")
    build().build()
    # from the command line, too
    b = new_builder(["--Parameters:region=eu"])
    b.add_executable("api", "true", ".").with_environment("REGION", b.add_parameter("region"))
    b.build()


def test_missing_password_parameter_value() -> None:
    b = new_builder()
    b.add_redis("cache", password=b.add_parameter("pw"))
    problem = one_problem(b)
    assert "parameter pw has no value" in problem


def test_secret_parameter_without_value_is_generated_not_an_error() -> None:
    b = new_builder()
    b.add_redis("cache", password=b.add_parameter("pw", secret=True))
    b.build()


def test_validation_starts_nothing() -> None:
    before = set(children_of(os.getpid()))  # e.g. other suites' session-scoped servers
    b = new_builder()
    b.add_redis("cache").with_host_port(7003)
    b.add_redis("cache2").with_host_port(7003)
    with pytest.raises(ValidationError):
        b.build()
    assert set(children_of(os.getpid())) == before


def test_fluent_api_rejects_wrong_arguments() -> None:
    b = new_builder()
    cache = b.add_redis("cache")
    with pytest.raises(TypeError, match=r"cache\.with_password"):
        cache.with_password("plain-text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cache\.with_host_port"):
        cache.with_host_port(70000)
    with pytest.raises(TypeError, match=r"api\.with_reference"):
        b.add_executable("api", "true", ".").with_reference("cache")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="with_lifetime"):
        cache.with_lifetime("forever")  # type: ignore[arg-type]


def test_running_an_invalid_app_host_prints_the_problems_not_a_traceback(tmp_path: Path) -> None:
    script = write(
        tmp_path / "shop" / "apphost.py",
        "from apphost_sdk import DistributedApplication\n"
        "b = DistributedApplication.create_builder()\n"
        'b.add_redis("bad--name")\n'
        'b.add_redis("Cache")\n'
        'b.add_redis("cache")\n'
        "b.build().run()\n",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("apphost: the application model has 2 problems:")
    assert "'bad--name' must not contain '--'" in done.stderr
    assert "'cache' is used twice" in done.stderr


def test_a_cycle_through_endpoint_values_is_reported() -> None:
    b = new_builder()
    a = b.add_container("a", "busybox").with_http_endpoint(80)
    c = b.add_container("c", "busybox").with_http_endpoint(80)
    a.with_environment("C_URL", c.get_endpoint("http"))
    c.with_environment("A_URL", a.get_endpoint("http"))
    with pytest.raises(ValidationError) as info:
        b.build()
    assert any("dependency cycle: a -> c -> a" in p for p in info.value.problems)


def test_an_unsupported_runtime_option_is_one_problem_with_its_value() -> None:
    b = new_builder()
    b.add_container("a", "busybox").with_container_runtime_args("--network", "host", "-m", "64m")
    with pytest.raises(ValidationError) as info:
        b.build()
    assert len(info.value.problems) == 1
    assert "'--network' is not supported" in info.value.problems[0]


def test_a_template_parameter_without_a_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("Parameters__pw", raising=False)
    b = new_builder()
    b.add_parameter("pw")
    db = b.add_container("db", "pg").with_endpoint(5432)
    db.with_connection_string("{host}:{port},pw={param:pw}")
    b.add_container("c", "x").with_reference(db)
    with pytest.raises(ValidationError) as info:
        b.build()
    assert info.value.problems == [
        "parameter pw has no value: pass value=..., set Parameters:pw in appsettings.json or "
        "the environment variable Parameters__pw"
    ]


@pytest.mark.parametrize("template", ["{host!r}:{port}", "{host:>5}", "{port}{0}", "{ho st}"])
def test_template_placeholders_are_exactly_host_port_and_param(template: str) -> None:
    from apphost_sdk.errors import ModelValueError

    b = new_builder()
    with pytest.raises(ModelValueError):
        b.add_container("db", "pg").with_endpoint(5432).with_connection_string(template)


def test_a_side_containers_long_name_says_to_shorten_the_redis_name() -> None:
    b = new_builder()
    b.add_redis("r" * 60).with_redis_insight()
    with pytest.raises(ValidationError) as info:
        b.build()
    assert any(
        "it is named after " + "r" * 60 + ": shorten that name" in p for p in info.value.problems
    ), info.value.problems


def test_nothing_may_wait_for_a_server_to_complete() -> None:
    b = new_builder()
    cache = b.add_redis("cache")
    b.add_executable("w", "true", ".").wait_for_completion(cache)
    with pytest.raises(ValidationError) as info:
        b.build()
    assert "runs until the app stops" in info.value.problems[0]


def test_executables_have_named_endpoints() -> None:
    b = new_builder()
    w = b.add_executable("w", "true", ".").with_http_endpoint(env="PORT")
    w.with_endpoint(env="GRPC_PORT", name="grpc", scheme="http2")
    w.with_endpoint(env="OTHER", name="grpc")  # the same name replaces it
    names = [e.name for e in w.annotations_of(EndpointAnnotation)]
    assert names == ["http", "grpc"]
    b.build()


def test_a_redis_password_too_long_for_auth_is_reported() -> None:
    b = new_builder()
    pw = b.add_parameter("pw", "x" * 16_001, secret=True)
    b.add_redis("cache", password=pw)
    with pytest.raises(ValidationError) as info:
        b.build()
    assert info.value.problems == [
        "parameter pw, the password of cache, is longer than 16000 bytes, which Redis refuses "
        "from a client that has not authenticated yet: choose a shorter one"
    ]
