"""The datasets imtrans knows how to download: the official pix2pix and CycleGAN archives.

Each :class:`CatalogEntry` says where an archive lives, how it is laid out once extracted, and
how to check it. Sizes and checksums are recorded only where a published value was found (the
comment above each group names where); the others are ``None``, and a download of such an
archive is reported as unverified together with the sha256 it had.

Naming: pix2pix and CycleGAN both publish ``maps``, ``cityscapes`` and ``facades``. The plain
names are the aligned pix2pix archives (the ones the pix2pix recipes train on); the CycleGAN
archives of the same data get the suffix ``_unaligned`` (``maps_unaligned``...), which says what
differs: the same pictures, split into unpaired ``trainA/ trainB/`` folders.

Nothing is downloaded or read at import.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from imtrans.errors import DataError

__all__ = ["CATALOG", "CatalogEntry", "catalog_names", "format_bytes", "get_entry"]

Kind = Literal["aligned", "unaligned"]
ArchiveFormat = Literal["zip", "tar.gz"]
Direction = Literal["AtoB", "BtoA"]

_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"
_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"
_PIX2PIX_CITATION = (
    "Isola, Zhu, Zhou, Efros: Image-to-Image Translation with Conditional Adversarial "
    "Networks, CVPR 2017. https://phillipi.github.io/pix2pix/"
)
_CYCLEGAN_CITATION = (
    "Zhu, Park, Isola, Efros: Unpaired Image-to-Image Translation using Cycle-Consistent "
    "Adversarial Networks, ICCV 2017. https://junyanz.github.io/CycleGAN/"
)
_ALIGNED_LAYOUT = "{} with A|B side by side"
_UNALIGNED_LAYOUT = "trainA/ trainB/ testA/ testB/"


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable dataset archive.

    Attributes:
        name: The catalog name, also the folder it is extracted to (``datasets/<name>``).
        kind: ``aligned`` (A|B pairs in one image) or ``unaligned`` (separate A and B folders).
        url: Where the archive is downloaded from.
        size_bytes: The archive's exact size, when published; ``None`` otherwise.
        sha256: The archive's published sha256 (hex), or ``None``.
        md5: The archive's published md5 (hex), or ``None``.
        archive: ``zip`` or ``tar.gz``.
        layout: The folders found after extraction, e.g. ``trainA/ trainB/ testA/ testB/``.
        default_direction: The direction of the standard task on this data.
        description: What the images are.
        source: Where the data comes from and the paper to cite.
        approx_size: A rough size for display (``29M``) when the exact one is unknown.

    Example:
        >>> get_entry("facades").layout
        'train/ val/ test/ with A|B side by side'
    """

    name: str
    kind: Kind
    url: str
    size_bytes: int | None
    sha256: str | None
    md5: str | None
    archive: ArchiveFormat
    layout: str
    default_direction: Direction
    description: str
    source: str
    approx_size: str | None = None

    @property
    def has_checksum(self) -> bool:
        """Whether a download of this archive can be verified (sha256 or md5 known)."""
        return self.sha256 is not None or self.md5 is not None

    @property
    def archive_name(self) -> str:
        """The file name the archive is saved under (unique within the catalog)."""
        return f"{self.name}.{self.archive}"

    @property
    def size_text(self) -> str:
        """The archive size for people: exact when known, else approximate, else ``?``."""
        if self.size_bytes is not None:
            return format_bytes(self.size_bytes)
        if self.approx_size:  # the server's listing style: "29M", "2.0G" (binary units)
            return "~" + self.approx_size.replace("M", " MiB").replace("G", " GiB")
        return "?"


def format_bytes(count: float) -> str:
    """Format a byte count with binary units, e.g. ``291 MiB``.

    Args:
        count: A number of bytes.

    Returns:
        The count in B, KiB, MiB or GiB, with one decimal below 10 units.

    Example:
        >>> format_bytes(305231073)
        '291 MiB'
    """
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _pix2pix(name: str, splits: str, direction: Direction, md5: str | None,
             approx_size: str, description: str, data_source: str) -> CatalogEntry:
    return CatalogEntry(
        name=name, kind="aligned", url=_PIX2PIX_URL.format(name), size_bytes=None,
        sha256=None, md5=md5, archive="tar.gz", layout=_ALIGNED_LAYOUT.format(splits),
        default_direction=direction, description=description,
        source=f"{data_source}; packaged for pix2pix: {_PIX2PIX_CITATION}",
        approx_size=approx_size,
    )


def _cyclegan(name: str, size_bytes: int, sha256: str, description: str, data_source: str,
              archive_stem: str | None = None) -> CatalogEntry:
    return CatalogEntry(
        name=name, kind="unaligned", url=_CYCLEGAN_URL.format(archive_stem or name),
        size_bytes=size_bytes, sha256=sha256, md5=None, archive="zip", layout=_UNALIGNED_LAYOUT,
        default_direction="AtoB", description=description,
        source=f"{data_source}; packaged for CycleGAN: {_CYCLEGAN_CITATION}",
    )


