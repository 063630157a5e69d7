"""A stand-in for the Hugging Face hub's file endpoint on 127.0.0.1, for tests.

Serves real bytes at /{repo}/resolve/{revision}/{filename} with HEAD, GET, Range and If-Range, the
headers the hub sends (ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag) and faults switched on per
test: a dropped connection, 5xx answers, a stall, wrong bytes, 401/404, a Content-Range that is
not what was asked, a gzip body on a range, If-Range ignored; `replace()` changes a file as a
new upload to the hub would. Counts the bytes served and keeps each request's headers.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
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
    ignore_range: bool = False  # answer ranged GETs with the whole file, as some proxies do
    # The next N ranged answers (use a large N for "every one"):
    wrong_start: int = 0  # start RANGE_SKEW bytes before the byte asked for (and say so in Content-Range)
    wrong_total: int = 0  # say the file has RANGE_SKEW bytes more than it has in Content-Range
    gzip_range: int = 0  # gzip the body (Content-Encoding: gzip) whatever Accept-Encoding asked
    ignore_if_range: bool = False  # serve the range even when If-Range names another version
    plain: bool = False  # no X-Linked-* headers, as a plain web server or mirror: only the ETag names the version


RANGE_SKEW = 1000


@dataclass
class HubFile:
    path: Path
    size: int
    sha256: str
    etag: str


def start_download(remote, dest: Path) -> subprocess.Popen:
    """Run Hearth's downloader for `remote` in a child process, so a test can kill it halfway."""
    root = Path(__file__).resolve().parents[1]
    script = (f"import asyncio, sys; sys.path.insert(0, {str(root)!r})\n"
              "from desktop.core.downloads import RemoteFile, download\n"
              f"asyncio.run(download(RemoteFile(**{remote.__dict__!r}), __import__('pathlib').Path({str(dest)!r}),"
              " local_only=True))\n")
    return subprocess.Popen([sys.executable, "-c", script])


