"""Downloads from a local HTTP server (resume, verification) and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import zip_bytes
from http_server import Server, serve
from PIL import Image

from imtrans.cli.data import data
from imtrans.data import catalog
from imtrans.data.catalog import CatalogEntry
from imtrans.data.download import download, extract, fetch_dataset
from imtrans.data.folders import AlignedDataset, UnalignedDataset
from imtrans.errors import DataError


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as state:
        yield state


def _image_bytes(seed: int) -> bytes:
    # Noise, so that the archives do not compress to less than the cut-off below.
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


FACADES = {f"facades/{split}/{i}.png": _image_bytes(10 * n + i)
           for n, split in enumerate(("train", "val", "test")) for i in range(2)}
HORSES = {f"horse2zebra/{split}/{i}.png": _image_bytes(10 * n + i)
          for n, split in enumerate(("trainA", "trainB", "testA", "testB")) for i in range(2)}


def _entry(server: Server, body: bytes, **changes: object) -> CatalogEntry:
    fields = dict(name="facades", kind="aligned", url=server.url, size_bytes=len(body),
                  sha256=hashlib.sha256(body).hexdigest(), md5=None, archive="tar.gz",
                  layout="train/ val/ test/", default_direction="BtoA", description="test",
                  source="test")
    return CatalogEntry(**{**fields, **changes})  # type: ignore[arg-type]


def test_fetch_downloads_verifies_and_extracts_the_official_layouts(server: Server,
                                                                    tmp_path: Path) -> None:
    server.body = _tar_gz(FACADES)
    calls: list[tuple[int, int | None]] = []
    got = fetch_dataset(_entry(server, server.body), tmp_path, lambda *a: calls.append(a))
    assert got.path == tmp_path / "facades" and got.downloaded is not None
    assert got.downloaded.verified
    assert got.downloaded.sha256 == hashlib.sha256(server.body).hexdigest()
    assert calls[-1] == (len(server.body), len(server.body))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facades"]  # archive and temp gone
    assert len(AlignedDataset(root=got.path, split="test", strict=True)) == 2
    assert fetch_dataset(_entry(server, server.body), tmp_path).downloaded is None  # present

    server.body = zip_bytes(HORSES)
    entry = _entry(server, server.body, name="horse2zebra_unaligned", kind="unaligned",
                   archive="zip", sha256=None, md5=hashlib.md5(server.body).hexdigest())
    got = fetch_dataset(entry, tmp_path, keep_archive=True)
    assert got.downloaded is not None and got.downloaded.verified
    assert len(UnalignedDataset(root=tmp_path / "horse2zebra_unaligned", split="test")) == 2
    assert (tmp_path / "horse2zebra_unaligned.zip").is_file()


def test_a_corrupted_download_is_deleted_and_nothing_is_extracted(server: Server,
                                                                   tmp_path: Path) -> None:
    good = _tar_gz(FACADES)
    server.body = bytes(b ^ 0xFF for b in good)  # same size, different bytes
    with pytest.raises(DataError, match="failed verification .*sha256 expected "
                                        f"{hashlib.sha256(good).hexdigest()}, got "):
        fetch_dataset(_entry(server, good), tmp_path)
    assert list(tmp_path.iterdir()) == []
    # Longer than expected: refused from the server's Content-Length, before any byte is kept.
    with pytest.raises(DataError, match=r"announced .* bytes, more than the expected 3;"):
        download(server.url, tmp_path / "x", expected_size=3)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_resumes_with_a_range_request(server: Server,
                                                              tmp_path: Path) -> None:
    server.body, server.cut_after = _tar_gz(FACADES), 1000
    assert len(server.body) > 2000
    dest = tmp_path / "facades.tar.gz"
    sha256 = hashlib.sha256(server.body).hexdigest()
    with pytest.raises(DataError, match=r"interrupted after 1,000 of .* run it again to resume"):
        download(server.url, dest, sha256=sha256)
    part = tmp_path / "facades.tar.gz.part"
    assert part.stat().st_size == 1000 and not dest.exists()
    got = download(server.url, dest, sha256=sha256)
    assert server.ranges == [None, "bytes=1000-"]
    assert got.verified and dest.read_bytes() == server.body and not part.exists()
    assert dest.stat().st_mode & 0o111 == 0  # a data file, never made executable


def test_a_server_that_ignores_range_restarts_the_file(server: Server, tmp_path: Path) -> None:
    server.body, server.honour_range = _tar_gz(FACADES), False
    (tmp_path / "a.tar.gz.part").write_bytes(b"stale bytes from elsewhere")
    got = download(server.url, tmp_path / "a.tar.gz", md5=hashlib.md5(server.body).hexdigest())
    assert server.ranges == ["bytes=26-"] and got.verified
    assert (tmp_path / "a.tar.gz").read_bytes() == server.body


def test_416_means_complete_or_too_long(server: Server, tmp_path: Path) -> None:
    server.body = b"0123456789"
    (tmp_path / "f.part").write_bytes(server.body)  # complete, but not verified yet
    got = download(server.url, tmp_path / "f")
    assert not got.verified and got.sha256 == hashlib.sha256(server.body).hexdigest()
    (tmp_path / "g.part").write_bytes(b"0123456789abc")  # longer than the file: start over
    download(server.url, tmp_path / "g")
    assert server.ranges == ["bytes=10-", "bytes=13-", None]
    assert (tmp_path / "g").read_bytes() == server.body


def test_http_errors_and_bad_urls_are_data_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="only http"):
        download("file:///etc/passwd", tmp_path / "x")
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:1/"):
        download("http://127.0.0.1:1/nothing", tmp_path / "x", timeout=5)


def test_a_failed_download_leaves_no_folder_it_created(server: Server, tmp_path: Path) -> None:
    datasets = tmp_path / "new" / "datasets"
    good = _tar_gz(FACADES)
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:1/"):  # refused
        fetch_dataset(_entry(server, good, url="http://127.0.0.1:1/x"), datasets, timeout=5)
    assert list(tmp_path.iterdir()) == []
    server.body = b"x" * len(good)  # a wrong file: verified, deleted
    with pytest.raises(DataError, match="failed verification"):
        fetch_dataset(_entry(server, good), datasets)
    assert list(tmp_path.iterdir()) == []
    server.body, server.cut_after = good, 0  # the connection closes before a byte: no .part
    with pytest.raises(DataError) as caught:
        fetch_dataset(_entry(server, good), datasets)
    assert str(caught.value) == (f"download of {server.url} interrupted after 0 of "
                                 f"{len(good):,} bytes")  # nothing to resume from
    assert list(tmp_path.iterdir()) == []
    server.cut_after = 1000  # bytes to resume from: the .part and its folders stay
    with pytest.raises(DataError, match="run it again to resume from"):
        fetch_dataset(_entry(server, good), datasets)
    assert [p.name for p in datasets.iterdir()] == ["facades.tar.gz.part"]
    (tmp_path / "kept").mkdir()  # a folder that was there stays, empty or not
    with pytest.raises(DataError):
        download("http://127.0.0.1:1/x", tmp_path / "kept" / "f", timeout=5)
    assert (tmp_path / "kept").is_dir()


def test_a_download_that_may_not_resume_keeps_nothing(server: Server, tmp_path: Path) -> None:
    server.body, server.cut_after = _tar_gz(FACADES), 1000
    dest = tmp_path / "cache" / "file.tar.gz"
    with pytest.raises(DataError) as caught:
        download(server.url, dest, resumable=False)
    assert str(caught.value) == (f"download of {server.url} interrupted after 1,000 of "
                                 f"{len(server.body):,} bytes; nothing was kept")
    assert list(tmp_path.iterdir()) == []  # no .part, no folder
    dest.parent.mkdir()
    (tmp_path / "cache" / "file.tar.gz.part").write_bytes(server.body[:500])
    got = download(server.url, dest, resumable=False)
    assert server.ranges[-1] is None  # the earlier .part was not resumed
    assert got.path.read_bytes() == server.body


def test_a_failed_extraction_leaves_no_folder_it_created(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"neither zip nor tar")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract(archive, tmp_path / "new" / "datasets" / "facades")
    assert list(tmp_path.iterdir()) == [archive]


ATTACKS = [(kind, attack) for kind in ("tar", "zip")
           for attack in ("dotdot", "absolute", "symlink", "abs_symlink", "hardlink")
           if (kind, attack) != ("zip", "hardlink")]  # zip has no hard links


@pytest.mark.parametrize(("kind", "attack"), ATTACKS)
def test_extract_refuses_members_that_escape(tmp_path: Path, kind: str, attack: str) -> None:
    archive, dest = tmp_path / "evil.archive", tmp_path / "out" / "data"
    name = {"dotdot": "top/../../../evil.txt", "absolute": f"{tmp_path}/evil.txt"}.get(attack)
    link = {"symlink": "../../../evil.txt", "abs_symlink": f"{tmp_path}/evil.txt",
            "hardlink": "../evil.txt"}.get(attack)
    if kind == "tar":
        with tarfile.open(archive, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("top/ok.txt"), io.BytesIO())
            info = tarfile.TarInfo(name or "top/link")
            if link:
                info.type = tarfile.LNKTYPE if attack == "hardlink" else tarfile.SYMTYPE
                info.linkname = link
            tar.addfile(info, io.BytesIO())
    else:
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("top/ok.txt", "ok")
            info = zipfile.ZipInfo(name or "top/link")
            if link:
                info.external_attr = 0o120777 << 16
            zipped.writestr(info, link or "evil")
    with pytest.raises(DataError, match=r"refusing to extract .*outside the destination"):
        extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    # Neither dest nor the staging folder, nor the folder extract created for them.
    assert not (tmp_path / "out").exists()


def test_extract_without_a_top_folder_and_into_a_non_empty_folder(tmp_path: Path) -> None:
    archive = tmp_path / "flat.zip"
    archive.write_bytes(zip_bytes({"trainA/1.png": b"x", "trainB/1.png": b"y",
                                   "__MACOSX/._1": b""}))
    assert extract(archive, tmp_path / "flat") == tmp_path / "flat"
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["trainA", "trainB"]
    with pytest.raises(DataError, match="exists and is not empty"):
        extract(archive, tmp_path / "flat")
    (tmp_path / "junk").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract(tmp_path / "junk", tmp_path / "junk_out")


def test_cli_download_reports_where_and_warns_when_unverified(server: Server, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    server.body = _tar_gz(FACADES)
    entry = _entry(server, server.body, sha256=None, size_bytes=None)
    monkeypatch.setattr(catalog, "CATALOG", (entry,))
    args = ["download", "facades", "--dir", str(tmp_path)]
    result = CliRunner().invoke(data, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "the catalog has no checksum for facades" in result.output
    assert f"sha256 {hashlib.sha256(server.body).hexdigest()}" in result.output
    assert f"facades is in {tmp_path / 'facades'}/" in result.output
    again = CliRunner().invoke(data, args, catch_exceptions=False)
    assert "already holds files: nothing downloaded" in again.output
