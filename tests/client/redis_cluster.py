"""A real local Redis Cluster for the client tests: three ``redis-server --cluster-enabled yes``
masters on loopback free ports, slots split with ``CLUSTER ADDSLOTSRANGE`` and joined with
``CLUSTER MEET``; plaintext with a password, or TLS under a CA made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apphost_sdk.files import write_private

from .redis_process import REDIS_SERVER, free_port

SLOTS = 16384


@attrs.frozen
class TlsFiles:
    """PEM files: a CA, and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(directory: Path, ip: str = "127.0.0.1") -> TlsFiles:
    """Write a fresh CA and a server certificate whose SAN is ``ip`` and ``localhost``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("apphost test CA"))
        .issuer_name(_name("apphost test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


class RedisClusterProcess:
    """``masters`` cluster-enabled redis-servers on 127.0.0.1 forming one cluster; ``stop``."""

    def __init__(
        self,
        *,
        password: str,
        tls: TlsFiles | None = None,
        masters: int = 3,
        first_port: int | None = None,
    ) -> None:
        """``first_port`` is the entry node's port (default: a free one)."""
        self._first_port = first_port
        self.host = "127.0.0.1"
        self.password = password
        self.tls = tls
        self._dir = tempfile.TemporaryDirectory(prefix="apphost-cluster-")
        self._procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.bus_ports: list[int] = []
        try:
            for i in range(masters):
                self._start_node(i)
            self._form_cluster()
        except BaseException:
            self.stop()
            raise

    # -- connection info ------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The entry node's port (as AMR's 10000)."""
        return self.ports[0]

    @property
    def connection_string(self) -> str:
        """StackExchange.Redis form with the password (TLS when this cluster has TLS)."""
        tls = ",ssl=true" if self.tls else ""
        return f"{self.host}:{self.port}{tls},password={self.password}"

    def node_kwargs(self) -> dict[str, Any]:
        """redis-py arguments (without host/port) that reach any node as the admin."""
        kwargs: dict[str, Any] = {"password": self.password, "socket_timeout": 5}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca_file))
        return kwargs

    def node(self, index: int) -> redis.Redis:
        """A plain client of one node (close it)."""
        return redis.Redis(host=self.host, port=self.ports[index], **self.node_kwargs())

    def each_node(self, *command: Any) -> None:
        """Run ``command`` on every node (ACL SETUSER, FLUSHALL, ...)."""
        for i in range(len(self.ports)):
            with self.node(i) as client:
                client.execute_command(*command)

    # -- lifecycle ------------------------------------------------------------------------
    def _start_node(self, index: int, attempts: int = 5) -> None:
        """Start node ``index``; ports are picked free, then bound by redis-server, so another
        process may take one in between: "Address already in use" retries with new ports."""
        folder = Path(self._dir.name) / f"node{index}"
        folder.mkdir()
        config = folder / "auth.conf"  # the password stays out of the process arguments
        write_private(config, f'requirepass "{self.password}"\nmasterauth "{self.password}"\n')
        for attempt in range(attempts):
            port, bus = free_port(), free_port()
            if index == 0 and attempt == 0 and self._first_port:
                port = self._first_port
            while bus == port:
                bus = free_port()
            proc, log = self._spawn_node(folder, config, port, bus)
            if self._wait_for_node(proc, log, port, retry=attempt + 1 < attempts):
                self._procs.append(proc)
                self.ports.append(port)
                self.bus_ports.append(bus)
                return
            (folder / "nodes.conf").unlink(missing_ok=True)

    def _spawn_node(
        self, folder: Path, config: Path, port: int, bus: int
    ) -> tuple[subprocess.Popen[bytes], Path]:
        args = [
            REDIS_SERVER,
            str(config),
            "--bind",
            self.host,
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus),
            "--cluster-config-file",
            str(folder / "nodes.conf"),
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ]
        if self.tls:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(self.tls.cert_file),
                "--tls-key-file",
                str(self.tls.key_file),
                "--tls-ca-cert-file",
                str(self.tls.ca_file),
                "--tls-auth-clients",
                "no",
                "--tls-cluster",
                "yes",
            ]
        else:
            args += ["--port", str(port)]
        log = folder / "redis.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        return proc, log

    def _wait_for_node(
        self, proc: subprocess.Popen[bytes], log: Path, port: int, *, retry: bool
    ) -> bool:
        """True once the node on ``port`` answers PING; False when it exited because a port
        was taken and ``retry`` allows another attempt; otherwise an error with its log."""
        kwargs = {**self.node_kwargs(), "host": self.host, "port": port}
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(**kwargs) as probe:
                    probe.ping()
                return True
            except (redis.ConnectionError, redis.TimeoutError):
                exited = proc.poll() is not None
                if exited and retry and "already in use" in log.read_text(errors="replace"):
                    return False
                if exited or time.monotonic() > deadline:
                    if not exited:
                        proc.kill()
                        proc.wait()
                    raise RuntimeError(f"redis-server did not start: {log.read_text()}") from None
                time.sleep(0.02)

    def _form_cluster(self) -> None:
        count = len(self.ports)
        for i in range(count):
            first, last = SLOTS * i // count, SLOTS * (i + 1) // count - 1
            with self.node(i) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.node(0) as client:
            for i in range(1, count):
                client.execute_command(
                    "CLUSTER", "MEET", self.host, self.ports[i], self.bus_ports[i]
                )
        deadline = time.monotonic() + 20
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def _ready(self) -> bool:
        for i in range(len(self.ports)):
            with self.node(i) as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if (
                    "cluster_state:ok" not in text
                    or f"cluster_known_nodes:{len(self.ports)}" not in text
                ):
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                if len(slots) != len(self.ports):
                    return False
        return True

    def stop(self) -> None:
        """Terminate every node and remove the folder."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        self._dir.cleanup()
