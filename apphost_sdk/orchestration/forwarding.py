"""A TCP forwarder that lets containers reach a program on this machine that listens on
loopback only (as Aspire's proxies do): it listens on the engine's bridge gateway address, never
on all interfaces, and relays each connection to ``127.0.0.1``."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class Forwarder:
    """Relays ``listen_host:port`` to ``127.0.0.1:target_port`` until ``close()``."""

    def __init__(self, listen_host: str, port: int, target_port: int) -> None:
        self._server = socket.create_server((listen_host, port), reuse_port=False)
        self._target = ("127.0.0.1", target_port)
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.address = (listen_host, port)
        self._thread = threading.Thread(
            target=self._accept, name=f"apphost-forward-{port}", daemon=True
        )
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.update((client, upstream))
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            for s in peers:
                sel.register(s, selectors.EVENT_READ)
            open_ends = 2
            while open_ends and not self._closed.is_set():
                for key, _ in sel.select(timeout=0.5):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        with contextlib.suppress(OSError):
                            peers[src].sendall(data)
                        continue
                    sel.unregister(src)
                    open_ends -= 1
                    with contextlib.suppress(OSError):
                        peers[src].shutdown(socket.SHUT_WR)
        for s in peers:
            with contextlib.suppress(OSError):
                s.close()
        with self._lock:
            self._conns.difference_update(peers)

    def close(self) -> None:
        """Stop listening and cut the open connections."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(2)
