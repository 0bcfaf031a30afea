"""The ``docker`` runtime: container resources through the Docker Engine API.

Also drives Podman through its Docker-compatible API. The ``docker`` package is imported lazily
(by ``engines``) so that ``import apphost_sdk`` stays fast and works without it.

What it guarantees (issue 3):

- everything it creates carries ``apphost-sdk.*`` labels (app id, resource, session, creator pid
  and process start time, lifetime, configuration hash; environment variable NAMES only);
- containers are created, then started; a failed start removes the created container;
- ports are published on 127.0.0.1 only; a fixed port that is taken is reported before create;
- environment values (secrets among them) travel only in the container's environment: labels
  carry variable names and keyed hashes, never values;
- persistent containers are reused while their configuration hash matches (same password, same
  host port; a running one is left untouched, a stopped one is restarted, not recreated) and
  recreated, saying which setting changed, otherwise; never while another live app host uses
  them;
- as in Aspire, a persistent container outlives the app host: a normal stop (Ctrl-C, ``apphost
  stop``, ``app.stop()``) leaves it running and only detaches it from the run's network; only
  ``apphost down --volumes`` removes it;
- every run records the containers it uses in the per-user in-use registry (``in_use``) and
  removes the record when it lets them go, so ``apphost down`` can refuse to remove what a live
  app host uses, whichever run created it and whatever state folder ``down`` runs with;
- one network per run, with each resource's name as DNS alias, for the containers that talk to
  each other (the others stay on the default bridge: a network costs start-up time); session
  containers are created on it, persistent ones join it after their start (they outlive it);
- ``host.docker.internal`` resolves to the engine's host gateway in every container;
- session containers and the run's network are removed on stop/close, and what a dead app host
  left behind is removed by ``cleanup_orphans``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ImageUnavailableError, ResourceStartError
from ..process_identity import process_alive, process_start_time
from . import in_use
from .base import ContainerHandle, ContainerRuntime, ContainerSpec, LineSink, MountSpec
from .engines import Engine
from .health import free_port, port_is_free

log = logging.getLogger(__name__)

LABEL_PREFIX = "apphost-sdk."
MANAGED = LABEL_PREFIX + "managed"
APP_ID = LABEL_PREFIX + "app-id"
APP_NAME = LABEL_PREFIX + "app-name"
RESOURCE = LABEL_PREFIX + "resource"
SESSION = LABEL_PREFIX + "session"
CREATOR_PID = LABEL_PREFIX + "creator-pid"
CREATOR_START = LABEL_PREFIX + "creator-start"
CREATOR_HOST = LABEL_PREFIX + "creator-host"
LIFETIME = LABEL_PREFIX + "lifetime"
CONFIG_HASH = LABEL_PREFIX + "config-hash"
CONFIG = LABEL_PREFIX + "config"
ENV_NAMES = LABEL_PREFIX + "env-names"
HOST_PORT = LABEL_PREFIX + "host-port"
KIND = LABEL_PREFIX + "kind"

#: The name containers use for this machine.
HOST_GATEWAY_NAME = "host.docker.internal"
#: How often (seconds) pull progress is reported per image.
PROGRESS_INTERVAL = 1.0
#: Attempts at a dynamically chosen port when another process grabs it first.
PORT_ATTEMPTS = 3

Announce = Callable[[str], None]


# --------------------------------------------------------------------------- creator identity


def creator_alive(labels: Mapping[str, str]) -> bool:
    """True when the app host that created a labelled object is still running.

    Objects created on another machine (a remote engine) are always considered alive: their
    pids mean nothing here.
    """
    if labels.get(CREATOR_HOST, socket.gethostname()) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(CREATOR_PID, ""))
    except ValueError:
        return True
    return process_alive(pid, labels.get(CREATOR_START, ""))


def creator_labels() -> dict[str, str]:
    """Labels identifying this process as the creator (pid, start time, host)."""
    pid = os.getpid()
    return {
        CREATOR_PID: str(pid),
        CREATOR_START: process_start_time(pid),
        CREATOR_HOST: socket.gethostname(),
    }


# --------------------------------------------------------------------------- naming and labels


def _docker_name(*parts: str) -> str:
    """A valid container/network/volume name from parts (``[a-zA-Z0-9][a-zA-Z0-9_.-]*``)."""
    raw = "-".join(p for p in parts if p)
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in raw)
    cleaned = cleaned.strip("-_.") or "apphost"
    return cleaned[:128]


def _app_digest(spec: ContainerSpec) -> str:
    """The hash part of the app id (``{name}-{hash}``): two app hosts in folders of the same
    name share the name, never the hash."""
    return spec.app_id.rsplit("-", 1)[-1]


def container_name(spec: ContainerSpec) -> str:
    """Session containers are unique per run; a persistent one is stable per app and resource."""
    suffix = _app_digest(spec) if spec.lifetime == "persistent" else spec.session_id[:8]
    return _docker_name(spec.app_name, spec.resource_name, suffix)


def network_name(app_id: str, session_id: str) -> str:
    """The run's network: unique per app (id: name and hash) and run, so two app hosts in
    folders of the same name never share one."""
    return _docker_name("apphost", app_id, session_id[:8])


def volume_name(spec: ContainerSpec, mount: MountSpec) -> str:
    """A volume's name: the given one, else derived from app, resource and target (``/data``
    gives ``{app}-{hash}-{resource}-data``)."""
    if mount.source:
        return mount.source
    target = mount.target.strip("/").replace("/", "-") or "root"
    return _docker_name(spec.app_name, _app_digest(spec), spec.resource_name, target)


def stored_config(spec: ContainerSpec) -> dict[str, object]:
    """``spec.config_fields()`` as kept in a label: secret-derived fields re-hashed with the app id.

    The fields are already hashes, but a weak password's unsalted hash could be guessed; salting
    with the app id keeps the label useful only for comparison.
    """
    import hashlib

    fields = dict(spec.config_fields())

    def salted(value: object) -> str:
        return hashlib.sha256(f"{spec.app_id}:{json.dumps(value)}".encode()).hexdigest()[:12]

    if fields.get("args") is not None:
        fields["args"] = salted(fields["args"])
    env = fields.get("environment")
    if isinstance(env, dict):
        fields["environment"] = {k: salted(v) for k, v in env.items()}
    return fields


def changed_fields(old_label: str | None, spec: ContainerSpec) -> list[str]:
    """The names of settings that differ between a container's config label and ``spec``."""
    try:
        old = json.loads(old_label or "")
    except ValueError:
        old = None
    if not isinstance(old, dict):
        return ["configuration (the container has no readable configuration label)"]
    new = stored_config(spec)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def resource_labels(spec: ContainerSpec, host_ports: Mapping[str, int]) -> dict[str, str]:
    """Every label of a resource's container. Environment values never enter a label."""
    return {
        MANAGED: "true",
        KIND: "container",
        APP_ID: spec.app_id,
        APP_NAME: spec.app_name,
        RESOURCE: spec.resource_name,
        SESSION: spec.session_id,
        LIFETIME: spec.lifetime,
        CONFIG_HASH: spec.config_hash(),
        CONFIG: json.dumps(stored_config(spec), sort_keys=True),
        ENV_NAMES: ",".join(sorted(spec.environment)),
        HOST_PORT: json.dumps(dict(host_ports), sort_keys=True),
        **creator_labels(),
    }


