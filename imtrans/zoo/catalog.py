"""The official pretrained pix2pix and CycleGAN models imtrans knows how to download.

Each :class:`ModelEntry` is one generator published by the authors, with the URL and the file
name of the official download script (``scripts/download_cyclegan_model.sh`` or
``scripts/download_pix2pix_model.sh``), the official options of its architecture (as the
official ``train_opt.txt`` would write them), and what it translates. ``imtrans models
download NAME`` (:func:`imtrans.zoo.fetch.fetch_model`) fetches one and imports it into an
imtrans run directory.

Naming: the official name is used as it is when only one of the two scripts publishes it
(``horse2zebra``, ``edges2shoes``, ``style_monet``...). Three names are published by both:
``sat2map``, ``map2sat`` and ``facades_label2photo``; their entries are named after the method
(``cyclegan_sat2map``, ``pix2pix_sat2map``...) and the plain name is refused as ambiguous, with
a message naming both. Every entry also answers to ``<method>_<official name>``
(``cyclegan_horse2zebra`` is ``horse2zebra``).

Checksums: the official site publishes none, so no entry carries one. A download records the
sha256 it got, and the file is checked by the strict load of the official architecture when it
is imported (a file of another architecture is refused). ``approx_bytes`` is the size of the
architecture's tensors in float32, computed from the architecture, not a published file size.

Nothing is downloaded or read at import.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from imtrans.data.catalog import format_bytes
from imtrans.errors import DataError

__all__ = ["MODELS", "Direction", "Method", "ModelEntry", "get_model", "model_names"]

Method = Literal["cyclegan", "pix2pix"]
Direction = Literal["AtoB", "BtoA"]

#: Where the official scripts download from; ``{}`` is the official name.
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{}.pth"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{}.pth"
#: The file name both official scripts save the generator under.
OFFICIAL_FILE = "latest_net_G.pth"

_CYCLEGAN_CITATION = (
    "Zhu, Park, Isola, Efros: Unpaired Image-to-Image Translation using Cycle-Consistent "
    "Adversarial Networks, ICCV 2017. https://junyanz.github.io/CycleGAN/; weights from "
    "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix "
    "(scripts/download_cyclegan_model.sh)"
)
_PIX2PIX_CITATION = (
    "Isola, Zhu, Zhou, Efros: Image-to-Image Translation with Conditional Adversarial "
    "Networks, CVPR 2017. https://phillipi.github.io/pix2pix/; weights from "
    "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix "
    "(scripts/download_pix2pix_model.sh)"
)

# The official options of each architecture, as strings like train_opt.txt holds them. The
# CycleGAN generators are tested with `test.py --model test --no_dropout`; pix2pix's with its
# defaults (U-Net 256, batch norm, dropout on).
_CYCLEGAN_ARCHITECTURE: Mapping[str, str] = MappingProxyType({
    "model": "cycle_gan", "netG": "resnet_9blocks", "ngf": "64", "norm": "instance",
    "no_dropout": "True", "input_nc": "3", "output_nc": "3",
})
_PIX2PIX_ARCHITECTURE: Mapping[str, str] = MappingProxyType({
    "model": "pix2pix", "netG": "unet_256", "ngf": "64", "norm": "batch",
    "no_dropout": "False", "input_nc": "3", "output_nc": "3",
})
# float32 bytes of the tensors of each architecture (imtrans's networks, whose state dicts
# have the official key layout), checked by tests/test_models_catalogue.py.
_RESNET_9BLOCKS_BYTES = 45_512_716
_UNET_256_BYTES = 217_695_348


@dataclass(frozen=True)
class ModelEntry:
    """One official pretrained generator.

    Attributes:
        name: The catalogue name, also the run directory it is imported into
            (``runs/<name>``); see the module docstring for the naming.
        official_name: The name the official download script takes (``sat2map``).
        method: ``cyclegan`` or ``pix2pix``.
        url: Where the official script downloads it from.
        script: The official script that downloads it.
        file_name: The file name the official script saves it as (``latest_net_G.pth``).
        architecture: The official options of its network, as strings (``netG``, ``ngf``,
            ``norm``, ``no_dropout``...), handed to the importer.
        translates: What it turns into what, e.g. ``horse -> zebra``.
        dataset: The imtrans dataset catalogue name of the data it was trained on, if any.
        official_direction: The ``--direction`` of the data in the official test command
            (pix2pix); ``None`` for CycleGAN, whose ``--model test`` takes a single image
            folder. Once imported, the generator is always the run's AtoB generator.
        approx_bytes: Float32 bytes of the architecture's tensors: about the file's size
            (the official site publishes no sizes).
        source: The paper to cite and where the weights come from.
        note: Anything a user should know before relying on the entry.
    """

    name: str
    official_name: str
    method: Method
    url: str
    script: str
    file_name: str
    architecture: Mapping[str, str]
    translates: str
    dataset: str | None
    official_direction: Direction | None
    approx_bytes: int | None
    source: str
    note: str = ""

    @property
    def official_path(self) -> str:
        """Where the official script saves the file, relative to the official repository."""
        return f"./checkpoints/{self.official_name}_pretrained/{self.file_name}"

    @property
    def qualified_name(self) -> str:
        """``<method>_<official name>``, which always names this entry."""
        return f"{self.method}_{self.official_name}"

    @property
    def size_text(self) -> str:
        """The approximate size for people (``~43 MiB``), or ``?`` when unknown."""
        return "?" if self.approx_bytes is None else "~" + format_bytes(self.approx_bytes)

    @property
    def architecture_text(self) -> str:
        """The architecture in one line, e.g. ``resnet_9blocks ngf 64, instance norm``."""
        arch = self.architecture
        dropout = "no dropout" if arch.get("no_dropout") == "True" else "dropout"
        return f"{arch.get('netG')} ngf {arch.get('ngf')}, {arch.get('norm')} norm, {dropout}"


# The names both official scripts publish; their entries carry the method as a prefix.
_CLASHES = frozenset({"sat2map", "map2sat", "facades_label2photo"})


def _cyclegan(official: str, translates: str, dataset: str) -> ModelEntry:
    return ModelEntry(
        name=f"cyclegan_{official}" if official in _CLASHES else official,
        official_name=official, method="cyclegan", url=CYCLEGAN_URL.format(official),
        script="scripts/download_cyclegan_model.sh", file_name=OFFICIAL_FILE,
        architecture=_CYCLEGAN_ARCHITECTURE, translates=translates, dataset=dataset,
        official_direction=None, approx_bytes=_RESNET_9BLOCKS_BYTES, source=_CYCLEGAN_CITATION)


def _pix2pix(official: str, translates: str, dataset: str, direction: Direction,
             note: str = "") -> ModelEntry:
    return ModelEntry(
        name=f"pix2pix_{official}" if official in _CLASHES else official,
        official_name=official, method="pix2pix", url=PIX2PIX_URL.format(official),
        script="scripts/download_pix2pix_model.sh", file_name=OFFICIAL_FILE,
        architecture=_PIX2PIX_ARCHITECTURE, translates=translates, dataset=dataset,
        official_direction=direction, approx_bytes=_UNET_256_BYTES, source=_PIX2PIX_CITATION,
        note=note)


# In the order of scripts/download_cyclegan_model.sh. Each is one generator: the G_A or G_B
# of a CycleGAN trained on `dataset` (the imtrans dataset catalogue name).
_CYCLEGAN = (
    _cyclegan("apple2orange", "apple -> orange", "apple2orange"),
    _cyclegan("orange2apple", "orange -> apple", "apple2orange"),
    _cyclegan("summer2winter_yosemite", "Yosemite in summer -> in winter",
              "summer2winter_yosemite"),
    _cyclegan("winter2summer_yosemite", "Yosemite in winter -> in summer",
              "summer2winter_yosemite"),
    _cyclegan("horse2zebra", "horse -> zebra", "horse2zebra"),
    _cyclegan("zebra2horse", "zebra -> horse", "horse2zebra"),
    _cyclegan("monet2photo", "Monet painting -> photo", "monet2photo"),
    _cyclegan("style_monet", "photo -> Monet painting", "monet2photo"),
    _cyclegan("style_cezanne", "photo -> Cezanne painting", "cezanne2photo"),
    _cyclegan("style_ukiyoe", "photo -> Ukiyo-e print", "ukiyoe2photo"),
    _cyclegan("style_vangogh", "photo -> Van Gogh painting", "vangogh2photo"),
    _cyclegan("sat2map", "aerial photo -> map", "maps_unaligned"),
    _cyclegan("map2sat", "map -> aerial photo", "maps_unaligned"),
    _cyclegan("cityscapes_photo2label", "street photo -> label map", "cityscapes_unaligned"),
    _cyclegan("cityscapes_label2photo", "label map -> street photo", "cityscapes_unaligned"),
    _cyclegan("facades_photo2label", "facade photo -> label map", "facades_unaligned"),
    _cyclegan("facades_label2photo", "label map -> facade photo", "facades_unaligned"),
    _cyclegan("iphone2dslr_flower", "iPhone flower photo -> DSLR photo",
              "iphone2dslr_flower"),
)

# In the order of scripts/download_pix2pix_model.sh, with the --direction of the official
# test commands on the aligned dataset it was trained on.
_PIX2PIX = (
    _pix2pix("edges2shoes", "shoe edges -> shoe photo", "edges2shoes", "AtoB"),
    _pix2pix("sat2map", "aerial photo -> map", "maps", "AtoB"),
    _pix2pix("map2sat", "map -> aerial photo", "maps", "BtoA"),
    _pix2pix("facades_label2photo", "label map -> facade photo", "facades", "BtoA"),
    # The official command tests it AtoB while the night2day archive puts night in A: the
    # direction is recorded as published, and the caveat shown rather than guessed away.
    _pix2pix("day2night", "day -> night", "night2day", "AtoB",
             note="the official test command uses --direction AtoB, but the night2day "
                  "archive holds night (A) | day (B); check which side it expects"),
)

#: Every official pretrained generator, CycleGAN's first. Names are unique.
MODELS: tuple[ModelEntry, ...] = _CYCLEGAN + _PIX2PIX


def model_names() -> list[str]:
    """The catalogue names, in catalogue order.

    Returns:
        The names.

    Example:
        >>> "horse2zebra" in model_names() and "pix2pix_sat2map" in model_names()
        True
    """
    return [entry.name for entry in MODELS]


def get_model(name: str) -> ModelEntry:
    """Look an official model up by catalogue name, ``<method>_<official name>``, or the plain
    official name when only one method publishes it.

    Args:
        name: ``horse2zebra``, ``pix2pix_sat2map``, ``cyclegan_horse2zebra``...

    Returns:
        The entry.

    Raises:
        DataError: ``name`` is published by both methods (the message names both entries), or
            unknown (the message suggests the closest names and lists all).

    Example:
        >>> get_model("style_monet").translates
        'photo -> Monet painting'
        >>> get_model("pix2pix_map2sat").official_direction
        'BtoA'
    """
    for entry in MODELS:
        if name in (entry.name, entry.qualified_name):
            return entry
    same = [entry for entry in MODELS if entry.official_name == name]
    if len(same) > 1:
        choices = " or ".join(f"{e.name!r} ({e.method}, {e.architecture.get('netG')}, "
                              f"{e.translates})" for e in same)
        raise DataError(f"model name {name!r} is ambiguous: both CycleGAN and pix2pix publish "
                        f"one; use {choices}")
    names = model_names()
    # The plain clashing names are candidates too, each standing for its prefixed entries.
    candidates = names + sorted({e.official_name for e in MODELS} - set(names))
    close: list[str] = []
    for match in difflib.get_close_matches(name, candidates, n=3, cutoff=0.6):
        close += [e.name for e in MODELS if match in (e.name, e.official_name)
                  and e.name not in close]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DataError(f"unknown model {name!r}; {hint}known models: {', '.join(names)}")
