"""The command line: --config.check, --once, exit codes, and the key kept out of every output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from exporter.cli import main, parse_listen_address
from exporter.simulator import ADMIN_KEY, SimulatedOrganization, SimulatorServer

KEY = "sk-ant-api03-TOPSECRETTOPSECRET"  # not an admin key: the simulator answers 401


@pytest.fixture
def live_simulator():
    """A simulator on real time, since the exporter runs in a subprocess with the real clock."""
    server = SimulatorServer(SimulatedOrganization(seed=7)).start()
    yield server
    server.stop()


def run(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_ADMIN_API_KEY"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          env=environ, timeout=timeout)


def test_config_check_prints_the_effective_config_without_the_key():
    result = run("--config.check", env={"ANTHROPIC_ADMIN_API_KEY": KEY})
    assert result.returncode == 0, result.stderr
    assert "name: default" in result.stdout
    assert "api_key_env: ANTHROPIC_ADMIN_API_KEY" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_bad_config_exits_2_listing_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        organizations: [{name: a, base_url: nope}]
        poll_intervals: {usage: never}
        """))
    result = run("--config.file", str(path), "--config.check", env={"ANTHROPIC_ADMIN_API_KEY": KEY})
    assert result.returncode == 2
    assert result.stderr == textwrap.dedent("""\
        error: invalid configuration (2 problems):
          organizations[0].base_url: 'nope' is not an http(s) URL with a host
          poll_intervals.usage: invalid duration 'never' (expected e.g. 30s, 5m, 1h30m)
        """)


def test_missing_key_exits_2():
    result = run("--once")
    assert result.returncode == 2
    assert "ANTHROPIC_ADMIN_API_KEY is not set" in result.stderr


def test_bad_listen_address_exits_2(capsys):
    assert main(["--web.listen-address", "localhost", "--demo"]) == 2
    assert "--web.listen-address: 'localhost' is not [HOST]:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("text,expected", [(":10711", ("", 10711)), ("127.0.0.1:80", ("127.0.0.1", 80)),
                                           ("[::1]:9", ("::1", 9))])
def test_parse_listen_address(text, expected):
    assert parse_listen_address(text) == expected


def test_once_polls_the_simulator_and_prints_the_exposition(live_simulator, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"organizations: [{{name: acme, base_url: '{live_simulator.url}'}}]\n")
    result = run("--config.file", str(path), "--once", env={"ANTHROPIC_ADMIN_API_KEY": ADMIN_KEY})
    assert result.returncode == 0, result.stderr
    assert 'anthropic_exporter_up{organization="acme",report="cost"} 1.0' in result.stdout
    assert "anthropic_cost_usd{" in result.stdout and "anthropic_usage_output_tokens{" in result.stdout


def test_once_exits_1_when_a_report_fails_and_never_shows_the_key(live_simulator, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"organizations: [{{name: acme, base_url: '{live_simulator.url}'}}]\n")
    result = run("--config.file", str(path), "--once", "--log.format", "json", env={"ANTHROPIC_ADMIN_API_KEY": KEY})
    assert result.returncode == 1
    assert 'anthropic_exporter_up{organization="acme",report="usage"} 0.0' in result.stdout
    assert '"reason": "auth"' in result.stderr
    assert KEY not in result.stdout + result.stderr


def test_demo_once_needs_no_key():
    result = run("--demo", "--once")
    assert result.returncode == 0, result.stderr
    assert 'anthropic_workspace_info{organization="demo"' in result.stdout


def test_serve_gets_ready_and_stops_cleanly_on_sigterm(live_simulator, tmp_path):
    """The real process: listen, poll until /-/ready, then SIGTERM: exit 0 with a last log line."""
    import json
    import signal
    import time
    import urllib.error
    import urllib.request

    config = tmp_path / "config.yaml"
    config.write_text(f"organizations: [{{name: acme, base_url: '{live_simulator.url}'}}]\n")
    environ = {**os.environ, "ANTHROPIC_ADMIN_API_KEY": ADMIN_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", "127.0.0.1:0",
         "--log.format", "json"], stderr=subprocess.PIPE, text=True, env=environ)
    try:
        assert process.stderr is not None
        listening = None
        while listening is None:  # the first lines say where it listens (port 0: the kernel chose)
            line = process.stderr.readline()
            assert line, f"exited early with {process.wait()}"
            record = json.loads(line)
            if record["msg"] == "listening":
                listening = record["url"]
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(listening + "-/ready", timeout=5) as response:
                    assert response.status == 200
                    break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503  # not every report polled yet
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.1)
        with urllib.request.urlopen(listening + "metrics", timeout=5) as response:
            assert b'anthropic_exporter_up{organization="acme",report="usage"} 1.0' in response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        rest = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
        assert rest and rest[-1]["msg"] == "shutting down"
        assert ADMIN_KEY not in json.dumps(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
