"""``imtrans bench``: one JSON line of throughput, step times and counted FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from imtrans.cli import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "run.device=cpu", "data.num_workers=0"]
TINY_UNET = ["generator.name=unet", "generator.num_downs=5"]


def bench(tmp_path: Path, recipe: str, *sets: str, extra: tuple[str, ...] = ()) -> dict:
    args = ["bench", str(ROOT / "recipes" / f"{recipe}.toml"), "--steps", "2", "--warmup", "1",
            *extra, *(a for s in sets for a in ("--set", s))]
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and not list(cwd.iterdir())  # no run directory
    return json.loads(lines[0])


def test_bench_pix2pix_on_the_bundled_sample(tmp_path: Path) -> None:
    out = bench(tmp_path, "pix2pix_edges2shoes", *TINY, *TINY_UNET)
    assert out["images_per_sec"] > 0 and 0 <= out["data_wait_fraction"] < 1
    assert 0 < out["step_ms_p50"] <= out["step_ms_p90"] <= out["step_ms_p99"]
    assert out["peak_memory_bytes"] is None and out["warmup_seconds"] > 0
    assert out["flops_per_image"] > 0 and out["achieved_tflops"] > 0
    assert out["torch"] and out["imtrans"] and out["device"].startswith("cpu")
    settings = out["settings"]
    assert settings["batch_size"] == 4 and settings["image_size"] == [32, 32]
    assert settings["precision"] == "fp32" and settings["synthetic"] is False


def test_bench_flops_scale_with_width_squared(tmp_path: Path) -> None:
    # Convolution FLOPs grow with in x out channels: doubling ngf and ndf quadruples the
    # inner layers, while the 3-channel first and last layers (a large share at ngf 4) only
    # double: measured 3.47, so between 3.2 and 4.
    sets = [*TINY, "data.batch_size=1"]
    narrow = bench(tmp_path, "cyclegan_photo2monet", *sets, extra=("--synthetic",))
    wide = bench(tmp_path, "cyclegan_photo2monet", *sets, "generator.ngf=8",
                 "discriminator.ndf=8", extra=("--synthetic",))
    ratio = wide["flops_per_image"] / narrow["flops_per_image"]
    assert 3.2 < ratio < 4.0, ratio


def test_bench_synthetic_needs_no_data_and_appends_to_output(tmp_path: Path) -> None:
    output = tmp_path / "bench.jsonl"
    sets = [*TINY, *TINY_UNET, "data.root=/nonexistent",
            "speed.precision=bf16", "speed.channels_last=true"]
    out = bench(tmp_path, "pix2pix_facades", *sets,
                extra=("--synthetic", "--output", str(output)))
    assert out["settings"]["synthetic"] and out["settings"]["precision"] == "bf16"
    assert out["data_wait_fraction"] < 0.5
    assert json.loads(output.read_text().splitlines()[0]) == out


def test_bench_cuda_graphs_on_the_cpu_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", str(ROOT / "recipes" / "pix2pix_facades.toml"),
                                      "--synthetic", *(a for s in [*TINY, *TINY_UNET,
                                                                   "speed.cuda_graphs=true"]
                                                       for a in ("--set", s))])
    assert result.exit_code == 1
    assert "error: speed.cuda_graphs = true needs a CUDA device" in result.output


@pytest.mark.gpu
def test_bench_on_the_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    sets = [s for s in TINY if not s.startswith("run.device")] + TINY_UNET
    out = bench(tmp_path, "pix2pix_edges2shoes", *sets, "speed.precision=bf16",
                extra=("--synthetic",))
    assert out["peak_memory_bytes"] > 0 and out["settings"]["device"].startswith("cuda")
