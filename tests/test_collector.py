"""Snapshots and the collector: whole expositions compared byte for byte, plus edge cases."""

from __future__ import annotations

import gzip
import textwrap
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as LiveCounter
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily

from exporter.admin_api import APIKey, Bucket, CostRow, UsageRow, UsageValues, Workspace
from exporter.collector import AdminCollector, ExpositionCache, RecentCollector
from exporter.config import Window
from exporter.snapshot import (
    USAGE_STRIDE,
    APIKeysSnapshot,
    WorkspacesSnapshot,
    build_cost_snapshot,
    build_usage_snapshot,
    store_cost_bucket,
    store_usage_bucket,
)
from exporter.state import ExporterState
from exporter.store import BucketStore, FetchPlan, LabelTable

NOW = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)
WINDOWS = (Window("1h", span=3600), Window("today", calendar="day"))
GROUP_BY = ("workspace_id", "api_key_id", "model")


def minute(offset: int) -> Bucket:
    start = NOW.replace(second=0) - timedelta(minutes=offset)
    return Bucket(start, start + timedelta(minutes=1), ())


def hour(offset: int) -> Bucket:
    start = NOW.replace(minute=0, second=0) - timedelta(hours=offset)
    return Bucket(start, start + timedelta(hours=1), ())


def with_rows(bucket: Bucket, *rows) -> Bucket:
    return Bucket(bucket.starting_at, bucket.ending_at, tuple(rows))


def usage(dims, uncached=0, read=0, c5=0, c1=0, out=0, web=0) -> UsageRow:
    return UsageRow(dims, UsageValues(uncached, read, c5, c1, out, web))


def held(by_width, to_stored, stride):
    """Stores holding exactly these buckets, as after one full poll."""
    table = LabelTable()
    stores = {}
    for width, buckets in by_width.items():
        start = min((b.starting_at for b in buckets), default=NOW)
        plan = FetchPlan(start, max((b.ending_at for b in buckets), default=NOW), True)
        stores[width] = BucketStore(width, stride).merged(plan, [to_stored(b, table) for b in buckets],
                                                          keep_from=start, now=NOW)
    return stores, table


def usage_snapshot(by_width, windows=WINDOWS, now=NOW):
    stores, table = held(by_width, lambda b, t: store_usage_bucket(b, GROUP_BY, t), USAGE_STRIDE)
    return build_usage_snapshot(stores, table, windows, GROUP_BY, now, now)


def cost_snapshot(buckets, windows=WINDOWS, now=NOW):
    stores, table = held({"1d": buckets}, store_cost_bucket, 1)
    return build_cost_snapshot(stores, table, windows, now, now)


TODAY = Bucket(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC), ())
YESTERDAY = Bucket(datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC), ())


def test_usage_snapshot_sums_windows_maps_nulls_and_fills_zeros():
    by_width = {
        "1m": [
            with_rows(minute(61), usage(("w1", "k1", "m"), uncached=1000)),  # outside the hour
            with_rows(minute(59), usage(("w1", "k1", "m"), uncached=10, out=1)),
            with_rows(minute(0), usage(("w1", "k1", "m"), uncached=5),
                      usage((None, None, "m"), read=7)),  # the partial minute counts
        ],
        "1h": [
            with_rows(hour(13), usage(("w2", "k2", "old"), out=99)),  # yesterday: outside today
            with_rows(hour(2), usage(("w1", "k1", "m"), uncached=10, out=1)),
            with_rows(hour(0), usage(("w1", "k1", "m"), uncached=5),
                      usage((None, None, None), c5=3), usage((None, None, None), c1=4)),  # collapse
        ],
    }
    snapshot = usage_snapshot(by_width)
    assert snapshot.series == {
        ("w1", "k1", "m"): {"1h": UsageValues(15, 0, 0, 0, 1, 0), "today": UsageValues(15, 0, 0, 0, 1, 0)},
        ("default", "console", "m"): {"1h": UsageValues(0, 7, 0, 0, 0, 0), "today": UsageValues()},
        ("default", "console", "unknown"): {"1h": UsageValues(), "today": UsageValues(0, 0, 3, 4, 0, 0)},
    }  # ("w2", "k2", "old") is held, but in no window now: not exported
    # data timestamp from the finest width: end of the newest minute with data, at most the poll's time
    assert snapshot.data_timestamp == NOW.timestamp()
    older = usage_snapshot({"1m": by_width["1m"][:2], "1h": by_width["1h"]})
    assert older.data_timestamp == (NOW.replace(second=0) - timedelta(minutes=58)).timestamp()
    # no minute with data: the next coarser width that has some
    hourly = usage_snapshot({"1m": [minute(3)], "1h": by_width["1h"]})
    assert hourly.data_timestamp == NOW.timestamp()


