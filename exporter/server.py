"""HTTP endpoints (landing page, metrics, /-/healthy, /-/ready, /-/reload), TLS and auth, bounded serving.

The web config brings TLS and basic auth; slow clients, concurrent scrapes and request headers
are bounded.
"""

from __future__ import annotations

import contextlib
import errno
import html
import http.client
import io
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE

from exporter import __version__
from exporter.collector import ExpositionCache
from exporter.state import ExporterState
from exporter.webconfig import ActiveWebConfig, WebConfigWatcher

log = logging.getLogger(__name__)

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
DEFAULT_MAX_REQUESTS = 40  # node_exporter's --web.max-requests
# How long a client has to send a whole request's headers, counted from when the server starts
# waiting for it (so also how long a kept-alive connection may sit idle), and to take a reply.
DEFAULT_READ_TIMEOUT = 30.0
MAX_HEADER_BYTES = 8192  # request line and headers together


class ExporterServer(ThreadingHTTPServer):
    """Serves the exposition; raises WebConfigError if ``web_config_file`` does not load.

    A host of "" listens on IPv6 and IPv4 alike (one dual-stack socket), or on IPv4 alone
    where the system has no IPv6.
    """

    # Daemon threads: a slow scraper must not hold up shutdown.
    daemon_threads = True
    # socketserver's backlog of 5 overflows when scrapers connect in a burst faster than the
    # accept loop starts their threads; the kernel then drops the SYN and the client retries
    # after 1 s, then 3 s, ... (a first scrape took 7-13 s in bench/bench_load.py).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], exposition: ExpositionCache, state: ExporterState,
                 telemetry_path: str = "/metrics", extra_links: tuple[tuple[str, str], ...] = (), *,
                 web_config_file: str | None = None, max_requests: int = DEFAULT_MAX_REQUESTS,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, max_header_bytes: int = MAX_HEADER_BYTES,
                 reload: Callable[[], bool] | None = None):
        if max_requests < 0:
            raise ValueError(f"max_requests must be 0 (no limit) or more, got {max_requests}")
        self.exposition = exposition
        self.state = state
        self.telemetry_path = telemetry_path
        self.extra_links = extra_links
        self.web = WebConfigWatcher(web_config_file) if web_config_file else None
        self.scrape_slots = threading.BoundedSemaphore(max_requests) if max_requests else None
        self.max_requests = max_requests
        self.read_timeout = read_timeout
        self.max_header_bytes = max_header_bytes
        self.reload = reload
        host, port = address
        self._dual_stack = host in ("", "::")
        if host == "" and socket.has_ipv6:
            self.address_family = socket.AF_INET6
            try:
                super().__init__(("::", port), _Handler)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                    raise
                log.debug("no IPv6: listening on IPv4 only", extra={"err": exc.strerror})
            self._dual_stack = False
            self.address_family = socket.AF_INET
        elif ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self._dual_stack and self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hangs up mid-response, a failed TLS handshake (a wrong CA, no client
        # certificate) or a client too slow are the client's business; log anything else as an error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            log.debug("connection dropped", extra={"client": client_address[0], "err": str(sys.exc_info()[1])})
        else:
            log.exception("error while answering a request", extra={"client": client_address[0]})

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


class _DeadlineReader(io.RawIOBase):
    """Reads from a socket; while ``deadline`` is set, no later than it.

    A per-read timeout alone would let a client that sends a byte every few seconds hold a
    connection for ever.
    """

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request did not arrive in time")
            self.sock.settimeout(min(remaining, self.timeout))
        return self.sock.recv_into(buffer)


class _Writer(io.BufferedIOBase):
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sock.sendall(data)
        return len(memoryview(data))


class _HeaderBudget:
    """The request's header lines, refused past a byte budget (http.server answers 431)."""

    def __init__(self, rfile: Any, budget: int, limit: int):
        self.rfile = rfile
        self.budget = budget
        self.limit = limit

    def readline(self, size: int = -1) -> bytes:
        if self.budget >= 0:  # else the request line alone spent it
            line = self.rfile.readline(self.budget + 1 if size < 0 else min(size, self.budget + 1))
            self.budget -= len(line)
            if self.budget >= 0:
                return line
        raise http.client.HTTPException(f"request headers larger than {self.limit} bytes")


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    server_version = f"anthropic-usage-exporter/{__version__}"
    protocol_version = "HTTP/1.1"  # keep-alive: a scraper reuses its connection (and TLS session)
    web: ActiveWebConfig | None = None

    def setup(self) -> None:
        sock = self.request
        sock.settimeout(self.server.read_timeout)
        # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
        # body back until the client's delayed ACK, 40 ms, on every kept-alive request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.web = self.server.web.current() if self.server.web else None  # re-read per connection
        if self.web is not None and self.web.ssl_context is not None:
            # The handshake runs here, in this connection's thread, bounded by the timeout.
            sock = self.request = self.web.ssl_context.wrap_socket(sock, server_side=True)
        self.connection = sock
        self.reader = _DeadlineReader(sock, self.server.read_timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = _Writer(sock)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                # The server shuts down and closes only the plain socket it accepted, which
                # the TLS one took over; do the same here (shut down first, so unread input
                # cannot make the close reset a reply still in flight).
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_WR)
                self.request.close()

    def handle_one_request(self) -> None:
        self.reader.deadline = time.monotonic() + self.server.read_timeout
        super().handle_one_request()

    def parse_request(self) -> bool:
        limit = self.server.max_header_bytes
        rfile = self.rfile
        requestline: bytes = getattr(self, "raw_requestline", b"")
        self.rfile = _HeaderBudget(rfile, limit - len(requestline), limit)  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = rfile
        self.reader.deadline = None
        self.connection.settimeout(self.server.read_timeout)
        if parsed and (self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers):
            self.close_connection = True  # no endpoint reads a body: never parse one as the next request
        return parsed

    def end_headers(self) -> None:
        for name, value in self.web.config.headers if self.web is not None else ():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        if self.server.web is not None:
            self.web = self.server.web.current()  # re-read per request too: users and headers
            if self.web.config.users and not self.server.web.auth.check(self.web.config.users,
                                                                        self.headers.get("Authorization")):
                self._send(401, PLAIN, b"Unauthorized.\n",
                           {"WWW-Authenticate": 'Basic realm="anthropic-usage-exporter", charset="UTF-8"'})
                return
        path = self.path.split("?", 1)[0]
        if path == "/-/reload":
            self._reload()
            return
        pages = (self.server.telemetry_path, "/-/healthy", "/-/ready", "/")
        if self.command == "POST":
            if path in pages:
                self._send(405, PLAIN, b"Method not allowed.\n", {"Allow": "GET, HEAD"})
            else:
                self._send(404, PLAIN, b"Not found.\n")
        elif path == self.server.telemetry_path:
            self._metrics()
        elif path == "/-/healthy":
            self._send(200, PLAIN, b"Healthy.\n")
        elif path == "/-/ready":
            if self.server.state.ready():
                self._send(200, PLAIN, b"Ready.\n")
            else:
                self._send(503, PLAIN, b"Not ready: not every report has been polled yet.\n")
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", landing_page(self.server).encode())
        else:
            self._send(404, PLAIN, b"Not found.\n")

    def _reload(self) -> None:
        if self.server.reload is None:
            self._send(404, PLAIN, b"Not found.\n")
        elif self.command != "POST":
            self._send(405, PLAIN, b"Method not allowed: reload with POST.\n", {"Allow": "POST"})
        else:
            try:
                ok = self.server.reload()
            except Exception:
                log.exception("reloading the configuration failed")
                ok = False
            if ok:
                self._send(200, PLAIN, b"Configuration reloaded.\n")
            else:
                self._send(500, PLAIN, b"Reloading the configuration failed; see the log.\n")

    def _metrics(self) -> None:
        # prometheus_client picks the format from Accept; the cache renders OpenMetrics 1.0.0 or
        # the text format 0.0.4 (for the exporter's names, every escaping scheme is the same text).
        _, content_type = choose_encoder(self.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        content_type = OPENMETRICS_TYPE if openmetrics else TEXT_TYPE
        gzip = gzip_preferred(self.headers.get("Accept-Encoding", ""))
        headers = {"Content-Encoding": "gzip"} if gzip else {}
        if self.command == "HEAD":
            self._send(200, content_type, None, headers)  # the headers a GET would get, nothing rendered
            return
        slots = self.server.scrape_slots
        if slots is not None and not slots.acquire(blocking=False):
            self._send(503, PLAIN, f"Too many concurrent scrapes (--web.max-requests={self.server.max_requests});"
                                   " try again later.\n".encode())
            return
        try:
            try:
                body = self.server.exposition.render(openmetrics=openmetrics, gzip=gzip)
            except Exception:
                log.exception("rendering the exposition failed")
                self._send(500, PLAIN, b"Rendering the metrics failed; see the log.\n")
                return
            self._send(200, content_type, body, headers)
        finally:
            if slots is not None:
                slots.release()

    def _send(self, code: int, content_type: str, body: bytes | None, headers: dict[str, str] | None = None) -> None:
        """``body`` None: a HEAD answer whose length is not known, since nothing was rendered."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body is not None:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log per scrape


def gzip_preferred(accept_encoding: str) -> bool:
    """Whether to answer with gzip: it is acceptable (q > 0, named or through ``*``) and not less
    preferred than identity. ``gzip;q=0`` means never."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if not coding:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        weights[coding.lower()] = q
    gzip = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    # identity is acceptable unless refused; a client that names only gzip prefers it.
    identity = weights.get("identity", weights.get("*", 0.0))
    return gzip > 0 and gzip >= identity


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
