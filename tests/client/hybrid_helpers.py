"""A second, real process holding a ``HybridCache``, driven line by line over stdin/stdout.

Run as a script (``python hybrid_helpers.py HOST PORT INSTANCE``); it prints ``ready`` once
its subscription is confirmed (polled up to 10 s). Commands: ``get KEY [TAG]``
(``get_or_create`` with a factory returning ``"factory-in-child"``; prints the value as
JSON), ``has KEY`` (whether L1 holds it) and
``wait KEY`` (prints ``waiting``, then ``gone <time.monotonic()>`` once L1 dropped KEY, or
``timeout``). ``ChildCache`` is the parent's handle on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any


class ChildCache:
    """The parent's side: start the child, send commands, read answers; ``close`` ends it."""

    def __init__(self, host: str, port: int, instance_name: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), host, str(port), instance_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self.read()
        if line != "ready":
            self.close()
            raise RuntimeError(f"the child cache did not start: {line!r}")

    def send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()

    def read(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        self.send(command)
        return self.read()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.send("quit")
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


def _serve(cache: Any, out: IO[str]) -> None:
    def reply(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    deadline = time.monotonic() + 10
    while not cache.receiving_invalidations and time.monotonic() < deadline:
        time.sleep(0.01)
    reply("ready" if cache.receiving_invalidations else "not subscribed within 10 s")
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            return
        command, key = parts[0], parts[1]
        if command == "get":
            tags = parts[2:]
            reply(json.dumps(cache.get_or_create(key, lambda: "factory-in-child", tags=tags)))
        elif command == "has":
            reply(json.dumps(key in cache.local))
        elif command == "wait":
            reply("waiting")
            deadline = time.monotonic() + 5
            while key in cache.local and time.monotonic() < deadline:
                time.sleep(0.0005)
            reply("timeout" if key in cache.local else f"gone {time.monotonic()}")


def main() -> None:
    import redis

    from apphost_sdk.caching.hybrid_cache import HybridCache
    from apphost_sdk.caching.sync_cache import DistributedCache

    host, port, instance = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = redis.Redis(host=host, port=port)
    with HybridCache(DistributedCache(client, instance_name=instance)) as cache:
        _serve(cache, sys.stdout)
    client.close()


if __name__ == "__main__":
    main()
