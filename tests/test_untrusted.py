"""Untrusted files: checkpoints, recipes, plugin lists and downloads execute nothing from the
file and are refused with a clear error when malformed or hostile.

Every "nothing executed" test arms its payload first (shows that the file would run code if
unpickled or imported) and then checks that the marker file it would write does not exist.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import resource
import struct
import sys
import tarfile
import textwrap
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import cli_error
from PIL import Image

from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.cli import cli
from imtrans.data.catalog import CatalogEntry
from imtrans.data.download import download, extract, fetch_dataset
from imtrans.errors import CheckpointError, DataError, RecipeError
from imtrans.inference.translator import load_translator
from imtrans.runs.checkpoints.files import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
#: The tiny settings the ``cyclegan_run`` fixture trained with (see conftest.TINY_RUN).
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu"]


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a pickle that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def pickle_checkpoint(path: Path, marker: Path) -> Path:
    """A PyTorch pickle checkpoint (what ``torch.save`` writes) whose loading creates ``marker``."""
    torch.save({"net.gen_ab.weight": torch.zeros(2), "payload": Payload(marker)}, path)
    return path


# --- checkpoints: raw files ------------------------------------------------------------------


def _safetensors(header: dict[str, Any], data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


MANIFEST = {"__metadata__": {"imtrans.format": "1", "imtrans.manifest": "{}"}}
HOSTILE_BYTES: dict[str, tuple[bytes, str]] = {
    "huge declared tensor": (_safetensors({
        **MANIFEST, "w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}},
        b"\0" * 64), "not a readable safetensors file"),
    "offsets past the end": (_safetensors({
        **MANIFEST, "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
        "not a readable safetensors file"),
    "shape and offsets disagree": (_safetensors({
        **MANIFEST, "w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 8]}}, b"\0" * 8),
        "not a readable safetensors file"),
    "huge declared header": (struct.pack("<Q", 2**62) + b"{}", "declares a"),
    "garbage": (bytes(range(256)) * 8, "declares a"),
    "empty": (b"", "is 0 bytes"),
    "header not JSON": (struct.pack("<Q", 12) + b"{'w': pickle", "not a readable safetensors"),
    "manifest not JSON": (_safetensors({"__metadata__": {
        "imtrans.format": "1", "imtrans.manifest": "{\"step\": 1,"}}),
        "manifest that is not valid JSON"),
    "metadata not strings": (_safetensors({"__metadata__": {"imtrans.format": 1}}),
                             "not a readable safetensors file"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BYTES))
def test_malformed_checkpoint_files_are_refused(tmp_path: Path, kind: str) -> None:
    data, message = HOSTILE_BYTES[kind]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    # Nothing near a declared size (up to 4 TiB) was allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_pickle_checkpoint_is_refused_and_never_unpickled(tmp_path: Path, suffix: str) -> None:
    armed = tmp_path / "armed"
    torch.load(pickle_checkpoint(tmp_path / "armed.pt", armed), weights_only=False)
    assert armed.exists()  # the payload works: unpickling it runs code
    marker = tmp_path / "marker"
    path = pickle_checkpoint(tmp_path / f"model{suffix}", marker)
    # Recognised from its zip member names alone, and answered with what to do instead.
    with pytest.raises(CheckpointError, match=r"is a PyTorch pickle \(torch.save\).*imtrans "
                                              r"import"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_translator(path, device="cpu")
    assert not marker.exists()


def test_loading_never_goes_through_pickle(cyclegan_run: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint load went through pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    translator = load_translator(cyclegan_run, device="cpu")
    assert translator.step == 4


# --- checkpoints: well-formed files with hostile content -------------------------------------


def _latest(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]


def rewritten(source: Path, target: Path, *, tensors: Callable[[dict], dict] = lambda t: t,
              manifest: Callable[[dict], dict] = lambda m: m) -> Path:
    """A copy of checkpoint ``source`` with its tensors or manifest changed."""
    checkpoint = load_checkpoint(source)
    return save_checkpoint(target, tensors(dict(checkpoint.tensors)),
                           manifest(json.loads(json.dumps(checkpoint.manifest))))


def _with(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda manifest: {**manifest, key: value}


def _recipe_with(section: str, value: Any) -> Callable[[dict], dict]:
    return lambda manifest: {**manifest, "recipe": {**manifest["recipe"], section: value}}


def _first_weight(tensors: dict) -> str:
    return next(k for k in sorted(tensors) if k.startswith("net.gen_ab.") and
                k.endswith("weight"))


HOSTILE_CONTENT: dict[str, tuple[dict[str, Callable[[dict], dict]], str]] = {
    "wrong shape": ({"tensors": lambda t: {**t, _first_weight(t): torch.zeros(3, 1)}},
                    r"net\.gen_ab: shape of .* is \(3, 1\) in the checkpoint"),
    "missing weights": ({"tensors": lambda t: {k: v for k, v in t.items()
                                               if not k.startswith("net.gen_ab.")}},
                        r"net\.gen_ab: missing from the checkpoint"),
    "step not a count": ({"manifest": _with("step", "1e999")},
                         r"malformed manifest: step is '1e999'; expected an integer >= 0"),
    "negative step": ({"manifest": _with("step", -4)}, r"step is -4; expected an integer"),
    "recipe a list": ({"manifest": _with("recipe", [1, 2])},
                      r"recipe is \[1, 2\]; expected a JSON object"),
    "recipe table a string": ({"manifest": _recipe_with("generator", "resnet")},
                              r"recipe \[generator\] is 'resnet'; expected a table"),
    "optimizers a string": ({"manifest": _with("optimizers", "adam")},
                            r"optimizers is 'adam'; expected a JSON object"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_CONTENT))
def test_hostile_content_is_refused_by_translate_and_resume(cyclegan_run: Path, tmp_path: Path,
                                                            kind: str) -> None:
    changes, message = HOSTILE_CONTENT[kind]
    path = rewritten(_latest(cyclegan_run), tmp_path / "hostile.safetensors", **changes)
    with pytest.raises(CheckpointError, match=message):
        load_translator(path, device="cpu")
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["translate", str(path), str(ROOT / "imtrans" / "samples"),
                                 str(out), "--device", "cpu", "--workers", "0"])
    assert str(path) in cli_error(result) or "net.gen_ab" in cli_error(result)
    assert not out.exists()
    sets = [arg for o in [*TINY, "train.max_steps=8", f"run.output_dir={tmp_path / 'runs'}"]
            for arg in ("--set", o)]
    result = runner.invoke(cli, ["run", CYCLEGAN, "--resume", str(path), *sets])
    assert cli_error(result)
    assert not list((tmp_path / "runs").glob("*/checkpoints/step_*"))  # nothing trained


def test_optimiser_state_of_the_wrong_shape_is_refused_on_resume(cyclegan_run: Path,
                                                                   tmp_path: Path) -> None:
    # load_state_dict takes any shape; the first step after the resume would then fail.
    def shrink(tensors: dict) -> dict:
        moment = next(k for k in sorted(tensors) if k.endswith(".exp_avg"))
        return {**tensors, moment: torch.zeros(3)}

    path = rewritten(_latest(cyclegan_run), tmp_path / "moments.safetensors", tensors=shrink)
    sets = [arg for o in [*TINY, "train.max_steps=8", f"run.output_dir={tmp_path / 'runs'}"]
            for arg in ("--set", o)]
    line = cli_error(CliRunner().invoke(cli, ["run", CYCLEGAN, "--resume", str(path), *sets]))
    assert re.search(r"optim\.\w+: the checkpoint's exp_avg of parameter \d+ has shape \(3,\)",
                     line)


def _pool(**changes: Any) -> Callable[[dict], dict]:
    """Tensors with ``trainer.pool_a.<key>`` replaced (``None`` removes the key)."""
    def change(tensors: dict) -> dict:
        tensors = {**tensors, **{f"trainer.pool_a.{k}": v for k, v in changes.items()}}
        return {k: v for k, v in tensors.items() if v is not None}
    return change


#: The tiny run's pools hold 4 of at most 50 generated 3 x 32 x 32 images each.
HOSTILE_POOLS: dict[str, tuple[Callable[[dict], dict], str]] = {
    "negative count": (_pool(count=torch.tensor(-1)),
                       r"pool_a\.count is -1; expected an image count from 0 to the pool size 50"),
    "count above the pool size": (_pool(count=torch.tensor(51)),
                                  r"pool_a\.count is 51; expected .* pool size 50"),
    "count not one integer": (_pool(count=torch.tensor([4.0, 4.0])),
                              r"pool_a\.count is a torch\.float32 tensor of shape \(2,\)"),
    "fewer images than the count": (_pool(count=torch.tensor(2)),
                                    r"pool_a\.images holds 4 images but pool_a\.count is 2"),
    "images missing": (_pool(images=None), r"pool_a\.images is missing but pool_a\.count is 4"),
    "images not C x H x W": (_pool(images=torch.zeros(4, 32, 32)),
                             r"pool_a\.images is a torch\.float32 tensor of shape \(4, 32, 32\)"
                             r"; expected floating-point images of shape \(4, C, H, W\)"),
    "images not floating point": (_pool(images=torch.zeros(4, 3, 32, 32, dtype=torch.uint8)),
                                  r"pool_a\.images is a torch\.uint8 tensor"),
    "images with other channels": (_pool(images=torch.zeros(4, 1, 32, 32)),
                                   r"pool_a\.images: the checkpoint's pool holds images of shape "
                                   r"\(1, 32, 32\) but this run generates \(3, 32, 32\)"),
    "images of another size": (_pool(images=torch.zeros(4, 3, 8, 8)),
                               r"pool_a\.images: .* shape \(3, 8, 8\) but this run generates "
                               r"\(3, 32, 32\)"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_POOLS))
def test_a_hostile_image_pool_is_refused_on_resume_in_one_line(cyclegan_run: Path,
                                                                tmp_path: Path, kind: str) -> None:
    change, message = HOSTILE_POOLS[kind]
    path = rewritten(_latest(cyclegan_run), tmp_path / "pool.safetensors", tensors=change)
    sets = [arg for o in [*TINY, "train.max_steps=8", f"run.output_dir={tmp_path / 'runs'}"]
            for arg in ("--set", o)]
    result = CliRunner().invoke(cli, ["run", CYCLEGAN, "--resume", str(path), *sets])
    line = cli_error(result)
    assert re.search(message, line), line
    # Found on loading, the line names the file; found at the first step, the key says it.
    assert str(path) in line or "this run generates" in line
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "runs").glob("*/checkpoints/step_*"))  # nothing trained


def test_a_recipe_in_a_checkpoint_that_is_invalid_is_a_checkpoint_error(cyclegan_run: Path,
                                                                        tmp_path: Path) -> None:
    path = rewritten(_latest(cyclegan_run), tmp_path / "odd.safetensors",
                     manifest=_recipe_with("generator", {"name": "os.system", "ngf": 4}))
    with pytest.raises(CheckpointError, match=r"odd\.safetensors.*recipe.*unknown generator "
                                              r"'os\.system'"):
        load_translator(path, device="cpu")


def test_a_recipe_declaring_a_huge_network_allocates_nothing(cyclegan_run: Path,
                                                             tmp_path: Path) -> None:
    # 1e6 filters in the first layer: about 8 TB of weights if they were ever allocated.
    path = rewritten(_latest(cyclegan_run), tmp_path / "huge.safetensors",
                     manifest=lambda m: {**m, "recipe": {**m["recipe"], "generator": {
                         **m["recipe"]["generator"], "ngf": 1_000_000}}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=r"net\.gen_ab: shape of .* in the checkpoint but"):
        load_translator(path, device="cpu")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_cli_refuses_a_pickle_checkpoint_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = pickle_checkpoint(tmp_path / "model.pt", marker)
    runner = CliRunner()
    # An input image: translate checks its inputs and outputs before it loads the checkpoint.
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (8, 8)).save(image)
    line = cli_error(runner.invoke(cli, ["translate", str(path), str(image.parent),
                                         str(tmp_path / "out")]))
    assert str(path) in line and f"imtrans import {path}" in line
    sets = [arg for o in [*TINY, f"run.output_dir={tmp_path / 'runs'}"] for arg in ("--set", o)]
    line = cli_error(runner.invoke(cli, ["run", CYCLEGAN, "--resume", str(path), *sets]))
    assert str(path) in line and f"imtrans import {path}" in line
    assert not marker.exists()


# --- recipes ---------------------------------------------------------------------------------

CODE = "__import__('pathlib').Path({marker!r}).touch()"


def test_recipe_values_that_look_like_code_stay_strings(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    code = CODE.format(marker=str(marker))
    registry = load_components(autoload=False)
    path = tmp_path / "recipe.toml"
    path.write_text(f'[trainer]\nname = "cyclegan"\n[data]\nroot = "{code}"\n'
                    f'[run]\nname = "$(touch {marker.name})"\n')
    recipe = load_recipe(path, [f"run.output_dir={code}"], registry=registry)
    assert recipe.data.kwargs["root"] == code
    # (A run name is one folder name, so the command is written without a path.)
    assert recipe.run.output_dir == code and recipe.run.name == f"$(touch {marker.name})"
    path.write_text(f'[trainer]\nname = "{code}"\n[data]\nroot = "x"\n')
    with pytest.raises(RecipeError, match="unknown trainer"):
        load_recipe(path, registry=registry)
    # A file in another format is not read as anything but TOML.
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(RecipeError, match=r"not valid TOML|cannot read recipe"):
        load_recipe(path, registry=registry)
    path.write_text("trainer: !!python/object/apply:os.system ['touch marker']\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(path, registry=registry)
    assert not marker.exists() and not (Path.cwd() / "marker").exists()


# --- the plugin list -------------------------------------------------------------------------


def _install_trap(site: Path, marker: Path) -> None:
    """An installed-looking distribution whose module creates ``marker`` when imported."""
    (site / "imtrans_trap.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).touch()
    """))
    info = site / "imtrans_trap-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imtrans-trap\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[imtrans]\ntrap = imtrans_trap\n")


