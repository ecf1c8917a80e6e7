"""A safe request log: a private file, failures counted by cause, retention that runs whatever
happens to the writes, a file that stops growing, and the structured-log sink."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic  # the test extra installs it
import pytest
from prometheus_client import CollectorRegistry

from exporter.client import Recorder, RequestLog, instrument
from exporter.client import request_log as request_log_module
from exporter.client.log_cli import main as requests_cli
from exporter.client.request_log import (
    BATCH_SIZE,
    COLUMN_NAMES,
    ERROR_REASONS,
    LOGGER_NAME,
    WAL_SIZE_LIMIT,
    error_reason,
)
from exporter.simulator import SimulatedOrganization, SimulatorServer

from .test_client_request_log import NOW, row, rows_of

ERRORS = "anthropic_client_request_log_errors_total"


def errors(registry: CollectorRegistry) -> dict[str, float | None]:
    return {reason: registry.get_sample_value(ERRORS, {"reason": reason}) for reason in ERROR_REASONS}


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """No umask: the file's mode must come from the log itself, not from the process."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_file_and_its_wal_and_shm_are_private(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "requests.sqlite3"
    log = RequestLog(path)
    assert log.submit(row())
    assert log.flush()  # the writer's connection is open: the -wal and -shm files exist
    modes = {suffix: stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) for suffix in ("", "-wal", "-shm")}
    log.close()
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_an_existing_file_keeps_its_mode(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "requests.sqlite3"
    path.touch(mode=0o640)  # the owner chose this (a group that reads the logs)
    log = RequestLog(path)
    assert log.submit(row())
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [r["request_id"] for r in rows_of(path)] == ["req_1"]


def test_every_reason_exists_at_zero() -> None:
    registry = CollectorRegistry()
    Recorder(registry)
    assert errors(registry) == {"disk_full": 0, "locked": 0, "io": 0, "other": 0}


def _sqlite_error(code: int, message: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]  # (set by sqlite3 itself when raised)
    return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (_sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), "disk_full"),
        (_sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"), "locked"),
        (_sqlite_error(sqlite3.SQLITE_LOCKED, "database table is locked"), "locked"),
        (_sqlite_error(sqlite3.SQLITE_IOERR_WRITE, "disk I/O error"), "io"),
        (_sqlite_error(sqlite3.SQLITE_IOERR_FSYNC, "disk I/O error"), "io"),
        (_sqlite_error(sqlite3.SQLITE_NOTADB, "file is not a database"), "other"),
        (_sqlite_error(sqlite3.SQLITE_READONLY, "attempt to write a readonly database"), "other"),
        (sqlite3.OperationalError("database or disk is full"), "disk_full"),  # no code: by message
        (sqlite3.OperationalError("database is locked"), "locked"),
        (sqlite3.OperationalError("disk I/O error"), "io"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk_full"),
        (OSError(errno.EIO, "Input/output error"), "io"),
        (PermissionError(errno.EACCES, "Permission denied"), "other"),
        (RuntimeError("anything else"), "other"),
    ],
)
def test_error_reasons(exc: BaseException, reason: str) -> None:
    assert error_reason(exc) == reason


