"""Images: local ones used as is, offline/unknown ones a clear error, stream errors detected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apphost_sdk.errors import ImageUnavailableError
from apphost_sdk.runtimes.base import ContainerSpec
from apphost_sdk.runtimes.docker_runtime import APP_ID, DockerRuntime, _follow_pull


def test_local_image_is_used_without_pulling(
    make_runtime: Callable[[], DockerRuntime], make_spec: Callable[..., ContainerSpec]
) -> None:
    progress: list[str] = []
    refs = [make_spec().image_ref, make_spec(resource_name="other").image_ref]
    make_runtime().prepare(refs, progress.append)
    assert progress == []


def test_unknown_image_names_it_and_suggests_with_image(
    make_runtime: Callable[[], DockerRuntime], make_spec: Callable[..., ContainerSpec]
) -> None:
    refs = [
        make_spec(image="apphost-test/does-not-exist", tag="1").image_ref,
        make_spec(image="apphost-test/also-missing", tag="2", resource_name="b").image_ref,
    ]
    progress: list[str] = []
    with pytest.raises(ImageUnavailableError) as info:
        make_runtime().prepare(refs, progress.append)
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


def test_start_of_an_unavailable_image_is_a_clear_error(
    make_runtime: Callable[[], DockerRuntime],
    make_spec: Callable[..., ContainerSpec],
    api: Any,
    app_id: str,
) -> None:
    lines: list[tuple[str, str]] = []
    spec = make_spec(image="apphost-test/does-not-exist", tag="3")
    with pytest.raises(ImageUnavailableError, match=r"apphost-test/does-not-exist:3.*with_image"):
        make_runtime().start(spec, lambda stream, line: lines.append((stream, line)))
    assert api.containers(all=True, filters={"label": [f"{APP_ID}={app_id}"]}) == []
