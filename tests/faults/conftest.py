"""Fault injection against the real ``apphost`` CLI, real ``redis-server`` processes and real
child services (small Python scripts written into the test's folder).

Every test runs with the process runtime, its own ``APPHOST_STATE_DIR`` and a tag
(``APPHOST_FAULTS_TAG``) in the environment that every process it starts inherits. A process
belongs to a test when it carries the tag or runs in the test's folder (``redis-server``
overwrites its own environment block with its process title, but its working folder is its
data folder under the state directory). After each test whatever is left of it is killed.

Random choices come from one seed, printed with the summary: ``FAULTS_SEED=N`` replays a run.
Every case is recorded; ``pytest_terminal_summary`` prints one line per family
(``faults: concurrent starts: 30 tried, 30 survived``) and each case that did not survive
(``FAULTS_VERBOSE=1``: every case, with what was measured).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest puts tests/ on sys.path (the first folder up with no __init__.py): the core tests'
# helpers import as ``core.helpers``.
from core.helpers import HTTP_SERVER, write

TAG_VAR = "APPHOST_FAULTS_TAG"
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1, 10**6))
#: The order of the summary lines.
FAMILIES = (
    "concurrent starts",
    "kill during start and stop",
    "full pipes",
    "huge lines",
    "hostile names",
    "hostile passwords",
)


def case_rng(family: str, index: int | str) -> random.Random:
    """A random generator for one case, derived from the run's seed."""
    return random.Random(f"{SEED}:{family}:{index}")


# --------------------------------------------------------------------------- the collector


class Case:
    """One fault tried: survived or not, with what was seen."""

    def __init__(self, family: str, name: str) -> None:
        self.family = family
        self.name = name
        self.survived: bool | None = None
        self.detail = ""
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        """Something worth reading in the summary when the case fails (timing, phase, ...)."""
        self.notes.append(text)


class FaultLog:
    """Every case of the session, for the summary."""

    def __init__(self) -> None:
        self.cases: list[Case] = []

    @contextlib.contextmanager
    def case(self, family: str, name: str) -> Iterator[Case]:
        """Record one case: survived unless the block raises."""
        entry = self.add(family, name)
        try:
            yield entry
        except BaseException as exc:
            entry.survived = False
            entry.detail = entry.detail or _first_line(exc)
            raise
        entry.survived = True

    def add(self, family: str, name: str) -> Case:
        entry = Case(family, name)
        self.cases.append(entry)
        return entry

    def record(self, family: str, name: str, problems: list[str], notes: str = "") -> Case:
        """Record a case judged by a list of problems (none: survived)."""
        entry = self.add(family, name)
        entry.survived = not problems
        entry.detail = "; ".join(problems)
        if notes:
            entry.note(notes)
        return entry

    def summary_lines(self) -> list[str]:
        lines = [f"faults: seed {SEED} (run with FAULTS_SEED={SEED} to replay these cases)"]
        families = [f for f in FAMILIES if any(c.family == f for c in self.cases)]
        families += sorted({c.family for c in self.cases} - set(families))
        for family in families:
            cases = [c for c in self.cases if c.family == family]
            survived = sum(1 for c in cases if c.survived)
            lines.append(f"faults: {family}: {len(cases)} tried, {survived} survived")
        verbose = bool(os.environ.get("FAULTS_VERBOSE"))
        for c in self.cases:
            if verbose and c.survived:
                lines.append(f"  survived: {c.family} / {c.name} [{_cut('; '.join(c.notes))}]")
            if c.survived is False:
                notes = f" [{'; '.join(c.notes)}]" if c.notes else ""
                lines.append(f"  not survived: {c.family} / {c.name}: {_cut(c.detail + notes)}")
        return lines


def _cut(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) <= 400 else first[:400] + "..."


_LOG = FaultLog()


