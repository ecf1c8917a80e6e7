"""Claude Code analytics: daily records held per UTC day, summed over the windows of whole days.

Without ``per_actor`` the figures are per customer type and terminal; with it, per actor too
(emails are personal data, so that is opt-in). `active_actors` counts the distinct actors
with at least one record in the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from exporter.admin_api import ClaudeCodeRecord
from exporter.config import Window
from exporter.windows import summing_width, window_range

# The sums kept per label set: sessions, lines added, lines removed, commits, pull requests.
CORE_FIELDS = ("sessions", "lines_added", "lines_removed", "commits", "pull_requests")
# Per model: input, output, cache read, cache creation tokens, estimated cost in cents.
MODEL_FIELDS = ("input", "output", "cache_read", "cache_creation", "cents")

Labels = tuple[str, ...]


@dataclass(frozen=True)
class ClaudeCodeSnapshot:
    label_names: tuple[str, ...]
    # labels -> window -> CORE_FIELDS sums and the active actor count last
    core: Mapping[Labels, Mapping[str, tuple[int, ...]]]
    # (labels, tool) -> window -> (accepted, rejected)
    tools: Mapping[tuple[Labels, str], Mapping[str, tuple[int, int]]]
    # (labels, model) -> window -> MODEL_FIELDS sums
    models: Mapping[tuple[Labels, str], Mapping[str, tuple[int, ...]]]
    data_timestamp: float | None
    withheld: bool = False


def label_names(per_actor: bool) -> tuple[str, ...]:
    return ("customer_type", "terminal_type", "actor", "actor_type") if per_actor else (
        "customer_type", "terminal_type")


def day_windows(windows: Iterable[Window], now: datetime) -> dict[str, tuple[date, date]]:
    """Window name -> [first day, end day) for the windows of whole days."""
    result = {}
    for window in windows:
        if summing_width(window, "claude_code") == "1d":
            start, end = window_range(window, "1d", now)
            result[window.name] = (start.date(), end.date())
    return result


def needed_days(windows: Iterable[Window], now: datetime) -> list[date]:
    spans = day_windows(windows, now).values()
    if not spans:
        return []
    first, end = min(s for s, _ in spans), max(e for _, e in spans)
    return [first + timedelta(days=i) for i in range((end - first).days)]


def build_claude_code_snapshot(days: Mapping[date, tuple[ClaudeCodeRecord, ...]], windows: Iterable[Window],
                               per_actor: bool, now: datetime, polled_at: datetime,
                               withheld: bool = False) -> ClaudeCodeSnapshot:
    spans = day_windows(windows, now)
    names = label_names(per_actor)
    core: dict[Labels, dict[str, list[int]]] = {}
    actors: dict[Labels, dict[str, set[tuple[str, str]]]] = {}
    tools: dict[tuple[Labels, str], dict[str, list[int]]] = {}
    models: dict[tuple[Labels, str], dict[str, list[int]]] = {}
    if not withheld:
        for name, (first, end) in spans.items():
            for day, records in days.items():
                if not first <= day < end:
                    continue
                for record in records:
                    labels: Labels = (record.customer_type, record.terminal_type)
                    if per_actor:
                        labels += (record.actor, record.actor_type)
                    sums = core.setdefault(labels, {}).setdefault(name, [0] * len(CORE_FIELDS))
                    for i, value in enumerate((record.sessions, record.lines_added, record.lines_removed,
                                               record.commits, record.pull_requests)):
                        sums[i] += value
                    actors.setdefault(labels, {}).setdefault(name, set()).add((record.actor_type, record.actor))
                    for tool, accepted, rejected in record.tool_actions:
                        counts = tools.setdefault((labels, tool), {}).setdefault(name, [0, 0])
                        counts[0] += accepted
                        counts[1] += rejected
                    for model, *values in record.models:
                        totals = models.setdefault((labels, model), {}).setdefault(name, [0] * len(MODEL_FIELDS))
                        for i, value in enumerate(values):
                            totals[i] += value
    windows_served = tuple(spans)
    return ClaudeCodeSnapshot(
        names,
        {labels: {w: (*per.get(w, [0] * len(CORE_FIELDS)), len(actors[labels].get(w, ())))
                  for w in windows_served} for labels, per in core.items()},
        {key: {w: tuple(per.get(w, (0, 0))) for w in windows_served} for key, per in tools.items()},  # type: ignore[misc]
        {key: {w: tuple(per.get(w, [0] * len(MODEL_FIELDS))) for w in windows_served} for key, per in models.items()},
        _data_timestamp(days, polled_at),
        withheld,
    )


def _data_timestamp(days: Mapping[date, tuple[ClaudeCodeRecord, ...]], polled_at: datetime) -> float | None:
    """End of the newest day that held any record, capped at the poll's time."""
    newest = max((day for day, records in days.items() if records), default=None)
    if newest is None:
        return None
    end = datetime.combine(newest + timedelta(days=1), time(), tzinfo=polled_at.tzinfo)
    return min(end, polled_at).timestamp()
