"""The simulator's HTTP server: Admin API reports, lists and rate limits, the Messages API, injected
faults."""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import json
import logging
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator import messages
from exporter.simulator.org import (
    BASE62,
    RATE_LIMIT_GROUP_TYPES,
    SPIKE_MODEL,
    USAGE_DIMENSIONS,
    SimulatedOrganization,
    Spike,
)
from exporter.timeutil import format_rfc3339

log = logging.getLogger(__name__)

ADMIN_KEY_PREFIX = "sk-ant-admin01-"
ADMIN_KEY = ADMIN_KEY_PREFIX + "SimulatorLocalDemoKey00000000000000000000000000000000000-AAAAAA"
API_VERSION = "2023-06-01"
# SDK 0.x sends 2023-06-01, SDK 2.x sends 2026-10-21 (anthropic-api.md §8).
MESSAGES_API_VERSIONS = ("2023-06-01", "2026-10-21")
FAST_MODE_BETA = "fast-mode-2026-02-01"
MAX_RECORDED_REQUESTS = 10_000
FAULTS = ("403", "429", "500", "529", "slow", "malformed_json", "truncated", "stream_error")
# The rate-limit entries' shapes: "current" has a `group` object; the older beta shape has not.
RATE_LIMIT_SHAPES = ("current", "beta")

USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
API_KEYS_PATH = "/v1/organizations/api_keys"
WORKSPACES_PATH = "/v1/organizations/workspaces"
ME_PATH = "/v1/organizations/me"
RATE_LIMITS_PATH = "/v1/organizations/rate_limits"
CLAUDE_CODE_PATH = "/v1/organizations/usage_report/claude_code"
# GET /v1/organizations/workspaces/{workspace_id}/rate_limits
_WORKSPACE_RATE_LIMITS = re.compile(r"^/v1/organizations/workspaces/([^/]+)/rate_limits$")
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
FAULTS_PATH = "/_simulator/faults"
SPIKES_PATH = "/_simulator/spikes"
COST_SKEW_PATH = "/_simulator/cost_skew"
SPIKE_FAULT = "spend_spike"  # POST /_simulator/faults with this fault injects a spike instead

_WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
# bucket_width -> (default limit, maximum limit)
_USAGE_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
_COST_LIMITS = {"1d": (7, 31)}
_SERVICE_TIERS = ("standard", "batch", "priority", "priority_on_demand", "flex", "flex_discount")
# Query parameter -> (usage dimension, allowed values or None for any).
_USAGE_FILTERS: dict[str, tuple[str, Sequence[str] | None]] = {
    "api_key_ids": ("api_key_id", None),
    "workspace_ids": ("workspace_id", None),
    "models": ("model", None),
    "service_tiers": ("service_tier", _SERVICE_TIERS),
    "context_window": ("context_window", ("0-200k", "200k-1M")),
    "inference_geos": ("inference_geo", ("global", "us", "not_available")),
    "speeds": ("speed", ("standard", "fast")),
    "account_ids": ("account_id", None),
    "service_account_ids": ("service_account_id", None),
}
# Dimensions every usage row carries, null unless grouped by. `speed` is returned only when
# grouped by (it needs the beta header); the docs no longer list it as a result field.
_USAGE_ROW_DIMENSIONS = (
    "api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo",
    "account_id", "service_account_id",
)
_COST_GROUPS = ("workspace_id", "description")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]  # parameter names as sent (percent-decoded), e.g. "group_by[]"
    status: int
    headers: dict[str, str]  # request headers, names lower-cased


