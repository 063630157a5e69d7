"""A stand-in for cloud chat APIs, on a real socket: OpenAI's chat completions (streamed, with
usage) and model list, and Anthropic's Messages API (streamed events) and model list. It answers
with a fixed text, or with the failure queued for the next request: 401, 404, 429 with
Retry-After, 500, a 400 that repeats the key ("echo"), a stream cut in the middle, a slow first
byte, no usage figures, or words that drip slowly (to stop an answer halfway).

It listens on this machine's network address when it has one (not 127.0.0.1), so to Hearth it is
another host: words sent to it count as having left the machine, and offline mode must refuse it.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field

ANSWER = ["Paris", " is", " the", " capital", " of", " France", "."]


def network_address() -> str | None:
    """This machine's address on its network (not loopback), or None when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict


@dataclass
class CloudServer:
    host: str = "127.0.0.1"
    next: list[str] = field(default_factory=list)  # failures for the next requests, in order
    # Scripted answers for the next OpenAI-style requests, in order: each a list of `delta`
    # objects sent one event each (e.g. {"reasoning_content": "…"} or {"content": "<thi"}), then
    # the finish reason `finish`. An empty list of scripts answers with ANSWER.
    scripts: list[list[dict]] = field(default_factory=list)
    finish: str = "stop"
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    models: tuple[str, ...] = ("gpt-4o-mini", "stand-in-large")

    def __post_init__(self) -> None:
        self._server = http.server.ThreadingHTTPServer((self.host, 0), self._handler())
        self._server.daemon_threads = True
        outer = self
        base_verify = self._server.verify_request

        def count(request, client_address):
            outer.connections += 1
            return base_verify(request, client_address)

        self._server.verify_request = count
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> dict:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                return body

            def do_GET(self) -> None:
                self._record()
                if self._failed():
                    return
                if self.path.startswith("/v1/models"):
                    self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]})
                else:
                    self._json(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                self._record()
                if self._failed():
                    return
                route = self.path.split("?", 1)[0]  # the query (e.g. Azure's api-version) is the client's
                if route == "/v1/chat/completions":
                    self._openai_stream()
                elif route == "/v1/messages":
                    self._anthropic_stream()
                else:
                    self._json(404, {"error": {"message": "no such route"}})

            def _failed(self) -> bool:
                """Answer with the failure queued for this request, if any."""
                self.mode = outer.next.pop(0) if outer.next else ""
                kind, _, arg = self.mode.partition(":")
                self.delay = float(arg) if kind == "drip" else 0.0  # seconds between words
                if kind == "401":
                    self._json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}})
                elif kind == "404":
                    self._json(404, {"error": {"message": "The model does not exist.", "type": "not_found_error"}})
                elif kind == "429":
                    self._json(429, {"error": {"message": "Rate limit reached.", "type": "rate_limit_error"}},
                               {"Retry-After": arg or "1"})
                elif kind == "echo":  # a server that repeats the key it was given in its error
                    said = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    self._json(400, {"error": {"message": f"Deployment refused api_key={said} (key {said})."}})
                elif kind == "500":
                    self._json(500, {"error": {"message": "Internal error.", "type": "api_error"}})
                elif kind == "slow":
                    time.sleep(float(arg or 2))
                    return False
                else:
                    return False
                return True

            def _start_events(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

            def _event(self, data: dict, name: str | None = None) -> None:
                line = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                self.wfile.write(line.encode())
                self.wfile.flush()

            def _cut(self, sent: int) -> bool:
                if self.mode == "cut" and sent == 3:
                    self.close_connection = True
                    return True
                return False

            def _openai_stream(self) -> None:
                self._start_events()
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": "stand-in"}
                deltas = outer.scripts.pop(0) if outer.scripts else [{"content": word} for word in ANSWER]
                for i, delta in enumerate(deltas):
                    if self._cut(i):
                        return
                    time.sleep(self.delay if i else 0)
                    self._event(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}]))
                self._event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": outer.finish}]))
                if self.mode != "no-usage":
                    self._event(dict(base, choices=[], usage={"prompt_tokens": 21, "completion_tokens": len(ANSWER),
                                                              "total_tokens": 21 + len(ANSWER)}))
                self.wfile.write(b"data: [DONE]\n\n")

            def _anthropic_stream(self) -> None:
                self._start_events()
                self._event({"type": "message_start", "message": {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": "stand-in", "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 19, "output_tokens": 1}}}, "message_start")
                self._event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                            "content_block_start")
                for i, word in enumerate(ANSWER):
                    if self._cut(i):
                        return
                    self._event({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": word}}, "content_block_delta")
                self._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
                self._event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": len(ANSWER)}}, "message_delta")
                self._event({"type": "message_stop"}, "message_stop")

        return Handler
