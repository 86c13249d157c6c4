"""Translation: size arithmetic, tiling, translator modes, and `imtrans translate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from imtrans.cli import cli
from imtrans.errors import CheckpointError, InvalidArgumentError
from imtrans.inference import load_translator
from imtrans.inference.tiling import padded_size, reflect_pad, tile_starts, translate_tiled

pytestmark = pytest.mark.floor  # translate: CI runs these on the torch floor too


def test_padding_and_tiling_arithmetic() -> None:
    assert [padded_size(s, 4) for s in (1, 4, 5, 77)] == [4, 4, 8, 80]
    assert padded_size(300, 256) == 512
    assert tile_starts(1000, 512, 64) == [0, 448, 488]
    assert tile_starts(512, 512, 64) == [0]
    image = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = reflect_pad(image, 9, 11)  # needs several reflections: 2 -> 3 -> 5 -> 9 rows
    assert padded.shape == (1, 1, 9, 11)
    assert torch.equal(padded[..., :2, :3], image)  # the original stays in the top left
    assert torch.equal(padded[0, 0, 2, :3], image[0, 0, 0])  # row 2 reflects row 0
    one = reflect_pad(torch.ones(1, 3, 1, 1), 4, 4)
    assert torch.equal(one, torch.ones(1, 3, 4, 4))  # a 1-pixel side is replicated
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 16, 16)


def test_tiles_blend_back_to_exactly_the_whole() -> None:
    images = torch.randn(2, 3, 80, 96)
    out = translate_tiled(lambda x: x * 2 - 1, images, tile=32, overlap=8,
                          device=torch.device("cpu"))
    torch.testing.assert_close(out, images * 2 - 1)


def test_translator_keeps_any_size_and_is_the_generator_on_fitting_sizes(
        pix2pix_run: Path) -> None:
    translate = load_translator(pix2pix_run, device="cpu", mode="eval")
    assert translate.size_multiple == 64 and translate.step == 4
    image = torch.rand(3, 50, 77) * 2 - 1
    out = translate(image)
    assert out.shape == (3, 50, 77) and out.abs().max() <= 1
    fitting = torch.rand(2, 3, 64, 128) * 2 - 1
    torch.testing.assert_close(translate(fitting), translate.generator(fitting))
    # The eval-mode network is the trained one with running statistics.
    weights = load_file(translate.checkpoint)
    first_conv = next(k for k in weights if k.startswith("net.gen.") and k.endswith("weight"))
    name = first_conv.removeprefix("net.gen.")
    torch.testing.assert_close(translate.generator.state_dict()[name], weights[first_conv])


def test_tiled_translation_of_a_large_image(pix2pix_run: Path) -> None:
    whole = load_translator(pix2pix_run, device="cpu", mode="eval")
    tiled = load_translator(pix2pix_run, device="cpu", mode="eval", tile_size=128,
                            tile_overlap=32)
    image = torch.rand(1, 3, 200, 300) * 2 - 1
    out = tiled(image)
    assert out.shape == image.shape
    # Eval-mode batch norm is local enough that tiles agree with the whole image in most places.
    difference = (out - whole(image)).abs()
    assert difference.mean() < 0.1, difference.mean()


def test_paper_mode_uses_each_images_own_statistics_and_seeded_dropout(
        pix2pix_run: Path) -> None:
    translate = load_translator(pix2pix_run, device="cpu", mode="paper")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in translate.generator.modules())
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    torch.manual_seed(0)
    first = translate(torch.cat([a, b]))
    torch.manual_seed(0)
    again = translate(torch.cat([a, b]))
    torch.manual_seed(1)
    other_seed = translate(torch.cat([a, b]))
    assert torch.equal(first, again)
    assert not torch.equal(first, other_seed)  # dropout is on, as the paper tests
    for module in translate.generator.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    # Without dropout, an image's translation does not depend on the rest of its batch.
    torch.testing.assert_close(translate(torch.cat([a, b]))[:1], translate(a))


def test_pil_images_directions_and_bad_checkpoints(cyclegan_run: Path, pix2pix_run: Path,
                                                   tmp_path: Path) -> None:
    forward = load_translator(cyclegan_run, device="cpu")
    backward = load_translator(cyclegan_run, direction="BtoA", device="cpu")
    weights = load_file(forward.checkpoint)
    for translator, role in ((forward, "gen_ab"), (backward, "gen_ba")):
        state = translator.generator.state_dict()
        assert all(torch.equal(state[k.removeprefix(f"net.{role}.")], v)
                   for k, v in weights.items() if k.startswith(f"net.{role}."))
    out = forward(Image.new("L", (37, 21), 128))
    assert out.size == (37, 21) and out.mode == "RGB"
    with pytest.raises(InvalidArgumentError, match="no BtoA generator"):
        load_translator(pix2pix_run, direction="BtoA", device="cpu")
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_translator(bogus)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_translator(tmp_path)


def _write_inputs(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 77, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(folder / "sub/b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


def test_translate_command(pix2pix_run: Path, tmp_path: Path) -> None:
    _write_inputs(tmp_path / "in")
    runner = CliRunner()
    result = runner.invoke(cli, ["translate", str(pix2pix_run), str(tmp_path / "in"),
                                 str(tmp_path / "out"), "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output
    assert "wrote 2 image(s)" in result.output
    assert "skipped 1 file(s) (1 unreadable)" in result.output
    assert Image.open(tmp_path / "out/a.jpg").size == (77, 50)
    assert Image.open(tmp_path / "out/sub/b.png").size == (40, 30)
    assert not (tmp_path / "out/broken.jpg").exists()

    result = runner.invoke(cli, ["translate", str(pix2pix_run), str(tmp_path / "in/**/*.png"),
                                 str(tmp_path / "globbed"), "--format", "webp",
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    # (and the record of what translate wrote there: tests/test_hostile_writes.py)
    assert [p.relative_to(tmp_path) for p in (tmp_path / "globbed").rglob("*.*")
            if not p.name.startswith(".")] == [Path("globbed/sub/b.webp")]

    single = tmp_path / "single.png"
    result = runner.invoke(cli, ["translate", str(pix2pix_run), str(tmp_path / "in/a.jpg"),
                                 str(single), "--workers", "0"])
    assert result.exit_code == 0 and Image.open(single).size == (77, 50)

    for args, message in (([str(tmp_path / "nothing")], "does not exist"),
                          ([str(tmp_path / "in"), str(tmp_path / "x.png")], "is a file name")):
        target = args[1] if len(args) > 1 else str(tmp_path / "o")
        result = runner.invoke(cli, ["translate", str(pix2pix_run), args[0], target])
        assert result.exit_code == 1 and "error:" in result.output and message in result.output
