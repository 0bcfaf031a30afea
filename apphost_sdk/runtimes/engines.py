"""Finding a container engine the way the ``docker`` CLI does, and saying what was tried.

Order (docker CLI semantics, extended with the well-known sockets so ``auto`` finds an engine
wherever one runs):

1. ``DOCKER_HOST`` when set (the CLI then uses nothing else, and neither do we);
2. the current docker context (``DOCKER_CONTEXT``, else ``currentContext`` in
   ``$DOCKER_CONFIG/config.json``), read from ``contexts/meta/<sha256(name)>/meta.json``;
3. the default socket ``/var/run/docker.sock``, the rootless socket
   ``$XDG_RUNTIME_DIR/docker.sock`` and Docker Desktop's ``~/.docker/run/docker.sock``;
4. Podman's Docker-compatible sockets (``CONTAINER_HOST``, ``$XDG_RUNTIME_DIR/podman/podman.sock``,
   ``/run/podman/podman.sock``).

Every candidate that does not answer is recorded with the reason, so an error can name them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

EngineKind = Literal["docker", "podman"]
#: ``any`` accepts the first engine that answers, Docker or Podman.
Wanted = Literal["docker", "podman", "any"]

DEFAULT_SOCKET = "/var/run/docker.sock"
PODMAN_ROOTFUL_SOCKET = "/run/podman/podman.sock"
#: Seconds to wait for one candidate's answer while probing.
PROBE_TIMEOUT = 3.0
#: Seconds for API calls once an engine is chosen (stopping a container can take its grace time).
CLIENT_TIMEOUT = 120
#: Parallel API connections (each container holds two log streams).
MAX_POOL_SIZE = 64


@attrs.frozen
class EngineCandidate:
    """One endpoint that might answer: its URL, where the URL came from, and the engine kind."""

    url: str
    source: str
    kind: EngineKind
    tls: Mapping[str, Any] | None = None

    def describe(self) -> str:
        """E.g. ``unix:///var/run/docker.sock (default socket)``."""
        return f"{self.url} ({self.source})"


@attrs.frozen
class Attempt:
    """A candidate that did not answer, and why."""

    candidate: EngineCandidate
    reason: str

    def describe(self) -> str:
        """E.g. ``unix:///var/run/docker.sock (default socket): no socket there``."""
        return f"{self.candidate.describe()}: {self.reason}"


@attrs.frozen
class Engine:
    """An engine that answered: the candidate, a ready ``docker.DockerClient`` and its version."""

    candidate: EngineCandidate
    client: Any
    version: str
    api_version: str

    @property
    def kind(self) -> EngineKind:
        """``docker`` or ``podman`` (from the version the engine reports)."""
        return self.candidate.kind

    def describe(self) -> str:
        """One line, e.g. ``docker engine 20.10.24 (API 1.41) at unix:///var/run/docker.sock``."""
        return (
            f"{self.kind} engine {self.version} (API {self.api_version}) at "
            f"{self.candidate.describe()}"
        )


@attrs.frozen
class Discovery:
    """The result of a search: the engine found (or None) and every attempt that failed."""

    engine: Engine | None
    attempts: tuple[Attempt, ...]

    def tried(self) -> str:
        """The failed attempts as one ``; ``-separated phrase for error messages."""
        if not self.attempts:
            return "no candidate endpoint"
        return "; ".join(a.describe() for a in self.attempts)


def start_hint(wanted: Wanted) -> str:
    """How to start an engine of the wanted kind, for error messages."""
    docker = (
        "start Docker (Docker Desktop, `sudo systemctl start docker`, or `sudo dockerd &`; "
        "on Debian `sudo apt-get install docker.io` first)"
    )
    podman = (
        "start Podman's API socket (`systemctl --user start podman.socket` or "
        "`podman system service --time=0 &`)"
    )
    if wanted == "docker":
        return docker
    if wanted == "podman":
        return podman
    return f"{docker}, or {podman}"


