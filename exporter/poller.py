"""Polls one organization's reports on their own intervals, independent of scrapes.

The usage and cost reports keep their buckets between polls (``exporter.store``): the first
poll reads the range the windows need, later ones only a trailing horizon, and every
``full_refresh`` everything again. Each poll builds complete new stores and a new snapshot and
swaps them in at once, so a scrape never sees half a poll; a failed poll leaves the previous
ones in place. Between polls the windows follow the clock: at each bucket boundary they are
re-summed from the held buckets, and a report whose data is older than ``stale_after`` has
its windowed figures withheld.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import requests

from exporter.admin_api import AdminAPIError, AdminClient, ClaudeCodeRecord, RateLimitGroup
from exporter.claude_code import build_claude_code_snapshot, needed_days
from exporter.config import OPTIONAL_REPORTS, WINDOWED_REPORTS, Config, Organization
from exporter.ratelimits import peak_utilization
from exporter.snapshot import (
    USAGE_STRIDE,
    APIKeysSnapshot,
    RateLimitsSnapshot,
    WorkspacesSnapshot,
    build_cost_snapshot,
    build_usage_snapshot,
    estimate_ratio,
    store_cost_bucket,
    store_usage_bucket,
)
from exporter.state import ExporterState
from exporter.store import BucketStore, LabelTable
from exporter.windows import needed_range, next_boundary, widths_needed

log = logging.getLogger(__name__)


class ReportHistory:
    """A windowed report's held buckets: one store per bucket width, and its label table."""

    def __init__(self, widths: tuple[str, ...], stride: int):
        self.table = LabelTable()
        self.stores = {width: BucketStore(width, stride) for width in widths}


