"""Polls one organization's reports on their own intervals, independent of scrapes.

Each poll builds a complete new snapshot and swaps it into the state in one step, so a
scrape never sees half a poll; a failed poll leaves the previous snapshot in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from exporter.admin_api import AdminAPIError, AdminClient
from exporter.config import Config, Organization
from exporter.snapshot import APIKeysSnapshot, WorkspacesSnapshot, build_cost_snapshot, build_usage_snapshot
from exporter.state import REPORTS, ExporterState
from exporter.windows import fetch_range

log = logging.getLogger(__name__)


class Poller:
    """Fetches one organization's reports and stores the snapshots."""

    def __init__(
        self,
        org: Organization,
        config: Config,
        state: ExporterState,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.org = org
        self.config = config
        self.state = state
        self.clock = clock
        self.monotonic = monotonic
        self.client = AdminClient(
            org, config.http, session=session, clock=clock, monotonic=monotonic, sleep=sleep,
            on_response=lambda endpoint, code: state.api_request(org.name, endpoint, code),
        )
        self.intervals = {report: getattr(config.poll_intervals, report) for report in REPORTS}

    def poll(self, report: str) -> bool:
        """Poll one report now; True if it succeeded. Never raises."""
        started = self.monotonic()
        try:
            snapshot = self._fetch(report, self.client.deadline())
        except AdminAPIError as exc:
            duration = self.monotonic() - started
            self.state.failed(self.org.name, report, exc.reason, duration)
            log.warning("poll failed, serving the last good data: %s", exc,
                        extra={"organization": self.org.name, "report": report, "reason": exc.reason})
            return False
        except Exception:  # a bug must not kill the poll loop; count it and keep serving
            duration = self.monotonic() - started
            self.state.failed(self.org.name, report, "internal", duration)
            log.exception("poll failed unexpectedly",
                          extra={"organization": self.org.name, "report": report, "reason": "internal"})
            return False
        duration = self.monotonic() - started
        self.state.succeeded(self.org.name, report, snapshot, self.clock().timestamp(), duration)
        log.debug("polled", extra={"organization": self.org.name, "report": report,
                                   "duration": round(duration, 3)})
        return True

    def _fetch(self, report: str, deadline: float) -> object:
        now = self.clock()
        if report == "usage":
            by_width = {}
            skipped = {}
            # One fetch per bucket width, covering the widest window of that width.
            for width in sorted({w.bucket_width for w in self.config.windows}):
                start, end = fetch_range([w for w in self.config.windows if w.bucket_width == width], now)
                result = self.client.usage_report(start, end, width, self.config.group_by, deadline)
                by_width[width] = result.buckets
                skipped[width] = result.skipped
            for counts in skipped.values():
                self.state.skipped_rows(self.org.name, report, counts)
            return build_usage_snapshot(by_width, self.config.windows, self.config.group_by, now)
        if report == "cost":
            daily = [w for w in self.config.windows if w.bucket_width == "1d"]
            if not daily:
                return build_cost_snapshot((), (), now)
            start, end = fetch_range(daily, now)
            result = self.client.cost_report(start, end, deadline)
            self.state.skipped_rows(self.org.name, report, result.skipped)
            return build_cost_snapshot(result.buckets, daily, now)
        if report == "api_keys":
            return APIKeysSnapshot(tuple(self.client.api_keys(deadline)))
        if report == "workspaces":
            return WorkspacesSnapshot(tuple(self.client.workspaces(deadline)))
        raise ValueError(f"unknown report {report!r}")

    def poll_all(self) -> bool:
        """Poll every report once, in order; True if all succeeded."""
        return all([self.poll(report) for report in REPORTS])

    def run(self, stop: threading.Event) -> None:
        """Poll each report on its interval until ``stop`` is set; reports take turns."""
        due = {report: self.monotonic() for report in REPORTS}
        while not stop.is_set():
            report = min(due, key=due.__getitem__)
            wait = due[report] - self.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            started = self.monotonic()
            self.poll(report)
            due[report] = started + self.intervals[report]


def start_pollers(config: Config, state: ExporterState, stop: threading.Event) -> list[threading.Thread]:
    """One daemon thread per organization, so a slow organization delays no other."""
    threads = []
    for org in config.organizations:
        poller = Poller(org, config, state)
        thread = threading.Thread(target=poller.run, args=(stop,), name=f"poller-{org.name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads
