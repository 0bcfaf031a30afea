"""A third-party integration, written as a package outside ``apphost_sdk`` would write it: a
memcached-compatible key-value server (the offline test image ``apphost-test/kv:1``).

It uses only public names of the SDK: it subclasses ``ContainerResource``, describes itself with
annotations (endpoint, health probe, reference variables) and adds itself with
``builder.add_resource``. Nothing of the SDK is patched, and the orchestrator knows nothing of
it::

    from kv_integration import add_key_value

    kv = add_key_value(builder, "kv").with_max_memory(32)
    builder.add_python_app("api", "api", "app.py").with_reference(kv).wait_for(kv)

A reference injects ``ConnectionStrings__{name}`` (``host:port``), ``{NAME}_HOST`` and
``{NAME}_PORT``, resolved for each consumer (``localhost`` and the host port for a process on
this machine; the resource name and 11211 for a container on the app's network).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from apphost_sdk.model.annotations import HealthCheckAnnotation, ReferenceEnvironmentAnnotation
from apphost_sdk.model.builder import DistributedApplicationBuilder
from apphost_sdk.model.containers import ContainerResource
from apphost_sdk.model.values import HealthProbeContext, ReferenceContext

KV_IMAGE = "apphost-test/kv"
KV_TAG = "1"
KV_PORT = 11211
ENDPOINT = "tcp"


def memcached_version(host: str, port: int, timeout: float = 1.0) -> str | None:
    """The server's answer to the memcached ``version`` command (``1.6.18``), or None when it
    does not answer it (not listening yet, or a port that accepts but is not memcached)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"version\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    if not reply.startswith(b"VERSION ") or not reply.endswith(b"\r\n"):
        return None
    return reply[len(b"VERSION ") :].strip().decode("ascii", "replace")


def _probe(context: HealthProbeContext) -> bool:
    """Healthy once the server answers ``version`` (a TCP connect is not enough: the engine's
    port proxy accepts connections before the server inside listens)."""
    return memcached_version(context.host, context.port) is not None


def _env_prefix(connection_name: str) -> str:
    return connection_name.upper().replace("-", "_")


class KeyValueResource(ContainerResource):
    """A memcached-compatible key-value server run as a container."""

    kind = "key-value"

    def __init__(
        self, builder: DistributedApplicationBuilder, name: str, port: int | None = None
    ) -> None:
        super().__init__(builder, name, KV_IMAGE, KV_TAG)
        self.with_endpoint(KV_PORT, name=ENDPOINT, port=port)
        self.add_annotation(HealthCheckAnnotation("probe", ENDPOINT, probe=_probe))
        self.add_annotation(ReferenceEnvironmentAnnotation(self._reference_environment))

    def with_max_memory(self, megabytes: int) -> KeyValueResource:
        """Limit the cache to ``megabytes`` MB (memcached ``-m``); the arguments replace the
        image's command, so the port and listen address are given again."""
        if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 1:
            raise ValueError(
                f"{self.name}.with_max_memory: megabytes must be a whole number of at least 1, "
                f"got {megabytes!r}; pass e.g. with_max_memory(64)"
            )
        self.with_args("-p", str(KV_PORT), "-l", "0.0.0.0", "-m", str(megabytes))
        return self

    def _reference_environment(
        self, context: ReferenceContext, connection_name: str
    ) -> Mapping[str, str]:
        endpoint = context.endpoint(self, ENDPOINT)
        prefix = _env_prefix(connection_name)
        return {
            f"ConnectionStrings__{connection_name}": f"{endpoint.host_for_url}:{endpoint.port}",
            f"{prefix}_HOST": endpoint.host,
            f"{prefix}_PORT": str(endpoint.port),
        }


def add_key_value(
    builder: DistributedApplicationBuilder, name: str, port: int | None = None
) -> KeyValueResource:
    """Add a key-value server called ``name`` (on the fixed host port ``port``, else a free
    one) to ``builder``."""
    return builder.add_resource(KeyValueResource(builder, name, port))
