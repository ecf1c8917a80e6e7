"""The simulated Messages API: replies, usage, caching, SSE, faults, and the usage report."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anthropic
import pytest
import requests

from exporter.simulator import SimulatorServer
from exporter.simulator.messages import count_input_tokens

from .conftest import admin_get

API_KEY = "sk-ant-api03-test-key"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
REQUEST = {"model": "claude-sonnet-5", "max_tokens": 200,
           "messages": [{"role": "user", "content": "How many tokens did we use today?"}]}
RATELIMIT_HEADERS = {
    f"anthropic-ratelimit-{resource}-{field}"
    for resource in ("requests", "tokens", "input-tokens", "output-tokens")
    for field in ("limit", "remaining", "reset")
}


def post(server: SimulatorServer, body: Any, headers: dict[str, str] | None = None,
         path: str = "/v1/messages", **kwargs: Any) -> requests.Response:
    return requests.post(server.url + path, json=body, headers={**HEADERS, **(headers or {})},
                         timeout=10, **kwargs)


def read_sse(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every SSE frame, checking each frame's shape."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def sdk(server: SimulatorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)


def sdk_usage_report(server: SimulatorServer) -> list[dict[str, Any]]:
    """The current minute of the simulator's own usage report for the SDK key, by model."""
    body = admin_get(server, "/v1/organizations/usage_report/messages",
                     starting_at="2026-03-11T14:37:00Z", ending_at="2026-03-11T14:38:00Z",
                     bucket_width="1m", api_key_ids=[server.org.sdk_api_key_id],
                     group_by=["api_key_id", "workspace_id", "model"]).json()
    (bucket,) = body["data"]
    return bucket["results"]


def test_reply_shape_and_headers(server: SimulatorServer) -> None:
    response = post(server, REQUEST)
    assert response.status_code == 200
    body = response.json()
    assert re.match(r"^msg_01[0-9A-Za-z]{22}$", body["id"])
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-5" and body["stop_reason"] == "end_turn"
    (block,) = body["content"]
    assert block["type"] == "text" and block["text"].endswith(".")
    usage = body["usage"]
    assert usage == {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": len(block["text"].split(" ")),  # one token per word
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": "global",
    }
    assert usage["input_tokens"] == count_input_tokens(REQUEST) > 10
    assert set(response.headers) >= RATELIMIT_HEADERS
    assert response.headers["anthropic-ratelimit-requests-reset"] == "2026-03-11T14:38:00Z"
    assert response.headers["anthropic-ratelimit-tokens-remaining"].endswith("000")
    assert response.headers["anthropic-workspace-id"] == server.org.sdk_workspace_id
    assert response.headers["anthropic-organization-id"] == server.org.organization_id
    assert re.match(r"^req_01[0-9A-Za-z]{22}$", response.headers["request-id"])


