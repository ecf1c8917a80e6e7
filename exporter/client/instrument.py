"""``instrument(client)``: attach the recorder to an ``anthropic`` SDK client (or an httpx client)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from exporter.client.recorder import Recorder, request_hint
from exporter.client.request_log import RequestLog
from exporter.client.transport import AsyncInstrumentedTransport, InstrumentedTransport
from exporter.pricing import PriceTable

C = TypeVar("C")


class _ModelHint:
    """SDK middleware (innermost) that tells the transport the request's model and stream flag.

    The SDK serialises ``model`` after ``messages``, so it can sit megabytes into the body;
    here it is one dict lookup. Runs once per attempt, in the same thread as the transport.
    """

    def __call__(self, request: Any, call_next: Any) -> Any:
        token = request_hint.set(_hint_of(request))
        try:
            return call_next(request)
        finally:
            request_hint.reset(token)


class _AsyncModelHint:
    """The async twin of :class:`_ModelHint` (the same task runs the transport)."""

    async def __call__(self, request: Any, call_next: Any) -> Any:
        token = request_hint.set(_hint_of(request))
        try:
            return await call_next(request)
        finally:
            request_hint.reset(token)


def _hint_of(request: Any) -> tuple[str | None, bool | None]:
    try:
        body = request.options.json_data
        model = body.get("model") if isinstance(body, dict) else None
        return (model if isinstance(model, str) else None), bool(request.stream)
    except Exception:  # an SDK whose APIRequest looks different: the transport scans instead
        return None, None


def _is_http_client(obj: Any) -> bool:
    return hasattr(obj, "_transport") and hasattr(obj, "_mounts")


def _wrap_transports(http_client: Any, recorder: Recorder) -> bool:
    """Wrap ``http_client``'s transport and mounts in place; returns whether it is async."""
    is_async = hasattr(http_client, "aclose")
    wrapper = AsyncInstrumentedTransport if is_async else InstrumentedTransport

    def wrap(transport: Any) -> Any:
        if transport is None:  # a mount of None means "use the default transport"
            return None
        if isinstance(transport, (InstrumentedTransport, AsyncInstrumentedTransport)):
            transport = transport.transport  # instrumenting again replaces the recorder
        return wrapper(transport, recorder)

    http_client._transport = wrap(http_client._transport)
    http_client._mounts = {pattern: wrap(t) for pattern, t in http_client._mounts.items()}
    return is_async


def instrument(
    client: C,
    registry: CollectorRegistry | None = None,
    request_log: RequestLog | str | os.PathLike[str] | None = None,
    buckets: Sequence[float] | None = None,
    *,
    log_sink: bool | str | logging.Logger = False,
    prices: PriceTable | None = None,
) -> C:
    """Record every HTTP attempt of ``client`` into ``registry`` (and ``request_log``).

    ``client`` is an ``anthropic.Anthropic`` / ``AsyncAnthropic`` (either SDK line), or an
    ``httpx`` / ``httpx2`` ``Client`` / ``AsyncClient``. Its HTTP client's transports are
    wrapped in place, so copies made with ``with_options`` share the instrumentation. The SDK
    middleware that gives the transport the request's model (without searching the body) is
    added to the client itself too, so the client passed in is the one returned, and copies
    made from it later carry it. Only where the SDK does not allow that is a copy returned
    (``client.with_options(middleware=[...])``); a request that goes out without the model
    then is labelled ``unknown`` and logged once. Instrumenting a client again replaces its
    recorder.

    ``request_log``: a SQLite file (path) or a :class:`RequestLog`. ``log_sink``: also (or,
    without ``request_log``, only) send each row as a JSON object through ``logging``
    (``True``: the logger ``anthropic_usage_exporter.requests``; or a logger name or object).

    ``prices``: the price table that ``anthropic_client_estimated_cost_usd_total`` and the
    request log's ``estimated_cost_usd`` use (default: the table shipped with the exporter; for
    the exporter's configured overrides and discount, ``exporter.pricing.parse_pricing``).
    """
    recorder = Recorder(
        registry=registry,
        request_log=request_log,
        buckets=None if buckets is None else tuple(buckets),
        log_sink=log_sink,
        prices=prices,
    )
    if _is_http_client(client):
        _wrap_transports(client, recorder)
        return client
    http_client = getattr(client, "_client", None)
    if http_client is None or not _is_http_client(http_client):
        raise TypeError(
            f"instrument() expects an anthropic SDK client or an httpx/httpx2 client, not {type(client).__name__}"
        )
    is_async = _wrap_transports(http_client, recorder)
    middleware = getattr(client, "middleware", None)
    if middleware is None or not hasattr(client, "with_options"):
        return client  # an SDK before middleware (< 0.108): the transport scans the body
    hint_type = _AsyncModelHint if is_async else _ModelHint
    if any(isinstance(m, hint_type) for m in middleware) or _add_in_place(client, hint_type()):
        return client
    result: C = client.with_options(middleware=[*middleware, hint_type()])
    return result


def _add_in_place(client: Any, hint: Any) -> bool:
    """Append ``hint`` to the SDK client's own middleware, innermost; ``False`` if this SDK's
    client does not keep it the way 0.108 to 2.x do (a tuple, and a chain built from it)."""
    current = getattr(client, "_middleware", None)
    build = getattr(client, "_build_middleware_chain", None)
    if not isinstance(current, tuple) or not callable(build) or not hasattr(client, "_middleware_chain"):
        return False
    client._middleware = (*current, hint)
    try:
        client._middleware_chain = build()
    except Exception:
        client._middleware = current
        return False
    return True
