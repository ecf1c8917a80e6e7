"""prometheus_client multiprocess mode: two processes record into one directory, merged on read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.openmetrics.exposition import generate_latest

from exporter.simulator import SimulatorServer

MODEL = "claude-haiku-4-5"

# One worker: an instrumented SDK client on the default registry (as in a gunicorn app), some
# plain and streamed requests, one with a retry; prints what the SDK reported.
_WORKER = """
import json, sys
import anthropic
from exporter.client import instrument

url, name, n, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = instrument(anthropic.Anthropic(api_key="sk-ant-api03-test", base_url=url))
sums = {"input": 0, "output": 0}
for i in range(n):
    args = dict(model=model, max_tokens=32, messages=[{"role": "user", "content": f"{name} {i}"}])
    if i % 2:
        with client.messages.stream(**args) as stream:
            usage = stream.get_final_message().usage
    else:
        usage = client.messages.create(**args).usage
    sums["input"] += usage.input_tokens
    sums["output"] += usage.output_tokens
print(json.dumps(sums))
"""


def test_two_processes_merge(sim: SimulatorServer, tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "multiproc"
    multiproc_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    root = Path(__file__).resolve().parents[2]
    per_process = 6
    sim.inject("/v1/messages", "529", times=1)  # one of the two processes retries once
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, sim.url, f"w{i}", str(per_process), MODEL],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    sums = [json.loads(out) for out in outputs]

    def collected() -> CollectorRegistry:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(multiproc_dir))
        return registry

    # livesum reads only files of processes not yet marked dead: look before marking them.
    # Each worker left its own in-flight file, and every attempt it counted it also ended.
    for worker in workers:
        assert (multiproc_dir / f"gauge_livesum_{worker.pid}.db").exists()
    in_flight = {"operation": "messages"}
    assert collected().get_sample_value("anthropic_client_in_flight_requests", in_flight) == 0
    for worker in workers:
        mark_process_dead(worker.pid, str(multiproc_dir))
    registry = collected()
    assert registry.get_sample_value("anthropic_client_in_flight_requests", in_flight) is None  # files gone

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    duration = "anthropic_client_request_duration_seconds_count"
    common = {"model": MODEL, "operation": "messages"}
    assert value(duration, **common, status_code="200", stream="false") == per_process
    assert value(duration, **common, status_code="200", stream="true") == per_process
    assert value(duration, **common, status_code="529", stream="false") == 1
    assert value("anthropic_client_retries_total", **common) == 1
    assert value("anthropic_client_errors_total", **common, error_type="overloaded_error") == 1
    tier = {"model": MODEL, "service_tier": "standard"}
    assert value("anthropic_client_uncached_input_tokens_total", **tier) == sum(s["input"] for s in sums)
    assert value("anthropic_client_output_tokens_total", **tier) == sum(s["output"] for s in sums)
    assert value("anthropic_client_time_to_first_token_seconds_count", **common) == per_process
    # mostrecent: one value per series, not one per process
    limits = [s for m in registry.collect() if m.name == "anthropic_client_ratelimit_limit" for s in m.samples]
    assert {(s.labels["resource"], s.value) for s in limits if s.labels["model"] == MODEL} == {
        ("requests", 4000.0),
        ("tokens", 2_400_000.0),
        ("input_tokens", 2_000_000.0),
        ("output_tokens", 400_000.0),
    }
    assert all("pid" not in s.labels for s in limits)
    # exemplars are not kept in multiprocess mode
    assert "# {" not in generate_latest(registry).decode()
