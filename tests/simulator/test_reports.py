"""The usage and cost report endpoints over real HTTP, against a frozen clock."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer
from exporter.simulator.org import cost_description

from .conftest import ADMIN_HEADERS, FakeClock, admin_get

USAGE = "/v1/organizations/usage_report/messages"
COST = "/v1/organizations/cost_report"
FIVE = ["workspace_id", "api_key_id", "model", "service_tier", "context_window"]
ROW_KEYS = {
    "uncached_input_tokens", "cache_creation", "cache_read_input_tokens", "output_tokens",
    "server_tool_use", "api_key_id", "workspace_id", "model", "service_tier", "context_window",
    "inference_geo", "account_id", "service_account_id",
}
COST_ROW_KEYS = {
    "amount", "currency", "workspace_id", "description", "cost_type", "context_window", "model",
    "service_tier", "token_type", "inference_geo",
}


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def row_sums(row: dict[str, Any]) -> dict[str, int]:
    """A usage row's counters in usage_totals() names."""
    return {
        "uncached_input_tokens": row["uncached_input_tokens"],
        "cache_read_input_tokens": row["cache_read_input_tokens"],
        "cache_creation_5m": row["cache_creation"]["ephemeral_5m_input_tokens"],
        "cache_creation_1h": row["cache_creation"]["ephemeral_1h_input_tokens"],
        "output_tokens": row["output_tokens"],
        "web_search_requests": row["server_tool_use"]["web_search_requests"],
    }


def add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) + value for name, value in more.items()}


