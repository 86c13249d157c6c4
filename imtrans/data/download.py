"""Getting a catalog dataset onto disk: resumable verified download, then safe extraction.

:func:`download` streams into ``<dest>.part`` and resumes it with a ``Range`` request; the
file is moved to ``dest`` only after its size and checksums passed, flushed to disk on the way
(:func:`imtrans.core.atomic.atomic_path`). :func:`extract` unpacks into a temporary sibling folder
renamed into place when complete. :func:`fetch_dataset` ties both to the catalog. Only the
standard library is used (urllib, zipfile, tarfile).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any

from imtrans.core.atomic import atomic_path
from imtrans.core.open_flags import open_flags
from imtrans.data.catalog import CatalogEntry, get_entry
from imtrans.errors import DataError
from imtrans.version import __version__

__all__ = ["Downloaded", "Fetched", "Progress", "created_folder", "download", "extract",
           "fetch_dataset"]

#: Called with (bytes so far, total bytes or None when the server does not say).
Progress = Callable[[int, int | None], None]

_CHUNK = 1 << 20
#: The most bytes a download of unknown size may bring (the largest catalogued archive,
#: edges2handbags, is about 8 GB): a server that streams without end stops here.
MAX_DOWNLOAD_BYTES = 16 << 30
#: A download without ``deadline`` may take this long, plus its size at :data:`SLOWEST_RATE`.
BASE_DEADLINE_S = 600.0
#: Bytes per second: a slower server is given up on (its ``.part`` is kept to resume).
SLOWEST_RATE = 100 << 10
_NETWORK_ERRORS = (urllib.error.URLError, HTTPException, OSError)
_CLUTTER = ("__MACOSX", ".DS_Store")  # macOS leaves these beside an archive's top folder


@dataclass(frozen=True)
class Downloaded:
    """A downloaded file that passed every check it could be given.

    Attributes:
        path: Where the file is.
        size: Its size in bytes.
        sha256: Its sha256 (hex), computed even when none was expected, so it can be pinned.
        verified: Whether a known checksum (sha256 or md5) was checked and matched.
    """

    path: Path
    size: int
    sha256: str
    verified: bool


def _digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


@contextlib.contextmanager
def created_folder(folder: Path) -> Iterator[Path]:
    """Create ``folder`` and its missing parents for the block; when the block fails, remove
    those it created that are empty again, so that a failed download leaves no empty folders
    (a folder holding a ``.part`` kept to resume stays, with its parents).

    Example:
        >>> with created_folder(Path("datasets")) as folder:  # doctest: +SKIP
        ...     download(url, folder / "facades.tar.gz")
    """
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # not empty (a file kept to resume), or already gone: keep the rest
        raise


def _open(url: str, offset: int, timeout: float,
          extra: Mapping[str, str] | None = None) -> HTTPResponse:
    headers = {"User-Agent": f"imtrans/{__version__}", **(extra or {})}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_length(response: HTTPResponse, url: str) -> int | None:
    """The ``Content-Length`` the server sent, None when absent; a value that is not a count
    (``abc``, ``-5``) is refused: the answer cannot be trusted."""
    text = response.headers.get("Content-Length")
    if text is None:
        return None
    if not text.strip().isdigit():  # "-5", "abc", "1e3", "" are all refused
        raise DataError(f"cannot download {url}: the server sent an invalid Content-Length "
                        f"{text[:40]!r}")
    return int(text.strip())


def _too_long(part: Path, url: str, why: str) -> DataError:
    """Delete ``part``, which cannot be the file, and say why."""
    part.unlink(missing_ok=True)
    return DataError(f"download of {url} stopped: {why}; the partial file cannot be the "
                     "expected one and was deleted")


@dataclass(frozen=True)
class _Bounds:
    """How far one download may go.

    Attributes:
        limit: Bytes at most: the file's exact size when ``size_known``, else a ceiling.
        size_known: Whether ``limit`` is the file's size.
        deadline_s: Seconds the whole download may take; None: derived from its size.
        started: When it started, on the monotonic clock.
    """

    limit: int
    size_known: bool
    deadline_s: float | None
    started: float

    def deadline(self, total: int | None) -> float:
        """When to give up, on the monotonic clock: the given seconds, else
        :data:`BASE_DEADLINE_S` plus the time the size takes at :data:`SLOWEST_RATE`."""
        if self.deadline_s is not None:
            return self.started + self.deadline_s
        return self.started + BASE_DEADLINE_S + (total or self.limit) / SLOWEST_RATE


def _check_part(part: Path) -> None:
    """Refuse a ``.part`` that is a link (symbolic or hard) or not a regular file: resuming
    appends to it, which would write into the file it links to."""
    try:
        info = os.lstat(part)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        what = f"a symbolic link (to {os.readlink(part)})"
    elif not stat.S_ISREG(info.st_mode):
        what = "not a regular file"
    elif info.st_nlink > 1:
        what = f"a hard link (a file with {info.st_nlink} names)"
    else:
        return
    raise DataError(f"{part} is {what}, not a partial download: a download never writes "
                    "through it; delete it to start over")


class _Interrupted(Exception):
    """A download stopped part-way: what its ``.part`` holds is a prefix of the file."""


def _stream(url: str, part: Path, bounds: _Bounds, progress: Progress | None,
            timeout: float, headers: Mapping[str, str] | None) -> None:
    """Bring ``part`` to the full length of ``url``, resuming it when possible."""
    size = bounds.limit if bounds.size_known else None
    offset = part.stat().st_size if part.exists() else 0
    if offset > bounds.limit:
        part.unlink()  # longer than the real file (or than any file), so not a prefix of it
        offset = 0
    if size is not None and offset == size:
        return  # an earlier run got every byte but stopped before verifying
    try:
        response = _open(url, offset, timeout, headers)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        # 416: the range starts at or past the end: the .part is complete, or too long.
        if (exc.headers.get("Content-Range") or "") == f"bytes */{offset}":
            return
        part.unlink()
        offset = 0
        response = _open(url, 0, timeout, headers)
    with response:
        if offset and response.status == 206:
            answered = response.headers.get("Content-Range") or ""
            if not answered.startswith(f"bytes {offset}-"):
                raise DataError(f"cannot resume {url}: asked for bytes={offset}-, the server "
                                f"sent {answered!r}; delete {part} to start over")
        else:
            offset = 0  # a 200 answer carries the whole file: start over
        length = _content_length(response, url)
        if length is not None and offset + length > bounds.limit:
            expected = "the expected" if bounds.size_known else "the most accepted,"
            raise _too_long(part, url, f"the server announced {offset + length:,} bytes, more "
                                       f"than {expected} {bounds.limit:,}")
        total = offset + length if length is not None else size
        deadline = bounds.deadline(total)
        done = offset
        # O_NOFOLLOW: a link planted at the .part after _check_part is not written through
        # (Windows has none: there _check_part's look is all). O_BINARY: Windows' text mode
        # would turn each 0x0A byte into 0D 0A.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        with os.fdopen(os.open(part, flags | open_flags("O_NOFOLLOW", "O_BINARY"), 0o666),
                       "wb") as handle:  # 0o666 less the umask, as open() makes files
            try:
                while True:
                    if progress is not None:
                        progress(done, total)
                    # read1: what has arrived, so that a trickle cannot hold one read forever.
                    chunk = response.read1(min(_CHUNK, bounds.limit - done + 1))
                    if not chunk:
                        break
                    handle.write(chunk)
                    done += len(chunk)
                    if done > bounds.limit:
                        handle.close()
                        expected = "the expected" if bounds.size_known else "the most accepted,"
                        raise _too_long(part, url, f"the server sent more than {expected} "
                                                   f"{bounds.limit:,} bytes")
                    if time.monotonic() > deadline:
                        raise _Interrupted(
                            f"download of {url} passed its deadline after {done:,} bytes (the "
                            "server is too slow; see --deadline)")
            except _NETWORK_ERRORS as exc:
                raise _Interrupted(f"download of {url} interrupted after {done:,} bytes "
                                   f"({exc})") from exc
    if total is not None and done < total:
        # http.client returns b"" rather than raising when the connection closes early.
        raise _Interrupted(f"download of {url} interrupted after {done:,} of {total:,} bytes")


def _verify(path: Path, size: int | None, sha256: str | None, md5: str | None,
            url: str) -> tuple[int, str]:
    """Check size and checksums; delete the file and raise when any differs."""
    got_size = path.stat().st_size
    got_sha256, got_md5 = _digests(path)
    problems = []
    if size is not None and got_size != size:
        problems.append(f"size expected {size:,} bytes, got {got_size:,}")
    if sha256 is not None and got_sha256 != sha256.lower():
        problems.append(f"sha256 expected {sha256.lower()}, got {got_sha256}")
    if md5 is not None and got_md5 != md5.lower():
        problems.append(f"md5 expected {md5.lower()}, got {got_md5}")
    if problems:
        path.unlink()
        raise DataError(f"download of {url} failed verification ({'; '.join(problems)}); "
                        "the file was deleted, run again to download it anew")
    return got_size, got_sha256


def download(url: str, dest: Path, *, expected_size: int | None = None,
             sha256: str | None = None, md5: str | None = None,
             progress: Progress | None = None, timeout: float = 60.0,
             max_bytes: int | None = None, deadline: float | None = None,
             headers: Mapping[str, str] | None = None, resumable: bool = True) -> Downloaded:
    """Download ``url`` to ``dest``, resuming a partial download and verifying the result.

    Bytes go to ``<dest>.part``. An existing ``.part`` is resumed with ``Range: bytes=N-``;
    a ``200`` answer (a server that ignores ranges) restarts it; a ``416`` answer means it is
    already complete (or, when longer than the file, it is discarded). Size and known checksums
    are checked before the rename to ``dest``. An existing ``dest`` that passes is reused.

    Nothing is unbounded. The download stops at ``expected_size``, else at ``max_bytes``
    (default :data:`MAX_DOWNLOAD_BYTES`), and is refused at once when the server's
    ``Content-Length`` says more; a server that sends more, or an invalid ``Content-Length``,
    is an error and a ``.part`` that cannot be the file is deleted. The whole download must end
    within ``deadline`` seconds (default: :data:`BASE_DEADLINE_S` plus the size at
    :data:`SLOWEST_RATE`), not only each read within ``timeout``; a download past its deadline
    keeps its ``.part`` to resume. A failed download leaves no empty ``.part`` and no folder it
    created empty (:func:`created_folder`).

    Args:
        url: An ``http://`` or ``https://`` URL.
        dest: Where the file should end up; its folder is created.
        expected_size: The exact size in bytes, if known.
        sha256: The expected sha256 (hex), if known.
        md5: The expected md5 (hex), if known.
        progress: Called as bytes arrive with ``(bytes so far, total or None)``.
        timeout: Seconds to wait for the server on connect and on each read.
        max_bytes: The most bytes accepted when ``expected_size`` is unknown.
        deadline: Seconds the whole download may take (default: derived from the size).
        headers: More request headers (``Accept``, say).
        resumable: False: an earlier ``.part`` is not resumed and a failed download keeps no
            ``.part`` (for small files, or ones fetched through an index on each run).

    Returns:
        The file, its size, its sha256 and whether a checksum verified it.

    Raises:
        DataError: a bad URL, too little disk space, a network or HTTP error or a missed
            deadline (the ``.part`` is kept for a resume when ``resumable``), more bytes than
            expected or accepted, an invalid ``Content-Length``, or a size or checksum other
            than expected (the file is deleted; the message shows expected and got).

    Example:
        >>> download("http://example.org/facades.tar.gz", Path("datasets/facades.tar.gz"),
        ...          md5="e2e25dd517e9d15828416ab329da2854").verified  # doctest: +SKIP
        True
    """
    if not url.startswith(("http://", "https://")):
        raise DataError(f"cannot download {url!r}: only http:// and https:// URLs are supported")
    dest = Path(dest)
    with created_folder(dest.parent):
        return _download(url, dest, expected_size, sha256, md5, progress, timeout, max_bytes,
                         deadline, headers, resumable)


def _download(url: str, dest: Path, expected_size: int | None, sha256: str | None,
              md5: str | None, progress: Progress | None, timeout: float,
              max_bytes: int | None, deadline: float | None,
              headers: Mapping[str, str] | None, resumable: bool) -> Downloaded:
    """:func:`download` once ``dest``'s folder exists."""
    verified = sha256 is not None or md5 is not None
    if dest.is_file():
        try:
            return Downloaded(dest, *_verify(dest, expected_size, sha256, md5, url), verified)
        except DataError:
            pass  # _verify deleted the stale file: download it again
    part = dest.with_suffix(dest.suffix + ".part")
    _check_part(part)
    if not resumable:
        part.unlink(missing_ok=True)
    if expected_size is not None:
        missing = expected_size - (part.stat().st_size if part.exists() else 0)
        free = shutil.disk_usage(dest.parent).free
        if missing > free:
            raise DataError(f"not enough disk space in {dest.parent} for {url}: "
                            f"{missing:,} more bytes needed, {free:,} free")
    started = time.monotonic()
    limit = expected_size if expected_size is not None else (
        MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes)
    bounds = _Bounds(limit, expected_size is not None, deadline, started)
    if deadline is not None:  # one blocked read may not outlast the whole download
        timeout = max(0.1, min(timeout, deadline))
    try:
        _stream(url, part, bounds, progress, timeout, headers)
    except _NETWORK_ERRORS as exc:
        reason = f"cannot download {url}: {getattr(exc, 'reason', exc)}"
        raise _stopped(part, resumable, reason, "; run again to resume from") from exc
    except _Interrupted as exc:
        raise _stopped(part, resumable, str(exc), "; run it again to resume from") from exc
    except BaseException:
        if not resumable:
            part.unlink(missing_ok=True)
        raise
    size, digest = _verify(part, expected_size, sha256, md5, url)
    with atomic_path(dest) as temporary:  # flushed to disk before it takes the final name
        os.replace(part, temporary)
    return Downloaded(dest, size, digest, verified)


