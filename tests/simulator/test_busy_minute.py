"""Each hour's busy minute: one model group's input tokens near its per-minute organization limit,
counted like any other traffic in the usage report, usage_totals() and cost."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from exporter.pricing import default_table
from exporter.simulator import SimulatedOrganization, SimulatorServer
from exporter.simulator.org import BUSY_GROUP

from .conftest import NOW, FakeClock, admin_get

USAGE = "/v1/organizations/usage_report/messages"
HOURS = 3


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def input_tokens(row: dict[str, Any]) -> int:
    """What input_tokens_per_minute counts: uncached input, cache reads and cache writes."""
    creation = row["cache_creation"]
    return (row["uncached_input_tokens"] + row["cache_read_input_tokens"]
            + creation["ephemeral_5m_input_tokens"] + creation["ephemeral_1h_input_tokens"])


def minute_buckets(server: SimulatorServer, start: datetime, end: datetime) -> list[dict[str, Any]]:
    body = admin_get(server, USAGE, starting_at=ts(start), ending_at=ts(end), bucket_width="1m",
                     limit=1440, group_by=["model"]).json()
    assert body["has_more"] is False
    return list(body["data"])


def input_limits(server: SimulatorServer) -> dict[str, tuple[str, dict[str, int], list[str]]]:
    """Model -> (group name, the group's limits by type, its models), from the Rate Limits API."""
    entries = admin_get(server, "/v1/organizations/rate_limits", group_type="model_group").json()
    groups = {}
    for entry in entries["data"]:
        limits = {limit["type"]: limit["value"] for limit in entry["limits"]}
        for model in entry["models"]:
            groups[model] = (entry["group"]["display_name"], limits, entry["models"])
    return groups


def test_a_recent_minute_comes_close_to_the_groups_input_limit(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    groups = input_limits(server)
    end = NOW.replace(second=0)
    buckets = minute_buckets(server, end - timedelta(hours=HOURS), end)
    assert len(buckets) == HOURS * 60
    # Utilization per (group, minute): input tokens over the group's input limit. Cache reads
    # count against input_tokens_per_minute, not against the cache-aware limit.
    usage: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for bucket in buckets:
        for row in bucket["results"]:
            group = groups[row["model"]][0]
            usage[(group, bucket["starting_at"])][0] += input_tokens(row)
            usage[(group, bucket["starting_at"])][1] += input_tokens(row) - row[
                "cache_read_input_tokens"]
    ratios: dict[tuple[str, str], float] = {}
    for (group, minute), (with_reads, without_reads) in usage.items():
        limits = next(limits for name, limits, _ in groups.values() if name == group)
        ratio = 0.0
        if "input_tokens_per_minute" in limits:
            ratio = with_reads / limits["input_tokens_per_minute"]
        if "input_tokens_per_minute_cache_aware" in limits:
            ratio = max(ratio, without_reads / limits["input_tokens_per_minute_cache_aware"])
        ratios[(group, minute)] = ratio

    start = end - timedelta(hours=HOURS)
    busy = {ts(minute) for minute in (org.busy_minute(start + timedelta(hours=h))
                                      for h in range(HOURS + 1)) if start <= minute < end}
    assert len(busy) >= HOURS - 1  # the hours wholly inside, and maybe the ends' ones
    for minute in busy:
        assert 0.85 <= ratios[(BUSY_GROUP, minute)] <= 0.95
    # Every other minute, of every group, stays far below: the busy minutes are the peaks.
    others = [ratio for (group, minute), ratio in ratios.items()
              if not (group == BUSY_GROUP and minute in busy)]
    assert max(others) < 0.5


def test_the_busy_group_holds_the_busy_model_and_its_alias(server: SimulatorServer) -> None:
    groups = input_limits(server)
    name, limits, models = groups["claude-sonnet-4-5-20250929"]
    assert name == BUSY_GROUP and "claude-sonnet-4-5" in models
    assert limits["input_tokens_per_minute"] == 450_000


def test_the_busy_minute_is_plain_events_counted_everywhere(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    minute = org.busy_minute(NOW - timedelta(hours=1))
    assert minute.second == 0 and minute.hour == (NOW - timedelta(hours=1)).hour
    events = org.events(minute, minute + timedelta(minutes=1))
    assert 8 <= len(events) <= 12
    assert {(e.model, e.workspace_id, e.service_tier) for e in events} == {
        ("claude-sonnet-4-5-20250929", None, "standard")}  # the Default Workspace
    # The HTTP report's bucket equals usage_totals() of the minute.
    (bucket,) = minute_buckets(server, minute, minute + timedelta(minutes=1))
    (row,) = bucket["results"]
    totals = org.usage_totals(minute, minute + timedelta(minutes=1), ["model"])
    assert totals == {(row["model"],): {
        "uncached_input_tokens": row["uncached_input_tokens"],
        "cache_read_input_tokens": row["cache_read_input_tokens"],
        "cache_creation_5m": row["cache_creation"]["ephemeral_5m_input_tokens"],
        "cache_creation_1h": row["cache_creation"]["ephemeral_1h_input_tokens"],
        "output_tokens": row["output_tokens"],
        "web_search_requests": 0,
    }}
    # Its cost is in the cost data, priced like any other Sonnet 4.5 traffic.
    expected = Decimal(0)
    for event in events:
        usd = default_table().price(
            event.model, at=event.timestamp, input=event.uncached_input_tokens,
            cache_read=event.cache_read_input_tokens, cache_write_5m=event.cache_creation_5m,
            output=event.output_tokens, service_tier="standard", inference_geo="not_available")
        assert isinstance(usd, Decimal)
        expected += usd * 100
    cost = org.cost_totals(minute, minute + timedelta(minutes=1))
    assert sum(cost.values()) == expected > 0


def test_the_busy_minute_is_deterministic_and_fills_as_time_passes(clock: FakeClock) -> None:
    first = SimulatedOrganization(seed=7, clock=clock)
    again = SimulatedOrganization(seed=7, clock=lambda: NOW + timedelta(days=30))
    hours = [NOW - timedelta(hours=h) for h in range(1, 25)]
    assert [first.busy_minute(h) for h in hours] == [again.busy_minute(h) for h in hours]
    other = SimulatedOrganization(seed=8, clock=clock)
    assert [first.busy_minute(h) for h in hours] != [other.busy_minute(h) for h in hours]
    # Within the minute, only the requests sent by now are counted.
    minute = first.busy_minute(NOW - timedelta(hours=2))
    clock.now = minute + timedelta(seconds=30)
    partial = first.events(minute, minute + timedelta(minutes=1))
    clock.now = NOW
    whole = first.events(minute, minute + timedelta(minutes=1))
    assert partial == whole[: len(partial)] and len(partial) <= len(whole)
