"""An Anthropic SSE stream parsed chunk by chunk, keeping only what the metrics need."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from exporter.client.labels import label

# An SSE line longer than this is not kept (the events that matter are small).
SSE_LINE_LIMIT = 1024 * 1024


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
                self.error_type = label(error_type) if error_type else "api_error"
        except Exception as exc:  # a malformed event: skip it, keep reading the stream
            self._on_error(exc)
