"""HTTP client for the Admin API's usage, cost and list endpoints; returns parsed rows.

Fetching only: no schedule and no metrics here. Every HTTP attempt is reported through
``on_response`` so the caller can count it; failures raise ``AdminAPIError`` with a short,
fixed ``reason`` word that becomes the ``reason`` label of the poll error counter.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import requests
import tenacity
import urllib3

from exporter import __version__
from exporter.config import MAX_BUCKETS, HTTPSettings, Organization, Secret
from exporter.timeutil import format_rfc3339 as format_time
from exporter.windows import bucket_count

log = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
# Grouping the usage report by `speed` needs this beta header (and nothing else does).
FAST_MODE_BETA = "fast-mode-2026-02-01"
USER_AGENT = f"anthropic-usage-exporter/{__version__} (+https://github.com/anthropic-usage-exporter)"

# Label value of `endpoint` in anthropic_exporter_api_requests_total -> URL path.
ENDPOINTS = {
    "usage_report_messages": "/v1/organizations/usage_report/messages",
    "cost_report": "/v1/organizations/cost_report",
    "api_keys": "/v1/organizations/api_keys",
    "workspaces": "/v1/organizations/workspaces",
    "rate_limits": "/v1/organizations/rate_limits",
    "workspace_rate_limits": "/v1/organizations/workspaces/{workspace_id}/rate_limits",
    "usage_report_claude_code": "/v1/organizations/usage_report/claude_code",
}
MAX_CURSOR_PAGES = 1000  # a bound on `next_page` loops, far above any real answer

MAX_ATTEMPTS = 5
MAX_BACKOFF = 30.0
LIST_PAGE_SIZE = 1000


class AdminAPIError(Exception):
    """A request (after any retries) or its response failed; ``reason`` is a fixed word."""

    def __init__(self, reason: str, message: str, *, status: int | None = None, request_id: str | None = None,
                 final: bool = False):
        detail = f" (HTTP {status}" if status else ""
        if request_id:
            detail += f", request-id {request_id}" if detail else f" (request-id {request_id}"
        super().__init__(f"{message}{detail + ')' if detail else ''}")
        self.reason = reason
        self.status = status
        self.request_id = request_id
        self.final = final  # retrying cannot help: the poll's time is up, or the answer is not the API's
        self.retry_after: float | None = None


@dataclass(frozen=True)
class UsageValues:
    uncached_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    output_tokens: int = 0
    web_search_requests: int = 0

    def __add__(self, other: UsageValues) -> UsageValues:
        return UsageValues(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))


def _fields(v: UsageValues) -> tuple[int, ...]:
    return (v.uncached_input_tokens, v.cache_read_input_tokens, v.cache_creation_5m,
            v.cache_creation_1h, v.output_tokens, v.web_search_requests)


@dataclass(frozen=True)
class UsageRow:
    dimensions: tuple[str | None, ...]  # values of the requested group_by, in that order
    values: UsageValues


COST_DIMENSIONS = ("workspace_id", "cost_type", "model", "token_type", "service_tier",
                   "context_window", "inference_geo")


@dataclass(frozen=True)
class CostRow:
    dimensions: tuple[str | None, ...]  # COST_DIMENSIONS, in that order
    amount_cents: Decimal


@dataclass(frozen=True)
class Bucket:
    starting_at: datetime
    ending_at: datetime
    rows: tuple[Any, ...]
    skipped: tuple[tuple[str, int], ...] = ()  # rows that could not be read, by reason


@dataclass
class Report:
    """The buckets of a report, oldest first, and how many rows were skipped, by reason."""

    buckets: list[Bucket] = field(default_factory=list)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class APIKey:
    id: str
    name: str
    status: str
    workspace_id: str | None


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    archived: bool = False


@dataclass(frozen=True)
class RateLimitGroup:
    """One rate-limit group's limits: the organization's, or a workspace's effective ones."""

    group_id: str
    group_type: str
    group_name: str  # display_name of a model group; "" for others
    models: tuple[str, ...]  # model ids and aliases that count against it
    limits: tuple[tuple[str, float, str], ...]  # (limit type, value, source: organization or workspace)


