"""Fixtures of the deploy tests: the command-line tools they need, found or failed for."""

from __future__ import annotations

import pytest

from .support import tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool", "apt-get install prometheus (Debian's package ships promtool)")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return tool("prometheus", "apt-get install prometheus")
