"""The synthetic organization as pure data: layout, determinism, events, totals and prices."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from exporter.simulator import SimulatedOrganization, UsageEvent
from exporter.simulator.org import USAGE_FIELDS, cost_description

from .conftest import NOW, FakeClock

ID = re.compile(r"^(wrkspc|apikey|user)_01[0-9A-Za-z]{22}$")
DAY = datetime(2026, 3, 10, tzinfo=UTC)


def test_workspaces_exclude_default_and_include_one_archived(org: SimulatedOrganization) -> None:
    names = {ws["name"]: ws for ws in org.workspaces}
    assert set(names) == {"Production", "Research", "Prototypes", "Claude Code"}
    assert [ws["name"] for ws in org.workspaces if ws["archived_at"]] == ["Prototypes"]
    assert org.default_workspace_id not in {ws["id"] for ws in org.workspaces}
    assert ID.match(org.default_workspace_id)
    for ws in org.workspaces:
        assert ID.match(ws["id"])
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", ws["created_at"])
        assert ws["type"] == "workspace"
        assert set(ws["data_residency"]) == {
            "workspace_geo", "default_inference_geo", "allowed_inference_geos"}


def test_api_keys_cover_every_status_and_the_default_workspace(org: SimulatedOrganization) -> None:
    statuses = sorted(key["status"] for key in org.api_keys)
    assert statuses == ["active"] * 7 + ["archived", "inactive"]
    assert [key["name"] for key in org.api_keys if key["workspace_id"] is None] == [
        "Default Workspace Key"]
    listed = {ws["id"] for ws in org.workspaces}
    assert {key["workspace_id"] for key in org.api_keys} - listed == {None}
    assert all(ID.match(key["id"]) for key in org.api_keys)
    sdk = next(key for key in org.api_keys if key["id"] == org.sdk_api_key_id)
    assert sdk["status"] == "active" and sdk["workspace_id"] == org.sdk_workspace_id


def test_same_seed_same_org_other_seed_other_org(clock: FakeClock) -> None:
    first = SimulatedOrganization(seed=7, clock=clock)
    again = SimulatedOrganization(seed=7, clock=clock)
    other = SimulatedOrganization(seed=8, clock=clock)
    assert first.api_keys == again.api_keys and first.workspaces == again.workspaces
    assert first.events(DAY, DAY + timedelta(days=1)) == again.events(DAY, DAY + timedelta(days=1))
    assert first.api_keys[0]["id"] != other.api_keys[0]["id"]
    hour = DAY + timedelta(hours=1)
    assert first.events(DAY, hour) != other.events(DAY, hour)


def test_history_does_not_depend_on_when_it_is_asked_for() -> None:
    early = SimulatedOrganization(seed=7, clock=lambda: NOW)
    late = SimulatedOrganization(seed=7, clock=lambda: NOW + timedelta(days=40))
    start = NOW - timedelta(days=62)
    end = start + timedelta(days=2)
    assert early.events(start, end) == late.events(start, end)
    assert len(early.events(start, end)) > 100


def test_events_after_the_clock_do_not_exist_yet(org: SimulatedOrganization,
                                                 clock: FakeClock) -> None:
    hour = NOW.replace(minute=0, second=0)
    seen = org.events(hour, hour + timedelta(hours=1))
    assert seen and all(hour <= event.timestamp <= NOW for event in seen)
    clock.advance(minutes=30)
    later = org.events(hour, hour + timedelta(hours=1))
    assert later[: len(seen)] == seen and len(later) > len(seen)
    assert org.events(NOW + timedelta(days=1), NOW + timedelta(days=2)) == []


def test_events_have_second_timestamps_and_a_daily_rhythm(org: SimulatedOrganization) -> None:
    events = org.events(DAY, DAY + timedelta(days=1))
    assert all(event.timestamp.microsecond == 0 for event in events)
    # The hourly busy minute is a scheduled job's, the same at any hour: leave it out.
    people = [event for event in events
              if event.timestamp.replace(second=0) != org.busy_minute(event.timestamp)]
    working = sum(1 for event in people if 8 <= event.timestamp.hour < 18)
    night = sum(1 for event in people if event.timestamp.hour < 6)
    assert working > 4 * night
    assert {event.service_tier for event in events} == {
        "standard", "batch", "priority", "priority_on_demand", "flex", "flex_discount"}
    assert {event.speed for event in events} == {"standard", "fast"}
    assert {event.context_window for event in events} == {"0-200k", "200k-1M"}
    assert {event.inference_geo for event in events} == {"global", "us", "not_available"}
    assert sum(event.web_search_requests for event in events) > 0
    assert sum(event.cache_creation_1h for event in events) > 0
    assert sum(event.cache_creation_5m for event in events) > 0
    assert {None} < {event.api_key_id for event in events}  # Console usage and keys
    assert {None} < {event.workspace_id for event in events}  # the Default Workspace too


def test_usage_totals_group_by_in_the_order_asked(org: SimulatedOrganization) -> None:
    end = DAY + timedelta(days=1)
    events = org.events(DAY, end)
    by_pair = org.usage_totals(DAY, end, ["workspace_id", "api_key_id"])
    assert (None, None) in by_pair  # Console usage in the Default Workspace
    console = [e for e in events if e.workspace_id is None and e.api_key_id is None]
    expected = sum(e.output_tokens for e in console)
    assert by_pair[(None, None)]["output_tokens"] == expected
    total = org.usage_totals(DAY, end)
    assert list(total) == [()]
    assert set(total[()]) == set(USAGE_FIELDS)
    assert total[()]["uncached_input_tokens"] == sum(e.uncached_input_tokens for e in events)
    swapped = org.usage_totals(DAY, end, ["api_key_id", "workspace_id"])
    assert {(b, a) for a, b in by_pair} == set(swapped)


def test_record_message_adds_to_usage_and_cost(org: SimulatedOrganization) -> None:
    end = NOW + timedelta(seconds=1)
    start = NOW - timedelta(minutes=1)
    before = org.usage_totals(start, end, ["api_key_id"])
    assert (org.sdk_api_key_id,) not in before
    event = UsageEvent(
        timestamp=NOW, workspace_id=org.sdk_workspace_id, api_key_id=org.sdk_api_key_id,
        model="claude-opus-5", service_tier="standard", context_window="0-200k",
        inference_geo="us", uncached_input_tokens=1000, cache_read_input_tokens=0,
        cache_creation_5m=0, cache_creation_1h=0, output_tokens=2000, web_search_requests=3)
    org.record_message(event)
    after = org.usage_totals(start, end, ["api_key_id"])
    assert after[(org.sdk_api_key_id,)]["output_tokens"] == 2000
    cost = org.cost_totals(start, end)
    # Opus 5 output is $25/MTok, +10% for the us geo: 2000 tokens = 5.5 cents.
    assert cost[(org.sdk_workspace_id, "tokens", "claude-opus-5", "output_tokens", "standard",
                 "0-200k", "us")] == Decimal("5.5")
    assert cost[(org.sdk_workspace_id, "tokens", "claude-opus-5", "uncached_input_tokens",
                 "standard", "0-200k", "us")] == Decimal("0.55")


def test_cost_descriptions_are_unique_and_readable(org: SimulatedOrganization) -> None:
    totals = org.cost_totals(DAY - timedelta(days=6), DAY + timedelta(days=1))
    descriptions = {(key[0], cost_description(key)) for key in totals}
    assert len(descriptions) == len(totals)
    texts = {text for _, text in descriptions}
    assert "Claude Sonnet 4.5 Usage - Input Tokens" in texts
    assert "Claude Sonnet 4.5 Usage - Input Tokens, Cache Hit" in texts
    assert "Claude Opus 5 Usage - Input Tokens, Cache Write, 1h, Batch, US" in texts
    assert "Web Search Usage" in texts


def test_recorded_traffic_is_forgotten_beyond_the_widest_window():
    from exporter.simulator.org import RECORDED_HOURS

    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    org = SimulatedOrganization(seed=7, clock=lambda: now)
    old = now - timedelta(hours=RECORDED_HOURS + 2)
    event = replace(org.events(now - timedelta(days=1), now)[0], timestamp=old)
    org.record_message(event)
    assert event in org.events(old, old + timedelta(hours=1))
    org.record_message(replace(event, timestamp=now - timedelta(minutes=1)))
    assert event not in org.events(old, old + timedelta(hours=1))
    assert RECORDED_HOURS > 32 * 24  # longer than any report window