def fetch_all(server: SimulatorServer, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every bucket of a report, following next_page."""
    buckets: list[dict[str, Any]] = []
    page: str | None = None
    while True:
        body = admin_get(server, path, **params, **({"page": page} if page else {})).json()
        buckets.extend(body["data"])
        if not body["has_more"]:
            assert body["next_page"] is None
            return buckets
        page = body["next_page"]


# --- auth and versions -------------------------------------------------------------------------


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert body["request_id"] == response.headers["request-id"]
    assert re.match(r"^req_01[0-9A-Za-z]{22}$", body["request_id"])
    assert "anthropic-workspace-id" not in response.headers
    return body


@pytest.mark.parametrize(
    ("headers", "status", "error_type", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error", "invalid x-api-key"),
        ({"x-api-key": "sk-ant-api03-abc", "anthropic-version": "2023-06-01"}, 401,
         "authentication_error", "invalid x-api-key"),
        ({"authorization": "Bearer ", "anthropic-version": "2023-06-01"}, 401,
         "authentication_error", "invalid x-api-key"),
        ({"x-api-key": ADMIN_KEY}, 400, "invalid_request_error",
         "anthropic-version: header is required"),
        ({"x-api-key": ADMIN_KEY, "anthropic-version": "2026-10-21"}, 400, "invalid_request_error",
         'anthropic-version: "2026-10-21" is not a valid version'),
        ({**ADMIN_HEADERS, "anthropic-beta": "made-up-2025-01-01"}, 400, "invalid_request_error",
         "Unexpected value(s) `made-up-2025-01-01` for the `anthropic-beta` header. Please consult "
         "our documentation at docs.claude.com or try again without the header."),
    ],
)
def test_auth_and_version_errors(server: SimulatorServer, headers: dict[str, str], status: int,
                                 error_type: str, message: str) -> None:
    response = admin_get(server, USAGE, headers=headers, starting_at="2026-03-10T00:00:00Z")
    assert response.status_code == status
    assert error_of(response) == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }
    assert response.headers["anthropic-organization-id"] == server.org.organization_id


def test_admin_key_prefix_and_bearer_tokens_are_accepted(server: SimulatorServer) -> None:
    other_admin = {"x-api-key": "sk-ant-admin01-anything", "anthropic-version": "2023-06-01"}
    bearer = {"authorization": "Bearer oauth-token", "anthropic-version": "2023-06-01"}
    for headers in (ADMIN_HEADERS, other_admin, bearer):
        response = admin_get(server, USAGE, headers=headers, starting_at="2026-03-10T00:00:00Z")
        assert response.status_code == 200
        assert "anthropic-workspace-id" not in response.headers


def test_every_response_has_a_unique_request_id(server: SimulatorServer) -> None:
    ids = {admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z").headers["request-id"]
           for _ in range(5)}
    assert len(ids) == 5


def test_unknown_route_is_not_found(server: SimulatorServer) -> None:
    response = admin_get(server, "/v1/organizations/nothing")
    assert response.status_code == 404
    assert error_of(response)["error"] == {"type": "not_found_error", "message": "Not found"}


# --- buckets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "starting_at", "first"),
    [
        ("1d", "2026-03-06T10:17:43Z", "2026-03-06T00:00:00Z"),
        ("1h", "2026-03-09T10:17:43Z", "2026-03-09T10:00:00Z"),
        ("1m", "2026-03-09T10:17:43.250Z", "2026-03-09T10:17:00Z"),
        # 01:30 at +02:00 is 23:30 UTC the day before.
        ("1d", "2026-03-09T01:30:00+02:00", "2026-03-08T00:00:00Z"),
        ("1h", "2026-03-09T01:30:00-05:00", "2026-03-09T06:00:00Z"),
    ],
)
def test_starting_at_snaps_down_to_the_bucket(server: SimulatorServer, width: str,
                                              starting_at: str, first: str) -> None:
    body = admin_get(server, USAGE, starting_at=starting_at, bucket_width=width, limit=3).json()
    starts = [bucket["starting_at"] for bucket in body["data"]]
    step = {"1d": timedelta(days=1), "1h": timedelta(hours=1), "1m": timedelta(minutes=1)}[width]
    assert starts == [ts(parse(first) + i * step) for i in range(3)]
    assert [b["ending_at"] for b in body["data"]] == [ts(parse(s) + step) for s in starts]


def test_a_raw_plus_in_the_offset_is_accepted(server: SimulatorServer) -> None:
    url = f"{server.url}{USAGE}?starting_at=2026-03-09T01:30:00+02:00&limit=1"
    body = requests.get(url, headers=ADMIN_HEADERS, timeout=10).json()
    assert body["data"][0]["starting_at"] == "2026-03-08T00:00:00Z"


def test_empty_buckets_are_present(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-11T03:00:00Z", bucket_width="1m",
                     ending_at="2026-03-11T04:00:00Z").json()
    assert len(body["data"]) == 60
    empty = [bucket for bucket in body["data"] if bucket["results"] == []]
    assert 30 < len(empty) < 60  # a quiet night hour: most minutes have nothing
    nothing = admin_get(server, USAGE, starting_at="2026-03-01T00:00:00Z", limit=5,
                        models=["claude-none"]).json()
    assert [b["results"] for b in nothing["data"]] == [[]] * 5


def test_default_ending_at_is_now_and_drops_the_bucket_in_progress(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-11T12:00:00Z", bucket_width="1h").json()
    assert [b["starting_at"] for b in body["data"]] == [
        "2026-03-11T12:00:00Z", "2026-03-11T13:00:00Z"]
    assert body["has_more"] is False and body["next_page"] is None


def test_future_ending_at_stops_at_the_current_partial_bucket(server: SimulatorServer) -> None:
    for ending_at in ("2026-03-11T15:00:00Z", "2026-03-12T00:00:00Z"):
        body = admin_get(server, USAGE, starting_at="2026-03-11T12:00:00Z", bucket_width="1h",
                         ending_at=ending_at).json()
        assert [b["starting_at"] for b in body["data"]] == [
            "2026-03-11T12:00:00Z", "2026-03-11T13:00:00Z", "2026-03-11T14:00:00Z"]
        assert body["has_more"] is False


def test_unaligned_ending_at_drops_the_bucket_it_cuts(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-05T00:00:00Z",
                     ending_at="2026-03-08T12:00:00Z").json()
    assert [b["starting_at"] for b in body["data"]] == [
        "2026-03-05T00:00:00Z", "2026-03-06T00:00:00Z", "2026-03-07T00:00:00Z"]


def test_current_partial_bucket_grows_with_the_clock(server: SimulatorServer,
                                                    clock: FakeClock) -> None:
    def current_hour() -> dict[str, Any]:
        body = admin_get(server, USAGE, starting_at="2026-03-11T14:00:00Z", bucket_width="1h",
                         ending_at="2026-03-11T15:00:00Z").json()
        (bucket,) = body["data"]
        (row,) = bucket["results"]
        return row_sums(row)

    before = current_hour()
    assert before == server.org.usage_totals(
        datetime(2026, 3, 11, 14, tzinfo=UTC), datetime(2026, 3, 11, 15, tzinfo=UTC))[()]
    clock.advance(minutes=20)
    after = current_hour()
    assert after["uncached_input_tokens"] > before["uncached_input_tokens"]
    assert all(after[name] >= before[name] for name in before)
    # The past does not change.
    older = admin_get(server, USAGE, starting_at="2026-03-11T13:00:00Z", bucket_width="1h",
                      limit=1).json()
    assert row_sums(older["data"][0]["results"][0]) == server.org.usage_totals(
        datetime(2026, 3, 11, 13, tzinfo=UTC), datetime(2026, 3, 11, 14, tzinfo=UTC))[()]


# --- pagination and limits ---------------------------------------------------------------------


def test_pages_cover_exactly_what_one_page_does(server: SimulatorServer) -> None:
    params = {"starting_at": "2026-03-07T00:00:00Z", "ending_at": "2026-03-10T00:00:00Z",
              "bucket_width": "1h", "group_by": ["model", "workspace_id"]}
    first = admin_get(server, USAGE, **params, limit=24).json()
    assert first["has_more"] is True
    assert first["next_page"] == "page_" + base64.b64encode(b"2026-03-08T00:00:00Z").decode()
    paged = fetch_all(server, USAGE, **params, limit=24)
    single = admin_get(server, USAGE, **params, limit=168).json()
    assert single["has_more"] is False
    assert paged == single["data"]
    assert len(paged) == 72
    assert len(server.requests) == 1 + 3 + 1


def test_next_page_resumes_with_the_same_parameters(server: SimulatorServer) -> None:
    first = admin_get(server, USAGE, starting_at="2026-02-01T00:00:00Z",
                      ending_at="2026-03-01T00:00:00Z").json()
    assert len(first["data"]) == 7 and first["has_more"]
    second = admin_get(server, USAGE, starting_at="2026-02-01T00:00:00Z",
                       ending_at="2026-03-01T00:00:00Z", page=first["next_page"]).json()
    assert second["data"][0]["starting_at"] == "2026-02-08T00:00:00Z"
    assert len(second["data"]) == 7


@pytest.mark.parametrize(
    ("width", "default", "maximum"), [("1d", 7, 31), ("1h", 24, 168), ("1m", 60, 1440)]
)
def test_limit_defaults_and_maxima(server: SimulatorServer, width: str, default: int,
                                   maximum: int) -> None:
    start = "2025-12-01T00:00:00Z"
    unlimited = admin_get(server, USAGE, starting_at=start, bucket_width=width)
    assert len(unlimited.json()["data"]) == default
    full = admin_get(server, USAGE, starting_at=start, bucket_width=width, limit=maximum)
    assert len(full.json()["data"]) == maximum
    too_many = admin_get(server, USAGE, starting_at=start, bucket_width=width, limit=maximum + 1)
    assert too_many.status_code == 400
    assert error_of(too_many)["error"]["message"] == (
        f"limit: Input should be between 1 and {maximum} for bucket_width {width}")


def test_large_reports_answer_quickly(server: SimulatorServer) -> None:
    admin_get(server, USAGE, starting_at="2026-02-08T00:00:00Z", limit=31)  # warm the cache
    started = time.perf_counter()
    day = admin_get(server, USAGE, starting_at="2026-02-08T00:00:00Z", limit=31, group_by=FIVE)
    minutes = admin_get(server, USAGE, starting_at="2026-03-10T14:37:00Z", bucket_width="1m",
                        limit=1440, group_by=FIVE)
    assert time.perf_counter() - started < 1.0  # generous for slow CI; ~50 ms on a laptop
    assert len(day.json()["data"]) == 31 and len(minutes.json()["data"]) == 1440


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "starting_at: Field required"),
        ({"starting_at": "yesterday"},
         "starting_at: Input should be a valid RFC 3339 datetime with a time zone"),
        ({"starting_at": "2026-03-01T00:00:00"},
         "starting_at: Input should be a valid RFC 3339 datetime with a time zone"),
        ({"starting_at": "2026-03-01T00:00:00Z", "bucket_width": "2d"},
         "bucket_width: Input should be '1d', '1h' or '1m'"),
        ({"starting_at": "2026-03-01T00:00:00Z", "limit": "0"},
         "limit: Input should be between 1 and 31 for bucket_width 1d"),
        ({"starting_at": "2026-03-01T00:00:00Z", "limit": "ten"},
         "limit: Input should be a valid integer"),
        ({"starting_at": "2026-03-01T00:00:00Z", "group_by": ["user_id"]},
         "group_by: Input should be 'api_key_id', 'workspace_id', 'model', 'service_tier', "
         "'context_window', 'inference_geo', 'speed', 'account_id' or 'service_account_id'"),
        ({"starting_at": "2026-03-01T00:00:00Z", "group_by": ["speed"]},
         "speed: requires the anthropic-beta header fast-mode-2026-02-01"),
        ({"starting_at": "2026-03-01T00:00:00Z", "ending_at": "2026-03-01T00:00:00Z"},
         "Invalid date range: ending date must be after starting date"),
        ({"starting_at": "2026-03-12T00:00:00Z"},
         "Invalid date range: ending date must be after starting date"),
        ({"starting_at": "2026-03-01T00:00:00Z", "service_tiers": ["gold"]},
         "service_tiers: Input should be 'standard', 'batch', 'priority', 'priority_on_demand', "
         "'flex' or 'flex_discount'"),
        ({"starting_at": "2026-03-01T00:00:00Z", "page": "page_bm9uc2Vuc2U="},
         "page: Invalid page token"),
    ],
)
def test_bad_usage_parameters(server: SimulatorServer, params: dict[str, Any],
                              message: str) -> None:
    response = admin_get(server, USAGE, **params)
    assert response.status_code == 400
    assert error_of(response)["error"] == {"type": "invalid_request_error", "message": message}


def test_speed_with_the_beta_header(server: SimulatorServer) -> None:
    headers = {**ADMIN_HEADERS, "anthropic-beta": "fast-mode-2026-02-01"}
    body = admin_get(server, USAGE, headers=headers, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=["speed"]).json()
    rows = body["data"][0]["results"]
    assert [row["speed"] for row in rows] == ["fast", "standard"]
    assert all(set(row) == ROW_KEYS | {"speed"} for row in rows)


# --- rows --------------------------------------------------------------------------------------


def test_ungrouped_report_has_one_all_null_row_per_bucket(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-08T00:00:00Z", limit=3).json()
    for bucket in body["data"]:
        (row,) = bucket["results"]
        assert set(row) == ROW_KEYS
        assert all(row[name] is None for name in ROW_KEYS - {
            "uncached_input_tokens", "cache_creation", "cache_read_input_tokens",
            "output_tokens", "server_tool_use"})
        start = parse(bucket["starting_at"])
        assert row_sums(row) == server.org.usage_totals(start, start + timedelta(days=1))[()]


def test_grouped_nulls_mean_default_workspace_and_console(server: SimulatorServer) -> None:
    body = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=FIVE).json()
    rows = body["data"][0]["results"]
    org = server.org
    listed_keys = {key["id"] for key in org.api_keys}
    listed_workspaces = {ws["id"] for ws in org.workspaces}
    assert {row["api_key_id"] for row in rows} - listed_keys == {None}
    assert {row["workspace_id"] for row in rows} - listed_workspaces == {None}
    default_key = next(k["id"] for k in org.api_keys if k["name"] == "Default Workspace Key")
    assert any(r["workspace_id"] is None and r["api_key_id"] == default_key for r in rows)
    assert any(r["workspace_id"] is None and r["api_key_id"] is None for r in rows)  # Console
    assert all(r["model"] and r["service_tier"] and r["context_window"] for r in rows)
    assert all(r["inference_geo"] is None and r["account_id"] is None for r in rows)
    assert set(rows[0]) == ROW_KEYS
    # Dated and dateless model ids both occur.
    models = {r["model"] for r in rows}
    assert {"claude-sonnet-4-5-20250929", "claude-opus-4-6", "claude-sonnet-5"} <= models


def test_rows_agree_with_usage_totals(server: SimulatorServer) -> None:
    group_by = ["workspace_id", "model", "inference_geo"]
    body = admin_get(server, USAGE, starting_at="2026-03-11T10:00:00Z", bucket_width="1h",
                     limit=4, group_by=group_by).json()
    for bucket in body["data"]:
        start = parse(bucket["starting_at"])
        expected = server.org.usage_totals(start, start + timedelta(hours=1), group_by)
        got = {tuple(row[d] for d in group_by): row_sums(row) for row in bucket["results"]}
        assert got == expected


def test_filters_select_rows(server: SimulatorServer) -> None:
    org = server.org
    key = next(k["id"] for k in org.api_keys if k["name"] == "Production Backend")
    body = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=["api_key_id", "service_tier"], api_key_ids=[key],
                     service_tiers=["priority"]).json()
    rows = body["data"][0]["results"]
    assert [(r["api_key_id"], r["service_tier"]) for r in rows] == [(key, "priority")]
    start = datetime(2026, 3, 10, tzinfo=UTC)
    expected = org.usage_totals(start, start + timedelta(days=1), ["api_key_id", "service_tier"])
    assert row_sums(rows[0]) == expected[(key, "priority")]


@pytest.mark.parametrize("style", ["bracketed", "plain", "encoded"])
def test_arrays_plain_bracketed_or_percent_encoded(server: SimulatorServer, style: str) -> None:
    name = {"bracketed": "group_by[]", "plain": "group_by", "encoded": "group_by%5B%5D"}[style]
    query = f"starting_at=2026-03-10T00:00:00Z&limit=1&{name}=model&{name}=service_tier"
    url = f"{server.url}{USAGE}?{query}"
    rows = requests.get(url, headers=ADMIN_HEADERS, timeout=10).json()["data"][0]["results"]
    assert len(rows) > 5
    assert all(r["model"] and r["service_tier"] and r["workspace_id"] is None for r in rows)


def test_minutes_add_up_to_hours_and_hours_to_days(server: SimulatorServer) -> None:
    by_model = ["model"]
    minutes = admin_get(server, USAGE, starting_at="2026-03-10T09:00:00Z", bucket_width="1m",
                        ending_at="2026-03-10T10:00:00Z", group_by=by_model).json()["data"]
    hours = fetch_all(server, USAGE, starting_at="2026-03-10T00:00:00Z", bucket_width="1h",
                      ending_at="2026-03-11T00:00:00Z", group_by=by_model)
    (day,) = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z",
                       ending_at="2026-03-11T00:00:00Z", group_by=by_model).json()["data"]

    def summed(buckets: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for bucket in buckets:
            for row in bucket["results"]:
                totals[row["model"]] = add(totals.get(row["model"], {}), row_sums(row))
        return totals

    assert len(minutes) == 60 and len(hours) == 24
    assert summed(minutes) == summed([hours[9]])
    assert summed(hours) == summed([day])
    assert sum(t["output_tokens"] for t in summed([day]).values()) > 100_000


# --- cost --------------------------------------------------------------------------------------


def test_cost_rows_are_decimal_cents_matching_cost_totals(server: SimulatorServer) -> None:
    body = admin_get(server, COST, starting_at="2026-03-09T00:00:00Z",
                     ending_at="2026-03-11T00:00:00Z",
                     group_by=["workspace_id", "description"]).json()
    assert len(body["data"]) == 2 and body["has_more"] is False
    amounts: list[str] = []
    for bucket in body["data"]:
        start = parse(bucket["starting_at"])
        expected = server.org.cost_totals(start, start + timedelta(days=1))
        got = {}
        for row in bucket["results"]:
            assert set(row) == COST_ROW_KEYS and row["currency"] == "USD"
            assert isinstance(row["amount"], str)
            amounts.append(row["amount"])
            key = (row["workspace_id"], row["cost_type"], row["model"], row["token_type"],
                   row["service_tier"], row["context_window"], row["inference_geo"])
            # Fast-mode cost comes in rows of its own description, with the same fields.
            assert row["description"] in (cost_description(key), cost_description(key, "fast"))
            got[key] = got.get(key, Decimal(0)) + Decimal(row["amount"])
        assert got == expected
    # Precision varies, as the real API's does.
    decimals = {len(a.split(".")[1]) if "." in a else 0 for a in amounts}
    assert len(decimals) >= 3
    assert all(not a.startswith("-") and "E" not in a for a in amounts)


def test_cost_rows_have_the_priced_tiers_and_null_what_does_not_apply(
        server: SimulatorServer) -> None:
    rows = admin_get(server, COST, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=["workspace_id", "description"]).json()["data"][0]["results"]
    assert {r["service_tier"] for r in rows} == {
        "standard", "batch", "priority", "priority_on_demand", None}
    search = [r for r in rows if r["cost_type"] == "web_search"]
    assert search and all(
        r["description"] == "Web Search Usage" and r["model"] is None and r["token_type"] is None
        and r["service_tier"] is None and r["context_window"] is None and r["inference_geo"] is None
        for r in search)
    assert {r["token_type"] for r in rows} == {
        None, "uncached_input_tokens", "output_tokens", "cache_read_input_tokens",
        "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens"}
    assert None in {r["workspace_id"] for r in rows}


def test_cost_agrees_with_usage_times_price(server: SimulatorServer) -> None:
    org = server.org
    production = next(ws["id"] for ws in org.workspaces if ws["name"] == "Production")
    usage = admin_get(server, USAGE, starting_at="2026-03-10T00:00:00Z", limit=1,
                      workspace_ids=[production], models=["claude-opus-5"],
                      service_tiers=["batch"], inference_geos=["us"]).json()
    output_tokens = usage["data"][0]["results"][0]["output_tokens"]
    rows = admin_get(server, COST, starting_at="2026-03-10T00:00:00Z", limit=1,
                     group_by=["workspace_id", "description"]).json()["data"][0]["results"]
    (row,) = [r for r in rows if r["workspace_id"] == production
              and r["description"] == "Claude Opus 5 Usage - Output Tokens, Batch, US"]
    # $25/MTok output, half price in batch, +10% for the us geo; in cents.
    assert Decimal(row["amount"]) == output_tokens * Decimal(25) / 2 * Decimal("1.1") / 10_000
    assert output_tokens > 0


def test_cost_groupings_merge_rows(server: SimulatorServer) -> None:
    params = {"starting_at": "2026-03-10T00:00:00Z", "limit": 1}
    full = admin_get(server, COST, **params, group_by=["workspace_id", "description"]).json()
    by_workspace = admin_get(server, COST, **params, group_by=["workspace_id"]).json()
    (total_row,) = admin_get(server, COST, **params).json()["data"][0]["results"]
    total = sum(Decimal(r["amount"]) for r in full["data"][0]["results"])
    assert Decimal(total_row["amount"]) == total
    assert {k: v for k, v in total_row.items() if k != "amount"} == {
        "currency": "USD", "workspace_id": None, "description": None, "cost_type": None,
        "context_window": None, "model": None, "service_tier": None, "token_type": None,
        "inference_geo": None}
    rows = by_workspace["data"][0]["results"]
    assert len(rows) == len({r["workspace_id"] for r in full["data"][0]["results"]})
    assert all(r["description"] is None and r["cost_type"] is None for r in rows)
    assert sum(Decimal(r["amount"]) for r in rows) == total


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bucket_width": "1h"}, "bucket_width: Input should be '1d'"),
        ({"limit": "32"}, "limit: Input should be between 1 and 31 for bucket_width 1d"),
        ({"group_by": ["model"]}, "group_by: Input should be 'workspace_id' or 'description'"),
    ],
)
def test_bad_cost_parameters(server: SimulatorServer, params: dict[str, Any], message: str) -> None:
    response = admin_get(server, COST, starting_at="2026-03-01T00:00:00Z", **params)
    assert response.status_code == 400
    assert error_of(response)["error"]["message"] == message


def test_cost_limits_and_paging(server: SimulatorServer) -> None:
    start = "2026-01-01T00:00:00Z"
    assert len(admin_get(server, COST, starting_at=start).json()["data"]) == 7
    assert len(admin_get(server, COST, starting_at=start, limit=31).json()["data"]) == 31
    buckets = fetch_all(server, COST, starting_at="2026-02-01T00:00:00Z",
                        ending_at="2026-03-11T00:00:00Z", limit=10)
    assert len(buckets) == 38
    assert buckets[-1]["ending_at"] == "2026-03-11T00:00:00Z"


def test_a_new_org_seen_through_the_real_clock_has_recent_data() -> None:
    org = SimulatedOrganization(seed=3)
    now = datetime.now(UTC)
    with SimulatorServer(org) as server:
        start = (now - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
        body = admin_get(server, USAGE, starting_at=start).json()
    assert len(body["data"]) == 2  # two whole days; today is still in progress
    assert all(bucket["results"] for bucket in body["data"])
