"""Report buckets kept between polls: merge each re-read range, drop what no window needs.

One ``BucketStore`` per organization, report and bucket width. It is immutable: a poll builds
a new store from the old one and the buckets it fetched, and the poller swaps it in only when
the whole poll succeeded. Rows are kept compact (the store is the exporter's main memory
cost): label sets are interned to small integers once per report, and a bucket's rows are two
flat arrays, label ids and values, rows that map to the same labels summed on the way in.

A window moves a little between polls, and a poll replaces only the trailing buckets it
re-read, so a window's sums are kept from one call to the next and updated by the buckets that
left and entered it, not summed again from the ~260,000 rows a large organization's month holds.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from exporter.admin_api import Bucket
from exporter.windows import floor_to_width

Labels = tuple[str, ...]


class LabelTable:
    """Interns label tuples as integers; append-only, written by one poller thread."""

    def __init__(self) -> None:
        self._ids: dict[Labels, int] = {}
        self.labels: list[Labels] = []

    def id(self, labels: Labels) -> int:
        found = self._ids.get(labels)
        if found is None:
            found = self._ids[labels] = len(self.labels)
            self.labels.append(labels)
        return found


@dataclass(frozen=True, slots=True)
class StoredBucket:
    start: datetime
    end: datetime
    label_ids: array  # one per row
    values: Sequence[Any]  # ``stride`` values per row: token counts (array 'q') or Decimal cents
    skipped: tuple[tuple[str, int], ...] = ()  # rows the API sent that could not be read, by reason


def store_bucket(bucket: Bucket, table: LabelTable, row_labels: Callable[[Any], Labels],
                 row_values: Callable[[Any], Sequence[Any]], stride: int, integer: bool) -> StoredBucket:
    """A fetched bucket in the store's form; rows with the same labels are summed."""
    sums: dict[int, list[Any]] = {}
    for row in bucket.rows:
        label_id = table.id(row_labels(row))
        values = row_values(row)
        total = sums.get(label_id)
        if total is None:
            sums[label_id] = list(values)
        else:
            for i in range(stride):
                total[i] += values[i]
    flat = [v for total in sums.values() for v in total]
    return StoredBucket(bucket.starting_at, bucket.ending_at, array("I", sums),
                        array("q", flat) if integer else tuple(flat), bucket.skipped)


@dataclass
class _Summed:
    buckets: tuple[StoredBucket, ...]
    totals: dict[int, list[Any]]
    rows: dict[int, int]  # per label id, how many of the buckets' rows it has: 0 leaves the sums


