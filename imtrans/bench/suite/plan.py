"""What ``imtrans bench --suite gpu`` measures: its speed modes, cases, sizes and time costs.

Plain data, no torch: the runner (:mod:`imtrans.bench.suite.runner`) turns a case, a mode and
a batch size into a recipe with :func:`run_overrides`.

Example:
    >>> [m.name for m in MODES]
    ['fp32_eager', 'bf16_eager', 'compile_networks', 'compile_step']
    >>> CASES["pix2pix_b1"].target, SIZES["full"].sweep_batches
    (250.0, (1, 4, 16, 64, 128))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imtrans.errors import ImtransError, InvalidArgumentError

__all__ = ["CASES", "DDP_CASE", "DDP_MODE", "METHODS", "MODES", "SIZES", "SWEEP_MODE", "Case",
           "Method", "Mode", "SuiteSize", "parse_names", "run_overrides", "shipped_recipe"]


@dataclass(frozen=True)
class Mode:
    """One setting of the ``[speed]`` switches.

    Attributes:
        name: The ``mode`` field of the JSON lines.
        overrides: ``--set`` strings on every device.
        cuda_overrides: Added on CUDA only (CUDA graphs, which the CPU refuses).
        compiled: Whether the first steps compile (a larger warm-up and time reserve).
        label: What the summary table calls it.
    """

    name: str
    overrides: tuple[str, ...]
    cuda_overrides: tuple[str, ...] = ()
    compiled: bool = False
    label: str = ""


_FAST = ("speed.precision=bf16", "speed.channels_last=true", "speed.fused_adam=true")

#: The four modes, in the order of the docs: (a) to (d).
MODES = (
    Mode("fp32_eager", ("speed.precision=fp32",), label="fp32 eager"),
    Mode("bf16_eager", ("speed.precision=bf16",), label="bf16 eager"),
    Mode("compile_networks", (*_FAST, 'speed.compile="networks"'), compiled=True,
         label="bf16+cl+compile nets+fused"),
    Mode("compile_step", (*_FAST, 'speed.compile="step"'), ("speed.cuda_graphs=true",),
         compiled=True, label="step compile+graphs+bf16+cl+fused"),
)
MODE_NAMES = {m.name: m for m in MODES}

#: The batch-size sweep runs eager: each batch size of a compiled mode is a compilation of its
#: own (about a minute at 256 px), and five of them per method alone would spend the budget.
SWEEP_MODE = "bf16_eager"
#: The one-process DDP run: eager, so that it compares with the same case without DDP.
DDP_MODE = "bf16_eager"


@dataclass(frozen=True)
class Method:
    """A training method and the shipped recipe that sets it up at the paper's settings.

    Attributes:
        name: ``cyclegan`` or ``pix2pix``.
        recipe: The shipped recipe's stem (``recipes/<recipe>.toml``).
        folder: Which generated folder it reads (``paired`` or ``unpaired``).
        tiny: Extra ``--set`` strings at the tiny size (a U-Net for 32 px).
    """

    name: str
    recipe: str
    folder: str
    tiny: tuple[str, ...] = ()


METHODS = {
    "cyclegan": Method("cyclegan", "cyclegan_photo2monet", "unpaired"),
    "pix2pix": Method("pix2pix", "pix2pix_facades", "paired",
                      tiny=("generator.name=unet", "generator.num_downs=5")),
}


@dataclass(frozen=True)
class Case:
    """A target setting.

    Attributes:
        name: The ``case`` field of the JSON lines.
        method: A key of :data:`METHODS`.
        best: Whether the batch size comes from the sweep (else batch 1).
        target: Images/s to reach on an H100-class GPU at 256 px (None: no target).
        official: What the official code reaches there (anchors.md), for the table.
    """

    name: str
    method: str
    best: bool
    target: float | None
    official: float | None = None


DDP_CASE = "ddp"
CASES = {
    "pix2pix_b1": Case("pix2pix_b1", "pix2pix", False, 250.0, 67.0),
    "pix2pix_best": Case("pix2pix_best", "pix2pix", True, 2500.0),
    "cyclegan_b1": Case("cyclegan_b1", "cyclegan", False, 40.0, 9.8),
    "cyclegan_best": Case("cyclegan_best", "cyclegan", True, 200.0, 36.0),
    DDP_CASE: Case(DDP_CASE, "pix2pix", True, None),
}


@dataclass(frozen=True)
class SuiteSize:
    """How large the suite runs.

    Attributes:
        name: ``tiny`` (CI, the CPU) or ``full`` (256 px, the GPU proof).
        image_size: Side of each generated image (and of the crop).
        load_size: Images are resized to this before the random crop.
        images: Generated images per folder: a multiple of every sweep batch size, so that no
            epoch ends in a smaller batch (a new shape, and a recompilation).
        sweep_batches: The batch sizes the sweep tries, in order.
        budget_s: The default global deadline, in seconds.
        warmup: Untimed steps of an eager run and of a compiled one.
        max_steps: Timed steps at batch 1; larger batches time fewer (at least ``min_steps``).
        min_steps: The fewest timed steps of a run.
        reserve_s: Seconds a run of an eager mode, a compiled mode and the DDP run is expected
            to take: a run starts only when that much of the budget is left.
        overrides: ``--set`` strings of every run at this size.
    """

    name: str
    image_size: int
    load_size: int
    images: int
    sweep_batches: tuple[int, ...]
    budget_s: float
    warmup: tuple[int, int]
    max_steps: int
    min_steps: int
    reserve_s: tuple[float, float, float]
    overrides: tuple[str, ...] = field(default=())

    def steps(self, batch_size: int) -> int:
        """Timed steps at ``batch_size``: about 256 images, within the size's bounds."""
        return max(self.min_steps, min(self.max_steps, 256 // batch_size))

    def reserve(self, mode: Mode, ddp: bool = False) -> float:
        """Seconds of budget a run of ``mode`` needs to be started."""
        eager, compiled, distributed = self.reserve_s
        return distributed if ddp else compiled if mode.compiled else eager


SIZES = {
    # The reserves are estimates for an H100 host (16 cores): an eager run builds, fills the
    # device cache and times about 256 images in 5-20 s; a compiled run adds a compilation
    # of each network (or of the whole step) for its batch shape, about 40-120 s cold; the DDP
    # run starts torchrun and a fresh interpreter (10-20 s more).
    "full": SuiteSize("full", 256, 286, 256, (1, 4, 16, 64, 128), 450.0, (3, 5), 40, 5,
                      (20.0, 90.0, 45.0)),
    "tiny": SuiteSize("tiny", 32, 36, 16, (1, 2), 600.0, (1, 3), 2, 2, (0.0, 0.0, 0.0),
                      ("generator.ngf=4", "discriminator.ndf=4")),
}


def run_overrides(case: Case, mode: Mode, size: SuiteSize, batch_size: int, data_root: Path,
                  *, cuda: bool, user: tuple[str, ...] = ()) -> list[str]:
    """The ``--set`` strings of one run: data, size, mode, batch, then the user's ``--set``.

    The images are held on the device (``data.cache = "device"``): the fast path, and on the
    CPU no loading processes competing with the step for the cores. They are decoded in the
    process itself (``data.num_workers = 0``): 256 files take under a second, less than
    starting loading processes (each imports torch) for every run.
    """
    method = METHODS[case.method]
    sets = [f"data.root={str(data_root / method.folder)!r}", 'data.cache="device"',
            "data.num_workers=0",
            f"data.load_size={size.load_size}", f"data.crop_size={size.image_size}",
            f"data.batch_size={batch_size}", *size.overrides]
    if size.name == "tiny":
        sets += method.tiny
    sets += mode.overrides
    if cuda:
        sets += mode.cuda_overrides
    return [*sets, *user]


def parse_names(text: str | None, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The comma-separated names of ``text`` (all of ``known`` when None), in ``known``'s order.

    Raises:
        InvalidArgumentError: a name is not known, or none is given.
    """
    if text is None:
        return known
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InvalidArgumentError(f"--{what} {text!r}: unknown {what[:-1]} "
                                   f"{', '.join(map(repr, unknown)) or '(none given)'}; "
                                   f"known: {', '.join(known)}")
    return tuple(n for n in known if n in names)


def shipped_recipe(stem: str) -> Path:
    """The recipe ``recipes/<stem>.toml`` of the imtrans checkout this package runs from.

    Raises:
        ImtransError: the recipes folder is not beside the package (an installed wheel).
    """
    path = Path(__file__).resolve().parents[3] / "recipes" / f"{stem}.toml"
    if not path.is_file():
        raise ImtransError(f"the GPU suite trains the shipped recipe recipes/{stem}.toml, "
                           f"which is not at {path}: run it from an imtrans checkout "
                           "(git clone, pip install -e .)")
    return path
