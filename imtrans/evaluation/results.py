"""The result files of ``imtrans eval``: one per protocol, merged metric by metric, never lost.

A result is written to ``<checkpoint stem>_<split>_<direction>.json`` in ``<run>/eval/``. When
that file already holds scores of the same protocol (the same checkpoint, split, direction,
data, image counts, preprocessing, generator mode and seed, and, for scores both compute, the
same Inception weights and KID settings), the new scores are merged into it: metrics computed
again replace the old values, the others are kept. A result of another protocol goes beside
it, to ``<stem>_<split>_<direction>-<key>.json``, where ``<key>`` is 8 hex digits of the
sha256 of the protocol's identity (:func:`protocol_key`), then ``-<key>-2.json``, ``-3``... in
the rare case that name holds an incompatible result too (other Inception weights on the same
images). A file is only ever rewritten with every score it held, and atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imtrans.core.atomic import atomic_write
from imtrans.core.jsonfile import loads_bounded
from imtrans.core.regular_files import read_regular_file
from imtrans.errors import ImtransError
from imtrans.evaluation.caveats import standing_warnings
from imtrans.evaluation.evaluate import EvalResult

__all__ = ["SavedResult", "compatible", "merge_results", "protocol_key", "save_result",
           "write_result"]

#: Protocol entries that decide which images are translated and compared: results must agree
#: on every one (a file that lacks one, written before it was recorded, is never merged into).
IDENTITY = ("data_root", "split", "paired", "images", "image_size", "test_preprocessing",
            "generation")
#: Entries of the top level of a result that name what was scored.
SUBJECT = ("step", "split", "direction")
#: Entries of a protocol section that do not change a score (the same weights at two paths).
_INCIDENTAL = {"inception": {"file"}}

#: The largest result file read back to merge into (one is a few KB): a larger one is left
#: alone, and the new result written beside it.
MAX_RESULT_BYTES = 16 << 20


@dataclass(frozen=True)
class SavedResult:
    """Where :func:`save_result` wrote, and what the file now holds.

    Attributes:
        path: The result file.
        record: Its content (the merged result when it held one already).
        kept: Metrics the file held already and this result did not compute, kept as they were.
        merged: Whether the result was merged into an existing file (else the file is new).
    """

    path: Path
    record: dict[str, Any]
    kept: list[str]
    merged: bool


def _subject(record: dict[str, Any]) -> dict[str, Any]:
    checkpoint = record.get("checkpoint")
    # By name: a run folder that was moved or copied still holds the same checkpoint.
    named = Path(checkpoint).name if isinstance(checkpoint, str) else checkpoint
    return {"checkpoint": named} | {key: record.get(key) for key in SUBJECT}


def protocol_key(record: dict[str, Any]) -> str:
    """8 hex digits that name the protocol of a result (its subject and identity entries)."""
    protocol = record.get("protocol") or {}
    identity = _subject(record) | {key: protocol.get(key) for key in IDENTITY}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _section(name: str, value: Any) -> Any:
    if isinstance(value, dict) and name in _INCIDENTAL:
        return {k: v for k, v in value.items() if k not in _INCIDENTAL[name]}
    return value


def compatible(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` may be merged into ``old``: the same subject, every identity entry
    present in both and equal, and every other protocol section both have equal (a PSNR-only
    result has no Inception section, so it merges with an FID result of the same images)."""
    old_protocol, new_protocol = old.get("protocol"), new.get("protocol")
    if not isinstance(old_protocol, dict) or not isinstance(new_protocol, dict) \
            or not isinstance(old.get("metrics"), dict) or _subject(old) != _subject(new):
        return False
    if any(key not in old_protocol or key not in new_protocol
           or old_protocol[key] != new_protocol[key] for key in IDENTITY):
        return False
    shared = (old_protocol.keys() & new_protocol.keys()) - set(IDENTITY)
    return all(_section(key, old_protocol[key]) == _section(key, new_protocol[key])
               for key in shared)


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``new`` with the metrics (and their protocol sections) of ``old`` it does not have;
    and the names of those kept metrics. The warnings are those of the merged scores."""
    metrics = dict(old["metrics"]) | dict(new["metrics"])
    kept = [name for name in old["metrics"] if name not in new["metrics"]]
    protocol = dict(old["protocol"]) | dict(new["protocol"])
    merged = dict(new) | {"metrics": metrics, "protocol": protocol}
    # Those the merged scores imply (few images, non-standard Inception), then the new
    # result's own (degenerate scores).
    implied = standing_warnings(new["metrics"], new["protocol"])
    merged["warnings"] = standing_warnings(metrics, protocol) + [
        w for w in new.get("warnings", []) if w not in implied]
    return merged, kept


def _read(path: Path) -> dict[str, Any] | None:
    try:  # a FIFO is not opened (it would block), nor a file larger than any result
        value = loads_bounded(read_regular_file(path, what="evaluation result",
                                                max_bytes=MAX_RESULT_BYTES).decode("utf-8"))
    except (ImtransError, ValueError):
        return None  # unreadable: never merged into, never overwritten
    return value if isinstance(value, dict) else None


def _candidates(folder: Path, base: str, key: str) -> list[Path]:
    """The existing files a result named ``base`` with protocol ``key`` may merge into."""
    pattern = re.compile(rf"{re.escape(base)}-{key}(?:-(\d+))?\.json")
    numbered = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = pattern.fullmatch(path.name)
            if match:
                numbered.append((int(match.group(1) or 1), path))
    first = folder / f"{base}.json"
    return ([first] if first.exists() else []) + [path for _, path in sorted(numbered)]


def _free_name(folder: Path, base: str, key: str) -> Path:
    names = [f"{base}.json", f"{base}-{key}.json"]
    for name in names:
        if not (folder / name).exists():
            return folder / name
    number = 2
    while (folder / f"{base}-{key}-{number}.json").exists():
        number += 1
    return folder / f"{base}-{key}-{number}.json"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so that two ``imtrans eval`` at once do not both
    read a file, merge and write (the second write would drop the first one's scores)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): results are still written atomically
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def save_result(result: EvalResult | dict[str, Any], folder: Path, stem: str) -> SavedResult:
    """Write ``result`` of the checkpoint named ``stem`` into ``folder``, merging it into the
    file of the same protocol when there is one (see the module's description of the names).

    Raises:
        OSError: the folder cannot be created or written (no result file is changed).
    """
    record = asdict(result) if isinstance(result, EvalResult) else dict(result)
    base = f"{stem}_{record['split']}_{record['direction']}"
    key = protocol_key(record)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        for path in _candidates(folder, base, key):
            old = _read(path)
            if old is not None and compatible(old, record):
                merged, kept = merge_results(old, record)
                atomic_write(path, _dumps(merged))
                return SavedResult(path, merged, kept, merged=True)
        path = _free_name(folder, base, key)
        atomic_write(path, _dumps(record))
        return SavedResult(path, record, [], merged=False)


def write_result(result: EvalResult, path: Path) -> Path:
    """Write ``result`` as JSON to ``path`` (atomically), replacing what it held; ``imtrans
    eval`` uses :func:`save_result`, which never loses an earlier score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _dumps(asdict(result)))
    return path


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2) + "\n"
