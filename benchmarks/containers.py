"""Container start-up benchmark for the Docker runtime (issue 3).

Measures, on the local test image ``apphost-test/redis:7`` (no registry needed):

1. start to healthy of one Redis container through ``DockerRuntime`` (``start`` + a PING loop
   at 20 ms) against testcontainers-python's ``RedisContainer.start()`` on the same image
   (target ratio <= 1.0);
2. five Redis resources started in parallel threads against one (target ratio <= 1.5);
3. for reference, the engine's own floor: five bare ``create`` + ``start`` API calls in
   parallel against one, with no SDK code at all.

Each figure is the median of ``--repeats`` rounds; every round uses a fresh run (session,
network) prepared outside the timed part, as the orchestrator does before it starts anything.
The whole run is bounded by ``--budget`` seconds. Usage::

    python benchmarks/containers.py [--repeats 5] [--budget 240]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apphost_sdk.runtimes.base import ContainerSpec  # noqa: E402
from apphost_sdk.runtimes.cleanup import remove_app_objects  # noqa: E402
from apphost_sdk.runtimes.docker_runtime import DockerHandle, DockerRuntime  # noqa: E402
from apphost_sdk.runtimes.engines import Engine, find_engine  # noqa: E402
from apphost_sdk.runtimes.health import redis_ping  # noqa: E402

IMAGE, TAG = "apphost-test/redis", "7"
#: No password on either side: testcontainers' RedisContainer passes its password as a literal
#: argument through the image's entrypoint, which the stand-in image does not support.
PASSWORD: str | None = None
POLL = 0.02
HEALTH_TIMEOUT = 30.0


def _engine() -> Engine:
    """An engine with the test image, started/built by the support scripts when needed."""
    if find_engine().engine is None:
        subprocess.run(["sh", str(ROOT / "tests/support/start_dockerd.sh")], check=True)
    subprocess.run(["sh", str(ROOT / "tests/support/build_redis_image.sh")], check=True)
    engine = find_engine().engine
    if engine is None:
        raise SystemExit("no container engine answers; start dockerd first")
    return engine


def _wait_ping(port: int, password: str | None) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while not redis_ping("127.0.0.1", port, password, timeout=0.5):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no PING answer on port {port}")
        time.sleep(POLL)


def _spec(app_id: str, session: str, name: str) -> ContainerSpec:
    return ContainerSpec(
        app_id=app_id,
        app_name="bench",
        session_id=session,
        resource_name=name,
        image=IMAGE,
        tag=TAG,
        state_dir=Path(tempfile.gettempdir()),
        password=PASSWORD,
    )


def sdk_round(count: int) -> float:
    """Seconds from starting ``count`` resources (in parallel threads) to all of them healthy."""
    app_id = "bench-" + uuid.uuid4().hex[:8]
    session = uuid.uuid4().hex
    engine = find_engine().engine
    assert engine is not None
    runtime = DockerRuntime(engine, lambda line: None)
    specs = [_spec(app_id, session, f"cache{i}") for i in range(count)]
    runtime.prepare(specs, lambda line: None)
    handles: list[DockerHandle] = []

    def one(spec: ContainerSpec) -> None:
        handle = runtime.start(spec, lambda stream, line: None)
        handles.append(handle)
        _wait_ping(handle.host_port, spec.password)

    try:
        started = time.perf_counter()
        if count == 1:
            one(specs[0])
        else:
            with ThreadPoolExecutor(count) as pool:
                list(pool.map(one, specs))
        return time.perf_counter() - started
    finally:
        for h in handles:
            h.stop(grace_seconds=0)
        runtime.close()
        remove_app_objects(engine.client.api, app_id, True)


def testcontainers_round() -> float:
    """Seconds for testcontainers-python's ``RedisContainer.start()`` plus one PING."""
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"  # the Ryuk image is not available
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            from testcontainers.redis import RedisContainer
    container = RedisContainer(f"{IMAGE}:{TAG}")
    started = time.perf_counter()
    container.start()
    try:
        port = int(container.get_exposed_port(6379))
        _wait_ping(port, PASSWORD)
        return time.perf_counter() - started
    finally:
        container.stop()


def engine_floor_round(api: Any, count: int) -> float:
    """Seconds for ``count`` bare create+start calls in parallel (no SDK, no health check)."""
    ids: list[str] = []

    def one(_: int) -> None:
        host_config = api.create_host_config(port_bindings={6379: ("127.0.0.1", None)})
        created = api.create_container(f"{IMAGE}:{TAG}", ports=[6379], host_config=host_config)
        ids.append(created["Id"])
        api.start(created["Id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    for container_id in ids:
        api.remove_container(container_id, force=True)
    return elapsed


def median(fn: Callable[[], float], repeats: int, deadline: float) -> float:
    """The median of up to ``repeats`` runs of ``fn`` (fewer when the budget runs out)."""
    samples: list[float] = []
    for _ in range(repeats):
        if samples and time.monotonic() > deadline:
            break
        samples.append(fn())
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds, whole run")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    engine = _engine()
    print(f"engine: {engine.describe()}")
    # Warm-up: the first container after an engine start pays one-off costs.
    sdk_round(1)
    testcontainers_round()

    per_phase = max(1, args.repeats)
    sdk_one = median(lambda: sdk_round(1), per_phase, deadline)
    tc_one = median(testcontainers_round, per_phase, deadline)
    sdk_five = median(lambda: sdk_round(5), per_phase, deadline)
    floor_one = median(lambda: engine_floor_round(engine.client.api, 1), per_phase, deadline)
    floor_five = median(lambda: engine_floor_round(engine.client.api, 5), per_phase, deadline)

    print(f"one Redis, apphost docker runtime, start to PING: {sdk_one:.3f} s")
    print(f"one Redis, testcontainers RedisContainer:         {tc_one:.3f} s")
    print(f"  ratio apphost / testcontainers: {sdk_one / tc_one:.2f} (target <= 1.00)")
    print(f"five Redis in parallel, apphost, start to PING:   {sdk_five:.3f} s")
    print(f"  ratio five / one: {sdk_five / sdk_one:.2f} (target <= 1.50)")
    print(
        f"engine floor, bare create+start: one {floor_one:.3f} s, five {floor_five:.3f} s, "
        f"ratio {floor_five / floor_one:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
