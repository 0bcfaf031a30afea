"""The emulator's data plane: a real TLS ``redis-server`` (or a small TLS Redis Cluster) behind
every emulated cache, so the host names and ports in ARM responses lead to a live server.

CONTRACT (the stores only call what is declared here):

- Each cache gets its own loopback address (``127.0.0.x``) and keeps Azure's port (6380 for
  Azure Cache for Redis, 10000 for Azure Managed Redis). The emulator's CA (generated once per
  data-plane root) signs a server certificate whose IP SAN is that address.
- Authentication mirrors Azure: access keys are passwords of the ``default`` user (both primary
  and secondary accepted; ``None`` means access keys are disabled and ``default`` is off);
  Entra ID principals authenticate as their object id with a token :meth:`issue_token`
  returned, accepted only where :meth:`grant` gave that object id access.
- Start-up runs in the background; the stores ask :meth:`state` to decide when a create has
  finished (a cache is not ``Succeeded`` before its server answers).

Clients talk to the ``redis-server`` processes directly (nothing is proxied), and secrets only
reach a server as SHA-256 hashes in ``ACL SETUSER`` (``#<hash>``), never in process arguments.
"""

from __future__ import annotations

import atexit
import hashlib
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import redis

from .loopback import LoopbackLeases
from .redis_nodes import RedisNode, find_tls_redis_server, form_cluster
from .tls import CertificateAuthority

DataPlaneState = Literal["absent", "starting", "ready", "failed"]

#: The extra master ports of a cluster (AMR's shards listen on 85xx ports).
CLUSTER_SHARD_PORTS = (8500, 8501)
#: Every port a cache may need on its address: classic, Managed Redis, shards, cluster buses.
_NEEDED_PORTS = (
    6380,
    10000,
    *CLUSTER_SHARD_PORTS,
    20000,
    *(p + 10000 for p in CLUSTER_SHARD_PORTS),
)
_ADMIN_USER = "apphost-emulator-admin"
_START_TIMEOUT = 30.0
#: What Azure's policies leave out of ``+@all``: server administration and cluster topology.
_DENIED = (
    "-config",
    "-acl",
    "-shutdown",
    "-debug",
    "-monitor",
    "-module",
    "-save",
    "-bgsave",
    "-bgrewriteaof",
    "-replicaof",
    "-slaveof",
    "-failover",
    "-sync",
    "-psync",
    "-cluster|meet",
    "-cluster|forget",
    "-cluster|reset",
    "-cluster|addslots",
    "-cluster|addslotsrange",
    "-cluster|delslots",
    "-cluster|delslotsrange",
    "-cluster|setslot",
    "-cluster|failover",
    "-cluster|replicate",
    "-cluster|flushslots",
    "-cluster|saveconfig",
    "-cluster|set-config-epoch",
    "-cluster|bumpepoch",
)


def _hash(secret: str) -> str:
    """The ``#<sha256>`` form Redis ACLs accept instead of a clear-text password."""
    return "#" + hashlib.sha256(secret.encode()).hexdigest()


def _user_rules(password_hashes: Sequence[str] | None) -> list[str]:
    """ACL rules for a data user: off when ``password_hashes`` is None, else on with those
    passwords (none: nobody can log in) and Azure's data-access permissions."""
    if password_hashes is None:
        return ["reset", "off"]
    return ["reset", "on", *password_hashes, "~*", "&*", "+@all", *_DENIED]


class _Cache:
    """What the data plane knows about one cache: address, servers, wanted authentication."""

    def __init__(self, resource_id: str, address: str) -> None:
        self.resource_id = resource_id
        self.address = address
        self.state: DataPlaneState = "absent"
        self.failure: str | None = None
        self.keys: tuple[str, ...] | None = None
        self.object_ids: set[str] = set()
        self.nodes: list[RedisNode] = []
        self.folder: Path | None = None
        self.thread: threading.Thread | None = None
        self.cancelled = False


