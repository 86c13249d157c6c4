"""``imtrans bench --suite gpu``: the GPU proof, run here at the tiny size on the CPU."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result
from conftest import cli_error

from imtrans.bench.suite import CASES, COLUMNS, SIZES, SuiteOptions, run_suite
from imtrans.bench.suite import runner as suite_runner
from imtrans.bench.suite.deadline import Deadline
from imtrans.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FACADES = SHARED / "data" / "facades"
INCEPTION = SHARED / "weights" / "fid_inception_tf2015.pt"
EAGER = ("fp32_eager", "bf16_eager")
TARGET_CASES = [c for c in CASES if c != "ddp"]
#: What every successful run line holds besides the benchmark's own fields.
SUITE_FIELDS = {"suite", "case", "mode", "size", "batch_size", "target_images_per_sec",
                "official_images_per_sec", "meets_target", "device_peak_tflops",
                "fraction_of_peak"}
BENCH_FIELDS = {"images_per_sec", "step_ms_p50", "step_ms_p90", "step_ms_p99",
                "data_wait_fraction", "peak_memory_bytes", "flops_per_image", "achieved_tflops",
                "device", "settings"}


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["bench", *args], env=env)


def lines_of(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """The tiny suite, every case, in the eager modes, with --output."""
    output = tmp_path_factory.mktemp("suite") / "suite.jsonl"
    result = invoke("--suite", "gpu", "--size", "tiny", "--modes", ",".join(EAGER),
                    "--output", str(output), "--set", "run.device=cpu")
    assert result.exit_code == 0, result.output
    return result, output


@pytest.mark.floor
def test_one_line_per_case_and_mode(tiny_suite: tuple[Result, Path]) -> None:
    result, output = tiny_suite
    lines = lines_of(result)
    runs = [r for r in lines if r["case"] in TARGET_CASES]
    # Which batch wins a sweep depends on the machine and its load: a "best" case runs at the
    # batch its method's sweep found, whatever that was.
    best = {r["case"].removesuffix("_sweep"): r["best_batch_size"] for r in lines
            if "best_batch_size" in r}
    assert sorted((r["case"], r["mode"]) for r in runs) == sorted(
        (c, m) for c in TARGET_CASES for m in EAGER)
    for record in runs:
        assert set(record) >= SUITE_FIELDS | BENCH_FIELDS, set(SUITE_FIELDS | BENCH_FIELDS) - set(
            record)
        assert record["suite"] == "gpu" and record["size"] == "tiny"
        assert record["images_per_sec"] > 0 and "error" not in record
        assert record["meets_target"] is None and record["fraction_of_peak"] is None
        assert record["settings"]["image_size"] == [32, 32]
        assert record["settings"]["data_cache"] is True  # the fast path, not --synthetic
        assert record["settings"]["synthetic"] is False
        method, kind = record["case"].rsplit("_", 1)
        assert record["batch_size"] == (1 if kind == "b1" else best[method])
    assert {r["target_images_per_sec"] for r in runs} == {250.0, 2500.0, 40.0, 200.0}
    # --output appends exactly the lines of stdout
    assert [json.loads(line) for line in output.read_text().splitlines()] == lines


@pytest.mark.floor
def test_sweeps_and_the_ddp_line(tiny_suite: tuple[Result, Path]) -> None:
    lines = lines_of(tiny_suite[0])
    sweeps = {r["case"]: r for r in lines if "best_batch_size" in r}
    assert set(sweeps) == {"pix2pix_sweep", "cyclegan_sweep"}
    for sweep in sweeps.values():
        assert sweep["mode"] == "bf16_eager" and set(sweep["images_per_sec_by_batch"]) == {"1",
                                                                                          "2"}
        rates = sweep["images_per_sec_by_batch"]
        assert sweep["best_batch_size"] == int(max(rates, key=rates.__getitem__))
    ddp = [r for r in lines if r["case"] == "ddp"]
    assert len(ddp) == 1, ddp
    assert ddp[0]["ddp"] == {"backend": "gloo", "world_size": 1}
    assert ddp[0]["images_per_sec"] > 0 and ddp[0]["ddp_efficiency"] > 0
    assert ddp[0]["batch_size"] == sweeps["pix2pix_sweep"]["best_batch_size"]


@pytest.mark.floor
def test_summary_table_rows(tiny_suite: tuple[Result, Path]) -> None:
    stderr = tiny_suite[0].stderr.splitlines()
    header = next(i for i, line in enumerate(stderr) if line.split()[:3] == ["case", "mode",
                                                                            "batch"])
    assert all(c.split()[0] in stderr[header] for c in COLUMNS)
    rows = [line.split() for line in stderr[header + 1:]]
    for case in TARGET_CASES:
        for mode in EAGER:
            row = next(r for r in rows if r[:2] == [case, mode])
            assert "n/a" in row and "(cpu)" in row, row
    assert any(r[0] == "ddp" for r in rows)


def test_the_sweep_stops_at_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    real = suite_runner.benchmark
    sizes: list[int] = []

    def benchmark(recipe: Any, **kwargs: Any) -> dict[str, Any]:
        sizes.append(recipe.data.batch_size)
        if recipe.data.batch_size >= 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return real(recipe, **kwargs)

    monkeypatch.setattr(suite_runner, "benchmark", benchmark)
    size = dataclasses.replace(SIZES["tiny"], sweep_batches=(1, 2, 4))
    records = run_suite(SuiteOptions(size=size, modes=("bf16_eager",), cases=("pix2pix_best",),
                                     budget_s=300, overrides=("run.device=cpu",)))
    assert sizes == [1, 2]  # batch 4 never tried
    oom = next(r for r in records if r.get("batch_size") == 2)
    assert oom["out_of_memory"] is True and "out of memory at batch 2" in oom["error"]
    sweep = next(r for r in records if r["case"] == "pix2pix_sweep" and "stopped" in r)
    assert sweep["stopped"] == "out of memory at batch 2" and sweep["best_batch_size"] == 1
    best = next(r for r in records if r["case"] == "pix2pix_best")
    assert best["batch_size"] == 1 and best["images_per_sec"] > 0 and best["from_sweep"]


def test_the_deadline_skips_the_remaining_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first check finds time left, every later one none: the first run is made, the
    # others are reported as skipped, and the suite ends normally.
    checks = iter([100.0])
    monkeypatch.setattr(Deadline, "left", lambda self: next(checks, 0.0))
    records = run_suite(SuiteOptions(size=SIZES["tiny"], modes=EAGER,
                                     cases=("pix2pix_b1", "cyclegan_b1", "ddp"), budget_s=100,
                                     overrides=("run.device=cpu",)))
    assert records[0]["images_per_sec"] > 0 and "skipped" not in records[0]
    skipped = [r for r in records[1:] if "best_batch_size" not in r]
    assert len(skipped) == 5 and all(r["skipped"] is True for r in skipped)  # 3 runs, sweep, ddp
    assert all(r["reason"].startswith("deadline: 0 s of the 100 s budget left") for r in skipped)
    assert next(r for r in records if "best_batch_size" in r)["stopped"] == "deadline at batch 1"


def test_a_spent_budget_skips_everything_and_says_so() -> None:
    result = invoke("--suite", "gpu", "--size", "tiny", "--modes", "fp32_eager", "--cases",
                    "pix2pix_b1,cyclegan_b1", "--budget", "0", "--set", "run.device=cpu")
    assert result.exit_code == 0, result.output
    assert [r["skipped"] for r in lines_of(result)] == [True, True]
    assert result.stderr.count("skipped (deadline)") == 2


def _quality(tmp_path: Path, *extra: str, env: dict[str, str] | None = None
             ) -> list[dict[str, Any]]:
    if not (FACADES / "train").is_dir():
        pytest.skip(f"no facades at {FACADES}")
    result = invoke("--suite", "gpu", "--size", "tiny", "--quality", "--no-speed", "--modes",
                    "fp32_eager", "--data-root", str(FACADES), "--quality-dir",
                    str(tmp_path / "proof"), "--set", "run.device=cpu", *extra, env=env)
    assert result.exit_code == 0, result.output
    lines = lines_of(result)
    assert [r["case"] for r in lines] == ["quality_train", "quality_eval"]
    train = lines[0]
    assert train["steps"] == 4 and train["images"] == 4 and train["images_per_sec"] > 0
    assert train["train_seconds"] > 0 and Path(train["checkpoint"]).is_file()
    assert lines[1]["meaningful"] is False and "mean nothing" in lines[1]["note"]
    assert Path(lines[1]["result_file"]).is_file()
    return lines


def test_quality_at_the_tiny_size_scores_fid_and_kid(tmp_path: Path) -> None:
    if not INCEPTION.is_file():
        pytest.skip(f"no Inception weights at {INCEPTION}")
    scores = _quality(tmp_path, "--inception", str(INCEPTION))[1]
    assert {"fid", "kid", "psnr", "ssim"} <= set(scores["metrics"])
    assert scores["images"] == {"generated": 8, "real": 8}
    assert "images_written" not in scores


def test_quality_without_inception_writes_the_images(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IMTRANS_INCEPTION"}
    env["IMTRANS_CACHE_DIR"] = str(tmp_path / "empty-cache")
    scores = _quality(tmp_path, env=env)[1]
    assert set(scores["metrics"]) == {"psnr", "ssim"} and scores["fid"] is None
    written = sorted(Path(scores["images_written"]).glob("*.png"))
    assert len(written) == 8 and "imtrans eval" in scores["score_elsewhere"]


@pytest.mark.parametrize(("args", "expected"), [
    (("--suite", "gpx"), "--suite 'gpx': unknown suite; known: gpu"),
    (("--suite", "gpu", "--modes", "fp64"), "--modes 'fp64': unknown mode 'fp64'; known: "
                                            "fp32_eager, bf16_eager, compile_networks"),
    (("--suite", "gpu", "--cases", "pix2pix_b2"), "unknown case 'pix2pix_b2'"),
    ((str(ROOT / "recipes" / "pix2pix_facades.toml"), "--suite", "gpu"), "drop RECIPE"),
    ((str(ROOT / "recipes" / "pix2pix_facades.toml"), "--quality"), "only with --suite gpu"),
    ((), "give a RECIPE to time, or --suite gpu"),
    (("--suite", "gpu", "--synthetic"), "--synthetic does not apply"),
    (("--suite", "gpu", "--no-speed"), "leaves nothing to run"),
    (("--suite", "gpu", "--quality", "--no-speed"), "--quality needs --data-root DIR"),
    (("--suite", "gpu", "--set", "speed.precision=fp64"), "speed.precision"),
])
def test_bad_options_are_one_clear_error(args: tuple[str, ...], expected: str) -> None:
    assert expected in cli_error(invoke(*args))


@pytest.mark.floor
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_the_whole_step_compile_mode_on_the_cpu() -> None:
    # The per-network compile is tested in tests/test_speed.py; the suite's step mode runs
    # the whole-step compile with inductor, the mode the GPU call will lean on.
    result = invoke("--suite", "gpu", "--size", "tiny", "--cases", "pix2pix_b1", "--modes",
                    "compile_step", "--set", "run.device=cpu")
    assert result.exit_code == 0, result.output
    (record,) = lines_of(result)
    assert record["mode"] == "compile_step" and "error" not in record, record
    assert record["images_per_sec"] > 0 and record["settings"]["compile"] == "step"


@pytest.mark.gpu
def test_the_tiny_suite_on_the_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = invoke("--suite", "gpu", "--size", "tiny", "--cases", "pix2pix_b1,cyclegan_b1",
                    "--modes", "bf16_eager,compile_step")
    assert result.exit_code == 0, result.output
    lines = lines_of(result)
    assert len(lines) == 4
    ran = [r for r in lines if "images_per_sec" in r]
    assert ran and all(r["peak_memory_bytes"] > 0 for r in ran)
    assert all(r["settings"]["device"].startswith("cuda") for r in ran)
    assert all(r["meets_target"] is None for r in ran)  # tiny: never judged
    assert "n/a (tiny)" in result.stderr
