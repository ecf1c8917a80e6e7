"""Rate limits: both response shapes, open enums, the Default Workspace's 404, paging, and the
busiest minute's share of a limit, computed independently of the exporter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_admin_api import far, scripted_client

from exporter.admin_api import AdminAPIError, Bucket, RateLimitGroup, UsageRow, UsageValues
from exporter.config import DEFAULT_WINDOWS
from exporter.ratelimits import peak_utilization
from exporter.snapshot import USAGE_STRIDE, store_usage_bucket
from exporter.store import BucketStore, FetchPlan, LabelTable

CURRENT = {"type": "rate_limit", "id": "rl_org_1", "group_type": "model_group",
           "group": {"type": "model_group", "id": "rlg_opus", "display_name": "Claude Opus 5.5"},
           "models": ["claude-opus-5-5", "claude-opus-latest"],
           "limits": [{"type": "requests_per_minute", "value": 4000},
                      {"type": "input_tokens_per_minute", "value": 10_000_000},
                      {"type": "brand_new_limiter", "value": 7}]}
OLDER = {"type": "rate_limit", "id": "rlg_batch", "group_type": "batch", "models": None,
         "limits": [{"type": "enqueued_batch_requests", "value": 500000}]}


def test_both_shapes_parse_and_unknown_types_pass_through(clock):
    client, fake = scripted_client([(200, {"data": [CURRENT, OLDER, {"type": "rate_limit"}], "next_page": None})],
                                   clock)
    groups = client.rate_limits(far())
    assert groups == [
        RateLimitGroup("rlg_opus", "model_group", "Claude Opus 5.5", ("claude-opus-5-5", "claude-opus-latest"),
                       (("requests_per_minute", 4000.0, "organization"),
                        ("input_tokens_per_minute", 10_000_000.0, "organization"),
                        ("brand_new_limiter", 7.0, "organization"))),
        RateLimitGroup("rlg_batch", "batch", "", (), (("enqueued_batch_requests", 500000.0, "organization"),)),
    ]
    assert fake.sent[0].url.startswith("http://fake/v1/organizations/rate_limits")


def test_pages_follow_next_page(clock):
    client, fake = scripted_client([(200, {"data": [CURRENT], "next_page": "opaque"}),
                                    (200, {"data": [OLDER], "next_page": None})], clock)
    assert [g.group_id for g in client.rate_limits(far())] == ["rlg_opus", "rlg_batch"]
    assert "page=opaque" in fake.sent[1].url


def test_a_repeated_page_cursor_is_an_error(clock):
    client, _ = scripted_client([(200, {"data": [CURRENT], "next_page": "same"}),
                                 (200, {"data": [CURRENT], "next_page": "same"})], clock)
    with pytest.raises(AdminAPIError) as info:
        client.rate_limits(far())
    assert info.value.reason == "invalid_response"


def test_workspace_limits_with_their_source_and_the_default_workspaces_404(clock):
    entry = {"type": "workspace_rate_limit", "rate_limit_id": "rl_org_1", "workspace_id": "wrkspc_1",
             "group": {"type": "model_group", "id": "rlg_opus"}, "models": ["claude-opus-5-5"],
             "limits": [{"type": "input_tokens_per_minute", "value": 1000, "org_limit": 10_000_000,
                         "source": {"type": "workspace"}},
                        {"type": "requests_per_minute", "value": 4000, "org_limit": 4000,
                         "source": {"type": "organization"}}]}
    not_found = {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
    client, fake = scripted_client([(200, {"data": [entry], "next_page": None}), (404, not_found)], clock)
    groups = client.workspace_rate_limits("wrkspc_1", far())
    assert groups == [RateLimitGroup("rlg_opus", "model_group", "", ("claude-opus-5-5",),
                                     (("input_tokens_per_minute", 1000.0, "workspace"),
                                      ("requests_per_minute", 4000.0, "organization")))]
    assert "/v1/organizations/workspaces/wrkspc_1/rate_limits?include_inherited=true" in fake.sent[0].url
    assert client.workspace_rate_limits("wrkspc_default", far()) is None  # the organization's limits


# --- peak utilization ----------------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)
GROUP_BY = ("workspace_id", "model")
GROUPS = [
    # the group names an alias; usage reports the dated id
    RateLimitGroup("rlg_sonnet", "model_group", "Sonnet", ("claude-sonnet-4-5",),
                   (("input_tokens_per_minute", 1000.0, "organization"),
                    ("input_tokens_per_minute_cache_aware", 500.0, "organization"),
                    ("output_tokens_per_minute", 100.0, "organization"),
                    ("requests_per_minute", 50.0, "organization"))),
    RateLimitGroup("rlg_haiku", "model_group", "Haiku", ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
                   (("tokens_per_minute", 2000.0, "organization"),)),
]


def row(workspace, model, uncached=0, read=0, c5=0, c1=0, out=0):
    return UsageRow((workspace, model), UsageValues(uncached, read, c5, c1, out, 0))


def test_peak_utilization_is_the_busiest_minute_over_the_groups_models():
    minutes = {  # minutes before now -> rows
        90: [row("w1", "claude-sonnet-4-5-20250929", uncached=999, out=99)],  # outside 1h, inside 24h
        30: [row("w1", "claude-sonnet-4-5-20250929", uncached=100, read=300, c5=50, out=10),
             row("w2", "claude-sonnet-4-5", uncached=100, c1=20, out=5),  # the same group, another id
             row("w1", "claude-haiku-4-5-20251001", uncached=700, read=100, out=300)],
        2: [row("w2", "claude-sonnet-4-5-20250929", uncached=400, read=10, out=40),
            row("w1", "claude-unknown-model", uncached=10**9)],  # in no group
    }
    # independently: per minute, per group, the tokens of each limiter's kind
    expected_1h = {
        ("rlg_sonnet", "input_tokens_per_minute"): max(100 + 300 + 50 + 100 + 20, 400 + 10) / 1000,
        ("rlg_sonnet", "input_tokens_per_minute_cache_aware"): max(100 + 50 + 100 + 20, 400) / 500,
        ("rlg_sonnet", "output_tokens_per_minute"): max(10 + 5, 40) / 100,
        ("rlg_haiku", "tokens_per_minute"): (700 + 100 + 300) / 2000,
    }
    expected_24h = {**expected_1h, ("rlg_sonnet", "input_tokens_per_minute"): 999 / 1000,
                    ("rlg_sonnet", "input_tokens_per_minute_cache_aware"): 999 / 500,
                    ("rlg_sonnet", "output_tokens_per_minute"): 99 / 100}
    table = LabelTable()
    buckets = []
    for ago, rows in minutes.items():
        start = NOW.replace(second=0) - timedelta(minutes=ago)
        buckets.append(store_usage_bucket(Bucket(start, start + timedelta(minutes=1), tuple(rows)), GROUP_BY, table))
    first = NOW.replace(second=0) - timedelta(hours=24)
    store = BucketStore("1m", USAGE_STRIDE).merged(FetchPlan(first, NOW, True), buckets, keep_from=first, now=NOW)
    got = peak_utilization(store, table, 1, GROUPS, DEFAULT_WINDOWS, NOW)
    assert got == {**{(g, k, "1h"): v for (g, k), v in expected_1h.items()},
                   **{(g, k, "24h"): v for (g, k), v in expected_24h.items()}}
    # no 1m buckets in the windows: every limiter at 0, not absent
    later = NOW + timedelta(days=2)
    assert set(peak_utilization(store, table, 1, GROUPS, DEFAULT_WINDOWS, later).values()) == {0.0}


# --- against the simulator -------------------------------------------------------------------

def test_peak_utilization_on_the_simulator_equals_the_busiest_minute_of_its_events(simulator, sim_org, admin_key,
                                                                                   clock):
    from prometheus_client import CollectorRegistry

    from exporter.admin_api import ENDPOINTS
    from exporter.collector import AdminCollector
    from exporter.config import Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None)
    assert poller.poll_all()
    checked = 0
    for entry in sim_org.rate_limits():  # the simulator's own groups, not the exporter's parse
        if entry["models"] is None:
            continue
        models = set(entry["models"])
        for limit in entry["limits"]:
            kinds = {"input_tokens_per_minute": ("uncached_input_tokens", "cache_read_input_tokens",
                                                 "cache_creation_5m", "cache_creation_1h"),
                     "input_tokens_per_minute_cache_aware": ("uncached_input_tokens", "cache_creation_5m",
                                                             "cache_creation_1h"),
                     "output_tokens_per_minute": ("output_tokens",)}.get(limit["type"])
            if kinds is None:
                continue
            for window, minutes in (("1h", 60), ("24h", 1440)):
                end = clock().replace(second=0, microsecond=0) + timedelta(minutes=1)
                busiest = 0
                per_minute: dict[datetime, int] = {}
                for event in sim_org.events(end - timedelta(minutes=minutes), end):
                    if event.model in models:
                        minute = event.timestamp.replace(second=0, microsecond=0)
                        per_minute[minute] = per_minute.get(minute, 0) + sum(getattr(event, k) for k in kinds)
                busiest = max(per_minute.values(), default=0)
                got = registry.get_sample_value("anthropic_rate_limit_peak_utilization", {
                    "organization": "acme", "group_id": entry["group"]["id"], "limit_type": limit["type"],
                    "window": window})
                assert got == pytest.approx(busiest / limit["value"]), (entry["group"]["display_name"], window)
                checked += 1
    assert checked > 10
    # the busy minute of the simulated hour is visible: some group came near its limit
    peaks = [s.value for m in registry.collect() if m.name == "anthropic_rate_limit_peak_utilization"
             for s in m.samples if s.labels["window"] == "1h"]
    assert max(peaks) > 0.8


def test_rate_limits_on_the_simulator_per_workspace_with_sources(simulator, sim_org, admin_key, clock):
    from prometheus_client import CollectorRegistry

    from exporter.admin_api import ENDPOINTS
    from exporter.collector import AdminCollector
    from exporter.config import Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    assert Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None).poll_all()
    for workspace in sim_org.workspaces:
        if workspace["archived_at"] is not None:
            continue
        for entry in sim_org.workspace_rate_limits(workspace["id"], include_inherited=True) or ():
            for limit in entry["limits"]:
                assert registry.get_sample_value("anthropic_workspace_rate_limit", {
                    "organization": "acme", "workspace_id": workspace["id"], "group_id": entry["group"]["id"],
                    "group_type": entry["group"]["type"], "limit_type": limit["type"],
                    "source": limit["source"]["type"]}) == limit["value"]
    for entry in sim_org.rate_limits():
        for model in entry["models"] or ():
            assert registry.get_sample_value("anthropic_rate_limit_group_info", {
                "organization": "acme", "group_id": entry["group"]["id"], "group_type": entry["group"]["type"],
                "group_name": entry["group"].get("display_name") or "", "model": model}) == 1


def test_a_key_without_access_to_one_report_keeps_the_others_up(simulator, admin_key, clock, caplog):
    from prometheus_client import CollectorRegistry

    from exporter.admin_api import ENDPOINTS
    from exporter.collector import AdminCollector
    from exporter.config import Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None)
    simulator.inject("/v1/organizations/usage_report/claude_code", "403", times=10_000)
    simulator.inject("/v1/organizations/rate_limits", "403", times=10_000)
    assert not poller.poll_all()
    assert state.ready()
    up = {r: registry.get_sample_value("anthropic_exporter_up", {"organization": "acme", "report": r})
          for r in state.reports}
    assert up == {"usage": 1, "cost": 1, "api_keys": 1, "workspaces": 1, "rate_limits": 0, "claude_code": 0}
    assert caplog.text.count("has no access to this report") == 2
    simulator.reset_requests()
    clock.now += timedelta(hours=2)
    poller.poll_all()  # no retry storm: the two reports are not asked again
    paths = {r.path for r in simulator.requests}
    assert ENDPOINTS["usage_report_claude_code"] not in paths and ENDPOINTS["rate_limits"] not in paths
    assert ENDPOINTS["usage_report_messages"] in paths
