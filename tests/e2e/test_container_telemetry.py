"""A container's telemetry reaches the dashboard through the engine's host gateway.

A container marked ``with_otlp_exporter()`` gets the ``OTEL_*`` variables pointing at
``host.docker.internal``; the receiver, which listens on loopback, is also reachable on the
bridge gateway address (never on all interfaces) and still wants the API key. A container
without the mark (a tool such as Redis) gets no ``OTEL_*`` variable at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphost_sdk.runtimes.engines import Engine

from .conftest import AppFolder, wait_until

pytestmark = pytest.mark.docker

PYTHON_IMAGE = os.environ.get("APPHOST_TEST_PYTHON_IMAGE", "apphost-test/python:3")

#: Posts one OTLP/JSON span to the endpoint its environment names, with the headers it names,
#: and says how it went; then stays up (a service).
SENDER = r"""
import json, os, time, urllib.request
env = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
print("otel variables:", ",".join(sorted(env)), flush=True)
headers = {"Content-Type": "application/json"}
for pair in env.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(","):
    if "=" in pair:
        k, v = pair.split("=", 1)
        headers[k.strip()] = v.strip()
now = time.time_ns()
body = {"resourceSpans": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": env.get("OTEL_SERVICE_NAME", "?")}}]},
    "scopeSpans": [{"scope": {"name": "sender"}, "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "sent-from-a-container", "kind": 2,
        "startTimeUnixNano": str(now - 1000000), "endTimeUnixNano": str(now)}]}]}]}
for attempt in range(50):
    try:
        request = urllib.request.Request(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=5) as answer:
            print("export answered", answer.status, flush=True)
            break
    except Exception as exc:
        print("export failed:", exc, flush=True)
        time.sleep(0.2)
while True:
    time.sleep(60)
"""


def _image(engine: Engine) -> tuple[str, str]:
    name, _, tag = PYTHON_IMAGE.rpartition(":")
    if not engine.client.images.list(name=PYTHON_IMAGE):
        pytest.fail(
            f"{PYTHON_IMAGE} is missing; tests/run.sh builds it "
            "(tests/support/build_python_image.sh)"
        )
    return name, tag


def test_a_container_sends_telemetry_through_the_host_gateway(
    app_folder: AppFolder, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APPHOST_CONTAINER_RUNTIME", "docker")
    name, tag = _image(engine)
    b = app_folder.builder()
    b.add_container("sender", name, tag).with_entrypoint("python").with_args(
        "-u", "-c", SENDER
    ).with_otlp_exporter()
    b.add_container("tool", name, tag).with_entrypoint("python").with_args("-u", "-c", SENDER)
    app: Any = b.build()
    with app.start(timeout=120, quiet=True, dashboard=True):
        status = app.status()
        dashboard = status["dashboard"]
        env = app.environment_for("sender")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://host.docker.internal:")
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == "sender"
        assert not [k for k in app.environment_for("tool") if k.startswith("OTEL_")]

        with httpx.Client(follow_redirects=True, timeout=10) as client:
            assert client.get(dashboard["loginUrl"]).status_code == 200

            def arrived() -> bool:
                page = client.get(dashboard["url"] + "/traces/resource/sender")
                return "sent-from-a-container" in page.text

            wait_until(arrived, timeout=60, interval=0.5, what="the container's span")
            console = client.get(
                dashboard["url"] + "/api/consolelogs", params={"resource": "sender"}
            )
            assert "export answered 200" in console.text
            tool = client.get(dashboard["url"] + "/api/consolelogs", params={"resource": "tool"})
            texts = [item["text"] for item in tool.json()["items"]]
            assert "otel variables: " in texts  # none at all
        # The receiver listens on the gateway, never on all interfaces, and wants the key there.
        gateway = engine_gateway(engine)
        port = int(dashboard["otlpEndpoint"].rsplit(":", 1)[1])
        refused = httpx.post(
            f"http://{gateway}:{port}/v1/traces",
            content=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert refused.status_code == 401


def engine_gateway(engine: Engine) -> str:
    """The default bridge's gateway address, as the app host finds it."""
    config = engine.client.api.inspect_network("bridge")["IPAM"]["Config"]
    gateways = [c.get("Gateway") for c in config if c.get("Gateway") and ":" not in c["Gateway"]]
    assert gateways, "the bridge network lists no IPv4 gateway"
    return str(gateways[0])
