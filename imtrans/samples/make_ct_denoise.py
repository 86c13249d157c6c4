"""Build the ``ct_denoise`` sample: paired 16-bit CT tiles, noisy (A) and clean (B).

Run ``python -m imtrans.samples.make_ct_denoise [--out DIR]`` (needs the ``dicom`` extra, i.e.
pydicom, whose bundled test files are the source images). The default ``DIR`` is the sample's
folder inside the package, so running it without ``--out`` rewrites the shipped sample.

Source images (pydicom's bundled test files, read offline):

- train: ``J2K_pixelrep_mismatch.dcm``, a 512x512 head CT (JPEG 2000 lossless). Its codestream
  is unsigned while the dataset says Pixel Representation 1; pydicom's default J2K sign
  correction (``apply_j2k_sign_correction``) decodes it to plausible Hounsfield units.
- test: ``CT_small.dcm``, a 128x128 CT through a vertebra (uncompressed), another scanner and
  patient.

Each image becomes Hounsfield units (pixel * RescaleSlope + RescaleIntercept), clipped to
[-1024, 3071]. 64x64 tiles are cut on an evenly spaced grid (offsets ``round(linspace(0, size -
64, n))``: 10 x 10 on the 512 image, 4 x 4 on the 128 image); tiles whose mean is below -900 HU
(mostly air or padding outside the field of view) are left out.

Degradation, an image-domain stand-in for low-dose CT (not a projection-domain simulation: no
sinogram, no Poisson photon statistics, no reconstruction): white Gaussian noise is smoothed by a
normalised 5x5 Gaussian kernel of sigma 0.7 px (spatially correlated noise, as CT noise is),
scaled so that its standard deviation is exactly 100 HU (a very low dose: at 40 HU the noisy
input was already at 40 dB PSNR, more than a few minutes of pix2pix on a CPU gain), added to the
clean tile, rounded to integers and clipped to [-1024, 3071]. The noise comes from
``np.random.default_rng(0)``, drawn tile by tile in the order train then test, each by file
name, so the output is deterministic.

Layout: ``trainA``/``trainB``/``testA``/``testB``, A noisy and B clean, the same file name on
both sides (``head_r03_c04.tif``: grid row 3, column 4). Each file is a single-channel int16
TIFF in HU, zlib-compressed with the horizontal predictor, written by tifffile.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = [
    "HU_RANGE",
    "NOISE_SIGMA_PX",
    "NOISE_STD_HU",
    "SPLITS",
    "TILE",
    "build_sample",
    "correlated_noise",
    "main",
]

#: The range every tile is clipped to, in Hounsfield units (a 12-bit CT window).
HU_RANGE = (-1024, 3071)
#: Side of the square tiles, in pixels.
TILE = 64
#: Tiles whose mean is below this (HU) are mostly air or padding, and are left out.
MIN_TILE_MEAN_HU = -900.0
#: Standard deviation of the added noise, in HU.
NOISE_STD_HU = 100.0
#: Sigma of the Gaussian kernel that correlates the noise, in pixels.
NOISE_SIGMA_PX = 0.7
_KERNEL_RADIUS = 2
_SEED = 0


@dataclass(frozen=True)
class _Split:
    """Where one split's tiles come from."""

    name: str
    dicom_file: str
    prefix: str
    grid: int


#: The splits, in the order their noise is drawn.
SPLITS = (
    _Split("train", "J2K_pixelrep_mismatch.dcm", "head", 10),
    _Split("test", "CT_small.dcm", "ctsmall", 4),
)