class Hub:
    def __init__(self) -> None:
        self.files: dict[str, HubFile] = {}
        self.repos: dict[str, dict] = {}
        self.faults = Faults()
        self.bytes_served = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, range header)
        self.headers: list[dict[str, str]] = []  # each request's headers, names in lower case
        self.revision = "0123456789abcdef0123456789abcdef01234567"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, filename: str, path: Path, **meta) -> str:
        """Serve `path` as `filename` in `repo`; meta: license, gated, downloads, likes."""
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                hasher.update(block)
        digest = hasher.hexdigest()
        self.files[f"/{repo}/resolve/main/{filename}"] = HubFile(path, path.stat().st_size, digest, f'"{digest}"')
        entry = self.repos.setdefault(repo, {"files": {}, "license": "apache-2.0", "gated": False,
                                             "downloads": 0, "likes": 0})
        entry.update(meta)
        entry["files"][filename] = self.files[f"/{repo}/resolve/main/{filename}"]
        return f"{self.url}/{repo}/resolve/main/{filename}"

    def replace(self, repo: str, filename: str, path: Path) -> HubFile:
        """A new upload of `filename`: from now on `path` is served, with its own sha256 and ETag."""
        old = self.files[f"/{repo}/resolve/main/{filename}"]
        self.add(repo, filename, path)
        new = self.files[f"/{repo}/resolve/main/{filename}"]
        assert new.etag != old.etag, "the replacement has the same bytes"
        return new

    def _repo_json(self, repo: str, with_files: bool) -> dict:
        entry = self.repos[repo]
        data = {"id": repo, "author": repo.split("/")[0], "sha": self.revision, "private": False,
                "gated": entry["gated"], "downloads": entry["downloads"], "likes": entry["likes"],
                "tags": ["gguf"], "lastModified": "2026-10-01T00:00:00.000Z",
                "cardData": {"license": entry["license"]}}
        if with_files:
            data["siblings"] = [{"rfilename": name, "size": f.size, "blobId": f.sha256[:40],
                                 "lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": 134}}
                                for name, f in entry["files"].items()] + [{"rfilename": "README.md", "size": 10}]
        return data

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

            def _headers_for(self, f: HubFile, status: int, start: int, end: int, length: int | None = None,
                             content_range: str = "", encoding: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(end - start if length is None else length))
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f.etag)
                if not hub.faults.plain:
                    self.send_header("X-Linked-Etag", f.etag)
                    self.send_header("X-Linked-Size", str(f.size))
                self.send_header("X-Repo-Commit", hub.revision)
                if status == 206:
                    self.send_header("Content-Range", content_range or f"bytes {start}-{end - 1}/{f.size}")
                self.end_headers()

            def _find(self) -> HubFile | None:
                path = urllib.parse.unquote(self.path.split("?")[0])
                # a file is found by branch name or by the commit it is at, as on the hub
                path = re.sub(r"/resolve/([^/]+)/", lambda m: "/resolve/main/" if m.group(1) in (
                    "main", hub.revision) else m.group(0), path, count=1)
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

            def _json(self, data, status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _api(self) -> None:
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/api/models":
                    words = query.get("search", [""])[0].lower()
                    found = [r for r in hub.repos if words in r.lower()]
                    key = query.get("sort", ["downloads"])[0]
                    found.sort(key=lambda r: hub.repos[r].get(key, 0), reverse=True)
                    limit = int(query.get("limit", ["50"])[0])
                    self._json([hub._repo_json(r, with_files=False) for r in found[:limit]])
                    return
                repo = url.path[len("/api/models/"):].split("/revision/")[0]
                if repo not in hub.repos:
                    self._json({"error": "Repository not found"}, 404)
                    return
                self._json(hub._repo_json(repo, with_files="blobs" in query))

            def do_GET(self) -> None:  # noqa: N802
                wanted = self.headers.get("Range", "")
                hub.requests.append(("GET", self.path, wanted))
                hub.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.startswith("/api/"):
                    self._api()
                    return
                if self.path == "/_stats":  # for benchmarks that run the hub in its own process
                    self._json({"bytes_served": hub.bytes_served})
                    return
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
                faults = hub.faults
                match = None if faults.ignore_range else re.match(r"bytes=(\d+)-(\d*)", wanted)
                if_range = self.headers.get("If-Range")
                if match and if_range is not None and if_range != f.etag and not faults.ignore_if_range:
                    match = None  # RFC 9110 §13.1.5: another version is asked about, so send it all
                content_range = ""
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2)) + 1, f.size) if match.group(2) else f.size
                    if start >= f.size:  # RFC 9110 §15.5.17: nothing of the file is at or after that byte
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{f.size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if faults.wrong_start:
                        faults.wrong_start -= 1
                        start = max(0, start - RANGE_SKEW)
                    if faults.wrong_total:
                        faults.wrong_total -= 1
                        content_range = f"bytes {start}-{end - 1}/{f.size + RANGE_SKEW}"
                    if faults.gzip_range:
                        faults.gzip_range -= 1
                        with open(f.path, "rb") as fh:
                            fh.seek(start)
                            body = gzip.compress(fh.read(end - start), compresslevel=1)
                        self._headers_for(f, 206, start, end, len(body), content_range, "gzip")
                        try:
                            self.wfile.write(body)
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client refused it, as it should
                        hub.bytes_served += len(body)
                        return
                self._headers_for(f, 206 if match else 200, start, end, content_range=content_range)
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


if __name__ == "__main__":
    # python -m tests.hub_server FILE: serve FILE as test/big/<name>, print its URL and sha256.
    served = Path(sys.argv[1])
    hub = Hub().start()
    url = hub.add("test/big", served.name, served)
    print(json.dumps({"url": url, "sha256": hub.files[urllib.parse.urlparse(url).path].sha256,
                      "size": served.stat().st_size, "stats": hub.url + "/_stats", "endpoint": hub.url}),
          flush=True)
    threading.Event().wait()
