"""Small real datasets bundled with imtrans, for trying it without downloading anything.

- ``monet2photo``: CycleGAN layout, trainA/trainB 20 + 20, testA/testB 5 + 5 (256x256 JPEG).
- ``edges2shoes``: pix2pix layout, train 20 + val 5 pairs (512x256 JPEG, edges | photo).
- ``ct_denoise``: ``paired`` layout, trainA/trainB 66 + testA/testB 16 pairs of 64x64 int16
  TIFF CT tiles in Hounsfield units: simulated low-dose noise (A) and the clean slice (B),
  made from pydicom's bundled CT files by :mod:`imtrans.samples.make_ct_denoise`.

Each folder's ``SOURCE.md`` states where the images come from, their terms, and which files were
taken. The full sets of the catalog datasets are fetched by ``imtrans data download NAME``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SAMPLE_NAMES", "sample_root"]

#: The names of the bundled samples (each is also a catalog name).
SAMPLE_NAMES: tuple[str, ...] = ("ct_denoise", "edges2shoes", "monet2photo")


def sample_root(name: str) -> Path | None:
    """The folder of a bundled sample, laid out like the full dataset.

    Args:
        name: A sample name, e.g. ``monet2photo``.

    Returns:
        The folder, or ``None`` when there is no such sample (or when imtrans runs from a zip
        archive, where the images are not files on disk).

    Example:
        >>> sample_root("monet2photo").name
        'monet2photo'
        >>> sample_root("horse2zebra") is None
        True
    """
    if name not in SAMPLE_NAMES:
        return None
    root = files(__name__) / name
    # Only a real folder works with the datasets, which list files with os.walk.
    if not isinstance(root, Path) or not root.is_dir():
        return None
    return root
