"""The TensorBoard, W&B and MLflow loggers, offline: each is built through the registry, fed
the recipe, two steps of scalars and a sample grid, closed, and read back with the backend's
own reader. A backend whose package is not installed is skipped (CI installs all three); the
message for a missing package is checked without them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import imtrans
import imtrans.loggers
from imtrans.catalogue.plugins import load_components
from imtrans.loggers import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]

RECIPE = {
    "trainer": {"name": "cyclegan"},
    "optim": {"lr": 0.0002, "betas": [0.5, 0.999]},
    "train": {"max_steps": 10, "amp": False},
}
SCALARS = {
    1: {"loss/G": 1.5, "loss/D_A": 0.25, "lr": 0.0002, "images_per_sec": 5.5},
    2: {"loss/G": 1.25, "loss/D_A": 0.125, "lr": 0.0001, "data_wait_fraction": 0.02},
}
WIDTH, HEIGHT = 12, 8


def feed(logger: Any, tmp_path: Path) -> None:
    """What a run sends: the recipe, scalars at steps 1 and 2, a sample grid at step 2."""
    grid = tmp_path / "samples" / "step_00000002.png"
    grid.parent.mkdir()
    Image.new("RGB", (WIDTH, HEIGHT), (200, 10, 30)).save(grid)
    logger.log_hyperparameters(RECIPE)
    for step, values in SCALARS.items():
        logger.log_scalars(step, values)
    logger.log_image(2, "samples", grid)
    logger.close()
    logger.close()  # safe twice


def build(name: str, tmp_path: Path, **options: Any) -> Any:
    return load_components(autoload=False).loggers.create(name, run_dir=tmp_path / "run",
                                                          **options)


# --- TensorBoard -------------------------------------------------------------------------


def test_tensorboard_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    feed(build("tensorboard", tmp_path), tmp_path)

    tb = tmp_path / "run" / "tb"
    files = [p for p in tb.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent == tb  # one event file, no hparams sub-folder
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    for name in ("loss/G", "loss/D_A", "lr"):
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert got == [(step, pytest.approx(SCALARS[step][name])) for step in (1, 2)]
    assert [(e.step, e.value) for e in events.Scalars("data_wait_fraction")] == [
        (2, pytest.approx(0.02))]
    [image] = events.Images("samples")
    assert (image.step, image.width, image.height) == (2, WIDTH, HEIGHT)

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = HParamsPluginData.FromString(content).session_start_info
    hparams = {key: getattr(value, value.WhichOneof("kind"))
               for key, value in start.hparams.items()}
    assert hparams == {"trainer.name": "cyclegan", "optim.lr": 0.0002,
                       "optim.betas": "[0.5, 0.999]", "train.max_steps": 10,
                       "train.amp": False}
    assert start.group_name == "run"
    [text] = events.Tensors("recipe/text_summary")
    assert 'trainer.name = "cyclegan"' in text.tensor_proto.string_val[0].decode()


# --- Weights & Biases --------------------------------------------------------------------


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B offline, silent, and with every file it writes (config, cache, temp) in tmp_path."""
    for name in ("home", "config", "cache", "data", "artifacts", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")  # no crash reports to Sentry
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_DIR", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_wandb_round_trip(wandb_offline: Path) -> None:
    pytest.importorskip("wandb")
    tmp_path = wandb_offline

    logger = build("wandb", tmp_path, project="tests", tags=["ci"])
    other = load_components(autoload=False).loggers.create("wandb", run_dir=tmp_path / "other")
    assert "wandb-core" in _descendants()
    feed(logger, tmp_path)
    assert "wandb-core" in _descendants()  # kept for the other run, still open
    other.close()

    # The last close() shut W&B's service down and cleaned up its temporary files (bar the
    # empty folders wandb makes when imported, and removes when the process exits).
    assert "wandb-core" not in _descendants()
    left = list((tmp_path / "tmp").iterdir())
    assert all(p.name.endswith(("wandb-media", "wandb-artifacts")) for p in left), left
    assert not any(p.is_file() for p in (tmp_path / "tmp").rglob("*"))
    [run] = (tmp_path / "run" / "wandb").glob("offline-run-*")
    [store] = run.glob("run-*.wandb")
    records = list(_wandb_records(store))
    kinds = [r.WhichOneof("record_type") for r in records]
    [start] = [r.run for r in records if r.HasField("run")]
    assert (start.project, start.display_name, list(start.tags)) == ("tests", "run", ["ci"])
    config = {item.key: json.loads(item.value_json)
              for r in records for update in (r.run.config, r.config) for item in update.update}
    assert {key: config[key] for key in RECIPE} == RECIPE

    history = {r.history.step.num: _items(r.history.item) for r in records
               if r.HasField("history")}
    assert sorted(history) == [1, 2]
    for step, values in SCALARS.items():
        assert {key: history[step][key] for key in values} == pytest.approx(values)
    assert (history[2]["samples/width"], history[2]["samples/height"]) == (WIDTH, HEIGHT)
    with Image.open(run / "files" / history[2]["samples/path"]) as image:
        assert image.size == (WIDTH, HEIGHT)
    exit_record = [r.exit for r in records if r.HasField("exit")]
    assert "exit" in kinds and exit_record[0].exit_code == 0


def _items(items: Any) -> dict[str, Any]:
    """History items by name, nested ones as "samples/width"."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def _wandb_records(path: Path) -> Iterator[Any]:
    """The records of a ``.wandb`` file, decoded with W&B's own protobuf ``Record``.

    The wandb package ships no reader for this file any more (its writer lives in the Go
    service), so this follows the format: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of chunks, each a 7-byte header (CRC, little-endian length, type: 1 whole,
    2 first, 3 middle, 4 last) and its bytes; a block's tail too short for a header is padding.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, pos, parts = path.read_bytes(), 32768, 7, []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        kind = data[pos + 6]
        if left < 7 or kind == 0:
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            yield Record.FromString(b"".join(parts))
            parts = []


def _descendants() -> list[str]:
    """The command names of this process's descendants (Linux; [] elsewhere)."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:]
        parents[int(stat.parent.name)] = (int(rest.split()[1]), name)
    found, frontier = [], {os.getpid()}
    while frontier:
        children = {pid for pid, (ppid, _) in parents.items() if ppid in frontier}
        found += [parents[pid][1] for pid in children]
        frontier = children
    return found


# --- MLflow ------------------------------------------------------------------------------


def test_mlflow_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports, no install id
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.config/mlflow, should it write
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # a local store puts artifacts in ./mlruns
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = build("mlflow", tmp_path, tracking_uri=uri, experiment="tests")
    other = build("mlflow", tmp_path, tracking_uri=uri, experiment="tests", run_name="other")
    feed(logger, tmp_path)
    other.log_scalars(1, {"loss/G": 9.0})
    try:
        raise RuntimeError("training failed")
    except RuntimeError:
        other.close()

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
    assert run.data.tags["imtrans.run_dir"] == str((tmp_path / "run").resolve())
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    assert run.data.params == {"trainer.name": "cyclegan", "optim.lr": "0.0002",
                               "optim.betas": "[0.5, 0.999]", "train.max_steps": "10",
                               "train.amp": "false"}
    for name in ("loss/G", "loss/D_A", "lr"):
        got = [(m.step, m.value) for m in client.get_metric_history(logger.run_id, name)]
        assert sorted(got) == [(step, pytest.approx(SCALARS[step][name])) for step in (1, 2)]
    [artifact] = client.list_artifacts(logger.run_id, "samples")
    assert artifact.path == "samples/step_00000002.png"
    local = client.download_artifacts(logger.run_id, artifact.path, str(tmp_path))
    with Image.open(local) as image:
        assert image.size == (WIDTH, HEIGHT)

    # The second logger wrote to its own run, which is marked failed.
    second = client.get_run(other.run_id)
    assert (second.info.run_name, second.info.status) == ("other", "FAILED")
    assert [m.value for m in client.get_metric_history(other.run_id, "loss/G")] == [9.0]


# --- a missing package ---------------------------------------------------------------------


BACKENDS = [("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")]


@pytest.mark.parametrize(("name", "package"), [*BACKENDS, ("mlflow", "sqlalchemy")])
def test_missing_package_names_the_extra(
    name: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if package == "sqlalchemy":  # mlflow-skinny without its database libraries
        pytest.importorskip("mlflow")
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    monkeypatch.chdir(tmp_path)
    options = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"} if name == "mlflow" else {}
    with pytest.raises(MissingExtraError, match=rf"pip install 'imtrans\[{name}\]'") as caught:
        build(name, tmp_path, **options)
    assert f"the {name} logger needs the {package!r} package" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing started


@pytest.mark.parametrize(("name", "package"), BACKENDS)
def test_backend_module_imports_without_its_package(
    name: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, f"imtrans.loggers.{name}", raising=False)
    monkeypatch.setattr(imtrans.loggers, name, None, raising=False)  # restored afterwards
    module = importlib.import_module(f"imtrans.loggers.{name}")
    assert callable(getattr(module, {"tensorboard": "TensorBoardLogger", "wandb": "WandbLogger",
                                     "mlflow": "MlflowLogger"}[name]))


def test_a_training_run_reaches_tensorboard_with_every_record_and_sample(tmp_path: Path
                                                                        ) -> None:
    """The whole road: a recipe's [log] table, the loop's records, the event files."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator



    recipe = imtrans.load_recipe(ROOT / "recipes" / "cyclegan_photo2monet.toml", [
        "data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.max_steps=4", "train.log_every=2",
        "train.sample_every=4", f"run.output_dir={tmp_path}",
        'log.backends=["jsonl", "tensorboard"]'])
    result = imtrans.train(recipe, registry=load_components(autoload=False))
    events = EventAccumulator(str(result.run_dir / "tb"),
                              size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    generator = [(e.step, e.value) for e in events.Scalars("loss/G")]
    assert [step for step, _ in generator] == [r["step"] for r in records] == [1, 2, 4]
    assert [value for _, value in generator] == pytest.approx(
        [r["losses"]["G"] for r in records], rel=1e-6)
    assert [e.step for e in events.Images("samples")] == [4]
