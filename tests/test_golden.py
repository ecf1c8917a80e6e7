"""Whole path, fetch to exposition: a simulated organization polled at a fixed time must give
exactly the stored exposition. Regenerate after a deliberate change with
``UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and review the diff: the second test
checks the stored figures against sums derived from the simulator's own events, so a wrong
golden file cannot be regenerated into passing."""

from __future__ import annotations

import os
from pathlib import Path

from expected import expected_cost, expected_usage
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector
from exporter.config import Config, Organization, Secret, Window
from exporter.poller import Poller
from exporter.state import ExporterState

GOLDEN = Path(__file__).parent / "golden" / "model_by_hour_and_today.prom"
WINDOWS = (Window("1h", span=3600), Window("today", calendar="day"))
GROUP_BY = ("model",)
USAGE_FIELDS = {
    "anthropic_usage_uncached_input_tokens": "uncached_input_tokens",
    "anthropic_usage_cache_read_input_tokens": "cache_read_input_tokens",
    "anthropic_usage_output_tokens": "output_tokens",
    "anthropic_usage_web_search_requests": "web_search_requests",
}
COST_LABELS = ("workspace_id", "cost_type", "model", "token_type", "service_tier", "context_window", "inference_geo")


def test_whole_path_exposition(simulator, admin_key, clock):
    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),),
                    group_by=GROUP_BY, windows=WINDOWS)
    state = ExporterState(["acme"], ENDPOINTS)
    assert Poller(config.organizations[0], config, state, clock=clock, monotonic=lambda: 0.0,
                  sleep=lambda s: None).poll_all()
    registry = CollectorRegistry()
    registry.register(AdminCollector(state, version="golden"))
    text = generate_latest(registry).decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_the_golden_figures_are_the_simulators_own_sums(sim_org, clock):
    """Read the stored file (not the code's output) and compare it with independent sums."""
    usage: dict[tuple[tuple[str, ...], str], dict[str, float]] = {}
    cost: dict[tuple[tuple[str, ...], str], float] = {}
    for family in text_string_to_metric_families(GOLDEN.read_text()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name in USAGE_FIELDS:
                usage.setdefault(((labels["model"],), labels["window"]), {})[USAGE_FIELDS[sample.name]] = sample.value
            elif sample.name == "anthropic_usage_cache_creation_input_tokens":
                field = "cache_creation_5m" if labels["cache_ttl"] == "5m" else "cache_creation_1h"
                usage.setdefault(((labels["model"],), labels["window"]), {})[field] = sample.value
            elif sample.name == "anthropic_cost_usd":
                cost[(tuple(labels[n] for n in COST_LABELS), labels["window"])] = sample.value
    expected = expected_usage(sim_org, WINDOWS, GROUP_BY, clock())
    assert len(expected) > 10
    assert usage == {key: {field: float(getattr(values, field)) for field in (
        *USAGE_FIELDS.values(), "cache_creation_5m", "cache_creation_1h")} for key, values in expected.items()}
    expected_usd = expected_cost(sim_org, WINDOWS, clock())
    assert expected_usd
    assert cost == {key: float(usd) for key, usd in expected_usd.items()}
