"""Estimated cost: the usage of each window priced per event at its own time, summed
independently of the exporter (event by event, not bucket by bucket), equals what it serves."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from expected import usage_labels, usage_spans
from prometheus_client import CollectorRegistry

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector
from exporter.config import DEFAULT_GROUP_BY, Config, Organization, Secret
from exporter.poller import Poller
from exporter.pricing import Unpriced, default_table
from exporter.state import ExporterState


def make(simulator, admin_key, clock, **overrides):
    from dataclasses import replace
    config = replace(Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),)), **overrides)
    state = ExporterState(["acme"], ENDPOINTS, ("usage", "cost"))
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    return config, Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None), registry


def event_price(event, speed_grouped=False):
    """One event priced on its own as a bucket sees it, at the event's time: no prompt length,
    and no fast mode unless the usage is grouped by speed."""
    common = dict(at=event.timestamp, service_tier=event.service_tier, context_window=event.context_window,
                  inference_geo=event.inference_geo, speed=event.speed if speed_grouped else None)
    return default_table().price(event.model, input=event.uncached_input_tokens,
                                 cache_read=event.cache_read_input_tokens, cache_write_5m=event.cache_creation_5m,
                                 cache_write_1h=event.cache_creation_1h, output=event.output_tokens,
                                 web_searches=event.web_search_requests, **common)


def test_estimated_cost_and_unpriced_tokens_per_window_equal_the_events_priced_one_by_one(simulator, sim_org,
                                                                                            admin_key, clock):
    _, poller, registry = make(simulator, admin_key, clock)
    assert poller.poll("usage")
    spans = usage_spans(clock())
    checked = unpriced_seen = 0
    for window, (start, end) in spans.items():
        cost: dict[tuple[str, ...], Decimal] = {}
        unpriced: dict[str, int] = {}
        for event in sim_org.events(start, end):
            key = usage_labels(DEFAULT_GROUP_BY, tuple(getattr(event, d) for d in DEFAULT_GROUP_BY))
            price = event_price(event)
            if isinstance(price, Unpriced):
                tokens = (event.uncached_input_tokens + event.cache_read_input_tokens + event.cache_creation_5m
                          + event.cache_creation_1h + event.output_tokens)
                unpriced[event.model] = unpriced.get(event.model, 0) + tokens
                cost.setdefault(key, Decimal(0))
            else:
                cost[key] = cost.get(key, Decimal(0)) + price
        for key, usd in cost.items():
            got = registry.get_sample_value("anthropic_usage_estimated_cost_usd", {
                "organization": "acme", "window": window, **dict(zip(DEFAULT_GROUP_BY, key, strict=True))})
            assert got == pytest.approx(float(usd), rel=1e-9, abs=1e-9), (window, key)
            checked += 1
        for model, tokens in unpriced.items():
            assert registry.get_sample_value("anthropic_usage_unpriced_tokens", {
                "organization": "acme", "window": window, "model": model}) == tokens
            unpriced_seen += 1
        assert sum(cost.values()) > 0
    assert checked > 50


def vars_of(event):
    return {f: getattr(event, f) for f in event.__dataclass_fields__}


def test_fast_mode_is_priced_at_fast_rates_when_usage_is_grouped_by_speed(simulator, sim_org, admin_key, clock):
    group_by = (*DEFAULT_GROUP_BY, "speed")
    _, poller, registry = make(simulator, admin_key, clock, group_by=group_by)
    assert poller.poll("usage")
    start, end = usage_spans(clock())["7d"]
    cost: dict[tuple[str, ...], Decimal] = {}
    for event in sim_org.events(start, end):
        price = event_price(event, speed_grouped=True)
        if not isinstance(price, Unpriced):
            key = usage_labels(group_by, tuple(getattr(event, d) for d in group_by))
            cost[key] = cost.get(key, Decimal(0)) + price
    assert any(key[-1] == "fast" for key in cost)
    for key, usd in cost.items():
        assert registry.get_sample_value("anthropic_usage_estimated_cost_usd", {
            "organization": "acme", "window": "7d", **dict(zip(group_by, key, strict=True))}) == pytest.approx(
            float(usd), rel=1e-9, abs=1e-9)


def test_the_estimate_keeps_the_configured_labels_summed_over_the_rest(simulator, sim_org, admin_key, clock):
    _, poller, registry = make(simulator, admin_key, clock, group_by=("workspace_id",))
    assert poller.poll("usage")
    start, end = usage_spans(clock())["24h"]
    per_workspace: dict[str, Decimal] = {}
    for event in sim_org.events(start, end):
        price = event_price(event)
        if not isinstance(price, Unpriced):
            workspace = event.workspace_id or "default"
            per_workspace[workspace] = per_workspace.get(workspace, Decimal(0)) + price
    for workspace, usd in per_workspace.items():
        assert registry.get_sample_value("anthropic_usage_estimated_cost_usd", {
            "organization": "acme", "window": "24h", "workspace_id": workspace}) == pytest.approx(float(usd), rel=1e-9)
    # and the tokens too: the fetch was grouped by more, the series by the one label
    samples = [s for m in registry.collect() if m.name == "anthropic_usage_output_tokens" for s in m.samples]
    assert {tuple(sorted(s.labels)) for s in samples} == {("organization", "window", "workspace_id")}


def test_the_ratio_compares_the_estimate_with_the_bills_token_cost_over_seven_whole_days(simulator, sim_org,
                                                                                         admin_key, clock):
    _, poller, registry = make(simulator, admin_key, clock)
    assert poller.poll("usage") and poller.poll("cost")
    today = clock().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=7)
    estimated: dict[tuple[str, str], Decimal] = {}
    for event in sim_org.events(start, today):
        price = event_price(event.__class__(**{**vars_of(event), "web_search_requests": 0}))  # tokens only
        if not isinstance(price, Unpriced):
            key = (event.workspace_id or "default", event.model)
            estimated[key] = estimated.get(key, Decimal(0)) + price
    reported: dict[tuple[str, str], Decimal] = {}
    for (workspace, cost_type, model, *_), cents in sim_org.cost_totals(start, today).items():
        if cost_type == "tokens" and model:
            key = (workspace or "default", model)
            reported[key] = reported.get(key, Decimal(0)) + cents / 100
    assert reported
    for key, usd in reported.items():
        if usd == 0:
            continue
        got = registry.get_sample_value("anthropic_cost_estimate_ratio", {
            "organization": "acme", "workspace_id": key[0], "model": key[1]})
        assert got == pytest.approx(float(estimated.get(key, Decimal(0)) / usd), rel=1e-9), key
