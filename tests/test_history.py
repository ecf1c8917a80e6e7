"""Truth over time: held buckets, incremental polls, windows that follow the clock, stale data
withheld. Every test drives the injected clock; none sleeps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from expected import expected_cost, expected_usage
from prometheus_client import CollectorRegistry

from exporter.admin_api import ENDPOINTS, Bucket, UsageRow, UsageValues
from exporter.collector import AdminCollector
from exporter.config import DEFAULT_WINDOWS, Config, Organization, Secret, StaleAfter
from exporter.poller import Poller
from exporter.state import ExporterState

GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window")
USAGE_PATH = ENDPOINTS["usage_report_messages"]
COST_PATH = ENDPOINTS["cost_report"]
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make(simulator, admin_key, clock, **overrides):
    config = replace(Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),)), **overrides)
    state = ExporterState(["acme"], ENDPOINTS)
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    return config, state, poller, registry


@pytest.fixture
def setup(simulator, admin_key, clock):
    return make(simulator, admin_key, clock)


def usage_sums(state) -> dict:
    snapshot = state.status("acme", "usage").snapshot
    return {(labels, w): v for labels, per_window in snapshot.series.items() for w, v in per_window.items()}


def cost_sums(state) -> dict:
    snapshot = state.status("acme", "cost").snapshot
    return {(labels, w): v for labels, per_window in snapshot.series.items() for w, v in per_window.items()}


def requests_to(simulator, path) -> list[tuple[str, str]]:
    """(bucket_width, starting_at) of each request to a report."""
    return [(r.query["bucket_width"][0], r.query["starting_at"][0]) for r in simulator.requests if r.path == path]


# --- windows follow the clock --------------------------------------------------------------

BOUNDARIES = [
    ("minute", "2026-03-10T12:30:15", "2026-03-10T12:31:05"),
    ("hour", "2026-03-10T12:59:40", "2026-03-10T13:00:20"),
    ("midnight", "2026-03-10T23:59:40", "2026-03-11T00:00:20"),
    ("month end", "2026-03-31T23:59:40", "2026-04-01T00:00:20"),
]


@pytest.mark.parametrize("polled,later", [(p, q) for _, p, q in BOUNDARIES], ids=[n for n, _, _ in BOUNDARIES])
def test_sums_follow_the_clock_across_a_boundary_without_a_poll(setup, simulator, sim_org, clock, polled, later):
    config, state, poller, _ = setup
    clock.now = t(polled)
    assert poller.poll_all()
    simulator.reset_requests()
    clock.now = t(later)
    poller.resum()
    assert simulator.requests == []  # from the held buckets, without the API
    data_now = t(polled)
    assert usage_sums(state) == expected_usage(sim_org, config.windows, GROUP_BY, t(later), data_now=data_now)
    assert cost_sums(state) == expected_cost(sim_org, config.windows, t(later), data_now=data_now)
    if t(later).day != t(polled).day:  # today starts again from 0 at midnight; month on the 1st
        assert all(not any(vars(v).values()) for (_, w), v in usage_sums(state).items() if w == "today")
        assert all(usd == 0 for (_, w), usd in cost_sums(state).items() if w == "today")
        assert any(any(vars(v).values()) for (_, w), v in usage_sums(state).items() if w == "24h")
    if t(later).month != t(polled).month:
        assert all(not any(vars(v).values()) for (_, w), v in usage_sums(state).items() if w == "month")


@pytest.mark.parametrize("polled,later", [(p, q) for _, p, q in BOUNDARIES], ids=[n for n, _, _ in BOUNDARIES])
def test_sums_across_a_boundary_with_a_poll_landing_on_it(setup, sim_org, clock, polled, later):
    config, state, poller, _ = setup
    clock.now = t(polled)
    assert poller.poll_all()
    clock.now = t(later)
    assert poller.poll("usage") and poller.poll("cost")
    assert usage_sums(state) == expected_usage(sim_org, config.windows, GROUP_BY, t(later))
    assert cost_sums(state) == expected_cost(sim_org, config.windows, t(later))


def test_the_next_resum_is_the_next_minute_or_the_moment_data_goes_stale(setup, clock):
    config, _, poller, _ = setup
    clock.now = t("2026-03-10T12:30:15")
    assert poller.next_resum_at(clock()) is None  # nothing held yet
    assert poller.poll("usage")
    assert poller.next_resum_at(clock()) == t("2026-03-10T12:31:00")
    # long after: the minute boundary is still next, the stale moment has passed
    assert poller.next_resum_at(t("2026-03-10T13:10:30")) == t("2026-03-10T13:11:00")
    hourly = Poller(config.organizations[0], replace(config, windows=DEFAULT_WINDOWS[2:]), ExporterState(
        ["acme"], ENDPOINTS), clock=clock, sleep=lambda s: None)
    assert hourly.poll("usage")  # windows summed from 1h buckets only: the next hour, or stale at 12:45:15
    assert hourly.next_resum_at(t("2026-03-10T12:40:00")) == t("2026-03-10T12:45:15.001")
    assert hourly.next_resum_at(t("2026-03-10T12:50:00")) == t("2026-03-10T13:00:00")


class SteadyAPI:
    """A scripted Admin API with perfectly steady traffic: one output token a second, one model."""

    def __init__(self, clock):
        self.clock = clock

    def usage_buckets(self, start, end, width, group_by, deadline) -> Iterator[Bucket]:
        step = {"1m": MINUTE, "1h": HOUR, "1d": DAY}[width]
        moment = start
        while moment < end:
            elapsed = min(max((self.clock() - moment).total_seconds(), 0), step.total_seconds())
            dims = tuple("m" if d == "model" else None for d in group_by)
            yield Bucket(moment, moment + step, (UsageRow(dims, UsageValues(output_tokens=int(elapsed))),))
            moment += step


def test_no_sawtooth_when_the_day_rolls_over_with_steady_traffic(simulator, admin_key, clock):
    """Polls every minute at :30 and re-sums at every minute boundary, from 23:55 to 00:05: between
    any two figures in a row, no window loses more than one bucket's share of steady traffic."""
    _, state, poller, _ = make(simulator, admin_key, clock)
    poller.client.usage_buckets = SteadyAPI(clock).usage_buckets

    def output(window: str) -> int:
        return sum(v.output_tokens for (_, w), v in usage_sums(state).items() if w == window)

    seen: list[dict[str, int]] = []
    start = t("2026-03-10T23:55:30")
    for minute in range(11):
        clock.now = start + minute * MINUTE
        assert poller.poll("usage")
        seen.append({w: output(w) for w in ("24h", "7d", "30d")})
        clock.now += timedelta(seconds=30)  # the next minute begins
        poller.resum()
        seen.append({w: output(w) for w in ("24h", "7d", "30d")})
    for before, after in itertools.pairwise(seen):
        assert before["24h"] - after["24h"] <= 60
        assert before["7d"] - after["7d"] <= 3600
        assert before["30d"] - after["30d"] <= 3600
    # after the last poll, at 00:05:30: the whole spans, the bucket in progress up to its present
    assert seen[-2] == {"24h": 86400 - 30, "7d": 7 * 86400 - 3600 + 330, "30d": 30 * 86400 - 3600 + 330}


