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
from collections import deque
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
#: How long a stop waits for the servers it replaces (start-up join plus SIGTERM grace).
_STOP_TIMEOUT = _START_TIMEOUT + 15.0
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


class _Run:
    """One start of a cache's servers: its nodes, folder and start-up thread. A restart makes a
    new run, so the thread of a stopped run never touches its successor."""

    def __init__(self, nodes: list[RedisNode], folder: Path, after: threading.Event | None) -> None:
        self.nodes = nodes
        self.folder = folder
        #: Set once the previous servers on the same address are gone; start only after it.
        self.after = after
        self.thread: threading.Thread | None = None
        self.cancelled = False


class _Cache:
    """What the data plane knows about one cache: address, servers, wanted authentication."""

    def __init__(self, resource_id: str, address: str) -> None:
        self.resource_id = resource_id
        self.address = address
        self.state: DataPlaneState = "absent"
        self.failure: str | None = None
        self.keys: tuple[str, ...] | None = None
        self.object_ids: set[str] = set()
        self.run: _Run | None = None
        #: Set once the last stopped servers on this address are gone (None: nothing stopped).
        self.vacated: threading.Event | None = None
        #: ACL commands not yet sent, oldest first; one sender at a time drains them in order.
        self.outbox: deque[list[str]] = deque()
        self.send_lock = threading.Lock()


