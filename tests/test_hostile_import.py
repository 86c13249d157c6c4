"""`imtrans import` handed hostile, broken or merely old official files.

Every file is made here. The official files use the official state-dict keys (imtrans's
networks have them, as in ``tests/test_import.py``); the hostile ones are tiny files that claim
huge networks. What is checked: nothing the file claims is allocated before its shapes match a
network laid out on the meta device and that network fits in memory; files the official
``test.py`` loads (PyTorch 0.4.0 batch norm, ``DataParallel`` prefixes, batch-norm ResNets
without dropout) import without flags; and files that are not state dicts (a Git LFS pointer,
an empty file, a whole pickled model) are named for what they are, in one plain line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from imtrans.cli import cli
from imtrans.errors import CheckpointError
from imtrans.nn import generators
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.zoo import importer
from imtrans.zoo.importer import import_official
from tests.conftest import cli_error
from tests.test_import import seeded


def _import_cli(*args: str) -> str:
    return cli_error(CliRunner().invoke(cli, ["import", *args]))


def _no_real_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the import builds its networks for real (allocates weights)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the import allocated the networks the file claims")
    monkeypatch.setattr(importer, "build_training", refuse)


def _stored(checkpoint: Path, role: str) -> dict[str, torch.Tensor]:
    prefix = f"net.{role}."
    tensors = load_checkpoint(checkpoint).tensors
    return {key.removeprefix(prefix): value for key, value in tensors.items()
            if key.startswith(prefix)}


# --- unbounded work from a small file or a flag ---------------------------------------------

@pytest.mark.parametrize("make", [
    # torch.save keeps the 4-byte storage and the huge shape: 720 GB once materialised.
    lambda: torch.zeros(1).expand(100000, 3, 7, 7),
    # a zero stride over a storage large enough for the first rows: still not real weights
    lambda: torch.zeros(20000).as_strided((4, 3, 7, 7), (0, 0, 0, 1)),
], ids=["storage-smaller-than-shape", "zero-stride"])
def test_a_tensor_without_storage_for_its_shape_is_refused_naming_the_key(
        tmp_path: Path, make, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_real_build(monkeypatch)
    state = dict(generators.resnet_6blocks(ngf=4).state_dict())
    state["model.1.weight"] = make()
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    assert path.stat().st_size < 400_000
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert "model.1.weight" in line and "not real weights" in line, line
    assert "storage" in line
    assert not (tmp_path / "run").exists()


def test_options_claiming_a_huge_generator_are_refused_before_allocating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_real_build(monkeypatch)
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), folder / "latest_net_G.pth")
    (folder / "train_opt.txt").write_text("model: test\nnetG: resnet_6blocks\nngf: 4000\n"
                                          "no_dropout: True\n")
    started = time.monotonic()
    line = _import_cli(str(folder), str(tmp_path / "run"))
    assert time.monotonic() - started < 60
    assert "does not fit the generator" in line and "ngf 4000" in line, line
    assert "shape of model.1.weight is (4, 3, 7, 7) in the checkpoint but (4000, 3, 7, 7)" in line
    # The same claim made by a flag.
    line = _import_cli(str(folder / "latest_net_G.pth"), str(tmp_path / "run"), "--ngf", "3000")
    assert "ngf 3000" in line and "(3000, 3, 7, 7)" in line, line
    assert not (tmp_path / "run").exists()


def test_networks_the_import_would_create_must_fit_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A lone generator and options whose fresh discriminators would take petabytes.
    _no_real_build(monkeypatch)
    path = tmp_path / "latest_net_G.pth"
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), path)
    line = _import_cli(str(path), str(tmp_path / "run"), "--ndf", "1000000")
    assert "cannot fit in the memory of the CPU" in line, line
    assert "disc_a" in line and "parameters" in line and "lower --ngf / --ndf" in line
    assert not (tmp_path / "run").exists()


# --- official files the official test.py loads -------------------------------------------------

def test_a_batch_norm_file_from_pytorch_0_4_0_imports(tmp_path: Path) -> None:
    # PyTorch 0.4.0 and older wrote batch norm without num_batches_tracked; torch's own
    # loader (and so the official test.py) fills the count in.
    gen = seeded(generators.unet_128(ngf=4), 3)
    state = {key: value for key, value in gen.state_dict().items()
             if not key.endswith("num_batches_tracked")}
    assert len(state) < len(gen.state_dict())
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    imported = import_official(path, tmp_path / "run")
    assert imported.trainer == "pix2pix" and imported.recipe.generator.kwargs["norm"] == "batch"
    stored = _stored(imported.checkpoint, "gen")
    for key, value in state.items():
        assert torch.equal(stored[key], value), key
    counts = [key for key in stored if key.endswith("num_batches_tracked")]
    assert counts and all(int(stored[key]) == 0 for key in counts)
    record = load_checkpoint(imported.checkpoint).manifest["imported"]
    assert record["filled_batch_norm_counts"] == len(counts)


def test_a_data_parallel_unet_is_read_as_a_unet(tmp_path: Path) -> None:
    gen = seeded(generators.unet_128(ngf=4), 4)
    path = tmp_path / "facades_label2photo.pth"
    torch.save({f"module.{key}": value for key, value in gen.state_dict().items()}, path)
    imported = import_official(path, tmp_path / "run")
    assert imported.trainer == "pix2pix"
    assert imported.recipe.generator.name == "unet_128"
    assert imported.recipe.generator.kwargs["ngf"] == 4
    stored = _stored(imported.checkpoint, "gen")
    assert all(torch.equal(stored[key], value) for key, value in gen.state_dict().items())


@pytest.mark.parametrize("dropout", [False, True])
def test_a_lone_batch_norm_resnet_keeps_its_dropout_setting(tmp_path: Path,
                                                             dropout: bool) -> None:
    gen = seeded(generators.resnet_6blocks(ngf=4, norm="batch", dropout=dropout), 5)
    path = tmp_path / "latest_net_G.pth"
    torch.save(gen.state_dict(), path)
    imported = import_official(path, tmp_path / "run")
    assert imported.recipe.generator.kwargs["dropout"] is dropout
    assert imported.recipe.generator.kwargs["norm"] == "batch"
    stored = _stored(imported.checkpoint, "gen_ab")
    assert all(torch.equal(stored[key], value) for key, value in gen.state_dict().items())


def test_a_git_lfs_pointer_is_named_with_how_to_fetch_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    f"oid sha256:{'4d' * 32}\nsize 217704720\n")
    assert path.stat().st_size == 134
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert "is a Git LFS pointer" in line and "git lfs pull" in line, line
    assert "of a 217,704,720-byte file (134 bytes of text)" in line
    assert "weights_only=False" not in line and "weights_only` set to `False" not in line


def test_an_empty_file_is_said_to_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    path.write_bytes(b"")
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert line == f"error: {path} is empty (0 bytes), not a PyTorch file", line


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_whole_pickled_model_names_its_class_and_how_to_save_weights(
        tmp_path: Path, zipped: bool) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(generators.resnet_6blocks(ngf=4), path, _use_new_zipfile_serialization=zipped)
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert "\x1b" not in line and "[1m" not in line
    assert "a whole pickled model (imtrans.nn.generators.resnet.ResnetGenerator)" in line, line
    assert "torch.save(model.state_dict(), path)" in line
    assert "weights_only` set to `False" not in line


def test_a_code_running_pickle_names_what_it_calls_without_torch_advice(
        tmp_path: Path) -> None:
    import os

    class Armed:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'marker'}",))

    path = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": Armed()}, path)
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert "was refused" in line and "nothing in it ran" in line, line
    assert f"{os.name}.system" in line or "posix.system" in line
    assert "\x1b" not in line and "weights_only` set to `False" not in line
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("files", [
    ("latest_net_G.pth", "train_opt.txt"),
    ("latest_net_G_A.pth", "latest_net_G_B.pth"),
    ("5_net_G_A.pth",),
    ("train_opt.txt",),
])
def test_translate_given_an_official_folder_says_how_to_import_it(
        tmp_path: Path, files: tuple[str, ...]) -> None:
    folder = tmp_path / "horse2zebra_pretrained"
    folder.mkdir()
    for name in files:
        if name.endswith(".pth"):
            torch.save(generators.resnet_6blocks(ngf=4).state_dict(), folder / name)
        else:
            (folder / name).write_text("model: test\n")
    images = tmp_path / "in"
    images.mkdir()
    (images / "a.png").write_bytes(b"")  # translate checks its checkpoint before reading
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "cyclegan_photo2monet.toml")
    for command in (["translate", str(folder), str(images), str(tmp_path / "out")],
                    ["export", str(folder), "--format", "onnx", "-o", str(tmp_path / "g.onnx")],
                    ["eval", str(folder), "--data", str(images)],
                    ["run", recipe, "--resume", str(folder), "--set",
                     f"run.output_dir={tmp_path / 'runs'}", "--set", "run.device=cpu"]):
        line = cli_error(CliRunner().invoke(cli, command))
        assert "an official pix2pix/CycleGAN checkpoint folder" in line, line
        assert f"imtrans import {folder} runs/horse2zebra" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_an_ordinary_empty_folder_keeps_the_plain_message(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at") as caught:
        from imtrans.runs.checkpoints.lookup import find_checkpoint
        find_checkpoint(tmp_path)
    assert "imtrans import" not in str(caught.value)


def test_an_archive_that_would_inflate_past_the_memory_is_refused_unread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.save never compresses, but torch.load inflates a deflated member whole: a small
    # file can stand for gigabytes. The declared sizes are checked before torch.load runs.
    import zipfile

    from imtrans.zoo import pth_checks

    plain = tmp_path / "plain.pth"
    torch.save({"model.1.weight": torch.zeros(1_000_000)}, plain)
    path = tmp_path / "latest_net_G.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as packed:
        for name in source.namelist():
            packed.writestr(name, source.read(name), compress_type=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 50_000
    monkeypatch.setattr(pth_checks, "device_memory", lambda device: 2_000_000)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load ran")
    monkeypatch.setattr(torch, "load", never)
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert "unpacks to 4,000,000 bytes of tensors" in line, line
    assert "more than the memory of the CPU (1.9 MiB)" in line
    # A plain file larger than the memory is refused by its size the same way.
    line = _import_cli(str(plain), str(tmp_path / "run"))
    assert f"unpacks to {plain.stat().st_size:,} bytes" not in line
    assert "4,000,000 bytes of tensors" in line, line
    assert not (tmp_path / "run").exists()


def test_an_options_file_is_a_regular_file_of_a_few_kilobytes(tmp_path: Path) -> None:
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), folder / "latest_net_G.pth")
    (folder / "train_opt.txt").write_text("model: test\n" + "x: y\n" * 400_000)
    line = _import_cli(str(folder), str(tmp_path / "run"))
    assert "train_opt.txt is 1.9 MiB; a file of official options is at most 1.0 MiB" in line
    assert "refused before reading it" in line, line
    assert not (tmp_path / "run").exists()


def test_models_download_of_a_pytorch_0_4_0_pix2pix_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The official pix2pix downloads are such files: the download imports them as the import
    # does (a local server stands for the official one).
    import io

    from http_server import serve

    from imtrans.zoo import catalog
    from tests.test_models_catalogue import _tiny

    gen = seeded(generators.unet_256(ngf=4), 6)
    state = {key: value for key, value in gen.state_dict().items()
             if not key.endswith("num_batches_tracked")}
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(catalog, "MODELS", (_tiny("edges2shoes"),))
    with serve() as server:
        server.files["/edges2shoes.pth"] = buffer.getvalue()
        result = CliRunner().invoke(cli, ["models", "download", "edges2shoes", "--dir",
                                          str(tmp_path / "runs"), "--base-url", server.root,
                                          "--timeout", "10"])
    assert result.exit_code == 0, result.output
    [checkpoint] = (tmp_path / "runs" / "edges2shoes" / "checkpoints").iterdir()
    stored = _stored(checkpoint, "gen")
    assert all(torch.equal(stored[key], value) for key, value in state.items())


# --- unpaired BtoA sampling as the official code samples -------------------------------------

def _unpaired(root: Path, count_a: int, count_b: int) -> Path:
    from PIL import Image

    for folder, count in (("trainA", count_a), ("trainB", count_b)):
        (root / folder).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(root / folder / f"{index}.png")
    return root


def test_btoa_official_order_takes_train_a_in_order_and_draws_train_b(tmp_path: Path) -> None:
    from imtrans.data.folders import UnalignedDataset

    root = _unpaired(tmp_path / "data", 3, 5)
    options = {"root": root, "direction": "BtoA", "preprocess": "none", "flip": False}
    default = UnalignedDataset(**options)
    official = UnalignedDataset(**options, official_order=True)
    assert len(default) == len(official) == 5
    # The default, as before: the input (trainB) in order, the target (trainA) drawn, one
    # draw per item from the generator given.
    generator, again = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for index in range(5):
        assert default.item_positions(index, generator) == [
            index % 5, int(torch.randint(3, (), generator=again))]
    # Official: the target (trainA) in order, the input (trainB) drawn, the same draws.
    generator, again = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for index in range(5):
        assert official.item_positions(index, generator) == [
            int(torch.randint(5, (), generator=again)), index % 3]
    torch.manual_seed(0)
    items = [official[index] for index in range(5)]
    assert [Path(str(item["B_path"])).relative_to(root).as_posix() for item in items] == [
        "trainA/0.png", "trainA/1.png", "trainA/2.png", "trainA/0.png", "trainA/1.png"]
    assert {Path(str(item["A_path"])).parent.name for item in items} == {"trainB"}
    torch.manual_seed(0)
    items = [default[index] for index in range(5)]
    assert [Path(str(item["A_path"])).name for item in items] == [f"{i}.png" for i in range(5)]
    assert {Path(str(item["B_path"])).parent.name for item in items} == {"trainA"}
    # AtoB is the official order already: the switch changes nothing.
    forward = {**options, "direction": "AtoB"}
    generator, again = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    plain, switched = UnalignedDataset(**forward), UnalignedDataset(**forward,
                                                                   official_order=True)
    assert [plain.item_positions(i, generator) for i in range(5)] == [
        switched.item_positions(i, again) for i in range(5)]


def test_official_order_is_a_data_key_that_a_resume_keeps() -> None:
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.training.checkpointing import task_changes

    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "cyclegan_photo2monet.toml")
    loaded = load_recipe(recipe, ["data.official_order=true", "run.device=cpu"])
    assert loaded.data.kwargs["official_order"] is True
    plain = load_recipe(recipe, ["run.device=cpu"])
    assert plain.data.kwargs["official_order"] is False  # the default: runs as before
    assert task_changes(loaded.resolved(), plain) == {"data.official_order": [True, False]}
    older = {key: value for key, value in plain.resolved()["data"].items()
             if key != "official_order"}  # a checkpoint from before the key
    assert task_changes({"data": older}, plain) == {}


def test_entries_that_are_not_named_tensors_are_named_shortly(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save({1: torch.zeros(1)}, path)
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert line.endswith("an entry's name is 1 (int), not a string; a state dict maps names "
                         "to tensors"), line
    torch.save({"x" * 5000: 3}, path)
    line = _import_cli(str(path), str(tmp_path / "run"))
    assert f"entry '{'x' * 76}... holds int, not a tensor" in line, line
    assert len(line) < 400
