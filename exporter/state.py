"""The exporter's shared state: the latest good snapshot per report, poll health and counters.

Pollers write, the collector reads. Every change bumps ``generation`` so the rendered
exposition can be cached until the next change.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from exporter.config import REPORTS

# The `reason` values of anthropic_exporter_poll_errors_total, created at 0 up front.
POLL_ERROR_REASONS = ("timeout", "connection", "rate_limited", "overloaded", "server_error", "auth",
                      "bad_request", "invalid_response", "internal")
# The `reason` values of anthropic_exporter_skipped_rows, for the reports of buckets.
SKIP_REASONS = ("invalid_row", "currency")


@dataclass(frozen=True)
class ReportStatus:
    snapshot: Any = None  # the last good snapshot, kept through failed polls
    polled: bool = False  # a poll has finished, good or bad
    up: bool = False
    last_success: float | None = None
    poll_duration: float | None = None


class ExporterState:
    def __init__(self, organizations: Iterable[str], endpoints: Iterable[str], reports: Iterable[str] = REPORTS):
        self._lock = threading.Lock()
        self.organizations = tuple(organizations)
        self.reports = tuple(reports)
        self.generation = 0
        self._status = {(org, report): ReportStatus() for org in self.organizations for report in self.reports}
        self._api_requests: Counter[tuple[str, str, str]] = Counter(
            {(org, endpoint, "200"): 0 for org in self.organizations for endpoint in endpoints})
        self._poll_errors: Counter[tuple[str, str, str]] = Counter(
            {(org, report, reason): 0 for org in self.organizations
             for report in self.reports for reason in POLL_ERROR_REASONS})
        self._skipped_rows = {(org, report, reason): 0 for org in self.organizations
                              for report in ("usage", "cost") for reason in SKIP_REASONS}

    def status(self, org: str, report: str) -> ReportStatus:
        with self._lock:
            return self._status[(org, report)]

    def statuses(self) -> dict[tuple[str, str], ReportStatus]:
        with self._lock:
            return dict(self._status)

    def ready(self) -> bool:
        """Every report of every organization has been polled at least once."""
        with self._lock:
            return all(s.polled for s in self._status.values())

    def succeeded(self, org: str, report: str, snapshot: Any, finished_at: float, duration: float,
                  skipped: Mapping[str, int] | None = None) -> None:
        """A poll landed: its snapshot, and the rows skipped in the data now held."""
        with self._lock:
            self._status[(org, report)] = ReportStatus(snapshot, True, True, finished_at, duration)
            if skipped is not None:
                for reason in SKIP_REASONS:
                    self._skipped_rows[(org, report, reason)] = skipped.get(reason, 0)
            self.generation += 1

    def republish(self, org: str, report: str, snapshot: Any) -> None:
        """New figures without a poll: the clock moved a window, or the data went stale."""
        with self._lock:
            self._status[(org, report)] = replace(self._status[(org, report)], snapshot=snapshot)
            self.generation += 1

    def failed(self, org: str, report: str, reason: str, duration: float) -> None:
        with self._lock:
            old = self._status[(org, report)]
            self._status[(org, report)] = replace(old, polled=True, up=False, poll_duration=duration)
            self._poll_errors[(org, report, reason)] += 1
            self.generation += 1

    def api_request(self, org: str, endpoint: str, code: str) -> None:
        with self._lock:
            self._api_requests[(org, endpoint, code)] += 1
            self.generation += 1

    def counters(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int],
                                dict[tuple[str, str, str], int]]:
        """Copies of (api_requests, poll_errors, skipped_rows), keyed by their label values."""
        with self._lock:
            return dict(self._api_requests), dict(self._poll_errors), dict(self._skipped_rows)