# --- stale data withheld -------------------------------------------------------------------

def test_stale_figures_are_withheld_at_midnight_and_come_back(setup, simulator, clock):
    _, state, poller, registry = setup
    clock.now = t("2026-03-10T23:50:00")
    assert poller.poll_all()
    simulator.inject("/v1/organizations/usage_report", "500", times=10_000)
    simulator.inject(COST_PATH, "500", times=10_000)
    clock.now = t("2026-03-11T00:05:00")
    assert not poller.poll("usage") and not poller.poll("cost")
    poller.resum()
    # the new day has no data yet: today is 0, not yesterday's spend
    assert all(usd == 0 for (_, w), usd in cost_sums(state).items() if w == "today")
    assert cost_sums(state)  # still served: 15 minutes have not passed
    clock.now = t("2026-03-11T06:00:00")
    assert not poller.poll("usage") and not poller.poll("cost")
    poller.resum()
    assert usage_sums(state) == {} and cost_sums(state) == {}
    text = "\n".join(f"{s.name} {s.labels}" for m in registry.collect() for s in m.samples)
    assert "anthropic_usage_" not in text and "anthropic_cost_usd" not in text
    labels = {"organization": "acme", "report": "usage"}
    assert registry.get_sample_value("anthropic_exporter_up", labels) == 0
    assert registry.get_sample_value("anthropic_exporter_last_success_timestamp_seconds", labels) == \
        t("2026-03-10T23:50:00").timestamp()
    assert registry.get_sample_value("anthropic_exporter_data_timestamp_seconds", labels) is not None
    assert "anthropic_api_key_info" in text and "anthropic_workspace_info" in text
    simulator.clear_faults()
    assert poller.poll("usage") and poller.poll("cost")
    assert usage_sums(state) and cost_sums(state)


