"""Newer values of the reports: fast mode, OAuth and service-account traffic, newer service tiers,
code execution and Managed Agents session cost. Prices here are written out independently of the
simulator's price table."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from exporter.simulator import SimulatedOrganization, SimulatorServer, UsageEvent

from .conftest import ADMIN_HEADERS, NOW, FakeClock, admin_get
from .test_reports import COST, USAGE, error_of, parse, row_sums

DAY = datetime(2026, 3, 10, tzinfo=UTC)  # a Tuesday
BETA = {**ADMIN_HEADERS, "anthropic-beta": "fast-mode-2026-02-01"}
NEW_TIERS = {"priority_on_demand", "flex", "flex_discount"}
FAST_MODE_MODELS = {"claude-opus-5", "claude-opus-4-8"}  # of the models the simulator sends

# Opus 5 at fast-mode rates, USD per million tokens: $10 in and $50 out (2x standard), and the
# cache rates as the usual multiples of the fast input rate.
OPUS_5_FAST = {
    "uncached_input_tokens": Decimal(10),
    "cache_creation_5m": Decimal("12.50"),
    "cache_creation_1h": Decimal(20),
    "cache_read_input_tokens": Decimal(1),
    "output_tokens": Decimal(50),
}


def by_dimensions(bucket: dict[str, Any], group_by: list[str]) -> dict[tuple, dict[str, int]]:
    return {tuple(row[d] for d in group_by): row_sums(row) for row in bucket["results"]}


def cost_rows(server: SimulatorServer, day: datetime, days: int = 1) -> list[dict[str, Any]]:
    """The rows of `days` daily buckets from `day` on, grouped by workspace and description."""
    body = admin_get(server, COST, starting_at=day.strftime("%Y-%m-%dT%H:%M:%SZ"), limit=days,
                     group_by=["workspace_id", "description"]).json()
    assert len(body["data"]) == days
    return [row for bucket in body["data"] for row in bucket["results"]]


def workspace_named(org: SimulatedOrganization, name: str) -> str:
    return next(ws["id"] for ws in org.workspaces if ws["name"] == name)


def key_named(org: SimulatedOrganization, name: str) -> str:
    return next(key["id"] for key in org.api_keys if key["name"] == name)


# --- speed -------------------------------------------------------------------------------------


def test_fast_mode_is_a_small_share_of_opus_5_traffic_and_never_batch(
        org: SimulatedOrganization) -> None:
    events = org.events(DAY - timedelta(days=6), DAY + timedelta(days=1))
    fast = [e for e in events if e.speed == "fast"]
    assert fast and {e.speed for e in events} == {"standard", "fast"}
    assert {e.model for e in fast} <= FAST_MODE_MODELS
    assert all(e.service_tier == "standard" for e in fast)
    opus_5 = [e for e in events if e.model == "claude-opus-5"]
    assert 0.03 < len(fast) / len(opus_5) < 0.25
    assert {e.inference_geo for e in fast} == {"global", "us"}  # residency stacks with it


def test_speed_rows_agree_with_usage_totals(server: SimulatorServer) -> None:
    group_by = ["model", "speed"]
    body = admin_get(server, USAGE, headers=BETA, starting_at="2026-03-10T08:00:00Z",
                     bucket_width="1h", limit=6, group_by=group_by).json()
    speeds = set()
    for bucket in body["data"]:
        start = parse(bucket["starting_at"])
        expected = server.org.usage_totals(start, start + timedelta(hours=1), group_by)
        assert by_dimensions(bucket, group_by) == expected
        speeds |= {row["speed"] for row in bucket["results"]}
        assert all("speed" in row for row in bucket["results"])
    assert speeds == {"standard", "fast"}


def test_speeds_filter_needs_the_beta_header_and_selects_fast_traffic(
        server: SimulatorServer) -> None:
    without = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", speeds=["fast"])
    assert without.status_code == 400
    assert error_of(without)["error"] == {
        "type": "invalid_request_error",
        "message": "speed: requires the anthropic-beta header fast-mode-2026-02-01"}
    # The beta header alone changes nothing when speed is neither grouped nor filtered.
    plain = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1).json()
    beta = admin_get(server, USAGE, headers=BETA, starting_at="2026-03-10T00:00:00Z",
                     limit=1).json()
    assert plain == beta and "speed" not in plain["data"][0]["results"][0]

    body = admin_get(server, USAGE, headers=BETA, starting_at="2026-03-10T00:00:00Z", limit=1,
                     speeds=["fast"], group_by=["model"]).json()
    rows = body["data"][0]["results"]
    expected = server.org.usage_totals(DAY, DAY + timedelta(days=1), ["model"],
                                       filters={"speed": {"fast"}})
    assert by_dimensions(body["data"][0], ["model"]) == expected
    assert [row["model"] for row in rows] == ["claude-opus-5"]


def test_fast_mode_bills_twice_standard_with_cache_and_us_multipliers(
        org: SimulatedOrganization) -> None:
    tokens = {"uncached_input_tokens": 1000, "cache_creation_5m": 2000, "cache_creation_1h": 3000,
              "cache_read_input_tokens": 4000, "output_tokens": 5000}
    token_types = {"uncached_input_tokens": "uncached_input_tokens",
                   "cache_creation_5m": "cache_creation.ephemeral_5m_input_tokens",
                   "cache_creation_1h": "cache_creation.ephemeral_1h_input_tokens",
                   "cache_read_input_tokens": "cache_read_input_tokens",
                   "output_tokens": "output_tokens"}
    start = NOW - timedelta(minutes=1)
    for geo, tier, speed in (("global", "standard", "fast"), ("us", "standard", "fast"),
                             ("global", "standard", "standard"), ("global", "batch", "fast")):
        org.record_message(UsageEvent(
            timestamp=NOW, workspace_id=org.sdk_workspace_id, api_key_id=org.sdk_api_key_id,
            model="claude-opus-5", service_tier=tier, context_window="0-200k", inference_geo=geo,
            web_search_requests=0, speed=speed, **tokens))
    lines = org.cost_lines(start, NOW + timedelta(seconds=1))
    for name, count in tokens.items():
        fast = count * OPUS_5_FAST[name] / 10_000  # $/MTok -> cents per token
        key = (org.sdk_workspace_id, "tokens", "claude-opus-5", token_types[name], "standard",
               "0-200k")
        descriptions = {description: cents for (k, description), cents in lines.items()
                        if k[:6] == key and k[6] == "global"}
        assert len(descriptions) == 2
        standard = next(c for d, c in descriptions.items() if "Fast Mode" not in d)
        assert next(c for d, c in descriptions.items() if "Fast Mode" in d) == fast == 2 * standard
        assert sum(c for (k, _), c in lines.items() if k == (*key, "us")) == fast * Decimal("1.1")
    # Fast mode is not offered with Batch: such a request has no price, and is not billed.
    assert not any(k[4] == "batch" for k, _ in lines)


def test_fast_mode_cost_rows_equal_an_independent_calculation(server: SimulatorServer) -> None:
    org = server.org
    group_by = ["workspace_id", "model", "service_tier", "context_window", "inference_geo"]
    week = admin_get(server, USAGE, headers=BETA, starting_at="2026-03-04T00:00:00Z", limit=7,
                     speeds=["fast"], group_by=group_by).json()["data"]
    usage = [row for bucket in week for row in bucket["results"]]
    assert {row["model"] for row in usage} == {"claude-opus-5"}
    expected: dict[tuple[str | None, str | None], Decimal] = {}
    for row in usage:
        assert row["service_tier"] == "standard" and row["context_window"] == "0-200k"
        geo_factor = Decimal("1.1") if row["inference_geo"] == "us" else Decimal(1)
        dollars = sum(count * OPUS_5_FAST[name] for name, count in row_sums(row).items()
                      if name in OPUS_5_FAST) / 1_000_000
        where = (row["workspace_id"], row["inference_geo"])
        expected[where] = expected.get(where, Decimal(0)) + dollars * 100 * geo_factor
    assert len(expected) >= 3  # Production and Claude Code (global), Research (us)

    got: dict[tuple[str | None, str | None], Decimal] = {}
    for row in cost_rows(server, datetime(2026, 3, 4, tzinfo=UTC), days=7):
        if "Fast Mode" in row["description"]:
            assert row["model"] == "claude-opus-5" and row["service_tier"] == "standard"
            where = (row["workspace_id"], row["inference_geo"])
            got[where] = got.get(where, Decimal(0)) + Decimal(row["amount"])
    assert got == expected
    assert (workspace_named(org, "Research"), "us") in got


def test_fast_and_standard_rows_share_fields_but_not_descriptions(server: SimulatorServer) -> None:
    rows = cost_rows(server, DAY)
    claude_code = workspace_named(server.org, "Claude Code")
    output = [r for r in rows if r["workspace_id"] == claude_code
              and r["model"] == "claude-opus-5" and r["token_type"] == "output_tokens"]
    assert sorted(r["description"] for r in output) == [
        "Claude Opus 5 Usage - Output Tokens", "Claude Opus 5 Usage - Output Tokens, Fast Mode"]
    assert len({(r["service_tier"], r["context_window"], r["inference_geo"]) for r in output}) == 1
    descriptions = [(r["workspace_id"], r["description"]) for r in rows]
    assert len(descriptions) == len(set(descriptions))
    week = cost_rows(server, datetime(2026, 3, 4, tzinfo=UTC), days=7)
    assert "Claude Opus 5 Usage - Input Tokens, Cache Write, 1h, Fast Mode, US" in {
        r["description"] for r in week}


# --- account_id and service_account_id -----------------------------------------------------------


def test_oauth_and_service_account_traffic(org: SimulatedOrganization) -> None:
    events = org.events(DAY, DAY + timedelta(days=1))
    oauth = [e for e in events if e.account_id is not None]
    federated = [e for e in events if e.service_account_id is not None]
    assert oauth and federated
    assert re.match(r"^svac_01[0-9A-Za-z]{22}$", org.service_account_id)
    assert {e.account_id for e in oauth} == set(org.user_ids[:2])
    assert all(re.match(r"^user_01[0-9A-Za-z]{22}$", e.account_id or "") for e in oauth)
    assert {e.service_account_id for e in federated} == {org.service_account_id}
    assert not any(e.account_id and e.service_account_id for e in events)
    # Never Console usage: api_key_id is null only for that.
    assert {e.api_key_id for e in oauth} == {key_named(org, "Claude Code")}
    assert {e.api_key_id for e in federated} == {key_named(org, "Agents Workload Identity")}
    assert {e.workspace_id for e in federated} == {workspace_named(org, "Production")}
    assert any(e.speed == "fast" for e in oauth)
    assert any(e.service_tier == "batch" for e in federated)


def test_account_rows_agree_with_usage_totals(server: SimulatorServer) -> None:
    org = server.org
    group_by = ["api_key_id", "account_id", "service_account_id"]
    body = admin_get(server, USAGE, starting_at="2026-03-10T10:00:00Z", bucket_width="1h",
                     limit=4, group_by=group_by).json()
    seen: set[tuple] = set()
    for bucket in body["data"]:
        start = parse(bucket["starting_at"])
        expected = org.usage_totals(start, start + timedelta(hours=1), group_by)
        assert by_dimensions(bucket, group_by) == expected
        seen |= set(expected)
    claude_code = key_named(org, "Claude Code")
    workload = key_named(org, "Agents Workload Identity")
    assert {
        (claude_code, None, None),  # key-authenticated Claude Code
        (claude_code, org.user_ids[0], None), (claude_code, org.user_ids[1], None),
        (workload, None, org.service_account_id),
        (None, None, None),  # Console
    } <= seen
    # The day's grouped rows add up to the ungrouped row.
    total = org.usage_totals(DAY, DAY + timedelta(days=1))[()]
    grouped = org.usage_totals(DAY, DAY + timedelta(days=1), ["speed", *group_by])
    assert {name: sum(sums[name] for sums in grouped.values()) for name in total} == total


def test_account_filters(server: SimulatorServer) -> None:
    org = server.org
    for name, dimension, value in (("account_ids", "account_id", org.user_ids[1]),
                                   ("service_account_ids", "service_account_id",
                                    org.service_account_id)):
        body = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                         group_by=[dimension, "model"], **{name: [value]}).json()
        rows = body["data"][0]["results"]
        assert rows and {row[dimension] for row in rows} == {value}
        expected = org.usage_totals(DAY, DAY + timedelta(days=1), [dimension, "model"],
                                    filters={dimension: {value}})
        assert by_dimensions(body["data"][0], [dimension, "model"]) == expected


# --- service tiers -------------------------------------------------------------------------------


def test_newer_service_tiers_pass_through_the_usage_report(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=["service_tier"]).json()
    tiers = {row["service_tier"] for row in body["data"][0]["results"]}
    assert tiers == {"standard", "batch", "priority"} | NEW_TIERS
    filtered = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                         group_by=["service_tier", "model"],
                         service_tiers=sorted(NEW_TIERS)).json()["data"][0]
    expected = server.org.usage_totals(DAY, DAY + timedelta(days=1), ["service_tier", "model"],
                                       filters={"service_tier": NEW_TIERS})
    assert by_dimensions(filtered, ["service_tier", "model"]) == expected
    assert {key[0] for key in expected} == NEW_TIERS


def test_priority_tiers_are_billed_and_flex_is_not(server: SimulatorServer) -> None:
    org = server.org
    rows = cost_rows(server, DAY)
    # Every tier the price table prices has rows of its own; flex and flex_discount have no
    # published price, so neither the simulated bill nor the exporter's estimate has them.
    assert {row["service_tier"] for row in rows} == {
        "standard", "batch", "priority", "priority_on_demand", None}
    on_demand = [r for r in rows if r["service_tier"] == "priority_on_demand"]
    assert {r["description"] for r in on_demand} >= {
        "Claude Sonnet 5 Usage - Output Tokens, Priority On Demand"}
    # Haiku 4.5 in Production: its standard traffic is billed, the Batch Pipeline's flex
    # traffic is not.
    production = workspace_named(org, "Production")
    standard = org.usage_totals(DAY, DAY + timedelta(days=1), ["workspace_id", "model"],
                                filters={"service_tier": {"standard"}})
    flex = org.usage_totals(DAY, DAY + timedelta(days=1), ["workspace_id", "model"],
                            filters={"service_tier": {"flex"}})
    key = (production, "claude-haiku-4-5-20251001")
    assert flex[key]["output_tokens"] > 0
    (row,) = [r for r in rows if r["workspace_id"] == production
              and r["description"] == "Claude Haiku 4.5 Usage - Output Tokens"]
    assert Decimal(row["amount"]) == standard[key]["output_tokens"] * Decimal(5) / 10_000


# --- code execution and Managed Agents session cost ---------------------------------------------


def independent_metered_cents(org: SimulatedOrganization, day: datetime) -> dict[str, Decimal]:
    """A day's cost per cost type from the metered hours: code execution at $0.05 an hour
    beyond 1,550 free hours a calendar month, sessions at $0.08 an hour."""
    month_start = day.replace(day=1)
    before = sum((r.hours for r in org.metered(month_start, day)
                  if r.cost_type == "code_execution"), Decimal(0))
    today = org.metered(day, day + timedelta(days=1))
    code_hours = sum((r.hours for r in today if r.cost_type == "code_execution"), Decimal(0))
    session_hours = sum((r.hours for r in today if r.cost_type == "session_usage"), Decimal(0))
    free = Decimal(1550)
    billed = max(Decimal(0), before + code_hours - free) - max(Decimal(0), before - free)
    return {"code_execution": billed * 5, "session_usage": session_hours * 8}


def test_code_execution_and_session_cost_rows_every_day(server: SimulatorServer) -> None:
    org = server.org
    research = workspace_named(org, "Research")
    production = workspace_named(org, "Production")
    seen_code = []
    for offset in range(10):
        day = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=offset)
        expected = independent_metered_cents(org, day)
        rows = [r for r in cost_rows(server, day)
                if r["cost_type"] in ("code_execution", "session_usage")]
        got = {r["cost_type"]: Decimal(r["amount"]) for r in rows}
        for row in rows:
            assert row["workspace_id"] == (
                research if row["cost_type"] == "code_execution" else production)
            assert row["description"] == {"code_execution": "Code Execution Usage",
                                          "session_usage": "Managed Agents Session Usage"}[
                row["cost_type"]]
            assert all(row[name] is None for name in (
                "model", "token_type", "service_tier", "context_window", "inference_geo"))
        # Days within the free hours have no code execution row rather than a zero one.
        assert got == {name: cents for name, cents in expected.items() if cents}
        assert got["session_usage"] > 0
        seen_code.append("code_execution" in got)
    # The month's free hours last the first few days, then every day is billed.
    assert seen_code[0] is False and seen_code[-1] is True
    first = seen_code.index(True)
    assert all(seen_code[first:]) and 2 <= first <= 8


def test_the_first_billed_code_execution_day_is_billed_in_part(org: SimulatedOrganization) -> None:
    month = datetime(2026, 3, 1, tzinfo=UTC)
    used = Decimal(0)
    for offset in range(31):
        day = month + timedelta(days=offset)
        records = [r for r in org.metered(day, day + timedelta(days=1))
                   if r.cost_type == "code_execution"]
        hours = sum((r.hours for r in records), Decimal(0))
        if used + hours > 1550:
            cents = sum((r.cents for r in records), Decimal(0))
            assert cents == (used + hours - 1550) * 5 < hours * 5
            (crossing,) = [r for r in records if 0 < r.cents < r.hours * 5]
            assert all(r.cents == 0 for r in records if r.timestamp < crossing.timestamp)
            assert all(r.cents == r.hours * 5 for r in records if r.timestamp > crossing.timestamp)
            return
        used += hours
    pytest.fail("the free hours never ran out")


def test_metered_usage_is_deterministic_and_grows_with_the_clock(clock: FakeClock) -> None:
    org = SimulatedOrganization(seed=7, clock=clock)
    late = SimulatedOrganization(seed=7, clock=lambda: NOW + timedelta(days=40))
    other = SimulatedOrganization(seed=8, clock=clock)
    # Asked for in a different order (the month's first days not made yet) and much later.
    assert late.metered(DAY, DAY + timedelta(days=1)) == org.metered(DAY, DAY + timedelta(days=1))
    assert other.metered(DAY, DAY + timedelta(days=1)) != org.metered(DAY, DAY + timedelta(days=1))
    today = NOW.replace(hour=0, minute=0, second=0)
    seen = org.metered(today, today + timedelta(days=1))
    assert seen and all(r.timestamp <= NOW for r in seen)
    clock.advance(hours=3)
    later = org.metered(today, today + timedelta(days=1))
    assert later[: len(seen)] == seen and len(later) > len(seen)
    assert all(r.hours == r.hours.quantize(Decimal("0.01")) > 0 for r in later)


def test_ungrouped_cost_includes_every_cost_type(server: SimulatorServer) -> None:
    (row,) = admin_get(server, COST, starting_at="2026-03-10T00:00:00Z",
                       limit=1).json()["data"][0]["results"]
    totals = server.org.cost_totals(DAY, DAY + timedelta(days=1))
    assert Decimal(row["amount"]) == sum(totals.values())
    assert {key[1] for key in totals} == {"tokens", "web_search", "code_execution",
                                         "session_usage"}


def test_a_month_of_cost_answers_quickly(server: SimulatorServer) -> None:
    params = {"starting_at": "2026-02-08T00:00:00Z", "limit": 31,
              "group_by": ["workspace_id", "description"]}
    admin_get(server, COST, **params)  # warm the cache
    started = time.perf_counter()
    body = admin_get(server, COST, **params).json()
    assert time.perf_counter() - started < 1.0  # generous for slow CI; ~30 ms on a laptop
    assert len(body["data"]) == 31
    assert all(any(r["cost_type"] == "session_usage" for r in b["results"]) for b in body["data"])
