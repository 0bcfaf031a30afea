"""Provisioning state kept in the app's state directory.

One JSON record per cache (``azure/{resource}.json``): the checksum of the desired state, the
non-secret outputs, and whether the run finished. Keys live apart in
``azure/{resource}.secrets.json`` with mode 0600. Writes are atomic (temp file + rename), and a
record says ``succeeded`` only after every step succeeded; an interrupted create leaves a
``pending`` record that the next run resumes from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs

from apphost_sdk.files import read_json, write_private

from .outputs import KIND_REDIS, CacheOutputs

PENDING = "pending"
SUCCEEDED = "succeeded"


@attrs.frozen
class StateRecord:
    """What the previous run left for one cache."""

    resource_name: str
    status: str
    checksum: str
    azure_name: str
    resource_group: str
    subscription_id: str
    resource_id: str
    outputs: CacheOutputs | None = None


def _write_atomic(path: Path, data: dict[str, Any], mode: int) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True), mode=mode, durable=True)


class StateStore:
    """Reads and writes the records under ``{state_dir}/azure``."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = Path(state_dir) / "azure"

    def _record_path(self, resource: str) -> Path:
        return self.directory / f"{resource}.json"

    def _secrets_path(self, resource: str) -> Path:
        return self.directory / f"{resource}.secrets.json"

    def load(self, resource: str) -> StateRecord | None:
        """The record of ``resource``, or None when absent or unreadable (treated as new)."""
        data = read_json(self._record_path(resource))
        if not isinstance(data, dict):
            return None
        try:
            outputs = None
            if data.get("status") == SUCCEEDED and data.get("outputs"):
                out = data["outputs"]
                key = None
                if out.get("use_access_keys"):
                    secrets = read_json(self._secrets_path(resource))
                    if not isinstance(secrets, dict):
                        return None
                    key = secrets["primary_key"]
                outputs = CacheOutputs.build(
                    resource_name=resource,
                    name=out["name"],
                    resource_id=out["resource_id"],
                    host_name=out["host_name"],
                    ssl_port=int(out["ssl_port"]),
                    primary_key=key,
                    principal_object_id=out.get("principal_object_id"),
                    kind=str(out.get("kind") or KIND_REDIS),
                    clustering_policy=out.get("clustering_policy"),
                )
            return StateRecord(
                resource_name=resource,
                status=str(data["status"]),
                checksum=str(data["checksum"]),
                azure_name=str(data["azure_name"]),
                resource_group=str(data["resource_group"]),
                subscription_id=str(data["subscription_id"]),
                resource_id=str(data["resource_id"]),
                outputs=outputs,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _base(self, record: StateRecord) -> dict[str, Any]:
        return {
            "version": 1,
            "resource_name": record.resource_name,
            "status": record.status,
            "checksum": record.checksum,
            "azure_name": record.azure_name,
            "resource_group": record.resource_group,
            "subscription_id": record.subscription_id,
            "resource_id": record.resource_id,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save_pending(self, record: StateRecord) -> None:
        """Note that a create/update is under way (not a success: no outputs)."""
        data = self._base(attrs.evolve(record, status=PENDING, outputs=None))
        _write_atomic(self._record_path(record.resource_name), data, 0o644)

    def save_succeeded(self, record: StateRecord, outputs: CacheOutputs) -> None:
        """Store outputs after every step succeeded; secrets go to a 0600 file first."""
        if outputs.primary_key is not None:
            _write_atomic(
                self._secrets_path(record.resource_name),
                {"primary_key": outputs.primary_key},
                0o600,
            )
        else:
            self._secrets_path(record.resource_name).unlink(missing_ok=True)
        data = self._base(attrs.evolve(record, status=SUCCEEDED))
        data["outputs"] = {
            "name": outputs.name,
            "resource_id": outputs.resource_id,
            "host_name": outputs.host_name,
            "ssl_port": outputs.ssl_port,
            "use_access_keys": outputs.use_access_keys,
            "principal_object_id": outputs.principal_object_id,
            "kind": outputs.kind,
            "clustering_policy": outputs.clustering_policy,
        }
        _write_atomic(self._record_path(record.resource_name), data, 0o644)

    def forget(self, resource: str) -> None:
        """Remove the record and secrets of ``resource`` (after destroy or drift)."""
        self._record_path(resource).unlink(missing_ok=True)
        self._secrets_path(resource).unlink(missing_ok=True)
