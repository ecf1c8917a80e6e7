"""The per-request SQLite log: rows, retention, a full queue, threads, processes, fork."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import Recorder, RequestLog
from exporter.client import request_log as request_log_module
from exporter.client.request_log import COLUMN_NAMES, RequestLogClosed, RequestRow, format_time

NOW = 1_900_000_000.0  # 2030-03-17T17:46:40Z


def row(started_at: float = NOW, request_id: str = "req_1", **fields: Any) -> RequestRow:
    values: dict[str, Any] = dict(
        started_at=started_at,
        request_id=request_id,
        model="claude-haiku-4-5",
        operation="messages",
        stream=False,
        status_code="200",
        error_type=None,
        duration_ms=123.456,
        ttft_ms=None,
        uncached_input_tokens=10,
        cache_read_input_tokens=2,
        cache_creation_5m_input_tokens=3,
        cache_creation_1h_input_tokens=4,
        output_tokens=5,
        web_search_requests=1,
        service_tier="standard",
        retry_count=0,
        workspace_id="wrkspc_1",
        estimated_cost_usd=0.0125,
    )
    values.update(fields)
    return RequestRow(**values)


def rows_of(path: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM requests ORDER BY id").fetchall()
    finally:
        conn.close()


def test_format_time() -> None:
    assert format_time(NOW) == "2030-03-17T17:46:40.000Z"
    assert format_time(NOW + 0.0456) == "2030-03-17T17:46:40.045Z"


def test_rows_are_written_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path, clock=lambda: NOW)
    assert log.submit(row())
    assert log.submit(row(NOW + 1.5, "req_2", stream=True, ttft_ms=12.5, error_type="x"))
    log.close()
    got = rows_of(path)
    assert tuple(got[0].keys()) == ("id", *COLUMN_NAMES)
    assert dict(got[0]) == {
        "id": 1,
        "start_time": "2030-03-17T17:46:40.000Z",
        "request_id": "req_1",
        "model": "claude-haiku-4-5",
        "operation": "messages",
        "stream": 0,
        "status_code": "200",
        "error_type": None,
        "duration_ms": 123.456,
        "ttft_ms": None,
        "uncached_input_tokens": 10,
        "cache_read_input_tokens": 2,
        "cache_creation_5m_input_tokens": 3,
        "cache_creation_1h_input_tokens": 4,
        "output_tokens": 5,
        "web_search_requests": 1,
        "service_tier": "standard",
        "retry_count": 0,
        "workspace_id": "wrkspc_1",
        "estimated_cost_usd": 0.0125,
    }
    assert (got[1]["stream"], got[1]["ttft_ms"], got[1]["start_time"]) == (1, 12.5, "2030-03-17T17:46:41.500Z")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(RequestLogClosed):
        log.submit(row())
    assert log.dropped == 0  # refused, not dropped: that is for a full queue


def test_rows_refused_after_close_are_not_counted_as_dropped(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    log = RequestLog(tmp_path / "log.sqlite3")
    recorder = Recorder(registry, request_log=log)
    log.close()
    for _ in range(2):
        attempt = recorder.start(fake_request())
        assert attempt is not None
        attempt.no_response(ConnectionError())
    assert registry.get_sample_value("anthropic_client_request_log_dropped_total") == 0
    stage = {"stage": "request_log_closed"}
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", stage) == 2
    assert (
        registry.get_sample_value(
            "anthropic_client_request_duration_seconds_count",
            {"model": "m", "operation": "messages", "status_code": "none", "stream": "false"},
        )
        == 2
    )


class _CloseRacesSubmit(RequestLog):
    """Runs close() in another thread right after submit() has read ``_closed`` (once)."""

    armed = False

    @property
    def _closed(self) -> bool:
        seen = self._closed_value
        if self.armed:
            self.armed = False
            self.closer = threading.Thread(target=self.close)
            self.closer.start()
            self.closer.join(0.5)  # finishes, unless submit holds a lock close() needs
        return seen

    @_closed.setter
    def _closed(self, value: bool) -> None:
        self._closed_value = value


def test_a_row_accepted_while_closing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = _CloseRacesSubmit(path)
    assert log.submit(row(request_id="before"))
    assert log.flush()
    log.armed = True
    accepted = log.submit(row(request_id="racing"))
    log.closer.join(10)
    assert log.flush(1.0)  # no row left behind the writer's stop sentinel
    assert [r["request_id"] for r in rows_of(path)] == (["before", "racing"] if accepted else ["before"])


def test_a_log_nobody_holds_can_be_collected(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log.sqlite3")
    ref = weakref.ref(log)
    del log
    gc.collect()
    assert ref() is None


_UNCLOSED = """
import sys
from exporter.client.request_log import RequestLog, RequestRow
log = RequestLog(sys.argv[1])
log.submit(RequestRow(1.9e9, "unclosed", "m", "messages", False, "200", None, 1.0,
                      None, 1, 0, 0, 0, 1, 0, "standard", 0, None))
