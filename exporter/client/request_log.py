"""The per-request log (metrics.md section 3): one row per HTTP attempt, written off-thread,
to a SQLite file, to a structured-log sink (one JSON object per attempt through ``logging``), or
to both.

The request path only puts a row into a bounded queue (``submit``) and never waits: when the
queue is full the row is dropped and counted; after ``close`` it is refused. A daemon thread
drains the queue in batches, each one short ``BEGIN IMMEDIATE`` transaction, so several
threads and several processes can share one file (WAL mode, ``busy_timeout``). After a
``fork`` the child starts its own writer and connection on its first row (gunicorn with
``preload_app``).

A safe file. It is created readable by its owner only (0600; SQLite gives its ``-wal`` and
``-shm`` files the same mode). Retention by age and by row count runs in the writer now and
then, whether or not the writes succeed (at once after a write that found the disk full), and
the file does not grow without bound: a new file uses incremental auto-vacuum, and retention
hands the pages it frees back to the file system; the write-ahead log is truncated to
``WAL_SIZE_LIMIT`` after each checkpoint. A file created by an older version (no auto-vacuum)
reuses its freed pages, and is converted by one ``VACUUM`` the first time retention leaves a
quarter of it free. A failed write is classified by its SQLite error (:func:`error_reason`).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from exporter.timeutil import format_unix

log = logging.getLogger(__name__)

TABLE = "requests"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("start_time", "TEXT NOT NULL"),  # UTC, RFC 3339 with milliseconds
    ("request_id", "TEXT"),
    ("model", "TEXT NOT NULL"),
    ("operation", "TEXT NOT NULL"),
    ("stream", "INTEGER NOT NULL"),
    ("status_code", "TEXT NOT NULL"),
    ("error_type", "TEXT"),
    ("duration_ms", "REAL NOT NULL"),
    ("ttft_ms", "REAL"),
    ("uncached_input_tokens", "INTEGER NOT NULL"),
    ("cache_read_input_tokens", "INTEGER NOT NULL"),
    ("cache_creation_5m_input_tokens", "INTEGER NOT NULL"),
    ("cache_creation_1h_input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("web_search_requests", "INTEGER NOT NULL"),
    ("service_tier", "TEXT"),
    ("retry_count", "INTEGER NOT NULL"),
    ("workspace_id", "TEXT"),
    # Added later: files written before it get it by ALTER TABLE (NULL in their old rows).
    ("estimated_cost_usd", "REAL"),  # NULL: billed but not priced (unknown model, flex tier, ...)
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    + ")",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_start_time ON {TABLE} (start_time)",
)
_INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMN_NAMES)}) VALUES ({', '.join('?' for _ in COLUMN_NAMES)})"

DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_QUEUE_SIZE = 10_000
BATCH_SIZE = 500
RETENTION_INTERVAL_SECONDS = 60.0
BUSY_TIMEOUT_MS = 5000
FILE_MODE = 0o600
# The write-ahead log is truncated to this size after a checkpoint (it grows to about 4 MiB,
# the default checkpoint interval of 1000 pages, in between).
WAL_SIZE_LIMIT = 1024 * 1024
# An existing file without auto-vacuum is converted once retention has freed this share of it.
VACUUM_FREE_SHARE = 0.25

# The logger of the structured-log sink; one INFO record per attempt, its message a JSON object.
LOGGER_NAME = "anthropic_usage_exporter.requests"

# anthropic_client_request_log_errors_total{reason}: why a write failed.
ERROR_REASONS: tuple[str, ...] = ("disk_full", "locked", "io", "other")


class RequestRow(NamedTuple):
    """One attempt, as the recorder hands it over (times still raw: formatting is off-thread)."""

    started_at: float  # Unix time
    request_id: str | None
    model: str
    operation: str
    stream: bool
    status_code: str
    error_type: str | None
    duration_ms: float
    ttft_ms: float | None
    uncached_input_tokens: int
    cache_read_input_tokens: int
    cache_creation_5m_input_tokens: int
    cache_creation_1h_input_tokens: int
    output_tokens: int
    web_search_requests: int
    service_tier: str | None
    retry_count: int
    workspace_id: str | None
    estimated_cost_usd: float | None = None  # USD; 0 when nothing was billed, None when unpriced


def format_time(unix: float) -> str:
    """UTC RFC 3339 with milliseconds, e.g. ``2026-08-21T09:15:02.123Z`` (sorts as text)."""
    return format_unix(unix, fraction="ms")


def stored(row: RequestRow) -> tuple[Any, ...]:
    """A row's values as the file stores them, in :data:`COLUMN_NAMES` order."""
    return (format_time(row[0]), *row[1:4], int(row[4]), *row[5:])