def test_replies_are_deterministic(server: SimulatorServer) -> None:
    first, second = post(server, REQUEST).json(), post(server, REQUEST).json()
    assert first["id"] != second["id"]
    assert first["content"] == second["content"] and first["usage"] == second["usage"]
    other = post(server, {**REQUEST, "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert other["content"] != first["content"]


def test_dated_models_have_no_inference_geo_and_requests_can_pick_one(
        server: SimulatorServer) -> None:
    dated = post(server, {**REQUEST, "model": "claude-sonnet-4-5-20250929"}).json()
    assert dated["usage"]["inference_geo"] == "not_available"
    us = post(server, {**REQUEST, "inference_geo": "us"}).json()
    assert us["usage"]["inference_geo"] == "us"


def test_max_tokens_caps_the_output(server: SimulatorServer) -> None:
    body = post(server, {**REQUEST, "max_tokens": 5}).json()
    assert body["usage"]["output_tokens"] == 5
    assert body["stop_reason"] == "max_tokens"
    assert len(body["content"][0]["text"].split(" ")) == 5


def test_prompt_cache_is_written_once_then_read(server: SimulatorServer) -> None:
    system = [{"type": "text", "text": "You are terse. " * 300,
               "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    request = {**REQUEST, "system": system}
    first = post(server, request).json()["usage"]
    second = post(server, request).json()["usage"]
    cached = first["cache_creation_input_tokens"]
    assert cached > 1000
    assert first["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": cached}
    assert first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == cached
    assert second["cache_creation_input_tokens"] == 0
    assert first["input_tokens"] == second["input_tokens"] < 50  # only what follows the breakpoint
    total = first["input_tokens"] + cached
    assert post(server, request, path="/v1/messages/count_tokens").json() == {"input_tokens": total}

    five_minutes = [{**system[0], "cache_control": {"type": "ephemeral"}, "text": "Other. " * 400}]
    usage = post(server, {**REQUEST, "system": five_minutes}).json()["usage"]
    written = usage["cache_creation_input_tokens"]
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == written > 0


def test_web_search_tool(server: SimulatorServer) -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    usage = post(server, {**REQUEST, "tools": tools}).json()["usage"]
    assert usage["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    plain = post(server, REQUEST).json()["usage"]
    # Search results are input too.
    assert usage["input_tokens"] > plain["input_tokens"] + 1000


def test_stream_events_in_order_with_cumulative_usage(server: SimulatorServer) -> None:
    whole = post(server, REQUEST).json()
    response = post(server, {**REQUEST, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert set(response.headers) >= RATELIMIT_HEADERS
    events = read_sse(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == ["content_block_stop", "message_delta", "message_delta", "message_stop"]
    deltas = [data for name, data in events if name == "content_block_delta"]
    assert len(deltas) >= 3 and names.count("content_block_delta") == len(deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == whole["content"][0]["text"]

    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert start["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    partial, final = (data for name, data in events if name == "message_delta")
    assert partial["usage"] == {"output_tokens": whole["usage"]["output_tokens"] // 2}
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {
        "input_tokens": whole["usage"]["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": whole["usage"]["output_tokens"],
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    }


def test_stream_with_search_reports_more_input_at_the_end(server: SimulatorServer) -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search"}]
    events = read_sse(post(server, {**REQUEST, "tools": tools, "stream": True}))
    start = events[0][1]["message"]["usage"]["input_tokens"]
    final = [data for name, data in events if name == "message_delta"][-1]["usage"]
    assert final["input_tokens"] == start + 1200
    assert final["server_tool_use"]["web_search_requests"] == 1


def test_sdk_2x_sends_bearer_and_its_version(server: SimulatorServer) -> None:
    client = sdk(server)
    raw = client.messages.with_raw_response.create(**REQUEST)
    message = raw.parse()
    assert message.usage.output_tokens > 0
    assert message._request_id == raw.headers["request-id"]
    headers = server.requests[-1].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["anthropic-version"] == "2026-10-21"
    assert "x-api-key" not in headers

    with client.messages.stream(**REQUEST) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens


def test_time_to_first_token_delay(server: SimulatorServer) -> None:
    started = time.monotonic()
    response = post(server, {**REQUEST, "stream": True}, {"x-simulator-delay": "0.3"}, stream=True)
    headers_at = time.monotonic() - started
    first_delta_at = None
    for line in response.iter_lines():
        if line == b"event: content_block_delta":
            first_delta_at = time.monotonic() - started
            break
    response.close()
    assert headers_at < 0.25
    assert first_delta_at is not None and first_delta_at >= 0.3


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "exception"),
    [("429", 429, "rate_limit_error", anthropic.RateLimitError),
     ("529", 529, "overloaded_error", anthropic.OverloadedError),
     ("500", 500, "api_error", anthropic.InternalServerError)],
)
def test_fault_header_targets_one_request(server: SimulatorServer, fault: str, status: int,
                                          error_type: str, exception: type[Exception]) -> None:
    response = post(server, REQUEST, {"x-simulator-fault": fault, "x-simulator-retry-after": "1"})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert response.json()["request_id"] == response.headers["request-id"]
    assert response.headers["anthropic-workspace-id"] == server.org.sdk_workspace_id
    assert ("retry-after" in response.headers) == (fault == "429")
    assert post(server, REQUEST).status_code == 200
    with pytest.raises(exception) as raised:
        sdk(server).messages.create(**REQUEST, extra_headers={"x-simulator-fault": fault})
    assert raised.value.status_code == status  # type: ignore[attr-defined]


def test_stream_error_breaks_off_with_an_error_event(server: SimulatorServer) -> None:
    response = post(server, {**REQUEST, "stream": True}, {"x-simulator-fault": "stream_error"})
    assert response.status_code == 200
    events = read_sse(response)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error",
                             "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with sdk(server).messages.stream(**REQUEST, extra_headers={
                "x-simulator-fault": "stream_error"}) as stream:
            for _ in stream:
                pass
    # Non-streaming, the same fault is a 529.
    assert post(server, REQUEST, {"x-simulator-fault": "stream_error"}).status_code == 529
    assert sdk_usage_report(server) == []  # failed requests are not billed


def test_injected_stream_error(server: SimulatorServer) -> None:
    server.inject("/v1/messages", "stream_error")
    names = [name for name, _ in read_sse(post(server, {**REQUEST, "stream": True}))]
    assert names[-1] == "error"
    assert read_sse(post(server, {**REQUEST, "stream": True}))[-1][0] == "message_stop"


def test_truncated_stream_ends_without_message_stop(server: SimulatorServer) -> None:
    server.inject("/v1/messages", "truncated")
    names = [name for name, _ in read_sse(post(server, {**REQUEST, "stream": True}))]
    assert names[0] == "message_start" and "message_stop" not in names
    assert sdk_usage_report(server) == []


def test_served_messages_show_up_in_the_usage_report(server: SimulatorServer) -> None:
    client = sdk(server)
    system = [{"type": "text", "text": "Context. " * 500, "cache_control": {"type": "ephemeral"}}]
    counted = {"uncached_input_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_5m": 0,
               "output_tokens": 0}
    usages = [client.messages.create(**REQUEST, system=system).usage,
              client.messages.create(**REQUEST, system=system).usage,
              client.messages.create(**{**REQUEST, "model": "claude-opus-5"}).usage]
    with client.messages.stream(**REQUEST) as stream:
        usages.append(stream.get_final_message().usage)
    client.messages.count_tokens(model="claude-sonnet-5", messages=REQUEST["messages"])
    for usage in usages:
        counted["uncached_input_tokens"] += usage.input_tokens
        counted["cache_read_input_tokens"] += usage.cache_read_input_tokens or 0
        assert usage.cache_creation is not None
        counted["cache_creation_5m"] += usage.cache_creation.ephemeral_5m_input_tokens
        counted["output_tokens"] += usage.output_tokens

    rows = sdk_usage_report(server)
    assert [(r["api_key_id"], r["workspace_id"], r["model"]) for r in rows] == [
        (server.org.sdk_api_key_id, server.org.sdk_workspace_id, "claude-opus-5"),
        (server.org.sdk_api_key_id, server.org.sdk_workspace_id, "claude-sonnet-5"),
    ]
    reported = {
        "uncached_input_tokens": sum(r["uncached_input_tokens"] for r in rows),
        "cache_read_input_tokens": sum(r["cache_read_input_tokens"] for r in rows),
        "cache_creation_5m": sum(r["cache_creation"]["ephemeral_5m_input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
    }
    assert reported == counted
    assert counted["cache_read_input_tokens"] > 1000 and counted["cache_creation_5m"] > 1000


def test_rate_limit_remaining_falls_with_traffic(server: SimulatorServer) -> None:
    remaining = [int(post(server, REQUEST).headers["anthropic-ratelimit-requests-remaining"])
                 for _ in range(3)]
    assert remaining == [3999, 3998, 3997]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"model": "claude-sonnet-5", "messages": REQUEST["messages"]}, {}, 400,
         "max_tokens: Field required"),
        ({"max_tokens": 10, "messages": REQUEST["messages"]}, {}, 400, "model: Field required"),
        ({**REQUEST, "messages": []}, {}, 400, "messages: at least one message is required"),
        ({**REQUEST, "max_tokens": 0}, {}, 400,
         "max_tokens: Input should be an integer greater than or equal to 1"),
        (REQUEST, {"x-api-key": "not-a-key"}, 401, "invalid x-api-key"),
        (REQUEST, {"anthropic-version": "2024-01-01"}, 400,
         'anthropic-version: "2024-01-01" is not a valid version'),
    ],
)
def test_bad_messages_requests(server: SimulatorServer, body: dict[str, Any],
                               headers: dict[str, str], status: int, message: str) -> None:
    response = post(server, body, headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message
    assert response.json()["request_id"] == response.headers["request-id"]


def test_body_that_is_not_json(server: SimulatorServer) -> None:
    response = requests.post(server.url + "/v1/messages", data=b"{oops", headers=HEADERS, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error",
                                        "message": "Request body is not valid JSON"}


def test_count_tokens_is_not_billed(server: SimulatorServer) -> None:
    response = post(server, {"model": "claude-sonnet-5", "messages": REQUEST["messages"]},
                    path="/v1/messages/count_tokens")
    assert response.json() == {"input_tokens": count_input_tokens(REQUEST)}
    assert sdk_usage_report(server) == []


def test_slow_fault_header_waits_once(server: SimulatorServer) -> None:
    started = time.monotonic()
    response = post(server, REQUEST, {"x-simulator-fault": "slow", "x-simulator-delay": "0.2"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["usage"]["output_tokens"] > 0
    assert 0.2 <= elapsed < 0.38  # not twice


def test_malformed_stream_has_a_frame_that_is_not_json(server: SimulatorServer) -> None:
    server.inject("/v1/messages", "malformed_json")
    response = post(server, {**REQUEST, "stream": True})
    assert response.status_code == 200
    assert "\ndata: {not json\n\n" in response.text
    assert sdk_usage_report(server) == []
