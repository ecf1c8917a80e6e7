"""A spend spike injected into the simulator makes AnthropicEstimatedSpendSpike true on a real
Prometheus, from the exporter's first scrapes after it polls the spike's buckets.

The exporter polls a standalone simulator (``python -m exporter.simulator``) with a plain
configuration (usage polled every 5 s); Debian's ``prometheus`` scrapes it every second with the
shipped rule files. Before the spike, the alert's expression holds nothing for the workspace.
Then ``POST /_simulator/spikes`` adds 10 minutes of runaway requests to the Production
workspace, ending now, inside the trailing 15 minutes of 1m buckets the exporter re-reads at
every poll. Once Prometheus has scraped a poll that ended after the injection, the expression
(sent to the query API) holds the workspace, and the rule loaded into Prometheus is pending
on it. Firing takes the rule's `for` on top (10 minutes); the promtool test
"estimated spend spike as it happens" covers that part on a timeline.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
import requests
import yaml

from .support import alert_rules, free_port, run
from .test_real_prometheus import DEADLINE, Stack, prometheus_config, wait_until

ALERT = "AnthropicEstimatedSpendSpike"
USAGE_POLL_SECONDS = 5


def spike_rule() -> dict:
    (rule,) = [r for r in alert_rules() if r["alert"] == ALERT]
    return rule


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prometheus_binary, promtool):
    from exporter.simulator import ADMIN_KEY

    workdir = tmp_path_factory.mktemp("real-prometheus-spike")
    stack = Stack(workdir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SIMULATOR_ADMIN_KEY": ADMIN_KEY}
    env.pop("ANTHROPIC_ADMIN_API_KEY", None)
    try:
        # 1. The simulator, and the exporter polling it.
        sim_port = free_port()
        stack.simulator_url = f"http://127.0.0.1:{sim_port}"
        stack.start([sys.executable, "-m", "exporter.simulator", "--port", str(sim_port)], "simulator.log", env)
        wait_until(lambda: stack.check_alive() or requests.get(
            f"{stack.simulator_url}/_simulator/spikes", timeout=2).status_code == 200,
            DEADLINE, lambda: f"the simulator never answered\n{stack.logs()}")
        config = workdir / "exporter.yml"
        config.write_text(yaml.safe_dump({
            "organizations": [{"name": "sim", "api_key_env": "SIMULATOR_ADMIN_KEY", "base_url": stack.simulator_url}],
            "poll_intervals": {"usage": f"{USAGE_POLL_SECONDS}s"},
        }))
        port = free_port()
        stack.exporter_url = f"http://127.0.0.1:{port}"
        stack.start([sys.executable, "-m", "exporter", "--config.file", str(config),
                     "--web.listen-address", f"127.0.0.1:{port}"], "exporter.log", env)
        wait_until(lambda: stack.check_alive() or requests.get(f"{stack.exporter_url}/-/ready", timeout=2).ok,
                   DEADLINE, lambda: f"the exporter never got ready\n{stack.logs()}")

        # 2. Prometheus with the shipped scrape job and rules, no history at all.
        data = workdir / "data"
        data.mkdir()
        prom_config = workdir / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(prometheus_config(f"127.0.0.1:{port}")))
        checked = run([promtool, "check", "config", str(prom_config)])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prom_port = free_port()
        stack.url = f"http://127.0.0.1:{prom_port}"
        stack.start([prometheus_binary, f"--config.file={prom_config}", f"--storage.tsdb.path={data}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"], "prometheus.log")
        wait_until(lambda: stack.check_alive() or requests.get(f"{stack.url}/-/ready", timeout=2).ok,
                   DEADLINE, lambda: f"Prometheus never got ready\n{stack.logs()}")
        yield stack
    finally:
        stack.stop()


def results(stack: Stack, promql: str) -> list[dict]:
    body = stack.query(promql)
    assert body["status"] == "success", f"{body.get('error')}\n{promql}"
    return body["data"]["result"]


def test_an_injected_spike_makes_the_alert_true_from_the_first_scrapes_after_its_buckets_are_polled(stack):
    rule = spike_rule()

    # The Production workspace, by name, once Prometheus has it.
    production = wait_until(
        lambda: results(stack, 'anthropic_workspace_info{workspace_name="Production"}'), DEADLINE,
        lambda: f"Prometheus never got the workspace names\n{stack.logs()}")[0]["metric"]["workspace_id"]
    in_production = f'({rule["expr"]}) and on (workspace_id) label_replace(vector(1), "workspace_id", "{production}", "", "")'
    wait_until(lambda: results(stack, 'anthropic_usage_estimated_cost_usd{window="1h"}'), DEADLINE,
               lambda: f"no estimated cost scraped\n{stack.logs()}")
    assert not results(stack, in_production), "the alert holds the workspace before any spike"
    before = sum(float(r["value"][1]) for r in results(
        stack, f'anthropic_usage_estimated_cost_usd{{window="1h", workspace_id="{production}"}}'))

    # 10 minutes of runaway requests, ending now (the simulator's default start).
    injected_at = time.time()
    response = requests.post(f"{stack.simulator_url}/_simulator/spikes", timeout=10,
                             json={"workspace": "Production", "minutes": 10, "factor": 300})
    assert response.status_code == 200, response.text
    (spike,) = response.json()["spikes"]
    assert spike["workspace_id"] == production, spike

    # The first poll of the usage report that ended after the injection, scraped.
    wait_until(lambda: results(stack, f'anthropic_exporter_last_success_timestamp_seconds{{report="usage"}} > {injected_at}'),
               DEADLINE + 3 * USAGE_POLL_SECONDS, lambda: f"no usage poll after the spike\n{stack.logs()}")
    polled_at = time.time()
    # From the next scrapes (every second), the alert's expression holds the workspace.
    fired = wait_until(lambda: results(stack, in_production), 5,
                       lambda: f"{ALERT}'s expression stays empty after the spike was polled: "
                               f"{results(stack, 'sum by (workspace_id, window) (anthropic_usage_estimated_cost_usd)')}")
    assert time.time() - polled_at < 5
    (sample,) = fired
    spent = float(sample["value"][1])
    assert spent > 5 and spent > before + 5, (before, spent)
    assert sample["metric"] == {"organization": "sim", "workspace_id": production}

    # The rule loaded into Prometheus is on its way to firing: pending, for its `for`.
    pending = wait_until(
        lambda: results(stack, f'ALERTS{{alertname="{ALERT}", workspace_id="{production}"}}'), 10,
        lambda: f"Prometheus's {ALERT} rule never went pending\n{stack.logs()}")
    assert pending[0]["metric"]["alertstate"] == "pending"
    groups = requests.get(f"{stack.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    (loaded,) = [r for g in groups for r in g["rules"] if r["name"] == ALERT]
    assert loaded["health"] == "ok" and loaded["duration"] == 600, loaded
