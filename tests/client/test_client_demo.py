"""Demo traffic: the instrumented SDK against the simulator until stopped; never raises."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
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
    attempts = sum(
        s.value
        for m in registry.collect()
        if m.name == "anthropic_client_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    )
    assert attempts > 0
    assert log.flush()
    log.close()
    rows = rows_of(log)
    assert len(rows) == attempts  # one row per attempt recorded
    assert {model for model, _, _ in rows} == set(DEMO_MODELS)
    assert {"200", "429", "529"} <= {status for _, status, _ in rows}


def rows_of(log: RequestLog) -> list[tuple[str, str, str | None]]:
    with contextlib.closing(sqlite3.connect(log.path)) as conn:
        return conn.execute("SELECT model, status_code, error_type FROM requests").fetchall()


def test_demo_without_the_sdk_warns_once_and_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    with caplog.at_level(logging.WARNING, logger="exporter.client.demo"):
        drive_demo_traffic("http://127.0.0.1:9", CollectorRegistry(), None, threading.Event())
    assert [r.getMessage() for r in caplog.records] == [
        "demo traffic is off: the anthropic SDK is not installed (pip install 'anthropic-usage-exporter[anthropic]')"
    ]


def test_demo_survives_an_unreachable_simulator(closed_port_url: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    log = RequestLog(tmp_path / "demo.sqlite3")
    stop = threading.Event()

    def refused() -> float:
        return sum(
            registry.get_sample_value(
                "anthropic_client_errors_total", {"model": m, "operation": op, "error_type": "connection_error"}
            )
            or 0
            for m in DEMO_MODELS
            for op in ("messages", "count_tokens")
        )

    thread = threading.Thread(target=drive_demo_traffic, args=(closed_port_url, registry, log, stop, 0.01))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and refused() < 2:  # it goes on after a failure
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert refused() >= 2
    assert log.flush()
    log.close()
    rows = rows_of(log)
    assert len(rows) == refused()
    assert {(status, error) for _, status, error in rows} == {("none", "connection_error")}