def test_a_withheld_snapshot_keeps_only_the_data_timestamp():
    stores, table = held({"1m": [with_rows(minute(0), usage(("w", "k", "m"), out=1))]},
                         lambda b, t: store_usage_bucket(b, GROUP_BY, t), USAGE_STRIDE)
    snapshot = build_usage_snapshot(stores, table, WINDOWS, GROUP_BY, NOW, NOW, withheld=True)
    assert snapshot.series == {}
    assert snapshot.data_timestamp == NOW.timestamp()


def test_cost_snapshot_is_exact_decimal_in_dollars():
    rows = [CostRow(("w1", "tokens", "m", "output_tokens", "standard", "0-200k", "global"), Decimal("0.1"))
            for _ in range(10)]
    rows.append(CostRow((None, "web_search", None, None, None, None, None), Decimal("1500")))
    snapshot = cost_snapshot([with_rows(TODAY, *rows)])
    assert snapshot.series == {  # cost only has 1d buckets: no 1h window
        ("w1", "tokens", "m", "output_tokens", "standard", "0-200k", "global"): {"today": Decimal("0.01")},
        ("default", "web_search", "", "", "", "", ""): {"today": Decimal("15")},
    }


def make_state() -> ExporterState:
    state = ExporterState(["acme"], ["usage_report_messages"], ("usage", "cost", "api_keys", "workspaces"))
    snapshot = usage_snapshot(
        {"1m": [with_rows(minute(0), usage((None, "k1", "m"), uncached=5, read=6, c5=7, c1=8, out=9, web=1))],
         "1h": [with_rows(hour(1), usage((None, "k1", "m"), uncached=50))]})
    cost = cost_snapshot(
        [with_rows(TODAY, CostRow(("w1", "tokens", "m", "output_tokens", "batch", "0-200k", None),
                                  Decimal("123.78912")))])
    stamp = NOW.timestamp()
    state.succeeded("acme", "usage", snapshot, stamp, 0.25, Counter())
    state.succeeded("acme", "cost", cost, stamp, 0.5, Counter({"currency": 2}))
    state.succeeded("acme", "api_keys", APIKeysSnapshot((APIKey("k1", "CI key", "archived", None),)), stamp, 0.1)
    state.failed("acme", "workspaces", "auth", 0.125)
    state.api_request("acme", "usage_report_messages", "200")
    return state


