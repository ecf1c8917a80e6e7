"""Turns the exporter's state into metric families (metrics.md §1), and caches their rendering.

The collector only reads the latest snapshots: a scrape never calls the Admin API. Since the
polled figures change only when a poll lands, ``ExpositionCache`` renders them once per
change and appends the small, live part (process metrics, client metrics) on every scrape.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.admin_api import COST_DIMENSIONS
from exporter.claude_code import ClaudeCodeSnapshot
from exporter.pricing import default_table
from exporter.snapshot import APIKeysSnapshot, CostSnapshot, RateLimitsSnapshot, UsageSnapshot, WorkspacesSnapshot
from exporter.state import ExporterState

REFRESH = "Refreshed when the exporter polls the Admin API (on a schedule), not per scrape."
WINDOWED = ("Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape),"
            " re-summed as the window moves; withheld while the data is older than stale_after.")
POLL_UPDATE = "Changes when a poll of the Admin API ends (on a schedule), not per scrape."
USAGE_ENDPOINT = "GET /v1/organizations/usage_report/messages"
COST_ENDPOINT = "GET /v1/organizations/cost_report"
RATE_LIMITS_ENDPOINT = "GET /v1/organizations/rate_limits"
WORKSPACE_RATE_LIMITS_ENDPOINT = "GET /v1/organizations/workspaces/{id}/rate_limits"
CLAUDE_CODE_ENDPOINT = "GET /v1/organizations/usage_report/claude_code"

# (metric name, the usage report field it sums, the UsageValues attribute that holds it)
USAGE_METRICS = (
    ("anthropic_usage_uncached_input_tokens", "uncached_input_tokens", "uncached_input_tokens"),
    ("anthropic_usage_cache_read_input_tokens", "cache_read_input_tokens", "cache_read_input_tokens"),
    ("anthropic_usage_output_tokens", "output_tokens", "output_tokens"),
    ("anthropic_usage_web_search_requests", "server_tool_use.web_search_requests", "web_search_requests"),
)


class AdminCollector:
    """Every metric of metrics.md §1, built fresh from the state on each ``collect()``.

    Example output (one series of each kind)::

        anthropic_usage_output_tokens{organization="acme",window="1h",workspace_id="default",
            api_key_id="console",model="claude-opus-4-6",service_tier="standard",
            context_window="0-200k"} 512.0
        anthropic_cost_usd{organization="acme",window="today",workspace_id="wrkspc_01...",
            cost_type="tokens",model="claude-opus-4-6",token_type="output_tokens",
            service_tier="standard",context_window="0-200k",inference_geo="global"} 1.2378912
        anthropic_api_key_info{organization="acme",api_key_id="apikey_01...",api_key_name="CI",
            workspace_id="default",status="active"} 1.0
        anthropic_exporter_up{organization="acme",report="usage"} 1.0
    """

    def __init__(self, state: ExporterState, version: str = __version__, price_table_version: str | None = None):
        self.state = state
        self.version = version
        self.price_table_version = price_table_version or str(default_table().version)

    def collect(self) -> Iterator[Metric]:
        statuses = self.state.statuses()
        orgs = self.state.organizations

        def snapshots(report: str) -> dict[str, Any]:
            return {org: status.snapshot for org in orgs
                    if (status := statuses.get((org, report))) is not None and status.snapshot is not None}

        usage = snapshots("usage")
        yield from self._usage(usage)
        yield from self._cost(snapshots("cost"))
        yield from self._reconciliation(snapshots("cost"), orgs)
        yield from self._names(statuses, orgs)
        yield from self._rate_limits(snapshots("rate_limits"), usage)
        yield from self._claude_code(snapshots("claude_code"))
        yield from self._health(statuses)

    def _usage(self, snapshots: dict[str, UsageSnapshot]) -> Iterator[Metric]:
        present = snapshots
        group_by = next(iter(present.values())).label_names if present else ()
        labels = ["organization", "window", *group_by]
        for name, field, attribute in USAGE_METRICS:
            family = GaugeMetricFamily(
                name, f"Sum over the window of `{field}` from {USAGE_ENDPOINT}. {WINDOWED}", labels=labels)
            for org, snapshot in present.items():
                for label_values, per_window in snapshot.series.items():
                    for window, values in per_window.items():
                        family.add_metric([org, window, *label_values], getattr(values, attribute))
            yield family
        cost = GaugeMetricFamily(
            "anthropic_usage_estimated_cost_usd",
            f"The window's usage from {USAGE_ENDPOINT} priced per bucket with the price table in force at the"
            " bucket's time (anthropic-usage-exporter prices), in US dollars: an estimate that lands within"
            f" minutes, where the cost report lags by a day. {WINDOWED}", labels=labels)
        unpriced = GaugeMetricFamily(
            "anthropic_usage_unpriced_tokens",
            f"Tokens of the window from {USAGE_ENDPOINT} whose model (or tier) the price table cannot price;"
            f" left out of anthropic_usage_estimated_cost_usd. {WINDOWED}",
            labels=["organization", "window", "model"])
        for org, snapshot in present.items():
            for label_values, usd_per_window in snapshot.estimated_cost.items():
                for window, usd in usd_per_window.items():
                    cost.add_metric([org, window, *label_values], float(usd))
            for (model,), per_window_tokens in sorted(snapshot.unpriced_tokens.items()):
                for window, tokens in per_window_tokens.items():
                    unpriced.add_metric([org, window, model], tokens)
        yield cost
        yield unpriced
        family = GaugeMetricFamily(
            "anthropic_usage_cache_creation_input_tokens",
            f"Sum over the window of `cache_creation.ephemeral_{{5m,1h}}_input_tokens` from {USAGE_ENDPOINT},"
            f" by cache TTL. {WINDOWED}", labels=[*labels, "cache_ttl"])
        for org, snapshot in present.items():
            for label_values, per_window in snapshot.series.items():
                for window, values in per_window.items():
                    family.add_metric([org, window, *label_values, "5m"], values.cache_creation_5m)
                    family.add_metric([org, window, *label_values, "1h"], values.cache_creation_1h)
        yield family

    def _cost(self, snapshots: dict[str, CostSnapshot]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "anthropic_cost_usd",
            f"Sum over the window of `amount` (cents) / 100 from {COST_ENDPOINT} grouped by workspace_id"
            f" and description, in US dollars. {WINDOWED}", labels=["organization", "window", *COST_DIMENSIONS])
        for org, snapshot in snapshots.items():
            for label_values, per_window in snapshot.series.items():
                for window, usd in per_window.items():
                    family.add_metric([org, window, *label_values], float(usd))
        yield family

    def _reconciliation(self, snapshots: dict[str, CostSnapshot], orgs: tuple[str, ...]) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "anthropic_cost_estimate_ratio",
            f"Estimated ({USAGE_ENDPOINT} priced with the price table) ÷ reported token cost ({COST_ENDPOINT})"
            " over the last 7 complete UTC days, per workspace and model: near 1, the table matches the bill."
            f" {REFRESH}", labels=["organization", "workspace_id", "model"])
        for org, snapshot in snapshots.items():
            for (workspace_id, model), value in sorted(snapshot.estimate_ratio.items()):
                ratio.add_metric([org, workspace_id, model], value)
        yield ratio
        info = GaugeMetricFamily("anthropic_pricing_info", "The price table in force (its version); always 1.",
                                 labels=["organization", "table_version"])
        for org in orgs:
            info.add_metric([org, self.price_table_version], 1)
        yield info

    def _names(self, statuses, orgs) -> Iterator[Metric]:
        keys = GaugeMetricFamily(
            "anthropic_api_key_info",
            f"API key names, 1 per key (all statuses), from GET /v1/organizations/api_keys. {REFRESH}",
            labels=["organization", "api_key_id", "api_key_name", "workspace_id", "status"])
        spaces = GaugeMetricFamily(
            "anthropic_workspace_info",
            f"Workspace names, 1 per workspace (archived included), from GET /v1/organizations/workspaces."
            f" {REFRESH}", labels=["organization", "workspace_id", "workspace_name"])
        for org in orgs:
            # Console usage has no key and the Default Workspace is not listed; name them anyway.
            keys.add_metric([org, "console", "Console", "default", "active"], 1)
            spaces.add_metric([org, "default", "Default"], 1)
            key_status = statuses.get((org, "api_keys"))
            key_snapshot: APIKeysSnapshot | None = key_status.snapshot if key_status else None
            for key in key_snapshot.keys if key_snapshot else ():
                keys.add_metric([org, key.id, key.name, key.workspace_id or "default", key.status], 1)
            space_status = statuses.get((org, "workspaces"))
            space_snapshot: WorkspacesSnapshot | None = space_status.snapshot if space_status else None
            for space in space_snapshot.workspaces if space_snapshot else ():
                spaces.add_metric([org, space.id, space.name], 1)
        yield keys
        yield spaces

    def _rate_limits(self, snapshots: dict[str, RateLimitsSnapshot], usage: dict[str, UsageSnapshot]
                     ) -> Iterator[Metric]:
        group = ["organization", "group_id", "group_type"]
        limit = GaugeMetricFamily(
            "anthropic_rate_limit", f"The organization's configured limit per rate-limit group and limiter, from"
            f" {RATE_LIMITS_ENDPOINT} (`limits[].value`). {REFRESH}", labels=[*group, "limit_type"])
        workspace = GaugeMetricFamily(
            "anthropic_workspace_rate_limit", "Each workspace's effective limit (source: workspace for an override,"
            f" organization for an inherited one), from {WORKSPACE_RATE_LIMITS_ENDPOINT}?include_inherited=true."
            f" {REFRESH}", labels=["organization", "workspace_id", "group_id", "group_type", "limit_type", "source"])
        info = GaugeMetricFamily(
            "anthropic_rate_limit_group_info", "1 per model id or alias a rate-limit group covers (`models`), from"
            f" {RATE_LIMITS_ENDPOINT}: join usage by model onto groups. {REFRESH}",
            labels=[*group, "group_name", "model"])
        for org, snapshot in snapshots.items():
            for g in snapshot.groups:
                for kind, value, _ in g.limits:
                    limit.add_metric([org, g.group_id, g.group_type, kind], value)
                for model in g.models:
                    info.add_metric([org, g.group_id, g.group_type, g.group_name, model], 1)
            for workspace_id, groups in snapshot.workspaces:
                for g in groups:
                    for kind, value, source in g.limits:
                        workspace.add_metric([org, workspace_id, g.group_id, g.group_type, kind, source], value)
        peak = GaugeMetricFamily(
            "anthropic_rate_limit_peak_utilization",
            f"Over the window's 1m buckets of {USAGE_ENDPOINT}, the busiest minute's tokens of the limiter's kind"
            f" summed over the group's models, divided by the organization's limit from {RATE_LIMITS_ENDPOINT}."
            f" {WINDOWED}", labels=["organization", "group_id", "limit_type", "window"])
        for org, held in usage.items():
            for (group_id, kind, window), ratio in sorted(held.peak_utilization.items()):
                peak.add_metric([org, group_id, kind, window], ratio)
        yield from (limit, workspace, info, peak)

    def _claude_code(self, snapshots: dict[str, ClaudeCodeSnapshot]) -> Iterator[Metric]:
        names = next(iter(snapshots.values())).label_names if snapshots else ()
        base = ["organization", "window", *names]

        def family(name: str, what: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, f"Sum over the window's UTC days of {what} from {CLAUDE_CODE_ENDPOINT}."
                                           f" {WINDOWED}", labels=[*base, *extra])

        sessions = family("anthropic_claude_code_sessions", "`core_metrics.num_sessions`")
        lines = family("anthropic_claude_code_lines_of_code", "`core_metrics.lines_of_code`", ("change",))
        commits = family("anthropic_claude_code_commits", "`core_metrics.commits_by_claude_code`")
        pulls = family("anthropic_claude_code_pull_requests", "`core_metrics.pull_requests_by_claude_code`")
        actors = GaugeMetricFamily(
            "anthropic_claude_code_active_actors", "Distinct actors with at least one record in the window's UTC"
            f" days, from {CLAUDE_CODE_ENDPOINT}. {WINDOWED}", labels=base)
        tools = family("anthropic_claude_code_tool_actions", "`tool_actions`", ("tool", "decision"))
        tokens = family("anthropic_claude_code_tokens", "`model_breakdown[].tokens`", ("model", "token_type"))
        cost = family("anthropic_claude_code_estimated_cost_usd", "`model_breakdown[].estimated_cost` (cents) / 100,"
                      " in US dollars,", ("model",))
        for org, snapshot in snapshots.items():
            for labels, per_window in snapshot.core.items():
                for window, (n, added, removed, made, prs, active) in per_window.items():
                    key = [org, window, *labels]
                    sessions.add_metric(key, n)
                    lines.add_metric([*key, "added"], added)
                    lines.add_metric([*key, "removed"], removed)
                    commits.add_metric(key, made)
                    pulls.add_metric(key, prs)
                    actors.add_metric(key, active)
            for (labels, tool), per_window in snapshot.tools.items():
                for window, (accepted, rejected) in per_window.items():
                    tools.add_metric([org, window, *labels, tool, "accepted"], accepted)
                    tools.add_metric([org, window, *labels, tool, "rejected"], rejected)
            for (labels, model), per_window in snapshot.models.items():
                for window, (tin, tout, read, created, cents) in per_window.items():
                    key = [org, window, *labels, model]
                    for token_type, count in (("input", tin), ("output", tout), ("cache_read", read),
                                              ("cache_creation", created)):
                        tokens.add_metric([*key, token_type], count)
                    cost.add_metric(key, cents / 100)
        yield from (sessions, lines, commits, pulls, tools, tokens, cost, actors)

    def _health(self, statuses) -> Iterator[Metric]:
        build = GaugeMetricFamily("anthropic_exporter_build_info", "The exporter's version; always 1.",
                                  labels=["version"])
        build.add_metric([self.version], 1)
        yield build
        report_labels = ["organization", "report"]
        up = GaugeMetricFamily("anthropic_exporter_up",
                               "1 if the newest poll of the report succeeded, else 0 (the last good figures"
                               f" keep being served). {POLL_UPDATE}", labels=report_labels)
        success = GaugeMetricFamily("anthropic_exporter_last_success_timestamp_seconds",
                                    f"Unix time of the newest successful poll of the report. {POLL_UPDATE}",
                                    labels=report_labels)
        fresh = GaugeMetricFamily("anthropic_exporter_data_timestamp_seconds",
                                  "End (`ending_at`, at most the poll's time) of the newest bucket that held any"
                                  " data in the usage or cost report, at the finest width that has data: how"
                                  f" fresh the data is. {POLL_UPDATE}", labels=report_labels)
        duration = GaugeMetricFamily("anthropic_exporter_poll_duration_seconds",
                                     f"How long the newest poll of the report took, retries included. {POLL_UPDATE}",
                                     labels=report_labels)
        for (org, report), status in statuses.items():
            up.add_metric([org, report], 1 if status.up else 0)
            if status.last_success is not None:
                success.add_metric([org, report], status.last_success)
            stamp = getattr(status.snapshot, "data_timestamp", None)
            if stamp is not None:
                fresh.add_metric([org, report], stamp)
            if status.poll_duration is not None:
                duration.add_metric([org, report], status.poll_duration)
        yield from (up, success, fresh, duration)
        api_requests, poll_errors, skipped_rows = self.state.counters()
        requests_family = CounterMetricFamily(
            "anthropic_exporter_api_requests",
            "HTTP requests made to the Admin API, retries included, by endpoint and status code"
            " (`none` when no response arrived).", labels=["organization", "endpoint", "code"])
        for label_values, count in sorted(api_requests.items()):
            requests_family.add_metric(list(label_values), count)
        yield requests_family
        errors_family = CounterMetricFamily(
            "anthropic_exporter_poll_errors",
            "Failed polls of the Admin API, by report and reason.", labels=["organization", "report", "reason"])
        for label_values, count in sorted(poll_errors.items()):
            errors_family.add_metric(list(label_values), count)
        yield errors_family
        skipped_family = GaugeMetricFamily(
            "anthropic_exporter_skipped_rows",
            "Rows of the report data now held that could not be used: unreadable (invalid_row) or not in USD"
            f" (currency). A poll with skipped rows still succeeds. {POLL_UPDATE}",
            labels=["organization", "report", "reason"])
        for label_values, count in sorted(skipped_rows.items()):
            skipped_family.add_metric(list(label_values), count)
        yield skipped_family


class ExpositionCache:
    """Serves ``polled`` rendered once per state generation, followed by ``live`` rendered per call.

    With gzip, the compressor's state after the cached part is kept and copied per scrape, so
    the cached part is never compressed twice and the result is still one valid gzip stream.
    """

    def __init__(self, polled: CollectorRegistry, live: CollectorRegistry, generation: Callable[[], Hashable]):
        self.polled = polled
        self.live = live
        self.generation = generation
        self._lock = threading.Lock()
        self._cache: dict[bool, tuple[Hashable, bytes, bytes, zlib._Compress]] = {}

    def render(self, openmetrics: bool = False, gzip: bool = False) -> bytes:
        _, text, gz_prefix, compressor = self._cached(openmetrics)
        live = (generate_openmetrics if openmetrics else generate_text)(self.live)
        if not gzip:
            return text + live
        tail = compressor.copy()
        return gz_prefix + tail.compress(live) + tail.flush()

    def _cached(self, openmetrics: bool) -> tuple[Hashable, bytes, bytes, zlib._Compress]:
        generation = self.generation()  # read first: a change while rendering re-renders next time
        with self._lock:
            entry = self._cache.get(openmetrics)
            if entry is None or entry[0] != generation:
                if openmetrics:
                    text = generate_openmetrics(self.polled).removesuffix(b"# EOF\n")
                else:
                    text = generate_text(self.polled)
                compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
                gz_prefix = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
                entry = (generation, text, gz_prefix, compressor)
                self._cache[openmetrics] = entry
            return entry


class RecentCollector(Collector):
    """Serves another collector's samples read at most ``max_age`` seconds ago.

    The process collector reads /proc on every call, listing every open file descriptor for
    ``process_open_fds``: with a thousand connections open and scrapes arriving together, those
    reads cost several times the rest of a scrape (BENCHMARKS.md, Load). Concurrent scrapes
    share one reading; scrapes seconds apart each get a fresh one.
    """

    def __init__(self, collector: Collector, max_age: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.collector = collector
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._families: list[Metric] | None = None

    def collect(self) -> list[Metric]:
        with self._lock:
            now = self.clock()
            if self._families is None or now - self._read_at >= self.max_age:
                self._families = list(self.collector.collect())
                self._read_at = now
            return self._families


def runtime_registry(process_metrics: bool = True) -> CollectorRegistry:
    """The exporter process's own metrics (process_*, python_info, python_gc_*), for the live part."""
    registry = CollectorRegistry()
    if process_metrics:
        registry.register(RecentCollector(ProcessCollector(registry=None)))
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
