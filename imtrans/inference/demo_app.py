"""The browser demo of ``imtrans demo RUN``: a gradio page that translates uploaded images.

:class:`DemoModel` reads what a checkpoint offers from its header alone (the run's name and
step, its trainer's directions, whether it holds EMA weights) and loads a
:class:`~imtrans.inference.translator.Translator` only when a translation asks for it, one per
(direction, weights, precision), kept for the next request. :func:`build_demo` lays out the
page over it. Images are read and written as ``imtrans translate`` reads and writes them
(:func:`~imtrans.data.native_images.read_native`, the output type's conversion), so an 8-bit
run shows the very pixels ``translate`` saves; images beyond the translator's tile size are
translated in tiles, and an image beyond the memory budget is refused from its header. With
the ``video`` extra, the page also takes a clip, translated as ``imtrans translate`` translates
clips (:func:`~imtrans.inference.video.translate_video`, eval mode) and shown as WebM.

The demo is deterministic: ``paper`` mode (each image normalised by its own statistics) with
dropout off, as :func:`~imtrans.inference.export.export_generator` exports, so one image always
gives one output, and ``imtrans demo --write-app`` serves the same model.

gradio is imported by :func:`build_demo` alone: importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from imtrans.catalogue.assembly import build_trainer
from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.device import parse_device
from imtrans.data.display import display_tensor
from imtrans.data.native_images import read_native
from imtrans.data.value_range import to_network_tensor
from imtrans.errors import (
    CheckpointError,
    DataError,
    ImtransError,
    InvalidArgumentError,
    RecipeError,
)
from imtrans.inference.budget import ImageBudget
from imtrans.inference.export import deployment_generator
from imtrans.inference.output_types import output_type
from imtrans.inference.precision import Precision, resolve_precision
from imtrans.inference.translator import Mode, Translator, input_range, load_translator
from imtrans.runs.checkpoints.files import MANIFEST_KEY, load_checkpoint
from imtrans.runs.checkpoints.lookup import find_checkpoint
from imtrans.runs.directory import RunDir
from imtrans.trainers.ema import EMA_PREFIX

if TYPE_CHECKING:
    import gradio

__all__ = ["DemoModel", "DemoResult", "build_demo", "demo_title"]

#: Pixels per side above which images are translated in tiles (``imtrans translate``'s default).
TILE_SIZE = 1024


def demo_title(run_name: str, step: int) -> str:
    """The page's title: ``imtrans demo: pix2pix_facades, step 4000``."""
    return f"imtrans demo: {run_name}, step {step}"


@dataclass
class DemoResult:
    """One uploaded file's translation: its input and output as ``uint8`` images to show
    (``H x W`` or ``H x W x 3|4``), or why it was skipped."""

    name: str
    shown_input: np.ndarray | None = None
    shown_output: np.ndarray | None = None
    skipped: str | None = None


