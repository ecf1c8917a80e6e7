"""The Claude Code analytics report: one UTC day of per-actor records, an hour behind, paged."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from exporter.pricing import default_table
from exporter.simulator import SimulatedOrganization, SimulatorServer
from exporter.simulator.org import CLAUDE_CODE_TOOLS

from .conftest import NOW, FakeClock, admin_get

CLAUDE_CODE = "/v1/organizations/usage_report/claude_code"
TODAY = NOW.date()  # a Wednesday
YESTERDAY = TODAY - timedelta(days=1)
RECORD_KEYS = {
    "date", "actor", "organization_id", "customer_type", "terminal_type", "is_remote",
    "core_metrics", "tool_actions", "model_breakdown", "subscription_type",
}


def all_records(server: SimulatorServer, day: date, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    page: str | None = None
    for _ in range(1000):
        response = admin_get(server, CLAUDE_CODE, starting_at=day.isoformat(), **params,
                             **({"page": page} if page else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "has_more", "next_page"}
        records.extend(body["data"])
        if not body["has_more"]:
            assert body["next_page"] is None
            return records
        page = body["next_page"]
    raise AssertionError("has_more never ends")


def week(org: SimulatedOrganization) -> list[dict[str, Any]]:
    return [record for offset in range(1, 8)
            for record in org.claude_code_records(TODAY - timedelta(days=offset))]


def test_record_shape(server: SimulatorServer, org: SimulatedOrganization) -> None:
    records = admin_get(server, CLAUDE_CODE, starting_at=YESTERDAY.isoformat()).json()["data"]
    assert records
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["date"] == "2026-03-10T00:00:00Z"
        assert record["organization_id"] == org.organization_id
        actor = record["actor"]
        if actor["type"] == "user_actor":
            assert set(actor) == {"type", "email_address"} and "@" in actor["email_address"]
        else:
            assert actor["type"] == "api_actor" and set(actor) == {"type", "api_key_name"}
        assert record["customer_type"] in ("api", "subscription")
        if record["customer_type"] == "api":
            assert record["subscription_type"] is None
        else:
            assert record["subscription_type"] in ("enterprise", "team")
        assert isinstance(record["terminal_type"], str) and record["terminal_type"]
        assert isinstance(record["is_remote"], bool)
        core = record["core_metrics"]
        assert set(core) == {"num_sessions", "lines_of_code", "commits_by_claude_code",
                             "pull_requests_by_claude_code"}
        assert core["num_sessions"] >= 1 and set(core["lines_of_code"]) == {"added", "removed"}
        assert set(CLAUDE_CODE_TOOLS) <= set(record["tool_actions"])
        for counts in record["tool_actions"].values():
            assert set(counts) == {"accepted", "rejected"}
            assert all(isinstance(n, int) and n >= 0 for n in counts.values())
        assert record["model_breakdown"]
        for entry in record["model_breakdown"]:
            assert set(entry) == {"model", "tokens", "estimated_cost"}
            assert set(entry["tokens"]) == {"input", "output", "cache_read", "cache_creation"}
            cost = entry["estimated_cost"]
            assert cost["currency"] == "USD" and isinstance(cost["amount"], int)
    # One row per actor, terminal type and remoteness.
    keys = [(str(r["actor"]), r["terminal_type"], r["is_remote"]) for r in records]
    assert len(keys) == len(set(keys))


def test_a_week_has_every_kind_of_row(org: SimulatedOrganization) -> None:
    records = week(org)
    assert {r["actor"]["type"] for r in records} == {"user_actor", "api_actor"}
    assert {r["customer_type"] for r in records} == {"api", "subscription"}
    assert {r["is_remote"] for r in records} == {True, False}
    assert {"vscode", "iTerm.app", "tmux"} <= {r["terminal_type"] for r in records}
    tools = {tool for r in records for tool in r["tool_actions"]}
    assert tools - set(CLAUDE_CODE_TOOLS)  # tools beyond the documented four
    # A remote session is a row of its own, next to the same actor's local ones.
    remote_actors = {str(r["actor"]) for r in records if r["is_remote"]}
    assert remote_actors & {str(r["actor"]) for r in records if not r["is_remote"]}
    assert any(r["core_metrics"]["pull_requests_by_claude_code"] for r in records)
    api_key_names = {r["actor"]["api_key_name"] for r in records if r["actor"]["type"] == "api_actor"}
    assert api_key_names <= {key["name"] for key in org.api_keys}


def test_estimated_cost_is_whole_cents_of_the_tokens(org: SimulatedOrganization) -> None:
    for record in week(org):
        for entry in record["model_breakdown"]:
            tokens = entry["tokens"]
            # The shipped table's standard rates on the record's day, 5-minute cache writes.
            usd = default_table().price(
                entry["model"], at=datetime.fromisoformat(record["date"]), input=tokens["input"],
                output=tokens["output"], cache_read=tokens["cache_read"],
                cache_write_5m=tokens["cache_creation"])
            assert isinstance(usd, Decimal)
            assert entry["estimated_cost"]["amount"] == int(
                (usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_http_pages_sum_to_the_python_side_records(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    expected = org.claude_code_records(YESTERDAY)
    paged = all_records(server, YESTERDAY, limit=2)
    assert paged == expected == all_records(server, YESTERDAY, limit=1000)

    def totals(records: list[dict[str, Any]]) -> tuple[int, ...]:
        return (
            sum(r["core_metrics"]["num_sessions"] for r in records),
            sum(r["core_metrics"]["lines_of_code"]["added"] for r in records),
            sum(m["tokens"]["input"] for r in records for m in r["model_breakdown"]),
            sum(m["estimated_cost"]["amount"] for r in records for m in r["model_breakdown"]),
        )

    assert totals(paged) == totals(expected) and totals(expected)[0] > 0


def test_default_limit_is_20_records(server: SimulatorServer, org: SimulatedOrganization) -> None:
    day = max((TODAY - timedelta(days=d) for d in range(1, 8)),
              key=lambda d: len(org.claude_code_records(d)))
    assert len(org.claude_code_records(day)) > 20
    body = admin_get(server, CLAUDE_CODE, starting_at=day.isoformat()).json()
    assert len(body["data"]) == 20 and body["has_more"] is True
    assert all_records(server, day) == org.claude_code_records(day)
    first = admin_get(server, CLAUDE_CODE, starting_at=YESTERDAY.isoformat(), limit=1).json()
    assert len(first["data"]) == 1 and first["has_more"] is True
    assert re.match(r"^page_[A-Za-z0-9_=-]+$", first["next_page"])


def test_one_day_only(server: SimulatorServer, org: SimulatedOrganization) -> None:
    before = all_records(server, YESTERDAY - timedelta(days=1))
    yesterday = all_records(server, YESTERDAY)
    assert {r["date"] for r in before} == {"2026-03-09T00:00:00Z"}
    assert {r["date"] for r in yesterday} == {"2026-03-10T00:00:00Z"}
    assert before != yesterday
    assert all_records(server, TODAY + timedelta(days=1)) == []  # the future: nothing yet


def test_only_data_older_than_an_hour(clock: FakeClock, org: SimulatedOrganization,
                                      server: SimulatorServer) -> None:
    start = datetime(2026, 3, 11, tzinfo=UTC)

    def sessions(now: datetime) -> int:
        clock.now = now
        return sum(r["core_metrics"]["num_sessions"] for r in all_records(server, TODAY))

    assert sessions(start + timedelta(minutes=59)) == 0
    assert sessions(start + timedelta(hours=1)) == 0  # nothing is more than an hour old yet
    counts = [sessions(start + timedelta(hours=h)) for h in range(1, 27)]
    assert counts == sorted(counts) and counts[0] < counts[12] < counts[-1]
    whole = sum(r["core_metrics"]["num_sessions"]
                for r in org.claude_code_records(TODAY, now=start + timedelta(days=9)))
    assert sessions(start + timedelta(hours=25)) == whole  # the day is complete an hour on
    # The report at a moment equals the python side's at that moment.
    clock.now = NOW
    assert all_records(server, TODAY) == org.claude_code_records(TODAY)
    assert org.claude_code_records(TODAY) == org.claude_code_records(TODAY, now=NOW)
    assert org.claude_code_records(TODAY) != org.claude_code_records(
        TODAY, now=NOW + timedelta(hours=4))


def test_pages_keep_the_boundary_of_their_first_page(
        server: SimulatorServer, org: SimulatedOrganization, clock: FakeClock) -> None:
    first = admin_get(server, CLAUDE_CODE, starting_at=TODAY.isoformat(), limit=2).json()
    at_first = org.claude_code_records(TODAY)
    clock.advance(hours=4)  # the day grew meanwhile
    assert org.claude_code_records(TODAY) != at_first
    records = list(first["data"])
    page = first["next_page"]
    while page:
        body = admin_get(server, CLAUDE_CODE, starting_at=TODAY.isoformat(), limit=2,
                         page=page).json()
        records.extend(body["data"])
        page = body["next_page"]
    assert records == at_first


def test_deterministic_per_seed_and_day(clock: FakeClock) -> None:
    first = SimulatedOrganization(seed=7, clock=clock)
    late = SimulatedOrganization(seed=7, clock=lambda: NOW + timedelta(days=90))
    other = SimulatedOrganization(seed=8, clock=clock)
    for day in (YESTERDAY, YESTERDAY - timedelta(days=30)):
        assert first.claude_code_records(day) == late.claude_code_records(day)
        assert first.claude_code_records(day) != other.claude_code_records(day)
    # A datetime names its UTC day too.
    assert first.claude_code_records(datetime(2026, 3, 10, 18, tzinfo=UTC)) == (
        first.claude_code_records(YESTERDAY))


@pytest.mark.parametrize("params", [
    {}, {"starting_at": ""}, {"starting_at": "2026-03-1"}, {"starting_at": "2026-02-30"},
    {"starting_at": "2026-03-10T00:00:00Z"}, {"starting_at": "yesterday"},
    {"starting_at": "2026-03-10", "limit": 0}, {"starting_at": "2026-03-10", "limit": 1001},
    {"starting_at": "2026-03-10", "page": "page_garbage"},
])
def test_bad_parameters_are_400(server: SimulatorServer, params: dict[str, Any]) -> None:
    response = admin_get(server, CLAUDE_CODE, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["request_id"] == response.headers["request-id"]


def test_a_cursor_is_for_its_own_day(server: SimulatorServer) -> None:
    page = admin_get(server, CLAUDE_CODE, starting_at=YESTERDAY.isoformat(),
                     limit=1).json()["next_page"]
    assert admin_get(server, CLAUDE_CODE, starting_at=YESTERDAY.isoformat(), limit=1,
                     page=page).status_code == 200
    other_day = admin_get(server, CLAUDE_CODE, starting_at=TODAY.isoformat(), page=page)
    assert other_day.status_code == 400
    rate_limits_page = admin_get(server, "/v1/organizations/rate_limits", limit=1).json()[
        "next_page"]
    assert admin_get(server, CLAUDE_CODE, starting_at=TODAY.isoformat(),
                     page=rate_limits_page).status_code == 400


def test_faults_and_a_key_without_access(server: SimulatorServer) -> None:
    day = YESTERDAY.isoformat()
    server.inject(CLAUDE_CODE, "403", times=3)
    usage = admin_get(server, "/v1/organizations/usage_report/messages",
                      starting_at="2026-03-10T00:00:00Z")
    assert usage.status_code == 200  # only the one report is refused
    for _ in range(3):
        denied = admin_get(server, CLAUDE_CODE, starting_at=day)
        assert denied.status_code == 403
        assert denied.json()["error"]["type"] == "permission_error"
        assert denied.json()["request_id"] == denied.headers["request-id"]
    assert admin_get(server, CLAUDE_CODE, starting_at=day).status_code == 200
    server.inject("/v1/organizations/usage_report/claude", "529")
    assert admin_get(server, CLAUDE_CODE, starting_at=day).status_code == 529
    server.inject(CLAUDE_CODE, "malformed_json")
    with pytest.raises(ValueError):
        admin_get(server, CLAUDE_CODE, starting_at=day).json()
    assert admin_get(server, CLAUDE_CODE, headers={}, starting_at=day).status_code == 401
    assert [r.status for r in server.requests if r.path == CLAUDE_CODE] == [
        403, 403, 403, 200, 529, 200, 401]