# pix2pix archives. No published size or sha256 was found. The md5 values are those pinned in
# TheProjectsGuy/MLHub, src/mlhub/pix2pix/data.py (commit d12398786f15369af68afc9843749f2953245d29),
# for the same efrosgans.eecs.berkeley.edu URLs (night2day's is left out: see its entry).
# The approximate sizes are the server's directory listing (2018-09
# timestamps) as quoted in a public README; they are for display only, never for verification.
_PIX2PIX = (
    _pix2pix("facades", "train/ val/ test/", "BtoA", "e2e25dd517e9d15828416ab329da2854", "29M",
             "400 / 100 / 106 building facades: photo (A) | label map (B)",
             "CMP Facade Database (Tylecek & Sara)"),
    _pix2pix("cityscapes", "train/ val/", "BtoA", "32569df708076e427e9cd02abbca7748", "99M",
             "2975 street scenes: photo (A) | semantic label map (B)",
             "Cityscapes (Cordts et al., CVPR 2016), terms at cityscapes-dataset.com"),
    _pix2pix("maps", "train/ val/", "AtoB", "e5f65d26eb288457f5ac056deb94d154", "239M",
             "1096 training pairs: aerial photo (A) | Google Maps map (B)",
             "scraped from Google Maps"),
    _pix2pix("edges2shoes", "train/ val/", "AtoB", "71da478b54fedde126e234a2a050bc15", "2.0G",
             "about 50k shoes: edge map (A) | photo (B)",
             "UT Zappos50K (Yu & Grauman, CVPR 2014), edges by the pix2pix authors"),
    _pix2pix("edges2handbags", "train/ val/", "AtoB", "815592f22fa7f7534a286a25bb73bf03", "8.0G",
             "about 137k handbags: edge map (A) | photo (B)",
             "Amazon handbag images of iGAN (Zhu et al., ECCV 2016)"),
    # The one published night2day md5 was never exercised by its own source (a missing comma
    # there concatenated it with the next string), so it is not trusted here: the download is
    # reported as unverified, with its sha256, rather than refused on an unchecked value.
    _pix2pix("night2day", "train/ val/ test/", "AtoB", None, "1.9G",
             "about 20k outdoor scenes: night (A) | day (B); BtoA is day to night",
             "Transient Attributes (Laffont et al., SIGGRAPH 2014)"),
)

# CycleGAN archives. Sizes (bytes) and sha256 are those of tensorflow/datasets,
# tensorflow_datasets/url_checksums/cycle_gan.txt (identical at commits 333639b3 and ffe36c8b),
# recorded there for the same files at their former address
# https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/<name>.zip.
_CYCLEGAN = (
    _cyclegan("apple2orange", 78456409,
              "845a191e9af8926408ea597001cd03a452e3300a1f44a79fe329b3d59f6e3eb8",
              "apples (A) and oranges (B)", "ImageNet"),
    _cyclegan("summer2winter_yosemite", 132640856,
              "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9",
              "Yosemite in summer (A) and in winter (B)", "Flickr"),
    _cyclegan("horse2zebra", 116867962,
              "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
              "horses (A) and zebras (B)", "ImageNet"),
    _cyclegan("monet2photo", 305231073,
              "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04",
              "Monet paintings (A) and landscape photos (B)", "Wikiart and Flickr"),
    _cyclegan("cezanne2photo", 279885071,
              "3a6c10ca21f9485862f1cbd707744b9dc258954a04631271d23a3605eeb63cff",
              "Cezanne paintings (A) and landscape photos (B)", "Wikiart and Flickr"),
    _cyclegan("ukiyoe2photo", 292946532,
              "02a2a2fb5ecf425ca1bf86aca7304377da64a2a1d3b86df54eb65e4068bf3b08",
              "Ukiyo-e prints (A) and landscape photos (B)", "Wikiart and Flickr"),
    _cyclegan("vangogh2photo", 306590349,
              "362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff",
              "Van Gogh paintings (A) and landscape photos (B)", "Wikiart and Flickr"),
    _cyclegan("maps_unaligned", 1476754427,
              "639534f69dbf9f36bef8d6292a7698006361221f83f0285d7c9ca78afe6e8a9e",
              "the pix2pix maps data, aerial photos and maps as unpaired folders",
              "scraped from Google Maps", archive_stem="maps"),
    _cyclegan("cityscapes_unaligned", 279601602,
              "d2f6910fd056c1ee9873777ae838e7ac4a2c833598ae62a04188e5ab2f4ea036",
              "Cityscapes photos and label maps as unpaired folders",
              "Cityscapes (Cordts et al., CVPR 2016), terms at cityscapes-dataset.com",
              archive_stem="cityscapes"),
    _cyclegan("facades_unaligned", 35135868,
              "9a31ebf3a31b9b5cd195dd5bf62e9308e00cb94604d1019e3889ac84248695c0",
              "CMP facades photos and label maps as unpaired folders",
              "CMP Facade Database (Tylecek & Sara)", archive_stem="facades"),
    _cyclegan("iphone2dslr_flower", 339964458,
              "8fcb5e374d631b107e1d961b8c4cd0a186aa2a4ff3e279923f4c426128de7113",
              "flower photos from iPhones (A) and from DSLRs with shallow depth of field (B)",
              "Flickr"),
)

#: Every known dataset, pix2pix archives first. Names are unique.
CATALOG: tuple[CatalogEntry, ...] = _PIX2PIX + _CYCLEGAN


def catalog_names() -> list[str]:
    """The names of the known datasets, in catalog order.

    Returns:
        The names.

    Example:
        >>> "horse2zebra" in catalog_names()
        True
    """
    return [entry.name for entry in CATALOG]


def get_entry(name: str) -> CatalogEntry:
    """Look a dataset up by name.

    Args:
        name: A catalog name such as ``facades`` or ``horse2zebra``.

    Returns:
        The entry.

    Raises:
        DataError: ``name`` is unknown; the message suggests the closest names and lists all.

    Example:
        >>> get_entry("horse2zebra").kind
        'unaligned'
    """
    for entry in CATALOG:
        if entry.name == name:
            return entry
    names = catalog_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DataError(f"unknown dataset {name!r}; {hint}known datasets: {', '.join(names)}")