def _stopped(part: Path, resumable: bool, reason: str, resume: str) -> DataError:
    """The error of a download that stopped part-way. Its ``.part`` is kept to resume when it
    holds bytes and the download is ``resumable``; otherwise it is deleted and not offered."""
    if resumable and part.exists() and part.stat().st_size:
        return DataError(f"{reason}{resume} {part}")
    part.unlink(missing_ok=True)
    return DataError(reason if resumable else f"{reason}; nothing was kept")


def _outside(name: str) -> bool:
    """Whether an archive path (relative to the extraction root) leaves the root."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return True
    normal = posixpath.normpath(name.replace("\\", "/"))
    return normal == ".." or normal.startswith("../")


def _check_member(archive: Path, name: str, link: str | None, relative_to_member: bool) -> None:
    """Refuse a member written outside the root, or a link that points outside it."""
    where = None
    if _outside(name):
        where = "would be written outside the destination"
    elif link is not None:
        # Symlink targets are relative to the link's folder; tar hardlinks to the archive root.
        target = posixpath.join(posixpath.dirname(name), link) if relative_to_member else link
        if link.startswith(("/", "\\")) or _outside(target):
            where = f"is a link to {link!r}, outside the destination"
    if where:
        raise DataError(f"refusing to extract {archive}: member {name!r} {where}")


def _check_resolved(archive: Path, into: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member that, through links already extracted, resolves outside ``into``.

    Each link of a chain can point inside where it is written while the chain ends outside
    (``a -> ..``, ``a/b -> ..``, ``a/b/c -> ..``); only the file system can tell.
    """
    root = os.path.realpath(into)
    path = os.path.join(into, member.name)
    targets = [path]
    if member.issym():
        targets.append(os.path.join(os.path.dirname(path), member.linkname))
    elif member.islnk():
        targets.append(os.path.join(into, member.linkname))
    for target in targets:
        resolved = os.path.realpath(target)
        if os.path.commonpath([root, resolved]) != root:
            raise DataError(f"refusing to extract {archive}: member {member.name!r} resolves to "
                            f"{resolved}, outside the destination")


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():  # all checked before anything is written
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            link = zipped.read(info).decode("utf-8", "replace") if is_link else None
            _check_member(archive, info.filename, link, relative_to_member=True)
        zipped.extractall(into)


