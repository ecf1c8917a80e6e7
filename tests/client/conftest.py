"""Fixtures for the client middleware tests: registries, the fake API, the HTTP library."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.simulator import SimulatedOrganization, SimulatorServer

from .fakes import SDK_HTTP, FakeAPI


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    api = FakeAPI().start()
    yield api
    api.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def http_lib() -> Any:
    """The HTTP library of the installed SDK line."""
    return importlib.import_module(SDK_HTTP)


@pytest.fixture
def value(registry: CollectorRegistry) -> Callable[..., float | None]:
    """``value(name, **labels)``: a sample of the test's registry, ``None`` when the series is
    missing (so ``== 0`` asserts a series that exists, ``is None`` one that must not)."""

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    return get


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """The simulator on real time, for the SDK's requests."""
    server = SimulatorServer(SimulatedOrganization(seed=7), host="127.0.0.1", port=0).start()
    yield server
    server.stop()
