"""Fixtures for the simulator tests: a frozen clock, an organization and a running server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

# A Wednesday afternoon (UTC working hours), so recent buckets are busy.
NOW = datetime(2026, 3, 11, 14, 37, 25, tzinfo=UTC)
ADMIN_HEADERS = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def org(clock: FakeClock) -> SimulatedOrganization:
    return SimulatedOrganization(seed=7, clock=clock)


@pytest.fixture
def server(org: SimulatedOrganization) -> Iterator[SimulatorServer]:
    with SimulatorServer(org) as running:
        yield running


def admin_get(server: SimulatorServer, path: str, headers: dict[str, str] | None = None,
              **params: Any) -> requests.Response:
    """GET an admin route with the admin key; list values are sent as bracketed arrays."""
    query = {(f"{name}[]" if isinstance(value, list) else name): value
             for name, value in params.items()}
    return requests.get(server.url + path, params=query,
                        headers=ADMIN_HEADERS if headers is None else headers, timeout=10)