class _SumsMemo:
    """Each window's newest sums, shared by the versions of one store (a poll builds a new one).

    An entry holds the bucket objects it summed: a bucket is immutable and a re-read one is a
    new object, so comparing objects tells exactly which rows left and entered the window.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[Hashable, _Summed] = {}


@dataclass(frozen=True)
class FetchPlan:
    start: datetime
    end: datetime
    full: bool  # the whole range the windows need, not only the trailing horizon


@dataclass(frozen=True)
class BucketStore:
    """Buckets of one width, oldest first, from a contiguous range read from the API.

    ``covered`` is that range (None before the first good poll); empty buckets are not kept,
    but their time is covered. ``full_at`` is when the whole needed range was last read.
    """

    width: str
    stride: int
    buckets: tuple[StoredBucket, ...] = ()
    covered: tuple[datetime, datetime] | None = None
    full_at: datetime | None = None
    memo: _SumsMemo = field(default_factory=_SumsMemo, compare=False, repr=False)

    def plan(self, needed: tuple[datetime, datetime], horizon: float, full_refresh: float,
             now: datetime) -> FetchPlan:
        """What the next poll should read: the trailing horizon from the newest bucket held, or
        everything when nothing is held, a full refresh is due, or the windows reach further back."""
        start, end = needed
        if (self.covered is None or self.full_at is None or self.covered[0] > start
                or (now - self.full_at).total_seconds() >= full_refresh):
            return FetchPlan(start, end, True)
        # From the newest bucket held, so a gap left by failed polls is re-read in full.
        since = floor_to_width(self.covered[1] - timedelta(seconds=horizon), self.width)
        if since <= start:
            return FetchPlan(start, end, True)
        return FetchPlan(since, end, False)

    def merged(self, plan: FetchPlan, fetched: Iterable[StoredBucket], keep_from: datetime,
               now: datetime) -> BucketStore:
        """This store with the planned range replaced by what was read, and the buckets before
        ``keep_from`` (which no window needs any more) dropped."""
        fetched = [b for b in fetched if plan.start <= b.start < plan.end]
        # The range actually read ends where the API's answer ended (it may leave out the bucket
        # in progress); buckets held beyond it stay.
        read_end = max((b.end for b in fetched), default=plan.start)
        kept = [b for b in self.buckets if not plan.start <= b.start < read_end]
        buckets = sorted([*kept, *(b for b in fetched if len(b.label_ids) or b.skipped)], key=lambda b: b.start)
        buckets = [b for b in buckets if b.start >= keep_from]
        if plan.full or self.covered is None:
            covered = (plan.start, read_end)
        else:
            covered = (self.covered[0], max(self.covered[1], read_end))
        covered = (max(covered[0], keep_from), max(covered[1], keep_from))
        return replace(self, buckets=tuple(buckets), covered=covered,
                       full_at=now if plan.full else self.full_at)

    def sums(self, start: datetime, end: datetime, memo_key: Hashable = None) -> dict[int, list[Any]]:
        """Per label id, the ``stride`` values summed over the buckets starting in [start, end).

        With a ``memo_key`` (a window's name), the sums of the previous call with that key are
        updated by the buckets that changed since; the result is then shared with later calls:
        read it, do not change it. That is exact for integer values only: Decimal ones added and
        later subtracted may round differently from a fresh sum.
        """
        starts = [b.start for b in self.buckets]
        buckets = self.buckets[bisect.bisect_left(starts, start):bisect.bisect_left(starts, end)]
        if memo_key is None:
            return _summed(buckets, self.stride).totals
        with self.memo.lock:
            before = self.memo.entries.get(memo_key)
            summed = _summed(buckets, self.stride) if before is None else _resummed(before, buckets, self.stride)
            self.memo.entries[memo_key] = summed
            return summed.totals

    def newest_data_end(self) -> datetime | None:
        """End of the newest bucket that held any rows."""
        return next((b.end for b in reversed(self.buckets) if len(b.label_ids)), None)

    def skipped(self) -> Counter[str]:
        """Rows of the held buckets that could not be read, by reason."""
        counts: Counter[str] = Counter()
        for bucket in self.buckets:
            for reason, count in bucket.skipped:
                counts[reason] += count
        return counts


def _summed(buckets: tuple[StoredBucket, ...], stride: int) -> _Summed:
    totals: dict[int, list[Any]] = {}
    rows: dict[int, int] = {}
    _add(totals, rows, set(), buckets, stride, 1)
    return _Summed(buckets, totals, rows)


def _resummed(before: _Summed, buckets: tuple[StoredBucket, ...], stride: int) -> _Summed:
    """``before`` less the buckets that left, plus those that entered (or summed afresh, if cheaper)."""
    now_held = {id(b) for b in buckets}
    held_before = {id(b) for b in before.buckets}  # alive (the entry holds them): ids are not reused
    left = [b for b in before.buckets if id(b) not in now_held]
    entered = [b for b in buckets if id(b) not in held_before]
    changed = sum(len(b.label_ids) for b in left) + sum(len(b.label_ids) for b in entered)
    if changed > sum(len(b.label_ids) for b in buckets):  # summing afresh reads fewer rows
        return _summed(buckets, stride)
    # Copy on write: the lists of labels no changed row touches stay shared with ``before``.
    totals = dict(before.totals)
    rows = dict(before.rows)
    written: set[int] = set()
    _add(totals, rows, written, left, stride, -1)
    _add(totals, rows, written, entered, stride, 1)
    for label_id in written:
        if rows[label_id] == 0:  # no row of the window has these labels any more
            del totals[label_id], rows[label_id]
    return _Summed(buckets, totals, rows)


def _add(totals: dict[int, list[Any]], rows: dict[int, int], written: set[int],
         buckets: Iterable[StoredBucket], stride: int, sign: int) -> None:
    """Adds (sign 1) or takes away (-1) the buckets' rows; a label's list is copied before its
    first change unless it is in ``written`` (lists this call made)."""
    for bucket in buckets:
        values = bucket.values
        for row, label_id in enumerate(bucket.label_ids):
            offset = row * stride
            total = totals.get(label_id)
            if total is None:  # only when adding: a row taken away was added before
                totals[label_id] = list(values[offset:offset + stride])
                written.add(label_id)
                rows[label_id] = 1
                continue
            if label_id not in written:
                total = totals[label_id] = list(total)
                written.add(label_id)
            for i in range(stride):
                total[i] += sign * values[offset + i]
            rows[label_id] += sign