def test_a_full_disk_counts_disk_full_and_retention_still_frees_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The file may never exceed 16 pages (64 KiB); 100 rows of 1 KiB do not fit. Retention
    is due only once an hour, so only the run that a disk_full failure starts at once can free
    the room that lets the later rows in."""
    path = tmp_path / "requests.sqlite3"
    real_connect = request_log_module.connect

    def connect_to_a_small_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA max_page_count = 16")
        return conn

    monkeypatch.setattr(request_log_module, "connect", connect_to_a_small_disk)
    registry = CollectorRegistry()
    log = RequestLog(path, max_rows=20, max_age_seconds=None, retention_interval=3600.0)
    Recorder(registry, request_log=log)
    with caplog.at_level(logging.WARNING, logger="exporter.client.request_log"):
        for i in range(100):
            assert log.submit(row(NOW + i, f"req_{i:03d}" + "x" * 1024))
            assert log.flush()
    log.close()
    assert log.write_errors >= 2 and log.prune_errors == 0
    assert errors(registry) == {"disk_full": log.write_errors, "locked": 0, "io": 0, "other": 0}
    assert registry.get_sample_value("anthropic_client_instrumentation_errors_total", {"stage": "log_write"}) == (
        log.write_errors
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"could not write the request log {path} (disk_full): database or disk is full"
    ]
    kept = [r["request_id"][:7] for r in rows_of(path)]
    assert kept[-1] == "req_099"  # written: retention made room after every failure
    assert len(kept) < 40  # max_rows, plus what came since the last retention
    assert size(path) <= 16 * 4096


def test_a_locked_file_counts_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "requests.sqlite3"
    real_connect = request_log_module.connect
    monkeypatch.setattr(request_log_module, "connect", lambda p: real_connect(p, timeout_ms=50))
    registry = CollectorRegistry()
    log = RequestLog(path)
    Recorder(registry, request_log=log)
    assert log.submit(row(request_id="before"))
    assert log.flush()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert log.submit(row(request_id="while locked"))
        assert log.flush()
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert log.submit(row(request_id="after"))
    log.close()
    assert errors(registry) == {"disk_full": 0, "locked": 1, "io": 0, "other": 0}
    assert [r["request_id"] for r in rows_of(path)] == ["before", "after"]


def test_a_file_that_is_not_a_database_counts_other(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite3"
    path.write_bytes(b"not a database " * 500)
    registry = CollectorRegistry()
    log = RequestLog(path)
    Recorder(registry, request_log=log)
    assert log.submit(row())
    log.close()
    assert errors(registry) == {"disk_full": 0, "locked": 0, "io": 0, "other": 1}


def test_the_file_stops_growing_under_churn(tmp_path: Path) -> None:
    """30 rounds of 500 rows, keeping the newest 500, retention after every batch.

    The bound. A row is stored once in the table and once in the start_time index; its bytes
    are its values plus a record header and a cell header (under 16 bytes each). After a batch
    and before its retention the file holds at most max_rows + BATCH_SIZE rows; deleting from
    the oldest end empties whole pages (freed, and handed back by incremental vacuum) and
    leaves at worst half-full pages at the edges of every tree level, so twice the live bytes,
    plus a page each for the file header, the schema, the pointer map and the two roots,
    bounds the file. The write-ahead log is truncated to WAL_SIZE_LIMIT at a checkpoint, and
    a checkpoint runs once it exceeds 1000 pages; one transaction adds at most every page of
    the file (deletions and the vacuum included)."""
    path = tmp_path / "requests.sqlite3"
    max_rows, rounds = 500, 30
    log = RequestLog(path, max_rows=max_rows, max_age_seconds=None, retention_interval=0.0)
    sample = row(NOW, "req_01" + "x" * 22)
    stored = [v for v in request_log_module.stored(sample) if v is not None]
    row_bytes = sum(len(v) if isinstance(v, str) else 8 for v in stored) + 2 * 16
    index_bytes = len(request_log_module.format_time(NOW)) + 8 + 2 * 16
    page = 4096
    live = (max_rows + BATCH_SIZE) * (row_bytes + index_bytes)
    file_bound = 2 * live + 5 * page
    wal_bound = max(WAL_SIZE_LIMIT, (1000 + file_bound // page + 1) * (page + 24) + 32)
    written = rounds * max_rows * row_bytes
    assert written > 4 * file_bound  # without retention, the file would pass the bound
    sizes = []  # (the file on disk, the database's own size (part of it still in the WAL), the WAL)
    for r in range(rounds):
        for i in range(max_rows):
            assert log.submit(row(NOW + r * max_rows + i, f"req_01{r:04d}{i:06d}" + "x" * 12))
        assert log.flush()
        reader = sqlite3.connect(path)
        pages = reader.execute("PRAGMA page_count").fetchone()[0]
        reader.close()
        sizes.append((size(path), pages * page, size(Path(f"{path}-wal"))))
    log.close()
    assert max(max(disk, logical) for disk, logical, _ in sizes) <= file_bound, (sizes, file_bound)
    assert max(wal for _, _, wal in sizes) <= wal_bound, (sizes, wal_bound)
    # no creeping growth either (a round adds ~25 pages; how the writer splits its batches moves
    # the peak by a page or two)
    steady = max(logical for _, logical, _ in sizes[: rounds // 3])
    assert max(logical for _, logical, _ in sizes[rounds // 3 :]) <= 1.25 * steady
    assert len(rows_of(path)) == max_rows
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    conn.close()


def _old_file(path: Path, rows: int) -> None:
    """A log written by a version before auto-vacuum (and before the cost column)."""
    columns = [name for name in COLUMN_NAMES if name != "estimated_cost_usd"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, "
        + ", ".join(f"{n} {k}" for n, k in request_log_module.COLUMNS if n in columns)
        + ")"
    )
    sample = request_log_module.stored(row(NOW - 60))[: len(columns)]
    conn.executemany(
        f"INSERT INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [(sample[0], f"req_old_{i}", *sample[2:]) for i in range(rows)],
    )
    conn.commit()
    conn.close()


def test_an_older_file_is_converted_once_retention_frees_a_quarter_of_it(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite3"
    _old_file(path, 20_000)
    before = size(path)
    small = RequestLog(path, max_rows=18_000, max_age_seconds=None)  # frees a tenth: reused, no VACUUM
    assert small.submit(row(request_id="new"))
    small.close()
    assert not small.vacuumed
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    log = RequestLog(path, max_rows=1_000, max_age_seconds=None)
    assert log.submit(row(request_id="newer"))
    log.close()
    assert log.vacuumed
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1_000
    conn.close()
    assert size(path) < before / 10


def _served_rows(registry: CollectorRegistry, **logs: Any) -> None:
    """The same small mix of traffic through the real SDK: messages, a stream, an error, count_tokens."""
    server = SimulatorServer(SimulatedOrganization(seed=7), host="127.0.0.1", port=0).start()
    try:
        client = instrument(anthropic.Anthropic(api_key="sk-ant-api03-test", base_url=server.url, max_retries=1),
                            registry=registry, **logs)  # fmt: skip
        ask: dict[str, Any] = {"max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}
        client.messages.create(model="claude-haiku-4-5", **ask)
        server.inject("/v1/messages", "529", times=1)
        with client.messages.stream(model="claude-sonnet-5", **ask) as stream:
            stream.get_final_message()
        client.messages.create(model="claude-unreleased-9", **ask)
        client.messages.count_tokens(model="claude-opus-5", messages=ask["messages"])
        client.close()
        client._client._transport.recorder.close()  # writes what is queued, if it opened the log
    finally:
        server.stop()


class Lines(logging.Handler):
    """What a log shipper would read: each record formatted as ``%(message)s``."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def sink() -> Iterator[Lines]:
    logger = logging.getLogger(LOGGER_NAME)
    handler = Lines()
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.NOTSET
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_json_sink_rows_equal_the_sqlite_rows(tmp_path: Path, sink: Lines) -> None:
    path = tmp_path / "requests.sqlite3"
    log = RequestLog(path, logger=True)
    _served_rows(CollectorRegistry(), request_log=log)
    log.close()
    assert logging.getLogger(LOGGER_NAME).level == logging.INFO  # set, since it was NOTSET
    from_sink = [json.loads(line) for line in sink.lines]
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    from_file = [dict(r) for r in conn.execute(f"SELECT {', '.join(COLUMN_NAMES)} FROM requests ORDER BY id")]
    conn.close()
    for record in from_file:
        record["stream"] = bool(record["stream"])
    assert len(from_file) == 5 and from_sink == from_file
    assert [list(r) for r in from_sink] == [list(COLUMN_NAMES)] * 5  # the file's columns, in order
    assert [(r["status_code"], r["model"]) for r in from_sink] == [
        ("200", "claude-haiku-4-5"), ("529", "claude-sonnet-5"), ("200", "claude-sonnet-5"),
        ("200", "claude-unreleased-9"), ("200", "claude-opus-5"),
    ]  # fmt: skip
    assert from_sink[0]["estimated_cost_usd"] > 0 and from_sink[3]["estimated_cost_usd"] is None
    assert all(r.levelno == logging.INFO and r.name == LOGGER_NAME for r in sink.records)
    assert [r.anthropic_request for r in sink.records] == from_sink  # type: ignore[attr-defined]
    # and each line is what `requests --format jsonl` prints for that row of the file
    out = io.StringIO()
    assert requests_cli(["--log", str(path), "--format", "jsonl"], out=out) == 0
    assert out.getvalue().splitlines() == sink.lines[::-1]


def test_the_sink_alone_writes_no_file(tmp_path: Path, sink: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry = CollectorRegistry()
    _served_rows(registry, log_sink=True)
    assert len(sink.lines) == 5
    assert list(tmp_path.iterdir()) == []
    assert errors(registry) == {"disk_full": 0, "locked": 0, "io": 0, "other": 0}


def test_a_log_sink_with_a_request_log_object_is_refused(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.sqlite3")
    with pytest.raises(ValueError, match="give it logger="):
        Recorder(CollectorRegistry(), request_log=log, log_sink=True)
    log.close()
    with pytest.raises(ValueError, match="a path, a logger, or both"):
        RequestLog(None)