def _gaussian_kernel_1d() -> np.ndarray:
    """The normalised 1-D Gaussian kernel of sigma ``NOISE_SIGMA_PX`` (the 2-D one is its outer
    product)."""
    x = np.arange(-_KERNEL_RADIUS, _KERNEL_RADIUS + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2 * NOISE_SIGMA_PX**2))
    return kernel / kernel.sum()


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Spatially correlated Gaussian noise with standard deviation ``NOISE_STD_HU``.

    White noise, larger than ``shape`` by the kernel radius on each side, is smoothed by the
    separable Gaussian kernel without padding (so the edges are as noisy as the middle), then
    scaled by the filtered noise's exact standard deviation, ``sum(k**2)`` for a separable
    kernel ``k`` applied to unit white noise.

    Args:
        rng: The generator the white noise is drawn from.
        shape: ``(height, width)`` of the result.

    Returns:
        A float64 array of ``shape``.
    """
    kernel = _gaussian_kernel_1d()
    height, width = shape
    white = rng.standard_normal((height + 2 * _KERNEL_RADIUS, width + 2 * _KERNEL_RADIUS))
    rows = np.apply_along_axis(np.convolve, 1, white, kernel, mode="valid")
    smooth = np.apply_along_axis(np.convolve, 0, rows, kernel, mode="valid")
    return smooth * (NOISE_STD_HU / float(np.sum(kernel**2)))


def _hounsfield(dicom_file: str) -> np.ndarray:
    """One of pydicom's bundled CT test images in HU, clipped to ``HU_RANGE`` (int16)."""
    import pydicom
    from pydicom.data import get_testdata_file

    # download=False: only the files that ship inside the pydicom package, never the network.
    path = get_testdata_file(dicom_file, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom {pydicom.__version__} does not ship {dicom_file}")
    dataset = pydicom.dcmread(path)
    # pixel_array applies pydicom's default J2K sign correction (the codestream's signedness
    # wins over Pixel Representation), which J2K_pixelrep_mismatch.dcm needs.
    pixels = dataset.pixel_array.astype(np.float64)
    hu = pixels * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    return np.clip(np.rint(hu), *HU_RANGE).astype(np.int16)


def _tiles(image: np.ndarray, grid: int, prefix: str) -> Iterator[tuple[str, np.ndarray]]:
    """The named tiles of an evenly spaced ``grid`` x ``grid`` layout that are not mostly air."""
    offsets = np.rint(np.linspace(0, image.shape[0] - TILE, grid)).astype(int)
    for row, top in enumerate(offsets):
        for col, left in enumerate(offsets):
            tile = image[top : top + TILE, left : left + TILE]
            if tile.mean() >= MIN_TILE_MEAN_HU:
                yield f"{prefix}_r{row:02d}_c{col:02d}.tif", tile


def _write(path: Path, tile: np.ndarray) -> None:
    """A single-channel int16 TIFF, zlib-compressed with the horizontal-differencing predictor
    (TIFF predictor 2; Python's zlib, no extra package), about 9% smaller than zlib alone."""
    tifffile.imwrite(
        path, tile.astype(np.int16), compression="zlib", predictor=True, metadata=None
    )


def build_sample(out: Path) -> dict[str, int]:
    """Write the sample under ``out`` (trainA, trainB, testA, testB).

    Args:
        out: The sample's root folder; created if missing. Files of the same names are
            replaced; other files are left alone.

    Returns:
        The number of pairs per split, e.g. ``{"train": 70, "test": 16}``.
    """
    rng = np.random.default_rng(_SEED)
    counts: dict[str, int] = {}
    for split in SPLITS:
        noisy_dir, clean_dir = out / f"{split.name}A", out / f"{split.name}B"
        noisy_dir.mkdir(parents=True, exist_ok=True)
        clean_dir.mkdir(parents=True, exist_ok=True)
        tiles = sorted(_tiles(_hounsfield(split.dicom_file), split.grid, split.prefix))
        for name, clean in tiles:
            noise = correlated_noise(rng, clean.shape)
            noisy = np.clip(np.rint(clean + noise), *HU_RANGE)
            _write(noisy_dir / name, noisy)
            _write(clean_dir / name, clean)
        counts[split.name] = len(tiles)
    return counts


def _default_out() -> Path:
    return Path(__file__).resolve().parent / "ct_denoise"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build the sample, print its counts; 1 when pydicom is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m imtrans.samples.make_ct_denoise", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=_default_out(),
                        help="the sample's root folder (default: the one inside the package)")
    args: Any = parser.parse_args(argv)
    try:
        import pydicom  # noqa: F401
    except ImportError:
        print("make_ct_denoise needs pydicom: pip install 'imtrans[dicom]'", file=sys.stderr)
        return 1
    if args.out.exists() and not args.out.is_dir():
        print(f"--out {args.out} is a file, expected a folder", file=sys.stderr)
        return 1
    counts = build_sample(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {s} pairs" for s, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
