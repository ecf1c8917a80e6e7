"""The per-request log (metrics.md section 3): one SQLite row per HTTP attempt, written off-thread.

The request path only puts a row into a bounded queue (``submit``) and never waits: when the
queue is full the row is dropped and counted; after ``close`` it is refused. A daemon thread
drains the queue in batches, each one short ``BEGIN IMMEDIATE`` transaction, so several
threads and several processes can share one file (WAL mode, ``busy_timeout``). Retention by
age and by row count runs in the writer now and then. After a ``fork`` the child starts its
own writer and connection on its first row (gunicorn with ``preload_app``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

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
    """A connection in autocommit mode with the busy timeout set, the schema created, WAL on."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        conn = sqlite3.connect(os.fspath(path), timeout=timeout_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
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


class RequestLog:
    """A SQLite request log fed through a bounded queue by a background writer thread.

    ``max_age_seconds`` and ``max_rows`` bound what is kept (``None``: no bound). The file is
    created on first write. Call :meth:`close` (also run at interpreter exit for every log
    still open) to write what is still queued.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age_seconds: float | None = DEFAULT_MAX_AGE_SECONDS,
        max_rows: int | None = DEFAULT_MAX_ROWS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retention_interval: float = RETENTION_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.max_age_seconds = max_age_seconds
        self.max_rows = max_rows
        self.queue_size = queue_size
        self.retention_interval = retention_interval
        self._clock = clock
        self.dropped = 0  # rows dropped because the queue was full
        self.write_errors = 0  # batches that could not be written
        self.prune_errors = 0  # retention runs that failed (the rows were written)
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
                if batch:
                    if conn is None:
                        conn = connect(self.path)
                    self._write(conn, batch)
                    now = time.monotonic()
                    if now >= next_retention:
                        next_retention = now + self.retention_interval
                        self._prune_in_writer(conn)
            except Exception as exc:  # the rows are lost; the application goes on
                self._write_failed(exc)
                if conn is not None:
                    conn.close()
                    conn = None
            finally:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
            if stop:
                break
        if conn is not None:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[RequestRow]) -> None:
        rows = [(format_time(row[0]), *row[1:4], int(row[4]), *row[5:]) for row in batch]
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
        """Delete rows older than ``max_age_seconds`` and beyond the newest ``max_rows``.

        The writer does this on its first batch and then every ``retention_interval`` seconds.
        """
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

    def _prune_in_writer(self, conn: sqlite3.Connection) -> None:
        """Retention after a committed batch: a failure here loses no rows, so it is only logged
        (it is tried again at the next interval)."""
        try:
            self.prune(conn)
        except Exception as exc:
            self.prune_errors += 1
            level = logging.WARNING if self.prune_errors == 1 else logging.DEBUG
            log.log(level, "could not apply retention to the request log %s: %s", self.path, exc)

    def _write_failed(self, exc: BaseException) -> None:
        self.write_errors += 1
        if self.write_errors == 1:
            log.warning("could not write the request log %s: %s", self.path, exc)
        else:
            log.debug("could not write the request log %s: %s", self.path, exc)
        for listener in self._error_listeners:
            try:
                listener(exc)
            except Exception:
                log.debug("request log error listener failed", exc_info=True)