@dataclass(frozen=True)
class ClaudeCodeRecord:
    """One actor's Claude Code activity on one UTC day (one terminal, local or remote)."""

    actor: str  # email address or API key name
    actor_type: str  # user_actor or api_actor, verbatim
    customer_type: str
    terminal_type: str
    sessions: int
    lines_added: int
    lines_removed: int
    commits: int
    pull_requests: int
    tool_actions: tuple[tuple[str, int, int], ...]  # (tool, accepted, rejected)
    models: tuple[tuple[str, int, int, int, int, int], ...]  # (model, input, output, cache_read, cache_creation, cents)


class RateLimiter:
    """At most ``per_minute`` requests in any 60 s, sleeping (never beyond a deadline) to keep it."""

    def __init__(self, per_minute: int, *, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.per_minute = per_minute
        self.monotonic = monotonic
        self.sleep = sleep
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self, deadline: float) -> None:
        with self._lock:
            now = self.monotonic()
            while self._sent and now - self._sent[0] >= 60:
                self._sent.popleft()
            if len(self._sent) >= self.per_minute:
                wait = 60 - (now - self._sent[0])
                if now + wait > deadline:
                    raise AdminAPIError("timeout", "poll deadline reached while pacing requests", final=True)
                self.sleep(wait)
                self._sent.popleft()
                now = self.monotonic()
            self._sent.append(now)


def parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 time, got {text!r}")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment.astimezone(UTC)