class Poller:
    """Fetches one organization's reports, keeps their data, and publishes the snapshots.

    ``poll`` calls the API; ``resum`` re-sums the windows from the held data at the clock's
    time (the clock crossed a bucket boundary, or a report went stale); ``run`` schedules both.
    """

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
        self.reports = [report for report in config.reports() if report in state.reports]
        self.intervals = {report: getattr(config.poll_intervals, report) for report in self.reports}
        self.history = {
            "usage": ReportHistory(widths_needed(config.windows, "usage"), USAGE_STRIDE),
            "cost": ReportHistory(widths_needed(config.windows, "cost"), 1),
        }
        self.claude_code_days: dict[date, tuple[ClaudeCodeRecord, ...]] = {}
        self.rate_limit_groups: tuple[RateLimitGroup, ...] = ()
        # Clock time of the newest good poll per windowed report: the data's age, for staleness.
        self.last_success: dict[str, datetime] = {}
        # Per windowed report, the instant its published figures were summed at, and whether
        # they were withheld: a re-sum is needed only when a boundary or the staleness moved.
        self.summed: dict[str, tuple[datetime, bool]] = {}

    def poll(self, report: str) -> bool:
        """Poll one report now; True if it succeeded. Never raises."""
        started = self.monotonic()
        try:
            snapshot, skipped = self._fetch(report, self.client.deadline())
        except AdminAPIError as exc:
            duration = self.monotonic() - started
            self.state.failed(self.org.name, report, exc.reason, duration)
            if report in OPTIONAL_REPORTS and exc.status in (403, 404):
                # This key may not read this report: say so once and stop asking, not every interval.
                self.reports.remove(report)
                log.warning("the admin key has no access to this report; it is turned off until the exporter"
                            " restarts (set %s.enabled: false to silence this): %s", report, exc,
                            extra={"organization": self.org.name, "report": report, "reason": exc.reason})
            else:
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
        finished = self.clock()
        if report in WINDOWED_REPORTS:
            self.last_success[report] = finished
        self.state.succeeded(self.org.name, report, snapshot, finished.timestamp(), duration, skipped)
        if report == "rate_limits" and "usage" in self.last_success:
            self._publish("usage", finished)  # the peak utilization needs the groups just read
        log.debug("polled", extra={"organization": self.org.name, "report": report,
                                   "duration": round(duration, 3)})
        return True

    def _fetch(self, report: str, deadline: float) -> tuple[object, Counter[str] | None]:
        now = self.clock()
        if report in self.history:
            history = self.history[report]
            # Build every width's new store first: a failure part-way leaves the old ones in place.
            stores = {width: self._refreshed(report, store, now, deadline) for width, store in history.stores.items()}
            history.stores = stores
            skipped: Counter[str] = Counter()
            for store in stores.values():
                skipped.update(store.skipped())
            return self._snapshot(report, now, now, withheld=False), skipped
        if report == "claude_code":
            self.claude_code_days = self._claude_code_days(now, deadline)
            return self._snapshot(report, now, now, withheld=False), None
        if report == "rate_limits":
            return self._rate_limits(deadline), None
        if report == "api_keys":
            return APIKeysSnapshot(tuple(self.client.api_keys(deadline))), None
        if report == "workspaces":
            return WorkspacesSnapshot(tuple(self.client.workspaces(deadline))), None
        raise ValueError(f"unknown report {report!r}")

    def _refreshed(self, report: str, store: BucketStore, now: datetime, deadline: float) -> BucketStore:
        """The store with its trailing horizon (or, when due, everything the windows need) re-read."""
        needed = needed_range(self.config.windows, report, store.width, now)
        assert needed is not None  # the store exists because a window needs its width
        plan = store.plan(needed, self.config.refetch[store.width], self.config.full_refresh, now)
        table = self.history[report].table
        if report == "usage":
            group_by = self.config.usage_fetch_group_by()
            buckets = self.client.usage_buckets(plan.start, plan.end, store.width, group_by, deadline)
            fetched = [store_usage_bucket(b, group_by, table, self.config.pricing) for b in buckets]
        else:
            fetched = [store_cost_bucket(b, table) for b in self.client.cost_buckets(plan.start, plan.end, deadline)]
        return store.merged(plan, fetched, keep_from=needed[0], now=now)

    def _claude_code_days(self, now: datetime, deadline: float) -> dict[date, tuple[ClaudeCodeRecord, ...]]:
        """The days the windows need: those not held yet (the first poll: all), then only
        yesterday and today, whose data is still landing. One request (plus pages) per day."""
        needed = needed_days(self.config.windows, now)
        recent = {now.date(), now.date() - timedelta(days=1)}
        days = {day: self.claude_code_days[day] for day in needed if day in self.claude_code_days}
        for day in needed:
            if day not in days or day in recent:
                days[day] = tuple(self.client.claude_code(day, deadline))
        return days

    def _rate_limits(self, deadline: float) -> RateLimitsSnapshot:
        groups = tuple(self.client.rate_limits(deadline))
        inherited = tuple(replace(g, limits=tuple((kind, value, "organization") for kind, value, _ in g.limits))
                          for g in groups)
        spaces: WorkspacesSnapshot | None = self.state.status(self.org.name, "workspaces").snapshot \
            if "workspaces" in self.state.reports else None
        workspaces = []
        for space in spaces.workspaces if spaces else ():
            if space.archived:
                continue
            effective = self.client.workspace_rate_limits(space.id, deadline)
            # 404: the workspace has the organization's limits (the Default Workspace answers so)
            workspaces.append((space.id, inherited if effective is None else tuple(effective)))
        self.rate_limit_groups = groups
        return RateLimitsSnapshot(groups, tuple(workspaces))

    def _snapshot(self, report: str, now: datetime, polled_at: datetime, withheld: bool) -> object:
        self.summed[report] = (now, withheld)
        if report == "claude_code":
            return build_claude_code_snapshot(self.claude_code_days, self.config.windows,
                                              self.config.claude_code.per_actor, now, polled_at, withheld)
        history = self.history[report]
        fetch_group_by = self.config.usage_fetch_group_by()
        usage = self.history["usage"]
        if report == "usage":
            peaks = {}
            if not withheld and "1m" in history.stores:
                peaks = peak_utilization(history.stores["1m"], history.table, fetch_group_by.index("model"),
                                         self.rate_limit_groups, self.config.windows, now)
            return build_usage_snapshot(history.stores, history.table, self.config.windows, self.config.group_by,
                                        now, polled_at, withheld, peaks, fetch_group_by)
        ratio = {}
        if not withheld and "1h" in usage.stores and "1d" in history.stores:
            ratio = estimate_ratio(usage.stores["1h"], usage.table, fetch_group_by, history.stores["1d"],
                                   history.table, now)
        return build_cost_snapshot(history.stores, history.table, self.config.windows, now, polled_at, withheld,
                                   ratio)

    def _publish(self, report: str, now: datetime) -> None:
        last = self.last_success[report]
        self.state.republish(self.org.name, report, self._snapshot(report, now, last, self.stale(report, now)))

    def stale(self, report: str, now: datetime) -> bool:
        """The report's newest good poll is older than its ``stale_after``: withhold its figures."""
        limit = getattr(self.config.stale_after, report)
        last = self.last_success.get(report)
        return limit is not None and last is not None and (now - last).total_seconds() > limit

    def resum(self, now: datetime | None = None) -> None:
        """Publish, summed at ``now`` (default: the clock), every polled windowed report whose
        figures the clock has moved since they were summed: a bucket boundary of its windows
        passed, or its data went stale. No API call."""
        now = self.clock() if now is None else now
        for report in self.last_success:
            summed_at, withheld = self.summed[report]
            boundary = next_boundary(self._widths(report), summed_at)
            if (boundary is not None and boundary <= now) or withheld != self.stale(report, now):
                self._publish(report, now)

    def _widths(self, report: str) -> tuple[str, ...]:
        return ("1d",) if report == "claude_code" else tuple(self.history[report].stores)

    def next_resum_at(self, now: datetime) -> datetime | None:
        """When the published figures next change without a poll: a served window's bucket
        boundary, or a report's data going stale."""
        moments = []
        for report, last in self.last_success.items():
            boundary = next_boundary(self._widths(report), now)
            if boundary is not None:
                moments.append(boundary)
            limit = getattr(self.config.stale_after, report)
            if limit is not None:
                # Stale once strictly older than the limit; a millisecond later is the first such instant.
                stale_at = last + timedelta(seconds=limit, milliseconds=1)
                if stale_at > now:
                    moments.append(stale_at)
        return min(moments, default=None)

    def poll_all(self) -> bool:
        """Poll every report once, in order; True if all succeeded."""
        return all([self.poll(report) for report in list(self.reports)])

    def run(self, stop: threading.Event) -> None:
        """Poll each report on its interval, and re-sum when the clock moves the figures,
        until ``stop`` is set."""
        due = {report: self.monotonic() for report in self.reports}
        while not stop.is_set():
            due = {report: at for report, at in due.items() if report in self.reports}  # some may turn off
            if not due:
                stop.wait()
                return
            report = min(due, key=due.__getitem__)
            wait = due[report] - self.monotonic()
            now = self.clock()
            resum_at = self.next_resum_at(now)
            if resum_at is not None and (resum_at - now).total_seconds() < wait:
                if stop.wait(max((resum_at - now).total_seconds(), 0)):
                    return
                # Sum at the boundary itself, should the timer wake a hair early.
                self.resum(max(self.clock(), resum_at))
                continue
            if wait > 0 and stop.wait(wait):
                return
            started = self.monotonic()
            self.poll(report)
            due[report] = started + self.intervals[report]
