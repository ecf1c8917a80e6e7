"""The simulated Messages API: deterministic replies, usage, prompt caching, rate limits, SSE."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exporter.simulator.org import UsageEvent, is_dated_model
from exporter.timeutil import format_rfc3339

# Tokens of the prompt template the API adds to every request; keeps input_tokens >= 1
# even when the whole prompt was read from the cache.
_TEMPLATE_TOKENS = 3
# Input tokens the results of one web search add to the prompt. They show up only in the final
# usage, so a stream's last message_delta has more input_tokens than its message_start.
_SEARCH_RESULT_TOKENS = 1200
_LONG_CONTEXT_THRESHOLD = 200_000
_WORDS = (
    "the", "simulated", "model", "reads", "your", "prompt", "and", "answers", "with", "a",
    "short", "deterministic", "reply", "about", "tokens", "usage", "cost", "cache", "latency",
    "streams", "buckets", "workspaces", "exporter", "metrics",
)
_WORDS_PER_DELTA = 4


@dataclass(frozen=True)
class Reply:
    """Everything the server needs to answer one valid Messages request."""

    message: dict[str, Any]  # the complete non-streaming response body
    start_input_tokens: int  # message_start's input_tokens: before search results were added
    event: UsageEvent  # what the usage report counts once the reply was served


def validate(request: Any, *, count_tokens: bool = False) -> str | None:
    """The invalid_request_error message for a malformed request body, or None if it is fine."""
    if not isinstance(request, dict):
        return "Request body must be a JSON object"
    required = ("model", "messages") if count_tokens else ("model", "messages", "max_tokens")
    for name in required:
        if name not in request:
            return f"{name}: Field required"
    if not isinstance(request["model"], str) or not request["model"]:
        return "model: Input should be a valid string"
    if not isinstance(request["messages"], list) or not request["messages"]:
        return "messages: at least one message is required"
    if not count_tokens:
        max_tokens = request["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Input should be an integer greater than or equal to 1"
    return None


def count_input_tokens(request: dict[str, Any]) -> int:
    """The total input tokens count_tokens reports: every prompt block, cached or not."""
    return _TEMPLATE_TOKENS + sum(_block_tokens(block) for block in _prompt_blocks(request))


class PromptCache:
    """Remembers cached prompt prefixes: the first request writes the cache, repeats read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, datetime] = {}

    def use(self, key: str, ttl: timedelta, now: datetime) -> bool:
        """Whether `key` was cached at `now`; either way it stays cached for `ttl` from now."""
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is None and len(self._expiry) >= 10_000:  # forget expired prefixes now and then
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            self._expiry[key] = now + ttl  # a cache hit refreshes the TTL, as the API's does
            return expiry is not None and now < expiry


class RateLimits:
    """Per-minute budgets behind the 12 anthropic-ratelimit-* headers.

    Fixed one-minute windows keep it deterministic: `remaining` falls with the traffic of the
    current UTC minute and `reset` is the next minute boundary.
    """

    REQUESTS = 4_000
    INPUT_TOKENS = 2_000_000
    OUTPUT_TOKENS = 400_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute: datetime | None = None
        self._requests = 0
        self._input = 0
        self._output = 0

    def consume(self, now: datetime, input_tokens: int, output_tokens: int) -> dict[str, str]:
        """Counts one request and returns its rate-limit headers."""
        minute = now.replace(second=0, microsecond=0)
        with self._lock:
            if minute != self._minute:
                self._minute, self._requests, self._input, self._output = minute, 0, 0, 0
            self._requests += 1
            self._input += input_tokens
            self._output += output_tokens
            used = (self._requests, self._input, self._output)
        reset = format_rfc3339(minute + timedelta(minutes=1))
        input_left = max(0, self.INPUT_TOKENS - used[1])
        output_left = max(0, self.OUTPUT_TOKENS - used[2])
        values = {
            "requests": (self.REQUESTS, max(0, self.REQUESTS - used[0])),
            # Without a workspace limit, tokens-* is input and output together.
            "tokens": (
                self.INPUT_TOKENS + self.OUTPUT_TOKENS, _thousands(input_left + output_left)
            ),
            "input-tokens": (self.INPUT_TOKENS, _thousands(input_left)),
            "output-tokens": (self.OUTPUT_TOKENS, _thousands(output_left)),
        }
        headers: dict[str, str] = {}
        for resource, (limit, remaining) in values.items():
            headers[f"anthropic-ratelimit-{resource}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{resource}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{resource}-reset"] = reset
        return headers


