"""Start and stop a throwaway ``redis-server`` on a free loopback port for the client tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server child process without persistence; ``stop`` ends it."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="apphost-redis-")
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", ""]
        args += ["--appendonly", "no", "--dir", self._dir.name, *extra_args]
        log = Path(self._dir.name) / "redis.log"
        self._proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(host=self.host, port=self.port, socket_timeout=1) as probe:
                    probe.ping()
                break
            except redis.exceptions.AuthenticationError:
                break
            except redis.exceptions.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {log.read_text()}") from None
                time.sleep(0.02)

    @property
    def connection_string(self) -> str:
        """StackExchange.Redis form, as the app host injects it."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Terminate the server and remove its directory."""
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()
