"""End to end: the ``samples/azure_emulator`` app host, unchanged, against the ARM emulator.

``apphost start`` provisions an Azure Managed Redis (OSS clustering policy, the default) and an
Azure Cache for Redis through the real azure-mgmt clients; the emulator backs each with real TLS
``redis-server`` processes (a three-node Redis Cluster for Managed Redis). The sample's FastAPI
service then reads and writes both through ``add_redis_distributed_cache`` with Microsoft Entra
ID tokens the emulator issued, trusting the emulator's CA from the settings the app host passed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.cluster

from provisioning.credentials import EMULATOR_OBJECT_ID
from provisioning.emulator.control import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "azure_emulator" / "apphost.py"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess.start("--create-delay", "0.5") as started:
        assert started.data_plane_available, started.data_plane_reason
        yield started


@pytest.fixture
def sample_env(emulator: EmulatorProcess, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("azure__")}
    env.update(emulator.configuration)  # what the emulator printed, as a user would export it
    env.update(
        APPHOST_STATE_DIR=str(tmp_path / "state"),
        NO_COLOR="1",
        Azure__PollIntervalSeconds="0.1",
        Azure__ResourceGroup="rg-sample",
    )
    yield env
    apphost(env, "stop", str(SAMPLE), check=False)


def apphost(env: dict[str, str], *args: str, check: bool = True) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "apphost_sdk", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_the_sample_reads_and_writes_both_emulated_caches(
    emulator: EmulatorProcess, sample_env: dict[str, str]
) -> None:
    started = apphost(sample_env, "start", str(SAMPLE), "--json")
    status = json.loads(started.stdout)
    resources = {r["name"]: r for r in status["resources"]}
    assert status["phase"] == "ready"
    for name in ("cache", "legacy", "api"):
        assert (resources[name]["state"], resources[name]["health"]) == ("Running", "Healthy")

    # Aspire's variables: Managed Redis on 10000, the classic cache on 6380, both Entra ID
    # (no password anywhere), plus the emulator's settings for the service.
    cache_env = resources["cache"]["environment"]
    host = cache_env["CACHE_HOST"]
    assert cache_env["ConnectionStrings__cache"] == f"{host}:10000,ssl=true"
    assert (cache_env["CACHE_PORT"], cache_env["CACHE_URI"]) == ("10000", f"rediss://{host}:10000")
    assert "CACHE_PASSWORD" not in cache_env
    assert cache_env["Azure__Emulator__CaFile"] == str(emulator.ca_file)
    legacy_env = resources["legacy"]["environment"]
    legacy_host = legacy_env["LEGACY_HOST"]
    assert legacy_env["ConnectionStrings__legacy"] == f"{legacy_host}:6380,ssl=true"
    assert host != legacy_host  # each emulated cache has its own loopback address

    api = resources["api"]["endpoint"]
    for cache in ("cache", "legacy"):
        for i in range(30):
            code, _ = http("PUT", f"{api}/{cache}/key-{i}", f"{cache}-{i}".encode())
            assert code == 200
        for i in (0, 17, 29):
            assert http("GET", f"{api}/{cache}/key-{i}") == (200, f"{cache}-{i}".encode())
    assert http("GET", f"{api}/cache/missing")[0] == 404
    code, body = http("GET", f"{api}/health")
    assert code == 200 and json.loads(body)["status"] == "Healthy"

    # The Managed Redis entries really are spread over a Redis Cluster, readable by anyone
    # holding a token for the app host's principal.
    token = emulator.token()["accessToken"]
    cluster = redis.cluster.RedisCluster(
        host=host,
        port=10000,
        ssl=True,
        ssl_ca_certs=str(emulator.ca_file),
        username=EMULATOR_OBJECT_ID,
        password=token,
    )
    try:
        nodes = {cluster.get_node_from_key(f"key-{i}").port for i in range(30)}
        assert len(nodes) > 1
        assert all(cluster.exists(f"key-{i}") for i in range(30))
    finally:
        cluster.close()

    # Stopped, then destroyed: deleting the caches stops their servers.
    apphost(sample_env, "stop", str(SAMPLE))
    destroyed = apphost(sample_env, "destroy", str(SAMPLE), "--yes")
    assert "cache" in destroyed.stdout + destroyed.stderr
    assert refuses(host, 10000) and refuses(legacy_host, 6380)


def test_the_app_host_asks_the_emulator_for_its_ca_when_the_setting_is_missing(
    emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apphost_sdk.configuration import Configuration
    from apphost_sdk.integrations.azure_data_plane import emulator_ca_file, emulator_environment

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a dead proxy: never used here
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    config = Configuration(
        {
            "Azure:CredentialSource": "Emulator",
            "Azure:ResourceManagerEndpoint": emulator.endpoint,
        }
    )
    assert emulator_ca_file(config) == str(emulator.ca_file)
    assert emulator_environment(config)["Azure__Emulator__CaFile"] == str(emulator.ca_file)
    # Against real Azure nothing is asked and nothing is passed on.
    assert emulator_ca_file(Configuration({"Azure:CredentialSource": "AzureCli"})) is None