def test_series_vanish_just_after_stale_after(setup, clock):
    _, state, poller, _ = setup
    clock.now = t("2026-03-10T12:00:00")
    assert poller.poll("usage")
    poller.resum(t("2026-03-10T12:15:00"))  # exactly 15 minutes old: not older than stale_after
    assert usage_sums(state)
    poller.resum(t("2026-03-10T12:15:00.001"))
    assert usage_sums(state) == {}


def test_never_keeps_serving(simulator, admin_key, clock):
    _, state, poller, _ = make(simulator, admin_key, clock, stale_after=StaleAfter(None, None, None))
    clock.now = t("2026-03-10T12:00:00")
    assert poller.poll("usage")
    poller.resum(t("2026-03-10T18:00:00"))  # six hours on, 24h still holds the data: served
    assert any(v.output_tokens for (_, w), v in usage_sums(state).items() if w == "24h")
    assert poller.next_resum_at(t("2026-03-10T18:00:00")) == t("2026-03-10T18:01:00")


# --- incremental polling -------------------------------------------------------------------

def test_steady_state_polls_read_only_the_trailing_horizon(setup, simulator, sim_org, clock):
    config, state, poller, _ = setup
    clock.now = t("2026-03-10T12:30:15")
    assert poller.poll_all()
    for step in range(1, 6):
        simulator.reset_requests()
        clock.now = t("2026-03-10T12:30:15") + step * MINUTE
        assert poller.poll("usage") and poller.poll("cost")
        previous = clock.now - MINUTE
        # from the newest bucket held (the one in progress at the previous poll) minus the horizon
        minute_held = previous.replace(second=0) + MINUTE
        hour_held = previous.replace(minute=0, second=0) + HOUR
        assert requests_to(simulator, USAGE_PATH) == [
            ("1m", (minute_held - 15 * MINUTE).strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("1h", (hour_held - 3 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ]
        assert requests_to(simulator, COST_PATH) == [("1d", "2026-03-08T00:00:00Z")]  # tomorrow minus 3 days
        assert usage_sums(state) == expected_usage(sim_org, config.windows, GROUP_BY, clock())
        assert cost_sums(state) == expected_cost(sim_org, config.windows, clock())


def test_late_data_inside_the_horizon_shows_up(setup, sim_org, clock):
    config, state, poller, _ = setup
    assert poller.poll("usage")
    late = replace(sim_org.events(clock() - HOUR, clock())[0], timestamp=clock() - 5 * MINUTE, output_tokens=123_457)
    sim_org.record_message(late)  # lands in a bucket already read
    clock.now += MINUTE
    assert poller.poll("usage")
    got = usage_sums(state)
    assert got == expected_usage(sim_org, config.windows, GROUP_BY, clock())
    assert max(v.output_tokens for (_, w), v in got.items() if w == "1h") >= 123_457


def test_a_gap_left_by_an_outage_is_read_again_in_full(setup, simulator, sim_org, clock):
    config, state, poller, _ = setup
    clock.now = t("2026-03-10T12:30:15")
    assert poller.poll("usage")
    simulator.inject("/v1/organizations/usage_report", "500", times=10_000)
    for _ in range(4):  # 40 minutes of failing polls
        clock.now += 10 * MINUTE
        assert not poller.poll("usage")
    simulator.clear_faults()
    simulator.reset_requests()
    assert poller.poll("usage")
    assert requests_to(simulator, USAGE_PATH) == [("1m", "2026-03-10T12:16:00Z"), ("1h", "2026-03-10T10:00:00Z")]
    assert usage_sums(state) == expected_usage(sim_org, config.windows, GROUP_BY, clock())


def test_full_refresh_reads_everything_again(simulator, admin_key, clock):
    _, _, poller, _ = make(simulator, admin_key, clock, full_refresh=600.0)
    clock.now = t("2026-03-10T12:30:15")
    assert poller.poll("usage")
    simulator.reset_requests()
    clock.now += 5 * MINUTE
    assert poller.poll("usage")
    assert len(requests_to(simulator, USAGE_PATH)) == 2
    simulator.reset_requests()
    clock.now += 5 * MINUTE
    assert poller.poll("usage")
    # the whole range again: 24h of minutes, and the 720 hours of 30d in pages of 168
    assert requests_to(simulator, USAGE_PATH)[0] == ("1m", "2026-03-09T12:41:00Z")
    assert requests_to(simulator, USAGE_PATH)[1] == ("1h", "2026-02-08T13:00:00Z")
    assert len(requests_to(simulator, USAGE_PATH)) == 1 + 5


def test_sums_after_100_polls_equal_a_fresh_full_fetch(simulator, admin_key, sim_org, clock):
    config, state, poller, _ = make(simulator, admin_key, clock)
    clock.now = t("2026-03-10T22:45:10")
    for minute in range(100):  # across midnight; cost every 5 minutes, as by default
        assert poller.poll("usage")
        if minute % 5 == 0:
            assert poller.poll("cost")
        clock.now += MINUTE
    _, fresh_state, fresh, _ = make(simulator, admin_key, clock)
    assert poller.poll("usage") and poller.poll("cost")
    assert fresh.poll("usage") and fresh.poll("cost")
    assert usage_sums(state) == usage_sums(fresh_state)
    assert cost_sums(state) == cost_sums(fresh_state)
    assert usage_sums(state) == expected_usage(sim_org, config.windows, GROUP_BY, clock())
    # only what the windows need is held
    store = poller.history["usage"].stores["1m"]
    assert store.buckets[0].start >= clock().replace(second=0) - 1439 * MINUTE


# --- rows skipped in the data held ---------------------------------------------------------

def test_skipped_rows_count_the_data_held_not_every_poll(simulator, admin_key, clock):
    _, _, poller, registry = make(simulator, admin_key, clock)
    bad_minute = {"at": t("2026-03-10T12:29:00")}

    def usage_buckets(start, end, width, group_by, deadline):
        moment = start
        step = {"1m": MINUTE, "1h": HOUR}[width]
        while moment < end:
            skipped = (("invalid_row", 2),) if width == "1m" and moment == bad_minute["at"] else ()
            yield Bucket(moment, moment + step, (), skipped)
            moment += step

    poller.client.usage_buckets = usage_buckets
    labels = {"organization": "acme", "report": "usage", "reason": "invalid_row"}
    assert poller.poll("usage")
    assert registry.get_sample_value("anthropic_exporter_skipped_rows", labels) == 2
    clock.now += MINUTE
    assert poller.poll("usage")  # the same bucket read again: still 2, not 4
    assert registry.get_sample_value("anthropic_exporter_skipped_rows", labels) == 2
    bad_minute["at"] = None  # the API corrected the row
    clock.now += MINUTE
    assert poller.poll("usage")
    assert registry.get_sample_value("anthropic_exporter_skipped_rows", labels) == 0
    assert registry.get_sample_value("anthropic_exporter_poll_errors_total", {
        "organization": "acme", "report": "usage", "reason": "internal"}) == 0


def test_a_resum_touches_only_the_reports_whose_figures_the_clock_moved(setup, clock):
    _, state, poller, _ = setup
    clock.now = t("2026-03-10T23:58:30")
    assert poller.poll("usage") and poller.poll("cost")
    usage, cost = state.status("acme", "usage").snapshot, state.status("acme", "cost").snapshot
    poller.resum(t("2026-03-10T23:58:50"))  # no boundary yet: nothing to do
    assert state.status("acme", "usage").snapshot is usage and state.status("acme", "cost").snapshot is cost
    poller.resum(t("2026-03-10T23:59:10"))  # a minute boundary moves usage's windows, not cost's days
    assert state.status("acme", "usage").snapshot is not usage
    assert state.status("acme", "cost").snapshot is cost
    poller.resum(t("2026-03-11T00:00:10"))  # midnight moves both
    assert state.status("acme", "cost").snapshot is not cost