def _extract_tar(archive: Path, into: Path) -> None:
    # The "data" filter (Python >= 3.11.4) checks every member again, as a third defence.
    safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:  # one pass: each member is checked before it is written
            link = member.linkname if member.issym() or member.islnk() else None
            _check_member(archive, member.name, link, relative_to_member=member.issym())
            if not (member.isfile() or member.isdir() or link is not None):
                raise DataError(f"refusing to extract {archive}: {member.name!r} is a device")
            # The "data" filter does this too, but older Pythons have no filter.
            _check_resolved(archive, into, member)
            tar.extract(member, into, **safe)


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a zip or tar(.gz) archive into ``dest``, atomically and safely.

    Members go to a temporary folder beside ``dest``, renamed to ``dest`` only when all are
    out; on any error it is removed and ``dest`` is untouched. An archive holding one top
    folder (as the official ones do: ``facades/train/...``) gives that folder's content, so
    ``dest/train/`` exists afterwards.

    Args:
        archive: A zip or tar file, compressed or not (the format is read from its bytes).
        dest: The folder to create; it must not exist, or be empty.

    Returns:
        ``dest``.

    Raises:
        DataError: ``dest`` is not empty; the archive is unreadable or empty; or a member would
            be written outside ``dest`` (``../``, an absolute path, a link pointing outside).

    Example:
        >>> extract(Path("datasets/facades.tar.gz"), Path("datasets/facades"))  # doctest: +SKIP
        PosixPath('datasets/facades')
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"cannot extract {archive} into {dest}: it exists and is not empty")
    with created_folder(dest.parent):
        _extract(archive, dest)
    return dest


