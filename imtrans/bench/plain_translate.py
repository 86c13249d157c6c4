"""The yardstick of ``imtrans.bench.translate_speed``: a plain eager fp32 loop, as the
official pix2pix/CycleGAN ``test.py`` translates: open, normalise, forward, save, one image at
a time, in one thread of control.

Only the generator comes from imtrans (:func:`imtrans.load_translator`: the very network
``imtrans translate`` runs); the loop is torch and Pillow alone.

Usage::

    python -m imtrans.bench.plain_translate CHECKPOINT INPUT_FOLDER OUTPUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["plain_translate"]


def plain_translate(checkpoint: str | Path, inputs: Path, outputs: Path,
                    direction: str = "AtoB") -> int:
    """Translate every image of ``inputs`` into a PNG of the same name in ``outputs``, one at
    a time, in fp32; return the number written."""
    from imtrans.inference import load_translator

    generator = load_translator(checkpoint, direction=direction, device="cpu").generator
    outputs.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(inputs.iterdir()):
        image = Image.open(path).convert("RGB")
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None].sub(0.5).div(0.5)
        with torch.no_grad():
            result = generator(tensor)[0]
        pixels = ((result.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(outputs / f"{path.stem}.png")
        count += 1
    return count


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(plain_translate(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])), "written")
