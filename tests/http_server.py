"""A local HTTP server on 127.0.0.1 for download tests: answers ``Range`` requests like real
servers (206, 416), can ignore them, drop the connection once, and serve several paths.

Tests wrap :func:`serve` in a fixture::

    @pytest.fixture
    def server() -> Iterator[Server]:
        with serve() as state:
            yield state
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Server", "serve"]


@dataclasses.dataclass
class Server:
    """What the handler serves and what it saw.

    ``body`` is served at every path not in ``files``; ``url`` is ``<root>/archive``.
    """

    url: str = ""
    body: bytes = b""
    honour_range: bool = True
    cut_after: int | None = None  # close the connection after this many bytes, once
    ranges: list[str | None] = dataclasses.field(default_factory=list)
    root: str = ""  # http://127.0.0.1:<port>
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # path -> body
    paths: list[str] = dataclasses.field(default_factory=list)  # the paths asked for


class _Handler(BaseHTTPRequestHandler):
    # SimpleHTTPRequestHandler ignores Range; this one answers 206 and 416 like real servers.
    def do_GET(self) -> None:
        state: Server = self.server.state  # type: ignore[attr-defined]
        asked = self.headers.get("Range")
        state.ranges.append(asked)
        state.paths.append(self.path)
        body, start = state.files.get(self.path, state.body), 0
        if asked and state.honour_range:
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.cut_after is not None:
            payload, state.cut_after = payload[:state.cut_after], None
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve() -> Iterator[Server]:
    """Run a server on a free port of 127.0.0.1 until the block ends; yield its state."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    root = f"http://127.0.0.1:{httpd.server_port}"
    httpd.state = Server(url=f"{root}/archive", root=root)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
