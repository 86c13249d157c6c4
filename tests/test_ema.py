"""The generators' moving average (``train.ema``): the rule, checkpoints, exact resume, and
the users of the weights (translate, eval, export, sample grids, evaluation during training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, cli_error, train_tiny
from safetensors.torch import load_file
from torch import nn

from imtrans.cli.app import cli
from imtrans.core.observer import TrainingObserver
from imtrans.errors import InvalidArgumentError
from imtrans.inference import load_translator
from imtrans.runner import train
from imtrans.trainers.ema import GeneratorEMA

CYCLEGAN = ROOT / "recipes" / "cyclegan_photo2monet.toml"
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.log_every=1"]


def _latest(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]


class _Notes(TrainingObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step pix2pix run (U-Net, batch norm, dropout) with a fast-moving average."""
    return train_tiny(tmp_path_factory.mktemp("ema"), "pix2pix_edges2shoes", train__ema=0.5)


# --- the rule ---------------------------------------------------------------------------


def test_the_average_is_the_closed_form_and_buffers_are_copied() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    decay = 0.9
    ema = GeneratorEMA({"gen": net}, decay)
    weight = net[0].weight
    values = [weight.detach().clone()] + [torch.randn_like(weight) for _ in range(6)]
    for value in values[1:]:
        with torch.no_grad():
            weight.copy_(value)
        net(torch.randn(4, 3))  # moves the batch-norm statistics and its counter
        ema.update()
    n = len(values) - 1
    expected = decay**n * values[0] + sum((1 - decay) * decay ** (n - k) * values[k]
                                          for k in range(1, n + 1))
    averaged = ema.state_dict("gen")
    assert torch.allclose(averaged["0.weight"], expected, atol=1e-6, rtol=0)
    # Buffers follow the network exactly: copied, never averaged.
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(averaged[key], net.state_dict()[key]), key
    assert int(averaged["1.num_batches_tracked"]) == n