class AdminClient:
    """One organization's Admin API, with retries, pacing and a bounded time per poll."""

    def __init__(
        self,
        org: Organization,
        settings: HTTPSettings,
        *,
        session: requests.Session | None = None,
        on_response: Callable[[str, str], None] = lambda endpoint, code: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = org.base_url
        self.settings = settings
        self.session = session or requests.Session()
        # Per request, not on the session: a session may be shared between organizations.
        self.headers = {
            "x-api-key": org.api_key.reveal(),
            "anthropic-version": API_VERSION,
            "user-agent": USER_AGENT,
            "accept": "application/json",
        }
        self.key_file = org.api_key_file
        # Set once a 400 showed that the API refuses an ending_at in the future.
        self.omit_future_ending_at = False
        self.on_response = on_response
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.limiter = RateLimiter(settings.max_requests_per_minute, monotonic=monotonic, sleep=sleep)

    def set_key(self, key: Secret) -> None:
        """Use another admin key from the next request on (a reload found a rotated one)."""
        self.headers = {**self.headers, "x-api-key": key.reveal()}

    def _reread_key_file(self) -> bool:
        """After a 401: read ``api_key_file`` again; True if it now holds another, usable key (the
        Secret or credential behind the file was rotated). The key itself is never logged."""
        if self.key_file is None:
            return False
        try:
            with open(self.key_file, encoding="utf-8") as fh:
                key = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the admin key file again after a 401",
                        extra={"file": self.key_file, "err": type(exc).__name__})
            return False
        if not key or key == self.headers["x-api-key"] or not all("!" <= c <= "~" for c in key):
            return False
        self.set_key(Secret(key))
        log.info("the API refused the admin key; read a new one from its file", extra={"file": self.key_file})
        return True

    def deadline(self) -> float:
        """The monotonic time by which a poll started now must be done."""
        return self.monotonic() + self.settings.poll_timeout

    # -- reports ---------------------------------------------------------------------------

    def usage_report(self, start: datetime, end: datetime, width: str, group_by: tuple[str, ...],
                     deadline: float) -> Report:
        return _report(self.usage_buckets(start, end, width, group_by, deadline))

    def cost_report(self, start: datetime, end: datetime, deadline: float) -> Report:
        return _report(self.cost_buckets(start, end, deadline))

    def usage_buckets(self, start: datetime, end: datetime, width: str, group_by: tuple[str, ...],
                      deadline: float) -> Iterator[Bucket]:
        """The usage report's buckets, oldest first, each parsed as it is reached: a caller that
        keeps them in a compact form never holds a large report's rows all at once."""
        params: dict[str, Any] = {"bucket_width": width}
        if group_by:
            params["group_by[]"] = list(group_by)
        headers = {"anthropic-beta": FAST_MODE_BETA} if "speed" in group_by else {}
        raw_buckets = self._bucket_pages("usage_report_messages", start, end, width, params, deadline, headers)
        return _in_order(_parse_bucket(raw, lambda row: _parse_usage_row(row, group_by)) for raw in raw_buckets)

    def cost_buckets(self, start: datetime, end: datetime, deadline: float) -> Iterator[Bucket]:
        """The cost report's buckets, as ``usage_buckets``."""
        params = {"bucket_width": "1d", "group_by[]": ["workspace_id", "description"]}
        raw_buckets = self._bucket_pages("cost_report", start, end, "1d", params, deadline)
        return _in_order(_parse_bucket(raw, _parse_cost_row) for raw in raw_buckets)

    def _bucket_pages(self, endpoint: str, start: datetime, end: datetime, width: str,
                      params: dict[str, Any], deadline: float,
                      headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        wanted = bucket_count(start, end, width)
        params = {**params, "starting_at": format_time(start), "ending_at": format_time(end),
                  "limit": min(wanted, MAX_BUCKETS[width])}
        # A page may hold fewer buckets than asked for, so bound the pages by buckets, not pages.
        for _ in range(wanted + 1):
            body = self._get_with_ending_fallback(endpoint, params, end, deadline, headers or {})
            data = body.get("data")
            if not isinstance(data, list):
                raise AdminAPIError("invalid_response", f"{endpoint}: response has no data list")
            data.reverse()
            while data:  # handed out one by one, so each raw bucket is freed once it is parsed
                yield data.pop()
            if not body.get("has_more"):
                return
            next_page = body.get("next_page")
            if not isinstance(next_page, str) or not next_page:
                raise AdminAPIError("invalid_response", f"{endpoint}: has_more is true but next_page is missing")
            if next_page == params.get("page"):
                raise AdminAPIError("invalid_response", f"{endpoint}: next_page repeats the page just read")
            params = {**params, "page": next_page}
        raise AdminAPIError("invalid_response", f"{endpoint}: more pages than buckets requested")

    def _get_with_ending_fallback(self, endpoint: str, params: dict[str, Any], end: datetime,
                                  deadline: float, headers: dict[str, str]) -> dict[str, Any]:
        # Whether the API accepts an ending_at in the future is unknown (anthropic-api.md §0):
        # on a 400 for one, ask again without it (the API then ends at now, leaving out the bucket
        # in progress), and once that works, keep leaving it out.
        future = end > self.clock()
        without = {k: v for k, v in params.items() if k != "ending_at"}
        if future and self.omit_future_ending_at:
            return self._get(endpoint, without, deadline, headers)
        try:
            return self._get(endpoint, params, deadline, headers)
        except AdminAPIError as exc:
            if exc.status != 400 or not future:
                raise
        body = self._get(endpoint, without, deadline, headers)
        self.omit_future_ending_at = True
        log.warning("the API refused an ending_at in the future; leaving it out from now on, so the bucket"
                    " in progress is not counted", extra={"endpoint": endpoint})
        return body

    # -- lists -----------------------------------------------------------------------------

    def api_keys(self, deadline: float) -> list[APIKey]:
        keys = []
        for item in self._list("api_keys", {}, deadline):
            key_id, name = item.get("id"), item.get("name")
            if not isinstance(key_id, str) or not key_id:
                continue
            keys.append(APIKey(key_id, name if isinstance(name, str) else "",
                               str(item.get("status") or "unknown"), _str_or_none(item.get("workspace_id"))))
        return keys

    def workspaces(self, deadline: float) -> list[Workspace]:
        spaces = []
        for item in self._list("workspaces", {"include_archived": "true"}, deadline):
            space_id, name = item.get("id"), item.get("name")
            if isinstance(space_id, str) and space_id:
                spaces.append(Workspace(space_id, name if isinstance(name, str) else "",
                                        item.get("archived_at") is not None))
        return spaces

    # -- rate limits and Claude Code -------------------------------------------------------

    def rate_limits(self, deadline: float) -> list[RateLimitGroup]:
        """The organization's limits per rate-limit group (every page)."""
        groups = []
        for item in self._cursor_pages("rate_limits", {}, deadline):
            group = _parse_rate_limit_group(item, workspace=False)
            if group is not None:
                groups.append(group)
        return groups

    def workspace_rate_limits(self, workspace_id: str, deadline: float) -> list[RateLimitGroup] | None:
        """A workspace's effective limits, inherited ones included; None where the API answers
        404, as it does for the Default Workspace, whose limits are the organization's."""
        path = ENDPOINTS["workspace_rate_limits"].format(workspace_id=quote(workspace_id, safe=""))
        groups = []
        try:
            for item in self._cursor_pages("workspace_rate_limits", {"include_inherited": "true"}, deadline,
                                           path=path):
                group = _parse_rate_limit_group(item, workspace=True)
                if group is not None:
                    groups.append(group)
        except AdminAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return groups

    def claude_code(self, day: date, deadline: float) -> list[ClaudeCodeRecord]:
        """Every record of one UTC day (the endpoint serves one day per request, plus pages)."""
        records = []
        params = {"starting_at": day.isoformat(), "limit": LIST_PAGE_SIZE}
        for item in self._cursor_pages("usage_report_claude_code", params, deadline):
            record = _parse_claude_code_record(item)
            if record is not None:
                records.append(record)
        return records

    def _cursor_pages(self, endpoint: str, params: dict[str, Any], deadline: float,
                      path: str | None = None) -> Iterator[dict[str, Any]]:
        """Items of every page, following the opaque ``next_page`` until it is null."""
        for _ in range(MAX_CURSOR_PAGES):
            body = self._get(endpoint, params, deadline, path=path)
            data = body.get("data")
            if not isinstance(data, list):
                raise AdminAPIError("invalid_response", f"{endpoint}: response has no data list")
            yield from (item for item in data if isinstance(item, dict))
            next_page = body.get("next_page")
            if next_page is None or body.get("has_more") is False:
                return
            if not isinstance(next_page, str) or not next_page or next_page == params.get("page"):
                raise AdminAPIError("invalid_response", f"{endpoint}: next_page is not a new page cursor")
            params = {**params, "page": next_page}
        raise AdminAPIError("invalid_response", f"{endpoint}: more than {MAX_CURSOR_PAGES} pages")

    def _list(self, endpoint: str, params: dict[str, Any], deadline: float) -> Iterator[dict[str, Any]]:
        params = {**params, "limit": LIST_PAGE_SIZE}
        seen: set[str] = set()
        while True:
            body = self._get(endpoint, params, deadline)
            data = body.get("data")
            if not isinstance(data, list):
                raise AdminAPIError("invalid_response", f"{endpoint}: response has no data list")
            yield from (item for item in data if isinstance(item, dict))
            if not body.get("has_more"):
                return
            last_id = body.get("last_id")
            if not isinstance(last_id, str) or not last_id:
                # Stopping here would serve a partial list as if it were whole.
                raise AdminAPIError("invalid_response", f"{endpoint}: has_more is true but last_id is missing")
            if last_id in seen:
                raise AdminAPIError("invalid_response", f"{endpoint}: last_id repeats a page already read")
            seen.add(last_id)
            params = {**params, "after_id": last_id}

    # -- one GET, with retries -------------------------------------------------------------

    def _get(self, endpoint: str, params: dict[str, Any], deadline: float,
             headers: dict[str, str] | None = None, path: str | None = None) -> dict[str, Any]:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=_backoff,
            stop=lambda state: (state.attempt_number >= MAX_ATTEMPTS
                                or self.monotonic() + state.upcoming_sleep > deadline),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, endpoint, params, deadline, {**self.headers, **(headers or {})},
                            path or ENDPOINTS[endpoint])
        except AdminAPIError as exc:
            if exc.status != 401 or not self._reread_key_file():
                raise
        return retrying(self._attempt, endpoint, params, deadline, {**self.headers, **(headers or {})},
                        path or ENDPOINTS[endpoint])

    def _attempt(self, endpoint: str, params: dict[str, Any], deadline: float,
                 headers: dict[str, str], path: str) -> dict[str, Any]:
        remaining = deadline - self.monotonic()
        if remaining <= 0:
            raise AdminAPIError("timeout", f"{endpoint}: poll deadline reached", final=True)
        self.limiter.acquire(deadline)
        timeout = min(self.settings.request_timeout, max(deadline - self.monotonic(), 0.001))
        try:
            # No redirects: requests would forward x-api-key to whatever host a redirect names.
            # Streamed, so the body is read under the poll's deadline and size cap (below).
            response = self.session.get(self.base_url + path, params=params, headers=headers,
                                        timeout=timeout, allow_redirects=False, stream=True)
        except requests.Timeout:
            self.on_response(endpoint, "none")
            raise AdminAPIError("timeout", f"{endpoint}: no answer within {timeout:.3g}s") from None
        except requests.RequestException as exc:
            self.on_response(endpoint, "none")
            raise AdminAPIError("connection", f"{endpoint}: {type(exc).__name__}") from None
        self.on_response(endpoint, str(response.status_code))
        request_id = response.headers.get("request-id")
        try:
            if 300 <= response.status_code < 400:
                raise AdminAPIError("invalid_response", f"{endpoint}: unexpected redirect, not followed",
                                    status=response.status_code, request_id=request_id, final=True)
            content = self._read_body(endpoint, response, deadline, request_id)
        finally:
            if response.raw is not None:
                response.close()
        if response.status_code != 200:
            raise _status_error(endpoint, response.status_code, response.headers, content, request_id)
        try:
            body = json.loads(content)
        except ValueError:
            raise AdminAPIError("invalid_response", f"{endpoint}: response body is not valid JSON",
                                status=200, request_id=request_id) from None
        if not isinstance(body, dict):
            raise AdminAPIError("invalid_response", f"{endpoint}: response body is not a JSON object",
                                status=200, request_id=request_id)
        return body

    def _read_body(self, endpoint: str, response: requests.Response, deadline: float,
                   request_id: str | None) -> bytes:
        """The body, read chunk by chunk as it arrives: a server that drips it byte by byte cannot
        hold a poll past its deadline, and one larger than the cap is refused, not read to the end."""
        cap = self.settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise AdminAPIError("invalid_response", f"{endpoint}: a response of {declared} bytes is over the"
                                f" {cap}-byte cap (http.max_response_bytes)", request_id=request_id, final=True)
        raw = response.raw
        if raw is None:  # an adapter that has read the body already (test doubles, mocks)
            if len(response.content) > cap:
                raise AdminAPIError("invalid_response", f"{endpoint}: the response is over the {cap}-byte cap"
                                    " (http.max_response_bytes)", request_id=request_id, final=True)
            return response.content
        # read1 returns what has arrived; without it (urllib3 < 2.3), small reads bound the wait.
        read = ((lambda: raw.read1(65536, decode_content=True)) if hasattr(raw, "read1")
                else (lambda: raw.read(1024, decode_content=True)))
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self.monotonic() > deadline:
                    raise AdminAPIError("timeout", f"{endpoint}: the response body was still arriving at the poll"
                                        " deadline", request_id=request_id, final=True)
                chunk = read()
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > cap:
                    raise AdminAPIError("invalid_response", f"{endpoint}: the response is over the {cap}-byte cap"
                                        " (http.max_response_bytes)", request_id=request_id, final=True)
                chunks.append(chunk)
        except urllib3.exceptions.ReadTimeoutError:
            raise AdminAPIError("timeout", f"{endpoint}: the response body stalled", request_id=request_id) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise AdminAPIError("connection", f"{endpoint}: {type(exc).__name__} while reading the body",
                                request_id=request_id) from None


