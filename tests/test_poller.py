"""Polling: snapshots equal the simulator's sums; failures keep the last good data and count."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from expected import expected_cost, expected_usage
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from exporter import admin_api
from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector
from exporter.config import Config, Organization, Secret
from exporter.poller import Poller
from exporter.state import REPORTS, ExporterState

GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window")


@pytest.fixture
def setup(simulator, admin_key, clock):
    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    return config, state, poller, registry


def test_snapshots_equal_the_simulators_sums_in_every_window(setup, sim_org, clock):
    config, state, poller, _ = setup
    assert poller.poll_all()
    usage = state.status("acme", "usage").snapshot
    expected = expected_usage(sim_org, config.windows, GROUP_BY, clock())
    got = {(labels, window): values for labels, per_window in usage.series.items()
           for window, values in per_window.items()}
    assert got == expected
    assert len(got) > 100
    cost = state.status("acme", "cost").snapshot
    got_cost = {(labels, window): usd for labels, per_window in cost.series.items()
                for window, usd in per_window.items()}
    assert got_cost == expected_cost(sim_org, config.windows, clock())
    assert {window for _, window in got_cost} == {"7d", "30d", "today", "month"}


def test_the_first_poll_backfills_what_the_windows_need(setup, simulator, sim_org):
    _, _, poller, registry = setup
    assert poller.poll_all()
    paths = [r.path for r in simulator.requests]
    # 1m: 1,440 buckets in one page; 1h: the 720 of 30d (wider than March's 10 days) in pages of 168
    assert paths.count(ENDPOINTS["usage_report_messages"]) == 1 + 5
    assert paths.count(ENDPOINTS["cost_report"]) == 1  # 31 daily buckets, one page
    # Claude Code: one request per UTC day of 30d (February 9 to March 10), each one page
    days = sorted(r.query["starting_at"][0] for r in simulator.requests if r.path == ENDPOINTS["usage_report_claude_code"])
    assert (len(days), days[0], days[-1]) == (30, "2026-02-09", "2026-03-10")
    # rate limits: the organization's, then every workspace not archived
    active = [w["id"] for w in sim_org.workspaces if w["archived_at"] is None]
    assert paths.count(ENDPOINTS["rate_limits"]) == 1
    assert sorted(p for p in paths if p.endswith("/rate_limits") and p != ENDPOINTS["rate_limits"]) == sorted(
        ENDPOINTS["workspace_rate_limits"].format(workspace_id=w) for w in active)
    assert len(paths) == 6 + 1 + 2 + 30 + 1 + len(active)
    assert registry.get_sample_value("anthropic_exporter_api_requests_total",
                                     {"organization": "acme", "endpoint": "usage_report_messages", "code": "200"}) == 6


def test_recent_buckets_are_reread_without_double_counting(setup, sim_org, clock):
    config, state, poller, _ = setup
    poller.poll("usage")
    clock.now += timedelta(minutes=2)
    poller.poll("usage")
    usage = state.status("acme", "usage").snapshot
    got = {(labels, window): values for labels, per_window in usage.series.items()
           for window, values in per_window.items()}
    assert got == expected_usage(sim_org, config.windows, GROUP_BY, clock())


def test_failed_poll_keeps_the_last_good_data_and_counts_the_reason(setup, simulator):
    _, state, poller, registry = setup
    assert poller.poll_all()
    before = generate_latest(registry).decode()
    good = state.status("acme", "cost").snapshot
    simulator.reset_requests()
    simulator.inject("/v1/organizations/cost_report", "500", times=100)
    assert not poller.poll("cost")
    assert len(simulator.requests) == admin_api.MAX_ATTEMPTS  # no hammering
    assert state.status("acme", "cost").snapshot is good
    labels = {"organization": "acme", "report": "cost"}
    assert registry.get_sample_value("anthropic_exporter_up", labels) == 0
    assert registry.get_sample_value("anthropic_exporter_poll_errors_total", {**labels, "reason": "server_error"}) == 1
    assert registry.get_sample_value("anthropic_exporter_api_requests_total",
                                     {"organization": "acme", "endpoint": "cost_report", "code": "500"}) == 5
    after = generate_latest(registry).decode()
    cost_lines = lambda text: [line for line in text.splitlines() if line.startswith("anthropic_cost_usd")]
    assert cost_lines(after) == cost_lines(before) and cost_lines(after)
    # and it recovers
    simulator.clear_faults()
    assert poller.poll("cost")
    assert registry.get_sample_value("anthropic_exporter_up", labels) == 1


@pytest.mark.parametrize("fault,reason", [("429", "rate_limited"), ("529", "overloaded"),
                                          ("malformed_json", "invalid_response"), ("truncated", "connection")])
def test_error_counter_by_reason(setup, simulator, fault, reason):
    _, state, poller, registry = setup
    simulator.inject("/v1/organizations/workspaces", fault, times=100, retry_after=0)
    assert not poller.poll("workspaces")
    assert registry.get_sample_value("anthropic_exporter_poll_errors_total",
                                     {"organization": "acme", "report": "workspaces", "reason": reason}) == 1
    assert state.status("acme", "workspaces").polled and state.status("acme", "workspaces").snapshot is None


def test_an_unexpected_exception_is_counted_and_the_poller_goes_on(setup, monkeypatch, caplog):
    _, _, poller, registry = setup
    monkeypatch.setattr(poller.client, "workspaces", lambda deadline: 1 / 0)
    assert not poller.poll("workspaces")
    assert registry.get_sample_value("anthropic_exporter_poll_errors_total",
                                     {"organization": "acme", "report": "workspaces", "reason": "internal"}) == 1
    assert "ZeroDivisionError" in caplog.text
    assert poller.poll("api_keys")


def test_data_timestamp_is_the_newest_data_never_the_future(setup, clock):
    _, state, poller, _ = setup
    assert poller.poll_all()
    usage = state.status("acme", "usage").snapshot.data_timestamp
    cost = state.status("acme", "cost").snapshot.data_timestamp
    now = clock().timestamp()
    assert now - 3600 < usage <= now  # the simulator's traffic is a few requests an hour
    assert now - 2 * 86400 < cost <= now


def test_counters_exist_at_zero_before_any_failure(setup):
    _, _, _, registry = setup
    for report in REPORTS:
        assert registry.get_sample_value("anthropic_exporter_poll_errors_total",
                                         {"organization": "acme", "report": report, "reason": "timeout"}) == 0


def test_readiness_needs_every_report_polled_once(setup, simulator):
    _, state, poller, _ = setup
    simulator.inject("/v1/organizations/api_keys", "500", times=100)
    for report in REPORTS[:-1]:
        poller.poll(report)
        assert not state.ready()
    poller.poll(REPORTS[-1])
    assert state.ready()  # a failed poll counts as polled: /metrics must be scraped to show up=0


def test_the_admin_key_never_appears_in_logs_or_metrics(setup, simulator, admin_key, caplog):
    _, _, poller, registry = setup
    caplog.set_level(logging.DEBUG)
    simulator.inject("/v1/organizations/", "500", times=100)
    poller.poll_all()
    simulator.clear_faults()
    poller.poll_all()
    assert "poll failed" in caplog.text
    assert admin_key not in caplog.text
    assert admin_key not in generate_latest(registry).decode()


class FakeTime:
    """A monotonic clock and a stop event whose wait() advances it, ending at ``until``."""

    def __init__(self, until: float):
        self.now = 0.0
        self.until = until

    def monotonic(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return self.now >= self.until

    def wait(self, seconds: float) -> bool:
        self.now = min(self.now + seconds, self.until)
        return self.is_set()


def test_each_report_is_polled_on_its_own_interval(simulator, admin_key, clock):
    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    fake = FakeTime(until=900)
    poller = Poller(config.organizations[0], config, state, clock=clock, monotonic=fake.monotonic,
                    sleep=lambda s: None)
    poller.run(fake)
    paths = [r.path for r in simulator.requests]
    # usage every 60 s (a backfill of 1 + 5 pages, then 1m and 1h each time), cost every 5 min,
    # names and Claude Code every hour, rate limits every 15 minutes, in [0, 900)
    assert paths.count(ENDPOINTS["usage_report_messages"]) == 6 + 14 * 2
    assert paths.count(ENDPOINTS["cost_report"]) == 3
    assert paths.count(ENDPOINTS["api_keys"]) == 1
    assert paths.count(ENDPOINTS["workspaces"]) == 1


def test_several_organizations_are_labelled_apart(simulator, admin_key, clock):
    orgs = (Organization("acme", Secret(admin_key), simulator.url),
            Organization("beta", Secret(admin_key), simulator.url))
    config = Config(organizations=orgs)
    state = ExporterState(["acme", "beta"], ENDPOINTS)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    for org in orgs:
        assert Poller(org, config, state, clock=clock, sleep=lambda s: None).poll_all()
    text = generate_latest(registry).decode()
    acme = [line.replace('organization="acme"', "X") for line in text.splitlines() if 'organization="acme"' in line]
    beta = [line.replace('organization="beta"', "X") for line in text.splitlines() if 'organization="beta"' in line]
    assert len(acme) > 100
    # same data, apart from the poll timings
    assert [line for line in acme if "timestamp" not in line and "duration" not in line] == \
           [line for line in beta if "timestamp" not in line and "duration" not in line]