def make_reply(
    request: dict[str, Any],
    *,
    message_id: str,
    cache: PromptCache,
    now: datetime,
    api_key_id: str,
    workspace_id: str,
    default_geo: str,
) -> Reply:
    """The deterministic reply to a validated request, and the usage it is billed as."""
    model: str = request["model"]
    blocks = _prompt_blocks(request)
    breakpoint_index, ttl = _cache_breakpoint(request, blocks)
    cached_blocks = blocks[: breakpoint_index + 1]
    cached = sum(_block_tokens(block) for block in cached_blocks)
    uncached = _TEMPLATE_TOKENS + sum(_block_tokens(block) for block in blocks[len(cached_blocks):])

    read = write = 0
    if breakpoint_index >= 0:
        prefix = json.dumps([model, cached_blocks], sort_keys=True)
        key = hashlib.sha256(prefix.encode()).hexdigest()
        if cache.use(key, timedelta(hours=1) if ttl == "1h" else timedelta(minutes=5), now):
            read = cached
        else:
            write = cached

    searches = 1 if _has_web_search_tool(request) else 0
    start_input = uncached
    uncached += searches * _SEARCH_RESULT_TOKENS

    words = _reply_words(request)
    output_tokens = min(request["max_tokens"], len(words))  # one token per word
    truncated = output_tokens < len(words)
    text = " ".join(words[:output_tokens])
    if not truncated:
        text = text[0].upper() + text[1:] + "."

    geo = request.get("inference_geo")
    if geo not in ("global", "us"):
        geo = "not_available" if is_dated_model(model) else default_geo
    window = "200k-1M" if uncached + read + write > _LONG_CONTEXT_THRESHOLD else "0-200k"
    write_5m = write if ttl == "5m" else 0
    write_1h = write if ttl == "1h" else 0

    usage = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": geo,
    }
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    event = UsageEvent(
        timestamp=now,
        workspace_id=workspace_id,
        api_key_id=api_key_id,
        model=model,
        service_tier="standard",
        context_window=window,
        inference_geo=geo,
        uncached_input_tokens=uncached,
        cache_read_input_tokens=read,
        cache_creation_5m=write_5m,
        cache_creation_1h=write_1h,
        output_tokens=output_tokens,
        web_search_requests=searches,
    )
    return Reply(message=message, start_input_tokens=start_input, event=event)


def stream_events(reply: Reply, *, fail: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events of a streamed reply, in order, as (event name, data).

    Two message_delta events carry cumulative usage (the first only a partial output count),
    so a client that sums them instead of keeping the last one counts wrong. With `fail`, the
    stream breaks off after the first text delta with an overloaded_error event.
    """
    message = reply.message
    usage = message["usage"]
    start_message = copy.deepcopy(message)
    start_message["content"] = []
    start_message["stop_reason"] = None
    start_message["usage"] = {
        "input_tokens": reply.start_input_tokens,
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "cache_creation": dict(usage["cache_creation"]),
        "output_tokens": 1,  # a placeholder, as the API sends
        "service_tier": usage["service_tier"],
        "inference_geo": usage["inference_geo"],
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start_message}),
        ("content_block_start", {
            "type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""},
        }),
        ("ping", {"type": "ping"}),
    ]
    for chunk in _chunks(message["content"][0]["text"]):
        events.append(("content_block_delta", {
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": chunk},
        }))
        if fail:
            events.append(("error", {
                "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
            }))
            return events
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    output_tokens = usage["output_tokens"]
    if output_tokens > 1:
        events.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": None, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens // 2},
        }))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": output_tokens,
            "server_tool_use": dict(usage["server_tool_use"]),
        },
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE frame."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _prompt_blocks(request: dict[str, Any]) -> list[Any]:
    """The prompt in cache order (tools, system, messages), one item per content block."""
    blocks: list[Any] = list(request.get("tools") or [])
    system = request.get("system")
    if isinstance(system, list):
        blocks.extend(system)
    elif system:
        blocks.append(system)
    for message in request["messages"]:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, list):
            blocks.extend(content)
        else:
            blocks.append(content)
    return blocks


def _block_tokens(block: Any) -> int:
    # About four characters per token, like real tokenizers on English text.
    return max(1, len(json.dumps(block, sort_keys=True)) // 4)


def _cache_breakpoints(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "cache_control" and isinstance(item, dict):
                yield item
            else:
                yield from _cache_breakpoints(item)
    elif isinstance(value, list):
        for item in value:
            yield from _cache_breakpoints(item)


def _cache_breakpoint(request: dict[str, Any], blocks: list[Any]) -> tuple[int, str]:
    """Index of the last cached block (-1: no caching) and the cache TTL ("5m" or "1h")."""
    controls = list(_cache_breakpoints(request))
    if not controls:
        return -1, "5m"
    ttl = "1h" if any(control.get("ttl") == "1h" for control in controls) else "5m"
    last = -1
    for index, block in enumerate(blocks):
        if any(True for _ in _cache_breakpoints(block)):
            last = index
    if last < 0:
        # A top-level cache_control (automatic caching) caches the whole prompt.
        last = len(blocks) - 1
    return last, ttl


def _has_web_search_tool(request: dict[str, Any]) -> bool:
    return any(
        isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search")
        for tool in request.get("tools") or []
    )


def _reply_words(request: dict[str, Any]) -> list[str]:
    seed = hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).digest()
    rng = random.Random(seed)
    return [rng.choice(_WORDS) for _ in range(12 + rng.randrange(30))]


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    chunks = []
    for start in range(0, len(words), _WORDS_PER_DELTA):
        chunk = " ".join(words[start:start + _WORDS_PER_DELTA])
        chunks.append(chunk if start == 0 else " " + chunk)
    return chunks


def _thousands(tokens: int) -> int:
    # The API rounds token `remaining` values down to thousands.
    return tokens // 1000 * 1000
