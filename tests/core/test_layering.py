"""The package layering, checked on the source (AST only; nothing is imported).

Every import statement counts: top-level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. Relative
imports are resolved to absolute names, and ``from package import module`` counts as an
import of ``package.module``.

Layers (an arrow is "must not import"):

- ``apphost_sdk.model`` -> orchestration, runtimes, cli (the model only describes the app);
- ``provisioning`` -> orchestration, cli (it works on any app through a small contract);
- the service side (``apphost_sdk.hosting``, ``apphost_sdk.caching``, which run inside the
  user's services) -> model, orchestration, runtimes, cli, integrations, provisioning;
- ``apphost_sdk.runtimes`` -> orchestration, cli, integrations (runtimes start what they are
  given and know no resource kind);
- ``apphost_sdk.publishing`` -> orchestration, runtimes, cli (publishing reads the model and
  starts nothing);
- ``apphost_sdk.telemetry`` -> model, orchestration, runtimes, cli, integrations, dashboard,
  control (the store and OTLP decoding know nothing of the app host);
- ``apphost_sdk.dashboard`` and ``apphost_sdk.control`` -> model, orchestration, runtimes,
  integrations (they see a running app only through ``dashboard.source.DashboardSource``), and
  the dashboard -> control and cli.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_PACKAGES = ("apphost_sdk", "provisioning")

MODEL = "apphost_sdk.model"
ORCHESTRATION = "apphost_sdk.orchestration"
RUNTIMES = "apphost_sdk.runtimes"
CLI = "apphost_sdk.cli"
INTEGRATIONS = "apphost_sdk.integrations"
SERVICE_SIDE = ("apphost_sdk.hosting", "apphost_sdk.caching")
PROVISIONING = "provisioning"
PUBLISHING = "apphost_sdk.publishing"
TELEMETRY = "apphost_sdk.telemetry"
DASHBOARD = "apphost_sdk.dashboard"
CONTROL = "apphost_sdk.control"


@attrs.frozen
class Import:
    """One import statement (or ``import_module`` call), with absolute names."""

    path: Path
    line: int
    module: str  # the absolute module named, e.g. apphost_sdk.runtimes.base
    names: tuple[str, ...] = ()  # what ``from module import ...`` takes from it

    def candidates(self) -> Iterator[str]:
        """The modules this may import: ``module``, and ``module.name`` for each name (which
        is a submodule when ``module`` is a package: ``from apphost_sdk import cli``)."""
        yield self.module
        for name in self.names:
            yield f"{self.module}.{name}"

    def __str__(self) -> str:
        where = f"{self.path.relative_to(ROOT)}:{self.line}"
        if self.names:
            return f"{where}: from {self.module} import {', '.join(self.names)}"
        return f"{where}: import {self.module}"


def _module_name(path: Path) -> tuple[str, bool]:
    """``(dotted module name, is a package __init__)`` of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute module a ``from`` import names (``level`` dots before ``module``)."""
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[: max(0, len(base) - (level - 1))]
    return ".".join([*base, module] if module else base)


def _source_files() -> list[Path]:
    files = [p for top in TOP_PACKAGES for p in sorted((ROOT / top).rglob("*.py"))]
    assert files, f"no sources found under {ROOT}"
    return files


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every module ``path`` imports (``source``: its text, read when not given)."""
    importer, is_package = _module_name(path)
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, is_package, node.module, node.level)
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            yield Import(path, node.lineno, base, names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.args[0].value
                if target.startswith("."):  # import_module(".x", package=__name__)
                    dots = len(target) - len(target.lstrip("."))
                    target = _resolve(importer, is_package, target.lstrip(".") or None, dots)
                yield Import(path, node.lineno, target)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(layers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """``file:line: import ...`` for every import from ``forbidden`` inside ``layers``."""
    out: list[str] = []
    checked = 0
    for path in _source_files():
        importer, _ = _module_name(path)
        if not any(_within(importer, layer) for layer in layers):
            continue
        checked += 1
        for imp in imports_of(path):
            hits = sorted({f for m in imp.candidates() for f in forbidden if _within(m, f)})
            if hits:
                out.append(f"{imp}  (forbidden: {', '.join(hits)})")
    assert checked, f"no source file belongs to {layers}: is the layout as this test expects?"
    return out


def _report(layers: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    """Fail listing every violation, one per line (no traceback: the list is the message)."""
    violations = layer_violations(layers, forbidden)
    if violations:
        pytest.fail(
            f"{len(violations)} import(s) break the layering: {' / '.join(layers)} must not "
            f"import {', '.join(forbidden)}:\n  " + "\n  ".join(violations),
            pytrace=False,
        )


# -- the layers ---------------------------------------------------------------------------------
def test_model_imports_no_orchestration_runtimes_or_cli() -> None:
    _report((MODEL,), (ORCHESTRATION, RUNTIMES, CLI))


def test_provisioning_imports_no_orchestration_or_cli() -> None:
    _report((PROVISIONING,), (ORCHESTRATION, CLI))


def test_service_side_imports_nothing_of_the_app_host() -> None:
    _report(
        SERVICE_SIDE,
        (
            MODEL,
            ORCHESTRATION,
            RUNTIMES,
            CLI,
            INTEGRATIONS,
            PROVISIONING,
            TELEMETRY,
            DASHBOARD,
            CONTROL,
        ),
    )


def test_publishing_imports_no_orchestration_runtimes_or_cli() -> None:
    _report((PUBLISHING,), (ORCHESTRATION, RUNTIMES, CLI))


def test_runtimes_import_no_orchestration_cli_or_integrations() -> None:
    _report((RUNTIMES,), (ORCHESTRATION, CLI, INTEGRATIONS))


def test_telemetry_imports_nothing_of_the_app_host() -> None:
    _report((TELEMETRY,), (MODEL, ORCHESTRATION, RUNTIMES, CLI, INTEGRATIONS, DASHBOARD, CONTROL))


def test_dashboard_sees_the_app_only_through_its_source() -> None:
    _report((DASHBOARD,), (MODEL, ORCHESTRATION, RUNTIMES, INTEGRATIONS, CONTROL, CLI))


def test_control_channel_sees_the_app_only_through_its_source() -> None:
    _report((CONTROL,), (MODEL, ORCHESTRATION, RUNTIMES, INTEGRATIONS))


# -- what the layers know -----------------------------------------------------------------------
def _string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, value)`` of every string literal, docstrings and f-string parts included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_provisioning_never_recognises_resources_by_class_name() -> None:
    """Resources are Azure caches by contract (``to_azure_request``), never by class name."""
    violations: list[str] = []
    for path in sorted((ROOT / PROVISIONING).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        for number, line in enumerate(source.splitlines(), 1):
            if "__mro__" in line:
                violations.append(f"{where}:{number}: uses __mro__")
        for number, value in _string_literals(ast.parse(source, filename=str(path))):
            if "AzureRedisResource" in value:
                violations.append(f"{where}:{number}: string literal names AzureRedisResource")
    if violations:
        pytest.fail(
            "provisioning recognises resources by class:\n  " + "\n  ".join(violations),
            pytrace=False,
        )


#: What only a Redis integration may know: runtimes start any container or process.
_REDIS_SPECIFICS = (
    re.compile(r"redis-server", re.IGNORECASE),
    re.compile(r"requirepass", re.IGNORECASE),
    re.compile(r"6379"),
)


def test_runtimes_know_nothing_of_redis() -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{number}: {pattern.pattern!r}: {line.strip()}"
        for path in sorted((ROOT / "apphost_sdk" / "runtimes").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for pattern in _REDIS_SPECIFICS
        if pattern.search(line)
    ]
    if violations:
        pytest.fail(
            "apphost_sdk.runtimes has Redis specifics:\n  " + "\n  ".join(violations),
            pytrace=False,
        )


# -- the checker itself -------------------------------------------------------------------------
def test_the_checker_resolves_relative_lazy_and_type_checking_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from .. import runtimes\n"
        "from ..orchestration.app import App\n"
        "from . import names\n"
        "if TYPE_CHECKING:\n"
        "    from apphost_sdk.cli.main import main\n"
        "def later():\n"
        "    import apphost_sdk.runtimes.base\n"
        "    importlib.import_module('apphost_sdk.integrations.redis')\n"
    )
    module = ROOT / "apphost_sdk" / "model" / "layering_probe.py"
    package = ROOT / "apphost_sdk" / "model" / "__init__.py"
    found = {
        (i.line, i.module, i.names)
        for i in imports_of(module, source)
        if not i.module.startswith(("typing", "__future__", "importlib"))
    }
    assert found == {
        (3, "apphost_sdk", ("runtimes",)),
        (4, "apphost_sdk.orchestration.app", ("App",)),
        (5, "apphost_sdk.model", ("names",)),
        (7, "apphost_sdk.cli.main", ("main",)),
        (9, "apphost_sdk.runtimes.base", ()),
        (10, "apphost_sdk.integrations.redis", ()),
    }
    (init,) = imports_of(package, "from .builder import X\n")
    assert (init.module, init.names) == ("apphost_sdk.model.builder", ("X",))
    (up,) = imports_of(ROOT / "provisioning" / "emulator" / "x.py", "from ..spec import A\n")
    assert up.module == "provisioning.spec"
    assert "apphost_sdk.runtimes" in set(
        next(imports_of(module, "from .. import runtimes\n")).candidates()
    )
