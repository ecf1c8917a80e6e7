"""The top-level ``model`` and ``stream`` of a JSON request body, from its first 4 KiB only."""

from __future__ import annotations

import json
import re

# How much of a request body is searched for "model" (and "stream"). Bodies can be megabytes;
# the search must not grow with them (4 KiB cost at most ~40 µs). The SDK writes "model" after
# "messages", so SDK clients get the model from a hint instead (see instrument.py).
BODY_SCAN_LIMIT = 4096

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
