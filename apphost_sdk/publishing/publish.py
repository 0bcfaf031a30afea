"""``publish()``: write an app model's deployment artefacts into a folder.

The ``manifest`` publisher writes Aspire's ``aspire-manifest.json`` plus the files its entries
need (Bicep modules, generated Dockerfiles); ``docker-compose`` writes ``docker-compose.yaml``
and ``.env``. Publishing only writes files: it starts nothing, provisions nothing and calls no
Azure API, so it needs no Azure settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from ..files import write_private
from ..model.arguments import short_repr
from ..model.builder import DistributedApplicationBuilder
from .context import MANIFEST_FILE_NAME, PublishContext, PublishError

#: The publishers ``--publisher`` accepts, the default first.
PUBLISHERS = ("manifest", "docker-compose")
#: The manifest's file name in the output folder (unless ``--output-path`` names a .json file).
MANIFEST_FILE = MANIFEST_FILE_NAME
#: Files the operator fills with secrets: written readable by their owner only.
PRIVATE_FILES = frozenset({".env"})


@attrs.frozen
class OutputTarget:
    """Where a publisher writes: the folder, and the manifest's file name in it."""

    directory: Path
    manifest_name: str = MANIFEST_FILE


def check_publisher(publisher: object) -> str:
    """``publisher`` if it is one of :data:`PUBLISHERS`, else a :class:`PublishError`."""
    if isinstance(publisher, str) and publisher in PUBLISHERS:
        return publisher
    shown = short_repr(publisher)
    raise PublishError(f"unknown publisher {shown}: use {' or '.join(PUBLISHERS)}")


def output_target(output_path: object, publisher: str = "manifest") -> OutputTarget:
    """The folder and manifest name for ``output_path``: as in Aspire, a path ending in
    ``.json`` names the manifest file itself (manifest publisher only), any other a folder."""
    if isinstance(output_path, os.PathLike):
        output_path = os.fspath(output_path)
    if not isinstance(output_path, str) or not output_path.strip():
        raise PublishError(
            f"the output path must be a folder name, got {short_repr(output_path)}: "
            "give one with -o DIR (or --output-path DIR)"
        )
    try:
        path = Path(output_path).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise PublishError(f"{output_path}: cannot expand '~'; give a full path") from None
    if publisher == "manifest" and path.suffix.casefold() == ".json":
        return OutputTarget(path.parent, path.name)
    return OutputTarget(path)


def publish(
    app_or_builder: Any, output_dir: str | os.PathLike[str], publisher: str = "manifest"
) -> list[Path]:
    """Write the artefacts of ``publisher`` for the app (``builder.build()``, or its builder)
    into ``output_dir`` and return the written files, the manifest first.

    The folder is created; files written replace those of the same name (values filled in an
    existing ``.env`` are kept), other files are left alone. Raises :class:`PublishError` (or
    the writers' own ``ApphostError``) for what cannot be published.
    """
    publisher = check_publisher(publisher)
    target = output_target(output_dir, publisher)
    builder, model = _model_of(app_or_builder)
    _check_directory(target.directory)
    context = _new_context(builder, target)
    files: dict[str, str] = {}
    if publisher == "manifest":
        from .manifest import build_manifest, manifest_text

        # The manifest's entries; the files they need are added to ``context.files``.
        files[target.manifest_name] = manifest_text(build_manifest(builder, context))
    else:
        from .compose import write_compose

        write_compose(model, context)  # docker-compose.yaml, .env, Dockerfiles
    for name in sorted(context.files):
        files.setdefault(name, context.files[name])
    return write_files(target.directory, files)


def write_files(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Write ``files`` (paths relative to ``directory``, with ``/``) in their order, each
    atomically, creating the folders; return their paths. A path that would leave the folder
    is refused."""
    for name in files:
        _check_relative(name)
    written: list[Path] = []
    for name, text in files.items():
        path = directory.joinpath(*PurePosixPath(name).parts)
        mode = 0o600 if PurePosixPath(name).name in PRIVATE_FILES else 0o644
        try:
            write_private(path, text, mode=mode)
        except OSError as exc:
            raise PublishError(
                f"cannot write {path}: {exc.strerror or exc}; choose another output folder"
            ) from None
        written.append(path)
    return written


def _check_relative(name: str) -> None:
    parts = PurePosixPath(name).parts
    if not name or "\\" in name or PurePosixPath(name).is_absolute() or ".." in parts:
        raise PublishError(
            f"the publisher produced the file name {short_repr(name)}, which is not a path "
            "inside the output folder; report this as a bug of the publisher"
        )


def _check_directory(directory: Path) -> None:
    """Refuse an output path that is a file, before the writers run. Files are written only
    after the whole model published, so a model error writes nothing; an OS error while
    writing (a full disk) may leave the files written before it."""
    if directory.exists() and not directory.is_dir():
        raise PublishError(f"{directory} exists and is not a folder; give another output path")


def _model_of(app_or_builder: Any) -> tuple[DistributedApplicationBuilder, Any]:
    """The builder and validated model of a built app (or of a builder, built here)."""
    app = app_or_builder
    if isinstance(app, DistributedApplicationBuilder):
        app = app.build()  # validates the model, reporting every problem
    builder = getattr(app, "builder", None)
    model = getattr(app, "model", None)
    if not isinstance(builder, DistributedApplicationBuilder) or model is None:
        raise PublishError(
            f"publish() takes the built app (builder.build()) or its builder, got "
            f"{type(app_or_builder).__name__}"
        )
    return builder, model


def _new_context(builder: DistributedApplicationBuilder, target: OutputTarget) -> PublishContext:
    """The writers' shared context for ``target``."""
    return PublishContext(output_dir=target.directory, app_host_dir=builder.app_host_directory)
