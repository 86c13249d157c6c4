"""Getting an official pretrained model into an imtrans run directory: download, then import.

:func:`fetch_model` downloads a catalogue entry's ``.pth`` into ``<run dir>/official/`` under
the name the official script gives it (``latest_net_G.pth``), resumably
(:func:`imtrans.data.download.download`: a ``.part`` file continued with a ``Range`` request),
then hands that folder to :func:`imtrans.zoo.importer.import_official` with the entry's
architecture, which makes ``<run dir>`` a run that ``imtrans translate`` and ``[init] from``
accept.

The official site publishes no checksums: the sha256 of the download is recorded in the
checkpoint's manifest (``imported``), and what verifies the file is the strict load of the
official architecture. A file that fails it is kept (to look at, or to import by hand with
other options) and nothing else is left in the run directory.

A mirror, or a test server, replaces the official URLs with ``base_url`` (or the environment
variable ``IMTRANS_MODELS_URL``): the file is then ``{base_url}/{catalogue name}.pth``, one flat
folder in which the prefixed names (``pix2pix_sat2map.pth``, ``cyclegan_sat2map.pth``) keep the
two methods' files apart.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imtrans.data.download import Downloaded, Progress, download
from imtrans.errors import CheckpointError
from imtrans.runs.checkpoints.files import list_checkpoints
from imtrans.runs.directory import RunDir
from imtrans.zoo.catalog import ModelEntry, get_model

if TYPE_CHECKING:  # the importer pulls in torch and the networks: only when a model is fetched
    from imtrans.zoo.importer import Imported

__all__ = ["BASE_URL_ENV", "MAX_MODEL_BYTES", "OFFICIAL_FOLDER", "VERIFIED_BY", "FetchedModel",
           "fetch_model", "model_url", "size_limit"]

#: The environment variable that replaces the official download URLs with a mirror's.
BASE_URL_ENV = "IMTRANS_MODELS_URL"
#: The folder of the run directory that keeps the official file as downloaded.
OFFICIAL_FOLDER = "official"
#: What vouches for a download, as recorded in the checkpoint's provenance.
VERIFIED_BY = "strict load of the official architecture; the official site publishes no checksums"


@dataclass(frozen=True)
class FetchedModel:
    """An official model downloaded and imported.

    Attributes:
        entry: The catalogue entry.
        url: Where it was downloaded from.
        official_file: The file as downloaded, ``<run dir>/official/latest_net_G.pth``.
        downloaded: Its size and sha256 (never verified by a checksum: none is published).
        imported: What the importer made of it: the run directory, checkpoint and roles.
    """

    entry: ModelEntry
    url: str
    official_file: Path
    downloaded: Downloaded
    imported: Imported

    @property
    def run_dir(self) -> Path:
        """The imtrans run directory."""
        return self.imported.run_dir

    @property
    def checkpoint(self) -> Path:
        """The imported checkpoint, inside :attr:`run_dir`."""
        return self.imported.checkpoint


def model_url(entry: ModelEntry, base_url: str | None = None) -> str:
    """Where ``entry`` is downloaded from: its official URL, or ``{base}/{name}.pth`` when a
    base URL is given (or set in ``IMTRANS_MODELS_URL``).

    Example:
        >>> from imtrans.zoo.catalog import get_model
        >>> model_url(get_model("pix2pix_sat2map"), "http://mirror.example/models/")
        'http://mirror.example/models/pix2pix_sat2map.pth'
    """
    base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    return entry.url if base is None else f"{base.rstrip('/')}/{entry.name}.pth"


def _holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds checkpoints or a recipe: the importer would refuse it, so it
    is refused before a download rather than after."""
    run = RunDir(run_dir)
    return run.recipe.exists() or bool(list_checkpoints(run.checkpoints))


def _remove_new(run_dir: Path, before: set[str]) -> None:
    """Remove what appeared in ``run_dir`` since ``before`` was listed (a failed import)."""
    for path in run_dir.iterdir():
        if path.name in before:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


#: The most bytes a model of unknown size may bring (official generators are under 250 MB).
MAX_MODEL_BYTES = 1 << 30


