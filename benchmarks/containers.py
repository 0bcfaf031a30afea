"""Container start-up benchmark (issues 3 and 8), on local test images (no registry needed).

Generic containers (issue 8), through the app host's public API, image ``apphost-test/kv:1``
(memcached; "healthy" means it answers ``version`` through the published port):

1. one container: ``builder.add_container("kv", ...).with_endpoint(11211)``, ``build()``,
   ``start()``, then the ``version`` probe loop, against ``docker run -d -p 127.0.0.1::11211``
   plus the same probe loop (target ratio <= 1.10). For context, not a target: ``docker network
   create`` + ``docker run --network`` (what the app host does for containers that talk to
   each other);
2. five independent containers against one, compared with the engine's own floor: five bare
   ``create`` + ``start`` API calls in parallel against one (target: our five/one ratio at most
   1.15 x the floor's five/one ratio).

Redis (issue 3), through ``DockerRuntime`` with the spec the orchestrator builds for
``add_redis`` (``/bin/sh -c`` script, port 6379), image ``apphost-test/redis:7``:

3. one Redis, ``start`` + PING loop, against testcontainers-python's ``RedisContainer.start()``
   plus PING (target ratio <= 1.00), and five in parallel threads against one (target <= 1.50).

Every arm runs once per round, in a rotating order (interleaved, so drift in the engine's speed
hits all arms alike); each figure is the median over the rounds. Stopping and removing happen
outside the timed part, followed by ``SETTLE`` seconds of quiet. Probes poll every ``POLL``
seconds on both sides. The whole run is
bounded by ``--budget`` seconds. Exit code 1 when a target is missed. Usage::

    .venv/bin/python benchmarks/containers.py [--rounds 7] [--budget 600] [--no-redis]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apphost_sdk import DistributedApplication  # noqa: E402
from apphost_sdk.integrations.redis import REDIS_PORT, redis_ping  # noqa: E402
from apphost_sdk.runtimes.base import ContainerSpec, PortSpec  # noqa: E402
from apphost_sdk.runtimes.cleanup import remove_app_objects  # noqa: E402
from apphost_sdk.runtimes.docker_runtime import DockerHandle, DockerRuntime  # noqa: E402
from apphost_sdk.runtimes.engines import Engine, find_engine  # noqa: E402

T = TypeVar("T")

REDIS_IMAGE, REDIS_TAG = "apphost-test/redis", "7"
KV_IMAGE, KV_TAG, KV_PORT = "apphost-test/kv", "1", 11211
#: No password on either side: testcontainers' RedisContainer passes its password as a literal
#: argument through the image's entrypoint, which the stand-in image does not support.
PASSWORD: str | None = None
POLL = 0.01
HEALTH_TIMEOUT = 30.0
#: Seconds of quiet before each timed arm, so the engine has finished what the previous arm's
#: clean-up left it (removing containers and networks) and no arm pays for another.
SETTLE = 0.5


def _engine() -> Engine:
    """An engine with the test images, started/built by the support scripts when needed."""
    if find_engine().engine is None:
        subprocess.run(["sh", str(ROOT / "tests/support/start_dockerd.sh")], check=True)
    for script in ("build_redis_image.sh", "build_kv_image.sh"):
        subprocess.run(["sh", str(ROOT / "tests/support" / script)], check=True)
    engine = find_engine().engine
    if engine is None:
        raise SystemExit("no container engine answers; start dockerd first")
    return engine


# --------------------------------------------------------------------------- probes


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {HEALTH_TIMEOUT} s")
        time.sleep(POLL)


def _memcached_answers(port: int) -> bool:
    """True when memcached answers ``version`` (a published port alone accepts connections
    before the server listens: the engine's proxy holds it)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"version\r\n")
            return sock.recv(64).startswith(b"VERSION ")
    except OSError:
        return False


def _wait_memcached(port: int) -> None:
    _wait(lambda: _memcached_answers(port), f"memcached on port {port}")


def _wait_ping(port: int, password: str | None) -> None:
    _wait(lambda: redis_ping("127.0.0.1", port, password, timeout=0.5), f"Redis on port {port}")


def _each_at_once(function: Callable[[T], object], items: Sequence[T]) -> None:
    """Call ``function`` on every item: in this thread when there is one, else in parallel
    threads (one an item), so that one-item arms pay for no thread pool."""
    if len(items) == 1:
        function(items[0])
    else:
        with ThreadPoolExecutor(len(items)) as pool:
            list(pool.map(function, items))


# --------------------------------------------------------------------------- generic containers


def apphost_generic_round(count: int) -> float:
    """Seconds from building the app (``count`` kv containers) to every one answering."""
    started = time.perf_counter()
    builder = DistributedApplication.create_builder([])
    for i in range(count):
        builder.add_container(f"kv{i}", KV_IMAGE, KV_TAG).with_endpoint(KV_PORT)
    app = builder.build()
    try:
        app.start(quiet=True)
        ports = [int(str(s.endpoint).rsplit(":", 1)[1]) for s in app.snapshots()]
        assert len(ports) == count, ports
        _each_at_once(_wait_memcached, ports)
        return time.perf_counter() - started
    finally:
        app.stop()


def docker_run_round(api: Any, network: bool = False) -> float:
    """Seconds for ``docker run -d -p 127.0.0.1::11211`` (after ``docker network create`` when
    ``network``), the port lookup and the probe loop."""
    name = "bench-net-" + uuid.uuid4().hex[:8]
    started = time.perf_counter()
    if network:
        subprocess.run(["docker", "network", "create", name], check=True, capture_output=True)
    run = ["docker", "run", "-d", "-p", f"127.0.0.1::{KV_PORT}"]
    if network:
        run += ["--network", name, "--network-alias", "kv"]
    container_id = subprocess.run(
        [*run, f"{KV_IMAGE}:{KV_TAG}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        ports = api.inspect_container(container_id)["NetworkSettings"]["Ports"]
        _wait_memcached(int(ports[f"{KV_PORT}/tcp"][0]["HostPort"]))
        return time.perf_counter() - started
    finally:
        api.remove_container(container_id, force=True)
        if network:
            api.remove_network(name)


def engine_floor_round(api: Any, count: int, image: str, port: int) -> float:
    """Seconds for ``count`` bare create+start calls in parallel (no SDK, no health check)."""
    ids: list[str] = []

    def one(_: int) -> None:
        host_config = api.create_host_config(port_bindings={port: ("127.0.0.1", None)})
        created = api.create_container(image, ports=[port], host_config=host_config)
        ids.append(created["Id"])
        api.start(created["Id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    for container_id in ids:
        api.remove_container(container_id, force=True)
    return elapsed


# --------------------------------------------------------------------------- Redis


def _redis_args() -> tuple[str, ...]:
    """The ``/bin/sh`` arguments the Redis integration gives its container (no password)."""
    builder = DistributedApplication.create_builder([])
    redis = builder.add_redis("cache").with_password(None)
    return tuple(redis._container_args())


def _redis_spec(app_id: str, session: str, name: str, args: tuple[str, ...]) -> ContainerSpec:
    """What the orchestrator hands the runtime for ``add_redis(name)``."""
    return ContainerSpec(
        app_id=app_id,
        app_name="bench",
        session_id=session,
        resource_name=name,
        image=REDIS_IMAGE,
        tag=REDIS_TAG,
        state_dir=Path(tempfile.gettempdir()),
        ports=(PortSpec("tcp", REDIS_PORT),),
        entrypoint=("/bin/sh",),
        args=args,
        network=False,  # a lone Redis: no other container talks to it
        hash_key="bench",
    )


def redis_runtime_round(count: int, args: tuple[str, ...]) -> float:
    """Seconds from starting ``count`` Redis resources (in parallel threads) to all of them
    answering PING, through ``DockerRuntime``."""
    app_id = "bench-" + uuid.uuid4().hex[:8]
    session = uuid.uuid4().hex
    engine = find_engine().engine
    assert engine is not None
    runtime = DockerRuntime(engine, lambda line: None)
    specs = [_redis_spec(app_id, session, f"cache{i}", args) for i in range(count)]
    runtime.prepare([s.image_ref for s in specs], lambda line: None)
    handles: list[DockerHandle] = []

    def one(spec: ContainerSpec) -> None:
        handle = runtime.start(spec, lambda stream, line: None)
        handles.append(handle)
        _wait_ping(handle.host_port, PASSWORD)

    try:
        started = time.perf_counter()
        _each_at_once(one, specs)
        return time.perf_counter() - started
    finally:
        for h in handles:
            h.stop(grace_seconds=0)
        runtime.close()
        remove_app_objects(engine.client.api, app_id, True)


def testcontainers_round() -> float:
    """Seconds for testcontainers-python's ``RedisContainer.start()`` plus PING."""
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"  # the Ryuk image is not available
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            from testcontainers.redis import RedisContainer
    container = RedisContainer(f"{REDIS_IMAGE}:{REDIS_TAG}")
    started = time.perf_counter()
    container.start()
    try:
        port = int(container.get_exposed_port(REDIS_PORT))
        _wait_ping(port, PASSWORD)
        return time.perf_counter() - started
    finally:
        container.stop()


# --------------------------------------------------------------------------- driver


def run_interleaved(
    arms: dict[str, Callable[[], float]], rounds: int, deadline: float
) -> dict[str, list[float]]:
    """Run every arm once per round, rotating the order; stop early when the budget is spent
    (after at least one full round)."""
    samples: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        if r and time.monotonic() > deadline:
            print(f"budget spent after {r} round(s)")
            break
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(SETTLE)
            samples[name].append(arms[name]())
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print figures and ratios; 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", "--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds, whole run")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis measurements")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    # The app host keeps per-app state; keep this run's out of the user's ~/.apphost.
    os.environ["APPHOST_STATE_DIR"] = tempfile.mkdtemp(prefix="apphost-bench-")
    os.environ["APPHOST_CONTAINER_RUNTIME"] = "docker"
    engine = _engine()
    api = engine.client.api
    print(f"engine: {engine.describe()}")
    kv = f"{KV_IMAGE}:{KV_TAG}"
    redis_args = _redis_args()

    arms: dict[str, Callable[[], float]] = {
        "apphost_1": lambda: apphost_generic_round(1),
        "apphost_5": lambda: apphost_generic_round(5),
        "docker_run": lambda: docker_run_round(api),
        "docker_run_net": lambda: docker_run_round(api, network=True),
        "floor_1": lambda: engine_floor_round(api, 1, kv, KV_PORT),
        "floor_5": lambda: engine_floor_round(api, 5, kv, KV_PORT),
    }
    if not args.no_redis:
        arms |= {
            "redis_1": lambda: redis_runtime_round(1, redis_args),
            "redis_5": lambda: redis_runtime_round(5, redis_args),
            "testcontainers": testcontainers_round,
        }
    # Warm-up: the first containers after an engine start pay one-off costs.
    for arm in arms.values():
        arm()
    samples = run_interleaved(arms, max(1, args.rounds), deadline)
    m = {name: statistics.median(values) for name, values in samples.items()}
    spread = {name: (min(v), max(v)) for name, v in samples.items()}
    print(f"rounds: {len(samples['apphost_1'])} (medians; min-max in brackets), poll {POLL} s")

    def line(label: str, name: str) -> None:
        low, high = spread[name]
        print(f"  {label:58s} {m[name]:.3f} s  [{low:.3f}-{high:.3f}]")

    missed: list[str] = []

    def target(label: str, value: float, limit: float) -> None:
        ok = value <= limit
        print(f"  {label}: {value:.2f} (target <= {limit:.2f}) {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(label)

    print("one generic container (kv), start to answering:")
    line("apphost public API: build() + start() + probe", "apphost_1")
    line("docker run -d -p 127.0.0.1::11211 + probe", "docker_run")
    line("context: docker network create + docker run --network + probe", "docker_run_net")
    target("ratio apphost / docker run", m["apphost_1"] / m["docker_run"], 1.10)
    print(f"  context: ratio apphost / (network + run) {m['apphost_1'] / m['docker_run_net']:.2f}")

    print("five independent generic containers against one:")
    line("apphost, five", "apphost_5")
    line("engine floor, bare create+start, one", "floor_1")
    line("engine floor, bare create+start, five in parallel", "floor_5")
    ours = m["apphost_5"] / m["apphost_1"]
    floor = m["floor_5"] / m["floor_1"]
    print(f"  ratio five / one: apphost {ours:.2f}, engine floor {floor:.2f}")
    print(f"  apphost's ratio is within {ours / floor:.2f} x of the floor's")
    target("apphost ratio / floor ratio", ours / floor, 1.15)

    if not args.no_redis:
        print("Redis (DockerRuntime, the add_redis spec), start to PING:")
        line("apphost docker runtime, one", "redis_1")
        line("testcontainers RedisContainer.start(), one", "testcontainers")
        line("apphost docker runtime, five in parallel", "redis_5")
        target("ratio apphost / testcontainers", m["redis_1"] / m["testcontainers"], 1.00)
        target("ratio five / one", m["redis_5"] / m["redis_1"], 1.50)
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
