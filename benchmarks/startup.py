"""Start-up overhead of the app host, as ratios and differences measured in one run.

1. ``apphost start samples/quickstart/apphost.py`` to ready (process runtime), against the same
   work done by hand in the same run: a bare ``redis-server`` start-to-PING plus the API's own
   start-to-first-HTTP-answer. Target: the app host adds less than 300 ms.
2. ``python -c "import apphost_sdk"`` against ``python -c "pass"``. Target: under 150 ms.

Run: ``.venv/bin/python benchmarks/startup.py [--rounds N]``. Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "samples" / "quickstart" / "apphost.py"
PY = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.005)
    raise TimeoutError("benchmark step did not become ready")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def by_hand(workdir: Path) -> float:
    """redis-server start-to-PING, then the API start-to-200: what the app host automates."""
    import redis

    password = "benchmarkpassword0123456"
    port, api_port = free_port(), free_port()
    conf = workdir / "redis.conf"
    conf.write_text(f'port {port}\nbind 127.0.0.1\nsave ""\nrequirepass {password}\n')
    t0 = time.perf_counter()
    server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(ping)
    env = {
        **os.environ,
        "PORT": str(api_port),
        "ConnectionStrings__cache": f"localhost:{port},password={password}",
    }
    api = subprocess.Popen(
        [PY, str(QUICKSTART.parent / "api" / "app.py")], env=env, stdout=subprocess.DEVNULL
    )
    wait_until(lambda: http_ok(f"http://127.0.0.1:{api_port}/health"))
    elapsed = time.perf_counter() - t0
    for p in (api, server):
        p.terminate()
        p.wait(10)
    client.close()
    return elapsed


def through_apphost(env: dict[str, str]) -> float:
    """``apphost start`` (returns once everything is healthy), then ``apphost stop``."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [PY, "-m", "apphost_sdk", "start", str(QUICKSTART), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"apphost start failed: {out.stderr}")
    api = json.loads(out.stdout)["resources"][1]["endpoint"]
    assert http_ok(api + "/"), "the quick-start API did not answer"
    subprocess.run(
        [PY, "-m", "apphost_sdk", "stop", str(QUICKSTART)], env=env, check=True, capture_output=True
    )
    return elapsed


def import_time(code: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    ok = True
    # As an installed package would be: byte-compiled (pip compiles on install; an editable
    # install under PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module every run).
    import compileall

    for folder in ("apphost_sdk", "provisioning", "samples"):
        compileall.compile_dir(ROOT / folder, quiet=1, invalidation_mode=None)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "APPHOST_STATE_DIR": tmp, "APPHOST_CONTAINER_RUNTIME": "process"}
        through_apphost(env)  # warm the state (generated password) and the file caches
        hand, host = [], []
        for _ in range(ns.rounds):
            hand.append(by_hand(Path(tmp)))
            host.append(through_apphost(env))
    h, a = statistics.median(hand), statistics.median(host)
    overhead_ms = (a - h) * 1000
    print(f"quick start by hand (redis-server to PING + API to 200): median {h * 1000:7.1f} ms")
    print(f"quick start through `apphost start --json`:               median {a * 1000:7.1f} ms")
    print(
        f"  ratio {a / h:.2f}x, app host adds {overhead_ms:.0f} ms (target < 300 ms): "
        f"{'MET' if overhead_ms < 300 else 'MISSED'}"
    )
    ok &= overhead_ms < 300
    bare = import_time("pass", 10)
    sdk = import_time("import apphost_sdk", 10)
    print(
        f"python -c pass: {bare * 1000:.1f} ms; python -c 'import apphost_sdk': {sdk * 1000:.1f} ms"
    )
    print(
        f"  import adds {(sdk - bare) * 1000:.1f} ms, total {sdk * 1000:.1f} ms "
        f"(target < 150 ms): {'MET' if sdk < 0.150 else 'MISSED'}"
    )
    ok &= sdk < 0.150
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
