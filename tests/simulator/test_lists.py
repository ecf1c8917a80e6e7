"""The api_keys and workspaces list endpoints: cursors, filters, limits."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.simulator import SimulatorServer

from .conftest import admin_get

KEYS = "/v1/organizations/api_keys"
WORKSPACES = "/v1/organizations/workspaces"


def test_api_keys_default_page_has_every_key(server: SimulatorServer) -> None:
    body = admin_get(server, KEYS).json()
    assert body["data"] == server.org.api_keys
    assert len(body["data"]) == 9
    assert body["has_more"] is False
    assert body["first_id"] == body["data"][0]["id"]
    assert body["last_id"] == body["data"][-1]["id"]
    assert body["data"][0]["name"] == "Agents Workload Identity"  # newest first


def test_after_id_pages_forward_and_before_id_back(server: SimulatorServer) -> None:
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        body = admin_get(server, KEYS, **params).json()
        pages.append(body)
        if not body["has_more"]:
            break
        params = {"limit": 3, "after_id": body["last_id"]}
    assert [len(page["data"]) for page in pages] == [3, 3, 3]
    assert [key for page in pages for key in page["data"]] == server.org.api_keys

    back = admin_get(server, KEYS, limit=3, before_id=pages[2]["first_id"]).json()
    assert back["data"] == pages[1]["data"] and back["has_more"] is True
    first = admin_get(server, KEYS, limit=3, before_id=pages[1]["first_id"]).json()
    assert first["data"] == pages[0]["data"] and first["has_more"] is False


def test_api_key_filters(server: SimulatorServer) -> None:
    org = server.org
    archived = admin_get(server, KEYS, status="archived").json()["data"]
    assert [key["name"] for key in archived] == ["Prototype Key"]
    inactive = admin_get(server, KEYS, status="inactive").json()["data"]
    assert [key["name"] for key in inactive] == ["Staging"]
    default = admin_get(server, KEYS, workspace_id=org.default_workspace_id).json()["data"]
    assert [(key["name"], key["workspace_id"]) for key in default] == [
        ("Default Workspace Key", None)]
    production = next(ws["id"] for ws in org.workspaces if ws["name"] == "Production")
    names = {key["name"] for key in admin_get(server, KEYS, workspace_id=production).json()["data"]}
    assert names == {"Production Backend", "Batch Pipeline", "SDK Traffic",
                     "Agents Workload Identity"}


def test_the_workload_identity_key_belongs_to_the_service_account(server: SimulatorServer) -> None:
    org = server.org
    (key,) = [k for k in org.api_keys if k["name"] == "Agents Workload Identity"]
    assert key["created_by"] is None
    assert key["principal"] == {"id": org.service_account_id, "type": "service_account"}
    # Filtering by creator skips a key without one instead of failing.
    creator = org.user_ids[0]
    mine = admin_get(server, KEYS, created_by_user_id=creator).json()["data"]
    assert mine and all(k["created_by"] == {"id": creator, "type": "user"} for k in mine)


def test_workspaces_hide_archived_unless_asked(server: SimulatorServer) -> None:
    active = admin_get(server, WORKSPACES).json()
    assert [ws["name"] for ws in active["data"]] == ["Claude Code", "Research", "Production"]
    everything = admin_get(server, WORKSPACES, include_archived="true").json()
    assert everything["data"] == server.org.workspaces
    assert [ws["name"] for ws in everything["data"]][-1] == "Prototypes"
    ids = {ws["id"] for ws in everything["data"]}
    assert server.org.default_workspace_id not in ids


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (KEYS, {"limit": "0"}, "limit: Input should be between 1 and 1000"),
        (KEYS, {"limit": "1001"}, "limit: Input should be between 1 and 1000"),
        (KEYS, {"after_id": "a", "before_id": "b"},
         "Only one of after_id or before_id may be given"),
        (KEYS, {"status": "deleted"},
         "status: Input should be 'active', 'inactive', 'archived' or 'expired'"),
        (WORKSPACES, {"include_archived": "maybe"},
         "include_archived: Input should be a valid boolean"),
    ],
)
def test_bad_list_parameters(server: SimulatorServer, path: str, params: dict[str, str],
                             message: str) -> None:
    response = admin_get(server, path, **params)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_organization_me(server: SimulatorServer) -> None:
    body = admin_get(server, "/v1/organizations/me").json()
    assert body == {"id": server.org.organization_id, "type": "organization",
                    "name": "Simulated Org"}
