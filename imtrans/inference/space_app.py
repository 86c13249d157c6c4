"""imtrans demo app: a trained image-to-image generator in a browser page (gradio).

Written by ``imtrans demo RUN --write-app DIR`` as ``DIR/app.py``; it needs only torch, gradio,
pillow and numpy (not imtrans): the generators are TorchScript files beside it. Run it with
``python app.py`` (http://127.0.0.1:7860; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT change
where it listens), or upload the folder as a HuggingFace Space.

Each image is read as imtrans reads it (EXIF orientation applied, converted to the generator's
channels, 0..255 onto [-1, 1]), padded by reflection to the generator's size multiple,
translated (in overlapping tiles above TILE x TILE pixels) and cropped back, and mapped to
0..255 as ``imtrans translate`` writes it: an 8-bit image gives the pixels ``imtrans
translate`` saves.

This file is also imtrans's template of that app: it imports nothing from imtrans, and
``imtrans demo --write-app`` replaces the CONFIG line below with the exported run's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent

# The run's values, written by imtrans demo --write-app (one line).
CONFIG: dict[str, Any] = {"title": "imtrans demo", "models": {}, "in_channels": {}, "size_multiple": {}, "tile": 1024, "overlap": 64, "about": ""}  # noqa: E501

_models: dict[str, Any] = {}


def load_model(direction: str) -> Any:
    """The TorchScript generator of ``direction``, loaded once."""
    if direction not in _models:
        model = torch.jit.load(str(HERE / CONFIG["models"][direction]), map_location="cpu")
        _models[direction] = model.eval()
    return _models[direction]


def read_image(path: str | Path, direction: str) -> np.ndarray:
    """An image file as an ``H x W x C`` ``uint8`` array of the channels the generator of
    ``direction`` takes."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("P", "PA"):
            alpha = image.mode == "PA" or "transparency" in image.info
            image = image.convert("RGBA" if alpha else "RGB")
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[CONFIG["in_channels"][direction]]
        array = np.asarray(image.convert(mode))
    return array[:, :, None] if array.ndim == 2 else array


def _padded(size: int, multiple: int) -> int:
    return max(multiple, -(-size // multiple) * multiple)


def _reflect_pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad on the bottom and right by reflection, repeatedly for small images."""
    while x.shape[-2] < height or x.shape[-1] < width:
        h, w = x.shape[-2:]
        add_h = min(height - h, h - 1) if h > 1 else height - h
        add_w = min(width - w, w - 1) if w > 1 else width - w
        mode = "reflect" if h > 1 and w > 1 else "replicate"
        x = F.pad(x, (0, add_w, 0, add_h), mode=mode)
    return x


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def _ramp(length: int, overlap: int) -> torch.Tensor:
    index = torch.arange(length, dtype=torch.float32)
    edge = float(overlap + 1)
    return torch.minimum((index + 1) / edge, (length - index) / edge).clamp(max=1.0)


def _tiled(model: Any, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Translate in overlapping tiles blended with linear ramps (imtrans's tiling)."""
    height, width = x.shape[-2:]
    out: torch.Tensor | None = None
    total = torch.zeros(1, 1, height, width)
    for top in _starts(height, tile, overlap):
        for left in _starts(width, tile, overlap):
            result = model(x[..., top:top + tile, left:left + tile]).float()
            th, tw = result.shape[-2:]
            weight = _ramp(th, overlap)[:, None] * _ramp(tw, overlap)[None, :]
            if out is None:
                out = torch.zeros(x.shape[0], result.shape[1], height, width)
            out[..., top:top + th, left:left + tw] += result * weight
            total[..., top:top + th, left:left + tw] += weight
    assert out is not None
    return out.div_(total)


@torch.no_grad()
def translate(image: np.ndarray, direction: str) -> np.ndarray:
    """Translate an ``H x W x C`` ``uint8`` image; returns ``H x W x C'`` ``uint8``."""
    model = load_model(direction)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    x = torch.from_numpy(chw).div_(127.5).sub_(1.0)[None]
    height, width = x.shape[-2:]
    multiple = CONFIG["size_multiple"][direction]
    target_h, target_w = _padded(height, multiple), _padded(width, multiple)
    tile = _padded(CONFIG["tile"], multiple)
    x = _reflect_pad(x, target_h, target_w)
    if target_h * target_w > tile**2:
        out = _tiled(model, x, tile, min(CONFIG["overlap"], tile // 2))
    else:
        out = model(x).float()
    out = out[0, :, :height, :width].clamp(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def _shown(image: np.ndarray) -> np.ndarray:
    return image[:, :, 0] if image.shape[2] == 1 else image


def build_demo() -> Any:
    """The page: upload images, choose the direction, see each input beside its output."""
    import gradio as gr

    directions = list(CONFIG["models"])

    def run(paths: list[str] | None, direction: str) -> tuple[list[Any], str]:
        if not paths:
            return [], "Upload one or more images first."
        items: list[Any] = []
        skipped = []
        for path in paths:
            name = Path(path).name
            try:
                image = read_image(path, direction)
            except (OSError, ValueError) as exc:
                skipped.append(f"{name}: {exc}")
                continue
            items += [(_shown(image), name), (_shown(translate(image, direction)),
                                              f"{name}: {direction}")]
        text = f"Translated {len(items) // 2} image(s) {direction}."
        return items, text + (" Skipped: " + "; ".join(skipped) if skipped else "")

    with gr.Blocks(title=CONFIG["title"], analytics_enabled=False) as demo:
        gr.Markdown(f"# {CONFIG['title']}")
        if CONFIG["about"]:
            gr.Markdown(CONFIG["about"])
        with gr.Row():
            files = gr.File(label="Images", file_count="multiple", file_types=["image"],
                            elem_id="inputs")
            with gr.Column():
                direction = gr.Radio(directions, value=directions[0], label="Direction",
                                     elem_id="direction")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
        # PNG: the page shows the output's own pixels (gradio's default, WebP, is lossy).
        gallery = gr.Gallery(label="Input | output", columns=2, format="png",
                             elem_id="results", type="numpy", interactive=False)
        status = gr.Markdown(elem_id="status")
        button.click(run, [files, direction], [gallery, status])
    return demo


demo = build_demo() if CONFIG["models"] else None

if __name__ == "__main__":
    assert demo is not None, "no models: write this app with imtrans demo RUN --write-app DIR"
    demo.launch()
