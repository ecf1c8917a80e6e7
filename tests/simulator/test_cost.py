"""The simulated bill against the shipped price table: token cost is the usage priced per request,
a cost skew multiplies it exactly, and an injected spend spike is ordinary traffic that every
report counts.

The expected figures are computed here from org.events() with exporter.pricing's
default_table().price(), one request at a time (the table itself is checked against the
published prices in tests/pricing)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

import exporter.simulator.org as org_module
from exporter.pricing import Unpriced, default_table
from exporter.simulator import SimulatedOrganization, SimulatorServer, UsageEvent

from .conftest import ADMIN_HEADERS, NOW, FakeClock, admin_get

USAGE = "/v1/organizations/usage_report/messages"
COST = "/v1/organizations/cost_report"
WEEK = datetime(2026, 3, 4, tzinfo=UTC)  # 2026-03-04 .. 03-10: Opus 4.6's long-context band applies
KINDS = {  # cost report token_type -> UsageEvent field and price table keyword
    "uncached_input_tokens": ("uncached_input_tokens", "input"),
    "cache_read_input_tokens": ("cache_read_input_tokens", "cache_read"),
    "cache_creation.ephemeral_5m_input_tokens": ("cache_creation_5m", "cache_write_5m"),
    "cache_creation.ephemeral_1h_input_tokens": ("cache_creation_1h", "cache_write_1h"),
    "output_tokens": ("output_tokens", "output"),
}


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def prompt(event: UsageEvent) -> int:
    return (event.uncached_input_tokens + event.cache_read_input_tokens
            + event.cache_creation_5m + event.cache_creation_1h)


def event_cents(event: UsageEvent, **counts: int) -> Decimal | None:
    """The request's cost in cents at the shipped table, for the given counts (default: all its
    tokens, no searches); None when the table cannot price it."""
    if not counts:
        counts = {keyword: getattr(event, field) for field, keyword in KINDS.values()}
    usd = default_table().price(
        event.model, at=event.timestamp, service_tier=event.service_tier,
        context_window=event.context_window, inference_geo=event.inference_geo, speed=event.speed,
        prompt_tokens=prompt(event), **counts)
    return None if isinstance(usd, Unpriced) else usd * 100


def day_of(moment: datetime) -> str:
    return moment.date().isoformat()


def expected_token_cents(events: Iterable[UsageEvent]) -> dict[tuple[str | None, str, str], Decimal]:
    """(workspace, model, UTC day) -> token cents, each request priced on its own."""
    expected: dict[tuple[str | None, str, str], Decimal] = {}
    for event in events:
        cents = event_cents(event)
        if cents is not None:
            key = (event.workspace_id, event.model, day_of(event.timestamp))
            expected[key] = expected.get(key, Decimal(0)) + cents
    return expected


def cost_report_rows(server: SimulatorServer, start: datetime, days: int) -> list[dict[str, Any]]:
    body = admin_get(server, COST, starting_at=ts(start), ending_at=ts(start + timedelta(days=days)),
                     limit=days, group_by=["workspace_id", "description"]).json()
    assert len(body["data"]) == days
    return [{**row, "day": bucket["starting_at"][:10]}
            for bucket in body["data"] for row in bucket["results"]]


def reported_token_cents(rows: Iterable[dict[str, Any]]) -> dict[tuple[str | None, str, str], Decimal]:
    got: dict[tuple[str | None, str, str], Decimal] = {}
    for row in rows:
        if row["cost_type"] == "tokens":
            key = (row["workspace_id"], row["model"], row["day"])
            got[key] = got.get(key, Decimal(0)) + Decimal(row["amount"])
    return got


def workspace_named(org: SimulatedOrganization, name: str) -> str:
    return next(ws["id"] for ws in org.workspaces if ws["name"] == name)


def key_named(org: SimulatedOrganization, name: str) -> str:
    return next(key["id"] for key in org.api_keys if key["name"] == name)


# --- the bill is the usage at the shipped prices ---------------------------------------------------


def test_token_cost_per_workspace_model_and_day_is_the_usage_at_the_shipped_prices(
        server: SimulatorServer) -> None:
    org = server.org
    events = org.events(WEEK, WEEK + timedelta(days=7))
    expected = expected_token_cents(events)
    got = reported_token_cents(cost_report_rows(server, WEEK, 7))
    assert got == expected
    assert len({day for _, _, day in got}) == 7 and len(got) > 100
    # What the week holds: every billed tier, fast mode, the us geo, and long prompts of Opus 4.6
    # while its long-context band applied (so the request's own prompt length mattered).
    priced = [e for e in events if event_cents(e) is not None]
    assert {e.service_tier for e in priced} == {"standard", "batch", "priority",
                                                "priority_on_demand"}
    assert {e.speed for e in priced} == {"standard", "fast"}
    assert "us" in {e.inference_geo for e in priced}
    long_opus = [e for e in priced if e.model == "claude-opus-4-6" and prompt(e) > 200_000]
    after_the_band = datetime(2026, 3, 25, tzinfo=UTC)
    assert long_opus and all(
        event_cents(e) > event_cents(replace(e, timestamp=after_the_band))  # type: ignore[operator]
        for e in long_opus)


def test_every_token_type_and_web_search_is_priced_per_request(org: SimulatedOrganization) -> None:
    day = WEEK + timedelta(days=6)
    events = org.events(day, day + timedelta(days=1))
    expected: dict[tuple[Any, ...], Decimal] = {}
    for event in events:
        if event_cents(event) is None:
            continue
        for token_type, (field, keyword) in KINDS.items():
            count = getattr(event, field)
            if count:
                key = (event.workspace_id, "tokens", event.model, token_type, event.service_tier,
                       event.context_window, event.inference_geo)
                cents = event_cents(event, **{keyword: count})
                assert cents is not None
                expected[key] = expected.get(key, Decimal(0)) + cents
        if event.web_search_requests:
            key = (event.workspace_id, "web_search", None, None, None, None, None)
            cents = event_cents(event, web_searches=event.web_search_requests)
            assert cents == event.web_search_requests  # $10 per 1,000 searches
            expected[key] = expected.get(key, Decimal(0)) + cents
    totals = {key: cents for key, cents in org.cost_totals(day, day + timedelta(days=1)).items()
              if key[1] in ("tokens", "web_search")}
    assert totals == expected


def test_flex_tiers_are_used_but_not_billed(org: SimulatedOrganization) -> None:
    day = WEEK + timedelta(days=6)
    end = day + timedelta(days=1)
    tiers = {key[0] for key in org.usage_totals(day, end, ["service_tier"])}
    assert {"flex", "flex_discount"} <= tiers
    assert not {key[4] for key in org.cost_totals(day, end)} & {"flex", "flex_discount"}


def test_a_model_the_table_does_not_list_is_billed_as_sonnet_4_5(
        org: SimulatedOrganization) -> None:
    moment = NOW - timedelta(minutes=5)
    window = (moment, NOW + timedelta(seconds=1))
    before = org.cost_totals(*window)
    org.record_message(UsageEvent(
        timestamp=moment, workspace_id=org.sdk_workspace_id, api_key_id=org.sdk_api_key_id,
        model="claude-nonexistent-9", service_tier="standard", context_window="0-200k",
        inference_geo="global", uncached_input_tokens=1000, cache_read_input_tokens=0,
        cache_creation_5m=0, cache_creation_1h=0, output_tokens=500, web_search_requests=2))
    assert isinstance(default_table().price("claude-nonexistent-9", at=moment, input=1), Unpriced)
    added = {key: cents - before.get(key, Decimal(0))
             for key, cents in org.cost_totals(*window).items() if cents != before.get(key)}
    where = ("standard", "0-200k", "global")
    # $3 and $15 per million tokens, $10 per 1,000 searches; in cents.
    assert added == {
        (org.sdk_workspace_id, "tokens", "claude-nonexistent-9", "uncached_input_tokens", *where):
            Decimal("0.3"),
        (org.sdk_workspace_id, "tokens", "claude-nonexistent-9", "output_tokens", *where):
            Decimal("0.75"),
        (org.sdk_workspace_id, "web_search", None, None, None, None, None): Decimal(2),
    }


def test_a_request_is_billed_by_its_own_prompt_length(org: SimulatedOrganization) -> None:
    # Haiku 5.5 bills every token of a request whose prompt is above 100k at its higher band, which
    # the usage report's context_window (0-200k) cannot show: the bill knows each request.
    def haiku(uncached: int) -> UsageEvent:
        return UsageEvent(
            timestamp=NOW, workspace_id=org.sdk_workspace_id, api_key_id=org.sdk_api_key_id,
            model="claude-haiku-5-5", service_tier="standard", context_window="0-200k",
            inference_geo="global", uncached_input_tokens=uncached, cache_read_input_tokens=0,
            cache_creation_5m=0, cache_creation_1h=0, output_tokens=1000, web_search_requests=0)

    org.record_message(haiku(150_000))
    org.record_message(haiku(50_000))
    cost = org.cost_totals(NOW, NOW + timedelta(seconds=1))
    key = (org.sdk_workspace_id, "tokens", "claude-haiku-5-5")
    # $0.50 and $2.50 per million above 100k; $0.10 and $0.50 below; in cents.
    assert cost[(*key, "uncached_input_tokens", "standard", "0-200k", "global")] == (
        Decimal("7.5") + Decimal("0.5"))
    assert cost[(*key, "output_tokens", "standard", "0-200k", "global")] == (
        Decimal("0.25") + Decimal("0.05"))


def test_a_month_of_cost_still_answers_quickly(server: SimulatorServer) -> None:
    params = {"starting_at": "2026-02-08T00:00:00Z", "limit": 31,
              "group_by": ["workspace_id", "description"]}
    admin_get(server, COST, **params)  # make the month's events
    started = time.perf_counter()
    assert admin_get(server, COST, **params).status_code == 200
    assert time.perf_counter() - started < 1.0


# --- cost skew -------------------------------------------------------------------------------------


def test_a_cost_skew_multiplies_token_cost_exactly(clock: FakeClock) -> None:
    plain = SimulatedOrganization(seed=7, clock=clock)
    skewed = SimulatedOrganization(seed=7, clock=clock, cost_skew=Decimal("1.25"))
    assert skewed.cost_skew == {"*": Decimal("1.25")}
    start, end = WEEK, WEEK + timedelta(days=2)
    before, after = plain.cost_totals(start, end), skewed.cost_totals(start, end)
    assert set(before) == set(after)
    for key, cents in before.items():
        assert after[key] == (cents * Decimal("1.25") if key[1] == "tokens" else cents)
    # A float is its shortest decimal: 1.1 is exactly 1.1.
    skewed.cost_skew = 1.1
    assert all(skewed.cost_totals(start, end)[key] == cents * Decimal("1.1")
               for key, cents in before.items() if key[1] == "tokens")
    skewed.cost_skew = 1
    assert skewed.cost_skew == {} and skewed.cost_totals(start, end) == before


def test_skew_selectors_pick_the_most_specific(clock: FakeClock) -> None:
    plain = SimulatedOrganization(seed=7, clock=clock)
    research = workspace_named(plain, "Research")
    skewed = SimulatedOrganization(seed=7, clock=clock, cost_skew={
        "*": 2, "claude-opus-5": 3, "Research/*": "0.5", f"{research}/claude-opus-5": 4,
        "default/claude-sonnet-5": 5})
    day = WEEK + timedelta(days=6)
    before = plain.cost_totals(day, day + timedelta(days=1))
    after = skewed.cost_totals(day, day + timedelta(days=1))

    def factor(workspace: str | None, model: str) -> Decimal:
        if workspace == research:
            return Decimal(4) if model == "claude-opus-5" else Decimal("0.5")
        if workspace is None and model == "claude-sonnet-5":
            return Decimal(5)
        return Decimal(3) if model == "claude-opus-5" else Decimal(2)

    seen = set()
    for key, cents in before.items():
        if key[1] == "tokens":
            assert key[2] is not None
            assert after[key] == cents * factor(key[0], key[2])
            seen.add(factor(key[0], key[2]))
        else:
            assert after[key] == cents
    assert seen == {Decimal(2), Decimal(3), Decimal("0.5"), Decimal(4), Decimal(5)}


@pytest.mark.parametrize("spec", [-1, "much", float("nan"), {"Nowhere/*": 2}, {"Research/": 2},
                                  True])
def test_bad_skews_are_refused_and_change_nothing(org: SimulatedOrganization, spec: Any) -> None:
    org.cost_skew = {"claude-opus-5": 2}
    with pytest.raises(ValueError):
        org.cost_skew = spec
    assert org.cost_skew == {"claude-opus-5": Decimal(2)}


def test_cost_skew_over_http(server: SimulatorServer) -> None:
    url = server.url + "/_simulator/cost_skew"
    day = WEEK + timedelta(days=6)
    plain = reported_token_cents(cost_report_rows(server, day, 1))
    answer = requests.put(url, json={"skew": {"claude-opus-5": 1.25}}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"cost_skew": {"claude-opus-5": "1.25"}}
    assert requests.get(url, timeout=5).json() == answer.json()
    skewed = reported_token_cents(cost_report_rows(server, day, 1))
    assert skewed == {key: cents * (Decimal("1.25") if key[1] == "claude-opus-5" else 1)
                      for key, cents in plain.items()}
    assert requests.post(url, json={"skew": 0.8}, timeout=5).json() == {"cost_skew": {"*": "0.8"}}
    assert requests.delete(url, timeout=5).json() == {"cost_skew": {}}
    assert reported_token_cents(cost_report_rows(server, day, 1)) == plain
    bad = requests.put(url, json={"skew": -2}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert requests.put(url, json={"factor": 2}, timeout=5).status_code == 400


def test_cost_skew_from_the_command_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--cost-skew", "1.25",
         "--cost-skew", "Research/claude-opus-5=2"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        skew = requests.get(url + "/_simulator/cost_skew", timeout=5).json()
        assert skew == {"cost_skew": {"*": "1.25", "Research/claude-opus-5": "2"}}
    finally:
        process.terminate()
        process.wait(timeout=5)
    refused = subprocess.run(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--cost-skew", "Nowhere/*=2"],
        capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "--cost-skew" in refused.stderr


# --- spend spikes ----------------------------------------------------------------------------------


def priced_usd(events: Iterable[UsageEvent]) -> Decimal:
    total = Decimal(0)
    for event in events:
        cents = event_cents(event, **{keyword: getattr(event, field)
                                      for field, keyword in KINDS.values()},
                            web_searches=event.web_search_requests)
        total += cents / 100 if cents is not None else 0
    return total


def test_a_spike_multiplies_the_last_hours_spend(clock: FakeClock) -> None:
    plain = SimulatedOrganization(seed=7, clock=clock)
    org = SimulatedOrganization(seed=7, clock=clock)
    production = workspace_named(org, "Production")
    start = NOW - timedelta(hours=1)
    spike = org.inject_spike(start, 60, 20, "Production")
    assert spike.workspace_id == production and spike.model == "claude-opus-5"
    assert spike.api_key_id == key_named(org, "Production Backend")
    assert spike.start == start.replace(microsecond=0) and spike.factor == 20

    # The usual spend is the average of the week before, per hour.
    week = [e for e in plain.events(start - timedelta(days=7), start)
            if e.workspace_id == production]
    assert spike.usual_usd == priced_usd(week) / (7 * 24)
    # What it adds is 19 times that, to within the rounding of equal-sized requests.
    assert abs(spike.added_usd / spike.usual_usd - 19) < Decimal("0.01")

    usual = plain.events(start, NOW + timedelta(seconds=1))
    added = [e for e in org.events(start, NOW + timedelta(seconds=1)) if e not in usual]
    assert len(added) == spike.events >= 60 * 4
    assert priced_usd(added) == spike.added_usd
    assert all(e.service_tier == "standard" and e.context_window == "0-200k"
               and start <= e.timestamp < start + timedelta(hours=1) for e in added)

    def last_hour(o: SimulatedOrganization) -> Decimal:
        return priced_usd(e for e in o.events(start, NOW + timedelta(seconds=1))
                          if e.workspace_id == production)

    assert last_hour(org) > 5 * last_hour(plain)


def test_a_spike_is_in_usage_totals_the_usage_report_and_cost(server: SimulatorServer,
                                                              clock: FakeClock) -> None:
    org = server.org
    plain = SimulatedOrganization(seed=7, clock=clock)
    hour = NOW.replace(minute=0, second=0)
    start = hour - timedelta(minutes=30)  # across an hour boundary
    spike = org.inject_spike(start, 45, 30, "Research")
    research = workspace_named(org, "Research")
    assert spike.workspace_id == research
    usual = plain.events(start, start + timedelta(minutes=45))
    spiked = [e for e in org.events(start, start + timedelta(minutes=45)) if e not in usual]
    assert len(spiked) == spike.events and {e.inference_geo for e in spiked} == {"us"}

    end = hour + timedelta(hours=1)
    group_by = ["workspace_id", "model"]
    with_spike = org.usage_totals(hour - timedelta(hours=1), end, group_by)
    without = plain.usage_totals(hour - timedelta(hours=1), end, group_by)
    key = (research, "claude-opus-5")
    for field in ("uncached_input_tokens", "output_tokens"):
        assert with_spike[key][field] - without[key][field] == sum(getattr(e, field) for e in spiked)
    assert {k: v for k, v in with_spike.items() if k != key} == {
        k: v for k, v in without.items() if k != key}

    body = admin_get(server, USAGE, starting_at=ts(hour - timedelta(hours=1)), ending_at=ts(end),
                     bucket_width="1h", group_by=group_by, workspace_ids=[research],
                     models=["claude-opus-5"]).json()
    reported = sum(row["output_tokens"] for b in body["data"] for row in b["results"])
    assert reported == with_spike[key]["output_tokens"]

    day = NOW.replace(hour=0, minute=0, second=0)
    got = reported_token_cents(cost_report_rows(server, day, 1))
    before = expected_token_cents(plain.events(day, day + timedelta(days=1)))
    assert got == expected_token_cents(org.events(day, day + timedelta(days=1)))
    assert got[(research, "claude-opus-5", day_of(day))] - before[
        (research, "claude-opus-5", day_of(day))] == spike.added_usd * 100


def test_spikes_are_deterministic_and_happen_as_time_passes(clock: FakeClock) -> None:
    first = SimulatedOrganization(seed=7, clock=clock)
    again = SimulatedOrganization(seed=7, clock=lambda: NOW + timedelta(days=3))
    plain = SimulatedOrganization(seed=7, clock=clock)
    start = NOW - timedelta(minutes=10)
    one = first.inject_spike(start, 30, Decimal("8.5"), "default", model="claude-sonnet-5")
    assert again.inject_spike(start, 30, "8.5", "default", model="claude-sonnet-5") == one
    assert one.workspace_id is None
    assert one.api_key_id == key_named(first, "Default Workspace Key")
    window = (start, start + timedelta(minutes=30))
    assert first.events(*window, now=window[1]) == again.events(*window)

    def spiked() -> list[UsageEvent]:
        usual = plain.events(*window)
        return [e for e in first.events(*window) if e not in usual]

    so_far = spiked()
    assert 0 < len(so_far) < one.events and all(e.timestamp <= NOW for e in so_far)
    clock.advance(minutes=20)
    assert len(spiked()) == one.events and spiked()[:len(so_far)] == so_far
    assert first.spikes == [one]
    first.clear_spikes()
    assert first.spikes == [] and spiked() == []


@pytest.mark.parametrize("args", [
    {"minutes": 0}, {"minutes": 24 * 60 + 1}, {"factor": 1}, {"factor": "lots"},
    {"workspace": "Nowhere"}, {"model": "claude-nonexistent-9"},
])
def test_bad_spikes_are_refused(org: SimulatedOrganization, args: dict[str, Any]) -> None:
    call: dict[str, Any] = {"minutes": 60, "factor": 10, "workspace": "Production", **args}
    with pytest.raises(ValueError):
        org.inject_spike(NOW - timedelta(hours=1), call["minutes"], call["factor"],
                         call["workspace"], **({"model": call["model"]} if "model" in call else {}))
    assert org.spikes == []


def test_spikes_hold_a_bounded_number_of_requests(org: SimulatedOrganization,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(org_module, "MAX_SPIKE_EVENTS", 400)
    org.inject_spike(NOW - timedelta(hours=1), 60, 10)
    with pytest.raises(ValueError, match="clear"):
        org.inject_spike(NOW - timedelta(hours=1), 60, 10)
    org.clear_spikes()
    org.inject_spike(NOW - timedelta(hours=1), 60, 10)


def test_spikes_over_http(server: SimulatorServer, clock: FakeClock) -> None:
    url = server.url + "/_simulator/spikes"
    org = server.org
    plain = SimulatedOrganization(seed=7, clock=clock)
    research = workspace_named(org, "Research")
    hour = NOW.replace(minute=0, second=0)
    span = (hour - timedelta(hours=1), hour + timedelta(hours=1))

    def output() -> int:
        body = admin_get(server, USAGE, starting_at=ts(span[0]), ending_at=ts(span[1]),
                         bucket_width="1h", group_by=["workspace_id"],
                         workspace_ids=[research]).json()
        return sum(r["output_tokens"] for b in body["data"] for r in b["results"])

    before = output()
    answer = requests.post(url, json={"factor": 20, "minutes": 60, "workspace": "Research"},
                           timeout=5)
    assert answer.status_code == 200
    (spike,) = answer.json()["spikes"]
    # By default the spike is the hour up to now, so all of it shows at once.
    assert spike["start"] == ts(NOW - timedelta(hours=1)) and spike["end"] == ts(NOW)
    assert spike["workspace_id"] == research and spike["model"] == "claude-opus-5"
    assert spike["factor"] == "20" and spike["events"] >= 240
    assert Decimal(spike["added_usd"]) > 18 * Decimal(spike["usual_usd"])
    usual = plain.events(*span)
    spiked = [e for e in org.events(*span) if e not in usual]
    assert len(spiked) == spike["events"]
    assert output() - before == sum(e.output_tokens for e in spiked) > 0
    assert requests.get(url, timeout=5).json()["spikes"] == [spike]

    # Through the fault-control endpoint too.
    faults = requests.post(server.url + "/_simulator/faults",
                           json={"fault": "spend_spike", "factor": 5, "minutes": 15,
                                 "workspace": "Production",
                                 "start": ts(NOW - timedelta(minutes=15))}, timeout=5)
    assert faults.status_code == 200
    body = faults.json()
    assert body["faults"] == [] and body["spike"]["minutes"] == 15
    assert len(requests.get(url, timeout=5).json()["spikes"]) == 2

    assert requests.delete(url, timeout=5).json() == {"spikes": []}
    assert output() == before
    for bad in ({"minutes": 60}, {"factor": 0.5}, {"factor": 3, "workspace": "Nowhere"},
                {"factor": 3, "start": "yesterday"}, {"factor": 3, "colour": "red"},
                {"factor": 3, "minutes": "ten"}):
        refused = requests.post(url, json=bad, timeout=5)
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["type"] == "invalid_request_error"
    assert requests.get(url, headers=ADMIN_HEADERS, timeout=5).json() == {"spikes": []}