GOLDEN = textwrap.dedent('''\
    # HELP anthropic_usage_uncached_input_tokens Sum over the window of `uncached_input_tokens` from GET /v1/organizations/usage_report/messages. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_uncached_input_tokens gauge
    anthropic_usage_uncached_input_tokens{api_key_id="k1",model="m",organization="acme",window="1h",workspace_id="default"} 5.0
    anthropic_usage_uncached_input_tokens{api_key_id="k1",model="m",organization="acme",window="today",workspace_id="default"} 50.0
    # HELP anthropic_usage_cache_read_input_tokens Sum over the window of `cache_read_input_tokens` from GET /v1/organizations/usage_report/messages. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_cache_read_input_tokens gauge
    anthropic_usage_cache_read_input_tokens{api_key_id="k1",model="m",organization="acme",window="1h",workspace_id="default"} 6.0
    anthropic_usage_cache_read_input_tokens{api_key_id="k1",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    # HELP anthropic_usage_output_tokens Sum over the window of `output_tokens` from GET /v1/organizations/usage_report/messages. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_output_tokens gauge
    anthropic_usage_output_tokens{api_key_id="k1",model="m",organization="acme",window="1h",workspace_id="default"} 9.0
    anthropic_usage_output_tokens{api_key_id="k1",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    # HELP anthropic_usage_web_search_requests Sum over the window of `server_tool_use.web_search_requests` from GET /v1/organizations/usage_report/messages. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_web_search_requests gauge
    anthropic_usage_web_search_requests{api_key_id="k1",model="m",organization="acme",window="1h",workspace_id="default"} 1.0
    anthropic_usage_web_search_requests{api_key_id="k1",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    # HELP anthropic_usage_estimated_cost_usd The window's usage from GET /v1/organizations/usage_report/messages priced per bucket with the price table in force at the bucket's time (anthropic-usage-exporter prices), in US dollars: an estimate that lands within minutes, where the cost report lags by a day. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_estimated_cost_usd gauge
    anthropic_usage_estimated_cost_usd{api_key_id="k1",model="m",organization="acme",window="1h",workspace_id="default"} 0.0
    anthropic_usage_estimated_cost_usd{api_key_id="k1",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    # HELP anthropic_usage_unpriced_tokens Tokens of the window from GET /v1/organizations/usage_report/messages whose model (or tier) the price table cannot price; left out of anthropic_usage_estimated_cost_usd. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_unpriced_tokens gauge
    anthropic_usage_unpriced_tokens{model="m",organization="acme",window="1h"} 35.0
    anthropic_usage_unpriced_tokens{model="m",organization="acme",window="today"} 50.0
    # HELP anthropic_usage_cache_creation_input_tokens Sum over the window of `cache_creation.ephemeral_{5m,1h}_input_tokens` from GET /v1/organizations/usage_report/messages, by cache TTL. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_usage_cache_creation_input_tokens gauge
    anthropic_usage_cache_creation_input_tokens{api_key_id="k1",cache_ttl="5m",model="m",organization="acme",window="1h",workspace_id="default"} 7.0
    anthropic_usage_cache_creation_input_tokens{api_key_id="k1",cache_ttl="1h",model="m",organization="acme",window="1h",workspace_id="default"} 8.0
    anthropic_usage_cache_creation_input_tokens{api_key_id="k1",cache_ttl="5m",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    anthropic_usage_cache_creation_input_tokens{api_key_id="k1",cache_ttl="1h",model="m",organization="acme",window="today",workspace_id="default"} 0.0
    # HELP anthropic_cost_usd Sum over the window of `amount` (cents) / 100 from GET /v1/organizations/cost_report grouped by workspace_id and description, in US dollars. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_cost_usd gauge
    anthropic_cost_usd{context_window="0-200k",cost_type="tokens",inference_geo="",model="m",organization="acme",service_tier="batch",token_type="output_tokens",window="today",workspace_id="w1"} 1.2378912
    # HELP anthropic_cost_estimate_ratio Estimated (GET /v1/organizations/usage_report/messages priced with the price table) ÷ reported token cost (GET /v1/organizations/cost_report) over the last 7 complete UTC days, per workspace and model: near 1, the table matches the bill. Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_cost_estimate_ratio gauge
    # HELP anthropic_pricing_info The price table in force (its version); always 1.
    # TYPE anthropic_pricing_info gauge
    anthropic_pricing_info{organization="acme",table_version="1"} 1.0
    # HELP anthropic_api_key_info API key names, 1 per key (all statuses), from GET /v1/organizations/api_keys. Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_api_key_info gauge
    anthropic_api_key_info{api_key_id="console",api_key_name="Console",organization="acme",status="active",workspace_id="default"} 1.0
    anthropic_api_key_info{api_key_id="k1",api_key_name="CI key",organization="acme",status="archived",workspace_id="default"} 1.0
    # HELP anthropic_workspace_info Workspace names, 1 per workspace (archived included), from GET /v1/organizations/workspaces. Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_workspace_info gauge
    anthropic_workspace_info{organization="acme",workspace_id="default",workspace_name="Default"} 1.0
    # HELP anthropic_rate_limit The organization's configured limit per rate-limit group and limiter, from GET /v1/organizations/rate_limits (`limits[].value`). Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_rate_limit gauge
    # HELP anthropic_workspace_rate_limit Each workspace's effective limit (source: workspace for an override, organization for an inherited one), from GET /v1/organizations/workspaces/{id}/rate_limits?include_inherited=true. Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_workspace_rate_limit gauge
    # HELP anthropic_rate_limit_group_info 1 per model id or alias a rate-limit group covers (`models`), from GET /v1/organizations/rate_limits: join usage by model onto groups. Refreshed when the exporter polls the Admin API (on a schedule), not per scrape.
    # TYPE anthropic_rate_limit_group_info gauge
    # HELP anthropic_rate_limit_peak_utilization Over the window's 1m buckets of GET /v1/organizations/usage_report/messages, the busiest minute's tokens of the limiter's kind summed over the group's models, divided by the organization's limit from GET /v1/organizations/rate_limits. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_rate_limit_peak_utilization gauge
    # HELP anthropic_claude_code_sessions Sum over the window's UTC days of `core_metrics.num_sessions` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_sessions gauge
    # HELP anthropic_claude_code_lines_of_code Sum over the window's UTC days of `core_metrics.lines_of_code` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_lines_of_code gauge
    # HELP anthropic_claude_code_commits Sum over the window's UTC days of `core_metrics.commits_by_claude_code` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_commits gauge
    # HELP anthropic_claude_code_pull_requests Sum over the window's UTC days of `core_metrics.pull_requests_by_claude_code` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_pull_requests gauge
    # HELP anthropic_claude_code_tool_actions Sum over the window's UTC days of `tool_actions` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_tool_actions gauge
    # HELP anthropic_claude_code_tokens Sum over the window's UTC days of `model_breakdown[].tokens` from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_tokens gauge
    # HELP anthropic_claude_code_estimated_cost_usd Sum over the window's UTC days of `model_breakdown[].estimated_cost` (cents) / 100, in US dollars, from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_estimated_cost_usd gauge
    # HELP anthropic_claude_code_active_actors Distinct actors with at least one record in the window's UTC days, from GET /v1/organizations/usage_report/claude_code. Summed from the report data the exporter polls from the Admin API (on a schedule, not per scrape), re-summed as the window moves; withheld while the data is older than stale_after.
    # TYPE anthropic_claude_code_active_actors gauge
    # HELP anthropic_exporter_build_info The exporter's version; always 1.
    # TYPE anthropic_exporter_build_info gauge
    anthropic_exporter_build_info{version="9.9.9"} 1.0
    # HELP anthropic_exporter_up 1 if the newest poll of the report succeeded, else 0 (the last good figures keep being served). Changes when a poll of the Admin API ends (on a schedule), not per scrape.
    # TYPE anthropic_exporter_up gauge
    anthropic_exporter_up{organization="acme",report="usage"} 1.0
    anthropic_exporter_up{organization="acme",report="cost"} 1.0
    anthropic_exporter_up{organization="acme",report="api_keys"} 1.0
    anthropic_exporter_up{organization="acme",report="workspaces"} 0.0
    # HELP anthropic_exporter_last_success_timestamp_seconds Unix time of the newest successful poll of the report. Changes when a poll of the Admin API ends (on a schedule), not per scrape.
    # TYPE anthropic_exporter_last_success_timestamp_seconds gauge
    anthropic_exporter_last_success_timestamp_seconds{organization="acme",report="usage"} 1.773145815e+09
    anthropic_exporter_last_success_timestamp_seconds{organization="acme",report="cost"} 1.773145815e+09
    anthropic_exporter_last_success_timestamp_seconds{organization="acme",report="api_keys"} 1.773145815e+09
    # HELP anthropic_exporter_data_timestamp_seconds End (`ending_at`, at most the poll's time) of the newest bucket that held any data in the usage or cost report, at the finest width that has data: how fresh the data is. Changes when a poll of the Admin API ends (on a schedule), not per scrape.
    # TYPE anthropic_exporter_data_timestamp_seconds gauge
    anthropic_exporter_data_timestamp_seconds{organization="acme",report="usage"} 1.773145815e+09
    anthropic_exporter_data_timestamp_seconds{organization="acme",report="cost"} 1.773145815e+09
    # HELP anthropic_exporter_poll_duration_seconds How long the newest poll of the report took, retries included. Changes when a poll of the Admin API ends (on a schedule), not per scrape.
    # TYPE anthropic_exporter_poll_duration_seconds gauge
    anthropic_exporter_poll_duration_seconds{organization="acme",report="usage"} 0.25
    anthropic_exporter_poll_duration_seconds{organization="acme",report="cost"} 0.5
    anthropic_exporter_poll_duration_seconds{organization="acme",report="api_keys"} 0.1
    anthropic_exporter_poll_duration_seconds{organization="acme",report="workspaces"} 0.125
    # HELP anthropic_exporter_api_requests_total HTTP requests made to the Admin API, retries included, by endpoint and status code (`none` when no response arrived).
    # TYPE anthropic_exporter_api_requests_total counter
    anthropic_exporter_api_requests_total{code="200",endpoint="usage_report_messages",organization="acme"} 1.0
''')


