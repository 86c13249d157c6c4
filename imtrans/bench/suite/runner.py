"""``imtrans bench --suite gpu``: every target setting in every speed mode, one JSON record each.

:func:`run_suite` writes its own JPEG folders (:mod:`~imtrans.bench.suite.images`), then
benchmarks, through :func:`imtrans.bench.timing.benchmark` and the real data pipeline, each
case of :data:`~imtrans.bench.suite.plan.CASES` in each mode of
:data:`~imtrans.bench.suite.plan.MODES`, in this order, so that a deadline cuts the costly
and the less important runs first:

1. batch 1 of pix2pix and CycleGAN in the eager modes;
2. a batch-size sweep of each method (eager bf16), stopping at the first out-of-memory or when
   throughput gains less than :data:`MIN_GAIN`; its best batch is the "best" cases' batch;
3. the best batches in the eager modes; 4. the one-process DDP run;
5. the compiled modes, whole-step first: batch 1 and best batch of each method.

A run that fails (a mode not implemented yet, out of memory) gives a record with ``error`` and
the suite goes on; a run the deadline leaves no time for gives one with ``skipped``.

Example:
    >>> from imtrans.bench.suite.plan import SIZES
    >>> records = run_suite(SuiteOptions(size=SIZES["tiny"], modes=("fp32_eager",),
    ...                                  cases=("pix2pix_b1",), budget_s=300.0,
    ...                                  overrides=("run.device=cpu",)))
    >>> [(r["case"], r["mode"], r["images_per_sec"] > 0) for r in records]
    [('pix2pix_b1', 'fp32_eager', True)]
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imtrans.bench.suite.ddp import run_ddp
from imtrans.bench.suite.deadline import Deadline
from imtrans.bench.suite.images import make_image_folders
from imtrans.bench.suite.peaks import peak_tflops
from imtrans.bench.suite.plan import (
    CASES,
    DDP_CASE,
    DDP_MODE,
    METHODS,
    MODE_NAMES,
    SWEEP_MODE,
    Case,
    Mode,
    SuiteSize,
    run_overrides,
    shipped_recipe,
)
from imtrans.bench.timing import benchmark
from imtrans.catalogue.plugins import Components, components
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.core.device import select_device
from imtrans.core.observer import TrainingObserver
from imtrans.errors import ImtransError

__all__ = ["MIN_GAIN", "Record", "SuiteOptions", "run_suite"]

#: A record: one JSON line.
Record = dict[str, Any]
#: The sweep stops when a batch size brings less than this relative gain in images/s.
MIN_GAIN = 0.05
#: Errors are cut to this many characters (a compiler's message can run to pages).
_ERROR_CHARS = 600


@dataclass(frozen=True)
class SuiteOptions:
    """What to run.

    Attributes:
        size: :data:`~imtrans.bench.suite.plan.SIZES` ``["tiny"]`` or ``["full"]``.
        modes: Names of the modes to run (a subset of :data:`MODES`).
        cases: Names of the cases to run (a subset of :data:`CASES`).
        budget_s: The global deadline, in seconds.
        overrides: The user's ``--set`` strings, applied last to every run.
        steps: Timed steps of every run (None: the size's, by batch size).
        warmup: Untimed steps of every run (None: the size's, by mode).
        work_dir: Where the images are written (None: a temporary folder, removed after).
    """

    size: SuiteSize
    modes: tuple[str, ...]
    cases: tuple[str, ...]
    budget_s: float
    overrides: tuple[str, ...] = ()
    steps: int | None = None
    warmup: int | None = None
    work_dir: Path | None = None


def run_suite(options: SuiteOptions, emit: Callable[[Record], None] | None = None, *,
              registry: Components | None = None,
              progress: Callable[[str], None] | None = None) -> list[Record]:
    """Run the suite; return its records, each also given to ``emit`` as it is made.

    Args:
        options: What to run.
        emit: Receives each record at once (the CLI prints it as a JSON line).
        registry: The components (default: built-ins and installed plugins).
        progress: Receives a line before each run (the CLI prints it on stderr).

    Raises:
        ImtransError: the user's ``--set`` strings do not make valid recipes, or the shipped
            recipes are missing; checked before anything runs.
    """
    registry = registry or components()
    deadline = Deadline(options.budget_s)
    with tempfile.TemporaryDirectory(prefix="imtrans-suite-") as temporary:
        root = options.work_dir or Path(temporary)
        suite = _Suite(options, registry, deadline, root, emit or (lambda record: None),
                       progress or (lambda line: None))
        suite.check_recipes()
        make_image_folders(root, size=options.size.image_size, count=options.size.images)
        suite.run()
        return suite.records


class _Suite:
    """The state of one suite: its records, the FLOP counts and the sweeps' batch sizes."""

    def __init__(self, options: SuiteOptions, registry: Components, deadline: Deadline,
                 root: Path, emit: Callable[[Record], None],
                 progress: Callable[[str], None]) -> None:
        self.options, self.registry, self.deadline, self.root = options, registry, deadline, root
        self._emit, self._progress = emit, progress
        self.records: list[Record] = []
        self.done: dict[tuple[str, str, int], Record] = {}  # (method, mode, batch): success
        self.flops: dict[str, float] = {}                    # method: FLOPs per image
        self.best: dict[str, int | None] = {}                # method: the sweep's best batch
        self.cuda = False
        self.runs = 0

    # --- the order of the runs -----------------------------------------------------------

    def run(self) -> None:
        """Every requested case in every requested mode, in the module docstring's order."""
        modes, cases = self.options.modes, self.options.cases
        eager = [MODE_NAMES[m] for m in ("fp32_eager", "bf16_eager") if m in modes]
        compiled = [MODE_NAMES[m] for m in ("compile_step", "compile_networks") if m in modes]
        methods = ("pix2pix", "cyclegan")
        for method in methods:
            for mode in eager:
                self._case(f"{method}_b1", mode)
        for method in methods:
            if f"{method}_best" in cases or (method == "pix2pix" and DDP_CASE in cases):
                self.best[method] = self._sweep(method)
        for method in methods:
            for mode in eager:
                self._case(f"{method}_best", mode)
        if DDP_CASE in cases:
            self._ddp()
        for mode in compiled:
            for method in methods:
                self._case(f"{method}_b1", mode)
                self._case(f"{method}_best", mode)

    def check_recipes(self) -> None:
        """Load both methods' recipes with the user's ``--set``: a typo stops the suite here,
        with the recipe's own message, instead of failing every run."""
        for method in METHODS.values():
            recipe = load_recipe(shipped_recipe(method.recipe), self.options.overrides,
                                 registry=self.registry)
            device = select_device(recipe.run.device, TrainingObserver())
            self.cuda = device.type == "cuda"
        if not self.cuda and self.options.size.name == "full":
            self._progress("note: no GPU: the full size takes minutes per run on a CPU, and "
                           "the deadline will skip most of them (--size tiny is the CPU's)")

    def _case(self, name: str, mode: Mode) -> None:
        """Run case ``name`` in ``mode`` when both were asked for (its batch: 1, or the
        sweep's best); a run already made at that batch (the sweep's) is reported again."""
        if name not in self.options.cases or mode.name not in self.options.modes:
            return
        case = CASES[name]
        batch = self.best.get(case.method) if case.best else 1
        if batch is None:
            self.add(self._head(case.name, mode, None) | {
                "error": f"no batch size: the {case.method}_sweep record found none"})
            return
        earlier = self.done.get((case.method, mode.name, batch))
        if earlier is not None:
            self.add(self._with_target(earlier | {"case": case.name, "from_sweep": True},
                                       case))
            return
        self.measure(case, mode, batch)

    # --- the sweep and the DDP run -------------------------------------------------------

    def _sweep(self, method: str) -> int | None:
        """Try the size's batch sizes in :data:`SWEEP_MODE`; return the fastest one (None
        when none ran), after a record of the sweep."""
        mode = MODE_NAMES[SWEEP_MODE]
        case = Case(f"{method}_sweep", method, True, None)
        rates: dict[int, float] = {}
        stopped = "end of the list"
        for batch in self.options.size.sweep_batches:
            record = self.done.get((method, mode.name, batch)) or self.measure(case, mode, batch)
            if "skipped" in record:
                stopped = f"deadline at batch {batch}"
                break
            if "error" in record:
                stopped = (f"out of memory at batch {batch}" if record.get("out_of_memory")
                           else f"error at batch {batch}")
                break
            rate = record["images_per_sec"]
            gain = rate / max(rates.values()) - 1 if rates else None
            rates[batch] = rate
            if gain is not None and gain < MIN_GAIN:
                stopped = f"gain {gain:+.0%} at batch {batch}, under {MIN_GAIN:.0%}"
                break
        best = max(rates, key=rates.__getitem__) if rates else None
        self.add({"suite": "gpu", "case": case.name, "mode": mode.name,
                  "size": self.options.size.name,
                  "images_per_sec_by_batch": {str(b): r for b, r in rates.items()},
                  "best_batch_size": best, "stopped": stopped})
        return best

    def _ddp(self) -> None:
        """pix2pix at its best batch as the one rank of a DDP group, beside the same run
        without DDP."""
        case, mode = CASES[DDP_CASE], MODE_NAMES[DDP_MODE]
        batch = self.best.get("pix2pix") or 1
        head = self._head(case.name, mode, batch)
        refusal = self.deadline.refusal(self.options.size.reserve(mode, ddp=True))
        if refusal is not None:
            self.add(head | {"skipped": True, "reason": refusal})
            return
        recipe, sets = self._recipe_and_sets(case, mode, batch)
        self._progress(self._progress_line(case.name, mode, batch))
        try:
            result = run_ddp(recipe, sets, steps=self._steps(batch),
                             warmup=self._warmup(mode), flops_per_image=self.flops.get("pix2pix"),
                             timeout_s=max(self.deadline.left(), 1.0))
        except ImtransError as exc:
            self.add(head | {"error": _describe(exc)})
            return
        result["settings"] = {"recipe": str(recipe), "overrides": sets} | result["settings"]
        single = self.done.get(("pix2pix", mode.name, batch))
        extra: Record = {}
        if single is not None:
            extra = {"single_process_images_per_sec": single["images_per_sec"],
                     "ddp_efficiency": result["images_per_sec"] / single["images_per_sec"]}
        self.add(self._with_target(head | result | extra, case))

    # --- one run -------------------------------------------------------------------------

    def measure(self, case: Case, mode: Mode, batch: int) -> Record:
        """Benchmark ``case`` in ``mode`` at ``batch``; add and return its record (a result,
        an ``error`` or a deadline ``skipped``)."""
        head = self._head(case.name, mode, batch)
        refusal = self.deadline.refusal(self.options.size.reserve(mode))
        if refusal is not None:
            return self.add(head | {"skipped": True, "reason": refusal})
        recipe_path, sets = self._recipe_and_sets(case, mode, batch)
        self._progress(self._progress_line(case.name, mode, batch))
        _reset_compiler()  # each run compiles its own networks, from a clean compiler state
        try:
            recipe = load_recipe(recipe_path, sets, registry=self.registry)
            result = benchmark(recipe, steps=self._steps(batch), warmup=self._warmup(mode),
                               registry=self.registry,
                               flops_per_image=self.flops.get(case.method))
        except Exception as exc:  # a failing mode is reported, and the suite goes on
            if _out_of_memory(exc):
                return self.add(head | {"error": f"out of memory at batch {batch}: "
                                                 + _describe(exc), "out_of_memory": True})
            return self.add(head | {"error": _describe(exc)})
        finally:
            _free_memory()
        self.flops.setdefault(case.method, result["flops_per_image"])
        result["settings"] = {"recipe": str(recipe_path), "overrides": sets} | result["settings"]
        record = self._with_target(head | result, case)
        self.done[(case.method, mode.name, batch)] = record
        return self.add(record)

    def add(self, record: Record) -> Record:
        """Keep ``record`` and hand it to ``emit``."""
        self.records.append(record)
        self._emit(record)
        return record

    def _head(self, case: str, mode: Mode, batch: int | None) -> Record:
        return {"suite": "gpu", "case": case, "mode": mode.name, "size": self.options.size.name,
                "batch_size": batch}

    def _recipe_and_sets(self, case: Case, mode: Mode, batch: int) -> tuple[Path, list[str]]:
        recipe = shipped_recipe(METHODS[case.method].recipe)
        return recipe, run_overrides(case, mode, self.options.size, batch, self.root,
                                     cuda=self.cuda, user=self.options.overrides)

    def _steps(self, batch: int) -> int:
        return self.options.steps or self.options.size.steps(batch)

    def _warmup(self, mode: Mode) -> int:
        if self.options.warmup is not None:
            return self.options.warmup
        return self.options.size.warmup[int(mode.compiled)]

    def _progress_line(self, case: str, mode: Mode, batch: int) -> str:
        self.runs += 1
        return (f"[{self.deadline.elapsed():5.0f} s] run {self.runs}: {case}, {mode.name}, "
                f"batch {batch}")

    def _with_target(self, record: Record, case: Case) -> Record:
        """``record`` with the case's target, whether it is met (on CUDA at full size only:
        elsewhere None) and the fraction of the device's peak reached."""
        precision = record.get("settings", {}).get("precision", "fp32")
        peak = peak_tflops(record.get("device", ""), precision,
                           tf32=bool(torch.backends.cudnn.allow_tf32))
        judged = self.cuda and self.options.size.name == "full" and case.target is not None
        return record | {
            "target_images_per_sec": case.target,
            "official_images_per_sec": case.official,
            "meets_target": record["images_per_sec"] >= case.target if judged else None,
            "device_peak_tflops": peak,
            "fraction_of_peak": record["achieved_tflops"] / peak if peak else None,
        }


def _describe(exc: BaseException) -> str:
    """An error as one line: its type (unless ours, whose messages stand alone) and text."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, ImtransError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 3] + "..."


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means the batch does not fit: torch's out-of-memory error, one a
    compiler wrapped (its message keeps the words), or the recipe check's refusal of a batch
    that cannot fit in the device's memory at all."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return "out of memory" in text or "cannot fit in the memory of" in text


def _reset_compiler() -> None:
    """Forget earlier compilations and their CUDA graph memory pools: a run must neither
    reuse another run's graphs nor hit the recompilation limit, past which torch.compile
    silently falls back to eager (the on-disk caches still spare repeated work)."""
    import torch._dynamo

    torch._dynamo.reset()


def _free_memory() -> None:
    """Release the finished run's tensors, so the next one's peak is its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
