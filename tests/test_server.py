"""HTTP endpoints of a running exporter: metrics (plain, gzip, OpenMetrics), health, readiness, reload;
HEAD, content negotiation, and the bounds on concurrent scrapes, slow clients and request headers."""

from __future__ import annotations

import gzip
import http.client
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.admin_api import ENDPOINTS
from exporter.collector import AdminCollector, ExpositionCache
from exporter.config import Config, Organization, Secret
from exporter.poller import Poller
from exporter.server import ExporterServer, gzip_preferred
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


# --- bounded serving, negotiation, listening --------------------------------------------------

compress = gzip.compress  # render's argument `gzip` hides the module


class Exposition:
    """A stand-in for ExpositionCache that counts renders and can hold them until released."""

    def __init__(self, hold: bool = False):
        self.calls: list[tuple[bool, bool]] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def render(self, openmetrics: bool = False, gzip: bool = False) -> bytes:
        self.calls.append((openmetrics, gzip))
        self.entered.release()
        assert self.release.wait(10)
        text = b"# HELP x A sample.\n# TYPE x gauge\nx 1.0\n" + (b"# EOF\n" if openmetrics else b"")
        return compress(text) if gzip else text


@pytest.fixture
def bounded():
    """bounded(exposition, **server options) -> (host, port) of a running server."""
    servers = []

    def start(exposition=None, address=("127.0.0.1", 0), **options):
        server = ExporterServer(address, exposition or Exposition(), ExporterState(["acme"], ENDPOINTS), **options)
        server.start()
        servers.append(server)
        return "127.0.0.1", server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_head_renders_nothing_and_sends_no_body(bounded):
    exposition = Exposition()
    host, port = bounded(exposition)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    connection.request("HEAD", "/metrics", headers={"Accept-Encoding": "gzip"})
    head = connection.getresponse()
    assert (head.status, head.getheader("Content-Type"), head.getheader("Content-Encoding")) == (
        200, "text/plain; version=0.0.4; charset=utf-8", "gzip")
    assert head.read() == b""
    assert exposition.calls == []
    connection.request("GET", "/metrics")  # the same connection: no stray body came before
    get = connection.getresponse()
    assert (get.status, get.read()) == (200, b"# HELP x A sample.\n# TYPE x gauge\nx 1.0\n")
    assert exposition.calls == [(False, False)]


@pytest.mark.parametrize(("accept_encoding", "gzip"), [
    ("gzip", True), ("gzip, deflate, br", True), ("GZIP;q=0.5", True), ("*", True), ("identity;q=0.5, gzip", True),
    ("gzip;q=0", False), ("gzip;q=0.0, identity", False), ("gzip;q=0.5, identity", False), ("", False),
    ("identity", False), ("deflate, br", False), ("*;q=0, identity", False), ("gzip;q=zero", False),
])
def test_accept_encoding_is_parsed_with_its_weights(accept_encoding, gzip):
    assert gzip_preferred(accept_encoding) is gzip


def test_gzip_q0_gets_identity(bounded):
    exposition = Exposition()
    host, port = bounded(exposition)
    response = requests.get(f"http://{host}:{port}/metrics", headers={"Accept-Encoding": "gzip;q=0"}, timeout=5)
    assert "Content-Encoding" not in response.headers
    assert exposition.calls == [(False, False)]


@pytest.mark.parametrize(("accept", "openmetrics"), [
    # What Prometheus 2 sends, preferring OpenMetrics.
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
    ("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8", True),
    ("application/openmetrics-text", True),
    ("text/plain;version=0.0.4", False),
    ("*/*", False),
    ("", False),
])
def test_openmetrics_via_accept(bounded, accept, openmetrics):
    exposition = Exposition()
    host, port = bounded(exposition)
    response = requests.get(f"http://{host}:{port}/metrics", headers={"Accept": accept}, timeout=5)
    expected = ("application/openmetrics-text; version=1.0.0; charset=utf-8" if openmetrics
                else "text/plain; version=0.0.4; charset=utf-8")
    assert response.headers["Content-Type"] == expected
    assert exposition.calls == [(openmetrics, True)]  # requests asks for gzip


def test_scrapes_beyond_max_requests_get_503(bounded):
    exposition = Exposition(hold=True)
    host, port = bounded(exposition, max_requests=2)
    url = f"http://{host}:{port}"
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(requests.get, url + "/metrics", timeout=10) for _ in range(2)]
        for _ in held:
            assert exposition.entered.acquire(timeout=5)
        refused = requests.get(url + "/metrics", timeout=5)
        assert refused.status_code == 503
        assert refused.text == "Too many concurrent scrapes (--web.max-requests=2); try again later.\n"
        assert requests.get(url + "/-/healthy", timeout=5).status_code == 200  # probes are not scrapes
        exposition.release.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert requests.get(url + "/metrics", timeout=5).status_code == 200  # the slots came back


