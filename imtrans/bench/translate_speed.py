"""Whole-process speed of ``imtrans translate`` against a plain eager fp32 loop.

Both commands run as new processes (start-up, imports and the checkpoint's loading included),
in turn (plain, fast, plain, fast...), so that a drift of the machine's speed touches both
alike; the figures are medians. The plain loop is :mod:`imtrans.bench.plain_translate` (what
the official ``test.py`` does); the fast command is ``imtrans translate`` with the options
given (by default ``--precision auto --workers 0 --batch-size 1``). Both write PNGs of the
same network; torch uses its default thread count in both. The first ``translate`` run of a
network of this shape on a machine also counts its largest layer for the memory budget and
keeps the count in the user cache, as any first run of a model does: that run is then the
slowest of the five, which the median passes over.

Usage (from a checkout; the checkpoint is made by one tiny training step of the CycleGAN
recipe with a full-width ``resnet_9blocks`` generator when none is given)::

    python -m imtrans.bench.translate_speed --images ~/monet2photo/testB --count 48 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "make_checkpoint"]

_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "cyclegan_photo2monet.toml"
_FAST_OPTIONS = "--precision auto --workers 0 --batch-size 1"


def make_checkpoint(folder: Path, generator: str = "resnet_9blocks", ngf: int = 64) -> Path:
    """Train the CycleGAN recipe for one tiny step with a full-size ``generator`` (its weights
    do not matter for speed); return the run directory."""
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.runner import fit

    sets = [f"generator.name={generator!r}", f"generator.ngf={ngf}", "discriminator.ndf=4",
            "data.load_size=36", "data.crop_size=32", "data.num_workers=0",
            "run.device='cpu'", "train.max_steps=1", "train.sample_every=1000",
            f"run.output_dir={str(folder)!r}"]
    return fit(load_recipe(_RECIPE, sets)).run_dir


def _input_folder(images: Path, count: int, folder: Path) -> Path:
    """A folder of links to the first ``count`` images of ``images`` (sorted by name)."""
    chosen = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    folder.mkdir(parents=True)
    for path in chosen[:count]:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def _timed(command: list[str], output: Path) -> float:
    """Seconds ``command`` takes, from its start to its exit, writing into a fresh ``output``."""
    subprocess.run(["rm", "-rf", str(output)], check=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the comparison; print one JSON line and a small table; return the record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from imtrans.samples import sample_root

    bundled = sample_root("monet2photo")
    parser.add_argument("--images", type=Path,
                        default=bundled / "testB" if bundled is not None else None,
                        required=bundled is None,
                        help="a folder of photos (default: the bundled monet2photo testB)")
    parser.add_argument("--count", type=int, default=48, help="the first COUNT images")
    parser.add_argument("--runs", type=int, default=5, help="runs of each command")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint or run directory (default: one made here)")
    parser.add_argument("--options", default=_FAST_OPTIONS,
                        help=f"imtrans translate's options (default: {_FAST_OPTIONS})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imtrans-translate-speed-") as work:
        root = Path(work)
        checkpoint = args.checkpoint or make_checkpoint(root / "runs")
        inputs = _input_folder(args.images, args.count, root / "inputs")
        count = len(list(inputs.iterdir()))
        plain = [sys.executable, "-m", "imtrans.bench.plain_translate", str(checkpoint),
                 str(inputs), str(root / "plain")]
        fast = [sys.executable, "-m", "imtrans", "translate", str(checkpoint), str(inputs),
                str(root / "fast"), "--format", "png", *shlex.split(args.options)]
        times: dict[str, list[float]] = {"plain": [], "fast": []}
        for _ in range(args.runs):
            times["plain"].append(_timed(plain, root / "plain"))
            times["fast"].append(_timed(fast, root / "fast"))
    rates = {name: count / statistics.median(seconds) for name, seconds in times.items()}
    record: dict[str, object] = {
        "images": count, "runs": args.runs, "options": args.options,
        "seconds": times, "images_per_sec": rates,
        "speedup": rates["fast"] / rates["plain"], "load_average": os.getloadavg()}
    print(json.dumps(record))
    for name in ("plain", "fast"):
        print(f"{name:6s} {rates[name]:6.3f} images/s (median of {args.runs})")
    print(f"speed-up {record['speedup']:.2f}x")
    return record


if __name__ == "__main__":
    main()