def json_record(row: RequestRow) -> dict[str, Any]:
    """A row as the structured-log sink writes it: the file's columns, ``stream`` a boolean
    (as ``anthropic-usage-exporter requests --format jsonl`` prints a row of the file)."""
    record = dict(zip(COLUMN_NAMES, stored(row), strict=True))
    record["stream"] = bool(row.stream)
    return record


def error_reason(exc: BaseException) -> str:
    """``disk_full``, ``locked``, ``io`` or ``other``: why writing the request log failed.

    From the SQLite result code (its primary code: SQLITE_FULL, SQLITE_BUSY or SQLITE_LOCKED,
    SQLITE_IOERR and its extended codes), else from an ``OSError``'s errno (creating the file),
    else from SQLite's message (a Python without ``sqlite_errorcode``).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary == sqlite3.SQLITE_FULL:
            return "disk_full"
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return "locked"
        if primary == sqlite3.SQLITE_IOERR:
            return "io"
        return "other"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return "disk_full"
        if exc.errno == errno.EIO:
            return "io"
        return "other"
    if isinstance(exc, sqlite3.Error):
        message = str(exc)
        if "disk is full" in message:
            return "disk_full"
        if "is locked" in message:
            return "locked"
        if "I/O error" in message:
            return "io"
    return "other"


def _create_private(path: str) -> None:
    """Create the file readable and writable by its owner only, unless it exists already."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to :data:`COLUMNS` (new columns are nullable).

    Several processes may do this at once: a column another one added meanwhile is fine.
    """
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
    for name, kind in COLUMNS:
        if name in have:
            continue
        try:
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


def connect(path: str | os.PathLike[str], *, timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection in autocommit mode with the busy timeout set, the schema created, WAL on.

    A new file is created mode 0600, with incremental auto-vacuum.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    path = os.fspath(path)
    _create_private(path)
    while True:
        conn = sqlite3.connect(path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
            # Takes effect only on a file without tables yet (a new one); before WAL, which
            # writes the file's header.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, fast commits
            for statement in _SCHEMA:
                conn.execute(statement)
            _add_missing_columns(conn)
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            # Several processes creating the file at once: switching it to WAL can report busy
            # without waiting for the busy timeout, so wait and try again here.
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RequestLogClosed(RuntimeError):
    """A row was submitted after :meth:`RequestLog.close`."""


# Weak: a log nobody uses any more can be collected (a running writer thread keeps its own
# alive until close). One exit hook for all of them, rather than one per log holding it.
_instances: weakref.WeakSet[RequestLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for request_log in list(_instances):
        request_log._reset()


def _close_all_at_exit() -> None:
    for request_log in list(_instances):
        request_log.close()


_hooks_lock = threading.Lock()
_hooks_installed = False


def _install_process_hooks() -> None:
    """The at-fork and at-exit hooks, set once by the first RequestLog rather than at import
    (the exporter imports this module for its constants and must not get them)."""
    global _hooks_installed
    if _hooks_installed:
        return
    with _hooks_lock:
        if _hooks_installed:
            return
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        atexit.register(_close_all_at_exit)
        _hooks_installed = True


def sink_logger(sink: bool | str | logging.Logger) -> logging.Logger | None:
    """The structured-log sink's logger: ``True`` is :data:`LOGGER_NAME`, a string names one."""
    if sink is False:
        return None
    logger = sink if isinstance(sink, logging.Logger) else logging.getLogger(LOGGER_NAME if sink is True else sink)
    if logger.level == logging.NOTSET:  # asked for: not muted by a root logger left at WARNING
        logger.setLevel(logging.INFO)
    return logger


