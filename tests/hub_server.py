"""A stand-in for the Hugging Face hub's file endpoint on 127.0.0.1, for tests.

Serves real bytes at /{repo}/resolve/{revision}/{filename} with HEAD, GET and Range, the headers
the hub sends (ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag) and faults switched on per
test: a dropped connection, 5xx answers, a stall, wrong bytes, 401/404. Counts the bytes served.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 64 * 1024


@dataclass
class Faults:
    fail_next: list[int] = field(default_factory=list)  # statuses for the next GETs, in order
    drop_after: int | None = None  # close the connection after this many body bytes (once)
    stall_after: int | None = None  # stop sending after this many bytes, for stall_for seconds (once)
    stall_for: float = 0.0
    corrupt: bool = False  # serve different bytes than the hash says
    throttle: float = 0.0  # seconds to sleep per 64 KiB chunk
    status: int | None = None  # every request answers this (401, 403, 404)


@dataclass
class HubFile:
    path: Path
    size: int
    sha256: str
    etag: str


class Hub:
    def __init__(self) -> None:
        self.files: dict[str, HubFile] = {}
        self.faults = Faults()
        self.bytes_served = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, range header)
        self.revision = "0123456789abcdef0123456789abcdef01234567"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, filename: str, path: Path) -> str:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.files[f"/{repo}/resolve/main/{filename}"] = HubFile(path, path.stat().st_size, digest, f'"{digest}"')
        return f"{self.url}/{repo}/resolve/main/{filename}"

    def start(self) -> "Hub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _headers_for(self, f: HubFile, status: int, start: int, end: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f.etag)
                self.send_header("X-Linked-Etag", f.etag)
                self.send_header("X-Linked-Size", str(f.size))
                self.send_header("X-Repo-Commit", hub.revision)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
                self.end_headers()

            def _find(self) -> HubFile | None:
                path = self.path.split("?")[0]
                f = hub.files.get(path)
                status = hub.faults.status or (404 if f is None else None)
                if status:
                    body = b'{"error": "Repository not found or gated"}'
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(body)
                    return None
                return f

            def do_HEAD(self) -> None:  # noqa: N802
                hub.requests.append(("HEAD", self.path, ""))
                f = self._find()
                if f is not None:
                    self._headers_for(f, 200, 0, f.size)

            def do_GET(self) -> None:  # noqa: N802
                wanted = self.headers.get("Range", "")
                hub.requests.append(("GET", self.path, wanted))
                if hub.faults.fail_next:
                    status = hub.faults.fail_next.pop(0)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                f = self._find()
                if f is None:
                    return
                start, end = 0, f.size
                match = re.match(r"bytes=(\d+)-(\d*)", wanted)
                if match:
                    start = int(match.group(1))
                    end = int(match.group(2)) + 1 if match.group(2) else f.size
                self._headers_for(f, 206 if match else 200, start, end)
                faults = hub.faults
                with open(f.path, "rb") as fh:
                    fh.seek(start)
                    sent = 0
                    while start + sent < end:
                        chunk = fh.read(min(CHUNK, end - start - sent))
                        if faults.corrupt:
                            chunk = bytes(255 - b for b in chunk[:16]) + chunk[16:]
                        if faults.drop_after is not None and sent + len(chunk) > faults.drop_after:
                            faults.drop_after = None
                            self.close_connection = True
                            return
                        if faults.stall_after is not None and sent >= faults.stall_after:
                            faults.stall_after = None
                            time.sleep(faults.stall_for)
                            self.close_connection = True
                            return
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        sent += len(chunk)
                        hub.bytes_served += len(chunk)
                        if faults.throttle:
                            time.sleep(faults.throttle)

        return Handler
