"""Azure Managed Redis in the ARM emulator: provisioning concurrency, idempotent re-runs and the
data plane's speed (issue 9), as ratios measured in one run.

1. Provisioning three Azure Managed Redis caches takes about as long as one: with a create
   delay of ``D`` seconds per long-running operation in the emulator, ``provision_for_run`` of
   three caches (T3) against one (T1), rounds interleaved, a fresh state folder and an emulator
   reset each round. Target: T3 / T1 <= 1.30.
2. An unchanged re-run makes no writes: ``provision_for_run`` again with the same state folder;
   the PUT/PATCH/POST/DELETE requests it sends to the emulator are counted. Target: 0.
3. The emulated caches answer GET about as fast as a plain local TLS ``redis-server``: redis-py
   doing ``--gets`` sequential GETs of a 100-byte value, against a ``redis-server`` this script
   starts with TLS (baseline) and against emulated caches reached through their ARM outputs (a
   classic cache on 6380; a Managed Redis OSS cluster's entry node on 10000 with the plain
   client, and through ``RedisCluster`` against a one-node TLS cluster baseline). The arms
   take turns in slices of a round's GETs; each figure is the median slice. Target: every
   ratio <= 1.50.

Every process this starts (the emulator with its redis-servers, the baseline redis-servers)
is stopped on exit, also on Ctrl-C or SIGTERM. Exit code 1 when a target is missed. Usage::

    .venv/bin/python benchmarks/managed_redis.py [--rounds 3] [--delay 1.0] [--gets 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import redis.cluster

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apphost_sdk.configuration import Configuration  # noqa: E402
from apphost_sdk.files import write_private  # noqa: E402
from provisioning.emulator.control import EmulatorProcess  # noqa: E402
from provisioning.emulator.redis_nodes import find_tls_redis_server  # noqa: E402
from provisioning.emulator.tls import CertificateAuthority  # noqa: E402
from provisioning.managed_spec import ManagedRedisRequest  # noqa: E402
from provisioning.outputs import CacheOutputs  # noqa: E402
from provisioning.run_mode import provision_for_run  # noqa: E402
from provisioning.spec import AzureRedisRequest  # noqa: E402

APP = "bench"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
VALUE = b"v" * 100
WARM_UP_GETS = 500
#: Slices of a round's GETs, taken in turns by the arms (see ``run_interleaved``).
CHUNKS = 20
#: Methods that change something; POSTs that only read (listed here) are reported, not counted.
WRITE_METHODS = ("PUT", "PATCH", "POST", "DELETE")
READ_POSTS = ("checknameavailability", "listkeys")
T3_TARGET, GET_TARGET = 1.30, 1.50


class Stop(Exception):
    """SIGTERM arrived: unwind so that every process is stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into :class:`Stop`, so the clean-up of ``main`` runs."""
    raise Stop()


def free_port() -> int:
    """A loopback port free at the time of asking (for the baseline servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(emulator: EmulatorProcess) -> Configuration:
    """The ``Azure`` section the provisioner reads, pointed at the emulator."""
    return Configuration(
        {
            "Azure:SubscriptionId": SUBSCRIPTION,
            "Azure:Location": "westus",
            "Azure:ResourceGroup": "rg-bench",
            "Azure:AllowResourceGroupCreation": "true",
            "Azure:CredentialSource": "Emulator",
            "Azure:ResourceManagerEndpoint": emulator.endpoint,
            "Azure:PollIntervalSeconds": "0.05",
            "Azure:RetryBaseDelaySeconds": "0.02",
            "Azure:RetryMaxDelaySeconds": "0.2",
        }
    )


def provision(
    emulator: EmulatorProcess,
    requests: Sequence[AzureRedisRequest | ManagedRedisRequest],
    state_dir: Path,
) -> tuple[float, dict[str, CacheOutputs]]:
    """Seconds ``provision_for_run`` takes for ``requests``, and its outputs."""
    started = time.perf_counter()
    outputs = provision_for_run(
        list(requests), settings(emulator), state_dir, APP, lambda name, text: None
    )
    return time.perf_counter() - started, outputs


# --------------------------------------------------------------------------- targets 1 and 2


def provisioning_round(
    emulator: EmulatorProcess, count: int, delay: float, workdir: Path
) -> tuple[float, float, list[dict[str, Any]]]:
    """Reset the emulator, provision ``count`` Managed Redis caches in a fresh state folder,
    then re-run unchanged; returns (first run s, re-run s, requests the re-run sent)."""
    emulator.reset(create_delay=delay, update_delay=delay, delete_delay=delay)
    state_dir = Path(tempfile.mkdtemp(prefix=f"state-{count}-", dir=workdir))
    requests = [ManagedRedisRequest(resource_name=f"cache{i}") for i in range(count)]
    first, outputs = provision(emulator, requests, state_dir)
    assert sorted(outputs) == sorted(r.resource_name for r in requests), outputs
    before = len(emulator.requests())
    again, _ = provision(emulator, requests, state_dir)
    return first, again, emulator.requests()[before:]


def is_write(request: dict[str, Any]) -> bool:
    """A request that changes something (a read-by-POST such as listKeys does not)."""
    path = str(request["path"]).lower()
    if request["method"] == "POST" and any(path.endswith(p) for p in READ_POSTS):
        return False
    return request["method"] in WRITE_METHODS


# --------------------------------------------------------------------------- target 3


class TlsRedisServer:
    """A plain local ``redis-server`` with TLS on 127.0.0.1 (the baseline), its password in a
    0600 config file; ``cluster`` makes it a one-node Redis Cluster owning every slot."""

    def __init__(self, binary: str, folder: Path, ca: CertificateAuthority, cluster: bool) -> None:
        self.folder = folder
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)  # reaches the server via its 0600 config
        self.cluster = cluster
        cert, key = ca.issue_server("127.0.0.1", folder)
        lines = [
            "port 0",
            f"tls-port {self.port}",
            "bind 127.0.0.1",
            f'tls-cert-file "{cert}"',
            f'tls-key-file "{key}"',
            f'tls-ca-cert-file "{ca.cert_file}"',
            "tls-auth-clients no",
            f"requirepass {self.password}",
            'save ""',
            "appendonly no",
            f'dir "{folder}"',
            f'logfile "{folder / "redis.log"}"',
        ]
        if cluster:
            lines += [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-port {free_port()}",
                "tls-cluster yes",
            ]
        config = folder / "redis.conf"
        write_private(config, "".join(f"{line}\n" for line in lines))
        self.process = subprocess.Popen(
            [binary, str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        self.ca_file = ca.cert_file

    def client(self) -> redis.Redis:
        """A TLS client verifying the server with the benchmark's CA."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.ca_file),
            password=self.password,
            socket_timeout=5,
        )

    def wait_ready(self) -> None:
        """Return once it answers PING (and, as a cluster, owns every slot)."""
        admin = self.client()
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"baseline redis-server exited; see {self.folder}/redis.log")
            try:
                if admin.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        if self.cluster:
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the baseline cluster did not reach cluster_state:ok")
                time.sleep(0.02)
        admin.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def entry_node_key(cluster: redis.cluster.RedisCluster, port: int) -> str:
    """A key whose slot the node on ``port`` (the cluster's entry node) owns."""
    for i in range(10_000):
        key = f"bench-{i}"
        if cluster.get_node_from_key(key).port == port:
            return key
    raise RuntimeError(f"no key found for the node on port {port}")


def get_loop(client: Any, key: str) -> Callable[[int], float]:
    """An arm: seconds for ``count`` sequential GETs of ``key`` (set once, then warmed up)."""
    client.set(key, VALUE)
    for _ in range(WARM_UP_GETS):
        if client.get(key) != VALUE:
            raise RuntimeError(f"GET {key} did not return the value just set")

    def run(count: int) -> float:
        get = client.get
        started = time.perf_counter()
        for _ in range(count):
            get(key)
        return time.perf_counter() - started

    return run


def run_interleaved(
    arms: dict[str, Callable[[int], float]], rounds: int, gets: int
) -> dict[str, float]:
    """Median seconds per GET of every arm. Each round runs ``gets`` GETs per arm in
    ``CHUNKS`` slices, arms taking turns slice by slice in a rotating order, so that a burst
    of other work on the machine hits every arm alike instead of one arm's whole round."""
    per_chunk = max(1, gets // CHUNKS)
    samples: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for turn in range(rounds * CHUNKS):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(arms[name](per_chunk) / per_chunk)
    return {name: statistics.median(values) for name, values in samples.items()}


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements, print figures and ratios; 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=1.0, help="emulator create delay, s")
    parser.add_argument("--gets", type=int, default=5000, help="GETs per arm and round")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)
    binary, reason = find_tls_redis_server()
    if binary is None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with contextlib.ExitStack() as stack:
            return measure(stack, binary, rounds, args.delay, args.gets)
    except (KeyboardInterrupt, Stop):
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130


def measure(stack: contextlib.ExitStack, binary: str, rounds: int, delay: float, gets: int) -> int:
    """The body of :func:`main`; everything started is registered on ``stack``."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-amr-")))
    emulator = stack.enter_context(EmulatorProcess.start("--create-delay", str(delay)))
    if not emulator.data_plane_available or emulator.ca_file is None:
        print(f"the emulator has no data plane: {emulator.data_plane_reason}", file=sys.stderr)
        return 2
    missed: list[str] = []

    def target(label: str, value: float, limit: float, fmt: str = ".2f") -> None:
        ok = value <= limit
        print(f"  {label}: {value:{fmt}} (target <= {limit:{fmt}}) {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(label)

    # 1 and 2: a warm-up round (imports, first connections), then T1/T3 interleaved.
    provisioning_round(emulator, 1, delay, workdir)
    t1: list[float] = []
    t3: list[float] = []
    reruns: list[float] = []
    rerun_writes: list[dict[str, Any]] = []
    rerun_requests = 0
    for r in range(rounds):
        for count in (1, 3) if r % 2 == 0 else (3, 1):
            first, again, log = provisioning_round(emulator, count, delay, workdir)
            (t1 if count == 1 else t3).append(first)
            reruns.append(again)
            rerun_writes += [q for q in log if is_write(q)]
            rerun_requests += len(log)
    m1, m3 = statistics.median(t1), statistics.median(t3)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"rounds: {rounds} (medians; min-max in brackets), create delay {delay} s")
    print(f"load average before: {load} (other work on the machine skews the figures)")
    print("provisioning Azure Managed Redis (provision_for_run, emulator over HTTP):")
    print(f"  one cache     T1 {m1:.3f} s  [{min(t1):.3f}-{max(t1):.3f}]")
    print(f"  three caches  T3 {m3:.3f} s  [{min(t3):.3f}-{max(t3):.3f}]")
    target("ratio T3 / T1", m3 / m1, T3_TARGET)
    print("unchanged re-run (same state folder), over every round:")
    print(
        f"  re-run duration median {statistics.median(reruns) * 1000:.0f} ms "
        f"[{min(reruns) * 1000:.0f}-{max(reruns) * 1000:.0f}], "
        f"{rerun_requests} requests in {len(reruns)} re-runs"
    )
    for q in rerun_writes:
        print(f"    write: {q['method']} {q['path']} -> {q['status']}")
    target("writes made by re-runs", float(len(rerun_writes)), 0.0, ".0f")

    # 3: the emulated caches' data plane against local TLS redis-servers.
    emulator.reset(create_delay=0.1, update_delay=0.1, delete_delay=0.1)
    _, outputs = provision(
        emulator,
        [
            AzureRedisRequest(resource_name="classic", use_access_keys=True),
            ManagedRedisRequest(resource_name="managed", use_access_keys=True),
        ],
        workdir / "state-data-plane",
    )
    classic, managed = outputs["classic"], outputs["managed"]
    ca = CertificateAuthority(workdir / "ca")
    servers = []
    for name, cluster in (("plain", False), ("cluster", True)):
        folder = workdir / f"baseline-{name}"
        folder.mkdir(mode=0o700)
        server = TlsRedisServer(binary, folder, ca, cluster)
        stack.callback(server.stop)
        servers.append(server)
    for server in servers:
        server.wait_ready()
    plain, one_node = servers
    emu_ca = str(emulator.ca_file)

    def emulated(outputs: CacheOutputs) -> redis.Redis:
        return redis.Redis(
            host=outputs.host_name,
            port=outputs.ssl_port,
            ssl=True,
            ssl_ca_certs=emu_ca,
            password=outputs.primary_key,
            socket_timeout=5,
        )

    amr_cluster = redis.cluster.RedisCluster(
        host=managed.host_name,
        port=managed.ssl_port,
        ssl=True,
        ssl_ca_certs=emu_ca,
        password=managed.primary_key,
        socket_timeout=5,
    )
    base_cluster = redis.cluster.RedisCluster(
        host="127.0.0.1",
        port=one_node.port,
        ssl=True,
        ssl_ca_certs=str(ca.cert_file),
        password=one_node.password,
        socket_timeout=5,
    )
    clients: list[Any] = [
        plain.client(),
        emulated(classic),
        emulated(managed),
        base_cluster,
        amr_cluster,
    ]
    for client in clients:
        stack.callback(client.close)
    key = entry_node_key(amr_cluster, managed.ssl_port)
    arms = {
        "base": get_loop(clients[0], key),
        "classic": get_loop(clients[1], key),
        "amr_node": get_loop(clients[2], key),
        "base_cluster": get_loop(clients[3], key),
        "amr_cluster": get_loop(clients[4], key),
    }
    m = run_interleaved(arms, rounds, gets)

    def line(label: str, name: str) -> None:
        print(f"  {label:66s} {m[name] * 1e6:6.1f} us/GET")

    print(
        f"data plane: {gets} sequential GETs of 100 bytes per arm and round in {CHUNKS} "
        "interleaved slices (median slice), redis-py, TLS:"
    )
    line("baseline: local redis-server, redis.Redis", "base")
    line(f"classic cache {classic.host_name}:{classic.ssl_port}, redis.Redis", "classic")
    line(
        f"Managed Redis OSS cluster entry node {managed.host_name}:{managed.ssl_port}, redis.Redis",
        "amr_node",
    )
    line("baseline: local one-node TLS Redis Cluster, RedisCluster", "base_cluster")
    line(
        f"Managed Redis OSS cluster {managed.host_name}:{managed.ssl_port}, RedisCluster",
        "amr_cluster",
    )
    target("ratio classic cache / baseline (redis.Redis)", m["classic"] / m["base"], GET_TARGET)
    target(
        "ratio Managed Redis entry node / baseline (redis.Redis)",
        m["amr_node"] / m["base"],
        GET_TARGET,
    )
    target(
        "ratio Managed Redis / one-node cluster baseline (RedisCluster)",
        m["amr_cluster"] / m["base_cluster"],
        GET_TARGET,
    )
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