def test_golden_exposition():
    registry = CollectorRegistry()
    registry.register(AdminCollector(make_state(), version="9.9.9"))
    text = generate_latest(registry).decode()
    head, _, errors = text.partition("# HELP anthropic_exporter_poll_errors_total")
    assert head == GOLDEN
    assert 'anthropic_exporter_poll_errors_total{organization="acme",reason="auth",report="workspaces"} 1.0' in errors
    assert 'reason="currency"' not in errors.partition("# HELP anthropic_exporter_skipped_rows")[0]
    # every reason exists at 0 before the first failure, for every report
    assert errors.count("anthropic_exporter_poll_errors_total{") == 4 * 9
    # rows skipped in the data now held: a gauge, for both windowed reports and both reasons
    assert 'anthropic_exporter_skipped_rows{organization="acme",reason="currency",report="cost"} 2.0' in errors
    assert 'anthropic_exporter_skipped_rows{organization="acme",reason="invalid_row",report="usage"} 0.0' in errors
    assert errors.count("anthropic_exporter_skipped_rows{") == 2 * 2


def test_cache_renders_once_per_generation_and_appends_the_live_part():
    state = make_state()
    polled = CollectorRegistry()
    calls = []

    class Counting(AdminCollector):
        def collect(self):
            calls.append(1)
            return super().collect()

    polled.register(Counting(state))
    live = CollectorRegistry()
    scrapes = LiveCounter("demo_scrapes", "live metric", registry=live)
    cache = ExpositionCache(polled, live, lambda: state.generation)
    first = cache.render()
    calls_after_first = len(calls)
    scrapes.inc()
    second = cache.render()
    assert len(calls) == calls_after_first  # not rendered again
    assert first != second and b"\ndemo_scrapes_total 1.0\n" in second
    assert second.startswith(generate_latest(polled))
    state.api_request("acme", "usage_report_messages", "429")
    third = cache.render()
    assert b'code="429"' in third  # a new generation renders again


