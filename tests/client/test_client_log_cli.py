"""``anthropic-usage-exporter requests``: the log reader's output, filters and usage errors."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from exporter.client.log_cli import main
from exporter.client.request_log import COLUMNS, RequestLog, format_time

from .test_client_request_log import NOW, row


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "requests.sqlite3"
    log = RequestLog(path, max_age_seconds=None)
    log.submit(row(NOW - 7200, "req_old", model="claude-opus-5", duration_ms=2500.0, estimated_cost_usd=0.5))
    log.submit(
        row(
            NOW - 60,
            "req_limited",
            status_code="429",
            error_type="rate_limit_error",
            uncached_input_tokens=0,
            cache_read_input_tokens=0,
            cache_creation_5m_input_tokens=0,
            cache_creation_1h_input_tokens=0,
            output_tokens=0,
            web_search_requests=0,
            service_tier=None,
            duration_ms=12.0,
            estimated_cost_usd=0.0,
        )
    )
    log.submit(row(NOW - 59.5, "req_retry", stream=True, ttft_ms=80.25, retry_count=1, duration_ms=640.0))
    log.submit(row(NOW - 30, "req_unpriced", model="claude-next", estimated_cost_usd=None, duration_ms=30.0))
    log.close()
    return path


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out, now=NOW) == 0
    return out.getvalue()


NO_COST = (
    "requests without an estimated cost: 1 of {n} (a model or tier the price table does not price, "
    "a reply whose usage was not read, or logged before costs were)\n"
)


def test_table_newest_first_with_costs_and_their_total(log_path: Path) -> None:
    assert run("--log", str(log_path)) == (
        "time                      request_id    model             op        stream  status  error             dur_ms  ttft_ms  in  cache_rd  cache_5m  cache_1h  out  web  cost_usd  tier      retry  workspace\n"
        "2030-03-17T17:46:10.000Z  req_unpriced  claude-next       messages  false   200                         30.0           10         2         3         4    5    1            standard      0  wrkspc_1\n"
        "2030-03-17T17:45:40.500Z  req_retry     claude-haiku-4-5  messages  true    200                        640.0     80.2  10         2         3         4    5    1  0.012500  standard      1  wrkspc_1\n"
        "2030-03-17T17:45:40.000Z  req_limited   claude-haiku-4-5  messages  false   429     rate_limit_error    12.0            0         0         0         0    0    0  0.000000                0  wrkspc_1\n"
        "2030-03-17T15:46:40.000Z  req_old       claude-opus-5     messages  false   200                       2500.0           10         2         3         4    5    1  0.500000  standard      0  wrkspc_1\n"
        "total, 4 requests                                                                                                      30         6         9        12   15    3  0.512500\n"
    ) + NO_COST.format(n=4)
    # the total is of the rows shown
    total = run("--log", str(log_path), "--limit", "2").splitlines()[3]
    assert total.split() == ["total,", "2", "requests", "20", "4", "6", "8", "10", "2", "0.012500"]


def test_group_by_model_and_by_hour(log_path: Path) -> None:
    assert run("--log", str(log_path), "--group-by", "model") == (
        "model              requests  errors  in  cache_rd  cache_5m  cache_1h  out  web  cost_usd  no_cost\n"
        "claude-opus-5             1       0  10         2         3         4    5    1  0.500000        0\n"
        "claude-haiku-4-5          2       1  10         2         3         4    5    1  0.012500        0\n"
        "claude-next               1       0  10         2         3         4    5    1                  1\n"
        "total, 4 requests         4       1  30         6         9        12   15    3  0.512500        1\n"
    ) + NO_COST.format(n=4)
    assert run("--log", str(log_path), "--group-by", "hour", "--limit", "1") == (
        "hour               requests  errors  in  cache_rd  cache_5m  cache_1h  out  web  cost_usd  no_cost\n"
        "2030-03-17T17:00Z         3       1  20         4         6         8   10    2  0.012500        1\n"
        "2030-03-17T15:00Z         1       0  10         2         3         4    5    1  0.500000        0\n"
        "total, 4 requests         4       1  30         6         9        12   15    3  0.512500        1\n"
    ) + NO_COST.format(n=4)
    lines = run("--log", str(log_path), "--group-by", "model", "--status", "2xx", "--format", "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"model": "claude-opus-5", "requests": 1, "errors": 0, "uncached_input_tokens": 10,
         "cache_read_input_tokens": 2, "cache_creation_5m_input_tokens": 3, "cache_creation_1h_input_tokens": 4,
         "output_tokens": 5, "web_search_requests": 1, "estimated_cost_usd": 0.5, "requests_without_cost": 0},
        {"model": "claude-haiku-4-5", "requests": 1, "errors": 0, "uncached_input_tokens": 10,
         "cache_read_input_tokens": 2, "cache_creation_5m_input_tokens": 3, "cache_creation_1h_input_tokens": 4,
         "output_tokens": 5, "web_search_requests": 1, "estimated_cost_usd": 0.0125, "requests_without_cost": 0},
        {"model": "claude-next", "requests": 1, "errors": 0, "uncached_input_tokens": 10,
         "cache_read_input_tokens": 2, "cache_creation_5m_input_tokens": 3, "cache_creation_1h_input_tokens": 4,
         "output_tokens": 5, "web_search_requests": 1, "estimated_cost_usd": None, "requests_without_cost": 1},
    ]  # fmt: skip
    assert run("--log", str(log_path), "--group-by", "hour", "--format", "csv", "--since", "1h").splitlines() == [
        "hour,requests,errors,uncached_input_tokens,cache_read_input_tokens,cache_creation_5m_input_tokens,"
        "cache_creation_1h_input_tokens,output_tokens,web_search_requests,estimated_cost_usd,requests_without_cost",
        "2030-03-17T17:00Z,3,1,20,4,6,8,10,2,0.0125,1",
    ]


def test_filters(log_path: Path) -> None:
    def ids(*argv: str) -> list[str]:
        lines = run("--log", str(log_path), "--format", "jsonl", *argv).splitlines()
        return [json.loads(line)["request_id"] for line in lines]

    assert ids("--since", "1h") == ["req_unpriced", "req_retry", "req_limited"]
    assert ids("--since", "90s", "--status", "429") == ["req_limited"]
    assert ids("--status", "4xx") == ["req_limited"]
    assert ids("--status", "2XX") == ["req_unpriced", "req_retry", "req_old"]
    assert ids("--model", "claude-opus-5") == ["req_old"]
    assert ids("--limit", "1") == ["req_unpriced"]
    assert ids("--since", "3h", "--limit", "0") == ["req_unpriced", "req_retry", "req_limited", "req_old"]
    # Prometheus-style durations, as everywhere in the project
    assert ids("--since", "1h59m") == ["req_unpriced", "req_retry", "req_limited"]
    assert ids("--since", "2h1s") == ["req_unpriced", "req_retry", "req_limited", "req_old"]
    assert ids("--since", "45s") == ["req_unpriced"]


def test_csv_and_jsonl(log_path: Path) -> None:
    lines = run("--log", str(log_path), "--format", "csv", "--limit", "2").splitlines()
    assert lines == [
        "start_time,request_id,model,operation,stream,status_code,error_type,duration_ms,ttft_ms,"
        "uncached_input_tokens,cache_read_input_tokens,cache_creation_5m_input_tokens,"
        "cache_creation_1h_input_tokens,output_tokens,web_search_requests,service_tier,"
        "retry_count,workspace_id,estimated_cost_usd",
        "2030-03-17T17:46:10.000Z,req_unpriced,claude-next,messages,false,200,,30.0,,10,2,3,4,5,1,standard,0,wrkspc_1,",
        "2030-03-17T17:45:40.500Z,req_retry,claude-haiku-4-5,messages,true,200,,640.0,80.25,"
        "10,2,3,4,5,1,standard,1,wrkspc_1,0.0125",
    ]
    records = [json.loads(line) for line in run("--log", str(log_path), "--format", "jsonl", "--limit", "2").splitlines()]
    assert records[1]["stream"] is True and records[1]["ttft_ms"] == 80.25 and records[1]["error_type"] is None
    assert (records[0]["estimated_cost_usd"], records[1]["estimated_cost_usd"]) == (None, 0.0125)


def test_a_log_written_before_costs_reads_and_is_brought_up_to_date(tmp_path: Path) -> None:
    """A file without the estimated_cost_usd column: the reader shows it empty; the next writer
    adds the column, and old rows keep NULL."""
    path = tmp_path / "old.sqlite3"
    columns = [(name, kind) for name, kind in COLUMNS if name != "estimated_cost_usd"]
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, " + ", ".join(f"{n} {k}" for n, k in columns) + ")")
    old = row(NOW - 10, "req_before")
    conn.execute(
        f"INSERT INTO requests ({', '.join(n for n, _ in columns)}) VALUES ({', '.join('?' for _ in columns)})",
        (format_time(old.started_at), *old[1:4], 0, *old[5 : len(columns)]),
    )
    conn.commit()
    conn.close()
    shown = run("--log", str(path)).splitlines()
    assert shown[0].split()[-4:] == ["cost_usd", "tier", "retry", "workspace"]
    assert shown[1].split()[-4:] == ["1", "standard", "0", "wrkspc_1"]  # (web, then no cost)
    assert shown[2].split() == ["total,", "1", "request", "10", "2", "3", "4", "5", "1"]
    assert shown[3] + "\n" == NO_COST.format(n=1)
    assert json.loads(run("--log", str(path), "--format", "jsonl"))["estimated_cost_usd"] is None

    log = RequestLog(path, max_age_seconds=None)
    assert log.submit(row(NOW - 5, "req_after", estimated_cost_usd=0.25))
    log.close()
    lines = run("--log", str(path), "--group-by", "model", "--format", "csv").splitlines()
    assert lines[1] == "claude-haiku-4-5,2,0,20,4,6,8,10,2,0.25,1"


def test_default_path_from_the_environment(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_REQUEST_LOG", str(log_path))
    assert "req_old" in run()
    monkeypatch.delenv("ANTHROPIC_REQUEST_LOG")
    monkeypatch.chdir(log_path.parent)
    log_path.rename(log_path.parent / "anthropic-requests.sqlite3")
    assert "req_old" in run()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--log", "{missing}"],
            "anthropic-usage-exporter requests: error: request log not found: {missing} "
            "(set --log or $ANTHROPIC_REQUEST_LOG)",
        ),
        (
            ["--log", "{log}", "--since", "yesterday"],
            "anthropic-usage-exporter requests: error: invalid --since 'yesterday': use a duration such "
            "as 30m, 1h, 1h30m or 7d (units ms, s, m, h, d, w)",
        ),
        (
            ["--log", "{missing}", "--since", "1y"],
            "anthropic-usage-exporter requests: error: invalid --since '1y': use a duration such "
            "as 30m, 1h, 1h30m or 7d (units ms, s, m, h, d, w)",
        ),
        (
            ["--log", "{log}", "--since", "30m1h"],
            "anthropic-usage-exporter requests: error: invalid --since '30m1h': use a duration such "
            "as 30m, 1h, 1h30m or 7d (units ms, s, m, h, d, w)",
        ),
        (
            ["--log", "{not_a_log}"],
            "anthropic-usage-exporter requests: error: cannot read request log {not_a_log}: no such table: requests",
        ),
    ],
)
def test_usage_errors(
    argv: list[str], message: str, log_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_log = tmp_path / "other.sqlite3"
    sqlite3.connect(not_a_log).execute("CREATE TABLE t (x)").connection.close()
    paths = {"missing": tmp_path / "nope.sqlite3", "log": log_path, "not_a_log": not_a_log}
    argv = [a.format(**paths) for a in argv]
    out = io.StringIO()
    assert main(argv, out=out, now=NOW) == 2
    assert out.getvalue() == ""
    assert capsys.readouterr().err == message.format(**paths) + "\n"