def _docker_config_dir(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG`` or ``~/.docker``, as the CLI reads it."""
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return Path(configured).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker"


def _current_context(env: Mapping[str, str], config_dir: Path) -> str | None:
    """The context the CLI would use: ``DOCKER_CONTEXT`` or ``currentContext`` in config.json."""
    name = env.get("DOCKER_CONTEXT")
    if name:
        return name
    try:
        config = json.loads((config_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("currentContext") if isinstance(config, dict) else None
    return value if isinstance(value, str) and value else None


def context_candidate(env: Mapping[str, str]) -> EngineCandidate | None:
    """The endpoint of the current docker context, or None for ``default``/no context.

    The CLI stores a context under ``contexts/meta/<sha256 of its name>/meta.json`` with the
    endpoint in ``Endpoints.docker.Host`` and TLS material under ``contexts/tls/<same hash>``.
    """
    config_dir = _docker_config_dir(env)
    name = _current_context(env, config_dir)
    if not name or name == "default":
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()
    source = f"docker context {name!r}"
    try:
        meta = json.loads((config_dir / "contexts" / "meta" / digest / "meta.json").read_text())
        endpoint = meta["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        return EngineCandidate(url=f"context:{name}", source=f"{source}, unreadable", kind="docker")
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    tls: dict[str, Any] | None = None
    if tls_dir.is_dir():
        tls = {
            "ca": str(tls_dir / "ca.pem"),
            "cert": str(tls_dir / "cert.pem"),
            "key": str(tls_dir / "key.pem"),
            "verify": not bool(endpoint.get("SkipTLSVerify")),
        }
    kind: EngineKind = "podman" if "podman" in host else "docker"
    return EngineCandidate(url=host, source=source, kind=kind, tls=tls)


def _unix(path: str) -> str:
    return f"unix://{path}"


def docker_candidates(env: Mapping[str, str]) -> list[EngineCandidate]:
    """Docker endpoints in the CLI's order; ``DOCKER_HOST`` alone when it is set."""
    host = env.get("DOCKER_HOST")
    if host:
        kind: EngineKind = "podman" if "podman" in host else "docker"
        return [EngineCandidate(url=host, source="DOCKER_HOST", kind=kind)]
    out: list[EngineCandidate] = []
    ctx = context_candidate(env)
    if ctx is not None:
        out.append(ctx)
    out.append(EngineCandidate(_unix(DEFAULT_SOCKET), "default socket", "docker"))
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        out.append(
            EngineCandidate(_unix(f"{runtime_dir}/docker.sock"), "rootless socket", "docker")
        )
    desktop = _docker_config_dir(env) / "run" / "docker.sock"
    out.append(EngineCandidate(_unix(str(desktop)), "Docker Desktop socket", "docker"))
    return out


def podman_candidates(env: Mapping[str, str]) -> list[EngineCandidate]:
    """Podman's Docker-compatible endpoints: ``CONTAINER_HOST``, then the user and root sockets."""
    out: list[EngineCandidate] = []
    host = env.get("CONTAINER_HOST")
    if host and host.startswith(("unix://", "tcp://")):
        out.append(EngineCandidate(url=host, source="CONTAINER_HOST", kind="podman"))
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        out.append(
            EngineCandidate(
                _unix(f"{runtime_dir}/podman/podman.sock"), "Podman user socket", "podman"
            )
        )
    out.append(EngineCandidate(_unix(PODMAN_ROOTFUL_SOCKET), "Podman system socket", "podman"))
    return out


def candidates(wanted: Wanted, env: Mapping[str, str]) -> list[EngineCandidate]:
    """Every endpoint to try for ``wanted``, without duplicates, in order."""
    if wanted == "docker":
        found = docker_candidates(env)
    elif wanted == "podman":
        found = podman_candidates(env)
        if env.get("DOCKER_HOST"):
            found = docker_candidates(env) + found
    else:
        found = docker_candidates(env)
        if not env.get("DOCKER_HOST"):
            found += podman_candidates(env)
    seen: set[str] = set()
    unique: list[EngineCandidate] = []
    for c in found:
        if c.url not in seen:
            seen.add(c.url)
            unique.append(c)
    return unique


def _tls_config(candidate: EngineCandidate, env: Mapping[str, str]) -> Any:
    """The ``docker.tls.TLSConfig`` for a candidate, or None (plain unix/tcp)."""
    import docker

    if candidate.source == "DOCKER_HOST":
        return docker.utils.kwargs_from_env(environment=dict(env)).get("tls")
    if candidate.tls is None:
        return None
    verify = bool(candidate.tls["verify"])
    ca = candidate.tls["ca"]
    return docker.tls.TLSConfig(
        client_cert=(candidate.tls["cert"], candidate.tls["key"]),
        ca_cert=ca if verify and Path(ca).exists() else None,
        verify=verify,
    )


def _probe(candidate: EngineCandidate, env: Mapping[str, str]) -> Engine | str:
    """Connect to one candidate: an ``Engine`` when it answers, else the reason it did not."""
    if candidate.url.startswith("context:"):
        return "the context's metadata cannot be read"
    if candidate.url.startswith("unix://"):
        path = candidate.url[len("unix://") :]
        if not os.path.exists(path):
            return "no socket there"
        if not os.access(path, os.R_OK | os.W_OK):
            return "permission denied (add your user to the docker group)"
    import docker

    try:
        client = docker.DockerClient(
            base_url=candidate.url,
            version="auto",
            timeout=PROBE_TIMEOUT,
            tls=_tls_config(candidate, env),
            max_pool_size=MAX_POOL_SIZE,
        )
        info = client.version()
    except Exception as exc:  # docker raises DockerException, requests and OS errors here
        return _short_reason(exc)
    client.api.timeout = CLIENT_TIMEOUT
    return _engine_from(candidate, client, info)


def _engine_from(candidate: EngineCandidate, client: Any, info: Mapping[str, Any]) -> Engine:
    """Build the ``Engine`` record, recognising Podman from its version components."""
    components = info.get("Components") or []
    names = " ".join(str(c.get("Name", "")) for c in components if isinstance(c, dict))
    kind: EngineKind = "podman" if "podman" in names.lower() else candidate.kind
    return Engine(
        candidate=attrs.evolve(candidate, kind=kind),
        client=client,
        version=str(info.get("Version", "?")),
        api_version=str(info.get("ApiVersion", "?")),
    )


def _short_reason(exc: BaseException) -> str:
    """One line from an exception, without the long nested urllib3 chains."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused (is the engine running?)"
    if "Permission denied" in text or "PermissionError" in text:
        return "permission denied (add your user to the docker group)"
    if "FileNotFoundError" in text or "No such file" in text:
        return "no socket there"
    return text[:200]


def find_engine(wanted: Wanted = "any", environ: Mapping[str, str] | None = None) -> Discovery:
    """Try each candidate in order; return the first engine that answers and all failures."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    attempts: list[Attempt] = []
    for candidate in candidates(wanted, env):
        result = _probe(candidate, env)
        if isinstance(result, Engine):
            if wanted == "podman" and result.kind != "podman":
                result.client.close()
                attempts.append(Attempt(candidate, f"answers, but it is {result.kind}"))
                continue
            return Discovery(engine=result, attempts=tuple(attempts))
        attempts.append(Attempt(candidate, result))
    return Discovery(engine=None, attempts=tuple(attempts))
