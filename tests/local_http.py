"""A local HTTP server for tests: 127.0.0.1, random port, Range requests, scripted cuts, errors and stalls."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the first response dies
    cut_always: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before every response dies
    status: dict[str, int] = field(default_factory=dict)  # path -> an error status answered every time (e.g. 500)
    stall_s: dict[str, float] = field(default_factory=dict)  # path -> seconds the server waits after the headers
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


class RangeHandler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` support and scripted connection cuts (HTTP/1.0: one request per connection)."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        if self.path in state.status:
            self.send_error(state.status[self.path])
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
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
        if self.path in state.stall_s:
            self.wfile.flush()
            time.sleep(state.stall_s[self.path])
        cut = state.cut_always.get(self.path, state.cut_once.pop(self.path, None))
        try:
            self.wfile.write(payload if cut is None else payload[:cut])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
        self.close_connection = True


@contextlib.contextmanager
def serve() -> Iterator[tuple[str, ServerState]]:
    """Run a threaded server until the block ends; yields (base_url, state). It only ever binds 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
