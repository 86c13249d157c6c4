"""`imtrans validate` means it runs: each value validate accepts trains for a step, and each
value that cannot run is refused by validate (and by `run`, which loads recipes the same way)
with its TOML path, as one `error:` line; the same for every command's --device."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from imtrans.cli import cli

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.max_steps=1", "train.sample_every=100",
        "data.max_items=2", "trainer.pool_size=0"]


pytestmark = pytest.mark.usefixtures("builtins_only")  # whatever plugins are installed too


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli, list(args))
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, exception


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def assert_refused(args: list[str], *expected: str) -> None:
    code, out, exc = invoke(*args)
    assert exc is None, f"{exc!r}\n{out}"
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in out, out
    for text in expected:
        assert text in lines[0], lines[0]


#: Each finding: an override `validate` used to accept and `run` then failed with a traceback
#: (or trained to NaN), and what the message must name now.
REFUSED = {
    "optim.betas=[2, 3]": ["optim.betas[0] = 2", "less than 1"],
    "optim.betas=[0.5, 1]": ["optim.betas[1] = 1"],
    "optim.betas=[-0.1, 0.9]": ["optim.betas[0] = -0.1"],
    "run.seed=99999999999999999999": ["run.seed = 99999999999999999999"],
    "run.seed=4294967296": ["run.seed = 4294967296"],
    "run.seed=-1": ["run.seed = -1"],
    "discriminator.n_layers=100": ["discriminator.n_layers = 100", "data.crop_size"],
    "discriminator.n_layers=4": ["discriminator.n_layers = 4", "32x32"],
    "data.in_channels=1000": ["data.in_channels = 1000", "1 to 64"],
    "data.out_channels=65": ["data.out_channels = 65"],
    "data.load_size=1000000": ["data.load_size = 1000000", "1 to 16384"],
    "data.crop_size=30": ["data.crop_size = 30", "multiples of 4"],
    "generator.ngf=1000000": ["cannot fit in the memory of cpu", "generator.ngf"],
    "data.batch_size=100000000": ["cannot fit in the memory of cpu", "data.batch_size"],
    "optim.lr=inf": ["optim.lr = inf", "not a finite number"],
    "optim.lr=nan": ["optim.lr = nan"],
    "optim.weight_decay=inf": ["optim.weight_decay = inf"],
    "losses.cycle.weight=-inf": ["losses.cycle.weight = -inf"],
    "run.device=bogus": ["run.device = 'bogus'", "not a device name"],
    "run.device=meta": ["run.device = 'meta'"],
    "run.device='cpu:3'": ["run.device = 'cpu:3'"],
    "data.in_channels=5": ["[losses.identity]", "data.in_channels = data.out_channels"],
    "run.name=../x": ["run.name = '../x'", "is not a folder name"],
    # Refused by run's build only, until validate checked the [speed] switches too.
    "speed.cuda_graphs=true": ["speed.cuda_graphs = true needs a CUDA device", "'cpu'"],
}


@pytest.mark.parametrize("override", list(REFUSED))
def test_validate_and_run_refuse_what_cannot_run(override: str, tmp_path: Path) -> None:
    overrides = [*TINY, f"run.output_dir={tmp_path / 'runs'}", override]
    assert_refused(["validate", RECIPE, *sets(*overrides)], *REFUSED[override])
    # run loads the recipe the same way: refused before a run directory is made.
    assert_refused(["run", RECIPE, *sets(*overrides)], *REFUSED[override])
    assert not (tmp_path / "runs").exists()


def test_a_device_this_machine_lacks_is_refused_by_validate() -> None:
    import torch

    if torch.cuda.is_available():
        assert_refused(["validate", RECIPE, *sets(*TINY, "run.device=cuda:99")],
                       "run.device = 'cuda:99'", "CUDA device(s)")
    else:
        assert_refused(["validate", RECIPE, *sets(*TINY, "run.device=cuda")],
                       "run.device = 'cuda'", "no CUDA device")


#: The edges of the ranges: accepted by validate, and a step trains.
ACCEPTED = ["optim.betas=[0, 0.999999]", "run.seed=4294967295",
            "data.in_channels=64;data.out_channels=64", "data.in_channels=1;data.out_channels=1",
            "discriminator.n_layers=3", "optim.weight_decay=0.5", "optim.lr=1e-8",
            "data.in_channels=5;losses.identity.weight=0"]


@pytest.mark.parametrize("override", ACCEPTED)
def test_what_validate_accepts_trains_a_step(override: str, tmp_path: Path) -> None:
    overrides = [*TINY, f"run.output_dir={tmp_path / 'runs'}", *override.split(";")]
    code, out, exc = invoke("validate", RECIPE, *sets(*overrides))
    assert exc is None and code == 0 and "is valid" in out, out
    code, out, exc = invoke("run", RECIPE, *sets(*overrides))
    assert exc is None and code == 0 and "finished at step 1" in out, out


def test_a_unet_deeper_than_the_crop_is_refused_without_data(tmp_path: Path) -> None:
    pix2pix = str(ROOT / "recipes" / "pix2pix_facades.toml")
    overrides = [*TINY, "data.root=/nonexistent", "generator.name=unet", "generator.num_downs=6"]
    assert_refused(["validate", pix2pix, *sets(*overrides)],
                   "data.crop_size = 32", "gen (unet) takes images whose sides are multiples "
                   "of 64, but [data] gives 32x32")


@pytest.mark.parametrize("command", ["translate", "eval"])
@pytest.mark.parametrize("device", ["bogus", "cuda:99", "meta", ""])
def test_every_device_option_refuses_a_bad_device_in_one_line(
        command: str, device: str, cyclegan_run: Path, tmp_path: Path) -> None:
    source = next((ROOT / "imtrans" / "samples").rglob("*.jpg"))
    args = ([command, str(cyclegan_run), str(source), str(tmp_path / "out"), "--workers", "0"]
            if command == "translate" else [command, str(cyclegan_run), "--metrics", "psnr"])
    assert_refused([*args, "--device", device], "--device = ")
    assert not (tmp_path / "out").exists()


def test_a_missing_gpu_is_one_error_line(cyclegan_run: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    source = next((ROOT / "imtrans" / "samples").rglob("*.jpg"))
    assert_refused(["translate", str(cyclegan_run), str(source), str(tmp_path / "out.png"),
                    "--device", "cuda"], "--device = 'cuda'", "no CUDA device")
    assert_refused(["eval", str(cyclegan_run), "--device", "cuda"], "no CUDA device")


def test_a_byte_order_mark_is_not_part_of_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "bom.toml"
    recipe.write_bytes(b"\xef\xbb\xbf" + Path(RECIPE).read_bytes())
    code, out, exc = invoke("validate", str(recipe), *sets(*TINY))
    assert exc is None and code == 0 and "is valid" in out, out
