"""Publishing: an app model as deployment artefacts (Aspire manifest + Bicep, Docker Compose).

``publish(app, output_dir, publisher)`` is the entry point; ``apphost publish`` and
``python apphost.py --publisher manifest --output-path DIR`` call it. This package reads the
model and the integrations; it never imports the orchestration or the runtimes, so publishing
can start nothing.
"""

from __future__ import annotations

from .publish import MANIFEST_FILE, PUBLISHERS, PublishError, check_publisher, publish

__all__ = ["MANIFEST_FILE", "PUBLISHERS", "PublishError", "check_publisher", "publish"]