"""


def test_logs_left_open_are_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", _UNCLOSED, str(path)], cwd=root, check=True, timeout=60)
    assert [r["request_id"] for r in rows_of(path)] == ["unclosed"]


def test_a_failed_prune_does_not_fail_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path, retention_interval=0.0)
    failures: list[BaseException] = []
    log.add_write_error_listener(failures.append)

    def locked(conn: Any = None) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(log, "prune", locked)
    assert log.submit(row(request_id="kept"))
    assert log.flush()
    log.close()
    assert [r["request_id"] for r in rows_of(path)] == ["kept"]
    assert (log.write_errors, log.prune_errors, failures) == (0, 1, [])


def test_retention_by_age_and_by_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    day = 86400.0
    log = RequestLog(path, max_age_seconds=7 * day, max_rows=None, clock=lambda: NOW)
    for i, age in enumerate([10 * day, 8 * day, 6 * day, 1.0]):
        log.submit(row(NOW - age, f"req_{i}"))
    assert log.flush()
    log.prune()
    assert [r["request_id"] for r in rows_of(path)] == ["req_2", "req_3"]
    log.close()

    capped = RequestLog(path, max_age_seconds=None, max_rows=3)
    for i in range(4, 10):
        capped.submit(row(NOW, f"req_{i}"))
    assert capped.flush()
    capped.prune()
    assert [r["request_id"] for r in rows_of(path)] == ["req_7", "req_8", "req_9"]
    capped.close()


def test_writer_applies_retention_itself(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path, max_rows=2, retention_interval=0.0)
    for i in range(5):
        log.submit(row(NOW, f"req_{i}"))
        assert log.flush()
    log.close()
    assert [r["request_id"] for r in rows_of(path)] == ["req_3", "req_4"]


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path, queue_size=5)
    registry = CollectorRegistry()
    recorder = Recorder(registry, request_log=log)
    log.submit(row(request_id="warm-up"))
    assert log.flush()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer now waits on the database...
    try:
        log.submit(row(request_id="taken"))
        deadline = time.monotonic() + 5
        while not log._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.005)
        # ...with one row in hand, so the queue holds 5 more and drops the rest, at once
        started = time.perf_counter()
        accepted = [log.submit(row(request_id=f"req_{i}")) for i in range(8)]
        assert time.perf_counter() - started < 0.1
        assert accepted == [True] * 5 + [False] * 3
        assert log.dropped == 3
        # through the recorder the drop is counted in the metric
        attempt = recorder.start(fake_request())
        assert attempt is not None
        attempt.no_response(ConnectionError())
        assert registry.get_sample_value("anthropic_client_request_log_dropped_total") == 1
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert log.flush()
    log.close()
    assert len(rows_of(path)) == 1 + 1 + 5


def fake_request() -> SimpleNamespace:
    """Shaped like an httpx request, as far as the recorder looks."""
    return SimpleNamespace(url=SimpleNamespace(path="/v1/messages"), headers={}, content=b'{"model":"m"}')


def test_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path)

    def work(t: int) -> None:
        for i in range(200):
            assert log.submit(row(request_id=f"t{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert len({r["request_id"] for r in rows_of(path)}) == 1600


_WRITER = """
import sys
from exporter.client.request_log import RequestLog, RequestRow
log = RequestLog(sys.argv[1], queue_size=100_000)
for i in range(int(sys.argv[3])):
    row = RequestRow(1.9e9, f"{sys.argv[2]}-{i}", "m", "messages", False, "200", None, 1.0,
                     None, 1, 0, 0, 0, 1, 0, "standard", 0, None)
    assert log.submit(row)
log.close(timeout=60)
assert log.write_errors == 0, log.write_errors
"""


def test_several_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"p{p}", "500"], cwd=root) for p in range(4)]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    assert len({r["request_id"] for r in rows_of(path)}) == 2000


def _child_writes(log: RequestLog) -> None:
    ok = log.submit(row(request_id="from-the-child")) and log.flush(10)
    log.close()
    os._exit(0 if ok else 1)


def test_a_forked_child_starts_its_own_writer(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = RequestLog(path)
    log.submit(row(request_id="from-the-parent"))  # the parent's writer thread is running
    assert log.flush()
    child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(log,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    log.close()
    assert {r["request_id"] for r in rows_of(path)} == {"from-the-parent", "from-the-child"}


def test_a_full_disk_is_logged_and_counted_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A real SQLITE_FULL: SQLite rolls the transaction back itself, so the writer must not
    try again (that fails with "cannot rollback" and hides the cause)."""
    path = tmp_path / "log.sqlite3"
    registry = CollectorRegistry()
    log = RequestLog(path)
    Recorder(registry, request_log=log)
    Recorder(registry, request_log=log)  # a second client on the same registry and log: counted once
    real_connect = request_log_module.connect
    connections: list[sqlite3.Connection] = []

    def connect_with_a_full_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        if not connections:  # the writer's first connection: the file may not grow at all
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
        connections.append(conn)
        return conn

    monkeypatch.setattr(request_log_module, "connect", connect_with_a_full_disk)
    with caplog.at_level(logging.DEBUG, logger="exporter.client.request_log"):
        assert log.submit(row(request_id="x" * 20_000))  # overflow pages: the file must grow
        assert log.flush()
        assert log.submit(row(request_id="after"))  # a new connection, no cap: written
        assert log.flush()
    log.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"could not write the request log {path} (disk_full): database or disk is full"]
    assert log.write_errors == 1
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "log_write"}) == 1
    assert registry.get_sample_value("anthropic_client_request_log_errors_total", {"reason": "disk_full"}) == 1
    assert len(connections) == 2
    assert [r["request_id"] for r in rows_of(path)] == ["after"]
