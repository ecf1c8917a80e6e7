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

What the recording reads comes from modules of one purpose each: ``model_scan`` (the model of
a request body), ``sse`` (streamed events), ``decoding`` (gzip / deflate bodies), ``gc_guard``
(whether a garbage collection is running) and ``labels``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.client import gc_guard
from exporter.client.decoding import DECODE_ERRORS, DECODE_STEP, ZLIB_ENCODINGS, Decoder, decoder_for
from exporter.client.gc_guard import in_gc
from exporter.client.labels import MAX_LABEL_LENGTH, UNKNOWN, label
from exporter.client.metrics import ClientMetrics, client_metrics
from exporter.client.model_scan import BODY_SCAN_LIMIT, scan_body
from exporter.client.request_log import RequestLog, RequestLogClosed, RequestRow
from exporter.client.sse import SSE_LINE_LIMIT, SSEParser, overlay_usage
from exporter.pricing import PriceTable, Unpriced, default_table

# Names that moved to the modules above stay importable from here.
__all__ = [
    "BODY_SCAN_LIMIT",
    "DECODE_STEP",
    "ERROR_BODY_LIMIT",
    "ERROR_TYPE_BY_STATUS",
    "MAX_LABEL_LENGTH",
    "SSE_LINE_LIMIT",
    "UNKNOWN",
    "USAGE_BODY_LIMIT",
    "ZLIB_ENCODINGS",
    "Attempt",
    "Recorder",
    "SSEParser",
    "error_type_for_exception",
    "operation_for_path",
    "overlay_usage",
    "price_usage",
    "request_hint",
    "scan_body",
    "token_figures",
]

log = logging.getLogger(__name__)

# Response bodies kept to read usage (non-streaming Messages) or error.type (non-2xx).
USAGE_BODY_LIMIT = 32 * 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024
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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def price_usage(
    prices: PriceTable, model: str, usage: Mapping[str, Any], tokens: tuple[int, int, int, int, int, int], at: float
) -> Decimal | Unpriced:
    """One response's usage priced: at its own prompt length, ``inference_geo``, ``speed`` and tier.

    ``tokens`` are its :func:`token_figures`; ``at`` is when the request was sent (Unix time).
    A usage without ``service_tier``, ``inference_geo`` or ``speed`` is priced as the table
    prices a row without them (standard tier, no data-residency multiplier, standard speed).
    """
    uncached, read, c5m, c1h, output, web = tokens
    return prices.price(
        model,
        at=at,
        input=uncached,
        cache_read=read,
        cache_write_5m=c5m,
        cache_write_1h=c1h,
        output=output,
        web_searches=web,
        service_tier=_text(usage.get("service_tier")),
        inference_geo=_text(usage.get("inference_geo")),
        speed=_text(usage.get("speed")),
        prompt_tokens=uncached + read + c5m + c1h,
    )


# Distinct (model, reason) pairs whose missing price is logged at WARNING (later ones at DEBUG).
_UNPRICED_WARNINGS = 100


