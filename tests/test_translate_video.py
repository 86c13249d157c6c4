"""``imtrans translate`` of video clips: every frame translated, at the input's rate and size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imtrans.cli import cli
from imtrans.inference import load_translator
from imtrans.inference.translator import to_uint8
from imtrans.inference.video import VIDEO_EXTRA_MISSING, write_video
from tests.conftest import cli_error

imageio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")


def _moving_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth gradients that slide a few pixels each frame (content a codec keeps well)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return [np.stack([128 + 100 * np.sin((x + 3 * i) / 7), 128 + 100 * np.cos((y - 2 * i) / 5),
                      128 + 60 * np.sin((x + y + 4 * i) / 11)], -1).astype(np.uint8)
            for i in range(count)]


def _make_clip(path: Path, count: int = 12, width: int = 64, height: int = 48,
               fps: float = 10, faststart: bool = False) -> list[np.ndarray]:
    """Write a clip with imageio's own writer; return its frames as decoded back."""
    params = ["-movflags", "+faststart"] if faststart else None
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1,
                            output_params=params, ffmpeg_log_level="error",
                            pixelformat="yuv420p" if width % 2 == height % 2 == 0
                            else "yuv444p") as writer:
        for frame in _moving_frames(count, width, height):
            writer.append_data(frame)
    return _read(path)[0]


def _read(path: Path) -> tuple[list[np.ndarray], float]:
    with imageio.get_reader(path, "ffmpeg") as reader:
        return [np.asarray(frame) for frame in reader], reader.get_meta_data()["fps"]