def _is_port_error(message: str) -> bool:
    return any(
        hint in message
        for hint in ("port is already allocated", "address already in use", "bind: ")
    )


def _api_message(exc: BaseException) -> str:
    """The engine's own explanation from an ``APIError``, else the exception text."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation if explanation else exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


# --------------------------------------------------------------------------- log streaming


class _LogPump:
    """Reads one container's stdout and stderr on two threads and hands lines to ``on_line``."""

    def __init__(self, api: Any, container_id: str, on_line: LineSink, tail: str | int) -> None:
        self._api = api
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self.threads = [
            threading.Thread(
                target=self._pump,
                args=(container_id, name, on_line, tail),
                name=f"apphost-logs-{container_id[:12]}-{name}",
                daemon=True,
            )
            for name in ("stdout", "stderr")
        ]
        for t in self.threads:
            t.start()

    def _pump(self, container_id: str, name: str, on_line: LineSink, tail: str | int) -> None:
        try:
            stream = self._api.logs(
                container_id,
                stdout=name == "stdout",
                stderr=name == "stderr",
                stream=True,
                follow=True,
                tail=tail,
            )
        except Exception as exc:  # the container may already be gone
            log.debug("log stream %s of %s not opened: %s", name, container_id[:12], exc)
            return
        with self._lock:
            if self._closed:
                _close_quietly(stream)
                return
            self._streams.append(stream)
        for line in _lines(stream):
            try:
                on_line(name, line)
            except Exception:  # a failing sink must not kill the reader
                log.exception("log sink failed")

    def running(self) -> bool:
        """True while a stream is still open (the container has not stopped)."""
        return any(t.is_alive() for t in self.threads)

    def close(self, wait: float = 1.0) -> None:
        """Close the streams and wait briefly for the threads."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for s in streams:
            _close_quietly(s)
        deadline = time.monotonic() + wait
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.close()


def _lines(chunks: Any) -> Iterator[str]:
    """Split a stream of raw byte chunks into decoded lines (the last one even without ``\\n``),
    each at most ``MAX_LINE_BYTES`` long: a longer one arrives in pieces, as Docker cuts them."""
    from .lines import MAX_LINE_BYTES, LineSplitter

    splitter = LineSplitter(MAX_LINE_BYTES)
    try:
        for chunk in chunks:
            yield from splitter.feed(chunk)
    except Exception as exc:  # closed under us at shutdown, or the engine went away
        log.debug("log stream ended: %s", exc)
    yield from splitter.finish()


# --------------------------------------------------------------------------- the run network


class _Attachment:
    """Joins a started container to the run's network under its resource name, on a thread."""

    #: Seconds to wait for the join before giving up.
    TIMEOUT = 60.0

    def __init__(self, runtime: DockerRuntime, container_id: str, network: str, alias: str):
        self._error: str | None = None
        self._what = f"container {container_id[:12]} -> network {network} as {alias!r}"
        self._thread = threading.Thread(
            target=self._run,
            args=(runtime, container_id, network, alias),
            name=f"apphost-attach-{alias}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, runtime: DockerRuntime, container_id: str, network: str, alias: str) -> None:
        try:
            runtime.attach(container_id, network, alias)
        except Exception as exc:
            self._error = _api_message(exc)

    def wait(self, raise_error: bool = True) -> None:
        """Wait for the join; raise ``ResourceStartError`` when it failed (if asked)."""
        self._thread.join(self.TIMEOUT)
        if not raise_error:
            return
        if self._thread.is_alive():
            raise ResourceStartError(f"{self._what}: the engine did not answer in time")
        if self._error is not None:
            raise ResourceStartError(f"{self._what} failed: {self._error}")


# --------------------------------------------------------------------------- the handle


class DockerHandle(ContainerHandle):
    """A started container: where to reach it and how to stop it."""

    def __init__(
        self,
        runtime: DockerRuntime,
        spec: ContainerSpec,
        container_id: str,
        host_ports: Mapping[str, int],
        pump: _LogPump,
        attach: _Attachment | None,
        *,
        reused: bool = False,
        changed: Sequence[str] = (),
    ) -> None:
        self._runtime = runtime
        self._spec = spec
        self._pump = pump
        self._attachment = attach
        self._exit_code: int | None = None
        self._stopped = False
        self.container_id = container_id
        self.resource_name = spec.resource_name
        self.host = "127.0.0.1"
        self.host_ports = dict(host_ports)
        self.in_container = True
        self.lifetime = spec.lifetime
        #: True when an existing persistent container was reused (started or already running).
        self.reused = reused
        #: The settings whose change made a persistent container be recreated.
        self.changed = tuple(changed)
        #: This run's record in the in-use registry (removed when it lets the container go).
        self.claim: Path | None = None

    def wait_attached(self) -> None:
        """Wait until the container has joined the run's network under its resource name.

        Persistent containers join after their start, on a background thread (the join is slow
        on some engines and host processes never need it); whoever hands the name to another
        container calls this first. Raises ``ResourceStartError`` when the join failed.
        """
        if self._attachment is not None:
            self._attachment.wait()

    def describe(self) -> str:
        """E.g. ``container 1a2b3c4d5e6f``."""
        return f"container {self.container_id[:12]}"

    def exit_code(self) -> int | None:
        """None while the container runs; its exit code once it has stopped.

        Cheap while running: the log streams end when the container stops, and only then is
        the engine asked for the code.
        """
        if self._exit_code is not None:
            return self._exit_code
        if self._pump.running() and not self._stopped:
            return None
        try:
            state = self._runtime.api.inspect_container(self.container_id)["State"]
        except Exception:
            return -1 if self._stopped else None
        if state.get("Running"):
            return None
        self._exit_code = int(state.get("ExitCode", -1))
        return self._exit_code

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Let the container go at the end of the run.

        A session container gets SIGTERM, SIGKILL after the grace period, and is removed. A
        persistent one is left running, as in Aspire (the next run reuses it as it is; only
        ``apphost down --volumes`` removes it), and is only detached from the run's network.
        Either way this run's in-use record goes.
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._attachment is not None:
                self._attachment.wait(raise_error=False)
            if self.lifetime == "persistent":
                self._runtime.let_go(self.container_id, self._spec)
            else:
                code = self._runtime.stop_container(self.container_id, self._spec, grace_seconds)
                if self._exit_code is None:
                    self._exit_code = code
        finally:
            self._pump.close()
            in_use.release(self.claim)
            self._runtime.forget(self)


# --------------------------------------------------------------------------- the runtime


class DockerRuntime(ContainerRuntime):
    """Container resources on a Docker (or Podman) engine."""

    def __init__(self, engine: Engine, announce: Announce | None = None) -> None:
        self.engine = engine
        self.name = engine.kind
        self.api = engine.client.api
        self._announce: Announce = (
            announce if announce is not None else (lambda line: log.info("%s", line))
        )
        self._lock = threading.Lock()
        self._networks: dict[tuple[str, str], str] = {}
        self._images_ready: set[str] = set()
        self._handles: list[DockerHandle] = []
        self._gateway: str | None = None

    # ---- description and set-up

    def describe(self) -> str:
        """E.g. ``docker engine 20.10.24 (API 1.41) at unix:///var/run/docker.sock (...)``."""
        return self.engine.describe()

    def prepare(self, images: Sequence[str], progress: Callable[[str], None]) -> None:
        """Pull every missing image in parallel, with progress."""
        refs = sorted(set(images))
        missing = [r for r in refs if not self._image_present(r)]
        if missing:
            progress(f"pulling {len(missing)} image(s): {', '.join(missing)}")
            with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
                failures = [
                    e
                    for e in pool.map(lambda r: self._pull_collect(r, progress), missing)
                    if e is not None
                ]
            if failures:
                raise ImageUnavailableError("\n".join(str(f) for f in failures))

    def host_gateway(self) -> str | None:
        """The default bridge's gateway address (what ``host-gateway`` maps to), when it is an
        address of this machine (not with a remote engine, a VM or rootless networking).

        The engine lists it only when it was configured explicitly; otherwise it is the
        first address of the bridge's IPv4 subnet, as the engine assigns it.
        """
        if self._gateway is None:
            with contextlib.suppress(Exception):
                config = self.api.inspect_network("bridge")["IPAM"]["Config"] or []
                gateway = next(
                    (c["Gateway"] for c in config if c.get("Gateway") and ":" not in c["Gateway"]),
                    None,
                ) or next(
                    (
                        _first_host(c["Subnet"])
                        for c in config
                        if c.get("Subnet") and ":" not in c["Subnet"]
                    ),
                    None,
                )
                if gateway is not None and _is_local_address(gateway):
                    self._gateway = gateway
        return self._gateway

    def image_present(self, ref: str) -> bool:
        """True when the engine has the image ``ref`` locally."""
        return self._image_present(ref)

    def _image_present(self, ref: str) -> bool:
        if ref in self._images_ready:
            return True
        import docker

        try:
            self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.NotFound:
            return False
        self._images_ready.add(ref)
        return True

    def _pull_collect(
        self, ref: str, progress: Callable[[str], None]
    ) -> ImageUnavailableError | None:
        try:
            self.pull(ref, progress)
        except ImageUnavailableError as exc:
            return exc
        return None

    def pull(self, ref: str, progress: Callable[[str], None]) -> None:
        """Pull one image, reporting progress; errors inside the stream are detected."""
        repository, tag = _split_ref(ref)
        try:
            events = self.api.pull(repository, tag=tag, stream=True, decode=True)
            _follow_pull(ref, events, progress)
        except ImageUnavailableError:
            raise
        except Exception as exc:
            raise _image_error(ref, _api_message(exc)) from None
        self._images_ready.add(ref)
        progress(f"pulled {ref}")

    def build(self, spec: ContainerSpec, on_line: LineSink) -> None:
        """Build ``spec.image_ref`` from ``spec.build`` unless an image of that reference (whose
        tag is a hash of the build context) exists; build output goes to ``on_line``."""
        assert spec.build is not None
        if self._image_present(spec.image_ref):
            on_line("stdout", f"image {spec.image_ref} is up to date")
            return
        on_line("stdout", f"building {spec.image_ref} from {spec.build.context}")
        try:
            events = self.api.build(
                path=str(spec.build.context),
                dockerfile=spec.build.dockerfile,
                tag=spec.image_ref,
                rm=True,
                forcerm=True,
                decode=True,
                labels={MANAGED: "true", APP_ID: spec.app_id, RESOURCE: spec.resource_name},
            )
            for event in events:
                if not isinstance(event, dict):
                    continue
                if event.get("error") or event.get("errorDetail"):
                    detail = event.get("errorDetail") or {}
                    message = str(event.get("error") or detail.get("message") or "build failed")
                    raise ResourceStartError(
                        f"resource {spec.resource_name!r}: building its image failed: "
                        f"{message.strip()}"
                    )
                text = str(event.get("stream") or event.get("status") or "").rstrip("\n")
                for line in text.splitlines():
                    if line.strip():
                        on_line("stdout", line)
        except ResourceStartError:
            raise
        except Exception as exc:
            raise ResourceStartError(
                f"resource {spec.resource_name!r}: building its image failed: {_api_message(exc)}"
            ) from None
        self._images_ready.add(spec.image_ref)

    def _ensure_network(self, app_name: str, app_id: str, session_id: str) -> str:
        """Create the run's network once (labelled like the containers); returns its name."""
        key = (app_id, session_id)
        with self._lock:
            if key in self._networks:
                return self._networks[key]
            name = network_name(app_id, session_id)
            labels = {
                MANAGED: "true",
                KIND: "network",
                APP_ID: app_id,
                APP_NAME: app_name,
                SESSION: session_id,
                LIFETIME: "session",
                **creator_labels(),
            }
            import docker

            try:
                # The engine accepts a second network of the same name unless told to check,
                # and a name that matches two networks can no longer be used.
                self.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
            self._networks[key] = name
            return name

    # ---- start

    def start(self, spec: ContainerSpec, on_line: LineSink) -> DockerHandle:
        """Start (or reuse, when persistent) the resource's container and stream its logs."""
        try:
            if spec.build is not None:
                self.build(spec, on_line)
            elif not self._image_present(spec.image_ref):
                self.pull(spec.image_ref, lambda line: on_line("stderr", line))
            network = (
                self._ensure_network(spec.app_name, spec.app_id, spec.session_id)
                if spec.network
                else None
            )
            if spec.lifetime == "persistent":
                handle = self._start_persistent(spec, network, on_line)
            else:
                handle = self._create_and_start(spec, network, on_line, _fixed_ports(spec))
        except (ResourceStartError, ImageUnavailableError):
            raise
        except Exception as exc:
            raise ResourceStartError(
                f"resource {spec.resource_name!r}: the container engine refused it: "
                f"{_api_message(exc)}"
            ) from None
        handle.claim = in_use.claim(
            handle.container_id,
            name=spec.container_name or container_name(spec),
            app_id=spec.app_id,
            resource=spec.resource_name,
            state_dir=spec.state_dir,
            volumes=[volume_name(spec, m) for m in spec.mounts if m.kind == "volume"],
        )
        with self._lock:
            self._handles.append(handle)
        return handle

    def _check_fixed_ports(self, spec: ContainerSpec, ports: Mapping[str, int]) -> None:
        """Fail before creating anything when a fixed host port is taken."""
        for port in ports.values():
            if not port_is_free(port):
                raise ResourceStartError(
                    f"resource {spec.resource_name!r}: host port {port} on 127.0.0.1 is already "
                    "in use; stop what listens there or choose another port for it "
                    "(with_host_port() or the endpoint's port=)"
                )

    def _create_and_start(
        self,
        spec: ContainerSpec,
        network: str | None,
        on_line: LineSink,
        keep: Mapping[str, int],
        changed: Sequence[str] = (),
    ) -> DockerHandle:
        """Create, then start; dynamic ports lost to a race are retried with fresh ones.

        ``keep`` maps endpoint names to the host ports they must have (fixed ones, or those a
        recreated persistent container keeps).
        """
        self._check_fixed_ports(spec, keep)
        self._ensure_volumes(spec)
        last_error = ""
        dynamic = any(p.name not in keep for p in spec.ports)
        for _ in range(PORT_ATTEMPTS if dynamic else 1):
            ports = {p.name: keep.get(p.name) or free_port() for p in spec.ports}
            persistent = spec.lifetime == "persistent"
            container_id = self._create(spec, ports, None if persistent else network)
            try:
                self.api.start(container_id)
            except Exception as exc:
                self._remove(container_id)
                last_error = _api_message(exc)
                if dynamic and _is_port_error(last_error):
                    continue
                raise ResourceStartError(
                    f"resource {spec.resource_name!r}: its container did not start "
                    f"(removed): {last_error}"
                ) from None
            attach = (
                _Attachment(self, container_id, network, spec.resource_name)
                if persistent and network is not None
                else None
            )
            pump = _LogPump(self.api, container_id, on_line, "all")
            return DockerHandle(self, spec, container_id, ports, pump, attach, changed=changed)
        raise ResourceStartError(
            f"resource {spec.resource_name!r}: no free host port could be published: {last_error}"
        )

    def _create(self, spec: ContainerSpec, ports: Mapping[str, int], network: str | None) -> str:
        """Create (not start) the container.

        A session container is created on the run's network with its resource name as alias,
        so other containers resolve it from their first instant; a persistent one on the
        engine's default bridge, joining the run's network after its start (``_Attachment``),
        so it outlives that network.
        """
        options = dict(spec.options)
        extra_hosts = {HOST_GATEWAY_NAME: "host-gateway", **options.pop("extra_hosts", {})}
        labels = {**options.pop("labels", {}), **resource_labels(spec, ports)}
        user = options.pop("user", None)
        # Endpoints may share a target port (``docker run -p A:80 -p B:80``): each is bound.
        bindings: dict[str, list[tuple[str, int]]] = {}
        for p in spec.ports:
            bindings.setdefault(f"{p.target_port}/tcp", []).append(("127.0.0.1", ports[p.name]))
        host_config = self.api.create_host_config(
            port_bindings=bindings,
            binds=self._binds(spec) or None,
            network_mode=network or "bridge",
            extra_hosts=extra_hosts,
            **options,
        )
        networking = None
        if network is not None:
            networking = self.api.create_networking_config(
                {network: self.api.create_endpoint_config(aliases=[spec.resource_name])}
            )
        created = self.api.create_container(
            spec.image_ref,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            command=list(spec.args) if spec.args is not None else None,
            environment=dict(spec.environment),
            labels=labels,
            name=spec.container_name or container_name(spec),
            ports=sorted({(p.target_port, "tcp") for p in spec.ports}),
            host_config=host_config,
            networking_config=networking,
            user=user,
        )
        return str(created["Id"])

    def _binds(self, spec: ContainerSpec) -> list[str]:
        binds = []
        for m in spec.mounts:
            mode = "ro" if m.read_only else "rw"
            if m.kind == "bind":
                source = Path(m.source or "")  # absolute: the model resolves it
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)
                binds.append(f"{source}:{m.target}:{mode}")
            else:
                binds.append(f"{volume_name(spec, m)}:{m.target}:{mode}")
        return binds

    def _ensure_volumes(self, spec: ContainerSpec) -> None:
        """Create the volumes (labelled, never session objects) that do not exist yet."""
        import docker

        for m in spec.mounts:
            if m.kind != "volume":
                continue
            name = volume_name(spec, m)
            try:
                self.api.inspect_volume(name)
            except docker.errors.NotFound:
                labels = {
                    MANAGED: "true",
                    KIND: "volume",
                    APP_ID: spec.app_id,
                    APP_NAME: spec.app_name,
                    RESOURCE: spec.resource_name,
                }
                self.api.create_volume(name, labels=labels)

    def attach(self, container_id: str, network: str, alias: str) -> None:
        """Connect a container to the run's network under its resource name (idempotent)."""
        import docker

        try:
            self.api.connect_container_to_network(container_id, network, aliases=[alias])
        except docker.errors.APIError as exc:
            if "already exists" not in _api_message(exc):
                raise

    # ---- persistent containers

    def _start_persistent(
        self, spec: ContainerSpec, network: str | None, on_line: LineSink
    ) -> DockerHandle:
        """Reuse the app's persistent container when its configuration hash matches; recreate
        it (saying which settings changed, keeping its host ports when possible) otherwise."""
        existing = self._find_persistent(spec)
        fixed = _fixed_ports(spec)
        if existing is None:
            return self._create_and_start(spec, network, on_line, fixed)
        labels = existing.get("Labels") or {}
        old_ports = _label_ports(labels.get(HOST_PORT), spec)
        matches = labels.get(CONFIG_HASH) == spec.config_hash() and old_ports is not None
        if matches and old_ports is not None:
            stopped = existing.get("State") != "running"
            taken = [
                port
                for name, port in old_ports.items()
                if name not in fixed and not port_is_free(port)
            ]
            if not (stopped and taken):
                return self._reuse(spec, existing, old_ports, network, on_line)
            # Its dynamic port was taken while it was stopped: recreate it on a new one.
            self._refuse_if_in_use(spec, existing, "its host port changes")
            self._announce(
                f"{spec.resource_name}: port {taken[0]} of its stopped persistent container is "
                "now used by another program; recreating it on a new port"
            )
            self._remove(str(existing["Id"]))
            return self._create_and_start(spec, network, on_line, fixed, changed=["host port"])
        # Same hash but unreadable ports: a label of an older format, say so, not "()".
        changed = changed_fields(labels.get(CONFIG), spec) or ["host port (unreadable label)"]
        self._refuse_if_in_use(spec, existing, f"its configuration differs ({', '.join(changed)})")
        self._announce(
            f"{spec.resource_name}: configuration changed ({', '.join(changed)}); "
            "recreating its persistent container"
        )
        self._remove(str(existing["Id"]))
        keep = dict(fixed)
        for name, port in (old_ports or {}).items():
            if name not in keep and port_is_free(port):
                keep[name] = port
        return self._create_and_start(spec, network, on_line, keep, changed=changed)

    def _refuse_if_in_use(self, spec: ContainerSpec, existing: Mapping[str, Any], why: str) -> None:
        """Never recreate a persistent container that another live app host still uses (an
        app host of the same app with another state folder, so another password): say who."""
        container_id = str(existing["Id"])
        users = in_use.users([container_id])
        if not users:
            return
        from .cleanup import stop_hint

        user = users[0]
        raise ResourceStartError(
            f"resource {spec.resource_name!r}: its persistent container {container_id[:12]} "
            f"must be recreated ({why}), but the app host pid {user.pid} uses it; "
            f"{stop_hint(user.pid, user.state_dir, os.environ)}; or give both the same settings"
        )

    def _find_persistent(self, spec: ContainerSpec) -> dict[str, Any] | None:
        """The persistent container of this app and resource, if any (newest first)."""
        found = self.api.containers(
            all=True,
            filters={
                "label": [
                    f"{MANAGED}=true",
                    f"{APP_ID}={spec.app_id}",
                    f"{RESOURCE}={spec.resource_name}",
                    f"{LIFETIME}=persistent",
                ]
            },
        )
        if not found:
            return None
        for extra in found[1:]:  # more than one should not happen; keep the newest
            self._remove(str(extra["Id"]))
        return dict(found[0])

    def _reuse(
        self,
        spec: ContainerSpec,
        existing: Mapping[str, Any],
        ports: Mapping[str, int],
        network: str | None,
        on_line: LineSink,
    ) -> DockerHandle:
        """Attach a matching persistent container to this run and start it if it is stopped."""
        container_id = str(existing["Id"])
        running = existing.get("State") == "running"
        if not running:
            self._check_fixed_ports(spec, ports)
            try:
                self.api.start(container_id)
            except Exception as exc:
                raise ResourceStartError(
                    f"resource {spec.resource_name!r}: its persistent container "
                    f"{container_id[:12]} did not restart: {_api_message(exc)}"
                ) from None
        shown = ", ".join(str(p) for p in ports.values())
        self._announce(
            f"{spec.resource_name}: reusing persistent container {container_id[:12]} "
            f"({'running' if running else 'restarted'}, port {shown})"
        )
        attach = (
            _Attachment(self, container_id, network, spec.resource_name)
            if network is not None
            else None
        )
        pump = _LogPump(self.api, container_id, on_line, 0 if running else "all")
        return DockerHandle(self, spec, container_id, ports, pump, attach, reused=True)

    # ---- stop, cleanup, close

    def stop_container(self, container_id: str, spec: ContainerSpec, grace: float) -> int | None:
        """Stop a session container, remove it, and return its exit code."""
        with contextlib.suppress(Exception):
            self.api.stop(container_id, timeout=max(0, math.ceil(grace)))
        code: int | None = None
        with contextlib.suppress(Exception):
            code = int(self.api.inspect_container(container_id)["State"]["ExitCode"])
        self._remove(container_id)
        return code

    def let_go(self, container_id: str, spec: ContainerSpec) -> None:
        """Leave a persistent container running, detached from the run's network so that
        network can go (the next run joins it to its own)."""
        network = self._networks.get((spec.app_id, spec.session_id))
        if network:
            with contextlib.suppress(Exception):
                self.api.disconnect_container_from_network(container_id, network, force=True)

    def forget(self, handle: DockerHandle) -> None:
        """Drop a stopped handle from the ones ``close`` would stop."""
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)

    def _remove(self, container_id: str) -> None:
        with contextlib.suppress(Exception):
            self.api.remove_container(container_id, force=True, v=True)

    def cleanup_orphans(self) -> list[str]:
        """Remove session containers and networks whose creator process is gone, and the
        in-use records of app hosts that are gone."""
        from .cleanup import remove_orphans

        in_use.prune()
        return remove_orphans(self.api)

    def close(self) -> None:
        """Stop what is still running from this run, remove the run's networks, close the client."""
        with self._lock:
            handles = list(self._handles)
        for h in handles:
            h.stop(grace_seconds=2.0)
        with self._lock:
            networks = list(self._networks.values())
            self._networks.clear()
        from .cleanup import remove_network

        for name in networks:
            remove_network(self.api, name)
        with contextlib.suppress(Exception):
            self.engine.client.close()


