"""``anthropic-usage-exporter requests``: the log reader's output, filters and usage errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from exporter.client.log_cli import main
from exporter.client.request_log import RequestLog

from .test_client_request_log import NOW, row


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "requests.sqlite3"
    log = RequestLog(path, max_age_seconds=None)
    log.submit(row(NOW - 7200, "req_old", model="claude-opus-5", duration_ms=2500.0))
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
        )
    )
    log.submit(row(NOW - 59.5, "req_retry", stream=True, ttft_ms=80.25, retry_count=1, duration_ms=640.0))
    log.close()
    return path


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out, now=NOW) == 0
    return out.getvalue()


def test_table_newest_first(log_path: Path) -> None:
    assert run("--log", str(log_path)) == (
        "time                      request_id   model             op        stream  status  error             dur_ms  ttft_ms  in  cache_rd  cache_5m  cache_1h  out  web  tier      retry  workspace\n"
        "2030-03-17T17:45:40.500Z  req_retry    claude-haiku-4-5  messages  true    200                        640.0     80.2  10         2         3         4    5    1  standard      1  wrkspc_1\n"
        "2030-03-17T17:45:40.000Z  req_limited  claude-haiku-4-5  messages  false   429     rate_limit_error    12.0            0         0         0         0    0    0                0  wrkspc_1\n"
        "2030-03-17T15:46:40.000Z  req_old      claude-opus-5     messages  false   200                       2500.0           10         2         3         4    5    1  standard      0  wrkspc_1\n"
    )


def test_filters(log_path: Path) -> None:
    def ids(*argv: str) -> list[str]:
        lines = run("--log", str(log_path), "--format", "jsonl", *argv).splitlines()
        return [json.loads(line)["request_id"] for line in lines]

    assert ids("--since", "1h") == ["req_retry", "req_limited"]
    assert ids("--since", "90s", "--status", "429") == ["req_limited"]
    assert ids("--status", "4xx") == ["req_limited"]
    assert ids("--status", "2XX") == ["req_retry", "req_old"]
    assert ids("--model", "claude-opus-5") == ["req_old"]
    assert ids("--limit", "1") == ["req_retry"]
    assert ids("--since", "3h", "--limit", "0") == ["req_retry", "req_limited", "req_old"]


def test_csv_and_jsonl(log_path: Path) -> None:
    lines = run("--log", str(log_path), "--format", "csv", "--limit", "1").splitlines()
    assert lines == [
        "start_time,request_id,model,operation,stream,status_code,error_type,duration_ms,ttft_ms,"
        "uncached_input_tokens,cache_read_input_tokens,cache_creation_5m_input_tokens,"
        "cache_creation_1h_input_tokens,output_tokens,web_search_requests,service_tier,"
        "retry_count,workspace_id",
        "2030-03-17T17:45:40.500Z,req_retry,claude-haiku-4-5,messages,true,200,,640.0,80.25,"
        "10,2,3,4,5,1,standard,1,wrkspc_1",
    ]
    record = json.loads(run("--log", str(log_path), "--format", "jsonl", "--limit", "1"))
    assert record["stream"] is True and record["ttft_ms"] == 80.25 and record["error_type"] is None


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
            "anthropic-usage-exporter requests: error: invalid --since 'yesterday': use a number "
            "and a unit s, m, h, d or w (e.g. 1h)",
        ),
        (
            ["--log", "{log}", "--since", "1y"],
            "anthropic-usage-exporter requests: error: invalid --since '1y': use a number "
            "and a unit s, m, h, d or w (e.g. 1h)",
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
    import sqlite3

    sqlite3.connect(not_a_log).execute("CREATE TABLE t (x)").connection.close()
    paths = {"missing": tmp_path / "nope.sqlite3", "log": log_path, "not_a_log": not_a_log}
    argv = [a.format(**paths) for a in argv]
    out = io.StringIO()
    assert main(argv, out=out, now=NOW) == 2
    assert out.getvalue() == ""
    assert capsys.readouterr().err == message.format(**paths) + "\n"