@pytest.mark.parametrize("allow", [
    "nonexistent_module_xyz", "os.system", CODE, "imtrans_trap.py", "imtrans_trap:evil",
    "subprocess,shutil,__import__('os')"])
def test_the_plugin_allowlist_only_filters_entry_point_names(tmp_path: Path, allow: str,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    marker = tmp_path / "marker"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    _install_trap(tmp_path, marker)
    monkeypatch.setenv("IMTRANS_PLUGINS", "trap")
    assert "trap" in [p.name for p in load_components().plugins] and marker.exists()  # armed
    marker.unlink()
    sys.modules.pop("imtrans_trap", None)
    monkeypatch.setenv("IMTRANS_PLUGINS", allow.format(marker=str(marker)))
    before = set(sys.modules)
    loaded = load_components()
    assert [p.name for p in loaded.plugins] == ["imtrans"]
    assert not marker.exists()
    assert not {"nonexistent_module_xyz", "imtrans_trap"} & (set(sys.modules) - before)


# --- downloads and archives ------------------------------------------------------------------


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves one body, honouring ``Range: bytes=N-`` as real servers do."""

    def do_GET(self) -> None:
        body: bytes = self.server.body  # type: ignore[attr-defined]
        start = int((self.headers.get("Range") or "bytes=0-")[6:-1] or 0)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], str]]:
    """Serve bytes from a local HTTP server (never the internet); returns their URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def publish(body: bytes) -> str:
        httpd.body = body  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{httpd.server_port}/data.tar.gz"

    yield publish
    httpd.shutdown()
    httpd.server_close()


def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """A tar.gz of ``(kind, name, content or link target)``; kind is file, dir or symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for kind, name, content in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = content if isinstance(content, bytes) else content.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_checksum_mismatch_leaves_no_file_and_a_bad_partial_is_not_kept(
        tmp_path: Path, serve: Callable[[bytes], str]) -> None:
    good = _tar([("file", "facades/train/1.png", b"pixels")])
    url = serve(good)
    digest = hashlib.sha256(good).hexdigest()
    dest = tmp_path / "facades.tar.gz"
    serve(b"evil bytes served instead")
    with pytest.raises(DataError, match=f"failed verification .*sha256 expected {digest}"):
        download(url, dest, sha256=digest)
    assert _files_under(tmp_path) == []
    # A partial file planted by someone else is resumed, fails the check and is deleted.
    serve(good)
    (tmp_path / "facades.tar.gz.part").write_bytes(b"X" * 10)
    with pytest.raises(DataError, match="failed verification"):
        download(url, dest, sha256=digest)
    assert _files_under(tmp_path) == []
    assert download(url, dest, sha256=digest).verified  # the next attempt starts clean
    assert dest.read_bytes() == good


def test_fetch_extracts_nothing_from_an_archive_that_fails_its_checksum(
        tmp_path: Path, serve: Callable[[bytes], str]) -> None:
    evil = _tar([("file", "facades/train/1.png", b"pixels"), ("file", "../escaped.txt", b"x")])
    entry = CatalogEntry(name="facades", kind="aligned", url=serve(evil), size_bytes=None,
                         sha256=None, md5=hashlib.md5(b"the real archive").hexdigest(),
                         archive="tar.gz", layout="train/", default_direction="BtoA",
                         description="test", source="test")
    datasets = tmp_path / "datasets"
    with pytest.raises(DataError, match="md5 expected"):
        fetch_dataset(entry, datasets)
    assert _files_under(tmp_path) == []  # nothing, not even the datasets folder it made


ESCAPES = {
    "dotdot": [("file", "top/ok.txt", "ok"), ("file", "top/../../evil.txt", "evil")],
    "absolute": [("file", "top/ok.txt", "ok"), ("file", "{root}/evil.txt", "evil")],
    "symlink out": [("file", "top/ok.txt", "ok"), ("symlink", "top/link", "../../.."),
                    ("file", "top/link/evil.txt", "evil")],
    # Each link points inside where it is written, yet the chain ends outside.
    "symlink chain": [("dir", "top/sub", b""), ("symlink", "top/sub/a", ".."),
                      ("symlink", "top/sub/a/b", ".."), ("symlink", "top/sub/a/b/c", ".."),
                      ("file", "top/sub/a/b/c/evil.txt", "evil")],
}


@pytest.mark.parametrize("filter_available", [True, False], ids=["py-filter", "no-py-filter"])
@pytest.mark.parametrize("attack", sorted(ESCAPES))
def test_tar_members_never_land_outside_the_destination(tmp_path: Path, attack: str,
                                                        filter_available: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if not filter_available:  # Python before 3.11.4 has no tarfile "data" filter
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    root = tmp_path / "root"
    members = [(k, n.format(root=root), c) for k, n, c in ESCAPES[attack]]
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar(members))
    dest = root / "datasets" / "facades"
    dest.parent.mkdir(parents=True)
    with pytest.raises(DataError, match=r"(refusing to|cannot) extract .*evil\.tar\.gz"):
        extract(archive, dest)
    assert _files_under(root) == ["datasets"]  # no dest, no staging folder, nothing escaped
    assert _files_under(tmp_path) == ["evil.tar.gz", "root", "root/datasets"]


def test_zip_members_never_land_outside_the_destination(tmp_path: Path) -> None:
    for name, link in (("../evil.txt", None), (f"{tmp_path}/evil.txt", None),
                       ("top/link", "../../../"), ("top/link", f"{tmp_path}")):
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("top/ok.txt", "ok")
            info = zipfile.ZipInfo(name)
            if link is not None:
                info.external_attr = 0o120777 << 16  # a symbolic link
            zipped.writestr(info, link or "evil")
        with pytest.raises(DataError, match=r"refusing to extract .*outside the destination"):
            extract(archive, tmp_path / "out" / "facades")
        assert _files_under(tmp_path) == ["evil.zip"]  # nor the folders it made for them
        archive.unlink()


def test_a_good_archive_still_extracts(tmp_path: Path) -> None:
    archive = tmp_path / "good.tar.gz"
    archive.write_bytes(_tar([("file", "facades/train/1.png", b"a"),
                              ("symlink", "facades/train/2.png", "1.png")]))
    dest = extract(archive, tmp_path / "datasets" / "facades")
    assert _files_under(dest) == ["train", "train/1.png", "train/2.png"]
    assert (dest / "train" / "2.png").read_bytes() == b"a"