def size_limit(entry: ModelEntry) -> int:
    """The most bytes a download of ``entry`` may bring: twice its tensors' float32 size
    plus 16 MiB for the pickle around them (an official file is within a few KB of its
    tensors), or :data:`MAX_MODEL_BYTES` when the size is unknown. A server that sends more
    is not serving this model."""
    if entry.approx_bytes is None:
        return MAX_MODEL_BYTES
    return 2 * entry.approx_bytes + (16 << 20)


def fetch_model(name_or_entry: str | ModelEntry, output: Path | str, *,
                progress: Progress | None = None, timeout: float = 60.0,
                base_url: str | None = None,
                on_stage: Callable[[str], None] | None = None,
                deadline: float | None = None) -> FetchedModel:
    """Download an official pretrained model and import it into the run directory ``output``.

    Args:
        name_or_entry: A catalogue name (see :func:`imtrans.zoo.catalog.get_model`), or an
            entry (a mirror's, or a test's with a smaller architecture).
        output: The run directory to create, by convention ``runs/<name>``. The file is
            downloaded to ``<output>/official/latest_net_G.pth`` and resumed from its ``.part``
            after an interruption; a complete earlier download is reused.
        progress: Download progress, ``(bytes so far, total or None)``.
        timeout: Network timeout in seconds, on connect and on each read.
        base_url: Download ``{base_url}/{name}.pth`` instead of the official URL; default:
            the ``IMTRANS_MODELS_URL`` environment variable, else the official URL.
        on_stage: Told ``"download"`` then ``"import"`` as each step starts.
        deadline: Seconds the whole download may take (default: derived from its size, see
            :func:`imtrans.data.download.download`).

    Returns:
        The download and the import.

    Raises:
        DataError: an unknown or ambiguous name, or a failed download (a partial file is
            kept for a resume, unless it cannot be the file: more bytes than
            :func:`size_limit` allows).
        CheckpointError: ``output`` already holds a run (checkpoints or a recipe); or the file
            does not load strictly into the catalogue's architecture (the message says so, and
            where the downloaded file was kept; the run directory is left without a checkpoint).

    Example:
        >>> fetch_model("horse2zebra", "runs/horse2zebra").checkpoint  # doctest: +SKIP
        PosixPath('runs/horse2zebra/checkpoints/step_00000000.safetensors')
    """
    from imtrans.zoo.importer import check_import_target, import_official

    entry = get_model(name_or_entry) if isinstance(name_or_entry, str) else name_or_entry
    run_dir = Path(output)
    if _holds_a_run(run_dir):
        raise CheckpointError(f"{run_dir} already holds a run (checkpoints or recipe.toml); "
                              f"delete it, or choose another folder, to download {entry.name} "
                              "into")
    check_import_target(run_dir)  # inside another run, links: refused before the download
    if (run_dir / OFFICIAL_FOLDER).is_symlink():
        raise CheckpointError(f"{run_dir / OFFICIAL_FOLDER} is a symbolic link: a download "
                              "never writes through one; remove it, or choose another folder")
    url = model_url(entry, base_url)
    official = run_dir / OFFICIAL_FOLDER / entry.file_name
    if on_stage is not None:
        on_stage("download")
    got = download(url, official, progress=progress, timeout=timeout,
                   max_bytes=size_limit(entry), deadline=deadline)
    if on_stage is not None:
        on_stage("import")
    provenance = {"catalogue": entry.name, "url": url, "sha256": got.sha256, "size": got.size,
                  "verified_by": VERIFIED_BY}
    before = {path.name for path in run_dir.iterdir()}
    try:
        imported = import_official(official.parent, run_dir, options=entry.architecture,
                                   provenance=provenance)
    except CheckpointError as exc:
        _remove_new(run_dir, before)
        raise CheckpointError(
            f"the file downloaded from {url} does not match the catalogue's architecture for "
            f"{entry.name} ({entry.architecture_text}): {exc}; the download is kept at "
            f"{official}") from exc
    except BaseException:  # Ctrl-C or another failure: no half-imported run either
        _remove_new(run_dir, before)
        raise
    return FetchedModel(entry, url, official, got, imported)
