"""Client middleware: Prometheus metrics (and a local request log) for ``anthropic`` SDK calls.

Usage::

    import anthropic
    from exporter.client import instrument

    client = instrument(anthropic.Anthropic())            # or anthropic.AsyncAnthropic()
    client = instrument(anthropic.Anthropic(), request_log="requests.sqlite3")
    client = instrument(anthropic.Anthropic(), log_sink=True)  # rows as JSON log lines

The application's own ``/metrics`` then carries ``anthropic_client_*`` (metrics.md section 2):
one observation per HTTP attempt, so the SDK's retries are seen, streams included.

How it attaches. ``instrument`` wraps, in place, the transport of the SDK client's HTTP client
and of each of its mounts (e.g. proxy routes) in an :class:`InstrumentedTransport` /
:class:`AsyncInstrumentedTransport`; nothing global is patched. This works alike for the 2.x
SDK (``httpx2``) and the 0.x SDK (``httpx``), since httpx2 keeps httpx's transport API, and it
sees every attempt, connection failures and timeouts included. The response's byte stream is
replaced by one that hands each chunk to the recorder on its way to the caller, so an SSE
stream is parsed incrementally as the caller reads it, never buffered whole or delayed, and
the caller's bytes are untouched. A gzip or deflate body (httpx asks for them) is inflated for
the recorder chunk by chunk; one it cannot decode (br, zstd) is counted in
``instrumentation_errors_total{stage="decode"}`` and its errors are typed by status. Because
the HTTP client is shared, copies of the client made with ``with_options`` are instrumented
too.

Abandoned streams. A stream dropped without being closed or read to its end is recorded (as
ending at its last byte) on the recorder's next request, when the client (its transport) is
closed, or at ``Recorder.close()``, not when it is garbage collected: finalizers run in
whatever thread happens to allocate, possibly one holding a lock that recording needs, so they
only queue the attempt. Until then it counts as in flight. A request cancelled by the caller
(``asyncio.CancelledError``, ``KeyboardInterrupt``) is recorded with its duration but counts
no error.

Estimated cost. When an attempt ends, the usage of a Messages response (final by then: a
stream's is read as it goes, priced once at its end, never per event) is priced with the
exporter's price table (``exporter.pricing``; ``instrument(..., prices=table)`` for one with
overrides or a discount) at the request's own prompt length, the response's
``usage.service_tier``, ``usage.inference_geo`` and ``usage.speed``, and the rates in force
when the request was sent. It goes to ``anthropic_client_estimated_cost_usd_total{model,
service_tier}`` and the request log's ``estimated_cost_usd``. A usage the table cannot price
(a model it does not know, a tier without a published price such as ``flex``) adds nothing to
the counter and leaves the log row's cost NULL, and is logged once per model and reason at
WARNING: never counted as $0.

The model label. For SDKs with ``middleware=`` (0.108 and later) ``instrument`` adds a tiny
middleware to the client itself (so the client passed in is the one returned, and copies made
from it later carry it): it hands the request's ``model`` to the transport (through a context
variable, in the same thread or task), because the SDK writes ``model`` after ``messages``,
possibly megabytes into the body. Without the hint (a ``with_options`` copy made before
``instrument``, an older SDK, a plain httpx client), ``model`` comes from a scan of the body's
first 4 KiB that tracks nesting (cost bounded whatever the body's size). It is ``unknown``
when the body is not JSON, is a stream, or names no top-level model within those 4 KiB; the
first Messages request recorded so is logged at WARNING.

Plain httpx / httpx2 clients: ``instrument(httpx.Client())`` works too, or compose the
wrapper yourself: ``httpx.Client(transport=InstrumentedTransport(httpx.HTTPTransport(),
Recorder(registry)))``. The SDK, httpx and httpx2 are imported only when present; importing
this package needs none of them.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, gunicorn and the like) works: the in-flight
gauge uses ``livesum`` (the sum over live processes; call ``mark_process_dead`` for exited
workers as usual), the rate-limit gauges ``mostrecent`` (the newest value written by any
process). Exemplars are not supported by prometheus_client in multiprocess mode: there the
duration histogram carries no ``request_id`` exemplar. The request log may be shared by all
the processes (one SQLite file in WAL mode), or go as JSON lines through ``logging``
(``log_sink``) to a fleet's log pipeline: see ``request_log.py``.

Instrumentation never changes what the caller gets: a failure inside recording is counted in
``anthropic_client_instrumentation_errors_total{stage}`` and logged once per stage.
"""

from exporter.client.instrument import instrument
from exporter.client.metrics import DEFAULT_BUCKETS, ClientMetrics, client_metrics
from exporter.client.recorder import Recorder
from exporter.client.request_log import RequestLog
from exporter.client.transport import AsyncInstrumentedTransport, InstrumentedTransport

__all__ = [
    "DEFAULT_BUCKETS",
    "AsyncInstrumentedTransport",
    "ClientMetrics",
    "InstrumentedTransport",
    "Recorder",
    "RequestLog",
    "client_metrics",
    "instrument",
]
