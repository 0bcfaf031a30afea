"""Family 5: hostile resource names and password values, generated from the run's seed.

Names (unicode, 65+ characters, ``--``, leading digits, spaces, shell metacharacters, path
traversal, NUL, ...) go into a Redis, a Python service or the password parameter. Passwords
(whitespace at the ends, NUL, line breaks, control characters, commas, quotes, ``$(...)``,
connection-string syntax, very long, ...) reach the Redis through ``value=``, the environment
(``Parameters__cache-password``) or ``appsettings.json``.

Each run tries at most two cases of every category (the seed picks them). Each case runs
``apphost start APP --json`` and must either

* fail at build time (nothing started): exit 1, an apphost error naming the resource or
  parameter, no traceback, the secret nowhere in the output or the log, nothing left running;
  or
* start: ready, the resource Running and Healthy, and for a password, AUTH with exactly that
  value works (raw, through the injected connection string and through the injected URI)
  while no password is refused; the secret appears in no output (start, status, stop, log);
  ``apphost stop`` leaves nothing running.

No case may hang, and no shell may run what a value holds (``$(touch pwned)``).
"""

from __future__ import annotations

import json
import os
import re
import string
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .conftest import (
    TAG_VAR,
    FaultLog,
    app_file,
    case_rng,
    endpoint_port,
    log_file,
    no_retry,
    no_traceback,
    redis_password,
    redis_ping,
    run_cli,
    wait_gone,
    write,
    write_services,
)

WORKERS = 3
PARAM = "cache-password"


