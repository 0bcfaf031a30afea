"""``python -m provisioning.emulator``: serve the ARM emulator until interrupted.

Prints one JSON line ``{"endpoint": "http://127.0.0.1:PORT", "host": ..., "port": ...}`` once
the socket accepts connections, so a parent process can read where to connect.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

from ..settings import is_loopback_host
from .faults import FaultSpecError, parse_fault
from .server import EmulatorServer
from .store import Settings, Store


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start serving, print the endpoint line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m provisioning.emulator",
        description="Local Azure Resource Manager emulator for Microsoft.Cache/redis.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--create-delay", type=float, default=2.0, help="seconds in Creating")
    parser.add_argument("--update-delay", type=float, default=0.5, help="seconds in Scaling etc.")
    parser.add_argument("--delete-delay", type=float, default=0.5, help="seconds in Deleting")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[,key=value...]",
        help="inject a fault (see provisioning.emulator.faults); repeatable",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error("--host must be a loopback address (the emulator accepts unsigned tokens)")
    try:
        faults = [parse_fault(spec) for spec in args.fault]
    except FaultSpecError as exc:
        parser.error(str(exc))
    settings = Settings(
        create_delay=args.create_delay,
        update_delay=args.update_delay,
        delete_delay=args.delete_delay,
    )
    try:
        server = EmulatorServer((args.host, args.port), Store(settings, faults), args.verbose)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(json.dumps({"endpoint": server.endpoint, "host": host, "port": port}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
