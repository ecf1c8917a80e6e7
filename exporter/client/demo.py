"""Demo traffic: the real ``anthropic`` SDK, instrumented, calling a local simulator in a loop."""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.client.instrument import instrument
from exporter.client.request_log import RequestLog

log = logging.getLogger(__name__)

DEMO_API_KEY = "sk-ant-api03-demo"
DEMO_MODELS = ("claude-sonnet-5", "claude-haiku-4-5", "claude-opus-5")
_PROMPTS = (
    "Summarise the usage report in one sentence.",
    "Which model was cheapest yesterday?",
    "Explain prompt caching to a new engineer.",
)
# One step per kind of request. Faults: one 429 and one 529 early, so errors and retries show
# within seconds, then one every FAULT_EVERY steps, rare enough (about 4% of a model's attempts,
# retries included) that the demo stays under the shipped 5% client error-ratio alert.
_KINDS = ("create", "stream", "create", "count_tokens", "stream")
_EARLY_FAULTS = {3: "429", 6: "529"}
FAULT_EVERY = 50
_FAULTS = ("429", "529")


def drive_demo_traffic(
    base_url: str,
    registry: CollectorRegistry | None,
    request_log: RequestLog | str | None,
    stop: threading.Event,
    interval: float = 2.0,
) -> None:
    """Send a small mix of Messages requests to ``base_url`` every ``interval`` s until ``stop``.

    Non-streaming and streaming messages, count_tokens, several models, and now and then a
    429 or 529 injected with ``x-simulator-fault`` (so errors and retries show). Never
    raises: a failed request is logged and the loop goes on.
    """
    try:
        import anthropic
    except ImportError:
        log.warning(
            "demo traffic is off: the anthropic SDK is not installed "
            "(pip install 'anthropic-usage-exporter[anthropic]')"
        )
        return
    try:
        # max_retries=1: an injected fault shows one retry without stalling the loop.
        client = instrument(
            anthropic.Anthropic(api_key=DEMO_API_KEY, base_url=base_url, max_retries=1, timeout=30.0),
            registry=registry,
            request_log=request_log,
        )
    except Exception:
        log.warning("demo traffic is off: could not build the instrumented client", exc_info=True)
        return
    try:
        for step in itertools.count():
            if stop.is_set():
                break
            try:
                _one_request(client, step)
            except anthropic.APIError as exc:
                log.info("demo request %d failed as it may: %s", step, type(exc).__name__)
            except Exception:
                log.warning("demo request %d failed", step, exc_info=True)
            stop.wait(interval)
    finally:
        client.close()


def _one_request(client: Any, step: int) -> None:
    model = DEMO_MODELS[step % len(DEMO_MODELS)]
    kind = _KINDS[step % len(_KINDS)]
    headers = {}
    if step in _EARLY_FAULTS:
        headers["x-simulator-fault"] = _EARLY_FAULTS[step]
    elif step % FAULT_EVERY == FAULT_EVERY - 1:
        headers["x-simulator-fault"] = _FAULTS[(step // FAULT_EVERY) % len(_FAULTS)]
    messages = [{"role": "user", "content": _PROMPTS[step % len(_PROMPTS)]}]
    if kind == "count_tokens":
        client.messages.count_tokens(model=model, messages=messages, extra_headers=headers)
    elif kind == "stream":
        with client.messages.stream(model=model, max_tokens=64, messages=messages, extra_headers=headers) as stream:
            for _ in stream.text_stream:
                pass
    else:
        client.messages.create(model=model, max_tokens=64, messages=messages, extra_headers=headers)