def _word(rng: Any, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def hostile_names(seed_rng: Any) -> list[tuple[str, str]]:
    """(category, name) pairs; random parts from ``seed_rng``."""
    w = lambda n: _word(seed_rng, n)  # noqa: E731
    return [
        ("unicode", f"c\u00e4{w(3)}"),
        ("unicode", f"\u043a\u044d\u0448{w(2)}"),
        ("unicode", "\uff43\uff41\uff43\uff48\uff45"),
        ("unicode", f"{w(4)}\u200b"),
        ("unicode", f"{w(3)}\U0001f600"),
        ("unicode", f"\u202e{w(5)}"),
        ("unicode", f"{w(2)}e\u0301{w(2)}"),
        ("65+ characters", "c" + w(64)),
        ("65+ characters", "c" + w(seed_rng.randint(65, 400))),
        ("64 characters", "c" + w(63)),
        ("63 characters", "c" + w(62)),
        ("--", f"{w(3)}--{w(3)}"),
        ("--", f"{w(4)}--"),
        ("leading digit", f"{seed_rng.randint(0, 9)}{w(4)}"),
        ("leading digit", str(seed_rng.randint(0, 9))),
        ("spaces", f"{w(3)} {w(3)}"),
        ("spaces", f" {w(5)}"),
        ("spaces", f"{w(5)} "),
        ("spaces", f"\t{w(4)}"),
        ("shell", f"{w(3)};touch pwned"),
        ("shell", "$(touch pwned)"),
        ("shell", f"a`touch pwned`{w(2)}"),
        ("shell", f"{w(2)}|{w(2)}"),
        ("shell", f"{w(2)}&&{w(2)}"),
        ("shell", f"{w(3)}>pwned"),
        ("shell", f"{w(3)}${{IFS}}x"),
        ("shell", f"{w(3)}'\"{w(2)}"),
        ("traversal", f"../{w(4)}"),
        ("traversal", "../../../../etc/passwd"),
        ("traversal", f"{w(3)}/../{w(3)}"),
        ("traversal", ".."),
        ("traversal", f"/tmp/{w(4)}"),
        ("NUL", f"{w(3)}\x00{w(3)}"),
        ("NUL", "\x00"),
        ("other", ""),
        ("other", f"-{w(4)}"),
        ("other", f"{w(4)}-"),
        ("other", f"{w(4)}\n"),
        ("other", f"_{w(4)}"),
        ("other", f"{w(3)}_{w(3)}"),
        ("other", f"{w(3)}.{w(3)}"),
        ("valid", w(1)),
        ("valid", f"{w(4).capitalize()}-{seed_rng.randint(0, 99)}"),
    ]


def hostile_passwords(seed_rng: Any, core: str) -> list[tuple[str, str]]:
    """(category, value) pairs; most hold ``core`` (distinctive, for the leak checks)."""
    c = core
    return [
        ("whitespace at ends", f" {c}"),
        ("whitespace at ends", f"{c} "),
        ("whitespace at ends", f"\t{c}\t"),
        ("whitespace at ends", f"\u00a0{c}\u00a0"),
        ("NUL", f"{c[:5]}\x00{c[5:]}"),
        ("NUL", f"{c}\x00"),
        ("line break", f"{c}\n"),
        ("line break", f"{c[:4]}\n{c[4:]}"),
        ("line break", f"\r\n{c}"),
        ("line break", f"{c}\u2028x"),
        ("line break", f"{c}\x85x"),
        ("control characters", f"{c[:3]}\x1b[31m{c[3:]}"),
        ("control characters", f"{c}\x07"),
        ("control characters", f"\x7f{c}"),
        ("control characters", f"{c}\x0b\x0c"),
        ("comma", f"{c[:6]},{c[6:]}"),
        ("comma", f"{c},abortConnect=false"),
        ("quotes", f'{c}"'),
        ("quotes", f"'{c}'"),
        ("quotes", f'"{c}"'),
        ("quotes", f"{c}\\"),
        ("quotes", f'{c}\\"x'),
        ("shell", f"$(touch pwned){c}"),
        ("shell", f"`touch pwned`{c}"),
        ("shell", f"${{HOME}}{c}"),
        ("shell", f"{c}; touch pwned"),
        ("connection-string syntax", f"{c};password=x"),
        ("connection-string syntax", f"password={c}"),
        ("connection-string syntax", f"{c}=="),
        ("connection-string syntax", f"{c}@127.0.0.1:1"),
        ("connection-string syntax", f"{c}%41%2C"),
        ("connection-string syntax", f"{c}/?#x"),
        ("unicode", f"p\u00e4ss{c}"),
        ("unicode", f"{c}\U0001f511"),
        ("very long", c * seed_rng.randint(300, 500)),
        ("very long", c + "x" * 100_000),
        ("short", _word(seed_rng, 3)),
        ("whitespace only", " " * seed_rng.randint(4, 8)),
    ]


def pick(rng: Any, cases: list[tuple[str, str]], per_category: int) -> list[tuple[str, str]]:
    """At most ``per_category`` cases of each category, chosen by ``rng`` (every category is
    tried in every run; the seed decides which of its cases)."""
    chosen = []
    for category in dict.fromkeys(c for c, _ in cases):
        members = [case for case in cases if case[0] == category]
        chosen += rng.sample(members, min(per_category, len(members)))
    return chosen


# --------------------------------------------------------------------------- one case


def _env(case_dir: Path, tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env["APPHOST_STATE_DIR"] = str(case_dir / "state")
    env[TAG_VAR] = tag
    return env


def _names_it(name: str, text: str) -> bool:
    if not name:
        return "empty" in text or "''" in text
    forms = {name, repr(name), repr(name)[1:-1], ascii(name)[1:-1], name.strip()}
    return any(f and f in text for f in forms)


def _leaks(secret_core: str | None, texts: dict[str, str]) -> list[str]:
    if not secret_core:
        return []
    return [f"the secret appears in {where}" for where, t in texts.items() if secret_core in t]


def _shell_ran(case_dir: Path) -> list[str]:
    hits = [str(p.relative_to(case_dir)) for p in case_dir.rglob("pwned*")]
    return [f"a shell ran what a value holds (created {hits})"] if hits else []


def _password_checks(resource: dict[str, Any], value: str) -> list[str]:
    """AUTH with exactly ``value``: raw, through the injected connection string and URI."""
    import redis

    from apphost_sdk.connection_strings import RedisConnectionOptions
    from apphost_sdk.model.names import env_prefix

    problems = []
    port = endpoint_port(resource)
    why = redis_ping(port, value)
    if why:
        problems.append(f"AUTH with the password fails ({why})")
    if redis_ping(port, None) is None:
        problems.append("Redis answers without a password")
    injected = redis_password(resource)
    if injected != value:
        problems.append("the injected *_PASSWORD is not the password given")
    env = resource.get("environment") or {}
    cs = env.get(f"ConnectionStrings__{resource['name']}")
    options = None
    try:
        options = RedisConnectionOptions.parse(str(cs))
        kwargs = options.to_redis_kwargs()
        kwargs["host"] = "127.0.0.1"
        kwargs["retry"] = no_retry()
        client = redis.Redis(**kwargs)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        differs = ""
        if options is not None and options.password != value:
            differs = ", as it parses to another password"
        problems.append(
            f"AUTH through the injected ConnectionStrings__{resource['name']} fails "
            f"({type(exc).__name__}{differs})"
        )
    uri = str(env.get(f"{env_prefix(resource['name'])}_URI"))
    try:
        parts = urlsplit(uri)  # as injected, but always to 127.0.0.1
        userinfo, at, hostport = parts.netloc.rpartition("@")
        netloc = f"{userinfo}{at}127.0.0.1:{hostport.rpartition(':')[2]}"
        client = redis.Redis.from_url(
            urlunsplit(parts._replace(netloc=netloc)), socket_timeout=3, retry=no_retry()
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        problems.append(
            f"AUTH through the injected {env_prefix(resource['name'])}_URI fails "
            f"({type(exc).__name__})"
        )
    return problems


def _run_case(
    case_dir: Path,
    tag: str,
    body: str,
    values: dict[str, Any],
    *,
    subject: str,
    resource: str | None,
    secret: str | None,
    secret_core: str | None,
    extra_env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[list[str], str]:
    """Start the app and judge the outcome; returns (problems, a note of what happened)."""
    svc = write_services(case_dir / "svc")
    app = app_file(case_dir / "app", body, svc=str(svc), marks=str(svc / "marks"), **values)
    if settings is not None:
        write(case_dir / "app" / "appsettings.json", json.dumps(settings))
    env = _env(case_dir, tag)
    env.update(extra_env or {})
    state = case_dir / "state"
    started = run_cli("start", app, "--json", "--timeout", "10", timeout=30, env=env, cwd=case_dir)
    problems: list[str] = []
    note = f"exit {started.code} after {started.seconds:.1f} s"
    texts = {"start's stdout": started.stdout, "start's stderr": started.stderr}
    if started.code is None:
        problems.append("apphost start hung (killed after 30 s)")
    elif started.code != 0:
        note += (
            f"; rejected: {started.stderr.strip().splitlines()[0][:200] if started.stderr else ''}"
        )
        if started.code != 1:
            problems.append(f"exit code {started.code}, not 1")
        problems += no_traceback(started.stdout, started.stderr)
        if "not ready after" in started.stderr:
            problems.append(
                "not rejected by build(): the app started and never became healthy "
                "(apphost start timed out)"
            )
        else:
            if not _names_it(subject, started.stderr):
                problems.append(f"the error does not name {subject!r}")
            try:
                log = log_file(state, app).read_text(errors="replace")
            except OSError:
                log = ""
            if re.search(r"^\S+\s+\| ", log, re.MULTILINE):  # "cache    | ..." lines
                problems.append("rejected only after resources started, not by build()")
    else:
        note += "; accepted"
        try:
            data = json.loads(started.stdout)
        except ValueError:
            data = {}
            problems.append("apphost start exited 0 without JSON")
        byname = {r.get("name"): r for r in data.get("resources", [])}
        if data.get("phase") != "ready":
            problems.append(f"phase {data.get('phase')!r}, not ready")
        if resource is not None:
            r = byname.get(resource)
            if r is None:
                problems.append(f"no resource named {resource!r} in the JSON")
            elif (r.get("state"), r.get("health")) != ("Running", "Healthy"):
                problems.append(f"{resource!r} is {r.get('state')}/{r.get('health')}")
        shown = run_cli("status", app, "--json", "--show-secrets", timeout=30, env=env)
        try:
            listed = json.loads(shown.stdout)
            cache = next(r for r in listed[0]["resources"] if r.get("kind") == "redis")
        except (ValueError, IndexError, KeyError, StopIteration):
            cache = None
            problems.append(f"apphost status --show-secrets shows no Redis: {shown.brief()}")
        if cache is not None:
            if secret is not None:
                problems += _password_checks(cache, secret)
            else:
                why = redis_ping(endpoint_port(cache), redis_password(cache))
                if why:
                    problems.append(f"Redis does not answer with its injected password ({why})")
        stopped = run_cli("stop", app, "--timeout", "20", timeout=40, env=env)
        note += f"; status {shown.seconds:.1f} s, stop {stopped.seconds:.1f} s"
        texts["stop's output"] = stopped.stdout + stopped.stderr
        if stopped.code != 0:
            problems.append(f"apphost stop: {stopped.brief()}")
    try:
        texts["the app host's log"] = log_file(state, app).read_text(errors="replace")
    except OSError:
        pass
    problems += _leaks(secret_core, texts)
    problems += _shell_ran(case_dir)
    t0 = time.monotonic()
    left = wait_gone(tag, case_dir, timeout=5, exact=True)
    note += f"; gone after {time.monotonic() - t0:.1f} s"
    if left:
        problems.append(f"left running: {sorted(left.values())}")
    return problems, note


# --------------------------------------------------------------------------- the tests

NAME_SLOTS = {
    "redis": ("cache = builder.add_redis({name})\n"),
    "service": (
        'cache = builder.add_redis("cache")\n'
        'builder.add_python_app({name}, {svc}, "idle.py", {marks})'
        ".with_reference(cache).wait_for(cache)\n"
    ),
    "parameter": (
        "pw = builder.add_parameter({name}, {pw}, secret=True)\n"
        'cache = builder.add_redis("cache", password=pw)\n'
    ),
}


def test_hostile_resource_names(tmp_path: Path, fault_env: str, faults: FaultLog) -> None:
    rng = case_rng("hostile names", "generate")
    cases = pick(rng, hostile_names(rng), 2)
    slots = [rng.choice(list(NAME_SLOTS)) for _ in cases]
    cores = ["Nm" + "".join(rng.choice(string.ascii_letters) for _ in range(12)) for _ in cases]

    def one(i: int) -> tuple[list[str], str]:
        _, name = cases[i]
        slot = slots[i]
        core = cores[i]
        secret = f"{core}-{i}"
        values: dict[str, Any] = {"name": name, "pw": secret}
        return _run_case(
            tmp_path / f"n{i:02d}",
            f"{fault_env}.{i}",
            NAME_SLOTS[slot],
            values,
            subject=name,
            resource=None if slot == "parameter" else name,
            secret=secret if slot == "parameter" else None,
            secret_core=core,
        )

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, range(len(cases))))
    failures = []
    for i, ((category, name), (problems, note)) in enumerate(zip(cases, results, strict=True)):
        label = f"{category} {name!r} as {slots[i]} name"
        faults.record("hostile names", label, problems, notes=note)
        if problems:
            failures.append(f"{label}: {'; '.join(problems)} [{note}]")
    assert not failures, f"{len(failures)} of {len(cases)} names:\n" + "\n".join(failures)


PASSWORD_BODY = (
    "pw = builder.add_parameter({param}, {value}, secret=True)\n"
    "cache = builder.add_redis({cache}, password=pw)\n"
)


def test_hostile_passwords(tmp_path: Path, fault_env: str, faults: FaultLog) -> None:
    rng = case_rng("hostile passwords", "generate")
    core = "Pw" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(12))
    cases = pick(rng, hostile_passwords(rng, core), 2)
    routes = []
    for _, value in cases:
        choices = ["value=", "appsettings.json"] + ([] if "\x00" in value else ["environment"])
        routes.append(rng.choice(choices))

    def one(i: int) -> tuple[list[str], str]:
        _, value = cases[i]
        route = routes[i]
        extra_env: dict[str, str] = {}
        settings = None
        if route == "environment":
            extra_env[f"Parameters__{PARAM}"] = value
        elif route == "appsettings.json":
            settings = {"Parameters": {PARAM: value}}
        return _run_case(
            tmp_path / f"p{i:02d}",
            f"{fault_env}.{i}",
            PASSWORD_BODY,
            {"param": PARAM, "cache": "cache", "value": value if route == "value=" else None},
            subject=PARAM,
            resource="cache",
            secret=value,
            secret_core=core if core in value else None,
            extra_env=extra_env,
            settings=settings,
        )

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, range(len(cases))))
    failures = []
    for i, ((category, value), (problems, note)) in enumerate(zip(cases, results, strict=True)):
        shown = value if len(value) <= 40 else f"{value[:30]}... ({len(value)} chars)"
        label = f"{category} {shown!r} via {routes[i]}"
        faults.record("hostile passwords", label, problems, notes=note)
        if problems:
            failures.append(f"{label}: {'; '.join(problems)} [{note}]")
    assert not failures, f"{len(failures)} of {len(cases)} passwords:\n" + "\n".join(failures)