@dataclass
class DemoModel:
    """The checkpoint a demo serves, and its translators, loaded on first use.

    Attributes:
        checkpoint: The checkpoint file (the newest of a run directory).
        run_name: The run directory's name (the file's stem outside a run directory).
        step: The checkpoint's training step.
        directions: The directions its trainer translates (``AtoB``, and ``BtoA`` for
            CycleGAN), in the trainer's order.
        has_ema: Whether it holds the moving average of every generator's weights.
        device: Where the translators run (``None``: CUDA when present, else the CPU).
    """

    checkpoint: Path
    run_name: str
    step: int
    directions: tuple[str, ...]
    has_ema: bool
    device: str | None = None
    _translators: dict[tuple[str, str, str, str], Translator] = field(default_factory=dict,
                                                                      repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _clips: Path | None = field(default=None, repr=False)
    _precisions: tuple[str, ...] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path | str, device: str | None = None) -> DemoModel:
        """Read what the checkpoint at ``path`` (a file or a run directory) offers, from its
        header; no network is built.

        Raises:
            CheckpointError: no checkpoint there, or one this installation cannot read.
        """
        file = find_checkpoint(path)
        manifest, names = _header(file)
        raw = manifest.get("recipe")
        if not isinstance(raw, dict):
            raise CheckpointError(f"{file} has no recipe in its manifest; it was not written "
                                  "by imtrans run")
        registry = components()
        try:
            trainer = build_trainer(recipe_from_dict(raw, registry=registry), registry)
        except RecipeError as exc:
            raise CheckpointError(f"{file}: the recipe in its manifest is not valid here: "
                                  f"{exc}") from None
        roles = dict(trainer.translators)
        has_ema = bool(roles) and all(
            any(name.startswith(f"{EMA_PREFIX}.{role}.") for name in names)
            for role in roles.values())
        run = RunDir.of_checkpoint(file)
        run_name = run.root.resolve().name if run is not None else file.stem
        return cls(checkpoint=file, run_name=run_name, step=int(manifest.get("step", 0)),
                   directions=tuple(roles), has_ema=has_ema, device=device)

    @property
    def title(self) -> str:
        """The page's title (:func:`demo_title`)."""
        return demo_title(self.run_name, self.step)

    @property
    def weights(self) -> tuple[str, ...]:
        """The weights a user may choose: ``ema`` and ``raw``, or ``raw`` alone."""
        return ("ema", "raw") if self.has_ema else ("raw",)

    @property
    def precisions(self) -> tuple[str, ...]:
        """``fp32``, and the 16-bit types (``bf16``, ``fp16``) the device runs a network in
        (:func:`~imtrans.inference.precision.resolve_precision` tries each once)."""
        if self._precisions is None:
            device = parse_device(self.device, "device")
            runs = []
            for name in ("bf16", "fp16"):
                try:
                    resolve_precision(name, device)
                except InvalidArgumentError:
                    continue
                runs.append(name)
            self._precisions = ("fp32", *runs)
        return self._precisions

    def translator(self, direction: str, weights: str, precision: str = "fp32",
                   mode: Mode = "paper") -> Translator:
        """The translator of ``direction`` with ``weights`` at ``precision`` in ``mode``,
        loaded on the first call and kept for the next ones."""
        key = (direction, weights, precision, mode)
        with self._lock:  # gradio serves requests from several threads
            if key not in self._translators:
                translator = load_translator(self.checkpoint, direction=direction,
                                             device=self.device, mode=mode,
                                             weights=weights,  # type: ignore[arg-type]
                                             tile_size=TILE_SIZE,
                                             precision=cast(Precision, precision))
                deployment_generator(translator)  # dropout off: one input, one output
                self._translators[key] = translator
            return self._translators[key]

    @property
    def loaded(self) -> tuple[tuple[str, str, str, str], ...]:
        """The (direction, weights, precision, mode) of the translators loaded so far."""
        return tuple(self._translators)

    def translate_clip(self, path: Path | str, direction: str, weights: str,
                       precision: str = "fp32") -> Path:
        """Translate a video clip as ``imtrans translate`` does (eval mode: no flicker from
        per-frame statistics or dropout) into a WebM file (VP9: every browser plays it) in a
        folder of this demo's own, removed when the demo ends.

        Raises:
            DataError: the ``video`` extra is missing, or the clip cannot be decoded.
        """
        from imtrans.inference.video import translate_video

        translator = self.translator(direction, weights, precision, mode="eval")
        with self._lock:
            if self._clips is None:
                self._clips = Path(tempfile.mkdtemp(prefix="imtrans-demo-"))
                weakref.finalize(self, shutil.rmtree, self._clips, ignore_errors=True)
            folder = Path(tempfile.mkdtemp(dir=self._clips))
        target = folder / f"{Path(path).stem}_{direction}.webm"
        translate_video(translator, Path(path), target)
        return target

    def translate_file(self, path: Path | str, direction: str, weights: str,
                       precision: str = "fp32") -> DemoResult:
        """Translate one image file as ``imtrans translate`` does; an unreadable file or one
        beyond the memory budget gives a result that says why instead of raising."""
        name = Path(path).name
        translator = self.translator(direction, weights, precision)
        budget = ImageBudget.for_translator(translator, None)
        refusal = budget.refusal(path)
        if refusal is not None:
            return DemoResult(name, skipped=refusal)
        try:
            array = read_native(path, translator.in_channels)
        except DataError as exc:
            return DemoResult(name, skipped=str(exc))
        tensor = to_network_tensor(array, input_range(translator.input_values, array.dtype))
        output = translator.translate_batch(tensor[None])[0]
        kind = output_type(translator.output_values, translator.out_channels)
        if kind.eight_bit and translator.out_channels in (1, 3, 4):
            shown = kind.convert(output)  # the very bytes translate writes
        else:
            shown = display_tensor(output)
        return DemoResult(name, _squeezed(display_tensor(tensor)), _squeezed(shown))


def _squeezed(image: np.ndarray) -> np.ndarray:
    """An ``H x W x 1`` image as ``H x W`` (gray), others unchanged."""
    return image[:, :, 0] if image.shape[2] == 1 else image


