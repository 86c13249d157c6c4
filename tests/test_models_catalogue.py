"""The official pretrained-model catalogue, `imtrans models list/download` from a local server
(resume, a file of the wrong architecture), and translating with the imported run."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from http_server import Server, serve
from PIL import Image
from torch import nn

from imtrans.cli.app import cli
from imtrans.data.catalog import catalog_names
from imtrans.data.images import image_to_array
from imtrans.data.transforms import to_tensor
from imtrans.errors import CheckpointError, DataError
from imtrans.inference.translator import to_uint8
from imtrans.nn.generators import resnet_9blocks, unet_256
from imtrans.runs.checkpoints.files import list_checkpoints, load_checkpoint
from imtrans.zoo import catalog
from imtrans.zoo.catalog import MODELS, ModelEntry, get_model, model_names
from imtrans.zoo.fetch import BASE_URL_ENV, VERIFIED_BY, fetch_model, model_url

CYCLEGAN = ["apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
            "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne",
            "style_ukiyoe", "style_vangogh", "sat2map", "map2sat", "cityscapes_photo2label",
            "cityscapes_label2photo", "facades_photo2label", "facades_label2photo",
            "iphone2dslr_flower"]
PIX2PIX = ["edges2shoes", "sat2map", "map2sat", "facades_label2photo", "day2night"]
PIX2PIX_DIRECTIONS = {"facades_label2photo": "BtoA", "map2sat": "BtoA", "sat2map": "AtoB",
                      "edges2shoes": "AtoB", "day2night": "AtoB"}
CLASHES = {"sat2map", "map2sat", "facades_label2photo"}
RESNET = {"model": "cycle_gan", "netG": "resnet_9blocks", "ngf": "64", "norm": "instance",
          "no_dropout": "True", "input_nc": "3", "output_nc": "3"}
UNET = {"model": "pix2pix", "netG": "unet_256", "ngf": "64", "norm": "batch",
        "no_dropout": "False", "input_nc": "3", "output_nc": "3"}


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as state:
        yield state


# --- the catalogue -------------------------------------------------------------------------

def test_every_official_model_is_catalogued_with_its_url_and_architecture() -> None:
    for method, official, folder, script, arch in (
            ("cyclegan", CYCLEGAN, "cyclegan/pretrained_models", "download_cyclegan_model.sh",
             RESNET),
            ("pix2pix", PIX2PIX, "pix2pix/models-pytorch", "download_pix2pix_model.sh", UNET)):
        entries = [e for e in MODELS if e.method == method]
        assert [e.official_name for e in entries] == official  # the scripts' order
        for entry in entries:
            url = urlparse(entry.url)
            assert url.scheme == "http" and url.netloc == "efrosgans.eecs.berkeley.edu"
            assert url.path == f"/{folder}/{entry.official_name}.pth"
            assert entry.script == f"scripts/{script}"
            assert entry.file_name == "latest_net_G.pth"
            assert entry.official_path == (f"./checkpoints/{entry.official_name}_pretrained/"
                                           "latest_net_G.pth")
            assert dict(entry.architecture) == arch
            clash = entry.official_name in CLASHES
            assert entry.name == (f"{method}_{entry.official_name}" if clash
                                  else entry.official_name)
            assert " -> " in entry.translates and entry.source
            assert entry.dataset is None or entry.dataset in catalog_names()
            if method == "pix2pix":
                assert entry.official_direction == PIX2PIX_DIRECTIONS[entry.official_name]
            else:
                assert entry.official_direction is None
    assert len(set(model_names())) == len(MODELS) == 23


def test_sizes_are_the_tensor_bytes_of_the_official_architectures() -> None:
    with torch.device("meta"):  # no memory, no initialisation
        nets = {"resnet_9blocks": resnet_9blocks(in_channels=3, out_channels=3, ngf=64,
                                                 norm="instance", dropout=False),
                "unet_256": unet_256(in_channels=3, out_channels=3, ngf=64, norm="batch",
                                     dropout=True)}
    for entry in MODELS:
        tensors = nets[entry.architecture["netG"]].state_dict().values()
        assert entry.approx_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert get_model("horse2zebra").size_text == "~43 MiB"


def test_names_unique_plain_prefixed_ambiguous_and_misspelt() -> None:
    assert get_model("horse2zebra") is get_model("cyclegan_horse2zebra")
    assert get_model("edges2shoes") is get_model("pix2pix_edges2shoes")
    assert get_model("pix2pix_sat2map").method == "pix2pix"
    assert get_model("cyclegan_sat2map").architecture["netG"] == "resnet_9blocks"
    with pytest.raises(DataError, match="model name 'sat2map' is ambiguous") as caught:
        get_model("sat2map")
    assert "'cyclegan_sat2map' (cyclegan" in str(caught.value)
    assert "'pix2pix_sat2map' (pix2pix" in str(caught.value)
    with pytest.raises(DataError, match="did you mean 'horse2zebra'") as caught:
        get_model("hors2zebra")
    assert "known models: apple2orange, orange2apple" in str(caught.value)
    with pytest.raises(DataError, match="did you mean 'cyclegan_map2sat' or 'pix2pix_map2sat'"):
        get_model("map2sta")
    with pytest.raises(DataError, match="unknown model 'xyz'; known models"):
        get_model("xyz")


def test_base_url_replaces_the_official_one(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = get_model("pix2pix_facades_label2photo")
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert model_url(entry) == entry.url
    assert model_url(entry, "http://m/x/") == "http://m/x/pix2pix_facades_label2photo.pth"
    monkeypatch.setenv(BASE_URL_ENV, "http://mirror")
    assert model_url(entry) == "http://mirror/pix2pix_facades_label2photo.pth"


def test_cli_list_and_ambiguous_download() -> None:
    listed = CliRunner().invoke(cli, ["models", "list"], terminal_width=200)
    assert listed.exit_code == 0
    for name in model_names():
        assert name in listed.output
    assert "resnet_9blocks ngf 64, instance norm, no dropout" in listed.output
    refused = CliRunner().invoke(cli, ["models", "download", "map2sat"])
    assert refused.exit_code == 1
    assert "ambiguous" in refused.output and "Traceback" not in refused.output
    assert "pix2pix_map2sat" in refused.output and "cyclegan_map2sat" in refused.output


# --- downloading and importing -------------------------------------------------------------

def _tiny(name: str, **arch: str) -> ModelEntry:
    """The catalogue entry ``name`` with a narrow network (ngf 4: kilobytes, not 45 MB)."""
    entry = get_model(name)
    return dataclasses.replace(entry, architecture={**entry.architecture, "ngf": "4", **arch})


def _pth(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)  # what the official code saves: a bare state dict
    return buffer.getvalue()


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet_9blocks(in_channels=3, out_channels=3, ngf=4, norm="instance",
                          dropout=False).eval()


def _download(tmp_path: Path, server: Server, name: str = "horse2zebra") -> Result:
    args = ["models", "download", name, "--dir", str(tmp_path / "runs"), "--base-url",
            server.root, "--timeout", "10"]
    return CliRunner().invoke(cli, args)


def test_download_imports_and_translate_matches_the_network(server: Server, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    net = _resnet()
    body = _pth(net)
    server.files["/horse2zebra.pth"] = body
    monkeypatch.setattr(catalog, "MODELS", (_tiny("horse2zebra"),))
    result = _download(tmp_path, server)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "horse2zebra"
    official = run_dir / "official" / "latest_net_G.pth"
    digest = hashlib.sha256(body).hexdigest()
    assert official.read_bytes() == body and server.paths == ["/horse2zebra.pth"]
    output = " ".join(result.output.split())  # whatever the console's wrapping
    for line in (f"sha256 {digest}", "not verified by checksum (none published); verified by "
                 "a strict load of the official architecture", f"checkpoint {run_dir}",
                 f"translate with: imtrans translate {run_dir} INPUT OUTPUT"):
        assert line in output
    [(_, checkpoint)] = list_checkpoints(run_dir / "checkpoints")
    imported = load_checkpoint(checkpoint).manifest["imported"]
    assert imported["catalogue"] == "horse2zebra" and imported["sha256"] == digest
    assert imported["url"] == f"{server.root}/horse2zebra.pth"
    assert imported["size"] == len(body) and imported["verified_by"] == VERIFIED_BY

    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels).save(tmp_path / "in" / "x.png")
    translated = CliRunner().invoke(cli, ["translate", str(run_dir), str(tmp_path / "in"),
                                          str(tmp_path / "out"), "--device", "cpu",
                                          "--workers", "0"])
    assert translated.exit_code == 0, translated.output
    got = np.asarray(Image.open(tmp_path / "out" / "x.png").convert("RGB")).astype(int)
    with torch.no_grad():
        x = to_tensor(image_to_array(Image.open(tmp_path / "in" / "x.png"), 3))[None]
        expected = to_uint8(net(x))[0].permute(1, 2, 0).numpy().astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1

    again = _download(tmp_path, server)
    assert again.exit_code == 1 and "already holds a run" in again.output
    assert len(server.paths) == 1  # refused before downloading anything


def test_an_interrupted_download_resumes_with_a_range_request(server: Server, tmp_path: Path
                                                              ) -> None:
    body = _pth(_resnet())
    half = len(body) // 2
    server.files["/horse2zebra.pth"], server.cut_after = body, half
    entry = _tiny("horse2zebra")
    run_dir = tmp_path / "runs" / "horse2zebra"
    with pytest.raises(DataError, match=r"interrupted after .* run it again to resume"):
        fetch_model(entry, run_dir, base_url=server.root, timeout=10)
    part = run_dir / "official" / "latest_net_G.pth.part"
    assert part.stat().st_size == half and not list_checkpoints(run_dir / "checkpoints")
    calls: list[tuple[int, int | None]] = []
    fetched = fetch_model(entry, run_dir, base_url=server.root, timeout=10,
                          progress=lambda *a: calls.append(a))
    assert server.ranges == [None, f"bytes={half}-"]
    assert fetched.official_file.read_bytes() == body and not part.exists()
    assert calls[-1] == (len(body), len(body))
    assert fetched.downloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert fetched.checkpoint.is_file() and fetched.imported.trainer == "cyclegan"
    assert "gen_ab" in fetched.imported.roles and "gen_ba" in fetched.imported.fresh


def test_a_file_of_another_architecture_is_refused_and_kept(server: Server, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    unet = unet_256(in_channels=3, out_channels=3, ngf=4, norm="batch", dropout=True)
    body = _pth(unet)
    server.files["/horse2zebra.pth"] = body
    monkeypatch.setattr(catalog, "MODELS", (_tiny("horse2zebra"),))
    result = _download(tmp_path, server)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    run_dir = tmp_path / "runs" / "horse2zebra"
    official = run_dir / "official" / "latest_net_G.pth"
    assert "does not match the catalogue's architecture for horse2zebra" in message
    assert f"the download is kept at {official}" in message
    assert official.read_bytes() == body
    assert sorted(p.name for p in run_dir.iterdir()) == ["official"]  # no half-made run

    with pytest.raises(CheckpointError, match="does not match the catalogue's architecture"):
        fetch_model(_tiny("horse2zebra"), run_dir, base_url=server.root)
    assert len(server.paths) == 1  # the kept file was reused, not downloaded again
    assert sorted(p.name for p in run_dir.iterdir()) == ["official"]