@pytest.fixture(scope="session")
def faults() -> FaultLog:
    """The session's record of fault cases (printed by ``pytest_terminal_summary``)."""
    return _LOG


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _LOG.cases:
        return
    terminalreporter.section("fault injection (tests/faults)")
    for line in _LOG.summary_lines():
        terminalreporter.write_line(line)


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def fault_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The process runtime, a state directory of the test's own and the test's tag."""
    tag = uuid.uuid4().hex[:12]
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "process")
    monkeypatch.setenv("APPHOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv(TAG_VAR, tag)
    for key in list(os.environ):
        low = key.lower()
        if (
            low.startswith(("connectionstrings__", "parameters__", "azure__"))
            or low in ("apphost_environment", "apphost_redis_server", "apphost_detached")
            or low.startswith("aspire__")
        ):
            monkeypatch.delenv(key)
    return tag


@pytest.fixture(autouse=True)
def nothing_left_behind(fault_env: str, tmp_path: Path) -> Iterator[None]:
    """Whatever the test leaves running (its tests assert that nothing is) is killed, so that
    one broken case cannot disturb the next."""
    me = os.getpid()
    before = set(children_of(me))
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in children_of(me) if p not in before and pid_alive(p)]
        alive += list(owned_processes(fault_env, tmp_path))
        if not alive:
            break
        for pid in set(alive):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    else:  # pragma: no cover - a process that survives SIGKILL
        raise AssertionError(f"processes of the test survive SIGKILL: {alive}")


# --------------------------------------------------------------------------- /proc


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace")
    return " ".join(text.split())[:100]


def owned_processes(tag: str, root: Path, *, exact: bool = False) -> dict[int, str]:
    """Live processes of a test (or, with ``exact``, of one case): the tag ``tag`` (or
    ``tag.N``) in their environment, or a working folder under ``root``."""
    want = f"{TAG_VAR}={tag}".encode()
    prefix = str(root.resolve())
    me = os.getpid()
    out: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        mine = False
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            for var in env.split(b"\0"):
                if var == want or (not exact and var.startswith(want + b".")):
                    mine = True
                    break
        except OSError:
            pass
        if not mine:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = ""
            mine = cwd == prefix or cwd.startswith(prefix + "/")
        if mine and pid_alive(pid):
            out[pid] = cmdline(pid)
    return out


def wait_gone(tag: str, root: Path, timeout: float = 5.0, *, exact: bool = False) -> dict[int, str]:
    """Wait until no process of the test (case) runs; return what is still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = owned_processes(tag, root, exact=exact)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def vm_kib(pid: int, field: str) -> int | None:
    """``VmRSS``/``VmHWM`` (KiB) of ``pid``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------- the CLI


def cli_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "apphost_sdk", *(str(a) for a in args)]


class Result:
    """What a CLI call did: exit code (None: it hung and was killed), output, time taken."""

    def __init__(self, code: int | None, stdout: str, stderr: str, seconds: float) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    def brief(self) -> str:
        err = self.stderr.strip().replace("\n", " | ")
        return f"exit {self.code} after {self.seconds:.1f} s; stderr: {err[:300]!r}"


def run_cli(
    *args: str | Path,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Result:
    """Run ``apphost ARGS`` to the end (killed after ``timeout``)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        cli_argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return Result(
        code,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - started,
    )


def status_of(app: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``apphost status APP --json --show-secrets``."""
    res = run_cli("status", app, "--json", "--show-secrets", timeout=30, env=env)
    assert res.code == 0, f"apphost status: {res.brief()}"
    data = json.loads(res.stdout)
    assert isinstance(data, list)
    return data


def endpoint_port(resource: dict[str, Any]) -> int:
    return int(str(resource["endpoint"]).rsplit(":", 1)[1])


def redis_password(resource: dict[str, Any]) -> str | None:
    """The password a reference to this Redis injects (status with ``--show-secrets``)."""
    from apphost_sdk.model.names import env_prefix

    env = resource.get("environment") or {}
    value = env.get(f"{env_prefix(resource['name'])}_PASSWORD")
    return value if isinstance(value, str) else None


def no_retry() -> Any:
    """redis-py retries a refused AUTH for seconds by default: one attempt is the answer."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def redis_ping(port: int, password: str | None) -> str | None:
    """PING the Redis on 127.0.0.1:port with AUTH; None when it answers, else why not."""
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=3,
        socket_connect_timeout=3,
        retry=no_retry(),
    )
    try:
        return None if client.ping() is True else "PING did not answer PONG"
    except Exception as exc:  # whatever redis-py raises is the finding
        return f"{type(exc).__name__}: {_first_line(exc)}"
    finally:
        client.close()