def _header(file: Path) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's manifest and tensor names, from the safetensors header alone; a file
    that cannot be read so is loaded whole, which says what is wrong with it."""
    from safetensors import safe_open

    from imtrans.core.jsonfile import loads_bounded

    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            manifest = loads_bounded((handle.metadata() or {})[MANIFEST_KEY])
            names = list(handle.keys())
        if isinstance(manifest, dict):
            return manifest, names
    except Exception:  # any damage: load_checkpoint reads it again and says why
        pass
    loaded = load_checkpoint(file)
    return loaded.manifest, list(loaded.tensors)


def build_demo(model: DemoModel) -> gradio.Blocks:
    """The demo page over ``model``: upload images, choose the direction, the weights and the
    precision, and see each input beside its output. Launch it with ``.launch()``."""
    import gradio as gr

    precision_choices = model.precisions
    with gr.Blocks(title=model.title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {model.title}")
        gr.Markdown(
            f"Checkpoint `{model.checkpoint}`. Paper mode (each image normalised by its own "
            f"statistics), dropout off; images larger than {TILE_SIZE} x {TILE_SIZE} pixels "
            "are translated in overlapping tiles. Outputs are the pixels `imtrans translate` "
            "writes.")
        with gr.Row():
            files = gr.File(label="Images", file_count="multiple", file_types=["image"],
                            elem_id="inputs")
            with gr.Column():
                direction = gr.Radio(list(model.directions), value=model.directions[0],
                                     label="Direction", elem_id="direction")
                weights = gr.Radio(list(model.weights), value=model.weights[0],
                                   label="Weights", elem_id="weights",
                                   info=None if model.has_ema else
                                   "raw only: this run kept no moving average (train.ema)")
                precision = gr.Radio(list(precision_choices), value="fp32",
                                     label="Precision", elem_id="precision",
                                     info="16 bits: faster where the hardware multiplies "
                                     "them natively, within a few levels of fp32"
                                     if len(precision_choices) > 1 else
                                     "fp32 only: this device runs no 16-bit type")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
        # PNG: the page shows the output's own pixels (gradio's default, WebP, is lossy).
        gallery = gr.Gallery(label="Input | output", columns=2, format="png",
                             elem_id="results", type="numpy", interactive=False)
        status = gr.Markdown(elem_id="status")

        def run(paths: list[str] | None, direction: str, weights: str, precision: str
                ) -> tuple[list[tuple[np.ndarray, str]], str]:
            if not paths:
                return [], "Upload one or more images first."
            started = time.perf_counter()
            items: list[tuple[np.ndarray, str]] = []
            skipped: list[str] = []
            try:
                for path in paths:
                    result = model.translate_file(path, direction, weights, precision)
                    if result.skipped is not None:
                        skipped.append(f"{result.name}: {result.skipped}")
                        continue
                    assert result.shown_input is not None and result.shown_output is not None
                    items += [(result.shown_input, result.name),
                              (result.shown_output, f"{result.name}: {direction}")]
            except ImtransError as exc:  # a checkpoint that cannot be loaded: said on the page
                return items, f"error: {exc}"
            seconds = time.perf_counter() - started
            text = (f"Translated {len(items) // 2} image(s) {direction} with {weights} "
                    f"weights, {precision}, in {seconds:.2f} s.")
            if skipped:
                text += " Skipped: " + "; ".join(skipped)
            return items, text

        button.click(run, [files, direction, weights, precision], [gallery, status])

        if importlib.util.find_spec("imageio_ffmpeg") is None:
            gr.Markdown("Video clips need the video extra: pip install 'imtrans[video]'.")
            return demo
        gr.Markdown("## A clip\nTranslated frame by frame in eval mode (no dropout, running "
                    "statistics: no flicker), at its frame rate and size; shown as WebM.")
        with gr.Row():
            clip = gr.Video(label="Clip", sources=["upload"], elem_id="clip")
            clip_output = gr.Video(label="Translated clip", interactive=False,
                                   elem_id="clip_output")
        clip_button = gr.Button("Translate the clip", elem_id="translate_clip")
        clip_status = gr.Markdown(elem_id="clip_status")

        def run_clip(path: str | None, direction: str, weights: str, precision: str
                     ) -> tuple[str | None, str]:
            if not path:
                return None, "Upload a clip first."
            started = time.perf_counter()
            try:
                target = model.translate_clip(path, direction, weights, precision)
            except ImtransError as exc:
                return None, f"error: {exc}"
            return str(target), (f"Translated the clip {direction} with {weights} weights, "
                                 f"{precision}, in {time.perf_counter() - started:.2f} s.")

        clip_button.click(run_clip, [clip, direction, weights, precision],
                          [clip_output, clip_status])
    return demo
