"""Start Debian's real Prometheus on loopback for a test, and query it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """A real ``prometheus`` with a temporary data dir, scraping ``targets`` every second.

    ``scrape_configs`` replaces the one job over ``targets``, e.g. for jobs with ``scheme: https``,
    a ``tls_config`` and ``basic_auth``.
    """

    def __init__(self, targets: list[str], rule_files: list[str] | None = None, extra_flags: list[str] | None = None,
                 scrape_configs: list[dict] | None = None):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: install Debian's prometheus package (.ci/run does)"
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files or [],
            "scrape_configs": scrape_configs or [{"job_name": "anthropic", "static_configs": [{"targets": targets}]}],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", *(extra_flags or [])],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        self._until(lambda: requests.get(self.url + "/-/ready", timeout=2).status_code == 200, timeout,
                    "Prometheus did not become ready")

    def query(self, promql: str) -> list[dict]:
        response = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def targets(self) -> list[dict]:
        """The active targets, with their health and last scrape error."""
        response = requests.get(self.url + "/api/v1/targets", timeout=10)
        return response.json()["data"]["activeTargets"]

    def wait_for(self, promql: str, timeout: float = 60) -> list[dict]:
        result: list[dict] = []

        def has_data() -> bool:
            nonlocal result
            result = self.query(promql)
            return bool(result)

        self._until(has_data, timeout, f"no data for {promql}")
        return result

    def _until(self, condition, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"Prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if condition():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"{message} within {timeout}s; log: {(self.dir / 'prometheus.log').read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
