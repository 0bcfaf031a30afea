"""Images: local ones used as is, offline/unknown ones a clear error, stream errors detected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apphost_sdk.errors import ImageUnavailableError
from apphost_sdk.runtimes.base import ContainerSpec
from apphost_sdk.runtimes.docker_runtime import DockerRuntime, _follow_pull


def test_local_image_is_used_without_pulling(
    make_runtime: Callable[[], DockerRuntime], make_spec: Callable[..., ContainerSpec]
) -> None:
    progress: list[str] = []
    make_runtime().prepare([make_spec(), make_spec(resource_name="other")], progress.append)
    assert progress == []


def test_unknown_image_names_it_and_suggests_with_image(
    make_runtime: Callable[[], DockerRuntime], make_spec: Callable[..., ContainerSpec]
) -> None:
    specs = [
        make_spec(image="apphost-test/does-not-exist", tag="1"),
        make_spec(image="apphost-test/also-missing", tag="2", resource_name="b"),
    ]
    progress: list[str] = []
    with pytest.raises(ImageUnavailableError) as info:
        make_runtime().prepare(specs, progress.append)
    message = str(info.value)
    assert "apphost-test/does-not-exist:1" in message
    assert "apphost-test/also-missing:2" in message
    assert "with_image(...)" in message
    assert progress and "pulling 2 image(s)" in progress[0]


def test_errors_inside_the_pull_stream_are_detected() -> None:
    events: list[dict[str, Any]] = [
        {"status": "Pulling from library/redis", "id": "8.6"},
        {"status": "Downloading", "id": "abc", "progressDetail": {"current": 5, "total": 10}},
        {"errorDetail": {"message": "unexpected EOF"}, "error": "unexpected EOF"},
    ]
    with pytest.raises(ImageUnavailableError, match=r"redis:8.6 .*unexpected EOF.*with_image"):
        _follow_pull("redis:8.6", iter(events), lambda line: None)


def test_pull_progress_is_reported() -> None:
    lines: list[str] = []
    events = [
        {
            "status": "Downloading",
            "id": "l1",
            "progressDetail": {"current": 2_000_000, "total": 4_000_000},
        }
    ]
    _follow_pull("redis:8.6", iter(events), lines.append)
    assert lines == ["pulling redis:8.6: 2.0 / 4.0 MB"]