class ApiError(Exception):
    """An error the simulated API answers with, in the API's error body."""

    def __init__(self, status: int, error_type: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # A text/event-stream body: (event name, frame bytes), written and flushed one by one.
    frames: list[tuple[str, bytes]] | None = None
    first_delta_delay: float = 0.0  # seconds before a stream's first content_block_delta
    truncate: bool = False  # cut the body off halfway and close the connection
    # Runs once the whole response is about to be delivered: records a served message before
    # its last bytes go out, so a client that then asks for the usage report already sees it.
    on_delivered: Callable[[], None] | None = None


@dataclass
class _Fault:
    path_prefix: str
    fault: str
    remaining: int
    retry_after: float | None = None
    delay: float = 1.0


# --- Reports (anthropic-api.md §2, §3) ---------------------------------------------------------


@dataclass(frozen=True)
class _Buckets:
    starts: list[datetime]
    width: timedelta
    next_start: datetime | None  # where the next page begins; None on the last page


def _plan_buckets(
    params: Mapping[str, list[str]], now: datetime, limits: Mapping[str, tuple[int, int]]
) -> _Buckets:
    """The buckets of one report page.

    `starting_at` is snapped down to its bucket's start. A bucket is emitted when it ends at or
    before `ending_at` (exclusive; default now), so `ending_at=now` drops the bucket still in
    progress and `ending_at` at the next boundary includes it, as anthropic-api.md §0
    describes. An `ending_at` in the future is accepted, but buckets that have not begun by now
    are not emitted: the last page ends with the current, partial bucket.
    """
    starting_text = _scalar(params, "starting_at")
    if starting_text is None:
        raise _invalid("starting_at: Field required")
    starting_at = _parse_time(starting_text, "starting_at")
    ending_text = _scalar(params, "ending_at")
    ending_at = now if ending_text is None else _parse_time(ending_text, "ending_at")
    if ending_at <= starting_at:
        raise _invalid("Invalid date range: ending date must be after starting date")
    width_name = _scalar(params, "bucket_width") or "1d"
    if width_name not in limits:
        raise _invalid(f"bucket_width: Input should be {_one_of(list(limits))}")
    default_limit, max_limit = limits[width_name]
    limit = _int_param(params, "limit", default_limit, 1, max_limit,
                       f" for bucket_width {width_name}")
    width = _WIDTHS[width_name]
    start = _snap(starting_at, width)
    page = _scalar(params, "page")
    if page:
        cursor = _decode_page(page)
        if cursor < start or cursor != _snap(cursor, width):
            raise _invalid("page: Invalid page token")
        start = cursor

    starts: list[datetime] = []
    while len(starts) < limit and start + width <= ending_at and start <= now:
        starts.append(start)
        start += width
    has_more = start + width <= ending_at and start <= now
    return _Buckets(starts, width, start if has_more else None)


def usage_report(
    org: SimulatedOrganization, params: Mapping[str, list[str]], betas: Sequence[str],
    now: datetime,
) -> dict[str, Any]:
    """The body of GET /v1/organizations/usage_report/messages."""
    group_by = list(dict.fromkeys(params.get("group_by", [])))
    for dimension in group_by:
        if dimension not in USAGE_DIMENSIONS:
            raise _invalid(f"group_by: Input should be {_one_of(USAGE_DIMENSIONS)}")
    if ("speed" in group_by or "speeds" in params) and FAST_MODE_BETA not in betas:
        raise _invalid(f"speed: requires the anthropic-beta header {FAST_MODE_BETA}")
    filters: dict[str, set[str]] = {}
    for name, (dimension, allowed) in _USAGE_FILTERS.items():
        values = params.get(name)
        if not values:
            continue
        for value in values:
            if allowed is not None and value not in allowed:
                raise _invalid(f"{name}: Input should be {_one_of(allowed)}")
        filters[dimension] = set(values)

    buckets = _plan_buckets(params, now, _USAGE_LIMITS)
    data = []
    for start in buckets.starts:
        totals = org.usage_totals(start, start + buckets.width, group_by, filters=filters, now=now)
        results = []
        for key in sorted(totals, key=_nulls_first):
            sums = totals[key]
            row: dict[str, Any] = {
                "uncached_input_tokens": sums["uncached_input_tokens"],
                "cache_creation": {
                    "ephemeral_1h_input_tokens": sums["cache_creation_1h"],
                    "ephemeral_5m_input_tokens": sums["cache_creation_5m"],
                },
                "cache_read_input_tokens": sums["cache_read_input_tokens"],
                "output_tokens": sums["output_tokens"],
                "server_tool_use": {"web_search_requests": sums["web_search_requests"]},
            }
            grouped = dict(zip(group_by, key, strict=True))
            for dimension in _USAGE_ROW_DIMENSIONS:
                row[dimension] = grouped.get(dimension)
            if "speed" in grouped:
                row["speed"] = grouped["speed"]
            results.append(row)
        data.append(_bucket(start, buckets.width, results))
    return _report(data, buckets)


def cost_report(
    org: SimulatedOrganization, params: Mapping[str, list[str]], now: datetime
) -> dict[str, Any]:
    """The body of GET /v1/organizations/cost_report (amounts are decimal strings in cents)."""
    group_by = set(params.get("group_by", []))
    for group in group_by:
        if group not in _COST_GROUPS:
            raise _invalid(f"group_by: Input should be {_one_of(_COST_GROUPS)}")
    by_workspace = "workspace_id" in group_by
    by_description = "description" in group_by

    buckets = _plan_buckets(params, now, _COST_LIMITS)
    data = []
    for start in buckets.starts:
        # (workspace_id, description, then the fields parsed from the description) -> cents
        merged: dict[tuple[str | None, ...], Decimal] = {}
        for (key, text), cents in org.cost_lines(
            start, start + buckets.width, now=now
        ).items():
            # Fields of a dimension that is not grouped by are null, and such rows merge.
            workspace_id = key[0] if by_workspace else None
            parsed = (text, *key[1:]) if by_description else (None,) * 7
            row_key = (workspace_id, *parsed)
            merged[row_key] = merged.get(row_key, Decimal(0)) + cents
        results = []
        for row_key in sorted(merged, key=_nulls_first):
            workspace_id, description, cost_type, model, token_type, tier, window, geo = row_key
            results.append({
                "amount": _format_amount(merged[row_key]),
                "currency": "USD",
                "workspace_id": workspace_id,
                "description": description,
                "cost_type": cost_type,
                "context_window": window,
                "model": model,
                "service_tier": tier,
                "token_type": token_type,
                "inference_geo": geo,
            })
        data.append(_bucket(start, buckets.width, results))
    return _report(data, buckets)


def list_page(items: Sequence[dict[str, Any]], params: Mapping[str, list[str]]) -> dict[str, Any]:
    """One page of a list endpoint, paged by `after_id`/`before_id` (anthropic-api.md §5)."""
    limit = _int_param(params, "limit", 20, 1, 1000, "")
    after_id = _scalar(params, "after_id")
    before_id = _scalar(params, "before_id")
    if after_id and before_id:
        raise _invalid("Only one of after_id or before_id may be given")
    ids = [item["id"] for item in items]
    if before_id:
        # An unknown cursor gives an empty page rather than an error.
        end = ids.index(before_id) if before_id in ids else 0
        page = list(items[max(0, end - limit):end])
        has_more = end - limit > 0
    else:
        begin = ids.index(after_id) + 1 if after_id in ids else (len(ids) if after_id else 0)
        page = list(items[begin:begin + limit])
        has_more = begin + limit < len(items)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def list_api_keys(org: SimulatedOrganization, params: Mapping[str, list[str]]) -> dict[str, Any]:
    """The body of GET /v1/organizations/api_keys."""
    keys = org.api_keys
    status = _scalar(params, "status")
    if status is not None:
        statuses = ("active", "inactive", "archived", "expired")
        if status not in statuses:
            raise _invalid(f"status: Input should be {_one_of(statuses)}")
        keys = [key for key in keys if key["status"] == status]
    workspace_id = _scalar(params, "workspace_id")
    if workspace_id is not None:
        # The Default Workspace's real id selects its keys, which show workspace_id null.
        wanted = None if workspace_id == org.default_workspace_id else workspace_id
        keys = [key for key in keys if key["workspace_id"] == wanted]
    creator = _scalar(params, "created_by_user_id")
    if creator is not None:
        # Workload-identity keys have no creator (created_by null).
        keys = [key for key in keys if (key["created_by"] or {}).get("id") == creator]
    return list_page(keys, params)


def list_workspaces(org: SimulatedOrganization, params: Mapping[str, list[str]]) -> dict[str, Any]:
    """The body of GET /v1/organizations/workspaces (the Default Workspace is never listed)."""
    include_archived = (_scalar(params, "include_archived") or "false").lower()
    if include_archived not in ("true", "false"):
        raise _invalid("include_archived: Input should be a valid boolean")
    workspaces = org.workspaces
    if include_archived == "false":
        workspaces = [ws for ws in workspaces if ws["archived_at"] is None]
    return list_page(workspaces, params)


# --- Rate limits and Claude Code analytics --------------------------------------------------------


def list_rate_limits(
    org: SimulatedOrganization, params: Mapping[str, list[str]], shape: str = "current"
) -> dict[str, Any]:
    """The body of GET /v1/organizations/rate_limits."""
    entries = _of_group_type(org.rate_limits(), params)
    model = _scalar(params, "model")
    if model is not None:
        entries = [entry for entry in entries if model in (entry["models"] or ())]
        if not entries:
            raise ApiError(404, "not_found_error", f"No rate limits found for model '{model}'")
    data, next_page = _offset_page(entries, params, "rate_limits")
    return {"data": [_shaped(entry, shape) for entry in data], "next_page": next_page}


def list_workspace_rate_limits(
    org: SimulatedOrganization, workspace_id: str, params: Mapping[str, list[str]],
    shape: str = "current",
) -> dict[str, Any]:
    """The body of GET /v1/organizations/workspaces/{workspace_id}/rate_limits: 404 for the
    Default Workspace (whose limits are the organization's) and for unknown ids."""
    text = _scalar(params, "include_inherited")
    include_inherited = "false" if text is None else text.lower()
    if include_inherited not in ("true", "false"):
        raise _invalid("include_inherited: Input should be a valid boolean")
    _of_group_type([], params)  # checks group_type before looking the workspace up
    entries = org.workspace_rate_limits(workspace_id, include_inherited=include_inherited == "true")
    if entries is None:
        raise ApiError(404, "not_found_error", f"Workspace '{workspace_id}' not found")
    data, next_page = _offset_page(_of_group_type(entries, params), params,
                                   f"workspace_rate_limits:{workspace_id}")
    return {"data": [_shaped(entry, shape) for entry in data], "next_page": next_page}


def claude_code_report(
    org: SimulatedOrganization, params: Mapping[str, list[str]], now: datetime
) -> dict[str, Any]:
    """The body of GET /v1/organizations/usage_report/claude_code: one UTC day's records, paged
    by record. The boundary (what is older than an hour) is fixed by the first page and carried
    in the cursor, so the pages of one pass fit together while the day still grows."""
    text = _scalar(params, "starting_at")
    if text is None:
        raise _invalid("starting_at: Field required")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise _invalid("starting_at: Input should be a valid date in the format YYYY-MM-DD") from None
    limit = _int_param(params, "limit", 20, 1, 1000, "")
    as_of, offset = now, 0
    page = _scalar(params, "page")
    if page:
        cursor = _decode_cursor(page).split("|")
        try:
            if len(cursor) != 4 or cursor[0] != "claude_code" or cursor[1] != day.isoformat():
                raise ValueError(page)
            as_of, offset = _parse_time(cursor[2], "page"), int(cursor[3])
        except (ValueError, ApiError):
            raise _invalid("page: Invalid page token") from None
        if offset < 0:
            raise _invalid("page: Invalid page token")
    records = org.claude_code_records(day, now=as_of)
    data = records[offset:offset + limit]
    end = offset + len(data)
    next_page = None
    if end < len(records):
        boundary = format_rfc3339(as_of, fraction="us")
        next_page = _encode_cursor(f"claude_code|{day.isoformat()}|{boundary}|{end}")
    return {"data": data, "has_more": next_page is not None, "next_page": next_page}


def _of_group_type(entries: list[dict[str, Any]],
                   params: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    group_type = _scalar(params, "group_type")
    if group_type is None:
        return entries
    if group_type not in RATE_LIMIT_GROUP_TYPES:
        raise _invalid(f"group_type: Input should be {_one_of(RATE_LIMIT_GROUP_TYPES)}")
    return [entry for entry in entries if entry["group"]["type"] == group_type]


def _offset_page(items: list[dict[str, Any]], params: Mapping[str, list[str]],
                 kind: str) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a list paged by an opaque `next_page`: without `limit`, everything from the
    cursor on in one page."""
    offset = 0
    page = _scalar(params, "page")
    if page:
        kind_text, _, offset_text = _decode_cursor(page).rpartition("|")
        if kind_text != kind or not offset_text.isdigit():
            raise _invalid("page: Invalid page token")
        offset = int(offset_text)
    limit = _int_param(params, "limit", max(1, len(items)), 1, 1000, "")
    data = items[offset:offset + limit]
    end = offset + len(data)
    return data, _encode_cursor(f"{kind}|{end}") if end < len(items) else None


def _shaped(entry: dict[str, Any], shape: str) -> dict[str, Any]:
    """An entry in the requested shape: the older beta one has `group_type` and no `group`."""
    if shape == "current":
        return entry
    older = {name: value for name, value in entry.items() if name != "group"}
    older.setdefault("group_type", entry["group"]["type"])
    return older


def _encode_cursor(text: str) -> str:
    return "page_" + base64.urlsafe_b64encode(text.encode()).decode()


def _decode_cursor(page: str) -> str:
    try:
        if not page.startswith("page_"):
            raise ValueError(page)
        return base64.urlsafe_b64decode(page[5:].encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("page: Invalid page token") from None


def _report(data: list[dict[str, Any]], buckets: _Buckets) -> dict[str, Any]:
    next_page = None
    if buckets.next_start is not None:
        cursor = format_rfc3339(buckets.next_start).encode()
        next_page = "page_" + base64.b64encode(cursor).decode()
    return {"data": data, "has_more": next_page is not None, "next_page": next_page}


def _bucket(start: datetime, width: timedelta, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "starting_at": format_rfc3339(start),
        "ending_at": format_rfc3339(start + width),
        "results": results,
    }


def _decode_page(page: str) -> datetime:
    try:
        if not page.startswith("page_"):
            raise ValueError(page)
        moment = datetime.fromisoformat(base64.b64decode(page[5:], validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("page: Invalid page token") from None
    if moment.tzinfo is None:
        raise _invalid("page: Invalid page token")
    return moment.astimezone(UTC)


def _normalize_query(query: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Parameters by plain name: `group_by[]` and `group_by` are the same array."""
    params: dict[str, list[str]] = {}
    for name, values in query.items():
        params.setdefault(name.removesuffix("[]"), []).extend(values)
    return params


def _scalar(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(params: Mapping[str, list[str]], name: str, default: int, low: int, high: int,
               context: str) -> int:
    text = _scalar(params, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _invalid(f"{name}: Input should be a valid integer") from None
    if not low <= value <= high:
        raise _invalid(f"{name}: Input should be between {low} and {high}{context}")
    return value


def _parse_time(text: str, name: str) -> datetime:
    # A raw "+" in a query string decodes to a space; accept "...T00:00:00 00:00" too.
    for candidate in (text, text.replace(" ", "+")):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    raise _invalid(f"{name}: Input should be a valid RFC 3339 datetime with a time zone")


def _snap(moment: datetime, width: timedelta) -> datetime:
    # UTC minutes, hours and days are all whole multiples of their width since the epoch.
    seconds = int(width.total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, UTC)


def _format_amount(cents: Decimal) -> str:
    # Normalized, so precision varies as the real API's does: "1500", "0.1", "123.78912".
    return f"{cents.normalize():f}"


def _nulls_first(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, value or "") for value in key)


def _one_of(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _new_id(prefix: str) -> str:
    """A unique id shaped like the API's: prefix, "01", 22 base62 characters."""
    number = uuid.uuid4().int
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return prefix + "01" + "".join(digits)


# --- The server --------------------------------------------------------------------------------


class SimulatorServer:
    """Serves a SimulatedOrganization over HTTP, in a daemon thread.

    Besides `inject()`, faults can be set over HTTP (`POST /_simulator/faults` with
    `{"path_prefix": ..., "fault": ..., "times": ..., "retry_after": ..., "delay": ...}`,
    `GET` lists them, `DELETE` clears them), and a Messages request can carry its own:
    `x-simulator-fault: 403|429|500|529|slow|stream_error|malformed_json|truncated`, with
    `x-simulator-retry-after` and `x-simulator-delay` (seconds). Without a fault,
    `x-simulator-delay` delays a stream's first text delta (or a whole non-streamed reply),
    so clients can measure time to first token.

    The organization's data can be changed over HTTP too: `POST /_simulator/spikes` adds a
    spend spike (or `POST /_simulator/faults` with `"fault": "spend_spike"`), and
    `PUT /_simulator/cost_skew` skews the billed token cost (see `_spike_control` and
    `_skew_control`).

    >>> server = SimulatorServer(SimulatedOrganization(seed=7)).start()
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:50123'
    >>> server.stop()
    """

    def __init__(self, org: SimulatedOrganization, host: str = "127.0.0.1", port: int = 0,
                 *, rate_limits_shape: str = "current") -> None:
        if rate_limits_shape not in RATE_LIMIT_SHAPES:
            raise ValueError(f"rate_limits_shape must be one of {', '.join(RATE_LIMIT_SHAPES)}")
        self.org = org
        # "beta": serve rate-limit entries in the older shape, without the `group` object. An
        # attribute, so a test can switch it on a running server.
        self.rate_limits_shape = rate_limits_shape
        self._httpd = _HTTPServer((host, port), self)
        shown_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"http://{shown_host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        # The newest requests only: a long-running demo must not grow without bound.
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=MAX_RECORDED_REQUESTS)
        self._prompt_cache = messages.PromptCache()
        self._rate_limits = messages.RateLimits()
        # Requests that name no inference_geo get their workspace's default.
        self._sdk_default_geo: str = next(
            ws["data_residency"]["default_inference_geo"]
            for ws in org.workspaces if ws["id"] == org.sdk_workspace_id
        )

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(
            # A short poll interval: stop() waits up to that long.
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
            name=f"simulator {self.url}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes open connections, so pooled clients see the server gone."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- faults --------------------------------------------------------------------------------

    def inject(self, path_prefix: str, fault: str, times: int = 1, **params: Any) -> None:
        """Gives the next `times` requests whose path starts with `path_prefix` a fault.

        Faults: "403" (permission_error, as for a key without access to the route), "429"
        (`retry_after`: seconds, default None = no retry-after header), "500",
        "529", "slow" (`delay`: seconds before a normal answer, default 1.0), "malformed_json"
        (200 with a body that is not JSON), "truncated" (the body is cut off halfway and the
        connection closed), "stream_error" (a streamed Messages reply breaks off with an
        overloaded_error event; any other request gets a 529). A fault applies after
        authentication succeeded, like the API's own rate limits and overloads.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        unknown = set(params) - {"retry_after", "delay"}
        if unknown:
            raise ValueError(f"unknown fault parameters: {', '.join(sorted(unknown))}")
        entry = _Fault(path_prefix, fault, times)
        if params.get("retry_after") is not None:
            entry.retry_after = float(params["retry_after"])
        if params.get("delay") is not None:
            entry.delay = float(params["delay"])
        with self._lock:
            self._faults.append(entry)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for entry in self._faults:
                if path.startswith(entry.path_prefix):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._faults.remove(entry)
                    return entry
        return None

    # --- recorded requests ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # --- answering -----------------------------------------------------------------------------

    def _respond(self, method: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str], body: bytes) -> _Response:
        base_headers = {
            "request-id": _new_id("req_"),
            "anthropic-organization-id": self.org.organization_id,
        }
        try:
            if path == FAULTS_PATH:
                return self._control(method, body, base_headers)
            if path == SPIKES_PATH:
                return self._spike_control(method, body, base_headers)
            if path == COST_SKEW_PATH:
                return self._skew_control(method, body, base_headers)
            return self._api(method, path, _normalize_query(query), headers, body, base_headers)
        except ApiError as error:
            return _error_response(error, {**base_headers, **error.headers})

    def _api(self, method: str, path: str, params: dict[str, list[str]], headers: dict[str, str],
             body: bytes, base_headers: dict[str, str]) -> _Response:
        admin_routes = {USAGE_PATH, COST_PATH, API_KEYS_PATH, WORKSPACES_PATH, ME_PATH,
                        RATE_LIMITS_PATH, CLAUDE_CODE_PATH}
        messages_routes = {MESSAGES_PATH, COUNT_TOKENS_PATH}
        admin_route = path in admin_routes or _WORKSPACE_RATE_LIMITS.match(path) is not None
        if admin_route and method == "GET":
            is_messages = False
        elif path in messages_routes and method == "POST":
            is_messages = True
        else:
            raise ApiError(404, "not_found_error", "Not found")

        _check_auth(headers, admin=not is_messages)
        if is_messages:
            # Authenticated Messages responses name the workspace, the Default one included.
            base_headers["anthropic-workspace-id"] = self.org.sdk_workspace_id
        _check_version(headers, MESSAGES_API_VERSIONS if is_messages else (API_VERSION,))
        betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
        if not is_messages:
            unknown = [beta for beta in betas if beta != FAST_MODE_BETA]
            if unknown:
                raise _invalid(
                    f"Unexpected value(s) `{','.join(unknown)}` for the `anthropic-beta` header. "
                    "Please consult our documentation at docs.claude.com or try again without "
                    "the header."
                )

        fault = self._fault_for(path, headers, is_messages)
        if fault is not None:
            if fault.fault == "403":
                raise ApiError(403, "permission_error",
                               "This API key does not have permission to use this resource")
            if fault.fault == "429":
                extra = {}
                if fault.retry_after is not None:
                    extra["retry-after"] = _seconds(fault.retry_after)
                raise ApiError(429, "rate_limit_error",
                               "Number of requests has exceeded your rate limit", extra)
            if fault.fault == "500":
                raise ApiError(500, "api_error", "Internal server error")
            if fault.fault == "529" or (fault.fault == "stream_error" and not is_messages):
                raise ApiError(529, "overloaded_error", "Overloaded")
            if fault.fault == "slow":
                time.sleep(fault.delay)

        now = self.org.clock()
        if is_messages:
            response = self._messages(
                path, headers, body, now,
                stream_error=fault is not None and fault.fault == "stream_error",
            )
        else:
            response = _json_response(200, self._admin(path, params, betas, now))
        response.headers = {**base_headers, **response.headers}

        if fault is not None and fault.fault == "malformed_json":
            _make_malformed(response)
            response.on_delivered = None  # only complete, valid replies count as served
        if fault is not None and fault.fault == "truncated":
            response.truncate = True
        return response

    def _fault_for(self, path: str, headers: dict[str, str], is_messages: bool) -> _Fault | None:
        """The per-request `x-simulator-fault` header (Messages only), else an injected fault."""
        name = headers.get("x-simulator-fault") if is_messages else None
        if name is None:
            return self._take_fault(path)
        if name not in FAULTS:
            raise _invalid(f"x-simulator-fault: Input should be {_one_of(FAULTS)}")
        fault = _Fault(path, name, 1)
        try:
            if "x-simulator-retry-after" in headers:
                fault.retry_after = float(headers["x-simulator-retry-after"])
            if "x-simulator-delay" in headers:
                fault.delay = float(headers["x-simulator-delay"])
        except ValueError:
            message = "x-simulator-retry-after and x-simulator-delay must be numbers"
            raise _invalid(message) from None
        return fault

    def _admin(self, path: str, params: dict[str, list[str]], betas: list[str],
               now: datetime) -> dict[str, Any]:
        if path == USAGE_PATH:
            return usage_report(self.org, params, betas, now)
        if path == COST_PATH:
            return cost_report(self.org, params, now)
        if path == API_KEYS_PATH:
            return list_api_keys(self.org, params)
        if path == WORKSPACES_PATH:
            return list_workspaces(self.org, params)
        if path == RATE_LIMITS_PATH:
            return list_rate_limits(self.org, params, self.rate_limits_shape)
        if path == CLAUDE_CODE_PATH:
            return claude_code_report(self.org, params, now)
        workspace = _WORKSPACE_RATE_LIMITS.match(path)
        if workspace is not None:
            return list_workspace_rate_limits(self.org, unquote(workspace.group(1)), params,
                                              self.rate_limits_shape)
        return {"id": self.org.organization_id, "type": "organization",
                "name": self.org.organization_name}

    def _messages(self, path: str, headers: dict[str, str], body: bytes, now: datetime,
                  stream_error: bool) -> _Response:
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _invalid("Request body is not valid JSON") from None
        problem = messages.validate(request, count_tokens=path == COUNT_TOKENS_PATH)
        if problem is not None:
            raise _invalid(problem)
        stream = path == MESSAGES_PATH and request.get("stream") is True
        if stream_error and not stream:
            raise ApiError(529, "overloaded_error", "Overloaded")
        if path == COUNT_TOKENS_PATH:
            return _json_response(200, {"input_tokens": messages.count_input_tokens(request)})

        delay = 0.0
        if headers.get("x-simulator-fault") != "slow":  # a slow fault already waited for it
            try:
                delay = float(headers.get("x-simulator-delay", "0"))
            except ValueError:
                raise _invalid("x-simulator-delay must be a number") from None
        reply = messages.make_reply(
            request,
            message_id=_new_id("msg_"),
            cache=self._prompt_cache,
            now=now,
            api_key_id=self.org.sdk_api_key_id,
            workspace_id=self.org.sdk_workspace_id,
            default_geo=self._sdk_default_geo,
        )
        event = reply.event
        limits = self._rate_limits.consume(
            now, event.uncached_input_tokens + event.cache_creation_5m + event.cache_creation_1h,
            event.output_tokens,
        )

        def record() -> None:
            self.org.record_message(event)

        if not stream:
            if delay > 0:
                time.sleep(delay)
            response = _json_response(200, reply.message)
            response.headers.update(limits)
            response.on_delivered = record
            return response
        events = messages.stream_events(reply, fail=stream_error)
        return _Response(
            status=200,
            headers={"content-type": "text/event-stream; charset=utf-8",
                     "cache-control": "no-cache", **limits},
            frames=[(name, messages.encode_event(name, data)) for name, data in events],
            first_delta_delay=delay,
            # An errored stream is not recorded: the request failed, so it is not billed.
            on_delivered=None if stream_error else record,
        )

    def _control(self, method: str, body: bytes, base_headers: dict[str, str]) -> _Response:
        """POST/GET/DELETE /_simulator/faults: fault injection for people running the demo.

        A POST of the fault "spend_spike" injects a spend spike instead (the fields of POST
        /_simulator/spikes), and its answer names it under "spike".
        """
        spiked: dict[str, Any] | None = None
        if method == "POST":
            spec = _json_object(body)
            if spec.get("fault") == SPIKE_FAULT:
                spiked = _spike_json(self._inject_spike(
                    {key: value for key, value in spec.items() if key != "fault"}))
            else:
                try:
                    params = {key: value for key, value in spec.items()
                              if key not in ("path_prefix", "fault", "times")}
                    self.inject(spec.get("path_prefix", "/"), str(spec["fault"]),
                                int(spec.get("times", 1)), **params)
                except (ValueError, KeyError, TypeError, AttributeError) as error:
                    raise _invalid(f"Invalid fault: {error}") from None
        elif method == "DELETE":
            self.clear_faults()
        elif method != "GET":
            raise ApiError(404, "not_found_error", "Not found")
        with self._lock:
            active = [
                {"path_prefix": f.path_prefix, "fault": f.fault, "remaining": f.remaining,
                 "retry_after": f.retry_after, "delay": f.delay}
                for f in self._faults
            ]
        answer: dict[str, Any] = {"faults": active}
        if spiked is not None:
            answer["spike"] = spiked
        response = _json_response(200, answer)
        response.headers.update(base_headers)
        return response

    def _spike_control(self, method: str, body: bytes, base_headers: dict[str, str]) -> _Response:
        """POST/GET/DELETE /_simulator/spikes: spend spikes (SimulatedOrganization.inject_spike).

        POST `{"factor": 20, "minutes": 60, "workspace": "Production", "start": "...Z",
        "model": "claude-opus-5"}` (only `factor` required; `minutes` defaults to 60, `start` to
        `minutes` before now, so the whole spike has happened and shows at once; `workspace` to
        the Messages API's, Production) adds one; GET lists them; DELETE removes them all.
        """
        if method == "POST":
            self._inject_spike(_json_object(body))
        elif method == "DELETE":
            self.org.clear_spikes()
        elif method != "GET":
            raise ApiError(404, "not_found_error", "Not found")
        response = _json_response(200, {"spikes": [_spike_json(s) for s in self.org.spikes]})
        response.headers.update(base_headers)
        return response

    def _inject_spike(self, spec: dict[str, Any]) -> Spike:
        unknown = set(spec) - {"start", "minutes", "factor", "workspace", "model"}
        if unknown:
            raise _invalid(f"Invalid spike: unknown fields {', '.join(sorted(unknown))}")
        if "factor" not in spec:
            raise _invalid("Invalid spike: factor is required")
        minutes = spec.get("minutes", 60)
        workspace = spec.get("workspace")
        model = spec.get("model", SPIKE_MODEL)
        if not isinstance(minutes, int) or isinstance(minutes, bool):
            raise _invalid("Invalid spike: minutes must be a whole number")
        if workspace is not None and not isinstance(workspace, str):
            raise _invalid("Invalid spike: workspace must be a string")
        if not isinstance(model, str) or not isinstance(spec["factor"], int | float | str):
            raise _invalid("Invalid spike: model must be a string and factor a number")
        start_text = spec.get("start")
        if start_text is None:
            start = self.org.clock() - timedelta(minutes=minutes)
        elif isinstance(start_text, str):
            start = _parse_time(start_text, "start")
        else:
            raise _invalid("Invalid spike: start must be an RFC 3339 time")
        try:
            return self.org.inject_spike(start, minutes, spec["factor"], workspace, model=model)
        except ValueError as error:
            raise _invalid(f"Invalid spike: {error}") from None

    def _skew_control(self, method: str, body: bytes, base_headers: dict[str, str]) -> _Response:
        """PUT (or POST)/GET/DELETE /_simulator/cost_skew: the factor on billed token cost
        (SimulatedOrganization.cost_skew). PUT `{"skew": 1.25}` or `{"skew": {"claude-opus-5":
        1.25, "Research/*": 0.8}}` sets it (replacing what was set); DELETE removes it."""
        if method in ("PUT", "POST"):
            spec = _json_object(body)
            if set(spec) != {"skew"}:
                raise _invalid('Invalid cost skew: expected {"skew": a number or {selector: number}}')
            try:
                self.org.cost_skew = spec["skew"]
            except (ValueError, TypeError) as error:
                raise _invalid(f"Invalid cost skew: {error}") from None
        elif method == "DELETE":
            self.org.cost_skew = 1
        elif method != "GET":
            raise ApiError(404, "not_found_error", "Not found")
        skew = {selector: f"{factor.normalize():f}"
                for selector, factor in self.org.cost_skew.items()}
        response = _json_response(200, {"cost_skew": skew})
        response.headers.update(base_headers)
        return response


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Request body is not valid JSON") from None
    if not isinstance(spec, dict):
        raise _invalid("Request body must be a JSON object")
    return spec


def _spike_json(spike: Spike) -> dict[str, Any]:
    def usd(value: Decimal) -> str:
        return f"{value.quantize(Decimal('0.000001')).normalize():f}"

    return {
        "start": format_rfc3339(spike.start),
        "end": format_rfc3339(spike.start + timedelta(minutes=spike.minutes)),
        "minutes": spike.minutes,
        "factor": f"{spike.factor.normalize():f}",
        "workspace_id": spike.workspace_id,
        "api_key_id": spike.api_key_id,
        "model": spike.model,
        "events": spike.events,
        "usual_usd": usd(spike.usual_usd),
        "added_usd": usd(spike.added_usd),
    }


def _check_auth(headers: Mapping[str, str], *, admin: bool) -> None:
    api_key = headers.get("x-api-key", "")
    authorization = headers.get("authorization", "")
    bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    prefix = ADMIN_KEY_PREFIX if admin else "sk-ant-"
    if not (api_key.startswith(prefix) or bearer):
        raise ApiError(401, "authentication_error", "invalid x-api-key")


def _check_version(headers: Mapping[str, str], accepted: Sequence[str]) -> None:
    version = headers.get("anthropic-version")
    if version is None:
        raise _invalid("anthropic-version: header is required")
    if version not in accepted:
        raise _invalid(f'anthropic-version: "{version}" is not a valid version')


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _json_response(status: int, body: Any) -> _Response:
    return _Response(status=status, headers={"content-type": "application/json"},
                     body=json.dumps(body).encode())


def _error_response(error: ApiError, headers: dict[str, str]) -> _Response:
    body = {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
        "request_id": headers["request-id"],
    }
    response = _json_response(error.status, body)
    response.headers = {**headers, **response.headers}
    return response


def _make_malformed(response: _Response) -> None:
    if response.frames is None:
        response.body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        return
    # A stream: one data line in the middle is not JSON.
    middle = len(response.frames) // 2
    name = response.frames[middle][0]
    response.frames[middle] = (name, f"event: {name}\ndata: {{not json\n\n".encode())


class _HTTPServer(ThreadingHTTPServer):
    # Daemon threads, and no joining them at close: a kept-alive connection would block stop().
    daemon_threads = True
    block_on_close = False
    # The default listen backlog of 5 drops connections under concurrent clients, which
    # then retry after a second.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: SimulatorServer) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops a kept-alive connection is normal; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.exception("simulator: error while answering %s", client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like the real API; streams and cut-off bodies close the connection.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        simulator = self.server.simulator
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {name.lower(): value for name, value in self.headers.items()}
        # Read the whole body before answering: an unread body would corrupt the next
        # request on this kept-alive connection.
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length)
        try:
            response = simulator._respond(self.command, url.path, query, headers, body)
        except Exception:
            log.exception("simulator failed to answer %s %s", self.command, self.path)
            response = _error_response(
                ApiError(500, "api_error", "Internal server error"),
                {"request-id": _new_id("req_"),
                 "anthropic-organization-id": simulator.org.organization_id},
            )
        simulator._record(RecordedRequest(self.command, url.path, query, response.status, headers))
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away, e.g. abandoned a stream

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.frames is None:
            body = response.body
            self.send_header("content-length", str(len(body)))
            if response.truncate:
                self.send_header("connection", "close")
            self.end_headers()
            if response.truncate:
                self.wfile.write(body[: len(body) // 2])
                return
            if response.on_delivered is not None:
                response.on_delivered()
            self.wfile.write(body)
            return

        # A stream has no length: it ends when the connection closes.
        self.send_header("connection", "close")
        self.end_headers()
        frames = response.frames
        if response.truncate:
            frames = frames[: len(frames) // 2]
        delay = response.first_delta_delay
        for index, (name, frame) in enumerate(frames):
            if name == "content_block_delta" and delay > 0:
                time.sleep(delay)
                delay = 0.0
            last = index == len(response.frames) - 1
            if last and response.on_delivered is not None:
                response.on_delivered()
            self.wfile.write(frame)
            self.wfile.flush()