def no_traceback(*texts: str) -> list[str]:
    """Problems: a Python traceback, or a non-SDK exception shown by the CLI."""
    problems = []
    joined = "\n".join(texts)
    if "Traceback (most recent call last)" in joined:
        problems.append("printed a Python traceback")
    if "the app host file raised an error" in joined:
        problems.append("an exception that is not an apphost error escaped (not a clear message)")
    return problems


# --------------------------------------------------------------------------- services

#: Writes ``{marks}/{name}.json`` (its pid and its child's), keeps a grandchild (``sleep``-like
#: Python) alive and sleeps; on SIGTERM it takes ``argv[2]`` seconds before exiting.
IDLE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    marks, slow = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    name = os.environ.get("OTEL_SERVICE_NAME", "idle")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    def on_term(signum, frame):
        time.sleep(slow)
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    path = os.path.join(marks, name + ".json")
    with open(path + ".tmp", "w") as fh:
        json.dump({"pid": os.getpid(), "child": child.pid}, fh)
    os.replace(path + ".tmp", path)
    print("idle", name, "up", flush=True)
    while True:
        time.sleep(1)
    """
)

#: An HTTP service on 127.0.0.1:$PORT that listens after ``argv[1]`` seconds.
WEB = HTTP_SERVER + textwrap.dedent(
    """
    import sys, time
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
    server = http_server(b"ok")
    print("listening", flush=True)
    server.serve_forever()
    """
)

#: Prints without end: ~100-byte lines to stdout and stderr, a few thousand a second.
CHATTER = textwrap.dedent(
    """
    import sys, time
    n = 0
    while True:
        for _ in range(20):
            n += 1
            out = sys.stdout if n % 2 else sys.stderr
            out.write("chatter %09d %s\\n" % (n, "x" * 80))
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(0.002)
    """
)

#: ``blob MB``: MB mebibytes without a newline (``blob MB end``: then, after 0.3 s, a newline);
#: ``lines COUNT SIZE``: COUNT lines of SIZE bytes. Then writes ``{marks}/{name}.done`` and
#: sleeps.
FLOOD = textwrap.dedent(
    """
    import os, sys, time
    marks, mode = sys.argv[1], sys.argv[2]
    name = os.environ.get("OTEL_SERVICE_NAME", "flood")
    out = sys.stdout.buffer
    if mode == "blob":
        chunk = b"z" * (1 << 20)
        for _ in range(int(sys.argv[3])):
            out.write(chunk)
        if sys.argv[4:] == ["end"]:
            out.flush()
            time.sleep(0.3)
            out.write(b"\\n")
    else:
        count, size = int(sys.argv[3]), int(sys.argv[4])
        for i in range(count):
            out.write(("%08d " % i).encode() + b"y" * (size - 10) + b"\\n")
    out.flush()
    with open(os.path.join(marks, name + ".done"), "w") as fh:
        fh.write(str(time.time()))
    while True:
        time.sleep(1)
    """
)


def write_services(folder: Path) -> Path:
    """Write every service script into ``folder`` and return it."""
    write(folder / "idle.py", IDLE)
    write(folder / "web.py", WEB)
    write(folder / "chatter.py", CHATTER)
    write(folder / "flood.py", FLOOD)
    (folder / "marks").mkdir(exist_ok=True)
    return folder


def app_file(folder: Path, body: str, **values: Any) -> Path:
    """``folder/apphost.py``: a builder, ``body`` (with ``values`` substituted, as ``repr``)
    and ``builder.build().run()``."""
    text = textwrap.dedent(body).format(**{k: repr(v) for k, v in values.items()})
    source = (
        "from apphost_sdk import DistributedApplication\n\n"
        "builder = DistributedApplication.create_builder()\n"
        f"{text}\n"
        "builder.build().run()\n"
    )
    return write(folder / "apphost.py", source)


def log_file(state: Path, app: Path) -> Path:
    """The background app host's log (``apphost start``)."""
    from apphost_sdk.state import app_identity

    return state / app_identity(app)[1] / "apphost.log"


def status_file(state: Path, app: Path) -> Path:
    from apphost_sdk.state import app_identity

    return state / app_identity(app)[1] / "status.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def signal_name(sig: int) -> str:
    return signal.Signals(sig).name
