"""Whole path, fetch to exposition: a simulated organization polled at a fixed time must give
exactly the stored exposition. Regenerate after a deliberate change with
``UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector
from exporter.config import Config, Organization, Secret, Window
from exporter.poller import Poller
from exporter.state import ExporterState

GOLDEN = Path(__file__).parent / "golden" / "model_by_hour_and_today.prom"


def test_whole_path_exposition(simulator, admin_key, clock):
    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),),
                    group_by=("model",),
                    windows=(Window("1h", "1m", buckets=60), Window("today", "1d", calendar="day")))
    state = ExporterState(["acme"], ENDPOINTS)
    assert Poller(config.organizations[0], config, state, clock=clock, monotonic=lambda: 0.0,
                  sleep=lambda s: None).poll_all()
    registry = CollectorRegistry()
    registry.register(AdminCollector(state, version="golden"))
    text = generate_latest(registry).decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
