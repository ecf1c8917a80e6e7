"""Sync and async transport wrappers for httpx / httpx2: thin I/O shells around a Recorder.

Compose one around the transport a client would use, for example::

    transport = InstrumentedTransport(httpx.HTTPTransport(), Recorder(registry))
    client = httpx.Client(transport=transport)

The wrapper passes the request through unchanged, then replaces the response's byte stream by
one that hands each chunk to the recorder before the caller gets it (nothing is buffered or
delayed), and records when the body ends or is closed. A body dropped unclosed is only queued
by its ``__del__`` and recorded on the recorder's next call (see recorder.py). Closing the
transport (``close`` or leaving ``with``) records those, and ends the bodies still open: their
connections close with it.

Neither httpx nor httpx2 is imported here: the stream classes are derived from whichever
library built the response, because clients assert that a transport's stream is their own
``SyncByteStream`` / ``AsyncByteStream``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from exporter.client.recorder import Attempt, Recorder


class _SyncBody:
    """The response body as the caller reads it, seen by an Attempt on the way."""

    def __init__(self, inner: Any, attempt: Attempt) -> None:
        self._inner = inner
        self._attempt = attempt

    def __iter__(self) -> Iterator[bytes]:
        attempt = self._attempt
        try:
            for chunk in self._inner:
                attempt.feed(chunk)
                yield chunk
        except GeneratorExit:  # the caller stopped reading: close() or abandonment records
            raise
        except BaseException as exc:
            attempt.stream_failed(exc)
            raise
        attempt.finish()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._attempt.finish()

    def __del__(self) -> None:
        self._attempt.abandoned()  # no lock, no recording here: it may run in any thread


class _AsyncBody:
    """The async twin of :class:`_SyncBody`."""

    def __init__(self, inner: Any, attempt: Attempt) -> None:
        self._inner = inner
        self._attempt = attempt

    async def __aiter__(self) -> AsyncIterator[bytes]:
        attempt = self._attempt
        try:
            async for chunk in self._inner:
                attempt.feed(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            attempt.stream_failed(exc)
            raise
        attempt.finish()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._attempt.finish()

    def __del__(self) -> None:
        self._attempt.abandoned()  # no lock, no recording here: it may run in any thread


@functools.cache
def _body_classes(library: str) -> tuple[type[_SyncBody], type[_AsyncBody]]:
    """Body stream classes that ``library`` (``httpx`` or ``httpx2``) accepts as its own."""
    try:
        module = importlib.import_module(library)
        sync_base: type = module.SyncByteStream
        async_base: type = module.AsyncByteStream
    except (ImportError, AttributeError):  # some other httpx-like library: duck typing only
        sync_base = async_base = object
    sync_cls = type("InstrumentedSyncByteStream", (_SyncBody, sync_base), {})
    async_cls = type("InstrumentedAsyncByteStream", (_AsyncBody, async_base), {})
    return sync_cls, async_cls


def _observe_response(attempt: Attempt, response: Any, is_async: bool, open_attempts: set[Attempt]) -> Any:
    """Let ``attempt`` see the response and its body; returns the response (same object).

    While the body is open the attempt is in ``open_attempts`` (it leaves it when it finishes).
    """
    attempt.response(response)
    try:
        if response.is_closed:  # read already (e.g. a MockTransport response built from bytes)
            with contextlib.suppress(Exception):
                attempt.content(response.content)  # (decoded by the library already)
            attempt.finish()
            return response
        library = type(response).__module__.partition(".")[0]
        sync_cls, async_cls = _body_classes(library)
        response.stream = (async_cls if is_async else sync_cls)(response.stream, attempt)
        attempt.open_in = open_attempts
        open_attempts.add(attempt)
    except Exception as exc:  # leave the response as it was; record what we have
        attempt.recorder.failed("response", exc)
        attempt.finish()
    return response


def _end_attempts(recorder: Recorder, open_attempts: set[Attempt]) -> None:
    """The transport is closing, and its connections with it: record what was dropped (as
    ending at its last activity), then end the bodies still open, whose connections go now
    (else they would count as in flight for ever, unless read again)."""
    recorder.record_abandoned()
    for attempt in open_attempts.copy():  # (copy: atomic, and finish() removes them)
        attempt.finish()


class InstrumentedTransport:
    """A sync transport (httpx or httpx2) that records every request it sends."""

    def __init__(self, transport: Any, recorder: Recorder | None = None) -> None:
        self.transport = transport
        self.recorder = recorder if recorder is not None else Recorder()
        self._open_attempts: set[Attempt] = set()

    def handle_request(self, request: Any) -> Any:
        attempt = self.recorder.start(request)
        if attempt is None:
            return self.transport.handle_request(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            attempt.no_response(exc)
            raise
        return _observe_response(attempt, response, False, self._open_attempts)

    def close(self) -> None:
        _end_attempts(self.recorder, self._open_attempts)
        self.transport.close()

    def __enter__(self) -> InstrumentedTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:  # (what httpx's Client.__exit__ calls, not close)
        _end_attempts(self.recorder, self._open_attempts)
        self.transport.__exit__(*exc_info)

    def __repr__(self) -> str:
        return f"InstrumentedTransport({self.transport!r})"


class AsyncInstrumentedTransport:
    """An async transport (httpx or httpx2) that records every request it sends."""

    def __init__(self, transport: Any, recorder: Recorder | None = None) -> None:
        self.transport = transport
        self.recorder = recorder if recorder is not None else Recorder()
        self._open_attempts: set[Attempt] = set()

    async def handle_async_request(self, request: Any) -> Any:
        attempt = self.recorder.start(request)
        if attempt is None:
            return await self.transport.handle_async_request(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            attempt.no_response(exc)
            raise
        return _observe_response(attempt, response, True, self._open_attempts)

    async def aclose(self) -> None:
        _end_attempts(self.recorder, self._open_attempts)
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncInstrumentedTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        _end_attempts(self.recorder, self._open_attempts)
        await self.transport.__aexit__(*exc_info)

    def __repr__(self) -> str:
        return f"AsyncInstrumentedTransport({self.transport!r})"
