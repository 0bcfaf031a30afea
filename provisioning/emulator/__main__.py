"""``python -m provisioning.emulator``: serve the ARM emulator until interrupted.

Prints one JSON line once the socket accepts connections, so a parent process can read where to
connect: ``{"endpoint": "http://127.0.0.1:PORT", "host": ..., "port": ..., "dataPlane":
{"available", "caFile", "reason"}, "configuration": {...}}``; ``configuration`` is what an app
host passes to services (environment form) so they reach the emulated caches.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from apphost_sdk.files import write_private

from ..settings import is_loopback_host
from .data_plane import DataPlane
from .faults import FaultSpecError, parse_fault
from .server import EmulatorServer
from .store import Settings, Store

#: The subscription the start-up line suggests (the emulator accepts any).
EMULATOR_SUBSCRIPTION_ID = "00000000-0000-4000-8000-0000000e0001"


def startup_line(endpoint: str, host: str, port: int, data_plane: DataPlane) -> dict[str, Any]:
    """The start-up JSON object: where to connect, the data plane, and service configuration."""
    ca_file = str(data_plane.ca_file) if data_plane.available and data_plane.ca_file else None
    configuration = {
        "Azure__ResourceManagerEndpoint": endpoint,
        "Azure__CredentialSource": "Emulator",
        # Any subscription and region work here: these let an app host start without more.
        "Azure__SubscriptionId": EMULATOR_SUBSCRIPTION_ID,
        "Azure__Location": "westus2",
        "Azure__AllowResourceGroupCreation": "true",
        "Azure__PollIntervalSeconds": "1",
    }
    if ca_file is not None:
        configuration["Azure__Emulator__CaFile"] = ca_file
    return {
        "endpoint": endpoint,
        "host": host,
        "port": port,
        "dataPlane": {
            "available": data_plane.available,
            "caFile": ca_file,
            "reason": data_plane.unavailable_reason,
        },
        "configuration": configuration,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start serving, print the endpoint line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m provisioning.emulator",
        description=(
            "Local Azure Resource Manager emulator for Microsoft.Cache/redis and "
            "Microsoft.Cache/redisEnterprise, with a TLS redis-server behind each cache."
        ),
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
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="also write the app host's settings for this emulator as KEY=value lines "
        "(source it with `set -a; . PATH; set +a`)",
    )
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
    data_plane = DataPlane()
    if not data_plane.available:
        print(
            f"ARM emulator: control plane only, caches have no live server: "
            f"{data_plane.unavailable_reason}",
            file=sys.stderr,
            flush=True,
        )
    try:
        try:
            store = Store(settings, faults, data_plane=data_plane)
            server = EmulatorServer((args.host, args.port), store, args.verbose)
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        host, port = server.server_address[:2]
        line = startup_line(server.endpoint, str(host), int(port), data_plane)
        if args.env_file:
            lines = [f"{key}={value}\n" for key, value in line["configuration"].items()]
            write_private(Path(args.env_file), "".join(lines))
        print(json.dumps(line), flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        data_plane.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
