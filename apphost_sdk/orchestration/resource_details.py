"""What the dashboard shows of one resource beyond its snapshot: its endpoints as URLs, when it
last started, the environment it started with and its edges in the resource graph."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..model.resources import Resource

#: How each kind of wait is named as an edge of the graph (the dashboard's ``RelationView``).
WAIT_RELATIONS = {"healthy": "wait", "start": "wait-start", "completion": "wait-completion"}


@attrs.frozen
class ResourceDetails:
    """One resource's details. ``environment`` holds raw values (secrets included): whoever
    shows it masks them (``OrchestratorSource``)."""

    #: (endpoint name, URL): ``http://localhost:8080``, ``tcp://localhost:6379``.
    endpoints: list[tuple[str, str]]
    #: ``time.time()`` when it last became Running; None when it never ran.
    started_at: float | None
    #: The variables it was (last) started with, as the app host injected them.
    environment: dict[str, str]
    #: (target resource, kind): kind is "reference", "wait", "wait-start" or "wait-completion".
    relations: list[tuple[str, str]]


def endpoint_url(scheme: str, host_port: int) -> str:
    """An endpoint as a browser or client reaches it from this machine: HTTP(S) as is, anything
    else as ``tcp://`` (Redis, Postgres: there is no page to open)."""
    if scheme in ("http", "https"):
        return f"{scheme}://localhost:{host_port}"
    return f"tcp://localhost:{host_port}"


def relations(resources: Iterable[Resource]) -> list[tuple[str, str]]:
    """The references and waits of ``resources`` (a resource and its run-mode stand-in), in
    declaration order, each edge once."""
    out: list[tuple[str, str]] = []
    for resource in resources:
        edges = [(ref.target.name, "reference") for ref in resource.references]
        edges += [(w.target.name, WAIT_RELATIONS.get(w.kind, "wait")) for w in resource.waits]
        for edge in edges:
            if edge not in out:
                out.append(edge)
    return out
