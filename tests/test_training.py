"""Training end to end on the CPU: outputs, reproducibility, exact resume, interrupts."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
PIX2PIX = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")

#: Tiny networks and images, so a CPU step takes milliseconds. On the CPU, where results are
#: bit-for-bit reproducible, also on machines with a GPU.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu"]
TINY_UNET = ["generator.name=unet", "generator.num_downs=5"]


def imtrans(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run([sys.executable, "-m", "imtrans", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]
    return load_file(latest)


@pytest.mark.floor
def test_mission_recipes_train_on_the_bundled_sample(tmp_path: Path) -> None:
    on_any_device = [o for o in TINY if not o.startswith("run.device")]
    proc = imtrans(tmp_path, "run", CYCLEGAN, *sets(*on_any_device, "train.max_steps=3",
                                                     "train.log_every=1"))
    assert "datasets/monet2photo not found: training on the bundled sample" in proc.stderr
    assert "imtrans data download monet2photo" in proc.stderr
    assert "a GPU is advised" in proc.stderr or torch.cuda.is_available()
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    logged = records(run_dir)
    assert [r["step"] for r in logged] == [1, 2, 3]
    assert set(logged[0]["losses"]) == {"D_A", "D_B", "G", "G_adv", "cycle", "identity"}
    assert all(r["images_per_sec"] > 0 and r["lr"] == 2e-4 for r in logged)
    assert (run_dir / "samples" / "step_00000003.png").stat().st_size > 0
    assert (run_dir / "checkpoints" / "step_00000003.safetensors").exists()
    resolved = (run_dir / "recipe.toml").read_text()
    assert 'name = "resnet_9blocks"' in resolved and "pool_size = 50" in resolved
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["torch"] == torch.__version__ and "imtrans" in environment["plugins"]

    proc = imtrans(tmp_path, "run", PIX2PIX, *sets(*TINY, *TINY_UNET, "train.max_steps=2"))
    assert "bundled sample of edges2shoes" in proc.stderr
    assert (tmp_path / "runs/pix2pix_edges2shoes/checkpoints/step_00000002.safetensors").exists()


def test_same_seed_same_losses_and_a_second_run_gets_its_own_directory(tmp_path: Path) -> None:
    args = ["run", PIX2PIX, *sets(*TINY, *TINY_UNET, "train.max_steps=4", "train.log_every=1")]
    imtrans(tmp_path, *args)
    imtrans(tmp_path, *args)
    first, second = (records(tmp_path / "runs" / n)
                     for n in ("pix2pix_edges2shoes", "pix2pix_edges2shoes-2"))
    assert [r["losses"] for r in first] == [r["losses"] for r in second]


@pytest.mark.parametrize(("recipe", "extra"), ids=["cyclegan", "pix2pix", "cyclegan-cache"],
                         argvalues=[
    # CycleGAN with dropout and a small pool: the pool and the dropout RNG must resume too.
    pytest.param(CYCLEGAN, ["generator.dropout=true", "trainer.pool_size=2"],
                 marks=pytest.mark.floor),
    # pix2pix: batch norm statistics, dropout, a learning rate decaying across epochs, and
    # the random crop and flip drawn on the training device.
    pytest.param(PIX2PIX, [*TINY_UNET, "data.batch_size=2", "data.augment=device"],
                 marks=pytest.mark.floor),
    # The images held in memory (data.cache), with B drawn at random per item.
    (CYCLEGAN, ["data.cache=device", "trainer.pool_size=2"]),
])
def test_resume_in_a_second_process_gives_the_same_weights(tmp_path: Path, recipe: str,
                                                           extra: list[str]) -> None:
    # 3 items per epoch, so 8 steps cross epoch ends; the rate decays after epoch 1.
    common = [*TINY, *extra, "data.max_items=3", "schedule.n_epochs=1",
              "schedule.n_epochs_decay=4", "train.log_every=1", "train.sample_every=3"]
    (tmp_path / "straight").mkdir()
    imtrans(tmp_path / "straight", "run", recipe, *sets(*common, "train.max_steps=8"))
    split = tmp_path / "split"
    split.mkdir()
    # Half, then resume in a new process, with DataLoader workers this time: the batches
    # must not depend on which process loads them.
    imtrans(split, "run", recipe, *sets(*common, "train.max_steps=4"))
    proc = imtrans(split, "run", recipe, "--resume",
                   *sets(*common, "train.max_steps=8", "data.num_workers=2"))
    assert "from step 4" in proc.stderr
    name = Path(recipe).stem
    straight = final_tensors(tmp_path / "straight" / "runs" / name)
    resumed = final_tensors(split / "runs" / name)
    assert straight.keys() == resumed.keys()
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert different == [], different[:5]
    logged = records(split / "runs" / name)
    assert [r["step"] for r in logged] == list(range(1, 9))
    assert [r["losses"] for r in logged] == [
        r["losses"] for r in records(tmp_path / "straight" / "runs" / name)]


def test_resume_with_a_different_network_names_the_difference(tmp_path: Path) -> None:
    imtrans(tmp_path, "run", CYCLEGAN, *sets(*TINY, "train.max_steps=1"))
    proc = imtrans(tmp_path, "run", CYCLEGAN, "--resume",
                   *sets(*TINY, "generator.ngf=8", "train.max_steps=2"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[generator] ngf is 4 in the checkpoint but 8 in the recipe" in proc.stderr


def test_resume_without_a_run_says_so(tmp_path: Path) -> None:
    proc = imtrans(tmp_path, "run", CYCLEGAN, "--resume", check=False)
    assert proc.returncode == 1
    assert "no run named 'cyclegan_photo2monet' under runs/ to resume" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_saves_a_checkpoint_and_prints_the_resume_command(tmp_path: Path,
                                                                    sig: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    args = [sys.executable, "-m", "imtrans", "run", CYCLEGAN,
            *sets(*TINY, "train.max_steps=100000", "train.log_every=1")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "cyclegan_photo2monet" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stderr
    saved = sorted((metrics.parent / "checkpoints").glob("step_*.safetensors"))
    assert saved, stderr
    step = int(saved[-1].name.split("_")[1].split(".")[0])
    # The command as printed: the recipe with the run's --set options, and the checkpoint.
    printed = shlex.split(stderr.split("Resume with: ")[1].splitlines()[0])
    assert printed[:3] == ["imtrans", "run", CYCLEGAN]
    assert printed[-2:] == ["--resume", str(Path("runs/cyclegan_photo2monet/checkpoints",
                                                  saved[-1].name))]
    assert printed[3:-2] == list(sets(*TINY, "train.max_steps=100000", "train.log_every=1"))
    resumed = imtrans(tmp_path, *printed[1:], *sets(f"train.max_steps={step + 1}"))
    assert f"from step {step}" in resumed.stderr


@pytest.mark.skipif(not (SHARED / "facades").is_dir(), reason="../shared/data/facades absent")
def test_pix2pix_l1_falls_on_real_facades(tmp_path: Path) -> None:
    imtrans(tmp_path, "run", PIX2PIX, *sets(
        f"data.root={SHARED / 'facades'}", "data.direction=BtoA", "data.max_items=8",
        "data.load_size=64", "data.crop_size=64", "data.flip=false", "data.batch_size=1",
        "data.num_workers=0", "generator.name=unet", "generator.num_downs=6",
        "generator.ngf=16", "discriminator.ndf=16", "train.max_steps=200",
        "train.log_every=1", "train.sample_every=100"))
    l1 = [r["losses"]["reconstruction"] for r in records(tmp_path / "runs/pix2pix_edges2shoes")]
    start, end = sum(l1[:10]) / 10, sum(l1[-20:]) / 20
    assert end < 0.8 * start, (start, end)


def test_image_size_the_generator_cannot_take_is_refused_before_writing(tmp_path: Path) -> None:
    proc = imtrans(tmp_path, "run", PIX2PIX, *sets(*TINY, "train.max_steps=1"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("gen (unet_256) takes images whose sides are multiples of 256, but [data] gives "
            "32x32") in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_checkpoint_cadence() -> None:
    from imtrans.catalogue.plugins import load_components
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.training.jobs import CheckpointJob
    from imtrans.training.state import Plan, TrainingState

    def due(step: int, minutes_ago: float, **train: object) -> bool:
        overrides = [f"train.{k}={v}" for k, v in train.items()]
        recipe = load_recipe(CYCLEGAN, overrides, registry=load_components(autoload=False))
        job = CheckpointJob(recipe, trainer=None, schedule=None, run_dir=None,  # type: ignore[arg-type]
                         environment={})
        now = time.monotonic()
        state = TrainingState(Plan(steps_per_epoch=10, total_steps=1000, epochs=100,
                                   global_batch=1),
                              step=step, now=now, saved_clock=now - 60 * minutes_ago)
        return job.due(state)

    assert due(1000, 0)                                # the last step
    assert not due(10, 0) and due(10, 11)              # epoch end: only after 10 minutes
    assert not due(5, 60)                              # never mid-epoch by time
    assert due(50, 0)                                  # epoch 5: a kept milestone
    assert due(20, 0, checkpoint_minutes=0)            # every epoch end
    assert due(7, 0, checkpoint_every=7) and not due(8, 0, checkpoint_every=7)