class DataPlane:
    """Real ``redis-server`` processes behind the emulated caches (one object per emulator).

    Nothing slow runs under its lock (the stores call it under theirs): servers stop on
    background threads (an address is leased again only once its servers are gone), and ACL
    changes reach the servers after the lock is released, in order, one sender per cache.
    """

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
        self._close_lock = threading.Lock()
        self._caches: dict[str, _Cache] = {}
        self._tokens: dict[str, dict[str, float]] = {}  # object id -> {hash: expires_on}
        self._leases = LoopbackLeases(_NEEDED_PORTS)
        self._reapers: set[threading.Thread] = set()
        #: Lower-cased id -> set once the servers of that forgotten cache are gone.
        self._gone: dict[str, threading.Event] = {}
        # One long-lived thread starts every process: PR_SET_PDEATHSIG fires when the
        # *thread* that started a child ends, and request threads end quickly.
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="redis-launcher")
        self._closed = False
        self._closing = False
        atexit.register(self.close)

    def _reopen(self) -> None:
        """Make a closed data plane usable again: a :meth:`start` after :meth:`close` (an
        emulator reset only stops the servers, through :meth:`stop_all`; lock held)."""
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
            cache = _Cache(resource_id, "" if self._closing else self._leases.lease())
            self._caches[key] = cache
        return cache

    def address_for(self, resource_id: str) -> str:
        """The loopback address of the cache ``resource_id`` (stable while it exists, across
        ``stop(..., keep_address=True)`` and restarts)."""
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
        to change ``port`` or ``cluster``, :meth:`stop` it first (``keep_address=True`` keeps
        its host name). While :meth:`close` runs, the cache fails at once instead.
        """
        with self._lock:
            if self._closing:
                refused = self._caches.setdefault(resource_id.lower(), _Cache(resource_id, ""))
                refused.state, refused.failure = "failed", "the emulator is shutting down"
                return
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
            else:
                self._begin_run(cache, port, cluster)
                return
        self._flush(cache)

    def _begin_run(self, cache: _Cache, port: int, cluster: bool) -> None:
        """Start a new run of the cache's servers on its address (lock held)."""
        assert self._binary is not None and self._ca is not None
        previous = self._detach(cache)  # a failed run's servers go in the background
        if previous is not None:
            cache.vacated = self._reap_later(cache.address, previous, cache.vacated, False)
        cache.state, cache.failure = "starting", None
        folder = Path(tempfile.mkdtemp(prefix="cache-", dir=self.root))
        cert_file, key_file = self._ca.issue_server(cache.address, folder)
        ports = [port, *CLUSTER_SHARD_PORTS] if cluster else [port]
        nodes = [
            RedisNode(
                self._binary,
                cache.address,
                node_port,
                folder / str(node_port),
                cert_file=cert_file,
                key_file=key_file,
                ca_file=self._ca.cert_file,
                cluster_port=node_port + 10000 if cluster else None,
            )
            for node_port in ports
        ]
        run = _Run(nodes, folder, cache.vacated)
        cache.run = run
        run.thread = threading.Thread(
            target=self._run_start,
            args=(cache, run, cluster),
            name=f"data-plane {cache.address}",
            daemon=True,
        )
        run.thread.start()

    def _run_start(self, cache: _Cache, run: _Run, cluster: bool) -> None:
        """Wait until the address is free, start the nodes, wait for them (and the cluster),
        then apply authentication."""
        deadline = time.monotonic() + _START_TIMEOUT

        def cancelled() -> bool:
            return run.cancelled

        try:
            if run.after is not None and not run.after.wait(max(deadline - time.monotonic(), 0)):
                raise RuntimeError(f"the previous servers on {cache.address} did not stop in time")
            admin_line = f"user {_ADMIN_USER} on {_hash(self._admin_password)} ~* &* +@all"
            for node in run.nodes:
                if run.cancelled:
                    raise RuntimeError("stopped while starting")
                node.write_files([admin_line, "user default off"])
                self._launcher.submit(node.spawn).result()
            clients = [node.client(_ADMIN_USER, self._admin_password) for node in run.nodes]
            for node, client in zip(run.nodes, clients, strict=True):
                node.wait_ready(client, deadline, cancelled)
            if cluster:
                form_cluster(run.nodes, clients, deadline, cancelled)
            with self._lock:
                if run.cancelled:
                    return
                self._apply(cache, force=True)
            problem = self._flush(cache, run, force=True)
            if problem is not None:
                raise RuntimeError(problem)
            with self._lock:
                if run.cancelled:
                    return
                cache.state = "ready"
            self._flush(cache, run)  # what was queued while the start-up finished
        except Exception as exc:  # whatever went wrong, the store must see "failed", not hang
            with self._lock:
                if run.cancelled:
                    return
                cache.state, cache.failure = "failed", str(exc)
            for node in run.nodes:  # outside the lock; a later stop joins this thread first
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
            run = None if cache is None else cache.run
            return [] if run is None else [node.port for node in run.nodes]

    # -- authentication -----------------------------------------------------------------

    def set_keys(self, resource_id: str, keys: Sequence[str] | None) -> None:
        """Replace the accepted access keys (None: access keys disabled)."""
        if not self.available:
            return
        with self._lock:
            cache = self._cache(resource_id)
            cache.keys = None if keys is None else tuple(keys)
            self._apply(cache, users=["default"])
        self._flush(cache)

    def grant(self, resource_id: str, object_id: str) -> None:
        """Let ``object_id`` in with any token issued for it (an access policy assignment)."""
        if not self.available:
            return
        with self._lock:
            cache = self._cache(resource_id)
            cache.object_ids.add(object_id)
            self._apply(cache, users=[object_id])
        self._flush(cache)

    def revoke(self, resource_id: str, object_id: str) -> None:
        """Undo :meth:`grant`."""
        with self._lock:
            cache = self._caches.get(resource_id.lower())
            if cache is None or object_id not in cache.object_ids:
                return
            cache.object_ids.discard(object_id)
            self._queue(cache, ["ACL", "DELUSER", object_id])
        self._flush(cache)

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
            touched = []
            for cache in self._caches.values():
                users = sorted(changed & cache.object_ids)
                if users and self._apply(cache, users=users):
                    touched.append(cache)
        for cache in touched:
            self._flush(cache)

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
    ) -> bool:
        """Queue the ACL rules of the wanted ``users`` (default: all) for a starting or ready
        cache; whether anything was queued (lock held; :meth:`_flush` sends them).

        ``force``: the start-up thread's full apply (it sends before the cache is ready).
        """
        if cache.run is None or (cache.state not in ("starting", "ready") and not force):
            return False
        wanted = list(users) if users is not None else ["default", *sorted(cache.object_ids)]
        for name in wanted:
            if name == "default":
                hashes = None if cache.keys is None else [_hash(key) for key in cache.keys]
            else:
                hashes = self._live_token_hashes(name)
            cache.outbox.append(["ACL", "SETUSER", name, *_user_rules(hashes)])
        return bool(wanted)

    def _queue(self, cache: _Cache, command: list[str]) -> None:
        """Queue one administrative command for a starting or ready cache (lock held)."""
        if cache.run is not None and cache.state in ("starting", "ready"):
            cache.outbox.append(command)

    def _flush(self, cache: _Cache, run: _Run | None = None, force: bool = False) -> str | None:
        """Send the cache's queued commands in order, outside the data plane's lock; a node
        that fails twice (the second time on a fresh connection) marks the cache failed.

        Sends only to a ready cache unless ``force`` (the start-up thread, which gets the
        problem back instead); returns the problem, or None.
        """
        with cache.send_lock:
            while True:
                with self._lock:
                    current = cache.run
                    if current is None or (run is not None and current is not run):
                        return None
                    if (cache.state != "ready" and not force) or not cache.outbox:
                        return None
                    command = cache.outbox.popleft()
                problem = self._send(current, command)
                if problem is None:
                    continue
                with self._lock:
                    if cache.run is not current or force:
                        return problem
                    cache.state, cache.failure = "failed", problem
                    cache.outbox.clear()
                    return problem

    def _send(self, run: _Run, command: Sequence[str]) -> str | None:
        """Run ``command`` on every node of ``run``, retrying once on a fresh connection;
        the problem, or None."""
        for node in run.nodes:
            for attempt in (1, 2):
                try:
                    self._admin(node).execute_command(*command)
                    break
                except redis.RedisError as exc:
                    node.drop_client()
                    if attempt == 2 or run.cancelled:
                        return f"{node.address}:{node.port} stopped answering ({exc}): " + (
                            node.log_tail()
                        )
        return None

    # -- stopping -----------------------------------------------------------------------

    def _detach(self, cache: _Cache) -> _Run | None:
        """Take the current run off the cache and cancel it (lock held)."""
        run, cache.run = cache.run, None
        cache.outbox.clear()
        if run is not None:
            run.cancelled = True
        return run

    def _reap_later(
        self, address: str, run: _Run | None, previous: threading.Event | None, release: bool
    ) -> threading.Event:
        """Stop ``run``'s servers on a background thread (after ``previous`` ones on the same
        address), then release the address if asked; the event is set when done (lock held)."""
        done = threading.Event()
        thread = threading.Thread(
            target=self._reap,
            args=(address, run, previous, release, done),
            name=f"data-plane stop {address}",
            daemon=True,
        )
        self._reapers.add(thread)
        thread.start()
        return done

    def _reap(
        self,
        address: str,
        run: _Run | None,
        previous: threading.Event | None,
        release: bool,
        done: threading.Event,
    ) -> None:
        """The body of a :meth:`_reap_later` thread."""
        try:
            if previous is not None:
                previous.wait(_STOP_TIMEOUT)
            if run is not None:
                self._stop_run(run)
        finally:
            with self._lock:
                if release:
                    self._leases.release(address)
                self._reapers.discard(threading.current_thread())
            done.set()

    @staticmethod
    def _stop_run(run: _Run) -> None:
        """Wait for the run's start-up thread, stop its processes and remove its folder."""
        run.cancelled = True
        thread = run.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_START_TIMEOUT + 5)
        for node in run.nodes:
            node.stop()
        shutil.rmtree(run.folder, ignore_errors=True)

    def stop(self, resource_id: str, keep_address: bool = False) -> None:
        """Stop the cache's server(s) in the background and return at once.

        Without ``keep_address`` the cache is forgotten and its address is released once its
        servers are gone; with it the cache keeps its address (a restart, a database delete)
        and a later :meth:`start` waits for the old servers to be gone.
        """
        with self._lock:
            key = resource_id.lower()
            cache = self._caches.get(key)
            if cache is None:
                return
            run = self._detach(cache)
            cache.state, cache.failure = "absent", None
            if keep_address:
                cache.keys, cache.object_ids = None, set()
                if run is not None:
                    cache.vacated = self._reap_later(cache.address, run, cache.vacated, False)
                return
            del self._caches[key]
            if cache.address:  # "" for a cache refused without an address
                self._gone[key] = self._reap_later(cache.address, run, cache.vacated, True)

    def stopping(self, resource_id: str) -> bool:
        """Whether servers that :meth:`stop` asked to go are still running for this cache
        (the stores finish a delete only after they are gone, as Azure does)."""
        with self._lock:
            key = resource_id.lower()
            gone = self._gone.get(key)
            if gone is not None and gone.is_set():
                del self._gone[key]
                gone = None
            cache = self._caches.get(key)
            vacated = None if cache is None else cache.vacated
            return any(e is not None and not e.is_set() for e in (gone, vacated))

    def stop_all(self) -> None:
        """Stop every server and free every address in the background, keeping the CA (an
        emulator reset); :meth:`wait_stopped` waits for them."""
        with self._lock:
            ids = [cache.resource_id for cache in self._caches.values()]
        for resource_id in ids:
            self.stop(resource_id)

    def wait_stopped(self, timeout: float = _STOP_TIMEOUT) -> bool:
        """Block until every stopped server is gone (or ``timeout`` seconds); whether they are."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._reapers)
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending[0].join(remaining)

    def close(self) -> None:
        """Stop every server and remove the files, returning once they are gone (the emulator
        is exiting). Idempotent; a later :meth:`start` reopens it with the same CA, and a
        start arriving while it runs is refused (the cache fails)."""
        with self._close_lock:
            with self._lock:
                if self._closed:
                    return
                self._closing = True
                jobs = [(self._detach(cache), cache.vacated) for cache in self._caches.values()]
                self._caches.clear()
                self._gone.clear()
            try:
                for run, previous in jobs:
                    if previous is not None:
                        previous.wait(_STOP_TIMEOUT)
                    if run is not None:
                        self._stop_run(run)
                self.wait_stopped()
                self._launcher.shutdown(wait=True)
            finally:
                with self._lock:
                    self._caches.clear()  # records of starts refused while closing
                    self._leases.release_all()
                    if self._own_root:
                        shutil.rmtree(self.root, ignore_errors=True)
                    self._closed, self._closing = True, False
                atexit.unregister(self.close)
