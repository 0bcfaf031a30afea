"""Ctrl-C during a create: the next run resumes waiting on the same cache, never creates twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ROOT, Emulator

from provisioning.run_mode import provision_for_run
from provisioning.spec import AzureRedisRequest

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from apphost_sdk.configuration import Configuration
    from provisioning.run_mode import provision_for_run
    from provisioning.spec import AzureRedisRequest

    endpoint, state_dir = sys.argv[1], Path(sys.argv[2])
    config = Configuration({
        "Azure:SubscriptionId": "11111111-2222-3333-4444-555555555555",
        "Azure:Location": "westus",
        "Azure:CredentialSource": "Emulator",
        "Azure:ResourceManagerEndpoint": endpoint,
        "Azure:PollIntervalSeconds": "0.05",
    })
    try:
        provision_for_run([AzureRedisRequest("cache")], config, state_dir, "shop",
                          lambda name, text: print(name, text, flush=True))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_during_create_resumes_on_next_run(emulator: Emulator, state_dir: Path) -> None:
    emulator.configure(create_delay=2.5)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, emulator.endpoint, str(state_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Provisioning (Creating" in line:
            break
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=10)
    assert time.monotonic() - started < 2.0  # stops promptly, does not wait out the create
    assert proc.returncode == 130 and "interrupted" in out
    assert emulator.cache_puts() == [201]

    statuses: list[str] = []
    outputs = provision_for_run(
        [AzureRedisRequest("cache")],
        emulator.settings(),
        state_dir,
        "shop",
        lambda name, text: statuses.append(text),
    )
    assert emulator.cache_puts() == [201]  # no second create
    assert any(s.startswith("Provisioning (Creating") for s in statuses)
    assert outputs["cache"].connection_string.endswith(":6380,ssl=true")