def _status_error(endpoint: str, status: int, headers: Mapping[str, str], content: bytes,
                  request_id: str | None) -> AdminAPIError:
    error_type = "unknown"
    try:
        error = json.loads(content).get("error") or {}
        error_type = str(error.get("type") or error_type)
    except (ValueError, AttributeError):
        pass
    # Match on status and error.type, never on message text (anthropic-api.md §0).
    if status == 429:
        reason = "rate_limited"
    elif status == 529:
        reason = "overloaded"
    elif status >= 500:
        reason = "server_error"
    elif status in (401, 403):
        reason = "auth"
    else:
        reason = "bad_request"
    exc = AdminAPIError(reason, f"{endpoint}: {error_type}", status=status, request_id=request_id)
    exc.retry_after = _retry_after(headers.get("retry-after"))
    return exc


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _retryable(exc: BaseException) -> bool:
    if not isinstance(exc, AdminAPIError) or exc.final:
        return False
    if exc.status is None:
        return exc.reason in ("timeout", "connection")
    return exc.status == 429 or exc.status >= 500


def _backoff(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, AdminAPIError) and exc.retry_after is not None:
        return exc.retry_after
    # Exponential with "full jitter" in the upper half, so many exporters do not retry in step.
    base = min(MAX_BACKOFF, 2.0 ** (state.attempt_number - 1))
    return base * (0.5 + random.random() / 2)


