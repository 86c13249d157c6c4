"""``imtrans demo RUN --write-app DIR``: a self-contained demo folder (a HuggingFace Space).

The folder holds ``app.py`` (:mod:`imtrans.inference.space_app` with the run's values), one
TorchScript generator per direction (``generator_AtoB.pt``...; exported and checked by
:func:`~imtrans.inference.export.export_generator`, paper mode, dropout off), a
``requirements.txt`` (torch, gradio, pillow, numpy: not imtrans) and a ``README.md`` whose front
matter makes it a HuggingFace Space. ``python app.py`` runs it anywhere.

The folder must be new or empty (``overwrite`` lets the files replace those of a non-empty
one), and it may not lie in the run directory: a run's files are written by training only.
Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from imtrans.core.atomic import atomic_write
from imtrans.core.paths import inside
from imtrans.errors import InvalidArgumentError
from imtrans.inference.demo_app import TILE_SIZE, DemoModel
from imtrans.inference.export import export_generator
from imtrans.inference.output_types import peek_output
from imtrans.runs.directory import RunDir
from imtrans.runs.output_guard import refuse_run_file

__all__ = ["SpaceFolder", "requirements", "write_space"]

#: The CONFIG line of the app template that the run's values replace.
_CONFIG_LINE = re.compile(r"^CONFIG: dict\[str, Any\] = .*$", re.MULTILINE)

#: Overlap of neighbouring tiles (``imtrans translate``'s default).
_OVERLAP = 64


@dataclass(frozen=True)
class SpaceFolder:
    """What :func:`write_space` wrote: the folder and its files, and the model's step."""

    folder: Path
    files: tuple[Path, ...]
    step: int
    weights: str


def requirements() -> str:
    """``requirements.txt``: torch from the release that exported the models (TorchScript
    files load in that release and newer), gradio from imtrans's ``demo`` extra."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return (f"torch>={major}.{minor}\n"
            "gradio>=6.31.0\n"
            "pillow>=10.0\n"
            "numpy>=1.26\n")


def _readme(model: DemoModel, files: list[str], weights: str) -> str:
    models = "\n".join(f"- `{name}`" for name in files)
    return f"""---
title: {json.dumps(model.run_name)}
emoji: 🎨
colorFrom: indigo
colorTo: pink
sdk: gradio
app_file: app.py
pinned: false
---

# {model.title}

A demo of the imtrans run `{model.run_name}` at step {model.step} ({weights} weights):
upload images, choose the direction, and see each input beside its output.

Run it anywhere with Python 3.10 or newer:

```
pip install -r requirements.txt
python app.py
```

and open http://127.0.0.1:7860 (set `GRADIO_SERVER_NAME=0.0.0.0` to listen on every
interface). Or upload this folder as a HuggingFace Space (sdk: gradio).

The generators are TorchScript files exported by `imtrans export` (paper mode: each image
normalised by its own statistics; dropout off), so the app needs torch, gradio, pillow and
numpy, not imtrans:

{models}

Each takes `N x C x H x W` float32 in [-1, 1] with H and W multiples of its size multiple;
`app.py` pads, tiles images above {TILE_SIZE} x {TILE_SIZE} pixels, and maps 0..255 to and
from [-1, 1] as `imtrans translate` does.
"""


def _app(config: dict[str, object]) -> str:
    template = importlib.resources.files("imtrans.inference").joinpath("space_app.py")
    source = template.read_text(encoding="utf-8")
    line = f"CONFIG: dict[str, Any] = {config!r}  # noqa: E501"
    written, count = _CONFIG_LINE.subn(lambda _: line, source)
    assert count == 1, "the app template has one CONFIG line"
    return written


def _check_folder(folder: Path, checkpoint: Path, overwrite: bool) -> None:
    """Refuse, before any work, a folder in the run directory, one that is not a folder, or
    a non-empty one without ``overwrite``."""
    run = RunDir.of_checkpoint(checkpoint)
    if run is not None and inside(folder, run.root):
        raise InvalidArgumentError(f"--write-app {folder} lies in the run directory "
                                   f"{run.root}, whose files only training writes: choose a "
                                   "folder outside it")
    refuse_run_file(folder / "app.py", InvalidArgumentError)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"--write-app {folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InvalidArgumentError(f"--write-app {folder} is not empty: refusing to write into "
                                   "it; --overwrite lets the app's files replace those of the "
                                   "same names, or choose a new folder")


def write_space(checkpoint: Path | str, folder: Path | str, *, weights: str | None = None,
                overwrite: bool = False) -> SpaceFolder:
    """Write the demo folder of ``checkpoint`` (a checkpoint file or a run directory) into
    ``folder``: see the module docstring.

    Args:
        checkpoint: A checkpoint file, or a run directory (its newest checkpoint is used).
        folder: The folder to write (created).
        weights: ``ema`` or ``raw``; default: the moving average when the checkpoint holds it.
        overwrite: Write into a non-empty folder, replacing files of the same names.

    Raises:
        CheckpointError: no readable checkpoint there.
        InvalidArgumentError: the folder lies in the run directory, is not a folder, is not
            empty (without ``overwrite``), or the run's images are not 8-bit (the app reads
            and writes 8-bit images).
        ExportError: a generator could not be exported or failed its check.
    """
    model = DemoModel.open(checkpoint, device="cpu")
    folder = Path(folder)
    _check_folder(folder, model.checkpoint, overwrite)
    for direction in model.directions:
        values, _ = peek_output(model.checkpoint, direction)
        if values is not None and values.dtype != "uint8":
            raise InvalidArgumentError(
                f"--write-app makes an app that reads and writes 8-bit images, and the "
                f"{direction} outputs of {model.run_name} are {values.dtype}; serve it with "
                "imtrans demo instead")
    chosen = weights or ("ema" if model.has_ema else "raw")
    models: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    in_channels: dict[str, int] = {}
    multiple: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="imtrans-app-") as scratch:
        for direction in model.directions:
            name = f"generator_{direction}.pt"
            result = export_generator(model.checkpoint, Path(scratch) / name, "torchscript",
                                      direction=direction, mode="paper",
                                      weights=chosen)  # type: ignore[arg-type]
            models[direction] = name
            contents[name] = result.path.read_bytes()
            in_channels[direction] = result.in_channels
            multiple[direction] = result.size_multiple
            if {result.in_channels, result.out_channels} - {1, 3, 4}:
                raise InvalidArgumentError(
                    f"--write-app makes an app for gray, RGB or RGBA images, and the "
                    f"{direction} generator of {model.run_name} takes {result.in_channels} "
                    f"and gives {result.out_channels} channels; serve it with imtrans demo")
    about = (f"Run `{model.run_name}`, step {model.step}, {chosen} weights. Paper mode (each "
             "image normalised by its own statistics), dropout off.")
    config: dict[str, object] = {
        "title": model.title, "models": models, "in_channels": in_channels,
        "size_multiple": multiple, "tile": TILE_SIZE, "overlap": _OVERLAP, "about": about}
    contents["app.py"] = _app(config).encode()
    contents["requirements.txt"] = requirements().encode()
    contents["README.md"] = _readme(model, list(models), chosen).encode()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in contents.items():
        atomic_write(folder / name, data)
        written.append(folder / name)
    return SpaceFolder(folder, tuple(written), model.step, chosen)
