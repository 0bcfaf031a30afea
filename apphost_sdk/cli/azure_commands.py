"""``apphost plan | provision | destroy APPHOST.py``: Azure provisioning for pipelines.

Each command receives the built app and the arguments ``apphost`` parsed for it (its flags
are defined once, in :func:`apphost_sdk.cli.main.build_parser`) and returns the exit code:
0 on success, 1 with a one-line reason on stderr when Azure or the configuration says no,
2 for bad arguments. Progress goes to stderr so stdout stays machine-readable. Secrets (access
keys, connection strings that carry them) are printed only with ``--show-secrets``; with
``--format github`` they are masked with ``::add-mask::`` and written to ``$GITHUB_OUTPUT`` /
``$GITHUB_ENV`` for later steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TextIO

from apphost_sdk.errors import ApphostError, ConfigurationError
from apphost_sdk.model.connection import RedisEndpoint
from apphost_sdk.model.names import env_prefix

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _progress(stream: TextIO) -> Callable[[str, str], None]:
    def report(resource: str, text: str) -> None:
        print(f"{resource}: {text}", file=stream, flush=True)

    return report


def _setup(app: Any, on_status: Callable[[str, str], None]) -> tuple[Any | None, list[Any]]:
    """Build the provisioner and the list of requests for ``app`` (lazy imports).

    The provisioner is None for an app without Azure resources and without Azure settings:
    a pipeline running these commands on such an app has nothing to do, not an error.
    """
    from provisioning.app_model import requests_from_app, state_dir_of
    from provisioning.provisioner import Provisioner
    from provisioning.settings import ProvisioningSettings

    requests = requests_from_app(app, include_containers=True)
    try:
        settings = ProvisioningSettings.from_configuration(app.configuration, app.app_name)
    except ConfigurationError:
        if requests:
            raise
        return None, []
    provisioner = Provisioner(settings, state_dir_of(app), app.app_name, on_status=on_status)
    return provisioner, requests


def _run(command: str, body: Callable[[], int]) -> int:
    """Run a command's body; our errors become one line on stderr and exit code 1."""
    try:
        return body()
    except ApphostError as exc:
        reason = " ".join(str(exc).split())
        print(f"apphost {command}: error: {reason}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"apphost {command}: interrupted; run it again to resume", file=sys.stderr)
        return 130


# -- plan ---------------------------------------------------------------------------------------
def plan(app: Any, args: argparse.Namespace) -> int:
    """Print what ``provision`` would create, update or leave alone; makes no write."""

    def body() -> int:
        from provisioning.provisioner import PlanAction

        provisioner, requests = _setup(app, _progress(sys.stderr))
        items = []
        if provisioner is not None:
            try:
                items = provisioner.plan(requests)
            finally:
                provisioner.close()
        if args.json:
            print(json.dumps({"resources": [i.to_dict() for i in items]}, indent=2))
        elif not items:
            print("No Azure resources in this app.")
        else:
            for item in items:
                group = (
                    f" (and create resource group {item.resource_group})"
                    if item.resource_group_action is PlanAction.CREATE
                    else ""
                )
                print(
                    f"{item.resource_name}: {item.action.value} {item.azure_name} in "
                    f"{item.resource_group}{group}"
                )
                for change in item.changes:
                    print(f"    {change}")
        failed = [i for i in items if i.action in (PlanAction.MISSING, PlanAction.FAILED)]
        failed += [i for i in items if i.resource_group_action is PlanAction.MISSING]
        for item in failed:
            print(
                f"apphost plan: {item.resource_name}: cannot proceed ({item.action.value} "
                f"{item.azure_name} / resource group {item.resource_group})",
                file=sys.stderr,
            )
        return EXIT_FAILED if failed else EXIT_OK

    return _run("plan", body)


# -- provision ----------------------------------------------------------------------------------
def connection_variables(outputs: Any) -> list[tuple[str, str, bool]]:
    """``(name, value, is_secret)`` environment variables a consumer of the cache receives:
    exactly those run mode injects (the model's ``RedisEndpoint.environment``)."""
    key = outputs.primary_key
    endpoint = RedisEndpoint(
        outputs.host_name,
        outputs.ssl_port,
        key,
        tls=True,
        fixed_connection_string=outputs.connection_string,
    )
    name = outputs.resource_name
    prefix = env_prefix(name)
    # Secret: the key itself, and whatever carries it (connection string and URI).
    secret = {f"{prefix}_PASSWORD"} | (
        {f"ConnectionStrings__{name}", f"{prefix}_URI"} if key else set()
    )
    return [(k, v, k in secret) for k, v in endpoint.environment(name).items()]


def _github_outputs(outputs: Any) -> list[tuple[str, str, bool]]:
    base = env_prefix(outputs.resource_name).lower()
    items = [
        (f"{base}_name", outputs.name, False),
        (f"{base}_resource_id", outputs.resource_id, False),
        (f"{base}_host_name", outputs.host_name, False),
        (f"{base}_ssl_port", str(outputs.ssl_port), False),
        (f"{base}_connection_string", outputs.connection_string, outputs.has_secret),
    ]
    if outputs.primary_key:
        items.append((f"{base}_primary_key", outputs.primary_key, True))
    if getattr(outputs, "clustering_policy", None):  # Azure Managed Redis only
        items.append((f"{base}_clustering_policy", outputs.clustering_policy, False))
    return items


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


def _write_github(results: dict[str, Any]) -> None:
    output_file = os.environ.get("GITHUB_OUTPUT")
    env_file = os.environ.get("GITHUB_ENV")
    if not output_file or not env_file:
        raise ApphostError(
            "--format github needs $GITHUB_OUTPUT and $GITHUB_ENV (set by GitHub Actions); "
            "use --json or --format env elsewhere"
        )
    secrets = {
        value
        for outputs in results.values()
        for _, value, secret in [*connection_variables(outputs), *_github_outputs(outputs)]
        if secret
    }
    for secret in sorted(secrets):  # mask before anything could print them
        print(f"::add-mask::{secret}", flush=True)
    _append(output_file, [f"{k}={v}" for o in results.values() for k, v, _ in _github_outputs(o)])
    _append(env_file, [f"{k}={v}" for o in results.values() for k, v, _ in connection_variables(o)])
    for outputs in results.values():
        print(
            f"{outputs.resource_name}: {outputs.host_name}:{outputs.ssl_port} -> outputs "
            f"{env_prefix(outputs.resource_name).lower()}_* and environment written"
        )


def _print_env(results: dict[str, Any], show_secrets: bool) -> None:
    for outputs in results.values():
        for name, value, secret in connection_variables(outputs):
            if secret and not show_secrets:
                print(f"# {name} omitted (secret): pass --show-secrets")
            else:
                print(f"{name}={shlex.quote(value)}")


#: How ``CacheOutputs.kind`` reads in text output.
_KIND_TEXT = {"redis": "Azure Cache for Redis", "managed-redis": "Azure Managed Redis"}


def _print_text(results: dict[str, Any], show_secrets: bool) -> None:
    for outputs in results.values():
        data = outputs.public_dict(show_secrets)
        print(
            f"{outputs.resource_name}: {outputs.name} ({_KIND_TEXT.get(data['kind'], data['kind'])}"
            f", {data['authentication']})"
        )
        print(f"    host: {outputs.host_name}:{outputs.ssl_port}")
        print(f"    resource id: {outputs.resource_id}")
        print(f"    connection string: {data['connectionString']}")


def provision(app: Any, args: argparse.Namespace) -> int:
    """Provision every Azure resource of the app and print its outputs."""
    if args.json and args.format not in (None, "json"):
        print("apphost provision: --json and --format are exclusive", file=sys.stderr)
        return EXIT_USAGE
    fmt = args.format or ("json" if args.json else "text")

    def body() -> int:
        provisioner, requests = _setup(app, _progress(sys.stderr))
        results: dict[str, Any] = {}
        if provisioner is not None:
            try:
                results = provisioner.provision(requests)
            finally:
                provisioner.close()
        if not results and fmt in ("text", "env"):
            print(
                "# No Azure resources in this app."
                if fmt == "env"
                else "No Azure resources in this app."
            )
            return EXIT_OK
        if fmt == "json":
            data = {name: o.public_dict(args.show_secrets) for name, o in results.items()}
            print(json.dumps({"resources": data}, indent=2))
        elif fmt == "env":
            _print_env(results, args.show_secrets)
        elif fmt == "github":
            _write_github(results)
        else:
            _print_text(results, args.show_secrets)
        return EXIT_OK

    return _run("provision", body)


# -- destroy ------------------------------------------------------------------------------------
def destroy(app: Any, args: argparse.Namespace) -> int:
    """Delete the caches and Managed Redis clusters this app created (found by their tags)
    and wait for the deletions."""

    def body() -> int:
        provisioner, requests = _setup(app, _progress(sys.stderr))
        if provisioner is None:
            print("Nothing to delete: this app has no Azure resources and no Azure settings.")
            return EXIT_OK
        try:
            owned = provisioner.owned_caches(requests)
            if not owned:
                print(
                    f"Nothing to delete: no Azure cache or Managed Redis of app "
                    f"{app.app_name!r} in resource group "
                    f"{provisioner.settings.resource_group}."
                )
                return EXIT_OK
            names = ", ".join(str(c.name) for c in owned)
            if not args.yes:
                if not sys.stdin.isatty():
                    raise ApphostError(f"would delete {names}; pass --yes to confirm")
                try:
                    answer = input(f"Delete {names}? [y/N] ").strip().lower()
                except EOFError:  # Ctrl-D: no
                    print()
                    answer = ""
                if answer not in ("y", "yes"):
                    print("Nothing deleted.")
                    return EXIT_FAILED
            # Delete what was listed (and confirmed), not a second listing.
            deleted = provisioner.destroy(requests, owned=owned)
        finally:
            provisioner.close()
        for name in deleted:
            print(f"Deleted {name}")
        return EXIT_OK

    return _run("destroy", body)
