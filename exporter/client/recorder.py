"""Per-attempt bookkeeping shared by the sync and async transports: what one HTTP attempt records.

The transports (``transport.py``) only move bytes; everything they learn goes through an
:class:`Attempt`:

    attempt = recorder.start(request)        # None if even that failed: then pass through
    attempt.no_response(exc)                 # no response (connection error, timeout)
    attempt.response(response)               # status and headers arrived
    attempt.feed(chunk)                      # each body chunk as received, before the caller gets it
    attempt.content(body)                    # or: the whole body, already read and decoded
    attempt.stream_failed(exc)               # the body broke off
    attempt.finish()                         # end of body or close; idempotent
    attempt.abandoned()                      # from a finalizer: recorded on the recorder's next call

Every method catches its own failures, counts them in
``anthropic_client_instrumentation_errors_total{stage}`` and logs the first of each stage, so
a bug here never reaches the caller.

Finalizers (``__del__``, and a generator's ``finally`` run by the garbage collector) can run
in any thread at any allocation, even one that holds a lock recording needs (a metric's, the
request log's). So nothing runs there but a put on a lock-free queue: an attempt dropped
unclosed, or closed during a garbage collection, is recorded at the start of the recorder's
next call (the next request) or at :meth:`Recorder.close`, as ending at its last activity.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.client.metrics import ClientMetrics, client_metrics
from exporter.client.request_log import RequestLog, RequestLogClosed, RequestRow

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

# How much of a request body is searched for "model" (and "stream"). Bodies can be megabytes;
# the search must not grow with them (4 KiB cost at most ~40 µs). The SDK writes "model" after
# "messages", so SDK clients get the model from the hint below instead (see instrument.py).
BODY_SCAN_LIMIT = 4096
# Response bodies kept to read usage (non-streaming Messages) or error.type (non-2xx).
USAGE_BODY_LIMIT = 32 * 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024
# An SSE line longer than this is not kept (the events that matter are small).
SSE_LINE_LIMIT = 1024 * 1024
MAX_LABEL_LENGTH = 128
# Compressed bodies are inflated at most this much per step, so one small chunk that inflates
# hugely never becomes one huge allocation.
DECODE_STEP = 64 * 1024
# Content-encodings the recorder inflates itself (zlib: wbits=47 takes a gzip or zlib header).
ZLIB_ENCODINGS = frozenset(("gzip", "x-gzip", "deflate"))

# The API's error.type for a status, used only when the error body was never read (the SDK
# closes a streamed error response unread before it retries). From the API's errors page.
ERROR_TYPE_BY_STATUS: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# (model, stream) of the request about to be sent, set by the SDK middleware around one
# attempt. Read by the transport in the same thread / task.
request_hint: ContextVar[tuple[str | None, bool | None] | None] = ContextVar(
    "anthropic_client_request_hint", default=None
)


def operation_for_path(path: str) -> str:
    """``operation`` label from a URL path; a prefix before ``/v1/`` (a proxy's) is ignored."""
    i = path.find("/v1/")
    rest = path[i + 4 :].strip("/") if i >= 0 else path.strip("/")
    if rest == "messages":
        return "messages"
    if rest == "messages/count_tokens":
        return "count_tokens"
    if rest == "messages/batches" or rest.startswith("messages/batches/"):
        return "batches"
    if rest == "models" or rest.startswith("models/"):
        return "models"
    return "other"


# Possessive quantifiers: a string cut off by the limit fails in one pass, without backtracking.
_TOKEN = re.compile(rb'"([^"\\]*+(?:\\.[^"\\]*+)*+)"\s*(:)?|[\[{\]}]')
_STRING_VALUE = re.compile(rb'\s*"([^"\\]*+(?:\\.[^"\\]*+)*+)"')
_BOOL_VALUE = re.compile(rb"\s*(true|false)")


def scan_body(body: bytes) -> tuple[str | None, bool | None]:
    """The top-level ``"model"`` and ``"stream"`` of a JSON request body, from its first bytes.

    Only the first ``BODY_SCAN_LIMIT`` bytes are looked at, with nesting tracked, so a
    ``"model"`` inside a message or a tool schema is not taken. Missing, past the limit, or
    not JSON: ``None``. (Without ``"stream"`` the transport goes by the response's content type.)
    """
    prefix = body[:BODY_SCAN_LIMIT]
    if not prefix.lstrip().startswith(b"{"):
        return None, None
    model: str | None = None
    stream: bool | None = None
    depth = 0
    for m in _TOKEN.finditer(prefix):
        c = prefix[m.start()]
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            depth -= 1
            if depth <= 0:
                break
        elif depth == 1 and m.group(2):
            key = m.group(1)
            if key == b"model" and model is None:
                value = _STRING_VALUE.match(prefix, m.end())
                if value is not None:
                    model = json.loads(b'"' + value.group(1) + b'"')
            elif key == b"stream" and stream is None:
                flag = _BOOL_VALUE.match(prefix, m.end())
                if flag is not None:
                    stream = flag.group(1) == b"true"
            if model is not None and stream is not None:
                break
    return model, stream


class _GarbageCollection(threading.local):
    """Whether this thread is inside a garbage collection, so possibly inside a finalizer.

    A ``close()`` cannot tell whether its caller is the application or a finalizer (the 0.x
    SDK closes the response in its stream generator's ``finally``, which the collector runs);
    this tells it. Kept by a ``gc.callbacks`` hook, per thread: the collector runs finalizers
    in the thread that triggered it.
    """

    active = False


_in_gc = _GarbageCollection()


def _note_gc(phase: str, info: dict[str, int], state: _GarbageCollection = _in_gc) -> None:
    # (state bound as a default: callbacks can still run while module globals are torn down)
    state.active = phase == "start"


gc.callbacks.append(_note_gc)


def error_type_for_exception(exc: Exception) -> str:
    """``timeout`` or ``connection_error`` for an exception that replaced a response."""
    if isinstance(exc, TimeoutError) or any(cls.__name__ == "TimeoutException" for cls in type(exc).__mro__):
        return "timeout"  # httpx / httpx2 ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
    return "connection_error"


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return 0
    return int(value)


def token_figures(usage: Mapping[str, Any]) -> tuple[int, int, int, int, int, int]:
    """(uncached input, cache read, cache creation 5m, 1h, output, web searches) of a usage."""
    creation = usage.get("cache_creation")
    if isinstance(creation, Mapping) and (
        "ephemeral_5m_input_tokens" in creation or "ephemeral_1h_input_tokens" in creation
    ):
        c5m = _count(creation.get("ephemeral_5m_input_tokens"))
        c1h = _count(creation.get("ephemeral_1h_input_tokens"))
    else:
        c5m, c1h = _count(usage.get("cache_creation_input_tokens")), 0
    tools = usage.get("server_tool_use")
    web = _count(tools.get("web_search_requests")) if isinstance(tools, Mapping) else 0
    return (
        _count(usage.get("input_tokens")),
        _count(usage.get("cache_read_input_tokens")),
        c5m,
        c1h,
        _count(usage.get("output_tokens")),
        web,
    )


def overlay_usage(start: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``start`` with each non-null field of ``delta`` written over it; nested objects
    (``cache_creation``, ``server_tool_use``) field by field too.

    A ``message_delta`` may carry ``null`` (or omit) a figure it does not restate; that
    keeps ``message_start``'s value, as the SDK's own accumulator does.
    """
    merged = dict(start)
    for key, value in delta.items():
        if value is None:
            continue
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = overlay_usage(below, value)
        elif isinstance(value, Mapping):
            merged[key] = overlay_usage({}, value)
        else:
            merged[key] = value
    return merged


def _label(value: object) -> str:
    if not isinstance(value, str) or not value:
        return UNKNOWN
    return value[:MAX_LABEL_LENGTH]


class SSEParser:
    """Reads an Anthropic SSE stream chunk by chunk, keeping only what the metrics need.

    ``content_block_delta`` data is never stored or decoded: its event name is enough for the
    time to first token. ``message_start``, ``message_delta`` and ``error`` are decoded.
    """

    _SKIPPED = frozenset(
        (b"content_block_delta", b"content_block_start", b"content_block_stop", b"ping", b"message_stop")
    )

    def __init__(self, clock: Callable[[], float], on_error: Callable[[Exception], None]) -> None:
        self._clock = clock
        self._on_error = on_error
        self._partial: list[bytes] = []
        self._partial_len = 0
        self._event = b""
        self._data: list[bytes] = []
        self.start_usage: Mapping[str, Any] | None = None
        self.delta_usage: Mapping[str, Any] | None = None
        self.error_type: str | None = None
        self.first_delta_at: float | None = None

    @property
    def usage(self) -> dict[str, Any] | None:
        """``message_start``'s usage overlaid, field by field, by the last ``message_delta``'s."""
        if self.start_usage is None and self.delta_usage is None:
            return None
        return overlay_usage(self.start_usage or {}, self.delta_usage or {})

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines and (self._partial or self._partial_len < 0):
            if self._partial_len < 0:
                del lines[0]  # the rest of a line over the limit: dropped whole
            else:
                lines[0] = b"".join((*self._partial, lines[0]))
            self._partial, self._partial_len = [], 0
        for line in lines:
            self._line(line)
        if tail:
            self._hold(tail)

    def _hold(self, piece: bytes) -> None:
        if self._partial_len < 0:
            return
        self._partial.append(piece)
        self._partial_len += len(piece)
        if self._partial_len > SSE_LINE_LIMIT:
            self._partial, self._partial_len = [], -1

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            if self._event not in self._SKIPPED:
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            self._event = line[6:].strip()
        # comments (":...") and other fields are ignored, as SSE says

    def _dispatch(self) -> None:
        event, data = self._event, self._data
        self._event, self._data = b"", []
        if event == b"content_block_delta":
            if self.first_delta_at is None:
                self.first_delta_at = self._clock()
            return
        if not data or (event and event not in (b"message_start", b"message_delta", b"error")):
            return
        try:
            payload = json.loads(b"\n".join(data))
            if not isinstance(payload, dict):
                return
            kind = event.decode() if event else str(payload.get("type", ""))
            if kind == "content_block_delta":  # a stream without event: lines
                if self.first_delta_at is None:
                    self.first_delta_at = self._clock()
            elif kind == "message_start":
                message = payload.get("message")
                usage = message.get("usage") if isinstance(message, dict) else None
                if isinstance(usage, dict):
                    self.start_usage = usage
            elif kind == "message_delta":
                usage = payload.get("usage")
                if isinstance(usage, dict):
                    self.delta_usage = usage
            elif kind == "error":
                error = payload.get("error")
                error_type = error.get("type") if isinstance(error, dict) else None
                self.error_type = _label(error_type) if error_type else "api_error"
        except Exception as exc:  # a malformed event: skip it, keep reading the stream
            self._on_error(exc)


class Recorder:
    """Records HTTP attempts to the Anthropic API into metrics and, optionally, the request log.

    One recorder can serve any number of transports, sync and async. ``registry=None`` is
    prometheus_client's default ``REGISTRY``; ``request_log`` is a path or a
    :class:`RequestLog`; ``buckets`` replaces both histograms' default buckets. ``clock`` (a
    monotonic clock) and ``wall_clock`` (Unix time) can be replaced in tests.

    A response dropped without being closed or read to its end (an abandoned stream) is
    recorded when the recorder is next used, i.e. on the next request, or at :meth:`close`:
    the finalizer that notices it must not record (see the module docstring).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        request_log: RequestLog | str | os.PathLike[str] | None = None,
        buckets: list[float] | tuple[float, ...] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics: ClientMetrics = client_metrics(registry, buckets)
        self._owns_request_log = request_log is not None and not isinstance(request_log, RequestLog)
        if request_log is not None and not isinstance(request_log, RequestLog):
            request_log = RequestLog(request_log)
        self.request_log: RequestLog | None = request_log
        if request_log is not None:  # (the log warns about failed writes itself)
            request_log.add_write_error_listener(self.metrics.log_write_failed)
        self.clock = clock
        self.wall_clock = wall_clock
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()
        self._request_log_refused = False
        # Attempts handed over by finalizers; SimpleQueue.put is safe there (no Python lock).
        self.abandoned_attempts: queue.SimpleQueue[Attempt] = queue.SimpleQueue()

    def start(self, request: Any) -> Attempt | None:
        """Begin recording an attempt; ``None`` (record nothing) if that fails."""
        self.record_abandoned()
        try:
            return Attempt(self, request)
        except Exception as exc:
            self.failed("request", exc)
            return None

    def record_abandoned(self) -> None:
        """Record the attempts finalizers handed over, each as ending at its last activity."""
        if _in_gc.active:  # called from a finalizer after all (e.g. a client's __del__)
            return
        while not self.abandoned_attempts.empty():  # (the usual case, checked on every request)
            try:
                attempt = self.abandoned_attempts.get_nowait()
            except queue.Empty:  # another thread took it
                return
            attempt.finish(attempt.last_activity)

    def close(self) -> None:
        """Record abandoned attempts; close the request log if it was opened from a path here."""
        self.record_abandoned()
        if self._owns_request_log and self.request_log is not None:
            self.request_log.close()

    def request_log_refused(self) -> None:
        """Count a row the request log refused because it was closed (not a full queue)."""
        with contextlib.suppress(Exception):
            self.metrics.instrumentation_errors.labels("request_log_closed").inc()
        if not self._request_log_refused:
            self._request_log_refused = True
            log.debug("the request log is closed; rows of later attempts are not written")

    def failed(self, stage: str, exc: BaseException) -> None:
        """Count a recording failure; log the first of each stage with its traceback."""
        with contextlib.suppress(Exception):
            self.metrics.instrumentation_errors.labels(stage).inc()
        with self._warned_lock:
            first = stage not in self._warned
            self._warned.add(stage)
        if first:
            log.warning(
                "anthropic client instrumentation failed at stage %r; the request itself is "
                "unaffected (further failures at this stage are logged at DEBUG)",
                stage,
                exc_info=exc,
            )
        else:
            log.debug("anthropic client instrumentation failed at stage %r: %r", stage, exc)


class Attempt:
    """One HTTP attempt: what the request said, what came back, and when."""

    def __init__(self, recorder: Recorder, request: Any) -> None:
        self.recorder = recorder
        self._clock = recorder.clock
        self.started = self._clock()
        self.started_at = recorder.wall_clock()
        self.last_activity = self.started
        self._done = threading.Lock()
        self.finished = False  # read without the lock by finalizers (a hint, not a guarantee)
        self.operation = operation_for_path(request.url.path)
        hint = request_hint.get()
        model, stream = (None, None) if hint is None else hint
        if model is None:  # no hint, or a body without a model (batches): look at the body
            model, scanned_stream = self._scan(request)
            stream = scanned_stream if stream is None else stream
        self.model = _label(model)
        self.stream = stream
        headers = request.headers
        try:
            self.retry_count = max(0, int(headers.get("x-stainless-retry-count", 0)))
        except ValueError:
            self.retry_count = 0
        self.status_code = "none"
        self.error_type: str | None = None
        self.request_id: str | None = None
        self.workspace_id: str | None = None
        self._status = 0
        self._sse: SSEParser | None = None
        self._body: list[bytes] | None = None  # kept for usage or error.type
        self._body_len = 0
        self._body_limit = 0
        # The body is read while this is set: an SSE parser or a kept body wants it, and
        # its content-encoding can be undone.
        self._reading = False
        self._decoder: Any = None  # a zlib decompressor for gzip / deflate bodies
        self._undecodable: str | None = None  # a content-encoding we cannot undo (br, zstd)
        # The open attempts of the transport that sent it, while its body is open (see transport.py).
        self.open_in: set[Attempt] | None = None
        metrics = recorder.metrics
        self._in_flight = metrics.child(metrics.in_flight, self.operation)
        self._in_flight.inc()  # last: nothing below may fail once it is counted

    @staticmethod
    def _scan(request: Any) -> tuple[str | None, bool | None]:
        try:
            body = request.content  # raises if the body is a stream not yet sent: leave it
        except Exception:
            return None, None
        return scan_body(body) if body else (None, None)

    def response(self, response: Any) -> None:
        """The response's status and headers arrived."""
        try:
            self.last_activity = self._clock()
            status = int(response.status_code)
            self._status = status
            self.status_code = str(status)
            content_type = ""
            content_encoding = ""
            metrics = self.recorder.metrics
            headers = response.headers
            # one pass over the headers: a lookup by name scans them all, and there are 15
            for name, value in getattr(headers, "multi_items", headers.items)():
                if name.startswith("anthropic-ratelimit-"):
                    gauge = metrics.ratelimit_gauge(self.model, name)
                    if gauge is not None:
                        self._set_gauge(gauge, value)
                elif name == "request-id":
                    self.request_id = value
                elif name == "anthropic-workspace-id":
                    self.workspace_id = value
                elif name == "content-type":
                    content_type = value
                elif name == "content-encoding":
                    content_encoding = value
            if 200 <= status < 300:
                if content_type.startswith("text/event-stream"):
                    self._sse = SSEParser(self._clock, self._stream_event_failed)
                    if self.stream is None:
                        self.stream = True
                elif self.operation == "messages":
                    self._body, self._body_limit = [], USAGE_BODY_LIMIT
            elif status >= 400:
                self._body, self._body_limit = [], ERROR_BODY_LIMIT
            self._reading = self._sse is not None or self._body is not None
            if self._reading:
                self._set_decoder(content_encoding)
        except Exception as exc:
            self.recorder.failed("response", exc)

    def _set_decoder(self, content_encoding: str) -> None:
        """Prepare to undo the body's content-encoding: the transport sees the bytes as sent
        (httpx and httpx2 ask for gzip and deflate), the caller's library decodes them later."""
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return
        if len(codings) == 1 and codings[0] in ZLIB_ENCODINGS:
            self._decoder = zlib.decompressobj(wbits=47)
        else:
            self._undecodable = content_encoding

    def _set_gauge(self, gauge: tuple[Any, Callable[[str], float]], value: str) -> None:
        try:
            gauge[0].set(gauge[1](value))
        except ValueError as exc:  # one malformed header spoils only itself
            self.recorder.failed("response", exc)

    def feed(self, chunk: bytes) -> None:
        """One chunk of the response body as received (still encoded), before the caller gets it."""
        try:
            self.last_activity = self._clock()
            if not self._reading:
                return
            if self._undecodable is not None:
                self._stop_reading(ValueError(f"cannot decode content-encoding {self._undecodable!r}"))
            elif self._decoder is None:
                self._take(chunk)
            else:
                self._inflate(chunk)
        except Exception as exc:
            self.recorder.failed("stream", exc)

    def content(self, body: bytes) -> None:
        """The whole response body, already read and decoded by the HTTP library."""
        self._decoder = self._undecodable = None
        self.feed(body)

    def _inflate(self, chunk: bytes) -> None:
        """Inflate what arrived, step by step, for as long as the body is still wanted."""
        data = chunk
        while data and self._reading:
            try:
                piece = self._decoder.decompress(data, DECODE_STEP)
            except zlib.error as exc:
                self._stop_reading(exc)
                return
            self._take(piece)
            data = self._decoder.unconsumed_tail

    def _stop_reading(self, exc: Exception) -> None:
        """The body cannot be decoded: count it once; errors fall back to the status's type."""
        self._reading = False
        self._body = None  # (an SSE parser keeps what it saw before)
        self.recorder.failed("decode", exc)

    def _take(self, data: bytes) -> None:
        if self._sse is not None:
            self._sse.feed(data)
        elif self._body is not None:
            self._body_len += len(data)
            if self._body_len <= self._body_limit:
                self._body.append(data)
            else:  # too big to be what we look for
                self._body = None
                self._reading = False

    def _stream_event_failed(self, exc: Exception) -> None:
        self.recorder.failed("stream", exc)

    def no_response(self, exc: BaseException) -> None:
        """No response arrived: the transport raised ``exc`` (re-raised by the caller).

        A cancellation or interrupt (a ``BaseException`` that is not an ``Exception``) is the
        caller giving up, not an API error: its duration is recorded, no error is counted.
        """
        if isinstance(exc, Exception):
            self.error_type = error_type_for_exception(exc)
        self.finish()

    def stream_failed(self, exc: BaseException) -> None:
        """The response body broke off with ``exc`` (a cancellation counts no error, as above)."""
        if isinstance(exc, Exception):
            self.error_type = error_type_for_exception(exc)
        self.finish()

    def finish(self, end: float | None = None) -> None:
        """Record the attempt, once; ``end`` defaults to now.

        During a garbage collection (a ``close`` run by a finalizer) it is handed over like
        an abandoned attempt instead: this thread may hold a lock that recording needs.
        """
        if self.finished:
            return
        if _in_gc.active:
            self.abandoned()
            return
        if not self._done.acquire(blocking=False):
            return
        self.finished = True
        try:
            self._record(self._clock() if end is None else end)
        except Exception as exc:
            self.recorder.failed("record", exc)
        finally:
            try:
                self._in_flight.dec()
            except Exception as exc:
                self.recorder.failed("record", exc)
            if self.open_in is not None:
                self.open_in.discard(self)

    def abandoned(self) -> None:
        """The response was dropped unclosed; called from a finalizer.

        Takes no lock and creates nothing: it only queues the attempt, which the recorder
        records on its next call (the next request) or at close, ending at its last activity.
        """
        if not self.finished:
            self.recorder.abandoned_attempts.put(self)

    def _read_body(self) -> tuple[Mapping[str, Any] | None, str | None]:
        """(usage, error type) from the kept response body."""
        if self._sse is not None:
            return self._sse.usage, self._sse.error_type
        if self._status >= 400:
            error_type = ERROR_TYPE_BY_STATUS.get(self._status, UNKNOWN)
            if self._body:
                with contextlib.suppress(ValueError, AttributeError):
                    error = json.loads(b"".join(self._body)).get("error")
                    if isinstance(error, dict) and error.get("type"):
                        error_type = _label(error["type"])
            return None, error_type
        if self._body:
            with contextlib.suppress(ValueError, AttributeError):
                usage = json.loads(b"".join(self._body)).get("usage")
                if isinstance(usage, dict):
                    return usage, None
        return None, None

    def _record(self, end: float) -> None:
        recorder = self.recorder
        metrics = recorder.metrics
        child = metrics.child
        model, operation = self.model, self.operation
        usage, body_error = self._read_body()
        error_type = body_error or self.error_type
        stream = bool(self.stream)
        duration = max(0.0, end - self.started)
        ttft = None
        if self._sse is not None and self._sse.first_delta_at is not None:
            ttft = max(0.0, self._sse.first_delta_at - self.started)

        histogram = child(metrics.request_duration, model, operation, self.status_code, "true" if stream else "false")
        rid = self.request_id
        if rid and len(rid) <= 100:  # exemplar labels are limited to 128 characters in all
            histogram.observe(duration, exemplar={"request_id": rid})
        else:
            histogram.observe(duration)
        if ttft is not None:
            child(metrics.time_to_first_token, model, operation).observe(ttft)
        if error_type is not None:
            child(metrics.errors, model, operation, error_type).inc()
        if self.retry_count > 0:
            child(metrics.retries, model, operation).inc()

        tokens = (0, 0, 0, 0, 0, 0)
        service_tier = None
        if usage is not None and operation == "messages":
            tokens = token_figures(usage)
            service_tier = _label(usage.get("service_tier"))
            uncached, read, c5m, c1h, output, web = tokens
            child(metrics.uncached_input_tokens, model, service_tier).inc(uncached)
            child(metrics.cache_read_input_tokens, model, service_tier).inc(read)
            child(metrics.cache_creation_input_tokens, model, service_tier, "5m").inc(c5m)
            child(metrics.cache_creation_input_tokens, model, service_tier, "1h").inc(c1h)
            child(metrics.output_tokens, model, service_tier).inc(output)
            child(metrics.web_search_requests, model, service_tier).inc(web)

        request_log = recorder.request_log
        if request_log is None:
            return
        try:
            row = RequestRow(
                self.started_at,
                self.request_id,
                model,
                operation,
                stream,
                self.status_code,
                error_type,
                duration * 1000.0,
                None if ttft is None else ttft * 1000.0,
                *tokens,
                service_tier,
                self.retry_count,
                self.workspace_id,
            )
            if not request_log.submit(row):
                metrics.request_log_dropped.inc()  # the queue was full
        except RequestLogClosed:
            recorder.request_log_refused()
        except Exception as exc:
            recorder.failed("log", exc)
