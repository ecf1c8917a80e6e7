"""Proof with a real Prometheus: it scrapes the demo exporter with the shipped scrape job and rules,
and every dashboard query, recording rule and alert selector gets data.

Debian's ``prometheus`` runs on loopback with a temporary data dir, scraping
``python -m exporter --demo`` every second and evaluating the shipped rule files every second.

History for ``offset``: AnthropicSpendSpike compares today's spend with the same time of day on
the three previous days (``offset 1d`` .. ``offset 3d``), which a Prometheus started a moment ago
does not have. Rather than weaken the rule, the test backfills it: it takes one OpenMetrics
scrape of the demo, keeps the families that some expression reads with ``offset``, stamps each
sample at times around ``now - offset`` (so the lookback of the queries finds them), and turns
that into blocks with ``promtool tsdb create-blocks-from openmetrics`` in the data dir before
Prometheus starts. The rest of the expressions read live scrapes.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from .support import (
    EXPORTER_JOB,
    PROMETHEUS_DIR,
    alert_rules,
    contract_metrics,
    dashboard_queries,
    expand_grafana,
    free_port,
    recording_rules,
    rule_files,
    run,
    selectors,
)

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
DEADLINE = 45.0  # seconds to wait for the exporter, for every metric and for the rules

QUERIES = dashboard_queries()
RECORDING = recording_rules()
ALERTS = alert_rules()


def wait_until(condition: Callable[[], Any], timeout: float, message: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.25)


class Stack:
    """The demo exporter and Prometheus, as subprocesses, with their logs."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.exporter_url = ""
        self.url = ""

    def start(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.workdir / log_name
        with open(log, "wb") as fh:
            process = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        self.processes.append((process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} (exit {p.poll()}):\n{log.read_text(errors='replace')[-3000:]}"
                         for p, log in self.processes)

    def check_alive(self) -> None:
        for process, log in self.processes:
            assert process.poll() is None, f"{log.name} exited early\n{self.logs()}"

    def query(self, promql: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        return response.json()

    def stop(self) -> None:
        for process, _ in reversed(self.processes):
            process.terminate()
        for process, _ in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def offsets_in_use() -> dict[str, set[int]]:
    """Metric name -> the offsets (seconds) some shipped expression reads it at."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    found: dict[str, set[int]] = {}
    exprs = [expand_grafana(q.expr) for q in QUERIES] + [r["expr"] for r in RECORDING + ALERTS]
    for expr in exprs:
        for sel in selectors(expr):
            if sel.offset and sel.name:
                seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", sel.offset))
                found.setdefault(sel.name, set()).add(seconds)
    return found


def backfill_input(scrape: str, offsets: dict[str, set[int]], now: float) -> str:
    """OpenMetrics text holding the families read with offset, at times around now - offset."""
    families: dict[str, list[str]] = {}
    current = None
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            current = name if name in offsets and kind == "gauge" else None
            if current:
                families[current] = [line]
        elif current and not line.startswith("#") and line.strip():
            # A gauge's sample: `name{labels} value`, no timestamp, no exemplar.
            families[current].append(line)
    missing = set(offsets) - set(families)
    assert not missing, f"read with offset but not in the demo's exposition as gauges: {missing}"
    out = []
    for name, (type_line, *samples) in families.items():
        out.append(type_line)
        for sample in samples:
            for offset in sorted(offsets[name], reverse=True):
                # 10 minutes either side, every 30 s: the test's queries all fall inside.
                for step in range(-20, 21):
                    out.append(f"{sample} {now - offset + step * 30:.3f}")
    return "\n".join(out) + "\n# EOF\n"


def prometheus_config(exporter_address: str) -> dict[str, Any]:
    """The shipped prometheus.yml, scraping the demo every second with the shipped rules.

    Kept from the shipped file: the exporter's job (name, path) and the rule files. Changed:
    intervals (1 s), the target address, absolute rule paths; dropped: Alertmanager and the
    applications' file_sd job (nothing to send to, nothing to discover here).
    """
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == EXPORTER_JOB)
    job = {**job, "static_configs": [{"targets": [exporter_address]}]}
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str((PROMETHEUS_DIR / f).resolve()) for f in shipped["rule_files"]],
        "scrape_configs": [job],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prometheus_binary, promtool):
    workdir = tmp_path_factory.mktemp("real-prometheus")
    stack = Stack(workdir)
    try:
        # 1. The demo exporter (its request log goes to the temporary dir, not the work tree).
        port = free_port()
        stack.exporter_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ANTHROPIC_ADMIN_API_KEY", None)
        stack.start([sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}",
                     "--demo.request-log", str(workdir / "requests.sqlite3")], "exporter.log", env)

        def ready() -> bool:
            stack.check_alive()
            return requests.get(f"{stack.exporter_url}/-/ready", timeout=2).status_code == 200

        wait_until(ready, DEADLINE, lambda: f"the demo exporter never got ready\n{stack.logs()}")

        # 2. History for the offset queries, from one scrape of the demo.
        data = workdir / "data"
        data.mkdir()
        scrape = requests.get(f"{stack.exporter_url}/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
        assert scrape.headers["Content-Type"].startswith("application/openmetrics-text"), scrape.headers
        history = workdir / "history.om"
        history.write_text(backfill_input(scrape.text, offsets_in_use(), time.time()))
        result = run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)])
        assert result.returncode == 0, result.stdout + result.stderr

        # 3. Prometheus with the derived config.
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(f"127.0.0.1:{port}")))
        checked = run([promtool, "check", "config", str(config)])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prom_port = free_port()
        stack.url = f"http://127.0.0.1:{prom_port}"
        stack.start([prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage",
                     "--storage.tsdb.retention.time=30d"], "prometheus.log")

        def prometheus_ready() -> bool:
            stack.check_alive()
            return requests.get(f"{stack.url}/-/ready", timeout=2).status_code == 200

        wait_until(prometheus_ready, DEADLINE, lambda: f"Prometheus never got ready\n{stack.logs()}")

        # 4. Let it scrape until every contract metric is in (errors and retries need the demo's
        # first injected fault, some seconds in), and the rules have been evaluated.
        expected = set().union(*(m.series_names() for m in contract_metrics().values()))

        def ingested() -> bool:
            stack.check_alive()
            body = stack.query('count by (__name__) ({__name__=~"anthropic_.+"})')
            return expected <= {r["metric"]["__name__"] for r in body["data"]["result"]}

        with contextlib.suppress(AssertionError):  # test_every_contract_metric_is_ingested names what is missing
            wait_until(ingested, DEADLINE, lambda: "")
        # A few more scrapes, so that rate() has two samples of the series that came in last.
        time.sleep(3)
        record_names = {r["record"] for r in RECORDING}
        with contextlib.suppress(AssertionError):  # test_every_recording_rule_returns_data names which
            wait_until(lambda: all(stack.query(n)["data"]["result"] for n in record_names), 10, lambda: "")
        yield stack
    finally:
        stack.stop()


def test_every_contract_metric_is_ingested(stack):
    body = stack.query('count by (__name__) ({__name__=~"anthropic_.+"})')
    have = {r["metric"]["__name__"] for r in body["data"]["result"]}
    missing = {}
    for metric in contract_metrics().values():
        if not metric.series_names() <= have:
            missing[metric.name] = sorted(metric.series_names() - have)
    assert not missing, f"metrics of docs/metrics.md that Prometheus did not ingest from the demo: {missing}"


def test_exemplars_of_the_latency_histogram_are_stored(stack):
    now = time.time()
    response = requests.get(f"{stack.url}/api/v1/query_exemplars", timeout=10, params={
        "query": "anthropic_client_request_duration_seconds_bucket", "start": now - 300, "end": now + 60})
    groups = response.json()["data"]
    labels = [e["labels"] for g in groups for e in g["exemplars"]]
    assert labels, "no exemplars stored for anthropic_client_request_duration_seconds_bucket"
    assert all(re.fullmatch(r"req_\w+", lbl.get("request_id", "")) for lbl in labels), labels[:3]


def test_every_rule_evaluates_without_error(stack):
    groups = requests.get(f"{stack.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r.get("alert") or r.get("record") for r in RECORDING + ALERTS}
    broken = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert not broken, broken


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_dashboard_query_returns_data(stack, query):
    promql = expand_grafana(query.expr)
    body = stack.query(promql)
    assert body["status"] == "success", f"{query.id}: {body.get('error')}\n{promql}"
    assert body["data"]["result"], f"{query.id} returns no data:\n{promql}"


@pytest.mark.parametrize("rule", RECORDING, ids=[r["record"] for r in RECORDING])
def test_every_recording_rule_returns_data(stack, rule):
    body = stack.query(rule["expr"])
    assert body["status"] == "success", body.get("error")
    assert body["data"]["result"], f"{rule['record']} returns no data:\n{rule['expr']}"
    assert stack.query(rule["record"])["data"]["result"], f"Prometheus recorded no {rule['record']}"


@pytest.mark.parametrize("rule", ALERTS, ids=[r["alert"] for r in ALERTS])
def test_every_alert_expression_is_accepted_and_its_selectors_return_data(stack, rule):
    # The alerts should not fire on the demo, so the expression itself may well be empty.
    body = stack.query(rule["expr"])
    assert body["status"] == "success", body.get("error")
    empty = []
    for sel in selectors(rule["expr"]):
        result = stack.query(sel.instant_query())
        assert result["status"] == "success", result.get("error")
        if not result["data"]["result"]:
            empty.append(sel.instant_query())
    assert not empty, f"{rule['alert']}: selectors without data: {empty}"


def test_promtool_check_config_and_rules_on_the_shipped_files(promtool):
    config = run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    checked = run([promtool, "check", "rules", *map(str, rule_files())])
    assert checked.returncode == 0, checked.stdout + checked.stderr
