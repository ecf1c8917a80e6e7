"""Fixtures shared by the exporter tests: a frozen clock and a simulated organization."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

NOW = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)


class Clock:
    """A settable UTC clock, injected into both the simulator and the exporter."""

    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim_org(clock) -> SimulatedOrganization:
    return SimulatedOrganization(seed=7, clock=clock)


@pytest.fixture
def simulator(sim_org):
    server = SimulatorServer(sim_org).start()
    yield server
    server.stop()


@pytest.fixture
def admin_key() -> str:
    return ADMIN_KEY
