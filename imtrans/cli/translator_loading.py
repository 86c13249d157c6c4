"""Loading the translator of ``imtrans translate`` (images and clips) and saying what runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from imtrans.core.printable import printable_path

if TYPE_CHECKING:
    from imtrans.inference.translator import Translator

__all__ = ["load_announced"]


def load_announced(console: Console, what: str, checkpoint: str, *, direction: str,
                   device: str | None, mode: str, compile_network: bool,
                   **options: Any) -> Translator:
    """Load the translator and print the line that says what translates ``what`` (``"3
    image(s)"``, ``"1 clip(s)"``) with which checkpoint, weights, device, mode and precision.

    ``options`` are :func:`~imtrans.inference.load_translator`'s ``tile_size``,
    ``tile_overlap``, ``weights`` and ``precision``. The process keeps the memory it frees for
    the next image (:func:`~imtrans.core.heap.keep_freed_memory`: without it, the network ran
    about 7% slower on a 2-core CPU, mapping fresh pages for its activations).
    """
    from imtrans.core.device import parse_device
    from imtrans.core.heap import keep_freed_memory
    from imtrans.inference import load_translator

    keep_freed_memory()

    translator = load_translator(checkpoint, direction=direction,
                                 device=parse_device(device, "--device"),
                                 mode=mode,  # type: ignore[arg-type]
                                 compile=compile_network, **options)
    speed = "" if translator.precision_name == "fp32" and not compile_network else \
        f", {translator.precision_name}{' compiled' if compile_network else ''}"
    console.print(Text(f"translating {what} {direction} with "
                       f"{printable_path(translator.checkpoint or checkpoint)} "
                       f"(step {translator.step}, {translator.weights} weights) on "
                       f"{translator.device}, {mode} mode{speed}"), highlight=False)
    return translator