def test_max_requests_0_is_no_limit(bounded):
    exposition = Exposition(hold=True)
    host, port = bounded(exposition, max_requests=0)
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(requests.get, f"http://{host}:{port}/metrics", timeout=10) for _ in range(5)]
        for _ in held:
            assert exposition.entered.acquire(timeout=5)
        exposition.release.set()
        assert [f.result().status_code for f in held] == [200] * 5


def test_idle_and_slow_clients_are_dropped_while_scrapes_go_on(bounded):
    host, port = bounded(read_timeout=0.3)
    idle = socket.create_connection((host, port), timeout=5)
    dripping = socket.create_connection((host, port), timeout=5)
    kept_alive = http.client.HTTPConnection(host, port, timeout=5)
    kept_alive.request("GET", "/-/healthy")
    assert kept_alive.getresponse().read() == b"Healthy.\n"
    start = time.monotonic()
    session = requests.Session()
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":  # a byte every 50 ms: progress, but too slow
        if time.monotonic() - start > 0.2:
            assert session.get(f"http://{host}:{port}/metrics", timeout=5).status_code == 200
        try:
            dripping.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.05)
    assert closed(dripping)  # without an answer
    assert closed(idle)
    assert closed(kept_alive.sock)
    assert time.monotonic() - start < 2
    assert session.get(f"http://{host}:{port}/metrics", timeout=5).status_code == 200


def closed(sock: socket.socket) -> bool:
    """The server closed the connection (a reset too: the drip may have sent into a closed one)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_request_headers_are_capped(bounded):
    host, port = bounded(max_header_bytes=8192)
    url = f"http://{host}:{port}/-/healthy"
    assert requests.get(url, headers={"X-Padding": "x" * 7000}, timeout=5).status_code == 200
    response = requests.get(url, headers={"X-Padding": "x" * 9000}, timeout=5)
    assert response.status_code == 431
    many = {f"X-Padding-{i}": "x" * 100 for i in range(80)}  # each line short, together too much
    assert requests.get(url, headers=many, timeout=5).status_code == 431
    assert requests.get(url + "?" + "x" * 9000, timeout=5).status_code == 431  # the request line counts too


def test_reload_endpoint(bounded):
    results = iter([True, False])

    def reload() -> bool:
        try:
            return next(results)
        except StopIteration:
            raise RuntimeError("broken") from None

    host, port = bounded(reload=reload)
    url = f"http://{host}:{port}/-/reload"
    assert requests.post(url, timeout=5).status_code == 200
    failed = requests.post(url, timeout=5)
    assert (failed.status_code, failed.text) == (500, "Reloading the configuration failed; see the log.\n")
    assert requests.post(url, timeout=5).status_code == 500  # it raised
    wrong_method = requests.get(url, timeout=5)
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
    host, port = bounded()  # no callback: no endpoint
    assert requests.post(f"http://{host}:{port}/-/reload", timeout=5).status_code == 404
    assert requests.post(f"http://{host}:{port}/metrics", timeout=5).status_code == 405


def test_the_default_address_listens_on_ipv6_and_ipv4(bounded):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    _, port = bounded(address=("", 0))
    for host in ("[::1]", "127.0.0.1", "localhost"):
        assert requests.get(f"http://{host}:{port}/-/healthy", timeout=5).text == "Healthy.\n", host


def test_a_burst_of_connections_waits_in_the_listen_queue():
    # Connections arriving faster than the accept loop takes them wait in the kernel's queue.
    # Past the listen backlog the kernel drops the SYN and the client retries only after 1 s,
    # so a connect that has not completed in 0.9 s was dropped. The server accepts nothing yet.
    server = ExporterServer(("127.0.0.1", 0), Exposition(), ExporterState(["acme"], ENDPOINTS))
    connections: list[socket.socket] = []
    try:
        for _ in range(100):
            connections.append(socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=0.9))
        server.start()
        try:
            for conn in connections:
                conn.settimeout(10)
                conn.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert [conn.makefile("rb").readline() for conn in connections] == [b"HTTP/1.1 200 OK\r\n"] * 100
        finally:
            server.shutdown()
    finally:
        for conn in connections:
            conn.close()
        server.server_close()
