"""Injected faults, the control endpoint, request recording and stopping the server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from exporter.simulator import SimulatedOrganization, SimulatorServer

from .conftest import ADMIN_HEADERS, admin_get

USAGE = "/v1/organizations/usage_report/messages"
COST = "/v1/organizations/cost_report"
START = "2026-03-10T00:00:00Z"


def test_429_with_retry_after_then_normal(server: SimulatorServer) -> None:
    server.inject(USAGE, "429", retry_after=2)
    limited = admin_get(server, USAGE, starting_at=START)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error",
                  "message": "Number of requests has exceeded your rate limit"},
        "request_id": limited.headers["request-id"],
    }
    assert admin_get(server, USAGE, starting_at=START).status_code == 200


def test_429_without_retry_after(server: SimulatorServer) -> None:
    server.inject(USAGE, "429")
    limited = admin_get(server, USAGE, starting_at=START)
    assert limited.status_code == 429 and "retry-after" not in limited.headers


def test_fractional_retry_after(server: SimulatorServer) -> None:
    server.inject("/v1/", "429", retry_after=0.25)
    assert admin_get(server, USAGE, starting_at=START).headers["retry-after"] == "0.25"


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "message"),
    [("500", 500, "api_error", "Internal server error"),
     ("529", 529, "overloaded_error", "Overloaded"),
     ("stream_error", 529, "overloaded_error", "Overloaded")],
)
def test_server_errors(server: SimulatorServer, fault: str, status: int, error_type: str,
                       message: str) -> None:
    server.inject("/v1/organizations", fault, times=2)
    for _ in range(2):
        response = admin_get(server, COST, starting_at=START)
        assert response.status_code == status
        assert response.json()["error"] == {"type": error_type, "message": message}
        assert response.json()["request_id"] == response.headers["request-id"]
    assert admin_get(server, COST, starting_at=START).status_code == 200


def test_faults_only_hit_their_path_prefix(server: SimulatorServer) -> None:
    server.inject(COST, "500", times=5)
    assert admin_get(server, USAGE, starting_at=START).status_code == 200
    assert admin_get(server, COST, starting_at=START).status_code == 500


def test_unauthenticated_requests_do_not_use_up_a_fault(server: SimulatorServer) -> None:
    server.inject(USAGE, "529")
    assert admin_get(server, USAGE, headers={}, starting_at=START).status_code == 401
    assert admin_get(server, USAGE, starting_at=START).status_code == 529


def test_slow_answers_normally_after_the_delay(server: SimulatorServer) -> None:
    server.inject(USAGE, "slow", delay=0.3)
    started = time.monotonic()
    response = admin_get(server, USAGE, starting_at=START)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and response.json()["data"]


def test_slow_triggers_a_client_timeout(server: SimulatorServer) -> None:
    server.inject(USAGE, "slow", delay=0.5)
    with pytest.raises(requests.Timeout):
        requests.get(server.url + USAGE, params={"starting_at": START}, headers=ADMIN_HEADERS,
                     timeout=0.1)


def test_malformed_json(server: SimulatorServer) -> None:
    server.inject(USAGE, "malformed_json")
    response = admin_get(server, USAGE, starting_at=START)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_truncated_body_is_a_broken_response(server: SimulatorServer) -> None:
    server.inject(USAGE, "truncated")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        admin_get(server, USAGE, starting_at=START)
    assert admin_get(server, USAGE, starting_at=START).status_code == 200


def test_clear_faults(server: SimulatorServer) -> None:
    server.inject(USAGE, "500", times=10)
    server.clear_faults()
    assert admin_get(server, USAGE, starting_at=START).status_code == 200


def test_unknown_fault_is_refused(server: SimulatorServer) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        server.inject(USAGE, "404")
    with pytest.raises(ValueError, match="unknown fault parameters"):
        server.inject(USAGE, "429", retry=2)


def test_control_endpoint(server: SimulatorServer) -> None:
    url = server.url + "/_simulator/faults"
    created = requests.post(url, json={"path_prefix": USAGE, "fault": "429", "times": 2,
                                       "retry_after": 3}, timeout=5)
    assert created.status_code == 200
    assert created.json() == {"faults": [{"path_prefix": USAGE, "fault": "429", "remaining": 2,
                                          "retry_after": 3.0, "delay": 1.0}]}
    assert admin_get(server, USAGE, starting_at=START).headers["retry-after"] == "3"
    assert requests.get(url, timeout=5).json()["faults"][0]["remaining"] == 1
    assert requests.delete(url, timeout=5).json() == {"faults": []}
    assert admin_get(server, USAGE, starting_at=START).status_code == 200
    bad = requests.post(url, json={"fault": "teapot"}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


def test_requests_are_recorded(server: SimulatorServer) -> None:
    server.inject(USAGE, "429")
    admin_get(server, USAGE, starting_at=START, group_by=["model", "workspace_id"])
    admin_get(server, USAGE, starting_at=START, group_by=["model", "workspace_id"])
    admin_get(server, "/v1/organizations/api_keys", headers={})
    recorded = server.requests
    assert [(r.method, r.path, r.status) for r in recorded] == [
        ("GET", USAGE, 429), ("GET", USAGE, 200), ("GET", "/v1/organizations/api_keys", 401)]
    assert recorded[0].query == {"starting_at": [START], "group_by[]": ["model", "workspace_id"]}
    assert recorded[0].headers["anthropic-version"] == "2023-06-01"
    recorded.clear()  # a copy: the server's list is untouched
    assert len(server.requests) == 3
    server.reset_requests()
    assert server.requests == []


def test_stopped_server_refuses_even_kept_alive_connections(org: SimulatedOrganization) -> None:
    server = SimulatorServer(org).start()
    session = requests.Session()
    first = session.get(server.url + USAGE, params={"starting_at": START}, headers=ADMIN_HEADERS,
                        timeout=5)
    assert first.status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(server.url + USAGE, params={"starting_at": START}, headers=ADMIN_HEADERS,
                    timeout=5)


def test_concurrent_requests(server: SimulatorServer) -> None:
    def fetch(hour: int) -> int:
        return admin_get(server, USAGE, starting_at=f"2026-03-10T{hour:02d}:00:00Z",
                         bucket_width="1h", limit=3, group_by=["model"]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(fetch, range(20))) == [200] * 20
    assert len(server.requests) == 20
