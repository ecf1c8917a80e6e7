"""HTTP endpoints of a running exporter: metrics (plain, gzip, OpenMetrics), health, readiness."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector, ExpositionCache
from exporter.config import Config, Organization, Secret
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.state import REPORTS, ExporterState


@pytest.fixture
def exporter(simulator, admin_key, clock):
    config = Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),))
    state = ExporterState(["acme"], ENDPOINTS)
    polled = CollectorRegistry(auto_describe=False)
    polled.register(AdminCollector(state))
    server = ExporterServer(("127.0.0.1", 0), ExpositionCache(polled, CollectorRegistry(), lambda: state.generation),
                            state)
    server.start()
    poller = Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None)
    yield f"http://127.0.0.1:{server.server_address[1]}", poller
    server.shutdown()
    server.server_close()


def test_ready_only_after_every_report_was_polled(exporter):
    url, poller = exporter
    assert requests.get(url + "/-/healthy").status_code == 200
    assert requests.get(url + "/-/ready").status_code == 503
    for report in REPORTS:
        poller.poll(report)
    assert requests.get(url + "/-/ready").status_code == 200


def test_metrics_plain_and_gzip_are_the_same_text(exporter):
    url, poller = exporter
    poller.poll_all()
    plain = requests.get(url + "/metrics", headers={"Accept-Encoding": "identity"})
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in plain.headers
    raw = requests.get(url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True).raw.read(decode_content=False)
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content) / 5


def test_openmetrics_on_request(exporter):
    url, poller = exporter
    poller.poll_all()
    response = requests.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_landing_page_shows_poll_status(exporter, simulator):
    url, poller = exporter
    simulator.inject("/v1/organizations/workspaces", "500", times=100)
    poller.poll_all()
    page = requests.get(url + "/").text
    assert '<a href="/metrics">' in page
    assert "<td>acme</td><td>usage</td><td>ok</td>" in page
    assert "<td>acme</td><td>workspaces</td><td>failing</td>" in page


def test_landing_page_says_when_figures_are_withheld(exporter, simulator, clock):
    from datetime import timedelta
    url, poller = exporter
    poller.poll_all()
    simulator.inject("/v1/organizations/usage_report", "500", times=100)
    clock.now += timedelta(minutes=20)
    assert not poller.poll("usage")
    page = requests.get(url + "/").text
    assert "<td>acme</td><td>usage</td><td>failing (serving the last good data)</td>" in page
    poller.resum()
    page = requests.get(url + "/").text
    assert "<td>acme</td><td>usage</td><td>failing (figures withheld: the data is older than stale_after)</td>" in page
    assert "anthropic_usage_output_tokens{" not in requests.get(url + "/metrics").text


def test_unknown_path_is_404(exporter):
    url, _ = exporter
    assert requests.get(url + "/nope").status_code == 404


def test_promtool_finds_the_exposition_clean(exporter):
    url, poller = exporter
    poller.poll_all()
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    text = requests.get(url + "/metrics").content
    assert text.count(b"\n") > 500
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == b"", result.stdout + result.stderr