class DataPlane:
    """Real ``redis-server`` processes behind the emulated caches (one object per emulator)."""

    def __init__(self, root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="apphost-emulator-")) if root is None else root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        binary, reason = find_tls_redis_server()
        self._binary = binary
        #: Whether a TLS-capable ``redis-server`` was found; False means control plane only.
        self.available = binary is not None
        #: Why the data plane is off (shown by the emulator at start), or None.
        self.unavailable_reason: str | None = reason
        self._ca = CertificateAuthority(self.root) if self.available else None
        #: The PEM file of the emulator's CA (None when unavailable).
        self.ca_file: Path | None = self._ca.cert_file if self._ca is not None else None
        self._admin_password = secrets.token_urlsafe(32)
        self._lock = threading.RLock()
        self._caches: dict[str, _Cache] = {}
        self._tokens: dict[str, dict[str, float]] = {}  # object id -> {hash: expires_on}
        self._leases = LoopbackLeases(_NEEDED_PORTS)
        # One long-lived thread starts every process: PR_SET_PDEATHSIG fires when the
        # *thread* that started a child ends, and request threads end quickly.
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="redis-launcher")
        self._closed = False
        atexit.register(self.close)

    def _reopen(self) -> None:
        """Make a closed data plane usable again (an emulator reset closes it; lock held)."""
        if not self._closed:
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._ca is not None:  # the same CA as before, so a printed CA file stays valid
            self._ca.save()
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="redis-launcher")
        self._closed = False
        atexit.register(self.close)

    # -- addresses ----------------------------------------------------------------------

    def _cache(self, resource_id: str) -> _Cache:
        """The record of ``resource_id``, leasing an address for a new one (lock held)."""
        key = resource_id.lower()
        cache = self._caches.get(key)
        if cache is None:
            cache = _Cache(resource_id, self._leases.lease())
            self._caches[key] = cache
        return cache

    def address_for(self, resource_id: str) -> str:
        """The loopback address of the cache ``resource_id`` (stable while it exists)."""
        with self._lock:
            return self._cache(resource_id).address

    # -- life cycle ---------------------------------------------------------------------

    def start(
        self,
        resource_id: str,
        *,
        port: int,
        cluster: bool,
        keys: Sequence[str] | None,
        object_ids: Sequence[str] = (),
    ) -> None:
        """Begin starting the cache's server(s) in the background (returns at once).

        For a cache already starting or running, only ``keys`` and ``object_ids`` are applied;
        to change ``port`` or ``cluster``, :meth:`stop` it first.
        """
        with self._lock:
            self._reopen()
            if self._binary is None or self._ca is None:  # no server: no address either
                failed = self._caches.setdefault(resource_id.lower(), _Cache(resource_id, ""))
                failed.state, failed.failure = "failed", self.unavailable_reason
                return
            cache = self._cache(resource_id)
            cache.keys = None if keys is None else tuple(keys)
            cache.object_ids.update(object_ids)
            if cache.state in ("starting", "ready"):
                self._apply(cache)
                return
            self._discard_servers(cache)
            cache.state, cache.failure, cache.cancelled = "starting", None, False
            cache.folder = Path(tempfile.mkdtemp(prefix="cache-", dir=self.root))
            cert_file, key_file = self._ca.issue_server(cache.address, cache.folder)
            ports = [port, *CLUSTER_SHARD_PORTS] if cluster else [port]
            cache.nodes = [
                RedisNode(
                    self._binary,
                    cache.address,
                    node_port,
                    cache.folder / str(node_port),
                    cert_file=cert_file,
                    key_file=key_file,
                    ca_file=self._ca.cert_file,
                    cluster_port=node_port + 10000 if cluster else None,
                )
                for node_port in ports
            ]
            cache.thread = threading.Thread(
                target=self._run_start,
                args=(cache, cluster),
                name=f"data-plane {cache.address}",
                daemon=True,
            )
            cache.thread.start()

    def _run_start(self, cache: _Cache, cluster: bool) -> None:
        """Start the nodes, wait for them (and the cluster), then apply authentication."""
        deadline = time.monotonic() + _START_TIMEOUT

        def cancelled() -> bool:
            return cache.cancelled

        try:
            admin_line = f"user {_ADMIN_USER} on {_hash(self._admin_password)} ~* &* +@all"
            for node in cache.nodes:
                node.write_files([admin_line, "user default off"])
                self._launcher.submit(node.spawn).result()
            clients = [node.client(_ADMIN_USER, self._admin_password) for node in cache.nodes]
            for node, client in zip(cache.nodes, clients, strict=True):
                node.wait_ready(client, deadline, cancelled)
            if cluster:
                form_cluster(cache.nodes, clients, deadline, cancelled)
            with self._lock:
                if cache.cancelled:
                    return
                self._apply(cache, force=True)
                cache.state = "ready"
        except Exception as exc:  # whatever went wrong, the store must see "failed", not hang
            with self._lock:
                if cache.cancelled:
                    return
                cache.state, cache.failure = "failed", str(exc)
                for node in cache.nodes:
                    node.stop()

    def state(self, resource_id: str) -> DataPlaneState:
        """Where the cache's server is: absent, starting, ready or failed."""
        with self._lock:
            cache = self._caches.get(resource_id.lower())
            return "absent" if cache is None else cache.state

    def failure(self, resource_id: str) -> str | None:
        """Why the cache's server failed to start, or None."""
        with self._lock:
            cache = self._caches.get(resource_id.lower())
            return None if cache is None else cache.failure

    def wait_ready(self, resource_id: str, timeout: float = _START_TIMEOUT) -> DataPlaneState:
        """Block until the cache is no longer starting (or ``timeout`` seconds); its state."""
        deadline = time.monotonic() + timeout
        while (current := self.state(resource_id)) == "starting":
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return current

    def ports(self, resource_id: str) -> list[int]:
        """The ports of the cache's nodes (entry node first; empty when not started)."""
        with self._lock:
            cache = self._caches.get(resource_id.lower())
            return [] if cache is None else [node.port for node in cache.nodes]

    # -- authentication -----------------------------------------------------------------

    def set_keys(self, resource_id: str, keys: Sequence[str] | None) -> None:
        """Replace the accepted access keys (None: access keys disabled)."""
        if not self.available:
            return
        with self._lock:
            cache = self._cache(resource_id)
            cache.keys = None if keys is None else tuple(keys)
            self._apply(cache, users=["default"])

    def grant(self, resource_id: str, object_id: str) -> None:
        """Let ``object_id`` in with any token issued for it (an access policy assignment)."""
        if not self.available:
            return
        with self._lock:
            cache = self._cache(resource_id)
            cache.object_ids.add(object_id)
            self._apply(cache, users=[object_id])

    def revoke(self, resource_id: str, object_id: str) -> None:
        """Undo :meth:`grant`."""
        with self._lock:
            cache = self._caches.get(resource_id.lower())
            if cache is None or object_id not in cache.object_ids:
                return
            cache.object_ids.discard(object_id)
            self._on_nodes(cache, ["ACL", "DELUSER", object_id])

    def issue_token(self, object_id: str, token: str, expires_on: float) -> None:
        """Register ``token`` as a password of ``object_id`` on every cache that grants it,
        now and later, until ``expires_on`` (epoch seconds)."""
        with self._lock:
            now = time.time()
            changed = {
                oid
                for oid, issued in self._tokens.items()
                if any(e <= now for e in issued.values())
            }
            self._tokens.setdefault(object_id, {})[_hash(token)] = expires_on
            changed.add(object_id)
            for cache in self._caches.values():
                users = sorted(changed & cache.object_ids)
                if users:
                    self._apply(cache, users=users)

    def _live_token_hashes(self, object_id: str) -> list[str]:
        """The unexpired token hashes of ``object_id`` (expired ones are dropped here)."""
        now = time.time()
        issued = self._tokens.get(object_id, {})
        for expired in [h for h, expires_on in issued.items() if expires_on <= now]:
            del issued[expired]
        return sorted(issued)

    def _admin(self, node: RedisNode) -> redis.Redis:
        return node.client(_ADMIN_USER, self._admin_password)

    def _apply(
        self, cache: _Cache, users: Sequence[str] | None = None, force: bool = False
    ) -> None:
        """Push the wanted ``users`` (default: all) to every node of a ready cache (lock held).

        ``force`` applies while the cache is still starting (its start-up thread finishing).
        """
        if cache.state != "ready" and not force:
            return
        wanted = list(users) if users is not None else ["default", *sorted(cache.object_ids)]
        for name in wanted:
            if name == "default":
                hashes = None if cache.keys is None else [_hash(key) for key in cache.keys]
            else:
                hashes = self._live_token_hashes(name)
            self._on_nodes(cache, ["ACL", "SETUSER", name, *_user_rules(hashes)], force)

    def _on_nodes(self, cache: _Cache, command: Sequence[str], force: bool = False) -> None:
        """Run an administrative ``command`` on every node of a ready cache (lock held).

        A node that does not answer marks the cache failed (``force``: raise instead, for the
        start-up thread, which reports it).
        """
        if cache.state != "ready" and not force:
            return
        for node in cache.nodes:
            try:
                self._admin(node).execute_command(*command)
            except redis.RedisError as exc:
                if force:
                    raise
                cache.state = "failed"
                cache.failure = f"{node.address}:{node.port} stopped answering ({exc}): " + (
                    node.log_tail()
                )
                return

    # -- stopping -----------------------------------------------------------------------

    def _discard_servers(self, cache: _Cache) -> None:
        """Stop the cache's processes and remove its folder (lock held)."""
        cache.cancelled = True
        for node in cache.nodes:
            node.stop()
        cache.nodes = []
        if cache.folder is not None:
            shutil.rmtree(cache.folder, ignore_errors=True)
            cache.folder = None

    def stop(self, resource_id: str) -> None:
        """Stop the cache's server(s) and forget its address."""
        with self._lock:
            cache = self._caches.pop(resource_id.lower(), None)
            if cache is None:
                return
            cache.cancelled = True
            thread = cache.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_START_TIMEOUT + 5)
        with self._lock:
            self._discard_servers(cache)
            self._leases.release(cache.address)
            cache.state = "absent"

    def stop_all(self) -> None:
        """Stop every server and free every address, keeping the CA (an emulator reset)."""
        with self._lock:
            ids = list(self._caches)
        for resource_id in ids:
            self.stop(resource_id)

    def close(self) -> None:
        """Stop every server and remove the files (the emulator is exiting or was reset).

        Idempotent; a later :meth:`start` reopens the data plane with the same CA.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop_all()
        self._launcher.shutdown(wait=True)
        self._leases.release_all()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)