def _extract(archive: Path, dest: Path) -> None:
    """:func:`extract` once ``dest``'s folder exists."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        else:
            raise DataError(f"cannot extract {archive}: it is neither a zip nor a tar archive")
        for clutter in (staging / name for name in _CLUTTER):
            if clutter.is_dir():
                shutil.rmtree(clutter)
            elif clutter.exists():
                clutter.unlink()
        top = list(staging.iterdir())
        if not top:
            raise DataError(f"cannot extract {archive}: it holds no files")
        single = len(top) == 1 and top[0].is_dir() and not top[0].is_symlink()
        if dest.exists():
            dest.rmdir()
        os.replace(top[0] if single else staging, dest)
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot extract {archive}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class Fetched:
    """A catalog dataset on disk.

    Attributes:
        entry: The catalog entry.
        path: The dataset folder, ``<datasets_dir>/<name>``.
        downloaded: The verified archive, or ``None`` when the folder was already there.
    """

    entry: CatalogEntry
    path: Path
    downloaded: Downloaded | None


def fetch_dataset(name: str | CatalogEntry, datasets_dir: Path | str,
                  progress: Progress | None = None, *,
                  on_stage: Callable[[str], None] | None = None, timeout: float = 60.0,
                  keep_archive: bool = False, deadline: float | None = None) -> Fetched:
    """Download, verify and extract a catalog dataset into ``<datasets_dir>/<name>/``.

    Nothing is fetched when that folder already holds files. The archive is saved as
    ``<datasets_dir>/<name>.<zip|tar.gz>`` (resumed from its ``.part`` after an interruption)
    and deleted once extracted, unless ``keep_archive``.

    Args:
        name: A catalog name, or an entry (for instance one pointing at a mirror).
        datasets_dir: The folder holding the datasets (``datasets`` by convention).
        progress: Download progress, see :func:`download`.
        on_stage: Told ``"download"`` then ``"extract"`` as each step starts.
        timeout: Network timeout in seconds, on connect and on each read.
        keep_archive: Keep the archive after extracting it.
        deadline: Seconds the whole download may take (default: derived from its size, see
            :func:`download`).

    Returns:
        Where the data is, and the download's details.

    Raises:
        DataError: an unknown name, or a failed download or extraction.

    Example:
        >>> fetch_dataset("facades", "datasets").path  # doctest: +SKIP
        PosixPath('datasets/facades')
    """
    entry = get_entry(name) if isinstance(name, str) else name
    target = Path(datasets_dir) / entry.name
    if target.is_dir() and any(target.iterdir()):
        return Fetched(entry, target, None)
    if on_stage is not None:
        on_stage("download")
    archive = Path(datasets_dir) / entry.archive_name
    got = download(entry.url, archive, expected_size=entry.size_bytes, sha256=entry.sha256,
                   md5=entry.md5, progress=progress, timeout=timeout, deadline=deadline)
    if on_stage is not None:
        on_stage("extract")
    extract(archive, target)
    if not keep_archive:
        archive.unlink()
    return Fetched(entry, target, got)
