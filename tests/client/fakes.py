"""Test doubles for the client middleware tests: a scriptable fake Messages API and its frames,
and the arguments of small Messages requests."""

from __future__ import annotations

import collections
import gc
import json
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The HTTP library of the installed SDK line: httpx2 for anthropic>=1.0, httpx for 0.x.
try:
    import anthropic

    SDK_MAJOR = int(anthropic.__version__.split(".")[0])
except ImportError:  # pragma: no cover - the test extra installs it
    SDK_MAJOR = -1
SDK_HTTP = "httpx2" if SDK_MAJOR >= 1 else "httpx"

# What the fake API's default Messages reply bills (and streams).
FAKE_USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 2,
    "cache_creation_input_tokens": 7,
    "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
    "output_tokens": 5,
    "server_tool_use": {"web_search_requests": 1},
    "service_tier": "standard",
}
RATELIMIT_RESET = "2030-01-01T00:00:00Z"


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def fake_stream_frames(model: str, *, fail: bool = False) -> list[bytes]:
    """A streamed reply billing FAKE_USAGE, with a ping and two cumulative message_deltas."""
    start_usage = {k: v for k, v in FAKE_USAGE.items() if k != "server_tool_use"}
    start_usage["output_tokens"] = 1
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    frames = [
        sse("message_start", {"type": "message_start", "message": message}),
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        sse("ping", {"type": "ping"}),
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        ),
    ]
    if fail:
        return [
            *frames,
            sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]
    return [
        *frames,
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}},
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 2}}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "output_tokens": FAKE_USAGE["output_tokens"],
                    "input_tokens": FAKE_USAGE["input_tokens"],
                    "server_tool_use": {"web_search_requests": 1},
                },
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def compressed_frames(frames: list[bytes], encoding: str = "gzip") -> list[bytes]:
    """``frames`` gzip- (or zlib-, for ``deflate``) compressed as one body, one flushed piece
    per frame, as a compressing server streams them: each piece decodes as it arrives."""
    compressor = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    pieces = [compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH) for frame in frames]
    pieces[-1] += compressor.flush()
    return pieces


class Reply:
    """A scripted answer: status, headers, body frames (sent as chunks), pauses, an abort."""

    def __init__(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        frames: list[bytes] | None = None,
        *,
        delay: float = 0.0,
        frame_delay: float = 0.0,
        abort_after: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self.frames = frames or []
        self.delay = delay  # before the status line
        self.frame_delay = frame_delay  # before each frame
        self.abort_after = abort_after  # drop the connection after this many frames

    @classmethod
    def json(cls, status: int, body: Any, **kwargs: Any) -> Reply:
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return cls(status, headers, [json.dumps(body).encode()], **kwargs)

    @classmethod
    def error(cls, status: int, error_type: str, **kwargs: Any) -> Reply:
        body = {"type": "error", "error": {"type": error_type, "message": error_type}}
        return cls.json(status, body, **kwargs)


class FakeAPI:
    """A small threaded HTTP/1.1 server that answers like the Messages API, or as scripted.

    ``script(reply, ...)`` queues answers for the next requests; otherwise POST /v1/messages
    gets a message (streamed when the body says ``"stream": true``) billing FAKE_USAGE, and
    count_tokens gets ``{"input_tokens": 42}``. Bodies go out chunked, frame by frame.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._count = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            def do_POST(self) -> None:
                fake._handle(self)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self) -> FakeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _default(self, path: str, body: bytes) -> Reply:
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        model = request.get("model", "claude-fake") if isinstance(request, dict) else "x"
        if path.endswith("/count_tokens"):
            return Reply.json(200, {"input_tokens": 42})
        if not path.endswith("/v1/messages"):
            return Reply.json(200, {"data": [], "has_more": False})
        if isinstance(request, dict) and request.get("stream"):
            return Reply(200, {"content-type": "text/event-stream"}, fake_stream_frames(model))
        return Reply.json(
            200,
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "Hello world"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": FAKE_USAGE,
            },
        )

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self._count += 1
            request_id = f"req_fake_{self._count:04d}"
            self.requests.append((handler.path, dict(handler.headers.items()), body))
            reply = self._script.popleft() if self._script else None
        if reply is None:
            reply = self._default(handler.path.split("?")[0], body)
        if reply.delay:
            time.sleep(reply.delay)
        handler.send_response(reply.status)
        headers = {
            "request-id": request_id,
            "anthropic-workspace-id": "wrkspc_fake",
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": RATELIMIT_RESET,
            "anthropic-ratelimit-input-tokens-limit": "30000",
            "anthropic-ratelimit-input-tokens-remaining": "29000",
            "anthropic-ratelimit-input-tokens-reset": RATELIMIT_RESET,
            **reply.headers,
        }
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        try:
            for i, frame in enumerate(reply.frames):
                if reply.abort_after is not None and i >= reply.abort_after:
                    handler.wfile.flush()
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    handler.close_connection = True
                    return
                if reply.frame_delay:
                    time.sleep(reply.frame_delay)
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:  # the client went away (closed a stream early)
            handler.close_connection = True


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop kept-alive connections are part of the tests; other errors are not.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def collect_garbage_holding(lock: Any) -> None:
    """Run a garbage collection in another thread while it holds ``lock``; fail if that deadlocks
    (a finalizer that records would need the same lock)."""

    def collect_inside() -> None:
        with lock:
            gc.collect()

    thread = threading.Thread(target=collect_inside, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "deadlocked: a finalizer recorded under the log's lock"


def ask(text: str, *, cache_ttl: str | None = None, search: bool = False, geo: str | None = None) -> dict[str, Any]:
    """Arguments of a small Messages request; optionally a cached system prompt, web search or a geo."""
    args: dict[str, Any] = {"max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    if cache_ttl is not None:
        control = {"type": "ephemeral"} if cache_ttl == "5m" else {"type": "ephemeral", "ttl": "1h"}
        args["system"] = [{"type": "text", "text": "You are terse. " * 50, "cache_control": control}]
    if search:
        args["tools"] = [{"type": "web_search_20250305", "name": "web_search"}]
    if geo is not None:
        args["extra_body"] = {"inference_geo": geo}
    return args
