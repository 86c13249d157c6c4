"""Training with two processes (DDP over gloo, on the CPU) through torchrun and ``--nproc``.

Each rank's weights checksum comes from a test-side hook (``tests/ddp_rank.py``, loaded into the
ranks through a ``sitecustomize`` on ``PYTHONPATH``), not from a switch in imtrans.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ddp_rank import CHECKSUM_DIR_ENV, read_checksums, weights_digest, write_site_hook
from safetensors.torch import load_file

from imtrans.data.sampler import EpochBatches

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
PIX2PIX = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.log_every=1"]
TINY_UNET = ["generator.name=unet", "generator.num_downs=5"]
#: CycleGAN with nothing that depends on a rank's random stream or batch composition:
#: instance norm (per image), no dropout, no image history. Then 2 ranks x batch 1 must
#: compute what 1 process x batch 2 computes, up to floating-point summation order.
EQUIVALENT = [*TINY, "trainer.pool_size=0", "train.max_steps=3"]


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def env(checksum_dir: Path | None = None) -> dict[str, str]:
    """The test environment; with ``checksum_dir``, each rank writes its weights checksum there
    when training ends (test-side hook, see tests/ddp_rank.py)."""
    out = {k: v for k, v in os.environ.items()
           if not k.startswith("IMTRANS_") and k != CHECKSUM_DIR_ENV}
    out |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    if checksum_dir is not None:
        hook = write_site_hook(checksum_dir.parent / "site_hook")
        out[CHECKSUM_DIR_ENV] = str(checksum_dir)
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), out.get("PYTHONPATH")) if p)
    return out


def launch(cwd: Path, *args: str, torchrun: bool = False
           ) -> tuple[subprocess.CompletedProcess[str], dict[int, dict[str, Any]]]:
    """Run ``imtrans ARGS`` (under torchrun with two ranks when ``torchrun``); return the
    process and the checksum record each rank wrote, by rank."""
    prefix = (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
              if torchrun else [])
    with tempfile.TemporaryDirectory(prefix="ddp-checksums-") as scratch:
        checksum_dir = Path(scratch) / "ranks"
        proc = subprocess.run([sys.executable, *prefix, "-m", "imtrans", *args], cwd=cwd,
                              env=env(checksum_dir), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc, read_checksums(checksum_dir)


def latest_checkpoint(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]


def same_weights_on_every_rank(ranks: dict[int, dict[str, Any]], run_dir: Path, stderr: str
                               ) -> str:
    """Both ranks hashed the same parameters of every network and got the same checksum, and
    it is the checksum of the weights rank 0 saved last; return it."""
    assert set(ranks) == {0, 1}, f"checksums from ranks {sorted(ranks)}\n{stderr[-3000:]}"
    assert ranks[0]["parameters"] == ranks[1]["parameters"]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # the ranks agree exactly
    saved = load_file(latest_checkpoint(run_dir))
    names = ranks[0]["parameters"]
    networks = {key.split(".")[1] for key in saved if key.startswith("net.")}
    assert {name.split(".")[0] for name in names} == networks  # every network was hashed
    assert weights_digest((n, saved[f"net.{n}"]) for n in names) == ranks[0]["sha256"]
    digest: str = ranks[0]["sha256"]
    return digest


def only_rank0_wrote(run_dir: Path, steps: int) -> None:
    """One run directory, one record per step, one sample grid per sample point: a second
    writer would have made a second directory or doubled the records."""
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == steps, lines


def nets(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = latest_checkpoint(run_dir)
    return {k: v for k, v in load_file(latest).items() if k.startswith("net.")}


def test_sampler_splits_each_global_batch_across_ranks() -> None:
    for length in (10, 7, 3):
        whole = list(EpochBatches(length, 4, seed=5))
        ranks = [list(EpochBatches(length, 2, seed=5, rank=r, world_size=2)) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == len(whole)
        for step, batch in enumerate(whole):
            a, b = ranks[0][step], ranks[1][step]
            assert len(a) == len(b)  # equal shares, the last one padded
            assert (a + b)[:len(batch)] == batch
            if len(batch) % 2 == 0:
                assert not {i for i, _ in a} & {i for i, _ in b}  # disjoint


def test_two_ranks_hold_the_same_weights_as_one_process_with_the_global_batch(
        tmp_path: Path) -> None:
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    proc, ranks = launch(two, "run", CYCLEGAN, *sets(*EQUIVALENT, "data.batch_size=1"),
                         torchrun=True)
    run_two = two / "runs" / "cyclegan_photo2monet"
    same_weights_on_every_rank(ranks, run_two, proc.stderr)
    assert proc.stderr.count("finished at step 3") == 1  # rank 0 alone reports
    only_rank0_wrote(run_two, 3)
    assert len(list((run_two / "checkpoints").glob("*.safetensors"))) == 1

    _, single_ranks = launch(one, "run", CYCLEGAN, *sets(*EQUIVALENT, "data.batch_size=2"))
    assert single_ranks == {}  # one process: the hook (like DDP) stays out of the way
    distributed, single = nets(run_two), nets(one / "runs" / "cyclegan_photo2monet")
    assert distributed.keys() == single.keys()  # checkpoints are interchangeable
    # Same items, same item seeds, same initial weights: what differs is only the order in which
    # gradients are summed (all-reduce of two half-batch means vs one mean), ~1e-8 here. Adam
    # turns that into real differences only where a gradient is pure rounding noise: the
    # biases of convolutions followed by instance norm, which the norm subtracts again (their
    # gradient is 0 in exact arithmetic and they do not change any output). Early Adam steps
    # are about lr x sign(gradient), so a flipped noise sign moves such a bias by up to
    # 2 x lr per step. Measured over 3 steps: weights within 1.2e-8 (99th percentile), the
    # largest bias difference 1.07e-3 against the bound 2 x 2e-4 x 3 = 1.2e-3. A weight whose
    # gradient happens to be near zero is noise too: with the Pillow-resized inputs one
    # weight of 113,968 differed by 2.3e-6 (the 99.9th percentile: 2.2e-8). How many weights
    # are such noise depends on the CPU's kernels: on an Intel Xeon with AMX the 99.9th
    # percentile was 2.8e-5. So the bulk is bounded by what a fault would do, not by one
    # machine's rounding. Training on other items (one process at batch 1 against batch 2)
    # moved the median weight by 2.2e-4 and 95% of them by more than lr / 10; rounding leaves
    # the median far below that and only a small fraction of the weights near it.
    steps, lr = 3, 2e-4
    for key in single:
        worst = (distributed[key] - single[key]).abs().max().item()
        assert worst <= 2 * lr * steps, (key, worst)
    weights = torch.cat([(distributed[k] - single[k]).abs().flatten() for k in single
                         if not k.endswith(".bias")])
    assert weights.median().item() < lr / 1000
    assert (weights > lr / 10).float().mean().item() < 0.01  # a few, not a pattern


def test_nproc_shortcut_trains_and_resumes_pix2pix_with_batch_norm(tmp_path: Path) -> None:
    args = ["run", PIX2PIX, "--nproc", "2",
            *sets(*TINY, *TINY_UNET, "train.sample_every=2", "data.batch_size=2")]
    proc, ranks = launch(tmp_path, *args, *sets("train.max_steps=2"))
    run_dir = tmp_path / "runs" / "pix2pix_edges2shoes"
    first = same_weights_on_every_rank(ranks, run_dir, proc.stderr)
    only_rank0_wrote(run_dir, 2)
    assert (run_dir / "samples" / "step_00000002.png").exists()

    proc, ranks = launch(tmp_path, *args, *sets("train.max_steps=4"), "--resume")
    assert "resuming" in proc.stderr and proc.stderr.count("finished at step 4") == 1
    assert same_weights_on_every_rank(ranks, run_dir, proc.stderr) != first  # trained on
    only_rank0_wrote(run_dir, 4)
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == [
        "step_00000002.png", "step_00000004.png"]


def test_sigterm_saves_once_on_rank0_and_stops_every_rank(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "imtrans", "run", CYCLEGAN, "--nproc", "2",
         *sets(*TINY, "train.max_steps=100000", "train.sample_every=100000")],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "cyclegan_photo2monet" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.count("interrupted at step") == 1, stderr[-3000:]
    step = int(re.search(r"interrupted at step (\d+)", stderr).group(1))
    saved = list((metrics.parent / "checkpoints").glob("*.safetensors"))
    assert [p.name for p in saved] == [f"step_{step:08d}.safetensors"]
