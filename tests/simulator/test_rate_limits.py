"""The Rate Limits API: the organization's groups and limits, and a workspace's, over real HTTP."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer
from exporter.simulator.org import RATE_LIMIT_GROUP_TYPES, UNKNOWN_LIMIT_TYPE

from .conftest import NOW, FakeClock, admin_get

RATE_LIMITS = "/v1/organizations/rate_limits"
ENTRY_ID = re.compile(r"^rl_01[0-9A-Za-z]{22}$")
GROUP_ID = re.compile(r"^rlg_01[0-9A-Za-z]{22}$")


def workspace_path(workspace_id: str) -> str:
    return f"/v1/organizations/workspaces/{workspace_id}/rate_limits"


def workspace_named(org: SimulatedOrganization, name: str) -> str:
    return next(ws["id"] for ws in org.workspaces if ws["name"] == name)


def all_pages(server: SimulatorServer, path: str, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    page: str | None = None
    for _ in range(100):
        response = admin_get(server, path, **params, **({"page": page} if page else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        entries.extend(body["data"])
        page = body["next_page"]
        if page is None:
            return entries
    raise AssertionError("next_page never ends")


def error_type(response: Any) -> str:
    body = response.json()
    assert body["type"] == "error" and body["request_id"] == response.headers["request-id"]
    return str(body["error"]["type"])


# --- the organization's limits -----------------------------------------------------------------


def test_one_page_without_limit_in_the_current_shape(server: SimulatorServer) -> None:
    body = admin_get(server, RATE_LIMITS).json()
    assert body["next_page"] is None
    entries = body["data"]
    assert len(entries) > 10
    for entry in entries:
        assert set(entry) == {"type", "id", "group_type", "group", "models", "limits"}
        assert entry["type"] == "rate_limit" and ENTRY_ID.match(entry["id"])
        group = entry["group"]
        assert entry["group_type"] == group["type"] and GROUP_ID.match(group["id"])
        if group["type"] == "model_group":
            assert set(group) == {"type", "id", "display_name"} and group["display_name"]
            assert entry["models"] and all(isinstance(m, str) for m in entry["models"])
        else:
            assert set(group) == {"type", "id"} and entry["models"] is None
        assert entry["limits"]
        for limit in entry["limits"]:
            assert set(limit) == {"type", "value"}
            assert isinstance(limit["value"], int) and limit["value"] > 0
    assert {entry["group"]["type"] for entry in entries} == set(RATE_LIMIT_GROUP_TYPES)
    assert len({entry["group"]["id"] for entry in entries}) == len(entries)
    assert len({entry["id"] for entry in entries}) == len(entries)


def test_limit_types_are_an_open_set(org: SimulatedOrganization) -> None:
    types = {limit["type"] for entry in org.rate_limits() for limit in entry["limits"]}
    assert {
        "requests_per_minute", "input_tokens_per_minute", "input_tokens_per_minute_cache_aware",
        "output_tokens_per_minute", "tokens_per_minute", "enqueued_batch_requests",
        UNKNOWN_LIMIT_TYPE,
    } <= types
    batch = next(e for e in org.rate_limits() if e["group"]["type"] == "batch")
    assert "enqueued_batch_requests" in {limit["type"] for limit in batch["limits"]}


def test_every_model_used_is_in_exactly_one_model_group(org: SimulatedOrganization) -> None:
    groups = [entry for entry in org.rate_limits() if entry["group"]["type"] == "model_group"]
    listed = [model for entry in groups for model in entry["models"]]
    assert len(listed) == len(set(listed))  # no model string in two groups
    used = {event.model for event in org.events(NOW - timedelta(days=7), NOW)}
    assert used <= set(listed)
    # Dated ids and their aliases count against the same group.
    for dated, alias in [("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
                         ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
                         ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest")]:
        assert [e["id"] for e in groups if dated in e["models"]] == [
            e["id"] for e in groups if alias in e["models"]]


def test_group_ids_are_the_same_in_every_organization(clock: FakeClock) -> None:
    first = SimulatedOrganization(seed=7, clock=clock).rate_limits()
    other = SimulatedOrganization(seed=8, clock=clock).rate_limits()
    assert [e["group"] for e in first] == [e["group"] for e in other]
    assert {e["id"] for e in first}.isdisjoint(e["id"] for e in other)
    assert first == SimulatedOrganization(seed=7, clock=clock).rate_limits()


@pytest.mark.parametrize("group_type", RATE_LIMIT_GROUP_TYPES)
def test_group_type_filter(server: SimulatorServer, group_type: str) -> None:
    entries = admin_get(server, RATE_LIMITS, group_type=group_type).json()["data"]
    assert entries and {entry["group"]["type"] for entry in entries} == {group_type}


def test_unknown_group_type_is_400(server: SimulatorServer) -> None:
    response = admin_get(server, RATE_LIMITS, group_type="models")
    assert response.status_code == 400 and error_type(response) == "invalid_request_error"


def test_paging_with_limit(server: SimulatorServer) -> None:
    whole = admin_get(server, RATE_LIMITS).json()["data"]
    first = admin_get(server, RATE_LIMITS, limit=4).json()
    assert len(first["data"]) == 4 and first["next_page"]
    assert all_pages(server, RATE_LIMITS, limit=4) == whole
    assert all_pages(server, RATE_LIMITS, limit=1000) == whole
    # A cursor without a limit: everything after it, in one page.
    rest = admin_get(server, RATE_LIMITS, page=first["next_page"]).json()
    assert rest["data"] == whole[4:] and rest["next_page"] is None
    filtered = all_pages(server, RATE_LIMITS, limit=2, group_type="model_group")
    assert filtered == [e for e in whole if e["group"]["type"] == "model_group"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "ten"},
                                    {"page": "page_bm90IGEgY3Vyc29y"}, {"page": "garbage"}])
def test_bad_paging_is_400(server: SimulatorServer, params: dict[str, Any]) -> None:
    response = admin_get(server, RATE_LIMITS, **params)
    assert response.status_code == 400 and error_type(response) == "invalid_request_error"


@pytest.mark.parametrize("model", ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5",
                                   "claude-sonnet-4-6"])
def test_model_returns_the_single_entry_holding_it(server: SimulatorServer, model: str) -> None:
    body = admin_get(server, RATE_LIMITS, model=model).json()
    assert len(body["data"]) == 1 and body["next_page"] is None
    entry = body["data"][0]
    assert model in entry["models"] and entry["group"]["display_name"] == "Claude Sonnet 4.x"


@pytest.mark.parametrize("params", [{"model": "claude-nonexistent-9"}, {"model": ""},
                                    {"model": "claude-sonnet-5", "group_type": "batch"}])
def test_unknown_model_is_404(server: SimulatorServer, params: dict[str, str]) -> None:
    response = admin_get(server, RATE_LIMITS, **params)
    assert response.status_code == 404 and error_type(response) == "not_found_error"


# --- the older (beta) shape ----------------------------------------------------------------------


def test_older_shape_has_no_group_object(org: SimulatedOrganization) -> None:
    production = workspace_named(org, "Production")
    with SimulatorServer(org, rate_limits_shape="beta") as beta:
        entries = admin_get(beta, RATE_LIMITS).json()["data"]
        inherited = admin_get(beta, workspace_path(production),
                              include_inherited="true").json()["data"]
    current = org.rate_limits()
    assert [set(entry) for entry in entries] == [
        {"type", "id", "group_type", "models", "limits"}] * len(current)
    assert [e["id"] for e in entries] == [e["id"] for e in current]
    assert [e["group_type"] for e in entries] == [e["group"]["type"] for e in current]
    for entry in inherited:
        assert set(entry) == {"type", "rate_limit_id", "workspace_id", "group_type", "models",
                              "limits"}
    # Without group ids, a workspace entry's rate_limit_id is the key to the organization's.
    assert [e["rate_limit_id"] for e in inherited] == [e["id"] for e in entries]


def test_shape_can_be_switched_on_a_running_server(server: SimulatorServer) -> None:
    assert "group" in admin_get(server, RATE_LIMITS).json()["data"][0]
    server.rate_limits_shape = "beta"
    assert "group" not in admin_get(server, RATE_LIMITS).json()["data"][0]
    with pytest.raises(ValueError, match="rate_limits_shape"):
        SimulatorServer(server.org, rate_limits_shape="v2")


# --- a workspace's limits ------------------------------------------------------------------------


def test_overrides_only_without_include_inherited(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    production = workspace_named(org, "Production")
    body = admin_get(server, workspace_path(production)).json()
    assert body["next_page"] is None
    org_entries = {entry["id"]: entry for entry in org.rate_limits()}
    assert [e["group"]["display_name"] for e in body["data"]] == [
        "Claude Opus 5", "Claude Sonnet 5"]
    for entry in body["data"]:
        assert set(entry) == {"type", "rate_limit_id", "workspace_id", "group", "models",
                              "limits"}
        assert entry["type"] == "workspace_rate_limit" and entry["workspace_id"] == production
        org_entry = org_entries[entry["rate_limit_id"]]
        assert entry["group"] == org_entry["group"] and entry["models"] == org_entry["models"]
        org_values = {limit["type"]: limit["value"] for limit in org_entry["limits"]}
        for limit in entry["limits"]:
            assert set(limit) == {"type", "value", "org_limit", "source"}
            assert limit["source"] == {"type": "workspace"}
            assert limit["org_limit"] == org_values[limit["type"]] > limit["value"]
    assert admin_get(server, workspace_path(production),
                     include_inherited="false").json() == body


def test_include_inherited_lists_every_group_and_each_limiter_once(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    research = workspace_named(org, "Research")
    entries = admin_get(server, workspace_path(research), include_inherited="true").json()["data"]
    org_entries = org.rate_limits()
    assert [e["rate_limit_id"] for e in entries] == [e["id"] for e in org_entries]
    sources = set()
    for entry, org_entry in zip(entries, org_entries, strict=True):
        assert entry["group"] == org_entry["group"]
        types = [limit["type"] for limit in entry["limits"]]
        assert len(types) == len(set(types))
        org_values = {limit["type"]: limit["value"] for limit in org_entry["limits"]}
        assert set(org_values) <= set(types)
        for limit in entry["limits"]:
            sources.add(limit["source"]["type"])
            if limit["source"]["type"] == "organization":
                assert limit["value"] == limit["org_limit"] == org_values[limit["type"]]
            elif limit["type"] in org_values:
                assert limit["org_limit"] == org_values[limit["type"]] > limit["value"]
            else:  # a limiter the organization has no limit for
                assert limit["org_limit"] is None
    assert sources == {"organization", "workspace"}
    overrides = admin_get(server, workspace_path(research)).json()["data"]
    assert {limit["type"]: limit["org_limit"] for e in overrides for limit in e["limits"]
            if e["group"].get("display_name") == "Claude Opus 5"}["tokens_per_day"] is None


def test_a_workspace_without_overrides(server: SimulatorServer, org: SimulatedOrganization) -> None:
    claude_code = workspace_named(org, "Claude Code")
    assert admin_get(server, workspace_path(claude_code)).json() == {"data": [],
                                                                     "next_page": None}
    inherited = admin_get(server, workspace_path(claude_code), include_inherited="True").json()
    assert len(inherited["data"]) == len(org.rate_limits())
    assert {limit["source"]["type"] for e in inherited["data"] for limit in e["limits"]} == {
        "organization"}


def test_workspace_filters_and_paging(server: SimulatorServer, org: SimulatedOrganization) -> None:
    research = workspace_named(org, "Research")
    path = workspace_path(research)
    whole = admin_get(server, path, include_inherited="true").json()["data"]
    assert all_pages(server, path, include_inherited="true", limit=3) == whole
    searches = admin_get(server, path, group_type="web_search").json()["data"]
    assert [e["group"]["type"] for e in searches] == ["web_search"]
    assert searches[0]["models"] is None
    batches = admin_get(server, path, group_type="batch").json()["data"]
    assert batches == []  # no override there
    assert admin_get(server, path, group_type="batch", include_inherited="true").json()[
        "data"] == [e for e in whole if e["group"]["type"] == "batch"]
    # A cursor of another list is not accepted.
    org_page = admin_get(server, RATE_LIMITS, limit=1).json()["next_page"]
    assert admin_get(server, path, page=org_page).status_code == 400


@pytest.mark.parametrize("value", ["maybe", "", "2"])
def test_include_inherited_must_be_a_boolean(
        server: SimulatorServer, org: SimulatedOrganization, value: str) -> None:
    response = admin_get(server, workspace_path(workspace_named(org, "Research")),
                         include_inherited=value)
    assert response.status_code == 400 and error_type(response) == "invalid_request_error"


def test_default_and_unknown_workspaces_are_404(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    # The Default Workspace has a real id, not in the workspaces list; its limits are the
    # organization's, so the API answers 404 for it. So does an id of no workspace.
    assert org.default_workspace_id not in {ws["id"] for ws in org.workspaces}
    for workspace_id in (org.default_workspace_id, "wrkspc_01NoSuchWorkspace0000000", "default"):
        for params in ({}, {"include_inherited": "true"}):
            response = admin_get(server, workspace_path(workspace_id), **params)
            assert response.status_code == 404 and error_type(response) == "not_found_error"
    assert org.workspace_rate_limits(org.default_workspace_id, include_inherited=True) is None


def test_every_listed_workspace_answers(server: SimulatorServer, org: SimulatedOrganization) -> None:
    listed = admin_get(server, "/v1/organizations/workspaces", include_archived="true").json()
    overridden = set()
    for ws in listed["data"]:
        response = admin_get(server, workspace_path(ws["id"]))
        assert response.status_code == 200
        if response.json()["data"]:
            overridden.add(ws["name"])
    assert overridden == {"Production", "Research"}


# --- auth, faults, recording ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [RATE_LIMITS, "/v1/organizations/workspaces/x/rate_limits"])
def test_auth_and_version_checked_first(server: SimulatorServer, path: str) -> None:
    assert admin_get(server, path, headers={}).status_code == 401
    assert admin_get(server, path, headers={"x-api-key": "sk-ant-api03-nope",
                                            "anthropic-version": "2023-06-01"}).status_code == 401
    response = admin_get(server, path, headers={"x-api-key": ADMIN_KEY})
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]
    assert "anthropic-workspace-id" not in response.headers


def test_injected_faults_hit_each_route_apart(
        server: SimulatorServer, org: SimulatedOrganization) -> None:
    research = workspace_path(workspace_named(org, "Research"))
    server.inject(RATE_LIMITS, "500")
    assert admin_get(server, research).status_code == 200
    failed = admin_get(server, RATE_LIMITS)
    assert failed.status_code == 500 and error_type(failed) == "api_error"
    assert admin_get(server, RATE_LIMITS).status_code == 200
    server.inject(research, "429", retry_after=1)
    limited = admin_get(server, research, include_inherited="true")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    server.inject(RATE_LIMITS, "403", times=2)
    for _ in range(2):
        denied = admin_get(server, RATE_LIMITS)
        assert denied.status_code == 403 and error_type(denied) == "permission_error"
    assert admin_get(server, RATE_LIMITS).status_code == 200
    assert [(r.path, r.status) for r in server.requests] == [
        (research, 200), (RATE_LIMITS, 500), (RATE_LIMITS, 200), (research, 429),
        (RATE_LIMITS, 403), (RATE_LIMITS, 403), (RATE_LIMITS, 200)]
    assert server.requests[3].query == {"include_inherited": ["true"]}
