"""A real Prometheus scrapes the exporter; PromQL returns the simulator's own sums per window."""

from __future__ import annotations

from datetime import UTC

import pytest
from expected import expected_cost, expected_usage
from prometheus_client import CollectorRegistry
from prometheus_server import PrometheusServer

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector, ExpositionCache
from exporter.config import Config, Organization, Secret
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.state import ExporterState

GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window")
USAGE = {
    "anthropic_usage_uncached_input_tokens": "uncached_input_tokens",
    "anthropic_usage_cache_read_input_tokens": "cache_read_input_tokens",
    "anthropic_usage_output_tokens": "output_tokens",
    "anthropic_usage_web_search_requests": "web_search_requests",
}


@pytest.fixture(scope="module")
def scraped():
    """Poll a frozen-clock simulator once, serve it, and let a real Prometheus scrape it."""
    from datetime import datetime

    from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

    now = datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC)  # the month window is 31 days wide
    org = SimulatedOrganization(seed=11, clock=lambda: now)
    simulator = SimulatorServer(org).start()
    config = Config(organizations=(Organization("acme", Secret(ADMIN_KEY), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    assert Poller(config.organizations[0], config, state, clock=lambda: now).poll_all()
    polled = CollectorRegistry(auto_describe=False)
    polled.register(AdminCollector(state))
    server = ExporterServer(("127.0.0.1", 0), ExpositionCache(polled, CollectorRegistry(), lambda: state.generation),
                            state)
    server.start()
    prometheus = PrometheusServer([f"127.0.0.1:{server.server_address[1]}"])
    try:
        prometheus.wait_ready()
        prometheus.wait_for('anthropic_exporter_up{report="workspaces"}')
        yield prometheus, org, config, now
    finally:
        prometheus.stop()
        server.shutdown()
        simulator.stop()


def by_labels(result: list[dict], names: tuple[str, ...]) -> dict:
    # Prometheus stores a label whose value is empty as no label at all.
    return {(tuple(r["metric"].get(n, "") for n in names), r["metric"]["window"]): float(r["value"][1]) for r in result}


def test_every_window_of_usage_equals_the_simulators_sums(scraped):
    prometheus, org, config, now = scraped
    expected = expected_usage(org, config.windows, GROUP_BY, now)
    assert {w for _, w in expected} == {"1h", "24h", "7d", "30d", "today", "month"}
    for metric, field in USAGE.items():
        got = by_labels(prometheus.query(f'{metric}{{organization="acme"}}'), GROUP_BY)
        assert got == {key: float(getattr(values, field)) for key, values in expected.items()}, metric
    for ttl, field in (("5m", "cache_creation_5m"), ("1h", "cache_creation_1h")):
        got = by_labels(prometheus.query(f'anthropic_usage_cache_creation_input_tokens{{cache_ttl="{ttl}"}}'), GROUP_BY)
        assert got == {key: float(getattr(values, field)) for key, values in expected.items()}


def test_every_window_of_cost_equals_the_simulators_sums(scraped):
    prometheus, org, config, now = scraped
    labels = ("workspace_id", "cost_type", "model", "token_type", "service_tier", "context_window", "inference_geo")
    got = by_labels(prometheus.query('anthropic_cost_usd{organization="acme"}'), labels)
    expected = expected_cost(org, config.windows, now)
    assert got == {key: float(usd) for key, usd in expected.items()}
    assert len(got) > 50


def test_names_join_onto_usage(scraped):
    prometheus, org, _, _ = scraped
    joined = prometheus.query('sum by (api_key_name) (anthropic_usage_output_tokens{window="month"}'
                              ' * on(organization, api_key_id) group_left(api_key_name) anthropic_api_key_info)')
    names = {r["metric"]["api_key_name"] for r in joined}
    assert "Console" in names
    assert names - {"Console"} <= {k["name"] for k in org.api_keys}
    assert len(names) > 2
