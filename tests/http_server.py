"""A tiny HTTP file server on 127.0.0.1 for download tests: byte ranges, errors and dropped connections on demand.

with FileServer() as server:
    server.serve("/a/file.bin", data, cut_after=1000)   # first response closes after 1000 body bytes
    urllib.request.urlopen(server.url("/a/file.bin"))
    server.requests                                     # [Request(path="/a/file.bin", range=None), ...]
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes
    status: int = 200  # 404, 500, ...: answer every request with this status and a short text body
    cut_after: int | None = None  # close the connection after this many body bytes (Content-Length stays full)
    cuts: int = 1  # how many responses, from the first, are cut
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None  # the Range header as sent, e.g. "bytes=1000-"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep stderr clean: tests read it for progress bars
        pass

    def do_GET(self):
        files = self.server.files
        range_header = self.headers.get("Range")
        with files.lock:
            files.requests.append(Request(self.path, range_header))
            route = files.routes.get(self.path)
            cut = None
            if route is not None and route.cut_after is not None and route.cuts > 0:
                route.cuts -= 1
                cut = route.cut_after
        if route is None or route.status != 200:
            status = 404 if route is None else route.status
            self.send_error(status)
            return
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not route.ignore_range:
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
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "none" if route.ignore_range else "bytes")
        self.end_headers()
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: FileServer


class FileServer:
    """Serves `routes` (URL path -> Route) on an ephemeral 127.0.0.1 port and records every request it receives."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.files = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT, e.g. for DRA_MIRROR."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: bytes = b"", **options) -> Route:
        """Serve `body` at `path`; options are Route's fields (status, cut_after, cuts, ignore_range)."""
        route = self.routes[path] = Route(body, **options)
        return route

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