# -- parsing: tolerant of unknown fields; a row that cannot be read is skipped and counted ----

def _in_order(buckets: Iterable[Bucket]) -> Iterator[Bucket]:
    """Buckets come oldest first; an overlap across pages would be counted twice, so refuse it."""
    previous: Bucket | None = None
    for bucket in buckets:
        if previous is not None and bucket.starting_at < previous.ending_at:
            raise AdminAPIError("invalid_response",
                                f"bucket {format_time(bucket.starting_at)} overlaps the one before")
        yield bucket
        previous = bucket


def _report(buckets: Iterable[Bucket]) -> Report:
    report = Report()
    for bucket in buckets:
        report.buckets.append(bucket)
        for reason, count in bucket.skipped:
            report.skipped[reason] += count
    return report


def _parse_bucket(raw: Any, parse_row: Callable[[dict[str, Any]], Any]) -> Bucket:
    if not isinstance(raw, dict):
        raise AdminAPIError("invalid_response", "a bucket is not a JSON object")
    try:
        start, end = parse_time(raw.get("starting_at")), parse_time(raw.get("ending_at"))
    except ValueError as exc:
        raise AdminAPIError("invalid_response", f"bucket has a bad time: {exc}") from None
    results = raw.get("results")
    if results is not None and not isinstance(results, list):
        raise AdminAPIError("invalid_response", "a bucket's results is not a list")
    rows = []
    skipped: collections.Counter[str] = collections.Counter()
    for item in results or ():
        try:
            rows.append(parse_row(item))
        except _SkipRow as skip:
            skipped[skip.reason] += 1
    return Bucket(start, end, tuple(rows), tuple(sorted(skipped.items())))


