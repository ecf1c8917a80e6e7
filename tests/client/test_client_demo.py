"""Demo traffic: the instrumented SDK against the simulator until stopped; never raises."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import RequestLog
from exporter.client.demo import DEMO_MODELS, drive_demo_traffic
from exporter.simulator import SimulatedOrganization, SimulatorServer


def test_demo_traffic_mixes_requests_until_stopped(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    log = RequestLog(tmp_path / "demo.sqlite3")
    stop = threading.Event()

    def errors(error_type: str) -> float:
        return sum(
            registry.get_sample_value(
                "anthropic_client_errors_total", {"model": m, "operation": "messages", "error_type": error_type}
            )
            or 0
            for m in DEMO_MODELS
        )

    with SimulatorServer(SimulatedOrganization(seed=7)) as sim:
        thread = threading.Thread(target=drive_demo_traffic, args=(sim.url, registry, log, stop, 0.01))
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (errors("rate_limit_error") and errors("overloaded_error")):
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    assert errors("rate_limit_error") and errors("overloaded_error")
    counts = {
        (s.labels["model"], s.labels["operation"], s.labels["stream"])
        for m in registry.collect()
        if m.name == "anthropic_client_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count") and s.labels["status_code"] == "200"
    }
    assert {model for model, _, _ in counts} == set(DEMO_MODELS)
    assert {(op, stream) for _, op, stream in counts} == {
        ("messages", "false"),
        ("messages", "true"),
        ("count_tokens", "false"),
    }
    assert log.flush()
    log.close()


def test_demo_without_the_sdk_warns_once_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    with caplog.at_level(logging.WARNING, logger="exporter.client.demo"):
        drive_demo_traffic("http://127.0.0.1:9", CollectorRegistry(), None, threading.Event())
    assert [r.getMessage() for r in caplog.records] == [
        "demo traffic is off: the anthropic SDK is not installed (pip install 'anthropic-usage-exporter[anthropic]')"
    ]


def test_demo_survives_an_unreachable_simulator(closed_port_url: str) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=drive_demo_traffic, args=(closed_port_url, CollectorRegistry(), None, stop, 0.01))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
