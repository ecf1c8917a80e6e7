"""Logging set-up in the Prometheus style: logfmt or JSON lines on stderr, configured once.

Modules log a plain message and put the context in ``extra={...}``; those keys become fields.
"""

from __future__ import annotations

import json
import logging
import sys

from exporter.timeutil import format_unix

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": format_unix(record.created, fraction="ms"),
        "level": "warn" if record.levelno == logging.WARNING else record.levelname.lower(),
        "caller": f"{record.module}.py:{record.lineno}",
    }
    fields.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["err"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_quote(str(value))}" for key, value in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t\\'):
        return value
    return json.dumps(value)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # urllib3 logs each retry with the URL, httpx and the SDK every request or retry at INFO;
    # our own messages say what failed, and a line per request would drown them.
    for noisy in ("urllib3", "httpx", "httpx2", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING if noisy != "urllib3" else logging.ERROR)