class Recorder:
    """Records HTTP attempts to the Anthropic API into metrics and, optionally, the request log.

    One recorder can serve any number of transports, sync and async. ``registry=None`` is
    prometheus_client's default ``REGISTRY``; ``request_log`` is a path or a
    :class:`RequestLog`; ``log_sink`` also (or, without ``request_log``, only) sends each row
    as one JSON object to a logger (``True``: ``anthropic_usage_exporter.requests``; a logger
    name or a ``logging.Logger``); ``buckets`` replaces both histograms' default buckets. ``prices`` is
    the price table each response's usage is priced with (default: the one shipped with the
    exporter, ``exporter.pricing.default_table()``; pass one with overrides or a discount, e.g.
    from ``exporter.pricing.parse_pricing``). ``clock`` (a monotonic clock) and ``wall_clock``
    (Unix time) can be replaced in tests.

    A response dropped without being closed or read to its end (an abandoned stream) is
    recorded when the recorder is next used, i.e. on the next request, when a transport using
    it is closed, or at :meth:`close`: the finalizer that notices it must not record (see the
    module docstring).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        request_log: RequestLog | str | os.PathLike[str] | None = None,
        buckets: list[float] | tuple[float, ...] | None = None,
        *,
        log_sink: bool | str | logging.Logger = False,
        prices: PriceTable | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(request_log, RequestLog) and log_sink is not False:
            raise ValueError("request_log is a RequestLog already: give it logger= rather than log_sink=")
        gc_guard.install()  # before any attempt can be closed by a finalizer
        self.metrics: ClientMetrics = client_metrics(registry, buckets)
        # Read here, not on the first response: parsing the table must not delay a request.
        self.prices: PriceTable = default_table() if prices is None else prices
        self._owns_request_log = False
        if isinstance(request_log, RequestLog):
            self.request_log: RequestLog | None = request_log
        elif request_log is not None or log_sink is not False:
            self.request_log = RequestLog(request_log, logger=log_sink)
            self._owns_request_log = True
        else:
            self.request_log = None
        if self.request_log is not None:  # (the log warns about failed writes itself)
            self.request_log.add_write_error_listener(self.metrics.log_write_failed)
        self.clock = clock
        self.wall_clock = wall_clock
        self._warned: set[str] = set()
        self._unpriced_warned: set[tuple[str, str]] = set()
        self._warned_lock = threading.Lock()
        self._request_log_refused = False
        self._unlabelled_warned = False
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
        if in_gc.active:  # called from a finalizer after all (e.g. a client's __del__)
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

    def unlabelled(self, operation: str) -> None:
        """A Messages request whose model the transport could not tell: say why, once."""
        with self._warned_lock:
            first = not self._unlabelled_warned
            self._unlabelled_warned = True
        if first:
            log.warning(
                "a %s request was recorded with model=%r: no model hint reached the transport "
                "(a client other than the one instrument() returned, e.g. a with_options copy "
                "made before instrument(), or an SDK without middleware) and the body names no "
                "model within its first %d bytes; its cost cannot be priced either "
                "(logged once)",
                operation,
                UNKNOWN,
                BODY_SCAN_LIMIT,
            )

    def unpriced(self, model: str, why: Unpriced) -> None:
        """A response whose usage the price table cannot price: log it, once per model and reason."""
        key = (model, why.reason)
        with self._warned_lock:  # (an unknown model was warned about as unlabelled already)
            known = len(self._unpriced_warned)
            first = model != UNKNOWN and key not in self._unpriced_warned and known < _UNPRICED_WARNINGS
            if first:
                self._unpriced_warned.add(key)
        if first:
            log.warning(
                "no price for a response of model %r (%s): its cost is left out of "
                "anthropic_client_estimated_cost_usd_total and its request-log row has no "
                "estimated_cost_usd (further ones are logged at DEBUG)",
                model,
                why.detail,
            )
        else:
            log.debug("no price for a response of model %r: %s", model, why.detail)

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
        self.model = label(model)
        self.stream = stream
        if model is None and self.operation in ("messages", "count_tokens"):
            recorder.unlabelled(self.operation)
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
        self._decoder: Decoder | None = None  # for a gzip / deflate / undecodable body
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
                self._decoder = decoder_for(content_encoding)
        except Exception as exc:
            self.recorder.failed("response", exc)

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
            if self._decoder is None:
                self._take(chunk)
            else:
                self._decode(self._decoder, chunk)
        except Exception as exc:
            self.recorder.failed("stream", exc)

    def content(self, body: bytes) -> None:
        """The whole response body, already read and decoded by the HTTP library."""
        self._decoder = None
        self.feed(body)

    def _decode(self, decoder: Decoder, chunk: bytes) -> None:
        """Take what arrived, decoded piece by piece, for as long as the body is still wanted."""
        pieces = decoder.pieces(chunk)
        while self._reading:
            try:
                piece = next(pieces, None)
            except DECODE_ERRORS as exc:
                self._stop_reading(exc)
                return
            if piece is None:
                return
            self._take(piece)

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
        if in_gc.active:
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
                        error_type = label(error["type"])
            return None, error_type
        if self._body:
            with contextlib.suppress(ValueError, AttributeError):
                usage = json.loads(b"".join(self._body)).get("usage")
                if isinstance(usage, dict):
                    return usage, None
        return None, None

    def _price(self, usage: Mapping[str, Any], tokens: tuple[int, int, int, int, int, int], tier: str) -> float | None:
        """Price the usage once, now that it is final; count it. ``None`` when it has no price."""
        recorder = self.recorder
        try:
            priced = price_usage(recorder.prices, self.model, usage, tokens, self.started_at)
            if isinstance(priced, Unpriced):
                recorder.unpriced(self.model, priced)
                return None
            cost = float(priced)
            metrics = recorder.metrics
            metrics.child(metrics.estimated_cost, self.model, tier).inc(cost)
            return cost
        except Exception as exc:  # the tokens are counted; the row is still written
            recorder.failed("record", exc)
            return None

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
        # The log row's cost: nothing billed is 0; None when billed but not priced (unknown).
        cost: float | None = 0.0
        if usage is not None and operation == "messages":
            tokens = token_figures(usage)
            service_tier = label(usage.get("service_tier"))
            uncached, read, c5m, c1h, output, web = tokens
            child(metrics.uncached_input_tokens, model, service_tier).inc(uncached)
            child(metrics.cache_read_input_tokens, model, service_tier).inc(read)
            child(metrics.cache_creation_input_tokens, model, service_tier, "5m").inc(c5m)
            child(metrics.cache_creation_input_tokens, model, service_tier, "1h").inc(c1h)
            child(metrics.output_tokens, model, service_tier).inc(output)
            child(metrics.web_search_requests, model, service_tier).inc(web)
            cost = self._price(usage, tokens, service_tier)
        elif operation == "messages" and 200 <= self._status < 300:
            cost = None  # a reply whose usage was never read (a stream cut before message_start)

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
                cost,
            )
            if not request_log.submit(row):
                metrics.request_log_dropped.inc()  # the queue was full
        except RequestLogClosed:
            recorder.request_log_refused()
        except Exception as exc:
            recorder.failed("log", exc)