def test_swapping_the_average_in_puts_the_trained_weights_back_exactly() -> None:
    net = nn.Linear(3, 3)
    ema = GeneratorEMA({"g": net}, 0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update()
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped_in():
        assert torch.equal(net.weight, ema.state_dict("g")["weight"])
        with torch.no_grad():
            net.weight.mul_(3)  # what the body does is undone, the average is untouched
    assert all(torch.equal(net.state_dict()[k], v) for k, v in trained.items())
    assert not torch.equal(ema.state_dict("g")["weight"], net.weight)
    copy = ema.averaged_copy("g")
    assert torch.equal(copy.weight, ema.state_dict("g")["weight"]) and copy is not net


def test_a_decay_outside_0_1_is_refused_by_the_recipe(tmp_path: Path) -> None:
    runner = CliRunner()
    for value in ("1.5", "0", "1"):
        result = runner.invoke(cli, ["validate", str(CYCLEGAN), "--set", f"train.ema={value}"])
        assert "train.ema" in cli_error(result)
    with pytest.raises(InvalidArgumentError, match=r"\(0, 1\)"):
        GeneratorEMA({"g": nn.Linear(1, 1)}, 1.0)


# --- checkpoints and resume -------------------------------------------------------------


def test_resume_with_ema_is_bit_exact(tmp_path: Path) -> None:
    # CycleGAN: two averaged generators; 3 items per epoch, so 6 steps cross epoch ends; the
    # sample grids (every 2 steps) show the average and must not change training.
    common = [*TINY, "train.ema=0.8", "data.max_items=3", "trainer.pool_size=2",
              "train.sample_every=2", "schedule.n_epochs=1", "schedule.n_epochs_decay=2"]
    straight = train(CYCLEGAN, [*common, "train.max_steps=6",
                                f"run.output_dir={tmp_path / 'straight'}"])
    half = train(CYCLEGAN, [*common, "train.max_steps=3", f"run.output_dir={tmp_path / 'split'}"])
    resumed = train(CYCLEGAN, [*common, "train.max_steps=6",
                               f"run.output_dir={tmp_path / 'split'}"], resume=half.run_dir)
    assert resumed.run_dir == half.run_dir and resumed.step == 6
    a, b = load_file(_latest(straight.run_dir)), load_file(_latest(resumed.run_dir))
    assert a.keys() == b.keys()
    assert {k.split(".")[1] for k in a if k.startswith("ema.")} == {"gen_ab", "gen_ba"}
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == [], different[:5]
    # The average is not the trained weights.
    assert not torch.equal(a["ema.gen_ab.model.1.weight"], a["net.gen_ab.model.1.weight"])
    assert (straight.run_dir / "samples" / "step_00000006.png").exists()


def test_resume_across_ema_on_and_off_says_what_happens(tmp_path: Path) -> None:
    common = [*TINY, "data.max_items=3", f"run.output_dir={tmp_path}"]
    plain = train(CYCLEGAN, [*common, "train.max_steps=2"])
    notes = _Notes()
    on = train(CYCLEGAN, [*common, "train.max_steps=3", "train.ema=0.9"], resume=plain.run_dir,
               observer=notes)
    assert any("holds no generator EMA: train.ema starts it from the checkpoint's weights" in n
               for n in notes.lines), notes.lines
    assert any(k.startswith("ema.gen_ab.") for k in load_file(_latest(on.run_dir)))
    notes = _Notes()
    off = train(CYCLEGAN, [*common, "train.max_steps=4"], resume=on.run_dir, observer=notes)
    assert any("holds a generator EMA, which this run ignores" in n for n in notes.lines)
    assert not any(k.startswith("ema.") for k in load_file(_latest(off.run_dir)))


# --- the users of the weights -----------------------------------------------------------


def test_translate_uses_the_average_unless_told_otherwise(ema_run: Path) -> None:
    tensors = load_file(_latest(ema_run))
    averaged = {k[len("ema.gen."):]: v for k, v in tensors.items() if k.startswith("ema.gen.")}
    raw = {k[len("net.gen."):]: v for k, v in tensors.items() if k.startswith("net.gen.")}
    assert averaged.keys() == raw.keys()
    default = load_translator(ema_run, device="cpu", mode="eval")
    chosen_raw = load_translator(ema_run, device="cpu", mode="eval", weights="raw")
    assert (default.weights, chosen_raw.weights) == ("ema", "raw")
    for name, value in default.generator.state_dict().items():
        assert torch.equal(value, averaged[name]), name
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert not torch.equal(default(images), chosen_raw(images))


def test_weights_ema_for_a_checkpoint_without_one_is_a_clear_error(pix2pix_run: Path) -> None:
    assert load_translator(pix2pix_run, device="cpu").weights == "raw"
    with pytest.raises(InvalidArgumentError, match="holds no EMA weights of gen"):
        load_translator(pix2pix_run, device="cpu", weights="ema")


def test_export_writes_the_average_or_the_raw_weights(ema_run: Path, tmp_path: Path) -> None:
    tensors = load_file(_latest(ema_run))
    runner = CliRunner()
    for weights, prefix in ((None, "ema.gen."), ("raw", "net.gen.")):
        target = tmp_path / f"{weights}.pt"
        args = ["export", str(ema_run), "--format", "torchscript", "-o", str(target)]
        result = runner.invoke(cli, args + (["--weights", weights] if weights else []))
        assert result.exit_code == 0, result.output
        assert ("EMA weights" if weights is None else "raw weights") in result.output
        with pytest.warns(FutureWarning):  # torch.jit.load is deprecated; the file is not
            exported = torch.jit.load(str(target)).state_dict()
        params = [k for k in tensors if k.startswith(prefix) and k.endswith(".weight")]
        assert params
        for key in params:
            assert torch.equal(exported[key[len(prefix):]], tensors[key]), key


def test_eval_scores_the_average_by_default_and_records_which(ema_run: Path) -> None:
    runner = CliRunner()
    scores = {}
    for weights in (None, "raw"):
        args = ["eval", str(ema_run), "--metrics", "psnr,ssim", "--device", "cpu"]
        result = runner.invoke(cli, args + (["--weights", weights] if weights else []))
        assert result.exit_code == 0, result.output
        assert f"with the {weights or 'ema'} weights" in result.output
        scores[weights or "ema"] = result.output
    files = sorted((ema_run / "eval").glob("*.json"))
    records = [json.loads(f.read_text()) for f in files]
    generation = sorted(json.dumps(r["protocol"]["generation"], sort_keys=True) for r in records)
    # Two protocols, two files: the average's says so, the raw one keeps the old protocol.
    assert generation == ['{"mode": "paper", "seed": 0, "weights": "ema"}',
                          '{"mode": "paper", "seed": 0}']
    assert records[0]["metrics"] != records[1]["metrics"]


def test_evaluation_during_training_scores_both(tmp_path: Path) -> None:
    run = train_tiny(tmp_path, "pix2pix_edges2shoes", steps=5, data__batch_size=4,
                     train__ema=0.5, eval__every_epochs=1, eval__metric="psnr")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (record,) = [r for r in records if "eval" in r]
    assert set(record["eval"]) == {"psnr", "ssim", "ema/psnr", "ema/ssim"}
    assert record["eval"]["psnr"] != record["eval"]["ema/psnr"]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["ranked_by"] == "ema/psnr" and best["value"] == record["eval"]["ema/psnr"]
    assert "ema/psnr" in (run / "report.html").read_text()
