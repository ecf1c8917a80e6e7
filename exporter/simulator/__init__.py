"""A local, deterministic simulator of Anthropic's Admin API reports, rate limits and Claude Code
analytics, and of the Messages API."""

from __future__ import annotations

from exporter.simulator.org import MeteredUsage, SimulatedOrganization, Spike, UsageEvent
from exporter.simulator.server import ADMIN_KEY, RecordedRequest, SimulatorServer

__all__ = [
    "ADMIN_KEY",
    "MeteredUsage",
    "RecordedRequest",
    "SimulatedOrganization",
    "SimulatorServer",
    "Spike",
    "UsageEvent",
]
