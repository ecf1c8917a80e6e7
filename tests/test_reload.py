"""Reload and key rotation: SIGHUP and POST /-/reload read the configuration again; a bad one
keeps the old running; a rotated key file is picked up on reload and after a 401."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry
from test_admin_api import far, scripted_client

from exporter.admin_api import AdminAPIError
from exporter.config import load_config
from exporter.runtime import ReloadCollector, Runtime
from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

KEY = "sk-ant-admin01-first"


@pytest.fixture
def live_simulator_url():
    """A simulator on real time, since the exporter runs in a subprocess with the real clock."""
    server = SimulatorServer(SimulatedOrganization(seed=7)).start()
    yield server.url
    server.stop()


@dataclass
class FakeClient:
    key: str = ""

    def set_key(self, secret) -> None:
        self.key = secret.reveal()


class FakePoller:
    """Stands in for a Poller: records what it was made with; run() waits for stop."""

    made: ClassVar[list[FakePoller]] = []

    def __init__(self, org, config, state):
        self.org, self.config, self.state = org, config, state
        self.client = FakeClient(org.api_key.reveal())
        FakePoller.made.append(self)

    def run(self, stop) -> None:
        stop.wait()


def write(path, text: str) -> None:
    path.write_text(text)


def runtime_for(tmp_path):
    FakePoller.made.clear()
    config_file, key_file = tmp_path / "config.yaml", tmp_path / "key"
    write(key_file, KEY)
    write(config_file, f"organizations: [{{name: acme, api_key_file: {key_file}}}]\n")
    clock = iter(range(1000, 2000))
    runtime = Runtime(load_config(str(config_file)), lambda: load_config(str(config_file)),
                      wall=lambda: float(next(clock)), make_poller=FakePoller)
    runtime.start()
    registry = CollectorRegistry()
    registry.register(ReloadCollector(runtime))
    return runtime, registry, config_file, key_file


def test_a_rotated_key_file_reaches_the_running_pollers_without_a_restart(tmp_path):
    runtime, registry, _, key_file = runtime_for(tmp_path)
    state, poller = runtime.state, FakePoller.made[0]
    write(key_file, "sk-ant-admin01-second\n")
    assert runtime.reload()
    assert poller.client.key == "sk-ant-admin01-second"
    assert runtime.state is state and len(FakePoller.made) == 1  # same pollers, same data
    assert registry.get_sample_value("anthropic_exporter_config_last_reload_successful") == 1
    runtime.stop()


def test_a_bad_configuration_is_logged_and_the_running_one_stays(tmp_path, caplog):
    runtime, registry, config_file, _ = runtime_for(tmp_path)
    before = runtime.config
    success = registry.get_sample_value("anthropic_exporter_config_last_reload_success_timestamp_seconds")
    write(config_file, "organizations: [{name: acme, api_key_file: /nonexistent}]\nwindows: nope\n")
    generation = runtime.generation()
    assert not runtime.reload()
    assert runtime.config is before and len(FakePoller.made) == 1
    assert registry.get_sample_value("anthropic_exporter_config_last_reload_successful") == 0
    assert registry.get_sample_value("anthropic_exporter_config_last_reload_success_timestamp_seconds") == success
    assert runtime.generation() != generation  # the exposition is rendered again
    assert "reload failed, the running configuration stays" in caplog.text
    assert "windows: must be a non-empty list" in caplog.text
    runtime.stop()


def test_a_changed_configuration_starts_new_pollers_on_a_new_state(tmp_path):
    runtime, registry, config_file, key_file = runtime_for(tmp_path)
    old_state = runtime.state
    swapped = []
    runtime.on_swap.append(swapped.append)
    write(config_file, f"organizations: [{{name: acme, api_key_file: {key_file}}}, "
                       f"{{name: beta, api_key_file: {key_file}}}]\n")
    assert runtime.reload()
    assert runtime.state is not old_state and swapped == [runtime.state]
    assert runtime.collector.state is runtime.state
    assert [p.org.name for p in FakePoller.made[1:]] == ["acme", "beta"]
    assert registry.get_sample_value("anthropic_exporter_config_last_reload_success_timestamp_seconds") > 1000
    runtime.stop()


def test_after_a_401_the_key_file_is_read_again_and_the_request_retried(tmp_path, clock):
    key_file = tmp_path / "key"
    write(key_file, "sk-ant-admin01-old")
    refused = (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    listed = (200, {"data": [{"id": "wrkspc_1", "name": "A"}], "has_more": False})
    client, fake = scripted_client([refused, listed], clock)
    client.key_file = str(key_file)
    client.set_key(type("S", (), {"reveal": lambda self: "sk-ant-admin01-old"})())
    write(key_file, "sk-ant-admin01-new\n")  # the Secret was rotated while the exporter ran
    assert [w.id for w in client.workspaces(far())] == ["wrkspc_1"]
    assert [r.headers["x-api-key"] for r in fake.sent] == ["sk-ant-admin01-old", "sk-ant-admin01-new"]


def test_after_a_401_with_the_same_key_in_the_file_it_fails_once(tmp_path, clock):
    key_file = tmp_path / "key"
    write(key_file, "sk-ant-admin01-x")
    refused = (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    client, fake = scripted_client([refused], clock)
    client.key_file = str(key_file)
    with pytest.raises(AdminAPIError) as info:
        client.workspaces(far())
    assert info.value.reason == "auth"
    assert len(fake.sent) == 1


def test_sighup_reloads_the_real_process(tmp_path, live_simulator_url):
    """The real CLI: a bad configuration on SIGHUP keeps it running and says so in /metrics."""
    config_file = tmp_path / "config.yaml"
    key_file = tmp_path / "key"
    write(key_file, ADMIN_KEY)
    write(config_file, f"organizations: [{{name: acme, base_url: '{live_simulator_url}', "
                       f"api_key_file: {key_file}}}]\nclaude_code: {{enabled: false}}\n")
    process = subprocess.Popen([sys.executable, "-m", "exporter", "--config.file", str(config_file),
                                "--web.listen-address", "127.0.0.1:0", "--log.format", "json"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            record = json.loads(process.stderr.readline())
            url = record.get("url") if record["msg"] == "listening" else None
        # Keep reading the log, so a full pipe never blocks the process.
        threading.Thread(target=process.stderr.read, daemon=True).start()

        def metric(name: str) -> float | None:
            with urllib.request.urlopen(url + "metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])
            return None

        assert metric("anthropic_exporter_config_last_reload_successful") == 1
        write(config_file, "windows: nope\n")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while metric("anthropic_exporter_config_last_reload_successful") != 0:
            assert time.monotonic() < deadline, "the failed reload never showed"
            time.sleep(0.05)
        assert process.poll() is None  # still running, on the old configuration
        # a good configuration again, through the HTTP endpoint this time
        write(config_file, f"organizations: [{{name: acme, base_url: '{live_simulator_url}', "
                           f"api_key_file: {key_file}}}]\nclaude_code: {{enabled: false}}\n")
        request = urllib.request.Request(url + "-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert metric("anthropic_exporter_config_last_reload_successful") == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
