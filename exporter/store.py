"""Report buckets kept between polls: merge each re-read range, drop what no window needs.

One ``BucketStore`` per organization, report and bucket width. It is immutable: a poll builds
a new store from the old one and the buckets it fetched, and the poller swaps it in only when
the whole poll succeeded. Rows are kept compact (the store is the exporter's main memory
cost): label sets are interned to small integers once per report, and a bucket's rows are two
flat arrays, label ids and values, rows that map to the same labels summed on the way in.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
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

    def sums(self, start: datetime, end: datetime) -> dict[int, list[Any]]:
        """Per label id, the ``stride`` values summed over the buckets starting in [start, end)."""
        starts = [b.start for b in self.buckets]
        totals: dict[int, list[Any]] = {}
        stride = self.stride
        for bucket in self.buckets[bisect.bisect_left(starts, start):bisect.bisect_left(starts, end)]:
            values = bucket.values
            for row, label_id in enumerate(bucket.label_ids):
                offset = row * stride
                total = totals.get(label_id)
                if total is None:
                    totals[label_id] = list(values[offset:offset + stride])
                else:
                    for i in range(stride):
                        total[i] += values[offset + i]
        return totals

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