# --------------------------------------------------------------------------- images


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a colon in a registry host's port is not a tag."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _image_error(ref: str, reason: str) -> ImageUnavailableError:
    return ImageUnavailableError(
        f"image {ref} is not available locally and could not be pulled ({reason}); "
        "pull or build it yourself, choose an image you have with with_image(...), or set "
        "APPHOST_CONTAINER_RUNTIME=process to run it as a local process where its resource "
        "type allows"
    )


def _follow_pull(ref: str, events: Any, progress: Callable[[str], None]) -> None:
    """Consume a pull's decoded event stream: report progress, raise on an ``error`` event.

    The engine answers 200 and reports failures inside the stream, so the stream must be read
    to the end and checked.
    """
    layers: dict[str, tuple[int, int]] = {}
    last_report = 0.0
    for event in events:
        if not isinstance(event, dict):
            continue
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            message = event.get("error") or detail.get("message") or "pull failed"
            raise _image_error(ref, str(message).strip())
        layer = event.get("id")
        detail = event.get("progressDetail") or {}
        if layer and detail.get("total"):
            layers[str(layer)] = (int(detail.get("current", 0)), int(detail["total"]))
        now = time.monotonic()
        if layers and now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            done = sum(c for c, _ in layers.values())
            total = sum(t for _, t in layers.values())
            progress(f"pulling {ref}: {done / 1e6:.1f} / {total / 1e6:.1f} MB")


def _first_host(subnet: str) -> str:
    """The first host address of an IPv4 subnet (``172.17.0.0/16`` gives ``172.17.0.1``)."""
    import ipaddress

    return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))


def _is_local_address(address: str) -> bool:
    """True when a server on this machine can listen on ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def _fixed_ports(spec: ContainerSpec) -> dict[str, int]:
    """The endpoints whose host port the app fixed."""
    return {p.name: p.host_port for p in spec.ports if p.host_port is not None}


def _label_ports(value: object, spec: ContainerSpec) -> dict[str, int] | None:
    """The host ports recorded in a container's label, when they cover ``spec``'s endpoints."""
    try:
        ports = json.loads(str(value))
    except ValueError:
        return None
    if not isinstance(ports, dict) or set(ports) != {p.name for p in spec.ports}:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ports.values()):
        return None
    return {str(k): int(v) for k, v in ports.items()}
