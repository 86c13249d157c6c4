"""A fuzz test of the command line: generated recipes and `--set` values (deep nesting, huge
numbers, odd Unicode, a byte-order mark, empty strings, lists where scalars go) through
`imtrans validate` and a 1-step `imtrans run` at tiny size on the CPU.

The only outcomes allowed are success, or one `error:` line with exit status 1: never a
traceback, a hang, or a file written outside the run directory."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import imtrans
from imtrans.cli import cli
from imtrans.core.tomlwriter import toml_value

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cyclegan_photo2monet.toml"
#: Tiny and on the CPU; the bundled monet2photo sample stands in for the missing dataset.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.max_steps=1", "train.sample_every=100",
        "data.max_items=2", "trainer.pool_size=0", "data.root=datasets/monet2photo"]
#: Seconds one command may take before it counts as a hang.
HANG = 60
#: IMTRANS_FUZZ_SCALE=10 runs ten times the examples (a deeper search than CI's).
SCALE = int(os.environ.get("IMTRANS_FUZZ_SCALE", "1"))
CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
          HealthCheck.data_too_large]

KEYS = ["optim.lr", "optim.betas", "optim.weight_decay", "run.seed", "run.device", "run.name",
        "data.batch_size", "data.crop_size", "data.load_size", "data.in_channels",
        "data.out_channels", "data.preprocess", "data.direction", "data.flip", "data.cache",
        "data.augment", "generator.name", "generator.ngf", "generator.n_blocks",
        "generator.num_downs", "discriminator.name", "discriminator.n_layers",
        "discriminator.ndf", "discriminator.norm", "losses.cycle.weight", "losses.gan.name",
        "train.max_steps", "train.log_every", "train.keep_last", "schedule.policy",
        "schedule.gamma", "speed.precision", "speed.channels_last", "log.backends",
        "eval.every_epochs", "trainer.pool_size", "init.from"]
#: Text a file can hold (no lone surrogates), odd Unicode included.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 2**31, 2**63, 0.5, 1e-300, 1e300]))
SCALARS = st.one_of(NUMBERS, st.booleans(), TEXT, st.just(""))
TOML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(TEXT, inner, max_size=2), max_leaves=6)


@st.composite
def set_values(draw: st.DrawFn) -> str:
    """The text after ``=``: a TOML value, raw text, or arrays nested very deep."""
    kind = draw(st.sampled_from(["toml", "toml", "raw", "deep"]))
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        return "[" * depth + "]" * depth
    if kind == "raw":
        return draw(TEXT)
    try:
        return toml_value(draw(TOML_VALUES))
    except (TypeError, ValueError):  # a value the writer does not write (e.g. a mixed array)
        return draw(TEXT)


#: Values that often fit, so that some examples get past validation and train.
PLAUSIBLE = st.sampled_from(["0", "1", "2", "3", "4", "8", "16", "32", "64", "0.5", "1e-4",
                             "true", "false", '"instance"', '"batch"', '"lsgan"', '"gan"',
                             '"bf16"', '"fp32"', '"linear"', '"step"', '"cosine"', "[0.5, 0.9]",
                             '"resnet_6blocks"', '"unet"', '"pixel"', '"patchgan"', '"crop"',
                             '"none"', '"BtoA"', '"off"', '"device"', '"cpu"'])
VALUES = PLAUSIBLE | set_values()

KEYS_OR_ODD = st.sampled_from(KEYS) | st.from_regex(r"[a-z_é]{1,6}(\.[a-z_0-9]{1,6}){0,40}",
                                                    fullmatch=True)
OVERRIDES = st.lists(st.tuples(KEYS_OR_ODD, VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")
                     | TEXT, min_size=1, max_size=3)


@pytest.fixture(autouse=True)
def in_a_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Built-ins only, the working directory a tmp dir, and afterwards nothing new in the
    repository."""
    monkeypatch.setenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "1")
    imtrans.components.cache_clear()
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in ROOT.iterdir())
    recipes = sorted(p.name for p in (ROOT / "recipes").iterdir())
    yield tmp_path
    imtrans.components.cache_clear()
    assert sorted(p.name for p in ROOT.iterdir()) == before
    assert sorted(p.name for p in (ROOT / "recipes").iterdir()) == recipes


def invoke(args: list[str]) -> tuple[int, str]:
    """Run the CLI in this process; fail on a traceback, a second error line, or a hang."""

    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"imtrans {' '.join(args)[:300]} ran past {HANG} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{' '.join(args)[:500]}\n{out[-2000:]}") from result.exception
    assert "Traceback" not in out, out[-2000:]
    assert result.exit_code in (0, 1), (result.exit_code, out[-2000:])
    if result.exit_code == 1:
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out[-2000:]
    event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many got through
    return result.exit_code, out


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def assert_only_under(folder: Path, allowed: Path) -> None:
    """Every file in ``folder`` (the working directory) lies under ``allowed`` (the runs) or
    is a recipe the test wrote."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith(".toml"):
            assert allowed in path.parents, path


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=CHECKS)
@given(overrides=OVERRIDES)
@example(overrides=["optim.lr=1e-4"])  # one that passes, each time
def test_validate_succeeds_or_prints_one_error_line(overrides: list[str]) -> None:
    invoke(["validate", str(RECIPE), *sets([*TINY, *overrides])])


@st.composite
def recipe_files(draw: st.DrawFn) -> bytes:
    """The bundled recipe, with tables added, lines changed, a byte-order mark, or odd bytes."""
    text = RECIPE.read_text(encoding="utf-8")
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(KEYS))
        table, _, name = key.rpartition(".")
        lines.append(f"[{table}]\n{name} = {draw(VALUES)}\n")
    body = text + "\n" + "".join(lines)
    if draw(st.booleans()):
        body = draw(TEXT) + body  # junk before the first table
    data = body.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.booleans()):
        data = data.replace(b"cyclegan", draw(st.sampled_from([b"", b"\xff", b"pix2pix",
                                                               b"cyclegan\x00"])), 1)
    return data


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=CHECKS)
@given(data=recipe_files())
def test_generated_recipe_files_validate_or_print_one_error_line(data: bytes,
                                                                 tmp_path: Path) -> None:
    recipe = tmp_path / "fuzz.toml"
    recipe.write_bytes(data)
    invoke(["validate", str(recipe), *sets(TINY)])


RUN_KEYS = st.sampled_from([k for k in KEYS if k not in ("train.max_steps", "run.name")])
RUN_OVERRIDES = st.lists(st.tuples(RUN_KEYS, PLAUSIBLE | PLAUSIBLE | set_values())
                         .map(lambda kv: f"{kv[0]}={kv[1]}"), min_size=1, max_size=2)


@settings(max_examples=8 * SCALE, deadline=None, suppress_health_check=CHECKS)
@given(overrides=RUN_OVERRIDES)
@example(overrides=["speed.precision=\"bf16\""])  # one that trains, each time
def test_a_one_step_run_succeeds_or_prints_one_error_line(overrides: list[str],
                                                          tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # The run's folder and length last, so that no generated value moves or lengthens it.
    invoke(["run", str(RECIPE), *sets([*TINY, *overrides, f"run.output_dir={runs}",
                                       "run.name=fuzz", "train.max_steps=1"])])
    assert_only_under(tmp_path, runs)