class RequestLog:
    """A request log fed through a bounded queue by a background writer thread.

    ``path``: the SQLite file (``None``: none). ``logger``: also (or only) emit each row as one
    INFO record whose message is a JSON object of the same fields (``True``: the logger
    :data:`LOGGER_NAME`; a name or a ``logging.Logger``). ``max_age_seconds`` and ``max_rows``
    bound what the file keeps (``None``: no bound). The file is created on first write. Call
    :meth:`close` (also run at interpreter exit for every log still open) to write what is
    still queued.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        logger: bool | str | logging.Logger = False,
        max_age_seconds: float | None = DEFAULT_MAX_AGE_SECONDS,
        max_rows: int | None = DEFAULT_MAX_ROWS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retention_interval: float = RETENTION_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if path is None and logger is False:
            raise ValueError("a RequestLog needs a path, a logger, or both")
        self.path = None if path is None else os.fspath(path)
        self.logger = sink_logger(logger)
        self.max_age_seconds = max_age_seconds
        self.max_rows = max_rows
        self.queue_size = queue_size
        self.retention_interval = retention_interval
        self._clock = clock
        self.dropped = 0  # rows dropped because the queue was full
        self.write_errors = 0  # batches that could not be written
        self.prune_errors = 0  # retention runs that failed
        self.vacuumed = False  # an older file converted to incremental auto-vacuum here
        self._error_listeners: list[Callable[[BaseException], None]] = []
        self._closed = False
        self._reset()
        _install_process_hooks()
        _instances.add(self)

    def _reset(self) -> None:
        """No writer yet: one starts on the first row. Also run in a forked child, where the
        parent's writer thread does not exist and its locks may have been held at the fork."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # rows accepted but not yet committed (or given up on)
        self._queue: queue.Queue[RequestRow | None] = queue.Queue(self.queue_size)
        self._thread: threading.Thread | None = None
        self._pid = -1  # the process whose writer thread runs

    def __repr__(self) -> str:
        if self.logger is not None:
            return f"RequestLog({self.path!r}, logger={self.logger.name!r})"
        return f"RequestLog({self.path!r})"

    def add_write_error_listener(self, listener: Callable[[BaseException], None]) -> None:
        """Call ``listener(exc)`` from the writer thread when a batch could not be written.

        Adding the same listener again (the same metrics, instrumented twice) changes nothing.
        """
        if listener not in self._error_listeners:
            self._error_listeners.append(listener)

    def submit(self, row: RequestRow) -> bool:
        """Queue a row without waiting; ``False`` if it was dropped because the queue was full.

        Raises :class:`RequestLogClosed` after :meth:`close`.
        """
        if self._pid != os.getpid():
            self._start_writer()
        with self._lock:  # with close(): no row can follow the writer's stop sentinel
            if self._closed:
                raise RequestLogClosed(f"{self!r} is closed")
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self.dropped += 1
                return False
            self._pending += 1
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued row is written (or given up on); ``False`` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Write what is queued, then stop the writer. Later rows are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            self.flush(timeout)
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            thread.join(timeout)

    def _start_writer(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._pid == pid or self._closed:
                return
            self._pid = pid
            # daemon: an application must not hang at exit on its metrics; close() at exit
            # writes what is queued.
            self._thread = threading.Thread(target=self._run, name="anthropic-request-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        next_retention = 0.0
        q = self._queue
        while True:
            first = q.get()
            stop = first is None
            batch = [] if first is None else [first]
            while not stop and len(batch) < BATCH_SIZE:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            try:
                if batch and self.logger is not None:
                    self._emit(self.logger, batch)
                if batch and self.path is not None:
                    reason = None
                    try:
                        if conn is None:
                            conn = connect(self.path)
                        self._write(conn, batch)
                    except Exception as exc:  # the rows are lost; the application goes on
                        reason = self._write_failed(exc)
                        if conn is not None:
                            conn.close()
                            conn = None
                    # Retention whether or not the write succeeded; at once when the disk is
                    # full, since it may free the pages the next write needs.
                    now = time.monotonic()
                    if now >= next_retention or reason == "disk_full":
                        next_retention = now + self.retention_interval
                        conn = self._prune_in_writer(conn)
            finally:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
            if stop:
                break
        if conn is not None:
            conn.close()

    def _emit(self, logger: logging.Logger, batch: list[RequestRow]) -> None:
        """The rows to the structured-log sink, one JSON object each."""
        for row in batch:
            try:
                record = json_record(row)
                logger.info(json.dumps(record), extra={"anthropic_request": record})
            except Exception:  # (a handler's own failure is reported by logging itself)
                log.debug("could not emit a request log record", exc_info=True)

    def _write(self, conn: sqlite3.Connection, batch: list[RequestRow]) -> None:
        rows = [stored(row) for row in batch]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR, ...): a
            # ROLLBACK then fails with "no transaction is active" and would replace the cause.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:  # the cause above is what gets reported
                    log.debug("could not roll back the request log %s: %s", self.path, exc)
            raise

    def prune(self, conn: sqlite3.Connection | None = None) -> None:
        """Delete rows older than ``max_age_seconds`` and beyond the newest ``max_rows``, then
        give the pages freed back to the file system (see the module docstring).

        The writer does this on its first batch and then every ``retention_interval`` seconds,
        whether or not its writes succeed, and at once after a write that found the disk full.
        """
        if self.path is None:
            return
        if conn is None:
            with contextlib.closing(connect(self.path)) as own:
                self.prune(own)
            return
        if self.max_age_seconds is not None:
            cutoff = format_time(self._clock() - self.max_age_seconds)
            conn.execute(f"DELETE FROM {TABLE} WHERE start_time < ?", (cutoff,))
        if self.max_rows is not None:
            conn.execute(
                f"DELETE FROM {TABLE} WHERE id <= (SELECT id FROM {TABLE} ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,),
            )
        self._shrink(conn)

    def _shrink(self, conn: sqlite3.Connection) -> None:
        """Hand the file's free pages back to the file system."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # incremental
            # (one page per step: executescript steps it to the end, execute would free one)
            conn.executescript("PRAGMA incremental_vacuum")
            return
        # A file from before auto-vacuum: freed pages are reused, so it stops growing; convert
        # it once a quarter of it is free, by one VACUUM (it rewrites the file).
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free >= VACUUM_FREE_SHARE * pages:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            self.vacuumed = True
            log.info("request log %s converted to incremental auto-vacuum (%d of %d pages were free)",
                     self.path, free, pages)  # fmt: skip

    def _prune_in_writer(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Retention in the writer, on its connection (opened again if the write closed it).

        A failure here loses no rows, so it is only logged (it is tried again at the next
        interval); returns the connection to go on with.
        """
        try:
            if conn is None:
                conn = connect(self.path) if self.path is not None else None
            self.prune(conn)
        except Exception as exc:
            self.prune_errors += 1
            level = logging.WARNING if self.prune_errors == 1 else logging.DEBUG
            log.log(level, "could not apply retention to the request log %s: %s", self.path, exc)
            if conn is not None:
                conn.close()
            return None
        return conn

    def _write_failed(self, exc: BaseException) -> str:
        """Report a batch that could not be written; returns its :func:`error_reason`."""
        self.write_errors += 1
        reason = error_reason(exc)
        if self.write_errors == 1:
            log.warning("could not write the request log %s (%s): %s", self.path, reason, exc)
        else:
            log.debug("could not write the request log %s (%s): %s", self.path, reason, exc)
        for listener in self._error_listeners:
            try:
                listener(exc)
            except Exception:
                log.debug("request log error listener failed", exc_info=True)
        return reason