def test_cache_gzip_is_one_valid_stream_equal_to_the_plain_body():
    state = make_state()
    polled = CollectorRegistry()
    polled.register(AdminCollector(state))
    live = CollectorRegistry()
    LiveCounter("demo_scrapes", "live metric", registry=live).inc(3)
    cache = ExpositionCache(polled, live, lambda: state.generation)
    for openmetrics in (False, True):
        compressed = cache.render(openmetrics=openmetrics, gzip=True)
        assert gzip.decompress(compressed) == cache.render(openmetrics=openmetrics)
        assert cache.render(openmetrics=openmetrics, gzip=True) == compressed


def test_openmetrics_has_one_eof_at_the_end():
    state = make_state()
    polled = CollectorRegistry()
    polled.register(AdminCollector(state))
    body = ExpositionCache(polled, CollectorRegistry(), lambda: state.generation).render(openmetrics=True)
    assert body.count(b"# EOF") == 1 and body.endswith(b"# EOF\n")
    assert b"# TYPE anthropic_cost_usd gauge" in body


def test_workspace_names_include_the_default_workspace():
    state = ExporterState(["o"], [])
    state.succeeded("o", "workspaces", WorkspacesSnapshot((Workspace("wrkspc_1", "Research"),)), 1.0, 0.1)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    for ws_id, name in (("default", "Default"), ("wrkspc_1", "Research")):
        assert registry.get_sample_value(
            "anthropic_workspace_info", {"organization": "o", "workspace_id": ws_id, "workspace_name": name}) == 1


class CountingCollector:
    def __init__(self):
        self.reads = 0

    def collect(self):
        self.reads += 1
        family = GaugeMetricFamily("reading", "The how-manieth reading this is.")
        family.add_metric([], self.reads)
        return [family]


def test_recent_collector_reads_again_only_after_max_age():
    now = [100.0]
    inner = CountingCollector()
    recent = RecentCollector(inner, max_age=1.0, clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(recent)
    assert b"reading 1.0" in generate_latest(registry) and inner.reads == 1
    now[0] += 0.999
    assert b"reading 1.0" in generate_latest(registry) and inner.reads == 1
    now[0] += 0.001
    assert b"reading 2.0" in generate_latest(registry) and inner.reads == 2


def test_recent_collector_shares_one_reading_between_concurrent_scrapes():
    inner = CountingCollector()
    started, release = threading.Event(), threading.Event()
    slow_collect = inner.collect

    def collect():
        started.set()
        assert release.wait(10)
        return slow_collect()

    inner.collect = collect
    recent = RecentCollector(inner, max_age=60.0)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(recent.collect)
        assert started.wait(10)
        others = [pool.submit(recent.collect) for _ in range(7)]
        release.set()
        readings = [f.result(10)[0].samples[0].value for f in [first, *others]]
    assert readings == [1.0] * 8 and inner.reads == 1


def test_recent_collector_serves_the_process_metrics():
    from prometheus_client import ProcessCollector
    registry = CollectorRegistry()
    registry.register(RecentCollector(ProcessCollector(registry=None)))
    text = generate_latest(registry).decode()
    assert "process_open_fds " in text and "process_resident_memory_bytes " in text