class _SkipRow(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _SkipRow("invalid_row")
    return value


def _required_count(row: dict[str, Any], key: str) -> int:
    if key not in row:
        raise _SkipRow("invalid_row")
    return _count(row[key])


def _nested(row: dict[str, Any], key: str) -> dict[str, Any]:
    value = row.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _SkipRow("invalid_row")
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_usage_row(row: Any, group_by: tuple[str, ...]) -> UsageRow:
    if not isinstance(row, dict):
        raise _SkipRow("invalid_row")
    cache_creation = _nested(row, "cache_creation")
    dims = tuple(row.get(d) for d in group_by)
    if any(d is not None and not isinstance(d, str) for d in dims):
        raise _SkipRow("invalid_row")
    return UsageRow(dims, UsageValues(
        uncached_input_tokens=_required_count(row, "uncached_input_tokens"),
        cache_read_input_tokens=_required_count(row, "cache_read_input_tokens"),
        cache_creation_5m=_count(cache_creation.get("ephemeral_5m_input_tokens")),
        cache_creation_1h=_count(cache_creation.get("ephemeral_1h_input_tokens")),
        output_tokens=_required_count(row, "output_tokens"),
        web_search_requests=_count(_nested(row, "server_tool_use").get("web_search_requests")),
    ))


def _parse_cost_row(row: Any) -> CostRow:
    if not isinstance(row, dict):
        raise _SkipRow("invalid_row")
    if row.get("currency") not in (None, "USD"):  # absent or null: the API documents only USD
        raise _SkipRow("currency")
    amount = row.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
        raise _SkipRow("invalid_row")
    try:
        cents = Decimal(str(amount))
    except InvalidOperation:
        raise _SkipRow("invalid_row") from None
    if not cents.is_finite():
        raise _SkipRow("invalid_row")
    dims = tuple(row.get(d) for d in COST_DIMENSIONS)
    if any(d is not None and not isinstance(d, str) for d in dims):
        raise _SkipRow("invalid_row")
    return CostRow(dims, cents)



def _parse_rate_limit_group(item: dict[str, Any], *, workspace: bool) -> RateLimitGroup | None:
    """Both shapes: with a ``group`` object (keyed on its id), and the older one without."""
    group = _as_dict(item.get("group"))
    group_id = group.get("id") or (item.get("rate_limit_id") if workspace else item.get("id"))
    group_type = group.get("type") or item.get("group_type")
    if not isinstance(group_id, str) or not group_id or not isinstance(group_type, str) or not group_type:
        return None
    name = group.get("display_name")
    models = _as_list(item.get("models"))
    limits = []
    for limit in _as_list(item.get("limits")):
        if not isinstance(limit, dict):
            continue
        kind, value = limit.get("type"), limit.get("value")
        if not isinstance(kind, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        source = limit.get("source")
        source_type = source.get("type") if isinstance(source, dict) else None
        limits.append((kind, float(value), source_type if isinstance(source_type, str) else "organization"))
    return RateLimitGroup(group_id, group_type, name if isinstance(name, str) else "",
                          tuple(m for m in models if isinstance(m, str)), tuple(limits))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _parse_claude_code_record(item: dict[str, Any]) -> ClaudeCodeRecord | None:
    actor = _as_dict(item.get("actor"))
    actor_type = actor.get("type")
    name = actor.get("email_address") or actor.get("api_key_name")
    if not isinstance(actor_type, str) or not isinstance(name, str):
        return None
    core = _as_dict(item.get("core_metrics"))
    lines = _as_dict(core.get("lines_of_code"))
    tools = []
    for tool, counts in _as_dict(item.get("tool_actions")).items():
        if isinstance(counts, dict):
            tools.append((str(tool), _int(counts.get("accepted")), _int(counts.get("rejected"))))
    models = []
    for entry in _as_list(item.get("model_breakdown")):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            continue
        tokens = _as_dict(entry.get("tokens"))
        cost = _as_dict(entry.get("estimated_cost"))
        cents = _int(cost.get("amount")) if cost.get("currency") in (None, "USD") else 0
        models.append((entry["model"], _int(tokens.get("input")), _int(tokens.get("output")),
                       _int(tokens.get("cache_read")), _int(tokens.get("cache_creation")), cents))
    return ClaudeCodeRecord(
        name, actor_type, _label(item.get("customer_type")), _label(item.get("terminal_type")),
        _int(core.get("num_sessions")), _int(lines.get("added")), _int(lines.get("removed")),
        _int(core.get("commits_by_claude_code")), _int(core.get("pull_requests_by_claude_code")),
        tuple(tools), tuple(models))


def _label(value: Any) -> str:
    return value if isinstance(value, str) and value else "unknown"


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