def _translate(run: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["translate", str(run), *args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return result.output


def _mean_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean absolute difference of two frame sequences, in 0..255 levels."""
    return float(np.mean([np.abs(x.astype(np.float32) - y).mean()
                          for x, y in zip(a, b, strict=True)]))


def _luma(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames' luma (BT.601 weights), the plane 4:2:0 video keeps at full resolution."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return [frame.astype(np.float32) @ weights for frame in frames]


def test_a_clip_is_translated_frame_by_frame(cyclegan_run: Path, tmp_path: Path) -> None:
    frames = _make_clip(tmp_path / "in.mp4")
    output = _translate(cyclegan_run, str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4"),
                        "--batch-size", "5")  # batches of 5, 5 and 2
    assert "translating 1 clip(s) AtoB" in output
    assert "out.mp4: 12 frames, 64x48 at 10 fps" in output
    written, fps = _read(tmp_path / "out.mp4")
    assert len(written) == 12 and fps == 10 and written[0].shape == (48, 64, 3)

    # The reference: each decoded frame translated alone, through the same codec.
    translator = load_translator(cyclegan_run, device="cpu", mode="eval")
    alone = [to_uint8(translator.translate_batch(translator.to_network(frame)[None]))[0]
             .permute(1, 2, 0).numpy() for frame in frames]
    write_video(tmp_path / "reference.mp4", alone, 10)
    reference, _ = _read(tmp_path / "reference.mp4")
    # Compared in luma: 4:2:0 video halves the colour planes' resolution, which on these
    # tiny noisy outputs costs 12 levels of RGB on its own, the same for both encodes.
    written, reference, alone = _luma(written), _luma(reference), _luma(alone)
    assert _mean_diff(written, reference) < 1  # the same frames, encoded alike (0.38)
    assert _mean_diff(written, alone) < 4  # within the codec's loss (2.2 levels)
    assert _mean_diff(written[1:], alone[:-1]) > 8  # each frame its own, in order (10.8)
    assert _mean_diff(written, _luma(frames)) > 20  # the network did translate them (44)
    # Nothing but the outputs and the record of them is left in the folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".imtrans-outputs.jsonl", "in.mp4", "out.mp4", "reference.mp4"]


def test_video_is_translated_in_eval_mode_by_default_and_images_in_paper_mode(
        pix2pix_run: Path, tmp_path: Path) -> None:
    _make_clip(tmp_path / "in.mp4", count=6)
    assert ", eval mode" in _translate(pix2pix_run, str(tmp_path / "in.mp4"),
                                       str(tmp_path / "auto.mp4"))
    _translate(pix2pix_run, str(tmp_path / "in.mp4"), str(tmp_path / "eval.mp4"),
               "--mode", "eval")
    _translate(pix2pix_run, str(tmp_path / "in.mp4"), str(tmp_path / "paper.mp4"),
               "--mode", "paper")
    auto, eval_mode, paper = (_read(tmp_path / f"{name}.mp4")[0]
                              for name in ("auto", "eval", "paper"))
    assert _mean_diff(auto, eval_mode) == 0
    # Per-frame statistics and dropout (the U-Net's) give other frames.
    assert _mean_diff(auto, paper) > 2
    imageio.imwrite(tmp_path / "frame.png", auto[0])
    assert ", paper mode" in _translate(pix2pix_run, str(tmp_path / "frame.png"),
                                        str(tmp_path / "translated.png"), "--workers", "0")


def test_precision_applies_to_video(cyclegan_run: Path, tmp_path: Path) -> None:
    _make_clip(tmp_path / "in.mp4", count=4)
    _translate(cyclegan_run, str(tmp_path / "in.mp4"), str(tmp_path / "fp32.mp4"))
    output = _translate(cyclegan_run, str(tmp_path / "in.mp4"), str(tmp_path / "bf16.mp4"),
                        "--precision", "bf16")
    assert ", eval mode, bf16" in output
    fp32, bf16 = (_luma(_read(tmp_path / f"{name}.mp4")[0]) for name in ("fp32", "bf16"))
    difference = _mean_diff(fp32, bf16)
    # bf16 did run, and within a few levels of luma of fp32 (2.5 measured, the codec's
    # loss included; neighbouring frames differ by 10)
    assert 0 < difference < 5, difference


def test_odd_sizes_are_kept_exactly(cyclegan_run: Path, tmp_path: Path) -> None:
    _make_clip(tmp_path / "odd.mkv", count=5, width=37, height=21, fps=25)
    _translate(cyclegan_run, str(tmp_path / "odd.mkv"), str(tmp_path / "out.mkv"))
    written, fps = _read(tmp_path / "out.mkv")
    assert len(written) == 5 and fps == 25 and written[0].shape == (21, 37, 3)
    # Into another container and codec: VP9 in WebM.
    _translate(cyclegan_run, str(tmp_path / "odd.mkv"), str(tmp_path / "out.webm"))
    written, fps = _read(tmp_path / "out.webm")
    assert len(written) == 5 and fps == 25 and written[0].shape == (21, 37, 3)


def test_a_clip_with_rotation_metadata_is_written_upright(
        cyclegan_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import imageio_ffmpeg

    _make_clip(tmp_path / "landscape.mp4", count=3)  # 64 x 48, shown turned a quarter
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation:v:0",
                    "90", "-i", str(tmp_path / "landscape.mp4"), "-c", "copy",
                    str(tmp_path / "portrait.mp4")], check=True)
    output = _translate(cyclegan_run, str(tmp_path / "portrait.mp4"), str(tmp_path / "out.mp4"))
    assert "3 frames, 48x64" in output
    # imageio-ffmpeg's warning that the frames' size is not the stream's is not shown.
    assert not [record for record in caplog.records if record.name == "imageio_ffmpeg"]
    written, _ = _read(tmp_path / "out.mp4")
    assert len(written) == 3 and written[0].shape == (64, 48, 3)


def test_a_folder_of_clips_and_the_no_overwrite_rules(cyclegan_run: Path,
                                                      tmp_path: Path) -> None:
    (tmp_path / "clips/sub").mkdir(parents=True)
    _make_clip(tmp_path / "clips/a.mp4", count=3)
    _make_clip(tmp_path / "clips/sub/b.mov", count=4, width=32, height=32, fps=5)
    output = _translate(cyclegan_run, str(tmp_path / "clips"), str(tmp_path / "out"))
    assert "translating 2 clip(s)" in output and "wrote 2 clip(s) to" in output
    assert [len(_read(tmp_path / name)[0]) for name in ("out/a.mp4", "out/sub/b.mov")] == [3, 4]
    assert _read(tmp_path / "out/sub/b.mov")[1] == 5
    # Again into the same folder: its own outputs are replaced.
    _translate(cyclegan_run, str(tmp_path / "clips"), str(tmp_path / "out"))

    runner = CliRunner()
    (tmp_path / "mine.mp4").write_bytes(b"a file of the user's")
    for source, target, message in (
            ("clips/a.mp4", "mine.mp4", "imtrans translate did not write it"),
            ("clips/a.mp4", "clips/a.mp4", "is the input"),
            ("clips", "clips/new", "lies inside the input folder")):
        result = runner.invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / source),
                                     str(tmp_path / target)])
        assert message in cli_error(result)
    assert (tmp_path / "mine.mp4").read_bytes() == b"a file of the user's"
    result = runner.invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "clips/a.mp4"),
                                 str(tmp_path / "mine.mp4"), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(_read(tmp_path / "mine.mp4")[0]) == 3
    result = runner.invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "clips"),
                                 str(tmp_path / "pages"), "--html"])
    assert "--html do(es) not apply to video input" in cli_error(result)


@pytest.mark.parametrize("faststart", [False, True])
def test_a_truncated_clip_is_one_error_and_leaves_no_output(cyclegan_run: Path, tmp_path: Path,
                                                            faststart: bool) -> None:
    # Without faststart the index is at the end and is lost; with it, the frames are.
    _make_clip(tmp_path / "whole.mp4", count=40, faststart=faststart)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in/cut.mp4").write_bytes(data[:len(data) // 2])
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "in/cut.mp4"),
                                      str(tmp_path / "out/cut.mp4")])
    error = cli_error(result)
    expected = "is truncated: " if faststart else "cannot read the video "
    assert expected in error and "cut.mp4" in error, error
    assert not any(path.is_file() and not path.name.startswith(".imtrans-outputs")
                   for path in (tmp_path / "out").rglob("*"))


def test_not_a_video_is_one_error(cyclegan_run: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all" * 20)
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "fake.mp4"),
                                      str(tmp_path / "out.mp4")])
    assert "cannot read the video" in cli_error(result)
    assert not (tmp_path / "out.mp4").exists()


def test_without_the_video_extra(cyclegan_run: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _make_clip(tmp_path / "clip.mp4", count=2)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import now raises ImportError
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "clip.mp4"),
                                      str(tmp_path / "out.mp4")])
    assert cli_error(result) == f"error: {VIDEO_EXTRA_MISSING}"
    assert not (tmp_path / "out.mp4").exists()
