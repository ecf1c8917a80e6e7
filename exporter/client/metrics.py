"""The client middleware's metric objects (metrics.md section 2), created once per registry."""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from exporter.client.request_log import ERROR_REASONS, error_reason

# The OpenTelemetry GenAI boundaries, extended for long streams (metrics.md section 2).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
    163.84,
    327.68,
    655.36,
)

# Where recording can fail; every stage's counter exists at 0 from the start. "decode": a
# response body whose content-encoding could not be undone (e.g. br); "request_log_closed": a
# row refused because the request log was closed (not a full queue: that is request_log_dropped).
STAGES: tuple[str, ...] = (
    "request",
    "response",
    "stream",
    "decode",
    "record",
    "log",
    "log_write",
    "request_log_closed",
)

RATELIMIT_RESOURCES: tuple[str, ...] = ("requests", "tokens", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class ClientMetrics:
    """The metric objects of section 2, registered on one registry."""

    registry: CollectorRegistry
    buckets: tuple[float, ...]
    request_duration: Histogram
    time_to_first_token: Histogram
    uncached_input_tokens: Counter
    cache_read_input_tokens: Counter
    cache_creation_input_tokens: Counter
    output_tokens: Counter
    web_search_requests: Counter
    estimated_cost: Counter
    errors: Counter
    retries: Counter
    in_flight: Gauge
    ratelimit_limit: Gauge
    ratelimit_remaining: Gauge
    ratelimit_reset: Gauge
    instrumentation_errors: Counter
    request_log_dropped: Counter
    request_log_errors: Counter
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: ``labels()`` validates and locks every time,
        and an attempt needs a dozen of them. (So these metrics must not be ``clear()``-ed.)"""
        key = (metric, labels)
        try:
            return self._children[key]
        except KeyError:
            child = self._children[key] = metric.labels(*labels)
            return child

    def log_write_failed(self, exc: BaseException) -> None:
        """Listener for a RequestLog: count a batch of rows its writer could not write, by cause."""
        with contextlib.suppress(Exception):
            self.instrumentation_errors.labels("log_write").inc()
        with contextlib.suppress(Exception):
            self.request_log_errors.labels(error_reason(exc)).inc()

    def ratelimit_gauge(self, model: str, header: str) -> tuple[Any, Callable[[str], float]] | None:
        """The gauge a rate-limit response header sets for ``model`` and how to parse its value.

        Created only when a response carries that header: a resource the API does not report
        must not show as a limit of 0.
        """
        spec = _RATELIMIT_HEADERS.get(header)
        if spec is None:
            return None
        metric_name, resource, parse = spec
        return self.child(getattr(self, metric_name), model, resource), parse


@functools.lru_cache(maxsize=64)  # a reset time repeats on every response until it passes
def parse_rfc3339(value: str) -> float:
    """Unix timestamp of an RFC 3339 date-time (``Z`` or an offset)."""
    return datetime.fromisoformat(value.strip()).timestamp()


# anthropic-ratelimit-<resource>-{limit,remaining,reset} -> (ClientMetrics field, resource, parser)
_RATELIMIT_HEADERS: dict[str, tuple[str, str, Callable[[str], float]]] = {
    f"anthropic-ratelimit-{resource.replace('_', '-')}-{kind}": (f"ratelimit_{field_name}", resource, parse)
    for resource in RATELIMIT_RESOURCES
    for kind, field_name, parse in (("limit", "limit", float), ("remaining", "remaining", float),
                                    ("reset", "reset", parse_rfc3339))
}


_lock = threading.Lock()
# One ClientMetrics per registry, so instrumenting a second client into the same registry
# shares the metric objects instead of registering them twice. Weak keys: a test's throwaway
# registry (and its metrics) can be collected.
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ClientMetrics] = weakref.WeakKeyDictionary()


def client_metrics(registry: CollectorRegistry | None = None, buckets: Sequence[float] | None = None) -> ClientMetrics:
    """The metrics on ``registry`` (default: prometheus_client's ``REGISTRY``), created once.

    A later call for the same registry returns the same objects. Asking for other buckets than
    the ones the histograms were created with is an error, not silently ignored.
    """
    registry = REGISTRY if registry is None else registry
    wanted = tuple(float(b) for b in buckets) if buckets is not None else DEFAULT_BUCKETS
    with _lock:
        existing = _by_registry.get(registry)
        if existing is not None:
            if buckets is not None and wanted != existing.buckets:
                raise ValueError(
                    "the anthropic_client_* histograms are already registered on this registry "
                    f"with buckets {existing.buckets}; cannot use {wanted}"
                )
            return existing
        created = _create(registry, wanted)
        _by_registry[registry] = created
        return created


_STREAM_USAGE = " (a stream: message_start's usage overlaid by the last message_delta's)."


def _create(registry: CollectorRegistry, buckets: tuple[float, ...]) -> ClientMetrics:
    model_tier = ["model", "service_tier"]
    metrics = ClientMetrics(
        registry=registry,
        buckets=buckets,
        request_duration=Histogram(
            "anthropic_client_request_duration_seconds",
            "Duration of one HTTP attempt to the Anthropic API (POST /v1/messages, "
            "/v1/messages/count_tokens, /v1/messages/batches, /v1/models, ...), timed by the client "
            "middleware from sending the request to the end of the response body (a stream: its end "
            "or abandonment); status_code from the response's HTTP status. Exemplar: the response's "
            "request-id header.",
            ["model", "operation", "status_code", "stream"],
            buckets=buckets,
            registry=registry,
        ),
        time_to_first_token=Histogram(
            "anthropic_client_time_to_first_token_seconds",
            "Time from sending a streamed POST /v1/messages request to the first content_block_delta "
            "event of its response, timed by the client middleware.",
            ["model", "operation"],
            buckets=buckets,
            registry=registry,
        ),
        uncached_input_tokens=Counter(
            "anthropic_client_uncached_input_tokens",
            "Input tokens after the last cache breakpoint, from usage.input_tokens of POST "
            "/v1/messages responses" + _STREAM_USAGE,
            model_tier,
            registry=registry,
        ),
        cache_read_input_tokens=Counter(
            "anthropic_client_cache_read_input_tokens",
            "Input tokens read from the prompt cache, from usage.cache_read_input_tokens of POST "
            "/v1/messages responses" + _STREAM_USAGE,
            model_tier,
            registry=registry,
        ),
        cache_creation_input_tokens=Counter(
            "anthropic_client_cache_creation_input_tokens",
            "Input tokens written to the prompt cache, from "
            "usage.cache_creation.ephemeral_{5m,1h}_input_tokens of POST /v1/messages responses "
            "(a bare usage.cache_creation_input_tokens counts as 5m)" + _STREAM_USAGE,
            [*model_tier, "cache_ttl"],
            registry=registry,
        ),
        output_tokens=Counter(
            "anthropic_client_output_tokens",
            "Output tokens, from usage.output_tokens of POST /v1/messages responses" + _STREAM_USAGE,
            model_tier,
            registry=registry,
        ),
        web_search_requests=Counter(
            "anthropic_client_web_search_requests",
            "Server-side web searches, from usage.server_tool_use.web_search_requests of POST "
            "/v1/messages responses" + _STREAM_USAGE,
            model_tier,
            registry=registry,
        ),
        estimated_cost=Counter(
            "anthropic_client_estimated_cost_usd",
            "Estimated cost in US dollars of POST /v1/messages responses: each response's usage "
            "(usage.input_tokens, cache reads, cache writes by TTL, output_tokens, "
            "server_tool_use.web_search_requests) priced by the client middleware with the price "
            "table of the exporter's estimate (or the one passed to instrument), at the rates in force "
            "when the request was sent, at the request's own prompt-length band, usage.inference_geo "
            "and usage.speed. A response the table cannot price (unknown model, a tier without a "
            "published price) adds nothing" + _STREAM_USAGE,
            model_tier,
            registry=registry,
        ),
        errors=Counter(
            "anthropic_client_errors",
            "Failed HTTP attempts to the Anthropic API, by error.type of the error response's body "
            "(by its HTTP status when the body was not read), or of an error event inside a POST "
            "/v1/messages stream; connection_error or timeout when no response arrived.",
            ["model", "operation", "error_type"],
            registry=registry,
        ),
        retries=Counter(
            "anthropic_client_retries",
            "HTTP attempts to the Anthropic API that were SDK retries, from the request header "
            "x-stainless-retry-count (above 0).",
            ["model", "operation"],
            registry=registry,
        ),
        in_flight=Gauge(
            "anthropic_client_in_flight_requests",
            "HTTP attempts to the Anthropic API in progress, counted by the client middleware from "
            "sending the request to the end of the response body.",
            ["operation"],
            registry=registry,
            multiprocess_mode="livesum",
        ),
        ratelimit_limit=Gauge(
            "anthropic_client_ratelimit_limit",
            "From the anthropic-ratelimit-<resource>-limit header of the newest Anthropic API "
            "response (POST /v1/messages and others) for the model.",
            ["model", "resource"],
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        ratelimit_remaining=Gauge(
            "anthropic_client_ratelimit_remaining",
            "From the anthropic-ratelimit-<resource>-remaining header of the newest Anthropic API "
            "response (POST /v1/messages and others) for the model.",
            ["model", "resource"],
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        ratelimit_reset=Gauge(
            "anthropic_client_ratelimit_reset_timestamp_seconds",
            "From the anthropic-ratelimit-<resource>-reset header (RFC 3339) of the newest Anthropic "
            "API response (POST /v1/messages and others) for the model, as a Unix timestamp.",
            ["model", "resource"],
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        instrumentation_errors=Counter(
            "anthropic_client_instrumentation_errors",
            "Failures inside the client middleware's own recording, by stage (counted by the "
            "middleware, not read from the API); the API call itself is unaffected.",
            ["stage"],
            registry=registry,
        ),
        request_log_dropped=Counter(
            "anthropic_client_request_log_dropped",
            "Per-request log rows dropped because the log writer's queue was full (counted by the "
            "client middleware, not read from the API).",
            registry=registry,
        ),
        request_log_errors=Counter(
            "anthropic_client_request_log_errors",
            "Writes of the per-request log's SQLite file that failed (one per batch of rows, "
            "whose rows are lost), by cause from SQLite's result code: disk_full (SQLITE_FULL), "
            "locked (SQLITE_BUSY, SQLITE_LOCKED), io (SQLITE_IOERR), other (counted by the client "
            "middleware, not read from the API).",
            ["reason"],
            registry=registry,
        ),
    )
    for stage in STAGES:
        metrics.instrumentation_errors.labels(stage)
    for reason in ERROR_REASONS:
        metrics.request_log_errors.labels(reason)
    return metrics
