"""`python -m exporter.simulator` as a person runs it."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests


def test_runs_standalone_and_prints_url_and_admin_key() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        admin_key = process.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and admin_key.startswith("sk-ant-admin01-")
        response = requests.get(f"{url}/v1/organizations/workspaces",
                                headers={"x-api-key": admin_key, "anthropic-version": "2023-06-01"},
                                timeout=5)
        assert [ws["name"] for ws in response.json()["data"]] == [
            "Claude Code", "Research", "Production"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_serves_the_older_rate_limits_shape_when_asked() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", "--rate-limits-shape", "beta"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        admin_key = process.stdout.readline().split()[-1]
        response = requests.get(f"{url}/v1/organizations/rate_limits",
                                headers={"x-api-key": admin_key, "anthropic-version": "2023-06-01"},
                                timeout=5)
        entries = response.json()["data"]
        assert entries and all("group" not in e and e["group_type"] for e in entries)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
