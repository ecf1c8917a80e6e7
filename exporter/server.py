"""HTTP endpoints: landing page, metrics, /-/healthy and /-/ready."""

from __future__ import annotations

import html
import logging
import socket
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE

from exporter import __version__
from exporter.collector import ExpositionCache
from exporter.state import ExporterState

log = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ExporterServer(ThreadingHTTPServer):
    # Daemon threads: a slow scraper must not hold up shutdown.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], exposition: ExpositionCache, state: ExporterState,
                 telemetry_path: str = "/metrics", extra_links: tuple[tuple[str, str], ...] = ()):
        self.exposition = exposition
        self.state = state
        self.telemetry_path = telemetry_path
        self.extra_links = extra_links
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        # A scraper that hangs up mid-response is normal; log anything else, once, as an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.exception("error while answering a request", extra={"client": client_address[0]})

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    server_version = f"anthropic-usage-exporter/{__version__}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/-/healthy":
            self._send(200, "text/plain; charset=utf-8", b"Healthy.\n")
        elif path == "/-/ready":
            if self.server.state.ready():
                self._send(200, "text/plain; charset=utf-8", b"Ready.\n")
            else:
                self._send(503, "text/plain; charset=utf-8", b"Not ready: not every report has been polled yet.\n")
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", landing_page(self.server).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not found.\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _metrics(self) -> None:
        accept = self.headers.get("Accept", "")
        openmetrics = "application/openmetrics-text" in accept
        gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        try:
            body = self.server.exposition.render(openmetrics=openmetrics, gzip=gzip)
        except Exception:
            log.exception("rendering the exposition failed")
            self._send(500, "text/plain; charset=utf-8", b"Rendering the metrics failed; see the log.\n")
            return
        headers = {"Content-Encoding": "gzip"} if gzip else {}
        self._send(200, OPENMETRICS_TYPE if openmetrics else TEXT_TYPE, body, headers)

    def _send(self, code: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log per scrape


def landing_page(server: ExporterServer, now: Callable[[], float] = lambda: datetime.now(UTC).timestamp()) -> str:
    rows = []
    for (org, report), status in sorted(server.state.statuses().items()):
        if not status.polled:
            state = "not polled yet"
        elif status.up:
            state = "ok"
        elif getattr(status.snapshot, "withheld", False):
            state = "failing (figures withheld: the data is older than stale_after)"
        else:
            state = "failing (serving the last good data)" if status.snapshot is not None else "failing"
        last = (f"{now() - status.last_success:.0f}s ago" if status.last_success is not None else "never")
        rows.append(f"<tr><td>{html.escape(org)}</td><td>{report}</td><td>{state}</td><td>{last}</td></tr>")
    links = "".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>'
                    for href, text in ((server.telemetry_path, "Metrics"), ("/-/healthy", "Health"),
                                       ("/-/ready", "Readiness"), *server.extra_links))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Anthropic usage exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}</style></head>
<body><h1>Anthropic usage exporter</h1><p>Version {__version__}</p>
<ul>{links}</ul>
<h2>Polls</h2>
<table><tr><th>Organization</th><th>Report</th><th>Status</th><th>Last success</th></tr>
{''.join(rows)}</table>
</body></html>
"""
